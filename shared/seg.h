/*
 * seg.h - one segment: its index (buckets naming the head entries of
 * pool-record chains), its entry pool and free list, its data ring, and
 * the evacuation that makes room.
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
	uint8_t *ring;
	const struct eng_geom *g;
	uint32_t no; /* the segment's number */
};

static inline struct seg seg_at(const struct eng *e, uint32_t i)
{
	uint8_t *blk = e->base + e->g.seg_base + (uint64_t)i * e->g.seg_stride;
	struct seg s = {
		.h = (struct seg_hdr *)blk,
		.buckets = (uint32_t *)(blk + e->g.off_buckets),
		.recs = (struct pool_rec *)(blk + e->g.off_recs),
		.ring = blk + e->g.off_ring,
		.g = &e->g,
		.no = i,
	};
	return s;
}

/* A lookup's request and result. */
struct seg_key {
	const void *key;
	uint32_t klen;
	uint32_t tag;
	uint64_t hash; /* the key's XXH3-64: seeds the entry's checksum */
	/* The key's namespace (engine.c, ns_of()): ns is true when the key
	 * is under one; an entry stamped below mark is gone; a write stamps
	 * its entry with stamp. */
	bool ns;
	bool ns_blocked; /* under a blocked namespace (eng_ns_block()) */
	uint32_t ns_mark;
	uint32_t ns_stamp;
};

/* What a read returns besides the value, and what a write stores. */
struct seg_meta {
	uint64_t cas; /* version (read: filled only when want_cas) */
	uint32_t flags;
	uint32_t expire; /* absolute; 0 = never */
	uint32_t soft;	 /* soft expiry (stale-while-revalidate); 0 = none */
	uint32_t vlen;
	bool stale; /* read: past the soft expiry, before the hard one */
};

/* A value to write in up to two pieces (append and prepend join the old
 * value and the new bytes). */
struct seg_src {
	const void *p[2];
	uint32_t n[2];
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

/* Empties the segment: index, pool, free list and data ring; bumps gen.
 * Keeps the counters. */
void seg_reset_locked(struct seg *s);

/* Value access modes for seg_get_locked(). */
enum seg_get_mode {
	SEG_GET,       /* hit: access time and counters; expired: reclaimed;
			  past its soft expiry: a miss, kept for the grace */
	SEG_GET_STALE, /* SEG_GET, but an entry past its soft expiry is a hit
			  with seg_meta.stale set */
	SEG_PEEK,      /* changes nothing; past the soft expiry: a miss */
};

/* A value in place in the ring: p[0..1], n[0..1] (n[1] is 0 unless it
 * wraps).  Valid while the lock is held. */
struct seg_value {
	void *p[2];
	size_t n[2];
};

/* On a hit, *m is filled (its version included) and either the value is
 * copied into buf when cap allows (-ENOBUFS otherwise) or, when view is
 * not NULL, view is pointed at it (cap and buf unused).  -ENOENT on miss,
 * expiry or an entry of a flushed namespace.  An entry past its soft
 * expiry is a hit with m->stale set.  With REGION_F_CHECKSUM the value
 * copied or viewed is verified first: on a mismatch the entry is dropped
 * and counted (repairs), SEG_EBADSUM. */
int seg_get_locked(struct seg *s, const struct seg_key *k, uint32_t now,
		   enum seg_get_mode mode, void *buf, size_t cap,
		   struct seg_meta *m, struct seg_value *view);

/* seg_get_locked() in SEG_GET mode for a reader that does not hold the
 * lock and writes nothing (eng_get's optimistic read): 0 (copied into buf),
 * -ENOBUFS, -ENOENT, or -EAGAIN when only the locked path may answer (an
 * expired entry to reclaim, a use count below the maximum to raise, or
 * anything that does not add up, a checksum included, which a concurrent
 * writer can cause).  m->cas is filled only with want_cas (it reads the
 * entry's record and the segment's write count: two more lines).
 * Every offset and length is checked as under the lock, so a torn read
 * stays inside the segment; the caller must discard any result when seq
 * changed meanwhile (buf may then hold anything). */
int seg_get_unlocked(struct seg *s, const struct seg_key *k, uint32_t now,
		     void *buf, size_t cap, struct seg_meta *m, bool want_cas);

/* Starts the loads of the lines of the entry k's bucket names (reading the
 * bucket, without the lock): what a get of k reads first.  Changes
 * nothing; a bucket that names no entry in the ring asks for nothing. */
void seg_prefetch_head(const struct seg *s, const struct seg_key *k);

/* What a write does when the key is present or absent. */
enum seg_mode {
	SEG_SET,     /* store either way */
	SEG_ADD,     /* only when absent, else -EEXIST */
	SEG_REPLACE, /* only when present, else -ENOENT */
	SEG_CAS,     /* only when present (-ENOENT) with version w->cas
			(else -EEXIST) */
	SEG_APPEND,  /* value after the present one's (else -ENOENT); the
			present item's flags and expiry are kept */
	SEG_PREPEND, /* value before the present one's; as SEG_APPEND */
};

/* A write's request. */
struct seg_write {
	enum seg_mode mode;
	uint32_t flags;
	uint32_t expire; /* absolute; 0 = never */
	uint32_t soft;	 /* soft expiry; 0 = none */
	uint64_t cas;	 /* SEG_CAS: the version expected */
};

/* A write: seg_write_begin(), the store, seg_write_end() and the
 * counters.  *cas_out (if not NULL) gets the new version.  The caller has
 * checked klen and vlen against the geometry's limits; for an append or
 * a prepend the joined value is checked here (-E2BIG).  -ENOMEM: an append
 * or prepend that moves a value over ENG_JOIN_STACK bytes could not
 * allocate its copy. */
int seg_write_locked(struct seg *s, const struct seg_key *k,
		     const struct seg_write *w, const void *val, uint32_t vlen,
		     uint32_t now, uint64_t *cas_out);

/* An increment (or, with decr, a decrement) of a decimal value, as
 * memcached's incr and decr: incr wraps at 2^64, decr stops at 0.  A
 * missing key is -ENOENT unless init is not NULL: then it is created with
 * the value init_val, init->flags and init->expire, and the delta is
 * applied to that (ngx.shared.DICT's incr with init).  -EDOM: the value is
 * not a decimal number below 2^64 (nothing is changed).  *out gets the
 * result, *cas_out (if not NULL) the new version. */
int seg_arith_locked(struct seg *s, const struct seg_key *k, bool decr,
		     uint64_t delta, const struct seg_write *init,
		     uint64_t init_val, uint32_t now, uint64_t *out,
		     uint64_t *cas_out);

/* The store itself, inside a write the caller began: a set of src (NULL:
 * the value bytes are left for the caller to fill, a reservation) with
 * m's flags, expiry and soft expiry; *off gets the entry's ring offset
 * and *cas_out its version. */
int seg_store_locked(struct seg *s, const struct seg_key *k,
		     const struct seg_src *src, uint32_t vlen,
		     const struct seg_write *m, uint32_t now, uint32_t *off,
		     uint64_t *cas_out);

/* The version of a record's write: the segment's write count whose low 32
 * bits are wlow (the latest such count, so a record written over 2^32
 * writes of its segment ago reads a newer version: a CAS then fails,
 * never passes wrongly), and the segment number below it. */
static inline uint64_t seg_version(const struct seg *s, uint32_t wlow)
{
	uint64_t wc = __atomic_load_n(&s->h->wcount, __ATOMIC_RELAXED);

	return (wc - (uint32_t)((uint32_t)wc - wlow)) << s->g->seg_bits | s->no;
}

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

/* eng_inspect() under the lock: fills *out from the entry of k (stale
 * ones too) and copies its value into buf when buf is not NULL.  Changes
 * nothing, but drops an entry whose checksum does not match (SEG_EBADSUM).
 * 0, -ENOENT, -ENOBUFS, -EUCLEAN. */
int seg_inspect_locked(struct seg *s, const struct seg_key *k, uint32_t now,
		       void *buf, size_t cap, struct eng_info *out);

/* eng_invalidate() under the lock, the entry's new hard expiry (when
 * o->set_ttl) computed by the caller in expire. */
int seg_invalidate_locked(struct seg *s, const struct seg_key *k, uint32_t now,
			  const struct eng_inval *o, uint32_t expire,
			  uint64_t *cas_out);

int seg_del_locked(struct seg *s, const struct seg_key *k, uint32_t now);

/* *expire = the entry's absolute expiry; with `touch`, first sets it to
 * new_expire and counts an access. */
int seg_expiry_locked(struct seg *s, const struct seg_key *k, uint32_t now,
		      bool touch, uint32_t new_expire, uint32_t *expire);

/* Walks live unexpired entries oldest first (entries of a flushed
 * namespace included: it.stamp lets the caller tell them). */
int seg_iter_locked(struct seg *s, uint32_t seg_no, uint32_t now,
		    eng_iter_fn fn, void *arg);

/* Reclaims expired entries in up to `budget` buckets from the sweep cursor.
 * Returns the count reclaimed or -EUCLEAN. */
int seg_sweep_locked(struct seg *s, uint32_t now, uint32_t budget);

/* The integrity walk (see eng_check()). */
int seg_check_locked(struct seg *s, uint32_t seg_no,
		     struct eng_check_report *r);

#endif
