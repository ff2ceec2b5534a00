/*
 * listen.c - the control socket: taken from systemd when socket-activated,
 * else created at cfg.socket_path with a mode and group that let exactly
 * the allowed peers connect (SO_PEERCRED is checked again at accept).
 *
 * Who serves a socket path is decided by a lock, not by connect(): the
 * daemon claims PATH.lock (beside the socket, owner.h's POSIX record lock)
 * before it touches the socket, and holds it while it serves.  The kernel
 * drops the lock when the daemon dies, at once and however it dies; the
 * dead daemon's listening socket, on the other hand, can go on accepting
 * connections for a moment (io_uring tears down asynchronously), so a
 * connect() test took a just-killed daemon for a live one, and two daemons
 * starting at once could both find the path free and unlink each other's
 * socket.  With the lock: held by another process -> refused, naming its
 * pid; free -> whatever is at PATH is stale and is replaced.  PATH.lock
 * stays when the daemon stops (removing it would let a daemon that
 * opened it just before hold a lock on a file nobody else sees); it is an
 * empty file.  A pid written in a file, or SO_PEERCRED of whoever
 * answers, can be stale or reused; the lock cannot.
 *
 * The socket's folder must be trusted: owned by this user (or root) and
 * writable by nobody else, or another user could replace the socket (and
 * the lock file) under the daemon and its clients.  Missing folders are
 * created (0700, or 0755 with allow lists).  With allow lists the folder
 * must also let the allowed peers in: a folder of shmcached's own (owned
 * by this user, named shmcached*, as the defaults /run/shmcached and
 * /tmp/shmcached-UID are) that an earlier run made 0700 is opened to
 * 0755; any other folder is left alone and the start refused with what to
 * run, since opening someone's folder (e.g. $XDG_RUNTIME_DIR, which holds
 * other sockets) would expose more than shmcached.  A folder with an
 * access ACL is left to its ACL (the mode bits do not tell).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "daemon.h"
#include "listen.h"
#include "log.h"
#include "owner.h"
#include "sysd.h"

/* PATH.lock, open and claimed while this process serves PATH; -1 when the
 * socket is systemd's or not open.  One daemon, one control socket. */
static int lock_fd = -1;

/* mkdir -p for the socket's folder (the last component is the socket). */
static int make_parent(const char *path, mode_t mode)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];

	snprintf(dir, sizeof(dir), "%s", path);
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

/* Whether the peers the allow lists name can pass through a folder with
 * st: others may search it, or (groups only) its group may and is one of
 * the allowed groups. */
static bool reachable(const struct config *c, const struct stat *st)
{
	if (st->st_mode & S_IXOTH)
		return true;
	if (c->n_allow_users || !(st->st_mode & S_IXGRP))
		return false;
	for (uint32_t i = 0; i < c->n_allow_groups; i++)
		if (c->allow_groups[i] == st->st_gid)
			return true;
	return false;
}

/* Checks the folder that holds the socket (see the top of the file): that
 * it is trusted, and with reach (once the path is claimed) that the allow
 * lists' peers can enter it, opening a 0700 folder of shmcached's own to
 * 0755.  0, or -errno with err set. */
static int check_folder(const struct config *c, const char *path,
			const char *opt, bool reach, char *err, size_t errlen)
{
	char buf[sizeof(c->socket_path)];
	struct stat st;

	snprintf(buf, sizeof(buf), "%s", path);
	const char *dir = dirname(buf);
	uid_t me = geteuid();
	/* A symbolic link is as trusted as its owner, who can point it
	 * elsewhere at any time: only ours or root's is followed. */
	if (lstat(dir, &st) == 0 && S_ISLNK(st.st_mode) && st.st_uid != me &&
	    st.st_uid != 0) {
		snprintf(err, errlen,
			 "socket folder %s is a symbolic link of "
			 "uid %u, who could point it elsewhere; "
			 "give %s in a folder of your own",
			 dir, (unsigned)st.st_uid, opt);
		return -EPERM;
	}
	if (stat(dir, &st) < 0) {
		int rc = -errno;
		snprintf(err, errlen, "socket folder %s: %s", dir,
			 strerror(errno));
		return rc;
	}
	unsigned mode = (unsigned)st.st_mode & 07777;
	if (st.st_uid != me && st.st_uid != 0) {
		snprintf(err, errlen,
			 "socket folder %s belongs to uid %u "
			 "(mode %04o), not to this user (uid %u) "
			 "or root: its owner could replace the "
			 "socket; give %s in a folder of "
			 "your own",
			 dir, (unsigned)st.st_uid, mode, (unsigned)me, opt);
		return -EPERM;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen,
			 "socket folder %s (owner uid %u, mode "
			 "%04o) can be written by %s: they could "
			 "replace the socket; run chmod go-w %s, "
			 "or give %s in a folder only you "
			 "can write to",
			 dir, (unsigned)st.st_uid, mode,
			 st.st_mode & S_IWOTH ? "other users" : "its group",
			 dir, opt);
		return -EPERM;
	}
	if (!reach || (!c->n_allow_users && !c->n_allow_groups) ||
	    reachable(c, &st))
		return 0;
	/* An access ACL can let them in whatever the mode says: it decides. */
	if (getxattr(dir, "system.posix_acl_access", NULL, 0) >= 0) {
		log_info("socket folder %s has an access ACL: it decides "
			 "whether the allowed peers can reach the socket",
			 dir);
		return 0;
	}
	const char *base = strrchr(dir, '/');
	base = base ? base + 1 : dir;
	if (st.st_uid == me && strncmp(base, "shmcached", 9) == 0) {
		if (chmod(dir, 0755) == 0) {
			log_info("socket folder %s: mode %04o -> 0755, so that "
				 "the allowed peers can reach the socket",
				 dir, mode);
			return 0;
		}
		log_warn("cannot chmod %s: %s", dir, strerror(errno));
	}
	snprintf(err, errlen,
		 "the allowed users and groups cannot reach "
		 "the socket: its folder %s has mode %04o; run "
		 "chmod 0755 %s, or give %s in a folder "
		 "they can enter",
		 dir, mode, dir, opt);
	return -EACCES;
}

/* Claims PATH.lock for this process: the lock's fd in *lock_out.  0, or
 * -errno with err set (-EBUSY: another daemon serves PATH). */
static int claim_path(const char *path, const char *opt, int *lock_out,
		      char *err, size_t errlen)
{
	char lock[PATH_MAX];
	pid_t holder = 0;

	snprintf(lock, sizeof(lock), "%s.lock", path);
	int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		int rc = -errno;
		snprintf(err, errlen, "cannot open %s: %s", lock,
			 strerror(errno));
		return rc;
	}
	int rc = owner_claim(fd, &holder);
	if (rc == -EBUSY && holder > 0)
		snprintf(err, errlen,
			 "another shmcached (pid %d) is serving "
			 "%s: stop it first, or give this one "
			 "another %s",
			 (int)holder, path, opt);
	else if (rc == -EBUSY)
		snprintf(err, errlen,
			 "another shmcached (in another pid "
			 "namespace) is serving %s: stop it "
			 "first, or give this one another "
			 "%s",
			 path, opt);
	else if (rc)
		snprintf(err, errlen, "cannot lock %s: %s", lock,
			 strerror(-rc));
	if (rc) {
		close(fd);
		return rc;
	}
	*lock_out = fd;
	return 0;
}

int listen_unix(const struct config *c, const char *path, const char *opt,
		int backlog, int *lock_out, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t plen = strlen(path);
	int lock = -1;

	if (plen == 0 || plen >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path '%s' is empty or too long",
			 path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, plen);

	int rc = make_parent(path, c->n_allow_users || c->n_allow_groups
					   ? 0755
					   : 0700);
	if (rc) {
		snprintf(err, errlen, "cannot create the folder of %s: %s",
			 path, strerror(-rc));
		return rc;
	}
	if ((rc = check_folder(c, path, opt, false, err, errlen)) != 0 ||
	    (rc = claim_path(path, opt, &lock, err, errlen)) != 0)
		return rc;
	if ((rc = check_folder(c, path, opt, true, err, errlen)) != 0)
		goto fail;

	/* Ours now: what is at the path was left by a dead daemon. */
	struct stat st;
	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen,
			 "%s exists and is not a socket: remove "
			 "it, or give another %s",
			 path, opt);
		rc = -EEXIST;
		goto fail;
	}
	if (unlink(path) == 0)
		log_info("replaced the stale socket %s", path);

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	mode_t old = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot bind %s: %s", path,
			 strerror(errno));
		close(fd);
		goto fail;
	}

	/* Who may connect: the allow lists, then SO_PEERCRED at accept.
	 * One group: the socket is that group's (0660).  More than one, or
	 * any user: everyone may connect to the file (0666) and SO_PEERCRED
	 * alone decides, since a file has one group. */
	mode_t mode = 0600;
	if (c->n_allow_users || c->n_allow_groups > 1)
		mode = 0666;
	else if (c->n_allow_groups == 1)
		mode = 0660;
	if (mode == 0660 && chown(path, (uid_t)-1, c->allow_groups[0]) < 0) {
		log_warn("cannot give %s to group %u (%s): mode 0666, the "
			 "allow list alone decides",
			 path, (unsigned)c->allow_groups[0], strerror(errno));
		mode = 0666;
	}
	chmod(path, mode);

	if (listen(fd, backlog) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot listen on %s: %s", path,
			 strerror(errno));
		close(fd);
		unlink(path);
		goto fail;
	}
	log_info("listening on %s (mode %03o)", path, (unsigned)mode);
	*lock_out = lock;
	return fd;
fail:
	close(lock);
	return rc;
}

void listen_unix_close(int fd, int lock, const char *path)
{
	close(fd);
	/* Removed while PATH.lock is held: never another daemon's socket. */
	if (lock >= 0) {
		unlink(path);
		close(lock);
	}
}

int listen_open(struct daemon *d, char *err, size_t errlen)
{
	if (d->sd.listen_fd >= 0) {
		d->listen_fd = d->sd.listen_fd;
		d->listen_from_systemd = true;
		int type = 0;
		socklen_t len = sizeof(type);
		if (getsockopt(d->listen_fd, SOL_SOCKET, SO_TYPE, &type, &len) <
			    0 ||
		    type != SOCK_STREAM) {
			snprintf(err, errlen,
				 "the socket systemd passed is not "
				 "a stream socket");
			return -EINVAL;
		}
		log_info("listening on the socket passed by systemd");
		return 0;
	}
	int fd = listen_unix(&d->cfg, d->cfg.socket_path, "--socket", 512,
			     &lock_fd, err, errlen);
	if (fd < 0)
		return fd;
	d->listen_fd = fd;
	return 0;
}

void listen_close(struct daemon *d)
{
	if (d->listen_fd < 0)
		return;
	listen_unix_close(d->listen_fd, lock_fd, d->cfg.socket_path);
	d->listen_fd = -1;
	lock_fd = -1;
}
