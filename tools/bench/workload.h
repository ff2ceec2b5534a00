/*
 * workload.h - what every backend is fed, built once before any timing:
 * the keys (fixed size, pregenerated), each key's value size, one buffer
 * of value bytes, and the trace of operations (an operation and a key
 * index per entry, drawn from the mix and the key distribution).  The
 * timed loop only reads the trace in order: no formatting, no random
 * numbers, no Zipf sampling inside it.  Also the random generator and the
 * Zipf sampler used to build it.
 */
#ifndef SHMC_BENCH_WORKLOAD_H
#define SHMC_BENCH_WORKLOAD_H

#include "bench.h"

#include <stdint.h>

#include "clock.h"

/* A trace entry: the operation in the top 2 bits, the key index below. */
#define TRACE_OP_SHIFT 30
#define TRACE_KEY_MASK ((1u << TRACE_OP_SHIFT) - 1)
#define WL_MAX_KEYS TRACE_KEY_MASK

struct workload {
	const struct bench_cfg *cfg;
	char *keys;	     /* keys x key_size bytes, key i at i*key_size */
	uint32_t *vlen;	     /* value size of each key */
	unsigned char *vals; /* vmax bytes: every value is a prefix */
	uint32_t *trace;
	uint64_t trace_len;  /* entries */
	uint64_t trace_mask; /* trace_len - 1 when a power of two (speed) */
	uint64_t warm_ops;   /* --hit-ratio: leading ops not counted */
	int64_t clock_ovh;   /* ns one timing adds, subtracted from samples */
};

/* xoshiro256** seeded through splitmix64. */
struct rng {
	uint64_t s[4];
};
void rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_next(struct rng *r);
/* Uniform in [0, n). */
uint64_t rng_below(struct rng *r, uint64_t n);
/* Uniform in [0, 1). */
double rng_double(struct rng *r);

/* Zipf over ranks 1..n with exponent s > 0, by rejection-inversion
 * (Hormann and Derflinger 1996): O(1) per sample, no table. */
struct zipf {
	double s, n, hx1, hn, sval;
};
void zipf_init(struct zipf *z, uint64_t n, double s);
uint64_t zipf_next(struct zipf *z, struct rng *r);

/* Builds w for cfg (keys, sizes, values, trace).  0 or -ENOMEM. */
int wl_create(struct workload *w, const struct bench_cfg *cfg);
void wl_destroy(struct workload *w);

static inline const char *wl_key(const struct workload *w, uint32_t i)
{
	return w->keys + (size_t)i * w->cfg->key_size;
}

/* The median of v[0..n) (n > 0, odd for a true median); sorts v. */
int64_t median_i64(int64_t *v, size_t n);

/* clock_mono_ns() (shared/clock.h) as a signed count: the bench subtracts
 * timings and overheads that may come out negative. */
static inline int64_t now_ns(void)
{
	return (int64_t)clock_mono_ns();
}

#endif
