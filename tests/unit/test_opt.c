/*
 * test_opt.c - the command-line helpers of the daemon and the tools
 * (shared/opt.c): numbers and sizes with their ranges, overflow, suffixes,
 * garbage and empty strings, the messages a user reads, and the --help
 * layout.
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

#include "opt.h"

static void test_opt_uint_accepts_plain_decimal(void **state)
{
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
		{ "0", 0 },
		{ "7", 7 },
		{ "007", 7 },
		{ "4294967296", UINT64_C(4294967296) },
		{ "18446744073709551615", UINT64_MAX },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t v = 1;

		assert_int_equal(opt_parse_uint(ok[i].s, &v), 0);
		assert_true(v == ok[i].v);
	}
}

static void test_opt_uint_refuses_garbage_and_empty(void **state)
{
	static const char *const bad[] = {
		"",	" ",   " 5",  "5 ", "+5",  "-5",  "-0",
		"0x10", "1e3", "1.0", "5s", "64K", "abc", "5\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = 42;

		if (opt_parse_uint(bad[i], &v) != -EINVAL)
			fail_msg("\"%s\" was not refused as -EINVAL", bad[i]);
		assert_int_equal(v, 42);
	}
	uint64_t v;
	assert_int_equal(opt_parse_uint(NULL, &v), -EINVAL);
	assert_int_equal(opt_parse_uint("1", NULL), -EINVAL);
}

static void test_opt_uint_overflow(void **state)
{
	uint64_t v = 42;

	(void)state;
	assert_int_equal(opt_parse_uint("18446744073709551616", &v), -ERANGE);
	assert_int_equal(opt_parse_uint("99999999999999999999999", &v),
			 -ERANGE);
	assert_int_equal(v, 42);
	/* Garbage wins over overflow: it is not a number at all. */
	assert_int_equal(opt_parse_uint("99999999999999999999999x", &v),
			 -EINVAL);
}

static void test_opt_size_suffixes(void **state)
{
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
		{ "0", 0 },
		{ "512", 512 },
		{ "512B", 512 },
		{ "1k", 1024 },
		{ "1K", 1024 },
		{ "4KiB", 4096 },
		{ "64M", UINT64_C(64) << 20 },
		{ "64MB", UINT64_C(64) << 20 },
		{ "64mib", UINT64_C(64) << 20 },
		{ "2G", UINT64_C(2) << 30 },
		{ "1T", UINT64_C(1) << 40 },
		{ "16777215T", UINT64_C(16777215) << 40 },
	};
	static const char *const bad[] = {
		"",	"M",   "-1M", "+1M", " 1M",   "1M ", "1 M", "1.5G",
		"0x10", "1MM", "1iB", "1Mi", "1MiBB", "1P",  "1X",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t v = 1;

		assert_int_equal(opt_parse_size(ok[i].s, &v), 0);
		assert_true(v == ok[i].v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = 42;

		if (opt_parse_size(bad[i], &v) != -EINVAL)
			fail_msg("size \"%s\" was not refused", bad[i]);
		assert_int_equal(v, 42);
	}
}

static void test_opt_size_overflow(void **state)
{
	uint64_t v = 42;

	(void)state;
	assert_int_equal(opt_parse_size("16777216T", &v), -ERANGE);
	assert_int_equal(opt_parse_size("18014398509481984K", &v), -ERANGE);
	assert_int_equal(opt_parse_size("18446744073709551616", &v), -ERANGE);
	assert_int_equal(v, 42);
}

static void test_opt_size_str_round_trips(void **state)
{
	static const uint64_t vals[] = {
		0,
		1,
		1000,
		1024,
		1536,
		UINT64_C(1) << 20,
		UINT64_C(3) << 30,
		UINT64_C(1) << 40,
		UINT64_MAX,
	};
	char buf[32];

	(void)state;
	assert_string_equal(opt_size_str(UINT64_C(1) << 20, buf, sizeof(buf)),
			    "1M");
	assert_string_equal(opt_size_str(1536, buf, sizeof(buf)), "1536");
	assert_string_equal(opt_size_str(UINT64_C(2) << 40, buf, sizeof(buf)),
			    "2T");
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		uint64_t v = 42;

		opt_size_str(vals[i], buf, sizeof(buf));
		assert_int_equal(opt_parse_size(buf, &v), 0);
		assert_true(v == vals[i]);
	}
}

static void test_opt_range_messages_name_option_and_range(void **state)
{
	char why[200];
	uint64_t v = 42;

	(void)state;
	assert_int_equal(opt_uint("--procs", "0", 1, 256, &v, why, sizeof(why)),
			 -ERANGE);
	assert_string_equal(why, "--procs: '0' is out of range (1 to 256)");
	assert_int_equal(opt_uint("--procs", "257", 1, 256, &v, why,
				  sizeof(why)),
			 -ERANGE);
	assert_int_equal(opt_uint("--procs", "99999999999999999999", 1, 256, &v,
				  why, sizeof(why)),
			 -ERANGE);
	assert_string_equal(why, "--procs: '99999999999999999999' is out of "
				 "range (1 to 256)");
	assert_int_equal(opt_uint("--procs", "", 1, 256, &v, why, sizeof(why)),
			 -EINVAL);
	assert_string_equal(why, "--procs: invalid number '' (1 to 256)");
	assert_int_equal(v, 42);
	assert_int_equal(opt_uint("--procs", "1", 1, 256, &v, why, sizeof(why)),
			 0);
	assert_int_equal(v, 1);
	assert_int_equal(opt_uint("--procs", "256", 1, 256, &v, why,
				  sizeof(why)),
			 0);
	assert_int_equal(v, 256);

	assert_int_equal(opt_size("--cache", "512K", UINT64_C(1) << 20,
				  UINT64_C(1) << 40, &v, why, sizeof(why)),
			 -ERANGE);
	assert_string_equal(why,
			    "--cache: size '512K' is out of range (1M to 1T)");
	assert_int_equal(opt_size(NULL, "lots", 1, 2, &v, why, sizeof(why)),
			 -EINVAL);
	assert_string_equal(why, "invalid size 'lots' (use e.g. 64M, 2G)");
	assert_int_equal(opt_size("--cache", "1T", UINT64_C(1) << 20,
				  UINT64_C(1) << 40, &v, why, sizeof(why)),
			 0);
	assert_true(v == UINT64_C(1) << 40);
}

static void test_opt_messages_stay_on_one_line(void **state)
{
	char val[300], why[400];
	uint64_t v;

	(void)state;
	memset(val, 'x', sizeof(val) - 1);
	val[sizeof(val) - 1] = '\0';
	val[3] = '\n';
	assert_int_equal(opt_uint("--n", val, 0, 1, &v, why, sizeof(why)),
			 -EINVAL);
	assert_null(strchr(why, '\n'));
	assert_non_null(strstr(why, "xxx\\x0axx"));
	assert_non_null(strstr(why, "...'"));
	/* A small buffer is cut, not overrun. */
	assert_int_equal(opt_uint("--n", val, 0, 1, &v, why, 8), -EINVAL);
	assert_int_equal(strlen(why), 7);
}

static void test_opt_usage_layout(void **state)
{
	static const struct opt_spec specs[] = {
		{ "memory", 0, "SIZE", "size of the region" },
		{ "a-very-long-option-name", 0, "VALUE", "first\nsecond" },
		{ "hidden", 0, NULL, NULL },
		{ "help", 'h', NULL, "print this help" },
	};
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	(void)state;
	assert_non_null(f);
	opt_usage(f, specs, 4, OPT_ALL, OPT_USAGE_META_EQ);
	opt_usage(f, specs, 1, OPT_ALL, OPT_USAGE_META_SPACE);
	opt_usage(f, specs, 4, 1u << 3, OPT_USAGE_META_EQ);
	fclose(f);
	assert_string_equal(buf,
			    "      --memory=SIZE         size of the region\n"
			    "      --a-very-long-option-name=VALUE\n"
			    "                            first\n"
			    "                            second\n"
			    "  -h, --help                print this help\n"
			    "  --memory SIZE             size of the region\n"
			    "  -h, --help                print this help\n");
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_opt_uint_accepts_plain_decimal),
		cmocka_unit_test(test_opt_uint_refuses_garbage_and_empty),
		cmocka_unit_test(test_opt_uint_overflow),
		cmocka_unit_test(test_opt_size_suffixes),
		cmocka_unit_test(test_opt_size_overflow),
		cmocka_unit_test(test_opt_size_str_round_trips),
		cmocka_unit_test(test_opt_range_messages_name_option_and_range),
		cmocka_unit_test(test_opt_messages_stay_on_one_line),
		cmocka_unit_test(test_opt_usage_layout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
