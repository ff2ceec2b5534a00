/*
 * test_clients.c - unit tests of the liveness check (shared/clients.h):
 * pids outside 1..pid_max, missing or wrong start times, exited and zombie
 * processes are judged dead and never alive; a process whose main thread
 * left while another runs is alive; a client unjudgeable from /proc is
 * "unknown", not dead; and a waiter's check says "alive" whatever the table
 * says while another process owns the region, judging from the table only
 * once that owner is gone.
 */
#include "testutil.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clients.h"
#include "owner.h"

#define MiB (1u << 20)

/* The state letter of /proc/PID/stat, '?' if unreadable. */
static char proc_state(pid_t pid)
{
	char path[64], buf[512];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "re")))
		return '?';
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : '?';
}

/* Waits (at most 10 s) until pid's leader shows state st. */
static void wait_state(pid_t pid, char st)
{
	uint64_t t0 = clock_mono_ms();

	while (proc_state(pid) != st) {
		assert_true(clock_mono_ms() - t0 < 10000);
		tu_sleep_ms(1);
	}
}

static void test_clients_bad_pids_are_dead(void **state)
{
	uint64_t me = clients_start_word(getpid());
	FILE *f = fopen("/proc/sys/kernel/pid_max", "re");
	unsigned long pid_max = 4194304;

	(void)state;
	if (f) {
		assert_int_equal(fscanf(f, "%lu", &pid_max), 1);
		fclose(f);
	}
	/* kill(0, 0) and kill(-1, 0) succeed: never a sign of life. */
	const uint32_t bad[] = { 0, 0xffffffffu, 0x80000000u,
				 (uint32_t)pid_max + 1 };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(clients_judge(bad[i], me), CLIENTS_DEAD);
	assert_int_equal(clients_start_time(-1), 0);
	assert_int_equal(clients_start_time(0), 0);
}

static void test_clients_start_time_decides(void **state)
{
	uint32_t pid = (uint32_t)getpid();
	uint64_t me = clients_start_word(getpid());

	(void)state;
	assert_true(me != 0 && !(me & CLIENT_FOREIGN_NS));
	assert_int_equal(clients_judge(pid, me), CLIENTS_ALIVE);
	assert_int_equal(clients_judge(pid, me + 1), CLIENTS_DEAD); /* reused */
	assert_int_equal(clients_judge(pid, 0), CLIENTS_DEAD); /* missing */
	/* Not judgeable (a namespace the daemon cannot see): unknown. */
	assert_int_equal(clients_judge(pid, CLIENT_FOREIGN_NS),
			 CLIENTS_UNKNOWN);
	assert_int_equal(clients_judge(0, CLIENT_FOREIGN_NS), CLIENTS_UNKNOWN);
}

static void test_clients_zombie_and_exited_are_dead(void **state)
{
	(void)state;
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0)
		_exit(0);
	wait_state(child, 'Z'); /* kill(pid, 0) still succeeds */
	uint64_t start = clients_start_time(child);
	assert_true(start != 0);
	assert_int_equal(clients_judge((uint32_t)child, start), CLIENTS_DEAD);
	assert_int_equal(waitpid(child, NULL, 0), child);
	assert_int_equal(clients_judge((uint32_t)child, start), CLIENTS_DEAD);
}

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

static void test_clients_leader_gone_other_thread_alive(void **state)
{
	(void)state;
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		pthread_t t;
		if (pthread_create(&t, NULL, sleeper, NULL) != 0)
			_exit(1);
		pthread_exit(NULL); /* the process lives on in t */
	}
	wait_state(child, 'Z');
	uint64_t start = clients_start_time(child);
	assert_int_equal(clients_judge((uint32_t)child, start), CLIENTS_ALIVE);
	kill(child, SIGKILL);
	assert_int_equal(waitpid(child, NULL, 0), child);
}

/* A process that owns fd until the returned pipe end is closed. */
static int owner_until_closed(int fd, pid_t *pid)
{
	int up[2], down[2];
	char c = 'n';

	assert_int_equal(pipe(up), 0);
	assert_int_equal(pipe(down), 0);
	*pid = fork();
	assert_true(*pid >= 0);
	if (*pid == 0) {
		close(up[0]);
		close(down[1]);
		c = owner_claim(fd, NULL) == 0 ? 'y' : 'n';
		if (write(up[1], &c, 1) == 1)
			while (read(down[0], &c, 1) > 0)
				;
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	assert_int_equal(read(up[0], &c, 1), 1);
	close(up[0]);
	assert_int_equal(c, 'y');
	return down[1];
}

static void test_clients_waiter_defers_to_the_owner(void **state)
{
	struct tu_region *r = *state;
	struct eng_config cfg = { .nseg = 4 };
	int fd = memfd_create("test_clients", MFD_CLOEXEC);
	pid_t owner;

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	tu_region_open(r, MiB, &cfg);
	r->e.hdr->pidns = clients_pidns_self();
	/* Client 7's slot forged to a pid that exists no more. */
	pid_t gone = fork();
	assert_true(gone >= 0);
	if (gone == 0)
		_exit(0);
	assert_int_equal(waitpid(gone, NULL, 0), gone);
	struct client_slot *t =
		(struct client_slot *)(r->base + LAYOUT_REGION_HDR_SIZE);
	t[3] = (struct client_slot){ .id = 7,
				     .pid = (uint32_t)gone,
				     .start = 1234 };
	struct clients_view v = { &r->e, fd };

	int release = owner_until_closed(fd, &owner);
	/* A daemon owns the region: it alone may say who is dead. */
	assert_true(clients_alive(&v, 7));
	assert_true(clients_alive(&v, 99)); /* not even in the table */
	close(release);
	assert_int_equal(waitpid(owner, NULL, 0), owner);
	/* No owner: the waiter judges from the table. */
	assert_false(clients_alive(&v, 7));
	assert_false(clients_alive(&v, 99));
	/* A second slot for 7 that is alive outweighs the forged one. */
	t[9] = (struct client_slot){ .id = 7,
				     .pid = (uint32_t)getpid(),
				     .start = clients_start_word(getpid()) };
	assert_true(clients_alive(&v, 7));
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clients_bad_pids_are_dead),
		cmocka_unit_test(test_clients_start_time_decides),
		cmocka_unit_test(test_clients_zombie_and_exited_are_dead),
		cmocka_unit_test(test_clients_leader_gone_other_thread_alive),
		cmocka_unit_test_setup_teardown(
			test_clients_waiter_defers_to_the_owner,
			tu_region_setup, tu_region_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
