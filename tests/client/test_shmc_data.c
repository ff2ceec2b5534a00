/*
 * test_shmc_data.c - libshmc against the real daemon: the data calls: set,
 * get (short buffers, length only, expiry time), peek, del, ttl, touch,
 * expiry, clear, the statistics they count (whole and per segment), the
 * limits on keys and values, invalid arguments, binary keys and values,
 * and many keys.
 *
 * Fixtures and helpers: shmc_fixture.h.
 */
#include "shmc_fixture.h"

static void test_shmc_set_get_round_trip(void **state)
{
	struct fx *f = *state;
	size_t n = 99;

	set_str(f->c, "alpha", "one", 0);
	expect_str(f->c, "alpha", "one");
	/* Replacing with a longer and then a shorter value. */
	set_str(f->c, "alpha", "one-two-three-four", 0);
	expect_str(f->c, "alpha", "one-two-three-four");
	set_str(f->c, "alpha", "x", 0);
	expect_str(f->c, "alpha", "x");
	/* Keys are distinct from their prefixes. */
	expect_missing(f->c, "alph");
	expect_missing(f->c, "alpha2");
	/* An empty value is a value. */
	assert_rc(shmc_set(f->c, "empty", 5, "", 0, 0), 0);
	assert_rc(shmc_get(f->c, "empty", 5, NULL, 0, &n), 0);
	assert_int_equal(n, 0);
}

static void test_shmc_get_small_buffer(void **state)
{
	struct fx *f = *state;
	uint8_t val[100], buf[100];
	uint32_t exp = 7;
	size_t n;

	fill(val, sizeof(val), 1);
	assert_rc(shmc_set(f->c, "k", 1, val, sizeof(val), 0), 0);

	memset(buf, 0xa5, sizeof(buf));
	n = 0;
	assert_rc(shmc_get(f->c, "k", 1, buf, 99, &n), -ENOBUFS);
	assert_int_equal(n, 100);
	assert_true(all_bytes(buf, sizeof(buf), 0xa5));

	n = 0;
	assert_rc(shmc_get_ex(f->c, "k", 1, buf, 50, &n, &exp), -ENOBUFS);
	assert_int_equal(n, 100);
	assert_true(all_bytes(buf, sizeof(buf), 0xa5));

	n = 0;
	assert_rc(shmc_peek(f->c, "k", 1, buf, 1, &n), -ENOBUFS);
	assert_int_equal(n, 100);
	assert_true(all_bytes(buf, sizeof(buf), 0xa5));

	/* Exactly enough room is enough. */
	assert_rc(shmc_get(f->c, "k", 1, buf, 100, &n), 0);
	assert_int_equal(n, 100);
	assert_memory_equal(buf, val, 100);
}

/* "hits: gets that found a live entry" - a get that found one but had
 * too small a buffer included. */
static void test_shmc_get_enobufs_counts_hit(void **state)
{
	struct fx *f = *state;
	struct shmc_stats a, b;
	char buf[4];
	size_t n;

	set_str(f->c, "k", "value", 0);
	stat_of(f->c, &a);
	assert_rc(shmc_get(f->c, "k", 1, buf, sizeof(buf), &n), -ENOBUFS);
	assert_rc(shmc_get(f->c, "k", 1, NULL, 0, &n), -ENOBUFS);
	stat_of(f->c, &b);
	assert_int_equal(b.misses, a.misses);
	assert_int_equal(b.hits, a.hits + 2);
}

static void test_shmc_get_length_only(void **state)
{
	struct fx *f = *state;
	uint8_t val[300];
	size_t n = 0;

	fill(val, sizeof(val), 2);
	assert_rc(shmc_set(f->c, "sized", 5, val, sizeof(val), 0), 0);
	assert_rc(shmc_get(f->c, "sized", 5, NULL, 0, &n), -ENOBUFS);
	assert_int_equal(n, 300);
	assert_rc(shmc_get(f->c, "nope", 4, NULL, 0, &n), -ENOENT);
}

static void test_shmc_get_ex_expire_at(void **state)
{
	struct fx *f = *state;
	char buf[16];
	size_t n;
	uint32_t exp = 12345;
	uint32_t now = (uint32_t)time(NULL);

	set_str(f->c, "timed", "v", 100);
	assert_rc(shmc_get_ex(f->c, "timed", 5, buf, sizeof(buf), &n, &exp), 0);
	assert_int_equal(n, 1);
	assert_memory_equal(buf, "v", 1);
	/* The cache's clock is unix seconds, ticked by the daemon. */
	if (exp < now + 98 || exp > now + 102)
		fail_msg("expire_at %u, want about %u", exp, now + 100);

	exp = 12345;
	set_str(f->c, "forever", "w", 0);
	assert_rc(shmc_get_ex(f->c, "forever", 7, buf, sizeof(buf), &n, &exp),
		  0);
	assert_int_equal(exp, 0);
	/* expire_at is optional. */
	assert_rc(shmc_get_ex(f->c, "forever", 7, buf, sizeof(buf), &n, NULL),
		  0);
	assert_rc(shmc_get_ex(f->c, "nope", 4, buf, sizeof(buf), &n, &exp),
		  -ENOENT);
}

static void test_shmc_peek_changes_no_stats(void **state)
{
	struct fx *f = *state;
	struct shmc_stats a, b;
	char buf[64];
	size_t n;

	set_str(f->c, "seen", "peeked value", 0);
	stat_of(f->c, &a);
	assert_rc(shmc_peek(f->c, "seen", 4, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, 12);
	assert_memory_equal(buf, "peeked value", 12);
	assert_rc(shmc_peek(f->c, "unseen", 6, buf, sizeof(buf), &n), -ENOENT);
	assert_rc(shmc_peek(f->c, "seen", 4, buf, 3, &n), -ENOBUFS);
	stat_of(f->c, &b);
	assert_int_equal(b.hits, a.hits);
	assert_int_equal(b.misses, a.misses);

	/* Whereas a get does count (so the comparison above can fail). */
	assert_rc(shmc_get(f->c, "seen", 4, buf, sizeof(buf), &n), 0);
	assert_rc(shmc_get(f->c, "unseen", 6, buf, sizeof(buf), &n), -ENOENT);
	stat_of(f->c, &b);
	assert_int_equal(b.hits, a.hits + 1);
	assert_int_equal(b.misses, a.misses + 1);
}

static void test_shmc_del(void **state)
{
	struct fx *f = *state;
	struct shmc_stats st;

	set_str(f->c, "doomed", "v", 0);
	set_str(f->c, "kept", "w", 0);
	assert_rc(shmc_del(f->c, "doomed", 6), 0);
	expect_missing(f->c, "doomed");
	expect_str(f->c, "kept", "w");
	assert_rc(shmc_del(f->c, "doomed", 6), -ENOENT);
	assert_rc(shmc_del(f->c, "never-set", 9), -ENOENT);
	stat_of(f->c, &st);
	assert_int_equal(st.deletes, 1);
	assert_int_equal(st.entries, 1);
	/* A deleted key can be set again. */
	set_str(f->c, "doomed", "again", 0);
	expect_str(f->c, "doomed", "again");
}

static void test_shmc_ttl(void **state)
{
	struct fx *f = *state;
	uint32_t t = 777;

	set_str(f->c, "forever", "v", 0);
	assert_rc(shmc_ttl(f->c, "forever", 7, &t), 0);
	assert_int_equal(t, 0);

	set_str(f->c, "hundred", "v", 100);
	assert_rc(shmc_ttl(f->c, "hundred", 7, &t), 0);
	if (t != 99 && t != 100)
		fail_msg("ttl %u after a set with TTL 100", t);

	assert_rc(shmc_ttl(f->c, "nope", 4, &t), -ENOENT);
}

static void test_shmc_touch(void **state)
{
	struct fx *f = *state;
	uint32_t t = 777, exp = 0, now;
	char buf[8];
	size_t n;

	set_str(f->c, "k", "value", 0);
	now = (uint32_t)time(NULL);
	assert_rc(shmc_touch(f->c, "k", 1, 50), 0);
	assert_rc(shmc_ttl(f->c, "k", 1, &t), 0);
	if (t != 49 && t != 50)
		fail_msg("ttl %u after touch 50", t);
	assert_rc(shmc_get_ex(f->c, "k", 1, buf, sizeof(buf), &n, &exp), 0);
	if (exp < now + 48 || exp > now + 52)
		fail_msg("expire_at %u after touch 50, want about %u", exp,
			 now + 50);
	/* The value is untouched by touch. */
	expect_str(f->c, "k", "value");

	/* Back to no expiry. */
	assert_rc(shmc_touch(f->c, "k", 1, 0), 0);
	assert_rc(shmc_ttl(f->c, "k", 1, &t), 0);
	assert_int_equal(t, 0);

	assert_rc(shmc_touch(f->c, "nope", 4, 10), -ENOENT);
	expect_missing(f->c, "nope");
}

static void test_shmc_expiry(void **state)
{
	struct fx *f = *state;
	struct shmc_stats a, b;
	uint32_t t;
	char buf[8];
	size_t n;

	set_str(f->c, "short", "lived", 1);
	set_str(f->c, "long", "lived", 0);
	expect_str(f->c, "short", "lived");
	/* The daemon ticks the clock in whole seconds: gone within about
	 * 2 s, later on a busy machine.  Polled through shmc_ttl(). */
	uint64_t end = clock_mono_ms() + HANG_MS;
	while (shmc_ttl(f->c, "short", 5, &t) == 0 && clock_mono_ms() < end)
		sleep_ms(20);
	stat_of(f->c, &a);
	expect_missing(f->c, "short");
	stat_of(f->c, &b);
	assert_int_equal(b.misses, a.misses + 1); /* an expired get misses */
	assert_int_equal(b.hits, a.hits);
	assert_rc(shmc_peek(f->c, "short", 5, buf, sizeof(buf), &n), -ENOENT);
	assert_rc(shmc_ttl(f->c, "short", 5, &t), -ENOENT);
	assert_rc(shmc_touch(f->c, "short", 5, 100), -ENOENT);
	assert_rc(shmc_del(f->c, "short", 5), -ENOENT);
	expect_missing(f->c, "short");
	expect_str(f->c, "long", "lived");
}

static void test_shmc_clear(void **state)
{
	struct fx *f = *state;
	struct shmc_stats st;
	char k[32];

	for (int i = 0; i < 100; i++) {
		snprintf(k, sizeof(k), "key-%d", i);
		set_str(f->c, k, "v", 0);
	}
	stat_of(f->c, &st);
	assert_int_equal(st.entries, 100);

	assert_rc(shmc_clear(f->c), 0);
	stat_of(f->c, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.sets, 100); /* counters are kept */
	for (int i = 0; i < 100; i++) {
		snprintf(k, sizeof(k), "key-%d", i);
		expect_missing(f->c, k);
	}
	/* The cache works after a clear. */
	set_str(f->c, "key-1", "after", 0);
	expect_str(f->c, "key-1", "after");
}

static void test_shmc_stat_counts(void **state)
{
	struct fx *f = *state;
	struct shmc_stats st;
	uint64_t live_bytes = 0;
	char k[32], v[64];

	stat_of(f->c, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.sets, 0);
	assert_int_equal(st.hits, 0);
	assert_int_equal(st.misses, 0);

	for (int i = 0; i < 50; i++) { /* 50 sets */
		snprintf(k, sizeof(k), "k%d", i);
		snprintf(v, sizeof(v), "value-%d", i);
		set_str(f->c, k, v, 0);
	}
	for (int i = 0; i < 10; i++) { /* 10 overwrites */
		snprintf(k, sizeof(k), "k%d", i);
		snprintf(v, sizeof(v), "value-%d", i);
		set_str(f->c, k, v, 0);
	}
	for (int i = 0; i < 30; i++) { /* 30 hits */
		snprintf(k, sizeof(k), "k%d", i);
		snprintf(v, sizeof(v), "value-%d", i);
		expect_str(f->c, k, v);
	}
	for (int i = 0; i < 20; i++) { /* 20 misses */
		snprintf(k, sizeof(k), "m%d", i);
		expect_missing(f->c, k);
	}
	for (int i = 40; i < 45; i++) { /* 5 deletes */
		snprintf(k, sizeof(k), "k%d", i);
		assert_rc(shmc_del(f->c, k, strlen(k)), 0);
	}
	assert_rc(shmc_del(f->c, "m0", 2), -ENOENT); /* not a delete */
	for (int i = 0; i < 50; i++) {
		if (i >= 40 && i < 45)
			continue;
		live_bytes += (uint64_t)snprintf(k, sizeof(k), "k%d", i);
		live_bytes += (uint64_t)snprintf(v, sizeof(v), "value-%d", i);
	}

	stat_of(f->c, &st);
	assert_int_equal(st.sets, 60);
	assert_int_equal(st.overwrites, 10);
	assert_int_equal(st.hits, 30);
	assert_int_equal(st.misses, 20);
	assert_int_equal(st.deletes, 5);
	assert_int_equal(st.entries, 45);
	assert_int_equal(st.evictions, 0);
	assert_int_equal(st.segments, NSEG);
	assert_int_equal(shmc_segments(f->c), NSEG);
	assert_true(st.bytes_total > 0);
	/* The ring holds at least the keys and values of the live entries. */
	assert_true(st.bytes_used >= live_bytes);
	assert_true(st.bytes_used <= st.bytes_total);
}

static void test_shmc_seg_stat_sums(void **state)
{
	struct fx *f = *state;
	struct shmc_stats tot, seg, sum;
	char k[32], buf[32];
	size_t n;

	for (int i = 0; i < 400; i++) {
		snprintf(k, sizeof(k), "s%d", i);
		set_str(f->c, k, "some value", i % 3 ? 0 : 100);
	}
	for (int i = 0; i < 500; i += 2) {
		snprintf(k, sizeof(k), "s%d", i);
		shmc_get(f->c, k, strlen(k), buf, sizeof(buf), &n);
	}
	/* Gets of an entry in use: answered without the lock. */
	for (int i = 0; i < 8; i++)
		assert_rc(shmc_get(f->c, "s2", 2, buf, sizeof(buf), &n), 0);
	for (int i = 0; i < 400; i += 7) {
		snprintf(k, sizeof(k), "s%d", i);
		assert_rc(shmc_del(f->c, k, strlen(k)), 0);
	}
	for (int i = 1; i < 400; i += 5) {
		snprintf(k, sizeof(k), "s%d", i);
		shmc_set(f->c, k, strlen(k), "x", 1, 0);
	}

	stat_of(f->c, &tot);
	memset(&sum, 0, sizeof(sum));
	assert_int_equal(shmc_segments(f->c), NSEG);
	for (uint32_t s = 0; s < shmc_segments(f->c); s++) {
		memset(&seg, 0xee, sizeof(seg));
		assert_rc(shmc_seg_stat(f->c, s, &seg), 0);
		assert_true(seg.bytes_total > 0);
		sum.hits += seg.hits;
		sum.misses += seg.misses;
		sum.sets += seg.sets;
		sum.overwrites += seg.overwrites;
		sum.deletes += seg.deletes;
		sum.evictions += seg.evictions;
		sum.moves += seg.moves;
		sum.expirations += seg.expirations;
		sum.repairs += seg.repairs;
		sum.entries += seg.entries;
		sum.bytes_used += seg.bytes_used;
		sum.bytes_total += seg.bytes_total;
		sum.segments += seg.segments;
	}
	/* Every counter summed below has moved. */
	assert_true(tot.hits > 0);
	assert_true(tot.misses > 0);
	assert_true(tot.deletes > 0);
	assert_true(tot.overwrites > 0);
	/* A segment counts only the gets that took its lock; the others are
	 * counted by client and appear in the totals alone. */
	assert_true(sum.hits < tot.hits);
	assert_true(sum.misses <= tot.misses);
	assert_int_equal(sum.sets, tot.sets);
	assert_int_equal(sum.overwrites, tot.overwrites);
	assert_int_equal(sum.deletes, tot.deletes);
	assert_int_equal(sum.evictions, tot.evictions);
	assert_int_equal(sum.moves, tot.moves);
	assert_int_equal(sum.expirations, tot.expirations);
	assert_int_equal(sum.repairs, tot.repairs);
	assert_int_equal(sum.entries, tot.entries);
	assert_int_equal(sum.bytes_used, tot.bytes_used);
	assert_int_equal(sum.bytes_total, tot.bytes_total);
	assert_int_equal(sum.segments, tot.segments);
	assert_int_equal(tot.segments, NSEG);

	assert_rc(shmc_seg_stat(f->c, NSEG, &seg), -EINVAL);
	assert_rc(shmc_seg_stat(f->c, UINT32_MAX, &seg), -EINVAL);
}

static void test_shmc_limits(void **state)
{
	struct fx *f = *state;
	struct shmc_stats seg;
	size_t max = shmc_max_item(f->c);
	shmc *c2;

	assert_int_equal(shmc_segments(f->c), NSEG);
	/* "half a segment's ring" */
	assert_rc(shmc_seg_stat(f->c, 0, &seg), 0);
	if (max == 0 || max > seg.bytes_total / 2 || max < seg.bytes_total / 4)
		fail_msg("max_item %zu for a ring of %llu bytes", max,
			 (unsigned long long)seg.bytes_total);
	/* Handles have ids of their own (0 is "no handshake yet"). */
	assert_rc(shmc_open(&c2, f->d.sock), 0);
	assert_int_not_equal(shmc_client_id(f->c), 0);
	assert_int_not_equal(shmc_client_id(c2), 0);
	assert_int_not_equal(shmc_client_id(f->c), shmc_client_id(c2));
	assert_int_equal(shmc_max_item(c2), max);
	shmc_close(c2);
}

static void test_shmc_value_too_large(void **state)
{
	struct fx *f = *state;
	size_t max = shmc_max_item(f->c);
	uint8_t *val = malloc(max + 1), *buf = malloc(max + 1);
	struct shmc_reservation r;
	size_t n = 0;

	assert_non_null(val);
	assert_non_null(buf);
	fill(val, max + 1, 3);
	/* key + value == max_item fits ... */
	assert_rc(shmc_set(f->c, "big", 3, val, max - 3, 0), 0);
	assert_rc(shmc_get(f->c, "big", 3, buf, max + 1, &n), 0);
	assert_int_equal(n, max - 3);
	assert_memory_equal(buf, val, max - 3);
	/* ... one more byte does not. */
	assert_rc(shmc_set(f->c, "big2", 4, val, max - 3, 0), -E2BIG);
	assert_rc(shmc_set(f->c, "big3", 4, val, max + 1, 0), -E2BIG);
	expect_missing(f->c, "big2");
	expect_missing(f->c, "big3");
	/* Sizes whose sum overflows are refused, not wrapped around. */
	assert_rc(shmc_set(f->c, "big4", 4, val, SIZE_MAX, 0), -E2BIG);
	assert_rc(shmc_set(f->c, "big4", 4, val, SIZE_MAX - 3, 0), -E2BIG);
	assert_rc(shmc_reserve(f->c, "big4", 4, SIZE_MAX - 3, 0, &r), -E2BIG);
	expect_missing(f->c, "big4");
	free(val);
	free(buf);
}

static void test_shmc_key_too_long(void **state)
{
	struct fx *f = *state;
	size_t klen = SHMC_KEY_MAX + 1;
	uint8_t *key = malloc(klen);
	struct shmc_reservation r;
	char buf[8];
	size_t n;
	uint32_t t;

	assert_non_null(key);
	memset(key, 'k', klen);
	assert_rc(shmc_set(f->c, key, klen, "v", 1, 0), -E2BIG);
	assert_rc(shmc_get(f->c, key, klen, buf, sizeof(buf), &n), -E2BIG);
	assert_rc(shmc_get_ex(f->c, key, klen, buf, sizeof(buf), &n, NULL),
		  -E2BIG);
	assert_rc(shmc_peek(f->c, key, klen, buf, sizeof(buf), &n), -E2BIG);
	assert_rc(shmc_del(f->c, key, klen), -E2BIG);
	assert_rc(shmc_ttl(f->c, key, klen, &t), -E2BIG);
	assert_rc(shmc_touch(f->c, key, klen, 5), -E2BIG);
	assert_rc(shmc_reserve(f->c, key, klen, 1, 0, &r), -E2BIG);

	/* SHMC_KEY_MAX bytes is a key (when key + value fits max_item). */
	if (SHMC_KEY_MAX + 1 <= shmc_max_item(f->c)) {
		assert_rc(shmc_set(f->c, key, SHMC_KEY_MAX, "v", 1, 0), 0);
		assert_rc(shmc_get(f->c, key, SHMC_KEY_MAX, buf, sizeof(buf),
				   &n),
			  0);
		assert_int_equal(n, 1);
		assert_rc(shmc_get(f->c, key, SHMC_KEY_MAX - 1, buf,
				   sizeof(buf), &n),
			  -ENOENT);
	}
	free(key);
}

static void test_shmc_invalid_args(void **state)
{
	struct fx *f = *state;
	struct shmc_reservation r;
	char buf[16];
	size_t n;
	uint32_t t;
	int calls = 0;

	set_str(f->c, "k", "v", 0);

	/* An empty key. */
	assert_rc(shmc_set(f->c, "k", 0, "v", 1, 0), -EINVAL);
	assert_rc(shmc_get(f->c, "k", 0, buf, sizeof(buf), &n), -EINVAL);
	assert_rc(shmc_get_ex(f->c, "k", 0, buf, sizeof(buf), &n, &t), -EINVAL);
	assert_rc(shmc_peek(f->c, "k", 0, buf, sizeof(buf), &n), -EINVAL);
	assert_rc(shmc_del(f->c, "k", 0), -EINVAL);
	assert_rc(shmc_ttl(f->c, "k", 0, &t), -EINVAL);
	assert_rc(shmc_touch(f->c, "k", 0, 1), -EINVAL);
	assert_rc(shmc_get_or_load(f->c, "k", 0, buf, sizeof(buf), &n,
				   never_load, &calls),
		  -EINVAL);
	assert_rc(shmc_read(f->c, "k", 0, never_read, &calls), -EINVAL);
	assert_rc(shmc_reserve(f->c, "k", 0, 1, 0, &r), -EINVAL);

	/* A NULL key. */
	assert_rc(shmc_set(f->c, NULL, 1, "v", 1, 0), -EINVAL);
	assert_rc(shmc_get(f->c, NULL, 1, buf, sizeof(buf), &n), -EINVAL);
	assert_rc(shmc_get_ex(f->c, NULL, 1, buf, sizeof(buf), &n, &t),
		  -EINVAL);
	assert_rc(shmc_peek(f->c, NULL, 1, buf, sizeof(buf), &n), -EINVAL);
	assert_rc(shmc_del(f->c, NULL, 1), -EINVAL);
	assert_rc(shmc_ttl(f->c, NULL, 1, &t), -EINVAL);
	assert_rc(shmc_touch(f->c, NULL, 1, 1), -EINVAL);
	assert_rc(shmc_get_or_load(f->c, NULL, 1, buf, sizeof(buf), &n,
				   never_load, &calls),
		  -EINVAL);
	assert_rc(shmc_read(f->c, NULL, 1, never_read, &calls), -EINVAL);
	assert_rc(shmc_reserve(f->c, NULL, 1, 1, 0, &r), -EINVAL);

	/* A NULL handle. */
	assert_rc(shmc_set(NULL, "k", 1, "v", 1, 0), -EINVAL);
	assert_rc(shmc_get(NULL, "k", 1, buf, sizeof(buf), &n), -EINVAL);
	assert_rc(shmc_get_ex(NULL, "k", 1, buf, sizeof(buf), &n, &t), -EINVAL);
	assert_rc(shmc_peek(NULL, "k", 1, buf, sizeof(buf), &n), -EINVAL);
	assert_rc(shmc_del(NULL, "k", 1), -EINVAL);
	assert_rc(shmc_ttl(NULL, "k", 1, &t), -EINVAL);
	assert_rc(shmc_touch(NULL, "k", 1, 1), -EINVAL);
	assert_rc(shmc_clear(NULL), -EINVAL);
	assert_rc(shmc_get_or_load(NULL, "k", 1, buf, sizeof(buf), &n,
				   never_load, &calls),
		  -EINVAL);
	assert_rc(shmc_read(NULL, "k", 1, never_read, &calls), -EINVAL);
	assert_rc(shmc_reserve(NULL, "k", 1, 1, 0, &r), -EINVAL);

	/* Other needed pointers: the out-lengths, the value, the buffer
	 * when cap > 0, the callbacks, the reservation. */
	assert_rc(shmc_get(f->c, "k", 1, buf, sizeof(buf), NULL), -EINVAL);
	assert_rc(shmc_get(f->c, "k", 1, NULL, sizeof(buf), &n), -EINVAL);
	assert_rc(shmc_set(f->c, "k2", 2, NULL, 1, 0), -EINVAL);
	assert_rc(shmc_ttl(f->c, "k", 1, NULL), -EINVAL);
	assert_rc(shmc_read(f->c, "k", 1, NULL, NULL), -EINVAL);
	assert_rc(shmc_get_or_load(f->c, "absent", 6, buf, sizeof(buf), &n,
				   NULL, NULL),
		  -EINVAL);
	assert_rc(shmc_reserve(f->c, "k", 1, 1, 0, NULL), -EINVAL);

	assert_int_equal(calls, 0);
	/* None of it changed the cache. */
	expect_str(f->c, "k", "v");
	expect_missing(f->c, "k2");
	expect_missing(f->c, "absent");
}

static void test_shmc_binary_keys_values(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *k;
		size_t klen;
	} keys[] = {
		{ "a", 1 },	     { "a\0", 2 },	   { "a\0b", 3 },
		{ "a\0c", 3 },	     { "\0", 1 },	   { "\0\0", 2 },
		{ "\xff\0\xfe", 3 }, { "\0a\0a\0a\0", 8 },
	};
	size_t nkeys = sizeof(keys) / sizeof(keys[0]);
	uint8_t val[300], buf[300];
	size_t n;

	for (size_t i = 0; i < nkeys; i++) {
		/* Every byte value, NULs first, then a per-key tail. */
		for (size_t j = 0; j < 256; j++)
			val[j] = (uint8_t)(j + i);
		val[0] = 0;
		fill(val + 256, 44, i);
		assert_rc(shmc_set(f->c, keys[i].k, keys[i].klen, val,
				   sizeof(val) - i, 0),
			  0);
	}
	for (size_t i = 0; i < nkeys; i++) {
		for (size_t j = 0; j < 256; j++)
			val[j] = (uint8_t)(j + i);
		val[0] = 0;
		fill(val + 256, 44, i);
		memset(buf, 0x55, sizeof(buf));
		assert_rc(shmc_get(f->c, keys[i].k, keys[i].klen, buf,
				   sizeof(buf), &n),
			  0);
		assert_int_equal(n, sizeof(val) - i);
		assert_memory_equal(buf, val, n);
	}
	/* Deleting one key with a NUL leaves its neighbours. */
	assert_rc(shmc_del(f->c, "a\0", 2), 0);
	assert_rc(shmc_get(f->c, "a\0", 2, buf, sizeof(buf), &n), -ENOENT);
	assert_rc(shmc_get(f->c, "a", 1, buf, sizeof(buf), &n), 0);
	assert_rc(shmc_get(f->c, "a\0b", 3, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, sizeof(val) - 2);
}

#define MANY_KEYS 20000

static void test_shmc_many_keys(void **state)
{
	struct fx *f = *state;
	struct shmc_stats st;
	uint8_t val[80], buf[80];
	char k[32];
	size_t n;
	uint64_t found = 0;

	for (int i = 0; i < MANY_KEYS; i++) {
		int kl = snprintf(k, sizeof(k), "many-%05d", i);
		size_t vl = 8 + (size_t)(fnv1a64(k, (size_t)kl) % 64);

		fill(val, vl, (uint64_t)i);
		assert_rc(shmc_set(f->c, k, (size_t)kl, val, vl, 0), 0);
	}
	for (int i = 0; i < MANY_KEYS; i++) {
		int kl = snprintf(k, sizeof(k), "many-%05d", i);
		size_t vl = 8 + (size_t)(fnv1a64(k, (size_t)kl) % 64);
		int rc = shmc_get(f->c, k, (size_t)kl, buf, sizeof(buf), &n);

		if (rc == -ENOENT)
			continue; /* evicted: allowed */
		if (rc != 0)
			fail_msg("get %s: %s", k, shmc_strerror(rc));
		if (n != vl || !filled(buf, n, (uint64_t)i))
			fail_msg("get %s: wrong value (%zu bytes, want %zu)", k,
				 n, vl);
		found++;
	}
	stat_of(f->c, &st);
	assert_true(found > 0);
	assert_int_equal(st.sets, MANY_KEYS);
	assert_int_equal(st.entries, found);
	/* No TTL, no delete: a missing key was evicted, and counted so. */
	assert_int_equal(st.evictions, MANY_KEYS - found);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_shmc_set_get_round_trip),
		T(test_shmc_get_small_buffer),
		T(test_shmc_get_enobufs_counts_hit),
		T(test_shmc_get_length_only),
		T(test_shmc_get_ex_expire_at),
		T(test_shmc_peek_changes_no_stats),
		T(test_shmc_del),
		T(test_shmc_ttl),
		T(test_shmc_touch),
		T(test_shmc_expiry),
		T(test_shmc_clear),
		T(test_shmc_stat_counts),
		T(test_shmc_seg_stat_sums),
		T(test_shmc_limits),
		T(test_shmc_value_too_large),
		T(test_shmc_key_too_long),
		T(test_shmc_invalid_args),
		T(test_shmc_binary_keys_values),
		T(test_shmc_many_keys),
	};

	tdaemon_binary(); /* exits 77 without $SHMC_DAEMON */
	/* SHMC_TEST_FILTER=test_shmc_ping*: only the cases it matches. */
	if (getenv("SHMC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SHMC_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
