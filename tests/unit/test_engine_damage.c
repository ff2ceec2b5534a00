/*
 * test_engine_damage.c - unit tests of the cache engine (shared/engine.h)
 * against damaged memory: the header's geometry served from its copy and
 * repaired by eng_hdr_check, index buckets that name the wrong entry,
 * forged entry headers and their check bits, damaged lengths, damaged
 * values in checksum mode, and eng_check finding and repairing every kind
 * of corruption without a get ever returning a wrong value.
 *
 * The tests look inside the region only to play the part of memory
 * corruption (positions come from the attachment's geometry).
 */
#include "testutil.h"
#include "engine_fixture.h"

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
			case 0:
				h->nseg = 8;
				h->seg_bits = 3;
				break;
			case 1:
				h->seg_stride += 64;
				break;
			case 2:
				h->ring_size += 64;
				break;
			case 3:
				h->max_kv *= 2;
				break;
			case 4:
				h->off_ring -= 64;
				break;
			case 5:
				h->nrec += 1;
				break;
			case 6:
				h->geom_sum ^= 1;
				break;
			case 7:
				h->format ^= 1;
				break;
			case 8:
				h->magic ^= 0x100;
				break;
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
	r->e.hdr->off_recs += 4;
	assert_rc(eng_attach(&e2, r->base, r->size, 2, NULL), 0);
	*r->e.hdr = saved;
	assert_rc(eng_hdr_check(&e2, true, msg, sizeof(msg)), ENG_HDR_PRIMARY);
	assert_rc(eng_hdr_check(&e2, true, msg, sizeof(msg)), 0);
}

/* A bucket that names another chain's head entry (a live entry, with a
 * record that points back at it) is caught: the get refuses with
 * -EUCLEAN, never returns the other key's value, and the segment is reset. */
static void
test_engine_swapped_bucket_is_euclean_not_a_wrong_value(void **state)
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
		buckets[t.b] = t.off[0] + ENTRY_HDR_SIZE + (uint32_t)t.klen0 +
			       1;
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
		set_kv(e, "mt", 999999, 2, 4 * LEN,
		       0); /* grows: dead_at dies */
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
	CORRUPT_RING,	      /* the whole data ring scribbled */
	CORRUPT_BUCKETS,      /* the whole bucket array scribbled */
	CORRUPT_RECS,	      /* every pool record scribbled */
	CORRUPT_REC_OFFSETS,  /* every record points 7 bytes further on */
	CORRUPT_FREE_LIST,    /* the free-slot ring scribbled */
	CORRUPT_ENTRY_VLEN,   /* oldest entry claims a huge value */
	CORRUPT_ENTRY_KLEN,   /* oldest entry claims an empty key */
	CORRUPT_HEAD,	      /* ring head and fill out of range */
	CORRUPT_BUCKET_SWAP,  /* two buckets exchange their head entries */
	CORRUPT_BUCKET_SHIFT, /* every bucket names an offset 16 B on */
	CORRUPT_N
};

static const char *const corruption_names[CORRUPT_N] = {
	"ring",	       "buckets",      "records",    "record offsets",
	"free ring",   "entry vlen",   "entry klen", "ring head",
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
	case CORRUPT_FREE_LIST:
		/* The links of the free records (and the chains). */
		for (uint32_t i = 0; i < e->g.nrec; i++)
			recs[i].next = 0xa5a5a5a5u;
		break;
	case CORRUPT_ENTRY_VLEN:
		v = 0x7fffff00u;
		ring_write(e, seg, tail + offsetof(struct entry_hdr, vlen_use),
			   &v, sizeof(v));
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
					  .flags = mode ? REGION_F_CHECKSUM
							: 0 };
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_engine_attach_uses_copy_of_damaged_geometry),
		T(test_engine_hdr_check_repairs_geometry),
		T(test_engine_swapped_bucket_is_euclean_not_a_wrong_value),
		T(test_engine_bucket_into_entries_is_euclean_or_miss),
		T(test_engine_forged_header_needs_its_check),
		T(test_engine_damaged_lengths_never_serve_other_bytes),
		T(test_engine_checksum_mode_catches_damaged_values),
		T(test_engine_check_finds_bad_entry_check),
		T(test_engine_check_healthy_segments_clean),
		T(test_engine_check_detects_and_repairs_corruption),
		T(test_engine_corrupt_segment_never_serves_wrong_value),
	};

	return cmocka_run_group_tests_name("engine-damage", tests, NULL, NULL);
}
