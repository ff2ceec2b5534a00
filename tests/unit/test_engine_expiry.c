/*
 * test_engine_expiry.c - unit tests of the cache engine (shared/engine.h):
 * time to live with the test clock, touch changing an entry's expiry, and
 * the sweep reclaiming expired entries.
 */
#include "testutil.h"
#include "engine_fixture.h"

static void test_engine_ttl_expiry(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e, e2;
	uint32_t t0, ttl = 99, exp = 0;
	uint8_t buf[16];
	size_t vlen;
	struct eng_stats st;

	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_attach(&e2, r->base, r->size, 2, NULL), 0);
	t0 = eng_now(e);

	assert_rc(eng_set(e, "k10", 3, "ten", 3, 10), 0);
	assert_rc(eng_set(e, "k5", 2, "five", 4, 5), 0);
	assert_rc(eng_set(e, "forever", 7, "ever", 4, 0), 0);
	assert_rc(eng_ttl(e, "k10", 3, &ttl), 0);
	assert_int_equal(ttl, 10);

	eng_clock_set(e, t0 + 3);
	assert_rc(eng_ttl(e, "k10", 3, &ttl), 0);
	assert_int_equal(ttl, 7);
	assert_rc(eng_get(e, "k10", 3, buf, sizeof(buf), &vlen, &exp), 0);
	assert_int_equal(exp, t0 + 10);

	eng_clock_set(e, t0 + 9); /* last second alive */
	tu_assert_value(e, "k10", 3, "ten", 3);
	tu_assert_value(&e2, "k10", 3, "ten", 3);
	assert_rc(eng_ttl(e, "k10", 3, &ttl), 0);
	assert_int_equal(ttl, 1);

	/* At the expiry second it is gone, for every attachment. */
	eng_clock_set(e, t0 + 10);
	st = tu_stats(e);
	assert_rc(eng_peek(&e2, "k10", 3, buf, sizeof(buf), &vlen, NULL),
		  -ENOENT);
	assert_rc(eng_ttl(e, "k10", 3, &ttl), -ENOENT);
	assert_rc(eng_touch(e, "k10", 3, 100), -ENOENT);
	tu_assert_miss(e, "k10", 3);
	assert_int_equal(tu_stats(e).expirations, st.expirations + 1);
	assert_int_equal(tu_stats(e).entries, st.entries - 1);
	assert_rc(eng_del(e, "k10", 3), -ENOENT);

	/* Well after expiry, too. */
	eng_clock_set(e, t0 + 11);
	st = tu_stats(e);
	tu_assert_miss(&e2, "k5", 2);
	assert_int_equal(tu_stats(e).expirations, st.expirations + 1);
	assert_int_equal(tu_stats(e).misses, st.misses + 1);

	/* TTL 0 never expires and reports 0. */
	eng_clock_set(e, t0 + 1000000);
	assert_rc(eng_ttl(e, "forever", 7, &ttl), 0);
	assert_int_equal(ttl, 0);
	assert_rc(eng_get(e, "forever", 7, buf, sizeof(buf), &vlen, &exp), 0);
	assert_int_equal(exp, 0);
	assert_int_equal(tu_stats(e).entries, 1);

	/* A key set again after expiry is live again. */
	assert_rc(eng_set(e, "k10", 3, "new", 3, 10), 0);
	tu_assert_value(e, "k10", 3, "new", 3);
}

static void test_engine_touch_changes_expiry(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	uint32_t t0, ttl = 99;

	tu_region_open(r, MiB, &cfg);
	t0 = eng_now(e);
	assert_rc(eng_touch(e, "none", 4, 10), -ENOENT);
	assert_rc(eng_touch(e, "none", 4, 0), -ENOENT);
	tu_assert_miss(e, "none", 4); /* touch does not create */

	/* Extend before expiry. */
	assert_rc(eng_set(e, "a", 1, "A", 1, 10), 0);
	eng_clock_set(e, t0 + 5);
	assert_rc(eng_touch(e, "a", 1, 100), 0);
	assert_rc(eng_ttl(e, "a", 1, &ttl), 0);
	assert_int_equal(ttl, 100);
	eng_clock_set(e, t0 + 50);
	tu_assert_value(e, "a", 1, "A", 1);
	assert_rc(eng_ttl(e, "a", 1, &ttl), 0);
	assert_int_equal(ttl, 55);

	/* Remove the expiry. */
	assert_rc(eng_touch(e, "a", 1, 0), 0);
	assert_rc(eng_ttl(e, "a", 1, &ttl), 0);
	assert_int_equal(ttl, 0);
	eng_clock_set(e, t0 + 10000);
	tu_assert_value(e, "a", 1, "A", 1);

	/* Shorten: give a permanent key a TTL. */
	assert_rc(eng_touch(e, "a", 1, 3), 0);
	eng_clock_set(e, t0 + 10002);
	tu_assert_value(e, "a", 1, "A", 1);
	eng_clock_set(e, t0 + 10003);
	tu_assert_miss(e, "a", 1);
	assert_rc(eng_touch(e, "a", 1, 100), -ENOENT);
}

static void test_engine_sweep_reclaims_expired(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	enum { N = 400 };
	uint32_t t0, expiring = 0, reclaimed = 0;
	struct eng_stats st0, st;

	tu_region_open(r, MiB, &cfg);
	t0 = eng_now(e);
	for (uint32_t i = 0; i < N; i++) {
		set_kv(e, "sw", i, 1, 40, i % 3 == 0 ? 5 : i % 3 == 1 ? 50 : 0);
		expiring += i % 3 == 0;
	}
	eng_clock_set(e, t0 + 5);
	st0 = tu_stats(e);

	/* One bucket at a time, resuming where the last call stopped: one
	 * full turn over every segment's buckets reclaims them all. */
	for (uint32_t s = 0; s < e->g.nseg; s++) {
		for (uint32_t b = 0; b < e->g.nbuckets; b++) {
			int n = eng_sweep(e, s, 1);

			assert_true(n >= 0);
			reclaimed += (uint32_t)n;
		}
	}
	assert_int_equal(reclaimed, expiring);
	st = tu_stats(e);
	assert_int_equal(st.entries, st0.entries - expiring);
	assert_int_equal(st.expirations, st0.expirations + expiring);
	assert_int_equal(st.hits + st.misses, st0.hits + st0.misses);

	/* Nothing left to reclaim; the rest is untouched. */
	for (uint32_t s = 0; s < e->g.nseg; s++)
		assert_int_equal(eng_sweep(e, s, UINT32_MAX), 0);
	for (uint32_t i = 0; i < N; i++)
		assert_rc(get_kv(e, "sw", i, 1, 40), i % 3 == 0 ? -ENOENT : 0);

	/* A later expiry, swept with a large budget. */
	eng_clock_set(e, t0 + 50);
	reclaimed = 0;
	for (uint32_t s = 0; s < e->g.nseg; s++)
		reclaimed += (uint32_t)eng_sweep(e, s, UINT32_MAX);
	assert_int_equal(reclaimed, (N + 1) / 3);
	assert_int_equal(tu_stats(e).entries, N / 3);
	assert_rc(eng_sweep(e, e->g.nseg, 1), -EINVAL);
	tu_assert_all_clean(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_engine_ttl_expiry),
		T(test_engine_touch_changes_expiry),
		T(test_engine_sweep_reclaims_expired),
	};

	return cmocka_run_group_tests_name("engine-expiry", tests, NULL, NULL);
}
