/*
 * conn.c - one client connection, independent of the event loop that moves
 * its bytes: the peer check at accept, input buffering and framing, output
 * queueing, and what happens when the connection ends: a closed connection
 * is how the daemon learns at once that a client died, and then it recovers
 * the client's locks - but only once /proc shows that the process is gone
 * (clients_judge): a connection also ends while its process lives on (it
 * closed its socket, or the daemon closed it for broken framing, a stalled
 * frame or lack of memory), and that process may be in the middle of a
 * write on the mapping.  It then stays in the book, and the liveness sweep
 * (main.c, about once a second) recovers its locks after it has exited.
 *
 * Limits that keep one peer from hurting the others: a frame's payload is at
 * most PROTO_MAX_PAYLOAD; input is not read while more than CONN_OUT_HIGH
 * bytes of replies wait to be sent; half a frame that stays half for
 * CONN_PARTIAL_TIMEOUT_MS closes the connection, and so does a peer that has
 * not sent HELLO within --hello-timeout (it would hold a --max-clients slot
 * with no identity to show for it).
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clients.h"
#include "daemon.h"
#include "log.h"
#include "proto.h"

/* ------------------------------------------------------------------------
 * Output
 * ------------------------------------------------------------------------ */

/* Makes room for n more output bytes.  Returns false when memory is short
 * (the connection is then closed: it cannot be answered). */
static bool out_reserve(struct conn *c, size_t n)
{
	if (c->out_cap - c->out_len >= n)
		return true;
	if (c->out_off > 0 && c->out_off == c->out_len) {
		c->out_off = c->out_len = 0;
		if (c->out_cap >= n)
			return true;
	}
	size_t cap = c->out_cap ? c->out_cap : 4096;
	while (cap - c->out_len < n)
		cap *= 2;
	uint8_t *p = realloc(c->out, cap);
	if (!p)
		return false;
	c->out = p;
	c->out_cap = cap;
	return true;
}

void conn_sent(struct conn *c, size_t n)
{
	c->out_off += n;
	if (c->out_off == c->out_len) {
		c->out_off = c->out_len = 0;
		/* Give back a buffer a large reply grew. */
		if (c->out_cap > CONN_OUT_HIGH) {
			free(c->out);
			c->out = NULL;
			c->out_cap = 0;
		}
	}
}

void conn_prepare_send(struct conn *c)
{
	memset(&c->msg, 0, sizeof(c->msg));
	c->iov.iov_base = c->out + c->out_off;
	c->iov.iov_len = conn_out_pending(c);
	c->msg.msg_iov = &c->iov;
	c->msg.msg_iovlen = 1;
	if (c->pass_fd >= 0) {
		c->msg.msg_control = c->cmsg.buf;
		c->msg.msg_controllen = sizeof(c->cmsg.buf);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&c->msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &c->pass_fd, sizeof(int));
		c->pass_fd = -1; /* sent with these bytes or never */
	}
}

/* Starts a reply frame; returns the writer positioned at its body, or a
 * writer with err set. */
static void reply_begin(struct conn *c, struct proto_w *w, size_t body_max)
{
	if (!out_reserve(c, PROTO_HDR_SIZE + body_max)) {
		proto_w_init(w, NULL, 0);
		w->err = -ENOMEM;
		c->closing = true;
		return;
	}
	proto_w_init(w, c->out + c->out_len + PROTO_HDR_SIZE, body_max);
}

/* Finishes the frame begun with reply_begin(). */
static void reply_end(struct conn *c, struct proto_w *w, uint16_t type,
		      uint32_t id)
{
	if (w->err)
		return;
	struct proto_hdr h = { .len = (uint32_t)w->len,
			       .type = type,
			       .version = PROTO_VERSION,
			       .id = id };
	proto_hdr_put(c->out + c->out_len, &h);
	c->out_len += PROTO_HDR_SIZE + w->len;
}

void conn_reply_error(struct conn *c, uint32_t id, int err, const char *msg)
{
	struct proto_w w;
	size_t n = strlen(msg);

	if (n > 512)
		n = 512;
	reply_begin(c, &w, 4 + 4 + n);
	proto_put_i32(&w, err);
	proto_put_bytes(&w, msg, n);
	reply_end(c, &w, PROTO_T_ERROR, id);
}

void conn_reply_start(struct conn *c, struct proto_w *w, size_t max)
{
	reply_begin(c, w, max);
}

void conn_reply_finish(struct conn *c, struct proto_w *w, uint16_t req_type,
		       uint32_t id)
{
	if (w->err == -EMSGSIZE) {
		conn_reply_error(c, id, -EMSGSIZE, "reply too large");
		return;
	}
	reply_end(c, w, (uint16_t)(req_type | PROTO_REPLY), id);
}

void conn_reply(struct conn *c, uint16_t req_type, uint32_t id,
		const void *body, size_t len)
{
	struct proto_w w;

	reply_begin(c, &w, len);
	void *p = proto_put_reserve(&w, len);
	if (p && len)
		memcpy(p, body, len);
	conn_reply_finish(c, &w, req_type, id);
}

/* ------------------------------------------------------------------------
 * Accept and peer check
 * ------------------------------------------------------------------------ */

bool conn_peer_allowed(const struct config *cfg, uid_t uid, gid_t gid)
{
	if (uid == 0 || uid == geteuid())
		return true;
	for (uint32_t i = 0; i < cfg->n_allow_users; i++)
		if (cfg->allow_users[i] == uid)
			return true;
	if (cfg->n_allow_groups == 0)
		return false;

	/* The peer's primary group, then its supplementary groups. */
	gid_t groups[256];
	int ng = 1;
	groups[0] = gid;
	struct passwd pw, *pwp = NULL;
	char buf[4096];
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &pwp) == 0 && pwp) {
		ng = (int)(sizeof(groups) / sizeof(groups[0]));
		if (getgrouplist(pw.pw_name, gid, groups, &ng) < 0)
			ng = (int)(sizeof(groups) / sizeof(groups[0]));
	}
	for (int j = 0; j < ng; j++)
		for (uint32_t i = 0; i < cfg->n_allow_groups; i++)
			if (cfg->allow_groups[i] == groups[j])
				return true;
	return false;
}

struct conn *conn_accept(struct daemon *d, int fd)
{
	struct conn *c = NULL;

	for (uint32_t i = 0; i < d->cfg.max_clients; i++) {
		if (d->conns[i].fd < 0) {
			c = &d->conns[i];
			break;
		}
	}
	if (!c) {
		/* Full: say so in one frame, best effort, and close. */
		uint8_t frame[PROTO_HDR_SIZE + 64];
		struct proto_w w;
		proto_w_init(&w, frame + PROTO_HDR_SIZE, 64);
		proto_put_i32(&w, -EUSERS);
		proto_put_str(&w, "too many clients");
		struct proto_hdr h = { .len = (uint32_t)w.len,
				       .type = PROTO_T_ERROR,
				       .version = PROTO_VERSION };
		proto_hdr_put(frame, &h);
		ssize_t n = send(fd, frame, PROTO_HDR_SIZE + w.len,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		(void)n;
		close(fd);
		log_warn("refused a connection: %u clients already",
			 d->cfg.max_clients);
		return NULL;
	}

	uint32_t gen = c->gen + 1;
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->gen = gen;
	c->pass_fd = -1;
	c->since = (uint64_t)time(NULL);
	c->accepted_ms = clock_mono_ms();
	c->in = malloc(CONN_IN_INITIAL);
	if (!c->in) {
		c->fd = -1;
		close(fd);
		return NULL;
	}
	c->in_cap = CONN_IN_INITIAL;
	d->nconns++;

	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		conn_reply_error(c, 0, -EACCES, "cannot read peer credentials");
		c->closing = true;
		return c;
	}
	c->pid = cred.pid;
	c->start = clients_start_word(cred.pid);
	c->uid = cred.uid;
	c->gid = cred.gid;
	if (!conn_peer_allowed(&d->cfg, cred.uid, cred.gid)) {
		log_warn("refused peer pid %d uid %u gid %u: not in the allow "
			 "lists",
			 (int)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid);
		conn_reply_error(c, 0, -EACCES, "not allowed");
		c->closing = true;
		return c;
	}
	log_debug("connection from pid %d uid %u", (int)c->pid,
		  (unsigned)c->uid);
	return c;
}

/* c's connection ended: recovers its client's locks if its process is
 * gone (or cannot be judged: then the connection was the only sign of
 * life) or if it said BYE (its handle is closed: what the id still holds
 * is abandoned), else keeps the client in the book for the liveness
 * sweep. */
static void client_left(struct daemon *d, const struct conn *c)
{
	const struct client_slot *r = clients_find(&d->clients, c->client_id);

	if (!c->bye && r && clients_judge(r->pid, r->start) == CLIENTS_ALIVE) {
		log_debug("client %u (pid %d) disconnected and still runs: "
			  "its locks stay its own until it exits",
			  c->client_id, (int)c->pid);
		return;
	}
	int n = eng_recover(&d->eng, c->client_id);
	if (n > 0)
		log_warn("client %u (pid %d) %s holding %d segment lock(s): "
			 "recovered",
			 c->client_id, (int)c->pid,
			 c->bye ? "closed its handle" : "died", n);
	else
		log_debug("client %u (pid %d) %s", c->client_id, (int)c->pid,
			  c->bye ? "closed its handle" : "left");
	clients_remove(&d->clients, c->client_id);
}

void conn_release(struct daemon *d, struct conn *c)
{
	if (c->client_id)
		client_left(d, c);
	close(c->fd);
	free(c->in);
	free(c->out);
	free(c->reply);
	uint32_t gen = c->gen;
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->pass_fd = -1;
	c->gen = gen;
	d->nconns--;
}

/* ------------------------------------------------------------------------
 * Input
 * ------------------------------------------------------------------------ */

size_t conn_in_room(struct daemon *d, struct conn *c)
{
	(void)d;
	if (c->closing || conn_out_pending(c) >= CONN_OUT_HIGH)
		return 0;
	size_t want = CONN_IN_INITIAL;
	if (c->in_len >= PROTO_HDR_SIZE) {
		/* A large frame announced: grow up to exactly its size. */
		uint32_t len = (uint32_t)c->in[0] | (uint32_t)c->in[1] << 8 |
			       (uint32_t)c->in[2] << 16 |
			       (uint32_t)c->in[3] << 24;
		if (len <= PROTO_MAX_PAYLOAD && PROTO_HDR_SIZE + len > want)
			want = PROTO_HDR_SIZE + len;
	}
	if (want > c->in_cap) {
		uint8_t *p = realloc(c->in, want);
		if (!p) {
			c->closing = true;
			return 0;
		}
		c->in = p;
		c->in_cap = want;
	}
	return c->in_cap - c->in_len;
}

void conn_input(struct daemon *d, struct conn *c)
{
	size_t pos = 0;

	while (!c->closing && !c->waiting &&
	       conn_out_pending(c) < CONN_OUT_HIGH &&
	       c->in_len - pos >= PROTO_HDR_SIZE) {
		struct proto_hdr h;
		int rc = proto_hdr_get(c->in + pos, PROTO_MAX_PAYLOAD, &h);
		if (rc) {
			/* The framing cannot be trusted any more. */
			log_info("pid %d sent a bad frame header (%s): "
				 "disconnecting",
				 (int)c->pid,
				 rc == -EMSGSIZE ? "too large" : "bad version");
			conn_reply_error(c, h.id, rc,
					 rc == -EMSGSIZE ? "frame too large"
							 : "bad frame header");
			c->closing = true;
			break;
		}
		if (c->in_len - pos < PROTO_HDR_SIZE + h.len)
			break;
		handle_request(d, c, h.type, h.id, c->in + pos + PROTO_HDR_SIZE,
			       h.len);
		pos += PROTO_HDR_SIZE + h.len;
	}
	if (pos) {
		memmove(c->in, c->in + pos, c->in_len - pos);
		c->in_len -= pos;
	}
	/* Give back a buffer a large frame grew. */
	if (c->in_len == 0 && c->in_cap > CONN_IN_INITIAL) {
		uint8_t *p = realloc(c->in, CONN_IN_INITIAL);
		if (p) {
			c->in = p;
			c->in_cap = CONN_IN_INITIAL;
		}
	}
	/* A waiting connection's unparsed frames are not half frames. */
	c->partial_since = c->in_len && !c->waiting
				   ? (c->partial_since ?: clock_mono_ms())
				   : 0;
}

void conn_resume(struct daemon *d, struct conn *c)
{
	if (c->waiting && !job_deliver(d, c))
		return;
	if (!c->closing && c->in_len >= PROTO_HDR_SIZE &&
	    conn_out_pending(c) < CONN_OUT_HIGH)
		conn_input(d, c);
}

void conn_tick(struct daemon *d, uint64_t now_ms)
{
	for (uint32_t i = 0; i < d->cfg.max_clients; i++) {
		struct conn *c = &d->conns[i];
		if (c->fd < 0 || c->closing || c->waiting)
			continue;
		if (c->client_id == 0 &&
		    now_ms - c->accepted_ms >= d->cfg.hello_timeout_ms) {
			log_info("pid %d sent no HELLO within %u ms: "
				 "disconnecting",
				 (int)c->pid, d->cfg.hello_timeout_ms);
			conn_reply_error(c, 0, -ETIMEDOUT,
					 "no HELLO in time (--hello-timeout)");
			c->closing = true;
			continue;
		}
		if (!c->partial_since)
			continue;
		if (now_ms - c->partial_since >= CONN_PARTIAL_TIMEOUT_MS) {
			log_info("pid %d left half a frame for %d ms: "
				 "disconnecting",
				 (int)c->pid, CONN_PARTIAL_TIMEOUT_MS);
			c->closing = true;
		}
	}
}
