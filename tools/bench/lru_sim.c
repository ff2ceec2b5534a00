/*
 * lru_sim.c - the `lru` backend of --hit-ratio: an exact LRU cache
 * simulated in the bench's worker, the yardstick for the hit ratios of the
 * real caches.  Its byte budget is the workload's cache size; an item
 * costs key + value + --lru-overhead bytes (0 by default: key and value
 * only, an upper bound no real cache reaches).  A get that hits moves the
 * item to the head; a set adds or replaces at the head and then evicts
 * from the tail until the budget holds.  Not for speed runs (BE_SIM).
 */
#include "bench.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

struct lru_item {
	struct lru_item *hnext;	      /* hash chain */
	struct lru_item *prev, *next; /* recency list, head = newest */
	uint64_t hash;
	uint32_t klen, vlen;
	unsigned char data[];
};

struct lru {
	pthread_mutex_t lock;
	struct lru_item **b;
	uint64_t mask;
	struct lru_item *head, *tail;
	uint64_t used, budget, items;
	uint32_t overhead;
};

static int lru_start(struct be_server *s)
{
	(void)s;
	return 0;
}

static void lru_stop(struct be_server *s)
{
	(void)s;
}

static int lru_attach(struct be_server *s, void **proc, char *why, size_t n)
{
	struct lru *l = calloc(1, sizeof(*l));
	uint64_t nb = 1024;

	while (nb < s->cfg->keys)
		nb <<= 1;
	if (l)
		l->b = calloc(nb, sizeof(*l->b));
	if (!l || !l->b) {
		free(l);
		return srv_fail(why, n, -ENOMEM, "out of memory");
	}
	l->mask = nb - 1;
	l->budget = s->cfg->cache;
	l->overhead = s->cfg->lru_overhead;
	pthread_mutex_init(&l->lock, NULL);
	*proc = l;
	return 0;
}

static void lru_detach(void *proc)
{
	struct lru *l = proc;

	for (struct lru_item *i = l->head, *next; i; i = next) {
		next = i->next;
		free(i);
	}
	pthread_mutex_destroy(&l->lock);
	free(l->b);
	free(l);
}

static int lru_open(void *proc, void **thr, char *why, size_t n)
{
	(void)why;
	(void)n;
	*thr = proc;
	return 0;
}

static void lru_close(void *thr)
{
	(void)thr;
}

static uint64_t lru_cost(const struct lru *l, const struct lru_item *i)
{
	return (uint64_t)i->klen + i->vlen + l->overhead;
}

/* The hash link pointing at key's item or at its chain's end. */
static struct lru_item **lru_find_locked(struct lru *l, uint64_t h,
					 const void *key, size_t klen)
{
	struct lru_item **p = &l->b[h & l->mask];

	for (; *p; p = &(*p)->hnext) {
		if ((*p)->hash == h && (*p)->klen == klen &&
		    !memcmp((*p)->data, key, klen))
			break;
	}
	return p;
}

static void list_unlink(struct lru *l, struct lru_item *i)
{
	if (i->prev)
		i->prev->next = i->next;
	else
		l->head = i->next;
	if (i->next)
		i->next->prev = i->prev;
	else
		l->tail = i->prev;
}

static void list_push_head(struct lru *l, struct lru_item *i)
{
	i->prev = NULL;
	i->next = l->head;
	if (l->head)
		l->head->prev = i;
	l->head = i;
	if (!l->tail)
		l->tail = i;
}

/* Removes item i (its hash link is *p) and frees it. */
static void lru_remove_locked(struct lru *l, struct lru_item **p)
{
	struct lru_item *i = *p;

	*p = i->hnext;
	list_unlink(l, i);
	l->used -= lru_cost(l, i);
	l->items--;
	free(i);
}

static int lru_get(void *thr, const void *key, size_t klen, void *buf,
		   size_t cap, size_t *vlen)
{
	struct lru *l = thr;
	uint64_t h = XXH3_64bits(key, klen);
	struct lru_item *i;
	int rc = BE_MISS;

	pthread_mutex_lock(&l->lock);
	i = *lru_find_locked(l, h, key, klen);
	if (i) {
		list_unlink(l, i);
		list_push_head(l, i);
		*vlen = i->vlen;
		rc = i->vlen <= cap ? 0 : -ENOBUFS;
		if (!rc)
			memcpy(buf, i->data + i->klen, i->vlen);
	}
	pthread_mutex_unlock(&l->lock);
	return rc;
}

static int lru_set(void *thr, const void *key, size_t klen, const void *val,
		   size_t vlen)
{
	struct lru *l = thr;
	uint64_t h = XXH3_64bits(key, klen);
	struct lru_item **p, *i = malloc(sizeof(*i) + klen + vlen);

	if (!i)
		return -ENOMEM;
	i->hash = h;
	i->klen = (uint32_t)klen;
	i->vlen = (uint32_t)vlen;
	memcpy(i->data, key, klen);
	memcpy(i->data + klen, val, vlen);
	if (lru_cost(l, i) > l->budget) {
		free(i);
		return 0; /* never fits: dropped, as a cache would */
	}

	pthread_mutex_lock(&l->lock);
	p = lru_find_locked(l, h, key, klen);
	if (*p)
		lru_remove_locked(l, p);
	i->hnext = l->b[h & l->mask];
	l->b[h & l->mask] = i;
	list_push_head(l, i);
	l->used += lru_cost(l, i);
	l->items++;
	while (l->used > l->budget) {
		struct lru_item *old = l->tail;

		lru_remove_locked(l, lru_find_locked(l, old->hash, old->data,
						     old->klen));
	}
	pthread_mutex_unlock(&l->lock);
	return 0;
}

static int lru_del(void *thr, const void *key, size_t klen)
{
	struct lru *l = thr;
	uint64_t h = XXH3_64bits(key, klen);
	struct lru_item **p;
	int rc = BE_MISS;

	pthread_mutex_lock(&l->lock);
	p = lru_find_locked(l, h, key, klen);
	if (*p) {
		lru_remove_locked(l, p);
		rc = 0;
	}
	pthread_mutex_unlock(&l->lock);
	return rc;
}

static int lru_items(void *thr, uint64_t *n)
{
	struct lru *l = thr;

	pthread_mutex_lock(&l->lock);
	*n = l->items;
	pthread_mutex_unlock(&l->lock);
	return 0;
}

static void lru_version(void *thr, char *buf, size_t cap)
{
	struct lru *l = thr;

	snprintf(buf, cap,
		 "exact LRU, budget %llu B, item = key + value + %u B",
		 (unsigned long long)l->budget, l->overhead);
}

const struct backend be_lru = {
	.name = "lru",
	.flags = BE_LOCAL | BE_SIM,
	.start = lru_start,
	.stop = lru_stop,
	.attach = lru_attach,
	.detach = lru_detach,
	.open = lru_open,
	.close = lru_close,
	.get = lru_get,
	.set = lru_set,
	.del = lru_del,
	.items = lru_items,
	.version = lru_version,
};
