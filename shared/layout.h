/*
 * layout.h - every structure that lives in the shared-memory region.
 *
 * This header is the single definition of the on-shm format.  Everything in
 * it uses fixed-width types, offsets instead of pointers, explicit padding and
 * static assertions on size and offsets, so that every process (and every
 * build of the daemon and of libshmc) agrees on the bytes.  Each field says
 * who writes it and under which lock or atomic.  The picture of the region is
 * in docs/LAYOUT.md.
 *
 * It is not the place for logic: the geometry is computed by eng_plan() and
 * written by eng_format() (engine.c), the segments are operated on by
 * seg.c.
 *
 *   region:  [region_hdr 4 KiB][client table 64 KiB][namespace table 16 KiB]
 *            [segment 0 block]...
 *   segment: [seg_hdr 384 B][buckets u32 x nbuckets][pool_rec x nrec]
 *            [data ring, ring_size bytes]
 *   entry:   [entry_hdr 20 B][extension 0-12 B][key klen B][value vlen B]
 *            [slack B][checksum 8 B, only with REGION_F_CHECKSUM]
 */
#ifndef SHMC_LAYOUT_H
#define SHMC_LAYOUT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define LAYOUT_MAGIC UINT64_C(0x31454843434d4853) /* "SHMCCHE1" (LE) */
#define LAYOUT_VERSION 6u
#define LAYOUT_CACHELINE 64u
#define LAYOUT_REGION_HDR_SIZE 4096u
#define LAYOUT_SEG_HDR_SIZE 384u
#define LAYOUT_CLIENTS 4096u	/* client table slots */
#define LAYOUT_CLIENT_CTRS 32u	/* client counter lines, in the header */
#define SEG_FLIGHTS 8u		/* concurrent get_or_load keys per segment */
#define LAYOUT_GEOM_SIZE 128u	/* region_hdr lines 0-1, and their copy */
#define LAYOUT_NS_SLOTS 256u	/* namespace table slots */
#define LAYOUT_NS_PREFIX_MAX 52 /* longest namespace prefix */

/* region_hdr.flags. */
#define REGION_F_CHECKSUM                                                      \
	1u /* each entry ends with ENTRY_SUM_SIZE bytes:
				   XXH3-64 of its value seeded with the
				   XXH3-64 of its key, verified on each read */
#define REGION_F_KNOWN REGION_F_CHECKSUM
#define ENTRY_SUM_SIZE 8u

/* entry_hdr.rec: the owning record's number in the low ENTRY_REC_BITS,
 * ENTRY_REC_MASK there once the entry is deleted or replaced (its bytes
 * stay in the ring until evacuation reclaims them); the top bits hold the
 * low ENTRY_CHECK_REC_BITS bits of the entry's check (below).  A segment
 * has at most ENTRY_REC_MASK records, so no record number reads as dead. */
#define ENTRY_REC_BITS 27
#define ENTRY_REC_MASK ((UINT32_C(1) << ENTRY_REC_BITS) - 1)
/* The record number of a dead entry as seg.c hands it around, decoded. */
#define ENTRY_DEAD UINT32_MAX
/* entry_hdr.klen: the key length in the low ENTRY_KLEN_BITS, and above it
 * one bit per optional 4-byte word of the entry's extension, which follows
 * the header in this order (only the words whose bit is set):
 *   ENTRY_X_FLAGS  the item's flags (absent: 0);
 *   ENTRY_X_STAMP  the namespace stamp: ns_clock when the entry was written
 *                  (absent: 0), for keys under a registered namespace;
 *   ENTRY_X_SOFT   the soft expiry of a stale-while-revalidate entry, an
 *                  absolute unix second before the hard one in expire.
 * So an item without flags, namespace or grace costs no extension bytes. */
#define ENTRY_KLEN_BITS 13
#define ENTRY_KEY_MAX ((1u << ENTRY_KLEN_BITS) - 1) /* 8191 */
#define ENTRY_X_FLAGS (1u << ENTRY_KLEN_BITS)
#define ENTRY_X_STAMP (1u << (ENTRY_KLEN_BITS + 1))
#define ENTRY_X_SOFT (1u << (ENTRY_KLEN_BITS + 2))
#define ENTRY_X_ALL (ENTRY_X_FLAGS | ENTRY_X_STAMP | ENTRY_X_SOFT)
/* entry_hdr.slack: spare capacity after the value in the low
 * ENTRY_SLACK_BITS, the rest of the check above them. */
#define ENTRY_SLACK_BITS 12
#define ENTRY_SLACK_MAX ((1u << ENTRY_SLACK_BITS) - 1)
/* The check: ENTRY_CHECK_BITS of a hash of the entry's own ring offset and
 * its record field, XORed with its expiry, value length, key length and
 * slack folded to ENTRY_CHECK_BITS by XOR (seg.c, entry_check()), stored
 * whenever a header is written at an offset.  A lookup that reaches an
 * entry from a bucket, without its record, knows from it that the header
 * was written at that offset, not that the bucket points into the middle
 * of another entry; and a read knows that the lengths which say where the
 * key and the value stop are the ones written: damage confined to one
 * byte of them always changes the fold (8 adjacent bits land on 8
 * different bits of a 9-bit fold), so it is caught, never served. */
#define ENTRY_CHECK_REC_BITS (32 - ENTRY_REC_BITS)
#define ENTRY_CHECK_BITS (ENTRY_CHECK_REC_BITS + 16 - ENTRY_SLACK_BITS)
/* entry_hdr.vlen_use: the value length in the low 30 bits (a value is at
 * most half a ring less a one-byte key, and a ring at most 2 GiB), the use
 * count in the top 2. */
#define ENTRY_VLEN_MASK ((UINT32_C(1) << 30) - 1)
#define ENTRY_USE_SHIFT 30
#define ENTRY_USE_MAX 3u

/* The hits and misses of the gets answered without the lock, by client:
 * client id i counts in line i % LAYOUT_CLIENT_CTRS (ids are handed out in
 * sequence, so clients attached at once rarely share one).  Counted there
 * rather than in the segment's counters so that readers on several cores
 * do not take one line from each other on every get of a hot segment.
 * Atomic adds by the client's threads; never reset; stats add them to the
 * segments' counters.  Zero in a region formatted before they existed (the
 * header's padding), which is why they needed no new layout version. */
struct client_ctr {
	uint64_t hits;
	uint64_t misses;
	uint8_t pad[LAYOUT_CACHELINE - 16];
};

/* ------------------------------------------------------------------------
 * Region header: the first 4 KiB of the region.
 * ------------------------------------------------------------------------ */
struct region_hdr {
	/* Line 0-1: geometry.  Written once by eng_format() before any
	 * client can attach; afterwards only restored from geom_copy by the
	 * daemon's eng_hdr_check() repair; covered by geom_sum. */
	uint64_t magic;	      /* LAYOUT_MAGIC */
	uint32_t format;      /* LAYOUT_FORMAT, folds in version + sizes */
	uint32_t nseg;	      /* segments, power of two */
	uint64_t region_size; /* bytes the creator mapped */
	uint64_t seg_base;    /* offset of segment 0's block */
	uint64_t seg_stride;  /* bytes between segment blocks, multiple of 64 */
	uint32_t seg_bits;    /* log2(nseg) */
	uint32_t nbuckets;    /* index buckets per segment, power of two */
	uint32_t bucket_bits; /* log2(nbuckets) */
	uint32_t nrec;	      /* pool records per segment */
	uint32_t ring_size;   /* data ring bytes per segment */
	uint32_t max_kv;      /* largest klen + vlen: ring_size / 2 */
	uint32_t off_buckets; /* offsets inside a segment block */
	uint32_t off_recs;
	uint32_t reserved2; /* 0 (the free ring's offset before layout 5) */
	uint32_t off_ring;
	uint32_t flags; /* REGION_F_*: modes chosen at creation */
	uint32_t reserved0;
	uint64_t created;  /* unix seconds at format time */
	uint64_t geom_sum; /* XXH3-64 of the bytes before this field */
	uint8_t pad0[24];

	/* Line 2: written by the daemon (and by test hooks), read by every
	 * process with relaxed atomics.  lock_timeout_ms is not geometry: a
	 * daemon sets it from its --lock-timeout each time it creates or
	 * adopts the region, and clients read it at each lock wait. */
	uint32_t clock;	     /* coarse unix seconds, the cache's "now" */
	uint32_t daemon_pid; /* pid of the daemon that owns the region */
	uint64_t boot_count; /* bumped each time a daemon adopts the region */
	uint32_t next_client_id;  /* next id the daemon hands out; ids are
				    never reused over the region's life */
	uint32_t lock_timeout_ms; /* how long an operation waits for a lock;
				     0 (never written): the default */
	uint64_t pidns;		  /* the daemon's pid namespace (inode of
				   /proc/self/ns/pid); 0 if unknown */
	uint64_t ns_lenmask;	  /* bit L set: a namespace of an L-byte prefix
				is registered (L < 64); written with the
				namespace table (struct ns_slot) */
	uint32_t ns_clock;	  /* namespace stamps: entries under a namespace
				are stamped with it; each namespace flush
				raises it by one */
	uint32_t ns_count;	  /* namespace slots in use (registered and
				     unregistered ones: see eng_ns_del()) */
	uint8_t pad1[16];

	/* Lines 3-34: counters of gets without the lock (struct client_ctr). */
	struct client_ctr ctrs[LAYOUT_CLIENT_CTRS];

	uint8_t pad2[LAYOUT_REGION_HDR_SIZE -
		     (5 + LAYOUT_CLIENT_CTRS) * LAYOUT_CACHELINE];

	/* The last two lines: a byte copy of lines 0-1 (the geometry and its
	 * geom_sum), written with them by eng_format() and by a daemon that
	 * repairs one from the other (eng_hdr_check()).  A process that attaches while
	 * lines 0-1 are damaged takes the geometry from here. */
	uint8_t geom_copy[LAYOUT_GEOM_SIZE];
};

/* One attached client, so that any process can tell whether a lock holder
 * is alive when no daemon runs (see shared/clients.h).  Written by the
 * daemon only, from its private copy (at the handshake, on disconnect, by
 * its liveness sweep, which also rewrites slots others wrote); read by
 * anyone, trusted by no one while a daemon runs.  id 0 = free slot.  The
 * table follows the header. */
struct client_slot {
	uint32_t id;
	uint32_t pid;	/* in the daemon's pid namespace */
	uint64_t start; /* process start time (clock ticks after boot, from
			   /proc/PID/stat) to tell a reused pid; bit 63 set:
			   the client is not in the daemon's pid namespace
			   (or /proc hid it), and with a zero start time it
			   cannot be judged (shared/clients.h) */
};
#define CLIENT_FOREIGN_NS (UINT64_C(1) << 63)
#define LAYOUT_CLIENT_TABLE_SIZE (LAYOUT_CLIENTS * 16u)

/* One registered namespace: every key that starts with prefix[0..len).
 * The table follows the client table, LAYOUT_NS_SLOTS slots, open
 * addressing on the prefix's hash.  An entry of a key under a namespace
 * carries a stamp (ENTRY_X_STAMP) and counts as gone once mark is above
 * it: a flush sets mark to the next ns_clock, which drops every key of
 * the namespace at once, whatever their number.  len 0 = free slot. */
struct ns_slot {
	uint32_t mark;	/* entries stamped below it are gone; 0: none */
	uint16_t len;	/* prefix bytes, 1..LAYOUT_NS_PREFIX_MAX; 0: free */
	uint16_t state; /* NS_* bits (engine.c): unregistered, blocked */
	uint32_t hash;	/* low 32 bits of the prefix's XXH3-64 */
	uint8_t prefix[LAYOUT_NS_PREFIX_MAX];
};

/* ------------------------------------------------------------------------
 * Statistics counters of one segment, as an X-macro list: this list makes
 * the counters in seg_hdr, the totals in eng_stats, and the names printed
 * by tools.  X(name, description).  Written by the lock holder with relaxed
 * atomic stores, read without the lock with relaxed atomic loads.
 * ------------------------------------------------------------------------ */
#define SEG_COUNTERS(X)                                                        \
	X(hits, "gets that found a live entry")                                \
	X(misses, "gets that found no entry or an expired one")                \
	X(sets, "successful sets")                                             \
	X(overwrites, "sets that replaced a live entry")                       \
	X(deletes, "deletes that removed a live entry")                        \
	X(evictions, "live entries dropped to make room")                      \
	X(moves, "entries in use moved to the ring head")                      \
	X(expirations, "expired entries reclaimed")                            \
	X(repairs, "segment resets after corruption or a dead lock holder, "   \
		   "entries dropped for a bad checksum")

#define SEG_COUNT_X(name, desc) +1
enum { SEG_NCOUNTERS = 0 SEG_COUNTERS(SEG_COUNT_X) };
#undef SEG_COUNT_X

/* One get_or_load in progress: the key being loaded (its 64-bit hash) and a
 * futex word, 0 when the slot is free, else (loader client id << 1) |
 * waiters bit.  Claimed and released under the segment lock; waiters sleep
 * on word without the lock; the daemon clears a dead loader's slots. */
struct seg_flight {
	uint32_t word;
	uint32_t reserved;
	uint64_t hash;
};

/* ------------------------------------------------------------------------
 * Segment header: 384 bytes at the start of each segment block.
 * ------------------------------------------------------------------------ */
struct seg_hdr {
	/* Line 0: the contended line.  lock is the futex word (see lock.h):
	 * 0 when free, else (owner client id << 1) | waiters bit.  seq is
	 * written by the lock holder: odd while a mutation is in progress.
	 * gen is bumped by the lock holder each time the segment is reset. */
	uint32_t lock;
	uint32_t seq;
	uint32_t gen;
	uint32_t reserved0;
	uint8_t pad0[48];

	/* Line 1: ring, pool and eviction state, written under the lock. */
	uint32_t head;	       /* ring offset where the next entry goes */
	uint32_t tail;	       /* ring offset of the oldest entry */
	uint32_t used;	       /* bytes between tail and head */
	uint32_t fr_head;      /* free records: the first + 1, 0: none; the
				  list goes on through pool_rec.next */
	uint32_t fr_count;     /* free records */
	uint32_t live;	       /* entries in the index (gauge "entries") */
	uint32_t sweep_cursor; /* next bucket the expiry sweep visits */
	uint32_t inval;	       /* deletions: +1 by the lock holder with each
				  delete, invalidation and reset, whether or
				  not the key was there; fill leases taken
				  before it moved are void (engine.h,
				  struct eng_lease); read without the lock
				  with acquire loads */
	uint64_t wcount;       /* writes: each write of an entry takes the next
			    value, its version (CAS) is built from it
			    (seg_version()); starts at the region's
			    version floor */
	uint8_t pad1[24];

	/* Lines 2-3: counters (see SEG_COUNTERS). */
	uint64_t ctr[SEG_NCOUNTERS];
	uint8_t pad2[128 - 8 * SEG_NCOUNTERS];

	/* Lines 4-5: loads in progress (see struct seg_flight). */
	struct seg_flight flight[SEG_FLIGHTS];
};

/* One pool record: an index entry.  Written under the segment lock.  The
 * chain of a bucket starts at the entry the bucket names (its ring offset
 * + 1, 0 for an empty bucket); that entry's header names its record
 * (entry_hdr.rec), whose next leads on to the rest of the chain.  A free
 * record is on the free list (seg_hdr.fr_head) through next. */
struct pool_rec {
	uint32_t next; /* next record in the bucket chain (or the free
			  list) + 1; 0 ends it */
	uint32_t tag;  /* hash bits above the segment bits; low bits = bucket */
	uint32_t off;  /* ring offset of the entry_hdr */
};

/* The header of an entry in a data ring.  Entries are packed byte-aligned
 * and may straddle the end of the ring; always read and write them through
 * ring.h.  Written under the segment lock.  In a region with
 * REGION_F_CHECKSUM the entry's slack is followed by ENTRY_SUM_SIZE bytes
 * of checksum (so an overwrite in place does not move it). */
struct entry_hdr {
	uint32_t rec;	   /* owning pool record (ENTRY_REC_MASK: dead) |
			      check low bits << ENTRY_REC_BITS */
	uint32_t expire;   /* absolute unix second it expires at; 0 = never */
	uint32_t vlen_use; /* value bytes (ENTRY_VLEN_MASK) | use count <<
			      ENTRY_USE_SHIFT: 0 when stored, +1 per access
			      up to ENTRY_USE_MAX, -1 each time evacuation
			      moves the entry to the ring head */
	uint16_t klen;	   /* key bytes, 1..ENTRY_KEY_MAX | ENTRY_X_* */
	uint16_t slack;	   /* spare bytes after the value (ENTRY_SLACK_MAX)
			      | check high bits << ENTRY_SLACK_BITS */
	uint32_t wlow;	   /* low 32 bits of seg_hdr.wcount at the item's
			      last write: its version (seg_version()); kept
			      by moves and touches */
};

/* The format word: version and the sizes of the structs a client relies
 * on.  A region whose format differs is refused. */
#define LAYOUT_FORMAT                                                          \
	((uint32_t)(LAYOUT_VERSION << 24 |                                     \
		    (uint32_t)sizeof(struct entry_hdr) << 16 |                 \
		    (uint32_t)sizeof(struct pool_rec) << 8 |                   \
		    (uint32_t)(sizeof(struct seg_hdr) / 8)))

static_assert(sizeof(struct region_hdr) == LAYOUT_REGION_HDR_SIZE,
	      "region_hdr must be one page");
static_assert(offsetof(struct region_hdr, geom_sum) == 96, "geom_sum offset");
static_assert(offsetof(struct region_hdr, clock) == 2 * LAYOUT_CACHELINE,
	      "clock starts its own line");
static_assert(offsetof(struct region_hdr, clock) == LAYOUT_GEOM_SIZE,
	      "the geometry is lines 0-1");
static_assert(offsetof(struct region_hdr, lock_timeout_ms) == 148,
	      "lock_timeout_ms offset");
static_assert(offsetof(struct region_hdr, ns_clock) == 168,
	      "ns_clock offset (tests/integration/test_nearcache.py pokes it)");
static_assert(offsetof(struct region_hdr, geom_copy) ==
		      LAYOUT_REGION_HDR_SIZE - LAYOUT_GEOM_SIZE,
	      "the geometry's copy fills the header's last two lines");
static_assert(sizeof(struct seg_hdr) == LAYOUT_SEG_HDR_SIZE, "seg_hdr size");
static_assert(offsetof(struct seg_hdr, head) == LAYOUT_CACHELINE,
	      "lock line holds only lock, seq, gen");
static_assert(offsetof(struct seg_hdr, ctr) == 2 * LAYOUT_CACHELINE,
	      "counters start line 2");
static_assert(SEG_NCOUNTERS <= 16, "counters fit lines 2-3");
static_assert(offsetof(struct seg_hdr, flight) == 4 * LAYOUT_CACHELINE,
	      "flights start line 4");
static_assert(sizeof(struct seg_flight) == 16, "seg_flight size");
static_assert(sizeof(struct pool_rec) == 12, "pool_rec size");
static_assert(sizeof(struct ns_slot) == 64, "ns_slot size");
#define LAYOUT_NS_TABLE_SIZE (LAYOUT_NS_SLOTS * 64u)
static_assert(sizeof(struct client_slot) == 16, "client_slot size");
static_assert(sizeof(struct client_ctr) == LAYOUT_CACHELINE, "client_ctr size");
static_assert(offsetof(struct region_hdr, ctrs) == 3 * LAYOUT_CACHELINE,
	      "client counters start at line 3");
static_assert(sizeof(struct entry_hdr) == 20, "entry_hdr size");
static_assert(offsetof(struct entry_hdr, wlow) == 16, "wlow offset");
static_assert(offsetof(struct entry_hdr, expire) == 4, "expire offset");
static_assert(offsetof(struct entry_hdr, vlen_use) == 8, "vlen_use offset");
static_assert(ENTRY_USE_MAX == ~UINT32_C(0) >> ENTRY_USE_SHIFT,
	      "the use count fills the bits above the value length");

#define ENTRY_HDR_SIZE ((uint32_t)sizeof(struct entry_hdr))
static_assert(ENTRY_CHECK_BITS == 9, "entry check bits");
static_assert(offsetof(struct seg_hdr, wcount) == LAYOUT_CACHELINE + 32,
	      "wcount in line 1");
static_assert(offsetof(struct region_hdr, ns_lenmask) == 160,
	      "ns_lenmask offset");
static_assert((UINT32_C(1) << 31) / ENTRY_HDR_SIZE <= ENTRY_REC_MASK + 1,
	      "a 2 GiB ring's records (one per 16 bytes) fit ENTRY_REC_BITS");

#endif
