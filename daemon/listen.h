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

#endif
