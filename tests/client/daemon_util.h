/*
 * daemon_util.h - starts and stops the real shmcached for the client tests.
 *
 * Each daemon gets a throwaway directory (mkdtemp) holding its socket and
 * its log, and a region name of its own (/shmc-t-<pid>-<n>), so tests never
 * meet each other's cache nor a user's.  The binary is $SHMC_DAEMON (meson
 * sets it); without it the test program cannot run and exits 77 (skipped).
 *
 * Not for production use: errors are reported on stderr and returned as
 * negative errno values for the caller to assert on.
 */
#ifndef SHMC_TEST_DAEMON_UTIL_H
#define SHMC_TEST_DAEMON_UTIL_H

#include <sys/types.h>

#define TDAEMON_MAX_EXTRA 8

struct tdaemon {
	pid_t pid;     /* the running daemon, 0 when stopped */
	char dir[64];  /* throwaway directory (mkdtemp) */
	char sock[96]; /* dir/s.sock */
	char log[96];  /* dir/daemon.log */
	char name[64]; /* /shmc-t-<pid>-<n> */
	/* more daemon arguments, NULL-ended */
	const char *extra[TDAEMON_MAX_EXTRA + 1];
	uid_t uid; /* run as this uid and gid (0: as the test runs) */
};

/* $SHMC_DAEMON; exits the program with 77 (skip) when it is not set. */
const char *tdaemon_binary(void);

/* Makes the directory and the region name, then starts the daemon and
 * waits until it answers (tdaemon_start).  extra: more daemon arguments
 * (NULL-terminated, at most TDAEMON_MAX_EXTRA; the strings must outlive
 * d), or NULL.  Returns 0 or a negative errno; on failure nothing is left
 * behind. */
int tdaemon_create(struct tdaemon *d, const char *const *extra);

/* As tdaemon_create(), with the daemon run as uid (and gid uid, no
 * supplementary groups), its directory owned by uid.  Needs root.  The
 * test process must trust uid ($SHMC_TRUST_UID) for the readiness check
 * to succeed. */
int tdaemon_create_as(struct tdaemon *d, const char *const *extra, uid_t uid);

/* Starts the daemon on d's socket and region name (again, after
 * tdaemon_stop: a warm restart) and waits, at most 10 s, until shmc_open()
 * and shmc_ping() succeed on its socket.  Returns 0, -EALREADY if it runs,
 * -ETIMEDOUT, or -ECHILD if the daemon exited (its log is printed). */
int tdaemon_start(struct tdaemon *d);

/* SIGTERM, then waits (SIGKILL after 10 s).  Returns the daemon's exit
 * status (0 for a clean stop), 128 + signal if a signal ended it, or
 * -ESRCH if it was not running. */
int tdaemon_stop(struct tdaemon *d);

/* Stops the daemon if it runs, removes the region (shm_unlink) and the
 * directory with everything in it.  d may be destroyed twice. */
void tdaemon_destroy(struct tdaemon *d);

/* Copies the daemon's log to stderr (for a failing test's diagnosis). */
void tdaemon_print_log(const struct tdaemon *d);

#endif
