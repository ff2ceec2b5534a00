/*
 * owner.c - region ownership by a POSIX record lock (see owner.h).
 */
#include "owner.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* The files this process claimed: a region and a socket's lock file. */
#define OWNER_MAX_CLAIMS 4
static struct {
	dev_t dev;
	ino_t ino;
} claims[OWNER_MAX_CLAIMS];
static int nclaims;

static void remember(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return;
	for (int i = 0; i < nclaims; i++)
		if (claims[i].dev == st.st_dev && claims[i].ino == st.st_ino)
			return;
	if (nclaims < OWNER_MAX_CLAIMS)
		claims[nclaims++] = (typeof(claims[0])){ st.st_dev, st.st_ino };
}

bool owner_is_claimed(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return false;
	for (int i = 0; i < nclaims; i++)
		if (claims[i].dev == st.st_dev && claims[i].ino == st.st_ino)
			return true;
	return false;
}

/* The whole file: l_len 0 reaches past any size the region has. */
static struct flock whole(short type)
{
	return (struct flock){
		.l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0
	};
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

	if (fcntl(fd, F_SETLK, &fl) == 0) {
		remember(fd);
		return 0;
	}
	if (errno != EAGAIN && errno != EACCES)
		return -errno;
	/* Held by another process; who, if it still does. */
	if (holder) {
		*holder = 0;
		(void)owner_query(fd, holder);
	}
	return -EBUSY;
}
