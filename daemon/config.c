/*
 * config.c - the daemon's options: one table (CONFIG_OPTIONS), from which
 * the getopt_long table, the config-file keys and the --help text are
 * derived, and one function per kind of value that checks it and stores it.
 *
 * How a parse goes: getopt_long runs twice over argv.  The first pass only
 * looks for --help, --version and --config; the second applies every other
 * option on top of the config file.  All of it is done on a copy of the
 * caller's struct config, which is written back only on success, so an
 * error leaves the caller's configuration as it was.
 *
 * What it is not: it does not create directories, open the socket or check
 * the geometry against the engine (the daemon does, with eng_plan()).
 */
#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <arpa/inet.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include "opt.h"
#include "paths.h"

#define CONFIG_PROG "shmcached"

/* ------------------------------------------------------------------------
 * The option table
 * ------------------------------------------------------------------------ */

/* What an option takes and where it may appear. */
enum opt_kind {
	KIND_VALUE,	/* VALUE required; command line and file */
	KIND_FLAG,	/* optional =BOOL; command line and file */
	KIND_CMD_VALUE, /* VALUE required; command line only */
	KIND_CMD_ONLY,	/* no value; command line only */
};

/* X(id, long name, short option or 0, kind, metavar, help).  The help text
 * may hold '\n'; continuation lines are indented under the first. */
#define CONFIG_OPTIONS(X)                                                      \
	X(MEMORY, "memory", 0, KIND_VALUE, "SIZE",                             \
	  "size of the region, 1M to 1T (default 64M);\n"                      \
	  "256M or more holds a 1 MiB value with the\n"                        \
	  "default --segments")                                                \
	X(SEGMENTS, "segments", 0, KIND_VALUE, "N",                            \
	  "segments (lock domains), a power of two\n"                          \
	  "1..65536; the largest item (key + value) is\n"                      \
	  "half a segment's ring, a little under\n"                            \
	  "--memory / N / 2 (default: the most, up to 256,\n"                  \
	  "that still hold a 1 MiB value: 16 at 64M, 64\n"                     \
	  "at 256M, 256 from 1G)")                                             \
	X(AVG_ITEM, "avg-item", 0, KIND_VALUE, "SIZE",                         \
	  "expected key+value size; sizes the entry\n"                         \
	  "pools (default 128)")                                               \
	X(SOCKET, "socket", 0, KIND_VALUE, "PATH",                             \
	  "control socket (default\n"                                          \
	  "$XDG_RUNTIME_DIR/shmcached.sock, without it\n"                      \
	  "/tmp/shmcached-UID/shmcached.sock, as root\n"                       \
	  "/run/shmcached/shmcached.sock); its folder must\n"                  \
	  "be yours (or root's), writable by no one else;\n"                   \
	  "refused while another shmcached serves it")                         \
	X(NAME, "name", 0, KIND_VALUE, "NAME",                                 \
	  "POSIX shm name of the region (default\n"                            \
	  "/shmcached-UID, as root /shmcached); one\n"                         \
	  "shmcached per region: refused while another\n"                      \
	  "serves it")                                                         \
	X(ALLOW_USER, "allow-user", 0, KIND_VALUE, "USER",                     \
	  "user name or uid allowed to connect\n"                              \
	  "(repeatable, up to 32; the socket's folder must\n"                  \
	  "let them in: a shmcached* folder of yours is\n"                     \
	  "made 0755, any other is refused if it does not)")                   \
	X(ALLOW_GROUP, "allow-group", 0, KIND_VALUE, "GROUP",                  \
	  "group name or gid allowed to connect\n"                             \
	  "(repeatable, up to 32; members by their\n"                          \
	  "primary or supplementary groups)")                                  \
	X(NAMESPACE, "namespace", 0, KIND_VALUE, "PREFIX",                     \
	  "register PREFIX (1..52 bytes) as a namespace at\n"                  \
	  "start, so that cachectl ns flush PREFIX drops\n"                    \
	  "every key that starts with it at once\n"                            \
	  "(repeatable, up to 128; one already in the\n"                       \
	  "region is kept)")                                                   \
	X(SNAPSHOT, "snapshot", 0, KIND_VALUE, "FILE",                         \
	  "snapshot file: saved at every clean stop, loaded\n"                 \
	  "at start into a new region; one that fails to load\n"               \
	  "is moved aside, never saved over (default none)")                   \
	X(SNAPSHOT_PARTIAL, "snapshot-partial", 0, KIND_FLAG, NULL,            \
	  "when the snapshot loaded at start is damaged,\n"                    \
	  "load its blocks before the damage (default: none)")                 \
	X(FOREGROUND, "foreground", 0, KIND_FLAG, NULL,                        \
	  "stay in the foreground, do not daemonize")                          \
	X(LOG_LEVEL, "log-level", 0, KIND_VALUE, "LEVEL",                      \
	  "error, warn, info or debug (default info)")                         \
	X(LOG_FILE, "log-file", 0, KIND_VALUE, "PATH",                         \
	  "log to PATH instead of stderr (reopened on SIGHUP)")                \
	X(RESET, "reset", 0, KIND_FLAG, NULL,                                  \
	  "replace an existing region that does not validate\n"                \
	  "or has another geometry (default: refuse to start);\n"              \
	  "never one that a running shmcached serves")                         \
	X(UNLINK_ON_EXIT, "unlink-on-exit", 0, KIND_FLAG, NULL,                \
	  "remove the region at shutdown (default: keep it\n"                  \
	  "for a warm restart)")                                               \
	X(SEALED, "sealed", 0, KIND_FLAG, NULL,                                \
	  "hardened: the region is a sealed memfd no\n"                        \
	  "client can resize (kept across restarts only\n"                     \
	  "in systemd's fd store)")                                            \
	X(HUGEPAGES, "hugepages", 0, KIND_FLAG, NULL,                          \
	  "back the region with huge pages")                                   \
	X(PREFAULT, "prefault", 0, KIND_FLAG, NULL,                            \
	  "touch every page of the region at start")                           \
	X(CHECKSUM, "checksum", 0, KIND_FLAG, NULL,                            \
	  "store a checksum of each entry's key and value\n"                   \
	  "and verify it on every read (set when the region\n"                 \
	  "is created; a warm restart must agree)")                            \
	X(EPOLL, "epoll", 0, KIND_FLAG, NULL,                                  \
	  "use the epoll event loop instead of io_uring")                      \
	X(MAX_CLIENTS, "max-clients", 0, KIND_VALUE, "N",                      \
	  "connections at once, 1..65536 (default 1024)")                      \
	X(LOCK_TIMEOUT, "lock-timeout", 0, KIND_VALUE, "MS",                   \
	  "segment lock wait before the holder is checked,\n"                  \
	  "1..60000 ms (default 2000); applied at every\n"                     \
	  "start, a warm restart included")                                    \
	X(HELLO_TIMEOUT, "hello-timeout", 0, KIND_VALUE, "MS",                 \
	  "close a connection that has not sent HELLO\n"                       \
	  "by then, 100..600000 ms (default 10000)")                           \
	X(MEMCACHED, "memcached", 0, KIND_VALUE, "ADDR",                       \
	  "serve memcached's text and meta protocols at\n"                     \
	  "ADDR: a Unix socket /PATH (its access as the\n"                     \
	  "control socket's, allow lists included) or\n"                       \
	  "HOST:PORT for TCP (127.0.0.1:11211,\n"                              \
	  "[::1]:11211, localhost:11211); repeatable, up\n"                    \
	  "to 16; no UDP.  Socket activation: fds named\n"                     \
	  "memcached (FileDescriptorName=memcached) are\n"                     \
	  "served too (shmcached-memcached.socket)")                           \
	X(MEMCACHED_REMOTE, "memcached-remote", 0, KIND_FLAG, NULL,            \
	  "allow --memcached on TCP addresses other than\n"                    \
	  "loopback: the protocol has no authentication,\n"                    \
	  "anyone who reaches the port reads and writes\n"                     \
	  "the cache (default: refused)")                                      \
	X(THREADS, "threads", 0, KIND_VALUE, "N",                              \
	  "memcached serving threads, each its own event\n"                    \
	  "loop, 1..64 (default 1)")                                           \
	X(MEMCACHED_MAX_CONNS, "memcached-max-conns", 0, KIND_VALUE, "N",      \
	  "memcached connections at once, 1..65536\n"                          \
	  "(default 1024); more are answered SERVER_ERROR\n"                   \
	  "and closed")                                                        \
	X(MEMCACHED_IDLE_TIMEOUT, "memcached-idle-timeout", 0, KIND_VALUE,     \
	  "SECONDS",                                                           \
	  "close a memcached connection idle that long,\n"                     \
	  "0..2592000 (default 0: never)")                                     \
	X(REDIS, "redis", 0, KIND_VALUE, "ADDR",                               \
	  "keep the cached copies of --redis-prefix keys\n"                    \
	  "coherent with the Redis server at ADDR (/PATH\n"                    \
	  "or HOST:PORT, HOST a name or an IP address):\n"                     \
	  "its invalidations delete them; repeatable, up\n"                    \
	  "to 16: every seed's cluster or server is\n"                         \
	  "tracked (docs/NEARCACHE.md)")                                       \
	X(REDIS_PREFIX, "redis-prefix", 0, KIND_VALUE, "PREFIX",               \
	  "a key prefix (1..52 bytes) tracked in Redis;\n"                     \
	  "registered as a namespace (repeatable, up to 64;\n"                 \
	  "at least one with --redis)")                                        \
	X(REDIS_USER, "redis-user", 0, KIND_VALUE, "NAME",                     \
	  "Redis ACL user (default: the password alone,\n"                     \
	  "user \"default\")")                                                 \
	X(REDIS_PASSWORD_FILE, "redis-password-file", 0, KIND_VALUE, "FILE",   \
	  "read the Redis password from FILE's first line\n"                   \
	  "at start (default: $SHMCACHED_REDIS_PASSWORD;\n"                    \
	  "there is no option for the password itself,\n"                      \
	  "which others could read in the process list)")                      \
	X(CONFIG, "config", 0, KIND_CMD_VALUE, "FILE",                         \
	  "read options from FILE first (see below)")                          \
	X(HELP, "help", 'h', KIND_CMD_ONLY, NULL, "print this help and exit")  \
	X(VERSION, "version", 'V', KIND_CMD_ONLY, NULL,                        \
	  "print the version and exit")

enum opt_id {
#define ID_X(id, name, shortc, kind, meta, help) OPT_##id,
	CONFIG_OPTIONS(ID_X)
#undef ID_X
		OPT_COUNT
};

struct opt_desc {
	const char *name;
	int shortc;
	enum opt_kind kind;
	const char *meta;
	const char *help;
};

static const struct opt_desc opts[OPT_COUNT] = {
#define DESC_X(id, name, shortc, kind, meta, help)                             \
	[OPT_##id] = { name, shortc, kind, meta, help },
	CONFIG_OPTIONS(DESC_X)
#undef DESC_X
};

/* The same table as --help shows it (opt_usage()). */
static const struct opt_spec specs[OPT_COUNT] = {
#define SPEC_X(id, name, shortc, kind, meta, help)                             \
	[OPT_##id] = { name, shortc, meta, help },
	CONFIG_OPTIONS(SPEC_X)
#undef SPEC_X
};

/* getopt_long's `val` for an option without a short form: above every
 * character, so that it cannot be confused with one. */
#define OPT_VAL_BASE 256

/* The getopt_long tables derived from opts[]. */
struct getopt_tables {
	struct option longopts[OPT_COUNT + 1];
	char optstring[2 + 2 * OPT_COUNT];
};

static void getopt_tables_init(struct getopt_tables *t)
{
	size_t n = 0;

	/* ':' first: a missing value is reported as ':', and getopt prints
	 * nothing of its own (opterr is cleared as well). */
	t->optstring[n++] = ':';
	for (int i = 0; i < OPT_COUNT; i++) {
		const struct opt_desc *d = &opts[i];
		int has_arg = d->kind == KIND_FLAG	 ? optional_argument
			      : d->kind == KIND_CMD_ONLY ? no_argument
							 : required_argument;

		t->longopts[i] = (struct option){
			.name = d->name,
			.has_arg = has_arg,
			.flag = NULL,
			.val = d->shortc ? d->shortc : OPT_VAL_BASE + i,
		};
		if (d->shortc) {
			/* A short flag has no value: "-f=yes" is not a form
			 * anyone expects, so no "::" here. */
			t->optstring[n++] = (char)d->shortc;
			if (has_arg == required_argument)
				t->optstring[n++] = ':';
		}
	}
	t->longopts[OPT_COUNT] = (struct option){ 0 };
	t->optstring[n] = '\0';
}

/* The option a getopt_long return value (or optopt) stands for, or -1. */
static int opt_of_val(int val)
{
	if (val >= OPT_VAL_BASE && val < OPT_VAL_BASE + OPT_COUNT)
		return val - OPT_VAL_BASE;
	for (int i = 0; val > 0 && i < OPT_COUNT; i++)
		if (opts[i].shortc == val)
			return i;
	return -1;
}

/* ------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------ */

/* Values quoted in messages go through opt_quote(): cut to
 * OPT_QUOTE_MAX bytes, control bytes escaped. */

/* Prints "shmcached: <where>: <message>\n" (without "<where>: " when
 * where is NULL) to err: the one error line. */
__attribute__((format(printf, 3, 4))) static void
report(FILE *err, const char *where, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	if (where)
		fprintf(err, "%s: %s: ", CONFIG_PROG, where);
	else
		fprintf(err, "%s: ", CONFIG_PROG);
	va_start(ap, fmt);
	vfprintf(err, fmt, ap);
	va_end(ap);
	fputc('\n', err);
	fflush(err);
}

/* Writes an explanation (no prefix, no newline) for the caller to report;
 * returns -1 so that value checks can `return fail(...)`. */
__attribute__((format(printf, 3, 4))) static int fail(char *why, size_t cap,
						      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, cap, fmt, ap);
	va_end(ap);
	return -1;
}

/* ------------------------------------------------------------------------
 * Values
 * ------------------------------------------------------------------------ */

/* An integer option in [min, max]. */
static int set_uint(uint32_t *dst, const char *val, uint32_t min, uint32_t max,
		    char *why, size_t cap)
{
	uint64_t v;

	if (opt_uint(NULL, val, min, max, &v, why, cap))
		return -1;
	*dst = (uint32_t)v;
	return 0;
}

/* A size option in [min, max]. */
static int set_size(uint64_t *dst, const char *val, uint64_t min, uint64_t max,
		    char *why, size_t cap)
{
	return opt_size(NULL, val, min, max, dst, why, cap) ? -1 : 0;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* A flag: no value means true. */
static int set_flag(bool *dst, const char *val, char *why, size_t cap)
{
	struct opt_qbuf q;

	if (!val) {
		*dst = true;
		return 0;
	}
	if (parse_bool(val, dst))
		return fail(why, cap,
			    "invalid value %s (use yes or no, true or false)",
			    opt_quote(&q, val));
	return 0;
}

static const char *const log_level_names[] = {
	[CONFIG_LOG_ERROR] = "error",
	[CONFIG_LOG_WARN] = "warn",
	[CONFIG_LOG_INFO] = "info",
	[CONFIG_LOG_DEBUG] = "debug",
};
#define N_LOG_LEVELS                                                           \
	((int)(sizeof(log_level_names) / sizeof(log_level_names[0])))

/* A level by name (either case) or by number. */
static int set_log_level(int *dst, const char *val, char *why, size_t cap)
{
	struct opt_qbuf q;

	for (int i = 0; i < N_LOG_LEVELS; i++) {
		if (!strcasecmp(val, log_level_names[i]) ||
		    (val[0] == '0' + i && !val[1])) {
			*dst = i;
			return 0;
		}
	}
	if (!strcasecmp(val, "warning")) {
		*dst = CONFIG_LOG_WARN;
		return 0;
	}
	return fail(why, cap,
		    "unknown log level %s (use error, warn, info or debug)",
		    opt_quote(&q, val));
}

/* A path, made absolute against the current directory, into dst (cap
 * bytes with the NUL).  "" is accepted only when allow_empty. */
static int set_path(char *dst, size_t cap, const char *val, bool allow_empty,
		    char *why, size_t wcap)
{
	struct opt_qbuf q;
	char cwd[PATH_MAX];
	size_t len = strlen(val), clen = 0;
	bool slash = false;

	if (!len) {
		if (!allow_empty)
			return fail(why, wcap, "empty path");
		dst[0] = '\0';
		return 0;
	}
	if (val[0] != '/') {
		if (!getcwd(cwd, sizeof(cwd)))
			return fail(why, wcap, "cannot make %s absolute: %s",
				    opt_quote(&q, val), strerror(errno));
		clen = strlen(cwd);
		slash = clen && cwd[clen - 1] != '/';
	}
	if (clen + slash + len >= cap)
		return fail(why, wcap, "path %s is longer than %zu bytes",
			    opt_quote(&q, val), cap - 1);
	if (clen)
		memcpy(dst, cwd, clen);
	if (slash)
		dst[clen] = '/';
	memcpy(dst + clen + slash, val, len + 1);
	return 0;
}

/* A shm name: "/" is prepended when missing; then one component. */
static int set_name(char *dst, size_t cap, const char *val, char *why,
		    size_t wcap)
{
	struct opt_qbuf q;
	const char *p = val[0] == '/' ? val + 1 : val;
	size_t len = strlen(p);

	if (!len || strchr(p, '/') || !strcmp(p, ".") || !strcmp(p, ".."))
		return fail(why, wcap,
			    "invalid name %s (use /NAME, with no other '/')",
			    opt_quote(&q, val));
	if (1 + len >= cap || 1 + len > CONFIG_NAME_MAX)
		return fail(why, wcap, "name %s is longer than %u bytes",
			    opt_quote(&q, val), CONFIG_NAME_MAX);
	dst[0] = '/';
	memcpy(dst + 1, p, len + 1);
	return 0;
}

/* An all-digit id; -1 when it does not fit (or is the reserved -1). */
static int parse_id(const char *val, uint32_t *out)
{
	uint64_t v;

	if (opt_parse_uint(val, &v) || v >= UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* Looks a user (is_group false) or a group up by name or number. */
static int lookup_id(const char *val, bool is_group, uint32_t *out, char *why,
		     size_t cap)
{
	const char *what = is_group ? "group" : "user";
	struct opt_qbuf q;
	long hint = sysconf(is_group ? _SC_GETGR_R_SIZE_MAX
				     : _SC_GETPW_R_SIZE_MAX);
	size_t size = hint > 0 && hint <= 65536 ? (size_t)hint : 16384;
	int rc;

	if (!*val)
		return fail(why, cap, "empty %s name", what);
	if (all_digits(val)) {
		if (parse_id(val, out))
			return fail(why, cap, "%s id %s is out of range", what,
				    opt_quote(&q, val));
		return 0;
	}
	for (;;) {
		char *buf = malloc(size);
		bool found = false;

		if (!buf)
			return fail(why, cap, "cannot look %s %s up: %s", what,
				    opt_quote(&q, val), strerror(ENOMEM));
		if (is_group) {
			struct group gr, *res = NULL;

			rc = getgrnam_r(val, &gr, buf, size, &res);
			if (!rc && res) {
				*out = (uint32_t)res->gr_gid;
				found = true;
			}
		} else {
			struct passwd pw, *res = NULL;

			rc = getpwnam_r(val, &pw, buf, size, &res);
			if (!rc && res) {
				*out = (uint32_t)res->pw_uid;
				found = true;
			}
		}
		free(buf);
		if (found)
			return 0;
		if (rc == ERANGE && size < (1u << 20)) {
			size *= 2;
			continue;
		}
		/* Not found is rc 0 by POSIX, but glibc's NSS modules also
		 * report it as ENOENT, ESRCH, EBADF or EPERM. */
		if (!rc || rc == ENOENT || rc == ESRCH || rc == EBADF ||
		    rc == EPERM)
			return fail(why, cap, "no such %s %s", what,
				    opt_quote(&q, val));
		return fail(why, cap, "cannot look %s %s up: %s", what,
			    opt_quote(&q, val), strerror(rc));
	}
}

/* Per source (config file, command line): whether a list has been started
 * in it, so that the first entry replaces the list of earlier sources. */
struct source {
	bool users_started;
	bool groups_started;
	bool ns_started;
	bool mc_started;
	bool redis_started;
	bool rprefix_started;
};

/* The allow lists are handled as arrays of uint32_t. */
static_assert(sizeof(uid_t) == sizeof(uint32_t), "uid_t is not 32 bits");
static_assert(sizeof(gid_t) == sizeof(uint32_t), "gid_t is not 32 bits");

/* Adds id to an allow list (ids: 32 entries, *n used). */
static int allow_add(uint32_t *ids, uint32_t *n, bool *started, uint32_t id,
		     const char *what, char *why, size_t cap)
{
	if (!*started) {
		*started = true;
		*n = 0;
	}
	for (uint32_t i = 0; i < *n; i++)
		if (ids[i] == id)
			return 0;
	if (*n >= CONFIG_ALLOW_MAX)
		return fail(why, cap, "more than %u %ss", CONFIG_ALLOW_MAX,
			    what);
	ids[(*n)++] = id;
	return 0;
}

static_assert(sizeof(((struct config *)0)->namespaces) ==
		      CONFIG_NS_MAX * (CONFIG_NS_PREFIX_MAX + 1),
	      "config.namespaces does not match its limits");

/* Adds prefix val (--namespace, --redis-prefix: `what`, with `note`
 * after the length message) to a list of `max` (n used). */
static int prefix_add(char (*list)[CONFIG_NS_PREFIX_MAX + 1], uint32_t *n,
		      uint32_t max, bool *started, const char *val,
		      const char *what, const char *note, char *why, size_t cap)
{
	struct opt_qbuf q;
	size_t len = strlen(val);

	if (!*started) {
		*started = true;
		*n = 0;
	}
	if (len == 0 || len > CONFIG_NS_PREFIX_MAX)
		return fail(why, cap,
			    "%s prefix %s is not 1 to %u bytes long%s", what,
			    opt_quote(&q, val), CONFIG_NS_PREFIX_MAX, note);
	for (uint32_t i = 0; i < *n; i++)
		if (!strcmp(list[i], val))
			return 0;
	if (*n >= max)
		return fail(why, cap, "more than %u %ss", max, what);
	memcpy(list[(*n)++], val, len + 1);
	return 0;
}

static_assert(sizeof(((struct config *)0)->memcached) ==
		      CONFIG_MC_LISTEN_MAX * (CONFIG_MC_ADDR_MAX + 1),
	      "config.memcached does not match its limits");

/* A port: 1..65535, digits only. */
static bool parse_port(const char *s, uint16_t *out)
{
	uint64_t v;

	if (opt_parse_uint(s, &v) || v == 0 || v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

int config_mc_addr(const char *s, struct config_mc_addr *a, char *why,
		   size_t cap)
{
	static const char use[] =
		"(use /PATH for a Unix socket, or HOST:PORT with HOST an IPv4 "
		"address, [IPv6] or localhost)";
	struct opt_qbuf q;
	size_t len = strlen(s);

	memset(a, 0, sizeof(*a));
	if (s[0] == '/') {
		struct sockaddr_un *un = (struct sockaddr_un *)&a->sa;

		if (len > CONFIG_MC_ADDR_MAX)
			return fail(why, cap,
				    "socket path %s is longer than %u bytes",
				    opt_quote(&q, s), CONFIG_MC_ADDR_MAX);
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, s, len);
		a->len = (socklen_t)sizeof(*un);
		a->is_unix = a->loopback = true;
		return 0;
	}
	const char *colon = strrchr(s, ':');
	char host[64];
	size_t hlen = colon ? (size_t)(colon - s) : 0;
	uint16_t port;

	if (!colon || !hlen || hlen >= sizeof(host))
		return fail(why, cap, "invalid address %s %s", opt_quote(&q, s),
			    use);
	if (!parse_port(colon + 1, &port))
		return fail(why, cap, "invalid port in %s (1 to 65535)",
			    opt_quote(&q, s));
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (host[0] == '[' && host[hlen - 1] == ']') {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->sa;

		host[hlen - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &in6->sin6_addr) != 1)
			return fail(why, cap, "invalid IPv6 address in %s %s",
				    opt_quote(&q, s), use);
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		a->len = (socklen_t)sizeof(*in6);
		a->loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
			      (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) &&
			       in6->sin6_addr.s6_addr[12] == 127);
		return 0;
	}
	struct sockaddr_in *in = (struct sockaddr_in *)&a->sa;

	if (!strcmp(host, "localhost"))
		snprintf(host, sizeof(host), "127.0.0.1");
	if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
		return fail(why, cap, "invalid address %s %s", opt_quote(&q, s),
			    use);
	in->sin_family = AF_INET;
	in->sin_port = htons(port);
	a->len = (socklen_t)sizeof(*in);
	a->loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	return 0;
}

bool config_redis_name(const char *s)
{
	const char *colon = strrchr(s, ':');
	size_t hlen = colon ? (size_t)(colon - s) : 0, label = 0;
	bool digits_only = true;
	uint16_t port;

	if (!hlen || s[0] == '/' || !parse_port(colon + 1, &port))
		return false;
	if (hlen > 1 && s[hlen - 1] == '.')
		hlen--; /* a fully qualified name's final dot */
	for (size_t i = 0; i < hlen; i++) {
		char ch = s[i];

		if (ch == '.') {
			if (!label || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		/* '_' as in service names (a container's, DNS SRV-style). */
		if (!isalnum((unsigned char)ch) && ch != '-' && ch != '_')
			return false;
		if ((ch == '-' && !label) || ++label > 63)
			return false;
		digits_only &= ch >= '0' && ch <= '9';
	}
	return label && s[hlen - 1] != '-' && !digits_only;
}

/* Adds address val (--memcached, --redis) to a list of `max` (n used),
 * the first one in a source replacing the list of earlier sources; names
 * (a --redis HOST:PORT whose HOST is a host name) only with names_ok. */
static int addr_add(char (*list)[CONFIG_MC_ADDR_MAX + 1], uint32_t *n,
		    uint32_t max, bool *started, const char *val, bool names_ok,
		    char *why, size_t cap)
{
	struct config_mc_addr a;
	struct opt_qbuf q;

	if (!*started) {
		*started = true;
		*n = 0;
	}
	if (names_ok && val[0] != '/' && strlen(val) > CONFIG_MC_ADDR_MAX)
		return fail(why, cap, "address %s is longer than %u bytes",
			    opt_quote(&q, val), CONFIG_MC_ADDR_MAX);
	/* A name is looked up when connecting, not here.  What is neither
	 * gets config_mc_addr()'s reason, whose usage for --redis names
	 * names too. */
	if (!(names_ok && config_redis_name(val)) &&
	    config_mc_addr(val, &a, why, cap))
		return names_ok && (!strncmp(why, "invalid address", 15) ||
				    !strncmp(why, "invalid IPv6", 12))
			       ? fail(why, cap,
				      "invalid address %s (use /PATH for a "
				      "Unix socket, or HOST:PORT with HOST a "
				      "host name, an IPv4 address or [IPv6])",
				      opt_quote(&q, val))
			       : -1;
	for (uint32_t i = 0; i < *n; i++)
		if (!strcmp(list[i], val))
			return 0;
	if (*n >= max)
		return fail(why, cap, "more than %u addresses", max);
	snprintf(list[(*n)++], CONFIG_MC_ADDR_MAX + 1, "%s", val);
	return 0;
}

/* What only the whole configuration tells about --memcached: an address
 * that is the control socket, TCP beyond loopback without
 * --memcached-remote.  Returns 0, or -1 with an explanation in why. */
static int mc_check(const struct config *c, char *why, size_t cap)
{
	struct opt_qbuf q;

	for (uint32_t i = 0; i < c->n_memcached; i++) {
		struct config_mc_addr a;

		if (config_mc_addr(c->memcached[i], &a, why, cap))
			return -1;
		if (a.is_unix && !strcmp(c->memcached[i], c->socket_path))
			return fail(why, cap,
				    "%s is the control socket (--socket); "
				    "give the memcached socket another path",
				    opt_quote(&q, c->memcached[i]));
		if (!a.loopback && !c->memcached_remote)
			return fail(why, cap,
				    "%s is not a loopback address and the "
				    "memcached protocol has no "
				    "authentication: anyone who reaches it "
				    "reads and writes the cache; add "
				    "--memcached-remote to serve it anyway "
				    "(see docs/SECURITY.md)",
				    opt_quote(&q, c->memcached[i]));
	}
	return 0;
}

static_assert(sizeof(((struct config *)0)->redis) ==
			      CONFIG_REDIS_MAX * (CONFIG_MC_ADDR_MAX + 1) &&
		      sizeof(((struct config *)0)->redis_prefixes) ==
			      CONFIG_REDIS_PREFIXES *
				      (CONFIG_NS_PREFIX_MAX + 1),
	      "config.redis* do not match their limits");

/* What only the whole configuration tells about --redis: prefixes
 * without a server, a server without prefixes.  Returns 0, or the
 * option to blame (an OPT_* id) with an explanation in why. */
static int redis_check(const struct config *c, char *why, size_t cap)
{
	if (c->n_redis && !c->n_redis_prefixes) {
		fail(why, cap,
		     "needs at least one --redis-prefix: the key prefixes "
		     "whose cached copies follow Redis (e.g. --redis-prefix "
		     "user:)");
		return 1;
	}
	if (!c->n_redis && c->n_redis_prefixes) {
		fail(why, cap,
		     "tracks nothing without --redis ADDR (the Redis server "
		     "to follow)");
		return 2;
	}
	/* Redis refuses, in one CLIENT TRACKING, a prefix that starts
	 * another: the longer one is covered by the shorter anyway. */
	for (uint32_t i = 0; i < c->n_redis_prefixes; i++)
		for (uint32_t k = 0; k < c->n_redis_prefixes; k++) {
			const char *a = c->redis_prefixes[i];
			const char *b = c->redis_prefixes[k];
			struct opt_qbuf qa, qb;

			if (i == k || strncmp(a, b, strlen(a)))
				continue;
			fail(why, cap,
			     "%s starts with %s, which covers it (Redis "
			     "refuses overlapping prefixes): give only %s",
			     opt_quote(&qb, b), opt_quote(&qa, a),
			     opt_quote(&qa, a));
			return 2;
		}
	return 0;
}

/* Applies option `id` with value val (NULL: a flag without value) to c.
 * Returns 0, or -1 with an explanation in why. */
static int opt_apply(struct config *c, struct source *src, int id,
		     const char *val, char *why, size_t cap)
{
	uint32_t v32;
	uint64_t v64;

	switch ((enum opt_id)id) {
	case OPT_MEMORY:
		return set_size(&c->memory, val, CONFIG_MEMORY_MIN,
				CONFIG_MEMORY_MAX, why, cap);
	case OPT_SEGMENTS:
		if (set_uint(&v32, val, 1, CONFIG_SEGMENTS_MAX, why, cap))
			return -1;
		if (v32 & (v32 - 1)) {
			struct opt_qbuf q;

			return fail(why, cap,
				    "%s is not a power of two (1, 2, 4 ... %u)",
				    opt_quote(&q, val), CONFIG_SEGMENTS_MAX);
		}
		c->segments = v32;
		return 0;
	case OPT_AVG_ITEM:
		if (set_size(&v64, val, 1, CONFIG_AVG_ITEM_MAX, why, cap))
			return -1;
		c->avg_item = (uint32_t)v64;
		return 0;
	case OPT_SOCKET:
		return set_path(c->socket_path, sizeof(c->socket_path), val,
				false, why, cap);
	case OPT_NAME:
		return set_name(c->name, sizeof(c->name), val, why, cap);
	case OPT_ALLOW_USER:
		if (lookup_id(val, false, &v32, why, cap))
			return -1;
		return allow_add((uint32_t *)c->allow_users, &c->n_allow_users,
				 &src->users_started, v32, "user", why, cap);
	case OPT_ALLOW_GROUP:
		if (lookup_id(val, true, &v32, why, cap))
			return -1;
		return allow_add((uint32_t *)c->allow_groups,
				 &c->n_allow_groups, &src->groups_started, v32,
				 "group", why, cap);
	case OPT_NAMESPACE:
		return prefix_add(c->namespaces, &c->n_namespaces,
				  CONFIG_NS_MAX, &src->ns_started, val,
				  "namespace", "", why, cap);
	case OPT_SNAPSHOT:
		return set_path(c->snapshot, sizeof(c->snapshot), val, true,
				why, cap);
	case OPT_SNAPSHOT_PARTIAL:
		return set_flag(&c->snapshot_partial, val, why, cap);
	case OPT_FOREGROUND:
		return set_flag(&c->foreground, val, why, cap);
	case OPT_LOG_LEVEL:
		return set_log_level(&c->log_level, val, why, cap);
	case OPT_LOG_FILE:
		return set_path(c->log_file, sizeof(c->log_file), val, true,
				why, cap);
	case OPT_RESET:
		return set_flag(&c->reset, val, why, cap);
	case OPT_UNLINK_ON_EXIT:
		return set_flag(&c->unlink_on_exit, val, why, cap);
	case OPT_SEALED:
		return set_flag(&c->sealed, val, why, cap);
	case OPT_HUGEPAGES:
		return set_flag(&c->hugepages, val, why, cap);
	case OPT_PREFAULT:
		return set_flag(&c->prefault, val, why, cap);
	case OPT_CHECKSUM:
		return set_flag(&c->checksum, val, why, cap);
	case OPT_EPOLL:
		return set_flag(&c->force_epoll, val, why, cap);
	case OPT_MAX_CLIENTS:
		return set_uint(&c->max_clients, val, 1, CONFIG_MAX_CLIENTS_MAX,
				why, cap);
	case OPT_LOCK_TIMEOUT:
		return set_uint(&c->lock_timeout_ms, val, 1,
				CONFIG_LOCK_TIMEOUT_MAX, why, cap);
	case OPT_HELLO_TIMEOUT:
		return set_uint(&c->hello_timeout_ms, val,
				CONFIG_HELLO_TIMEOUT_MIN,
				CONFIG_HELLO_TIMEOUT_MAX, why, cap);
	case OPT_MEMCACHED:
		return addr_add(c->memcached, &c->n_memcached,
				CONFIG_MC_LISTEN_MAX, &src->mc_started, val,
				false, why, cap);
	case OPT_MEMCACHED_REMOTE:
		return set_flag(&c->memcached_remote, val, why, cap);
	case OPT_THREADS:
		return set_uint(&c->threads, val, 1, CONFIG_THREADS_MAX, why,
				cap);
	case OPT_MEMCACHED_MAX_CONNS:
		return set_uint(&c->memcached_max_conns, val, 1,
				CONFIG_MC_MAX_CONNS_MAX, why, cap);
	case OPT_MEMCACHED_IDLE_TIMEOUT:
		return set_uint(&c->memcached_idle_timeout, val, 0,
				CONFIG_MC_IDLE_TIMEOUT_MAX, why, cap);
	case OPT_REDIS:
		return addr_add(c->redis, &c->n_redis, CONFIG_REDIS_MAX,
				&src->redis_started, val, true, why, cap);
	case OPT_REDIS_PREFIX:
		return prefix_add(c->redis_prefixes, &c->n_redis_prefixes,
				  CONFIG_REDIS_PREFIXES, &src->rprefix_started,
				  val, "redis",
				  " (it becomes a namespace of the region)",
				  why, cap);
	case OPT_REDIS_USER:
		if (!*val || strlen(val) > CONFIG_REDIS_USER_MAX ||
		    strpbrk(val, " \t\r\n"))
			return fail(why, cap,
				    "a user name is 1 to %u bytes without "
				    "blanks",
				    CONFIG_REDIS_USER_MAX);
		snprintf(c->redis_user, sizeof(c->redis_user), "%s", val);
		return 0;
	case OPT_REDIS_PASSWORD_FILE:
		return set_path(c->redis_password_file,
				sizeof(c->redis_password_file), val, true, why,
				cap);
	case OPT_CONFIG:
	case OPT_HELP:
	case OPT_VERSION:
	case OPT_COUNT:
		break;
	}
	return 0; /* handled by config_parse() itself */
}

/* ------------------------------------------------------------------------
 * The config file
 * ------------------------------------------------------------------------ */

#define LINE_MAX_CFG 8192 /* bytes in a config-file line, without '\n' */

/* Reads one line (without '\n') into buf.  Returns 1 for a line, 0 at
 * the end of the file, -EFBIG for a line too long, -EILSEQ for a NUL byte
 * or the errno of a read error. */
static int read_line(FILE *f, char *buf, size_t cap)
{
	size_t n = 0;
	int ch;

	while ((ch = getc(f)) != EOF && ch != '\n') {
		if (ch == '\0')
			return -EILSEQ;
		if (n + 1 >= cap)
			return -EFBIG;
		buf[n++] = (char)ch;
	}
	if (ch == EOF && ferror(f))
		return errno ? -errno : -EIO;
	buf[n] = '\0';
	return ch == EOF && n == 0 ? 0 : 1;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Applies the config file at path to c.  Returns 0, or -1 after reporting
 * one line to err. */
static int load_file(struct config *c, const char *path, FILE *err)
{
	struct source src = { 0 };
	struct opt_qbuf qp, qk;
	char *line = malloc(LINE_MAX_CFG + 2);
	char why[512], where[OPT_QUOTE_MAX * 8 + 64];
	unsigned lineno = 0;
	int rc = -1;
	FILE *f;

	opt_quote_as(&qp, path, false);
	if (!line) {
		report(err, "--config", "cannot read '%s': %s", qp.s,
		       strerror(ENOMEM));
		return -1;
	}
	errno = 0;
	f = fopen(path, "re");
	if (!f) {
		report(err, "--config", "cannot read '%s': %s", qp.s,
		       strerror(errno));
		free(line);
		return -1;
	}
	for (;;) {
		int r;
		char *s, *key, *val = NULL, *eq;
		int id = -1;

		errno = 0;
		r = read_line(f, line, LINE_MAX_CFG + 2);
		if (!r)
			break;
		lineno++;
		snprintf(where, sizeof(where), "%s:%u", qp.s, lineno);
		if (r == -EFBIG) {
			report(err, where, "line longer than %u bytes",
			       LINE_MAX_CFG);
			goto out;
		}
		if (r == -EILSEQ) {
			report(err, where, "NUL byte (not a text file?)");
			goto out;
		}
		if (r < 0) {
			report(err, "--config", "cannot read '%s': %s", qp.s,
			       strerror(-r));
			goto out;
		}
		s = line;
		if (lineno == 1 && !memcmp(s, "\xef\xbb\xbf", 3))
			s += 3; /* a UTF-8 byte-order mark */
		for (char *p = s; *p; p++) {
			if (*p == '#' &&
			    (p == s || isspace((unsigned char)p[-1]))) {
				*p = '\0';
				break;
			}
		}
		s = trim(s);
		if (!*s)
			continue;
		eq = strchr(s, '=');
		if (eq) {
			*eq = '\0';
			val = trim(eq + 1);
		}
		key = trim(s);
		if (!*key) {
			report(err, where, "missing key before '='");
			goto out;
		}
		for (int i = 0; i < OPT_COUNT; i++)
			if (!strcmp(key, opts[i].name))
				id = i;
		if (id < 0) {
			report(err, where, "unknown key %s",
			       opt_quote(&qk, key));
			goto out;
		}
		if (opts[id].kind == KIND_CMD_VALUE ||
		    opts[id].kind == KIND_CMD_ONLY) {
			report(err, where,
			       "'%s' is a command-line option, not a key",
			       opts[id].name);
			goto out;
		}
		if (!val && opts[id].kind != KIND_FLAG) {
			snprintf(where, sizeof(where), "%s:%u: %s", qp.s,
				 lineno, opts[id].name);
			report(err, where, "missing value");
			goto out;
		}
		if (opt_apply(c, &src, id, val, why, sizeof(why))) {
			snprintf(where, sizeof(where), "%s:%u: %s", qp.s,
				 lineno, opts[id].name);
			report(err, where, "%s", why);
			goto out;
		}
	}
	rc = 0;
out:
	fclose(f);
	free(line);
	return rc;
}

/* ------------------------------------------------------------------------
 * Defaults, usage, the command line
 * ------------------------------------------------------------------------ */

void config_defaults(struct config *c)
{
	uid_t euid = geteuid();

	memset(c, 0, sizeof(*c));
	c->memory = CONFIG_MEMORY_DEFAULT;
	c->segments = CONFIG_SEGMENTS_DEFAULT;
	c->avg_item = CONFIG_AVG_ITEM_DEFAULT;
	c->log_level = CONFIG_LOG_INFO;
	c->max_clients = CONFIG_MAX_CLIENTS_DEFAULT;
	c->lock_timeout_ms = CONFIG_LOCK_TIMEOUT_DEFAULT;
	c->hello_timeout_ms = CONFIG_HELLO_TIMEOUT_DEFAULT;
	c->threads = CONFIG_THREADS_DEFAULT;
	c->memcached_max_conns = CONFIG_MC_MAX_CONNS_DEFAULT;
	paths_default_socket(c->socket_path, sizeof(c->socket_path), euid);
	paths_default_name(c->name, sizeof(c->name), euid);
}

void config_usage(FILE *out)
{
	fprintf(out,
		"Usage: %s [OPTION]...\n"
		"Runs the shmcached daemon: owns a shared-memory cache region "
		"and serves\nits control socket.\n\nOptions:\n",
		CONFIG_PROG);
	opt_usage(out, specs, OPT_COUNT, OPT_ALL, OPT_USAGE_META_EQ);
	fprintf(out,
		"\n"
		"A flag takes an optional =yes or =no, e.g. --reset=no to "
		"override the\nconfig file.  A SIZE takes a K, M, G or T "
		"suffix (binary: 64M = 64 MiB).\n"
		"\n"
		"The config file holds one 'key = value' per line; the keys "
		"are the long\noptions above without '--' (not config, help "
		"or version), e.g.\n"
		"    memory = 1G\n"
		"    allow-group = www-data\n"
		"'#' starts a comment.  Options on the command line override "
		"the file.\n"
		"\n"
		"Socket activation (systemd): a passed descriptor named "
		"memcached\n(FileDescriptorName=memcached, e.g. "
		"shmcached-memcached.socket beside\nshmcached.socket, "
		"Service=shmcached.service) serves the memcached\nprotocols, "
		"as --memcached would; the unnamed one is the control "
		"socket.\n");
}

/* "--name" for option id, for messages. */
static const char *dashed(char *buf, size_t cap, int id)
{
	snprintf(buf, cap, "--%s", opts[id].name);
	return buf;
}

/* Reports an option getopt_long refused ('?'), from optopt and the
 * argument it was in. */
static void report_bad_option(FILE *err, const char *arg, int opt)
{
	struct opt_qbuf q;
	char name[64];
	int id = opt_of_val(opt);

	if (id >= 0) { /* known, but given a value it does not take */
		report(err, dashed(name, sizeof(name), id), "takes no value");
		return;
	}
	if (opt > 0 && opt < OPT_VAL_BASE) {
		char s[3] = { '-', (char)opt, '\0' };

		report(err, NULL, "unknown option %s", opt_quote(&q, s));
		return;
	}
	if (!arg) {
		report(err, NULL, "unknown option");
		return;
	}
	if (!strncmp(arg, "--", 2)) {
		/* getopt_long accepts unique prefixes: say which ones a
		 * prefix that is not unique could mean. */
		size_t len = strcspn(arg + 2, "="), n = 0;
		char list[OPT_COUNT * 24] = "";
		int matches = 0;

		for (int i = 0; len && i < OPT_COUNT; i++) {
			if (strncmp(opts[i].name, arg + 2, len))
				continue;
			int k = snprintf(list + n, sizeof(list) - n, "%s--%s",
					 matches ? ", " : "", opts[i].name);
			if (k > 0 && (size_t)k < sizeof(list) - n)
				n += (size_t)k;
			matches++;
		}
		if (matches > 1) {
			char s[OPT_QUOTE_MAX + 3];

			snprintf(s, sizeof(s), "%.*s",
				 (int)(len + 2 < sizeof(s) ? len + 2
							   : sizeof(s) - 1),
				 arg);
			report(err, NULL, "ambiguous option %s (%s)",
			       opt_quote(&q, s), list);
			return;
		}
	}
	report(err, NULL, "unknown option %s", opt_quote(&q, arg));
}

enum config_result config_parse(struct config *c, int argc, char **argv,
				FILE *out, FILE *err)
{
	struct getopt_tables t;
	struct config w = *c;
	struct source src = { 0 };
	const char *config_path = NULL;
	bool help = false, version = false, config_twice = false;
	enum config_result res = CONFIG_ERROR;
	int saved_opterr = opterr, ch;
	char why[512], name[64];

	if (argc < 1 || !argv)
		return CONFIG_OK; /* nothing to parse, not even a name */
	getopt_tables_init(&t);
	opterr = 0;

	/* Pass 1: --help, --version and --config, before anything else. */
	optind = 0;
	while ((ch = getopt_long(argc, argv, t.optstring, t.longopts, NULL)) !=
	       -1) {
		int id = opt_of_val(ch);

		if (id == OPT_HELP)
			help = true;
		else if (id == OPT_VERSION)
			version = true;
		else if (id == OPT_CONFIG) {
			config_twice = config_path != NULL;
			config_path = optarg;
		}
	}
	if (help) {
		config_usage(out);
		res = CONFIG_EXIT_OK;
		goto done;
	}
	if (version) {
		fprintf(out, "%s %s\n", CONFIG_PROG, SHMC_VERSION);
		res = CONFIG_EXIT_OK;
		goto done;
	}
	if (config_twice) {
		report(err, "--config", "given more than once");
		goto done;
	}
	if (config_path) {
		if (load_file(&w, config_path, err))
			goto done;
		snprintf(w.config_file, sizeof(w.config_file), "%s",
			 config_path);
	}

	/* Pass 2: everything else, in order, over the file's values. */
	optind = 0;
	while ((ch = getopt_long(argc, argv, t.optstring, t.longopts, NULL)) !=
	       -1) {
		int id = opt_of_val(ch);

		if (ch == ':') {
			id = opt_of_val(optopt);
			report(err,
			       id >= 0 ? dashed(name, sizeof(name), id)
				       : "option",
			       "missing value");
			goto done;
		}
		if (ch == '?' || id < 0) {
			report_bad_option(err,
					  optind > 0 && optind <= argc
						  ? argv[optind - 1]
						  : NULL,
					  optopt);
			goto done;
		}
		if (opt_apply(&w, &src, id, optarg, why, sizeof(why))) {
			report(err, dashed(name, sizeof(name), id), "%s", why);
			goto done;
		}
	}
	if (optind < argc) {
		struct opt_qbuf q;

		report(err, NULL, "unexpected argument %s",
		       opt_quote(&q, argv[optind]));
		goto done;
	}
	if (mc_check(&w, why, sizeof(why))) {
		report(err, "--memcached", "%s", why);
		goto done;
	}
	switch (redis_check(&w, why, sizeof(why))) {
	case 0:
		break;
	case 1:
		report(err, "--redis", "%s", why);
		goto done;
	default:
		report(err, "--redis-prefix", "%s", why);
		goto done;
	}
	*c = w;
	res = CONFIG_OK;
done:
	opterr = saved_opterr;
	return res;
}
