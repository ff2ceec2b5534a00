/*
 * near.c - shmc-bench --near-cache: shmcached as the host's near cache in
 * front of Redis (docs/NEARCACHE.md), measured against Redis alone.  One
 * redis-server on loopback TCP (started here, or --redis ADDR) holds every
 * key; the same read-mostly workload (Zipf keys, get=95,set=5 by default)
 * from several processes then runs twice, through run.c:
 *
 *   without (backend "redis-only")  a read is a Redis GET, a write a SET;
 *   with    (backend "near-cache")  a read is shmc_get_lease() on the
 *                                   region, and on a miss a Redis GET and
 *                                   shmc_fill() under the lease; a write
 *                                   is a Redis SET, then shmc_del() of the
 *                                   writer's local copy (read-your-writes),
 *                                   as libclient/examples/redis_nearcache.c.
 *
 * Redis's load over each measured phase is read from INFO (commands
 * processed, GET calls, CPU) when the phase begins and ends (the
 * backends' mark hook).  Then, when the daemon follows Redis's
 * invalidations (shmcached --redis ADDR --redis-prefix P), the
 * invalidation latency: a key is cached, written in Redis, and the region
 * polled until the key is gone.  Compiled only with hiredis.
 *
 * Parts: Redis helpers; the two backends; invalidation; the report.
 */
#include "bench.h"
#include "run.h"
#include "shmc.h"
#include "workload.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <hiredis/hiredis.h>

#define PROG "shmc-bench"
/* The workload's keys all start with "k" (workload.c): the prefix the
 * daemon is told to track. */
#define NEAR_PREFIX "k"
/* A write whose key is still in the region this long after is counted
 * as never invalidated. */
#define INVAL_TIMEOUT_NS 2000000000LL

/* ------------------------------------------------------------------------
 * Redis helpers
 * ------------------------------------------------------------------------ */

/* Redis's counters at one instant. */
struct rd_load {
	bool ok;
	uint64_t cmds; /* INFO stats total_commands_processed */
	uint64_t gets; /* INFO commandstats cmdstat_get calls */
	double cpu_s;  /* INFO cpu used_cpu_sys + used_cpu_user */
};

/* What the mark hook read for the run in progress (parent only):
 * [0] as its measured phase began, [1] as it ended. */
static struct rd_load marks[2];

/* Connects to addr: "HOST:PORT", else a Unix socket path.  NULL with why
 * set. */
static redisContext *near_connect(const char *addr, char *why, size_t n)
{
	const char *colon = strrchr(addr, ':');
	redisContext *r;

	if (addr[0] != '/' && colon) {
		char host[256];
		char *end;
		long port = strtol(colon + 1, &end, 10);

		if ((size_t)(colon - addr) >= sizeof(host) || *end ||
		    port <= 0 || port > 65535) {
			srv_fail(why, n, -EINVAL,
				 "redis address '%s': HOST:PORT or a Unix "
				 "socket path expected",
				 addr);
			return NULL;
		}
		snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
		r = redisConnect(host, (int)port);
	} else {
		r = redisConnectUnix(addr);
	}
	if (!r || r->err) {
		srv_fail(why, n, -ECONNREFUSED, "redis %s: %s", addr,
			 r ? r->errstr : "out of memory");
		redisFree(r);
		return NULL;
	}
	return r;
}

/* INFO section of r as a string to free(), or NULL. */
static char *rd_info(redisContext *r, const char *section)
{
	redisReply *rep = redisCommand(r, "INFO %s", section);
	char *s = NULL;

	if (rep && rep->type == REDIS_REPLY_STRING)
		s = strdup(rep->str);
	if (rep)
		freeReplyObject(rep);
	return s;
}

/* The number after "name" at a line start of info; 0 when absent. */
static double info_num(const char *info, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = info; p && *p; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		if (!strncmp(p, name, n))
			return strtod(p + n, NULL);
	}
	return 0;
}

static bool rd_load_read(redisContext *r, struct rd_load *l)
{
	char *stats = rd_info(r, "stats"), *cpu = rd_info(r, "cpu");
	char *cmd = rd_info(r, "commandstats");

	l->ok = stats && cpu && cmd;
	if (l->ok) {
		l->cmds = (uint64_t)info_num(stats,
					     "total_commands_processed:");
		l->gets = (uint64_t)info_num(cmd, "cmdstat_get:calls=");
		l->cpu_s = info_num(cpu, "used_cpu_sys:") +
			   info_num(cpu, "used_cpu_user:");
	}
	free(stats);
	free(cpu);
	free(cmd);
	return l->ok;
}

/* The backends' mark hook: Redis's counters now, into marks[]. */
static void near_mark(struct be_server *s, bool begin)
{
	struct rd_load *l = &marks[begin ? 0 : 1];
	char why[256];
	redisContext *r = near_connect(s->cfg->redis_addr, why, sizeof(why));

	l->ok = false;
	if (r) {
		rd_load_read(r, l);
		redisFree(r);
	}
}

/* Sets every key of w to its value, pipelined.  0 or -errno with why. */
static int rd_load_keys(redisContext *r, const struct workload *w, char *why,
			size_t n)
{
	const struct bench_cfg *cfg = w->cfg;
	const uint32_t chunk = 1000;

	for (uint32_t k0 = 0; k0 < cfg->keys; k0 += chunk) {
		uint32_t k1 = k0 + chunk < cfg->keys ? k0 + chunk : cfg->keys;

		for (uint32_t k = k0; k < k1; k++)
			redisAppendCommand(r, "SET %b %b", wl_key(w, k),
					   (size_t)cfg->key_size, w->vals,
					   (size_t)w->vlen[k]);
		for (uint32_t k = k0; k < k1; k++) {
			redisReply *rep = NULL;

			if (redisGetReply(r, (void **)&rep) != REDIS_OK ||
			    rep->type == REDIS_REPLY_ERROR) {
				srv_fail(why, n, -EIO, "loading the keys: %s",
					 rep ? rep->str : r->errstr);
				if (rep)
					freeReplyObject(rep);
				return -EIO;
			}
			freeReplyObject(rep);
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * The two backends.  Both find the keys in Redis already (BE_PREFILLED);
 * one hiredis connection per worker thread.
 * ------------------------------------------------------------------------ */

/* Without: Redis only. */

static int off_start(struct be_server *s)
{
	(void)s;
	return 0;
}

static void off_stop(struct be_server *s)
{
	(void)s;
}

static int off_attach(struct be_server *s, void **proc, char *why, size_t n)
{
	(void)why;
	(void)n;
	*proc = (void *)s->cfg->redis_addr;
	return 0;
}

static void off_detach(void *proc)
{
	(void)proc;
}

static int off_open(void *proc, void **thr, char *why, size_t n)
{
	*thr = near_connect(proc, why, n);
	return *thr ? 0 : -ECONNREFUSED;
}

static void off_close(void *thr)
{
	redisFree(thr);
}

/* A write needs no del, nor a read an mget, in this mode. */
static int near_no_del(void *thr, const void *key, size_t klen)
{
	(void)thr;
	(void)key;
	(void)klen;
	return -EOPNOTSUPP;
}

static const struct backend be_near_off = {
	.name = "redis-only",
	.flags = BE_REMOTE | BE_PREFILLED,
	.start = off_start,
	.stop = off_stop,
	.attach = off_attach,
	.detach = off_detach,
	.open = off_open,
	.close = off_close,
	.get = rd_get,
	.set = rd_set,
	.del = near_no_del,
	.mark = near_mark,
};

/* With: the region first. */

struct near_proc {
	shmc *c;
	const char *addr;
};

struct near_thr {
	shmc *c;
	redisContext *r;
};

static int on_start(struct be_server *s)
{
	const char *extra[] = { "--redis", s->cfg->redis_addr, "--redis-prefix",
				NEAR_PREFIX };

	if (s->cfg->shmc_socket) {
		snprintf(s->sock, sizeof(s->sock), "%s", s->cfg->shmc_socket);
		return 0;
	}
	return be_shmc_spawn(s, extra, s->cfg->near_tracking ? 4 : 0);
}

static void on_stop(struct be_server *s)
{
	srv_kill(s);
	srv_rmdir(s);
}

static int on_attach(struct be_server *s, void **proc, char *why, size_t n)
{
	struct near_proc *p = calloc(1, sizeof(*p));
	int rc;

	if (!p)
		return srv_fail(why, n, -ENOMEM, "out of memory");
	rc = shmc_open(&p->c, s->sock);
	if (rc) {
		free(p);
		return srv_fail(why, n, rc, "shmc_open %s: %s", s->sock,
				shmc_strerror(rc));
	}
	p->addr = s->cfg->redis_addr;
	*proc = p;
	return 0;
}

static void on_detach(void *proc)
{
	struct near_proc *p = proc;

	shmc_close(p->c);
	free(p);
}

static int on_open(void *proc, void **thr, char *why, size_t n)
{
	struct near_proc *p = proc;
	struct near_thr *t = calloc(1, sizeof(*t));

	if (!t)
		return srv_fail(why, n, -ENOMEM, "out of memory");
	t->c = p->c;
	t->r = near_connect(p->addr, why, n);
	if (!t->r) {
		free(t);
		return -ECONNREFUSED;
	}
	*thr = t;
	return 0;
}

static void on_close(void *thr)
{
	struct near_thr *t = thr;

	redisFree(t->r);
	free(t);
}

/* Read-through: 0 when the region had it, BE_MISS when it came from Redis
 * (and was cached unless the lease was voided meanwhile), or -errno. */
static int on_get(void *thr, const void *key, size_t klen, void *buf,
		  size_t cap, size_t *vlen)
{
	struct near_thr *t = thr;
	struct shmc_lease l;
	struct shmc_item it;
	int rc = shmc_get_lease(t->c, key, klen, buf, cap, &it, &l);

	if (rc == 0) {
		*vlen = it.vlen;
		return 0;
	}
	if (rc != -ENOENT)
		return rc;
	rc = rd_get(t->r, key, klen, buf, cap, vlen);
	if (rc)
		return rc;
	/* -ESTALE, -EEXIST: served, not cached; that is the rule. */
	shmc_fill(t->c, &l, key, klen, buf, *vlen, NULL, NULL);
	return BE_MISS;
}

/* Write: Redis, then the local copy goes. */
static int on_set(void *thr, const void *key, size_t klen, const void *val,
		  size_t vlen)
{
	struct near_thr *t = thr;
	int rc = rd_set(t->r, key, klen, val, vlen);

	if (rc)
		return rc;
	rc = shmc_del(t->c, key, klen);
	return rc == -ENOENT ? 0 : rc;
}

static const struct backend be_near_on = {
	.name = "near-cache",
	.flags = BE_PREFILLED,
	.start = on_start,
	.stop = on_stop,
	.attach = on_attach,
	.detach = on_detach,
	.open = on_open,
	.close = on_close,
	.get = on_get,
	.set = on_set,
	.del = near_no_del,
	.mark = near_mark,
	.strerror = shmc_strerror,
};

/* True when daemon's --help lists --redis-prefix: it can follow Redis. */
static bool daemon_tracks(const char *daemon)
{
	char cmd[PATH_MAX + 32], line[512];
	bool found = false;
	FILE *f;

	if (!daemon || strchr(daemon, '\''))
		return false;
	snprintf(cmd, sizeof(cmd), "'%s' --help 2>&1", daemon);
	f = popen(cmd, "r");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		found |= strstr(line, "--redis-prefix") != NULL;
	pclose(f);
	return found;
}

/* ------------------------------------------------------------------------
 * Invalidation latency
 * ------------------------------------------------------------------------ */

struct inval {
	bool measured;
	char why[400];	       /* not measured: why */
	unsigned writes;       /* measured */
	unsigned timeouts;     /* key still cached INVAL_TIMEOUT_NS after */
	unsigned stale_writes; /* writes with a stale read after the ack */
	uint64_t stale_reads;  /* reads of the old value after the ack */
	struct hist gone;      /* SET sent -> key gone, ns */
	struct hist window;    /* SET acknowledged -> key gone (0: at once) */
};

/* Caches key = val (retrying while the daemon refuses it, e.g. while its
 * tracking is not up).  0 or -errno. */
static int inval_place(shmc *c, const char *key, size_t klen, const char *val)
{
	int64_t end = now_ns() + 5000000000LL;
	char buf[64];
	size_t len;
	int rc;

	do {
		rc = shmc_set(c, key, klen, val, strlen(val), 0);
		if (!rc)
			rc = shmc_get(c, key, klen, buf, sizeof(buf), &len);
		if (!rc)
			return 0;
		sched_yield();
	} while (now_ns() < end);
	return rc;
}

/* One write of key in Redis while it is cached; its figures into *iv.
 * 0, -ETIMEDOUT (still cached after INVAL_TIMEOUT_NS), or -errno. */
static int inval_one(shmc *c, redisContext *r, const char *key, size_t klen,
		     unsigned i, struct inval *iv)
{
	char old[32], new[32], buf[64];
	int64_t t0, t_ack, t;
	uint64_t stale = 0;
	size_t len;
	int rc;

	snprintf(old, sizeof(old), "old-%u", i);
	snprintf(new, sizeof(new), "new-%u", i);
	if ((rc = inval_place(c, key, klen, old)))
		return rc;
	t0 = now_ns();
	if ((rc = rd_set(r, key, klen, new, strlen(new))))
		return rc;
	t_ack = now_ns();
	for (;;) {
		rc = shmc_get(c, key, klen, buf, sizeof(buf), &len);
		t = now_ns();
		if (rc == -ENOENT)
			break;
		if (rc)
			return rc;
		stale += len == strlen(old) && !memcmp(buf, old, len);
		if (t - t0 > INVAL_TIMEOUT_NS)
			return -ETIMEDOUT;
		sched_yield(); /* the daemon may need this CPU */
	}
	hist_add(&iv->gone, (uint64_t)(t - t0));
	hist_add(&iv->window, stale ? (uint64_t)(t - t_ack) : 0);
	iv->stale_reads += stale;
	iv->stale_writes += stale > 0;
	iv->writes++;
	return 0;
}

static void inval_run(const struct bench_cfg *cfg, const struct workload *w,
		      unsigned writes, struct inval *iv)
{
	struct be_server s = { .cfg = cfg };
	const char *extra[] = { "--redis", cfg->redis_addr, "--redis-prefix",
				NEAR_PREFIX };
	redisContext *r = NULL;
	shmc *c = NULL;
	int rc;

	if (writes == 0) {
		snprintf(iv->why, sizeof(iv->why), "--inval-writes 0");
		return;
	}
	if (cfg->shmc_socket) {
		snprintf(s.sock, sizeof(s.sock), "%s", cfg->shmc_socket);
	} else if (!cfg->near_tracking) {
		snprintf(iv->why, sizeof(iv->why),
			 "the daemon %s cannot follow Redis (its --help "
			 "has no --redis-prefix)",
			 cfg->daemon);
		return;
	} else if ((rc = be_shmc_spawn(&s, extra, 4))) {
		snprintf(iv->why, sizeof(iv->why), "%.399s", s.why);
		goto out;
	}
	rc = shmc_open(&c, s.sock);
	if (rc) {
		snprintf(iv->why, sizeof(iv->why), "shmc_open %.200s: %.150s",
			 s.sock, shmc_strerror(rc));
		goto out;
	}
	r = near_connect(cfg->redis_addr, iv->why, sizeof(iv->why));
	if (!r)
		goto out;
	/* Until a first write is seen dropped, the tracking may not be up
	 * yet (or, with --socket, not there at all). */
	{
		int64_t end = now_ns() + 10000000000LL;
		struct inval probe = { 0 };

		do {
			rc = inval_one(c, r, wl_key(w, 0), cfg->key_size, 0,
				       &probe);
		} while (rc == -ETIMEDOUT && now_ns() < end &&
			 !run_interrupted);
		if (rc) {
			snprintf(iv->why, sizeof(iv->why),
				 "a key written in Redis stayed in the region "
				 "(%s): the daemon does not follow Redis "
				 "(shmcached --redis ADDR --redis-prefix %s)",
				 rc == -ETIMEDOUT ? "for 10 s" : strerror(-rc),
				 NEAR_PREFIX);
			goto out;
		}
	}
	for (unsigned i = 0; i < writes && !run_interrupted; i++) {
		uint32_t k = 1 + i % (cfg->keys > 1 ? cfg->keys - 1 : 1);

		rc = inval_one(c, r, wl_key(w, k % cfg->keys), cfg->key_size, i,
			       iv);
		if (rc == -ETIMEDOUT) {
			iv->timeouts++;
		} else if (rc) {
			snprintf(iv->why, sizeof(iv->why), "write %u: %s", i,
				 strerror(-rc));
			goto out;
		}
	}
	iv->measured = true;
out:
	if (r)
		redisFree(r);
	if (c)
		shmc_close(c);
	if (!cfg->shmc_socket) {
		srv_kill(&s);
		srv_rmdir(&s);
	}
}

/* ------------------------------------------------------------------------
 * The machine's floor: what a read of one cache line costs when the line
 * is in none of this core's caches.  A hit reads a few lines that depend
 * on one another (bucket, entry, record); in this workload, whose reads
 * alternate with Redis round trips, they are often out of the core's
 * caches, and then no hit costs less than one such read.  Printed beside
 * the 50x verdict, so that a round's figures say what bounds them.
 * ------------------------------------------------------------------------ */

#define FLOOR_BYTES ((size_t)256 << 20) /* far more than the L2 */
#define FLOOR_HUGE_BYTES ((size_t)64 << 20)
#define FLOOR_SAMPLES 20000

struct floor {
	bool ok;
	uint64_t small_p50; /* 4 KiB pages, ns */
	uint64_t huge_p50;  /* 2 MiB pages, ns; 0: none given */
};

/* kB of the mapping at addr backed by transparent huge pages, from
 * /proc/self/smaps; 0 when none (or unreadable). */
static unsigned long thp_kb(const void *addr)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[256], want[32];
	bool in = false;
	unsigned long kb = 0;

	if (!f)
		return 0;
	snprintf(want, sizeof(want), "%lx-", (unsigned long)addr);
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, want, strlen(want)))
			in = true;
		else if (in && sscanf(line, "AnonHugePages: %lu kB", &kb) == 1)
			break;
	}
	fclose(f);
	return in ? kb : 0;
}

/* The p50 of one timed load of a random line of b[0..n), every line
 * already faulted in.  Each sample's line is drawn at random from n bytes,
 * so it is almost never one a previous sample brought in. */
static uint64_t floor_read(const unsigned char *b, size_t n, int64_t ovh)
{
	struct hist *h = calloc(1, sizeof(*h));
	uint64_t x = 0x9e3779b97f4a7c15ULL, p50;

	if (!h)
		return 0;
	for (int i = 0; i < FLOOR_SAMPLES; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		const volatile uint64_t *q =
			(const volatile uint64_t *)(b + (x % (n / 64)) * 64);
		int64_t t0 = now_ns();
		(void)*q;
		/* now_ns() orders the load before its clock read. */
		int64_t d = now_ns() - t0 - ovh;

		hist_add(h, d > 0 ? (uint64_t)d : 0);
	}
	p50 = hist_quantile(h, 0.5);
	free(h);
	return p50;
}

static void floor_probe(int64_t ovh, struct floor *f)
{
	unsigned char *b = mmap(NULL, FLOOR_BYTES, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	memset(f, 0, sizeof(*f));
	if (b == MAP_FAILED)
		return;
	madvise(b, FLOOR_BYTES, MADV_NOHUGEPAGE);
	memset(b, 1, FLOOR_BYTES);
	f->small_p50 = floor_read(b, FLOOR_BYTES, ovh);
	f->ok = f->small_p50 > 0;
	munmap(b, FLOOR_BYTES);

	/* 2 MiB pages where the kernel gives them (THP "madvise" or
	 * "always"): aligned by mapping twice the size. */
	size_t span = 2 * FLOOR_HUGE_BYTES;
	unsigned char *m = mmap(NULL, span, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		return;
	unsigned char *a = (unsigned char *)(((uintptr_t)m + (2u << 20) - 1) &
					     ~(uintptr_t)((2u << 20) - 1));
	if (madvise(a, FLOOR_HUGE_BYTES, MADV_HUGEPAGE) == 0) {
		memset(a, 1, FLOOR_HUGE_BYTES);
		if (thp_kb(a) >= (FLOOR_HUGE_BYTES >> 10) / 2)
			f->huge_p50 = floor_read(a, FLOOR_HUGE_BYTES, ovh);
	}
	munmap(m, span);
}

/* ------------------------------------------------------------------------
 * The report
 * ------------------------------------------------------------------------ */

/* "1.23 us" style: ns below 10 us, else us, into buf. */
static const char *fmt_ns(uint64_t ns, char *buf, size_t cap)
{
	if (ns < 10000)
		snprintf(buf, cap, "%" PRIu64 " ns", ns);
	else
		snprintf(buf, cap, "%.1f us", (double)ns / 1e3);
	return buf;
}

static uint64_t total_ops(const struct run_result *r)
{
	return r->ops[OP_GET] + r->ops[OP_SET];
}

static void print_run(const char *label, const struct run_result *r)
{
	char p50[32], p99[32];
	uint64_t n = r->hits + r->misses;

	if (r->status != RUN_OK) {
		printf("%-8s %s: %s\n", label,
		       r->status == RUN_SKIPPED ? "skipped" : "failed", r->why);
		return;
	}
	printf("%-8s %12.0f %12s %12s %9.2f %12.0f", label,
	       r->elapsed_s > 0 ? (double)r->ops[OP_GET] / r->elapsed_s : 0,
	       fmt_ns(hist_quantile(&r->lat[OP_GET], 0.5), p50, sizeof(p50)),
	       fmt_ns(hist_quantile(&r->lat[OP_GET], 0.99), p99, sizeof(p99)),
	       n ? 100.0 * (double)r->hits / (double)n : 0,
	       r->elapsed_s > 0 ? (double)r->ops[OP_SET] / r->elapsed_s : 0);
	if (r->errors)
		printf("  %" PRIu64 " errors, first: %s", r->errors,
		       r->first_error);
	printf("\n");
}

/* Redis's load over one run: the deltas, per measured op. */
struct load {
	bool ok;
	uint64_t cmds, gets;
	double cpu_s;
};

static void print_load(const char *label, const struct load *l,
		       const struct run_result *r)
{
	uint64_t ops = total_ops(r);

	if (!l->ok || r->status != RUN_OK || !ops || !r->ops[OP_GET]) {
		printf("%-8s %s\n", label, "not read (INFO failed)");
		return;
	}
	printf("%-8s %12" PRIu64 " %9.3f %12" PRIu64 " %9.3f %8.2f %10.2f\n",
	       label, l->cmds, (double)l->cmds / (double)ops, l->gets,
	       (double)l->gets / (double)r->ops[OP_GET], l->cpu_s,
	       l->cpu_s * 1e6 / (double)ops);
}

static void report(const struct bench_cfg *cfg, const char *redis_version,
		   const struct run_result res[2], const struct load load[2],
		   const struct inval *iv, const struct floor *fl)
{
	const struct run_result *off = &res[0], *on = &res[1];
	char a[32], b[32], c[32], d[32];

	bool unix_sock = cfg->redis_addr[0] == '/' ||
			 !strchr(cfg->redis_addr, ':');

	printf(PROG " near cache: Redis %s at %s (%s), hiredis %d.%d.%d\n",
	       redis_version, cfg->redis_addr,
	       unix_sock ? "Unix socket" : "TCP", HIREDIS_MAJOR, HIREDIS_MINOR,
	       HIREDIS_PATCH);
	printf("  %u keys x (%u B key + ", cfg->keys, cfg->key_size);
	if (cfg->vmin == cfg->vmax)
		printf("%u B value), ", cfg->vmax);
	else
		printf("%u..%u B value), ", cfg->vmin, cfg->vmax);
	if (cfg->zipf > 0)
		printf("zipf:%g", cfg->zipf);
	else
		printf("uniform");
	printf(", get=%u,set=%u; %u process(es) x %u thread(s), %g s "
	       "measured after %g s warm-up\n",
	       cfg->mix[OP_GET], cfg->mix[OP_SET], cfg->procs, cfg->threads,
	       cfg->duration, cfg->warmup);
	printf("  without: a read is a Redis GET; with: shmc_get_lease, on a "
	       "miss Redis GET + shmc_fill;\n  a write is a Redis SET (with: "
	       "then shmc_del of the writer's copy)\n");
	bench_print_build();
	if (cfg->shmc_socket)
		printf("  shmcached: the daemon at %s\n", cfg->shmc_socket);
	else if (cfg->near_tracking)
		printf("  shmcached: %s --redis %s --redis-prefix %s, cache "
		       "%" PRIu64 " MiB\n",
		       cfg->daemon, cfg->redis_addr, NEAR_PREFIX,
		       cfg->cache >> 20);
	else
		printf("  shmcached: %s, cache %" PRIu64 " MiB, NOT following "
		       "Redis (no --redis-prefix in its --help): only the "
		       "writer drops its copy\n",
		       cfg->daemon, cfg->cache >> 20);
	printf("\n%-8s %12s %12s %12s %9s %12s\n", "config", "reads/s",
	       "read p50", "read p99", "hit%", "writes/s");
	print_run("without", off);
	print_run("with", on);
	if (off->status != RUN_OK || on->status != RUN_OK)
		return;

	{
		uint64_t hit = hist_quantile(&on->lat_hit, 0.5);
		uint64_t get = hist_quantile(&off->lat[OP_GET], 0.5);
		uint64_t hit99 = hist_quantile(&on->lat_hit, 0.99);
		uint64_t get99 = hist_quantile(&off->lat[OP_GET], 0.99);
		double x = hit ? (double)get / (double)hit : 0;

		struct hist miss = on->lat[OP_GET];
		uint64_t mp50;

		printf("\nregion hit vs Redis GET: p50 %s vs %s = %.0fx faster "
		       "(target >= 50x: %s); p99 %s vs %s\n",
		       fmt_ns(hit, a, sizeof(a)), fmt_ns(get, b, sizeof(b)), x,
		       x >= 50 ? "met" : "NOT met", fmt_ns(hit99, c, sizeof(c)),
		       fmt_ns(get99, d, sizeof(d)));
		if (fl->ok) {
			uint64_t need = get / 50;

			printf("  the floor here: a read of one random line "
			       "of 256 MiB (out of the core's caches), p50 %s "
			       "with 4 KiB pages",
			       fmt_ns(fl->small_p50, a, sizeof(a)));
			if (fl->huge_p50)
				printf(", %s with 2 MiB pages",
				       fmt_ns(fl->huge_p50, b, sizeof(b)));
			else
				printf(" (no 2 MiB pages given)");
			printf("; 50x this GET needs hits of %s or less%s\n",
			       fmt_ns(need, c, sizeof(c)),
			       need < fl->small_p50
				       ? ": less than one such read, which a hit "
					 "whose lines are out of the cache pays "
					 "at least once"
				       : "");
		}
		/* The reads that missed, in the same run: its sampled reads
		 * less those that hit. */
		for (unsigned i = 0; i < HIST_BUCKETS; i++)
			miss.b[i] -= on->lat_hit.b[i];
		miss.count -= on->lat_hit.count;
		mp50 = hist_quantile(&miss, 0.5);
		if (miss.count && hit)
			printf("  in the same run: a miss (Redis GET + "
			       "shmc_fill) p50 %s = %.0fx a hit\n",
			       fmt_ns(mp50, a, sizeof(a)),
			       (double)mp50 / (double)hit);
		else
			printf("  in the same run: a miss (Redis GET + "
			       "shmc_fill) p50 -: no miss and hit sampled\n");
	}
	{
		uint64_t n = on->hits + on->misses;
		double h = n ? (double)on->hits / (double)n : 0;

		printf("hit ratio: %.2f %% of the reads were served by the "
		       "region (%" PRIu64 " of %" PRIu64 ")\n",
		       100 * h, on->hits, n);
		printf("\n%-8s %12s %9s %12s %9s %8s %10s\n", "redis",
		       "commands", "per op", "GETs", "per read", "cpu s",
		       "cpu us/op");
		print_load("without", &load[0], off);
		print_load("with", &load[1], on);
		if (load[0].ok && load[1].ok && total_ops(off) &&
		    total_ops(on) && load[0].cmds && load[0].gets &&
		    load[0].cpu_s > 0) {
			double c0 = (double)load[0].cmds / total_ops(off);
			double c1 = (double)load[1].cmds / total_ops(on);
			double g0 = (double)load[0].gets / off->ops[OP_GET];
			double g1 = (double)load[1].gets / on->ops[OP_GET];
			double u0 = load[0].cpu_s / total_ops(off);
			double u1 = load[1].cpu_s / total_ops(on);
			double f = (double)cfg->mix[OP_GET] /
				   (cfg->mix[OP_GET] + cfg->mix[OP_SET]);

			printf("reduction per op: GETs per read %.1f %% (the "
			       "hit ratio predicts %.1f %%), commands %.1f %% "
			       "(predicted %.1f %%), cpu %.1f %%\n",
			       100 * (1 - g1 / g0), 100 * h,
			       100 * (1 - c1 / c0), 100 * f * h,
			       100 * (1 - u1 / u0));
		} else {
			printf("reduction per op: not computed (Redis's INFO "
			       "was not read)\n");
		}
	}
	if (!iv->measured) {
		printf("\ninvalidation: not measured: %s\n", iv->why);
		return;
	}
	printf("\ninvalidation (%u writes of a cached key in Redis, the "
	       "region polled until it is gone):\n",
	       iv->writes + iv->timeouts);
	printf("  write sent -> gone: p50 %s, p99 %s, max %s; still cached "
	       "after 2 s: %u\n",
	       fmt_ns(hist_quantile(&iv->gone, 0.5), a, sizeof(a)),
	       fmt_ns(hist_quantile(&iv->gone, 0.99), b, sizeof(b)),
	       fmt_ns(iv->gone.max, c, sizeof(c)), iv->timeouts);
	printf("  stale reads after the write was acknowledged: %" PRIu64
	       " (in %u of %u writes); window (ack -> gone): p50 %s, p99 "
	       "%s, max ",
	       iv->stale_reads, iv->stale_writes, iv->writes,
	       fmt_ns(hist_quantile(&iv->window, 0.5), a, sizeof(a)),
	       fmt_ns(hist_quantile(&iv->window, 0.99), b, sizeof(b)));
	printf("%s\n", fmt_ns(iv->window.max, c, sizeof(c)));
}

static void load_delta(struct load *out)
{
	out->ok = marks[0].ok && marks[1].ok;
	if (!out->ok)
		return;
	out->cmds = marks[1].cmds - marks[0].cmds;
	out->gets = marks[1].gets - marks[0].gets;
	out->cpu_s = marks[1].cpu_s - marks[0].cpu_s;
}

int near_run(struct bench_cfg *cfg, const struct workload *w,
	     unsigned inval_writes)
{
	struct be_server rs = { .cfg = cfg };
	struct run_result *res = calloc(2, sizeof(*res));
	struct inval *iv = calloc(1, sizeof(*iv));
	struct load load[2] = { 0 };
	struct floor fl;
	char why[600], version[64] = "?";
	redisContext *r = NULL;
	int rc = -ENOMEM;

	if (!res || !iv) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out;
	}
	run_install_signals();
	if (!cfg->redis_addr) {
		rc = rd_spawn(&rs, true);
		if (rc) {
			fprintf(stderr, PROG ": redis: %s\n", rs.why);
			goto out;
		}
		cfg->redis_addr = rs.sock;
	}
	r = near_connect(cfg->redis_addr, why, sizeof(why));
	if (!r) {
		fprintf(stderr, PROG ": %s\n", why);
		rc = -ECONNREFUSED;
		goto out;
	}
	{
		char *info = rd_info(r, "server");
		const char *v = info ? strstr(info, "redis_version:") : NULL;

		if (v)
			snprintf(version, sizeof(version), "%.*s",
				 (int)strcspn(v + 14, "\r\n"), v + 14);
		free(info);
	}
	fprintf(stderr, PROG ": loading %u keys into Redis at %s...\n",
		cfg->keys, cfg->redis_addr);
	if ((rc = rd_load_keys(r, w, why, sizeof(why)))) {
		fprintf(stderr, PROG ": %s\n", why);
		goto out;
	}
	if (!cfg->shmc_socket)
		cfg->near_tracking = daemon_tracks(cfg->daemon);

	rc = 0;
	for (int i = 0; i < 2 && !run_interrupted; i++) {
		const struct backend *be = i ? &be_near_on : &be_near_off;

		fprintf(stderr, PROG ": %s, %u process(es)...\n", be->name,
			cfg->procs);
		memset(marks, 0, sizeof(marks));
		run_backend(be, w, cfg->procs, &res[i]);
		load_delta(&load[i]);
		if (res[i].status != RUN_OK) {
			fprintf(stderr, PROG ": %s failed: %s\n", be->name,
				res[i].why);
			rc = -EIO;
		}
		/* The second run finds the values the first one wrote: the
		 * same Redis, as an application's would be. */
	}
	if (!run_interrupted) {
		fprintf(stderr, PROG ": invalidation latency...\n");
		inval_run(cfg, w, inval_writes, iv);
	}
	if (run_interrupted) {
		rc = -EINTR;
		goto out;
	}
	/* Last: its 256 MiB would otherwise crowd the runs. */
	floor_probe(w->clock_ovh, &fl);
	report(cfg, version, res, load, iv, &fl);
out:
	if (r)
		redisFree(r);
	if (rs.pid)
		srv_kill(&rs);
	if (rs.dir[0])
		srv_rmdir(&rs);
	free(res);
	free(iv);
	return rc;
}
