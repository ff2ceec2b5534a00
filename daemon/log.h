/*
 * log.h - the daemon's log: one line per event, with a level and a time
 * stamp, to stderr or to a file that SIGHUP reopens (for logrotate).
 * Never one line per data operation.
 */
#ifndef SHMC_LOG_H
#define SHMC_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Logs to path ("" or NULL: stderr).  Returns 0 or -errno. */
int log_open(const char *path, int level);

/* Reopens the file given to log_open(); keeps the old one on failure. */
int log_reopen(void);

void log_msg(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
