/*
 * test_engine_stats.c - unit tests of the cache engine (shared/engine.h):
 * iteration (it sees exactly the live set and stops when its callback
 * says so), listing by prefix (eng_scan: the same filters, one segment
 * per call, the callback outside the lock) and statistics (the counters add up, per segment and per
 * client, including gets made without the lock).
 */
#include "testutil.h"
#include "engine_fixture.h"

#define ITER_N 400

struct iter_seen {
	struct eng *e;
	uint32_t count;
	uint32_t seen[ITER_N];	 /* times each key number was seen */
	uint32_t expire[ITER_N]; /* the expiry each was seen with */
	int64_t last_in_seg[64]; /* last key number seen per segment */
	uint32_t bad;		 /* items that failed a check */
	uint32_t straddled;	 /* items split at the ring's end */
	uint32_t stop_after;	 /* return 7 after this many; 0 = never */
};

static size_t iter_val_len(uint32_t i)
{
	return 1 + (i * 37u) % 700u;
}

static int iter_collect(const struct eng_item *it, void *arg)
{
	struct iter_seen *s = arg;
	char key[64];
	uint8_t val[1024], want[1024];
	unsigned long i;
	char *end;

	s->count++;
	if (it->key_len[1] || it->val_len[1])
		s->straddled++;
	if (it->klen != it->key_len[0] + it->key_len[1] ||
	    it->vlen != it->val_len[0] + it->val_len[1] ||
	    it->klen >= sizeof(key) || it->vlen > sizeof(val)) {
		s->bad++;
		return 0;
	}
	memcpy(key, it->key[0], it->key_len[0]);
	memcpy(key + it->key_len[0], it->key[1], it->key_len[1]);
	key[it->klen] = '\0';
	memcpy(val, it->val[0], it->val_len[0]);
	memcpy(val + it->val_len[0], it->val[1], it->val_len[1]);

	if (strncmp(key, "it", 2) != 0) {
		s->bad++;
		return 0;
	}
	i = strtoul(key + 2, &end, 10);
	if (*end || i >= ITER_N || it->vlen != iter_val_len((uint32_t)i) ||
	    it->seg != eng_seg_of(s->e, key, it->klen) || it->seg >= 64) {
		s->bad++;
		return 0;
	}
	mkval(want, it->vlen, (uint32_t)i, 1);
	if (memcmp(val, want, it->vlen) != 0)
		s->bad++;
	/* Oldest first within a segment: keys were set in number order. */
	if ((int64_t)i <= s->last_in_seg[it->seg])
		s->bad++;
	s->last_in_seg[it->seg] = (int64_t)i;
	s->seen[i]++;
	s->expire[i] = it->expire;
	if (s->stop_after && s->count == s->stop_after)
		return 7;
	return 0;
}

static void iter_reset(struct iter_seen *s, struct eng *e)
{
	memset(s, 0, sizeof(*s));
	s->e = e;
	for (int j = 0; j < 64; j++)
		s->last_in_seg[j] = -1;
}

static void test_engine_iter_sees_exactly_live_set(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 8 };
	struct eng *e = &r->e;
	static struct iter_seen s;
	uint32_t t0, nlive = 0, half;

	tu_region_open(r, 2 * MiB, &cfg);
	t0 = eng_now(e);
	/* i % 4 == 0: TTL 5 (will expire); i % 4 == 1: TTL 1000; else none.
	 * i % 5 == 0: deleted. */
	for (uint32_t i = 0; i < ITER_N; i++)
		set_kv(e, "it", i, 1, iter_val_len(i),
		       i % 4 == 0   ? 5
		       : i % 4 == 1 ? 1000
				    : 0);
	for (uint32_t i = 0; i < ITER_N; i += 5) {
		char key[16];
		size_t klen = tu_key(key, sizeof(key), "it", i);

		assert_rc(eng_del(e, key, klen), 0);
	}
	eng_clock_set(e, t0 + 5);

	iter_reset(&s, e);
	assert_rc(eng_iter(e, 0, e->g.nseg, iter_collect, &s), 0);
	assert_int_equal(s.bad, 0);
	for (uint32_t i = 0; i < ITER_N; i++) {
		bool live = i % 5 != 0 && i % 4 != 0;

		assert_int_equal(s.seen[i], live ? 1 : 0);
		if (live) {
			nlive++;
			assert_int_equal(s.expire[i],
					 i % 4 == 1 ? t0 + 1000 : 0);
		}
	}
	assert_int_equal(s.count, nlive);

	/* Two adjacent ranges see the same set. */
	half = e->g.nseg / 2;
	iter_reset(&s, e);
	assert_rc(eng_iter(e, 0, half, iter_collect, &s), 0);
	assert_rc(eng_iter(e, half, e->g.nseg, iter_collect, &s), 0);
	assert_int_equal(s.bad, 0);
	assert_int_equal(s.count, nlive);
	for (uint32_t i = 0; i < ITER_N; i++)
		assert_true(s.seen[i] <= 1);
}

static void test_engine_iter_stops_on_callback_value(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 8 };
	struct eng *e = &r->e;
	static struct iter_seen s;

	tu_region_open(r, 2 * MiB, &cfg);
	for (uint32_t i = 0; i < 100; i++)
		set_kv(e, "it", i, 1, iter_val_len(i), 0);
	iter_reset(&s, e);
	s.stop_after = 3;
	assert_rc(eng_iter(e, 0, e->g.nseg, iter_collect, &s), 7);
	assert_int_equal(s.count, 3);
	assert_int_equal(s.bad, 0);
}

#define STATS_FIELDS (sizeof(struct eng_stats) / sizeof(uint64_t))
static_assert(sizeof(struct eng_stats) % sizeof(uint64_t) == 0,
	      "eng_stats is all uint64_t");

static void test_engine_stats_add_up(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 16 };
	struct eng *e = &r->e;
	enum { NKEYS = 500, NOPS = 6000 };
	static uint32_t ver[NKEYS]; /* 0: absent, else the live version */
	uint64_t rng = 7, hits = 0, misses = 0, sets = 0, overwrites = 0;
	uint64_t deletes = 0, live = 0;
	struct eng_stats tot, sum, one;
	uint64_t *ps = (uint64_t *)&sum, *po = (uint64_t *)&one;
	uint64_t *pt = (uint64_t *)&tot;

	tu_region_open(r, 4 * MiB, &cfg);
	memset(ver, 0, sizeof(ver));
	for (uint32_t n = 0; n < NOPS; n++) {
		uint32_t i = tu_below(&rng, NKEYS), op = tu_below(&rng, 10);
		char key[16];
		size_t klen = tu_key(key, sizeof(key), "s", i);

		if (op < 4) {
			uint32_t v = n + 1;

			set_kv(e, "s", i, v, 20 + i % 100, 0);
			sets++;
			if (ver[i])
				overwrites++;
			else
				live++;
			ver[i] = v;
		} else if (op < 8) {
			int rc = get_kv(e, "s", i, ver[i], 20 + i % 100);

			assert_rc(rc, ver[i] ? 0 : -ENOENT);
			if (ver[i])
				hits++;
			else
				misses++;
		} else {
			assert_rc(eng_del(e, key, klen), ver[i] ? 0 : -ENOENT);
			if (ver[i]) {
				deletes++;
				live--;
			}
			ver[i] = 0;
		}
	}

	tot = tu_stats(e);
	assert_int_equal(tot.evictions, 0); /* the region is big enough */
	assert_int_equal(tot.hits, hits);
	assert_int_equal(tot.misses, misses);
	assert_int_equal(tot.hits + tot.misses, hits + misses);
	assert_int_equal(tot.sets, sets);
	assert_int_equal(tot.overwrites, overwrites);
	assert_int_equal(tot.deletes, deletes);
	assert_int_equal(tot.entries, live);
	assert_int_equal(tot.segments, e->g.nseg);
	assert_int_equal(tot.bytes_total, (uint64_t)e->g.nseg * e->g.ring_size);
	assert_true(tot.bytes_used > 0 && tot.bytes_used <= tot.bytes_total);

	memset(&sum, 0, sizeof(sum));
	for (uint32_t s = 0; s < e->g.nseg; s++) {
		one = tu_seg_stats(e, s);
		assert_int_equal(one.segments, 1);
		assert_int_equal(one.bytes_total, e->g.ring_size);
		for (size_t f = 0; f < STATS_FIELDS; f++)
			ps[f] += po[f];
	}
	/* The segments count the gets that took the lock; the gets answered
	 * without it are counted in this client's line, and the totals are
	 * both.  Every other figure is the segments' sum. */
	assert_int_equal(sum.hits + e->ctr->hits, tot.hits);
	assert_int_equal(sum.misses + e->ctr->misses, tot.misses);
	assert_true(e->ctr->hits > 0 && e->ctr->misses > 0);
	sum.hits = tot.hits;
	sum.misses = tot.misses;
	for (size_t f = 0; f < STATS_FIELDS; f++)
		assert_int_equal(ps[f], pt[f]);
	assert_rc(eng_seg_stats(e, e->g.nseg, &one), -EINVAL);
}

/* Gets without the lock count in their client's line: clients attached
 * one after the other write different lines, clients whose ids are
 * LAYOUT_CLIENT_CTRS apart share one, and the totals are exact either way
 * and seen by every attachment. */
static void test_engine_unlocked_gets_count_per_client(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng b, c;
	const char *why = NULL;
	char buf[16];
	size_t n;

	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_attach(&b, r->base, r->size, 2, &why), 0);
	assert_rc(eng_attach(&c, r->base, r->size, 2 + LAYOUT_CLIENT_CTRS,
			     &why),
		  0);
	assert_ptr_not_equal(r->e.ctr, b.ctr);
	assert_ptr_equal(b.ctr, c.ctr);
	assert_rc(eng_set(&r->e, "k", 1, "v", 1, 0), 0);
	for (uint32_t i = 0; i < ENTRY_USE_MAX; i++) /* raise its use */
		assert_rc(eng_get(&r->e, "k", 1, buf, sizeof(buf), &n, NULL),
			  0);
	struct eng_stats before = tu_stats(&b);
	for (int i = 0; i < 10; i++)
		assert_rc(eng_get(&r->e, "k", 1, buf, sizeof(buf), &n, NULL),
			  0);
	for (int i = 0; i < 20; i++)
		assert_rc(eng_get(&b, "k", 1, buf, sizeof(buf), &n, NULL), 0);
	for (int i = 0; i < 30; i++)
		assert_rc(eng_get(&c, "k", 1, buf, sizeof(buf), &n, NULL), 0);
	for (int i = 0; i < 4; i++)
		assert_rc(eng_get(&c, "nope", 4, buf, sizeof(buf), &n, NULL),
			  -ENOENT);
	assert_int_equal(r->e.ctr->hits, 10);
	assert_int_equal(b.ctr->hits, 50);
	assert_int_equal(b.ctr->misses, 4);
	struct eng_stats after = tu_stats(&r->e);
	assert_int_equal(after.hits - before.hits, 60);
	assert_int_equal(after.misses - before.misses, 4);
	/* None of them took a lock: the segments did not count them. */
	struct eng_stats seg = tu_seg_stats(&r->e, eng_seg_of(&r->e, "k", 1));
	assert_int_equal(seg.hits, ENTRY_USE_MAX);
}

/* What eng_scan() passed on: each "a:N" / "b:N" key's count, checked. */
struct scan_seen {
	struct eng *e;
	uint32_t a[ITER_N], b[ITER_N];
	uint32_t count, bad, rewrite;
};

static int scan_collect(const struct eng_item *it, void *arg)
{
	struct scan_seen *s = arg;
	char key[64];
	unsigned long i;
	char *end;

	s->count++;
	if (it->klen >= sizeof(key) || it->key_len[0] != it->klen ||
	    it->key_len[1] || it->val_len[0] || it->val_len[1]) {
		s->bad++;
		return 0;
	}
	memcpy(key, it->key[0], it->klen);
	key[it->klen] = '\0';
	i = strtoul(key + 2, &end, 10);
	if (*end || i >= ITER_N || key[1] != ':' ||
	    it->seg != eng_seg_of(s->e, key, it->klen)) {
		s->bad++;
		return 0;
	}
	if (key[0] == 'a' && it->vlen == iter_val_len((uint32_t)i))
		s->a[i]++;
	else if (key[0] == 'b' && it->vlen == 1)
		s->b[i]++;
	else
		s->bad++;
	/* The segment is not locked: a write to it goes through. */
	if (s->rewrite && eng_set(s->e, key, it->klen, "x", 1, 0) != 0)
		s->bad++;
	return 0;
}

/* A whole scan; returns the number of calls, each checked. */
static uint32_t scan_whole(struct eng *e, const char *prefix,
			   struct scan_seen *s)
{
	struct eng_cursor cur = { 0 };
	uint32_t calls = 0;
	int rc;

	do {
		rc = eng_scan(e, &cur, prefix, strlen(prefix), scan_collect, s);
		calls++;
		assert_true(rc == 0 || rc == 1);
		assert_int_equal(cur.seg, calls);
	} while (rc == 0);
	return calls;
}

static void test_engine_scan_lists_by_prefix_as_iter_filters(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 8 };
	struct eng *e = &r->e;
	static struct scan_seen s;
	struct eng_wopts grace = { .ttl_s = 10, .grace_s = 20 };
	struct eng_cursor cur = { 0 };
	char key[32];
	uint32_t t0;

	tu_region_open(r, 2 * MiB, &cfg);
	t0 = eng_now(e);
	/* Values up to 700 bytes: some keys straddle the ring's end. */
	for (uint32_t i = 0; i < ITER_N; i++)
		set_kv(e, "a:", i, 1, iter_val_len(i), 0);
	for (uint32_t i = 0; i < 100; i++) {
		assert_rc(eng_set(e, key, tu_key(key, sizeof(key), "b:", i),
				  "y", 1, 0),
			  0);
		/* Gone by the scan: expired, soft-expired, flushed. */
		assert_rc(eng_set(e, key, tu_key(key, sizeof(key), "e:", i),
				  "y", 1, 5),
			  0);
		assert_rc(eng_store(e, key, tu_key(key, sizeof(key), "g:", i),
				    "y", 1, &grace, NULL),
			  0);
		assert_rc(eng_set(e, key, tu_key(key, sizeof(key), "n:", i),
				  "y", 1, 0),
			  0);
	}
	assert_rc(eng_ns_add(e, "n:", 2), 0);
	assert_rc(eng_ns_flush(e, "n:", 2), 0);
	eng_clock_set(e, t0 + 15);

	memset(&s, 0, sizeof(s));
	s.e = e;
	assert_int_equal(scan_whole(e, "a:", &s), e->g.nseg);
	assert_int_equal(s.bad, 0);
	assert_int_equal(s.count, ITER_N);
	for (uint32_t i = 0; i < ITER_N; i++)
		assert_int_equal(s.a[i], 1);

	memset(&s, 0, sizeof(s));
	s.e = e;
	scan_whole(e, "", &s);
	assert_int_equal(s.bad, 0);
	assert_int_equal(s.count, ITER_N + 100);

	/* The callback may write the segment it lists. */
	memset(&s, 0, sizeof(s));
	s.e = e;
	s.rewrite = 1;
	scan_whole(e, "b:", &s);
	assert_int_equal(s.bad, 0);
	assert_int_equal(s.count, 100);

	/* Done, and bad arguments; the cursor moves only on success. */
	cur.seg = e->g.nseg;
	assert_rc(eng_scan(e, &cur, NULL, 0, scan_collect, &s), 1);
	cur.seg = e->g.nseg + 1;
	assert_rc(eng_scan(e, &cur, NULL, 0, scan_collect, &s), -EINVAL);
	cur.seg = 0;
	assert_rc(eng_scan(e, &cur, NULL, 0, NULL, NULL), -EINVAL);
	assert_rc(eng_scan(e, &cur, NULL, 1, scan_collect, &s), -EINVAL);
	assert_rc(eng_scan(e, NULL, NULL, 0, scan_collect, &s), -EINVAL);
	assert_int_equal(cur.seg, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_engine_iter_sees_exactly_live_set),
		T(test_engine_iter_stops_on_callback_value),
		T(test_engine_scan_lists_by_prefix_as_iter_filters),
		T(test_engine_stats_add_up),
		T(test_engine_unlocked_gets_count_per_client),
	};

	return cmocka_run_group_tests_name("engine-stats", tests, NULL, NULL);
}
