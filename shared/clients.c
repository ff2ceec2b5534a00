/*
 * clients.c - the client table, the daemon's book, and the liveness check
 * (see clients.h).
 *
 * Parts: reading /proc; judging a process; the daemon's book; a client's
 * check.
 */
#include "clients.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "owner.h"

#define PID_MAX_LIMIT 4194304u /* the kernel's ceiling on 64-bit */
#define PF_EXITING 0x4u	       /* task flag, field 9 of /proc/PID/stat */

/* ------------------------------------------------------------------------
 * Reading /proc
 * ------------------------------------------------------------------------ */

/* What this module reads of /proc/PID[/task/TID]/stat. */
struct proc_stat {
	char state;	/* R, S, D, T, Z, X... */
	unsigned flags; /* PF_* */
	uint64_t start; /* clock ticks after boot */
};

/* Reads path (a stat file).  0, or -errno (-ENOENT: no such task). */
static int stat_read(const char *path, struct proc_stat *ps)
{
	char buf[1024];
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	int err = n < 0 ? -errno : 0;
	close(fd);
	if (n <= 0)
		return err ? err : -ENOENT; /* empty: the task is gone */
	buf[n] = '\0';
	/* The command name may hold spaces and ')': fields restart after
	 * the last ')'.  After it come field 3 (state), then 4, 5... */
	char *p = strrchr(buf, ')');
	if (!p)
		return -EIO;
	*ps = (struct proc_stat){ 0 };
	unsigned long long v;
	int field = 2;
	char *save = NULL; /* reentrant: waiters in many threads call this */
	for (char *tok = strtok_r(p + 1, " ", &save); tok;
	     tok = strtok_r(NULL, " ", &save)) {
		field++;
		if (field == 3) {
			ps->state = tok[0];
		} else if (field == 9 && sscanf(tok, "%llu", &v) == 1) {
			ps->flags = (unsigned)v;
		} else if (field == 22) {
			if (sscanf(tok, "%llu", &v) == 1)
				ps->start = v & ~CLIENT_FOREIGN_NS;
			break;
		}
	}
	return field == 22 ? 0 : -EIO;
}

/* The largest pid this system hands out (read once). */
static uint32_t pid_max(void)
{
	static uint32_t cached;
	uint32_t v = __atomic_load_n(&cached, __ATOMIC_RELAXED);

	if (v)
		return v;
	v = PID_MAX_LIMIT;
	FILE *f = fopen("/proc/sys/kernel/pid_max", "re");
	unsigned long n;
	if (f) {
		if (fscanf(f, "%lu", &n) == 1 && n > 1 && n <= PID_MAX_LIMIT)
			v = (uint32_t)n;
		fclose(f);
	}
	__atomic_store_n(&cached, v, __ATOMIC_RELAXED);
	return v;
}

static bool pid_valid(uint32_t pid)
{
	return pid >= 1 && pid <= pid_max();
}

uint64_t clients_pidns_self(void)
{
	struct stat st;

	return stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

/* Whether pid is in this process's pid namespace (false if unknown). */
static bool clients_same_ns(pid_t pid)
{
	char path[64];
	struct stat st;
	uint64_t self = clients_pidns_self();

	if (!pid_valid((uint32_t)pid))
		return false;
	snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pid);
	return self != 0 && stat(path, &st) == 0 && (uint64_t)st.st_ino == self;
}

uint64_t clients_start_time(pid_t pid)
{
	char path[64];
	struct proc_stat ps;

	if (!pid_valid((uint32_t)pid))
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	return stat_read(path, &ps) == 0 ? ps.start : 0;
}

uint64_t clients_start_word(pid_t pid)
{
	uint64_t start = clients_start_time(pid);

	if (start == 0 || !clients_same_ns(pid))
		start |= CLIENT_FOREIGN_NS;
	return start;
}

/* ------------------------------------------------------------------------
 * Judging a process
 * ------------------------------------------------------------------------ */

static bool task_runs(const struct proc_stat *ps)
{
	return ps->state != 'Z' && ps->state != 'X' && ps->state != 'x' &&
	       !(ps->flags & PF_EXITING);
}

/* Whether some thread of pid other than its leader runs (the leader may
 * have left with pthread_exit while the others go on). */
static bool other_task_runs(uint32_t pid)
{
	char path[64];
	bool runs = false;

	snprintf(path, sizeof(path), "/proc/%u/task", (unsigned)pid);
	DIR *dir = opendir(path);
	if (!dir)
		return false;
	for (struct dirent *de; !runs && (de = readdir(dir));) {
		char *end;
		unsigned long tid = strtoul(de->d_name, &end, 10);
		struct proc_stat ps;
		if (*end || tid == 0 || tid == pid)
			continue;
		snprintf(path, sizeof(path), "/proc/%u/task/%lu/stat",
			 (unsigned)pid, tid);
		runs = stat_read(path, &ps) == 0 && task_runs(&ps);
	}
	closedir(dir);
	return runs;
}

enum clients_verdict clients_judge(uint32_t pid, uint64_t start)
{
	uint64_t want = start & ~CLIENT_FOREIGN_NS;
	char path[64];
	struct proc_stat ps;

	if (want == 0)
		return (start & CLIENT_FOREIGN_NS) ? CLIENTS_UNKNOWN
						   : CLIENTS_DEAD;
	if (!pid_valid(pid))
		return CLIENTS_DEAD;
	snprintf(path, sizeof(path), "/proc/%u/stat", (unsigned)pid);
	int rc = stat_read(path, &ps);
	if (rc == -ENOENT || rc == -ESRCH) {
		/* Gone, or hidden from us (hidepid): kill() tells which. */
		if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
			return CLIENTS_DEAD;
		return CLIENTS_UNKNOWN;
	}
	if (rc)
		return CLIENTS_UNKNOWN;
	if (ps.start != want)
		return CLIENTS_DEAD; /* the pid was reused */
	if (task_runs(&ps) || other_task_runs(pid))
		return CLIENTS_ALIVE;
	return CLIENTS_DEAD;
}

/* ------------------------------------------------------------------------
 * The daemon's book
 * ------------------------------------------------------------------------ */

static struct client_slot *table(const struct eng *e)
{
	return (struct client_slot *)(e->base + LAYOUT_REGION_HDR_SIZE);
}

/* Makes table slot i say what the book says, if it does not already. */
static void mirror(struct clients *b, uint32_t i)
{
	struct client_slot *s = &table(b->e)[i];
	const struct client_slot *r = &b->rec[i];

	if (__atomic_load_n(&s->id, __ATOMIC_RELAXED) == r->id &&
	    __atomic_load_n(&s->pid, __ATOMIC_RELAXED) == r->pid &&
	    __atomic_load_n(&s->start, __ATOMIC_RELAXED) == r->start)
		return;
	/* Hidden while it changes; pid and start before the id that makes
	 * the slot visible. */
	__atomic_store_n(&s->id, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&s->pid, r->pid, __ATOMIC_RELAXED);
	__atomic_store_n(&s->start, r->start, __ATOMIC_RELAXED);
	__atomic_store_n(&s->id, r->id, __ATOMIC_RELEASE);
}

/* How many records claim id; *first gets the first one's index. */
static int records_of(const struct clients *b, uint32_t id, uint32_t *first)
{
	int n = 0;

	for (uint32_t i = 0; i < LAYOUT_CLIENTS; i++)
		if (b->rec[i].id == id && n++ == 0 && first)
			*first = i;
	return n;
}

int clients_adopt(struct clients *b, struct eng *e)
{
	uint32_t next = __atomic_load_n(&e->hdr->next_client_id,
					__ATOMIC_RELAXED);
	struct client_slot dropped[LAYOUT_CLIENTS];
	int freed = 0;

	memset(b, 0, sizeof(*b));
	pthread_mutex_init(&b->lock, NULL);
	b->e = e;
	for (uint32_t i = 0; i < LAYOUT_CLIENTS; i++) {
		const struct client_slot *s = &table(e)[i];
		struct client_slot r = {
			.id = __atomic_load_n(&s->id, __ATOMIC_ACQUIRE),
			.pid = __atomic_load_n(&s->pid, __ATOMIC_RELAXED),
			.start = __atomic_load_n(&s->start, __ATOMIC_RELAXED),
		};
		dropped[i].id = 0;
		if (r.id == 0)
			continue;
		bool keep = r.id != e->client_id && r.id < next &&
			    r.id <= ENG_CLIENT_ID_MAX &&
			    clients_judge(r.pid, r.start) == CLIENTS_ALIVE;
		if (keep) {
			b->rec[i] = r;
		} else {
			dropped[i] = r;
			freed++;
		}
		mirror(b, i);
	}
	/* Only now is it known whether a kept slot claims a dropped id. */
	for (uint32_t i = 0; i < LAYOUT_CLIENTS; i++) {
		uint32_t id = dropped[i].id;
		if (id && id <= ENG_CLIENT_ID_MAX &&
		    records_of(b, id, NULL) == 0)
			eng_recover(e, id);
	}
	return freed;
}

const struct client_slot *clients_find(const struct clients *b, uint32_t id)
{
	uint32_t i = 0;

	if (id == 0 || records_of(b, id, &i) != 1)
		return NULL;
	return &b->rec[i];
}

int clients_add(struct clients *b, uint32_t id, pid_t pid, uint64_t start)
{
	int free_slot = -1;

	for (uint32_t i = 0; i < LAYOUT_CLIENTS; i++) {
		if (b->rec[i].id == id) {
			free_slot = (int)i; /* re-adoption: refresh */
			break;
		}
		if (b->rec[i].id == 0 && free_slot < 0)
			free_slot = (int)i;
	}
	if (free_slot < 0)
		return -EUSERS;
	pthread_mutex_lock(&b->lock);
	b->rec[free_slot] = (struct client_slot){ .id = id,
						  .pid = (uint32_t)pid,
						  .start = start };
	pthread_mutex_unlock(&b->lock);
	mirror(b, (uint32_t)free_slot);
	return 0;
}

void clients_remove(struct clients *b, uint32_t id)
{
	for (uint32_t i = 0; i < LAYOUT_CLIENTS; i++) {
		if (b->rec[i].id == id) {
			pthread_mutex_lock(&b->lock);
			b->rec[i] = (struct client_slot){ 0 };
			pthread_mutex_unlock(&b->lock);
			mirror(b, i);
		}
	}
}

bool clients_book_alive(void *arg, uint32_t id)
{
	struct clients *b = arg;
	bool alive = false;

	pthread_mutex_lock(&b->lock);
	for (uint32_t i = 0; i < LAYOUT_CLIENTS && !alive; i++)
		alive = b->rec[i].id == id &&
			clients_judge(b->rec[i].pid, b->rec[i].start) !=
				CLIENTS_DEAD;
	pthread_mutex_unlock(&b->lock);
	return alive;
}

int clients_sweep(struct clients *b, int *removed)
{
	uint32_t dead[LAYOUT_CLIENTS];
	int held = 0, gone = 0;

	for (uint32_t i = 0; i < LAYOUT_CLIENTS; i++) {
		struct client_slot *r = &b->rec[i];
		if (r->id != 0 && r->id != b->e->client_id &&
		    clients_judge(r->pid, r->start) == CLIENTS_DEAD) {
			dead[gone++] = r->id;
			pthread_mutex_lock(&b->lock);
			*r = (struct client_slot){ 0 };
			pthread_mutex_unlock(&b->lock);
		}
		mirror(b, i);
	}
	/* An id several records claimed (clients_adopt) keeps its locks
	 * while one of them is left. */
	for (int i = 0; i < gone; i++)
		if (records_of(b, dead[i], NULL) == 0 &&
		    eng_recover(b->e, dead[i]) > 0)
			held++;
	if (removed)
		*removed = gone;
	return held;
}

/* ------------------------------------------------------------------------
 * A client's check
 * ------------------------------------------------------------------------ */

/* Whether this process can judge pids in the table. */
static bool can_judge(const struct eng *e)
{
	uint64_t ns = __atomic_load_n(&e->hdr->pidns, __ATOMIC_RELAXED);

	return ns != 0 && ns == clients_pidns_self();
}

bool clients_alive(void *arg, uint32_t id)
{
	const struct clients_view *v = arg;

	/* A daemon owns the region (or we cannot tell): it alone judges. */
	if (owner_query(v->region_fd, NULL) != 0 || !can_judge(v->e))
		return true;
	/* Every slot of id, should a forged one hide the true one. */
	const struct client_slot *t = table(v->e);
	for (uint32_t i = 0; i < LAYOUT_CLIENTS; i++) {
		if (__atomic_load_n(&t[i].id, __ATOMIC_ACQUIRE) != id)
			continue;
		uint32_t pid = __atomic_load_n(&t[i].pid, __ATOMIC_RELAXED);
		uint64_t start = __atomic_load_n(&t[i].start, __ATOMIC_RELAXED);
		if (clients_judge(pid, start) != CLIENTS_DEAD)
			return true;
	}
	return false; /* never attached, gone, or removed by the daemon */
}
