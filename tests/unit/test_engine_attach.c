/*
 * test_engine_attach.c - unit tests of the cache engine (shared/engine.h):
 * planning a region's geometry, formatting it, and attaching to it: good
 * regions shared by two attachments, bad arguments, garbage, another
 * format, mappings shorter or larger than the region.
 *
 * Damage to the header (its geometry and the copy it is served from) is in
 * test_engine_damage.c.  All the engine's unit tests work on a malloc'd
 * region (testutil.h) and assert what a user of the cache would notice
 * through the public API.
 */
#include "testutil.h"
#include "engine_fixture.h"

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
	assert_int_equal(g.max_kv, g.ring_size / 2);
	assert_true(g.nrec > 0);
	assert_true(g.region_size <= 4 * MiB);
	assert_true(g.seg_base + (uint64_t)g.nseg * g.seg_stride <=
		    g.region_size);
	assert_true(g.off_ring + (uint64_t)g.ring_size <= g.seg_stride);

	/* Zero fields take the documented defaults. */
	assert_rc(eng_plan(64 * MiB, &dflt, &g), 0);
	assert_int_equal(g.nseg, eng_default_nseg(64 * MiB, NULL));
	assert_int_equal(g.lock_timeout_ms, ENG_DEFAULT_LOCK_TIMEOUT_MS);
}

/* Without a segment count, a region of 256 MiB or more holds a 1 MiB
 * value (memcached's default item limit) with as many segments as give
 * that, up to 256; a smaller one gets fewer segments. */
static void test_engine_plan_default_nseg_holds_1mib(void **state)
{
	static const struct {
		size_t size;
		uint32_t nseg;
	} want[] = {
		{ 64 * (size_t)MiB, 16 },    { 256 * (size_t)MiB, 64 },
		{ 1024 * (size_t)MiB, 256 }, { 4096 * (size_t)MiB, 256 },
		{ 2 * (size_t)MiB, 1 },	     { 300 * 1024, 1 },
	};
	struct eng_config csum = { .flags = REGION_F_CHECKSUM };
	struct eng_geom g;

	(void)state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(eng_default_nseg(want[i].size, NULL),
				 want[i].nseg);
		assert_rc(eng_plan(want[i].size, NULL, &g), 0);
		assert_int_equal(g.nseg, want[i].nseg);
		if (want[i].size >= 256 * (size_t)MiB) {
			assert_true(g.max_kv >= (1u << 20) + 250);
			assert_rc(eng_plan(want[i].size, &csum, &g), 0);
			assert_true(g.max_kv >= (1u << 20) + 250);
		}
	}
	/* Twice the default's segments would not hold the 1 MiB item. */
	struct eng_config twice = { .nseg = 128 };
	assert_rc(eng_plan(256 * (size_t)MiB, &twice, &g), 0);
	assert_true(g.max_kv < ENG_DEFAULT_ITEM_GOAL);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_engine_plan_geometry_fits_region),
		T(test_engine_plan_default_nseg_holds_1mib),
		T(test_engine_format_refuses_bad_config),
		T(test_engine_format_sets_clock_to_now),
		T(test_engine_attach_good_region_shares_data),
		T(test_engine_attach_refuses_bad_args),
		T(test_engine_attach_refuses_garbage),
		T(test_engine_attach_refuses_other_format),
		T(test_engine_attach_refuses_short_mapping),
		T(test_engine_attach_accepts_larger_mapping),
	};

	return cmocka_run_group_tests_name("engine-attach", tests, NULL, NULL);
}
