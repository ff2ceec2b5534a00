/*
 * fnv1a.h - FNV-1a 64, the tests' own hash: the key hash that the unit,
 * client and stress tests write into their self-checking values.  It is
 * independent of the engine's XXH3 on purpose, so a broken engine hash
 * cannot also break the check.  Header-only; includes what it uses.
 */
#ifndef SHMC_TEST_FNV1A_H
#define SHMC_TEST_FNV1A_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t fnv1a64(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t h = UINT64_C(0xcbf29ce484222325);

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

#endif
