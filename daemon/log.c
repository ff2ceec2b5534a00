/*
 * log.c - leveled logging (see log.h).  Each line is formatted in full and
 * written with one write(2), so lines never interleave.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_fd = STDERR_FILENO;
static int log_level = LOG_INFO;
static char log_path[4096];

static const char *const level_names[] = { "error", "warn", "info", "debug" };

int log_open(const char *path, int level)
{
	log_level = level;
	if (!path || !*path) {
		log_path[0] = '\0';
		log_fd = STDERR_FILENO;
		return 0;
	}
	snprintf(log_path, sizeof(log_path), "%s", path);
	return log_reopen();
}

int log_reopen(void)
{
	if (!log_path[0])
		return 0;
	int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
		      0640);
	if (fd < 0)
		return -errno;
	if (log_fd == STDERR_FILENO) {
		__atomic_store_n(&log_fd, fd, __ATOMIC_RELEASE);
		return 0;
	}
	/* A SAVE or LOAD thread may be writing a line: dup3() swaps the file
	 * under the same number at once, so its write goes to the old file
	 * or the new one, never to a closed or reused descriptor. */
	int rc = dup3(fd, log_fd, O_CLOEXEC) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

void log_msg(int level, const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	if (level > log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(
		line, sizeof(line),
		"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ shmcached[%d] %s: ",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L, (int)getpid(),
		level_names[level]);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	ssize_t w = write(__atomic_load_n(&log_fd, __ATOMIC_ACQUIRE), line,
			  (size_t)n);
	(void)w; /* nowhere to report a failing log */
}
