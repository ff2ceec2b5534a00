/*
 * test_shmc_scan.c - libshmc against the real daemon: shmc_scan, the
 * cursor-based listing of keys - every key exactly once, the prefix
 * filter, expired and deleted keys left out, the metadata reported, a
 * cursor resumed after other clients wrote, and a callback that holds no
 * lock.
 *
 * Fixtures and helpers: shmc_fixture.h.
 */
#include "shmc_fixture.h"

#define NKEYS 10000

/* What a listing saw: how often each "k:NNNNN" key, and the rest. */
struct seen {
	unsigned char count[NKEYS + 5000];
	size_t listed, others;
	struct shmc_key_info last; /* of the last key named want */
	char want[32];
	int found;
};

/* Each case's tally, cleared.  Static, not malloc'd: a child forked while
 * it is in use (spawn()) exits with it still reachable, which valgrind's
 * leak check in the child would otherwise report as lost. */
static struct seen *seen_new(void)
{
	static struct seen s;

	memset(&s, 0, sizeof(s));
	return &s;
}

static int note_key(const struct shmc_key_info *k, void *arg)
{
	struct seen *s = arg;
	char key[32];
	unsigned n;

	s->listed++;
	if (k->klen < sizeof(key)) {
		memcpy(key, k->key, k->klen);
		key[k->klen] = '\0';
		if (s->want[0] && strcmp(key, s->want) == 0) {
			s->last = *k;
			s->found++;
		}
		if (sscanf(key, "k:%05u", &n) == 1 && n < NKEYS + 5000) {
			if (s->count[n] < 255)
				s->count[n]++;
			return 0;
		}
	}
	s->others++;
	return 0;
}

/* A whole scan from 0 back to 0; returns how many calls it took. */
static unsigned scan_all(shmc *c, const char *prefix, struct seen *s)
{
	uint64_t cur = 0;
	unsigned calls = 0;

	do {
		assert_rc(shmc_scan(c, &cur, prefix,
				    prefix ? strlen(prefix) : 0, note_key, s),
			  0);
		calls++;
		assert_true(calls <= NSEG);
	} while (cur != 0);
	return calls;
}

static void set_keys(shmc *c, unsigned from, unsigned to)
{
	char key[32];

	for (unsigned i = from; i < to; i++) {
		int n = snprintf(key, sizeof(key), "k:%05u", i);
		assert_rc(shmc_set(c, key, (size_t)n, "v", 1, 0), 0);
	}
}

static void test_shmc_scan_lists_every_key_once(void **state)
{
	struct fx *f = *state;
	struct shmc_stats st;
	struct seen *s = seen_new();

	set_keys(f->c, 0, NKEYS);
	for (int i = 0; i < 100; i++) {
		char key[32];
		int n = snprintf(key, sizeof(key), "other:%d", i);
		assert_rc(shmc_set(f->c, key, (size_t)n, "v", 1, 0), 0);
	}
	stat_of(f->c, &st);
	assert_int_equal(st.entries, NKEYS + 100); /* nothing evicted */

	/* With the prefix: the 10000 keys, each once, nothing else. */
	assert_int_equal(scan_all(f->c, "k:", s), NSEG);
	assert_int_equal(s->listed, NKEYS);
	assert_int_equal(s->others, 0);
	for (unsigned i = 0; i < NKEYS; i++)
		if (s->count[i] != 1)
			fail_msg("k:%05u listed %u times", i, s->count[i]);

	/* Without: everything. */
	memset(s, 0, sizeof(*s));
	scan_all(f->c, NULL, s);
	assert_int_equal(s->listed, NKEYS + 100);
	assert_int_equal(s->others, 100);

	/* A prefix nothing has, and one longer than some keys. */
	memset(s, 0, sizeof(*s));
	scan_all(f->c, "nothing", s);
	assert_int_equal(s->listed, 0);
	memset(s, 0, sizeof(*s));
	scan_all(f->c, "k:0999", s);
	assert_int_equal(s->listed, 10);
}

static void test_shmc_scan_reports_size_ttl_and_flags(void **state)
{
	struct fx *f = *state;
	struct seen *s = seen_new();

	set_str(f->c, "forever", "twelve bytes", 0);
	set_str(f->c, "hundred", "abc", 100);

	strcpy(s->want, "forever");
	scan_all(f->c, NULL, s);
	assert_int_equal(s->found, 1);
	assert_int_equal(s->last.klen, 7);
	assert_int_equal(s->last.vlen, 12);
	assert_int_equal(s->last.flags, 0); /* shmc_set stores none */
	assert_int_equal(s->last.ttl_s, 0);
	assert_int_equal(s->last.expire_at, 0);
	assert_true(s->last.cas != 0);

	memset(s, 0, sizeof(*s));
	strcpy(s->want, "hundred");
	scan_all(f->c, NULL, s);
	assert_int_equal(s->found, 1);
	assert_int_equal(s->last.vlen, 3);
	if (s->last.ttl_s < 1 || s->last.ttl_s > 100)
		fail_msg("ttl %u after a set with TTL 100", s->last.ttl_s);
	assert_true(s->last.expire_at != 0);
}

static void test_shmc_scan_skips_expired_and_deleted(void **state)
{
	struct fx *f = *state;
	struct seen *s = seen_new();
	uint64_t end = clock_mono_ms() + HANG_MS;
	uint32_t t;

	set_str(f->c, "k:00001", "stays", 0);
	set_str(f->c, "k:00002", "deleted", 0);
	set_str(f->c, "k:00003", "expires", 1);
	assert_rc(shmc_del(f->c, "k:00002", 7), 0);
	/* The daemon's clock ticks each second: expired within 2 s. */
	while (shmc_ttl(f->c, "k:00003", 7, &t) == 0 && clock_mono_ms() < end)
		sleep_ms(20);
	assert_rc(shmc_ttl(f->c, "k:00003", 7, &t), -ENOENT);

	scan_all(f->c, NULL, s);
	assert_int_equal(s->listed, 1);
	assert_int_equal(s->count[1], 1);
}

/* Another process writes new keys and deletes some old ones. */
static void writer_child(void *arg)
{
	shmc *c;
	char key[32];

	CHILD_RC(shmc_open(&c, arg), 0);
	for (unsigned i = NKEYS; i < NKEYS + 5000; i++) {
		int n = snprintf(key, sizeof(key), "k:%05u", i);
		CHILD_RC(shmc_set(c, key, (size_t)n, "new", 3, 0), 0);
	}
	for (unsigned i = 0; i < NKEYS; i += 10) {
		int n = snprintf(key, sizeof(key), "k:%05u", i);
		CHILD_RC(shmc_del(c, key, (size_t)n), 0);
	}
	shmc_close(c);
}

static void test_shmc_scan_resumes_after_writes(void **state)
{
	struct fx *f = *state;
	struct seen *s = seen_new();
	uint64_t cur = 0;
	unsigned calls = 0;

	set_keys(f->c, 0, NKEYS);
	for (; calls < NSEG / 2; calls++)
		assert_rc(shmc_scan(f->c, &cur, "k:", 2, note_key, s), 0);
	assert_true(cur != 0);

	assert_int_equal(wait_child(spawn(writer_child, f->d.sock), HANG_MS),
			 0);

	do {
		assert_rc(shmc_scan(f->c, &cur, "k:", 2, note_key, s), 0);
		calls++;
	} while (cur != 0 && calls <= NSEG);
	assert_int_equal(calls, NSEG);
	/* The keys present throughout: exactly once; the others at most. */
	for (unsigned i = 0; i < NKEYS + 5000; i++) {
		bool throughout = i < NKEYS && i % 10 != 0;
		if (throughout ? s->count[i] != 1 : s->count[i] > 1)
			fail_msg("k:%05u listed %u times", i, s->count[i]);
	}
}

/* Writes into the cache from the callback: it holds no lock. */
static int write_back(const struct shmc_key_info *k, void *arg)
{
	shmc *c = arg;
	char key[64];

	if (k->klen != 7 || memcmp(k->key, "k:", 2) != 0)
		return 0;
	/* "w:" + the key: may fall in any segment, this one included. */
	memcpy(key, "w:", 2);
	memcpy(key + 2, k->key, k->klen);
	return shmc_set(c, key, k->klen + 2, "w", 1, 0);
}

static void test_shmc_scan_callback_may_call_the_cache(void **state)
{
	struct fx *f = *state;
	struct seen *s = seen_new();
	uint64_t cur = 0;

	set_keys(f->c, 0, 500);
	do
		assert_rc(shmc_scan(f->c, &cur, "k:", 2, write_back, f->c), 0);
	while (cur != 0);
	scan_all(f->c, "w:k:", s);
	assert_int_equal(s->listed, 500);
}

static int stop_at_first(const struct shmc_key_info *k, void *arg)
{
	(void)k;
	(*(int *)arg)++;
	return 7;
}

static void test_shmc_scan_stops_and_refuses_bad_arguments(void **state)
{
	struct fx *f = *state;
	uint64_t cur = 0;
	int calls = 0;

	set_keys(f->c, 0, 1000);
	/* fn's non-zero return stops the listing; the cursor stays. */
	while (calls == 0) {
		uint64_t before = cur;
		int rc = shmc_scan(f->c, &cur, NULL, 0, stop_at_first, &calls);
		if (calls) {
			assert_rc(rc, 7);
			assert_true(cur == before);
		} else {
			assert_rc(rc, 0);
			assert_true(cur != 0); /* 1000 keys are somewhere */
		}
	}
	assert_int_equal(calls, 1);

	cur = NSEG;
	assert_rc(shmc_scan(f->c, &cur, NULL, 0, stop_at_first, &calls),
		  -EINVAL);
	cur = 0;
	assert_rc(shmc_scan(f->c, &cur, NULL, 0, NULL, NULL), -EINVAL);
	assert_rc(shmc_scan(f->c, &cur, NULL, 2, stop_at_first, &calls),
		  -EINVAL);
	assert_rc(shmc_scan(f->c, NULL, NULL, 0, stop_at_first, &calls),
		  -EINVAL);
	assert_rc(shmc_scan(NULL, &cur, NULL, 0, stop_at_first, &calls),
		  -EINVAL);
	assert_int_equal(calls, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_shmc_scan_lists_every_key_once),
		T(test_shmc_scan_reports_size_ttl_and_flags),
		T(test_shmc_scan_skips_expired_and_deleted),
		T(test_shmc_scan_resumes_after_writes),
		T(test_shmc_scan_callback_may_call_the_cache),
		T(test_shmc_scan_stops_and_refuses_bad_arguments),
	};

	tdaemon_binary(); /* exits 77 without $SHMC_DAEMON */
	if (getenv("SHMC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SHMC_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
