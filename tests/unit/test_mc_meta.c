/*
 * test_mc_meta.c - memcached's meta protocol (daemon/mc_meta.c), driven through
 * mc_process() on a region of its own (mc_fixture.h).  A second attachment
 * to the fixture's region (client id 2) plays a mapped client calling the
 * engine's get_or_load, to check that meta leases and shmc_get_or_load
 * share one loader per key.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <unistd.h>

#include "testutil.h"
#include "mc_fixture.h"
#include "mc_int.h"

/* A reply built with printf's format, for the figures a test reads back
 * from the engine (versions). */
static const char *fmt(const char *f, ...)
{
	static char buf[4][512];
	static int next;
	char *b = buf[next++ % 4];
	va_list ap;

	va_start(ap, f);
	vsnprintf(b, sizeof(buf[0]), f, ap);
	va_end(ap);
	return b;
}

/* The version of key as the engine has it (stale items too). */
static uint64_t cas_of(struct mc_fx *f, const char *key)
{
	struct eng_info in;

	assert_rc(eng_inspect(&f->r.e, key, strlen(key), NULL, 0, &in), 0);
	return in.cas;
}

/* A mapped client: another attachment to the fixture's region. */
static void attach_mapped(struct mc_fx *f, struct eng *e2)
{
	assert_rc(eng_attach(e2, f->r.base, f->r.size, 2, NULL), 0);
}

static void advance(struct mc_fx *f, uint32_t s)
{
	eng_clock_set(&f->r.e, eng_now(&f->r.e) + s);
}

static void test_mc_meta_noop(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "mn\r\n", "MN\r\n");
}

static void test_mc_meta_set_then_get_returns_flags(void **state)
{
	struct mc_fx *f = *state;

	const char *r = mc_run(f, "ms foo 2 T30 F5 c\r\nhi\r\n");
	uint64_t cas = cas_of(f, "foo");
	assert_string_equal(r, fmt("HD c%llu\r\n", (unsigned long long)cas));
	assert_mc(f, "mg foo s v f t c k O123\r\n",
		  fmt("VA 2 s2 f5 t30 c%llu kfoo O123\r\nhi\r\n",
		      (unsigned long long)cas));
	/* Without v: HD and the flags only. */
	assert_mc(f, "mg foo s\r\n", "HD s2\r\n");
	assert_mc(f, "mg foo\r\n", "HD\r\n");
	/* t: -1 when it never expires. */
	assert_mc(f, "ms bar 3\r\nabc\r\n", "HD\r\n");
	assert_mc(f, "mg bar t v\r\n", "VA 3 t-1\r\nabc\r\n");
	/* What the text side of the engine sees: the same item. */
	tu_assert_value(&f->r.e, "foo", 3, "hi", 2);
	/* A value larger than the first read's guess. */
	char big[5000], req[5100];
	memset(big, 'z', sizeof(big));
	int n = snprintf(req, sizeof(req), "ms big %zu\r\n", sizeof(big));
	memcpy(req + n, big, sizeof(big));
	memcpy(req + n + sizeof(big), "\r\n", 3);
	assert_mc(f, req, "HD\r\n");
	r = mc_run(f, "mg big v s\r\n");
	assert_memory_equal(r, "VA 5000 s5000\r\nzzz", 18);
	assert_int_equal(f->out.len, 15 + 5000 + 2);
	assert_memory_equal(r + 15, big, sizeof(big));
}

static void test_mc_meta_miss_quiet_and_opaque(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "mg nope v\r\n", "EN\r\n");
	assert_mc(f, "mg nope v k Oab\r\n", "EN knope Oab\r\n");
	/* q: misses say nothing; mn marks the end of the batch. */
	assert_mc(f, "mg nope v q\r\nmg nope2 q\r\nmn\r\n", "MN\r\n");
	assert_mc(f, "ms a 1 q\r\n1\r\nms b 1 q Ox\r\n2\r\nmn\r\n", "MN\r\n");
	assert_mc(f, "mg a v q O1\r\nmg zz v q O2\r\nmg b v q O3\r\nmn\r\n",
		  "VA 1 O1\r\n1\r\nVA 1 O3\r\n2\r\nMN\r\n");
	/* Errors are not quiet. */
	assert_mc(f, "ms a 1 q MR C1\r\n3\r\nmn\r\n", "EX\r\nMN\r\n");
	assert_mc(f, "md nope q\r\nmd a q\r\nmn\r\n", "NF\r\nMN\r\n");
}

static void test_mc_meta_base64_keys(void **state)
{
	struct mc_fx *f = *state;

	/* "Zm9vAGJhcg==" is "foo\0bar": a key no text command can name. */
	assert_mc(f, "ms Zm9vAGJhcg== 2 b\r\nhi\r\n", "HD\r\n");
	tu_assert_value(&f->r.e, "foo\0bar", 7, "hi", 2);
	assert_mc(f, "mg Zm9vAGJhcg== b k v\r\n",
		  "VA 2 kZm9vAGJhcg== b\r\nhi\r\n");
	assert_mc(f, "ms Zm9v 1 b k\r\nx\r\n", "HD kZm9v b\r\n");
	assert_mc(f, "mg foo v\r\n", "VA 1\r\nx\r\n");
	const char *r = mc_run(f, "me Zm9v b\r\n");
	assert_non_null(strstr(r, fmt("ME Zm9v exp=-1 cas=%llu fetch=yes size=",
				      (unsigned long long)cas_of(f, "foo"))));
	assert_mc(f, "mg Zm9v= b v\r\n", "CLIENT_ERROR error decoding key\r\n");
	assert_mc(f, "md Zm9v b q\r\nmg foo v\r\n", "EN\r\n");
}

static void test_mc_meta_bad_requests_keep_the_connection(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "mg\r\n", "ERROR\r\n");
	assert_mc(f, "mg foo !\r\n", "CLIENT_ERROR invalid flag\r\n");
	assert_mc(f, "mg foo v v\r\n", "CLIENT_ERROR duplicate flag\r\n");
	assert_mc(f, "mg foo Tx\r\n",
		  "CLIENT_ERROR bad token in command line format\r\n");
	assert_mc(f, "mg foo N\r\n",
		  "CLIENT_ERROR bad token in command line format\r\n");
	assert_mc(f, "mg foo O123456789012345678901234567890123\r\n",
		  "CLIENT_ERROR opaque token too long\r\n");
	assert_mc(f, "mg foo a b c d e f g h i j k l m n o p q r s\r\n",
		  "CLIENT_ERROR options flags are too long\r\n");
	char key[MC_KEY_MAX + 16];
	memset(key, 'k', sizeof(key));
	snprintf(key + MC_KEY_MAX + 1, 15, " v\r\n");
	assert_mc(f, fmt("mg %s", key),
		  "CLIENT_ERROR bad command line format\r\n");
	/* E: versions are the engine's. */
	const char *r = mc_run(f, "mg foo E5\r\n");
	assert_non_null(strstr(r, "CLIENT_ERROR the E flag is not supported"));
	/* ms: a refused line's data block is skipped. */
	assert_mc(f, "ms foo 2 Z\r\nhi\r\nmn\r\n",
		  "CLIENT_ERROR invalid flag\r\nMN\r\n");
	assert_mc(f, "ms foo 2 MX\r\nhi\r\nmn\r\n",
		  "CLIENT_ERROR invalid mode for ms M token\r\nMN\r\n");
	r = mc_run(f, "ms foo 2 E9\r\nhi\r\nmn\r\n");
	assert_non_null(strstr(r, "CLIENT_ERROR the E flag"));
	assert_non_null(strstr(r, "\r\nMN\r\n"));
	assert_mc(f, "ms foo xx\r\nmn\r\n",
		  "CLIENT_ERROR bad command line format\r\nMN\r\n");
	assert_mc(f, "ms foo\r\nmn\r\n",
		  "CLIENT_ERROR bad command line format\r\nMN\r\n");
	assert_mc(f, "ms foo 2\r\nhello\r\nmn\r\n",
		  "CLIENT_ERROR bad data chunk\r\nERROR\r\nMN\r\n");
	/* Too large: refused, its block skipped. */
	size_t max = f->w.eng.g.max_kv;
	r = mc_run(f, fmt("ms foo %zu\r\n", max));
	assert_string_equal(r, "SERVER_ERROR object too large for cache\r\n");
	assert_int_equal(f->s.swallow, max + 2);
	f->s.swallow = 0;
	assert_mc(f, "ma foo !\r\n",
		  "CLIENT_ERROR invalid or duplicate flag\r\n");
	assert_mc(f, "ma foo MX\r\n",
		  "CLIENT_ERROR invalid mode for ma M token\r\n");
	assert_mc(f, "md foo Cx\r\n",
		  "CLIENT_ERROR bad token in command line format\r\n");
	assert_mc(f, "me\r\n", "CLIENT_ERROR bad command line format\r\n");
	/* Nothing was stored by any of them; the connection still works. */
	assert_mc(f, "mg foo v\r\nmn\r\n", "EN\r\nMN\r\n");
	assert_false(f->s.close);
}

static void test_mc_meta_cas_compare(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "ms k 2 C5\r\nv1\r\n", "NF\r\n");
	assert_mc(f, "ms k 2\r\nv1\r\n", "HD\r\n");
	uint64_t cas = cas_of(f, "k");
	assert_mc(f,
		  fmt("ms k 2 c C%llu\r\nv2\r\n", (unsigned long long)cas + 1),
		  "EX c0\r\n");
	tu_assert_value(&f->r.e, "k", 1, "v1", 2);
	const char *r = mc_run(f, fmt("ms k 2 c C%llu\r\nv2\r\n",
				      (unsigned long long)cas));
	uint64_t cas2 = cas_of(f, "k");
	assert_true(cas2 != cas);
	assert_string_equal(r, fmt("HD c%llu\r\n", (unsigned long long)cas2));
	/* mg C: no value when the client's copy is current. */
	assert_mc(f, fmt("mg k v C%llu\r\n", (unsigned long long)cas2),
		  "HD\r\n");
	assert_mc(f, fmt("mg k v C%llu\r\n", (unsigned long long)cas),
		  "VA 2\r\nv2\r\n");
	/* C0 never matches. */
	assert_mc(f, "ms k 2 C0\r\nv3\r\n", "EX\r\n");
	/* Replace mode with C is a CAS too. */
	assert_mc(f, fmt("ms k 2 MR C%llu\r\nv3\r\n", (unsigned long long)cas2),
		  "HD\r\n");
	tu_assert_value(&f->r.e, "k", 1, "v3", 2);
}

static void test_mc_meta_set_modes(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "ms k 2 ME\r\nv1\r\n", "HD\r\n");
	assert_mc(f, "ms k 2 ME\r\nv2\r\n", "NS\r\n");
	assert_mc(f, "ms r 2 MR\r\nv1\r\n", "NS\r\n");
	assert_mc(f, "ms k 2 MR F7\r\nv3\r\n", "HD\r\n");
	assert_mc(f, "ms k 1 MA s\r\nA\r\n", "HD s3\r\n");
	assert_mc(f, "ms k 1 MP\r\nP\r\n", "HD\r\n");
	/* Append and prepend keep the item's flags. */
	assert_mc(f, "mg k v f\r\n", "VA 4 f7\r\nPv3A\r\n");
	assert_mc(f, "ms k 1 MS\r\nS\r\n", "HD\r\n");
	assert_mc(f, "mg k v f\r\n", "VA 1 f0\r\nS\r\n");
	/* Append to a missing key: NS, or with N a new item. */
	assert_mc(f, "ms a 2 MA\r\nmo\r\n", "NS\r\n");
	assert_mc(f, "ms a 2 MA N30\r\nmo\r\n", "HD\r\n");
	assert_mc(f, "mg a s v t\r\n", "VA 2 s2 t30\r\nmo\r\n");
	assert_mc(f, "ms a 2 MA N30 s\r\nko\r\n", "HD s4\r\n");
	/* Append with C: compared first. */
	assert_mc(f, "ms a 1 MA C1\r\nx\r\n", "EX\r\n");
	assert_mc(f,
		  fmt("ms a 1 MA C%llu\r\nx\r\n",
		      (unsigned long long)cas_of(f, "a")),
		  "HD\r\n");
	tu_assert_value(&f->r.e, "a", 1, "mokox", 5);
	/* An exptime already past: the key is gone. */
	assert_mc(f, "ms a 1 T-1\r\nx\r\n", "HD\r\n");
	assert_mc(f, "mg a v\r\n", "EN\r\n");
}

static void test_mc_meta_delete(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "md k\r\n", "NF\r\n");
	assert_mc(f, "ms k 2\r\nv1\r\n", "HD\r\n");
	assert_mc(f, "md k C1 Oab k\r\n", "EX Oab kk\r\n");
	assert_mc(f,
		  fmt("md k C%llu Oab k\r\n",
		      (unsigned long long)cas_of(f, "k")),
		  "HD Oab kk\r\n");
	assert_mc(f, "mg k v\r\n", "EN\r\n");
	assert_mc(f, "ms k 2 F3 T100\r\nv1\r\n", "HD\r\n");
	assert_mc(f, "md k q\r\nmn\r\n", "MN\r\n");
	assert_mc(f, "mg k v\r\n", "EN\r\n");
	/* x: the item stays, with an empty value, flags F and TTL T. */
	assert_mc(f, "ms k 2 F3 T100\r\nv1\r\n", "HD\r\n");
	assert_mc(f, "md k x\r\n", "HD\r\n");
	assert_mc(f, "mg k v f t\r\n", "VA 0 f0 t-1\r\n\r\n");
}

static void test_mc_meta_arithmetic(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "ma n\r\n", "NF\r\n");
	assert_mc(f, "ma n O1 k\r\n", "NF O1 kn\r\n");
	/* N with J: created with the initial value, the delta not applied. */
	assert_mc(f, "ma n N0 J10 v\r\n", "VA 2\r\n10\r\n");
	assert_mc(f, "ma n v\r\n", "VA 2\r\n11\r\n");
	assert_mc(f, "ma n MD D5 v\r\n", "VA 1\r\n6\r\n");
	assert_mc(f, "ma n M- D100 v t\r\n", "VA 1 t-1\r\n0\r\n");
	assert_mc(f, "ma n M+ D7\r\n", "HD\r\n");
	assert_mc(f, "ma n MI D18446744073709551615 v\r\n",
		  "VA 1\r\n6\r\n"); /* wraps at 2^64 */
	assert_mc(f, "ma n T100 t v\r\n", "VA 1 t100\r\n7\r\n");
	assert_mc(f, "ma n q\r\nmn\r\n", "MN\r\n");
	tu_assert_value(&f->r.e, "n", 1, "8", 1);
	/* C: only if the version is still the one given. */
	assert_mc(f, "ma n C1\r\n", "EX\r\n");
	uint64_t cas = cas_of(f, "n");
	const char *r =
		mc_run(f, fmt("ma n C%llu c v\r\n", (unsigned long long)cas));
	assert_string_equal(r, fmt("VA 1 c%llu\r\n9\r\n",
				   (unsigned long long)cas_of(f, "n")));
	assert_mc(f, "ms s 3\r\nabc\r\n", "HD\r\n");
	assert_mc(f, "ma s\r\n",
		  "CLIENT_ERROR cannot increment or decrement non-numeric "
		  "value\r\n");
	assert_mc(f, "ma s Dx\r\n",
		  "CLIENT_ERROR invalid or duplicate flag\r\n");
	assert_int_equal(f->w.st.incr_hits, 7);
	assert_int_equal(f->w.st.decr_hits, 2);
	assert_int_equal(f->w.st.incr_misses, 2);
}

static void test_mc_meta_touch_hit_before_and_no_bump(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "ms k 2 T30\r\nv1\r\n", "HD\r\n");
	/* u reads without counting a use: h stays 0. */
	assert_mc(f, "mg k u h v\r\n", "VA 2 h0\r\nv1\r\n");
	assert_mc(f, "mg k h l\r\n", "HD h0 l0\r\n");
	assert_mc(f, "mg k h\r\n", "HD h1\r\n");
	/* T: a new TTL, counted as a touch. */
	assert_mc(f, "mg k T100 t\r\n", "HD t100\r\n");
	assert_mc(f, "mg k t\r\n", "HD t100\r\n");
	assert_int_equal(f->w.st.cmd_touch, 1);
	assert_int_equal(f->w.st.touch_hits, 1);
	assert_mc(f, "mg nope T100\r\n", "EN\r\n");
	assert_int_equal(f->w.st.touch_misses, 1);
	/* me: the engine's view, changing nothing. */
	const char *r = mc_run(f, "me k\r\n");
	assert_non_null(strstr(r, fmt("ME k exp=100 cas=%llu fetch=yes size=",
				      (unsigned long long)cas_of(f, "k"))));
	assert_mc(f, "me nope\r\n", "EN\r\n");
	assert_mc(f, "ms j 1\r\nj\r\n", "HD\r\n");
	r = mc_run(f, "me j\r\n");
	assert_non_null(strstr(r, "exp=-1"));
	assert_non_null(strstr(r, "fetch=no"));
}

/* u on a missing key (fuzz-mc's regress-mg-u-miss): the engine fills
 * nothing on a miss, and the get read its stale flag anyway, a load of an
 * undefined bool that UBSan reports. */
static void test_mc_meta_no_bump_get_of_a_miss(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "mg nope v u\r\n", "EN\r\n");
	assert_mc(f, "mg nope u q\r\nmn\r\n", "MN\r\n");
	/* With N it vivifies as without u. */
	assert_mc(f, "mg viv u s N30\r\n", "HD s0 W\r\n");
	assert_mc(f, "mg viv u s N30\r\n", "HD s0 Z\r\n");
	/* A stale item is served by the claim, as without u. */
	assert_mc(f, "ms st 1\r\na\r\n", "HD\r\n");
	assert_mc(f, "md st I\r\n", "HD\r\n");
	assert_mc(f, "mg st u v\r\n", "VA 1 X W\r\na\r\n");
}

static void test_mc_meta_invalidate_win_and_lose(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "ms toinv 3\r\nmoo\r\n", "HD\r\n");
	assert_mc(f, "mg toinv s v\r\n", "VA 3 s3\r\nmoo\r\n");
	assert_mc(f, "md toinv I T30\r\n", "HD\r\n");
	/* The first get wins the recache and sees the stale value; the
	 * next ones lose. */
	uint64_t cas = cas_of(f, "toinv");
	assert_mc(f, "mg toinv s t c v\r\n",
		  fmt("VA 3 s3 t30 c%llu X W\r\nmoo\r\n",
		      (unsigned long long)cas));
	assert_mc(f, "mg toinv s t c v\r\n",
		  fmt("VA 3 s3 t30 c%llu Z X\r\nmoo\r\n",
		      (unsigned long long)cas));
	/* Plain text-side reads miss it meanwhile. */
	tu_assert_miss(&f->r.e, "toinv", 5);
	/* A set from an older read: refused, or with I kept as stale. */
	assert_mc(f, "ms toinv 1 T90 C0\r\nf\r\n", "EX\r\n");
	assert_mc(f, "ms toinv 1 I T90 C1\r\nf\r\n", "HD\r\n");
	cas = cas_of(f, "toinv");
	assert_mc(f, "mg toinv s t c v\r\n",
		  fmt("VA 1 s1 t30 c%llu Z X\r\nf\r\n",
		      (unsigned long long)cas));
	/* The winner's set over the stale item: fresh for everyone. */
	assert_mc(f,
		  fmt("ms toinv 1 T90 C%llu\r\ng\r\n", (unsigned long long)cas),
		  "HD\r\n");
	assert_mc(f, "mg toinv s t v\r\n", "VA 1 s1 t90\r\ng\r\n");
	tu_assert_value(&f->r.e, "toinv", 5, "g", 1);
	/* md I on a missing key, and with a stale CAS. */
	assert_mc(f, "md nope I\r\n", "NF\r\n");
	assert_mc(f, "md toinv I C1\r\n", "EX\r\n");
}

static void test_mc_meta_vivify_win_and_lose(void **state)
{
	struct mc_fx *f = *state;

	/* A miss with N: an empty stand-in and the win, then Z. */
	const char *r = mc_run(f, "mg needwin s c v N30 t\r\n");
	uint64_t token;
	assert_int_equal(sscanf(r, "VA 0 s0 c%llu t30 W\r\n",
				(unsigned long long *)&token),
			 1);
	assert_true(token != 0);
	assert_string_equal(r, fmt("VA 0 s0 c%llu t30 W\r\n\r\n",
				   (unsigned long long)token));
	assert_mc(f, "mg needwin s c v N30 t\r\n", "VA 0 s0 c0 t30 Z\r\n\r\n");
	assert_mc(f, "mg needwin N30\r\n", "HD Z\r\n");
	/* No stand-in item exists: plain gets miss. */
	assert_mc(f, "mg needwin v\r\n", "EN\r\n");
	/* The winner sets with the version it got; another one fails. */
	assert_mc(f, "ms needwin 2 C5000 T120\r\nnu\r\n", "EX\r\n");
	assert_mc(f,
		  fmt("ms needwin 2 C%llu T120\r\nmu\r\n",
		      (unsigned long long)token),
		  "HD\r\n");
	assert_mc(f, "mg needwin s k t v N30\r\n",
		  "VA 2 s2 kneedwin t120\r\nmu\r\n");

	/* R: a win when less than the token's seconds are left. */
	assert_mc(f, "mg needwin t v R100\r\n", "VA 2 t120\r\nmu\r\n");
	assert_mc(f, "mg needwin t v R130\r\n", "VA 2 t120 W\r\nmu\r\n");
	assert_mc(f, "mg needwin t v R130\r\n", "VA 2 t120 Z\r\nmu\r\n");
	assert_mc(f, "ms needwin 4 T300\r\nzuuu\r\n", "HD\r\n");
	assert_mc(f, "mg needwin s t v N30 R130\r\n",
		  "VA 4 s4 t300\r\nzuuu\r\n");
	/* The win ends with a delete too: the next get may win. */
	assert_mc(f, "mg gone N30\r\n", "HD W\r\n");
	assert_mc(f, "md gone\r\n", "NF\r\n");
	assert_mc(f, "mg gone N30\r\n", "HD Z\r\n");
}

/* A socket client's win holds a mapped client's get_or_load until the
 * socket client stores; then the mapped client reads its value. */
static void test_mc_meta_lease_holds_mapped_get_or_load(void **state)
{
	struct mc_fx *f = *state;
	struct eng e2;
	struct eng_flight fl;
	struct eng_meta m;
	char buf[64];

	attach_mapped(f, &e2);
	assert_mc(f, "mg k v N30\r\n", "VA 0 W\r\n\r\n");
	assert_rc(eng_get_or_claim_ex(&e2, "k", 1, buf, sizeof(buf), &m, &fl),
		  ENG_WAIT);
	assert_rc(eng_flight_wait(&e2, &fl, 1), -ETIMEDOUT);
	assert_mc(f, "ms k 5 T60\r\nvalue\r\n", "HD\r\n");
	assert_rc(eng_flight_wait(&e2, &fl, 1000), 0);
	assert_rc(eng_get_or_claim_ex(&e2, "k", 1, buf, sizeof(buf), &m, &fl),
		  0);
	assert_int_equal(m.vlen, 5);
	assert_memory_equal(buf, "value", 5);

	/* The text protocol's stores end it the same way. */
	assert_mc(f, "mg t v N30\r\n", "VA 0 W\r\n\r\n");
	assert_rc(eng_get_or_claim_ex(&e2, "t", 1, buf, sizeof(buf), &m, &fl),
		  ENG_WAIT);
	assert_rc(eng_set(&f->w.eng, "t", 1, "tv", 2, 0), 0);
	mc_lease_stored(&f->w, "t", 1);
	assert_rc(eng_flight_wait(&e2, &fl, 1000), 0);
	assert_rc(eng_get_or_claim_ex(&e2, "t", 1, buf, sizeof(buf), &m, &fl),
		  0);
	assert_memory_equal(buf, "tv", 2);
}

/* A mapped client's get_or_load, in a thread of its own, as libshmc runs
 * it: claim, or wait for the loader and look again. */
struct mapped_load {
	struct eng e;
	char value[64];
	size_t vlen;
	int loads; /* times it had to load itself */
};

static void *mapped_get_or_load(void *arg)
{
	struct mapped_load *ml = arg;
	struct eng_flight fl;
	struct eng_meta m;

	for (;;) {
		int rc = eng_get_or_claim_ex(&ml->e, "k", 1, ml->value,
					     sizeof(ml->value), &m, &fl);
		if (rc == 0) {
			ml->vlen = m.vlen;
			return NULL;
		}
		if (rc == ENG_LOAD) {
			ml->loads++;
			eng_set(&ml->e, "k", 1, "mapped", 6, 0);
			eng_flight_done(&ml->e, &fl);
			continue;
		}
		/* A generous bound, only to end a hang. */
		if (rc != ENG_WAIT || eng_flight_wait(&ml->e, &fl, 30000))
			return NULL;
	}
}

/* The mapped client does not load the key the socket client won: it
 * waits, and reads the socket client's value. */
static void test_mc_meta_mapped_get_or_load_reads_winners_value(void **state)
{
	struct mc_fx *f = *state;
	struct mapped_load ml = { 0 };
	pthread_t t;

	attach_mapped(f, &ml.e);
	assert_mc(f, "mg k v N30\r\n", "VA 0 W\r\n\r\n");
	assert_int_equal(pthread_create(&t, NULL, mapped_get_or_load, &ml), 0);
	/* Let it reach the wait (it reads the same value if it does not). */
	usleep(20000);
	assert_mc(f, "ms k 6\r\nsocket\r\n", "HD\r\n");
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(ml.loads, 0);
	assert_int_equal(ml.vlen, 6);
	assert_memory_equal(ml.value, "socket", 6);
}

/* A mapped client loading a key: a socket client's mg N loses (Z). */
static void test_mc_meta_mapped_load_makes_mg_lose(void **state)
{
	struct mc_fx *f = *state;
	struct eng e2;
	struct eng_flight fl;
	struct eng_meta m;
	char buf[64];

	attach_mapped(f, &e2);
	assert_rc(eng_get_or_claim_ex(&e2, "k", 1, buf, sizeof(buf), &m, &fl),
		  ENG_LOAD);
	assert_mc(f, "mg k v N30 s\r\n", "VA 0 s0 Z\r\n\r\n");
	assert_mc(f, "mg k v\r\n", "EN\r\n");
	assert_rc(eng_set(&e2, "k", 1, "loaded", 6, 0), 0);
	eng_flight_done(&e2, &fl);
	assert_mc(f, "mg k v N30\r\n", "VA 6\r\nloaded\r\n");

	/* A value a mapped client stored with grace (shmc_get_or_load_swr),
	 * past its TTL: served stale, and its reload won once. */
	struct eng_wopts o = { .ttl_s = 10, .grace_s = 60 };
	assert_rc(eng_store(&e2, "s", 1, "old", 3, &o, NULL), 0);
	advance(f, 11);
	assert_mc(f, "mg s v t\r\n", "VA 3 t59 X W\r\nold\r\n");
	/* The mapped client is served the stale value without the reload. */
	assert_rc(eng_get_or_claim_ex(&e2, "s", 1, buf, sizeof(buf), &m, &fl),
		  0);
	assert_true(m.stale);
	assert_mc(f, "mg s v\r\n", "VA 3 Z X\r\nold\r\n");
	assert_mc(f, "ms s 3 T10\r\nnew\r\n", "HD\r\n");
	assert_mc(f, "mg s v\r\n", "VA 3\r\nnew\r\n");
}

static void test_mc_meta_lease_ends_with_session_and_time(void **state)
{
	struct mc_fx *f = *state;
	struct mc_session s2;
	struct mc_out out2 = { .high = SIZE_MAX };
	struct eng e2;
	struct eng_flight fl;
	struct eng_meta m;
	char buf[64];
	const char *req = "mg k N30\r\n";

	attach_mapped(f, &e2);
	/* Another connection wins, then closes. */
	mc_session_init(&f->w, &s2);
	assert_int_equal(mc_process(&f->w, &s2, (const uint8_t *)req,
				    strlen(req), &out2),
			 strlen(req));
	assert_memory_equal(out2.p, "HD W\r\n", 6);
	assert_int_equal(s2.nleases, 1);
	assert_mc(f, "mg k N30\r\n", "HD Z\r\n");
	mc_session_end(&f->w, &s2);
	free(out2.p);
	assert_int_equal(f->w.nleases, 0);
	assert_rc(eng_get_or_claim_ex(&e2, "k", 1, buf, sizeof(buf), &m, &fl),
		  ENG_LOAD);
	eng_flight_done(&e2, &fl);

	/* A store by anyone else (here the mapped client) ends the win at
	 * the worker's next tick. */
	assert_mc(f, "mg k N30\r\n", "HD W\r\n");
	assert_rc(eng_get_or_claim_ex(&e2, "k", 1, buf, sizeof(buf), &m, &fl),
		  ENG_WAIT);
	assert_rc(eng_set(&e2, "k", 1, "mapped", 6, 0), 0);
	mc_worker_tick(&f->w);
	assert_rc(eng_flight_wait(&e2, &fl, 1000), 0);
	assert_int_equal(f->w.nleases, 0);
	assert_mc(f, "mg k v R30\r\n", "VA 6\r\nmapped\r\n");
	assert_rc(eng_del(&e2, "k", 1), 0);

	/* A win nobody stores ends after its N seconds. */
	assert_mc(f, "mg k N5\r\n", "HD W\r\n");
	advance(f, 4);
	mc_worker_tick(&f->w);
	assert_mc(f, "mg k N5\r\n", "HD Z\r\n");
	advance(f, 2);
	mc_worker_tick(&f->w);
	assert_mc(f, "mg k N5\r\n", "HD W\r\n");
	/* And at the worker's end (the fixture's teardown checks nothing
	 * is left: the mapped client can claim). */
	mc_worker_fini(&f->w);
	assert_rc(eng_get_or_claim_ex(&e2, "k", 1, buf, sizeof(buf), &m, &fl),
		  ENG_LOAD);
	eng_flight_done(&e2, &fl);
	assert_rc(mc_worker_init(&f->w, &f->sh, 0, 1000), 0);
}

static void test_mc_meta_counters(void **state)
{
	struct mc_fx *f = *state;

	/* The first call of a data-block command counts nothing, however
	 * often it is repeated while the block arrives. */
	assert_mc(f, "ms k 5\r\nab", "");
	assert_mc(f, "c", "");
	assert_int_equal(f->w.st.cmd_meta, 0);
	assert_int_equal(f->w.st.cmd_set, 0);
	assert_mc(f, "de\r\n", "HD\r\n");
	assert_int_equal(f->w.st.cmd_meta, 1);
	assert_int_equal(f->w.st.cmd_set, 1);
	assert_mc(f, "mg k\r\nmg nope\r\nmd k\r\nmd k\r\nmn\r\n",
		  "HD\r\nEN\r\nHD\r\nNF\r\nMN\r\n");
	assert_int_equal(f->w.st.cmd_meta, 6);
	assert_int_equal(f->w.st.cmd_get, 2);
	assert_int_equal(f->w.st.get_hits, 1);
	assert_int_equal(f->w.st.get_misses, 1);
	assert_int_equal(f->w.st.delete_hits, 1);
	assert_int_equal(f->w.st.delete_misses, 1);
	assert_mc(f, "ms k 1 C1\r\nx\r\n", "NF\r\n");
	assert_int_equal(f->w.st.cas_misses, 1);
}

/* Random meta requests - good, bad and nonsense flags and arguments,
 * data blocks of the right and the wrong length, time passing - never
 * break the connection: after each batch an mn is answered, nothing
 * closes, and every win is still accounted for. */
static void test_mc_meta_random_requests_keep_the_connection(void **state)
{
	struct mc_fx *f = *state;
	static const char *const cmds[] = {
		"mg", "ms", "md", "ma", "me", "mn"
	};
	static const char *const keys[] = { "k", "k2",	  "Zm9v", "Zm9v=",
					    "n", "a\x01", "AAAA" };
	static const char letters[] = "bcfhklqstuvCDEFIJMNOPLRTxZ!9";
	static const char *const args[] = {
		"",
		"0",
		"1",
		"30",
		"-1",
		"x",
		"E",
		"A",
		"+",
		"D",
		"99999999999999999999",
		"123456789012345678901234567890123"
	};
	uint64_t seed = 16;
	char req[4096];

	for (int batch = 0; batch < 300; batch++) {
		size_t n = 0;
		for (int r = 0; r < 8; r++) {
			const char *cmd = cmds[tu_rand(&seed) % 6];
			n += (size_t)snprintf(req + n, sizeof(req) - n, "%s %s",
					      cmd, keys[tu_rand(&seed) % 7]);
			bool ms = !strcmp(cmd, "ms");
			size_t dlen = tu_rand(&seed) % 4;
			if (ms)
				n += (size_t)snprintf(req + n, sizeof(req) - n,
						      " %zu", dlen);
			int nf = (int)(tu_rand(&seed) % 6);
			for (int i = 0; i < nf; i++)
				n += (size_t)snprintf(
					req + n, sizeof(req) - n, " %c%s",
					letters[tu_rand(&seed) %
						(sizeof(letters) - 1)],
					args[tu_rand(&seed) % 12]);
			n += (size_t)snprintf(req + n, sizeof(req) - n, "\r\n");
			if (ms) {
				/* Sometimes a block one byte too long. */
				size_t give = dlen + (tu_rand(&seed) % 8 == 0);
				n += (size_t)snprintf(req + n, sizeof(req) - n,
						      "%.*s\r\n", (int)give,
						      "1234");
			}
		}
		n += (size_t)snprintf(req + n, sizeof(req) - n, "mn\r\n");
		const char *r = mc_feed(f, req, n);
		size_t len = f->out.len;
		assert_true(len >= 4);
		assert_memory_equal(r + len - 4, "MN\r\n", 4);
		assert_false(f->s.close);
		assert_int_equal(f->npending, 0);
		if (batch % 10 == 0) {
			advance(f, 7);
			mc_worker_tick(&f->w);
		}
		assert_int_equal(f->s.nleases, f->w.nleases);
	}
}

static void test_mc_meta_leases_per_connection_are_bounded(void **state)
{
	struct mc_fx *f = *state;
	char req[64];

	/* A client that wins keys and never stores them stops winning at
	 * the limit, with an error saying what to do; nothing else breaks. */
	for (int i = 0; i < 1024; i++) {
		snprintf(req, sizeof(req), "mg won%d N30 s\r\n", i);
		assert_string_equal(mc_run(f, req), "HD s0 W\r\n");
	}
	assert_int_equal(f->s.nleases, 1024);
	const char *r = mc_run(f, "mg won-too-many N30 s\r\n");
	assert_non_null(strstr(r, "SERVER_ERROR too many leases held"));
	assert_int_equal(f->s.nleases, 1024);
	/* The refused key's load was not left claimed: another caller of the
	 * engine wins it at once. */
	struct eng_meta m;
	struct eng_flight fl;
	assert_int_equal(eng_get_or_claim_ex(&f->r.e, "won-too-many", 12, NULL,
					     0, &m, &fl),
			 ENG_LOAD);
	eng_flight_done(&f->r.e, &fl);
	/* Storing a won key frees its lease: the next win goes through. */
	assert_mc(f, "ms won0 1\r\nx\r\n", "HD\r\n");
	assert_mc(f, "mg other N30 s\r\n", "HD s0 W\r\n");
}

#define T(name)                                                                \
	cmocka_unit_test_setup_teardown(name, mc_fx_setup, mc_fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_mc_meta_noop),
		T(test_mc_meta_set_then_get_returns_flags),
		T(test_mc_meta_miss_quiet_and_opaque),
		T(test_mc_meta_base64_keys),
		T(test_mc_meta_bad_requests_keep_the_connection),
		T(test_mc_meta_cas_compare),
		T(test_mc_meta_set_modes),
		T(test_mc_meta_delete),
		T(test_mc_meta_arithmetic),
		T(test_mc_meta_touch_hit_before_and_no_bump),
		T(test_mc_meta_no_bump_get_of_a_miss),
		T(test_mc_meta_leases_per_connection_are_bounded),
		T(test_mc_meta_invalidate_win_and_lose),
		T(test_mc_meta_vivify_win_and_lose),
		T(test_mc_meta_lease_holds_mapped_get_or_load),
		T(test_mc_meta_mapped_get_or_load_reads_winners_value),
		T(test_mc_meta_mapped_load_makes_mg_lose),
		T(test_mc_meta_lease_ends_with_session_and_time),
		T(test_mc_meta_counters),
		T(test_mc_meta_random_requests_keep_the_connection),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
