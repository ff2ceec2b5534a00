/*
 * mc_fixture.h - the memcached protocol's unit tests (test_mc_*.c): a
 * region, one worker and sessions on it, and mc_run(), which feeds request
 * bytes through mc_process() and returns the reply bytes as a string.
 *
 * Static inline, like testutil.h, which it needs first.
 */
#ifndef SHMC_MC_FIXTURE_H
#define SHMC_MC_FIXTURE_H

#include "config.h"
#include "mc.h"

/* A region with a protocol worker on it; kept in the cmocka state. */
struct mc_fx {
	struct tu_region r;
	struct config cfg;
	struct mc_shared sh;
	struct mc_worker w;
	struct mc_worker *workers[1];
	struct mc_session s; /* the default connection */
	struct mc_out out;   /* its replies */
	uint8_t *pending;    /* its input not yet consumed */
	size_t npending;
	char *reply; /* the last mc_run()'s replies */
};

/* The region is size bytes (0: 8 MiB), formatted with the defaults. */
static inline void mc_fx_open(struct mc_fx *f, size_t size)
{
	tu_region_open(&f->r, size ? size : 8u << 20, NULL);
	config_defaults(&f->cfg);
	f->sh.eng = &f->r.e;
	f->sh.cfg = &f->cfg;
	f->sh.started = eng_now(&f->r.e);
	f->sh.nworkers = 1;
	f->workers[0] = &f->w;
	f->sh.workers = f->workers;
	assert_rc(mc_worker_init(&f->w, &f->sh, 0, 1000), 0);
	mc_session_init(&f->w, &f->s);
	f->out.high = SIZE_MAX;
}

static inline int mc_fx_setup(void **state)
{
	struct mc_fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	mc_fx_open(f, 0);
	*state = f;
	return 0;
}

static inline int mc_fx_teardown(void **state)
{
	struct mc_fx *f = *state;

	if (!f)
		return 0;
	mc_session_end(&f->w, &f->s);
	mc_worker_fini(&f->w);
	tu_region_close(&f->r);
	free(f->out.p);
	free(f->pending);
	free(f->reply);
	free(f);
	return 0;
}

/* Feeds n bytes to the default session (after what earlier calls left
 * unconsumed) and returns every reply they produced, NUL-terminated (a
 * reply with a NUL in its data is still all there: f->out.len says how
 * long it was).  Input that stays unconsumed (a request not yet
 * complete) is kept for the next call. */
static inline const char *mc_feed(struct mc_fx *f, const void *req, size_t n)
{
	uint8_t *p = realloc(f->pending, f->npending + n + 1);

	assert_non_null(p);
	f->pending = p;
	memcpy(p + f->npending, req, n);
	f->npending += n;
	f->out.len = 0;
	size_t used = mc_process(&f->w, &f->s, f->pending, f->npending,
				 &f->out);
	assert_true(used <= f->npending);
	memmove(f->pending, f->pending + used, f->npending - used);
	f->npending -= used;
	assert_false(f->out.oom);
	free(f->reply);
	f->reply = malloc(f->out.len + 1);
	assert_non_null(f->reply);
	memcpy(f->reply, f->out.p ? f->out.p : (uint8_t *)"", f->out.len);
	f->reply[f->out.len] = '\0';
	return f->reply;
}

static inline const char *mc_run(struct mc_fx *f, const char *req)
{
	return mc_feed(f, req, strlen(req));
}

/* Asserts the replies to req. */
#define assert_mc(f, req, want) assert_string_equal(mc_run((f), (req)), (want))

#endif
