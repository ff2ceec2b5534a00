/*
 * ring.c - the one ring helper too large to inline: an overlapping move.
 */
#include "ring.h"

void ring_move(uint8_t *ring, uint32_t size, uint32_t dst, uint32_t src,
	       uint32_t n)
{
	if (dst == src)
		return;
	while (n > 0) {
		uint32_t chunk = n;

		if (chunk > size - dst)
			chunk = size - dst;
		if (chunk > size - src)
			chunk = size - src;
		memmove(ring + dst, ring + src, chunk);
		dst = ring_add(dst, chunk, size);
		src = ring_add(src, chunk, size);
		n -= chunk;
	}
}
