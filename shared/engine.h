/*
 * engine.h - the cache engine: a segmented ring-buffer cache that lives in a
 * memory region (a shm mapping in production, a malloc'd buffer in tests).
 *
 * The engine is the whole data path.  Each operation hashes the key once
 * (XXH3), locks one segment (futex, see lock.h), walks one short bucket
 * chain, compares one key and copies once.  It never allocates and never
 * makes a system call on get or set (the lock sleeps in the kernel only when
 * it is contended).
 *
 * What it is not: it does not create or map the region (the daemon does),
 * does not talk to sockets, and does not tick the clock (the daemon does,
 * through eng_clock_set()).
 *
 * Conventions: every function returns 0 (or a count) on success and a
 * negative errno on failure.  On any error nothing in the cache is changed,
 * except -EUCLEAN: the segment was found corrupted and was reset (its
 * entries dropped) so that no wrong value can be served.
 *
 * Thread safety: a struct eng is read-only after eng_attach() and may be
 * shared by the threads of one process; all cross-thread and cross-process
 * exclusion is done by the segment locks in the region.
 */
#ifndef SHMC_ENGINE_H
#define SHMC_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layout.h"

/* ------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------ */

/* How to carve a region; zero fields take the defaults. */
struct eng_config {
	uint32_t nseg;		  /* segments, power of two; default
				     eng_default_nseg() */
	uint32_t avg_item;	  /* expected key+value bytes; default 128.
				     Sizes the entry pools: a pool that runs
				     out evicts, it does not fail. */
	uint32_t lock_timeout_ms; /* default 2000 */
	uint32_t flags;		  /* REGION_F_* (layout.h); 0: none */
	uint64_t version_floor;	  /* versions start above it; 0: unix
				     seconds << 32 at format */
};

#define ENG_DEFAULT_NSEG_MAX 256u
/* The largest item (key + value) that the default segment count aims to
 * allow: memcached's default item size limit, 1 MiB, and a key. */
#define ENG_DEFAULT_ITEM_GOAL ((UINT32_C(1) << 20) + 256u)
#define ENG_DEFAULT_AVG_ITEM 128u
#define ENG_DEFAULT_LOCK_TIMEOUT_MS 2000u
#define ENG_MIN_RING 1024u /* smallest data ring per segment */

/* The geometry of a region, as computed by eng_plan() and as validated and
 * copied out of the header by eng_attach().  The engine only ever uses its
 * private copy, so a header overwritten after attach cannot send it out of
 * bounds. */
struct eng_geom {
	uint64_t region_size;
	uint64_t seg_base, seg_stride;
	uint32_t nseg, seg_bits;
	uint32_t nbuckets, bucket_bits;
	uint32_t nrec, ring_size, max_kv;
	uint32_t off_buckets, off_recs, off_ring;
	uint32_t flags;		  /* REGION_F_* */
	uint32_t sum_size;	  /* bytes of checksum after each entry: 0, or
			      ENTRY_SUM_SIZE with REGION_F_CHECKSUM */
	uint32_t lock_timeout_ms; /* eng_plan(): the configured lock wait;
				     after eng_attach(): the region's then */
};

/* Called when a lock wait times out, to ask whether the holder is still
 * alive.  Return false only when the holder is known to be dead: the engine
 * then takes the segment over and repairs it (see eng_recover()). */
typedef bool (*eng_alive_fn)(void *arg, uint32_t client_id);

/* An attachment to a region: private to one process, see eng_attach(). */
struct eng {
	uint8_t *base;
	struct region_hdr *hdr;
	struct eng_geom g;
	uint32_t client_id;
	uint32_t timeout_ms; /* lock wait; 0: the region's at each wait, see
				eng_set_timeout() */
	uint32_t hdr_damage; /* ENG_HDR_* found by eng_attach() */
	uint8_t geom[LAYOUT_GEOM_SIZE]; /* the header's lines 0-1 as they were
					   validated at attach */
	struct client_ctr *ctr;		/* this client's counter line */
	eng_alive_fn alive;
	void *alive_arg;
};

/* Totals (or one segment's figures) for stats. */
struct eng_stats {
#define ENG_STATS_X(name, desc) uint64_t name;
	SEG_COUNTERS(ENG_STATS_X)
#undef ENG_STATS_X
	uint64_t entries;     /* live entries in the index */
	uint64_t bytes_used;  /* ring bytes in use, including dead entries */
	uint64_t bytes_total; /* ring bytes in all (the segments counted) */
	uint64_t segments;    /* segments counted */
};

/* Names and descriptions of the counters, in SEG_COUNTERS order. */
extern const char *const eng_counter_names[SEG_NCOUNTERS];
extern const char *const eng_counter_descs[SEG_NCOUNTERS];

/* One live entry, as seen by eng_iter().  Key and value may each be split
 * in two pieces (the second empty unless the entry straddles the ring's end).
 * The pointers are valid only during the callback, under the segment lock. */
struct eng_item {
	const void *key[2];
	size_t key_len[2];
	const void *val[2];
	size_t val_len[2];
	size_t klen, vlen;
	uint32_t expire; /* absolute unix seconds; 0 = never */
	uint32_t seg;
	uint32_t flags;
	uint32_t soft;	/* soft expiry (stale-while-revalidate); 0 = none */
	uint32_t stamp; /* namespace stamp (seg.c); 0 = none */
	uint64_t cas;	/* version */
};

/* Return 0 to go on, anything else to stop (eng_iter returns that value). */
typedef int (*eng_iter_fn)(const struct eng_item *it, void *arg);

/* What eng_check() found in one segment. */
struct eng_check_report {
	uint32_t problems; /* inconsistencies found */
	uint32_t repaired; /* 1 if the segment was reset */
	uint32_t live;	   /* live entries the walk found */
	char first[128];   /* description of the first problem, or "" */
};

/* ------------------------------------------------------------------------
 * Region set-up
 * ------------------------------------------------------------------------ */

/* Computes the geometry for a region of `size` bytes.  Returns 0, or
 * -EINVAL when cfg is invalid (nseg not a power of two, or more than 65536)
 * or the region is too small to give every segment ENG_MIN_RING bytes of
 * ring.  cfg->nseg 0 takes eng_default_nseg(size, cfg).  The largest item
 * (out->max_kv, key + value) is half a segment's ring. */
int eng_plan(size_t size, const struct eng_config *cfg, struct eng_geom *out);

/* The segment count a region of `size` bytes gets when cfg (NULL: all
 * defaults) gives none: the largest power of two up to
 * ENG_DEFAULT_NSEG_MAX whose segments each hold an item of
 * ENG_DEFAULT_ITEM_GOAL bytes, or 1 when no count does (a region under
 * about 2.3 MiB; eng_plan() may then still refuse it as too small).  So a
 * region of 256 MiB or more stores a 1 MiB value with 64 (256 MiB) to 256
 * (1 GiB and more) segments, and 64 MiB gets 16.  cfg->nseg is ignored;
 * the other fields count (avg_item and REGION_F_CHECKSUM take ring bytes).
 * Never fails. */
uint32_t eng_default_nseg(size_t size, const struct eng_config *cfg);

/* Formats `base` (size bytes, zeroed or not) as an empty cache, clock set
 * to the current time.  Returns 0 or eng_plan()'s errors.  Not safe while
 * anyone is attached. */
int eng_format(void *base, size_t size, const struct eng_config *cfg);

/* Validates the region at base and attaches to it with `client_id` as the
 * identity its locks carry (1..ENG_CLIENT_ID_MAX; the daemon hands them
 * out).  The geometry is taken from the header's lines 0-1 or, when they
 * are damaged, from their second copy at the header's end (e->hdr_damage
 * then says which was found damaged; eng_attach() writes nothing: the
 * daemon repairs with eng_hdr_check()).  Returns 0, or
 *   -EINVAL   base NULL or client_id out of range;
 *   -EPROTO   not a shmcached region, or one of another layout version;
 *   -EUCLEAN  the header's geometry and its copy are both inconsistent or
 *             damaged (only a new region, --reset, gets out of that);
 *   -ERANGE   the region is larger than the `size` bytes mapped here.
 * When why is not NULL it receives a static one-line explanation. */
int eng_attach(struct eng *e, void *base, size_t size, uint32_t client_id,
	       const char **why);
#define ENG_CLIENT_ID_MAX 0x7fffffffu
#define ENG_HDR_PRIMARY 1u /* the header's lines 0-1 were damaged */
#define ENG_HDR_COPY 2u	   /* their second copy was damaged */

/* Compares the header's geometry and its copy with the geometry this
 * attachment validated at attach; with repair, rewrites the damaged ones
 * from it (only the daemon repairs: nobody else may write the header).
 * Returns 0 when both are intact, else ENG_HDR_PRIMARY | ENG_HDR_COPY for
 * what was found damaged, and puts one line that says what was found (and
 * done) into msg (len bytes, may be 0). */
int eng_hdr_check(struct eng *e, bool repair, char *msg, size_t len);

/* The region's lock wait in ms, which every attachment without a timeout
 * of its own (eng_set_timeout) reads at each lock wait; and its setter, the
 * daemon's (--lock-timeout, applied at each start).  0 sets the default. */
uint32_t eng_lock_timeout(const struct eng *e);
void eng_set_lock_timeout(struct eng *e, uint32_t ms);

/* Installs the liveness callback (NULL: holders are never presumed dead). */
void eng_set_alive_fn(struct eng *e, eng_alive_fn fn, void *arg);

/* How long this attachment's operations wait for a segment lock before
 * -ETIMEDOUT (0, the default: the region's, eng_lock_timeout(), as it is
 * at each wait).  The daemon uses a short one so that a stuck client
 * cannot stall its event loop. */
void eng_set_timeout(struct eng *e, uint32_t ms);

/* The region clock ("now" for expiry), unix seconds.  eng_clock_set() is the
 * daemon's tick and the tests' hook; it never goes into a segment lock. */
uint32_t eng_now(const struct eng *e);
void eng_clock_set(struct eng *e, uint32_t now);

/* ------------------------------------------------------------------------
 * Items: flags, versions (CAS), conditional writes.
 *
 * Every write of an item (set, add, replace, cas, append, prepend, incr,
 * decr) gives it a new 64-bit version: the segment's write count above the
 * segment's number, so versions are unique across the region.  A region's
 * counts start at its version floor (eng_config.version_floor, by default
 * unix seconds << 32 at format), so a version read from an earlier region
 * is not issued again unless one of its segments averaged over 2^(32 -
 * seg_bits) writes a second; a snapshot load raises the floor above the
 * versions it saved (eng_version_floor()).  Evacuation moves and touches
 * keep the version.
 * ------------------------------------------------------------------------ */

/* What a read returns besides the value. */
struct eng_meta {
	uint64_t cas;	 /* version */
	size_t vlen;	 /* the value's length */
	uint32_t flags;	 /* as stored */
	uint32_t expire; /* absolute unix second; 0 = never */
	uint32_t soft; /* soft expiry of a value stored with grace; 0 = none */
	bool stale;    /* served past its soft expiry (eng_get_or_claim) */
};

/* What a store does when the key is present or absent (as memcached's
 * commands of the same names). */
enum eng_mode {
	ENG_SET,     /* store either way */
	ENG_ADD,     /* only if absent, else -EEXIST */
	ENG_REPLACE, /* only if present, else -ENOENT */
	ENG_CAS,     /* only if present (-ENOENT) and still of version cas
			(else -EEXIST) */
	ENG_APPEND,  /* value after the present one (else -ENOENT); the
			item keeps its flags and expiry */
	ENG_PREPEND, /* value before the present one; as ENG_APPEND */
};

/* A fill lease: the right to install a value read from the source of
 * truth after a miss, which an invalidation taken meanwhile takes away
 * (memcached's leases; "no stale fill").  eng_lease_begin() takes it at
 * the miss, before the source is read; a store with o->lease then fails
 * with -ESTALE when, since the lease began, the key's segment saw a
 * deletion of any key (eng_del(), eng_invalidate(), a reset or a clear),
 * or - for a key under a namespace - any namespace was flushed, or the
 * key is under a namespace blocked by eng_ns_block() (then or now).  A
 * deletion of another key of the segment voids it too: a lease fails
 * safe, and costs its holder one more miss.  A plain value, copied
 * freely; it holds nothing and needs no release. */
struct eng_lease {
	uint32_t seg;	/* the key's segment */
	uint32_t inval; /* seg_hdr.inval at the start */
	uint32_t clock; /* the region's namespace clock at the start */
	uint32_t ok;	/* 1: may fill; 0: void from the start (blocked) */
};

/* A store's options; zero is a plain set that never expires. */
struct eng_wopts {
	enum eng_mode mode;
	uint32_t flags;	    /* opaque, returned by every read */
	uint32_t ttl_s;	    /* seconds; 0 = never expires */
	uint32_t expire_at; /* absolute unix second; when not 0 it is used
			       instead of ttl_s (snapshot loads); one already
			       past stores nothing: -ETIME */
	uint32_t grace_s;   /* stale-while-revalidate: with a TTL, the item
			       is kept grace_s more seconds, during which
			       only eng_get_or_claim() serves it (as stale) */
	uint64_t cas;	    /* ENG_CAS: the version read */
	const struct eng_lease *lease; /* not NULL: a fill under this lease
					  (-ESTALE once it is void) */
};

/* Stores key -> value as o says (NULL: a plain set).  *cas_out (if not
 * NULL) gets the new version.  Errors: as eng_set(); -EEXIST (add: present;
 * cas: changed since), -ENOENT (replace, cas, append, prepend: absent or
 * expired), -E2BIG (an append or prepend would pass max_kv), -ENOMEM (an
 * append or prepend of a value over 4 KiB could not copy it), -ESTALE
 * (o->lease is void, or a set or add of a key under a namespace blocked
 * by eng_ns_block(): nothing stored), -EINVAL (o->lease is another
 * segment's: not this key's lease). */
int eng_store(struct eng *e, const void *key, size_t klen, const void *val,
	      size_t vlen, const struct eng_wopts *o, uint64_t *cas_out);

/* Starts a fill lease on key (see struct eng_lease): call it after a
 * miss and before reading the value from its source.  Takes no lock and
 * writes nothing.  0, or -EINVAL (bad key, l NULL). */
int eng_lease_begin(struct eng *e, const void *key, size_t klen,
		    struct eng_lease *l);

/* As eng_get(), with the item's metadata, its version included, in *m
 * (m->vlen is set on -ENOBUFS too). */
int eng_get_ex(struct eng *e, const void *key, size_t klen, void *buf,
	       size_t cap, struct eng_meta *m);

/* One key of eng_mget(): the key and where its value goes. */
struct eng_mkey {
	const void *key;
	size_t klen;
	void *buf; /* may be NULL when cap is 0 */
	size_t cap;
};

/* One key's result: rc as eng_get_ex() returns it (0, -ENOENT, -ENOBUFS,
 * or a key's or the lock's error); m is set when rc is 0 or -ENOBUFS. */
struct eng_mres {
	int rc;
	struct eng_meta m;
};

/* eng_get_ex() of keys[0..n-1], each result in res[i], with the memory
 * loads of different keys overlapped (keys are taken 16 at a time: every
 * key hashed, then every segment header and bucket asked for, then every
 * head entry, then each read as eng_get_ex() reads it).  Keys may repeat.
 * m.cas is filled only with want_cas (two more cache lines per key).
 * Returns 0 (the per-key results say the rest), or -EINVAL when keys or
 * res is NULL and n > 0. */
int eng_mget(struct eng *e, size_t n, const struct eng_mkey *keys,
	     struct eng_mres *res, bool want_cas);

/* One item of eng_mset(). */
struct eng_mitem {
	const void *key;
	size_t klen;
	const void *val;
	size_t vlen;
};

/* eng_store() of each item in turn with the same options o (may be NULL:
 * a plain set), its result in rc[i] and, if cas_out is not NULL, its new
 * version in cas_out[i]; 16 keys are hashed and their segment headers and
 * buckets asked for before the first of them is stored.  Returns 0, or -EINVAL when items or rc is NULL
 * and n > 0.  Not atomic: each item is stored on its own. */
int eng_mset(struct eng *e, size_t n, const struct eng_mitem *items,
	     const struct eng_wopts *o, int *rc, uint64_t *cas_out);

/* Atomic increment (decr false) or decrement of a value that is a decimal
 * number below 2^64, as memcached's incr and decr: incr wraps at 2^64,
 * decr stops at 0, and the result is stored as its decimal digits.
 * Returns 0 with the result in *out (and the new version in *cas_out if
 * not NULL), -ENOENT when the key is absent and init is NULL, -EDOM when
 * the value is not such a number (nothing is changed).  With init, an
 * absent key is first created with init_val, init->flags and init->ttl_s
 * and the delta applied to that, in the same locked step (so an incr by 1
 * with init_val 0 returns 1, as ngx.shared.DICT:incr(key, 1, 0) does).
 * -ESTALE: with init, a key under a namespace blocked by eng_ns_block()
 * (nothing created). */
int eng_arith(struct eng *e, const void *key, size_t klen, bool decr,
	      uint64_t delta, const struct eng_wopts *init, uint64_t init_val,
	      uint64_t *out, uint64_t *cas_out);

/* Everything the engine keeps about one item, for inspection (memcached's
 * meta debug and the meta flags h and t): see eng_inspect(). */
struct eng_info {
	uint64_t cas;	 /* version */
	size_t vlen;	 /* the value's length */
	size_t size;	 /* bytes the entry takes in the ring: header,
			    extension, key, value, spare capacity and
			    checksum */
	uint32_t flags;	 /* as stored */
	uint32_t expire; /* the hard expiry, absolute unix second; 0 =
			    never (eng_meta.expire is the soft one when
			    there is one) */
	uint32_t soft;	 /* soft expiry; 0 = none */
	uint32_t use;	 /* the entry's use count, 0..ENTRY_USE_MAX: 0 when
			    stored, +1 per read or overwrite, -1 each time
			    evacuation moves it (layout.h) */
	bool stale;	 /* past its soft expiry, served only as stale */
};

/* Looks key up and changes nothing (no access, no counters, no
 * reclamation), like eng_peek(), but also finds an item past its soft
 * expiry (out->stale set).  The value is copied into buf when buf is not
 * NULL (-ENOBUFS when cap is too small: nothing copied, *out set); with
 * buf NULL only *out is filled.  Returns 0, -ENOENT (missing, expired or
 * flushed), -ENOBUFS, or the common errors. */
int eng_inspect(struct eng *e, const void *key, size_t klen, void *buf,
		size_t cap, struct eng_info *out);

/* What eng_invalidate() does. */
struct eng_inval {
	uint64_t cas;	/* not 0: only when the item's version is cas,
			    else -EEXIST */
	bool cas_older; /* with cas: a cas below the item's version
			    passes too (memcached's ms with I and C: a
			    write from an older read is kept, as stale) */
	bool set_ttl;	/* a new TTL, ttl_s (0: never expires), instead
			    of the item's expiry */
	uint32_t ttl_s;
	bool set_value; /* store val[0..vlen) with flags instead of
			    keeping the item's value and flags */
	const void *val;
	size_t vlen;
	uint32_t flags;
	bool fresh; /* do not mark it stale: a conditional rewrite that
		       also finds an item past its soft expiry (plain
		       writes miss it), which leaves it fresh */
};

/* Marks a present item stale (memcached's md I): it keeps its value and
 * flags (or takes o->val and o->flags with set_value), gets a new
 * version, and expires softly now: plain reads miss it from now on, while
 * eng_get_or_claim_ex() serves it as stale (m->stale) and hands its reload
 * to one caller, until its hard expiry (kept, or now + ttl_s with
 * set_ttl).  An item already stale is marked again (a new version).  With
 * o->fresh it is rewritten without the mark (stale or not before): the
 * conditional write (o->cas) that eng_store() cannot do on a stale item,
 * which it does not find.  *cas_out (if not NULL) gets the new version.
 * Returns 0, -ENOENT (missing or expired), -EEXIST (o->cas does not
 * pass), -EINVAL (o NULL), -E2BIG (set_value over max_kv), -ENOMEM (the
 * copy of a value over 4 KiB), or the common errors. */
int eng_invalidate(struct eng *e, const void *key, size_t klen,
		   const struct eng_inval *o, uint64_t *cas_out);

/* Raises every segment's write count so that versions issued from now on
 * are above v (a snapshot load, with the highest version it saved). */
int eng_version_floor(struct eng *e, uint64_t v);

/* The highest version issued so far in the region. */
uint64_t eng_version_max(const struct eng *e);

/* ------------------------------------------------------------------------
 * Namespaces: every key that starts with a registered prefix is under that
 * namespace, and eng_ns_flush() drops them all in constant time, whatever
 * their number: the entries stay until reads, writes or evacuation reclaim
 * them, and no read returns them.  Prefixes may overlap ("user:" and
 * "user:42:"): a key is gone when any namespace it is under was flushed
 * after it was written.  The table lives in the region; only one process
 * writes it (the daemon), any process reads it.  Up to LAYOUT_NS_SLOTS
 * prefixes of 1..LAYOUT_NS_PREFIX_MAX bytes.
 * ------------------------------------------------------------------------ */

/* Registers prefix as a namespace.  0, -EEXIST (already registered),
 * -ENOSPC (LAYOUT_NS_SLOTS / 2 prefixes registered or unregistered: an
 * unregistered prefix keeps its slot for the region's life), -EINVAL
 * (empty or too long). */
int eng_ns_add(struct eng *e, const void *prefix, size_t len);

/* Drops every key under the namespace prefix: 0, -ENOENT (not
 * registered), -EOVERFLOW (the region's 2^32 - 1 flushes are spent: only
 * a new region gets past it). */
int eng_ns_flush(struct eng *e, const void *prefix, size_t len);

/* Blocks (on) or unblocks the namespace prefix for writes: while it is
 * blocked, no write makes a value under it - a set or an add (a fill
 * under a lease too), a reservation, an incr/decr with an initial value
 * fail with -ESTALE - and a lease begun on a key under it is void.  The
 * writes that need the key present (replace, cas, append, prepend,
 * incr/decr, invalidations) find nothing, -ENOENT, since the prefix is
 * flushed as it is blocked.  Reads, deletes and touches are not
 * affected.  The near cache
 * blocks its prefixes while its invalidations may be missing (block
 * first, then flush, so nothing is left under them; flush again before
 * unblocking): no copy is made that a lost invalidation could leave
 * stale.  0, -ENOENT (not registered), -EINVAL. */
int eng_ns_block(struct eng *e, const void *prefix, size_t len, bool on);

/* Unregisters prefix: drops its keys (as eng_ns_flush()) and takes it
 * off the list.  Its slot stays: keys under the prefix are still stamped,
 * so that the dropped ones never come back, and registering the prefix
 * again revives it.  0, -ENOENT, -EINVAL, -EOVERFLOW. */
int eng_ns_del(struct eng *e, const void *prefix, size_t len);

/* One registered namespace, for eng_ns_list(). */
struct eng_ns_info {
	uint8_t prefix[LAYOUT_NS_PREFIX_MAX];
	uint32_t len;
	uint32_t mark; /* 0: never flushed */
	uint32_t slot;
};

/* Copies up to cap registered namespaces into out; returns how many are
 * registered (may be more than cap). */
int eng_ns_list(const struct eng *e, struct eng_ns_info *out, size_t cap);

/* ------------------------------------------------------------------------
 * Data operations.  Keys are 1..ENTRY_KEY_MAX bytes; key + value at most
 * g.max_kv bytes (half a segment's ring).  Common errors:
 *   -EINVAL     klen 0, or a NULL pointer where bytes are needed;
 *   -E2BIG      key longer than ENTRY_KEY_MAX or key + value over max_kv;
 *   -ETIMEDOUT  the segment lock was not obtained within lock_timeout_ms;
 *   -EUCLEAN    the segment was corrupted and has been reset.
 * ------------------------------------------------------------------------ */

/* Stores key -> value with a TTL in seconds (0: never expires).  Replaces an
 * existing entry: in place when the value fits its capacity, else by a new
 * entry with grown capacity.  Makes room by evacuation (drops expired and
 * cold entries, moves recent ones), never fails for lack of space. */
int eng_set(struct eng *e, const void *key, size_t klen, const void *val,
	    size_t vlen, uint32_t ttl_s);

/* As eng_set() with an absolute expiry (unix seconds, 0 = never) instead
 * of a TTL: for snapshot loads.  An expire_at already past stores nothing
 * and returns -ETIME. */
int eng_set_expire_at(struct eng *e, const void *key, size_t klen,
		      const void *val, size_t vlen, uint32_t expire_at);

/* Copies the value of key into buf.  *vlen gets the value's full length;
 * *expire_at (if not NULL) its absolute expiry (0 = never).  Returns 0,
 * -ENOENT for a missing or expired key (an expired one is reclaimed), or
 * -ENOBUFS when cap < value length (nothing copied, *vlen and *expire_at
 * set).  A hit - -ENOBUFS included: the entry was found - updates the
 * entry's access time and the hit counter. */
int eng_get(struct eng *e, const void *key, size_t klen, void *buf, size_t cap,
	    size_t *vlen, uint32_t *expire_at);

/* As eng_get() but changes nothing: no access time, no counters, no
 * reclamation. */
int eng_peek(struct eng *e, const void *key, size_t klen, void *buf, size_t cap,
	     size_t *vlen, uint32_t *expire_at);

/* Deletes key.  Returns 0 or -ENOENT (missing or already expired). */
int eng_del(struct eng *e, const void *key, size_t klen);

/* *ttl_s = seconds left (0: never expires).  -ENOENT if missing/expired. */
int eng_ttl(struct eng *e, const void *key, size_t klen, uint32_t *ttl_s);

/* Sets a new TTL (0: never expires) and counts as an access.  -ENOENT if
 * missing or expired. */
int eng_touch(struct eng *e, const void *key, size_t klen, uint32_t ttl_s);

/* Drops every entry of every segment (counters are kept). */
int eng_clear(struct eng *e);

/* ------------------------------------------------------------------------
 * Zero-copy access
 * ------------------------------------------------------------------------ */

/* Called under the segment lock with the value in place: p1[0..n1) then
 * p2[0..n2). */
typedef int (*eng_read_fn)(const void *p1, size_t n1, const void *p2, size_t n2,
			   void *arg);

/* Looks key up and calls fn on its value (a get: access time, counters).
 * Returns fn's return value, -ENOENT, or the common errors. */
int eng_read(struct eng *e, const void *key, size_t klen, eng_read_fn fn,
	     void *arg);

/* A reservation: an entry written but for its value, its segment locked. */
struct eng_resv {
	void *p[2]; /* fill p[0][0..n[0]) then p[1][0..n[1]) */
	size_t n[2];
	uint32_t seg;
	uint32_t off;
};

/* Reserves an entry for key with a vlen-byte value and returns with the
 * segment LOCKED and a mutation open (a holder dying now gets its segment
 * reset).  Errors as eng_set(); on error nothing is locked. */
int eng_reserve(struct eng *e, const void *key, size_t klen, size_t vlen,
		uint32_t ttl_s, struct eng_resv *r);

/* Publishes the reservation (counts a set) and unlocks.  Returns 0. */
int eng_commit(struct eng *e, struct eng_resv *r);

/* Removes the reserved entry from the index and unlocks. */
void eng_abort(struct eng *e, struct eng_resv *r);

/* ------------------------------------------------------------------------
 * get_or_load: one loader per key across processes
 * ------------------------------------------------------------------------ */

/* Which load a caller is part of (see eng_get_or_claim()). */
struct eng_flight {
	uint64_t hash;
	uint32_t seg;
	int slot;      /* -1: no slot was free, load without coordination */
	uint32_t word; /* the slot's word when last seen */
	struct eng_lease lease; /* with ENG_LOAD: begun at the claim, for
				   the loader's store (o->lease) */
};

#define ENG_LOAD 1 /* the caller must load, store, then eng_flight_done() */
#define ENG_WAIT 2 /* another client loads: eng_flight_wait(), then retry */

/* A get that, on a miss, either claims the key's load (ENG_LOAD) or finds
 * it claimed by another caller (ENG_WAIT).  Otherwise returns as
 * eng_get(). */
int eng_get_or_claim(struct eng *e, const void *key, size_t klen, void *buf,
		     size_t cap, size_t *vlen, uint32_t *expire_at,
		     struct eng_flight *f);

/* eng_get_or_claim() that also serves a value stored with grace past its
 * soft expiry (stale-while-revalidate): then m->stale is set and the
 * return is ENG_LOAD when the caller claimed the key's reload (it must
 * load, store and end the flight; the others are served the stale value
 * meanwhile, without waiting), 0 when another caller reloads it.  With
 * every flight slot of the segment busy, every such caller gets ENG_LOAD
 * (as on a miss): a reload without coordination, rather than none. */
int eng_get_or_claim_ex(struct eng *e, const void *key, size_t klen, void *buf,
			size_t cap, struct eng_meta *m, struct eng_flight *f);

/* Claims key's load whether or not the key is present (memcached's meta
 * get R: an item near its expiry is reloaded by one client): ENG_LOAD
 * when the caller now holds it (or no flight slot was free: f->slot -1,
 * a load without coordination), ENG_WAIT when another caller holds it.
 * The holder ends it with eng_flight_done().  Errors: -EINVAL (f NULL),
 * the common ones. */
int eng_flight_claim(struct eng *e, const void *key, size_t klen,
		     struct eng_flight *f);

/* Sleeps up to ms while the load f waits for is in progress.  Returns 0
 * when it ended (retry eng_get_or_claim), -ETIMEDOUT if it is still on,
 * -EOWNERDEAD if the liveness callback says its loader is dead (take it
 * over). */
int eng_flight_wait(struct eng *e, const struct eng_flight *f, uint32_t ms);

/* Takes over a load whose loader is dead or too slow: returns 0 when the
 * caller is now the loader, -EAGAIN when the load changed meanwhile.
 * f->lease is not renewed: begin it again (eng_lease_begin()) before
 * reading the source. */
int eng_flight_takeover(struct eng *e, struct eng_flight *f);

/* Ends the caller's load (success or failure) and wakes every waiter. */
void eng_flight_done(struct eng *e, struct eng_flight *f);

/* ------------------------------------------------------------------------
 * Walks, statistics, maintenance
 * ------------------------------------------------------------------------ */

/* Calls fn for every live, unexpired entry of segments [from, to), oldest
 * first within a segment, holding each segment's lock while it is walked
 * (one segment at a time).  Returns 0, fn's non-zero return, or a lock
 * error. */
int eng_iter(struct eng *e, uint32_t from, uint32_t to, eng_iter_fn fn,
	     void *arg);

/* A listing's position: the next segment to walk (0 to start; e->g.nseg
 * once every segment was walked). */
struct eng_cursor {
	uint32_t seg;
};

/* Lists the live entries whose key starts with prefix[0..plen) (plen 0:
 * every entry) of one segment, cur->seg, then advances the cursor.  The
 * entries (as eng_iter() filters them: unexpired, not dropped by a
 * namespace flush, not past a soft expiry) are copied - key and metadata,
 * not the value - under the segment's lock, and fn is called on the copies
 * after the lock is released: fn may take as long as it likes and may call
 * the engine.  fn sees the key in it->key[0] (it->key[1] empty), it->vlen,
 * flags, expire, soft and cas; it->val is empty.
 *
 * Guarantee: keys never change segment and a segment is copied at one
 * instant, so a scan from cursor 0 to the end lists every key present
 * for the whole scan exactly once; a key written or removed meanwhile is
 * listed at most once.  Moves within a segment (evacuation) do not
 * matter.
 *
 * Returns 1 when the cursor is now past the last segment (the scan is
 * done), 0 when segments remain, -EINVAL (cur or fn NULL, prefix NULL
 * with plen > 0, cur->seg > nseg), -ENOMEM (the copy), a lock error, or
 * fn's non-zero return (fn should return 0 or a negative errno): on any
 * of those the cursor is unchanged, so calling again walks the segment
 * again.  A corrupted segment is reset and counts as walked, empty. */
int eng_scan(struct eng *e, struct eng_cursor *cur, const void *prefix,
	     size_t plen, eng_iter_fn fn, void *arg);

/* Figures summed over all segments, or for one segment (-EINVAL if seg is
 * out of range).  Read without locks: each figure is exact, their sum is a
 * snapshot that may mix instants. */
void eng_stats(const struct eng *e, struct eng_stats *out);
int eng_seg_stats(const struct eng *e, uint32_t seg, struct eng_stats *out);

/* Walks segment `seg` under its lock and verifies that its index, free ring
 * and data ring agree (see docs/LAYOUT.md, "Invariants").  With repair, a
 * segment with problems is reset.  Returns 0 (report filled), -EINVAL,
 * -ENOMEM (the walk's bitmap) or a lock error. */
int eng_check(struct eng *e, uint32_t seg, bool repair,
	      struct eng_check_report *rep);

/* Reclaims expired entries from at most `budget` index buckets, resuming
 * where the previous call stopped (the daemon's background sweep).  Returns
 * the number of entries reclaimed, or a lock error. */
int eng_sweep(struct eng *e, uint32_t seg, uint32_t budget);

/* The recovery entry point: for every segment whose lock is held by
 * dead_id, takes the lock over, resets the segment if a mutation was in
 * progress (odd seq), and releases it, waking every waiter; ends the loads
 * dead_id had claimed, waking their waiters.  Returns the number of
 * segments taken over. */
int eng_recover(struct eng *e, uint32_t dead_id);

/* eng_recover() for this handle's own id, held by a dead predecessor that
 * had the same id: the daemon always attaches as one id, so the locks of a
 * killed daemon read as the next one's.  Only for a caller that knows no
 * thread of its own holds a lock or a load yet (the daemon after it claimed
 * the region, before it serves).  Returns the segments taken over. */
int eng_recover_inherited(struct eng *e);

/* Which segment a key belongs to (for tools and tests). */
uint32_t eng_seg_of(const struct eng *e, const void *key, size_t klen);

#endif
