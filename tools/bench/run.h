/*
 * run.h - one measured run: one backend, P worker processes of T threads
 * each, fed one workload; its result.  The parent starts the backend's
 * server, forks the workers, steps them through the phases (prefill,
 * warm-up, measure, stop) through a shared page, and merges what each
 * thread left in its slot there.
 */
#ifndef SHMC_BENCH_RUN_H
#define SHMC_BENCH_RUN_H

#include "bench.h"
#include "hist.h"
#include "workload.h"

#include <signal.h>

enum run_status { RUN_OK, RUN_SKIPPED, RUN_FAILED };

#define RUN_MAX_REPEAT 9
/* Batch times are recorded per op in 1/16 ns. */
#define BATCH_SCALE 16

struct run_result {
	const struct backend *be;
	unsigned procs, threads;
	enum run_status status;
	char why[600];	       /* skipped or failed: why */
	char version[200];     /* the backend's own description */
	uint64_t ops[NOPS];    /* measured operations */
	uint64_t hits, misses; /* of the measured gets */
	uint64_t errors;       /* ops that returned an error */
	char first_error[200]; /* the first one, as text */
	double elapsed_s;      /* first thread's start to last one's end */
	struct hist lat[NOPS]; /* sampled latencies, ns */
	struct hist lat_hit;   /* those of the gets that hit */
	struct hist batch;     /* time per op of each batch, ns x BATCH_SCALE */
	double run_rate;       /* sum over threads of their ops/s while
				 * running: from their median batch */
	unsigned sample_every; /* 1 op in this many was timed (0: none) */
	uint64_t items;	       /* --memory, --hit-ratio: items at the end */
	uint64_t resident;     /* bytes the server (or region) holds, 0: ? */
	double server_cpu_s;   /* CPU time (user + system) of the server the
				* bench started, over the measured phase;
				* < 0: no such server, or unknown */
	double client_cpu_s;   /* the same of the worker processes (--duration
				* runs only; < 0: unknown) */
	double runs[RUN_MAX_REPEAT]; /* --repeat: ops/s of every run */
	unsigned nruns;		     /* (this result is the median one) */
};

/* Set by the signal handler; every wait of the parent checks it. */
extern volatile sig_atomic_t run_interrupted;

/* Runs be over w with procs processes; fills *res (status included).
 * Returns 0, or -EINTR when interrupted (res then incomplete). */
int run_backend(const struct backend *be, const struct workload *w,
		unsigned procs, struct run_result *res);

/* SIGINT/SIGTERM: stop the workers, flag the parent. */
void run_install_signals(void);

#endif
