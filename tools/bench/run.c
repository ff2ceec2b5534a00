/*
 * run.c - one measured run (run.h): the parent's side (start the backend,
 * fork the workers, step the phases, merge the slots, stop the backend)
 * and the workers' side (attach, threads, prefill, the timed loop).
 *
 * Timing.  The measured loop runs batches of 64 operations read from the
 * pregenerated trace and checks the phase word (or its op budget) between
 * batches only.  Two throughputs come out of it.  Wall: operations / wall
 * time of the measured phase (first thread's start to last one's end).
 * Run: each batch is timed (two clock reads per 64 ops) and a thread's
 * rate is 64 / its median batch time; the run rate of a row is the sum
 * over its threads.  On a machine where other load preempts the bench,
 * the wall rate counts the time the bench was not running and the run
 * rate does not (a preempted batch is an outlier the median ignores);
 * on a quiet machine the two agree.  Latency:
 * one operation in --sample (16 by default) is timed on its own with two
 * clock_gettime(CLOCK_MONOTONIC) reads (vDSO) and recorded in a
 * log-linear histogram, less the median cost of a back-to-back pair of
 * reads (measured at start); for memcached and redis, whose operations
 * are round trips of many microseconds, every operation is timed.  The
 * timing reads are part of the measured loop: with the defaults they add
 * 2 clock reads per 16 ops and 2 per batch (about 5 ns per op here) to
 * every backend's time per op.  An mget in the mix is one operation: a
 * request for the keys of its trace entry and of the entries after it
 * (--mget-batch in all), whose hits and misses count keys.  The CPU time
 * of the server and of the workers over the measured phase (--duration
 * runs) is read from /proc/PID/stat.
 *
 * Processes.  The workers are forked from the parent after the server is
 * up; each opens its own handles (attach, then open per thread).  The
 * parent holds no handle.  Workers report through a MAP_SHARED anonymous
 * mapping: a control word (phase, ready and failed counts) and one slot
 * per thread, each on its own cache lines.  A worker dies with the parent
 * (PR_SET_PDEATHSIG).
 */
#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BATCH 64
#define AHEAD 8 /* ops ahead whose key the loop prefetches */
#define MAX_WORKERS 256

enum phase { PH_SETUP, PH_WARM, PH_RUN, PH_STOP };

struct ctl {
	_Atomic int phase;	 /* written by the parent only */
	_Atomic unsigned ready;	 /* threads through their set-up */
	_Atomic unsigned failed; /* threads that could not start */
} __attribute__((aligned(64)));

/* One worker thread's report; written by that thread only, read by the
 * parent after the worker process has exited. */
struct slot {
	int status; /* 0, or the -errno that stopped the thread */
	char why[400];
	char version[200];
	char first_error[200];
	uint64_t ops[NOPS], hits, misses, errors, items;
	int64_t t_start, t_end;
	double run_rate; /* ops/s from the median batch */
	struct hist lat[NOPS];
	struct hist lat_hit;
	struct hist batch;
} __attribute__((aligned(64)));

/* What a thread counts while it runs. */
struct tally {
	uint64_t ops[NOPS], hits, misses, errors;
	int first_err;
	struct hist lat[NOPS];
	struct hist lat_hit; /* the sampled gets that hit */
	struct hist batch; /* time per op of each batch, in 1/BATCH_SCALE ns */
};

struct worker {
	const struct backend *be;
	const struct workload *w;
	struct ctl *ctl;
	struct slot *slot;
	void *proc;
	unsigned proc_idx, thr_idx, procs;
	unsigned every;	    /* time 1 op in every (0: none) */
	uint64_t pos;	    /* next trace entry */
	const char **mkeys; /* an OP_MGET's keys (mget_batch of them) */
};

volatile sig_atomic_t run_interrupted;
static volatile pid_t workers[MAX_WORKERS];
static volatile unsigned nworkers;

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

static void on_signal(int sig)
{
	(void)sig;
	run_interrupted = 1;
	for (unsigned i = 0; i < nworkers; i++) {
		if (workers[i] > 0)
			kill(workers[i], SIGKILL);
	}
}

void run_install_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Sleeps s seconds; returns early (false) when interrupted. */
static bool sleep_s(double s)
{
	int64_t end = now_ns() + (int64_t)(s * 1e9);

	while (!run_interrupted) {
		int64_t left = end - now_ns();
		struct timespec ts;

		if (left <= 0)
			return true;
		if (left > 10000000)
			left = 10000000;
		ts.tv_sec = 0;
		ts.tv_nsec = left;
		nanosleep(&ts, NULL);
	}
	return false;
}

static int wait_phase(struct ctl *ctl, int ph)
{
	struct timespec nap = { 0, 50000 };
	int cur;

	while ((cur = atomic_load(&ctl->phase)) < ph)
		nanosleep(&nap, NULL);
	return cur;
}

static const char *be_strerror(const struct backend *be, int err)
{
	return be->strerror ? be->strerror(err) : strerror(-err);
}

/* Time 1 op in this many: every op of a round-trip backend. */
static unsigned sample_every(const struct bench_cfg *cfg,
			     const struct backend *be)
{
	if (cfg->sample == 0)
		return 0;
	return be->flags & BE_REMOTE ? 1 : cfg->sample;
}

static void note(struct tally *t, int rc)
{
	t->errors++;
	if (!t->first_err)
		t->first_err = rc;
}

/* ------------------------------------------------------------------------
 * The worker threads
 * ------------------------------------------------------------------------ */

/* The measured loop: batches of trace operations until the phase reaches
 * `until` or max_ops operations are done.  Kept free of anything but the
 * operation, its tally and, one op in `every`, two clock reads. */
static void loop(struct worker *wk, void *h, char *buf, size_t cap,
		 struct tally *t, int until, uint64_t max_ops)
{
	const struct workload *w = wk->w;
	const struct backend *be = wk->be;
	int (*get)(void *, const void *, size_t, void *, size_t,
		   size_t *) = be->get;
	int (*set)(void *, const void *, size_t, const void *,
		   size_t) = be->set;
	int (*del)(void *, const void *, size_t) = be->del;
	const char **mkeys = wk->mkeys;
	const unsigned batch = w->cfg->mget_batch;
	const uint32_t *trace = w->trace, *vlen = w->vlen;
	const unsigned char *vals = w->vals;
	const char *keys = w->keys;
	const size_t ks = w->cfg->key_size;
	const uint64_t mask = w->trace_mask;
	const int64_t ovh = w->clock_ovh;
	const unsigned every = wk->every;
	unsigned countdown = every;
	uint64_t pos = wk->pos, done = 0;
	unsigned found = 0;
	size_t vl;

	while (done < max_ops) {
		unsigned n = max_ops - done < BATCH ? (unsigned)(max_ops - done)
						    : BATCH;
		int64_t tb = now_ns();

		for (unsigned j = 0; j < n; j++) {
			uint32_t e = trace[pos++ & mask];
			uint32_t k = e & TRACE_KEY_MASK;
			uint32_t ka = trace[(pos + AHEAD) & mask] &
				      TRACE_KEY_MASK;

			__builtin_prefetch(keys + (size_t)ka * ks);
			__builtin_prefetch(&vlen[ka]);
			unsigned op = e >> TRACE_OP_SHIFT;
			const char *key = keys + (size_t)k * ks;
			bool timed = every && --countdown == 0;
			int64_t t0 = 0;
			int rc;

			if (timed) {
				countdown = every;
				t0 = now_ns();
			}
			if (op == OP_GET) {
				rc = get(h, key, ks, buf, cap, &vl);
			} else if (op == OP_SET) {
				rc = set(h, key, ks, vals, vlen[k]);
			} else if (op == OP_DEL) {
				rc = del(h, key, ks);
			} else {
				/* This entry's key and the next ones'. */
				mkeys[0] = key;
				for (unsigned i = 1; i < batch; i++)
					mkeys[i] =
						keys +
						(size_t)(trace[(pos - 1 + i) &
							       mask] &
							 TRACE_KEY_MASK) *
							ks;
				rc = be->mget(h, mkeys, ks, batch, buf, cap,
					      &found);
			}
			if (timed) {
				int64_t d = now_ns() - t0 - ovh;

				hist_add(&t->lat[op], d > 0 ? (uint64_t)d : 0);
				if (op == OP_GET && rc == 0)
					hist_add(&t->lat_hit,
						 d > 0 ? (uint64_t)d : 0);
			}
			t->ops[op]++;
			if (op == OP_MGET && rc == 0) {
				t->hits += found;
				t->misses += batch - found;
			} else if (rc == 0) {
				t->hits += op == OP_GET;
			} else if (rc == BE_MISS) {
				t->misses += op == OP_GET;
			} else {
				note(t, rc);
			}
		}
		hist_add(&t->batch,
			 (uint64_t)(now_ns() - tb) * BATCH_SCALE / n);
		done += n;
		if (atomic_load_explicit(&wk->ctl->phase,
					 memory_order_relaxed) >= until)
			break;
	}
	wk->pos = pos;
}

/* --hit-ratio: the trace in order, once; get, and set on a miss. */
static void cache_aside(struct worker *wk, void *h, char *buf, size_t cap,
			struct tally *t)
{
	const struct workload *w = wk->w;
	const struct backend *be = wk->be;
	size_t ks = w->cfg->key_size, vl;

	for (uint64_t i = 0; i < w->trace_len; i++) {
		uint32_t k = w->trace[i] & TRACE_KEY_MASK;
		const char *key = wl_key(w, k);
		bool counted = i >= w->warm_ops;
		int rc = be->get(h, key, ks, buf, cap, &vl);

		if (i == w->warm_ops)
			wk->slot->t_start = now_ns();
		if (counted)
			t->ops[OP_GET]++;
		if (rc == BE_MISS) {
			t->misses += counted;
			rc = be->set(h, key, ks, w->vals, w->vlen[k]);
			if (counted)
				t->ops[OP_SET]++;
			if (rc)
				note(t, rc);
		} else if (rc == 0) {
			t->hits += counted;
		} else {
			note(t, rc);
		}
		if (i % 4096 == 0 &&
		    atomic_load_explicit(&wk->ctl->phase,
					 memory_order_relaxed) >= PH_STOP)
			break;
	}
}

/* Sets this thread's share of the keys (all of them for a per-process
 * backend, split between the threads of this process; else split among
 * all threads).  0 or the first error. */
static int prefill(struct worker *wk, void *h)
{
	const struct workload *w = wk->w;
	const struct bench_cfg *cfg = w->cfg;
	unsigned stride = cfg->threads, first = wk->thr_idx;
	int rc;

	if (!(wk->be->flags & BE_LOCAL)) {
		stride *= wk->procs;
		first += wk->proc_idx * cfg->threads;
	}
	for (uint32_t k = first; k < cfg->keys; k += stride) {
		rc = wk->be->set(h, wl_key(w, k), cfg->key_size, w->vals,
				 w->vlen[k]);
		if (rc) {
			snprintf(wk->slot->why, sizeof(wk->slot->why),
				 "prefill: set of key %u: %s", k,
				 be_strerror(wk->be, rc));
			return rc;
		}
	}
	return 0;
}

static void *worker_thread(void *arg)
{
	struct worker *wk = arg;
	const struct bench_cfg *cfg = wk->w->cfg;
	const struct backend *be = wk->be;
	struct slot *s = wk->slot;
	struct tally *t = calloc(1, sizeof(*t));
	size_t cap = cfg->vmax + 64;
	char *buf = malloc(cap);
	void *h = NULL;
	int rc;

	if (cfg->mix[OP_MGET])
		wk->mkeys = calloc(cfg->mget_batch, sizeof(*wk->mkeys));
	if (!t || !buf || (cfg->mix[OP_MGET] && !wk->mkeys)) {
		rc = srv_fail(s->why, sizeof(s->why), -ENOMEM, "out of memory");
		goto fail;
	}
	rc = be->open(wk->proc, &h, s->why, sizeof(s->why));
	if (rc)
		goto fail;
	if (cfg->mode == MODE_SPEED && !(be->flags & BE_PREFILLED)) {
		rc = prefill(wk, h);
		if (rc)
			goto fail;
	}
	if (wk->proc_idx == 0 && wk->thr_idx == 0 && be->version)
		be->version(h, s->version, sizeof(s->version));
	atomic_fetch_add(&wk->ctl->ready, 1);

	switch (cfg->mode) {
	case MODE_SPEED:
		if (wait_phase(wk->ctl, PH_WARM) == PH_WARM)
			loop(wk, h, buf, cap, t, PH_RUN, UINT64_MAX);
		memset(t, 0, sizeof(*t));
		if (wait_phase(wk->ctl, PH_RUN) >= PH_STOP)
			break;
		s->t_start = now_ns();
		loop(wk, h, buf, cap, t, PH_STOP,
		     cfg->duration > 0 ? UINT64_MAX : cfg->ops);
		s->t_end = now_ns();
		break;
	case MODE_HIT_RATIO:
		if (wait_phase(wk->ctl, PH_RUN) >= PH_STOP)
			break;
		s->t_start = now_ns();
		cache_aside(wk, h, buf, cap, t);
		s->t_end = now_ns();
		if (be->items && be->items(h, &s->items))
			s->items = 0; /* only informative here */
		break;
	case MODE_MEMORY:
		if (wait_phase(wk->ctl, PH_RUN) >= PH_STOP)
			break;
		s->t_start = now_ns();
		for (uint32_t k = 0; k < cfg->keys; k++) {
			rc = be->set(h, wl_key(wk->w, k), cfg->key_size,
				     wk->w->vals, wk->w->vlen[k]);
			t->ops[OP_SET]++;
			if (rc)
				note(t, rc);
		}
		s->t_end = now_ns();
		if (be->items) {
			rc = be->items(h, &s->items);
			if (rc) {
				srv_fail(s->why, sizeof(s->why), rc,
					 "counting items: %s",
					 be_strerror(be, rc));
				goto fail;
			}
		}
		break;
	}

	memcpy(s->ops, t->ops, sizeof(s->ops));
	s->hits = t->hits;
	s->misses = t->misses;
	s->errors = t->errors;
	if (t->first_err)
		snprintf(s->first_error, sizeof(s->first_error), "%s",
			 be_strerror(be, t->first_err));
	memcpy(s->lat, t->lat, sizeof(s->lat));
	s->lat_hit = t->lat_hit;
	s->batch = t->batch;
	if (t->batch.count) {
		uint64_t med = hist_quantile(&t->batch, 0.5);

		s->run_rate = med ? 1e9 * BATCH_SCALE / (double)med : 0;
	}
	be->close(h);
	free(t);
	free(buf);
	free(wk->mkeys);
	return NULL;

fail:
	s->status = rc;
	if (h)
		be->close(h);
	free(t);
	free(buf);
	free(wk->mkeys);
	atomic_fetch_add(&wk->ctl->failed, 1);
	return NULL;
}

/* A worker process: attach, run the threads, detach, _exit. */
static void worker_process(const struct backend *be, const struct workload *w,
			   struct be_server *srv, struct ctl *ctl,
			   struct slot *slots, unsigned p, unsigned procs)
{
	const struct bench_cfg *cfg = w->cfg;
	unsigned T = cfg->threads, fails = 0;
	struct worker *wk = calloc(T, sizeof(*wk));
	pthread_t *tid = calloc(T, sizeof(*tid));
	uint64_t total = (uint64_t)procs * T;
	void *proc = NULL;
	int rc;

	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (!wk || !tid) {
		rc = srv_fail(slots[p * T].why, sizeof(slots[p * T].why),
			      -ENOMEM, "out of memory");
		goto fail;
	}
	rc = be->attach(srv, &proc, slots[p * T].why, sizeof(slots[p * T].why));
	if (rc)
		goto fail;
	for (unsigned i = 0; i < T; i++) {
		uint64_t g = (uint64_t)p * T + i;

		wk[i] = (struct worker){
			.be = be,
			.w = w,
			.ctl = ctl,
			.slot = &slots[g],
			.proc = proc,
			.proc_idx = p,
			.thr_idx = i,
			.procs = procs,
			.every = sample_every(cfg, be),
			.pos = w->trace_len ? g * w->trace_len / total : 0,
		};
		rc = pthread_create(&tid[i], NULL, worker_thread, &wk[i]);
		if (rc) {
			/* The threads already started find the run failed. */
			slots[g].status = -rc;
			snprintf(slots[g].why, sizeof(slots[g].why),
				 "pthread_create: %s", strerror(rc));
			atomic_fetch_add(&ctl->failed, T - i);
			T = i;
			break;
		}
	}
	for (unsigned i = 0; i < T; i++)
		pthread_join(tid[i], NULL);
	for (unsigned i = 0; i < cfg->threads; i++)
		fails += slots[p * cfg->threads + i].status != 0;
	be->detach(proc);
	_exit(fails ? 1 : 0);

fail:
	slots[p * cfg->threads].status = rc;
	atomic_fetch_add(&ctl->failed, cfg->threads);
	_exit(1);
}

/* ------------------------------------------------------------------------
 * The parent
 * ------------------------------------------------------------------------ */

/* Bytes held by what the backend started: the region's pages in
 * /dev/shm for shmc, else the server's resident set. */
static uint64_t resident_bytes(const struct be_server *s)
{
	char path[128], line[256];
	uint64_t kb = 0;
	FILE *f;

	if (s->name[0]) {
		struct stat st;

		snprintf(path, sizeof(path), "/dev/shm%s", s->name);
		return stat(path, &st) ? 0 : (uint64_t)st.st_blocks * 512;
	}
	if (s->pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)s->pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "VmRSS: %lu kB", (unsigned long *)&kb) == 1)
			break;
	}
	fclose(f);
	return kb * 1024;
}

/* CPU time process pid has used so far (all its threads), in seconds;
 * -1 if unknown. */
static double cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	long tck = sysconf(_SC_CLK_TCK);
	ssize_t n;
	int fd;

	if (pid <= 0 || tck <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* After "pid (comm) ": state is field 3, utime 14, stime 15. */
	p = strrchr(buf, ')');
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
		   &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)tck;
}

/* CPU time of the processes pids[0..n) together; -1 if one is unknown. */
static double cpu_sum(const pid_t *pids, unsigned n)
{
	double sum = 0;

	for (unsigned i = 0; i < n; i++) {
		double c = cpu_s(pids[i]);

		if (c < 0)
			return -1;
		sum += c;
	}
	return sum;
}

/* Reaps worker pids[0..n) (after killing them if kill_them). */
static void reap(pid_t *pids, unsigned n, bool kill_them, bool *any_failed)
{
	for (unsigned i = 0; i < n; i++) {
		int status = 0;

		if (pids[i] <= 0)
			continue;
		if (kill_them)
			kill(pids[i], SIGKILL);
		while (waitpid(pids[i], &status, 0) < 0) {
			if (errno != EINTR)
				break;
			if (run_interrupted)
				kill(pids[i], SIGKILL);
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			*any_failed = true;
		pids[i] = 0;
	}
	nworkers = 0;
}

/* True when a worker has exited already (it failed: workers only exit
 * after the run). */
static bool worker_gone(pid_t *pids, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		int status;

		if (pids[i] > 0 &&
		    waitpid(pids[i], &status, WNOHANG) == pids[i]) {
			pids[i] = 0;
			if (!WIFEXITED(status) || WEXITSTATUS(status))
				return true;
		}
	}
	return false;
}

static void merge(struct run_result *res, const struct slot *slots, unsigned n)
{
	int64_t t0 = INT64_MAX, t1 = INT64_MIN;

	for (unsigned i = 0; i < n; i++) {
		const struct slot *s = &slots[i];

		for (int op = 0; op < NOPS; op++) {
			res->ops[op] += s->ops[op];
			hist_merge(&res->lat[op], &s->lat[op]);
		}
		hist_merge(&res->lat_hit, &s->lat_hit);
		hist_merge(&res->batch, &s->batch);
		res->run_rate += s->run_rate;
		res->hits += s->hits;
		res->misses += s->misses;
		res->errors += s->errors;
		res->items += s->items;
		if (!res->first_error[0] && s->first_error[0])
			snprintf(res->first_error, sizeof(res->first_error),
				 "%s", s->first_error);
		if (!res->version[0] && s->version[0])
			snprintf(res->version, sizeof(res->version), "%s",
				 s->version);
		if (s->t_end > s->t_start) {
			if (s->t_start < t0)
				t0 = s->t_start;
			if (s->t_end > t1)
				t1 = s->t_end;
		}
	}
	res->elapsed_s = t1 > t0 ? (double)(t1 - t0) / 1e9 : 0;
}

int run_backend(const struct backend *be, const struct workload *w,
		unsigned procs, struct run_result *res)
{
	const struct bench_cfg *cfg = w->cfg;
	unsigned T = cfg->threads, total = procs * T;
	struct be_server srv = { .cfg = cfg };
	size_t map_len = sizeof(struct ctl) + total * sizeof(struct slot);
	pid_t pids[MAX_WORKERS] = { 0 };
	bool failed = false;
	struct ctl *ctl;
	struct slot *slots;
	double cpu0 = -1, cpu1 = -1, ccpu0 = -1, ccpu1 = -1;
	int rc;

	res->be = be;
	res->procs = procs;
	res->threads = T;
	res->sample_every = sample_every(cfg, be);
	if (be->missing) {
		res->status = RUN_SKIPPED;
		snprintf(res->why, sizeof(res->why), "%s", be->missing);
		return 0;
	}
	if (procs > MAX_WORKERS) {
		res->status = RUN_FAILED;
		snprintf(res->why, sizeof(res->why), "at most %d processes",
			 MAX_WORKERS);
		return 0;
	}
	rc = be->start(&srv);
	if (rc) {
		res->status = rc == BE_SKIP ? RUN_SKIPPED : RUN_FAILED;
		snprintf(res->why, sizeof(res->why), "%s", srv.why);
		be->stop(&srv);
		return run_interrupted ? -EINTR : 0;
	}
	ctl = mmap(NULL, map_len, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ctl == MAP_FAILED) {
		res->status = RUN_FAILED;
		snprintf(res->why, sizeof(res->why), "mmap: %s",
			 strerror(errno));
		be->stop(&srv);
		return 0;
	}
	slots = (struct slot *)(ctl + 1);

	fflush(NULL);
	for (unsigned p = 0; p < procs && !run_interrupted; p++) {
		pid_t pid = fork();

		if (pid == 0)
			worker_process(be, w, &srv, ctl, slots, p, procs);
		if (pid < 0) {
			snprintf(slots[p * T].why, sizeof(slots[p * T].why),
				 "fork: %s", strerror(errno));
			slots[p * T].status = -errno;
			atomic_fetch_add(&ctl->failed, (procs - p) * T);
			break;
		}
		pids[p] = pid;
		workers[p] = pid;
		nworkers = p + 1;
	}

	/* Set-up (prefill), then the phases. */
	while (!run_interrupted &&
	       atomic_load(&ctl->ready) + atomic_load(&ctl->failed) < total) {
		if (worker_gone(pids, procs)) {
			failed = true;
			break;
		}
		sleep_s(0.001);
	}
	if (!failed && !run_interrupted && !atomic_load(&ctl->failed)) {
		if (cfg->mode == MODE_SPEED && cfg->warmup > 0) {
			atomic_store(&ctl->phase, PH_WARM);
			sleep_s(cfg->warmup);
		}
		cpu0 = cpu_s(srv.pid);
		ccpu0 = cpu_sum(pids, procs);
		if (be->mark)
			be->mark(&srv, true);
		atomic_store(&ctl->phase, PH_RUN);
		if (cfg->mode == MODE_SPEED && cfg->duration > 0) {
			sleep_s(cfg->duration);
			atomic_store(&ctl->phase, PH_STOP);
			if (be->mark)
				be->mark(&srv, false);
		}
	}
	if (cpu0 >= 0 && cfg->duration > 0)
		cpu1 = cpu_s(srv.pid);
	if (ccpu0 >= 0 && cfg->duration > 0)
		ccpu1 = cpu_sum(pids, procs);
	if (failed || atomic_load(&ctl->failed) || run_interrupted)
		atomic_store(&ctl->phase, PH_STOP);
	reap(pids, procs, run_interrupted, &failed);
	if (cpu0 >= 0 && cpu1 < 0)
		cpu1 = cpu_s(srv.pid);
	res->server_cpu_s = cpu0 >= 0 && cpu1 >= cpu0 ? cpu1 - cpu0 : -1;
	res->client_cpu_s = ccpu0 >= 0 && ccpu1 >= ccpu0 ? ccpu1 - ccpu0 : -1;

	res->status = RUN_OK;
	for (unsigned i = 0; i < total; i++) {
		if (slots[i].status) {
			res->status = RUN_FAILED;
			snprintf(res->why, sizeof(res->why), "%s",
				 slots[i].why[0]
					 ? slots[i].why
					 : be_strerror(be, slots[i].status));
			break;
		}
	}
	if (res->status == RUN_OK && failed) {
		res->status = RUN_FAILED;
		snprintf(res->why, sizeof(res->why),
			 "a worker process died (see the messages above)");
	}
	if (res->status == RUN_OK) {
		merge(res, slots, total);
		res->resident = resident_bytes(&srv);
	}
	be->stop(&srv);
	munmap(ctl, map_len);
	return run_interrupted ? -EINTR : 0;
}
