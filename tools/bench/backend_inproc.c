/*
 * backend_inproc.c - the `inproc` backend: the floor no cross-process
 * cache can beat.  A plain chained hash table in the worker's own memory
 * (power-of-two buckets, at least one per key; XXH3-64 of the key) behind
 * one pthread mutex; a get copies the value out under the mutex.  No
 * memory limit and no eviction.  Each worker process has its own table
 * (BE_LOCAL: every process prefills all the keys).
 */
#include "bench.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

struct ip_entry {
	struct ip_entry *next;
	uint64_t hash;
	uint32_t klen, vlen;
	unsigned char data[]; /* key, then value */
};

struct ip_table {
	pthread_mutex_t lock;
	uint64_t mask;
	uint64_t items;
	struct ip_entry **b;
};

static int ip_start(struct be_server *s)
{
	(void)s;
	return 0;
}

static void ip_stop(struct be_server *s)
{
	(void)s;
}

static int ip_attach(struct be_server *s, void **proc, char *why, size_t n)
{
	struct ip_table *t = calloc(1, sizeof(*t));
	uint64_t nb = 1024;

	while (nb < s->cfg->keys)
		nb <<= 1;
	if (t)
		t->b = calloc(nb, sizeof(*t->b));
	if (!t || !t->b) {
		free(t);
		return srv_fail(why, n, -ENOMEM, "out of memory");
	}
	t->mask = nb - 1;
	pthread_mutex_init(&t->lock, NULL);
	*proc = t;
	return 0;
}

static void ip_detach(void *proc)
{
	struct ip_table *t = proc;

	for (uint64_t i = 0; i <= t->mask; i++) {
		for (struct ip_entry *e = t->b[i], *next; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	pthread_mutex_destroy(&t->lock);
	free(t->b);
	free(t);
}

static int ip_open(void *proc, void **thr, char *why, size_t n)
{
	(void)why;
	(void)n;
	*thr = proc;
	return 0;
}

static void ip_close(void *thr)
{
	(void)thr;
}

/* The link that points at key's entry, or at the NULL ending its chain.
 * Caller holds t->lock. */
static struct ip_entry **ip_find_locked(struct ip_table *t, uint64_t h,
					const void *key, size_t klen)
{
	struct ip_entry **p = &t->b[h & t->mask];

	for (; *p; p = &(*p)->next) {
		if ((*p)->hash == h && (*p)->klen == klen &&
		    !memcmp((*p)->data, key, klen))
			break;
	}
	return p;
}

static int ip_get(void *thr, const void *key, size_t klen, void *buf,
		  size_t cap, size_t *vlen)
{
	struct ip_table *t = thr;
	uint64_t h = XXH3_64bits(key, klen);
	struct ip_entry *e;
	int rc = BE_MISS;

	pthread_mutex_lock(&t->lock);
	e = *ip_find_locked(t, h, key, klen);
	if (e) {
		*vlen = e->vlen;
		if (e->vlen <= cap) {
			memcpy(buf, e->data + e->klen, e->vlen);
			rc = 0;
		} else {
			rc = -ENOBUFS;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

static int ip_set(void *thr, const void *key, size_t klen, const void *val,
		  size_t vlen)
{
	struct ip_table *t = thr;
	uint64_t h = XXH3_64bits(key, klen);
	struct ip_entry **p, *e, *old = NULL;

	/* Same size: overwrite in place, no allocation. */
	pthread_mutex_lock(&t->lock);
	e = *ip_find_locked(t, h, key, klen);
	if (e && e->vlen == vlen) {
		memcpy(e->data + klen, val, vlen);
		pthread_mutex_unlock(&t->lock);
		return 0;
	}
	pthread_mutex_unlock(&t->lock);

	e = malloc(sizeof(*e) + klen + vlen);
	if (!e)
		return -ENOMEM;
	e->hash = h;
	e->klen = (uint32_t)klen;
	e->vlen = (uint32_t)vlen;
	memcpy(e->data, key, klen);
	memcpy(e->data + klen, val, vlen);

	pthread_mutex_lock(&t->lock);
	p = ip_find_locked(t, h, key, klen);
	old = *p;
	e->next = old ? old->next : NULL;
	*p = e;
	if (!old)
		t->items++;
	pthread_mutex_unlock(&t->lock);
	free(old);
	return 0;
}

static int ip_del(void *thr, const void *key, size_t klen)
{
	struct ip_table *t = thr;
	uint64_t h = XXH3_64bits(key, klen);
	struct ip_entry **p, *e;
	int rc = BE_MISS;

	pthread_mutex_lock(&t->lock);
	p = ip_find_locked(t, h, key, klen);
	e = *p;
	if (e) {
		*p = e->next;
		t->items--;
		rc = 0;
	}
	pthread_mutex_unlock(&t->lock);
	free(e);
	return rc;
}

static void ip_version(void *thr, char *buf, size_t cap)
{
	struct ip_table *t = thr;

	snprintf(buf, cap, "chained hash, %llu buckets, XXH3, one mutex",
		 (unsigned long long)t->mask + 1);
}

const struct backend be_inproc = {
	.name = "inproc",
	.flags = BE_LOCAL,
	.start = ip_start,
	.stop = ip_stop,
	.attach = ip_attach,
	.detach = ip_detach,
	.open = ip_open,
	.close = ip_close,
	.get = ip_get,
	.set = ip_set,
	.del = ip_del,
	.version = ip_version,
};
