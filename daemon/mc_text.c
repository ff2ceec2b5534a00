/*
 * mc_text.c - memcached's text protocol: the retrieval (get, gets, gat,
 * gats), storage (set, add, replace, append, prepend, cas), delete,
 * arithmetic (incr, decr) and touch commands, flush_all, version,
 * verbosity and quit, as memcached 1.6's doc/protocol.txt defines them and
 * its proto_text.c answers them.  `stats` is mc_stats.c's.
 *
 * Replies are memcached's, word for word; where memcached versions differ
 * this follows the 1.6 release Debian 12 ships (1.6.18), which the
 * integration test test_mc_diff.py compares it with: a line with more or
 * fewer words than its command takes is "ERROR", not a command.  A trailing `noreply` silences
 * every reply of the command it ends, errors included, as in memcached.
 *
 * Retrieval writes each value straight into the connection's output: the
 * keys of a get are read in batches with eng_mget() (their memory misses
 * overlap) into slots reserved in the output, and the slots are closed up
 * behind their "VALUE" lines.  A value larger than its slot is read again
 * on its own, its line written first and the value read in place behind it.
 */
#include <errno.h>
#include <string.h>

#include "mc_int.h"
#include "shmc_version.h"

/* ------------------------------------------------------------------------
 * Shared parts
 * ------------------------------------------------------------------------ */

#define BAD_FORMAT "bad command line format"

/* A "VALUE <key> <flags> <bytes> [<cas>]\r\n" line is at most this many
 * bytes more than its key. */
#define VALUE_HDR_EXTRA (6 + 1 + 10 + 1 + 20 + 1 + 20 + 2)

/* The room a retrieval gives each value before it knows its size: a
 * larger value is read a second time, into a place of its size. */
#define GET_GUESS 2048u

/* Keys a retrieval reads together (eng_mget() overlaps their loads). */
#define GET_BATCH 16u

/* True when the command's last token is "noreply".  As in memcached, the
 * token counts whether or not the command had its other arguments: in
 * "delete noreply" it is both the key and the word. */
static bool has_noreply(const struct mc_req *r)
{
	return r->ntok > 1 && !r->more &&
	       mc_tok_is(&r->tok[r->ntok - 1], "noreply");
}

/* Drops what the command wrote since `mark` when it was told noreply. */
static void quiet(struct mc_ctx *x, size_t mark, bool noreply)
{
	if (noreply && !x->out->oom)
		x->out->len = mark;
}

static bool key_tok_ok(const struct mc_tok *t)
{
	return mc_key_ok(t->p, t->n);
}

/* ------------------------------------------------------------------------
 * Retrieval
 * ------------------------------------------------------------------------ */

/* Writes v in decimal at p; returns the digits written (1 to 20). */
static size_t put_dec(char *p, uint64_t v)
{
	static const char pairs[] = "00010203040506070809"
				    "10111213141516171819"
				    "20212223242526272829"
				    "30313233343536373839"
				    "40414243444546474849"
				    "50515253545556575859"
				    "60616263646566676869"
				    "70717273747576777879"
				    "80818283848586878889"
				    "90919293949596979899";
	size_t n = 1;

	for (uint64_t x = v; x >= 10; x /= 10)
		n++;
	char *q = p + n;
	while (v >= 100) {
		q -= 2;
		memcpy(q, pairs + 2 * (v % 100), 2);
		v /= 100;
	}
	if (v >= 10) {
		q -= 2;
		memcpy(q, pairs + 2 * v, 2);
	} else {
		*--q = (char)('0' + v);
	}
	return n;
}

/* Formats a value's line into buf (key + VALUE_HDR_EXTRA bytes);
 * returns its length. */
static size_t value_hdr(char *buf, const struct mc_tok *key,
			const struct eng_meta *m, bool with_cas)
{
	size_t n = 6;

	memcpy(buf, "VALUE ", 6);
	memcpy(buf + n, key->p, key->n);
	n += key->n;
	buf[n++] = ' ';
	n += put_dec(buf + n, m->flags);
	buf[n++] = ' ';
	n += put_dec(buf + n, m->vlen);
	if (with_cas) {
		buf[n++] = ' ';
		n += put_dec(buf + n, m->cas);
	}
	buf[n++] = '\r';
	buf[n++] = '\n';
	return n;
}

/* Writes a value's line at out->p + at, the value (already in the output
 * at `val`, m->vlen bytes, at or after at + the line's length, or
 * overlapping it: it is moved first) behind it and its "\r\n"; returns
 * where the next byte goes.  The room must have been reserved. */
static size_t put_value(struct mc_out *out, size_t at, const struct mc_tok *key,
			const struct eng_meta *m, bool with_cas, size_t val)
{
	char hdr[MC_KEY_MAX + VALUE_HDR_EXTRA];
	size_t h = value_hdr(hdr, key, m, with_cas);

	if (val != at + h)
		memmove(out->p + at + h, out->p + val, m->vlen);
	memcpy(out->p + at, hdr, h);
	memcpy(out->p + at + h + m->vlen, "\r\n", 2);
	return at + h + m->vlen + 2;
}

static bool same_meta(const struct eng_meta *a, const struct eng_meta *b,
		      bool with_cas)
{
	return a->vlen == b->vlen && a->flags == b->flags &&
	       (!with_cas || a->cas == b->cas);
}

/* Reads one key's value into the output with its line.  known (may be
 * NULL) is what an earlier read said of the item: the line is then written
 * first and the value read in place behind it.  Returns 0 (written),
 * -ENOENT (absent: nothing written), -ENOMEM (out->oom) or the engine's
 * error; *m gets the item's metadata on 0. */
static int get_one(struct mc_ctx *x, const struct mc_tok *key, bool with_cas,
		   const struct eng_meta *known, struct eng_meta *m)
{
	struct mc_out *out = x->out;
	struct eng_meta k;
	size_t hmax = key->n + VALUE_HDR_EXTRA;

	if (known)
		k = *known;
	for (;;) {
		size_t cap = known ? k.vlen : GET_GUESS, at = out->len;
		uint8_t *p = mc_out_reserve(out, hmax + cap + 2);
		if (!p)
			return -ENOMEM;
		size_t val = at + hmax;
		if (known)
			val = at + value_hdr((char *)p, key, &k, with_cas);
		int rc = eng_get_ex(&x->w->eng, key->p, key->n, out->p + val,
				    cap, m);
		if (rc == -ENOBUFS) {
			k = *m;
			known = &k;
			continue;
		}
		if (rc)
			return rc;
		if (known && same_meta(&k, m, with_cas)) {
			memcpy(out->p + val + m->vlen, "\r\n", 2);
			out->len = val + m->vlen + 2;
		} else {
			out->len = put_value(out, at, key, m, with_cas, val);
		}
		return 0;
	}
}

static void count_get(struct mc_ctx *x, int rc)
{
	MC_COUNT(x->w, cmd_get, 1);
	if (rc == 0)
		MC_COUNT(x->w, get_hits, 1);
	else if (rc == -ENOENT)
		MC_COUNT(x->w, get_misses, 1);
}

/* get/gets of keys[0..n): eng_mget() into slots of GET_GUESS bytes laid
 * out in the output, then each hit's line written and its value moved up
 * behind it.  Returns 0 or an error as get_one(). */
static int get_batch(struct mc_ctx *x, const struct mc_tok *keys, size_t n,
		     bool with_cas)
{
	struct mc_out *out = x->out;
	struct eng_mkey q[GET_BATCH];
	struct eng_mres res[GET_BATCH];
	size_t val[GET_BATCH], need = 0;

	for (size_t i = 0; i < n; i++)
		need += keys[i].n + VALUE_HDR_EXTRA + GET_GUESS + 2;
	if (!mc_out_reserve(out, need))
		return -ENOMEM;
	size_t at = out->len;
	for (size_t i = 0; i < n; i++) {
		val[i] = at + keys[i].n + VALUE_HDR_EXTRA;
		q[i] = (struct eng_mkey){ .key = keys[i].p,
					  .klen = keys[i].n,
					  .buf = out->p + val[i],
					  .cap = GET_GUESS };
		at = val[i] + GET_GUESS + 2;
	}
	eng_mget(&x->w->eng, n, q, res, with_cas);

	size_t end = out->len;
	for (size_t i = 0; i < n; i++) {
		int rc = res[i].rc;
		if (rc == -ENOBUFS) {
			/* Too large for its slot: read on its own, where it
			 * goes, then the rest of the batch again behind it. */
			struct eng_meta m;
			out->len = end;
			rc = get_one(x, &keys[i], with_cas, &res[i].m, &m);
			count_get(x, rc);
			if (rc && rc != -ENOENT)
				return rc;
			return get_batch(x, keys + i + 1, n - i - 1, with_cas);
		}
		count_get(x, rc);
		if (rc == 0)
			end = put_value(out, end, &keys[i], &res[i].m, with_cas,
					val[i]);
		else if (rc != -ENOENT)
			return rc;
	}
	out->len = end;
	return 0;
}

/* The keys of a retrieval line, past the tok[] the core filled. */
struct key_walk {
	struct mc_req *r;
	unsigned i;
};

static bool next_key(struct key_walk *kw, struct mc_tok *t)
{
	struct mc_req *r = kw->r;

	if (kw->i == r->ntok) {
		if (!r->more)
			return false;
		const struct mc_tok *last = &r->tok[r->ntok - 1];
		const char *from = last->p + last->n;
		r->ntok = mc_tokens(from,
				    (size_t)(r->line + r->line_len - from),
				    r->tok, MC_TOKENS_MAX, &r->more);
		kw->i = 0;
		if (!r->ntok)
			return false;
	}
	*t = r->tok[kw->i++];
	return true;
}

/* Whether the keys kw has still to walk are all valid (kw is kept). */
static bool keys_ok(const struct key_walk *kw)
{
	struct mc_req r = *kw->r;
	struct key_walk rest = { .r = &r, .i = kw->i };
	struct mc_tok t;

	while (next_key(&rest, &t))
		if (!key_tok_ok(&t))
			return false;
	return true;
}

/* gat/gats of one key: its value, then its new expiry. */
static int gat_one(struct mc_ctx *x, const struct mc_tok *key, bool with_cas,
		   uint32_t ttl, bool expired)
{
	struct eng_meta m;
	int rc = get_one(x, key, with_cas, NULL, &m);

	MC_COUNT(x->w, cmd_touch, 1);
	if (rc == 0) {
		MC_COUNT(x->w, touch_hits, 1);
		/* Gone since the read: the value was still served, as
		 * memcached serves the item it touched. */
		int trc = expired ? eng_del(&x->w->eng, key->p, key->n)
				  : eng_touch(&x->w->eng, key->p, key->n, ttl);
		if (trc && trc != -ENOENT)
			return trc;
	} else if (rc == -ENOENT) {
		MC_COUNT(x->w, touch_misses, 1);
	}
	return rc == -ENOENT ? 0 : rc;
}

static enum mc_result retrieve(struct mc_ctx *x, bool with_cas, bool touch)
{
	struct mc_req *r = &x->req;
	struct mc_out *out = x->out;
	unsigned first = touch ? 2 : 1;
	uint32_t ttl = 0;
	bool expired = false;

	if (r->ntok <= first) {
		mc_reply_client_error(x, BAD_FORMAT);
		return MC_DONE;
	}
	if (touch) {
		int32_t exptime;
		if (!mc_tok_i32(&r->tok[1], &exptime)) {
			mc_reply_client_error(x, "invalid exptime argument");
			return MC_DONE;
		}
		ttl = mc_exptime_ttl(exptime, x->now, &expired);
	}

	size_t start = out->len;
	struct key_walk kw = { .r = r, .i = first };
	struct mc_tok batch[GET_BATCH], t;
	size_t n = 0;
	int rc = 0;
	bool resumed = x->s->resume != 0;
	if (resumed) {
		/* Paused at out->high (below): on from the next key. */
		const char *from = r->line + x->s->resume;
		r->ntok = mc_tokens(from,
				    (size_t)(r->line + r->line_len - from),
				    r->tok, MC_TOKENS_MAX, &r->more);
		kw.i = 0;
		x->s->resume = 0;
	}
	while (rc == 0 && next_key(&kw, &t)) {
		if (!key_tok_ok(&t)) {
			out->len = start;
			mc_reply_client_error(x, BAD_FORMAT);
			return MC_DONE;
		}
		if (touch) {
			rc = gat_one(x, &t, with_cas, ttl, expired);
		} else {
			batch[n++] = t;
			if (n == GET_BATCH) {
				rc = get_batch(x, batch, n, with_cas);
				n = 0;
			}
		}
		/* A line may name a key thousands of times: with out->high
		 * reached, the replies so far are sent before the rest is
		 * read, so that one line never holds more than that and a
		 * value in memory.  An error after a pause follows the values
		 * already sent.  The rest is checked first, as a bad key
		 * drops every value of its line. */
		if (rc == 0 && n == 0 && out->len >= out->high &&
		    (kw.i < r->ntok || r->more)) {
			if (!resumed && !keys_ok(&kw)) {
				out->len = start;
				mc_reply_client_error(x, BAD_FORMAT);
				return MC_DONE;
			}
			x->s->resume = (size_t)(t.p + t.n - r->line);
			return MC_DONE;
		}
	}
	if (rc == 0 && n)
		rc = get_batch(x, batch, n, with_cas);
	if (out->oom)
		return MC_DONE;
	if (rc) {
		/* A lock not obtained in time, a damaged segment: the
		 * values so far are dropped, the error is the reply. */
		out->len = start;
		mc_reply_engine_error(x, rc);
		return MC_DONE;
	}
	mc_out_str(out, "END\r\n");
	return MC_DONE;
}

static enum mc_result cmd_get(struct mc_ctx *x)
{
	return retrieve(x, false, false);
}

static enum mc_result cmd_gets(struct mc_ctx *x)
{
	return retrieve(x, true, false);
}

static enum mc_result cmd_gat(struct mc_ctx *x)
{
	return retrieve(x, false, true);
}

static enum mc_result cmd_gats(struct mc_ctx *x)
{
	return retrieve(x, true, true);
}

/* ------------------------------------------------------------------------
 * Storage: <cmd> <key> <flags> <exptime> <bytes> [<cas unique>] [noreply]
 * ------------------------------------------------------------------------ */

/* A storage line's fields. */
struct store_line {
	const struct mc_tok *key;
	uint32_t flags;
	int32_t exptime;
	uint64_t cas;
	bool noreply;
};

/* Checks a storage line.  Returns true with the block's length in
 * req.data_len and *sl filled; false when it answered the line itself
 * (setting s->swallow to skip a block it refuses). */
static bool store_line(struct mc_ctx *x, enum eng_mode mode,
		       struct store_line *sl)
{
	struct mc_req *r = &x->req;
	unsigned fields = mode == ENG_CAS ? 6 : 5;
	uint32_t bytes;
	size_t mark = x->out->len;

	/* memcached reads the length first: without it the block cannot be
	 * skipped, and the line is only refused. */
	if (r->ntok < 5 || !mc_tok_u32(&r->tok[4], &bytes) ||
	    bytes > INT32_MAX - 2) {
		mc_reply_client_error(x, BAD_FORMAT);
		return false;
	}
	sl->key = &r->tok[1];
	sl->noreply = has_noreply(r);
	sl->cas = 0;
	if (r->ntok < fields || !key_tok_ok(sl->key) ||
	    !mc_tok_u32(&r->tok[2], &sl->flags) ||
	    !mc_tok_i32(&r->tok[3], &sl->exptime) ||
	    (mode == ENG_CAS && !mc_tok_u64(&r->tok[5], &sl->cas))) {
		mc_reply_client_error(x, BAD_FORMAT);
		x->s->swallow = (uint64_t)bytes + 2;
		quiet(x, mark, sl->noreply);
		return false;
	}
	if ((uint64_t)sl->key->n + bytes > x->w->eng.g.max_kv) {
		/* As memcached: a set that cannot store its value does not
		 * leave the old one to be read. */
		if (mode == ENG_SET)
			eng_del(&x->w->eng, sl->key->p, sl->key->n);
		mc_reply_engine_error(x, -E2BIG);
		x->s->swallow = (uint64_t)bytes + 2;
		quiet(x, mark, sl->noreply);
		return false;
	}
	r->data_len = bytes;
	return true;
}

/* A store whose exptime is already past: memcached stores the item as
 * expired, so the command answers as it would and the key is left
 * absent.  Returns as eng_store(). */
static int store_expired(struct eng *e, const struct mc_tok *key,
			 const struct eng_wopts *o, const struct mc_req *r)
{
	size_t vlen;
	int rc;

	switch (o->mode) {
	case ENG_SET:
		rc = eng_del(e, key->p, key->n);
		return rc == -ENOENT ? 0 : rc;
	case ENG_ADD:
		rc = eng_peek(e, key->p, key->n, NULL, 0, &vlen, NULL);
		if (rc == -ENOENT)
			return 0;
		return rc == 0 || rc == -ENOBUFS ? -EEXIST : rc;
	case ENG_REPLACE:
		return eng_del(e, key->p, key->n);
	default: {
		/* cas: the version check is the engine's, under its lock;
		 * the item it stored is then removed. */
		struct eng_wopts once = *o;
		once.ttl_s = 1;
		rc = eng_store(e, key->p, key->n, r->data, r->data_len, &once,
			       NULL);
		if (rc == 0 && (rc = eng_del(e, key->p, key->n)) == -ENOENT)
			rc = 0;
		return rc;
	}
	}
}

static enum mc_result store(struct mc_ctx *x, enum eng_mode mode)
{
	struct mc_req *r = &x->req;
	struct store_line sl;
	size_t mark = x->out->len;

	if (!store_line(x, mode, &sl))
		return MC_DONE;
	if (!r->data)
		return MC_NEED_DATA;

	struct eng *e = &x->w->eng;
	bool expired = false;
	struct eng_wopts o = { .mode = mode, .flags = sl.flags, .cas = sl.cas };
	/* append and prepend keep the item's flags and expiry. */
	if (mode != ENG_APPEND && mode != ENG_PREPEND)
		o.ttl_s = mc_exptime_ttl(sl.exptime, x->now, &expired);
	int rc = expired ? store_expired(e, sl.key, &o, r)
			 : eng_store(e, sl.key->p, sl.key->n, r->data,
				     r->data_len, &o, NULL);

	MC_COUNT(x->w, cmd_set, 1);
	switch (rc) {
	case 0:
		if (mode == ENG_CAS)
			MC_COUNT(x->w, cas_hits, 1);
		mc_lease_stored(x->w, sl.key->p, sl.key->n);
		mc_out_str(x->out, "STORED\r\n");
		break;
	case -EEXIST:
		if (mode == ENG_CAS) {
			MC_COUNT(x->w, cas_badval, 1);
			mc_out_str(x->out, "EXISTS\r\n");
		} else {
			mc_out_str(x->out, "NOT_STORED\r\n");
		}
		break;
	case -ENOENT:
		if (mode == ENG_CAS) {
			MC_COUNT(x->w, cas_misses, 1);
			mc_out_str(x->out, "NOT_FOUND\r\n");
		} else {
			mc_out_str(x->out, "NOT_STORED\r\n");
		}
		break;
	case -ESTALE: /* set or add under a prefix the near cache blocks */
		mc_out_str(x->out, "NOT_STORED\r\n");
		break;
	default:
		mc_reply_engine_error(x, rc);
		break;
	}
	quiet(x, mark, sl.noreply);
	return MC_DONE;
}

static enum mc_result cmd_set(struct mc_ctx *x)
{
	return store(x, ENG_SET);
}

static enum mc_result cmd_add(struct mc_ctx *x)
{
	return store(x, ENG_ADD);
}

static enum mc_result cmd_replace(struct mc_ctx *x)
{
	return store(x, ENG_REPLACE);
}

static enum mc_result cmd_append(struct mc_ctx *x)
{
	return store(x, ENG_APPEND);
}

static enum mc_result cmd_prepend(struct mc_ctx *x)
{
	return store(x, ENG_PREPEND);
}

static enum mc_result cmd_cas(struct mc_ctx *x)
{
	return store(x, ENG_CAS);
}

/* ------------------------------------------------------------------------
 * delete, incr, decr, touch
 * ------------------------------------------------------------------------ */

/* delete <key> [0] [noreply]: the "0" is memcached 1.4's time argument,
 * which memcached 1.6 still takes when it is 0 (old clients send it). */
static enum mc_result cmd_delete(struct mc_ctx *x)
{
	struct mc_req *r = &x->req;
	size_t mark = x->out->len;
	bool noreply = has_noreply(r);
	unsigned args = r->ntok - (noreply ? 1u : 0u);

	if (r->ntok < 2 || !key_tok_ok(&r->tok[1])) {
		mc_reply_client_error(x, BAD_FORMAT);
	} else if (r->more || args > 3 ||
		   (args == 3 && !mc_tok_is(&r->tok[2], "0"))) {
		mc_reply_client_error(x, "bad command line format.  "
					 "Usage: delete <key> [noreply]");
	} else {
		int rc = eng_del(&x->w->eng, r->tok[1].p, r->tok[1].n);
		if (rc == 0) {
			MC_COUNT(x->w, delete_hits, 1);
			mc_out_str(x->out, "DELETED\r\n");
		} else if (rc == -ENOENT) {
			MC_COUNT(x->w, delete_misses, 1);
			mc_out_str(x->out, "NOT_FOUND\r\n");
		} else {
			mc_reply_engine_error(x, rc);
		}
	}
	quiet(x, mark, noreply);
	return MC_DONE;
}

static enum mc_result arith(struct mc_ctx *x, bool decr)
{
	struct mc_req *r = &x->req;
	size_t mark = x->out->len;
	bool noreply = has_noreply(r);
	uint64_t delta, v;

	if (r->ntok < 3 || !key_tok_ok(&r->tok[1])) {
		mc_reply_client_error(x, BAD_FORMAT);
	} else if (!mc_tok_u64(&r->tok[2], &delta)) {
		mc_reply_client_error(x, "invalid numeric delta argument");
	} else {
		int rc = eng_arith(&x->w->eng, r->tok[1].p, r->tok[1].n, decr,
				   delta, NULL, 0, &v, NULL);
		switch (rc) {
		case 0:
			if (decr)
				MC_COUNT(x->w, decr_hits, 1);
			else
				MC_COUNT(x->w, incr_hits, 1);
			mc_lease_stored(x->w, r->tok[1].p, r->tok[1].n);
			mc_out_u64(x->out, v);
			mc_out_crlf(x->out);
			break;
		case -ENOENT:
			if (decr)
				MC_COUNT(x->w, decr_misses, 1);
			else
				MC_COUNT(x->w, incr_misses, 1);
			mc_out_str(x->out, "NOT_FOUND\r\n");
			break;
		case -EDOM:
			mc_reply_client_error(x, "cannot increment or "
						 "decrement non-numeric value");
			break;
		default:
			mc_reply_engine_error(x, rc);
			break;
		}
	}
	quiet(x, mark, noreply);
	return MC_DONE;
}

static enum mc_result cmd_incr(struct mc_ctx *x)
{
	return arith(x, false);
}

static enum mc_result cmd_decr(struct mc_ctx *x)
{
	return arith(x, true);
}

static enum mc_result cmd_touch(struct mc_ctx *x)
{
	struct mc_req *r = &x->req;
	size_t mark = x->out->len;
	bool noreply = has_noreply(r);
	int32_t exptime;

	if (r->ntok < 3 || !key_tok_ok(&r->tok[1])) {
		mc_reply_client_error(x, BAD_FORMAT);
	} else if (!mc_tok_i32(&r->tok[2], &exptime)) {
		mc_reply_client_error(x, "invalid exptime argument");
	} else {
		bool expired;
		uint32_t ttl = mc_exptime_ttl(exptime, x->now, &expired);
		struct eng *e = &x->w->eng;
		/* An exptime already past: the item expires now. */
		int rc = expired ? eng_del(e, r->tok[1].p, r->tok[1].n)
				 : eng_touch(e, r->tok[1].p, r->tok[1].n, ttl);
		MC_COUNT(x->w, cmd_touch, 1);
		if (rc == 0) {
			MC_COUNT(x->w, touch_hits, 1);
			mc_out_str(x->out, "TOUCHED\r\n");
		} else if (rc == -ENOENT) {
			MC_COUNT(x->w, touch_misses, 1);
			mc_out_str(x->out, "NOT_FOUND\r\n");
		} else {
			mc_reply_engine_error(x, rc);
		}
	}
	quiet(x, mark, noreply);
	return MC_DONE;
}

/* ------------------------------------------------------------------------
 * flush_all, version, verbosity, quit
 * ------------------------------------------------------------------------ */

/* flush_all [delay] [noreply]: the delay is an exptime (seconds, or a
 * unix time past 30 days); worker 0 runs a delayed flush from
 * mc_worker_tick().  A later flush_all replaces a pending one. */
static enum mc_result cmd_flush_all(struct mc_ctx *x)
{
	struct mc_req *r = &x->req;
	size_t mark = x->out->len;
	bool noreply = has_noreply(r);
	unsigned args = r->ntok - (noreply ? 1u : 0u);
	int32_t delay = 0;

	MC_COUNT(x->w, cmd_flush, 1);
	if (args > 1 && !mc_tok_i32(&r->tok[1], &delay)) {
		mc_reply_client_error(x, "invalid exptime argument");
		quiet(x, mark, noreply);
		return MC_DONE;
	}
	bool now = true;
	uint32_t at = 0;
	if (delay > 0) {
		uint32_t ttl = mc_exptime_ttl(delay, x->now, &now);
		at = x->now + ttl;
	}
	if (now) {
		__atomic_store_n(&x->w->sh->flush_at, 0, __ATOMIC_RELEASE);
		int rc = eng_clear(&x->w->eng);
		if (rc) {
			mc_reply_engine_error(x, rc);
			quiet(x, mark, noreply);
			return MC_DONE;
		}
	} else {
		__atomic_store_n(&x->w->sh->flush_at, at, __ATOMIC_RELEASE);
	}
	mc_out_str(x->out, "OK\r\n");
	quiet(x, mark, noreply);
	return MC_DONE;
}

static enum mc_result cmd_version(struct mc_ctx *x)
{
	mc_out_str(x->out, "VERSION " MC_VERSION_LINE "\r\n");
	return MC_DONE;
}

/* verbosity <level> [noreply]: kept (stats settings shows it); the
 * daemon's log level is --log-level's. */
static enum mc_result cmd_verbosity(struct mc_ctx *x)
{
	struct mc_req *r = &x->req;
	size_t mark = x->out->len;
	bool noreply = has_noreply(r);
	uint32_t level;

	if (r->ntok < 2 || !mc_tok_u32(&r->tok[1], &level)) {
		mc_reply_client_error(x, BAD_FORMAT);
	} else {
		__atomic_store_n(&x->w->sh->verbosity, level, __ATOMIC_RELAXED);
		mc_out_str(x->out, "OK\r\n");
	}
	quiet(x, mark, noreply);
	return MC_DONE;
}

static enum mc_result cmd_quit(struct mc_ctx *x)
{
	x->s->close = true;
	return MC_DONE;
}

/* ------------------------------------------------------------------------
 * The command table
 * ------------------------------------------------------------------------ */

/* With the token counts memcached 1.6 (as Debian 12 ships it) takes each
 * command with: another count is "ERROR", as there. */
static const struct mc_cmd commands[] = {
	{ "get", cmd_get, 2, 0 },	  { "gets", cmd_gets, 2, 0 },
	{ "set", cmd_set, 5, 6 },	  { "delete", cmd_delete, 2, 4 },
	{ "incr", cmd_incr, 3, 4 },	  { "decr", cmd_decr, 3, 4 },
	{ "add", cmd_add, 5, 6 },	  { "replace", cmd_replace, 5, 6 },
	{ "append", cmd_append, 5, 6 },	  { "prepend", cmd_prepend, 5, 6 },
	{ "cas", cmd_cas, 6, 7 },	  { "touch", cmd_touch, 3, 4 },
	{ "gat", cmd_gat, 3, 0 },	  { "gats", cmd_gats, 3, 0 },
	{ "stats", mc_cmd_stats, 1, 0 },  { "flush_all", cmd_flush_all, 1, 3 },
	{ "version", cmd_version, 1, 0 }, { "verbosity", cmd_verbosity, 2, 3 },
	{ "quit", cmd_quit, 1, 0 },
};

const struct mc_cmd *mc_text_lookup(const char *name, size_t n)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strlen(commands[i].name) == n &&
		    !memcmp(commands[i].name, name, n))
			return &commands[i];
	return NULL;
}
