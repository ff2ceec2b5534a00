/*
 * test_threads.c - the engine under concurrency: two threads, each with its
 * own attachment (client ids 1 and 2) to one region, hammer set/get/del/
 * peek/touch on overlapping keys in a few segments for about a second and a
 * half.  Every value checks itself (it embeds its key's hash, its length and
 * a checksum of all of it), so a torn value, a value of another key or a
 * wrong length is caught on the read that sees it.  Three more cases add a
 * third thread: one iterating the region (every item must check out), one
 * doing maintenance (eng_check must find nothing while writers run, sweeps,
 * clears, clock steps), and one that only reads: its gets of keys in use
 * take no lock (eng_get's optimistic path), so a read that overlaps a
 * write must be caught by the segment's seq and retried, never returned.  Afterwards eng_check is clean on every segment and
 * no lock is left held.
 *
 * SHMC_TEST_SCALE scales the duration.
 */
#include "testutil.h"

#include <pthread.h>

enum {
	NKEYS = 256,
	HDR = 16,    /* key hash (8) + length (4) + seed (4) */
	TRAILER = 8, /* FNV-1a of everything before it */
	MIN_LEN = HDR + TRAILER,
	REGION = 256 * 1024,
	NSEG = 4,
};

static size_t key_of(uint32_t k, char *buf, size_t cap)
{
	return tu_key(buf, cap, "thr:", k);
}

/* A self-checking value of len (>= MIN_LEN) bytes for key. */
static void make_value(uint8_t *v, size_t len, const char *key, size_t klen,
		       uint32_t seed)
{
	uint64_t kh = fnv1a64(key, klen), sum;
	uint32_t l = (uint32_t)len;

	memcpy(v, &kh, 8);
	memcpy(v + 8, &l, 4);
	memcpy(v + 12, &seed, 4);
	tu_fill(v + HDR, len - MIN_LEN, seed);
	sum = fnv1a64(v, len - TRAILER);
	memcpy(v + len - TRAILER, &sum, TRAILER);
}

enum verdict { V_OK, V_SHORT, V_FOREIGN, V_LENGTH, V_TORN };

static enum verdict check_value(const uint8_t *v, size_t len, const char *key,
				size_t klen)
{
	uint64_t kh, sum;
	uint32_t l;

	if (len < MIN_LEN)
		return V_SHORT;
	memcpy(&kh, v, 8);
	memcpy(&l, v + 8, 4);
	memcpy(&sum, v + len - TRAILER, TRAILER);
	if (sum != fnv1a64(v, len - TRAILER))
		return V_TORN;
	if (kh != fnv1a64(key, klen))
		return V_FOREIGN;
	if (l != len)
		return V_LENGTH;
	return V_OK;
}

/* A run lasts duration_ms() and until each thread has seen what the
 * checks below need (so many hits, sets, clears, an eviction): on a busy
 * machine that takes longer, and the checks must not depend on it.
 * HANG_MS ends it anyway, for the checks to report what is missing. */
#define HANG_MS 60000u

struct worker {
	struct eng e;
	uint64_t seed, deadline_ms, hang_ms;
	bool want_evictions; /* go on until the cache has evicted */
	uint8_t *buf, *val;
	/* results */
	uint64_t ops, hits, sets;
	uint64_t bad[V_TORN + 1]; /* by verdict; bad[V_OK] unused */
	uint64_t errors;	  /* unexpected return codes */
	int first_error;
	char first_bad[96];
};

static void note_error(struct worker *w, int rc)
{
	if (!w->errors++)
		w->first_error = rc;
}

static void check_read(struct worker *w, int rc, size_t vlen, const char *key,
		       size_t klen)
{
	enum verdict v;

	if (rc == -ENOENT)
		return;
	if (rc != 0) {
		note_error(w, rc);
		return;
	}
	w->hits++;
	v = check_value(w->buf, vlen, key, klen);
	if (v != V_OK && !w->bad[v]++)
		snprintf(w->first_bad, sizeof(w->first_bad),
			 "key %s: verdict %d, %zu bytes", key, (int)v, vlen);
}

/* Whether w may stop: its time is up and it has what the checks need. */
static bool worker_done(struct worker *w)
{
	uint64_t now = clock_mono_ms();

	if (now >= w->hang_ms)
		return true;
	return now >= w->deadline_ms && w->hits > 100 && w->sets > 100 &&
	       (!w->want_evictions || tu_stats(&w->e).evictions > 0);
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	size_t cap = w->e.g.max_kv;
	uint64_t rng = w->seed;

	while (!worker_done(w)) {
		for (int burst = 0; burst < 64; burst++) {
			uint32_t k = tu_below(&rng, NKEYS);
			uint32_t op = tu_below(&rng, 100);
			char key[32];
			size_t klen = key_of(k, key, sizeof(key)), vlen = 0;
			int rc;

			w->ops++;
			if (op < 40) {
				size_t len = tu_one_in(&rng, 50)
						     ? cap - klen -
							       tu_below(&rng,
									64)
						     : MIN_LEN + tu_below(&rng,
									  1500);

				uint32_t ttl = tu_one_in(&rng, 4)
						       ? 1 + tu_below(&rng, 3)
						       : 0;

				make_value(w->val, len, key, klen,
					   (uint32_t)tu_rand(&rng));
				rc = eng_set(&w->e, key, klen, w->val, len,
					     ttl);
				if (rc)
					note_error(w, rc);
				else
					w->sets++;
			} else if (op < 85) {
				rc = eng_get(&w->e, key, klen, w->buf, cap,
					     &vlen, NULL);
				check_read(w, rc, vlen, key, klen);
			} else if (op < 90) {
				rc = eng_peek(&w->e, key, klen, w->buf, cap,
					      &vlen, NULL);
				check_read(w, rc, vlen, key, klen);
			} else if (op < 98) {
				rc = eng_del(&w->e, key, klen);
				if (rc && rc != -ENOENT)
					note_error(w, rc);
			} else {
				rc = eng_touch(&w->e, key, klen, 0);
				if (rc && rc != -ENOENT)
					note_error(w, rc);
			}
		}
	}
	return NULL;
}

/* The third thread of the last two cases. */
enum observer_kind { OBS_NONE, OBS_ITERATE, OBS_MAINTAIN, OBS_READ };

struct observer {
	struct eng *e;
	enum observer_kind kind;
	uint64_t deadline_ms, hang_ms;
	uint64_t walks, items, bad, errors, problems, clears;
	char first_problem[128];
};

static int iter_check(const struct eng_item *it, void *arg)
{
	struct observer *o = arg;
	uint8_t val[4096];
	char key[64];

	o->items++;
	if (it->klen >= sizeof(key) || it->vlen > sizeof(val))
		return 0; /* a big value: not copied here */
	memcpy(key, it->key[0], it->key_len[0]);
	memcpy(key + it->key_len[0], it->key[1], it->key_len[1]);
	key[it->klen] = '\0';
	memcpy(val, it->val[0], it->val_len[0]);
	memcpy(val + it->val_len[0], it->val[1], it->val_len[1]);
	if (check_value(val, it->vlen, key, it->klen) != V_OK)
		o->bad++;
	return 0;
}

/* Checks every segment (nothing may be found while writers run), sweeps,
 * steps the clock, and now and then clears the lot. */
static void maintain_once(struct observer *o)
{
	struct eng *e = o->e;

	for (uint32_t s = 0; s < e->g.nseg; s++) {
		struct eng_check_report rep;

		if (eng_check(e, s, false, &rep) != 0) {
			o->errors++;
		} else if (rep.problems) {
			if (!o->problems)
				memcpy(o->first_problem, rep.first,
				       sizeof(rep.first));
			o->problems += rep.problems;
		}
		if (eng_sweep(e, s, 16) < 0)
			o->errors++;
	}
	eng_clock_set(e, eng_now(e) + 1);
	if (o->walks % 25 == 24) {
		if (eng_clear(e) != 0)
			o->errors++;
		o->clears++;
	}
	tu_sleep_ms(2);
}

/* Gets of random keys, each value checked: items counts the hits. */
static void read_burst(struct observer *o, uint64_t *rng, uint8_t *buf)
{
	for (int i = 0; i < 256; i++) {
		char key[32];
		size_t klen = key_of(tu_below(rng, NKEYS), key, sizeof(key));
		size_t vlen = 0;
		int rc = eng_get(o->e, key, klen, buf, o->e->g.max_kv, &vlen,
				 NULL);

		if (rc == 0) {
			o->items++;
			if (check_value(buf, vlen, key, klen) != V_OK &&
			    !o->bad++)
				snprintf(o->first_problem,
					 sizeof(o->first_problem),
					 "key %s: bad value of %zu bytes", key,
					 vlen);
		} else if (rc != -ENOENT) {
			o->errors++;
		}
	}
}

/* Whether o may stop (as worker_done()). */
static bool observer_done(const struct observer *o)
{
	uint64_t now = clock_mono_ms();

	if (now >= o->hang_ms)
		return true;
	if (now < o->deadline_ms)
		return false;
	switch (o->kind) {
	case OBS_ITERATE:
		return o->walks > 0 && o->items > 0;
	case OBS_READ:
		return o->items > 1000;
	case OBS_MAINTAIN:
		return o->clears > 0;
	default:
		return true;
	}
}

static void *observer_run(void *arg)
{
	struct observer *o = arg;
	uint64_t rng = 99;
	uint8_t *buf = malloc(o->e->g.max_kv);

	assert_non_null(buf);
	while (!observer_done(o)) {
		if (o->kind == OBS_ITERATE) {
			if (eng_iter(o->e, 0, o->e->g.nseg, iter_check, o) != 0)
				o->errors++;
		} else if (o->kind == OBS_READ) {
			read_burst(o, &rng, buf);
		} else {
			maintain_once(o);
		}
		o->walks++;
	}
	free(buf);
	return NULL;
}

static uint64_t duration_ms(void)
{
	double ms = 1500.0 * tu_scale();

	return ms < 300.0 ? 300 : ms > 1500.0 ? 1500 : (uint64_t)ms;
}

static void run_workers(struct tu_region *r, enum observer_kind kind)
{
	struct worker w[2];
	struct observer obs = { .kind = kind };
	pthread_t tid[3];
	uint64_t deadline = clock_mono_ms() + duration_ms();
	uint64_t hang = clock_mono_ms() + HANG_MS;
	size_t cap = r->e.g.max_kv;

	for (int i = 0; i < 2; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		assert_rc(eng_attach(&w[i].e, r->base, r->size, (uint32_t)i + 1,
				     NULL),
			  0);
		w[i].seed = tu_mix(1234, (uint64_t)i);
		w[i].deadline_ms = deadline;
		w[i].hang_ms = hang;
		w[i].want_evictions = kind != OBS_MAINTAIN;
		w[i].buf = malloc(cap);
		w[i].val = malloc(cap);
		assert_non_null(w[i].buf);
		assert_non_null(w[i].val);
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&tid[i], NULL, worker_run,
						&w[i]),
				 0);
	if (kind != OBS_NONE) {
		/* Shares the test's own attachment, as threads may. */
		obs.e = &r->e;
		obs.deadline_ms = deadline;
		obs.hang_ms = hang;
		assert_int_equal(pthread_create(&tid[2], NULL, observer_run,
						&obs),
				 0);
	}
	for (int i = 0; i < 2 + (kind != OBS_NONE); i++)
		assert_int_equal(pthread_join(tid[i], NULL), 0);

	for (int i = 0; i < 2; i++) {
		print_message("client %d: %" PRIu64 " ops, %" PRIu64
			      " sets, %" PRIu64 " hits\n",
			      i + 1, w[i].ops, w[i].sets, w[i].hits);
		if (w[i].errors)
			fail_msg("client %d: %" PRIu64 " unexpected return "
				 "codes, first %d (%s)",
				 i + 1, w[i].errors, w[i].first_error,
				 strerror(-w[i].first_error));
		if (w[i].first_bad[0])
			fail_msg("client %d: bad value (short %" PRIu64
				 ", foreign %" PRIu64 ", length %" PRIu64
				 ", torn %" PRIu64 "), first: %s",
				 i + 1, w[i].bad[V_SHORT], w[i].bad[V_FOREIGN],
				 w[i].bad[V_LENGTH], w[i].bad[V_TORN],
				 w[i].first_bad);
		assert_true(w[i].hits > 100);
		assert_true(w[i].sets > 100);
		free(w[i].buf);
		free(w[i].val);
	}
	if (kind == OBS_ITERATE) {
		print_message("iterator: %" PRIu64 " walks, %" PRIu64
			      " items\n",
			      obs.walks, obs.items);
		assert_int_equal(obs.errors, 0);
		assert_int_equal(obs.bad, 0);
		assert_true(obs.walks > 0 && obs.items > 0);
	}
	if (kind == OBS_READ) {
		print_message("reader: %" PRIu64 " hits\n", obs.items);
		if (obs.bad)
			fail_msg("reader: %" PRIu64 " bad values, first: %s",
				 obs.bad, obs.first_problem);
		assert_int_equal(obs.errors, 0);
		assert_true(obs.items > 1000);
	}
	if (kind == OBS_MAINTAIN) {
		print_message("maintenance: %" PRIu64 " rounds, %" PRIu64
			      " clears\n",
			      obs.walks, obs.clears);
		if (obs.problems)
			fail_msg("eng_check found %" PRIu64 " problems while "
				 "writers ran, first: %s",
				 obs.problems, obs.first_problem);
		assert_int_equal(obs.errors, 0);
		assert_true(obs.clears > 0);
	}

	/* Nothing left locked, nothing inconsistent, contention happened. */
	for (uint32_t s = 0; s < r->e.g.nseg; s++)
		assert_int_equal(__atomic_load_n(&tu_seg_hdr(&r->e, s)->lock,
						 __ATOMIC_ACQUIRE),
				 0);
	if (kind != OBS_MAINTAIN) /* clears keep the maintained one roomy */
		assert_true(tu_stats(&r->e).evictions > 0);
	tu_assert_all_clean(&r->e);

	/* Every survivor still checks out. */
	for (uint32_t k = 0; k < NKEYS; k++) {
		char key[32];
		size_t klen = key_of(k, key, sizeof(key)), vlen;
		uint8_t *buf = malloc(cap);
		int rc;

		assert_non_null(buf);
		rc = eng_get(&r->e, key, klen, buf, cap, &vlen, NULL);
		assert_true(rc == 0 || rc == -ENOENT);
		if (rc == 0)
			assert_int_equal(check_value(buf, vlen, key, klen),
					 V_OK);
		free(buf);
	}
}

static void test_threads_two_clients_no_torn_values(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = NSEG };

	tu_region_open(r, REGION, &cfg);
	run_workers(r, OBS_NONE);
}

static void test_threads_iter_during_writes_sees_whole_values(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = NSEG };

	tu_region_open(r, REGION, &cfg);
	run_workers(r, OBS_ITERATE);
}

static void test_threads_check_clean_during_writes_and_clears(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = NSEG };

	tu_region_open(r, REGION, &cfg);
	run_workers(r, OBS_MAINTAIN);
}

static void test_threads_reader_without_lock_sees_whole_values(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = NSEG };

	tu_region_open(r, REGION, &cfg);
	run_workers(r, OBS_READ);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_threads_two_clients_no_torn_values,
			tu_region_setup, tu_region_teardown),
		cmocka_unit_test_setup_teardown(
			test_threads_iter_during_writes_sees_whole_values,
			tu_region_setup, tu_region_teardown),
		cmocka_unit_test_setup_teardown(
			test_threads_reader_without_lock_sees_whole_values,
			tu_region_setup, tu_region_teardown),
		cmocka_unit_test_setup_teardown(
			test_threads_check_clean_during_writes_and_clears,
			tu_region_setup, tu_region_teardown),
	};

	return cmocka_run_group_tests_name("threads", tests, NULL, NULL);
}
