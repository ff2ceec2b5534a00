/*
 * daemon.h - the state of a running shmcached, shared by its modules:
 * the region and the engine attachment, the listening socket, and the
 * table of client connections.
 *
 * Module map:
 *   main.c        start-up and shutdown
 *   config.c      command line and config file
 *   region.c      create / adopt / map the shared-memory region
 *   listen.c      the control socket (own or from systemd), peer checks
 *   sysd.c        sd_notify and LISTEN_FDS, without libsystemd
 *   conn.c        a connection's buffers, frames and liveness
 *   handlers.c    one function per request type
 *   job.c         SAVE and LOAD on a thread of their own
 *   persist.c     snapshot files: the --snapshot hooks, SAVE and LOAD
 *                 requests, a failed file moved aside; its parts:
 *   persist_io.c  the file I/O layer (io_uring, pread/pwrite, O_DIRECT)
 *   persist_save.c, persist_load.c   writing and reading a snapshot
 *   snapshot.c    the snapshot file format (docs/SNAPSHOT.md)
 *   loop_uring.c  the io_uring event loop
 *   loop_epoll.c  the epoll fallback
 *   mc_serve.c    memcached's protocols on sockets (--memcached): the
 *                 listeners, the serving threads and their connections
 *                 (mc_serve.h); their event loops mc_loop_uring.c and
 *                 mc_loop_epoll.c; the protocol itself is mc.h's
 *   redis.c       --redis: the near cache's tracking thread, over the
 *                 RESP3 reader resp.c (docs/NEARCACHE.md)
 *   log.c         leveled logging to stderr or a file
 */
#ifndef SHMC_DAEMON_H
#define SHMC_DAEMON_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/socket.h>

#include "clients.h"
#include "clock.h"
#include "config.h"
#include "engine.h"
#include "redis.h"
#include "sysd.h"

#define DAEMON_CLIENT_ID 1u /* the daemon's own lock identity */
#define CONN_IN_INITIAL (16u << 10)
#define CONN_OUT_HIGH (1u << 20)      /* stop reading while more is unsent */
#define CONN_PARTIAL_TIMEOUT_MS 10000 /* half a frame that long: dropped */
#define DAEMON_TICK_MS 100
#define DAEMON_LOCK_TIMEOUT_MS 50 /* the loop never waits longer */

struct job_reply;
struct mc_server;
struct redis_track;

/* One client connection. */
struct conn {
	int fd;		    /* -1 when the slot is free */
	uint32_t gen;	    /* bumped when the slot is reused */
	uint32_t client_id; /* 0 until HELLO */
	pid_t pid;
	uint64_t start; /* the peer's start word (clients.h) */
	uid_t uid;
	gid_t gid;
	uint64_t since;		/* unix seconds, connect time */
	uint64_t accepted_ms;	/* monotonic ms, connect time */
	uint64_t partial_since; /* monotonic ms a partial frame is pending */

	uint8_t *in; /* received, unprocessed bytes */
	size_t in_len, in_cap;
	uint8_t *out; /* replies not yet sent: [out_off, out_len) */
	size_t out_off, out_len, out_cap;
	int pass_fd; /* fd to send with the next byte of out */

	bool closing;		 /* close once out is flushed */
	bool bye;		 /* the client said BYE: its id is done */
	bool waiting;		 /* its SAVE or LOAD runs (job.c): frames
				   behind it wait unparsed */
	struct job_reply *reply; /* that request's result, until sent */
	unsigned inflight;	 /* io_uring operations in flight */
	bool recv_armed, send_armed;

	/* Kept here for sendmsg: valid while a send is in flight. */
	struct msghdr msg;
	struct iovec iov;
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cmsg;
};

struct daemon {
	struct config cfg;
	struct eng eng;
	struct clients clients; /* the book of clients (clients.h) */
	int region_fd;
	void *region_base;
	size_t region_size;

	struct sysd_fds sd; /* what systemd passed, if anything */
	int listen_fd;
	bool listen_from_systemd;
	int signal_fd;
	int job_fd; /* eventfd: the background job is done */

	struct mc_server *mc; /* memcached serving, NULL without listeners */
	struct redis_track *redis;   /* --redis tracking (redis.h), or NULL */
	pthread_mutex_t redis_lock;  /* guards redis_st */
	struct redis_stats redis_st; /* written by the tracking thread */
	/* Taken by every writer of the region's namespace table in the
	 * daemon (eng_ns_add/flush/del/block: the engine assumes one writer
	 * at a time): the loop's NS_* requests and the redis thread. */
	pthread_mutex_t ns_lock;

	struct conn *conns; /* cfg.max_clients slots */
	uint32_t nconns;
	uint64_t started;   /* unix seconds */
	uint32_t sweep_seg; /* next segment for the expiry sweep */
	uint64_t ticks;
	uint64_t full_sweep_tick; /* last tick a full table made HELLO sweep,
				     plus one (0: never) */
	bool stop;		  /* set by SIGTERM/SIGINT or SHUTDOWN */
	bool reopen_log;	  /* set by SIGHUP */
};

/* conn.c ------------------------------------------------------------------ */

/* Takes a freshly accepted socket: checks the peer, finds a slot.  Returns
 * the connection, or NULL (fd closed) when no slot is free or allocation
 * fails.  A refused peer gets a connection in `closing` state holding an
 * error frame. */
struct conn *conn_accept(struct daemon *d, int fd);

/* n bytes were appended to c->in: parses and answers every complete frame,
 * as far as the output high-water mark allows. */
void conn_input(struct daemon *d, struct conn *c);

/* Answers requests that input left waiting (replies piled up, or a send
 * was in flight): call after output was sent, before arming the next send,
 * until it consumes nothing.  Pipelined frames already received would
 * otherwise wait for bytes the peer never sends. */
void conn_resume(struct daemon *d, struct conn *c);

/* True when c->in holds a complete frame not yet answered (or a header
 * that conn_input() will refuse): the uring loop arms no recv then, see
 * loop_uring.c. */
bool conn_frame_ready(const struct conn *c);

/* Room at the end of c->in for the next receive (grows the buffer when a
 * large frame is announced); 0 when input should pause. */
size_t conn_in_room(struct daemon *d, struct conn *c);

/* Whether a peer (from SO_PEERCRED) may connect: root, the daemon's own
 * user, or one the allow lists name (by uid, or by primary or
 * supplementary group).  Thread-safe. */
bool conn_peer_allowed(const struct config *cfg, uid_t uid, gid_t gid);

/* Releases the slot: recovers locks the client held, frees buffers. */
void conn_release(struct daemon *d, struct conn *c);

/* Per tick: connections stuck on half a frame are marked closing. */
void conn_tick(struct daemon *d, uint64_t now_ms);

/* Replies.  An error frame carries -errno and a message.  A reply body is
 * either given whole (conn_reply) or written in place: conn_reply_start()
 * reserves `max` body bytes in the output buffer and sets up w over them,
 * conn_reply_finish() writes the header (or an error frame if the body
 * overflowed).  Out of memory marks the connection closing. */
struct proto_w;
void conn_reply_error(struct conn *c, uint32_t id, int err, const char *msg);
void conn_reply(struct conn *c, uint16_t req_type, uint32_t id,
		const void *body, size_t len);
void conn_reply_start(struct conn *c, struct proto_w *w, size_t max);
void conn_reply_finish(struct conn *c, struct proto_w *w, uint16_t req_type,
		       uint32_t id);

/* How much output is pending. */
static inline size_t conn_out_pending(const struct conn *c)
{
	return c->out_len - c->out_off;
}

/* Marks n output bytes as sent; resets the buffer when all are. */
void conn_sent(struct conn *c, size_t n);

/* Prepares c->msg/c->iov (and the fd, if any) for the next send. */
void conn_prepare_send(struct conn *c);

/* handlers.c --------------------------------------------------------------- */

/* Answers one request frame (header already validated). */
void handle_request(struct daemon *d, struct conn *c, uint16_t type,
		    uint32_t id, const uint8_t *body, uint32_t len);

/* job.c ------------------------------------------------------------------ */

/* Creates d->job_fd.  Returns 0 or -errno. */
int job_init(struct daemon *d);

/* Runs a SAVE (load false) or LOAD (with PROTO_LOAD_* flags) of `path` for
 * request `id` of c on a thread, and marks c waiting.  Returns 0, -EBUSY while another one runs,
 * or -errno when no thread can be started (c then gets no reply from here:
 * the caller answers). */
int job_start(struct daemon *d, struct conn *c, uint32_t id, bool load,
	      uint32_t flags, const char *path);

/* For conn_resume(): if c's job result is in, queues its reply, clears
 * c->waiting and returns true. */
bool job_deliver(struct daemon *d, struct conn *c);

/* d->job_fd is readable: joins the finished thread and returns the
 * connection to settle (its result is in, for job_deliver), or NULL. */
struct conn *job_reap(struct daemon *d);

/* At shutdown (or in a harness): waits for the running job, if any, and
 * queues its reply; returns the connection that got it, or NULL. */
struct conn *job_finish(struct daemon *d);

/* main.c ---------------------------------------------------------------- */

/* Background work, every DAEMON_TICK_MS: clock, expiry sweep, timeouts. */
void daemon_tick(struct daemon *d);

/* A signal arrived (from the signal fd). */
void daemon_signal(struct daemon *d, int signo);

/* Loops ------------------------------------------------------------------- */

/* Runs until d->stop.  Returns 0, or -errno when the loop cannot be set up
 * (the uring loop's -ENOSYS/-EPERM means: fall back to epoll). */
int loop_uring_run(struct daemon *d);
int loop_epoll_run(struct daemon *d);

/* mc_serve.c ------------------------------------------------------------- */

/* Opens the memcached listeners: --memcached's, and the descriptors
 * systemd passed named "memcached" (d->sd).  Sets d->mc (NULL when there
 * are none).  Returns 0, or -errno with a one-line reason in err (nothing
 * left open). */
int mc_serve_open(struct daemon *d, char *err, size_t errlen);

/* Starts the --threads serving threads over the region d->eng attaches
 * (no-op without listeners).  Returns 0, or -errno with a reason in err
 * (then everything mc_serve_open() opened is closed). */
int mc_serve_start(struct daemon *d, char *err, size_t errlen);

/* Stops and joins the threads (their connections closed), closes the
 * listeners and removes the Unix socket files the daemon made.  No-op
 * when nothing was opened. */
void mc_serve_stop(struct daemon *d);

/* memcached connections open now, all threads. */
uint32_t mc_serve_conns(const struct daemon *d);

/* What frees the namespace table (-ENOSPC from eng_ns_add()), for the
 * messages of NS_ADD and of --namespace at start. */
#define NS_FULL_HOW                                                            \
	"an unregistered prefix keeps its slot (registering it again takes "   \
	"it back); only a new region empties the table: cachectl save FILE, "  \
	"stop the daemon, then start it with another --name (or after "        \
	"removing the region's /dev/shm file) and --snapshot FILE"

#endif
