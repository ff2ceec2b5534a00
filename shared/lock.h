/*
 * lock.h - the per-segment futex lock, shared between processes.
 *
 * A three-state mutex in the manner of Drepper's "Futexes Are Tricky"
 * (free / locked / locked with waiters), except that the locked states carry
 * the holder's client id, so that a dead holder can be identified and its
 * lock taken over (lock_takeover()).  The word is
 *
 *     0                      free
 *     (owner << 1)           held by owner, nobody sleeping
 *     (owner << 1) | 1       held by owner, someone may sleep on the word
 *
 * There is never a locked value without an owner.  The futex is process-
 * shared (no FUTEX_PRIVATE_FLAG).  Acquisition spins a bounded number of
 * times, then sleeps in timed slices; between slices it can ask a liveness
 * callback whether the holder is still alive.
 *
 * Not for: recursion (a holder that locks again waits for itself and times
 * out), fairness, or priority inheritance.
 */
#ifndef SHMC_LOCK_H
#define SHMC_LOCK_H

#include <stdbool.h>
#include <stdint.h>

#define LOCK_WAITERS 1u
#define LOCK_SPIN 128	 /* pause-spins before the first sleep */
#define LOCK_SLICE_MS 20 /* one futex sleep, at most */

static inline uint32_t lock_owner(uint32_t word)
{
	return word >> 1;
}

/* Returns true if the holder is alive (or not known to be dead). */
typedef bool (*lock_alive_fn)(void *arg, uint32_t owner);

/* Takes the lock for `me` (1..0x7fffffff).  Waits at most timeout_ms.
 * Returns 0 when held; -ETIMEDOUT; -EOWNERDEAD when alive() said the holder
 * is dead (the lock is still held by the dead owner: the caller recovers it
 * with lock_takeover()); -EINVAL for a bad id. */
int lock_acquire(uint32_t *word, uint32_t me, uint32_t timeout_ms,
		 lock_alive_fn alive, void *alive_arg);

/* Releases a lock held by `me`, waking one sleeper if there may be any.
 * Returns 0, or -EPERM if the word did not name `me` as holder (the word is
 * then left as it was). */
int lock_release(uint32_t *word, uint32_t me);

/* Replaces a holder that is known to be dead: if the word names `dead` as
 * holder, makes `me` the holder (keeping the waiters bit) and returns 0;
 * otherwise returns -ESRCH and changes nothing. */
int lock_takeover(uint32_t *word, uint32_t dead, uint32_t me);

/* The futex primitives underneath, for other words in shared memory (the
 * get_or_load flights): sleep while *word == val, at most ms milliseconds
 * (returns early on a wake, a change, or a signal); wake up to n sleepers
 * (INT_MAX: all). */
void lock_futex_wait(uint32_t *word, uint32_t val, uint32_t ms);
void lock_futex_wake(uint32_t *word, int n);

/* Releases the lock held by `me` and wakes every sleeper (after a
 * takeover, every waiter must re-check).  Returns as lock_release(). */
int lock_release_all(uint32_t *word, uint32_t me);

#endif
