/*
 * listen.h - the daemon's control socket (see listen.c).
 */
#ifndef SHMC_LISTEN_H
#define SHMC_LISTEN_H

#include <stddef.h>

struct daemon;

/* Sets d->listen_fd.  Returns 0 or -errno with a one-line reason in err. */
int listen_open(struct daemon *d, char *err, size_t errlen);

/* Closes the socket and removes its file (unless systemd owns it). */
void listen_close(struct daemon *d);

struct config;

/* A listening Unix socket at path, made as the control socket is (see
 * listen.c): its folder checked (and created), PATH.lock claimed, a stale
 * socket replaced, the mode from c's allow lists.  opt names the option
 * in messages ("--socket").  Returns the socket (non-blocking, close on
 * exec) with the claimed lock's fd in *lock_fd, or -errno with a one-line
 * reason in err (-EBUSY: another daemon serves path). */
int listen_unix(const struct config *c, const char *path, const char *opt,
		int backlog, int *lock_fd, char *err, size_t errlen);

/* Closes a socket of listen_unix() and, holding its lock (lock_fd >= 0),
 * removes its file, then releases the lock.  With lock_fd -1 (a socket
 * that is not ours, e.g. systemd's) the file stays. */
void listen_unix_close(int fd, int lock_fd, const char *path);

#endif
