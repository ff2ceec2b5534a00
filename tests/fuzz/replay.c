/*
 * replay.c - runs a libFuzzer target over saved inputs without libFuzzer,
 * so that the seed corpora and the regression inputs are replayed by every
 * build (gcc, ASan+UBSan) as ordinary tests.
 *
 *     fuzz-replay-request DIR|FILE...
 *
 * Each argument is a file or a directory whose regular files (not
 * recursively) are fed, in name order, to LLVMFuzzerTestOneInput() one at
 * a time, each in a buffer of exactly its size.  A broken check in the
 * target aborts the process, naming the check; the input being replayed is
 * printed first (on stderr) so that it can be found.  Prints
 * "replayed N inputs" and exits 0, or exits 1 when an argument cannot be
 * read or no input was found (a replay of nothing proves nothing).
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Replays one file.  Returns 0, or -errno when it cannot be read. */
static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct stat st;

	if (!f)
		return -errno;
	if (fstat(fileno(f), &st) < 0 || st.st_size < 0) {
		int err = -errno;
		fclose(f);
		return err;
	}
	size_t size = (size_t)st.st_size;
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	if (size && fread(buf, 1, size, f) != size) {
		free(buf);
		fclose(f);
		return -EIO;
	}
	fclose(f);

	fprintf(stderr, "replaying %s (%zu bytes)\n", path, size);
	LLVMFuzzerTestOneInput(buf, size);
	free(buf);
	return 0;
}

static int is_regular(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Replays the regular files of dir in name order; adds them to *count.
 * Returns 0 or -errno. */
static int replay_dir(const char *dir, unsigned long *count)
{
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);
	int rc = 0;

	if (n < 0)
		return -errno;
	for (int i = 0; i < n; i++) {
		size_t len = strlen(dir) + 1 + strlen(names[i]->d_name) + 1;
		char *path = malloc(len);
		if (!path) {
			rc = -ENOMEM;
		} else {
			snprintf(path, len, "%s/%s", dir, names[i]->d_name);
			if (rc == 0 && is_regular(path)) {
				rc = replay_file(path);
				if (rc == 0)
					(*count)++;
				else
					fprintf(stderr, "replay: %s: %s\n",
						path, strerror(-rc));
			}
			free(path);
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

int main(int argc, char **argv)
{
	unsigned long count = 0;
	int failed = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		struct stat st;
		int rc;

		if (stat(argv[i], &st) < 0)
			rc = -errno;
		else if (S_ISDIR(st.st_mode))
			rc = replay_dir(argv[i], &count);
		else if ((rc = replay_file(argv[i])) == 0)
			count++;
		if (rc) {
			fprintf(stderr, "replay: %s: %s\n", argv[i],
				strerror(-rc));
			failed = 1;
		}
	}
	printf("replayed %lu inputs\n", count);
	if (!failed && count == 0) {
		fprintf(stderr, "replay: no inputs found\n");
		failed = 1;
	}
	return failed;
}
