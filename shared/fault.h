/*
 * fault.h - fault injection for the crash tests: named points inside the
 * engine's critical sections where a process can be made to stop, so that a
 * test can kill it there deterministically instead of by luck.
 *
 * Only in test builds: meson -Dfault_injection=true (tools/test sets it)
 * compiles fault.c into the engine and defines SHMC_FAULT_INJECTION.  There
 * it is off unless the environment variable SHMC_FAULT names a point when
 * the process attaches (read once).  At the point, the process writes
 * "shmc-fault: NAME\n" to stderr and then sleeps forever, holding whatever
 * it holds.  Cost when off: one predictable branch per point.
 *
 * Without SHMC_FAULT_INJECTION (the default, and every build users get)
 * SHMC_FAULT is ignored: fault_init() does nothing, fault_armed is the
 * constant FAULT_NONE and FAULT() compiles to nothing.
 */
#ifndef SHMC_FAULT_H
#define SHMC_FAULT_H

/* X(id, name) */
#define FAULT_POINTS(X)                                                        \
	X(LOCKED, "locked")		/* a lock held, no mutation open */    \
	X(SET_BEGIN, "set-begin")	/* mutation open, nothing written */   \
	X(SET_HEADER, "set-header")	/* new entry: header written only */   \
	X(SET_VALUE, "set-value")	/* new entry: half the value */        \
	X(OVERWRITE, "overwrite")	/* in place: value half written */     \
	X(VERSION, "version")		/* in place: value new, version old */ \
	X(APPEND_VALUE, "append-value") /* into the slack: half the bytes */   \
	X(APPEND_HEADER, "append-header") /* into the slack: half a header */  \
	X(JOIN_VALUE, "join-value")    /* append/prepend anew: half a value */ \
	X(ARITH_DIGITS, "incr-digits") /* in place: half a counter's digits */ \
	X(EVAC_MOVE, "evacuate-move")  /* entry moved, record not updated */   \
	X(EVAC_DROP, "evacuate-drop")  /* record freed, tail not advanced */   \
	X(DELETE, "delete")	       /* unindexed, mutation still open */

enum fault_point {
	FAULT_NONE = 0,
#define FAULT_ENUM_X(id, name) FAULT_##id,
	FAULT_POINTS(FAULT_ENUM_X)
#undef FAULT_ENUM_X
};

#ifdef SHMC_FAULT_INJECTION

extern enum fault_point fault_armed;

/* Reads SHMC_FAULT (once per process). */
void fault_init(void);

/* Stops the process (see above). */
void fault_stop(enum fault_point p) __attribute__((noreturn, cold));

#define FAULT(id)                                                              \
	do {                                                                   \
		if (__builtin_expect(fault_armed == FAULT_##id, 0))            \
			fault_stop(FAULT_##id);                                \
	} while (0)

#else /* a build without fault injection: SHMC_FAULT is ignored */

#define fault_armed FAULT_NONE

static inline void fault_init(void)
{
}

#define FAULT(id)                                                              \
	do {                                                                   \
	} while (0)

#endif

#endif
