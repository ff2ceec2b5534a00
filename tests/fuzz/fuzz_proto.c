/*
 * fuzz_proto.c - libFuzzer target for the control protocol's codec
 * (shared/proto.c): the frame header and the payload readers and writers.
 *
 * The input is a byte stream as a peer would send it: frames one after the
 * other.  For each frame:
 *   - the header is decoded with proto_hdr_get(), whose verdict must follow
 *     the rules in proto.h, and proto_hdr_put() must give back the same 12
 *     bytes whatever the verdict;
 *   - the payload (cut short where the input ends) is read twice: with the
 *     body of its type as proto.h lists it (request, reply or error), and
 *     with a program of reader calls spelled by the frame's id, so that
 *     every reader runs over arbitrary bytes;
 *   - what was read is written back with the proto_put_* writers, which
 *     must reproduce exactly the bytes that were consumed, and read again,
 *     which must give the same fields; writing it into a buffer one byte
 *     too small must fail with -EMSGSIZE and stay inside the buffer.
 * A bad header is skipped (12 bytes) so that the rest of the input still
 * exercises the readers.
 *
 * Not in here: what the daemon does with frames (fuzz_request.c).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#include "fuzz_check.h"

/* ------------------------------------------------------------------------
 * A log of the fields a decoder read successfully
 * ------------------------------------------------------------------------ */

enum fkind { F_U8, F_U32, F_I32, F_U64, F_BYTES, F_STR };

struct field {
	enum fkind kind;
	uint64_t v;	  /* integers */
	const uint8_t *p; /* bytes and strings: in the decoded buffer */
	size_t n;
};

#define MAX_FIELDS 65536u

struct flog {
	struct field f[MAX_FIELDS];
	size_t n;
	size_t end; /* reader position after the last logged field */
	bool full;  /* fields were dropped: no round trip */
};

static struct flog flog_a, flog_b;

static void flog_reset(struct flog *l)
{
	l->n = 0;
	l->end = 0;
	l->full = false;
}

static void flog_add(struct flog *l, const struct proto_r *r, enum fkind k,
		     uint64_t v, const void *p, size_t n)
{
	if (l->n == MAX_FIELDS) {
		l->full = true;
		return;
	}
	l->f[l->n++] = (struct field){ .kind = k, .v = v, .p = p, .n = n };
	l->end = r->pos;
}

/* ------------------------------------------------------------------------
 * Logged readers: each checks the reader's contract around one call
 * ------------------------------------------------------------------------ */

/* Before a read: a reader in error stays there and reads nothing. */
struct rd_state {
	size_t pos;
	int err;
};

static struct rd_state rd_begin(const struct proto_r *r)
{
	CHECK(r->pos <= r->len);
	CHECK(r->err == 0 || r->err == -EBADMSG);
	return (struct rd_state){ r->pos, r->err };
}

/* After a read of `want` bytes (0 when variable). */
static bool rd_end(const struct proto_r *r, struct rd_state b, size_t want)
{
	CHECK(r->pos <= r->len);
	if (b.err) {
		CHECK(r->err == b.err && r->pos == b.pos);
		return false;
	}
	if (r->err) {
		CHECK(r->err == -EBADMSG);
		return false;
	}
	if (want)
		CHECK(r->pos == b.pos + want);
	return true;
}

static uint8_t rd_u8(struct proto_r *r, struct flog *l)
{
	struct rd_state b = rd_begin(r);
	bool room = r->len - r->pos >= 1;
	uint8_t v = proto_get_u8(r);

	if (rd_end(r, b, 1))
		flog_add(l, r, F_U8, v, NULL, 0);
	else
		CHECK(v == 0);
	CHECK(b.err || room == !r->err);
	return v;
}

static uint32_t rd_u32(struct proto_r *r, struct flog *l)
{
	struct rd_state b = rd_begin(r);
	bool room = r->len - r->pos >= 4;
	uint32_t v = proto_get_u32(r);

	if (rd_end(r, b, 4)) {
		CHECK(v == ((uint32_t)r->buf[b.pos] |
			    (uint32_t)r->buf[b.pos + 1] << 8 |
			    (uint32_t)r->buf[b.pos + 2] << 16 |
			    (uint32_t)r->buf[b.pos + 3] << 24));
		flog_add(l, r, F_U32, v, NULL, 0);
	} else {
		CHECK(v == 0);
	}
	CHECK(b.err || room == !r->err);
	return v;
}

static int32_t rd_i32(struct proto_r *r, struct flog *l)
{
	struct rd_state b = rd_begin(r);
	int32_t v = proto_get_i32(r);

	if (rd_end(r, b, 4))
		flog_add(l, r, F_I32, (uint32_t)v, NULL, 0);
	else
		CHECK(v == 0);
	return v;
}

static uint64_t rd_u64(struct proto_r *r, struct flog *l)
{
	struct rd_state b = rd_begin(r);
	bool room = r->len - r->pos >= 8;
	uint64_t v = proto_get_u64(r);

	if (rd_end(r, b, 8)) {
		uint64_t want = 0;
		for (int i = 7; i >= 0; i--)
			want = want << 8 | r->buf[b.pos + (size_t)i];
		CHECK(v == want);
		flog_add(l, r, F_U64, v, NULL, 0);
	} else {
		/* proto.h: a read past the end yields zeros. */
		CHECK(v == 0);
	}
	CHECK(b.err || room == !r->err);
	return v;
}

static size_t rd_bytes(struct proto_r *r, struct flog *l)
{
	struct rd_state b = rd_begin(r);
	const void *p = NULL;
	size_t n = proto_get_bytes(r, &p);

	CHECK(p != NULL);
	if (rd_end(r, b, 0)) {
		CHECK(r->pos == b.pos + 4 + n);
		CHECK((const uint8_t *)p == r->buf + b.pos + 4);
		flog_add(l, r, F_BYTES, 0, p, n);
	} else {
		CHECK(n == 0);
	}
	return n;
}

static void rd_str(struct proto_r *r, struct flog *l, size_t cap)
{
	struct rd_state b = rd_begin(r);
	char *out = malloc(cap); /* exactly cap: ASan sees a write past it */

	CHECK(out != NULL);
	memset(out, 'x', cap);
	proto_get_str(r, out, cap);
	CHECK(memchr(out, '\0', cap) != NULL);
	if (rd_end(r, b, 0)) {
		size_t n = strlen(out);
		CHECK(n < cap);
		CHECK(r->pos == b.pos + 4 + n);
		CHECK(memcmp(out, r->buf + b.pos + 4, n) == 0);
		flog_add(l, r, F_STR, 0, r->buf + b.pos + 4, n);
	} else {
		CHECK(out[0] == '\0');
	}
	free(out);
}

/* ------------------------------------------------------------------------
 * Decoders: the bodies of proto.h, and programs spelled by an id
 * ------------------------------------------------------------------------ */

static void decode_request(struct proto_r *r, struct flog *l, uint16_t type)
{
	switch (type) {
	case PROTO_T_HELLO:
		rd_u32(r, l);
		rd_u32(r, l);
		rd_u32(r, l);
		break;
	case PROTO_T_STATS:
	case PROTO_T_CHECK:
		rd_u8(r, l);
		break;
	case PROTO_T_GET:
	case PROTO_T_DEL:
	case PROTO_T_TTL:
	case PROTO_T_SAVE:
	case PROTO_T_LOAD:
		rd_bytes(r, l);
		break;
	case PROTO_T_SET:
		rd_bytes(r, l);
		rd_bytes(r, l);
		rd_u32(r, l);
		break;
	case PROTO_T_TOUCH:
		rd_bytes(r, l);
		rd_u32(r, l);
		break;
	default: /* PING, FLUSH, CLIENTS, SHUTDOWN: empty */
		break;
	}
}

static void decode_reply(struct proto_r *r, struct flog *l, uint16_t type)
{
	uint32_t n, ncols, nrows;

	switch (type) {
	case PROTO_T_HELLO:
		rd_u32(r, l);
		rd_u32(r, l);
		rd_u64(r, l);
		break;
	case PROTO_T_STATS:
		ncols = rd_u32(r, l);
		for (uint32_t i = 0; i < ncols && !r->err; i++)
			rd_str(r, l, 64);
		nrows = rd_u32(r, l);
		for (uint32_t i = 0; i < nrows && ncols && !r->err; i++)
			for (uint32_t j = 0; j < ncols && !r->err; j++)
				rd_u64(r, l);
		break;
	case PROTO_T_GET:
		rd_u32(r, l);
		rd_bytes(r, l);
		break;
	case PROTO_T_TTL:
		rd_u32(r, l);
		break;
	case PROTO_T_CHECK:
		rd_u32(r, l);
		rd_u32(r, l);
		rd_u32(r, l);
		n = rd_u32(r, l);
		for (uint32_t i = 0; i < n && !r->err; i++) {
			rd_u32(r, l);
			rd_u32(r, l);
			rd_str(r, l, 128);
		}
		break;
	case PROTO_T_CLIENTS:
		n = rd_u32(r, l);
		for (uint32_t i = 0; i < n && !r->err; i++) {
			for (int j = 0; j < 4; j++)
				rd_u32(r, l);
			rd_u64(r, l);
		}
		break;
	case PROTO_T_SAVE:
	case PROTO_T_LOAD:
		rd_u64(r, l);
		break;
	default: /* the empty replies */
		break;
	}
}

static void decode_error(struct proto_r *r, struct flog *l)
{
	rd_i32(r, l);
	rd_str(r, l, 513);
}

/* Three bits of the id per reader call, ten calls, repeated until the
 * payload is used up or a read fails. */
static void decode_program(struct proto_r *r, struct flog *l, uint32_t id)
{
	static const size_t caps[] = { 1, 16, 256 };

	while (!r->err && r->pos < r->len && !l->full) {
		for (int op = 0; op < 10 && !r->err; op++) {
			switch ((id >> (3 * op)) & 7u) {
			case 0:
				rd_u8(r, l);
				break;
			case 1:
				rd_u32(r, l);
				break;
			case 2:
				rd_i32(r, l);
				break;
			case 3:
				rd_u64(r, l);
				break;
			case 4:
				rd_bytes(r, l);
				break;
			default:
				rd_str(r, l, caps[((id >> (3 * op)) & 7u) - 5]);
			}
		}
	}
}

enum schema { S_REQUEST, S_REPLY, S_ERROR, S_PROGRAM };

static void decode(enum schema s, struct proto_r *r, struct flog *l,
		   const struct proto_hdr *h)
{
	switch (s) {
	case S_REQUEST:
		decode_request(r, l, h->type);
		break;
	case S_REPLY:
		decode_reply(r, l, (uint16_t)(h->type & ~PROTO_REPLY));
		break;
	case S_ERROR:
		decode_error(r, l);
		break;
	case S_PROGRAM:
		decode_program(r, l, h->id);
		break;
	}
}

/* ------------------------------------------------------------------------
 * Writers: put a log back into bytes
 * ------------------------------------------------------------------------ */

static size_t field_size(const struct field *f)
{
	switch (f->kind) {
	case F_U8:
		return 1;
	case F_U32:
	case F_I32:
		return 4;
	case F_U64:
		return 8;
	case F_BYTES:
	case F_STR:
		return 4 + f->n;
	}
	return 0;
}

static void encode(struct proto_w *w, const struct flog *l)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct field *f = &l->f[i];
		size_t len = w->len;
		int err = w->err;
		char *s;

		switch (f->kind) {
		case F_U8:
			proto_put_u8(w, (uint8_t)f->v);
			break;
		case F_U32:
			proto_put_u32(w, (uint32_t)f->v);
			break;
		case F_I32:
			proto_put_i32(w, (int32_t)(uint32_t)f->v);
			break;
		case F_U64:
			proto_put_u64(w, f->v);
			break;
		case F_BYTES:
			proto_put_bytes(w, f->p, f->n);
			break;
		case F_STR:
			s = malloc(f->n + 1);
			CHECK(s != NULL);
			memcpy(s, f->p, f->n);
			s[f->n] = '\0';
			proto_put_str(w, s);
			free(s);
			break;
		}
		CHECK(w->len <= w->cap);
		if (err) /* a writer in error writes nothing more */
			CHECK(w->err == err && w->len == len);
		else if (!w->err)
			CHECK(w->len == len + field_size(f));
		else
			CHECK(w->err == -EMSGSIZE);
	}
}

static bool same_logs(const struct flog *a, const struct flog *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const struct field *x = &a->f[i], *y = &b->f[i];
		if (x->kind != y->kind || x->v != y->v || x->n != y->n)
			return false;
		if (x->n && memcmp(x->p, y->p, x->n) != 0)
			return false;
	}
	return true;
}

/* Reads body with schema s, writes back what was read, reads that again. */
static void round_trip(enum schema s, const struct proto_hdr *h,
		       const uint8_t *body, size_t len)
{
	struct proto_r r;

	flog_reset(&flog_a);
	proto_r_init(&r, body, len);
	CHECK(r.pos == 0 && r.err == 0 && r.len == len);
	decode(s, &r, &flog_a, h);

	int end = proto_r_end(&r);
	if (r.err)
		CHECK(end == r.err);
	else
		CHECK(end == (r.pos == len ? 0 : -EBADMSG));
	if (flog_a.full)
		return;

	/* Written back: exactly the bytes the logged fields consumed. */
	size_t need = 0;
	for (size_t i = 0; i < flog_a.n; i++)
		need += field_size(&flog_a.f[i]);
	CHECK(need == flog_a.end);
	uint8_t *buf = malloc(need ? need : 1);
	CHECK(buf != NULL);
	struct proto_w w;
	proto_w_init(&w, buf, need);
	encode(&w, &flog_a);
	CHECK(w.err == 0 && w.len == need);
	CHECK(memcmp(buf, body, need) == 0);

	/* Read again: the same fields; no error if the first read had none. */
	struct proto_r r2;
	flog_reset(&flog_b);
	proto_r_init(&r2, buf, need);
	decode(s, &r2, &flog_b, h);
	CHECK(!flog_b.full && same_logs(&flog_a, &flog_b));
	if (!r.err)
		CHECK(proto_r_end(&r2) == 0);

	/* One byte short: the writer fails and stays inside its buffer. */
	if (need > 0) {
		uint8_t *small = malloc(need - 1 ? need - 1 : 1);
		CHECK(small != NULL);
		proto_w_init(&w, small, need - 1);
		encode(&w, &flog_a);
		CHECK(w.err == -EMSGSIZE && w.len <= need - 1);
		free(small);
	}
	free(buf);
}

/* ------------------------------------------------------------------------
 * Frames
 * ------------------------------------------------------------------------ */

static void check_header(const uint8_t *p)
{
	struct proto_hdr h;
	uint8_t again[PROTO_HDR_SIZE];
	int rc = proto_hdr_get(p, PROTO_MAX_PAYLOAD, &h);

	proto_hdr_put(again, &h);
	CHECK(memcmp(again, p, PROTO_HDR_SIZE) == 0);
	if (h.version != PROTO_VERSION || h.flags != 0)
		CHECK(rc == -EPROTO);
	else if (h.len > PROTO_MAX_PAYLOAD)
		CHECK(rc == -EMSGSIZE);
	else
		CHECK(rc == 0);

	/* A smaller limit applies to the length only. */
	if (rc == 0 && h.len > 0) {
		struct proto_hdr h2;
		CHECK(proto_hdr_get(p, h.len - 1, &h2) == -EMSGSIZE);
		CHECK(proto_hdr_get(p, h.len, &h2) == 0);
	}
}

/* proto_error_get(): a negative errno or -EIO, and a message inside the
 * body (or empty) whatever the bytes. */
static void check_error_body(const uint8_t *body, size_t len)
{
	const void *msg = NULL;
	size_t n = 1;
	int err = proto_error_get(body, len, &msg, &n);

	CHECK(err < 0 && err > -4096);
	CHECK(n == 0 || ((const uint8_t *)msg >= body + 8 &&
			 (const uint8_t *)msg + n == body + len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t pos = 0;

	while (size - pos >= PROTO_HDR_SIZE) {
		const uint8_t *p = data + pos;
		struct proto_hdr h;

		check_header(p);
		pos += PROTO_HDR_SIZE;
		if (proto_hdr_get(p, PROTO_MAX_PAYLOAD, &h) != 0)
			continue;

		size_t len = h.len < size - pos ? h.len : size - pos;
		const uint8_t *body = data + pos;
		pos += len;

		if (h.type == PROTO_T_ERROR)
			check_error_body(body, len);
		if (h.type == PROTO_T_ERROR)
			round_trip(S_ERROR, &h, body, len);
		else if (h.type & PROTO_REPLY)
			round_trip(S_REPLY, &h, body, len);
		else
			round_trip(S_REQUEST, &h, body, len);
		round_trip(S_PROGRAM, &h, body, len);
	}
	return 0;
}
