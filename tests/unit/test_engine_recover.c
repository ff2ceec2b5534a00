/*
 * test_engine_recover.c - unit tests of the cache engine (shared/engine.h)
 * with a dead lock holder: eng_recover resetting or keeping a segment a
 * dead client held, a new daemon taking its predecessor's locks, waiters
 * woken, lock timeouts reported and overridden, and the liveness callback
 * taking over a dead holder's lock but never a live holder's.
 *
 * The tests write lock words directly to play the part of a crash.  The
 * multi-thread tests are in test_threads.c, the random-operation model
 * test in test_model.c.
 */
#include "testutil.h"
#include "engine_fixture.h"

#include <pthread.h>

#include "lock.h"

enum { DEAD_ID = 5 };

/* Sets keys "r<i>", i < n, and returns how many landed in segment seg. */
static uint32_t fill_for_recover(struct eng *e, uint32_t n, uint32_t seg)
{
	uint32_t in_seg = 0;

	for (uint32_t i = 0; i < n; i++) {
		char key[16];
		size_t klen = tu_key(key, sizeof(key), "r", i);

		set_kv(e, "r", i, 1, 30, 0);
		in_seg += eng_seg_of(e, key, klen) == seg;
	}
	return in_seg;
}

/* Plays a client that died holding segment seg's lock, mid-mutation or
 * not. */
static void play_dead_holder(struct eng *e, uint32_t seg, bool mid_write)
{
	struct seg_hdr *h = tu_seg_hdr(e, seg);

	__atomic_store_n(&h->lock, (uint32_t)DEAD_ID << 1, __ATOMIC_RELEASE);
	if ((h->seq & 1u) != (uint32_t)mid_write)
		h->seq++;
}

static void test_engine_recover_resets_dead_holders_segment(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	enum { N = 200 };
	uint32_t seg = 2, entries[4], gen0, ki = 0;
	struct seg_hdr *h;
	char key[16];
	size_t klen;

	tu_region_open(r, MiB, &cfg);
	assert_true(fill_for_recover(e, N, seg) > 0);
	for (uint32_t s = 0; s < 4; s++)
		entries[s] = (uint32_t)tu_seg_stats(e, s).entries;
	h = tu_seg_hdr(e, seg);
	gen0 = h->gen;

	assert_rc(eng_recover(e, DEAD_ID), 0); /* holds nothing yet */
	play_dead_holder(e, seg, true);
	assert_rc(eng_recover(e, DEAD_ID), 1);

	assert_int_equal(__atomic_load_n(&h->lock, __ATOMIC_ACQUIRE), 0);
	assert_int_equal(h->seq & 1, 0);
	assert_int_not_equal(h->gen, gen0);
	assert_int_equal(tu_seg_stats(e, seg).entries, 0);
	assert_true(tu_seg_stats(e, seg).repairs >= 1);
	for (uint32_t s = 0; s < 4; s++)
		if (s != seg)
			assert_int_equal(tu_seg_stats(e, s).entries,
					 entries[s]);
	for (uint32_t i = 0; i < N; i++) {
		klen = tu_key(key, sizeof(key), "r", i);
		assert_rc(get_kv(e, "r", i, 1, 30),
			  eng_seg_of(e, key, klen) == seg ? -ENOENT : 0);
	}

	klen = tu_key_in_seg(e, seg, key, sizeof(key), "after", &ki);
	assert_rc(eng_set(e, key, klen, "works", 5, 0), 0);
	tu_assert_value(e, key, klen, "works", 5);
	assert_rc(eng_recover(e, DEAD_ID), 0); /* nothing left to take */
	tu_assert_all_clean(e);
}

/* A killed daemon's locks carry the id the next daemon attaches with: plain
 * eng_recover() leaves them (they look like our own), the inherited form
 * takes them over and repairs. */
static void test_engine_recover_inherited_takes_predecessors_locks(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4, .lock_timeout_ms = 50 };
	struct eng *e = &r->e;
	uint32_t seg = 3, ki = 0;
	struct seg_hdr *h;
	char key[16];
	size_t klen;

	tu_region_open(r, MiB, &cfg);
	assert_true(fill_for_recover(e, 100, seg) > 0);
	h = tu_seg_hdr(e, seg);
	__atomic_store_n(&h->lock, e->client_id << 1 | LOCK_WAITERS,
			 __ATOMIC_RELEASE);
	h->seq |= 1u; /* died mid-write */

	assert_rc(eng_recover(e, e->client_id), 0);
	assert_int_not_equal(__atomic_load_n(&h->lock, __ATOMIC_ACQUIRE), 0);
	assert_rc(eng_recover_inherited(e), 1);
	assert_int_equal(__atomic_load_n(&h->lock, __ATOMIC_ACQUIRE), 0);
	assert_int_equal(h->seq & 1, 0);

	klen = tu_key_in_seg(e, seg, key, sizeof(key), "after", &ki);
	assert_rc(eng_set(e, key, klen, "works", 5, 0), 0);
	tu_assert_value(e, key, klen, "works", 5);
	assert_rc(eng_recover_inherited(e), 0);
	tu_assert_all_clean(e);
}

static void test_engine_recover_keeps_contents_when_seq_even(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	struct eng *e = &r->e;
	enum { N = 200 };
	uint32_t seg = 1, in_seg, gen0;
	struct seg_hdr *h;

	tu_region_open(r, MiB, &cfg);
	in_seg = fill_for_recover(e, N, seg);
	assert_true(in_seg > 0);
	h = tu_seg_hdr(e, seg);
	gen0 = h->gen;

	play_dead_holder(e, seg, false);
	/* With the waiters bit, too. */
	__atomic_fetch_or(&h->lock, LOCK_WAITERS, __ATOMIC_ACQ_REL);
	assert_rc(eng_recover(e, DEAD_ID), 1);

	assert_int_equal(__atomic_load_n(&h->lock, __ATOMIC_ACQUIRE), 0);
	assert_int_equal(h->gen, gen0);
	assert_int_equal(tu_seg_stats(e, seg).entries, in_seg);
	for (uint32_t i = 0; i < N; i++)
		assert_rc(get_kv(e, "r", i, 1, 30), 0);
	tu_assert_all_clean(e);
}

struct waiter {
	struct eng e;
	char key[16];
	size_t klen;
	int rc;
	uint64_t done_ms;
};

static void *waiter_get(void *arg)
{
	struct waiter *w = arg;
	uint8_t buf[64];
	size_t vlen;

	w->rc = eng_get(&w->e, w->key, w->klen, buf, sizeof(buf), &vlen, NULL);
	w->done_ms = clock_mono_ms();
	return NULL;
}

static void test_engine_recover_wakes_waiters(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4, .lock_timeout_ms = 60000 };
	struct eng *e = &r->e;
	uint32_t seg = 3, ki = 0;
	struct waiter w;
	pthread_t t;
	uint64_t t_recover;

	tu_region_open(r, MiB, &cfg);
	assert_rc(eng_attach(&w.e, r->base, r->size, 2, NULL), 0);
	w.klen = tu_key_in_seg(e, seg, w.key, sizeof(w.key), "wait", &ki);
	assert_rc(eng_set(e, w.key, w.klen, "v", 1, 0), 0);
	w.rc = 1;

	play_dead_holder(e, seg, false);
	assert_int_equal(pthread_create(&t, NULL, waiter_get, &w), 0);
	tu_sleep_ms(150); /* long enough to be asleep on the lock */
	t_recover = clock_mono_ms();
	assert_rc(eng_recover(e, DEAD_ID), 1);
	assert_int_equal(pthread_join(t, NULL), 0);

	/* Got it (after the recovery), long before its 60 s timeout: a
	 * bound in time would only measure the machine's load. */
	assert_rc(w.rc, 0);
	assert_true(w.done_ms >= t_recover);
}

static void test_engine_lock_timeout_reported(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4, .lock_timeout_ms = 50 };
	struct eng *e = &r->e;
	uint32_t seg = 0, ki = 0, word;
	uint8_t buf[16];
	size_t vlen;
	char key[16];
	size_t klen;
	uint64_t t0, dt;

	tu_region_open(r, MiB, &cfg);
	assert_int_equal(e->g.lock_timeout_ms, 50);
	klen = tu_key_in_seg(e, seg, key, sizeof(key), "lt", &ki);
	assert_rc(eng_set(e, key, klen, "before", 6, 0), 0);

	play_dead_holder(e, seg, false); /* no alive fn: presumed alive */
	t0 = clock_mono_ms();
	assert_rc(eng_get(e, key, klen, buf, sizeof(buf), &vlen, NULL),
		  -ETIMEDOUT);
	dt = clock_mono_ms() - t0;
	print_message("get timed out after %" PRIu64 " ms\n", dt);
	assert_in_range(dt, 40, 30000); /* never early; late under load */
	assert_rc(eng_set(e, key, klen, "after", 5, 0), -ETIMEDOUT);
	assert_rc(eng_del(e, key, klen), -ETIMEDOUT);

	word = __atomic_load_n(&tu_seg_hdr(e, seg)->lock, __ATOMIC_ACQUIRE);
	assert_int_equal(lock_owner(word), DEAD_ID);
	__atomic_store_n(&tu_seg_hdr(e, seg)->lock, 0, __ATOMIC_RELEASE);
	tu_assert_value(e, key, klen, "before", 6);
}

struct alive_calls {
	uint32_t calls, last_id;
};

static bool alive_says_dead(void *arg, uint32_t client_id)
{
	struct alive_calls *a = arg;

	a->calls++;
	a->last_id = client_id;
	return client_id != DEAD_ID;
}

static void test_engine_alive_fn_dead_holder_taken_over(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4, .lock_timeout_ms = 60000 };
	struct eng *e = &r->e;
	struct alive_calls a = { 0, 0 };
	uint32_t seg = 1, ki = 0, kj;
	char key[16], old[16];
	size_t klen, oklen;
	uint64_t t0;
	int rc;

	tu_region_open(r, MiB, &cfg);
	oklen = tu_key_in_seg(e, seg, old, sizeof(old), "old", &ki);
	assert_rc(eng_set(e, old, oklen, "old", 3, 0), 0);
	kj = ki + 1;
	klen = tu_key_in_seg(e, seg, key, sizeof(key), "old", &kj);

	play_dead_holder(e, seg, true);
	eng_set_alive_fn(e, alive_says_dead, &a);
	t0 = clock_mono_ms();
	rc = eng_set(e, key, klen, "new", 3, 0);
	assert_true(clock_mono_ms() - t0 <
		    30000); /* taken over, not waited out */
	if (rc != 0 && rc != -EUCLEAN)
		fail_msg("set on a dead holder's segment = %d (%s)", rc,
			 strerror(-rc));
	assert_true(a.calls > 0);
	assert_int_equal(a.last_id, DEAD_ID);
	assert_int_equal(__atomic_load_n(&tu_seg_hdr(e, seg)->lock,
					 __ATOMIC_ACQUIRE),
			 0);

	/* The half-written segment was reset: the old entry is gone. */
	tu_assert_miss(e, old, oklen);
	if (rc == 0)
		tu_assert_value(e, key, klen, "new", 3);
	assert_rc(eng_set(e, key, klen, "again", 5, 0), 0);
	tu_assert_value(e, key, klen, "again", 5);
	tu_assert_all_clean(e);
}

static void test_engine_set_timeout_overrides_region_default(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4, .lock_timeout_ms = 3000 };
	struct eng *e = &r->e;
	uint32_t ki = 0;
	uint8_t buf[16];
	size_t vlen;
	char key[16];
	size_t klen;
	uint64_t t0, dt;

	tu_region_open(r, MiB, &cfg);
	klen = tu_key_in_seg(e, 2, key, sizeof(key), "to", &ki);
	assert_rc(eng_set(e, key, klen, "v", 1, 0), 0);
	play_dead_holder(e, 2, false);

	eng_set_timeout(e, 30);
	t0 = clock_mono_ms();
	assert_rc(eng_get(e, key, klen, buf, sizeof(buf), &vlen, NULL),
		  -ETIMEDOUT);
	dt = clock_mono_ms() - t0;
	/* Short of the region's 3000 ms by far more than a busy machine's
	 * scheduling delays. */
	assert_in_range(dt, 25, 2900);

	eng_set_timeout(e, 0); /* back to the region's 3000 ms */
	t0 = clock_mono_ms();
	assert_rc(eng_get(e, key, klen, buf, sizeof(buf), &vlen, NULL),
		  -ETIMEDOUT);
	dt = clock_mono_ms() - t0;
	assert_in_range(dt, 2950, 30000);
}

/* The liveness callback of the next test: reports DEAD_ID dead, but while
 * it is being asked the scene moves on, as it may between processes: the
 * dead holder's segment is recovered and another, live client (LIVE_ID)
 * takes the lock. */
enum { LIVE_ID = 6 };

struct moving_scene {
	uint32_t *word;
	uint32_t calls;
};

static bool dead_then_taken(void *arg, uint32_t client_id)
{
	struct moving_scene *m = arg;

	m->calls++;
	if (client_id != DEAD_ID)
		return true;
	__atomic_store_n(m->word, ((uint32_t)LIVE_ID << 1) | LOCK_WAITERS,
			 __ATOMIC_RELEASE);
	return false;
}

static void test_engine_dead_holder_takeover_spares_live_holder(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4, .lock_timeout_ms = 200 };
	struct eng *e = &r->e;
	uint32_t seg = 2, ki = 0, *word;
	struct moving_scene m;
	char key[16];
	size_t klen;
	int rc;

	tu_region_open(r, MiB, &cfg);
	word = &tu_seg_hdr(e, seg)->lock;
	klen = tu_key_in_seg(e, seg, key, sizeof(key), "race", &ki);
	assert_rc(eng_set(e, key, klen, "v", 1, 0), 0);

	play_dead_holder(e, seg, false);
	m = (struct moving_scene){ .word = word };
	eng_set_alive_fn(e, dead_then_taken, &m);
	rc = eng_set(e, key, klen, "w", 1, 0);
	print_message("set while a live client holds the lock: %d (%s)\n", rc,
		      strerror(-rc));

	/* LIVE_ID holds the lock and is alive: the set must wait for it,
	 * not take the lock from it. */
	if (lock_owner(__atomic_load_n(word, __ATOMIC_ACQUIRE)) != LIVE_ID)
		fail_msg("the lock was taken from live client %d (word now "
			 "%#x, set returned %d)",
			 LIVE_ID, __atomic_load_n(word, __ATOMIC_ACQUIRE), rc);
	assert_rc(rc, -ETIMEDOUT);
	assert_rc(lock_release(word, LIVE_ID), 0);
	tu_assert_value(e, key, klen, "v", 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_engine_recover_resets_dead_holders_segment),
		T(test_engine_recover_inherited_takes_predecessors_locks),
		T(test_engine_recover_keeps_contents_when_seq_even),
		T(test_engine_recover_wakes_waiters),
		T(test_engine_lock_timeout_reported),
		T(test_engine_alive_fn_dead_holder_taken_over),
		T(test_engine_set_timeout_overrides_region_default),
		T(test_engine_dead_holder_takeover_spares_live_holder),
	};

	return cmocka_run_group_tests_name("engine-recover", tests, NULL, NULL);
}
