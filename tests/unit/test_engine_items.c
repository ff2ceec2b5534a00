/*
 * test_engine_items.c - unit tests of the item model (shared/engine.h):
 * flags, versions (CAS), add / replace / cas / append / prepend, the
 * counters (incr, decr, with and without an initial value), namespaces
 * and stale-while-revalidate, each with the edge cases memcached
 * documents for its command.
 */
#include "testutil.h"
#include "engine_fixture.h"

/* Stores with options o; returns the error. */
static int put(struct eng *e, const char *key, const char *val,
	       const struct eng_wopts *o, uint64_t *cas)
{
	return eng_store(e, key, strlen(key), val, strlen(val), o, cas);
}

/* Asserts key holds val with flags, and returns its version. */
static uint64_t expect(struct eng *e, const char *key, const char *val,
		       uint32_t flags)
{
	struct eng_meta m;
	char buf[256];

	assert_rc(eng_get_ex(e, key, strlen(key), buf, sizeof(buf), &m), 0);
	assert_int_equal(m.vlen, strlen(val));
	assert_memory_equal(buf, val, m.vlen);
	assert_int_equal(m.flags, flags);
	return m.cas;
}

static void test_engine_flags_returned_by_every_read(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	struct eng_wopts o = { .flags = 0xdeadbeef };
	struct eng_item_probe {
		uint32_t flags;
		int n;
	} probe = { 0, 0 };
	char buf[64];
	size_t vlen;

	tu_region_open(r, MiB, &cfg);
	assert_rc(put(e, "k", "value", &o, NULL), 0);
	expect(e, "k", "value", 0xdeadbeef);
	/* The plain get still sees the value, past the flags word. */
	assert_rc(eng_get(e, "k", 1, buf, sizeof(buf), &vlen, NULL), 0);
	assert_int_equal(vlen, 5);
	assert_memory_equal(buf, "value", 5);
	assert_rc(eng_peek(e, "k", 1, buf, sizeof(buf), &vlen, NULL), 0);
	assert_memory_equal(buf, "value", 5);

	/* An overwrite with other flags, then none: in place or not, the
	 * value and the flags are the new ones. */
	o.flags = 7;
	assert_rc(put(e, "k", "v2", &o, NULL), 0);
	expect(e, "k", "v2", 7);
	assert_rc(put(e, "k", "a longer value than before", NULL, NULL), 0);
	expect(e, "k", "a longer value than before", 0);
	o.flags = 1;
	assert_rc(put(e, "k", "x", &o, NULL), 0);
	expect(e, "k", "x", 1);

	/* Iteration reports them. */
	int cb(const struct eng_item *it, void *arg)
	{
		struct eng_item_probe *p = arg;
		p->flags = it->flags;
		p->n++;
		return 0;
	}
	assert_rc(eng_iter(e, 0, e->g.nseg, cb, &probe), 0);
	assert_int_equal(probe.n, 1);
	assert_int_equal(probe.flags, 1);

	/* Reads that went without the lock return them too (the use count
	 * is at its maximum after a few reads). */
	for (int i = 0; i < 5; i++)
		expect(e, "k", "x", 1);
	struct eng_check_report rep;
	for (uint32_t s = 0; s < e->g.nseg; s++) {
		assert_rc(eng_check(e, s, false, &rep), 0);
		assert_int_equal(rep.problems, 0);
	}
}

static void test_engine_cas_versions(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	struct eng_wopts o = { .mode = ENG_CAS };
	uint64_t v1, v2, v3, got;

	tu_region_open(r, MiB, &cfg);
	assert_rc(put(e, "k", "one", NULL, &v1), 0);
	assert_true(v1 == expect(e, "k", "one", 0));
	/* Every write gives a new version, in place or not. */
	assert_rc(put(e, "k", "two", NULL, &v2), 0);
	assert_true(v2 != v1);
	assert_true(v2 == expect(e, "k", "two", 0));

	/* cas with an old version: changed since (-EEXIST), nothing stored. */
	o.cas = v1;
	assert_rc(put(e, "k", "three", &o, NULL), -EEXIST);
	expect(e, "k", "two", 0);
	/* With the current one: stored, and a new version. */
	o.cas = v2;
	assert_rc(put(e, "k", "three", &o, &v3), 0);
	assert_true(v3 != v2 && v3 != v1);
	assert_true(v3 == expect(e, "k", "three", 0));
	/* Again with the same version: it changed (our own write). */
	assert_rc(put(e, "k", "four", &o, NULL), -EEXIST);
	/* Gone: -ENOENT, distinct from changed. */
	assert_rc(eng_del(e, "k", 1), 0);
	o.cas = v3;
	assert_rc(put(e, "k", "five", &o, NULL), -ENOENT);
	tu_assert_miss(e, "k", 1);

	/* A touch keeps the version; the same value stored again does not. */
	assert_rc(put(e, "t", "same", NULL, &v1), 0);
	assert_rc(eng_touch(e, "t", 1, 100), 0);
	assert_true(v1 == expect(e, "t", "same", 0));
	assert_rc(put(e, "t", "same", NULL, &v2), 0);
	assert_true(v2 != v1);

	/* Versions are unique across keys and segments. */
	uint64_t seen[200];
	for (int i = 0; i < 200; i++) {
		char key[16];
		snprintf(key, sizeof(key), "u%d", i);
		assert_rc(put(e, key, "v", NULL, &seen[i]), 0);
	}
	qsort(seen, 200, sizeof(seen[0]), cmp_u64);
	for (int i = 1; i < 200; i++)
		assert_true(seen[i] != seen[i - 1]);

	/* Evacuation moves keep the version: fill the ring around a key in
	 * use and check its version is the one read before. */
	assert_rc(put(e, "hot", "h", NULL, &got), 0);
	for (int i = 0; i < 3; i++)
		expect(e, "hot", "h", 0);
	uint64_t before = expect(e, "hot", "h", 0);
	struct eng_stats st = tu_stats(e);
	for (uint32_t i = 0; tu_stats(e).moves == st.moves && i < 100000; i++) {
		set_kv(e, "fill", i, 1, 64, 0);
		if (i % 64 == 0)
			(void)eng_get_ex(e, "hot", 3, NULL, 0,
					 &(struct eng_meta){ 0 });
	}
	assert_true(tu_stats(e).moves > st.moves);
	struct eng_meta m;
	char b[8];
	if (eng_get_ex(e, "hot", 3, b, sizeof(b), &m) == 0)
		assert_true(m.cas == before);
}

static void test_engine_versions_survive_a_new_region(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	uint64_t v, w;

	tu_region_open(r, MiB, &cfg);
	assert_rc(put(e, "k", "old", NULL, &v), 0);
	uint64_t max = eng_version_max(e);
	assert_true(max >= v);
	/* A new region formatted at the same second, floored by what the
	 * old one issued (a snapshot load does this): no version repeats. */
	tu_region_close(r);
	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_version_floor(e, max), 0);
	for (int i = 0; i < 50; i++) {
		assert_rc(put(e, "k", "new", NULL, &w), 0);
		assert_true(w > max);
	}
	/* Without a floor, versions start at unix seconds << 32. */
	assert_true(w >> 32 >= (uint64_t)eng_now(e) - 5);
}

static void test_engine_add_replace(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	struct eng_wopts add = { .mode = ENG_ADD, .flags = 3 },
			 rep = { .mode = ENG_REPLACE, .flags = 4 };
	uint32_t t0;

	tu_region_open(r, MiB, &cfg);
	t0 = eng_now(e);
	assert_rc(put(e, "k", "first", &add, NULL), 0);
	assert_rc(put(e, "k", "second", &add, NULL), -EEXIST);
	expect(e, "k", "first", 3);
	assert_rc(put(e, "absent", "x", &rep, NULL), -ENOENT);
	tu_assert_miss(e, "absent", 6);
	assert_rc(put(e, "k", "third", &rep, NULL), 0);
	expect(e, "k", "third", 4);

	/* An expired item is absent: add stores, replace refuses. */
	add.ttl_s = 5;
	assert_rc(put(e, "e", "short", &add, NULL), 0);
	eng_clock_set(e, t0 + 5);
	assert_rc(put(e, "e", "again", &rep, NULL), -ENOENT);
	assert_rc(put(e, "e", "again", &add, NULL), 0);
	expect(e, "e", "again", 3);
	/* A deleted one too. */
	assert_rc(eng_del(e, "k", 1), 0);
	assert_rc(put(e, "k", "back", &add, NULL), 0);
}

static void test_engine_append_prepend(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	struct eng_wopts app = { .mode = ENG_APPEND, .flags = 99, .ttl_s = 1 },
			 pre = { .mode = ENG_PREPEND },
			 o = { .flags = 5, .ttl_s = 100 };
	uint32_t ttl;
	uint64_t v1, v2;

	tu_region_open(r, 4 * MiB, &cfg);
	assert_rc(put(e, "none", "x", &app, NULL), -ENOENT);
	assert_rc(put(e, "none", "x", &pre, NULL), -ENOENT);
	tu_assert_miss(e, "none", 4);

	assert_rc(put(e, "k", "mid", &o, &v1), 0);
	assert_rc(put(e, "k", "-end", &app, &v2), 0);
	assert_true(v2 != v1);
	assert_rc(put(e, "k", "start-", &pre, NULL), 0);
	/* Flags and expiry are the item's, not the append's. */
	expect(e, "k", "start-mid-end", 5);
	assert_rc(eng_ttl(e, "k", 1, &ttl), 0);
	assert_int_equal(ttl, 100);

	/* Many appends: in place into the slack and by growing, each
	 * keeping everything before it. */
	char want[8192];
	size_t n = 0;
	assert_rc(put(e, "log", "", NULL, NULL), 0);
	for (int i = 0; i < 600; i++) {
		char piece[16];
		int l = snprintf(piece, sizeof(piece), "%d,", i);
		assert_rc(eng_store(e, "log", 3, piece, (size_t)l, &app, NULL),
			  0);
		memcpy(want + n, piece, (size_t)l);
		n += (size_t)l;
	}
	char *buf = malloc(n + 16);
	size_t vlen;
	assert_rc(eng_get(e, "log", 3, buf, n + 16, &vlen, NULL), 0);
	assert_int_equal(vlen, n);
	assert_memory_equal(buf, want, n);
	free(buf);

	/* A value over 4 KiB (copied on the heap) prepended. */
	size_t big = 6000;
	uint8_t *bv = malloc(big), *got = malloc(big + 8);
	tu_fill(bv, big, 42);
	assert_rc(eng_set(e, "big", 3, bv + 1, big - 1, 0), 0);
	assert_rc(eng_store(e, "big", 3, bv, 1, &pre, NULL), 0);
	assert_rc(eng_get(e, "big", 3, got, big + 8, &vlen, NULL), 0);
	assert_int_equal(vlen, big);
	assert_memory_equal(got, bv, big);
	free(bv);
	free(got);

	/* Past max_kv: -E2BIG and the item is unchanged. */
	uint8_t *huge = calloc(1, e->g.max_kv);
	assert_rc(put(e, "h", "abc", NULL, NULL), 0);
	assert_rc(eng_store(e, "h", 1, huge, e->g.max_kv - 3, &app, NULL),
		  -E2BIG);
	expect(e, "h", "abc", 0);
	free(huge);
}

static void test_engine_counters(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	struct eng_wopts init = { .ttl_s = 30, .flags = 8 };
	uint64_t v = 0, c1, c2;
	uint32_t ttl;

	tu_region_open(r, MiB, &cfg);
	/* Missing without init: -ENOENT, nothing created. */
	assert_rc(eng_arith(e, "n", 1, false, 1, NULL, 0, &v, NULL), -ENOENT);
	tu_assert_miss(e, "n", 1);

	assert_rc(put(e, "n", "10", NULL, &c1), 0);
	assert_rc(eng_arith(e, "n", 1, false, 5, NULL, 0, &v, &c2), 0);
	assert_int_equal(v, 15);
	assert_true(c2 != c1);
	expect(e, "n", "15", 0);
	assert_rc(eng_arith(e, "n", 1, true, 6, NULL, 0, &v, NULL), 0);
	assert_int_equal(v, 9); /* shorter: the value is its digits */
	expect(e, "n", "9", 0);
	/* decr stops at 0. */
	assert_rc(eng_arith(e, "n", 1, true, 100, NULL, 0, &v, NULL), 0);
	assert_int_equal(v, 0);
	expect(e, "n", "0", 0);
	/* incr wraps at 2^64. */
	assert_rc(put(e, "w", "18446744073709551615", NULL, NULL), 0);
	assert_rc(eng_arith(e, "w", 1, false, 2, NULL, 0, &v, NULL), 0);
	assert_int_equal(v, 1);
	expect(e, "w", "1", 0);
	/* memcached pads a shortened value with spaces, and its strtoull
	 * skips leading ones: still numbers. */
	assert_rc(put(e, "p", "42  ", NULL, NULL), 0);
	assert_rc(eng_arith(e, "p", 1, false, 1, NULL, 0, &v, NULL), 0);
	assert_int_equal(v, 43);
	assert_rc(put(e, "p", "  7", NULL, NULL), 0);
	assert_rc(eng_arith(e, "p", 1, false, 1, NULL, 0, &v, NULL), 0);
	assert_int_equal(v, 8);
	assert_rc(put(e, "p", "1                              ", NULL, NULL),
		  0);
	assert_rc(eng_arith(e, "p", 1, false, 1, NULL, 0, &v, NULL), 0);
	assert_int_equal(v, 2);
	/* strtoull's sign and whitespace, as memcached's incr reads them. */
	assert_rc(put(e, "p", "+41", NULL, NULL), 0);
	assert_rc(eng_arith(e, "p", 1, false, 1, NULL, 0, &v, NULL), 0);
	assert_int_equal(v, 42);
	assert_rc(put(e, "p", "\t9\r\n", NULL, NULL), 0);
	assert_rc(eng_arith(e, "p", 1, false, 1, NULL, 0, &v, NULL), 0);
	assert_int_equal(v, 10);

	/* Not a number: -EDOM, and nothing changes. */
	static const char *const bad[] = { "abc",
					   "+",
					   "+-1",
					   "4 2",
					   "",
					   "-1",
					   "1.5",
					   " ",
					   "12a",
					   "18446744073709551616",
					   "123456789012345678901234567890" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_rc(put(e, "b", bad[i], NULL, &c1), 0);
		assert_rc(eng_arith(e, "b", 1, false, 1, NULL, 0, &v, NULL),
			  -EDOM);
		assert_rc(eng_arith(e, "b", 1, true, 1, &init, 5, &v, NULL),
			  -EDOM);
		assert_true(c1 == expect(e, "b", bad[i], 0));
	}

	/* With init: a missing key is created at init then incremented, as
	 * ngx.shared.DICT:incr(key, 1, 0) returns 1. */
	assert_rc(eng_arith(e, "c", 1, false, 1, &init, 0, &v, NULL), 0);
	assert_int_equal(v, 1);
	expect(e, "c", "1", 8);
	assert_rc(eng_ttl(e, "c", 1, &ttl), 0);
	assert_int_equal(ttl, 30);
	/* Present: init is ignored, the TTL kept. */
	assert_rc(eng_arith(e, "c", 1, false, 1, &init, 100, &v, NULL), 0);
	assert_int_equal(v, 2);
	assert_rc(eng_arith(e, "d", 1, true, 3, &init, 10, &v, NULL), 0);
	assert_int_equal(v, 7);
	/* Flags survive an increment. */
	struct eng_wopts fl = { .flags = 77 };
	assert_rc(put(e, "f", "1", &fl, NULL), 0);
	assert_rc(eng_arith(e, "f", 1, false, 999, NULL, 0, &v, NULL), 0);
	expect(e, "f", "1000", 77);
}

static void test_engine_namespace_flush(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 8 };
	struct eng *e = &r->e, e2;
	struct eng_ns_info ns[4];
	char key[32];

	tu_region_open(r, 4 * MiB, &cfg);
	assert_rc(eng_attach(&e2, r->base, r->size, 2, NULL), 0);
	assert_rc(put(e, "user:1:a", "before", NULL, NULL), 0);
	assert_rc(eng_ns_add(e, "user:1:", 7), 0);
	assert_rc(eng_ns_add(e, "user:1:", 7), -EEXIST);
	assert_rc(eng_ns_add(e, "", 0), -EINVAL);
	assert_rc(eng_ns_add(e, key, LAYOUT_NS_PREFIX_MAX + 1), -EINVAL);
	assert_rc(eng_ns_flush(e, "nope:", 5), -ENOENT);
	/* Registering does not drop what is there. */
	expect(e, "user:1:a", "before", 0);

	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "user:1:%d", i);
		assert_rc(put(e, key, "v", NULL, NULL), 0);
		snprintf(key, sizeof(key), "user:2:%d", i);
		assert_rc(put(e, key, "w", NULL, NULL), 0);
	}
	struct eng_stats st = tu_stats(e);
	assert_rc(eng_ns_flush(e, "user:1:", 7), 0);
	/* O(1): the flush touched no entry. */
	assert_int_equal(tu_stats(e).entries, st.entries);
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "user:1:%d", i);
		tu_assert_miss(i % 2 ? e : &e2, key, strlen(key));
		snprintf(key, sizeof(key), "user:2:%d", i);
		tu_assert_value(&e2, key, strlen(key), "w", 1);
	}
	tu_assert_miss(e, "user:1:a", 8);
	/* Lazily reclaimed: the reads above took the entries out. */
	assert_true(tu_stats(e).entries < st.entries);
	/* New writes after the flush live. */
	assert_rc(put(e, "user:1:new", "fresh", NULL, NULL), 0);
	expect(&e2, "user:1:new", "fresh", 0);

	/* Overlapping namespaces: flushing the outer one drops the inner
	 * one's keys too; flushing the inner one leaves the outer's. */
	assert_rc(eng_ns_add(e, "user:", 5), 0);
	assert_rc(put(e, "user:1:x", "x", NULL, NULL), 0);
	assert_rc(put(e, "user:9", "y", NULL, NULL), 0);
	assert_rc(eng_ns_flush(e, "user:1:", 7), 0);
	tu_assert_miss(e, "user:1:x", 8);
	tu_assert_value(e, "user:9", 6, "y", 1);
	assert_rc(put(e, "user:1:x", "x2", NULL, NULL), 0);
	assert_rc(eng_ns_flush(e, "user:", 5), 0);
	tu_assert_miss(e, "user:1:x", 8);
	tu_assert_miss(e, "user:9", 6);
	tu_assert_miss(e, "user:1:new", 10);

	/* Listing skips flushed entries; the namespace list names both. */
	assert_rc(put(e, "user:live", "l", NULL, NULL), 0);
	int n = 0;
	int cb(const struct eng_item *it, void *arg)
	{
		(void)it;
		(*(int *)arg)++;
		return 0;
	}
	assert_rc(eng_iter(e, 0, e->g.nseg, cb, &n), 0);
	/* The user:2: keys went with "user:" too: only the new one. */
	assert_int_equal(n, 1);
	assert_int_equal(eng_ns_list(e, ns, 4), 2);

	/* Unregistered: off the list, not flushable. */
	assert_rc(eng_ns_del(e, "user:1:", 7), 0);
	assert_rc(eng_ns_flush(e, "user:1:", 7), -ENOENT);
	assert_rc(eng_ns_del(e, "user:1:", 7), -ENOENT);
	assert_int_equal(eng_ns_list(e, ns, 4), 1);
	assert_rc(eng_ns_add(e, "user:1:", 7), 0);
	assert_int_equal(eng_ns_list(e, ns, 4), 2);
}

/* Unregistering drops the namespace's keys, and neither it nor
 * registering the prefix again brings back a flushed key or hides one
 * written since. */
static void test_engine_namespace_del_and_readd(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 2 };
	struct eng *e = &r->e;

	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_ns_add(e, "u:", 2), 0);
	assert_rc(put(e, "u:old", "1", NULL, NULL), 0);
	assert_rc(put(e, "u:old2", "2", NULL, NULL), 0);
	assert_rc(eng_ns_flush(e, "u:", 2), 0);
	tu_assert_miss(e, "u:old", 5); /* reclaimed by this read */
	assert_rc(put(e, "u:mid", "3", NULL, NULL), 0);
	/* u:old2 is still in the ring, unread: it must stay gone. */
	assert_rc(eng_ns_del(e, "u:", 2), 0);
	tu_assert_miss(e, "u:old2", 6);
	tu_assert_miss(e, "u:mid", 5); /* unregistering drops them */
	assert_rc(put(e, "u:new", "4", NULL, NULL), 0);
	tu_assert_value(e, "u:new", 5, "4", 1);
	/* Registered again: what was written meanwhile stays. */
	assert_rc(eng_ns_add(e, "u:", 2), 0);
	tu_assert_value(e, "u:new", 5, "4", 1);
	tu_assert_miss(e, "u:old2", 6);
	assert_rc(eng_ns_flush(e, "u:", 2), 0);
	tu_assert_miss(e, "u:new", 5);

	/* Slots: half the table, unregistered ones included. */
	uint32_t n = 1;
	for (int rc = 0; rc == 0; n++) {
		char p[16];
		int l = snprintf(p, sizeof(p), "p%u:", n);
		rc = eng_ns_add(e, p, (size_t)l);
		if (rc) {
			assert_rc(rc, -ENOSPC);
			break;
		}
		if (n % 2)
			assert_rc(eng_ns_del(e, p, (size_t)l), 0);
	}
	assert_int_equal(n, LAYOUT_NS_SLOTS / 2);
}

/* A prefix flushed, unregistered and registered again: what was written
 * while it was unregistered stays, what the flush dropped stays gone. */
static void
test_engine_namespace_readd_keeps_keys_written_meanwhile(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;

	tu_region_open(r, 4 * MiB, &cfg);
	assert_rc(eng_ns_add(e, "t:", 2), 0);
	assert_rc(put(e, "t:old", "o", NULL, NULL), 0);
	assert_rc(eng_ns_flush(e, "t:", 2), 0);
	assert_rc(eng_ns_del(e, "t:", 2), 0);
	assert_rc(put(e, "t:meanwhile", "m", NULL, NULL), 0);
	assert_rc(eng_ns_add(e, "t:", 2), 0);
	tu_assert_value(e, "t:meanwhile", 11, "m", 1);
	tu_assert_miss(e, "t:old", 5);
	assert_rc(eng_ns_flush(e, "t:", 2), 0);
	tu_assert_miss(e, "t:meanwhile", 11);
}

static void test_engine_stale_while_revalidate(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e, e2;
	struct eng_wopts o = { .ttl_s = 10, .grace_s = 20 };
	struct eng_flight f1, f2;
	struct eng_meta m;
	char buf[32];
	uint32_t t0;

	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_attach(&e2, r->base, r->size, 2, NULL), 0);
	t0 = eng_now(e);
	assert_rc(put(e, "k", "v1", &o, NULL), 0);
	/* Fresh: a hit for everyone. */
	assert_rc(eng_get_or_claim_ex(e, "k", 1, buf, sizeof(buf), &m, &f1), 0);
	assert_false(m.stale);

	/* Past the TTL, in the grace: plain reads miss; the first
	 * get_or_claim gets the stale value and the reload, the second the
	 * stale value and no wait. */
	eng_clock_set(e, t0 + 12);
	tu_assert_miss(e, "k", 1);
	assert_rc(eng_get_or_claim_ex(e, "k", 1, buf, sizeof(buf), &m, &f1),
		  ENG_LOAD);
	assert_true(m.stale);
	assert_memory_equal(buf, "v1", 2);
	assert_rc(eng_get_or_claim_ex(&e2, "k", 1, buf, sizeof(buf), &m, &f2),
		  0);
	assert_true(m.stale);
	assert_memory_equal(buf, "v1", 2);
	/* The reload stores and ends the flight: fresh again. */
	assert_rc(put(e, "k", "v2", &o, NULL), 0);
	eng_flight_done(e, &f1);
	assert_rc(eng_get_or_claim_ex(&e2, "k", 1, buf, sizeof(buf), &m, &f2),
		  0);
	assert_false(m.stale);
	assert_memory_equal(buf, "v2", 2);

	/* Every read reports the soft expiry as the item's expiry: when
	 * reads stop serving it, not when its grace ends. */
	uint32_t ttl = 0;
	assert_rc(eng_ttl(e, "k", 1, &ttl), 0);
	assert_int_equal(ttl, 10);
	assert_rc(eng_get_ex(e, "k", 1, buf, sizeof(buf), &m), 0);
	assert_int_equal(m.expire, eng_now(e) + 10);
	/* A touch gives it a plain TTL: no grace, no soft expiry left. */
	assert_rc(eng_touch(e, "k", 1, 100), 0);
	eng_clock_set(e, eng_now(e) + 50);
	tu_assert_value(e, "k", 1, "v2", 2);
	assert_rc(eng_ttl(e, "k", 1, &ttl), 0);
	assert_int_equal(ttl, 50);
	assert_rc(eng_touch(e, "k", 1, 0), 0);
	eng_clock_set(e, eng_now(e) + 1000);
	tu_assert_value(e, "k", 1, "v2", 2);
	assert_rc(put(e, "k", "v2", &o, NULL), 0);
	t0 = eng_now(e) - 12;

	/* Past the grace: gone for everyone, a plain miss and load. */
	eng_clock_set(e, t0 + 12 + 31);
	assert_rc(eng_get_or_claim_ex(e, "k", 1, buf, sizeof(buf), &m, &f1),
		  ENG_LOAD);
	assert_false(m.stale);
	eng_flight_done(e, &f1);
	tu_assert_miss(e, "k", 1);
}

static void test_engine_inspect_changes_nothing(void **state)
{
	struct tu_region *r = *state;
	struct eng_wopts o = { .flags = 7, .ttl_s = 10, .grace_s = 20 };
	struct eng *e = &r->e;
	struct eng_info in;
	struct eng_flight f;
	struct eng_meta m;
	char buf[32];
	uint64_t cas;

	tu_region_open(r, MiB, NULL);
	assert_rc(eng_inspect(e, "k", 1, NULL, 0, &in), -ENOENT);
	assert_rc(put(e, "k", "v1", &o, &cas), 0);
	assert_rc(eng_inspect(e, "k", 1, buf, sizeof(buf), &in), 0);
	assert_memory_equal(buf, "v1", 2);
	assert_int_equal(in.cas, cas);
	assert_int_equal(in.vlen, 2);
	assert_int_equal(in.flags, 7);
	assert_int_equal(in.soft, eng_now(e) + 10);
	assert_int_equal(in.expire, eng_now(e) + 30);
	assert_true(in.size > 3);
	assert_false(in.stale);
	/* Not a read: the use count stays until a get. */
	assert_int_equal(in.use, 0);
	assert_rc(eng_inspect(e, "k", 1, buf, 1, &in), -ENOBUFS);
	assert_int_equal(in.vlen, 2);
	tu_assert_value(e, "k", 1, "v1", 2);
	assert_rc(eng_inspect(e, "k", 1, NULL, 0, &in), 0);
	assert_int_equal(in.use, 1);
	/* Past its soft expiry: still found, as stale, and still stale for
	 * get_or_claim afterwards. */
	eng_clock_set(e, eng_now(e) + 12);
	assert_rc(eng_inspect(e, "k", 1, NULL, 0, &in), 0);
	assert_true(in.stale);
	assert_rc(eng_get_or_claim_ex(e, "k", 1, buf, sizeof(buf), &m, &f),
		  ENG_LOAD);
	assert_true(m.stale);
	eng_flight_done(e, &f);
}

static void test_engine_invalidate_marks_stale(void **state)
{
	struct tu_region *r = *state;
	struct eng_wopts o = { .flags = 3, .ttl_s = 100 };
	struct eng *e = &r->e, e2;
	struct eng_inval iv = { 0 };
	struct eng_flight f1, f2;
	struct eng_info in;
	struct eng_meta m;
	char buf[32];
	uint64_t cas, cas2;

	tu_region_open(r, MiB, NULL);
	assert_rc(eng_attach(&e2, r->base, r->size, 2, NULL), 0);
	assert_rc(eng_invalidate(e, "k", 1, &iv, NULL), -ENOENT);
	assert_rc(put(e, "k", "v1", &o, &cas), 0);
	/* A CAS that does not match changes nothing. */
	iv.cas = cas + 1;
	assert_rc(eng_invalidate(e, "k", 1, &iv, NULL), -EEXIST);
	tu_assert_value(e, "k", 1, "v1", 2);
	iv.cas = cas;
	assert_rc(eng_invalidate(e, "k", 1, &iv, &cas2), 0);
	assert_true(cas2 > cas);
	/* Plain reads miss it; get_or_claim serves it stale, with its
	 * flags, and hands the reload to the first caller only. */
	tu_assert_miss(e, "k", 1);
	assert_rc(eng_get_or_claim_ex(&e2, "k", 1, buf, sizeof(buf), &m, &f2),
		  ENG_LOAD);
	assert_true(m.stale);
	assert_int_equal(m.flags, 3);
	assert_int_equal(m.cas, cas2);
	assert_memory_equal(buf, "v1", 2);
	assert_rc(eng_get_or_claim_ex(e, "k", 1, buf, sizeof(buf), &m, &f1), 0);
	assert_true(m.stale);
	/* The hard expiry is kept; with set_ttl it is replaced. */
	assert_rc(eng_inspect(e, "k", 1, NULL, 0, &in), 0);
	assert_int_equal(in.expire, eng_now(e) + 100);
	iv = (struct eng_inval){ .set_ttl = true, .ttl_s = 5 };
	assert_rc(eng_invalidate(e, "k", 1, &iv, &cas), 0);
	assert_true(cas > cas2);
	assert_rc(eng_inspect(e, "k", 1, NULL, 0, &in), 0);
	assert_int_equal(in.expire, eng_now(e) + 5);
	assert_true(in.stale);
	/* A write from an older read is kept as stale with cas_older, with
	 * its own value and flags; refused without. */
	iv = (struct eng_inval){ .cas = cas2,
				 .set_value = true,
				 .val = "v0",
				 .vlen = 2,
				 .flags = 9 };
	assert_rc(eng_invalidate(e, "k", 1, &iv, NULL), -EEXIST);
	iv.cas_older = true;
	assert_rc(eng_invalidate(e, "k", 1, &iv, NULL), 0);
	assert_rc(eng_inspect(e, "k", 1, buf, sizeof(buf), &in), 0);
	assert_memory_equal(buf, "v0", 2);
	assert_int_equal(in.flags, 9);
	assert_true(in.stale);
	/* A conditional rewrite with fresh: found although stale (a CAS
	 * store is not), and fresh afterwards. */
	assert_rc(eng_inspect(e, "k", 1, NULL, 0, &in), 0);
	struct eng_wopts co = { .mode = ENG_CAS, .cas = in.cas };
	assert_rc(put(e, "k", "v3", &co, NULL), -ENOENT);
	iv = (struct eng_inval){ .cas = in.cas,
				 .set_ttl = true,
				 .set_value = true,
				 .val = "v3",
				 .vlen = 2,
				 .fresh = true };
	assert_rc(eng_invalidate(e, "k", 1, &iv, NULL), 0);
	tu_assert_value(e, "k", 1, "v3", 2);
	assert_rc(eng_inspect(e, "k", 1, NULL, 0, &in), 0);
	assert_false(in.stale);
	assert_int_equal(in.expire, 0);
	/* The reload stores: fresh for everyone. */
	assert_rc(put(e, "k", "v2", NULL, NULL), 0);
	eng_flight_done(&e2, &f2);
	tu_assert_value(e, "k", 1, "v2", 2);
	/* Past its hard expiry it is gone. */
	iv = (struct eng_inval){ .set_ttl = true, .ttl_s = 5 };
	assert_rc(eng_invalidate(e, "k", 1, &iv, NULL), 0);
	eng_clock_set(e, eng_now(e) + 6);
	assert_rc(eng_inspect(e, "k", 1, NULL, 0, &in), -ENOENT);
	assert_rc(eng_invalidate(e, "k", 1, &iv, NULL), -ENOENT);
}

static void test_engine_flight_claim_on_present_key(void **state)
{
	struct tu_region *r = *state;
	struct eng *e = &r->e, e2;
	struct eng_flight f1, f2;
	struct eng_meta m;
	char buf[32];

	tu_region_open(r, MiB, NULL);
	assert_rc(eng_attach(&e2, r->base, r->size, 2, NULL), 0);
	assert_rc(put(e, "k", "v1", NULL, NULL), 0);
	assert_rc(eng_flight_claim(e, "k", 1, &f1), ENG_LOAD);
	assert_rc(eng_flight_claim(&e2, "k", 1, &f2), ENG_WAIT);
	/* The key stays readable meanwhile. */
	tu_assert_value(&e2, "k", 1, "v1", 2);
	assert_rc(eng_flight_wait(&e2, &f2, 1), -ETIMEDOUT);
	/* A miss meanwhile waits for the same load. */
	assert_rc(eng_del(e, "k", 1), 0);
	assert_rc(eng_get_or_claim_ex(&e2, "k", 1, buf, sizeof(buf), &m, &f2),
		  ENG_WAIT);
	eng_flight_done(e, &f1);
	assert_rc(eng_flight_wait(&e2, &f2, 1000), 0);
	assert_rc(eng_flight_claim(&e2, "k", 1, &f2), ENG_LOAD);
	eng_flight_done(&e2, &f2);
}

static void test_engine_lease_blocked_namespace(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	struct eng_lease before, during, outside;
	struct eng_wopts o = { .mode = ENG_ADD };

	tu_region_open(r, 4 * MiB, &cfg);
	assert_rc(eng_ns_block(e, "t:", 2, true), -ENOENT);
	assert_rc(eng_ns_add(e, "t:", 2), 0);
	assert_rc(eng_lease_begin(e, "t:a", 3, &before), 0);
	/* The near cache's outage: block, then flush. */
	assert_rc(eng_ns_block(e, "t:", 2, true), 0);
	assert_rc(eng_ns_flush(e, "t:", 2), 0);
	assert_rc(eng_lease_begin(e, "t:b", 3, &during), 0);
	assert_rc(eng_lease_begin(e, "u:c", 3, &outside), 0);
	o.lease = &before;
	assert_rc(put(e, "t:a", "v", &o, NULL), -ESTALE);
	o.lease = &during;
	assert_rc(put(e, "t:b", "v", &o, NULL), -ESTALE);
	/* Keys outside the prefix fill. */
	o.lease = &outside;
	assert_rc(put(e, "u:c", "v", &o, NULL), 0);
	/* Under it, no write makes a value: a copy made while invalidations
	 * may be lost could be left stale.  The writes that would create are
	 * refused; those that need the key find it gone with the flush. */
	static const struct {
		enum eng_mode mode;
		int rc;
	} modes[] = { { ENG_SET, -ESTALE },	{ ENG_ADD, -ESTALE },
		      { ENG_REPLACE, -ENOENT }, { ENG_CAS, -ENOENT },
		      { ENG_APPEND, -ENOENT },	{ ENG_PREPEND, -ENOENT } };
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		struct eng_wopts w = { .mode = modes[i].mode, .cas = 1 };

		assert_rc(put(e, "t:plain", "p", &w, NULL), modes[i].rc);
	}
	struct eng_mitem mi[2] = { { "t:m", 3, "v", 1 }, { "u:m", 3, "v", 1 } };
	int mrc[2];
	assert_rc(eng_mset(e, 2, mi, NULL, mrc, NULL), 0);
	assert_rc(mrc[0], -ESTALE);
	assert_rc(mrc[1], 0);
	struct eng_wopts init = { .ttl_s = 0 };
	uint64_t v;
	assert_rc(eng_arith(e, "t:n", 3, false, 1, NULL, 0, &v, NULL), -ENOENT);
	assert_rc(eng_arith(e, "t:n", 3, false, 1, &init, 5, &v, NULL),
		  -ESTALE);
	struct eng_resv rv;
	assert_rc(eng_reserve(e, "t:r", 3, 8, 0, &rv), -ESTALE);
	struct eng_inval iv = { .set_value = true, .val = "s", .vlen = 1 };
	assert_rc(eng_invalidate(e, "t:plain", 7, &iv, NULL), -ENOENT);
	/* Deletes and touches go on (there is nothing to find). */
	assert_rc(eng_del(e, "t:plain", 7), -ENOENT);
	assert_rc(eng_touch(e, "t:plain", 7, 10), -ENOENT);
	tu_assert_miss(e, "t:plain", 7);
	tu_assert_miss(e, "t:m", 3);
	tu_assert_miss(e, "t:n", 3);
	tu_assert_miss(e, "t:a", 3);
	tu_assert_miss(e, "t:b", 3);
	expect(e, "u:m", "v", 0);
	/* Back: flush again, unblock; a lease begun while blocked stays
	 * void, a new one fills, and plain writes store again. */
	assert_rc(eng_ns_flush(e, "t:", 2), 0);
	assert_rc(eng_ns_block(e, "t:", 2, false), 0);
	assert_rc(put(e, "t:plain", "p", NULL, NULL), 0);
	expect(e, "t:plain", "p", 0);
	o.lease = &during;
	assert_rc(put(e, "t:b", "v", &o, NULL), -ESTALE);
	assert_rc(eng_lease_begin(e, "t:b", 3, &during), 0);
	assert_rc(put(e, "t:b", "v2", &o, NULL), 0);
	expect(e, "t:b", "v2", 0);
	/* Blocked, it is still registered. */
	struct eng_ns_info ns[2];
	assert_int_equal(eng_ns_list(e, ns, 2), 1);
}

/* A deletion anywhere in the key's segment voids a lease: an eviction
 * or a store does not. */
static void test_engine_lease_voided_by_deletions_only(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 1 };
	struct eng *e = &r->e;
	struct eng_lease l;
	struct eng_wopts o = { .mode = ENG_ADD, .lease = &l };
	struct eng_inval inv = { 0 };

	tu_region_open(r, 4 * MiB, &cfg);
	assert_rc(eng_lease_begin(e, "k", 1, &l), 0);
	assert_rc(put(e, "other", "x", NULL, NULL), 0);
	assert_rc(put(e, "k", "v", &o, NULL), 0);
	assert_rc(eng_del(e, "k", 1), 0);

	assert_rc(eng_lease_begin(e, "k", 1, &l), 0);
	assert_rc(eng_del(e, "other", 5), 0); /* same (only) segment */
	assert_rc(put(e, "k", "v", &o, NULL), -ESTALE);

	assert_rc(eng_lease_begin(e, "k", 1, &l), 0);
	assert_rc(put(e, "other", "x", NULL, NULL), 0);
	assert_rc(eng_invalidate(e, "other", 5, &inv, NULL), 0);
	assert_rc(put(e, "k", "v", &o, NULL), -ESTALE);

	assert_rc(eng_lease_begin(e, "k", 1, &l), 0);
	assert_rc(eng_clear(e), 0);
	assert_rc(put(e, "k", "v", &o, NULL), -ESTALE);
	tu_assert_miss(e, "k", 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_engine_flags_returned_by_every_read),
		T(test_engine_cas_versions),
		T(test_engine_versions_survive_a_new_region),
		T(test_engine_add_replace),
		T(test_engine_append_prepend),
		T(test_engine_counters),
		T(test_engine_namespace_flush),
		T(test_engine_namespace_del_and_readd),
		T(test_engine_namespace_readd_keeps_keys_written_meanwhile),
		T(test_engine_stale_while_revalidate),
		T(test_engine_inspect_changes_nothing),
		T(test_engine_invalidate_marks_stale),
		T(test_engine_flight_claim_on_present_key),
		T(test_engine_lease_blocked_namespace),
		T(test_engine_lease_voided_by_deletions_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
