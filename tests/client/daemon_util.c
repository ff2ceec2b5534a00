/*
 * daemon_util.c - starts and stops the real shmcached for the client tests
 * (see daemon_util.h).  fork + exec of $SHMC_DAEMON in the foreground, a
 * bounded wait until the library can talk to it, SIGTERM + waitpid to stop.
 */
#include "daemon_util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "shmc.h"

#define TDAEMON_WAIT_MS 30000 /* only a hang takes that long */

static unsigned tdaemon_seq;

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

const char *tdaemon_binary(void)
{
	const char *bin = getenv("SHMC_DAEMON");

	if (!bin || !*bin) {
		fprintf(stderr, "SHMC_DAEMON is not set: skipping\n");
		exit(77);
	}
	return bin;
}

void tdaemon_print_log(const struct tdaemon *d)
{
	char buf[4096];
	size_t n;
	FILE *f = fopen(d->log, "r");

	if (!f)
		return;
	fprintf(stderr, "---- %s ----\n", d->log);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, stderr);
	fprintf(stderr, "---- end of log ----\n");
	fclose(f);
}

/* Reaps the daemon if it has exited; returns its status as tdaemon_stop()
 * does, or -EAGAIN while it runs. */
static int tdaemon_reap(struct tdaemon *d, int options)
{
	int st;
	pid_t r;

	do
		r = waitpid(d->pid, &st, options);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return -EAGAIN;
	d->pid = 0;
	if (r < 0)
		return -errno;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + WTERMSIG(st);
}

int tdaemon_start(struct tdaemon *d)
{
	const char *argv[16 + TDAEMON_MAX_EXTRA];
	const char *bin = tdaemon_binary();
	uint64_t end;
	size_t n = 0;
	pid_t pid;

	if (d->pid > 0)
		return -EALREADY;
	argv[n++] = bin;
	argv[n++] = "--foreground";
	argv[n++] = "--socket";
	argv[n++] = d->sock;
	argv[n++] = "--name";
	argv[n++] = d->name;
	argv[n++] = "--memory";
	argv[n++] = "8M";
	argv[n++] = "--segments";
	argv[n++] = "16";
	argv[n++] = "--log-level";
	argv[n++] = "debug";
	argv[n++] = "--log-file";
	argv[n++] = d->log;
	for (size_t i = 0; d->extra[i]; i++)
		argv[n++] = d->extra[i];
	argv[n] = NULL;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* Only async-signal-safe calls until exec. */
		if (d->uid && (setgroups(0, NULL) < 0 || setgid(d->uid) < 0 ||
			       setuid(d->uid) < 0))
			_exit(126);
		int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		int nul = open("/dev/null", O_RDONLY);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		if (nul >= 0)
			dup2(nul, 0);
		/* A test that crashes must not leave its daemon behind. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	d->pid = pid;

	end = clock_mono_ms() + TDAEMON_WAIT_MS;
	while (clock_mono_ms() < end) {
		shmc *c;
		int rc = tdaemon_reap(d, WNOHANG);

		if (rc != -EAGAIN) {
			fprintf(stderr, "daemon %s exited (%d) at start\n", bin,
				rc);
			tdaemon_print_log(d);
			return -ECHILD;
		}
		if (shmc_open(&c, d->sock) == 0) {
			rc = shmc_ping(c);
			shmc_close(c);
			if (rc == 0)
				return 0;
		}
		sleep_ms(10);
	}
	fprintf(stderr, "daemon on %s not ready after %d ms\n", d->sock,
		TDAEMON_WAIT_MS);
	tdaemon_print_log(d);
	tdaemon_stop(d);
	return -ETIMEDOUT;
}

int tdaemon_stop(struct tdaemon *d)
{
	uint64_t end;
	int rc;

	if (d->pid <= 0)
		return -ESRCH;
	kill(d->pid, SIGTERM);
	end = clock_mono_ms() + TDAEMON_WAIT_MS;
	while ((rc = tdaemon_reap(d, WNOHANG)) == -EAGAIN) {
		if (clock_mono_ms() >= end) {
			fprintf(stderr, "daemon %d ignores SIGTERM: killing\n",
				(int)d->pid);
			kill(d->pid, SIGKILL);
			return tdaemon_reap(d, 0);
		}
		sleep_ms(5);
	}
	return rc;
}

int tdaemon_create(struct tdaemon *d, const char *const *extra)
{
	return tdaemon_create_as(d, extra, 0);
}

int tdaemon_create_as(struct tdaemon *d, const char *const *extra, uid_t uid)
{
	size_t n = 0;
	int rc;

	memset(d, 0, sizeof(*d));
	d->uid = uid;
	if (extra)
		for (; extra[n]; n++) {
			if (n == TDAEMON_MAX_EXTRA)
				return -E2BIG;
			d->extra[n] = extra[n];
		}
	snprintf(d->dir, sizeof(d->dir), "/tmp/shmc-t-XXXXXX");
	if (!mkdtemp(d->dir)) {
		rc = -errno;
		d->dir[0] = '\0';
		return rc;
	}
	if (uid && chown(d->dir, uid, uid) < 0) {
		rc = -errno;
		rmdir(d->dir);
		d->dir[0] = '\0';
		return rc;
	}
	/* Others may pass through (not list): with --allow-user the daemon
	 * refuses a socket folder the allowed users cannot enter. */
	if (chmod(d->dir, 0711) < 0) {
		rc = -errno;
		tdaemon_destroy(d);
		return rc;
	}
	snprintf(d->sock, sizeof(d->sock), "%s/s.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/daemon.log", d->dir);
	snprintf(d->name, sizeof(d->name), "/shmc-t-%d-%u", (int)getpid(),
		 tdaemon_seq++);
	shm_unlink(d->name); /* a leftover of a crashed run with our pid */
	rc = tdaemon_start(d);
	if (rc != 0)
		tdaemon_destroy(d);
	return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void tdaemon_destroy(struct tdaemon *d)
{
	if (d->pid > 0)
		tdaemon_stop(d);
	if (d->name[0])
		shm_unlink(d->name);
	if (d->dir[0])
		nftw(d->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	d->name[0] = '\0';
	d->dir[0] = '\0';
}
