/*
 * owner.h - who owns a region: the daemon holds a POSIX record lock
 * (fcntl F_SETLK, F_WRLCK, the whole file) on the region's file for as long
 * as it serves it.  The kernel drops the lock when the process dies, however
 * it dies, so the lock, not a pid written in the region, says whether a
 * daemon owns the region now; and F_GETLK names the owner's pid.
 *
 * A POSIX lock belongs to the process, not to the file descriptor: passing
 * the region's fd to clients (SCM_RIGHTS) does not pass the lock, and a
 * client that keeps such an fd can ask whether the daemon still holds it.
 * The flip side, as fcntl(2) says: the owner loses the lock when it closes
 * ANY descriptor of the region's file, so the daemon opens it once.
 *
 * Not for locking inside the region: that is lock.h's futex word.
 */
#ifndef SHMC_OWNER_H
#define SHMC_OWNER_H

#include <stdbool.h>
#include <sys/types.h>

/* Takes ownership of the region open at fd (which must be open for
 * writing).  0: this process owns it now (or already did).  -EBUSY: another
 * process owns it; *holder (if not NULL) gets its pid, 0 when the owner is
 * in a pid namespace this process cannot see.  Other -errno: fcntl failed
 * (-EBADF, -ENOLCK).  Never waits. */
int owner_claim(int fd, pid_t *holder);

/* Whether path names a file this process has claimed with owner_claim()
 * (following symbolic links, as open() does).  Opening and closing such a
 * file would drop the claim, so code that opens paths it is given (a
 * snapshot's) asks first.  Claims are made before other threads ask. */
bool owner_is_claimed(const char *path);

/* Whether a process other than the caller owns the region open at fd.
 * 1: yes, *holder (if not NULL) gets its pid (0 when not visible here);
 * 0: nobody else does; -errno: fcntl failed.  The caller's own lock is not
 * seen (POSIX locks never conflict with their own process). */
int owner_query(int fd, pid_t *holder);

#endif
