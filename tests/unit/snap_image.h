/*
 * snap_image.h - a snapshot file image in memory walked with the daemon's
 * decoder (daemon/snapshot.h), for the snapshot unit tests and the
 * snapshot fuzz target.  The daemon itself reads files block by block
 * (persist.c); only the tests hold a whole image in memory, so this walk
 * lives with them and is not linked into anything shipped.
 */
#ifndef SHMC_TEST_SNAP_IMAGE_H
#define SHMC_TEST_SNAP_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "snapshot.h"

typedef int (*snap_entry_fn)(const struct snap_entry *e, void *arg);

/* Verifies every unit of img[0..len) and calls fn (when not NULL) for
 * every entry of every block, in file order, as soon as that block is
 * verified.  Returns 0 with *s holding the totals, fn's non-zero return, or
 * a decoder error with err filled (and *s where the walk stopped: s->t
 * counts the verified blocks). */
static inline int snap_scan_image(struct snap_scan *s, const uint8_t *img,
				  size_t len, snap_entry_fn fn, void *arg,
				  struct snap_err *err)
{
	snap_scan_init(s, len);
	while (s->next) {
		size_t size;
		struct snap_block blk;
		int rc = snap_scan_peek(s, img + s->off, len - s->off, &size,
					err);

		if (rc)
			return rc;
		rc = snap_scan_unit(s, img + s->off, size, &blk, err);
		if (rc < 0)
			return rc;
		if (rc != SNAP_U_BLOCK || !fn)
			continue;
		struct snap_entry e;
		while (snap_block_next(&blk, &e))
			if ((rc = fn(&e, arg)))
				return rc;
	}
	return 0;
}

#endif
