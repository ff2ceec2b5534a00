/*
 * test_shmc_control.c - libshmc against the real daemon: the control
 * calls (ping, check, clients, save and load, shutdown, by its own user
 * or another), the daemon's own words in shmc_errmsg, and what the library
 * does while the daemon is down and after it restarts.
 *
 * Fixtures and helpers: shmc_fixture.h.
 */
#include "shmc_fixture.h"

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
	for (uint64_t end = clock_mono_ms() + HANG_MS; clock_mono_ms() < end;) {
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
	assert_int_equal(wait_child(spawn(other_shutdown_child, f->d.sock),
				    HANG_MS),
			 0);
	/* The daemon still runs. */
	assert_rc(shmc_ping(f->c), 0);
	assert_int_equal(waitpid(f->d.pid, NULL, WNOHANG), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
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
