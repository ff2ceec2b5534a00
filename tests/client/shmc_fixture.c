/*
 * shmc_fixture.c - the client tests' helpers (declared and described in
 * shmc_fixture.h): assertions on error strings, deterministic bytes,
 * strings in and out of the cache, children and shared flags, and the
 * fixture of one daemon and one handle per case.
 */
#include "shmc_fixture.h"

/* shmc_strerror(err) holds every string of the NULL-ended list. */
void assert_says(int err, ...)
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

void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* len bytes determined by seed alone (splitmix64 stream). */
void fill(void *buf, size_t len, uint64_t seed)
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

bool filled(const void *buf, size_t len, uint64_t seed)
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

bool all_bytes(const void *buf, size_t len, uint8_t b)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i] != b)
			return false;
	return true;
}

/* Sets / expects a C-string key to a C-string value. */
void set_str(shmc *c, const char *k, const char *v, uint32_t ttl)
{
	assert_rc(shmc_set(c, k, strlen(k), v, strlen(v), ttl), 0);
}

void expect_str(shmc *c, const char *k, const char *v)
{
	char buf[512];
	size_t n = 0;

	assert_rc(shmc_get(c, k, strlen(k), buf, sizeof(buf), &n), 0);
	assert_int_equal(n, strlen(v));
	assert_memory_equal(buf, v, n);
}

void expect_missing(shmc *c, const char *k)
{
	char buf[64];
	size_t n;

	assert_rc(shmc_get(c, k, strlen(k), buf, sizeof(buf), &n), -ENOENT);
}

void stat_of(shmc *c, struct shmc_stats *st)
{
	memset(st, 0xee, sizeof(*st));
	assert_rc(shmc_stat(c, st), 0);
}

/* A page shared with the children (counters, flags). */
void *shared_page(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	memset(p, 0, 4096);
	return p;
}

/* Forks a child that runs fn(arg) and _exit(0)s. */
pid_t spawn(child_fn fn, void *arg)
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
int wait_child(pid_t pid, unsigned timeout_ms)
{
	uint64_t end = clock_mono_ms() + timeout_ms;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st)
					     : 128 + WTERMSIG(st);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (clock_mono_ms() >= end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -ETIMEDOUT;
		}
		sleep_ms(2);
	}
}

/* Reads n bytes (from a pipe children write to one by one); returns how
 * many came before end of file. */
size_t read_full(int fd, void *buf, size_t n)
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
bool wait_flag(volatile int *flag, unsigned timeout_ms)
{
	uint64_t end = clock_mono_ms() + timeout_ms;

	while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE)) {
		if (clock_mono_ms() >= end)
			return false;
		sleep_ms(1);
	}
	return true;
}

void set_flag(volatile int *flag)
{
	__atomic_store_n(flag, 1, __ATOMIC_RELEASE);
}

int fx_start(void **state, const char *const *extra)
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

int fx_setup(void **state)
{
	return fx_start(state, NULL);
}

/* A short --lock-timeout, for the stuck-holder case. */
int fx_setup_short_lock(void **state)
{
	static const char *const extra[] = { "--lock-timeout", "300", NULL };

	return fx_start(state, extra);
}

int fx_setup_allow_other(void **state)
{
	static const char *const extra[] = { "--allow-user", "65534", NULL };

	return fx_start(state, extra);
}

int fx_teardown(void **state)
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

/* Becomes uid/gid 65534 in a forked child, with the daemon's socket
 * reachable at the file-system level, so only the daemon can refuse. */
void become_other(void)
{
	CHILD_CHECK(setgroups(0, NULL) == 0);
	CHILD_CHECK(setgid(OTHER_UID) == 0);
	CHILD_CHECK(setuid(OTHER_UID) == 0);
}

void open_other_user(struct fx *f)
{
	if (geteuid() != 0)
		skip(); /* needs root to become another user */
	assert_int_equal(chmod(f->d.dir, 0711), 0);
	assert_int_equal(chmod(f->d.sock, 0666), 0);
}

int never_load(const void *key, size_t klen, void *buf, size_t cap,
	       size_t *vlen, uint32_t *ttl_s, void *arg)
{
	(void)key, (void)klen, (void)buf, (void)cap, (void)vlen, (void)ttl_s;
	++*(int *)arg;
	return -EIO;
}

int never_read(const void *p1, size_t n1, const void *p2, size_t n2, void *arg)
{
	(void)p1, (void)n1, (void)p2, (void)n2;
	++*(int *)arg;
	return 0;
}
