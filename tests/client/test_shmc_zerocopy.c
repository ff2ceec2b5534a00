/*
 * test_shmc_zerocopy.c - libshmc against the real daemon: zero-copy
 * access: reading a value in place (also when it wraps round the ring),
 * reserving and committing or aborting space for a value (also wrapped,
 * too large), and readers never seeing a partial value.
 *
 * Fixtures and helpers: shmc_fixture.h.
 */
#include "shmc_fixture.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_shmc_read_in_place),	 T(test_shmc_read_wraps),
		T(test_shmc_reserve_commit),	 T(test_shmc_reserve_wraps),
		T(test_shmc_reserve_abort),	 T(test_shmc_reserve_too_large),
		T(test_shmc_reserve_no_partial),
	};

	tdaemon_binary(); /* exits 77 without $SHMC_DAEMON */
	/* SHMC_TEST_FILTER=test_shmc_ping*: only the cases it matches. */
	if (getenv("SHMC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SHMC_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
