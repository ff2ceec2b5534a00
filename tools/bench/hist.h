/*
 * hist.h - a log-linear latency histogram in the manner of HdrHistogram:
 * values below 64 ns get a bucket each, and every power of two above is
 * split in 64 buckets, so a percentile is off by at most 1/64 (1.6 %) of
 * its value.  Covers 0 ns to 2^40 ns (18 minutes; larger values land in
 * the last bucket).  Recording is one index computation and an increment;
 * histograms of threads and processes are merged by adding buckets.
 */
#ifndef SHMC_BENCH_HIST_H
#define SHMC_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_EXP 40
#define HIST_BUCKETS ((HIST_MAX_EXP - HIST_SUB_BITS + 1) * HIST_SUB)

struct hist {
	uint64_t count;
	uint64_t max;
	uint64_t b[HIST_BUCKETS];
};

static inline unsigned hist_index(uint64_t v)
{
	unsigned e;

	if (v < HIST_SUB)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v);
	if (e >= HIST_MAX_EXP)
		return HIST_BUCKETS - 1;
	return (e - HIST_SUB_BITS + 1) * HIST_SUB +
	       (unsigned)((v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1));
}

static inline void hist_add(struct hist *h, uint64_t v)
{
	h->b[hist_index(v)]++;
	h->count++;
	if (v > h->max)
		h->max = v;
}

/* dst += src. */
void hist_merge(struct hist *dst, const struct hist *src);

/* The value at quantile q (0..1): the middle of the bucket holding the
 * ceil(q * count)-th smallest value; 0 for an empty histogram. */
uint64_t hist_quantile(const struct hist *h, double q);

#endif
