/*
 * shmc.h - libshmc, the client library of shmcached.
 *
 * shmcached keeps a key/value cache in one shared-memory region.  A process
 * opens a handle with shmc_open(): the library connects to the daemon's
 * Unix socket, receives the region's file descriptor, maps it, and from
 * then on every data operation (get, set, del, ...) runs directly on the
 * mapping under a per-segment futex lock (a get of a key in use reads
 * without it, and retries if a writer overlapped): no system call and no
 * allocation on a get that hits or on a set.  The socket is used for
 * control requests (check, clients, snapshots, shutdown) and stays open for
 * the life of the handle: when the process dies, the daemon sees the
 * connection close and releases any segment lock the process still held.
 *
 * Conventions
 *   - Every function returns 0 on success or a negative errno value; the
 *     global errno is never the interface.  shmc_strerror() describes any
 *     return value.
 *   - Keys are 1 to SHMC_KEY_MAX (8191) bytes of anything; key + value at most
 *     shmc_max_item() bytes (half a segment's ring).
 *   - TTLs are in seconds; 0 means "never expires".  Times are the cache's
 *     clock: unix seconds, ticked by the daemon.
 *
 * Errors every data operation can return, besides those listed with it:
 *   -EINVAL     c, key or a needed pointer is NULL, or klen is 0;
 *   -E2BIG      key longer than SHMC_KEY_MAX bytes, or key + value too large;
 *   -ETIMEDOUT  a segment lock was held by another process for longer than
 *               the daemon's --lock-timeout (a stuck, not a dead, process);
 *   -EUCLEAN    the segment was found corrupted and has been reset (its
 *               entries dropped); the operation can be retried;
 *   -ECHILD     the handle was opened by the parent of this process (after
 *               fork(), a child must call shmc_open() itself).
 *
 * Thread safety: a handle may be used by any number of threads at once.
 * One handle per process is enough; more work too.
 *
 * Caveats
 *   - A replaced region.  A daemon restarted on the same region (a warm
 *     restart) keeps every handle working: gets and sets go on while no
 *     daemon runs and control requests reconnect.  A region that is
 *     replaced instead (the daemon started with --reset over a damaged or
 *     differently sized region, or a new one after --unlink-on-exit or a
 *     reboot) is not seen by an open handle: its data operations go on,
 *     without error, on the old region, which nobody else sees and whose
 *     memory stays allocated until the handle is closed; its control
 *     requests fail with -EPROTO.  On -EPROTO from a control request,
 *     shmc_close() the handle and shmc_open() a new one.
 *   - shmc_reserve() holds the key's segment lock until shmc_commit() or
 *     shmc_abort(): every other process's operation on that segment waits
 *     for it, and fails with -ETIMEDOUT after the daemon's --lock-timeout
 *     (2 s by default).  Fill the value and finish at once: no I/O, no
 *     waiting, no other shmc call in between.  The lock is not recursive.
 *     A shmc_reader runs under the same lock and has the same rule.
 *   - fork().  In the child, every data operation and control request on
 *     a handle the parent opened returns -ECHILD (the handle's client id
 *     and socket are the parent's); the child calls shmc_open() for a
 *     handle of its own.  A reservation open at the fork is the parent's:
 *     the child neither commits nor aborts it.  shmc_close() on the
 *     parent's handle in the child only unmaps and closes what the child
 *     inherited, and sends the daemon nothing.  The parent's handle is
 *     unaffected.
 *   - Signals.  No function here is async-signal-safe: call none from a
 *     signal handler (a handler that interrupts a thread holding a segment
 *     lock would wait on that lock until -ETIMEDOUT; control requests take
 *     a mutex and allocate).  A signal delivered during a call does not
 *     make it fail: no function returns -EINTR.  A process killed by a
 *     signal inside a lock is recovered by the daemon (first paragraph).
 *   - Other processes.  Every process that opens a handle maps the whole
 *     region read-write: it can read, change or delete any entry, corrupt
 *     segments (others then get -EUCLEAN, never a bad access) and hold a
 *     segment lock forever (others get -ETIMEDOUT).  There is no per-key
 *     access control: let only processes you would trust with the whole
 *     cache connect (the daemon's --allow-user / --allow-group).  What such
 *     a process can and cannot do to the others is in docs/SECURITY.md.
 */
#ifndef SHMC_H
#define SHMC_H

#include <stddef.h>
#include <stdint.h>

#include "shmc_version.h" /* SHMC_VERSION_MAJOR, _MINOR, _PATCH, SHMC_VERSION */

#ifdef __cplusplus
extern "C" {
#endif

/* The version of the libshmc this program runs with (which may be newer
 * than the shmc.h it was built with: compare with SHMC_VERSION_MAJOR...).
 * Returns "MAJOR.MINOR.PATCH", a static string; stores the three numbers
 * through the pointers that are not NULL.  Thread-safe; never fails. */
const char *shmc_version(int *major, int *minor, int *patch);

/* Errors of this library that no errno describes, in a range no errno
 * reaches (below -SHMC_ERR_BASE).  Like the others they are returned
 * negative, and shmc_strerror() describes them. */
/* The longest key (the entry header's 13-bit key length). */
#define SHMC_KEY_MAX 8191

#define SHMC_ERR_BASE 10000
/* No daemon socket at the path (nothing there): the daemon is not running
 * or listens elsewhere.  Not -ENOENT, which means a missing key. */
#define SHMC_ENODAEMON (-(SHMC_ERR_BASE + 1))
/* The process serving the socket runs as a user this process does not
 * trust (see shmc_open()); nothing was sent to it. */
#define SHMC_EUNTRUSTED (-(SHMC_ERR_BASE + 2))

typedef struct shmc shmc; /* opaque; thread-safe; one per process */

/* ------------------------------------------------------------------------
 * Opening and closing
 * ------------------------------------------------------------------------ */

/* Connects to the daemon at socket_path (NULL: $SHMC_SOCKET if set, else
 * the daemon's default path for this user, then the system daemon's
 * /run/shmcached/shmcached.sock) and maps the cache.
 *
 * Before it sends anything or maps anything, the library checks who
 * serves the socket (SO_PEERCRED): root, this process's effective uid, or
 * a uid listed in $SHMC_TRUST_UID ("UID[,UID...]", decimal; unset or
 * empty: none), e.g. a daemon run as a dedicated user.  Anyone else could
 * have taken the path to serve a fake region; the connection is then
 * closed unused.  The same check is made on every reconnection.
 *
 * On success *out is the handle.  Errors:
 *   SHMC_ENODAEMON   no socket at the path: no daemon runs there;
 *   -ECONNREFUSED    a socket file nobody listens on (a stopped daemon);
 *   SHMC_EUNTRUSTED  the socket is served by an untrusted uid (or
 *                    $SHMC_TRUST_UID is not a list of uids);
 *   -EACCES     the daemon does not allow this user (it needs
 *               --allow-user or --allow-group), or the socket's mode;
 *   -EPROTO     the daemon or its region is of an incompatible version;
 *   -ENAMETOOLONG  socket_path does not fit a Unix socket address;
 *   -ENOMEM, -EMFILE  out of memory or file descriptors;
 *   -EIO        the daemon answered something unexpected.
 * For the first four, shmc_strerror() names the socket (and the peer's uid,
 * or this user's) and says what to do. */
int shmc_open(shmc **out, const char *socket_path);

/* Unmaps the cache and closes the connection, telling the daemon that the
 * handle's client id is done (so that a process may open and close handles
 * without limit).  No call on c may be in progress or follow.  In a forked
 * child, closes what the child inherited and tells the daemon nothing (the
 * id is the parent's).  NULL is ignored. */
void shmc_close(shmc *c);

/* ------------------------------------------------------------------------
 * Data operations (on the mapping)
 *
 * Every write that would make a value (the sets and adds, multi-sets,
 * incr/decr with an initial value, reservations, fills) fails with
 * -ESTALE and stores nothing for a key under a prefix the daemon's near
 * cache has blocked: while its tracking of Redis is down (shmcached
 * --redis, docs/NEARCACHE.md) no copy may be made that a lost
 * invalidation would leave stale.  The prefix was flushed as it was
 * blocked, so reads miss meanwhile, and the writes that need the key
 * present (replace, cas, append, prepend, incr/decr) find it missing.
 * ------------------------------------------------------------------------ */

/* Stores key -> val for ttl_s seconds (0: no expiry), replacing any value
 * the key had.  Never fails for lack of room: older and colder entries of
 * the key's segment are evicted. */
int shmc_set(shmc *c, const void *key, size_t klen, const void *val,
	     size_t vlen, uint32_t ttl_s);

/* Copies the value of key into buf (cap bytes) and sets *vlen to its full
 * length.  Returns 0, -ENOENT when the key is missing or expired, or
 * -ENOBUFS when cap < *vlen: then *vlen tells the size needed.  buf may be
 * NULL when cap is 0.  On an error buf's contents are unspecified: a get of
 * a key in use reads without the segment lock, and a read that overlapped
 * a write is thrown away and done again (so it may have left bytes). */
int shmc_get(shmc *c, const void *key, size_t klen, void *buf, size_t cap,
	     size_t *vlen);

/* As shmc_get(); *expire_at (if not NULL) receives the absolute expiry in
 * unix seconds, 0 for none. */
int shmc_get_ex(shmc *c, const void *key, size_t klen, void *buf, size_t cap,
		size_t *vlen, uint32_t *expire_at);

/* As shmc_get(), but changes nothing: neither the entry's access time (its
 * place in eviction order) nor the hit/miss statistics. */
int shmc_peek(shmc *c, const void *key, size_t klen, void *buf, size_t cap,
	      size_t *vlen);

/* Removes key.  Returns 0, or -ENOENT if it was missing or expired. */
int shmc_del(shmc *c, const void *key, size_t klen);

/* *ttl_s = seconds key has left, 0 if it never expires.  -ENOENT if the key
 * is missing or expired. */
int shmc_ttl(shmc *c, const void *key, size_t klen, uint32_t *ttl_s);

/* Gives key a new TTL (0: never expires); counts as an access.  -ENOENT if
 * missing or expired. */
int shmc_touch(shmc *c, const void *key, size_t klen, uint32_t ttl_s);

/* Removes every entry (statistics counters are kept). */
int shmc_clear(shmc *c);

/* ------------------------------------------------------------------------
 * Multi-get and multi-set
 * ------------------------------------------------------------------------ */

/* One key of shmc_mget(): the key, and where its value is copied. */
struct shmc_mkey {
	const void *key;
	size_t klen;
	void *buf; /* may be NULL when cap is 0 */
	size_t cap;
};

/* One key's result of shmc_mget().  rc is what shmc_get() returns for
 * that key: 0 (the value is in the key's buf), -ENOENT (missing or
 * expired), -ENOBUFS (cap < vlen; vlen tells the size needed), or an error
 * of that key alone (-EINVAL, -E2BIG, -ETIMEDOUT, -EUCLEAN).  vlen, flags
 * and expire_at (absolute unix seconds, 0 for none) are set when rc is 0
 * or -ENOBUFS; cas (the item's version) too, with SHMC_MGET_CAS. */
struct shmc_mres {
	int rc;
	uint32_t flags;
	size_t vlen;
	uint32_t expire_at;
	uint64_t cas;
};

/* shmc_mget() option: fill shmc_mres.cas (two more memory reads a key). */
#define SHMC_MGET_CAS 1u

/* Gets keys[0..n-1]: each as shmc_get() would, its result in res[i].  The
 * memory reads of different keys overlap, so that a batch costs less per
 * key than as many shmc_get() calls when the cache is larger than the CPU's
 * caches.  A key may appear more than once; a bad key fails alone.  Not a
 * snapshot: each key is read on its own, so a write between two keys'
 * reads may show in one and not the other.  opts: 0 or SHMC_MGET_CAS.
 * Returns 0 (then every res[i].rc is set), -EINVAL when keys or res is
 * NULL and n > 0 or opts has an unknown bit, or -ECHILD. */
int shmc_mget(shmc *c, size_t n, const struct shmc_mkey *keys,
	      struct shmc_mres *res, unsigned opts);

/* One item of shmc_mset(). */
struct shmc_mitem {
	const void *key;
	size_t klen;
	const void *val;
	size_t vlen;
};

/* shmc_set() of items[0..n-1] in turn, each with ttl_s, its result in
 * rc[i] (0, or what shmc_set() returns for it: -EINVAL, -E2BIG,
 * -ETIMEDOUT, -EUCLEAN, -ESTALE).  Not atomic: items are stored one by one, and a
 * failed item does not stop the rest; a key that appears twice ends with
 * the later value.  Returns 0 (then every rc[i] is set), -EINVAL when
 * items or rc is NULL and n > 0, or -ECHILD. */
int shmc_mset(shmc *c, size_t n, const struct shmc_mitem *items, uint32_t ttl_s,
	      int *rc);

/* ------------------------------------------------------------------------
 * Cache-aside with thundering-herd protection across processes
 * ------------------------------------------------------------------------ */

/* Produces the value of key on a miss: writes at most cap bytes into buf,
 * sets *vlen to the value's length and *ttl_s to its TTL, returns 0 or a
 * negative errno of its choice (passed back to its caller). */
typedef int (*shmc_loader)(const void *key, size_t klen, void *buf, size_t cap,
			   size_t *vlen, uint32_t *ttl_s, void *arg);

/* Gets key; on a miss, exactly one caller at a time - in any process -
 * runs load() for it and stores the result, while the other callers for
 * that key wait and then read the stored value.  Returns what shmc_get()
 * returns, or the loader's error to the caller whose loader failed (then
 * one of the waiters runs its own loader).  If the loading process dies,
 * the waiters stop waiting at once when the daemon notices, and within
 * SHMC_LOAD_WAIT_MS in any case, and one of them loads.  A loader's value
 * longer than cap gives -ENOBUFS with *vlen set (the value is not stored).
 * The loader runs without any lock held and may call shmc functions.
 * The loaded value is stored as shmc_fill() stores it, under a lease
 * begun before the loader runs: when the key was deleted or invalidated
 * while it ran (or a value was stored meanwhile), the caller still gets
 * the loaded value (0) but it is not cached; its waiters then look again,
 * and one of them loads.  While the key's prefix is blocked (the near
 * cache's tracking is down: nothing loaded is cached), callers do not
 * wait for one another: each runs its own loader. */
int shmc_get_or_load(shmc *c, const void *key, size_t klen, void *buf,
		     size_t cap, size_t *vlen, shmc_loader load, void *arg);
#define SHMC_LOAD_WAIT_MS 10000

/* ------------------------------------------------------------------------
 * Items: flags, versions (CAS), conditional stores, counters, and
 * stale-while-revalidate.
 *
 * Every item carries 32 opaque bits of flags, stored with it and returned
 * by every read that returns metadata (memcached's client flags), and a
 * 64-bit version that every write of the item changes (memcached's CAS
 * unique): set, add, replace, cas, append, prepend, incr and decr give the
 * item a new version, unique across the cache; shmc_touch() and the
 * daemon's moves of an entry keep it.  A plain shmc_set() stores flags
 * 0.
 * ------------------------------------------------------------------------ */

/* What a read returns besides the value. */
struct shmc_item {
	uint64_t cas;	    /* the version: for shmc_cas() */
	size_t vlen;	    /* the value's full length */
	uint32_t flags;	    /* as stored */
	uint32_t expire_at; /* absolute unix seconds; 0: never expires */
};

/* As shmc_get(), with the item's metadata in *it.  Returns 0, -ENOENT
 * (missing or expired), or -ENOBUFS when cap < the value's length: then
 * only it->vlen is set, to the size needed (call again with a larger
 * buffer; the version may have changed by then, which is what the second
 * call's it->cas tells).  A hit counts as a get (access time, hit
 * counter), -ENOBUFS included. */
int shmc_get_item(shmc *c, const void *key, size_t klen, void *buf, size_t cap,
		  struct shmc_item *it);

/* The options of a store; NULL means flags 0 and no expiry. */
struct shmc_store_opts {
	uint32_t flags; /* returned by every shmc_get_item() */
	uint32_t ttl_s; /* seconds; 0: never expires */
};

/* Stores key -> val as shmc_set() does, with o's flags and TTL.  *cas (if
 * not NULL) receives the item's new version.  Errors: the common ones. */
int shmc_set_ex(shmc *c, const void *key, size_t klen, const void *val,
		size_t vlen, const struct shmc_store_opts *o, uint64_t *cas);

/* Stores key -> val only if key is absent (missing or expired), as
 * memcached's add and Redis's SET NX: -EEXIST if it is present, and then
 * nothing is changed.  Of several processes adding the same key at once,
 * exactly one succeeds.  *cas as shmc_set_ex(). */
int shmc_add(shmc *c, const void *key, size_t klen, const void *val,
	     size_t vlen, const struct shmc_store_opts *o, uint64_t *cas);

/* Stores key -> val only if key is present, as memcached's replace and
 * Redis's SET XX: -ENOENT if it is missing or expired (nothing stored).
 * The new value takes o's flags and TTL.  *cas as shmc_set_ex(). */
int shmc_replace(shmc *c, const void *key, size_t klen, const void *val,
		 size_t vlen, const struct shmc_store_opts *o, uint64_t *cas);

/* Compare-and-swap, as memcached's cas: stores key -> val (with o's flags
 * and TTL) only if key is present and its version is still `version`, as
 * read by shmc_get_item() or returned by a store.  Errors:
 *   -EEXIST  the item was written since (its version differs): read it
 *            again and retry;
 *   -ENOENT  the item is gone (missing, deleted or expired).
 * On either nothing is stored.  *new_cas (if not NULL) receives the new
 * version. */
int shmc_cas(shmc *c, const void *key, size_t klen, const void *val,
	     size_t vlen, uint64_t version, const struct shmc_store_opts *o,
	     uint64_t *new_cas);

/* Appends val to the value of key (shmc_prepend: puts it before), as
 * memcached's append and prepend: the item keeps its flags and expiry and
 * gets a new version (in *cas if not NULL).  Errors: -ENOENT (key missing
 * or expired: nothing is created, unlike Redis's APPEND), -E2BIG (key and
 * the joined value would pass shmc_max_item()), -ENOMEM (the joined value
 * over 4 KiB could not be assembled). */
int shmc_append(shmc *c, const void *key, size_t klen, const void *val,
		size_t vlen, uint64_t *cas);
int shmc_prepend(shmc *c, const void *key, size_t klen, const void *val,
		 size_t vlen, uint64_t *cas);

/* Atomic counters on values that are decimal numbers below 2^64 (ASCII
 * digits, as memcached stores them and as shmc_set() of "42" does; read
 * as memcached reads them: whitespace and a '+' before the digits and
 * whitespace after them are allowed, 64 bytes at most in all), with
 * memcached's incr and decr rules: shmc_incr() wraps around
 * at 2^64, shmc_decr() stops at 0 (it never goes negative).  The result
 * is stored back as its decimal digits (the item keeps its flags and
 * expiry and gets a new version) and returned in *out (if not NULL).
 * Errors:
 *   -ENOENT  key is missing or expired (nothing is created);
 *   -EDOM    the value is not such a number: it is left unchanged;
 *   -E2BIG   key too long to hold a 20-digit number beside it. */
int shmc_incr(shmc *c, const void *key, size_t klen, uint64_t delta,
	      uint64_t *out);
int shmc_decr(shmc *c, const void *key, size_t klen, uint64_t delta,
	      uint64_t *out);

/* shmc_incr() / shmc_decr() that create a missing key, as
 * ngx.shared.DICT:incr(key, value, init, init_ttl): a missing or expired
 * key is first stored as `init` (flags 0, TTL init_ttl seconds, 0: never
 * expires) and then delta is applied to it, in one atomic step that no
 * other process can split (so shmc_incr_init(k, 1, 0, ...) on a missing
 * key gives 1, and shmc_decr_init(k, 5, 3, ...) gives 0).  A present key
 * is counted as by shmc_incr() / shmc_decr(), its TTL unchanged.  Errors:
 * those of shmc_incr() but -ENOENT. */
int shmc_incr_init(shmc *c, const void *key, size_t klen, uint64_t delta,
		   uint64_t init, uint32_t init_ttl, uint64_t *out);
int shmc_decr_init(shmc *c, const void *key, size_t klen, uint64_t delta,
		   uint64_t init, uint32_t init_ttl, uint64_t *out);

/* shmc_get_or_load() with stale-while-revalidate: the loaded value is
 * stored with the loader's TTL plus a grace of grace_s seconds.  Once the
 * TTL has passed, during the grace, the first caller (in any process) to
 * ask for the key runs the loader to refresh it, and every other caller
 * is served the stale value at once, without waiting, until the new value
 * is stored.  A value without a TTL (the loader's *ttl_s 0), or grace_s
 * 0, behaves as with shmc_get_or_load().  A loader that fails on a
 * refresh returns its error to its caller; the stale value stays served
 * to the others until the grace ends, and the next caller after the
 * failure refreshes.  Only this call and shmc_get_or_load() serve a value
 * in its grace: for shmc_get() and the other reads it is expired.  Returns as
 * shmc_get_or_load() (0 for a stale value served). */
int shmc_get_or_load_swr(shmc *c, const void *key, size_t klen, void *buf,
			 size_t cap, size_t *vlen, uint32_t grace_s,
			 shmc_loader load, void *arg);

/* ------------------------------------------------------------------------
 * Fill leases: no stale fill
 *
 * A near cache in front of a store of record (Redis, a database) fills
 * itself after a miss: read the store, then cache what was read.  If the
 * key is written in the store and its invalidation reaches the cache
 * between that read and the cache's store, a plain store would install
 * the old value after the invalidation, for good.  A lease closes that
 * window (memcached's leases, Facebook's "Scaling Memcache"): taken at
 * the miss, before the store is read, it is voided by every deletion and
 * invalidation the key's segment sees until the fill, and the fill under
 * a void lease stores nothing.  The daemon's Redis tracking deletes each
 * invalidated key, and blocks its prefixes while its tracking is down, so
 * a fill never caches what was read while invalidations could be lost.
 *
 *     struct shmc_lease l;
 *     rc = shmc_get_lease(c, k, kl, buf, cap, &it, &l);
 *     if (rc == -ENOENT) {
 *             ... read the value from the store into buf ...
 *             shmc_fill(c, &l, k, kl, buf, n, &opts);  (-ESTALE: not
 *                                                       cached, serve it)
 *     }
 *
 * shmc_get_or_load() does this itself: its loader is the read.  A lease
 * fails safe: a deletion of another key of the same segment voids it too
 * (the fill is skipped, which costs one more miss, never a stale value).
 * A lease is a plain value: it holds nothing, needs no release, and may
 * be dropped unused.
 * ------------------------------------------------------------------------ */

/* A fill lease; its contents are private. */
struct shmc_lease {
	uint32_t priv_[4];
};

/* Starts a fill lease on key, as a miss of shmc_get_lease() does: for a
 * caller that found the key missing by other means (a multi-get).  Call
 * it before reading the store.  Takes no lock and writes nothing.
 * Returns 0, or -EINVAL (bad key, l NULL), -ECHILD. */
int shmc_lease_begin(shmc *c, const void *key, size_t klen,
		     struct shmc_lease *l);

/* Gets key as shmc_get_item() does; on a miss (-ENOENT) also starts a
 * fill lease in *l (shmc_lease_begin()).  Returns 0 (hit: *it set, *l
 * untouched), -ENOENT (miss: *l set), -ENOBUFS (as shmc_get_item()), or
 * the common errors. */
int shmc_get_lease(shmc *c, const void *key, size_t klen, void *buf, size_t cap,
		   struct shmc_item *it, struct shmc_lease *l);

/* Stores key -> val, read from the store after the miss that began l,
 * with o's flags and TTL (o may be NULL), only if key is still absent
 * and l is still valid.  *cas (if not NULL) gets the new version.
 * Returns 0 (stored), -ESTALE (l is void: the key, or another of its
 * segment, was deleted or invalidated since l began, a namespace over
 * the key was flushed, or the key is under a namespace blocked by the
 * near cache's outage; nothing stored: use the value for this request
 * but do not cache it), -EEXIST (a value was stored meanwhile: it
 * stays), -EINVAL (l was begun on another key's segment), or the common
 * errors. */
int shmc_fill(shmc *c, const struct shmc_lease *l, const void *key, size_t klen,
	      const void *val, size_t vlen, const struct shmc_store_opts *o,
	      uint64_t *cas);

/* ------------------------------------------------------------------------
 * Zero-copy access, for large values
 * ------------------------------------------------------------------------ */

/* Receives a value in place: the value is p1[0..n1) followed by
 * p2[0..n2) (n2 is 0 unless the value wraps around the end of the
 * segment's ring).  Runs under the segment lock: be brief, do not call
 * shmc functions, and do not keep the pointers.  Its return value is
 * returned by shmc_read(). */
typedef int (*shmc_reader)(const void *p1, size_t n1, const void *p2, size_t n2,
			   void *arg);

/* Looks key up and, on a hit, calls fn on the value in place (counts as a
 * get).  Returns fn's return value, or -ENOENT. */
int shmc_read(shmc *c, const void *key, size_t klen, shmc_reader fn, void *arg);

/* A reserved entry: fill p1[0..n1) then p2[0..n2) with the value, then
 * shmc_commit() it, or shmc_abort(). */
struct shmc_reservation {
	void *p1, *p2;
	size_t n1, n2;
	void *priv_[4]; /* the library's */
};

/* Reserves room for a vlen-byte value of key (TTL ttl_s) and returns where
 * to write it.  The key's segment stays LOCKED until shmc_commit() or
 * shmc_abort(): fill the value promptly, make no other shmc call from this
 * thread in between, and always finish the reservation.  Until commit,
 * readers see the key's previous value or a miss, never a partial one; if
 * the process dies before commit, the daemon resets the segment. */
int shmc_reserve(shmc *c, const void *key, size_t klen, size_t vlen,
		 uint32_t ttl_s, struct shmc_reservation *r);

/* Publishes the reserved entry and unlocks.  Returns 0. */
int shmc_commit(shmc *c, struct shmc_reservation *r);

/* Drops the reserved entry (the key is then missing) and unlocks. */
void shmc_abort(shmc *c, struct shmc_reservation *r);

/* ------------------------------------------------------------------------
 * Statistics and limits
 * ------------------------------------------------------------------------ */

struct shmc_stats {
	uint64_t hits;	      /* gets that found a live entry */
	uint64_t misses;      /* gets that found nothing or an expired entry */
	uint64_t sets;	      /* successful sets */
	uint64_t overwrites;  /* sets that replaced a live entry */
	uint64_t deletes;     /* deletes that removed a live entry */
	uint64_t evictions;   /* live entries dropped to make room */
	uint64_t moves;	      /* entries in use kept by moving them */
	uint64_t expirations; /* expired entries reclaimed */
	uint64_t repairs;     /* segment resets after damage or a dead holder */
	uint64_t entries;     /* live entries now */
	uint64_t bytes_used;  /* ring bytes in use now */
	uint64_t bytes_total; /* ring bytes in all */
	uint64_t segments;    /* segments counted */
};

/* Totals over the whole cache, read from the mapping (no socket). */
int shmc_stat(shmc *c, struct shmc_stats *out);

/* One segment's figures; -EINVAL if seg >= shmc_segments(c).  Its hits
 * and misses are those of the gets that took the segment's lock (a first
 * get of an entry, an expired one, a segment being written); a get of an
 * entry in use is answered without the lock and counted by client, so it
 * appears in shmc_stat()'s totals only.  Every other field of the segments
 * adds up to the totals. */
int shmc_seg_stat(shmc *c, uint32_t seg, struct shmc_stats *out);

/* Number of segments; the largest key + value; this handle's client id. */
uint32_t shmc_segments(const shmc *c);
size_t shmc_max_item(const shmc *c);
uint32_t shmc_client_id(const shmc *c);

/* ------------------------------------------------------------------------
 * Listing keys (on the mapping)
 * ------------------------------------------------------------------------ */

/* One listed entry: its key and metadata, not its value. */
struct shmc_key_info {
	const void *key; /* klen bytes; valid during the callback only */
	size_t klen;
	size_t vlen;	    /* the value's length */
	uint32_t flags;	    /* as stored (0 when the writer gave none) */
	uint32_t expire_at; /* absolute expiry, unix seconds; 0: never */
	uint32_t ttl_s;	    /* seconds it had left when listed; 0: never */
	uint64_t cas;	    /* its version (changes with every write) */
};

/* Called once per listed entry.  Return 0 to go on; anything else stops
 * the listing and is returned by shmc_scan(). */
typedef int (*shmc_scan_fn)(const struct shmc_key_info *k, void *arg);

/* Lists the live entries whose key starts with prefix[0..plen) (plen 0:
 * every entry; prefix may then be NULL), one segment per call, as Redis's
 * SCAN does: set *cursor to 0, then call until *cursor is 0 again.
 *
 *   uint64_t cur = 0;
 *   do {
 *           if ((rc = shmc_scan(c, &cur, "user:", 5, print_key, NULL)))
 *                   break;
 *   } while (cur != 0);
 *
 * Each call copies the matching keys and their metadata of one segment
 * under its lock, releases it, then calls fn on each copy: fn holds no
 * lock, may take as long as it likes (write to a slow pipe) and may call
 * any shmc function, this handle's included.  Expired entries, deleted
 * ones, those of a flushed namespace and those past a soft expiry are not
 * listed; the order is no order at all.  The cursor is a plain number
 * that can be kept anywhere and resumed later, by another thread or
 * process of the same cache (not of a replaced region: see Caveats).
 *
 * Guarantee: a key never changes segment, and a segment is copied at one
 * instant, so a scan from 0 back to 0 lists every key that is present for
 * the whole scan exactly once, however the cache is written meanwhile
 * (evictions, moves within a segment); a key set or removed during the
 * scan is listed once or not at all.  A scan takes shmc_segments(c) calls
 * and so always ends.  Each call needs memory for the listed keys of one
 * segment (it allocates; -ENOMEM if it cannot).
 *
 * Returns 0 with *cursor advanced (0: the scan is done), or, leaving
 * *cursor unchanged (calling again lists that segment again):
 *   -EINVAL     c, cursor or fn NULL, prefix NULL with plen > 0, or
 *               *cursor not a value shmc_scan() gave (>= the segments);
 *   -ENOMEM     no memory for the copy;
 *   -ETIMEDOUT, -ECHILD as every data operation;
 *   fn's non-zero return, when fn stopped the listing (the entries of the
 *               segment after that one are not passed to fn).
 * A segment found corrupted is reset and listed as empty.  Thread-safe. */
int shmc_scan(shmc *c, uint64_t *cursor, const void *prefix, size_t plen,
	      shmc_scan_fn fn, void *arg);

/* ------------------------------------------------------------------------
 * Control requests (over the daemon's socket; the handle reconnects if the
 * daemon was restarted).  Besides their own errors they can return
 * SHMC_ENODAEMON / -ECONNREFUSED (no daemon), SHMC_EUNTRUSTED and -EACCES
 * (as shmc_open(), on reconnecting), -EPIPE (the daemon went away during
 * the request) and -EIO (an unexpected answer).  A failed request sets
 * none of its counts (*segments, *n, *entries, ...).
 * ------------------------------------------------------------------------ */

/* A round trip to the daemon. */
int shmc_ping(shmc *c);

/* The daemon's integrity walk over the region header and every segment
 * (with repair, a damaged header is rewritten from its intact copy and
 * damaged segments are reset).  Fills the counts (a damaged header counts
 * as one bad part, not as a segment); *bad > 0 means violations, and
 * shmc_errmsg() then gives the daemon's description of the first, e.g.
 * "region header geometry damaged, repaired from the second copy". */
int shmc_check(shmc *c, int repair, uint32_t *segments, uint32_t *bad,
	       uint32_t *repaired);

struct shmc_client_info {
	uint32_t id; /* client id (0: connected, no handshake yet) */
	uint32_t pid, uid, gid;
	uint64_t since; /* unix seconds */
};

/* Up to cap connected clients into out; *n = how many there are in all. */
int shmc_clients(shmc *c, struct shmc_client_info *out, size_t cap, size_t *n);

/* Writes a snapshot of the cache to path (absolute, on the daemon's host,
 * written by the daemon atomically) / loads one (*entries: how many were
 * written / loaded).  Only for the daemon's user or root (-EPERM).  A
 * missing file is -ENOENT; a damaged one -EBADMSG, and nothing is loaded
 * (shmc_errmsg() and the daemon's log name the file and offset).  Another
 * save or load running in the daemon: -EBUSY.  A load verifies the whole
 * file before it stores the first entry, so it reads the file twice; see
 * docs/SNAPSHOT.md. */
int shmc_save(shmc *c, const char *path, uint64_t *entries);
int shmc_load(shmc *c, const char *path, uint64_t *entries);

/* As shmc_load(), in one read of the file: each block is stored as soon as
 * it is verified, so on damage (-EBADMSG) the entries of the blocks before
 * it stay loaded (shmc_errmsg() says how many).  Faster for a file that is
 * not in the page cache. */
int shmc_load_partial(shmc *c, const char *path, uint64_t *entries);

/* Asks the daemon to stop (-EPERM unless this process runs as the
 * daemon's user or root). */
int shmc_shutdown(shmc *c);

/* ------------------------------------------------------------------------
 * Namespaces (control requests, with the errors of the section above).
 *
 * A namespace is a key prefix registered with the daemon, e.g. "user:42:".
 * shmc_ns_flush() drops every key that starts with it at once, in constant
 * time whatever their number: from its return no process reads them
 * (shmc_get() gives -ENOENT), and their room is reclaimed lazily, by the
 * reads and writes that meet them.  Keys written after the flush live.
 * Prefixes may overlap ("user:" and "user:42:"): a key is gone when any
 * namespace it is under was flushed after it was written.  A registered
 * prefix also covers the keys written before it was registered.
 *
 * Prefixes are 1..SHMC_NS_PREFIX_MAX arbitrary bytes; the region holds up
 * to SHMC_NS_MAX of them, and they survive a daemon restart with the
 * region (shmcached --namespace registers some at every start).  Only the
 * daemon writes the table, so these go through its socket; any peer the
 * daemon lets in may call them.  Thread-safe, as the other control calls.
 * ------------------------------------------------------------------------ */

#define SHMC_NS_PREFIX_MAX 52 /* bytes in a namespace prefix */
#define SHMC_NS_MAX 128	      /* namespaces in a region */

/* Registers prefix (len bytes) as a namespace.  0; -EEXIST (already
 * registered); -ENOSPC (SHMC_NS_MAX are registered); -EINVAL (prefix NULL,
 * len 0 or over SHMC_NS_PREFIX_MAX). */
int shmc_ns_add(shmc *c, const void *prefix, size_t len);

/* Drops every key under the namespace prefix.  0; -ENOENT (not
 * registered); -EINVAL (as shmc_ns_add()); -EOVERFLOW (the region's
 * 2^32 - 1 namespace flushes are spent: only a new region gets past
 * it). */
int shmc_ns_flush(shmc *c, const void *prefix, size_t len);

/* Unregisters prefix and drops its keys, as shmc_ns_flush() does (a
 * dropped key must not come back; the prefix keeps its slot in the
 * table, counted against SHMC_NS_MAX, and registering it again takes it
 * back).  0; -ENOENT (not registered); -EINVAL (as shmc_ns_add());
 * -EOVERFLOW (as shmc_ns_flush()); -EBUSY (a prefix the daemon's near
 * cache tracks, --redis-prefix: it stays registered). */
int shmc_ns_del(shmc *c, const void *prefix, size_t len);

/* One registered namespace. */
struct shmc_ns_info {
	uint8_t prefix[SHMC_NS_PREFIX_MAX]; /* len bytes, not terminated */
	uint32_t len;
	uint32_t mark; /* the region's flush count at its last flush; 0:
			  never flushed */
	uint32_t slot; /* its slot in the region's table */
};

/* Up to cap registered namespaces into out (in table order); *n = how
 * many there are in all.  0, or -EINVAL (n NULL, or out NULL with cap >
 * 0). */
int shmc_ns_list(shmc *c, struct shmc_ns_info *out, size_t cap, size_t *n);

/* The most prefixes a daemon's near cache tracks (--redis-prefix). */
#define SHMC_NEAR_PREFIXES_MAX 64

/* The daemon's near cache (shmcached --redis, docs/NEARCACHE.md). */
struct shmc_near_info {
	char state[16];	  /* "off" (no --redis), "connecting", "up" or
			     "down" */
	uint32_t nprefix; /* the prefixes it keeps coherent: prefix[0..n) */
	struct shmc_near_prefix {
		uint8_t bytes[SHMC_NS_PREFIX_MAX]; /* len bytes, not
						      terminated */
		uint32_t len;
	} prefix[SHMC_NEAR_PREFIXES_MAX];
};

/* What the daemon follows of Redis, into *out.  Only the copies of keys
 * that start with one of out->prefix are dropped when Redis writes them
 * (and only while state is not "off"): a read-through cache should fill
 * no other key from Redis, or it serves that key's old value after Redis
 * changed it, for as long as the copy lives.  Returns 0, -EINVAL (out
 * NULL), -EOPNOTSUPP (a daemon older than its near cache), -EIO (a reply
 * that does not parse), or the errors of reaching the daemon. */
int shmc_near_query(shmc *c, struct shmc_near_info *out);

/* A short description of any value these functions return (0 included).
 * For the errors of reaching the daemon (SHMC_ENODAEMON, -ECONNREFUSED,
 * SHMC_EUNTRUSTED, -EACCES) that the calling thread's last shmc_open() or
 * control request returned, the description names the socket, and the
 * peer's uid or this user's, and says what to do; it stays valid until
 * that thread's next shmc_open() or control request. */
const char *shmc_strerror(int err);

/* The daemon's own words about the calling thread's last control request
 * (shmc_check, shmc_save, shmc_load, shmc_load_partial, ...), when it
 * failed with an error reply: e.g. for a damaged snapshot "snapshot
 * /var/lib/x.snap: block at offset 8192: checksum mismatch (nothing
 * loaded)"; or after a shmc_check() that found damage, the first finding.
 * "" when that request succeeded otherwise, or failed before the daemon
 * answered (the returned error says why).  Per thread; valid until the
 * thread's next control request. */
const char *shmc_errmsg(void);

#ifdef __cplusplus
}
#endif

#endif
