/*
 * test_mc_proto.c - the memcached protocols' request loop (daemon/
 * mc_proto.c): framing, unknown commands, line limits, the shared checks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"
#include "mc_fixture.h"
#include "mc_int.h"

static void test_mc_proto_unknown_command_is_error(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "bogus\r\n", "ERROR\r\n");
	assert_mc(f, "\r\n", "ERROR\r\n");
	/* The connection stays usable. */
	assert_mc(f, "version\r\n", "VERSION " MC_VERSION_LINE "\r\n");
}

static void test_mc_proto_pipelined_in_order(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "version\r\nmn\r\nversion\n",
		  "VERSION " MC_VERSION_LINE
		  "\r\nMN\r\nVERSION " MC_VERSION_LINE "\r\n");
}

static void test_mc_proto_partial_line_waits(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "vers", "");
	assert_true(f->s.need > 4);
	assert_mc(f, "ion\r\n", "VERSION " MC_VERSION_LINE "\r\n");
}

static void test_mc_proto_long_line_closes(void **state)
{
	struct mc_fx *f = *state;
	char *line = malloc(MC_LINE_MAX + 2);

	assert_non_null(line);
	memset(line, 'a', MC_LINE_MAX + 1);
	line[MC_LINE_MAX + 1] = '\0';
	assert_mc(f, line, "CLIENT_ERROR line too long\r\n");
	assert_true(f->s.close);
	free(line);
}

static void test_mc_proto_binary_refused(void **state)
{
	struct mc_fx *f = *state;
	const uint8_t req[] = { 0x80, 0x00, 0x00, 0x00 };

	const char *r = mc_feed(f, req, sizeof(req));
	assert_non_null(strstr(r, "CLIENT_ERROR"));
	assert_true(f->s.close);
}

static void test_mc_proto_quit_closes(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "quit\r\nversion\r\n", "");
	assert_true(f->s.close);
}

static void test_mc_proto_numbers(void **state)
{
	(void)state;
	struct mc_tok t;
	uint64_t v;
	int32_t i;

	t = (struct mc_tok){ "18446744073709551615", 20 };
	assert_true(mc_tok_u64(&t, &v));
	assert_true(v == UINT64_MAX);
	t = (struct mc_tok){ "18446744073709551616", 20 };
	assert_false(mc_tok_u64(&t, &v));
	t = (struct mc_tok){ "12a", 3 };
	assert_false(mc_tok_u64(&t, &v));
	t = (struct mc_tok){ "-1", 2 };
	assert_false(mc_tok_u64(&t, &v));
	assert_true(mc_tok_i32(&t, &i));
	assert_int_equal(i, -1);
}

static void test_mc_proto_keys(void **state)
{
	(void)state;
	char k[MC_KEY_MAX + 1];

	memset(k, 'k', sizeof(k));
	assert_true(mc_key_ok(k, MC_KEY_MAX));
	assert_false(mc_key_ok(k, MC_KEY_MAX + 1));
	assert_false(mc_key_ok("a\x01", 2));
	assert_false(mc_key_ok("", 0));
}

static void test_mc_proto_base64_round_trip(void **state)
{
	(void)state;
	uint8_t bin[7] = { 0, 1, 2, 0xff, 0xfe, '\n', ' ' }, back[8];
	char enc[16];

	for (size_t n = 1; n <= sizeof(bin); n++) {
		long e = mc_base64_encode(bin, n, enc, sizeof(enc));
		assert_true(e > 0);
		long d = mc_base64_decode(enc, (size_t)e, back, sizeof(back));
		assert_int_equal(d, (long)n);
		assert_memory_equal(back, bin, n);
	}
	assert_int_equal(mc_base64_decode("Zm9v", 4, back, sizeof(back)), 3);
	assert_memory_equal(back, "foo", 3);
	assert_int_equal(mc_base64_decode("Zm9", 3, back, sizeof(back)), -1);
	assert_int_equal(mc_base64_decode("Z=9v", 4, back, sizeof(back)), -1);
}

static void test_mc_proto_exptime(void **state)
{
	(void)state;
	bool expired;
	uint32_t now = 2000000000u;

	assert_int_equal(mc_exptime_ttl(0, now, &expired), 0);
	assert_false(expired);
	assert_int_equal(mc_exptime_ttl(100, now, &expired), 100);
	assert_false(expired);
	assert_int_equal(mc_exptime_ttl((int64_t)now + 50, now, &expired), 50);
	assert_false(expired);
	mc_exptime_ttl(-1, now, &expired);
	assert_true(expired);
	mc_exptime_ttl((int64_t)now - 1, now, &expired);
	assert_true(expired);
}

#define T(name)                                                                \
	cmocka_unit_test_setup_teardown(name, mc_fx_setup, mc_fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_mc_proto_unknown_command_is_error),
		T(test_mc_proto_pipelined_in_order),
		T(test_mc_proto_partial_line_waits),
		T(test_mc_proto_long_line_closes),
		T(test_mc_proto_binary_refused),
		T(test_mc_proto_quit_closes),
		T(test_mc_proto_numbers),
		T(test_mc_proto_keys),
		T(test_mc_proto_base64_round_trip),
		T(test_mc_proto_exptime),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
