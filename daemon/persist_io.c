/*
 * persist_io.c - the file I/O of snapshots (pio_*, see persist_int.h):
 * reads, writes and fsyncs through a private io_uring, or with
 * pread/pwrite/fsync one at a time where io_uring cannot be set up
 * (disabled by sysctl or seccomp, as for the event loop's epoll fallback);
 * page-aligned buffers, and O_DIRECT where the file system takes it.
 *
 * What it is not: what is read or written (persist_save.c,
 * persist_load.c), the format (snapshot.c).
 */
#include "persist_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "snapshot.h"

#define PIO_DEPTH 8u /* submission queue entries */

/* ------------------------------------------------------------------------
 * pio: reads, writes and fsyncs through io_uring, or synchronously
 * ------------------------------------------------------------------------ */


void pio_init(struct pio *io)
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

void pio_fini(struct pio *io)
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

int pio_submit(struct pio *io, struct pio_op *op)
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

int pio_wait(struct pio *io, struct pio_op **out)
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

int pio_run(struct pio *io, struct pio_op *op)
{
	struct pio_op *got;
	int rc = pio_submit(io, op);

	while (rc == 0) {
		if ((rc = pio_wait(io, &got)) == 0 && got == op)
			return op->res;
	}
	return rc;
}

void *pio_page_alloc(size_t n)
{
	return aligned_alloc(SNAP_PAGE,
			     (n + SNAP_PAGE - 1) / SNAP_PAGE * SNAP_PAGE);
}

bool pio_direct(int fd)
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
