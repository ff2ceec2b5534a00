/*
 * test_shmc.c - libshmc against the real daemon: every promise of shmc.h,
 * tested through the public API only.
 *
 * Each case starts its own shmcached (daemon_util.h: throwaway socket and
 * region) so that statistics start from zero and no case sees another's
 * entries.  Cases that need several processes fork; a child never returns
 * into cmocka: it reports through its exit status (and a line on stderr)
 * and ends with _exit(), so neither cmocka nor ASan in the child reports
 * the parent's state.
 *
 * The geometry is the one daemon_util.h gives: 8M in 16 segments.
 */
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
#include "shmc.h"

#define NSEG 16 /* --segments of daemon_util.h */

/* ========================================================================
 * Helpers
 * ======================================================================== */

/* Asserts that an int-returning call gives `want`, naming both errors. */
#define assert_rc(expr, want)                                               \
	do {                                                                \
		int rc_ = (expr), want_ = (want);                           \
		if (rc_ != want_)                                           \
			fail_msg("%s = %d (%s), want %d (%s)", #expr, rc_,  \
				 shmc_strerror(rc_), want_,                 \
				 shmc_strerror(want_));                     \
	} while (0)

/* "Daemon unreachable", as shmc_open() and the control calls report it. */
#define assert_unreachable(expr, also)                                      \
	do {                                                                \
		int rc_ = (expr);                                           \
		if (rc_ != -ECONNREFUSED && rc_ != SHMC_ENODAEMON &&        \
		    rc_ != (also))                                          \
			fail_msg("%s = %d (%s), want -ECONNREFUSED or "     \
				 "SHMC_ENODAEMON",                          \
				 #expr, rc_, shmc_strerror(rc_));           \
	} while (0)

/* shmc_strerror(err) holds every string of the NULL-ended list. */
static void assert_says(int err, ...)
{
	const char *text = shmc_strerror(err), *want;
	va_list ap;

	va_start(ap, err);
	while ((want = va_arg(ap, const char *)))
		if (!strstr(text, want))
			fail_msg("shmc_strerror(%d) = \"%s\" lacks \"%s\"", err,
				 text, want);
	va_end(ap);
}

/* In a forked child: report and _exit(1) instead of asserting. */
#define CHILD_CHECK(cond)                                                   \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "[child %d] %s:%d: %s\n",           \
				(int)getpid(), __FILE__, __LINE__, #cond);  \
			_exit(1);                                           \
		}                                                           \
	} while (0)

#define CHILD_RC(expr, want)                                                \
	do {                                                                \
		int rc_ = (expr), want_ = (want);                           \
		if (rc_ != want_) {                                         \
			fprintf(stderr,                                     \
				"[child %d] %s:%d: %s = %d (%s), want %d\n", \
				(int)getpid(), __FILE__, __LINE__, #expr,   \
				rc_, shmc_strerror(rc_), want_);            \
			_exit(1);                                           \
		}                                                           \
	} while (0)

static uint64_t now_ms(void)
{
	return clock_mono_ms();
}

/* The deadline of every wait for a child, a flag or a condition: only a
 * hang reaches it, even on a busy machine under a sanitizer.  No test
 * asserts how fast something happened, only what happened. */
#define HANG_MS 30000u

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* FNV-1a 64: the tests' own hash. */
static uint64_t hash64(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t h = UINT64_C(0xcbf29ce484222325);

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

/* len bytes determined by seed alone (splitmix64 stream). */
static void fill(void *buf, size_t len, uint64_t seed)
{
	uint8_t *p = buf;

	for (size_t i = 0; i < len; i++) {
		if (i % 8 == 0) {
			uint64_t z = (seed += UINT64_C(0x9e3779b97f4a7c15));

			z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
			z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
			seed ^= z ^ (z >> 31);
		}
		p[i] = (uint8_t)(seed >> (8 * (i % 8)));
	}
}

static bool filled(const void *buf, size_t len, uint64_t seed)
{
	uint8_t tmp[256];
	const uint8_t *p = buf;

	/* Regenerate in one go when small (the common case), else compare
	 * against a heap copy. */
	if (len <= sizeof(tmp)) {
		fill(tmp, len, seed);
		return memcmp(tmp, p, len) == 0;
	}
	uint8_t *big = malloc(len);
	bool ok;

	if (!big)
		return false;
	fill(big, len, seed);
	ok = memcmp(big, p, len) == 0;
	free(big);
	return ok;
}

static bool all_bytes(const void *buf, size_t len, uint8_t b)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i] != b)
			return false;
	return true;
}

/* Sets / expects a C-string key to a C-string value. */
static void set_str(shmc *c, const char *k, const char *v, uint32_t ttl)
{
	assert_rc(shmc_set(c, k, strlen(k), v, strlen(v), ttl), 0);
}

static void expect_str(shmc *c, const char *k, const char *v)
{
	char buf[512];
	size_t n = 0;

	assert_rc(shmc_get(c, k, strlen(k), buf, sizeof(buf), &n), 0);
	assert_int_equal(n, strlen(v));
	assert_memory_equal(buf, v, n);
}

static void expect_missing(shmc *c, const char *k)
{
	char buf[64];
	size_t n;

	assert_rc(shmc_get(c, k, strlen(k), buf, sizeof(buf), &n), -ENOENT);
}

static void stat_of(shmc *c, struct shmc_stats *st)
{
	memset(st, 0xee, sizeof(*st));
	assert_rc(shmc_stat(c, st), 0);
}

/* A page shared with the children (counters, flags). */
static void *shared_page(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	memset(p, 0, 4096);
	return p;
}

typedef void (*child_fn)(void *arg);

/* Forks a child that runs fn(arg) and _exit(0)s. */
static pid_t spawn(child_fn fn, void *arg)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fn(arg);
		_exit(0);
	}
	return pid;
}

/* Waits at most timeout_ms for pid; returns its exit status, 128 + signal,
 * or -ETIMEDOUT (after killing it). */
static int wait_child(pid_t pid, unsigned timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st)
					     : 128 + WTERMSIG(st);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (now_ms() >= end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -ETIMEDOUT;
		}
		sleep_ms(2);
	}
}

/* Reads n bytes (from a pipe children write to one by one); returns how
 * many came before end of file. */
static size_t read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, (char *)buf + got, n - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

/* Polls a shared flag until it is set; false after timeout_ms. */
static bool wait_flag(volatile int *flag, unsigned timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;

	while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE)) {
		if (now_ms() >= end)
			return false;
		sleep_ms(1);
	}
	return true;
}

static void set_flag(volatile int *flag)
{
	__atomic_store_n(flag, 1, __ATOMIC_RELEASE);
}

/* ========================================================================
 * Fixture: one daemon and one handle per case
 * ======================================================================== */

struct fx {
	struct tdaemon d;
	shmc *c;
};

static int fx_start(void **state, const char *const *extra)
{
	struct fx *f = calloc(1, sizeof(*f));
	int rc;

	/* cmocka skips the teardown when the setup fails: clean up here. */
	*state = NULL;
	if (!f)
		return -1;
	rc = tdaemon_create(&f->d, extra);
	if (rc != 0) {
		fprintf(stderr, "starting the daemon: %s\n", strerror(-rc));
		free(f);
		return -1;
	}
	rc = shmc_open(&f->c, f->d.sock);
	if (rc != 0) {
		fprintf(stderr, "shmc_open(%s): %s\n", f->d.sock,
			shmc_strerror(rc));
		tdaemon_destroy(&f->d);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int fx_setup(void **state)
{
	return fx_start(state, NULL);
}

/* A short --lock-timeout, for the stuck-holder case. */
static int fx_setup_short_lock(void **state)
{
	static const char *const extra[] = { "--lock-timeout", "300", NULL };

	return fx_start(state, extra);
}

/* Lets uid 65534 (nobody) connect too, for the other-user cases. */
#define OTHER_UID 65534

static int fx_setup_allow_other(void **state)
{
	static const char *const extra[] = { "--allow-user", "65534", NULL };

	return fx_start(state, extra);
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;

	int rc = 0;

	if (!f)
		return 0;
	shmc_close(f->c);
	/* A daemon that does not stop cleanly (a crash, a sanitizer report)
	 * fails the case that was talking to it. */
	if (f->d.pid > 0) {
		int st = tdaemon_stop(&f->d);

		if (st != 0) {
			fprintf(stderr, "the daemon exited with %d:\n", st);
			tdaemon_print_log(&f->d);
			rc = -1;
		}
	}
	tdaemon_destroy(&f->d);
	free(f);
	return rc;
}

/* ========================================================================
 * Opening and closing
 * ======================================================================== */

/* The library says the version its header says, in both forms. */
static void test_shmc_version_matches_the_header(void **state)
{
	int major = -1, minor = -1, patch = -1;
	char want[32];

	(void)state;
	snprintf(want, sizeof(want), "%d.%d.%d", SHMC_VERSION_MAJOR,
		 SHMC_VERSION_MINOR, SHMC_VERSION_PATCH);
	assert_string_equal(shmc_version(&major, &minor, &patch), want);
	assert_string_equal(shmc_version(NULL, NULL, NULL), SHMC_VERSION);
	assert_int_equal(major, SHMC_VERSION_MAJOR);
	assert_int_equal(minor, SHMC_VERSION_MINOR);
	assert_int_equal(patch, SHMC_VERSION_PATCH);
}

static void test_shmc_open_explicit_path(void **state)
{
	struct fx *f = *state;
	shmc *c2 = NULL;

	assert_rc(shmc_open(&c2, f->d.sock), 0);
	assert_non_null(c2);
	/* The same cache as the fixture's handle, both ways. */
	set_str(f->c, "from-one", "1", 0);
	expect_str(c2, "from-one", "1");
	set_str(c2, "from-two", "2", 0);
	expect_str(f->c, "from-two", "2");
	assert_rc(shmc_ping(c2), 0);
	shmc_close(c2);
	/* Closing one handle leaves the other working. */
	expect_str(f->c, "from-two", "2");
}

static void test_shmc_open_env_socket(void **state)
{
	struct fx *f = *state;
	char *saved = getenv("SHMC_SOCKET") ? strdup(getenv("SHMC_SOCKET"))
					    : NULL;
	char gone[sizeof(f->d.dir) + 16];
	shmc *c2 = NULL;
	int rc_ok, rc_gone;

	setenv("SHMC_SOCKET", f->d.sock, 1);
	rc_ok = shmc_open(&c2, NULL);
	/* And $SHMC_SOCKET really is what NULL means: a dead path fails. */
	snprintf(gone, sizeof(gone), "%s/none.sock", f->d.dir);
	setenv("SHMC_SOCKET", gone, 1);
	{
		shmc *c3 = NULL;

		rc_gone = shmc_open(&c3, NULL);
		if (rc_gone == 0)
			shmc_close(c3);
	}
	if (saved)
		setenv("SHMC_SOCKET", saved, 1);
	else
		unsetenv("SHMC_SOCKET");
	free(saved);

	assert_rc(rc_ok, 0);
	set_str(f->c, "env", "yes", 0);
	expect_str(c2, "env", "yes");
	shmc_close(c2);
	assert_unreachable(rc_gone, -ENOENT);
}

static void test_shmc_open_no_daemon(void **state)
{
	char dir[] = "/tmp/shmc-t-nod-XXXXXX";
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	shmc *c = NULL;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));

	/* Nothing at the path: not "a missing key", but the path and how to
	 * start the daemon. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/none.sock", dir);
	assert_rc(shmc_open(&c, sa.sun_path), SHMC_ENODAEMON);
	assert_says(SHMC_ENODAEMON, sa.sun_path, "start the daemon",
		    "SHMC_SOCKET", NULL);
	assert_null(strstr(shmc_strerror(SHMC_ENODAEMON), "key"));

	/* A socket file nobody listens on (a daemon that died). */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/dead.sock", dir);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_rc(shmc_open(&c, sa.sun_path), -ECONNREFUSED);
	assert_says(-ECONNREFUSED, sa.sun_path, "start the daemon", NULL);
	close(fd);
	unlink(sa.sun_path);
	rmdir(dir);
}

/* Becomes uid/gid 65534 in a forked child, with the daemon's socket
 * reachable at the file-system level, so only the daemon can refuse. */
static void become_other(void)
{
	CHILD_CHECK(setgroups(0, NULL) == 0);
	CHILD_CHECK(setgid(OTHER_UID) == 0);
	CHILD_CHECK(setuid(OTHER_UID) == 0);
}

static void open_other_user(struct fx *f)
{
	if (geteuid() != 0)
		skip(); /* needs root to become another user */
	assert_int_equal(chmod(f->d.dir, 0711), 0);
	assert_int_equal(chmod(f->d.sock, 0666), 0);
}

static void refused_child(void *p)
{
	const char *text;
	shmc *c = NULL;

	become_other();
	CHILD_RC(shmc_open(&c, p), -EACCES);
	/* The refusal names the socket, this user and the allow lists. */
	text = shmc_strerror(-EACCES);
	CHILD_CHECK(strstr(text, p));
	CHILD_CHECK(strstr(text, "uid 65534"));
	CHILD_CHECK(strstr(text, "--allow-user 65534"));
	CHILD_CHECK(strstr(text, "--allow-group"));
}

static void test_shmc_open_refused_user(void **state)
{
	struct fx *f = *state;

	open_other_user(f);
	assert_int_equal(wait_child(spawn(refused_child, f->d.sock), HANG_MS),
			 0);
	assert_rc(shmc_ping(f->c), 0);
}

/* A fake "daemon" run by uid 65534 on its own path: it accepts one
 * connection at a time, reads until the client sends a byte or closes,
 * closes it, and writes how many bytes it got (an int) to its pipe. */
struct fake_server {
	pid_t pid;
	char dir[32];
	char sock[64];
	int report; /* read end of the counts */
};

static void fake_server_start(struct fake_server *fs)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int rep[2], ready[2];
	char b;

	if (geteuid() != 0)
		skip(); /* needs root to become another user */
	snprintf(fs->dir, sizeof(fs->dir), "/tmp/shmc-t-fake-XXXXXX");
	assert_non_null(mkdtemp(fs->dir));
	assert_int_equal(chmod(fs->dir, 0777), 0); /* the other user binds */
	snprintf(fs->sock, sizeof(fs->sock), "%s/s.sock", fs->dir);
	assert_int_equal(pipe(rep), 0);
	assert_int_equal(pipe(ready), 0);
	fflush(NULL);
	fs->pid = fork();
	assert_true(fs->pid >= 0);
	if (fs->pid == 0) {
		int l;

		close(rep[0]);
		close(ready[0]);
		become_other();
		/* Ends with a failed case too (after the uid change, which
		 * clears the setting). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fs->sock);
		l = socket(AF_UNIX, SOCK_STREAM, 0);
		CHILD_CHECK(l >= 0);
		CHILD_CHECK(bind(l, (struct sockaddr *)&sa, sizeof(sa)) == 0);
		chmod(fs->sock, 0666);
		CHILD_CHECK(listen(l, 4) == 0);
		CHILD_CHECK(write(ready[1], "r", 1) == 1);
		for (;;) {
			int fd = accept(l, NULL, NULL);
			char buf[256];
			int got;

			if (fd < 0)
				_exit(errno == EINTR ? 0 : 1);
			got = (int)read(fd, buf, sizeof(buf));
			close(fd);
			if (write(rep[1], &got, sizeof(got)) != sizeof(got))
				_exit(0); /* the test is done */
		}
	}
	close(rep[1]);
	close(ready[1]);
	fs->report = rep[0];
	assert_int_equal(read(ready[0], &b, 1), 1);
	close(ready[0]);
}

/* The bytes the fake server received on its last connection. */
static int fake_server_got(struct fake_server *fs)
{
	int got = -1;

	assert_int_equal(read_full(fs->report, &got, sizeof(got)),
			 sizeof(got));
	return got;
}

static void fake_server_stop(struct fake_server *fs)
{
	close(fs->report);
	kill(fs->pid, SIGKILL);
	waitpid(fs->pid, NULL, 0);
	unlink(fs->sock);
	rmdir(fs->dir);
}

/* Restores $SHMC_TRUST_UID as it was before the case. */
static char *trust_saved;

static void trust_set(const char *v)
{
	if (!trust_saved && getenv("SHMC_TRUST_UID"))
		trust_saved = strdup(getenv("SHMC_TRUST_UID"));
	if (v)
		setenv("SHMC_TRUST_UID", v, 1);
	else
		unsetenv("SHMC_TRUST_UID");
}

static void trust_restore(void)
{
	trust_set(trust_saved);
	free(trust_saved);
	trust_saved = NULL;
}

/* A socket served by another user is refused before the library sends a
 * byte, with words that name the path, the uid and the remedy; trusting
 * that uid lets the HELLO go out. */
static void test_shmc_open_refuses_untrusted_peer(void **state)
{
	struct fake_server fs;
	shmc *c = NULL;
	int rc;

	(void)state;
	fake_server_start(&fs);
	trust_set(NULL);
	assert_rc(shmc_open(&c, fs.sock), SHMC_EUNTRUSTED);
	assert_null(c);
	assert_int_equal(fake_server_got(&fs), 0); /* not a byte */
	assert_says(SHMC_EUNTRUSTED, fs.sock, "uid 65534",
		    "SHMC_TRUST_UID=65534", NULL);

	/* Other uids trusted, or a list that is not one: still refused. */
	trust_set("1000,1001");
	assert_rc(shmc_open(&c, fs.sock), SHMC_EUNTRUSTED);
	assert_int_equal(fake_server_got(&fs), 0);
	trust_set("65534x");
	assert_rc(shmc_open(&c, fs.sock), SHMC_EUNTRUSTED);
	assert_int_equal(fake_server_got(&fs), 0);
	assert_says(SHMC_EUNTRUSTED, "not a comma-separated list", NULL);

	/* Trusted: the handshake is sent (this server then hangs up). */
	trust_set("1000,65534");
	rc = shmc_open(&c, fs.sock);
	assert_true(rc < 0 && rc != SHMC_EUNTRUSTED);
	assert_true(fake_server_got(&fs) > 0);
	trust_restore();
	fake_server_stop(&fs);
}

/* A real daemon run by a trusted uid other than ours works in full. */
static void test_shmc_open_trusted_other_uid(void **state)
{
	struct tdaemon d;
	shmc *c = NULL;

	(void)state;
	if (geteuid() != 0)
		skip();
	trust_set("65534");
	assert_rc(tdaemon_create_as(&d, NULL, OTHER_UID), 0);
	assert_rc(shmc_open(&c, d.sock), 0);
	set_str(c, "k", "served by nobody", 0);
	expect_str(c, "k", "served by nobody");
	assert_rc(shmc_ping(c), 0);
	/* Distrusted later: reconnecting is refused, the mapping works. */
	assert_int_equal(tdaemon_stop(&d), 0);
	assert_rc(tdaemon_start(&d), 0);
	trust_set(NULL);
	assert_rc(shmc_ping(c), SHMC_EUNTRUSTED);
	expect_str(c, "k", "served by nobody");
	trust_restore();
	shmc_close(c);
	tdaemon_destroy(&d);
}

static void test_shmc_close_null(void **state)
{
	(void)state;
	shmc_close(NULL); /* must simply return */
}

/* ========================================================================
 * Data operations
 * ======================================================================== */

static void test_shmc_set_get_round_trip(void **state)
{
	struct fx *f = *state;
	size_t n = 99;

	set_str(f->c, "alpha", "one", 0);
	expect_str(f->c, "alpha", "one");
	/* Replacing with a longer and then a shorter value. */
	set_str(f->c, "alpha", "one-two-three-four", 0);
	expect_str(f->c, "alpha", "one-two-three-four");
	set_str(f->c, "alpha", "x", 0);
	expect_str(f->c, "alpha", "x");
	/* Keys are distinct from their prefixes. */
	expect_missing(f->c, "alph");
	expect_missing(f->c, "alpha2");
	/* An empty value is a value. */
	assert_rc(shmc_set(f->c, "empty", 5, "", 0, 0), 0);
	assert_rc(shmc_get(f->c, "empty", 5, NULL, 0, &n), 0);
	assert_int_equal(n, 0);
}

static void test_shmc_get_small_buffer(void **state)
{
	struct fx *f = *state;
	uint8_t val[100], buf[100];
	uint32_t exp = 7;
	size_t n;

	fill(val, sizeof(val), 1);
	assert_rc(shmc_set(f->c, "k", 1, val, sizeof(val), 0), 0);

	memset(buf, 0xa5, sizeof(buf));
	n = 0;
	assert_rc(shmc_get(f->c, "k", 1, buf, 99, &n), -ENOBUFS);
	assert_int_equal(n, 100);
	assert_true(all_bytes(buf, sizeof(buf), 0xa5));

	n = 0;
	assert_rc(shmc_get_ex(f->c, "k", 1, buf, 50, &n, &exp), -ENOBUFS);
	assert_int_equal(n, 100);
	assert_true(all_bytes(buf, sizeof(buf), 0xa5));

	n = 0;
	assert_rc(shmc_peek(f->c, "k", 1, buf, 1, &n), -ENOBUFS);
	assert_int_equal(n, 100);
	assert_true(all_bytes(buf, sizeof(buf), 0xa5));

	/* Exactly enough room is enough. */
	assert_rc(shmc_get(f->c, "k", 1, buf, 100, &n), 0);
	assert_int_equal(n, 100);
	assert_memory_equal(buf, val, 100);
}

/* "hits: gets that found a live entry" - a get that found one but had
 * too small a buffer included. */
static void test_shmc_get_enobufs_counts_hit(void **state)
{
	struct fx *f = *state;
	struct shmc_stats a, b;
	char buf[4];
	size_t n;

	set_str(f->c, "k", "value", 0);
	stat_of(f->c, &a);
	assert_rc(shmc_get(f->c, "k", 1, buf, sizeof(buf), &n), -ENOBUFS);
	assert_rc(shmc_get(f->c, "k", 1, NULL, 0, &n), -ENOBUFS);
	stat_of(f->c, &b);
	assert_int_equal(b.misses, a.misses);
	assert_int_equal(b.hits, a.hits + 2);
}

static void test_shmc_get_length_only(void **state)
{
	struct fx *f = *state;
	uint8_t val[300];
	size_t n = 0;

	fill(val, sizeof(val), 2);
	assert_rc(shmc_set(f->c, "sized", 5, val, sizeof(val), 0), 0);
	assert_rc(shmc_get(f->c, "sized", 5, NULL, 0, &n), -ENOBUFS);
	assert_int_equal(n, 300);
	assert_rc(shmc_get(f->c, "nope", 4, NULL, 0, &n), -ENOENT);
}

static void test_shmc_get_ex_expire_at(void **state)
{
	struct fx *f = *state;
	char buf[16];
	size_t n;
	uint32_t exp = 12345;
	uint32_t now = (uint32_t)time(NULL);

	set_str(f->c, "timed", "v", 100);
	assert_rc(shmc_get_ex(f->c, "timed", 5, buf, sizeof(buf), &n, &exp),
		  0);
	assert_int_equal(n, 1);
	assert_memory_equal(buf, "v", 1);
	/* The cache's clock is unix seconds, ticked by the daemon. */
	if (exp < now + 98 || exp > now + 102)
		fail_msg("expire_at %u, want about %u", exp, now + 100);

	exp = 12345;
	set_str(f->c, "forever", "w", 0);
	assert_rc(shmc_get_ex(f->c, "forever", 7, buf, sizeof(buf), &n, &exp),
		  0);
	assert_int_equal(exp, 0);
	/* expire_at is optional. */
	assert_rc(shmc_get_ex(f->c, "forever", 7, buf, sizeof(buf), &n, NULL),
		  0);
	assert_rc(shmc_get_ex(f->c, "nope", 4, buf, sizeof(buf), &n, &exp),
		  -ENOENT);
}

static void test_shmc_peek_changes_no_stats(void **state)
{
	struct fx *f = *state;
	struct shmc_stats a, b;
	char buf[64];
	size_t n;

	set_str(f->c, "seen", "peeked value", 0);
	stat_of(f->c, &a);
	assert_rc(shmc_peek(f->c, "seen", 4, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, 12);
	assert_memory_equal(buf, "peeked value", 12);
	assert_rc(shmc_peek(f->c, "unseen", 6, buf, sizeof(buf), &n),
		  -ENOENT);
	assert_rc(shmc_peek(f->c, "seen", 4, buf, 3, &n), -ENOBUFS);
	stat_of(f->c, &b);
	assert_int_equal(b.hits, a.hits);
	assert_int_equal(b.misses, a.misses);

	/* Whereas a get does count (so the comparison above can fail). */
	assert_rc(shmc_get(f->c, "seen", 4, buf, sizeof(buf), &n), 0);
	assert_rc(shmc_get(f->c, "unseen", 6, buf, sizeof(buf), &n), -ENOENT);
	stat_of(f->c, &b);
	assert_int_equal(b.hits, a.hits + 1);
	assert_int_equal(b.misses, a.misses + 1);
}

static void test_shmc_del(void **state)
{
	struct fx *f = *state;
	struct shmc_stats st;

	set_str(f->c, "doomed", "v", 0);
	set_str(f->c, "kept", "w", 0);
	assert_rc(shmc_del(f->c, "doomed", 6), 0);
	expect_missing(f->c, "doomed");
	expect_str(f->c, "kept", "w");
	assert_rc(shmc_del(f->c, "doomed", 6), -ENOENT);
	assert_rc(shmc_del(f->c, "never-set", 9), -ENOENT);
	stat_of(f->c, &st);
	assert_int_equal(st.deletes, 1);
	assert_int_equal(st.entries, 1);
	/* A deleted key can be set again. */
	set_str(f->c, "doomed", "again", 0);
	expect_str(f->c, "doomed", "again");
}

static void test_shmc_ttl(void **state)
{
	struct fx *f = *state;
	uint32_t t = 777;

	set_str(f->c, "forever", "v", 0);
	assert_rc(shmc_ttl(f->c, "forever", 7, &t), 0);
	assert_int_equal(t, 0);

	set_str(f->c, "hundred", "v", 100);
	assert_rc(shmc_ttl(f->c, "hundred", 7, &t), 0);
	if (t != 99 && t != 100)
		fail_msg("ttl %u after a set with TTL 100", t);

	assert_rc(shmc_ttl(f->c, "nope", 4, &t), -ENOENT);
}

static void test_shmc_touch(void **state)
{
	struct fx *f = *state;
	uint32_t t = 777, exp = 0, now;
	char buf[8];
	size_t n;

	set_str(f->c, "k", "value", 0);
	now = (uint32_t)time(NULL);
	assert_rc(shmc_touch(f->c, "k", 1, 50), 0);
	assert_rc(shmc_ttl(f->c, "k", 1, &t), 0);
	if (t != 49 && t != 50)
		fail_msg("ttl %u after touch 50", t);
	assert_rc(shmc_get_ex(f->c, "k", 1, buf, sizeof(buf), &n, &exp), 0);
	if (exp < now + 48 || exp > now + 52)
		fail_msg("expire_at %u after touch 50, want about %u", exp,
			 now + 50);
	/* The value is untouched by touch. */
	expect_str(f->c, "k", "value");

	/* Back to no expiry. */
	assert_rc(shmc_touch(f->c, "k", 1, 0), 0);
	assert_rc(shmc_ttl(f->c, "k", 1, &t), 0);
	assert_int_equal(t, 0);

	assert_rc(shmc_touch(f->c, "nope", 4, 10), -ENOENT);
	expect_missing(f->c, "nope");
}

static void test_shmc_expiry(void **state)
{
	struct fx *f = *state;
	struct shmc_stats a, b;
	uint32_t t;
	char buf[8];
	size_t n;

	set_str(f->c, "short", "lived", 1);
	set_str(f->c, "long", "lived", 0);
	expect_str(f->c, "short", "lived");
	/* The daemon ticks the clock in whole seconds: gone within about
	 * 2 s, later on a busy machine.  Polled through shmc_ttl(). */
	uint64_t end = now_ms() + HANG_MS;
	while (shmc_ttl(f->c, "short", 5, &t) == 0 && now_ms() < end)
		sleep_ms(20);
	stat_of(f->c, &a);
	expect_missing(f->c, "short");
	stat_of(f->c, &b);
	assert_int_equal(b.misses, a.misses + 1); /* an expired get misses */
	assert_int_equal(b.hits, a.hits);
	assert_rc(shmc_peek(f->c, "short", 5, buf, sizeof(buf), &n), -ENOENT);
	assert_rc(shmc_ttl(f->c, "short", 5, &t), -ENOENT);
	assert_rc(shmc_touch(f->c, "short", 5, 100), -ENOENT);
	assert_rc(shmc_del(f->c, "short", 5), -ENOENT);
	expect_missing(f->c, "short");
	expect_str(f->c, "long", "lived");
}

static void test_shmc_clear(void **state)
{
	struct fx *f = *state;
	struct shmc_stats st;
	char k[32];

	for (int i = 0; i < 100; i++) {
		snprintf(k, sizeof(k), "key-%d", i);
		set_str(f->c, k, "v", 0);
	}
	stat_of(f->c, &st);
	assert_int_equal(st.entries, 100);

	assert_rc(shmc_clear(f->c), 0);
	stat_of(f->c, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.sets, 100); /* counters are kept */
	for (int i = 0; i < 100; i++) {
		snprintf(k, sizeof(k), "key-%d", i);
		expect_missing(f->c, k);
	}
	/* The cache works after a clear. */
	set_str(f->c, "key-1", "after", 0);
	expect_str(f->c, "key-1", "after");
}

static void test_shmc_stat_counts(void **state)
{
	struct fx *f = *state;
	struct shmc_stats st;
	uint64_t live_bytes = 0;
	char k[32], v[64];

	stat_of(f->c, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.sets, 0);
	assert_int_equal(st.hits, 0);
	assert_int_equal(st.misses, 0);

	for (int i = 0; i < 50; i++) { /* 50 sets */
		snprintf(k, sizeof(k), "k%d", i);
		snprintf(v, sizeof(v), "value-%d", i);
		set_str(f->c, k, v, 0);
	}
	for (int i = 0; i < 10; i++) { /* 10 overwrites */
		snprintf(k, sizeof(k), "k%d", i);
		snprintf(v, sizeof(v), "value-%d", i);
		set_str(f->c, k, v, 0);
	}
	for (int i = 0; i < 30; i++) { /* 30 hits */
		snprintf(k, sizeof(k), "k%d", i);
		snprintf(v, sizeof(v), "value-%d", i);
		expect_str(f->c, k, v);
	}
	for (int i = 0; i < 20; i++) { /* 20 misses */
		snprintf(k, sizeof(k), "m%d", i);
		expect_missing(f->c, k);
	}
	for (int i = 40; i < 45; i++) { /* 5 deletes */
		snprintf(k, sizeof(k), "k%d", i);
		assert_rc(shmc_del(f->c, k, strlen(k)), 0);
	}
	assert_rc(shmc_del(f->c, "m0", 2), -ENOENT); /* not a delete */
	for (int i = 0; i < 50; i++) {
		if (i >= 40 && i < 45)
			continue;
		live_bytes += (uint64_t)snprintf(k, sizeof(k), "k%d", i);
		live_bytes += (uint64_t)snprintf(v, sizeof(v), "value-%d", i);
	}

	stat_of(f->c, &st);
	assert_int_equal(st.sets, 60);
	assert_int_equal(st.overwrites, 10);
	assert_int_equal(st.hits, 30);
	assert_int_equal(st.misses, 20);
	assert_int_equal(st.deletes, 5);
	assert_int_equal(st.entries, 45);
	assert_int_equal(st.evictions, 0);
	assert_int_equal(st.segments, NSEG);
	assert_int_equal(shmc_segments(f->c), NSEG);
	assert_true(st.bytes_total > 0);
	/* The ring holds at least the keys and values of the live entries. */
	assert_true(st.bytes_used >= live_bytes);
	assert_true(st.bytes_used <= st.bytes_total);
}

static void test_shmc_seg_stat_sums(void **state)
{
	struct fx *f = *state;
	struct shmc_stats tot, seg, sum;
	char k[32], buf[32];
	size_t n;

	for (int i = 0; i < 400; i++) {
		snprintf(k, sizeof(k), "s%d", i);
		set_str(f->c, k, "some value", i % 3 ? 0 : 100);
	}
	for (int i = 0; i < 500; i += 2) {
		snprintf(k, sizeof(k), "s%d", i);
		shmc_get(f->c, k, strlen(k), buf, sizeof(buf), &n);
	}
	/* Gets of an entry in use: answered without the lock. */
	for (int i = 0; i < 8; i++)
		assert_rc(shmc_get(f->c, "s2", 2, buf, sizeof(buf), &n), 0);
	for (int i = 0; i < 400; i += 7) {
		snprintf(k, sizeof(k), "s%d", i);
		assert_rc(shmc_del(f->c, k, strlen(k)), 0);
	}
	for (int i = 1; i < 400; i += 5) {
		snprintf(k, sizeof(k), "s%d", i);
		shmc_set(f->c, k, strlen(k), "x", 1, 0);
	}

	stat_of(f->c, &tot);
	memset(&sum, 0, sizeof(sum));
	assert_int_equal(shmc_segments(f->c), NSEG);
	for (uint32_t s = 0; s < shmc_segments(f->c); s++) {
		memset(&seg, 0xee, sizeof(seg));
		assert_rc(shmc_seg_stat(f->c, s, &seg), 0);
		assert_true(seg.bytes_total > 0);
		sum.hits += seg.hits;
		sum.misses += seg.misses;
		sum.sets += seg.sets;
		sum.overwrites += seg.overwrites;
		sum.deletes += seg.deletes;
		sum.evictions += seg.evictions;
		sum.moves += seg.moves;
		sum.expirations += seg.expirations;
		sum.repairs += seg.repairs;
		sum.entries += seg.entries;
		sum.bytes_used += seg.bytes_used;
		sum.bytes_total += seg.bytes_total;
		sum.segments += seg.segments;
	}
	/* Every counter summed below has moved. */
	assert_true(tot.hits > 0);
	assert_true(tot.misses > 0);
	assert_true(tot.deletes > 0);
	assert_true(tot.overwrites > 0);
	/* A segment counts only the gets that took its lock; the others are
	 * counted by client and appear in the totals alone. */
	assert_true(sum.hits < tot.hits);
	assert_true(sum.misses <= tot.misses);
	assert_int_equal(sum.sets, tot.sets);
	assert_int_equal(sum.overwrites, tot.overwrites);
	assert_int_equal(sum.deletes, tot.deletes);
	assert_int_equal(sum.evictions, tot.evictions);
	assert_int_equal(sum.moves, tot.moves);
	assert_int_equal(sum.expirations, tot.expirations);
	assert_int_equal(sum.repairs, tot.repairs);
	assert_int_equal(sum.entries, tot.entries);
	assert_int_equal(sum.bytes_used, tot.bytes_used);
	assert_int_equal(sum.bytes_total, tot.bytes_total);
	assert_int_equal(sum.segments, tot.segments);
	assert_int_equal(tot.segments, NSEG);

	assert_rc(shmc_seg_stat(f->c, NSEG, &seg), -EINVAL);
	assert_rc(shmc_seg_stat(f->c, UINT32_MAX, &seg), -EINVAL);
}

static void test_shmc_limits(void **state)
{
	struct fx *f = *state;
	struct shmc_stats seg;
	size_t max = shmc_max_item(f->c);
	shmc *c2;

	assert_int_equal(shmc_segments(f->c), NSEG);
	/* "a quarter of a segment's ring" */
	assert_rc(shmc_seg_stat(f->c, 0, &seg), 0);
	if (max == 0 || max > seg.bytes_total / 4 || max < seg.bytes_total / 8)
		fail_msg("max_item %zu for a ring of %llu bytes", max,
			 (unsigned long long)seg.bytes_total);
	/* Handles have ids of their own (0 is "no handshake yet"). */
	assert_rc(shmc_open(&c2, f->d.sock), 0);
	assert_int_not_equal(shmc_client_id(f->c), 0);
	assert_int_not_equal(shmc_client_id(c2), 0);
	assert_int_not_equal(shmc_client_id(f->c), shmc_client_id(c2));
	assert_int_equal(shmc_max_item(c2), max);
	shmc_close(c2);
}

static void test_shmc_value_too_large(void **state)
{
	struct fx *f = *state;
	size_t max = shmc_max_item(f->c);
	uint8_t *val = malloc(max + 1), *buf = malloc(max + 1);
	struct shmc_reservation r;
	size_t n = 0;

	assert_non_null(val);
	assert_non_null(buf);
	fill(val, max + 1, 3);
	/* key + value == max_item fits ... */
	assert_rc(shmc_set(f->c, "big", 3, val, max - 3, 0), 0);
	assert_rc(shmc_get(f->c, "big", 3, buf, max + 1, &n), 0);
	assert_int_equal(n, max - 3);
	assert_memory_equal(buf, val, max - 3);
	/* ... one more byte does not. */
	assert_rc(shmc_set(f->c, "big2", 4, val, max - 3, 0), -E2BIG);
	assert_rc(shmc_set(f->c, "big3", 4, val, max + 1, 0), -E2BIG);
	expect_missing(f->c, "big2");
	expect_missing(f->c, "big3");
	/* Sizes whose sum overflows are refused, not wrapped around. */
	assert_rc(shmc_set(f->c, "big4", 4, val, SIZE_MAX, 0), -E2BIG);
	assert_rc(shmc_set(f->c, "big4", 4, val, SIZE_MAX - 3, 0), -E2BIG);
	assert_rc(shmc_reserve(f->c, "big4", 4, SIZE_MAX - 3, 0, &r), -E2BIG);
	expect_missing(f->c, "big4");
	free(val);
	free(buf);
}

static void test_shmc_key_too_long(void **state)
{
	struct fx *f = *state;
	size_t klen = 65536;
	uint8_t *key = malloc(klen);
	struct shmc_reservation r;
	char buf[8];
	size_t n;
	uint32_t t;

	assert_non_null(key);
	memset(key, 'k', klen);
	assert_rc(shmc_set(f->c, key, klen, "v", 1, 0), -E2BIG);
	assert_rc(shmc_get(f->c, key, klen, buf, sizeof(buf), &n), -E2BIG);
	assert_rc(shmc_get_ex(f->c, key, klen, buf, sizeof(buf), &n, NULL),
		  -E2BIG);
	assert_rc(shmc_peek(f->c, key, klen, buf, sizeof(buf), &n), -E2BIG);
	assert_rc(shmc_del(f->c, key, klen), -E2BIG);
	assert_rc(shmc_ttl(f->c, key, klen, &t), -E2BIG);
	assert_rc(shmc_touch(f->c, key, klen, 5), -E2BIG);
	assert_rc(shmc_reserve(f->c, key, klen, 1, 0, &r), -E2BIG);

	/* 65535 bytes is a key (when key + value fits max_item). */
	if (65535 + 1 <= shmc_max_item(f->c)) {
		assert_rc(shmc_set(f->c, key, 65535, "v", 1, 0), 0);
		assert_rc(shmc_get(f->c, key, 65535, buf, sizeof(buf), &n), 0);
		assert_int_equal(n, 1);
		assert_rc(shmc_get(f->c, key, 65534, buf, sizeof(buf), &n),
			  -ENOENT);
	}
	free(key);
}

static int never_load(const void *key, size_t klen, void *buf, size_t cap,
		      size_t *vlen, uint32_t *ttl_s, void *arg)
{
	(void)key, (void)klen, (void)buf, (void)cap, (void)vlen, (void)ttl_s;
	++*(int *)arg;
	return -EIO;
}

static int never_read(const void *p1, size_t n1, const void *p2, size_t n2,
		      void *arg)
{
	(void)p1, (void)n1, (void)p2, (void)n2;
	++*(int *)arg;
	return 0;
}

static void test_shmc_invalid_args(void **state)
{
	struct fx *f = *state;
	struct shmc_reservation r;
	char buf[16];
	size_t n;
	uint32_t t;
	int calls = 0;

	set_str(f->c, "k", "v", 0);

	/* An empty key. */
	assert_rc(shmc_set(f->c, "k", 0, "v", 1, 0), -EINVAL);
	assert_rc(shmc_get(f->c, "k", 0, buf, sizeof(buf), &n), -EINVAL);
	assert_rc(shmc_get_ex(f->c, "k", 0, buf, sizeof(buf), &n, &t),
		  -EINVAL);
	assert_rc(shmc_peek(f->c, "k", 0, buf, sizeof(buf), &n), -EINVAL);
	assert_rc(shmc_del(f->c, "k", 0), -EINVAL);
	assert_rc(shmc_ttl(f->c, "k", 0, &t), -EINVAL);
	assert_rc(shmc_touch(f->c, "k", 0, 1), -EINVAL);
	assert_rc(shmc_get_or_load(f->c, "k", 0, buf, sizeof(buf), &n,
				   never_load, &calls), -EINVAL);
	assert_rc(shmc_read(f->c, "k", 0, never_read, &calls), -EINVAL);
	assert_rc(shmc_reserve(f->c, "k", 0, 1, 0, &r), -EINVAL);

	/* A NULL key. */
	assert_rc(shmc_set(f->c, NULL, 1, "v", 1, 0), -EINVAL);
	assert_rc(shmc_get(f->c, NULL, 1, buf, sizeof(buf), &n), -EINVAL);
	assert_rc(shmc_get_ex(f->c, NULL, 1, buf, sizeof(buf), &n, &t),
		  -EINVAL);
	assert_rc(shmc_peek(f->c, NULL, 1, buf, sizeof(buf), &n), -EINVAL);
	assert_rc(shmc_del(f->c, NULL, 1), -EINVAL);
	assert_rc(shmc_ttl(f->c, NULL, 1, &t), -EINVAL);
	assert_rc(shmc_touch(f->c, NULL, 1, 1), -EINVAL);
	assert_rc(shmc_get_or_load(f->c, NULL, 1, buf, sizeof(buf), &n,
				   never_load, &calls), -EINVAL);
	assert_rc(shmc_read(f->c, NULL, 1, never_read, &calls), -EINVAL);
	assert_rc(shmc_reserve(f->c, NULL, 1, 1, 0, &r), -EINVAL);

	/* A NULL handle. */
	assert_rc(shmc_set(NULL, "k", 1, "v", 1, 0), -EINVAL);
	assert_rc(shmc_get(NULL, "k", 1, buf, sizeof(buf), &n), -EINVAL);
	assert_rc(shmc_get_ex(NULL, "k", 1, buf, sizeof(buf), &n, &t),
		  -EINVAL);
	assert_rc(shmc_peek(NULL, "k", 1, buf, sizeof(buf), &n), -EINVAL);
	assert_rc(shmc_del(NULL, "k", 1), -EINVAL);
	assert_rc(shmc_ttl(NULL, "k", 1, &t), -EINVAL);
	assert_rc(shmc_touch(NULL, "k", 1, 1), -EINVAL);
	assert_rc(shmc_clear(NULL), -EINVAL);
	assert_rc(shmc_get_or_load(NULL, "k", 1, buf, sizeof(buf), &n,
				   never_load, &calls), -EINVAL);
	assert_rc(shmc_read(NULL, "k", 1, never_read, &calls), -EINVAL);
	assert_rc(shmc_reserve(NULL, "k", 1, 1, 0, &r), -EINVAL);

	/* Other needed pointers: the out-lengths, the value, the buffer
	 * when cap > 0, the callbacks, the reservation. */
	assert_rc(shmc_get(f->c, "k", 1, buf, sizeof(buf), NULL), -EINVAL);
	assert_rc(shmc_get(f->c, "k", 1, NULL, sizeof(buf), &n), -EINVAL);
	assert_rc(shmc_set(f->c, "k2", 2, NULL, 1, 0), -EINVAL);
	assert_rc(shmc_ttl(f->c, "k", 1, NULL), -EINVAL);
	assert_rc(shmc_read(f->c, "k", 1, NULL, NULL), -EINVAL);
	assert_rc(shmc_get_or_load(f->c, "absent", 6, buf, sizeof(buf), &n,
				   NULL, NULL), -EINVAL);
	assert_rc(shmc_reserve(f->c, "k", 1, 1, 0, NULL), -EINVAL);

	assert_int_equal(calls, 0);
	/* None of it changed the cache. */
	expect_str(f->c, "k", "v");
	expect_missing(f->c, "k2");
	expect_missing(f->c, "absent");
}

static void test_shmc_strerror(void **state)
{
	static const int codes[] = {
		-ECONNREFUSED, -ENOENT,	  -EACCES,   -EPROTO,  -ENOMEM,
		-EMFILE,       -EIO,	  -EINVAL,   -E2BIG,   -ETIMEDOUT,
		-EUCLEAN,      -ECHILD,	  -ENOBUFS,  -ENOTSUP, -EPIPE,
		-EPERM,	       SHMC_ENODAEMON, SHMC_EUNTRUSTED,
	};
	static const int odd[] = { -99999, 99999, INT_MIN, INT_MAX, 1 };
	const char *ok = shmc_strerror(0);
	size_t ncodes = sizeof(codes) / sizeof(codes[0]);

	(void)state;
	assert_non_null(ok);
	assert_true(ok[0] != '\0');
	for (size_t i = 0; i < ncodes; i++) {
		const char *s = shmc_strerror(codes[i]);

		assert_non_null(s);
		if (!s[0])
			fail_msg("shmc_strerror(%d) is empty", codes[i]);
		/* A description tells the errors apart. */
		if (strcmp(s, ok) == 0)
			fail_msg("shmc_strerror(%d) = shmc_strerror(0) = %s",
				 codes[i], s);
		for (size_t j = 0; j < i; j++)
			if (strcmp(s, shmc_strerror(codes[j])) == 0)
				fail_msg("shmc_strerror(%d) = "
					 "shmc_strerror(%d) = %s",
					 codes[i], codes[j], s);
	}
	/* A control request forgets the thread's last failure to reach a
	 * daemon: the texts below are the general ones. */
	assert_rc(shmc_ping(NULL), -EINVAL);
	/* A missing key is not a missing daemon, and vice versa. */
	assert_null(strstr(shmc_strerror(-ENOENT), "socket"));
	assert_null(strstr(shmc_strerror(-ENOENT), "daemon"));
	assert_says(SHMC_ENODAEMON, "no daemon socket", "start", NULL);
	assert_says(-EACCES, "--allow-user", "--allow-group", NULL);
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		const char *s = shmc_strerror(odd[i]);

		assert_non_null(s);
		if (!s[0])
			fail_msg("shmc_strerror(%d) is empty", odd[i]);
	}
}

/* ========================================================================
 * Binary data and volume
 * ======================================================================== */

static void test_shmc_binary_keys_values(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *k;
		size_t klen;
	} keys[] = {
		{ "a", 1 },	    { "a\0", 2 },	   { "a\0b", 3 },
		{ "a\0c", 3 },	    { "\0", 1 },	   { "\0\0", 2 },
		{ "\xff\0\xfe", 3 }, { "\0a\0a\0a\0", 8 },
	};
	size_t nkeys = sizeof(keys) / sizeof(keys[0]);
	uint8_t val[300], buf[300];
	size_t n;

	for (size_t i = 0; i < nkeys; i++) {
		/* Every byte value, NULs first, then a per-key tail. */
		for (size_t j = 0; j < 256; j++)
			val[j] = (uint8_t)(j + i);
		val[0] = 0;
		fill(val + 256, 44, i);
		assert_rc(shmc_set(f->c, keys[i].k, keys[i].klen, val,
				   sizeof(val) - i, 0), 0);
	}
	for (size_t i = 0; i < nkeys; i++) {
		for (size_t j = 0; j < 256; j++)
			val[j] = (uint8_t)(j + i);
		val[0] = 0;
		fill(val + 256, 44, i);
		memset(buf, 0x55, sizeof(buf));
		assert_rc(shmc_get(f->c, keys[i].k, keys[i].klen, buf,
				   sizeof(buf), &n), 0);
		assert_int_equal(n, sizeof(val) - i);
		assert_memory_equal(buf, val, n);
	}
	/* Deleting one key with a NUL leaves its neighbours. */
	assert_rc(shmc_del(f->c, "a\0", 2), 0);
	assert_rc(shmc_get(f->c, "a\0", 2, buf, sizeof(buf), &n), -ENOENT);
	assert_rc(shmc_get(f->c, "a", 1, buf, sizeof(buf), &n), 0);
	assert_rc(shmc_get(f->c, "a\0b", 3, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, sizeof(val) - 2);
}

#define MANY_KEYS 20000

static void test_shmc_many_keys(void **state)
{
	struct fx *f = *state;
	struct shmc_stats st;
	uint8_t val[80], buf[80];
	char k[32];
	size_t n;
	uint64_t found = 0;

	for (int i = 0; i < MANY_KEYS; i++) {
		int kl = snprintf(k, sizeof(k), "many-%05d", i);
		size_t vl = 8 + (size_t)(hash64(k, (size_t)kl) % 64);

		fill(val, vl, (uint64_t)i);
		assert_rc(shmc_set(f->c, k, (size_t)kl, val, vl, 0), 0);
	}
	for (int i = 0; i < MANY_KEYS; i++) {
		int kl = snprintf(k, sizeof(k), "many-%05d", i);
		size_t vl = 8 + (size_t)(hash64(k, (size_t)kl) % 64);
		int rc = shmc_get(f->c, k, (size_t)kl, buf, sizeof(buf), &n);

		if (rc == -ENOENT)
			continue; /* evicted: allowed */
		if (rc != 0)
			fail_msg("get %s: %s", k, shmc_strerror(rc));
		if (n != vl || !filled(buf, n, (uint64_t)i))
			fail_msg("get %s: wrong value (%zu bytes, want %zu)",
				 k, n, vl);
		found++;
	}
	stat_of(f->c, &st);
	assert_true(found > 0);
	assert_int_equal(st.sets, MANY_KEYS);
	assert_int_equal(st.entries, found);
	/* No TTL, no delete: a missing key was evicted, and counted so. */
	assert_int_equal(st.evictions, MANY_KEYS - found);
}

/* ========================================================================
 * fork(), threads, processes
 * ======================================================================== */

struct fork_arg {
	shmc *parent;
	const char *sock;
};

static void fork_child(void *p)
{
	struct fork_arg *a = p;
	struct shmc_reservation r;
	struct shmc_stats st;
	char buf[64];
	size_t n;
	uint32_t t;
	int calls = 0;
	shmc *own;

	/* The parent's handle refuses every data operation. */
	CHILD_RC(shmc_get(a->parent, "p", 1, buf, sizeof(buf), &n), -ECHILD);
	CHILD_RC(shmc_get_ex(a->parent, "p", 1, buf, sizeof(buf), &n, &t),
		 -ECHILD);
	CHILD_RC(shmc_peek(a->parent, "p", 1, buf, sizeof(buf), &n), -ECHILD);
	CHILD_RC(shmc_set(a->parent, "c", 1, "x", 1, 0), -ECHILD);
	CHILD_RC(shmc_del(a->parent, "p", 1), -ECHILD);
	CHILD_RC(shmc_ttl(a->parent, "p", 1, &t), -ECHILD);
	CHILD_RC(shmc_touch(a->parent, "p", 1, 5), -ECHILD);
	CHILD_RC(shmc_clear(a->parent), -ECHILD);
	CHILD_RC(shmc_get_or_load(a->parent, "q", 1, buf, sizeof(buf), &n,
				  never_load, &calls), -ECHILD);
	CHILD_RC(shmc_read(a->parent, "p", 1, never_read, &calls), -ECHILD);
	CHILD_RC(shmc_reserve(a->parent, "r", 1, 4, 0, &r), -ECHILD);
	CHILD_CHECK(calls == 0);

	/* Its own handle works, and sees the parent's data. */
	CHILD_RC(shmc_open(&own, a->sock), 0);
	CHILD_RC(shmc_get(own, "p", 1, buf, sizeof(buf), &n), 0);
	CHILD_CHECK(n == 13 && memcmp(buf, "parent's data", 13) == 0);
	CHILD_RC(shmc_set(own, "c", 1, "child's data", 12, 0), 0);
	CHILD_RC(shmc_stat(own, &st), 0);
	CHILD_CHECK(st.entries == 2);
	shmc_close(own);
}

static void test_shmc_fork_child(void **state)
{
	struct fx *f = *state;
	struct fork_arg a = { f->c, f->d.sock };

	set_str(f->c, "p", "parent's data", 0);
	assert_int_equal(wait_child(spawn(fork_child, &a), HANG_MS), 0);
	/* The parent's handle is unaffected by the child's refusals. */
	expect_str(f->c, "p", "parent's data");
	expect_str(f->c, "c", "child's data");
	set_str(f->c, "p", "still mine", 0);
	expect_str(f->c, "p", "still mine");
	assert_rc(shmc_ping(f->c), 0);
}

#define TH_N 4
#define TH_KEYS 256
#define TH_ROUNDS 64 /* of 64 operations per thread: a count, not a time,
		      * so that a slow machine (valgrind) does the same work */

struct th_arg {
	shmc *c;
	uint64_t seed;
	uint64_t ops, hits, bad, errs;
	int first_err;
};

/* A self-validating value: hash of the key, a seed, then len bytes made
 * from the seed, len derived from the seed too. */
static size_t th_value(uint8_t *v, const char *k, size_t kl, uint64_t seed)
{
	uint64_t kh = hash64(k, kl);
	size_t len = (size_t)(seed % 400);

	memcpy(v, &kh, 8);
	memcpy(v + 8, &seed, 8);
	fill(v + 16, len, seed);
	return 16 + len;
}

static bool th_valid(const uint8_t *v, size_t n, const char *k, size_t kl)
{
	uint64_t kh, seed;

	if (n < 16)
		return false;
	memcpy(&kh, v, 8);
	memcpy(&seed, v + 8, 8);
	return kh == hash64(k, kl) && n == 16 + seed % 400 &&
	       filled(v + 16, n - 16, seed);
}

static void *th_worker(void *p)
{
	struct th_arg *a = p;
	uint64_t s = a->seed;
	uint8_t v[512];
	char k[32];

	for (int round = 0; round < TH_ROUNDS; round++) {
		for (int i = 0; i < 64; i++) {
			size_t n;
			int rc, kl;

			s = s * UINT64_C(6364136223846793005) +
			    UINT64_C(1442695040888963407);
			kl = snprintf(k, sizeof(k), "th-%u",
				      (unsigned)((s >> 33) % TH_KEYS));
			if ((s >> 20) & 1) {
				n = th_value(v, k, (size_t)kl, s >> 8);
				rc = shmc_set(a->c, k, (size_t)kl, v, n, 0);
			} else {
				rc = shmc_get(a->c, k, (size_t)kl, v,
					      sizeof(v), &n);
				if (rc == 0) {
					a->hits++;
					if (!th_valid(v, n, k, (size_t)kl))
						a->bad++;
				} else if (rc == -ENOENT) {
					rc = 0;
				}
			}
			if (rc != 0 && a->errs++ == 0)
				a->first_err = rc;
			a->ops++;
		}
	}
	return NULL;
}

static void test_shmc_threads_shared_handle(void **state)
{
	struct fx *f = *state;
	struct th_arg a[TH_N];
	pthread_t t[TH_N];
	uint64_t ops = 0, hits = 0;

	for (int i = 0; i < TH_N; i++) {
		a[i] = (struct th_arg){ .c = f->c, .seed = (uint64_t)i + 1 };
		assert_int_equal(pthread_create(&t[i], NULL, th_worker, &a[i]),
				 0);
	}
	for (int i = 0; i < TH_N; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < TH_N; i++) {
		if (a[i].bad)
			fail_msg("thread %d read %llu wrong values", i,
				 (unsigned long long)a[i].bad);
		if (a[i].errs)
			fail_msg("thread %d: %llu errors, first %s", i,
				 (unsigned long long)a[i].errs,
				 shmc_strerror(a[i].first_err));
		ops += a[i].ops;
		hits += a[i].hits;
	}
	/* Enough happened for the check to mean something.  Nothing is
	 * deleted or evicted (256 keys of at most 416 bytes), so each thread's
	 * gets of keys it set itself hit whatever the interleaving: half of
	 * its 4096 operations are gets, most of them after its own sets have
	 * covered the 256 keys, so 1000 hits in all is a floor that holds. */
	assert_int_equal(ops, (uint64_t)TH_N * TH_ROUNDS * 64);
	assert_true(hits > 1000);
}

#define MP_KEYS 2000
#define MP_READERS 3

struct mp_arg {
	const char *sock;
	int go[2];    /* writer -> readers: one byte each when all is set */
	int ready[2]; /* readers -> parent: opened */
};

static size_t mp_value(uint8_t *v, int i)
{
	size_t len = 1 + (size_t)(i * 37 % 200);

	fill(v, len, (uint64_t)i * 1000003u);
	return len;
}

static void mp_writer(void *p)
{
	struct mp_arg *a = p;
	uint8_t v[256];
	char k[32];
	shmc *c;

	close(a->go[0]);
	close(a->ready[0]);
	close(a->ready[1]);
	CHILD_RC(shmc_open(&c, a->sock), 0);
	for (int i = 0; i < MP_KEYS; i++) {
		int kl = snprintf(k, sizeof(k), "mp-%d", i);

		CHILD_RC(shmc_set(c, k, (size_t)kl, v, mp_value(v, i), 0), 0);
	}
	for (int i = 0; i < MP_READERS; i++)
		CHILD_CHECK(write(a->go[1], "g", 1) == 1);
	shmc_close(c);
}

static void mp_reader(void *p)
{
	struct mp_arg *a = p;
	uint8_t v[256], want[256];
	char k[32], b;
	size_t n;
	shmc *c;

	close(a->go[1]);
	close(a->ready[0]);
	CHILD_RC(shmc_open(&c, a->sock), 0);
	CHILD_CHECK(write(a->ready[1], "r", 1) == 1);
	CHILD_CHECK(read(a->go[0], &b, 1) == 1);
	for (int i = 0; i < MP_KEYS; i++) {
		int kl = snprintf(k, sizeof(k), "mp-%d", i);
		size_t wl = mp_value(want, i);

		CHILD_RC(shmc_get(c, k, (size_t)kl, v, sizeof(v), &n), 0);
		CHILD_CHECK(n == wl && memcmp(v, want, n) == 0);
	}
	shmc_close(c);
}

static void test_shmc_multiprocess_share(void **state)
{
	struct fx *f = *state;
	struct mp_arg a = { .sock = f->d.sock };
	pid_t readers[MP_READERS], writer;
	char b[MP_READERS];

	assert_int_equal(pipe(a.go), 0);
	assert_int_equal(pipe(a.ready), 0);
	for (int i = 0; i < MP_READERS; i++)
		readers[i] = spawn(mp_reader, &a);
	close(a.ready[1]);
	/* The readers have their handles before anything is written. */
	assert_int_equal(read_full(a.ready[0], b, MP_READERS), MP_READERS);
	writer = spawn(mp_writer, &a);
	close(a.go[0]);
	close(a.go[1]);
	close(a.ready[0]);
	assert_int_equal(wait_child(writer, HANG_MS), 0);
	for (int i = 0; i < MP_READERS; i++)
		assert_int_equal(wait_child(readers[i], HANG_MS), 0);
}

/* ========================================================================
 * get_or_load
 * ======================================================================== */

struct load_arg {
	const char *val;
	uint32_t ttl;
	int rc;
	int calls;
	bool call_shmc; /* the loader uses the cache itself */
	shmc *c;
	char seen_key[32];
	size_t seen_klen, seen_cap;
};

static int simple_load(const void *key, size_t klen, void *buf, size_t cap,
		       size_t *vlen, uint32_t *ttl_s, void *arg)
{
	struct load_arg *a = arg;
	size_t len = strlen(a->val);

	a->calls++;
	a->seen_klen = klen;
	a->seen_cap = cap;
	memcpy(a->seen_key, key, klen < 32 ? klen : 32);
	if (a->call_shmc) {
		char b[16];
		size_t n;

		/* No lock is held: other keys are usable from here. */
		if (shmc_set(a->c, "side", 4, "effect", 6, 0) != 0 ||
		    shmc_get(a->c, "side", 4, b, sizeof(b), &n) != 0)
			return -EBADE;
	}
	memcpy(buf, a->val, len < cap ? len : cap);
	*vlen = len;
	*ttl_s = a->ttl;
	return a->rc;
}

static void test_shmc_get_or_load_single(void **state)
{
	struct fx *f = *state;
	struct load_arg a = { .val = "loaded!", .ttl = 100, .c = f->c };
	char buf[64];
	size_t n = 0;
	uint32_t t;

	/* A miss runs the loader, stores and returns its value. */
	assert_rc(shmc_get_or_load(f->c, "lk", 2, buf, sizeof(buf), &n,
				   simple_load, &a), 0);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.seen_klen, 2);
	assert_memory_equal(a.seen_key, "lk", 2);
	assert_int_equal(n, 7);
	assert_memory_equal(buf, "loaded!", 7);
	expect_str(f->c, "lk", "loaded!");
	assert_rc(shmc_ttl(f->c, "lk", 2, &t), 0);
	if (t != 99 && t != 100)
		fail_msg("ttl %u of a value loaded with TTL 100", t);

	/* A hit does not call it. */
	n = 0;
	assert_rc(shmc_get_or_load(f->c, "lk", 2, buf, sizeof(buf), &n,
				   simple_load, &a), 0);
	assert_int_equal(a.calls, 1);
	assert_int_equal(n, 7);
	assert_memory_equal(buf, "loaded!", 7);

	/* A failing loader's error goes to the caller; nothing is stored. */
	a = (struct load_arg){ .val = "x", .rc = -EIO };
	assert_rc(shmc_get_or_load(f->c, "bad", 3, buf, sizeof(buf), &n,
				   simple_load, &a), -EIO);
	assert_int_equal(a.calls, 1);
	expect_missing(f->c, "bad");

	/* A value longer than cap: -ENOBUFS, *vlen, not stored. */
	a = (struct load_arg){ .val = "0123456789abcdef" };
	n = 0;
	assert_rc(shmc_get_or_load(f->c, "long", 4, buf, 8, &n, simple_load,
				   &a), -ENOBUFS);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.seen_cap, 8);
	assert_int_equal(n, 16);
	expect_missing(f->c, "long");

	/* The loader may call shmc functions. */
	a = (struct load_arg){ .val = "v", .call_shmc = true, .c = f->c };
	assert_rc(shmc_get_or_load(f->c, "nested", 6, buf, sizeof(buf), &n,
				   simple_load, &a), 0);
	assert_int_equal(a.calls, 1);
	expect_str(f->c, "nested", "v");
	expect_str(f->c, "side", "effect");
}

/* State shared by the processes of the get_or_load cases. */
struct herd {
	int loads;	/* loader runs, all processes */
	int a_loading;	/* the first loader has started */
	int a_done;	/* the first loader has returned */
	int b_saw_a_done;
	int b_loads;
	int calling;	/* the waiter is about to call get_or_load */
	int killed;	/* the parent is killing the loader */
	int claimed;	/* the doomed loader runs */
};

#define HERD_N 8
#define HERD_VAL "the one loaded value"

struct herd_arg {
	const char *sock;
	struct herd *h;
	int barrier[2];
	int ready[2];
};

static int herd_load(const void *key, size_t klen, void *buf, size_t cap,
		     size_t *vlen, uint32_t *ttl_s, void *arg)
{
	struct herd *h = arg;
	size_t len = strlen(HERD_VAL);

	(void)key, (void)klen;
	sleep_ms(200);
	__atomic_fetch_add(&h->loads, 1, __ATOMIC_SEQ_CST);
	if (cap < len)
		return -ENOSPC;
	memcpy(buf, HERD_VAL, len);
	*vlen = len;
	*ttl_s = 0;
	return 0;
}

static void herd_child(void *p)
{
	struct herd_arg *a = p;
	char buf[64], b;
	size_t n = 0;
	shmc *c;

	close(a->barrier[1]);
	close(a->ready[0]);
	CHILD_RC(shmc_open(&c, a->sock), 0);
	CHILD_CHECK(write(a->ready[1], "r", 1) == 1);
	close(a->ready[1]);
	/* Released all at once, when the parent closes the barrier. */
	CHILD_CHECK(read(a->barrier[0], &b, 1) == 0);
	CHILD_RC(shmc_get_or_load(c, "herd", 4, buf, sizeof(buf), &n,
				  herd_load, a->h), 0);
	CHILD_CHECK(n == strlen(HERD_VAL) && memcmp(buf, HERD_VAL, n) == 0);
	shmc_close(c);
}

static void test_shmc_get_or_load_herd(void **state)
{
	struct fx *f = *state;
	struct herd_arg a = { .sock = f->d.sock, .h = shared_page() };
	pid_t kids[HERD_N];
	char b[HERD_N];

	assert_int_equal(pipe(a.barrier), 0);
	assert_int_equal(pipe(a.ready), 0);
	for (int i = 0; i < HERD_N; i++)
		kids[i] = spawn(herd_child, &a);
	close(a.ready[1]);
	close(a.barrier[0]);
	assert_int_equal(read_full(a.ready[0], b, HERD_N), HERD_N);
	close(a.ready[0]);
	close(a.barrier[1]); /* go */
	for (int i = 0; i < HERD_N; i++)
		assert_int_equal(wait_child(kids[i], HANG_MS), 0);
	assert_int_equal(a.h->loads, 1);
	expect_str(f->c, "herd", HERD_VAL);
	munmap(a.h, 4096);
}

/* The same race between the threads of one process, on one handle. */
#define HT_N 4

struct ht_arg {
	shmc *c;
	struct herd *h;
	pthread_barrier_t *go;
	int rc;
	size_t n;
	char buf[64];
};

static void *ht_worker(void *p)
{
	struct ht_arg *a = p;

	pthread_barrier_wait(a->go);
	a->rc = shmc_get_or_load(a->c, "thherd", 6, a->buf, sizeof(a->buf),
				 &a->n, herd_load, a->h);
	return NULL;
}

static void test_shmc_get_or_load_threads(void **state)
{
	struct fx *f = *state;
	struct herd h = { 0 };
	struct ht_arg a[HT_N];
	pthread_barrier_t go;
	pthread_t t[HT_N];

	assert_int_equal(pthread_barrier_init(&go, NULL, HT_N), 0);
	for (int i = 0; i < HT_N; i++) {
		memset(&a[i], 0, sizeof(a[i]));
		a[i].c = f->c;
		a[i].h = &h;
		a[i].go = &go;
		assert_int_equal(pthread_create(&t[i], NULL, ht_worker, &a[i]),
				 0);
	}
	for (int i = 0; i < HT_N; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&go);
	for (int i = 0; i < HT_N; i++) {
		assert_rc(a[i].rc, 0);
		assert_int_equal(a[i].n, strlen(HERD_VAL));
		assert_memory_equal(a[i].buf, HERD_VAL, a[i].n);
	}
	assert_int_equal(h.loads, 1);
}

/* The first caller's loader fails after 200 ms; the second caller, who
 * waited meanwhile, runs its own and gets its value. */
static int fail_load(const void *key, size_t klen, void *buf, size_t cap,
		     size_t *vlen, uint32_t *ttl_s, void *arg)
{
	struct herd *h = arg;

	(void)key, (void)klen, (void)buf, (void)cap, (void)vlen, (void)ttl_s;
	__atomic_fetch_add(&h->loads, 1, __ATOMIC_SEQ_CST);
	set_flag(&h->a_loading);
	sleep_ms(200);
	set_flag(&h->a_done);
	return -EIO;
}

static int b_load(const void *key, size_t klen, void *buf, size_t cap,
		  size_t *vlen, uint32_t *ttl_s, void *arg)
{
	struct herd *h = arg;

	(void)key, (void)klen;
	__atomic_fetch_add(&h->b_loads, 1, __ATOMIC_SEQ_CST);
	/* Was the failed load over before this one started? */
	h->b_saw_a_done = __atomic_load_n(&h->a_done, __ATOMIC_ACQUIRE);
	if (cap < 7)
		return -ENOSPC;
	memcpy(buf, "value-B", 7);
	*vlen = 7;
	*ttl_s = 0;
	return 0;
}

struct fail_arg {
	const char *sock;
	struct herd *h;
};

static void fail_first(void *p)
{
	struct fail_arg *a = p;
	char buf[32];
	size_t n;
	shmc *c;

	CHILD_RC(shmc_open(&c, a->sock), 0);
	CHILD_RC(shmc_get_or_load(c, "flaky", 5, buf, sizeof(buf), &n,
				  fail_load, a->h), -EIO);
	shmc_close(c);
}

static void fail_second(void *p)
{
	struct fail_arg *a = p;
	char buf[32];
	size_t n = 0;
	shmc *c;

	CHILD_RC(shmc_open(&c, a->sock), 0);
	CHILD_CHECK(wait_flag(&a->h->a_loading, HANG_MS));
	CHILD_RC(shmc_get_or_load(c, "flaky", 5, buf, sizeof(buf), &n,
				  b_load, a->h), 0);
	CHILD_CHECK(n == 7 && memcmp(buf, "value-B", 7) == 0);
	shmc_close(c);
}

static void test_shmc_get_or_load_loader_fails(void **state)
{
	struct fx *f = *state;
	struct fail_arg a = { f->d.sock, shared_page() };
	pid_t first, second;

	first = spawn(fail_first, &a);
	second = spawn(fail_second, &a);
	assert_int_equal(wait_child(first, HANG_MS), 0);
	assert_int_equal(wait_child(second, HANG_MS), 0);
	assert_int_equal(a.h->loads, 1);
	assert_int_equal(a.h->b_loads, 1);
	/* The second caller waited for the first, it did not load beside. */
	assert_int_equal(a.h->b_saw_a_done, 1);
	expect_str(f->c, "flaky", "value-B");
	munmap(a.h, 4096);
}

/* The loading process dies (SIGKILL while its loader blocks): the waiter
 * must take over promptly. */
static int stuck_load(const void *key, size_t klen, void *buf, size_t cap,
		      size_t *vlen, uint32_t *ttl_s, void *arg)
{
	struct herd *h = arg;

	(void)key, (void)klen, (void)buf, (void)cap, (void)vlen, (void)ttl_s;
	__atomic_fetch_add(&h->loads, 1, __ATOMIC_SEQ_CST);
	set_flag(&h->claimed);
	for (;;)
		pause();
	return -EIO;
}

static int takeover_load(const void *key, size_t klen, void *buf,
			 size_t cap, size_t *vlen, uint32_t *ttl_s, void *arg)
{
	struct herd *h = arg;

	(void)key, (void)klen;
	__atomic_fetch_add(&h->b_loads, 1, __ATOMIC_SEQ_CST);
	h->b_saw_a_done = __atomic_load_n(&h->killed, __ATOMIC_ACQUIRE);
	if (cap < 8)
		return -ENOSPC;
	memcpy(buf, "takeover", 8);
	*vlen = 8;
	*ttl_s = 0;
	return 0;
}

static void dies_loader(void *p)
{
	struct fail_arg *a = p;
	char buf[32];
	size_t n;
	shmc *c;

	CHILD_RC(shmc_open(&c, a->sock), 0);
	shmc_get_or_load(c, "orphan", 6, buf, sizeof(buf), &n, stuck_load,
			 a->h);
	_exit(3); /* never gets here */
}

static void dies_waiter(void *p)
{
	struct fail_arg *a = p;
	char buf[32];
	size_t n = 0;
	shmc *c;

	CHILD_RC(shmc_open(&c, a->sock), 0);
	set_flag(&a->h->calling);
	CHILD_RC(shmc_get_or_load(c, "orphan", 6, buf, sizeof(buf), &n,
				  takeover_load, a->h), 0);
	CHILD_CHECK(n == 8 && memcmp(buf, "takeover", 8) == 0);
	shmc_close(c);
}

static void test_shmc_get_or_load_loader_dies(void **state)
{
	struct fx *f = *state;
	struct fail_arg a = { f->d.sock, shared_page() };
	pid_t loader, waiter;
	uint64_t t0;
	int rc;

	loader = spawn(dies_loader, &a);
	if (!wait_flag(&a.h->claimed, HANG_MS)) {
		kill(loader, SIGKILL);
		fail_msg("the loader never started");
	}
	waiter = spawn(dies_waiter, &a);
	assert_true(wait_flag(&a.h->calling, HANG_MS));
	sleep_ms(200); /* the waiter is now waiting for the load */
	set_flag(&a.h->killed);
	t0 = now_ms();
	kill(loader, SIGKILL);
	assert_int_equal(wait_child(loader, HANG_MS), 128 + SIGKILL);
	rc = wait_child(waiter, HANG_MS);
	if (rc != 0)
		fail_msg("waiter: %d (%s) %llu ms after the loader was killed",
			 rc, rc == -ETIMEDOUT ? "still waiting" : "failed",
			 (unsigned long long)(now_ms() - t0));
	print_message("waiter done %llu ms after the loader died\n",
		      (unsigned long long)(now_ms() - t0));
	assert_int_equal(a.h->loads, 1);
	assert_int_equal(a.h->b_loads, 1);
	/* It waited while the loader lived. */
	assert_int_equal(a.h->b_saw_a_done, 1);
	expect_str(f->c, "orphan", "takeover");
	munmap(a.h, 4096);
}

/* ========================================================================
 * Zero-copy
 * ======================================================================== */

struct rd {
	uint8_t *buf;
	size_t cap, len;
	size_t n1, n2;
	int calls;
	int ret;
	bool overflow;
};

static int rd_collect(const void *p1, size_t n1, const void *p2, size_t n2,
		      void *arg)
{
	struct rd *r = arg;

	r->calls++;
	r->n1 = n1;
	r->n2 = n2;
	if (n1 + n2 > r->cap) {
		r->overflow = true;
		return r->ret;
	}
	memcpy(r->buf, p1, n1);
	if (n2)
		memcpy(r->buf + n1, p2, n2);
	r->len = n1 + n2;
	return r->ret;
}

static void test_shmc_read_in_place(void **state)
{
	struct fx *f = *state;
	uint8_t val[5000], buf[5000];
	struct rd r = { .buf = buf, .cap = sizeof(buf), .ret = 42 };
	struct shmc_stats a, b;

	fill(val, sizeof(val), 9);
	assert_rc(shmc_set(f->c, "zc", 2, val, sizeof(val), 0), 0);
	stat_of(f->c, &a);
	assert_rc(shmc_read(f->c, "zc", 2, rd_collect, &r), 42);
	assert_int_equal(r.calls, 1);
	assert_false(r.overflow);
	assert_int_equal(r.len, sizeof(val));
	assert_memory_equal(buf, val, sizeof(val));
	/* The callback's value, whatever it is, comes back. */
	r.ret = -EBADE;
	assert_rc(shmc_read(f->c, "zc", 2, rd_collect, &r), -EBADE);
	r.ret = 0;
	assert_rc(shmc_read(f->c, "zc", 2, rd_collect, &r), 0);
	assert_int_equal(r.calls, 3);
	/* A miss does not call it. */
	assert_rc(shmc_read(f->c, "none", 4, rd_collect, &r), -ENOENT);
	assert_int_equal(r.calls, 3);
	/* It counts as a get. */
	stat_of(f->c, &b);
	assert_int_equal(b.hits, a.hits + 3);
	assert_int_equal(b.misses, a.misses + 1);
}

#define WRAP_VAL 20000
#define WRAP_TRIES 4000

static void test_shmc_read_wraps(void **state)
{
	struct fx *f = *state;
	uint8_t *val = malloc(WRAP_VAL), *buf = malloc(WRAP_VAL);
	struct rd r = { .buf = buf, .cap = WRAP_VAL, .ret = 1 };
	char k[32];
	int wrapped = 0, i;

	assert_non_null(val);
	assert_non_null(buf);
	for (i = 0; i < WRAP_TRIES && wrapped < 3; i++) {
		int kl = snprintf(k, sizeof(k), "wrap-%d", i);

		fill(val, WRAP_VAL, (uint64_t)i);
		assert_rc(shmc_set(f->c, k, (size_t)kl, val, WRAP_VAL, 0), 0);
		r.len = 0;
		assert_rc(shmc_read(f->c, k, (size_t)kl, rd_collect, &r), 1);
		assert_false(r.overflow);
		assert_int_equal(r.len, WRAP_VAL);
		if (memcmp(buf, val, WRAP_VAL) != 0)
			fail_msg("%s: value differs (n1 %zu, n2 %zu)", k, r.n1,
				 r.n2);
		if (r.n2 > 0)
			wrapped++;
	}
	if (!wrapped)
		fail_msg("no value wrapped around a ring in %d sets", i);
	free(val);
	free(buf);
}

static void test_shmc_reserve_commit(void **state)
{
	struct fx *f = *state;
	struct shmc_reservation r;
	uint8_t val[3000], buf[3000];
	size_t n;
	uint32_t t;
	shmc *c2;

	fill(val, sizeof(val), 11);
	memset(&r, 0, sizeof(r));
	assert_rc(shmc_reserve(f->c, "res", 3, sizeof(val), 100, &r), 0);
	assert_int_equal(r.n1 + r.n2, sizeof(val));
	assert_non_null(r.p1);
	if (r.n2)
		assert_non_null(r.p2);
	memcpy(r.p1, val, r.n1);
	if (r.n2)
		memcpy(r.p2, val + r.n1, r.n2);
	assert_rc(shmc_commit(f->c, &r), 0);

	assert_rc(shmc_get(f->c, "res", 3, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, sizeof(val));
	assert_memory_equal(buf, val, n);
	assert_rc(shmc_ttl(f->c, "res", 3, &t), 0);
	if (t != 99 && t != 100)
		fail_msg("ttl %u of a value reserved with TTL 100", t);
	/* Another handle sees it too. */
	assert_rc(shmc_open(&c2, f->d.sock), 0);
	memset(buf, 0, sizeof(buf));
	assert_rc(shmc_get(c2, "res", 3, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, sizeof(val));
	assert_memory_equal(buf, val, n);
	shmc_close(c2);

	/* Replacing an existing value the same way. */
	assert_rc(shmc_reserve(f->c, "res", 3, 5, 0, &r), 0);
	assert_int_equal(r.n1 + r.n2, 5);
	memcpy(r.p1, "fresh", r.n1);
	if (r.n2)
		memcpy(r.p2, &"fresh"[r.n1], r.n2);
	assert_rc(shmc_commit(f->c, &r), 0);
	expect_str(f->c, "res", "fresh");
	assert_rc(shmc_ttl(f->c, "res", 3, &t), 0);
	assert_int_equal(t, 0);
}

static void test_shmc_reserve_wraps(void **state)
{
	struct fx *f = *state;
	uint8_t *val = malloc(WRAP_VAL), *buf = malloc(WRAP_VAL);
	struct shmc_reservation r;
	char k[32];
	size_t n;
	int wrapped = 0, i;

	assert_non_null(val);
	assert_non_null(buf);
	for (i = 0; i < WRAP_TRIES && wrapped < 3; i++) {
		int kl = snprintf(k, sizeof(k), "rwrap-%d", i);

		fill(val, WRAP_VAL, (uint64_t)i + 77);
		assert_rc(shmc_reserve(f->c, k, (size_t)kl, WRAP_VAL, 0, &r),
			  0);
		assert_int_equal(r.n1 + r.n2, WRAP_VAL);
		memcpy(r.p1, val, r.n1);
		if (r.n2)
			memcpy(r.p2, val + r.n1, r.n2);
		assert_rc(shmc_commit(f->c, &r), 0);
		if (r.n2 > 0)
			wrapped++;
		assert_rc(shmc_get(f->c, k, (size_t)kl, buf, WRAP_VAL, &n), 0);
		assert_int_equal(n, WRAP_VAL);
		if (memcmp(buf, val, WRAP_VAL) != 0)
			fail_msg("%s: value differs (n1 %zu, n2 %zu)", k, r.n1,
				 r.n2);
	}
	if (!wrapped)
		fail_msg("no reservation wrapped around a ring in %d", i);
	free(val);
	free(buf);
}

static void test_shmc_reserve_abort(void **state)
{
	struct fx *f = *state;
	struct shmc_reservation r;
	struct shmc_stats st;

	/* A new key stays missing. */
	assert_rc(shmc_reserve(f->c, "new", 3, 100, 0, &r), 0);
	memset(r.p1, 'x', r.n1);
	shmc_abort(f->c, &r);
	expect_missing(f->c, "new");

	/* An existing key is then missing too. */
	set_str(f->c, "old", "old value", 0);
	assert_rc(shmc_reserve(f->c, "old", 3, 100, 0, &r), 0);
	shmc_abort(f->c, &r);
	expect_missing(f->c, "old");
	stat_of(f->c, &st);
	assert_int_equal(st.entries, 0);

	/* The segment is unlocked: the same keys work at once. */
	set_str(f->c, "old", "again", 0);
	expect_str(f->c, "old", "again");
	set_str(f->c, "new", "now", 0);
	expect_str(f->c, "new", "now");
}

static void test_shmc_reserve_too_large(void **state)
{
	struct fx *f = *state;
	struct shmc_reservation r;
	size_t max = shmc_max_item(f->c);

	assert_rc(shmc_reserve(f->c, "huge", 4, max - 3, 0, &r), -E2BIG);
	assert_rc(shmc_reserve(f->c, "huge", 4, max * 2, 0, &r), -E2BIG);
	expect_missing(f->c, "huge");
	/* The limit itself is fine. */
	assert_rc(shmc_reserve(f->c, "huge", 4, max - 4, 0, &r), 0);
	memset(r.p1, 'h', r.n1);
	if (r.n2)
		memset(r.p2, 'h', r.n2);
	assert_rc(shmc_commit(f->c, &r), 0);
}

/* A reader during a reservation sees the old value or the whole new one. */
#define NP_LEN 4000

struct np_arg {
	shmc *c;
	int reserved;
	int rc;
	size_t n;
	uint8_t buf[NP_LEN];
};

static void *np_reader(void *p)
{
	struct np_arg *a = p;

	while (!__atomic_load_n(&a->reserved, __ATOMIC_ACQUIRE))
		sleep_ms(1);
	a->rc = shmc_get(a->c, "np", 2, a->buf, sizeof(a->buf), &a->n);
	return NULL;
}

static void test_shmc_reserve_no_partial(void **state)
{
	struct fx *f = *state;
	static struct np_arg a;
	uint8_t old[NP_LEN];
	struct shmc_reservation r;
	pthread_t t;
	size_t half;

	memset(&a, 0, sizeof(a));
	a.c = f->c;
	memset(old, 'A', sizeof(old));
	assert_rc(shmc_set(f->c, "np", 2, old, sizeof(old), 0), 0);
	assert_int_equal(pthread_create(&t, NULL, np_reader, &a), 0);
	assert_rc(shmc_reserve(f->c, "np", 2, NP_LEN, 0, &r), 0);
	__atomic_store_n(&a.reserved, 1, __ATOMIC_RELEASE);
	/* Fill slowly, in two halves. */
	half = r.n1 / 2;
	memset(r.p1, 'B', half);
	sleep_ms(100);
	memset((uint8_t *)r.p1 + half, 'B', r.n1 - half);
	if (r.n2)
		memset(r.p2, 'B', r.n2);
	assert_rc(shmc_commit(f->c, &r), 0);
	pthread_join(t, NULL);
	assert_rc(a.rc, 0);
	assert_int_equal(a.n, NP_LEN);
	if (!all_bytes(a.buf, NP_LEN, 'A') && !all_bytes(a.buf, NP_LEN, 'B'))
		fail_msg("a reader saw a partial value");
}

/* A process stuck inside a reservation: others time out on that segment;
 * when it dies, the daemon resets the segment and everyone goes on. */
struct stuck_arg {
	const char *sock;
	int *reserved;
};

static void stuck_holder(void *p)
{
	struct stuck_arg *a = p;
	struct shmc_reservation r;
	shmc *c;

	CHILD_RC(shmc_open(&c, a->sock), 0);
	CHILD_RC(shmc_reserve(c, "held", 4, 100, 0, &r), 0);
	memset(r.p1, 'z', r.n1);
	set_flag(a->reserved);
	for (;;)
		pause();
}

static void test_shmc_lock_stuck_then_dead_holder(void **state)
{
	struct fx *f = *state;
	struct stuck_arg a = { f->d.sock, shared_page() };
	struct shmc_stats st;
	char buf[128];
	size_t n;
	uint64_t t0, end;
	pid_t holder;
	int rc;

	holder = spawn(stuck_holder, &a);
	if (!wait_flag(a.reserved, HANG_MS)) {
		kill(holder, SIGKILL);
		wait_child(holder, HANG_MS);
		fail_msg("the holder never reserved");
	}
	/* --lock-timeout 300: a live holder makes us give up. */
	t0 = now_ms();
	rc = shmc_get(f->c, "held", 4, buf, sizeof(buf), &n);
	if (rc != -ETIMEDOUT) {
		kill(holder, SIGKILL);
		wait_child(holder, HANG_MS);
		fail_msg("get on a segment held by a stuck process: %d (%s), "
			 "want -ETIMEDOUT", rc, shmc_strerror(rc));
	}
	assert_true(now_ms() - t0 >= 250);

	kill(holder, SIGKILL);
	assert_int_equal(wait_child(holder, HANG_MS), 128 + SIGKILL);
	/* Now the daemon takes the lock over and resets the segment. */
	end = now_ms() + HANG_MS;
	do {
		rc = shmc_get(f->c, "held", 4, buf, sizeof(buf), &n);
	} while ((rc == -ETIMEDOUT || rc == -EUCLEAN) && now_ms() < end);
	assert_rc(rc, -ENOENT); /* never committed */
	set_str(f->c, "held", "free again", 0);
	expect_str(f->c, "held", "free again");
	stat_of(f->c, &st);
	assert_true(st.repairs >= 1);
	munmap(a.reserved, 4096);
}

/* ========================================================================
 * Daemon restart and control requests
 * ======================================================================== */

static void test_shmc_daemon_restart(void **state)
{
	struct fx *f = *state;
	struct shmc_client_info ci[16];
	uint32_t segs = 0, bad = 1, rep = 1;
	size_t n = 0;
	bool me = false;
	shmc *c2;

	set_str(f->c, "before", "the restart", 0);
	assert_int_equal(tdaemon_stop(&f->d), 0);

	/* Without the daemon: the mapping works, control calls fail. */
	expect_str(f->c, "before", "the restart");
	set_str(f->c, "during", "the outage", 0);
	assert_unreachable(shmc_ping(f->c), -EPIPE);

	assert_rc(tdaemon_start(&f->d), 0);
	/* The handle reconnects for control requests. */
	assert_rc(shmc_ping(f->c), 0);
	assert_rc(shmc_check(f->c, 0, &segs, &bad, &rep), 0);
	assert_int_equal(segs, NSEG);
	assert_int_equal(bad, 0);
	assert_rc(shmc_clients(f->c, ci, 16, &n), 0);
	for (size_t i = 0; i < n && i < 16; i++)
		me |= ci[i].pid == (uint32_t)getpid();
	assert_true(me);
	/* Same region: the entries survived, both ways. */
	expect_str(f->c, "before", "the restart");
	expect_str(f->c, "during", "the outage");
	assert_rc(shmc_open(&c2, f->d.sock), 0);
	expect_str(c2, "before", "the restart");
	set_str(c2, "after", "it", 0);
	expect_str(f->c, "after", "it");
	shmc_close(c2);
}

/* Every control request, again and again while the daemon is down: each
 * fails with "no daemon" (never a crash, a hang or a wrong success), the
 * mapping keeps working, and once the daemon is back the same handle's
 * control requests work again.  Under valgrind or ASan this is the check
 * that no error path frees or reads a reply it never received. */
static void test_shmc_control_calls_while_daemon_down(void **state)
{
	struct fx *f = *state;
	struct shmc_client_info ci[4];
	struct shmc_stats st;
	uint32_t segs = 7, bad = 7, rep = 7;
	uint64_t entries = 7;
	char path[sizeof(f->d.dir) + 16];
	size_t n = 7;
	shmc *c2;

	snprintf(path, sizeof(path), "%s/snap", f->d.dir);
	set_str(f->c, "kept", "across the outage", 0);
	assert_int_equal(tdaemon_stop(&f->d), 0);
	for (int round = 0; round < 5; round++) {
		assert_unreachable(shmc_ping(f->c), -EPIPE);
		assert_unreachable(shmc_check(f->c, 0, &segs, &bad, &rep),
				   -EPIPE);
		assert_unreachable(shmc_check(f->c, 1, &segs, &bad, &rep),
				   -EPIPE);
		assert_unreachable(shmc_clients(f->c, ci, 4, &n), -EPIPE);
		assert_unreachable(shmc_save(f->c, path, &entries), -EPIPE);
		assert_unreachable(shmc_load(f->c, path, &entries), -EPIPE);
		assert_unreachable(shmc_load_partial(f->c, path, &entries),
				   -EPIPE);
		assert_unreachable(shmc_shutdown(f->c), -EPIPE);
		/* A failed request leaves the outputs alone. */
		assert_int_equal(segs, 7);
		assert_int_equal(bad, 7);
		assert_int_equal(rep, 7);
		assert_int_equal(n, 7);
		assert_int_equal(entries, 7);
		assert_string_equal(shmc_errmsg(), "");
		/* The calls on the mapping need no daemon. */
		assert_rc(shmc_stat(f->c, &st), 0);
		expect_str(f->c, "kept", "across the outage");
	}

	assert_rc(tdaemon_start(&f->d), 0);
	assert_rc(shmc_ping(f->c), 0);
	assert_rc(shmc_check(f->c, 0, &segs, &bad, &rep), 0);
	assert_int_equal(segs, NSEG);
	assert_rc(shmc_clients(f->c, ci, 4, &n), 0);
	assert_true(n >= 1);
	assert_rc(shmc_save(f->c, path, &entries), 0);
	assert_int_equal(entries, 1);
	assert_rc(shmc_open(&c2, f->d.sock), 0);
	expect_str(c2, "kept", "across the outage");
	assert_rc(shmc_ping(c2), 0);
	shmc_close(c2);
}

static void test_shmc_ping(void **state)
{
	struct fx *f = *state;

	for (int i = 0; i < 10; i++)
		assert_rc(shmc_ping(f->c), 0);
}

static void test_shmc_check(void **state)
{
	struct fx *f = *state;
	uint32_t segs = 0, bad = 9, rep = 9;
	char k[16];

	for (int i = 0; i < 200; i++) {
		snprintf(k, sizeof(k), "c%d", i);
		set_str(f->c, k, "checked", i % 2 ? 0 : 60);
	}
	assert_rc(shmc_check(f->c, 0, &segs, &bad, &rep), 0);
	assert_int_equal(segs, NSEG);
	assert_int_equal(bad, 0);
	assert_int_equal(rep, 0);
	segs = 0, bad = 9, rep = 9;
	assert_rc(shmc_check(f->c, 1, &segs, &bad, &rep), 0);
	assert_int_equal(segs, NSEG);
	assert_int_equal(bad, 0);
	assert_int_equal(rep, 0);
	/* A healthy check repairs nothing away. */
	expect_str(f->c, "c0", "checked");
	expect_str(f->c, "c199", "checked");
}

static void test_shmc_clients(void **state)
{
	struct fx *f = *state;
	struct shmc_client_info ci[32];
	uint64_t now = (uint64_t)time(NULL);
	size_t n = 0, all;
	bool id1 = false, id2 = false;
	shmc *c2;

	assert_rc(shmc_open(&c2, f->d.sock), 0);
	assert_rc(shmc_clients(f->c, ci, 32, &n), 0);
	assert_true(n >= 2);
	for (size_t i = 0; i < n && i < 32; i++) {
		if (ci[i].pid != (uint32_t)getpid())
			continue;
		assert_int_equal(ci[i].uid, getuid());
		assert_int_equal(ci[i].gid, getgid());
		if (ci[i].since + 60 < now || ci[i].since > now + 2)
			fail_msg("client since %llu, now %llu",
				 (unsigned long long)ci[i].since,
				 (unsigned long long)now);
		id1 |= ci[i].id == shmc_client_id(f->c);
		id2 |= ci[i].id == shmc_client_id(c2);
	}
	assert_true(id1);
	assert_true(id2);
	/* cap smaller than the count: *n is still the count. */
	all = n;
	n = 0;
	assert_rc(shmc_clients(f->c, ci, 1, &n), 0);
	assert_int_equal(n, all);
	/* And a closed handle leaves the list. */
	shmc_close(c2);
	for (uint64_t end = now_ms() + HANG_MS; now_ms() < end;) {
		assert_rc(shmc_clients(f->c, ci, 32, &n), 0);
		if (n == all - 1)
			break;
		sleep_ms(10);
	}
	assert_int_equal(n, all - 1);
}

static void test_shmc_save_load_round_trip(void **state)
{
	struct fx *f = *state;
	char path[sizeof(f->d.dir) + 16];
	uint64_t entries = 0;

	snprintf(path, sizeof(path), "%s/snap", f->d.dir);
	set_str(f->c, "k", "v", 0);
	assert_rc(shmc_save(f->c, path, &entries), 0);
	assert_int_equal(entries, 1);
	assert_rc(shmc_clear(f->c), 0);
	entries = 0;
	assert_rc(shmc_load(f->c, path, &entries), 0);
	assert_int_equal(entries, 1);
	expect_str(f->c, "k", "v");
	assert_rc(shmc_save(f->c, "relative/path", &entries), -EINVAL);
}

/* A refused request leaves the daemon's words for this thread, naming the
 * file; the next request that succeeds clears them. */
static void test_shmc_errmsg_has_the_daemons_words(void **state)
{
	struct fx *f = *state;
	char path[sizeof(f->d.dir) + 16];
	uint64_t entries = 0;

	snprintf(path, sizeof(path), "%s/missing", f->d.dir);
	assert_string_equal(shmc_errmsg(), "");
	assert_rc(shmc_load(f->c, path, &entries), -ENOENT);
	assert_non_null(strstr(shmc_errmsg(), path));
	assert_non_null(strstr(shmc_errmsg(), "cannot open"));
	assert_rc(shmc_ping(f->c), 0);
	assert_string_equal(shmc_errmsg(), "");
}

static void test_shmc_shutdown(void **state)
{
	struct fx *f = *state;
	int rc;

	set_str(f->c, "k", "v", 0);
	assert_rc(shmc_shutdown(f->c), 0);
	rc = wait_child(f->d.pid, HANG_MS);
	f->d.pid = 0;
	assert_int_equal(rc, 0); /* a clean stop */
	assert_unreachable(shmc_ping(f->c), -EPIPE);
	/* The mapping outlives the daemon. */
	expect_str(f->c, "k", "v");
}

static void other_shutdown_child(void *p)
{
	char buf[16];
	size_t n;
	shmc *c;

	become_other();
	CHILD_RC(shmc_open(&c, p), 0); /* allowed by --allow-user */
	CHILD_RC(shmc_get(c, "k", 1, buf, sizeof(buf), &n), 0);
	CHILD_CHECK(n == 1 && buf[0] == 'v');
	CHILD_RC(shmc_shutdown(c), -EPERM);
	CHILD_RC(shmc_ping(c), 0);
	shmc_close(c);
}

static void test_shmc_shutdown_other_user(void **state)
{
	struct fx *f = *state;

	open_other_user(f);
	set_str(f->c, "k", "v", 0);
	assert_int_equal(
		wait_child(spawn(other_shutdown_child, f->d.sock), HANG_MS), 0);
	/* The daemon still runs. */
	assert_rc(shmc_ping(f->c), 0);
	assert_int_equal(waitpid(f->d.pid, NULL, WNOHANG), 0);
}

/* ======================================================================== */

#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shmc_version_matches_the_header),
		T(test_shmc_open_explicit_path),
		T(test_shmc_open_env_socket),
		cmocka_unit_test(test_shmc_open_no_daemon),
		cmocka_unit_test_setup_teardown(test_shmc_open_refused_user,
						fx_setup, fx_teardown),
		cmocka_unit_test(test_shmc_open_refuses_untrusted_peer),
		cmocka_unit_test(test_shmc_open_trusted_other_uid),
		cmocka_unit_test(test_shmc_close_null),
		T(test_shmc_set_get_round_trip),
		T(test_shmc_get_small_buffer),
		T(test_shmc_get_enobufs_counts_hit),
		T(test_shmc_get_length_only),
		T(test_shmc_get_ex_expire_at),
		T(test_shmc_peek_changes_no_stats),
		T(test_shmc_del),
		T(test_shmc_ttl),
		T(test_shmc_touch),
		T(test_shmc_expiry),
		T(test_shmc_clear),
		T(test_shmc_stat_counts),
		T(test_shmc_seg_stat_sums),
		T(test_shmc_limits),
		T(test_shmc_value_too_large),
		T(test_shmc_key_too_long),
		T(test_shmc_invalid_args),
		cmocka_unit_test(test_shmc_strerror),
		T(test_shmc_binary_keys_values),
		T(test_shmc_many_keys),
		T(test_shmc_fork_child),
		T(test_shmc_threads_shared_handle),
		T(test_shmc_multiprocess_share),
		T(test_shmc_get_or_load_single),
		T(test_shmc_get_or_load_herd),
		T(test_shmc_get_or_load_threads),
		T(test_shmc_get_or_load_loader_fails),
		T(test_shmc_get_or_load_loader_dies),
		T(test_shmc_read_in_place),
		T(test_shmc_read_wraps),
		T(test_shmc_reserve_commit),
		T(test_shmc_reserve_wraps),
		T(test_shmc_reserve_abort),
		T(test_shmc_reserve_too_large),
		T(test_shmc_reserve_no_partial),
		cmocka_unit_test_setup_teardown(
			test_shmc_lock_stuck_then_dead_holder,
			fx_setup_short_lock, fx_teardown),
		T(test_shmc_daemon_restart),
		T(test_shmc_control_calls_while_daemon_down),
		T(test_shmc_ping),
		T(test_shmc_check),
		T(test_shmc_clients),
		T(test_shmc_save_load_round_trip),
		T(test_shmc_errmsg_has_the_daemons_words),
		T(test_shmc_shutdown),
		cmocka_unit_test_setup_teardown(test_shmc_shutdown_other_user,
						fx_setup_allow_other,
						fx_teardown),
	};

	tdaemon_binary(); /* exits 77 without $SHMC_DAEMON */
	/* SHMC_TEST_FILTER=test_shmc_ping*: only the cases it matches. */
	if (getenv("SHMC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SHMC_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
