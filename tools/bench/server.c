/*
 * server.c - starting and stopping the server processes the bench
 * measures (shmcached, memcached, redis-server) and their temporary
 * folders.  A server runs in its own process group, so a Ctrl-C at the
 * terminal reaches the bench (which then stops it cleanly) and not the
 * server, and it gets SIGTERM from the kernel if the bench itself dies.
 */
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int srv_fail(char *why, size_t n, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, n, fmt, ap);
	va_end(ap);
	return rc;
}

bool srv_which(const char *name, char *out, size_t cap)
{
	const char *path = getenv("PATH");
	char *copy, *dir, *save = NULL;
	bool found = false;

	if (strchr(name, '/')) {
		snprintf(out, cap, "%s", name);
		return access(out, X_OK) == 0;
	}
	if (!path || !*path)
		return false;
	copy = strdup(path);
	if (!copy)
		return false;
	for (dir = strtok_r(copy, ":", &save); dir && !found;
	     dir = strtok_r(NULL, ":", &save)) {
		struct stat st;

		if ((size_t)snprintf(out, cap, "%s/%s", *dir ? dir : ".",
				     name) >= cap)
			continue;
		found = stat(out, &st) == 0 && S_ISREG(st.st_mode) &&
			access(out, X_OK) == 0;
	}
	free(copy);
	return found;
}

int srv_path(struct be_server *s, char *out, size_t cap, const char *name)
{
	int n = snprintf(out, cap, "%s/%s", s->dir, name);

	if (n < 0 || (size_t)n >= cap)
		return srv_fail(s->why, sizeof(s->why), -ENAMETOOLONG,
				"path %s/%s too long", s->dir, name);
	return 0;
}

int srv_mkdir(struct be_server *s, const char *tag)
{
	if ((size_t)snprintf(s->dir, sizeof(s->dir), "%s/shmc-bench-%s-XXXXXX",
			     s->cfg->tmpdir, tag) >= sizeof(s->dir))
		return srv_fail(s->why, sizeof(s->why), -ENAMETOOLONG,
				"temporary folder name too long");
	if (!mkdtemp(s->dir)) {
		int rc = -errno;

		srv_fail(s->why, sizeof(s->why), rc, "mkdtemp %s: %s", s->dir,
			 strerror(errno));
		s->dir[0] = '\0';
		return rc;
	}
	return 0;
}

void srv_rmdir(struct be_server *s)
{
	DIR *d;
	struct dirent *e;

	if (!s->dir[0])
		return;
	d = opendir(s->dir);
	if (d) {
		while ((e = readdir(d))) {
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlinkat(dirfd(d), e->d_name, 0);
		}
		closedir(d);
	}
	rmdir(s->dir);
	s->dir[0] = '\0';
}

int srv_spawn(struct be_server *s, char *const argv[], const char *log)
{
	pid_t parent = getpid(), pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		int rc = -errno;

		return srv_fail(s->why, sizeof(s->why), rc, "fork: %s",
				strerror(-rc));
	}
	if (pid == 0) {
		int fd;

		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0) {
			dup2(fd, 0);
			close(fd);
		}
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execv(argv[0], argv);
		dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	s->pid = pid;
	return 0;
}

int srv_free_port(struct be_server *s, unsigned *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc = 0;

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(fd, (struct sockaddr *)&a, &len))
		rc = srv_fail(s->why, sizeof(s->why), -errno,
			      "a free TCP port on 127.0.0.1: %s",
			      strerror(errno));
	else
		*port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return rc;
}

static bool can_connect_tcp(unsigned port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc;

	if (fd < 0)
		return false;
	rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
	close(fd);
	return rc == 0;
}

static bool can_connect(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd, rc;

	if (strlen(path) >= sizeof(a.sun_path))
		return false;
	strcpy(a.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
	close(fd);
	return rc == 0;
}

void srv_tail(const char *path, char *out, size_t cap)
{
	char line[512];
	FILE *f = fopen(path, "r");

	if (cap)
		out[0] = '\0';
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0])
			snprintf(out, cap, "%s", line);
	}
	fclose(f);
}

int srv_wait(struct be_server *s, double timeout_s, const char *log)
{
	struct timespec nap = { 0, 10 * 1000 * 1000 };
	char last[400];
	int status;

	for (double waited = 0; waited < timeout_s; waited += 0.01) {
		if (s->port ? can_connect_tcp(s->port) : can_connect(s->sock))
			return 0;
		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			s->pid = 0;
			srv_tail(log, last, sizeof(last));
			return srv_fail(s->why, sizeof(s->why), -ECHILD,
					"exited at start (status %d): %s",
					WIFEXITED(status)
						? WEXITSTATUS(status)
						: 128 + WTERMSIG(status),
					last[0] ? last : "no message");
		}
		nanosleep(&nap, NULL);
	}
	srv_tail(log, last, sizeof(last));
	if (s->port)
		return srv_fail(s->why, sizeof(s->why), -ETIMEDOUT,
				"no answer on 127.0.0.1:%u after %.0f s: %s",
				s->port, timeout_s,
				last[0] ? last : "no message");
	return srv_fail(s->why, sizeof(s->why), -ETIMEDOUT,
			"no answer on %s after %.0f s: %s", s->sock, timeout_s,
			last[0] ? last : "no message");
}

unsigned srv_threads(const struct bench_cfg *cfg)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned clients = cfg->procs * cfg->threads;

	if (cfg->server_threads)
		return cfg->server_threads;
	if (ncpu < 1)
		ncpu = 1;
	return clients < (unsigned)ncpu ? clients : (unsigned)ncpu;
}

void srv_kill(struct be_server *s)
{
	struct timespec nap = { 0, 10 * 1000 * 1000 };

	if (s->pid <= 0)
		return;
	kill(s->pid, SIGTERM);
	for (int i = 0; i < 500; i++) {
		pid_t r = waitpid(s->pid, NULL, WNOHANG);

		if (r == s->pid || (r < 0 && errno != EINTR)) {
			s->pid = 0;
			return;
		}
		nanosleep(&nap, NULL);
	}
	kill(s->pid, SIGKILL);
	while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
		;
	s->pid = 0;
}
