/*
 * seg.h - one segment: its index (buckets naming the head entries of
 * pool-record chains), its entry pool and free-slot ring, its data ring,
 * and the evacuation that makes room.
 *
 * Every function here expects the caller to hold the segment's lock (hence
 * the _locked names); engine.c takes the locks.  Each function validates
 * every offset and length it reads from shared memory against the geometry
 * in struct eng (never against the region's own header) and returns
 * -EUCLEAN when something does not add up; the caller then resets the
 * segment with seg_reset_locked().
 */
#ifndef SHMC_SEG_H
#define SHMC_SEG_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "layout.h"

/* Pointers to the parts of one segment block. */
struct seg {
	struct seg_hdr *h;
	uint32_t *buckets;
	struct pool_rec *recs;
	uint32_t *free;
	uint8_t *ring;
	const struct eng_geom *g;
};

static inline struct seg seg_at(const struct eng *e, uint32_t i)
{
	uint8_t *blk = e->base + e->g.seg_base + (uint64_t)i * e->g.seg_stride;
	struct seg s = {
		.h = (struct seg_hdr *)blk,
		.buckets = (uint32_t *)(blk + e->g.off_buckets),
		.recs = (struct pool_rec *)(blk + e->g.off_recs),
		.free = (uint32_t *)(blk + e->g.off_free),
		.ring = blk + e->g.off_ring,
		.g = &e->g,
	};
	return s;
}

/* A lookup's request and result. */
struct seg_key {
	const void *key;
	uint32_t klen;
	uint32_t tag;
	uint64_t hash; /* the key's XXH3-64: seeds the entry's checksum */
};

/* Internal to seg.c and engine.c: the entry found had a checksum that did
 * not match (REGION_F_CHECKSUM); it was dropped, the segment is sound.
 * engine.c returns it as -EUCLEAN without resetting the segment. */
#define SEG_EBADSUM (-EBADMSG)

/* Counters: written by the lock holder, read by anyone; but hits and
 * misses, which locked gets count with an atomic add (seg_count_read) in
 * case the counts' line is shared with a reader's.  A get answered without
 * the lock counts in its client's line instead (layout.h, client_ctr). */
enum seg_ctr {
#define SEG_CTR_X(name, desc) SEG_CTR_##name,
	SEG_COUNTERS(SEG_CTR_X)
#undef SEG_CTR_X
};

static inline void seg_count(struct seg *s, enum seg_ctr c)
{
	uint64_t *p = &s->h->ctr[c];

	__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + 1,
			 __ATOMIC_RELAXED);
}

/* A hit or a miss of a get that took the lock. */
static inline void seg_count_read(struct seg *s, bool hit)
{
	__atomic_fetch_add(&s->h->ctr[hit ? SEG_CTR_hits : SEG_CTR_misses], 1,
			   __ATOMIC_RELAXED);
}

/* Marks the start and the end of a mutation: seq is odd in between, so a
 * holder that dies in there leaves a segment recovery knows to reset. */
static inline void seg_write_begin(struct seg *s)
{
	__atomic_store_n(&s->h->seq, s->h->seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static inline void seg_write_end(struct seg *s)
{
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&s->h->seq, s->h->seq + 1, __ATOMIC_RELAXED);
}

/* Empties the segment: index, pool, free ring and data ring; bumps gen.
 * Keeps the counters. */
void seg_reset_locked(struct seg *s);

/* Value access modes for seg_get_locked(). */
enum seg_get_mode {
	SEG_GET,  /* hit: access time and counters; expired: reclaimed */
	SEG_PEEK, /* changes nothing */
};

/* A value in place in the ring: p[0..1], n[0..1] (n[1] is 0 unless it
 * wraps).  Valid while the lock is held. */
struct seg_value {
	void *p[2];
	size_t n[2];
};

/* On a hit, *vlen and *expire are set, and either the value is copied into
 * buf when cap allows (-ENOBUFS otherwise) or, when view is not NULL, view
 * is pointed at it (cap and buf unused).  -ENOENT on miss or expiry.  With
 * REGION_F_CHECKSUM the value copied or viewed is verified first: on a
 * mismatch the entry is dropped and counted (repairs), SEG_EBADSUM. */
int seg_get_locked(struct seg *s, const struct seg_key *k, uint32_t now,
		   enum seg_get_mode mode, void *buf, size_t cap, size_t *vlen,
		   uint32_t *expire, struct seg_value *view);

/* seg_get_locked() in SEG_GET mode for a reader that does not hold the
 * lock and writes nothing (eng_get's optimistic read): 0 (copied into buf),
 * -ENOBUFS, -ENOENT, or -EAGAIN when only the locked path may answer (an
 * expired entry to reclaim, a use count below the maximum to raise, or
 * anything that does not add up, a checksum included, which a concurrent
 * writer can cause).
 * Every offset and length is checked as under the lock, so a torn read
 * stays inside the segment; the caller must discard any result when seq
 * changed meanwhile (buf may then hold anything). */
int seg_get_unlocked(struct seg *s, const struct seg_key *k, uint32_t now,
		     void *buf, size_t cap, size_t *vlen, uint32_t *expire);

/* Stores the entry: seg_write_begin(), seg_store_locked(), seg_write_end()
 * and the sets counter.  The caller has checked klen and klen + vlen
 * against the geometry's limits. */
int seg_set_locked(struct seg *s, const struct seg_key *k, const void *val,
		   uint32_t vlen, uint32_t expire, uint32_t now);

/* The store itself, inside a write the caller began.  With val NULL the
 * value bytes are left for the caller to fill (a reservation); *off gets
 * the entry's ring offset. */
int seg_store_locked(struct seg *s, const struct seg_key *k, const void *val,
		     uint32_t vlen, uint32_t expire, uint32_t now,
		     uint32_t *off);

/* Where the value of the entry at off lies. */
void seg_value_at(struct seg *s, uint32_t off, struct seg_value *v);

/* Writes the checksum of the entry at off from its key and value in the
 * ring (a filled reservation); nothing without REGION_F_CHECKSUM. */
void seg_seal_at_locked(struct seg *s, uint32_t off);

/* Removes the entry at off from the index (abort of a reservation). */
int seg_drop_at_locked(struct seg *s, uint32_t off);

/* The flight slot loading key hash h, or a free one claimed for `me`
 * (word set to me << 1).  Returns the slot index and sets *claimed, or -1
 * when every slot is busy with other keys. */
int seg_flight_locked(struct seg *s, uint64_t h, uint32_t me, bool *claimed);

int seg_del_locked(struct seg *s, const struct seg_key *k, uint32_t now);

/* *expire = the entry's absolute expiry; with `touch`, first sets it to
 * new_expire and counts an access. */
int seg_expiry_locked(struct seg *s, const struct seg_key *k, uint32_t now,
		      bool touch, uint32_t new_expire, uint32_t *expire);

/* Walks live unexpired entries oldest first. */
int seg_iter_locked(struct seg *s, uint32_t seg_no, uint32_t now,
		    eng_iter_fn fn, void *arg);

/* Reclaims expired entries in up to `budget` buckets from the sweep cursor.
 * Returns the count reclaimed or -EUCLEAN. */
int seg_sweep_locked(struct seg *s, uint32_t now, uint32_t budget);

/* The integrity walk (see eng_check()). */
int seg_check_locked(struct seg *s, uint32_t seg_no,
		     struct eng_check_report *r);

#endif
