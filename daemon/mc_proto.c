/*
 * mc_proto.c - the request loop of the memcached protocols: finds each
 * request line, splits it into tokens, hands it to its command (mc_text.c
 * or mc_meta.c), waits for a command's data block, and provides the reply
 * writers and the checks the commands share (mc_int.h).
 *
 * Framing, as memcached frames it: a request is a line ended by "\n"
 * (a "\r" before it is dropped); a storage command's line is followed by
 * a data block of the length it gives and "\r\n".  A line may be
 * MC_LINE_MAX bytes, except that a retrieval (get, gets, gat, gats) may
 * name as many keys as MC_GET_LINE_MAX bytes hold: a longer line is
 * answered with an error and the connection closed, as the framing can no
 * longer be trusted.  A line that starts with memcached's binary magic
 * byte (0x80) gets the same: the binary protocol is not spoken.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_int.h"

/* The longest retrieval line: a get of about 4000 keys of 250 bytes. */
#define MC_GET_LINE_MAX (1u << 20)
#define MC_BINARY_MAGIC 0x80

/* ------------------------------------------------------------------------
 * Workers and sessions
 * ------------------------------------------------------------------------ */

int mc_worker_init(struct mc_worker *w, struct mc_shared *sh, uint32_t index,
		   uint32_t lock_wait_ms)
{
	memset(w, 0, sizeof(*w));
	w->eng = *sh->eng;
	eng_set_timeout(&w->eng, lock_wait_ms);
	w->sh = sh;
	w->index = index;
	w->next_session = 1;
	return 0;
}

void mc_worker_fini(struct mc_worker *w)
{
	mc_leases_fini(w);
}

void mc_worker_tick(struct mc_worker *w)
{
	mc_leases_tick(w);
	uint32_t at = __atomic_load_n(&w->sh->flush_at, __ATOMIC_ACQUIRE);
	if (w->index == 0 && at && eng_now(&w->eng) >= at &&
	    __atomic_compare_exchange_n(&w->sh->flush_at, &at, 0, false,
					__ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
		eng_clear(&w->eng);
}

void mc_session_init(struct mc_worker *w, struct mc_session *s)
{
	memset(s, 0, sizeof(*s));
	s->id = w->next_session++;
}

void mc_session_end(struct mc_worker *w, struct mc_session *s)
{
	if (s->nleases)
		mc_leases_end_session(w, s);
}

size_t mc_request_max(const struct mc_worker *w)
{
	/* The longest line with its "\r\n"; s->need may ask one byte past
	 * a line that is still incomplete, never more. */
	size_t line = (MC_LINE_MAX > MC_GET_LINE_MAX ? MC_LINE_MAX
						     : MC_GET_LINE_MAX) +
		      2;
	size_t store = MC_LINE_MAX + 2 + (size_t)w->eng.g.max_kv + 2;

	return line > store ? line : store;
}

/* ------------------------------------------------------------------------
 * Tokens and checks
 * ------------------------------------------------------------------------ */

unsigned mc_tokens(const char *line, size_t len, struct mc_tok *tok,
		   unsigned max, bool *more)
{
	size_t i = 0;
	unsigned n = 0;

	*more = false;
	while (i < len) {
		while (i < len && line[i] == ' ')
			i++;
		if (i == len)
			break;
		if (n == max) {
			*more = true;
			break;
		}
		size_t start = i;
		while (i < len && line[i] != ' ')
			i++;
		tok[n].p = line + start;
		tok[n].n = i - start;
		n++;
	}
	return n;
}

bool mc_tok_u64(const struct mc_tok *t, uint64_t *out)
{
	uint64_t v = 0;

	if (t->n == 0 || t->n > 20)
		return false;
	for (size_t i = 0; i < t->n; i++) {
		unsigned d = (unsigned)(t->p[i] - '0');
		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

bool mc_tok_u32(const struct mc_tok *t, uint32_t *out)
{
	uint64_t v;

	if (!mc_tok_u64(t, &v) || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

bool mc_tok_i32(const struct mc_tok *t, int32_t *out)
{
	struct mc_tok digits = *t;
	bool neg = t->n > 0 && t->p[0] == '-';
	uint64_t v;

	if (neg) {
		digits.p++;
		digits.n--;
	}
	if (!mc_tok_u64(&digits, &v) ||
	    v > (neg ? (uint64_t)INT32_MAX + 1 : (uint64_t)INT32_MAX))
		return false;
	*out = neg ? (int32_t)(0 - v) : (int32_t)v;
	return true;
}

bool mc_key_ok(const char *key, size_t n)
{
	if (n == 0 || n > MC_KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)key[i] <= ' ' || key[i] == 0x7f)
			return false;
	return true;
}

uint32_t mc_exptime_ttl(int64_t exptime, uint32_t now, bool *expired)
{
	*expired = false;
	if (exptime == 0)
		return 0;
	if (exptime < 0) {
		*expired = true;
		return 0;
	}
	if (exptime <= MC_REALTIME_MAX)
		return (uint32_t)exptime;
	if (exptime <= (int64_t)now) {
		*expired = true;
		return 0;
	}
	int64_t ttl = exptime - (int64_t)now;
	return ttl > UINT32_MAX ? UINT32_MAX : (uint32_t)ttl;
}

/* ------------------------------------------------------------------------
 * Base64
 * ------------------------------------------------------------------------ */

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long mc_base64_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
	size_t o = 0;

	if (n == 0 || n % 4)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		int v[4], pad = 0;
		for (int j = 0; j < 4; j++) {
			if (in[i + j] == '=' && i + 4 == n && j >= 2) {
				v[j] = 0;
				pad++;
			} else if (pad || (v[j] = b64_value(in[i + j])) < 0) {
				return -1;
			}
		}
		uint32_t bits = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
				(uint32_t)v[2] << 6 | (uint32_t)v[3];
		size_t k = 3 - (size_t)pad;
		if (o + k > cap)
			return -1;
		for (size_t j = 0; j < k; j++)
			out[o++] = (uint8_t)(bits >> (16 - 8 * j));
	}
	return (long)o;
}

long mc_base64_encode(const uint8_t *in, size_t n, char *out, size_t cap)
{
	size_t need = (n + 2) / 3 * 4, o = 0;

	if (need > cap)
		return -1;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t bits = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			bits |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			bits |= in[i + 2];
		out[o++] = b64_alphabet[bits >> 18 & 63];
		out[o++] = b64_alphabet[bits >> 12 & 63];
		out[o++] = i + 1 < n ? b64_alphabet[bits >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? b64_alphabet[bits & 63] : '=';
	}
	return (long)o;
}

/* ------------------------------------------------------------------------
 * Replies
 * ------------------------------------------------------------------------ */

uint8_t *mc_out_reserve(struct mc_out *out, size_t n)
{
	if (out->oom)
		return NULL;
	if (out->cap - out->len >= n)
		return out->p + out->len;
	size_t cap = out->cap ? out->cap : 4096;
	while (cap - out->len < n) {
		if (cap > SIZE_MAX / 2) {
			out->oom = true;
			return NULL;
		}
		cap *= 2;
	}
	uint8_t *p = realloc(out->p, cap);
	if (!p) {
		out->oom = true;
		return NULL;
	}
	out->p = p;
	out->cap = cap;
	return p + out->len;
}

void mc_out_put(struct mc_out *out, const void *p, size_t n)
{
	uint8_t *d = mc_out_reserve(out, n);

	if (d) {
		memcpy(d, p, n);
		out->len += n;
	}
}

void mc_out_str(struct mc_out *out, const char *s)
{
	mc_out_put(out, s, strlen(s));
}

void mc_out_u64(struct mc_out *out, uint64_t v)
{
	char buf[20];
	size_t i = sizeof(buf);

	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	mc_out_put(out, buf + i, sizeof(buf) - i);
}

void mc_out_i64(struct mc_out *out, int64_t v)
{
	if (v < 0) {
		mc_out_put(out, "-", 1);
		mc_out_u64(out, (uint64_t)0 - (uint64_t)v);
	} else {
		mc_out_u64(out, (uint64_t)v);
	}
}

void mc_reply_error(struct mc_ctx *x)
{
	mc_out_str(x->out, "ERROR\r\n");
}

void mc_reply_client_error(struct mc_ctx *x, const char *msg)
{
	mc_out_str(x->out, "CLIENT_ERROR ");
	mc_out_str(x->out, msg);
	mc_out_crlf(x->out);
}

void mc_reply_server_error(struct mc_ctx *x, const char *msg)
{
	mc_out_str(x->out, "SERVER_ERROR ");
	mc_out_str(x->out, msg);
	mc_out_crlf(x->out);
}

void mc_reply_engine_error(struct mc_ctx *x, int rc)
{
	switch (rc) {
	case -E2BIG:
		MC_COUNT(x->w, store_too_large, 1);
		mc_reply_server_error(x, "object too large for cache");
		break;
	case -ETIMEDOUT:
		MC_COUNT(x->w, store_no_memory, 1);
		mc_reply_server_error(x, "busy: a segment lock was not free "
					 "in time, retry");
		break;
	case -EUCLEAN:
		mc_reply_server_error(x, "a damaged segment was reset and its "
					 "items dropped; retry");
		break;
	case -ENOMEM:
		MC_COUNT(x->w, store_no_memory, 1);
		mc_reply_server_error(x, "out of memory storing object");
		break;
	default: {
		char msg[96];
		snprintf(msg, sizeof(msg), "engine error: %s", strerror(-rc));
		mc_reply_server_error(x, msg);
		break;
	}
	}
}

/* ------------------------------------------------------------------------
 * The request loop
 * ------------------------------------------------------------------------ */

static bool is_retrieval(const char *p, size_t n)
{
	while (n && *p == ' ') {
		p++;
		n--;
	}
	return (n >= 4 && (!memcmp(p, "get ", 4) || !memcmp(p, "gat ", 4))) ||
	       (n >= 5 && (!memcmp(p, "gets ", 5) || !memcmp(p, "gats ", 5)));
}

/* A line that cannot be framed: answered, and the connection closes. */
static void refuse_framing(struct mc_ctx *x, const char *msg)
{
	mc_reply_client_error(x, msg);
	x->s->close = true;
}

static const struct mc_cmd *lookup(const struct mc_tok *t)
{
	if (t->n == 2 && t->p[0] == 'm')
		return mc_meta_lookup(t->p, t->n);
	return mc_text_lookup(t->p, t->n);
}

size_t mc_process(struct mc_worker *w, struct mc_session *s, const uint8_t *in,
		  size_t len, struct mc_out *out)
{
	struct mc_ctx x = { .w = w, .s = s, .out = out };
	size_t pos = 0;

	x.now = eng_now(&w->eng);
	s->need = 0;
	while (!s->close && !out->oom && out->len < out->high) {
		if (s->swallow) {
			size_t take = len - pos < s->swallow
					      ? len - pos
					      : (size_t)s->swallow;
			pos += take;
			s->swallow -= take;
			if (s->swallow)
				break;
			continue;
		}
		if (pos == len)
			break;
		const char *line = (const char *)in + pos;
		size_t avail = len - pos;
		if ((uint8_t)line[0] == MC_BINARY_MAGIC) {
			refuse_framing(&x, "the binary protocol is not "
					   "supported: use the text or meta "
					   "protocol");
			break;
		}
		const char *nl = memchr(line, '\n', avail);
		size_t limit = is_retrieval(line, avail) ? MC_GET_LINE_MAX
							 : MC_LINE_MAX;
		if (!nl) {
			if (avail > limit)
				refuse_framing(&x, "line too long");
			else
				s->need = avail + 1;
			break;
		}
		size_t consumed = (size_t)(nl - line) + 1;
		size_t n = consumed - 1;
		if (n && line[n - 1] == '\r')
			n--;
		if (n > limit) {
			refuse_framing(&x, "line too long");
			break;
		}

		struct mc_req *r = &x.req;
		r->line = line;
		r->line_len = n;
		r->data = NULL;
		r->data_len = 0;
		r->ntok = mc_tokens(line, n, r->tok, MC_TOKENS_MAX, &r->more);
		const struct mc_cmd *cmd = r->ntok ? lookup(&r->tok[0]) : NULL;
		if (!cmd || r->ntok < cmd->min_tok ||
		    (cmd->max_tok && (r->ntok > cmd->max_tok || r->more))) {
			mc_reply_error(&x);
			pos += consumed;
			continue;
		}
		mc_cmd_fn fn = cmd->fn;
		enum mc_result res = fn(&x);
		if (s->resume)
			break; /* its replies wait to be sent: the line again */
		if (res == MC_NEED_DATA) {
			size_t total = consumed + r->data_len + 2;
			if (avail < total) {
				s->need = total;
				break;
			}
			const uint8_t *block = in + pos + consumed;
			if (block[r->data_len] != '\r' ||
			    block[r->data_len + 1] != '\n') {
				mc_reply_client_error(&x, "bad data chunk");
			} else {
				r->data = block;
				fn(&x);
			}
			consumed = total;
		}
		pos += consumed;
	}
	return pos;
}
