/*
 * mc_loop_uring.c - a memcached serving thread's event loop on io_uring
 * (one ring per thread).
 *
 * In flight at any time: one accept per listener, one poll on the
 * thread's stop eventfd, one timeout (the tick), and per connection at
 * most one recv and one send.  Every completion is dispatched from one
 * switch to a small handler.  user_data packs what a completion belongs
 * to (uring_util.h): its kind (enum ev); the connection slot and its
 * generation (EV_RECV, EV_SEND) or the listener (EV_ACCEPT).
 *
 * A connection is released only when nothing of it is in flight: closing
 * shuts the socket down, which completes its pending recv.  So does the
 * stop: every socket is shut down, the accepts are cancelled, and the
 * loop runs until the last connection is released and the last accept
 * completed, so that the kernel never writes into a buffer already freed
 * and no listener outlives the daemon (the ring's own teardown cancels
 * asynchronously).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "uring_util.h"
#include "mc_serve.h"

enum ev { EV_ACCEPT = 1, EV_RECV, EV_SEND, EV_TICK, EV_STOP };

struct uloop {
	struct io_uring ring;
	struct mc_thread *t;
	struct __kernel_timespec tick;
	bool accept_armed[MC_LISTEN_MAX];
	bool accept_paused; /* out of fds: retry on the next tick */
	unsigned stop_ticks;
};

static struct io_uring_sqe *sqe_get(struct uloop *l)
{
	return uring_sqe(&l->ring);
}

static void arm_accept(struct uloop *l, uint32_t i)
{
	if (l->accept_armed[i] || l->accept_paused || l->t->stop)
		return;
	struct io_uring_sqe *sqe = sqe_get(l);
	if (!sqe)
		return;
	io_uring_prep_accept(sqe, l->t->srv->ls[i].fd, NULL, NULL,
			     SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, uring_ud(EV_ACCEPT, i, 0));
	l->accept_armed[i] = true;
}

static void arm_tick(struct uloop *l)
{
	uring_arm_tick(&l->ring, &l->tick, MC_TICK_MS, uring_ud(EV_TICK, 0, 0));
}

static void arm_stop(struct uloop *l)
{
	struct io_uring_sqe *sqe = sqe_get(l);

	if (!sqe)
		return;
	io_uring_prep_poll_add(sqe, l->t->stop_fd, POLLIN);
	io_uring_sqe_set_data64(sqe, uring_ud(EV_STOP, 0, 0));
}

/* Arms what a connection needs next, or releases it when it is done. */
static void settle(struct uloop *l, struct mc_conn *c)
{
	struct mc_thread *t = l->t;

	if (!c->send_armed && !c->recv_armed)
		mc_conn_input(t, c);
	if (mc_conn_pending(c) && !c->send_armed) {
		struct io_uring_sqe *sqe = sqe_get(l);
		if (sqe) {
			io_uring_prep_send(sqe, c->fd, c->out.p + c->out_off,
					   mc_conn_pending(c), MSG_NOSIGNAL);
			io_uring_sqe_set_data64(sqe, uring_ud(EV_SEND, c->slot,
							      c->gen));
			c->send_armed = true;
			c->inflight++;
		}
	}
	if (c->closing) {
		/* Done sending what was queued (or dropped it): end the
		 * pending recv, and a send the peer does not read. */
		if (!mc_conn_pending(c) && (c->recv_armed || c->send_armed))
			shutdown(c->fd, SHUT_RDWR);
		if (c->inflight == 0)
			mc_conn_release(t, c);
		return;
	}
	if (!c->recv_armed) {
		size_t room = mc_conn_room(t, c);
		struct io_uring_sqe *sqe = room ? sqe_get(l) : NULL;
		if (sqe) {
			io_uring_prep_recv(sqe, c->fd, c->in + c->in_len, room,
					   0);
			io_uring_sqe_set_data64(sqe, uring_ud(EV_RECV, c->slot,
							      c->gen));
			c->recv_armed = true;
			c->inflight++;
		} else if (c->closing && c->inflight == 0) {
			mc_conn_release(t, c); /* the room check closed it */
		}
	}
}

/* ------------------------------------------------------------------------
 * Completion handlers
 * ------------------------------------------------------------------------ */

static void on_accept(struct uloop *l, uint32_t i, int res)
{
	struct mc_thread *t = l->t;

	l->accept_armed[i] = false;
	if (res >= 0 && t->stop) {
		close(res);
		return;
	}
	if (res >= 0) {
		struct mc_conn *c = mc_conn_accept(t, res, &t->srv->ls[i]);
		if (c)
			settle(l, c);
	} else if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS ||
		   res == -ENOMEM) {
		/* Out of descriptors: keep serving, retry on the next tick. */
		log_warn("memcached: accept on %s: %s; connections wait",
			 t->srv->ls[i].name, strerror(-res));
		l->accept_paused = true;
	} else if (res != -EINTR && res != -ECONNABORTED && res != -EAGAIN &&
		   res != -ECANCELED) {
		log_warn("memcached: accept on %s: %s", t->srv->ls[i].name,
			 strerror(-res));
	}
	arm_accept(l, i);
}

static void on_recv(struct uloop *l, struct mc_conn *c, int res)
{
	c->recv_armed = false;
	c->inflight--;
	if (res > 0 && !c->closing) {
		mc_conn_received(l->t, c, (size_t)res);
	} else if (res == 0 || (res < 0 && res != -EINTR && res != -EAGAIN)) {
		/* The peer is gone: nothing queued can be delivered. */
		mc_conn_drop(c);
	}
	settle(l, c);
}

static void on_send(struct uloop *l, struct mc_conn *c, int res)
{
	c->send_armed = false;
	c->inflight--;
	if (res > 0)
		mc_conn_sent(l->t, c, (size_t)res);
	else if (res != -EINTR && res != -EAGAIN)
		mc_conn_drop(c);
	settle(l, c);
}

static void on_tick(struct uloop *l)
{
	struct mc_thread *t = l->t;

	mc_thread_tick(t, clock_mono_ms());
	for (uint32_t i = 0; i < t->srv->max_conns; i++)
		if (t->conns[i] && t->conns[i]->closing)
			settle(l, t->conns[i]);
	if (l->accept_paused) {
		l->accept_paused = false;
		for (uint32_t i = 0; i < t->srv->nls; i++)
			arm_accept(l, i);
	}
	arm_tick(l);
}

/* The thread must stop: every connection is shut down (its operations
 * complete and it is released), accepting ends. */
static void begin_stop(struct uloop *l)
{
	struct mc_thread *t = l->t;

	t->stop = true;
	for (uint32_t i = 0; i < t->srv->max_conns; i++) {
		struct mc_conn *c = t->conns[i];
		if (!c)
			continue;
		mc_conn_drop(c);
		shutdown(c->fd, SHUT_RDWR);
		settle(l, c);
	}
	for (uint32_t i = 0; i < t->srv->nls; i++) {
		struct io_uring_sqe *sqe = l->accept_armed[i] ? sqe_get(l)
							      : NULL;
		if (sqe) {
			io_uring_prep_cancel64(sqe, uring_ud(EV_ACCEPT, i, 0),
					       0);
			io_uring_sqe_set_data64(sqe, 0);
		}
	}
}

static void dispatch(void *arg, uint64_t ud, int res)
{
	struct uloop *l = arg;
	struct mc_thread *t = l->t;
	enum ev kind = (enum ev)uring_ud_kind(ud);
	uint32_t slot = uring_ud_slot(ud), gen = uring_ud_gen(ud);
	struct mc_conn *c = NULL;

	if (kind == 0)
		return; /* a cancel's own completion */
	if (kind == EV_RECV || kind == EV_SEND) {
		if (slot >= t->srv->max_conns || !t->conns[slot] ||
		    t->conns[slot]->gen != gen)
			return; /* stale: cannot happen while inflight counts */
		c = t->conns[slot];
	}
	switch (kind) {
	case EV_ACCEPT:
		if (slot < t->srv->nls)
			on_accept(l, slot, res);
		break;
	case EV_RECV:
		on_recv(l, c, res);
		break;
	case EV_SEND:
		on_send(l, c, res);
		break;
	case EV_TICK:
		if (!t->stop) {
			on_tick(l);
		} else if (++l->stop_ticks < 50) {
			arm_tick(l);
		} else {
			/* Left to the process's exit: never freed under the
			 * kernel. */
			log_warn("memcached thread %u: %u connection(s) did "
				 "not close in time",
				 t->w.index, t->nconns);
			t->abandon = true;
		}
		break;
	case EV_STOP:
		begin_stop(l);
		break;
	}
}

/* Whether an accept is in flight: it holds its listener open, and a TCP
 * port stays taken (a restart could not bind it) until it completes. */
static bool accepts_armed(const struct uloop *l)
{
	for (uint32_t i = 0; i < l->t->srv->nls; i++)
		if (l->accept_armed[i])
			return true;
	return false;
}

int mc_loop_uring_run(struct mc_thread *t)
{
	struct uloop *l = calloc(1, sizeof(*l));
	int rc;

	if (!l)
		return -ENOMEM;
	l->t = t;
	/* Completions are run by this thread when it enters the ring, not by
	 * task work that interrupts it at every incoming request: that
	 * interruption cost socket clients about 40 % more CPU per request
	 * (docs/BENCHMARKS.md, "memcached's protocol").  Older kernels lack
	 * the flags (-EINVAL): the next weaker setup is taken. */
	static const unsigned setups[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	for (size_t i = 0; i < sizeof(setups) / sizeof(setups[0]); i++)
		if ((rc = io_uring_queue_init(256, &l->ring, setups[i])) !=
		    -EINVAL)
			break;
	if (rc < 0) {
		free(l);
		return rc;
	}
	log_info("memcached thread %u: event loop io_uring", t->w.index);

	for (uint32_t i = 0; i < t->srv->nls; i++)
		arm_accept(l, i);
	arm_tick(l);
	arm_stop(l);
	mc_thread_ready(t);
	rc = 0;
	while ((!t->stop || t->nconns || accepts_armed(l)) && !t->abandon) {
		if ((rc = uring_turn(&l->ring, dispatch, l)) < 0) {
			log_error("memcached thread %u: io_uring_submit_and_"
				  "wait: %s",
				  t->w.index, strerror(-rc));
			break;
		}
	}
	/* The ring goes first: its in-flight operations die with it, then the
	 * caller releases the connections. */
	io_uring_queue_exit(&l->ring);
	free(l);
	return rc;
}
