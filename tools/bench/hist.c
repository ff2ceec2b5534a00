/*
 * hist.c - merging and reading the log-linear histograms of hist.h.
 */
#include "hist.h"

#include <math.h>

void hist_merge(struct hist *dst, const struct hist *src)
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
	dst->count += src->count;
	if (src->max > dst->max)
		dst->max = src->max;
}

/* Lowest value and width of bucket i. */
static void bucket_range(unsigned i, uint64_t *lo, uint64_t *width)
{
	unsigned g = i / HIST_SUB, sub = i % HIST_SUB;

	if (g == 0) {
		*lo = i;
		*width = 1;
		return;
	}
	*lo = (uint64_t)(HIST_SUB + sub) << (g - 1);
	*width = (uint64_t)1 << (g - 1);
}

uint64_t hist_quantile(const struct hist *h, double q)
{
	uint64_t rank, seen = 0, lo, width;

	if (h->count == 0)
		return 0;
	rank = (uint64_t)ceil(q * (double)h->count);
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			bucket_range(i, &lo, &width);
			lo += width / 2;
			return lo < h->max ? lo : h->max;
		}
	}
	return h->max;
}
