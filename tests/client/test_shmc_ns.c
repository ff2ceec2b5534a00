/*
 * test_shmc_ns.c - libshmc's namespaces against the real daemon:
 * shmc_ns_add, shmc_ns_flush, shmc_ns_del and shmc_ns_list, their errors,
 * what a flush does to the keys every handle sees, and the table across a
 * daemon restart and from shmcached --namespace.
 *
 * Fixtures and helpers: shmc_fixture.h.
 */
#include "shmc_fixture.h"

/* The registered namespace of prefix p in list[0..n), or NULL. */
static const struct shmc_ns_info *find_ns(const struct shmc_ns_info *list,
					  size_t n, const void *p, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (list[i].len == len && memcmp(list[i].prefix, p, len) == 0)
			return &list[i];
	return NULL;
}

static void test_shmc_ns_flush_drops_every_key_under_the_prefix(void **state)
{
	struct fx *f = *state;
	char key[64];
	shmc *c2;

	assert_rc(shmc_open(&c2, f->d.sock), 0);
	set_str(f->c, "user:42:before", "registered later", 0);
	assert_rc(shmc_ns_add(f->c, "user:42:", 8), 0);
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "user:42:%d", i);
		set_str(f->c, key, "mine", 0);
		snprintf(key, sizeof(key), "user:43:%d", i);
		set_str(f->c, key, "theirs", 0);
	}
	assert_rc(shmc_ns_flush(f->c, "user:42:", 8), 0);
	/* Every key under it is gone for every handle, the others stay. */
	expect_missing(c2, "user:42:before");
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "user:42:%d", i);
		expect_missing(i % 2 ? c2 : f->c, key);
		snprintf(key, sizeof(key), "user:43:%d", i);
		expect_str(c2, key, "theirs");
	}
	/* Writes after the flush live. */
	set_str(c2, "user:42:0", "new", 0);
	expect_str(f->c, "user:42:0", "new");
	shmc_close(c2);
}

static void test_shmc_ns_errors(void **state)
{
	struct fx *f = *state;
	char p[SHMC_NS_PREFIX_MAX + 1];
	struct shmc_ns_info list[2];
	size_t n = 0;

	memset(p, 'p', sizeof(p));
	assert_rc(shmc_ns_add(f->c, p, 0), -EINVAL);
	assert_rc(shmc_ns_add(f->c, NULL, 3), -EINVAL);
	assert_rc(shmc_ns_add(f->c, p, SHMC_NS_PREFIX_MAX + 1), -EINVAL);
	assert_rc(shmc_ns_flush(f->c, p, 0), -EINVAL);
	assert_rc(shmc_ns_del(f->c, p, SHMC_NS_PREFIX_MAX + 1), -EINVAL);
	assert_rc(shmc_ns_flush(f->c, "nope", 4), -ENOENT);
	assert_rc(shmc_ns_del(f->c, "nope", 4), -ENOENT);
	assert_rc(shmc_ns_list(f->c, NULL, 2, &n), -EINVAL);
	assert_rc(shmc_ns_list(f->c, list, 2, NULL), -EINVAL);

	assert_rc(shmc_ns_add(f->c, p, SHMC_NS_PREFIX_MAX), 0);
	assert_rc(shmc_ns_add(f->c, p, SHMC_NS_PREFIX_MAX), -EEXIST);
	/* The daemon said which. */
	assert_non_null(strstr(shmc_errmsg(), "already registered"));
	for (int i = 1; i < SHMC_NS_MAX; i++) {
		char q[16];
		int len = snprintf(q, sizeof(q), "ns%d:", i);
		assert_rc(shmc_ns_add(f->c, q, (size_t)len), 0);
	}
	assert_rc(shmc_ns_add(f->c, "one-more", 8), -ENOSPC);
	assert_non_null(strstr(shmc_errmsg(), "--snapshot"));
	/* A list larger than the room given: the count of them all. */
	assert_rc(shmc_ns_list(f->c, list, 2, &n), 0);
	assert_int_equal(n, SHMC_NS_MAX);
	assert_rc(shmc_ns_list(f->c, NULL, 0, &n), 0);
	assert_int_equal(n, SHMC_NS_MAX);
	/* An unregistered prefix keeps its slot (its dropped keys must not
	 * come back): no room for another, but it can come back itself. */
	assert_rc(shmc_ns_del(f->c, "ns1:", 4), 0);
	assert_rc(shmc_ns_add(f->c, "one-more", 8), -ENOSPC);
	assert_rc(shmc_ns_add(f->c, "ns1:", 4), 0);
}

static void test_shmc_ns_list_binary_prefixes_and_marks(void **state)
{
	struct fx *f = *state;
	static const uint8_t bin[] = { 0x00, 0xff, ':', 0x80 };
	struct shmc_ns_info list[8];
	const struct shmc_ns_info *a, *b;
	size_t n = 0;

	assert_rc(shmc_ns_list(f->c, list, 8, &n), 0);
	assert_int_equal(n, 0);
	assert_rc(shmc_ns_add(f->c, bin, sizeof(bin)), 0);
	assert_rc(shmc_ns_add(f->c, "text:", 5), 0);
	assert_rc(shmc_ns_list(f->c, list, 8, &n), 0);
	assert_int_equal(n, 2);
	a = find_ns(list, n, bin, sizeof(bin));
	b = find_ns(list, n, "text:", 5);
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(a->mark, 0);
	assert_int_not_equal(a->slot, b->slot);

	/* A binary key under the binary prefix goes with its flush. */
	uint8_t key[] = { 0x00, 0xff, ':', 0x80, 'k' };
	assert_rc(shmc_set(f->c, key, sizeof(key), "v", 1, 0), 0);
	assert_rc(shmc_ns_flush(f->c, bin, sizeof(bin)), 0);
	char buf[8];
	size_t vlen;
	assert_rc(shmc_get(f->c, key, sizeof(key), buf, sizeof(buf), &vlen),
		  -ENOENT);
	assert_rc(shmc_ns_list(f->c, list, 8, &n), 0);
	a = find_ns(list, n, bin, sizeof(bin));
	assert_non_null(a);
	assert_true(a->mark > 0);
	assert_int_equal(find_ns(list, n, "text:", 5)->mark, 0);

	/* Unregistered: gone from the list, its keys dropped; keys written
	 * after it live. */
	set_str(f->c, "text:old", "yes", 0);
	assert_rc(shmc_ns_del(f->c, "text:", 5), 0);
	assert_rc(shmc_ns_list(f->c, list, 8, &n), 0);
	assert_int_equal(n, 1);
	assert_null(find_ns(list, n, "text:", 5));
	assert_rc(shmc_get(f->c, "text:old", 8, buf, sizeof(buf), &vlen),
		  -ENOENT);
	set_str(f->c, "text:new", "yes", 0);
	expect_str(f->c, "text:new", "yes");
}

/* The table lives in the region: a restarted daemon has it, and a flush
 * through it still drops what was written before the restart. */
static void test_shmc_ns_survive_a_daemon_restart(void **state)
{
	struct fx *f = *state;
	struct shmc_ns_info list[4];
	size_t n = 0;

	assert_rc(shmc_ns_add(f->c, "s:", 2), 0);
	set_str(f->c, "s:1", "v", 0);
	assert_int_equal(tdaemon_stop(&f->d), 0);
	assert_rc(tdaemon_start(&f->d), 0);
	assert_rc(shmc_ns_list(f->c, list, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_non_null(find_ns(list, n, "s:", 2));
	expect_str(f->c, "s:1", "v");
	assert_rc(shmc_ns_flush(f->c, "s:", 2), 0);
	expect_missing(f->c, "s:1");
}

static int setup_namespace_option(void **state)
{
	static const char *const extra[] = { "--namespace",
					     "cfg:", "--namespace",
					     "other:", NULL };

	return fx_start(state, extra);
}

static void test_shmc_ns_registered_by_the_namespace_option(void **state)
{
	struct fx *f = *state;
	struct shmc_ns_info list[4];
	size_t n = 0;

	assert_rc(shmc_ns_list(f->c, list, 4, &n), 0);
	assert_int_equal(n, 2);
	assert_non_null(find_ns(list, n, "cfg:", 4));
	assert_non_null(find_ns(list, n, "other:", 6));
	assert_rc(shmc_ns_add(f->c, "cfg:", 4), -EEXIST);
	set_str(f->c, "cfg:a", "1", 0);
	assert_rc(shmc_ns_flush(f->c, "cfg:", 4), 0);
	expect_missing(f->c, "cfg:a");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_shmc_ns_flush_drops_every_key_under_the_prefix),
		T(test_shmc_ns_errors),
		T(test_shmc_ns_list_binary_prefixes_and_marks),
		T(test_shmc_ns_survive_a_daemon_restart),
		cmocka_unit_test_setup_teardown(
			test_shmc_ns_registered_by_the_namespace_option,
			setup_namespace_option, fx_teardown),
	};

	tdaemon_binary(); /* exits 77 without $SHMC_DAEMON */
	if (getenv("SHMC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SHMC_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
