/*
 * engine_fixture.h - helpers shared by the engine's unit tests
 * (test_engine_*.c): versioned key/value pairs (mkval, set_kv, get_kv),
 * keys that share an index bucket (find_bucket_mates, struct mates), and
 * T(), a case with a tu_region in its cmocka state.
 *
 * Static inline, like testutil.h, which it needs first.
 */
#ifndef SHMC_ENGINE_FIXTURE_H
#define SHMC_ENGINE_FIXTURE_H

#include "hash.h"

#define MiB (1024u * 1024u)

/* A key number's value at a version: len bytes determined by (i, v). */
static inline void mkval(void *buf, size_t len, uint32_t i, uint32_t v)
{
	tu_fill(buf, len, tu_mix(i, v));
}

static inline int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return (a > b) - (a < b);
}

/* Sets key number i (prefix) to its version-v value of len bytes. */
static inline void set_kv(struct eng *e, const char *prefix, uint32_t i,
			  uint32_t v, size_t len, uint32_t ttl)
{
	char key[64];
	size_t klen = tu_key(key, sizeof(key), prefix, i);
	uint8_t *val = malloc(len ? len : 1);

	assert_non_null(val);
	mkval(val, len, i, v);
	assert_rc(eng_set(e, key, klen, val, len, ttl), 0);
	free(val);
}

/* Returns 0 if key number i holds its version-v value of len bytes, or the
 * get's error; fails the test on a hit with any other value. */
static inline int get_kv(struct eng *e, const char *prefix, uint32_t i,
			 uint32_t v, size_t len)
{
	char key[64];
	size_t klen = tu_key(key, sizeof(key), prefix, i), got = 0;
	uint8_t *want = malloc(len + 1), *buf = malloc(len + 64);
	int rc;

	assert_non_null(want);
	assert_non_null(buf);
	mkval(want, len, i, v);
	rc = eng_get(e, key, klen, buf, len + 64, &got, NULL);
	if (rc == 0) {
		assert_int_equal(got, len);
		assert_memory_equal(buf, want, len);
	}
	free(want);
	free(buf);
	return rc;
}

/* Finds n key numbers i whose keys "<prefix><i>" fall in one index bucket
 * of segment 0 (the region has one segment). */
static inline void find_bucket_mates(const struct eng *e, const char *prefix,
				     uint32_t n, uint32_t *out)
{
	uint64_t (*volatile hash)(const void *, size_t) = hash_key;
	uint32_t found = 0, want = 0;

	for (uint32_t i = 0; found < n; i++) {
		char key[32];
		size_t klen = tu_key(key, sizeof(key), prefix, i);
		uint32_t b = hash_bucket(
			hash_split(hash(key, klen), e->g.seg_bits).tag,
			e->g.nbuckets);

		assert_true(i < 1u << 24);
		if (found == 0)
			want = b;
		if (b == want)
			out[found++] = i;
	}
}

/* Layout of the bucket-mates chain some tests build: m[0] heads
 * bucket b, m[1] follows it; off[i] is m[i]'s entry offset. */
struct mates {
	uint32_t m[2], b, off[2];
	size_t klen0;
	char key0[32];
};

/* Clears the cache and sets m[1] then m[0] (LEN-byte values; val0, if not
 * NULL, is m[0]'s value), so that m[0] heads the chain; fills *t. */
static inline void mates_set(struct eng *e, struct mates *t, size_t len,
			     const void *val0)
{
	uint8_t *blk = tu_seg_block(e, 0);
	uint32_t *buckets = (uint32_t *)(blk + e->g.off_buckets);
	struct pool_rec *recs = (struct pool_rec *)(blk + e->g.off_recs);
	struct entry_hdr eh;

	assert_rc(eng_clear(e), 0);
	set_kv(e, "mt", t->m[1], 1, len, 0);
	if (val0)
		assert_rc(eng_set(e, t->key0, t->klen0, val0, len, 0), 0);
	else
		set_kv(e, "mt", t->m[0], 1, len, 0);
	t->off[0] = buckets[t->b] - 1;
	memcpy(&eh, tu_seg_ring(e, 0) + t->off[0], sizeof(eh));
	t->off[1] = recs[recs[eh.rec & ENTRY_REC_MASK].next - 1].off;
	assert_int_not_equal(t->off[0], t->off[1]);
}

static inline void mates_find(struct eng *e, struct mates *t)
{
	uint64_t (*volatile hash)(const void *, size_t) = hash_key;

	find_bucket_mates(e, "mt", 2, t->m);
	t->klen0 = tu_key(t->key0, sizeof(t->key0), "mt", t->m[0]);
	t->b = hash_bucket(hash_split(hash(t->key0, t->klen0), 0).tag,
			   e->g.nbuckets);
}

/* A case with a struct tu_region in its state, freed even on failure. */
#define T(f)                                                                   \
	cmocka_unit_test_setup_teardown(f, tu_region_setup, tu_region_teardown)

#endif
