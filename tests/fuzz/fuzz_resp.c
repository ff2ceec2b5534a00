/*
 * fuzz_resp.c - libFuzzer target for the near cache's RESP3 reader
 * (daemon/resp.c): arbitrary bytes, given in growing pieces as a socket
 * would deliver them, frame after frame.
 *
 * Input: one control byte, then what a Redis server sends.
 *   control 0     everything at once;
 *   otherwise     each receive adds 1 to 64 bytes, drawn from a
 *                 generator seeded with the control byte.
 * After each receive the driver reads frames until one is incomplete or
 * refused (then, as the tracking thread does, it stops: a refused frame
 * closes the connection).
 *
 * Checks, beyond the sanitizers (each piece is a heap buffer of exactly
 * its size, so a read past it is caught):
 *   - a complete frame is within the bytes given, has at least one node,
 *     and every node's string and subtree are within the frame;
 *   - an aggregate's `end` is after it, and its elements, walked with
 *     resp_next(), are exactly `n` (attributes already dropped);
 *   - the reader answers only 1, 0, -EPROTO, -EMSGSIZE or -ENOMEM;
 *   - reading the same bytes again from scratch gives the same answer and
 *     the same frame length (the resumed reading is the whole one).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "resp.h"

static void check_frame(const struct resp_reader *r, size_t avail)
{
	CHECK(r->pos <= avail);
	CHECK(r->nnodes > 0);
	CHECK(r->nodes[0].end == r->nnodes);
	for (uint32_t i = 0; i < r->nnodes; i++) {
		const struct resp_node *n = &r->nodes[i];

		CHECK(n->off + n->len <= r->pos);
		CHECK(n->end > i && n->end <= r->nnodes);
		if (n->type == '*' || n->type == '>' || n->type == '~' ||
		    n->type == '%') {
			uint32_t k = 0;

			for (uint32_t j = i + 1; j < n->end;
			     j = resp_next(r, j))
				k++;
			CHECK(k == n->n);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct resp_reader r, again;
	unsigned seed;
	size_t start = 0, have = 0;

	if (size == 0)
		return 0;
	seed = data[0];
	data++;
	size--;
	resp_init(&r);
	resp_init(&again);
	while (have < size) {
		size_t step = seed ? 1 + (size_t)rand_r(&seed) % 64 : size;

		have = have + step < size ? have + step : size;
		for (;;) {
			size_t avail = have - start;
			uint8_t *buf = malloc(avail ? avail : 1);

			CHECK(buf != NULL);
			memcpy(buf, data + start, avail);
			int rc = resp_read(&r, buf, avail, NULL);

			CHECK(rc == 1 || rc == 0 || rc == -EPROTO ||
			      rc == -EMSGSIZE || rc == -ENOMEM);
			if (rc == 1)
				check_frame(&r, avail);
			if (rc != 0) {
				resp_reset(&again);
				int rc2 = resp_read(&again, buf, avail, NULL);

				CHECK(rc2 == rc);
				CHECK(rc != 1 || again.pos == r.pos);
			}
			free(buf);
			if (rc != 1) {
				if (rc < 0)
					have = size; /* the connection closes */
				break;
			}
			start += r.pos;
			resp_reset(&r);
		}
	}
	resp_fini(&r);
	resp_fini(&again);
	return 0;
}
