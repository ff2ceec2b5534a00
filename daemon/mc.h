/*
 * mc.h - memcached's text and meta protocols (memcached 1.6, its
 * doc/protocol.txt) over the engine: what a socket client stores is what a
 * mapped client reads, flags and versions (CAS) included.
 *
 * This module parses requests out of a connection's received bytes, runs
 * them on the region and appends the replies to the connection's output.
 * It does no I/O and knows no socket: the server (mc_serve.c) accepts,
 * moves bytes and applies back-pressure; the unit tests and the fuzz
 * target call mc_process() directly.
 *
 * Threads: a struct mc_worker and the sessions it serves belong to one
 * thread.  Workers share a struct mc_shared (read-only once they run,
 * except its atomics) and read each other's counters for `stats`.
 *
 * Files: mc_proto.c (the request loop, tokens, replies, dispatch),
 * mc_text.c (the text protocol), mc_stats.c (its `stats`), mc_meta.c
 * (the meta protocol and its leases); docs/PROTOCOL.md says where shmcached differs from
 * memcached.
 */
#ifndef SHMC_MC_H
#define SHMC_MC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "shmc_version.h"

struct config;

/* What `version` answers and `stats` shows as "version": the memcached
 * release whose protocol this one is held to (test_mc_diff.py compares
 * them), then shmcached's own version.  Clients read the first as
 * memcached's (libmemcached refuses a major version 0, and some gate
 * commands on it); `stats` gives shmcached's as "shmc_version". */
#define MC_COMPAT_VERSION "1.6.18"
#define MC_VERSION_LINE MC_COMPAT_VERSION " shmcached-" SHMC_VERSION

/* memcached's limits on what a request may carry. */
#define MC_KEY_MAX 250	 /* bytes in a key (after base64 decoding) */
#define MC_LINE_MAX 8192 /* a request line without its data block */
#define MC_TOKENS_MAX                                                          \
	256 /* tokens in one line (a get of many keys is
			     taken in several passes, see mc_proto.c) */

/* The protocol's counters, with memcached's names where memcached has the
 * figure: X(name, description).  A worker's counters are written by its
 * thread only (relaxed atomic stores) and read by any worker's `stats`. */
#define MC_COUNTERS(X)                                                         \
	X(cmd_get, "keys requested by retrieval commands")                     \
	X(cmd_set, "storage commands")                                         \
	X(cmd_flush, "flush_all commands")                                     \
	X(cmd_touch, "touch, gat and gats keys")                               \
	X(cmd_meta, "meta commands")                                           \
	X(get_hits, "keys found by retrieval commands")                        \
	X(get_misses, "keys not found by retrieval commands")                  \
	X(get_expired, "keys not found because they had expired")              \
	X(get_flushed, "keys not found because a flush dropped them")          \
	X(delete_misses, "deletes of absent keys")                             \
	X(delete_hits, "deletes of present keys")                              \
	X(incr_misses, "incr of absent keys")                                  \
	X(incr_hits, "incr of present keys")                                   \
	X(decr_misses, "decr of absent keys")                                  \
	X(decr_hits, "decr of present keys")                                   \
	X(cas_misses, "cas of absent keys")                                    \
	X(cas_hits, "cas that stored")                                         \
	X(cas_badval, "cas refused: the item changed since its gets")          \
	X(touch_hits, "touch of present keys")                                 \
	X(touch_misses, "touch of absent keys")                                \
	X(store_too_large, "stores refused: item over the size limit")         \
	X(store_no_memory, "stores refused: no memory or no lock in time")     \
	X(bytes_read, "bytes received from clients")                           \
	X(bytes_written, "bytes sent to clients")                              \
	X(total_connections, "connections accepted")                           \
	X(rejected_connections, "connections refused (limit or peer check)")   \
	X(curr_connections, "connections open now (a gauge)")

struct mc_stats {
#define MC_STATS_X(name, desc) uint64_t name;
	MC_COUNTERS(MC_STATS_X)
#undef MC_STATS_X
};

/* Adds n to a worker's counter (its own thread only). */
#define MC_COUNT(w, name, n)                                                   \
	__atomic_store_n(&(w)->st.name, (w)->st.name + (n), __ATOMIC_RELAXED)

struct mc_worker;
struct mc_lease;

/* What the workers share.  Filled by the server before any worker runs. */
struct mc_shared {
	const struct config *cfg; /* for `stats settings` */
	const struct eng *eng;	  /* the daemon's attachment; each worker
				     takes a copy */
	uint64_t started;	  /* unix seconds, the daemon's start */
	uint32_t nworkers;
	struct mc_worker **workers; /* [nworkers], for `stats` sums */
	uint32_t flush_at;	    /* atomic: unix second of a delayed
				       flush_all not yet done, 0 none */
	uint32_t verbosity;	    /* atomic: `verbosity N`, kept only */
	struct mc_stats reset;	    /* atomic: the counters' sums at the
				       last `stats reset` (mc_stats.c) */
};

/* One serving thread's state. */
struct mc_worker {
	struct eng eng; /* a copy of the daemon's attachment, with a lock
			   wait of its own */
	struct mc_shared *sh;
	uint32_t index; /* in sh->workers */
	struct mc_stats st;
	uint64_t next_session;	 /* ids for mc_session_init() */
	struct mc_lease *leases; /* meta leases in progress (mc_meta.c) */
	uint32_t nleases, cap_leases;
};

/* One connection's protocol state.  Zeroed by mc_session_init(). */
struct mc_session {
	uint64_t id;	  /* unique within its worker */
	uint64_t swallow; /* bytes of a refused data block still to skip */
	size_t need;	  /* when mc_process() stopped at an incomplete
			     request: the bytes that request needs in all
			     (line and data block), else 0.  The server grows
			     its input buffer to hold them. */
	bool close;	  /* `quit`, or input after which memcached closes:
			     send what is queued, then close */
	size_t resume;	  /* a retrieval paused at out->high: where in its
			     line its next key starts, else 0.  The line is
			     left unconsumed and runs on from there. */
	uint32_t nleases; /* leases it holds (mc_meta.c) */
};

/* A connection's output: replies are appended at len.  The server owns
 * the memory and sends [0, len) (or its own offset into it); mc_process()
 * may move it (realloc), so the server must not call it while a send
 * from it is in flight. */
struct mc_out {
	uint8_t *p;
	size_t len, cap;
	size_t high; /* mc_process() takes no new request while len >= high
			(back-pressure); a reply may pass it */
	bool oom;    /* an allocation failed: close the connection */
};

/* Sets up a worker: copies sh->eng (lock wait lock_wait_ms).  Returns 0. */
int mc_worker_init(struct mc_worker *w, struct mc_shared *sh, uint32_t index,
		   uint32_t lock_wait_ms);

/* Ends every lease still held and frees the worker's memory. */
void mc_worker_fini(struct mc_worker *w);

/* Periodic work (the server calls it about every 100 ms): leases past
 * their time are ended; worker 0 runs a delayed flush_all when due. */
void mc_worker_tick(struct mc_worker *w);

/* A new connection's state. */
void mc_session_init(struct mc_worker *w, struct mc_session *s);

/* The connection closed: the leases it won are ended (waiters wake and
 * load themselves). */
void mc_session_end(struct mc_worker *w, struct mc_session *s);

/* Runs the complete requests at the start of in[0..len), in order,
 * appending their replies to out, until one is incomplete, out->len
 * reaches out->high, or s->close is set.  Returns the bytes consumed: the
 * caller drops them and calls again with the rest when more arrive or the
 * output drained.  Never fails: bad input gets memcached's error reply;
 * out->oom says the replies could not be stored. */
size_t mc_process(struct mc_worker *w, struct mc_session *s, const uint8_t *in,
		  size_t len, struct mc_out *out);

/* The most input one request may need (its line and the largest data
 * block the engine stores): the bound of a connection's input buffer. */
size_t mc_request_max(const struct mc_worker *w);

#endif
