/*
 * test_shmc_open.c - libshmc against the real daemon: opening and closing
 * a handle: the version, an explicit socket path or $SHMC_SOCKET, no
 * daemon, a user the daemon refuses, a peer the library does not trust
 * ($SHMC_TRUST_UID), shmc_close(NULL), a handle used in a forked child, and
 * shmc_strerror's words for every error.
 *
 * Fixtures and helpers: shmc_fixture.h.
 */
#include "shmc_fixture.h"

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

	assert_int_equal(read_full(fs->report, &got, sizeof(got)), sizeof(got));
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

static void test_shmc_strerror(void **state)
{
	static const int codes[] = {
		-ECONNREFUSED,	-ENOENT,	 -EACCES,  -EPROTO,
		-ENOMEM,	-EMFILE,	 -EIO,	   -EINVAL,
		-E2BIG,		-ETIMEDOUT,	 -EUCLEAN, -ECHILD,
		-ENOBUFS,	-ENOTSUP,	 -EPIPE,   -EPERM,
		SHMC_ENODAEMON, SHMC_EUNTRUSTED,
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
				  never_load, &calls),
		 -ECHILD);
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
		cmocka_unit_test(test_shmc_strerror),
		T(test_shmc_fork_child),
	};

	tdaemon_binary(); /* exits 77 without $SHMC_DAEMON */
	/* SHMC_TEST_FILTER=test_shmc_ping*: only the cases it matches. */
	if (getenv("SHMC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SHMC_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
