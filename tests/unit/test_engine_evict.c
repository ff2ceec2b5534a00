/*
 * test_engine_evict.c - unit tests of the cache engine (shared/engine.h):
 * what a full segment keeps and what it evicts: cold keys go and hot ones
 * stay, read keys survive a scan, touch counts as a use and peek does not,
 * values stay intact across ring wrap-around, an exhausted record pool
 * evicts rather than failing a set, and an item of max_kv bytes always
 * finds room among hot entries.
 */
#include "testutil.h"
#include "engine_fixture.h"

enum access { ACCESS_GET, ACCESS_TOUCH, ACCESS_PEEK };

/* One segment; key "A" is set first, then cold keys stream through the
 * ring while "A" is accessed every 8 writes (get, touch or peek).  Returns
 * whether "A" is still there after the ring has turned over several
 * times. */
static bool early_key_survives(struct tu_region *r, enum access how)
{
	struct eng_config cfg = { .nseg = 1 };
	struct eng *e;
	uint8_t a[64], buf[64];
	size_t vlen;
	uint32_t writes;
	int rc;

	tu_region_open(r, 128 * 1024, &cfg);
	e = &r->e;
	writes = 4 * e->g.ring_size / 100;
	mkval(a, sizeof(a), 0, 0);
	assert_rc(eng_set(e, "A", 1, a, sizeof(a), 0), 0);
	for (uint32_t i = 0; i < writes; i++) {
		set_kv(e, "cold", i, 1, 100, 0);
		if (i % 8 != 7)
			continue;
		switch (how) {
		case ACCESS_GET:
			/* Read every 8 writes, it must never be evicted. */
			assert_rc(eng_get(e, "A", 1, buf, sizeof(buf), &vlen,
					  NULL),
				  0);
			assert_memory_equal(buf, a, sizeof(a));
			break;
		case ACCESS_TOUCH:
			assert_rc(eng_touch(e, "A", 1, 0), 0);
			break;
		case ACCESS_PEEK:
			rc = eng_peek(e, "A", 1, buf, sizeof(buf), &vlen, NULL);
			assert_true(rc == 0 || rc == -ENOENT);
			if (rc == 0)
				assert_memory_equal(buf, a, sizeof(a));
			break;
		}
	}
	assert_true(tu_stats(e).evictions > 0);
	rc = eng_peek(e, "A", 1, buf, sizeof(buf), &vlen, NULL);
	if (rc == 0)
		assert_memory_equal(buf, a, sizeof(a));
	tu_region_close(r);
	return rc == 0;
}

static void test_engine_peek_does_not_count_as_use(void **state)
{
	struct tu_region *r = *state;

	/* Control: reads through get keep the key alive... */
	assert_true(early_key_survives(r, ACCESS_GET));
	/* ...the same reads through peek do not. */
	assert_false(early_key_survives(r, ACCESS_PEEK));
}

static void test_engine_touch_counts_as_access(void **state)
{
	struct tu_region *r = *state;

	assert_true(early_key_survives(r, ACCESS_TOUCH));
}

static void test_engine_full_segment_evicts_cold_keeps_hot(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 1 };
	struct eng *e;
	enum { NHOT = 16, HOT_LEN = 64, COLD_LEN = 100 };
	uint32_t ncold, cold_left = 0;

	tu_region_open(r, 256 * 1024, &cfg);
	e = &r->e;
	ncold = 5 * e->g.ring_size /
		COLD_LEN; /* turns the ring over 4+ times */

	/* Hot keys are spread among the first cold ones, then all of them
	 * are read after every 16 cold writes: each read must hit. */
	for (uint32_t i = 0; i < ncold; i++) {
		if (i % 10 == 0 && i / 10 < NHOT)
			set_kv(e, "hot", i / 10, 1, HOT_LEN, 0);
		set_kv(e, "cold", i, 1, COLD_LEN, 0);
		if (i % 16 == 15 && i / 10 >= NHOT)
			for (uint32_t h = 0; h < NHOT; h++)
				assert_rc(get_kv(e, "hot", h, 1, HOT_LEN), 0);
	}
	for (uint32_t h = 0; h < NHOT; h++)
		assert_rc(get_kv(e, "hot", h, 1, HOT_LEN), 0);

	for (uint32_t i = 0; i < ncold; i++) {
		int rc = get_kv(e, "cold", i, 1, COLD_LEN);

		assert_true(rc == 0 || rc == -ENOENT);
		cold_left += rc == 0;
	}
	print_message("ring %" PRIu32 " B: %" PRIu32 " of %" PRIu32
		      " cold keys left, %" PRIu64 " evictions\n",
		      e->g.ring_size, cold_left, ncold, tu_stats(e).evictions);
	assert_true(cold_left < ncold / 2);
	assert_true(tu_stats(e).evictions >= ncold / 2);
	tu_assert_all_clean(e);
}

/* One segment: 8 keys read 3 times each, set in turn with 8 keys never
 * read, then a scan of one-off keys that turns the ring over `turns` times
 * with no reads at all.  Returns how many of the read keys are left;
 * *unread_left gets how many of the others are. */
static uint32_t read_keys_left_after_scan(struct tu_region *r, uint32_t turns,
					  uint32_t *unread_left)
{
	struct eng_config cfg = { .nseg = 1 };
	struct eng *e;
	enum { N = 8, LEN = 64, SCAN_LEN = 100 };
	uint32_t left = 0, scan;

	tu_region_open(r, 128 * 1024, &cfg);
	e = &r->e;
	for (uint32_t i = 0; i < N; i++) {
		set_kv(e, "read", i, 1, LEN, 0);
		set_kv(e, "unread", i, 1, LEN, 0);
	}
	for (uint32_t n = 0; n < 3; n++)
		for (uint32_t i = 0; i < N; i++)
			assert_rc(get_kv(e, "read", i, 1, LEN), 0);
	/* Entries are longer than SCAN_LEN: more than `turns` turns. */
	scan = turns * e->g.ring_size / SCAN_LEN;
	for (uint32_t i = 0; i < scan; i++)
		set_kv(e, "scan", i, 1, SCAN_LEN, 0);
	assert_true(tu_stats(e).evictions >= scan / 2);

	*unread_left = 0;
	for (uint32_t i = 0; i < N; i++) {
		char key[32];
		size_t klen = tu_key(key, sizeof(key), "read", i), vlen;
		uint8_t buf[LEN];

		/* peek: counting the reads here would change nothing, but
		 * the check should not be an access. */
		left += eng_peek(e, key, klen, buf, sizeof(buf), &vlen, NULL) ==
			0;
		klen = tu_key(key, sizeof(key), "unread", i);
		*unread_left += eng_peek(e, key, klen, buf, sizeof(buf), &vlen,
					 NULL) == 0;
	}
	tu_assert_all_clean(e);
	tu_region_close(r);
	return left;
}

static void test_engine_read_keys_survive_a_scan(void **state)
{
	struct tu_region *r = *state;
	uint32_t unread;

	/* A scan of one-off keys twice the segment's size pushes out the
	 * keys nobody read, and none of those that were read... */
	assert_int_equal(read_keys_left_after_scan(r, 2, &unread), 8);
	assert_int_equal(unread, 0);
	/* ...but keys no longer read do not stay for ever: after six turns
	 * of the ring without a read they are gone too. */
	assert_int_equal(read_keys_left_after_scan(r, 6, &unread), 0);
	assert_int_equal(unread, 0);
}

struct straddle_count {
	uint32_t items, straddled;
};

static int count_straddled(const struct eng_item *it, void *arg)
{
	struct straddle_count *c = arg;

	c->items++;
	if (it->key_len[1] || it->val_len[1])
		c->straddled++;
	return 0;
}

static void test_engine_ring_wraparound_values_intact(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 1 };
	struct eng *e;
	enum { NKEYS = 48 };
	uint32_t ver[NKEYS] = { 0 }, len[NKEYS] = { 0 }, maxlen;
	uint64_t written = 0, rng = 99;
	uint32_t straddled = 0, n = 0;
	struct straddle_count c;

	tu_region_open(r, LAYOUT_CLIENT_TABLE_SIZE + 64 * 1024, &cfg);
	e = &r->e;
	maxlen = e->g.max_kv - 8;
	while (written < 20ull * e->g.ring_size) {
		uint32_t i = tu_below(&rng, NKEYS);
		uint32_t l = tu_one_in(&rng, 4) ? 1 + tu_below(&rng, maxlen)
						: 1 + tu_below(&rng, 300);

		ver[i] = ++n;
		len[i] = l;
		set_kv(e, "w", i, ver[i], l, 0);
		written += l;
		/* The newest value is always readable. */
		assert_rc(get_kv(e, "w", i, ver[i], l), 0);

		if (n % 8)
			continue;
		/* Every survivor holds exactly its last value. */
		for (uint32_t k = 0; k < NKEYS; k++) {
			int rc;

			if (!ver[k])
				continue;
			rc = get_kv(e, "w", k, ver[k], len[k]);
			assert_true(rc == 0 || rc == -ENOENT);
			if (rc == -ENOENT)
				ver[k] = 0; /* evicted; never comes back */
		}
		c = (struct straddle_count){ 0, 0 };
		assert_rc(eng_iter(e, 0, 1, count_straddled, &c), 0);
		straddled += c.straddled;
	}
	print_message("%" PRIu32 " sets, %" PRIu32 " straddling entries seen\n",
		      n, straddled);
	assert_true(straddled > 0); /* the test did what it says */
	tu_assert_all_clean(e);
}

static void test_engine_pool_exhaustion_evicts_not_fails(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 1, .avg_item = 8192 };
	struct eng *e;
	uint32_t nrec, n, keep;

	tu_region_open(r, 256 * 1024, &cfg);
	e = &r->e;
	nrec = e->g.nrec;
	/* Tiny items: the pool runs out long before the ring does. */
	assert_true((uint64_t)nrec * 40 < e->g.ring_size / 2);
	n = 20 * nrec;
	for (uint32_t i = 0; i < n; i++) {
		set_kv(e, "p", i, 1, 1, 0);
		assert_rc(get_kv(e, "p", i, 1, 1), 0);
		assert_true(tu_seg_stats(e, 0).entries <= nrec);
	}
	assert_true(tu_stats(e).evictions > 0);
	assert_true(tu_stats(e).entries <= nrec);
	keep = nrec / 4 ? nrec / 4 : 1;
	for (uint32_t i = n - keep; i < n; i++)
		assert_rc(get_kv(e, "p", i, 1, 1), 0);
	tu_assert_all_clean(e);
}

/* A segment full of hot small entries (each read up to the highest use
 * count) still takes item after item of max_kv bytes, half its ring: the
 * moves of the hot entries to the head are bounded, so they never starve
 * a write of room.  Each big value reads back intact. */
static void test_engine_max_kv_items_fit_among_hot_entries(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 1 };
	struct eng *e;
	enum { SMALL = 40, BIG_SETS = 24 };
	uint32_t nsmall;
	uint8_t *val, *buf;
	size_t vlen;
	char key[32];

	tu_region_open(r, 512 * 1024, &cfg);
	e = &r->e;
	nsmall = e->g.ring_size / (ENTRY_HDR_SIZE + 8 + SMALL);
	val = malloc(e->g.max_kv);
	buf = malloc(e->g.max_kv);
	assert_non_null(val);
	assert_non_null(buf);

	for (uint32_t i = 0; i < nsmall; i++)
		set_kv(e, "h", i, 1, SMALL, 0);
	for (uint32_t i = 0; i < BIG_SETS; i++) {
		size_t klen = tu_key(key, sizeof(key), "big", i);
		size_t len = e->g.max_kv - klen;

		/* Every small entry still cached is made hot again. */
		for (uint32_t k = 0; k < nsmall; k++)
			for (int n = 0; n < 3; n++)
				if (get_kv(e, "h", k, 1, SMALL) != 0)
					break;
		mkval(val, len, i, 2);
		assert_rc(eng_set(e, key, klen, val, len, 0), 0);
		assert_rc(eng_get(e, key, klen, buf, e->g.max_kv, &vlen, NULL),
			  0);
		assert_int_equal(vlen, len);
		assert_memory_equal(buf, val, len);
	}
	assert_true(tu_stats(e).moves > 0); /* hot entries were moved */
	tu_assert_all_clean(e);
	free(val);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_engine_peek_does_not_count_as_use),
		T(test_engine_touch_counts_as_access),
		T(test_engine_full_segment_evicts_cold_keeps_hot),
		T(test_engine_read_keys_survive_a_scan),
		T(test_engine_ring_wraparound_values_intact),
		T(test_engine_pool_exhaustion_evicts_not_fails),
		T(test_engine_max_kv_items_fit_among_hot_entries),
	};

	return cmocka_run_group_tests_name("engine-evict", tests, NULL, NULL);
}
