/*
 * test_engine_setget.c - unit tests of the cache engine (shared/engine.h):
 * get, set, peek, del and clear: hits and misses, keys whose index tags
 * collide or that share a bucket chain (and stay distinct when moved by
 * evacuation), copying values out, short buffers, empty values,
 * overwrites, peek leaving the counters alone, and the limits: huge
 * entries, key lengths, empty keys, NULL pointers.
 *
 * hash.h is used only to find keys whose tags or buckets collide.
 */
#include "testutil.h"
#include "engine_fixture.h"

static void test_engine_get_hits_and_misses(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	struct eng_stats st;

	tu_region_open(r, MiB, &cfg);
	tu_assert_miss(e, "alpha", 5);
	assert_rc(eng_set(e, "alpha", 5, "one", 3, 0), 0);
	tu_assert_value(e, "alpha", 5, "one", 3);
	/* Prefixes, extensions and near neighbours are other keys. */
	tu_assert_miss(e, "alph", 4);
	tu_assert_miss(e, "alphab", 6);
	tu_assert_miss(e, "alphA", 5);

	/* Keys are bytes, not strings. */
	assert_rc(eng_set(e, "a\0b", 3, "AB", 2, 0), 0);
	assert_rc(eng_set(e, "a\0c", 3, "AC", 2, 0), 0);
	tu_assert_value(e, "a\0b", 3, "AB", 2);
	tu_assert_value(e, "a\0c", 3, "AC", 2);
	tu_assert_miss(e, "a", 1);

	st = tu_stats(e);
	assert_int_equal(st.hits, 3);
	assert_int_equal(st.misses, 5);
	assert_int_equal(st.sets, 3);
	assert_int_equal(st.entries, 3);
}

/* Two keys whose index tags are equal, found by brute force over "tag<i>"
 * with one segment (the tag is then the low 32 bits of the key's XXH3
 * hash, see hash.h): some 2^18 keys give several such pairs. */
static bool find_tag_twins(char a[16], char b[16])
{
	enum { NTRY = 1 << 18 };
	/* Called through a pointer: XXH3 inlined here on a small key buffer
	 * trips gcc's -Warray-bounds on paths for long keys. */
	uint64_t (*volatile hash)(const void *, size_t) = hash_key;
	uint64_t *t = malloc(NTRY * sizeof(*t));
	bool found = false;

	assert_non_null(t);
	for (uint32_t i = 0; i < NTRY; i++) {
		char key[16];
		size_t klen = tu_key(key, sizeof(key), "tag", i);
		uint32_t tag = hash_split(hash(key, klen), 0).tag;

		t[i] = (uint64_t)tag << 32 | i;
	}
	qsort(t, NTRY, sizeof(*t), cmp_u64);
	for (uint32_t i = 1; i < NTRY && !found; i++) {
		if (t[i] >> 32 != t[i - 1] >> 32)
			continue;
		tu_key(a, 16, "tag", (uint32_t)t[i - 1]);
		tu_key(b, 16, "tag", (uint32_t)t[i]);
		found = true;
	}
	free(t);
	return found;
}

static void test_engine_keys_with_equal_tags_stay_distinct(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 1 };
	struct eng *e = &r->e;
	char a[16], b[16];
	size_t alen, blen;

	assert_true(find_tag_twins(a, b));
	alen = strlen(a);
	blen = strlen(b);
	print_message("tag twins: %s %s\n", a, b);

	tu_region_open(r, MiB, &cfg);
	tu_assert_miss(e, a, alen);
	assert_rc(eng_set(e, a, alen, "AAA", 3, 0), 0);
	tu_assert_miss(e, b, blen);
	assert_rc(eng_del(e, b, blen), -ENOENT);
	assert_rc(eng_set(e, b, blen, "BB", 2, 0), 0);
	tu_assert_value(e, a, alen, "AAA", 3);
	tu_assert_value(e, b, blen, "BB", 2);
	assert_int_equal(tu_stats(e).entries, 2);

	assert_rc(eng_set(e, a, alen, "A2", 2, 0), 0);
	tu_assert_value(e, b, blen, "BB", 2);
	assert_rc(eng_del(e, a, alen), 0);
	tu_assert_miss(e, a, alen);
	tu_assert_value(e, b, blen, "BB", 2);
	tu_assert_all_clean(e);
}

/* Keys that share a bucket: the one heading the chain (named by the bucket)
 * and the ones behind it (reached through records) all survive being
 * moved by evacuation, overwrites that move them, and the deletes of their
 * neighbours, at the head, in the middle and at the end of the chain. */
static void test_engine_chain_head_and_followers_survive(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 1 };
	struct eng *e = &r->e;
	enum { N = 4, LEN = 40, SCAN_LEN = 100 };
	uint32_t m[N], len[N] = { LEN, LEN, LEN, LEN }, ver[N] = { 1, 1, 1, 1 };
	bool in[N] = { true, true, true, false };
	uint64_t moves;

	tu_region_open(r, 128 * 1024, &cfg);
	find_bucket_mates(e, "bk", N, m);
	/* Set last first: the chain is then m[0] (head), m[1], m[2]. */
	for (int i = 2; i >= 0; i--)
		set_kv(e, "bk", m[i], 1, LEN, 0);

		/* Reads every key in the chain (each read is a use), checks the
	 * ones deleted miss, and checks the segment. */
#define CHECK_CHAIN()                                                          \
	do {                                                                   \
		for (int i_ = 0; i_ < N; i_++)                                 \
			assert_rc(get_kv(e, "bk", m[i_], ver[i_], len[i_]),    \
				  in[i_] ? 0 : -ENOENT);                       \
		tu_assert_all_clean(e);                                        \
	} while (0)
		/* Turns the ring over twice with one-off keys, reading the chain
	 * between writes so that its entries are moved, not dropped. */
#define SCAN(from)                                                             \
	do {                                                                   \
		uint32_t n_ = 2 * e->g.ring_size / SCAN_LEN;                   \
		for (uint32_t j_ = 0; j_ < n_; j_++) {                         \
			set_kv(e, "scan", (from) + j_, 1, SCAN_LEN, 0);        \
			if (j_ % 64 == 0)                                      \
				CHECK_CHAIN();                                 \
		}                                                              \
	} while (0)

	CHECK_CHAIN();
	moves = tu_stats(e).moves;
	SCAN(0);
	assert_true(tu_stats(e).moves >= moves + 6); /* each moved twice */
	CHECK_CHAIN();

	/* The middle goes; a new head comes: m[3], m[0], m[2]. */
	{
		char key[32];
		size_t klen = tu_key(key, sizeof(key), "bk", m[1]);
		assert_rc(eng_del(e, key, klen), 0);
	}
	in[1] = false;
	set_kv(e, "bk", m[3], 1, LEN, 0);
	in[3] = true;
	CHECK_CHAIN();
	/* The head grows (unlinked, and back at the head); the last one
	 * grows too, then the ring turns over with them all in it. */
	len[3] = 3 * LEN;
	ver[3] = 2;
	set_kv(e, "bk", m[3], 2, len[3], 0);
	len[2] = 3 * LEN;
	ver[2] = 2;
	set_kv(e, "bk", m[2], 2, len[2], 0);
	CHECK_CHAIN();
	moves = tu_stats(e).moves;
	SCAN(1u << 20);
	assert_true(tu_stats(e).moves >= moves + 6);

	/* Deletes of the head, then of the end, then of the last one. */
	for (int d = 0; d < N; d++) {
		char key[32];
		size_t klen;
		int i = (int[]){ 2, 3, 0, 1 }[d];

		if (!in[i])
			continue;
		klen = tu_key(key, sizeof(key), "bk", m[i]);
		assert_rc(eng_del(e, key, klen), 0);
		in[i] = false;
		CHECK_CHAIN();
	}
	assert_int_equal(tu_stats(e).repairs, 0);
#undef SCAN
#undef CHECK_CHAIN
}

/* A key heading its chain that evacuation moves to the ring head (its
 * header rewritten there, with the check for its new offset) still hits,
 * through the bucket, which now names the new offset. */
static void test_engine_moved_head_entry_hits(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 1 };
	struct eng *e = &r->e;
	enum { LEN = 40, SCAN_LEN = 100 };
	struct mates t;
	uint32_t *buckets, first, seen_moves = 0;
	uint64_t moves;

	tu_region_open(r, 128 * 1024, &cfg);
	buckets = (uint32_t *)(tu_seg_block(e, 0) + e->g.off_buckets);
	mates_find(e, &t);
	mates_set(e, &t, LEN, NULL);
	first = buckets[t.b];
	moves = tu_stats(e).moves;
	for (uint32_t j = 0; j < 2 * e->g.ring_size / SCAN_LEN; j++) {
		uint32_t before = buckets[t.b];

		set_kv(e, "scan", j, 1, SCAN_LEN, 0);
		if (buckets[t.b] != before)
			seen_moves++;
		if (j % 32 == 0) {
			assert_rc(get_kv(e, "mt", t.m[0], 1, LEN), 0);
			assert_rc(get_kv(e, "mt", t.m[1], 1, LEN), 0);
		}
	}
	assert_rc(get_kv(e, "mt", t.m[0], 1, LEN), 0);
	assert_true(seen_moves >= 2);
	assert_int_not_equal(buckets[t.b], first);
	assert_true(tu_stats(e).moves >= moves + 2);
	assert_int_equal(tu_stats(e).repairs, 0);
	tu_assert_all_clean(e);
}

static void test_engine_get_copies_value_and_expiry(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	uint8_t val[300], buf[400];
	size_t vlen = 0;
	uint32_t exp = 12345, now;

	tu_region_open(r, MiB, &cfg);
	now = eng_now(e);
	mkval(val, sizeof(val), 1, 1);
	assert_rc(eng_set(e, "k", 1, val, sizeof(val), 0), 0);
	memset(buf, 0, sizeof(buf));
	assert_rc(eng_get(e, "k", 1, buf, sizeof(buf), &vlen, &exp), 0);
	assert_int_equal(vlen, sizeof(val));
	assert_memory_equal(buf, val, sizeof(val));
	assert_int_equal(exp, 0);

	assert_rc(eng_set(e, "t", 1, val, 10, 60), 0);
	assert_rc(eng_get(e, "t", 1, buf, 10, &vlen, &exp), 0);
	assert_int_equal(vlen, 10);
	assert_memory_equal(buf, val, 10);
	assert_int_equal(exp, now + 60);
}

static void test_engine_get_small_buffer_enobufs(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	uint8_t val[100], buf[100], junk[100];
	size_t vlen = 0;

	tu_region_open(r, MiB, &cfg);
	mkval(val, sizeof(val), 2, 1);
	assert_rc(eng_set(e, "k", 1, val, sizeof(val), 0), 0);

	memset(buf, 0xee, sizeof(buf));
	memset(junk, 0xee, sizeof(junk));
	assert_rc(eng_get(e, "k", 1, buf, 99, &vlen, NULL), -ENOBUFS);
	assert_int_equal(vlen, 100);
	assert_memory_equal(buf, junk, sizeof(buf));

	vlen = 0;
	assert_rc(eng_peek(e, "k", 1, buf, 1, &vlen, NULL), -ENOBUFS);
	assert_int_equal(vlen, 100);
	assert_memory_equal(buf, junk, sizeof(buf));

	vlen = 0;
	assert_rc(eng_get(e, "k", 1, buf, 0, &vlen, NULL), -ENOBUFS);
	assert_int_equal(vlen, 100);

	/* Exactly enough is enough, and the entry is still there. */
	assert_rc(eng_get(e, "k", 1, buf, 100, &vlen, NULL), 0);
	assert_int_equal(vlen, 100);
	assert_memory_equal(buf, val, 100);
}

static void test_engine_empty_value_roundtrips(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	uint8_t buf[8];
	size_t vlen = 99;

	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_set(e, "empty", 5, "", 0, 0), 0);
	assert_rc(eng_get(e, "empty", 5, buf, sizeof(buf), &vlen, NULL), 0);
	assert_int_equal(vlen, 0);
	assert_rc(eng_set(e, "empty", 5, "full", 4, 0), 0);
	tu_assert_value(e, "empty", 5, "full", 4);
	assert_rc(eng_set(e, "empty", 5, "", 0, 0), 0);
	assert_rc(eng_get(e, "empty", 5, buf, sizeof(buf), &vlen, NULL), 0);
	assert_int_equal(vlen, 0);
}

static void test_engine_overwrite_same_smaller_larger(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	static uint8_t val[3000];
	struct eng_stats st0, st;
	uint32_t ttl = 99;

	tu_region_open(r, MiB, &cfg);
	st0 = tu_stats(e);

	mkval(val, 100, 7, 1);
	assert_rc(eng_set(e, "key", 3, val, 100, 0), 0);
	tu_assert_value(e, "key", 3, val, 100);

	mkval(val, 100, 7, 2); /* same size, other bytes */
	assert_rc(eng_set(e, "key", 3, val, 100, 0), 0);
	tu_assert_value(e, "key", 3, val, 100);

	mkval(val, 10, 7, 3); /* smaller */
	assert_rc(eng_set(e, "key", 3, val, 10, 0), 0);
	tu_assert_value(e, "key", 3, val, 10);

	mkval(val, 1000, 7, 4); /* larger than ever */
	assert_rc(eng_set(e, "key", 3, val, 1000, 0), 0);
	tu_assert_value(e, "key", 3, val, 1000);

	/* The grown entry survives other traffic (far from filling the
	 * ring) and is the only entry of its key. */
	for (uint32_t i = 0; i < 50; i++)
		set_kv(e, "other", i, 1, 100, 0);
	tu_assert_value(e, "key", 3, val, 1000);

	mkval(val, 5, 7, 5); /* shrink after growing */
	assert_rc(eng_set(e, "key", 3, val, 5, 0), 0);
	tu_assert_value(e, "key", 3, val, 5);
	mkval(val, 3000, 7, 6); /* grow again */
	assert_rc(eng_set(e, "key", 3, val, 3000, 0), 0);
	for (uint32_t i = 50; i < 100; i++)
		set_kv(e, "other", i, 1, 100, 0);
	tu_assert_value(e, "key", 3, val, 3000);
	for (uint32_t i = 0; i < 100; i++)
		assert_rc(get_kv(e, "other", i, 1, 100), 0);

	st = tu_stats(e);
	assert_int_equal(st.entries, 101);
	assert_int_equal(st.sets - st0.sets, 106);
	assert_int_equal(st.overwrites - st0.overwrites, 5);
	assert_int_equal(st.evictions, 0);

	/* An overwrite also replaces the TTL. */
	assert_rc(eng_set(e, "key", 3, val, 3000, 30), 0);
	assert_rc(eng_ttl(e, "key", 3, &ttl), 0);
	assert_int_equal(ttl, 30);
	assert_rc(eng_set(e, "key", 3, val, 10, 0), 0);
	assert_rc(eng_ttl(e, "key", 3, &ttl), 0);
	assert_int_equal(ttl, 0);
	eng_clock_set(e, eng_now(e) + 100000);
	tu_assert_value(e, "key", 3, val, 10);
}

static void test_engine_peek_changes_no_counters(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	struct eng_stats st0, st1;
	uint8_t buf[16];
	size_t vlen = 0;
	uint32_t exp = 1, t0;

	tu_region_open(r, MiB, &cfg);
	t0 = eng_now(e);
	assert_rc(eng_set(e, "p", 1, "peeked", 6, 0), 0);
	assert_rc(eng_set(e, "x", 1, "expiring", 8, 5), 0);
	tu_assert_value(e, "p", 1, "peeked", 6);
	tu_assert_miss(e, "q", 1);

	st0 = tu_stats(e);
	assert_rc(eng_peek(e, "p", 1, buf, sizeof(buf), &vlen, &exp), 0);
	assert_int_equal(vlen, 6);
	assert_memory_equal(buf, "peeked", 6);
	assert_int_equal(exp, 0);
	assert_rc(eng_peek(e, "q", 1, buf, sizeof(buf), &vlen, NULL), -ENOENT);
	assert_rc(eng_peek(e, "p", 1, buf, 2, &vlen, NULL), -ENOBUFS);
	st1 = tu_stats(e);
	assert_memory_equal(&st0, &st1, sizeof(st0));

	/* No reclamation either: an expired entry stays counted until a
	 * get reclaims it. */
	eng_clock_set(e, t0 + 5);
	assert_rc(eng_peek(e, "x", 1, buf, sizeof(buf), &vlen, NULL), -ENOENT);
	st1 = tu_stats(e);
	assert_memory_equal(&st0, &st1, sizeof(st0));
	tu_assert_miss(e, "x", 1);
	st1 = tu_stats(e);
	assert_int_equal(st1.expirations, st0.expirations + 1);
	assert_int_equal(st1.entries, st0.entries - 1);
}

static void test_engine_del(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	struct eng_stats st;
	uint32_t ttl;

	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_del(e, "never", 5), -ENOENT);
	assert_rc(eng_set(e, "d", 1, "gone", 4, 0), 0);
	assert_rc(eng_set(e, "keep", 4, "kept", 4, 0), 0);
	assert_rc(eng_del(e, "d", 1), 0);
	tu_assert_miss(e, "d", 1);
	assert_rc(eng_ttl(e, "d", 1, &ttl), -ENOENT);
	assert_rc(eng_del(e, "d", 1), -ENOENT);
	tu_assert_value(e, "keep", 4, "kept", 4);

	st = tu_stats(e);
	assert_int_equal(st.deletes, 1);
	assert_int_equal(st.entries, 1);

	/* Set again after delete. */
	assert_rc(eng_set(e, "d", 1, "back", 4, 0), 0);
	tu_assert_value(e, "d", 1, "back", 4);
}

static void test_engine_clear(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 8 };
	struct eng *e = &r->e;
	struct eng_stats st;

	tu_region_open(r, 2 * MiB, &cfg);
	for (uint32_t i = 0; i < 300; i++)
		set_kv(e, "c", i, 1, 50 + i % 200, i % 2 ? 100 : 0);
	assert_int_equal(tu_stats(e).entries, 300);

	assert_rc(eng_clear(e), 0);
	st = tu_stats(e);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.sets, 300); /* counters are kept */
	for (uint32_t s = 0; s < e->g.nseg; s++)
		assert_int_equal(tu_seg_stats(e, s).entries, 0);
	for (uint32_t i = 0; i < 300; i++)
		assert_rc(get_kv(e, "c", i, 1, 50 + i % 200), -ENOENT);
	tu_assert_all_clean(e);

	/* Usable afterwards. */
	for (uint32_t i = 0; i < 300; i++)
		set_kv(e, "c", i, 2, 80, 0);
	for (uint32_t i = 0; i < 300; i++)
		assert_rc(get_kv(e, "c", i, 2, 80), 0);
	assert_int_equal(tu_stats(e).entries, 300);
}

static void test_engine_huge_entry_refused(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 1 };
	struct eng *e;
	uint8_t *val, *buf;
	size_t max, vlen;

	tu_region_open(r, 2 * MiB, &cfg);
	e = &r->e;
	max = e->g.max_kv;
	val = malloc(max + 1);
	buf = malloc(max + 1);
	assert_non_null(val);
	assert_non_null(buf);
	tu_fill(val, max + 1, 3);

	assert_rc(eng_set(e, "big", 3, "small", 5, 0), 0);
	assert_rc(eng_set(e, "big", 3, val, max - 3 + 1, 0), -E2BIG);
	/* Nothing changed by the refusal. */
	tu_assert_value(e, "big", 3, "small", 5);
	assert_rc(eng_set(e, "new", 3, val, max - 3 + 1, 0), -E2BIG);
	tu_assert_miss(e, "new", 3);

	/* Exactly max_kv is accepted. */
	assert_rc(eng_set(e, "big", 3, val, max - 3, 0), 0);
	assert_rc(eng_get(e, "big", 3, buf, max, &vlen, NULL), 0);
	assert_int_equal(vlen, max - 3);
	assert_memory_equal(buf, val, max - 3);
	free(val);
	free(buf);
}

/* With a 256 MiB region and no options, a 1 MiB value (memcached's default
 * item limit) with a memcached-sized key stores and reads back byte for
 * byte; one byte over max_kv is -E2BIG. */
static void test_engine_set_1mib_value_in_256mib_default(void **state)
{
	struct tu_region *r = *state;
	enum { VLEN = 1 << 20 };
	char key[250];
	uint8_t *val, *buf;
	size_t max, vlen;

	tu_region_open(r, 256 * (size_t)MiB, NULL);
	max = r->e.g.max_kv;
	memset(key, 'k', sizeof(key));
	val = malloc(max + 1);
	buf = malloc(max + 1);
	assert_non_null(val);
	assert_non_null(buf);
	tu_fill(val, max + 1, 7);

	assert_rc(eng_set(&r->e, key, sizeof(key), val, VLEN, 0), 0);
	assert_rc(eng_get(&r->e, key, sizeof(key), buf, max, &vlen, NULL), 0);
	assert_int_equal(vlen, VLEN);
	assert_memory_equal(buf, val, VLEN);

	assert_rc(eng_set(&r->e, "x", 1, val, max - 1 + 1, 0), -E2BIG);
	tu_assert_miss(&r->e, "x", 1);
	assert_rc(eng_set(&r->e, "x", 1, val, max - 1, 0), 0);
	assert_rc(eng_get(&r->e, "x", 1, buf, max, &vlen, NULL), 0);
	assert_int_equal(vlen, max - 1);
	assert_memory_equal(buf, val, max - 1);
	free(val);
	free(buf);
}

static void test_engine_key_length_limits(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 1 };
	struct eng *e;
	char *key;
	uint8_t buf[64];
	size_t vlen;
	int rc;

	tu_region_open(r, 2 * MiB, &cfg);
	e = &r->e;
	assert_true(e->g.max_kv >= ENTRY_KEY_MAX + 100);
	key = malloc(ENTRY_KEY_MAX + 1);
	assert_non_null(key);
	tu_fill(key, ENTRY_KEY_MAX + 1, 5);

	assert_rc(eng_set(e, key, ENTRY_KEY_MAX + 1, "v", 1, 0), -E2BIG);
	rc = eng_get(e, key, ENTRY_KEY_MAX + 1, buf, sizeof(buf), &vlen, NULL);
	assert_true(rc == -E2BIG || rc == -ENOENT);

	assert_rc(eng_set(e, key, ENTRY_KEY_MAX, "long key", 8, 0), 0);
	tu_assert_value(e, key, ENTRY_KEY_MAX, "long key", 8);
	/* Differs only in its last byte: another key. */
	key[ENTRY_KEY_MAX - 1] ^= 1;
	tu_assert_miss(e, key, ENTRY_KEY_MAX);
	key[ENTRY_KEY_MAX - 1] ^= 1;
	assert_rc(eng_del(e, key, ENTRY_KEY_MAX), 0);
	tu_assert_miss(e, key, ENTRY_KEY_MAX);
	free(key);
}

static void test_engine_empty_key_refused(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	uint8_t buf[8];
	size_t vlen;
	uint32_t ttl;

	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_set(e, "k", 0, "v", 1, 0), -EINVAL);
	assert_rc(eng_get(e, "k", 0, buf, sizeof(buf), &vlen, NULL), -EINVAL);
	assert_rc(eng_peek(e, "k", 0, buf, sizeof(buf), &vlen, NULL), -EINVAL);
	assert_rc(eng_del(e, "k", 0), -EINVAL);
	assert_rc(eng_ttl(e, "k", 0, &ttl), -EINVAL);
	assert_rc(eng_touch(e, "k", 0, 5), -EINVAL);
	assert_int_equal(tu_stats(e).sets, 0);
	assert_int_equal(tu_stats(e).entries, 0);
}

static void test_engine_null_pointers_refused(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	struct eng_stats st0, st1;
	uint8_t buf[8];
	size_t vlen;
	uint32_t ttl;

	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_set(e, "k", 1, "v", 1, 0), 0);
	st0 = tu_stats(e);
	assert_rc(eng_set(e, NULL, 1, "v", 1, 0), -EINVAL);
	assert_rc(eng_set(e, "k", 1, NULL, 4, 0), -EINVAL);
	assert_rc(eng_get(e, NULL, 1, buf, sizeof(buf), &vlen, NULL), -EINVAL);
	assert_rc(eng_get(e, "k", 1, NULL, 8, &vlen, NULL), -EINVAL);
	assert_rc(eng_get(e, "k", 1, buf, sizeof(buf), NULL, NULL), -EINVAL);
	assert_rc(eng_peek(e, NULL, 1, buf, sizeof(buf), &vlen, NULL), -EINVAL);
	assert_rc(eng_peek(e, "k", 1, NULL, 8, &vlen, NULL), -EINVAL);
	assert_rc(eng_del(e, NULL, 1), -EINVAL);
	assert_rc(eng_ttl(e, NULL, 1, &ttl), -EINVAL);
	assert_rc(eng_ttl(e, "k", 1, NULL), -EINVAL);
	assert_rc(eng_touch(e, NULL, 1, 5), -EINVAL);
	st1 = tu_stats(e);
	assert_memory_equal(&st0, &st1, sizeof(st0));
	tu_assert_value(e, "k", 1, "v", 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_engine_get_hits_and_misses),
		T(test_engine_keys_with_equal_tags_stay_distinct),
		T(test_engine_chain_head_and_followers_survive),
		T(test_engine_moved_head_entry_hits),
		T(test_engine_get_copies_value_and_expiry),
		T(test_engine_get_small_buffer_enobufs),
		T(test_engine_empty_value_roundtrips),
		T(test_engine_overwrite_same_smaller_larger),
		T(test_engine_peek_changes_no_counters),
		T(test_engine_del),
		T(test_engine_clear),
		T(test_engine_huge_entry_refused),
		T(test_engine_set_1mib_value_in_256mib_default),
		T(test_engine_key_length_limits),
		T(test_engine_empty_key_refused),
		T(test_engine_null_pointers_refused),
	};

	return cmocka_run_group_tests_name("engine-setget", tests, NULL, NULL);
}
