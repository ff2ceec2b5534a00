/*
 * uring_util.h - what the daemon's io_uring loops share (loop_uring.c for
 * the control socket, mc_loop_uring.c for each memcached thread): how a
 * completion's user_data is packed, an SQE that is always there, the tick,
 * and one turn of the loop.  Each loop keeps its own completion kinds and
 * handlers.
 */
#ifndef SHMC_URING_UTIL_H
#define SHMC_URING_UTIL_H

#include <errno.h>
#include <liburing.h>
#include <stdint.h>

/* user_data of a completion:
 *     bits  0..7   kind (the loop's enum; 0 is never a kind)
 *     bits  8..31  a slot (connection, listener), the loop's to define
 *     bits 32..63  the slot's generation, so a completion for a slot that
 *                  was since reused is recognised and dropped */
static inline uint64_t uring_ud(unsigned kind, uint32_t slot, uint32_t gen)
{
	return (uint64_t)kind | (uint64_t)slot << 8 | (uint64_t)gen << 32;
}

static inline unsigned uring_ud_kind(uint64_t ud)
{
	return (unsigned)(ud & 0xff);
}

static inline uint32_t uring_ud_slot(uint64_t ud)
{
	return (uint32_t)(ud >> 8) & 0xffffff;
}

static inline uint32_t uring_ud_gen(uint64_t ud)
{
	return (uint32_t)(ud >> 32);
}

/* An SQE, submitting first if the queue is full; NULL only if even then
 * none is free. */
static inline struct io_uring_sqe *uring_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe) {
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	return sqe;
}

/* Arms a timeout of ms milliseconds (under a second) completing with ud;
 * ts must live until it is submitted. */
static inline void uring_arm_tick(struct io_uring *ring,
				  struct __kernel_timespec *ts, unsigned ms,
				  uint64_t ud)
{
	struct io_uring_sqe *sqe = uring_sqe(ring);

	if (!sqe)
		return;
	ts->tv_sec = 0;
	ts->tv_nsec = (long long)ms * 1000000LL;
	io_uring_prep_timeout(sqe, ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ud);
}

/* One turn: submits, waits for a completion, and hands every completion
 * to dispatch(arg, user_data, res).  Returns 0, or the -errno of a
 * failure the loop cannot go on after. */
static inline int uring_turn(struct io_uring *ring,
			     void (*dispatch)(void *arg, uint64_t ud, int res),
			     void *arg)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int rc = io_uring_submit_and_wait(ring, 1);

	if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
		return rc;
	io_uring_for_each_cqe(ring, head, cqe)
	{
		dispatch(arg, io_uring_cqe_get_data64(cqe), cqe->res);
		n++;
	}
	io_uring_cq_advance(ring, n);
	return 0;
}

#endif
