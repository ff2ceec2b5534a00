/*
 * test_shmc_load.c - libshmc against the real daemon: shmc_get_or_load:
 * one caller, a herd of processes and of threads loading the same key
 * (the loader runs once), a loader that fails, and a loader that dies
 * (a waiter takes over).
 *
 * Fixtures and helpers: shmc_fixture.h.
 */
#include "shmc_fixture.h"

struct load_arg {
	const char *val;
	uint32_t ttl;
	int rc;
	int calls;
	bool call_shmc; /* the loader uses the cache itself */
	shmc *c;
	char seen_key[32];
	size_t seen_klen, seen_cap;
};

static int simple_load(const void *key, size_t klen, void *buf, size_t cap,
		       size_t *vlen, uint32_t *ttl_s, void *arg)
{
	struct load_arg *a = arg;
	size_t len = strlen(a->val);

	a->calls++;
	a->seen_klen = klen;
	a->seen_cap = cap;
	memcpy(a->seen_key, key, klen < 32 ? klen : 32);
	if (a->call_shmc) {
		char b[16];
		size_t n;

		/* No lock is held: other keys are usable from here. */
		if (shmc_set(a->c, "side", 4, "effect", 6, 0) != 0 ||
		    shmc_get(a->c, "side", 4, b, sizeof(b), &n) != 0)
			return -EBADE;
	}
	memcpy(buf, a->val, len < cap ? len : cap);
	*vlen = len;
	*ttl_s = a->ttl;
	return a->rc;
}

static void test_shmc_get_or_load_single(void **state)
{
	struct fx *f = *state;
	struct load_arg a = { .val = "loaded!", .ttl = 100, .c = f->c };
	char buf[64];
	size_t n = 0;
	uint32_t t;

	/* A miss runs the loader, stores and returns its value. */
	assert_rc(shmc_get_or_load(f->c, "lk", 2, buf, sizeof(buf), &n,
				   simple_load, &a),
		  0);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.seen_klen, 2);
	assert_memory_equal(a.seen_key, "lk", 2);
	assert_int_equal(n, 7);
	assert_memory_equal(buf, "loaded!", 7);
	expect_str(f->c, "lk", "loaded!");
	assert_rc(shmc_ttl(f->c, "lk", 2, &t), 0);
	if (t != 99 && t != 100)
		fail_msg("ttl %u of a value loaded with TTL 100", t);

	/* A hit does not call it. */
	n = 0;
	assert_rc(shmc_get_or_load(f->c, "lk", 2, buf, sizeof(buf), &n,
				   simple_load, &a),
		  0);
	assert_int_equal(a.calls, 1);
	assert_int_equal(n, 7);
	assert_memory_equal(buf, "loaded!", 7);

	/* A failing loader's error goes to the caller; nothing is stored. */
	a = (struct load_arg){ .val = "x", .rc = -EIO };
	assert_rc(shmc_get_or_load(f->c, "bad", 3, buf, sizeof(buf), &n,
				   simple_load, &a),
		  -EIO);
	assert_int_equal(a.calls, 1);
	expect_missing(f->c, "bad");

	/* A value longer than cap: -ENOBUFS, *vlen, not stored. */
	a = (struct load_arg){ .val = "0123456789abcdef" };
	n = 0;
	assert_rc(shmc_get_or_load(f->c, "long", 4, buf, 8, &n, simple_load,
				   &a),
		  -ENOBUFS);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.seen_cap, 8);
	assert_int_equal(n, 16);
	expect_missing(f->c, "long");

	/* The loader may call shmc functions. */
	a = (struct load_arg){ .val = "v", .call_shmc = true, .c = f->c };
	assert_rc(shmc_get_or_load(f->c, "nested", 6, buf, sizeof(buf), &n,
				   simple_load, &a),
		  0);
	assert_int_equal(a.calls, 1);
	expect_str(f->c, "nested", "v");
	expect_str(f->c, "side", "effect");
}

/* State shared by the processes of the get_or_load cases. */
struct herd {
	int loads;     /* loader runs, all processes */
	int a_loading; /* the first loader has started */
	int a_done;    /* the first loader has returned */
	int b_saw_a_done;
	int b_loads;
	int calling; /* the waiter is about to call get_or_load */
	int killed;  /* the parent is killing the loader */
	int claimed; /* the doomed loader runs */
};

#define HERD_N 8
#define HERD_VAL "the one loaded value"

struct herd_arg {
	const char *sock;
	struct herd *h;
	int barrier[2];
	int ready[2];
};

static int herd_load(const void *key, size_t klen, void *buf, size_t cap,
		     size_t *vlen, uint32_t *ttl_s, void *arg)
{
	struct herd *h = arg;
	size_t len = strlen(HERD_VAL);

	(void)key, (void)klen;
	sleep_ms(200);
	__atomic_fetch_add(&h->loads, 1, __ATOMIC_SEQ_CST);
	if (cap < len)
		return -ENOSPC;
	memcpy(buf, HERD_VAL, len);
	*vlen = len;
	*ttl_s = 0;
	return 0;
}

static void herd_child(void *p)
{
	struct herd_arg *a = p;
	char buf[64], b;
	size_t n = 0;
	shmc *c;

	close(a->barrier[1]);
	close(a->ready[0]);
	CHILD_RC(shmc_open(&c, a->sock), 0);
	CHILD_CHECK(write(a->ready[1], "r", 1) == 1);
	close(a->ready[1]);
	/* Released all at once, when the parent closes the barrier. */
	CHILD_CHECK(read(a->barrier[0], &b, 1) == 0);
	CHILD_RC(shmc_get_or_load(c, "herd", 4, buf, sizeof(buf), &n, herd_load,
				  a->h),
		 0);
	CHILD_CHECK(n == strlen(HERD_VAL) && memcmp(buf, HERD_VAL, n) == 0);
	shmc_close(c);
}

static void test_shmc_get_or_load_herd(void **state)
{
	struct fx *f = *state;
	struct herd_arg a = { .sock = f->d.sock, .h = shared_page() };
	pid_t kids[HERD_N];
	char b[HERD_N];

	assert_int_equal(pipe(a.barrier), 0);
	assert_int_equal(pipe(a.ready), 0);
	for (int i = 0; i < HERD_N; i++)
		kids[i] = spawn(herd_child, &a);
	close(a.ready[1]);
	close(a.barrier[0]);
	assert_int_equal(read_full(a.ready[0], b, HERD_N), HERD_N);
	close(a.ready[0]);
	close(a.barrier[1]); /* go */
	for (int i = 0; i < HERD_N; i++)
		assert_int_equal(wait_child(kids[i], HANG_MS), 0);
	assert_int_equal(a.h->loads, 1);
	expect_str(f->c, "herd", HERD_VAL);
	munmap(a.h, 4096);
}

/* The same race between the threads of one process, on one handle. */
#define HT_N 4

struct ht_arg {
	shmc *c;
	struct herd *h;
	pthread_barrier_t *go;
	int rc;
	size_t n;
	char buf[64];
};

static void *ht_worker(void *p)
{
	struct ht_arg *a = p;

	pthread_barrier_wait(a->go);
	a->rc = shmc_get_or_load(a->c, "thherd", 6, a->buf, sizeof(a->buf),
				 &a->n, herd_load, a->h);
	return NULL;
}

static void test_shmc_get_or_load_threads(void **state)
{
	struct fx *f = *state;
	struct herd h = { 0 };
	struct ht_arg a[HT_N];
	pthread_barrier_t go;
	pthread_t t[HT_N];

	assert_int_equal(pthread_barrier_init(&go, NULL, HT_N), 0);
	for (int i = 0; i < HT_N; i++) {
		memset(&a[i], 0, sizeof(a[i]));
		a[i].c = f->c;
		a[i].h = &h;
		a[i].go = &go;
		assert_int_equal(pthread_create(&t[i], NULL, ht_worker, &a[i]),
				 0);
	}
	for (int i = 0; i < HT_N; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&go);
	for (int i = 0; i < HT_N; i++) {
		assert_rc(a[i].rc, 0);
		assert_int_equal(a[i].n, strlen(HERD_VAL));
		assert_memory_equal(a[i].buf, HERD_VAL, a[i].n);
	}
	assert_int_equal(h.loads, 1);
}

/* The first caller's loader fails after 200 ms; the second caller, who
 * waited meanwhile, runs its own and gets its value. */
static int fail_load(const void *key, size_t klen, void *buf, size_t cap,
		     size_t *vlen, uint32_t *ttl_s, void *arg)
{
	struct herd *h = arg;

	(void)key, (void)klen, (void)buf, (void)cap, (void)vlen, (void)ttl_s;
	__atomic_fetch_add(&h->loads, 1, __ATOMIC_SEQ_CST);
	set_flag(&h->a_loading);
	sleep_ms(200);
	set_flag(&h->a_done);
	return -EIO;
}

static int b_load(const void *key, size_t klen, void *buf, size_t cap,
		  size_t *vlen, uint32_t *ttl_s, void *arg)
{
	struct herd *h = arg;

	(void)key, (void)klen;
	__atomic_fetch_add(&h->b_loads, 1, __ATOMIC_SEQ_CST);
	/* Was the failed load over before this one started? */
	h->b_saw_a_done = __atomic_load_n(&h->a_done, __ATOMIC_ACQUIRE);
	if (cap < 7)
		return -ENOSPC;
	memcpy(buf, "value-B", 7);
	*vlen = 7;
	*ttl_s = 0;
	return 0;
}

struct fail_arg {
	const char *sock;
	struct herd *h;
};

static void fail_first(void *p)
{
	struct fail_arg *a = p;
	char buf[32];
	size_t n;
	shmc *c;

	CHILD_RC(shmc_open(&c, a->sock), 0);
	CHILD_RC(shmc_get_or_load(c, "flaky", 5, buf, sizeof(buf), &n,
				  fail_load, a->h),
		 -EIO);
	shmc_close(c);
}

static void fail_second(void *p)
{
	struct fail_arg *a = p;
	char buf[32];
	size_t n = 0;
	shmc *c;

	CHILD_RC(shmc_open(&c, a->sock), 0);
	CHILD_CHECK(wait_flag(&a->h->a_loading, HANG_MS));
	CHILD_RC(shmc_get_or_load(c, "flaky", 5, buf, sizeof(buf), &n, b_load,
				  a->h),
		 0);
	CHILD_CHECK(n == 7 && memcmp(buf, "value-B", 7) == 0);
	shmc_close(c);
}

static void test_shmc_get_or_load_loader_fails(void **state)
{
	struct fx *f = *state;
	struct fail_arg a = { f->d.sock, shared_page() };
	pid_t first, second;

	first = spawn(fail_first, &a);
	second = spawn(fail_second, &a);
	assert_int_equal(wait_child(first, HANG_MS), 0);
	assert_int_equal(wait_child(second, HANG_MS), 0);
	assert_int_equal(a.h->loads, 1);
	assert_int_equal(a.h->b_loads, 1);
	/* The second caller waited for the first, it did not load beside. */
	assert_int_equal(a.h->b_saw_a_done, 1);
	expect_str(f->c, "flaky", "value-B");
	munmap(a.h, 4096);
}

/* The loading process dies (SIGKILL while its loader blocks): the waiter
 * must take over promptly. */
static int stuck_load(const void *key, size_t klen, void *buf, size_t cap,
		      size_t *vlen, uint32_t *ttl_s, void *arg)
{
	struct herd *h = arg;

	(void)key, (void)klen, (void)buf, (void)cap, (void)vlen, (void)ttl_s;
	__atomic_fetch_add(&h->loads, 1, __ATOMIC_SEQ_CST);
	set_flag(&h->claimed);
	for (;;)
		pause();
	return -EIO;
}

static int takeover_load(const void *key, size_t klen, void *buf, size_t cap,
			 size_t *vlen, uint32_t *ttl_s, void *arg)
{
	struct herd *h = arg;

	(void)key, (void)klen;
	__atomic_fetch_add(&h->b_loads, 1, __ATOMIC_SEQ_CST);
	h->b_saw_a_done = __atomic_load_n(&h->killed, __ATOMIC_ACQUIRE);
	if (cap < 8)
		return -ENOSPC;
	memcpy(buf, "takeover", 8);
	*vlen = 8;
	*ttl_s = 0;
	return 0;
}

static void dies_loader(void *p)
{
	struct fail_arg *a = p;
	char buf[32];
	size_t n;
	shmc *c;

	CHILD_RC(shmc_open(&c, a->sock), 0);
	shmc_get_or_load(c, "orphan", 6, buf, sizeof(buf), &n, stuck_load,
			 a->h);
	_exit(3); /* never gets here */
}

static void dies_waiter(void *p)
{
	struct fail_arg *a = p;
	char buf[32];
	size_t n = 0;
	shmc *c;

	CHILD_RC(shmc_open(&c, a->sock), 0);
	set_flag(&a->h->calling);
	CHILD_RC(shmc_get_or_load(c, "orphan", 6, buf, sizeof(buf), &n,
				  takeover_load, a->h),
		 0);
	CHILD_CHECK(n == 8 && memcmp(buf, "takeover", 8) == 0);
	shmc_close(c);
}

static void test_shmc_get_or_load_loader_dies(void **state)
{
	struct fx *f = *state;
	struct fail_arg a = { f->d.sock, shared_page() };
	pid_t loader, waiter;
	uint64_t t0;
	int rc;

	loader = spawn(dies_loader, &a);
	if (!wait_flag(&a.h->claimed, HANG_MS)) {
		kill(loader, SIGKILL);
		fail_msg("the loader never started");
	}
	waiter = spawn(dies_waiter, &a);
	assert_true(wait_flag(&a.h->calling, HANG_MS));
	sleep_ms(200); /* the waiter is now waiting for the load */
	set_flag(&a.h->killed);
	t0 = clock_mono_ms();
	kill(loader, SIGKILL);
	assert_int_equal(wait_child(loader, HANG_MS), 128 + SIGKILL);
	rc = wait_child(waiter, HANG_MS);
	if (rc != 0)
		fail_msg("waiter: %d (%s) %llu ms after the loader was killed",
			 rc, rc == -ETIMEDOUT ? "still waiting" : "failed",
			 (unsigned long long)(clock_mono_ms() - t0));
	print_message("waiter done %llu ms after the loader died\n",
		      (unsigned long long)(clock_mono_ms() - t0));
	assert_int_equal(a.h->loads, 1);
	assert_int_equal(a.h->b_loads, 1);
	/* It waited while the loader lived. */
	assert_int_equal(a.h->b_saw_a_done, 1);
	expect_str(f->c, "orphan", "takeover");
	munmap(a.h, 4096);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_shmc_get_or_load_single),
		T(test_shmc_get_or_load_herd),
		T(test_shmc_get_or_load_threads),
		T(test_shmc_get_or_load_loader_fails),
		T(test_shmc_get_or_load_loader_dies),
	};

	tdaemon_binary(); /* exits 77 without $SHMC_DAEMON */
	/* SHMC_TEST_FILTER=test_shmc_ping*: only the cases it matches. */
	if (getenv("SHMC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SHMC_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
