/*
 * lock.c - the per-segment futex lock (see lock.h for the word's states).
 *
 * Acquisition: one CAS from free; a bounded spin watching the word; then a
 * loop that marks the word "waiters" and sleeps on it with FUTEX_WAIT in
 * slices of at most LOCK_SLICE_MS.  A sleeper that wakes takes the lock with
 * the waiters bit set (it cannot know whether others still sleep), as in
 * Drepper's mutex 3.  Between slices the liveness callback may declare the
 * holder dead.
 */
#include "lock.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

#define LOCK_ID_MAX 0x7fffffffu

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static inline bool cas(uint32_t *w, uint32_t *expect, uint32_t want)
{
	return __atomic_compare_exchange_n(w, expect, want, false,
					   __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

/* Process-shared futex calls (no FUTEX_PRIVATE_FLAG). */
void lock_futex_wait(uint32_t *w, uint32_t val, uint32_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000L };

	syscall(SYS_futex, w, FUTEX_WAIT, val, &ts, NULL, 0);
}

void lock_futex_wake(uint32_t *w, int n)
{
	syscall(SYS_futex, w, FUTEX_WAKE, n, NULL, NULL, 0);
}

int lock_acquire(uint32_t *word, uint32_t me, uint32_t timeout_ms,
		 lock_alive_fn alive, void *alive_arg)
{
	uint32_t v = 0;

	if (me == 0 || me > LOCK_ID_MAX)
		return -EINVAL;
	if (cas(word, &v, me << 1))
		return 0;

	for (int i = 0; i < LOCK_SPIN; i++) {
		cpu_relax();
		v = __atomic_load_n(word, __ATOMIC_RELAXED);
		if (v == 0 && cas(word, &v, me << 1))
			return 0;
	}

	uint64_t start = clock_mono_ms();
	uint64_t deadline = start + timeout_ms;
	for (;;) {
		v = __atomic_load_n(word, __ATOMIC_RELAXED);
		if (v == 0) {
			if (cas(word, &v, (me << 1) | LOCK_WAITERS))
				return 0;
			continue;
		}
		if (!(v & LOCK_WAITERS)) {
			if (!cas(word, &v, v | LOCK_WAITERS))
				continue;
			v |= LOCK_WAITERS;
		}
		uint64_t now = clock_mono_ms();
		if (now >= deadline)
			return -ETIMEDOUT;
		uint64_t left = deadline - now;
		lock_futex_wait(word, v,
				left < LOCK_SLICE_MS ? (uint32_t)left
						     : LOCK_SLICE_MS);
		/* The holder has been there a whole slice or more: ask.  A
		 * holder with our own id is another thread of ours: alive. */
		if (alive && clock_mono_ms() - start >= LOCK_SLICE_MS) {
			uint32_t cur = __atomic_load_n(word, __ATOMIC_RELAXED);
			if (cur != 0 && lock_owner(cur) != me &&
			    !alive(alive_arg, lock_owner(cur)))
				return -EOWNERDEAD;
		}
	}
}

static int release(uint32_t *word, uint32_t me, int nwake)
{
	uint32_t v = __atomic_load_n(word, __ATOMIC_RELAXED);

	for (;;) {
		if (lock_owner(v) != me || v == 0)
			return -EPERM;
		if (__atomic_compare_exchange_n(word, &v, 0, false,
						__ATOMIC_RELEASE,
						__ATOMIC_RELAXED))
			break;
	}
	if (v & LOCK_WAITERS)
		lock_futex_wake(word, nwake);
	return 0;
}

int lock_release(uint32_t *word, uint32_t me)
{
	return release(word, me, 1);
}

int lock_release_all(uint32_t *word, uint32_t me)
{
	/* Wake everyone even without the waiters bit: after a takeover the
	 * bit may have been lost with the dead holder's last store. */
	int rc = release(word, me, INT_MAX);

	if (rc == 0)
		lock_futex_wake(word, INT_MAX);
	return rc;
}

int lock_takeover(uint32_t *word, uint32_t dead, uint32_t me)
{
	if (me == 0 || me > LOCK_ID_MAX || dead == 0)
		return -EINVAL;
	uint32_t v = __atomic_load_n(word, __ATOMIC_RELAXED);
	while (v != 0 && lock_owner(v) == dead) {
		if (cas(word, &v, (me << 1) | (v & LOCK_WAITERS)))
			return 0;
	}
	return -ESRCH;
}
