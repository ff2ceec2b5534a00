/*
 * clock.h - the monotonic clock, in the units the code measures with: every
 * timeout, deadline and duration of the engine, the daemon, the library and
 * the tools reads it here (CLOCK_MONOTONIC: never steps, and the vDSO makes
 * a read about 20 ns).  The cache's own "now" for expiry is not this clock
 * but the region's coarse unix seconds (layout.h, region_hdr.clock).
 */
#ifndef SHMC_CLOCK_H
#define SHMC_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Nanoseconds since an arbitrary point (boot), never going back. */
static inline uint64_t clock_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * UINT64_C(1000000000) +
	       (uint64_t)ts.tv_nsec;
}

/* The same, in milliseconds. */
static inline uint64_t clock_mono_ms(void)
{
	return clock_mono_ns() / UINT64_C(1000000);
}

/* The same, in seconds, with the fraction (durations to print). */
static inline double clock_mono_s(void)
{
	return (double)clock_mono_ns() / 1e9;
}

#endif
