/*
 * clients.c - the client table and the liveness check (see clients.h).
 */
#include "clients.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct client_slot *table(const struct eng *e)
{
	return (struct client_slot *)(e->base + LAYOUT_REGION_HDR_SIZE);
}

uint64_t clients_pidns_self(void)
{
	struct stat st;

	return stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

bool clients_same_ns(pid_t pid)
{
	char path[64];
	struct stat st;
	uint64_t self = clients_pidns_self();

	snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pid);
	return self != 0 && stat(path, &st) == 0 && (uint64_t)st.st_ino == self;
}

uint64_t clients_start_time(pid_t pid)
{
	char path[64], buf[1024];

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* The command name may hold spaces and ')': fields restart after
	 * the last ')'.  starttime is field 22; after ')' comes field 3. */
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	/* Reentrant on purpose: lock waiters in many threads call this. */
	unsigned long long start = 0;
	int field = 2;
	char *save = NULL;
	for (char *tok = strtok_r(p + 1, " ", &save); tok;
	     tok = strtok_r(NULL, " ", &save)) {
		if (++field == 22) {
			sscanf(tok, "%llu", &start);
			break;
		}
	}
	return start & ~CLIENT_FOREIGN_NS;
}

int clients_add(struct eng *e, uint32_t id, pid_t pid, bool foreign)
{
	struct client_slot *t = table(e);
	uint64_t start = foreign ? CLIENT_FOREIGN_NS
				 : clients_start_time(pid);
	int free_slot = -1;

	for (uint32_t i = 0; i < LAYOUT_CLIENTS; i++) {
		uint32_t cur = __atomic_load_n(&t[i].id, __ATOMIC_ACQUIRE);
		if (cur == id) {
			free_slot = (int)i; /* re-adoption: refresh */
			break;
		}
		if (cur == 0 && free_slot < 0)
			free_slot = (int)i;
	}
	if (free_slot < 0)
		return -EUSERS;
	struct client_slot *s = &t[free_slot];
	/* pid and start first, then the id that makes the slot visible. */
	__atomic_store_n(&s->pid, (uint32_t)pid, __ATOMIC_RELAXED);
	__atomic_store_n(&s->start, start, __ATOMIC_RELAXED);
	__atomic_store_n(&s->id, id, __ATOMIC_RELEASE);
	return 0;
}

void clients_remove(struct eng *e, uint32_t id)
{
	struct client_slot *t = table(e);

	for (uint32_t i = 0; i < LAYOUT_CLIENTS; i++)
		if (__atomic_load_n(&t[i].id, __ATOMIC_ACQUIRE) == id)
			__atomic_store_n(&t[i].id, 0, __ATOMIC_RELEASE);
}

/* Alive, as far as this process can tell, given one slot. */
static bool slot_alive(const struct client_slot *s)
{
	uint64_t start = __atomic_load_n(&s->start, __ATOMIC_RELAXED);
	pid_t pid = (pid_t)__atomic_load_n(&s->pid, __ATOMIC_RELAXED);

	if (start & CLIENT_FOREIGN_NS)
		return true;
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return false;
	uint64_t now = clients_start_time(pid);
	return !(start && now && now != start); /* reused pid: dead */
}

/* Whether this process can judge pids in the table. */
static bool can_judge(const struct eng *e)
{
	uint64_t ns = __atomic_load_n(&e->hdr->pidns, __ATOMIC_RELAXED);

	return ns != 0 && ns == clients_pidns_self();
}

bool clients_alive(void *arg, uint32_t id)
{
	const struct eng *e = arg;
	const struct client_slot *t = table(e);

	if (!can_judge(e))
		return true;
	for (uint32_t i = 0; i < LAYOUT_CLIENTS; i++)
		if (__atomic_load_n(&t[i].id, __ATOMIC_ACQUIRE) == id)
			return slot_alive(&t[i]);
	return false; /* never attached, or already removed by the daemon */
}

int clients_sweep(struct eng *e)
{
	struct client_slot *t = table(e);
	int n = 0;

	if (!can_judge(e))
		return 0;
	for (uint32_t i = 0; i < LAYOUT_CLIENTS; i++) {
		uint32_t id = __atomic_load_n(&t[i].id, __ATOMIC_ACQUIRE);
		if (id == 0 || id == e->client_id || slot_alive(&t[i]))
			continue;
		eng_recover(e, id);
		__atomic_store_n(&t[i].id, 0, __ATOMIC_RELEASE);
		n++;
	}
	return n;
}
