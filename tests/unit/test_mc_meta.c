/*
 * test_mc_meta.c - memcached's meta protocol (daemon/mc_meta.c), driven through
 * mc_process() on a region of its own (mc_fixture.h).
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

static void test_mc_meta_noop(void **state)
{
	struct mc_fx *f = *state;

	assert_mc(f, "mn\r\n", "MN\r\n");
}

#define T(name)                                                                \
	cmocka_unit_test_setup_teardown(name, mc_fx_setup, mc_fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_mc_meta_noop),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
