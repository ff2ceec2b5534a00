/*
 * paths.h - where a shmcached listens and what its region is called by
 * default, so that the daemon and the library agree without configuration.
 *
 *   root:       /run/shmcached/shmcached.sock          region /shmcached
 *   other uid:  $XDG_RUNTIME_DIR/shmcached.sock        region /shmcached-UID
 *               (or /tmp/shmcached-UID/shmcached.sock when XDG_RUNTIME_DIR
 *               is unset or relative)
 */
#ifndef SHMC_PATHS_H
#define SHMC_PATHS_H

#include <stddef.h>
#include <sys/types.h>

#define PATHS_SYSTEM_SOCKET "/run/shmcached/shmcached.sock"
#define PATHS_SYSTEM_NAME "/shmcached"

/* The default socket path and region name for a daemon run by euid.
 * Always terminated; cut to n - 1 bytes at worst (callers size for 108). */
void paths_default_socket(char *out, size_t n, uid_t euid);
void paths_default_name(char *out, size_t n, uid_t euid);

#endif
