/*
 * sock.c - reaching a shmcached's control socket (sock.h): the path, the
 * connect, the peer check, the timeouts.  Shared by libshmc and cachectl
 * --no-map; everything after the connect (HELLO, requests) is theirs.
 */
#include "sock.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "paths.h"

/* Keeps the words of a failure to reach the daemon and returns err. */
__attribute__((format(printf, 3, 4))) static int
sock_fail(struct sock_err *why, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why->msg, sizeof(why->msg), fmt, ap);
	va_end(ap);
	why->err = err;
	return err;
}

int sock_denied(const char *path, struct sock_err *why)
{
	unsigned me = (unsigned)geteuid();

	return sock_fail(why, -EACCES,
			 "shmcached at %s does not allow uid %u: not in its "
			 "allow lists; start it with --allow-user %u, or "
			 "with --allow-group naming a group of this user",
			 path, me, me);
}

/* SOCK_ENODAEMON or -ECONNREFUSED at path; also: the system socket, when
 * it was tried after path in vain, or NULL. */
static int no_daemon(struct sock_err *why, int err, const char *path,
		     const char *also)
{
	return sock_fail(why, err, "%s %s%s%s%s: " SOCK_HOW_TO_START,
			 err == SOCK_ENODAEMON ? "no shmcached socket at"
					       : "no shmcached listens on",
			 path,
			 err == SOCK_ENODAEMON ? ""
					       : " (a stopped daemon's file)",
			 also ? ", nor at the system socket " : "",
			 also ? also : "");
}

/* Why connect() to path failed, as sock.h documents. */
static int connect_error(struct sock_err *why, int err, const char *path)
{
	switch (err) {
	case -ENOENT:
		return no_daemon(why, SOCK_ENODAEMON, path, NULL);
	case -ECONNREFUSED:
		return no_daemon(why, -ECONNREFUSED, path, NULL);
	case -EACCES:
		return sock_denied(path, why);
	}
	return err;
}

/* uid is one $SHMC_TRUST_UID names: 1, 0, or -EINVAL if the variable is
 * not a comma-separated list of decimal uids. */
static int trusted_by_env(uid_t uid)
{
	const char *p = getenv("SHMC_TRUST_UID");
	int found = 0;

	if (!p || !*p)
		return 0; /* unset or empty: nobody more */
	for (;;) {
		unsigned long long v = 0;
		const char *start = p;

		for (; *p >= '0' && *p <= '9' && v <= UINT32_MAX; p++)
			v = v * 10 + (unsigned)(*p - '0');
		if (p == start || v > UINT32_MAX || (*p && *p != ','))
			return -EINVAL;
		found |= (uid_t)v == uid;
		if (!*p++)
			return found;
	}
}

/* 0 if the process serving fd (SO_PEERCRED) is root, runs as our euid, or
 * has a uid of $SHMC_TRUST_UID; else SOCK_EUNTRUSTED.  Called before
 * anything is sent or received on fd. */
static int peer_check(int fd, const char *path, struct sock_err *why)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	uid_t me = geteuid();

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return sock_fail(why, SOCK_EUNTRUSTED,
				 "refusing %s: cannot read who serves it "
				 "(SO_PEERCRED: %s)",
				 path, strerror(errno));
	if (cr.uid == 0 || cr.uid == me)
		return 0;
	int t = trusted_by_env(cr.uid);
	if (t == 1)
		return 0;
	if (t < 0)
		return sock_fail(why, SOCK_EUNTRUSTED,
				 "refusing %s: served by uid %u (pid %d), and "
				 "$SHMC_TRUST_UID is not a comma-separated "
				 "list of uids: fix it",
				 path, (unsigned)cr.uid, (int)cr.pid);
	return sock_fail(why, SOCK_EUNTRUSTED,
			 "refusing %s: served by uid %u (pid %d), not by "
			 "root, this user (uid %u) or a uid of "
			 "$SHMC_TRUST_UID; if that is your daemon, set "
			 "SHMC_TRUST_UID=%u, otherwise another user holds "
			 "the path: remove it and restart shmcached",
			 path, (unsigned)cr.uid, (int)cr.pid, (unsigned)me,
			 (unsigned)cr.uid);
}

int sock_connect(const char *path, struct sock_err *why)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, n);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int rc = -errno;
		close(fd);
		return connect_error(why, rc, path);
	}
	int rc = peer_check(fd, path, why);
	if (rc) {
		close(fd);
		return rc;
	}
	struct timeval tv = { .tv_sec = SOCK_IO_TIMEOUT_S };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

int sock_open(const char *arg, char *path, size_t n, struct sock_err *why)
{
	const char *env = getenv("SHMC_SOCKET");
	int fd;

	if (arg || (env && *env)) {
		const char *given = arg ? arg : env;

		if (strlen(given) >= n)
			return -ENAMETOOLONG; /* never a cut path */
		snprintf(path, n, "%s", given);
		return sock_connect(path, why);
	}
	/* This user's own daemon first, then the system one. */
	paths_default_socket(path, n, geteuid());
	fd = sock_connect(path, why);
	if ((fd == SOCK_ENODAEMON || fd == -ECONNREFUSED) &&
	    strcmp(path, PATHS_SYSTEM_SOCKET) != 0) {
		int fd2 = sock_connect(PATHS_SYSTEM_SOCKET, why);

		if (fd2 >= 0) {
			snprintf(path, n, "%s", PATHS_SYSTEM_SOCKET);
			return fd2;
		}
		if (fd2 != SOCK_ENODAEMON && fd2 != -ECONNREFUSED)
			return fd2; /* the system socket's own trouble */
		/* Neither: the user's own socket is the one to start. */
		no_daemon(why, fd, path, PATHS_SYSTEM_SOCKET);
	}
	return fd;
}
