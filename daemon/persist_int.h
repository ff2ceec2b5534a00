/*
 * persist_int.h - what the parts of persist (persist.h) share, and no one
 * else uses: the I/O layer (persist_io.c), the error-message helper, and
 * the retry count of segment locks.  The parts:
 *
 *   persist_io.c    pio_*: reads, writes and fsyncs, io_uring or pread/pwrite
 *   persist_save.c  persist_save(): the walk of the cache into blocks
 *   persist_load.c  persist_load(): the read stream, the storer thread,
 *                   the verifying passes
 *   persist.c       the daemon's hooks: start, exit, SAVE/LOAD requests,
 *                   moving a --snapshot file that failed to load aside
 *
 * Threads: the caller's does everything but storing loaded entries (a
 * storer thread, for the length of a load) and the last close of a
 * replaced snapshot (a detached thread, see close_later() in
 * persist_save.c).
 */
#ifndef SHMC_PERSIST_INT_H
#define SHMC_PERSIST_INT_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "persist.h"

/* A segment lock or a store that times out is tried again, this many
 * times (with the daemon's 50 ms lock timeout: 5 s). */
#define LOCK_RETRIES 100

/* Writes a message into err (errlen bytes, 0: none wanted), as snprintf. */
__attribute__((format(printf, 3, 4))) void persist_msg(char *err, size_t errlen,
						       const char *fmt, ...);

/* ------------------------------------------------------------------------
 * pio: reads, writes and fsyncs through io_uring, or synchronously
 * (persist_io.c).  One struct pio per save or load, used by one thread.
 * ------------------------------------------------------------------------ */

enum pio_kind { PIO_READ, PIO_WRITE, PIO_FSYNC };

/* One operation, owned by the caller until pio_wait() hands it back.  The
 * sqe's user_data is the op's address. */
struct pio_op {
	enum pio_kind kind;
	int fd;
	uint8_t *buf;
	size_t len;	     /* bytes to read or write */
	size_t need;	     /* read: complete once this many are read
				   (the rest of len may lie past the end of
				   the file); 0: len */
	uint64_t off;	     /* file offset */
	size_t done;	     /* bytes read or written so far */
	bool async;	     /* io_uring: IOSQE_ASYNC (a read the kernel
				   would otherwise copy inline, at submit) */
	int res;	     /* when complete: 0 or -errno */
	struct pio_op *next; /* synchronous mode: the completed list */
};

struct pio {
	struct io_uring ring;
	bool uring;
	unsigned inflight;		  /* submitted, not yet handed back */
	struct pio_op *done, **done_tail; /* synchronous mode */
};

/* Sets up the ring; without io_uring, every operation is done at once by
 * pio_submit() (logged at debug level).  Cannot fail. */
void pio_init(struct pio *io);
/* Tears the ring down, if there is one; a second call does nothing. */
void pio_fini(struct pio *io);
/* Starts op.  Returns 0, or -errno when it could not be submitted (then it
 * is not in flight). */
int pio_submit(struct pio *io, struct pio_op *op);
/* Waits for the next operation to complete and returns it in *out, with
 * op->res and op->done set.  A read or write that completes in part is
 * resubmitted for the rest; a read stops at the end of the file.  Returns
 * 0, or -errno when the ring itself fails (nothing is then known of the
 * operations in flight). */
int pio_wait(struct pio *io, struct pio_op **out);
/* One operation from start to end: pio_submit() then pio_wait() until op
 * comes back.  Returns op->res, or the error of the submit or the wait.
 * Only while nothing else is in flight. */
int pio_run(struct pio *io, struct pio_op *op);
/* n bytes rounded up to whole SNAP_PAGEs, SNAP_PAGE-aligned (free()), or
 * NULL. */
void *pio_page_alloc(size_t n);
/* Switches fd to O_DIRECT when its file system takes direct I/O at our
 * alignment (every buffer, offset and length is a multiple of SNAP_PAGE):
 * the blocks then go between our buffers and the device, without a copy
 * through the page cache (and, for a save, without the write-back that
 * fsync would wait for).  Where it does not (tmpfs, an older kernel that
 * cannot say), buffered I/O.  Returns whether fd is now direct. */
bool pio_direct(int fd);

#endif
