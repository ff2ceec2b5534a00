/*
 * mc_meta.c - memcached's meta protocol (mg, ms, md, ma, mn, me) and its
 * leases: the win token (W) a meta get hands to the one client that is to
 * reload a missing or stale item is the engine's get_or_load claim, so a
 * socket client and a mapped client (shmc_get_or_load) never load the same
 * key at once.
 *
 * A request is "<cm> <key> [<datalen>] <flag>*": each flag is one letter,
 * some followed by an argument in the same token ("T30", "Oabc").  The
 * flags are checked as memcached checks them (unknown letters, repeats,
 * bad numbers) before anything is done; reply flags come in the order the
 * request gave them.  docs/MEMCACHED.md, "The meta protocol", says what
 * differs from memcached and why.
 *
 * Leases: a win (W) is a flight claimed in the engine (eng_get_or_claim_ex
 * on a miss or a stale item, eng_flight_claim for R) and kept in the
 * worker's table below on behalf of the session that won it, until a
 * store of the key through either protocol on this worker
 * (mc_lease_stored()), a delete or invalidation of it, the end of the
 * session, or its time (the N or R token, or MC_LEASE_DEFAULT_S, at most
 * MC_LEASE_MAX_S) ends it; waiters in mapped clients wake then.  A write
 * of the key by anyone else (a mapped client, another worker's
 * connection) ends it at the next mc_leases_tick().  Every worker claims
 * with the daemon's client id, so a second claim of a key already leased
 * by any worker finds the flight taken (Z), as a claim by a mapped client
 * does.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_int.h"

/* How long a lease lasts when the request gave no time (N0, or a stale
 * item's win without N), and the longest one: a mapped client waits for
 * a load at most SHMC_LOAD_WAIT_MS (10 s) and then takes it over anyway. */
#define MC_LEASE_DEFAULT_S 30u
#define MC_LEASE_MAX_S 300u
/* Leases one connection may hold at once, and one worker: a client that
 * wins keys it never stores cannot grow the table (nor the scans every
 * store and tick make of it) without bound.  Past either, a win is
 * refused with MC_LEASES_FULL. */
#define MC_SESSION_LEASES_MAX 1024u
#define MC_WORKER_LEASES_MAX 65536u
#define MC_LEASES_FULL                                                         \
	"too many leases held: store (or md) the keys this connection won, "   \
	"or close connections that won keys they never store"

/* memcached's limits on a meta request's flags. */
#define META_TOKENS_MAX 20 /* tokens in a request, command and key included */
#define META_OPAQUE_MAX 32 /* bytes of an O token (its letter included) */

/* Room for a meta get's reply line (without its data block): "VA", the
 * size, each figure flag once (s t c f l h, up to 22 bytes each), the
 * opaque, the key token and " b", Z X W and the line end.  mg reads the
 * value this far past the line's start and moves it up behind the line. */
#define META_LINE_MAX 1024
static_assert(META_LINE_MAX >= 3 + 20 + 6 * 22 + 1 + META_OPAQUE_MAX + 2 +
				       MC_KEY_MAX + 2 + 6 + 2,
	      "a meta get's reply line fits in META_LINE_MAX");

/* One request's flags, parsed and checked. */
struct mflags {
	uint64_t seen;	     /* bit per letter, flag_bit() */
	unsigned first, end; /* the flag tokens: req.tok[first..end) */
	const struct mc_tok *raw_key;
	uint8_t key[MC_KEY_MAX];
	size_t klen;
	bool binary; /* b: the key was sent in base64 */
	int32_t n_ttl, t_ttl, r_ttl;
	uint64_t cas, delta, initial;
	uint32_t flags;
	char mode;
};

static int flag_bit(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return 26 + (c - 'a');
	return -1;
}

static bool has(const struct mflags *mf, char c)
{
	return mf->seen >> flag_bit(c) & 1;
}

/* A flag's argument: the token without its letter. */
static struct mc_tok flag_arg(const struct mc_tok *t)
{
	return (struct mc_tok){ .p = t->p + 1, .n = t->n - 1 };
}

static bool arg_i32(const struct mc_tok *t, int32_t *v)
{
	struct mc_tok a = flag_arg(t);

	return mc_tok_i32(&a, v);
}

static bool arg_u64(const struct mc_tok *t, uint64_t *v)
{
	struct mc_tok a = flag_arg(t);

	return mc_tok_u64(&a, v);
}

/* Parses the key at tok[1] and the flags at tok[first..]: NULL, or the
 * error line (without "CLIENT_ERROR ") to answer. */
static const char *parse(struct mc_ctx *x, unsigned first, struct mflags *mf)
{
	const struct mc_req *r = &x->req;
	const char *err = NULL;
	uint32_t u32;

	memset(mf, 0, sizeof(*mf));
	mf->delta = 1;
	mf->first = first;
	mf->end = r->ntok;
	if (r->ntok < 2 || r->tok[1].n > MC_KEY_MAX)
		return "bad command line format";
	if (r->ntok > META_TOKENS_MAX || r->more)
		return "options flags are too long";
	mf->raw_key = &r->tok[1];
	for (unsigned i = first; i < r->ntok; i++) {
		const struct mc_tok *t = &r->tok[i];
		int bit = flag_bit(t->p[0]);
		if (bit >= 0 && (mf->seen >> bit & 1))
			return "duplicate flag";
		if (bit >= 0)
			mf->seen |= UINT64_C(1) << bit;
		switch (t->p[0]) {
		case 'b':
			mf->binary = true;
			break;
		case 'N':
			if (!arg_i32(t, &mf->n_ttl))
				err = "bad token in command line format";
			break;
		case 'T':
			if (!arg_i32(t, &mf->t_ttl))
				err = "bad token in command line format";
			break;
		case 'R':
			if (!arg_i32(t, &mf->r_ttl))
				err = "bad token in command line format";
			break;
		case 'C':
		case 'E':
			if (!arg_u64(t, &mf->cas) && t->p[0] == 'C')
				err = "bad token in command line format";
			break;
		case 'F': {
			struct mc_tok a = flag_arg(t);
			if (!mc_tok_u32(&a, &u32))
				err = err ? err : "bad command line format";
			mf->flags = u32;
			break;
		}
		case 'M':
			mf->mode = t->n > 1 ? t->p[1] : 0;
			break;
		case 'J':
			if (!arg_u64(t, &mf->initial))
				err = "invalid numeric initial value";
			break;
		case 'D':
			if (!arg_u64(t, &mf->delta))
				err = "invalid numeric delta value";
			break;
		case 'O':
			if (t->n > META_OPAQUE_MAX)
				err = "opaque token too long";
			break;
		case 'P': /* proxy hints: ignored */
		case 'L':
		case 'I':
		case 'c':
		case 'f':
		case 'h':
		case 'k':
		case 'l':
		case 'q':
		case 's':
		case 't':
		case 'u':
		case 'v':
		case 'x':
			break;
		default:
			return "invalid flag";
		}
	}
	if (err)
		return err;
	if (has(mf, 'E'))
		return "the E flag is not supported: shmcached assigns every "
		       "version (CAS) itself, use C to compare";
	if (mf->binary) {
		long n = mc_base64_decode(mf->raw_key->p, mf->raw_key->n,
					  mf->key, sizeof(mf->key));
		if (n <= 0)
			return "error decoding key";
		mf->klen = (size_t)n;
	} else {
		if (!mc_key_ok(mf->raw_key->p, mf->raw_key->n))
			return "bad command line format";
		memcpy(mf->key, mf->raw_key->p, mf->raw_key->n);
		mf->klen = mf->raw_key->n;
	}
	return NULL;
}

/* A TTL token (N, T) as the engine's: seconds, 0 never; *expired when
 * memcached would store it already expired. */
static uint32_t ttl_of(const struct mc_ctx *x, int32_t token, bool *expired)
{
	return mc_exptime_ttl(token, x->now, expired);
}

/* ------------------------------------------------------------------------
 * Reply pieces
 * ------------------------------------------------------------------------ */

static void out_flag(struct mc_out *out, char c)
{
	char b[2] = { ' ', c };

	mc_out_put(out, b, 2);
}

static void out_flag_u64(struct mc_out *out, char c, uint64_t v)
{
	out_flag(out, c);
	mc_out_u64(out, v);
}

/* The key as the request gave it: " k<key>", or " k<base64> b". */
static void out_key(struct mc_out *out, const struct mflags *mf)
{
	out_flag(out, 'k');
	mc_out_put(out, mf->raw_key->p, mf->raw_key->n);
	if (mf->binary)
		out_flag(out, 'b');
}

/* The flags every reply carries, if t is one: O (the token as it came)
 * and k. */
static void out_echo_flag(struct mc_out *out, const struct mflags *mf,
			  const struct mc_tok *t)
{
	if (t->p[0] == 'O') {
		mc_out_put(out, " ", 1);
		mc_out_put(out, t->p, t->n);
	} else if (t->p[0] == 'k') {
		out_key(out, mf);
	}
}

/* A reply's O and k flags, in request order. */
static void out_echo(struct mc_ctx *x, const struct mflags *mf)
{
	for (unsigned i = mf->first; i < mf->end; i++)
		out_echo_flag(x->out, mf, &x->req.tok[i]);
}

/* A status line with only the O and k flags ("NF", "EX", "EN"...). */
static void reply_code(struct mc_ctx *x, const struct mflags *mf,
		       const char *code)
{
	mc_out_str(x->out, code);
	out_echo(x, mf);
	mc_out_crlf(x->out);
}

/* Seconds until `until` as the t flag gives them: -1 never. */
static int64_t remaining(const struct mc_ctx *x, uint32_t until)
{
	if (until == 0)
		return -1;
	return until > x->now ? (int64_t)(until - x->now) : 0;
}

static void bad_line(struct mc_ctx *x, const char *err)
{
	mc_reply_client_error(x, err);
}

/* ------------------------------------------------------------------------
 * Leases
 * ------------------------------------------------------------------------ */

struct mc_lease {
	struct mc_session *s; /* the holder (its nleases counts this) */
	uint64_t token;	      /* the version a vivified win reported (c) */
	uint64_t seen;	      /* the key's version when won, 0 absent */
	uint32_t until;	      /* region clock second it ends at */
	uint32_t klen;
	struct eng_flight f;
	uint8_t key[MC_KEY_MAX];
};

static struct mc_lease *lease_find(struct mc_worker *w, const void *key,
				   size_t klen)
{
	for (uint32_t i = 0; i < w->nleases; i++) {
		struct mc_lease *l = &w->leases[i];
		if (l->klen == klen && !memcmp(l->key, key, klen))
			return l;
	}
	return NULL;
}

/* Ends lease l: its flight ends (waiters wake), its slot is reused. */
static void lease_end(struct mc_worker *w, struct mc_lease *l)
{
	eng_flight_done(&w->eng, &l->f);
	if (l->s && l->s->nleases)
		l->s->nleases--;
	*l = w->leases[--w->nleases];
}

/* Keeps the flight f, won by this request's session, as a lease of ttl
 * seconds (0: the default).  Returns the lease, or NULL with the flight
 * ended when the table could not grow or is at its limits (*full set). */
static struct mc_lease *lease_add(struct mc_ctx *x, const struct mflags *mf,
				  struct eng_flight *f, uint32_t ttl,
				  uint64_t seen, bool *full)
{
	struct mc_worker *w = x->w;

	*full = x->s->nleases >= MC_SESSION_LEASES_MAX ||
		w->nleases >= MC_WORKER_LEASES_MAX;
	if (*full) {
		eng_flight_done(&w->eng, f);
		return NULL;
	}
	if (w->nleases == w->cap_leases) {
		uint32_t cap = w->cap_leases ? w->cap_leases * 2 : 16;
		struct mc_lease *p = realloc(w->leases, cap * sizeof(*p));
		if (!p) {
			eng_flight_done(&w->eng, f);
			return NULL;
		}
		w->leases = p;
		w->cap_leases = cap;
	}
	if (ttl == 0)
		ttl = MC_LEASE_DEFAULT_S;
	if (ttl > MC_LEASE_MAX_S)
		ttl = MC_LEASE_MAX_S;
	struct mc_lease *l = &w->leases[w->nleases++];
	l->s = x->s;
	l->token = 0;
	l->seen = seen;
	l->until = x->now + ttl;
	l->klen = (uint32_t)mf->klen;
	l->f = *f;
	memcpy(l->key, mf->key, mf->klen);
	x->s->nleases++;
	return l;
}

void mc_lease_stored(struct mc_worker *w, const void *key, size_t klen)
{
	struct mc_lease *l;

	if (w->nleases && (l = lease_find(w, key, klen)))
		lease_end(w, l);
}

/* The key of lease l was written or removed since it was won, by anyone
 * (a mapped client, another thread's connection): its load is done. */
static bool lease_moot(struct mc_worker *w, const struct mc_lease *l)
{
	struct eng_info in;
	int rc = eng_inspect(&w->eng, l->key, l->klen, NULL, 0, &in);

	if (rc == 0)
		return !in.stale && in.cas != l->seen;
	return rc == -ENOENT && l->seen != 0;
}

void mc_leases_tick(struct mc_worker *w)
{
	uint32_t now = eng_now(&w->eng);

	for (uint32_t i = 0; i < w->nleases;)
		if (w->leases[i].until <= now || lease_moot(w, &w->leases[i]))
			lease_end(w, &w->leases[i]);
		else
			i++;
}

void mc_leases_end_session(struct mc_worker *w, struct mc_session *s)
{
	for (uint32_t i = 0; i < w->nleases;)
		if (w->leases[i].s == s)
			lease_end(w, &w->leases[i]);
		else
			i++;
	s->nleases = 0;
}

void mc_leases_fini(struct mc_worker *w)
{
	/* The sessions may be gone already: only the flights end. */
	for (uint32_t i = 0; i < w->nleases; i++)
		eng_flight_done(&w->eng, &w->leases[i].f);
	free(w->leases);
	w->leases = NULL;
	w->nleases = w->cap_leases = 0;
}

/* ------------------------------------------------------------------------
 * mg
 * ------------------------------------------------------------------------ */

/* What a meta get found. */
struct mget {
	int rc; /* 0 hit (or vivified), -ENOENT miss */
	uint64_t cas;
	size_t vlen;
	uint32_t flags;
	uint32_t until; /* when reads stop serving it (the soft expiry of
			   an item with grace), 0 never */
	bool stale;	/* X */
	bool win;	/* W */
	bool lost;	/* Z */
	bool vivified;	/* N on a miss: an empty stand-in, no item */
	size_t val_off; /* the value's offset in out->p, when copied */
	bool copied;
};

/* Reads key with (claim) or without the get_or_load claim, copying the
 * value into the output buffer META_LINE_MAX past its end when want says
 * so (a claim always copies: the engine claims a stale item's reload only
 * when its value fits).  Returns the engine's code; a hit whose value was
 * not wanted is 0. */
static int mg_read(struct mc_ctx *x, const struct mflags *mf, bool claim,
		   bool want, struct mget *g, struct eng_flight *f)
{
	struct eng *e = &x->w->eng;
	size_t cap = want || claim ? 1024 : 0;
	struct eng_meta m = { 0 };
	int rc = -ENOBUFS;

	for (int tries = 0; tries < 4 && rc == -ENOBUFS; tries++) {
		uint8_t *p = NULL;
		if (cap) {
			p = mc_out_reserve(x->out, META_LINE_MAX + cap + 2);
			if (!p)
				return -ENOMEM;
			p += META_LINE_MAX;
		}
		if (claim) {
			rc = eng_get_or_claim_ex(e, mf->key, mf->klen, p, cap,
						 &m, f);
		} else if (has(mf, 'u')) {
			/* A miss fills none of it. */
			struct eng_info in = { 0 };
			rc = eng_inspect(e, mf->key, mf->klen, p, cap, &in);
			m = (struct eng_meta){ .cas = in.cas,
					       .vlen = in.vlen,
					       .flags = in.flags,
					       .expire = in.soft ? in.soft
								 : in.expire,
					       .soft = in.soft,
					       .stale = in.stale };
			if ((rc == 0 || rc == -ENOBUFS) && in.stale)
				rc = -ENOENT; /* the claim path serves it */
		} else {
			rc = eng_get_ex(e, mf->key, mf->klen, p, cap, &m);
		}
		if (rc == -ENOBUFS && !want && !(claim && m.stale))
			rc = 0; /* found; its value is not wanted */
		cap = m.vlen;
	}
	if (rc == -ENOBUFS)
		return -ETIMEDOUT; /* the value kept changing size */
	if (rc == 0 || rc == ENG_LOAD || rc == ENG_WAIT) {
		g->cas = m.cas;
		g->vlen = m.vlen;
		g->flags = m.flags;
		g->until = m.expire;
		g->stale = m.stale;
		g->copied = want && (rc == 0 || m.stale);
		g->val_off = x->out->len + META_LINE_MAX;
	}
	return rc;
}

/* The lookup of a meta get, with its claims: fills g, or returns an
 * engine error to answer. */
static int mg_lookup(struct mc_ctx *x, const struct mflags *mf, bool want,
		     struct mget *g)
{
	struct eng_flight f;
	int rc = mg_read(x, mf, false, want, g, &f);

	g->rc = 0;
	if (rc == 0)
		goto hit;
	if (rc != -ENOENT)
		return rc;
	/* A miss, or an item past its soft expiry: the get_or_load claim
	 * tells who reloads it. */
	rc = mg_read(x, mf, true, want, g, &f);
	if (rc == ENG_LOAD && !g->stale && !has(mf, 'N')) {
		eng_flight_done(&x->w->eng, &f); /* a plain miss */
		rc = -ENOENT;
	}
	switch (rc) {
	case 0:
		g->lost = g->stale; /* another client reloads it */
		break;
	case ENG_LOAD:
		g->win = true;
		g->vivified = !g->stale;
		break;
	case ENG_WAIT:
		if (!has(mf, 'N')) {
			g->rc = -ENOENT;
			return 0;
		}
		g->lost = g->vivified = true;
		break;
	case -ENOENT:
		g->rc = -ENOENT;
		return 0;
	default:
		return rc;
	}
	if (g->vivified) {
		bool expired;
		uint32_t ttl = ttl_of(x, mf->n_ttl, &expired);
		g->cas = g->vlen = g->flags = 0;
		g->until = ttl && !expired ? x->now + ttl : 0;
		g->copied = false;
	}
	if (g->win) {
		uint32_t ttl = has(mf, 'N') && mf->n_ttl > 0
				       ? (uint32_t)mf->n_ttl
				       : 0;
		bool full;
		struct mc_lease *l = lease_add(x, mf, &f, ttl,
					       g->vivified ? 0 : g->cas, &full);
		if (!l)
			return full ? -ENOSPC : -ENOMEM;
		if (g->vivified)
			g->cas = l->token = eng_version_max(&x->w->eng) + 1;
	}
	return 0;

hit:
	/* R: a win when the item has less than the token's seconds left. */
	if (has(mf, 'R') && g->until &&
	    remaining(x, g->until) < (int64_t)mf->r_ttl) {
		rc = eng_flight_claim(&x->w->eng, mf->key, mf->klen, &f);
		if (rc == ENG_LOAD) {
			bool full;
			if (!lease_add(x, mf, &f, (uint32_t)mf->r_ttl, g->cas,
				       &full))
				return full ? -ENOSPC : -ENOMEM;
			g->win = true;
		} else if (rc == ENG_WAIT) {
			g->lost = true;
		} else {
			return rc;
		}
	}
	return 0;
}

/* The hard expiry of a stale item, for its t flag (reads report the soft
 * one, which is past). */
static uint32_t stale_until(struct mc_ctx *x, const struct mflags *mf)
{
	struct eng_info in;

	if (eng_inspect(&x->w->eng, mf->key, mf->klen, NULL, 0, &in))
		return 0;
	return in.expire;
}

static enum mc_result cmd_mg(struct mc_ctx *x)
{
	struct mc_worker *w = x->w;
	struct mflags mf;
	const char *err = parse(x, 2, &mf);
	struct mget g = { 0 };
	struct eng_info pre = { 0 };
	int rc;

	MC_COUNT(w, cmd_meta, 1);
	if (err) {
		bad_line(x, err);
		return MC_DONE;
	}
	bool touch = has(&mf, 'T');
	/* h and l report the item as it was before this get. */
	if ((has(&mf, 'h') || has(&mf, 'l')) &&
	    eng_inspect(&w->eng, mf.key, mf.klen, NULL, 0, &pre))
		pre.use = 0;
	bool want = has(&mf, 'v');
	if ((rc = mg_lookup(x, &mf, want, &g))) {
		if (rc == -ENOMEM)
			mc_reply_server_error(x, "out of memory");
		else if (rc == -ENOSPC)
			mc_reply_server_error(x, MC_LEASES_FULL);
		else
			mc_reply_engine_error(x, rc);
		return MC_DONE;
	}
	if (touch)
		MC_COUNT(w, cmd_touch, 1);
	else
		MC_COUNT(w, cmd_get, 1);
	if (g.rc == -ENOENT) {
		if (touch)
			MC_COUNT(w, touch_misses, 1);
		else
			MC_COUNT(w, get_misses, 1);
		if (!has(&mf, 'q'))
			reply_code(x, &mf, "EN");
		return MC_DONE;
	}
	if (touch)
		MC_COUNT(w, touch_hits, 1);
	else
		MC_COUNT(w, get_hits, 1);

	/* T: a new TTL for a fresh hit (a stale item waits for its reload,
	 * a vivified one does not exist). */
	if (touch && !g.stale && !g.vivified) {
		bool expired;
		uint32_t ttl = ttl_of(x, mf.t_ttl, &expired);
		if (expired)
			eng_del(&w->eng, mf.key, mf.klen);
		else if (eng_touch(&w->eng, mf.key, mf.klen, ttl) == 0)
			g.until = ttl ? x->now + ttl : 0;
	}
	if (g.stale && has(&mf, 't'))
		g.until = stale_until(x, &mf);
	/* C: no value when the client's copy is current. */
	bool value = want && !(has(&mf, 'C') && g.cas == mf.cas);

	struct mc_out *out = x->out;
	if (value) {
		mc_out_str(out, "VA ");
		mc_out_u64(out, g.vlen);
	} else {
		mc_out_str(out, "HD");
	}
	for (unsigned i = mf.first; i < mf.end; i++) {
		const struct mc_tok *t = &x->req.tok[i];
		switch (t->p[0]) {
		case 's':
			out_flag_u64(out, 's', g.vlen);
			break;
		case 't':
			out_flag(out, 't');
			mc_out_i64(out, remaining(x, g.until));
			break;
		case 'c':
			out_flag_u64(out, 'c', g.cas);
			break;
		case 'f':
			out_flag_u64(out, 'f', g.flags);
			break;
		case 'l':
			out_flag_u64(out, 'l', 0);
			break;
		case 'h':
			out_flag_u64(out, 'h', pre.use > 0);
			break;
		default:
			out_echo_flag(out, &mf, t);
			break;
		}
	}
	if (g.lost)
		out_flag(out, 'Z');
	if (g.stale)
		out_flag(out, 'X');
	if (g.win)
		out_flag(out, 'W');
	mc_out_crlf(out);
	if (value) {
		if (g.copied && g.vlen && !out->oom) {
			/* Read META_LINE_MAX past the line's start: move it
			 * up behind the line. */
			memmove(out->p + out->len, out->p + g.val_off, g.vlen);
			out->len += g.vlen;
		}
		mc_out_crlf(out);
	}
	return MC_DONE;
}

/* ------------------------------------------------------------------------
 * ms
 * ------------------------------------------------------------------------ */

/* The engine mode of an ms M token, or -1. */
static int ms_mode(char m)
{
	switch (m) {
	case 0:
	case 'S':
		return ENG_SET;
	case 'E':
		return ENG_ADD;
	case 'A':
		return ENG_APPEND;
	case 'P':
		return ENG_PREPEND;
	case 'R':
		return ENG_REPLACE;
	default:
		return -1;
	}
}

/* What an ms did: its reply code (HD, NS, EX, NF) or an engine error. */
struct mset {
	const char *code;
	int rc;
	uint64_t cas;
	bool stale; /* stored as stale (I): a win handed out stays on */
};

/* An ms with C in set or replace mode: a compare-and-swap that also
 * rewrites a stale item, keeps a write from an older read as stale with
 * I, and stores the first value of a key whose vivified win this worker
 * handed out with that version. */
static void ms_cas(struct mc_ctx *x, const struct mflags *mf,
		   const struct eng_wopts *o, struct mset *r)
{
	struct eng *e = &x->w->eng;
	const struct mc_req *q = &x->req;
	struct eng_wopts co = *o;

	co.mode = ENG_CAS;
	co.cas = mf->cas;
	r->rc = mf->cas ? eng_store(e, mf->key, mf->klen, q->data, q->data_len,
				    &co, &r->cas)
			: -EEXIST;
	if (r->rc == -ENOENT && mf->cas) {
		/* Not found by plain writes: stale, or absent. */
		struct eng_inval iv = { .cas = mf->cas,
					.set_ttl = true,
					.ttl_s = o->ttl_s,
					.set_value = true,
					.val = q->data,
					.vlen = q->data_len,
					.flags = o->flags,
					.fresh = true };
		r->rc = eng_invalidate(e, mf->key, mf->klen, &iv, &r->cas);
		/* A vivified win stands for an empty item of the version
		 * it reported: C compares with that. */
		struct mc_lease *l = lease_find(x->w, mf->key, mf->klen);
		if (r->rc == -ENOENT && l && l->token) {
			co.mode = ENG_ADD;
			r->rc = l->token != mf->cas
					? -EEXIST
					: eng_store(e, mf->key, mf->klen,
						    q->data, q->data_len, &co,
						    &r->cas);
		}
	}
	if (r->rc == -EEXIST && mf->cas && has(mf, 'I')) {
		/* A write from an older read: kept, as stale, with the
		 * item's expiry. */
		struct eng_inval iv = { .cas = mf->cas,
					.cas_older = true,
					.set_value = true,
					.val = q->data,
					.vlen = q->data_len,
					.flags = o->flags };
		r->rc = eng_invalidate(e, mf->key, mf->klen, &iv, &r->cas);
		r->stale = r->rc == 0;
	}
	if (r->rc == -EEXIST && !mf->cas) {
		struct eng_info in;
		if (eng_inspect(e, mf->key, mf->klen, NULL, 0, &in) == -ENOENT)
			r->rc = -ENOENT;
	}
	switch (r->rc) {
	case 0:
		MC_COUNT(x->w, cas_hits, 1);
		break;
	case -EEXIST:
		MC_COUNT(x->w, cas_badval, 1);
		r->code = "EX";
		break;
	case -ENOENT:
		MC_COUNT(x->w, cas_misses, 1);
		r->code = "NF";
		break;
	}
}

/* An ms in append or prepend mode: C is checked just before (not in the
 * same locked step); N creates a missing key with the data. */
static void ms_join(struct mc_ctx *x, const struct mflags *mf,
		    const struct eng_wopts *o, struct mset *r)
{
	struct eng *e = &x->w->eng;
	const struct mc_req *q = &x->req;

	for (int tries = 0; tries < 2; tries++) {
		if (has(mf, 'C')) {
			struct eng_info in = { 0 };
			r->rc = eng_inspect(e, mf->key, mf->klen, NULL, 0, &in);
			if (r->rc == 0 && (in.cas != mf->cas || in.stale))
				r->rc = -EEXIST;
		} else {
			r->rc = 0;
		}
		if (r->rc == 0)
			r->rc = eng_store(e, mf->key, mf->klen, q->data,
					  q->data_len, o, &r->cas);
		if (r->rc != -ENOENT || !has(mf, 'N'))
			break;
		bool expired;
		struct eng_wopts vo = { .mode = ENG_ADD,
					.flags = o->flags,
					.ttl_s = ttl_of(x, mf->n_ttl,
							&expired) };
		if (expired)
			break;
		r->rc = eng_store(e, mf->key, mf->klen, q->data, q->data_len,
				  &vo, &r->cas);
		if (r->rc != -EEXIST)
			break; /* else appeared meanwhile: append to it */
	}
	if (r->rc == -ENOENT)
		r->code = "NS";
	else if (r->rc == -EEXIST)
		r->code = "EX";
}

/* The line's checks, on the first call: NULL, or the error answered
 * (the data block is skipped). */
static bool ms_line_ok(struct mc_ctx *x, struct mflags *mf, uint64_t *len)
{
	const struct mc_req *r = &x->req;
	const char *err;

	if (r->ntok < 3 || !mc_tok_u64(&r->tok[2], len) ||
	    *len > (uint64_t)INT32_MAX - 2) {
		bad_line(x, "bad command line format");
		return false;
	}
	if ((err = parse(x, 3, mf)))
		bad_line(x, err);
	else if (ms_mode(mf->mode) < 0)
		bad_line(x, "invalid mode for ms M token");
	else if (mf->klen + *len > x->w->eng.g.max_kv)
		mc_reply_engine_error(x, -E2BIG);
	else
		return true;
	x->s->swallow = *len + 2;
	return false;
}

static enum mc_result cmd_ms(struct mc_ctx *x)
{
	struct mc_worker *w = x->w;
	struct mc_req *q = &x->req;
	struct mflags mf;
	uint64_t len;

	if (!q->data) {
		if (!ms_line_ok(x, &mf, &len)) {
			MC_COUNT(w, cmd_meta, 1);
			return MC_DONE;
		}
		q->data_len = (size_t)len;
		return MC_NEED_DATA;
	}
	parse(x, 3, &mf); /* checked on the first call */
	MC_COUNT(w, cmd_meta, 1);
	MC_COUNT(w, cmd_set, 1);

	bool expired;
	struct eng_wopts o = { .mode = (enum eng_mode)ms_mode(mf.mode),
			       .flags = mf.flags,
			       .ttl_s = ttl_of(x, mf.t_ttl, &expired) };
	struct mset r = { .code = "HD" };
	bool join = o.mode == ENG_APPEND || o.mode == ENG_PREPEND;
	if (expired && !join) {
		/* Stored already expired: whatever was there is gone. */
		eng_del(&w->eng, mf.key, mf.klen);
		mc_lease_stored(w, mf.key, mf.klen);
	} else if (join) {
		ms_join(x, &mf, &o, &r);
	} else if (has(&mf, 'C') && o.mode != ENG_ADD) {
		ms_cas(x, &mf, &o, &r);
	} else {
		r.rc = eng_store(&w->eng, mf.key, mf.klen, q->data, q->data_len,
				 &o, &r.cas);
		if (r.rc == -EEXIST || r.rc == -ENOENT)
			r.code = "NS";
	}
	if (r.rc == -ESTALE) /* a prefix the near cache blocks */
		r.code = "NS";
	if (r.rc && r.rc != -EEXIST && r.rc != -ENOENT && r.rc != -ESTALE) {
		mc_reply_engine_error(x, r.rc);
		return MC_DONE;
	}
	/* A store refused under a prefix the near cache blocks ends the win
	 * too: its holder tried, and the next reader loads for itself. */
	if ((r.rc == 0 && !r.stale) || r.rc == -ESTALE)
		mc_lease_stored(w, mf.key, mf.klen);
	else if (r.rc)
		r.cas = 0;
	if (r.rc == 0 && has(&mf, 'q'))
		return MC_DONE;

	size_t size = q->data_len;
	if (r.rc == 0 && join && has(&mf, 's')) {
		struct eng_info in;
		if (eng_inspect(&w->eng, mf.key, mf.klen, NULL, 0, &in) == 0)
			size = in.vlen;
	}
	mc_out_str(x->out, r.code);
	for (unsigned i = mf.first; i < mf.end; i++) {
		const struct mc_tok *t = &q->tok[i];
		switch (t->p[0]) {
		default:
			out_echo_flag(x->out, &mf, t);
			break;
		case 'c':
			out_flag_u64(x->out, 'c', r.cas);
			break;
		case 's':
			out_flag_u64(x->out, 's', size);
			break;
		}
	}
	mc_out_crlf(x->out);
	return MC_DONE;
}

/* ------------------------------------------------------------------------
 * md
 * ------------------------------------------------------------------------ */

static enum mc_result cmd_md(struct mc_ctx *x)
{
	struct mc_worker *w = x->w;
	struct eng *e = &w->eng;
	struct mflags mf;
	const char *err = parse(x, 2, &mf);
	int rc;

	MC_COUNT(w, cmd_meta, 1);
	if (err) {
		bad_line(x, err);
		return MC_DONE;
	}
	if (has(&mf, 'I') || has(&mf, 'x')) {
		/* Mark stale (I) and/or empty the value (x) in one step,
		 * under the CAS check. */
		bool expired = false;
		struct eng_inval iv = {
			.cas = mf.cas,
			.set_ttl = has(&mf, 'T') || has(&mf, 'x'),
			.ttl_s = has(&mf, 'T') ? ttl_of(x, mf.t_ttl, &expired)
					       : 0,
			.set_value = has(&mf, 'x'),
			.val = "",
			.flags = mf.flags,
			.fresh = !has(&mf, 'I'),
		};
		if (has(&mf, 'C') && mf.cas == 0)
			rc = eng_inspect(e, mf.key, mf.klen, NULL, 0,
					 &(struct eng_info){ 0 }) == 0
				     ? -EEXIST
				     : -ENOENT;
		else if (expired)
			rc = eng_del(e, mf.key, mf.klen);
		else
			rc = eng_invalidate(e, mf.key, mf.klen, &iv, NULL);
	} else {
		rc = 0;
		if (has(&mf, 'C')) {
			/* Checked just before the delete, not in the same
			 * locked step: a delete of a newer version only
			 * costs a miss. */
			struct eng_info in = { 0 };
			rc = eng_inspect(e, mf.key, mf.klen, NULL, 0, &in);
			if (rc == 0 && in.cas != mf.cas)
				rc = -EEXIST;
		}
		if (rc == 0)
			rc = eng_del(e, mf.key, mf.klen);
	}
	switch (rc) {
	case 0:
		MC_COUNT(w, delete_hits, 1);
		/* The win on it, if this worker handed one out, is over:
		 * the next get may win. */
		mc_lease_stored(w, mf.key, mf.klen);
		if (!has(&mf, 'q'))
			reply_code(x, &mf, "HD");
		break;
	case -ENOENT:
		MC_COUNT(w, delete_misses, 1);
		reply_code(x, &mf, "NF");
		break;
	case -EEXIST:
		MC_COUNT(w, delete_misses, 1);
		reply_code(x, &mf, "EX");
		break;
	default:
		mc_reply_engine_error(x, rc);
		break;
	}
	return MC_DONE;
}

/* ------------------------------------------------------------------------
 * ma
 * ------------------------------------------------------------------------ */

/* A counter's value as incr reads it: blanks, decimal digits below 2^64,
 * blanks (the text protocol's decr pads with spaces). */
static bool counter_value(const uint8_t *p, size_t n, uint64_t *v)
{
	size_t i = 0, j = n;

	while (i < n && p[i] == ' ')
		i++;
	while (j > i &&
	       (p[j - 1] == ' ' || p[j - 1] == '\r' || p[j - 1] == '\n'))
		j--;
	struct mc_tok t = { .p = (const char *)p + i, .n = j - i };
	return mc_tok_u64(&t, v);
}

/* An ma with C: the value read with its version, the result stored only
 * if the version is still the same. */
static int ma_cas(struct mc_ctx *x, const struct mflags *mf, bool decr,
		  uint64_t *v, uint64_t *cas)
{
	struct eng *e = &x->w->eng;
	struct eng_meta m;
	uint8_t buf[64];
	char digits[24];
	int rc = eng_get_ex(e, mf->key, mf->klen, buf, sizeof(buf), &m);

	if (rc == -ENOBUFS)
		return m.cas == mf->cas ? -EDOM : -EEXIST;
	if (rc)
		return rc;
	if (m.cas != mf->cas)
		return -EEXIST;
	if (!counter_value(buf, m.vlen, v))
		return -EDOM;
	*v = decr ? (*v > mf->delta ? *v - mf->delta : 0) : *v + mf->delta;
	int n = snprintf(digits, sizeof(digits), "%llu",
			 (unsigned long long)*v);
	struct eng_wopts o = { .mode = ENG_CAS,
			       .flags = m.flags,
			       .expire_at = m.expire,
			       .cas = mf->cas };
	return eng_store(e, mf->key, mf->klen, digits, (size_t)n, &o, cas);
}

static enum mc_result cmd_ma(struct mc_ctx *x)
{
	struct mc_worker *w = x->w;
	struct eng *e = &w->eng;
	struct mflags mf;
	const char *err = parse(x, 2, &mf);
	bool decr = false, expired = false;
	uint64_t v = 0, cas = 0;
	int rc;

	MC_COUNT(w, cmd_meta, 1);
	if (err) {
		bad_line(x, strstr(err, "E flag")
				    ? err
				    : "invalid or duplicate flag");
		return MC_DONE;
	}
	switch (mf.mode) {
	case 0:
	case 'I':
	case '+':
		break;
	case 'D':
	case '-':
		decr = true;
		break;
	default:
		bad_line(x, "invalid mode for ma M token");
		return MC_DONE;
	}
	for (int tries = 0; tries < 2; tries++) {
		rc = has(&mf, 'C') ? ma_cas(x, &mf, decr, &v, &cas)
				   : eng_arith(e, mf.key, mf.klen, decr,
					       mf.delta, NULL, 0, &v, &cas);
		if (rc != -ENOENT || !has(&mf, 'N'))
			break;
		/* N: a miss creates the item with J (the delta is not
		 * applied), as memcached does. */
		char digits[24];
		int n = snprintf(digits, sizeof(digits), "%llu",
				 (unsigned long long)mf.initial);
		struct eng_wopts o = { .mode = ENG_ADD,
				       .ttl_s = ttl_of(x, mf.n_ttl, &expired) };
		if (expired)
			break;
		rc = eng_store(e, mf.key, mf.klen, digits, (size_t)n, &o, &cas);
		v = mf.initial;
		if (rc != -EEXIST)
			break; /* else created meanwhile: count on it */
	}
	switch (rc) {
	case 0:
		break;
	case -ENOENT:
		MC_COUNT(w, incr_misses, !decr);
		MC_COUNT(w, decr_misses, decr);
		reply_code(x, &mf, expired ? "NS" : "NF");
		return MC_DONE;
	case -EEXIST:
		reply_code(x, &mf, "EX");
		return MC_DONE;
	case -ESTALE: /* N under a prefix the near cache blocks */
		reply_code(x, &mf, "NS");
		return MC_DONE;
	case -EDOM:
		bad_line(x, "cannot increment or decrement non-numeric value");
		return MC_DONE;
	default:
		mc_reply_engine_error(x, rc);
		return MC_DONE;
	}
	MC_COUNT(w, incr_hits, !decr);
	MC_COUNT(w, decr_hits, decr);
	mc_lease_stored(w, mf.key, mf.klen);

	uint32_t until = 0;
	if (has(&mf, 'T')) {
		uint32_t ttl = ttl_of(x, mf.t_ttl, &expired);
		if (expired)
			eng_del(e, mf.key, mf.klen);
		else if (eng_touch(e, mf.key, mf.klen, ttl) == 0)
			until = ttl ? x->now + ttl : 0;
	} else if (has(&mf, 't')) {
		struct eng_info in;
		if (eng_inspect(e, mf.key, mf.klen, NULL, 0, &in) == 0)
			until = in.soft ? in.soft : in.expire;
	}
	if (has(&mf, 'q'))
		return MC_DONE;

	char digits[24];
	int n = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)v);
	struct mc_out *out = x->out;
	if (has(&mf, 'v')) {
		mc_out_str(out, "VA ");
		mc_out_u64(out, (uint64_t)n);
	} else {
		mc_out_str(out, "HD");
	}
	for (unsigned i = mf.first; i < mf.end; i++) {
		const struct mc_tok *t = &x->req.tok[i];
		switch (t->p[0]) {
		case 'c':
			out_flag_u64(out, 'c', cas);
			break;
		case 't':
			out_flag(out, 't');
			mc_out_i64(out, remaining(x, until));
			break;
		default:
			out_echo_flag(out, &mf, t);
			break;
		}
	}
	mc_out_crlf(out);
	if (has(&mf, 'v')) {
		mc_out_put(out, digits, (size_t)n);
		mc_out_crlf(out);
	}
	return MC_DONE;
}

/* ------------------------------------------------------------------------
 * me, mn
 * ------------------------------------------------------------------------ */

/* "me <key> [b]": memcached's debug line with the fields the engine has:
 * exp (seconds left, -1 never), cas, fetch (read since stored: the use
 * count) and size (the entry's bytes in the ring); no la, no cls. */
static enum mc_result cmd_me(struct mc_ctx *x)
{
	const struct mc_req *r = &x->req;
	uint8_t key[MC_KEY_MAX];
	struct eng_info in;
	long klen;
	bool b = r->ntok >= 3 && mc_tok_is(&r->tok[2], "b");

	MC_COUNT(x->w, cmd_meta, 1);
	if (r->ntok < 2 || r->tok[1].n > MC_KEY_MAX) {
		bad_line(x, "bad command line format");
		return MC_DONE;
	}
	if (b) {
		klen = mc_base64_decode(r->tok[1].p, r->tok[1].n, key,
					sizeof(key));
	} else {
		klen = mc_key_ok(r->tok[1].p, r->tok[1].n) ? (long)r->tok[1].n
							   : -1;
		if (klen > 0)
			memcpy(key, r->tok[1].p, (size_t)klen);
	}
	if (klen <= 0) {
		bad_line(x, "bad command line format");
		return MC_DONE;
	}
	int rc = eng_inspect(&x->w->eng, key, (size_t)klen, NULL, 0, &in);
	if (rc == -ENOENT) {
		mc_out_str(x->out, "EN\r\n");
		return MC_DONE;
	}
	if (rc) {
		mc_reply_engine_error(x, rc);
		return MC_DONE;
	}
	mc_out_str(x->out, "ME ");
	mc_out_put(x->out, r->tok[1].p, r->tok[1].n);
	mc_out_str(x->out, " exp=");
	mc_out_i64(x->out,
		   remaining(x, in.stale || !in.soft ? in.expire : in.soft));
	mc_out_str(x->out, " cas=");
	mc_out_u64(x->out, in.cas);
	mc_out_str(x->out, in.use ? " fetch=yes" : " fetch=no");
	mc_out_str(x->out, " size=");
	mc_out_u64(x->out, in.size);
	mc_out_crlf(x->out);
	return MC_DONE;
}

static enum mc_result cmd_mn(struct mc_ctx *x)
{
	MC_COUNT(x->w, cmd_meta, 1);
	mc_out_str(x->out, "MN\r\n");
	return MC_DONE;
}

/* Every meta command but mn needs its key (me says so itself, as in
 * memcached). */
static const struct mc_cmd commands[] = {
	{ "mg", cmd_mg, 2, 0 }, { "ms", cmd_ms, 2, 0 }, { "md", cmd_md, 2, 0 },
	{ "ma", cmd_ma, 2, 0 }, { "mn", cmd_mn, 1, 0 }, { "me", cmd_me, 1, 0 },
};

const struct mc_cmd *mc_meta_lookup(const char *name, size_t n)
{
	if (n != 2 || name[0] != 'm')
		return NULL;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].name[1] == name[1])
			return &commands[i];
	return NULL;
}
