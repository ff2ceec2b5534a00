/*
 * fuzz_mc.c - libFuzzer target for the memcached protocols (daemon/mc*.c):
 * arbitrary bytes, cut into receives at arbitrary points, through
 * mc_process() on a small region, as the server feeds a connection.
 *
 * A region of 1 MiB in ordinary memory, 4 segments, is formatted afresh
 * for every input and its clock set to a fixed time, with one worker and
 * one session on it, so that an input replays the same way alone as
 * within a run.
 *
 * Input: one control byte, then the bytes a client sends.
 *   bits 0-5  seed of the cuts: 0 feeds everything at once; otherwise
 *             each receive is 1 to 64 bytes, drawn from a generator
 *             seeded with them
 *   bit 6     back-pressure: the output's high mark is 64 bytes, so
 *             mc_process() stops after nearly every reply
 *   bit 7     a second passes after every receive, and the worker ticks
 *             (leases, a delayed flush_all, expiring and stale items);
 *             after the input the clock jumps past the longest lease
 * The driver keeps what mc_process() left unconsumed and appends the next
 * receive to it, drains the output whenever it is called, and calls again
 * while it makes progress, as the server does.
 *
 * Checks, beyond the sanitizers:
 *   - mc_process() never consumes more than it was given, and when it
 *     stops at an incomplete request, s->need is more than it has and at
 *     most mc_request_max();
 *   - it always makes progress when the output has room and a complete
 *     request waits;
 *   - the output is a sequence of replies, each a line ended by "\r\n"
 *     that starts with one of the protocols' reply words; a text VALUE
 *     line names a valid key, 32-bit flags and its length, and a meta VA
 *     line its length, and that many bytes then "\r\n" follow;
 *   - a number (incr, decr) and the text words without arguments stand
 *     alone on their line, and a meta status line's tokens after its code
 *     (and VA's length) are flags, each starting with a letter;
 *   - the worker's leases are the one session's (its nleases), none is
 *     left once the clock has passed the longest lease (with bit 7) and
 *     none once mc_session_end() has run;
 *   - once the session is closed, no further input is taken.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "mc.h"
#include "mc_int.h"

#include "fuzz_check.h"

#define REGION_SIZE (1u << 20)
#define NSEG 4u
#define T0 1700000000u
#define HIGH_TIGHT 64u
/* The longest a meta lease lasts (docs/MEMCACHED.md). */
#define LEASE_MAX_S 300u

/* The one session holds every lease of the worker. */
#define CHECK_LEASES(w, s)                                                     \
	CHECKF((w)->nleases == (s)->nleases,                                   \
	       "the worker holds %u leases, its one session %u", (w)->nleases, \
	       (s)->nleases)

/* ------------------------------------------------------------------------
 * The output's form
 * ------------------------------------------------------------------------ */

/* Reply lines that carry a data block: how many bytes it has, from the
 * line's tokens. */
static bool block_len(const struct mc_tok *t, unsigned n, uint64_t *len)
{
	uint32_t flags;

	if (mc_tok_is(&t[0], "VALUE")) {
		CHECKF(n == 4 || n == 5, "VALUE line with %u tokens", n);
		CHECKF(mc_key_ok(t[1].p, t[1].n), "VALUE of a bad key");
		CHECKF(mc_tok_u32(&t[2], &flags), "VALUE flags not 32-bit");
		CHECKF(mc_tok_u64(&t[3], len), "VALUE length not a number");
		if (n == 5) {
			uint64_t cas;
			CHECKF(mc_tok_u64(&t[4], &cas),
			       "VALUE cas not a number");
		}
		return true;
	}
	if (mc_tok_is(&t[0], "VA")) {
		CHECKF(n >= 2 && mc_tok_u64(&t[1], len), "VA without length");
		return true;
	}
	return false;
}

/* The replies a line may start with, and how many tokens it has: exactly
 * `min` when max is 1, else at least `min`.  A meta status line's tokens
 * after the code (after the length for VA) are its flags, each a letter
 * and what follows it in the same token. */
struct reply_word {
	const char *word;
	unsigned min, max;
	bool meta;
};

static const struct reply_word reply_words[] = {
	/* text */
	{ "END", 1, 1, false },
	{ "STORED", 1, 1, false },
	{ "NOT_STORED", 1, 1, false },
	{ "EXISTS", 1, 1, false },
	{ "NOT_FOUND", 1, 1, false },
	{ "DELETED", 1, 1, false },
	{ "TOUCHED", 1, 1, false },
	{ "OK", 1, 1, false },
	{ "RESET", 1, 1, false },
	{ "ERROR", 1, 1, false },
	{ "STAT", 2, 0, false },
	{ "VERSION", 2, 0, false },
	{ "CLIENT_ERROR", 2, 0, false },
	{ "SERVER_ERROR", 2, 0, false },
	{ "VALUE", 4, 0, false }, /* block_len() checks the rest */
	/* meta */
	{ "VA", 2, 0, true },
	{ "HD", 1, 0, true },
	{ "EN", 1, 0, true },
	{ "NF", 1, 0, true },
	{ "NS", 1, 0, true },
	{ "EX", 1, 0, true },
	{ "MN", 1, 1, false },
	{ "ME", 2, 0, false },
};

/* Checks a reply line's first word and its token count (nt, or at least
 * nt when more), and a meta line's flags. */
static void check_line(const struct mc_tok *t, unsigned nt, bool more)
{
	uint64_t v;

	if (mc_tok_u64(&t[0], &v)) { /* incr, decr */
		CHECKF(nt == 1 && !more, "a number with %u tokens after it",
		       nt - 1);
		return;
	}
	for (size_t i = 0; i < sizeof(reply_words) / sizeof(reply_words[0]);
	     i++) {
		const struct reply_word *r = &reply_words[i];
		if (!mc_tok_is(&t[0], r->word))
			continue;
		CHECKF(nt >= r->min && (r->max != 1 || (nt == 1 && !more)),
		       "%s with %u tokens", r->word, nt);
		if (r->meta)
			for (unsigned k = r->min; k < nt; k++)
				CHECKF((t[k].p[0] >= 'a' && t[k].p[0] <= 'z') ||
					       (t[k].p[0] >= 'A' &&
						t[k].p[0] <= 'Z'),
				       "%s with a flag %.*s", r->word,
				       (int)t[k].n, t[k].p);
		return;
	}
	CHECKF(false, "unknown reply %.*s", (int)t[0].n, t[0].p);
}

/* Walks out[0..len) reply by reply; aborts on anything malformed. */
static void check_replies(const uint8_t *out, size_t len)
{
	size_t at = 0;

	while (at < len) {
		const char *line = (const char *)out + at;
		const char *end = NULL;
		for (size_t i = 0; i + 1 < len - at; i++)
			if (line[i] == '\r' && line[i + 1] == '\n') {
				end = line + i;
				break;
			}
		CHECKF(end, "a reply without its \\r\\n at %zu", at);
		size_t n = (size_t)(end - line);
		CHECKF(!memchr(line, '\n', n), "a \\n inside a reply line");
		struct mc_tok t[8];
		bool more;
		unsigned nt = mc_tokens(line, n, t, 8, &more);
		CHECKF(nt > 0 && t[0].p == line, "an empty or indented reply");
		check_line(t, nt, more);
		at += n + 2;
		uint64_t blen;
		if (block_len(t, more ? 8 : nt, &blen)) {
			CHECKF(blen <= len - at && len - at - blen >= 2,
			       "a data block past the output's end");
			CHECKF(out[at + blen] == '\r' &&
				       out[at + blen + 1] == '\n',
			       "a data block without its \\r\\n");
			at += blen + 2;
		}
	}
}

/* ------------------------------------------------------------------------
 * The driver
 * ------------------------------------------------------------------------ */

static uint8_t *region;

/* xorshift32: the cut sizes. */
static uint32_t next_cut(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return 1 + *s % 64;
}

/* Runs mc_process() over what is pending until it stops making progress;
 * the replies are checked and dropped as they come. */
static void settle(struct mc_worker *w, struct mc_session *s, uint8_t *in,
		   size_t *n, struct mc_out *out)
{
	for (;;) {
		size_t used = mc_process(w, s, in, *n, out);
		CHECKF(used <= *n, "consumed %zu of %zu", used, *n);
		CHECK(!out->oom);
		check_replies(out->p, out->len);
		bool wrote = out->len > 0;
		out->len = 0;
		memmove(in, in + used, *n - used);
		*n -= used;
		if (s->close)
			return;
		if (!used && !wrote) {
			if (s->swallow)
				CHECK(*n == 0);
			else if (*n)
				CHECKF(s->need > *n &&
					       s->need <= mc_request_max(w),
				       "need %zu with %zu pending, max %zu",
				       s->need, *n, mc_request_max(w));
			return;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct eng e;
	struct eng_config cfg = { .nseg = NSEG };

	if (size < 1)
		return 0;
	if (!region) {
		region = aligned_alloc(4096, REGION_SIZE);
		CHECK(region != NULL);
	}
	CHECK(eng_format(region, REGION_SIZE, &cfg) == 0);
	CHECK(eng_attach(&e, region, REGION_SIZE, 1, NULL) == 0);
	eng_clock_set(&e, T0);

	struct mc_worker w, *workers[1] = { &w };
	struct mc_shared sh = {
		.eng = &e, .started = T0, .nworkers = 1, .workers = workers
	};
	struct mc_session s;
	struct mc_out out = { .high = SIZE_MAX };
	CHECK(mc_worker_init(&w, &sh, 0, 10) == 0);
	mc_session_init(&w, &s);

	uint8_t ctl = data[0];
	uint32_t seed = ctl & 63u;
	if (ctl & 64u)
		out.high = HIGH_TIGHT;
	const uint8_t *p = data + 1;
	size_t left = size - 1, n = 0;
	uint8_t *in = malloc(left ? left : 1);
	CHECK(in != NULL);
	uint32_t now = T0;

	while (left && !s.close) {
		size_t cut = seed ? next_cut(&seed) : left;
		if (cut > left)
			cut = left;
		memcpy(in + n, p, cut);
		n += cut;
		p += cut;
		left -= cut;
		settle(&w, &s, in, &n, &out);
		CHECK_LEASES(&w, &s);
		if (ctl & 128u) {
			eng_clock_set(&e, ++now);
			mc_worker_tick(&w);
			CHECK_LEASES(&w, &s);
		}
	}
	if (ctl & 128u) {
		/* Past the longest lease: the tick ends every one. */
		eng_clock_set(&e, now + LEASE_MAX_S + 1);
		mc_worker_tick(&w);
		CHECKF(w.nleases == 0, "%u leases outlived their time",
		       w.nleases);
	}
	mc_session_end(&w, &s);
	CHECKF(w.nleases == 0 && s.nleases == 0,
	       "%u leases outlived their session", w.nleases);
	mc_worker_fini(&w);
	free(out.p);
	free(in);
	return 0;
}
