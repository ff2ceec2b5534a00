/*
 * sock.h - reaching a shmcached's control socket: which path to use, the
 * connect, the check of who serves it, and the I/O timeouts.  The one
 * implementation, used by libshmc (shmc_open and its reconnections) and by
 * cachectl --no-map, so that both refuse and explain the same things.
 *
 * Not for speaking the protocol (proto.h) nor for the daemon's side.
 * A failure that names the socket leaves its words in a struct sock_err
 * that the caller owns (libshmc keeps one per thread for shmc_strerror).
 */
#ifndef SHMC_SOCK_H
#define SHMC_SOCK_H

#include <stddef.h>

/* The values of shmc.h's SHMC_ENODAEMON and SHMC_EUNTRUSTED (libshmc
 * asserts they agree): no socket at the path; served by an untrusted uid. */
#define SOCK_ENODAEMON (-10001)
#define SOCK_EUNTRUSTED (-10002)

/* Send and receive timeout set on every connection: a request that takes
 * longer fails (EAGAIN) rather than hang on a stopped daemon. */
#define SOCK_IO_TIMEOUT_S 30

#define SOCK_HOW_TO_START                                                      \
	"start the daemon (shmcached; tools/run in its source tree; "          \
	"systemctl start shmcached) or give the socket it listens on "         \
	"($SHMC_SOCKET, cachectl --socket)"

/* The words of the last failure to reach a daemon: msg explains err. */
struct sock_err {
	int err; /* 0: no words kept */
	char msg[512];
};

/* Connects to the daemon at path, checks that the peer (SO_PEERCRED) is
 * root, this euid or a uid of $SHMC_TRUST_UID, and sets the I/O timeouts.
 * Returns the descriptor (close-on-exec), or:
 *   -ENAMETOOLONG    path is empty or does not fit a Unix socket address;
 *   SOCK_ENODAEMON   no socket at path;             (words in *why)
 *   -ECONNREFUSED    nobody listens on it;          (words in *why)
 *   -EACCES          the socket's mode refuses us;  (words in *why)
 *   SOCK_EUNTRUSTED  an untrusted uid serves it;    (words in *why)
 *   another -errno of socket() or connect().
 * *why is written only when words are kept.  Thread-safe. */
int sock_connect(const char *path, struct sock_err *why);

/* Resolves the socket (arg, else $SHMC_SOCKET, else this user's default
 * socket and then the system one, PATHS_SYSTEM_SOCKET), connects as
 * sock_connect() does and writes the path used to path[n].  An arg or
 * $SHMC_SOCKET that does not fit path[n] is -ENAMETOOLONG.  Returns the
 * descriptor or sock_connect()'s errors; when neither default socket has a
 * daemon, the words in *why name both. */
int sock_open(const char *arg, char *path, size_t n, struct sock_err *why);

/* Keeps in *why the words for -EACCES from the daemon at path (its allow
 * lists refused this user) and returns -EACCES. */
int sock_denied(const char *path, struct sock_err *why);

#endif
