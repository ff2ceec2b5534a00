/*
 * persist.h - snapshots of the cache to a file and back: the SAVE and LOAD
 * requests, --snapshot FILE (saved at a clean shutdown, loaded at start
 * into a new region).  The format is daemon/snapshot.h's; this module does
 * the file I/O, through io_uring (or plain pread/pwrite where io_uring is
 * unavailable), and the walk of the cache.
 *
 * Saving never stops the cache: eng_iter() locks one segment at a time,
 * just long enough to copy its live entries into memory buffers; the
 * buffers are checksummed and written after the lock is released.  The
 * file is written as FILE.tmp, fsync'd, renamed over FILE and the directory
 * fsync'd: FILE is always either the previous snapshot or the new one.
 *
 * Loading verifies before it uses: by default every unit of the file is
 * checked (a first pass) before the first entry is stored; into a fresh
 * region, or with PERSIST_PARTIAL, each block is checked just before its
 * entries are stored and the load stops at the first bad one.  Either way
 * no entry of a damaged block is ever stored.
 *
 * Both return when the work is done, about a second per GiB here (see
 * docs/SNAPSHOT.md); the daemon calls them from a thread of their own
 * (job.c), beside its event loop.  A load stores entries on a second
 * thread while the calling one reads and verifies.  Not thread-safe: one
 * save or load at a time per process (job.c runs one at a time).
 */
#ifndef SHMC_PERSIST_H
#define SHMC_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct daemon;
struct eng;

/* What a save or a load did. */
struct persist_stats {
	uint64_t entries; /* saved, or loaded (stored in the cache) */
	uint64_t expired; /* load: skipped, expired before it was stored */
	uint64_t too_big; /* load: skipped, larger than this cache's max_kv */
	uint64_t blocked; /* load: skipped, under a prefix the near cache
			     blocks (its Redis tracking not up) */
	uint64_t failed;  /* load: not stored (segment lock timed out,
				   segment found corrupted) */
	uint64_t blocks;  /* blocks written, or verified and used */
	uint64_t file_bytes; /* bytes of the file */
	uint64_t data_bytes; /* key + value bytes of the entries */
	uint64_t created;    /* load: when the snapshot was taken */
	double seconds;	     /* wall time of the whole operation */
};

/* Writes every live, unexpired entry of the cache to `path` (absolute or
 * relative to the current directory), atomically.  Returns 0 with *st
 * filled, or a negative errno with a one-line message naming the file in
 * err (errlen bytes, always NUL-terminated):
 *   -ENOENT, -EACCES, -ENOSPC, -EIO, ...  creating, writing, fsync or
 *              rename failed (FILE is left as it was, FILE.tmp removed);
 *   -EEXIST    FILE.tmp exists and cannot be replaced (another user's);
 *   -ETIMEDOUT a segment stayed locked by a live client for 5 s;
 *   -ENOMEM    no memory for the buffers. */
int persist_save(struct eng *e, const char *path, struct persist_stats *st,
		 char *err, size_t errlen);

/* persist_load() flags. */
#define PERSIST_PARTIAL 1u /* on damage, keep the blocks before it */
#define PERSIST_FRESH                                                          \
	2u /* the cache is empty and nobody uses it yet (a
			      region this process just created): it is
			      filled as each block is verified, in a single
			      read of the file, and emptied again on damage
			      (unless PERSIST_PARTIAL) */

/* Stores the entries of the snapshot `path` in the cache, overwriting keys
 * that are present in both (the rest of the cache is kept).  Expired and
 * too-large entries are skipped and counted.  Unless flags says otherwise
 * every unit of the file is verified first (a read of its own) and only
 * then are entries stored (a second read).  Returns 0 with *st filled,
 * or a negative errno with a one-line message naming the file and, for a
 * bad file, the byte offset of the first damage:
 *   -ENOENT, -EACCES, -EIO, ...  the file cannot be opened or read;
 *   -EINVAL          it is not a regular file;
 *   -EBADMSG         it is not a snapshot, or is damaged or truncated;
 *   -EPROTONOSUPPORT it is a snapshot of another format version;
 *   -ENOMEM          no memory for the buffers.
 * On error nothing was stored unless PERSIST_PARTIAL: then the entries of
 * the blocks before the damage were (st->entries says how many). */
int persist_load(struct eng *e, const char *path, unsigned flags,
		 struct persist_stats *st, char *err, size_t errlen);

/* The daemon's uses, which also log what happened. */

/* At start, when the region was just created and --snapshot is set: loads
 * it (a missing file is not an error: the first start has none).  Any
 * failure is logged and the daemon goes on, empty or (--snapshot-partial)
 * with the valid blocks.  A file that exists and failed to load is never
 * saved over: it is moved aside at once, in its folder, to
 * FILE.damaged-<UTC yyyymmddThhmmssZ> (damaged, truncated, not a
 * snapshot) or FILE.unloaded-<time> (another format version, unreadable),
 * never replacing an existing file, and the log says where and how to
 * load it; when it cannot be moved it stays and persist_exit() does not
 * save over it. */
void persist_start(struct daemon *d);

/* At a clean shutdown, when --snapshot is set: saves.  A failure is
 * logged; the previous snapshot file is then still there.  A --snapshot
 * file that failed to load (at start, or by a LOAD request) and is still
 * there is first moved aside as at start; if it cannot be, nothing is
 * saved. */
void persist_exit(struct daemon *d);

/* A SAVE (load false) or LOAD request for `path`: as persist_save() /
 * persist_load() with `flags` (0: all or nothing; PERSIST_PARTIAL: one
 * pass, keeping the blocks before any damage), logged.  A failed LOAD of
 * the --snapshot file itself marks it for persist_exit() to move aside
 * (it stays where it is meanwhile).  Returns 0 with *entries, or a
 * negative errno with the message in err. */
int persist_request(struct daemon *d, bool load, unsigned flags,
		    const char *path, uint64_t *entries, char *err,
		    size_t errlen);

#endif
