/*
 * snapshot.c - the snapshot file format (see snapshot.h and
 * docs/SNAPSHOT.md): the header, block and trailer encoders, and the
 * walk that verifies a file unit by unit.
 *
 * Everything here works on buffers the caller owns; nothing allocates,
 * nothing does I/O.  The decoders treat their input as hostile: every
 * length is checked against what is left before it is used, and a block's
 * entries are looked at only after its checksum matched.
 */
#include "snapshot.h"

#include <assert.h>
#include <endian.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "layout.h"

/* A snapshot of layout 4 (keys up to 65535 bytes) still loads: its keys
 * over ENTRY_KEY_MAX are counted as too big, like values over max_kv. */
static_assert(SNAP_KEY_MAX >= ENTRY_KEY_MAX,
	      "every key the engine holds can be saved");
static_assert(SNAP_BLOCK_SIZE % SNAP_PAGE == 0, "blocks are whole pages");
static_assert(SNAP_BLOCK_MAX % SNAP_PAGE == 0, "blocks are whole pages");

/* ------------------------------------------------------------------------
 * Where the fields are (docs/SNAPSHOT.md has the same tables)
 * ------------------------------------------------------------------------ */

/* File header. */
#define H_MAGIC 0
#define H_SUM 8 /* XXH3-64 of bytes [16, SNAP_HDR_SIZE) */
#define H_VERSION 16
#define H_SIZE 20
#define H_CREATED 24
#define H_REGION_SIZE 32
#define H_NSEG 40
#define H_RING_SIZE 44
#define H_NREC 48
#define H_MAX_KV 52
#define H_LAYOUT 56
#define H_BLOCK_SIZE 60
#define H_VERSION_MAX 64 /* version 2; zero (reserved) in version 1 */
#define H_END 72	 /* zero from here to SNAP_HDR_SIZE */

/* Block header. */
#define B_SUM 0 /* XXH3-64 of bytes [8, size) */
#define B_MAGIC 8
#define B_COUNT 12
#define B_SIZE 16
#define B_DATA_LEN 20
#define B_SEQ 24
static_assert(B_SEQ + 8 == SNAP_BLOCK_HDR_SIZE, "block header layout");

/* Entry header. */
#define E_KLEN 0
#define E_VLEN 4
#define E_FLAGS 8
#define E_EXPIRE 12
static_assert(E_EXPIRE + 8 == SNAP_ENTRY_HDR_SIZE, "entry header layout");

/* Trailer. */
#define T_SUM 0 /* XXH3-64 of bytes [8, SNAP_TRAILER_SIZE) */
#define T_MAGIC 8
#define T_RESERVED 12
#define T_BLOCKS 16
#define T_ENTRIES 24
#define T_DATA_BYTES 32
#define T_FILE_SIZE 40
#define T_CHAIN 48
#define T_HDR_SUM 56
#define T_END 64 /* zero from here to SNAP_TRAILER_SIZE */

/* ------------------------------------------------------------------------
 * Little-endian fields
 * ------------------------------------------------------------------------ */

static inline void st32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static inline void st64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static inline uint32_t ld32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

static inline uint64_t ld64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* The chain over block checksums: c' = XXH3-64(le64(sum), seed c). */
static uint64_t chain_add(uint64_t chain, uint64_t sum)
{
	uint8_t b[8];

	st64(b, sum);
	return XXH3_64bits_withSeed(b, sizeof(b), chain);
}

/* Fills err; returns code. */
__attribute__((format(printf, 4, 5))) static int
fail(struct snap_err *err, int code, uint64_t off, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!err)
		return code;
	err->code = code;
	err->off = off;
	n = snprintf(err->msg, sizeof(err->msg), "offset %" PRIu64 ": ", off);
	if (n < 0 || (size_t)n >= sizeof(err->msg))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(err->msg + n, sizeof(err->msg) - (size_t)n, fmt, ap);
	va_end(ap);
	return code;
}

/* ------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------ */

uint64_t snap_header_put(uint8_t *hdr, const struct snap_info *info)
{
	uint32_t version = info->version ? info->version : SNAP_VERSION;

	memset(hdr, 0, SNAP_HDR_SIZE);
	st64(hdr + H_MAGIC, SNAP_MAGIC);
	st32(hdr + H_VERSION, version);
	st32(hdr + H_SIZE, SNAP_HDR_SIZE);
	st64(hdr + H_CREATED, info->created);
	st64(hdr + H_REGION_SIZE, info->region_size);
	st32(hdr + H_NSEG, info->nseg);
	st32(hdr + H_RING_SIZE, info->ring_size);
	st32(hdr + H_NREC, info->nrec);
	st32(hdr + H_MAX_KV, info->max_kv);
	st32(hdr + H_LAYOUT, info->layout_format);
	st32(hdr + H_BLOCK_SIZE, info->block_size);
	if (version >= 2)
		st64(hdr + H_VERSION_MAX, info->version_max);
	uint64_t sum = XXH3_64bits(hdr + H_VERSION, SNAP_HDR_SIZE - H_VERSION);
	st64(hdr + H_SUM, sum);
	return sum;
}

void snap_totals_init(struct snap_totals *t, uint64_t hdr_sum)
{
	memset(t, 0, sizeof(*t));
	t->file_size = SNAP_HDR_SIZE;
	t->hdr_sum = hdr_sum;
}

void snap_bw_init(struct snap_bw *w, void *buf, size_t cap)
{
	w->buf = buf;
	w->cap = cap;
	w->len = SNAP_BLOCK_HDR_SIZE;
	w->n = 0;
	w->data_bytes = 0;
}

static inline uint8_t *put2(uint8_t *p, const void *const a[2],
			    const size_t n[2])
{
	if (n[0])
		memcpy(p, a[0], n[0]);
	if (n[1])
		memcpy(p + n[0], a[1], n[1]);
	return p + n[0] + n[1];
}

int snap_bw_add(struct snap_bw *w, const struct snap_src *e)
{
	size_t klen = e->key_len[0] + e->key_len[1];
	size_t vlen = e->val_len[0] + e->val_len[1];

	if (klen == 0 || klen > SNAP_KEY_MAX || vlen > SNAP_BLOCK_MAX)
		return -EINVAL;
	if (!snap_bw_fits(w, snap_entry_size(klen, vlen)))
		return -ENOSPC;
	uint8_t *p = w->buf + w->len;
	st32(p + E_KLEN, (uint32_t)klen);
	st32(p + E_VLEN, (uint32_t)vlen);
	st32(p + E_FLAGS, e->flags);
	st64(p + E_EXPIRE, e->expire_at);
	p = put2(p + SNAP_ENTRY_HDR_SIZE, e->key, e->key_len);
	put2(p, e->val, e->val_len);
	w->len += snap_entry_size(klen, vlen);
	w->n++;
	w->data_bytes += klen + vlen;
	return 0;
}

size_t snap_bw_seal(struct snap_bw *w, uint64_t seq, struct snap_totals *t)
{
	if (w->n == 0)
		return 0;
	size_t size = snap_block_size(w->len - SNAP_BLOCK_HDR_SIZE);
	uint8_t *p = w->buf;

	memset(p + w->len, 0, size - w->len);
	st32(p + B_MAGIC, SNAP_BLOCK_MAGIC);
	st32(p + B_COUNT, w->n);
	st32(p + B_SIZE, (uint32_t)size);
	st32(p + B_DATA_LEN, (uint32_t)(w->len - SNAP_BLOCK_HDR_SIZE));
	st64(p + B_SEQ, seq);
	uint64_t sum = XXH3_64bits(p + B_MAGIC, size - B_MAGIC);
	st64(p + B_SUM, sum);
	t->blocks++;
	t->entries += w->n;
	t->data_bytes += w->data_bytes;
	t->file_size += size;
	t->chain = chain_add(t->chain, sum);
	return size;
}

void snap_trailer_put(uint8_t *p, struct snap_totals *t)
{
	t->file_size += SNAP_TRAILER_SIZE;
	memset(p, 0, SNAP_TRAILER_SIZE);
	st32(p + T_MAGIC, SNAP_TRAILER_MAGIC);
	st64(p + T_BLOCKS, t->blocks);
	st64(p + T_ENTRIES, t->entries);
	st64(p + T_DATA_BYTES, t->data_bytes);
	st64(p + T_FILE_SIZE, t->file_size);
	st64(p + T_CHAIN, t->chain);
	st64(p + T_HDR_SUM, t->hdr_sum);
	st64(p + T_SUM, XXH3_64bits(p + T_MAGIC, SNAP_TRAILER_SIZE - T_MAGIC));
}

/* ------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------ */

void snap_scan_init(struct snap_scan *s, uint64_t file_size)
{
	memset(s, 0, sizeof(*s));
	s->file_size = file_size;
	s->next = SNAP_U_HEADER;
}

int snap_scan_peek(const struct snap_scan *s, const uint8_t *p, size_t avail,
		   size_t *size, struct snap_err *err)
{
	uint64_t off = s->off;

	if (s->next == 0 || off > s->file_size)
		return fail(err, SNAP_EDAMAGED, off,
			    "nothing more expected after the trailer");
	uint64_t rem = s->file_size - off;
	if (s->next == SNAP_U_HEADER) {
		if (rem == 0)
			return fail(err, SNAP_EDAMAGED, off,
				    "empty file: not a snapshot");
		if (rem >= 8 && avail >= 8 && ld64(p + H_MAGIC) != SNAP_MAGIC)
			return fail(err, SNAP_EDAMAGED, off,
				    "not a shmcached snapshot (bad magic)");
		if (rem < SNAP_HDR_SIZE)
			return fail(err, SNAP_EDAMAGED, off,
				    "truncated: the file is %" PRIu64 " bytes, "
				    "less than its %u-byte header",
				    rem, SNAP_HDR_SIZE);
		*size = SNAP_HDR_SIZE;
		return 0;
	}

	/* A block or the trailer. */
	if (rem == 0)
		return fail(err, SNAP_EDAMAGED, off,
			    "truncated: the file ends after block %" PRIu64
			    " without its trailer",
			    s->t.blocks);
	if (rem < SNAP_PAGE || avail < SNAP_BLOCK_HDR_SIZE)
		return fail(err, SNAP_EDAMAGED, off,
			    "truncated: %" PRIu64 " bytes left, less than a "
			    "block or the trailer",
			    rem);
	uint32_t magic = ld32(p + B_MAGIC);
	if (magic == SNAP_TRAILER_MAGIC) {
		*size = SNAP_TRAILER_SIZE;
		return 0;
	}
	if (magic != SNAP_BLOCK_MAGIC)
		return fail(err, SNAP_EDAMAGED, off,
			    "block %" PRIu64 " is damaged: neither a block nor "
			    "the trailer starts here (bad magic)",
			    s->t.blocks);
	uint32_t bsize = ld32(p + B_SIZE);
	if (bsize < SNAP_PAGE || bsize % SNAP_PAGE || bsize > SNAP_BLOCK_MAX)
		return fail(err, SNAP_EDAMAGED, off,
			    "block %" PRIu64
			    " is damaged: impossible size %" PRIu32,
			    s->t.blocks, bsize);
	if (bsize > rem)
		return fail(err, SNAP_EDAMAGED, off,
			    "truncated: block %" PRIu64 " is %" PRIu32
			    " bytes but only %" PRIu64 " are left",
			    s->t.blocks, bsize, rem);
	*size = bsize;
	return 0;
}

static int check_header(struct snap_scan *s, const uint8_t *p,
			struct snap_err *err)
{
	uint64_t sum = XXH3_64bits(p + H_VERSION, SNAP_HDR_SIZE - H_VERSION);
	bool sum_ok = sum == ld64(p + H_SUM);
	uint32_t version = ld32(p + H_VERSION);

	if (ld64(p + H_MAGIC) != SNAP_MAGIC)
		return fail(err, SNAP_EDAMAGED, 0,
			    "not a shmcached snapshot (bad magic)");
	if ((version < SNAP_VERSION_MIN || version > SNAP_VERSION) && sum_ok)
		return fail(err, SNAP_EVERSION, 0,
			    "snapshot format version %" PRIu32 ": this "
			    "shmcached reads versions %u to %u",
			    version, SNAP_VERSION_MIN, SNAP_VERSION);
	if (!sum_ok)
		return fail(err, SNAP_EDAMAGED, 0,
			    "the header is damaged (checksum mismatch)");
	uint64_t version_max = ld64(p + H_VERSION_MAX);
	if (ld32(p + H_SIZE) != SNAP_HDR_SIZE || (version < 2 && version_max) ||
	    !all_zero(p + H_END, SNAP_HDR_SIZE - H_END))
		return fail(err, SNAP_EDAMAGED, 0,
			    "the header is damaged (reserved fields set)");
	s->info = (struct snap_info){
		.version = version,
		.version_max = version_max,
		.created = ld64(p + H_CREATED),
		.region_size = ld64(p + H_REGION_SIZE),
		.nseg = ld32(p + H_NSEG),
		.ring_size = ld32(p + H_RING_SIZE),
		.nrec = ld32(p + H_NREC),
		.max_kv = ld32(p + H_MAX_KV),
		.layout_format = ld32(p + H_LAYOUT),
		.block_size = ld32(p + H_BLOCK_SIZE),
	};
	snap_totals_init(&s->t, sum);
	return 0;
}

static int check_block(struct snap_scan *s, const uint8_t *p, size_t size,
		       struct snap_block *blk, struct snap_err *err)
{
	uint64_t off = s->off, k = s->t.blocks;

	if (size < SNAP_PAGE || ld32(p + B_SIZE) != size)
		return fail(err, SNAP_EDAMAGED, off,
			    "block %" PRIu64 " is damaged: size mismatch", k);
	uint64_t sum = XXH3_64bits(p + B_MAGIC, size - B_MAGIC);
	if (sum != ld64(p + B_SUM))
		return fail(err, SNAP_EDAMAGED, off,
			    "block %" PRIu64 " is damaged (checksum mismatch)",
			    k);

	/* The checksum matched: from here on a failure means a writer that
	 * does not follow the format, not a flipped bit. */
	uint32_t n = ld32(p + B_COUNT), data_len = ld32(p + B_DATA_LEN);
	uint64_t seq = ld64(p + B_SEQ);
	if (seq != k)
		return fail(err, SNAP_EDAMAGED, off,
			    "block numbered %" PRIu64 " where block %" PRIu64
			    " belongs (blocks out of order)",
			    seq, k);
	if (n == 0 || data_len > size - SNAP_BLOCK_HDR_SIZE ||
	    size - SNAP_BLOCK_HDR_SIZE - data_len >= SNAP_PAGE)
		return fail(err, SNAP_EDAMAGED, off,
			    "block %" PRIu64 " is malformed: %" PRIu32
			    " entries, %" PRIu32 " data bytes in %zu",
			    k, n, data_len, size);
	size_t end = SNAP_BLOCK_HDR_SIZE + (size_t)data_len;
	if (!all_zero(p + end, size - end))
		return fail(err, SNAP_EDAMAGED, off + end,
			    "block %" PRIu64 " is malformed: padding not zero",
			    k);

	size_t pos = SNAP_BLOCK_HDR_SIZE;
	uint64_t data_bytes = 0;
	bool flags_ok = s->info.version >= 2; /* version 1: reserved, 0 */
	for (uint32_t i = 0; i < n; i++) {
		if (end - pos < SNAP_ENTRY_HDR_SIZE)
			return fail(err, SNAP_EDAMAGED, off + pos,
				    "block %" PRIu64
				    " is malformed: entry %" PRIu32
				    " of %" PRIu32 " is cut off",
				    k, i, n);
		uint32_t klen = ld32(p + pos + E_KLEN);
		uint32_t vlen = ld32(p + pos + E_VLEN);
		uint32_t flags = ld32(p + pos + E_FLAGS);
		uint64_t need = (uint64_t)SNAP_ENTRY_HDR_SIZE + klen + vlen;
		if (klen == 0 || klen > SNAP_KEY_MAX || (flags && !flags_ok) ||
		    need > end - pos)
			return fail(err, SNAP_EDAMAGED, off + pos,
				    "block %" PRIu64
				    " is malformed: entry %" PRIu32
				    " (key %" PRIu32 " bytes, value %" PRIu32
				    ", flags %#" PRIx32 ")",
				    k, i, klen, vlen, flags);
		pos += (size_t)need;
		data_bytes += (uint64_t)klen + vlen;
	}
	if (pos != end)
		return fail(err, SNAP_EDAMAGED, off + pos,
			    "block %" PRIu64 " is malformed: %zu bytes after "
			    "its last entry",
			    k, end - pos);

	s->t.blocks++;
	s->t.entries += n;
	s->t.data_bytes += data_bytes;
	s->t.file_size += size;
	s->t.chain = chain_add(s->t.chain, sum);
	if (blk)
		*blk = (struct snap_block){ .p = p,
					    .off = off,
					    .seq = seq,
					    .size = (uint32_t)size,
					    .n = n,
					    .data_len = data_len,
					    .pos = SNAP_BLOCK_HDR_SIZE };
	return 0;
}

static int check_trailer(struct snap_scan *s, const uint8_t *p,
			 struct snap_err *err)
{
	uint64_t off = s->off;
	const struct snap_totals *t = &s->t;

	if (XXH3_64bits(p + T_MAGIC, SNAP_TRAILER_SIZE - T_MAGIC) !=
	    ld64(p + T_SUM))
		return fail(err, SNAP_EDAMAGED, off,
			    "the trailer is damaged (checksum mismatch)");
	if (ld32(p + T_MAGIC) != SNAP_TRAILER_MAGIC || ld32(p + T_RESERVED) ||
	    !all_zero(p + T_END, SNAP_TRAILER_SIZE - T_END))
		return fail(err, SNAP_EDAMAGED, off,
			    "the trailer is malformed (reserved fields set)");
	if (off + SNAP_TRAILER_SIZE != s->file_size)
		return fail(err, SNAP_EDAMAGED, off,
			    "the trailer is followed by %" PRIu64 " more bytes",
			    s->file_size - off - SNAP_TRAILER_SIZE);
	if (ld64(p + T_HDR_SUM) != t->hdr_sum)
		return fail(err, SNAP_EDAMAGED, off,
			    "the trailer belongs to another file's header");
	if (ld64(p + T_BLOCKS) != t->blocks ||
	    ld64(p + T_ENTRIES) != t->entries ||
	    ld64(p + T_DATA_BYTES) != t->data_bytes ||
	    ld64(p + T_FILE_SIZE) != s->file_size)
		return fail(err, SNAP_EDAMAGED, off,
			    "the trailer counts %" PRIu64 " blocks and %" PRIu64
			    " entries in %" PRIu64
			    " bytes; the file has %" PRIu64 " and %" PRIu64
			    " in %" PRIu64 " (blocks missing or added)",
			    ld64(p + T_BLOCKS), ld64(p + T_ENTRIES),
			    ld64(p + T_FILE_SIZE), t->blocks, t->entries,
			    s->file_size);
	if (ld64(p + T_CHAIN) != t->chain)
		return fail(err, SNAP_EDAMAGED, off,
			    "the blocks are not those the trailer lists "
			    "(checksum chain mismatch)");
	s->t.file_size += SNAP_TRAILER_SIZE;
	return 0;
}

int snap_scan_unit(struct snap_scan *s, const uint8_t *p, size_t size,
		   struct snap_block *blk, struct snap_err *err)
{
	size_t want;
	int rc = snap_scan_peek(s, p, size, &want, err);

	if (rc)
		return rc;
	if (size != want)
		return fail(err, SNAP_EDAMAGED, s->off,
			    "unit of %zu bytes where %zu were announced", size,
			    want);
	if (s->next == SNAP_U_HEADER) {
		if ((rc = check_header(s, p, err)))
			return rc;
		s->off += size;
		s->next = SNAP_U_BLOCK;
		return SNAP_U_HEADER;
	}
	if (ld32(p + B_MAGIC) == SNAP_TRAILER_MAGIC) {
		if ((rc = check_trailer(s, p, err)))
			return rc;
		s->off += size;
		s->next = 0;
		return SNAP_U_TRAILER;
	}
	if ((rc = check_block(s, p, size, blk, err)))
		return rc;
	s->off += size;
	return SNAP_U_BLOCK;
}

bool snap_block_next(struct snap_block *b, struct snap_entry *e)
{
	if (b->pos >= SNAP_BLOCK_HDR_SIZE + (size_t)b->data_len)
		return false;
	const uint8_t *p = b->p + b->pos;
	e->klen = ld32(p + E_KLEN);
	e->vlen = ld32(p + E_VLEN);
	e->flags = ld32(p + E_FLAGS);
	e->expire_at = ld64(p + E_EXPIRE);
	e->key = p + SNAP_ENTRY_HDR_SIZE;
	e->val = e->key + e->klen;
	b->pos += (uint32_t)snap_entry_size(e->klen, e->vlen);
	return true;
}
