/*
 * test_engine_mget.c - unit tests of eng_mget() and eng_mset()
 * (shared/engine.h): a multi-get answers each key as eng_get_ex() would,
 * over a random workload with expiries and a flushed namespace; bad keys
 * fail alone; a multi-set stores each item as eng_store() would.
 */
#include "testutil.h"
#include "engine_fixture.h"

#define NKEYS 600
#define BATCH 100 /* more than one internal group, not a multiple of it */

static void key_of(char *key, size_t cap, uint32_t i)
{
	/* A third of the keys in the namespace "ns:", flushed later. */
	snprintf(key, cap, "%s%u", i % 3 ? "k:" : "ns:", i);
}

/* Asserts that res (from eng_mget) is what eng_get_ex says of q now. */
static void assert_as_get(struct eng *e, const struct eng_mkey *q,
			  const struct eng_mres *res, const void *mbuf)
{
	char buf[512];
	struct eng_meta m;
	size_t cap = q->cap < sizeof(buf) ? q->cap : sizeof(buf);
	int rc = eng_get_ex(e, q->key, q->klen, cap ? buf : NULL, cap, &m);

	assert_rc(res->rc, rc);
	if (rc != 0 && rc != -ENOBUFS)
		return;
	assert_int_equal(res->m.vlen, m.vlen);
	assert_int_equal(res->m.flags, m.flags);
	assert_int_equal(res->m.expire, m.expire);
	assert_true(res->m.cas == m.cas);
	if (rc == 0)
		assert_memory_equal(mbuf, buf, m.vlen);
}

static void test_engine_mget_as_single_gets(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 8 };
	struct eng *e = &r->e;
	static char keys[BATCH][32], bufs[BATCH][512];
	struct eng_mkey q[BATCH];
	struct eng_mres res[BATCH];
	char key[32], val[300];
	uint64_t seed = 15;

	tu_region_open(r, 4 * MiB, &cfg);
	assert_rc(eng_ns_add(e, "ns:", 3), 0);
	uint32_t t0 = eng_now(e);
	for (int round = 0; round < 40; round++) {
		/* Writes: random values, flags and TTLs (some short). */
		for (int w = 0; w < 200; w++) {
			uint32_t i = (uint32_t)(tu_rand(&seed) % NKEYS);
			struct eng_wopts o = {
				.flags = (uint32_t)tu_rand(&seed),
				.ttl_s = (uint32_t)(tu_rand(&seed) % 4) * 2,
			};
			size_t vlen = tu_rand(&seed) % sizeof(val);

			key_of(key, sizeof(key), i);
			mkval(val, vlen, i, (uint32_t)round);
			assert_rc(eng_store(e, key, strlen(key), val, vlen, &o,
					    NULL),
				  0);
		}
		eng_clock_set(e, t0 + (uint32_t)round);
		if (round % 10 == 9)
			assert_rc(eng_ns_flush(e, "ns:", 3), 0);
		/* Keys beyond NKEYS were never stored; repeats happen. */
		for (int j = 0; j < BATCH; j++) {
			uint32_t i = (uint32_t)(tu_rand(&seed) % (NKEYS + 50));

			key_of(keys[j], sizeof(keys[j]), i);
			q[j] = (struct eng_mkey){ .key = keys[j],
						  .klen = strlen(keys[j]),
						  .buf = bufs[j],
						  .cap = tu_rand(&seed) % 8
								 ? 512
								 : 16 };
		}
		q[3] = q[2]; /* a duplicate in the same group */
		assert_rc(eng_mget(e, BATCH, q, res, true), 0);
		for (int j = 0; j < BATCH; j++)
			assert_as_get(e, &q[j], &res[j], q[j].buf);
	}
	/* Without want_cas the rest is the same. */
	assert_rc(eng_mget(e, BATCH, q, res, false), 0);
	for (int j = 0; j < BATCH; j++) {
		struct eng_mres with = res[j];

		assert_rc(eng_mget(e, 1, &q[j], &with, true), 0);
		assert_rc(res[j].rc, with.rc);
		if (res[j].rc == 0)
			assert_int_equal(res[j].m.vlen, with.m.vlen);
	}
}

static void test_engine_mget_bad_keys_fail_alone(void **state)
{
	struct tu_region *r = *state;
	struct eng *e = &r->e;
	static char big[ENTRY_KEY_MAX + 1];
	char b[4][16];
	struct eng_mres res[5];

	tu_region_open(r, 4 * MiB, NULL);
	memset(big, 'x', sizeof(big));
	assert_rc(eng_set(e, "a", 1, "1", 1, 0), 0);
	assert_rc(eng_set(e, "b", 1, "22", 2, 0), 0);
	const struct eng_mkey q[5] = {
		{ "a", 1, b[0], sizeof(b[0]) },
		{ big, sizeof(big), b[1], sizeof(b[1]) },
		{ "b", 1, b[2], sizeof(b[2]) },
		{ NULL, 1, b[3], sizeof(b[3]) },
		{ "b", 1, NULL, 4 },
	};
	assert_rc(eng_mget(e, 5, q, res, false), 0);
	assert_rc(res[0].rc, 0);
	assert_memory_equal(b[0], "1", 1);
	assert_rc(res[1].rc, -E2BIG);
	assert_rc(res[2].rc, 0);
	assert_int_equal(res[2].m.vlen, 2);
	assert_memory_equal(b[2], "22", 2);
	assert_rc(res[3].rc, -EINVAL);
	assert_rc(res[4].rc, -EINVAL);
	assert_rc(eng_mget(e, 1, NULL, res, false), -EINVAL);
	assert_rc(eng_mget(e, 1, q, NULL, false), -EINVAL);
	assert_rc(eng_mget(e, 0, NULL, NULL, false), 0);
}

static void test_engine_mset_stores_each(void **state)
{
	struct tu_region *r = *state;
	struct eng *e = &r->e;
	int rc[4];
	uint64_t cas[4];
	const struct eng_mitem it[4] = {
		{ "x", 1, "one", 3 },
		{ "y", 1, "two", 3 },
		{ "", 0, "bad", 3 },
		{ "x", 1, "three", 5 }, /* the later value wins */
	};

	tu_region_open(r, 4 * MiB, NULL);
	assert_rc(eng_mset(e, 4, it, &(struct eng_wopts){ .flags = 7 }, rc,
			   cas),
		  0);
	assert_rc(rc[0], 0);
	assert_rc(rc[1], 0);
	assert_rc(rc[2], -EINVAL);
	assert_rc(rc[3], 0);
	assert_true(cas[3] > cas[0]);
	tu_assert_value(e, "x", 1, "three", 5);
	tu_assert_value(e, "y", 1, "two", 3);
	/* ADD through the options: present keys fail alone. */
	const struct eng_mitem add[2] = { { "y", 1, "no", 2 },
					  { "z", 1, "new", 3 } };
	assert_rc(eng_mset(e, 2, add, &(struct eng_wopts){ .mode = ENG_ADD },
			   rc, NULL),
		  0);
	assert_rc(rc[0], -EEXIST);
	assert_rc(rc[1], 0);
	tu_assert_value(e, "y", 1, "two", 3);
	tu_assert_value(e, "z", 1, "new", 3);
	assert_rc(eng_mset(e, 1, NULL, NULL, rc, NULL), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_engine_mget_as_single_gets),
		T(test_engine_mget_bad_keys_fail_alone),
		T(test_engine_mset_stores_each),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
