/*
 * handlers.c - one function per control request (bodies in proto.h).
 *
 * A handler parses its body with proto_r (every field bounds-checked; a body
 * that does not parse exactly is -EBADMSG), does its work on the engine with
 * the daemon's short lock timeout, and queues exactly one reply frame.  The
 * table at the end maps types to handlers; an unknown type gets an error
 * reply and the connection goes on.
 */
#include <assert.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "clients.h"
#include "daemon.h"
#include "log.h"
#include "proto.h"

typedef void handler_fn(struct daemon *d, struct conn *c, uint32_t id,
			struct proto_r *r);

/* Replies to a request whose body was parsed: -EBADMSG if it did not parse
 * exactly, the engine's error, or an empty success. */
static bool body_ok(struct conn *c, uint32_t id, const struct proto_r *r)
{
	int rc = proto_r_end(r);

	if (rc)
		conn_reply_error(c, id, rc, "malformed request body");
	return rc == 0;
}

static void reply_rc(struct conn *c, uint16_t type, uint32_t id, int rc)
{
	if (rc == 0)
		conn_reply(c, type, id, NULL, 0);
	else
		conn_reply_error(c, id, rc, strerror(-rc));
}

/* ------------------------------------------------------------------------
 * Session
 * ------------------------------------------------------------------------ */

/* c may take prev back: prev was handed out by this region's daemons, no
 * connection has it, and the book records it as c's very process (same
 * pid, same start time: SO_PEERCRED's pid, not the one HELLO claims).  An
 * id is a lock identity; another process that took it could release or
 * corrupt its owner's locks, and its death would be taken for the owner's. */
static bool prev_id_ours(const struct daemon *d, const struct conn *c,
			 uint32_t prev)
{
	if (prev <= DAEMON_CLIENT_ID ||
	    prev >= __atomic_load_n(&d->eng.hdr->next_client_id,
				    __ATOMIC_RELAXED))
		return false;
	for (uint32_t i = 0; i < d->cfg.max_clients; i++)
		if (d->conns[i].fd >= 0 && d->conns[i].client_id == prev)
			return false;
	const struct client_slot *r = clients_find(&d->clients, prev);
	return r && c->pid > 0 && r->pid == (uint32_t)c->pid &&
	       (c->start & ~CLIENT_FOREIGN_NS) != 0 && r->start == c->start;
}

static void on_hello(struct daemon *d, struct conn *c, uint32_t id,
		     struct proto_r *r)
{
	uint32_t version = proto_get_u32(r);
	uint32_t pid = proto_get_u32(r);
	uint32_t prev = proto_get_u32(r);
	(void)pid; /* SO_PEERCRED is the pid we trust */

	if (!body_ok(c, id, r))
		return;
	if (version != PROTO_VERSION) {
		conn_reply_error(c, id, -EPROTO, "protocol version mismatch");
		return;
	}
	if (c->client_id == 0 && prev != 0) {
		/* A client reconnecting (after a daemon restart, say) keeps
		 * the id its locks carry - if it is the process that had it. */
		if (prev_id_ours(d, c, prev)) {
			c->client_id = prev;
			log_info("client %u (pid %d) re-attached", prev,
				 (int)c->pid);
		} else {
			log_info("pid %d asked for client id %u, which is not "
				 "its own: given a new one",
				 (int)c->pid, prev);
		}
	}
	if (c->client_id == 0) {
		struct region_hdr *h = d->eng.hdr;
		uint32_t cid = h->next_client_id;
		if (cid <= DAEMON_CLIENT_ID || cid > ENG_CLIENT_ID_MAX)
			cid = DAEMON_CLIENT_ID + 1; /* wrapped: 2^31 clients */
		__atomic_store_n(&h->next_client_id, cid + 1, __ATOMIC_RELAXED);
		c->client_id = cid;
	}

	int rc = clients_add(&d->clients, c->client_id, c->pid, c->start);
	if (rc == -EUSERS && d->full_sweep_tick != d->ticks + 1) {
		/* Full: forget the clients that died meanwhile, then retry;
		 * at most once a tick (a sweep reads /proc for every record,
		 * and a full table could be asked on every HELLO). */
		d->full_sweep_tick = d->ticks + 1;
		clients_sweep(&d->clients, NULL);
		rc = clients_add(&d->clients, c->client_id, c->pid, c->start);
	}
	if (rc) {
		log_warn("client table full: refused pid %d", (int)c->pid);
		conn_reply_error(c, id, rc, "client table full");
		c->client_id = 0;
		return;
	}

	struct proto_w w;
	conn_reply_start(c, &w, 16);
	proto_put_u32(&w, c->client_id);
	proto_put_u32(&w, LAYOUT_FORMAT);
	proto_put_u64(&w, d->region_size);
	conn_reply_finish(c, &w, PROTO_T_HELLO, id);
	c->pass_fd = d->region_fd;
	log_debug("client %u is pid %d uid %u", c->client_id, (int)c->pid,
		  (unsigned)c->uid);
}

static void on_ping(struct daemon *d, struct conn *c, uint32_t id,
		    struct proto_r *r)
{
	(void)d;
	if (body_ok(c, id, r))
		conn_reply(c, PROTO_T_PING, id, NULL, 0);
}

/* The client closes its handle: its id will not be used again, so the
 * daemon can forget it at once (see client_left()) instead of keeping it
 * for as long as the process lives.  The daemon closes the connection. */
static void on_bye(struct daemon *d, struct conn *c, uint32_t id,
		   struct proto_r *r)
{
	(void)d;
	if (!body_ok(c, id, r))
		return;
	c->bye = true;
	conn_reply(c, PROTO_T_BYE, id, NULL, 0);
	c->closing = true;
}

static void on_shutdown(struct daemon *d, struct conn *c, uint32_t id,
			struct proto_r *r)
{
	if (!body_ok(c, id, r))
		return;
	if (c->uid != 0 && c->uid != geteuid()) {
		conn_reply_error(c, id, -EPERM,
				 "only the daemon's user or root may stop it");
		return;
	}
	log_info("shutdown requested by pid %d", (int)c->pid);
	conn_reply(c, PROTO_T_SHUTDOWN, id, NULL, 0);
	d->stop = true;
}

/* ------------------------------------------------------------------------
 * Statistics and maintenance
 * ------------------------------------------------------------------------ */

#define GAUGES(X) X(entries) X(bytes_used) X(bytes_total)

static void put_stats_row(struct proto_w *w, const struct eng_stats *s)
{
#define ROW_X(name, desc) proto_put_u64(w, s->name);
	SEG_COUNTERS(ROW_X)
#undef ROW_X
#define GAUGE_X(name) proto_put_u64(w, s->name);
	GAUGES(GAUGE_X)
#undef GAUGE_X
}

static void on_stats(struct daemon *d, struct conn *c, uint32_t id,
		     struct proto_r *r)
{
	uint8_t per_seg = proto_get_u8(r);

	if (!body_ok(c, id, r))
		return;
	static const char *const gauges[] = {
#define GNAME_X(name) #name,
		GAUGES(GNAME_X)
#undef GNAME_X
	};
	uint32_t ncols = SEG_NCOUNTERS + sizeof(gauges) / sizeof(gauges[0]);
	uint32_t nrows = per_seg ? d->eng.g.nseg : 1;
	struct proto_w w;

	conn_reply_start(c, &w, 8 + ncols * 36 + (size_t)nrows * ncols * 8);
	proto_put_u32(&w, ncols);
	for (int i = 0; i < SEG_NCOUNTERS; i++)
		proto_put_str(&w, eng_counter_names[i]);
	for (size_t i = 0; i < sizeof(gauges) / sizeof(gauges[0]); i++)
		proto_put_str(&w, gauges[i]);
	proto_put_u32(&w, nrows);
	struct eng_stats s;
	if (per_seg) {
		for (uint32_t i = 0; i < nrows; i++) {
			eng_seg_stats(&d->eng, i, &s);
			put_stats_row(&w, &s);
		}
	} else {
		eng_stats(&d->eng, &s);
		put_stats_row(&w, &s);
	}
	conn_reply_finish(c, &w, PROTO_T_STATS, id);
}

static_assert(CONFIG_REDIS_PREFIXES <= PROTO_NEAR_PREFIXES_MAX,
	      "NEARCACHE cannot list every --redis-prefix");

/* The near cache's tracking of Redis (redis.h): its state, counters, last
 * error, and the prefixes it keeps coherent (--redis-prefix). */
static void on_nearcache(struct daemon *d, struct conn *c, uint32_t id,
			 struct proto_r *r)
{
	static const char *const names[] = {
#define NC_NAME_X(name, desc) #name,
		REDIS_COUNTERS(NC_NAME_X)
#undef NC_NAME_X
	};
	static const char *const descs[] = {
#define NC_DESC_X(name, desc) desc,
		REDIS_COUNTERS(NC_DESC_X)
#undef NC_DESC_X
	};
	struct redis_stats s;
	struct proto_w w;

	if (!body_ok(c, id, r))
		return;
	pthread_mutex_lock(&d->redis_lock);
	s = d->redis_st;
	pthread_mutex_unlock(&d->redis_lock);
	if (!s.state)
		s.state = "off";
	conn_reply_start(c, &w,
			 512 + REDIS_NCOUNTERS * 128 +
				 (size_t)d->cfg.n_redis_prefixes *
					 (4 +
					  sizeof(d->cfg.redis_prefixes[0])));
	proto_put_str(&w, s.state);
	proto_put_u32(&w, REDIS_NCOUNTERS);
	for (int i = 0; i < REDIS_NCOUNTERS; i++) {
		proto_put_str(&w, names[i]);
		proto_put_u64(&w, s.v[i]);
		proto_put_str(&w, descs[i]);
	}
	proto_put_str(&w, s.last_error);
	proto_put_u64(&w, s.last_error_at);
	proto_put_u32(&w, d->cfg.n_redis_prefixes);
	for (uint32_t i = 0; i < d->cfg.n_redis_prefixes; i++)
		proto_put_str(&w, d->cfg.redis_prefixes[i]);
	conn_reply_finish(c, &w, PROTO_T_NEARCACHE, id);
}

static void on_flush(struct daemon *d, struct conn *c, uint32_t id,
		     struct proto_r *r)
{
	if (body_ok(c, id, r))
		reply_rc(c, PROTO_T_FLUSH, id, eng_clear(&d->eng));
}

static void on_check(struct daemon *d, struct conn *c, uint32_t id,
		     struct proto_r *r)
{
	uint8_t repair = proto_get_u8(r);

	if (!body_ok(c, id, r))
		return;
	uint32_t nseg = d->eng.g.nseg, bad = 0, repaired = 0;
	struct proto_w w;
	/* Room for every segment to report, at most 140 bytes each. */
	conn_reply_start(c, &w, 16 + ((size_t)nseg + 1) * 140);
	uint8_t *counts = proto_put_reserve(&w, 16);
	/* The region header first, as a record of "segment" UINT32_MAX:
	 * damage there is repaired from the daemon's own copy. */
	char what[128];
	if (eng_hdr_check(&d->eng, repair != 0, what, sizeof(what))) {
		log_warn("check: %s", what);
		bad++;
		repaired += repair != 0;
		proto_put_u32(&w, UINT32_MAX);
		proto_put_u32(&w, 1);
		proto_put_str(&w, what);
	}
	for (uint32_t i = 0; i < nseg && !w.err; i++) {
		struct eng_check_report rep;
		int rc = eng_check(&d->eng, i, repair != 0, &rep);
		if (rc) {
			rep.problems = 1;
			rep.repaired = 0;
			snprintf(rep.first, sizeof(rep.first),
				 "not checked: %s", strerror(-rc));
		}
		if (rep.problems == 0)
			continue;
		bad++;
		repaired += rep.repaired;
		proto_put_u32(&w, i);
		proto_put_u32(&w, rep.problems);
		proto_put_str(&w, rep.first);
	}
	if (counts) {
		struct proto_w hw;
		proto_w_init(&hw, counts, 16);
		proto_put_u32(&hw, nseg);
		proto_put_u32(&hw, bad);
		proto_put_u32(&hw, repaired);
		proto_put_u32(&hw, bad);
	}
	if (bad)
		log_warn("check: %u of %u segments inconsistent, %u repaired",
			 bad, nseg, repaired);
	conn_reply_finish(c, &w, PROTO_T_CHECK, id);
}

static void on_clients(struct daemon *d, struct conn *c, uint32_t id,
		       struct proto_r *r)
{
	if (!body_ok(c, id, r))
		return;
	struct proto_w w;
	conn_reply_start(c, &w, 4 + (size_t)d->nconns * 24);
	proto_put_u32(&w, 0);
	uint32_t n = 0;
	for (uint32_t i = 0; i < d->cfg.max_clients; i++) {
		const struct conn *o = &d->conns[i];
		if (o->fd < 0 || o->closing)
			continue;
		proto_put_u32(&w, o->client_id);
		proto_put_u32(&w, (uint32_t)o->pid);
		proto_put_u32(&w, (uint32_t)o->uid);
		proto_put_u32(&w, (uint32_t)o->gid);
		proto_put_u64(&w, o->since);
		n++;
	}
	if (!w.err) {
		struct proto_w hw;
		proto_w_init(&hw, w.buf, 4);
		proto_put_u32(&hw, n);
	}
	conn_reply_finish(c, &w, PROTO_T_CLIENTS, id);
}

/* SAVE and LOAD (persist.c).  They read and write files with the daemon's
 * rights, so only its user or root may ask, and the path must be absolute
 * (a detached daemon's directory is "/").  They run on a thread (job.c),
 * about a second per GiB (docs/SNAPSHOT.md); the reply comes when it is
 * done, and the loop serves everyone else meanwhile.  LOAD may carry flags
 * after the path (PROTO_LOAD_*). */
static void on_snapshot(struct daemon *d, struct conn *c, uint32_t id,
			struct proto_r *r, bool load)
{
	const void *p;
	size_t len = proto_get_bytes(r, &p);
	char path[CONFIG_FILE_PATH_MAX + 1];
	uint32_t flags = 0;

	if (load && r->err == 0 && r->len - r->pos == 4)
		flags = proto_get_u32(r);
	if (!body_ok(c, id, r))
		return;
	if (flags & ~PROTO_LOAD_FLAGS) {
		conn_reply_error(c, id, -EINVAL, "unknown LOAD flags");
		return;
	}
	if (c->uid != 0 && c->uid != geteuid()) {
		conn_reply_error(c, id, -EPERM,
				 "only the daemon's user or root may save or "
				 "load snapshots");
		return;
	}
	if (len == 0 || len > CONFIG_FILE_PATH_MAX || memchr(p, '\0', len) ||
	    *(const char *)p != '/') {
		conn_reply_error(c, id, -EINVAL,
				 "a snapshot path is absolute, at most 4095 "
				 "bytes, without NUL");
		return;
	}
	memcpy(path, p, len);
	path[len] = '\0';
	int rc = job_start(d, c, id, load, flags, path);
	if (rc == -EBUSY)
		conn_reply_error(c, id, rc,
				 "a snapshot save or load is already running");
	else if (rc)
		conn_reply_error(c, id, rc, strerror(-rc));
}

static void on_save(struct daemon *d, struct conn *c, uint32_t id,
		    struct proto_r *r)
{
	on_snapshot(d, c, id, r, false);
}

static void on_load(struct daemon *d, struct conn *c, uint32_t id,
		    struct proto_r *r)
{
	on_snapshot(d, c, id, r, true);
}

/* ------------------------------------------------------------------------
 * Key operations (for tools and clients that cannot map the region)
 * ------------------------------------------------------------------------ */

static void on_get(struct daemon *d, struct conn *c, uint32_t id,
		   struct proto_r *r)
{
	const void *key;
	size_t klen = proto_get_bytes(r, &key);

	if (!body_ok(c, id, r))
		return;
	size_t cap = 4096, vlen = 0;
	for (int attempt = 0; attempt < 3; attempt++) {
		struct proto_w w;
		uint32_t expire = 0;
		conn_reply_start(c, &w, 8 + cap);
		if (w.err)
			return;
		uint8_t *hdr = proto_put_reserve(&w, 8);
		uint8_t *val = proto_put_reserve(&w, cap);
		int rc = eng_get(&d->eng, key, klen, val, cap, &vlen, &expire);
		if (rc == -ENOBUFS && vlen <= PROTO_MAX_PAYLOAD - 8) {
			cap = vlen;
			continue; /* the value grew meanwhile: again */
		}
		if (rc == -ENOBUFS) {
			char msg[160];
			snprintf(msg, sizeof(msg),
				 "value of %zu bytes is over the socket "
				 "protocol's frame limit of %u bytes: read it "
				 "through the mapping (without --no-map)",
				 vlen, PROTO_MAX_PAYLOAD);
			conn_reply_error(c, id, -E2BIG, msg);
			return;
		}
		if (rc) {
			conn_reply_error(c, id, rc,
					 rc == -ENOENT ? "not found"
						       : strerror(-rc));
			return;
		}
		struct proto_w hw;
		proto_w_init(&hw, hdr, 8);
		proto_put_u32(&hw, expire);
		proto_put_u32(&hw, (uint32_t)vlen);
		w.len = 8 + vlen;
		conn_reply_finish(c, &w, PROTO_T_GET, id);
		return;
	}
	conn_reply_error(c, id, -EAGAIN, "value changed during the read");
}

static void on_set(struct daemon *d, struct conn *c, uint32_t id,
		   struct proto_r *r)
{
	const void *key, *val;
	size_t klen = proto_get_bytes(r, &key);
	size_t vlen = proto_get_bytes(r, &val);
	uint32_t ttl = proto_get_u32(r);

	if (!body_ok(c, id, r))
		return;
	int rc = eng_set(&d->eng, key, klen, val, vlen, ttl);
	if (rc == -E2BIG) {
		char msg[192];
		if (klen > ENTRY_KEY_MAX)
			snprintf(msg, sizeof(msg),
				 "key too long: at most %u "
				 "bytes",
				 ENTRY_KEY_MAX);
		else
			snprintf(msg, sizeof(msg),
				 "key + value too large: the cache's largest "
				 "item is %u bytes (half a segment; a larger "
				 "--memory or fewer --segments raise it)",
				 d->eng.g.max_kv);
		conn_reply_error(c, id, rc, msg);
		return;
	}
	if (rc == -ESTALE) {
		conn_reply_error(
			c, id, rc,
			"not stored: the key's prefix is blocked while "
			"the near cache has lost Redis' tracking "
			"(docs/NEARCACHE.md)");
		return;
	}
	reply_rc(c, PROTO_T_SET, id, rc);
}

static void on_del(struct daemon *d, struct conn *c, uint32_t id,
		   struct proto_r *r)
{
	const void *key;
	size_t klen = proto_get_bytes(r, &key);

	if (body_ok(c, id, r))
		reply_rc(c, PROTO_T_DEL, id, eng_del(&d->eng, key, klen));
}

static void on_ttl(struct daemon *d, struct conn *c, uint32_t id,
		   struct proto_r *r)
{
	const void *key;
	size_t klen = proto_get_bytes(r, &key);
	uint32_t ttl = 0;

	if (!body_ok(c, id, r))
		return;
	int rc = eng_ttl(&d->eng, key, klen, &ttl);
	if (rc) {
		reply_rc(c, PROTO_T_TTL, id, rc);
		return;
	}
	uint8_t body[4];
	struct proto_w w;
	proto_w_init(&w, body, sizeof(body));
	proto_put_u32(&w, ttl);
	conn_reply(c, PROTO_T_TTL, id, body, w.len);
}

static void on_touch(struct daemon *d, struct conn *c, uint32_t id,
		     struct proto_r *r)
{
	const void *key;
	size_t klen = proto_get_bytes(r, &key);
	uint32_t ttl = proto_get_u32(r);

	if (body_ok(c, id, r))
		reply_rc(c, PROTO_T_TOUCH, id,
			 eng_touch(&d->eng, key, klen, ttl));
}

/* ------------------------------------------------------------------------
 * Namespaces.  The table in the region has one writer, the daemon: these
 * handlers run on the event loop only (the job thread runs SAVE and LOAD,
 * which never touch it), and so does the --namespace registration at
 * start, before the loop.
 * ------------------------------------------------------------------------ */

/* The prefix of an NS_ADD, NS_FLUSH or NS_DEL body into *p, *len: false
 * after an error reply (a body that does not parse, or a prefix that is
 * empty or longer than LAYOUT_NS_PREFIX_MAX; its bytes are arbitrary). */
static bool ns_prefix(struct conn *c, uint32_t id, struct proto_r *r,
		      const void **p, size_t *len)
{
	*len = proto_get_bytes(r, p);
	if (!body_ok(c, id, r))
		return false;
	if (*len == 0 || *len > LAYOUT_NS_PREFIX_MAX) {
		char msg[96];
		snprintf(msg, sizeof(msg),
			 "a namespace prefix is 1 to %u bytes, not %zu",
			 LAYOUT_NS_PREFIX_MAX, *len);
		conn_reply_error(c, id, -EINVAL, msg);
		return false;
	}
	return true;
}

/* Replies to a namespace request with the engine's rc, in words. */
static void ns_reply(struct conn *c, uint16_t type, uint32_t id, int rc)
{
	char msg[384];

	switch (rc) {
	case 0:
		conn_reply(c, type, id, NULL, 0);
		return;
	case -EEXIST:
		snprintf(msg, sizeof(msg), "namespace already registered");
		break;
	case -ENOENT:
		snprintf(msg, sizeof(msg),
			 "no such namespace (register it with ns add)");
		break;
	case -ENOSPC:
		snprintf(msg, sizeof(msg),
			 "namespace table full: %u prefixes were registered in "
			 "this region; " NS_FULL_HOW,
			 LAYOUT_NS_SLOTS / 2);
		break;
	case -EOVERFLOW:
		snprintf(msg, sizeof(msg),
			 "the region's 2^32 - 1 namespace flushes are spent: "
			 "only a new region gets past it");
		break;
	default:
		snprintf(msg, sizeof(msg), "%s", strerror(-rc));
		break;
	}
	conn_reply_error(c, id, rc, msg);
}

/* Whether prefix is one the near cache tracks (--redis-prefix). */
static bool ns_tracked(const struct daemon *d, const void *p, size_t len)
{
	if (!d->cfg.n_redis)
		return false;
	for (uint32_t i = 0; i < d->cfg.n_redis_prefixes; i++) {
		const char *t = d->cfg.redis_prefixes[i];

		if (strlen(t) == len && !memcmp(t, p, len))
			return true;
	}
	return false;
}

/* NS_ADD, NS_FLUSH, NS_DEL: op on the body's prefix.  NS_DEL of a prefix
 * the near cache tracks is refused: the namespace is what blocks its
 * fills during an outage, and a deleted one is blocked no more. */
static void ns_op(struct daemon *d, struct conn *c, uint16_t type, uint32_t id,
		  struct proto_r *r,
		  int (*op)(struct eng *e, const void *p, size_t len))
{
	const void *p;
	size_t len;

	if (!ns_prefix(c, id, r, &p, &len))
		return;
	if (type == PROTO_T_NS_DEL && ns_tracked(d, p, len)) {
		conn_reply_error(c, id, -EBUSY,
				 "tracked by --redis-prefix: the near cache "
				 "keeps it (start the daemon without that "
				 "--redis-prefix to delete it)");
		return;
	}
	pthread_mutex_lock(&d->ns_lock);
	int rc = op(&d->eng, p, len);
	pthread_mutex_unlock(&d->ns_lock);
	ns_reply(c, type, id, rc);
}

static void on_ns_add(struct daemon *d, struct conn *c, uint32_t id,
		      struct proto_r *r)
{
	ns_op(d, c, PROTO_T_NS_ADD, id, r, eng_ns_add);
}

static void on_ns_flush(struct daemon *d, struct conn *c, uint32_t id,
			struct proto_r *r)
{
	ns_op(d, c, PROTO_T_NS_FLUSH, id, r, eng_ns_flush);
}

static void on_ns_del(struct daemon *d, struct conn *c, uint32_t id,
		      struct proto_r *r)
{
	ns_op(d, c, PROTO_T_NS_DEL, id, r, eng_ns_del);
}

static void on_ns_list(struct daemon *d, struct conn *c, uint32_t id,
		       struct proto_r *r)
{
	static struct eng_ns_info ns[LAYOUT_NS_SLOTS]; /* the loop's own */

	if (!body_ok(c, id, r))
		return;
	int n = eng_ns_list(&d->eng, ns, LAYOUT_NS_SLOTS);
	struct proto_w w;
	conn_reply_start(c, &w, 4 + (size_t)n * (4 + LAYOUT_NS_PREFIX_MAX + 8));
	proto_put_u32(&w, (uint32_t)n);
	for (int i = 0; i < n; i++) {
		proto_put_bytes(&w, ns[i].prefix, ns[i].len);
		proto_put_u32(&w, ns[i].mark);
		proto_put_u32(&w, ns[i].slot);
	}
	conn_reply_finish(c, &w, PROTO_T_NS_LIST, id);
}

/* ------------------------------------------------------------------------
 * Dispatch
 * ------------------------------------------------------------------------ */

static handler_fn *const handlers[] = {
	[PROTO_T_HELLO] = on_hello,	  [PROTO_T_PING] = on_ping,
	[PROTO_T_STATS] = on_stats,	  [PROTO_T_GET] = on_get,
	[PROTO_T_SET] = on_set,		  [PROTO_T_DEL] = on_del,
	[PROTO_T_TTL] = on_ttl,		  [PROTO_T_TOUCH] = on_touch,
	[PROTO_T_FLUSH] = on_flush,	  [PROTO_T_CHECK] = on_check,
	[PROTO_T_CLIENTS] = on_clients,	  [PROTO_T_SAVE] = on_save,
	[PROTO_T_LOAD] = on_load,	  [PROTO_T_SHUTDOWN] = on_shutdown,
	[PROTO_T_BYE] = on_bye,		  [PROTO_T_NS_ADD] = on_ns_add,
	[PROTO_T_NS_FLUSH] = on_ns_flush, [PROTO_T_NS_DEL] = on_ns_del,
	[PROTO_T_NS_LIST] = on_ns_list,	  [PROTO_T_NEARCACHE] = on_nearcache,
};

void handle_request(struct daemon *d, struct conn *c, uint16_t type,
		    uint32_t id, const uint8_t *body, uint32_t len)
{
	struct proto_r r;

	if (type >= sizeof(handlers) / sizeof(handlers[0]) || !handlers[type]) {
		conn_reply_error(c, id, -EOPNOTSUPP, "unknown request type");
		return;
	}
	proto_r_init(&r, body, len);
	handlers[type](d, c, id, &r);
}
