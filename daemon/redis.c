/*
 * redis.c - the near cache's tracking thread (redis.h, docs/NEARCACHE.md).
 *
 * One thread, one poll() loop over non-blocking sockets.  The nodes it
 * knows are a table (struct rnode): the --redis seeds, and the masters a
 * cluster's CLUSTER NODES names.  Each connection goes
 *     connect (with a deadline)
 *     -> HELLO 3 [AUTH user pass] SETNAME shmcached-track
 *     -> CLUSTER NODES: "cluster support disabled" makes the node a
 *        standalone server (a master of its own); an array is the
 *        cluster's topology, from which the masters are taken
 *     -> on a master: CLIENT TRACKING ON BCAST PREFIX p1 PREFIX p2 ...
 *     -> +OK: this master's tracking is up
 * and then, every second, a PING (or, in a cluster, CLUSTER NODES, which
 * re-reads the topology too) that must be answered within
 * REDIS_DEADLINE_MS.  Invalidations arrive as RESP3 push frames on the
 * same connection, so losing the connection is losing the tracking, and
 * this thread sees both at once.
 *
 * The state is "up" when every seed has answered once and every known
 * master's tracking is up; it is then that the prefixes are flushed once
 * more and unblocked.  Any tracking connection lost, or a master not yet
 * tracked (a failover, a slot moved to a new node), blocks and flushes
 * them first (the order matters: nothing filled between the flush and
 * the block).  A node leaves the masters when no connected node's view
 * names it any more: the masters are the union of the views, so a node
 * that lags behind a slot move cannot hide the new owner.
 *
 * Namespace writes (eng_ns_flush(), eng_ns_block()) are made under
 * d->ns_lock, the lock of every namespace writer in the daemon.
 */
#include "redis.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <assert.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "opt.h"
#include "resp.h"

#define REDIS_NODES_MAX 256u	     /* seeds and masters known */
#define REDIS_RESOLVE_MAX 8u	     /* addresses kept of a name */
#define REDIS_RESOLVE_MS 10000u	     /* a name not resolved by then: down */
#define REDIS_CONNECT_MS 2000u	     /* connect deadline */
#define REDIS_PING_MS 1000u	     /* a PING (or CLUSTER NODES) every */
#define REDIS_DEADLINE_MS 3000u	     /* for any reply */
#define REDIS_BACKOFF_MIN_MS 50u     /* reconnect wait, doubled ... */
#define REDIS_BACKOFF_MAX_MS 5000u   /* ... up to this */
#define REDIS_PEND_MAX 8u	     /* requests in flight per connection */
#define REDIS_IN_INITIAL (16u << 10) /* receive buffer, grown as needed */
#define REDIS_IN_MAX ((256u << 20) + (64u << 10))
#define REDIS_ROUND_BYTES (64u << 10) /* read per node per poll round */
#define REDIS_ROUND_FRAMES 64u	      /* frames handled per node per round */
#define REDIS_LOG_EVERY_MS 60000u     /* repeated failures: warn this often */
#define REDIS_CLIENT_NAME "shmcached-track"
#define REDIS_PASSWORD_MAX 1024u

static_assert(CONFIG_REDIS_PREFIXES <= 64, "lock_flushed: one bit a prefix");

/* ------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------ */

/* What a reply in flight answers. */
enum pend_kind { P_HELLO, P_NODES, P_TRACKING, P_PING };

enum node_kind { K_UNKNOWN, K_STANDALONE, K_CLUSTER };

enum conn_state {
	C_IDLE,	      /* no socket */
	C_RESOLVING,  /* a seed given by name: its resolution in progress */
	C_CONNECTING, /* connect() in progress */
	C_OPEN,	      /* connected: HELLO and CLUSTER NODES sent */
};

/* The resolution of a seed given by name, made by a thread of its own:
 * getaddrinfo() may wait seconds for a name server, and the tracking
 * thread must go on serving the other connections meanwhile.  The node
 * and the resolver each hold a reference; the node reads the result once
 * done is set, or gives up on it at its deadline. */
struct resolve {
	char host[CONFIG_MC_ADDR_MAX + 1];
	char port[8];
	int refs; /* atomic */
	int done; /* atomic: the fields below are set */
	int err;  /* getaddrinfo()'s; 0: at least one address */
	int sys;  /* errno, for EAI_SYSTEM */
	unsigned nres;
	struct sockaddr_storage res[REDIS_RESOLVE_MAX];
	socklen_t len[REDIS_RESOLVE_MAX];
};

struct rnode {
	char addr[CONFIG_MC_ADDR_MAX +
		  1]; /* canonical: IP:PORT, [IP]:PORT, path; a seed given
			 by name keeps it: HOST:PORT */
	struct config_mc_addr sa;
	/* A seed given by name (host[0] != 0): resolved again before each
	 * connect, so that a name that moves is followed; of the addresses
	 * it gives, the one that worked is kept, and one that fails to
	 * connect gives way to the next (node_fail()). */
	char host[CONFIG_MC_ADDR_MAX + 1];
	uint16_t port;
	struct resolve *res; /* C_RESOLVING */
	unsigned res_turn;   /* which address of a resolution to try: the
				next one only after a failed connect */
	unsigned res_count;  /* addresses the last resolution gave */
	bool seed;
	bool master;	  /* a server, or a master in the views */
	bool tracking;	  /* CLIENT TRACKING answered +OK */
	bool ever_failed; /* logged a failure since it last worked */
	enum node_kind kind;
	enum conn_state st;
	int fd;
	uint64_t deadline; /* connect deadline (C_CONNECTING) */
	uint64_t next_try; /* no connect before (mono ms) */
	uint32_t backoff_ms;
	uint64_t next_ping;
	uint64_t last_warn; /* a failure last logged as a warning */

	/* The masters this node's last CLUSTER NODES named (cluster nodes
	 * with a connection only): a bitmap over the table's indices. */
	uint64_t view[REDIS_NODES_MAX / 64];
	bool has_view;

	uint8_t pend[REDIS_PEND_MAX];
	uint64_t pend_at[REDIS_PEND_MAX];
	unsigned phead, pcount;

	uint8_t *in;
	size_t in_len, in_cap;
	bool more; /* in may hold complete frames not handled yet */

	struct rnode *next_dead; /* out of the table, to be freed */
	uint8_t *out;
	size_t out_off, out_len, out_cap;
	struct resp_reader rd;
};

struct redis_track {
	struct daemon *d;
	pthread_t thread;
	bool running;
	int wake_fd; /* eventfd: stop */
	char password[REDIS_PASSWORD_MAX + 1];
	bool has_password;
	unsigned seed; /* of the reconnect jitter (rand_r) */

	struct rnode *nodes[REDIS_NODES_MAX];
	uint32_t nnodes;
	struct rnode *dead; /* out of the table, freed between rounds */
	bool up;
	bool failed; /* a connection failed or was lost since the start */

	/* The tracked prefixes (bit i: d->cfg.redis_prefixes[i]) flushed
	 * because a key under them could not be deleted, since the last
	 * recv(): every frame received so far is covered by that flush. */
	uint64_t lock_flushed;
	uint64_t last_lock_warn;

	pthread_mutex_t *lock;	/* &d->redis_lock, guarding st */
	struct redis_stats *st; /* &d->redis_st */
};

/* ------------------------------------------------------------------------
 * Stats
 * ------------------------------------------------------------------------ */

static void stat_add(struct redis_track *t, enum redis_counter c, uint64_t n)
{
	pthread_mutex_lock(t->lock);
	t->st->v[c] += n;
	pthread_mutex_unlock(t->lock);
}

__attribute__((format(printf, 2, 3))) static void
stat_error(struct redis_track *t, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(t->lock);
	va_start(ap, fmt);
	vsnprintf(t->st->last_error, sizeof(t->st->last_error), fmt, ap);
	va_end(ap);
	t->st->last_error_at = (uint64_t)time(NULL);
	pthread_mutex_unlock(t->lock);
}

/* Publishes the state and the master counts. */
static void stat_state(struct redis_track *t)
{
	uint32_t up = 0, known = 0;

	for (uint32_t i = 0; i < t->nnodes; i++) {
		known += t->nodes[i]->master;
		up += t->nodes[i]->master && t->nodes[i]->tracking;
	}
	pthread_mutex_lock(t->lock);
	t->st->state = t->up ? "up" : t->failed ? "down" : "connecting";
	t->st->v[REDIS_C_masters] = up;
	t->st->v[REDIS_C_masters_known] = known;
	pthread_mutex_unlock(t->lock);
}

/* ------------------------------------------------------------------------
 * The prefixes: block, flush, unblock
 * ------------------------------------------------------------------------ */

/* Blocks (or unblocks) every tracked prefix. */
static void prefixes_block(struct redis_track *t, bool on)
{
	struct daemon *d = t->d;

	pthread_mutex_lock(&d->ns_lock);
	for (uint32_t i = 0; i < d->cfg.n_redis_prefixes; i++) {
		const char *p = d->cfg.redis_prefixes[i];
		int rc = eng_ns_block(&d->eng, p, strlen(p), on);

		if (rc)
			log_error("redis: cannot %s namespace %s: %s",
				  on ? "block" : "unblock", p, strerror(-rc));
	}
	pthread_mutex_unlock(&d->ns_lock);
}

/* Flushes the tracked prefixes whose bits are set in which (under
 * d->ns_lock).  Should a namespace flush fail - the region's 2^32 - 1
 * namespace flushes spent (EOVERFLOW), or the prefix unregistered - the
 * whole cache is cleared instead: a tracked key must never outlive its
 * invalidation, and the other keys only cost a reload. */
static void prefixes_flush_some(struct redis_track *t, uint64_t which)
{
	struct daemon *d = t->d;

	for (uint32_t i = 0; i < d->cfg.n_redis_prefixes; i++) {
		const char *p = d->cfg.redis_prefixes[i];
		int rc;

		if (!((which >> i) & 1) ||
		    (rc = eng_ns_flush(&d->eng, p, strlen(p))) == 0)
			continue;
		log_error(
			"redis: cannot flush namespace %s (%s): clearing the "
			"whole cache instead%s",
			p, strerror(-rc),
			rc == -EOVERFLOW
				? "; the region's namespace flushes are "
				  "spent, and every flush will clear it until "
				  "a new region is made (stop the daemon, "
				  "remove the region, start it)"
				: "");
		if ((rc = eng_clear(&d->eng)) != 0)
			log_error("redis: cannot clear the cache (%s): tracked "
				  "keys may be stale until the next flush",
				  strerror(-rc));
		return;
	}
}

/* Flushes every tracked prefix; counts one flush. */
static void prefixes_flush(struct redis_track *t)
{
	struct daemon *d = t->d;

	pthread_mutex_lock(&d->ns_lock);
	prefixes_flush_some(t, UINT64_MAX);
	pthread_mutex_unlock(&d->ns_lock);
	stat_add(t, REDIS_C_flushes, 1);
}

/* Nothing cached under the prefixes may be trusted: block, then flush
 * (in this order, so that nothing is filled between the two). */
static void prefixes_drop(struct redis_track *t)
{
	prefixes_block(t, true);
	prefixes_flush(t);
}

/* The prefixes (comma-separated) for messages. */
static const char *prefix_list(const struct config *c, char *buf, size_t cap)
{
	size_t n = 0;

	buf[0] = '\0';
	for (uint32_t i = 0; i < c->n_redis_prefixes && n < cap; i++) {
		int k = snprintf(buf + n, cap - n, "%s%s", i ? ", " : "",
				 c->redis_prefixes[i]);
		if (k < 0)
			break;
		n += (size_t)k;
	}
	return buf;
}

/* Whether key is under a tracked prefix. */
static bool key_tracked(const struct config *c, const uint8_t *key, size_t n)
{
	for (uint32_t i = 0; i < c->n_redis_prefixes; i++) {
		size_t pl = strlen(c->redis_prefixes[i]);

		if (pl <= n && !memcmp(key, c->redis_prefixes[i], pl))
			return true;
	}
	return false;
}

/* Deletes one invalidated key.  A delete that fails (a segment lock held
 * too long: a stopped client) must not leave the key behind, nor wait for
 * that lock again for every key: the prefixes the key is under are
 * flushed instead, once for every frame received so far (lock_flushed). */
static void key_drop(struct redis_track *t, const uint8_t *key, size_t n)
{
	struct daemon *d = t->d;
	uint64_t under = 0, now;
	int rc;

	for (uint32_t i = 0; i < d->cfg.n_redis_prefixes; i++) {
		const char *p = d->cfg.redis_prefixes[i];
		size_t pl = strlen(p);

		if (pl <= n && !memcmp(key, p, pl))
			under |= UINT64_C(1) << i;
	}
	if (!(under & ~t->lock_flushed))
		return; /* dropped with its prefixes already */
	rc = eng_del(&d->eng, key, n);
	/* -E2BIG: a key too long for the region is never in it;
	 * -EUCLEAN: the segment was reset, the key with it. */
	if (rc == 0 || rc == -ENOENT || rc == -E2BIG || rc == -EUCLEAN)
		return;
	now = clock_mono_ms();
	if (!t->last_lock_warn ||
	    now - t->last_lock_warn >= REDIS_LOG_EVERY_MS) {
		log_warn("redis: cannot delete an invalidated key (%s): its "
			 "prefixes are flushed instead",
			 strerror(-rc));
		t->last_lock_warn = now;
	}
	pthread_mutex_lock(&d->ns_lock);
	prefixes_flush_some(t, under);
	pthread_mutex_unlock(&d->ns_lock);
	t->lock_flushed |= under;
	stat_add(t, REDIS_C_lock_flushes, 1);
}

/* ------------------------------------------------------------------------
 * The state
 * ------------------------------------------------------------------------ */

/* At least one master, every master tracked; and until a seed has
 * answered as a cluster node, every seed answered once (an unknown seed
 * may be a server of its own; once the cluster is found, its masters
 * are known from it, and a seed that is down does not hold it up). */
static bool all_up(const struct redis_track *t)
{
	uint32_t masters = 0;
	bool cluster = false;

	for (uint32_t i = 0; i < t->nnodes; i++)
		cluster |= t->nodes[i]->kind == K_CLUSTER;
	for (uint32_t i = 0; i < t->nnodes; i++) {
		const struct rnode *n = t->nodes[i];

		if (n->seed && n->kind == K_UNKNOWN && !cluster)
			return false;
		if (n->master && !n->tracking)
			return false;
		masters += n->master;
	}
	return masters > 0;
}

/* Moves between up and down as the nodes say. */
static void state_update(struct redis_track *t)
{
	bool up = all_up(t);
	char pl[512];

	if (up && !t->up) {
		/* Whatever was filled before every master tracked (leases
		 * taken then included) goes with this flush. */
		prefixes_flush(t);
		prefixes_block(t, false);
		t->up = true;
		stat_state(t);
		log_info("redis: tracking up on %u master%s (prefixes %s)",
			 (unsigned)t->st->v[REDIS_C_masters],
			 t->st->v[REDIS_C_masters] == 1 ? "" : "s",
			 prefix_list(&t->d->cfg, pl, sizeof(pl)));
		return;
	}
	if (!up && t->up) {
		prefixes_drop(t);
		t->up = false;
		stat_state(t);
		log_info("redis: a master is not tracked (topology changed): "
			 "tracked prefixes dropped until it is");
		return;
	}
	stat_state(t);
}

/* ------------------------------------------------------------------------
 * Nodes and connections
 * ------------------------------------------------------------------------ */

/* The canonical form of an address: what CLUSTER NODES would say. */
static void addr_canon(const struct config_mc_addr *a, const char *given,
		       char *out, size_t cap)
{
	char ip[INET6_ADDRSTRLEN];

	if (a->is_unix) {
		snprintf(out, cap, "%s", given);
	} else if (a->sa.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)&a->sa;

		inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof(ip));
		snprintf(out, cap, "[%s]:%u", ip, ntohs(s->sin6_port));
	} else {
		const struct sockaddr_in *s = (const void *)&a->sa;

		inet_ntop(AF_INET, &s->sin_addr, ip, sizeof(ip));
		snprintf(out, cap, "%s:%u", ip, ntohs(s->sin_port));
	}
}

/* The node of address s (IP:PORT, [IP]:PORT or a path), added when new
 * and add is true.  NULL when it does not parse, is new and add is false,
 * or the table is full. */
static struct rnode *node_get(struct redis_track *t, const char *s, bool add)
{
	struct config_mc_addr a;
	char why[256], canon[sizeof(((struct rnode *)0)->addr)];

	if (config_mc_addr(s, &a, why, sizeof(why)))
		return NULL;
	addr_canon(&a, s, canon, sizeof(canon));
	for (uint32_t i = 0; i < t->nnodes; i++)
		if (!strcmp(t->nodes[i]->addr, canon))
			return t->nodes[i];
	if (!add || t->nnodes >= REDIS_NODES_MAX)
		return NULL;
	struct rnode *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	snprintf(n->addr, sizeof(n->addr), "%s", canon);
	n->sa = a;
	n->fd = -1;
	resp_init(&n->rd);
	t->nodes[t->nnodes++] = n;
	return n;
}

/* A seed given as HOST:PORT with HOST a name (config_redis_name()), added
 * to the table; NULL when s is no such address, or the table is full. */
static struct rnode *seed_by_name(struct redis_track *t, const char *s)
{
	const char *colon = strrchr(s, ':');
	uint64_t port;

	if (!colon || !config_redis_name(s) || t->nnodes >= REDIS_NODES_MAX ||
	    opt_parse_uint(colon + 1, &port) || port == 0 || port > 65535)
		return NULL;
	for (uint32_t i = 0; i < t->nnodes; i++)
		if (!strcmp(t->nodes[i]->addr, s))
			return t->nodes[i];
	struct rnode *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	snprintf(n->addr, sizeof(n->addr), "%s", s);
	snprintf(n->host, sizeof(n->host), "%.*s", (int)(colon - s), s);
	n->port = (uint16_t)port;
	n->fd = -1;
	resp_init(&n->rd);
	t->nodes[t->nnodes++] = n;
	return n;
}

static uint32_t node_index(const struct redis_track *t, const struct rnode *n)
{
	for (uint32_t i = 0; i < t->nnodes; i++)
		if (t->nodes[i] == n)
			return i;
	return 0;
}

/* Resolver threads running, all daemons' nodes together: one that hangs
 * in getaddrinfo() past its deadline is not waited for, so a name server
 * that never answers must not make them pile up. */
static int resolvers_running;
#define REDIS_RESOLVERS_MAX 4

/* Drops a reference to r; the last one frees it. */
static void resolve_put(struct resolve *r)
{
	if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(r);
}

/* The resolver thread: one name, then gone (detached). */
static void *resolve_main(void *arg)
{
	struct resolve *r = arg;
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG };
	struct addrinfo *ai = NULL;
	int rc = getaddrinfo(r->host, r->port, &hints, &ai);

	r->sys = errno;

	for (struct addrinfo *p = rc ? NULL : ai;
	     p && r->nres < REDIS_RESOLVE_MAX; p = p->ai_next) {
		if ((p->ai_family != AF_INET && p->ai_family != AF_INET6) ||
		    p->ai_addrlen > sizeof(r->res[0]))
			continue;
		memcpy(&r->res[r->nres], p->ai_addr, p->ai_addrlen);
		r->len[r->nres++] = p->ai_addrlen;
	}
	if (ai)
		freeaddrinfo(ai);
	r->err = rc ? rc : r->nres ? 0 : EAI_NONAME;
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	resolve_put(r);
	__atomic_sub_fetch(&resolvers_running, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void node_close(struct rnode *n)
{
	if (n->res) { /* a resolution given up: its thread frees it */
		resolve_put(n->res);
		n->res = NULL;
	}
	if (n->fd >= 0)
		close(n->fd);
	n->fd = -1;
	n->st = C_IDLE;
	n->tracking = false;
	n->has_view = false;
	n->pcount = n->phead = 0;
	if (n->out)
		explicit_bzero(n->out, n->out_len); /* a password unsent */
	n->in_len = n->out_len = n->out_off = 0;
	n->more = false;
	resp_reset(&n->rd);
}

/* Closes n and frees it.  The bytes sent (the password of HELLO's AUTH
 * among them) are zeroed first. */
static void node_free(struct rnode *n)
{
	node_close(n);
	resp_fini(&n->rd);
	if (n->out)
		explicit_bzero(n->out, n->out_cap);
	free(n->in);
	free(n->out);
	free(n);
}

/* Takes the nodes whose bit in keep is clear out of the table, closed;
 * the others keep their order, and every view is renumbered.  The nodes
 * taken out are freed by nodes_reap(), between poll rounds: a pointer to
 * one may still be held until then. */
static void nodes_drop(struct redis_track *t, const uint64_t *keep)
{
	uint32_t map[REDIS_NODES_MAX], k = 0, old = t->nnodes;

	for (uint32_t i = 0; i < old; i++) {
		struct rnode *n = t->nodes[i];

		if ((keep[i / 64] >> (i % 64)) & 1) {
			map[i] = k;
			t->nodes[k++] = n;
			continue;
		}
		map[i] = UINT32_MAX;
		log_debug("redis: %s is no longer in the topology: forgotten",
			  n->addr);
		node_close(n);
		n->next_dead = t->dead;
		t->dead = n;
	}
	if (k == old)
		return;
	t->nnodes = k;
	for (uint32_t j = 0; j < k; j++) {
		struct rnode *n = t->nodes[j];
		uint64_t v[REDIS_NODES_MAX / 64] = { 0 };

		for (uint32_t i = 0; i < old; i++)
			if (map[i] != UINT32_MAX &&
			    ((n->view[i / 64] >> (i % 64)) & 1))
				v[map[i] / 64] |= UINT64_C(1) << (map[i] % 64);
		memcpy(n->view, v, sizeof(v));
	}
}

/* Between poll rounds: frees the nodes nodes_drop() took out, then takes
 * out those no view names any more and no --redis gives (a cluster's
 * former masters), so that the table does not fill up over time. */
static void nodes_reap(struct redis_track *t)
{
	uint64_t keep[REDIS_NODES_MAX / 64] = { 0 };

	while (t->dead) {
		struct rnode *n = t->dead;

		t->dead = n->next_dead;
		node_free(n);
	}
	for (uint32_t i = 0; i < t->nnodes; i++)
		if (t->nodes[i]->seed || t->nodes[i]->master)
			keep[i / 64] |= UINT64_C(1) << (i % 64);
	nodes_drop(t, keep);
}

static void masters_update(struct redis_track *t);

/* The connection to n failed or was lost: closes it, drops the prefixes
 * if it was tracking, and waits before the next try. */
static void node_fail(struct redis_track *t, struct rnode *n, const char *fmt,
		      ...) __attribute__((format(printf, 3, 4)));
static void node_fail(struct redis_track *t, struct rnode *n, const char *fmt,
		      ...)
{
	char why[256];
	va_list ap;
	bool was_tracking = n->tracking;
	uint64_t now = clock_mono_ms();

	bool connecting = n->st == C_CONNECTING;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (n->host[0] && connecting) { /* which of the name's addresses */
		char at[sizeof(n->addr)];
		size_t wl = strlen(why);

		addr_canon(&n->sa, n->addr, at, sizeof(at));
		snprintf(why + wl, sizeof(why) - wl, " (at %s)", at);
	}
	node_close(n);
	t->failed = true;
	stat_error(t, "%s: %s", n->addr, why);
	stat_add(t, REDIS_C_reconnects, 1);
	if (was_tracking) {
		prefixes_drop(t);
		t->up = false;
		stat_state(t);
		log_info("redis: connection to %s lost (%s); tracked prefixes "
			 "dropped; reconnecting",
			 n->addr, why);
		n->backoff_ms = 0;
	} else if (!n->ever_failed ||
		   now - n->last_warn >= REDIS_LOG_EVERY_MS) {
		log_warn("redis: %s: %s; retrying", n->addr, why);
		n->last_warn = now;
	} else {
		log_debug("redis: %s: %s; retrying", n->addr, why);
	}
	n->ever_failed = true;
	n->backoff_ms = n->backoff_ms ? n->backoff_ms * 2
				      : REDIS_BACKOFF_MIN_MS;
	if (n->backoff_ms > REDIS_BACKOFF_MAX_MS)
		n->backoff_ms = REDIS_BACKOFF_MAX_MS;
	/* jitter: between half the wait and all of it */
	n->next_try = now + n->backoff_ms / 2 +
		      (uint64_t)rand_r(&t->seed) % (n->backoff_ms / 2 + 1);
	/* A seed given by name that could not connect to one of its
	 * addresses tries the next one at once, until each was tried. */
	if (n->host[0] && connecting && n->res_count &&
	    ++n->res_turn % n->res_count)
		n->next_try = now;
	masters_update(t);
	state_update(t);
}

/* Queues a command on n's connection, expecting a reply of kind k. */
static int node_send(struct rnode *n, enum pend_kind k, int argc,
		     const void *const *argv, const size_t *lens)
{
	size_t need = 32;

	for (int i = 0; i < argc; i++)
		need += lens[i] + 24;
	if (n->pcount >= REDIS_PEND_MAX)
		return -ENOBUFS;
	if (n->out_cap - n->out_len < need) {
		size_t cap = n->out_cap ? n->out_cap : 4096;

		while (cap - n->out_len < need)
			cap *= 2;
		/* not realloc(): the old buffer may hold a password */
		uint8_t *p = malloc(cap);
		if (!p)
			return -ENOMEM;
		if (n->out) {
			memcpy(p, n->out, n->out_len);
			explicit_bzero(n->out, n->out_cap);
			free(n->out);
		}
		n->out = p;
		n->out_cap = cap;
	}
	size_t w = resp_command(n->out + n->out_len, n->out_cap - n->out_len,
				argc, argv, lens);
	if (!w)
		return -ENOBUFS;
	n->out_len += w;
	unsigned slot = (n->phead + n->pcount) % REDIS_PEND_MAX;
	n->pend[slot] = (uint8_t)k;
	n->pend_at[slot] = clock_mono_ms();
	n->pcount++;
	return 0;
}

/* Sends argv (NUL-terminated strings). */
static int node_sendv(struct rnode *n, enum pend_kind k, int argc,
		      const char *const *argv)
{
	size_t lens[64];

	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	return node_send(n, k, argc, (const void *const *)argv, lens);
}

static void node_connected(struct redis_track *t, struct rnode *n)
{
	const struct config *c = &t->d->cfg;
	const char *argv[8];
	int argc = 0;

	n->st = C_OPEN;
	argv[argc++] = "HELLO";
	argv[argc++] = "3";
	if (t->has_password || c->redis_user[0]) {
		argv[argc++] = "AUTH";
		argv[argc++] = c->redis_user[0] ? c->redis_user : "default";
		argv[argc++] = t->password;
	}
	argv[argc++] = "SETNAME";
	argv[argc++] = REDIS_CLIENT_NAME;
	if (node_sendv(n, P_HELLO, argc, argv) ||
	    node_sendv(n, P_NODES, 2, (const char *[]){ "CLUSTER", "NODES" })) {
		node_fail(t, n, "out of memory");
		return;
	}
	n->next_ping = clock_mono_ms() + REDIS_PING_MS;
}

static void node_connect(struct redis_track *t, struct rnode *n)
{
	int fd = socket(n->sa.sa.ss_family,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		node_fail(t, n, "socket: %s", strerror(errno));
		return;
	}
	if (!n->sa.is_unix) {
		int one = 1, idle = 10, intvl = 5, cnt = 3;

		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl,
			   sizeof(intvl));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	}
	n->fd = fd;
	if (!n->in) {
		n->in = malloc(REDIS_IN_INITIAL);
		if (!n->in) {
			node_fail(t, n, "out of memory");
			return;
		}
		n->in_cap = REDIS_IN_INITIAL;
	}
	/* Connecting from here: a refusal at once counts as one too. */
	n->st = C_CONNECTING;
	n->deadline = clock_mono_ms() + REDIS_CONNECT_MS;
	if (connect(fd, (const struct sockaddr *)&n->sa.sa, n->sa.len) == 0) {
		node_connected(t, n);
		return;
	}
	if (errno != EINPROGRESS && errno != EAGAIN)
		node_fail(t, n, "connect: %s", strerror(errno));
}

/* Starts the resolution of n's name (a seed given by name) on a thread of
 * its own; nodes_tick() connects once it is done (resolve_check()). */
static void resolve_start(struct redis_track *t, struct rnode *n)
{
	struct resolve *r = calloc(1, sizeof(*r));
	pthread_attr_t at;
	pthread_t th;
	int rc;

	if (!r) {
		node_fail(t, n, "out of memory");
		return;
	}
	if (__atomic_add_fetch(&resolvers_running, 1, __ATOMIC_ACQ_REL) >
	    REDIS_RESOLVERS_MAX) {
		__atomic_sub_fetch(&resolvers_running, 1, __ATOMIC_RELEASE);
		free(r);
		node_fail(t, n,
			  "cannot resolve %s: %d resolutions still running "
			  "(a name server that does not answer)",
			  n->host, REDIS_RESOLVERS_MAX);
		return;
	}
	snprintf(r->host, sizeof(r->host), "%s", n->host);
	snprintf(r->port, sizeof(r->port), "%u", n->port);
	r->refs = 2;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&th, &at, resolve_main, r);
	pthread_attr_destroy(&at);
	if (rc) {
		__atomic_sub_fetch(&resolvers_running, 1, __ATOMIC_RELEASE);
		free(r);
		node_fail(t, n, "cannot start a thread to resolve %s: %s",
			  n->host, strerror(rc));
		return;
	}
	n->res = r;
	n->st = C_RESOLVING;
	n->deadline = clock_mono_ms() + REDIS_RESOLVE_MS;
}

/* n is C_RESOLVING: once its resolution is done, connects to the next of
 * the addresses it gave (one per attempt), or fails n. */
static void resolve_check(struct redis_track *t, struct rnode *n)
{
	struct resolve *r = n->res;

	if (!__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) {
		if (clock_mono_ms() >= n->deadline)
			node_fail(t, n,
				  "cannot resolve %s: no answer within "
				  "%u ms",
				  n->host, REDIS_RESOLVE_MS);
		return;
	}
	if (r->err) {
		node_fail(t, n, "cannot resolve %s: %s", n->host,
			  r->err == EAI_SYSTEM ? strerror(r->sys)
					       : gai_strerror(r->err));
		return;
	}
	unsigned i = n->res_turn % r->nres;

	n->res_count = r->nres;

	memset(&n->sa, 0, sizeof(n->sa));
	memcpy(&n->sa.sa, &r->res[i], r->len[i]);
	n->sa.len = r->len[i];
	resolve_put(r);
	n->res = NULL;
	n->st = C_IDLE;
	node_connect(t, n);
}

/* Whether n should have a connection now. */
static bool node_wanted(const struct redis_track *t, const struct rnode *n)
{
	if (n->master || (n->seed && n->kind == K_UNKNOWN))
		return true;
	if (!n->seed)
		return false;
	/* A cluster seed that is no master: only to find the cluster again
	 * when no connected node has a view of it. */
	for (uint32_t i = 0; i < t->nnodes; i++)
		if (t->nodes[i]->has_view)
			return false;
	return true;
}

/* The masters are the union of the connected nodes' views (and the
 * standalone servers); with no view at all, the last ones are kept.
 * Connections to nodes no longer wanted are closed. */
static void masters_update(struct redis_track *t)
{
	uint64_t u[REDIS_NODES_MAX / 64] = { 0 };
	bool any = false;

	for (uint32_t i = 0; i < t->nnodes; i++) {
		const struct rnode *n = t->nodes[i];

		if (!n->has_view)
			continue;
		any = true;
		for (size_t w = 0; w < REDIS_NODES_MAX / 64; w++)
			u[w] |= n->view[w];
	}
	for (uint32_t i = 0; i < t->nnodes; i++) {
		struct rnode *n = t->nodes[i];
		bool m;

		if (n->kind == K_STANDALONE)
			m = true;
		else if (any)
			m = (u[i / 64] >> (i % 64)) & 1;
		else
			m = n->master;
		if (m != n->master)
			log_info("redis: %s %s", n->addr,
				 m ? "is a master: tracking it"
				   : "is no longer a master: closed");
		n->master = m;
		if (!m && n->st != C_IDLE && n->kind == K_CLUSTER &&
		    !node_wanted(t, n) && n->pcount == 0)
			node_close(n);
	}
}

/* Whether the comma-separated flags [f, f + len) hold want. */
static bool flag_has(const char *f, size_t len, const char *want)
{
	size_t wl = strlen(want);

	while (len) {
		const char *c = memchr(f, ',', len);
		size_t fl = c ? (size_t)(c - f) : len;

		if (fl == wl && !memcmp(f, want, wl))
			return true;
		if (!c)
			break;
		len -= fl + 1;
		f = c + 1;
	}
	return false;
}

/* The address (for node_get()) of a CLUSTER NODES address field
 * (ip:port@cport[,hostname]) that node n sent, into addr (cap bytes,
 * at least INET6_ADDRSTRLEN + 16); -1 when it is not one. */
static int view_addr(const struct rnode *n, const char *f, size_t len,
		     char *addr, size_t cap)
{
	char host[INET6_ADDRSTRLEN + 1];
	size_t al = 0, hl;
	unsigned long port = 0;

	while (al < len && f[al] != '@' && f[al] != ',')
		al++;
	for (hl = al; hl > 0 && f[hl - 1] != ':'; hl--)
		;
	if (hl == 0 || hl == al || al - hl > 5 || hl - 1 > INET6_ADDRSTRLEN)
		return -1;
	for (size_t i = hl; i < al; i++) {
		if (f[i] < '0' || f[i] > '9')
			return -1;
		port = port * 10 + (unsigned long)(f[i] - '0');
	}
	if (port == 0 || port > 65535)
		return -1;
	memcpy(host, f, hl - 1);
	host[hl - 1] = '\0';
	if (!host[0]) {
		/* a node that does not know its own address yet: the node we
		 * asked, at the address we reached (a seed given by name was
		 * resolved to it) */
		char canon[sizeof(n->addr)];
		const char *a = n->addr;

		if (n->host[0]) {
			addr_canon(&n->sa, n->addr, canon, sizeof(canon));
			a = canon;
		}
		const char *colon = strrchr(a, ':');
		size_t nl = colon ? (size_t)(colon - a) : 0;

		snprintf(addr, cap, "%.*s:%lu", (int)nl, a, port);
	} else if (strchr(host, ':')) {
		snprintf(addr, cap, "[%s]:%lu", host, port);
	} else {
		snprintf(addr, cap, "%s:%lu", host, port);
	}
	return 0;
}

/* The masters in a CLUSTER NODES reply from n (one line a node: "id
 * ip:port@cport flags master-id ping pong epoch link-state [slot ...]"):
 * their bits in bits, new nodes added when add is true, else counted in
 * *missing.  Every master counts, with slots or without - a master that
 * owns no slot yet takes writes through ASK redirects while a slot
 * migrates to it - except one in handshake or without an address, and
 * one marked failed once it owns no slot any more (its replica took them
 * over, or it never had any).  -1 for a reply not understood, or a
 * master that cannot be added. */
static int nodes_scan(struct redis_track *t, const struct rnode *n,
		      const uint8_t *buf, const struct resp_reader *r,
		      uint64_t *bits, uint32_t *missing, bool add)
{
	const struct resp_node *b = &r->nodes[0];

	if (b->type != '$' && b->type != '=' && b->type != '+')
		return -1;
	const char *s = (const char *)buf + b->off, *end = s + b->len;
	while (s < end) {
		const char *eol = memchr(s, '\n', (size_t)(end - s));
		const char *le = eol ? eol : end, *f[9];
		char addr[INET6_ADDRSTRLEN + 16];
		size_t fl[9];
		int nf = 0;

		for (const char *q = s; q < le && nf < 9;) {
			while (q < le && (*q == ' ' || *q == '\r'))
				q++;
			if (q == le)
				break;
			f[nf] = q;
			while (q < le && *q != ' ' && *q != '\r')
				q++;
			fl[nf] = (size_t)(q - f[nf]);
			nf++;
		}
		s = eol ? eol + 1 : end;
		if (nf == 0)
			continue;
		if (nf < 8)
			return -1;
		if (!flag_has(f[2], fl[2], "master") ||
		    flag_has(f[2], fl[2], "handshake") ||
		    flag_has(f[2], fl[2], "noaddr") ||
		    (flag_has(f[2], fl[2], "fail") && nf < 9))
			continue;
		if (view_addr(n, f[1], fl[1], addr, sizeof(addr))) {
			log_error("redis: %s: a master's address is not "
				  "IP:PORT: %.*s",
				  n->addr, (int)(fl[1] < 200 ? fl[1] : 200),
				  f[1]);
			return -1;
		}
		struct rnode *mn = node_get(t, addr, add);
		if (!mn && !add) {
			(*missing)++;
			continue;
		}
		if (!mn) {
			log_error("redis: cannot track master %s (not an IP "
				  "address, or more than %u nodes)",
				  addr, REDIS_NODES_MAX);
			return -1;
		}
		uint32_t k = node_index(t, mn);
		bits[k / 64] |= UINT64_C(1) << (k % 64);
	}
	return 0;
}

/* A CLUSTER NODES reply from n: its view of the masters. */
static int nodes_view(struct redis_track *t, struct rnode *n,
		      const uint8_t *buf, const struct resp_reader *r)
{
	uint64_t keep[REDIS_NODES_MAX / 64] = { 0 };
	uint64_t view[REDIS_NODES_MAX / 64] = { 0 };
	uint32_t missing = 0;

	/* Room for the new masters first: the nodes this view names, the
	 * other connected nodes' views, the seeds and servers stay. */
	if (nodes_scan(t, n, buf, r, keep, &missing, false))
		return -1;
	if (t->nnodes + missing > REDIS_NODES_MAX) {
		for (uint32_t i = 0; i < t->nnodes; i++) {
			const struct rnode *m = t->nodes[i];

			if (m == n || m->seed || m->kind == K_STANDALONE)
				keep[i / 64] |= UINT64_C(1) << (i % 64);
			if (m != n && m->has_view)
				for (size_t w = 0; w < REDIS_NODES_MAX / 64;
				     w++)
					keep[w] |= m->view[w];
		}
		nodes_drop(t, keep);
	}
	if (nodes_scan(t, n, buf, r, view, NULL, true))
		return -1;
	memcpy(n->view, view, sizeof(view));
	n->has_view = true;
	return 0;
}

/* Sends CLIENT TRACKING to master n. */
static void node_track(struct redis_track *t, struct rnode *n)
{
	const struct config *c = &t->d->cfg;
	const char *argv[4 + 2 * CONFIG_REDIS_PREFIXES];
	int argc = 0;

	argv[argc++] = "CLIENT";
	argv[argc++] = "TRACKING";
	argv[argc++] = "ON";
	argv[argc++] = "BCAST";
	for (uint32_t i = 0; i < c->n_redis_prefixes; i++) {
		argv[argc++] = "PREFIX";
		argv[argc++] = c->redis_prefixes[i];
	}
	size_t lens[4 + 2 * CONFIG_REDIS_PREFIXES];
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	if (node_send(n, P_TRACKING, argc, (const void *const *)argv, lens))
		node_fail(t, n, "out of memory");
}

/* An invalidation push: ["invalidate", [keys...] or null]. */
static void on_push(struct redis_track *t, struct rnode *n, const uint8_t *buf)
{
	const struct resp_reader *r = &n->rd;

	if (r->nodes[0].n < 2 || !resp_str_eq(r, buf, 1, "invalidate")) {
		log_debug("redis: %s: push message ignored", n->addr);
		return;
	}
	uint32_t k = resp_next(r, 1);
	stat_add(t, REDIS_C_messages, 1);
	if (r->nodes[k].type == '_') {
		/* FLUSHALL or FLUSHDB: everything tracked is gone */
		log_debug("redis: %s: flush message: prefixes flushed",
			  n->addr);
		prefixes_flush(t);
		return;
	}
	if (r->nodes[k].type != '*') {
		node_fail(t, n, "invalidation message without keys");
		return;
	}
	uint64_t keys = 0;
	for (uint32_t i = k + 1; i < r->nodes[k].end; i = resp_next(r, i)) {
		const struct resp_node *key = &r->nodes[i];

		if (key->type != '$' && key->type != '+')
			continue;
		if (!key_tracked(&t->d->cfg, buf + key->off, key->len))
			continue;
		key_drop(t, buf + key->off, key->len);
		keys++;
	}
	stat_add(t, REDIS_C_keys, keys);
}

/* The error text of reply node 0, for messages. */
static const char *err_text(const struct resp_reader *r, const uint8_t *buf,
			    char *out, size_t cap)
{
	const struct resp_node *e = &r->nodes[0];

	snprintf(out, cap, "%.*s", (int)(e->len < 200 ? e->len : 200),
		 (const char *)buf + e->off);
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
	return out;
}

/* One complete frame from n.  Returns false when n was closed. */
static bool on_frame(struct redis_track *t, struct rnode *n)
{
	const struct resp_reader *r = &n->rd;
	const uint8_t *buf = n->in;
	bool is_err = r->nodes[0].type == '-' || r->nodes[0].type == '!';
	char e[256];

	if (r->nodes[0].type == '>') {
		on_push(t, n, buf);
		return n->fd >= 0;
	}
	if (n->pcount == 0) {
		node_fail(t, n, "a reply to no request");
		return false;
	}
	enum pend_kind k = (enum pend_kind)n->pend[n->phead];
	n->phead = (n->phead + 1) % REDIS_PEND_MAX;
	n->pcount--;

	switch (k) {
	case P_HELLO:
		if (is_err) {
			err_text(r, buf, e, sizeof(e));
			node_fail(t, n, "HELLO 3 refused: %s%s", e,
				  strstr(e, "unknown command")
					  ? " (Redis 6 or later is needed)"
					  : "");
			return false;
		}
		return true;
	case P_NODES:
		if (is_err) {
			err_text(r, buf, e, sizeof(e));
			if (strstr(e, "cluster support disabled")) {
				if (n->kind != K_STANDALONE)
					log_info("redis: %s is a standalone "
						 "server",
						 n->addr);
				n->kind = K_STANDALONE;
				n->master = true;
				if (!n->tracking && n->pcount == 0)
					node_track(t, n);
				return n->fd >= 0;
			}
			node_fail(t, n, "CLUSTER NODES refused: %s", e);
			return false;
		}
		if (nodes_view(t, n, buf, r)) {
			node_fail(t, n, "CLUSTER NODES reply not understood");
			return false;
		}
		if (n->kind != K_CLUSTER)
			log_info("redis: %s is a cluster node", n->addr);
		n->kind = K_CLUSTER;
		masters_update(t);
		if (n->fd < 0)
			return false;
		if (n->master && !n->tracking && n->pcount == 0)
			node_track(t, n);
		else if (!n->master && !node_wanted(t, n)) {
			node_close(n);
			state_update(t);
			return false;
		}
		state_update(t);
		return n->fd >= 0;
	case P_TRACKING:
		if (is_err) {
			node_fail(t, n, "CLIENT TRACKING refused: %s",
				  err_text(r, buf, e, sizeof(e)));
			return false;
		}
		n->tracking = true;
		n->backoff_ms = 0;
		if (n->ever_failed)
			log_info("redis: %s: tracking again", n->addr);
		n->ever_failed = false;
		state_update(t);
		return true;
	case P_PING:
		if (is_err) {
			node_fail(t, n, "PING refused: %s",
				  err_text(r, buf, e, sizeof(e)));
			return false;
		}
		return true;
	}
	return true;
}

/* A recv or send on n failed (errno): true to retry it (EINTR), false to
 * stop, after closing n unless the socket only has to wait. */
static bool io_error(struct redis_track *t, struct rnode *n)
{
	if (errno == EINTR)
		return true;
	if (errno != EAGAIN && errno != EWOULDBLOCK)
		node_fail(t, n, "%s", strerror(errno));
	return false;
}

/* Handles the complete frames in n->in, at most *budget of them; sets
 * n->more when some are left.  Returns false when n was closed. */
static bool node_frames(struct redis_track *t, struct rnode *n,
			unsigned *budget)
{
	while (*budget) {
		const char *why = "";
		int rc = resp_read(&n->rd, n->in, n->in_len, &why);

		if (rc == 0) {
			n->more = false;
			return true;
		}
		if (rc < 0) {
			node_fail(t, n, "bad reply from the server: %s", why);
			return false;
		}
		size_t used = n->rd.pos;
		(*budget)--;
		if (!on_frame(t, n))
			return false;
		memmove(n->in, n->in + used, n->in_len - used);
		n->in_len -= used;
		resp_reset(&n->rd);
	}
	n->more = n->in_len > 0;
	return true;
}

/* Reads what n sent and handles the complete frames: one round's share
 * (REDIS_ROUND_BYTES read, REDIS_ROUND_FRAMES handled), so that a node
 * that always has data cannot keep the thread from the others, the
 * timers and the stop.  What is left waits for the next round. */
static void node_read(struct redis_track *t, struct rnode *n)
{
	unsigned budget = REDIS_ROUND_FRAMES;
	size_t got = 0;

	if (!node_frames(t, n, &budget))
		return;
	while (budget && got < REDIS_ROUND_BYTES) {
		if (n->in_len == n->in_cap) {
			size_t cap = n->in_cap * 2;
			uint8_t *p;

			if (cap > REDIS_IN_MAX) {
				node_fail(t, n, "a reply over %u MiB",
					  REDIS_IN_MAX >> 20);
				return;
			}
			if (!(p = realloc(n->in, cap))) {
				node_fail(t, n, "out of memory");
				return;
			}
			n->in = p;
			n->in_cap = cap;
		}
		size_t room = n->in_cap - n->in_len;
		ssize_t k = recv(n->fd, n->in + n->in_len,
				 room < REDIS_ROUND_BYTES - got
					 ? room
					 : REDIS_ROUND_BYTES - got,
				 0);
		if (k == 0) {
			node_fail(t, n, "connection closed by the server");
			return;
		}
		if (k < 0) {
			if (io_error(t, n))
				continue;
			break;
		}
		t->lock_flushed = 0; /* frames a past flush did not cover */
		got += (size_t)k;
		n->in_len += (size_t)k;
		if (!node_frames(t, n, &budget))
			return;
	}
	/* A large message made the buffer grow: give it back once nothing
	 * is pending. */
	if (n->in_len == 0 && n->in_cap > REDIS_IN_INITIAL * 64) {
		uint8_t *p = realloc(n->in, REDIS_IN_INITIAL);

		if (p) {
			n->in = p;
			n->in_cap = REDIS_IN_INITIAL;
		}
	}
}

static void node_write(struct redis_track *t, struct rnode *n)
{
	while (n->out_off < n->out_len) {
		ssize_t k = send(n->fd, n->out + n->out_off,
				 n->out_len - n->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k < 0) {
			if (io_error(t, n))
				continue;
			return;
		}
		n->out_off += (size_t)k;
	}
	/* Sent: HELLO's AUTH password must not stay behind in the heap. */
	explicit_bzero(n->out, n->out_len);
	n->out_off = n->out_len = 0;
}

/* Timers: connect deadlines, reply deadlines, pings, reconnects. */
static void nodes_tick(struct redis_track *t)
{
	uint64_t now = clock_mono_ms();

	for (uint32_t i = 0; i < t->nnodes; i++) {
		struct rnode *n = t->nodes[i];

		switch (n->st) {
		case C_IDLE:
			if (!node_wanted(t, n) || now < n->next_try)
				break;
			if (n->host[0])
				resolve_start(t, n);
			else
				node_connect(t, n);
			break;
		case C_RESOLVING:
			resolve_check(t, n);
			break;
		case C_CONNECTING:
			if (now >= n->deadline)
				node_fail(t, n, "no connection within %u ms",
					  REDIS_CONNECT_MS);
			break;
		case C_OPEN:
			if (n->pcount &&
			    now - n->pend_at[n->phead] >= REDIS_DEADLINE_MS) {
				node_fail(t, n, "no reply within %u ms",
					  REDIS_DEADLINE_MS);
				break;
			}
			if (now < n->next_ping || n->pcount)
				break;
			n->next_ping = now + REDIS_PING_MS;
			int rc = n->kind == K_CLUSTER
					 ? node_sendv(n, P_NODES, 2,
						      (const char *[]){
							      "CLUSTER",
							      "NODES" })
					 : node_sendv(n, P_PING, 1,
						      (const char *[]){
							      "PING" });
			if (rc)
				node_fail(t, n, "out of memory");
			break;
		}
	}
}

/* ------------------------------------------------------------------------
 * The thread
 * ------------------------------------------------------------------------ */

static void *redis_main(void *arg)
{
	struct redis_track *t = arg;
	struct pollfd pf[REDIS_NODES_MAX + 1];
	struct rnode *pn[REDIS_NODES_MAX + 1];

	for (;;) {
		nodes_reap(t);
		nodes_tick(t);
		nfds_t np = 0;

		pf[np] = (struct pollfd){ .fd = t->wake_fd, .events = POLLIN };
		pn[np++] = NULL;
		for (uint32_t i = 0; i < t->nnodes; i++) {
			struct rnode *n = t->nodes[i];

			if (n->fd < 0)
				continue;
			short ev = n->st == C_CONNECTING ? POLLOUT : POLLIN;
			if (n->st == C_OPEN && n->out_len > n->out_off)
				ev |= POLLOUT;
			pf[np] = (struct pollfd){ .fd = n->fd, .events = ev };
			pn[np++] = n;
		}
		/* A node with frames left over from the last round: poll
		 * only to see who else is ready, then serve them all. */
		bool more = false;
		for (nfds_t i = 1; i < np; i++)
			more |= pn[i]->more;
		int k = poll(pf, np, more ? 0 : 100);
		if (k < 0 && errno != EINTR) {
			log_error("redis: poll: %s", strerror(errno));
			usleep(100000);
			continue;
		}
		if (k < 0)
			continue;
		if (k > 0 && pf[0].revents)
			break; /* stop */
		for (nfds_t i = 1; i < np; i++) {
			struct rnode *n = pn[i];

			if (n->fd != pf[i].fd || !(pf[i].revents || n->more))
				continue;
			if (n->st == C_CONNECTING) {
				int err = 0;
				socklen_t el = sizeof(err);

				getsockopt(n->fd, SOL_SOCKET, SO_ERROR, &err,
					   &el);
				if (err || (pf[i].revents & POLLNVAL)) {
					node_fail(t, n, "connect: %s",
						  strerror(err ? err : EBADF));
					continue;
				}
				node_connected(t, n);
				node_write(t, n);
				continue;
			}
			if ((pf[i].revents & (POLLIN | POLLHUP | POLLERR)) ||
			    n->more)
				node_read(t, n);
			if (n->fd >= 0 && n->out_len > n->out_off)
				node_write(t, n);
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * Start and stop
 * ------------------------------------------------------------------------ */

/* Reads the password: the first line of path. */
static int password_read(const char *path, char *out, size_t cap, char *err,
			 size_t ecap)
{
	struct opt_qbuf q;
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(err, ecap, "--redis-password-file %s: %s",
			 opt_quote(&q, path), strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & S_IROTH))
		log_warn("--redis-password-file %s is readable by every user: "
			 "chmod o-r it",
			 opt_quote(&q, path));
	ssize_t n = read(fd, out, cap - 1);
	int e = errno;
	close(fd);
	if (n < 0) {
		snprintf(err, ecap, "--redis-password-file %s: %s",
			 opt_quote(&q, path), strerror(e));
		return -1;
	}
	out[n] = '\0';
	out[strcspn(out, "\r\n")] = '\0';
	if (!out[0]) {
		snprintf(err, ecap,
			 "--redis-password-file %s: empty first line (the "
			 "password goes there)",
			 opt_quote(&q, path));
		return -1;
	}
	return 0;
}

int redis_prepare(struct daemon *d, char *err, size_t cap)
{
	const struct config *c = &d->cfg;
	struct redis_track *t;

	if (!c->n_redis)
		return 0;
	t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, cap, "redis: out of memory");
		return -1;
	}
	t->d = d;
	t->wake_fd = -1;
	t->lock = &d->redis_lock;
	t->st = &d->redis_st;
	pthread_mutex_lock(t->lock);
	t->st->state = "connecting";
	pthread_mutex_unlock(t->lock);
	if (c->redis_password_file[0]) {
		if (password_read(c->redis_password_file, t->password,
				  sizeof(t->password), err, cap)) {
			free(t);
			return -1;
		}
		t->has_password = true;
	} else if (getenv("SHMCACHED_REDIS_PASSWORD")) {
		snprintf(t->password, sizeof(t->password), "%s",
			 getenv("SHMCACHED_REDIS_PASSWORD"));
		t->has_password = t->password[0] != '\0';
	}
	for (uint32_t i = 0; i < c->n_redis; i++) {
		/* A name, localhost too, is looked up at each connect. */
		struct rnode *n = config_redis_name(c->redis[i])
					  ? seed_by_name(t, c->redis[i])
					  : node_get(t, c->redis[i], true);

		if (!n) { /* config_parse() checked them */
			snprintf(err, cap, "--redis %s: not an address",
				 c->redis[i]);
			free(t);
			return -1;
		}
		n->seed = true;
	}
	d->redis = t;
	return 0;
}

void redis_unblock_untracked(struct daemon *d)
{
	static struct eng_ns_info ns[LAYOUT_NS_SLOTS]; /* main()'s, once */
	const struct config *c = &d->cfg;
	int n = eng_ns_list(&d->eng, ns, LAYOUT_NS_SLOTS);

	pthread_mutex_lock(&d->ns_lock);
	for (int i = 0; i < n && i < (int)LAYOUT_NS_SLOTS; i++) {
		bool tracked = false;

		for (uint32_t k = 0; k < c->n_redis_prefixes && !tracked; k++)
			tracked = strlen(c->redis_prefixes[k]) == ns[i].len &&
				  !memcmp(c->redis_prefixes[k], ns[i].prefix,
					  ns[i].len);
		if (!tracked)
			eng_ns_block(&d->eng, ns[i].prefix, ns[i].len, false);
	}
	pthread_mutex_unlock(&d->ns_lock);
}

int redis_start(struct daemon *d, char *err, size_t cap)
{
	struct redis_track *t = d->redis;
	const struct config *c = &d->cfg;
	int rc;

	if (!t)
		return 0;
	pthread_mutex_lock(&d->ns_lock);
	for (uint32_t i = 0; i < c->n_redis_prefixes; i++) {
		const char *p = c->redis_prefixes[i];

		rc = eng_ns_add(&d->eng, p, strlen(p));
		if (rc && rc != -EEXIST) {
			struct opt_qbuf q;

			pthread_mutex_unlock(&d->ns_lock);
			snprintf(err, cap,
				 "--redis-prefix %s: cannot register it as a "
				 "namespace: %s%s",
				 opt_quote(&q, p), strerror(-rc),
				 rc == -ENOSPC ? " (the region's table is "
						 "full: " NS_FULL_HOW ")"
					       : "");
			return -1;
		}
	}
	pthread_mutex_unlock(&d->ns_lock);
	/* The region may hold values from before this daemon ran. */
	prefixes_drop(t);
	t->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->wake_fd < 0) {
		snprintf(err, cap, "redis: eventfd: %s", strerror(errno));
		return -1;
	}
	t->seed = (unsigned)(clock_mono_ms() ^ (uint64_t)getpid());
	rc = pthread_create(&t->thread, NULL, redis_main, t);
	if (rc) {
		snprintf(err, cap, "redis: cannot start the thread: %s",
			 strerror(rc));
		return -1;
	}
	t->running = true;
	return 0;
}

void redis_stop(struct daemon *d)
{
	struct redis_track *t = d->redis;
	uint64_t one = 1;

	if (!t)
		return;
	if (t->running) {
		if (write(t->wake_fd, &one, sizeof(one)) != sizeof(one))
			log_warn("redis: cannot wake the thread: %s",
				 strerror(errno));
		pthread_join(t->thread, NULL);
		/* Nobody follows Redis from now on. */
		prefixes_drop(t);
	}
	for (uint32_t i = 0; i < t->nnodes; i++)
		node_free(t->nodes[i]);
	t->nnodes = 0;
	nodes_reap(t);
	if (t->wake_fd >= 0)
		close(t->wake_fd);
	pthread_mutex_lock(t->lock);
	t->st->state = NULL;
	pthread_mutex_unlock(t->lock);
	memset(t->password, 0, sizeof(t->password));
	free(t);
	d->redis = NULL;
}
