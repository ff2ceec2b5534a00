/*
 * item_client.c - items with flags and versions for the persistence tests
 * (test_persist.py), through libshmc's item calls; and, to stand for a
 * region that has issued versions far above the clock, a raise of the
 * version floor through the engine on a mapping of the region's file.
 *
 *   item_client SOCKET set KEY VALUE FLAGS   stores; prints "VERSION"
 *   item_client SOCKET gets KEY              prints "FLAGS VERSION VALUE",
 *                                            exit 1 when absent
 *   item_client SOCKET cas KEY VALUE VERSION stores if still of VERSION;
 *                                            prints "stored", "exists"
 *                                            (-EEXIST) or "absent"
 *   item_client SOCKET floor VERSION SHM     versions from now on are
 *                                            above VERSION (SHM: the
 *                                            region's /dev/shm path)
 *
 * Exit 0, 1 (absent), or 2 with the error on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <shmc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"

static int fail(const char *what, int rc)
{
	fprintf(stderr, "item_client: %s: %s\n", what, shmc_strerror(rc));
	return 2;
}

/* Raises the version floor of the region at path, attached under the id
 * the daemon gave the handle c (so that its locks name a live client). */
static int floor_at(shmc *c, const char *path, uint64_t v)
{
	struct eng e;
	struct stat st;
	int fd = open(path, O_RDWR), rc;

	if (fd < 0 || fstat(fd, &st))
		return -errno;
	void *base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
			  MAP_SHARED, fd, 0);
	close(fd);
	if (base == MAP_FAILED)
		return -errno;
	rc = eng_attach(&e, base, (size_t)st.st_size, shmc_client_id(c), NULL);
	if (rc == 0)
		rc = eng_version_floor(&e, v);
	munmap(base, (size_t)st.st_size);
	return rc;
}

/* One operation on c: the exit code. */
static int run(shmc *c, int argc, char **argv)
{
	const char *op = argv[2], *key = argv[3];
	size_t klen = strlen(key);
	uint64_t cas = 0;
	int rc;

	if (!strcmp(op, "set") && argc == 6) {
		struct shmc_store_opts o = {
			.flags = (uint32_t)strtoul(argv[5], NULL, 0)
		};
		rc = shmc_set_ex(c, key, klen, argv[4], strlen(argv[4]), &o,
				 &cas);
		if (rc)
			return fail("set", rc);
		printf("%" PRIu64 "\n", cas);
	} else if (!strcmp(op, "gets") && argc == 4) {
		char buf[4096];
		struct shmc_item m;
		rc = shmc_get_item(c, key, klen, buf, sizeof(buf) - 1, &m);
		if (rc == -ENOENT)
			return 1;
		if (rc)
			return fail("gets", rc);
		buf[m.vlen] = '\0';
		printf("%" PRIu32 " %" PRIu64 " %s\n", m.flags, m.cas, buf);
	} else if (!strcmp(op, "cas") && argc == 6) {
		rc = shmc_cas(c, key, klen, argv[4], strlen(argv[4]),
			      strtoull(argv[5], NULL, 0), NULL, NULL);
		if (rc && rc != -EEXIST && rc != -ENOENT)
			return fail("cas", rc);
		puts(rc == 0 ? "stored" : rc == -EEXIST ? "exists" : "absent");
	} else if (!strcmp(op, "floor") && argc == 5) {
		if ((rc = floor_at(c, argv[4], strtoull(key, NULL, 0))))
			return fail("floor", rc);
	} else {
		fprintf(stderr, "item_client: bad arguments\n");
		return 2;
	}
	return 0;
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
	/* Closed on every path: a leak sanitizer fails the run otherwise. */
	rc = run(c, argc, argv);
	shmc_close(c);
	return rc;
}
