/*
 * ring.h - byte access to a segment's data ring.
 *
 * A ring is `size` bytes; positions are offsets in [0, size).  A run of n
 * bytes (n <= size) starting at pos may wrap past the end: these helpers
 * split every access into at most two contiguous pieces.  They know nothing
 * of entries; callers hold the segment lock and have bounds-checked pos and
 * n against the ring (see seg.c).
 */
#ifndef SHMC_RING_H
#define SHMC_RING_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* pos + n, wrapped; requires pos < size and n <= size. */
static inline __attribute__((always_inline)) uint32_t
ring_add(uint32_t pos, uint32_t n, uint32_t size)
{
	uint32_t room = size - pos;

	return n < room ? pos + n : n - room;
}

/* Distance from `from` forward to `to`. */
static inline __attribute__((always_inline)) uint32_t
ring_dist(uint32_t from, uint32_t to, uint32_t size)
{
	return to >= from ? to - from : size - from + to;
}

/* Asks for the cache line holding p, for reading; never faults.  On x86
 * an asm statement, because gcc 12 drops __builtin_prefetch() when its
 * address is a conditional expression (as ring_prefetch's clamp is). */
static inline void prefetch_read(const void *p)
{
#if defined(__x86_64__) || defined(__i386__)
	__asm__ volatile("prefetcht0 %0" : : "m"(*(const char *)p));
#else
	__builtin_prefetch(p, 0, 3);
#endif
}

/* Asks for the `lines` cache lines after the one holding pos, clamped to
 * the ring's last line (size is a multiple of 64 and the ring is
 * line-aligned); a run that wraps gets its end's lines only. */
static inline void ring_prefetch(const uint8_t *ring, uint32_t size,
				 uint32_t pos, uint32_t lines)
{
	uint32_t last = size - 64, line = pos & ~UINT32_C(63);

	for (uint32_t i = 1; i <= lines; i++) {
		uint32_t at = line + 64 * i;

		prefetch_read(ring + (at < last ? at : last));
	}
}

static inline __attribute__((always_inline)) void
ring_read(const uint8_t *ring, uint32_t size, uint32_t pos, void *dst,
	  uint32_t n)
{
	uint32_t first = size - pos;

	if (n <= first) {
		memcpy(dst, ring + pos, n);
	} else {
		memcpy(dst, ring + pos, first);
		memcpy((uint8_t *)dst + first, ring, n - first);
	}
}

static inline __attribute__((always_inline)) void
ring_write(uint8_t *ring, uint32_t size, uint32_t pos, const void *src,
	   uint32_t n)
{
	uint32_t first = size - pos;

	if (n <= first) {
		memcpy(ring + pos, src, n);
	} else {
		memcpy(ring + pos, src, first);
		memcpy(ring, (const uint8_t *)src + first, n - first);
	}
}

/* True if the n ring bytes at pos equal s. */
static inline __attribute__((always_inline)) bool
ring_equal(const uint8_t *ring, uint32_t size, uint32_t pos, const void *s,
	   uint32_t n)
{
	uint32_t first = size - pos;

	if (n <= first)
		return memcmp(ring + pos, s, n) == 0;
	return memcmp(ring + pos, s, first) == 0 &&
	       memcmp(ring, (const uint8_t *)s + first, n - first) == 0;
}

/* The two pieces of the run at pos. */
static inline __attribute__((always_inline)) void
ring_pieces(const uint8_t *ring, uint32_t size, uint32_t pos, uint32_t n,
	    const void *p[2], size_t len[2])
{
	uint32_t first = size - pos;

	p[0] = ring + pos;
	if (n <= first) {
		len[0] = n;
		p[1] = ring;
		len[1] = 0;
	} else {
		len[0] = first;
		p[1] = ring;
		len[1] = n - first;
	}
}

/* Copies n bytes from src to dst inside the ring, where dst is at or before
 * src in ring order (dst + k == src for some k >= 0, the runs may overlap).
 * Copying forward in contiguous chunks never reads a byte it already
 * overwrote. */
void ring_move(uint8_t *ring, uint32_t size, uint32_t dst, uint32_t src,
	       uint32_t n);

#endif
