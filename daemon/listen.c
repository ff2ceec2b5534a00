/*
 * listen.c - the control socket: taken from systemd when socket-activated,
 * else created at cfg.socket_path with a mode and group that let exactly
 * the allowed peers connect (SO_PEERCRED is checked again at accept).
 *
 * A socket file left by a dead daemon is replaced; one that a live daemon
 * answers on is not (two daemons on one socket would be a mess).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"
#include "listen.h"
#include "log.h"
#include "sysd.h"

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

int listen_open(struct daemon *d, char *err, size_t errlen)
{
	const struct config *c = &d->cfg;

	if (d->sd.listen_fd >= 0) {
		d->listen_fd = d->sd.listen_fd;
		d->listen_from_systemd = true;
		int type = 0;
		socklen_t len = sizeof(type);
		if (getsockopt(d->listen_fd, SOL_SOCKET, SO_TYPE, &type, &len) <
			    0 ||
		    type != SOCK_STREAM) {
			snprintf(err, errlen, "the socket systemd passed is not "
					      "a stream socket");
			return -EINVAL;
		}
		log_info("listening on the socket passed by systemd");
		return 0;
	}

	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t plen = strlen(c->socket_path);
	if (plen == 0 || plen >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path '%s' is empty or too long",
			 c->socket_path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, c->socket_path, plen);

	int rc = make_parent(c->socket_path, c->n_allow_users ||
						     c->n_allow_groups
					     ? 0755
					     : 0700);
	if (rc) {
		snprintf(err, errlen, "cannot create the folder of %s: %s",
			 c->socket_path, strerror(-rc));
		return rc;
	}

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;

	/* A live daemon answers; a stale file refuses. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(fd);
		snprintf(err, errlen, "another shmcached is serving %s",
			 c->socket_path);
		return -EADDRINUSE;
	}
	if (errno == ECONNREFUSED)
		unlink(c->socket_path);
	close(fd);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	mode_t old = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot bind %s: %s", c->socket_path,
			 strerror(errno));
		close(fd);
		return rc;
	}

	/* Who may connect: the allow lists, then SO_PEERCRED at accept. */
	mode_t mode = 0600;
	if (c->n_allow_users)
		mode = 0666;
	else if (c->n_allow_groups)
		mode = 0660;
	if (c->n_allow_groups && !c->n_allow_users &&
	    chown(c->socket_path, (uid_t)-1, c->allow_groups[0]) < 0)
		log_warn("cannot give %s to group %u: %s", c->socket_path,
			 (unsigned)c->allow_groups[0], strerror(errno));
	chmod(c->socket_path, mode);

	if (listen(fd, 512) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	d->listen_fd = fd;
	log_info("listening on %s (mode %03o)", c->socket_path, (unsigned)mode);
	return 0;
}

void listen_close(struct daemon *d)
{
	if (d->listen_fd < 0)
		return;
	close(d->listen_fd);
	if (!d->listen_from_systemd)
		unlink(d->cfg.socket_path);
	d->listen_fd = -1;
}
