/*
 * loop_epoll.c - the fallback event loop, for hosts where io_uring is
 * disabled (sysctl kernel.io_uring_disabled, seccomp) or when --epoll asks.
 *
 * Non-blocking sockets, level-triggered epoll.  Each connection is
 * registered for input while it may read (conn_in_room() > 0) and for
 * output while replies are pending.  epoll_event.data.u64 holds the slot
 * and its generation as in loop_uring.c, or one of the fixed ids below.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"

#define ID_LISTEN UINT64_MAX
#define ID_SIGNAL (UINT64_MAX - 1)
#define ID_JOB (UINT64_MAX - 2)

static uint64_t id_of(const struct daemon *d, const struct conn *c)
{
	return (uint64_t)(c - d->conns) | (uint64_t)c->gen << 32;
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Sends what is pending without blocking. */
static void flush(struct conn *c)
{
	while (conn_out_pending(c)) {
		conn_prepare_send(c);
		ssize_t n = sendmsg(c->fd, &c->msg,
				    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			conn_sent(c, (size_t)n);
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		c->closing = true; /* peer gone */
		c->out_off = c->out_len = 0;
		return;
	}
}

/* Re-registers interest, or releases the connection when it is done. */
static void settle(int ep, struct daemon *d, struct conn *c)
{
	/* Send, and answer what input left waiting, until neither moves: a
	 * flush that drains everything after a skipped resume would otherwise
	 * leave answered-to-be requests with no event to wake them. */
	for (;;) {
		flush(c);
		size_t before = c->in_len;
		conn_resume(d, c);
		if (c->in_len == before)
			break;
	}
	if (c->closing && !conn_out_pending(c)) {
		epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
		conn_release(d, c);
		return;
	}
	struct epoll_event ev = { .data.u64 = id_of(d, c) };
	if (!c->closing && conn_in_room(d, c))
		ev.events |= EPOLLIN;
	if (conn_out_pending(c))
		ev.events |= EPOLLOUT;
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void on_readable(int ep, struct daemon *d, struct conn *c,
			uint32_t events)
{
	size_t room = conn_in_room(d, c);

	if (!room && (events & (EPOLLHUP | EPOLLERR))) {
		/* Not reading (a full buffer behind a running SAVE, say) and
		 * the peer is gone: a level-triggered HUP would spin. */
		c->closing = true;
		c->out_off = c->out_len = 0;
	} else if (room) {
		ssize_t n = recv(c->fd, c->in + c->in_len, room, MSG_DONTWAIT);
		if (n > 0) {
			c->in_len += (size_t)n;
			conn_input(d, c);
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			c->closing = true;
			c->out_off = c->out_len = 0;
		}
	}
	settle(ep, d, c);
}

static void on_accept(int ep, struct daemon *d, uint64_t *last_warning)
{
	for (int i = 0; i < 64; i++) {
		int fd = accept4(d->listen_fd, NULL, NULL,
				 SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				uint64_t now = clock_mono_ms();
				if (now - *last_warning > 10000) {
					log_warn("accept: %s; connections wait",
						 strerror(errno));
					*last_warning = now;
				}
				/* Stop listening until the next tick. */
				epoll_ctl(ep, EPOLL_CTL_DEL, d->listen_fd,
					  NULL);
			}
			return;
		}
		struct conn *c = conn_accept(d, fd);
		if (!c)
			continue;
		struct epoll_event ev = { .events = EPOLLIN,
					  .data.u64 = id_of(d, c) };
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
		settle(ep, d, c);
	}
}

static int add(int ep, int fd, uint64_t id)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = id };

	return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int loop_epoll_run(struct daemon *d)
{
	struct epoll_event evs[64];
	uint64_t next_tick = clock_mono_ms() + DAEMON_TICK_MS, last_warning = 0;
	int rc = 0;

	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		return -errno;
	set_nonblock(d->listen_fd);
	if ((rc = add(ep, d->listen_fd, ID_LISTEN)) ||
	    (rc = add(ep, d->signal_fd, ID_SIGNAL)) ||
	    (rc = add(ep, d->job_fd, ID_JOB))) {
		close(ep);
		return rc;
	}
	log_info("event loop: epoll");

	while (!d->stop) {
		uint64_t now = clock_mono_ms();
		int timeout = now >= next_tick ? 0 : (int)(next_tick - now);
		int n = epoll_wait(ep, evs, 64, timeout);
		if (n < 0 && errno != EINTR) {
			rc = -errno;
			break;
		}
		for (int i = 0; i < n && !d->stop; i++) {
			uint64_t id = evs[i].data.u64;
			if (id == ID_LISTEN) {
				on_accept(ep, d, &last_warning);
			} else if (id == ID_SIGNAL) {
				struct signalfd_siginfo si;
				while (read(d->signal_fd, &si, sizeof(si)) ==
				       (ssize_t)sizeof(si))
					daemon_signal(d, (int)si.ssi_signo);
			} else if (id == ID_JOB) {
				struct conn *c = job_reap(d);
				if (c)
					settle(ep, d, c);
			} else {
				uint32_t slot = (uint32_t)id;
				struct conn *c = &d->conns[slot];
				if (slot >= d->cfg.max_clients || c->fd < 0 ||
				    c->gen != (uint32_t)(id >> 32))
					continue;
				on_readable(ep, d, c, evs[i].events);
			}
		}
		if (clock_mono_ms() >= next_tick) {
			next_tick = clock_mono_ms() + DAEMON_TICK_MS;
			daemon_tick(d);
			for (uint32_t i = 0; i < d->cfg.max_clients; i++)
				if (d->conns[i].fd >= 0 && d->conns[i].closing)
					settle(ep, d, &d->conns[i]);
			/* Listening again after a descriptor shortage. */
			add(ep, d->listen_fd, ID_LISTEN);
		}
	}
	close(ep);
	return rc;
}
