/*
 * backend_memcached.c - the backends that speak memcached's protocol
 * through libmemcached with its defaults (text protocol, blocking I/O),
 * one memcached_st per worker thread; they differ only in the server:
 *
 *   memcached  Debian's memcached on a temporary Unix socket (-m = the
 *              workload's cache size in MiB, -t = srv_threads()).  With
 *              --peers DIR the server already running at
 *              DIR/memcached.sock (tools/peers start DIR) is used instead.
 *   shmc-mc    shmcached started as the shmc backend starts it, plus
 *              --memcached on a temporary Unix socket and --threads =
 *              srv_threads(): the same client code against the other
 *              server, over the same kind of socket.
 *
 * With --tcp both listen on a free TCP port of 127.0.0.1 instead, and
 * the client sets TCP_NODELAY.
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

/* A worker thread's connection and the result fetched into by mget. */
struct mc_thr {
	memcached_st *m;
	memcached_result_st res;
	size_t lens[BENCH_MGET_MAX]; /* every key's length, for mget */
};

static int mc_start(struct be_server *s)
{
	const struct bench_cfg *cfg = s->cfg;
	char bin[PATH_MAX], mb[32], thr[16], port[16], log[PATH_MAX + 16];
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
	snprintf(thr, sizeof(thr), "%u", srv_threads(cfg));

	argv[n++] = bin;
	if (cfg->tcp) {
		if ((rc = srv_free_port(s, &s->port)))
			return rc;
		snprintf(port, sizeof(port), "%u", s->port);
		snprintf(s->sock, sizeof(s->sock), "127.0.0.1:%u", s->port);
		argv[n++] = "-l";
		argv[n++] = "127.0.0.1";
		argv[n++] = "-p";
		argv[n++] = port;
	} else {
		argv[n++] = "-s";
		argv[n++] = s->sock;
		argv[n++] = "-a";
		argv[n++] = "0700";
	}
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

/* shmc-mc: shmcached with a memcached listener; s->sock (or s->port)
 * becomes the listener's once the daemon is up. */
static int shmc_mc_start(struct be_server *s)
{
	char sock[PATH_MAX], thr[16], log[PATH_MAX + 16];
	const char *extra[4];
	unsigned port = 0;
	int rc;

	if ((rc = srv_mkdir(s, "shmc-mc")))
		return rc;
	if (s->cfg->tcp) {
		if ((rc = srv_free_port(s, &port)))
			return rc;
		snprintf(sock, sizeof(sock), "127.0.0.1:%u", port);
	} else if ((rc = srv_path(s, sock, sizeof(sock), "memcached.sock"))) {
		return rc;
	}
	if ((rc = srv_path(s, log, sizeof(log), "shmcached.log")))
		return rc;
	snprintf(thr, sizeof(thr), "%u", srv_threads(s->cfg));
	extra[0] = "--memcached";
	extra[1] = sock;
	extra[2] = "--threads";
	extra[3] = thr;
	rc = be_shmc_spawn(s, extra, 4);
	if (rc)
		return rc;
	snprintf(s->sock, sizeof(s->sock), "%s", sock);
	s->port = port;
	return srv_wait(s, 10, log);
}

static int mc_attach(struct be_server *s, void **proc, char *why, size_t n)
{
	(void)why;
	(void)n;
	*proc = s;
	return 0;
}

static void mc_detach(void *proc)
{
	(void)proc;
}

static int mc_open(void *proc, void **thr, char *why, size_t n)
{
	const struct be_server *s = proc;
	struct mc_thr *t = calloc(1, sizeof(*t));
	memcached_return_t rc;

	if (!t || !(t->m = memcached_create(NULL))) {
		free(t);
		return srv_fail(why, n, -ENOMEM, "memcached_create failed");
	}
	if (s->port) {
		rc = memcached_server_add(t->m, "127.0.0.1",
					  (in_port_t)s->port);
		if (rc == MEMCACHED_SUCCESS)
			rc = memcached_behavior_set(
				t->m, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
	} else {
		rc = memcached_server_add_unix_socket(t->m, s->sock);
	}
	if (rc != MEMCACHED_SUCCESS) {
		srv_fail(why, n, mc_err(rc), "memcached_server_add %s: %s",
			 s->sock, memcached_strerror(t->m, rc));
		memcached_free(t->m);
		free(t);
		return mc_err(rc);
	}
	if (!memcached_result_create(t->m, &t->res)) {
		memcached_free(t->m);
		free(t);
		return srv_fail(why, n, -ENOMEM,
				"memcached_result_create failed");
	}
	*thr = t;
	return 0;
}

static void mc_close(void *thr)
{
	struct mc_thr *t = thr;

	memcached_result_free(&t->res);
	memcached_free(t->m);
	free(t);
}

static int mc_get(void *thr, const void *key, size_t klen, void *buf,
		  size_t cap, size_t *vlen)
{
	memcached_return_t rc;
	uint32_t flags;
	size_t len;
	char *v = memcached_get(((struct mc_thr *)thr)->m, key, klen, &len,
				&flags, &rc);

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
	memcached_return_t rc = memcached_set(((struct mc_thr *)thr)->m, key,
					      klen, val, vlen, 0, 0);

	return rc == MEMCACHED_SUCCESS ? 0 : mc_err(rc);
}

static int mc_del(void *thr, const void *key, size_t klen)
{
	memcached_return_t rc = memcached_delete(((struct mc_thr *)thr)->m, key,
						 klen, 0);

	if (rc == MEMCACHED_NOTFOUND)
		return BE_MISS;
	return rc == MEMCACHED_SUCCESS ? 0 : mc_err(rc);
}

/* memcached_mget() sends one `get k1 k2 ...` request; the values are
 * fetched one by one into the thread's result (no allocation per key). */
static int mc_mget(void *thr, const char *const *keys, size_t klen, unsigned n,
		   void *buf, size_t cap, unsigned *hits)
{
	struct mc_thr *t = thr;
	memcached_return_t rc;
	unsigned found = 0;

	for (unsigned i = 0; i < n; i++)
		t->lens[i] = klen;
	rc = memcached_mget(t->m, keys, t->lens, n);
	if (rc != MEMCACHED_SUCCESS)
		return mc_err(rc);
	while (memcached_fetch_result(t->m, &t->res, &rc)) {
		size_t len = memcached_result_length(&t->res);

		memcpy(buf, memcached_result_value(&t->res),
		       len <= cap ? len : cap);
		found++;
	}
	*hits = found;
	return rc == MEMCACHED_END || rc == MEMCACHED_SUCCESS ? 0 : mc_err(rc);
}

static int mc_items(void *thr, uint64_t *n)
{
	memcached_return_t rc;
	memcached_st *m = ((struct mc_thr *)thr)->m;
	memcached_stat_st *st = memcached_stat(m, NULL, &rc);

	if (!st)
		return mc_err(rc);
	*n = st[0].curr_items;
	memcached_stat_free(m, st);
	return 0;
}

/* "SERVER VERSION, libmemcached V, ..." from the server's stats. */
static void version_of(const char *server, void *thr, char *buf, size_t cap)
{
	memcached_st *m = ((struct mc_thr *)thr)->m;
	memcached_return_t rc;
	memcached_stat_st *st = memcached_stat(m, NULL, &rc);

	snprintf(buf, cap, "%s %s, libmemcached %s, -m %llu MiB, %lu threads",
		 server, st ? st[0].version : "?", LIBMEMCACHED_VERSION_STRING,
		 st ? st[0].limit_maxbytes >> 20 : 0ULL,
		 st ? (unsigned long)st[0].threads : 0UL);
	if (st)
		memcached_stat_free(m, st);
}

static void mc_version(void *thr, char *buf, size_t cap)
{
	version_of("memcached", thr, buf, cap);
}

static void shmc_mc_version(void *thr, char *buf, size_t cap)
{
	version_of("shmcached", thr, buf, cap);
}

/* What the two backends share: everything but the server. */
#define MC_CLIENT                                                              \
	.flags = BE_REMOTE | BE_EVICTS, .stop = mc_stop, .attach = mc_attach,  \
	.detach = mc_detach, .open = mc_open, .close = mc_close,               \
	.get = mc_get, .set = mc_set, .del = mc_del, .mget = mc_mget,          \
	.items = mc_items, .strerror = mc_strerror

const struct backend be_memcached = {
	.name = "memcached",
	.start = mc_start,
	.version = mc_version,
	MC_CLIENT,
};

const struct backend be_shmc_mc = {
	.name = "shmc-mc",
	.start = shmc_mc_start,
	.version = shmc_mc_version,
	MC_CLIENT,
};
