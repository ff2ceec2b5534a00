/*
 * test_fault.c - unit tests of fault injection (shared/fault.h): with
 * SHMC_FAULT=set-begin in the environment, a process stops at that point
 * in a test build (-Dfault_injection=true) and runs past it in any other.
 *
 * Built twice from this file (tests/meson.build), so that every build tests
 * both configurations: "fault" with this build's engine, expecting what the
 * fault_injection option says (so it fails if a build without the option
 * honoured the variable), and "fault-other" compiled the other way.  The
 * first argument says what to expect: "armed" or "ignored".
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault.h"

static bool expect_armed;

/* What a child armed with SHMC_FAULT=set-begin writes to stderr when it
 * reaches FAULT(SET_BEGIN): the point's line if it stopped there, "passed"
 * if it ran past it. */
static void run_to_set_begin(char *line, size_t n)
{
	int p[2];

	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(p[1], STDERR_FILENO);
		fault_init();
		FAULT(SET_BEGIN);
		if (write(STDERR_FILENO, "passed\n", 7) != 7)
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	size_t len = 0;
	while (len + 1 < n && (len == 0 || line[len - 1] != '\n')) {
		ssize_t r = read(p[0], line + len, n - 1 - len);
		assert_true(r > 0);
		len += (size_t)r;
	}
	line[len] = '\0';
	close(p[0]);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
}

static void test_fault_variable_arms_only_test_builds(void **state)
{
	char line[64];

	(void)state;
	assert_int_equal(setenv("SHMC_FAULT", "set-begin", 1), 0);
	run_to_set_begin(line, sizeof(line));
	if (expect_armed) {
		assert_string_equal(line, "shmc-fault: set-begin\n");
	} else {
		assert_string_equal(line, "passed\n");
		fault_init();
		assert_int_equal(fault_armed, FAULT_NONE);
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fault_variable_arms_only_test_builds),
	};

	if (argc != 2 ||
	    (strcmp(argv[1], "armed") && strcmp(argv[1], "ignored"))) {
		fprintf(stderr, "usage: test_fault armed|ignored\n");
		return 2;
	}
	expect_armed = strcmp(argv[1], "armed") == 0;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
