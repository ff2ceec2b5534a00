/*
 * shmc_fixture.h - what the client tests (test_shmc_*.c) share: libshmc
 * against the real daemon, every promise of shmc.h, tested through the
 * public API only.
 *
 * Each case starts its own shmcached (daemon_util.h: throwaway socket and
 * region) so that statistics start from zero and no case sees another's
 * entries: T() gives a case a struct fx (one daemon, one handle) in its
 * cmocka state.  Cases that need several processes fork; a child never
 * returns into cmocka: it reports through its exit status (and a line on
 * stderr, CHILD_CHECK and CHILD_RC) and ends with _exit(), so neither
 * cmocka nor ASan in the child reports the parent's state.
 *
 * The geometry is the one daemon_util.h gives: 8M in 16 segments.  The
 * helpers are defined in shmc_fixture.c.
 */
#ifndef SHMC_TEST_FIXTURE_H
#define SHMC_TEST_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "daemon_util.h"
#include "fnv1a.h"
#include "shmc.h"

#define NSEG 16 /* --segments of daemon_util.h */

/* Asserts that an int-returning call gives `want`, naming both errors. */
#define assert_rc(expr, want)                                                  \
	do {                                                                   \
		int rc_ = (expr), want_ = (want);                              \
		if (rc_ != want_)                                              \
			fail_msg("%s = %d (%s), want %d (%s)", #expr, rc_,     \
				 shmc_strerror(rc_), want_,                    \
				 shmc_strerror(want_));                        \
	} while (0)

/* "Daemon unreachable", as shmc_open() and the control calls report it. */
#define assert_unreachable(expr, also)                                         \
	do {                                                                   \
		int rc_ = (expr);                                              \
		if (rc_ != -ECONNREFUSED && rc_ != SHMC_ENODAEMON &&           \
		    rc_ != (also))                                             \
			fail_msg("%s = %d (%s), want -ECONNREFUSED or "        \
				 "SHMC_ENODAEMON",                             \
				 #expr, rc_, shmc_strerror(rc_));              \
	} while (0)

/* In a forked child: report and _exit(1) instead of asserting. */
#define CHILD_CHECK(cond)                                                      \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "[child %d] %s:%d: %s\n",              \
				(int)getpid(), __FILE__, __LINE__, #cond);     \
			_exit(1);                                              \
		}                                                              \
	} while (0)

#define CHILD_RC(expr, want)                                                   \
	do {                                                                   \
		int rc_ = (expr), want_ = (want);                              \
		if (rc_ != want_) {                                            \
			fprintf(stderr,                                        \
				"[child %d] %s:%d: %s = %d (%s), want %d\n",   \
				(int)getpid(), __FILE__, __LINE__, #expr, rc_, \
				shmc_strerror(rc_), want_);                    \
			_exit(1);                                              \
		}                                                              \
	} while (0)

/* The deadline of every wait for a child, a flag or a condition: only a
 * hang reaches it, even on a busy machine under a sanitizer.  No test
 * asserts how fast something happened, only what happened. */
#define HANG_MS 30000u

typedef void (*child_fn)(void *arg);

struct fx {
	struct tdaemon d;
	shmc *c;
};

/* Lets uid 65534 (nobody) connect too, for the other-user cases. */
#define OTHER_UID 65534

/* shmc_strerror(err) holds every string of the NULL-ended list. */
void assert_says(int err, ...);

void sleep_ms(unsigned ms);

/* len bytes determined by seed alone (splitmix64 stream). */
void fill(void *buf, size_t len, uint64_t seed);

bool filled(const void *buf, size_t len, uint64_t seed);

bool all_bytes(const void *buf, size_t len, uint8_t b);

/* Sets / expects a C-string key to a C-string value. */
void set_str(shmc *c, const char *k, const char *v, uint32_t ttl);

void expect_str(shmc *c, const char *k, const char *v);

void expect_missing(shmc *c, const char *k);

void stat_of(shmc *c, struct shmc_stats *st);

/* A page shared with the children (counters, flags). */
void *shared_page(void);

/* Forks a child that runs fn(arg) and _exit(0)s. */
pid_t spawn(child_fn fn, void *arg);

/* Waits at most timeout_ms for pid; returns its exit status, 128 + signal,
 * or -ETIMEDOUT (after killing it). */
int wait_child(pid_t pid, unsigned timeout_ms);

/* Reads n bytes (from a pipe children write to one by one); returns how
 * many came before end of file. */
size_t read_full(int fd, void *buf, size_t n);

/* Polls a shared flag until it is set; false after timeout_ms. */
bool wait_flag(volatile int *flag, unsigned timeout_ms);

void set_flag(volatile int *flag);

int fx_start(void **state, const char *const *extra);

int fx_setup(void **state);

/* A short --lock-timeout, for the stuck-holder case. */
int fx_setup_short_lock(void **state);

int fx_setup_allow_other(void **state);

int fx_teardown(void **state);

/* Becomes uid/gid 65534 in a forked child, with the daemon's socket
 * reachable at the file-system level, so only the daemon can refuse. */
void become_other(void);

void open_other_user(struct fx *f);

/* A loader and a reader that should not be called: each counts its calls
 * in *(int *)arg (never_load then fails with -EIO). */
int never_load(const void *key, size_t klen, void *buf, size_t cap,
	       size_t *vlen, uint32_t *ttl_s, void *arg);

int never_read(const void *p1, size_t n1, const void *p2, size_t n2, void *arg);

#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)

#endif
