/*
 * redis_nearcache.c - shmcached as the host's near cache in front of
 * Redis: the read-through and write paths an application needs, in a few
 * lines each.  Teaching code: read nc_get() and nc_set() first.
 *
 * The rules it shows (docs/NEARCACHE.md says why each is needed):
 *   - Read: look in the region; on a miss take a fill lease *before*
 *     asking Redis, and fill the region under that lease.  If the key was
 *     written (invalidated) between our Redis read and our fill, the fill
 *     is refused with -ESTALE: the value is still the right answer for
 *     this request, but it must not be cached.
 *   - Write: write Redis (the store of record) first, then drop the local
 *     copy, so that this process reads its own write at once; the copies
 *     other hosts hold are dropped by their daemons when Redis tells them
 *     (shmcached --redis ADDR --redis-prefix P).
 *   - Never cache "not found": a key missing in Redis is simply missing.
 *   - Cache only the keys the daemon keeps coherent (its --redis-prefix
 *     list, from shmc_near_query()): the copy of any other key would
 *     outlive the next write to Redis that no daemon hears of.
 *
 * Build (hiredis from Debian's libhiredis-dev):
 *
 *     cc redis_nearcache.c $(pkg-config --cflags --libs shmc hiredis) \
 *         -o redis_nearcache
 *
 * Run while shmcached runs (SHMC_SOCKET=path if not the default):
 *
 *     redis_nearcache 127.0.0.1:6379 user:1=alice user:1 user:1
 *
 * Each argument after the address is a read (KEY) or a write (KEY=VALUE),
 * done in order; each prints one line saying where the value came from.
 * The address is HOST:PORT, or the path of Redis's Unix socket.
 */
#include <errno.h>
#include <shmc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

/* How long a cached copy may live even if no invalidation ever comes: a
 * backstop only, the daemon's tracking is what keeps the copies true. */
#define NC_TTL_S 300

/* Where nc_get() found the value. */
enum nc_source {
	NC_REGION,	    /* the near cache: no round trip */
	NC_REDIS,	    /* Redis, and now cached in the region */
	NC_REDIS_UNCACHED,  /* Redis; not cached (the key changed meanwhile,
			     * or the region refused it) */
	NC_REDIS_UNTRACKED, /* Redis; never cached: the daemon does not keep
			     * this key coherent */
};

static const char *const nc_source_names[] = {
	[NC_REGION] = "from the region",
	[NC_REDIS] = "from redis, now cached",
	[NC_REDIS_UNCACHED] = "from redis, not cached",
	[NC_REDIS_UNTRACKED] = "from redis, not tracked: never cached",
};

/* Whether the daemon drops key's copy when Redis writes it: it follows
 * Redis, and key starts with one of its --redis-prefix. */
static int nc_tracked(const struct shmc_near_info *ni, const char *key,
		      size_t klen)
{
	if (!strcmp(ni->state, "off"))
		return 0;
	for (uint32_t i = 0; i < ni->nprefix; i++)
		if (klen >= ni->prefix[i].len &&
		    !memcmp(key, ni->prefix[i].bytes, ni->prefix[i].len))
			return 1;
	return 0;
}

/* Reads key through the near cache into buf (cap bytes), *len = its
 * length.  Returns 0, -ENOENT (not in Redis either), -ENOBUFS (cap too
 * small), -EIO (Redis failed: r->errstr says why), or a libshmc error. */
static int nc_get(shmc *c, const struct shmc_near_info *ni, redisContext *r,
		  const char *key, char *buf, size_t cap, size_t *len,
		  enum nc_source *from)
{
	const struct shmc_store_opts opts = { .ttl_s = NC_TTL_S };
	size_t klen = strlen(key);
	int tracked = nc_tracked(ni, key, klen);
	struct shmc_lease lease;
	struct shmc_item it;
	redisReply *rep;
	int rc;

	/* 1. The region, for a key it may hold.  A miss also begins the
	 * lease. */
	if (tracked) {
		rc = shmc_get_lease(c, key, klen, buf, cap, &it, &lease);
		if (rc == 0) {
			*len = it.vlen;
			*from = NC_REGION;
			return 0;
		}
		if (rc != -ENOENT)
			return rc;
	}

	/* 2. Redis, after the lease began. */
	rep = redisCommand(r, "GET %b", key, klen);
	if (!rep)
		return -EIO;
	if (rep->type != REDIS_REPLY_STRING) {
		rc = rep->type == REDIS_REPLY_NIL ? -ENOENT : -EIO;
		freeReplyObject(rep);
		return rc; /* a missing key is not cached */
	}
	if (rep->len > cap) {
		freeReplyObject(rep);
		return -ENOBUFS;
	}
	memcpy(buf, rep->str, rep->len);
	*len = rep->len;
	freeReplyObject(rep);

	if (!tracked) {
		*from = NC_REDIS_UNTRACKED;
		return 0;
	}

	/* 3. Fill under the lease.  -ESTALE: an invalidation came after our
	 * GET, so what we read may be old for the next reader: serve it to
	 * this one, cache nothing.  -EEXIST (someone filled first) and any
	 * other refusal: serve it too. */
	rc = shmc_fill(c, &lease, key, klen, buf, *len, &opts, NULL);
	*from = rc == 0 ? NC_REDIS : NC_REDIS_UNCACHED;
	return 0;
}

/* Writes key = val: Redis first, then the local copy goes, so the next
 * nc_get() of this host reads the new value from Redis.  Returns 0,
 * -EIO (Redis failed: r->errstr says why, or the reply was an error;
 * nothing was dropped), or a libshmc error of the drop. */
static int nc_set(shmc *c, redisContext *r, const char *key, const char *val)
{
	size_t klen = strlen(key);
	redisReply *rep = redisCommand(r, "SET %b %s", key, klen, val);
	int rc;

	if (!rep)
		return -EIO;
	rc = rep->type == REDIS_REPLY_ERROR ? -EIO : 0;
	freeReplyObject(rep);
	if (rc)
		return rc;
	rc = shmc_del(c, key, klen);
	return rc == -ENOENT ? 0 : rc; /* nothing cached: nothing to drop */
}

/* ------------------------------------------------------------------------
 * The demonstration: connect, then one read or write per argument.
 * ------------------------------------------------------------------------ */

/* Connects to "HOST:PORT" or a Unix socket path; NULL with a message. */
static redisContext *connect_redis(const char *addr)
{
	const char *colon = strrchr(addr, ':');
	redisContext *r;

	if (addr[0] == '/' || !colon) {
		r = redisConnectUnix(addr);
	} else {
		char host[256];
		char *end;
		long port = strtol(colon + 1, &end, 10);

		if ((size_t)(colon - addr) >= sizeof(host) || *end ||
		    port <= 0 || port > 65535) {
			fprintf(stderr,
				"redis address '%s': HOST:PORT or a Unix "
				"socket path expected\n",
				addr);
			return NULL;
		}
		snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
		r = redisConnect(host, (int)port);
	}
	if (!r || r->err) {
		fprintf(stderr, "redis %s: %s\n", addr,
			r ? r->errstr : "out of memory");
		redisFree(r);
		return NULL;
	}
	return r;
}

int main(int argc, char **argv)
{
	struct shmc_near_info ni;
	char buf[4096];
	redisContext *r;
	shmc *c;
	int rc, status = 0;

	if (argc < 3) {
		fprintf(stderr,
			"usage: %s REDIS_ADDR KEY|KEY=VALUE...\n"
			"  reads each KEY through the near cache, writes each "
			"KEY=VALUE to redis;\n  REDIS_ADDR is HOST:PORT or a "
			"Unix socket path; SHMC_SOCKET names the daemon\n",
			argv[0]);
		return 2;
	}
	if ((rc = shmc_open(&c, NULL)) != 0) {
		fprintf(stderr, "shmc_open: %s\n", shmc_strerror(rc));
		return 1;
	}
	/* What the daemon keeps coherent: asked once, it changes only with
	 * the daemon's options. */
	rc = shmc_near_query(c, &ni);
	if (rc == -EOPNOTSUPP) { /* a daemon older than its near cache */
		memset(&ni, 0, sizeof(ni));
		snprintf(ni.state, sizeof(ni.state), "off");
	} else if (rc != 0) {
		fprintf(stderr, "shmc_near_query: %s\n", shmc_strerror(rc));
		shmc_close(c);
		return 1;
	}
	if (!strcmp(ni.state, "off"))
		fprintf(stderr, "note: the daemon follows no Redis (no "
				"--redis): nothing is cached\n");
	if (!(r = connect_redis(argv[1]))) {
		shmc_close(c);
		return 1;
	}
	for (int i = 2; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		enum nc_source from;
		size_t len;

		if (eq) {
			*eq = '\0';
			rc = nc_set(c, r, argv[i], eq + 1);
			if (rc == 0)
				printf("%s := %s (written to redis, local copy "
				       "dropped)\n",
				       argv[i], eq + 1);
		} else {
			rc = nc_get(c, &ni, r, argv[i], buf, sizeof(buf), &len,
				    &from);
			if (rc == 0)
				printf("%s = %.*s (%s)\n", argv[i], (int)len,
				       buf, nc_source_names[from]);
			else if (rc == -ENOENT)
				printf("%s: not found\n", argv[i]);
		}
		if (rc == -EIO) {
			fprintf(stderr, "%s: redis: %s\n", argv[i],
				r->err ? r->errstr : "error reply");
			status = 1;
			break; /* the connection may be unusable */
		}
		if (rc && rc != -ENOENT) {
			fprintf(stderr, "%s: %s\n", argv[i], shmc_strerror(rc));
			status = 1;
		}
	}
	redisFree(r);
	shmc_close(c);
	return status;
}
