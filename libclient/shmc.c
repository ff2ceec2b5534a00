/*
 * shmc.c - libshmc: the public API of shmc.h over the engine (data path, on
 * the mapping) and the control socket (handshake and control requests).
 *
 * Data operations are thin: check the handle, call the engine.  The
 * engine does the locking; nothing here allocates or makes a system call
 * on those paths.  Control requests are serialized by a mutex, allocate
 * their reply buffers, and reconnect once when the daemon went away
 * (a restarted daemon re-adopts the client id, see HELLO in
 * docs/PROTOCOL.md).  Every connection checks who serves the socket
 * before a byte is sent (sock_connect, shared/sock.c, which cachectl
 * --no-map uses too), and a failure to reach the daemon
 * keeps words naming the socket for shmc_strerror().
 *
 * Parts: handle and fork detection; socket I/O and the handshake; control
 * requests; data operations; items (flags, versions, conditional stores,
 * counters); get_or_load; zero-copy; stats; errors.
 */
#include "shmc.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clients.h"
#include "clock.h"
#include "engine.h"
#include "proto.h"
#include "sock.h"

static_assert(SHMC_KEY_MAX == ENTRY_KEY_MAX, "shmc.h states the key limit");

#define SHMC_EXPORT __attribute__((visibility("default")))
#define LOAD_SLICE_MS 50 /* a get_or_load waiter re-checks this often */

/* ------------------------------------------------------------------------
 * The handle, and fork detection without a syscall per call
 * ------------------------------------------------------------------------ */

struct shmc {
	struct eng e; /* read-only after open */
	void *base;
	size_t size;
	int region_fd; /* kept: owner_query() tells if a daemon runs */
	struct clients_view view; /* the liveness check's argument */
	unsigned fork_gen;	  /* fork_generation at open */

	pthread_mutex_t ctl; /* guards everything below */
	int sock;	     /* -1 while disconnected */
	uint32_t next_id;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* Bumped in every child after fork(): a handle whose fork_gen differs was
 * opened by an ancestor. */
static unsigned fork_generation;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
	__atomic_fetch_add(&fork_generation, 1, __ATOMIC_RELAXED);
}

static void fork_watch(void)
{
	pthread_atfork(NULL, NULL, on_fork_child);
}

/* 0 if c can be used by this process. */
static inline int usable(const shmc *c)
{
	if (__builtin_expect(!c, 0))
		return -EINVAL;
	if (__builtin_expect(c->fork_gen != __atomic_load_n(&fork_generation,
							    __ATOMIC_RELAXED),
			     0))
		return -ECHILD;
	return 0;
}

/* usable(c), then -EINVAL unless arg_ok: the entry check of the calls that
 * need a pointer argument (an output, a callback). */
static inline int usable_with(const shmc *c, bool arg_ok)
{
	int rc = usable(c);

	return rc ? rc : arg_ok ? 0 : -EINVAL;
}

/* ------------------------------------------------------------------------
 * Socket I/O and the handshake
 * ------------------------------------------------------------------------ */

static int send_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads n bytes; a descriptor passed along (SCM_RIGHTS) lands in *fd_out
 * when fd_out is not NULL (and is closed otherwise). */
static int recv_all(int fd, void *buf, size_t n, int *fd_out)
{
	uint8_t *p = buf;

	while (n > 0) {
		union {
			char buf[CMSG_SPACE(sizeof(int) * 4)];
			struct cmsghdr align;
		} cm;
		struct iovec iov = { .iov_base = p, .iov_len = n };
		struct msghdr msg = { .msg_iov = &iov,
				      .msg_iovlen = 1,
				      .msg_control = cm.buf,
				      .msg_controllen = sizeof(cm.buf) };
		ssize_t r = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c;
		     c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level != SOL_SOCKET ||
			    c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < nfd; i++) {
				int got;
				memcpy(&got, CMSG_DATA(c) + i * sizeof(int),
				       sizeof(int));
				if (fd_out && *fd_out < 0)
					*fd_out = got;
				else
					close(got);
			}
		}
		if (r == 0)
			return -EPIPE;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* The message of the calling thread's last error reply (shmc_errmsg). */
static __thread char errmsg[512];

/* Keeps an error frame's message: bytes, made printable.  A
 * proto_errmsg_fn; ctx is unused. */
static void keep_errmsg(void *ctx, const void *p, size_t n)
{
	(void)ctx;
	if (n >= sizeof(errmsg))
		n = sizeof(errmsg) - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = ((const unsigned char *)p)[i];
		errmsg[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	errmsg[n] = '\0';
}

/* Where exchange() reads a reply's body from: recv_all's arguments. */
struct recv_to {
	int sock;
	int *fd_out;
};

/* recv_all() as a proto_read_fn. */
static int recv_body(void *ctx, void *buf, size_t n)
{
	struct recv_to *t = ctx;

	return recv_all(t->sock, buf, n, t->fd_out);
}

/* One request, one reply.  On success *reply (malloc'd) holds the reply
 * body; an error frame becomes its -errno, and its message is kept for
 * shmc_errmsg(). */
static int exchange(int sock, uint32_t id, uint16_t type, const void *body,
		    size_t blen, uint8_t **reply, size_t *rlen, int *fd_out)
{
	uint8_t hdr[PROTO_HDR_SIZE];
	struct proto_hdr h = { .len = (uint32_t)blen,
			       .type = type,
			       .version = PROTO_VERSION,
			       .id = id };
	int rc;

	*reply = NULL;
	*rlen = 0;
	errmsg[0] = '\0';
	if (blen > PROTO_MAX_PAYLOAD)
		return -E2BIG;
	proto_hdr_put(hdr, &h);
	if ((rc = send_all(sock, hdr, sizeof(hdr))) ||
	    (blen && (rc = send_all(sock, body, blen)))) {
		/* The daemon may have said why before it closed. */
		if (rc != -EPIPE && rc != -ECONNRESET)
			return rc;
	}
	int send_rc = rc;
	if ((rc = recv_all(sock, hdr, sizeof(hdr), fd_out)))
		return send_rc ? send_rc : rc;
	struct recv_to to = { .sock = sock, .fd_out = fd_out };
	if ((rc = proto_reply_read(hdr, type, recv_body, keep_errmsg, &to, &h,
				   reply, rlen)))
		return rc;
	if (h.id != id && h.id != 0) {
		free(*reply);
		*reply = NULL;
		*rlen = 0;
		return -EIO;
	}
	return 0;
}

/* The calling thread's last failure to reach a daemon, in words that name
 * the socket: shmc_strerror(reach.err) returns reach.msg.  Cleared at the
 * start of every shmc_open() and control request. */
static __thread struct sock_err reach;

_Static_assert(SOCK_ENODAEMON == SHMC_ENODAEMON, "sock.h agrees with shmc.h");
_Static_assert(SOCK_EUNTRUSTED == SHMC_EUNTRUSTED, "sock.h agrees with shmc.h");

/* HELLO on sock.  Fills the id, format and size; *region_fd gets the
 * passed descriptor (-1 if none came). */
static int hello(int sock, uint32_t id, uint32_t prev_id, uint32_t *client_id,
		 uint32_t *format, uint64_t *size, int *region_fd)
{
	uint8_t body[12], *reply;
	size_t rlen;
	struct proto_w w;
	struct proto_r r;

	proto_w_init(&w, body, sizeof(body));
	proto_put_u32(&w, PROTO_VERSION);
	proto_put_u32(&w, (uint32_t)getpid());
	proto_put_u32(&w, prev_id);
	*region_fd = -1;
	int rc = exchange(sock, id, PROTO_T_HELLO, body, w.len, &reply, &rlen,
			  region_fd);
	if (rc)
		return rc;
	proto_r_init(&r, reply, rlen);
	*client_id = proto_get_u32(&r);
	*format = proto_get_u32(&r);
	*size = proto_get_u64(&r);
	rc = proto_r_end(&r);
	free(reply);
	if (rc || *client_id == 0)
		return -EIO;
	return 0;
}

SHMC_EXPORT int shmc_open(shmc **out, const char *socket_path)
{
	uint32_t cid, format;
	uint64_t size;
	int region_fd = -1, rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	reach.err = 0;
	pthread_once(&fork_once, fork_watch);
	shmc *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->sock = sock_open(socket_path, c->path, sizeof(c->path), &reach);
	if (c->sock < 0) {
		rc = c->sock;
		free(c);
		return rc;
	}
	c->next_id = 1;
	rc = hello(c->sock, c->next_id++, 0, &cid, &format, &size, &region_fd);
	if (rc == -EACCES) /* refused at accept by the allow lists */
		sock_denied(c->path, &reach);
	if (rc == 0 && format != LAYOUT_FORMAT)
		rc = -EPROTO;
	if (rc == 0 &&
	    (region_fd < 0 || size < LAYOUT_REGION_HDR_SIZE || size > SIZE_MAX))
		rc = -EIO;
	if (rc == 0) {
		c->base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
			       MAP_SHARED, region_fd, 0);
		if (c->base == MAP_FAILED) {
			rc = -errno;
			c->base = NULL;
		}
		c->size = (size_t)size;
	}
	if (rc == 0)
		rc = eng_attach(&c->e, c->base, c->size, cid, NULL);
	if (rc == 0) { /* waiters judge a dead holder when no daemon runs */
		c->region_fd = region_fd;
		c->view = (struct clients_view){ &c->e, region_fd };
		eng_set_alive_fn(&c->e, clients_alive, &c->view);
	}
	if (rc) {
		if (region_fd >= 0)
			close(region_fd);
		if (c->base)
			munmap(c->base, c->size);
		close(c->sock);
		free(c);
		return rc;
	}
	pthread_mutex_init(&c->ctl, NULL);
	c->fork_gen = __atomic_load_n(&fork_generation, __ATOMIC_RELAXED);
	*out = c;
	return 0;
}

SHMC_EXPORT void shmc_close(shmc *c)
{
	if (!c)
		return;
	munmap(c->base, c->size);
	close(c->region_fd);
	/* BYE: our id is done, the daemon may forget it now rather than
	 * when this process exits.  Not from a forked child: the socket is
	 * the parent's, and so is the id.  Not waited for: the daemon reads
	 * it before the end of the stream. */
	if (c->sock >= 0 && usable(c) == 0) {
		uint8_t hdr[PROTO_HDR_SIZE];
		struct proto_hdr h = { .type = PROTO_T_BYE,
				       .version = PROTO_VERSION };
		proto_hdr_put(hdr, &h);
		(void)!send(c->sock, hdr, sizeof(hdr),
			    MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	if (c->sock >= 0)
		close(c->sock);
	pthread_mutex_destroy(&c->ctl);
	free(c);
}

/* ------------------------------------------------------------------------
 * Control requests
 * ------------------------------------------------------------------------ */

/* Reconnects to the daemon keeping our client id.  Called with ctl held. */
static int reconnect(shmc *c)
{
	uint32_t cid, format;
	uint64_t size;
	int region_fd;

	if (c->sock >= 0)
		close(c->sock);
	c->sock = sock_connect(c->path, &reach);
	if (c->sock < 0)
		return c->sock;
	int rc = hello(c->sock, c->next_id++, c->e.client_id, &cid, &format,
		       &size, &region_fd);
	if (rc == -EACCES)
		sock_denied(c->path, &reach);
	if (region_fd >= 0)
		close(region_fd); /* our mapping stays */
	if (rc == 0 && (format != LAYOUT_FORMAT || cid != c->e.client_id))
		rc = -EPROTO; /* another region, or our id is taken */
	if (rc) {
		close(c->sock);
		c->sock = -1;
	}
	return rc;
}

/* A control request; on success *reply and *rlen hold the reply (free it).
 * On failure *reply is NULL and *rlen 0. */
static int ctl_call(shmc *c, uint16_t type, const void *body, size_t blen,
		    uint8_t **reply, size_t *rlen)
{
	int rc = usable(c);

	/* Defined on every path, including those that never reach exchange()
	 * (no daemon, a fork child): the callers free *reply. */
	*reply = NULL;
	*rlen = 0;
	errmsg[0] = '\0'; /* also when failing before the daemon answers */
	reach.err = 0;
	if (rc)
		return rc;
	pthread_mutex_lock(&c->ctl);
	for (int attempt = 0; attempt < 2; attempt++) {
		if (c->sock < 0 && (rc = reconnect(c)) != 0)
			break;
		rc = exchange(c->sock, c->next_id++, type, body, blen, reply,
			      rlen, NULL);
		if (rc != -EPIPE && rc != -ECONNRESET && rc != -EIO &&
		    rc != -ENOTCONN)
			break;
		/* The daemon went away (or restarted): once more. */
		close(c->sock);
		c->sock = -1;
		if (type == PROTO_T_SHUTDOWN)
			break;
	}
	pthread_mutex_unlock(&c->ctl);
	return rc;
}

static int ctl_simple(shmc *c, uint16_t type, const void *body, size_t blen)
{
	uint8_t *reply;
	size_t rlen;
	int rc = ctl_call(c, type, body, blen, &reply, &rlen);

	free(reply);
	return rc == 0 && rlen ? -EIO : rc;
}

SHMC_EXPORT int shmc_ping(shmc *c)
{
	return ctl_simple(c, PROTO_T_PING, NULL, 0);
}

SHMC_EXPORT int shmc_shutdown(shmc *c)
{
	return ctl_simple(c, PROTO_T_SHUTDOWN, NULL, 0);
}

SHMC_EXPORT int shmc_check(shmc *c, int repair, uint32_t *segments,
			   uint32_t *bad, uint32_t *repaired)
{
	uint8_t body[1], *reply;
	size_t rlen;
	struct proto_r r;
	struct proto_w w;

	proto_w_init(&w, body, sizeof(body));
	proto_put_u8(&w, repair ? 1 : 0);
	int rc = ctl_call(c, PROTO_T_CHECK, body, w.len, &reply, &rlen);

	if (rc)
		return rc;
	proto_r_init(&r, reply, rlen);
	uint32_t s = proto_get_u32(&r), b = proto_get_u32(&r);
	uint32_t rep = proto_get_u32(&r);
	rc = r.err ? -EIO : 0;
	/* The first finding, in the daemon's words, for shmc_errmsg(). */
	if (rc == 0 && proto_get_u32(&r) > 0) {
		uint32_t seg = proto_get_u32(&r);
		char first[160];
		(void)proto_get_u32(&r);
		proto_get_str(&r, first, sizeof(first));
		if (!r.err && seg == UINT32_MAX)
			snprintf(errmsg, sizeof(errmsg), "%s", first);
		else if (!r.err)
			snprintf(errmsg, sizeof(errmsg), "segment %u: %s",
				 (unsigned)seg, first);
	}
	free(reply);
	if (rc == 0) {
		if (segments)
			*segments = s;
		if (bad)
			*bad = b;
		if (repaired)
			*repaired = rep;
	}
	return rc;
}

/* A request whose reply is u32 n and n records: each record is decoded
 * by item() into out[i] (esize bytes each) while i < cap, else into a
 * scratch record of at most 64 bytes.  *n = n.  -EIO when the reply does
 * not parse or item() refuses a record (returns non-zero). */
static int ctl_list(shmc *c, uint16_t type, void *out, size_t esize, size_t cap,
		    size_t *n, int (*item)(struct proto_r *r, void *dst))
{
	uint8_t *reply, scratch[64];
	size_t rlen;
	struct proto_r r;

	if (!n || (!out && cap))
		return -EINVAL;
	int rc = ctl_call(c, type, NULL, 0, &reply, &rlen);
	if (rc)
		return rc;
	proto_r_init(&r, reply, rlen);
	uint32_t count = proto_get_u32(&r);
	for (uint32_t i = 0; i < count && !r.err; i++)
		if (item(&r, i < cap ? (uint8_t *)out + i * esize : scratch))
			r.err = -EBADMSG;
	rc = proto_r_end(&r) ? -EIO : 0;
	free(reply);
	if (rc == 0)
		*n = count;
	return rc;
}

static int client_item(struct proto_r *r, void *dst)
{
	struct shmc_client_info *ci = dst;

	ci->id = proto_get_u32(r);
	ci->pid = proto_get_u32(r);
	ci->uid = proto_get_u32(r);
	ci->gid = proto_get_u32(r);
	ci->since = proto_get_u64(r);
	return 0;
}

SHMC_EXPORT int shmc_clients(shmc *c, struct shmc_client_info *out, size_t cap,
			     size_t *n)
{
	return ctl_list(c, PROTO_T_CLIENTS, out, sizeof(*out), cap, n,
			client_item);
}

/* ------------------------------------------------------------------------
 * Namespaces
 * ------------------------------------------------------------------------ */

static_assert(sizeof(struct shmc_client_info) <= 64 &&
		      sizeof(struct shmc_ns_info) <= 64,
	      "ctl_list()'s scratch record is too small");
static_assert(SHMC_NS_PREFIX_MAX == LAYOUT_NS_PREFIX_MAX &&
		      SHMC_NS_MAX == LAYOUT_NS_SLOTS / 2,
	      "shmc.h's namespace limits are not the engine's");

/* NS_ADD, NS_FLUSH or NS_DEL of prefix. */
static int ns_call(shmc *c, uint16_t type, const void *prefix, size_t len)
{
	uint8_t body[4 + SHMC_NS_PREFIX_MAX];
	struct proto_w w;

	if (!prefix || len == 0 || len > SHMC_NS_PREFIX_MAX)
		return -EINVAL;
	proto_w_init(&w, body, sizeof(body));
	proto_put_bytes(&w, prefix, len);
	return ctl_simple(c, type, body, w.len);
}

SHMC_EXPORT int shmc_ns_add(shmc *c, const void *prefix, size_t len)
{
	return ns_call(c, PROTO_T_NS_ADD, prefix, len);
}

SHMC_EXPORT int shmc_ns_flush(shmc *c, const void *prefix, size_t len)
{
	return ns_call(c, PROTO_T_NS_FLUSH, prefix, len);
}

SHMC_EXPORT int shmc_ns_del(shmc *c, const void *prefix, size_t len)
{
	return ns_call(c, PROTO_T_NS_DEL, prefix, len);
}

static int ns_item(struct proto_r *r, void *dst)
{
	struct shmc_ns_info *ns = dst;
	const void *p;
	size_t len = proto_get_bytes(r, &p);

	if (len == 0 || len > SHMC_NS_PREFIX_MAX)
		return -1;
	memcpy(ns->prefix, p, len);
	ns->len = (uint32_t)len;
	ns->mark = proto_get_u32(r);
	ns->slot = proto_get_u32(r);
	return 0;
}

SHMC_EXPORT int shmc_ns_list(shmc *c, struct shmc_ns_info *out, size_t cap,
			     size_t *n)
{
	return ctl_list(c, PROTO_T_NS_LIST, out, sizeof(*out), cap, n, ns_item);
}

static_assert(SHMC_NEAR_PREFIXES_MAX == PROTO_NEAR_PREFIXES_MAX,
	      "shmc.h's near-cache prefix limit is not the protocol's");

/* NEARCACHE's reply (docs/PROTOCOL.md): the state, then the counters and
 * the last error, which cachectl shows and this skips, then the tracked
 * prefixes. */
SHMC_EXPORT int shmc_near_query(shmc *c, struct shmc_near_info *out)
{
	const void *p;
	uint8_t *reply;
	size_t rlen;
	struct proto_r r;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	int rc = ctl_call(c, PROTO_T_NEARCACHE, NULL, 0, &reply, &rlen);
	if (rc)
		return rc;
	proto_r_init(&r, reply, rlen);
	proto_get_str(&r, out->state, sizeof(out->state));
	uint32_t ncounters = proto_get_u32(&r);
	for (uint32_t i = 0; i < ncounters && !r.err; i++) {
		proto_get_bytes(&r, &p); /* name */
		proto_get_u64(&r);
		proto_get_bytes(&r, &p); /* description */
	}
	proto_get_bytes(&r, &p); /* last error, and its time */
	proto_get_u64(&r);
	out->nprefix = proto_get_u32(&r);
	if (out->nprefix > SHMC_NEAR_PREFIXES_MAX)
		r.err = -EBADMSG;
	for (uint32_t i = 0; i < out->nprefix && !r.err; i++) {
		size_t len = proto_get_bytes(&r, &p);

		if (!r.err && (len == 0 || len > SHMC_NS_PREFIX_MAX))
			r.err = -EBADMSG;
		else if (!r.err)
			memcpy(out->prefix[i].bytes, p, len);
		out->prefix[i].len = (uint32_t)len;
	}
	rc = proto_r_end(&r) || !out->state[0] ? -EIO : 0;
	free(reply);
	if (rc)
		memset(out, 0, sizeof(*out));
	return rc;
}

/* SAVE, or LOAD with PROTO_LOAD_* flags (sent only when not 0). */
static int snapshot(shmc *c, uint16_t type, const char *path, uint32_t flags,
		    uint64_t *entries)
{
	uint8_t *reply;
	size_t rlen, plen;
	struct proto_r r;

	errmsg[0] = '\0';
	if (!path || (plen = strlen(path)) == 0 || plen > 4096)
		return -EINVAL;
	uint8_t *body = malloc(4 + plen + 4);
	if (!body)
		return -ENOMEM;
	struct proto_w w;
	proto_w_init(&w, body, 4 + plen + 4);
	proto_put_bytes(&w, path, plen);
	if (flags)
		proto_put_u32(&w, flags);
	int rc = ctl_call(c, type, body, w.len, &reply, &rlen);
	free(body);
	if (rc)
		return rc;
	proto_r_init(&r, reply, rlen);
	uint64_t n = proto_get_u64(&r);
	rc = proto_r_end(&r) ? -EIO : 0;
	free(reply);
	if (rc == 0 && entries)
		*entries = n;
	return rc;
}

SHMC_EXPORT int shmc_save(shmc *c, const char *path, uint64_t *entries)
{
	return snapshot(c, PROTO_T_SAVE, path, 0, entries);
}

SHMC_EXPORT int shmc_load(shmc *c, const char *path, uint64_t *entries)
{
	return snapshot(c, PROTO_T_LOAD, path, 0, entries);
}

SHMC_EXPORT int shmc_load_partial(shmc *c, const char *path, uint64_t *entries)
{
	return snapshot(c, PROTO_T_LOAD, path, PROTO_LOAD_PARTIAL, entries);
}

/* ------------------------------------------------------------------------
 * Data operations
 * ------------------------------------------------------------------------ */

SHMC_EXPORT int shmc_set(shmc *c, const void *key, size_t klen, const void *val,
			 size_t vlen, uint32_t ttl_s)
{
	int rc = usable(c);

	return rc ? rc : eng_set(&c->e, key, klen, val, vlen, ttl_s);
}

SHMC_EXPORT int shmc_get(shmc *c, const void *key, size_t klen, void *buf,
			 size_t cap, size_t *vlen)
{
	int rc = usable(c);

	return rc ? rc : eng_get(&c->e, key, klen, buf, cap, vlen, NULL);
}

SHMC_EXPORT int shmc_get_ex(shmc *c, const void *key, size_t klen, void *buf,
			    size_t cap, size_t *vlen, uint32_t *expire_at)
{
	int rc = usable(c);

	return rc ? rc : eng_get(&c->e, key, klen, buf, cap, vlen, expire_at);
}

SHMC_EXPORT int shmc_peek(shmc *c, const void *key, size_t klen, void *buf,
			  size_t cap, size_t *vlen)
{
	int rc = usable(c);

	return rc ? rc : eng_peek(&c->e, key, klen, buf, cap, vlen, NULL);
}

static_assert(sizeof(struct shmc_mkey) == sizeof(struct eng_mkey) &&
		      offsetof(struct shmc_mkey, key) ==
			      offsetof(struct eng_mkey, key) &&
		      offsetof(struct shmc_mkey, klen) ==
			      offsetof(struct eng_mkey, klen) &&
		      offsetof(struct shmc_mkey, buf) ==
			      offsetof(struct eng_mkey, buf) &&
		      offsetof(struct shmc_mkey, cap) ==
			      offsetof(struct eng_mkey, cap),
	      "shmc_mkey is eng_mkey");
static_assert(sizeof(struct shmc_mitem) == sizeof(struct eng_mitem) &&
		      offsetof(struct shmc_mitem, key) ==
			      offsetof(struct eng_mitem, key) &&
		      offsetof(struct shmc_mitem, klen) ==
			      offsetof(struct eng_mitem, klen) &&
		      offsetof(struct shmc_mitem, val) ==
			      offsetof(struct eng_mitem, val) &&
		      offsetof(struct shmc_mitem, vlen) ==
			      offsetof(struct eng_mitem, vlen),
	      "shmc_mitem is eng_mitem");

SHMC_EXPORT int shmc_mget(shmc *c, size_t n, const struct shmc_mkey *keys,
			  struct shmc_mres *res, unsigned opts)
{
	struct eng_mres r[64];
	int rc = usable_with(c,
			     (!n || (keys && res)) && !(opts & ~SHMC_MGET_CAS));

	if (rc)
		return rc;
	for (size_t at = 0; at < n; at += 64) {
		size_t g = n - at < 64 ? n - at : 64;

		eng_mget(&c->e, g, (const struct eng_mkey *)(keys + at), r,
			 opts & SHMC_MGET_CAS);
		for (size_t i = 0; i < g; i++) {
			struct shmc_mres *o = &res[at + i];
			bool found = r[i].rc == 0 || r[i].rc == -ENOBUFS;

			o->rc = r[i].rc;
			o->vlen = found ? r[i].m.vlen : 0;
			o->flags = found ? r[i].m.flags : 0;
			o->expire_at = found ? r[i].m.expire : 0;
			o->cas = found && (opts & SHMC_MGET_CAS) ? r[i].m.cas
								 : 0;
		}
	}
	return 0;
}

SHMC_EXPORT int shmc_mset(shmc *c, size_t n, const struct shmc_mitem *items,
			  uint32_t ttl_s, int *rc)
{
	int err = usable_with(c, !n || (items && rc));

	return err ? err
		   : eng_mset(&c->e, n, (const struct eng_mitem *)items,
			      &(struct eng_wopts){ .ttl_s = ttl_s }, rc, NULL);
}

SHMC_EXPORT int shmc_del(shmc *c, const void *key, size_t klen)
{
	int rc = usable(c);

	return rc ? rc : eng_del(&c->e, key, klen);
}

SHMC_EXPORT int shmc_ttl(shmc *c, const void *key, size_t klen, uint32_t *ttl_s)
{
	int rc = usable(c);

	return rc ? rc : eng_ttl(&c->e, key, klen, ttl_s);
}

SHMC_EXPORT int shmc_touch(shmc *c, const void *key, size_t klen,
			   uint32_t ttl_s)
{
	int rc = usable(c);

	return rc ? rc : eng_touch(&c->e, key, klen, ttl_s);
}

SHMC_EXPORT int shmc_clear(shmc *c)
{
	int rc = usable(c);

	return rc ? rc : eng_clear(&c->e);
}

/* ------------------------------------------------------------------------
 * Items: flags, versions, conditional stores, counters
 * ------------------------------------------------------------------------ */

SHMC_EXPORT int shmc_get_item(shmc *c, const void *key, size_t klen, void *buf,
			      size_t cap, struct shmc_item *it)
{
	struct eng_meta m;
	int rc = usable_with(c, it != NULL);

	if (rc)
		return rc;
	rc = eng_get_ex(&c->e, key, klen, buf, cap, &m);
	if (rc == -ENOBUFS)
		it->vlen = m.vlen;
	else if (rc == 0)
		*it = (struct shmc_item){ .cas = m.cas,
					  .vlen = m.vlen,
					  .flags = m.flags,
					  .expire_at = m.expire };
	return rc;
}

/* One store of the given mode with o's flags and TTL (NULL: none). */
static int store(shmc *c, enum eng_mode mode, const void *key, size_t klen,
		 const void *val, size_t vlen, uint64_t version,
		 const struct shmc_store_opts *o, uint64_t *cas)
{
	struct eng_wopts w = { .mode = mode, .cas = version };
	int rc = usable(c);

	if (rc)
		return rc;
	if (o) {
		w.flags = o->flags;
		w.ttl_s = o->ttl_s;
	}
	return eng_store(&c->e, key, klen, val, vlen, &w, cas);
}

SHMC_EXPORT int shmc_set_ex(shmc *c, const void *key, size_t klen,
			    const void *val, size_t vlen,
			    const struct shmc_store_opts *o, uint64_t *cas)
{
	return store(c, ENG_SET, key, klen, val, vlen, 0, o, cas);
}

SHMC_EXPORT int shmc_add(shmc *c, const void *key, size_t klen, const void *val,
			 size_t vlen, const struct shmc_store_opts *o,
			 uint64_t *cas)
{
	return store(c, ENG_ADD, key, klen, val, vlen, 0, o, cas);
}

SHMC_EXPORT int shmc_replace(shmc *c, const void *key, size_t klen,
			     const void *val, size_t vlen,
			     const struct shmc_store_opts *o, uint64_t *cas)
{
	return store(c, ENG_REPLACE, key, klen, val, vlen, 0, o, cas);
}

SHMC_EXPORT int shmc_cas(shmc *c, const void *key, size_t klen, const void *val,
			 size_t vlen, uint64_t version,
			 const struct shmc_store_opts *o, uint64_t *new_cas)
{
	return store(c, ENG_CAS, key, klen, val, vlen, version, o, new_cas);
}

SHMC_EXPORT int shmc_append(shmc *c, const void *key, size_t klen,
			    const void *val, size_t vlen, uint64_t *cas)
{
	return store(c, ENG_APPEND, key, klen, val, vlen, 0, NULL, cas);
}

SHMC_EXPORT int shmc_prepend(shmc *c, const void *key, size_t klen,
			     const void *val, size_t vlen, uint64_t *cas)
{
	return store(c, ENG_PREPEND, key, klen, val, vlen, 0, NULL, cas);
}

/* incr or decr; with_init: create a missing key at init (TTL init_ttl). */
static int arith(shmc *c, const void *key, size_t klen, bool decr,
		 uint64_t delta, bool with_init, uint64_t init,
		 uint32_t init_ttl, uint64_t *out)
{
	struct eng_wopts w = { .ttl_s = init_ttl };
	uint64_t v;
	int rc = usable(c);

	if (rc)
		return rc;
	rc = eng_arith(&c->e, key, klen, decr, delta, with_init ? &w : NULL,
		       init, &v, NULL);
	if (rc == 0 && out)
		*out = v;
	return rc;
}

SHMC_EXPORT int shmc_incr(shmc *c, const void *key, size_t klen, uint64_t delta,
			  uint64_t *out)
{
	return arith(c, key, klen, false, delta, false, 0, 0, out);
}

SHMC_EXPORT int shmc_decr(shmc *c, const void *key, size_t klen, uint64_t delta,
			  uint64_t *out)
{
	return arith(c, key, klen, true, delta, false, 0, 0, out);
}

SHMC_EXPORT int shmc_incr_init(shmc *c, const void *key, size_t klen,
			       uint64_t delta, uint64_t init, uint32_t init_ttl,
			       uint64_t *out)
{
	return arith(c, key, klen, false, delta, true, init, init_ttl, out);
}

SHMC_EXPORT int shmc_decr_init(shmc *c, const void *key, size_t klen,
			       uint64_t delta, uint64_t init, uint32_t init_ttl,
			       uint64_t *out)
{
	return arith(c, key, klen, true, delta, true, init, init_ttl, out);
}

/* ------------------------------------------------------------------------
 * get_or_load
 * ------------------------------------------------------------------------ */

/* Runs the loader: 0 with the value in buf[0..*len) and its TTL in *ttl,
 * -ENOBUFS when it is longer than cap (*len set), or the loader's
 * error. */
static int load_value(const void *key, size_t klen, void *buf, size_t cap,
		      size_t *len, uint32_t *ttl, shmc_loader load, void *arg)
{
	int rc;

	*len = 0;
	*ttl = 0;
	rc = load(key, klen, buf, cap, len, ttl, arg);
	return rc == 0 && *len > cap ? -ENOBUFS : rc;
}

/* Runs the loader as the key's one loader, stores its value (with grace_s
 * of stale-while-revalidate) and ends the flight, whatever happened. */
static int load_and_store(shmc *c, struct eng_flight *f, const void *key,
			  size_t klen, void *buf, size_t cap, size_t *vlen,
			  uint32_t grace_s, shmc_loader load, void *arg)
{
	uint32_t ttl;
	size_t len;
	int rc = load_value(key, klen, buf, cap, &len, &ttl, load, arg);

	if (rc == 0) {
		/* A fill (shmc_fill()): the lease begun at the claim. */
		struct eng_wopts o = { .mode = ENG_ADD,
				       .ttl_s = ttl,
				       .grace_s = ttl ? grace_s : 0,
				       .lease = &f->lease };
		rc = eng_store(&c->e, key, klen, buf, len, &o, NULL);
		if (rc == -ESTALE || rc == -EEXIST)
			rc = 0; /* the caller still gets what it loaded */
	}
	eng_flight_done(&c->e, f);
	if (rc == 0 || rc == -ENOBUFS)
		*vlen = len;
	return rc;
}

/* Whether a fill of key would be refused whatever happens: its prefix is
 * blocked (the near cache's tracking is down).  Then waiting for another
 * caller's load gains nothing, since its value is not cached: each
 * caller loads for itself, as it would with no cache. */
static bool fill_refused(shmc *c, const void *key, size_t klen)
{
	struct eng_lease l;

	return eng_lease_begin(&c->e, key, klen, &l) == 0 && !l.ok;
}

/* Runs the loader and stores nothing. */
static int load_only(const void *key, size_t klen, void *buf, size_t cap,
		     size_t *vlen, shmc_loader load, void *arg)
{
	uint32_t ttl;
	size_t len;
	int rc = load_value(key, klen, buf, cap, &len, &ttl, load, arg);

	if (rc == 0 || rc == -ENOBUFS)
		*vlen = len;
	return rc;
}

/* shmc_get_or_load(), storing with grace_s (0: none).  A value past its
 * TTL but in its grace comes back from eng_get_or_claim() as a hit (0)
 * for every caller but the one that claimed its reload (ENG_LOAD). */
static int get_or_load(shmc *c, const void *key, size_t klen, void *buf,
		       size_t cap, size_t *vlen, uint32_t grace_s,
		       shmc_loader load, void *arg)
{
	struct eng_flight f;
	int rc = usable_with(c, load != NULL);

	if (rc)
		return rc;
	for (;;) {
		rc = eng_get_or_claim(&c->e, key, klen, buf, cap, vlen, NULL,
				      &f);
		if (rc == ENG_LOAD)
			return load_and_store(c, &f, key, klen, buf, cap, vlen,
					      grace_s, load, arg);
		if (rc != ENG_WAIT)
			return rc;
		if (fill_refused(c, key, klen))
			return load_only(key, klen, buf, cap, vlen, load, arg);

		/* Another caller loads: wait for it, within limits. */
		uint64_t start = clock_mono_ms();
		while ((rc = eng_flight_wait(&c->e, &f, LOAD_SLICE_MS)) ==
			       -ETIMEDOUT &&
		       clock_mono_ms() - start < SHMC_LOAD_WAIT_MS)
			; /* -EOWNERDEAD ends the wait at once */
		if ((rc == -ETIMEDOUT || rc == -EOWNERDEAD) &&
		    eng_flight_takeover(&c->e, &f) == 0 &&
		    eng_lease_begin(&c->e, key, klen, &f.lease) == 0)
			return load_and_store(c, &f, key, klen, buf, cap, vlen,
					      grace_s, load, arg);
		/* The load ended (or changed hands): look again. */
	}
}

SHMC_EXPORT int shmc_get_or_load(shmc *c, const void *key, size_t klen,
				 void *buf, size_t cap, size_t *vlen,
				 shmc_loader load, void *arg)
{
	return get_or_load(c, key, klen, buf, cap, vlen, 0, load, arg);
}

SHMC_EXPORT int shmc_get_or_load_swr(shmc *c, const void *key, size_t klen,
				     void *buf, size_t cap, size_t *vlen,
				     uint32_t grace_s, shmc_loader load,
				     void *arg)
{
	return get_or_load(c, key, klen, buf, cap, vlen, grace_s, load, arg);
}

/* ------------------------------------------------------------------------
 * Fill leases
 * ------------------------------------------------------------------------ */

static_assert(sizeof(struct shmc_lease) == sizeof(struct eng_lease),
	      "shmc_lease holds an eng_lease");

SHMC_EXPORT int shmc_lease_begin(shmc *c, const void *key, size_t klen,
				 struct shmc_lease *l)
{
	struct eng_lease el;
	int rc = usable_with(c, l != NULL);

	if (rc || (rc = eng_lease_begin(&c->e, key, klen, &el)))
		return rc;
	memcpy(l, &el, sizeof(el));
	return 0;
}

SHMC_EXPORT int shmc_get_lease(shmc *c, const void *key, size_t klen, void *buf,
			       size_t cap, struct shmc_item *it,
			       struct shmc_lease *l)
{
	int rc = shmc_get_item(c, key, klen, buf, cap, it);

	if (rc == -ENOENT && (rc = shmc_lease_begin(c, key, klen, l)) == 0)
		rc = -ENOENT;
	return rc;
}

SHMC_EXPORT int shmc_fill(shmc *c, const struct shmc_lease *l, const void *key,
			  size_t klen, const void *val, size_t vlen,
			  const struct shmc_store_opts *o, uint64_t *cas)
{
	struct eng_lease el;
	int rc = usable_with(c, l != NULL);

	if (rc)
		return rc;
	memcpy(&el, l, sizeof(el));
	struct eng_wopts w = { .mode = ENG_ADD, .lease = &el };
	if (o) {
		w.flags = o->flags;
		w.ttl_s = o->ttl_s;
	}
	return eng_store(&c->e, key, klen, val, vlen, &w, cas);
}

/* ------------------------------------------------------------------------
 * Zero-copy
 * ------------------------------------------------------------------------ */

SHMC_EXPORT int shmc_read(shmc *c, const void *key, size_t klen, shmc_reader fn,
			  void *arg)
{
	int rc = usable(c);

	return rc ? rc : eng_read(&c->e, key, klen, fn, arg);
}

SHMC_EXPORT int shmc_reserve(shmc *c, const void *key, size_t klen, size_t vlen,
			     uint32_t ttl_s, struct shmc_reservation *r)
{
	struct eng_resv er;
	int rc = usable_with(c, r != NULL);

	if (rc)
		return rc;
	if ((rc = eng_reserve(&c->e, key, klen, vlen, ttl_s, &er)))
		return rc;
	r->p1 = er.p[0];
	r->p2 = er.p[1];
	r->n1 = er.n[0];
	r->n2 = er.n[1];
	memset(r->priv_, 0, sizeof(r->priv_));
	r->priv_[0] = (void *)(uintptr_t)er.seg;
	r->priv_[1] = (void *)(uintptr_t)er.off;
	return 0;
}

static struct eng_resv resv_of(const struct shmc_reservation *r)
{
	struct eng_resv er = {
		.p = { r->p1, r->p2 },
		.n = { r->n1, r->n2 },
		.seg = (uint32_t)(uintptr_t)r->priv_[0],
		.off = (uint32_t)(uintptr_t)r->priv_[1],
	};
	return er;
}

SHMC_EXPORT int shmc_commit(shmc *c, struct shmc_reservation *r)
{
	if (!c || !r)
		return -EINVAL;
	struct eng_resv er = resv_of(r);
	return eng_commit(&c->e, &er);
}

SHMC_EXPORT void shmc_abort(shmc *c, struct shmc_reservation *r)
{
	if (!c || !r)
		return;
	struct eng_resv er = resv_of(r);
	eng_abort(&c->e, &er);
}

/* ------------------------------------------------------------------------
 * Statistics and limits
 * ------------------------------------------------------------------------ */

static void stats_out(const struct eng_stats *s, struct shmc_stats *out)
{
	*out = (struct shmc_stats){
		.hits = s->hits,
		.misses = s->misses,
		.sets = s->sets,
		.overwrites = s->overwrites,
		.deletes = s->deletes,
		.evictions = s->evictions,
		.moves = s->moves,
		.expirations = s->expirations,
		.repairs = s->repairs,
		.entries = s->entries,
		.bytes_used = s->bytes_used,
		.bytes_total = s->bytes_total,
		.segments = s->segments,
	};
}

SHMC_EXPORT int shmc_stat(shmc *c, struct shmc_stats *out)
{
	struct eng_stats s;
	int rc = usable_with(c, out != NULL);

	if (rc)
		return rc;
	eng_stats(&c->e, &s);
	stats_out(&s, out);
	return 0;
}

SHMC_EXPORT int shmc_seg_stat(shmc *c, uint32_t seg, struct shmc_stats *out)
{
	struct eng_stats s;
	int rc = usable_with(c, out != NULL);

	if (rc)
		return rc;
	if ((rc = eng_seg_stats(&c->e, seg, &s)))
		return rc;
	stats_out(&s, out);
	return 0;
}

SHMC_EXPORT uint32_t shmc_segments(const shmc *c)
{
	return c ? c->e.g.nseg : 0;
}

SHMC_EXPORT size_t shmc_max_item(const shmc *c)
{
	return c ? c->e.g.max_kv : 0;
}

SHMC_EXPORT uint32_t shmc_client_id(const shmc *c)
{
	return c ? c->e.client_id : 0;
}

/* ------------------------------------------------------------------------
 * Listing keys
 * ------------------------------------------------------------------------ */

/* shmc_scan()'s adapter from the engine's items to the caller's fn. */
struct scan_ctx {
	const struct eng *e;
	shmc_scan_fn fn;
	void *arg;
	int stopped; /* fn's non-zero return */
};

static int scan_item(const struct eng_item *it, void *arg)
{
	struct scan_ctx *x = arg;
	uint32_t now = eng_now(x->e);
	struct shmc_key_info k = {
		.key = it->key[0],
		.klen = it->klen,
		.vlen = it->vlen,
		.flags = it->flags,
		.expire_at = it->expire,
		.cas = it->cas,
	};

	if (it->expire && it->expire <= now)
		return 0; /* expired since it was copied */
	k.ttl_s = it->expire ? it->expire - now : 0;
	if ((x->stopped = x->fn(&k, x->arg)))
		return -ECANCELED;
	return 0;
}

SHMC_EXPORT int shmc_scan(shmc *c, uint64_t *cursor, const void *prefix,
			  size_t plen, shmc_scan_fn fn, void *arg)
{
	int rc = usable_with(c, cursor && fn && (prefix || !plen));

	if (rc)
		return rc;
	if (*cursor >= c->e.g.nseg)
		return -EINVAL;
	struct eng_cursor cur = { .seg = (uint32_t)*cursor };
	struct scan_ctx x = { .e = &c->e, .fn = fn, .arg = arg };
	rc = eng_scan(&c->e, &cur, prefix, plen, scan_item, &x);
	if (x.stopped)
		return x.stopped;
	if (rc < 0)
		return rc;
	*cursor = rc == 1 ? 0 : cur.seg;
	return 0;
}

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */

SHMC_EXPORT const char *shmc_errmsg(void)
{
	return errmsg;
}

SHMC_EXPORT const char *shmc_version(int *major, int *minor, int *patch)
{
	if (major)
		*major = SHMC_VERSION_MAJOR;
	if (minor)
		*minor = SHMC_VERSION_MINOR;
	if (patch)
		*patch = SHMC_VERSION_PATCH;
	return SHMC_VERSION;
}

SHMC_EXPORT const char *shmc_strerror(int err)
{
	if (err != 0 && err == reach.err)
		return reach.msg; /* names the socket, and the peer */
	switch (err) {
	case 0:
		return "success";
	case SHMC_ENODAEMON:
		return "no daemon socket at that path: " SOCK_HOW_TO_START;
	case SHMC_EUNTRUSTED:
		return "the daemon's socket is served by an untrusted user "
		       "(not root, this user, nor a uid of $SHMC_TRUST_UID)";
	case -ENOENT:
		return "not found (missing or expired key, or missing file)";
	case -ENOBUFS:
		return "buffer too small for the value";
	case -EEXIST:
		return "already exists, or changed since it was read (a cas "
		       "whose version differs)";
	case -EDOM:
		return "not a number (incr/decr of a value that is not a "
		       "decimal number below 2^64)";
	case -ESTALE:
		return "not stored: the key's prefix is blocked while the "
		       "daemon's near cache has lost Redis' tracking, or its "
		       "fill lease is void (the key changed since the miss)";
	case -E2BIG:
		return "key or value too large";
	case -EINVAL:
		return "invalid argument";
	case -ETIMEDOUT:
		return "timed out waiting for a lock held by another process";
	case -EUCLEAN:
		return "damaged shared memory found (a segment reset, an entry "
		       "dropped, or a region header the daemon must repair)";
	case -ECHILD:
		return "handle opened by the parent process: call shmc_open() "
		       "after fork()";
	case -ECONNREFUSED:
		return "no daemon listening on the socket (a stopped daemon's "
		       "socket file): start shmcached";
	case -EACCES:
		return "permission denied (connecting: not in the daemon's "
		       "--allow-user / --allow-group lists)";
	case -EPROTO:
		return "incompatible daemon or region version";
	case -EPIPE:
		return "the daemon went away";
	case -EIO:
		return "unexpected answer from the daemon";
	case -ENOTSUP:
		return "not supported by this daemon";
	case -EPERM:
		return "operation not permitted";
	}
	return err < 0 && err > -4096 ? strerror(-err) : "unknown error";
}
