/*
 * mc_stats.c - the text protocol's `stats` command: memcached's general
 * block (its field names, the protocol counters summed over every worker,
 * the region's figures where memcached has a name for them, then
 * shmcached's own, prefixed shmc_), `stats settings`, `stats reset`, and
 * the answers memcached gives for its slab, item and size tables, which a
 * segmented ring cache does not have (docs/MEMCACHED.md says which).
 */
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "mc_int.h"
#include "shmc_version.h"

/* ------------------------------------------------------------------------
 * Output
 * ------------------------------------------------------------------------ */

static void stat_u64(struct mc_out *out, const char *name, uint64_t v)
{
	mc_out_str(out, "STAT ");
	mc_out_str(out, name);
	mc_out_put(out, " ", 1);
	mc_out_u64(out, v);
	mc_out_crlf(out);
}

static void stat_str(struct mc_out *out, const char *name, const char *v)
{
	mc_out_str(out, "STAT ");
	mc_out_str(out, name);
	mc_out_put(out, " ", 1);
	mc_out_str(out, v);
	mc_out_crlf(out);
}

/* "STAT <name> <seconds>.<microseconds>" as memcached prints rusage. */
static void stat_time(struct mc_out *out, const char *name,
		      const struct timeval *tv)
{
	char us[7];
	long u = (long)tv->tv_usec;

	for (int i = 5; i >= 0; i--, u /= 10)
		us[i] = (char)('0' + u % 10);
	us[6] = '\0';
	mc_out_str(out, "STAT ");
	mc_out_str(out, name);
	mc_out_put(out, " ", 1);
	mc_out_u64(out, (uint64_t)tv->tv_sec);
	mc_out_put(out, ".", 1);
	mc_out_str(out, us);
	mc_out_crlf(out);
}

/* ------------------------------------------------------------------------
 * The counters of every worker
 * ------------------------------------------------------------------------ */

/* Each worker's counters, summed (relaxed loads: a sum may mix
 * instants). */
static void raw_sum(const struct mc_shared *sh, struct mc_stats *sum)
{
	memset(sum, 0, sizeof(*sum));
	for (uint32_t i = 0; i < sh->nworkers; i++) {
		const struct mc_stats *st = &sh->workers[i]->st;
#define SUM_X(name, desc)                                                      \
	sum->name += __atomic_load_n(&st->name, __ATOMIC_RELAXED);
		MC_COUNTERS(SUM_X)
#undef SUM_X
	}
}

/* The sums less the baseline of the last `stats reset`. */
static void sum_counters(const struct mc_shared *sh, struct mc_stats *sum)
{
	raw_sum(sh, sum);
#define BASE_X(name, desc)                                                     \
	{                                                                      \
		uint64_t b = __atomic_load_n(&sh->reset.name,                  \
					     __ATOMIC_RELAXED);                \
		sum->name = sum->name > b ? sum->name - b : 0;                 \
	}
	MC_COUNTERS(BASE_X)
#undef BASE_X
}

/* stats reset: a worker writes only its own counters, so the reset is a
 * baseline the sums are taken from.  curr_connections is a gauge, not
 * reset. */
static void reset_counters(struct mc_shared *sh)
{
	struct mc_stats sum;

	raw_sum(sh, &sum);
	sum.curr_connections = 0;
#define STORE_X(name, desc)                                                    \
	__atomic_store_n(&sh->reset.name, sum.name, __ATOMIC_RELAXED);
	MC_COUNTERS(STORE_X)
#undef STORE_X
}

/* ------------------------------------------------------------------------
 * The blocks
 * ------------------------------------------------------------------------ */

static void stats_general(struct mc_ctx *x)
{
	struct mc_out *out = x->out;
	const struct mc_shared *sh = x->w->sh;
	const struct eng *e = &x->w->eng;
	struct mc_stats c;
	struct eng_stats es;
	struct rusage ru;

	sum_counters(sh, &c);
	eng_stats(e, &es);
	memset(&ru, 0, sizeof(ru));
	getrusage(RUSAGE_SELF, &ru);

	stat_u64(out, "pid", (uint64_t)getpid());
	stat_u64(out, "uptime",
		 x->now > sh->started ? x->now - sh->started : 0);
	stat_u64(out, "time", x->now);
	stat_str(out, "version", SHMC_VERSION);
	stat_u64(out, "pointer_size", 8 * sizeof(void *));
	stat_time(out, "rusage_user", &ru.ru_utime);
	stat_time(out, "rusage_system", &ru.ru_stime);
	stat_u64(out, "curr_connections", c.curr_connections);
	stat_u64(out, "total_connections", c.total_connections);
	stat_u64(out, "rejected_connections", c.rejected_connections);
	stat_u64(out, "connection_structures", c.curr_connections);
#define GENERAL_X(name, desc)                                                  \
	if (strcmp(#name, "curr_connections") &&                               \
	    strcmp(#name, "total_connections") &&                              \
	    strcmp(#name, "rejected_connections"))                             \
		stat_u64(out, #name, c.name);
	MC_COUNTERS(GENERAL_X)
#undef GENERAL_X
	stat_u64(out, "limit_maxbytes", e->g.region_size);
	stat_u64(out, "threads", sh->nworkers);
	stat_u64(out, "bytes", es.bytes_used);
	stat_u64(out, "curr_items", es.entries);
	stat_u64(out, "total_items", es.sets);
	stat_u64(out, "evictions", es.evictions);
	stat_u64(out, "reclaimed", es.expirations);
	stat_u64(out, "expired_unfetched", 0);
	stat_u64(out, "evicted_unfetched", 0);

	/* shmcached's own: the region and the engine's counters, which
	 * count every process's operations, not only this protocol's. */
	stat_u64(out, "shmc_region_size", e->g.region_size);
	stat_u64(out, "shmc_segments", e->g.nseg);
	stat_u64(out, "shmc_ring_bytes", es.bytes_total);
	stat_u64(out, "shmc_item_size_max", e->g.max_kv);
	const uint64_t v[SEG_NCOUNTERS] = {
#define VAL_X(n, desc) es.n,
		SEG_COUNTERS(VAL_X)
#undef VAL_X
	};
	for (size_t i = 0; i < SEG_NCOUNTERS; i++) {
		char name[64] = "shmc_";
		strncat(name, eng_counter_names[i], sizeof(name) - 6);
		stat_u64(out, name, v[i]);
	}
}

static void stats_settings(struct mc_ctx *x)
{
	struct mc_out *out = x->out;
	const struct mc_shared *sh = x->w->sh;
	const struct eng *e = &x->w->eng;

	stat_u64(out, "maxbytes", e->g.region_size);
	stat_u64(out, "verbosity",
		 __atomic_load_n(&sh->verbosity, __ATOMIC_RELAXED));
	stat_u64(out, "oldest",
		 __atomic_load_n(&sh->flush_at, __ATOMIC_RELAXED));
	stat_str(out, "evictions", "on");
	stat_u64(out, "num_threads", sh->nworkers);
	stat_str(out, "cas_enabled", "yes");
	stat_str(out, "binding_protocol", "ascii");
	stat_u64(out, "item_size_max", e->g.max_kv);
	stat_str(out, "flush_enabled", "yes");
	stat_str(out, "dump_enabled", "no");
	stat_str(out, "hash_algorithm", "xxh3");
	if (sh->cfg) {
		stat_str(out, "shmc_name", sh->cfg->name);
		stat_u64(out, "shmc_lock_timeout_ms", sh->cfg->lock_timeout_ms);
		stat_str(out, "shmc_checksum",
			 sh->cfg->checksum ? "yes" : "no");
	}
	stat_u64(out, "shmc_segments", e->g.nseg);
}

/* stats [settings|reset|slabs|items|sizes|conns|detail|cachedump] */
enum mc_result mc_cmd_stats(struct mc_ctx *x)
{
	struct mc_req *r = &x->req;
	struct mc_out *out = x->out;

	if (r->ntok == 1) {
		stats_general(x);
	} else {
		const struct mc_tok *sub = &r->tok[1];
		if (mc_tok_is(sub, "settings")) {
			stats_settings(x);
		} else if (mc_tok_is(sub, "reset")) {
			reset_counters(x->w->sh);
			mc_out_str(out, "RESET\r\n");
			return MC_DONE;
		} else if (mc_tok_is(sub, "slabs")) {
			/* memcached's answer with no slab page assigned. */
			stat_u64(out, "active_slabs", 0);
			stat_u64(out, "total_malloced", 0);
		} else if (mc_tok_is(sub, "sizes")) {
			stat_str(out, "sizes_status", "disabled");
		} else if (mc_tok_is(sub, "items") || mc_tok_is(sub, "conns")) {
			/* No slab classes; connections are not listed. */
		} else if (mc_tok_is(sub, "detail")) {
			mc_reply_client_error(x, "stats detail not allowed");
			return MC_DONE;
		} else if (mc_tok_is(sub, "cachedump")) {
			mc_reply_client_error(x, "stats cachedump not allowed");
			return MC_DONE;
		} else {
			mc_reply_error(x);
			return MC_DONE;
		}
	}
	mc_out_str(out, "END\r\n");
	return MC_DONE;
}
