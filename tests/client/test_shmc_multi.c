/*
 * test_shmc_multi.c - libshmc against the real daemon: shmc_mget() and
 * shmc_mset(): hits, misses, both in one batch, a key twice, a bad key
 * among good ones, buffers too small, a batch of 1000, versions.
 *
 * Fixtures and helpers: shmc_fixture.h.
 */
#include "shmc_fixture.h"

static struct shmc_mkey mkey(const char *k, void *buf, size_t cap)
{
	return (struct shmc_mkey){ k, strlen(k), buf, cap };
}

static void test_shmc_mget_hits_misses_duplicates(void **state)
{
	struct fx *f = *state;
	char b[5][16];
	struct shmc_mres res[5];

	set_str(f->c, "a", "alpha", 0);
	set_str(f->c, "b", "beta", 60);
	const struct shmc_mkey q[5] = {
		mkey("a", b[0], 16),	mkey("nope", b[1], 16),
		mkey("b", b[2], 16),	mkey("a", b[3], 16),
		mkey("gone", b[4], 16),
	};
	assert_rc(shmc_mget(f->c, 5, q, res, 0), 0);
	assert_rc(res[0].rc, 0);
	assert_int_equal(res[0].vlen, 5);
	assert_memory_equal(b[0], "alpha", 5);
	assert_int_equal(res[0].expire_at, 0);
	assert_rc(res[1].rc, -ENOENT);
	assert_rc(res[2].rc, 0);
	assert_memory_equal(b[2], "beta", 4);
	assert_true(res[2].expire_at > 0);
	assert_rc(res[3].rc, 0);
	assert_memory_equal(b[3], "alpha", 5);
	assert_rc(res[4].rc, -ENOENT);

	/* All missing. */
	const struct shmc_mkey m[2] = { mkey("x", b[0], 16),
					mkey("y", b[1], 16) };
	assert_rc(shmc_mget(f->c, 2, m, res, 0), 0);
	assert_rc(res[0].rc, -ENOENT);
	assert_rc(res[1].rc, -ENOENT);
	/* Nothing asked, nothing done. */
	assert_rc(shmc_mget(f->c, 0, NULL, NULL, 0), 0);
}

static void test_shmc_mget_bad_key_and_small_buffers(void **state)
{
	struct fx *f = *state;
	static char big[SHMC_KEY_MAX + 1];
	char b[4][8];
	struct shmc_mres res[4];

	memset(big, 'k', sizeof(big));
	set_str(f->c, "short", "1234", 0);
	set_str(f->c, "long", "0123456789", 0);
	const struct shmc_mkey q[4] = {
		mkey("short", b[0], 8),
		{ big, sizeof(big), b[1], 8 },
		mkey("long", b[2], 8),
		mkey("long", NULL, 0),
	};
	memset(b[2], 0xa5, 8);
	assert_rc(shmc_mget(f->c, 4, q, res, 0), 0);
	assert_rc(res[0].rc, 0);
	assert_memory_equal(b[0], "1234", 4);
	assert_rc(res[1].rc, -E2BIG);
	/* Too small: the length needed, nothing copied. */
	assert_rc(res[2].rc, -ENOBUFS);
	assert_int_equal(res[2].vlen, 10);
	assert_true(all_bytes(b[2], 8, 0xa5));
	assert_rc(res[3].rc, -ENOBUFS);
	assert_int_equal(res[3].vlen, 10);

	assert_rc(shmc_mget(NULL, 1, q, res, 0), -EINVAL);
	assert_rc(shmc_mget(f->c, 1, NULL, res, 0), -EINVAL);
	assert_rc(shmc_mget(f->c, 1, q, NULL, 0), -EINVAL);
	assert_rc(shmc_mget(f->c, 1, q, res, 2), -EINVAL);
}

static void test_shmc_mget_thousand_keys(void **state)
{
	struct fx *f = *state;
	enum { N = 1000 };
	static char keys[N][16], bufs[N][32];
	static struct shmc_mkey q[N];
	static struct shmc_mres res[N];
	static struct shmc_mitem it[N];
	static int rc[N];

	for (int i = 0; i < N; i++) {
		snprintf(keys[i], sizeof(keys[i]), "key-%d", i);
		it[i] = (struct shmc_mitem){ keys[i], strlen(keys[i]), keys[i],
					     strlen(keys[i]) };
		q[i] = mkey(keys[i], bufs[i], sizeof(bufs[i]));
	}
	/* Every other key stored, through shmc_mset. */
	for (int i = 0; i < N; i += 2)
		it[i / 2] = it[i];
	assert_rc(shmc_mset(f->c, N / 2, it, 0, rc), 0);
	for (int i = 0; i < N / 2; i++)
		assert_rc(rc[i], 0);
	assert_rc(shmc_mget(f->c, N, q, res, SHMC_MGET_CAS), 0);
	for (int i = 0; i < N; i++) {
		if (i % 2) {
			assert_rc(res[i].rc, -ENOENT);
			continue;
		}
		assert_rc(res[i].rc, 0);
		assert_int_equal(res[i].vlen, strlen(keys[i]));
		assert_memory_equal(bufs[i], keys[i], res[i].vlen);
		assert_true(res[i].cas != 0);
	}
}

static void test_shmc_mset_items_fail_alone(void **state)
{
	struct fx *f = *state;
	static char big[SHMC_KEY_MAX + 1];
	int rc[4];

	memset(big, 'k', sizeof(big));
	const struct shmc_mitem it[4] = {
		{ "p", 1, "1", 1 },
		{ big, sizeof(big), "2", 1 },
		{ "q", 0, "3", 1 },
		{ "p", 1, "later", 5 },
	};
	assert_rc(shmc_mset(f->c, 4, it, 30, rc), 0);
	assert_rc(rc[0], 0);
	assert_rc(rc[1], -E2BIG);
	assert_rc(rc[2], -EINVAL);
	assert_rc(rc[3], 0);
	expect_str(f->c, "p", "later");
	uint32_t ttl = 0;
	assert_rc(shmc_ttl(f->c, "p", 1, &ttl), 0);
	assert_true(ttl > 0 && ttl <= 30);
	assert_rc(shmc_mset(f->c, 1, NULL, 0, rc), -EINVAL);
	assert_rc(shmc_mset(f->c, 1, it, 0, NULL), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_shmc_mget_hits_misses_duplicates),
		T(test_shmc_mget_bad_key_and_small_buffers),
		T(test_shmc_mget_thousand_keys),
		T(test_shmc_mset_items_fail_alone),
	};

	tdaemon_binary(); /* exits 77 without $SHMC_DAEMON */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
