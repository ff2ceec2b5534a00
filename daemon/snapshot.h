/*
 * snapshot.h - the snapshot file format: encoder and decoder, as pure
 * functions over memory buffers.
 *
 * A snapshot is the cache's live entries written to a file, so that a new
 * region (another geometry, another host's reboot) can be filled again.
 * docs/SNAPSHOT.md describes the format byte by byte; in short:
 *
 *     offset 0      file header (SNAP_PAGE bytes): magic, version, when,
 *                   the highest item version issued, the saved region's
 *                   geometry (information only)
 *     SNAP_PAGE     blocks: each a multiple of SNAP_PAGE bytes, a 32-byte
 *                   header with its XXH3-64 checksum, length, entry count
 *                   and sequence number, then entries (key, value, flags,
 *                   absolute expiry), then zero padding
 *     end - PAGE    trailer (SNAP_PAGE bytes): totals, the file size and a
 *                   hash chained over every block's checksum
 *
 * Every byte of the file is covered by a checksum: a damaged, truncated or
 * extended file is refused with the offset of the first unit that is wrong.
 * A decoder never trusts a length before its bounds are checked, and no
 * entry is handed out of a block before the block's checksum is verified.
 *
 * What it is not: it does no I/O (daemon/persist*.c reads and writes the
 * file) and knows nothing of the engine; it never allocates.
 *
 * Conventions: functions return 0 or a negative errno; the decoders fill a
 * struct snap_err with the file offset and a one-line reason.  All
 * integers in the file are little-endian.  Thread safety: no global state;
 * an object (writer, scan) is used by one thread at a time.
 */
#ifndef SHMC_SNAPSHOT_H
#define SHMC_SNAPSHOT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/* ------------------------------------------------------------------------
 * Constants of the format (version 2; version 1 is still read)
 * ------------------------------------------------------------------------ */

#define SNAP_MAGIC UINT64_C(0x50414e53434d4853) /* "SHMCSNAP" (LE) */
#define SNAP_VERSION 2u	    /* written: entry flags, the highest version */
#define SNAP_VERSION_MIN 1u /* read too: entry flags 0, no version */
#define SNAP_PAGE 4096u	    /* unit of alignment: header, blocks, trailer */
#define SNAP_HDR_SIZE SNAP_PAGE
#define SNAP_TRAILER_SIZE SNAP_PAGE
#define SNAP_BLOCK_MAGIC UINT32_C(0x4b4c4253)	/* "SBLK" */
#define SNAP_TRAILER_MAGIC UINT32_C(0x444e4553) /* "SEND" */
#define SNAP_BLOCK_HDR_SIZE 32u
#define SNAP_ENTRY_HDR_SIZE 20u
/* The writer's block size: entries are packed into blocks of at most this
 * many bytes, except that an entry too large for one gets a block of its
 * own, just large enough. */
#define SNAP_BLOCK_SIZE (UINT32_C(4) << 20)
/* The largest block a reader accepts (an entry is at most the engine's
 * max_kv, half a segment's ring, at most 1 GiB). */
#define SNAP_BLOCK_MAX (UINT32_C(1) << 30)
#define SNAP_KEY_MAX 65535u /* >= ENTRY_KEY_MAX: longer keys load as too big */
/* The smallest valid file: a header and a trailer, no block. */
#define SNAP_MIN_FILE (SNAP_HDR_SIZE + SNAP_TRAILER_SIZE)

/* Error codes the decoders return (snap_err.code). */
#define SNAP_EDAMAGED (-EBADMSG) /* damaged, truncated, not a snapshot */
#define SNAP_EVERSION (-EPROTONOSUPPORT) /* a version this build cannot read */

/* ------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------ */

/* The file header's fields.  Only `created`, the format version and
 * version_max matter to a reader; the geometry of the region that was
 * saved is for the operator (docs/SNAPSHOT.md), a snapshot loads into any
 * geometry. */
struct snap_info {
	uint32_t version;     /* the format: 0 writes SNAP_VERSION (tests
				 write SNAP_VERSION_MIN too); read back */
	uint64_t created;     /* unix seconds when the save began */
	uint64_t version_max; /* the highest item version issued when the
				 save had walked every segment
				 (eng_version_max()); 0 in version 1 */
	uint64_t region_size;
	uint32_t nseg, ring_size, nrec, max_kv;
	uint32_t layout_format; /* LAYOUT_FORMAT of the saved region */
	uint32_t block_size;	/* the writer's SNAP_BLOCK_SIZE */
};

/* What is wrong with a file, and where. */
struct snap_err {
	int code;      /* SNAP_EDAMAGED or SNAP_EVERSION */
	uint64_t off;  /* file offset of the unit (or entry) at fault */
	char msg[200]; /* "offset N: ...", no file name, one line */
};

/* One entry to write: key and value each in up to two pieces (as the
 * engine's ring hands them out; the second piece may be empty). */
struct snap_src {
	const void *key[2];
	size_t key_len[2];
	const void *val[2];
	size_t val_len[2];
	uint64_t expire_at; /* absolute unix seconds; 0 = never */
	uint32_t flags;	    /* the item's flags (0 in a version 1 file) */
};

/* The entry a cache item (from eng_iter()) is saved as.  An item stored
 * with a grace (stale-while-revalidate) is saved to expire at its soft
 * expiry: a loaded value is never served fresh past the time it was to be
 * revalidated, and its grace is not kept (the caller leaves out items
 * already past their soft expiry: see snap_item_stale()). */
static inline struct snap_src snap_src_of_item(const struct eng_item *it)
{
	return (struct snap_src){
		.key = { it->key[0], it->key[1] },
		.key_len = { it->key_len[0], it->key_len[1] },
		.val = { it->val[0], it->val[1] },
		.val_len = { it->val_len[0], it->val_len[1] },
		.expire_at = it->soft ? it->soft : it->expire,
		.flags = it->flags,
	};
}

/* Whether an item is in its grace at `now` (past its soft expiry, served
 * only as stale): a save leaves it out. */
static inline bool snap_item_stale(const struct eng_item *it, uint32_t now)
{
	return it->soft && it->soft <= now;
}

/* One entry read back from a verified block; the pointers point into the
 * block's buffer. */
struct snap_entry {
	const uint8_t *key;
	const uint8_t *val;
	uint32_t klen, vlen;
	uint32_t flags;
	uint64_t expire_at;
};

/* A block being filled (see snap_bw_*).  buf holds cap bytes, cap a
 * multiple of SNAP_PAGE; entries go after the SNAP_BLOCK_HDR_SIZE header. */
struct snap_bw {
	uint8_t *buf;
	size_t cap;
	size_t len;	     /* header + entries so far */
	uint32_t n;	     /* entries */
	uint64_t data_bytes; /* key + value bytes of the entries */
};

/* Running totals of a file, kept by the writer and checked by the reader
 * against the trailer. */
struct snap_totals {
	uint64_t blocks, entries, data_bytes;
	uint64_t file_size; /* bytes so far: header + blocks (+ trailer) */
	uint64_t chain;	    /* hash chained over the block checksums */
	uint64_t hdr_sum;   /* the header's checksum */
};

/* A verified block, for snap_block_next(). */
struct snap_block {
	const uint8_t *p; /* the block's first byte */
	uint64_t off;	  /* its file offset */
	uint64_t seq;
	uint32_t size, n, data_len;
	uint32_t pos; /* next entry, from p */
};

/* The reader's position in a file: a walk over its units (header, blocks,
 * trailer), each verified before the next one is looked at. */
enum snap_unit { SNAP_U_HEADER = 1, SNAP_U_BLOCK = 2, SNAP_U_TRAILER = 3 };

struct snap_scan {
	uint64_t file_size;    /* the file's size, as stat() tells it */
	uint64_t off;	       /* offset of the next unit */
	struct snap_totals t;  /* of the units verified so far */
	struct snap_info info; /* once the header is verified */
	int next; /* the next unit expected: enum snap_unit, 0 done */
};

/* ------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------ */

/* Bytes an entry takes in a block: its header, key and value. */
static inline size_t snap_entry_size(size_t klen, size_t vlen)
{
	return SNAP_ENTRY_HDR_SIZE + klen + vlen;
}

/* The buffer (and file) bytes of a block that holds `entry_bytes` of
 * entries: header and padding to SNAP_PAGE included. */
static inline size_t snap_block_size(size_t entry_bytes)
{
	size_t n = SNAP_BLOCK_HDR_SIZE + entry_bytes;

	return (n + SNAP_PAGE - 1) / SNAP_PAGE * SNAP_PAGE;
}

/* Writes the file header into hdr[0..SNAP_HDR_SIZE) and returns its
 * checksum (for snap_totals.hdr_sum).  Cannot fail. */
uint64_t snap_header_put(uint8_t *hdr, const struct snap_info *info);

/* Starts the totals of a file whose header has checksum hdr_sum. */
void snap_totals_init(struct snap_totals *t, uint64_t hdr_sum);

/* Starts a block in buf (cap bytes: at least SNAP_PAGE, a multiple of
 * SNAP_PAGE, at most SNAP_BLOCK_MAX). */
void snap_bw_init(struct snap_bw *w, void *buf, size_t cap);

/* Whether an entry of `esize` bytes (snap_entry_size) fits in w. */
static inline bool snap_bw_fits(const struct snap_bw *w, size_t esize)
{
	return esize <= w->cap - w->len;
}

/* Appends an entry.  Returns 0, -ENOSPC when it does not fit (w is
 * unchanged), or -EINVAL for a key of 0 or more than SNAP_KEY_MAX bytes or
 * a value of more than SNAP_BLOCK_MAX bytes.  (A file written as version 1
 * must hold entries of flags 0 only: its reader refuses others.) */
int snap_bw_add(struct snap_bw *w, const struct snap_src *e);

/* Finishes the block as number `seq` of its file: writes the header, zeroes
 * the padding, computes the checksum and adds the block to t.  Returns the
 * block's size in bytes (what to write from w->buf), a multiple of
 * SNAP_PAGE.  A block must hold at least one entry (returns 0 if not). */
size_t snap_bw_seal(struct snap_bw *w, uint64_t seq, struct snap_totals *t);

/* Writes the trailer for totals t into p[0..SNAP_TRAILER_SIZE); t's
 * file_size becomes the whole file's.  Cannot fail. */
void snap_trailer_put(uint8_t *p, struct snap_totals *t);

/* ------------------------------------------------------------------------
 * Reading
 *
 * A reader walks the file unit by unit:
 *
 *     snap_scan_init(&s, file_size);
 *     while (s.next) {
 *         p = the first min(SNAP_PAGE, file_size - s.off) bytes at s.off;
 *         snap_scan_peek(&s, p, avail, &size, &err)  -> the unit's size;
 *         p = its `size` bytes at s.off;
 *         snap_scan_unit(&s, p, size, &blk, &err)    -> verified, s.off on;
 *         if SNAP_U_BLOCK: while (snap_block_next(&blk, &e)) use e;
 *     }
 *
 * The first error ends the walk: it is the first damage in file order, and
 * every block before it was verified.
 * ------------------------------------------------------------------------ */

/* Starts a walk over a file of file_size bytes. */
void snap_scan_init(struct snap_scan *s, uint64_t file_size);

/* Reads the size of the next unit from its first bytes p[0..avail), where
 * avail >= min(SNAP_PAGE, file_size - s->off).  Returns 0 and *size (at
 * most file_size - s->off, a multiple of SNAP_PAGE), or SNAP_EDAMAGED with
 * err filled: the file is empty or truncated, a block's magic or size is
 * wrong, or the walk is already over (s->next == 0).  s is unchanged. */
int snap_scan_peek(const struct snap_scan *s, const uint8_t *p, size_t avail,
		   size_t *size, struct snap_err *err);

/* Verifies the unit of `size` bytes (as peeked) at p, and moves s past it.
 * Returns the unit's kind (enum snap_unit; for a block, *blk is set up for
 * snap_block_next), or with err filled
 *   SNAP_EDAMAGED  bad magic, checksum, field or entry framing (flags
 *                  set in a version 1 file included); a block out
 *                  of sequence; a trailer whose totals, size or chain do
 *                  not match what was read;
 *   SNAP_EVERSION  a header of another version, intact.
 * On error s is unchanged. */
int snap_scan_unit(struct snap_scan *s, const uint8_t *p, size_t size,
		   struct snap_block *blk, struct snap_err *err);

/* The next entry of a block that snap_scan_unit() verified: true and *e,
 * or false after the last one. */
bool snap_block_next(struct snap_block *b, struct snap_entry *e);

#endif
