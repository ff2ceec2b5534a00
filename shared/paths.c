/*
 * paths.c - default socket path and region name (see paths.h).
 */
#include "paths.h"

#include <stdio.h>
#include <stdlib.h>

void paths_default_socket(char *out, size_t n, uid_t euid)
{
	if (euid == 0) {
		snprintf(out, n, "%s", PATHS_SYSTEM_SOCKET);
		return;
	}
	/* The XDG spec says to ignore a relative XDG_RUNTIME_DIR. */
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int len = -1;

	if (xdg && xdg[0] == '/')
		len = snprintf(out, n, "%s/shmcached.sock", xdg);
	if (len < 0 || (size_t)len >= n)
		snprintf(out, n, "/tmp/shmcached-%u/shmcached.sock",
			 (unsigned)euid);
}

void paths_default_name(char *out, size_t n, uid_t euid)
{
	if (euid == 0)
		snprintf(out, n, "%s", PATHS_SYSTEM_NAME);
	else
		snprintf(out, n, "/shmcached-%u", (unsigned)euid);
}
