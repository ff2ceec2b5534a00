/*
 * main.c - shmcached's start-up, background tick and shutdown.
 *
 * Start: configuration -> log -> fork into the background unless
 * --foreground (the parent waits only until the child releases it, and
 * exits 0 then, or with the child's status if the child exits first)
 * -> signals (blocked, read from a signalfd by the loop) -> region
 * (claimed, then created or adopted) -> control socket (claimed) -> the
 * memcached listeners (--memcached) -> the parent is released -> the
 * memcached serving threads -> the redis tracking thread (--redis) ->
 * READY=1 -> event loop (io_uring, or epoll if
 * io_uring cannot be set up or --epoll is given).  The fork comes first
 * because the region's and the socket's ownership are POSIX locks, which
 * belong to the process that takes them and are not inherited.
 * With --snapshot FILE, a region created by this start is loaded from FILE
 * before READY=1.
 * Stop (SIGTERM, SIGINT, or a SHUTDOWN request): STOPPING=1, memcached
 * threads stopped and their sockets removed, the redis thread stopped
 * (its prefixes left blocked and flushed), connections
 * closed (the clients stay in the client table: they live on), socket
 * removed, snapshot saved (with --snapshot), region kept for a warm
 * restart unless --unlink-on-exit.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clients.h"
#include "daemon.h"
#include "listen.h"
#include "log.h"
#include "opt.h"
#include "persist.h"
#include "redis.h"
#include "region.h"
#include "sysd.h"

#define SWEEP_BUCKETS 256 /* buckets per segment per sweep step */

void daemon_tick(struct daemon *d)
{
	eng_clock_set(&d->eng, (uint32_t)time(NULL));

	/* Expiry sweep: about one pass over all segments' first buckets a
	 * second, bounded work per tick. */
	uint32_t nseg = d->eng.g.nseg;
	uint32_t per_tick = nseg / 10 ? nseg / 10 : 1;
	for (uint32_t i = 0; i < per_tick; i++) {
		eng_sweep(&d->eng, d->sweep_seg, SWEEP_BUCKETS);
		d->sweep_seg = (d->sweep_seg + 1) & (nseg - 1);
	}
	conn_tick(d, clock_mono_ms());

	/* About once a second: clients found dead through the client table
	 * (those of a previous daemon, or ones whose closed connection this
	 * daemon has not handled yet). */
	if (++d->ticks % 10 == 0) {
		int gone, n = clients_sweep(&d->clients, &gone);
		if (n > 0)
			log_warn("liveness sweep: %d dead client(s) held "
				 "segment locks: recovered",
				 n);
		if (gone > 0)
			log_debug("liveness sweep: %d client(s) gone", gone);
	}
}

void daemon_signal(struct daemon *d, int signo)
{
	switch (signo) {
	case SIGTERM:
	case SIGINT:
		log_info("signal %d: shutting down", signo);
		d->stop = true;
		break;
	case SIGHUP:
		if (log_reopen() < 0)
			log_error("SIGHUP: cannot reopen the log file");
		else
			log_info("SIGHUP: log reopened");
		break;
	}
}

static int signals_open(struct daemon *d)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	d->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return d->signal_fd < 0 ? -errno : 0;
}

/* Forks into the background.  The parent waits until the child calls
 * detach_finish() and exits 0 then; if the child exits before, the parent
 * exits with the child's status, so the caller of `shmcached` still sees
 * a start-up failure.  Returns, in the child, the descriptor to pass to
 * detach_finish(), or -errno (in the parent, when fork fails). */
static int detach_begin(void)
{
	int p[2], st = 0;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0) {
		int rc = -errno;
		close(p[0]);
		close(p[1]);
		return rc;
	}
	if (pid == 0) {
		close(p[0]);
		return p[1];
	}
	close(p[1]);
	char ok;
	ssize_t n;
	do
		n = read(p[0], &ok, 1);
	while (n < 0 && errno == EINTR);
	if (n == 1)
		_exit(0);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
}

/* The child is set up: leaves the terminal's session and folder and
 * releases the parent (report: detach_begin()'s descriptor). */
static void detach_finish(int report)
{
	setsid();
	if (chdir("/") < 0)
		log_warn("cannot change to /: %s", strerror(errno));
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		close(fd);
	}
	if (write(report, "", 1) != 1)
		log_warn("cannot release the starting process: %s",
			 strerror(errno));
	close(report);
}

static void shutdown_all(struct daemon *d)
{
	sysd_notify("STOPPING=1");
	/* The memcached threads and the redis thread use the region: they
	 * go first. */
	mc_serve_stop(d);
	redis_stop(d);
	/* A SAVE or LOAD that runs ends first; its requester gets the reply
	 * with the rest below. */
	job_finish(d);
	for (uint32_t i = 0; i < d->cfg.max_clients; i++) {
		struct conn *c = &d->conns[i];
		if (c->fd < 0)
			continue;
		/* Flush what is queued (e.g. the SHUTDOWN reply), best effort. */
		if (conn_out_pending(c)) {
			ssize_t n = send(c->fd, c->out + c->out_off,
					 conn_out_pending(c),
					 MSG_DONTWAIT | MSG_NOSIGNAL);
			(void)n;
		}
		/* The client lives on: its mapping works without a daemon and
		 * it reconnects to the next one.  So its client-table entry and
		 * its locks stay as they are; released as a departed client's,
		 * a lock waiter would find it gone from the table, take it for
		 * dead and take its segment over in the middle of a write. */
		c->client_id = 0;
		conn_release(d, c);
	}
	listen_close(d);
	if (d->cfg.snapshot[0])
		persist_exit(d);
	region_close(d);
	free(d->conns);
	if (d->signal_fd >= 0)
		close(d->signal_fd);
	if (d->job_fd >= 0)
		close(d->job_fd);
	log_info("stopped");
}

static_assert(CONFIG_NS_PREFIX_MAX == LAYOUT_NS_PREFIX_MAX &&
		      CONFIG_NS_MAX == LAYOUT_NS_SLOTS / 2,
	      "--namespace limits are not the engine's");

/* Registers the --namespace prefixes, before the loop runs (the table's
 * one writer is the daemon's loop thread, and this is it).  One already
 * registered - a warm restart - is kept with its flush mark.  Returns 0,
 * or -1 with the reason in err. */
static int namespaces_register(struct daemon *d, char *err, size_t cap)
{
	for (uint32_t i = 0; i < d->cfg.n_namespaces; i++) {
		const char *p = d->cfg.namespaces[i];
		struct opt_qbuf q;
		pthread_mutex_lock(&d->ns_lock);
		int rc = eng_ns_add(&d->eng, p, strlen(p));
		pthread_mutex_unlock(&d->ns_lock);
		if (rc == 0)
			log_info("namespace %s registered", opt_quote(&q, p));
		else if (rc != -EEXIST) {
			snprintf(
				err, cap, "cannot register namespace %s: %s%s",
				opt_quote(&q, p), strerror(-rc),
				rc == -ENOSPC
					? " (the region's table is full: " NS_FULL_HOW
					  ")"
					: "");
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct daemon d;
	char err[512] = "";
	int rc;

	config_defaults(&d.cfg);
	switch (config_parse(&d.cfg, argc, argv, stdout, stderr)) {
	case CONFIG_OK:
		break;
	case CONFIG_EXIT_OK:
		return 0;
	default:
		return 2;
	}
	region_resolve(&d.cfg);
	struct eng_geom geom;
	if (region_plan(&d.cfg, &geom) != 0) {
		fprintf(stderr,
			"shmcached: --memory %llu cannot be carved into "
			"--segments %u (each needs at least %u ring bytes, "
			"at most 2 GiB)\n",
			(unsigned long long)d.cfg.memory, d.cfg.segments,
			ENG_MIN_RING);
		return 2;
	}
	if ((rc = log_open(d.cfg.log_file, d.cfg.log_level)) != 0) {
		fprintf(stderr, "shmcached: --log-file %s: %s\n",
			d.cfg.log_file, strerror(-rc));
		return 1;
	}
	pthread_mutex_init(&d.ns_lock, NULL);
	pthread_mutex_init(&d.redis_lock, NULL);
	if (redis_prepare(&d, err, sizeof(err)) != 0) {
		fprintf(stderr, "shmcached: %s\n", err);
		return 2;
	}
	d.listen_fd = d.signal_fd = d.region_fd = d.job_fd = -1;
	d.started = (uint64_t)time(NULL);
	d.conns = calloc(d.cfg.max_clients, sizeof(*d.conns));
	if (!d.conns) {
		log_error("out of memory for %u client slots",
			  d.cfg.max_clients);
		return 1;
	}
	for (uint32_t i = 0; i < d.cfg.max_clients; i++)
		d.conns[i].fd = d.conns[i].pass_fd = -1;

	sysd_listen_fds(&d.sd);
	int report = -1;
	if (!d.cfg.foreground && (report = detach_begin()) < 0) {
		log_error("cannot detach: %s", strerror(-report));
		return 1;
	}
	if ((rc = signals_open(&d)) != 0) {
		log_error("cannot set up signal handling: %s", strerror(-rc));
		return 1;
	}
	if ((rc = job_init(&d)) != 0) {
		log_error("cannot create the job eventfd: %s", strerror(-rc));
		return 1;
	}
	if ((rc = region_open(&d, err, sizeof(err))) != 0) {
		log_error("%s", err);
		sysd_notify("STATUS=cannot open the region");
		return 1;
	}
	/* A region this start created (its first boot) is filled from the
	 * snapshot; an adopted one keeps its own entries. */
	bool created = d.eng.hdr->boot_count == 1;
	if (namespaces_register(&d, err, sizeof(err)) != 0) {
		log_error("%s", err);
		d.cfg.unlink_on_exit |= created; /* leave nothing behind */
		region_close(&d);
		return 1;
	}
	redis_unblock_untracked(&d);
	if ((rc = listen_open(&d, err, sizeof(err))) != 0) {
		log_error("%s", err[0] ? err : strerror(-rc));
		d.cfg.unlink_on_exit |= created; /* leave nothing behind */
		region_close(&d);
		return 1;
	}
	if ((rc = mc_serve_open(&d, err, sizeof(err))) != 0) {
		log_error("%s", err);
		listen_close(&d);
		d.cfg.unlink_on_exit |= created; /* leave nothing behind */
		region_close(&d);
		return 1;
	}
	if (report >= 0)
		detach_finish(report);
	daemon_tick(&d);
	if (d.cfg.snapshot[0] && created)
		persist_start(&d);
	if ((rc = mc_serve_start(&d, err, sizeof(err))) != 0) {
		log_error("%s", err);
		shutdown_all(&d);
		return 1;
	}
	if (redis_start(&d, err, sizeof(err)) != 0) {
		log_error("%s", err);
		shutdown_all(&d);
		return 1;
	}

	char status[512];
	snprintf(status, sizeof(status),
		 "READY=1\nSTATUS=serving %s, region %s (%llu MiB)",
		 d.listen_from_systemd ? "systemd socket" : d.cfg.socket_path,
		 d.cfg.name, (unsigned long long)(d.region_size >> 20));
	sysd_notify(status);
	log_info("ready: socket %s, region %s",
		 d.listen_from_systemd ? "(from systemd)" : d.cfg.socket_path,
		 d.cfg.name);

	rc = -ENOSYS;
	if (!d.cfg.force_epoll) {
		rc = loop_uring_run(&d);
		if (rc == -ENOSYS || rc == -EPERM || rc == -EACCES ||
		    rc == -ENOMEM)
			log_warn("io_uring unavailable (%s): using epoll",
				 strerror(-rc));
	}
	if (rc == -ENOSYS || rc == -EPERM || rc == -EACCES || rc == -ENOMEM)
		rc = loop_epoll_run(&d);
	if (rc)
		log_error("event loop failed: %s", strerror(-rc));
	shutdown_all(&d);
	return rc ? 1 : 0;
}
