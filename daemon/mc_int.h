/*
 * mc_int.h - what the parts of the memcached protocol module share
 * (mc_proto.c, mc_text.c, mc_meta.c): one request as the core hands it to a
 * command, the reply writers, and the checks every command makes.  Not for
 * the server: it uses mc.h.
 */
#ifndef SHMC_MC_INT_H
#define SHMC_MC_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mc.h"

/* One blank-separated token of a request line. */
struct mc_tok {
	const char *p;
	size_t n;
};

/* One request, as the core hands it to a command. */
struct mc_req {
	const char *line; /* without its "\r\n" or "\n" */
	size_t line_len;
	struct mc_tok tok[MC_TOKENS_MAX]; /* tok[0] is the command */
	unsigned ntok;
	bool more;	     /* the line has more tokens than tok[] holds:
			       mc_tokens() continues from tok[ntok - 1] */
	const uint8_t *data; /* the data block (without its "\r\n"), once
				the command asked for one */
	size_t data_len;
};

/* A command's context. */
struct mc_ctx {
	struct mc_worker *w;
	struct mc_session *s;
	struct mc_out *out;
	struct mc_req req;
	uint32_t now; /* the region clock, unix seconds */
};

/* What a command returns to the core.  A command with a data block is
 * called twice: first with req.data NULL, to check its line (it answers a
 * bad line itself, setting s->swallow to skip a block it refuses), then
 * with the block.  The first call may happen again for the same request
 * (the block had not all arrived), so it changes nothing and counts
 * nothing. */
enum mc_result {
	MC_DONE,      /* answered (or quietly done) */
	MC_NEED_DATA, /* line valid: it wants a data block of
			 req.data_len bytes; the core calls it again with
			 req.data set, once the block and its "\r\n" are in */
};

typedef enum mc_result (*mc_cmd_fn)(struct mc_ctx *x);

/* The commands of each protocol: the handler for tok[0], or NULL when the
 * name is not one of theirs. */
mc_cmd_fn mc_text_lookup(const char *name, size_t n);
mc_cmd_fn mc_meta_lookup(const char *name, size_t n);

/* The text protocol's `stats` (mc_stats.c). */
enum mc_result mc_cmd_stats(struct mc_ctx *x);

/* Tokens --------------------------------------------------------------- */

/* Splits line[0..len) at blanks (' ') into at most max tokens; returns the
 * count, and sets *more when tokens were left over (the rest starts at the
 * last token's end). */
unsigned mc_tokens(const char *line, size_t len, struct mc_tok *tok,
		   unsigned max, bool *more);

/* Parses a token as memcached does its numbers: decimal digits only, no
 * sign, no blanks, within the type.  Returns false on anything else. */
bool mc_tok_u64(const struct mc_tok *t, uint64_t *out);
bool mc_tok_u32(const struct mc_tok *t, uint32_t *out);
/* A signed 32-bit number ("-1" is an exptime that expires at once). */
bool mc_tok_i32(const struct mc_tok *t, int32_t *out);

static inline bool mc_tok_is(const struct mc_tok *t, const char *s)
{
	size_t i = 0;

	for (; s[i]; i++)
		if (i >= t->n || t->p[i] != s[i])
			return false;
	return i == t->n;
}

/* A key as memcached takes it: 1..MC_KEY_MAX bytes, no control characters
 * (a token has no blanks by construction). */
bool mc_key_ok(const char *key, size_t n);

/* memcached's exptime: 0 never; up to 30 days a TTL in seconds; above, an
 * absolute unix time; negative: already expired.  Returns the engine's
 * TTL in seconds (0 never) and sets *expired when the item must not be
 * stored (or must expire at once). */
uint32_t mc_exptime_ttl(int64_t exptime, uint32_t now, bool *expired);
#define MC_REALTIME_MAX (60 * 60 * 24 * 30) /* 30 days, memcached's */

/* Base64 (RFC 4648, with padding), for meta's b flag: decoded bytes into
 * out (cap bytes), returns the count or -1 when the input is not valid
 * base64 or does not fit. */
long mc_base64_decode(const char *in, size_t n, uint8_t *out, size_t cap);
/* Encodes n bytes; returns the length written (4 * ceil(n / 3)) or -1 when
 * cap is too small. */
long mc_base64_encode(const uint8_t *in, size_t n, char *out, size_t cap);

/* Replies ------------------------------------------------------------- */

/* Room for n more bytes at out->p + out->len (grown as needed), or NULL
 * with out->oom set.  Written bytes are kept with mc_out_commit(). */
uint8_t *mc_out_reserve(struct mc_out *out, size_t n);
static inline void mc_out_commit(struct mc_out *out, size_t n)
{
	out->len += n;
}

void mc_out_put(struct mc_out *out, const void *p, size_t n);
void mc_out_str(struct mc_out *out, const char *s);
void mc_out_u64(struct mc_out *out, uint64_t v);
void mc_out_i64(struct mc_out *out, int64_t v);
/* The data block end and every line end. */
static inline void mc_out_crlf(struct mc_out *out)
{
	mc_out_put(out, "\r\n", 2);
}

/* memcached's three error replies: "ERROR\r\n" (an unknown command),
 * "CLIENT_ERROR <msg>\r\n", "SERVER_ERROR <msg>\r\n". */
void mc_reply_error(struct mc_ctx *x);
void mc_reply_client_error(struct mc_ctx *x, const char *msg);
void mc_reply_server_error(struct mc_ctx *x, const char *msg);

/* An engine error (other than the ones a command answers itself) as the
 * SERVER_ERROR memcached would give, with what to do. */
void mc_reply_engine_error(struct mc_ctx *x, int rc);

/* Leases (mc_meta.c) -------------------------------------------------- */

/* A store of key went through (any storage command of either protocol):
 * a lease this worker holds on it is ended, waking the processes that
 * wait for its load. */
void mc_lease_stored(struct mc_worker *w, const void *key, size_t klen);

/* The core's hooks into the lease table (mc.h's lifecycle calls). */
void mc_leases_tick(struct mc_worker *w);
void mc_leases_end_session(struct mc_worker *w, struct mc_session *s);
void mc_leases_fini(struct mc_worker *w);

#endif
