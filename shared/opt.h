/*
 * opt.h - command-line helpers shared by shmcached and the tools: one
 * parser of unsigned integers and of sizes (one meaning of K, M, G and T),
 * range checks whose messages name the option and the accepted range, the
 * quoting of a user's value in a message, and the one layout of an option
 * table in --help.
 *
 * What it is not: it walks no argv (the daemon and the tools keep their own
 * getopt_long or hand-written loops) and prints no error itself; the caller
 * prefixes the explanation with its program name and decides the exit
 * status.  It is not part of libshmc: it is built as its own static library
 * (shmc_opt, `opt_dep` in shared/meson.build) that only the daemon, the
 * tools and the tests link, so libshmc.so neither carries nor exports it.
 *
 * Every function is thread-safe (no globals) and never calls exit().
 */
#ifndef SHMC_OPT_H
#define SHMC_OPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ------------------------------------------------------------------------
 * Values
 * ------------------------------------------------------------------------ */

/* Parses an unsigned decimal integer: one or more digits and nothing else
 * (no blanks, sign, base prefix, fraction or suffix).  Returns 0 and sets
 * *out, or
 *   -EINVAL  s or out NULL, s empty or not of that form;
 *   -ERANGE  the value does not fit in 64 bits.
 * On error *out is unchanged. */
int opt_parse_uint(const char *s, uint64_t *out);

/* Parses a size: decimal digits, then optionally K, M, G or T (either
 * case, binary multiples: 1K = 1024, 1T = 2^40), then optionally "B", or
 * "iB" after a multiple: "65536", "64k", "64M", "64MiB", "2GB", "512B".
 * Returns 0 and sets *out, or
 *   -EINVAL  s or out NULL, empty, or not of that form;
 *   -ERANGE  the value does not fit in 64 bits.
 * On error *out is unchanged. */
int opt_parse_size(const char *s, uint64_t *out);

/* Writes v as opt_parse_size() reads it, with the largest multiple that
 * divides it: 1048576 -> "1M", 1536 -> "1536", 0 -> "0".  Returns buf. */
const char *opt_size_str(uint64_t v, char *buf, size_t cap);

#define OPT_WHY_MAX 256 /* room for any explanation of opt_uint/opt_size */

/* Checked values, for an option `what` ("--keys", or NULL when the caller
 * names the option itself).  Each returns 0 and sets *out, or -EINVAL
 * (not a number or size) or -ERANGE (outside [min, max]) with *out
 * unchanged and one line of explanation, without a newline, in why (cap
 * bytes, cut if need be):
 *   "[what: ]invalid number 'x' (MIN to MAX)"
 *   "[what: ]'x' is out of range (MIN to MAX)"
 *   "[what: ]invalid size 'x' (use e.g. 64M, 2G)"
 *   "[what: ]size 'x' is out of range (1M to 1T)"
 * The limits of a size are written by opt_size_str(), and the value as
 * opt_quote() quotes it. */
int opt_uint(const char *what, const char *val, uint64_t min, uint64_t max,
	     uint64_t *out, char *why, size_t cap);
int opt_size(const char *what, const char *val, uint64_t min, uint64_t max,
	     uint64_t *out, char *why, size_t cap);

/* ------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------ */

#define OPT_QUOTE_MAX 64 /* bytes of a value shown in a message */

/* Room for OPT_QUOTE_MAX bytes each escaped as \xNN, the quotes, "..."
 * and the NUL. */
struct opt_qbuf {
	char s[OPT_QUOTE_MAX * 4 + 8];
};

/* s cut to OPT_QUOTE_MAX bytes ("..." marks the cut) with control bytes
 * escaped as \xNN, so a message quoting it stays on one line; in single
 * quotes when `quotes`.  Returns b->s. */
const char *opt_quote_as(struct opt_qbuf *b, const char *s, bool quotes);

/* opt_quote_as(b, s, true). */
const char *opt_quote(struct opt_qbuf *b, const char *s);

/* ------------------------------------------------------------------------
 * Usage
 * ------------------------------------------------------------------------ */

/* One option as --help shows it. */
struct opt_spec {
	const char *name; /* long name, without "--" */
	int shortc;	  /* short option letter, or 0 */
	const char *meta; /* metavar ("SIZE"), NULL for a flag */
	const char *help; /* may hold '\n'; NULL: left out of --help */
};

#define OPT_HELP_COL 28 /* the column where every help text starts */

/* How opt_usage() writes the metavar after the name. */
enum opt_usage_flags {
	OPT_USAGE_META_EQ = 0,	  /* "--memory=SIZE" */
	OPT_USAGE_META_SPACE = 1, /* "--procs P" */
};

/* Prints the options of specs[0..n) whose bit is set in mask (bit i for
 * specs[i]; n at most 64) and whose help is not NULL, one per entry in
 * table order:
 *     "  -h, --help              help"     (an option with a short form)
 *     "      --memory=SIZE       help"     (one without, in a table that
 *                                           has short forms)
 *     "  --procs P               help"     (in a table that has none)
 * The help starts at column OPT_HELP_COL, on the next line when the left
 * part reaches it; its continuation lines are indented to that column. */
void opt_usage(FILE *out, const struct opt_spec *specs, size_t n, uint64_t mask,
	       unsigned flags);

#define OPT_ALL (~UINT64_C(0)) /* mask: every option */

#endif
