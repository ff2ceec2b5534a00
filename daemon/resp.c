/*
 * resp.c - the RESP3 reader and command writer of resp.h.
 *
 * The reader walks the frame once: each step reads one type byte and its
 * line at r->pos, appends a node, and either opens an aggregate (pushed
 * on r->stack with the count of elements it still needs) or completes a
 * value, which may complete the aggregates around it.  r->pos only moves
 * past whole values' headers (and a blob string's whole payload), so when
 * the bytes run out the next call starts again at the same place.
 */
#include "resp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RESP_FRAME_MAX (256u << 20) /* bytes in one frame */

void resp_init(struct resp_reader *r)
{
	memset(r, 0, sizeof(*r));
}

void resp_fini(struct resp_reader *r)
{
	free(r->nodes);
	memset(r, 0, sizeof(*r));
}

void resp_reset(struct resp_reader *r)
{
	r->nnodes = 0;
	r->pos = 0;
	r->depth = 0;
}

/* A strict integer: optional '-', 1 to 18 digits (what a length or a
 * Redis integer needs), nothing else. */
static int parse_int(const uint8_t *s, size_t n, int64_t *out)
{
	bool neg = n > 0 && s[0] == '-';
	int64_t v = 0;

	if (neg) {
		s++;
		n--;
	}
	if (n == 0 || n > 18)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = neg ? -v : v;
	return 0;
}

static int node_add(struct resp_reader *r, char type, uint32_t *idx)
{
	if (r->nnodes >= RESP_NODES_MAX)
		return -EMSGSIZE;
	if (r->nnodes == r->cap) {
		uint32_t cap = r->cap ? r->cap * 2 : 64;
		struct resp_node *n = realloc(r->nodes, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		r->nodes = n;
		r->cap = cap;
	}
	*idx = r->nnodes++;
	memset(&r->nodes[*idx], 0, sizeof(r->nodes[0]));
	r->nodes[*idx].type = type;
	return 0;
}

/* Node idx is complete: closes it and the aggregates it completes.
 * Returns 1 when the frame is complete, else 0. */
static int node_done(struct resp_reader *r, uint32_t idx)
{
	for (;;) {
		r->nodes[idx].end = r->nnodes;
		if (r->nodes[idx].type == '|') {
			/* An attribute annotates what follows: dropped, and it
			 * is not one of its parent's elements. */
			r->nnodes = idx;
			return 0;
		}
		if (r->depth == 0)
			return 1;
		if (--r->stack[r->depth - 1].left > 0)
			return 0;
		idx = r->stack[--r->depth].node;
	}
}

int resp_read(struct resp_reader *r, const uint8_t *buf, size_t len,
	      const char **why)
{
	const char *ignored;
	const char **w = why ? why : &ignored;

	for (;;) {
		size_t pos = r->pos, avail, lim;
		const uint8_t *cr;
		uint32_t idx;
		int64_t v = 0;
		int rc;

		if (pos > RESP_FRAME_MAX) {
			*w = "frame too large";
			return -EMSGSIZE;
		}
		if (pos >= len)
			return 0;
		avail = len - pos - 1;
		lim = avail < RESP_LINE_MAX + 1 ? avail : RESP_LINE_MAX + 1;
		cr = memchr(buf + pos + 1, '\r', lim);
		if (!cr) {
			if (avail > RESP_LINE_MAX) {
				*w = "line too long";
				return -EMSGSIZE;
			}
			return 0;
		}
		size_t lo = pos + 1, ln = (size_t)(cr - buf) - lo;
		size_t next = lo + ln + 2;

		if (next > len)
			return 0;
		if (cr[1] != '\n') {
			*w = "CR without LF";
			return -EPROTO;
		}
		char type = (char)buf[pos];

		switch (type) {
		case '+':
		case '-':
		case ',':
		case '(':
			if (memchr(buf + lo, '\n', ln)) {
				*w = "LF inside a line";
				return -EPROTO;
			}
			if (type == '(') { /* digits, maybe beyond int64 */
				size_t k = ln > 0 && buf[lo] == '-';

				if (k == ln)
					k = ln + 1;
				for (; k < ln; k++)
					if (buf[lo + k] < '0' ||
					    buf[lo + k] > '9')
						break;
				if (k != ln) {
					*w = "bad big number";
					return -EPROTO;
				}
			}
			if ((rc = node_add(r, type, &idx)))
				return rc;
			r->nodes[idx].off = lo;
			r->nodes[idx].len = ln;
			break;
		case ':':
			if (parse_int(buf + lo, ln, &v)) {
				*w = "bad integer";
				return -EPROTO;
			}
			if ((rc = node_add(r, type, &idx)))
				return rc;
			r->nodes[idx].i = v;
			break;
		case '#':
			if (ln != 1 || (buf[lo] != 't' && buf[lo] != 'f')) {
				*w = "bad boolean";
				return -EPROTO;
			}
			if ((rc = node_add(r, type, &idx)))
				return rc;
			r->nodes[idx].i = buf[lo] == 't';
			break;
		case '_':
			if (ln != 0) {
				*w = "bad null";
				return -EPROTO;
			}
			if ((rc = node_add(r, '_', &idx)))
				return rc;
			break;
		case '$':
		case '!':
		case '=':
			if (parse_int(buf + lo, ln, &v) || v < -1 ||
			    (v == -1 && type != '$')) {
				*w = "bad length";
				return -EPROTO;
			}
			if (v > (int64_t)RESP_BULK_MAX) {
				*w = "string too long";
				return -EMSGSIZE;
			}
			if (v == -1) { /* RESP2's null bulk string */
				if ((rc = node_add(r, '_', &idx)))
					return rc;
				break;
			}
			if (len - next < (size_t)v + 2)
				return 0;
			if (buf[next + v] != '\r' ||
			    buf[next + v + 1] != '\n') {
				*w = "string without CRLF after it";
				return -EPROTO;
			}
			if (type == '=' && (v < 4 || buf[next + 3] != ':')) {
				*w = "bad verbatim string";
				return -EPROTO;
			}
			if ((rc = node_add(r, type, &idx)))
				return rc;
			r->nodes[idx].off = next + (type == '=' ? 4 : 0);
			r->nodes[idx].len = (size_t)v - (type == '=' ? 4 : 0);
			next += (size_t)v + 2;
			break;
		case '*':
		case '>':
		case '~':
		case '%':
		case '|': {
			bool pairs = type == '%' || type == '|';

			if (parse_int(buf + lo, ln, &v) || v < -1 ||
			    (v == -1 && type != '*')) {
				*w = "bad aggregate length";
				return -EPROTO;
			}
			if (v == -1) { /* RESP2's null array */
				if ((rc = node_add(r, '_', &idx)))
					return rc;
				break;
			}
			if (v > (int64_t)RESP_NODES_MAX / (pairs ? 2 : 1)) {
				*w = "aggregate too large";
				return -EMSGSIZE;
			}
			if ((rc = node_add(r, type, &idx)))
				return rc;
			r->nodes[idx].n = (uint32_t)v * (pairs ? 2 : 1);
			if (v == 0)
				break;
			if (r->depth >= RESP_DEPTH_MAX) {
				*w = "nested too deep";
				return -EMSGSIZE;
			}
			r->stack[r->depth].node = idx;
			r->stack[r->depth].left = r->nodes[idx].n;
			r->depth++;
			r->pos = next;
			continue;
		}
		default:
			*w = "unknown type byte";
			return -EPROTO;
		}
		r->pos = next;
		if (node_done(r, idx))
			return 1;
	}
}

bool resp_str_eq(const struct resp_reader *r, const uint8_t *buf, uint32_t i,
		 const char *s)
{
	const struct resp_node *n = &r->nodes[i];
	size_t len = strlen(s);

	if (n->type != '+' && n->type != '$' && n->type != '=')
		return false;
	return n->len == len &&
	       strncasecmp((const char *)buf + n->off, s, len) == 0;
}

size_t resp_command(uint8_t *out, size_t cap, int argc, const void *const *argv,
		    const size_t *lens)
{
	size_t n = 0;
	int k = snprintf((char *)out, cap, "*%d\r\n", argc);

	if (k < 0 || (size_t)k >= cap)
		return 0;
	n = (size_t)k;
	for (int i = 0; i < argc; i++) {
		k = snprintf((char *)out + n, cap - n, "$%zu\r\n", lens[i]);
		if (k < 0 || (size_t)k >= cap - n || cap - n - k < lens[i] + 2)
			return 0;
		n += (size_t)k;
		memcpy(out + n, argv[i], lens[i]);
		n += lens[i];
		out[n++] = '\r';
		out[n++] = '\n';
	}
	return n;
}
