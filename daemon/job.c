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
 * The thread is joined as soon as it is done, its result moved into the
 * connection (conn.reply), so a requester that does not read its replies
 * cannot hold the job slot.  A connection that went away meanwhile loses
 * its reply; the result is still logged by persist_request().  A second
 * SAVE or LOAD while one runs is refused with -EBUSY, as Redis refuses a
 * second BGSAVE.
 *
 * The thread uses the engine as the daemon (DAEMON_CLIENT_ID), as the load
 * storer thread does: segment locks order it against the loop's own work.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "persist.h"
#include "proto.h"

/* What the requester gets: kept in its connection (conn.reply) from the
 * moment the thread is joined until a send is not in flight. */
struct job_reply {
	uint32_t req_id;
	bool load;
	int rc;
	uint64_t entries;
	char err[768];
};

struct job {
	bool active; /* a thread was started and not yet joined */
	bool done;   /* atomic: the thread has its result */
	pthread_t tid;
	struct daemon *d;
	uint32_t slot, gen; /* the requesting connection */
	uint32_t flags;	    /* LOAD: PROTO_LOAD_* */
	char path[CONFIG_FILE_PATH_MAX + 1];
	struct job_reply r;
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

	j->r.rc = persist_request(j->d, j->r.load,
				  j->flags & PROTO_LOAD_PARTIAL
					  ? PERSIST_PARTIAL
					  : 0,
				  j->path, &j->r.entries, j->r.err,
				  sizeof(j->r.err));
	__atomic_store_n(&j->done, true, __ATOMIC_RELEASE);
	uint64_t one = 1;
	ssize_t n = write(j->d->job_fd, &one, sizeof(one));
	(void)n; /* an eventfd write of 1 fails only on overflow */
	return NULL;
}

int job_start(struct daemon *d, struct conn *c, uint32_t id, bool load,
	      uint32_t flags, const char *path)
{
	if (job.active)
		return -EBUSY;
	if (d->job_fd < 0)
		return -ENOSYS;
	job = (struct job){
		.d = d,
		.slot = (uint32_t)(c - d->conns),
		.gen = c->gen,
		.flags = flags,
		.r = { .req_id = id, .load = load },
	};
	snprintf(job.path, sizeof(job.path), "%s", path);
	/* The thread must not take the signals the loop reads from its
	 * signalfd; they are blocked here already, and it inherits that. */
	int rc = pthread_create(&job.tid, NULL, job_main, &job);
	if (rc)
		return -rc;
	job.active = true;
	c->waiting = true;
	return 0;
}

/* Joins the finished thread and hands its result to the requester, if it
 * is still there.  Returns that connection, or NULL. */
static struct conn *collect(struct daemon *d)
{
	struct conn *c = &d->conns[job.slot];

	pthread_join(job.tid, NULL);
	job.active = false;
	if (c->fd < 0 || c->gen != job.gen || !c->waiting)
		return NULL; /* gone: the log has the outcome */
	c->reply = malloc(sizeof(*c->reply));
	if (!c->reply) {
		c->closing = true; /* as on any out-of-memory reply */
		c->waiting = false;
		return c;
	}
	*c->reply = job.r;
	return c;
}

bool job_deliver(struct daemon *d, struct conn *c)
{
	struct job_reply *r = c->reply;

	(void)d;
	if (!r)
		return false;
	if (r->rc) {
		conn_reply_error(c, r->req_id, r->rc, r->err);
	} else {
		uint8_t body[8];
		struct proto_w w;
		proto_w_init(&w, body, sizeof(body));
		proto_put_u64(&w, r->entries);
		conn_reply(c, r->load ? PROTO_T_LOAD : PROTO_T_SAVE, r->req_id,
			   body, w.len);
	}
	free(r);
	c->reply = NULL;
	c->waiting = false;
	return true;
}

struct conn *job_reap(struct daemon *d)
{
	uint64_t v;

	while (read(d->job_fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
		;
	if (!job.active || !__atomic_load_n(&job.done, __ATOMIC_ACQUIRE))
		return NULL;
	return collect(d);
}

struct conn *job_finish(struct daemon *d)
{
	if (!job.active)
		return NULL;
	if (!__atomic_load_n(&job.done, __ATOMIC_ACQUIRE))
		log_info("waiting for the running %s of %s to finish",
			 job.r.load ? "load" : "save", job.path);
	struct conn *c = collect(d);
	return c && job_deliver(d, c) ? c : NULL;
}
