/*
 * persist.c - snapshots to a file and back (see persist.h): the walk of
 * the cache into blocks, the file I/O, and the daemon's start, exit and
 * request hooks.
 *
 * I/O goes through a private io_uring (pio_* below): large aligned
 * buffers, a few writes in flight while the next segment is copied, a few
 * reads ahead while a chunk is verified; O_DIRECT where the file system
 * takes it and the data is not wanted in the page cache (every save, the
 * single read of a load at start).  Where io_uring cannot be set up
 * (disabled by sysctl or seccomp, as for the event loop's epoll fallback)
 * the same operations are done with pwrite/pread/fsync, one at a time.
 *
 * Threads: the caller's does everything but storing loaded entries (a
 * storer thread, for the length of a load) and the last close of a
 * replaced snapshot (a detached thread, see close_later()).
 *
 * Parts: pio; saving; the storer; the read stream; the load passes; the
 * daemon's hooks.
 *
 * What it is not: the format (daemon/snapshot.c), the request parsing
 * (handlers.c).
 */
#include "persist.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "daemon.h"
#include "engine.h"
#include "log.h"
#include "owner.h"
#include "snapshot.h"
#include "sysd.h"

#define PIO_DEPTH 8u		/* submission queue entries */
#define SAVE_INFLIGHT 4u	/* block writes in flight at once */
#define READ_CHUNK (UINT32_C(8) << 20) /* bytes per read */
#define READ_BUFS 4u		/* chunks being read or used at once */
#define READ_CARRY SNAP_BLOCK_SIZE /* room for a unit cut by a chunk end */
/* A segment lock or a store that times out is tried again, this many
 * times (with the daemon's 50 ms lock timeout: 5 s). */
#define LOCK_RETRIES 100

__attribute__((format(printf, 3, 4))) static void
msg(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------------
 * pio: reads, writes and fsyncs through io_uring, or synchronously
 * ------------------------------------------------------------------------ */

enum pio_kind { PIO_READ, PIO_WRITE, PIO_FSYNC };

/* One operation, owned by the caller until pio_wait() hands it back.  The
 * sqe's user_data is the op's address. */
struct pio_op {
	enum pio_kind kind;
	int fd;
	uint8_t *buf;
	size_t len;		/* bytes to read or write */
	size_t need;		/* read: complete once this many are read
				   (the rest of len may lie past the end of
				   the file); 0: len */
	uint64_t off;		/* file offset */
	size_t done;		/* bytes read or written so far */
	bool async;		/* io_uring: IOSQE_ASYNC (a read the kernel
				   would otherwise copy inline, at submit) */
	int res;		/* when complete: 0 or -errno */
	struct pio_op *next;	/* synchronous mode: the completed list */
};

struct pio {
	struct io_uring ring;
	bool uring;
	unsigned inflight;	/* submitted, not yet handed back */
	struct pio_op *done, **done_tail; /* synchronous mode */
};

static void pio_init(struct pio *io)
{
	int rc = io_uring_queue_init(PIO_DEPTH, &io->ring, 0);

	io->uring = rc == 0;
	io->inflight = 0;
	io->done = NULL;
	io->done_tail = &io->done;
	if (rc)
		log_debug("snapshot I/O without io_uring (%s): pread/pwrite",
			  strerror(-rc));
}

static void pio_fini(struct pio *io)
{
	if (io->uring)
		io_uring_queue_exit(&io->ring);
	io->uring = false;
}

/* Queues the rest of op (from op->done) on the ring.  The callers keep
 * fewer than PIO_DEPTH operations in flight, so an sqe is always free. */
static int pio_prep(struct pio *io, struct pio_op *op)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);

	if (!sqe)
		return -EBUSY;
	switch (op->kind) {
	case PIO_READ:
		io_uring_prep_read(sqe, op->fd, op->buf + op->done,
				   (unsigned)(op->len - op->done),
				   op->off + op->done);
		break;
	case PIO_WRITE:
		io_uring_prep_write(sqe, op->fd, op->buf + op->done,
				    (unsigned)(op->len - op->done),
				    op->off + op->done);
		break;
	case PIO_FSYNC:
		io_uring_prep_fsync(sqe, op->fd, 0);
		break;
	}
	if (op->async)
		io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
	io_uring_sqe_set_data(sqe, op);
	int rc = io_uring_submit(&io->ring);
	return rc < 0 ? rc : 0;
}

/* The synchronous path: the whole operation now. */
static void pio_sync(struct pio_op *op)
{
	if (op->kind == PIO_FSYNC) {
		op->res = fsync(op->fd) < 0 ? -errno : 0;
		return;
	}
	size_t need = op->need ? op->need : op->len;

	while (op->done < need) {
		ssize_t n = op->kind == PIO_READ
				    ? pread(op->fd, op->buf + op->done,
					    op->len - op->done,
					    (off_t)(op->off + op->done))
				    : pwrite(op->fd, op->buf + op->done,
					     op->len - op->done,
					     (off_t)(op->off + op->done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			op->res = -errno;
			return;
		}
		if (n == 0) { /* end of file; a write that writes nothing */
			op->res = op->kind == PIO_WRITE ? -EIO : 0;
			return;
		}
		op->done += (size_t)n;
	}
	op->res = 0;
}

/* Starts op.  Returns 0, or -errno when it could not be submitted (then it
 * is not in flight). */
static int pio_submit(struct pio *io, struct pio_op *op)
{
	op->done = 0;
	op->res = 0;
	op->next = NULL;
	if (io->uring) {
		int rc = pio_prep(io, op);
		if (rc)
			return rc;
	} else {
		pio_sync(op);
		*io->done_tail = op;
		io->done_tail = &op->next;
	}
	io->inflight++;
	return 0;
}

/* Waits for the next operation to complete and returns it in *out, with
 * op->res and op->done set.  A read or write that completes in part is
 * resubmitted for the rest; a read stops at the end of the file.  Returns
 * 0, or -errno when the ring itself fails (nothing is then known of the
 * operations in flight). */
static int pio_wait(struct pio *io, struct pio_op **out)
{
	if (!io->uring) {
		struct pio_op *op = io->done;
		if (!op)
			return -EINVAL;
		io->done = op->next;
		if (!io->done)
			io->done_tail = &io->done;
		io->inflight--;
		*out = op;
		return 0;
	}
	for (;;) {
		struct io_uring_cqe *cqe;
		int rc = io_uring_wait_cqe(&io->ring, &cqe);
		if (rc == -EINTR)
			continue;
		if (rc)
			return rc;
		struct pio_op *op = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&io->ring, cqe);
		if (op->kind == PIO_FSYNC) {
			op->res = res < 0 ? res : 0;
		} else if (res == -EINTR || res == -EAGAIN) {
			if ((rc = pio_prep(io, op)) == 0)
				continue;
			op->res = rc;
		} else if (res < 0) {
			op->res = res;
		} else if (res == 0) {
			op->res = op->kind == PIO_WRITE ? -EIO : 0;
		} else {
			op->done += (size_t)res;
			if (op->done < (op->need ? op->need : op->len)) {
				if ((rc = pio_prep(io, op)) == 0)
					continue;
				op->res = rc;
			}
		}
		io->inflight--;
		*out = op;
		return 0;
	}
}

/* One operation from start to end. */
static int pio_run(struct pio *io, struct pio_op *op)
{
	struct pio_op *got;
	int rc = pio_submit(io, op);

	while (rc == 0) {
		if ((rc = pio_wait(io, &got)) == 0 && got == op)
			return op->res;
	}
	return rc;
}

static void *page_alloc(size_t n)
{
	return aligned_alloc(SNAP_PAGE, (n + SNAP_PAGE - 1) / SNAP_PAGE *
						SNAP_PAGE);
}

/* ------------------------------------------------------------------------
 * Saving
 * ------------------------------------------------------------------------ */

/* A block buffer: filled under a segment lock, sealed and written after. */
struct wbuf {
	struct pio_op op;	/* first: an op's address is its wbuf's */
	struct snap_bw bw;
	bool own;		/* a one-off buffer (header, trailer, a large
				   entry): freed after its write */
	struct wbuf *next;
};

struct saver {
	struct eng *e;
	struct pio io;
	int fd;
	struct wbuf *cur;	/* being filled */
	struct wbuf *full;	/* filled, to seal and write, in file order */
	struct wbuf **full_tail;
	struct wbuf *spare;	/* SNAP_BLOCK_SIZE buffers to reuse */
	unsigned nspare;
	struct snap_totals t;
	int io_err;		/* the first write error */
	uint64_t io_err_off;
	bool broken;		/* the ring failed: buffers may be in use */
};

static struct wbuf *wbuf_new(size_t cap, bool own)
{
	struct wbuf *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	uint8_t *p = page_alloc(cap);
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
	b->op = (struct pio_op){ .kind = PIO_WRITE, .fd = s->fd,
				 .buf = b->bw.buf, .len = len, .off = off };
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
 * block). */
static int save_item(const struct eng_item *it, void *arg)
{
	struct saver *s = arg;
	struct snap_src src = snap_src_of_item(it);
	size_t need = snap_entry_size(it->klen, it->vlen);

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
			struct wbuf *big = wbuf_new(snap_block_size(need), true);
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
	uint64_t want = ss.bytes_used / (SNAP_BLOCK_SIZE - SNAP_BLOCK_HDR_SIZE) + 1;
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
static int save_to(struct saver *s, const char *path, char *err,
		   size_t errlen)
{
	struct eng *e = s->e;
	struct wbuf *hdr = page_buf();
	uint64_t off;
	int rc;

	if (!hdr || !(s->cur = spare_take(s))) {
		if (hdr)
			wbuf_free(hdr);
		msg(err, errlen, "snapshot %s: out of memory", path);
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
	snap_totals_init(&s->t, snap_header_put(hdr->bw.buf, &info));
	if ((rc = write_buf(s, hdr, SNAP_HDR_SIZE, 0)))
		goto io_fail;

	for (uint32_t seg = 0; seg < e->g.nseg; seg++) {
		if ((rc = reserve(s, seg))) {
			msg(err, errlen, "snapshot %s: out of memory", path);
			return rc;
		}
		int tries = 0;
		while ((rc = eng_iter(e, seg, seg + 1, save_item, s)) ==
			       -ETIMEDOUT &&
		       ++tries < LOCK_RETRIES)
			;
		if (rc) {
			msg(err, errlen, "snapshot %s: segment %u: %s", path,
			    seg,
			    rc == -ETIMEDOUT ? "stayed locked by a client"
			    : rc == -ENOMEM  ? "out of memory"
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
	struct wbuf *tr = page_buf();
	if (!tr) {
		msg(err, errlen, "snapshot %s: out of memory", path);
		return -ENOMEM;
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
		msg(err, errlen, "snapshot %s: write at offset %" PRIu64 ": %s",
		    path, off, strerror(-rc));
	} else {
		msg(err, errlen, "snapshot %s: write: %s", path, strerror(-rc));
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
		int rc = pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
		if (rc == 0)
			rc = pthread_create(&t, &a, closer, (void *)(intptr_t)fd);
		pthread_attr_destroy(&a);
		if (rc == 0)
			return;
	}
	close(fd);
}

/* Switches fd to O_DIRECT when its file system takes direct I/O at our
 * alignment (every buffer, offset and length is a multiple of SNAP_PAGE):
 * the blocks then go between our buffers and the device, without a copy
 * through the page cache (and, for a save, without the write-back that
 * fsync would wait for).  Where it does not (tmpfs, an older kernel that
 * cannot say), buffered I/O.  Returns whether fd is now direct. */
static bool direct_io(int fd)
{
	struct statx sx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) < 0 ||
	    !(sx.stx_mask & STATX_DIOALIGN) || !sx.stx_dio_mem_align ||
	    sx.stx_dio_mem_align > SNAP_PAGE || !sx.stx_dio_offset_align ||
	    sx.stx_dio_offset_align > SNAP_PAGE)
		return false;
	int fl = fcntl(fd, F_GETFL);
	return fl >= 0 && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0;
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
	bool made = false;	/* FILE.tmp is ours: removed on any failure */

	memset(st, 0, sizeof(*st));
	msg(err, errlen, "%s", "");
	s.full_tail = &s.full;
	if (!tmp || !dir) {
		free(tmp);
		free(dir);
		msg(err, errlen, "snapshot %s: out of memory", path);
		return -ENOMEM;
	}
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmp", 5);
	if (owner_is_claimed(path) || owner_is_claimed(tmp)) {
		rc = -EINVAL;
		msg(err, errlen, "snapshot %s: that is a file this daemon "
				 "serves (its region or its socket's lock): "
				 "give another path", path);
		goto out;
	}

	/* FILE.tmp is made afresh (O_EXCL after removing a stale one), so
	 * that a symbolic link planted there is never followed. */
	if (unlink(tmp) < 0 && errno != ENOENT) {
		rc = -errno;
		msg(err, errlen, "snapshot %s: cannot replace %s: %s", path,
		    tmp, strerror(errno));
		goto out;
	}
	s.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		    0600);
	if (s.fd < 0) {
		rc = -errno;
		msg(err, errlen, "snapshot %s: cannot create %s: %s", path, tmp,
		    strerror(errno));
		goto out;
	}
	made = true;
	direct_io(s.fd);
	pio_init(&s.io);
	if ((rc = save_to(&s, path, err, errlen))) {
		if (!s.broken)
			reap_all(&s);
		goto out;
	}
	struct pio_op sync = { .kind = PIO_FSYNC, .fd = s.fd };
	if ((rc = pio_run(&s.io, &sync))) {
		msg(err, errlen, "snapshot %s: fsync %s: %s", path, tmp,
		    strerror(-rc));
		goto out;
	}
	rc = close(s.fd) < 0 ? -errno : 0;
	s.fd = -1;
	if (rc) {
		msg(err, errlen, "snapshot %s: close %s: %s", path, tmp,
		    strerror(-rc));
		goto out;
	}
	/* Held open across the rename, the snapshot being replaced is freed
	 * by close_later(), off this thread (see there). */
	old = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (rename(tmp, path) < 0) {
		rc = -errno;
		msg(err, errlen, "snapshot %s: cannot rename %s to it: %s%s",
		    path, tmp, strerror(errno),
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
		msg(err, errlen, "snapshot %s: written, but the fsync of its "
		    "directory %s failed: %s", path, dir, strerror(-rc));
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

/* ------------------------------------------------------------------------
 * Loading: the storer, a thread that stores verified blocks
 *
 * Storing an entry (hash, lock, copy into the ring; in a fresh region the
 * first touch of its pages) costs more than reading and verifying it, so a
 * second thread does it while this one reads and verifies the blocks that
 * follow.  Blocks are handed over in file order through a short queue and
 * stay in their read buffer until stored: each buffer counts the blocks
 * of it not yet stored (rbuf.users), and is not read into again before
 * that count is back at 0.  While this thread would wait for that, it
 * stores queued blocks itself.  Without the thread (pthread_create failed)
 * blocks are stored inline.
 * ------------------------------------------------------------------------ */

#define STORE_QUEUE 64u

struct rbuf;

struct store_job {
	struct snap_block blk;
	struct rbuf *owner;	/* the buffer it lies in */
};

struct storer {
	struct eng *e;
	pthread_t thread;
	bool running;
	pthread_mutex_t mu;
	pthread_cond_t cv;	/* any change of the fields below */
	struct store_job q[STORE_QUEUE];
	unsigned head, n;	/* queued jobs */
	unsigned busy;		/* queued or being stored */
	bool stop;
	struct persist_stats counts; /* what the thread stored */
	struct persist_stats helped; /* what the caller stored meanwhile */
};

struct rbuf {
	struct pio_op op;	/* first: an op's address is its rbuf's */
	uint8_t *mem;		/* READ_CARRY + READ_CHUNK bytes */
	bool pending;		/* a read is in flight */
	size_t want;		/* the bytes of the file the read is for (its
				   length may be rounded up for O_DIRECT) */
	unsigned users;		/* blocks in it not yet stored (atomic) */
};

static void store_block(struct eng *e, struct snap_block *b,
			struct persist_stats *st)
{
	struct snap_entry en;

	while (snap_block_next(b, &en)) {
		uint32_t exp = en.expire_at > UINT32_MAX ? UINT32_MAX
							 : (uint32_t)en.expire_at;
		int rc, tries = 0;
		while ((rc = eng_set_expire_at(e, en.key, en.klen, en.val,
					       en.vlen, exp)) == -ETIMEDOUT &&
		       ++tries < LOCK_RETRIES)
			;
		switch (rc) {
		case 0: st->entries++; break;
		case -ETIME: st->expired++; break;
		case -E2BIG: st->too_big++; break;
		default: st->failed++; break;
		}
	}
	st->blocks++;
}

/* Stores the oldest queued job, counting in *st.  Called and returns with
 * w->mu held (dropped while storing); w->n > 0. */
static void storer_run_one(struct storer *w, struct persist_stats *st)
{
	struct store_job job = w->q[w->head];

	w->head = (w->head + 1) % STORE_QUEUE;
	w->n--;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);

	store_block(w->e, &job.blk, st);

	pthread_mutex_lock(&w->mu);
	if (job.owner)
		__atomic_fetch_sub(&job.owner->users, 1, __ATOMIC_RELEASE);
	w->busy--;
	pthread_cond_broadcast(&w->cv);
}

static void *storer_main(void *arg)
{
	struct storer *w = arg;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->n && !w->stop)
			pthread_cond_wait(&w->cv, &w->mu);
		if (!w->n)
			break;
		storer_run_one(w, &w->counts);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static void storer_start(struct storer *w, struct eng *e)
{
	memset(w, 0, sizeof(*w));
	w->e = e;
	if (pthread_mutex_init(&w->mu, NULL))
		return;
	if (pthread_cond_init(&w->cv, NULL)) {
		pthread_mutex_destroy(&w->mu);
		return;
	}
	w->running = pthread_create(&w->thread, NULL, storer_main, w) == 0;
	if (!w->running) {
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
	}
}

/* Stores blk (lying in owner, or NULL: in memory that stays) now or on
 * the thread. */
static void storer_put(struct storer *w, const struct snap_block *blk,
		       struct rbuf *owner, struct persist_stats *st)
{
	if (!w->running) {
		struct snap_block b = *blk;
		store_block(w->e, &b, st);
		return;
	}
	pthread_mutex_lock(&w->mu);
	while (w->n == STORE_QUEUE)
		storer_run_one(w, &w->helped);
	w->q[(w->head + w->n) % STORE_QUEUE] =
		(struct store_job){ .blk = *blk, .owner = owner };
	w->n++;
	w->busy++;
	if (owner)
		__atomic_fetch_add(&owner->users, 1, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Waits until every block handed over is stored. */
static void storer_idle(struct storer *w)
{
	if (!w->running)
		return;
	pthread_mutex_lock(&w->mu);
	while (w->busy) {
		if (w->n)
			storer_run_one(w, &w->helped);
		else
			pthread_cond_wait(&w->cv, &w->mu);
	}
	pthread_mutex_unlock(&w->mu);
}

/* Waits until no block of b is waiting to be stored. */
static void storer_release(struct storer *w, struct rbuf *b)
{
	if (!w || !w->running ||
	    __atomic_load_n(&b->users, __ATOMIC_ACQUIRE) == 0)
		return;
	pthread_mutex_lock(&w->mu);
	while (__atomic_load_n(&b->users, __ATOMIC_ACQUIRE)) {
		if (w->n)
			storer_run_one(w, &w->helped);
		else
			pthread_cond_wait(&w->cv, &w->mu);
	}
	pthread_mutex_unlock(&w->mu);
}

/* Ends the thread and adds what it stored to *st. */
static void storer_stop(struct storer *w, struct persist_stats *st)
{
	if (!w->running)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	w->running = false;
	const struct persist_stats *from[] = { &w->counts, &w->helped };
	for (size_t i = 0; i < 2; i++) {
		st->entries += from[i]->entries;
		st->expired += from[i]->expired;
		st->too_big += from[i]->too_big;
		st->failed += from[i]->failed;
		st->blocks += from[i]->blocks;
	}
}

/* ------------------------------------------------------------------------
 * Loading: a stream of contiguous units over chunked reads
 *
 * The file is read in READ_CHUNK pieces into READ_BUFS buffers, used in
 * ring order: while one is verified, the reads of the next ones are in
 * flight (on io_uring marked IOSQE_ASYNC: the kernel copies out of the page
 * cache on a worker thread, in parallel with this one).  A buffer left
 * behind is read into again, with the chunk after the last one asked for,
 * as soon as the storer is done with its blocks.  Each buffer keeps
 * READ_CARRY bytes in front of its chunk: a unit cut by the end of a chunk
 * is completed by copying its start there, in front of the next chunk.  A
 * unit too large for that (a block holding one large entry) is read whole
 * into a buffer of its own.
 * ------------------------------------------------------------------------ */

struct rstream {
	struct pio io;
	int fd;
	uint64_t size;		/* of the file */
	bool direct;		/* O_DIRECT: lengths rounded up to SNAP_PAGE */
	struct storer *storer;	/* whose blocks may still be in the buffers */
	struct rbuf b[READ_BUFS];
	unsigned cur;		/* the buffer p points into; the next ones
				   hold (or will) the chunks that follow */
	unsigned rf_head, rf_n;	/* buffers left behind, to read into again,
				   oldest first (ring order) */
	const uint8_t *p;	/* the bytes at file offset pos */
	size_t avail;		/* how many there are at p */
	uint64_t pos;
	uint64_t next_off;	/* where the next chunk read starts */
	uint8_t *big;		/* a unit larger than a chunk */
	size_t big_cap;
	bool in_big;		/* p points into big */
	bool broken;		/* the ring failed: buffers may be in use */
};

static int rs_wait(struct rstream *r, struct rbuf *want)
{
	while (want->pending) {
		struct pio_op *op;
		int rc = pio_wait(&r->io, &op);
		if (rc) {
			r->broken = true;
			return rc;
		}
		((struct rbuf *)op)->pending = false;
	}
	if (want->op.res)
		return want->op.res;
	/* Short only at the end of the file, which was smaller than its
	 * size said: it shrank while it was read. */
	return want->op.done >= want->want ? 0 : -EIO;
}

static size_t rs_len(const struct rstream *r, size_t n)
{
	return r->direct ? (n + SNAP_PAGE - 1) / SNAP_PAGE * SNAP_PAGE : n;
}

/* Starts the read of the next chunk into b (nothing past the end of the
 * file: an empty, complete read). */
static int rs_read_next(struct rstream *r, struct rbuf *b)
{
	uint64_t off = r->next_off;
	uint64_t left = off < r->size ? r->size - off : 0;

	r->next_off += READ_CHUNK;
	b->want = left < READ_CHUNK ? (size_t)left : READ_CHUNK;
	/* Buffered reads from the page cache would be copied inline, at
	 * submit: IOSQE_ASYNC has a kernel worker do it.  Direct reads are
	 * asynchronous by themselves. */
	b->op = (struct pio_op){ .kind = PIO_READ, .fd = r->fd,
				 .buf = b->mem + READ_CARRY,
				 .len = rs_len(r, b->want), .need = b->want,
				 .off = off, .async = !r->direct };
	b->pending = false;
	if (b->op.len == 0)
		return 0;
	int rc = pio_submit(&r->io, &b->op);
	b->pending = rc == 0;
	return rc;
}

/* Reads into the buffers left behind, in order, as far as the storer is
 * done with them; with `block`, waits for the first one. */
static int rs_refill(struct rstream *r, bool block)
{
	while (r->rf_n) {
		struct rbuf *b = &r->b[r->rf_head];
		if (block)
			storer_release(r->storer, b);
		else if (__atomic_load_n(&b->users, __ATOMIC_ACQUIRE))
			return 0;
		block = false;
		r->rf_head = (r->rf_head + 1) % READ_BUFS;
		r->rf_n--;
		int rc = rs_read_next(r, b);
		if (rc)
			return rc;
	}
	return 0;
}

static int rs_drain(struct rstream *r)
{
	for (unsigned i = 0; i < READ_BUFS; i++) {
		int rc = rs_wait(r, &r->b[i]);
		if (r->broken)
			return rc;
	}
	return 0;
}

/* Restarts the reads at file offset off, once the storer is done with
 * every buffer. */
static int rs_seek(struct rstream *r, uint64_t off)
{
	int rc;

	if (r->storer)
		storer_idle(r->storer);
	if ((rc = rs_drain(r)) && r->broken)
		return rc;
	r->cur = 0;
	r->rf_head = r->rf_n = 0;
	r->pos = off;
	r->next_off = off;
	r->in_big = false;
	for (unsigned i = 0; i < READ_BUFS; i++)
		if ((rc = rs_read_next(r, &r->b[i])))
			return rc;
	if ((rc = rs_wait(r, &r->b[0])))
		return rc;
	r->p = r->b[0].mem + READ_CARRY;
	r->avail = r->b[0].want;
	return 0;
}

static int rs_open(struct rstream *r, int fd, uint64_t size, bool direct)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->size = size;
	r->direct = direct && direct_io(fd);
	pio_init(&r->io);
	for (unsigned i = 0; i < READ_BUFS; i++)
		if (!(r->b[i].mem = page_alloc(READ_CARRY + READ_CHUNK)))
			return -ENOMEM;
	return 0;
}

/* After the storer has stopped. */
static void rs_close(struct rstream *r)
{
	if (!r->broken)
		rs_drain(r);
	pio_fini(&r->io);
	if (r->broken)
		return; /* the kernel may still use them: leak, do not free */
	for (unsigned i = 0; i < READ_BUFS; i++)
		free(r->b[i].mem);
	free(r->big);
}

/* Points *out at the n bytes at the current position (n no more than what
 * is left of the file).  Returns 0, or -errno: -EIO when the file ended
 * early (it shrank meanwhile), -ENOMEM, or the read's error. */
static int rs_get(struct rstream *r, size_t n, const uint8_t **out)
{
	int rc;

	if (r->rf_n && (rc = rs_refill(r, false)))
		return rc;
	if (n <= r->avail) {
		*out = r->p;
		return 0;
	}
	if (n > r->size - r->pos)
		return -EIO;
	unsigned nx = (r->cur + 1) % READ_BUFS;
	struct rbuf *next = &r->b[nx];
	if (!r->in_big && r->avail <= READ_CARRY &&
	    n - r->avail <= READ_CHUNK) {
		/* The next chunk, read (or to read: every other buffer is
		 * still the storer's) in the next buffer; the cut unit's
		 * start goes in front of it; this buffer is left behind. */
		if (r->rf_n && r->rf_head == nx &&
		    (rc = rs_refill(r, true)))
			return rc;
		if ((rc = rs_wait(r, next)))
			return rc;
		uint8_t *dst = next->mem + READ_CARRY - r->avail;
		memcpy(dst, r->p, r->avail);
		r->avail += next->want;
		r->p = dst;
		if (r->rf_n++ == 0)
			r->rf_head = r->cur;
		r->cur = nx;
		if ((rc = rs_refill(r, false)))
			return rc;
		if (n > r->avail)
			return -EIO;
		*out = r->p;
		return 0;
	}

	/* A unit larger than a chunk (at a unit's start, so aligned): read it
	 * whole into big.  The storer is done with big (see load_pass). */
	size_t len = rs_len(r, n);
	if (len > r->big_cap) {
		free(r->big);
		r->big_cap = 0;
		if (!(r->big = page_alloc(len)))
			return -ENOMEM;
		r->big_cap = len;
	}
	if ((rc = rs_drain(r)))
		return rc;
	struct pio_op op = { .kind = PIO_READ, .fd = r->fd, .buf = r->big,
			     .len = len, .need = n, .off = r->pos };
	if ((rc = pio_run(&r->io, &op)))
		return rc;
	if (op.done < n)
		return -EIO;
	r->p = r->big;
	r->avail = n;
	r->in_big = true;
	return 0;
}

/* Moves the position n bytes on (n <= what rs_get gave). */
static int rs_advance(struct rstream *r, size_t n)
{
	if (r->in_big)
		return rs_seek(r, r->pos + n);
	r->p += n;
	r->avail -= n;
	r->pos += n;
	return 0;
}

/* ------------------------------------------------------------------------
 * Loading: the passes
 * ------------------------------------------------------------------------ */

struct loader {
	struct eng *e;
	const char *path;
	struct rstream r;
	struct storer w;
	struct persist_stats *st;
	struct snap_scan scan;
};

/* One walk over the file: verifies every unit, and with `store` stores
 * each block's entries once it is verified (on the storer thread: call
 * storer_stop() to wait for them and count them).  Returns 0, or -errno
 * with err set (for a bad file: SNAP_EDAMAGED or SNAP_EVERSION, with the
 * offset). */
static int load_pass(struct loader *L, bool store, char *err, size_t errlen)
{
	struct rstream *r = &L->r;
	struct snap_scan *s = &L->scan;
	struct snap_err se;
	int rc;

	snap_scan_init(s, r->size);
	if ((rc = rs_seek(r, 0)))
		goto io;
	while (s->next) {
		const uint8_t *p;
		size_t size, head = r->size - s->off < SNAP_PAGE
					    ? (size_t)(r->size - s->off)
					    : SNAP_PAGE;
		struct snap_block blk;

		if ((rc = rs_get(r, head, &p)))
			goto io;
		if ((rc = snap_scan_peek(s, p, head, &size, &se)))
			goto bad;
		if ((rc = rs_get(r, size, &p)))
			goto io;
		if ((rc = snap_scan_unit(s, p, size, &blk, &se)) < 0)
			goto bad;
		if (rc == SNAP_U_HEADER)
			L->st->created = s->info.created;
		if (rc == SNAP_U_BLOCK && store) {
			if (r->in_big) { /* big is reused: store it now */
				storer_put(&L->w, &blk, NULL, L->st);
				storer_idle(&L->w);
			} else {
				storer_put(&L->w, &blk, &r->b[r->cur], L->st);
			}
		}
		if ((rc = rs_advance(r, size)))
			goto io;
	}
	return 0;
bad:
	msg(err, errlen, "snapshot %s: %s", L->path, se.msg);
	return se.code;
io:
	msg(err, errlen, "snapshot %s: read at offset %" PRIu64 ": %s",
	    L->path, r->pos,
	    rc == -EIO ? "the file is shorter than it was (changed "
			 "while it was read?)"
		       : strerror(-rc));
	return rc;
}

/* Appends to the message in err. */
__attribute__((format(printf, 3, 4))) static void
msg_add(char *err, size_t errlen, const char *fmt, ...)
{
	size_t n = strnlen(err, errlen);
	va_list ap;

	if (n + 1 >= errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - n, fmt, ap);
	va_end(ap);
}

int persist_load(struct eng *e, const char *path, unsigned flags,
		 struct persist_stats *st, char *err, size_t errlen)
{
	bool partial = flags & PERSIST_PARTIAL;
	bool fresh = flags & PERSIST_FRESH;
	struct loader L = { .e = e, .path = path, .st = st };
	double t0 = clock_mono_s();
	struct stat sb;
	int rc;

	memset(st, 0, sizeof(*st));
	msg(err, errlen, "%s", "");
	/* Opening and closing it would drop this daemon's claim on it. */
	if (owner_is_claimed(path)) {
		msg(err, errlen, "snapshot %s: that is a file this daemon "
				 "serves (its region or its socket's lock): "
				 "give another path", path);
		return -EINVAL;
	}
	/* O_NONBLOCK: a FIFO planted at path must not hang the daemon. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		msg(err, errlen, "snapshot %s: cannot open: %s", path,
		    strerror(errno));
		return rc;
	}
	rc = fstat(fd, &sb) < 0 ? -errno : S_ISREG(sb.st_mode) ? 0 : -EINVAL;
	if (rc) {
		msg(err, errlen, "snapshot %s: %s", path,
		    rc == -EINVAL ? "not a regular file" : strerror(-rc));
		close(fd);
		return rc;
	}
	/* A fresh region reads the file once: past the page cache. */
	if ((rc = rs_open(&L.r, fd, (uint64_t)sb.st_size, fresh || partial))) {
		msg(err, errlen, "snapshot %s: out of memory", path);
		goto out;
	}
	/* All or nothing: a cache that others use is only written once the
	 * whole file is known good.  A fresh one is filled as the blocks are
	 * verified, in one read of the file, and emptied again on damage. */
	if (!partial && !fresh && (rc = load_pass(&L, false, err, errlen))) {
		msg_add(err, errlen, " (nothing loaded)");
		goto out;
	}
	storer_start(&L.w, e);
	L.r.storer = &L.w;
	rc = load_pass(&L, true, err, errlen);
	storer_stop(&L.w, st);
	L.r.storer = NULL;
	if (rc) {
		if (partial) {
			msg_add(err, errlen, " (loaded the %" PRIu64 " entries "
				"of the %" PRIu64 " blocks before it)",
				st->entries, st->blocks);
		} else if (fresh) {
			int crc = eng_clear(e);
			msg_add(err, errlen, crc ? " (%" PRIu64 " entries of "
				"the blocks before it could not be removed: %s)"
				: " (nothing loaded)", st->entries,
				strerror(-crc));
			if (!crc)
				st->entries = st->blocks = 0;
		} else {
			msg_add(err, errlen, " (the file changed between the "
				"check and the load; %" PRIu64 " entries of %"
				PRIu64 " checked blocks were loaded)",
				st->entries, st->blocks);
		}
		goto out;
	}
	st->file_bytes = L.scan.t.file_size;
	st->data_bytes = L.scan.t.data_bytes;
out:
	rs_close(&L.r);
	close(fd);
	st->seconds = clock_mono_s() - t0;
	return rc;
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

static void log_loaded(const char *path, const struct persist_stats *st)
{
	log_info("loaded %" PRIu64 " entries (%" PRIu64 " bytes) from %s "
		 "in %.3f s (%.0f MB/s); skipped %" PRIu64 " expired, %" PRIu64
		 " too large for this cache, %" PRIu64 " failed",
		 st->entries, st->data_bytes, path, st->seconds, mb_s(st),
		 st->expired, st->too_big, st->failed);
}

/* The --snapshot file, when it failed to load and is still there (a LOAD
 * request of it failed, or it could not be moved aside at start): the
 * stop moves it aside before it saves, or does not save.  Set by the job
 * thread or at start, read at the stop, after the last job (job.c). */
static struct {
	bool set;
	dev_t dev;
	ino_t ino;
	int rc;		/* why it failed */
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
			  path, to ? " to " : "", to ? to : "",
			  strerror(-mrc), d->cfg.socket_path, path);
		free(to);
		return mrc;
	}
	if (rc == -EBADMSG)
		log_warn("moved the damaged snapshot %s aside to %s (the stop "
			 "saves to %s again); to recover the entries of its "
			 "blocks before the damage: cachectl --socket %s load "
			 "--partial %s", path, to, path, d->cfg.socket_path,
			 to);
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
	return rc == -ENOENT || rc == -EINVAL || rc == -ENOTDIR ||
	       rc == -ELOOP;
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
			      PERSIST_FRESH | (d->cfg.snapshot_partial
						       ? PERSIST_PARTIAL
						       : 0),
			      &st, err, sizeof(err));
	if (rc == 0) {
		log_loaded(path, &st);
		return;
	}
	log_error("%s", err);
	if (st.entries)
		log_warn("--snapshot-partial: started with the %" PRIu64
			 " entries of the valid blocks", st.entries);
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

int persist_request(struct daemon *d, bool load, unsigned flags,
		    const char *path, uint64_t *entries, char *err,
		    size_t errlen)
{
	struct persist_stats st;
	struct stat sb;
	int rc = load ? persist_load(&d->eng, path, flags, &st, err, errlen)
		      : persist_save(&d->eng, path, &st, err, errlen);

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
		log_loaded(path, &st);
	else
		log_saved(path, &st);
	*entries = st.entries;
	return 0;
}
