/*
 * seg.c - operations on one segment, under its lock.
 *
 * The index is nbuckets chains of pool records; a record points at its
 * entry's header in the data ring, and the header points back at its record
 * (entry_hdr.rec), so each side can be checked against the other.  A bucket
 * holds the ring offset (+ 1) of its chain's head entry, not the head's
 * record: a lookup of a key that heads its chain reads the bucket and the
 * entry and nothing else.  What it cannot check against the record it
 * checks against the entry itself: each header carries a few bits of a
 * hash of its own ring offset and record field (entry_check()), rewritten
 * with every header store, so a bucket that points anywhere but at the
 * start of an entry is caught, but for a 1 in 2^ENTRY_CHECK_BITS chance
 * that the key compare then has to catch.  New
 * entries go at the ring head with a use count of 0; each access adds one,
 * up to ENTRY_USE_MAX.  When the ring lacks room, or the pool has no free
 * record, evacuate_one() looks at the entry at the ring tail and
 *   - reclaims it if it is dead (deleted or replaced) or expired;
 *   - drops it if its use count is 0 (not used since it was stored, or
 *     since its use count was spent on earlier moves), or if the last
 *     EVAC_MAX_MOVES entries were all moved (so a write never loops);
 *   - otherwise moves it to the head with its use count less one.
 * This is CLOCK with a 2-bit counter: an entry read once survives one more
 * turn of the ring, a hot one three, and a key that is read between turns
 * stays for good, while a scan of one-off keys passes through without
 * pushing out what is in use.  A hit writes only the entry's header, and
 * not even that once its count is at the maximum.
 *
 * Everything read from shared memory is checked before use; anything that
 * does not add up is -EUCLEAN and the caller resets the segment.
 *
 * Internals first, then the operations, then iteration, sweep and check.
 */
#include "seg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "hash.h"
#include "ring.h"

#define EVAC_MAX_MOVES 8

/* ------------------------------------------------------------------------
 * Internals
 * ------------------------------------------------------------------------ */

/* An entry header as read from the ring, its words split, with its
 * extension (layout.h, ENTRY_X_*). */
struct entry {
	uint32_t rec; /* a record number, or ENTRY_DEAD */
	uint32_t expire;
	uint32_t vlen;
	uint32_t use;
	uint32_t klen;
	uint32_t x;    /* ENTRY_X_* bits */
	uint32_t xlen; /* extension bytes: 4 per bit of x */
	uint32_t slack;
	uint32_t chk; /* the check bits as read (see entry_check) */
	uint32_t flags, stamp, soft; /* the extension's words, 0 if absent */
	uint32_t wlow;		     /* the version's low bits */
};

/* No record: an empty chain, or no record before the chain's head. */
#define NO_REC UINT32_MAX

/* A found entry: where it is and what its header says. */
struct found {
	uint32_t b;    /* its bucket */
	uint32_t prev; /* the record before rec in the chain, or NO_REC */
	uint32_t rec;
	uint32_t off;
	uint32_t len; /* header + key + value + slack */
	struct entry eh;
};

/* The gauges live and used are read without the lock (eng_stats): the
 * lock holder stores them with relaxed atomics. */
static inline void gauge_set(uint32_t *g, uint32_t v)
{
	__atomic_store_n(g, v, __ATOMIC_RELAXED);
}

static inline bool expired(const struct entry *eh, uint32_t now)
{
	return eh->expire != 0 && eh->expire <= now;
}

/* The entry of key k is gone: expired, or of a namespace flushed since it
 * was written (stamped below the namespace's mark; no stamp reads 0). */
static inline bool gone(const struct entry *eh, const struct seg_key *k,
			uint32_t now)
{
	return expired(eh, now) || (k->ns_mark && eh->stamp < k->ns_mark);
}

/* Until when reads serve the entry: its soft expiry when it has one (a
 * value stored with grace), else its expiry.  What every read reports as
 * the item's expiry. */
static inline uint32_t served_until(const struct entry *eh)
{
	return eh->soft ? eh->soft : eh->expire;
}

/* Past its soft expiry (stale-while-revalidate), not yet gone. */
static inline bool soft_expired(const struct entry *eh, uint32_t now)
{
	return eh->soft != 0 && eh->soft <= now;
}

/* The extension bytes of the ENTRY_X_* bits x: 4 per bit (a table: the
 * generic x86-64 build has no popcount instruction). */
static inline uint32_t xlen_of(uint32_t x)
{
	static const uint8_t len[8] = { 0, 4, 4, 8, 4, 8, 8, 12 };

	return len[(x >> ENTRY_KLEN_BITS) & 7];
}

/* The ring, pool and free-list fields agree with each other and with the
 * geometry.  Checked before every mutation.  Reads do without it: they
 * stay inside the ring because every offset is checked against the ring
 * size and every entry's length against the ring size (entry_load). */
static inline __attribute__((always_inline)) int state_ok(const struct seg *s)
{
	const struct seg_hdr *h = s->h;
	const struct eng_geom *g = s->g;

	if (h->head >= g->ring_size || h->tail >= g->ring_size ||
	    h->used > g->ring_size || h->fr_head > g->nrec ||
	    h->fr_count > g->nrec || (h->fr_head == 0) != (h->fr_count == 0) ||
	    h->live != g->nrec - h->fr_count ||
	    ring_add(h->tail, h->used, g->ring_size) != h->head)
		return -EUCLEAN;
	return 0;
}

/* The XOR of the 9-bit pieces of w: a change confined to ENTRY_CHECK_BITS
 * adjacent bits of w changes it (each bit lands on another bit of it). */
static inline __attribute__((always_inline)) uint32_t fold9(uint64_t w)
{
	static_assert(ENTRY_CHECK_BITS == 9, "fold9 folds to the check's size");
	w ^= w >> 36;
	w ^= w >> 18;
	w ^= w >> 9;
	return (uint32_t)w & ((1u << ENTRY_CHECK_BITS) - 1);
}

/* The check of a header written at ring offset off with record field rec
 * (ENTRY_DEAD for a dead entry) and e's expiry and lengths: the top
 * ENTRY_CHECK_BITS of a multiplicative hash of off and rec, so that
 * offsets a few bytes apart, and the same offset with another record, get
 * unrelated checks; XOR the fold of the lengths (each byte of vlen, klen
 * and slack as adjacent bits, in header order) and of the expiry, so that
 * damage to any one byte of them always shows. */
static inline __attribute__((always_inline)) uint32_t
entry_check(uint32_t off, const struct entry *e)
{
	uint64_t x = (uint64_t)(e->rec & ENTRY_REC_MASK) << 32 | off;
	uint64_t lens = (uint64_t)e->vlen | (uint64_t)(e->klen | e->x) << 30 |
			(uint64_t)e->slack << 46;

	return (uint32_t)((x * UINT64_C(0x9e3779b97f4a7c15)) >>
			  (64 - ENTRY_CHECK_BITS)) ^
	       fold9(lens) ^ fold9(e->expire);
}

/* The extension's words, 0 where absent. */
struct ext {
	uint32_t flags, stamp, soft;
};

/* Reads the extension words x names (xlen bytes), which follow the header
 * at off.  Returned by value, out of line: a pointer into the caller's
 * struct entry would keep that struct out of registers on every path. */
static struct ext __attribute__((noinline))
ext_read(const struct seg *s, uint32_t off, uint32_t x, uint32_t xlen)
{
	uint32_t w[3], i = 0;
	struct ext r;

	ring_read(s->ring, s->g->ring_size,
		  ring_add(off, ENTRY_HDR_SIZE, s->g->ring_size), w, xlen);
	r.flags = x & ENTRY_X_FLAGS ? w[i++] : 0;
	r.stamp = x & ENTRY_X_STAMP ? w[i++] : 0;
	r.soft = x & ENTRY_X_SOFT ? w[i++] : 0;
	return r;
}

/* A field of the header at p, loaded or stored in place: a header is
 * byte-aligned in the ring, and going through a struct entry_hdr on the
 * stack cost a copy, and on a store a load of the whole struct that waits
 * for its narrower stores to land (no store forwarding). */
#define HDR_FIELDS(X) X(rec) X(expire) X(vlen_use) X(klen) X(slack) X(wlow)
#define HDR_SIZE_X(field) +sizeof(((struct entry_hdr *)0)->field)
static_assert(0 HDR_FIELDS(HDR_SIZE_X) == sizeof(struct entry_hdr),
	      "HDR_FIELDS names every field of struct entry_hdr");
#undef HDR_SIZE_X
#define HDR_GET(p, field, v)                                                   \
	memcpy(&(v), (p) + offsetof(struct entry_hdr, field), sizeof(v))
#define HDR_PUT(p, field, v)                                                   \
	memcpy((p) + offsetof(struct entry_hdr, field), &(v), sizeof(v))

/* Reads the header at off (and its extension), unchecked. */
static inline __attribute__((always_inline)) void
entry_read(const struct seg *s, uint32_t off, struct entry *e)
{
	struct entry_hdr eh, tmp;
	const uint8_t *p = s->ring + off;

	if (__builtin_expect(s->g->ring_size - off < ENTRY_HDR_SIZE, 0)) {
		ring_read(s->ring, s->g->ring_size, off, &tmp, ENTRY_HDR_SIZE);
		p = (const uint8_t *)&tmp; /* it wraps */
	}
#define GET_X(field) HDR_GET(p, field, eh.field);
	HDR_FIELDS(GET_X)
#undef GET_X
	e->rec = eh.rec & ENTRY_REC_MASK;
	if (e->rec == ENTRY_REC_MASK)
		e->rec = ENTRY_DEAD;
	e->expire = eh.expire;
	e->vlen = eh.vlen_use & ENTRY_VLEN_MASK;
	e->use = eh.vlen_use >> ENTRY_USE_SHIFT;
	e->klen = eh.klen & ENTRY_KEY_MAX;
	e->x = eh.klen & ENTRY_X_ALL;
	e->xlen = 0;
	e->slack = eh.slack & ENTRY_SLACK_MAX;
	e->chk = eh.rec >> ENTRY_REC_BITS |
		 (uint32_t)(eh.slack >> ENTRY_SLACK_BITS)
			 << ENTRY_CHECK_REC_BITS;
	e->wlow = eh.wlow;
	e->flags = e->stamp = e->soft = 0;
	if (__builtin_expect(e->x != 0, 0)) {
		e->xlen = xlen_of(e->x);
		struct ext x = ext_read(s, off, e->x, e->xlen);
		e->flags = x.flags;
		e->stamp = x.stamp;
		e->soft = x.soft;
	}
}

/* Where the key and the value of the entry at off (header e) start. */
static inline uint32_t key_pos(const struct seg *s, uint32_t off,
			       const struct entry *e)
{
	return ring_add(off, ENTRY_HDR_SIZE + e->xlen, s->g->ring_size);
}

static inline uint32_t val_pos(const struct seg *s, uint32_t off,
			       const struct entry *e)
{
	return ring_add(off, ENTRY_HDR_SIZE + e->xlen + e->klen,
			s->g->ring_size);
}

/* The ring bytes of an entry: header, extension, key, value, slack and
 * checksum. */
static inline uint64_t entry_len(const struct seg *s, const struct entry *e)
{
	return (uint64_t)ENTRY_HDR_SIZE + e->xlen + e->klen + e->vlen +
	       e->slack + s->g->sum_size;
}

/* Reads the header at off and checks that the whole entry lies inside the
 * used part of the ring; the check bits are not looked at. */
static inline __attribute__((always_inline)) int
entry_load_unchecked(const struct seg *s, uint32_t off, struct entry *eh,
		     uint32_t *len)
{
	const struct eng_geom *g = s->g;
	uint32_t size = g->ring_size;

	if (off >= size)
		return -EUCLEAN;
	uint32_t d = ring_dist(s->h->tail, off, size);
	if (d >= s->h->used || s->h->used - d < ENTRY_HDR_SIZE)
		return -EUCLEAN;
	entry_read(s, off, eh);
	uint64_t l = entry_len(s, eh);
	if (eh->klen == 0 || l > s->h->used - d || l > size)
		return -EUCLEAN;
	*len = (uint32_t)l;
	return 0;
}

/* entry_load_unchecked(), and the header's check bits match off: the
 * header was written at off (but for a 1 in 2^ENTRY_CHECK_BITS chance). */
static inline __attribute__((always_inline)) int
entry_load(const struct seg *s, uint32_t off, struct entry *eh, uint32_t *len)
{
	int rc = entry_load_unchecked(s, off, eh, len);

	if (rc == 0 && eh->chk != entry_check(off, eh))
		rc = -EUCLEAN;
	return rc;
}

static inline uint32_t hdr_field_pos(const struct seg *s, uint32_t off,
				     uint32_t field)
{
	return ring_add(off, field, s->g->ring_size);
}

static inline uint32_t vlen_use(const struct entry *e)
{
	return e->vlen | e->use << ENTRY_USE_SHIFT;
}

/* entry_store_hdr(); a process armed with fault point p (not FAULT_NONE)
 * stops with
 * only the first half of the header's bytes written (a torn header: the
 * new check bits over the old lengths). */
static inline __attribute__((always_inline)) void
entry_store_hdr_fault(struct seg *s, uint32_t off, const struct entry *e,
		      enum fault_point p)
{
	uint32_t chk = entry_check(off, e);
	struct entry_hdr eh = {
		.rec = (e->rec & ENTRY_REC_MASK) | chk << ENTRY_REC_BITS,
		.expire = e->expire,
		.vlen_use = vlen_use(e),
		.klen = (uint16_t)(e->klen | e->x),
		.slack = (uint16_t)(e->slack | (chk >> ENTRY_CHECK_REC_BITS)
						       << ENTRY_SLACK_BITS),
		.wlow = e->wlow,
	};

#ifdef SHMC_FAULT_INJECTION
	if (__builtin_expect(p != FAULT_NONE && fault_armed == p, 0)) {
		ring_write(s->ring, s->g->ring_size, off, &eh,
			   ENTRY_HDR_SIZE / 2);
		fault_stop(p);
	}
#else
	(void)p;
#endif
	if (__builtin_expect(s->g->ring_size - off >= ENTRY_HDR_SIZE, 1)) {
		uint8_t *at = s->ring + off;
#define PUT_X(field) HDR_PUT(at, field, eh.field);
		HDR_FIELDS(PUT_X)
#undef PUT_X
	} else {
		ring_write(s->ring, s->g->ring_size, off, &eh, ENTRY_HDR_SIZE);
	}
	if (e->x) {
		uint32_t w[3], i = 0;
		if (e->x & ENTRY_X_FLAGS)
			w[i++] = e->flags;
		if (e->x & ENTRY_X_STAMP)
			w[i++] = e->stamp;
		if (e->x & ENTRY_X_SOFT)
			w[i++] = e->soft;
		ring_write(s->ring, s->g->ring_size,
			   ring_add(off, ENTRY_HDR_SIZE, s->g->ring_size), w,
			   4 * i);
	}
}

/* Writes the header at off, with the check for off (e->rec < nrec or
 * ENTRY_DEAD, e->vlen <= ENTRY_VLEN_MASK, e->use <= ENTRY_USE_MAX, e->klen
 * <= ENTRY_KEY_MAX, e->slack <= ENTRY_SLACK_MAX: the callers' limits), and
 * the extension words e->x names.  Every header written at an offset,
 * moved there included, goes through here, so that its check is right. */
static inline __attribute__((always_inline)) void
entry_store_hdr(struct seg *s, uint32_t off, const struct entry *e)
{
	entry_store_hdr_fault(s, off, e, FAULT_NONE);
}

/* Writes e->use (and e->vlen) into the header at off. */
static inline void entry_store_use(struct seg *s, uint32_t off,
				   const struct entry *e)
{
	uint32_t w = vlen_use(e);

	ring_write(s->ring, s->g->ring_size,
		   hdr_field_pos(s, off, offsetof(struct entry_hdr, vlen_use)),
		   &w, sizeof(w));
}

/* Counts an access to the entry at off: its use count + 1, at most
 * ENTRY_USE_MAX.  At the maximum nothing is written. */
static inline void entry_use(struct seg *s, uint32_t off, struct entry *e)
{
	if (e->use >= ENTRY_USE_MAX)
		return;
	e->use++;
	entry_store_use(s, off, e);
}

/* A word of the index (bucket or record field) read once: the optimistic
 * reader checks a value and then uses it, so the compiler must not read it
 * a second time. */
static inline uint32_t ix_load(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* Starts loading the two cache lines after the one holding the entry at
 * off: an entry of a small value spans two or three lines, and without
 * this each after the first is asked for only when the key compare or the
 * value copy reaches it, a second full miss after the header's. */
static inline void entry_prefetch(const struct seg *s, uint32_t off)
{
	ring_prefetch(s->ring, s->g->ring_size, off, 2);
}

/* Compares the key at entry offset off (header eh) with k. */
static inline bool key_equal(const struct seg *s, uint32_t off,
			     const struct entry *eh, const struct seg_key *k)
{
	uint32_t size = s->g->ring_size;

	return eh->klen == k->klen &&
	       ring_equal(s->ring, size, key_pos(s, off, eh), k->key, k->klen);
}

/* ------------------------------------------------------------------------
 * Checksums (REGION_F_CHECKSUM): the XXH3-64 of the value seeded with the
 * key's XXH3-64, in the last ENTRY_SUM_SIZE bytes of the entry (after the
 * slack, so an overwrite in place does not move it).
 * ------------------------------------------------------------------------ */

/* XXH3-64 of the len ring bytes at pos, seeded. */
static uint64_t hash_ring(const struct seg *s, uint32_t pos, uint32_t len,
			  uint64_t seed)
{
	const void *p[2];
	size_t l[2];
	XXH3_state_t st;

	ring_pieces(s->ring, s->g->ring_size, pos, len, p, l);
	if (l[1] == 0)
		return XXH3_64bits_withSeed(p[0], l[0], seed);
	XXH3_64bits_reset_withSeed(&st, seed);
	XXH3_64bits_update(&st, p[0], l[0]);
	XXH3_64bits_update(&st, p[1], l[1]);
	return XXH3_64bits_digest(&st);
}

/* Where the checksum of the entry at off (header e, length len) is. */
static inline uint32_t sum_pos(const struct seg *s, uint32_t off, uint32_t len)
{
	return ring_add(off, len - ENTRY_SUM_SIZE, s->g->ring_size);
}

static inline uint64_t sum_read(const struct seg *s, uint32_t off, uint32_t len)
{
	uint64_t sum;

	ring_read(s->ring, s->g->ring_size, sum_pos(s, off, len), &sum,
		  sizeof(sum));
	return sum;
}

static inline void sum_write(struct seg *s, uint32_t off, uint32_t len,
			     uint64_t sum)
{
	ring_write(s->ring, s->g->ring_size, sum_pos(s, off, len), &sum,
		   sizeof(sum));
}

/* The value of the entry at off (header e) as in the ring, hashed. */
static uint64_t sum_of_ring_value(const struct seg *s, uint32_t off,
				  const struct entry *e, uint64_t key_hash)
{
	return hash_ring(s, val_pos(s, off, e), e->vlen, key_hash);
}

/* Looks key up.  0 with *f filled, -ENOENT, or -EUCLEAN.  The bucket names
 * the head entry, which is a hit without its record being read: the entry
 * lies in the used ring, its lengths add up, its check bits match the
 * offset the bucket gave (so an entry starts there), it names a record
 * below nrec (so it is live), and its key is k.  f->rec is then the
 * header's word only: unindex() checks it against the record before
 * relying on it.  Past the head, the walk checks each record as before:
 * the head's record must point back at the head entry and its tag name
 * this bucket, each later entry must name the record that led to it. */
static inline __attribute__((always_inline)) int
find(struct seg *s, const struct seg_key *k, struct found *f)
{
	const struct eng_geom *g = s->g;
	uint32_t b = hash_bucket(k->tag, g->nbuckets);
	uint32_t head = ix_load(&s->buckets[b]);

	if (head == 0)
		return -ENOENT;
	uint32_t off = head - 1;
	entry_prefetch(s, off);
	int rc = entry_load(s, off, &f->eh, &f->len);
	if (rc)
		return rc;
	uint32_t r = f->eh.rec;
	if (r >= g->nrec)
		return -EUCLEAN; /* a bucket names only live entries */
	if (key_equal(s, off, &f->eh, k)) {
		f->b = b;
		f->prev = NO_REC;
		f->rec = r;
		f->off = off;
		return 0;
	}
	const struct pool_rec *rec = &s->recs[r];
	uint32_t rnext = ix_load(&rec->next), rtag = ix_load(&rec->tag),
		 roff = ix_load(&rec->off);
	if (roff != off || hash_bucket(rtag, g->nbuckets) != b)
		return -EUCLEAN;

	uint32_t prev = r, link = rnext;
	for (uint32_t steps = 1; link != 0; steps++) {
		r = link - 1;
		if (r >= g->nrec || steps >= g->nrec)
			return -EUCLEAN;
		rec = &s->recs[r];
		if (ix_load(&rec->tag) == k->tag) {
			off = ix_load(&rec->off);
			entry_prefetch(s, off);
			if ((rc = entry_load(s, off, &f->eh, &f->len)))
				return rc;
			if (f->eh.rec != r)
				return -EUCLEAN;
			if (key_equal(s, off, &f->eh, k)) {
				f->b = b;
				f->prev = prev;
				f->rec = r;
				f->off = off;
				return 0;
			}
		}
		prev = r;
		link = ix_load(&rec->next);
	}
	return -ENOENT;
}

/* The record heading bucket b's chain in *r, NO_REC if the bucket is
 * empty.  Checks that the bucket names a live entry whose record points
 * back at it and whose tag names b. */
static int head_rec(const struct seg *s, uint32_t b, uint32_t *r)
{
	uint32_t head = s->buckets[b], len;
	struct entry eh;
	int rc;

	*r = NO_REC;
	if (head == 0)
		return 0;
	if ((rc = entry_load(s, head - 1, &eh, &len)))
		return rc;
	if (eh.rec >= s->g->nrec || s->recs[eh.rec].off != head - 1 ||
	    hash_bucket(s->recs[eh.rec].tag, s->g->nbuckets) != b)
		return -EUCLEAN;
	*r = eh.rec;
	return 0;
}

/* Makes the chain that starts at link `next` (a record number + 1, 0 for
 * none) bucket b's: the bucket gets that record's entry offset + 1. */
static int set_head(struct seg *s, uint32_t b, uint32_t next)
{
	const struct eng_geom *g = s->g;

	if (next == 0) {
		s->buckets[b] = 0;
		return 0;
	}
	if (next - 1 >= g->nrec)
		return -EUCLEAN;
	const struct pool_rec *rec = &s->recs[next - 1];
	if (rec->off >= g->ring_size || hash_bucket(rec->tag, g->nbuckets) != b)
		return -EUCLEAN;
	s->buckets[b] = rec->off + 1;
	return 0;
}

/* Pops a record off the free list. */
static int fr_pop(struct seg *s, uint32_t *r)
{
	struct seg_hdr *h = s->h;
	uint32_t n = s->g->nrec;

	if (h->fr_count == 0 || h->fr_head == 0 || h->fr_head > n)
		return -EUCLEAN;
	*r = h->fr_head - 1;
	uint32_t next = s->recs[*r].next;
	if (next > n || (next == 0) != (h->fr_count == 1))
		return -EUCLEAN;
	h->fr_head = next;
	h->fr_count--;
	gauge_set(&h->live, h->live + 1);
	return 0;
}

static int fr_push(struct seg *s, uint32_t r)
{
	struct seg_hdr *h = s->h;

	if (h->fr_count >= s->g->nrec)
		return -EUCLEAN;
	s->recs[r].next = h->fr_head;
	h->fr_head = r + 1;
	h->fr_count++;
	gauge_set(&h->live, h->live - 1);
	return 0;
}

/* Takes an entry out of the index: unlinks its record r (in bucket b,
 * after record prev or NO_REC if it heads the chain), frees it, marks the
 * entry dead in the ring.  Its bytes stay until evacuation. */
static int unindex(struct seg *s, uint32_t b, uint32_t prev, uint32_t r,
		   uint32_t off)
{
	const struct eng_geom *g = s->g;
	struct entry e;
	int rc;

	/* find() takes a head entry's record number from its header alone;
	 * before a wrong one could free a record in use, check it. */
	if (r >= g->nrec || s->recs[r].off != off ||
	    hash_bucket(s->recs[r].tag, g->nbuckets) != b ||
	    (prev == NO_REC && s->buckets[b] != off + 1))
		return -EUCLEAN;
	if (prev == NO_REC) {
		if ((rc = set_head(s, b, s->recs[r].next)))
			return rc;
	} else {
		s->recs[prev].next = s->recs[r].next;
	}
	entry_read(s, off, &e);
	e.rec = ENTRY_DEAD; /* a new record field, so a new check */
	entry_store_hdr(s, off, &e);
	return fr_push(s, r);
}

/* Where record r sits in the index: its bucket *b (from r's tag) and the
 * record before it, *prev (NO_REC if r heads the chain).  The caller has
 * checked that r's entry is at recs[r].off and names r. */
static int link_of(struct seg *s, uint32_t r, uint32_t *b, uint32_t *prev)
{
	const struct eng_geom *g = s->g;
	uint32_t h;
	int rc;

	*b = hash_bucket(s->recs[r].tag, g->nbuckets);
	*prev = NO_REC;
	if (s->buckets[*b] == s->recs[r].off + 1)
		return 0; /* r's entry heads the chain */
	if ((rc = head_rec(s, *b, &h)))
		return rc;
	uint32_t link = h == NO_REC ? 0 : h + 1;
	for (uint32_t steps = 0; link != 0; steps++) {
		if (link - 1 >= g->nrec || steps >= g->nrec)
			return -EUCLEAN;
		if (link - 1 == r)
			return 0;
		*prev = link - 1;
		link = s->recs[link - 1].next;
	}
	return -EUCLEAN;
}

/* Writes the first n bytes of a value given as pieces. */
static inline __attribute__((always_inline)) void
write_pieces(struct seg *s, uint32_t pos, const struct seg_src *src, uint32_t n)
{
	uint32_t size = s->g->ring_size;
	uint32_t n0 = n < src->n[0] ? n : src->n[0];

	ring_write(s->ring, size, pos, src->p[0], n0);
	if (n > n0)
		ring_write(s->ring, size, ring_add(pos, n0, size), src->p[1],
			   n - n0);
}

/* Writes a value from its pieces; a process armed with fault point p, or
 * with FAULT_JOIN_VALUE when there are two pieces (an append or prepend by
 * a new entry, or in place), stops half-way through the whole value. */
static inline __attribute__((always_inline)) void
write_value(struct seg *s, uint32_t pos, const struct seg_src *src,
	    enum fault_point p)
{
	uint32_t n = src->n[0] + src->n[1];

#ifdef SHMC_FAULT_INJECTION
	if (__builtin_expect(fault_armed == p ||
				     (fault_armed == FAULT_JOIN_VALUE &&
				      src->n[1] != 0),
			     0) &&
	    n > 1) {
		write_pieces(s, pos, src, n / 2);
		fault_stop(fault_armed);
	}
#else
	(void)p;
#endif
	write_pieces(s, pos, src, n);
}

/* The checksum of a value given as pieces, seeded with the key's hash. */
static uint64_t sum_of_src(const struct seg_src *src, uint64_t key_hash)
{
	XXH3_state_t st;

	if (src->n[1] == 0)
		return XXH3_64bits_withSeed(src->p[0], src->n[0], key_hash);
	XXH3_64bits_reset_withSeed(&st, key_hash);
	XXH3_64bits_update(&st, src->p[0], src->n[0]);
	XXH3_64bits_update(&st, src->p[1], src->n[1]);
	return XXH3_64bits_digest(&st);
}

/* The segment's next write count, taken: the low 32 bits go into the
 * header of the entry written (entry_hdr.wlow), its new version. */
static inline uint32_t new_version(struct seg *s)
{
	uint64_t wc = s->h->wcount + 1;

	__atomic_store_n(&s->h->wcount, wc, __ATOMIC_RELAXED);
	return (uint32_t)wc;
}

/* The extension bits an entry of key k written with w carries. */
static inline uint32_t x_of(const struct seg_key *k, const struct seg_write *w)
{
	return (w->flags ? ENTRY_X_FLAGS : 0) | (k->ns ? ENTRY_X_STAMP : 0) |
	       (w->soft ? ENTRY_X_SOFT : 0);
}

/* Frees the entry at the ring tail or moves it to the head. */
static int evacuate_one(struct seg *s, uint32_t now, int *moves)
{
	struct seg_hdr *h = s->h;
	uint32_t size = s->g->ring_size;
	uint32_t off = h->tail, len;
	struct entry eh;
	int rc;

	if (h->used == 0)
		return -EUCLEAN; /* no room although the ring is empty */
	if ((rc = entry_load(s, off, &eh, &len)))
		return rc;
	if (eh.rec != ENTRY_DEAD) {
		uint32_t r = eh.rec;
		if (r >= s->g->nrec || s->recs[r].off != off)
			return -EUCLEAN;
		bool exp = expired(&eh, now);
		if (!exp && eh.use > 0 && *moves < EVAC_MAX_MOVES) {
			uint32_t *bucket =
				&s->buckets[hash_bucket(s->recs[r].tag,
							s->g->nbuckets)];
			ring_move(s->ring, size, h->head, off, len);
			FAULT(EVAC_MOVE);
			eh.use--;
			entry_store_hdr(s, h->head,
					&eh); /* check: new offset */
			s->recs[r].off = h->head;
			if (*bucket == off + 1)
				*bucket = h->head + 1; /* it heads its chain */
			h->head = ring_add(h->head, len, size);
			h->tail = ring_add(h->tail, len, size);
			(*moves)++;
			seg_count(s, SEG_CTR_moves);
			return 0;
		}
		uint32_t b, prev;
		if ((rc = link_of(s, r, &b, &prev)) ||
		    (rc = unindex(s, b, prev, r, off)))
			return rc;
		FAULT(EVAC_DROP);
		seg_count(s, exp ? SEG_CTR_expirations : SEG_CTR_evictions);
	}
	*moves = 0;
	h->tail = ring_add(h->tail, len, size);
	gauge_set(&h->used, h->used - len);
	return 0;
}

/* Makes `need` ring bytes and one pool record available. */
static int make_room(struct seg *s, uint32_t need, uint32_t now)
{
	int moves = 0;

	while (s->g->ring_size - s->h->used < need || s->h->fr_count == 0) {
		int rc = evacuate_one(s, now, &moves);
		if (rc)
			return rc;
	}
	return 0;
}

/* Writes a new entry with capacity cap >= vlen at the head and indexes it
 * (src NULL: the value bytes are left unwritten), with w's flags and
 * expiries and k's namespace stamp, and a new version.  w comes by value:
 * its address passed out of line would keep the callers' struct seg_write
 * in memory, and their mode tests unfolded. */
static int insert(struct seg *s, const struct seg_key *k,
		  const struct seg_src *src, uint32_t vlen, uint32_t cap,
		  struct seg_write w, uint32_t use, uint32_t now,
		  uint32_t *off_out)
{
	struct seg_hdr *h = s->h;
	uint32_t size = s->g->ring_size;
	struct entry eh = {
		.expire = w.expire,
		.vlen = vlen,
		.use = use,
		.klen = k->klen,
		.x = x_of(k, &w),
		.slack = cap - vlen,
		.flags = w.flags,
		.stamp = k->ns_stamp,
		.soft = w.soft,
	};
	eh.xlen = xlen_of(eh.x);
	uint32_t need = (uint32_t)entry_len(s, &eh);
	uint32_t r;
	int rc;

	if ((rc = make_room(s, need, now)) || (rc = fr_pop(s, &r)))
		return rc;
	eh.rec = r;
	eh.wlow = new_version(s);
	uint32_t off = h->head;
	entry_store_hdr(s, off, &eh);
	FAULT(SET_HEADER);
	ring_write(s->ring, size, key_pos(s, off, &eh), k->key, k->klen);
	if (vlen && src)
		write_value(s, val_pos(s, off, &eh), src, FAULT_SET_VALUE);
	if (s->g->sum_size && src)
		sum_write(s, off, need, sum_of_src(src, k->hash));
	h->head = ring_add(off, need, size);
	gauge_set(&h->used, h->used + need);

	uint32_t b = hash_bucket(k->tag, s->g->nbuckets), old;
	if ((rc = head_rec(s, b, &old)))
		return rc;
	s->recs[r] = (struct pool_rec){ .next = old == NO_REC ? 0 : old + 1,
					.tag = k->tag,
					.off = off };
	s->buckets[b] = off + 1;
	*off_out = off;
	return 0;
}

/* ------------------------------------------------------------------------
 * Operations
 * ------------------------------------------------------------------------ */

/* A deletion of any kind happened in s: fill leases taken before are
 * void (seg_hdr.inval). */
static inline void inval_bump(struct seg *s)
{
	__atomic_store_n(&s->h->inval, s->h->inval + 1, __ATOMIC_RELEASE);
}

void seg_reset_locked(struct seg *s)
{
	struct seg_hdr *h = s->h;
	const struct eng_geom *g = s->g;

	memset(s->buckets, 0, (size_t)g->nbuckets * sizeof(uint32_t));
	for (uint32_t i = 0; i < g->nrec; i++)
		s->recs[i].next = i + 1 < g->nrec ? i + 2 : 0;
	h->fr_head = g->nrec ? 1 : 0;
	h->fr_count = g->nrec;
	gauge_set(&h->live, 0);
	h->head = h->tail = 0;
	gauge_set(&h->used, 0);
	h->sweep_cursor = 0;
	inval_bump(s);
	__atomic_store_n(&h->gen, h->gen + 1, __ATOMIC_RELAXED);
}

void seg_value_at(struct seg *s, uint32_t off, struct seg_value *v)
{
	struct entry eh;
	const void *p[2];

	entry_read(s, off, &eh);
	ring_pieces(s->ring, s->g->ring_size, val_pos(s, off, &eh), eh.vlen, p,
		    v->n);
	v->p[0] = (void *)p[0];
	v->p[1] = (void *)p[1];
}

/* The checksum of the entry at off (header eh, length len) matches its
 * key and value in the ring. */
static bool sum_ok(const struct seg *s, uint32_t off, const struct entry *eh,
		   uint32_t len)
{
	uint64_t kh = hash_ring(s, key_pos(s, off, eh), eh->klen, 0);

	return sum_read(s, off, len) == sum_of_ring_value(s, off, eh, kh);
}

void seg_seal_at_locked(struct seg *s, uint32_t off)
{
	uint32_t len;
	struct entry eh;

	if (!s->g->sum_size || entry_load(s, off, &eh, &len))
		return; /* a damaged entry fails its next read */
	uint64_t kh = hash_ring(s, key_pos(s, off, &eh), eh.klen, 0);
	sum_write(s, off, len, sum_of_ring_value(s, off, &eh, kh));
}

/* Takes a found entry out of the index as a mutation of its own, counted
 * in counter c.  0 or -EUCLEAN. */
static int drop_found(struct seg *s, const struct found *f, enum seg_ctr c)
{
	int rc;

	if ((rc = state_ok(s)))
		return rc;
	seg_write_begin(s);
	if ((rc = unindex(s, f->b, f->prev, f->rec, f->off)))
		return rc;
	seg_write_end(s);
	seg_count(s, c);
	return 0;
}

/* A found entry whose checksum did not match: out of the index, counted.
 * SEG_EBADSUM, or -EUCLEAN if the segment does not add up either. */
static int drop_bad_sum(struct seg *s, const struct found *f)
{
	int rc = drop_found(s, f, SEG_CTR_repairs);

	return rc ? rc : SEG_EBADSUM;
}

/* Takes a found entry that is gone (expired, or of a flushed namespace)
 * out of the index.  -ENOENT, or -EUCLEAN. */
static int reclaim(struct seg *s, const struct found *f, uint32_t now)
{
	int rc = drop_found(s, f,
			    expired(&f->eh, now) ? SEG_CTR_expirations
						 : SEG_CTR_deletes);

	return rc ? rc : -ENOENT;
}

static void meta_of(const struct seg *s, const struct found *f, uint32_t now,
		    struct seg_meta *m)
{
	m->flags = f->eh.flags;
	m->expire = served_until(&f->eh);
	m->soft = f->eh.soft;
	m->vlen = f->eh.vlen;
	m->stale = soft_expired(&f->eh, now);
	m->cas = seg_version(s, f->eh.wlow);
}

int seg_get_locked(struct seg *s, const struct seg_key *k, uint32_t now,
		   enum seg_get_mode mode, void *buf, size_t cap,
		   struct seg_meta *m, struct seg_value *view)
{
	struct found f;
	int rc = find(s, k, &f);

	if (rc == 0 && gone(&f.eh, k, now))
		rc = mode == SEG_PEEK ? -ENOENT : reclaim(s, &f, now);
	if (rc == 0 && mode != SEG_GET_STALE && soft_expired(&f.eh, now))
		rc = -ENOENT; /* kept for the grace, served only as stale */
	if (rc == -ENOENT && mode != SEG_PEEK)
		seg_count_read(s, false);
	if (rc)
		return rc;

	meta_of(s, &f, now, m);
	if (view)
		seg_value_at(s, f.off, view);
	else if (cap < f.eh.vlen)
		rc = -ENOBUFS; /* found: still an access and a hit */
	else if (f.eh.vlen)
		ring_read(s->ring, s->g->ring_size, val_pos(s, f.off, &f.eh),
			  buf, f.eh.vlen);
	if (s->g->sum_size && rc == 0 &&
	    sum_read(s, f.off, f.len) !=
		    (view ? sum_of_ring_value(s, f.off, &f.eh, k->hash)
			  : XXH3_64bits_withSeed(buf, f.eh.vlen, k->hash)))
		return drop_bad_sum(s, &f);
	if (mode != SEG_PEEK) {
		entry_use(s, f.off, &f.eh);
		seg_count_read(s, true);
	}
	return rc;
}

__attribute__((always_inline)) inline int
seg_get_unlocked(struct seg *s, const struct seg_key *k, uint32_t now,
		 void *buf, size_t cap, struct seg_meta *m, bool want_cas)
{
	struct found f;
	int rc = find(s, k, &f);

	if (rc == -ENOENT)
		return rc;
	/* Damage or a torn read (the seq check tells which), an entry gone
	 * to reclaim, a use count to raise, a stale one: the locked path. */
	if (rc || gone(&f.eh, k, now) || f.eh.use < ENTRY_USE_MAX ||
	    soft_expired(&f.eh, now))
		return -EAGAIN;
	m->vlen = f.eh.vlen;
	m->expire = served_until(&f.eh);
	m->flags = f.eh.flags;
	m->soft = f.eh.soft;
	m->stale = false;
	if (want_cas)
		m->cas = seg_version(s, f.eh.wlow);
	if (cap < f.eh.vlen)
		return -ENOBUFS;
	if (f.eh.vlen)
		ring_read(s->ring, s->g->ring_size, val_pos(s, f.off, &f.eh),
			  buf, f.eh.vlen);
	/* A mismatch may be a torn read: the locked path tells. */
	if (s->g->sum_size &&
	    sum_read(s, f.off, f.len) !=
		    XXH3_64bits_withSeed(buf, f.eh.vlen, k->hash))
		return -EAGAIN;
	return 0;
}

void seg_prefetch_head(const struct seg *s, const struct seg_key *k)
{
	uint32_t head =
		ix_load(&s->buckets[hash_bucket(k->tag, s->g->nbuckets)]);

	if (head == 0 || head - 1 >= s->g->ring_size)
		return;
	prefetch_read(s->ring + ((head - 1) & ~UINT32_C(63)));
	entry_prefetch(s, head - 1);
}

/* The version of the entry at off, in *cas_out. */
static int __attribute__((noinline))
version_read(struct seg *s, uint32_t off, uint64_t *cas_out)
{
	struct entry eh;
	uint32_t len;
	int rc;

	if ((rc = entry_load(s, off, &eh, &len)))
		return rc;
	if (eh.rec >= s->g->nrec)
		return -EUCLEAN;
	*cas_out = seg_version(s, eh.wlow);
	return 0;
}

/* version_read() if cas_out is not NULL: a plain set asks for no version. */
static inline __attribute__((always_inline)) int
version_out(struct seg *s, uint32_t off, uint64_t *cas_out)
{
	return cas_out ? version_read(s, off, cas_out) : 0;
}

/* The lookup before a conditional write: 0 (found: *f), -ENOENT, or
 * -EUCLEAN; *present says whether the found entry counts as there (not
 * gone, not past a soft expiry). */
static inline __attribute__((always_inline)) int
find_for_write(struct seg *s, const struct seg_key *k, uint32_t now,
	       struct found *f, bool *present)
{
	int rc = state_ok(s);

	*present = false;
	if (rc)
		return rc;
	rc = find(s, k, f);
	*present = rc == 0 && !gone(&f->eh, k, now) &&
		   !soft_expired(&f->eh, now);
	return rc;
}

/* Stores src over the found entry f of key k (or anew when f is NULL):
 * in place when the value fits the entry's capacity and the extension
 * keeps its shape, else a new entry with grown capacity.  vp is the fault
 * point of a value written in place. */
static inline __attribute__((always_inline)) int
store_at(struct seg *s, const struct seg_key *k, struct found *f,
	 const struct seg_src *src, uint32_t vlen, const struct seg_write *w,
	 uint32_t now, uint32_t *off, enum fault_point vp)
{
	int rc;

	if (!f)
		return insert(s, k, src, vlen, vlen, *w, 0, now, off);
	uint32_t cap = f->eh.vlen + f->eh.slack;
	if (!gone(&f->eh, k, now))
		seg_count(s, SEG_CTR_overwrites);
	if (vlen <= cap && cap - vlen <= ENTRY_SLACK_MAX &&
	    x_of(k, w) == f->eh.x) {
		/* In place. */
		if (vlen && src)
			write_value(s, val_pos(s, f->off, &f->eh), src, vp);
		if (f->eh.use < ENTRY_USE_MAX)
			f->eh.use++;
		f->eh.expire = w->expire;
		f->eh.vlen = vlen;
		f->eh.slack = cap - vlen;
		f->eh.flags = w->flags;
		f->eh.stamp = k->ns_stamp;
		f->eh.soft = w->soft;
		f->eh.wlow = new_version(s);
		FAULT(VERSION); /* the value written, not the header */
		entry_store_hdr(s, f->off, &f->eh);
		if (s->g->sum_size && src)
			sum_write(s, f->off, f->len, sum_of_src(src, k->hash));
		*off = f->off;
		return 0;
	}
	/* Grow: double the capacity, within the limits. */
	uint64_t grown = (uint64_t)cap * 2;
	uint32_t limit = s->g->max_kv - k->klen;
	if (grown > limit)
		grown = limit;
	if (grown > (uint64_t)vlen + ENTRY_SLACK_MAX)
		grown = (uint64_t)vlen + ENTRY_SLACK_MAX;
	if (grown < vlen)
		grown = vlen;
	if ((rc = unindex(s, f->b, f->prev, f->rec, f->off)))
		return rc;
	/* An overwrite is a use, as in place. */
	uint32_t use = f->eh.use < ENTRY_USE_MAX ? f->eh.use + 1
						 : ENTRY_USE_MAX;
	return insert(s, k, src, vlen, (uint32_t)grown, *w, use, now, off);
}

int seg_store_locked(struct seg *s, const struct seg_key *k,
		     const struct seg_src *src, uint32_t vlen,
		     const struct seg_write *w, uint32_t now, uint32_t *off,
		     uint64_t *cas_out)
{
	struct found f;
	int rc;

	if ((rc = state_ok(s)))
		return rc;
	rc = find(s, k, &f);
	if (rc && rc != -ENOENT)
		return rc;
	if ((rc = store_at(s, k, rc ? NULL : &f, src, vlen, w, now, off,
			   FAULT_OVERWRITE)))
		return rc;
	return version_out(s, *off, cas_out);
}

/* Up to this many bytes of a value an append or a prepend moves are
 * copied on the stack, more into a malloc'd buffer. */
#define JOIN_STACK 4096

/* The write of src once its mode's condition holds, over the found
 * entry f (NULL: anew), as a mutation of its own. */
static inline __attribute__((always_inline)) int
write_src(struct seg *s, const struct seg_key *k, struct found *f,
	  const struct seg_src *src, uint32_t vlen, const struct seg_write *w,
	  uint32_t now, uint64_t *cas_out)
{
	uint32_t off;
	int rc;

	seg_write_begin(s);
	FAULT(SET_BEGIN);
	if ((rc = store_at(s, k, f, src, vlen, w, now, &off,
			   FAULT_OVERWRITE)) ||
	    (rc = version_out(s, off, cas_out)))
		return rc; /* -EUCLEAN: seq stays odd, the caller repairs */
	seg_write_end(s);
	seg_count(s, SEG_CTR_sets);
	return 0;
}

/* An append or a prepend to the present entry found: in place into its
 * slack when it can, else a new entry of the joined value.  Out of line:
 * its copy buffer stays off the frame of the other writes; and found
 * comes by value, as insert()'s w does. */
static int __attribute__((noinline))
join_locked(struct seg *s, const struct seg_key *k, struct found found,
	    enum seg_mode mode, const void *val, uint32_t vlen, uint32_t now,
	    uint64_t *cas_out)
{
	struct found *f = &found;
	struct seg_write w = { .mode = SEG_SET,
			       .flags = f->eh.flags,
			       .expire = f->eh.expire,
			       .soft = f->eh.soft };
	uint8_t stack[JOIN_STACK], *copy;
	struct seg_src src;
	int rc;

	if ((uint64_t)f->eh.vlen + vlen + k->klen > s->g->max_kv)
		return -E2BIG;
	if (vlen <= f->eh.slack && mode == SEG_APPEND &&
	    x_of(k, &w) == f->eh.x) {
		/* In place: the new bytes go into the slack. */
		struct seg_src tail = { { val, NULL }, { vlen, 0 } };
		seg_write_begin(s);
		write_value(s,
			    ring_add(val_pos(s, f->off, &f->eh), f->eh.vlen,
				     s->g->ring_size),
			    &tail, FAULT_APPEND_VALUE);
		f->eh.vlen += vlen;
		f->eh.slack -= vlen;
		f->eh.wlow = new_version(s);
		entry_store_hdr_fault(s, f->off, &f->eh, FAULT_APPEND_HEADER);
		seg_seal_at_locked(s, f->off);
		if (cas_out)
			*cas_out = seg_version(s, f->eh.wlow);
		seg_write_end(s);
		seg_count(s, SEG_CTR_sets);
		return 0;
	}
	/* The old value must survive the evacuation the new entry may need:
	 * copy it first. */
	copy = f->eh.vlen <= sizeof(stack) ? stack : malloc(f->eh.vlen);
	if (!copy)
		return -ENOMEM;
	ring_read(s->ring, s->g->ring_size, val_pos(s, f->off, &f->eh), copy,
		  f->eh.vlen);
	if (mode == SEG_APPEND)
		src = (struct seg_src){ { copy, val }, { f->eh.vlen, vlen } };
	else
		src = (struct seg_src){ { val, copy }, { vlen, f->eh.vlen } };
	rc = write_src(s, k, f, &src, f->eh.vlen + vlen, &w, now, cas_out);
	if (copy != stack)
		free(copy);
	return rc;
}

__attribute__((always_inline)) inline int
seg_write_locked(struct seg *s, const struct seg_key *k,
		 const struct seg_write *w, const void *val, uint32_t vlen,
		 uint32_t now, uint64_t *cas_out)
{
	struct seg_src src = { { val, NULL }, { vlen, 0 } };
	struct found f;
	bool present;
	int rc = find_for_write(s, k, now, &f, &present);

	if (rc && rc != -ENOENT)
		return rc;
	switch (w->mode) {
	case SEG_SET:
		break;
	case SEG_ADD:
		if (present)
			return -EEXIST;
		break;
	case SEG_CAS:
		if (present && w->cas != seg_version(s, f.eh.wlow))
			return -EEXIST;
		/* fall through */
	case SEG_REPLACE:
		if (!present)
			return -ENOENT;
		break;
	case SEG_APPEND:
	case SEG_PREPEND:
		if (!present)
			return -ENOENT;
		return join_locked(s, k, f, w->mode, val, vlen, now, cas_out);
	}
	return write_src(s, k, rc ? NULL : &f, &src, vlen, w, now, cas_out);
}

/* isspace() in the C locale. */
static inline bool is_space(uint8_t c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Parses a counter's value as memcached does (strtoull, then only
 * whitespace after): whitespace, an optional '+', decimal digits below
 * 2^64, whitespace (memcached pads a value a decr shortened with spaces). */
static bool parse_u64(const uint8_t *p, uint32_t n, uint64_t *out)
{
	uint64_t v = 0;
	uint32_t i = 0, d;

	while (i < n && is_space(p[i]))
		i++;
	if (i < n && p[i] == '+')
		i++;
	for (d = i; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
		if (v > (UINT64_MAX - (p[i] - '0')) / 10)
			return false;
		v = v * 10 + (p[i] - '0');
	}
	if (i == d)
		return false;
	for (; i < n; i++)
		if (!is_space(p[i]))
			return false;
	*out = v;
	return true;
}

/* The longest value incr and decr read as a number (digits and padding). */
#define ARITH_MAX 64

int seg_arith_locked(struct seg *s, const struct seg_key *k, bool decr,
		     uint64_t delta, const struct seg_write *init,
		     uint64_t init_val, uint32_t now, uint64_t *out,
		     uint64_t *cas_out)
{
	struct seg_write w = { .mode = SEG_SET };
	uint8_t digits[24];
	struct found f;
	uint64_t v;
	uint32_t off;
	bool present;
	int rc = find_for_write(s, k, now, &f, &present);

	if (rc && rc != -ENOENT)
		return rc;
	if (present) {
		uint8_t cur[ARITH_MAX];
		if (f.eh.vlen > sizeof(cur))
			return -EDOM;
		ring_read(s->ring, s->g->ring_size, val_pos(s, f.off, &f.eh),
			  cur, f.eh.vlen);
		if (!parse_u64(cur, f.eh.vlen, &v))
			return -EDOM;
		w.flags = f.eh.flags;
		w.expire = f.eh.expire;
		w.soft = f.eh.soft;
	} else if (init) {
		v = init_val;
		w.flags = init->flags;
		w.expire = init->expire;
		w.soft = init->soft;
	} else {
		return -ENOENT;
	}
	v = decr ? (v > delta ? v - delta : 0) : v + delta;
	int n = snprintf((char *)digits, sizeof(digits), "%llu",
			 (unsigned long long)v);
	struct seg_src src = { { digits, NULL }, { (uint32_t)n, 0 } };
	seg_write_begin(s);
	FAULT(SET_BEGIN);
	if ((rc = store_at(s, k, rc ? NULL : &f, &src, (uint32_t)n, &w, now,
			   &off, FAULT_ARITH_DIGITS)) ||
	    (rc = version_out(s, off, cas_out)))
		return rc;
	seg_write_end(s);
	seg_count(s, SEG_CTR_sets);
	*out = v;
	return 0;
}

int seg_inspect_locked(struct seg *s, const struct seg_key *k, uint32_t now,
		       void *buf, size_t cap, struct eng_info *out)
{
	struct found f;
	int rc;

	if ((rc = state_ok(s)) || (rc = find(s, k, &f)))
		return rc;
	if (gone(&f.eh, k, now))
		return -ENOENT;
	*out = (struct eng_info){ .cas = seg_version(s, f.eh.wlow),
				  .vlen = f.eh.vlen,
				  .size = f.len + s->g->sum_size,
				  .flags = f.eh.flags,
				  .expire = f.eh.expire,
				  .soft = f.eh.soft,
				  .use = f.eh.use,
				  .stale = soft_expired(&f.eh, now) };
	if (!buf)
		return 0;
	if (cap < f.eh.vlen)
		return -ENOBUFS;
	ring_read(s->ring, s->g->ring_size, val_pos(s, f.off, &f.eh), buf,
		  f.eh.vlen);
	if (s->g->sum_size &&
	    sum_read(s, f.off, f.len) !=
		    XXH3_64bits_withSeed(buf, f.eh.vlen, k->hash))
		return drop_bad_sum(s, &f);
	return 0;
}

int seg_invalidate_locked(struct seg *s, const struct seg_key *k, uint32_t now,
			  const struct eng_inval *o, uint32_t expire,
			  uint64_t *cas_out)
{
	struct found f;
	uint8_t stack[JOIN_STACK], *copy = NULL;
	int rc;

	inval_bump(s);
	if ((rc = state_ok(s)) || (rc = find(s, k, &f)))
		return rc;
	if (gone(&f.eh, k, now))
		return -ENOENT;
	uint64_t version = seg_version(s, f.eh.wlow);
	if (o->cas && o->cas != version && !(o->cas_older && o->cas < version))
		return -EEXIST;
	struct seg_write w = { .mode = SEG_SET,
			       .flags = o->set_value ? o->flags : f.eh.flags,
			       .expire = o->set_ttl ? expire : f.eh.expire,
			       .soft = o->fresh ? 0 : now };
	struct seg_src src = { { o->val, NULL }, { (uint32_t)o->vlen, 0 } };
	if (!o->set_value) {
		/* The value must survive the evacuation the new entry may
		 * need: copy it first (as join_locked() does). */
		copy = f.eh.vlen <= sizeof(stack) ? stack : malloc(f.eh.vlen);
		if (!copy)
			return -ENOMEM;
		ring_read(s->ring, s->g->ring_size, val_pos(s, f.off, &f.eh),
			  copy, f.eh.vlen);
		src = (struct seg_src){ { copy, NULL }, { f.eh.vlen, 0 } };
	}
	rc = write_src(s, k, &f, &src, src.n[0], &w, now, cas_out);
	if (copy != stack)
		free(copy);
	return rc;
}

int seg_drop_at_locked(struct seg *s, uint32_t off)
{
	struct entry eh;
	uint32_t len, b, prev;
	int rc;

	if ((rc = state_ok(s)) || (rc = entry_load(s, off, &eh, &len)))
		return rc;
	if (eh.rec >= s->g->nrec || s->recs[eh.rec].off != off)
		return -EUCLEAN;
	if ((rc = link_of(s, eh.rec, &b, &prev)))
		return rc;
	return unindex(s, b, prev, eh.rec, off);
}

int seg_flight_locked(struct seg *s, uint64_t h, uint32_t me, bool *claimed)
{
	struct seg_flight *fl = s->h->flight;
	int free_slot = -1;

	for (int i = 0; i < (int)SEG_FLIGHTS; i++) {
		uint32_t w = __atomic_load_n(&fl[i].word, __ATOMIC_ACQUIRE);
		if (w == 0) {
			if (free_slot < 0)
				free_slot = i;
		} else if (fl[i].hash == h) {
			*claimed = false;
			return i;
		}
	}
	if (free_slot >= 0) {
		/* Read without the lock by waiters (flight_word). */
		__atomic_store_n(&fl[free_slot].hash, h, __ATOMIC_RELAXED);
		__atomic_store_n(&fl[free_slot].word, me << 1,
				 __ATOMIC_RELEASE);
		*claimed = true;
	}
	return free_slot;
}

int seg_del_locked(struct seg *s, const struct seg_key *k, uint32_t now)
{
	struct found f;
	int rc;

	inval_bump(s); /* a key absent now may be being filled */
	if ((rc = state_ok(s)) || (rc = find(s, k, &f)))
		return rc;
	seg_write_begin(s);
	if ((rc = unindex(s, f.b, f.prev, f.rec, f.off)))
		return rc;
	FAULT(DELETE);
	seg_write_end(s);
	if (gone(&f.eh, k, now)) {
		seg_count(s, expired(&f.eh, now) ? SEG_CTR_expirations
						 : SEG_CTR_deletes);
		return -ENOENT;
	}
	if (soft_expired(&f.eh, now))
		return -ENOENT; /* gone for every read but a stale one */
	seg_count(s, SEG_CTR_deletes);
	return 0;
}

int seg_expiry_locked(struct seg *s, const struct seg_key *k, uint32_t now,
		      bool touch, uint32_t new_expire, uint32_t *expire)
{
	struct found f;
	int rc;

	if ((rc = find(s, k, &f)))
		return rc;
	if (gone(&f.eh, k, now) || soft_expired(&f.eh, now))
		return -ENOENT;
	if (touch) {
		seg_write_begin(s);
		f.eh.expire = new_expire;
		f.eh.soft = 0; /* a new TTL ends the grace (the word stays) */
		if (f.eh.use < ENTRY_USE_MAX)
			f.eh.use++;
		entry_store_hdr(s, f.off, &f.eh);
		seg_write_end(s);
	}
	*expire = served_until(&f.eh);
	return 0;
}

/* ------------------------------------------------------------------------
 * Iteration and sweep
 * ------------------------------------------------------------------------ */

int seg_iter_locked(struct seg *s, uint32_t seg_no, uint32_t now,
		    eng_iter_fn fn, void *arg)
{
	uint32_t size = s->g->ring_size;
	uint32_t off = s->h->tail, done = 0, len;
	struct entry eh;
	int rc;

	if ((rc = state_ok(s)))
		return rc;
	while (done < s->h->used) {
		if ((rc = entry_load(s, off, &eh, &len)))
			return rc;
		if (eh.rec != ENTRY_DEAD && eh.rec < s->g->nrec &&
		    !expired(&eh, now) &&
		    !(s->g->sum_size && !sum_ok(s, off, &eh, len))) {
			struct eng_item it = {
				.klen = eh.klen,
				.vlen = eh.vlen,
				.expire = served_until(&eh),
				.seg = seg_no,
				.flags = eh.flags,
				.soft = eh.soft,
				.stamp = eh.stamp,
				.cas = seg_version(s, eh.wlow),
			};
			uint32_t kpos = key_pos(s, off, &eh);
			ring_pieces(s->ring, size, kpos, eh.klen, it.key,
				    it.key_len);
			ring_pieces(s->ring, size,
				    ring_add(kpos, eh.klen, size), eh.vlen,
				    it.val, it.val_len);
			if ((rc = fn(&it, arg)))
				return rc;
		}
		off = ring_add(off, len, size);
		done += len;
	}
	return 0;
}

int seg_sweep_locked(struct seg *s, uint32_t now, uint32_t budget)
{
	const struct eng_geom *g = s->g;
	struct seg_hdr *h = s->h;
	int reclaimed = 0, rc;

	if ((rc = state_ok(s)))
		return rc;
	if (h->sweep_cursor >= g->nbuckets)
		h->sweep_cursor = 0;
	if (budget > g->nbuckets)
		budget = g->nbuckets;
	seg_write_begin(s);
	for (uint32_t n = 0; n < budget; n++) {
		uint32_t b = h->sweep_cursor, r, prev = NO_REC;
		if ((rc = head_rec(s, b, &r)))
			return rc;
		for (uint32_t steps = 0; r != NO_REC; steps++) {
			uint32_t len, next;
			struct entry eh;
			if (r >= g->nrec || steps >= g->nrec)
				return -EUCLEAN;
			if ((rc = entry_load(s, s->recs[r].off, &eh, &len)))
				return rc;
			if (eh.rec != r)
				return -EUCLEAN;
			next = s->recs[r].next;
			if (!expired(&eh, now)) {
				prev = r;
			} else {
				if ((rc = unindex(s, b, prev, r,
						  s->recs[r].off)))
					return rc;
				seg_count(s, SEG_CTR_expirations);
				reclaimed++;
			}
			r = next - 1; /* NO_REC when next is 0 */
		}
		h->sweep_cursor = h->sweep_cursor + 1 == g->nbuckets
					  ? 0
					  : h->sweep_cursor + 1;
	}
	seg_write_end(s);
	return reclaimed;
}

/* ------------------------------------------------------------------------
 * Integrity walk
 * ------------------------------------------------------------------------ */

enum { SEEN_RING = 1, SEEN_CHAIN = 2, SEEN_FREE = 4 };

static void problem(struct eng_check_report *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void problem(struct eng_check_report *r, const char *fmt, ...)
{
	if (r->problems++ == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(r->first, sizeof(r->first), fmt, ap);
		va_end(ap);
	}
}

/* Walks the ring from tail to head; marks the records that own entries. */
static void check_ring(const struct seg *s, uint32_t seg_no, uint8_t *seen,
		       struct eng_check_report *r)
{
	const struct eng_geom *g = s->g;
	uint32_t size = g->ring_size, off = s->h->tail, done = 0, len;
	struct entry eh;

	while (done < s->h->used) {
		if (entry_load_unchecked(s, off, &eh, &len)) {
			problem(r, "ring: bad entry header at offset %u", off);
			return;
		}
		if (eh.chk != entry_check(off, &eh)) {
			problem(r, "ring: entry at %u has check %#x, not %#x",
				off, eh.chk, entry_check(off, &eh));
			return;
		}
		if (eh.rec != ENTRY_DEAD) {
			uint32_t rec = eh.rec;
			uint32_t kpos = key_pos(s, off, &eh);
			struct hash_split hs =
				hash_split(hash_ring(s, kpos, eh.klen, 0),
					   g->seg_bits);
			if (rec >= g->nrec)
				problem(r, "ring: entry at %u names record %u",
					off, rec);
			else if (seen[rec] & SEEN_RING)
				problem(r, "ring: record %u owns two entries",
					rec);
			else if (s->recs[rec].off != off)
				problem(r,
					"ring: record %u points at %u, not %u",
					rec, s->recs[rec].off, off);
			else if (hs.seg != seg_no || hs.tag != s->recs[rec].tag)
				problem(r,
					"ring: key at %u does not hash to "
					"its segment and tag",
					off);
			else if (g->sum_size && !sum_ok(s, off, &eh, len))
				problem(r,
					"ring: entry at %u fails its "
					"checksum",
					off);
			else {
				seen[rec] |= SEEN_RING;
				r->live++;
			}
		}
		off = ring_add(off, len, size);
		done += len;
	}
}

int seg_check_locked(struct seg *s, uint32_t seg_no, struct eng_check_report *r)
{
	const struct eng_geom *g = s->g;
	const struct seg_hdr *h = s->h;
	uint32_t chained = 0;

	memset(r, 0, sizeof(*r));
	if (state_ok(s)) {
		problem(r,
			"state: head %u tail %u used %u free %u+%u live %u "
			"do not agree",
			h->head, h->tail, h->used, h->fr_head, h->fr_count,
			h->live);
		return 0;
	}
	uint8_t *seen = calloc(g->nrec, 1);
	if (!seen)
		return -ENOMEM;

	check_ring(s, seg_no, seen, r);

	for (uint32_t b = 0; b < g->nbuckets; b++) {
		uint32_t head = s->buckets[b], len;
		struct entry eh;
		if (head == 0)
			continue;
		/* The head must be a live entry that check_ring() saw its
		 * record point at (so head is where an entry starts). */
		if (entry_load(s, head - 1, &eh, &len) || eh.rec >= g->nrec ||
		    !(seen[eh.rec] & SEEN_RING) ||
		    s->recs[eh.rec].off != head - 1) {
			problem(r,
				"index: bucket %u names no live entry "
				"(offset %u)",
				b, head - 1);
			continue;
		}
		uint32_t link = eh.rec + 1;
		for (uint32_t steps = 0; link != 0; steps++) {
			uint32_t rec = link - 1;
			if (rec >= g->nrec || steps >= g->nrec) {
				problem(r, "index: bucket %u chain broken", b);
				break;
			}
			if (seen[rec] & SEEN_CHAIN) {
				problem(r, "index: record %u linked twice",
					rec);
				break;
			}
			seen[rec] |= SEEN_CHAIN;
			chained++;
			if (hash_bucket(s->recs[rec].tag, g->nbuckets) != b)
				problem(r,
					"index: record %u in bucket %u, "
					"tag says otherwise",
					rec, b);
			if (!(seen[rec] & SEEN_RING))
				problem(r, "index: record %u has no live entry",
					rec);
			link = s->recs[rec].next;
		}
	}

	uint32_t link = h->fr_head, nfree = 0;
	for (; link != 0 && nfree <= g->nrec; nfree++) {
		uint32_t rec = link - 1;
		if (rec >= g->nrec) {
			problem(r, "free list: link %u out of range", link);
			break;
		}
		if (seen[rec] & (SEEN_CHAIN | SEEN_FREE)) {
			problem(r, "free list: record %u is also %s", rec,
				seen[rec] & SEEN_FREE ? "free twice"
						      : "in use");
			break;
		}
		seen[rec] |= SEEN_FREE;
		link = s->recs[rec].next;
	}
	if (nfree != h->fr_count)
		problem(r, "free list: %u records, the count says %u", nfree,
			h->fr_count);
	for (uint32_t rec = 0; rec < g->nrec; rec++)
		if ((seen[rec] & SEEN_RING) && !(seen[rec] & SEEN_CHAIN))
			problem(r,
				"index: record %u owns an entry but is "
				"not indexed",
				rec);
	if (chained + h->fr_count != g->nrec)
		problem(r, "pool: %u used + %u free != %u records", chained,
			h->fr_count, g->nrec);
	if (chained != h->live || r->live != h->live)
		problem(r, "stats: %u entries counted, %u indexed, %u in ring",
			h->live, chained, r->live);
	if (h->seq & 1)
		problem(r, "seq is odd: a mutation was interrupted");
	free(seen);
	return 0;
}
