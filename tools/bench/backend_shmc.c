/*
 * backend_shmc.c - the `shmc` backend: libshmc through its public API
 * (<shmc.h>) only.  For each run the bench starts its own shmcached on a
 * temporary socket and region name with --memory equal to the workload's
 * cache size and --avg-item equal to its mean key + value (bench
 * --avg-item; extra daemon options: --daemon-arg, which come last and so
 * win), or uses the daemon at --socket.  One handle per worker process
 * (a handle is thread-safe, and after fork() a child must open its own).
 * be_shmc_spawn() starts the daemon for the shmc-mc backend too.
 */
#include "bench.h"
#include "shmc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int be_shmc_spawn(struct be_server *s, const char *const *extra,
		  unsigned nextra)
{
	const struct bench_cfg *cfg = s->cfg;
	static unsigned runs;
	char *argv[48], mem[32], avg[16], log[PATH_MAX + 16];
	unsigned n = 0;
	int rc;

	if (!cfg->daemon || access(cfg->daemon, X_OK))
		return srv_fail(s->why, sizeof(s->why), -ENOENT,
				"no shmcached binary at %s (--daemon PATH or "
				"$SHMC_DAEMON)",
				cfg->daemon ? cfg->daemon : "(none found)");
	if (!s->dir[0] && (rc = srv_mkdir(s, "shmc")))
		return rc;
	if ((rc = srv_path(s, s->sock, sizeof(s->sock), "shmcached.sock")))
		return rc;
	snprintf(s->name, sizeof(s->name), "/shmc-bench-%d-%u", (int)getpid(),
		 runs++);
	snprintf(mem, sizeof(mem), "%lluM",
		 (unsigned long long)(cfg->cache >> 20));
	if ((rc = srv_path(s, log, sizeof(log), "shmcached.log")))
		return rc;

	argv[n++] = (char *)cfg->daemon;
	argv[n++] = "--foreground";
	argv[n++] = "--socket";
	argv[n++] = s->sock;
	argv[n++] = "--name";
	argv[n++] = s->name;
	argv[n++] = "--memory";
	argv[n++] = mem;
	argv[n++] = "--reset";
	argv[n++] = "--unlink-on-exit";
	argv[n++] = "--log-level";
	argv[n++] = "warn";
	argv[n++] = "--log-file";
	argv[n++] = log;
	if (cfg->avg_item) {
		snprintf(avg, sizeof(avg), "%u", cfg->avg_item);
		argv[n++] = "--avg-item";
		argv[n++] = avg;
	}
	for (unsigned i = 0; i < nextra && i < 8; i++)
		argv[n++] = (char *)extra[i];
	for (unsigned i = 0; i < cfg->ndaemon_args; i++)
		argv[n++] = (char *)cfg->daemon_args[i];
	argv[n] = NULL;

	rc = srv_spawn(s, argv, log);
	if (!rc)
		rc = srv_wait(s, 10, log);
	return rc;
}

static int shmc_be_start(struct be_server *s)
{
	if (s->cfg->shmc_socket) {
		snprintf(s->sock, sizeof(s->sock), "%s", s->cfg->shmc_socket);
		return 0;
	}
	return be_shmc_spawn(s, NULL, 0);
}

static void shmc_be_stop(struct be_server *s)
{
	srv_kill(s);
	srv_rmdir(s);
}

static int shmc_be_attach(struct be_server *s, void **proc, char *why, size_t n)
{
	shmc *c;
	int rc = shmc_open(&c, s->sock);

	if (rc)
		return srv_fail(why, n, rc, "shmc_open %s: %s", s->sock,
				shmc_strerror(rc));
	*proc = c;
	return 0;
}

static void shmc_be_detach(void *proc)
{
	shmc_close(proc);
}

static int shmc_be_open(void *proc, void **thr, char *why, size_t n)
{
	(void)why;
	(void)n;
	*thr = proc;
	return 0;
}

static void shmc_be_close(void *thr)
{
	(void)thr;
}

static int shmc_be_get(void *thr, const void *key, size_t klen, void *buf,
		       size_t cap, size_t *vlen)
{
	int rc = shmc_get(thr, key, klen, buf, cap, vlen);

	return rc == -ENOENT ? BE_MISS : rc;
}

static int shmc_be_set(void *thr, const void *key, size_t klen, const void *val,
		       size_t vlen)
{
	return shmc_set(thr, key, klen, val, vlen, 0);
}

static int shmc_be_del(void *thr, const void *key, size_t klen)
{
	int rc = shmc_del(thr, key, klen);

	return rc == -ENOENT ? BE_MISS : rc;
}

static int shmc_be_items(void *thr, uint64_t *n)
{
	struct shmc_stats st;
	int rc = shmc_stat(thr, &st);

	if (!rc)
		*n = st.entries;
	return rc;
}

static void shmc_be_version(void *thr, char *buf, size_t cap)
{
	snprintf(buf, cap, "libshmc %d.%d, %u segments, max item %zu B",
		 SHMC_VERSION_MAJOR, SHMC_VERSION_MINOR, shmc_segments(thr),
		 shmc_max_item(thr));
}

const struct backend be_shmc = {
	.name = "shmc",
	.flags = BE_EVICTS,
	.start = shmc_be_start,
	.stop = shmc_be_stop,
	.attach = shmc_be_attach,
	.detach = shmc_be_detach,
	.open = shmc_be_open,
	.close = shmc_be_close,
	.get = shmc_be_get,
	.set = shmc_be_set,
	.del = shmc_be_del,
	.items = shmc_be_items,
	.version = shmc_be_version,
	.strerror = shmc_strerror,
};
