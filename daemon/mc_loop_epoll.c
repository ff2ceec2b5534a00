/*
 * mc_loop_epoll.c - a memcached serving thread's event loop on epoll, for
 * --epoll and hosts where io_uring cannot be set up (one epoll instance
 * per thread).
 *
 * Non-blocking sockets, level-triggered epoll.  Every thread registers
 * every listener with EPOLLEXCLUSIVE, so a new connection wakes one thread
 * (or a few), not all of them; the others find nothing to accept.  Each
 * connection is registered for input while it may read (mc_conn_room() >
 * 0) and for output while replies are pending.  epoll_event.data.u64
 * holds the slot and its generation as in mc_loop_uring.c, or one of the
 * fixed ids below.
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "mc_serve.h"

#define ID_STOP UINT64_MAX
#define ID_LISTEN_BASE (UINT64_MAX - 1 - MC_LISTEN_MAX) /* + listener */

static uint64_t id_of(const struct mc_conn *c)
{
	return (uint64_t)c->slot | (uint64_t)c->gen << 32;
}

/* Sends what is pending without blocking. */
static void flush(struct mc_thread *t, struct mc_conn *c)
{
	while (mc_conn_pending(c)) {
		ssize_t n = send(c->fd, c->out.p + c->out_off,
				 mc_conn_pending(c),
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			mc_conn_sent(t, c, (size_t)n);
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		mc_conn_drop(c); /* peer gone */
		return;
	}
}

/* Re-registers interest, or releases the connection when it is done. */
static void settle(int ep, struct mc_thread *t, struct mc_conn *c)
{
	/* Send, and run what input left waiting, until neither moves. */
	for (;;) {
		flush(t, c);
		size_t before = c->in_len;
		mc_conn_input(t, c);
		if (c->in_len == before)
			break;
	}
	size_t room = mc_conn_room(t, c);
	if (c->closing && !mc_conn_pending(c)) {
		epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
		mc_conn_release(t, c);
		return;
	}
	struct epoll_event ev = { .data.u64 = id_of(c) };
	if (room)
		ev.events |= EPOLLIN;
	if (mc_conn_pending(c))
		ev.events |= EPOLLOUT;
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void on_event(int ep, struct mc_thread *t, struct mc_conn *c,
		     uint32_t events)
{
	size_t room = mc_conn_room(t, c);

	if (!room && (events & (EPOLLHUP | EPOLLERR)) && !(events & EPOLLOUT)) {
		/* Not reading and the peer is gone: a level-triggered HUP
		 * would spin. */
		mc_conn_drop(c);
	} else if (room && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
		ssize_t n = recv(c->fd, c->in + c->in_len, room, MSG_DONTWAIT);
		if (n > 0)
			mc_conn_received(t, c, (size_t)n);
		else if (n == 0 || (errno != EAGAIN && errno != EINTR))
			mc_conn_drop(c);
	}
	settle(ep, t, c);
}

static void on_accept(int ep, struct mc_thread *t, uint32_t i)
{
	const struct mc_listener *l = &t->srv->ls[i];

	for (int k = 0; k < 64; k++) {
		int fd = accept4(l->fd, NULL, NULL,
				 SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				log_warn("memcached: accept on %s: %s; "
					 "connections wait",
					 l->name, strerror(errno));
				/* Not listening until the next tick. */
				epoll_ctl(ep, EPOLL_CTL_DEL, l->fd, NULL);
			}
			return;
		}
		struct mc_conn *c = mc_conn_accept(t, fd, l);
		if (!c)
			continue;
		struct epoll_event ev = { .events = EPOLLIN,
					  .data.u64 = id_of(c) };
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
		settle(ep, t, c);
	}
}

/* Registers listener i (again, after a descriptor shortage). */
static void add_listener(int ep, struct mc_thread *t, uint32_t i)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE,
				  .data.u64 = ID_LISTEN_BASE + i };

	epoll_ctl(ep, EPOLL_CTL_ADD, t->srv->ls[i].fd, &ev);
}

int mc_loop_epoll_run(struct mc_thread *t)
{
	struct epoll_event evs[64];
	uint64_t next_tick = clock_mono_ms() + MC_TICK_MS;
	int rc = 0;

	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		return -errno;
	struct epoll_event sev = { .events = EPOLLIN, .data.u64 = ID_STOP };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, t->stop_fd, &sev) < 0) {
		rc = -errno;
		close(ep);
		return rc;
	}
	for (uint32_t i = 0; i < t->srv->nls; i++)
		add_listener(ep, t, i);
	log_info("memcached thread %u: event loop epoll", t->w.index);
	mc_thread_ready(t);

	while (!t->stop) {
		uint64_t now = clock_mono_ms();
		int timeout = now >= next_tick ? 0 : (int)(next_tick - now);
		int n = epoll_wait(ep, evs, 64, timeout);
		if (n < 0 && errno != EINTR) {
			rc = -errno;
			break;
		}
		for (int i = 0; i < n && !t->stop; i++) {
			uint64_t id = evs[i].data.u64;
			if (id == ID_STOP) {
				t->stop = true;
			} else if (id >= ID_LISTEN_BASE &&
				   id < ID_LISTEN_BASE + t->srv->nls) {
				on_accept(ep, t,
					  (uint32_t)(id - ID_LISTEN_BASE));
			} else {
				uint32_t slot = (uint32_t)id;
				struct mc_conn *c = slot < t->srv->max_conns
							    ? t->conns[slot]
							    : NULL;
				if (!c || c->gen != (uint32_t)(id >> 32))
					continue;
				on_event(ep, t, c, evs[i].events);
			}
		}
		if (clock_mono_ms() >= next_tick) {
			next_tick = clock_mono_ms() + MC_TICK_MS;
			mc_thread_tick(t, clock_mono_ms());
			for (uint32_t i = 0; i < t->srv->max_conns; i++)
				if (t->conns[i] && t->conns[i]->closing)
					settle(ep, t, t->conns[i]);
			/* Listening again after a descriptor shortage (EEXIST
			 * for the others). */
			for (uint32_t i = 0; i < t->srv->nls; i++)
				add_listener(ep, t, i);
		}
	}
	close(ep);
	return rc;
}
