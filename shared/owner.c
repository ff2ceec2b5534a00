/*
 * owner.c - region ownership by a POSIX record lock (see owner.h).
 */
#include "owner.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* The whole file: l_len 0 reaches past any size the region has. */
static struct flock whole(short type)
{
	return (struct flock){ .l_type = type, .l_whence = SEEK_SET,
			       .l_start = 0, .l_len = 0 };
}

int owner_query(int fd, pid_t *holder)
{
	struct flock fl = whole(F_WRLCK);

	if (fcntl(fd, F_GETLK, &fl) < 0)
		return -errno;
	if (fl.l_type == F_UNLCK)
		return 0;
	if (holder)
		*holder = fl.l_pid > 0 ? fl.l_pid : 0;
	return 1;
}

int owner_claim(int fd, pid_t *holder)
{
	struct flock fl = whole(F_WRLCK);

	if (fcntl(fd, F_SETLK, &fl) == 0)
		return 0;
	if (errno != EAGAIN && errno != EACCES)
		return -errno;
	/* Held by another process; who, if it still does. */
	if (holder) {
		*holder = 0;
		(void)owner_query(fd, holder);
	}
	return -EBUSY;
}
