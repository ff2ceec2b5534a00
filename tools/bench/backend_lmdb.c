/*
 * backend_lmdb.c - the `lmdb` backend: an LMDB environment in a temporary
 * folder, opened by every worker process with MDB_NOSYNC | MDB_WRITEMAP |
 * MDB_NOMETASYNC (no fsync: a cache, not a database) and MDB_NOTLS (read
 * transactions belong to our threads, not to LMDB's thread-local slots).
 * The map is twice the data (keys x (key + largest value)), at least
 * 64 MiB.  Each thread keeps one read transaction, renewed for every get
 * and reset after it; every set and del is a write transaction of its own.
 * No memory limit and no eviction.  Compiled only when liblmdb is found
 * (HAVE_LMDB).
 */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

struct lm_proc {
	MDB_env *env;
	MDB_dbi dbi;
};

struct lm_thr {
	struct lm_proc *p;
	MDB_txn *rd;
};

/* LMDB returns its own codes (negative, MDB_KEYEXIST...) or an errno. */
static int lm_err(int rc)
{
	return rc > 0 ? -rc : rc;
}

static const char *lm_strerror(int err)
{
	if (err >= MDB_KEYEXIST && err <= MDB_LAST_ERRCODE)
		return mdb_strerror(err);
	return mdb_strerror(-err);
}

static int lm_start(struct be_server *s)
{
	return srv_mkdir(s, "lmdb");
}

static void lm_stop(struct be_server *s)
{
	srv_rmdir(s);
}

static int lm_attach(struct be_server *s, void **proc, char *why, size_t n)
{
	const struct bench_cfg *cfg = s->cfg;
	struct lm_proc *p = calloc(1, sizeof(*p));
	size_t map = 2 * (size_t)cfg->keys * (cfg->key_size + cfg->vmax);
	MDB_txn *t;
	int rc;

	if (!p)
		return srv_fail(why, n, -ENOMEM, "out of memory");
	if (map < (64u << 20))
		map = 64u << 20;
	rc = mdb_env_create(&p->env);
	if (!rc)
		rc = mdb_env_set_mapsize(p->env, map);
	if (!rc)
		rc = mdb_env_set_maxreaders(p->env, 512);
	if (!rc)
		rc = mdb_env_open(p->env, s->dir,
				  MDB_NOSYNC | MDB_WRITEMAP | MDB_NOMETASYNC |
					  MDB_NOTLS,
				  0600);
	if (!rc)
		rc = mdb_txn_begin(p->env, NULL, MDB_RDONLY, &t);
	if (!rc) {
		rc = mdb_dbi_open(t, NULL, 0, &p->dbi);
		mdb_txn_abort(t);
	}
	if (rc) {
		srv_fail(why, n, lm_err(rc), "lmdb %s: %s", s->dir,
			 mdb_strerror(rc));
		if (p->env)
			mdb_env_close(p->env);
		free(p);
		return lm_err(rc);
	}
	*proc = p;
	return 0;
}

static void lm_detach(void *proc)
{
	struct lm_proc *p = proc;

	mdb_env_close(p->env);
	free(p);
}

static int lm_open(void *proc, void **thr, char *why, size_t n)
{
	struct lm_thr *t = calloc(1, sizeof(*t));
	int rc;

	if (!t)
		return srv_fail(why, n, -ENOMEM, "out of memory");
	t->p = proc;
	rc = mdb_txn_begin(t->p->env, NULL, MDB_RDONLY, &t->rd);
	if (rc) {
		free(t);
		return srv_fail(why, n, lm_err(rc), "mdb_txn_begin: %s",
				mdb_strerror(rc));
	}
	mdb_txn_reset(t->rd);
	*thr = t;
	return 0;
}

static void lm_close(void *thr)
{
	struct lm_thr *t = thr;

	mdb_txn_abort(t->rd);
	free(t);
}

static int lm_get(void *thr, const void *key, size_t klen, void *buf,
		  size_t cap, size_t *vlen)
{
	struct lm_thr *t = thr;
	MDB_val k = { klen, (void *)key }, v;
	int rc = mdb_txn_renew(t->rd);

	if (rc)
		return lm_err(rc);
	rc = mdb_get(t->rd, t->p->dbi, &k, &v);
	if (rc == 0) {
		*vlen = v.mv_size;
		if (v.mv_size <= cap)
			memcpy(buf, v.mv_data, v.mv_size);
		else
			rc = -ENOBUFS;
	} else {
		rc = rc == MDB_NOTFOUND ? BE_MISS : lm_err(rc);
	}
	mdb_txn_reset(t->rd);
	return rc;
}

static int lm_set(void *thr, const void *key, size_t klen, const void *val,
		  size_t vlen)
{
	struct lm_thr *t = thr;
	MDB_val k = { klen, (void *)key }, v = { vlen, (void *)val };
	MDB_txn *w;
	int rc = mdb_txn_begin(t->p->env, NULL, 0, &w);

	if (rc)
		return lm_err(rc);
	rc = mdb_put(w, t->p->dbi, &k, &v, 0);
	if (rc) {
		mdb_txn_abort(w);
		return lm_err(rc);
	}
	return lm_err(mdb_txn_commit(w));
}

static int lm_del(void *thr, const void *key, size_t klen)
{
	struct lm_thr *t = thr;
	MDB_val k = { klen, (void *)key };
	MDB_txn *w;
	int rc = mdb_txn_begin(t->p->env, NULL, 0, &w);

	if (rc)
		return lm_err(rc);
	rc = mdb_del(w, t->p->dbi, &k, NULL);
	if (rc) {
		mdb_txn_abort(w);
		return rc == MDB_NOTFOUND ? BE_MISS : lm_err(rc);
	}
	return lm_err(mdb_txn_commit(w));
}

static void lm_version(void *thr, char *buf, size_t cap)
{
	(void)thr;
	snprintf(buf, cap, "%s", mdb_version(NULL, NULL, NULL));
}

const struct backend be_lmdb = {
	.name = "lmdb",
	.flags = 0,
	.start = lm_start,
	.stop = lm_stop,
	.attach = lm_attach,
	.detach = lm_detach,
	.open = lm_open,
	.close = lm_close,
	.get = lm_get,
	.set = lm_set,
	.del = lm_del,
	.version = lm_version,
	.strerror = lm_strerror,
};
