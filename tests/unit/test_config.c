/*
 * test_config.c - unit tests of daemon/config.c: defaults, each option in
 * both getopt_long forms, sizes, the config file and its errors, --help
 * and --version, and the one-line errors for bad and hostile input.
 *
 * Defaults as root and as another user cannot both be tested by switching
 * the euid, so the default tests check what holds for the euid they run
 * under.  Every parse runs on copies of the argument strings (getopt_long
 * reorders argv) with `out` and `err` captured by open_memstream().
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "opt.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

/* The outcome of one config_parse() call. */
struct run {
	enum config_result res;
	char *out; /* what went to `out` */
	char *err; /* what went to `err` */
};

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

/* Parses argv = { "shmcached", args..., NULL } (args NULL-terminated)
 * into *c. */
static struct run parse_argv(struct config *c, const char *const *args)
{
	struct run r = { 0 };
	size_t n = 0, osz = 0, esz = 0;
	char *argv[64];
	FILE *out, *err;

	argv[n++] = strdup("shmcached");
	for (; args[n - 1]; n++) {
		assert_true(n < 63);
		argv[n] = strdup(args[n - 1]);
		assert_non_null(argv[n]);
	}
	argv[n] = NULL;
	out = open_memstream(&r.out, &osz);
	err = open_memstream(&r.err, &esz);
	assert_non_null(out);
	assert_non_null(err);
	r.res = config_parse(c, (int)n, argv, out, err);
	fclose(out);
	fclose(err);
	for (size_t i = 0; i < n; i++)
		free(argv[i]);
	return r;
}

#define ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })

/* Parses args on top of the defaults. */
#define PARSE(c, ...) (config_defaults(c), parse_argv((c), ARGS(__VA_ARGS__)))

static unsigned count_char(const char *s, char ch)
{
	unsigned n = 0;

	for (; s && *s; s++)
		n += *s == ch;
	return n;
}

/* Asserts r failed with exactly one line on err, starting "shmcached: "
 * and containing each of the NULL-terminated words, nothing on out. */
static void assert_one_line_error(const struct run *r, const char *const *words)
{
	if (r->res != CONFIG_ERROR)
		fail_msg("result %d, want CONFIG_ERROR (err: %s)", r->res,
			 r->err);
	assert_non_null(r->err);
	if (count_char(r->err, '\n') != 1 || r->err[strlen(r->err) - 1] != '\n')
		fail_msg("want exactly one line, got: \"%s\"", r->err);
	assert_true(strncmp(r->err, "shmcached: ", 11) == 0);
	for (; *words; words++)
		if (!strstr(r->err, *words))
			fail_msg("error \"%s\" does not contain \"%s\"", r->err,
				 *words);
	assert_string_equal(r->out, "");
}

#define ASSERT_ERROR(r, ...) assert_one_line_error((r), ARGS(__VA_ARGS__))

/* Writes text to a new temporary file; returns its malloc'd path. */
static char *temp_file(const void *text, size_t len)
{
	char *path = strdup("/tmp/shmc-test-config-XXXXXX");
	int fd;

	assert_non_null(path);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

static char *temp_conf(const char *text)
{
	return temp_file(text, strlen(text));
}

static void temp_remove(char *path)
{
	unlink(path);
	free(path);
}

/* ------------------------------------------------------------------------
 * Defaults
 * ------------------------------------------------------------------------ */

static void assert_defaults_sane(const struct config *c)
{
	char want[64];

	assert_int_equal(c->memory, UINT64_C(64) << 20);
	assert_int_equal(c->segments, 0); /* the daemon's choice by --memory */
	assert_int_equal(c->avg_item, 128);
	assert_int_equal(c->log_level, CONFIG_LOG_INFO);
	assert_int_equal(c->max_clients, 1024);
	assert_int_equal(c->lock_timeout_ms, 2000);
	assert_int_equal(c->n_allow_users, 0);
	assert_int_equal(c->n_allow_groups, 0);
	assert_false(c->foreground || c->reset || c->unlink_on_exit ||
		     c->hugepages || c->prefault || c->force_epoll);
	assert_string_equal(c->snapshot, "");
	assert_string_equal(c->log_file, "");

	size_t len = strlen(c->socket_path);
	assert_true(len > 0 && len <= 107);
	assert_int_equal(c->socket_path[0], '/');
	assert_true(len >= 15);
	assert_string_equal(c->socket_path + len - 15, "/shmcached.sock");

	assert_int_equal(c->name[0], '/');
	assert_null(strchr(c->name + 1, '/'));
	if (geteuid() == 0) {
		assert_string_equal(c->name, "/shmcached");
		assert_string_equal(c->socket_path,
				    "/run/shmcached/shmcached.sock");
	} else {
		snprintf(want, sizeof(want), "/shmcached-%u",
			 (unsigned)geteuid());
		assert_string_equal(c->name, want);
	}
}

static void test_config_defaults_sane(void **state)
{
	struct config c;

	(void)state;
	memset(&c, 0xa5, sizeof(c));
	config_defaults(&c);
	assert_defaults_sane(&c);

	/* A parse of no options leaves the defaults as they are. */
	struct config d = c;
	struct run r = parse_argv(&d, ARGS(NULL));
	assert_int_equal(r.res, CONFIG_OK);
	assert_memory_equal(&c, &d, sizeof(c));
	run_free(&r);
}

/* The socket default follows XDG_RUNTIME_DIR for an ordinary user, falls
 * back to /tmp when it is unset, relative or too long, and is ignored for
 * root. */
static void test_config_defaults_xdg_runtime_dir(void **state)
{
	char *saved = getenv("XDG_RUNTIME_DIR");
	char longdir[200], want[128];
	struct config c;
	bool root = geteuid() == 0;

	(void)state;
	saved = saved ? strdup(saved) : NULL;
	snprintf(want, sizeof(want), "/tmp/shmcached-%u/shmcached.sock",
		 (unsigned)geteuid());
	memset(longdir, 'd', sizeof(longdir) - 1);
	longdir[0] = '/';
	longdir[sizeof(longdir) - 1] = '\0';

	setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
	config_defaults(&c);
	assert_defaults_sane(&c);
	assert_string_equal(c.socket_path,
			    root ? "/run/shmcached/shmcached.sock"
				 : "/run/user/4242/shmcached.sock");

	static const char *const fallback[] = { NULL, "relative/dir", "" };
	for (size_t i = 0; i < 4; i++) {
		if (i < 3 && fallback[i])
			setenv("XDG_RUNTIME_DIR", fallback[i], 1);
		else if (i < 3)
			unsetenv("XDG_RUNTIME_DIR");
		else
			setenv("XDG_RUNTIME_DIR", longdir, 1);
		config_defaults(&c);
		assert_defaults_sane(&c);
		assert_string_equal(c.socket_path,
				    root ? "/run/shmcached/shmcached.sock"
					 : want);
	}

	if (saved)
		setenv("XDG_RUNTIME_DIR", saved, 1);
	else
		unsetenv("XDG_RUNTIME_DIR");
	free(saved);
}

/* ------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------ */

static void check_memory(const struct config *c)
{
	assert_int_equal(c->memory, UINT64_C(3) << 30);
}
static void check_segments(const struct config *c)
{
	assert_int_equal(c->segments, 1024);
}
static void check_avg_item(const struct config *c)
{
	assert_int_equal(c->avg_item, 4096);
}
static void check_socket(const struct config *c)
{
	assert_string_equal(c->socket_path, "/tmp/x/ctl.sock");
}
static void check_name(const struct config *c)
{
	assert_string_equal(c->name, "/mycache");
}
static void check_allow_user(const struct config *c)
{
	assert_int_equal(c->n_allow_users, 1);
	assert_int_equal(c->allow_users[0], 0);
}
static void check_allow_group(const struct config *c)
{
	assert_int_equal(c->n_allow_groups, 1);
	assert_int_equal(c->allow_groups[0], 0);
}
static void check_snapshot(const struct config *c)
{
	assert_string_equal(c->snapshot, "/var/lib/shmcached/snap");
}
static void check_log_level(const struct config *c)
{
	assert_int_equal(c->log_level, CONFIG_LOG_DEBUG);
}
static void check_log_file(const struct config *c)
{
	assert_string_equal(c->log_file, "/var/log/shmcached.log");
}
static void check_max_clients(const struct config *c)
{
	assert_int_equal(c->max_clients, 7);
}
static void check_lock_timeout(const struct config *c)
{
	assert_int_equal(c->lock_timeout_ms, 60000);
}

static void test_config_options_both_forms(void **state)
{
	static const struct {
		const char *opt, *val;
		void (*check)(const struct config *c);
	} cases[] = {
		{ "memory", "3G", check_memory },
		{ "segments", "1024", check_segments },
		{ "avg-item", "4K", check_avg_item },
		{ "socket", "/tmp/x/ctl.sock", check_socket },
		{ "name", "/mycache", check_name },
		{ "allow-user", "root", check_allow_user },
		{ "allow-group", "root", check_allow_group },
		{ "snapshot", "/var/lib/shmcached/snap", check_snapshot },
		{ "log-level", "debug", check_log_level },
		{ "log-file", "/var/log/shmcached.log", check_log_file },
		{ "max-clients", "7", check_max_clients },
		{ "lock-timeout", "60000", check_lock_timeout },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config a, b, d;
		char opt[64], joined[128];

		snprintf(opt, sizeof(opt), "--%s", cases[i].opt);
		snprintf(joined, sizeof(joined), "--%s=%s", cases[i].opt,
			 cases[i].val);
		struct run ra = PARSE(&a, opt, cases[i].val);
		struct run rb = PARSE(&b, joined);
		if (ra.res != CONFIG_OK || rb.res != CONFIG_OK)
			fail_msg("%s: %s%s", opt, ra.err, rb.err);
		assert_string_equal(ra.err, "");
		cases[i].check(&a);
		cases[i].check(&b);
		assert_memory_equal(&a, &b, sizeof(a));
		config_defaults(&d);
		assert_memory_not_equal(&a, &d, sizeof(a));
		run_free(&ra);
		run_free(&rb);
	}
}

static void test_config_flags(void **state)
{
	struct config c;
	struct run r;

	(void)state;
	r = PARSE(&c, "--foreground", "--reset", "--unlink-on-exit",
		  "--hugepages", "--prefault", "--epoll");
	assert_int_equal(r.res, CONFIG_OK);
	assert_true(c.foreground && c.reset && c.unlink_on_exit &&
		    c.hugepages && c.prefault && c.force_epoll);
	run_free(&r);

	/* =BOOL turns a flag off again (to override the file). */
	r = PARSE(&c, "--reset", "--reset=no", "--epoll=false",
		  "--foreground=YES", "--prefault=0", "--hugepages=on");
	assert_int_equal(r.res, CONFIG_OK);
	assert_false(c.reset);
	assert_false(c.force_epoll);
	assert_true(c.foreground);
	assert_false(c.prefault);
	assert_true(c.hugepages);
	run_free(&r);

	r = PARSE(&c, "--reset=maybe");
	ASSERT_ERROR(&r, "--reset", "'maybe'");
	run_free(&r);

	/* A flag takes no separate value: "yes" is a stray argument. */
	r = PARSE(&c, "--reset", "yes");
	ASSERT_ERROR(&r, "'yes'");
	run_free(&r);
}

static void test_config_later_option_wins(void **state)
{
	struct config c;
	struct run r;

	(void)state;
	r = PARSE(&c, "--memory", "2M", "--segments=8", "--memory=4M",
		  "--log-level", "error", "--log-level=warn");
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(c.memory, 4u << 20);
	assert_int_equal(c.segments, 8);
	assert_int_equal(c.log_level, CONFIG_LOG_WARN);
	run_free(&r);
}

static void test_config_log_levels(void **state)
{
	static const struct {
		const char *s;
		int level;
	} cases[] = {
		{ "error", 0 }, { "warn", 1 },	{ "warning", 1 }, { "info", 2 },
		{ "debug", 3 }, { "DEBUG", 3 }, { "0", 0 },	  { "3", 3 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;
		struct run r = PARSE(&c, "--log-level", cases[i].s);

		assert_int_equal(r.res, CONFIG_OK);
		assert_int_equal(c.log_level, cases[i].level);
		run_free(&r);
	}
}

static void test_config_name_gets_leading_slash(void **state)
{
	struct config c;
	struct run r;

	(void)state;
	r = PARSE(&c, "--name", "cache-a");
	assert_int_equal(r.res, CONFIG_OK);
	assert_string_equal(c.name, "/cache-a");
	run_free(&r);

	static const char *const bad[] = { "",	 "/",  "/a/b",	"a/b",
					   "/.", "..", "cache/" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = PARSE(&c, "--name", bad[i]);
		ASSERT_ERROR(&r, "--name");
		run_free(&r);
	}

	char big[300];
	memset(big, 'n', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[254] = '\0'; /* 254 + its '/' = 255: the longest */
	r = PARSE(&c, "--name", big);
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(strlen(c.name), 255);
	run_free(&r);
	big[254] = 'n';
	big[255] = '\0';
	r = PARSE(&c, "--name", big);
	ASSERT_ERROR(&r, "--name", "longer");
	run_free(&r);
}

static void test_config_paths(void **state)
{
	char cwd[PATH_MAX], want[PATH_MAX + 32], path[200];
	struct config c;
	struct run r;

	(void)state;
	assert_non_null(getcwd(cwd, sizeof(cwd)));

	/* Relative paths are made absolute (the daemon leaves the cwd). */
	r = PARSE(&c, "--snapshot", "snap.bin", "--log-file=logs/d.log");
	assert_int_equal(r.res, CONFIG_OK);
	snprintf(want, sizeof(want), "%s%ssnap.bin", cwd,
		 strcmp(cwd, "/") ? "/" : "");
	assert_string_equal(c.snapshot, want);
	snprintf(want, sizeof(want), "%s%slogs/d.log", cwd,
		 strcmp(cwd, "/") ? "/" : "");
	assert_string_equal(c.log_file, want);
	run_free(&r);

	/* "" clears snapshot and log file, but a socket needs a path. */
	r = PARSE(&c, "--snapshot=/a", "--snapshot=", "--log-file", "");
	assert_int_equal(r.res, CONFIG_OK);
	assert_string_equal(c.snapshot, "");
	assert_string_equal(c.log_file, "");
	run_free(&r);
	r = PARSE(&c, "--socket=");
	ASSERT_ERROR(&r, "--socket");
	run_free(&r);

	/* sun_path holds 107 bytes and a NUL. */
	memset(path, 's', sizeof(path));
	path[0] = '/';
	path[107] = '\0';
	r = PARSE(&c, "--socket", path);
	assert_int_equal(r.res, CONFIG_OK);
	assert_string_equal(c.socket_path, path);
	run_free(&r);
	path[107] = 's';
	path[108] = '\0';
	r = PARSE(&c, "--socket", path);
	ASSERT_ERROR(&r, "--socket", "107");
	run_free(&r);
}

/* ------------------------------------------------------------------------
 * Users and groups
 * ------------------------------------------------------------------------ */

static void test_config_allow_lists(void **state)
{
	const char *args[40];
	char nums[40][32];
	struct config c;
	struct run r;

	(void)state;
	/* By name or number; a repeat is not stored twice. */
	r = PARSE(&c, "--allow-user", "root", "--allow-user=12345",
		  "--allow-user", "0", "--allow-group=root", "--allow-group",
		  "777");
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(c.n_allow_users, 2);
	assert_int_equal(c.allow_users[0], 0);
	assert_int_equal(c.allow_users[1], 12345);
	assert_int_equal(c.n_allow_groups, 2);
	assert_int_equal(c.allow_groups[0], 0);
	assert_int_equal(c.allow_groups[1], 777);
	run_free(&r);

	r = PARSE(&c, "--allow-user", "no-such-user-shmc");
	ASSERT_ERROR(&r, "--allow-user", "'no-such-user-shmc'");
	run_free(&r);
	r = PARSE(&c, "--allow-group=no-such-group-shmc");
	ASSERT_ERROR(&r, "--allow-group", "'no-such-group-shmc'");
	run_free(&r);
	r = PARSE(&c, "--allow-user", "4294967295"); /* (uid_t)-1 */
	ASSERT_ERROR(&r, "--allow-user");
	run_free(&r);
	r = PARSE(&c, "--allow-group", "99999999999999999999999");
	ASSERT_ERROR(&r, "--allow-group");
	run_free(&r);
	r = PARSE(&c, "--allow-user=");
	ASSERT_ERROR(&r, "--allow-user");
	run_free(&r);

	/* 32 entries fit, the 33rd is refused. */
	for (int i = 0; i < 33; i++) {
		snprintf(nums[i], sizeof(nums[i]), "--allow-user=%d", 1000 + i);
		args[i] = nums[i];
	}
	args[32] = NULL;
	config_defaults(&c);
	r = parse_argv(&c, args);
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(c.n_allow_users, 32);
	assert_int_equal(c.allow_users[31], 1031);
	run_free(&r);
	args[32] = nums[32];
	args[33] = NULL;
	config_defaults(&c);
	r = parse_argv(&c, args);
	ASSERT_ERROR(&r, "--allow-user", "32");
	run_free(&r);
}

/* ------------------------------------------------------------------------
 * Namespaces
 * ------------------------------------------------------------------------ */

static void test_config_namespaces(void **state)
{
	struct config c;
	struct run r;

	(void)state;
	/* In order, a repeat not stored twice, any bytes but NUL. */
	r = PARSE(&c, "--namespace", "user:", "--namespace=a b\xff",
		  "--namespace", "user:");
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(c.n_namespaces, 2);
	assert_string_equal(c.namespaces[0], "user:");
	assert_string_equal(c.namespaces[1], "a b\xff");
	run_free(&r);

	r = PARSE(&c, "--namespace=");
	ASSERT_ERROR(&r, "--namespace", "1 to 52 bytes");
	run_free(&r);
	r = PARSE(&c, "--namespace",
		  "12345678901234567890123456789012345678901234567890123");
	ASSERT_ERROR(&r, "--namespace", "1 to 52 bytes");
	run_free(&r);
	r = PARSE(&c, "--namespace",
		  "1234567890123456789012345678901234567890123456789012");
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(strlen(c.namespaces[0]), CONFIG_NS_PREFIX_MAX);
	run_free(&r);

	/* 128 fit, the 129th is refused (in a file: argv here holds 63). */
	char text[(CONFIG_NS_MAX + 1) * 24], *p = text;
	for (unsigned i = 0; i < CONFIG_NS_MAX; i++)
		p += sprintf(p, "namespace = n%u:\n", i);
	char *path = temp_conf(text);
	r = PARSE(&c, "--config", path);
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(c.n_namespaces, CONFIG_NS_MAX);
	run_free(&r);
	temp_remove(path);
	sprintf(p, "namespace = one-more\n");
	path = temp_conf(text);
	r = PARSE(&c, "--config", path);
	ASSERT_ERROR(&r, "namespace", "more than 128");
	run_free(&r);
	temp_remove(path);

	/* From the file; the command line's list replaces the file's. */
	path = temp_conf("namespace = file:\nnamespace = also:\n");
	r = PARSE(&c, "--config", path);
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(c.n_namespaces, 2);
	assert_string_equal(c.namespaces[1], "also:");
	run_free(&r);
	r = PARSE(&c, "--config", path, "--namespace", "cmd:");
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(c.n_namespaces, 1);
	assert_string_equal(c.namespaces[0], "cmd:");
	run_free(&r);
	temp_remove(path);
}

/* ------------------------------------------------------------------------
 * memcached serving
 * ------------------------------------------------------------------------ */

static void test_config_memcached_defaults_and_values(void **state)
{
	struct config c;
	struct run r;

	(void)state;
	r = PARSE(&c, "--foreground");
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(c.n_memcached, 0);
	assert_false(c.memcached_remote);
	assert_int_equal(c.threads, 1);
	assert_int_equal(c.memcached_max_conns, 1024);
	assert_int_equal(c.memcached_idle_timeout, 0);
	run_free(&r);

	r = PARSE(&c, "--threads", "4", "--memcached-max-conns=10",
		  "--memcached-idle-timeout", "30");
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(c.threads, 4);
	assert_int_equal(c.memcached_max_conns, 10);
	assert_int_equal(c.memcached_idle_timeout, 30);
	run_free(&r);
}

static void test_config_memcached_addresses(void **state)
{
	struct config c;
	struct run r;

	(void)state;
	/* Unix and TCP, in order, a repeat stored once. */
	r = PARSE(&c, "--memcached", "/tmp/mc.sock",
		  "--memcached=127.0.0.1:11211", "--memcached", "[::1]:11212",
		  "--memcached", "localhost:11213", "--memcached",
		  "/tmp/mc.sock");
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(c.n_memcached, 4);
	assert_string_equal(c.memcached[0], "/tmp/mc.sock");
	assert_string_equal(c.memcached[1], "127.0.0.1:11211");
	assert_string_equal(c.memcached[2], "[::1]:11212");
	assert_string_equal(c.memcached[3], "localhost:11213");
	run_free(&r);

	struct config_mc_addr a;
	char why[256];
	assert_int_equal(config_mc_addr("localhost:11211", &a, why,
					sizeof(why)),
			 0);
	assert_false(a.is_unix);
	assert_true(a.loopback);
	assert_int_equal(a.sa.ss_family, AF_INET);
	assert_int_equal(config_mc_addr("[::]:1", &a, why, sizeof(why)), 0);
	assert_int_equal(a.sa.ss_family, AF_INET6);
	assert_false(a.loopback);
	assert_int_equal(config_mc_addr("/x", &a, why, sizeof(why)), 0);
	assert_true(a.is_unix);

	/* Beyond loopback only with --memcached-remote, wherever it is. */
	r = PARSE(&c, "--memcached", "0.0.0.0:11211");
	ASSERT_ERROR(&r, "--memcached", "'0.0.0.0:11211'", "not a loopback",
		     "--memcached-remote");
	run_free(&r);
	r = PARSE(&c, "--memcached", "[::]:11211");
	ASSERT_ERROR(&r, "--memcached", "--memcached-remote");
	run_free(&r);
	r = PARSE(&c, "--memcached", "10.1.2.3:11211", "--memcached-remote");
	assert_int_equal(r.res, CONFIG_OK);
	assert_true(c.memcached_remote);
	run_free(&r);
	r = PARSE(&c, "--memcached-remote", "--memcached", "[::]:11211");
	assert_int_equal(r.res, CONFIG_OK);
	run_free(&r);

	/* Not the control socket. */
	r = PARSE(&c, "--socket", "/tmp/x.sock", "--memcached", "/tmp/x.sock");
	ASSERT_ERROR(&r, "--memcached", "control socket");
	run_free(&r);

	/* In the file; the command line's list replaces the file's. */
	char *path = temp_conf("memcached = /tmp/a.sock\n"
			       "memcached = 127.0.0.1:1\n"
			       "threads = 2\n");
	r = PARSE(&c, "--config", path);
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(c.n_memcached, 2);
	assert_int_equal(c.threads, 2);
	run_free(&r);
	r = PARSE(&c, "--config", path, "--memcached", "127.0.0.1:2");
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(c.n_memcached, 1);
	assert_string_equal(c.memcached[0], "127.0.0.1:2");
	run_free(&r);
	temp_remove(path);
	path = temp_conf("memcached = 192.168.1.1:11211\n");
	r = PARSE(&c, "--config", path);
	ASSERT_ERROR(&r, "--memcached", "--memcached-remote");
	run_free(&r);
	temp_remove(path);

	/* Up to 16. */
	char text[17 * 40], *p = text;
	for (unsigned i = 0; i < CONFIG_MC_LISTEN_MAX; i++)
		p += sprintf(p, "memcached = 127.0.0.1:%u\n", 1000 + i);
	path = temp_conf(text);
	r = PARSE(&c, "--config", path);
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(c.n_memcached, CONFIG_MC_LISTEN_MAX);
	run_free(&r);
	temp_remove(path);
	sprintf(p, "memcached = 127.0.0.1:9\n");
	path = temp_conf(text);
	r = PARSE(&c, "--config", path);
	ASSERT_ERROR(&r, "memcached", "more than 16");
	run_free(&r);
	temp_remove(path);
}

/* ------------------------------------------------------------------------
 * The near cache (--redis)
 * ------------------------------------------------------------------------ */

static void test_config_redis(void **state)
{
	struct config c;
	struct run r;

	(void)state;
	r = PARSE(&c, "--redis", "/run/redis.sock", "--redis=10.0.0.5:6379",
		  "--redis", "[::1]:7000", "--redis-prefix",
		  "user:", "--redis-prefix=page:", "--redis-prefix",
		  "user:", "--redis-user", "cache", "--redis-password-file",
		  "pw");
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(c.n_redis, 3);
	assert_string_equal(c.redis[1], "10.0.0.5:6379");
	assert_int_equal(c.n_redis_prefixes, 2);
	assert_string_equal(c.redis_prefixes[1], "page:");
	assert_string_equal(c.redis_user, "cache");
	assert_true(c.redis_password_file[0] == '/'); /* made absolute */
	run_free(&r);

	/* One without the other, and bad values: one line naming why. */
	r = PARSE(&c, "--redis", "/run/redis.sock");
	ASSERT_ERROR(&r, "--redis", "--redis-prefix");
	run_free(&r);
	r = PARSE(&c, "--redis-prefix", "user:");
	ASSERT_ERROR(&r, "--redis-prefix", "without --redis");
	run_free(&r);
	r = PARSE(&c, "--redis", "/r", "--redis-prefix",
		  "0123456789012345678901234567890123456789012345678901x");
	ASSERT_ERROR(&r, "--redis-prefix", "1 to 52 bytes");
	run_free(&r);
	r = PARSE(&c, "--redis", "/r", "--redis-prefix", "");
	ASSERT_ERROR(&r, "--redis-prefix", "1 to 52 bytes");
	run_free(&r);
	/* A host name is taken (looked up when connecting); what is no name
	 * and no address is refused, with the forms it may take. */
	r = PARSE(&c, "--redis", "redis.example:6379", "--redis",
		  "cache-1.eu.internal:7000", "--redis", "localhost:6379",
		  "--redis", "redis_cache:6379", "--redis",
		  "redis.example.com.:6379", "--redis-prefix", "u:");
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(c.n_redis, 5);
	assert_string_equal(c.redis[1], "cache-1.eu.internal:7000");
	run_free(&r);
	static const struct {
		const char *addr, *why;
	} bad[] = {
		{ "bad name:6379", "HOST a host name" },
		{ "-x.y:6379", "HOST a host name" },
		{ "x-.y:6379", "HOST a host name" },
		{ "x..y:6379", "HOST a host name" },
		{ "1.2.3:6379", "HOST a host name" },
		{ ".x:6379", "HOST a host name" },
		{ "x..:6379", "HOST a host name" },
		{ "[::g]:6379", "HOST a host name" },
		{ "host:0", "invalid port" },
		{ "host:", "invalid port" },
		{ "host:65536", "invalid port" },
		{ "host:6379x", "invalid port" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = PARSE(&c, "--redis", bad[i].addr, "--redis-prefix", "u:");
		ASSERT_ERROR(&r, "--redis", bad[i].why);
		run_free(&r);
		assert_false(config_redis_name(bad[i].addr));
	}
	char longname[CONFIG_MC_ADDR_MAX + 8];
	memset(longname, 'a', sizeof(longname));
	memcpy(longname + sizeof(longname) - 6, ":6379", 6);
	r = PARSE(&c, "--redis", longname, "--redis-prefix", "u:");
	ASSERT_ERROR(&r, "--redis", "longer than");
	run_free(&r);
	/* A --memcached listener takes no name. */
	r = PARSE(&c, "--memcached", "redis.example:11211");
	ASSERT_ERROR(&r, "--memcached", "invalid address");
	run_free(&r);
	r = PARSE(&c, "--redis", "/r", "--redis-prefix", "u:", "--redis-user",
		  "a b");
	ASSERT_ERROR(&r, "--redis-user", "without blanks");
	run_free(&r);

	/* Redis refuses overlapping prefixes in one CLIENT TRACKING. */
	r = PARSE(&c, "--redis", "/r", "--redis-prefix",
		  "user:42:", "--redis-prefix", "user:");
	ASSERT_ERROR(&r, "--redis-prefix", "'user:42:' starts with 'user:'",
		     "give only 'user:'");
	run_free(&r);

	/* Not loopback is fine: Redis is usually on another host. */
	r = PARSE(&c, "--redis", "192.168.1.9:6379", "--redis-prefix", "u:");
	assert_int_equal(r.res, CONFIG_OK);
	run_free(&r);

	/* In the file, one line per value; the command line's list
	 * replaces the file's. */
	char *path = temp_conf("redis = 127.0.0.1:6379\n"
			       "redis-prefix = user:\n"
			       "redis-prefix = sess:\n");
	r = PARSE(&c, "--config", path);
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(c.n_redis, 1);
	assert_int_equal(c.n_redis_prefixes, 2);
	run_free(&r);
	r = PARSE(&c, "--config", path, "--redis-prefix", "page:");
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(c.n_redis_prefixes, 1);
	assert_string_equal(c.redis_prefixes[0], "page:");
	run_free(&r);
	temp_remove(path);
}

/* ------------------------------------------------------------------------
 * Sizes
 * ------------------------------------------------------------------------ */

static void test_config_sizes(void **state)
{
	static const struct {
		const char *s;
		int rc;
		uint64_t v;
	} cases[] = {
		{ "65536", 0, 65536 },
		{ "0", 0, 0 },
		{ "007", 0, 7 },
		{ "64K", 0, 64 << 10 },
		{ "64k", 0, 64 << 10 },
		{ "64M", 0, UINT64_C(64) << 20 },
		{ "64m", 0, UINT64_C(64) << 20 },
		{ "2G", 0, UINT64_C(2) << 30 },
		{ "1T", 0, UINT64_C(1) << 40 },
		{ "64MiB", 0, UINT64_C(64) << 20 },
		{ "64MB", 0, UINT64_C(64) << 20 },
		{ "64mib", 0, UINT64_C(64) << 20 },
		{ "4KiB", 0, 4096 },
		{ "512B", 0, 512 },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "16777215T", 0, UINT64_C(16777215) << 40 },
		{ "", -EINVAL, 0 },
		{ "M", -EINVAL, 0 },
		{ "-1", -EINVAL, 0 },
		{ "+1", -EINVAL, 0 },
		{ " 64M", -EINVAL, 0 },
		{ "64M ", -EINVAL, 0 },
		{ "64 M", -EINVAL, 0 },
		{ "1.5G", -EINVAL, 0 },
		{ "0x10", -EINVAL, 0 },
		{ "abc", -EINVAL, 0 },
		{ "64X", -EINVAL, 0 },
		{ "64MM", -EINVAL, 0 },
		{ "64iB", -EINVAL, 0 },
		{ "64Mi", -EINVAL, 0 },
		{ "64MiBB", -EINVAL, 0 },
		{ "64P", -EINVAL, 0 },
		{ "99999999999999999999x", -EINVAL, 0 },
		{ "18446744073709551616", -ERANGE, 0 },
		{ "99999999999999999999999999", -ERANGE, 0 },
		{ "16777216T", -ERANGE, 0 },
		{ "18014398509481984K", -ERANGE, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 0xdeadbeef;
		int rc = opt_parse_size(cases[i].s, &v);

		if (rc != cases[i].rc)
			fail_msg("size \"%s\": rc %d, want %d", cases[i].s, rc,
				 cases[i].rc);
		assert_int_equal(v, rc ? 0xdeadbeef : cases[i].v);
	}
	uint64_t v;
	assert_int_equal(opt_parse_size(NULL, &v), -EINVAL);
	assert_int_equal(opt_parse_size("1", NULL), -EINVAL);
}

/* ------------------------------------------------------------------------
 * Config file
 * ------------------------------------------------------------------------ */

static void test_config_file_applied_and_overridden(void **state)
{
	struct config c;
	struct run r;
	char *path = temp_conf(
		"# shmcached test configuration\n"
		"\n"
		"memory = 128M\n"
		"   segments=64   \n"
		"avg-item = 1K   # trailing comment\n"
		"name = from-file\n"
		"socket = /tmp/file.sock\n"
		"allow-user = root\n"
		"allow-user = 4000\n"
		"allow-group = 0\n"
		"foreground = yes\n"
		"reset\n"
		"epoll = false\n"
		"log-level = debug\r\n"
		"max-clients = 10\n"
		"lock-timeout = 500\n"
		"snapshot = /var/tmp/a#b\n"
		"\t# indented comment\n"
		"log-file = /var/log/x.log"); /* no final newline */

	(void)state;
	r = PARSE(&c, "--config", path);
	if (r.res != CONFIG_OK)
		fail_msg("%s", r.err);
	assert_int_equal(c.memory, 128u << 20);
	assert_int_equal(c.segments, 64);
	assert_int_equal(c.avg_item, 1024);
	assert_string_equal(c.name, "/from-file");
	assert_string_equal(c.socket_path, "/tmp/file.sock");
	assert_int_equal(c.n_allow_users, 2);
	assert_int_equal(c.allow_users[1], 4000);
	assert_int_equal(c.n_allow_groups, 1);
	assert_true(c.foreground);
	assert_true(c.reset);
	assert_false(c.force_epoll);
	assert_int_equal(c.log_level, CONFIG_LOG_DEBUG);
	assert_int_equal(c.max_clients, 10);
	assert_int_equal(c.lock_timeout_ms, 500);
	assert_string_equal(c.snapshot, "/var/tmp/a#b");
	assert_string_equal(c.log_file, "/var/log/x.log");
	assert_string_equal(c.config_file, path);
	run_free(&r);

	/* Command-line options override the file wherever --config is, and
	 * a list on the command line replaces the file's. */
	r = PARSE(&c, "--memory=256M", "--reset=no", "--allow-user", "5000",
		  "--config", path, "--segments", "16");
	if (r.res != CONFIG_OK)
		fail_msg("%s", r.err);
	assert_int_equal(c.memory, 256u << 20);
	assert_int_equal(c.segments, 16);
	assert_false(c.reset);
	assert_int_equal(c.n_allow_users, 1);
	assert_int_equal(c.allow_users[0], 5000);
	assert_int_equal(c.n_allow_groups, 1); /* from the file */
	assert_int_equal(c.avg_item, 1024);    /* from the file */
	run_free(&r);

	r = PARSE(&c, "--config="
		      "/dev/null");
	assert_int_equal(r.res, CONFIG_OK);
	run_free(&r);

	r = PARSE(&c, "--config", path, "--config", path);
	ASSERT_ERROR(&r, "--config");
	run_free(&r);
	temp_remove(path);
}

static void test_config_file_errors_name_the_line(void **state)
{
	static const struct {
		const char *text;
		const char *line; /* ":N" expected after the path */
		const char *words[3];
	} cases[] = {
		{ "memory = 2M\n\n# c\nmemroy = 3M\n",
		  ":4: ",
		  { "unknown key 'memroy'", NULL } },
		{ "segments = 4\nmemory = abc\n",
		  ":2: ",
		  { "memory", "'abc'", NULL } },
		{ "memory\n", ":1: ", { "memory", "missing value", NULL } },
		{ "x\n", ":1: ", { "unknown key 'x'", NULL } },
		{ "= 4\n", ":1: ", { "missing key", NULL } },
		{ "config = /etc/other.conf\n", ":1: ", { "config", NULL } },
		{ "help\n", ":1: ", { "help", NULL } },
		{ "--memory = 1G\n", ":1: ", { "unknown key", NULL } },
		{ "\n\nsegments = 3\n", ":3: ", { "segments", "'3'", NULL } },
		{ "foreground = sometimes\n",
		  ":1: ",
		  { "foreground", "'sometimes'", NULL } },
		{ "allow-user = no-such-user-shmc\n",
		  ":1: ",
		  { "allow-user", NULL } },
		{ "log-level = loud\n",
		  ":1: ",
		  { "log-level", "'loud'", NULL } },
		{ "memory = \n", ":1: ", { "memory", NULL } },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;
		char *path = temp_conf(cases[i].text);
		char want[128];
		struct run r = PARSE(&c, "--config", path);

		snprintf(want, sizeof(want), "%s%s", path, cases[i].line);
		assert_one_line_error(&r, cases[i].words);
		if (!strstr(r.err, want))
			fail_msg("\"%s\" does not name \"%s\"", r.err, want);
		run_free(&r);
		temp_remove(path);
	}
}

static void test_config_file_unreadable(void **state)
{
	struct config c, d;
	struct run r;
	char dir[] = "/tmp/shmc-test-dir-XXXXXX";

	(void)state;
	r = PARSE(&c, "--config", "/nonexistent/shmcached.conf");
	ASSERT_ERROR(&r, "--config", "/nonexistent/shmcached.conf");
	run_free(&r);

	assert_non_null(mkdtemp(dir));
	r = PARSE(&c, "--config", dir);
	ASSERT_ERROR(&r, dir);
	run_free(&r);
	rmdir(dir);

	r = PARSE(&c, "--config=");
	ASSERT_ERROR(&r, "--config");
	run_free(&r);

	r = PARSE(&c, "--config");
	ASSERT_ERROR(&r, "--config", "missing value");
	run_free(&r);

	/* Binary junk and a line without end: refused, not read forever. */
	static const char nul[] = "memory = 2M\nmemory = 4M\0junk\n";
	char *path = temp_file(nul, sizeof(nul) - 1);
	r = PARSE(&c, "--config", path);
	ASSERT_ERROR(&r, ":2: ", "NUL");
	run_free(&r);
	temp_remove(path);

	size_t big = 100000;
	char *text = malloc(big + 1);
	assert_non_null(text);
	memset(text, 'a', big);
	text[big] = '\0';
	path = temp_conf(text);
	free(text);
	r = PARSE(&c, "--config", path);
	ASSERT_ERROR(&r, ":1: ", "long");
	run_free(&r);
	temp_remove(path);

	/* A failed parse leaves the caller's configuration alone. */
	path = temp_conf("memory = 2M\nsegments = 5\n");
	config_defaults(&c);
	d = c;
	r = parse_argv(&c, ARGS("--name=changed", "--config", path));
	ASSERT_ERROR(&r, ":2: segments");
	assert_memory_equal(&c, &d, sizeof(c));
	run_free(&r);
	temp_remove(path);
}

/* ------------------------------------------------------------------------
 * --help, --version, errors
 * ------------------------------------------------------------------------ */

static void test_config_help(void **state)
{
	static const char *const names[] = {
		"--memory",	    "--segments",    "--avg-item",
		"--socket",	    "--name",	     "--allow-user",
		"--allow-group",    "--snapshot",    "--foreground",
		"--log-level",	    "--log-file",    "--reset",
		"--unlink-on-exit", "--hugepages",   "--prefault",
		"--epoll",	    "--max-clients", "--lock-timeout",
		"--config",	    "--help",	     "--version",
	};
	struct config c, d;
	struct run r;

	(void)state;
	config_defaults(&c);
	d = c;
	/* --help wins over a bad value and a missing config file. */
	r = parse_argv(&c,
		       ARGS("--memory=abc", "--config=/nonexistent", "--help"));
	assert_int_equal(r.res, CONFIG_EXIT_OK);
	assert_string_equal(r.err, "");
	assert_memory_equal(&c, &d, sizeof(c));
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strstr(r.out, names[i]))
			fail_msg("--help does not mention %s", names[i]);
	assert_non_null(strstr(r.out, "Usage: shmcached"));
	/* It fits a terminal: no line wider than 80 columns. */
	for (const char *l = r.out; *l;) {
		size_t len = strcspn(l, "\n");

		if (len > 80)
			fail_msg("--help line of %zu columns: %.*s", len,
				 (int)len, l);
		l += len + (l[len] == '\n');
	}
	run_free(&r);

	r = PARSE(&c, "-h");
	assert_int_equal(r.res, CONFIG_EXIT_OK);
	assert_non_null(strstr(r.out, "--memory=SIZE"));
	run_free(&r);

	r = PARSE(&c, "--help=yes");
	ASSERT_ERROR(&r, "--help");
	run_free(&r);
}

static void test_config_version(void **state)
{
	struct config c;
	struct run r;

	(void)state;
	r = PARSE(&c, "--version");
	assert_int_equal(r.res, CONFIG_EXIT_OK);
	assert_string_equal(r.out, "shmcached " SHMC_VERSION "\n");
	assert_string_equal(r.err, "");
	run_free(&r);
	r = PARSE(&c, "-V");
	assert_int_equal(r.res, CONFIG_EXIT_OK);
	assert_string_equal(r.out, "shmcached " SHMC_VERSION "\n");
	run_free(&r);
}

static void test_config_bad_values_one_line(void **state)
{
	static const struct {
		const char *args[3];
		const char *words[3];
	} cases[] = {
		{ { "--memory", "abc" },
		  { "--memory: invalid size 'abc' (use e.g. 64M, 2G)" } },
		{ { "--memory=512K" }, { "--memory", "'512K'" } },
		{ { "--memory=1025G" }, { "--memory", "'1025G'" } },
		{ { "--memory=" }, { "--memory", "''" } },
		{ { "--memory", "-1" }, { "--memory", "'-1'" } },
		{ { "--memory", "99999999999999999999999T" }, { "--memory" } },
		{ { "--segments", "100" }, { "--segments", "'100'" } },
		{ { "--segments=0" }, { "--segments", "'0'" } },
		{ { "--segments=131072" }, { "--segments", "'131072'" } },
		{ { "--segments=4x" }, { "--segments", "'4x'" } },
		{ { "--segments=" }, { "--segments" } },
		{ { "--segments=-4" }, { "--segments" } },
		{ { "--avg-item=0" }, { "--avg-item", "'0'" } },
		{ { "--avg-item=2G" }, { "--avg-item", "'2G'" } },
		{ { "--log-level", "verbose" },
		  { "--log-level", "'verbose'" } },
		{ { "--log-level=" }, { "--log-level" } },
		{ { "--log-level=4" }, { "--log-level", "'4'" } },
		{ { "--max-clients=0" }, { "--max-clients", "'0'" } },
		{ { "--max-clients=65537" }, { "--max-clients", "'65537'" } },
		{ { "--max-clients= 5" }, { "--max-clients" } },
		{ { "--lock-timeout=0" }, { "--lock-timeout", "'0'" } },
		{ { "--lock-timeout=60001" }, { "--lock-timeout" } },
		{ { "--lock-timeout=18446744073709551617" },
		  { "--lock-timeout" } },
		{ { "--memory" }, { "--memory", "missing value" } },
		{ { "--name", "/a/b" }, { "--name", "'/a/b'" } },
		{ { "--threads=0" }, { "--threads", "'0'" } },
		{ { "--threads=65" }, { "--threads", "'65'" } },
		{ { "--threads=x" }, { "--threads" } },
		{ { "--memcached-max-conns=0" }, { "--memcached-max-conns" } },
		{ { "--memcached-max-conns=65537" },
		  { "--memcached-max-conns" } },
		{ { "--memcached-idle-timeout=-1" },
		  { "--memcached-idle-timeout" } },
		{ { "--memcached-idle-timeout=2592001" },
		  { "--memcached-idle-timeout" } },
		{ { "--memcached-remote=maybe" }, { "--memcached-remote" } },
		{ { "--memcached", "mc.sock" },
		  { "--memcached", "HOST:PORT" } },
		{ { "--memcached", "127.0.0.1" }, { "--memcached" } },
		{ { "--memcached", "127.0.0.1:0" }, { "--memcached", "port" } },
		{ { "--memcached", "127.0.0.1:65536" },
		  { "--memcached", "port" } },
		{ { "--memcached", "127.0.0.1:12x" }, { "--memcached" } },
		{ { "--memcached", ":11211" }, { "--memcached" } },
		{ { "--memcached", "[::1:11211" }, { "--memcached" } },
		{ { "--memcached", "[zz]:11211" }, { "--memcached", "IPv6" } },
		{ { "--memcached", "example.com:11211" }, { "--memcached" } },
		{ { "--memcached=" }, { "--memcached" } },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c, d;
		const char *args[4] = { cases[i].args[0], cases[i].args[1],
					cases[i].args[2], NULL };

		config_defaults(&c);
		d = c;
		struct run r = parse_argv(&c, args);
		assert_one_line_error(&r, cases[i].words);
		assert_memory_equal(&c, &d, sizeof(c));
		run_free(&r);
	}
}

static void test_config_unknown_option(void **state)
{
	struct config c;
	struct run r;

	(void)state;
	r = PARSE(&c, "--memroy", "64M");
	ASSERT_ERROR(&r, "unknown option '--memroy'");
	run_free(&r);
	r = PARSE(&c, "--bogus=1");
	ASSERT_ERROR(&r, "'--bogus=1'");
	run_free(&r);
	r = PARSE(&c, "-x");
	ASSERT_ERROR(&r, "'-x'");
	run_free(&r);
	r = PARSE(&c, "-hx"); /* a bad short option after a good one */
	assert_int_equal(r.res, CONFIG_EXIT_OK); /* --help wins */
	run_free(&r);
	r = PARSE(&c, "--s=1"); /* --segments, --socket or --snapshot */
	ASSERT_ERROR(&r, "ambiguous", "--segments", "--socket");
	run_free(&r);
	r = PARSE(&c, "--seg=32"); /* an unambiguous prefix is accepted */
	assert_int_equal(r.res, CONFIG_OK);
	assert_int_equal(c.segments, 32);
	run_free(&r);
	r = PARSE(&c, "stray");
	ASSERT_ERROR(&r, "unexpected argument 'stray'");
	run_free(&r);
	r = PARSE(&c, "--memory", "2M", "--", "--segments=4");
	ASSERT_ERROR(&r, "'--segments=4'");
	run_free(&r);
	r = PARSE(&c, "-");
	ASSERT_ERROR(&r, "'-'");
	run_free(&r);
	r = PARSE(&c, "");
	ASSERT_ERROR(&r, "''");
	run_free(&r);
}

/* Nothing crashes, and every error stays on one line however long or
 * strange the value. */
static void test_config_hostile_inputs(void **state)
{
	size_t big = 100000;
	char *huge = malloc(big + 16), *opt = malloc(big + 16);
	struct config c;
	struct run r;

	(void)state;
	assert_non_null(huge);
	assert_non_null(opt);
	memset(huge, '9', big);
	huge[big] = '\0';
	r = PARSE(&c, "--memory", huge);
	ASSERT_ERROR(&r, "--memory");
	assert_true(strlen(r.err) < 300);
	run_free(&r);
	r = PARSE(&c, "--segments", huge);
	ASSERT_ERROR(&r, "--segments");
	run_free(&r);

	memset(huge, 'p', big);
	huge[0] = '/';
	r = PARSE(&c, "--snapshot", huge);
	ASSERT_ERROR(&r, "--snapshot", "4095");
	run_free(&r);
	r = PARSE(&c, "--name", huge + 1);
	ASSERT_ERROR(&r, "--name");
	run_free(&r);
	r = PARSE(&c, "--allow-user", huge + 1);
	ASSERT_ERROR(&r, "--allow-user");
	run_free(&r);

	snprintf(opt, big + 16, "--%s", huge + 1);
	r = PARSE(&c, opt);
	ASSERT_ERROR(&r, "unknown option");
	assert_true(strlen(r.err) < 300);
	run_free(&r);

	/* Newlines and control bytes in values are escaped. */
	r = PARSE(&c, "--memory", "64M\nshmcached: forged line");
	ASSERT_ERROR(&r, "--memory", "\\x0a");
	run_free(&r);
	r = PARSE(&c, "--log-level=\x1b[31mred");
	ASSERT_ERROR(&r, "--log-level", "\\x1b");
	run_free(&r);
	r = PARSE(&c, "--bad\noption");
	ASSERT_ERROR(&r, "\\x0a");
	run_free(&r);

	static const char *const empties[] = {
		"--memory=",	   "--segments=",  "--avg-item=",
		"--socket=",	   "--name=",	   "--allow-user=",
		"--allow-group=",  "--log-level=", "--max-clients=",
		"--lock-timeout=", "--config=",	   "--foreground=",
	};
	for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
		r = PARSE(&c, empties[i]);
		ASSERT_ERROR(&r, "--");
		run_free(&r);
	}

	/* No argv at all is not a crash either. */
	config_defaults(&c);
	assert_int_equal(config_parse(&c, 0, NULL, stdout, stderr), CONFIG_OK);
	free(huge);
	free(opt);
}

/* config_parse() resets getopt's state, so it can run again and again. */
static void test_config_parse_repeatable(void **state)
{
	(void)state;
	for (int i = 0; i < 3; i++) {
		struct config c;
		struct run r = PARSE(&c, "--segments", "2", "--foreground");

		assert_int_equal(r.res, CONFIG_OK);
		assert_int_equal(c.segments, 2);
		assert_true(c.foreground);
		run_free(&r);
		r = PARSE(&c, "--bogus");
		ASSERT_ERROR(&r, "'--bogus'");
		run_free(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_defaults_sane),
		cmocka_unit_test(test_config_defaults_xdg_runtime_dir),
		cmocka_unit_test(test_config_options_both_forms),
		cmocka_unit_test(test_config_flags),
		cmocka_unit_test(test_config_later_option_wins),
		cmocka_unit_test(test_config_log_levels),
		cmocka_unit_test(test_config_name_gets_leading_slash),
		cmocka_unit_test(test_config_paths),
		cmocka_unit_test(test_config_allow_lists),
		cmocka_unit_test(test_config_namespaces),
		cmocka_unit_test(test_config_memcached_defaults_and_values),
		cmocka_unit_test(test_config_memcached_addresses),
		cmocka_unit_test(test_config_redis),
		cmocka_unit_test(test_config_sizes),
		cmocka_unit_test(test_config_file_applied_and_overridden),
		cmocka_unit_test(test_config_file_errors_name_the_line),
		cmocka_unit_test(test_config_file_unreadable),
		cmocka_unit_test(test_config_help),
		cmocka_unit_test(test_config_version),
		cmocka_unit_test(test_config_bad_values_one_line),
		cmocka_unit_test(test_config_unknown_option),
		cmocka_unit_test(test_config_hostile_inputs),
		cmocka_unit_test(test_config_parse_repeatable),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
