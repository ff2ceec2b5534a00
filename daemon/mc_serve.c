/*
 * mc_serve.c - the memcached protocols on sockets: the listeners
 * (--memcached and the descriptors systemd passes named "memcached"), the
 * serving threads, and one connection's life independent of the event
 * loop that moves its bytes (mc_serve.h says how its buffers stay
 * bounded).
 *
 * The threads start once the region is ready and stop before it is
 * unmapped.  Each runs an io_uring loop (mc_loop_uring.c), or the epoll
 * loop (mc_loop_epoll.c) with --epoll or when io_uring cannot be set up;
 * signals stay with the daemon's main thread.  A worker's lock wait is the
 * region's --lock-timeout: a socket client's request waits behind a mapped
 * client's lock as long as any other client would, and when the holder is
 * found dead its segment is recovered (the engine asks the daemon's client
 * book, clients_book_alive(), which is thread-safe).  Meanwhile the
 * thread's other connections wait: --threads spreads them.
 *
 * What it is not: the protocol (mc_proto.c and the command files), the
 * control socket (listen.c, conn.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "listen.h"
#include "log.h"
#include "mc_serve.h"

/* ------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------ */

/* Whether a warning may be logged now (one per thread per 10 s). */
static bool warn_now(struct mc_thread *t)
{
	uint64_t now = clock_mono_ms();

	if (t->last_warning_ms && now - t->last_warning_ms < 10000)
		return false;
	t->last_warning_ms = now;
	return true;
}

/* A connection in a free slot of t, or NULL (no slot, no memory). */
static struct mc_conn *conn_new(struct mc_thread *t, int fd,
				const struct mc_listener *l)
{
	struct mc_server *srv = t->srv;
	uint32_t slot = srv->max_conns;

	/* Searched from where the last one was found. */
	for (uint32_t i = 0; i < srv->max_conns; i++) {
		uint32_t k = (t->next_slot + i) % srv->max_conns;
		if (!t->conns[k]) {
			slot = k;
			break;
		}
	}
	struct mc_conn *c = slot < srv->max_conns ? calloc(1, sizeof(*c))
						  : NULL;
	uint8_t *in = c ? malloc(MC_IN_INITIAL) : NULL;
	if (!in) {
		free(c);
		return NULL;
	}
	c->fd = fd;
	c->slot = slot;
	c->gen = ++t->gens[slot];
	c->is_unix = l->is_unix;
	c->in = in;
	c->in_cap = MC_IN_INITIAL;
	c->out.high = MC_OUT_HIGH;
	c->active_ms = c->since_ms = clock_mono_ms();
	mc_session_init(&t->w, &c->s);
	t->conns[slot] = c;
	t->next_slot = (slot + 1) % srv->max_conns;
	t->nconns++;
	return c;
}

/* Refuses an accepted socket with one line.  Closing it at once would
 * reset it if the peer's first request is unread (and with it the line
 * the peer has not read yet), so the connection lingers: the line is
 * sent, the socket shut down for writing, what the peer sends discarded
 * until it closes or MC_LINGER_MS pass.  Without a slot: closed at once. */
static struct mc_conn *refuse(struct mc_thread *t, int fd,
			      const struct mc_listener *l, const char *line)
{
	struct mc_conn *c = conn_new(t, fd, l);

	MC_COUNT(&t->w, rejected_connections, 1);
	if (c) {
		size_t n = strlen(line);
		c->refused = true;
		if ((c->out.p = malloc(n)) != NULL) {
			memcpy(c->out.p, line, n);
			c->out.len = c->out.cap = n;
			return c;
		}
		mc_conn_release(t, c);
		return NULL;
	}
	ssize_t n = send(fd, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)n;
	close(fd);
	return NULL;
}

struct mc_conn *mc_conn_accept(struct mc_thread *t, int fd,
			       const struct mc_listener *l)
{
	struct mc_server *srv = t->srv;

	MC_COUNT(&t->w, total_connections, 1);
	if (__atomic_fetch_add(&srv->nconns, 1, __ATOMIC_RELAXED) >=
	    srv->max_conns) {
		__atomic_fetch_sub(&srv->nconns, 1, __ATOMIC_RELAXED);
		if (warn_now(t))
			log_warn("memcached: refused a connection on %s: %u "
				 "open already (--memcached-max-conns)",
				 l->name, srv->max_conns);
		return refuse(t, fd, l,
			      "SERVER_ERROR too many open connections\r\n");
	}
	if (l->is_unix) {
		struct ucred cred;
		socklen_t len = sizeof(cred);
		bool ok = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred,
				     &len) == 0;
		if (!ok ||
		    !conn_peer_allowed(&srv->d->cfg, cred.uid, cred.gid)) {
			__atomic_fetch_sub(&srv->nconns, 1, __ATOMIC_RELAXED);
			if (ok)
				log_warn("memcached: refused peer pid %d uid "
					 "%u gid %u on %s: not in the allow "
					 "lists",
					 (int)cred.pid, (unsigned)cred.uid,
					 (unsigned)cred.gid, l->name);
			return refuse(
				t, fd, l,
				ok ? "SERVER_ERROR not allowed: this user is "
				     "not in the daemon's allow lists\r\n"
				   : "SERVER_ERROR cannot read the peer's "
				     "credentials\r\n");
		}
	} else {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	struct mc_conn *c = conn_new(t, fd, l);
	if (!c) {
		__atomic_fetch_sub(&srv->nconns, 1, __ATOMIC_RELAXED);
		if (warn_now(t))
			log_warn("memcached: out of memory for a connection");
		ssize_t n = send(fd, "SERVER_ERROR out of memory\r\n", 28,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		(void)n;
		close(fd);
		MC_COUNT(&t->w, rejected_connections, 1);
		return NULL;
	}
	MC_COUNT(&t->w, curr_connections, 1);
	return c;
}

size_t mc_conn_room(struct mc_thread *t, struct mc_conn *c)
{
	if (c->closing || c->unprocessed || mc_conn_pending(c) >= MC_OUT_HIGH)
		return 0;
	size_t want = c->in_cap;
	if (c->s.need > want)
		want = c->s.need;
	if (c->in_len == c->in_cap && want < 2 * c->in_cap)
		want = 2 * c->in_cap;
	if (want > t->srv->in_max)
		want = t->srv->in_max;
	if (want <= c->in_len) {
		/* The protocol asked for more than its own bound: nothing a
		 * well-formed request needs. */
		log_info("memcached: a request larger than %zu bytes: "
			 "closing the connection",
			 t->srv->in_max);
		c->closing = true;
		return 0;
	}
	if (want > c->in_cap) {
		uint8_t *p = realloc(c->in, want);
		if (!p) {
			mc_conn_drop(c);
			return 0;
		}
		c->in = p;
		c->in_cap = want;
	}
	return c->in_cap - c->in_len;
}

void mc_conn_received(struct mc_thread *t, struct mc_conn *c, size_t n)
{
	c->in_len += n;
	c->unprocessed = true;
	c->active_ms = clock_mono_ms();
	MC_COUNT(&t->w, bytes_read, n);
}

void mc_conn_input(struct mc_thread *t, struct mc_conn *c)
{
	if (c->refused) {
		c->in_len = 0; /* discarded */
		c->unprocessed = false;
		return;
	}
	/* With MC_OUT_HIGH unsent no request can run: wait for the peer. */
	if (!c->unprocessed || c->closing || mc_conn_pending(c) >= MC_OUT_HIGH)
		return;
	/* Unsent output to the front: out.high then bounds what is unsent. */
	if (c->out_off) {
		memmove(c->out.p, c->out.p + c->out_off, mc_conn_pending(c));
		c->out.len -= c->out_off;
		c->out_off = 0;
	}
	size_t used = mc_process(&t->w, &c->s, c->in, c->in_len, &c->out);
	if (used) {
		memmove(c->in, c->in + used, c->in_len - used);
		c->in_len -= used;
	}
	/* Stopped at an incomplete request (or nothing left): wait for more
	 * bytes.  Stopped by back-pressure: run the rest once out drains. */
	c->unprocessed = c->in_len && !c->s.need && !c->s.swallow;
	if (c->out.oom) {
		log_warn("memcached: out of memory for replies: closing a "
			 "connection");
		mc_conn_drop(c);
		return;
	}
	if (c->s.close) {
		c->closing = true;
		c->unprocessed = false;
	}
	/* Give back a buffer a large request grew. */
	if (c->in_cap > MC_IN_INITIAL && c->in_len <= MC_IN_INITIAL &&
	    c->s.need <= MC_IN_INITIAL) {
		uint8_t *p = realloc(c->in, MC_IN_INITIAL);
		if (p) {
			c->in = p;
			c->in_cap = MC_IN_INITIAL;
		}
	}
}

void mc_conn_sent(struct mc_thread *t, struct mc_conn *c, size_t n)
{
	c->out_off += n;
	c->active_ms = clock_mono_ms();
	MC_COUNT(&t->w, bytes_written, n);
	if (c->out_off < c->out.len)
		return;
	c->out_off = c->out.len = 0;
	if (c->refused)
		shutdown(c->fd,
			 SHUT_WR); /* the line is out: the peer gets EOF */
	if (c->out.cap > MC_OUT_KEEP) {
		free(c->out.p);
		c->out.p = NULL;
		c->out.cap = 0;
	}
}

void mc_conn_drop(struct mc_conn *c)
{
	c->closing = true;
	c->unprocessed = false;
	c->out_off = c->out.len = 0;
}

void mc_conn_release(struct mc_thread *t, struct mc_conn *c)
{
	mc_session_end(&t->w, &c->s);
	close(c->fd);
	free(c->in);
	free(c->out.p);
	t->conns[c->slot] = NULL;
	t->nconns--;
	if (!c->refused) {
		__atomic_fetch_sub(&t->srv->nconns, 1, __ATOMIC_RELAXED);
		MC_COUNT(&t->w, curr_connections, (uint64_t)-1);
	}
	free(c);
}

void mc_thread_tick(struct mc_thread *t, uint64_t now_ms)
{
	mc_worker_tick(&t->w);
	for (uint32_t i = 0; i < t->srv->max_conns; i++) {
		struct mc_conn *c = t->conns[i];
		if (c && c->refused && !c->closing &&
		    now_ms - c->since_ms >= MC_LINGER_MS)
			mc_conn_drop(c);
		else if (c && (!c->closing || mc_conn_pending(c)) &&
			 t->srv->idle_ms &&
			 now_ms - c->active_ms >= t->srv->idle_ms) {
			/* Closing with its replies unsent: as idle (quit, then
			 * never read). */
			log_debug("memcached: a connection idle for %u s: "
				  "closed (--memcached-idle-timeout)",
				  t->srv->d->cfg.memcached_idle_timeout);
			mc_conn_drop(c);
		}
	}
}

/* ------------------------------------------------------------------------
 * Listeners
 * ------------------------------------------------------------------------ */

/* A TCP listener at a (SO_REUSEADDR; IPv6 only for an IPv6 address, as
 * memcached does, so that [::] and 0.0.0.0 can both be given). */
static int listen_tcp(const struct config_mc_addr *a, const char *name,
		      char *err, size_t errlen)
{
	int one = 1;
	int fd = socket(a->sa.ss_family,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		int rc = -errno;
		snprintf(err, errlen,
			 "--memcached %s: cannot create a socket: %s", name,
			 strerror(errno));
		return rc;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (a->sa.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->sa, a->len) < 0 ||
	    listen(fd, MC_BACKLOG) < 0) {
		int rc = -errno;
		snprintf(err, errlen, "--memcached %s: cannot listen: %s%s",
			 name, strerror(errno),
			 errno == EADDRINUSE ? " (is memcached or another "
					       "shmcached running there?)"
					     : "");
		close(fd);
		return rc;
	}
	log_info("memcached: listening on %s", name);
	return fd;
}

/* A descriptor systemd passed as "memcached": a listening stream socket,
 * Unix or TCP (beyond loopback only with --memcached-remote). */
static int adopt_systemd(struct mc_server *srv, int fd, struct mc_listener *l,
			 char *err, size_t errlen)
{
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);
	int type = 0, acc = 0;
	socklen_t tl = sizeof(type), al = sizeof(acc);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
	    type != SOCK_STREAM ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) < 0 || !acc ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		snprintf(err, errlen,
			 "a descriptor systemd passed as '%s' is not a "
			 "listening stream socket (ListenStream= in the "
			 ".socket unit)",
			 SYSD_MC_FDNAME);
		return -EINVAL;
	}
	l->fd = fd;
	l->lock_fd = -1;
	l->is_unix = sa.ss_family == AF_UNIX;
	bool loopback = l->is_unix;
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (sa.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	} else if (sa.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 =
			(const struct sockaddr_in6 *)&sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
	}
	if (l->is_unix) {
		const struct sockaddr_un *un = (const struct sockaddr_un *)&sa;
		snprintf(l->name, sizeof(l->name), "%.*s (from systemd)",
			 (int)(len > sizeof(sa_family_t)
				       ? strnlen(un->sun_path,
						 len - sizeof(sa_family_t))
				       : 0),
			 un->sun_path);
	} else {
		snprintf(l->name, sizeof(l->name),
			 sa.ss_family == AF_INET6 ? "[%s]:%u (from systemd)"
						  : "%s:%u (from systemd)",
			 host, port);
	}
	if (!loopback && !srv->d->cfg.memcached_remote) {
		snprintf(err, errlen,
			 "systemd passed the memcached socket %s, not on "
			 "loopback: the memcached protocol has no "
			 "authentication; add --memcached-remote to serve it "
			 "anyway (see docs/SECURITY.md)",
			 l->name);
		return -EPERM;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	log_info("memcached: listening on %s", l->name);
	return 0;
}

static void close_listeners(struct mc_server *srv)
{
	for (uint32_t i = 0; i < srv->nls; i++) {
		struct mc_listener *l = &srv->ls[i];
		listen_unix_close(l->fd, l->lock_fd, l->path);
	}
	srv->nls = 0;
}

int mc_serve_open(struct daemon *d, char *err, size_t errlen)
{
	const struct config *cfg = &d->cfg;
	struct mc_server *srv;
	int rc = 0;

	if (!cfg->n_memcached && !d->sd.n_mc_fds)
		return 0;
	if (!(srv = calloc(1, sizeof(*srv)))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	srv->d = d;
	d->mc = srv;
	for (int i = 0; i < d->sd.n_mc_fds && !rc; i++) {
		struct mc_listener *l = &srv->ls[srv->nls];
		if ((rc = adopt_systemd(srv, d->sd.mc_fds[i], l, err,
					errlen)) == 0)
			srv->nls++;
	}
	for (uint32_t i = 0; i < cfg->n_memcached && !rc; i++) {
		struct mc_listener *l = &srv->ls[srv->nls];
		struct config_mc_addr a;
		char why[256];

		snprintf(l->name, sizeof(l->name), "%s", cfg->memcached[i]);
		l->lock_fd = -1;
		if (config_mc_addr(cfg->memcached[i], &a, why, sizeof(why))) {
			snprintf(err, errlen, "--memcached: %s", why);
			rc = -EINVAL;
			break;
		}
		l->is_unix = a.is_unix;
		rc = a.is_unix ? listen_unix(cfg, cfg->memcached[i],
					     "--memcached", MC_BACKLOG,
					     &l->lock_fd, err, errlen)
			       : listen_tcp(&a, l->name, err, errlen);
		if (rc < 0)
			break;
		l->fd = rc;
		rc = 0;
		if (a.is_unix)
			snprintf(l->path, sizeof(l->path), "%s",
				 cfg->memcached[i]);
		srv->nls++;
	}
	if (rc) {
		close_listeners(srv);
		free(srv);
		d->mc = NULL;
	}
	return rc;
}

/* ------------------------------------------------------------------------
 * Threads
 * ------------------------------------------------------------------------ */

void mc_thread_ready(struct mc_thread *t)
{
	if (!t->set_up) {
		t->set_up = true;
		sem_post(&t->srv->ready);
	}
}

static void *thread_main(void *arg)
{
	struct mc_thread *t = arg;
	int rc = -ENOSYS;

	if (!t->srv->d->cfg.force_epoll) {
		rc = mc_loop_uring_run(t);
		if (rc == -ENOSYS || rc == -EPERM || rc == -EACCES ||
		    rc == -ENOMEM)
			log_warn("memcached thread %u: io_uring unavailable "
				 "(%s): using epoll",
				 t->w.index, strerror(-rc));
	}
	if (rc == -ENOSYS || rc == -EPERM || rc == -EACCES || rc == -ENOMEM)
		rc = mc_loop_epoll_run(t);
	if (rc)
		log_error("memcached thread %u: event loop failed: %s",
			  t->w.index, strerror(-rc));
	if (!t->set_up) {
		t->setup_rc = rc ? rc : -EIO;
		mc_thread_ready(t);
	}
	for (uint32_t i = 0; i < t->srv->max_conns && !t->abandon; i++)
		if (t->conns[i])
			mc_conn_release(t, t->conns[i]);
	return NULL;
}

static void free_threads(struct mc_server *srv)
{
	for (uint32_t i = 0; i < srv->nthreads; i++) {
		struct mc_thread *t = &srv->threads[i];
		if (t->stop_fd >= 0)
			close(t->stop_fd);
		free(t->conns);
		free(t->gens);
		mc_worker_fini(&t->w);
	}
	free(srv->threads);
	free(srv->sh.workers);
	srv->threads = NULL;
	srv->nthreads = 0;
}

int mc_serve_start(struct daemon *d, char *err, size_t errlen)
{
	struct mc_server *srv = d->mc;
	const struct config *cfg = &d->cfg;

	if (!srv)
		return 0;
	srv->max_conns = cfg->memcached_max_conns;
	srv->idle_ms = (uint64_t)cfg->memcached_idle_timeout * 1000;
	srv->sh.cfg = cfg;
	srv->sh.eng = &d->eng;
	srv->sh.started = d->started;
	srv->sh.nworkers = cfg->threads;
	srv->threads = calloc(cfg->threads, sizeof(*srv->threads));
	srv->sh.workers = calloc(cfg->threads, sizeof(*srv->sh.workers));
	if (!srv->threads || !srv->sh.workers) {
		snprintf(err, errlen, "out of memory for %u threads",
			 cfg->threads);
		free(srv->threads);
		free(srv->sh.workers);
		srv->threads = NULL;
		return -ENOMEM;
	}
	srv->nthreads = cfg->threads;
	for (uint32_t i = 0; i < srv->nthreads; i++)
		srv->threads[i].stop_fd = -1;
	for (uint32_t i = 0; i < srv->nthreads; i++) {
		struct mc_thread *t = &srv->threads[i];
		t->srv = srv;
		t->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		t->conns = calloc(srv->max_conns, sizeof(*t->conns));
		t->gens = calloc(srv->max_conns, sizeof(*t->gens));
		mc_worker_init(&t->w, &srv->sh, i, cfg->lock_timeout_ms);
		srv->sh.workers[i] = &t->w;
		if (t->stop_fd < 0 || !t->conns || !t->gens) {
			snprintf(err, errlen,
				 "cannot set up memcached thread %u: %s", i,
				 t->stop_fd < 0 ? strerror(errno)
						: "out of memory");
			free_threads(srv);
			return -ENOMEM;
		}
	}
	srv->in_max = mc_request_max(&srv->threads[0].w) + 1;

	/* The threads get no signal: the main thread's signalfd reads them. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = sem_init(&srv->ready, 0, 0) < 0 ? errno : 0;
	srv->sem_ok = rc == 0;
	for (uint32_t i = 0; i < srv->nthreads && !rc; i++) {
		struct mc_thread *t = &srv->threads[i];
		rc = pthread_create(&t->tid, NULL, thread_main, t);
		t->running = rc == 0;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		snprintf(err, errlen, "cannot start a memcached thread: %s",
			 strerror(rc));
		mc_serve_stop(d);
		return -rc;
	}
	/* Each thread's loop set up, or the reason it could not be. */
	for (uint32_t i = 0; i < srv->nthreads; i++)
		while (sem_wait(&srv->ready) < 0 && errno == EINTR)
			;
	for (uint32_t i = 0; i < srv->nthreads && !rc; i++) {
		if ((rc = srv->threads[i].setup_rc) != 0)
			snprintf(err, errlen,
				 "memcached thread %u: no event loop: %s", i,
				 strerror(-rc));
	}
	if (rc) {
		mc_serve_stop(d);
		return rc;
	}
	log_info("memcached: %u thread(s), up to %u connections%s",
		 srv->nthreads, srv->max_conns,
		 srv->idle_ms ? ", idle ones closed" : "");
	return 0;
}

void mc_serve_stop(struct daemon *d)
{
	struct mc_server *srv = d->mc;

	if (!srv)
		return;
	for (uint32_t i = 0; i < srv->nthreads; i++) {
		struct mc_thread *t = &srv->threads[i];
		uint64_t one = 1;
		if (t->running && write(t->stop_fd, &one, sizeof(one)) < 0)
			log_warn("cannot stop memcached thread %u: %s", i,
				 strerror(errno));
	}
	for (uint32_t i = 0; i < srv->nthreads; i++)
		if (srv->threads[i].running)
			pthread_join(srv->threads[i].tid, NULL);
	free_threads(srv);
	close_listeners(srv);
	if (srv->sem_ok)
		sem_destroy(&srv->ready);
	free(srv);
	d->mc = NULL;
}

uint32_t mc_serve_conns(const struct daemon *d)
{
	return d->mc ? __atomic_load_n(&d->mc->nconns, __ATOMIC_RELAXED) : 0;
}
