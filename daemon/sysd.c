/*
 * sysd.c - socket activation, fd store and sd_notify (see sysd.h).
 */
#include "sysd.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

void sysd_listen_fds(struct sysd_fds *out)
{
	const char *pid = getenv("LISTEN_PID");
	const char *fds = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	int n = 0;

	out->listen_fd = out->region_fd = -1;
	out->n_mc_fds = 0;
	if (pid && fds) {
		char *end;
		long p = strtol(pid, &end, 10);
		long f = strtol(fds, &end, 10);
		if (p == (long)getpid() && *end == '\0' && f > 0 && f < 64)
			n = (int)f;
	}
	for (int i = 0; i < n; i++) {
		int fd = SYSD_LISTEN_FDS_START + i;
		/* The i-th colon-separated name, if any. */
		const char *name = names;
		for (int k = 0; name && k < i; k++) {
			name = strchr(name, ':');
			if (name)
				name++;
		}
		size_t len = name ? strcspn(name, ":") : 0;
		if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
			continue; /* not open: not ours, whatever they say */
		if (len == strlen(SYSD_REGION_FDNAME) &&
		    strncmp(name, SYSD_REGION_FDNAME, len) == 0)
			out->region_fd = fd;
		else if (len == strlen(SYSD_MC_FDNAME) &&
			 strncmp(name, SYSD_MC_FDNAME, len) == 0) {
			if (out->n_mc_fds < SYSD_MC_FDS_MAX)
				out->mc_fds[out->n_mc_fds++] = fd;
		} else if (out->listen_fd < 0)
			out->listen_fd = fd;
	}
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
}

int sysd_notify_fd(const char *state, int fd)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (!path || !*path)
		return 0;
	size_t len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path))
		return -EINVAL;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace */

	struct iovec iov = { .iov_base = (void *)state,
			     .iov_len = strlen(state) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm = { 0 }; /* no uninitialised padding on the wire */
	struct msghdr msg = {
		.msg_name = &sa,
		.msg_namelen =
			(socklen_t)(offsetof(struct sockaddr_un, sun_path) +
				    len),
		.msg_iov = &iov,
		.msg_iovlen = 1,
	};
	if (fd >= 0) {
		msg.msg_control = cm.buf;
		msg.msg_controllen = sizeof(cm.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	int rc = sendmsg(s, &msg, MSG_NOSIGNAL) < 0 ? -errno : 0;
	close(s);
	return rc;
}

int sysd_notify(const char *state)
{
	return sysd_notify_fd(state, -1);
}
