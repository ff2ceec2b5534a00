/*
 * bench.c - shmc-bench, the benchmark of shmcached: one workload, run
 * against several caches side by side in one invocation, one table (or
 * one JSON object) out.
 *
 *   speed (default)  ops/s, ns/op, latency p50/p99/p999, hit ratio of a
 *                    get/set/del mix over uniform or Zipf keys, for
 *                    shmc, inproc (the floor), memcached, redis, lmdb,
 *                    and shmc-mc (shmcached's memcached socket) on
 *                    request; mget in the mix: 100-key multi-gets;
 *                    --procs 1,2 runs each count and adds the scaling;
 *   --hit-ratio      cache-aside (get, set on a miss) over a Zipf trace
 *                    whose distinct bytes are ten times the cache: shmc,
 *                    memcached and redis with the same memory, and an
 *                    exact LRU of the same byte budget (lru_sim.c);
 *   --memory         set more items than fit, count the items each cache
 *                    keeps in the same memory: overhead per item;
 *   --near-cache     shmcached as a near cache in front of Redis over
 *                    loopback TCP, against Redis alone: reads/s, read
 *                    latency, hit ratio, Redis's load, and the
 *                    invalidation latency (near.c).
 *
 * The caches are measured one after the other, each on a fresh server
 * that the bench starts and stops (see run.c for the timing method and
 * the process model).  It is a program that reports figures, not a test:
 * it exits 0 whatever the figures, 1 only when a backend failed to run.
 *
 * Parts: options; configuration; output (table, JSON); main.
 */
#include "bench.h"
#include "run.h"
#include "workload.h"
#include "shmc_version.h"
#include "opt.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#define PROG "shmc-bench"

/* The build this bench came from (tools/bench/meson.build): meson's
 * buildtype and b_sanitize.  libshmc is linked from the same build; the
 * daemon is that build's too unless --daemon or --socket say otherwise. */
#ifndef SHMC_BUILDTYPE
#define SHMC_BUILDTYPE "unknown"
#endif
#ifndef SHMC_SANITIZE
#define SHMC_SANITIZE "none"
#endif
#ifdef NDEBUG
#define SHMC_ASSERTS false
#else
#define SHMC_ASSERTS true
#endif

#define MIB (1ULL << 20)
#define MAX_PROCS_LIST 8

/* ------------------------------------------------------------------------
 * Options: X(id, long name, metavar or NULL for a flag, help)
 * ------------------------------------------------------------------------ */

#define BENCH_OPTIONS(X)                                                       \
	X(KEYS, "keys", "N",                                                   \
	  "distinct keys (default 100000; --hit-ratio\n"                       \
	  "1000000; --memory: twice what would fit with no\n"                  \
	  "overhead at all)")                                                  \
	X(KEY_SIZE, "key-size", "B", "bytes of every key (default 16)")        \
	X(VALUE_SIZE, "value-size", "B", "bytes of every value (default 100)") \
	X(VALUE_DIST, "value-dist", "uniform:MIN:MAX",                         \
	  "value sizes drawn once per key instead")                            \
	X(MIX, "mix", "LIST",                                                  \
	  "operation weights of get, set, del, mget\n"                         \
	  "(default get=90,set=10,del=0); mget: one multi-\n"                  \
	  "get of --mget-batch keys (memcached, shmc-mc)")                     \
	X(MGET_BATCH, "mget-batch", "B",                                       \
	  "keys of one mget in --mix (default 100)")                           \
	X(DIST, "dist", "D",                                                   \
	  "key popularity: uniform or zipf:S (default\n"                       \
	  "uniform; --hit-ratio: zipf:0.99)")                                  \
	X(THREADS, "threads", "T", "threads per process (default 1)")          \
	X(PROCS, "procs", "P[,P...]",                                          \
	  "worker processes; a list runs every count and\n"                    \
	  "adds the scaling over the first (default 1)")                       \
	X(DURATION, "duration", "S", "seconds measured per run (default 2)")   \
	X(OPS, "ops", "N",                                                     \
	  "operations per thread instead of --duration;\n"                     \
	  "--hit-ratio: length of the trace (default 3 x keys)")               \
	X(WARMUP, "warmup", "S", "seconds run before measuring (default 0.5)") \
	X(WARMUP_OPS, "warmup-ops", "N",                                       \
	  "--hit-ratio: leading trace ops that only warm\n"                    \
	  "the caches (default: keys)")                                        \
	X(BACKENDS, "backends", "LIST",                                        \
	  "of shmc,inproc,memcached,shmc-mc,redis,lmdb,lru\n"                  \
	  "(default: all but shmc-mc and lru; --hit-ratio:\n"                  \
	  "shmc,lru,memcached,redis; --memory: shmc,\n"                        \
	  "memcached,redis,lru); shmc-mc: shmcached's\n"                       \
	  "--memcached socket driven as memcached is")                         \
	X(CACHE, "cache", "SIZE",                                              \
	  "memory of every cache, whole MiB (default: room\n"                  \
	  "for all keys, at least 64M; --hit-ratio: 10% of\n"                  \
	  "the working set; --memory: 64M)")                                   \
	X(SAMPLE, "sample", "N",                                               \
	  "time 1 op in N for the latency histogram\n"                         \
	  "(default 16; 0: none); memcached, shmc-mc,\n"                       \
	  "redis: every op")                                                   \
	X(REPEAT, "repeat", "N",                                               \
	  "run every backend N times, interleaved, and\n"                      \
	  "report the run of median run ops/s (speed mode;\n"                  \
	  "default 1, at most 9)")                                             \
	X(SEED, "seed", "N", "seed of the trace and sizes (default 1)")        \
	X(JSON, "json", NULL, "print one JSON object instead of tables")       \
	X(HIT_RATIO, "hit-ratio", NULL, "hit-ratio mode (see above)")          \
	X(MGET, "mget", "B",                                                   \
	  "multi-get mode (shmc only): per-key time of\n"                      \
	  "shmc_mget in batches of B against shmc_get, and\n"                  \
	  "shmc_mset against shmc_set, in alternating rounds\n"                \
	  "over every key (--repeat rounds, default 9)")                       \
	X(MEMORY, "memory", NULL, "memory mode (see above)")                   \
	X(NEAR_CACHE, "near-cache", NULL,                                      \
	  "near-cache mode (needs hiredis): Redis alone\n"                     \
	  "on loopback TCP against shmcached in front of it;\n"                \
	  "defaults get=95,set=5, zipf:0.99, 2 processes,\n"                   \
	  "1 s warm-up (docs/BENCHMARKS.md)")                                  \
	X(REDIS, "redis", "ADDR",                                              \
	  "--near-cache: the Redis to use, HOST:PORT or a\n"                   \
	  "Unix socket path (the bench writes its keys k...\n"                 \
	  "into it), instead of starting redis-server on a\n"                  \
	  "free port of 127.0.0.1")                                            \
	X(INVAL_WRITES, "inval-writes", "N",                                   \
	  "--near-cache: writes whose invalidation latency\n"                  \
	  "is measured (default 1000; 0: none)")                               \
	X(LRU_OVERHEAD, "lru-overhead", "B",                                   \
	  "bytes per item the LRU simulator adds to key +\n"                   \
	  "value (default 0)")                                                 \
	X(DAEMON, "daemon", "PATH",                                            \
	  "shmcached to start (default: $SHMC_DAEMON, else\n"                  \
	  "../../daemon/shmcached from this program, else\n"                   \
	  "$PATH)")                                                            \
	X(AVG_ITEM, "avg-item", "B",                                           \
	  "shmcached's --avg-item, which sizes its entry\n"                    \
	  "pools (default: the workload's mean key + value,\n"                 \
	  "as an operator sets it; 0: the daemon's default)")                  \
	X(DAEMON_ARG, "daemon-arg", "ARG",                                     \
	  "one more option for shmcached, e.g. --daemon-arg\n"                 \
	  "--segments=64 (repeatable)")                                        \
	X(SOCKET, "socket", "PATH",                                            \
	  "use the shmcached running there instead of\n"                       \
	  "starting one")                                                      \
	X(PEERS, "peers", "DIR",                                               \
	  "use the memcached and redis that `tools/peers\n"                    \
	  "start DIR` runs instead of starting them")                          \
	X(TCP, "tcp", NULL,                                                    \
	  "memcached and shmc-mc listen on TCP 127.0.0.1\n"                    \
	  "(a free port) instead of a Unix socket")                            \
	X(SERVER_THREADS, "server-threads", "N|auto",                          \
	  "threads of memcached (-t) and of shmc-mc's\n"                       \
	  "shmcached (--threads) (default 1; auto: one per\n"                  \
	  "client thread up to the CPUs)")                                     \
	X(HELP, "help", NULL, "print this help and exit")                      \
	X(VERSION, "version", NULL, "print the version and exit")

enum bench_opt {
#define OPT_ENUM_X(id, name, meta, help) OPT_##id,
	BENCH_OPTIONS(OPT_ENUM_X)
#undef OPT_ENUM_X
		NOPTS
};

static const struct opt_spec opt_descs[NOPTS] = {
#define OPT_DESC_X(id, name, meta, help) [OPT_##id] = { name, 0, meta, help },
	BENCH_OPTIONS(OPT_DESC_X)
#undef OPT_DESC_X
};

static const char *const op_names[NOPS] = { "get", "set", "del", "mget" };

enum bench_exit { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

/* parse_args(): --help or --version was answered, nothing to run. */
#define PARSE_DONE 1

static void usage(FILE *f)
{
	fprintf(f, "Usage: " PROG " [OPTION]...\n"
		   "Runs one workload against shmcached and its peers "
		   "(memcached,\n"
		   "redis, lmdb, an in-process table) and prints one table.\n"
		   "\n"
		   "Modes: speed (default), --hit-ratio, --memory, "
		   "--near-cache.  A\n"
		   "peer that is not installed is reported as skipped "
		   "(tools/peers\ninstall).\n"
		   "--backends memcached,shmc-mc compares memcached and "
		   "shmcached's\n"
		   "--memcached socket: the same client, the same kind of "
		   "socket.\n"
		   "\nOptions:\n");
	opt_usage(f, opt_descs, NOPTS, OPT_ALL, OPT_USAGE_META_SPACE);
	fprintf(f, "\nExit status: 0 figures printed (skipped peers included), "
		   "1 a backend\nfailed to run, 2 bad usage, 130 "
		   "interrupted.\n");
}

/* ------------------------------------------------------------------------
 * Configuration
 * ------------------------------------------------------------------------ */

struct options {
	struct bench_cfg cfg;
	unsigned procs[MAX_PROCS_LIST], nprocs;
	uint32_t repeat;
	uint32_t mget; /* --mget batch size; 0: not that mode */
	bool near;     /* --near-cache */
	uint32_t inval_writes;
	bool json;
	bool want[16]; /* indexed like bench_backends (6 of them) */
	bool keys_set, cache_set, ops_set, duration_set, warm_ops_set;
	bool dist_set, avg_item_set, mix_set, warmup_set, backends_set;
	char daemon_buf[PATH_MAX];
	/* Measured for speed runs of more than one worker (else ns = -1). */
	struct pp_transfer xfer;
};

static int bad(const char *opt, const char *val, const char *why)
{
	fprintf(stderr, PROG ": --%s '%s': %s\n", opt, val, why);
	return -EINVAL;
}

/* Option opt's value, a number in [min, max], into *out (opt_uint());
 * 0, or -EINVAL with the message printed. */
static int parse_num(const char *opt, const char *s, uint64_t min, uint64_t max,
		     uint64_t *out)
{
	char what[40], why[OPT_WHY_MAX];

	snprintf(what, sizeof(what), "--%s", opt);
	if (!opt_uint(what, s, min, max, out, why, sizeof(why)))
		return 0;
	fprintf(stderr, PROG ": %s\n", why);
	return -EINVAL;
}

static int parse_u32(const char *opt, const char *s, uint32_t *out,
		     uint64_t min, uint64_t max)
{
	uint64_t v;
	int rc = parse_num(opt, s, min, max, &v);

	if (!rc)
		*out = (uint32_t)v;
	return rc;
}

static int parse_seconds(const char *opt, const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v >= 0) || v > 86400)
		return bad(opt, s, "seconds from 0 to 86400 expected");
	*out = v;
	return 0;
}

static int parse_mix(const char *s, unsigned mix[NOPS])
{
	char *copy = strdup(s), *tok, *save = NULL;
	int rc = 0;

	if (!copy)
		return -ENOMEM;
	memset(mix, 0, NOPS * sizeof(mix[0]));
	for (tok = strtok_r(copy, ",", &save); tok && !rc;
	     tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		uint64_t w;
		int op;

		rc = -EINVAL;
		if (!eq)
			break;
		*eq = '\0';
		for (op = 0; op < NOPS && strcmp(tok, op_names[op]); op++)
			;
		if (op == NOPS ||
		    opt_uint(NULL, eq + 1, 0, 1000000, &w, NULL, 0))
			break;
		mix[op] = (unsigned)w;
		rc = 0;
	}
	free(copy);
	if (!rc && mix[OP_GET] + mix[OP_SET] + mix[OP_DEL] + mix[OP_MGET] == 0)
		rc = -EINVAL;
	return rc ? bad("mix", s, "get=W,set=W,del=W,mget=W with a weight > 0")
		  : 0;
}

static int parse_backends(struct options *o, const char *s)
{
	char *copy = strdup(s), *tok, *save = NULL;
	int rc = 0;

	if (!copy)
		return -ENOMEM;
	memset(o->want, 0, sizeof(o->want));
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		unsigned i;

		for (i = 0; i < bench_nbackends; i++) {
			if (!strcmp(tok, bench_backends[i]->name)) {
				o->want[i] = true;
				break;
			}
		}
		if (i == bench_nbackends) {
			rc = bad("backends", tok,
				 "one of shmc, inproc, memcached, shmc-mc, "
				 "redis, lmdb, lru expected");
			break;
		}
	}
	free(copy);
	return rc;
}

static int parse_procs(struct options *o, const char *s)
{
	char *copy = strdup(s), *tok, *save = NULL;
	int rc = 0;

	if (!copy)
		return -ENOMEM;
	o->nprocs = 0;
	for (tok = strtok_r(copy, ",", &save); tok && !rc;
	     tok = strtok_r(NULL, ",", &save)) {
		if (o->nprocs == MAX_PROCS_LIST)
			rc = bad("procs", s, "at most 8 counts");
		else
			rc = parse_u32("procs", tok, &o->procs[o->nprocs++], 1,
				       64);
	}
	free(copy);
	if (!rc && o->nprocs == 0)
		rc = bad("procs", s, "a count expected");
	return rc;
}

static void want_defaults(struct options *o)
{
	static const char *const speed[] = { "shmc",  "inproc", "memcached",
					     "redis", "lmdb",	NULL };
	static const char *const hit[] = { "shmc", "lru", "memcached", "redis",
					   NULL };
	static const char *const mem[] = { "shmc", "memcached", "redis", "lru",
					   NULL };
	const char *const *list = speed;

	if (o->cfg.mode == MODE_HIT_RATIO)
		list = hit;
	else if (o->cfg.mode == MODE_MEMORY)
		list = mem;

	for (; *list; list++) {
		for (unsigned i = 0; i < bench_nbackends; i++)
			if (!strcmp(*list, bench_backends[i]->name))
				o->want[i] = true;
	}
}

/* The shmcached to start when --daemon is not given. */
static const char *find_daemon(struct options *o)
{
	const char *env = getenv("SHMC_DAEMON");
	char self[PATH_MAX];
	ssize_t n;

	if (env && *env)
		return env;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		snprintf(o->daemon_buf, sizeof(o->daemon_buf),
			 "%s/../../daemon/shmcached", dirname(self));
		if (access(o->daemon_buf, X_OK) == 0)
			return o->daemon_buf;
	}
	if (srv_which("shmcached", o->daemon_buf, sizeof(o->daemon_buf)))
		return o->daemon_buf;
	return "/usr/local/sbin/shmcached";
}

static unsigned digits(uint64_t v)
{
	unsigned d = 1;

	while (v >= 10) {
		v /= 10;
		d++;
	}
	return d;
}

/* --near-cache's defaults (get=95,set=5, zipf:0.99, 2 processes, 1 s of
 * warm-up) and what it cannot take. */
static int near_config(struct options *o)
{
	struct bench_cfg *cfg = &o->cfg;

#ifndef HAVE_HIREDIS
	return bad("near-cache", "",
		   "this shmc-bench was built without hiredis "
		   "(tools/peers install, then meson setup "
		   "--reconfigure)");
#endif
	if (cfg->mode != MODE_SPEED || o->mget || o->json || o->repeat > 1 ||
	    o->backends_set || o->ops_set)
		return bad("near-cache", "",
			   "it takes no --hit-ratio, --memory, --mget, --json, "
			   "--repeat, --backends or --ops (run it again for "
			   "more rounds)");
	if (!o->mix_set) {
		memset(cfg->mix, 0, sizeof(cfg->mix));
		cfg->mix[OP_GET] = 95;
		cfg->mix[OP_SET] = 5;
	} else if (cfg->mix[OP_DEL] || cfg->mix[OP_MGET] || !cfg->mix[OP_GET]) {
		return bad("mix", "", "--near-cache: get=W,set=W with get > 0");
	}
	if (!o->dist_set)
		cfg->zipf = 0.99;
	if (o->nprocs == 0) {
		o->procs[0] = 2;
		o->nprocs = 1;
	} else if (o->nprocs > 1) {
		return bad("procs", "", "--near-cache: one count");
	}
	if (!o->warmup_set)
		cfg->warmup = 1;
	return 0;
}

/* Fills the defaults that depend on the mode and checks the whole. */
static int finish_config(struct options *o)
{
	struct bench_cfg *cfg = &o->cfg;
	double vavg = (cfg->vmin + cfg->vmax) / 2.0;
	uint64_t item = cfg->key_size + cfg->vmax;
	const char *tmp = getenv("TMPDIR");

	cfg->tmpdir = tmp && *tmp ? tmp : "/tmp";
	if (!cfg->daemon)
		cfg->daemon = find_daemon(o);
	if (o->near) {
		int rc = near_config(o);

		if (rc)
			return rc;
	} else if (cfg->redis_addr) {
		return bad("redis", cfg->redis_addr, "for --near-cache only");
	}
	if (o->nprocs == 0) {
		o->procs[0] = 1;
		o->nprocs = 1;
	}
	{
		bool any = false;

		for (unsigned i = 0; i < bench_nbackends; i++)
			any |= o->want[i];
		if (!any)
			want_defaults(o);
	}

	switch (cfg->mode) {
	case MODE_SPEED:
		if (!o->keys_set)
			cfg->keys = 100000;
		if (!o->cache_set) {
			cfg->cache = 2 * (uint64_t)cfg->keys * (item + 64);
			if (cfg->cache < 64 * MIB)
				cfg->cache = 64 * MIB;
		}
		if (o->ops_set && !o->duration_set)
			cfg->duration = 0;
		if (!o->ops_set && cfg->duration <= 0)
			return bad("duration", "0",
				   "a duration or --ops needed");
		break;
	case MODE_HIT_RATIO:
		if (!o->keys_set)
			cfg->keys = 1000000;
		if (!o->dist_set)
			cfg->zipf = 0.99;
		if (!o->cache_set)
			cfg->cache = (uint64_t)llround(cfg->keys *
						       (cfg->key_size + vavg) /
						       10.0 / MIB) *
				     MIB;
		if (!o->ops_set)
			cfg->ops = 3 * (uint64_t)cfg->keys;
		if (!o->warm_ops_set)
			cfg->warm_ops = cfg->keys;
		if (cfg->warm_ops >= cfg->ops)
			return bad("warmup-ops", "", "must be less than --ops");
		o->nprocs = 1;
		o->procs[0] = 1;
		cfg->threads = 1;
		o->repeat = 1; /* one trace, one answer */
		break;
	case MODE_MEMORY:
		if (!o->cache_set)
			cfg->cache = 64 * MIB;
		if (!o->keys_set)
			cfg->keys = (uint32_t)(2 * cfg->cache / item + 1);
		cfg->vmin = cfg->vmax; /* one item size */
		o->nprocs = 1;
		o->procs[0] = 1;
		cfg->threads = 1;
		o->repeat = 1;
		break;
	}
	cfg->cache = (cfg->cache + MIB - 1) / MIB * MIB;
	if (cfg->cache < MIB)
		cfg->cache = MIB;
	if (cfg->keys == 0 || cfg->keys > WL_MAX_KEYS)
		return bad("keys", "", "1 to 2^30-1 keys");
	if (cfg->key_size < 1 + digits(cfg->keys - 1) || cfg->key_size > 250) {
		char why[96];

		snprintf(why, sizeof(why),
			 "%u keys need keys of %u to 250 bytes (memcached's "
			 "limit)",
			 cfg->keys, 1 + digits(cfg->keys - 1));
		return bad("key-size", "", why);
	}
	if (cfg->vmin > cfg->vmax || cfg->vmax > MIB / 2)
		return bad("value-size", "",
			   "values of 0 to 512 KiB, MIN <= MAX");
	if (!o->avg_item_set)
		cfg->avg_item = (uint32_t)lround(cfg->key_size +
						 (cfg->vmin + cfg->vmax) / 2.0);
	if (cfg->mode != MODE_SPEED && cfg->mix[OP_MGET])
		return bad("mix", "mget", "mget is for the speed mode only");
	cfg->procs = o->procs[0];
	return 0;
}

static int parse_args(struct options *o, int argc, char **argv)
{
	struct option longs[NOPTS + 1];
	struct bench_cfg *cfg = &o->cfg;
	int c;

	memset(o, 0, sizeof(*o));
	cfg->key_size = 16;
	cfg->vmin = cfg->vmax = 100;
	cfg->mix[OP_GET] = 90;
	cfg->mix[OP_SET] = 10;
	cfg->threads = 1;
	cfg->duration = 2;
	cfg->warmup = 0.5;
	cfg->seed = 1;
	cfg->sample = 16;
	cfg->mget_batch = 100;
	cfg->server_threads = 1;
	o->repeat = 1;
	o->inval_writes = 1000;
	for (int i = 0; i < NOPTS; i++)
		longs[i] = (struct option){ opt_descs[i].name,
					    opt_descs[i].meta
						    ? required_argument
						    : no_argument,
					    NULL, i };
	longs[NOPTS] = (struct option){ 0 };

	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		const char *a = optarg,
			   *name = c >= 0 && c < NOPTS ? opt_descs[c].name : "";
		int rc = 0;

		switch (c) {
		case OPT_KEYS:
			rc = parse_u32(name, a, &cfg->keys, 1, WL_MAX_KEYS);
			o->keys_set = true;
			break;
		case OPT_KEY_SIZE:
			rc = parse_u32(name, a, &cfg->key_size, 1, 250);
			break;
		case OPT_VALUE_SIZE:
			rc = parse_u32(name, a, &cfg->vmax, 0, MIB / 2);
			cfg->vmin = cfg->vmax;
			break;
		case OPT_VALUE_DIST: {
			unsigned lo, hi;
			char end;

			if (sscanf(a, "uniform:%u:%u%c", &lo, &hi, &end) != 2 ||
			    lo > hi || hi > MIB / 2)
				rc = bad(name, a,
					 "uniform:MIN:MAX expected, "
					 "MIN <= MAX <= 524288");
			cfg->vmin = lo;
			cfg->vmax = hi;
			break;
		}
		case OPT_MIX:
			rc = parse_mix(a, cfg->mix);
			o->mix_set = true;
			break;
		case OPT_DIST: {
			char *end;

			o->dist_set = true;
			if (!strcmp(a, "uniform")) {
				cfg->zipf = 0;
			} else if (!strncmp(a, "zipf:", 5)) {
				cfg->zipf = strtod(a + 5, &end);
				if (end == a + 5 || *end || !(cfg->zipf > 0) ||
				    cfg->zipf > 10)
					rc = bad(name, a,
						 "zipf:S with 0 < S <= 10");
			} else {
				rc = bad(name, a, "uniform or zipf:S expected");
			}
			break;
		}
		case OPT_THREADS:
			rc = parse_u32(name, a, &cfg->threads, 1, 64);
			break;
		case OPT_PROCS:
			rc = parse_procs(o, a);
			break;
		case OPT_DURATION:
			rc = parse_seconds(name, a, &cfg->duration);
			o->duration_set = true;
			break;
		case OPT_OPS:
			rc = parse_num(name, a, 1, UINT64_MAX, &cfg->ops);
			o->ops_set = true;
			break;
		case OPT_WARMUP:
			rc = parse_seconds(name, a, &cfg->warmup);
			o->warmup_set = true;
			break;
		case OPT_WARMUP_OPS:
			rc = parse_num(name, a, 0, UINT64_MAX, &cfg->warm_ops);
			o->warm_ops_set = true;
			break;
		case OPT_BACKENDS:
			rc = parse_backends(o, a);
			o->backends_set = true;
			break;
		case OPT_CACHE: {
			char why[OPT_WHY_MAX];

			rc = opt_size("--cache", a, MIB, UINT64_C(1) << 40,
				      &cfg->cache, why, sizeof(why));
			if (rc)
				fprintf(stderr, PROG ": %s\n", why);
			o->cache_set = true;
			break;
		}
		case OPT_SAMPLE:
			rc = parse_u32(name, a, &cfg->sample, 0, 1 << 20);
			break;
		case OPT_REPEAT:
			rc = parse_u32(name, a, &o->repeat, 1, RUN_MAX_REPEAT);
			break;
		case OPT_SEED:
			rc = parse_num(name, a, 0, UINT64_MAX, &cfg->seed);
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_MGET:
			rc = parse_u32(name, a, &o->mget, 1, 1u << 16);
			break;
		case OPT_HIT_RATIO:
			cfg->mode = MODE_HIT_RATIO;
			break;
		case OPT_MEMORY:
			cfg->mode = MODE_MEMORY;
			break;
		case OPT_NEAR_CACHE:
			o->near = true;
			break;
		case OPT_REDIS:
			cfg->redis_addr = a;
			break;
		case OPT_INVAL_WRITES:
			rc = parse_u32(name, a, &o->inval_writes, 0, 1000000);
			break;
		case OPT_LRU_OVERHEAD:
			rc = parse_u32(name, a, &cfg->lru_overhead, 0, 1 << 20);
			break;
		case OPT_DAEMON:
			cfg->daemon = a;
			break;
		case OPT_AVG_ITEM:
			rc = parse_u32(name, a, &cfg->avg_item, 0, 1 << 30);
			o->avg_item_set = true;
			break;
		case OPT_DAEMON_ARG:
			if (cfg->ndaemon_args == 16)
				rc = bad(name, a, "at most 16 of them");
			else
				cfg->daemon_args[cfg->ndaemon_args++] = a;
			break;
		case OPT_SOCKET:
			cfg->shmc_socket = a;
			break;
		case OPT_PEERS:
			cfg->peers_dir = a;
			break;
		case OPT_SERVER_THREADS:
			if (!strcmp(a, "auto"))
				cfg->server_threads = 0;
			else
				rc = parse_u32(name, a, &cfg->server_threads, 1,
					       64);
			break;
		case OPT_TCP:
			cfg->tcp = true;
			break;
		case OPT_MGET_BATCH:
			rc = parse_u32(name, a, &cfg->mget_batch, 1,
				       BENCH_MGET_MAX);
			break;
		case OPT_HELP:
			usage(stdout);
			return PARSE_DONE;
		case OPT_VERSION:
			printf(PROG " " SHMC_VERSION "\n");
			return PARSE_DONE;
		default:
			fprintf(stderr,
				PROG ": unknown or incomplete option '%s' "
				     "(--help lists them)\n",
				argv[optind - 1]);
			return -EINVAL;
		}
		if (rc)
			return rc;
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s'\n",
			argv[optind]);
		return -EINVAL;
	}
	return finish_config(o);
}

/* ------------------------------------------------------------------------
 * Output
 * ------------------------------------------------------------------------ */

static double ops_per_s(const struct run_result *r)
{
	uint64_t n = 0;

	for (int op = 0; op < NOPS; op++)
		n += r->ops[op];

	return r->elapsed_s > 0 ? (double)n / r->elapsed_s : 0;
}

/* Time per operation of a thread while it runs: the median batch. */
static double ns_per_op(const struct run_result *r)
{
	return (double)hist_quantile(&r->batch, 0.5) / BATCH_SCALE;
}

/* CPU time cpu_s (a run_result's server_cpu_s or client_cpu_s) per
 * measured op of r, ns; < 0: unknown. */
static double cpu_ns_per_op(const struct run_result *r, double cpu_s)
{
	uint64_t n = 0;

	for (int op = 0; op < NOPS; op++)
		n += r->ops[op];
	return cpu_s >= 0 && n ? cpu_s * 1e9 / (double)n : -1;
}

static double hit_ratio(const struct run_result *r)
{
	uint64_t n = r->hits + r->misses;

	return n ? (double)r->hits / (double)n : -1;
}

/* All the sampled operations of r. */
static void lat_all(const struct run_result *r, struct hist *h)
{
	memset(h, 0, sizeof(*h));
	for (int op = 0; op < NOPS; op++)
		hist_merge(h, &r->lat[op]);
}

/* The OK result of backend `name` with the same process count, or NULL. */
static const struct run_result *find(const struct run_result *res, unsigned n,
				     const char *name, unsigned procs)
{
	for (unsigned i = 0; i < n; i++) {
		if (res[i].status == RUN_OK && res[i].procs == procs &&
		    !strcmp(res[i].be->name, name))
			return &res[i];
	}
	return NULL;
}

/* Time per op of r relative to ref's: ref's run rate over r's (0: n/a). */
static double cost_ratio(const struct run_result *r,
			 const struct run_result *ref)
{
	if (!ref || r->status != RUN_OK || r->run_rate <= 0)
		return 0;
	return ref->run_rate / r->run_rate;
}

/* Rate of r over the same backend's with the first process count. */
static double scale(const struct run_result *r, const struct run_result *base,
		    bool wall)
{
	if (!base)
		return 0;
	if (wall)
		return ops_per_s(base) > 0 ? ops_per_s(r) / ops_per_s(base) : 0;
	return base->run_rate > 0 ? r->run_rate / base->run_rate : 0;
}

/* --repeat: (max - min) / median of the runs' run rates, in %. */
static double spread(const struct run_result *r)
{
	double lo = r->runs[0], hi = r->runs[0], med = r->run_rate;

	for (unsigned i = 1; i < r->nruns; i++) {
		lo = r->runs[i] < lo ? r->runs[i] : lo;
		hi = r->runs[i] > hi ? r->runs[i] : hi;
	}
	return med > 0 ? 100 * (hi - lo) / med : 0;
}

static const char *status_name(enum run_status s)
{
	return s == RUN_OK ? "ok" : s == RUN_SKIPPED ? "skipped" : "failed";
}

static void fmt_count(char *out, size_t cap, double v)
{
	char digits_[32];
	int n = snprintf(digits_, sizeof(digits_), "%.0f", v), o = 0;

	for (int i = 0; i < n && (size_t)o + 2 < cap; i++) {
		if (i && (n - i) % 3 == 0)
			out[o++] = ',';
		out[o++] = digits_[i];
	}
	out[o] = '\0';
}

/* Quantile q of h in ns, or "-" when nothing was sampled. */
static void fmt_ns(char *out, size_t cap, const struct hist *h, double q)
{
	if (h->count)
		snprintf(out, cap, "%" PRIu64, hist_quantile(h, q));
	else
		snprintf(out, cap, "-");
}

static void fmt_ratio(char *out, size_t cap, double v)
{
	if (v <= 0)
		snprintf(out, cap, "-");
	else if (v >= 100)
		snprintf(out, cap, "%.0f", v);
	else
		snprintf(out, cap, "%.2f", v);
}

static const char *dist_text(const struct bench_cfg *cfg, char *buf, size_t cap)
{
	if (cfg->zipf > 0)
		snprintf(buf, cap, "zipf:%g", cfg->zipf);
	else
		snprintf(buf, cap, "uniform");
	return buf;
}

static const char *value_text(const struct bench_cfg *cfg, char *buf,
			      size_t cap)
{
	if (cfg->vmin == cfg->vmax)
		snprintf(buf, cap, "%u B", cfg->vmax);
	else
		snprintf(buf, cap, "%u..%u B", cfg->vmin, cfg->vmax);
	return buf;
}

static void print_skipped(const struct run_result *r)
{
	printf("%-10s %s: %s\n", r->be->name, status_name(r->status), r->why);
}

/* Which build measured: a line under each table header.  Only the
 * release build's figures compare with docs/BENCHMARKS.md. */
void bench_print_build(void)
{
	bool release = !strcmp(SHMC_BUILDTYPE, "release") && !SHMC_ASSERTS &&
		       !strcmp(SHMC_SANITIZE, "none");

	printf("  build: %s, asserts %s", SHMC_BUILDTYPE,
	       SHMC_ASSERTS ? "on" : "off");
	if (strcmp(SHMC_SANITIZE, "none"))
		printf(", sanitize=%s", SHMC_SANITIZE);
	printf("%s\n", release ? ""
			       : " (not the release build: tools/run "
				 "builds that in build-release/)");
}

/* How the bench started shmcached, when it did: a line under each table
 * header, so that a figure always comes with the configuration behind it. */
static void print_shmc_config(const struct options *o,
			      const struct run_result *res, unsigned n)
{
	const struct bench_cfg *cfg = &o->cfg;
	bool ran = false;

	for (unsigned i = 0; i < n; i++)
		ran |= !strcmp(res[i].be->name, "shmc");
	if (!ran || cfg->shmc_socket)
		return;
	printf("  shmc: shmcached --memory %" PRIu64 "M", cfg->cache >> 20);
	if (cfg->avg_item)
		printf(" --avg-item %u", cfg->avg_item);
	for (unsigned i = 0; i < cfg->ndaemon_args; i++)
		printf(" %s", cfg->daemon_args[i]);
	printf("\n");
	if (cfg->avg_item && !o->avg_item_set)
		printf("        (--avg-item = the mean key + value here, as an "
		       "operator sizes the pools;\n         bench --avg-item 0 "
		       "keeps the daemon's default)\n");
}

/* shmcached and memcached behind the same client code and socket, side
 * by side: a line per process count where both ran. */
static void print_vs_memcached(const struct options *o,
			       const struct run_result *res, unsigned n)
{
	for (unsigned p = 0; p < o->nprocs; p++) {
		const struct run_result *a = find(res, n, "shmc-mc",
						  o->procs[p]),
					*b = find(res, n, "memcached",
						  o->procs[p]);
		struct hist la, lb;
		char wa[32], wb[32];
		double sa, sb;

		if (!a || !b || ops_per_s(b) <= 0)
			continue;
		if (p == 0)
			printf("\nshmc-mc (shmcached) against memcached, the same "
			       "client over the same kind of socket (%s), %u "
			       "server thread(s) each:\n",
			       o->cfg.tcp ? "TCP on 127.0.0.1" : "Unix",
			       srv_threads(&o->cfg));
		lat_all(a, &la);
		lat_all(b, &lb);
		fmt_count(wa, sizeof(wa), ops_per_s(a));
		fmt_count(wb, sizeof(wb), ops_per_s(b));
		printf("  %u process(es): wall ops/s %s against %s (x%.2f), p99 "
		       "%" PRIu64 " against %" PRIu64 " ns",
		       o->procs[p], wa, wb, ops_per_s(a) / ops_per_s(b),
		       hist_quantile(&la, 0.99), hist_quantile(&lb, 0.99));
		sa = cpu_ns_per_op(a, a->server_cpu_s);
		sb = cpu_ns_per_op(b, b->server_cpu_s);
		if (sa > 0 && sb > 0)
			printf(",\n    server CPU per op %.0f against %.0f ns "
			       "(x%.2f)",
			       sa, sb, sa / sb);
		sa = cpu_ns_per_op(a, a->client_cpu_s);
		sb = cpu_ns_per_op(b, b->client_cpu_s);
		if (sa > 0 && sb > 0)
			printf(", the clients' %.0f against %.0f ns", sa, sb);
		printf("\n");
	}
}

static void table_speed(const struct options *o, const struct workload *w,
			const struct run_result *res, unsigned n)
{
	const struct bench_cfg *cfg = &o->cfg;
	char d[32], v[32], ops[32], rops[32], r1[16], r2[16], r3[16], r4[16];
	unsigned nops = 0;

	for (int op = 0; op < NOPS; op++)
		nops += cfg->mix[op] > 0;
	printf(PROG " speed: mix get=%u,set=%u,del=%u", cfg->mix[OP_GET],
	       cfg->mix[OP_SET], cfg->mix[OP_DEL]);
	if (cfg->mix[OP_MGET])
		printf(",mget=%u (%u keys each)", cfg->mix[OP_MGET],
		       cfg->mget_batch);
	printf(", %s keys, %u keys x (%u B key + %s value), cache %" PRIu64
	       " MiB each\n",
	       dist_text(cfg, d, sizeof(d)), cfg->keys, cfg->key_size,
	       value_text(cfg, v, sizeof(v)), cfg->cache >> 20);
	if (cfg->duration > 0)
		printf("  %u thread(s) per process, %.1f s measured after %.1f "
		       "s "
		       "warm-up, seed %" PRIu64 "\n",
		       cfg->threads, cfg->duration, cfg->warmup, cfg->seed);
	else
		printf("  %u thread(s) per process, %" PRIu64 " ops per thread "
		       "after %.1f s warm-up, seed %" PRIu64 "\n",
		       cfg->threads, cfg->ops, cfg->warmup, cfg->seed);
	bench_print_build();
	print_shmc_config(o, res, n);
	if (o->repeat > 1)
		printf("  each backend run %u times, interleaved: the run of "
		       "median run ops/s is shown;\n  spread = (max - min) / "
		       "median of the run ops/s\n",
		       o->repeat);
	if (o->xfer.ns >= 0)
		printf("  a cache line written on one CPU is read on the other "
		       "%" PRId64 " ns later (CPUs %d and %d, ping-pong):\n"
		       "  what each line two workers both write costs when it "
		       "changes hands\n",
		       o->xfer.ns, o->xfer.cpu[0], o->xfer.cpu[1]);
	if (cfg->sample)
		printf("  latency: 1 op in %u timed (memcached, shmc-mc, redis: every "
		       "op), "
		       "less %" PRId64 " ns of clock overhead\n",
		       cfg->sample, w->clock_ovh);
	printf("  wall ops/s: ops / wall time; run ops/s: from each thread's "
	       "median 64-op batch\n  (the rate while running, without "
	       "preemption by other load); ns/op: median batch\n"
	       "  time per op of one thread; t/shmc, t/inproc: time per op "
	       "relative to shmc,\n  inproc, from the run rates (> 1: slower); "
	       "latencies p50..p999 in ns\n\n");
	printf("%-10s %5s %13s %13s %8s %7s %7s %8s %7s %7s %8s", "backend",
	       "procs", "wall ops/s", "run ops/s", "ns/op", "p50", "p99",
	       "p999", "hit%", "t/shmc", "t/inproc");
	if (o->nprocs > 1)
		printf(" %6s %6s", "scale", "(wall)");
	if (o->repeat > 1)
		printf(" %7s", "spread");
	printf("\n");
	for (unsigned i = 0; i < n; i++) {
		const struct run_result *r = &res[i];
		struct hist all;
		double hr = hit_ratio(r);
		char hit[16], p50[24], p99[24], p999[24];

		if (r->status != RUN_OK) {
			print_skipped(r);
			continue;
		}
		lat_all(r, &all);
		fmt_count(ops, sizeof(ops), ops_per_s(r));
		fmt_count(rops, sizeof(rops), r->run_rate);
		fmt_ratio(r1, sizeof(r1),
			  cost_ratio(r, find(res, n, "shmc", r->procs)));
		fmt_ratio(r2, sizeof(r2),
			  cost_ratio(r, find(res, n, "inproc", r->procs)));
		if (hr < 0)
			snprintf(hit, sizeof(hit), "-");
		else
			snprintf(hit, sizeof(hit), "%.2f", 100 * hr);
		fmt_ns(p50, sizeof(p50), &all, 0.5);
		fmt_ns(p99, sizeof(p99), &all, 0.99);
		fmt_ns(p999, sizeof(p999), &all, 0.999);
		printf("%-10s %5u %13s %13s %8.1f %7s %7s %8s %7s %7s %8s",
		       r->be->name, r->procs, ops, rops, ns_per_op(r), p50, p99,
		       p999, hit, r1, r2);
		if (o->nprocs > 1) {
			const struct run_result *base =
				find(res, n, r->be->name, o->procs[0]);

			fmt_ratio(r3, sizeof(r3), scale(r, base, false));
			fmt_ratio(r4, sizeof(r4), scale(r, base, true));
			printf(" %6s %6s", r3, r4);
		}
		if (o->repeat > 1)
			printf(" %6.1f%%", spread(r));
		if (r->errors)
			printf("  %" PRIu64 " errors, first: %s", r->errors,
			       r->first_error);
		printf("\n");
	}
	print_vs_memcached(o, res, n);
	if (nops < 2 || !cfg->sample)
		return;
	printf("\nlatency by operation, ns:\n%-10s %5s %4s %10s %8s %8s %9s "
	       "%10s\n",
	       "backend", "procs", "op", "samples", "p50", "p99", "p999",
	       "max");
	for (unsigned i = 0; i < n; i++) {
		const struct run_result *r = &res[i];

		if (r->status != RUN_OK)
			continue;
		for (int op = 0; op < NOPS; op++) {
			const struct hist *h = &r->lat[op];

			if (!h->count)
				continue;
			printf("%-10s %5u %4s %10" PRIu64 " %8" PRIu64
			       " %8" PRIu64 " %9" PRIu64 " %10" PRIu64 "\n",
			       r->be->name, r->procs, op_names[op], h->count,
			       hist_quantile(h, 0.5), hist_quantile(h, 0.99),
			       hist_quantile(h, 0.999), h->max);
		}
	}
}

static void table_hit_ratio(const struct options *o,
			    const struct run_result *res, unsigned n)
{
	const struct bench_cfg *cfg = &o->cfg;
	double ws = cfg->keys * (cfg->key_size + (cfg->vmin + cfg->vmax) / 2.0);
	const struct run_result *lru = find(res, n, "lru", 1);
	char d[32], v[32], ops[32];

	printf(PROG " hit ratio: cache-aside (get; set on a miss), %s keys, "
		    "%u keys x (%u B key + %s value)\n",
	       dist_text(cfg, d, sizeof(d)), cfg->keys, cfg->key_size,
	       value_text(cfg, v, sizeof(v)));
	printf("  working set %.1f MiB, cache %" PRIu64 " MiB each (%.1f%%), "
	       "%" PRIu64 " ops of which the first %" PRIu64 " only warm up, "
	       "seed %" PRIu64 "\n",
	       ws / MIB, cfg->cache >> 20, 100.0 * (double)cfg->cache / ws,
	       cfg->ops, cfg->warm_ops, cfg->seed);
	bench_print_build();
	printf("  lru: exact LRU with the same byte budget, an item counted "
	       "as key + value + %u B\n",
	       cfg->lru_overhead);
	print_shmc_config(o, res, n);
	printf("\n");
	printf("%-10s %8s %9s %12s %12s\n", "backend", "hit%", "vs lru",
	       "items(end)", "ops/s");
	for (unsigned i = 0; i < n; i++) {
		const struct run_result *r = &res[i];
		double hr = hit_ratio(r);
		char vs[16];

		if (r->status != RUN_OK) {
			print_skipped(r);
			continue;
		}
		if (lru && hr >= 0)
			snprintf(vs, sizeof(vs), "%+.2f",
				 100 * (hr - hit_ratio(lru)));
		else
			snprintf(vs, sizeof(vs), "-");
		fmt_count(ops, sizeof(ops),
			  r->elapsed_s > 0
				  ? (double)r->ops[OP_GET] / r->elapsed_s
				  : 0);
		printf("%-10s %8.2f %9s %12" PRIu64 " %12s", r->be->name,
		       100 * hr, vs, r->items, ops);
		if (r->errors)
			printf("  %" PRIu64 " errors, first: %s", r->errors,
			       r->first_error);
		printf("\n");
	}
}

static void table_memory(const struct options *o, const struct run_result *res,
			 unsigned n)
{
	const struct bench_cfg *cfg = &o->cfg;
	uint64_t item = cfg->key_size + cfg->vmax;

	printf(PROG " memory: %u items of %u B key + %u B value set into "
		    "%" PRIu64 " MiB each; what is left\n",
	       cfg->keys, cfg->key_size, cfg->vmax, cfg->cache >> 20);
	printf("  overhead/item = (memory - items x %" PRIu64 " B) / items; "
	       "resident: the server's RSS\n  (shmc: the region's pages) "
	       "after the fill\n",
	       item);
	bench_print_build();
	print_shmc_config(o, res, n);
	printf("\n");
	printf("%-10s %12s %10s %14s %8s %13s\n", "backend", "items", "B/item",
	       "overhead/item", "fill%", "resident MiB");
	for (unsigned i = 0; i < n; i++) {
		const struct run_result *r = &res[i];
		char rss[16];

		if (r->status != RUN_OK) {
			print_skipped(r);
			continue;
		}
		if (r->resident)
			snprintf(rss, sizeof(rss), "%.1f",
				 (double)r->resident / MIB);
		else
			snprintf(rss, sizeof(rss), "-");
		if (!r->items) {
			printf("%-10s %12s\n", r->be->name, "0");
			continue;
		}
		printf("%-10s %12" PRIu64 " %10.1f %14.1f %8.1f %13s",
		       r->be->name, r->items,
		       (double)cfg->cache / (double)r->items,
		       ((double)cfg->cache - (double)(r->items * item)) /
			       (double)r->items,
		       100.0 * (double)(r->items * item) / (double)cfg->cache,
		       rss);
		if (r->errors)
			printf("  %" PRIu64 " set errors, first: %s", r->errors,
			       r->first_error);
		printf("\n");
	}
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void json_num(const char *key, double v)
{
	printf(", \"%s\": %.6g", key, v);
}

/* A ratio; null when it does not apply (0). */
static void json_ratio(const char *key, double v)
{
	printf(", \"%s\": ", key);
	if (v > 0)
		printf("%.6g", v);
	else
		printf("null");
}

static void json_hist(const struct hist *h)
{
	printf("{\"samples\": %" PRIu64 ", \"p50_ns\": %" PRIu64 ", "
	       "\"p99_ns\": "
	       "%" PRIu64 ", \"p999_ns\": %" PRIu64 ", \"max_ns\": %" PRIu64
	       "}",
	       h->count, hist_quantile(h, 0.5), hist_quantile(h, 0.99),
	       hist_quantile(h, 0.999), h->max);
}

static void machine_json(const struct options *o)
{
	char line[256], model[200] = "?";
	struct utsname u;
	FILE *f = fopen("/proc/cpuinfo", "r");

	while (f && fgets(line, sizeof(line), f)) {
		char *c = strchr(line, ':');

		if (!strncmp(line, "model name", 10) && c) {
			snprintf(model, sizeof(model), "%s", c + 2);
			model[strcspn(model, "\n")] = '\0';
			break;
		}
	}
	if (f)
		fclose(f);
	if (uname(&u))
		snprintf(u.release, sizeof(u.release), "?");
	printf("\"machine\": {\"cpus\": %ld, \"cpu\": ",
	       sysconf(_SC_NPROCESSORS_ONLN));
	json_str(model);
	printf(", \"kernel\": ");
	json_str(u.release);
	printf(", \"line_transfer_ns\": ");
	if (o->xfer.ns >= 0)
		printf("%" PRId64 "}", o->xfer.ns);
	else
		printf("null}");
}

static void print_json(const struct options *o, const struct workload *w,
		       const struct run_result *res, unsigned n)
{
	const struct bench_cfg *cfg = &o->cfg;
	static const char *const modes[] = { "speed", "hit-ratio", "memory" };
	uint64_t item = cfg->key_size + cfg->vmax;
	const struct run_result *lru = find(res, n, "lru", 1);
	char d[32];

	printf("{\"tool\": \"" PROG "\", \"version\": \"" SHMC_VERSION "\", "
	       "\"build\": \"" SHMC_BUILDTYPE "\", \"asserts\": %s, "
	       "\"sanitize\": \"" SHMC_SANITIZE "\", \"mode\": \"%s\", ",
	       SHMC_ASSERTS ? "true" : "false", modes[cfg->mode]);
	machine_json(o);
	printf(",\n \"workload\": {\"keys\": %u, \"key_size\": %u, "
	       "\"value_min\": %u, \"value_max\": %u, \"mix\": {\"get\": %u, "
	       "\"set\": %u, \"del\": %u, \"mget\": %u}, \"mget_batch\": %u, "
	       "\"dist\": \"%s\", \"threads\": %u, \"server_threads\": ",
	       cfg->keys, cfg->key_size, cfg->vmin, cfg->vmax, cfg->mix[OP_GET],
	       cfg->mix[OP_SET], cfg->mix[OP_DEL], cfg->mix[OP_MGET],
	       cfg->mget_batch, dist_text(cfg, d, sizeof(d)), cfg->threads);
	if (cfg->server_threads)
		printf("%u", cfg->server_threads);
	else
		printf("\"auto\"");
	printf(", \"procs\": [");
	for (unsigned i = 0; i < o->nprocs; i++)
		printf("%s%u", i ? ", " : "", o->procs[i]);
	printf("], \"duration_s\": %g, \"ops\": %" PRIu64 ", \"warmup_s\": %g, "
	       "\"warmup_ops\": %" PRIu64 ", \"cache_bytes\": %" PRIu64
	       ", \"seed\": %" PRIu64 ", \"sample_every\": %u, "
	       "\"clock_overhead_ns\": %" PRId64 ", \"lru_overhead\": %u, "
	       "\"shmc_avg_item\": %u, \"repeat\": %u},\n"
	       " \"results\": [",
	       cfg->duration, cfg->ops, cfg->warmup, cfg->warm_ops, cfg->cache,
	       cfg->seed, cfg->sample, w->clock_ovh, cfg->lru_overhead,
	       cfg->avg_item, o->repeat);
	for (unsigned i = 0; i < n; i++) {
		const struct run_result *r = &res[i];
		struct hist all;
		double hr = hit_ratio(r);

		printf("%s\n  {\"backend\": \"%s\", \"procs\": %u, "
		       "\"threads\": %u, "
		       "\"status\": \"%s\"",
		       i ? "," : "", r->be->name, r->procs, r->threads,
		       status_name(r->status));
		if (r->status != RUN_OK) {
			printf(", \"reason\": ");
			json_str(r->why);
			printf("}");
			continue;
		}
		printf(", \"version\": ");
		json_str(r->version);
		lat_all(r, &all);
		printf(", \"ops\": %" PRIu64, r->ops[OP_GET] + r->ops[OP_SET] +
						      r->ops[OP_DEL] +
						      r->ops[OP_MGET]);
		json_num("ops_per_s", ops_per_s(r));
		json_num("run_ops_per_s", r->run_rate);
		json_num("ns_per_op", ns_per_op(r));
		json_num("elapsed_s", r->elapsed_s);
		if (cpu_ns_per_op(r, r->server_cpu_s) >= 0)
			json_num("server_cpu_ns_per_op",
				 cpu_ns_per_op(r, r->server_cpu_s));
		if (cpu_ns_per_op(r, r->client_cpu_s) >= 0)
			json_num("client_cpu_ns_per_op",
				 cpu_ns_per_op(r, r->client_cpu_s));
		if (r->nruns > 1) {
			printf(", \"runs_run_ops_per_s\": [");
			for (unsigned k = 0; k < r->nruns; k++)
				printf("%s%.6g", k ? ", " : "", r->runs[k]);
			printf("]");
		}
		printf(", \"p50_ns\": %" PRIu64 ", \"p99_ns\": %" PRIu64
		       ", \"p999_ns\": %" PRIu64 ", \"max_ns\": %" PRIu64
		       ", \"samples\": %" PRIu64 ", \"sample_every\": %u",
		       hist_quantile(&all, 0.5), hist_quantile(&all, 0.99),
		       hist_quantile(&all, 0.999), all.max, all.count,
		       r->sample_every);
		if (hr >= 0)
			printf(", \"hit_ratio\": %.6f", hr);
		else
			printf(", \"hit_ratio\": null");
		printf(", \"hits\": %" PRIu64 ", \"misses\": %" PRIu64
		       ", \"errors\": %" PRIu64,
		       r->hits, r->misses, r->errors);
		if (r->errors) {
			printf(", \"first_error\": ");
			json_str(r->first_error);
		}
		if (cfg->mode == MODE_SPEED) {
			const struct run_result *base =
				find(res, n, r->be->name, o->procs[0]);

			json_ratio("vs_shmc", cost_ratio(r, find(res, n, "shmc",
								 r->procs)));
			json_ratio("vs_inproc",
				   cost_ratio(r, find(res, n, "inproc",
						      r->procs)));
			json_ratio("scale", scale(r, base, false));
			json_ratio("scale_wall", scale(r, base, true));
			printf(", \"latency\": {");
			for (int op = 0, first = 1; op < NOPS; op++) {
				if (!r->lat[op].count)
					continue;
				printf("%s\"%s\": ", first ? "" : ", ",
				       op_names[op]);
				json_hist(&r->lat[op]);
				first = 0;
			}
			printf("}");
		} else {
			printf(", \"items\": %" PRIu64 ", \"resident_bytes\": "
			       "%" PRIu64,
			       r->items, r->resident);
		}
		if (cfg->mode == MODE_HIT_RATIO && lru && hr >= 0)
			json_num("vs_lru_points", 100 * (hr - hit_ratio(lru)));
		if (cfg->mode == MODE_MEMORY && r->items) {
			json_num("bytes_per_item",
				 (double)cfg->cache / (double)r->items);
			printf(", \"overhead_per_item\": %.2f",
			       ((double)cfg->cache -
				(double)(r->items * item)) /
				       (double)r->items);
		}
		printf("}");
	}
	printf("\n ]}\n");
}

/* ------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------ */

/* Why backend b has no row in this mode and mix, or NULL. */
static const char *not_for_mode(const struct backend *b,
				const struct bench_cfg *cfg)
{
	enum bench_mode m = cfg->mode;

	if (m == MODE_SPEED && cfg->mix[OP_MGET] && !b->mget && !b->missing)
		return "no multi-get here: mget in --mix runs memcached and "
		       "shmc-mc only";
	if (m == MODE_SPEED && (b->flags & BE_SIM))
		return "a simulator: --hit-ratio and --memory only";
	if (m != MODE_SPEED && !(b->flags & (BE_EVICTS | BE_SIM)))
		return "no memory limit: it keeps every item, evicts none";
	return NULL;
}

/* One run of backend b with o->cfg.procs processes into r (a skipped
 * row when the backend has no place in this mode).  True if it failed. */
static bool run_one(const struct options *o, const struct workload *w,
		    unsigned b, unsigned rep, struct run_result *r)
{
	const struct backend *be = bench_backends[b];
	const char *na = not_for_mode(be, &o->cfg);

	if (na) {
		r->be = be;
		r->procs = o->cfg.procs;
		r->threads = o->cfg.threads;
		r->status = RUN_SKIPPED;
		snprintf(r->why, sizeof(r->why), "%s", na);
		return false;
	}
	if (!o->json)
		fprintf(stderr, PROG ": %s, %u process(es), run %u/%u...\n",
			be->name, o->cfg.procs, rep + 1, o->repeat);
	run_backend(be, w, o->cfg.procs, r);
	if (r->status == RUN_FAILED && !run_interrupted)
		fprintf(stderr, PROG ": %s failed: %s\n", be->name, r->why);
	return r->status == RUN_FAILED;
}

/* The result to report for one backend and process count out of its
 * repeated runs: a failed or skipped one if any, else the median by run
 * rate; it keeps the run rate of every run. */
static void pick_median(struct run_result *runs, unsigned n,
			struct run_result *out)
{
	unsigned order[RUN_MAX_REPEAT], i, j;

	for (i = 0; i < n; i++) {
		if (runs[i].status != RUN_OK) {
			*out = runs[i];
			return;
		}
		order[i] = i;
	}
	for (i = 1; i < n; i++) { /* insertion sort by ops/s */
		unsigned x = order[i];

		for (j = i;
		     j > 0 && runs[order[j - 1]].run_rate > runs[x].run_rate;
		     j--)
			order[j] = order[j - 1];
		order[j] = x;
	}
	*out = runs[order[n / 2]];
	out->nruns = n;
	for (i = 0; i < n; i++)
		out->runs[i] = runs[i].run_rate;
}

int main(int argc, char **argv)
{
	struct options o;
	struct workload w;
	struct run_result *res, *runs;
	unsigned n = 0, nb = bench_nbackends;
	int failed = 0, rc;

	rc = parse_args(&o, argc, argv);
	if (rc == PARSE_DONE)
		return fflush(stdout) ? EXIT_FAILED : EXIT_OK;
	if (rc)
		return EXIT_USAGE;
	rc = wl_create(&w, &o.cfg);
	if (rc) {
		fprintf(stderr, PROG ": building the workload: %s\n",
			strerror(-rc));
		return EXIT_FAILED;
	}
#ifdef HAVE_HIREDIS
	if (o.near) {
		rc = near_run(&o.cfg, &w, o.inval_writes);
		wl_destroy(&w);
		if (rc == -EINTR)
			return 130;
		if (!rc && (fflush(stdout) || ferror(stdout)))
			rc = -EIO;
		return rc ? EXIT_FAILED : EXIT_OK;
	}
#endif
	if (o.mget) {
		rc = multi_run(&o.cfg, &w, o.mget, o.repeat > 1 ? o.repeat : 9);
		wl_destroy(&w);
		return rc ? EXIT_FAILED : EXIT_OK;
	}
	/* runs[(p * repeat + rep) * nb + b], res: one row per (p, b). */
	runs = calloc((size_t)nb * o.nprocs * o.repeat, sizeof(*runs));
	res = calloc((size_t)nb * o.nprocs, sizeof(*res));
	if (!runs || !res) {
		fprintf(stderr, PROG ": out of memory\n");
		return EXIT_FAILED;
	}
	run_install_signals();
	o.xfer.ns = -1;
	if (o.cfg.mode == MODE_SPEED) {
		bool many = o.cfg.threads > 1;

		for (unsigned p = 0; p < o.nprocs; p++)
			many |= o.procs[p] > 1;
		if (many)
			pp_line_transfer(&o.xfer);
	}

	for (unsigned p = 0; p < o.nprocs && !run_interrupted; p++) {
		o.cfg.procs = o.procs[p];
		for (unsigned rep = 0; rep < o.repeat; rep++) {
			struct run_result *row =
				&runs[((size_t)p * o.repeat + rep) * nb];

			for (unsigned b = 0; b < nb && !run_interrupted; b++) {
				if (o.want[b])
					failed |= run_one(&o, &w, b, rep,
							  &row[b]);
			}
		}
	}
	if (run_interrupted) {
		fprintf(stderr, PROG ": interrupted\n");
		free(runs);
		free(res);
		wl_destroy(&w);
		return 130;
	}
	for (unsigned p = 0; p < o.nprocs; p++) {
		for (unsigned b = 0; b < nb; b++) {
			struct run_result set[RUN_MAX_REPEAT];

			if (!o.want[b])
				continue;
			for (unsigned rep = 0; rep < o.repeat; rep++)
				set[rep] =
					runs[((size_t)p * o.repeat + rep) * nb +
					     b];
			pick_median(set, o.repeat, &res[n++]);
		}
	}
	free(runs);

	if (o.json)
		print_json(&o, &w, res, n);
	else if (o.cfg.mode == MODE_SPEED)
		table_speed(&o, &w, res, n);
	else if (o.cfg.mode == MODE_HIT_RATIO)
		table_hit_ratio(&o, res, n);
	else
		table_memory(&o, res, n);
	free(res);
	wl_destroy(&w);
	if (fflush(stdout) || ferror(stdout)) {
		fprintf(stderr, PROG ": write error\n");
		return EXIT_FAILED;
	}
	return failed ? EXIT_FAILED : EXIT_OK;
}
