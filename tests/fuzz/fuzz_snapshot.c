/*
 * fuzz_snapshot.c - libFuzzer target for the snapshot loader's decoder
 * (daemon/snapshot.c): the walk that daemon/persist_load.c runs over a
 * file before any entry of it reaches the cache.
 *
 * Input: one mode byte, then the file image.
 *   mode bit 0: before the walk, recompute every checksum the image's own
 *               structure points at (header, each block whose size is
 *               plausible, the trailer's chain and header sum), so that
 *               the fuzzer gets past them to the fields they protect;
 *               the counts in the trailer are left as they are.
 * The image is walked as persist_load.c does, unit by unit, each unit
 * handed to the decoder in a buffer of exactly its size (and the peek in
 * one of exactly what is left, up to a page), so that ASan sees any read
 * past what the decoder was given.
 *
 * Checks, beyond the sanitizers:
 *   - an error has a code of the two the format defines, an offset inside
 *     the file at or after every unit verified, a NUL-terminated message;
 *   - the entries a verified block hands out lie inside it, in order, and
 *     add up to its size; the walk's totals count exactly those;
 *   - a file that verifies is canonical: encoding what was read (header
 *     fields, each block's entries into a block of the same size, the
 *     totals) with the writer gives back the input byte for byte;
 *   - snap_scan_image() over the whole image agrees with the unit walk.
 */
#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "snapshot.h"

#include "../unit/snap_image.h"
#include "fuzz_check.h"

#define MODE_FIX_SUMS 1u

static uint32_t ld32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

static void st64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

/* Recomputes the checksums, following docs/SNAPSHOT.md (not the codec):
 * header sum at 8 over [16, 4096); a block's sum at 0 over [8, size); the
 * chain c' = XXH3(le64(sum), seed c); the trailer's chain at 48, header sum
 * at 56, own sum at 0 over [8, 4096). */
static void fix_sums(uint8_t *p, size_t len)
{
	uint64_t hdr_sum = 0, chain = 0;
	size_t off = SNAP_HDR_SIZE;

	if (len < SNAP_HDR_SIZE)
		return;
	hdr_sum = XXH3_64bits(p + 16, SNAP_HDR_SIZE - 16);
	st64(p + 8, hdr_sum);
	while (len - off >= SNAP_BLOCK_HDR_SIZE) {
		uint32_t magic = ld32(p + off + 8);
		if (magic == SNAP_TRAILER_MAGIC && len - off >= SNAP_PAGE) {
			st64(p + off + 48, chain);
			st64(p + off + 56, hdr_sum);
			st64(p + off, XXH3_64bits(p + off + 8, SNAP_PAGE - 8));
			return;
		}
		uint32_t bsize = ld32(p + off + 16);
		if (magic != SNAP_BLOCK_MAGIC || bsize < SNAP_PAGE ||
		    bsize % SNAP_PAGE || bsize > len - off)
			return;
		uint64_t sum = XXH3_64bits(p + off + 8, bsize - 8);
		uint8_t b[8];
		st64(p + off, sum);
		st64(b, sum);
		chain = XXH3_64bits_withSeed(b, 8, chain);
		off += bsize;
	}
}

/* An exact-size copy of p[0..n). */
static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
	uint8_t *c = malloc(n ? n : 1);

	CHECK(c != NULL);
	if (n)
		memcpy(c, p, n);
	return c;
}

/* The decoder's promise: on error the walk is where it was. */
static bool same_place(const struct snap_scan *a, const struct snap_scan *b)
{
	return a->off == b->off && a->next == b->next &&
	       a->t.blocks == b->t.blocks && a->t.entries == b->t.entries &&
	       a->t.file_size == b->t.file_size && a->t.chain == b->t.chain;
}

struct count {
	uint64_t n;
};

static int count_entry(const struct snap_entry *e, void *arg)
{
	(void)e;
	((struct count *)arg)->n++;
	return 0;
}

/* Re-encodes a verified block's entries into a block of the same size:
 * must give the same bytes.  A file of format `version` 1 has flags 0. */
static void reencode_block(const struct snap_block *blk, uint32_t version,
			   struct snap_totals *t)
{
	struct snap_block b = *blk;
	struct snap_entry e;
	uint8_t *buf = calloc(1, blk->size);
	struct snap_bw w;
	uint64_t n = 0;
	size_t used = SNAP_BLOCK_HDR_SIZE;

	CHECK(buf != NULL);
	snap_bw_init(&w, buf, blk->size);
	while (snap_block_next(&b, &e)) {
		/* Inside the block, one after the other. */
		CHECK(e.key == blk->p + used + SNAP_ENTRY_HDR_SIZE);
		CHECK(e.klen >= 1 && e.klen <= SNAP_KEY_MAX);
		CHECK(e.val == e.key + e.klen);
		CHECK(e.flags == 0 || version >= 2);
		used += snap_entry_size(e.klen, e.vlen);
		CHECK(used <= SNAP_BLOCK_HDR_SIZE + (size_t)blk->data_len);
		struct snap_src src = {
			.key = { e.key },
			.key_len = { e.klen },
			.val = { e.val },
			.val_len = { e.vlen },
			.expire_at = e.expire_at,
			.flags = e.flags,
		};
		CHECK(snap_bw_add(&w, &src) == 0);
		n++;
	}
	CHECK(n == blk->n);
	CHECK(used == SNAP_BLOCK_HDR_SIZE + (size_t)blk->data_len);
	CHECK(snap_bw_seal(&w, blk->seq, t) == blk->size);
	CHECK(memcmp(buf, blk->p, blk->size) == 0);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	uint8_t *img = dup_exact(data + 1, size - 1);
	size_t len = size - 1;

	if (mode & MODE_FIX_SUMS)
		fix_sums(img, len);

	/* The walk, unit by unit, as persist_load.c does it. */
	struct snap_scan s;
	struct snap_err err = { .code = 0 };
	struct snap_totals t; /* the writer's view of what was read */
	uint64_t entries = 0, last_ok = 0;
	int rc = 0;

	memset(&t, 0, sizeof(t));
	snap_scan_init(&s, len);
	while (s.next) {
		size_t head = len - s.off < SNAP_PAGE ? len - s.off : SNAP_PAGE;
		size_t usize = 0;
		uint8_t *h = dup_exact(img + s.off, head);
		struct snap_scan before = s;

		rc = snap_scan_peek(&s, h, head, &usize, &err);
		free(h);
		CHECK(same_place(&before, &s));
		if (rc)
			break;
		CHECK(usize >= SNAP_PAGE && usize % SNAP_PAGE == 0);
		CHECK(usize <= len - s.off);
		uint8_t *u = dup_exact(img + s.off, usize);
		struct snap_block blk;
		uint64_t off = s.off;
		rc = snap_scan_unit(&s, u, usize, &blk, &err);
		if (rc < 0) {
			CHECK(same_place(&before, &s));
			free(u);
			break;
		}
		CHECK(s.off == off + usize);
		last_ok = s.off;
		switch (rc) {
		case SNAP_U_HEADER: {
			uint8_t again[SNAP_HDR_SIZE];
			snap_totals_init(&t, snap_header_put(again, &s.info));
			CHECK(memcmp(again, u, SNAP_HDR_SIZE) == 0);
			break;
		}
		case SNAP_U_BLOCK:
			CHECK(blk.off == off && blk.size == usize);
			CHECK(blk.seq == t.blocks);
			reencode_block(&blk, s.info.version, &t);
			entries += blk.n;
			break;
		case SNAP_U_TRAILER: {
			uint8_t again[SNAP_TRAILER_SIZE];
			CHECK(s.next == 0);
			snap_trailer_put(again, &t);
			CHECK(memcmp(again, u, SNAP_TRAILER_SIZE) == 0);
			break;
		}
		default:
			CHECK(0);
		}
		CHECK(s.t.entries == entries);
		CHECK(s.t.file_size == s.off);
		free(u);
		rc = 0;
	}
	if (rc) {
		CHECK(err.code == SNAP_EDAMAGED || err.code == SNAP_EVERSION);
		CHECK(rc == err.code);
		CHECK(err.off <= len && err.off >= last_ok);
		CHECK(memchr(err.msg, '\0', sizeof(err.msg)) != NULL);
		CHECK(strncmp(err.msg, "offset ", 7) == 0);
	} else {
		/* Verified: canonical, and the whole file was read. */
		CHECK(s.off == len && s.t.file_size == len);
		CHECK(s.t.blocks == t.blocks && s.t.chain == t.chain);
	}

	/* The one-call walk agrees. */
	struct snap_scan s2;
	struct snap_err err2 = { .code = 0 };
	struct count c = { 0 };
	int rc2 = snap_scan_image(&s2, img, len, count_entry, &c, &err2);
	CHECK(rc2 == rc);
	CHECK(c.n == s2.t.entries && c.n == entries);
	if (rc)
		CHECK(err2.off == err.off && !strcmp(err2.msg, err.msg));
	free(img);
	return 0;
}
