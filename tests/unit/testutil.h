/*
 * testutil.h - small helpers shared by the unit tests: a test region
 * (aligned_alloc + eng_format + eng_attach), a deterministic xorshift RNG,
 * deterministic value bytes, the monotonic clock and the SHMC_TEST_SCALE
 * knob.
 *
 * Not a test framework: every helper is a few lines, static inline, and
 * asserts through cmocka so a set-up failure fails the calling test.  It
 * includes <cmocka.h> (with the headers cmocka needs first), so a test file
 * starts with #include "testutil.h".
 */
#ifndef SHMC_TESTUTIL_H
#define SHMC_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "engine.h"
#include "fnv1a.h"
#include "layout.h"

/* Asserts that an int-returning call gives `want`, printing both as errno
 * names on failure (cmocka would print them as huge hex numbers). */
#define assert_rc(expr, want)                                                  \
	do {                                                                   \
		int rc_ = (expr), want_ = (want);                              \
		if (rc_ != want_)                                              \
			fail_msg("%s = %d (%s), want %d (%s)", #expr, rc_,     \
				 strerror(rc_ < 0 ? -rc_ : 0), want_,          \
				 strerror(want_ < 0 ? -want_ : 0));            \
	} while (0)

/* ------------------------------------------------------------------------
 * Deterministic RNG (xorshift64*): the same seed gives the same run.
 * ------------------------------------------------------------------------ */

static inline uint64_t tu_rand(uint64_t *s)
{
	uint64_t x = *s ? *s : UINT64_C(0x9e3779b97f4a7c15);

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * UINT64_C(0x2545f4914f6cdd1d);
}

/* Uniform in [0, n); n > 0. */
static inline uint32_t tu_below(uint64_t *s, uint32_t n)
{
	return (uint32_t)((tu_rand(s) >> 32) * n >> 32);
}

/* True with probability 1/n. */
static inline bool tu_one_in(uint64_t *s, uint32_t n)
{
	return tu_below(s, n) == 0;
}

/* Mixes two numbers into a seed (splitmix64 finaliser). */
static inline uint64_t tu_mix(uint64_t a, uint64_t b)
{
	uint64_t z = a * UINT64_C(0x9e3779b97f4a7c15) + b + 1;

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Fills buf with len bytes determined by seed alone. */
static inline void tu_fill(void *buf, size_t len, uint64_t seed)
{
	uint8_t *p = buf;
	uint64_t s = tu_mix(seed, 0x5eed);

	while (len >= 8) {
		uint64_t x = tu_rand(&s);

		memcpy(p, &x, 8);
		p += 8;
		len -= 8;
	}
	if (len) {
		uint64_t x = tu_rand(&s);

		memcpy(p, &x, len);
	}
}

/* ------------------------------------------------------------------------
 * Time and scale
 * ------------------------------------------------------------------------ */

/* The clock is clock_mono_ms() (shared/clock.h). */

static inline void tu_sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* SHMC_TEST_SCALE (a factor, default 1, e.g. 0.1 under ASan) scales the
 * long-running tests' op counts and durations. */
static inline double tu_scale(void)
{
	const char *s = getenv("SHMC_TEST_SCALE");
	double v = s ? strtod(s, NULL) : 1.0;

	return v > 0.0 ? v : 1.0;
}

/* ------------------------------------------------------------------------
 * Test regions
 * ------------------------------------------------------------------------ */

/* A formatted region and one attachment to it.  Tests keep one in their
 * cmocka state so the teardown frees it even when an assertion fails. */
struct tu_region {
	uint8_t *base;
	size_t size;
	struct eng e;
};

/* Allocates `size` bytes (page aligned, filled with junk so that format
 * cannot rely on zeroed memory), formats them with cfg and attaches as
 * client 1. */
static inline void tu_region_open(struct tu_region *r, size_t size,
				  const struct eng_config *cfg)
{
	const char *why = NULL;
	size_t alloc = (size + 4095) & ~(size_t)4095;

	r->base = aligned_alloc(4096, alloc);
	assert_non_null(r->base);
	memset(r->base, 0xdb, alloc);
	r->size = size;
	assert_rc(eng_format(r->base, size, cfg), 0);
	assert_rc(eng_attach(&r->e, r->base, size, 1, &why), 0);
}

static inline void tu_region_close(struct tu_region *r)
{
	free(r->base);
	r->base = NULL;
}

static inline int tu_region_setup(void **state)
{
	struct tu_region *r = calloc(1, sizeof(*r));

	*state = r;
	return r ? 0 : -1;
}

static inline int tu_region_teardown(void **state)
{
	struct tu_region *r = *state;

	if (r)
		tu_region_close(r);
	free(r);
	return 0;
}

/* Where segment `seg`'s block and its parts are, from the attachment's
 * validated geometry. */
static inline uint8_t *tu_seg_block(const struct eng *e, uint32_t seg)
{
	return e->base + e->g.seg_base + (uint64_t)seg * e->g.seg_stride;
}

static inline struct seg_hdr *tu_seg_hdr(const struct eng *e, uint32_t seg)
{
	return (struct seg_hdr *)tu_seg_block(e, seg);
}

static inline uint8_t *tu_seg_ring(const struct eng *e, uint32_t seg)
{
	return tu_seg_block(e, seg) + e->g.off_ring;
}

/* Writes key number i with prefix into buf (NUL-terminated) and returns
 * its length. */
static inline size_t tu_key(char *buf, size_t cap, const char *prefix,
			    uint32_t i)
{
	int n = snprintf(buf, cap, "%s%" PRIu32, prefix, i);

	assert_true(n > 0 && (size_t)n < cap);
	return (size_t)n;
}

/* Finds the next key number >= *i whose key lands in segment seg, writes
 * it to buf and returns its length; *i is left on the number found. */
static inline size_t tu_key_in_seg(const struct eng *e, uint32_t seg, char *buf,
				   size_t cap, const char *prefix, uint32_t *i)
{
	for (;; (*i)++) {
		size_t n = tu_key(buf, cap, prefix, *i);

		if (eng_seg_of(e, buf, n) == seg)
			return n;
	}
}

static inline struct eng_stats tu_stats(const struct eng *e)
{
	struct eng_stats st;

	eng_stats(e, &st);
	return st;
}

static inline struct eng_stats tu_seg_stats(const struct eng *e, uint32_t seg)
{
	struct eng_stats st;

	assert_rc(eng_seg_stats(e, seg, &st), 0);
	return st;
}

/* Asserts that key holds exactly val (vlen bytes). */
static inline void tu_assert_value(struct eng *e, const void *key, size_t klen,
				   const void *val, size_t vlen)
{
	size_t cap = vlen + 16, got = SIZE_MAX;
	uint8_t *buf = malloc(cap);

	assert_non_null(buf);
	assert_rc(eng_get(e, key, klen, buf, cap, &got, NULL), 0);
	assert_int_equal(got, vlen);
	assert_memory_equal(buf, val, vlen);
	free(buf);
}

/* Asserts that key misses. */
static inline void tu_assert_miss(struct eng *e, const void *key, size_t klen)
{
	uint8_t buf[64];
	size_t got;

	assert_rc(eng_get(e, key, klen, buf, sizeof(buf), &got, NULL), -ENOENT);
}

/* eng_check on every segment must find nothing and agree with the stats. */
static inline void tu_assert_all_clean(struct eng *e)
{
	for (uint32_t s = 0; s < e->g.nseg; s++) {
		struct eng_check_report rep;

		memset(&rep, 0xff, sizeof(rep));
		assert_rc(eng_check(e, s, false, &rep), 0);
		if (rep.problems)
			print_error("segment %" PRIu32 ": %s\n", s, rep.first);
		assert_int_equal(rep.problems, 0);
		assert_int_equal(rep.repaired, 0);
		assert_int_equal(rep.live, tu_seg_stats(e, s).entries);
	}
}

#endif
