/*
 * backend_memcached.c - the `memcached` backend: Debian's memcached on a
 * temporary Unix socket (-m = the workload's cache size in MiB, -t = one
 * thread per client thread up to the number of CPUs), driven through
 * libmemcached with its defaults (text protocol, blocking I/O), one
 * memcached_st per worker thread.  With --peers DIR the server already
 * running at DIR/memcached.sock (tools/peers start DIR) is used instead.
 * Compiled only when libmemcached is found (HAVE_LIBMEMCACHED).
 */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmemcached/memcached.h>

/* libmemcached's return codes travel as -(MC_ERRBASE + rc). */
#define MC_ERRBASE 4096

static int mc_err(memcached_return_t rc)
{
	return -(MC_ERRBASE + (int)rc);
}

static const char *mc_strerror(int err)
{
	if (err <= -MC_ERRBASE)
		return memcached_strerror(NULL,
					  (memcached_return_t)(-err -
							       MC_ERRBASE));
	return strerror(-err);
}

static int mc_start(struct be_server *s)
{
	const struct bench_cfg *cfg = s->cfg;
	char bin[PATH_MAX], mb[32], thr[16], log[PATH_MAX + 16];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned clients = cfg->procs * cfg->threads;
	char *argv[24];
	unsigned n = 0;
	int rc;

	if (cfg->peers_dir) {
		snprintf(s->sock, sizeof(s->sock), "%s/memcached.sock",
			 cfg->peers_dir);
		return 0;
	}
	if (!srv_which("memcached", bin, sizeof(bin)))
		return srv_fail(s->why, sizeof(s->why), BE_SKIP,
				"memcached not installed (tools/peers "
				"install)");
	rc = srv_mkdir(s, "memcached");
	if (rc)
		return rc;
	if ((rc = srv_path(s, s->sock, sizeof(s->sock), "memcached.sock")))
		return rc;
	if ((rc = srv_path(s, log, sizeof(log), "memcached.log")))
		return rc;
	snprintf(mb, sizeof(mb), "%llu",
		 (unsigned long long)(cfg->cache >> 20));
	if (ncpu < 1)
		ncpu = 1;
	snprintf(thr, sizeof(thr), "%u",
		 clients < (unsigned)ncpu ? clients : (unsigned)ncpu);

	argv[n++] = bin;
	argv[n++] = "-s";
	argv[n++] = s->sock;
	argv[n++] = "-a";
	argv[n++] = "0700";
	argv[n++] = "-m";
	argv[n++] = mb;
	argv[n++] = "-t";
	argv[n++] = thr;
	argv[n++] = "-c";
	argv[n++] = "1024";
	if (cfg->cache < 2 * 1024 * 1024) {
		/* memcached wants items of at most half its memory. */
		argv[n++] = "-I";
		argv[n++] = "512k";
	}
	if (getuid() == 0) { /* memcached refuses root without -u */
		argv[n++] = "-u";
		argv[n++] = "root";
	}
	argv[n] = NULL;

	rc = srv_spawn(s, argv, log);
	if (!rc)
		rc = srv_wait(s, 10, log);
	return rc;
}

static void mc_stop(struct be_server *s)
{
	srv_kill(s);
	srv_rmdir(s);
}

static int mc_attach(struct be_server *s, void **proc, char *why, size_t n)
{
	(void)why;
	(void)n;
	*proc = s->sock;
	return 0;
}

static void mc_detach(void *proc)
{
	(void)proc;
}

static int mc_open(void *proc, void **thr, char *why, size_t n)
{
	memcached_st *m = memcached_create(NULL);
	memcached_return_t rc;

	if (!m)
		return srv_fail(why, n, -ENOMEM, "memcached_create failed");
	rc = memcached_server_add_unix_socket(m, proc);
	if (rc != MEMCACHED_SUCCESS) {
		srv_fail(why, n, mc_err(rc), "memcached_server_add %s: %s",
			 (const char *)proc, memcached_strerror(m, rc));
		memcached_free(m);
		return mc_err(rc);
	}
	*thr = m;
	return 0;
}

static void mc_close(void *thr)
{
	memcached_free(thr);
}

static int mc_get(void *thr, const void *key, size_t klen, void *buf,
		  size_t cap, size_t *vlen)
{
	memcached_return_t rc;
	uint32_t flags;
	size_t len;
	char *v = memcached_get(thr, key, klen, &len, &flags, &rc);

	if (!v) {
		if (rc == MEMCACHED_NOTFOUND)
			return BE_MISS;
		return rc == MEMCACHED_SUCCESS ? -ENOMEM : mc_err(rc);
	}
	*vlen = len;
	if (len <= cap)
		memcpy(buf, v, len);
	free(v);
	return len <= cap ? 0 : -ENOBUFS;
}

static int mc_set(void *thr, const void *key, size_t klen, const void *val,
		  size_t vlen)
{
	memcached_return_t rc = memcached_set(thr, key, klen, val, vlen, 0, 0);

	return rc == MEMCACHED_SUCCESS ? 0 : mc_err(rc);
}

static int mc_del(void *thr, const void *key, size_t klen)
{
	memcached_return_t rc = memcached_delete(thr, key, klen, 0);

	if (rc == MEMCACHED_NOTFOUND)
		return BE_MISS;
	return rc == MEMCACHED_SUCCESS ? 0 : mc_err(rc);
}

static int mc_items(void *thr, uint64_t *n)
{
	memcached_return_t rc;
	memcached_stat_st *st = memcached_stat(thr, NULL, &rc);

	if (!st)
		return mc_err(rc);
	*n = st[0].curr_items;
	memcached_stat_free(thr, st);
	return 0;
}

static void mc_version(void *thr, char *buf, size_t cap)
{
	memcached_return_t rc;
	memcached_stat_st *st = memcached_stat(thr, NULL, &rc);

	snprintf(buf, cap, "memcached %s, libmemcached %s, -m %llu MiB",
		 st ? st[0].version : "?", LIBMEMCACHED_VERSION_STRING,
		 st ? st[0].limit_maxbytes >> 20 : 0ULL);
	if (st)
		memcached_stat_free(thr, st);
}

const struct backend be_memcached = {
	.name = "memcached",
	.flags = BE_REMOTE | BE_EVICTS,
	.start = mc_start,
	.stop = mc_stop,
	.attach = mc_attach,
	.detach = mc_detach,
	.open = mc_open,
	.close = mc_close,
	.get = mc_get,
	.set = mc_set,
	.del = mc_del,
	.items = mc_items,
	.version = mc_version,
	.strerror = mc_strerror,
};
