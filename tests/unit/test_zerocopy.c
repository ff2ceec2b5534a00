/*
 * test_zerocopy.c - the engine's in-place paths and get_or_load support:
 * eng_read (value pieces under the lock), eng_reserve/commit/abort, and the
 * flight table (claim, wait, done, takeover, recovery of a dead loader).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine.h"
#include "lock.h"
#include "testutil.h"

#define MiB (1024 * 1024)

struct gathered {
	uint8_t buf[64 * 1024];
	size_t len;
	int wrapped;
};

static int gather(const void *p1, size_t n1, const void *p2, size_t n2,
		  void *arg)
{
	struct gathered *g = arg;

	memcpy(g->buf, p1, n1);
	memcpy(g->buf + n1, p2, n2);
	g->len = n1 + n2;
	g->wrapped |= n2 > 0;
	return 42;
}

static void test_zerocopy_read_gives_exact_value_even_wrapped(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 1 };
	uint8_t val[20000], key[16];
	struct gathered g = { .wrapped = 0 };
	uint64_t seed = 7;

	tu_region_open(r, 256 * 1024, &cfg);
	assert_rc(eng_read(&r->e, "nope", 4, gather, &g), -ENOENT);
	/* Values of 20 KB in a ~250 KB ring: some straddle its end. */
	for (int i = 0; i < 100 && !g.wrapped; i++) {
		size_t klen = tu_key((char *)key, sizeof(key), "zc",
				     (uint32_t)i);
		tu_fill(val, sizeof(val), tu_rand(&seed));
		assert_rc(eng_set(&r->e, key, klen, val, sizeof(val), 0), 0);
		assert_int_equal(eng_read(&r->e, key, klen, gather, &g), 42);
		assert_int_equal(g.len, sizeof(val));
		assert_memory_equal(g.buf, val, sizeof(val));
	}
	assert_true(g.wrapped);
	tu_assert_all_clean(&r->e);
}

static void test_zerocopy_reserve_commit_publishes(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng_resv rv;
	uint8_t val[3000];

	tu_region_open(r, MiB, &cfg);
	tu_fill(val, sizeof(val), 99);
	assert_rc(eng_set(&r->e, "k", 1, "old", 3, 0), 0);
	assert_rc(eng_reserve(&r->e, "k", 1, sizeof(val), 50, &rv), 0);
	memcpy(rv.p[0], val, rv.n[0]);
	memcpy(rv.p[1], val + rv.n[0], rv.n[1]);
	assert_int_equal(rv.n[0] + rv.n[1], sizeof(val));
	assert_rc(eng_commit(&r->e, &rv), 0);
	tu_assert_value(&r->e, "k", 1, val, sizeof(val));
	uint32_t ttl;
	assert_rc(eng_ttl(&r->e, "k", 1, &ttl), 0);
	assert_in_range(ttl, 49, 50);
	/* The segment is unlocked again and consistent. */
	assert_int_equal(tu_seg_hdr(&r->e, rv.seg)->lock, 0);
	tu_assert_all_clean(&r->e);
}

static void test_zerocopy_abort_leaves_key_missing(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng_resv rv;

	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_set(&r->e, "k", 1, "old", 3, 0), 0);
	assert_rc(eng_reserve(&r->e, "k", 1, 10, 0, &rv), 0);
	memset(rv.p[0], 'x', rv.n[0]);
	eng_abort(&r->e, &rv);
	tu_assert_miss(&r->e, "k", 1);
	assert_int_equal(tu_seg_hdr(&r->e, rv.seg)->seq & 1, 0);
	tu_assert_all_clean(&r->e);
	assert_rc(eng_reserve(&r->e, "k", 1, r->e.g.max_kv, 0, &rv), -E2BIG);
}

static void test_zerocopy_reserve_then_death_resets_segment(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng other;
	struct eng_resv rv;

	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_attach(&other, r->base, r->size, 9, NULL), 0);
	assert_rc(eng_set(&r->e, "k", 1, "old", 3, 0), 0);
	/* Client 9 reserves and "dies" before commit. */
	assert_rc(eng_reserve(&other, "k", 1, 10, 0, &rv), 0);
	assert_int_equal(eng_recover(&r->e, 9), 1);
	tu_assert_miss(&r->e, "k", 1); /* reset: never a half value */
	assert_true(tu_seg_stats(&r->e, rv.seg).repairs >= 1);
	tu_assert_all_clean(&r->e);
}

static void test_zerocopy_flight_one_loader_then_wait(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng other;
	struct eng_flight f1, f2;
	char buf[16];
	size_t vlen;

	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_attach(&other, r->base, r->size, 2, NULL), 0);
	assert_int_equal(eng_get_or_claim(&r->e, "k", 1, buf, sizeof(buf),
					  &vlen, NULL, &f1),
			 ENG_LOAD);
	assert_int_equal(eng_get_or_claim(&other, "k", 1, buf, sizeof(buf),
					  &vlen, NULL, &f2),
			 ENG_WAIT);
	/* A different key is not held up. */
	struct eng_flight f3;
	assert_int_equal(eng_get_or_claim(&other, "j", 1, buf, sizeof(buf),
					  &vlen, NULL, &f3),
			 ENG_LOAD);
	eng_flight_done(&other, &f3);

	assert_rc(eng_flight_wait(&other, &f2, 10), -ETIMEDOUT);
	assert_rc(eng_set(&r->e, "k", 1, "loaded", 6, 0), 0);
	eng_flight_done(&r->e, &f1);
	assert_rc(eng_flight_wait(&other, &f2, 10), 0);
	assert_rc(eng_get_or_claim(&other, "k", 1, buf, sizeof(buf), &vlen,
				   NULL, &f2),
		  0);
	assert_int_equal(vlen, 6);
	assert_memory_equal(buf, "loaded", 6);
}

static void test_zerocopy_flight_takeover_and_recovery(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng a, b;
	struct eng_flight fa, fb;
	char buf[16];
	size_t vlen;

	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_attach(&a, r->base, r->size, 5, NULL), 0);
	assert_rc(eng_attach(&b, r->base, r->size, 6, NULL), 0);

	/* A slow loader can be taken over; the old one's done is harmless. */
	assert_int_equal(eng_get_or_claim(&a, "k", 1, buf, 16, &vlen, NULL,
					  &fa),
			 ENG_LOAD);
	assert_int_equal(eng_get_or_claim(&b, "k", 1, buf, 16, &vlen, NULL,
					  &fb),
			 ENG_WAIT);
	assert_rc(eng_flight_takeover(&b, &fb), 0);
	eng_flight_done(&a, &fa); /* no longer a's: must not end b's load */
	struct eng_flight fc;
	assert_int_equal(eng_get_or_claim(&r->e, "k", 1, buf, 16, &vlen, NULL,
					  &fc),
			 ENG_WAIT);
	eng_flight_done(&b, &fb);

	/* A dead loader's flight is ended by recovery. */
	assert_int_equal(eng_get_or_claim(&a, "k", 1, buf, 16, &vlen, NULL,
					  &fa),
			 ENG_LOAD);
	assert_int_equal(eng_get_or_claim(&b, "k", 1, buf, 16, &vlen, NULL,
					  &fb),
			 ENG_WAIT);
	eng_recover(&r->e, 5);
	assert_rc(eng_flight_wait(&b, &fb, 10), 0);
	assert_int_equal(eng_get_or_claim(&b, "k", 1, buf, 16, &vlen, NULL,
					  &fb),
			 ENG_LOAD);
	eng_flight_done(&b, &fb);
}

int main(void)
{
#define T(fn)                                                                  \
	cmocka_unit_test_setup_teardown(fn, tu_region_setup, tu_region_teardown)
	const struct CMUnitTest tests[] = {
		T(test_zerocopy_read_gives_exact_value_even_wrapped),
		T(test_zerocopy_reserve_commit_publishes),
		T(test_zerocopy_abort_leaves_key_missing),
		T(test_zerocopy_reserve_then_death_resets_segment),
		T(test_zerocopy_flight_one_loader_then_wait),
		T(test_zerocopy_flight_takeover_and_recovery),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
