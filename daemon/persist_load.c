/*
 * persist_load.c - persist_load() (see persist.h): a snapshot read back
 * and verified unit by unit (a read stream with a few reads ahead), and
 * the entries of each verified block stored into the cache by a storer
 * thread while the next blocks are read.
 *
 * What it is not: the I/O layer (persist_io.c), the format (snapshot.c).
 */
#include "persist_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "engine.h"
#include "owner.h"
#include "snapshot.h"

#define READ_CHUNK (UINT32_C(8) << 20) /* bytes per read */
#define READ_BUFS 4u		       /* chunks being read or used at once */
#define READ_CARRY SNAP_BLOCK_SIZE     /* room for a unit cut by a chunk end */

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
	struct rbuf *owner; /* the buffer it lies in */
};

struct storer {
	struct eng *e;
	pthread_t thread;
	bool running;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* any change of the fields below */
	struct store_job q[STORE_QUEUE];
	unsigned head, n; /* queued jobs */
	unsigned busy;	  /* queued or being stored */
	bool stop;
	struct persist_stats counts; /* what the thread stored */
	struct persist_stats helped; /* what the caller stored meanwhile */
};

struct rbuf {
	struct pio_op op; /* first: an op's address is its rbuf's */
	uint8_t *mem;	  /* READ_CARRY + READ_CHUNK bytes */
	bool pending;	  /* a read is in flight */
	size_t want;	  /* the bytes of the file the read is for (its
				   length may be rounded up for O_DIRECT) */
	unsigned users;	  /* blocks in it not yet stored (atomic) */
};

static void store_block(struct eng *e, struct snap_block *b,
			struct persist_stats *st)
{
	struct snap_entry en;

	while (snap_block_next(b, &en)) {
		uint32_t exp = en.expire_at > UINT32_MAX
				       ? UINT32_MAX
				       : (uint32_t)en.expire_at;
		struct eng_wopts o = { .flags = en.flags, .expire_at = exp };
		int rc, tries = 0;
		while ((rc = eng_store(e, en.key, en.klen, en.val, en.vlen, &o,
				       NULL)) == -ETIMEDOUT &&
		       ++tries < LOCK_RETRIES)
			;
		switch (rc) {
		case 0:
			st->entries++;
			break;
		case -ETIME:
			st->expired++;
			break;
		case -E2BIG:
			st->too_big++;
			break;
		case -ESTALE: /* eng_ns_block(): it would be flushed anyway */
			st->blocked++;
			break;
		default:
			st->failed++;
			break;
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
		st->blocked += from[i]->blocked;
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
	uint64_t size;	       /* of the file */
	bool direct;	       /* O_DIRECT: lengths rounded up to SNAP_PAGE */
	struct storer *storer; /* whose blocks may still be in the buffers */
	struct rbuf b[READ_BUFS];
	unsigned cur;		/* the buffer p points into; the next ones
				   hold (or will) the chunks that follow */
	unsigned rf_head, rf_n; /* buffers left behind, to read into again,
				   oldest first (ring order) */
	const uint8_t *p;	/* the bytes at file offset pos */
	size_t avail;		/* how many there are at p */
	uint64_t pos;
	uint64_t next_off; /* where the next chunk read starts */
	uint8_t *big;	   /* a unit larger than a chunk */
	size_t big_cap;
	bool in_big; /* p points into big */
	bool broken; /* the ring failed: buffers may be in use */
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
	b->op = (struct pio_op){ .kind = PIO_READ,
				 .fd = r->fd,
				 .buf = b->mem + READ_CARRY,
				 .len = rs_len(r, b->want),
				 .need = b->want,
				 .off = off,
				 .async = !r->direct };
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
	r->direct = direct && pio_direct(fd);
	pio_init(&r->io);
	for (unsigned i = 0; i < READ_BUFS; i++)
		if (!(r->b[i].mem = pio_page_alloc(READ_CARRY + READ_CHUNK)))
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
		if (r->rf_n && r->rf_head == nx && (rc = rs_refill(r, true)))
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
		if (!(r->big = pio_page_alloc(len)))
			return -ENOMEM;
		r->big_cap = len;
	}
	if ((rc = rs_drain(r)))
		return rc;
	struct pio_op op = { .kind = PIO_READ,
			     .fd = r->fd,
			     .buf = r->big,
			     .len = len,
			     .need = n,
			     .off = r->pos };
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
		/* Before the first entry is stored: no version the saved
		 * cache issued is issued again. */
		if (rc == SNAP_U_HEADER && store && s->info.version_max &&
		    (rc = eng_version_floor(L->e, s->info.version_max)))
			goto floor;
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
	persist_msg(err, errlen, "snapshot %s: %s", L->path, se.msg);
	return se.code;
floor:
	persist_msg(err, errlen,
		    "snapshot %s: cannot raise the cache's item versions "
		    "above the saved ones: %s",
		    L->path, strerror(-rc));
	return rc;
io:
	persist_msg(err, errlen, "snapshot %s: read at offset %" PRIu64 ": %s",
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
	persist_msg(err, errlen, "%s", "");
	/* Opening and closing it would drop this daemon's claim on it. */
	if (owner_is_claimed(path)) {
		persist_msg(err, errlen,
			    "snapshot %s: that is a file this "
			    "daemon serves (its region or its socket's "
			    "lock): give another path",
			    path);
		return -EINVAL;
	}
	/* O_NONBLOCK: a FIFO planted at path must not hang the daemon. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		persist_msg(err, errlen, "snapshot %s: cannot open: %s", path,
			    strerror(errno));
		return rc;
	}
	rc = fstat(fd, &sb) < 0 ? -errno : S_ISREG(sb.st_mode) ? 0 : -EINVAL;
	if (rc) {
		persist_msg(err, errlen, "snapshot %s: %s", path,
			    rc == -EINVAL ? "not a regular file"
					  : strerror(-rc));
		close(fd);
		return rc;
	}
	/* A fresh region reads the file once: past the page cache. */
	if ((rc = rs_open(&L.r, fd, (uint64_t)sb.st_size, fresh || partial))) {
		persist_msg(err, errlen, "snapshot %s: out of memory", path);
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
			msg_add(err, errlen,
				" (loaded the %" PRIu64 " entries "
				"of the %" PRIu64 " blocks before it)",
				st->entries, st->blocks);
		} else if (fresh) {
			int crc = eng_clear(e);
			msg_add(err, errlen,
				crc ? " (%" PRIu64 " entries of "
				      "the blocks before it could not be removed: %s)"
				    : " (nothing loaded)",
				st->entries, strerror(-crc));
			if (!crc)
				st->entries = st->blocks = 0;
		} else {
			msg_add(err, errlen,
				" (the file changed between the "
				"check and the load; %" PRIu64
				" entries of %" PRIu64
				" checked blocks were loaded)",
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
