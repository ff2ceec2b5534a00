/*
 * lease_client.c - fills through libshmc's fill leases (shmc_get_lease(),
 * shmc_fill()) for the near cache's tests (test_nearcache.py): what an
 * application reading through to Redis does after a miss.
 *
 *   lease_client SOCKET KEY VALUE   takes the lease (a miss), prints
 *                                   "leased", waits for a line on stdin
 *                                   (the test does things to Redis
 *                                   meanwhile), then fills KEY with
 *                                   VALUE and prints "filled", "stale"
 *                                   (-ESTALE: nothing stored), "exists"
 *                                   or "hit" (the key was there at first)
 *
 * Exit 0, or 2 with the error on stderr.
 */
#include <errno.h>
#include <shmc.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	struct shmc_lease l;
	struct shmc_item it;
	char buf[256], line[16];
	shmc *c;
	int rc;

	if (argc != 4) {
		fprintf(stderr, "usage: lease_client SOCKET KEY VALUE\n");
		return 2;
	}
	if ((rc = shmc_open(&c, argv[1]))) {
		fprintf(stderr, "shmc_open: %s\n", shmc_strerror(rc));
		return 2;
	}
	rc = shmc_get_lease(c, argv[2], strlen(argv[2]), buf, sizeof(buf), &it,
			    &l);
	if (rc == 0) {
		puts("hit");
		shmc_close(c);
		return 0;
	}
	if (rc != -ENOENT) {
		fprintf(stderr, "shmc_get_lease: %s\n", shmc_strerror(rc));
		return 2;
	}
	puts("leased");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		line[0] = '\0';
	rc = shmc_fill(c, &l, argv[2], strlen(argv[2]), argv[3],
		       strlen(argv[3]), NULL, NULL);
	shmc_close(c);
	switch (rc) {
	case 0:
		puts("filled");
		return 0;
	case -ESTALE:
		puts("stale");
		return 0;
	case -EEXIST:
		puts("exists");
		return 0;
	default:
		fprintf(stderr, "shmc_fill: %s\n", shmc_strerror(rc));
		return 2;
	}
}
