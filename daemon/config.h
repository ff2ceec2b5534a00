/*
 * config.h - the daemon's configuration: defaults, the command line and the
 * config file, checked and turned into one struct config.
 *
 * Every option is declared once (CONFIG_OPTIONS in config.c) and the
 * getopt_long table, the config-file keys and the --help text are derived
 * from that list.  Values are checked here, so that a bad one is refused
 * with a one-line message naming the option before anything is created;
 * what needs the engine (whether --memory is large enough for --segments)
 * or the system (whether the socket's directory exists) is checked by the
 * daemon when it acts on the configuration.
 *
 * What it is not: it opens no socket, maps no region and does not log; it
 * never calls exit().  The caller decides the exit status from the
 * config_result (main: CONFIG_EXIT_OK -> 0, CONFIG_ERROR -> 2).
 *
 * Where the settings come from, each overriding the one before:
 *     config_defaults()  ->  the --config FILE  ->  the other options,
 *                                                   in command-line order
 * A list option (allow-user, allow-group, namespace, memcached, redis,
 * redis-prefix) given in a
 * source replaces the list from earlier sources; repeated within one
 * source it accumulates.
 *
 * The config file holds one "key = value" per line.  The keys are the long
 * option names without "--" (every option except config, help and
 * version).  '#' starts a comment at the start of a line or after a blank;
 * blank lines are ignored; blanks around keys and values are trimmed; there
 * is no quoting (a value runs to the end of the line or its comment).  A
 * flag (foreground, reset, unlink-on-exit, hugepages, prefault, checksum,
 * epoll, snapshot-partial, memcached-remote) takes true/false, yes/no, on/off or 1/0, and a
 * bare key means true.
 */
#ifndef SHMC_CONFIG_H
#define SHMC_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "shmc_version.h" /* SHMC_VERSION, what --version prints */

/* ------------------------------------------------------------------------
 * Limits and defaults
 * ------------------------------------------------------------------------ */

#define CONFIG_MEMORY_DEFAULT (UINT64_C(64) << 20)
#define CONFIG_MEMORY_MIN (UINT64_C(1) << 20)
#define CONFIG_MEMORY_MAX (UINT64_C(1) << 40)
#define CONFIG_SEGMENTS_DEFAULT 0u /* chosen from --memory, see below */
#define CONFIG_SEGMENTS_MAX 65536u /* min 1; a power of two */
#define CONFIG_AVG_ITEM_DEFAULT 128u
#define CONFIG_AVG_ITEM_MAX (UINT32_C(1) << 30) /* min 1 */
#define CONFIG_MAX_CLIENTS_DEFAULT 1024u
#define CONFIG_MAX_CLIENTS_MAX 65536u /* min 1 */
#define CONFIG_LOCK_TIMEOUT_DEFAULT 2000u
#define CONFIG_LOCK_TIMEOUT_MAX 60000u /* min 1 */
#define CONFIG_HELLO_TIMEOUT_DEFAULT 10000u
#define CONFIG_HELLO_TIMEOUT_MIN 100u
#define CONFIG_HELLO_TIMEOUT_MAX 600000u
#define CONFIG_ALLOW_MAX 32u	    /* entries per allow list */
#define CONFIG_NS_MAX 128u	    /* --namespace prefixes (the engine's) */
#define CONFIG_NS_PREFIX_MAX 52u    /* bytes in one (LAYOUT_NS_PREFIX_MAX) */
#define CONFIG_SOCKET_PATH_MAX 107u /* sun_path less its NUL */
#define CONFIG_NAME_MAX 255u	    /* shm name, with its '/' */
#define CONFIG_FILE_PATH_MAX 4095u  /* snapshot, log file */
#define CONFIG_MC_LISTEN_MAX 16u    /* --memcached addresses */
#define CONFIG_MC_ADDR_MAX 107u	    /* bytes in one (a sun_path) */
#define CONFIG_THREADS_DEFAULT 1u
#define CONFIG_THREADS_MAX 64u /* min 1 */
#define CONFIG_MC_MAX_CONNS_DEFAULT 1024u
#define CONFIG_MC_MAX_CONNS_MAX 65536u	    /* min 1 */
#define CONFIG_MC_IDLE_TIMEOUT_MAX 2592000u /* seconds (30 days); 0 never */
#define CONFIG_REDIS_MAX 16u		    /* --redis addresses (seeds) */
#define CONFIG_REDIS_PREFIXES 64u	    /* --redis-prefix prefixes */
#define CONFIG_REDIS_USER_MAX 255u

/* Log levels, the values of config.log_level. */
enum config_log_level {
	CONFIG_LOG_ERROR = 0,
	CONFIG_LOG_WARN = 1,
	CONFIG_LOG_INFO = 2,
	CONFIG_LOG_DEBUG = 3,
};

/* ------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------ */

/* A complete configuration.  After config_defaults() and a successful
 * config_parse() every field holds a checked value within the limits
 * above; strings are NUL-terminated. */
struct config {
	/* --memory SIZE: region bytes, 1M..1T; default 64M */
	uint64_t memory;
	/* --segments N: a power of two, 1..65536; default 0: the daemon
	 * takes eng_default_nseg() of --memory (region_resolve()), the most
	 * segments up to 256 that still hold a 1 MiB value */
	uint32_t segments;
	/* --avg-item SIZE: expected key+value bytes, 1..1G; default 128.
	 * Sizes the entry pools (struct eng_config.avg_item). */
	uint32_t avg_item;
	/* --socket PATH: absolute, at most 107 bytes.  The default as root is
	 * /run/shmcached/shmcached.sock, otherwise
	 * $XDG_RUNTIME_DIR/shmcached.sock, or
	 * /tmp/shmcached-<euid>/shmcached.sock when XDG_RUNTIME_DIR is unset,
	 * relative or too long.  The daemon creates the directory. */
	char socket_path[108];
	/* --name NAME: POSIX shm name, "/" then 1 to 254 bytes without '/',
	 * not "." or ".."; default /shmcached as root, otherwise
	 * /shmcached-<euid> */
	char name[256];
	/* --allow-user U, --allow-group G: resolved ids, in the order given,
	 * without duplicates */
	uid_t allow_users[32];
	uint32_t n_allow_users;
	gid_t allow_groups[32];
	uint32_t n_allow_groups;
	/* --namespace PREFIX: prefixes registered as namespaces at every
	 * start (one already in the region is kept as it is), in the order
	 * given, without duplicates; 1..52 bytes each */
	char namespaces[128][53];
	uint32_t n_namespaces;
	/* --snapshot FILE: absolute path, "" for none */
	char snapshot[4096];
	/* --snapshot-partial: when the snapshot loaded at start is damaged,
	 * load the blocks before the damage (default: nothing of it) */
	bool snapshot_partial;
	/* --foreground: do not daemonize */
	bool foreground;
	/* --log-level L: an enum config_log_level; default CONFIG_LOG_INFO */
	int log_level;
	/* --log-file PATH: absolute path, "" for stderr */
	char log_file[4096];
	/* --reset: replace a region that does not validate or has another
	 * geometry (default: refuse to start) */
	bool reset;
	/* --unlink-on-exit: shm_unlink at clean shutdown (default: keep the
	 * region for a warm restart) */
	bool unlink_on_exit;
	bool sealed; /* --sealed: region is a sealed memfd */
	/* --hugepages, --prefault */
	bool hugepages;
	bool prefault;
	/* --checksum: entries carry a checksum verified on each read
	 * (REGION_F_CHECKSUM), chosen when the region is created */
	bool checksum;
	/* --epoll: the epoll loop instead of io_uring */
	bool force_epoll;
	/* --max-clients N: 1..65536; default 1024 */
	uint32_t max_clients;
	/* --lock-timeout MS: 1..60000; default 2000.  Applied to the region
	 * at each start, a warm restart included */
	uint32_t lock_timeout_ms;
	/* --hello-timeout MS: a connection without HELLO by then is closed;
	 * 100..600000; default 10000 */
	uint32_t hello_timeout_ms;
	/* --memcached ADDR: where the memcached protocols are served, in
	 * the order given, without duplicates; each a Unix socket path
	 * (absolute) or HOST:PORT (see config_mc_addr()) */
	char memcached[16][108];
	uint32_t n_memcached;
	/* --memcached-remote: TCP on addresses other than loopback is
	 * allowed (default: refused, the protocol has no authentication) */
	bool memcached_remote;
	/* --threads N: memcached serving threads, 1..64; default 1 */
	uint32_t threads;
	/* --memcached-max-conns N: memcached connections at once (all
	 * threads), 1..65536; default 1024 */
	uint32_t memcached_max_conns;
	/* --memcached-idle-timeout SECONDS: a memcached connection with no
	 * traffic that long is closed; 0 (the default) never */
	uint32_t memcached_idle_timeout;
	/* --redis ADDR: the Redis server, or seeds of a Redis Cluster, whose
	 * invalidations the daemon follows (redis.c, docs/NEARCACHE.md), in
	 * the order given, without duplicates; each as --memcached's
	 * addresses (config_mc_addr()) */
	char redis[16][108];
	uint32_t n_redis;
	/* --redis-prefix PREFIX: the tracked key prefixes, 1..52 bytes each;
	 * at least one when --redis is given, none without it */
	char redis_prefixes[64][53];
	uint32_t n_redis_prefixes;
	/* --redis-user NAME: the ACL user of HELLO's AUTH; "" for "default" */
	char redis_user[256];
	/* --redis-password-file FILE: absolute path, "" for none (then
	 * $SHMCACHED_REDIS_PASSWORD, if set); read by the daemon at start */
	char redis_password_file[4096];
	/* The --config FILE that was applied, as given; "" if none */
	char config_file[4096];
};

/* What config_parse() asks the caller to do next. */
enum config_result {
	CONFIG_OK = 0,	    /* run with the configuration */
	CONFIG_EXIT_OK = 1, /* --help or --version was printed: exit 0 */
	CONFIG_ERROR = 2,   /* a one-line error was printed: exit 2 */
};

/* ------------------------------------------------------------------------
 * API
 * ------------------------------------------------------------------------ */

/* Fills *c with the defaults.  The socket path and the region name depend
 * on geteuid() and $XDG_RUNTIME_DIR, so call it in the daemon's own
 * process.  Cannot fail. */
void config_defaults(struct config *c);

/* Parses the command line into *c, which the caller has filled with
 * config_defaults().
 *
 * argv follows getopt_long: "--memory 64M" and "--memory=64M" are the
 * same, unambiguous prefixes of long names are accepted ("--seg 32"),
 * "--" ends the options, -h is --help and -V is --version.  A flag takes an
 * optional "=BOOL" ("--reset=no") so it can override the config file.
 * "--config FILE" is applied first wherever it appears (at most once),
 * then the other options in order, later ones overriding earlier ones.
 * --help and --version win over every other option and error: --help
 * prints the usage to `out`, --version prints "shmcached SHMC_VERSION";
 * both return CONFIG_EXIT_OK without reading the config file.
 *
 * Relative paths (--socket, --snapshot, --log-file and the same keys in
 * the file) are made absolute against the current directory, since the
 * daemon leaves it when it daemonizes.  Users and groups are looked up
 * (getpwnam_r, getgrnam_r) here; an all-digit value is taken as a uid or
 * gid without a lookup.
 *
 * Returns
 *   CONFIG_OK       *c holds the configuration;
 *   CONFIG_EXIT_OK  usage or version printed to `out`, *c unchanged;
 *   CONFIG_ERROR    exactly one line "shmcached: <where>: <what>" printed
 *                   to `err`, *c unchanged.  <where> is "--option" for the
 *                   command line and "FILE:LINE: key" for the config file.
 *                   Refused: unknown, ambiguous or repeated-where-single
 *                   options, a missing or extra value, stray arguments,
 *                   values out of range or with junk, unknown users or
 *                   groups, more than 32 allow entries, more than 128
 *                   namespaces or a prefix empty or over 52 bytes, paths or names
 *                   that do not fit, an unreadable config file, more than
 *                   16 --memcached addresses, one that does not parse
 *                   (config_mc_addr()) or is the control socket, and TCP
 *                   on an address other than loopback without
 *                   --memcached-remote; more than 16 --redis addresses
 *                   or one that does not parse, --redis without a
 *                   --redis-prefix or a prefix without --redis, more
 *                   than 64 prefixes or one empty or over 52 bytes.
 * Values quoted in messages are cut to 64 bytes and control characters
 * escaped, so the message stays on one line.
 *
 * Not thread-safe: it uses getopt_long()'s globals (resetting optind, and
 * restoring opterr) and may reorder the pointers in argv, as getopt_long
 * does.  It can be called again, e.g. by a test. */
enum config_result config_parse(struct config *c, int argc, char **argv,
				FILE *out, FILE *err);

/* A --memcached address: a Unix socket path (it starts with '/', at most
 * 107 bytes), or HOST:PORT for TCP, HOST being an IPv4 address, an IPv6
 * address in brackets ("[::1]:11211") or "localhost" (127.0.0.1), PORT
 * 1..65535.  No name is looked up. */
struct config_mc_addr {
	bool is_unix;
	bool loopback; /* TCP on 127.0.0.0/8 or ::1 (always true for Unix) */
	struct sockaddr_storage sa;
	socklen_t len;
};

/* Parses s into *a.  Returns 0, or -1 with an explanation (no prefix, no
 * newline) in why.  Thread-safe. */
int config_mc_addr(const char *s, struct config_mc_addr *a, char *why,
		   size_t cap);

/* Whether s is HOST:PORT with HOST a host name (not an IP address):
 * labels of letters, digits, '-' and '_', not starting or ending with
 * '-', 1 to 63 bytes each, joined by '.' (a final '.' allowed), not all
 * digits and dots; PORT 1..65535.  The whole address fits
 * CONFIG_MC_ADDR_MAX bytes.  A --redis address may be one (its name is
 * looked up at each connect); a --memcached listener may not.
 * Thread-safe. */
bool config_redis_name(const char *s);

/* Sizes (--memory, --avg-item) are read by opt_parse_size() (shared/opt.h):
 * decimal digits, then optionally K, M, G or T (binary multiples), then
 * optionally "B" or "iB". */

/* Prints the usage (--help) to out: every option with its argument and a
 * line of help, then the config-file format.  Thread-safe. */
void config_usage(FILE *out);

#endif
