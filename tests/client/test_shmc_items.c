/*
 * test_shmc_items.c - libshmc against the real daemon: the item model:
 * flags and versions through shmc_get_item, the conditional stores (add,
 * replace, cas, append, prepend) with memcached's edge cases, the
 * counters (incr, decr, with and without init), their atomicity across
 * processes, and stale-while-revalidate (shmc_get_or_load_swr).
 *
 * Fixtures and helpers: shmc_fixture.h.
 */
#include "shmc_fixture.h"

/* The value and metadata of a C-string key; the value NUL-terminated. */
static int get_item_str(shmc *c, const char *k, char *buf, size_t cap,
			struct shmc_item *it)
{
	int rc = shmc_get_item(c, k, strlen(k), buf, cap - 1, it);

	if (rc == 0)
		buf[it->vlen] = '\0';
	return rc;
}

static void expect_item(shmc *c, const char *k, const char *v, uint32_t flags)
{
	struct shmc_item it;
	char buf[128];

	assert_rc(get_item_str(c, k, buf, sizeof(buf), &it), 0);
	assert_string_equal(buf, v);
	assert_int_equal(it.vlen, strlen(v));
	assert_int_equal(it.flags, flags);
}

#define S(str) str, strlen(str)

static void test_shmc_items_flags_round_trip(void **state)
{
	struct fx *f = *state;
	struct shmc_store_opts o = { .flags = 0xdeadbeef, .ttl_s = 100 };
	struct shmc_item it;
	uint64_t cas = 0;
	char buf[8];

	assert_rc(shmc_set_ex(f->c, S("k"), S("value"), &o, &cas), 0);
	assert_rc(shmc_get_item(f->c, S("k"), buf, sizeof(buf), &it), 0);
	assert_memory_equal(buf, "value", 5);
	assert_int_equal(it.vlen, 5);
	assert_int_equal(it.flags, 0xdeadbeef);
	assert_int_equal(it.cas, cas);
	uint32_t exp = 0;
	size_t n;
	assert_rc(shmc_get_ex(f->c, S("k"), buf, sizeof(buf), &n, &exp), 0);
	assert_int_equal(it.expire_at, exp);
	assert_true(exp != 0);

	/* A short buffer: the length needed, nothing else promised. */
	memset(&it, 0, sizeof(it));
	assert_rc(shmc_get_item(f->c, S("k"), buf, 4, &it), -ENOBUFS);
	assert_int_equal(it.vlen, 5);
	assert_rc(shmc_get_item(f->c, S("k"), NULL, 0, &it), -ENOBUFS);
	assert_int_equal(it.vlen, 5);
	assert_rc(shmc_get_item(f->c, S("nope"), buf, sizeof(buf), &it),
		  -ENOENT);
	assert_rc(shmc_get_item(f->c, S("k"), buf, sizeof(buf), NULL), -EINVAL);

	/* Each store sets the flags it is given; append, prepend and the
	 * counters keep them; a plain shmc_set() stores 0; no options are
	 * flags 0. */
	o = (struct shmc_store_opts){ .flags = 7 };
	assert_rc(shmc_replace(f->c, S("k"), S("12"), &o, NULL), 0);
	expect_item(f->c, "k", "12", 7);
	assert_rc(shmc_append(f->c, S("k"), S("3"), NULL), 0);
	expect_item(f->c, "k", "123", 7);
	assert_rc(shmc_prepend(f->c, S("k"), S("4"), NULL), 0);
	expect_item(f->c, "k", "4123", 7);
	assert_rc(shmc_incr(f->c, S("k"), 1, NULL), 0);
	expect_item(f->c, "k", "4124", 7);
	assert_rc(shmc_decr(f->c, S("k"), 4, NULL), 0);
	expect_item(f->c, "k", "4120", 7);
	assert_rc(shmc_get_item(f->c, S("k"), buf, sizeof(buf), &it), 0);
	o.flags = 9;
	assert_rc(shmc_cas(f->c, S("k"), S("c"), it.cas, &o, NULL), 0);
	expect_item(f->c, "k", "c", 9);
	assert_rc(shmc_set(f->c, S("k"), S("plain"), 0), 0);
	expect_item(f->c, "k", "plain", 0);
	o.flags = UINT32_MAX;
	assert_rc(shmc_add(f->c, S("a"), S("x"), &o, NULL), 0);
	expect_item(f->c, "a", "x", UINT32_MAX);
	assert_rc(shmc_set_ex(f->c, S("a"), S("y"), NULL, NULL), 0);
	expect_item(f->c, "a", "y", 0);
	/* And through the cache-aside path's stored value. */
	int calls = 0;
	assert_rc(shmc_get_or_load(f->c, S("a"), buf, sizeof(buf), &n,
				   never_load, &calls),
		  0);
	assert_int_equal(calls, 0);
	expect_item(f->c, "a", "y", 0);
}

static void test_shmc_items_ttl_of_stores(void **state)
{
	struct fx *f = *state;
	struct shmc_store_opts o = { .ttl_s = 1000 };
	uint32_t t = 0;

	assert_rc(shmc_add(f->c, S("k"), S("v"), &o, NULL), 0);
	assert_rc(shmc_ttl(f->c, S("k"), &t), 0);
	assert_true(t > 990 && t <= 1000);
	/* replace takes its own TTL (0: none); append keeps the item's. */
	o.ttl_s = 0;
	assert_rc(shmc_replace(f->c, S("k"), S("v"), &o, NULL), 0);
	assert_rc(shmc_ttl(f->c, S("k"), &t), 0);
	assert_int_equal(t, 0);
	o.ttl_s = 500;
	assert_rc(shmc_set_ex(f->c, S("k"), S("v"), &o, NULL), 0);
	assert_rc(shmc_append(f->c, S("k"), S("w"), NULL), 0);
	assert_rc(shmc_ttl(f->c, S("k"), &t), 0);
	assert_true(t > 490 && t <= 500);
}

static void test_shmc_items_add(void **state)
{
	struct fx *f = *state;
	uint64_t cas = 0;
	struct shmc_item it;
	char buf[16];

	assert_rc(shmc_add(f->c, S("k"), S("first"), NULL, &cas), 0);
	assert_rc(shmc_get_item(f->c, S("k"), buf, sizeof(buf), &it), 0);
	assert_int_equal(it.cas, cas);
	/* Present: refused, nothing changed (value, version). */
	assert_rc(shmc_add(f->c, S("k"), S("second"), NULL, NULL), -EEXIST);
	expect_item(f->c, "k", "first", 0);
	assert_rc(shmc_get_item(f->c, S("k"), buf, sizeof(buf), &it), 0);
	assert_int_equal(it.cas, cas);
	/* Deleted: absent again. */
	assert_rc(shmc_del(f->c, S("k")), 0);
	assert_rc(shmc_add(f->c, S("k"), S("third"), NULL, NULL), 0);
	expect_item(f->c, "k", "third", 0);
	assert_says(-EEXIST, "exists", NULL);
}

static void test_shmc_items_replace(void **state)
{
	struct fx *f = *state;
	struct shmc_store_opts o = { .flags = 3 };

	/* Absent: refused, and nothing is created. */
	assert_rc(shmc_replace(f->c, S("k"), S("v"), &o, NULL), -ENOENT);
	expect_missing(f->c, "k");
	set_str(f->c, "k", "old", 0);
	assert_rc(shmc_replace(f->c, S("k"), S("new"), &o, NULL), 0);
	expect_item(f->c, "k", "new", 3);
}

static void test_shmc_items_cas(void **state)
{
	struct fx *f = *state;
	struct shmc_item it;
	uint64_t v1 = 0, v2 = 0, v3 = 0;
	char buf[16];

	/* Never stored: gone. */
	assert_rc(shmc_cas(f->c, S("k"), S("x"), 12345, NULL, NULL), -ENOENT);
	expect_missing(f->c, "k");

	assert_rc(shmc_set_ex(f->c, S("k"), S("a"), NULL, &v1), 0);
	assert_rc(shmc_cas(f->c, S("k"), S("b"), v1, NULL, &v2), 0);
	assert_true(v2 != v1);
	expect_item(f->c, "k", "b", 0);
	/* The version read before that write: changed since. */
	assert_rc(shmc_cas(f->c, S("k"), S("c"), v1, NULL, NULL), -EEXIST);
	expect_item(f->c, "k", "b", 0);
	/* Every write gives a new version; a touch keeps it. */
	assert_rc(shmc_append(f->c, S("k"), S("b"), &v3), 0);
	assert_true(v3 != v2);
	assert_rc(shmc_touch(f->c, S("k"), 100), 0);
	assert_rc(shmc_get_item(f->c, S("k"), buf, sizeof(buf), &it), 0);
	assert_int_equal(it.cas, v3);
	assert_rc(shmc_cas(f->c, S("k"), S("c"), v2, NULL, NULL), -EEXIST);
	/* Deleted since it was read: gone, not changed. */
	assert_rc(shmc_del(f->c, S("k")), 0);
	assert_rc(shmc_cas(f->c, S("k"), S("c"), v3, NULL, NULL), -ENOENT);
	expect_missing(f->c, "k");
}

static void test_shmc_items_append_prepend(void **state)
{
	struct fx *f = *state;
	struct shmc_store_opts o = { .flags = 5 };

	/* Absent: refused, nothing created. */
	assert_rc(shmc_append(f->c, S("k"), S("x"), NULL), -ENOENT);
	assert_rc(shmc_prepend(f->c, S("k"), S("x"), NULL), -ENOENT);
	expect_missing(f->c, "k");

	assert_rc(shmc_set_ex(f->c, S("k"), S("mid"), &o, NULL), 0);
	assert_rc(shmc_append(f->c, S("k"), S("-end"), NULL), 0);
	assert_rc(shmc_prepend(f->c, S("k"), S("start-"), NULL), 0);
	expect_item(f->c, "k", "start-mid-end", 5);
	/* Appending nothing is a write that changes no byte. */
	assert_rc(shmc_append(f->c, S("k"), "", 0, NULL), 0);
	expect_item(f->c, "k", "start-mid-end", 5);

	/* Past the largest item: -E2BIG, the value unchanged. */
	size_t max = shmc_max_item(f->c);
	char *half = malloc(max / 2 + 1);
	assert_non_null(half);
	memset(half, 'h', max / 2 + 1);
	assert_rc(shmc_set(f->c, S("h"), half, max / 2, 0), 0);
	assert_rc(shmc_append(f->c, S("h"), half, max / 2 + 1, NULL), -E2BIG);
	size_t n = 0;
	assert_rc(shmc_get(f->c, S("h"), NULL, 0, &n), -ENOBUFS);
	assert_int_equal(n, max / 2);
	free(half);
}

static void test_shmc_items_incr_decr(void **state)
{
	struct fx *f = *state;
	uint64_t v = 0;

	set_str(f->c, "n", "10", 0);
	assert_rc(shmc_incr(f->c, S("n"), 5, &v), 0);
	assert_int_equal(v, 15);
	expect_str(f->c, "n", "15");
	assert_rc(shmc_decr(f->c, S("n"), 3, &v), 0);
	assert_int_equal(v, 12);
	/* decr stops at 0, it never goes negative. */
	assert_rc(shmc_decr(f->c, S("n"), 20, &v), 0);
	assert_int_equal(v, 0);
	expect_str(f->c, "n", "0");
	/* incr wraps around at 2^64. */
	set_str(f->c, "n", "18446744073709551615", 0);
	assert_rc(shmc_incr(f->c, S("n"), 2, &v), 0);
	assert_int_equal(v, 1);
	expect_str(f->c, "n", "1");
	/* A result with more digits than the value had. */
	set_str(f->c, "n", "9", 0);
	assert_rc(shmc_incr(f->c, S("n"), 1, NULL), 0);
	expect_str(f->c, "n", "10");

	/* Not a number: refused, the value left as it was. */
	set_str(f->c, "s", "abc", 0);
	assert_rc(shmc_incr(f->c, S("s"), 1, &v), -EDOM);
	assert_rc(shmc_decr(f->c, S("s"), 1, &v), -EDOM);
	expect_str(f->c, "s", "abc");
	set_str(f->c, "s", "-1", 0);
	assert_rc(shmc_incr(f->c, S("s"), 1, &v), -EDOM);
	set_str(f->c, "s", "18446744073709551616", 0); /* 2^64 */
	assert_rc(shmc_incr(f->c, S("s"), 1, &v), -EDOM);
	expect_str(f->c, "s", "18446744073709551616");
	assert_rc(shmc_incr_init(f->c, S("s"), 1, 0, 0, &v), -EDOM);
	assert_says(-EDOM, "not a number", NULL);

	/* Missing: nothing is created without init. */
	assert_rc(shmc_incr(f->c, S("m"), 1, &v), -ENOENT);
	assert_rc(shmc_decr(f->c, S("m"), 1, &v), -ENOENT);
	expect_missing(f->c, "m");
}

static void test_shmc_items_incr_init(void **state)
{
	struct fx *f = *state;
	uint64_t v = 0;
	uint32_t t = 0;

	/* Missing: created at init, then the delta applied (nginx). */
	assert_rc(shmc_incr_init(f->c, S("m"), 5, 10, 0, &v), 0);
	assert_int_equal(v, 15);
	expect_str(f->c, "m", "15");
	assert_rc(shmc_ttl(f->c, S("m"), &t), 0);
	assert_int_equal(t, 0);
	/* Present: init and its TTL are ignored. */
	assert_rc(shmc_incr_init(f->c, S("m"), 1, 1000, 60, &v), 0);
	assert_int_equal(v, 16);
	assert_rc(shmc_ttl(f->c, S("m"), &t), 0);
	assert_int_equal(t, 0);
	/* decr with init: created at init, decremented, floored at 0. */
	assert_rc(shmc_decr_init(f->c, S("d"), 5, 3, 0, &v), 0);
	assert_int_equal(v, 0);
	assert_rc(shmc_decr_init(f->c, S("d2"), 1, 10, 0, &v), 0);
	assert_int_equal(v, 9);
	/* init_ttl gives the created key its TTL. */
	assert_rc(shmc_incr_init(f->c, S("t"), 1, 0, 300, &v), 0);
	assert_int_equal(v, 1);
	assert_rc(shmc_ttl(f->c, S("t"), &t), 0);
	assert_true(t > 290 && t <= 300);
}

/* ------------------------------------------------------------------------
 * Atomicity across processes
 * ------------------------------------------------------------------------ */

#define AT_PROCS 4
#define AT_INCRS 3000 /* per process, over AT_KEYS keys */
#define AT_KEYS 3
#define AT_CAS 400 /* CAS-loop increments per process */

struct at_shared {
	int go;
	int add_wins;
	int cas_retries;
};

struct at_arg {
	const char *sock;
	struct at_shared *sh;
};

static void at_child(void *p)
{
	struct at_arg *a = p;
	char key[8], buf[32];
	shmc *c;

	CHILD_RC(shmc_open(&c, a->sock), 0);
	CHILD_CHECK(wait_flag(&a->sh->go, HANG_MS));
	/* One add race: exactly one process wins. */
	int rc = shmc_add(c, S("winner"), S("me"), NULL, NULL);
	CHILD_CHECK(rc == 0 || rc == -EEXIST);
	if (rc == 0)
		__atomic_fetch_add(&a->sh->add_wins, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < AT_INCRS; i++) {
		snprintf(key, sizeof(key), "ctr%d", i % AT_KEYS);
		CHILD_RC(shmc_incr(c, key, strlen(key), 1, NULL), 0);
		CHILD_RC(shmc_incr_init(c, S("created"), 1, 0, 0, NULL), 0);
	}
	/* Read, compute, compare-and-swap, retry when another won. */
	for (int i = 0; i < AT_CAS; i++) {
		for (;;) {
			struct shmc_item it;
			CHILD_RC(shmc_get_item(c, S("text"), buf,
					       sizeof(buf) - 1, &it),
				 0);
			buf[it.vlen] = '\0';
			unsigned long n = strtoul(buf, NULL, 10) + 1;
			int len = snprintf(buf, sizeof(buf), "%lu", n);
			rc = shmc_cas(c, S("text"), buf, (size_t)len, it.cas,
				      NULL, NULL);
			if (rc == 0)
				break;
			CHILD_RC(rc, -EEXIST);
			__atomic_fetch_add(&a->sh->cas_retries, 1,
					   __ATOMIC_RELAXED);
		}
	}
	shmc_close(c);
}

static void test_shmc_items_atomic_across_processes(void **state)
{
	struct fx *f = *state;
	struct at_shared *sh = shared_page();
	struct at_arg a = { f->d.sock, sh };
	pid_t kids[AT_PROCS];
	uint64_t v;
	char key[8], want[32];

	for (int k = 0; k < AT_KEYS; k++) {
		snprintf(key, sizeof(key), "ctr%d", k);
		set_str(f->c, key, "0", 0);
	}
	set_str(f->c, "text", "0", 0);
	for (int i = 0; i < AT_PROCS; i++)
		kids[i] = spawn(at_child, &a);
	set_flag(&sh->go);
	for (int i = 0; i < AT_PROCS; i++)
		assert_int_equal(wait_child(kids[i], HANG_MS), 0);

	assert_int_equal(sh->add_wins, 1);
	expect_str(f->c, "winner", "me");
	for (int k = 0; k < AT_KEYS; k++) {
		snprintf(key, sizeof(key), "ctr%d", k);
		snprintf(want, sizeof(want), "%d",
			 AT_PROCS * AT_INCRS / AT_KEYS);
		expect_str(f->c, key, want);
	}
	assert_rc(shmc_incr(f->c, S("created"), 0, &v), 0);
	assert_int_equal(v, AT_PROCS * AT_INCRS);
	snprintf(want, sizeof(want), "%d", AT_PROCS * AT_CAS);
	expect_str(f->c, "text", want);
	munmap(sh, 4096);
}

/* ------------------------------------------------------------------------
 * Stale-while-revalidate
 * ------------------------------------------------------------------------ */

/* What swr_load stores, and how the test steers it. */
struct swr {
	const char *val;
	uint32_t ttl;
	int rc; /* returned instead of a value when not 0 */
	int calls;
	volatile int in_loader, release; /* block until release, if set */
	bool block;
};

static int swr_load(const void *key, size_t klen, void *buf, size_t cap,
		    size_t *vlen, uint32_t *ttl_s, void *arg)
{
	struct swr *s = arg;

	(void)key;
	(void)klen;
	__atomic_fetch_add(&s->calls, 1, __ATOMIC_RELAXED);
	if (s->block) {
		set_flag(&s->in_loader);
		if (!wait_flag(&s->release, HANG_MS))
			return -ETIMEDOUT;
	}
	if (s->rc)
		return s->rc;
	size_t len = strlen(s->val);
	if (len <= cap)
		memcpy(buf, s->val, len);
	*vlen = len;
	*ttl_s = s->ttl;
	return 0;
}

/* Stores key's value through swr with a TTL of 1 s and a minute's grace,
 * then waits until the TTL has passed (the daemon's clock is real time,
 * ticked in whole seconds): a plain get misses, the value is stale. */
static void swr_store_and_age(shmc *c, const char *key, const char *val)
{
	struct swr s = { .val = val, .ttl = 1 };
	char buf[32];
	size_t n = 0;

	assert_rc(shmc_get_or_load_swr(c, key, strlen(key), buf, sizeof(buf),
				       &n, 60, swr_load, &s),
		  0);
	assert_int_equal(s.calls, 1);
	expect_str(c, key, val);
	uint64_t end = clock_mono_ms() + HANG_MS;
	while (shmc_get(c, key, strlen(key), buf, sizeof(buf), &n) == 0 &&
	       clock_mono_ms() < end)
		sleep_ms(50);
	expect_missing(c, key);
}

struct swr_thread {
	shmc *c;
	struct swr *s;
	int rc;
	size_t n;
	char buf[32];
};

static void *swr_reloader(void *p)
{
	struct swr_thread *t = p;

	t->rc = shmc_get_or_load_swr(t->c, S("page"), t->buf, sizeof(t->buf),
				     &t->n, 60, swr_load, t->s);
	return NULL;
}

struct swr_child_arg {
	const char *sock;
};

/* Another process, during the reload: served the stale value, its
 * loader never called. */
static void swr_stale_child(void *p)
{
	struct swr_child_arg *a = p;
	char buf[32];
	size_t n = 0;
	int calls = 0;
	shmc *c;

	CHILD_RC(shmc_open(&c, a->sock), 0);
	CHILD_RC(shmc_get_or_load_swr(c, S("page"), buf, sizeof(buf), &n, 60,
				      never_load, &calls),
		 0);
	CHILD_CHECK(calls == 0);
	CHILD_CHECK(n == 5 && memcmp(buf, "old-1", 5) == 0);
	shmc_close(c);
}

static void test_shmc_items_swr_one_reloads_others_stale(void **state)
{
	struct fx *f = *state;
	struct swr s = { .val = "new-2", .ttl = 100, .block = true };
	struct swr_thread t = { .s = &s };
	struct swr_child_arg ca = { f->d.sock };
	pthread_t th;
	char buf[32];
	size_t n = 0;
	int calls = 0;

	swr_store_and_age(f->c, "page", "old-1");
	assert_rc(shmc_open(&t.c, f->d.sock), 0);
	assert_int_equal(pthread_create(&th, NULL, swr_reloader, &t), 0);
	assert_true(wait_flag(&s.in_loader, HANG_MS));

	/* The reloader is inside its loader: this handle and another
	 * process are served the stale value, without waiting for it. */
	assert_rc(shmc_get_or_load_swr(f->c, S("page"), buf, sizeof(buf), &n,
				       60, never_load, &calls),
		  0);
	assert_int_equal(calls, 0);
	assert_int_equal(n, 5);
	assert_memory_equal(buf, "old-1", 5);
	assert_int_equal(wait_child(spawn(swr_stale_child, &ca), HANG_MS), 0);
	/* shmc_get_or_load() serves it stale too; plain reads miss. */
	assert_rc(shmc_get_or_load(f->c, S("page"), buf, sizeof(buf), &n,
				   never_load, &calls),
		  0);
	assert_int_equal(calls, 0);
	expect_missing(f->c, "page");

	set_flag(&s.release);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_rc(t.rc, 0);
	assert_int_equal(s.calls, 1);
	assert_int_equal(t.n, 5);
	assert_memory_equal(t.buf, "new-2", 5);
	expect_str(f->c, "page", "new-2");
	shmc_close(t.c);
}

static void test_shmc_items_swr_failed_reload_ends_flight(void **state)
{
	struct fx *f = *state;
	struct swr bad = { .rc = -EIO };
	struct swr good = { .val = "fresh", .ttl = 100 };
	char buf[32];
	size_t n = 0;

	swr_store_and_age(f->c, "page", "stale");
	assert_rc(shmc_get_or_load_swr(f->c, S("page"), buf, sizeof(buf), &n,
				       60, swr_load, &bad),
		  -EIO);
	assert_int_equal(bad.calls, 1);
	/* The failed reload ended its flight: the next caller reloads
	 * (rather than being served the stale value for ever). */
	assert_rc(shmc_get_or_load_swr(f->c, S("page"), buf, sizeof(buf), &n,
				       60, swr_load, &good),
		  0);
	assert_int_equal(good.calls, 1);
	assert_int_equal(n, 5);
	assert_memory_equal(buf, "fresh", 5);
	expect_str(f->c, "page", "fresh");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_shmc_items_flags_round_trip),
		T(test_shmc_items_ttl_of_stores),
		T(test_shmc_items_add),
		T(test_shmc_items_replace),
		T(test_shmc_items_cas),
		T(test_shmc_items_append_prepend),
		T(test_shmc_items_incr_decr),
		T(test_shmc_items_incr_init),
		T(test_shmc_items_atomic_across_processes),
		T(test_shmc_items_swr_one_reloads_others_stale),
		T(test_shmc_items_swr_failed_reload_ends_flight),
	};

	tdaemon_binary(); /* exits 77 without $SHMC_DAEMON */
	/* SHMC_TEST_FILTER=test_shmc_items_cas*: only the cases it matches. */
	if (getenv("SHMC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SHMC_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
