/*
 * clients.h - the region's table of attached clients, the daemon's own
 * book of them, and the liveness check built on both: is the process that
 * holds a lock still alive?
 *
 * Who may declare a client dead.  Any process that maps the region can
 * write the table, so the table is only a copy for others to read; the
 * daemon judges by its book (struct clients, in its private memory), and
 * writes the table from the book (clients_add, clients_remove, and every
 * clients_sweep rewrites slots that differ, so forged or garbage slots last
 * at most until the next sweep).  While a daemon owns the region (owner.h),
 * waiters never judge for themselves: clients_alive() says "alive", and a
 * dead holder's lock is taken over, and its waiters woken, by the daemon
 * (at the holder's disconnect, or by the sweep).  Only when no daemon owns
 * the region do waiters judge from the table, so that a lock whose holder
 * died is recovered even with no daemon running.
 *
 * How a process is judged (clients_judge): its pid must be in 1..pid_max,
 * its /proc entry must exist with the start time recorded for it (a reused
 * pid has another), and some thread of it must not be exiting (a zombie, or
 * a process killed but not yet reaped, holds nothing any more).  A pid is
 * only meaningful in the daemon's pid namespace: a waiter elsewhere never
 * judges, and a client whose start time the daemon could not read (a pid
 * namespace it cannot see) cannot be judged at all - presumed alive while
 * connected, since a wrong "dead" would let two processes into one critical
 * section while a wrong "alive" only waits for the daemon or the timeout;
 * once its connection is gone, the connection was the only sign of life,
 * and its locks are taken over (conn.c, clients_adopt).
 *
 * Not for: deciding who may connect (conn.c), or locking (lock.h).
 */
#ifndef SHMC_CLIENTS_H
#define SHMC_CLIENTS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine.h"
#include "layout.h"

/* ------------------------------------------------------------------------
 * Processes
 * ------------------------------------------------------------------------ */

/* The inode of this process's pid namespace, 0 if unknown. */
uint64_t clients_pidns_self(void);

/* Start time of pid (clock ticks after boot), or 0 if unreadable or pid is
 * out of range. */
uint64_t clients_start_time(pid_t pid);

/* The `start` word a table slot records for process pid, as seen from this
 * process (the daemon): its start time, with CLIENT_FOREIGN_NS set when pid
 * is not in this pid namespace or its start time cannot be read (then 0 in
 * the low bits: the client cannot be judged). */
uint64_t clients_start_word(pid_t pid);

enum clients_verdict {
	CLIENTS_DEAD,	 /* gone, reused, exiting, or the slot is garbage */
	CLIENTS_ALIVE,	 /* this very process runs */
	CLIENTS_UNKNOWN, /* cannot be judged from here */
};

/* Judges the process a slot describes (pid and start word as recorded).
 * DEAD for a pid outside 1..pid_max, a missing start time (unless marked
 * CLIENT_FOREIGN_NS: UNKNOWN), a pid with no /proc entry or another start
 * time, or a process whose every thread is exiting or a zombie.  UNKNOWN
 * when the process exists but /proc hides it (hidepid).  Thread-safe. */
enum clients_verdict clients_judge(uint32_t pid, uint64_t start);

/* ------------------------------------------------------------------------
 * The daemon's book (daemon only, from its loop thread)
 * ------------------------------------------------------------------------ */

/* The daemon's private record of its clients; rec[i] is what table slot i
 * must hold.  Written by the loop thread only; `lock` is held while it
 * writes and by clients_book_alive(), which other threads (the snapshot
 * job's lock waits) call too.  An id has one record, except ids adopted
 * from a table that several slots claim (see clients_adopt). */
struct clients {
	struct eng *e;
	pthread_mutex_t lock;
	struct client_slot rec[LAYOUT_CLIENTS];
};

/* Starts the book for the region attached at e (a new region, or one
 * adopted at a warm restart): keeps each table slot of an id this region
 * handed out (2..next_client_id-1) that describes a live process, and frees
 * every other slot - garbage, dead or reused pids, missing start times, and
 * clients that cannot be judged from here (another pid namespace, a hidden
 * /proc: kept, a forged "foreign" slot would hold its place for ever).  The table was writable by every client while no daemon ran, so
 * a slot may be forged: an id that several kept slots claim keeps them all
 * (its locks are its until none of them is alive) and is given back to
 * nobody (clients_find).  The locks of an id no kept slot claims are taken
 * over (eng_recover).  The id that e itself carries is left for
 * clients_add.  Returns how many slots were freed. */
int clients_adopt(struct clients *b, struct eng *e);

/* Records client id as process pid with start word `start` (see
 * clients_start_word), in the book and the table.  Returns 0, or -EUSERS
 * when the table is full. */
int clients_add(struct clients *b, uint32_t id, pid_t pid, uint64_t start);

/* Forgets id (no-op if absent). */
void clients_remove(struct clients *b, uint32_t id);

/* The book's record of id, or NULL (also when several records claim id:
 * no process may take such an id back). */
const struct client_slot *clients_find(const struct clients *b, uint32_t id);

/* The daemon's liveness check (an eng_alive_fn; arg is the struct clients),
 * from any thread: false when no record of id describes a process that is
 * alive or cannot be judged. */
bool clients_book_alive(void *arg, uint32_t id);

/* Forgets each recorded client (but the daemon's own id) judged dead, and
 * takes over the locks of its id (eng_recover) once no record of that id
 * is left; rewrites every table slot that differs from the book.  Returns
 * how many dead clients held a lock; *removed (if not NULL) gets how many
 * records were forgotten. */
int clients_sweep(struct clients *b, int *removed);

/* ------------------------------------------------------------------------
 * A client's check
 * ------------------------------------------------------------------------ */

/* What clients_alive needs: the attachment, and an fd of the region file
 * (to ask owner_query() whether a daemon owns the region). */
struct clients_view {
	const struct eng *e;
	int region_fd;
};

/* The library's liveness check (an eng_alive_fn; arg is a struct
 * clients_view).  True while a daemon owns the region (or when that cannot
 * be told): only the daemon declares clients dead then.  With no daemon:
 * false only when no table slot for id describes a process that may be
 * alive, and this process is in the daemon's pid namespace. */
bool clients_alive(void *arg, uint32_t id);

#endif
