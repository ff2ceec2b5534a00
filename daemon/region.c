/*
 * region.c - create or adopt the shared-memory region (see region.h).
 *
 * Creation: shm_open(O_CREAT|O_EXCL, 0600), ftruncate, then fallocate so
 * that every page is reserved now: a host short of memory fails here with
 * a clear error instead of killing a client with SIGBUS later.  Then mmap
 * (optionally pre-faulted) and eng_format().
 *
 * Huge pages (--hugepages): the pages are reserved after the mapping is
 * marked MADV_HUGEPAGE, by MADV_POPULATE_WRITE instead of fallocate
 * (which, having no mapping to look at, allocates small pages wherever
 * the kernel's shmem policy is "advise").  Whether the kernel gave huge
 * pages is then read back from /proc/self/smaps and logged: a policy of
 * "never" (Debian's default for shmem) ignores the advice silently.
 *
 * Adoption (warm restart): the name exists; it is mapped and validated by
 * eng_attach(), and its geometry must equal what the configuration plans
 * (--checksum included).  A header whose geometry or its second copy is
 * damaged is rewritten from the intact one, and the log says which.  The
 * lock timeout is not geometry: --lock-timeout applies at every start.
 *
 * Ownership: one daemon per region.  The daemon claims the region with
 * owner_claim() (a POSIX record lock on its file, owner.h) as soon as it
 * has a descriptor of it, before it reads or writes anything in it: a
 * region another live daemon owns is refused, with that daemon's pid,
 * whatever the options (--reset included).  The kernel drops the lock
 * when its owner dies, so a killed daemon's region is free at once.  The
 * lock goes with the process's LAST close of any descriptor of the file,
 * so the region is opened once (d->region_fd) and closed only at the end;
 * nothing else in the daemon opens it again (persist.c works on the
 * mapping).  Two daemons starting at once on a missing name: one creates
 * it (O_EXCL) and claims it; the other opens what the first created and is
 * refused, or claims it first, finds it empty and formats it itself, while
 * the creator, refused, gives up without touching it.
 *
 * Sealed (--sealed): the region is an anonymous memfd sealed with
 * F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL, so no process holding the fd
 * can resize it and make the others' accesses fault.  Having no name, it
 * survives a daemon restart only in systemd's file-descriptor store
 * (FDSTORE=1, FDNAME=region), from which it comes back as a passed fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/memfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clients.h"
#include "daemon.h"
#include "log.h"
#include "owner.h"
#include "region.h"

static void eng_config_of(const struct config *c, struct eng_config *ec)
{
	*ec = (struct eng_config){ .nseg = c->segments,
				   .avg_item = c->avg_item,
				   .lock_timeout_ms = c->lock_timeout_ms,
				   .flags = c->checksum ? REGION_F_CHECKSUM
							: 0 };
}

void region_resolve(struct config *c)
{
	struct eng_config ec;

	eng_config_of(c, &ec);
	if (!c->segments)
		c->segments = eng_default_nseg(c->memory, &ec);
}

int region_plan(const struct config *c, struct eng_geom *g)
{
	struct eng_config ec;

	eng_config_of(c, &ec);
	return eng_plan(c->memory, &ec, g);
}

/* Maps the region.  With --hugepages the mapping is advised before any
 * page is touched, so MAP_POPULATE is left to populate() then. */
static int map(struct daemon *d, int fd, size_t size)
{
	bool huge = d->cfg.hugepages;
	int flags = MAP_SHARED | (d->cfg.prefault && !huge ? MAP_POPULATE : 0);
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, fd, 0);

	if (p == MAP_FAILED)
		return -errno;
	if (huge && madvise(p, size, MADV_HUGEPAGE) < 0)
		log_warn("huge pages not available for the region: %s",
			 strerror(errno));
	d->region_base = p;
	d->region_size = size;
	d->region_fd = fd;
	return 0;
}

/* Faults every page in for writing (--hugepages), which also reserves
 * them: 0, or -errno (ENOMEM, or EFAULT where the file system is full). */
static int populate(struct daemon *d)
{
	if (madvise(d->region_base, d->region_size, MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno != EINVAL)
		return -errno;
	/* Before Linux 5.14: reserve as without --hugepages. */
	int rc = posix_fallocate(d->region_fd, 0, (off_t)d->region_size);
	return rc == 0 || rc == EOPNOTSUPP || rc == EINVAL ? 0 : -rc;
}

/* The kB of this process's mapping at base that the kernel maps with huge
 * pages (ShmemPmdMapped + FilePmdMapped in /proc/self/smaps), -1 if that
 * cannot be read. */
static long huge_kb(const void *base)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	bool in = false;
	long kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		long v;
		int n = 0;

		if (sscanf(line, "%lx-%lx %n", &lo, &hi, &n) == 2 && n > 0) {
			if (in)
				break; /* the next mapping */
			in = lo == (unsigned long)base;
			if (in)
				kb = 0;
		} else if (in &&
			   (sscanf(line, "ShmemPmdMapped: %ld kB", &v) == 1 ||
			    sscanf(line, "FilePmdMapped: %ld kB", &v) == 1)) {
			kb += v;
		}
	}
	fclose(f);
	return kb;
}

/* Logs whether --hugepages took effect (the whole region is mapped). */
static void report_huge(const struct daemon *d)
{
	long kb = huge_kb(d->region_base);
	unsigned long long mib = (d->region_size + (1u << 19)) >> 20;

	if (kb > 0)
		log_info("--hugepages: %ld of the region's %llu MiB in huge "
			 "pages",
			 kb >> 10, mib);
	else if (kb == 0)
		log_warn("--hugepages: the kernel gave the region no huge "
			 "pages; it needs %s (README, \"Huge pages\")",
			 d->cfg.sealed ? "/sys/kernel/mm/transparent_hugepage/"
					 "shmem_enabled set to advise"
				       : "/dev/shm mounted with huge=advise");
	else
		log_warn("--hugepages: cannot read /proc/self/smaps to tell "
			 "whether the region has huge pages");
}

/* Unmaps the region; its descriptor stays open (and the region claimed). */
static void unmap_keep_fd(struct daemon *d)
{
	if (d->region_base)
		munmap(d->region_base, d->region_size);
	d->region_base = NULL;
	d->region_fd = -1;
}

static void unmap(struct daemon *d)
{
	int fd = d->region_fd;

	unmap_keep_fd(d);
	if (fd >= 0)
		close(fd);
}

/* Maps an existing region and checks it.  0, or -errno with err set; on
 * failure fd stays open, for the caller to close (after it removed the
 * name, if it replaces the region: closing drops the claim).  A region of
 * this layout that is refused for its geometry leaves the highest item
 * version it issued in *vmax (else 0), for the one that replaces it. */
static int adopt(struct daemon *d, int fd, const struct eng_geom *want,
		 uint64_t *vmax, char *err, size_t errlen)
{
	struct stat st;
	const char *why = "";

	if (fstat(fd, &st) < 0 || st.st_size < (off_t)LAYOUT_REGION_HDR_SIZE) {
		snprintf(err, errlen,
			 "region %s exists but is empty or "
			 "unreadable",
			 d->cfg.name);
		return -EUCLEAN;
	}
	int rc = map(d, fd, (size_t)st.st_size);
	if (rc) {
		snprintf(err, errlen, "cannot map region %s: %s", d->cfg.name,
			 strerror(-rc));
		return rc;
	}
	rc = eng_attach(&d->eng, d->region_base, d->region_size,
			DAEMON_CLIENT_ID, &why);
	*vmax = rc == 0 ? eng_version_max(&d->eng) : 0;
	if (rc == 0 && d->eng.g.flags != want->flags) {
		why = d->eng.g.flags & REGION_F_CHECKSUM
			      ? "it was made with --checksum"
			      : "it was made without --checksum";
		rc = -EEXIST;
	} else if (rc == 0 && (d->eng.g.region_size != want->region_size ||
			       d->eng.g.nseg != want->nseg ||
			       d->eng.g.nrec != want->nrec ||
			       d->eng.g.ring_size != want->ring_size)) {
		why = "it was made with another size, segment count or item "
		      "size";
		rc = -EEXIST;
	}
	if (rc) {
		snprintf(err, errlen,
			 "region %s exists but cannot be adopted: "
			 "%s; --reset replaces it (its contents "
			 "are lost)",
			 d->cfg.name, why);
		unmap_keep_fd(d);
		return rc == -EEXIST ? rc : -EUCLEAN;
	}
	char what[160];
	if (eng_hdr_check(&d->eng, true, what, sizeof(what)))
		log_warn("region %s: %s", d->cfg.name, what);
	return 0;
}

#define SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/* Removes the region's name (a sealed memfd has none): on init()'s failure
 * paths, and before --reset replaces a region. */
static void discard(struct daemon *d)
{
	if (!d->cfg.sealed)
		shm_unlink(d->cfg.name);
}

/* init()'s failure to reserve the pages: the message, and rc. */
static int reserve_error(const struct daemon *d, const struct eng_geom *g,
			 int rc, char *err, size_t errlen)
{
	snprintf(err, errlen, "cannot reserve %llu bytes for region %s: %s",
		 (unsigned long long)g->region_size, d->cfg.name,
		 strerror(-rc));
	return rc;
}

/* Sizes, reserves, maps and formats the region open at fd, which this
 * process owns and which is empty, with item versions above floor (the
 * replaced region's highest; 0: none, they start at unix seconds << 32).
 * 0, or -errno with err set; on failure the name is removed and fd
 * closed. */
static int init(struct daemon *d, int fd, const struct eng_geom *g,
		uint64_t floor, char *err, size_t errlen)
{
	struct eng_config ec;
	const char *why;
	int rc = 0;

	if (ftruncate(fd, (off_t)g->region_size) < 0)
		rc = -errno;
	else if (d->cfg.hugepages)
		rc = 0; /* reserved by populate() once mapped and advised */
	else if ((rc = posix_fallocate(fd, 0, (off_t)g->region_size)) != 0 &&
		 rc != EOPNOTSUPP && rc != EINVAL)
		rc = -rc;
	else
		rc = 0;
	if (rc == 0 && d->cfg.sealed && fcntl(fd, F_ADD_SEALS, SEALS) < 0)
		rc = -errno;
	if (rc) {
		discard(d);
		close(fd);
		return reserve_error(d, g, rc, err, errlen);
	}
	if ((rc = map(d, fd, g->region_size)) != 0) {
		snprintf(err, errlen, "cannot map region %s: %s", d->cfg.name,
			 strerror(-rc));
		discard(d);
		close(fd);
		return rc;
	}
	if (d->cfg.hugepages && (rc = populate(d)) != 0) {
		discard(d);
		unmap(d);
		return reserve_error(d, g, rc, err, errlen);
	}
	eng_config_of(&d->cfg, &ec);
	ec.version_floor = floor;
	if ((rc = eng_format(d->region_base, d->region_size, &ec)) != 0 ||
	    (rc = eng_attach(&d->eng, d->region_base, d->region_size,
			     DAEMON_CLIENT_ID, &why)) != 0) {
		snprintf(err, errlen, "cannot format region %s: %s",
			 d->cfg.name, strerror(-rc));
		discard(d);
		unmap(d);
		return rc;
	}
	/* Under systemd, keep the sealed region across restarts. */
	if (d->cfg.sealed &&
	    sysd_notify_fd("FDSTORE=1\nFDNAME=" SYSD_REGION_FDNAME, fd) < 0)
		log_warn("cannot put the region in systemd's fd store");
	return 0;
}

/* Claims the region open at fd for this process (owner.h): 0, or -EBUSY
 * (another daemon owns it) or -errno, with err set. */
static int claim(struct daemon *d, int fd, char *err, size_t errlen)
{
	const char *name = d->cfg.sealed ? "(memfd)" : d->cfg.name;
	pid_t holder = 0;
	int rc = owner_claim(fd, &holder);
	char who[32] = "in another pid namespace";

	if (rc == -EBUSY) {
		if (holder > 0)
			snprintf(who, sizeof(who), "pid %d", (int)holder);
		snprintf(err, errlen,
			 "region %s is owned by a running "
			 "shmcached (%s): stop that daemon first, "
			 "or give this one another --name%s",
			 name, who,
			 d->cfg.reset ? " (--reset never replaces a region "
					"a live daemon serves)"
				      : "");
	} else if (rc) {
		snprintf(err, errlen, "cannot lock region %s: %s", name,
			 strerror(-rc));
	}
	return rc;
}

/* The region's existing descriptor: systemd's memfd (--sealed) or the
 * named region; -1 with errno ENOENT when there is none. */
static int open_existing(struct daemon *d)
{
	if (!d->cfg.sealed)
		return shm_open(d->cfg.name, O_RDWR | O_CLOEXEC, 0);
	errno = ENOENT;
	return d->sd.region_fd;
}

/* One try at opening, claiming and adopting or creating the region.
 * *adopted says which.  -EAGAIN: another daemon starting on the same name
 * created it between our looks; look again. */
static int open_once(struct daemon *d, const struct eng_geom *want,
		     bool *adopted, char *err, size_t errlen)
{
	struct stat st;
	uint64_t floor = 0;
	int rc, fd = open_existing(d);

	if (fd < 0 && errno != ENOENT) {
		rc = -errno;
		snprintf(err, errlen, "cannot open region %s: %s", d->cfg.name,
			 strerror(errno));
		return rc;
	}
	if (fd >= 0) {
		if (d->cfg.sealed &&
		    (fcntl(fd, F_GET_SEALS) & SEALS) != SEALS) {
			snprintf(err, errlen,
				 "the region systemd passed is "
				 "not sealed");
			close(fd);
			return -EINVAL;
		}
		if ((rc = claim(d, fd, err, errlen)) != 0) {
			close(fd);
			return rc;
		}
		/* Empty: its creator died, or lost the claim to us, before
		 * sizing it.  Nothing in it to keep. */
		if (!d->cfg.sealed && fstat(fd, &st) == 0 && st.st_size == 0) {
			*adopted = false;
			return init(d, fd, want, 0, err, errlen);
		}
		rc = adopt(d, fd, want, &floor, err, errlen);
		if (rc == 0) {
			*adopted = true;
			return 0;
		}
		if (!d->cfg.reset) {
			close(fd);
			return rc;
		}
		log_warn("replacing region %s (--reset): %s", d->cfg.name, err);
		/* Versions are never reused across a reset (docs/SNAPSHOT.md,
		 * "Item versions"). */
		if (floor)
			log_info("item versions of the new region start above "
				 "the replaced one's highest, %llu",
				 (unsigned long long)floor);
		discard(d); /* while still claimed: nobody else's name */
		close(fd);
	}

	fd = d->cfg.sealed
		     ? memfd_create("shmcached",
				    MFD_CLOEXEC | MFD_ALLOW_SEALING)
		     : shm_open(d->cfg.name,
				O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EEXIST)
		return -EAGAIN;
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot create region %s: %s",
			 d->cfg.sealed ? "(memfd)" : d->cfg.name,
			 strerror(errno));
		return rc;
	}
	if ((rc = claim(d, fd, err, errlen)) != 0) {
		close(fd); /* someone else's now: neither format nor remove */
		return rc == -EBUSY ? -EAGAIN : rc;
	}
	*adopted = false;
	return init(d, fd, want, floor, err, errlen);
}

/* Records this process as the region's daemon (pid, client table). */
static void record_daemon(struct daemon *d)
{
	__atomic_store_n(&d->eng.hdr->daemon_pid, (uint32_t)getpid(),
			 __ATOMIC_RELAXED);
	clients_add(&d->clients, DAEMON_CLIENT_ID, getpid(),
		    clients_start_word(getpid()));
}

int region_open(struct daemon *d, char *err, size_t errlen)
{
	struct eng_geom want;
	bool adopted = false;
	int rc;

	d->region_fd = -1;
	if ((rc = region_plan(&d->cfg, &want)) != 0) {
		snprintf(err, errlen,
			 "cannot carve %llu bytes into %u "
			 "segments",
			 (unsigned long long)d->cfg.memory, d->cfg.segments);
		return rc;
	}
	/* A lost race ends with the winner's region claimed: the next try
	 * finds it and is refused.  So a few tries always settle it. */
	for (int tries = 0; tries < 4; tries++)
		if ((rc = open_once(d, &want, &adopted, err, errlen)) !=
		    -EAGAIN)
			break;
	if (rc == -EAGAIN)
		snprintf(err, errlen,
			 "region %s keeps being created and "
			 "removed by other processes: not started",
			 d->cfg.name);
	if (rc)
		return rc;
	if (adopted) {
		log_info("adopted region %s (%llu bytes, %u segments): warm "
			 "restart",
			 d->cfg.name, (unsigned long long)d->region_size,
			 d->eng.g.nseg);
		/* A killed daemon's locks carry our id; the claim says that
		 * daemon is gone, and no thread of ours holds any yet. */
		int held = eng_recover_inherited(&d->eng);
		if (held > 0)
			log_warn("the previous daemon died holding %d segment "
				 "lock(s): recovered",
				 held);
	} else {
		log_info("created region %s: %llu bytes, %u segments of %u "
			 "ring bytes and %u entries",
			 d->cfg.name, (unsigned long long)d->region_size,
			 d->eng.g.nseg, d->eng.g.ring_size, d->eng.g.nrec);
		if (d->cfg.hugepages)
			report_huge(d);
	}
	if (eng_lock_timeout(&d->eng) != d->cfg.lock_timeout_ms)
		log_info("lock timeout of region %s: %u ms (was %u ms)",
			 d->cfg.name, d->cfg.lock_timeout_ms,
			 eng_lock_timeout(&d->eng));
	eng_set_lock_timeout(&d->eng, d->cfg.lock_timeout_ms);
	eng_set_timeout(&d->eng, DAEMON_LOCK_TIMEOUT_MS);
	eng_set_alive_fn(&d->eng, clients_book_alive, &d->clients);
	struct region_hdr *h = d->eng.hdr;
	__atomic_store_n(&h->pidns, clients_pidns_self(), __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->boot_count, 1, __ATOMIC_RELAXED);
	/* The table as found: clients of a previous daemon that died
	 * meanwhile, and whatever else does not describe a live process. */
	int n = clients_adopt(&d->clients, &d->eng);
	if (n > 0)
		log_warn("client table: %d slot(s) of dead clients or garbage "
			 "freed, their locks recovered",
			 n);
	record_daemon(d);
	return 0;
}

void region_close(struct daemon *d)
{
	if (d->eng.hdr) {
		__atomic_store_n(&d->eng.hdr->daemon_pid, 0, __ATOMIC_RELAXED);
		clients_remove(&d->clients, DAEMON_CLIENT_ID);
	}
	/* The name goes while the region is still claimed (the close in
	 * unmap() releases it): never another daemon's region. */
	if (d->cfg.unlink_on_exit && d->cfg.sealed) {
		sysd_notify("FDSTOREREMOVE=1\nFDNAME=" SYSD_REGION_FDNAME);
	} else if (d->cfg.unlink_on_exit) {
		shm_unlink(d->cfg.name);
		log_info("removed region %s", d->cfg.name);
	}
	unmap(d);
}
