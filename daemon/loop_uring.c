/*
 * loop_uring.c - the daemon's event loop on io_uring (liburing).
 *
 * In flight at any time: one accept on the listening socket, one read on
 * the signalfd, one poll on the job eventfd, one timeout (the tick), and
 * per connection at most one recv and one sendmsg.  Every completion is
 * dispatched from one switch to a small handler.  user_data packs what a
 * completion belongs to (uring_util.h): its kind (enum ev), and for
 * EV_RECV / EV_SEND the connection slot and its generation.
 *
 * A connection is released only when nothing of it is in flight: closing
 * shuts the socket down, which completes its pending recv.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "uring_util.h"

enum ev { EV_ACCEPT = 1, EV_RECV, EV_SEND, EV_TICK, EV_SIGNAL, EV_JOB };

struct uloop {
	struct io_uring ring;
	struct daemon *d;
	struct __kernel_timespec tick;
	struct signalfd_siginfo si;
	bool accept_armed;
	bool accept_paused; /* out of fds: retry on the next tick */
	uint64_t last_fd_warning;
};

static struct io_uring_sqe *sqe_get(struct uloop *l)
{
	return uring_sqe(&l->ring);
}

static void arm_accept(struct uloop *l)
{
	if (l->accept_armed || l->accept_paused || l->d->stop)
		return;
	struct io_uring_sqe *sqe = sqe_get(l);
	if (!sqe)
		return;
	io_uring_prep_accept(sqe, l->d->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, uring_ud(EV_ACCEPT, 0, 0));
	l->accept_armed = true;
}

static void arm_tick(struct uloop *l)
{
	uring_arm_tick(&l->ring, &l->tick, DAEMON_TICK_MS,
		       uring_ud(EV_TICK, 0, 0));
}

static void arm_signal(struct uloop *l)
{
	struct io_uring_sqe *sqe = sqe_get(l);

	if (!sqe)
		return;
	io_uring_prep_read(sqe, l->d->signal_fd, &l->si, sizeof(l->si), 0);
	io_uring_sqe_set_data64(sqe, uring_ud(EV_SIGNAL, 0, 0));
}

static void arm_job(struct uloop *l)
{
	struct io_uring_sqe *sqe = sqe_get(l);

	if (!sqe)
		return;
	io_uring_prep_poll_add(sqe, l->d->job_fd, POLLIN);
	io_uring_sqe_set_data64(sqe, uring_ud(EV_JOB, 0, 0));
}

/* Arms what a connection needs next, or releases it when it is done. */
static void settle(struct uloop *l, struct conn *c)
{
	struct daemon *d = l->d;
	uint32_t slot = (uint32_t)(c - d->conns);

	if (!c->send_armed)
		conn_resume(d, c);
	if (conn_out_pending(c) && !c->send_armed) {
		struct io_uring_sqe *sqe = sqe_get(l);
		if (sqe) {
			conn_prepare_send(c);
			io_uring_prep_sendmsg(sqe, c->fd, &c->msg,
					      MSG_NOSIGNAL);
			io_uring_sqe_set_data64(sqe, uring_ud(EV_SEND, slot,
							      c->gen));
			c->send_armed = true;
			c->inflight++;
		}
	}
	if (c->closing) {
		/* Done sending what was queued: end the pending recv. */
		if (!conn_out_pending(c) && c->recv_armed)
			shutdown(c->fd, SHUT_RDWR);
		if (c->inflight == 0)
			conn_release(d, c);
		return;
	}
	if (!c->recv_armed) {
		size_t room = conn_in_room(d, c);
		struct io_uring_sqe *sqe = room ? sqe_get(l) : NULL;
		if (sqe) {
			io_uring_prep_recv(sqe, c->fd, c->in + c->in_len, room,
					   0);
			io_uring_sqe_set_data64(sqe, uring_ud(EV_RECV, slot,
							      c->gen));
			c->recv_armed = true;
			c->inflight++;
		}
	}
}

/* ------------------------------------------------------------------------
 * Completion handlers
 * ------------------------------------------------------------------------ */

static void on_accept(struct uloop *l, int res)
{
	l->accept_armed = false;
	if (res >= 0) {
		struct conn *c = conn_accept(l->d, res);
		if (c)
			settle(l, c);
	} else if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS ||
		   res == -ENOMEM) {
		/* Out of descriptors: keep serving, retry on the next tick. */
		uint64_t now = clock_mono_ms();
		if (now - l->last_fd_warning > 10000) {
			log_warn("accept: %s; connections wait",
				 strerror(-res));
			l->last_fd_warning = now;
		}
		l->accept_paused = true;
	} else if (res != -EINTR && res != -ECONNABORTED && res != -EAGAIN) {
		log_warn("accept: %s", strerror(-res));
	}
	arm_accept(l);
}

static void on_recv(struct uloop *l, struct conn *c, int res)
{
	c->recv_armed = false;
	c->inflight--;
	if (res > 0 && !c->closing) {
		c->in_len += (size_t)res;
		/* Replies are appended to c->out, which may move: never while
		 * the kernel sends from it.  The send's completion resumes. */
		if (!c->send_armed)
			conn_input(l->d, c);
	} else if (res == 0 || (res < 0 && res != -EINTR && res != -EAGAIN)) {
		/* The peer is gone: nothing queued can be delivered. */
		c->closing = true;
		c->out_off = c->out_len = 0;
		c->pass_fd = -1;
	}
	settle(l, c);
}

static void on_send(struct uloop *l, struct conn *c, int res)
{
	c->send_armed = false;
	c->inflight--;
	if (res > 0) {
		conn_sent(c, (size_t)res);
	} else if (res != -EINTR && res != -EAGAIN) {
		c->closing = true;
		c->out_off = c->out_len = 0;
	}
	settle(l, c);
}

static void on_tick(struct uloop *l)
{
	struct daemon *d = l->d;

	daemon_tick(d);
	for (uint32_t i = 0; i < d->cfg.max_clients; i++)
		if (d->conns[i].fd >= 0 && d->conns[i].closing)
			settle(l, &d->conns[i]);
	if (l->accept_paused) {
		l->accept_paused = false;
		arm_accept(l);
	}
	arm_tick(l);
}

static void on_signal(struct uloop *l, int res)
{
	if (res == (int)sizeof(l->si))
		daemon_signal(l->d, (int)l->si.ssi_signo);
	arm_signal(l);
}

/* The SAVE or LOAD thread is done: its connection gets the reply. */
static void on_job(struct uloop *l)
{
	struct conn *c = job_reap(l->d);

	if (c)
		settle(l, c);
	arm_job(l);
}

static void dispatch(void *arg, uint64_t ud, int res)
{
	struct uloop *l = arg;
	struct daemon *d = l->d;
	enum ev kind = (enum ev)uring_ud_kind(ud);
	uint32_t slot = uring_ud_slot(ud), gen = uring_ud_gen(ud);
	struct conn *c = NULL;

	if (kind == EV_RECV || kind == EV_SEND) {
		if (slot >= d->cfg.max_clients || d->conns[slot].fd < 0 ||
		    d->conns[slot].gen != gen)
			return; /* stale: cannot happen while inflight counts */
		c = &d->conns[slot];
	}
	switch (kind) {
	case EV_ACCEPT:
		on_accept(l, res);
		break;
	case EV_RECV:
		on_recv(l, c, res);
		break;
	case EV_SEND:
		on_send(l, c, res);
		break;
	case EV_TICK:
		on_tick(l);
		break;
	case EV_SIGNAL:
		on_signal(l, res);
		break;
	case EV_JOB:
		on_job(l);
		break;
	}
}

int loop_uring_run(struct daemon *d)
{
	static struct uloop l;
	int rc;

	memset(&l, 0, sizeof(l));
	l.d = d;
	if ((rc = io_uring_queue_init(512, &l.ring, 0)) < 0)
		return rc;
	log_info("event loop: io_uring");

	arm_accept(&l);
	arm_tick(&l);
	arm_signal(&l);
	arm_job(&l);
	rc = 0;
	while (!d->stop) {
		if ((rc = uring_turn(&l.ring, dispatch, &l)) < 0) {
			log_error("io_uring_submit_and_wait: %s",
				  strerror(-rc));
			break;
		}
	}
	/* The ring goes first: its in-flight operations die with it, then the
	 * connections are released by the caller. */
	io_uring_queue_exit(&l.ring);
	return rc;
}
