/*
 * job.c - the one request at a time that runs on a thread of its own:
 * SAVE and LOAD, which take about a second per GiB of cache (persist.c).
 *
 * The event loop hands the request over (job_start) and goes on serving
 * every other connection.  The requesting connection waits (conn.waiting):
 * frames it pipelines behind the request stay unparsed, so its replies
 * keep their order.  When the thread is done it writes the eventfd; the
 * loop then settles the connection, and conn_resume() delivers the reply
 * (job_deliver) at a point where appending to the output buffer is safe.
 * A connection that went away meanwhile loses its reply; the result is
 * still logged by persist_request().  A second SAVE or LOAD while one runs
 * is refused with -EBUSY, as Redis refuses a second BGSAVE.
 *
 * The thread uses the engine as the daemon (DAEMON_CLIENT_ID), as the load
 * storer thread does: segment locks order it against the loop's own work.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "persist.h"
#include "proto.h"

struct job {
	bool active;		/* started; the result not yet delivered or
				   dropped */
	bool joined;		/* the thread was joined */
	bool done;		/* atomic: the thread has its result */
	pthread_t tid;
	struct daemon *d;
	uint32_t slot, gen;	/* the requesting connection */
	uint32_t req_id;
	bool load;
	uint32_t flags;		/* LOAD: PROTO_LOAD_* */
	char path[CONFIG_FILE_PATH_MAX + 1];
	int rc;
	uint64_t entries;
	char err[768];
};

static struct job job;

int job_init(struct daemon *d)
{
	d->job_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return d->job_fd < 0 ? -errno : 0;
}

static void *job_main(void *arg)
{
	struct job *j = arg;

	j->rc = persist_request(j->d, j->load,
				j->flags & PROTO_LOAD_PARTIAL ? PERSIST_PARTIAL
							      : 0,
				j->path, &j->entries, j->err, sizeof(j->err));
	__atomic_store_n(&j->done, true, __ATOMIC_RELEASE);
	uint64_t one = 1;
	ssize_t n = write(j->d->job_fd, &one, sizeof(one));
	(void)n; /* an eventfd write of 1 fails only on overflow */
	return NULL;
}

static bool job_done(void)
{
	return __atomic_load_n(&job.done, __ATOMIC_ACQUIRE);
}

/* The requesting connection, if it is still there. */
static struct conn *job_conn(struct daemon *d)
{
	struct conn *c = &d->conns[job.slot];

	return c->fd >= 0 && c->gen == job.gen && c->waiting ? c : NULL;
}

static void job_join(void)
{
	if (!job.joined)
		pthread_join(job.tid, NULL);
	job.joined = true;
}

/* The result goes nowhere: the requester left. */
static void job_drop(void)
{
	job_join();
	job.active = false;
}

int job_start(struct daemon *d, struct conn *c, uint32_t id, bool load,
	      uint32_t flags, const char *path)
{
	/* A finished job whose connection left was never delivered. */
	if (job.active && job_done() && !job_conn(d))
		job_drop();
	if (job.active)
		return -EBUSY;
	if (d->job_fd < 0)
		return -ENOSYS;
	size_t n = strlen(path);
	if (n >= sizeof(job.path))
		return -ENAMETOOLONG;
	job = (struct job){
		.d = d,
		.slot = (uint32_t)(c - d->conns),
		.gen = c->gen,
		.req_id = id,
		.load = load,
		.flags = flags,
	};
	memcpy(job.path, path, n + 1);
	/* The thread must not take the signals the loop reads from its
	 * signalfd; they are blocked here already, and it inherits that. */
	int rc = pthread_create(&job.tid, NULL, job_main, &job);
	if (rc)
		return -rc;
	job.active = true;
	c->waiting = true;
	return 0;
}

static void reply(struct conn *c)
{
	if (job.rc) {
		conn_reply_error(c, job.req_id, job.rc, job.err);
		return;
	}
	uint8_t body[8];
	struct proto_w w;
	proto_w_init(&w, body, sizeof(body));
	proto_put_u64(&w, job.entries);
	conn_reply(c, job.load ? PROTO_T_LOAD : PROTO_T_SAVE, job.req_id, body,
		   w.len);
}

bool job_deliver(struct daemon *d, struct conn *c)
{
	if (!job.active || !job_done() || job_conn(d) != c)
		return false;
	job_join();
	job.active = false;
	c->waiting = false;
	reply(c);
	return true;
}

struct conn *job_reap(struct daemon *d)
{
	uint64_t v;

	while (read(d->job_fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
		;
	if (!job.active || !job_done())
		return NULL;
	struct conn *c = job_conn(d);
	if (!c)
		job_drop();
	return c;
}

struct conn *job_finish(struct daemon *d)
{
	if (!job.active)
		return NULL;
	if (!job_done())
		log_info("waiting for the running %s of %s to finish",
			 job.load ? "load" : "save", job.path);
	job_join();
	struct conn *c = job_conn(d);
	if (c && job_deliver(d, c))
		return c;
	job_drop();
	return NULL;
}
