/*
 * mc_serve.h - serving memcached's protocols on sockets: what the server
 * (mc_serve.c) and its two event loops (mc_loop_uring.c, mc_loop_epoll.c)
 * share.  The protocol itself is mc.h's; the daemon sees only the three
 * calls in daemon.h (mc_serve_open, mc_serve_start, mc_serve_stop).
 *
 * Threads: --threads serving threads, each with its own event loop, its
 * own struct mc_worker and its own table of connections; every thread
 * accepts from every listener.  A connection belongs to the thread that
 * accepted it, for its whole life.  What threads share is the struct
 * mc_server, read-only while they run except `nconns` (atomic).
 *
 * A connection's buffers, and why they stay bounded:
 *   in   received bytes not yet consumed by mc_process(), from offset 0.
 *        MC_IN_INITIAL bytes, grown to what an incomplete request needs
 *        (s.need, never more than mc_request_max() + 1), given back once
 *        a large request is consumed.
 *   out  replies, [out_off, out.len) not yet sent.  While MC_OUT_HIGH
 *        bytes or more are unsent, nothing more is read from the peer and
 *        no new request is run (back-pressure); a buffer a large reply
 *        grew is freed once it is sent.
 * Input is run only while neither a receive nor a send of the connection
 * is in flight (io_uring): mc_process() may move `out`, and consumed input
 * is moved to the front of `in`.
 */
#ifndef SHMC_MC_SERVE_H
#define SHMC_MC_SERVE_H

#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "mc.h"
#include "sysd.h"

#define MC_IN_INITIAL (16u << 10)
#define MC_OUT_HIGH (1u << 20)	/* stop reading while this much is unsent */
#define MC_OUT_KEEP (64u << 10) /* a larger drained output buffer is freed */
#define MC_BACKLOG 1024		/* listen(2) backlog, memcached's */
#define MC_TICK_MS 100		/* mc_worker_tick(), idle timeouts */
#define MC_LINGER_MS 2000	/* a refused connection waits for its peer */
#define MC_LISTEN_MAX (CONFIG_MC_LISTEN_MAX + SYSD_MC_FDS_MAX)

struct daemon;

/* One memcached listener. */
struct mc_listener {
	int fd;
	int lock_fd;	/* PATH.lock of a Unix socket we made, else -1 */
	bool is_unix;	/* peers are checked (SO_PEERCRED, allow lists) */
	char path[108]; /* a Unix socket we made: removed at stop */
	char name[112]; /* for messages: the path or HOST:PORT */
};

/* One connection. */
struct mc_conn {
	int fd;
	uint32_t slot, gen;
	bool is_unix;
	bool refused;	  /* gets one error line; its input is discarded */
	bool closing;	  /* close once out is sent (or at once: dropped) */
	bool unprocessed; /* in holds bytes mc_process() has not run */
	bool recv_armed, send_armed; /* io_uring operations in flight */
	unsigned inflight;
	uint64_t active_ms; /* monotonic ms of the last byte in or out */
	uint64_t since_ms;  /* monotonic ms, accepted */
	struct mc_session s;
	uint8_t *in;
	size_t in_len, in_cap;
	struct mc_out out;
	size_t out_off;
};

/* One serving thread. */
struct mc_thread {
	struct mc_server *srv;
	struct mc_worker w;
	pthread_t tid;
	bool running; /* tid is a thread to join */
	bool set_up;  /* its loop runs: mc_thread_ready() was called */
	int setup_rc; /* 0, or why no loop could be set up */
	int stop_fd;  /* eventfd: readable when the thread must stop */
	bool stop;
	bool abandon; /* connections the kernel may still use: not freed */
	struct mc_conn **conns; /* [srv->max_conns], NULL when free */
	uint32_t *gens;		/* per slot, bumped at each reuse */
	uint32_t nconns, next_slot;
	uint64_t next_tick_ms;
	uint64_t last_warning_ms; /* rate limit of accept warnings */
};

struct mc_server {
	struct daemon *d;
	struct mc_shared sh;
	struct mc_listener ls[MC_LISTEN_MAX];
	uint32_t nls;
	struct mc_thread *threads;
	uint32_t nthreads;
	uint32_t max_conns;
	uint32_t nconns;  /* atomic: open connections, all threads */
	uint64_t idle_ms; /* --memcached-idle-timeout, 0 never */
	sem_t ready;	  /* posted once by each thread: loop set up or not */
	bool sem_ok;	  /* ready was initialised */
	size_t in_max;	  /* the input bound: mc_request_max() + 1 */
};

/* Connections (mc_serve.c) --------------------------------------------- */

/* Takes an accepted socket from listener l: counts it, refuses it (one
 * "SERVER_ERROR ..." line, then closed) over --memcached-max-conns, when
 * its peer is not allowed (Unix sockets) or memory is short.  Returns
 * the connection (a refused one too: it lingers until its line is read,
 * see `refused`) or NULL (closed). */
struct mc_conn *mc_conn_accept(struct mc_thread *t, int fd,
			       const struct mc_listener *l);

/* Room at c->in + c->in_len for the next receive, growing the buffer for
 * the request it holds; 0 when reading must pause (back-pressure, input
 * not yet run, closing). */
size_t mc_conn_room(struct mc_thread *t, struct mc_conn *c);

/* n bytes were received at c->in + c->in_len. */
void mc_conn_received(struct mc_thread *t, struct mc_conn *c, size_t n);

/* Runs the input mc_process() has not run, as far as back-pressure lets
 * it.  Only while no receive or send of c is in flight. */
void mc_conn_input(struct mc_thread *t, struct mc_conn *c);

/* Unsent output, from c->out.p + c->out_off. */
static inline size_t mc_conn_pending(const struct mc_conn *c)
{
	return c->out.len - c->out_off;
}

/* n bytes of output were sent. */
void mc_conn_sent(struct mc_thread *t, struct mc_conn *c, size_t n);

/* The peer is gone or the socket failed: close without sending. */
void mc_conn_drop(struct mc_conn *c);

/* Ends the connection: mc_session_end(), close, free, the slot freed. */
void mc_conn_release(struct mc_thread *t, struct mc_conn *c);

/* Every MC_TICK_MS: mc_worker_tick(), idle connections marked closing. */
void mc_thread_tick(struct mc_thread *t, uint64_t now_ms);

/* Loops ------------------------------------------------------------------ */

/* A loop calls it once it is set up and about to wait for events:
 * mc_serve_start() waits for every thread's, so the daemon reports READY=1
 * with every thread serving. */
void mc_thread_ready(struct mc_thread *t);

/* Runs t until t->stop.  Returns 0, or -errno when the loop cannot be set
 * up (the uring loop's -ENOSYS/-EPERM/-EACCES/-ENOMEM: use epoll).  The
 * caller releases the connections left. */
int mc_loop_uring_run(struct mc_thread *t);
int mc_loop_epoll_run(struct mc_thread *t);

#endif
