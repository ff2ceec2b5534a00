/*
 * resp.h - a small, strict reader of Redis' RESP3 protocol (and RESP2,
 * its subset), and the writer of the commands the near cache sends.
 *
 * The reader is a pure function of bytes: it turns one complete frame at
 * the start of a buffer into a flat list of nodes, in pre-order (an
 * aggregate is followed by its elements).  It is resumable: given a
 * frame's first part it keeps its place, and the next call with more
 * bytes (the same start, the buffer possibly moved) goes on from there,
 * so a large frame arriving in pieces is read once, not once per piece.
 * Every size is bounded (RESP_* below): a frame beyond them, a type it
 * does not know or a malformed line is an error, never a crash or a wait
 * for bytes that cannot come.  The caller decides what an error means
 * (the near cache drops the connection and reconnects).
 *
 * Types read: + - : $ * > _ # , % ~ | ( ! = (simple string, error,
 * integer, blob string, array, push, null, boolean, double, map, set,
 * attribute, big number, blob error, verbatim string).  An attribute
 * (|) is skipped: it annotates the value after it, which is read as if
 * it were alone.  RESP2's null bulk ($-1) and null array (*-1) are read
 * as a null.  Streamed strings and aggregates (RESP3's "?" lengths) are
 * refused: Redis does not send them.
 *
 * What it is not: no socket, no allocation other than the node list
 * (which grows up to RESP_NODES_MAX).  Not thread-safe: one reader per
 * connection.
 */
#ifndef SHMC_RESP_H
#define SHMC_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RESP_LINE_MAX (64u << 10) /* bytes in a line without \r\n */
#define RESP_BULK_MAX (64u << 20) /* bytes in one blob string */
#define RESP_NODES_MAX (4u << 20) /* values in one frame */
#define RESP_DEPTH_MAX 16u	  /* nesting of aggregates */

/* One value.  Strings (simple, blob, error, verbatim, double, big number)
 * are [off, off + len) of the buffer given to resp_read(), without the
 * verbatim string's "txt:" part.  An aggregate's elements follow it:
 * `n` of them (a map's and an attribute's: 2 x pairs), its subtree ends
 * at node `end` (the index after its last descendant). */
struct resp_node {
	char type;  /* the type byte; '_' for every null */
	uint32_t n; /* elements of an aggregate */
	uint32_t end;
	int64_t i; /* integer, boolean (0/1) */
	size_t off, len;
};

struct resp_reader {
	struct resp_node *nodes;
	uint32_t nnodes, cap;
	size_t pos; /* bytes of the frame read so far */
	/* open aggregates: the node and how many elements it still needs */
	struct {
		uint32_t node;
		uint64_t left;
	} stack[RESP_DEPTH_MAX];
	uint32_t depth;
};

/* Sets r up empty.  Cannot fail. */
void resp_init(struct resp_reader *r);

/* Frees the node list. */
void resp_fini(struct resp_reader *r);

/* Reads (on) the frame at buf[0..len).  Returns 1 when it is complete
 * (r->nodes[0..r->nnodes) hold it, r->pos is its length in bytes), 0 when
 * more bytes are needed (call again with the same start and more bytes),
 * -EPROTO for bytes that are not RESP (the reason in *why, a static
 * string), -EMSGSIZE for a frame beyond the limits, -ENOMEM.  After 1 or
 * an error, call resp_reset() before the next frame. */
int resp_read(struct resp_reader *r, const uint8_t *buf, size_t len,
	      const char **why);

/* Forgets the frame read, keeps the node list's memory. */
void resp_reset(struct resp_reader *r);

/* The index of the next sibling of node i (after its subtree). */
static inline uint32_t resp_next(const struct resp_reader *r, uint32_t i)
{
	return r->nodes[i].end;
}

/* Whether node i is a string (simple, blob or verbatim) equal to s,
 * ignoring case. */
bool resp_str_eq(const struct resp_reader *r, const uint8_t *buf, uint32_t i,
		 const char *s);

/* Writes a command as an array of blob strings into out (cap bytes):
 * argv[i] of length lens[i].  Returns the bytes written, or 0 when it
 * does not fit. */
size_t resp_command(uint8_t *out, size_t cap, int argc, const void *const *argv,
		    const size_t *lens);

#endif
