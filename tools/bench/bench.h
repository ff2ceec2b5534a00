/*
 * bench.h - shmc-bench's shared declarations: the workload definition
 * (struct bench_cfg), the backend interface every cache under test
 * implements (struct backend), the table of backends, and the helpers the
 * backends use to start a server process (server.c).
 *
 * pingpong.c measures what a cache line shared by two CPUs costs, printed
 * with the figures of several workers.
 *
 * A backend is driven in four levels, each with its own object:
 *   start/stop      in the bench's parent process: start a server (or
 *                   create a temporary folder) for one measured run;
 *   attach/detach   in each worker process after fork(): a process-wide
 *                   handle (shmc_open, an LMDB env, the in-process table);
 *   open/close      in each worker thread: what a thread needs for itself
 *                   (a connection, a read transaction);
 *   get/set/del     the operations measured.
 * Nothing here is timed except get/set/del; the rest is set-up.
 */
#ifndef SHMC_BENCH_H
#define SHMC_BENCH_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ------------------------------------------------------------------------
 * The workload
 * ------------------------------------------------------------------------ */

enum bench_mode {
	MODE_SPEED,	/* throughput and latency of a get/set/del mix */
	MODE_HIT_RATIO, /* cache-aside, Zipf trace larger than the cache */
	MODE_MEMORY,	/* fill until eviction, count the items kept */
};

/* Operations, as stored in the top bits of a trace entry.  OP_MGET is one
 * multi-get of bench_cfg.mget_batch keys: the entry's key and those of the
 * entries after it in the trace (speed mode, backends with an mget). */
enum bench_op { OP_GET, OP_SET, OP_DEL, OP_MGET, NOPS };

/* The most keys of one OP_MGET (--mget-batch). */
#define BENCH_MGET_MAX 1024

struct bench_cfg {
	enum bench_mode mode;
	uint32_t keys;	     /* distinct keys */
	uint32_t key_size;   /* bytes of every key */
	uint32_t vmin, vmax; /* value size: fixed when equal */
	unsigned mix[NOPS];  /* weights of get, set, del, mget */
	uint32_t mget_batch; /* keys of one OP_MGET */
	double zipf;	     /* 0: uniform; else the Zipf exponent */
	unsigned threads;    /* per process */
	unsigned procs;	     /* worker processes of this run */
	double duration;     /* seconds (0: use ops) */
	uint64_t ops;	     /* per thread, when duration is 0 */
	double warmup;	     /* seconds before measuring */
	uint64_t warm_ops;   /* --hit-ratio: ops that only warm the cache */
	uint64_t cache;	     /* bytes of memory every cache gets */
	uint64_t seed;
	unsigned sample;       /* time one op in this many (0: none) */
	uint32_t lru_overhead; /* bytes per item the LRU simulator counts */
	const char *daemon;    /* shmcached binary */
	uint32_t avg_item;     /* shmcached --avg-item; 0: its default */
	const char *daemon_args[16];
	unsigned ndaemon_args;
	const char *shmc_socket; /* a running daemon instead of our own */
	const char *peers_dir;	 /* running peers (tools/peers start DIR) */
	const char *tmpdir;	 /* where temporary folders go */
	unsigned server_threads; /* memcached -t, shmcached --threads; 0:
				  * one per client thread up to the CPUs */
	bool tcp; /* memcached, shmc-mc: TCP on loopback, not Unix */
	/* --near-cache: Redis's address (HOST:PORT or a Unix socket path),
	 * and whether the daemon the near backend starts tracks it
	 * (shmcached --redis ADDR --redis-prefix, when it has them). */
	const char *redis_addr;
	bool near_tracking;
};

/* ------------------------------------------------------------------------
 * A backend
 * ------------------------------------------------------------------------ */

/* Return values of get and del besides 0 (hit, deleted) and -errno. */
#define BE_MISS 1
/* Return value of start(): the backend cannot run here (why says). */
#define BE_SKIP 2

/* What start() made, handed to attach().  Filled by the backend. */
struct be_server {
	const struct bench_cfg *cfg;
	char dir[PATH_MAX];  /* temporary folder ("" if none) */
	char sock[PATH_MAX]; /* Unix socket of the server */
	unsigned port;	     /* not 0: it listens on 127.0.0.1:port instead */
	char name[64];	     /* shmc: the region's name */
	pid_t pid;	     /* server process we started (0: none) */
	char why[512];	     /* why start() skipped or failed */
};

enum be_flags {
	BE_LOCAL = 1,	   /* state is per process: each one prefills it */
	BE_REMOTE = 2,	   /* an op is a round trip: time every op */
	BE_EVICTS = 4,	   /* has a memory limit (--hit-ratio, --memory) */
	BE_SIM = 8,	   /* a simulator: --hit-ratio only */
	BE_PREFILLED = 16, /* the keys are in place before the run (the near
			    * mode loads Redis once): no prefill */
};

struct backend {
	const char *name;
	const char *missing; /* not NULL: not built in, and why */
	unsigned flags;	     /* enum be_flags */
	/* 0, BE_SKIP or -errno (both with s->why set). */
	int (*start)(struct be_server *s);
	void (*stop)(struct be_server *s);
	/* After fork(), once per worker process.  0 or -errno, why set. */
	int (*attach)(struct be_server *s, void **proc, char *why, size_t n);
	void (*detach)(void *proc);
	/* Once per worker thread. */
	int (*open)(void *proc, void **thr, char *why, size_t n);
	void (*close)(void *thr);
	/* 0 (hit: *vlen bytes in buf), BE_MISS, or -errno. */
	int (*get)(void *thr, const void *key, size_t klen, void *buf,
		   size_t cap, size_t *vlen);
	int (*set)(void *thr, const void *key, size_t klen, const void *val,
		   size_t vlen);
	/* 0 (deleted), BE_MISS, or -errno. */
	int (*del)(void *thr, const void *key, size_t klen);
	/* Gets keys[0..n) (each klen bytes) in one request; the values may
	 * all go to the same buf.  0 with *hits = the keys found, or -errno.
	 * NULL: no multi-get (a mix with mget skips the backend). */
	int (*mget)(void *thr, const char *const *keys, size_t klen, unsigned n,
		    void *buf, size_t cap, unsigned *hits);
	/* Live items now (--memory); NULL when it cannot say. */
	int (*items)(void *thr, uint64_t *n);
	/* The server's or library's version, into buf; may be NULL. */
	void (*version)(void *thr, char *buf, size_t cap);
	/* Error text of a -errno this backend returned; NULL: strerror. */
	const char *(*strerror)(int err);
	/* In the parent, as the measured phase begins (begin true) and as it
	 * ends: reads what the backend's server has done so far (the near
	 * mode's Redis load).  NULL: nothing to read. */
	void (*mark)(struct be_server *s, bool begin);
};

/* The backends (backend_*.c, lru_sim.c); memcached, shmc-mc (shmcached
 * through libmemcached), redis and lmdb exist only when their client
 * library was found. */
extern const struct backend be_shmc, be_inproc, be_memcached, be_shmc_mc,
	be_redis, be_lmdb, be_lru;

/* Starts shmcached as the shmc backend does (backend_shmc.c), with
 * extra[0..nextra) (at most 8) added to its options before those of
 * --daemon-arg; in s->dir if set, else in a new folder.  s->sock is its
 * control socket.  0 or -errno with s->why set. */
int be_shmc_spawn(struct be_server *s, const char *const *extra,
		  unsigned nextra);

/* The table of backends (backends.c), in the order rows are printed. */
extern const struct backend *const bench_backends[];
extern const unsigned bench_nbackends;

/* ------------------------------------------------------------------------
 * Helpers (server.c)
 * ------------------------------------------------------------------------ */

/* Full path of program `name` found in $PATH into out; false if none. */
bool srv_which(const char *name, char *out, size_t cap);

/* Makes a fresh private folder under cfg->tmpdir into s->dir. */
int srv_mkdir(struct be_server *s, const char *tag);

/* out = s->dir + "/" + name; -ENAMETOOLONG (with s->why set) if it does
 * not fit in cap. */
int srv_path(struct be_server *s, char *out, size_t cap, const char *name);

/* Removes s->dir and everything in it (one level deep is all we create). */
void srv_rmdir(struct be_server *s);

/* Starts argv (argv[0] a path) in its own process group with stdin from
 * /dev/null and stdout+stderr to log; the server is sent SIGTERM if the
 * bench dies.  Records the pid in s->pid.  0 or -errno. */
int srv_spawn(struct be_server *s, char *const argv[], const char *log);

/* A TCP port on 127.0.0.1 that is free now (the server started next is
 * told to listen there; a race with another program is reported by its
 * start failing).  0 or -errno with s->why set. */
int srv_free_port(struct be_server *s, unsigned *port);

/* Waits up to timeout_s for s->sock (127.0.0.1:s->port when set) to
 * accept a connection while s->pid lives.  0, or -errno with s->why set
 * (the log's last line if given). */
int srv_wait(struct be_server *s, double timeout_s, const char *log);

/* The server threads to give a server (memcached -t, shmcached
 * --threads): cfg->server_threads, or when 0 one per client thread
 * (processes x threads) up to the CPUs online. */
unsigned srv_threads(const struct bench_cfg *cfg);

/* Stops s->pid: SIGTERM, then SIGKILL after 5 s; reaps it. */
void srv_kill(struct be_server *s);

/* The last non-empty line of file path into out (for error messages). */
void srv_tail(const char *path, char *out, size_t cap);

/* Sets why to a formatted message; returns rc. */
int srv_fail(char *why, size_t n, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Starts redis-server as the redis backend does (no persistence,
 * maxmemory = the cache size, allkeys-lru) in a new folder: on a Unix
 * socket (s->sock), or with tcp on a free port of 127.0.0.1 (s->port, and
 * s->sock = "127.0.0.1:PORT").  0, BE_SKIP (not installed) or -errno,
 * with s->why set.  And the redis backend's get and set on a hiredis
 * connection (thr, a redisContext *).  For the near mode (near.c). */
int rd_spawn(struct be_server *s, bool tcp);
int rd_get(void *thr, const void *key, size_t klen, void *buf, size_t cap,
	   size_t *vlen);
int rd_set(void *thr, const void *key, size_t klen, const void *val,
	   size_t vlen);

/* The "  build: ..." line every table header has (bench.c). */
void bench_print_build(void);

/* ------------------------------------------------------------------------
 * Multi-get mode (multi.c)
 * ------------------------------------------------------------------------ */

struct workload;

/* Starts shmcached as the shmc backend does, stores every key, then runs
 * `rounds` rounds of each pair - every key by shmc_get and by shmc_mget in
 * batches of `batch`, then every key by shmc_set and by shmc_mset - in one
 * process, on the same keys in the same order, the pair's first member
 * alternating; prints the per-key times' medians and their ratios.  0, or
 * -errno with a message printed. */
int multi_run(const struct bench_cfg *cfg, const struct workload *w,
	      unsigned batch, unsigned rounds);

/* ------------------------------------------------------------------------
 * Near-cache mode (near.c, built with hiredis only)
 * ------------------------------------------------------------------------ */

/* Starts redis-server on loopback TCP unless cfg->redis_addr names one
 * (then set to the address used), loads every key of w into it, runs w
 * with cfg->procs processes against Redis alone and through the near
 * cache (a daemon it starts, following Redis when the daemon can, or the
 * one at cfg->shmc_socket), measures the invalidation latency over
 * inval_writes writes, and prints the report.  0, -EINTR (interrupted),
 * or -errno with a message printed. */
int near_run(struct bench_cfg *cfg, const struct workload *w,
	     unsigned inval_writes);

/* ------------------------------------------------------------------------
 * The machine (pingpong.c)
 * ------------------------------------------------------------------------ */

/* The time a cache line written on one CPU takes to be read on another:
 * half the median round trip of a value handed back and forth between
 * two threads pinned to the first two CPUs the bench may run on. */
struct pp_transfer {
	int64_t ns; /* -1: not measured */
	int cpu[2];
};

/* Measures it (about 50 ms on an idle machine) into *out; out->ns is -1
 * when fewer than two CPUs are allowed, a thread cannot be started or
 * pinned, or a side waits 2 s for an answer that does not come. */
void pp_line_transfer(struct pp_transfer *out);

#endif
