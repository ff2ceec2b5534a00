/*
 * test_model.c - the engine against a reference model: a million random
 * operations (set, get, peek, del, touch, ttl, with clock steps, sweeps and
 * the odd clear) on a few thousand keys, each result checked against a
 * simple map kept by the test.
 *
 * The rule: a get returns exactly the model's value, or misses.  A miss is
 * allowed only for a key the engine may have evicted (set, not deleted, not
 * expired); a key the model says is deleted, expired or never set must
 * miss, and a key seen missing stays missing until it is set again.  At the
 * end eng_check is clean everywhere and eng_iter shows exactly what gets
 * see.  SHMC_TEST_SCALE scales the operation count (default 1e6).
 */
#include "testutil.h"

enum {
	NKEYS = 4000,
	HIST = 8,	      /* operations remembered per key */
	REGION = 1024 * 1024, /* small enough that sets evict */
	NSEG = 8,
};

enum op { OP_SET, OP_GET, OP_PEEK, OP_DEL, OP_TOUCH, OP_TTL, OP_NOPS };
static const char *const op_names[OP_NOPS] = { "set", "get",   "peek",
					       "del", "touch", "ttl" };

/* One remembered operation on a key, for the failure report. */
struct hist {
	uint32_t n; /* operation number */
	uint8_t op;
	int rc;
	uint32_t ver, vlen, expire, now;
};

/* The model of one key. */
struct ref {
	uint32_t ver; /* 0: must miss; else the value's version */
	uint32_t vlen;
	uint32_t expire; /* absolute; 0 = never */
	bool indexed;	 /* may still occupy an index entry */
	uint32_t nhist;
	struct hist hist[HIST];
};

struct model {
	struct eng *e;
	struct ref *ref;
	uint32_t now, n, next_ver;
	uint8_t *buf, *want;
	size_t cap;
	uint64_t gets, get_hits, verified, evicted_misses, sets;
};

static size_t key_of(uint32_t k, char *buf, size_t cap)
{
	/* Lengths 2..45: the number, then filler depending on it. */
	int n = snprintf(buf, cap, "m%" PRIu32 ":", k);
	size_t len = (size_t)n + (k * 7u) % 40u;

	assert_true(n > 0 && len < cap);
	memset(buf + n, 'a' + (int)(k % 26), len - (size_t)n);
	return len;
}

static void value_of(uint32_t k, uint32_t ver, void *buf, size_t len)
{
	tu_fill(buf, len, tu_mix(k, ver));
}

static void remember(struct model *m, uint32_t k, enum op op, int rc)
{
	struct ref *r = &m->ref[k];

	r->hist[r->nhist++ % HIST] = (struct hist){
		.n = m->n,
		.op = (uint8_t)op,
		.rc = rc,
		.ver = r->ver,
		.vlen = r->vlen,
		.expire = r->expire,
		.now = m->now,
	};
}

/* Fails the test with the key's recent history: the reproduction. */
static void model_fail(struct model *m, uint32_t k, const char *what, int rc)
{
	struct ref *r = &m->ref[k];
	uint32_t from = r->nhist > HIST ? r->nhist - HIST : 0;

	print_error("op %" PRIu32 " on key %" PRIu32 ": %s (rc %d %s); "
		    "model: ver %" PRIu32 " vlen %" PRIu32 " expire %" PRIu32
		    " now %" PRIu32 "\n",
		    m->n, k, what, rc, rc < 0 ? strerror(-rc) : "", r->ver,
		    r->vlen, r->expire, m->now);
	print_error("last operations on this key (model state after each):\n");
	for (uint32_t i = from; i < r->nhist; i++) {
		const struct hist *h = &r->hist[i % HIST];

		print_error("  op %" PRIu32 " %-5s rc %d: ver %" PRIu32
			    " vlen %" PRIu32 " expire %" PRIu32 " now %" PRIu32
			    "\n",
			    h->n, op_names[h->op], h->rc, h->ver, h->vlen,
			    h->expire, h->now);
	}
	fail_msg("model mismatch on key %" PRIu32 " at op %" PRIu32 ": %s", k,
		 m->n, what);
}

/* Whether the model says the key holds a value now (expiry applied). */
static bool live(struct model *m, uint32_t k)
{
	struct ref *r = &m->ref[k];

	if (r->ver && r->expire && m->now >= r->expire)
		r->ver = 0;
	return r->ver != 0;
}

/* The engine reported k missing although the model had it: only eviction
 * explains that, and an evicted key stays gone. */
static void lost(struct model *m, uint32_t k)
{
	m->ref[k].ver = 0;
	m->evicted_misses++;
}

static uint32_t random_len(struct model *m, uint64_t *rng, size_t klen)
{
	uint32_t r = tu_below(rng, 1000);
	uint32_t big = (uint32_t)(m->e->g.max_kv - klen);

	if (r < 700)
		return 1 + tu_below(rng, 100);
	if (r < 990)
		return 100 + tu_below(rng, 900);
	if (r < 998)
		return 1000 + tu_below(rng, big / 4);
	return big - tu_below(rng, 16); /* right at the limit */
}

static uint32_t random_ttl(uint64_t *rng)
{
	return tu_below(rng, 10) < 6 ? 0 : 1 + tu_below(rng, 30);
}

static void do_set(struct model *m, uint32_t k, const char *key, size_t klen,
		   uint64_t *rng)
{
	struct ref *r = &m->ref[k];
	uint32_t len = random_len(m, rng, klen), ttl = random_ttl(rng);
	uint32_t ver = ++m->next_ver;
	int rc;

	value_of(k, ver, m->want, len);
	rc = eng_set(m->e, key, klen, m->want, len, ttl);
	if (rc != 0)
		model_fail(m, k, "set failed", rc);
	m->sets++;
	r->ver = ver;
	r->vlen = len;
	r->expire = ttl ? m->now + ttl : 0;
	r->indexed = true;
	remember(m, k, OP_SET, rc);
}

static void do_read(struct model *m, uint32_t k, const char *key, size_t klen,
		    bool peek)
{
	struct ref *r = &m->ref[k];
	bool expect = live(m, k);
	size_t vlen = SIZE_MAX;
	uint32_t exp = UINT32_MAX;
	int rc;

	if (peek) {
		rc = eng_peek(m->e, key, klen, m->buf, m->cap, &vlen, &exp);
	} else {
		rc = eng_get(m->e, key, klen, m->buf, m->cap, &vlen, &exp);
		m->gets++;
	}
	remember(m, k, peek ? OP_PEEK : OP_GET, rc);
	if (rc == -ENOENT) {
		if (expect)
			lost(m, k);
		if (!peek)
			r->indexed = false; /* a get reclaims */
		return;
	}
	if (rc != 0)
		model_fail(m, k, "read failed", rc);
	if (!expect)
		model_fail(m, k, "hit on a key that must miss", rc);
	if (vlen != r->vlen)
		model_fail(m, k, "wrong value length", rc);
	value_of(k, r->ver, m->want, r->vlen);
	if (memcmp(m->buf, m->want, r->vlen) != 0)
		model_fail(m, k, "wrong value bytes", rc);
	if (exp != r->expire)
		model_fail(m, k, "wrong expiry", rc);
	m->verified++;
	if (!peek)
		m->get_hits++;
}

static void do_del(struct model *m, uint32_t k, const char *key, size_t klen)
{
	struct ref *r = &m->ref[k];
	bool expect = live(m, k);
	int rc = eng_del(m->e, key, klen);

	if (rc == 0 && !expect)
		model_fail(m, k, "deleted a key that must be missing", rc);
	if (rc != 0 && rc != -ENOENT)
		model_fail(m, k, "del failed", rc);
	if (rc == -ENOENT && expect)
		lost(m, k);
	if (rc == 0)
		r->indexed = false;
	r->ver = 0;
	remember(m, k, OP_DEL, rc);
}

static void do_touch(struct model *m, uint32_t k, const char *key, size_t klen,
		     uint64_t *rng)
{
	struct ref *r = &m->ref[k];
	bool expect = live(m, k);
	uint32_t ttl = random_ttl(rng);
	int rc = eng_touch(m->e, key, klen, ttl);

	if (rc == 0 && !expect)
		model_fail(m, k, "touched a key that must be missing", rc);
	if (rc != 0 && rc != -ENOENT)
		model_fail(m, k, "touch failed", rc);
	if (rc == -ENOENT && expect)
		lost(m, k);
	if (rc == 0)
		r->expire = ttl ? m->now + ttl : 0;
	remember(m, k, OP_TOUCH, rc);
}

static void do_ttl(struct model *m, uint32_t k, const char *key, size_t klen)
{
	struct ref *r = &m->ref[k];
	bool expect = live(m, k);
	uint32_t ttl = UINT32_MAX;
	int rc = eng_ttl(m->e, key, klen, &ttl);

	remember(m, k, OP_TTL, rc);
	if (rc == 0 && !expect)
		model_fail(m, k, "ttl of a key that must be missing", rc);
	if (rc != 0 && rc != -ENOENT)
		model_fail(m, k, "ttl failed", rc);
	if (rc == -ENOENT && expect)
		lost(m, k);
	if (rc == 0 && ttl != (r->expire ? r->expire - m->now : 0))
		model_fail(m, k, "wrong ttl", (int)ttl);
}

/* ------------------------------------------------------------------------
 * The final comparison: iteration against the model and against gets.
 * ------------------------------------------------------------------------ */

struct final_walk {
	struct model *m;
	uint8_t *seen;
	uint8_t key[64], *val;
	uint32_t items, bad;
};

static int final_item(const struct eng_item *it, void *arg)
{
	struct final_walk *w = arg;
	struct model *m = w->m;
	char kbuf[64];
	unsigned long k;
	char *end;

	w->items++;
	if (it->klen >= sizeof(kbuf) || it->vlen > m->cap ||
	    it->klen != it->key_len[0] + it->key_len[1] ||
	    it->vlen != it->val_len[0] + it->val_len[1]) {
		w->bad++;
		return 0;
	}
	memcpy(w->key, it->key[0], it->key_len[0]);
	memcpy(w->key + it->key_len[0], it->key[1], it->key_len[1]);
	memcpy(w->val, it->val[0], it->val_len[0]);
	memcpy(w->val + it->val_len[0], it->val[1], it->val_len[1]);
	memcpy(kbuf, w->key, it->klen);
	kbuf[it->klen] = '\0';

	k = strtoul(kbuf + 1, &end, 10);
	if (kbuf[0] != 'm' || *end != ':' || k >= NKEYS || w->seen[k]) {
		w->bad++;
		return 0;
	}
	w->seen[k] = 1;
	if (!live(m, (uint32_t)k) || it->vlen != m->ref[k].vlen ||
	    it->expire != m->ref[k].expire) {
		print_error("iter: key %lu not as modelled\n", k);
		w->bad++;
		return 0;
	}
	value_of((uint32_t)k, m->ref[k].ver, m->want, it->vlen);
	if (memcmp(w->val, m->want, it->vlen) != 0) {
		print_error("iter: key %lu has wrong bytes\n", k);
		w->bad++;
	}
	return 0;
}

static void final_compare(struct model *m)
{
	struct final_walk w = { .m = m };
	uint64_t indexed = 0;
	struct eng_stats st;

	w.seen = calloc(NKEYS, 1);
	w.val = malloc(m->cap);
	assert_non_null(w.seen);
	assert_non_null(w.val);

	tu_assert_all_clean(m->e);
	assert_rc(eng_iter(m->e, 0, m->e->g.nseg, final_item, &w), 0);
	assert_int_equal(w.bad, 0);

	for (uint32_t k = 0; k < NKEYS; k++) {
		char key[64];
		size_t klen = key_of(k, key, sizeof(key));
		bool was_live = live(m, k);

		m->n++;
		indexed += m->ref[k].indexed;
		do_read(m, k, key, klen, false);
		/* Iteration showed exactly what gets see. */
		if (w.seen[k] != (m->ref[k].ver != 0))
			model_fail(m, k, "iteration and get disagree", 0);
		if (!was_live && w.seen[k])
			model_fail(m, k, "iteration showed a dead key", 0);
	}
	st = tu_stats(m->e);
	assert_true(st.entries <= indexed);
	free(w.seen);
	free(w.val);
}

static void test_model_random_ops_match_reference(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = NSEG };
	struct model m = { 0 };
	uint64_t rng = 0x5eedf00d, t_start = clock_mono_ms();
	uint32_t nops = (uint32_t)(1e6 * tu_scale());
	struct eng_stats st;

	if (nops < 10000)
		nops = 10000;
	tu_region_open(r, REGION, &cfg);
	m.e = &r->e;
	m.now = eng_now(m.e);
	m.cap = m.e->g.max_kv;
	m.ref = calloc(NKEYS, sizeof(*m.ref));
	m.buf = malloc(m.cap);
	m.want = malloc(m.cap);
	assert_non_null(m.ref);
	assert_non_null(m.buf);
	assert_non_null(m.want);

	for (m.n = 0; m.n < nops; m.n++) {
		uint32_t k = tu_below(&rng, NKEYS), op = tu_below(&rng, 100);
		char key[64];
		size_t klen = key_of(k, key, sizeof(key));

		if (op < 30)
			do_set(&m, k, key, klen, &rng);
		else if (op < 70)
			do_read(&m, k, key, klen, false);
		else if (op < 75)
			do_read(&m, k, key, klen, true);
		else if (op < 83)
			do_del(&m, k, key, klen);
		else if (op < 90)
			do_touch(&m, k, key, klen, &rng);
		else if (op < 97)
			do_ttl(&m, k, key, klen);
		else if (op < 98)
			assert_true(eng_sweep(m.e, tu_below(&rng, NSEG),
					      1 + tu_below(&rng, 64)) >= 0);

		if (tu_one_in(&rng, 1500)) {
			m.now += 1 + tu_below(&rng, 4);
			eng_clock_set(m.e, m.now);
		}
		if (tu_one_in(&rng, 300000)) {
			assert_rc(eng_clear(m.e), 0);
			for (uint32_t j = 0; j < NKEYS; j++) {
				m.ref[j].ver = 0;
				m.ref[j].indexed = false;
			}
		}
	}

	st = tu_stats(m.e);
	print_message("%" PRIu32 " ops in %" PRIu64 " ms: %" PRIu64
		      " values verified, %" PRIu64 " evicted-key misses, "
		      "%" PRIu64 " evictions, %" PRIu64 " expirations, "
		      "%" PRIu64 " moves\n",
		      nops, clock_mono_ms() - t_start, m.verified,
		      m.evicted_misses, st.evictions, st.expirations, st.moves);

	/* The counters saw what the test did. */
	assert_int_equal(st.sets, m.sets);
	assert_int_equal(st.hits, m.get_hits);
	assert_int_equal(st.hits + st.misses, m.gets);
	/* The run exercised both hits and evictions. */
	assert_true(m.verified > nops / 20);
	assert_true(st.evictions > 0);
	assert_true(m.evicted_misses > 0);

	final_compare(&m);
	free(m.ref);
	free(m.buf);
	free(m.want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_model_random_ops_match_reference, tu_region_setup,
			tu_region_teardown),
	};

	return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
