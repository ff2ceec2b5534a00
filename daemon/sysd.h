/*
 * sysd.h - the two systemd protocols the daemon speaks, without libsystemd:
 * socket activation (LISTEN_PID / LISTEN_FDS, sd_listen_fds(3)) and state
 * notification ($NOTIFY_SOCKET, sd_notify(3)).  Both are no-ops when the
 * daemon was not started by systemd.
 */
#ifndef SHMC_SYSD_H
#define SHMC_SYSD_H

#define SYSD_LISTEN_FDS_START 3

/* The number of sockets systemd passed (from fd 3 on), 0 if none.  Unsets
 * the variables so that children do not inherit them. */
int sysd_listen_fds(void);

/* Sends a state string such as "READY=1\nSTATUS=serving".  Returns 0 (also
 * when there is no $NOTIFY_SOCKET) or -errno. */
int sysd_notify(const char *state);

#endif
