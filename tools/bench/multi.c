/*
 * multi.c - shmc-bench --mget B: what a multi-get (shmc_mget) and a
 * multi-set (shmc_mset) save per key against the single calls, measured
 * side by side in one process on one region: each round times every key
 * through the single call and through the batched one, in the same
 * random order, and which of the two goes first alternates from round to
 * round so that neither always finds the caches warmed by the other.
 * The figures are the medians over the rounds of ns per key.
 */
#include "bench.h"
#include "shmc.h"
#include "workload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MULTI_MAX_ROUNDS 99

/* What the rounds measure: the single call and the batched one. */
enum { M_GET, M_MGET, M_SET, M_MSET, M_N };
static const char *const m_names[M_N] = { "get", "mget", "set", "mset" };

struct multi {
	shmc *c;
	const struct workload *w;
	uint32_t *order; /* every key once, shuffled per round */
	uint32_t n;
	unsigned batch;
	struct shmc_mkey *q;
	struct shmc_mres *res;
	struct shmc_mitem *it;
	int *rc;
	char *bufs; /* batch x vmax */
	uint64_t misses, errors;
};

/* One pass of what over every key; its time in ns. */
static int64_t pass(struct multi *m, int what)
{
	const struct workload *w = m->w;
	uint32_t cap = w->cfg->vmax, b = m->batch;
	int64_t t0 = now_ns();

	for (uint32_t at = 0; at < m->n; at += b) {
		uint32_t g = m->n - at < b ? m->n - at : b;

		for (uint32_t j = 0; j < g; j++) {
			uint32_t i = m->order[at + j];
			const char *k = wl_key(w, i);
			size_t klen = w->cfg->key_size, vlen;
			int rc = 0;

			switch (what) {
			case M_GET:
				rc = shmc_get(m->c, k, klen, m->bufs, cap,
					      &vlen);
				break;
			case M_SET:
				rc = shmc_set(m->c, k, klen, w->vals,
					      w->vlen[i], 0);
				break;
			case M_MGET:
				m->q[j] = (struct shmc_mkey){
					k, klen, m->bufs + (size_t)j * cap, cap
				};
				break;
			case M_MSET:
				m->it[j] = (struct shmc_mitem){ k, klen,
								w->vals,
								w->vlen[i] };
				break;
			}
			m->misses += rc == -ENOENT;
			m->errors += rc && rc != -ENOENT;
		}
		if (what == M_MGET) {
			shmc_mget(m->c, g, m->q, m->res, 0);
			for (uint32_t j = 0; j < g; j++) {
				m->misses += m->res[j].rc == -ENOENT;
				m->errors += m->res[j].rc &&
					     m->res[j].rc != -ENOENT;
			}
		} else if (what == M_MSET) {
			shmc_mset(m->c, g, m->it, 0, m->rc);
			for (uint32_t j = 0; j < g; j++)
				m->errors += m->rc[j] != 0;
		}
	}
	return now_ns() - t0;
}

static void shuffle(uint32_t *v, uint32_t n, struct rng *r)
{
	for (uint32_t i = n; i > 1; i--) {
		uint32_t j = (uint32_t)rng_below(r, i), t = v[i - 1];

		v[i - 1] = v[j];
		v[j] = t;
	}
}

int multi_run(const struct bench_cfg *cfg, const struct workload *w,
	      unsigned batch, unsigned rounds)
{
	struct be_server s = { .cfg = cfg };
	struct multi m = { .w = w, .n = cfg->keys, .batch = batch };
	int64_t t[M_N][MULTI_MAX_ROUNDS];
	struct rng r;
	int rc;

	if (rounds > MULTI_MAX_ROUNDS)
		rounds = MULTI_MAX_ROUNDS;
	m.order = malloc((size_t)m.n * sizeof(*m.order));
	m.q = calloc(batch, sizeof(*m.q));
	m.res = calloc(batch, sizeof(*m.res));
	m.it = calloc(batch, sizeof(*m.it));
	m.rc = calloc(batch, sizeof(*m.rc));
	m.bufs = malloc((size_t)batch * (cfg->vmax ? cfg->vmax : 1));
	if (!m.order || !m.q || !m.res || !m.it || !m.rc || !m.bufs) {
		fprintf(stderr, "shmc-bench: out of memory\n");
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = be_shmc.start(&s))) {
		fprintf(stderr, "shmc-bench: shmc: %s\n", s.why);
		goto out;
	}
	if ((rc = shmc_open(&m.c, s.sock))) {
		fprintf(stderr, "shmc-bench: shmc_open %s: %s\n", s.sock,
			shmc_strerror(rc));
		goto stop;
	}
	for (uint32_t i = 0; i < m.n; i++)
		m.order[i] = i;
	rng_seed(&r, cfg->seed);
	pass(&m, M_SET); /* every key present */
	m.errors = 0;
	printf("shmc-bench mget: %u keys x (%u B key + %u B value), cache "
	       "%llu MiB, batches of %u, %u rounds; build %s\n",
	       m.n, cfg->key_size, cfg->vmax,
	       (unsigned long long)(cfg->cache >> 20), batch, rounds,
	       SHMC_BUILDTYPE);
	printf("%5s %10s %10s %10s %10s\n", "round", "get ns", "mget ns",
	       "set ns", "mset ns");
	for (unsigned k = 0; k < rounds; k++) {
		shuffle(m.order, m.n, &r);
		for (int pair = M_GET; pair < M_N; pair += 2)
			for (int x = 0; x < 2; x++) {
				int what = pair + (x ^ (int)(k & 1));

				t[what][k] = pass(&m, what);
			}
		printf("%5u", k + 1);
		for (int x = 0; x < M_N; x++)
			printf(" %10.1f", (double)t[x][k] / m.n);
		printf("\n");
	}
	double med[M_N];

	for (int x = 0; x < M_N; x++)
		med[x] = (double)median_i64(t[x], rounds) / m.n;
	printf("median ns per key:");
	for (int x = 0; x < M_N; x++)
		printf(" %s %.1f", m_names[x], med[x]);
	printf("\nmget / get = %.2f   mset / set = %.2f   (misses %llu, "
	       "errors %llu)\n",
	       med[M_MGET] / med[M_GET], med[M_MSET] / med[M_SET],
	       (unsigned long long)m.misses, (unsigned long long)m.errors);
	rc = m.errors ? -EIO : 0;
	shmc_close(m.c);
stop:
	be_shmc.stop(&s);
out:
	free(m.order);
	free(m.q);
	free(m.res);
	free(m.it);
	free(m.rc);
	free(m.bufs);
	return rc;
}
