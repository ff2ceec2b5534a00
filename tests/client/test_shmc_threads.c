/*
 * test_shmc_threads.c - libshmc against the real daemon, shared: one
 * handle used by several threads, several processes reading what another
 * writes, and a process stuck holding a segment's lock (others time out)
 * that then dies (the daemon resets the segment and everyone goes on).
 *
 * Fixtures and helpers: shmc_fixture.h.
 */
#include "shmc_fixture.h"

#define TH_N 4
#define TH_KEYS 256
#define TH_ROUNDS                                                              \
	64 /* of 64 operations per thread: a count, not a time,
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
	uint64_t kh = fnv1a64(k, kl);
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
	return kh == fnv1a64(k, kl) && n == 16 + seed % 400 &&
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
				rc = shmc_get(a->c, k, (size_t)kl, v, sizeof(v),
					      &n);
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
	t0 = clock_mono_ms();
	rc = shmc_get(f->c, "held", 4, buf, sizeof(buf), &n);
	if (rc != -ETIMEDOUT) {
		kill(holder, SIGKILL);
		wait_child(holder, HANG_MS);
		fail_msg("get on a segment held by a stuck process: %d (%s), "
			 "want -ETIMEDOUT",
			 rc, shmc_strerror(rc));
	}
	assert_true(clock_mono_ms() - t0 >= 250);

	kill(holder, SIGKILL);
	assert_int_equal(wait_child(holder, HANG_MS), 128 + SIGKILL);
	/* Now the daemon takes the lock over and resets the segment. */
	end = clock_mono_ms() + HANG_MS;
	do {
		rc = shmc_get(f->c, "held", 4, buf, sizeof(buf), &n);
	} while ((rc == -ETIMEDOUT || rc == -EUCLEAN) && clock_mono_ms() < end);
	assert_rc(rc, -ENOENT); /* never committed */
	set_str(f->c, "held", "free again", 0);
	expect_str(f->c, "held", "free again");
	stat_of(f->c, &st);
	assert_true(st.repairs >= 1);
	munmap(a.reserved, 4096);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_shmc_threads_shared_handle),
		T(test_shmc_multiprocess_share),
		cmocka_unit_test_setup_teardown(
			test_shmc_lock_stuck_then_dead_holder,
			fx_setup_short_lock, fx_teardown),
	};

	tdaemon_binary(); /* exits 77 without $SHMC_DAEMON */
	/* SHMC_TEST_FILTER=test_shmc_ping*: only the cases it matches. */
	if (getenv("SHMC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SHMC_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
