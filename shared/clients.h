/*
 * clients.h - the region's table of attached clients, and the liveness
 * check built on it: is the process that holds a lock still alive?
 *
 * The daemon is the only writer (clients_add at the handshake,
 * clients_remove after a disconnect, clients_sweep for processes that died
 * while it was down).  Anyone reads: clients_alive() is the eng_alive_fn
 * that the library and the daemon install, so that a waiter on a lock whose
 * holder died wakes within a bounded time even with no daemon running.
 *
 * A pid is trusted only where it means the same process: the checking
 * process must share the daemon's pid namespace, and a client from another
 * namespace is always presumed alive (a wrong "dead" would let two
 * processes into one critical section; a wrong "alive" only waits for the
 * daemon or the lock timeout).
 */
#ifndef SHMC_CLIENTS_H
#define SHMC_CLIENTS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine.h"

/* The inode of this process's pid namespace, 0 if unknown. */
uint64_t clients_pidns_self(void);

/* Whether pid is in this process's pid namespace (false if unknown). */
bool clients_same_ns(pid_t pid);

/* Start time of pid (clock ticks after boot), or 0 if unreadable. */
uint64_t clients_start_time(pid_t pid);

/* Records client id as process pid (the daemon's view of it).  foreign:
 * the process is in another pid namespace.  Returns 0, or -EUSERS when
 * the table is full. */
int clients_add(struct eng *e, uint32_t id, pid_t pid, bool foreign);

/* Forgets id (no-op if absent). */
void clients_remove(struct eng *e, uint32_t id);

/* The liveness check (an eng_alive_fn; arg is the struct eng).  False only
 * when the holder is known dead: no slot for id, or its pid is gone or was
 * reused - and this process can judge pids of the daemon's namespace. */
bool clients_alive(void *arg, uint32_t id);

/* For each recorded client that is dead: calls eng_recover() for it and
 * removes it.  Returns how many were removed. */
int clients_sweep(struct eng *e);

#endif
