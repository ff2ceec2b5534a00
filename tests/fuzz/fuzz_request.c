/*
 * fuzz_request.c - libFuzzer target for the daemon's request path: the
 * bytes a peer sends, through conn.c's buffering and framing, handlers.c
 * and the engine, and the replies back out.
 *
 * A daemon is set up once, as main.c would but without a socket or a shm
 * object: a region in ordinary memory carved into 4 segments and attached
 * as the daemon's own client id, a short lock timeout, and a table of 4
 * connection slots.  The region is 1 MiB, or, when the input asks for a
 * tight one, 128 KiB sized for 1 KiB items, where 14 keys or about 14 KiB
 * of values fill a segment and stores evict.  Slot 0 is the fuzzed peer,
 * accepted afresh for every input as conn_accept() would (its fd a dup of
 * /dev/null, so closing it closes nothing real); slot 1 is a quiet second
 * peer holding client id 50, so that CLIENTS and HELLO see another
 * connection.  The region is formatted again for every input and its
 * clock set to a fixed time, so that an input replays the same way alone
 * as within a run.
 *
 * Input: one control byte, then the byte stream the peer sends.
 *   bits 0-2  how the stream is cut into receives (see chunk_size())
 *   bit 3     the peer reads slowly: half of the waiting replies per step
 *   bit 4     a second passes after every receive, with an expiry sweep
 *             step (as daemon_tick() does) after every 16th
 *   bit 5     the tight region
 *   bit 6     the peer is another user (not the daemon's, not root)
 * The stream is fed the way both event loops do: take conn_in_room(), copy
 * at most that much into c->in, call conn_input(), send what is pending,
 * ask conn_in_room() again (see settle()).  A change to how the loops drive
 * a connection belongs in settle() too.
 *
 * Checks, beyond the sanitizers:
 *   - every reply is a well-formed frame whose body parses exactly as its
 *     type says (docs/PROTOCOL.md);
 *   - the requests are answered one frame each, in order, echoing the id,
 *     as an independent reading of the input predicts; unknown types get
 *     -EOPNOTSUPP, bodies that do not parse -EBADMSG, a bad header one
 *     error frame and the connection closed; no complete request is left
 *     unanswered once the peer has read every reply;
 *   - a model of the cache (last value stored per key): a hit returns the
 *     last value set, with its expiry, and never an expired, deleted or
 *     flushed one (by FLUSH or by an NS_FLUSH of a prefix it starts
 *     with); a store of a valid size always succeeds; TTL and TOUCH
 *     agree with the model; the namespace requests succeed or fail as
 *     the model's table of prefixes says, and NS_LIST lists it; SAVE counts no entry the model lacks; CHECK
 *     finds nothing wrong and afterwards every segment passes eng_check();
 *   - half a frame left behind is dropped by conn_tick().
 *
 * SAVE and LOAD never reach the file system: persist_request() is replaced
 * here (see below), so a fuzzed path cannot write or read a real file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "engine.h"
#include "log.h"
#include "proto.h"
#if __has_include("persist.h")
#include "persist.h"
#define HAVE_PERSIST 1
#endif

#include "fuzz_check.h"

#define REGION_MAX (1u << 20)	  /* the buffer; the region is this... */
#define REGION_TIGHT (128u << 10) /* ...or this, with TIGHT_AVG_ITEM */
#define TIGHT_AVG_ITEM 1024u	  /* 14 entries per segment */
#define NSEG 4u
#define NSLOTS 4u
#define LOCK_TIMEOUT_MS 10u
#define T0 1700000000u	     /* the region clock at the start of an input */
#define FIRST_CLIENT_ID 100u /* ids below were handed out "before" */
#define QUIET_PID 4242
#define QUIET_CLIENT_ID 50u /* the quiet peer's: HELLO may not take it */
#define SWEEP_BUCKETS 32u   /* per tick; a pass is 8 to 32 ticks */

/* ------------------------------------------------------------------------
 * The daemon, set up once
 * ------------------------------------------------------------------------ */

static struct daemon d;
static int devnull = -1;

static void setup_once(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	log_open(NULL, LOG_ERROR);
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	CHECK(devnull >= 0);

	d.cfg.max_clients = NSLOTS;
	d.cfg.hello_timeout_ms = CONFIG_HELLO_TIMEOUT_DEFAULT;
	d.conns = calloc(NSLOTS, sizeof(*d.conns));
	CHECK(d.conns != NULL);
	for (uint32_t i = 0; i < NSLOTS; i++)
		d.conns[i].fd = d.conns[i].pass_fd = -1;
	d.region_base = aligned_alloc(4096, REGION_MAX);
	CHECK(d.region_base != NULL);
	d.region_fd = devnull; /* handed out by HELLO: never really sent */
	d.listen_fd = d.signal_fd = -1;
	CHECK(job_init(&d) == 0);
	d.started = T0;

	/* The quiet peer: said HELLO once, never sends again. */
	struct conn *q = &d.conns[1];
	q->fd = dup(devnull);
	CHECK(q->fd >= 0);
	q->gen = 1;
	q->client_id = QUIET_CLIENT_ID;
	q->pid = QUIET_PID;
	q->uid = 1000;
	q->gid = 1000;
	q->since = T0;
	d.nconns = 1;
}

/* A fresh region (the engine keeps no state outside it). */
static void reset_region(bool tight)
{
	size_t size = tight ? REGION_TIGHT : REGION_MAX;
	struct eng_config ec = { .nseg = NSEG,
				 .avg_item = tight ? TIGHT_AVG_ITEM : 0 };
	const char *why = NULL;

	d.region_size = size;
	CHECK(eng_format(d.region_base, size, &ec) == 0);
	CHECKF(eng_attach(&d.eng, d.region_base, REGION_MAX, DAEMON_CLIENT_ID,
			  &why) == 0,
	       "%s", why);
	CHECK(d.eng.g.region_size == size);
	eng_set_timeout(&d.eng, LOCK_TIMEOUT_MS);
	eng_clock_set(&d.eng, T0);
	d.eng.hdr->next_client_id = FIRST_CLIENT_ID;
	clients_adopt(&d.clients, &d.eng); /* the book starts empty */
	d.sweep_seg = 0;
	d.stop = false;
}

/* What conn_accept() does for an allowed peer, minus the socket. */
static struct conn *accept_peer(bool other_user)
{
	struct conn *c = &d.conns[0];
	uint32_t gen = c->gen + 1;

	CHECK(c->fd < 0);
	memset(c, 0, sizeof(*c));
	c->fd = dup(devnull);
	CHECK(c->fd >= 0);
	c->gen = gen;
	c->pass_fd = -1;
	c->since = T0;
	c->accepted_ms = clock_mono_ms();
	c->in = malloc(CONN_IN_INITIAL);
	CHECK(c->in != NULL);
	c->in_cap = CONN_IN_INITIAL;
	c->pid = getpid();
	c->uid = geteuid();
	if (other_user) {
		/* Neither the daemon's user nor root, who may do as much. */
		c->uid = geteuid() + 1;
		if (c->uid == 0)
			c->uid = 1;
	}
	c->gid = getegid();
	d.nconns++;
	return c;
}

/* ------------------------------------------------------------------------
 * Snapshots without files
 * ------------------------------------------------------------------------ */

#ifdef HAVE_PERSIST
static int count_entry(const struct eng_item *it, void *arg)
{
	(void)it;
	(*(uint64_t *)arg)++;
	return 0;
}

/* Replaces daemon/persist.c's: the fuzzer runs as whoever starts it, maybe
 * root, and must not write files at fuzzed paths.  Being defined here, it
 * keeps persist.o out of the link.  SAVE walks the cache as a save would
 * and counts; LOAD finds no file. */
int persist_request(struct daemon *dm, bool load, unsigned flags,
		    const char *path, uint64_t *entries, char *err,
		    size_t errlen)
{
	CHECKF(!load ? flags == 0 : (flags & ~PERSIST_PARTIAL) == 0,
	       "handler passed flags %u", flags);
	CHECKF(path[0] == '/' && strlen(path) <= 4095,
	       "handler passed on a bad path");
	if (load) {
		snprintf(err, errlen, "%s: no such file (fuzzing)", path);
		return -ENOENT;
	}
	*entries = 0;
	int rc = eng_iter(&dm->eng, 0, dm->eng.g.nseg, count_entry, entries);
	if (rc)
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
	return rc;
}
#endif

/* ------------------------------------------------------------------------
 * An independent reader (not proto_r: the replies are checked against the
 * documented format, not against the codec that wrote them)
 * ------------------------------------------------------------------------ */

struct rd {
	const uint8_t *p;
	size_t len, pos;
	bool bad;
};

static const uint8_t *rd_take(struct rd *r, size_t n)
{
	if (r->bad || n > r->len - r->pos) {
		r->bad = true;
		return NULL;
	}
	r->pos += n;
	return r->p + r->pos - n;
}

static uint8_t rd_u8(struct rd *r)
{
	const uint8_t *p = rd_take(r, 1);
	return p ? p[0] : 0;
}

static uint32_t rd_u32(struct rd *r)
{
	const uint8_t *p = rd_take(r, 4);
	return p ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
			       (uint32_t)p[3] << 24
		 : 0;
}

static uint64_t rd_u64(struct rd *r)
{
	uint64_t lo = rd_u32(r), hi = rd_u32(r);
	return r->bad ? 0 : lo | hi << 32;
}

static const uint8_t *rd_bytes(struct rd *r, size_t *n)
{
	*n = rd_u32(r);
	const uint8_t *p = rd_take(r, *n);
	if (!p)
		*n = 0;
	return p;
}

/* Parsed exactly: nothing missing, nothing left. */
static bool rd_done(const struct rd *r)
{
	return !r->bad && r->pos == r->len;
}

/* ------------------------------------------------------------------------
 * The model: what the peer asked, and what the cache must hold
 * ------------------------------------------------------------------------ */

/* One request, as read from the input stream. */
struct req {
	enum { REQ_NONE, REQ_FRAME, REQ_BADHDR } kind;
	int hdr_rc; /* REQ_BADHDR: -EPROTO or -EMSGSIZE */
	uint16_t type;
	uint32_t id;
	bool known, exact;	/* a request type; its body parsed exactly */
	uint8_t flag;		/* STATS per_segment, CHECK repair */
	uint32_t version, prev; /* HELLO */
	const uint8_t *key, *val;
	size_t klen, vlen;
	uint32_t ttl;
};

/* The stream, read ahead of the daemon one request per reply. */
static struct {
	const uint8_t *s;
	size_t len, pos;
	bool closed;
} stream;

static void parse_body(struct req *q, const uint8_t *body, size_t len)
{
	struct rd r = { .p = body, .len = len };

	switch (q->type) {
	case PROTO_T_HELLO:
		q->version = rd_u32(&r);
		rd_u32(&r); /* pid: the daemon trusts SO_PEERCRED */
		q->prev = rd_u32(&r);
		break;
	case PROTO_T_STATS:
	case PROTO_T_CHECK:
		q->flag = rd_u8(&r);
		break;
	case PROTO_T_GET:
	case PROTO_T_DEL:
	case PROTO_T_TTL:
	case PROTO_T_SAVE:
	case PROTO_T_NS_ADD: /* bytes prefix, in key */
	case PROTO_T_NS_FLUSH:
	case PROTO_T_NS_DEL:
		q->key = rd_bytes(&r, &q->klen);
		break;
	case PROTO_T_LOAD: /* bytes path [u32 flags] */
		q->key = rd_bytes(&r, &q->klen);
		if (!r.bad && r.len - r.pos == 4)
			q->ttl = rd_u32(&r);
		break;
	case PROTO_T_SET:
		q->key = rd_bytes(&r, &q->klen);
		q->val = rd_bytes(&r, &q->vlen);
		q->ttl = rd_u32(&r);
		break;
	case PROTO_T_TOUCH:
		q->key = rd_bytes(&r, &q->klen);
		q->ttl = rd_u32(&r);
		break;
	default: /* PING, FLUSH, CLIENTS, SHUTDOWN, BYE, NS_LIST: empty */
		break;
	}
	q->exact = rd_done(&r);
}

/* A request type of PROTO_TYPES. */
static bool type_known(uint16_t type)
{
	switch (type) {
#define KNOWN_X(name, val, body) case val:
		PROTO_TYPES(KNOWN_X)
#undef KNOWN_X
		return true;
	default:
		return false;
	}
}

/* The next request a reply must answer, or REQ_NONE when the stream holds
 * no complete one (the same framing rules as conn_input()). */
static struct req next_request(void)
{
	struct req q = { .kind = REQ_NONE };
	struct proto_hdr h;

	if (stream.closed || stream.len - stream.pos < PROTO_HDR_SIZE)
		return q;
	int rc = proto_hdr_get(stream.s + stream.pos, PROTO_MAX_PAYLOAD, &h);
	if (rc) {
		stream.closed = true;
		q.kind = REQ_BADHDR;
		q.hdr_rc = rc;
		q.id = h.id;
		return q;
	}
	if (stream.len - stream.pos - PROTO_HDR_SIZE < h.len)
		return q;
	q.kind = REQ_FRAME;
	q.type = h.type;
	q.id = h.id;
	q.known = type_known(h.type);
	parse_body(&q, stream.s + stream.pos + PROTO_HDR_SIZE, h.len);
	stream.pos += PROTO_HDR_SIZE + h.len;
	return q;
}

/* The cache as the peer's successful requests left it. */
struct mkey {
	const uint8_t *key, *val;
	size_t klen, vlen;
	uint32_t expire;
	bool live;
};

/* A prefix the peer registered (in the stream); kept after NS_DEL (which
 * flushes it first), as the region's table keeps its slot and mark. */
struct mns {
	const uint8_t *prefix;
	size_t len;
	uint32_t mark; /* ns_clock at its last flush */
	bool live;     /* registered */
};

static struct {
	struct mkey *k;
	size_t n, cap;
	struct mns ns[LAYOUT_NS_SLOTS]; /* every prefix ever registered */
	size_t nns, nns_live;
	uint32_t ns_clock;  /* NS_FLUSHes so far */
	uint32_t client_id; /* what HELLO gave the peer, 0 before */
	uint32_t uid;	    /* the peer's */
	bool owner;	    /* the peer may stop the daemon */
	uint32_t next_id;   /* what a new client gets */
} m;

static struct mkey *model_find(const uint8_t *key, size_t klen)
{
	for (size_t i = 0; i < m.n; i++)
		if (m.k[i].klen == klen && memcmp(m.k[i].key, key, klen) == 0)
			return &m.k[i];
	return NULL;
}

static struct mkey *model_add(const uint8_t *key, size_t klen)
{
	struct mkey *k = model_find(key, klen);

	if (k)
		return k;
	if (m.n == m.cap) {
		m.cap = m.cap ? 2 * m.cap : 64;
		m.k = realloc(m.k, m.cap * sizeof(*m.k));
		CHECK(m.k != NULL);
	}
	k = &m.k[m.n++];
	*k = (struct mkey){ .key = key, .klen = klen };
	return k;
}

/* Keys the model holds, unexpired at now. */
static size_t model_count_live(uint32_t now)
{
	size_t n = 0;

	for (size_t i = 0; i < m.n; i++)
		if (m.k[i].live && !(m.k[i].expire && m.k[i].expire <= now))
			n++;
	return n;
}

static struct mns *model_ns(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < m.nns; i++)
		if (m.ns[i].len == len && memcmp(m.ns[i].prefix, p, len) == 0)
			return &m.ns[i];
	return NULL;
}

/* The registered namespace of q's prefix, or NULL. */
static struct mns *model_ns_live(const struct req *q)
{
	struct mns *n = model_ns(q->key, q->klen);

	return n && n->live ? n : NULL;
}

static bool prefix_ok(const struct req *q)
{
	return q->klen >= 1 && q->klen <= LAYOUT_NS_PREFIX_MAX;
}

/* NS_FLUSH: every key under the prefix is gone. */
static void model_ns_flush(struct mns *n)
{
	n->mark = ++m.ns_clock;
	for (size_t i = 0; i < m.n; i++)
		if (m.k[i].klen >= n->len &&
		    memcmp(m.k[i].key, n->prefix, n->len) == 0)
			m.k[i].live = false;
}

static void check_ns_list(struct rd *r)
{
	uint32_t n = rd_u32(r);
	bool seen[LAYOUT_NS_SLOTS] = { false };

	CHECKF(n == m.nns_live, "NS_LIST: %u namespaces, the model has %zu", n,
	       m.nns_live);
	for (uint32_t i = 0; i < n && !r->bad; i++) {
		size_t len;
		const uint8_t *p = rd_bytes(r, &len);
		uint32_t mark = rd_u32(r), slot = rd_u32(r);
		if (r->bad)
			break;
		struct mns *ns = model_ns(p, len);
		CHECKF(ns && ns->live,
		       "NS_LIST: a prefix of %zu bytes that "
		       "is not registered",
		       len);
		CHECKF(!seen[ns - m.ns], "NS_LIST: a prefix twice");
		seen[ns - m.ns] = true;
		CHECKF(mark == ns->mark, "NS_LIST: mark %u, expected %u", mark,
		       ns->mark);
		CHECKF(slot < LAYOUT_NS_SLOTS, "NS_LIST: slot %u", slot);
	}
}

static void model_clear(void)
{
	for (size_t i = 0; i < m.n; i++)
		m.k[i].live = false;
}

static uint32_t expire_of(uint32_t now, uint32_t ttl)
{
	if (ttl == 0)
		return 0;
	return ttl > UINT32_MAX - now ? UINT32_MAX : now + ttl;
}

/* The model holds key, unexpired at now. */
static const struct mkey *model_live(const uint8_t *key, size_t klen,
				     uint32_t now)
{
	const struct mkey *k = model_find(key, klen);

	if (!k || !k->live || (k->expire && k->expire <= now))
		return NULL;
	return k;
}

/* ------------------------------------------------------------------------
 * Checking one reply against its request
 * ------------------------------------------------------------------------ */

/* The engine's answer to a key that is empty or too long. */
static int key_error(const struct req *q)
{
	if (q->klen == 0)
		return -EINVAL;
	return q->klen > ENTRY_KEY_MAX ? -E2BIG : 0;
}

static void check_error_body(const uint8_t *body, size_t len, int *code)
{
	struct rd r = { .p = body, .len = len };
	int32_t err = (int32_t)rd_u32(&r);
	size_t n;
	const uint8_t *msg = rd_bytes(&r, &n);

	CHECKF(rd_done(&r), "error body of %zu bytes", len);
	CHECKF(err < 0 && err > -4096, "error code %d", (int)err);
	CHECKF(n <= 512 && (n == 0 || !memchr(msg, '\0', n)),
	       "error message of %zu bytes", n);
	*code = err;
}

static void check_stats(const struct req *q, struct rd *r)
{
	static const char *const gauges[] = { "entries", "bytes_used",
					      "bytes_total" };
	uint32_t ncols = rd_u32(r);

	CHECK(ncols == SEG_NCOUNTERS + 3);
	for (uint32_t i = 0; i < ncols && !r->bad; i++) {
		size_t n;
		const uint8_t *name = rd_bytes(r, &n);
		const char *want = i < SEG_NCOUNTERS
					   ? eng_counter_names[i]
					   : gauges[i - SEG_NCOUNTERS];
		CHECKF(n == strlen(want) && memcmp(name, want, n) == 0,
		       "column %u is not %s", i, want);
	}
	uint32_t nrows = rd_u32(r);
	CHECK(nrows == (q->flag ? NSEG : 1u));
	for (uint32_t i = 0; i < nrows * ncols && !r->bad; i++)
		rd_u64(r);
}

static void check_clients(struct rd *r)
{
	uint32_t n = rd_u32(r);

	/* Slot order: the fuzzed peer, then the quiet one. */
	CHECK(n == 2);
	for (uint32_t i = 0; i < n && !r->bad; i++) {
		uint32_t id = rd_u32(r), pid = rd_u32(r), uid = rd_u32(r);
		rd_u32(r); /* gid */
		uint64_t since = rd_u64(r);
		if (i == 0)
			CHECK(id == m.client_id && pid == (uint32_t)getpid() &&
			      uid == m.uid);
		else
			CHECK(id == QUIET_CLIENT_ID && pid == QUIET_PID &&
			      uid == 1000);
		CHECK(since == T0);
	}
}

static void check_hello(const struct req *q, struct rd *r)
{
	uint32_t cid = rd_u32(r), format = rd_u32(r);
	uint64_t size = rd_u64(r);

	CHECK(format == LAYOUT_FORMAT && size == d.region_size);
	if (m.client_id == 0) {
		/* A reconnecting client keeps an id no one else holds and
		 * that was handed to its own process: in this input, not
		 * "before" it (those have no record of this pid). */
		bool reattach = q->prev >= FIRST_CLIENT_ID &&
				q->prev < m.next_id &&
				q->prev != QUIET_CLIENT_ID;
		uint32_t want = reattach ? q->prev : m.next_id++;
		CHECKF(cid == want, "client id %u, expected %u", cid, want);
		m.client_id = cid;
	} else {
		CHECKF(cid == m.client_id, "client id changed: %u to %u",
		       m.client_id, cid);
	}
}

/* A request answered with an error: which codes it may be. */
static void check_failure(const struct req *q, int code)
{
	struct mkey *k;

	if (!q->exact) {
		CHECKF(code == -EBADMSG, "malformed body: %d", code);
		return;
	}
	CHECKF(code != -EBADMSG, "type %u: -EBADMSG for an exact body",
	       q->type);
	switch (q->type) {
	case PROTO_T_HELLO:
		CHECKF(q->version != PROTO_VERSION && code == -EPROTO,
		       "HELLO failed: %d", code);
		break;
	case PROTO_T_SET:
		if (key_error(q)) {
			CHECKF(code == key_error(q), "SET: %d", code);
		} else {
			/* Never fails for lack of space: only for size. */
			CHECKF(q->vlen > d.eng.g.max_kv ||
				       q->klen + q->vlen > d.eng.g.max_kv,
			       "SET klen %zu vlen %zu (max_kv %u): %d", q->klen,
			       q->vlen, d.eng.g.max_kv, code);
			CHECKF(code == -E2BIG, "SET too large: %d", code);
		}
		break;
	case PROTO_T_GET:
	case PROTO_T_DEL:
	case PROTO_T_TTL:
	case PROTO_T_TOUCH:
		if (key_error(q)) {
			CHECKF(code == key_error(q), "type %u: %d", q->type,
			       code);
			break;
		}
		/* A miss: evicted, expired or never there - and from now on
		 * certainly not there. */
		CHECKF(code == -ENOENT, "type %u: %d", q->type, code);
		if ((k = model_find(q->key, q->klen)))
			k->live = false;
		break;
	case PROTO_T_SAVE:
	case PROTO_T_LOAD:
		/* Not supported (older builds); another user's; a path that
		 * is not absolute; LOAD: no file (persist_request above). */
		CHECKF(code == -ENOTSUP || (code == -EPERM && !m.owner) ||
			       code == -EINVAL ||
			       (code == -ENOENT && q->type == PROTO_T_LOAD),
		       "type %u: %d", q->type, code);
		break;
	case PROTO_T_SHUTDOWN:
		CHECKF(!m.owner && code == -EPERM, "SHUTDOWN: %d", code);
		break;
	case PROTO_T_NS_ADD:
		if (!prefix_ok(q))
			CHECKF(code == -EINVAL, "NS_ADD: %d", code);
		else if (model_ns_live(q))
			CHECKF(code == -EEXIST, "NS_ADD: %d", code);
		else
			/* Half the slots taken by prefixes registered once
			 * (an unregistered one keeps its slot). */
			CHECKF(code == -ENOSPC && m.nns >= LAYOUT_NS_SLOTS / 2,
			       "NS_ADD: %d with %zu registered", code,
			       m.nns_live);
		break;
	case PROTO_T_NS_FLUSH:
	case PROTO_T_NS_DEL:
		CHECKF(code == (prefix_ok(q) ? -ENOENT : -EINVAL) &&
			       !(prefix_ok(q) && model_ns_live(q)),
		       "type %u: %d", q->type, code);
		break;
	default:
		CHECKF(0, "type %u failed: %d", q->type, code);
	}
}

/* A request answered with success: its reply body and the model. */
static void check_success(const struct req *q, const uint8_t *body, size_t len,
			  uint32_t now)
{
	struct rd r = { .p = body, .len = len };
	const struct mkey *live;
	struct mkey *k;
	uint32_t u, v;
	uint64_t u64;
	size_t n;
	const uint8_t *p;

	CHECKF(q->exact, "type %u: success for a malformed body", q->type);
	switch (q->type) {
	case PROTO_T_HELLO:
		CHECK(q->version == PROTO_VERSION);
		check_hello(q, &r);
		break;
	case PROTO_T_STATS:
		check_stats(q, &r);
		break;
	case PROTO_T_GET:
		u = rd_u32(&r);
		p = rd_bytes(&r, &n);
		live = model_live(q->key, q->klen, now);
		CHECKF(live, "GET hit on a key that is not there (now %u)",
		       now);
		CHECKF(n == live->vlen && memcmp(p, live->val, n) == 0,
		       "GET returned %zu bytes, not the %zu last stored", n,
		       live->vlen);
		CHECKF(u == live->expire, "GET expire_at %u, stored %u", u,
		       live->expire);
		break;
	case PROTO_T_SET:
		CHECK(!key_error(q));
		k = model_add(q->key, q->klen);
		k->val = q->val;
		k->vlen = q->vlen;
		k->expire = expire_of(now, q->ttl);
		k->live = true;
		break;
	case PROTO_T_DEL:
		CHECKF(model_live(q->key, q->klen, now),
		       "DEL of a key that is not there");
		model_find(q->key, q->klen)->live = false;
		break;
	case PROTO_T_TTL:
		u = rd_u32(&r);
		live = model_live(q->key, q->klen, now);
		CHECKF(live, "TTL of a key that is not there");
		v = live->expire ? live->expire - now : 0;
		CHECKF(u == v, "TTL %u, expected %u", u, v);
		break;
	case PROTO_T_TOUCH:
		CHECKF(model_live(q->key, q->klen, now),
		       "TOUCH of a key that is not there");
		model_find(q->key, q->klen)->expire = expire_of(now, q->ttl);
		break;
	case PROTO_T_FLUSH:
		model_clear();
		break;
	case PROTO_T_CHECK:
		u = rd_u32(&r);
		CHECK(u == NSEG);
		u = rd_u32(&r); /* bad */
		v = rd_u32(&r); /* repaired */
		CHECKF(u == 0 && v == 0, "CHECK: %u bad, %u repaired", u, v);
		CHECK(rd_u32(&r) == 0);
		break;
	case PROTO_T_CLIENTS:
		check_clients(&r);
		break;
	case PROTO_T_SAVE:
		/* Every entry the walk counted is one the model holds. */
		CHECK(m.owner && q->klen > 0 && q->key[0] == '/');
		u64 = rd_u64(&r);
		CHECKF(u64 <= model_count_live(now),
		       "SAVE counted %llu "
		       "entries, the model has %zu",
		       (unsigned long long)u64, model_count_live(now));
		break;
	case PROTO_T_LOAD:
		CHECKF(0, "LOAD succeeded without a file");
		break;
	case PROTO_T_SHUTDOWN:
		CHECK(m.owner);
		break;
	case PROTO_T_BYE:
		/* The daemon closes the connection: nothing after is read. */
		stream.closed = true;
		break;
	case PROTO_T_NS_ADD:
		CHECKF(prefix_ok(q) && !model_ns_live(q), "NS_ADD succeeded");
		struct mns *ns = model_ns(q->key, q->klen);
		if (!ns) {
			CHECK(m.nns < LAYOUT_NS_SLOTS);
			ns = &m.ns[m.nns++];
			*ns = (struct mns){ .prefix = q->key, .len = q->klen };
		}
		ns->live = true;
		m.nns_live++;
		break;
	case PROTO_T_NS_FLUSH:
		CHECKF(prefix_ok(q) && model_ns_live(q), "NS_FLUSH succeeded");
		model_ns_flush(model_ns_live(q));
		break;
	case PROTO_T_NS_DEL:
		CHECKF(prefix_ok(q) && model_ns_live(q), "NS_DEL succeeded");
		/* It drops the keys as a flush does. */
		model_ns_flush(model_ns_live(q));
		model_ns_live(q)->live = false;
		m.nns_live--;
		break;
	case PROTO_T_NS_LIST:
		check_ns_list(&r);
		break;
	default: /* PING: empty */
		break;
	}
	CHECKF(rd_done(&r),
	       "reply to type %u: body of %zu bytes does not "
	       "parse",
	       q->type, len);
}

static void check_reply(const struct proto_hdr *h, const uint8_t *body,
			uint32_t now)
{
	struct req q = next_request();
	int code = 0;

	CHECKF(q.kind != REQ_NONE, "a reply (type %#x id %u) to no request",
	       h->type, h->id);
	CHECKF(h->id == q.id, "reply id %u for request id %u", h->id, q.id);
	if (h->type == PROTO_T_ERROR)
		check_error_body(body, h->len, &code);
	if (q.kind == REQ_BADHDR) {
		CHECKF(code == q.hdr_rc, "bad header: reply %#x code %d",
		       h->type, code);
		return;
	}
	if (!q.known) {
		CHECKF(code == -EOPNOTSUPP, "unknown type %u: reply %#x %d",
		       q.type, h->type, code);
		return;
	}
	if (code) {
		check_failure(&q, code);
		return;
	}
	CHECKF(h->type == (q.type | PROTO_REPLY), "reply type %#x to %u",
	       h->type, q.type);
	check_success(&q, body, h->len, now);
}

/* ------------------------------------------------------------------------
 * The peer's side of the socket
 * ------------------------------------------------------------------------ */

/* Received bytes not yet parsed: rx[rx_off..rx_len), rx_off at stream
 * offset rx_base + rx_off. */
static uint8_t *rx;
static size_t rx_off, rx_len, rx_cap;
static uint64_t rx_base, sent_total;

/* The region clock while each receive was handled, and where its replies
 * ended in the output stream. */
static struct step {
	uint64_t out_end;
	uint32_t now;
} * steps;
static size_t nsteps, steps_cap, step_cur;

static uint32_t clock_at(uint64_t out_offset)
{
	while (step_cur < nsteps && steps[step_cur].out_end <= out_offset)
		step_cur++;
	CHECK(step_cur < nsteps);
	return steps[step_cur].now;
}

static void peer_receive(const uint8_t *p, size_t n)
{
	if (rx_cap - rx_len < n) {
		if (rx_off) {
			memmove(rx, rx + rx_off, rx_len - rx_off);
			rx_len -= rx_off;
			rx_base += rx_off;
			rx_off = 0;
		}
		if (rx_cap - rx_len < n) {
			rx_cap = rx_len + n + 4096;
			rx = realloc(rx, rx_cap);
			CHECK(rx != NULL);
		}
	}
	memcpy(rx + rx_len, p, n);
	rx_len += n;

	while (rx_len - rx_off >= PROTO_HDR_SIZE) {
		struct proto_hdr h;
		int rc = proto_hdr_get(rx + rx_off, PROTO_MAX_PAYLOAD, &h);
		CHECKF(rc == 0, "reply header: %d", rc);
		if (rx_len - rx_off - PROTO_HDR_SIZE < h.len)
			break;
		check_reply(&h, rx + rx_off + PROTO_HDR_SIZE,
			    clock_at(rx_base + rx_off));
		rx_off += PROTO_HDR_SIZE + h.len;
	}
}

/* The loop's send: all that is pending, or half of it. */
static void send_pending(struct conn *c, bool all)
{
	size_t pending = conn_out_pending(c);

	if (!pending)
		return;
	size_t n = all ? pending : (pending + 1) / 2;
	bool pass = c->pass_fd >= 0;
	conn_prepare_send(c);
	CHECK(c->iov.iov_base == c->out + c->out_off &&
	      c->iov.iov_len == pending && c->pass_fd < 0);
	CHECK(pass == (c->msg.msg_controllen > 0));
	peer_receive(c->out + c->out_off, n);
	conn_sent(c, n);
	sent_total += n;
}

/* ------------------------------------------------------------------------
 * One input
 * ------------------------------------------------------------------------ */

/* Bytes per receive: step is the receive's number. */
static size_t chunk_size(uint8_t ctl, size_t step)
{
	static const size_t fixed[] = { SIZE_MAX, 1, 3, 11, 12, 13, 100 };
	static const size_t cycle[] = { 1, 12, 5, 4096, 2, 64 };

	if ((ctl & 7u) < 7u)
		return fixed[ctl & 7u];
	return cycle[step % (sizeof(cycle) / sizeof(cycle[0]))];
}

static void record_step(const struct conn *c, uint32_t now)
{
	if (nsteps == steps_cap) {
		steps_cap = steps_cap ? 2 * steps_cap : 256;
		steps = realloc(steps, steps_cap * sizeof(*steps));
		CHECK(steps != NULL);
	}
	steps[nsteps++] = (struct step){
		.out_end = sent_total + conn_out_pending(c), .now = now
	};
}

/* What both loops do after a receive or a send (their settle()): send
 * what is pending, then ask for room to arm the next receive.  Returns the
 * room, 0 when closing or paused. */
static size_t settle(struct conn *c, bool all, uint32_t now)
{
	send_pending(c, all);
	/* As both loops do after sending.  A SAVE or LOAD runs on a thread:
	 * the loops settle c again when it is done (here: at once), and
	 * conn_resume() delivers its reply and answers what waited. */
	conn_resume(&d, c);
	while (c->waiting) {
		CHECK(job_finish(&d) == c);
		conn_resume(&d, c);
	}
	record_step(c, now);
	send_pending(c, all);
	d.stop = false; /* SHUTDOWN asked for it: ignored here */
	if (c->closing)
		return 0;
	size_t room = conn_in_room(&d, c);
	record_step(c, now); /* in case that answered buffered requests */
	return room;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	setup_once();

	uint8_t ctl = data[0];
	bool slow = ctl & 8u, tick = ctl & 16u;
	reset_region(ctl & 32u);
	const uint8_t *s = data + 1;
	size_t len = size - 1, off = 0;
	uint32_t now = T0;

	stream.s = s;
	stream.len = len;
	stream.pos = 0;
	stream.closed = false;
	m.n = 0;
	m.nns = m.nns_live = 0;
	m.ns_clock = 0;
	m.client_id = 0;
	m.next_id = FIRST_CLIENT_ID;
	rx_off = rx_len = 0;
	rx_base = sent_total = 0;
	nsteps = step_cur = 0;

	struct conn *c = accept_peer(ctl & 64u);
	m.uid = c->uid;
	m.owner = c->uid == 0 || c->uid == geteuid();
	size_t room = conn_in_room(&d, c);
	for (size_t step = 0; off < len; step++) {
		if (room == 0) {
			if (c->closing)
				break;
			/* Paused on unsent replies: the peer reads some. */
			CHECK(conn_out_pending(c) >= CONN_OUT_HIGH);
			room = settle(c, !slow, now);
			continue;
		}
		size_t n = chunk_size(ctl, step);
		if (n > room)
			n = room;
		if (n > len - off)
			n = len - off;
		memcpy(c->in + c->in_len, s + off, n);
		c->in_len += n;
		off += n;

		conn_input(&d, c);
		record_step(c, now);
		room = settle(c, !slow, now);
		if (tick) {
			/* A second later; and every 16th receive, a sweep step
			 * as daemon_tick() does (not every one: a long input
			 * cut into single bytes would be all sweeps). */
			eng_clock_set(&d.eng, ++now);
			if (step % 16 == 0) {
				int rc = eng_sweep(&d.eng, d.sweep_seg,
						   SWEEP_BUCKETS);
				CHECKF(rc >= 0, "sweep: %d", rc);
				d.sweep_seg = (d.sweep_seg + 1) & (NSEG - 1);
			}
		}
	}
	/* The peer reads everything, and sends nothing more. */
	while (conn_out_pending(c))
		settle(c, true, now);
	CHECKF(rx_off == rx_len, "%zu bytes of a reply frame left over",
	       rx_len - rx_off);

	struct req q = next_request();
	CHECKF(q.kind == REQ_NONE,
	       "request type %u id %u (byte %zu of the stream) was never "
	       "answered; %zu bytes wait in the connection, %zu pending out",
	       q.type, q.id, stream.pos, c->in_len, conn_out_pending(c));
	if (!c->closing) {
		/* What is left is the start of one frame, and only that. */
		CHECK(c->in_len == len - stream.pos);
		if (c->in_len == 0)
			CHECK(c->in_cap == CONN_IN_INITIAL);
		/* ... and is dropped when it stays half; a peer that never
		 * said HELLO is dropped by then too (--hello-timeout). */
		_Static_assert(CONFIG_HELLO_TIMEOUT_DEFAULT <=
				       CONN_PARTIAL_TIMEOUT_MS,
			       "the tick below must reach the HELLO timeout");
		conn_tick(&d, clock_mono_ms() + CONN_PARTIAL_TIMEOUT_MS);
		CHECK(c->closing == (c->in_len > 0 || c->client_id == 0));
	}

	/* The segments that ever held a key: the others are as formatted. */
	uint32_t used = 0;
	for (size_t i = 0; i < m.n; i++)
		used |= 1u << eng_seg_of(&d.eng, m.k[i].key, m.k[i].klen);
	for (uint32_t i = 0; i < NSEG; i++) {
		struct eng_check_report rep;
		if (!(used & (1u << i)))
			continue;
		int rc = eng_check(&d.eng, i, false, &rep);
		CHECKF(rc == 0 && rep.problems == 0,
		       "segment %u: rc %d, %u problems: %s", i, rc,
		       rep.problems, rc ? "" : rep.first);
	}

	conn_release(&d, c);
	CHECK(d.nconns == 1 && d.conns[0].fd == -1);
	d.stop = false;
	return 0;
}
