/*
 * cachectl.c - the administration tool of shmcached: statistics, single
 * keys and listings, integrity checks, connected clients and a live view,
 * from a shell.
 *
 * cachectl is a client of libshmc like any other and uses nothing but
 * <shmc.h> and libc: the data commands (get, gets, set, add, replace, cas,
 * append, prepend, incr, decr, del, ttl, touch, flush, keys, dump) and the
 * statistics work on the shared mapping; check, clients, save, load, ping
 * and shutdown are control requests over the daemon's socket.  With
 * --no-map the data commands of memcached's classic set (get, set, del,
 * ttl, touch, flush) and the statistics are requests over
 * the socket too (docs/PROTOCOL.md), for a process that cannot map the
 * region; that is the one place cachectl speaks the protocol itself, with
 * the project's codec (shared/proto.h).
 * It is not a benchmark and does not change the daemon's configuration.
 *
 * Every table is declared once - exit codes, options, the fields of struct
 * shmc_stats, commands - and the parser, the dispatch, --help and the JSON
 * keys are derived from them.  Handlers return an exit code (enum
 * ctl_exit) and print their own messages; helpers return 0 or a negative
 * errno.  Only main() ends the process.
 */
#include "shmc.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "opt.h"
#include "proto.h"
#include "sock.h"


#define CTL_PROG "cachectl"

/* ------------------------------------------------------------------------
 * Tables
 * ------------------------------------------------------------------------ */

/* X(id, exit status, meaning).  Listed by --help. */
#define CTL_EXITS(X)                                                           \
	X(OK, 0, "success")                                                    \
	X(NO, 1,                                                               \
	  "the key or namespace was not found, or check found\n"               \
	  "damage")                                                            \
	X(USAGE, 2,                                                            \
	  "usage error: unknown command or option, missing or\n"               \
	  "extra argument, bad number")                                        \
	X(UNREACHABLE, 3, "the daemon cannot be reached at the socket")        \
	X(FAILED, 4, "any other failure (the message on stderr says which)")   \
	X(EXISTS, 5,                                                           \
	  "add: the key exists; cas: the key changed since\n"                  \
	  "VERSION was read")                                                  \
	X(NAN, 6, "incr, decr: the value is not a decimal number")

enum ctl_exit {
#define EXIT_X(id, code, help) CTL_EXIT_##id = code,
	CTL_EXITS(EXIT_X)
#undef EXIT_X
};

/* X(id, long name, short option or 0, metavar (NULL: a flag), help).  The
 * help may hold '\n'; continuation lines are indented under the first. */
#define CTL_OPTIONS(X)                                                         \
	X(SOCKET, "socket", 0, "PATH",                                         \
	  "the daemon's control socket (default:\n"                            \
	  "$SHMC_SOCKET, else the daemon's default)")                          \
	X(JSON, "json", 0, NULL, "print JSON instead of text")                 \
	X(TTL, "ttl", 0, "S", "expire after S seconds (default 0: never)")     \
	X(FLAGS, "flags", 0, "N",                                              \
	  "the item's flags, 0 to 4294967295 (default 0)")                     \
	X(INIT, "init", 0, "N", "create a missing KEY at N, then count")       \
	X(INIT_TTL, "init-ttl", 0, "S",                                        \
	  "the TTL of a KEY --init creates (default 0:\nnever)")               \
	X(REPAIR, "repair", 0, NULL,                                           \
	  "reset the damaged segments (their entries\nare lost)")              \
	X(PARTIAL, "partial", 0, NULL,                                         \
	  "load in one read, keeping the blocks before\nany damage")           \
	X(INTERVAL, "interval", 0, "S",                                        \
	  "seconds between refreshes, e.g. 0.5\n"                              \
	  "(0.001 to 86400, default 1)")                                       \
	X(COUNT, "count", 0, "N",                                              \
	  "stop after N refreshes (default: run until\ninterrupted)")          \
	X(NO_MAP, "no-map", 0, NULL,                                           \
	  "send the request over the socket instead of\n"                      \
	  "mapping the region (for a process that\n"                           \
	  "cannot map it: another user or namespace)")                         \
	X(HELP, "help", 'h', NULL, "print help and exit")                      \
	X(VERSION, "version", 'V', NULL, "print the version and exit")

enum ctl_opt {
#define OPT_X(id, name, shortc, meta, help) CTL_OPT_##id,
	CTL_OPTIONS(OPT_X)
#undef OPT_X
		CTL_NOPTS
};

#define OPT_BIT(id) (1u << CTL_OPT_##id)
/* Accepted with every command, before or after its name. */
#define CTL_GLOBAL_OPTS (OPT_BIT(SOCKET) | OPT_BIT(HELP) | OPT_BIT(VERSION))

static const struct opt_spec ctl_options[CTL_NOPTS] = {
#define DESC_X(id, name, shortc, meta, help)                                   \
	[CTL_OPT_##id] = { name, shortc, meta, help },
	CTL_OPTIONS(DESC_X)
#undef DESC_X
};

/* X(field of struct shmc_stats, unit, description).  The names are the
 * labels of `stats` and `segments` and their JSON keys. */
enum ctl_unit { UNIT_COUNT, UNIT_BYTES };

#define CTL_STATS_FIELDS(X)                                                    \
	X(hits, UNIT_COUNT, "gets that found a live entry")                    \
	X(misses, UNIT_COUNT, "gets that found nothing or an expired entry")   \
	X(sets, UNIT_COUNT, "successful sets")                                 \
	X(overwrites, UNIT_COUNT, "sets that replaced a live entry")           \
	X(deletes, UNIT_COUNT, "deletes that removed a live entry")            \
	X(evictions, UNIT_COUNT, "live entries dropped to make room")          \
	X(moves, UNIT_COUNT, "entries in use kept by moving them")             \
	X(expirations, UNIT_COUNT, "expired entries reclaimed")                \
	X(repairs, UNIT_COUNT, "segment resets after damage or a dead holder") \
	X(entries, UNIT_COUNT, "live entries now")                             \
	X(bytes_used, UNIT_BYTES, "ring bytes in use now")                     \
	X(bytes_total, UNIT_BYTES, "ring bytes in all")                        \
	X(segments, UNIT_COUNT, "segments counted")

struct ctl_stat_field {
	const char *name;
	enum ctl_unit unit;
	size_t off;
	const char *desc;
};

static const struct ctl_stat_field ctl_stat_fields[] = {
#define FIELD_X(f, unit, desc)                                                 \
	{ #f, unit, offsetof(struct shmc_stats, f), desc },
	CTL_STATS_FIELDS(FIELD_X)
#undef FIELD_X
};

#define CTL_NSTATS (sizeof(ctl_stat_fields) / sizeof(ctl_stat_fields[0]))

/* Every field is a uint64_t (the FIELD_X offsets would not compile for a
 * field that does not exist); this catches one added to shmc.h but not to
 * CTL_STATS_FIELDS. */
_Static_assert(sizeof(struct shmc_stats) == CTL_NSTATS * sizeof(uint64_t),
	       "struct shmc_stats has a field CTL_STATS_FIELDS lacks");

/* The options of the stores, and of incr and decr.  --no-map is taken
 * only to say that these commands need the mapping. */
#define STORE_OPTS (OPT_BIT(TTL) | OPT_BIT(FLAGS) | OPT_BIT(NO_MAP))
#define ARITH_OPTS (OPT_BIT(INIT) | OPT_BIT(INIT_TTL) | OPT_BIT(NO_MAP))
#define NEEDS_MAP "\nNeeds the mapping (not with --no-map)."

struct ctl;
typedef int ctl_handler(struct ctl *x, int argc, char **argv);

/* X(name, arguments, min args, max args, options besides the global ones
 * (OPT_BIT), summary, details).  The order is the order of --help. */
#define CTL_COMMANDS(X)                                                               \
	X(stats, "", 0, 0, OPT_BIT(JSON) | OPT_BIT(NO_MAP),                           \
	  "the cache's totals, hit rate and fill",                                    \
	  "Prints every counter and gauge of the cache, summed over its\n"            \
	  "segments (hits and misses also over the clients' counters of\n"            \
	  "gets without the lock), then hit_rate (hits / (hits + misses),\n"          \
	  "in %) and fill (bytes_used / bytes_total, in %).  With --json,\n"          \
	  "one object with the same keys; a rate without a denominator is\n"          \
	  "null.  When the daemon follows Redis (--redis), the near cache's\n"        \
	  "state, tracked prefixes and counters follow as redis_* rows (with\n"       \
	  "--json, a \"redis\" object: docs/NEARCACHE.md).")                          \
	X(segments, "", 0, 0, OPT_BIT(JSON),                                          \
	  "one line per segment: entries, fill, hit rate",                            \
	  "Prints, for each segment, its index, entries, ring bytes used and\n"       \
	  "in all (fill %), hits, misses and hit rate of the gets that took\n"        \
	  "its lock (a get of an entry in use does not: `stats` counts\n"             \
	  "those).  With --json, an array of objects holding every field\n"           \
	  "of `stats` plus \"segment\".")                                             \
	X(get, "KEY", 1, 1, OPT_BIT(JSON) | OPT_BIT(NO_MAP),                          \
	  "print the value of KEY",                                                   \
	  "Writes the value to stdout exactly as stored (any bytes).  A\n"            \
	  "newline is added only when stdout is a terminal and the value\n"           \
	  "does not end with one.  Exits 1 if the key is missing or expired.\n"       \
	  "With --json: {\"key\", \"value\", \"bytes\", \"expire_at\"} where\n"       \
	  "expire_at is unix seconds or null.  A key or value that is not\n"          \
	  "valid UTF-8 comes as \"key_b64\" / \"value_b64\" instead: its\n"           \
	  "exact bytes in base64 (RFC 4648).  The same holds for the key of\n"        \
	  "`ttl --json` and the file of `save`/`load --json`.")                       \
	X(mget, "KEY...", 1, INT_MAX, OPT_BIT(JSON),                                  \
	  "print the values of several keys in one multi-get",                        \
	  "Gets the KEYs by shmc_mget() (64 at a time) and prints, per KEY\n"         \
	  "in order,\n"                                                               \
	  "its value and a newline, or the line \"(not found)\" for a key\n"          \
	  "that is missing or expired (also named on stderr).  Values that\n"         \
	  "hold newlines make the text ambiguous: use --json, an array of\n"          \
	  "get's objects, with \"value\": null and \"bytes\": 0 for a missing\n"      \
	  "key.  Exits 0 when every key was found, 1 when any was not\n"              \
	  "(some or all: get's code for a missing key; every key is still\n"          \
	  "printed), 4 when a key failed otherwise (named on stderr, printed\n"       \
	  "as missing; the others still are).  Needs the mapping (no\n"               \
	  "--no-map).")                                                               \
	X(set, "KEY [VALUE]", 1, 2,                                                   \
	  OPT_BIT(TTL) | OPT_BIT(FLAGS) | OPT_BIT(NO_MAP),                            \
	  "store VALUE (or stdin) under KEY",                                         \
	  "Stores VALUE under KEY, replacing any value it had.  Without\n"            \
	  "VALUE, or when VALUE is '-', the value is all of stdin (any\n"             \
	  "bytes).  The cache never refuses for lack of room: it evicts\n"            \
	  "older entries instead; a key + value larger than the cache's\n"            \
	  "largest item fails.  --flags stores the item's flags (`gets`\n"            \
	  "prints them); it needs the mapping (not with --no-map).")                  \
	X(gets, "KEY", 1, 1, OPT_BIT(JSON) | OPT_BIT(NO_MAP),                         \
	  "print the value of KEY with its flags and version",                        \
	  "Prints one line \"flags F cas V bytes N expire_at T\" (T in unix\n"        \
	  "seconds, or none), then the value as `get` does.  V is the\n"              \
	  "version for `cas`.  Exits 1 if the key is missing or expired.\n"           \
	  "With --json: the members of `get --json` plus \"flags\" and\n"             \
	  "\"cas\", the version as a string of digits (it is above 2^53,\n"           \
	  "which a JSON number loses in most readers).  Needs the mapping\n"          \
	  "(not with --no-map).")                                                     \
	X(add, "KEY [VALUE]", 1, 2, STORE_OPTS, "store under KEY if absent",          \
	  "As set, but only if KEY is missing or expired (memcached's add).\n"        \
	  "Exits 5 if it exists (nothing is changed)." NEEDS_MAP)                     \
	X(replace, "KEY [VALUE]", 1, 2, STORE_OPTS,                                   \
	  "store under KEY if present",                                               \
	  "As set, but only if KEY is present (memcached's replace).  Exits\n"        \
	  "1 if it is missing or expired (nothing is stored)." NEEDS_MAP)             \
	X(cas, "KEY VERSION [VALUE]", 2, 3, STORE_OPTS,                               \
	  "store under KEY if unchanged since VERSION",                               \
	  "As set, but only if KEY is present and its version is still\n"             \
	  "VERSION, as `gets` printed it (memcached's cas).  Exits 5 if it\n"         \
	  "changed since, 1 if it is gone (nothing is stored either way)." NEEDS_MAP) \
	X(append, "KEY [VALUE]", 1, 2, OPT_BIT(NO_MAP),                               \
	  "add VALUE (or stdin) after KEY's value",                                   \
	  "Appends VALUE (or stdin, as set) to the value of KEY, which keeps\n"       \
	  "its flags and expiry.  Exits 1 if KEY is missing or expired\n"             \
	  "(nothing is created)." NEEDS_MAP)                                          \
	X(prepend, "KEY [VALUE]", 1, 2, OPT_BIT(NO_MAP),                              \
	  "put VALUE (or stdin) before KEY's value",                                  \
	  "As append, with VALUE before the value of KEY." NEEDS_MAP)                 \
	X(incr, "KEY [DELTA]", 1, 2, ARITH_OPTS,                                      \
	  "add DELTA (default 1) to the number under KEY",                            \
	  "Adds DELTA (0 to 2^64-1, default 1) to the value of KEY, a\n"              \
	  "decimal number below 2^64, atomically, and prints the result.\n"           \
	  "It wraps around at 2^64 (memcached's incr).  Exits 1 if KEY is\n"          \
	  "missing (unless --init N: then KEY is created at N, with\n"                \
	  "--init-ttl's TTL, and DELTA added), 6 if its value is not such a\n"        \
	  "number (it is left unchanged)." NEEDS_MAP)                                 \
	X(decr, "KEY [DELTA]", 1, 2, ARITH_OPTS,                                      \
	  "subtract DELTA (default 1) from the number under KEY",                     \
	  "As incr, subtracting; the result stops at 0 (memcached's decr).\n"         \
	  "--init N creates a missing KEY at N, then subtracts." NEEDS_MAP)           \
	X(del, "KEY", 1, 1, OPT_BIT(NO_MAP), "remove KEY",                            \
	  "Removes KEY.  Exits 1 if it was missing or expired.")                      \
	X(ttl, "KEY", 1, 1, OPT_BIT(JSON) | OPT_BIT(NO_MAP),                          \
	  "seconds KEY has left",                                                     \
	  "Prints the seconds KEY has left, or \"none\" if it never\n"                \
	  "expires.  Exits 1 if it is missing or expired.  With --json:\n"            \
	  "{\"key\", \"ttl\"}, ttl null for no expiry (\"key_b64\" for a key\n"       \
	  "that is not UTF-8, as with get).")                                         \
	X(touch, "KEY TTL", 2, 2, OPT_BIT(NO_MAP), "give KEY a new TTL",              \
	  "Gives KEY a TTL of TTL seconds from now (0: never expires).\n"             \
	  "Exits 1 if it is missing or expired.")                                     \
	X(flush, "", 0, 0, OPT_BIT(NO_MAP), "remove every entry",                     \
	  "Removes every entry of the cache.  The counters are kept.")                \
	X(keys, "[PREFIX]", 0, 1, OPT_BIT(JSON),                                      \
	  "list the keys (that start with PREFIX)",                                   \
	  "Prints every live key, or those that start with PREFIX, one per\n"         \
	  "line, in no particular order.  Bytes outside printable ASCII,\n"           \
	  "and \\ and ', are written as C escapes (\\n, \\t, \\xHH, \\\\,\n"          \
	  "\\'), as bash's $'...' reads them back.  With --json, one\n"               \
	  "{\"key\"} object per line (\"key_b64\" for a key that is not\n"            \
	  "UTF-8, as with get).  The listing streams, one segment at a time:\n"       \
	  "a key present all along is listed exactly once, one set or\n"              \
	  "removed meanwhile once or not at all, and a slow reader of the\n"          \
	  "output holds no lock.  Exits 0 even when nothing matches.  Needs\n"        \
	  "the mapping (no --no-map).")                                               \
	X(dump, "[PREFIX]", 0, 1, OPT_BIT(JSON),                                      \
	  "the keys with their size, flags and TTL",                                  \
	  "As keys, with each key's value size in bytes, flags and seconds\n"         \
	  "left (\"none\": never expires) in columns before it, after a\n"            \
	  "header line.  With --json, one object per line: {\"key\",\n"               \
	  "\"bytes\", \"flags\", \"ttl\", \"expire_at\"}, ttl and expire_at\n"        \
	  "(unix seconds) null for no expiry.")                                       \
	X(check, "", 0, 0, OPT_BIT(REPAIR) | OPT_BIT(JSON),                           \
	  "the daemon's integrity walk over every segment",                           \
	  "Asks the daemon to check the region header and every segment's\n"          \
	  "structure and prints how many were checked, found bad and\n"               \
	  "repaired, then what was found first.  --repair rewrites a\n"               \
	  "damaged header from its intact copy and resets damaged\n"                  \
	  "segments.  Exits 1 if any was bad, even when --repair mended\n"            \
	  "it.  With --json:\n"                                                       \
	  "{\"segments\", \"bad\", \"repaired\"}.")                                   \
	X(clients, "", 0, 0, OPT_BIT(JSON), "the connected processes",                \
	  "Lists the daemon's connections: client id, pid, uid and since\n"           \
	  "when (local time); this cachectl is marked.  With --json, an\n"            \
	  "array of {\"id\", \"pid\", \"uid\", \"gid\", \"since\" (unix\n"            \
	  "seconds), \"self\"}.")                                                     \
	X(watch, "", 0, 0, OPT_BIT(INTERVAL) | OPT_BIT(COUNT) | OPT_BIT(JSON),        \
	  "a live view of ops/s, hit rate and fill",                                  \
	  "Refreshes every interval: gets/s, sets/s and evictions/s over the\n"       \
	  "last interval, the hit rate over it, entries and fill.  On a\n"            \
	  "terminal the screen is redrawn; otherwise one line per refresh\n"          \
	  "(after a header), and with --json one object per line.  The\n"             \
	  "first refresh has no rates yet (\"-\", null).  While the daemon\n"         \
	  "does not answer, no figures are shown: one line on stderr says\n"          \
	  "it is unreachable, another when it answers again, and the\n"               \
	  "figures resume (without rates for the first refresh).  Exits 3\n"          \
	  "if it was unreachable at the last of --count refreshes.")                  \
	X(save, "FILE", 1, 1, OPT_BIT(JSON),                                          \
	  "have the daemon write a snapshot to FILE",                                 \
	  "Asks the daemon to write a snapshot of the cache to FILE (a\n"             \
	  "relative FILE is taken from the current directory) and prints\n"           \
	  "how many entries it wrote.  With --json: {\"file\", \"entries\"}\n"        \
	  "(\"file_b64\" for a name that is not UTF-8, as with get).")                \
	X(load, "FILE", 1, 1, OPT_BIT(PARTIAL) | OPT_BIT(JSON),                       \
	  "have the daemon load a snapshot from FILE",                                \
	  "Asks the daemon to load the snapshot FILE (a relative FILE is\n"           \
	  "taken from the current directory) and prints how many entries\n"           \
	  "it loaded.  The whole file is verified before the first entry\n"           \
	  "is stored (a damaged file loads nothing), so it is read twice;\n"          \
	  "--partial reads it once, storing each block as it is verified,\n"          \
	  "and on damage keeps the blocks before it.  With --json:\n"                 \
	  "{\"file\", \"entries\"}.")                                                 \
	X(ns, "list | add PREFIX | flush PREFIX | del PREFIX", 1, 2,                  \
	  OPT_BIT(JSON), "namespaces: drop every key under a prefix at once",         \
	  "A namespace is a key prefix registered with the daemon, such as\n"         \
	  "\"user:42:\".  `ns flush PREFIX` drops every key that starts\n"            \
	  "with it at once, however many there are: no process reads them\n"          \
	  "from then on (their room is reclaimed as reads and writes meet\n"          \
	  "them), and keys written after the flush live.  `ns add` and\n"             \
	  "`ns del` register and unregister a prefix (1 to 52 bytes; up to\n"         \
	  "128 in a region, unregistered ones included; a key under several\n"        \
	  "is dropped by a flush of any); `ns del` drops the keys as a\n"             \
	  "flush does.  `ns list`\n"                                                  \
	  "prints each registered prefix with its table slot and mark (the\n"         \
	  "region's flush count at its last flush, 0 for never); with\n"              \
	  "--json, an array of {\"prefix\", \"mark\", \"slot\"}\n"                    \
	  "(\"prefix_b64\" for a prefix that is not UTF-8, as with get).\n"           \
	  "Exits 1 when PREFIX is not registered (flush, del).")                      \
	X(ping, "", 0, 0, 0, "a round trip to the daemon",                            \
	  "Sends the daemon a request and prints the round-trip time.")               \
	X(shutdown, "", 0, 0, 0, "stop the daemon",                                   \
	  "Asks the daemon to stop (only its user or root may).  The\n"               \
	  "region is kept for a warm restart unless it runs with\n"                   \
	  "--unlink-on-exit.")                                                        \
	X(help, "[COMMAND]", 0, 1, 0, "this help, or a command's",                    \
	  "Prints the general help, or COMMAND's.")

struct ctl_cmd {
	const char *name;
	ctl_handler *run;
	const char *args;
	int min_args, max_args;
	unsigned opts;
	const char *summary;
	const char *details;
};

#define DECL_X(name, args, min, max, opts, summary, details)                   \
	static ctl_handler cmd_##name;
CTL_COMMANDS(DECL_X)
#undef DECL_X

static const struct ctl_cmd ctl_cmds[] = {
#define CMD_X(name, args, min, max, opts, summary, details)                    \
	{ #name, cmd_##name, args, min, max, opts, summary, details },
	CTL_COMMANDS(CMD_X)
#undef CMD_X
};

#define CTL_NCMDS (sizeof(ctl_cmds) / sizeof(ctl_cmds[0]))

/* One invocation: what was asked, and the handle once connected. */
struct ctl {
	const struct ctl_cmd *cmd; /* NULL: none given */
	char **args;		   /* the command's arguments */
	int nargs;
	unsigned seen;	    /* OPT_BIT() of every option given */
	const char *socket; /* --socket, or NULL */
	int json, repair, partial;
	int no_map; /* --no-map: sock instead of c */
	int sock;   /* -1 until ctl_connect() with --no-map */
	uint32_t ttl;
	uint32_t flags;	   /* --flags */
	uint64_t init;	   /* --init (when seen) */
	uint32_t init_ttl; /* --init-ttl */
	uint64_t interval_ns;
	uint64_t count; /* 0: watch until interrupted */
	shmc *c;	/* NULL until ctl_connect() */
};

/* ------------------------------------------------------------------------
 * Helpers: escaping, numbers, messages
 * ------------------------------------------------------------------------ */

/* Copies s[0..n) into buf (cap > 4 bytes) for a one-line message: bytes
 * outside printable ASCII become C escapes; too long, it ends in "...".
 * Returns buf. */
static const char *esc(const void *s, size_t n, char *buf, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = s;
	size_t o = 0, i;

	for (i = 0; i < n; i++) {
		unsigned char ch = p[i];
		char tmp[4];
		size_t len = 0;

		if (ch == '\\' || ch == '\'') {
			tmp[len++] = '\\';
			tmp[len++] = (char)ch;
		} else if (ch >= 0x20 && ch < 0x7f) {
			tmp[len++] = (char)ch;
		} else if (ch == '\n' || ch == '\t') {
			tmp[len++] = '\\';
			tmp[len++] = ch == '\n' ? 'n' : 't';
		} else {
			tmp[len++] = '\\';
			tmp[len++] = 'x';
			tmp[len++] = hex[ch >> 4];
			tmp[len++] = hex[ch & 15];
		}
		if (o + len + 4 > cap) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(buf + o, tmp, len);
		o += len;
	}
	buf[o] = '\0';
	return buf;
}

#define ESC_MAX 160
#define ESC(s, buf) esc((s), strlen(s), (buf), sizeof(buf))

/* Parses seconds written DIGITS[.DIGITS] (at most 9 decimals) into
 * nanoseconds in [min_ns, max_ns].  Returns 0, -EINVAL or -ERANGE. */
static int parse_seconds(const char *s, uint64_t min_ns, uint64_t max_ns,
			 uint64_t *out)
{
	uint64_t sec = 0, frac = 0, scale = 1000000000;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		sec = sec * 10 + (uint64_t)(*p - '0');
		if (sec > max_ns / 1000000000 + 1)
			return -ERANGE;
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		for (; *p >= '0' && *p <= '9'; p++) {
			if (scale == 1)
				return -EINVAL; /* below a nanosecond */
			scale /= 10;
			frac += (uint64_t)(*p - '0') * scale;
		}
	}
	if (*p != '\0')
		return -EINVAL;
	if (sec * 1000000000 + frac < min_ns ||
	    sec * 1000000000 + frac > max_ns)
		return -ERANGE;
	*out = sec * 1000000000 + frac;
	return 0;
}

/* Prints "cachectl: [CMD: ]MESSAGE (try 'cachectl [CMD ]--help')" as one
 * line on stderr and returns CTL_EXIT_USAGE. */
__attribute__((format(printf, 2, 3))) static int
usage(const struct ctl_cmd *cmd, const char *fmt, ...)
{
	va_list ap;

	fputs(CTL_PROG ": ", stderr);
	if (cmd)
		fprintf(stderr, "%s: ", cmd->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (try '" CTL_PROG " %s%s--help')\n",
		cmd ? cmd->name : "", cmd ? " " : "");
	return CTL_EXIT_USAGE;
}

/* Prints "cachectl: MESSAGE" on stderr and returns CTL_EXIT_FAILED. */
__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs(CTL_PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return CTL_EXIT_FAILED;
}

/* Where the daemon is looked for, for messages.  The library picks the
 * default path itself and shmc.h does not say which it is. */
static const char *socket_name(const struct ctl *x)
{
	const char *env = getenv("SHMC_SOCKET");

	if (x->socket)
		return x->socket;
	if (env && *env)
		return env;
	return "its default socket";
}

/* The errors of reaching the daemon whose shmc_strerror() names the
 * socket (shmc.h) and says what to do. */
static int names_the_socket(int err)
{
	return err == SHMC_ENODAEMON || err == -ECONNREFUSED ||
	       err == SHMC_EUNTRUSTED || err == -EACCES;
}

/* Says why the daemon cannot be reached: words explains err (from
 * shmc_strerror(), or sock.h's for --no-map). */
static int unreachable(const struct ctl *x, int err, const char *words)
{
	char b[ESC_MAX];

	if (names_the_socket(err))
		fprintf(stderr, CTL_PROG ": cannot reach shmcached: %s\n",
			words);
	else
		fprintf(stderr, CTL_PROG ": cannot reach shmcached at %s: %s\n",
			ESC(socket_name(x), b), words);
	return CTL_EXIT_UNREACHABLE;
}

/* ------------------------------------------------------------------------
 * --no-map: the data commands as requests over the socket
 * ------------------------------------------------------------------------ */

/* A process that cannot map the region (another user or namespace without
 * the region's /dev/shm file) can still reach the daemon's socket: with
 * --no-map, get, set, del, ttl, touch, flush and stats are the GET, SET,
 * DEL, TTL, TOUCH, FLUSH and STATS requests of docs/PROTOCOL.md.  No HELLO
 * is sent (it would hand out the region), so the connection takes no client
 * id and holds no lock. */

/* The daemon's words for the last refused request (printable or empty). */
static char remote_msg[256];

static int io_all(int fd, void *buf, size_t n, int out)
{
	uint8_t *p = buf;

	while (n > 0) {
		ssize_t k = out ? send(fd, p, n, MSG_NOSIGNAL) : read(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) /* EAGAIN: SOCK_IO_TIMEOUT_S passed, as libshmc */
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (k == 0)
			return -ECONNRESET;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Connects x->sock as shmc_open() would (sock.h: --socket, $SHMC_SOCKET,
 * or this user's default socket, then the system one; only to a trusted
 * peer; with I/O timeouts).  Returns 0 or the exit code after saying why
 * not, in the words the mapped path uses. */
static int remote_connect(struct ctl *x)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct sock_err why = { 0 };

	x->sock = sock_open(x->socket, path, sizeof(path), &why);
	if (x->sock >= 0)
		return 0;
	return unreachable(x, x->sock,
			   why.err == x->sock ? why.msg
					      : shmc_strerror(x->sock));
}

/* io_all() reading from the struct ctl's socket: a proto_read_fn. */
static int remote_read(void *ctx, void *buf, size_t n)
{
	return io_all(((struct ctl *)ctx)->sock, buf, n, 0);
}

/* Keeps the daemon's words, escaped, in remote_msg: a proto_errmsg_fn. */
static void remote_errmsg(void *ctx, const void *msg, size_t n)
{
	(void)ctx;
	esc(msg, n, remote_msg, sizeof(remote_msg));
}

/* Sends one request and reads its reply: 0 with *reply (malloc'd, freed
 * by the caller) and *rlen, or the daemon's -errno (its words in
 * remote_msg), or -EIO for a reply that is not one. */
static int remote_call(struct ctl *x, uint16_t type, const void *body,
		       size_t blen, uint8_t **reply, size_t *rlen)
{
	uint8_t hdr[PROTO_HDR_SIZE];
	struct proto_hdr h = { .len = (uint32_t)blen,
			       .type = type,
			       .version = PROTO_VERSION,
			       .id = 1 };
	int rc;

	*reply = NULL;
	*rlen = 0;
	proto_hdr_put(hdr, &h);
	if ((rc = io_all(x->sock, hdr, sizeof(hdr), 1)) ||
	    (rc = io_all(x->sock, (void *)body, blen, 1)) ||
	    (rc = io_all(x->sock, hdr, sizeof(hdr), 0)))
		return rc;
	return proto_reply_read(hdr, type, remote_read, remote_errmsg, x, &h,
				reply, rlen);
}

/* A request whose reply is empty.  Returns 0 or a negative errno. */
static int remote_simple(struct ctl *x, uint16_t type, const void *body,
			 size_t blen)
{
	uint8_t *reply;
	size_t rlen;
	int rc = remote_call(x, type, body, blen, &reply, &rlen);

	free(reply);
	return rc == 0 && rlen ? -EIO : rc;
}

/* A request whose body is a key, then a value when val is not NULL, then
 * a u32 ttl when has_ttl.  reply NULL: the reply must be empty. */
static int remote_key(struct ctl *x, uint16_t type, const char *key,
		      const void *val, size_t vlen, int has_ttl, uint32_t ttl,
		      uint8_t **reply, size_t *rlen)
{
	size_t klen = strlen(key), cap = 12 + klen + vlen;
	uint8_t *body = malloc(cap);
	struct proto_w w;
	int rc;

	if (!body)
		return -ENOMEM;
	proto_w_init(&w, body, cap);
	proto_put_bytes(&w, key, klen);
	if (val)
		proto_put_bytes(&w, val, vlen);
	if (has_ttl)
		proto_put_u32(&w, ttl);
	if (reply)
		rc = remote_call(x, type, body, w.len, reply, rlen);
	else
		rc = remote_simple(x, type, body, w.len);
	free(body);
	return rc;
}

/* GET (val not NULL: *val malloc'd, *num the expiry) or TTL (*num the
 * seconds left).  Returns 0 or a negative errno. */
static int remote_get(struct ctl *x, uint16_t type, const char *key,
		      uint32_t *num, char **val, size_t *vlen)
{
	uint8_t *reply;
	size_t rlen, n = 0;
	const void *v = NULL;
	struct proto_r r;
	int rc = remote_key(x, type, key, NULL, 0, 0, 0, &reply, &rlen);

	if (rc)
		return rc;
	proto_r_init(&r, reply, rlen);
	*num = proto_get_u32(&r);
	if (val)
		n = proto_get_bytes(&r, &v);
	rc = proto_r_end(&r) ? -EIO : 0;
	if (rc == 0 && val && (*val = malloc(n ? n : 1)) == NULL)
		rc = -ENOMEM;
	if (rc == 0 && val) {
		memcpy(*val, v, n);
		*vlen = n;
	}
	free(reply);
	return rc;
}

/* STATS: the totals (one row), and the number of segments from the
 * per-segment form's row count.  The columns are matched by name to the
 * fields of struct shmc_stats (they are the same counters and gauges). */
static int remote_stats_rows(struct ctl *x, uint8_t per_segment,
			     struct shmc_stats *s, uint32_t *nrows)
{
	uint8_t *reply;
	size_t rlen;
	struct proto_r r;
	int rc = remote_call(x, PROTO_T_STATS, &per_segment, 1, &reply, &rlen);

	if (rc)
		return rc;
	proto_r_init(&r, reply, rlen);
	uint32_t ncols = proto_get_u32(&r);
	size_t *off = calloc(ncols ? ncols : 1, sizeof(*off));
	if (!off) {
		free(reply);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < ncols && !r.err; i++) {
		const void *name;
		size_t n = proto_get_bytes(&r, &name);
		off[i] = SIZE_MAX;
		for (size_t f = 0; f < CTL_NSTATS; f++)
			if (strlen(ctl_stat_fields[f].name) == n &&
			    memcmp(ctl_stat_fields[f].name, name, n) == 0)
				off[i] = ctl_stat_fields[f].off;
	}
	*nrows = proto_get_u32(&r);
	memset(s, 0, sizeof(*s));
	/* Each row is ncols u64s of the reply: more rows than fit is a lie
	 * (and with no columns would only spin). */
	if (ncols == 0 || *nrows > rlen / 8 / ncols)
		r.err = 1;
	for (uint32_t row = 0; row < *nrows && !r.err; row++)
		for (uint32_t i = 0; i < ncols; i++) {
			uint64_t v = proto_get_u64(&r);
			if (off[i] != SIZE_MAX)
				*(uint64_t *)((char *)s + off[i]) += v;
		}
	rc = proto_r_end(&r) ? -EIO : 0;
	free(off);
	free(reply);
	return rc;
}

static int remote_stats(struct ctl *x, struct shmc_stats *s)
{
	struct shmc_stats per_seg;
	uint32_t rows, nseg;
	int rc = remote_stats_rows(x, 0, s, &rows);

	if (rc == 0)
		rc = remote_stats_rows(x, 1, &per_seg, &nseg);
	if (rc == 0)
		s->segments = nseg;
	return rc;
}


/* Opens the handle (with --no-map, the connection).  Returns 0 or the
 * exit code after saying why not. */
static int ctl_connect(struct ctl *x)
{
	if (x->no_map)
		return remote_connect(x);
	int err = shmc_open(&x->c, x->socket);

	return err ? unreachable(x, err, shmc_strerror(err)) : 0;
}

/* The exit code for a failed data operation on key: a missing key is 1,
 * anything else 4. */
static int data_error(const char *what, const char *key, int err)
{
	char b[ESC_MAX];

	if (err == -ENOENT) {
		fprintf(stderr, CTL_PROG ": %s: not found\n", ESC(key, b));
		return CTL_EXIT_NO;
	}
	if (remote_msg[0]) /* --no-map: the daemon's words */
		return fail("%s '%s': %s", what, ESC(key, b), remote_msg);
	return fail("%s '%s': %s", what, ESC(key, b), shmc_strerror(err));
}

/* A request the daemon refused: its own words when it gave some (they name
 * the file and offset of a bad snapshot, say), else the error's.
 * shmc_errmsg() is printable ASCII already. */
static int daemon_error(const char *what, int err, const char *msg)
{
	if (msg && msg[0])
		return fail("%s: %s", what, msg);
	return fail("%s: %s", what, shmc_strerror(err));
}

/* The exit code for a failed control request: the daemon gone, or a
 * reconnection refused, is 3 (shmc.h), anything else 4. */
static int control_error(const struct ctl *x, const char *what, int err)
{
	if (names_the_socket(err) || err == -EPIPE || err == -ECONNRESET)
		return unreachable(x, err, shmc_strerror(err));
	return daemon_error(what, err, shmc_errmsg());
}

/* Sets *out to 100 * a / b and returns 1; returns 0 (no rate) when b is
 * 0. */
static int percent(uint64_t a, uint64_t b, double *out)
{
	if (b == 0)
		return 0;
	*out = 100.0 * (double)a / (double)b;
	return 1;
}

static uint64_t stat_value(const struct shmc_stats *s,
			   const struct ctl_stat_field *f)
{
	uint64_t v;

	memcpy(&v, (const char *)s + f->off, sizeof(v));
	return v;
}

static uint64_t delta(uint64_t now, uint64_t before)
{
	return now >= before ? now - before : 0; /* a reset region */
}

/* "12.3 KiB" for n bytes into buf. */
static const char *human_bytes(uint64_t n, char *buf, size_t cap)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	unsigned u = 0;

	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, cap, "%" PRIu64 " B", n);
	else
		snprintf(buf, cap, "%.1f %s", v, units[u]);
	return buf;
}

/* Local time of unix seconds t, "YYYY-MM-DD HH:MM:SS" (or only the time
 * with time_only), into buf. */
static const char *local_time(uint64_t t, int time_only, char *buf, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!localtime_r(&tt, &tm) ||
	    !strftime(buf, cap, time_only ? "%H:%M:%S" : "%Y-%m-%d %H:%M:%S",
		      &tm))
		snprintf(buf, cap, "%" PRIu64, t);
	return buf;
}

/* Reads all of fd into a malloc'ed *out (*n bytes), failing with -EFBIG
 * once it holds more than max bytes.  Returns 0 or a negative errno. */
static int read_all(int fd, size_t max, char **out, size_t *n)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);

	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t r;

		if (len == cap) {
			char *nb = cap > SIZE_MAX / 2 ? NULL
						      : realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
			cap *= 2;
		}
		r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int err = -errno;

			free(buf);
			return err;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > max) {
			free(buf);
			return -EFBIG;
		}
	}
	*out = buf;
	*n = len;
	return 0;
}

/* ------------------------------------------------------------------------
 * JSON output (to stdout)
 * ------------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at p[0..n) (n > 0), or 0 if p[0]
 * does not start one (overlong forms and surrogates are not valid). */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (p[0] < 0x80)
		return 1;
	if (p[0] < 0xc2)
		return 0;
	if (p[0] < 0xe0) {
		len = 2;
	} else if (p[0] < 0xf0) {
		len = 3;
		if (p[0] == 0xe0)
			lo = 0xa0;
		else if (p[0] == 0xed)
			hi = 0x9f;
	} else if (p[0] < 0xf5) {
		len = 4;
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/* 1 if s[0..n) is valid UTF-8 throughout. */
static int utf8_valid(const void *s, size_t n)
{
	const unsigned char *p = s;
	size_t i = 0, len;

	for (; i < n; i += len)
		if ((len = utf8_len(p + i, n - i)) == 0)
			return 0;
	return 1;
}

/* Writes s[0..n), valid UTF-8 (see json_member), as a JSON string: '"',
 * '\' and control characters escaped, the rest as it is.  A byte that is
 * not valid UTF-8 all the same becomes U+FFFD, so that the output is
 * always valid JSON. */
static void json_str(const void *s, size_t n)
{
	const unsigned char *p = s;
	size_t i = 0;

	putchar('"');
	while (i < n) {
		size_t len = utf8_len(p + i, n - i);
		unsigned char ch = p[i];

		if (len == 0) {
			fputs("\\ufffd", stdout);
			i++;
			continue;
		}
		if (len > 1) {
			fwrite(p + i, 1, len, stdout);
		} else if (ch == '"' || ch == '\\') {
			printf("\\%c", ch);
		} else if (ch == '\n') {
			fputs("\\n", stdout);
		} else if (ch == '\t') {
			fputs("\\t", stdout);
		} else if (ch == '\r') {
			fputs("\\r", stdout);
		} else if (ch < 0x20) {
			printf("\\u%04x", ch);
		} else {
			putchar(ch);
		}
		i += len;
	}
	putchar('"');
}

static void json_key(const char *k)
{
	json_str(k, strlen(k));
	putchar(':');
}

/* Writes the member name: s[0..n) exactly, as "name":"TEXT" when the
 * bytes are valid UTF-8, else as "name_b64":"BASE64" (RFC 4648, padded):
 * strict JSON parsers accept both, and no byte is lost or guessed. */
static void json_member(const char *name, const void *s, size_t n)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "abcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = s;
	size_t i;

	if (utf8_valid(s, n)) {
		json_key(name);
		json_str(s, n);
		return;
	}
	printf("\"%s_b64\":\"", name);
	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 |
			     p[i + 2];
		putchar(b64[v >> 18]);
		putchar(b64[(v >> 12) & 63]);
		putchar(b64[(v >> 6) & 63]);
		putchar(b64[v & 63]);
	}
	if (i < n) {
		uint32_t v = (uint32_t)p[i] << 16 |
			     (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
		putchar(b64[v >> 18]);
		putchar(b64[(v >> 12) & 63]);
		putchar(i + 1 < n ? b64[(v >> 6) & 63] : '=');
		putchar('=');
	}
	putchar('"');
}

/* A number with two decimals, or null when there is none. */
static void json_num_or_null(int valid, double v)
{
	if (valid)
		printf("%.2f", v);
	else
		fputs("null", stdout);
}

/* The members of a stats object (no braces): every field, then hit_rate
 * and fill. */
static void json_stats_members(const struct shmc_stats *s)
{
	double hr = 0, fill = 0;
	int has_hr = percent(s->hits, s->hits + s->misses, &hr);
	int has_fill = percent(s->bytes_used, s->bytes_total, &fill);
	size_t i;

	for (i = 0; i < CTL_NSTATS; i++) {
		json_key(ctl_stat_fields[i].name);
		printf("%" PRIu64 ",", stat_value(s, &ctl_stat_fields[i]));
	}
	json_key("hit_rate");
	json_num_or_null(has_hr, hr);
	putchar(',');
	json_key("fill");
	json_num_or_null(has_fill, fill);
}

/* The near cache's tracking of Redis (NEARCACHE, docs/NEARCACHE.md), as
 * the daemon reports it. */
struct near_stats {
	char state[32];
	uint32_t n;
	struct {
		char name[64];
		uint64_t value;
		char desc[128];
	} v[32];
	char last_error[256];
	uint64_t last_error_at;
	uint32_t nprefix; /* the tracked prefixes (--redis-prefix) */
	char prefix[PROTO_NEAR_PREFIXES_MAX][SHMC_NS_PREFIX_MAX + 1];
};

/* Asks the daemon over its socket (a connection of its own, without
 * HELLO, even when the region is mapped).  Returns 0, -EOPNOTSUPP from a
 * daemon older than the request, or another negative errno. */
static int remote_nearcache(struct ctl *x, struct near_stats *ns)
{
	uint8_t *reply;
	size_t rlen;
	struct proto_r r;
	int rc;

	if (x->sock < 0) {
		char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
		struct sock_err why = { 0 };

		x->sock = sock_open(x->socket, path, sizeof(path), &why);
		if (x->sock < 0)
			return x->sock;
	}
	rc = remote_call(x, PROTO_T_NEARCACHE, NULL, 0, &reply, &rlen);
	if (rc)
		return rc;
	memset(ns, 0, sizeof(*ns));
	proto_r_init(&r, reply, rlen);
	proto_get_str(&r, ns->state, sizeof(ns->state));
	ns->n = proto_get_u32(&r);
	if (ns->n > sizeof(ns->v) / sizeof(ns->v[0]))
		r.err = -EBADMSG;
	for (uint32_t i = 0; i < ns->n && !r.err; i++) {
		proto_get_str(&r, ns->v[i].name, sizeof(ns->v[i].name));
		ns->v[i].value = proto_get_u64(&r);
		proto_get_str(&r, ns->v[i].desc, sizeof(ns->v[i].desc));
	}
	proto_get_str(&r, ns->last_error, sizeof(ns->last_error));
	ns->last_error_at = proto_get_u64(&r);
	ns->nprefix = proto_get_u32(&r);
	if (ns->nprefix > PROTO_NEAR_PREFIXES_MAX)
		r.err = -EBADMSG;
	for (uint32_t i = 0; i < ns->nprefix && !r.err; i++)
		proto_get_str(&r, ns->prefix[i], sizeof(ns->prefix[i]));
	rc = proto_r_end(&r) ? -EIO : 0;
	free(reply);
	return rc;
}

/* The near cache's rows of `stats` (text). */
static void print_nearcache(const struct near_stats *ns)
{
	char name[96], b[ESC_MAX], tb[64];

	printf("%-20s %8s  %-10s %s\n", "redis_state", ns->state, "",
	       "tracking of Redis: connecting, up or down");
	printf("%-20s %8" PRIu32 "  %-10s %s", "redis_prefixes", ns->nprefix,
	       "", "prefixes kept coherent:");
	for (uint32_t i = 0; i < ns->nprefix; i++)
		printf(" '%s'", ESC(ns->prefix[i], b));
	putchar('\n');
	for (uint32_t i = 0; i < ns->n; i++) {
		snprintf(name, sizeof(name), "redis_%s", ns->v[i].name);
		printf("%-20s %8" PRIu64 "  %-10s %s\n", name, ns->v[i].value,
		       "", ESC(ns->v[i].desc, b));
	}
	if (ns->last_error_at)
		printf("%-20s %8s  %-10s %s (at %s)\n", "redis_error", "-", "",
		       ESC(ns->last_error, b),
		       local_time(ns->last_error_at, 0, tb, sizeof(tb)));
}

/* The "redis" member of `stats --json` (after a comma). */
static void json_nearcache(const struct near_stats *ns)
{
	json_key("redis");
	putchar('{');
	json_member("state", ns->state, strlen(ns->state));
	putchar(',');
	json_key("prefixes");
	putchar('[');
	for (uint32_t i = 0; i < ns->nprefix; i++) {
		if (i)
			putchar(',');
		json_str(ns->prefix[i], strlen(ns->prefix[i]));
	}
	putchar(']');
	for (uint32_t i = 0; i < ns->n; i++) {
		putchar(',');
		json_key(ns->v[i].name);
		printf("%" PRIu64, ns->v[i].value);
	}
	putchar(',');
	if (ns->last_error_at) {
		json_member("last_error", ns->last_error,
			    strlen(ns->last_error));
		putchar(',');
		json_key("last_error_at");
		printf("%" PRIu64, ns->last_error_at);
	} else {
		json_key("last_error");
		fputs("null,", stdout);
		json_key("last_error_at");
		fputs("null", stdout);
	}
	putchar('}');
}

/* ------------------------------------------------------------------------
 * Commands
 * ------------------------------------------------------------------------ */

static int cmd_stats(struct ctl *x, int argc, char **argv)
{
	struct shmc_stats s;
	char hb[32];
	double v = 0;
	size_t i;
	int rc, err;

	(void)argc;
	(void)argv;
	if ((rc = ctl_connect(x)))
		return rc;
	err = x->no_map ? remote_stats(x, &s) : shmc_stat(x->c, &s);
	if (err)
		return fail("stats: %s",
			    remote_msg[0] ? remote_msg : shmc_strerror(err));
	/* The near cache's part, when the daemon follows Redis (a daemon
	 * without --redis says "off", one older than NEARCACHE refuses it:
	 * neither adds anything). */
	struct near_stats ns;
	int nerr = remote_nearcache(x, &ns);
	bool near = nerr == 0 && strcmp(ns.state, "off") != 0;

	remote_msg[0] = '\0';
	if (nerr && nerr != -EOPNOTSUPP)
		fprintf(stderr,
			CTL_PROG ": stats: the near cache's state is "
				 "unknown: %s\n",
			shmc_strerror(nerr));
	if (x->json) {
		putchar('{');
		json_stats_members(&s);
		if (near) {
			putchar(',');
			json_nearcache(&ns);
		}
		puts("}");
		return CTL_EXIT_OK;
	}
	for (i = 0; i < CTL_NSTATS; i++) {
		const struct ctl_stat_field *f = &ctl_stat_fields[i];
		uint64_t n = stat_value(&s, f);

		printf("%-12s %16" PRIu64 "  %-10s %s\n", f->name, n,
		       f->unit == UNIT_BYTES ? human_bytes(n, hb, sizeof(hb))
					     : "",
		       f->desc);
	}
	if (percent(s.hits, s.hits + s.misses, &v))
		printf("%-12s %15.2f%%  %-10s %s\n", "hit_rate", v, "",
		       "hits / (hits + misses)");
	else
		printf("%-12s %16s  %-10s %s\n", "hit_rate", "-", "",
		       "hits / (hits + misses): no gets yet");
	if (percent(s.bytes_used, s.bytes_total, &v))
		printf("%-12s %15.2f%%  %-10s %s\n", "fill", v, "",
		       "bytes_used / bytes_total");
	if (near)
		print_nearcache(&ns);
	return CTL_EXIT_OK;
}

static int cmd_segments(struct ctl *x, int argc, char **argv)
{
	uint32_t i, n;
	int rc;

	(void)argc;
	(void)argv;
	if ((rc = ctl_connect(x)))
		return rc;
	n = shmc_segments(x->c);
	if (x->json)
		puts("[");
	else
		printf("%7s %10s %12s %12s %7s %12s %12s %8s\n", "segment",
		       "entries", "bytes_used", "bytes_total", "fill", "hits",
		       "misses", "hit rate");
	for (i = 0; i < n; i++) {
		struct shmc_stats s;
		double fill = 0, hr = 0;
		int err = shmc_seg_stat(x->c, i, &s);
		int has_fill, has_hr;

		if (err)
			return fail("segments: segment %" PRIu32 ": %s", i,
				    shmc_strerror(err));
		if (x->json) {
			printf("{\"segment\":%" PRIu32 ",", i);
			json_stats_members(&s);
			puts(i + 1 < n ? "}," : "}");
			continue;
		}
		has_fill = percent(s.bytes_used, s.bytes_total, &fill);
		has_hr = percent(s.hits, s.hits + s.misses, &hr);
		printf("%7" PRIu32 " %10" PRIu64 " %12" PRIu64 " %12" PRIu64, i,
		       s.entries, s.bytes_used, s.bytes_total);
		if (has_fill)
			printf(" %6.1f%%", fill);
		else
			printf(" %7s", "-");
		printf(" %12" PRIu64 " %12" PRIu64, s.hits, s.misses);
		if (has_hr)
			printf(" %7.1f%%\n", hr);
		else
			printf(" %8s\n", "-");
	}
	if (x->json)
		puts("]");
	else
		puts("(hits, misses: gets that took the segment's lock; "
		     "`cachectl stats` counts every get)");
	return CTL_EXIT_OK;
}

/* get on the mapping: *buf (malloc'd) holds the value, *it its length,
 * flags, version and expiry.  Returns 0 or a negative errno. */
static int mapped_get(struct ctl *x, const char *key, char **buf,
		      struct shmc_item *it)
{
	size_t klen = strlen(key), cap, vlen = 0;
	int err, tries;

	/* Learn the size without counting a get (peek changes nothing),
	 * then get it; the value may change in between, hence the loop. */
	err = shmc_peek(x->c, key, klen, NULL, 0, &vlen);
	if (err && err != -ENOBUFS && err != -ENOENT)
		return err;
	it->vlen = vlen;
	for (tries = 0;; tries++) {
		cap = it->vlen ? it->vlen : 1;
		free(*buf);
		*buf = malloc(cap);
		if (!*buf)
			return -ENOMEM;
		err = shmc_get_item(x->c, key, klen, *buf, cap, it);
		if (err != -ENOBUFS || tries == 8)
			break;
	}
	return err;
}

/* get's JSON object of key (value NULL: a missing key), with the flags
 * and the version when meta is not NULL (gets), without a newline. */
static void json_item(const char *key, size_t klen, const char *val,
		      size_t vlen, uint32_t expire_at,
		      const struct shmc_item *meta)
{
	putchar('{');
	json_member("key", key, klen);
	putchar(',');
	if (val)
		json_member("value", val, vlen);
	else
		fputs("\"value\":null", stdout);
	printf(",\"bytes\":%zu,", vlen);
	if (meta)
		printf("\"flags\":%" PRIu32 ",\"cas\":\"%" PRIu64 "\",",
		       meta->flags, meta->cas);
	json_key("expire_at");
	if (expire_at)
		printf("%" PRIu32 "}", expire_at);
	else
		fputs("null}", stdout);
}

/* Prints what get and gets print: with meta (gets), the flags and the
 * version too. */
static void show_value(const struct ctl *x, const char *key, const char *buf,
		       const struct shmc_item *it, int meta)
{
	if (x->json) {
		json_item(key, strlen(key), buf, it->vlen, it->expire_at,
			  meta ? it : NULL);
		putchar('\n');
		return;
	}
	if (meta) {
		printf("flags %" PRIu32 " cas %" PRIu64 " bytes %zu expire_at ",
		       it->flags, it->cas, it->vlen);
		if (it->expire_at)
			printf("%" PRIu32 "\n", it->expire_at);
		else
			puts("none");
	}
	fwrite(buf, 1, it->vlen, stdout);
	if (it->vlen && buf[it->vlen - 1] != '\n' && isatty(STDOUT_FILENO))
		putchar('\n');
}

static int cmd_get(struct ctl *x, int argc, char **argv)
{
	const char *key = argv[0];
	struct shmc_item it = { 0 };
	char *buf = NULL;
	int rc, err;

	(void)argc;
	if ((rc = ctl_connect(x)))
		return rc;
	if (x->no_map)
		err = remote_get(x, PROTO_T_GET, key, &it.expire_at, &buf,
				 &it.vlen);
	else
		err = mapped_get(x, key, &buf, &it);
	if (err) {
		free(buf);
		return data_error("get", key, err);
	}
	show_value(x, key, buf, &it, 0);
	free(buf);
	return CTL_EXIT_OK;
}

/* The commands of the item model have no request in the socket
 * protocol. */
static int needs_map(const struct ctl *x)
{
	return usage(x->cmd,
		     "needs the mapping of the region: with --no-map only get, "
		     "set, del, ttl, touch, flush and stats work");
}

static int cmd_gets(struct ctl *x, int argc, char **argv)
{
	const char *key = argv[0];
	struct shmc_item it = { 0 };
	char *buf = NULL;
	int rc, err;

	(void)argc;
	if (x->no_map)
		return needs_map(x);
	if ((rc = ctl_connect(x)))
		return rc;
	err = mapped_get(x, key, &buf, &it);
	if (err) {
		free(buf);
		return data_error("gets", key, err);
	}
	show_value(x, key, buf, &it, 1);
	free(buf);
	return CTL_EXIT_OK;
}

/* The buffer each key of mget gets first; a longer value is fetched again
 * on its own. */
#define MGET_CAP 4096

/* Keys per shmc_mget() call: the buffers of one group at a time. */
#define MGET_GROUP 64

static int cmd_mget(struct ctl *x, int argc, char **argv)
{
	struct shmc_mkey q[MGET_GROUP];
	struct shmc_mres res[MGET_GROUP];
	char *bufs = malloc((size_t)MGET_GROUP * MGET_CAP), *big = NULL;
	int rc = CTL_EXIT_OK, err;

	for (int i = 0; i < argc; i++) {
		size_t klen = strlen(argv[i]);
		if (klen == 0 || klen > SHMC_KEY_MAX) {
			rc = usage(x->cmd, klen ? "a KEY is longer than 8191 "
						  "bytes (SHMC_KEY_MAX)"
						: "KEY must not be empty");
			goto out;
		}
	}
	if (!bufs) {
		rc = fail("mget: out of memory");
		goto out;
	}
	if ((rc = ctl_connect(x)))
		goto out;
	if (x->json)
		putchar('[');
	for (int at = 0; at < argc; at += MGET_GROUP) {
		int g = argc - at < MGET_GROUP ? argc - at : MGET_GROUP;
		for (int j = 0; j < g; j++)
			q[j] = (struct shmc_mkey){ argv[at + j],
						   strlen(argv[at + j]),
						   bufs + (size_t)j * MGET_CAP,
						   MGET_CAP };
		if ((err = shmc_mget(x->c, (size_t)g, q, res, 0))) {
			rc = data_error("mget", argv[at], err);
			break;
		}
		for (int j = 0; j < g; j++) {
			const char *key = argv[at + j], *val = q[j].buf;
			size_t vlen = res[j].vlen;
			uint32_t expire_at = res[j].expire_at;

			err = res[j].rc;
			if (err == -ENOBUFS) {
				struct shmc_item it = { 0 };
				err = mapped_get(x, key, &big, &it);
				val = big;
				vlen = it.vlen;
				expire_at = it.expire_at;
			}
			if (err) {
				/* Named on stderr; the key is printed as
				 * missing and the others still are. */
				int e = data_error("mget", key, err);
				if (rc == CTL_EXIT_OK || e != CTL_EXIT_NO)
					rc = e;
				val = NULL;
				vlen = 0;
				expire_at = 0;
			}
			if (x->json) {
				if (at + j)
					putchar(',');
				json_item(key, q[j].klen, val, vlen, expire_at,
					  NULL);
			} else if (val) {
				fwrite(val, 1, vlen, stdout);
				putchar('\n');
			} else {
				puts("(not found)");
			}
		}
	}
	if (x->json)
		puts("]");
out:
	free(big);
	free(bufs);
	return rc;
}

/* Why an item is too large, for set's errors. */
#define TOO_BIG_ITEM                                                           \
	"half a segment; the daemon's larger --memory or fewer --segments "    \
	"raise it"
#define TOO_BIG_FRAME                                                          \
	"the socket protocol's frame limit; without --no-map the limit is "    \
	"the cache's largest item"

/* set on the mapping, with --ttl and --flags. */
static int mapped_set(struct ctl *x, const char *key, const void *val,
		      size_t vlen)
{
	struct shmc_store_opts o = { .flags = x->flags, .ttl_s = x->ttl };

	return shmc_set_ex(x->c, key, strlen(key), val, vlen, &o, NULL);
}

static int cmd_set(struct ctl *x, int argc, char **argv)
{
	const char *key = argv[0];
	size_t klen = strlen(key), vlen = 0, max;
	char *val = NULL;
	int rc, err;

	if (x->no_map && (x->seen & OPT_BIT(FLAGS)))
		return usage(x->cmd, "--flags needs the mapping of the region: "
				     "the socket's SET stores no flags");
	/* With --no-map, stdin is read before connecting: the daemon drops a
	 * connection that is silent for its --hello-timeout, and a slow
	 * writer must not make the set fail. */
	if (!x->no_map && (rc = ctl_connect(x)))
		return rc;
	if (argc == 2 && strcmp(argv[1], "-") != 0) {
		if (x->no_map && (rc = ctl_connect(x)))
			return rc;
		err = x->no_map ? remote_key(x, PROTO_T_SET, key, argv[1],
					     strlen(argv[1]), 1, x->ttl, NULL,
					     NULL)
				: mapped_set(x, key, argv[1], strlen(argv[1]));
	} else {
		/* Over the socket, the frame's limit; the daemon refuses
		 * what its largest item cannot hold. */
		size_t most = x->no_map ? PROTO_MAX_PAYLOAD - 12
					: shmc_max_item(x->c);
		max = most > klen ? most - klen : 0;
		err = read_all(STDIN_FILENO, max, &val, &vlen);
		if (err == -EFBIG && x->no_map)
			return fail("set: the value on stdin is too large: key "
				    "+ value may be %zu bytes at most (%s)",
				    most, TOO_BIG_FRAME);
		if (err == -EFBIG)
			return fail("set: the value on stdin is too large: the "
				    "cache's largest item (key + value) is %zu "
				    "bytes (%s)",
				    most, TOO_BIG_ITEM);
		if (err)
			return fail("set: reading stdin: %s", strerror(-err));
		if (x->no_map && (rc = ctl_connect(x))) {
			free(val);
			return rc;
		}
		err = x->no_map ? remote_key(x, PROTO_T_SET, key, val, vlen, 1,
					     x->ttl, NULL, NULL)
				: mapped_set(x, key, val, vlen);
		free(val);
	}
	/* The other -E2BIG is a key over SHMC_KEY_MAX bytes (shmc.h). */
	if (err == -E2BIG && !x->no_map && klen <= SHMC_KEY_MAX) {
		char b[ESC_MAX];
		return fail("set '%s': key + value too large: the cache's "
			    "largest item is %zu bytes (%s)",
			    ESC(key, b), shmc_max_item(x->c), TOO_BIG_ITEM);
	}
	return err ? data_error("set", key, err) : CTL_EXIT_OK;
}

/* The value of a store on the mapping: arg, unless it is NULL or "-",
 * else all of stdin.  *val is malloc'd.  Returns 0 or the exit code after
 * saying why not. */
static int store_value(struct ctl *x, const char *key, const char *arg,
		       char **val, size_t *vlen)
{
	size_t most = shmc_max_item(x->c), klen = strlen(key);
	int err;

	if (arg && strcmp(arg, "-") != 0) {
		*vlen = strlen(arg);
		*val = strdup(arg);
		return *val ? 0 : fail("%s", shmc_strerror(-ENOMEM));
	}
	err = read_all(STDIN_FILENO, most > klen ? most - klen : 0, val, vlen);
	if (err == -EFBIG)
		return fail("%s: the value on stdin is too large: the cache's "
			    "largest item (key + value) is %zu bytes (%s)",
			    x->cmd->name, most, TOO_BIG_ITEM);
	if (err)
		return fail("%s: reading stdin: %s", x->cmd->name,
			    strerror(-err));
	return 0;
}

/* The exit code for a failed store, incr or decr on the mapping: exists
 * or changed 5, not a number 6, else as data_error(). */
static int store_error(const struct ctl *x, const char *key, int err)
{
	const char *what = x->cmd->name;
	char b[ESC_MAX];

	if (err == -EEXIST && strcmp(what, "cas") == 0) {
		fprintf(stderr,
			CTL_PROG ": cas '%s': changed since that version was "
				 "read (read it again with gets)\n",
			ESC(key, b));
		return CTL_EXIT_EXISTS;
	}
	if (err == -EEXIST) {
		fprintf(stderr,
			CTL_PROG ": %s '%s': exists (add stores only a missing "
				 "key)\n",
			what, ESC(key, b));
		return CTL_EXIT_EXISTS;
	}
	if (err == -EDOM) {
		fprintf(stderr,
			CTL_PROG ": %s '%s': not a number (incr and decr count "
				 "a value that is a decimal number below "
				 "2^64)\n",
			what, ESC(key, b));
		return CTL_EXIT_NAN;
	}
	if (err == -E2BIG && strlen(key) <= SHMC_KEY_MAX)
		return fail("%s '%s': key + value too large: the cache's "
			    "largest item is %zu bytes (%s)",
			    what, ESC(key, b), shmc_max_item(x->c),
			    TOO_BIG_ITEM);
	return data_error(what, key, err);
}

/* add, replace, cas (version), append and prepend: arg the value (NULL:
 * stdin). */
static int store_cmd(struct ctl *x, const char *key, const char *arg,
		     uint64_t version)
{
	struct shmc_store_opts o = { .flags = x->flags, .ttl_s = x->ttl };
	const char *name = x->cmd->name;
	size_t klen = strlen(key), vlen = 0;
	char *val = NULL;
	int rc, err;

	if (x->no_map)
		return needs_map(x);
	if ((rc = ctl_connect(x)) ||
	    (rc = store_value(x, key, arg, &val, &vlen)))
		return rc;
	if (strcmp(name, "add") == 0)
		err = shmc_add(x->c, key, klen, val, vlen, &o, NULL);
	else if (strcmp(name, "replace") == 0)
		err = shmc_replace(x->c, key, klen, val, vlen, &o, NULL);
	else if (strcmp(name, "cas") == 0)
		err = shmc_cas(x->c, key, klen, val, vlen, version, &o, NULL);
	else if (strcmp(name, "append") == 0)
		err = shmc_append(x->c, key, klen, val, vlen, NULL);
	else
		err = shmc_prepend(x->c, key, klen, val, vlen, NULL);
	free(val);
	return err ? store_error(x, key, err) : CTL_EXIT_OK;
}

static int cmd_add(struct ctl *x, int argc, char **argv)
{
	return store_cmd(x, argv[0], argc == 2 ? argv[1] : NULL, 0);
}

static int cmd_replace(struct ctl *x, int argc, char **argv)
{
	return store_cmd(x, argv[0], argc == 2 ? argv[1] : NULL, 0);
}

static int cmd_append(struct ctl *x, int argc, char **argv)
{
	return store_cmd(x, argv[0], argc == 2 ? argv[1] : NULL, 0);
}

static int cmd_prepend(struct ctl *x, int argc, char **argv)
{
	return store_cmd(x, argv[0], argc == 2 ? argv[1] : NULL, 0);
}

static int cmd_cas(struct ctl *x, int argc, char **argv)
{
	char why[OPT_WHY_MAX];
	uint64_t version;

	if (opt_uint("VERSION", argv[1], 0, UINT64_MAX, &version, why,
		     sizeof(why)))
		return usage(x->cmd, "%s", why);
	return store_cmd(x, argv[0], argc == 3 ? argv[2] : NULL, version);
}

/* incr and decr: prints the result. */
static int arith_cmd(struct ctl *x, int argc, char **argv, int decr)
{
	const char *key = argv[0];
	size_t klen = strlen(key);
	char why[OPT_WHY_MAX];
	uint64_t delta = 1, v = 0;
	int rc, err;

	if (argc == 2 &&
	    opt_uint("DELTA", argv[1], 0, UINT64_MAX, &delta, why, sizeof(why)))
		return usage(x->cmd, "%s", why);
	if ((x->seen & OPT_BIT(INIT_TTL)) && !(x->seen & OPT_BIT(INIT)))
		return usage(x->cmd, "--init-ttl is the TTL of --init's key: "
				     "give --init N too");
	if (x->no_map)
		return needs_map(x);
	if ((rc = ctl_connect(x)))
		return rc;
	if (!(x->seen & OPT_BIT(INIT)))
		err = decr ? shmc_decr(x->c, key, klen, delta, &v)
			   : shmc_incr(x->c, key, klen, delta, &v);
	else if (decr)
		err = shmc_decr_init(x->c, key, klen, delta, x->init,
				     x->init_ttl, &v);
	else
		err = shmc_incr_init(x->c, key, klen, delta, x->init,
				     x->init_ttl, &v);
	if (err)
		return store_error(x, key, err);
	printf("%" PRIu64 "\n", v);
	return CTL_EXIT_OK;
}

static int cmd_incr(struct ctl *x, int argc, char **argv)
{
	return arith_cmd(x, argc, argv, 0);
}

static int cmd_decr(struct ctl *x, int argc, char **argv)
{
	return arith_cmd(x, argc, argv, 1);
}

static int cmd_del(struct ctl *x, int argc, char **argv)
{
	int rc, err;

	(void)argc;
	if ((rc = ctl_connect(x)))
		return rc;
	err = x->no_map ? remote_key(x, PROTO_T_DEL, argv[0], NULL, 0, 0, 0,
				     NULL, NULL)
			: shmc_del(x->c, argv[0], strlen(argv[0]));
	return err ? data_error("del", argv[0], err) : CTL_EXIT_OK;
}

static int cmd_ttl(struct ctl *x, int argc, char **argv)
{
	uint32_t left = 0;
	int rc, err;

	(void)argc;
	if ((rc = ctl_connect(x)))
		return rc;
	err = x->no_map ? remote_get(x, PROTO_T_TTL, argv[0], &left, NULL, NULL)
			: shmc_ttl(x->c, argv[0], strlen(argv[0]), &left);
	if (err)
		return data_error("ttl", argv[0], err);
	if (x->json) {
		putchar('{');
		json_member("key", argv[0], strlen(argv[0]));
		putchar(',');
		json_key("ttl");
		if (left)
			printf("%" PRIu32 "}\n", left);
		else
			puts("null}");
	} else if (left) {
		printf("%" PRIu32 "\n", left);
	} else {
		puts("none");
	}
	return CTL_EXIT_OK;
}

static int cmd_touch(struct ctl *x, int argc, char **argv)
{
	char why[OPT_WHY_MAX];
	uint64_t ttl;
	int rc, err;

	(void)argc;
	if (opt_uint("TTL", argv[1], 0, UINT32_MAX, &ttl, why, sizeof(why)))
		return usage(x->cmd, "%s", why);
	if ((rc = ctl_connect(x)))
		return rc;
	err = x->no_map ? remote_key(x, PROTO_T_TOUCH, argv[0], NULL, 0, 1,
				     (uint32_t)ttl, NULL, NULL)
			: shmc_touch(x->c, argv[0], strlen(argv[0]),
				     (uint32_t)ttl);
	return err ? data_error("touch", argv[0], err) : CTL_EXIT_OK;
}

static int cmd_flush(struct ctl *x, int argc, char **argv)
{
	int rc, err;

	(void)argc;
	(void)argv;
	if ((rc = ctl_connect(x)))
		return rc;
	err = x->no_map ? remote_simple(x, PROTO_T_FLUSH, NULL, 0)
			: shmc_clear(x->c);
	if (err)
		return fail("flush: %s",
			    remote_msg[0] ? remote_msg : shmc_strerror(err));
	return CTL_EXIT_OK;
}

/* keys and dump: what one listed key prints as. */
struct list_out {
	int json, dump;
	char key[4 * SHMC_KEY_MAX + 8]; /* esc() of the longest key */
};

/* A shmc_scan_fn: prints one key (and its metadata); -EIO once stdout
 * failed. */
static int list_key(const struct shmc_key_info *k, void *arg)
{
	struct list_out *o = arg;
	char ttl[16] = "none";

	if (o->json) {
		putchar('{');
		json_member("key", k->key, k->klen);
		if (o->dump) {
			printf(",\"bytes\":%zu,\"flags\":%" PRIu32 ",", k->vlen,
			       k->flags);
			json_key("ttl");
			if (k->ttl_s)
				printf("%" PRIu32 ",", k->ttl_s);
			else
				fputs("null,", stdout);
			json_key("expire_at");
			if (k->expire_at)
				printf("%" PRIu32, k->expire_at);
			else
				fputs("null", stdout);
		}
		puts("}");
	} else {
		esc(k->key, k->klen, o->key, sizeof(o->key));
		if (o->dump && k->ttl_s)
			snprintf(ttl, sizeof(ttl), "%" PRIu32, k->ttl_s);
		if (o->dump)
			printf("%12zu %10" PRIu32 " %10s  %s\n", k->vlen,
			       k->flags, ttl, o->key);
		else
			puts(o->key);
	}
	return ferror(stdout) ? -EIO : 0;
}

/* Streams the listing: shmc_scan() copies one segment's keys under its
 * lock and list_key() prints them after, so a reader that stops (a pager)
 * blocks only this process. */
static int list_keys(struct ctl *x, int argc, char **argv, int dump)
{
	const char *what = dump ? "dump" : "keys";
	const char *prefix = argc ? argv[0] : "";
	struct list_out *o = malloc(sizeof(*o));
	uint64_t cur = 0;
	int rc, err = 0;

	if (!o)
		return fail("%s: %s", what, shmc_strerror(-ENOMEM));
	o->json = x->json;
	o->dump = dump;
	if ((rc = ctl_connect(x))) {
		free(o);
		return rc;
	}
	if (dump && !x->json)
		printf("%12s %10s %10s  %s\n", "bytes", "flags", "ttl", "key");
	do
		err = shmc_scan(x->c, &cur, prefix, strlen(prefix), list_key,
				o);
	while (err == 0 && cur != 0);
	free(o);
	if (err == -EIO)
		return fail("write error: %s", strerror(errno ? errno : EIO));
	return err ? fail("%s: %s", what, shmc_strerror(err)) : CTL_EXIT_OK;
}

static int cmd_keys(struct ctl *x, int argc, char **argv)
{
	return list_keys(x, argc, argv, 0);
}

static int cmd_dump(struct ctl *x, int argc, char **argv)
{
	return list_keys(x, argc, argv, 1);
}

static int cmd_check(struct ctl *x, int argc, char **argv)
{
	uint32_t segs = 0, bad = 0, repaired = 0;
	int rc, err;

	(void)argc;
	(void)argv;
	if ((rc = ctl_connect(x)))
		return rc;
	err = shmc_check(x->c, x->repair, &segs, &bad, &repaired);
	if (err)
		return control_error(x, "check", err);
	if (x->json)
		printf("{\"segments\":%" PRIu32 ",\"bad\":%" PRIu32
		       ",\"repaired\":%" PRIu32 "}\n",
		       segs, bad, repaired);
	else
		printf("%" PRIu32 " segments checked, %" PRIu32 " bad, %" PRIu32
		       " repaired\n",
		       segs, bad, repaired);
	/* What was found first (the region header's damage comes first). */
	if (bad && !x->json && shmc_errmsg()[0])
		printf("%s\n", shmc_errmsg());
	if (bad > repaired && !x->json)
		fprintf(stderr,
			CTL_PROG ": '" CTL_PROG " check --repair' "
				 "resets the damaged segments (their entries "
				 "are lost)\n");
	return bad ? CTL_EXIT_NO : CTL_EXIT_OK;
}

static int cmd_clients(struct ctl *x, int argc, char **argv)
{
	struct shmc_client_info *list = NULL;
	size_t cap = 16, n = 0, i;
	uint32_t self;
	char tb[64];
	int rc, err, tries;

	(void)argc;
	(void)argv;
	if ((rc = ctl_connect(x)))
		return rc;
	/* Clients come and go between two calls: retry with more room. */
	for (tries = 0;; tries++) {
		free(list);
		list = calloc(cap, sizeof(*list));
		if (!list)
			return fail("clients: %s", shmc_strerror(-ENOMEM));
		err = shmc_clients(x->c, list, cap, &n);
		if (err || n <= cap || tries == 8)
			break;
		cap = n + 16;
	}
	if (err) {
		free(list);
		return control_error(x, "clients", err);
	}
	n = n < cap ? n : cap;
	self = shmc_client_id(x->c);
	if (x->json)
		puts("[");
	else
		printf("%10s %10s %10s  %s\n", "id", "pid", "uid",
		       "connected since");
	for (i = 0; i < n; i++) {
		const struct shmc_client_info *ci = &list[i];
		int me = ci->id != 0 && ci->id == self;

		if (x->json)
			printf("{\"id\":%" PRIu32 ",\"pid\":%" PRIu32
			       ",\"uid\":%" PRIu32 ",\"gid\":%" PRIu32
			       ",\"since\":%" PRIu64 ",\"self\":%s}%s\n",
			       ci->id, ci->pid, ci->uid, ci->gid, ci->since,
			       me ? "true" : "false", i + 1 < n ? "," : "");
		else
			printf("%10" PRIu32 " %10" PRIu32 " %10" PRIu32
			       "  %s%s\n",
			       ci->id, ci->pid, ci->uid,
			       local_time(ci->since, 0, tb, sizeof(tb)),
			       me ? "  (this " CTL_PROG ")" : "");
	}
	if (x->json)
		puts("]");
	free(list);
	return CTL_EXIT_OK;
}

/* One refresh of `watch`: prev is NULL on the first (no rates yet). */
static void watch_show(const struct ctl *x, int tty, uint64_t n,
		       const struct shmc_stats *prev,
		       const struct shmc_stats *cur, double dt)
{
	double gets = 0, sets = 0, evictions = 0, hr = 0, fill = 0;
	int rates = prev && dt > 0, has_hr = 0, has_fill;
	char tb[32], sb[ESC_MAX];
	uint64_t now = (uint64_t)time(NULL);

	if (rates) {
		uint64_t h = delta(cur->hits, prev->hits);
		uint64_t m = delta(cur->misses, prev->misses);

		gets = (double)(h + m) / dt;
		sets = (double)delta(cur->sets, prev->sets) / dt;
		evictions = (double)delta(cur->evictions, prev->evictions) / dt;
		has_hr = percent(h, h + m, &hr);
	}
	has_fill = percent(cur->bytes_used, cur->bytes_total, &fill);
	if (x->json) {
		printf("{\"time\":%" PRIu64 ",\"gets_per_s\":", now);
		json_num_or_null(rates, gets);
		fputs(",\"sets_per_s\":", stdout);
		json_num_or_null(rates, sets);
		fputs(",\"evictions_per_s\":", stdout);
		json_num_or_null(rates, evictions);
		fputs(",\"hit_rate\":", stdout);
		json_num_or_null(has_hr, hr);
		printf(",\"entries\":%" PRIu64 ",\"fill\":", cur->entries);
		json_num_or_null(has_fill, fill);
		puts("}");
		return;
	}
	if (tty)
		printf("\033[H\033[2J" CTL_PROG
		       " watch: shmcached at %s, every "
		       "%g s, %" PRIu64 " segments (Ctrl-C quits)\n\n",
		       ESC(socket_name(x), sb), (double)x->interval_ns / 1e9,
		       cur->segments);
	if (tty || n == 0)
		printf("%8s %12s %12s %12s %8s %12s %7s\n", "time", "gets/s",
		       "sets/s", "evictions/s", "hit rate", "entries", "fill");
	printf("%8s", local_time(now, 1, tb, sizeof(tb)));
	if (rates)
		printf(" %12.1f %12.1f %12.1f", gets, sets, evictions);
	else
		printf(" %12s %12s %12s", "-", "-", "-");
	if (has_hr)
		printf(" %7.1f%%", hr);
	else
		printf(" %8s", "-");
	printf(" %12" PRIu64, cur->entries);
	if (has_fill)
		printf(" %6.1f%%\n", fill);
	else
		printf(" %7s\n", "-");
}

/* 0 if the daemon answers a ping on x's handle, reopening the handle
 * when it does not (a daemon restarted cold has another region);
 * otherwise the error, with no handle left. */
static int watch_reach(struct ctl *x)
{
	int err = x->c ? shmc_ping(x->c) : -ENOTCONN;

	if (err == 0)
		return 0;
	shmc_close(x->c);
	x->c = NULL;
	err = shmc_open(&x->c, x->socket);
	return err ? err : shmc_ping(x->c);
}

static int cmd_watch(struct ctl *x, int argc, char **argv)
{
	struct shmc_stats prev = { 0 }, cur;
	uint64_t next, tprev = 0, tcur;
	int tty = !x->json && isatty(STDOUT_FILENO);
	uint64_t n, shown = 0;
	int rc, err, down = 0, have_prev = 0;
	char b[ESC_MAX];

	(void)argc;
	(void)argv;
	if ((rc = ctl_connect(x)))
		return rc;
	next = clock_mono_ns();
	for (n = 0; x->count == 0 || n < x->count; n++) {
		if (n > 0) {
			struct timespec ts;

			next += x->interval_ns;
			ts.tv_sec = (time_t)(next / 1000000000);
			ts.tv_nsec = (long)(next % 1000000000);
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME,
					       &ts, NULL) == EINTR)
				;
		}
		/* Figures of a mapping whose daemon is gone mean nothing:
		 * while it is unreachable, say so once and show none. */
		err = watch_reach(x);
		tcur = clock_mono_ns();
		if (err) {
			if (!down)
				fprintf(stderr,
					CTL_PROG
					": watch: shmcached "
					"unreachable: %s; waiting for it\n",
					shmc_strerror(err));
			down = 1;
			have_prev = 0;
			if (tcur > next && tcur - next > x->interval_ns)
				next = tcur;
			continue;
		}
		if (down)
			fprintf(stderr,
				CTL_PROG ": watch: shmcached at %s "
					 "answers again\n",
				ESC(socket_name(x), b));
		down = 0;
		err = shmc_stat(x->c, &cur);
		if (err)
			return fail("watch: %s", shmc_strerror(err));
		watch_show(x, tty, shown++, have_prev ? &prev : NULL, &cur,
			   have_prev ? (double)(tcur - tprev) / 1e9 : 0);
		if (fflush(stdout) != 0 || ferror(stdout))
			return fail("write error: %s", strerror(errno));
		/* Fallen behind (a stopped terminal): do not catch up. */
		if (tcur > next && tcur - next > x->interval_ns)
			next = tcur;
		prev = cur;
		tprev = tcur;
		have_prev = 1;
	}
	return down ? CTL_EXIT_UNREACHABLE : CTL_EXIT_OK;
}

/* A malloc'ed absolute form of path: the daemon has its own directory. */
static char *absolute(const char *path)
{
	char *cwd, *out;
	size_t len;

	if (path[0] == '/')
		return strdup(path);
	cwd = getcwd(NULL, 0);
	if (!cwd)
		return NULL;
	len = strlen(cwd) + strlen(path) + 2;
	out = malloc(len);
	if (out)
		snprintf(out, len, "%s/%s", cwd, path);
	free(cwd);
	return out;
}

/* save and load: the same request but for the direction. */
static int snapshot(struct ctl *x, const char *file, int load)
{
	const char *what = load ? "load" : "save";
	uint64_t entries = 0;
	char b[ESC_MAX];
	char *path;
	int rc, err;

	if (file[0] == '\0')
		return usage(x->cmd, "FILE must not be empty");
	if ((rc = ctl_connect(x)))
		return rc;
	path = absolute(file);
	if (!path)
		return fail("%s: %s: %s", what, ESC(file, b), strerror(errno));
	err = !load	   ? shmc_save(x->c, path, &entries)
	      : x->partial ? shmc_load_partial(x->c, path, &entries)
			   : shmc_load(x->c, path, &entries);
	if (err == -ENOTSUP || err == -EOPNOTSUPP) {
		free(path);
		return fail("snapshots not supported by this daemon");
	}
	/* The daemon's words name the file; -ENOENT is the file (a daemon
	 * gone is SHMC_ENODAEMON or -EPIPE). */
	const char *msg = shmc_errmsg();
	if (err == -ENOENT && !msg[0])
		rc = fail("%s: %s: %s", what, ESC(path, b), shmc_strerror(err));
	else if (err && msg[0])
		rc = daemon_error(what, err, msg);
	else if (err)
		rc = control_error(x, what, err);
	else if (x->json) {
		putchar('{');
		json_member("file", path, strlen(path));
		printf(",\"entries\":%" PRIu64 "}\n", entries);
	} else {
		printf("%s %" PRIu64 " entries %s %s\n",
		       load ? "loaded" : "saved", entries, load ? "from" : "to",
		       ESC(path, b));
	}
	free(path);
	return rc;
}

static int cmd_save(struct ctl *x, int argc, char **argv)
{
	(void)argc;
	return snapshot(x, argv[0], 0);
}

static int cmd_load(struct ctl *x, int argc, char **argv)
{
	(void)argc;
	return snapshot(x, argv[0], 1);
}

/* `ns list`: the registered namespaces. */
static int ns_list(struct ctl *x)
{
	struct shmc_ns_info list[SHMC_NS_MAX];
	size_t n = 0, i;
	char b[ESC_MAX];
	int err = shmc_ns_list(x->c, list, SHMC_NS_MAX, &n);

	if (err)
		return control_error(x, "ns list", err);
	n = n < SHMC_NS_MAX ? n : SHMC_NS_MAX;
	if (x->json)
		puts("[");
	else
		printf("%5s %10s  %s\n", "slot", "mark", "prefix");
	for (i = 0; i < n; i++) {
		const struct shmc_ns_info *ns = &list[i];
		if (x->json) {
			putchar('{');
			json_member("prefix", ns->prefix, ns->len);
			printf(",\"mark\":%" PRIu32 ",\"slot\":%" PRIu32
			       "}%s\n",
			       ns->mark, ns->slot, i + 1 < n ? "," : "");
		} else {
			printf("%5" PRIu32 " %10" PRIu32 "  '%s'\n", ns->slot,
			       ns->mark,
			       esc(ns->prefix, ns->len, b, sizeof(b)));
		}
	}
	if (x->json)
		puts("]");
	return CTL_EXIT_OK;
}

static int cmd_ns(struct ctl *x, int argc, char **argv)
{
	static const char *const subs[] = { "list", "add", "flush", "del" };
	static int (*const calls[])(shmc *, const void *,
				    size_t) = { NULL, shmc_ns_add,
						shmc_ns_flush, shmc_ns_del };
	char what[16], b[ESC_MAX];
	size_t s, len;
	int rc, err;

	for (s = 0; s < sizeof(subs) / sizeof(subs[0]); s++)
		if (!strcmp(argv[0], subs[s]))
			break;
	if (s == sizeof(subs) / sizeof(subs[0]))
		return usage(x->cmd,
			     "no ns command '%s' (use list, add, flush "
			     "or del)",
			     ESC(argv[0], b));
	if (s == 0 && argc != 1)
		return usage(x->cmd, "ns list takes no PREFIX");
	if (s > 0 && argc != 2)
		return usage(x->cmd, "missing argument, ns %s expects PREFIX",
			     subs[s]);
	if (s > 0 && x->json)
		return usage(x->cmd, "--json goes with ns list only");
	if (s > 0 && ((len = strlen(argv[1])) == 0 || len > SHMC_NS_PREFIX_MAX))
		return usage(x->cmd, "PREFIX is 1 to %d bytes, not %zu",
			     SHMC_NS_PREFIX_MAX, len);
	if ((rc = ctl_connect(x)))
		return rc;
	if (s == 0)
		return ns_list(x);
	snprintf(what, sizeof(what), "ns %s", subs[s]);
	err = calls[s](x->c, argv[1], len);
	if (err == -ENOENT) {
		fprintf(stderr, CTL_PROG ": ns %s '%s': not registered\n",
			subs[s], ESC(argv[1], b));
		return CTL_EXIT_NO;
	}
	return err ? control_error(x, what, err) : CTL_EXIT_OK;
}

static int cmd_ping(struct ctl *x, int argc, char **argv)
{
	uint64_t t0, t1;
	int rc, err;

	(void)argc;
	(void)argv;
	if ((rc = ctl_connect(x)))
		return rc;
	t0 = clock_mono_ns();
	err = shmc_ping(x->c);
	t1 = clock_mono_ns();
	if (err)
		return control_error(x, "ping", err);
	printf("pong from shmcached in %.3f ms\n", (double)(t1 - t0) / 1e6);
	return CTL_EXIT_OK;
}

static int cmd_shutdown(struct ctl *x, int argc, char **argv)
{
	int rc, err;

	(void)argc;
	(void)argv;
	if ((rc = ctl_connect(x)))
		return rc;
	err = shmc_shutdown(x->c);
	return err ? control_error(x, "shutdown", err) : CTL_EXIT_OK;
}

/* ------------------------------------------------------------------------
 * Help
 * ------------------------------------------------------------------------ */

/* Prints text indented by indent, continuation lines included. */
static void print_indented(const char *text, int indent)
{
	const char *p = text, *nl;

	while ((nl = strchr(p, '\n'))) {
		printf("%.*s\n%*s", (int)(nl - p), p, indent, "");
		p = nl + 1;
	}
	printf("%s\n", p);
}

static void help_options(unsigned mask)
{
	opt_usage(stdout, ctl_options, CTL_NOPTS, mask, OPT_USAGE_META_EQ);
}

static int help_global(void)
{
	char left[96];
	size_t i;

	printf("Usage: " CTL_PROG " [--socket PATH] [--json] COMMAND [ARG]...\n"
	       "Administers a running shmcached from the shell: statistics, "
	       "keys,\nintegrity checks, connected clients and a live view.\n"
	       "\nCommands:\n");
	for (i = 0; i < CTL_NCMDS; i++) {
		int n = snprintf(left, sizeof(left), "%s %s", ctl_cmds[i].name,
				 ctl_cmds[i].args);
		/* As opt_usage(): the summary on the next line when the left
		 * column is too wide for it. */
		if (n > OPT_HELP_COL - 3)
			printf("  %s\n  %-*s%s\n", left, OPT_HELP_COL - 2, "",
			       ctl_cmds[i].summary);
		else
			printf("  %-*s%s\n", OPT_HELP_COL - 2, left,
			       ctl_cmds[i].summary);
	}
	printf("\nOptions (before or after the command):\n");
	help_options(CTL_GLOBAL_OPTS | OPT_BIT(JSON));
	printf("\n--json is taken by:");
	for (i = 0; i < CTL_NCMDS; i++)
		if (ctl_cmds[i].opts & OPT_BIT(JSON))
			printf(" %s", ctl_cmds[i].name);
	printf(".\n'" CTL_PROG " COMMAND --help' (or '" CTL_PROG
	       " help COMMAND') describes a command\nand its options.  "
	       "A word after '--' is never an option, e.g.\n"
	       "  " CTL_PROG " set -- -key- value\n"
	       "(\"-\" and negative numbers need no '--').\n"
	       "\nExit status:\n");
#define EXIT_HELP_X(id, code, help)                                            \
	printf("  %d  ", code);                                                \
	print_indented(help, 5);
	CTL_EXITS(EXIT_HELP_X)
#undef EXIT_HELP_X
	printf("\nEnvironment:\n"
	       "  SHMC_SOCKET     the daemon's socket when --socket is not "
	       "given\n"
	       "  SHMC_TRUST_UID  uids (UID[,UID...]) trusted to serve the "
	       "socket besides\n"
	       "                  root and this user (docs/SECURITY.md)\n");
	return CTL_EXIT_OK;
}

static int help_command(const struct ctl_cmd *cmd)
{
	unsigned mask = cmd->opts | CTL_GLOBAL_OPTS;
	int i;

	printf("Usage: " CTL_PROG " [--socket PATH] %s%s%s", cmd->name,
	       cmd->args[0] ? " " : "", cmd->args);
	for (i = 0; i < CTL_NOPTS; i++)
		if (cmd->opts & (1u << i))
			printf(" [--%s%s%s]", ctl_options[i].name,
			       ctl_options[i].meta ? " " : "",
			       ctl_options[i].meta ? ctl_options[i].meta : "");
	/* The summaries start with a lower-case ASCII letter. */
	printf("\n%c%s.\n\n%s\n\nOptions:\n", cmd->summary[0] - 'a' + 'A',
	       cmd->summary + 1, cmd->details);
	help_options(mask);
	return CTL_EXIT_OK;
}

static const struct ctl_cmd *find_command(const char *name)
{
	size_t i;

	for (i = 0; i < CTL_NCMDS; i++)
		if (strcmp(ctl_cmds[i].name, name) == 0)
			return &ctl_cmds[i];
	return NULL;
}

static int cmd_help(struct ctl *x, int argc, char **argv)
{
	const struct ctl_cmd *cmd;
	char b[ESC_MAX];

	(void)x;
	if (argc == 0)
		return help_global();
	cmd = find_command(argv[0]);
	if (!cmd)
		return usage(NULL, "no command '%s'", ESC(argv[0], b));
	return help_command(cmd);
}

/* ------------------------------------------------------------------------
 * Command line
 * ------------------------------------------------------------------------ */

/* Stores option id's value (NULL for a flag).  Returns 0 or the usage
 * exit code. */
static int apply_option(struct ctl *x, int id, const char *val)
{
	char b[ESC_MAX], why[OPT_WHY_MAX];
	uint64_t v;

	x->seen |= 1u << id;
	switch (id) {
	case CTL_OPT_SOCKET:
		if (*val == '\0')
			return usage(NULL, "--socket needs a PATH");
		x->socket = val;
		return 0;
	case CTL_OPT_JSON:
		x->json = 1;
		return 0;
	case CTL_OPT_REPAIR:
		x->repair = 1;
		return 0;
	case CTL_OPT_PARTIAL:
		x->partial = 1;
		return 0;
	case CTL_OPT_NO_MAP:
		x->no_map = 1;
		return 0;
	case CTL_OPT_TTL:
		if (opt_uint("--ttl", val, 0, UINT32_MAX, &v, why, sizeof(why)))
			return usage(NULL, "%s", why);
		x->ttl = (uint32_t)v;
		return 0;
	case CTL_OPT_FLAGS:
		if (opt_uint("--flags", val, 0, UINT32_MAX, &v, why,
			     sizeof(why)))
			return usage(NULL, "%s", why);
		x->flags = (uint32_t)v;
		return 0;
	case CTL_OPT_INIT:
		if (opt_uint("--init", val, 0, UINT64_MAX, &x->init, why,
			     sizeof(why)))
			return usage(NULL, "%s", why);
		return 0;
	case CTL_OPT_INIT_TTL:
		if (opt_uint("--init-ttl", val, 0, UINT32_MAX, &v, why,
			     sizeof(why)))
			return usage(NULL, "%s", why);
		x->init_ttl = (uint32_t)v;
		return 0;
	case CTL_OPT_INTERVAL:
		if (parse_seconds(val, 1000000, 86400 * UINT64_C(1000000000),
				  &x->interval_ns))
			return usage(NULL,
				     "bad --interval '%s' (seconds, "
				     "0.001 to 86400)",
				     ESC(val, b));
		return 0;
	case CTL_OPT_COUNT:
		if (opt_uint("--count", val, 1, UINT32_MAX, &x->count, why,
			     sizeof(why)))
			return usage(NULL, "%s", why);
		return 0;
	default: /* HELP, VERSION: acted on once the command is known */
		return 0;
	}
}

/* Parses the option at argv[*i] (its value may take argv[*i + 1]). */
static int parse_option(struct ctl *x, int argc, char **argv, int *i)
{
	const char *arg = argv[*i], *val = NULL, *name = arg + 2;
	size_t len;
	char b[ESC_MAX];
	int id;

	if (arg[1] != '-') { /* -h, -V */
		for (id = 0; id < CTL_NOPTS; id++)
			if (ctl_options[id].shortc == arg[1] && arg[2] == '\0')
				return apply_option(x, id, NULL);
		return usage(x->cmd, "unknown option '%s'", ESC(arg, b));
	}
	len = strcspn(name, "=");
	if (name[len] == '=')
		val = name + len + 1;
	for (id = 0; id < CTL_NOPTS; id++)
		if (strlen(ctl_options[id].name) == len &&
		    memcmp(ctl_options[id].name, name, len) == 0)
			break;
	if (id == CTL_NOPTS)
		return usage(x->cmd, "unknown option '%s'", ESC(arg, b));
	if (!ctl_options[id].meta) {
		if (val)
			return usage(x->cmd, "--%s takes no value",
				     ctl_options[id].name);
		return apply_option(x, id, NULL);
	}
	if (!val) {
		if (*i + 1 >= argc)
			return usage(x->cmd, "--%s needs a value %s",
				     ctl_options[id].name,
				     ctl_options[id].meta);
		val = argv[++*i];
	}
	return apply_option(x, id, val);
}

/* Fills x from argv.  Options may come before or after the command;
 * "-" and words like "-5" (no option starts with a digit) are arguments,
 * and so is every word after "--".  Returns 0 or the usage exit
 * code (the message printed). */
static int parse_args(struct ctl *x, int argc, char **argv)
{
	int i, rc, dashdash = 0;
	char b[ESC_MAX];

	x->args = calloc((size_t)argc, sizeof(*x->args));
	if (!x->args)
		return fail("%s", shmc_strerror(-ENOMEM));
	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];

		if (!dashdash && strcmp(arg, "--") == 0) {
			dashdash = 1;
		} else if (!dashdash && arg[0] == '-' && arg[1] != '\0' &&
			   (arg[1] < '0' || arg[1] > '9')) {
			if ((rc = parse_option(x, argc, argv, &i)))
				return rc;
		} else if (!x->cmd) {
			x->cmd = find_command(arg);
			if (!x->cmd)
				return usage(NULL, "unknown command '%s'",
					     ESC(arg, b));
		} else {
			x->args[x->nargs++] = argv[i];
		}
	}
	return 0;
}

/* Checks what parse_args() collected against the command's entry. */
static int check_args(const struct ctl *x)
{
	const struct ctl_cmd *cmd = x->cmd;
	unsigned extra = x->seen & ~(CTL_GLOBAL_OPTS | cmd->opts);
	int i;

	if ((extra & OPT_BIT(NO_MAP)) &&
	    (cmd->run == cmd_keys || cmd->run == cmd_dump))
		return usage(cmd, "takes no --no-map: listing keys needs the "
				  "region mapped (the socket protocol has no "
				  "request for it)");
	for (i = 0; i < CTL_NOPTS; i++)
		if (extra & (1u << i))
			return usage(cmd, "takes no --%s", ctl_options[i].name);
	if (x->nargs < cmd->min_args)
		return usage(cmd, "missing argument, expects %s", cmd->args);
	if (x->nargs > cmd->max_args)
		return usage(cmd, "too many arguments, expects %s",
			     cmd->args[0] ? cmd->args : "none");
	if (strncmp(cmd->args, "KEY", 3) == 0 && x->args[0][0] == '\0')
		return usage(cmd, "KEY must not be empty");
	if (strncmp(cmd->args, "KEY", 3) == 0 &&
	    strlen(x->args[0]) > SHMC_KEY_MAX)
		return usage(cmd, "KEY is %zu bytes; keys are at most %d",
			     strlen(x->args[0]), SHMC_KEY_MAX);
	return 0;
}

int main(int argc, char **argv)
{
	struct ctl x = { .interval_ns = UINT64_C(1000000000), .sock = -1 };
	int rc;

	rc = parse_args(&x, argc, argv);
	if (rc == 0 && (x.seen & OPT_BIT(HELP)))
		rc = x.cmd ? help_command(x.cmd) : help_global();
	else if (rc == 0 && (x.seen & OPT_BIT(VERSION)))
		printf(CTL_PROG " " SHMC_VERSION " (libshmc %s)\n",
		       shmc_version(NULL, NULL, NULL));
	else if (rc == 0 && !x.cmd)
		rc = usage(NULL, "no command given");
	else if (rc == 0 && (rc = check_args(&x)) == 0)
		rc = x.cmd->run(&x, x.nargs, x.args);
	shmc_close(x.c);
	if (x.sock >= 0)
		close(x.sock);
	free(x.args);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, CTL_PROG ": write error: %s\n",
			strerror(errno ? errno : EIO));
		if (rc == CTL_EXIT_OK)
			rc = CTL_EXIT_FAILED;
	}
	return rc;
}
