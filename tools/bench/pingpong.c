/*
 * pingpong.c - what one shared cache line costs on this machine.
 *
 * Two threads, pinned to two CPUs the bench may run on, hand a counter
 * back and forth through one cache line: each waits for the other's
 * value, then writes its own.  Half a round trip is the time a line
 * written on one CPU takes to be read on the other (the mean of the two
 * directions).  Every line that two worker processes both write (a
 * segment's lock word, the entry of a key both read and set) costs about
 * this much each time it changes hands, so the multi-process figures are
 * printed with it: it decides how far a shared cache can scale on a
 * given machine, and it differs widely between machines (two cores under
 * one L3, two on different chiplets or sockets, vCPUs the host moves).
 *
 * The wait spins without a pause hint: the figure is the transfer, not
 * what a polite spinner adds to it.  Two CPUs that are hyperthreads of
 * one core give a far smaller figure than two cores; the header names
 * the CPUs.
 */
#include "bench.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "workload.h"

#define PP_ROUNDS 5
#define PP_TRIPS 20000		   /* round trips per round */
#define PP_GIVE_UP_NS 2000000000LL /* a side that stops answering */

struct pp {
	_Alignas(64) uint32_t word; /* the line that moves */
	_Alignas(64) int cpu[2];
	uint32_t give_up; /* set by a side that waited PP_GIVE_UP_NS */
	int pinned[2];
	pthread_barrier_t start;
	int64_t ns[PP_ROUNDS]; /* per round: ns per one-way transfer */
};

struct pp_arg {
	struct pp *pp;
	int side;
};

/* Waits until word == want; false if the run was given up: by this side,
 * when the other has not answered for PP_GIVE_UP_NS, or by the other.  A
 * busy machine only slows the answers down; the clock is read only once
 * a wait has spun a while, so a quick answer costs no clock read. */
static bool wait_for(struct pp *pp, uint32_t want)
{
	int64_t deadline = 0;

	for (unsigned spins = 1;; spins++) {
		if (__atomic_load_n(&pp->word, __ATOMIC_ACQUIRE) == want)
			return true;
		if ((spins & 4095) != 0)
			continue;
		if (__atomic_load_n(&pp->give_up, __ATOMIC_RELAXED))
			return false;
		int64_t now = now_ns();

		if (deadline == 0) {
			deadline = now + PP_GIVE_UP_NS;
		} else if (now > deadline) {
			__atomic_store_n(&pp->give_up, 1, __ATOMIC_RELAXED);
			return false;
		}
	}
}

/* Side 0 writes the odd values and times the rounds; side 1 the even. */
static void *pp_side(void *p)
{
	struct pp_arg *a = p;
	struct pp *pp = a->pp;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(pp->cpu[a->side], &set);
	pp->pinned[a->side] = !pthread_setaffinity_np(pthread_self(),
						      sizeof(set), &set);
	pthread_barrier_wait(&pp->start);
	if (!pp->pinned[0] || !pp->pinned[1])
		return NULL;
	uint32_t v = 0;

	for (int r = 0; r < PP_ROUNDS; r++) {
		int64_t t0 = now_ns();

		for (int i = 0; i < PP_TRIPS; i++) {
			if (a->side == 1 && !wait_for(pp, v + 1))
				return NULL;
			__atomic_store_n(&pp->word, v + 1 + (uint32_t)a->side,
					 __ATOMIC_RELEASE);
			if (a->side == 0 && !wait_for(pp, v + 2))
				return NULL;
			v += 2;
		}
		if (a->side == 0)
			pp->ns[r] = (now_ns() - t0) / (2 * PP_TRIPS);
	}
	return NULL;
}

void pp_line_transfer(struct pp_transfer *out)
{
	cpu_set_t allowed;
	struct pp *pp;
	int n = 0;

	out->ns = -1;
	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		return;
	pp = aligned_alloc(64, sizeof(*pp));
	if (!pp)
		return;
	*pp = (struct pp){ .word = 0 };
	for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET(c, &allowed))
			pp->cpu[n++] = c;
	if (n < 2 || pthread_barrier_init(&pp->start, NULL, 2)) {
		free(pp);
		return;
	}
	pthread_t t[2];
	struct pp_arg args[2] = { { pp, 0 }, { pp, 1 } };
	int started = 0;

	for (int i = 0; i < 2; i++) {
		if (pthread_create(&t[i], NULL, pp_side, &args[i]))
			break;
		started++;
	}
	if (started == 1) /* let the one side through; pinned[1] stays 0 */
		pthread_barrier_wait(&pp->start);
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&pp->start);
	if (started == 2 && pp->pinned[0] && pp->pinned[1] && !pp->give_up) {
		out->ns = median_i64(pp->ns, PP_ROUNDS);
		out->cpu[0] = pp->cpu[0];
		out->cpu[1] = pp->cpu[1];
	}
	free(pp);
}
