/*
 * persist_save.c - persist_save() (see persist.h): the walk of the cache
 * into snapshot blocks, and their writes.  Each segment's live entries are
 * copied into block buffers under its lock (eng_iter), then sealed and
 * written with a few writes in flight while the next segment is copied;
 * the file is written as FILE.tmp, fsync'd and renamed over FILE.
 *
 * What it is not: the I/O layer (persist_io.c), the format (snapshot.c).
 */
#include "persist_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "engine.h"
#include "owner.h"
#include "snapshot.h"

#define SAVE_INFLIGHT 4u /* block writes in flight at once */

/* ------------------------------------------------------------------------
 * Saving
 * ------------------------------------------------------------------------ */

/* A block buffer: filled under a segment lock, sealed and written after. */
struct wbuf {
	struct pio_op op; /* first: an op's address is its wbuf's */
	struct snap_bw bw;
	bool own; /* a one-off buffer (header, trailer, a large
				   entry): freed after its write */
	struct wbuf *next;
};

struct saver {
	struct eng *e;
	struct pio io;
	int fd;
	struct wbuf *cur;  /* being filled */
	struct wbuf *full; /* filled, to seal and write, in file order */
	struct wbuf **full_tail;
	struct wbuf *spare; /* SNAP_BLOCK_SIZE buffers to reuse */
	unsigned nspare;
	struct snap_totals t;
	int io_err; /* the first write error */
	uint64_t io_err_off;
	bool broken; /* the ring failed: buffers may be in use */
};

static struct wbuf *wbuf_new(size_t cap, bool own)
{
	struct wbuf *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	uint8_t *p = pio_page_alloc(cap);
	if (!p) {
		free(b);
		return NULL;
	}
	snap_bw_init(&b->bw, p, cap);
	b->own = own;
	return b;
}

static void wbuf_free(struct wbuf *b)
{
	free(b->bw.buf);
	free(b);
}

/* A standard buffer, empty; NULL when out of memory. */
static struct wbuf *spare_take(struct saver *s)
{
	struct wbuf *b = s->spare;

	if (!b)
		return wbuf_new(SNAP_BLOCK_SIZE, false);
	s->spare = b->next;
	s->nspare--;
	snap_bw_init(&b->bw, b->bw.buf, b->bw.cap);
	return b;
}

static void recycle(struct saver *s, struct wbuf *b)
{
	if (b->own) {
		wbuf_free(b);
		return;
	}
	b->next = s->spare;
	s->spare = b;
	s->nspare++;
}

static void full_push(struct saver *s, struct wbuf *b)
{
	b->next = NULL;
	*s->full_tail = b;
	s->full_tail = &b->next;
}

/* Collects one completed write.  Returns 0, or the ring's error. */
static int reap_one(struct saver *s)
{
	struct pio_op *op;
	int rc = pio_wait(&s->io, &op);

	if (rc) {
		s->broken = true;
		return rc;
	}
	if (op->res && !s->io_err) {
		s->io_err = op->res;
		s->io_err_off = op->off;
	}
	recycle(s, (struct wbuf *)op);
	return 0;
}

static int reap_all(struct saver *s)
{
	int rc = 0;

	while (s->io.inflight && !s->broken)
		rc = reap_one(s);
	return rc;
}

/* Writes b (len bytes at off), keeping at most SAVE_INFLIGHT in flight. */
static int write_buf(struct saver *s, struct wbuf *b, size_t len, uint64_t off)
{
	int rc;

	while (s->io.inflight >= SAVE_INFLIGHT)
		if ((rc = reap_one(s)))
			return rc;
	b->op = (struct pio_op){ .kind = PIO_WRITE,
				 .fd = s->fd,
				 .buf = b->bw.buf,
				 .len = len,
				 .off = off };
	if ((rc = pio_submit(&s->io, &b->op))) {
		recycle(s, b);
		return rc;
	}
	return 0;
}

/* Seals and writes the blocks filled so far.  Outside any segment lock. */
static int flush_full(struct saver *s)
{
	while (s->full) {
		struct wbuf *b = s->full;
		s->full = b->next;
		if (!s->full)
			s->full_tail = &s->full;
		uint64_t off = s->t.file_size;
		size_t len = snap_bw_seal(&b->bw, s->t.blocks, &s->t);
		int rc = write_buf(s, b, len, off);
		if (rc)
			return rc;
		if (s->io_err)
			return s->io_err;
	}
	return 0;
}

/* eng_iter's callback, under the segment lock: copy, nothing else (the
 * buffers were reserved before the lock was taken; a new one is allocated
 * here only if that reserve runs out, or for an entry larger than a
 * block).  An item in its grace (served only as stale) is left out. */
static int save_item(const struct eng_item *it, void *arg)
{
	struct saver *s = arg;
	struct snap_src src = snap_src_of_item(it);
	size_t need = snap_entry_size(it->klen, it->vlen);

	if (snap_item_stale(it, eng_now(s->e)))
		return 0;

	if (!snap_bw_fits(&s->cur->bw, need)) {
		if (s->cur->bw.n) {
			struct wbuf *next = spare_take(s);
			if (!next)
				return -ENOMEM;
			full_push(s, s->cur);
			s->cur = next;
		}
		if (!snap_bw_fits(&s->cur->bw, need)) {
			/* Larger than a block: a block of its own. */
			struct wbuf *big = wbuf_new(snap_block_size(need),
						    true);
			if (!big)
				return -ENOMEM;
			snap_bw_add(&big->bw, &src);
			full_push(s, big);
			return 0;
		}
	}
	return snap_bw_add(&s->cur->bw, &src);
}

/* Enough spare buffers for segment seg's bytes, allocated before its lock
 * is taken. */
static int reserve(struct saver *s, uint32_t seg)
{
	struct eng_stats ss;

	eng_seg_stats(s->e, seg, &ss);
	uint64_t want =
		ss.bytes_used / (SNAP_BLOCK_SIZE - SNAP_BLOCK_HDR_SIZE) + 1;
	while (s->nspare < want) {
		struct wbuf *b = wbuf_new(SNAP_BLOCK_SIZE, false);
		if (!b)
			return -ENOMEM;
		recycle(s, b);
	}
	return 0;
}

static void saver_free(struct saver *s)
{
	struct wbuf *lists[] = { s->full, s->spare };

	if (s->broken)
		return; /* the kernel may still use them: leak, do not free */
	if (s->cur)
		wbuf_free(s->cur);
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
		for (struct wbuf *b = lists[i], *n; b; b = n) {
			n = b->next;
			wbuf_free(b);
		}
	s->cur = s->full = s->spare = NULL;
}

/* Writes a one-page unit (header or trailer) from a fresh buffer. */
static struct wbuf *page_buf(void)
{
	return wbuf_new(SNAP_PAGE, true);
}

/* Writes the file's content to s->fd.  0, or -errno with err set. */
static int save_to(struct saver *s, const char *path, char *err, size_t errlen)
{
	struct eng *e = s->e;
	uint64_t off;
	int rc;

	if (!(s->cur = spare_take(s))) {
		persist_msg(err, errlen, "snapshot %s: out of memory", path);
		return -ENOMEM;
	}
	struct snap_info info = {
		.created = (uint64_t)time(NULL),
		.region_size = e->g.region_size,
		.nseg = e->g.nseg,
		.ring_size = e->g.ring_size,
		.nrec = e->g.nrec,
		.max_kv = e->g.max_kv,
		.layout_format = e->hdr->format,
		.block_size = SNAP_BLOCK_SIZE,
	};
	/* The header is written last, before the trailer (which holds its
	 * checksum): see below. */
	snap_totals_init(&s->t, 0);

	for (uint32_t seg = 0; seg < e->g.nseg; seg++) {
		if ((rc = reserve(s, seg))) {
			persist_msg(err, errlen, "snapshot %s: out of memory",
				    path);
			return rc;
		}
		int tries = 0;
		while ((rc = eng_iter(e, seg, seg + 1, save_item, s)) ==
			       -ETIMEDOUT &&
		       ++tries < LOCK_RETRIES)
			;
		if (rc) {
			persist_msg(err, errlen, "snapshot %s: segment %u: %s",
				    path, seg,
				    rc == -ETIMEDOUT
					    ? "stayed locked by a client"
				    : rc == -ENOMEM ? "out of memory"
						    : strerror(-rc));
			return rc;
		}
		if ((rc = flush_full(s)))
			goto io_fail;
	}
	if (s->cur->bw.n) {
		full_push(s, s->cur);
		s->cur = NULL;
		if ((rc = flush_full(s)))
			goto io_fail;
	}
	/* The highest version once every segment was walked: no saved item
	 * has a higher one, so a load issues none of theirs again. */
	struct wbuf *hdr = page_buf(), *tr = page_buf();
	if (!hdr || !tr) {
		if (hdr)
			wbuf_free(hdr);
		if (tr)
			wbuf_free(tr);
		persist_msg(err, errlen, "snapshot %s: out of memory", path);
		return -ENOMEM;
	}
	info.version_max = eng_version_max(e);
	s->t.hdr_sum = snap_header_put(hdr->bw.buf, &info);
	if ((rc = write_buf(s, hdr, SNAP_HDR_SIZE, 0))) {
		wbuf_free(tr);
		goto io_fail;
	}
	off = s->t.file_size;
	snap_trailer_put(tr->bw.buf, &s->t);
	if ((rc = write_buf(s, tr, SNAP_TRAILER_SIZE, off)))
		goto io_fail;
	if ((rc = reap_all(s)) || (rc = s->io_err))
		goto io_fail;
	return 0;

io_fail:
	if (s->io_err) {
		rc = s->io_err;
		off = s->io_err_off;
		persist_msg(err, errlen,
			    "snapshot %s: write at offset %" PRIu64 ": %s",
			    path, off, strerror(-rc));
	} else {
		persist_msg(err, errlen, "snapshot %s: write: %s", path,
			    strerror(-rc));
	}
	return rc;
}

static void *closer(void *arg)
{
	close((int)(intptr_t)arg);
	return NULL;
}

/* Closes fd on a short-lived thread of its own.  For the snapshot a save
 * replaced, that last close frees the file's blocks: on a file system
 * mounted with "discard" about a second per GiB, which the event loop need
 * not wait for. */
static void close_later(int fd)
{
	pthread_attr_t a;
	pthread_t t;

	if (fd < 0)
		return;
	if (pthread_attr_init(&a) == 0) {
		int rc = pthread_attr_setdetachstate(&a,
						     PTHREAD_CREATE_DETACHED);
		if (rc == 0)
			rc = pthread_create(&t, &a, closer,
					    (void *)(intptr_t)fd);
		pthread_attr_destroy(&a);
		if (rc == 0)
			return;
	}
	close(fd);
}

/* The directory part of path ("." when there is none), malloc'd. */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

int persist_save(struct eng *e, const char *path, struct persist_stats *st,
		 char *err, size_t errlen)
{
	struct saver s = { .e = e, .fd = -1 };
	double t0 = clock_mono_s();
	size_t plen = strlen(path);
	char *tmp = malloc(plen + 5), *dir = dir_of(path);
	int rc = 0, dfd = -1, old = -1;
	bool made = false; /* FILE.tmp is ours: removed on any failure */

	memset(st, 0, sizeof(*st));
	persist_msg(err, errlen, "%s", "");
	s.full_tail = &s.full;
	if (!tmp || !dir) {
		free(tmp);
		free(dir);
		persist_msg(err, errlen, "snapshot %s: out of memory", path);
		return -ENOMEM;
	}
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmp", 5);
	if (owner_is_claimed(path) || owner_is_claimed(tmp)) {
		rc = -EINVAL;
		persist_msg(err, errlen,
			    "snapshot %s: that is a file this "
			    "daemon serves (its region or its socket's "
			    "lock): give another path",
			    path);
		goto out;
	}

	/* FILE.tmp is made afresh (O_EXCL after removing a stale one), so
	 * that a symbolic link planted there is never followed. */
	if (unlink(tmp) < 0 && errno != ENOENT) {
		rc = -errno;
		persist_msg(err, errlen, "snapshot %s: cannot replace %s: %s",
			    path, tmp, strerror(errno));
		goto out;
	}
	s.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		    0600);
	if (s.fd < 0) {
		rc = -errno;
		persist_msg(err, errlen, "snapshot %s: cannot create %s: %s",
			    path, tmp, strerror(errno));
		goto out;
	}
	made = true;
	pio_direct(s.fd);
	pio_init(&s.io);
	if ((rc = save_to(&s, path, err, errlen))) {
		if (!s.broken)
			reap_all(&s);
		goto out;
	}
	struct pio_op sync = { .kind = PIO_FSYNC, .fd = s.fd };
	if ((rc = pio_run(&s.io, &sync))) {
		persist_msg(err, errlen, "snapshot %s: fsync %s: %s", path, tmp,
			    strerror(-rc));
		goto out;
	}
	rc = close(s.fd) < 0 ? -errno : 0;
	s.fd = -1;
	if (rc) {
		persist_msg(err, errlen, "snapshot %s: close %s: %s", path, tmp,
			    strerror(-rc));
		goto out;
	}
	/* Held open across the rename, the snapshot being replaced is freed
	 * by close_later(), off this thread (see there). */
	old = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (rename(tmp, path) < 0) {
		rc = -errno;
		persist_msg(
			err, errlen,
			"snapshot %s: cannot rename %s to it: %s%s", path, tmp,
			strerror(errno),
			rc == -EISDIR || rc == -ENOTEMPTY || rc == -EEXIST
				? " (a directory has that name: give the path "
				  "of a file)"
				: "");
		goto out;
	}
	made = false; /* it is FILE now */
	/* The rename itself is durable once the directory is. */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct pio_op dsync = { .kind = PIO_FSYNC, .fd = dfd };
	if (dfd < 0 || (rc = pio_run(&s.io, &dsync))) {
		rc = dfd < 0 ? -errno : rc;
		persist_msg(err, errlen,
			    "snapshot %s: written, but the fsync "
			    "of its directory %s failed: %s",
			    path, dir, strerror(-rc));
	}
	st->entries = s.t.entries;
	st->blocks = s.t.blocks;
	st->file_bytes = s.t.file_size;
	st->data_bytes = s.t.data_bytes;
out:
	if (s.fd >= 0)
		close(s.fd);
	if (made)
		unlink(tmp);
	if (dfd >= 0)
		close(dfd);
	close_later(old);
	pio_fini(&s.io);
	saver_free(&s);
	free(tmp);
	free(dir);
	st->seconds = clock_mono_s() - t0;
	return rc;
}
