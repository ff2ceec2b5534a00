/*
 * sysd.h - the systemd protocols the daemon speaks, without libsystemd:
 * socket activation and the file-descriptor store (LISTEN_PID, LISTEN_FDS,
 * LISTEN_FDNAMES; sd_listen_fds_with_names(3)) and state notification
 * ($NOTIFY_SOCKET; sd_notify(3), sd_pid_notify_with_fds(3)).  All are
 * no-ops when the daemon was not started by systemd.
 */
#ifndef SHMC_SYSD_H
#define SHMC_SYSD_H

#define SYSD_LISTEN_FDS_START 3
#define SYSD_REGION_FDNAME "region" /* our name in the fd store */
#define SYSD_MC_FDNAME "memcached"  /* memcached protocol listeners */
#define SYSD_MC_FDS_MAX 16

/* What systemd passed: the control socket and a stored region (each -1
 * when absent), and the memcached listeners.  A passed fd named
 * SYSD_REGION_FDNAME is the region, those named SYSD_MC_FDNAME (up to
 * SYSD_MC_FDS_MAX) serve the memcached protocols, the first other one is
 * the control socket.  Unsets the variables so children do not inherit
 * them. */
struct sysd_fds {
	int listen_fd;
	int region_fd;
	int mc_fds[SYSD_MC_FDS_MAX];
	int n_mc_fds;
};
void sysd_listen_fds(struct sysd_fds *out);

/* Sends a state string such as "READY=1\nSTATUS=serving", with fd attached
 * when fd >= 0 (for "FDSTORE=1\nFDNAME=...").  Returns 0 (also when there
 * is no $NOTIFY_SOCKET) or -errno. */
int sysd_notify(const char *state);
int sysd_notify_fd(const char *state, int fd);

#endif
