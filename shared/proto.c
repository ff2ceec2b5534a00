/*
 * proto.c - the control protocol's codec (see proto.h).  Pure functions on
 * buffers; no I/O of its own (proto_reply_read() reads through the
 * caller's function).
 */
#include "proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static inline void le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

void proto_hdr_put(uint8_t out[PROTO_HDR_SIZE], const struct proto_hdr *h)
{
	le32(out, h->len);
	out[4] = (uint8_t)h->type;
	out[5] = (uint8_t)(h->type >> 8);
	out[6] = h->version;
	out[7] = h->flags;
	le32(out + 8, h->id);
}

int proto_hdr_get(const uint8_t in[PROTO_HDR_SIZE], uint32_t max_payload,
		  struct proto_hdr *h)
{
	h->len = rd32(in);
	h->type = (uint16_t)(in[4] | in[5] << 8);
	h->version = in[6];
	h->flags = in[7];
	h->id = rd32(in + 8);
	if (h->version != PROTO_VERSION || h->flags != 0)
		return -EPROTO;
	if (h->len > max_payload)
		return -EMSGSIZE;
	return 0;
}

/* ------------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------------ */

void proto_w_init(struct proto_w *w, void *buf, size_t cap)
{
	w->buf = buf;
	w->cap = cap;
	w->len = 0;
	w->err = 0;
}

void *proto_put_reserve(struct proto_w *w, size_t n)
{
	if (w->err || n > w->cap - w->len) {
		w->err = -EMSGSIZE;
		return NULL;
	}
	void *p = w->buf + w->len;
	w->len += n;
	return p;
}

void proto_put_u8(struct proto_w *w, uint8_t v)
{
	uint8_t *p = proto_put_reserve(w, 1);
	if (p)
		*p = v;
}

void proto_put_u32(struct proto_w *w, uint32_t v)
{
	uint8_t *p = proto_put_reserve(w, 4);
	if (p)
		le32(p, v);
}

void proto_put_i32(struct proto_w *w, int32_t v)
{
	proto_put_u32(w, (uint32_t)v);
}

void proto_put_u64(struct proto_w *w, uint64_t v)
{
	proto_put_u32(w, (uint32_t)v);
	proto_put_u32(w, (uint32_t)(v >> 32));
}

void proto_put_bytes(struct proto_w *w, const void *src, size_t n)
{
	if (n > UINT32_MAX) {
		w->err = -EMSGSIZE;
		return;
	}
	proto_put_u32(w, (uint32_t)n);
	uint8_t *p = proto_put_reserve(w, n);
	if (p && n)
		memcpy(p, src, n);
}

void proto_put_str(struct proto_w *w, const char *s)
{
	proto_put_bytes(w, s, strlen(s));
}

/* ------------------------------------------------------------------------
 * Reader
 * ------------------------------------------------------------------------ */

void proto_r_init(struct proto_r *r, const void *buf, size_t len)
{
	r->buf = buf;
	r->len = len;
	r->pos = 0;
	r->err = 0;
}

static const uint8_t *take(struct proto_r *r, size_t n)
{
	if (r->err || n > r->len - r->pos) {
		r->err = -EBADMSG;
		return NULL;
	}
	const uint8_t *p = r->buf + r->pos;
	r->pos += n;
	return p;
}

uint8_t proto_get_u8(struct proto_r *r)
{
	const uint8_t *p = take(r, 1);
	return p ? *p : 0;
}

uint32_t proto_get_u32(struct proto_r *r)
{
	const uint8_t *p = take(r, 4);
	return p ? rd32(p) : 0;
}

int32_t proto_get_i32(struct proto_r *r)
{
	return (int32_t)proto_get_u32(r);
}

uint64_t proto_get_u64(struct proto_r *r)
{
	const uint8_t *p = take(r, 8); /* all 8 bytes or none */

	return p ? (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32 : 0;
}

size_t proto_get_bytes(struct proto_r *r, const void **out)
{
	uint32_t n = proto_get_u32(r);
	const uint8_t *p = take(r, n);

	*out = p ? p : (const void *)"";
	return p ? n : 0;
}

void proto_get_str(struct proto_r *r, char *out, size_t cap)
{
	const void *p;
	size_t n = proto_get_bytes(r, &p);

	out[0] = '\0';
	if (r->err)
		return;
	if (n >= cap || memchr(p, '\0', n)) {
		r->err = -EBADMSG;
		return;
	}
	memcpy(out, p, n);
	out[n] = '\0';
}

int proto_r_end(const struct proto_r *r)
{
	if (r->err)
		return r->err;
	return r->pos == r->len ? 0 : -EBADMSG;
}

int proto_error_get(const void *buf, size_t len, const void **msg, size_t *mlen)
{
	struct proto_r r;

	proto_r_init(&r, buf, len);
	int32_t err = proto_get_i32(&r);
	*mlen = proto_get_bytes(&r, msg);
	if (proto_r_end(&r))
		*mlen = 0;
	return err < 0 && err > -4096 ? err : -EIO;
}

int proto_reply_read(const uint8_t hdr[PROTO_HDR_SIZE], uint16_t type,
		     proto_read_fn rd, proto_errmsg_fn on_error, void *ctx,
		     struct proto_hdr *h, uint8_t **body, size_t *len)
{
	int rc;

	*body = NULL;
	*len = 0;
	if (proto_hdr_get(hdr, PROTO_MAX_PAYLOAD, h))
		return -EIO;
	uint8_t *p = malloc(h->len ? h->len : 1);
	if (!p)
		return -ENOMEM;
	if ((rc = rd(ctx, p, h->len))) {
		free(p);
		return rc;
	}
	if (h->type == PROTO_T_ERROR) {
		const void *msg;
		size_t n;
		int err = proto_error_get(p, h->len, &msg, &n);
		on_error(ctx, msg, n);
		free(p);
		return err;
	}
	if (h->type != (type | PROTO_REPLY)) {
		free(p);
		return -EIO;
	}
	*body = p;
	*len = h->len;
	return 0;
}
