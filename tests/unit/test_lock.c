/*
 * test_lock.c - unit tests of the per-segment futex lock (shared/lock.h):
 * the word names its holder, try/release/takeover refuse the wrong owner
 * and leave the word alone, waits time out in bounded time, a dead holder is
 * reported through the liveness callback, sleepers are woken by release,
 * and four contending threads are mutually excluded.
 *
 * The lock words here live in ordinary memory; the futex is process-shared,
 * which works as well for threads of one process.
 */
#include "testutil.h"

#include <pthread.h>
#include <sched.h>

#include "lock.h"

static uint32_t load(const uint32_t *word)
{
	return __atomic_load_n(word, __ATOMIC_ACQUIRE);
}

static void store(uint32_t *word, uint32_t v)
{
	__atomic_store_n(word, v, __ATOMIC_RELEASE);
}

/* Waits (at most 30 s: only a hang takes that long) until someone has
 * announced sleeping on the word. */
static bool wait_for_waiters_bit(const uint32_t *word)
{
	uint64_t t0 = clock_mono_ms();

	while (!(load(word) & LOCK_WAITERS)) {
		if (clock_mono_ms() - t0 > 30000)
			return false;
		tu_sleep_ms(1);
	}
	return true;
}

/* ------------------------------------------------------------------------
 * Single-threaded behaviour
 * ------------------------------------------------------------------------ */

static void test_lock_acquire_release(void **state)
{
	uint32_t word = 0;

	(void)state;
	assert_rc(lock_acquire(&word, 1, 100, NULL, NULL), 0);
	assert_int_equal(lock_owner(load(&word)), 1);
	assert_rc(lock_release(&word, 1), 0);
	assert_int_equal(load(&word), 0);

	/* Again, by someone else. */
	assert_rc(lock_acquire(&word, 2, 100, NULL, NULL), 0);
	assert_int_equal(lock_owner(load(&word)), 2);
	assert_rc(lock_release(&word, 2), 0);
	assert_int_equal(load(&word), 0);
}

static void test_lock_word_carries_owner_id(void **state)
{
	const uint32_t ids[] = { 1, 2, 77, 0x12345, 0x7fffffffu };
	uint32_t word = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		assert_rc(lock_acquire(&word, ids[i], 100, NULL, NULL), 0);
		assert_int_equal(lock_owner(load(&word)), ids[i]);
		assert_true(load(&word) != 0);
		assert_rc(lock_release(&word, ids[i]), 0);
		assert_int_equal(load(&word), 0);
	}
}

static void test_lock_bad_id_refused(void **state)
{
	uint32_t word = 0;

	(void)state;
	assert_rc(lock_acquire(&word, 0, 10, NULL, NULL), -EINVAL);
	assert_rc(lock_acquire(&word, 0x80000000u, 10, NULL, NULL), -EINVAL);
	assert_int_equal(load(&word), 0);
}

static void test_lock_release_by_wrong_owner_eperm(void **state)
{
	uint32_t word = 0, held;

	(void)state;
	assert_rc(lock_release(&word, 1), -EPERM); /* free */
	assert_int_equal(load(&word), 0);

	assert_rc(lock_acquire(&word, 1, 100, NULL, NULL), 0);
	held = load(&word);
	assert_rc(lock_release(&word, 2), -EPERM);
	assert_int_equal(load(&word), held);
	assert_rc(lock_release_all(&word, 2), -EPERM);
	assert_int_equal(load(&word), held);

	/* With the waiters bit set, too. */
	store(&word, (3u << 1) | LOCK_WAITERS);
	assert_rc(lock_release(&word, 1), -EPERM);
	assert_int_equal(load(&word), (3u << 1) | LOCK_WAITERS);
	store(&word, 0);
}

static void test_lock_timeout_when_held(void **state)
{
	uint32_t word = 0;
	uint64_t t0, dt;

	(void)state;
	assert_rc(lock_acquire(&word, 2, 100, NULL, NULL), 0);
	t0 = clock_mono_ms();
	assert_rc(lock_acquire(&word, 1, 50, NULL, NULL), -ETIMEDOUT);
	dt = clock_mono_ms() - t0;
	print_message("timed out after %" PRIu64 " ms\n", dt);
	assert_in_range(dt, 45, 30000); /* never early; late under load */
	assert_int_equal(lock_owner(load(&word)), 2); /* still 2's */

	/* A holder that locks again waits for itself and times out. */
	assert_rc(lock_acquire(&word, 2, 30, NULL, NULL), -ETIMEDOUT);
	assert_int_equal(lock_owner(load(&word)), 2);

	assert_rc(lock_release(&word, 2), 0);
	assert_int_equal(load(&word), 0);
	assert_rc(lock_acquire(&word, 1, 50, NULL, NULL), 0);
	assert_rc(lock_release(&word, 1), 0);
}

struct alive_probe {
	bool answer;
	uint32_t calls, last_owner;
};

static bool probe_alive(void *arg, uint32_t owner)
{
	struct alive_probe *p = arg;

	p->calls++;
	p->last_owner = owner;
	return p->answer;
}

static void test_lock_alive_false_gives_eownerdead(void **state)
{
	struct alive_probe p = { .answer = false };
	uint32_t word = 0;
	uint64_t t0, dt;

	(void)state;
	store(&word, 9u << 1); /* held by 9, who is dead */
	t0 = clock_mono_ms();
	assert_rc(lock_acquire(&word, 1, 60000, probe_alive, &p), -EOWNERDEAD);
	dt = clock_mono_ms() - t0;
	print_message("dead holder reported after %" PRIu64 " ms\n", dt);
	assert_true(dt < 30000); /* asked between slices, not at the end */
	assert_true(p.calls > 0);
	assert_int_equal(p.last_owner, 9);
	/* Still held by the dead owner: recovering it is the caller's job. */
	assert_int_equal(lock_owner(load(&word)), 9);
}

static void test_lock_alive_true_still_times_out(void **state)
{
	struct alive_probe p = { .answer = true };
	uint32_t word = 0;
	uint64_t t0, dt;

	(void)state;
	store(&word, 9u << 1);
	t0 = clock_mono_ms();
	assert_rc(lock_acquire(&word, 1, 100, probe_alive, &p), -ETIMEDOUT);
	dt = clock_mono_ms() - t0;
	assert_in_range(dt, 90, 30000);
	assert_int_equal(lock_owner(load(&word)), 9);
}

/* Two threads of one process share its id (the daemon's loop and its
 * SAVE/LOAD thread): a holder with the waiter's own id is never judged
 * dead, whatever the alive function says, so it is waited for. */
static void test_lock_own_id_is_never_dead(void **state)
{
	struct alive_probe p = { .answer = false };
	uint32_t word = 0;

	(void)state;
	store(&word, 1u << 1); /* held by "us", in another thread */
	assert_rc(lock_acquire(&word, 1, 100, probe_alive, &p), -ETIMEDOUT);
	assert_int_equal(p.calls, 0);
	assert_int_equal(lock_owner(load(&word)), 1);
}

static void test_lock_takeover_from_dead(void **state)
{
	uint32_t word;

	(void)state;
	store(&word, 9u << 1);
	assert_rc(lock_takeover(&word, 9, 1), 0);
	assert_int_equal(load(&word), 1u << 1);
	assert_rc(lock_release(&word, 1), 0);
	assert_int_equal(load(&word), 0);

	/* The waiters bit is kept; release_all clears the word. */
	store(&word, (9u << 1) | LOCK_WAITERS);
	assert_rc(lock_takeover(&word, 9, 1), 0);
	assert_int_equal(load(&word), (1u << 1) | LOCK_WAITERS);
	assert_rc(lock_release_all(&word, 1), 0);
	assert_int_equal(load(&word), 0);
}

static void test_lock_takeover_wrong_id_esrch(void **state)
{
	uint32_t word;

	(void)state;
	store(&word, (3u << 1) | LOCK_WAITERS);
	assert_rc(lock_takeover(&word, 4, 1), -ESRCH);
	assert_int_equal(load(&word), (3u << 1) | LOCK_WAITERS);

	store(&word, 0); /* free: nobody to take over */
	assert_rc(lock_takeover(&word, 4, 1), -ESRCH);
	assert_int_equal(load(&word), 0);
}

/* ------------------------------------------------------------------------
 * Threads
 * ------------------------------------------------------------------------ */

enum { MX_THREADS = 4, MX_ITERS = 100000 };

struct mx_shared {
	pthread_barrier_t start; /* all threads begin together */
	uint32_t word;
	uint64_t counter; /* plain: only the lock protects it */
	int inside;	  /* plain: > 1 would mean two holders */
};

struct mx_thread {
	struct mx_shared *sh;
	uint32_t id, iters;
	uint32_t errors;    /* acquire/release failures */
	uint32_t overlaps;  /* found someone else inside */
	uint32_t not_owner; /* the word did not name us while held */
};

static void *mx_worker(void *arg)
{
	struct mx_thread *t = arg;
	struct mx_shared *sh = t->sh;

	pthread_barrier_wait(&sh->start);
	for (uint32_t i = 0; i < t->iters; i++) {
		volatile uint32_t spin;
		uint64_t c;

		if (lock_acquire(&sh->word, t->id, 10000, NULL, NULL) != 0) {
			t->errors++;
			continue;
		}
		if (sh->inside++ != 0)
			t->overlaps++;
		if (lock_owner(load(&sh->word)) != t->id)
			t->not_owner++;
		/* Read, linger, write back: without exclusion, updates
		 * get lost. */
		c = sh->counter;
		for (spin = 0; spin < 20; spin++)
			;
		if ((i & 127) == 0)
			sched_yield(); /* hold it a while: force sleepers */
		sh->counter = c + 1;
		sh->inside--;
		if (lock_release(&sh->word, t->id) != 0)
			t->errors++;
	}
	return NULL;
}

static void test_lock_contended_mutual_exclusion(void **state)
{
	static struct mx_shared sh;
	struct mx_thread t[MX_THREADS];
	pthread_t tid[MX_THREADS];
	uint32_t iters = (uint32_t)(MX_ITERS * tu_scale());
	uint64_t t0 = clock_mono_ms();

	(void)state;
	if (iters < 1000)
		iters = 1000;
	memset(&sh, 0, sizeof(sh));
	assert_int_equal(pthread_barrier_init(&sh.start, NULL, MX_THREADS), 0);
	for (uint32_t i = 0; i < MX_THREADS; i++) {
		t[i] = (struct mx_thread){ .sh = &sh,
					   .id = i + 1,
					   .iters = iters };
		assert_int_equal(pthread_create(&tid[i], NULL, mx_worker,
						&t[i]),
				 0);
	}
	for (uint32_t i = 0; i < MX_THREADS; i++)
		assert_int_equal(pthread_join(tid[i], NULL), 0);
	print_message("%u x %" PRIu32 " lock/unlock in %" PRIu64 " ms\n",
		      MX_THREADS, iters, clock_mono_ms() - t0);

	for (uint32_t i = 0; i < MX_THREADS; i++) {
		assert_int_equal(t[i].errors, 0);
		assert_int_equal(t[i].overlaps, 0);
		assert_int_equal(t[i].not_owner, 0);
	}
	pthread_barrier_destroy(&sh.start);
	assert_int_equal(sh.counter, (uint64_t)MX_THREADS * iters);
	assert_int_equal(load(&sh.word), 0);
}

struct sleeper {
	uint32_t *word;
	uint32_t id, timeout_ms;
	int rc;
	uint32_t owner_seen;
	uint64_t acquired_ms;
};

static void *sleeper_run(void *arg)
{
	struct sleeper *s = arg;

	s->rc = lock_acquire(s->word, s->id, s->timeout_ms, NULL, NULL);
	s->acquired_ms = clock_mono_ms();
	if (s->rc == 0) {
		s->owner_seen = lock_owner(load(s->word));
		tu_sleep_ms(1);
		if (lock_release(s->word, s->id) != 0)
			s->rc = -1000;
	}
	return NULL;
}

static void test_lock_release_wakes_sleeper(void **state)
{
	static uint32_t word;
	struct sleeper s = { .word = &word, .id = 2, .timeout_ms = 60000 };
	pthread_t tid;
	uint64_t t_rel;

	(void)state;
	store(&word, 0);
	assert_rc(lock_acquire(&word, 1, 100, NULL, NULL), 0);
	assert_int_equal(pthread_create(&tid, NULL, sleeper_run, &s), 0);

	/* The sleeper announces itself on the word before sleeping. */
	assert_true(wait_for_waiters_bit(&word));
	assert_int_equal(lock_owner(load(&word)), 1);
	tu_sleep_ms(30);
	t_rel = clock_mono_ms();
	assert_rc(lock_release(&word, 1), 0);
	assert_int_equal(pthread_join(tid, NULL), 0);

	assert_rc(s.rc, 0);
	assert_int_equal(s.owner_seen, 2);
	print_message("woken %" PRIu64 " ms after release\n",
		      s.acquired_ms - t_rel);
	/* After the release, long before its 60 s timeout (how long after
	 * is the machine's load, not the lock's behaviour). */
	assert_true(s.acquired_ms >= t_rel);
	assert_int_equal(load(&word), 0);
}

static void test_lock_release_all_wakes_every_waiter(void **state)
{
	static uint32_t word;
	enum { NW = 3 };
	struct sleeper s[NW];
	pthread_t tid[NW];
	uint64_t t_rel;

	(void)state;
	store(&word, 9u << 1); /* held by 9, who died */
	for (uint32_t i = 0; i < NW; i++) {
		s[i] = (struct sleeper){ .word = &word,
					 .id = i + 2,
					 .timeout_ms = 60000 };
		assert_int_equal(pthread_create(&tid[i], NULL, sleeper_run,
						&s[i]),
				 0);
	}
	assert_true(wait_for_waiters_bit(&word));
	tu_sleep_ms(50); /* let all of them get to sleep */

	assert_rc(lock_takeover(&word, 9, 1), 0);
	assert_int_equal(lock_owner(load(&word)), 1);
	t_rel = clock_mono_ms();
	assert_rc(lock_release_all(&word, 1), 0);
	for (uint32_t i = 0; i < NW; i++)
		assert_int_equal(pthread_join(tid[i], NULL), 0);

	for (uint32_t i = 0; i < NW; i++) {
		assert_rc(s[i].rc, 0);
		assert_int_equal(s[i].owner_seen, i + 2);
		assert_true(s[i].acquired_ms >= t_rel);
	}
	assert_int_equal(load(&word), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lock_acquire_release),
		cmocka_unit_test(test_lock_word_carries_owner_id),
		cmocka_unit_test(test_lock_bad_id_refused),
		cmocka_unit_test(test_lock_release_by_wrong_owner_eperm),
		cmocka_unit_test(test_lock_timeout_when_held),
		cmocka_unit_test(test_lock_alive_false_gives_eownerdead),
		cmocka_unit_test(test_lock_alive_true_still_times_out),
		cmocka_unit_test(test_lock_own_id_is_never_dead),
		cmocka_unit_test(test_lock_takeover_from_dead),
		cmocka_unit_test(test_lock_takeover_wrong_id_esrch),
		cmocka_unit_test(test_lock_contended_mutual_exclusion),
		cmocka_unit_test(test_lock_release_wakes_sleeper),
		cmocka_unit_test(test_lock_release_all_wakes_every_waiter),
	};

	return cmocka_run_group_tests_name("lock", tests, NULL, NULL);
}
