/*
 * test_resp.c - the RESP3 reader and command writer (daemon/resp.c) that
 * the near cache's tracking thread reads Redis with: every type it is
 * sent, a frame arriving byte by byte, attributes skipped, the limits,
 * malformed lines refused, and random or cut bytes never crashing it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

/* Reads the whole frame s (len bytes, or strlen): the result. */
static int read_all(struct resp_reader *r, const char *s, size_t len)
{
	resp_reset(r);
	return resp_read(r, (const uint8_t *)s, len, NULL);
}

#define READ(r, lit) read_all(r, lit, sizeof(lit) - 1)

static void str_is(const struct resp_reader *r, const char *buf, uint32_t i,
		   const char *want)
{
	assert_int_equal(r->nodes[i].len, strlen(want));
	assert_memory_equal(buf + r->nodes[i].off, want, strlen(want));
}

static void test_resp_reads_an_invalidation_push(void **state)
{
	static const char f[] = ">2\r\n$10\r\ninvalidate\r\n*2\r\n"
				"$6\r\nuser:1\r\n$6\r\nuser:2\r\n";
	struct resp_reader r;

	(void)state;
	resp_init(&r);
	assert_int_equal(READ(&r, f), 1);
	assert_int_equal(r.pos, sizeof(f) - 1);
	assert_int_equal(r.nnodes, 5);
	assert_int_equal(r.nodes[0].type, '>');
	assert_int_equal(r.nodes[0].n, 2);
	assert_int_equal(r.nodes[0].end, 5);
	assert_true(resp_str_eq(&r, (const uint8_t *)f, 1, "INVALIDATE"));
	assert_int_equal(r.nodes[2].type, '*');
	assert_int_equal(resp_next(&r, 2), 5);
	str_is(&r, f, 3, "user:1");
	str_is(&r, f, 4, "user:2");

	/* the flush form: a null instead of the keys */
	assert_int_equal(READ(&r, ">2\r\n$10\r\ninvalidate\r\n_\r\n"), 1);
	assert_int_equal(r.nodes[2].type, '_');
	resp_fini(&r);
}

static void test_resp_reads_every_type(void **state)
{
	static const char f[] =
		"*13\r\n+OK\r\n-ERR no\r\n:-42\r\n$0\r\n\r\n#t\r\n,1.5\r\n"
		"(123456789012345678901234567890\r\n!3\r\nbad\r\n"
		"=7\r\ntxt:abc\r\n%1\r\n+k\r\n:1\r\n~1\r\n_\r\n$-1\r\n*-1\r\n";
	struct resp_reader r;

	(void)state;
	resp_init(&r);
	assert_int_equal(READ(&r, f), 1);
	assert_int_equal(r.pos, sizeof(f) - 1);
	assert_int_equal(r.nodes[0].n, 13);
	assert_int_equal(r.nodes[1].type, '+');
	str_is(&r, f, 1, "OK");
	str_is(&r, f, 2, "ERR no");
	assert_int_equal(r.nodes[3].i, -42);
	assert_int_equal(r.nodes[4].len, 0);
	assert_int_equal(r.nodes[5].i, 1);
	str_is(&r, f, 6, "1.5");
	str_is(&r, f, 7, "123456789012345678901234567890");
	assert_int_equal(r.nodes[8].type, '!');
	str_is(&r, f, 9, "abc"); /* the verbatim string without "txt:" */
	assert_int_equal(r.nodes[10].type, '%');
	assert_int_equal(r.nodes[10].n, 2);
	assert_int_equal(resp_next(&r, 10), 13);
	assert_int_equal(r.nodes[13].type, '~');
	assert_int_equal(r.nodes[14].type, '_');
	assert_int_equal(r.nodes[15].type, '_'); /* RESP2's null bulk */
	assert_int_equal(r.nodes[16].type, '_'); /* and null array */
	assert_int_equal(r.nnodes, 17);
	resp_fini(&r);
}

static void test_resp_skips_attributes(void **state)
{
	static const char f[] = "*2\r\n|1\r\n+ttl\r\n:3\r\n:7\r\n:8\r\n";
	struct resp_reader r;

	(void)state;
	resp_init(&r);
	assert_int_equal(READ(&r, f), 1);
	assert_int_equal(r.nnodes, 3);
	assert_int_equal(r.nodes[1].i, 7);
	assert_int_equal(r.nodes[2].i, 8);
	/* at the top: the value after it is the frame */
	assert_int_equal(READ(&r, "|1\r\n+a\r\n+b\r\n+PONG\r\n"), 1);
	assert_int_equal(r.nnodes, 1);
	assert_int_equal(r.nodes[0].type, '+');
	resp_fini(&r);
}

/* Byte by byte, the reader keeps its place and ends where one call with
 * everything ends; what follows the frame is left alone. */
static void test_resp_resumes_a_frame_in_pieces(void **state)
{
	static const char f[] = "*3\r\n$5\r\nhello\r\n*1\r\n:1\r\n%1\r\n+a\r\n"
				"$3\r\nxyz\r\n+NEXT\r\n";
	size_t flen = sizeof(f) - 1 - strlen("+NEXT\r\n");
	struct resp_reader r;
	int rc = 0;

	(void)state;
	resp_init(&r);
	for (size_t n = 0; n <= sizeof(f) - 1; n++) {
		rc = resp_read(&r, (const uint8_t *)f, n, NULL);
		if (n < flen)
			assert_int_equal(rc, 0);
		else
			break;
	}
	assert_int_equal(rc, 1);
	assert_int_equal(r.pos, flen);
	assert_int_equal(r.nnodes, 7);
	str_is(&r, f, 1, "hello");
	str_is(&r, f, 6, "xyz");
	resp_fini(&r);
}

static void test_resp_refuses_malformed_frames(void **state)
{
	static const char *const bad[] = {
		"?1\r\n",	  /* unknown type */
		":12a\r\n",	  /* integer with junk */
		":\r\n",	  /* empty integer */
		"$3\r\nabcd\r\n", /* blob without CRLF after it */
		"$-2\r\n",	  /* negative length */
		"*-2\r\n",	  /* negative count */
		"%-1\r\n",	  /* null map */
		"#x\r\n",	  /* boolean */
		"_x\r\n",	  /* null with a body */
		"+OK\rX",	  /* CR without LF */
		"=2\r\nab\r\n",	  /* verbatim string without a format */
		"$?\r\n",	  /* streamed string */
		"(12x\r\n",	  /* big number */
		":99999999999999999999\r\n", /* integer too long */
	};
	struct resp_reader r;
	const char *why;

	(void)state;
	resp_init(&r);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		resp_reset(&r);
		int rc = resp_read(&r, (const uint8_t *)bad[i], strlen(bad[i]),
				   &why);
		if (rc != -EPROTO)
			fail_msg("%s: %d", bad[i], rc);
		assert_non_null(why);
	}
	resp_fini(&r);
}

static void test_resp_refuses_what_is_too_large(void **state)
{
	struct resp_reader r;
	char buf[64];
	const char *why = NULL;

	(void)state;
	resp_init(&r);
	snprintf(buf, sizeof(buf), "$%u\r\n", RESP_BULK_MAX + 1);
	assert_int_equal(read_all(&r, buf, strlen(buf)), -EMSGSIZE);
	snprintf(buf, sizeof(buf), "*%u\r\n", RESP_NODES_MAX + 1);
	assert_int_equal(read_all(&r, buf, strlen(buf)), -EMSGSIZE);

	/* nested deeper than RESP_DEPTH_MAX */
	char deep[4 * (RESP_DEPTH_MAX + 2) + 1] = "";
	for (unsigned i = 0; i < RESP_DEPTH_MAX + 1; i++)
		strcat(deep, "*1\r\n");
	assert_int_equal(read_all(&r, deep, strlen(deep)), -EMSGSIZE);

	/* a line that never ends */
	size_t n = RESP_LINE_MAX + 16;
	char *line = malloc(n);
	assert_non_null(line);
	line[0] = '+';
	memset(line + 1, 'a', n - 1);
	resp_reset(&r);
	assert_int_equal(resp_read(&r, (const uint8_t *)line, n, &why),
			 -EMSGSIZE);
	assert_string_equal(why, "line too long");
	resp_reset(&r);
	assert_int_equal(resp_read(&r, (const uint8_t *)line, 100, NULL), 0);
	free(line);
	resp_fini(&r);
}

/* Random bytes, and every cut of valid frames with a byte changed: any
 * answer but a crash, and a complete frame never claims bytes it was
 * not given (ASan checks the reads). */
static void test_resp_survives_random_and_cut_bytes(void **state)
{
	static const char *const seeds[] = {
		">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nk:1\r\n",
		"*3\r\n*4\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n"
		"$2\r\nid\r\n:1\r\n+x\r\n",
		"%2\r\n+server\r\n+redis\r\n+proto\r\n:3\r\n",
		"|1\r\n+a\r\n=5\r\ntxt:b\r\n",
	};
	struct resp_reader r;
	uint8_t buf[256];
	unsigned seed = 12345;

	(void)state;
	resp_init(&r);
	for (int round = 0; round < 200000; round++) {
		size_t n;

		if (round % 2) {
			n = rand_r(&seed) % sizeof(buf);
			for (size_t i = 0; i < n; i++) {
				/* mostly RESP's own bytes */
				static const char alpha[] =
					"*$:+-_>%~|#,(!=\r\n01"
					"23456789-?ab";
				buf[i] = (uint8_t)alpha[rand_r(&seed) %
							(sizeof(alpha) - 1)];
			}
		} else {
			const char *s = seeds[rand_r(&seed) % 4];
			size_t len = strlen(s);

			n = rand_r(&seed) % (len + 1);
			memcpy(buf, s, n);
			if (n && rand_r(&seed) % 2)
				buf[rand_r(&seed) % n] =
					(uint8_t)(rand_r(&seed) % 256);
		}
		/* a heap copy of exactly n bytes: a read past it is caught */
		uint8_t *p = malloc(n ? n : 1);
		assert_non_null(p);
		memcpy(p, buf, n);
		resp_reset(&r);
		int rc = resp_read(&r, p, n, NULL);
		if (rc == 1) {
			assert_true(r.pos <= n);
			assert_true(r.nnodes > 0);
			for (uint32_t i = 0; i < r.nnodes; i++) {
				assert_true(r.nodes[i].off + r.nodes[i].len <=
					    n);
				assert_true(r.nodes[i].end <= r.nnodes);
			}
		} else {
			assert_true(rc == 0 || rc == -EPROTO ||
				    rc == -EMSGSIZE);
		}
		free(p);
	}
	resp_fini(&r);
}

static void test_resp_writes_commands(void **state)
{
	const char *argv[] = { "CLIENT", "TRACKING", "ON", "" };
	size_t lens[] = { 6, 8, 2, 0 };
	uint8_t out[64];
	static const char want[] = "*4\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n"
				   "$2\r\nON\r\n$0\r\n\r\n";

	(void)state;
	assert_int_equal(resp_command(out, sizeof(out), 4,
				      (const void *const *)argv, lens),
			 sizeof(want) - 1);
	assert_memory_equal(out, want, sizeof(want) - 1);
	/* it reads back */
	struct resp_reader r;
	resp_init(&r);
	assert_int_equal(read_all(&r, (const char *)out, sizeof(want) - 1), 1);
	assert_int_equal(r.nnodes, 5);
	resp_fini(&r);
	/* one byte short: nothing to send */
	assert_int_equal(resp_command(out, sizeof(want) - 2, 4,
				      (const void *const *)argv, lens),
			 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resp_reads_an_invalidation_push),
		cmocka_unit_test(test_resp_reads_every_type),
		cmocka_unit_test(test_resp_skips_attributes),
		cmocka_unit_test(test_resp_resumes_a_frame_in_pieces),
		cmocka_unit_test(test_resp_refuses_malformed_frames),
		cmocka_unit_test(test_resp_refuses_what_is_too_large),
		cmocka_unit_test(test_resp_survives_random_and_cut_bytes),
		cmocka_unit_test(test_resp_writes_commands),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
