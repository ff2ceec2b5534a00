/*
 * hash.h - how a key's XXH3-64 hash is split.
 *
 *   bits [0, seg_bits)              segment
 *   bits [seg_bits, seg_bits + 32)  tag, stored in the key's pool record
 *   low bucket_bits of the tag      bucket in the segment's index
 *
 * The bucket is part of the tag so that evacuation can find a record's
 * bucket (to unlink it) without reading and rehashing the key.  A tag match
 * is a filter before the key bytes are compared, never a proof.
 *
 * XXH3 is inlined (XXH_INLINE_ALL): for the short keys of a cache the call
 * and dispatch of the shared library cost as much as the hash itself.
 */
#ifndef SHMC_HASH_H
#define SHMC_HASH_H

#include <stddef.h>
#include <stdint.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

struct hash_split {
	uint32_t seg;
	uint32_t tag;
};

static inline uint64_t hash_key(const void *key, size_t klen)
{
	return XXH3_64bits(key, klen);
}

static inline struct hash_split hash_split(uint64_t h, uint32_t seg_bits)
{
	struct hash_split s = {
		.seg = (uint32_t)(h & ((UINT64_C(1) << seg_bits) - 1)),
		.tag = (uint32_t)(h >> seg_bits),
	};
	return s;
}

static inline uint32_t hash_bucket(uint32_t tag, uint32_t nbuckets)
{
	return tag & (nbuckets - 1);
}

#endif
