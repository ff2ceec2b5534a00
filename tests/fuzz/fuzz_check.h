/*
 * fuzz_check.h - what every fuzz target does when the code under test
 * breaks a promise: report it and crash, so that the fuzzer (or the corpus
 * replay) records the input.  CHECKF adds a printf-style explanation.
 */
#ifndef SHMC_FUZZ_CHECK_H
#define SHMC_FUZZ_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECKF(cond, ...)                                                      \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, \
				__LINE__, #cond);                              \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
			abort();                                               \
		}                                                              \
	} while (0)
#define CHECK(cond) CHECKF(cond, "%s", "")

#endif
