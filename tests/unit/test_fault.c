/*
 * test_fault.c - unit tests of fault injection (shared/fault.h): with
 * SHMC_FAULT=set-begin in the environment, a process stops at that point
 * in a test build (-Dfault_injection=true) and runs past it in any other;
 * each point's name arms that point and no other.
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

/* Every point of fault.h, in order. */
static void pass_every_point(void)
{
#define FAULT_PASS_X(id, name) FAULT(id);
	FAULT_POINTS(FAULT_PASS_X)
#undef FAULT_PASS_X
}

/* What a child armed with SHMC_FAULT (as the environment has it) writes
 * to stderr when it passes every point in order: the line of the point it
 * stopped at, or "passed" if it ran past them all. */
static void run_past_points(char *line, size_t n)
{
	int p[2];

	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(p[1], STDERR_FILENO);
		fault_init();
		pass_every_point();
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
	run_past_points(line, sizeof(line));
	if (expect_armed) {
		assert_string_equal(line, "shmc-fault: set-begin\n");
	} else {
		assert_string_equal(line, "passed\n");
		fault_init();
		assert_int_equal(fault_armed, FAULT_NONE);
	}
}

/* Each point's name stops the process at that point, not at one before
 * it (in a test build); no name stops any build without the option. */
static void test_fault_each_name_arms_its_point(void **state)
{
	static const char *const names[] = {
#define FAULT_NAME_X(id, name) name,
		FAULT_POINTS(FAULT_NAME_X)
#undef FAULT_NAME_X
	};
	char line[64], want[64];

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		assert_int_equal(setenv("SHMC_FAULT", names[i], 1), 0);
		run_past_points(line, sizeof(line));
		snprintf(want, sizeof(want), "shmc-fault: %s\n", names[i]);
		assert_string_equal(line, expect_armed ? want : "passed\n");
	}
	assert_int_equal(setenv("SHMC_FAULT", "no-such-point", 1), 0);
	run_past_points(line, sizeof(line));
	assert_string_equal(line, "passed\n");
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fault_variable_arms_only_test_builds),
		cmocka_unit_test(test_fault_each_name_arms_its_point),
	};

	if (argc != 2 ||
	    (strcmp(argv[1], "armed") && strcmp(argv[1], "ignored"))) {
		fprintf(stderr, "usage: test_fault armed|ignored\n");
		return 2;
	}
	expect_armed = strcmp(argv[1], "armed") == 0;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
