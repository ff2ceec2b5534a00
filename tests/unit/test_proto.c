/*
 * test_proto.c - proto_reply_read() (shared/proto.c), the reply
 * reader that libshmc and cachectl --no-map share: the body arrives, an
 * error frame gives its -errno and message, a reply to another request or
 * a broken header is -EIO, a failed read is passed through.  The stream is
 * a buffer in memory here; the real socket paths are the client and
 * integration suites.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

/* The bytes after the header, read by proto_reply_read(), and the error
 * message it hands over. */
struct stream {
	const uint8_t *p;
	size_t left;
	int fail; /* returned by the next read when not 0 */
	char msg[64];
	size_t msg_calls;
};

static int stream_read(void *ctx, void *buf, size_t n)
{
	struct stream *s = ctx;

	if (s->fail)
		return s->fail;
	if (n > s->left)
		return -ECONNRESET;
	if (n) /* an empty stream has no bytes, and p may be NULL */
		memcpy(buf, s->p, n);
	s->p += n;
	s->left -= n;
	return 0;
}

static void stream_errmsg(void *ctx, const void *msg, size_t n)
{
	struct stream *s = ctx;

	s->msg_calls++;
	if (n >= sizeof(s->msg))
		n = sizeof(s->msg) - 1;
	memcpy(s->msg, msg, n);
	s->msg[n] = '\0';
}

/* Reads the frame of `type` with body b (blen bytes) as the reply to a
 * request of type req.  On failure *body is NULL and *len 0, always. */
static int read_reply(struct stream *s, uint16_t type, const void *b,
		      size_t blen, uint16_t req, uint8_t **body, size_t *len)
{
	uint8_t hdr[PROTO_HDR_SIZE];
	struct proto_hdr h = { .len = (uint32_t)blen,
			       .type = type,
			       .version = PROTO_VERSION,
			       .id = 7 };
	struct proto_hdr got;

	proto_hdr_put(hdr, &h);
	s->p = b;
	s->left = blen;
	int rc = proto_reply_read(hdr, req, stream_read, stream_errmsg, s, &got,
				  body, len);
	if (rc == 0) {
		assert_int_equal(got.id, 7);
	} else {
		assert_null(*body);
		assert_int_equal(*len, 0);
	}
	return rc;
}

static void test_proto_reply_body_arrives(void **state)
{
	struct stream s = { 0 };
	uint8_t *body;
	size_t len;

	(void)state;
	assert_int_equal(read_reply(&s, PROTO_T_GET | PROTO_REPLY, "value", 5,
				    PROTO_T_GET, &body, &len),
			 0);
	assert_int_equal(len, 5);
	assert_memory_equal(body, "value", 5);
	assert_int_equal(s.left, 0);
	free(body);

	/* An empty reply still gives a buffer to free. */
	assert_int_equal(read_reply(&s, PROTO_T_FLUSH | PROTO_REPLY, NULL, 0,
				    PROTO_T_FLUSH, &body, &len),
			 0);
	assert_non_null(body);
	assert_int_equal(len, 0);
	free(body);
	assert_int_equal(s.msg_calls, 0);
}

static void test_proto_reply_error_frame_gives_errno_and_words(void **state)
{
	uint8_t buf[64];
	struct proto_w w;
	struct stream s = { 0 };
	uint8_t *body = (uint8_t *)1;
	size_t len = 1;

	(void)state;
	proto_w_init(&w, buf, sizeof(buf));
	proto_put_i32(&w, -ENOENT);
	proto_put_str(&w, "no such key");
	assert_int_equal(read_reply(&s, PROTO_T_ERROR, buf, w.len, PROTO_T_GET,
				    &body, &len),
			 -ENOENT);
	assert_int_equal(s.msg_calls, 1);
	assert_string_equal(s.msg, "no such key");
}

static void test_proto_reply_not_the_reply_is_eio(void **state)
{
	struct stream s = { 0 };
	uint8_t hdr[PROTO_HDR_SIZE];
	struct proto_hdr h = { .type = PROTO_T_GET | PROTO_REPLY,
			       .version = PROTO_VERSION + 1 };
	struct proto_hdr got;
	uint8_t *body;
	size_t len;

	(void)state;
	/* A reply to another request. */
	assert_int_equal(read_reply(&s, PROTO_T_TTL | PROTO_REPLY, "abcd", 4,
				    PROTO_T_GET, &body, &len),
			 -EIO);
	/* A request where a reply belongs. */
	assert_int_equal(read_reply(&s, PROTO_T_GET, NULL, 0, PROTO_T_GET,
				    &body, &len),
			 -EIO);
	/* A header of another protocol version. */
	proto_hdr_put(hdr, &h);
	assert_int_equal(proto_reply_read(hdr, PROTO_T_GET, stream_read,
					  stream_errmsg, &s, &got, &body, &len),
			 -EIO);
	assert_null(body);
	assert_int_equal(s.msg_calls, 0);
}

static void test_proto_reply_read_failure_passed_through(void **state)
{
	struct stream s = { .fail = -ETIMEDOUT };
	uint8_t *body;
	size_t len;

	(void)state;
	assert_int_equal(read_reply(&s, PROTO_T_GET | PROTO_REPLY, "value", 5,
				    PROTO_T_GET, &body, &len),
			 -ETIMEDOUT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_proto_reply_body_arrives),
		cmocka_unit_test(
			test_proto_reply_error_frame_gives_errno_and_words),
		cmocka_unit_test(test_proto_reply_not_the_reply_is_eio),
		cmocka_unit_test(test_proto_reply_read_failure_passed_through),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
