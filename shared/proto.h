/*
 * proto.h - the control protocol between shmcached and its clients: frame
 * header, message types, and a bounds-checked codec for payloads.
 *
 * A frame is a 12-byte header followed by `len` payload bytes:
 *
 *     u32 len      payload bytes, at most PROTO_MAX_PAYLOAD
 *     u16 type     PROTO_T_* for requests; replies are type | PROTO_REPLY,
 *                  or PROTO_T_ERROR
 *     u8  version  PROTO_VERSION
 *     u8  flags    0 (reserved, must be 0)
 *     u32 id       chosen by the requester, echoed in the reply
 *
 * Payload fields are little-endian integers and byte strings (u32 length +
 * bytes).  The message bodies are listed with the types below and in
 * docs/PROTOCOL.md.  Every byte from a peer is untrusted: the reader never
 * reads past its buffer, and a frame whose body does not parse exactly is
 * rejected with -EBADMSG.
 *
 * Not in here: sockets, file descriptors (the hello reply's region fd rides
 * as SCM_RIGHTS on the same sendmsg), or any policy.  proto_reply_read()
 * reads a reply's body through the caller's own read function.
 */
#ifndef SHMC_PROTO_H
#define SHMC_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 1
#define PROTO_HDR_SIZE 12u
#define PROTO_MAX_PAYLOAD (8u << 20) /* 8 MiB */
/* LOAD flags (the optional u32 after the path). */
#define PROTO_LOAD_PARTIAL                                                     \
	1u /* one pass: each block is stored once it
				 is verified; on damage the blocks before
				 it stay loaded */
#define PROTO_LOAD_FLAGS PROTO_LOAD_PARTIAL
#define PROTO_REPLY 0x8000u

/* Requests: X(name, value, body) - the body is documentation. */
#define PROTO_TYPES(X)                                                         \
	X(HELLO, 1,                                                            \
	  "u32 version, u32 pid, u32 prev_client_id -> "                       \
	  "u32 client_id, u32 layout_format, u64 region_size "                 \
	  "+ region fd (SCM_RIGHTS)")                                          \
	X(PING, 2, "empty -> empty")                                           \
	X(STATS, 3,                                                            \
	  "u8 per_segment -> u32 ncols, str names[ncols], "                    \
	  "u32 nrows, u64 values[nrows][ncols]")                               \
	X(GET, 4, "bytes key -> u32 expire_at, bytes value")                   \
	X(SET, 5, "bytes key, bytes value, u32 ttl -> empty")                  \
	X(DEL, 6, "bytes key -> empty")                                        \
	X(TTL, 7, "bytes key -> u32 ttl")                                      \
	X(TOUCH, 8, "bytes key, u32 ttl -> empty")                             \
	X(FLUSH, 9, "empty -> empty")                                          \
	X(CHECK, 10,                                                           \
	  "u8 repair -> u32 segments, u32 bad, u32 repaired, "                 \
	  "u32 n, {u32 seg, u32 problems, str first}[n]")                      \
	X(CLIENTS, 11,                                                         \
	  "empty -> u32 n, {u32 id, u32 pid, u32 uid, "                        \
	  "u32 gid, u64 since}[n]")                                            \
	X(SAVE, 12, "bytes path -> u64 entries")                               \
	X(LOAD, 13, "bytes path [u32 flags] -> u64 entries")                   \
	X(SHUTDOWN, 14, "empty -> empty")                                      \
	X(BYE, 15, "empty -> empty")                                           \
	X(NS_ADD, 16, "bytes prefix -> empty")                                 \
	X(NS_FLUSH, 17, "bytes prefix -> empty")                               \
	X(NS_DEL, 18, "bytes prefix -> empty")                                 \
	X(NS_LIST, 19,                                                         \
	  "empty -> u32 n, {bytes prefix, u32 mark, u32 slot}[n]")             \
	X(NEARCACHE, 20,                                                       \
	  "empty -> str state, u32 n, {str name, u64 value, str desc}[n], "    \
	  "str last_error, u64 last_error_at, u32 np, str prefix[np]")

/* The most prefixes a NEARCACHE reply lists (the daemon's --redis-prefix
 * limit, shmc.h's SHMC_NEAR_PREFIXES_MAX). */
#define PROTO_NEAR_PREFIXES_MAX 64

enum proto_type {
#define PROTO_ENUM_X(name, val, body) PROTO_T_##name = val,
	PROTO_TYPES(PROTO_ENUM_X)
#undef PROTO_ENUM_X
		PROTO_T_ERROR = 0xffff, /* i32 -errno, str message */
};

struct proto_hdr {
	uint32_t len;
	uint16_t type;
	uint8_t version;
	uint8_t flags;
	uint32_t id;
};

/* Encodes a header into 12 bytes. */
void proto_hdr_put(uint8_t out[PROTO_HDR_SIZE], const struct proto_hdr *h);

/* Decodes a header.  Returns 0, or -EPROTO for a wrong version or non-zero
 * flags, -EMSGSIZE for len > max_payload. */
int proto_hdr_get(const uint8_t in[PROTO_HDR_SIZE], uint32_t max_payload,
		  struct proto_hdr *h);

/* A writer into a caller's buffer.  A write that does not fit sets `err`
 * (-EMSGSIZE) and writes nothing more; check err once at the end. */
struct proto_w {
	uint8_t *buf;
	size_t cap, len;
	int err;
};

void proto_w_init(struct proto_w *w, void *buf, size_t cap);
void proto_put_u8(struct proto_w *w, uint8_t v);
void proto_put_u32(struct proto_w *w, uint32_t v);
void proto_put_i32(struct proto_w *w, int32_t v);
void proto_put_u64(struct proto_w *w, uint64_t v);
void proto_put_bytes(struct proto_w *w, const void *p, size_t n);
void proto_put_str(struct proto_w *w, const char *s);
/* Reserves n bytes and returns where to fill them (NULL on overflow). */
void *proto_put_reserve(struct proto_w *w, size_t n);

/* A reader over a received payload.  A read past the end sets `err`
 * (-EBADMSG) and yields zeros / empty strings. */
struct proto_r {
	const uint8_t *buf;
	size_t len, pos;
	int err;
};

void proto_r_init(struct proto_r *r, const void *buf, size_t len);
uint8_t proto_get_u8(struct proto_r *r);
uint32_t proto_get_u32(struct proto_r *r);
int32_t proto_get_i32(struct proto_r *r);
uint64_t proto_get_u64(struct proto_r *r);
/* A byte string: *p points into the buffer (not terminated). */
size_t proto_get_bytes(struct proto_r *r, const void **p);
/* A string copied into out (cap bytes, always terminated); -EBADMSG if it
 * does not fit or holds a NUL. */
void proto_get_str(struct proto_r *r, char *out, size_t cap);
/* 0 if everything was read and nothing is left, else -EBADMSG. */
int proto_r_end(const struct proto_r *r);

/* Decodes the body of a PROTO_T_ERROR frame (i32 -errno, str message).
 * Returns the -errno, or -EIO when the body holds none (a code that is not
 * a negative errno below 4096); *msg and *mlen are the message, not
 * terminated and untrusted, empty when the body does not parse exactly. */
int proto_error_get(const void *buf, size_t len, const void **msg,
		    size_t *mlen);

/* Reads exactly n bytes from the caller's transport: 0 or a negative
 * errno. */
typedef int (*proto_read_fn)(void *ctx, void *buf, size_t n);
/* Takes an error frame's message: not terminated, untrusted. */
typedef void (*proto_errmsg_fn)(void *ctx, const void *msg, size_t n);

/* The rest of the reply to a request of type `type`, whose 12-byte header
 * `hdr` the caller has read: decodes it into *h, reads its body with
 * rd(ctx, ...) into *body (malloc'd, at least one byte even when empty;
 * the caller frees it) and sets *len.  An error frame's message goes to
 * on_error(ctx, ...) and its -errno is returned.  Returns 0; -EIO for a
 * header that does not decode or a reply to another type; -ENOMEM; rd's
 * error; or the error frame's -errno.  On failure *body is NULL and *len
 * 0.  The id is not checked: it is in h->id for the caller. */
int proto_reply_read(const uint8_t hdr[PROTO_HDR_SIZE], uint16_t type,
		     proto_read_fn rd, proto_errmsg_fn on_error, void *ctx,
		     struct proto_hdr *h, uint8_t **body, size_t *len);

#endif
