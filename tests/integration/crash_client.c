/*
 * crash_client.c - a libshmc client for the crash tests (test_crash.py).
 *
 *   crash_client SOCKET churn PREFIX N VLEN   sets PREFIX0..PREFIXn-1 round
 *                                            and round, reading some back,
 *                                            forever (or until a fault
 *                                            point stops the process)
 *   crash_client SOCKET del PREFIX N          deletes them, forever
 *   crash_client SOCKET add PREFIX N VLEN     as churn, by add (a present
 *                                            key is deleted instead)
 *   crash_client SOCKET cas PREFIX N VLEN     as churn, by get_ex and cas
 *   crash_client SOCKET incr PREFIX N         increments counters by 1,
 *                                            created by incr's init or by
 *                                            an add of "0", forever
 *   crash_client SOCKET decr PREFIX N         decrements counters by 1,
 *                                            created at DECR_START by
 *                                            decr's init or by an add
 *   crash_client SOCKET append PREFIX N       appends log records (below)
 *   crash_client SOCKET prepend PREFIX N      prepends them; a log of
 *                                            LOG_MAX records starts anew
 *   crash_client SOCKET fill PREFIX N VLEN    sets each once, exits 0
 *   crash_client SOCKET verify PREFIX N [KIND] reads each: prints
 *                                            "ok HITS MISSES", exit 0, or
 *                                            "BAD key ..." and exit 1;
 *                                            KIND: value (the default),
 *                                            count or log
 *   crash_client SOCKET reopen PREFIX N       N times: opens a second
 *                                            handle, sets PREFIXi and
 *                                            reads it back, closes it;
 *                                            exit 0, or 1 with the error
 *
 * With SHMC_WAIT=1 in the environment, the client attaches, prints
 * "ready", and waits for a line on stdin before it starts (to act on a
 * region whose daemon has died meanwhile).
 *
 * With SHMC_BREAK=1, the mode runs on a second thread while the main
 * thread waits for a line on stdin, then sends a frame header of a wrong
 * version on the handle's control socket (so that the daemon disconnects
 * this live process: with SHMC_FAULT, while the other thread holds a lock),
 * prints "broken", and waits for the mode to end.
 *
 * Every value is self-validating: it starts with the 64-bit FNV-1a hash of
 * its key and its length, and every following byte is derived from both,
 * so a torn, foreign or shifted value is detected.  A counter must be 1 to
 * 20 decimal digits and nothing else.  A log (append, prepend) is a run of
 * LOG_REC-byte records, each with the key's hash (another tag than a
 * value's), its sequence number and a checksum of both; the numbers of a
 * log are consecutive, rising (append) or falling (prepend): a half
 * record, a record of another key or a prefix of one log joined to the
 * suffix of another is detected.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <shmc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define VMAX 65536
#define LOG_REC 16
#define LOG_MAX 32
#define LOG_TAG 0x6c6f672d7265632eULL

static uint64_t fnv(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}

static size_t make_value(uint8_t *v, const char *key, size_t vlen)
{
	uint64_t h = fnv(key, strlen(key));
	uint32_t len = (uint32_t)vlen;

	memcpy(v, &h, 8);
	memcpy(v + 8, &len, 4);
	for (size_t i = 12; i < vlen; i++)
		v[i] = (uint8_t)(h >> (i % 8 * 8)) ^ (uint8_t)(i * 31);
	return vlen;
}

/* NULL if v is a whole value of key, else what is wrong. */
static const char *check_value(const uint8_t *v, size_t vlen, const char *key)
{
	uint8_t want[VMAX];

	if (vlen < 12 || vlen > VMAX)
		return "length out of range";
	make_value(want, key, vlen);
	if (memcmp(v, want, 8) != 0)
		return "key hash differs (foreign value)";
	if (memcmp(v + 8, want + 8, 4) != 0)
		return "length field differs";
	if (memcmp(v, want, vlen) != 0)
		return "payload differs (torn value)";
	return NULL;
}

/* Log record seq of key at p. */
static void log_rec(uint8_t *p, const char *key, uint32_t seq)
{
	uint64_t tag = fnv(key, strlen(key)) ^ LOG_TAG;
	uint32_t sum;

	memcpy(p, &tag, 8);
	memcpy(p + 8, &seq, 4);
	sum = (uint32_t)fnv(p, 12);
	memcpy(p + 12, &sum, 4);
}

/* NULL if v is a whole log of key (see the top), else what is wrong. */
static const char *check_log(const uint8_t *v, size_t vlen, const char *key)
{
	uint8_t want[LOG_REC];
	uint32_t first = 0, seq;
	int dir = 0;

	if (vlen == 0 || vlen % LOG_REC || vlen > LOG_MAX * LOG_REC)
		return "length is not a whole number of records";
	for (size_t i = 0; i < vlen; i += LOG_REC) {
		memcpy(&seq, v + i + 8, 4);
		log_rec(want, key, seq);
		if (memcmp(v + i, want, LOG_REC) != 0)
			return "record damaged or foreign";
		if (i == 0) {
			first = seq;
		} else {
			int d = seq == first + i / LOG_REC   ? 1
				: seq == first - i / LOG_REC ? -1
							     : 0;
			if (d == 0 || (dir && d != dir))
				return "records not consecutive (torn log)";
			dir = d;
		}
	}
	return NULL;
}

/* NULL if v is a counter (1 to 20 decimal digits), else what is wrong. */
static const char *check_count(const uint8_t *v, size_t vlen)
{
	if (vlen == 0 || vlen > 20)
		return "counter length out of range";
	for (size_t i = 0; i < vlen; i++)
		if (v[i] < '0' || v[i] > '9')
			return "counter is not a number";
	return NULL;
}

static void key_of(char *out, size_t n, const char *prefix, long i)
{
	snprintf(out, n, "%s%ld", prefix, i);
}

/* The value a decr mode counter starts at: no run takes it down to 0, so
 * every decrement changes it (digits shrink now and then: 1000 to 999). */
#define DECR_START UINT64_C(1000000000000)

/* One counter operation of mode incr or decr on key: half the keys are
 * created by the call's init, half by an add of the start value. */
static int count_op(shmc *c, bool decr, const char *key)
{
	size_t klen = strlen(key);
	bool init = fnv(key, klen) & 1;
	uint64_t start = decr ? DECR_START : 0, n;
	char digits[24];
	int rc;

	if (init)
		rc = decr ? shmc_decr_init(c, key, klen, 1, start, 0, &n)
			  : shmc_incr_init(c, key, klen, 1, start, 0, &n);
	else
		rc = decr ? shmc_decr(c, key, klen, 1, &n)
			  : shmc_incr(c, key, klen, 1, &n);
	if (rc == -ENOENT) {
		int len = snprintf(digits, sizeof(digits), "%" PRIu64, start);
		rc = shmc_add(c, key, klen, digits, (size_t)len, NULL, NULL);
		if (rc == -EEXIST)
			rc = 0;
	}
	return rc;
}

/* One item operation of mode (add, cas, incr, decr, append, prepend) on
 * key, with the value of length l for add and cas; seq is the key's next
 * log record.  0, or an error to report. */
static int item_op(shmc *c, const char *mode, const char *key, size_t l,
		   uint32_t *seq, uint8_t *val, uint8_t *buf)
{
	size_t klen = strlen(key);
	int rc;

	if (strcmp(mode, "add") == 0) {
		rc = shmc_add(c, key, klen, val, make_value(val, key, l), NULL,
			      NULL);
		if (rc == -EEXIST && (rc = shmc_del(c, key, klen)) == -ENOENT)
			rc = 0;
		return rc;
	}
	if (strcmp(mode, "cas") == 0) {
		struct shmc_item it;
		rc = shmc_get_item(c, key, klen, buf, VMAX, &it);
		if (rc == 0)
			rc = shmc_cas(c, key, klen, val,
				      make_value(val, key, l), it.cas, NULL,
				      NULL);
		else if (rc == -ENOENT)
			rc = shmc_add(c, key, klen, val,
				      make_value(val, key, l), NULL, NULL);
		return rc == -EEXIST || rc == -ENOENT ? 0 : rc;
	}
	if (strcmp(mode, "incr") == 0 || strcmp(mode, "decr") == 0)
		return count_op(c, mode[0] == 'd', key);
	/* append, prepend: a full or missing log starts anew. */
	bool append = strcmp(mode, "append") == 0;
	log_rec(val, key, *seq);
	if (*seq % LOG_MAX == 0)
		rc = shmc_set_ex(c, key, klen, val, LOG_REC, NULL, NULL);
	else if (append)
		rc = shmc_append(c, key, klen, val, LOG_REC, NULL);
	else
		rc = shmc_prepend(c, key, klen, val, LOG_REC, NULL);
	if (rc == -ENOENT) {
		*seq -= *seq % LOG_MAX;
		log_rec(val, key, *seq);
		rc = shmc_set_ex(c, key, klen, val, LOG_REC, NULL, NULL);
	}
	if (rc == 0)
		(*seq)++;
	return rc;
}

/* What is wrong with the value v of key read in verify mode kind, or
 * NULL. */
static const char *check_kind(const char *kind, const uint8_t *v, size_t vlen,
			      const char *key)
{
	if (strcmp(kind, "count") == 0)
		return check_count(v, vlen);
	if (strcmp(kind, "log") == 0)
		return check_log(v, vlen, key);
	return check_value(v, vlen, key);
}

/* The mode's work; returns the exit status. */
static int run(shmc *c, const char *mode, const char *prefix, long n,
	       size_t vlen, const char *kind)
{
	static uint8_t val[VMAX], buf[VMAX];
	static uint32_t seqs[100000];
	char key[256];
	int rc;

	if (strcmp(mode, "verify") == 0) {
		long hits = 0, misses = 0;
		for (long i = 0; i < n; i++) {
			size_t len;
			key_of(key, sizeof(key), prefix, i);
			rc = shmc_get(c, key, strlen(key), buf, sizeof(buf),
				      &len);
			if (rc == -ENOENT) {
				misses++;
				continue;
			}
			const char *bad = rc ? shmc_strerror(rc)
					     : check_kind(kind, buf, len, key);
			if (bad) {
				printf("BAD %s: %s\n", key, bad);
				return 1;
			}
			hits++;
		}
		printf("ok %ld %ld\n", hits, misses);
		return 0;
	}
	for (unsigned long round = 0;; round++) {
		for (long i = 0; i < n; i++) {
			key_of(key, sizeof(key), prefix, i);
			/* Vary sizes so overwrites go in place and grow. */
			size_t l = 12 + (vlen - 12) * ((i + round) % 4 + 1) / 4;
			if (strcmp(mode, "del") == 0) {
				rc = shmc_del(c, key, strlen(key));
				if (rc == -ENOENT)
					rc = 0;
			} else if (strcmp(mode, "churn") &&
				   strcmp(mode, "fill")) {
				rc = item_op(c, mode, key, l, &seqs[i % 100000],
					     val, buf);
			} else {
				make_value(val, key, l);
				rc = shmc_set(c, key, strlen(key), val, l, 0);
				if (rc == 0 && i % 3 == 0) {
					size_t got;
					key_of(key, sizeof(key), prefix, i / 2);
					shmc_get(c, key, strlen(key), buf,
						 sizeof(buf), &got);
				}
			}
			if (rc && rc != -EUCLEAN) {
				fprintf(stderr, "%s %s: %s\n", mode, key,
					shmc_strerror(rc));
				return 1;
			}
		}
		if (strcmp(mode, "fill") == 0)
			break;
	}
	return 0;
}

/* The mode's work on a thread of its own (SHMC_BREAK). */
struct job {
	shmc *c;
	const char *mode, *prefix;
	long n;
	size_t vlen;
	const char *kind;
	int rc;
};

static void *job_run(void *arg)
{
	struct job *j = arg;

	j->rc = run(j->c, j->mode, j->prefix, j->n, j->vlen, j->kind);
	return NULL;
}

/* Sends a frame header of a wrong version on this process's connection to
 * the daemon at path (found by its peer address).  0, or -1. */
static int break_framing(const char *path)
{
	static const uint8_t bad[12] = { 0, 0, 0, 0, 2, 0, 99, 0, 1, 0, 0, 0 };

	for (int fd = 3; fd < 1024; fd++) {
		struct sockaddr_un sa;
		socklen_t len = sizeof(sa);
		if (getpeername(fd, (struct sockaddr *)&sa, &len) < 0 ||
		    sa.sun_family != AF_UNIX ||
		    strncmp(sa.sun_path, path, sizeof(sa.sun_path)) != 0)
			continue;
		return write(fd, bad, sizeof(bad)) == (ssize_t)sizeof(bad) ? 0
									   : -1;
	}
	return -1;
}

/* The reopen mode (a process that opens a handle per request). */
static int reopen(const char *sock, const char *prefix, long n)
{
	for (long i = 0; i < n; i++) {
		char key[64], got[64];
		size_t len = 0;
		shmc *h;
		int klen = snprintf(key, sizeof(key), "%s%ld", prefix, i);
		int rc = shmc_open(&h, sock);
		if (rc) {
			fprintf(stderr, "open %ld: %s\n", i, shmc_strerror(rc));
			return 1;
		}
		if ((rc = shmc_set(h, key, (size_t)klen, key, (size_t)klen,
				   0)) == 0)
			rc = shmc_get(h, key, (size_t)klen, got, sizeof(got),
				      &len);
		shmc_close(h);
		if (rc || len != (size_t)klen || memcmp(got, key, len) != 0) {
			fprintf(stderr, "handle %ld: %s\n", i,
				rc ? shmc_strerror(rc) : "wrong value");
			return 1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	shmc *c;
	int rc;

	if (argc < 5) {
		fprintf(stderr, "usage: see the comment at the top\n");
		return 2;
	}
	const char *mode = argv[2], *prefix = argv[3];
	long n = atol(argv[4]);
	bool verify = strcmp(mode, "verify") == 0;
	/* verify's fifth argument is the kind, the others' the length. */
	const char *kind = verify && argc > 5 ? argv[5] : "value";
	size_t vlen = argc > 5 && !verify ? (size_t)atol(argv[5]) : 100;
	if (n <= 0 || vlen < 12 || vlen > VMAX ||
	    (strcmp(kind, "value") && strcmp(kind, "count") &&
	     strcmp(kind, "log")))
		return 2;
	if ((rc = shmc_open(&c, argv[1])) != 0) {
		fprintf(stderr, "open: %s\n", shmc_strerror(rc));
		return 3;
	}
	const char *wait = getenv("SHMC_WAIT");
	if (wait && strcmp(wait, "1") == 0) {
		char line[16];
		printf("ready\n");
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin)) {
			shmc_close(c);
			return 2;
		}
	}

	const char *brk = getenv("SHMC_BREAK");
	if (brk && strcmp(brk, "1") == 0) {
		struct job j = { c, mode, prefix, n, vlen, kind, 0 };
		pthread_t t;
		char line[16];
		if (pthread_create(&t, NULL, job_run, &j) != 0)
			return 2;
		if (!fgets(line, sizeof(line), stdin) ||
		    break_framing(argv[1]) < 0) {
			fprintf(stderr, "cannot break the framing\n");
			return 2;
		}
		printf("broken\n");
		fflush(stdout);
		pthread_join(t, NULL);
		rc = j.rc;
	} else if (strcmp(mode, "reopen") == 0) {
		rc = reopen(argv[1], prefix, n);
	} else {
		rc = run(c, mode, prefix, n, vlen, kind);
	}
	shmc_close(c);
	return rc;
}
