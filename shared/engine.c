/*
 * engine.c - the engine's entry points: argument checks, hashing, the
 * segment lock around each seg_*_locked() call, corruption repair and
 * dead-holder recovery, statistics, and the region's format and validation.
 *
 * The shape of every data operation:
 *     check arguments -> hash once -> lock the key's segment
 *     -> seg_*_locked() -> repair on -EUCLEAN -> unlock
 */

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "fault.h"
#include "hash.h"
#include "lock.h"
#include "seg.h"

const char *const eng_counter_names[SEG_NCOUNTERS] = {
#define NAME_X(name, desc) #name,
	SEG_COUNTERS(NAME_X)
#undef NAME_X
};

const char *const eng_counter_descs[SEG_NCOUNTERS] = {
#define DESC_X(name, desc) desc,
	SEG_COUNTERS(DESC_X)
#undef DESC_X
};

/* ------------------------------------------------------------------------
 * Locking, repair, recovery
 * ------------------------------------------------------------------------ */

/* Resets a segment found corrupted or left mid-write, holding its lock. */
static void repair_locked(struct seg *s)
{
	if (!(s->h->seq & 1))
		seg_write_begin(s);
	seg_reset_locked(s);
	seg_count(s, SEG_CTR_repairs);
	seg_write_end(s);
}

/* After a takeover: a holder that died mid-mutation leaves seq odd. */
static void recover_locked(struct seg *s)
{
	if (s->h->seq & 1)
		repair_locked(s);
}

/* Contended or dead-holder path of seg_lock(). */
static int __attribute__((noinline)) seg_lock_slow(struct eng *e, struct seg *s)
{
	/* One deadline for the whole operation, however many holders die
	 * or change hands meanwhile. */
	uint64_t deadline = clock_mono_ms() + (e->timeout_ms
						       ? e->timeout_ms
						       : eng_lock_timeout(e));

	for (;;) {
		uint64_t t = clock_mono_ms();
		if (t >= deadline)
			return -ETIMEDOUT;
		int rc = lock_acquire(&s->h->lock, e->client_id,
				      (uint32_t)(deadline - t), e->alive,
				      e->alive_arg);
		if (rc != -EOWNERDEAD)
			return rc;
		/* The word may have changed hands since the holder was found
		 * dead: take it over only from an owner that is itself dead
		 * (the CAS in lock_takeover fails if the owner changes again). */
		uint32_t w = __atomic_load_n(&s->h->lock, __ATOMIC_ACQUIRE);
		uint32_t owner = lock_owner(w);
		/* Our own id is alive: it is another thread of this process
		 * (the daemon's SAVE/LOAD thread and its loop share one). */
		if (w != 0 && owner != e->client_id &&
		    !e->alive(e->alive_arg, owner) &&
		    lock_takeover(&s->h->lock, owner, e->client_id) == 0) {
			recover_locked(s);
			return 0;
		}
		/* Recovered by someone else, or a live holder now: wait again. */
	}
}

/* Fast paths inline: one CAS to take a free lock, one to release a lock
 * nobody waits for; lock.c does the rest. */
static inline int seg_lock(struct eng *e, struct seg *s)
{
	uint32_t free_word = 0;

	if (__builtin_expect(__atomic_compare_exchange_n(
				     &s->h->lock, &free_word, e->client_id << 1,
				     false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED),
			     1))
		return 0;
	return seg_lock_slow(e, s);
}

static inline void seg_unlock(struct eng *e, struct seg *s)
{
	uint32_t mine = e->client_id << 1;

	if (__builtin_expect(__atomic_compare_exchange_n(&s->h->lock, &mine, 0,
							 false,
							 __ATOMIC_RELEASE,
							 __ATOMIC_RELAXED),
			     1))
		return;
	lock_release(&s->h->lock, e->client_id);
}

/* Ends an operation: repairs the segment if rc says it is corrupted (an
 * entry dropped for its checksum leaves a sound segment). */
static int seg_done(struct eng *e, struct seg *s, int rc)
{
	if (rc == -EUCLEAN)
		repair_locked(s);
	else if (rc == SEG_EBADSUM)
		rc = -EUCLEAN;
	seg_unlock(e, s);
	return rc;
}

/* eng_recover() without the check that dead_id is not our own. */
static int recover_id(struct eng *e, uint32_t dead_id)
{
	int n = 0;

	for (uint32_t i = 0; i < e->g.nseg; i++) {
		struct seg s = seg_at(e, i);
		uint32_t w = __atomic_load_n(&s.h->lock, __ATOMIC_ACQUIRE);
		if (w == 0 || lock_owner(w) != dead_id)
			continue;
		if (lock_takeover(&s.h->lock, dead_id, e->client_id) != 0)
			continue;
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		recover_locked(&s);
		lock_release_all(&s.h->lock, e->client_id);
		n++;
	}
	for (uint32_t i = 0; i < e->g.nseg; i++) {
		struct seg s = seg_at(e, i);
		for (uint32_t j = 0; j < SEG_FLIGHTS; j++) {
			uint32_t *w = &s.h->flight[j].word;
			uint32_t v = __atomic_load_n(w, __ATOMIC_ACQUIRE);
			if (v && lock_owner(v) == dead_id &&
			    __atomic_compare_exchange_n(w, &v, 0, false,
							__ATOMIC_RELEASE,
							__ATOMIC_RELAXED))
				lock_futex_wake(w, INT_MAX);
		}
	}
	return n;
}

int eng_recover(struct eng *e, uint32_t dead_id)
{
	if (dead_id == 0 || dead_id == e->client_id)
		return 0;
	return recover_id(e, dead_id);
}

int eng_recover_inherited(struct eng *e)
{
	return recover_id(e, e->client_id);
}

void eng_set_timeout(struct eng *e, uint32_t ms)
{
	e->timeout_ms = ms;
}

uint32_t eng_lock_timeout(const struct eng *e)
{
	uint32_t ms = __atomic_load_n(&e->hdr->lock_timeout_ms,
				      __ATOMIC_RELAXED);

	return ms ? ms : ENG_DEFAULT_LOCK_TIMEOUT_MS;
}

void eng_set_lock_timeout(struct eng *e, uint32_t ms)
{
	__atomic_store_n(&e->hdr->lock_timeout_ms,
			 ms ? ms : ENG_DEFAULT_LOCK_TIMEOUT_MS,
			 __ATOMIC_RELAXED);
}

void eng_set_alive_fn(struct eng *e, eng_alive_fn fn, void *arg)
{
	e->alive = fn;
	e->alive_arg = arg;
}

/* ------------------------------------------------------------------------
 * Data operations
 * ------------------------------------------------------------------------ */

uint32_t eng_now(const struct eng *e)
{
	return __atomic_load_n(&e->hdr->clock, __ATOMIC_RELAXED);
}

void eng_clock_set(struct eng *e, uint32_t now)
{
	__atomic_store_n(&e->hdr->clock, now, __ATOMIC_RELAXED);
}

static uint32_t expire_of(uint32_t now, uint32_t ttl_s)
{
	if (ttl_s == 0)
		return 0;
	return ttl_s > UINT32_MAX - now ? UINT32_MAX : now + ttl_s;
}

static int key_ok(const void *key, size_t klen)
{
	if (!key || klen == 0)
		return -EINVAL;
	return klen > ENTRY_KEY_MAX ? -E2BIG : 0;
}

/* The checks of a store: key, value pointer, sizes. */
static int store_ok(const struct eng *e, const void *key, size_t klen,
		    const void *val, size_t vlen)
{
	int rc = key_ok(key, klen);

	if (rc)
		return rc;
	if (!val && vlen)
		return -EINVAL;
	if (vlen > e->g.max_kv || klen + vlen > e->g.max_kv)
		return -E2BIG;
	return 0;
}

/* ------------------------------------------------------------------------
 * Namespaces
 * ------------------------------------------------------------------------ */

/* Namespace slots: after the client table. */
#define NS_BASE (LAYOUT_REGION_HDR_SIZE + LAYOUT_CLIENT_TABLE_SIZE)
/* ns_slot.state of an unregistered namespace.  Its slot stays, and keeps
 * applying its mark and stamping the keys under its prefix: its keys were
 * flushed when it was unregistered, and some of them may still be in the
 * ring, which forgetting the mark would bring back.  Registering the
 * prefix again revives the slot as it is. */
#define NS_DEAD 1u
/* ns_slot.state of a namespace blocked for fills (eng_ns_block()). */
#define NS_BLOCKED 2u

static inline struct ns_slot *ns_table(const struct eng *e)
{
	return (struct ns_slot *)(e->base + NS_BASE);
}

/* The slot of prefix p (hash h), or NULL; *free_slot gets the first slot
 * a new one may take (or LAYOUT_NS_SLOTS). */
static struct ns_slot *ns_find(const struct eng *e, const void *p, uint32_t len,
			       uint32_t h, uint32_t *free_slot)
{
	struct ns_slot *t = ns_table(e);

	if (free_slot)
		*free_slot = LAYOUT_NS_SLOTS;
	for (uint32_t i = 0; i < LAYOUT_NS_SLOTS; i++) {
		struct ns_slot *n = &t[(h + i) & (LAYOUT_NS_SLOTS - 1)];
		uint32_t l = __atomic_load_n(&n->len, __ATOMIC_ACQUIRE);
		if (l == 0) {
			if (free_slot && *free_slot == LAYOUT_NS_SLOTS)
				*free_slot = (h + i) & (LAYOUT_NS_SLOTS - 1);
			return NULL;
		}
		if (l == len && len <= LAYOUT_NS_PREFIX_MAX && n->hash == h &&
		    !memcmp(n->prefix, p, len))
			return n;
	}
	return NULL;
}

/* Fills k's namespace fields: the highest flush mark of the registered
 * prefixes key starts with, and the stamp a write gives it.  One load and
 * a branch when no namespace is registered. */
static void __attribute__((noinline))
ns_of_slow(const struct eng *e, uint64_t mask, struct seg_key *k)
{
	const uint8_t *key = k->key;

	k->ns_stamp = __atomic_load_n(&e->hdr->ns_clock, __ATOMIC_ACQUIRE);
	for (uint32_t l = 1; l < 64 && l <= k->klen; l++) {
		if (!(mask >> l & 1))
			continue;
		uint32_t h = (uint32_t)hash_key(key, l);
		const struct ns_slot *n = ns_find(e, key, l, h, NULL);
		if (!n)
			continue; /* an unregistered one (NS_DEAD) still counts:
				     see NS_DEAD */
		k->ns = true;
		if (__atomic_load_n(&n->state, __ATOMIC_ACQUIRE) & NS_BLOCKED)
			k->ns_blocked = true;
		uint32_t m = __atomic_load_n(&n->mark, __ATOMIC_ACQUIRE);
		if (m > k->ns_mark)
			k->ns_mark = m;
	}
}

static inline void ns_of(const struct eng *e, struct seg_key *k)
{
	uint64_t mask = __atomic_load_n(&e->hdr->ns_lenmask, __ATOMIC_ACQUIRE);

	k->ns = k->ns_blocked = false;
	k->ns_mark = k->ns_stamp = 0;
	if (__builtin_expect(mask != 0, 0))
		ns_of_slow(e, mask, k);
}

static int ns_args(const void *prefix, size_t len)
{
	return !prefix || len == 0 || len > LAYOUT_NS_PREFIX_MAX ? -EINVAL : 0;
}

int eng_ns_add(struct eng *e, const void *prefix, size_t len)
{
	uint32_t h, fs;
	int rc;

	if ((rc = ns_args(prefix, len)))
		return rc;
	h = (uint32_t)hash_key(prefix, len);
	struct ns_slot *n = ns_find(e, prefix, (uint32_t)len, h, &fs);
	if (n && !(n->state & NS_DEAD))
		return -EEXIST;
	if (n) { /* unregistered before: revived, its mark kept */
		__atomic_store_n(&n->state, 0, __ATOMIC_RELEASE);
		return 0;
	}
	/* ns_count counts slots in use, unregistered ones included; half
	 * the table stays free to keep probes short. */
	if (fs == LAYOUT_NS_SLOTS || e->hdr->ns_count >= LAYOUT_NS_SLOTS / 2)
		return -ENOSPC;
	n = &ns_table(e)[fs];
	memcpy(n->prefix, prefix, len);
	n->hash = h;
	n->mark = 0;
	n->state = 0;
	/* Keys written before the namespace existed are under it from now
	 * on; a flush drops them too (they carry no stamp: 0). */
	__atomic_store_n(&n->len, (uint16_t)len, __ATOMIC_RELEASE);
	e->hdr->ns_count++;
	__atomic_fetch_or(&e->hdr->ns_lenmask, UINT64_C(1) << len,
			  __ATOMIC_RELEASE);
	return 0;
}

/* The registered namespace of prefix in *n: 0, -EINVAL or -ENOENT. */
static int ns_registered(struct eng *e, const void *prefix, size_t len,
			 struct ns_slot **n)
{
	int rc;

	if ((rc = ns_args(prefix, len)))
		return rc;
	*n = ns_find(e, prefix, (uint32_t)len, (uint32_t)hash_key(prefix, len),
		     NULL);
	return !*n || ((*n)->state & NS_DEAD) ? -ENOENT : 0;
}

/* Raises the clock and sets n's mark to it. */
static int ns_flush_slot(struct eng *e, struct ns_slot *n)
{
	uint32_t c = __atomic_load_n(&e->hdr->ns_clock, __ATOMIC_RELAXED);
	if (c == UINT32_MAX)
		return -EOVERFLOW;
	/* The clock first: a write that reads the new clock stamps its entry
	 * at the new mark, so it is not dropped; one that read the old clock
	 * stamps below it and is. */
	__atomic_store_n(&e->hdr->ns_clock, c + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&n->mark, c + 1, __ATOMIC_RELEASE);
	return 0;
}

int eng_ns_flush(struct eng *e, const void *prefix, size_t len)
{
	struct ns_slot *n;
	int rc = ns_registered(e, prefix, len, &n);

	return rc ? rc : ns_flush_slot(e, n);
}

int eng_ns_del(struct eng *e, const void *prefix, size_t len)
{
	struct ns_slot *n;
	int rc;

	if ((rc = ns_registered(e, prefix, len, &n)) ||
	    (rc = ns_flush_slot(e, n)))
		return rc;
	__atomic_store_n(&n->state, NS_DEAD, __ATOMIC_RELEASE);
	return 0;
}

int eng_ns_block(struct eng *e, const void *prefix, size_t len, bool on)
{
	struct ns_slot *n;
	int rc = ns_registered(e, prefix, len, &n);

	if (rc)
		return rc;
	/* Release: a lease begun after a flush that follows the block reads
	 * the flush's clock (acquire) and then sees the block. */
	uint16_t st = __atomic_load_n(&n->state, __ATOMIC_RELAXED);
	__atomic_store_n(&n->state,
			 (uint16_t)(on ? st | NS_BLOCKED : st & ~NS_BLOCKED),
			 __ATOMIC_RELEASE);
	return 0;
}

int eng_ns_list(const struct eng *e, struct eng_ns_info *out, size_t cap)
{
	const struct ns_slot *t = ns_table(e);
	int count = 0;

	for (uint32_t i = 0; i < LAYOUT_NS_SLOTS; i++) {
		uint32_t l = __atomic_load_n(&t[i].len, __ATOMIC_ACQUIRE);
		if (l == 0 || l > LAYOUT_NS_PREFIX_MAX ||
		    (t[i].state & NS_DEAD))
			continue;
		if ((size_t)count < cap) {
			struct eng_ns_info *o = &out[count];
			memcpy(o->prefix, t[i].prefix, l);
			o->len = l;
			o->mark = __atomic_load_n(&t[i].mark, __ATOMIC_RELAXED);
			o->slot = i;
		}
		count++;
	}
	return count;
}

/* ------------------------------------------------------------------------
 * Data operations (continued)
 * ------------------------------------------------------------------------ */

/* Hashes the key and picks its segment (its number in *seg_no if wanted);
 * with ns, finds the key's namespace (ns_of()).  A write passes false: it
 * finds the namespace under the lock (see store_at()), and a first look
 * here would be thrown away. */
static inline __attribute__((always_inline)) struct seg
locate(const struct eng *e, const void *key, size_t klen, struct seg_key *k,
       uint32_t *seg_no, bool ns)
{
	uint64_t h = hash_key(key, klen);
	struct hash_split hs = hash_split(h, e->g.seg_bits);

	k->key = key;
	k->klen = (uint32_t)klen;
	k->tag = hs.tag;
	k->hash = h;
	if (ns)
		ns_of(e, k);
	if (seg_no)
		*seg_no = hs.seg;
	struct seg s = seg_at(e, hs.seg);
	/* The lock line and the key's bucket depend only on the hash: start
	 * both loads now so that their misses overlap (the entry that
	 * follows, and its record, depend on the bucket). */
	__builtin_prefetch(s.h, 1);
	__builtin_prefetch(&s.buckets[hash_bucket(hs.tag, e->g.nbuckets)], 0);
	return s;
}

/* ------------------------------------------------------------------------
 * Fill leases (engine.h, struct eng_lease)
 * ------------------------------------------------------------------------ */

/* Starts l on key k of s.  The segment's deletion count first, then the
 * namespace clock and blocks (ns_of()): a deletion or a flush that this
 * start does not see moves them before the fill checks them. */
static void lease_start(const struct eng *e, const struct seg *s,
			struct seg_key *k, struct eng_lease *l)
{
	l->seg = s->no;
	l->inval = __atomic_load_n(&s->h->inval, __ATOMIC_ACQUIRE);
	ns_of(e, k);
	l->clock = k->ns_stamp;
	l->ok = !k->ns_blocked;
}

/* Whether a fill of k (its namespace fields read under the lock) may
 * still use l.  Under s's lock: a deletion bumps inval under it too.  A
 * flush after this check marks above the stamp the fill writes (the
 * clock read here), so it drops the entry; one before moved the clock. */
static int lease_ok(const struct seg *s, const struct seg_key *k,
		    const struct eng_lease *l)
{
	if (l->seg != s->no)
		return -EINVAL;
	if (!l->ok ||
	    __atomic_load_n(&s->h->inval, __ATOMIC_RELAXED) != l->inval)
		return -ESTALE;
	if (k->ns && (k->ns_blocked || k->ns_stamp != l->clock))
		return -ESTALE;
	return 0;
}

int eng_lease_begin(struct eng *e, const void *key, size_t klen,
		    struct eng_lease *l)
{
	struct seg_key k;
	int rc;

	if ((rc = key_ok(key, klen)))
		return rc;
	if (!l)
		return -EINVAL;
	struct seg s = locate(e, key, klen, &k, NULL, false);
	lease_start(e, &s, &k, l);
	return 0;
}

/* Keys a multi-get (and a multi-set) takes together: their misses overlap.  16 lines of
 * segment header, 16 buckets and 16 entries' lines in flight stay within
 * what a core can have outstanding (10 to 20 line fill buffers). */
#define MGET_GROUP 16

uint32_t eng_seg_of(const struct eng *e, const void *key, size_t klen)
{
	return hash_split(hash_key(key, klen), e->g.seg_bits).seg;
}

/* A write's expiries from its options at now: the hard one in w->expire
 * (a TTL with grace keeps the item grace_s longer) and the soft one. */
static int expiries(const struct eng_wopts *o, uint32_t now,
		    struct seg_write *w)
{
	if (o->expire_at) {
		if (o->expire_at <= now)
			return -ETIME;
		w->expire = o->expire_at;
		w->soft = 0;
		return 0;
	}
	w->expire = expire_of(now, o->ttl_s);
	w->soft = 0;
	if (o->ttl_s && o->grace_s) {
		w->soft = w->expire;
		w->expire = expire_of(w->soft, o->grace_s);
	}
	return 0;
}

static_assert((int)ENG_SET == (int)SEG_SET && (int)ENG_ADD == (int)SEG_ADD &&
		      (int)ENG_REPLACE == (int)SEG_REPLACE &&
		      (int)ENG_CAS == (int)SEG_CAS &&
		      (int)ENG_APPEND == (int)SEG_APPEND &&
		      (int)ENG_PREPEND == (int)SEG_PREPEND,
	      "eng_mode and seg_mode agree");

/* The checks of a store's arguments and options. */
static int store_args_ok(const struct eng *e, const void *key, size_t klen,
			 const void *val, size_t vlen,
			 const struct eng_wopts *o)
{
	int rc = store_ok(e, key, klen, val, vlen);

	if (rc)
		return rc;
	return (unsigned)o->mode > ENG_PREPEND ? -EINVAL : 0;
}

/* The store of key k, located in s, its arguments checked. */
static inline __attribute__((always_inline)) int
store_at(struct eng *e, struct seg *s, struct seg_key *k, const void *val,
	 size_t vlen, const struct eng_wopts *o, uint64_t *cas_out)
{
	int rc;

	if ((rc = seg_lock(e, s)))
		return rc;
	uint32_t now = eng_now(e);
	struct seg_write w = { .mode = (enum seg_mode)o->mode,
			       .flags = o->flags,
			       .cas = o->cas };
	/* The key's namespace marks and stamp again, under the lock: read
	 * before it, a flush that ends while this write waits for the lock
	 * would leave it the old stamp, under a write that began after the
	 * flush and took the lock first. */
	ns_of(e, k);
	/* Under a blocked namespace nothing is left (it was flushed as it
	 * was blocked) and nothing may be made: a store that would create
	 * is refused; the others find nothing (-ENOENT) on their own. */
	if (__builtin_expect(k->ns_blocked, 0) &&
	    (o->mode == ENG_SET || o->mode == ENG_ADD))
		return seg_done(e, s, -ESTALE); /* see eng_ns_block() */
	if (__builtin_expect(o->lease != NULL, 0) &&
	    (rc = lease_ok(s, k, o->lease)))
		return seg_done(e, s, rc);
	if ((rc = expiries(o, now, &w)) == 0)
		rc = seg_write_locked(s, k, &w, val, (uint32_t)vlen, now,
				      cas_out);
	return seg_done(e, s, rc);
}

static const struct eng_wopts plain_set;

__attribute__((always_inline)) inline int
eng_store(struct eng *e, const void *key, size_t klen, const void *val,
	  size_t vlen, const struct eng_wopts *o, uint64_t *cas_out)
{
	struct seg_key k;
	int rc;

	if (!o)
		o = &plain_set;
	if ((rc = store_args_ok(e, key, klen, val, vlen, o)))
		return rc;
	struct seg s = locate(e, key, klen, &k, NULL, false);
	return store_at(e, &s, &k, val, vlen, o, cas_out);
}

int eng_mset(struct eng *e, size_t n, const struct eng_mitem *items,
	     const struct eng_wopts *o, int *rc, uint64_t *cas_out)
{
	struct seg s[MGET_GROUP];
	struct seg_key k[MGET_GROUP];

	if (n && (!items || !rc))
		return -EINVAL;
	if (!o)
		o = &plain_set;
	for (size_t at = 0; at < n; at += MGET_GROUP) {
		size_t g = n - at < MGET_GROUP ? n - at : MGET_GROUP;
		const struct eng_mitem *it = items + at;

		/* Every key hashed and its segment header and bucket asked
		 * for (locate() does) before the first store waits on its
		 * own. */
		for (size_t i = 0; i < g; i++)
			if ((rc[at + i] = store_args_ok(e, it[i].key,
							it[i].klen, it[i].val,
							it[i].vlen, o)) == 0)
				s[i] = locate(e, it[i].key, it[i].klen, &k[i],
					      NULL, false);
		for (size_t i = 0; i < g; i++)
			if (rc[at + i] == 0)
				rc[at + i] = store_at(e, &s[i], &k[i],
						      it[i].val, it[i].vlen, o,
						      cas_out ? &cas_out[at + i]
							      : NULL);
	}
	return 0;
}

int eng_set(struct eng *e, const void *key, size_t klen, const void *val,
	    size_t vlen, uint32_t ttl_s)
{
	struct eng_wopts o = { .ttl_s = ttl_s };

	return eng_store(e, key, klen, val, vlen, &o, NULL);
}

int eng_set_expire_at(struct eng *e, const void *key, size_t klen,
		      const void *val, size_t vlen, uint32_t expire_at)
{
	struct eng_wopts o = { .expire_at = expire_at };

	return eng_store(e, key, klen, val, vlen, &o, NULL);
}

int eng_arith(struct eng *e, const void *key, size_t klen, bool decr,
	      uint64_t delta, const struct eng_wopts *init, uint64_t init_val,
	      uint64_t *out, uint64_t *cas_out)
{
	struct seg_key k;
	int rc;

	if ((rc = key_ok(key, klen)))
		return rc;
	if (!out)
		return -EINVAL;
	if (klen + 20 > e->g.max_kv)
		return -E2BIG;
	struct seg s = locate(e, key, klen, &k, NULL, false);
	if ((rc = seg_lock(e, &s)))
		return rc;
	uint32_t now = eng_now(e);
	struct seg_write w = { .mode = SEG_SET };
	/* An init already past (expire_at) creates nothing: a missing key
	 * stays missing (-ENOENT), a present one is counted. */
	if (init) {
		w.flags = init->flags;
		if (expiries(init, now, &w))
			init = NULL;
	}
	ns_of(e, &k); /* under the lock: see eng_store() */
	/* Under a blocked namespace no key is left (it was flushed) and none
	 * may be made. */
	if (__builtin_expect(k.ns_blocked, 0))
		return seg_done(e, &s, init ? -ESTALE : -ENOENT);
	rc = seg_arith_locked(&s, &k, decr, delta, init ? &w : NULL, init_val,
			      now, out, cas_out);
	return seg_done(e, &s, rc);
}

/* A get without the lock (seqlock style): reads seq, looks the key up and
 * copies the value, and keeps the result only if seq is still the same
 * even number, i.e. no mutation began or ended meanwhile.  The hot path of
 * a hit on an entry in use: it writes no shared cache line but its
 * counter, so readers on several cores do not take the segment's lines
 * from each other.  -EAGAIN: ask the locked path. */
static inline __attribute__((always_inline)) int
get_optimistic(struct client_ctr *ctr, struct seg *s, const struct seg_key *k,
	       uint32_t now, void *buf, size_t cap, struct seg_meta *m,
	       bool want_cas)
{
	uint32_t seq = __atomic_load_n(&s->h->seq, __ATOMIC_ACQUIRE);

	if (seq & 1)
		return -EAGAIN; /* a mutation is under way (or its writer died) */
	int rc = seg_get_unlocked(s, k, now, buf, cap, m, want_cas);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if (__atomic_load_n(&s->h->seq, __ATOMIC_RELAXED) != seq)
		return -EAGAIN;
	if (rc == -EAGAIN)
		return rc;
	__atomic_fetch_add(rc == -ENOENT ? &ctr->misses : &ctr->hits, 1,
			   __ATOMIC_RELAXED);
	return rc;
}

/* The checks of a get's arguments. */
static int get_ok(const void *key, size_t klen, const void *buf, size_t cap)
{
	int rc = key_ok(key, klen);

	if (rc)
		return rc;
	return !buf && cap ? -EINVAL : 0;
}

/* The get of key k, located in s: the optimistic read first (SEG_GET
 * only), the locked path when it cannot answer. */
static inline __attribute__((always_inline)) int
get_at(struct eng *e, enum seg_get_mode mode, struct seg *s,
       const struct seg_key *k, void *buf, size_t cap, struct seg_meta *m,
       bool want_cas)
{
	int rc;

	if (mode == SEG_GET &&
	    (rc = get_optimistic(e->ctr, s, k, eng_now(e), buf, cap, m,
				 want_cas)) != -EAGAIN)
		return rc;
	if ((rc = seg_lock(e, s)))
		return rc;
	FAULT(LOCKED);
	rc = seg_get_locked(s, k, eng_now(e), mode, buf, cap, m, NULL);
	return seg_done(e, s, rc);
}

static inline __attribute__((always_inline)) int
get(struct eng *e, enum seg_get_mode mode, const void *key, size_t klen,
    void *buf, size_t cap, struct seg_meta *m, bool want_cas)
{
	struct seg_key k;
	int rc;

	if ((rc = get_ok(key, klen, buf, cap)))
		return rc;
	struct seg s = locate(e, key, klen, &k, NULL, true);
	return get_at(e, mode, &s, &k, buf, cap, m, want_cas);
}

static struct eng_meta meta_out(const struct seg_meta *m)
{
	return (struct eng_meta){ .cas = m->cas,
				  .vlen = m->vlen,
				  .flags = m->flags,
				  .expire = m->expire,
				  .soft = m->soft,
				  .stale = m->stale };
}

__attribute__((always_inline)) inline int
eng_get(struct eng *e, const void *key, size_t klen, void *buf, size_t cap,
	size_t *vlen, uint32_t *expire_at)
{
	struct seg_meta m;

	if (!vlen)
		return -EINVAL;
	int rc = get(e, SEG_GET, key, klen, buf, cap, &m, false);
	if (rc == 0 || rc == -ENOBUFS) {
		*vlen = m.vlen;
		if (expire_at)
			*expire_at = m.expire;
	}
	return rc;
}

int eng_get_ex(struct eng *e, const void *key, size_t klen, void *buf,
	       size_t cap, struct eng_meta *out)
{
	struct seg_meta m;

	if (!out)
		return -EINVAL;
	int rc = get(e, SEG_GET, key, klen, buf, cap, &m, true);
	if (rc == 0 || rc == -ENOBUFS)
		*out = meta_out(&m);
	return rc;
}


int eng_mget(struct eng *e, size_t n, const struct eng_mkey *keys,
	     struct eng_mres *res, bool want_cas)
{
	struct seg s[MGET_GROUP];
	struct seg_key k[MGET_GROUP];
	struct seg_meta m;

	if (n && (!keys || !res))
		return -EINVAL;
	for (size_t at = 0; at < n; at += MGET_GROUP) {
		size_t g = n - at < MGET_GROUP ? n - at : MGET_GROUP;
		const struct eng_mkey *q = keys + at;
		struct eng_mres *r = res + at;

		/* Hash each key, start the loads of its segment's seq line
		 * and its bucket (locate() does). */
		for (size_t i = 0; i < g; i++)
			if ((r[i].rc = get_ok(q[i].key, q[i].klen, q[i].buf,
					      q[i].cap)) == 0)
				s[i] = locate(e, q[i].key, q[i].klen, &k[i],
					      NULL, true);
		/* The buckets have arrived, or are on the way: start the
		 * loads of the entries they name. */
		for (size_t i = 0; i < g; i++)
			if (r[i].rc == 0)
				seg_prefetch_head(&s[i], &k[i]);
		for (size_t i = 0; i < g; i++) {
			if (r[i].rc)
				continue;
			r[i].rc = get_at(e, SEG_GET, &s[i], &k[i], q[i].buf,
					 q[i].cap, &m, want_cas);
			if (r[i].rc == 0 || r[i].rc == -ENOBUFS)
				r[i].m = meta_out(&m);
		}
	}
	return 0;
}

int eng_peek(struct eng *e, const void *key, size_t klen, void *buf, size_t cap,
	     size_t *vlen, uint32_t *expire_at)
{
	struct seg_meta m;

	if (!vlen)
		return -EINVAL;
	int rc = get(e, SEG_PEEK, key, klen, buf, cap, &m, false);
	if (rc == 0 || rc == -ENOBUFS) {
		*vlen = m.vlen;
		if (expire_at)
			*expire_at = m.expire;
	}
	return rc;
}

int eng_del(struct eng *e, const void *key, size_t klen)
{
	struct seg_key k;
	int rc;

	if ((rc = key_ok(key, klen)))
		return rc;
	struct seg s = locate(e, key, klen, &k, NULL, true);
	if ((rc = seg_lock(e, &s)))
		return rc;
	rc = seg_del_locked(&s, &k, eng_now(e));
	return seg_done(e, &s, rc);
}

static int expiry(struct eng *e, const void *key, size_t klen, bool touch,
		  uint32_t ttl_s, uint32_t *ttl_out)
{
	struct seg_key k;
	uint32_t expire;
	int rc;

	if ((rc = key_ok(key, klen)))
		return rc;
	if (!touch && !ttl_out)
		return -EINVAL;
	struct seg s = locate(e, key, klen, &k, NULL, true);
	if ((rc = seg_lock(e, &s)))
		return rc;
	uint32_t now = eng_now(e);
	rc = seg_expiry_locked(&s, &k, now, touch, expire_of(now, ttl_s),
			       &expire);
	rc = seg_done(e, &s, rc);
	if (rc == 0 && ttl_out)
		*ttl_out = expire == 0 ? 0 : expire - now;
	return rc;
}

int eng_ttl(struct eng *e, const void *key, size_t klen, uint32_t *ttl_s)
{
	return expiry(e, key, klen, false, 0, ttl_s);
}

int eng_touch(struct eng *e, const void *key, size_t klen, uint32_t ttl_s)
{
	return expiry(e, key, klen, true, ttl_s, NULL);
}

int eng_clear(struct eng *e)
{
	for (uint32_t i = 0; i < e->g.nseg; i++) {
		struct seg s = seg_at(e, i);
		int rc = seg_lock(e, &s);
		if (rc)
			return rc;
		seg_write_begin(&s);
		seg_reset_locked(&s);
		seg_write_end(&s);
		seg_unlock(e, &s);
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Zero-copy access
 * ------------------------------------------------------------------------ */

int eng_read(struct eng *e, const void *key, size_t klen, eng_read_fn fn,
	     void *arg)
{
	struct seg_value v;
	struct seg_meta m;
	struct seg_key k;
	int rc;

	if ((rc = key_ok(key, klen)))
		return rc;
	if (!fn)
		return -EINVAL;
	struct seg s = locate(e, key, klen, &k, NULL, true);
	if ((rc = seg_lock(e, &s)))
		return rc;
	rc = seg_get_locked(&s, &k, eng_now(e), SEG_GET, NULL, 0, &m, &v);
	if (rc == 0)
		rc = fn(v.p[0], v.n[0], v.p[1], v.n[1], arg);
	else
		return seg_done(e, &s, rc);
	seg_unlock(e, &s);
	return rc;
}

int eng_reserve(struct eng *e, const void *key, size_t klen, size_t vlen,
		uint32_t ttl_s, struct eng_resv *r)
{
	struct seg_value v;
	struct seg_key k;
	int rc;

	/* The value is the caller's to write: only its size is checked. */
	if ((rc = store_ok(e, key, klen, "", vlen)))
		return rc;
	if (!r)
		return -EINVAL;
	struct seg s = locate(e, key, klen, &k, &r->seg, false);
	if ((rc = seg_lock(e, &s)))
		return rc;
	uint32_t now = eng_now(e);
	struct seg_write w = { .mode = SEG_SET,
			       .expire = expire_of(now, ttl_s) };
	ns_of(e, &k); /* under the lock: see eng_store() */
	if (__builtin_expect(k.ns_blocked, 0))
		return seg_done(e, &s, -ESTALE); /* see eng_ns_block() */
	seg_write_begin(&s);
	rc = seg_store_locked(&s, &k, NULL, (uint32_t)vlen, &w, now, &r->off,
			      NULL);
	if (rc)
		return seg_done(e, &s, rc);
	seg_value_at(&s, r->off, &v);
	r->p[0] = v.p[0];
	r->p[1] = v.p[1];
	r->n[0] = v.n[0];
	r->n[1] = v.n[1];
	return 0;
}

int eng_commit(struct eng *e, struct eng_resv *r)
{
	struct seg s = seg_at(e, r->seg);

	seg_seal_at_locked(&s, r->off);
	seg_write_end(&s);
	seg_count(&s, SEG_CTR_sets);
	seg_unlock(e, &s);
	return 0;
}

void eng_abort(struct eng *e, struct eng_resv *r)
{
	struct seg s = seg_at(e, r->seg);
	int rc = seg_drop_at_locked(&s, r->off);

	if (rc == 0)
		seg_write_end(&s);
	seg_done(e, &s, rc);
}

/* ------------------------------------------------------------------------
 * get_or_load
 * ------------------------------------------------------------------------ */

int eng_get_or_claim_ex(struct eng *e, const void *key, size_t klen, void *buf,
			size_t cap, struct eng_meta *out, struct eng_flight *f)
{
	struct seg_meta m = { 0 };
	struct seg_key k;
	uint32_t seg_no;
	bool claimed = false;
	int rc;

	if ((rc = key_ok(key, klen)))
		return rc;
	if ((!buf && cap) || !out || !f)
		return -EINVAL;
	struct seg s = locate(e, key, klen, &k, &seg_no, true);
	if ((rc = seg_lock(e, &s)))
		return rc;
	rc = seg_get_locked(&s, &k, eng_now(e), SEG_GET_STALE, buf, cap, &m,
			    NULL);
	if (rc == -ENOENT || (rc == 0 && m.stale)) {
		f->hash = k.hash;
		f->seg = seg_no;
		f->slot = seg_flight_locked(&s, k.hash, e->client_id, &claimed);
		f->word = f->slot < 0
				  ? 0
				  : __atomic_load_n(&s.h->flight[f->slot].word,
						    __ATOMIC_ACQUIRE);
		lease_start(e, &s, &k, &f->lease);
		if (rc == -ENOENT)
			rc = claimed || f->slot < 0 ? ENG_LOAD : ENG_WAIT;
		else
			/* Stale: nobody waits; with no flight slot free the
			 * caller reloads uncoordinated, as on a miss, or the
			 * value would be served stale until its grace ran out
			 * with nobody reloading it. */
			rc = claimed || f->slot < 0 ? ENG_LOAD : 0;
	}
	if (rc >= 0 || rc == -ENOBUFS)
		*out = (struct eng_meta){ .cas = m.cas,
					  .vlen = m.vlen,
					  .flags = m.flags,
					  .expire = m.expire,
					  .soft = m.soft,
					  .stale = m.stale };
	return seg_done(e, &s, rc);
}

int eng_get_or_claim(struct eng *e, const void *key, size_t klen, void *buf,
		     size_t cap, size_t *vlen, uint32_t *expire_at,
		     struct eng_flight *f)
{
	struct eng_meta m;

	if (!vlen)
		return -EINVAL;
	int rc = eng_get_or_claim_ex(e, key, klen, buf, cap, &m, f);
	if (rc == 0 || rc == -ENOBUFS || (rc == ENG_LOAD && m.stale)) {
		*vlen = m.vlen;
		if (expire_at)
			*expire_at = m.expire;
	}
	return rc;
}

/* The flight slot f refers to, if it still holds f's key. */
static uint32_t *flight_word(struct eng *e, const struct eng_flight *f)
{
	if (f->slot < 0 || (uint32_t)f->slot >= SEG_FLIGHTS ||
	    f->seg >= e->g.nseg)
		return NULL;
	struct seg_flight *fl = &seg_at(e, f->seg).h->flight[f->slot];
	return __atomic_load_n(&fl->hash, __ATOMIC_RELAXED) == f->hash
		       ? &fl->word
		       : NULL;
}

int eng_flight_wait(struct eng *e, const struct eng_flight *f, uint32_t ms)
{
	uint32_t *w = flight_word(e, f);

	if (!w || __atomic_load_n(w, __ATOMIC_ACQUIRE) != f->word)
		return 0;
	lock_futex_wait(w, f->word, ms);
	if (__atomic_load_n(w, __ATOMIC_ACQUIRE) != f->word)
		return 0;
	if (e->alive && !e->alive(e->alive_arg, lock_owner(f->word)))
		return -EOWNERDEAD;
	return -ETIMEDOUT;
}

int eng_flight_takeover(struct eng *e, struct eng_flight *f)
{
	uint32_t *w = flight_word(e, f);
	uint32_t v = f->word;

	if (!w || v == 0 ||
	    !__atomic_compare_exchange_n(w, &v, e->client_id << 1, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
		return -EAGAIN;
	f->word = e->client_id << 1;
	return 0;
}

void eng_flight_done(struct eng *e, struct eng_flight *f)
{
	uint32_t *w = flight_word(e, f);
	uint32_t v = f->word;

	if (w && v && lock_owner(v) == e->client_id &&
	    __atomic_compare_exchange_n(w, &v, 0, false, __ATOMIC_RELEASE,
					__ATOMIC_RELAXED))
		lock_futex_wake(w, INT_MAX);
}

int eng_flight_claim(struct eng *e, const void *key, size_t klen,
		     struct eng_flight *f)
{
	struct seg_key k;
	uint32_t seg_no;
	bool claimed = false;
	int rc;

	if ((rc = key_ok(key, klen)))
		return rc;
	if (!f)
		return -EINVAL;
	/* Only the hash counts: no namespace is looked up. */
	struct seg s = locate(e, key, klen, &k, &seg_no, false);
	if ((rc = seg_lock(e, &s)))
		return rc;
	f->hash = k.hash;
	f->seg = seg_no;
	f->slot = seg_flight_locked(&s, k.hash, e->client_id, &claimed);
	f->word = f->slot < 0 ? 0
			      : __atomic_load_n(&s.h->flight[f->slot].word,
						__ATOMIC_ACQUIRE);
	lease_start(e, &s, &k, &f->lease);
	seg_unlock(e, &s);
	return claimed || f->slot < 0 ? ENG_LOAD : ENG_WAIT;
}

/* ------------------------------------------------------------------------
 * Inspection and invalidation (memcached's meta commands)
 * ------------------------------------------------------------------------ */

int eng_inspect(struct eng *e, const void *key, size_t klen, void *buf,
		size_t cap, struct eng_info *out)
{
	struct seg_key k;
	int rc;

	if ((rc = key_ok(key, klen)))
		return rc;
	if (!out)
		return -EINVAL;
	struct seg s = locate(e, key, klen, &k, NULL, true);
	if ((rc = seg_lock(e, &s)))
		return rc;
	rc = seg_inspect_locked(&s, &k, eng_now(e), buf, cap, out);
	return seg_done(e, &s, rc);
}

int eng_invalidate(struct eng *e, const void *key, size_t klen,
		   const struct eng_inval *o, uint64_t *cas_out)
{
	struct seg_key k;
	int rc;

	if (!o)
		return -EINVAL;
	if ((rc = o->set_value ? store_ok(e, key, klen, o->val, o->vlen)
			       : key_ok(key, klen)))
		return rc;
	struct seg s = locate(e, key, klen, &k, NULL, false);
	if ((rc = seg_lock(e, &s)))
		return rc;
	uint32_t now = eng_now(e);
	ns_of(e, &k); /* under the lock: see eng_store() */
	rc = seg_invalidate_locked(&s, &k, now, o, expire_of(now, o->ttl_s),
				   cas_out);
	return seg_done(e, &s, rc);
}

/* ------------------------------------------------------------------------
 * Walks, statistics, maintenance
 * ------------------------------------------------------------------------ */

/* eng_iter()'s filter: the caller's callback, for the entries that no
 * namespace flush dropped and that are not past a soft expiry. */
struct iter_filter {
	const struct eng *e;
	eng_iter_fn fn;
	void *arg;
	uint32_t now;
};

static int iter_filtered(const struct eng_item *it, void *arg)
{
	const struct iter_filter *f = arg;

	if (it->soft && it->soft <= f->now)
		return 0;
	if (__atomic_load_n(&f->e->hdr->ns_lenmask, __ATOMIC_ACQUIRE)) {
		uint8_t key[ENTRY_KEY_MAX];
		memcpy(key, it->key[0], it->key_len[0]);
		memcpy(key + it->key_len[0], it->key[1], it->key_len[1]);
		struct seg_key k = { .key = key, .klen = (uint32_t)it->klen };
		ns_of(f->e, &k);
		if (k.ns_mark && it->stamp < k.ns_mark)
			return 0;
	}
	return f->fn(it, f->arg);
}

/* Walks segment i under its lock, fn seeing what iter_filtered() lets
 * through.  A corrupted segment is reset (its entries dropped) and counts
 * as walked: 0. */
static int iter_seg(struct eng *e, uint32_t i, eng_iter_fn fn, void *arg)
{
	struct seg s = seg_at(e, i);
	int rc = seg_lock(e, &s);

	if (rc)
		return rc;
	struct iter_filter f = {
		.e = e, .fn = fn, .arg = arg, .now = eng_now(e)
	};
	rc = seg_iter_locked(&s, i, f.now, iter_filtered, &f);
	if (rc == -EUCLEAN) {
		seg_done(e, &s, rc);
		return 0;
	}
	seg_unlock(e, &s);
	return rc;
}

int eng_iter(struct eng *e, uint32_t from, uint32_t to, eng_iter_fn fn,
	     void *arg)
{
	if (!fn || from > to || to > e->g.nseg)
		return -EINVAL;
	for (uint32_t i = from; i < to; i++) {
		int rc = iter_seg(e, i, fn, arg);
		if (rc)
			return rc;
	}
	return 0;
}

/* eng_scan()'s copy of one entry: the record, then the key, padded to 8
 * bytes so that the next record is aligned. */
struct scan_rec {
	uint64_t cas;
	uint64_t vlen;
	uint32_t klen, flags, expire, soft;
};

#define SCAN_PAD(n) (((n) + 7u) & ~(size_t)7u)
#define SCAN_BUF_MIN (64u << 10)

/* The entries of one segment that match a prefix, copied under its lock. */
struct scan_copy {
	const uint8_t *prefix;
	size_t plen;
	uint8_t *buf;
	size_t len, cap;
};

static bool item_has_prefix(const struct eng_item *it, const uint8_t *p,
			    size_t n)
{
	size_t a = it->key_len[0] < n ? it->key_len[0] : n;

	if (it->klen < n)
		return false;
	return (a == 0 || memcmp(it->key[0], p, a) == 0) &&
	       (n == a || memcmp(it->key[1], p + a, n - a) == 0);
}

/* An eng_iter_fn under the segment lock: appends a matching entry's
 * record and key to c->buf, growing it; -ENOMEM when it cannot. */
static int scan_copy_item(const struct eng_item *it, void *arg)
{
	struct scan_copy *c = arg;
	size_t need = sizeof(struct scan_rec) + SCAN_PAD(it->klen);

	if (!item_has_prefix(it, c->prefix, c->plen))
		return 0;
	if (c->len + need > c->cap) {
		size_t cap = c->cap ? c->cap : SCAN_BUF_MIN;
		while (cap < c->len + need)
			cap *= 2;
		uint8_t *nb = realloc(c->buf, cap);
		if (!nb)
			return -ENOMEM;
		c->buf = nb;
		c->cap = cap;
	}
	struct scan_rec *r = (struct scan_rec *)(void *)(c->buf + c->len);
	*r = (struct scan_rec){ .cas = it->cas,
				.vlen = it->vlen,
				.klen = (uint32_t)it->klen,
				.flags = it->flags,
				.expire = it->expire,
				.soft = it->soft };
	uint8_t *k = (uint8_t *)(r + 1);
	memcpy(k, it->key[0], it->key_len[0]);
	if (it->key_len[1])
		memcpy(k + it->key_len[0], it->key[1], it->key_len[1]);
	c->len += need;
	return 0;
}

int eng_scan(struct eng *e, struct eng_cursor *cur, const void *prefix,
	     size_t plen, eng_iter_fn fn, void *arg)
{
	struct scan_copy c = { .prefix = prefix, .plen = plen };
	uint32_t seg = cur ? cur->seg : 0;
	int rc;

	if (!cur || !fn || (plen && !prefix) || seg > e->g.nseg)
		return -EINVAL;
	if (seg == e->g.nseg)
		return 1;
	/* Copy under the lock, call fn after: a slow consumer holds none. */
	if ((rc = iter_seg(e, seg, scan_copy_item, &c))) {
		free(c.buf);
		return rc;
	}
	for (size_t off = 0; off < c.len;) {
		const struct scan_rec *r = (const void *)(c.buf + off);
		struct eng_item it = {
			.key = { r + 1, NULL },
			.key_len = { r->klen, 0 },
			.klen = r->klen,
			.vlen = (size_t)r->vlen,
			.expire = r->expire,
			.seg = seg,
			.flags = r->flags,
			.soft = r->soft,
			.cas = r->cas,
		};
		if ((rc = fn(&it, arg))) {
			free(c.buf);
			return rc;
		}
		off += sizeof(*r) + SCAN_PAD(r->klen);
	}
	free(c.buf);
	cur->seg = seg + 1;
	return cur->seg == e->g.nseg;
}

static void add_seg(const struct eng *e, uint32_t i, struct eng_stats *out)
{
	struct seg s = seg_at(e, i);
	const uint64_t *c = s.h->ctr;
	int n = 0;

#define ADD_X(name, desc)                                                      \
	out->name += __atomic_load_n(&c[n++], __ATOMIC_RELAXED);
	SEG_COUNTERS(ADD_X)
#undef ADD_X
	out->entries += __atomic_load_n(&s.h->live, __ATOMIC_RELAXED);
	out->bytes_used += __atomic_load_n(&s.h->used, __ATOMIC_RELAXED);
	out->bytes_total += e->g.ring_size;
	out->segments++;
}

void eng_stats(const struct eng *e, struct eng_stats *out)
{
	const struct client_ctr *c = e->hdr->ctrs;

	memset(out, 0, sizeof(*out));
	for (uint32_t i = 0; i < e->g.nseg; i++)
		add_seg(e, i, out);
	for (uint32_t i = 0; i < LAYOUT_CLIENT_CTRS; i++) {
		out->hits += __atomic_load_n(&c[i].hits, __ATOMIC_RELAXED);
		out->misses += __atomic_load_n(&c[i].misses, __ATOMIC_RELAXED);
	}
}

int eng_seg_stats(const struct eng *e, uint32_t seg, struct eng_stats *out)
{
	if (seg >= e->g.nseg)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	add_seg(e, seg, out);
	return 0;
}

int eng_check(struct eng *e, uint32_t seg, bool repair,
	      struct eng_check_report *rep)
{
	if (seg >= e->g.nseg || !rep)
		return -EINVAL;
	struct seg s = seg_at(e, seg);
	int rc = seg_lock(e, &s);
	if (rc)
		return rc;
	rc = seg_check_locked(&s, seg, rep);
	if (rc == 0 && rep->problems && repair) {
		repair_locked(&s);
		rep->repaired = 1;
	}
	seg_unlock(e, &s);
	return rc;
}

int eng_sweep(struct eng *e, uint32_t seg, uint32_t budget)
{
	if (seg >= e->g.nseg)
		return -EINVAL;
	struct seg s = seg_at(e, seg);
	int rc = seg_lock(e, &s);
	if (rc)
		return rc;
	rc = seg_sweep_locked(&s, eng_now(e), budget);
	return seg_done(e, &s, rc);
}

/* ------------------------------------------------------------------------
 * Region: plan, format, attach
 * ------------------------------------------------------------------------ */

static bool pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static uint32_t log2u(uint64_t x)
{
	return 63u - (uint32_t)__builtin_clzll(x);
}

static uint64_t align64(uint64_t x)
{
	return (x + 63) & ~UINT64_C(63);
}

/* The power of two nearest to n (at least 1). */
static uint32_t pow2_near(uint64_t n)
{
	if (n <= 1)
		return 1;
	uint64_t lo = UINT64_C(1) << log2u(n);
	uint64_t p = (n - lo < 2 * lo - n) ? lo : 2 * lo;
	return p > (UINT64_C(1) << 31) ? UINT32_C(1) << 31 : (uint32_t)p;
}

/* Segment block offsets for nb buckets and nrec records. */
static void carve(struct eng_geom *g, uint32_t nb, uint32_t nrec)
{
	g->nbuckets = nb;
	g->bucket_bits = log2u(nb);
	g->nrec = nrec;
	g->off_buckets = LAYOUT_SEG_HDR_SIZE;
	g->off_recs = (uint32_t)(g->off_buckets + align64((uint64_t)nb * 4));
	g->off_ring =
		(uint32_t)(g->off_recs +
			   align64((uint64_t)nrec * sizeof(struct pool_rec)));
}

#define RING_MAX (UINT32_C(1) << 31)
/* max_kv is half the ring, and a key is at least one byte. */
static_assert(RING_MAX / 2 - 1 <= ENTRY_VLEN_MASK,
	      "the largest value (max_kv less a key) fits entry_hdr.vlen_use");
/* Segments start after the header, the client table and the namespace
 * table. */
#define SEG_BASE (NS_BASE + LAYOUT_NS_TABLE_SIZE)

int eng_plan(size_t size, const struct eng_config *cfg, struct eng_geom *g)
{
	struct eng_config c = cfg ? *cfg : (struct eng_config){ 0 };

	if (!c.nseg)
		c.nseg = eng_default_nseg(size, &c);
	if (!c.avg_item)
		c.avg_item = ENG_DEFAULT_AVG_ITEM;
	if (!c.lock_timeout_ms)
		c.lock_timeout_ms = ENG_DEFAULT_LOCK_TIMEOUT_MS;
	if (!g || !pow2(c.nseg) || c.nseg > 65536 || size < SEG_BASE)
		return -EINVAL;

	memset(g, 0, sizeof(*g));
	uint64_t stride = ((size - SEG_BASE) / c.nseg) & ~UINT64_C(63);
	if (stride < LAYOUT_SEG_HDR_SIZE + ENG_MIN_RING + 3 * 64)
		return -EINVAL;
	uint64_t avail = stride - LAYOUT_SEG_HDR_SIZE;
	if (c.flags & ~REGION_F_KNOWN)
		return -EINVAL;
	uint32_t sum_size = c.flags & REGION_F_CHECKSUM ? ENTRY_SUM_SIZE : 0;
	uint64_t item = ENTRY_HDR_SIZE + (uint64_t)c.avg_item + sum_size;

	/* Records cost 12 (record, free list included) + ~4 (bucket) bytes;
	 * find the record count whose entries of `item` bytes fill what
	 * remains. */
	uint64_t nrec = avail / (item + 16);
	for (int i = 0; i < 4; i++) {
		if (nrec < 1)
			nrec = 1;
		if (nrec > ENTRY_REC_MASK)
			nrec = ENTRY_REC_MASK; /* see ENTRY_REC_BITS */
		carve(g, pow2_near(nrec), (uint32_t)nrec);
		if (g->off_ring + (uint64_t)ENG_MIN_RING > stride) {
			nrec /= 2;
			continue;
		}
		nrec = (stride - g->off_ring) / item;
	}
	if (nrec < 1)
		nrec = 1;
	if (nrec > ENTRY_REC_MASK)
		nrec = ENTRY_REC_MASK;
	carve(g, pow2_near(nrec), (uint32_t)nrec);
	if (g->off_ring + (uint64_t)ENG_MIN_RING > stride)
		return -EINVAL;
	uint64_t ring = stride - g->off_ring;
	if (ring > RING_MAX)
		return -EINVAL; /* segments this large want more of them */

	g->region_size = SEG_BASE + stride * c.nseg;
	g->seg_base = SEG_BASE;
	g->seg_stride = stride;
	g->nseg = c.nseg;
	g->seg_bits = log2u(c.nseg);
	g->ring_size = (uint32_t)ring;
	g->max_kv = g->ring_size / 2;
	g->flags = c.flags;
	g->sum_size = sum_size;
	g->lock_timeout_ms = c.lock_timeout_ms;
	return 0;
}

uint32_t eng_default_nseg(size_t size, const struct eng_config *cfg)
{
	struct eng_config c = cfg ? *cfg : (struct eng_config){ 0 };
	struct eng_geom g;

	for (c.nseg = ENG_DEFAULT_NSEG_MAX; c.nseg > 1; c.nseg /= 2)
		if (eng_plan(size, &c, &g) == 0 &&
		    g.max_kv >= ENG_DEFAULT_ITEM_GOAL)
			break;
	return c.nseg;
}

static uint64_t geom_sum(const struct region_hdr *h)
{
	return XXH3_64bits(h, offsetof(struct region_hdr, geom_sum));
}

int eng_format(void *base, size_t size, const struct eng_config *cfg)
{
	struct eng_geom g;
	struct eng e;
	int rc;

	if (!base)
		return -EINVAL;
	if ((rc = eng_plan(size, cfg, &g)))
		return rc;

	struct region_hdr *h = base;
	memset(h, 0, sizeof(*h));
	h->magic = LAYOUT_MAGIC;
	h->format = LAYOUT_FORMAT;
	h->nseg = g.nseg;
	h->region_size = g.region_size;
	h->seg_base = g.seg_base;
	h->seg_stride = g.seg_stride;
	h->seg_bits = g.seg_bits;
	h->nbuckets = g.nbuckets;
	h->bucket_bits = g.bucket_bits;
	h->nrec = g.nrec;
	h->ring_size = g.ring_size;
	h->max_kv = g.max_kv;
	h->off_buckets = g.off_buckets;
	h->off_recs = g.off_recs;
	h->off_ring = g.off_ring;
	h->flags = g.flags;
	h->created = (uint64_t)time(NULL);
	h->geom_sum = geom_sum(h);
	memcpy(h->geom_copy, h, LAYOUT_GEOM_SIZE);
	h->lock_timeout_ms = g.lock_timeout_ms;
	h->clock = (uint32_t)time(NULL);
	h->next_client_id = 2; /* 1 is the daemon's own */

	memset((uint8_t *)base + LAYOUT_REGION_HDR_SIZE, 0,
	       LAYOUT_CLIENT_TABLE_SIZE + LAYOUT_NS_TABLE_SIZE);
	e.base = base;
	e.hdr = h;
	e.g = g;
	uint64_t floor = cfg && cfg->version_floor ? cfg->version_floor
						   : (uint64_t)time(NULL) << 32;
	for (uint32_t i = 0; i < g.nseg; i++) {
		struct seg s = seg_at(&e, i);
		memset(s.h, 0, sizeof(*s.h));
		seg_reset_locked(&s);
		s.h->wcount = floor >> g.seg_bits;
	}
	return 0;
}

int eng_version_floor(struct eng *e, uint64_t v)
{
	for (uint32_t i = 0; i < e->g.nseg; i++) {
		struct seg s = seg_at(e, i);
		int rc = seg_lock(e, &s);
		if (rc)
			return rc;
		if (s.h->wcount < v >> e->g.seg_bits)
			__atomic_store_n(&s.h->wcount, v >> e->g.seg_bits,
					 __ATOMIC_RELAXED);
		seg_unlock(e, &s);
	}
	return 0;
}

uint64_t eng_version_max(const struct eng *e)
{
	uint64_t max = 0;

	for (uint32_t i = 0; i < e->g.nseg; i++) {
		struct seg s = seg_at(e, i);
		uint64_t v = __atomic_load_n(&s.h->wcount, __ATOMIC_RELAXED)
				     << e->g.seg_bits |
			     i;
		if (v > max)
			max = v;
	}
	return max;
}

/* Checks that the header's geometry describes a region that fits. */
static const char *geom_invalid(const struct region_hdr *h)
{
	uint64_t min_blk;

	if (!pow2(h->nseg) || h->nseg > 65536 || log2u(h->nseg) != h->seg_bits)
		return "segment count is not a power of two";
	if (!pow2(h->nbuckets) || log2u(h->nbuckets) != h->bucket_bits)
		return "bucket count is not a power of two";
	if (h->nrec == 0 || h->nrec > ENTRY_REC_MASK ||
	    h->ring_size < ENG_MIN_RING || h->ring_size > RING_MAX ||
	    h->max_kv != h->ring_size / 2)
		return "pool or ring size out of range";
	if (h->flags & ~REGION_F_KNOWN)
		return "unknown region flags";
	if (h->seg_base < SEG_BASE || h->seg_base % 64 || h->seg_stride % 64)
		return "segment blocks misaligned";
	if (h->off_buckets < LAYOUT_SEG_HDR_SIZE ||
	    h->off_recs < h->off_buckets + (uint64_t)h->nbuckets * 4 ||
	    h->off_ring <
		    h->off_recs + (uint64_t)h->nrec * sizeof(struct pool_rec) ||
	    h->off_buckets % 64 || h->off_recs % 4 || h->reserved2)
		return "segment block parts overlap";
	min_blk = (uint64_t)h->off_ring + h->ring_size;
	if (min_blk > h->seg_stride)
		return "segment block larger than its stride";
	if (h->seg_base + (uint64_t)h->nseg * h->seg_stride > h->region_size)
		return "segments extend past the region";
	return NULL;
}

/* Validates a copy of the header's lines 0-1 (in a zeroed header, so that
 * only those lines are read).  NULL if it is good, else why not; *proto
 * set when it is intact but not ours (magic, or another layout version). */
static const char *geom_bad(const struct region_hdr *h, bool *proto)
{
	*proto = false;
	if (h->geom_sum != geom_sum(h))
		return "region header checksum mismatch";
	if (h->magic != LAYOUT_MAGIC) {
		*proto = true;
		return "not a shmcached region (bad magic)";
	}
	if (h->format != LAYOUT_FORMAT) {
		*proto = true;
		return "region of another layout version";
	}
	return geom_invalid(h);
}

int eng_attach(struct eng *e, void *base, size_t size, uint32_t client_id,
	       const char **why)
{
	static struct region_hdr zero;
	struct region_hdr prim = zero, copy = zero;
	const char *dummy, *why_copy;
	bool proto, proto_copy;

	if (!why)
		why = &dummy;
	if (!e || !base || client_id == 0 || client_id > ENG_CLIENT_ID_MAX) {
		*why = "bad arguments";
		return -EINVAL;
	}
	if (size < sizeof(struct region_hdr)) {
		*why = "not a shmcached region (bad magic)";
		return -EPROTO;
	}
	memcpy(&prim, base, LAYOUT_GEOM_SIZE);
	memcpy(&copy, ((const struct region_hdr *)base)->geom_copy,
	       LAYOUT_GEOM_SIZE);
	uint32_t damage = 0;
	const struct region_hdr *h = &prim;
	if ((*why = geom_bad(&prim, &proto))) {
		why_copy = geom_bad(&copy, &proto_copy);
		/* Another format or no region at all, not damage: a region
		 * of an earlier layout has no copy (zeros there). */
		if (proto &&
		    (why_copy || memcmp(&prim, &copy, LAYOUT_GEOM_SIZE)))
			return -EPROTO;
		if (why_copy && prim.magic != LAYOUT_MAGIC &&
		    copy.magic != LAYOUT_MAGIC) {
			*why = "not a shmcached region (bad magic)";
			return -EPROTO;
		}
		if (why_copy) {
			*why = "region header geometry and its second copy are "
			       "both damaged";
			return -EUCLEAN;
		}
		damage = ENG_HDR_PRIMARY;
		h = &copy;
	} else if (memcmp(&prim, &copy, LAYOUT_GEOM_SIZE)) {
		damage = ENG_HDR_COPY;
	}
	if (h->region_size > size) {
		*why = "region larger than the mapping";
		return -ERANGE;
	}

	fault_init();
	memset(e, 0, sizeof(*e));
	e->base = base;
	e->hdr = base;
	e->client_id = client_id;
	e->hdr_damage = damage;
	memcpy(e->geom, h, LAYOUT_GEOM_SIZE);
	e->ctr = &e->hdr->ctrs[client_id % LAYOUT_CLIENT_CTRS];
	e->g = (struct eng_geom){
		.region_size = h->region_size,
		.seg_base = h->seg_base,
		.seg_stride = h->seg_stride,
		.nseg = h->nseg,
		.seg_bits = h->seg_bits,
		.nbuckets = h->nbuckets,
		.bucket_bits = h->bucket_bits,
		.nrec = h->nrec,
		.ring_size = h->ring_size,
		.max_kv = h->max_kv,
		.off_buckets = h->off_buckets,
		.off_recs = h->off_recs,
		.off_ring = h->off_ring,
		.flags = h->flags,
		.sum_size = h->flags & REGION_F_CHECKSUM ? ENTRY_SUM_SIZE : 0,
	};
	e->g.lock_timeout_ms = eng_lock_timeout(e);
	*why = damage ? "ok, from the second copy of the header's geometry"
		      : "ok";
	return 0;
}

int eng_hdr_check(struct eng *e, bool repair, char *msg, size_t len)
{
	struct region_hdr *h = e->hdr;
	uint32_t found = 0;

	if (memcmp(h, e->geom, LAYOUT_GEOM_SIZE))
		found |= ENG_HDR_PRIMARY;
	if (memcmp(h->geom_copy, e->geom, LAYOUT_GEOM_SIZE))
		found |= ENG_HDR_COPY;
	/* What attach found counts too: the copy it used is intact now. */
	found |= e->hdr_damage;
	if (repair) {
		memcpy(h, e->geom, LAYOUT_GEOM_SIZE);
		memcpy(h->geom_copy, e->geom, LAYOUT_GEOM_SIZE);
		e->hdr_damage = 0;
	}
	const char *what =
		found == ENG_HDR_PRIMARY
			? (repair ? "region header geometry damaged, repaired "
				    "from the second copy"
				  : "region header geometry damaged (its second "
				    "copy is intact: check --repair restores it)")
		: found == ENG_HDR_COPY
			? (repair ? "second copy of the region header geometry "
				    "damaged, rewritten from the first"
				  : "second copy of the region header geometry "
				    "damaged (check --repair rewrites it)")
		: found ? (repair ? "region header geometry and its second copy "
				    "damaged, both rewritten from the daemon's "
				    "own copy"
				  : "region header geometry and its second copy "
				    "damaged (check --repair rewrites both from "
				    "the daemon's own copy)")
			: "region header intact";
	if (len)
		snprintf(msg, len, "%s", what);
	return (int)found;
}
