/*
 * hello.c - the smallest useful libshmc program: store a value, read it
 * back, show the cache's counters.  Build it with
 *
 *     cc hello.c $(pkg-config --cflags --libs shmc) -o hello
 *
 * and run it while shmcached runs (SHMC_SOCKET=path if not the default).
 */
#include <shmc.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	const char *key = argc > 1 ? argv[1] : "greeting";
	const char *val = argc > 2 ? argv[2] : "hello, shared memory";
	char buf[256];
	size_t len;
	shmc *c;
	int rc;

	if ((rc = shmc_open(&c, NULL)) != 0) {
		fprintf(stderr, "shmc_open: %s\n", shmc_strerror(rc));
		return 1;
	}
	if ((rc = shmc_set(c, key, strlen(key), val, strlen(val), 60)) != 0 ||
	    (rc = shmc_get(c, key, strlen(key), buf, sizeof(buf), &len)) != 0) {
		fprintf(stderr, "%s: %s\n", key, shmc_strerror(rc));
		shmc_close(c);
		return 1;
	}
	printf("%s = %.*s\n", key, (int)len, buf);

	struct shmc_stats st;
	shmc_stat(c, &st);
	printf("entries %llu, hits %llu, misses %llu\n",
	       (unsigned long long)st.entries, (unsigned long long)st.hits,
	       (unsigned long long)st.misses);
	shmc_close(c);
	return 0;
}
