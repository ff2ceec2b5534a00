/*
 * fault.c - fault injection points (see fault.h).
 */
#include "fault.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum fault_point fault_armed = FAULT_NONE;

static const char *const fault_names[] = { [FAULT_NONE] = "none",
#define FAULT_NAME_X(id, name) [FAULT_##id] = name,
					   FAULT_POINTS(FAULT_NAME_X)
#undef FAULT_NAME_X
};

void fault_init(void)
{
	static int done;

	if (__atomic_exchange_n(&done, 1, __ATOMIC_ACQ_REL))
		return;
	const char *want = getenv("SHMC_FAULT");
	if (!want || !*want)
		return;
	for (size_t i = 1; i < sizeof(fault_names) / sizeof(fault_names[0]);
	     i++)
		if (strcmp(want, fault_names[i]) == 0)
			__atomic_store_n(&fault_armed, (enum fault_point)i,
					 __ATOMIC_RELAXED);
}

void fault_stop(enum fault_point p)
{
	char line[64] = "shmc-fault: ";

	strncat(line, fault_names[p], sizeof(line) - strlen(line) - 2);
	strcat(line, "\n");
	ssize_t n = write(STDERR_FILENO, line, strlen(line));
	(void)n;
	for (;;)
		pause();
}
