/*
 * test_owner.c - unit tests of region ownership (shared/owner.h): one
 * process owns a file at a time, a second claim is refused with the owner's
 * pid, the claimer knows its claimed files by path, a descriptor passed to
 * another process does not carry ownership, and the kernel frees the claim
 * when the owner is killed.
 */
#include "testutil.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "owner.h"

static int region_file(void)
{
	int fd = memfd_create("test_owner", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	return fd;
}

/* Forks a child that claims fd, says so on a pipe and waits to be killed. */
static pid_t owner_child(int fd)
{
	int p[2];
	char c;

	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		c = owner_claim(fd, NULL) == 0 ? 'y' : 'n';
		if (write(p[1], &c, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	assert_int_equal(read(p[0], &c, 1), 1);
	close(p[0]);
	assert_int_equal(c, 'y');
	return pid;
}

static void test_owner_second_claim_names_the_owner(void **state)
{
	int fd = region_file();
	pid_t holder = -1;

	(void)state;
	pid_t child = owner_child(fd);
	assert_int_equal(owner_query(fd, &holder), 1);
	assert_int_equal(holder, child);
	holder = -1;
	assert_rc(owner_claim(fd, &holder), -EBUSY);
	assert_int_equal(holder, child);

	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	assert_int_equal(owner_query(fd, &holder), 0);
	assert_rc(owner_claim(fd, NULL), 0);
	close(fd);
}

static void test_owner_own_claim_is_not_seen_and_repeats(void **state)
{
	int fd = region_file();

	(void)state;
	assert_rc(owner_claim(fd, NULL), 0);
	assert_rc(owner_claim(fd, NULL), 0);
	assert_int_equal(owner_query(fd, NULL), 0);

	/* A child that inherited the descriptor does not own the file. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pid_t h = 0;
		_exit(owner_claim(fd, &h) == -EBUSY && h == getppid() ? 0 : 1);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(fd);
}

static void test_owner_claimed_files_are_known_by_path(void **state)
{
	int fd = region_file(), other = region_file();
	char path[64], other_path[64];

	(void)state;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	snprintf(other_path, sizeof(other_path), "/proc/self/fd/%d", other);
	assert_false(owner_is_claimed(path));
	assert_rc(owner_claim(fd, NULL), 0);
	assert_true(owner_is_claimed(path));
	assert_false(owner_is_claimed(other_path));
	assert_false(owner_is_claimed("/nonexistent/shmc"));
	close(fd);
	close(other);
}

static void test_owner_bad_descriptor(void **state)
{
	(void)state;
	assert_rc(owner_claim(-1, NULL), -EBADF);
	assert_rc(owner_query(-1, NULL), -EBADF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_owner_second_claim_names_the_owner),
		cmocka_unit_test(test_owner_own_claim_is_not_seen_and_repeats),
		cmocka_unit_test(test_owner_claimed_files_are_known_by_path),
		cmocka_unit_test(test_owner_bad_descriptor),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
