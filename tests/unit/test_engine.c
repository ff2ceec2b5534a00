/*
 * test_engine.c - unit tests of the cache engine (shared/engine.h) on a
 * malloc'd region: hits and misses, overwrites, TTL with the test clock,
 * touch, peek, del, clear, sweep, iteration, statistics, eviction, ring
 * wrap-around, pool exhaustion, limits, attach validation, integrity
 * checks and repair, lock timeouts, and recovery from a dead lock holder.
 *
 * Every case asserts what a user of the cache would notice through the
 * public API.  The tests look inside the region only to play the part of a
 * crash or of memory corruption (writing a lock word, scribbling on a
 * segment; positions come from the attachment's geometry), and use hash.h
 * only to find two keys whose index tags collide.  The random-operation
 * model test and the multi-thread tests are in test_model.c and
 * test_threads.c.
 */
#include "testutil.h"

#include <pthread.h>

#include "hash.h"
#include "lock.h"

#define MiB (1024u * 1024u)

/* A key number's value at a version: len bytes determined by (i, v). */
static void mkval(void *buf, size_t len, uint32_t i, uint32_t v)
{
	tu_fill(buf, len, tu_mix(i, v));
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return (a > b) - (a < b);
}

/* Sets key number i (prefix) to its version-v value of len bytes. */
static void set_kv(struct eng *e, const char *prefix, uint32_t i, uint32_t v,
		   size_t len, uint32_t ttl)
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
static int get_kv(struct eng *e, const char *prefix, uint32_t i, uint32_t v,
		  size_t len)
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

/* ------------------------------------------------------------------------
 * Region set-up and attach
 * ------------------------------------------------------------------------ */

static void test_engine_plan_geometry_fits_region(void **state)
{
	struct eng_config cfg = { .nseg = 8 };
	struct eng_config dflt = { 0 };
	struct eng_geom g;

	(void)state;
	assert_rc(eng_plan(4 * MiB, &cfg, &g), 0);
	assert_int_equal(g.nseg, 8);
	assert_int_equal(1u << g.seg_bits, g.nseg);
	assert_int_equal(1u << g.bucket_bits, g.nbuckets);
	assert_true(g.ring_size >= ENG_MIN_RING);
	assert_int_equal(g.max_kv, g.ring_size / 4);
	assert_true(g.nrec > 0);
	assert_true(g.region_size <= 4 * MiB);
	assert_true(g.seg_base + (uint64_t)g.nseg * g.seg_stride <=
		    g.region_size);
	assert_true(g.off_ring + (uint64_t)g.ring_size <= g.seg_stride);

	/* Zero fields take the documented defaults. */
	assert_rc(eng_plan(64 * MiB, &dflt, &g), 0);
	assert_int_equal(g.nseg, ENG_DEFAULT_NSEG);
	assert_int_equal(g.lock_timeout_ms, ENG_DEFAULT_LOCK_TIMEOUT_MS);
}

static void test_engine_format_refuses_bad_config(void **state)
{
	struct eng_config three = { .nseg = 3 }, many = { .nseg = 131072 };
	struct eng_config four = { .nseg = 4 };
	struct eng_geom g;
	uint8_t *buf = aligned_alloc(4096, 4 * MiB);

	(void)state;
	assert_non_null(buf);
	assert_rc(eng_plan(4 * MiB, &three, &g), -EINVAL);
	assert_rc(eng_format(buf, 4 * MiB, &three), -EINVAL);
	assert_rc(eng_plan(4 * MiB, &many, &g), -EINVAL);
	/* Too small to give 4 segments ENG_MIN_RING bytes of ring each. */
	assert_rc(eng_plan(4 * ENG_MIN_RING, &four, &g), -EINVAL);
	assert_rc(eng_format(buf, 4 * ENG_MIN_RING, &four), -EINVAL);
	free(buf);
}

static void test_engine_format_sets_clock_to_now(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	uint32_t wall = (uint32_t)time(NULL), now;

	tu_region_open(r, MiB, &cfg);
	now = eng_now(&r->e);
	assert_in_range(now, wall - 5, wall + 5);
	eng_clock_set(&r->e, wall + 1000);
	assert_int_equal(eng_now(&r->e), wall + 1000);
}

static void test_engine_attach_good_region_shares_data(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng e2;
	const char *why = NULL;

	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_set(&r->e, "shared", 6, "value", 5, 0), 0);

	assert_rc(eng_attach(&e2, r->base, r->size, 2, &why), 0);
	assert_int_equal(e2.client_id, 2);
	assert_memory_equal(&e2.g, &r->e.g, sizeof(e2.g));
	tu_assert_value(&e2, "shared", 6, "value", 5);
	/* The clock lives in the region: both attachments see one "now". */
	eng_clock_set(&e2, eng_now(&r->e) + 77);
	assert_int_equal(eng_now(&r->e), eng_now(&e2));
}

static void test_engine_attach_refuses_bad_args(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng e2;

	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_attach(&e2, NULL, r->size, 2, NULL), -EINVAL);
	assert_rc(eng_attach(&e2, r->base, r->size, 0, NULL), -EINVAL);
	assert_rc(eng_attach(&e2, r->base, r->size, ENG_CLIENT_ID_MAX + 1u,
			     NULL),
		  -EINVAL);
	assert_rc(eng_attach(&e2, r->base, r->size, ENG_CLIENT_ID_MAX, NULL),
		  0);
}

static void test_engine_attach_refuses_garbage(void **state)
{
	size_t size = MiB;
	uint8_t *buf = aligned_alloc(4096, size);
	struct eng e;
	const char *why = NULL;

	(void)state;
	assert_non_null(buf);
	tu_fill(buf, size, 42);
	assert_rc(eng_attach(&e, buf, size, 1, &why), -EPROTO);
	assert_non_null(why);
	assert_true(why[0] != '\0');

	memset(buf, 0, size);
	assert_rc(eng_attach(&e, buf, size, 1, NULL), -EPROTO);
	free(buf);
}

/* Makes the header's geometry (both copies) say `format` and `magic`, with
 * a checksum that matches: a region of another version, not damage. */
static void set_format(struct region_hdr *h, uint32_t format, uint64_t magic,
		       bool copy)
{
	h->format = format;
	h->magic = magic;
	h->geom_sum = XXH3_64bits(h, offsetof(struct region_hdr, geom_sum));
	if (copy)
		memcpy(h->geom_copy, h, LAYOUT_GEOM_SIZE);
	else
		memset(h->geom_copy, 0, LAYOUT_GEOM_SIZE);
}

static void test_engine_attach_refuses_other_format(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct region_hdr *h;
	struct eng e2;
	const char *why = NULL;

	tu_region_open(r, MiB, &cfg);
	h = r->e.hdr;
	set_format(h, LAYOUT_FORMAT ^ 1u, LAYOUT_MAGIC, true);
	assert_rc(eng_attach(&e2, r->base, r->size, 2, &why), -EPROTO);
	assert_string_equal(why, "region of another layout version");
	/* A region of the layout before the geometry had a copy. */
	set_format(h, LAYOUT_FORMAT - (1u << 24), LAYOUT_MAGIC, false);
	assert_rc(eng_attach(&e2, r->base, r->size, 2, NULL), -EPROTO);
	set_format(h, LAYOUT_FORMAT, LAYOUT_MAGIC ^ 0x100u, true);
	assert_rc(eng_attach(&e2, r->base, r->size, 2, NULL), -EPROTO);
	set_format(h, LAYOUT_FORMAT, LAYOUT_MAGIC, true);
	assert_rc(eng_attach(&e2, r->base, r->size, 2, NULL), 0);
	assert_int_equal(e2.hdr_damage, 0);
}

/* Damage to the header's geometry: alone it is served from the second
 * copy (and the attachment says so); in both copies it is refused. */
static void test_engine_attach_uses_copy_of_damaged_geometry(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct region_hdr saved;
	struct eng e2;
	const char *why = NULL;

	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_set(&r->e, "kept", 4, "value", 5, 0), 0);
	saved = *r->e.hdr;

	/* Each of these alone must be caught; the header is restored in
	 * between. */
	for (int which = 0; which < 9; which++) {
		struct region_hdr *h = r->e.hdr;

		for (int both = 0; both < 2; both++) {
			switch (which) {
			case 0: h->nseg = 8; h->seg_bits = 3; break;
			case 1: h->seg_stride += 64; break;
			case 2: h->ring_size += 64; break;
			case 3: h->max_kv *= 2; break;
			case 4: h->off_ring -= 64; break;
			case 5: h->nrec += 1; break;
			case 6: h->geom_sum ^= 1; break;
			case 7: h->format ^= 1; break;
			case 8: h->magic ^= 0x100; break;
			}
			if (both)
				memcpy(h->geom_copy, h, LAYOUT_GEOM_SIZE);
			why = NULL;
			memset(&e2, 0, sizeof(e2));
			if (!both) {
				assert_rc(eng_attach(&e2, r->base, r->size, 2,
						     &why),
					  0);
				assert_int_equal(e2.hdr_damage,
						 ENG_HDR_PRIMARY);
				assert_memory_equal(&e2.g, &r->e.g,
						    sizeof(e2.g));
				tu_assert_value(&e2, "kept", 4, "value", 5);
			} else if (which == 8) {
				/* No copy with the magic: not a region. */
				assert_rc(eng_attach(&e2, r->base, r->size, 2,
						     &why),
					  -EPROTO);
			} else {
				assert_rc(eng_attach(&e2, r->base, r->size, 2,
						     &why),
					  -EUCLEAN);
				assert_string_equal(
					why, "region header geometry and its "
					     "second copy are both damaged");
			}
			*h = saved;
		}
	}
	/* The copy alone damaged: the geometry is the primary's. */
	r->e.hdr->geom_copy[17] ^= 4;
	assert_rc(eng_attach(&e2, r->base, r->size, 2, NULL), 0);
	assert_int_equal(e2.hdr_damage, ENG_HDR_COPY);
	*r->e.hdr = saved;
	assert_rc(eng_attach(&e2, r->base, r->size, 2, NULL), 0);
	assert_int_equal(e2.hdr_damage, 0);
}

/* eng_hdr_check() names what it finds and rewrites it from the geometry
 * its attachment validated: either copy, or both. */
static void test_engine_hdr_check_repairs_geometry(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct region_hdr saved;
	struct eng e2;
	char msg[160];

	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_set(&r->e, "kept", 4, "value", 5, 0), 0);
	saved = *r->e.hdr;
	assert_rc(eng_hdr_check(&r->e, false, msg, sizeof(msg)), 0);

	r->e.hdr->nrec ^= 0x40;
	assert_rc(eng_hdr_check(&r->e, false, msg, sizeof(msg)),
		  ENG_HDR_PRIMARY);
	assert_non_null(strstr(msg, "region header geometry damaged"));
	assert_rc(eng_hdr_check(&r->e, true, msg, sizeof(msg)),
		  ENG_HDR_PRIMARY);
	assert_string_equal(msg, "region header geometry damaged, repaired "
				 "from the second copy");
	assert_memory_equal(r->e.hdr, &saved, sizeof(saved));
	assert_rc(eng_hdr_check(&r->e, false, msg, sizeof(msg)), 0);

	r->e.hdr->geom_copy[3] ^= 0xff;
	assert_rc(eng_hdr_check(&r->e, true, msg, sizeof(msg)), ENG_HDR_COPY);
	assert_memory_equal(r->e.hdr, &saved, sizeof(saved));

	memset((uint8_t *)r->e.hdr + 16, 0xa5, 80);
	memset(r->e.hdr->geom_copy + 16, 0x5a, 80);
	assert_rc(eng_attach(&e2, r->base, r->size, 2, NULL), -EUCLEAN);
	assert_rc(eng_hdr_check(&r->e, true, msg, sizeof(msg)),
		  ENG_HDR_PRIMARY | ENG_HDR_COPY);
	assert_non_null(strstr(msg, "both rewritten"));
	assert_memory_equal(r->e.hdr, &saved, sizeof(saved));
	assert_rc(eng_attach(&e2, r->base, r->size, 2, NULL), 0);
	tu_assert_value(&e2, "kept", 4, "value", 5);

	/* What an attachment found damaged is reported even if the header
	 * was rewritten since (by the daemon, say). */
	r->e.hdr->off_free += 4;
	assert_rc(eng_attach(&e2, r->base, r->size, 2, NULL), 0);
	*r->e.hdr = saved;
	assert_rc(eng_hdr_check(&e2, true, msg, sizeof(msg)), ENG_HDR_PRIMARY);
	assert_rc(eng_hdr_check(&e2, true, msg, sizeof(msg)), 0);
}

static void test_engine_attach_refuses_short_mapping(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng e2;
	uint64_t rsize;

	tu_region_open(r, MiB, &cfg);
	rsize = r->e.g.region_size;
	assert_rc(eng_attach(&e2, r->base, rsize - 1, 2, NULL), -ERANGE);
	assert_rc(eng_attach(&e2, r->base, rsize / 2, 2, NULL), -ERANGE);
	assert_rc(eng_attach(&e2, r->base, rsize, 2, NULL), 0);
}

static void test_engine_attach_accepts_larger_mapping(void **state)
{
	size_t size = MiB;
	uint8_t *buf = aligned_alloc(4096, size + 8192);
	struct eng_config cfg = { .nseg = 4 };
	struct eng e;

	(void)state;
	assert_non_null(buf);
	assert_rc(eng_format(buf, size, &cfg), 0);
	assert_rc(eng_attach(&e, buf, size + 8192, 1, NULL), 0);
	assert_rc(eng_set(&e, "k", 1, "v", 1, 0), 0);
	tu_assert_value(&e, "k", 1, "v", 1);
	free(buf);
}

/* ------------------------------------------------------------------------
 * Basic operations
 * ------------------------------------------------------------------------ */

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

/* Finds n key numbers i whose keys "<prefix><i>" fall in one index bucket
 * of segment 0 (the region has one segment). */
static void find_bucket_mates(const struct eng *e, const char *prefix,
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
#define CHECK_CHAIN()                                                       \
	do {                                                                \
		for (int i_ = 0; i_ < N; i_++)                              \
			assert_rc(get_kv(e, "bk", m[i_], ver[i_], len[i_]), \
				  in[i_] ? 0 : -ENOENT);                    \
		tu_assert_all_clean(e);                                     \
	} while (0)
	/* Turns the ring over twice with one-off keys, reading the chain
	 * between writes so that its entries are moved, not dropped. */
#define SCAN(from)                                                          \
	do {                                                                \
		uint32_t n_ = 2 * e->g.ring_size / SCAN_LEN;                \
		for (uint32_t j_ = 0; j_ < n_; j_++) {                      \
			set_kv(e, "scan", (from) + j_, 1, SCAN_LEN, 0);     \
			if (j_ % 64 == 0)                                   \
				CHECK_CHAIN();                              \
		}                                                           \
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

/* A bucket that names another chain's head entry (a live entry, with a
 * record that points back at it) is caught: the get refuses with
 * -EUCLEAN, never returns the other key's value, and the segment is reset. */
static void test_engine_swapped_bucket_is_euclean_not_a_wrong_value(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 1 };
	struct eng *e = &r->e;
	uint32_t m[1], o[1];
	uint32_t *buckets;
	uint32_t ba, bb, tmp;
	char key[32];
	size_t klen;
	uint64_t (*volatile hash)(const void *, size_t) = hash_key;

	tu_region_open(r, 128 * 1024, &cfg);
	buckets = (uint32_t *)(tu_seg_block(e, 0) + e->g.off_buckets);
	find_bucket_mates(e, "sa", 1, m);
	klen = tu_key(key, sizeof(key), "sa", m[0]);
	ba = hash_bucket(hash_split(hash(key, klen), 0).tag, e->g.nbuckets);
	/* Another key in another bucket. */
	for (o[0] = 0;; o[0]++) {
		klen = tu_key(key, sizeof(key), "sb", o[0]);
		bb = hash_bucket(hash_split(hash(key, klen), 0).tag,
				 e->g.nbuckets);
		if (bb != ba)
			break;
	}
	set_kv(e, "sa", m[0], 1, 30, 0);
	set_kv(e, "sb", o[0], 1, 30, 0);
	assert_rc(get_kv(e, "sa", m[0], 1, 30), 0);
	tu_assert_all_clean(e);

	tmp = buckets[ba];
	buckets[ba] = buckets[bb];
	buckets[bb] = tmp;
	/* The check sees it without changing anything. */
	{
		struct eng_check_report rep;
		assert_rc(eng_check(e, 0, false, &rep), 0);
		assert_true(rep.problems > 0);
		print_message("found: %s\n", rep.first);
	}
	/* get_kv fails the test on a hit with a wrong value. */
	assert_rc(get_kv(e, "sa", m[0], 1, 30), -EUCLEAN);
	assert_int_equal(tu_stats(e).repairs, 1);
	assert_int_equal(tu_stats(e).entries, 0);
	assert_rc(get_kv(e, "sb", o[0], 1, 30), -ENOENT);
	tu_assert_all_clean(e);
}

/* Layout of the bucket-mates chain the next tests build: m[0] heads
 * bucket b, m[1] follows it; off[i] is m[i]'s entry offset. */
struct mates {
	uint32_t m[2], b, off[2];
	size_t klen0;
	char key0[32];
};

/* Clears the cache and sets m[1] then m[0] (LEN-byte values; val0, if not
 * NULL, is m[0]'s value), so that m[0] heads the chain; fills *t. */
static void mates_set(struct eng *e, struct mates *t, size_t len,
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

static void mates_find(struct eng *e, struct mates *t)
{
	uint64_t (*volatile hash)(const void *, size_t) = hash_key;

	find_bucket_mates(e, "mt", 2, t->m);
	t->klen0 = tu_key(t->key0, sizeof(t->key0), "mt", t->m[0]);
	t->b = hash_bucket(hash_split(hash(t->key0, t->klen0), 0).tag,
			   e->g.nbuckets);
}

/* A bucket pointing anywhere inside its head entry but its start, or at the
 * entry of the other key in its chain, never makes a get return a wrong
 * value: each get is a miss, -EUCLEAN, or (the other key, at its own
 * entry) that key's right value. */
static void test_engine_bucket_into_entries_is_euclean_or_miss(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 1 };
	struct eng *e = &r->e;
	enum { LEN = 64 };
	struct mates t;
	uint32_t *buckets;
	unsigned euclean = 0, miss = 0;

	tu_region_open(r, 128 * 1024, &cfg);
	buckets = (uint32_t *)(tu_seg_block(e, 0) + e->g.off_buckets);
	mates_find(e, &t);
	mates_set(e, &t, LEN, NULL);
	uint32_t len0 = ENTRY_HDR_SIZE + (uint32_t)t.klen0 + LEN;

	/* Every byte of m[0]'s entry but its first, then m[1]'s entry. */
	for (uint32_t d = 1; d <= len0; d++) {
		uint32_t target = d < len0 ? t.off[0] + d : t.off[1];
		for (int k = 0; k < 2; k++) {
			mates_set(e, &t, LEN, NULL);
			buckets[t.b] = target + 1;
			int rc = get_kv(e, "mt", t.m[k], 1, LEN);
			if (rc == 0) /* right value (get_kv checked) */
				assert_true(d == len0 && k == 1);
			else if (rc == -EUCLEAN)
				euclean++;
			else {
				assert_rc(rc, -ENOENT);
				miss++;
			}
		}
	}
	print_message("%u gets -EUCLEAN, %u misses\n", euclean, miss);
	assert_true(euclean >= 2 * (len0 - 1));
	mates_set(e, &t, LEN, NULL);
	tu_assert_all_clean(e);
}

/* The residual risk, measured: a value that holds a forged header and its
 * own key, with a bucket pointed at the forged header, passes for at most
 * one of the 2^ENTRY_CHECK_BITS values of the forged check bits; every
 * other value is -EUCLEAN. */
static void test_engine_forged_header_needs_its_check(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 1 };
	struct eng *e = &r->e;
	enum { LEN = 64 };
	static const char wrong[8] = "WRONGVAL";
	struct mates t;
	uint32_t *buckets;
	uint8_t val[LEN], buf[LEN + 64];
	unsigned euclean = 0, wrong_hits = 0;

	tu_region_open(r, 128 * 1024, &cfg);
	buckets = (uint32_t *)(tu_seg_block(e, 0) + e->g.off_buckets);
	mates_find(e, &t);
	for (uint32_t c = 0; c < 1u << ENTRY_CHECK_BITS; c++) {
		struct entry_hdr fh = {
			.rec = 0 | (c & ((1u << ENTRY_CHECK_REC_BITS) - 1))
					   << ENTRY_REC_BITS,
			.vlen_use = sizeof(wrong),
			.klen = (uint16_t)t.klen0,
			.slack = (uint16_t)((c >> ENTRY_CHECK_REC_BITS)
					    << ENTRY_SLACK_BITS),
		};
		size_t got;

		memset(val, 'v', sizeof(val));
		memcpy(val, &fh, sizeof(fh));
		memcpy(val + sizeof(fh), t.key0, t.klen0);
		memcpy(val + sizeof(fh) + t.klen0, wrong, sizeof(wrong));
		mates_set(e, &t, LEN, val);
		buckets[t.b] = t.off[0] + ENTRY_HDR_SIZE + (uint32_t)t.klen0 + 1;
		int rc = eng_get(e, t.key0, t.klen0, buf, sizeof(buf), &got,
				 NULL);
		if (rc == 0) {
			assert_int_equal(got, sizeof(wrong));
			assert_memory_equal(buf, wrong, sizeof(wrong));
			wrong_hits++;
		} else {
			assert_rc(rc, -EUCLEAN);
			euclean++;
		}
	}
	print_message("forged header accepted for %u of %u check values\n",
		      wrong_hits, 1u << ENTRY_CHECK_BITS);
	assert_true(wrong_hits <= 1);
	assert_int_equal(euclean + wrong_hits, 1u << ENTRY_CHECK_BITS);
}

/* eng_check() verifies every entry's check bits, live or dead, and a get
 * of a key whose head entry has a bad check is -EUCLEAN. */
static void test_engine_check_finds_bad_entry_check(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 1 };
	struct eng *e = &r->e;
	enum { LEN = 40 };
	struct mates t;
	uint8_t *ring;

	tu_region_open(r, 128 * 1024, &cfg);
	ring = tu_seg_ring(e, 0);
	mates_find(e, &t);
	/* One bit of the check in the rec word, one in the slack word, of
	 * the live head entry, then of a dead entry. */
	for (int c = 0; c < 4; c++) {
		uint32_t off, dead_at;
		struct eng_check_report rep;

		mates_set(e, &t, LEN, NULL);
		dead_at = tu_seg_hdr(e, 0)->head;
		set_kv(e, "mt", 999999, 1, LEN, 0);
		set_kv(e, "mt", 999999, 2, 4 * LEN, 0); /* grows: dead_at dies */
		tu_assert_all_clean(e);
		off = c < 2 ? t.off[0] : dead_at;
		if (c % 2 == 0)
			ring[off + 3] ^= 0x80; /* rec word, bit 31 */
		else
			ring[off + 15] ^= 0x80; /* slack word, bit 15 */
		assert_rc(eng_check(e, 0, false, &rep), 0);
		assert_true(rep.problems > 0);
		assert_non_null(strstr(rep.first, "check"));
		print_message("found: %s\n", rep.first);
		if (c < 2) {
			assert_rc(get_kv(e, "mt", t.m[0], 1, LEN), -EUCLEAN);
			assert_int_equal(tu_stats(e).entries, 0);
		}
	}
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

/* ------------------------------------------------------------------------
 * Iteration and statistics
 * ------------------------------------------------------------------------ */

#define ITER_N 400

struct iter_seen {
	struct eng *e;
	uint32_t count;
	uint32_t seen[ITER_N];	   /* times each key number was seen */
	uint32_t expire[ITER_N];   /* the expiry each was seen with */
	int64_t last_in_seg[64];   /* last key number seen per segment */
	uint32_t bad;		   /* items that failed a check */
	uint32_t straddled;	   /* items split at the ring's end */
	uint32_t stop_after;	   /* return 7 after this many; 0 = never */
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
		       i % 4 == 0 ? 5 : i % 4 == 1 ? 1000 : 0);
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
			     &why), 0);
	assert_ptr_not_equal(r->e.ctr, b.ctr);
	assert_ptr_equal(b.ctr, c.ctr);
	assert_rc(eng_set(&r->e, "k", 1, "v", 1, 0), 0);
	for (uint32_t i = 0; i < ENTRY_USE_MAX; i++) /* raise its use */
		assert_rc(eng_get(&r->e, "k", 1, buf, sizeof(buf), &n, NULL), 0);
	struct eng_stats before = tu_stats(&b);
	for (int i = 0; i < 10; i++)
		assert_rc(eng_get(&r->e, "k", 1, buf, sizeof(buf), &n, NULL), 0);
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

/* ------------------------------------------------------------------------
 * Space: eviction, wrap-around, pool exhaustion, limits
 * ------------------------------------------------------------------------ */

static void test_engine_full_segment_evicts_cold_keeps_hot(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 1 };
	struct eng *e;
	enum { NHOT = 16, HOT_LEN = 64, COLD_LEN = 100 };
	uint32_t ncold, cold_left = 0;

	tu_region_open(r, 256 * 1024, &cfg);
	e = &r->e;
	ncold = 5 * e->g.ring_size / COLD_LEN; /* turns the ring over 4+ times */

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
		left += eng_peek(e, key, klen, buf, sizeof(buf), &vlen,
				 NULL) == 0;
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
	print_message("%" PRIu32 " sets, %" PRIu32
		      " straddling entries seen\n",
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

/* ------------------------------------------------------------------------
 * Integrity: eng_check, corruption, repair
 * ------------------------------------------------------------------------ */

static void test_engine_check_healthy_segments_clean(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 2 };
	struct eng *e;
	struct eng_check_report rep;
	uint64_t rng = 11;
	uint32_t t0;

	/* Small enough that the traffic below evicts. */
	tu_region_open(r, 128 * 1024, &cfg);
	e = &r->e;
	t0 = eng_now(e);
	tu_assert_all_clean(e);
	for (uint32_t n = 0; n < 20000; n++) {
		uint32_t i = tu_below(&rng, 600);
		char key[16];
		size_t klen = tu_key(key, sizeof(key), "h", i);

		int rc;

		if (tu_one_in(&rng, 4)) {
			rc = eng_del(e, key, klen);
			assert_true(rc == 0 || rc == -ENOENT);
		} else {
			set_kv(e, "h", i, n, 1 + tu_below(&rng, 400),
			       tu_one_in(&rng, 3) ? 1 + tu_below(&rng, 20) : 0);
		}
		if (n % 1000 == 999)
			eng_clock_set(e, t0 + n / 1000);
	}
	assert_true(tu_stats(e).evictions > 0);
	assert_true(tu_stats(e).entries > 0);
	tu_assert_all_clean(e);
	for (uint32_t s = 0; s < e->g.nseg; s++) {
		assert_rc(eng_check(e, s, false, &rep), 0);
		assert_string_equal(rep.first, "");
	}
	assert_rc(eng_check(e, e->g.nseg, false, &rep), -EINVAL);
}

enum corruption {
	CORRUPT_RING,	     /* the whole data ring scribbled */
	CORRUPT_BUCKETS,     /* the whole bucket array scribbled */
	CORRUPT_RECS,	     /* every pool record scribbled */
	CORRUPT_REC_OFFSETS, /* every record points 7 bytes further on */
	CORRUPT_FREE_RING,   /* the free-slot ring scribbled */
	CORRUPT_ENTRY_VLEN,  /* oldest entry claims a huge value */
	CORRUPT_ENTRY_KLEN,  /* oldest entry claims an empty key */
	CORRUPT_HEAD,	     /* ring head and fill out of range */
	CORRUPT_BUCKET_SWAP, /* two buckets exchange their head entries */
	CORRUPT_BUCKET_SHIFT, /* every bucket names an offset 16 B on */
	CORRUPT_N
};

static const char *const corruption_names[CORRUPT_N] = {
	"ring",	     "buckets",	   "records", "record offsets",
	"free ring", "entry vlen", "entry klen", "ring head",
	"bucket swap", "bucket shift",
};

/* Writes len bytes at ring offset off of segment seg, wrapping at the
 * ring's end as entries do. */
static void ring_write(struct eng *e, uint32_t seg, uint32_t off,
		       const void *src, size_t len)
{
	uint8_t *ring = tu_seg_ring(e, seg);
	const uint8_t *p = src;

	for (size_t k = 0; k < len; k++)
		ring[(off + k) % e->g.ring_size] = p[k];
}

static void corrupt(struct eng *e, uint32_t seg, enum corruption c)
{
	uint8_t *blk = tu_seg_block(e, seg);
	struct seg_hdr *h = tu_seg_hdr(e, seg);
	struct pool_rec *recs = (struct pool_rec *)(blk + e->g.off_recs);
	uint32_t *buckets = (uint32_t *)(blk + e->g.off_buckets);
	uint32_t tail = h->tail, v, first = UINT32_MAX;
	uint16_t k;

	switch (c) {
	case CORRUPT_RING:
		memset(blk + e->g.off_ring, 0xa5, e->g.ring_size);
		break;
	case CORRUPT_BUCKETS:
		memset(blk + e->g.off_buckets, 0xa5,
		       (size_t)e->g.nbuckets * sizeof(uint32_t));
		break;
	case CORRUPT_RECS:
		memset(recs, 0xa5, (size_t)e->g.nrec * sizeof(*recs));
		break;
	case CORRUPT_REC_OFFSETS:
		for (uint32_t i = 0; i < e->g.nrec; i++)
			recs[i].off = (recs[i].off + 7) % e->g.ring_size;
		break;
	case CORRUPT_FREE_RING:
		memset(blk + e->g.off_free, 0xa5,
		       (size_t)e->g.nrec * sizeof(uint32_t));
		break;
	case CORRUPT_ENTRY_VLEN:
		v = 0x7fffff00u;
		ring_write(e, seg,
			   tail + offsetof(struct entry_hdr, vlen_use), &v,
			   sizeof(v));
		break;
	case CORRUPT_ENTRY_KLEN:
		k = 0;
		ring_write(e, seg, tail + offsetof(struct entry_hdr, klen), &k,
			   sizeof(k));
		break;
	case CORRUPT_HEAD:
		h->head = e->g.ring_size + 1000;
		h->used = 3 * e->g.ring_size;
		break;
	case CORRUPT_BUCKET_SWAP:
		/* Both still name real live entries: only their records'
		 * tags tell that they head the wrong chains. */
		for (uint32_t b = 0; b < e->g.nbuckets; b++) {
			if (buckets[b] == 0)
				continue;
			if (first == UINT32_MAX) {
				first = b;
				continue;
			}
			v = buckets[b];
			buckets[b] = buckets[first];
			buckets[first] = v;
			break;
		}
		assert_true(first != UINT32_MAX);
		break;
	case CORRUPT_BUCKET_SHIFT:
		/* Inside the used ring, but in the middle of entries. */
		for (uint32_t b = 0; b < e->g.nbuckets; b++)
			if (buckets[b] != 0)
				buckets[b] = (buckets[b] - 1 + ENTRY_HDR_SIZE) %
						     e->g.ring_size +
					     1;
		break;
	case CORRUPT_N:
		break;
	}
}

/* Fills a 4-segment region with keys "x<i>", i < n, value version 1,
 * length 10 + i % 200; returns how many landed in segment seg. */
static uint32_t fill_for_corruption(struct eng *e, uint32_t n, uint32_t seg)
{
	uint32_t in_seg = 0;

	for (uint32_t i = 0; i < n; i++) {
		char key[16];
		size_t klen = tu_key(key, sizeof(key), "x", i);

		set_kv(e, "x", i, 1, 10 + i % 200, 0);
		in_seg += eng_seg_of(e, key, klen) == seg;
	}
	return in_seg;
}

static void test_engine_check_detects_and_repairs_corruption(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	enum { N = 200 };

	for (int c = 0; c < CORRUPT_N; c++) {
		struct eng *e;
		struct eng_check_report rep;
		uint32_t seg, in_seg, entries[4];
		char key[16];
		uint32_t ki = 0;
		size_t klen;

		tu_region_open(r, MiB, &cfg);
		e = &r->e;
		seg = e->g.nseg - 1; /* the last: overruns leave the buffer */
		in_seg = fill_for_corruption(e, N, seg);
		assert_true(in_seg >= 10);
		for (uint32_t s = 0; s < 4; s++)
			entries[s] = (uint32_t)tu_seg_stats(e, s).entries;

		corrupt(e, seg, (enum corruption)c);
		print_message("corruption: %s\n", corruption_names[c]);

		assert_rc(eng_check(e, seg, false, &rep), 0);
		assert_true(rep.problems > 0);
		assert_int_equal(rep.repaired, 0);
		assert_true(rep.first[0] != '\0');
		print_message("  found %" PRIu32 ": %s\n", rep.problems,
			      rep.first);

		assert_rc(eng_check(e, seg, true, &rep), 0);
		assert_true(rep.problems > 0);
		assert_int_equal(rep.repaired, 1);
		assert_true(tu_seg_stats(e, seg).repairs >= 1);

		assert_rc(eng_check(e, seg, false, &rep), 0);
		assert_int_equal(rep.problems, 0);
		assert_int_equal(rep.live, 0);
		assert_int_equal(tu_seg_stats(e, seg).entries, 0);

		/* The other segments are untouched. */
		for (uint32_t s = 0; s < seg; s++)
			assert_int_equal(tu_seg_stats(e, s).entries,
					 entries[s]);
		for (uint32_t i = 0; i < N; i++) {
			klen = tu_key(key, sizeof(key), "x", i);
			assert_rc(get_kv(e, "x", i, 1, 10 + i % 200),
				  eng_seg_of(e, key, klen) == seg ? -ENOENT
								  : 0);
		}
		/* And the repaired one works again. */
		klen = tu_key_in_seg(e, seg, key, sizeof(key), "fresh", &ki);
		assert_rc(eng_set(e, key, klen, "ok", 2, 0), 0);
		tu_assert_value(e, key, klen, "ok", 2);
		tu_assert_all_clean(e);
		tu_region_close(r);
	}
}

/* A get or peek of key number i ("x" prefix) must give its version-v value
 * of len bytes, or miss (-ENOENT, or -EUCLEAN when it finds the damage);
 * v == 0 means never set: it must miss. */
static void assert_right_or_miss(struct eng *e, uint32_t i, uint32_t v,
				 size_t len, bool peek, uint32_t *hits)
{
	char key[16];
	size_t klen = tu_key(key, sizeof(key), "x", i), got = 0;
	size_t cap = e->g.max_kv;
	uint8_t *buf = malloc(cap), *want = malloc(len + 1);
	int rc;

	assert_non_null(buf);
	assert_non_null(want);
	mkval(want, len, i, v);
	rc = peek ? eng_peek(e, key, klen, buf, cap, &got, NULL)
		  : eng_get(e, key, klen, buf, cap, &got, NULL);
	if (rc != 0 && rc != -ENOENT && rc != -EUCLEAN)
		fail_msg("%s x%" PRIu32 " = %d (%s)", peek ? "peek" : "get", i,
			 rc, strerror(-rc));
	if (rc == 0) {
		if (v == 0)
			fail_msg("x%" PRIu32 " was never set but hit", i);
		assert_int_equal(got, len);
		assert_memory_equal(buf, want, len);
		(*hits)++;
	}
	free(buf);
	free(want);
}

/* The ring offsets of the entries of segment seg, oldest first (at most
 * cap), read from the headers as the engine lays them out. */
static uint32_t ring_entries(struct eng *e, uint32_t seg, uint32_t *offs,
			     uint32_t cap)
{
	const uint8_t *ring = tu_seg_ring(e, seg);
	const struct seg_hdr *h = tu_seg_hdr(e, seg);
	uint32_t size = e->g.ring_size, off = h->tail, done = 0, n = 0;

	while (done < h->used && n < cap) {
		struct entry_hdr eh;
		uint8_t *p = (uint8_t *)&eh;
		for (uint32_t k = 0; k < ENTRY_HDR_SIZE; k++)
			p[k] = ring[(off + k) % size];
		uint32_t len = ENTRY_HDR_SIZE + eh.klen +
			       (eh.vlen_use & ENTRY_VLEN_MASK) +
			       (eh.slack & ENTRY_SLACK_MAX) + e->g.sum_size;
		offs[n++] = off;
		off = (off + len) % size;
		done += len;
	}
	return n;
}

/* Damage to one byte of an entry's lengths (value length, key length,
 * slack) or expiry, by any bit pattern, in many entries: every get of
 * every key then returns its exact value, a miss, or -EUCLEAN, never bytes
 * that run into the next entries, on the lock-free path (keys read often
 * enough to take it) as on the locked one. */
static void test_engine_damaged_lengths_never_serve_other_bytes(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 2 };
	enum { N = 300 };
	/* Byte positions in entry_hdr: expire 4-7, vlen 8-11, klen 12-13,
	 * slack 14 (15 holds the check's high bits and slack's top 4). */
	static const uint8_t bytes[] = { 4, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
	static uint8_t val[400], buf[64 * 1024];
	uint64_t rng = 13;
	uint32_t offs[N], trials = 0, euclean = 0, misses = 0;
	struct eng *e;

	tu_region_open(r, 512 * 1024, &cfg);
	e = &r->e;
	for (uint32_t t = 0; t < 1500; t++) {
		uint32_t seg = t % e->g.nseg;
		assert_rc(eng_clear(e), 0);
		for (uint32_t i = 0; i < N; i++) {
			char key[16];
			size_t klen = tu_key(key, sizeof(key), "k", i);
			uint32_t len = 1 + (i * 37) % 300;
			mkval(val, len, i, 1);
			assert_rc(eng_set(e, key, klen, val, len, 0), 0);
			/* Half the keys in use, so read without the lock. */
			for (uint32_t g = 0; g < (i & 1) * 4; g++) {
				size_t got;
				assert_rc(eng_get(e, key, klen, buf,
						  sizeof(buf), &got, NULL),
					  0);
			}
		}
		uint32_t n = ring_entries(e, seg, offs, N);
		assert_true(n > 10);
		uint32_t off = offs[tu_below(&rng, n)];
		uint32_t pos = bytes[t % sizeof(bytes)];
		/* A single bit, then any other pattern in that byte. */
		uint8_t x = t / sizeof(bytes) % 2
				    ? (uint8_t)(1u << tu_below(&rng, 8))
				    : (uint8_t)(1 + tu_below(&rng, 255));
		tu_seg_ring(e, seg)[(off + pos) % e->g.ring_size] ^= x;
		trials++;

		for (uint32_t i = 0; i < N; i++) {
			char key[16];
			size_t klen = tu_key(key, sizeof(key), "k", i), got;
			uint32_t len = 1 + (i * 37) % 300;
			int rc = eng_get(e, key, klen, buf, sizeof(buf), &got,
					 NULL);
			mkval(val, len, i, 1);
			if (rc == -EUCLEAN) {
				euclean++;
				continue;
			}
			if (rc == -ENOENT) {
				misses++;
				continue;
			}
			if (rc != 0 || got != len || memcmp(buf, val, len))
				fail_msg("byte %u of the entry at %u xor %#x: "
					 "get k%u = %d, %zu bytes, want %u",
					 pos, off, x, i, rc, got, len);
		}
	}
	print_message("%u damaged headers: %u gets -EUCLEAN, %u misses\n",
		      trials, euclean, misses);
	/* Damage to the lengths is found as damage, not as a miss. */
	assert_true(euclean >= trials * 9 / 10);
}

/* The ring offset of the value of key in segment seg (the entry found by
 * a walk of the ring). */
static uint32_t value_off(struct eng *e, uint32_t seg, const char *key)
{
	uint32_t offs[512], n = ring_entries(e, seg, offs, 512);
	const uint8_t *ring = tu_seg_ring(e, seg);
	size_t klen = strlen(key);

	for (uint32_t i = 0; i < n; i++) {
		struct entry_hdr eh;
		char k[64];
		uint8_t *p = (uint8_t *)&eh;
		for (uint32_t j = 0; j < ENTRY_HDR_SIZE; j++)
			p[j] = ring[(offs[i] + j) % e->g.ring_size];
		if (eh.klen != klen || klen > sizeof(k))
			continue;
		for (uint32_t j = 0; j < klen; j++)
			k[j] = (char)ring[(offs[i] + ENTRY_HDR_SIZE + j) %
					  e->g.ring_size];
		if (memcmp(k, key, klen) == 0)
			return (offs[i] + ENTRY_HDR_SIZE + eh.klen) %
			       e->g.ring_size;
	}
	fail_msg("no entry of %s in segment %u", key, seg);
	return 0;
}

static int copy_out(const void *p1, size_t n1, const void *p2, size_t n2,
		    void *arg)
{
	memcpy(arg, p1, n1);
	memcpy((uint8_t *)arg + n1, p2, n2);
	return 0;
}

/* With REGION_F_CHECKSUM a value byte damaged in the ring makes a get,
 * locked or not, a peek and a zero-copy read fail with -EUCLEAN: the
 * entry is dropped and counted (repairs), the rest of its segment stays.
 * Without it, the damaged bytes are what a get returns (the documented
 * limit: the entry check covers the header, not the value). */
static void test_engine_checksum_mode_catches_damaged_values(void **state)
{
	struct tu_region *r = *state;
	enum { N = 60 };
	uint8_t val[100], buf[200];

	for (int mode = 0; mode < 2; mode++) {
		struct eng_config cfg = { .nseg = 1,
					  .flags = mode ? REGION_F_CHECKSUM : 0 };
		struct eng *e = &r->e;
		size_t got;

		tu_region_open(r, 256 * 1024, &cfg);
		assert_int_equal(e->g.sum_size, mode ? ENTRY_SUM_SIZE : 0);
		for (uint32_t i = 0; i < N; i++) {
			char key[16];
			size_t klen = tu_key(key, sizeof(key), "k", i);
			mkval(val, sizeof(val), i, 1);
			if (i == N - 1) { /* a reservation, sealed at commit */
				struct eng_resv rv;
				assert_rc(eng_reserve(e, key, klen, sizeof(val),
						      0, &rv),
					  0);
				memcpy(rv.p[0], val, rv.n[0]);
				memcpy(rv.p[1], val + rv.n[0], rv.n[1]);
				assert_rc(eng_commit(e, &rv), 0);
			} else {
				assert_rc(eng_set(e, key, klen, val,
						  sizeof(val), 0),
					  0);
			}
		}
		for (uint32_t i = 0; i < N; i++) {
			char key[16];
			size_t klen = tu_key(key, sizeof(key), "k", i);
			mkval(val, sizeof(val), i, 1);
			/* Four gets: the last ones take the lock-free path. */
			for (int g = 0; g < 4; g++)
				tu_assert_value(e, key, klen, val, sizeof(val));
		}
		struct eng_check_report rep;
		assert_rc(eng_check(e, 0, false, &rep), 0);
		assert_int_equal(rep.problems, 0);

		/* Damage one value byte of k5 (get), k6 (peek), k7 (read). */
		const char *keys[] = { "k5", "k6", "k7" };
		for (int i = 0; i < 3; i++)
			tu_seg_ring(e, 0)[(value_off(e, 0, keys[i]) + 50) %
					  e->g.ring_size] ^= 0x20;
		int rc5 = eng_get(e, "k5", 2, buf, sizeof(buf), &got, NULL);
		int rc6 = eng_peek(e, "k6", 2, buf, sizeof(buf), &got, NULL);
		memset(buf, 0, sizeof(buf));
		int rc7 = eng_read(e, "k7", 2, copy_out, buf);
		if (mode) {
			assert_rc(rc5, -EUCLEAN);
			assert_rc(rc6, -EUCLEAN);
			assert_rc(rc7, -EUCLEAN);
			assert_rc(eng_get(e, "k5", 2, buf, sizeof(buf), &got,
					  NULL),
				  -ENOENT);
			assert_int_equal(tu_stats(e).repairs, 3);
			assert_int_equal(tu_stats(e).entries, N - 3);
			/* The segment was not reset: the others are there. */
			mkval(val, sizeof(val), 9, 1);
			tu_assert_value(e, "k9", 2, val, sizeof(val));
			assert_rc(eng_check(e, 0, false, &rep), 0);
			assert_int_equal(rep.problems, 0);
			/* eng_check() finds a damaged value too. */
			tu_seg_ring(e, 0)[value_off(e, 0, "k8")] ^= 1;
			assert_rc(eng_check(e, 0, false, &rep), 0);
			assert_true(rep.problems >= 1);
			assert_non_null(strstr(rep.first, "checksum"));
		} else {
			mkval(val, sizeof(val), 5, 1);
			val[50] ^= 0x20;
			assert_rc(rc5, 0);
			assert_rc(eng_get(e, "k5", 2, buf, sizeof(buf), &got,
					  NULL),
				  0);
			assert_memory_equal(buf, val, sizeof(val));
			assert_rc(rc6, 0);
			assert_rc(rc7, 0);
			assert_int_equal(tu_stats(e).repairs, 0);
		}
		tu_region_close(r);
	}
}

static void test_engine_corrupt_segment_never_serves_wrong_value(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	enum { N = 200, NNEW = 400 };

	for (int c = 0; c < CORRUPT_N; c++) {
		struct eng *e;
		struct eng_check_report rep;
		uint32_t seg, ver[NNEW], len[NNEW], hits = 0, euclean = 0;
		static uint8_t val[2000];

		tu_region_open(r, MiB, &cfg);
		e = &r->e;
		seg = e->g.nseg - 1;
		fill_for_corruption(e, N, seg);
		corrupt(e, seg, (enum corruption)c);
		for (uint32_t i = 0; i < NNEW; i++) {
			ver[i] = i < N ? 1 : 0;
			len[i] = 10 + i % 200;
		}

		/* Peeks and gets of every key, then writes: overwrites in
		 * place, overwrites that grow, new keys; then reads again. */
		for (uint32_t i = 0; i < N; i++)
			assert_right_or_miss(e, i, ver[i], len[i], true, &hits);
		for (uint32_t i = 0; i < NNEW; i++)
			assert_right_or_miss(e, i, ver[i], len[i], false,
					     &hits);
		for (uint32_t i = 0; i < NNEW; i += 2) {
			char key[16];
			size_t klen = tu_key(key, sizeof(key), "x", i);
			int rc;

			len[i] = i % 4 ? len[i] : 300 + i * 3;
			mkval(val, len[i], i, 2);
			rc = eng_set(e, key, klen, val, len[i], 0);
			if (rc != 0 && rc != -EUCLEAN)
				fail_msg("set x%" PRIu32 " = %d (%s) after %s "
					 "corruption",
					 i, rc, strerror(-rc),
					 corruption_names[c]);
			euclean += rc == -EUCLEAN;
			ver[i] = 2;
		}
		for (uint32_t i = 0; i < NNEW; i++)
			assert_right_or_miss(e, i, ver[i], len[i], false,
					     &hits);
		print_message("corruption %s: %" PRIu32 " hits, %" PRIu32
			      " sets refused\n",
			      corruption_names[c], hits, euclean);

		/* Whatever the operations did, a repair leaves it clean. */
		assert_rc(eng_check(e, seg, true, &rep), 0);
		tu_assert_all_clean(e);
		tu_region_close(r);
	}
}

/* ------------------------------------------------------------------------
 * Dead lock holders: eng_recover, timeouts, the liveness callback
 * ------------------------------------------------------------------------ */

enum { DEAD_ID = 5 };

/* Sets keys "r<i>", i < n, and returns how many landed in segment seg. */
static uint32_t fill_for_recover(struct eng *e, uint32_t n, uint32_t seg)
{
	uint32_t in_seg = 0;

	for (uint32_t i = 0; i < n; i++) {
		char key[16];
		size_t klen = tu_key(key, sizeof(key), "r", i);

		set_kv(e, "r", i, 1, 30, 0);
		in_seg += eng_seg_of(e, key, klen) == seg;
	}
	return in_seg;
}

/* Plays a client that died holding segment seg's lock, mid-mutation or
 * not. */
static void play_dead_holder(struct eng *e, uint32_t seg, bool mid_write)
{
	struct seg_hdr *h = tu_seg_hdr(e, seg);

	__atomic_store_n(&h->lock, (uint32_t)DEAD_ID << 1, __ATOMIC_RELEASE);
	if ((h->seq & 1u) != (uint32_t)mid_write)
		h->seq++;
}

static void test_engine_recover_resets_dead_holders_segment(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	enum { N = 200 };
	uint32_t seg = 2, entries[4], gen0, ki = 0;
	struct seg_hdr *h;
	char key[16];
	size_t klen;

	tu_region_open(r, MiB, &cfg);
	assert_true(fill_for_recover(e, N, seg) > 0);
	for (uint32_t s = 0; s < 4; s++)
		entries[s] = (uint32_t)tu_seg_stats(e, s).entries;
	h = tu_seg_hdr(e, seg);
	gen0 = h->gen;

	assert_rc(eng_recover(e, DEAD_ID), 0); /* holds nothing yet */
	play_dead_holder(e, seg, true);
	assert_rc(eng_recover(e, DEAD_ID), 1);

	assert_int_equal(__atomic_load_n(&h->lock, __ATOMIC_ACQUIRE), 0);
	assert_int_equal(h->seq & 1, 0);
	assert_int_not_equal(h->gen, gen0);
	assert_int_equal(tu_seg_stats(e, seg).entries, 0);
	assert_true(tu_seg_stats(e, seg).repairs >= 1);
	for (uint32_t s = 0; s < 4; s++)
		if (s != seg)
			assert_int_equal(tu_seg_stats(e, s).entries,
					 entries[s]);
	for (uint32_t i = 0; i < N; i++) {
		klen = tu_key(key, sizeof(key), "r", i);
		assert_rc(get_kv(e, "r", i, 1, 30),
			  eng_seg_of(e, key, klen) == seg ? -ENOENT : 0);
	}

	klen = tu_key_in_seg(e, seg, key, sizeof(key), "after", &ki);
	assert_rc(eng_set(e, key, klen, "works", 5, 0), 0);
	tu_assert_value(e, key, klen, "works", 5);
	assert_rc(eng_recover(e, DEAD_ID), 0); /* nothing left to take */
	tu_assert_all_clean(e);
}

/* A killed daemon's locks carry the id the next daemon attaches with: plain
 * eng_recover() leaves them (they look like our own), the inherited form
 * takes them over and repairs. */
static void test_engine_recover_inherited_takes_predecessors_locks(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4, .lock_timeout_ms = 50 };
	struct eng *e = &r->e;
	uint32_t seg = 3, ki = 0;
	struct seg_hdr *h;
	char key[16];
	size_t klen;

	tu_region_open(r, MiB, &cfg);
	assert_true(fill_for_recover(e, 100, seg) > 0);
	h = tu_seg_hdr(e, seg);
	__atomic_store_n(&h->lock, e->client_id << 1 | LOCK_WAITERS,
			 __ATOMIC_RELEASE);
	h->seq |= 1u; /* died mid-write */

	assert_rc(eng_recover(e, e->client_id), 0);
	assert_int_not_equal(__atomic_load_n(&h->lock, __ATOMIC_ACQUIRE), 0);
	assert_rc(eng_recover_inherited(e), 1);
	assert_int_equal(__atomic_load_n(&h->lock, __ATOMIC_ACQUIRE), 0);
	assert_int_equal(h->seq & 1, 0);

	klen = tu_key_in_seg(e, seg, key, sizeof(key), "after", &ki);
	assert_rc(eng_set(e, key, klen, "works", 5, 0), 0);
	tu_assert_value(e, key, klen, "works", 5);
	assert_rc(eng_recover_inherited(e), 0);
	tu_assert_all_clean(e);
}

static void test_engine_recover_keeps_contents_when_seq_even(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	enum { N = 200 };
	uint32_t seg = 1, in_seg, gen0;
	struct seg_hdr *h;

	tu_region_open(r, MiB, &cfg);
	in_seg = fill_for_recover(e, N, seg);
	assert_true(in_seg > 0);
	h = tu_seg_hdr(e, seg);
	gen0 = h->gen;

	play_dead_holder(e, seg, false);
	/* With the waiters bit, too. */
	__atomic_fetch_or(&h->lock, LOCK_WAITERS, __ATOMIC_ACQ_REL);
	assert_rc(eng_recover(e, DEAD_ID), 1);

	assert_int_equal(__atomic_load_n(&h->lock, __ATOMIC_ACQUIRE), 0);
	assert_int_equal(h->gen, gen0);
	assert_int_equal(tu_seg_stats(e, seg).entries, in_seg);
	for (uint32_t i = 0; i < N; i++)
		assert_rc(get_kv(e, "r", i, 1, 30), 0);
	tu_assert_all_clean(e);
}

struct waiter {
	struct eng e;
	char key[16];
	size_t klen;
	int rc;
	uint64_t done_ms;
};

static void *waiter_get(void *arg)
{
	struct waiter *w = arg;
	uint8_t buf[64];
	size_t vlen;

	w->rc = eng_get(&w->e, w->key, w->klen, buf, sizeof(buf), &vlen, NULL);
	w->done_ms = clock_mono_ms();
	return NULL;
}

static void test_engine_recover_wakes_waiters(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4, .lock_timeout_ms = 60000 };
	struct eng *e = &r->e;
	uint32_t seg = 3, ki = 0;
	struct waiter w;
	pthread_t t;
	uint64_t t_recover;

	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_attach(&w.e, r->base, r->size, 2, NULL), 0);
	w.klen = tu_key_in_seg(e, seg, w.key, sizeof(w.key), "wait", &ki);
	assert_rc(eng_set(e, w.key, w.klen, "v", 1, 0), 0);
	w.rc = 1;

	play_dead_holder(e, seg, false);
	assert_int_equal(pthread_create(&t, NULL, waiter_get, &w), 0);
	tu_sleep_ms(150); /* long enough to be asleep on the lock */
	t_recover = clock_mono_ms();
	assert_rc(eng_recover(e, DEAD_ID), 1);
	assert_int_equal(pthread_join(t, NULL), 0);

	/* Got it (after the recovery), long before its 60 s timeout: a
	 * bound in time would only measure the machine's load. */
	assert_rc(w.rc, 0);
	assert_true(w.done_ms >= t_recover);
}

static void test_engine_lock_timeout_reported(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4, .lock_timeout_ms = 50 };
	struct eng *e = &r->e;
	uint32_t seg = 0, ki = 0, word;
	uint8_t buf[16];
	size_t vlen;
	char key[16];
	size_t klen;
	uint64_t t0, dt;

	tu_region_open(r, MiB, &cfg);
	assert_int_equal(e->g.lock_timeout_ms, 50);
	klen = tu_key_in_seg(e, seg, key, sizeof(key), "lt", &ki);
	assert_rc(eng_set(e, key, klen, "before", 6, 0), 0);

	play_dead_holder(e, seg, false); /* no alive fn: presumed alive */
	t0 = clock_mono_ms();
	assert_rc(eng_get(e, key, klen, buf, sizeof(buf), &vlen, NULL),
		  -ETIMEDOUT);
	dt = clock_mono_ms() - t0;
	print_message("get timed out after %" PRIu64 " ms\n", dt);
	assert_in_range(dt, 40, 30000); /* never early; late under load */
	assert_rc(eng_set(e, key, klen, "after", 5, 0), -ETIMEDOUT);
	assert_rc(eng_del(e, key, klen), -ETIMEDOUT);

	word = __atomic_load_n(&tu_seg_hdr(e, seg)->lock, __ATOMIC_ACQUIRE);
	assert_int_equal(lock_owner(word), DEAD_ID);
	__atomic_store_n(&tu_seg_hdr(e, seg)->lock, 0, __ATOMIC_RELEASE);
	tu_assert_value(e, key, klen, "before", 6);
}

struct alive_calls {
	uint32_t calls, last_id;
};

static bool alive_says_dead(void *arg, uint32_t client_id)
{
	struct alive_calls *a = arg;

	a->calls++;
	a->last_id = client_id;
	return client_id != DEAD_ID;
}

static void test_engine_alive_fn_dead_holder_taken_over(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4, .lock_timeout_ms = 60000 };
	struct eng *e = &r->e;
	struct alive_calls a = { 0, 0 };
	uint32_t seg = 1, ki = 0, kj;
	char key[16], old[16];
	size_t klen, oklen;
	uint64_t t0;
	int rc;

	tu_region_open(r, MiB, &cfg);
	oklen = tu_key_in_seg(e, seg, old, sizeof(old), "old", &ki);
	assert_rc(eng_set(e, old, oklen, "old", 3, 0), 0);
	kj = ki + 1;
	klen = tu_key_in_seg(e, seg, key, sizeof(key), "old", &kj);

	play_dead_holder(e, seg, true);
	eng_set_alive_fn(e, alive_says_dead, &a);
	t0 = clock_mono_ms();
	rc = eng_set(e, key, klen, "new", 3, 0);
	/* taken over, not waited out */
	assert_true(clock_mono_ms() - t0 < 30000);
	if (rc != 0 && rc != -EUCLEAN)
		fail_msg("set on a dead holder's segment = %d (%s)", rc,
			 strerror(-rc));
	assert_true(a.calls > 0);
	assert_int_equal(a.last_id, DEAD_ID);
	assert_int_equal(
		__atomic_load_n(&tu_seg_hdr(e, seg)->lock, __ATOMIC_ACQUIRE),
		0);

	/* The half-written segment was reset: the old entry is gone. */
	tu_assert_miss(e, old, oklen);
	if (rc == 0)
		tu_assert_value(e, key, klen, "new", 3);
	assert_rc(eng_set(e, key, klen, "again", 5, 0), 0);
	tu_assert_value(e, key, klen, "again", 5);
	tu_assert_all_clean(e);
}

static void test_engine_set_timeout_overrides_region_default(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4, .lock_timeout_ms = 3000 };
	struct eng *e = &r->e;
	uint32_t ki = 0;
	uint8_t buf[16];
	size_t vlen;
	char key[16];
	size_t klen;
	uint64_t t0, dt;

	tu_region_open(r, MiB, &cfg);
	klen = tu_key_in_seg(e, 2, key, sizeof(key), "to", &ki);
	assert_rc(eng_set(e, key, klen, "v", 1, 0), 0);
	play_dead_holder(e, 2, false);

	eng_set_timeout(e, 30);
	t0 = clock_mono_ms();
	assert_rc(eng_get(e, key, klen, buf, sizeof(buf), &vlen, NULL),
		  -ETIMEDOUT);
	dt = clock_mono_ms() - t0;
	/* Short of the region's 3000 ms by far more than a busy machine's
	 * scheduling delays. */
	assert_in_range(dt, 25, 2900);

	eng_set_timeout(e, 0); /* back to the region's 3000 ms */
	t0 = clock_mono_ms();
	assert_rc(eng_get(e, key, klen, buf, sizeof(buf), &vlen, NULL),
		  -ETIMEDOUT);
	dt = clock_mono_ms() - t0;
	assert_in_range(dt, 2950, 30000);
}

/* The liveness callback of the next test: reports DEAD_ID dead, but while
 * it is being asked the scene moves on, as it may between processes: the
 * dead holder's segment is recovered and another, live client (LIVE_ID)
 * takes the lock. */
enum { LIVE_ID = 6 };

struct moving_scene {
	uint32_t *word;
	uint32_t calls;
};

static bool dead_then_taken(void *arg, uint32_t client_id)
{
	struct moving_scene *m = arg;

	m->calls++;
	if (client_id != DEAD_ID)
		return true;
	__atomic_store_n(m->word, ((uint32_t)LIVE_ID << 1) | LOCK_WAITERS,
			 __ATOMIC_RELEASE);
	return false;
}

static void test_engine_dead_holder_takeover_spares_live_holder(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4, .lock_timeout_ms = 200 };
	struct eng *e = &r->e;
	uint32_t seg = 2, ki = 0, *word;
	struct moving_scene m;
	char key[16];
	size_t klen;
	int rc;

	tu_region_open(r, MiB, &cfg);
	word = &tu_seg_hdr(e, seg)->lock;
	klen = tu_key_in_seg(e, seg, key, sizeof(key), "race", &ki);
	assert_rc(eng_set(e, key, klen, "v", 1, 0), 0);

	play_dead_holder(e, seg, false);
	m = (struct moving_scene){ .word = word };
	eng_set_alive_fn(e, dead_then_taken, &m);
	rc = eng_set(e, key, klen, "w", 1, 0);
	print_message("set while a live client holds the lock: %d (%s)\n", rc,
		      strerror(-rc));

	/* LIVE_ID holds the lock and is alive: the set must wait for it,
	 * not take the lock from it. */
	if (lock_owner(__atomic_load_n(word, __ATOMIC_ACQUIRE)) != LIVE_ID)
		fail_msg("the lock was taken from live client %d (word now "
			 "%#x, set returned %d)",
			 LIVE_ID, __atomic_load_n(word, __ATOMIC_ACQUIRE), rc);
	assert_rc(rc, -ETIMEDOUT);
	assert_rc(lock_release(word, LIVE_ID), 0);
	tu_assert_value(e, key, klen, "v", 1);
}

/* ------------------------------------------------------------------------ */

#define T(f) cmocka_unit_test_setup_teardown(f, tu_region_setup, tu_region_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_engine_plan_geometry_fits_region),
		T(test_engine_format_refuses_bad_config),
		T(test_engine_format_sets_clock_to_now),
		T(test_engine_attach_good_region_shares_data),
		T(test_engine_attach_refuses_bad_args),
		T(test_engine_attach_refuses_garbage),
		T(test_engine_attach_refuses_other_format),
		T(test_engine_attach_uses_copy_of_damaged_geometry),
		T(test_engine_hdr_check_repairs_geometry),
		T(test_engine_attach_refuses_short_mapping),
		T(test_engine_attach_accepts_larger_mapping),
		T(test_engine_get_hits_and_misses),
		T(test_engine_keys_with_equal_tags_stay_distinct),
		T(test_engine_chain_head_and_followers_survive),
		T(test_engine_swapped_bucket_is_euclean_not_a_wrong_value),
		T(test_engine_bucket_into_entries_is_euclean_or_miss),
		T(test_engine_forged_header_needs_its_check),
		T(test_engine_damaged_lengths_never_serve_other_bytes),
		T(test_engine_checksum_mode_catches_damaged_values),
		T(test_engine_check_finds_bad_entry_check),
		T(test_engine_moved_head_entry_hits),
		T(test_engine_get_copies_value_and_expiry),
		T(test_engine_get_small_buffer_enobufs),
		T(test_engine_empty_value_roundtrips),
		T(test_engine_overwrite_same_smaller_larger),
		T(test_engine_ttl_expiry),
		T(test_engine_touch_changes_expiry),
		T(test_engine_peek_changes_no_counters),
		T(test_engine_peek_does_not_count_as_use),
		T(test_engine_touch_counts_as_access),
		T(test_engine_del),
		T(test_engine_clear),
		T(test_engine_sweep_reclaims_expired),
		T(test_engine_iter_sees_exactly_live_set),
		T(test_engine_iter_stops_on_callback_value),
		T(test_engine_stats_add_up),
		T(test_engine_unlocked_gets_count_per_client),
		T(test_engine_full_segment_evicts_cold_keeps_hot),
		T(test_engine_read_keys_survive_a_scan),
		T(test_engine_ring_wraparound_values_intact),
		T(test_engine_pool_exhaustion_evicts_not_fails),
		T(test_engine_huge_entry_refused),
		T(test_engine_key_length_limits),
		T(test_engine_empty_key_refused),
		T(test_engine_null_pointers_refused),
		T(test_engine_check_healthy_segments_clean),
		T(test_engine_check_detects_and_repairs_corruption),
		T(test_engine_corrupt_segment_never_serves_wrong_value),
		T(test_engine_recover_resets_dead_holders_segment),
		T(test_engine_recover_inherited_takes_predecessors_locks),
		T(test_engine_recover_keeps_contents_when_seq_even),
		T(test_engine_recover_wakes_waiters),
		T(test_engine_lock_timeout_reported),
		T(test_engine_alive_fn_dead_holder_taken_over),
		T(test_engine_set_timeout_overrides_region_default),
		T(test_engine_dead_holder_takeover_spares_live_holder),
	};

	return cmocka_run_group_tests_name("engine", tests, NULL, NULL);
}
