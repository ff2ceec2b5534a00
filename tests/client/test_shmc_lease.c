/*
 * test_shmc_lease.c - fill leases ("no stale fill") against the real
 * daemon: shmc_get_lease, shmc_lease_begin, shmc_fill, and the lease that
 * shmc_get_or_load takes for its loader.
 *
 * The race a lease closes is forced step by step, never left to timing:
 * a reader misses and reads the store of record (here a page shared with
 * the children, standing for Redis), a writer then changes the store and
 * invalidates the key, and only then does the reader fill.  Its old value
 * must not be cached.
 *
 * Fixtures and helpers: shmc_fixture.h.
 */
#include "shmc_fixture.h"

#include "clock.h"

/* The store of record the children share, and the steps of the race. */
struct store {
	char value[64];
	volatile int read_done;	 /* the reader has read the store */
	volatile int inval_done; /* the writer wrote and invalidated */
};

static void store_put(struct store *st, const char *v)
{
	snprintf(st->value, sizeof(st->value), "%s", v);
}

static void test_shmc_lease_fill_after_a_miss_is_cached(void **state)
{
	struct fx *f = *state;
	struct shmc_store_opts o = { .flags = 7, .ttl_s = 0 };
	struct shmc_lease l;
	struct shmc_item it;
	char buf[16];
	uint64_t cas = 0;

	assert_rc(shmc_get_lease(f->c, "k", 1, buf, sizeof(buf), &it, &l),
		  -ENOENT);
	assert_rc(shmc_fill(f->c, &l, "k", 1, "v1", 2, &o, &cas), 0);
	assert_true(cas != 0);
	/* A hit leaves the lease alone and returns the item. */
	assert_rc(shmc_get_lease(f->c, "k", 1, buf, sizeof(buf), &it, &l), 0);
	assert_int_equal(it.vlen, 2);
	assert_memory_equal(buf, "v1", 2);
	assert_int_equal(it.flags, 7);
	assert_true(it.cas == cas);
}

static void test_shmc_lease_invalidation_before_the_fill_voids_it(void **state)
{
	struct fx *f = *state;
	struct shmc_lease l;
	struct shmc_item it;
	char buf[16];

	set_str(f->c, "user:1", "old", 0);
	/* The invalidation of a present key... */
	assert_rc(shmc_del(f->c, "user:1", 6), 0);
	assert_rc(shmc_get_lease(f->c, "user:1", 6, buf, sizeof(buf), &it, &l),
		  -ENOENT);
	/* (the reader reads "old" from the store here) */
	assert_rc(shmc_del(f->c, "user:1", 6), -ENOENT);
	/* ...and of an absent one: the fill must not install what the
	 * reader read before the write. */
	assert_rc(shmc_fill(f->c, &l, "user:1", 6, "old", 3, NULL, NULL),
		  -ESTALE);
	expect_missing(f->c, "user:1");
	/* The next miss takes a new lease, and its fill is cached. */
	assert_rc(shmc_get_lease(f->c, "user:1", 6, buf, sizeof(buf), &it, &l),
		  -ENOENT);
	assert_rc(shmc_fill(f->c, &l, "user:1", 6, "new", 3, NULL, NULL), 0);
	expect_str(f->c, "user:1", "new");
}

static void test_shmc_lease_value_stored_meanwhile_stays(void **state)
{
	struct fx *f = *state;
	struct shmc_lease l;

	assert_rc(shmc_lease_begin(f->c, "k", 1, &l), 0);
	set_str(f->c, "k", "written", 0);
	assert_rc(shmc_fill(f->c, &l, "k", 1, "read", 4, NULL, NULL), -EEXIST);
	expect_str(f->c, "k", "written");
}

static void test_shmc_lease_namespace_flush_voids_it(void **state)
{
	struct fx *f = *state;
	struct shmc_lease l, other;

	assert_rc(shmc_ns_add(f->c, "p:", 2), 0);
	assert_rc(shmc_lease_begin(f->c, "p:k", 3, &l), 0);
	assert_rc(shmc_lease_begin(f->c, "q:k", 3, &other), 0);
	assert_rc(shmc_ns_flush(f->c, "p:", 2), 0);
	assert_rc(shmc_fill(f->c, &l, "p:k", 3, "v", 1, NULL, NULL), -ESTALE);
	expect_missing(f->c, "p:k");
	/* A key under no namespace is not affected by the flush. */
	assert_rc(shmc_fill(f->c, &other, "q:k", 3, "v", 1, NULL, NULL), 0);
	expect_str(f->c, "q:k", "v");
}

static void test_shmc_lease_errors(void **state)
{
	struct fx *f = *state;
	struct shmc_lease l;
	struct shmc_item it;
	char buf[4];
	char key[32];
	int other = -1;

	assert_rc(shmc_lease_begin(f->c, "", 0, &l), -EINVAL);
	assert_rc(shmc_lease_begin(f->c, "k", 1, NULL), -EINVAL);
	assert_rc(shmc_get_lease(f->c, "k", 1, buf, sizeof(buf), &it, NULL),
		  -EINVAL);
	assert_rc(shmc_fill(f->c, NULL, "k", 1, "v", 1, NULL, NULL), -EINVAL);
	/* A lease of a key in another segment is refused, not used. */
	assert_rc(shmc_lease_begin(f->c, "k", 1, &l), 0);
	for (int i = 0; i < 1000 && other < 0; i++) {
		struct shmc_lease m;
		snprintf(key, sizeof(key), "other%d", i);
		assert_rc(shmc_lease_begin(f->c, key, strlen(key), &m), 0);
		if (memcmp(&m.priv_[0], &l.priv_[0], sizeof(m.priv_[0])))
			other = i;
	}
	assert_true(other >= 0);
	assert_rc(shmc_fill(f->c, &l, key, strlen(key), "v", 1, NULL, NULL),
		  -EINVAL);
	expect_missing(f->c, key);
	/* A hit with a buffer too small says so and takes no lease. */
	set_str(f->c, "big", "0123456789", 0);
	assert_rc(shmc_get_lease(f->c, "big", 3, buf, sizeof(buf), &it, &l),
		  -ENOBUFS);
	assert_int_equal(it.vlen, 10);
}

/* The race across processes, forced: the reader misses and reads the
 * store; the writer then writes the store and invalidates; then the
 * reader fills.  *want is what the fill must return. */
struct race {
	struct store *st;
	const char *sock;
	bool use_get_or_load;
};

static int race_loader(const void *key, size_t klen, void *buf, size_t cap,
		       size_t *vlen, uint32_t *ttl_s, void *arg)
{
	struct store *st = arg;
	size_t n = strlen(st->value);

	(void)key;
	(void)klen;
	CHILD_CHECK(n <= cap);
	memcpy(buf, st->value, n); /* the read of the store */
	*vlen = n;
	*ttl_s = 0;
	set_flag(&st->read_done);
	CHILD_CHECK(wait_flag(&st->inval_done, HANG_MS));
	return 0;
}

static void race_reader(void *arg)
{
	struct race *r = arg;
	struct store *st = r->st;
	char buf[64];
	size_t n = 0;
	shmc *c;

	CHILD_RC(shmc_open(&c, r->sock), 0);
	if (r->use_get_or_load) {
		/* The caller gets what its loader read... */
		CHILD_RC(shmc_get_or_load(c, "user:7", 6, buf, sizeof(buf), &n,
					  race_loader, st),
			 0);
		CHILD_CHECK(n == 3 && memcmp(buf, "old", 3) == 0);
	} else {
		struct shmc_lease l;
		struct shmc_item it;

		CHILD_RC(shmc_get_lease(c, "user:7", 6, buf, sizeof(buf), &it,
					&l),
			 -ENOENT);
		n = strlen(st->value);
		memcpy(buf, st->value, n);
		set_flag(&st->read_done);
		CHILD_CHECK(wait_flag(&st->inval_done, HANG_MS));
		CHILD_RC(shmc_fill(c, &l, "user:7", 6, buf, n, NULL, NULL),
			 -ESTALE);
	}
	/* ...but the region does not keep it. */
	CHILD_RC(shmc_get(c, "user:7", 6, buf, sizeof(buf), &n), -ENOENT);
	shmc_close(c);
}

static void race(struct fx *f, bool use_get_or_load)
{
	struct store *st = shared_page();
	struct race r = { .st = st,
			  .sock = f->d.sock,
			  .use_get_or_load = use_get_or_load };
	char buf[64];
	size_t n = 0;

	memset(st, 0, sizeof(*st));
	store_put(st, "old");
	pid_t pid = spawn(race_reader, &r);
	assert_true(wait_flag(&st->read_done, HANG_MS));
	/* The writer: the store of record first, then the invalidation (as
	 * Redis sends it after the write). */
	store_put(st, "new");
	assert_rc(shmc_del(f->c, "user:7", 6), -ENOENT);
	set_flag(&st->inval_done);
	assert_int_equal(wait_child(pid, HANG_MS), 0);
	/* The next reader loads and caches the new value. */
	assert_rc(shmc_get_or_load(f->c, "user:7", 6, buf, sizeof(buf), &n,
				   race_loader, st),
		  0);
	assert_int_equal(n, 3);
	assert_memory_equal(buf, "new", 3);
	expect_str(f->c, "user:7", "new");
}

static void test_shmc_lease_forced_race_across_processes(void **state)
{
	race(*state, false);
}

static void
test_shmc_lease_get_or_load_does_not_cache_a_stale_load(void **state)
{
	race(*state, true);
}

/* A daemon whose Redis is not there: its prefix "user:" stays blocked. */
static int setup_blocked(void **state)
{
	static const char *const extra[] = { "--redis", "127.0.0.1:1",
					     "--redis-prefix", "user:", NULL };

	return fx_start(state, extra);
}

struct holder {
	const char *sock;
	volatile int loading;
	volatile int release;
};

static int held_loader(const void *key, size_t klen, void *buf, size_t cap,
		       size_t *vlen, uint32_t *ttl_s, void *arg)
{
	struct holder *h = arg;

	(void)key;
	(void)klen;
	CHILD_CHECK(cap >= 4);
	set_flag(&h->loading);
	CHILD_CHECK(wait_flag(&h->release, HANG_MS));
	memcpy(buf, "held", 4);
	*vlen = 4;
	*ttl_s = 0;
	return 0;
}

static void hold_load(void *arg)
{
	struct holder *h = arg;
	char buf[16];
	size_t n = 0;
	shmc *c;

	CHILD_RC(shmc_open(&c, h->sock), 0);
	CHILD_RC(shmc_get_or_load(c, "user:x", 6, buf, sizeof(buf), &n,
				  held_loader, h),
		 0);
	CHILD_CHECK(n == 4 && memcmp(buf, "held", 4) == 0);
	shmc_close(c);
}

static int mine_loader(const void *key, size_t klen, void *buf, size_t cap,
		       size_t *vlen, uint32_t *ttl_s, void *arg)
{
	(void)key;
	(void)klen;
	(void)arg;
	assert_true(cap >= 4);
	memcpy(buf, "mine", 4);
	*vlen = 4;
	*ttl_s = 0;
	return 0;
}

/* While the prefix is blocked nothing a loader reads is cached, so the
 * callers of one key do not wait for one another's load: each loads. */
static void test_shmc_lease_blocked_prefix_loads_without_waiting(void **state)
{
	struct fx *f = *state;
	struct holder *h = shared_page();
	struct shmc_lease l;
	char buf[16];
	size_t n = 0;

	memset(h, 0, sizeof(*h));
	h->sock = f->d.sock;
	assert_rc(shmc_lease_begin(f->c, "user:x", 6, &l), 0);
	assert_rc(shmc_fill(f->c, &l, "user:x", 6, "v", 1, NULL, NULL),
		  -ESTALE);
	pid_t pid = spawn(hold_load, h);
	assert_true(wait_flag(&h->loading, HANG_MS));
	/* The other caller holds the key's load and will until released:
	 * this one loads at once instead of waiting SHMC_LOAD_WAIT_MS for
	 * it (the parent releases it only afterwards). */
	uint64_t t0 = clock_mono_ms();
	assert_rc(shmc_get_or_load(f->c, "user:x", 6, buf, sizeof(buf), &n,
				   mine_loader, NULL),
		  0);
	assert_int_equal(n, 4);
	assert_memory_equal(buf, "mine", 4);
	assert_true(clock_mono_ms() - t0 < SHMC_LOAD_WAIT_MS);
	set_flag(&h->release);
	assert_int_equal(wait_child(pid, HANG_MS), 0);
	expect_missing(f->c, "user:x");
	/* Keys outside the blocked prefix are cached as ever. */
	assert_rc(shmc_get_or_load(f->c, "page:x", 6, buf, sizeof(buf), &n,
				   mine_loader, NULL),
		  0);
	expect_str(f->c, "page:x", "mine");
}

/* What the daemon keeps coherent, as a read-through cache asks for it
 * before it fills: nothing without --redis; the --redis-prefix list, as
 * given, with it (reachable or not: the list does not wait for Redis). */
static void test_shmc_near_query_without_redis_is_off(void **state)
{
	struct fx *f = *state;
	struct shmc_near_info ni;

	assert_rc(shmc_near_query(f->c, NULL), -EINVAL);
	memset(&ni, 0xff, sizeof(ni));
	assert_rc(shmc_near_query(f->c, &ni), 0);
	assert_string_equal(ni.state, "off");
	assert_int_equal(ni.nprefix, 0);
}

static int setup_two_prefixes(void **state)
{
	static const char *const extra[] = {
		"--redis", "127.0.0.1:1",    "--redis-prefix",
		"user:",   "--redis-prefix", "s",
		NULL
	};

	return fx_start(state, extra);
}

static void test_shmc_near_query_lists_the_tracked_prefixes(void **state)
{
	struct fx *f = *state;
	struct shmc_near_info ni;

	assert_rc(shmc_near_query(f->c, &ni), 0);
	/* Redis at port 1 never answers: never "up", never "off". */
	assert_true(!strcmp(ni.state, "connecting") ||
		    !strcmp(ni.state, "down"));
	assert_int_equal(ni.nprefix, 2);
	assert_int_equal(ni.prefix[0].len, 5);
	assert_memory_equal(ni.prefix[0].bytes, "user:", 5);
	assert_int_equal(ni.prefix[1].len, 1);
	assert_memory_equal(ni.prefix[1].bytes, "s", 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_shmc_lease_fill_after_a_miss_is_cached),
		T(test_shmc_lease_invalidation_before_the_fill_voids_it),
		T(test_shmc_lease_value_stored_meanwhile_stays),
		T(test_shmc_lease_namespace_flush_voids_it),
		T(test_shmc_lease_errors),
		T(test_shmc_lease_forced_race_across_processes),
		T(test_shmc_lease_get_or_load_does_not_cache_a_stale_load),
		cmocka_unit_test_setup_teardown(
			test_shmc_lease_blocked_prefix_loads_without_waiting,
			setup_blocked, fx_teardown),
		T(test_shmc_near_query_without_redis_is_off),
		cmocka_unit_test_setup_teardown(
			test_shmc_near_query_lists_the_tracked_prefixes,
			setup_two_prefixes, fx_teardown),
	};

	tdaemon_binary(); /* exits 77 without $SHMC_DAEMON */
	if (getenv("SHMC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SHMC_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
