/*
 * stress.c - shmc-stress, the multi-process stress test of shmcached.
 *
 * Forks P worker processes; each opens its own libshmc handle and runs T
 * threads of random get/set/del/touch on a key space of N keys for a given
 * time.  Every value it writes describes itself (struct val_hdr: a magic,
 * the hash of its key, its length, who wrote it, a checksum of the whole
 * value; the payload is derived from the seed and the writer), and every
 * value a get returns is checked: another key's value, a torn value or a
 * corrupted one is caught by the first read that sees it, reported with
 * the first bad byte, and fails the run.  Gets go through shmc_get and,
 * now and then, shmc_peek, shmc_get_ex, the zero-copy shmc_read and
 * shmc_get_or_load; sets through shmc_set and shmc_reserve/shmc_commit
 * (sometimes shmc_abort), and through shmc_add and shmc_cas (a read of
 * the version by shmc_get_item, then a store only if it still holds).
 *
 * Three more key families: NCOUNTERS counters, incremented by 1 with and
 * without incr's init (a missing one is then added as "0"); NCOUNTERS
 * down-counters, decremented by 1 from DECR_START the same ways (a quarter
 * of the counter operations); and NLOGS logs, to which records are
 * appended and prepended.  Each log record
 * (struct log_rec) carries its key's hash, its writer, its direction, its
 * writer's sequence number and a checksum: a log must be whole records,
 * each valid, no record twice, and one writer's appended records rising
 * and its prepended ones falling from left to right, so that a half
 * record, a foreign one, or the prefix of one version of a log joined to
 * the suffix of another is caught.  Every increment a worker starts is
 * counted in the shared mapping before the call (attempted) and after an
 * acknowledgement (acked); at the end each counter must be a number no
 * more than attempted and, if its segment saw no eviction and no reset
 * during the run, at least acked (and with no kill, exactly acked).  A
 * down-counter is counted the same way: DECR_START less its value is the
 * decrements applied, which must lie between the same bounds; it starts
 * so high that no run takes it to 0, where a decrement would be lost.
 *
 * With --chaos the parent SIGKILLs a random worker every interval - in the
 * middle of a set or a reservation as often as not - and starts another in
 * its place: the run shows that a process dying inside a critical section
 * never makes the cache serve a bad value and does not stall the others.
 * After the run the daemon's integrity walk (shmc_check) must be clean.
 *
 * It is a correctness test, not a benchmark: the ops/s it prints include
 * building and checksumming every value.  It uses <shmc.h> and libc only.
 * Its keys carry a per-run tag, so runs against a shared daemon do not
 * see each other's values and it never clears the cache.
 *
 * Processes and exit statuses: the parent only forks, kills, reaps and
 * reports; it holds no libshmc handle while workers run.  A worker ends
 * with one of enum worker_exit (the only _exit() calls are in the worker's
 * fail paths and after fork()); the parent ends with enum stress_exit.
 * Counters travel through a MAP_SHARED anonymous mapping, one cache-line
 * aligned slot per worker; a worker killed by chaos keeps what it had
 * flushed there (up to FLUSH_EVERY operations per thread are lost).
 *
 * Parts: tables; small helpers; values; the worker; the parent; output;
 * options and main.
 */
#include "shmc.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fnv1a.h"
#include "opt.h"
#include "hash.h"

#define PROG "shmc-stress"

/* ------------------------------------------------------------------------
 * Tables
 * ------------------------------------------------------------------------ */

/* X(name, description): the counters each worker adds to its slot.  The
 * summary's lines and the JSON keys are derived from this list. */
#define STRESS_COUNTERS(X)                                                     \
	X(ops, "operations of every kind")                                     \
	X(gets, "gets of every kind (the five below and plain shmc_get)")      \
	X(hits, "gets that returned a value (each one validated)")             \
	X(misses, "gets that found nothing (get_or_load: that loaded)")        \
	X(peeks, "gets done with shmc_peek")                                   \
	X(get_exs, "gets done with shmc_get_ex")                               \
	X(reads, "gets done with the zero-copy shmc_read")                     \
	X(get_or_loads, "gets done with shmc_get_or_load")                     \
	X(loads, "times our loader ran inside shmc_get_or_load")               \
	X(sets, "sets of every kind that stored a value")                      \
	X(reserves, "sets done with shmc_reserve + shmc_commit")               \
	X(aborts, "reservations dropped with shmc_abort")                      \
	X(wrapped, "reads and reservations whose value wrapped the ring")      \
	X(dels, "deletes")                                                     \
	X(touches, "touches")                                                  \
	X(adds, "adds of a value (stored or refused as present)")              \
	X(cases, "read-modify-writes by version (cas), stored or refused")     \
	X(incrs, "increments and decrements of a counter")                     \
	X(decrs, "decrements of a down-counter (among incrs)")                 \
	X(appends, "appends, prepends and reads of a log")                     \
	X(bad, "wrong, torn or corrupted values seen (must be 0)")             \
	X(etimedout, "-ETIMEDOUT returns (lock not obtained in time)")         \
	X(euclean, "-EUCLEAN returns (damaged segment found and reset)")       \
	X(slow_ops, "operations that took longer than 100 ms")

enum stress_ctr {
#define CTR_ENUM_X(name, desc) CTR_##name,
	STRESS_COUNTERS(CTR_ENUM_X)
#undef CTR_ENUM_X
		NCTR
};

static const char *const ctr_names[NCTR] = {
#define CTR_NAME_X(name, desc) #name,
	STRESS_COUNTERS(CTR_NAME_X)
#undef CTR_NAME_X
};

/* The operations of --mix: X(name, default weight). */
#define STRESS_OPS(X)                                                          \
	X(get, 55)                                                             \
	X(set, 25)                                                             \
	X(del, 5)                                                              \
	X(touch, 5)                                                            \
	X(add, 3)                                                              \
	X(cas, 3)                                                              \
	X(incr, 2)                                                             \
	X(append, 2)

enum stress_op {
#define OP_ENUM_X(name, w) OP_##name,
	STRESS_OPS(OP_ENUM_X)
#undef OP_ENUM_X
		NOPS
};

static const char *const op_names[NOPS] = {
#define OP_NAME_X(name, w) #name,
	STRESS_OPS(OP_NAME_X)
#undef OP_NAME_X
};

/* The library calls a worker makes: X(id, name), for reports and for
 * naming the slowest operation. */
#define STRESS_APIS(X)                                                         \
	X(get, "shmc_get")                                                     \
	X(peek, "shmc_peek")                                                   \
	X(get_ex, "shmc_get_ex")                                               \
	X(read, "shmc_read")                                                   \
	X(get_or_load, "shmc_get_or_load")                                     \
	X(set, "shmc_set")                                                     \
	X(reserve, "shmc_reserve")                                             \
	X(commit, "shmc_commit")                                               \
	X(abort, "shmc_abort")                                                 \
	X(del, "shmc_del")                                                     \
	X(touch, "shmc_touch")                                                 \
	X(add, "shmc_add")                                                     \
	X(cas, "shmc_get_item+shmc_cas")                                       \
	X(incr, "shmc_incr")                                                   \
	X(decr, "shmc_decr")                                                   \
	X(append, "shmc_append/shmc_prepend")

enum stress_api {
#define API_ENUM_X(id, name) API_##id,
	STRESS_APIS(API_ENUM_X)
#undef API_ENUM_X
		NAPIS
};

static const char *const api_names[NAPIS] = {
#define API_NAME_X(id, name) name,
	STRESS_APIS(API_NAME_X)
#undef API_NAME_X
};

/* How a value was written (val_hdr.via), for reports. */
#define STRESS_VIAS(X)                                                         \
	X(SET, "shmc_set")                                                     \
	X(RESERVE, "shmc_reserve+commit")                                      \
	X(LOAD, "shmc_get_or_load's loader")                                   \
	X(ADD, "shmc_add")                                                     \
	X(CAS, "shmc_cas")

enum val_via {
#define VIA_ENUM_X(id, name) VIA_##id,
	STRESS_VIAS(VIA_ENUM_X)
#undef VIA_ENUM_X
		NVIAS
};

static const char *const via_names[NVIAS] = {
#define VIA_NAME_X(id, name) name,
	STRESS_VIAS(VIA_NAME_X)
#undef VIA_NAME_X
};

/* X(id, long name, metavar or NULL for a flag, help).  --inject-bad is the
 * test suite's hook (tests/integration/test_stress.py): worker 0's first
 * thread corrupts one payload byte of every 50th value it writes, after
 * computing its checksum, and says so on stderr; it is left out of --help. */
#define STRESS_OPTIONS(X)                                                      \
	X(SOCKET, "socket", "PATH",                                            \
	  "the daemon's socket (default: $SHMC_SOCKET, else the\n"             \
	  "daemon's default)")                                                 \
	X(PROCS, "procs", "P", "worker processes (default 4)")                 \
	X(THREADS, "threads", "T", "threads per worker (default 2)")           \
	X(DURATION, "duration", "S", "seconds to run, e.g. 2.5 (default 10)")  \
	X(MIN_OPS, "min-ops", "N",                                             \
	  "go on past --duration until the workers have done\n"                \
	  "at least N operations (default 0)")                                 \
	X(KEYS, "keys", "N", "size of the key space (default 10000)")          \
	X(MAX_VALUE, "max-value", "BYTES",                                     \
	  "largest value (default 32768; lowered to what the\n"                \
	  "cache's largest item allows)")                                      \
	X(MIX, "mix", "LIST",                                                  \
	  "weights of the operations (default\n"                               \
	  "get=55,set=25,del=5,touch=5,add=3,cas=3,incr=2,\n"                  \
	  "append=2; missing ones are 0)")                                     \
	X(CHAOS, "chaos", NULL,                                                \
	  "SIGKILL a random worker every interval and start\n"                 \
	  "another in its place")                                              \
	X(CHAOS_INTERVAL, "chaos-interval", "MS",                              \
	  "milliseconds between kills (default 300)")                          \
	X(SEED, "seed", "N", "seed of values and choices (default: random)")   \
	X(JSON, "json", NULL, "print the summary as one JSON object")          \
	X(PAUSE_BEFORE_CHECK, "pause-before-check", NULL,                      \
	  "once the workers have stopped, say so on stderr and\n"              \
	  "wait for a line on stdin before the integrity check")               \
	X(HELP, "help", NULL, "print this help and exit")                      \
	X(INJECT_BAD, "inject-bad", NULL, NULL)

enum stress_opt {
#define OPT_ENUM_X(id, name, meta, help) OPT_##id,
	STRESS_OPTIONS(OPT_ENUM_X)
#undef OPT_ENUM_X
		NOPTS
};

static const struct opt_spec opt_descs[NOPTS] = {
#define OPT_DESC_X(id, name, meta, help) [OPT_##id] = { name, 0, meta, help },
	STRESS_OPTIONS(OPT_DESC_X)
#undef OPT_DESC_X
};

/* The parent's exit statuses. */
enum stress_exit {
	STRESS_OK = 0,		/* no bad value, check clean, no error */
	STRESS_FAILED = 1,	/* anything else that went wrong in the run */
	STRESS_USAGE = 2,	/* bad command line */
	STRESS_UNREACHABLE = 3, /* no daemon at the socket */
};

/* A worker's exit statuses (the parent decodes them). */
enum worker_exit {
	WORKER_OK = 0,
	WORKER_BAD_VALUE = 1, /* reported a bad value on stderr */
	WORKER_ERROR = 2,     /* an unexpected return code, reported */
	WORKER_SETUP = 3,     /* could not open its handle or start */
};

/* ------------------------------------------------------------------------
 * Configuration and the shared counters
 * ------------------------------------------------------------------------ */

#define KEY_MAX 64 /* longest key key_make() builds */
#define MAX_PROCS 256
#define MAX_THREADS 256
#define FLUSH_EVERY 512		     /* ops between counter flushes */
#define SLOW_OP_NS 100000000ull	     /* 100 ms: a "slow" operation */
#define STOP_GRACE_NS 10000000000ull /* workers' own stop, parent gone */
#define REAP_TIMEOUT_MS 10000	     /* workers must stop within this */
#define TTL_MAX 30		     /* the longest TTL this program sets */
#define INJECT_EVERY 50		     /* --inject-bad: one value in so many */
#define NOTE_MAX 10		     /* lock errors described, per thread */
#define NCOUNTERS 16		     /* counter keys, and down-counter keys */
#define DECR_START UINT64_C(1000000000000) /* a down-counter's first value */
#define NLOGS 16			   /* log keys */
#define LOG_RECS 48			   /* a longer log starts anew */

struct stress_cfg {
	const char *socket; /* NULL: the library's default */
	unsigned procs, threads;
	double duration_s;
	uint64_t min_ops; /* the run lasts until this many ops too */
	uint32_t keys;
	size_t max_value;
	unsigned mix[NOPS]; /* weights */
	unsigned mix_total;
	bool chaos;
	unsigned chaos_ms;
	uint64_t seed;
	bool json;
	bool pause_before_check;
	bool inject_bad;
	uint32_t run_tag; /* in every key: this run's key space */
};

/* The slowest operation as one word, so that it can be merged with one
 * atomic compare-and-swap: nanoseconds << 8 | enum stress_api. */
#define SLOWEST(ns, api) ((ns) << 8 | (uint64_t)(api))
#define SLOWEST_NS(w) ((w) >> 8)
#define SLOWEST_API(w) ((enum stress_api)((w)&0xff))

/* One worker's counters; written by its threads (atomic adds), read by
 * the parent at the end.  A replacement worker adds to the same slot. */
struct slot {
	uint64_t ctr[NCTR];
	uint64_t slowest; /* SLOWEST() of its slowest operation */
} __attribute__((aligned(64)));

/* The MAP_SHARED page(s) between the parent and the workers. */
struct shared {
	int stop;	      /* the parent sets it: workers finish */
	uint64_t deadline_ns; /* CLOCK_MONOTONIC end of the run (atomic:
				   --min-ops moves it on) */
	/* Per counter, atomic adds: increments begun, and acknowledged; and
	 * per down-counter, decrements begun and acknowledged. */
	uint64_t attempted[NCOUNTERS], acked[NCOUNTERS];
	uint64_t dattempted[NCOUNTERS], dacked[NCOUNTERS];
	struct slot slot[];
};

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ull),
			       .tv_nsec = (long)(ns % 1000000000ull) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* splitmix64's finalizer: a bijective 64-bit mix. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static uint64_t rng_next(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ull;
	return mix64(*s);
}

/* Uniform in [0, n), n > 0 (the bias of the modulo does not matter). */
static uint64_t rng_below(uint64_t *s, uint64_t n)
{
	return rng_next(s) % n;
}

/* Key number idx of this run: "stress:TAG:IDX:" and a filler whose length
 * depends on idx, so that key lengths vary from 18 to 55 bytes. */
static size_t key_make(const struct stress_cfg *cfg, uint32_t idx,
		       char out[KEY_MAX])
{
	int n = snprintf(out, KEY_MAX, "stress:%08" PRIx32 ":%" PRIu32 ":",
			 cfg->run_tag, idx);
	size_t len = (size_t)n, fill = (idx % 8) * 4;

	for (size_t i = 0; i < fill && len < KEY_MAX; i++)
		out[len++] = (char)('a' + (idx + i) % 26);
	return len;
}

/* The key of counter (family 'c') or log ('l') i of this run. */
static size_t key_family(const struct stress_cfg *cfg, char family, uint32_t i,
			 char out[KEY_MAX])
{
	return (size_t)snprintf(out, KEY_MAX, "stress:%08" PRIx32 ":%c%" PRIu32,
				cfg->run_tag, family, i);
}

/* A printf into a fixed buffer that truncates quietly. */
struct sbuf {
	char b[4096];
	size_t n;
};

__attribute__((format(printf, 2, 3))) static void
sb_printf(struct sbuf *s, const char *fmt, ...)
{
	va_list ap;

	if (s->n >= sizeof(s->b) - 1)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(s->b + s->n, sizeof(s->b) - s->n, fmt, ap);
	va_end(ap);
	size_t room = sizeof(s->b) - s->n;
	if (n > 0)
		s->n += (size_t)n < room ? (size_t)n : room - 1;
}

/* Writes the whole buffer to stderr in one call, so that the reports of
 * concurrent processes do not interleave line by line. */
static void sb_flush_stderr(const struct sbuf *s)
{
	size_t off = 0;

	while (off < s->n) {
		ssize_t w = write(STDERR_FILENO, s->b + off, s->n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		off += (size_t)w;
	}
}

/* ------------------------------------------------------------------------
 * Values
 *
 * A value is a struct val_hdr followed by a payload whose 8-byte words are
 * mix64(payload_seed + i * golden), the seed derived from the run's seed
 * and the writer's pid, thread and sequence number.  sum is val_sum() of
 * the whole value with the sum field read as zero.  So a value can be
 * rebuilt from its length, its key and its writer fields alone: a check
 * that fails compares the value with that rebuild to name the first bad
 * byte.
 * ------------------------------------------------------------------------ */

#define VAL_MAGIC 0x31545353u /* "SST1" */

struct val_hdr {
	uint32_t magic; /* VAL_MAGIC */
	uint32_t len;	/* the whole value's length, header included */
	uint64_t khash; /* fnv1a64() of the key it was written for */
	uint32_t pid;	/* the writer: process, */
	uint16_t tid;	/* thread of that process, */
	uint16_t via;	/* enum val_via, */
	uint64_t seq;	/* and that thread's write counter */
	uint64_t sum;	/* val_sum() of the value, this field as 0 */
};
#define VAL_HDR sizeof(struct val_hdr)
#define VAL_SUM_OFF offsetof(struct val_hdr, sum)
_Static_assert(VAL_HDR == 40, "val_hdr has no padding");
_Static_assert(VAL_SUM_OFF % 8 == 0, "val_sum() reads sum as one word");

static uint64_t payload_seed(uint64_t seed, uint32_t pid, uint16_t tid,
			     uint64_t seq)
{
	return mix64(seed ^ mix64(((uint64_t)pid << 16 | tid) ^
				  mix64(seq + 0x5bd1e995u)));
}

static void payload_fill(uint8_t *p, size_t n, uint64_t pseed)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t w = mix64(pseed + (i / 8) * 0x9e3779b97f4a7c15ull);
		memcpy(p + i, &w, n - i < 8 ? n - i : 8);
	}
}

/* Checksum of v[0..len) with the sum field as 0.  Each step is a bijection
 * of the state for a given word, so a change to any single word always
 * changes the result. */
static uint64_t val_sum(const uint8_t *v, size_t len)
{
	uint64_t h = 0x243f6a8885a308d3ull;

	for (size_t off = 0; off < len; off += 8) {
		uint64_t w = 0;
		if (off != VAL_SUM_OFF)
			memcpy(&w, v + off, len - off < 8 ? len - off : 8);
		h = (h ^ w) * 0x9fb21c651e98df25ull;
		h ^= h >> 29;
	}
	return mix64(h ^ len);
}

/* Builds the value of length len (>= VAL_HDR) for a key hash. */
static void val_make(uint8_t *v, size_t len, uint64_t khash, uint64_t seed,
		     uint32_t pid, uint16_t tid, uint64_t seq, enum val_via via)
{
	struct val_hdr h = { .magic = VAL_MAGIC,
			     .len = (uint32_t)len,
			     .khash = khash,
			     .pid = pid,
			     .tid = tid,
			     .via = (uint16_t)via,
			     .seq = seq };

	memcpy(v, &h, VAL_HDR);
	payload_fill(v + VAL_HDR, len - VAL_HDR,
		     payload_seed(seed, pid, tid, seq));
	h.sum = val_sum(v, len);
	memcpy(v + VAL_SUM_OFF, &h.sum, sizeof(h.sum));
}

/* What is wrong with a value returned for a key: NULL if nothing. */
static const char *val_problem(const uint8_t *v, size_t vlen, uint64_t khash)
{
	struct val_hdr h;

	if (vlen < VAL_HDR)
		return "shorter than the value header";
	memcpy(&h, v, VAL_HDR);
	if (h.magic != VAL_MAGIC)
		return "bad magic (not a value of this program, or its start "
		       "overwritten)";
	if (h.len != vlen)
		return "length in the header differs from the length returned";
	if (h.khash != khash)
		return "value of another key (key hash differs)";
	if (h.via >= NVIAS)
		return "header field 'via' out of range";
	if (val_sum(v, vlen) != h.sum)
		return "checksum mismatch (torn or corrupted value)";
	return NULL;
}

/* A log record (see the top). */
struct log_rec {
	uint64_t tag; /* fnv1a64() of the key ^ LOG_TAG */
	uint32_t pid; /* the writer: process, */
	uint16_t tid; /* thread, */
	uint16_t dir; /* 0 appended, 1 prepended, */
	uint32_t seq; /* and that thread's record counter */
	uint32_t sum; /* of the fields above */
};
_Static_assert(sizeof(struct log_rec) == 24, "log_rec has no padding");
#define LOG_TAG 0x6c6f672d72656331ull

static uint32_t log_sum(const struct log_rec *r)
{
	return (uint32_t)mix64(r->tag ^
			       mix64((uint64_t)r->pid << 32 |
				     (uint64_t)r->tid << 16 | r->dir) ^
			       mix64(r->seq));
}

/* What is wrong with a log returned for a key: NULL if nothing. */
static const char *log_problem(const uint8_t *v, size_t vlen, uint64_t khash)
{
	struct log_rec a, b;
	size_t n = vlen / sizeof(a);

	if (vlen == 0 || vlen % sizeof(a))
		return "log length is not a whole number of records";
	for (size_t i = 0; i < n; i++) {
		memcpy(&a, v + i * sizeof(a), sizeof(a));
		if (a.tag != (khash ^ LOG_TAG) || a.dir > 1)
			return "log record of another key, or damaged";
		if (a.sum != log_sum(&a))
			return "log record checksum mismatch (torn log)";
		for (size_t j = 0; j < i; j++) {
			memcpy(&b, v + j * sizeof(b), sizeof(b));
			if (b.pid != a.pid || b.tid != a.tid || b.dir != a.dir)
				continue;
			/* b is left of a: appended rise, prepended fall. */
			if (a.dir ? b.seq <= a.seq : b.seq >= a.seq)
				return "log records twice or out of order "
				       "(parts of two versions joined)";
		}
	}
	return NULL;
}

static void sb_hexdump(struct sbuf *s, const char *label, const uint8_t *p,
		       size_t from, size_t to)
{
	sb_printf(s, "  %-9s [%zu..%zu):", label, from, to);
	for (size_t i = from; i < to; i++)
		sb_printf(s, " %02x", p[i]);
	sb_printf(s, "\n");
}

/* Appends the precise report on a bad value: the fields expected and
 * found, the first byte that differs from the value its header's writer
 * would have written for this key, and the bytes around it.  scratch holds
 * at least vlen bytes. */
static void val_report(struct sbuf *s, const char *problem, const uint8_t *v,
		       size_t vlen, const char *key, size_t klen, uint64_t seed,
		       uint8_t *scratch)
{
	uint64_t khash = fnv1a64(key, klen);
	struct val_hdr h = { 0 };

	memcpy(&h, v, vlen < VAL_HDR ? vlen : VAL_HDR);
	sb_printf(s, "  problem   %s\n", problem);
	sb_printf(s, "  key       \"%.*s\" (%zu bytes)\n", (int)klen, key,
		  klen);
	sb_printf(s, "  length    returned %zu, header says %" PRIu32 "\n",
		  vlen, h.len);
	sb_printf(s, "  magic     expected 0x%08x found 0x%08" PRIx32 "\n",
		  VAL_MAGIC, h.magic);
	sb_printf(s,
		  "  key hash  expected 0x%016" PRIx64 " found 0x%016" PRIx64
		  "%s\n",
		  khash, h.khash,
		  khash == h.khash ? "" : "  <- not this key's value");
	sb_printf(s,
		  "  writer    pid %" PRIu32 " thread %u seq %" PRIu64
		  " via %s\n",
		  h.pid, (unsigned)h.tid, h.seq,
		  h.via < NVIAS ? via_names[h.via] : "(out of range)");
	if (vlen < VAL_HDR)
		return;
	sb_printf(s,
		  "  checksum  stored 0x%016" PRIx64 " computed 0x%016" PRIx64
		  "\n",
		  h.sum, val_sum(v, vlen));

	val_make(scratch, vlen, khash, seed, h.pid, h.tid, h.seq,
		 h.via < NVIAS ? (enum val_via)h.via : VIA_SET);
	if (h.via >= NVIAS)
		memcpy(scratch + offsetof(struct val_hdr, via), &h.via,
		       sizeof(h.via));
	size_t bad = 0;
	while (bad < vlen && scratch[bad] == v[bad])
		bad++;
	if (bad == vlen) {
		sb_printf(s, "  first bad byte: none (every byte is what its "
			     "writer wrote)\n");
		return;
	}
	size_t nbad = 0;
	for (size_t i = bad; i < vlen; i++)
		nbad += scratch[i] != v[i];
	sb_printf(s,
		  "  first bad byte at offset %zu of %zu (%s): expected "
		  "0x%02x found 0x%02x; %zu byte(s) differ in all\n",
		  bad, vlen, bad < VAL_HDR ? "header" : "payload", scratch[bad],
		  v[bad], nbad);
	size_t from = bad > 8 ? bad - 8 : 0;
	size_t to = bad + 8 < vlen ? bad + 8 : vlen;
	sb_hexdump(s, "expected", scratch, from, to);
	sb_hexdump(s, "found", v, from, to);
}

/* ------------------------------------------------------------------------
 * The worker
 * ------------------------------------------------------------------------ */

struct worker {
	const struct stress_cfg *cfg;
	struct shared *sh;
	struct slot *slot;
	unsigned index; /* slot number */
	uint32_t pid;
	shmc *c;
	int quit; /* set when the worker could not start all its
				   threads: the others end at once */
	pthread_mutex_t fail_lock; /* the first thread to fail reports */
};

struct wthread {
	struct worker *w;
	pthread_t th;
	uint16_t tid;
	uint64_t rng;
	uint64_t seq;  /* values written */
	uint32_t lseq; /* log records written */
	uint64_t nops;
	uint64_t
		op_start; /* clock_mono_ns() when the current operation began */
	unsigned noted;	  /* lock errors already described on stderr */
	uint64_t ctr[NCTR];   /* not yet flushed to the slot */
	uint64_t slowest;     /* SLOWEST() of its slowest operation */
	enum stress_api api;  /* the call in progress */
	uint8_t *wbuf, *rbuf; /* max_value bytes each */
	uint8_t *scratch;     /* for reports */
};

static void wthread_flush(struct wthread *t)
{
	struct slot *s = t->w->slot;

	for (int i = 0; i < NCTR; i++) {
		if (t->ctr[i])
			__atomic_fetch_add(&s->ctr[i], t->ctr[i],
					   __ATOMIC_RELAXED);
		t->ctr[i] = 0;
	}
	uint64_t cur = __atomic_load_n(&s->slowest, __ATOMIC_RELAXED);
	while (t->slowest > cur &&
	       !__atomic_compare_exchange_n(&s->slowest, &cur, t->slowest, true,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/* Ends the worker process after a report: counters flushed, the report
 * written in one piece by the first thread that gets here (the others
 * block until _exit() ends them). */
__attribute__((noreturn)) static void wthread_fail(struct wthread *t,
						   const struct sbuf *report,
						   enum worker_exit code)
{
	pthread_mutex_lock(&t->w->fail_lock);
	if (code == WORKER_BAD_VALUE)
		t->ctr[CTR_bad]++;
	wthread_flush(t);
	sb_flush_stderr(report);
	_exit(code);
}

/* Opening lines of a report from this thread. */
static void sb_who(struct sbuf *s, const struct wthread *t, const char *what)
{
	sb_printf(s, PROG ": %s\n", what);
	sb_printf(s,
		  "  where     worker %u (pid %" PRIu32 ") thread %u, %s, "
		  "operation %" PRIu64 " of this thread\n",
		  t->w->index, t->w->pid, (unsigned)t->tid, api_names[t->api],
		  t->nops + 1);
}

/* Sorts a return code that is neither 0 nor an expected miss: counts the
 * two that a dying lock holder makes legitimate (the operation then had
 * no effect) and ends the worker on any other. */
static void wthread_rc(struct wthread *t, int rc, const char *key, size_t klen)
{
	struct sbuf s = { .n = 0 };

	if (rc == -ETIMEDOUT || rc == -EUCLEAN) {
		t->ctr[rc == -ETIMEDOUT ? CTR_etimedout : CTR_euclean]++;
		/* Rare and worth a look: say when, where and how long. */
		if (t->noted++ < NOTE_MAX) {
			sb_printf(&s,
				  PROG ": note: worker %u (pid %" PRIu32
				       ") thread %u: %s \"%.*s\": %s after "
				       "%.1f ms\n",
				  t->w->index, t->w->pid, (unsigned)t->tid,
				  api_names[t->api], (int)klen, key,
				  rc == -ETIMEDOUT ? "-ETIMEDOUT" : "-EUCLEAN",
				  (double)(clock_mono_ns() - t->op_start) /
					  1e6);
			sb_flush_stderr(&s);
		}
		return;
	}
	sb_who(&s, t, "UNEXPECTED ERROR");
	sb_printf(&s, "  key       \"%.*s\"\n  returned  %d (%s)\n", (int)klen,
		  key, rc, shmc_strerror(rc));
	wthread_fail(t, &s, WORKER_ERROR);
}

/* Validates a value a get returned; a bad one ends the worker. */
static void wthread_check(struct wthread *t, const uint8_t *v, size_t vlen,
			  const char *key, size_t klen)
{
	const char *problem = val_problem(v, vlen, fnv1a64(key, klen));

	if (!problem)
		return;
	struct sbuf s = { .n = 0 };
	sb_who(&s, t, "BAD VALUE");
	val_report(&s, problem, v, vlen, key, klen, t->w->cfg->seed,
		   t->scratch);
	wthread_fail(t, &s, WORKER_BAD_VALUE);
}

/* A value length in [VAL_HDR, max_value]: mostly log-uniform (many small
 * values, some large), one in 16 uniform over the whole range so that
 * values near the largest item - those that wrap rings - come often. */
static size_t wthread_len(struct wthread *t)
{
	size_t maxv = t->w->cfg->max_value, lo = VAL_HDR, len;

	if (maxv <= lo)
		return lo;
	if (rng_below(&t->rng, 16) == 0) {
		len = lo + rng_below(&t->rng, maxv - lo + 1);
	} else {
		unsigned top = 63 - (unsigned)__builtin_clzll(maxv);
		unsigned bits = 6 + (unsigned)rng_below(&t->rng, top - 5 + 1);
		uint64_t base = 1ull << (bits - 1);
		len = (size_t)(base + rng_below(&t->rng, base));
	}
	return len < lo ? lo : len > maxv ? maxv : len;
}

static uint32_t wthread_ttl(struct wthread *t)
{
	return rng_below(&t->rng, 10) == 0
		       ? 1 + (uint32_t)rng_below(&t->rng, TTL_MAX)
		       : 0;
}

/* Writes the next value of this thread for key into wbuf; returns its
 * length.  With --inject-bad, worker 0's thread 0 damages one in
 * INJECT_EVERY of them after the checksum and says so on stderr. */
static size_t wthread_value(struct wthread *t, const char *key, size_t klen,
			    enum val_via via)
{
	size_t len = wthread_len(t);

	t->seq++;
	val_make(t->wbuf, len, fnv1a64(key, klen), t->w->cfg->seed, t->w->pid,
		 t->tid, t->seq, via);
	if (t->w->cfg->inject_bad && t->w->index == 0 && t->tid == 0 &&
	    len > VAL_HDR && t->seq % INJECT_EVERY == 0) {
		size_t off = VAL_HDR + rng_below(&t->rng, len - VAL_HDR);
		t->wbuf[off] ^= (uint8_t)(1 + rng_below(&t->rng, 255));
		struct sbuf s = { .n = 0 };
		sb_printf(&s,
			  PROG ": inject-bad: key \"%.*s\" offset %zu of "
			       "%zu\n",
			  (int)klen, key, off, len);
		sb_flush_stderr(&s);
	}
	return len;
}

/* The loader of shmc_get_or_load: a valid value for the key. */
struct load_arg {
	struct wthread *t;
	bool ran;
};

static int stress_loader(const void *key, size_t klen, void *buf, size_t cap,
			 size_t *vlen, uint32_t *ttl_s, void *arg)
{
	struct load_arg *la = arg;
	struct wthread *t = la->t;
	size_t len = wthread_len(t);

	if (len > cap) /* not reached: cap is max_value */
		return -ENOBUFS;
	t->seq++;
	val_make(buf, len, fnv1a64(key, klen), t->w->cfg->seed, t->w->pid,
		 t->tid, t->seq, VIA_LOAD);
	*vlen = len;
	*ttl_s = wthread_ttl(t);
	la->ran = true;
	return 0;
}

/* The reader of shmc_read: copies the value out of the ring (brief, under
 * the segment lock) to be checked after the lock is released. */
struct read_arg {
	uint8_t *buf;
	size_t cap, len;
	bool wrapped;
};

static int stress_reader(const void *p1, size_t n1, const void *p2, size_t n2,
			 void *arg)
{
	struct read_arg *ra = arg;

	if (n1 + n2 > ra->cap || (n2 && !p2) || (n1 && !p1))
		return -ENOBUFS;
	if (n1)
		memcpy(ra->buf, p1, n1);
	if (n2)
		memcpy(ra->buf + n1, p2, n2);
	ra->len = n1 + n2;
	ra->wrapped = n2 > 0;
	return 0;
}

static void op_get(struct wthread *t, const char *key, size_t klen)
{
	shmc *c = t->w->c;
	size_t cap = t->w->cfg->max_value, vlen = 0;
	uint64_t r = rng_below(&t->rng, 100);
	int rc;

	t->ctr[CTR_gets]++;
	if (r < 70) {
		t->api = API_get;
		rc = shmc_get(c, key, klen, t->rbuf, cap, &vlen);
	} else if (r < 78) {
		t->api = API_peek;
		t->ctr[CTR_peeks]++;
		rc = shmc_peek(c, key, klen, t->rbuf, cap, &vlen);
	} else if (r < 86) {
		uint32_t exp = 0;
		t->api = API_get_ex;
		t->ctr[CTR_get_exs]++;
		rc = shmc_get_ex(c, key, klen, t->rbuf, cap, &vlen, &exp);
		/* No TTL of this run is longer than TTL_MAX; allow for the
		 * daemon's clock tick and scheduling. */
		if (rc == 0 && exp != 0 &&
		    (uint64_t)exp > (uint64_t)time(NULL) + TTL_MAX + 5) {
			struct sbuf s = { .n = 0 };
			sb_who(&s, t, "UNEXPECTED EXPIRY");
			sb_printf(&s,
				  "  key       \"%.*s\"\n"
				  "  expire_at %" PRIu32 ", now %lld, no "
				  "TTL above %d s was set\n",
				  (int)klen, key, exp, (long long)time(NULL),
				  TTL_MAX);
			wthread_fail(t, &s, WORKER_ERROR);
		}
	} else if (r < 94) {
		struct read_arg ra = { .buf = t->rbuf, .cap = cap };
		t->api = API_read;
		t->ctr[CTR_reads]++;
		rc = shmc_read(c, key, klen, stress_reader, &ra);
		vlen = ra.len;
		if (rc == 0 && ra.wrapped)
			t->ctr[CTR_wrapped]++;
	} else {
		struct load_arg la = { .t = t };
		t->api = API_get_or_load;
		t->ctr[CTR_get_or_loads]++;
		rc = shmc_get_or_load(c, key, klen, t->rbuf, cap, &vlen,
				      stress_loader, &la);
		if (rc == 0 && la.ran) {
			t->ctr[CTR_loads]++;
			t->ctr[CTR_misses]++;
			wthread_check(t, t->rbuf, vlen, key, klen);
			return;
		}
	}
	if (rc == 0) {
		t->ctr[CTR_hits]++;
		wthread_check(t, t->rbuf, vlen, key, klen);
	} else if (rc == -ENOENT) {
		t->ctr[CTR_misses]++;
	} else {
		wthread_rc(t, rc, key, klen);
	}
}

static void op_set(struct wthread *t, const char *key, size_t klen)
{
	shmc *c = t->w->c;
	uint64_t r = rng_below(&t->rng, 100);
	uint32_t ttl = wthread_ttl(t);
	int rc;

	if (r < 85) {
		size_t len = wthread_value(t, key, klen, VIA_SET);
		t->api = API_set;
		rc = shmc_set(c, key, klen, t->wbuf, len, ttl);
		if (rc == 0)
			t->ctr[CTR_sets]++;
		else
			wthread_rc(t, rc, key, klen);
		return;
	}

	/* A reservation: the segment stays locked until commit or abort, so
	 * the value is built before and only copied in between. */
	struct shmc_reservation res;
	size_t len = wthread_value(t, key, klen, VIA_RESERVE);
	bool abort_it = r >= 97;

	t->api = API_reserve;
	rc = shmc_reserve(c, key, klen, len, ttl, &res);
	if (rc) {
		wthread_rc(t, rc, key, klen);
		return;
	}
	if (res.n1 + res.n2 != len || (res.n2 && !res.p2)) {
		struct sbuf s = { .n = 0 };
		shmc_abort(c, &res);
		sb_who(&s, t, "UNEXPECTED RESERVATION");
		sb_printf(&s,
			  "  key       \"%.*s\"\n  asked %zu bytes, got "
			  "%zu + %zu\n",
			  (int)klen, key, len, res.n1, res.n2);
		wthread_fail(t, &s, WORKER_ERROR);
	}
	memcpy(res.p1, t->wbuf, res.n1);
	if (res.n2)
		memcpy(res.p2, t->wbuf + res.n1, res.n2);
	if (res.n2)
		t->ctr[CTR_wrapped]++;
	if (abort_it) {
		t->api = API_abort;
		shmc_abort(c, &res);
		t->ctr[CTR_aborts]++;
		return;
	}
	t->api = API_commit;
	rc = shmc_commit(c, &res);
	if (rc) {
		wthread_rc(t, rc, key, klen);
		return;
	}
	t->ctr[CTR_sets]++;
	t->ctr[CTR_reserves]++;
}

static void op_del(struct wthread *t, const char *key, size_t klen)
{
	int rc;

	t->api = API_del;
	rc = shmc_del(t->w->c, key, klen);
	t->ctr[CTR_dels]++;
	if (rc && rc != -ENOENT)
		wthread_rc(t, rc, key, klen);
}

static void op_touch(struct wthread *t, const char *key, size_t klen)
{
	int rc;

	t->api = API_touch;
	rc = shmc_touch(t->w->c, key, klen, wthread_ttl(t));
	t->ctr[CTR_touches]++;
	if (rc && rc != -ENOENT)
		wthread_rc(t, rc, key, klen);
}

/* A bad log or counter ends the worker, as a bad value does. */
static void wthread_bad(struct wthread *t, const char *problem,
			const uint8_t *v, size_t vlen, const char *key,
			size_t klen)
{
	struct sbuf s = { .n = 0 };

	sb_who(&s, t, "BAD VALUE");
	sb_printf(&s, "  key       \"%.*s\"\n  problem   %s\n", (int)klen, key,
		  problem);
	sb_hexdump(&s, "value", v, 0, vlen < 96 ? vlen : 96);
	wthread_fail(t, &s, WORKER_BAD_VALUE);
}

static void op_add(struct wthread *t, const char *key, size_t klen)
{
	struct shmc_store_opts o = { .ttl_s = wthread_ttl(t) };
	size_t len = wthread_value(t, key, klen, VIA_ADD);
	int rc;

	t->api = API_add;
	t->ctr[CTR_adds]++;
	rc = shmc_add(t->w->c, key, klen, t->wbuf, len, &o, NULL);
	if (rc && rc != -EEXIST)
		wthread_rc(t, rc, key, klen);
}

/* Reads the value and its version, checks it, and stores a new one only
 * if the version still holds. */
static void op_cas(struct wthread *t, const char *key, size_t klen)
{
	struct shmc_store_opts o = { .ttl_s = wthread_ttl(t) };
	struct shmc_item m;
	int rc;

	t->api = API_cas;
	t->ctr[CTR_cases]++;
	rc = shmc_get_item(t->w->c, key, klen, t->rbuf, t->w->cfg->max_value,
			   &m);
	if (rc == -ENOENT)
		return;
	if (rc) {
		wthread_rc(t, rc, key, klen);
		return;
	}
	wthread_check(t, t->rbuf, m.vlen, key, klen);
	size_t len = wthread_value(t, key, klen, VIA_CAS);
	rc = shmc_cas(t->w->c, key, klen, t->wbuf, len, m.cas, &o, NULL);
	if (rc && rc != -EEXIST && rc != -ENOENT)
		wthread_rc(t, rc, key, klen);
}

/* Counter i + 1, with incr's init half the time; a missing counter
 * without it is added as "0" (no increment).  A quarter of the time,
 * down-counter i - 1 instead, from DECR_START, with decr's init or an add
 * of DECR_START the same ways. */
static void op_incr(struct wthread *t)
{
	struct shared *sh = t->w->sh;
	shmc *c = t->w->c;
	uint32_t i = (uint32_t)rng_below(&t->rng, NCOUNTERS);
	bool init = rng_below(&t->rng, 2);
	bool decr = rng_below(&t->rng, 4) == 0;
	uint64_t *att = decr ? &sh->dattempted[i] : &sh->attempted[i];
	uint64_t *ack = decr ? &sh->dacked[i] : &sh->acked[i];
	uint64_t start = decr ? DECR_START : 0;
	char key[KEY_MAX], digits[24];
	size_t klen = key_family(t->w->cfg, decr ? 'd' : 'c', i, key);
	uint64_t v;
	int rc;

	t->api = decr ? API_decr : API_incr;
	t->ctr[CTR_incrs]++;
	t->ctr[CTR_decrs] += decr;
	__atomic_fetch_add(att, 1, __ATOMIC_SEQ_CST);
	if (decr)
		rc = init ? shmc_decr_init(c, key, klen, 1, start, 0, &v)
			  : shmc_decr(c, key, klen, 1, &v);
	else
		rc = init ? shmc_incr_init(c, key, klen, 1, start, 0, &v)
			  : shmc_incr(c, key, klen, 1, &v);
	if (rc == 0) {
		__atomic_fetch_add(ack, 1, __ATOMIC_SEQ_CST);
		/* No value can count more changes than were begun. */
		uint64_t n = decr ? (v <= start ? start - v : UINT64_MAX) : v;
		if (n > __atomic_load_n(att, __ATOMIC_SEQ_CST))
			wthread_bad(t,
				    decr ? "down-counter below its start less "
					   "the decrements begun"
					 : "counter above the increments begun",
				    (const uint8_t *)key, 0, key, klen);
		return;
	}
	if (rc == -EDOM)
		wthread_bad(t, "counter is not a number", (const uint8_t *)key,
			    0, key, klen);
	if (rc == -ENOENT && !init) {
		int len = snprintf(digits, sizeof(digits), "%" PRIu64, start);
		rc = shmc_add(c, key, klen, digits, (size_t)len, NULL, NULL);
		if (rc == -EEXIST)
			rc = 0;
	}
	if (rc)
		wthread_rc(t, rc, key, klen);
}

/* Reads a log and checks it (one in four), or appends or prepends a
 * record; a missing or full log starts anew with one record. */
static void op_append(struct wthread *t)
{
	shmc *c = t->w->c;
	uint32_t i = (uint32_t)rng_below(&t->rng, NLOGS);
	uint64_t r = rng_below(&t->rng, 4);
	char key[KEY_MAX];
	size_t klen = key_family(t->w->cfg, 'l', i, key), vlen = 0;
	uint64_t khash = fnv1a64(key, klen);
	struct log_rec rec = { .tag = khash ^ LOG_TAG,
			       .pid = t->w->pid,
			       .tid = t->tid,
			       .dir = r == 1,
			       .seq = ++t->lseq };
	int rc;

	t->api = API_append;
	t->ctr[CTR_appends]++;
	if (r == 0) {
		rc = shmc_get(t->w->c, key, klen, t->rbuf, t->w->cfg->max_value,
			      &vlen);
		if (rc == 0) {
			const char *bad = log_problem(t->rbuf, vlen, khash);
			if (bad)
				wthread_bad(t, bad, t->rbuf, vlen, key, klen);
		} else if (rc != -ENOENT && rc != -ENOBUFS) {
			/* -ENOBUFS: other threads appended between a writer's
			 * length check and its append; read it another time. */
			wthread_rc(t, rc, key, klen);
		}
		return;
	}
	rec.sum = log_sum(&rec);
	/* A log fits the read buffer, max_value bytes, but for the records
	 * others append between this check and this append. */
	size_t lmax = t->w->cfg->max_value / sizeof(rec);
	if (lmax > LOG_RECS)
		lmax = LOG_RECS;
	rc = shmc_peek(t->w->c, key, klen, NULL, 0, &vlen);
	if (rc == -ENOBUFS && vlen + sizeof(rec) > lmax * sizeof(rec))
		rc = shmc_set_ex(c, key, klen, &rec, sizeof(rec), NULL, NULL);
	else if (r == 1)
		rc = shmc_prepend(c, key, klen, &rec, sizeof(rec), NULL);
	else
		rc = shmc_append(c, key, klen, &rec, sizeof(rec), NULL);
	if (rc == -ENOENT) {
		rc = shmc_add(c, key, klen, &rec, sizeof(rec), NULL, NULL);
		if (rc == -EEXIST)
			rc = 0;
	}
	if (rc)
		wthread_rc(t, rc, key, klen);
}

/* A quarter of the operations go to a hot set (1/64 of the keys), so that
 * processes contend for the same keys and segments. */
static uint32_t wthread_key(struct wthread *t)
{
	uint32_t n = t->w->cfg->keys, hot = n / 64 ? n / 64 : 1;

	if (rng_below(&t->rng, 4) == 0)
		return (uint32_t)rng_below(&t->rng, hot);
	return (uint32_t)rng_below(&t->rng, n);
}

static enum stress_op wthread_op(struct wthread *t)
{
	const struct stress_cfg *cfg = t->w->cfg;
	unsigned r = (unsigned)rng_below(&t->rng, cfg->mix_total);

	for (int op = 0; op < NOPS; op++) {
		if (r < cfg->mix[op])
			return (enum stress_op)op;
		r -= cfg->mix[op];
	}
	return OP_get; /* not reached: mix_total is the sum */
}

static void *wthread_main(void *arg)
{
	struct wthread *t = arg;
	const struct shared *sh = t->w->sh;
	char key[KEY_MAX];

	for (;;) {
		uint64_t t0 = clock_mono_ns();
		t->op_start = t0;
		if (__atomic_load_n(&sh->stop, __ATOMIC_RELAXED) ||
		    __atomic_load_n(&t->w->quit, __ATOMIC_RELAXED) ||
		    t0 > __atomic_load_n(&sh->deadline_ns, __ATOMIC_RELAXED) +
				    STOP_GRACE_NS)
			break;
		size_t klen = key_make(t->w->cfg, wthread_key(t), key);
		switch (wthread_op(t)) {
		case OP_get:
			op_get(t, key, klen);
			break;
		case OP_set:
			op_set(t, key, klen);
			break;
		case OP_del:
			op_del(t, key, klen);
			break;
		case OP_touch:
			op_touch(t, key, klen);
			break;
		case OP_add:
			op_add(t, key, klen);
			break;
		case OP_cas:
			op_cas(t, key, klen);
			break;
		case OP_incr:
			op_incr(t);
			break;
		case OP_append:
			op_append(t);
			break;
		case NOPS:
			break;
		}
		uint64_t dt = clock_mono_ns() - t0;
		if (SLOWEST(dt, t->api) > t->slowest)
			t->slowest = SLOWEST(dt, t->api);
		if (dt > SLOW_OP_NS)
			t->ctr[CTR_slow_ops]++;
		t->ctr[CTR_ops]++;
		if (++t->nops % FLUSH_EVERY == 0)
			wthread_flush(t);
	}
	wthread_flush(t);
	return NULL;
}

/* The body of a worker process; returns its exit status. */
static enum worker_exit worker_main(const struct stress_cfg *cfg,
				    struct shared *sh, unsigned index,
				    uint64_t rng_seed)
{
	struct worker w = { .cfg = cfg,
			    .sh = sh,
			    .slot = &sh->slot[index],
			    .index = index,
			    .pid = (uint32_t)getpid() };
	struct wthread *ts = calloc(cfg->threads, sizeof(*ts));
	enum worker_exit ret = WORKER_OK;
	unsigned started = 0;
	int rc;

	pthread_mutex_init(&w.fail_lock, NULL);
	if (!ts) {
		fprintf(stderr, PROG ": worker %u: out of memory\n", index);
		return WORKER_SETUP;
	}
	if ((rc = shmc_open(&w.c, cfg->socket)) != 0) {
		fprintf(stderr, PROG ": worker %u: shmc_open: %s\n", index,
			shmc_strerror(rc));
		free(ts);
		return WORKER_SETUP;
	}
	for (unsigned i = 0; i < cfg->threads; i++) {
		struct wthread *t = &ts[i];
		t->w = &w;
		t->tid = (uint16_t)i;
		t->rng = mix64(rng_seed ^ mix64(i + 1));
		t->wbuf = malloc(cfg->max_value);
		t->rbuf = malloc(cfg->max_value);
		t->scratch = malloc(cfg->max_value);
		if (!t->wbuf || !t->rbuf || !t->scratch) {
			fprintf(stderr, PROG ": worker %u: out of memory\n",
				index);
			ret = WORKER_SETUP;
			break;
		}
		if ((rc = pthread_create(&t->th, NULL, wthread_main, t))) {
			fprintf(stderr,
				PROG ": worker %u: pthread_create: %s\n", index,
				strerror(rc));
			ret = WORKER_SETUP;
			break;
		}
		started++;
	}
	if (ret != WORKER_OK)
		__atomic_store_n(&w.quit, 1, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < started; i++)
		pthread_join(ts[i].th, NULL);
	for (unsigned i = 0; i < cfg->threads; i++) {
		free(ts[i].wbuf);
		free(ts[i].rbuf);
		free(ts[i].scratch);
	}
	free(ts);
	shmc_close(w.c);
	return ret;
}

/* ------------------------------------------------------------------------
 * The parent: spawning, chaos, reaping
 * ------------------------------------------------------------------------ */

/* Set by SIGINT/SIGTERM in the parent: end the run early. */
static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
}

struct proc {
	pid_t pid;   /* 0: not running */
	bool killed; /* we sent it SIGKILL (chaos or the final reap) */
};

struct run {
	const struct stress_cfg *cfg;
	struct shared *sh;
	size_t sh_size;
	struct proc *procs;
	uint64_t rng;
	uint64_t starts, kills;
	uint64_t bad_exits;  /* workers that reported a bad value */
	uint64_t unexpected; /* worker failures other than bad values */
	bool stopping;
	char why[256]; /* the first failure, for the summary */
};

__attribute__((format(printf, 2, 3))) static void run_fail(struct run *r,
							   const char *fmt, ...)
{
	va_list ap;

	if (r->why[0])
		return;
	va_start(ap, fmt);
	vsnprintf(r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
}

/* Forks the worker of slot i.  Returns 0 or a negative errno. */
static int run_spawn(struct run *r, unsigned i)
{
	uint64_t seed = rng_next(&r->rng);
	pid_t parent = getpid();

	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* The child: dies with the parent, leaves SIGINT to it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(WORKER_SETUP);
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_DFL);
		_exit(worker_main(r->cfg, r->sh, i, seed ^ (uint64_t)getpid()));
	}
	r->procs[i] = (struct proc){ .pid = pid };
	r->starts++;
	return 0;
}

/* Accounts for a worker that ended; starts a replacement for a chaos
 * victim while the run goes on. */
static void run_reaped(struct run *r, pid_t pid, int status)
{
	unsigned i;

	for (i = 0; i < r->cfg->procs; i++)
		if (r->procs[i].pid == pid)
			break;
	if (i == r->cfg->procs)
		return; /* not ours */
	bool killed = r->procs[i].killed;
	r->procs[i].pid = 0;

	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && killed) {
		if (!r->stopping) {
			int rc = run_spawn(r, i);
			if (rc) {
				r->unexpected++;
				run_fail(r,
					 "cannot fork a replacement "
					 "worker: %s",
					 strerror(-rc));
			}
		}
		return;
	}
	if (WIFEXITED(status)) {
		switch (WEXITSTATUS(status)) {
		case WORKER_OK:
			if (!r->stopping) {
				r->unexpected++;
				run_fail(r,
					 "worker %u (pid %d) stopped "
					 "before the end",
					 i, (int)pid);
			}
			return;
		case WORKER_BAD_VALUE:
			r->bad_exits++;
			run_fail(r,
				 "worker %u (pid %d) found a bad value "
				 "(report above)",
				 i, (int)pid);
			return;
		case WORKER_ERROR:
			r->unexpected++;
			run_fail(r,
				 "worker %u (pid %d) got an unexpected "
				 "error (report above)",
				 i, (int)pid);
			return;
		default:
			r->unexpected++;
			run_fail(r,
				 "worker %u (pid %d) could not start or "
				 "exited with status %d",
				 i, (int)pid, WEXITSTATUS(status));
			return;
		}
	}
	r->unexpected++;
	run_fail(r, "worker %u (pid %d) died of signal %d (%s)", i, (int)pid,
		 WIFSIGNALED(status) ? WTERMSIG(status) : 0,
		 WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "?");
}

static void run_reap_nohang(struct run *r)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		run_reaped(r, pid, status);
}

static unsigned run_alive(const struct run *r)
{
	unsigned n = 0;

	for (unsigned i = 0; i < r->cfg->procs; i++)
		n += r->procs[i].pid != 0;
	return n;
}

/* SIGKILLs one random running worker that is not already dying. */
static void run_chaos_kill(struct run *r)
{
	unsigned n = r->cfg->procs, cand[MAX_PROCS], k = 0;

	for (unsigned i = 0; i < n; i++)
		if (r->procs[i].pid && !r->procs[i].killed)
			cand[k++] = i;
	if (k == 0)
		return;
	unsigned i = cand[rng_below(&r->rng, k)];
	if (kill(r->procs[i].pid, SIGKILL) == 0) {
		r->procs[i].killed = true;
		r->kills++;
	}
}

/* The operations the workers have flushed so far (up to FLUSH_EVERY per
 * thread are not counted yet). */
static uint64_t run_ops(const struct run *r)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < r->cfg->procs; i++)
		n += __atomic_load_n(&r->sh->slot[i].ctr[CTR_ops],
				     __ATOMIC_RELAXED);
	return n;
}

/* Runs the workers to the deadline and --min-ops (or the first failure),
 * with chaos if asked; then stops them and waits for them. */
static void run_workers(struct run *r, double *elapsed_s)
{
	const struct stress_cfg *cfg = r->cfg;
	uint64_t start = clock_mono_ns();
	uint64_t interval = (uint64_t)cfg->chaos_ms * 1000000ull;
	uint64_t next_kill = start + interval;

	r->sh->deadline_ns = start + (uint64_t)(cfg->duration_s * 1e9);
	for (unsigned i = 0; i < cfg->procs && !r->why[0]; i++) {
		int rc = run_spawn(r, i);
		if (rc) {
			r->unexpected++;
			run_fail(r, "cannot fork: %s", strerror(-rc));
		}
	}
	while (!r->why[0] && !interrupted) {
		uint64_t now = clock_mono_ns();
		if (now >= r->sh->deadline_ns) {
			if (run_ops(r) >= cfg->min_ops)
				break;
			/* --min-ops: on, 100 ms at a time. */
			__atomic_store_n(&r->sh->deadline_ns,
					 now + 100000000ull, __ATOMIC_RELAXED);
		}
		run_reap_nohang(r);
		if (cfg->chaos && now >= next_kill) {
			run_chaos_kill(r);
			next_kill += interval;
			if (next_kill < now)
				next_kill = now + interval;
		}
		uint64_t left = r->sh->deadline_ns - now, nap = 2000000ull;
		if (cfg->chaos && next_kill > now && next_kill - now < nap)
			nap = next_kill - now;
		sleep_ns(left < nap ? left : nap);
	}
	*elapsed_s = (double)(clock_mono_ns() - start) / 1e9;

	/* Stop: ask, then wait, then kill what does not listen. */
	r->stopping = true;
	__atomic_store_n(&r->sh->stop, 1, __ATOMIC_RELAXED);
	uint64_t limit = clock_mono_ns() + REAP_TIMEOUT_MS * 1000000ull;
	while (run_alive(r) > 0 && clock_mono_ns() < limit) {
		run_reap_nohang(r);
		if (run_alive(r) > 0)
			sleep_ns(1000000ull);
	}
	for (unsigned i = 0; i < cfg->procs; i++) {
		if (!r->procs[i].pid)
			continue;
		if (!r->procs[i].killed) {
			r->unexpected++;
			run_fail(r,
				 "worker %u (pid %d) did not stop within "
				 "%d ms (hung in the library?)",
				 i, (int)r->procs[i].pid, REAP_TIMEOUT_MS);
		}
		r->procs[i].killed = true;
		kill(r->procs[i].pid, SIGKILL);
	}
	while (run_alive(r) > 0) {
		int status;
		pid_t pid = waitpid(-1, &status, 0);
		if (pid < 0)
			break;
		run_reaped(r, pid, status);
	}
}

/* ------------------------------------------------------------------------
 * Output
 * ------------------------------------------------------------------------ */

struct summary {
	uint64_t ctr[NCTR];
	uint64_t slowest; /* SLOWEST() over all workers */
	double elapsed_s;
	uint64_t kills, starts, unexpected;
	uint64_t repairs, evictions;  /* the cache's counters over the run */
	uint64_t counters_exact;      /* counters checked against acked */
	uint64_t down_counters_exact; /* down-counters checked so */
	int check_rc;		      /* 0, or why check could not run */
	uint32_t check_segments, check_bad;
	bool ok;
	const char *why;
};

/* X(name, text format, JSON format, value expression on struct summary
 * *s).  The summary's lines and the JSON keys come from this list; the
 * counters are printed first, from STRESS_COUNTERS.  max_op_call is the
 * library call of the slowest operation.  cache_repairs and
 * cache_evictions are the cache's own counters (shmc_stat) over the run,
 * for every client of the daemon: repairs are segment resets, after a
 * holder died mid-write (chaos) or after damage was found. */
#define N_ "%" PRIu64
#define SUMMARY_EXTRA(X)                                                       \
	X(elapsed_s, "%.3f", "%.3f", s->elapsed_s)                             \
	X(ops_per_s, "%.0f", "%.0f",                                           \
	  s->elapsed_s > 0 ? (double)s->ctr[CTR_ops] / s->elapsed_s : 0.0)     \
	X(max_op_ms, "%.3f", "%.3f", (double)SLOWEST_NS(s->slowest) / 1e6)     \
	X(max_op_call, "%s", "\"%s\"", api_names[SLOWEST_API(s->slowest)])     \
	X(kills, N_, N_, s->kills)                                             \
	X(cache_repairs, N_, N_, s->repairs)                                   \
	X(cache_evictions, N_, N_, s->evictions)                               \
	X(workers_started, N_, N_, s->starts)                                  \
	X(unexpected_errors, N_, N_, s->unexpected)                            \
	X(counters_exact, N_, N_, s->counters_exact)                           \
	X(down_counters_exact, N_, N_, s->down_counters_exact)                 \
	X(check_segments, "%" PRIu32, "%" PRIu32, s->check_segments)           \
	X(check_bad, "%" PRIu32, "%" PRIu32, s->check_bad)

static void print_json_str(const char *str)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

static void print_summary(const struct stress_cfg *cfg, const struct summary *s)
{
	if (cfg->json) {
		printf("{\"procs\": %u, \"threads\": %u, \"duration_s\": %g, "
		       "\"keys\": %" PRIu32 ", \"max_value\": %zu, "
		       "\"chaos\": %s, \"chaos_interval_ms\": %u, "
		       "\"seed\": %" PRIu64,
		       cfg->procs, cfg->threads, cfg->duration_s, cfg->keys,
		       cfg->max_value, cfg->chaos ? "true" : "false",
		       cfg->chaos_ms, cfg->seed);
		for (int i = 0; i < NCTR; i++)
			printf(", \"%s\": %" PRIu64, ctr_names[i], s->ctr[i]);
#define JSON_X(name, tfmt, jfmt, val) printf(", \"" #name "\": " jfmt, val);
		SUMMARY_EXTRA(JSON_X)
#undef JSON_X
		printf(", \"check_error\": ");
		if (s->check_rc)
			print_json_str(shmc_strerror(s->check_rc));
		else
			printf("null");
		printf(", \"ok\": %s, \"failure\": ", s->ok ? "true" : "false");
		if (s->why)
			print_json_str(s->why);
		else
			printf("null");
		printf("}\n");
		return;
	}
	printf(PROG ": %u procs x %u threads, %g s, %" PRIu32 " keys, values "
		    "%zu..%zu bytes, mix ",
	       cfg->procs, cfg->threads, cfg->duration_s, cfg->keys,
	       (size_t)VAL_HDR, cfg->max_value);
	for (int i = 0, first = 1; i < NOPS; i++) {
		if (!cfg->mix[i])
			continue;
		printf("%s%s=%u", first ? "" : ",", op_names[i], cfg->mix[i]);
		first = 0;
	}
	if (cfg->chaos)
		printf(", chaos every %u ms", cfg->chaos_ms);
	printf(", seed %" PRIu64 "\n", cfg->seed);
	for (int i = 0; i < NCTR; i++)
		printf("%-18s %" PRIu64 "\n", ctr_names[i], s->ctr[i]);
#define TEXT_X(name, tfmt, jfmt, val) printf("%-18s " tfmt "\n", #name, val);
	SUMMARY_EXTRA(TEXT_X)
#undef TEXT_X
	if (s->check_rc)
		printf("%-18s could not run: %s\n", "check",
		       shmc_strerror(s->check_rc));
	if (s->ok)
		printf("%-18s ok\n", "result");
	else
		printf("%-18s FAILED: %s\n", "result",
		       s->why ? s->why : "see above");
}

/* ------------------------------------------------------------------------
 * Options and main
 * ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [options]\n\n"
		"Runs P processes x T threads of random get/set/del/touch "
		"against shmcached\nwith self-validating values; fails on the "
		"first wrong, torn or corrupted\nvalue, on any unexpected "
		"error, and when the daemon's check finds damage\nafter the "
		"run.\n\n");
	opt_usage(f, opt_descs, NOPTS, OPT_ALL, OPT_USAGE_META_SPACE);
	fprintf(f, "\nExit status: 0 clean run, 1 failed run (bad value, "
		   "unexpected error, check\nnot clean), 2 usage, 3 daemon "
		   "unreachable.\n");
}

/* Option o's value as an unsigned in [lo, hi] (opt_uint()); 0, or -1
 * with the one-line message printed. */
static int num_arg(int o, const char *arg, uint64_t lo, uint64_t hi,
		   uint64_t *out)
{
	char what[32], why[OPT_WHY_MAX];

	snprintf(what, sizeof(what), "--%s", opt_descs[o].name);
	if (!opt_uint(what, arg, lo, hi, out, why, sizeof(why)))
		return 0;
	fprintf(stderr, PROG ": %s\n", why);
	return -1;
}

/* "get=60,set=30,..." into cfg->mix; 0 or -EINVAL (why in *bad). */
static int parse_mix(const char *s, struct stress_cfg *cfg, const char **bad)
{
	unsigned mix[NOPS] = { 0 }, total = 0;
	char buf[256];

	if (strlen(s) >= sizeof(buf)) {
		*bad = "too long";
		return -EINVAL;
	}
	strcpy(buf, s);
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		uint64_t w;
		int op;
		if (!eq) {
			*bad = "an item is not NAME=WEIGHT";
			return -EINVAL;
		}
		*eq = '\0';
		for (op = 0; op < NOPS; op++)
			if (strcmp(tok, op_names[op]) == 0)
				break;
		if (op == NOPS) {
			*bad = "unknown operation (get, set, del, touch)";
			return -EINVAL;
		}
		if (opt_uint(NULL, eq + 1, 0, 1000000, &w, NULL, 0)) {
			*bad = "a weight is not a number from 0 to 1000000";
			return -EINVAL;
		}
		total += (unsigned)w - mix[op];
		mix[op] = (unsigned)w;
	}
	if (total == 0) {
		*bad = "all weights are 0";
		return -EINVAL;
	}
	memcpy(cfg->mix, mix, sizeof(mix));
	cfg->mix_total = total;
	return 0;
}

/* getopt_long's value for option i is OPT_VAL_BASE + i, clear of '?',
 * ':' and the short options. */
#define OPT_VAL_BASE 0x100

static const unsigned mix_defaults[NOPS] = {
#define OP_W_X(name, w) w,
	STRESS_OPS(OP_W_X)
#undef OP_W_X
};

/* Fills cfg from the command line; STRESS_OK, or an exit status for main
 * (usage printed).  *help is set for --help. */
static int parse_args(int argc, char **argv, struct stress_cfg *cfg, bool *help)
{
	struct option longopts[NOPTS + 1];
	bool seed_set = false;

	for (int i = 0; i < NOPTS; i++)
		longopts[i] = (struct option){ opt_descs[i].name,
					       opt_descs[i].meta
						       ? required_argument
						       : no_argument,
					       NULL, OPT_VAL_BASE + i };
	longopts[NOPTS] = (struct option){ 0 };

	*cfg = (struct stress_cfg){ .procs = 4,
				    .threads = 2,
				    .duration_s = 10,
				    .keys = 10000,
				    .max_value = 32768,
				    .chaos_ms = 300 };
	for (int op = 0; op < NOPS; op++) {
		cfg->mix[op] = mix_defaults[op];
		cfg->mix_total += mix_defaults[op];
	}

	opterr = 0;
	for (;;) {
		int o = getopt_long(argc, argv, "h", longopts, NULL);
		uint64_t v = 0;
		const char *why = NULL, *arg = optarg;
		if (o == -1)
			break;
		if (o == 'h')
			o = OPT_VAL_BASE + OPT_HELP;
		o = o >= OPT_VAL_BASE ? o - OPT_VAL_BASE : NOPTS;
		switch (o) {
		case OPT_HELP:
			*help = true;
			return STRESS_OK;
		case OPT_SOCKET:
			cfg->socket = arg;
			break;
		case OPT_PROCS:
			if (num_arg(o, arg, 1, MAX_PROCS, &v))
				return STRESS_USAGE;
			cfg->procs = (unsigned)v;
			break;
		case OPT_THREADS:
			if (num_arg(o, arg, 1, MAX_THREADS, &v))
				return STRESS_USAGE;
			cfg->threads = (unsigned)v;
			break;
		case OPT_DURATION: {
			char *end;
			errno = 0;
			cfg->duration_s = strtod(arg, &end);
			if (errno || *end || end == arg ||
			    !(cfg->duration_s > 0 && cfg->duration_s <= 1e6))
				why = "seconds, more than 0 and at most 1e6";
			break;
		}
		case OPT_MIN_OPS:
			if (num_arg(o, arg, 0, UINT64_MAX / 2, &v))
				return STRESS_USAGE;
			cfg->min_ops = v;
			break;
		case OPT_KEYS:
			if (num_arg(o, arg, 1, UINT32_MAX, &v))
				return STRESS_USAGE;
			cfg->keys = (uint32_t)v;
			break;
		case OPT_MAX_VALUE:
			if (num_arg(o, arg, VAL_HDR, 1u << 30, &v))
				return STRESS_USAGE;
			cfg->max_value = (size_t)v;
			break;
		case OPT_MIX:
			if (parse_mix(arg, cfg, &why) == 0)
				why = NULL;
			break;
		case OPT_CHAOS:
			cfg->chaos = true;
			break;
		case OPT_CHAOS_INTERVAL:
			if (num_arg(o, arg, 1, 3600000, &v))
				return STRESS_USAGE;
			cfg->chaos_ms = (unsigned)v;
			break;
		case OPT_SEED:
			if (num_arg(o, arg, 0, UINT64_MAX, &v))
				return STRESS_USAGE;
			cfg->seed = v;
			seed_set = true;
			break;
		case OPT_JSON:
			cfg->json = true;
			break;
		case OPT_PAUSE_BEFORE_CHECK:
			cfg->pause_before_check = true;
			break;
		case OPT_INJECT_BAD:
			cfg->inject_bad = true;
			break;
		default:
			fprintf(stderr,
				PROG ": unknown option or missing "
				     "argument: %s\n",
				argv[optind - 1]);
			usage(stderr);
			return STRESS_USAGE;
		}
		if (why) {
			fprintf(stderr, PROG ": --%s %s: expected %s\n",
				opt_descs[o].name, arg, why);
			return STRESS_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument: %s\n",
			argv[optind]);
		usage(stderr);
		return STRESS_USAGE;
	}
	uint64_t t = clock_mono_ns() ^ ((uint64_t)getpid() << 32) ^
		     (uint64_t)time(NULL);
	if (!seed_set)
		cfg->seed = mix64(t) >> 1; /* printable as a JSON integer */
	cfg->run_tag = (uint32_t)mix64(t ^ 0x7374726573730000ull);
	return STRESS_OK;
}

/* Opens a handle, or explains why not on stderr; 0 or the error. */
/* The evictions and resets of each segment so far, in loss[seg] (nseg of
 * them): a counter in a segment whose figure changed may have been lost. */
static void seg_losses(shmc *c, uint64_t *loss, uint32_t nseg)
{
	for (uint32_t i = 0; i < nseg; i++) {
		struct shmc_stats st = { 0 };
		shmc_seg_stat(c, i, &st);
		loss[i] = st.evictions + st.repairs;
	}
}

/* The segment of a key: the low bits of its hash (shared/hash.h, as the
 * region's layout fixes them, docs/LAYOUT.md), so that a counter can be
 * placed even when it is missing. */
static uint32_t key_seg(const void *key, size_t klen, uint32_t nseg)
{
	uint32_t bits = nseg > 1 ? (uint32_t)__builtin_ctz(nseg) : 0;

	return hash_split(hash_key(key, klen), bits).seg;
}

/* Checks the counters of one family after the run (see the top): 'c',
 * counted up from 0, or 'd', counted down from DECR_START, with att and
 * ack their changes begun and acknowledged.  The changes a counter shows
 * (its value, or DECR_START less it) are a number at most those begun; at
 * least those acknowledged if its segment lost nothing (loss and
 * loss_before, from seg_losses()), and exactly those when no worker was
 * killed.  Returns how many were checked against ack, -1 after
 * run_fail(). */
static long check_family(const struct stress_cfg *cfg, shmc *c, char family,
			 const uint64_t *att, const uint64_t *ack,
			 const uint64_t *loss, const uint64_t *loss_before,
			 struct run *r)
{
	uint32_t nseg = shmc_segments(c);
	bool down = family == 'd';
	const char *what = down ? "decrements" : "increments";
	long exact = 0;

	for (uint32_t i = 0; i < NCOUNTERS; i++) {
		char key[KEY_MAX], val[24];
		size_t klen = key_family(cfg, family, i, key), vlen = 0;
		uint64_t v = down ? DECR_START : 0, n;
		uint32_t seg = key_seg(key, klen, nseg);
		int rc = shmc_get(c, key, klen, val, sizeof(val) - 1, &vlen);
		if (rc && rc != -ENOENT) {
			run_fail(r, "counter %.*s: %s", (int)klen, key,
				 shmc_strerror(rc));
			return -1;
		}
		val[vlen] = '\0';
		if (rc == 0 &&
		    (vlen == 0 || strspn(val, "0123456789") != vlen)) {
			run_fail(r, "counter %.*s is not a number: \"%s\"",
				 (int)klen, key, val);
			return -1;
		}
		if (rc == 0)
			v = strtoull(val, NULL, 10);
		if (down && v > DECR_START) {
			run_fail(r,
				 "counter %.*s is %" PRIu64
				 ", above its start %" PRIu64,
				 (int)klen, key, v, DECR_START);
			return -1;
		}
		n = down ? DECR_START - v : v;
		if (n > att[i]) {
			run_fail(r,
				 "counter %.*s is %" PRIu64 " (%" PRIu64
				 " %s), above the %" PRIu64 " %s begun",
				 (int)klen, key, v, n, what, att[i], what);
			return -1;
		}
		if (seg >= nseg || loss[seg] != loss_before[seg])
			continue; /* evicted or reset: the upper bound only */
		exact++;
		if (n < ack[i] || (r->kills == 0 && n != ack[i])) {
			run_fail(r,
				 "counter %.*s is %" PRIu64 " (%" PRIu64
				 " %s), but %" PRIu64
				 " %s were acknowledged (%" PRIu64
				 " begun, %" PRIu64 " workers killed)",
				 (int)klen, key, v, n, what, ack[i], what,
				 att[i], r->kills);
			return -1;
		}
	}
	return exact;
}

/* Checks both counter families (check_family()); *exact and *dexact
 * receive how many of each were checked against the acknowledged. */
static void check_counters(const struct stress_cfg *cfg, shmc *c,
			   const struct shared *sh, const uint64_t *loss_before,
			   struct run *r, uint64_t *exact, uint64_t *dexact)
{
	uint32_t nseg = shmc_segments(c);
	uint64_t *loss = calloc(nseg, sizeof(*loss));
	long n;

	if (!loss) {
		run_fail(r, "out of memory");
		return;
	}
	seg_losses(c, loss, nseg);
	n = check_family(cfg, c, 'c', sh->attempted, sh->acked, loss,
			 loss_before, r);
	if (n >= 0) {
		*exact = (uint64_t)n;
		n = check_family(cfg, c, 'd', sh->dattempted, sh->dacked, loss,
				 loss_before, r);
		if (n >= 0)
			*dexact = (uint64_t)n;
	}
	free(loss);
}

static int open_handle(const struct stress_cfg *cfg, shmc **c)
{
	int rc = shmc_open(c, cfg->socket);

	if (rc)
		fprintf(stderr, PROG ": cannot reach the daemon at %s: %s\n",
			cfg->socket ? cfg->socket
				    : "the default socket ($SHMC_SOCKET or "
				      "the daemon's default)",
			shmc_strerror(rc));
	return rc;
}

int main(int argc, char **argv)
{
	struct stress_cfg cfg;
	bool help = false;
	shmc *c;
	int rc = parse_args(argc, argv, &cfg, &help);

	if (rc != STRESS_OK)
		return rc;
	if (help) {
		usage(stdout);
		return STRESS_OK;
	}

	/* Reach the daemon before forking anything, and fit the values to
	 * its largest item.  No handle is held while the workers run. */
	if (open_handle(&cfg, &c))
		return STRESS_UNREACHABLE;
	size_t max_item = shmc_max_item(c);
	struct shmc_stats before = { 0 }, after = { 0 };
	shmc_stat(c, &before);
	uint32_t nseg = shmc_segments(c);
	uint64_t *loss_before = calloc(nseg ? nseg : 1, sizeof(*loss_before));
	if (!loss_before) {
		fprintf(stderr, PROG ": out of memory\n");
		shmc_close(c);
		return STRESS_FAILED;
	}
	seg_losses(c, loss_before, nseg);
	shmc_close(c);
	if (max_item < VAL_HDR + KEY_MAX) {
		fprintf(stderr,
			PROG ": the cache's largest item (%zu bytes) "
			     "is too small for this test\n",
			max_item);
		return STRESS_FAILED;
	}
	if (cfg.max_value > max_item - KEY_MAX) {
		fprintf(stderr,
			PROG ": note: --max-value lowered from %zu "
			     "to %zu (largest item %zu minus the longest "
			     "key)\n",
			cfg.max_value, max_item - KEY_MAX, max_item);
		cfg.max_value = max_item - KEY_MAX;
	}

	struct run r = { .cfg = &cfg, .rng = mix64(cfg.seed ^ 0x5eedull) };
	r.sh_size = sizeof(struct shared) + cfg.procs * sizeof(struct slot);
	r.sh = mmap(NULL, r.sh_size, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	r.procs = calloc(cfg.procs, sizeof(*r.procs));
	if (r.sh == MAP_FAILED || !r.procs) {
		fprintf(stderr, PROG ": out of memory\n");
		return STRESS_FAILED;
	}
	struct sigaction sa = { .sa_handler = on_interrupt };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	struct summary s = { .why = NULL };
	run_workers(&r, &s.elapsed_s);
	if (interrupted)
		run_fail(&r, "interrupted");

	for (unsigned i = 0; i < cfg.procs; i++) {
		for (int k = 0; k < NCTR; k++)
			s.ctr[k] += r.sh->slot[i].ctr[k];
		if (r.sh->slot[i].slowest > s.slowest)
			s.slowest = r.sh->slot[i].slowest;
	}
	/* A killed worker that found a bad value may not have flushed. */
	if (s.ctr[CTR_bad] < r.bad_exits)
		s.ctr[CTR_bad] = r.bad_exits;
	s.kills = r.kills;
	s.starts = r.starts;
	s.unexpected = r.unexpected;

	if (cfg.pause_before_check) {
		fprintf(stderr, PROG ": workers stopped; waiting for a line "
				     "on stdin before the check\n");
		fflush(stderr);
		int ch;
		while ((ch = getchar()) != EOF && ch != '\n')
			;
	}

	/* The daemon's integrity walk, read-only. */
	s.check_rc = open_handle(&cfg, &c);
	if (s.check_rc == 0) {
		if (shmc_segments(c) == nseg)
			check_counters(&cfg, c, r.sh, loss_before, &r,
				       &s.counters_exact,
				       &s.down_counters_exact);
		s.check_rc = shmc_check(c, 0, &s.check_segments, &s.check_bad,
					NULL);
		if (shmc_stat(c, &after) == 0) {
			s.repairs = after.repairs - before.repairs;
			s.evictions = after.evictions - before.evictions;
		}
		shmc_close(c);
	}
	if (s.check_rc)
		run_fail(&r, "the integrity check could not run: %s",
			 shmc_strerror(s.check_rc));
	else if (s.check_bad)
		run_fail(&r,
			 "the integrity check found %" PRIu32 " bad segments",
			 s.check_bad);
	if (s.ctr[CTR_bad])
		run_fail(&r, "%" PRIu64 " bad values", s.ctr[CTR_bad]);

	s.ok = !r.why[0];
	s.why = r.why[0] ? r.why : NULL;
	print_summary(&cfg, &s);
	if (!s.ok)
		fprintf(stderr, PROG ": FAILED: %s\n", r.why);
	munmap(r.sh, r.sh_size);
	free(r.procs);
	free(loss_before);
	return s.ok ? STRESS_OK : STRESS_FAILED;
}
