/*
 * workload.c - building the keys, value sizes and trace of workload.h,
 * and the random generator and Zipf sampler behind them.  Everything here
 * runs before the measured phase.
 */
#include "workload.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Random numbers
 * ------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

uint64_t rng_below(struct rng *r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

double rng_double(struct rng *r)
{
	return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* ------------------------------------------------------------------------
 * Zipf by rejection-inversion (as in Apache Commons' sampler)
 * ------------------------------------------------------------------------ */

/* log1p(x)/x, and (exp(x)-1)/x, accurate near 0. */
static double helper1(double x)
{
	return fabs(x) > 1e-8 ? log1p(x) / x : 1 - x * (0.5 - x / 3.0);
}

static double helper2(double x)
{
	return fabs(x) > 1e-8 ? expm1(x) / x : 1 + x * 0.5 * (1 + x / 3.0);
}

/* H(x) = (x^(1-s) - 1) / (1 - s), the integral of h(x) = x^-s. */
static double zh_integral(const struct zipf *z, double x)
{
	double lx = log(x);

	return helper2((1 - z->s) * lx) * lx;
}

static double zh(const struct zipf *z, double x)
{
	return exp(-z->s * log(x));
}

static double zh_integral_inv(const struct zipf *z, double x)
{
	double t = x * (1 - z->s);

	if (t < -1)
		t = -1;
	return exp(helper1(t) * x);
}

void zipf_init(struct zipf *z, uint64_t n, double s)
{
	z->s = s;
	z->n = (double)n;
	z->hx1 = zh_integral(z, 1.5) - 1;
	z->hn = zh_integral(z, z->n + 0.5);
	z->sval = 2 - zh_integral_inv(z, zh_integral(z, 2.5) - zh(z, 2));
}

uint64_t zipf_next(struct zipf *z, struct rng *r)
{
	for (;;) {
		double u = z->hn + rng_double(r) * (z->hx1 - z->hn);
		double x = zh_integral_inv(z, u);
		double k = floor(x + 0.5);

		if (k < 1)
			k = 1;
		else if (k > z->n)
			k = z->n;
		if (k - x <= z->sval || u >= zh_integral(z, k + 0.5) - zh(z, k))
			return (uint64_t)k;
	}
}

/* ------------------------------------------------------------------------
 * The workload
 * ------------------------------------------------------------------------ */

static uint64_t pow2_at_least(uint64_t n)
{
	uint64_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

int64_t median_i64(int64_t *v, size_t n)
{
	qsort(v, n, sizeof(v[0]), cmp_i64);
	return v[n / 2];
}

/* ns that timing one operation adds: the median of back-to-back reads. */
static int64_t clock_overhead(void)
{
	int64_t d[1001];

	for (int i = 0; i < 1001; i++) {
		int64_t t0 = now_ns();

		d[i] = now_ns() - t0;
	}
	return median_i64(d, 1001);
}

static int build_trace(struct workload *w, struct rng *r)
{
	const struct bench_cfg *cfg = w->cfg;
	unsigned total = 0;
	struct zipf z;

	for (int op = 0; op < NOPS; op++)
		total += cfg->mix[op];

	if (cfg->mode == MODE_HIT_RATIO) {
		/* Every op is a get (a set follows a miss): no mix. */
		w->trace_len = cfg->ops;
		w->trace_mask = 0;
		w->warm_ops = cfg->warm_ops;
	} else {
		w->trace_len = pow2_at_least(16 * (uint64_t)cfg->keys);
		if (w->trace_len < (1u << 16))
			w->trace_len = 1u << 16;
		if (w->trace_len > (1u << 22))
			w->trace_len = 1u << 22;
		w->trace_mask = w->trace_len - 1;
	}
	w->trace = malloc(w->trace_len * sizeof(*w->trace));
	if (!w->trace)
		return -ENOMEM;
	if (cfg->zipf > 0)
		zipf_init(&z, cfg->keys, cfg->zipf);
	for (uint64_t i = 0; i < w->trace_len; i++) {
		uint32_t key = cfg->zipf > 0
				       ? (uint32_t)(zipf_next(&z, r) - 1)
				       : (uint32_t)rng_below(r, cfg->keys);
		uint32_t op = OP_GET;

		if (cfg->mode != MODE_HIT_RATIO) {
			uint64_t x = rng_below(r, total);

			for (op = 0; op + 1 < NOPS && x >= cfg->mix[op]; op++)
				x -= cfg->mix[op];
		}
		w->trace[i] = (op << TRACE_OP_SHIFT) | key;
	}
	return 0;
}

int wl_create(struct workload *w, const struct bench_cfg *cfg)
{
	size_t ks = cfg->key_size;
	char *tmp = malloc(ks + 32);
	struct rng r;

	memset(w, 0, sizeof(*w));
	w->cfg = cfg;
	rng_seed(&r, cfg->seed);
	w->keys = malloc((size_t)cfg->keys * ks);
	w->vlen = malloc((size_t)cfg->keys * sizeof(*w->vlen));
	w->vals = malloc(cfg->vmax ? cfg->vmax : 1);
	if (!tmp || !w->keys || !w->vlen || !w->vals) {
		free(tmp);
		wl_destroy(w);
		return -ENOMEM;
	}
	/* "k" then the index, zero-padded to the key size. */
	for (uint32_t i = 0; i < cfg->keys; i++) {
		snprintf(tmp, ks + 32, "k%0*u", (int)ks - 1, i);
		memcpy(w->keys + (size_t)i * ks, tmp, ks);
		w->vlen[i] = cfg->vmin == cfg->vmax
				     ? cfg->vmax
				     : cfg->vmin +
					       (uint32_t)rng_below(
						       &r, cfg->vmax -
								   cfg->vmin +
								   1);
	}
	free(tmp);
	for (uint32_t i = 0; i < cfg->vmax; i++)
		w->vals[i] = (unsigned char)('a' + rng_below(&r, 26));
	if (cfg->mode != MODE_MEMORY && build_trace(w, &r)) {
		wl_destroy(w);
		return -ENOMEM;
	}
	w->clock_ovh = clock_overhead();
	return 0;
}

void wl_destroy(struct workload *w)
{
	free(w->keys);
	free(w->vlen);
	free(w->vals);
	free(w->trace);
	w->keys = NULL;
	w->vlen = NULL;
	w->vals = NULL;
	w->trace = NULL;
}
