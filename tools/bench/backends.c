/*
 * backends.c - the table of backends, declared once.  A backend whose
 * client library was not found at configure time (meson.build defines
 * HAVE_LIBMEMCACHED, HAVE_HIREDIS, HAVE_LMDB for those it found) is still
 * listed, with the reason it is missing, so that asking for it gives a
 * "skipped" row rather than an unknown name.
 */
#include "bench.h"

#ifdef HAVE_LIBMEMCACHED
#define BE_MEMCACHED (&be_memcached)
#define BE_SHMC_MC (&be_shmc_mc)
#else
static const struct backend no_memcached = {
	.name = "memcached",
	.flags = BE_REMOTE | BE_EVICTS,
	.missing = "built without libmemcached (tools/peers install, then "
		   "reconfigure the build)",
};
static const struct backend no_shmc_mc = {
	.name = "shmc-mc",
	.flags = BE_REMOTE | BE_EVICTS,
	.missing = "built without libmemcached, its client (tools/peers "
		   "install, then reconfigure the build)",
};
#define BE_MEMCACHED (&no_memcached)
#define BE_SHMC_MC (&no_shmc_mc)
#endif

#ifdef HAVE_HIREDIS
#define BE_REDIS (&be_redis)
#else
static const struct backend no_redis = {
	.name = "redis",
	.flags = BE_REMOTE | BE_EVICTS,
	.missing = "built without hiredis (tools/peers install, then "
		   "reconfigure the build)",
};
#define BE_REDIS (&no_redis)
#endif

#ifdef HAVE_LMDB
#define BE_LMDB (&be_lmdb)
#else
static const struct backend no_lmdb = {
	.name = "lmdb",
	.missing = "built without liblmdb (tools/peers install, then "
		   "reconfigure the build)",
};
#define BE_LMDB (&no_lmdb)
#endif

const struct backend *const bench_backends[] = {
	&be_shmc, &be_inproc, BE_MEMCACHED, BE_SHMC_MC,
	BE_REDIS, BE_LMDB,    &be_lru,
};
const unsigned bench_nbackends = sizeof(bench_backends) /
				 sizeof(bench_backends[0]);
