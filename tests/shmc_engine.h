/*
 * shmc_engine.h - the engine under a libshmc handle, for the test programs
 * that exercise the item operations (add, cas, incr, append, prepend:
 * eng_store() and eng_arith() in shared/engine.h) through a real client's
 * attachment, locks and client id, so that the crash tests and the chaos
 * stress kill a registered client inside them.
 *
 * A test-only window: struct shmc (libclient/shmc.c) begins with its
 * struct eng.  Programs that include this link libshmc's static library
 * (tests/meson.build: shmc_engine_dep), whose engine symbols the shared
 * library's version script hides.  Once shmc.h exports these operations,
 * the programs should call those instead.
 */
#ifndef SHMC_TESTS_SHMC_ENGINE_H
#define SHMC_TESTS_SHMC_ENGINE_H

#include "engine.h"
#include "shmc.h"

/* The engine of an open handle c. */
static inline struct eng *shmc_engine_of(shmc *c)
{
	return (struct eng *)(void *)c;
}

#endif
