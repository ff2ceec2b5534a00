/*
 * test_snapshot.c - the snapshot codec (daemon/snapshot.c): files built
 * with the writer read back identical; every damage a file can suffer
 * (any flipped byte, any truncation, a wrong version, blocks dropped,
 * swapped or borrowed from another file) is refused with the offset of
 * the unit at fault, and nothing of a damaged block is handed out.
 * Entries keep their flags and the header the highest item version; a
 * file of the previous format (version 1) still reads, with flags 0.
 *
 *     test_snapshot                      the tests
 *     test_snapshot --write-corpus DIR   writes the fuzz seed corpus
 *                                        (tests/fuzz/corpus/snapshot)
 */
#include "testutil.h"

#include <fcntl.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "snap_image.h"
#include "snapshot.h"

/* ------------------------------------------------------------------------
 * Building files in memory, the way daemon/persist_save.c does
 * ------------------------------------------------------------------------ */

struct tentry {
	uint8_t *key, *val;
	uint32_t klen, vlen;
	uint64_t expire;
	uint32_t flags;
};

struct img {
	uint8_t *p;
	size_t len;
	struct snap_totals t;
	size_t unit_off[512]; /* where each unit starts */
	size_t nunits;
};

static const struct snap_info test_info = {
	.version = SNAP_VERSION,
	.created = 1700000000,
	.region_size = 64 << 20,
	.nseg = 256,
	.ring_size = 250000,
	.nrec = 1900,
	.max_kv = 62500,
	.layout_format = 0x12345678,
	.block_size = SNAP_BLOCK_SIZE,
	.version_max = UINT64_C(0x6a5b4c3d00001234),
};

/* The same, as the previous format (version 1) wrote it. */
static struct snap_info info_v1(void)
{
	struct snap_info i = test_info;

	i.version = 1;
	i.version_max = 0;
	return i;
}

static void img_unit(struct img *m, const void *p, size_t n)
{
	assert_true(m->nunits < sizeof(m->unit_off) / sizeof(m->unit_off[0]));
	m->unit_off[m->nunits++] = m->len;
	memcpy(m->p + m->len, p, n);
	m->len += n;
}

static void img_seal(struct img *m, struct snap_bw *w)
{
	size_t off = m->t.file_size;
	size_t size = snap_bw_seal(w, m->t.blocks, &m->t);

	assert_true(size > 0);
	assert_int_equal(off, m->len);
	img_unit(m, w->buf, size);
}

/* Builds a file with header `info` of the n entries in blocks of `cap`
 * bytes (an entry too large gets a block of its own).  Keys and values are
 * handed to the writer in two pieces cut at a random place, as the ring
 * does. */
static void img_build_as(struct img *m, const struct snap_info *info,
			 const struct tentry *es, size_t n, size_t cap,
			 uint64_t seed)
{
	size_t bound = SNAP_MIN_FILE;
	uint8_t hdr[SNAP_PAGE];

	for (size_t i = 0; i < n; i++)
		bound += snap_block_size(
			snap_entry_size(es[i].klen, es[i].vlen));
	memset(m, 0, sizeof(*m));
	m->p = malloc(bound);
	assert_non_null(m->p);
	snap_totals_init(&m->t, snap_header_put(hdr, info));
	img_unit(m, hdr, sizeof(hdr));

	uint8_t *buf = aligned_alloc(SNAP_PAGE, cap);
	assert_non_null(buf);
	struct snap_bw w;
	snap_bw_init(&w, buf, cap);
	for (size_t i = 0; i < n; i++) {
		const struct tentry *e = &es[i];
		size_t kcut = tu_below(&seed, e->klen + 1);
		size_t vcut = tu_below(&seed, e->vlen + 1);
		struct snap_src src = {
			.key = { e->key, e->key + kcut },
			.key_len = { kcut, e->klen - kcut },
			.val = { e->val, e->val + vcut },
			.val_len = { vcut, e->vlen - vcut },
			.expire_at = e->expire,
			.flags = e->flags,
		};
		int rc = snap_bw_add(&w, &src);
		if (rc == -ENOSPC && w.n) {
			img_seal(m, &w);
			snap_bw_init(&w, buf, cap);
			rc = snap_bw_add(&w, &src);
		}
		if (rc == -ENOSPC) {
			size_t own = snap_block_size(
				snap_entry_size(e->klen, e->vlen));
			uint8_t *big = malloc(own);
			struct snap_bw bw;
			assert_non_null(big);
			assert_true(own > cap);
			snap_bw_init(&bw, big, own);
			assert_rc(snap_bw_add(&bw, &src), 0);
			img_seal(m, &bw);
			free(big);
			continue;
		}
		assert_rc(rc, 0);
	}
	if (w.n)
		img_seal(m, &w);
	free(buf);
	uint8_t tr[SNAP_PAGE];
	snap_trailer_put(tr, &m->t);
	img_unit(m, tr, sizeof(tr));
	assert_int_equal(m->len, m->t.file_size);
}

/* The same in the current format. */
static void img_build(struct img *m, const struct tentry *es, size_t n,
		      size_t cap, uint64_t seed)
{
	img_build_as(m, &test_info, es, n, cap, seed);
}

/* The unit a byte belongs to. */
static size_t unit_of(const struct img *m, size_t off)
{
	size_t u = 0;

	while (u + 1 < m->nunits && m->unit_off[u + 1] <= off)
		u++;
	return u;
}

/* Random entries: keys of 1 to 300 bytes (a few up to the 65535 limit),
 * values of 0 to 3000 bytes (a few larger than a test block), expiries
 * none or in the future. */
static struct tentry *random_entries(size_t n, uint64_t seed)
{
	struct tentry *es = calloc(n, sizeof(*es));

	assert_non_null(es);
	for (size_t i = 0; i < n; i++) {
		struct tentry *e = &es[i];
		e->klen = tu_one_in(&seed, 50) ? 1 + tu_below(&seed, 65535)
					       : 1 + tu_below(&seed, 300);
		e->vlen = tu_one_in(&seed, 40) ? 20000 + tu_below(&seed, 20000)
					       : tu_below(&seed, 3000);
		if (i == 0)
			e->klen = 65535;
		if (i == 1)
			e->vlen = 0;
		e->expire = tu_one_in(&seed, 3)
				    ? 0
				    : 1700000000 + tu_below(&seed, 1u << 30);
		if (i == 2)
			e->expire =
				UINT64_MAX; /* beyond the engine's 32 bits */
		/* Not drawn from seed: the same keys and values as before
		 * entries had flags. */
		e->flags = i % 3 ? (uint32_t)(i * 2654435761u) : 0;
		if (i == 3)
			e->flags = UINT32_MAX;
		e->key = malloc(e->klen);
		e->val = malloc(e->vlen ? e->vlen : 1);
		assert_true(e->key && e->val);
		tu_fill(e->key, e->klen, tu_mix(seed, 2 * i));
		tu_fill(e->val, e->vlen, tu_mix(seed, 2 * i + 1));
		memcpy(e->key, &i, e->klen < sizeof(i) ? e->klen : sizeof(i));
	}
	return es;
}

/* The same keys and sizes, other value bytes. */
static struct tentry *clone_entries(const struct tentry *from, size_t n,
				    uint64_t seed)
{
	struct tentry *es = calloc(n, sizeof(*es));

	assert_non_null(es);
	for (size_t i = 0; i < n; i++) {
		es[i] = from[i];
		es[i].key = malloc(from[i].klen);
		es[i].val = malloc(from[i].vlen ? from[i].vlen : 1);
		assert_true(es[i].key && es[i].val);
		memcpy(es[i].key, from[i].key, from[i].klen);
		tu_fill(es[i].val, es[i].vlen, tu_mix(seed, i));
	}
	return es;
}

static void free_entries(struct tentry *es, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(es[i].key);
		free(es[i].val);
	}
	free(es);
}

/* ------------------------------------------------------------------------
 * Reading back
 * ------------------------------------------------------------------------ */

struct expect {
	const struct tentry *es;
	size_t n, seen;
};

static int check_entry(const struct snap_entry *e, void *arg)
{
	struct expect *x = arg;

	assert_true(x->seen < x->n);
	const struct tentry *t = &x->es[x->seen++];
	assert_int_equal(e->klen, t->klen);
	assert_int_equal(e->vlen, t->vlen);
	assert_memory_equal(e->key, t->key, t->klen);
	if (t->vlen)
		assert_memory_equal(e->val, t->val, t->vlen);
	assert_true(e->expire_at == t->expire);
	assert_int_equal(e->flags, t->flags);
	return 0;
}

static int count_entry(const struct snap_entry *e, void *arg)
{
	(void)e;
	(*(size_t *)arg)++;
	return 0;
}

/* Scans img[0..len): must fail; returns the error. */
static struct snap_err must_fail(const uint8_t *img, size_t len,
				 size_t *delivered)
{
	struct snap_scan s;
	struct snap_err err = { 0 };
	size_t n = 0;
	int rc = snap_scan_image(&s, img, len, count_entry, &n, &err);

	if (rc == 0)
		fail_msg("a damaged file of %zu bytes was accepted", len);
	assert_true(rc == SNAP_EDAMAGED || rc == SNAP_EVERSION);
	assert_int_equal(rc, err.code);
	assert_true(err.off <= len);
	assert_non_null(memchr(err.msg, '\0', sizeof(err.msg)));
	assert_true(strncmp(err.msg, "offset ", 7) == 0);
	/* Only verified blocks' entries are handed out. */
	assert_int_equal(n, s.t.entries);
	if (delivered)
		*delivered = n;
	return err;
}

/* Entries in the blocks before unit u. */
static uint64_t entries_before(const struct img *m, size_t u)
{
	struct snap_scan s;
	struct snap_err err;

	snap_scan_image(&s, m->p, m->unit_off[u], NULL, NULL, &err);
	return s.t.entries;
}

/* Recomputes a block's checksum in place (for damage "with a valid
 * checksum": a writer that does not follow the format). */
static void reseal_block(uint8_t *blk)
{
	uint32_t size;
	uint64_t sum;

	memcpy(&size, blk + 16, 4);
	sum = XXH3_64bits(blk + 8, size - 8);
	memcpy(blk, &sum, 8);
}

static void reseal_header(uint8_t *hdr)
{
	uint64_t sum = XXH3_64bits(hdr + 16, SNAP_PAGE - 16);

	memcpy(hdr + 8, &sum, 8);
}

/* ------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------ */

static void test_snapshot_round_trip_random(void **state)
{
	(void)state;
	for (uint64_t seed = 1; seed <= 4; seed++) {
		size_t n = 300 + tu_below(&seed, 300);
		size_t cap = SNAP_PAGE * (2 + tu_below(&seed, 8));
		struct tentry *es = random_entries(n, seed);
		struct img m;
		img_build(&m, es, n, cap, seed);

		struct snap_scan s;
		struct snap_err err;
		struct expect x = { .es = es, .n = n };
		assert_rc(snap_scan_image(&s, m.p, m.len, check_entry, &x,
					  &err),
			  0);
		assert_int_equal(x.seen, n);
		assert_int_equal(s.next, 0);
		assert_int_equal(s.t.entries, n);
		assert_int_equal(s.t.blocks, m.nunits - 2);
		assert_int_equal(s.t.file_size, m.len);
		assert_memory_equal(&s.info, &test_info, sizeof(test_info));
		assert_true(s.t.blocks > 10);
		/* Blocks are whole pages; none is larger than cap unless it
		 * holds a single entry. */
		for (size_t u = 1; u + 1 < m.nunits; u++) {
			size_t size = m.unit_off[u + 1] - m.unit_off[u];
			uint32_t count;
			memcpy(&count, m.p + m.unit_off[u] + 12, 4);
			assert_int_equal(size % SNAP_PAGE, 0);
			assert_true(size <= cap || count == 1);
		}
		free(m.p);
		free_entries(es, n);
	}
}

static void test_snapshot_empty_cache_is_header_and_trailer(void **state)
{
	struct img m;
	struct snap_scan s;
	struct snap_err err;

	(void)state;
	img_build(&m, NULL, 0, SNAP_PAGE, 1);
	assert_int_equal(m.len, SNAP_MIN_FILE);
	assert_rc(snap_scan_image(&s, m.p, m.len, NULL, NULL, &err), 0);
	assert_int_equal(s.t.entries, 0);
	assert_int_equal(s.t.blocks, 0);
	free(m.p);
}

static void test_snapshot_every_byte_corruption_is_detected(void **state)
{
	uint64_t seed = 99;
	struct tentry *es = random_entries(12, seed);
	struct img m;

	(void)state;
	for (size_t i = 0; i < 12; i++) /* small: a file of a few pages */
		es[i].klen = es[i].klen > 40 ? 40 : es[i].klen,
		es[i].vlen = es[i].vlen > 900 ? 900 : es[i].vlen;
	img_build(&m, es, 12, SNAP_PAGE, seed);
	assert_true(m.nunits >= 5);

	uint8_t *copy = malloc(m.len);
	assert_non_null(copy);
	for (size_t off = 0; off < m.len; off++) {
		static const uint8_t masks[] = { 0x01, 0x80, 0xff };
		for (size_t k = 0; k < sizeof(masks); k++) {
			size_t delivered;
			memcpy(copy, m.p, m.len);
			copy[off] ^= masks[k];
			struct snap_err err = must_fail(copy, m.len,
							&delivered);
			size_t u = unit_of(&m, off);
			if (err.off != m.unit_off[u])
				fail_msg("byte %zu (unit at %zu) damaged: "
					 "error at %" PRIu64 ": %s",
					 off, m.unit_off[u], err.off, err.msg);
			assert_int_equal(err.code, SNAP_EDAMAGED);
			/* The blocks before it were all handed out. */
			assert_int_equal(delivered, entries_before(&m, u));
		}
	}
	free(copy);
	free(m.p);
	free_entries(es, 12);
}

static void test_snapshot_truncation_is_detected_at_every_offset(void **state)
{
	uint64_t seed = 7;
	struct tentry *es = random_entries(30, seed);
	struct img m;

	(void)state;
	for (size_t i = 0; i < 30; i++)
		es[i].klen = es[i].klen > 60 ? 60 : es[i].klen,
		es[i].vlen = es[i].vlen > 2000 ? 2000 : es[i].vlen;
	img_build(&m, es, 30, 3 * SNAP_PAGE, seed);
	for (size_t len = 0; len < m.len; len++) {
		/* An exact-size copy, so that a read past the end is caught
		 * by ASan. */
		uint8_t *cut = malloc(len ? len : 1);
		assert_non_null(cut);
		memcpy(cut, m.p, len);
		struct snap_err err = must_fail(cut, len, NULL);
		if (len == 0)
			assert_non_null(strstr(err.msg, "empty file"));
		else if (!strstr(err.msg, "truncated"))
			fail_msg("cut at %zu: %s", len, err.msg);
		assert_true(err.off <= len);
		free(cut);
	}
	/* Bytes added at the end are refused too. */
	uint8_t *longer = calloc(1, m.len + 100);
	assert_non_null(longer);
	memcpy(longer, m.p, m.len);
	struct snap_err err = must_fail(longer, m.len + 100, NULL);
	assert_non_null(strstr(err.msg, "followed by 100 more bytes"));
	assert_int_equal(err.off, m.len - SNAP_TRAILER_SIZE);
	free(longer);
	free(m.p);
	free_entries(es, 30);
}

static void test_snapshot_wrong_version_is_refused(void **state)
{
	struct img m;

	(void)state;
	img_build(&m, NULL, 0, SNAP_PAGE, 1);
	for (uint32_t v = 0; v < 5; v++) {
		if (v >= SNAP_VERSION_MIN && v <= SNAP_VERSION)
			continue;
		uint8_t *copy = malloc(m.len);
		assert_non_null(copy);
		memcpy(copy, m.p, m.len);
		memcpy(copy + 16, &v, 4);
		/* Damaged: the header's checksum no longer matches. */
		struct snap_err err = must_fail(copy, m.len, NULL);
		assert_int_equal(err.code, SNAP_EDAMAGED);
		assert_non_null(strstr(err.msg, "header is damaged"));
		/* Intact but another version: said so. */
		reseal_header(copy);
		err = must_fail(copy, m.len, NULL);
		assert_int_equal(err.code, SNAP_EVERSION);
		assert_int_equal(err.code, -EPROTONOSUPPORT);
		assert_int_equal(err.off, 0);
		char want[32];
		snprintf(want, sizeof(want), "version %u:", v);
		assert_non_null(strstr(err.msg, want));
		free(copy);
	}
	free(m.p);
}

static void test_snapshot_empty_and_foreign_files_are_refused(void **state)
{
	static uint8_t zeros[3 * SNAP_PAGE];
	uint8_t text[] = "this is a text file, not a snapshot\n";
	struct snap_err err;

	(void)state;
	err = must_fail(zeros, 0, NULL);
	assert_non_null(strstr(err.msg, "empty file"));
	assert_int_equal(err.code, -EBADMSG);
	err = must_fail(zeros, sizeof(zeros), NULL);
	assert_non_null(strstr(err.msg, "bad magic"));
	err = must_fail(text, sizeof(text) - 1, NULL);
	assert_non_null(strstr(err.msg, "bad magic"));
	err = must_fail((const uint8_t *)"SHMC", 4, NULL);
	assert_non_null(strstr(err.msg, "truncated"));
}

static void test_snapshot_blocks_dropped_swapped_or_borrowed(void **state)
{
	uint64_t seed = 3;
	struct tentry *es = random_entries(40, seed), *other;
	struct img m, o;

	(void)state;
	for (size_t i = 0; i < 40; i++)
		es[i].klen = es[i].klen > 50 ? 50 : es[i].klen,
		es[i].vlen = es[i].vlen > 1500 ? 1500 : es[i].vlen;
	img_build(&m, es, 40, 2 * SNAP_PAGE, seed);
	assert_true(m.nunits >= 6);
	size_t b1 = m.unit_off[1], b2 = m.unit_off[2], b3 = m.unit_off[3];
	uint8_t *copy = malloc(m.len);
	assert_non_null(copy);

	/* Block 1 dropped: block 2 is found where 1 belongs. */
	memcpy(copy, m.p, b2);
	memcpy(copy + b2, m.p + b3, m.len - b3);
	struct snap_err err = must_fail(copy, m.len - (b3 - b2), NULL);
	assert_int_equal(err.off, b2);
	assert_non_null(strstr(err.msg, "out of order"));

	/* Blocks 0 and 1 swapped (same sizes here). */
	if (b2 - b1 == b3 - b2) {
		memcpy(copy, m.p, m.len);
		memcpy(copy + b1, m.p + b2, b2 - b1);
		memcpy(copy + b2, m.p + b1, b2 - b1);
		err = must_fail(copy, m.len, NULL);
		assert_int_equal(err.off, b1);
		assert_non_null(strstr(err.msg, "out of order"));
	}

	/* The last blocks dropped along with the trailer's counts: the
	 * trailer of the whole file no longer matches. */
	size_t last = m.unit_off[m.nunits - 2];
	memcpy(copy, m.p, last);
	memcpy(copy + last, m.p + m.len - SNAP_TRAILER_SIZE, SNAP_TRAILER_SIZE);
	err = must_fail(copy, last + SNAP_TRAILER_SIZE, NULL);
	assert_int_equal(err.off, last);
	assert_non_null(strstr(err.msg, "trailer counts"));

	/* A block of another file with the same number and size, and the
	 * other file's trailer: each unit is intact, the chain is not. */
	other = clone_entries(es, 40, seed + 1000);
	img_build(&o, other, 40, 2 * SNAP_PAGE, seed);
	assert_int_equal(o.len, m.len);
	memcpy(copy, m.p, m.len);
	memcpy(copy + b1, o.p + b1, b2 - b1);
	err = must_fail(copy, m.len, NULL);
	assert_int_equal(err.off, m.len - SNAP_TRAILER_SIZE);
	assert_non_null(strstr(err.msg, "checksum chain"));
	memcpy(copy, m.p, m.len);
	memcpy(copy + m.len - SNAP_TRAILER_SIZE,
	       o.p + m.len - SNAP_TRAILER_SIZE, SNAP_TRAILER_SIZE);
	err = must_fail(copy, m.len, NULL);
	assert_int_equal(err.off, m.len - SNAP_TRAILER_SIZE);
	free(copy);
	free(o.p);
	free(m.p);
	free_entries(other, 40);
	free_entries(es, 40);
}

static void test_snapshot_malformed_blocks_with_valid_checksums(void **state)
{
	struct tentry es[3] = {
		{ (uint8_t *)"alpha", (uint8_t *)"one", 5, 3, 0, 0 },
		{ (uint8_t *)"beta", (uint8_t *)"two", 4, 3, 1800000000, 0 },
		{ (uint8_t *)"gamma", (uint8_t *)"three", 5, 5, 0, 0 },
	};
	struct img m;

	(void)state;
	/* Version 1: its entries' flags are reserved, 0. */
	struct snap_info v1 = info_v1();
	img_build_as(&m, &v1, es, 3, SNAP_PAGE, 1);
	assert_int_equal(m.nunits, 3);
	const size_t b = SNAP_HDR_SIZE, e0 = b + SNAP_BLOCK_HDR_SIZE;
	uint8_t *copy = malloc(m.len);
	assert_non_null(copy);
	struct {
		size_t at;
		uint32_t value;
		const char *want;
	} cases[] = {
		{ e0 + 0, 0, "entry 0" },	       /* key of 0 bytes */
		{ e0 + 0, 70000, "entry 0" },	       /* key too long */
		{ e0 + 4, 1000, "entry 0" },	       /* value runs over */
		{ e0 + 8, 1, "flags" },		       /* flags set in v1 */
		{ b + 12, 2, "after its last entry" }, /* count too small */
		{ b + 12, 4, "cut off" },	       /* count too large */
		{ b + 12, 0, "0 entries" },	       /* empty block */
		{ b + 20, 5000, "data bytes" },	       /* data past the block */
		{ b + 24, 1, "out of order" },	       /* sequence number */
		{ e0 + 200, 0xdead, "padding" },       /* padding not zero */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t delivered;
		memcpy(copy, m.p, m.len);
		memcpy(copy + cases[i].at, &cases[i].value, 4);
		reseal_block(copy + b);
		struct snap_err err = must_fail(copy, m.len, &delivered);
		if (!strstr(err.msg, cases[i].want))
			fail_msg("case %zu: %s", i, err.msg);
		assert_true(err.off >= b && err.off < b + SNAP_PAGE);
		assert_int_equal(delivered, 0);
	}
	free(copy);
	free(m.p);
}

static void test_snapshot_writer_limits(void **state)
{
	uint8_t *buf = aligned_alloc(SNAP_PAGE, SNAP_PAGE);
	static uint8_t key[SNAP_KEY_MAX + 1], val[SNAP_PAGE];
	struct snap_bw w;
	struct snap_totals t;

	(void)state;
	assert_non_null(buf);
	snap_bw_init(&w, buf, SNAP_PAGE);
	snap_totals_init(&t, 0);
	assert_int_equal(snap_bw_seal(&w, 0, &t), 0); /* no empty blocks */
	struct snap_src e = { .key = { key }, .key_len = { 0 } };
	assert_rc(snap_bw_add(&w, &e), -EINVAL);
	e.key_len[0] = SNAP_KEY_MAX + 1;
	assert_rc(snap_bw_add(&w, &e), -EINVAL);
	e.key_len[0] = 10;
	e.flags = UINT32_MAX; /* any flags: they are the item's */
	/* Exactly full, then one byte more does not fit. */
	e.val[0] = val;
	e.val_len[0] = SNAP_PAGE - SNAP_BLOCK_HDR_SIZE - SNAP_ENTRY_HDR_SIZE -
		       10;
	assert_rc(snap_bw_add(&w, &e), 0);
	assert_int_equal(w.len, SNAP_PAGE);
	e.val_len[0] = 0;
	size_t before = w.len;
	assert_rc(snap_bw_add(&w, &e), -ENOSPC);
	assert_int_equal(w.len, before);
	assert_int_equal(snap_bw_seal(&w, 0, &t), SNAP_PAGE);
	assert_int_equal(t.blocks, 1);
	assert_int_equal(t.entries, 1);
	assert_int_equal(t.file_size, SNAP_HDR_SIZE + SNAP_PAGE);
	free(buf);
}

/* The engine to a file image and back into a cache of another geometry
 * (what a layout upgrade does through persist.c), without the file. */
struct to_img {
	struct snap_bw w;
	struct img *m;
	struct eng *e;
};

static int iter_to_img(const struct eng_item *it, void *arg)
{
	struct to_img *x = arg;
	struct snap_src src = snap_src_of_item(it);
	int rc;

	if (snap_item_stale(it, eng_now(x->e))) /* as persist_save.c */
		return 0;
	rc = snap_bw_add(&x->w, &src);

	if (rc == -ENOSPC) {
		img_seal(x->m, &x->w);
		snap_bw_init(&x->w, x->w.buf, x->w.cap);
		rc = snap_bw_add(&x->w, &src);
	}
	return rc;
}

/* The cache's entries to a file image (at most 16 MiB), as
 * persist_save.c writes it: the header has the highest version. */
static void img_of_engine(struct img *m, struct eng *e)
{
	struct snap_info info = test_info;
	uint8_t hdr[SNAP_PAGE], tr[SNAP_PAGE];

	info.version_max = eng_version_max(e);
	memset(m, 0, sizeof(*m));
	m->p = malloc(16 << 20);
	assert_non_null(m->p);
	snap_totals_init(&m->t, snap_header_put(hdr, &info));
	img_unit(m, hdr, sizeof(hdr));
	struct to_img x = { .m = m, .e = e };
	snap_bw_init(&x.w, aligned_alloc(SNAP_PAGE, 64 * SNAP_PAGE),
		     64 * SNAP_PAGE);
	assert_non_null(x.w.buf);
	assert_rc(eng_iter(e, 0, e->g.nseg, iter_to_img, &x), 0);
	if (x.w.n)
		img_seal(m, &x.w);
	free(x.w.buf);
	snap_trailer_put(tr, &m->t);
	img_unit(m, tr, sizeof(tr));
}

/* Stores an entry as persist_load.c does: with its flags and absolute
 * expiry (one expired by now is skipped). */
static int store_as_load(const struct snap_entry *en, void *arg)
{
	struct eng_wopts o = { .flags = en->flags,
			       .expire_at = (uint32_t)en->expire_at };
	int rc = eng_store(arg, en->key, en->klen, en->val, en->vlen, &o, NULL);

	return rc == -ETIME ? 0 : rc;
}

/* Loads an image as persist_load.c does: the version floor raised to the
 * header's highest version first, then every entry stored. */
static void load_img(struct eng *e, const struct img *m)
{
	struct snap_scan s;
	struct snap_err err;

	/* The header first: a file of one unit is its header (then it is
	 * truncated, which the walk says after the header is read). */
	snap_scan_init(&s, m->len);
	assert_rc(snap_scan_unit(&s, m->p, SNAP_HDR_SIZE, NULL, &err),
		  SNAP_U_HEADER);
	if (s.info.version_max)
		assert_rc(eng_version_floor(e, s.info.version_max), 0);
	assert_rc(snap_scan_image(&s, m->p, m->len, store_as_load, e, &err), 0);
}

static int store_entry(const struct snap_entry *e, void *arg)
{
	int rc = eng_set_expire_at(arg, e->key, e->klen, e->val, e->vlen,
				   (uint32_t)e->expire_at);

	return rc == -ETIME ? 0 : rc;
}

static void test_snapshot_engine_round_trip_into_other_geometry(void **state)
{
	struct tu_region *r = *state, dst = { 0 };
	struct eng_config from = { .nseg = 8 }, to = { .nseg = 32 };
	uint8_t val[2000];
	char key[32];
	struct img m;
	const uint32_t n = 3000;

	tu_region_open(r, 8 << 20, &from);
	uint32_t now = eng_now(&r->e);
	for (uint32_t i = 0; i < n; i++) {
		size_t klen = tu_key(key, sizeof(key), "k", i);
		tu_fill(val, 1 + i % sizeof(val), i);
		assert_rc(eng_set(&r->e, key, klen, val, 1 + i % sizeof(val),
				  i % 3 ? 0 : 100 + i),
			  0);
	}
	/* One already expired by the time of the save: not saved. */
	assert_rc(eng_set(&r->e, "gone", 4, "x", 1, 1), 0);
	eng_clock_set(&r->e, now + 2);

	img_of_engine(&m, &r->e);
	assert_int_equal(m.t.entries, n);

	tu_region_open(&dst, 16 << 20, &to);
	eng_clock_set(&dst.e, now + 2);
	struct snap_scan s;
	struct snap_err err;
	assert_rc(snap_scan_image(&s, m.p, m.len, store_entry, &dst.e, &err),
		  0);
	for (uint32_t i = 0; i < n; i++) {
		size_t klen = tu_key(key, sizeof(key), "k", i), vlen;
		uint32_t exp;
		uint8_t got[sizeof(val)];
		tu_fill(val, 1 + i % sizeof(val), i);
		assert_rc(eng_get(&dst.e, key, klen, got, sizeof(got), &vlen,
				  &exp),
			  0);
		assert_int_equal(vlen, 1 + i % sizeof(val));
		assert_memory_equal(got, val, vlen);
		assert_int_equal(exp, i % 3 ? 0 : now + 100 + i);
	}
	tu_assert_miss(&dst.e, "gone", 4);
	tu_assert_all_clean(&dst.e);
	tu_region_close(&dst);
	free(m.p);
}

/* Flags survive a save and a load; every version the loaded cache issues
 * is above the saved cache's highest, so a CAS with a version read before
 * the save fails after the load, even in a cache whose versions started
 * where the saved one's did. */
static void test_snapshot_flags_and_versions_survive_a_load(void **state)
{
	struct tu_region *r = *state, dst = { 0 };
	struct eng_config cfg = { .nseg = 8, .version_floor = 1u << 20 };
	struct eng_meta m0, m;
	char key[32], buf[64];
	struct img img;
	const uint32_t n = 500;

	tu_region_open(r, 4 << 20, &cfg);
	for (uint32_t i = 0; i < n; i++) {
		size_t klen = tu_key(key, sizeof(key), "f", i);
		struct eng_wopts o = { .flags = i * 2654435761u };
		assert_rc(eng_store(&r->e, key, klen, key, klen, &o, NULL), 0);
	}
	assert_rc(eng_get_ex(&r->e, "f0", 2, buf, sizeof(buf), &m0), 0);
	img_of_engine(&img, &r->e);
	uint64_t saved_max = eng_version_max(&r->e);

	tu_region_open(&dst, 4 << 20, &cfg); /* same geometry, same floor */
	load_img(&dst.e, &img);
	for (uint32_t i = 0; i < n; i++) {
		size_t klen = tu_key(key, sizeof(key), "f", i);
		assert_rc(eng_get_ex(&dst.e, key, klen, buf, sizeof(buf), &m),
			  0);
		assert_int_equal(m.flags, i * 2654435761u);
		assert_true(m.cas > saved_max);
	}
	struct eng_wopts cas = { .mode = ENG_CAS, .cas = m0.cas };
	assert_rc(eng_store(&dst.e, "f0", 2, "new", 3, &cas, NULL), -EEXIST);
	assert_rc(eng_store(&dst.e, "new", 3, "x", 1, NULL, NULL), 0);
	assert_rc(eng_get_ex(&dst.e, "new", 3, buf, sizeof(buf), &m), 0);
	assert_true(m.cas > saved_max);
	tu_region_close(&dst);
	free(img.p);
}

/* An item stored with a grace is saved to expire at its soft expiry (a
 * loaded value is never served fresh past it); one already in its grace
 * at the save is left out. */
static void
test_snapshot_grace_items_are_saved_to_their_soft_expiry(void **state)
{
	struct tu_region *r = *state, dst = { 0 };
	struct eng_config cfg = { .nseg = 4 };
	struct eng_meta m;
	char buf[16];
	struct img img;

	tu_region_open(r, 2 << 20, &cfg);
	uint32_t now = eng_now(&r->e);
	struct eng_wopts fresh = { .ttl_s = 100, .grace_s = 50, .flags = 7 };
	struct eng_wopts soon = { .ttl_s = 10, .grace_s = 50 };
	assert_rc(eng_store(&r->e, "fresh", 5, "a", 1, &fresh, NULL), 0);
	assert_rc(eng_store(&r->e, "stale", 5, "b", 1, &soon, NULL), 0);
	eng_clock_set(&r->e, now + 20); /* "stale" is in its grace */
	img_of_engine(&img, &r->e);
	assert_int_equal(img.t.entries, 1);

	tu_region_open(&dst, 2 << 20, &cfg);
	eng_clock_set(&dst.e, now + 20);
	load_img(&dst.e, &img);
	assert_rc(eng_get_ex(&dst.e, "fresh", 5, buf, sizeof(buf), &m), 0);
	assert_int_equal(m.expire, now + 100);
	assert_int_equal(m.flags, 7);
	tu_assert_miss(&dst.e, "stale", 5);
	tu_region_close(&dst);
	free(img.p);
}

/* A file the previous format's writer made (the fuzz seed valid-one-block,
 * checked in before version 2: a mode byte, then the file) still reads:
 * version 1, no highest version, flags 0.  The version 1 writer here gives
 * it byte for byte.  A version 1 header with the version 2 field set is
 * damaged. */
static void test_snapshot_previous_format_reads_with_flags_0(void **state)
{
	const char *path = getenv("SNAP_V1_FIXTURE");
	static uint8_t file[1 << 16];
	struct tentry es[6] = { 0 };
	struct snap_scan s;
	struct snap_err err;
	struct img m;

	(void)state;
	if (!path)
		skip();
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	ssize_t got = read(fd, file, sizeof(file));
	close(fd);
	assert_true(got > 1 && file[0] == 0);
	uint8_t *p = file + 1;
	size_t len = (size_t)got - 1;
	assert_int_equal(p[16], 1); /* format version 1 */

	static const char *const keys[6] = { "a",  "user:42", "empty-value",
					     "k3", "k4",      "k5" };
	static const char *const vals[6] = { "1",    "{\"name\":\"ada\"}",
					     "",     "three",
					     "four", "five" };
	static const uint64_t exps[6] = { 0, 1800000000, 0, UINT64_MAX, 1, 0 };
	for (size_t i = 0; i < 6; i++)
		es[i] = (struct tentry){ (uint8_t *)keys[i],
					 (uint8_t *)vals[i],
					 (uint32_t)strlen(keys[i]),
					 (uint32_t)strlen(vals[i]),
					 exps[i],
					 0 };
	struct expect x = { .es = es, .n = 6 };
	assert_rc(snap_scan_image(&s, p, len, check_entry, &x, &err), 0);
	assert_int_equal(x.seen, 6);
	assert_int_equal(s.info.version, 1);
	assert_int_equal(s.info.version_max, 0);

	struct snap_info v1 = info_v1();
	img_build_as(&m, &v1, es, 6, SNAP_PAGE, 1);
	assert_int_equal(m.len, len);
	assert_memory_equal(m.p, p, len);

	m.p[SNAP_HDR_SIZE - SNAP_PAGE + 64] = 1; /* the highest version */
	reseal_header(m.p);
	err = must_fail(m.p, m.len, NULL);
	assert_int_equal(err.code, SNAP_EDAMAGED);
	assert_non_null(strstr(err.msg, "reserved fields set"));
	free(m.p);
}

/* ------------------------------------------------------------------------
 * The fuzz seed corpus (tests/fuzz/fuzz_snapshot.c reads a mode byte, then
 * the file: mode 0 as is, mode 1 with every checksum recomputed first)
 * ------------------------------------------------------------------------ */

static int write_seed(const char *dir, const char *name, uint8_t mode,
		      const uint8_t *p, size_t len)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, &mode, 1) != 1 ||
	    (len && write(fd, p, len) != (ssize_t)len) || close(fd) < 0) {
		perror(path);
		return 1;
	}
	return 0;
}

/* The current format's seeds: entries with flags, the header's highest
 * version, and a version this build does not read. */
static int write_corpus_v2(const char *dir, struct tentry *small,
			   struct tentry *many)
{
	struct img s, t;
	int bad = 0;

	for (size_t i = 0; i < 6; i++)
		small[i].flags = i % 2 ? 0 : 0x100u << i;
	for (size_t i = 0; i < 20; i++)
		many[i].flags = (uint32_t)(i * 2654435761u);
	img_build(&s, small, 6, SNAP_PAGE, 1);
	img_build(&t, many, 20, 2 * SNAP_PAGE, 5);
	uint8_t *c = malloc(s.len);
	if (!c)
		return 1;
	bad |= write_seed(dir, "v2-valid-one-block", 0, s.p, s.len);
	bad |= write_seed(dir, "v2-valid-blocks", 0, t.p, t.len);
	bad |= write_seed(dir, "v2-fixsums-valid-blocks", 1, t.p, t.len);
	memcpy(c, s.p, s.len);
	c[16] = 3;
	reseal_header(c);
	bad |= write_seed(dir, "v2-version-3", 0, c, s.len);
	memcpy(c, s.p, s.len);
	c[16] = 1; /* a version 1 header with the highest version set */
	reseal_header(c);
	bad |= write_seed(dir, "v2-version-1-with-version-max", 0, c, s.len);
	memcpy(c, s.p, s.len);
	c[80] = 1; /* past the highest version: reserved */
	bad |= write_seed(dir, "v2-fixsums-header-reserved", 1, c, s.len);
	free(c);
	free(s.p);
	free(t.p);
	return bad;
}

static int write_corpus(const char *dir)
{
	struct tentry small[6] = {
		{ (uint8_t *)"a", (uint8_t *)"1", 1, 1, 0, 0 },
		{ (uint8_t *)"user:42", (uint8_t *)"{\"name\":\"ada\"}", 7, 14,
		  1800000000, 0 },
		{ (uint8_t *)"empty-value", (uint8_t *)"", 11, 0, 0, 0 },
		{ (uint8_t *)"k3", (uint8_t *)"three", 2, 5, UINT64_MAX, 0 },
		{ (uint8_t *)"k4", (uint8_t *)"four", 2, 4, 1, 0 },
		{ (uint8_t *)"k5", (uint8_t *)"five", 2, 4, 0, 0 },
	};
	struct tentry *many = random_entries(20, 5);
	struct snap_info v1 = info_v1();
	struct img e, s, t;
	int bad = 0;

	/* The seeds without a "v2-" prefix are version 1 files (flags 0), as
	 * the previous format's writer made them, byte for byte. */
	for (size_t i = 0; i < 20; i++)
		many[i].klen = many[i].klen > 30 ? 30 : many[i].klen,
		many[i].vlen = many[i].vlen > 1500 ? 1500 : many[i].vlen,
		many[i].flags = 0;
	/* A block of its own (the blocks here are of 2 pages). */
	free(many[7].val);
	many[7].vlen = 9000;
	many[7].val = malloc(many[7].vlen);
	if (!many[7].val)
		return 1;
	tu_fill(many[7].val, many[7].vlen, 77);
	img_build_as(&e, &v1, NULL, 0, SNAP_PAGE, 1);
	img_build_as(&s, &v1, small, 6, SNAP_PAGE, 1);
	img_build_as(&t, &v1, many, 20, 2 * SNAP_PAGE, 5);
	size_t tb1 = t.unit_off[1], tb2 = t.unit_off[2];
	uint8_t *c = malloc(t.len + SNAP_PAGE);
	if (!c)
		return 1;

	bad |= write_seed(dir, "valid-empty-cache", 0, e.p, e.len);
	bad |= write_seed(dir, "valid-one-block", 0, s.p, s.len);
	bad |= write_seed(dir, "valid-blocks", 0, t.p, t.len);
	bad |= write_seed(dir, "fixsums-valid-blocks", 1, t.p, t.len);
	bad |= write_seed(dir, "empty", 0, NULL, 0);
	bad |= write_seed(dir, "short-header", 0, s.p, 100);
	memcpy(c, s.p, s.len);
	c[0] ^= 0x20;
	bad |= write_seed(dir, "bad-magic", 0, c, s.len);
	memcpy(c, s.p, s.len);
	c[16] = 2;
	reseal_header(c);
	bad |= write_seed(dir, "version-2", 0, c, s.len);
	memcpy(c, s.p, s.len);
	c[40] ^= 1;
	bad |= write_seed(dir, "header-flip", 0, c, s.len);
	memcpy(c, t.p, t.len);
	c[tb1 + 100] ^= 4;
	bad |= write_seed(dir, "block-flip", 0, c, t.len);
	bad |= write_seed(dir, "truncated-mid-block", 0, t.p, tb2 + 1000);
	bad |= write_seed(dir, "truncated-no-trailer", 0, t.p,
			  t.len - SNAP_TRAILER_SIZE);
	bad |= write_seed(dir, "truncated-mid-trailer", 0, t.p, t.len - 10);
	memset(c, 0, t.len + SNAP_PAGE);
	memcpy(c, t.p, t.len);
	bad |= write_seed(dir, "extra-bytes", 0, c, t.len + 10);
	memcpy(c, t.p, tb1);
	memcpy(c + tb1, t.p + tb2, t.len - tb2);
	bad |= write_seed(dir, "block-dropped", 0, c, t.len - (tb2 - tb1));
	memcpy(c, t.p, t.len);
	memcpy(c + t.len - SNAP_TRAILER_SIZE, s.p + s.len - SNAP_TRAILER_SIZE,
	       SNAP_TRAILER_SIZE);
	bad |= write_seed(dir, "trailer-of-other-file", 0, c, t.len);
	memcpy(c, t.p, t.len);
	memcpy(c + tb1 + 16, "\x00\x00\x00\x40", 4); /* 1 GiB */
	bad |= write_seed(dir, "block-size-huge", 0, c, t.len);
	/* For mode 1: damage past the checksums. */
	static const struct {
		const char *name;
		size_t at;
		uint32_t value;
	} fix[] = {
		{ "fixsums-entry-key-empty", 32, 0 },
		{ "fixsums-entry-value-overruns", 36, 100000 },
		{ "fixsums-entry-flags", 40, 1 },
		{ "fixsums-block-count", 12, 1000 },
		{ "fixsums-block-seq", 24, 7 },
		{ "fixsums-padding", 4000, 0xdeadbeef },
	};
	for (size_t i = 0; i < sizeof(fix) / sizeof(fix[0]); i++) {
		memcpy(c, s.p, s.len);
		memcpy(c + SNAP_HDR_SIZE + fix[i].at, &fix[i].value, 4);
		bad |= write_seed(dir, fix[i].name, 1, c, s.len);
	}
	memcpy(c, t.p, t.len);
	c[t.len - SNAP_TRAILER_SIZE + 24] ^= 1; /* the entry count */
	bad |= write_seed(dir, "fixsums-trailer-count", 1, c, t.len);
	free(c);
	free(e.p);
	free(s.p);
	free(t.p);
	bad |= write_corpus_v2(dir, small, many);
	free_entries(many, 20);
	return bad;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--write-corpus"))
		return write_corpus(argv[2]);
#define T(fn) cmocka_unit_test(fn)
#define R(fn)                                                                  \
	cmocka_unit_test_setup_teardown(fn, tu_region_setup, tu_region_teardown)
	const struct CMUnitTest tests[] = {
		T(test_snapshot_round_trip_random),
		T(test_snapshot_empty_cache_is_header_and_trailer),
		T(test_snapshot_every_byte_corruption_is_detected),
		T(test_snapshot_truncation_is_detected_at_every_offset),
		T(test_snapshot_wrong_version_is_refused),
		T(test_snapshot_empty_and_foreign_files_are_refused),
		T(test_snapshot_blocks_dropped_swapped_or_borrowed),
		T(test_snapshot_malformed_blocks_with_valid_checksums),
		T(test_snapshot_writer_limits),
		R(test_snapshot_engine_round_trip_into_other_geometry),
		R(test_snapshot_flags_and_versions_survive_a_load),
		R(test_snapshot_grace_items_are_saved_to_their_soft_expiry),
		T(test_snapshot_previous_format_reads_with_flags_0),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
