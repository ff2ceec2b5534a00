/*
 * item_client.c - items with flags and versions for the persistence tests
 * (test_persist.py), through the engine of a libshmc handle: libshmc has
 * no call for flags or versions on this branch, and the control protocol
 * none either.
 *
 *   item_client SOCKET set KEY VALUE FLAGS   stores; prints "VERSION"
 *   item_client SOCKET gets KEY              prints "FLAGS VERSION VALUE",
 *                                            exit 1 when absent
 *   item_client SOCKET cas KEY VALUE VERSION stores if still of VERSION;
 *                                            prints "stored", "exists"
 *                                            (-EEXIST) or "absent"
 *   item_client SOCKET floor VERSION         versions from now on are
 *                                            above VERSION
 *
 * Exit 0, 1 (absent), or 2 with the error on stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <shmc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

/* libshmc's handle starts with its engine, attached to the region under
 * the client id the daemon gave it (struct shmc, libclient/shmc.c). */
static struct eng *engine_of(shmc *c)
{
	return (struct eng *)(void *)c;
}

static int fail(const char *what, int rc)
{
	fprintf(stderr, "item_client: %s: %s\n", what, strerror(-rc));
	return 2;
}

int main(int argc, char **argv)
{
	shmc *c;
	int rc;

	if (argc < 4) {
		fprintf(stderr, "usage: item_client SOCKET set|gets|cas KEY "
				"[VALUE FLAGS|VERSION]\n");
		return 2;
	}
	if ((rc = shmc_open(&c, argv[1])) != 0)
		return fail("open", rc);
	struct eng *e = engine_of(c);
	const char *op = argv[2], *key = argv[3];
	size_t klen = strlen(key);
	uint64_t cas = 0;

	if (!strcmp(op, "set") && argc == 6) {
		struct eng_wopts o = { .flags = (uint32_t)strtoul(argv[5], NULL,
								  0) };
		rc = eng_store(e, key, klen, argv[4], strlen(argv[4]), &o,
			       &cas);
		if (rc)
			return fail("set", rc);
		printf("%" PRIu64 "\n", cas);
	} else if (!strcmp(op, "gets") && argc == 4) {
		char buf[4096];
		struct eng_meta m;
		rc = eng_get_ex(e, key, klen, buf, sizeof(buf) - 1, &m);
		if (rc == -ENOENT)
			return 1;
		if (rc)
			return fail("gets", rc);
		buf[m.vlen] = '\0';
		printf("%" PRIu32 " %" PRIu64 " %s\n", m.flags, m.cas, buf);
	} else if (!strcmp(op, "cas") && argc == 6) {
		struct eng_wopts o = { .mode = ENG_CAS,
				       .cas = strtoull(argv[5], NULL, 0) };
		rc = eng_store(e, key, klen, argv[4], strlen(argv[4]), &o,
			       NULL);
		if (rc && rc != -EEXIST && rc != -ENOENT)
			return fail("cas", rc);
		puts(rc == 0 ? "stored" : rc == -EEXIST ? "exists" : "absent");
	} else if (!strcmp(op, "floor") && argc == 4) {
		if ((rc = eng_version_floor(e, strtoull(key, NULL, 0))))
			return fail("floor", rc);
	} else {
		fprintf(stderr, "item_client: bad arguments\n");
		return 2;
	}
	shmc_close(c);
	return 0;
}
