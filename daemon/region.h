/*
 * region.h - the daemon's side of the shared-memory region: create it, or
 * adopt the one a previous daemon left (warm restart), and map it.
 */
#ifndef SHMC_REGION_H
#define SHMC_REGION_H

#include <stddef.h>

struct config;
struct daemon;
struct eng_geom;

/* Fills in c->segments when it is 0 (not configured): eng_default_nseg()
 * of c->memory, so that the log, the errors and the stats name the count
 * in use. */
void region_resolve(struct config *c);

/* The geometry the configuration asks for.  Returns 0, or -EINVAL when the
 * memory cannot be carved into that many segments. */
int region_plan(const struct config *c, struct eng_geom *g);

/* Opens or creates cfg.name, claims it for this process (owner.h) before
 * anything else, maps it into d->region_base, attaches d->eng as
 * DAEMON_CLIENT_ID.  A region another live daemon owns is refused
 * (-EBUSY, err names its pid), with or without cfg.reset, and nothing in
 * it is touched.  An existing region is adopted with its contents when it
 * validates and has the configured geometry; otherwise it is refused
 * (-EEXIST, -EUCLEAN) unless cfg.reset, which replaces it.  Returns 0 or
 * -errno with a one-line reason in err.  The claim lasts until
 * region_close() or the process's death; it is not inherited by fork(). */
int region_open(struct daemon *d, char *err, size_t errlen);

/* Unmaps; with cfg.unlink_on_exit also removes the name. */
void region_close(struct daemon *d);

#endif
