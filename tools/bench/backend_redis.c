/*
 * backend_redis.c - the `redis` backend: Debian's redis-server on a
 * temporary Unix socket (no TCP port, no persistence, maxmemory = the
 * workload's cache size, allkeys-lru), driven through hiredis with plain
 * GET/SET/DEL commands, one connection per worker thread.  With --peers
 * DIR the server already running at DIR/redis.sock is used instead.
 * rd_spawn() also starts the near mode's Redis on loopback TCP (near.c).
 * Compiled only when hiredis is found (HAVE_HIREDIS).
 */
#include "bench.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

int rd_spawn(struct be_server *s, bool tcp)
{
	const struct bench_cfg *cfg = s->cfg;
	char bin[PATH_MAX], maxmem[32], port[16], log[PATH_MAX + 16];
	char *argv[32];
	unsigned n = 0;
	int rc;

	if (!srv_which("redis-server", bin, sizeof(bin)))
		return srv_fail(s->why, sizeof(s->why), BE_SKIP,
				"redis-server not installed (tools/peers "
				"install)");
	rc = srv_mkdir(s, "redis");
	if (rc)
		return rc;
	if ((rc = srv_path(s, log, sizeof(log), "redis.log")))
		return rc;
	snprintf(maxmem, sizeof(maxmem), "%llu",
		 (unsigned long long)cfg->cache);

	argv[n++] = bin;
	if (tcp) {
		if ((rc = srv_free_port(s, &s->port)))
			return rc;
		snprintf(port, sizeof(port), "%u", s->port);
		snprintf(s->sock, sizeof(s->sock), "127.0.0.1:%u", s->port);
		argv[n++] = "--bind";
		argv[n++] = "127.0.0.1";
		argv[n++] = "--port";
		argv[n++] = port;
	} else {
		if ((rc = srv_path(s, s->sock, sizeof(s->sock), "redis.sock")))
			return rc;
		argv[n++] = "--unixsocket";
		argv[n++] = s->sock;
		argv[n++] = "--unixsocketperm";
		argv[n++] = "700";
		argv[n++] = "--port";
		argv[n++] = "0";
	}
	argv[n++] = "--save";
	argv[n++] = "";
	argv[n++] = "--appendonly";
	argv[n++] = "no";
	argv[n++] = "--maxmemory";
	argv[n++] = maxmem;
	argv[n++] = "--maxmemory-policy";
	argv[n++] = "allkeys-lru";
	argv[n++] = "--dir";
	argv[n++] = s->dir;
	argv[n++] = "--logfile";
	argv[n++] = log;
	argv[n++] = "--daemonize";
	argv[n++] = "no";
	argv[n] = NULL;

	rc = srv_spawn(s, argv, log);
	if (!rc)
		rc = srv_wait(s, 10, log);
	return rc;
}

static int rd_start(struct be_server *s)
{
	if (s->cfg->peers_dir) {
		snprintf(s->sock, sizeof(s->sock), "%s/redis.sock",
			 s->cfg->peers_dir);
		return 0;
	}
	return rd_spawn(s, false);
}

static void rd_stop(struct be_server *s)
{
	srv_kill(s);
	srv_rmdir(s);
}

static int rd_attach(struct be_server *s, void **proc, char *why, size_t n)
{
	(void)why;
	(void)n;
	*proc = s->sock;
	return 0;
}

static void rd_detach(void *proc)
{
	(void)proc;
}

static int rd_open(void *proc, void **thr, char *why, size_t n)
{
	redisContext *c = redisConnectUnix(proc);

	if (!c)
		return srv_fail(why, n, -ENOMEM, "redisConnectUnix failed");
	if (c->err) {
		srv_fail(why, n, -ECONNREFUSED, "redis %s: %s",
			 (const char *)proc, c->errstr);
		redisFree(c);
		return -ECONNREFUSED;
	}
	*thr = c;
	return 0;
}

static void rd_close(void *thr)
{
	redisFree(thr);
}

/* -EIO: the connection failed; -EPROTO: an error reply. */
static int rd_check(redisReply *r)
{
	if (!r)
		return -EIO;
	if (r->type == REDIS_REPLY_ERROR) {
		freeReplyObject(r);
		return -EPROTO;
	}
	return 0;
}

int rd_get(void *thr, const void *key, size_t klen, void *buf, size_t cap,
	   size_t *vlen)
{
	redisReply *r = redisCommand(thr, "GET %b", key, klen);
	int rc = rd_check(r);

	if (rc)
		return rc;
	if (r->type == REDIS_REPLY_NIL) {
		rc = BE_MISS;
	} else if (r->type != REDIS_REPLY_STRING) {
		rc = -EPROTO;
	} else {
		*vlen = r->len;
		if (r->len <= cap)
			memcpy(buf, r->str, r->len);
		else
			rc = -ENOBUFS;
	}
	freeReplyObject(r);
	return rc;
}

int rd_set(void *thr, const void *key, size_t klen, const void *val,
	   size_t vlen)
{
	redisReply *r = redisCommand(thr, "SET %b %b", key, klen, val, vlen);
	int rc = rd_check(r);

	if (!rc)
		freeReplyObject(r);
	return rc;
}

static int rd_del(void *thr, const void *key, size_t klen)
{
	redisReply *r = redisCommand(thr, "DEL %b", key, klen);
	int rc = rd_check(r);

	if (rc)
		return rc;
	rc = r->type == REDIS_REPLY_INTEGER ? (r->integer ? 0 : BE_MISS)
					    : -EPROTO;
	freeReplyObject(r);
	return rc;
}

static int rd_items(void *thr, uint64_t *n)
{
	redisReply *r = redisCommand(thr, "DBSIZE");
	int rc = rd_check(r);

	if (rc)
		return rc;
	if (r->type == REDIS_REPLY_INTEGER)
		*n = (uint64_t)r->integer;
	else
		rc = -EPROTO;
	freeReplyObject(r);
	return rc;
}

static void rd_version(void *thr, char *buf, size_t cap)
{
	redisReply *r = redisCommand(thr, "INFO server");
	const char *v = NULL;

	if (r && r->type == REDIS_REPLY_STRING)
		v = strstr(r->str, "redis_version:");
	if (v) {
		v += strlen("redis_version:");
		snprintf(buf, cap, "redis %.*s, hiredis %d.%d.%d",
			 (int)strcspn(v, "\r\n"), v, HIREDIS_MAJOR,
			 HIREDIS_MINOR, HIREDIS_PATCH);
	} else {
		snprintf(buf, cap, "redis ?, hiredis %d.%d.%d", HIREDIS_MAJOR,
			 HIREDIS_MINOR, HIREDIS_PATCH);
	}
	if (r)
		freeReplyObject(r);
}

const struct backend be_redis = {
	.name = "redis",
	.flags = BE_REMOTE | BE_EVICTS,
	.start = rd_start,
	.stop = rd_stop,
	.attach = rd_attach,
	.detach = rd_detach,
	.open = rd_open,
	.close = rd_close,
	.get = rd_get,
	.set = rd_set,
	.del = rd_del,
	.items = rd_items,
	.version = rd_version,
};
