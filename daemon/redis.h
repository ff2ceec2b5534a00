/*
 * redis.h - the near cache's tracking of Redis (--redis): a daemon thread
 * that keeps one RESP3 connection per Redis master with
 * CLIENT TRACKING ON BCAST PREFIX ..., and deletes from the region every
 * key Redis says was written (docs/NEARCACHE.md).
 *
 * The coherence rules it keeps: the tracked prefixes (--redis-prefix) are
 * namespaces of the region, blocked (eng_ns_block(): no write makes a
 * value under them) and flushed whenever a tracking connection is
 * missing, and
 * unblocked - after one more flush - only while every master's tracking
 * is up.  Keys outside the prefixes are never touched.
 *
 * What it is not: the protocol reader (resp.h), the options (config.c).
 */
#ifndef SHMC_REDIS_H
#define SHMC_REDIS_H

#include <stddef.h>
#include <stdint.h>

struct daemon;
struct config;

/* The counters of `cachectl stats` (X(name, description)), in the order
 * they are sent (PROTO_T_NEARCACHE). */
#define REDIS_COUNTERS(X)                                                      \
	X(masters, "Redis masters whose tracking is up")                       \
	X(masters_known, "Redis masters known (cluster topology or servers)")  \
	X(messages, "invalidation messages received")                          \
	X(keys, "keys invalidated (deleted, present or not)")                  \
	X(flushes, "prefixes flushed: start, FLUSHALL, outages")               \
	X(lock_flushes, "invalidated keys dropped by a prefix flush instead "  \
			"(a segment lock held too long)")                      \
	X(reconnects, "connections lost or failed, then retried")

enum redis_counter {
#define REDIS_ENUM_X(name, desc) REDIS_C_##name,
	REDIS_COUNTERS(REDIS_ENUM_X)
#undef REDIS_ENUM_X
		REDIS_NCOUNTERS
};

/* A snapshot of the tracking's state for stats. */
struct redis_stats {
	const char *state; /* "connecting", "up" or "down"; NULL: "off" */
	uint64_t v[REDIS_NCOUNTERS];
	char last_error[256];	/* "" when none yet */
	uint64_t last_error_at; /* unix seconds; 0 when none */
};

/* Prepares the tracking of cfg's --redis (nothing when there is none):
 * reads the password (--redis-password-file, else
 * $SHMCACHED_REDIS_PASSWORD).  Call before detaching, so that a bad file
 * is a start-up error.  Returns 0, or -1 with a one-line reason in err. */
int redis_prepare(struct daemon *d, char *err, size_t cap);

/* Unblocks every namespace of the region that this start does not track
 * (--redis-prefix): a region keeps the blocks of a daemon that followed
 * Redis (redis_stop() leaves them), and nothing else blocks a namespace.
 * Call once the region is attached, before redis_start(). */
void redis_unblock_untracked(struct daemon *d);

/* Registers the prefixes as namespaces (one registered already is kept),
 * blocks and flushes them, and starts the thread.  Call once the region
 * is attached.  Returns 0, or -1 with a one-line reason in err. */
int redis_start(struct daemon *d, char *err, size_t cap);

/* Stops and joins the thread, and leaves the prefixes blocked and
 * flushed: nothing follows Redis any more.  No-op without --redis. */
void redis_stop(struct daemon *d);

/* The current state and counters are in d->redis_st, under
 * d->redis_lock (daemon.h): the tracking thread writes them, the loop's
 * NEARCACHE request reads them. */

#endif
