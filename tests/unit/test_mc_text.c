/*
 * test_mc_text.c - memcached's text protocol (daemon/mc_text.c,
 * daemon/mc_stats.c), driven through mc_process() on a region of its own
 * (mc_fixture.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"
#include "mc_fixture.h"
#include "mc_int.h"

/* A counter's figure in the `stats` reply, or -1 when it is not there. */
static long long stat_of(struct mc_fx *f, const char *name)
{
	const char *r = mc_run(f, "stats\r\n");
	char pat[80];

	snprintf(pat, sizeof(pat), "STAT %s ", name);
	const char *p = strstr(r, pat);
	return p ? atoll(p + strlen(pat)) : -1;
}

/* The version gets prints for key: parsed from its VALUE line. */
static unsigned long long cas_of(struct mc_fx *f, const char *key)
{
	char req[300];
	unsigned long long cas = 0;
	unsigned flags, bytes;
	char k[260];

	snprintf(req, sizeof(req), "gets %s\r\n", key);
	const char *r = mc_run(f, req);
	assert_int_equal(sscanf(r, "VALUE %259s %u %u %llu", k, &flags, &bytes,
				&cas),
			 4);
	return cas;
}

static void test_mc_text_version(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "version\r\n", "VERSION " MC_VERSION_LINE "\r\n");
}

static void test_mc_text_set_get(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "set k 5 0 3\r\nabc\r\n", "STORED\r\n");
	assert_mc(f, "get k\r\n", "VALUE k 5 3\r\nabc\r\nEND\r\n");
	assert_mc(f, "get nope\r\n", "END\r\n");
	/* Bare "\n" line ends, as memcached takes them. */
	assert_mc(f, "set e 0 0 0\n\r\nget e\n",
		  "STORED\r\nVALUE e 0 0\r\n"
		  "\r\nEND\r\n");
	assert_mc(f, "get k nope e k\r\n",
		  "VALUE k 5 3\r\nabc\r\nVALUE e 0 0\r\n\r\n"
		  "VALUE k 5 3\r\nabc\r\nEND\r\n");
}

static void test_mc_text_flags_32_bit(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "set k 4294967295 0 1\r\nx\r\n", "STORED\r\n");
	assert_mc(f, "get k\r\n", "VALUE k 4294967295 1\r\nx\r\nEND\r\n");
	assert_mc(f, "set k 4294967296 0 1\r\nx\r\n",
		  "CLIENT_ERROR bad command line format\r\n");
	assert_mc(f, "set k -1 0 1\r\nx\r\n",
		  "CLIENT_ERROR bad command line format\r\n");
	/* The refused lines' blocks were skipped: still the old value. */
	assert_mc(f, "get k\r\n", "VALUE k 4294967295 1\r\nx\r\nEND\r\n");
}

static void test_mc_text_bad_lines(void **state)
{
	struct mc_fx *f = *state;
	char key[MC_KEY_MAX + 2];

	/* Too few or too many words: not the command at all. */
	assert_mc(f, "get\r\n", "ERROR\r\n");
	assert_mc(f, "set k 0 0\r\n", "ERROR\r\n");
	assert_mc(f, "incr k 1 noreply extra\r\n", "ERROR\r\n");
	/* No length: nothing to skip, the block is read as a command. */
	assert_mc(f, "set k 0 0 x\r\n",
		  "CLIENT_ERROR bad command line format\r\n");
	assert_mc(f, "set k 0 0 -1\r\n",
		  "CLIENT_ERROR bad command line format\r\n");
	assert_mc(f, "set k 0 zz 2\r\nab\r\n",
		  "CLIENT_ERROR bad command line format\r\n");
	memset(key, 'k', sizeof(key));
	key[MC_KEY_MAX + 1] = '\0';
	char req[600];
	snprintf(req, sizeof(req), "get %s\r\n", key);
	assert_mc(f, req, "CLIENT_ERROR bad command line format\r\n");
	snprintf(req, sizeof(req), "set %s 0 0 1\r\nx\r\n", key);
	assert_mc(f, req, "CLIENT_ERROR bad command line format\r\n");
	key[MC_KEY_MAX] = '\0';
	snprintf(req, sizeof(req), "set %s 0 0 1\r\nx\r\nget %s\r\n", key, key);
	char want[600];
	snprintf(want, sizeof(want), "STORED\r\nVALUE %s 0 1\r\nx\r\nEND\r\n",
		 key);
	assert_mc(f, req, want);
	/* A key with a control character. */
	assert_mc(f, "get a\x01z\r\n",
		  "CLIENT_ERROR bad command line format\r\n");
	/* A bad key among good ones: only the error, no partial reply. */
	assert_mc(f, "set k 0 0 1\r\nx\r\n", "STORED\r\n");
	assert_mc(f, "get k a\x02 k\r\n",
		  "CLIENT_ERROR bad command line format\r\n");
	assert_mc(f, "incr\r\n", "ERROR\r\n");
	assert_mc(f, "touch k\r\n", "ERROR\r\n");
	assert_mc(f, "delete\r\n", "ERROR\r\n");
	/* A cas without its version is no command: its block is one too. */
	assert_mc(f, "cas k 0 0 1\r\nx\r\n", "ERROR\r\nERROR\r\n");
	assert_mc(f, "version\r\n", "VERSION " MC_VERSION_LINE "\r\n");
}

static void test_mc_text_add_replace(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "replace k 0 0 1\r\na\r\n", "NOT_STORED\r\n");
	assert_mc(f, "add k 1 0 1\r\na\r\n", "STORED\r\n");
	assert_mc(f, "add k 2 0 1\r\nb\r\n", "NOT_STORED\r\n");
	assert_mc(f, "replace k 3 0 1\r\nc\r\n", "STORED\r\n");
	assert_mc(f, "get k\r\n", "VALUE k 3 1\r\nc\r\nEND\r\n");
}

static void test_mc_text_append_prepend(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "append k 0 0 1\r\na\r\n", "NOT_STORED\r\n");
	assert_mc(f, "prepend k 0 0 1\r\na\r\n", "NOT_STORED\r\n");
	assert_mc(f, "set k 7 0 2\r\nbc\r\n", "STORED\r\n");
	assert_mc(f, "append k 9 0 2\r\nde\r\n", "STORED\r\n");
	assert_mc(f, "prepend k 9 0 1\r\na\r\n", "STORED\r\n");
	/* The item keeps its flags. */
	assert_mc(f, "get k\r\n", "VALUE k 7 5\r\nabcde\r\nEND\r\n");
}

static void test_mc_text_cas_flow(void **state)
{
	struct mc_fx *f = *state;
	char req[128];

	assert_mc(f, "cas k 0 0 1 1\r\nx\r\n", "NOT_FOUND\r\n");
	assert_mc(f, "set k 0 0 1\r\na\r\n", "STORED\r\n");
	unsigned long long cas = cas_of(f, "k");
	snprintf(req, sizeof(req), "cas k 4 0 1 %llu\r\nb\r\n", cas);
	assert_mc(f, req, "STORED\r\n");
	assert_mc(f, req, "EXISTS\r\n");
	unsigned long long cas2 = cas_of(f, "k");
	assert_true(cas2 != cas);
	assert_mc(f, "get k\r\n", "VALUE k 4 1\r\nb\r\nEND\r\n");
	assert_mc(f, "delete k\r\n", "DELETED\r\n");
	snprintf(req, sizeof(req), "cas k 0 0 1 %llu\r\nc\r\n", cas2);
	assert_mc(f, req, "NOT_FOUND\r\n");
	assert_int_equal(stat_of(f, "cas_hits"), 1);
	assert_int_equal(stat_of(f, "cas_badval"), 1);
	assert_int_equal(stat_of(f, "cas_misses"), 2);
}

static void test_mc_text_gets_matches_engine(void **state)
{
	struct mc_fx *f = *state;
	struct eng_meta m;
	char buf[16], want[128];

	/* Stored by the protocol, read through the engine. */
	assert_mc(f, "set k 123456 0 3\r\nabc\r\n", "STORED\r\n");
	assert_rc(eng_get_ex(&f->r.e, "k", 1, buf, sizeof(buf), &m), 0);
	assert_int_equal(m.flags, 123456);
	assert_int_equal(m.vlen, 3);
	assert_memory_equal(buf, "abc", 3);
	snprintf(want, sizeof(want), "VALUE k 123456 3 %llu\r\nabc\r\nEND\r\n",
		 (unsigned long long)m.cas);
	assert_mc(f, "gets k\r\n", want);

	/* Stored through the engine, read by the protocol. */
	struct eng_wopts o = { .flags = 77 };
	uint64_t cas;
	assert_rc(eng_store(&f->r.e, "m", 1, "hello", 5, &o, &cas), 0);
	snprintf(want, sizeof(want), "VALUE m 77 5 %llu\r\nhello\r\nEND\r\n",
		 (unsigned long long)cas);
	assert_mc(f, "gets m\r\n", want);

	/* A value larger than a retrieval first reserves, by gets and gats:
	 * its line is written before the value is read in place. */
	size_t big = 10000;
	char *val = malloc(big);
	assert_non_null(val);
	memset(val, 'b', big);
	o.flags = 9;
	assert_rc(eng_store(&f->r.e, "big", 3, val, big, &o, &cas), 0);
	for (int i = 0; i < 2; i++) {
		const char *r = mc_run(f,
				       i ? "gats 100 big\r\n" : "gets big\r\n");
		int h = snprintf(want, sizeof(want), "VALUE big 9 %zu %llu\r\n",
				 big, (unsigned long long)cas);
		assert_int_equal(f->out.len, (size_t)h + big + 2 + 5);
		assert_memory_equal(r, want, (size_t)h);
		assert_memory_equal(r + h, val, big);
		assert_string_equal(r + h + big, "\r\nEND\r\n");
	}
	free(val);
}

/* stats sums the counters of every worker; stats reset starts them all
 * from zero. */
static void test_mc_text_stats_sum_workers(void **state)
{
	struct mc_fx *f = *state;
	struct mc_worker w2, *both[2] = { &f->w, &w2 };
	struct mc_session s2;
	struct mc_out out2 = { .high = SIZE_MAX };
	const char *req = "get a b c\r\n";

	f->sh.workers = both;
	f->sh.nworkers = 2;
	assert_rc(mc_worker_init(&w2, &f->sh, 1, 1000), 0);
	mc_session_init(&w2, &s2);
	assert_int_equal(mc_process(&w2, &s2, (const uint8_t *)req, strlen(req),
				    &out2),
			 strlen(req));
	assert_mc(f, "get a\r\n", "END\r\n");
	assert_int_equal(stat_of(f, "cmd_get"), 4);
	assert_int_equal(stat_of(f, "get_misses"), 4);
	assert_int_equal(stat_of(f, "threads"), 2);
	assert_mc(f, "stats reset\r\n", "RESET\r\n");
	assert_int_equal(stat_of(f, "cmd_get"), 0);
	out2.len = 0;
	mc_process(&w2, &s2, (const uint8_t *)req, strlen(req), &out2);
	assert_int_equal(stat_of(f, "cmd_get"), 3);
	mc_session_end(&w2, &s2);
	mc_worker_fini(&w2);
	free(out2.p);
	f->sh.workers = f->workers;
	f->sh.nworkers = 1;
}

static void test_mc_text_incr_decr(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "incr n 1\r\n", "NOT_FOUND\r\n");
	assert_mc(f, "decr n 1\r\n", "NOT_FOUND\r\n");
	assert_mc(f, "set n 0 0 2\r\n10\r\n", "STORED\r\n");
	assert_mc(f, "incr n 5\r\n", "15\r\n");
	assert_mc(f, "decr n 100\r\n", "0\r\n");
	assert_mc(f, "set n 0 0 20\r\n18446744073709551615\r\n", "STORED\r\n");
	assert_mc(f, "incr n 2\r\n", "1\r\n");
	assert_mc(f, "incr n x\r\n",
		  "CLIENT_ERROR invalid numeric delta argument\r\n");
	assert_mc(f, "incr n -1\r\n",
		  "CLIENT_ERROR invalid numeric delta argument\r\n");
	assert_mc(f, "set s 0 0 3\r\nabc\r\n", "STORED\r\n");
	assert_mc(f, "incr s 1\r\n",
		  "CLIENT_ERROR cannot increment or decrement non-numeric "
		  "value\r\n");
	assert_mc(f, "get s\r\n", "VALUE s 0 3\r\nabc\r\nEND\r\n");
	assert_int_equal(stat_of(f, "incr_hits"), 2);
	assert_int_equal(stat_of(f, "incr_misses"), 1);
	assert_int_equal(stat_of(f, "decr_hits"), 1);
	assert_int_equal(stat_of(f, "decr_misses"), 1);
}

static void test_mc_text_delete(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "delete k\r\n", "NOT_FOUND\r\n");
	assert_mc(f, "set k 0 0 1\r\nx\r\n", "STORED\r\n");
	assert_mc(f, "delete k 5\r\n",
		  "CLIENT_ERROR bad command line format.  Usage: delete "
		  "<key> [noreply]\r\n");
	/* The legacy time argument, 0 only. */
	assert_mc(f, "delete k 0\r\n", "DELETED\r\n");
	assert_mc(f, "get k\r\n", "END\r\n");
	assert_mc(f, "set k 0 0 1\r\nx\r\n", "STORED\r\n");
	assert_mc(f, "delete k 0 noreply\r\n", "");
	assert_mc(f, "get k\r\n", "END\r\n");
	assert_int_equal(stat_of(f, "delete_hits"), 2);
	assert_int_equal(stat_of(f, "delete_misses"), 1);
}

static void test_mc_text_touch_gat(void **state)
{
	struct mc_fx *f = *state;
	uint32_t now = eng_now(&f->r.e);
	char want[128];

	assert_mc(f, "touch k 10\r\n", "NOT_FOUND\r\n");
	assert_mc(f, "set k 3 0 1\r\nx\r\n", "STORED\r\n");
	assert_mc(f, "touch k 10\r\n", "TOUCHED\r\n");
	assert_mc(f, "touch k x\r\n",
		  "CLIENT_ERROR invalid exptime argument\r\n");
	eng_clock_set(&f->r.e, now + 11);
	assert_mc(f, "get k\r\n", "END\r\n");

	assert_mc(f, "set k 3 0 1\r\nx\r\n", "STORED\r\n");
	assert_mc(f, "gat 10 k nope\r\n", "VALUE k 3 1\r\nx\r\nEND\r\n");
	unsigned long long cas = cas_of(f, "k");
	snprintf(want, sizeof(want), "VALUE k 3 1 %llu\r\nx\r\nEND\r\n", cas);
	assert_mc(f, "gats 100 k\r\n", want);
	assert_mc(f, "gat x k\r\n",
		  "CLIENT_ERROR invalid exptime argument\r\n");
	assert_mc(f, "gat 10\r\n", "ERROR\r\n");
	eng_clock_set(&f->r.e, now + 11 + 50);
	assert_mc(f, "get k\r\n", "VALUE k 3 1\r\nx\r\nEND\r\n");
	eng_clock_set(&f->r.e, now + 11 + 101);
	assert_mc(f, "get k\r\n", "END\r\n");

	/* A negative exptime: the value is served once, then gone. */
	assert_mc(f, "set k 3 0 1\r\nx\r\n", "STORED\r\n");
	assert_mc(f, "gat -1 k\r\n", "VALUE k 3 1\r\nx\r\nEND\r\n");
	assert_mc(f, "get k\r\n", "END\r\n");
	assert_mc(f, "set k 3 0 1\r\nx\r\n", "STORED\r\n");
	assert_mc(f, "touch k -1\r\n", "TOUCHED\r\n");
	assert_mc(f, "get k\r\n", "END\r\n");
	/* touch: 1 + 1 + 1 miss, gat/gats: 3 hits, 1 miss. */
	assert_int_equal(stat_of(f, "cmd_touch"), 7);
	assert_int_equal(stat_of(f, "touch_hits"), 5);
	assert_int_equal(stat_of(f, "touch_misses"), 2);
}

static void test_mc_text_exptime(void **state)
{
	struct mc_fx *f = *state;
	uint32_t now = eng_now(&f->r.e);
	char req[128];

	assert_mc(f, "set k 0 100 1\r\nx\r\n", "STORED\r\n");
	eng_clock_set(&f->r.e, now + 99);
	assert_mc(f, "get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
	eng_clock_set(&f->r.e, now + 101);
	assert_mc(f, "get k\r\n", "END\r\n");

	/* An absolute unix time. */
	now = eng_now(&f->r.e);
	snprintf(req, sizeof(req), "set a 0 %u 1\r\nx\r\n", now + 1000);
	assert_mc(f, req, "STORED\r\n");
	eng_clock_set(&f->r.e, now + 999);
	assert_mc(f, "get a\r\n", "VALUE a 0 1\r\nx\r\nEND\r\n");
	eng_clock_set(&f->r.e, now + 1001);
	assert_mc(f, "get a\r\n", "END\r\n");

	/* Negative or past: STORED, and the old value is gone. */
	assert_mc(f, "set k 0 0 1\r\nx\r\n", "STORED\r\n");
	assert_mc(f, "set k 0 -1 1\r\ny\r\n", "STORED\r\n");
	assert_mc(f, "get k\r\n", "END\r\n");
	assert_mc(f, "set k 0 0 1\r\nx\r\n", "STORED\r\n");
	snprintf(req, sizeof(req), "set k 0 %u 1\r\ny\r\n",
		 eng_now(&f->r.e) - 1);
	assert_mc(f, req, "STORED\r\n");
	assert_mc(f, "get k\r\n", "END\r\n");
	/* add: refused while the key is present, else nothing stored. */
	assert_mc(f, "add k 0 -1 1\r\ny\r\n", "STORED\r\n");
	assert_mc(f, "get k\r\n", "END\r\n");
	assert_mc(f, "set k 0 0 1\r\nx\r\n", "STORED\r\n");
	assert_mc(f, "add k 0 -1 1\r\ny\r\n", "NOT_STORED\r\n");
	assert_mc(f, "get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
	/* replace: present, it goes; absent, NOT_STORED. */
	assert_mc(f, "replace k 0 -1 1\r\ny\r\n", "STORED\r\n");
	assert_mc(f, "get k\r\n", "END\r\n");
	assert_mc(f, "replace k 0 -1 1\r\ny\r\n", "NOT_STORED\r\n");
	/* cas: the version is checked as ever. */
	assert_mc(f, "set k 0 0 1\r\nx\r\n", "STORED\r\n");
	unsigned long long cas = cas_of(f, "k");
	snprintf(req, sizeof(req), "cas k 0 -1 1 %llu\r\ny\r\n", cas + 1000);
	assert_mc(f, req, "EXISTS\r\n");
	snprintf(req, sizeof(req), "cas k 0 -1 1 %llu\r\ny\r\n", cas);
	assert_mc(f, req, "STORED\r\n");
	assert_mc(f, "get k\r\n", "END\r\n");
	assert_mc(f, req, "NOT_FOUND\r\n");
}

static void test_mc_text_noreply(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "set k 0 0 1 noreply\r\nx\r\n", "");
	assert_mc(f, "add k 0 0 1 noreply\r\nx\r\n", "");
	assert_mc(f, "replace k 0 0 1 noreply\r\ny\r\n", "");
	assert_mc(f, "append k 0 0 1 noreply\r\nz\r\n", "");
	assert_mc(f, "prepend k 0 0 1 noreply\r\nw\r\n", "");
	assert_mc(f, "cas k 0 0 1 1 noreply\r\nw\r\n", "");
	assert_mc(f, "get k\r\n", "VALUE k 0 3\r\nwyz\r\nEND\r\n");
	assert_mc(f, "set n 0 0 1\r\n5\r\n", "STORED\r\n");
	assert_mc(f, "incr n 1 noreply\r\n", "");
	assert_mc(f, "decr n 2 noreply\r\n", "");
	assert_mc(f, "get n\r\n", "VALUE n 0 1\r\n4\r\nEND\r\n");
	assert_mc(f, "touch n 10 noreply\r\n", "");
	assert_mc(f, "delete n noreply\r\n", "");
	assert_mc(f, "get n\r\n", "END\r\n");
	assert_mc(f, "verbosity 1 noreply\r\n", "");
	assert_mc(f, "flush_all noreply\r\n", "");
	assert_mc(f, "get k\r\n", "END\r\n");
	/* Errors too, as memcached; the block is still skipped. */
	assert_mc(f, "set k x 0 1 noreply\r\nx\r\n", "");
	assert_mc(f, "incr k x noreply\r\n", "");
	/* As in memcached, "noreply" last is the word even where it is also
	 * the key. */
	assert_mc(f, "set noreply 0 0 1\r\nx\r\n", "STORED\r\n");
	assert_mc(f, "delete noreply\r\n", "");
	assert_mc(f, "get noreply\r\n", "END\r\n");
	assert_mc(f, "verbosity noreply\r\n", "");
	assert_mc(f, "version\r\n", "VERSION " MC_VERSION_LINE "\r\n");
}

static void test_mc_text_pipelined(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f,
		  "set a 0 0 1\r\n1\r\nset b 0 0 1\r\n2\r\nget a b\r\n"
		  "delete a\r\nincr b 3\r\nget a b\r\n",
		  "STORED\r\nSTORED\r\nVALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n2\r\n"
		  "END\r\nDELETED\r\n5\r\nVALUE b 0 1\r\n5\r\nEND\r\n");
}

static void test_mc_text_block_split_across_feeds(void **state)
{
	struct mc_fx *f = *state;
	const char *req = "set k 1 0 10\r\n0123456789\r\nget k\r\n";
	size_t n = strlen(req);

	/* Every split point: nothing until the block and its line end are
	 * in, then the whole reply; the first call counts nothing. */
	for (size_t cut = 1; cut < n; cut++) {
		const char *r = mc_feed(f, req, cut);
		size_t stored = strlen("set k 1 0 10\r\n0123456789\r\n");
		assert_string_equal(r, cut >= stored ? "STORED\r\n" : "");
		r = mc_feed(f, req + cut, n - cut);
		assert_string_equal(
			r, cut >= stored
				   ? "VALUE k 1 10\r\n0123456789\r\nEND\r\n"
				   : "STORED\r\nVALUE k 1 10\r\n"
				     "0123456789\r\nEND\r\n");
	}
	assert_int_equal(stat_of(f, "cmd_set"), (long long)(n - 1));
}

static void test_mc_text_bad_data_chunk(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "set k 0 0 3\r\nabcd\r\n",
		  "CLIENT_ERROR bad data chunk\r\nERROR\r\n");
	assert_mc(f, "get k\r\n", "END\r\n");
	assert_mc(f, "set k 0 0 1\r\nx\r\n", "STORED\r\n");
}

static void test_mc_text_too_large_swallowed(void **state)
{
	struct mc_fx *f = *state;
	size_t big = (size_t)f->w.eng.g.max_kv + 10;
	char line[64];

	assert_mc(f, "set k 0 0 1\r\nx\r\n", "STORED\r\n");
	snprintf(line, sizeof(line), "set k 0 0 %zu\r\n", big);
	/* The line, then the block in pieces, then a command. */
	assert_mc(f, line, "SERVER_ERROR object too large for cache\r\n");
	assert_true(f->s.swallow == big + 2);
	char *blk = malloc(big + 2);
	assert_non_null(blk);
	memset(blk, 'v', big);
	memcpy(blk + big, "\r\n", 2);
	assert_string_equal(mc_feed(f, blk, big / 2), "");
	assert_string_equal(mc_feed(f, blk + big / 2, big + 2 - big / 2), "");
	free(blk);
	/* The set that failed did not leave the old value. */
	assert_mc(f, "get k\r\n", "END\r\n");
	assert_int_equal(stat_of(f, "store_too_large"), 1);
	/* The largest item that fits is stored and read back. */
	size_t fit = (size_t)f->w.eng.g.max_kv - 1;
	char *req = malloc(fit + 64);
	assert_non_null(req);
	int h = snprintf(req, 64, "set k 0 0 %zu\r\n", fit);
	memset(req + h, 'w', fit);
	memcpy(req + h + fit, "\r\n", 3);
	assert_string_equal(mc_feed(f, req, (size_t)h + fit + 2), "STORED\r\n");
	const char *r = mc_run(f, "get k\r\n");
	assert_int_equal(f->out.len,
			 (size_t)snprintf(NULL, 0, "VALUE k 0 %zu\r\n", fit) +
				 fit + 2 + 5);
	assert_memory_equal(r + f->out.len - 8, "w\r\nEND\r\n", 8);
	free(req);
}

static void test_mc_text_get_300_keys(void **state)
{
	struct mc_fx *f = *state;
	char *req = malloc(300 * 16 + 16), *want = malloc(300 * 64 + 16);
	size_t rn = 0, wn = 0;

	assert_non_null(req);
	assert_non_null(want);
	/* Every third key absent, one value larger than the batch slot. */
	for (int i = 0; i < 300; i++) {
		char set[96];
		if (i % 3 == 2)
			continue;
		int vn = snprintf(NULL, 0, "v%d", i);
		snprintf(set, sizeof(set), "set key%d %d 0 %d\r\nv%d\r\n", i, i,
			 vn, i);
		assert_mc(f, set, "STORED\r\n");
	}
	size_t bign = 5000;
	char *big = malloc(bign + 64);
	assert_non_null(big);
	int h = snprintf(big, 64, "set key7 7 0 %zu\r\n", bign);
	memset(big + h, 'B', bign);
	memcpy(big + h + bign, "\r\n", 3);
	assert_mc(f, big, "STORED\r\n");

	rn += (size_t)sprintf(req + rn, "get");
	for (int i = 0; i < 300; i++) {
		rn += (size_t)sprintf(req + rn, " key%d", i);
		if (i % 3 == 2)
			continue;
		if (i == 7)
			continue;
		wn += (size_t)sprintf(want + wn,
				      "VALUE key%d %d %zu\r\nv%d\r\n", i, i,
				      (size_t)snprintf(NULL, 0, "v%d", i), i);
	}
	rn += (size_t)sprintf(req + rn, "\r\n");
	wn += (size_t)sprintf(want + wn, "END\r\n");
	const char *r = mc_run(f, req);
	/* key7's value sits between key6 and key9. */
	const char *k7 = strstr(r, "VALUE key7 7 5000\r\n");
	assert_non_null(k7);
	const char *k9 = strstr(r, "VALUE key9 ");
	assert_non_null(k9);
	assert_true(k7 < k9);
	assert_int_equal(k9 - k7,
			 (long)(strlen("VALUE key7 7 5000\r\n") + bign + 2));
	/* The reply without key7's entry is the expected one. */
	size_t k7n = (size_t)(k9 - k7);
	char *rest = malloc(f->out.len);
	assert_non_null(rest);
	size_t pre = (size_t)(k7 - r);
	memcpy(rest, r, pre);
	memcpy(rest + pre, k9, f->out.len - pre - k7n);
	rest[f->out.len - k7n] = '\0';
	assert_string_equal(rest, want);
	assert_int_equal(stat_of(f, "cmd_get"), 300);
	assert_int_equal(stat_of(f, "get_hits"), 200);
	assert_int_equal(stat_of(f, "get_misses"), 100);
	free(rest);
	free(big);
	free(req);
	free(want);
}

/* Reads line's replies to the end: each mc_feed() is one drain of the
 * output (a paused line runs on at the next), none past what high
 * allows (bound).  Returns them, malloc'ed; *feeds gets how many. */
static char *drain_all(struct mc_fx *f, const char *line, size_t bound,
		       int *feeds)
{
	size_t cap = 1 << 20, len = 0;
	char *all = malloc(cap);
	const char *r = mc_run(f, line);

	assert_non_null(all);
	*feeds = 0;
	for (;;) {
		(*feeds)++;
		assert_true(f->out.len <= bound);
		assert_true(len + f->out.len < cap);
		memcpy(all + len, r, f->out.len);
		len += f->out.len;
		if (!f->npending)
			break;
		assert_true(*feeds < 10000);
		r = mc_feed(f, "", 0);
	}
	all[len] = '\0';
	return all;
}

/* One get line naming a key many times: its replies are made as they are
 * sent, never all at once (a 1 MiB line of "k k k ..." would otherwise
 * hold half a million values in memory), and are the same. */
static void test_mc_text_get_paused_at_high(void **state)
{
	struct mc_fx *f = *state;
	char val[1001], set[1100];
	char *line = malloc(16 + 2 * 300 + 3), *want = malloc(300 * 1030);
	size_t ln = 0, wn = 0;
	int feeds;

	assert_non_null(line);
	assert_non_null(want);
	memset(val, 'v', 1000);
	val[1000] = '\0';
	snprintf(set, sizeof(set), "set k 0 0 1000\r\n%s\r\n", val);
	assert_mc(f, set, "STORED\r\n");
	f->out.high = 8192;
	size_t bound = f->out.high + 16 * 1100;

	static const char *const cmds[] = { "get", "gat 0" };
	for (size_t c = 0; c < 2; c++) {
		const char *cmd = cmds[c];
		ln = (size_t)sprintf(line, "%s", cmd);
		wn = 0;
		for (int i = 0; i < 300; i++) {
			ln += (size_t)sprintf(line + ln, " k");
			wn += (size_t)sprintf(want + wn,
					      "VALUE k 0 1000\r\n%s\r\n", val);
		}
		sprintf(line + ln, "\r\n");
		sprintf(want + wn, "END\r\n");
		char *all = drain_all(f, line, bound, &feeds);
		assert_true(feeds > 1);
		assert_string_equal(all, want);
		free(all);
	}
	assert_int_equal(stat_of(f, "get_hits"), 300);
	assert_int_equal(stat_of(f, "touch_hits"), 300);

	/* A bad key after the pause point: the line's only reply. */
	ln = (size_t)sprintf(line, "get");
	for (int i = 0; i < 299; i++)
		ln += (size_t)sprintf(line + ln, " k");
	sprintf(line + ln, " \x01\r\n");
	char *all = drain_all(f, line, bound, &feeds);
	assert_string_equal(all, "CLIENT_ERROR bad command line format\r\n");
	free(all);
	/* The connection goes on. */
	assert_mc(f, "get k\r\n", want + wn - strlen(val) - 18);
	free(line);
	free(want);
}

static void test_mc_text_get_many_tokens(void **state)
{
	struct mc_fx *f = *state;
	/* More keys than tok[] holds: the line is tokenized in passes. */
	size_t n = MC_TOKENS_MAX * 3 + 7;
	char *req = malloc(n * 4 + 16);
	size_t rn = 0;

	assert_non_null(req);
	assert_mc(f, "set z 0 0 1\r\nq\r\n", "STORED\r\n");
	rn += (size_t)sprintf(req + rn, "gets");
	for (size_t i = 0; i < n; i++)
		rn += (size_t)sprintf(req + rn, i == n - 1 ? "  z" : " y");
	rn += (size_t)sprintf(req + rn, " \r\n");
	const char *r = mc_run(f, req);
	assert_non_null(strstr(r, "VALUE z 0 1 "));
	assert_int_equal(strlen(r) - strlen(strstr(r, "VALUE z")), 0);
	assert_int_equal(stat_of(f, "cmd_get"), (long long)n);
	free(req);
}

static void test_mc_text_flush_all(void **state)
{
	struct mc_fx *f = *state;
	uint32_t now = eng_now(&f->r.e);

	assert_mc(f, "set a 0 0 1\r\n1\r\n", "STORED\r\n");
	assert_mc(f, "flush_all\r\n", "OK\r\n");
	assert_mc(f, "get a\r\n", "END\r\n");

	assert_mc(f, "set a 0 0 1\r\n1\r\n", "STORED\r\n");
	assert_mc(f, "flush_all 10\r\n", "OK\r\n");
	mc_worker_tick(&f->w);
	assert_mc(f, "get a\r\n", "VALUE a 0 1\r\n1\r\nEND\r\n");
	eng_clock_set(&f->r.e, now + 10);
	mc_worker_tick(&f->w);
	assert_mc(f, "get a\r\n", "END\r\n");

	/* An immediate flush cancels a pending one. */
	assert_mc(f, "flush_all 5\r\n", "OK\r\n");
	assert_mc(f, "flush_all 0\r\n", "OK\r\n");
	assert_mc(f, "set a 0 0 1\r\n1\r\n", "STORED\r\n");
	eng_clock_set(&f->r.e, now + 20);
	mc_worker_tick(&f->w);
	assert_mc(f, "get a\r\n", "VALUE a 0 1\r\n1\r\nEND\r\n");
	assert_mc(f, "flush_all x\r\n",
		  "CLIENT_ERROR invalid exptime argument\r\n");
	assert_int_equal(stat_of(f, "cmd_flush"), 5);
}

static void test_mc_text_verbosity(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "verbosity 2\r\n", "OK\r\n");
	assert_int_equal(f->sh.verbosity, 2);
	assert_mc(f, "verbosity\r\n", "ERROR\r\n");
	assert_non_null(strstr(mc_run(f, "stats settings\r\n"),
			       "STAT verbosity 2\r\n"));
}

static void test_mc_text_stats(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "set k 0 0 1\r\nx\r\nget k k nope\r\n",
		  "STORED\r\nVALUE k 0 1\r\nx\r\nVALUE k 0 1\r\nx\r\nEND\r\n");
	const char *r = mc_run(f, "stats\r\n");
	const char *names[] = { "pid",	     "uptime",	       "time",
				"version",   "pointer_size",   "rusage_user",
				"threads",   "limit_maxbytes", "curr_items",
				"evictions", "shmc_segments",  "shmc_hits" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char pat[64];
		snprintf(pat, sizeof(pat), "STAT %s ", names[i]);
		assert_non_null(strstr(r, pat));
	}
	assert_int_equal(strcmp(r + strlen(r) - 5, "END\r\n"), 0);
	assert_int_equal(stat_of(f, "cmd_get"), 3);
	assert_int_equal(stat_of(f, "get_hits"), 2);
	assert_int_equal(stat_of(f, "get_misses"), 1);
	assert_int_equal(stat_of(f, "cmd_set"), 1);
	assert_int_equal(stat_of(f, "curr_items"), 1);
	assert_int_equal(stat_of(f, "threads"), 1);
	assert_int_equal(stat_of(f, "item_size_max"), -1);

	assert_mc(f, "stats reset\r\n", "RESET\r\n");
	assert_int_equal(stat_of(f, "cmd_get"), 0);
	assert_int_equal(stat_of(f, "get_hits"), 0);
	assert_mc(f, "get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
	assert_int_equal(stat_of(f, "cmd_get"), 1);

	assert_mc(f, "stats items\r\n", "END\r\n");
	assert_mc(f, "stats slabs\r\n",
		  "STAT active_slabs 0\r\nSTAT total_malloced 0\r\nEND\r\n");
	assert_mc(f, "stats sizes\r\n",
		  "STAT sizes_status disabled\r\nEND\r\n");
	assert_mc(f, "stats detail dump\r\n",
		  "CLIENT_ERROR stats detail not allowed\r\n");
	assert_mc(f, "stats bogus\r\n", "ERROR\r\n");
	r = mc_run(f, "stats settings\r\n");
	char want[64];
	snprintf(want, sizeof(want), "STAT item_size_max %u\r\n",
		 f->w.eng.g.max_kv);
	assert_non_null(strstr(r, want));
}

#define T(name)                                                                \
	cmocka_unit_test_setup_teardown(name, mc_fx_setup, mc_fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_mc_text_version),
		T(test_mc_text_set_get),
		T(test_mc_text_flags_32_bit),
		T(test_mc_text_bad_lines),
		T(test_mc_text_add_replace),
		T(test_mc_text_append_prepend),
		T(test_mc_text_cas_flow),
		T(test_mc_text_gets_matches_engine),
		T(test_mc_text_incr_decr),
		T(test_mc_text_delete),
		T(test_mc_text_touch_gat),
		T(test_mc_text_exptime),
		T(test_mc_text_noreply),
		T(test_mc_text_pipelined),
		T(test_mc_text_block_split_across_feeds),
		T(test_mc_text_bad_data_chunk),
		T(test_mc_text_too_large_swallowed),
		T(test_mc_text_get_300_keys),
		T(test_mc_text_get_paused_at_high),
		T(test_mc_text_get_many_tokens),
		T(test_mc_text_flush_all),
		T(test_mc_text_verbosity),
		T(test_mc_text_stats),
		T(test_mc_text_stats_sum_workers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
