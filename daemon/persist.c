/*
 * persist.c - snapshots to a file and back (see persist.h): the daemon's
 * hooks.  persist_start() loads the --snapshot file into a new region,
 * persist_exit() saves it at a clean shutdown, persist_request() serves
 * SAVE and LOAD; a --snapshot file that failed to load is moved aside
 * rather than saved over.
 *
 * The work itself is done by the other parts (persist_int.h lists them):
 * persist_save.c, persist_load.c, over the I/O of persist_io.c.
 *
 * What it is not: the format (snapshot.c), the request parsing
 * (handlers.c).  The fuzz targets link their own persist_request()
 * (tests/fuzz/fuzz_request.c) so that no fuzzed path reaches a file.
 */
#include "persist_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "sysd.h"

void persist_msg(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------------
 * The daemon's hooks
 * ------------------------------------------------------------------------ */

static double mb_s(const struct persist_stats *st)
{
	return st->seconds > 0 ? (double)st->data_bytes / 1e6 / st->seconds
			       : 0.0;
}

static void log_saved(const char *path, const struct persist_stats *st)
{
	log_info("saved %" PRIu64 " entries (%" PRIu64 " bytes of keys and "
		 "values, %" PRIu64 " blocks) to %s in %.3f s (%.0f MB/s)",
		 st->entries, st->data_bytes, st->blocks, path, st->seconds,
		 mb_s(st));
}

/* Too large: a key over ENTRY_KEY_MAX (a snapshot of layout 4 may hold
 * keys up to 65535 bytes) or a key and value over this cache's max_kv. */
static void log_loaded(const struct daemon *d, const char *path,
		       const struct persist_stats *st)
{
	log_info("loaded %" PRIu64 " entries (%" PRIu64 " bytes) from %s "
		 "in %.3f s (%.0f MB/s); skipped %" PRIu64 " expired, %" PRIu64
		 " too large for this cache (a key over %u bytes, or key and "
		 "value over %" PRIu32 "), %" PRIu64 " under prefixes the "
		 "near cache blocks (its Redis tracking not up), %" PRIu64
		 " failed",
		 st->entries, st->data_bytes, path, st->seconds, mb_s(st),
		 st->expired, st->too_big, ENTRY_KEY_MAX, d->eng.g.max_kv,
		 st->blocked, st->failed);
}

/* The --snapshot file, when it failed to load and is still there (a LOAD
 * request of it failed, or it could not be moved aside at start): the
 * stop moves it aside before it saves, or does not save.  Set by the job
 * thread or at start, read at the stop, after the last job (job.c). */
static struct {
	bool set;
	dev_t dev;
	ino_t ino;
	int rc; /* why it failed */
} unloaded;

/* Whether path names the file of *sb (and lstat does not fail). */
static bool same_file(const char *path, const struct stat *sb)
{
	struct stat now;

	return lstat(path, &now) == 0 && now.st_dev == sb->st_dev &&
	       now.st_ino == sb->st_ino;
}

/* Renames path to `to` unless `to` exists: renameat2(RENAME_NOREPLACE),
 * or link and unlink where the file system does not take that flag.
 * Returns 0 or -errno (-EEXIST: `to` exists). */
static int rename_noreplace(const char *path, const char *to)
{
	if (renameat2(AT_FDCWD, path, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	if (link(path, to) < 0)
		return -errno;
	if (unlink(path) < 0) {
		int rc = -errno;
		unlink(to);
		return rc;
	}
	return 0;
}

/* Moves the --snapshot file, which failed to load with rc, out of the way
 * of the next save: renamed, in its folder, to PATH.damaged-<UTC time>
 * (rc -EBADMSG) or PATH.unloaded-<UTC time> (any other failure), with
 * "-2", "-3"... added when that name exists (an existing file is never
 * replaced).  Logs where it went and how to use it, or why it could not
 * be moved.  Returns 0, or -errno when it is still at PATH. */
static int move_aside(struct daemon *d, int rc)
{
	const char *path = d->cfg.snapshot;
	const char *kind = rc == -EBADMSG ? "damaged" : "unloaded";
	size_t cap = strlen(path) + 64;
	char stamp[32], *to = malloc(cap);
	struct tm tm;
	struct stat sb;
	time_t now = time(NULL);
	int mrc = -ENOMEM;

	if (lstat(path, &sb) < 0) {
		free(to);
		return 0; /* gone meanwhile: nothing to keep */
	}
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	for (int n = 1; to && n <= 100; n++) {
		if (n == 1)
			snprintf(to, cap, "%s.%s-%s", path, kind, stamp);
		else
			snprintf(to, cap, "%s.%s-%s-%d", path, kind, stamp, n);
		if ((mrc = rename_noreplace(path, to)) != -EEXIST)
			break;
	}
	if (mrc) {
		log_error("snapshot %s failed to load and cannot be moved "
			  "aside%s%s: %s; it is kept as it is and the stop "
			  "will not save over it (move it away, then "
			  "`cachectl --socket %s save %s` saves the cache)",
			  path, to ? " to " : "", to ? to : "", strerror(-mrc),
			  d->cfg.socket_path, path);
		free(to);
		return mrc;
	}
	if (rc == -EBADMSG)
		log_warn("moved the damaged snapshot %s aside to %s (the stop "
			 "saves to %s again); to recover the entries of its "
			 "blocks before the damage: cachectl --socket %s load "
			 "--partial %s",
			 path, to, path, d->cfg.socket_path, to);
	else if (rc == -EPROTONOSUPPORT)
		log_warn("moved the snapshot %s of another format version "
			 "aside to %s (the stop saves to %s again); the "
			 "shmcached version that wrote it can load it",
			 path, to, path);
	else
		log_warn("moved the snapshot %s, which could not be loaded, "
			 "aside to %s (the stop saves to %s again); once the "
			 "cause is fixed: cachectl --socket %s load %s",
			 path, to, path, d->cfg.socket_path, to);
	free(to);
	return 0;
}

/* Remembers the file of *sb, which failed to load with rc, as the
 * --snapshot file not to save over. */
static void set_unloaded(const struct stat *sb, int rc)
{
	unloaded.set = true;
	unloaded.dev = sb->st_dev;
	unloaded.ino = sb->st_ino;
	unloaded.rc = rc;
}

/* Whether a failure of load with rc says nothing about the file's
 * contents: it is missing, or is not a regular file (a directory, a
 * FIFO: nothing a save could destroy, and nothing to move aside). */
static bool nothing_to_keep(int rc)
{
	return rc == -ENOENT || rc == -EINVAL || rc == -ENOTDIR || rc == -ELOOP;
}

void persist_start(struct daemon *d)
{
	struct persist_stats st;
	char err[768];
	const char *path = d->cfg.snapshot;

	if (access(path, F_OK) < 0 && errno == ENOENT) {
		log_info("snapshot %s does not exist yet: starting empty",
			 path);
		return;
	}
	sysd_notify("STATUS=loading the snapshot");
	int rc = persist_load(&d->eng, path,
			      PERSIST_FRESH |
				      (d->cfg.snapshot_partial ? PERSIST_PARTIAL
							       : 0),
			      &st, err, sizeof(err));
	if (rc == 0) {
		log_loaded(d, path, &st);
		return;
	}
	log_error("%s", err);
	if (st.entries)
		log_warn("--snapshot-partial: started with the %" PRIu64
			 " entries of the valid blocks",
			 st.entries);
	else
		log_warn("starting with an empty cache");
	struct stat sb;
	if (!nothing_to_keep(rc) && lstat(path, &sb) == 0 &&
	    move_aside(d, rc) < 0)
		set_unloaded(&sb, rc);
}

void persist_exit(struct daemon *d)
{
	struct persist_stats st;
	char err[768];
	struct stat sb = { .st_dev = unloaded.dev, .st_ino = unloaded.ino };

	if (unloaded.set && same_file(d->cfg.snapshot, &sb) &&
	    move_aside(d, unloaded.rc) < 0) {
		log_error("not saving the snapshot: %s failed to load and "
			  "could not be moved aside; it is left as it is",
			  d->cfg.snapshot);
		return;
	}
	sysd_notify("STATUS=saving the snapshot");
	if (persist_save(&d->eng, d->cfg.snapshot, &st, err, sizeof(err)))
		log_error("%s", err);
	else
		log_saved(d->cfg.snapshot, &st);
}

/* After a LOAD: the near cache's prefixes (--redis-prefix) are flushed,
 * for what a snapshot holds under them may have been written in Redis
 * since (docs/NEARCACHE.md).  A load at start needs none: the tracking
 * flushes them when it starts. */
static void drop_tracked(struct daemon *d)
{
	if (!d->cfg.n_redis_prefixes)
		return;
	pthread_mutex_lock(&d->ns_lock);
	for (uint32_t i = 0; i < d->cfg.n_redis_prefixes; i++) {
		const char *p = d->cfg.redis_prefixes[i];
		int rc = eng_ns_flush(&d->eng, p, strlen(p));

		if (rc)
			log_error("cannot flush namespace %s after the load: "
				  "%s",
				  p, strerror(-rc));
	}
	pthread_mutex_unlock(&d->ns_lock);
	pthread_mutex_lock(&d->redis_lock);
	d->redis_st.v[REDIS_C_flushes]++;
	pthread_mutex_unlock(&d->redis_lock);
	log_info("load: the keys under the tracked Redis prefixes were "
		 "dropped (they follow Redis, not the snapshot)");
}

int persist_request(struct daemon *d, bool load, unsigned flags,
		    const char *path, uint64_t *entries, char *err,
		    size_t errlen)
{
	struct persist_stats st;
	struct stat sb;
	int rc = load ? persist_load(&d->eng, path, flags, &st, err, errlen)
		      : persist_save(&d->eng, path, &st, err, errlen);

	if (load)
		drop_tracked(d);

	if (rc) {
		log_error("%s", err);
		/* The --snapshot file itself failed to load: the stop moves
		 * it aside before it saves (it stays where it is meanwhile,
		 * for the operator to look at or load again). */
		if (load && d->cfg.snapshot[0] && !nothing_to_keep(rc) &&
		    stat(path, &sb) == 0 && same_file(d->cfg.snapshot, &sb))
			set_unloaded(&sb, rc);
		return rc;
	}
	if (load && unloaded.set && stat(path, &sb) == 0 &&
	    sb.st_dev == unloaded.dev && sb.st_ino == unloaded.ino)
		unloaded.set = false; /* it loads now */
	if (load)
		log_loaded(d, path, &st);
	else
		log_saved(path, &st);
	*entries = st.entries;
	return 0;
}
