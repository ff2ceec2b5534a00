/*
 * opt.c - numbers, sizes, quoting and --help layout for the command lines
 * of shmcached and the tools (opt.h).  Why a static library of its own and
 * not part of shmc_shared: libshmc links shmc_shared, and a client library
 * has no command line; keeping these helpers out of it keeps them out of
 * libshmc.so.
 */
#include "opt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Values
 * ------------------------------------------------------------------------ */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* The digits at *p into *v, moving *p past them; false on overflow (the
 * digits are consumed all the same). */
static bool digits(const char **p, uint64_t *v)
{
	bool fits = true;

	*v = 0;
	for (; is_digit(**p); (*p)++) {
		unsigned d = (unsigned)(**p - '0');

		if (*v > (UINT64_MAX - d) / 10)
			fits = false;
		else
			*v = *v * 10 + d;
	}
	return fits;
}

int opt_parse_uint(const char *s, uint64_t *out)
{
	uint64_t v;
	bool fits;

	if (!s || !out || !is_digit(*s))
		return -EINVAL;
	fits = digits(&s, &v);
	if (*s)
		return -EINVAL;
	if (!fits)
		return -ERANGE;
	*out = v;
	return 0;
}

/* The one definition of the multiples: binary, either case. */
static unsigned suffix_shift(char c)
{
	switch (c) {
	case 'k':
	case 'K':
		return 10;
	case 'm':
	case 'M':
		return 20;
	case 'g':
	case 'G':
		return 30;
	case 't':
	case 'T':
		return 40;
	default:
		return 0;
	}
}

int opt_parse_size(const char *s, uint64_t *out)
{
	const char *p = s;
	unsigned shift;
	uint64_t v;
	bool fits;

	if (!s || !out || !is_digit(*p))
		return -EINVAL;
	fits = digits(&p, &v);
	shift = suffix_shift(*p);
	if (shift)
		p++;
	if (shift && (*p == 'i' || *p == 'I')) {
		p++; /* "iB" only after a multiple, and only with its B */
		if (*p != 'b' && *p != 'B')
			return -EINVAL;
		p++;
	} else if (*p == 'b' || *p == 'B') {
		p++;
	}
	if (*p)
		return -EINVAL;
	if (!fits || (shift && v > UINT64_MAX >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

const char *opt_size_str(uint64_t v, char *buf, size_t cap)
{
	static const char units[] = "TGMK";
	unsigned shift = 40;

	for (const char *u = units; *u; u++, shift -= 10) {
		if (v && !(v & ((UINT64_C(1) << shift) - 1))) {
			snprintf(buf, cap, "%" PRIu64 "%c", v >> shift, *u);
			return buf;
		}
	}
	snprintf(buf, cap, "%" PRIu64, v);
	return buf;
}

/* Writes "[what: ]" then the message into why; returns rc. */
__attribute__((format(printf, 5, 6))) static int
explain(int rc, const char *what, char *why, size_t cap, const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	if (!why || !cap)
		return rc;
	if (what)
		n = snprintf(why, cap, "%s: ", what);
	if (n < 0 || (size_t)n >= cap)
		return rc;
	va_start(ap, fmt);
	vsnprintf(why + n, cap - (size_t)n, fmt, ap);
	va_end(ap);
	return rc;
}

int opt_uint(const char *what, const char *val, uint64_t min, uint64_t max,
	     uint64_t *out, char *why, size_t cap)
{
	struct opt_qbuf q;
	uint64_t v;
	int rc = opt_parse_uint(val, &v);

	if (rc == -EINVAL)
		return explain(-EINVAL, what, why, cap,
			       "invalid number %s (%" PRIu64 " to %" PRIu64 ")",
			       opt_quote(&q, val ? val : ""), min, max);
	if (rc || v < min || v > max)
		return explain(-ERANGE, what, why, cap,
			       "%s is out of range (%" PRIu64 " to %" PRIu64
			       ")",
			       opt_quote(&q, val), min, max);
	*out = v;
	return 0;
}

int opt_size(const char *what, const char *val, uint64_t min, uint64_t max,
	     uint64_t *out, char *why, size_t cap)
{
	struct opt_qbuf q;
	char lo[32], hi[32];
	uint64_t v;
	int rc = opt_parse_size(val, &v);

	if (rc == -EINVAL)
		return explain(-EINVAL, what, why, cap,
			       "invalid size %s (use e.g. 64M, 2G)",
			       opt_quote(&q, val ? val : ""));
	if (rc || v < min || v > max)
		return explain(-ERANGE, what, why, cap,
			       "size %s is out of range (%s to %s)",
			       opt_quote(&q, val),
			       opt_size_str(min, lo, sizeof(lo)),
			       opt_size_str(max, hi, sizeof(hi)));
	*out = v;
	return 0;
}

/* ------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------ */

const char *opt_quote_as(struct opt_qbuf *b, const char *s, bool quotes)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0, i;

	if (quotes)
		b->s[n++] = '\'';
	for (i = 0; s[i] && i < OPT_QUOTE_MAX; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch < 0x20 || ch == 0x7f) {
			b->s[n++] = '\\';
			b->s[n++] = 'x';
			b->s[n++] = hex[ch >> 4];
			b->s[n++] = hex[ch & 15];
		} else {
			b->s[n++] = (char)ch;
		}
	}
	if (s[i]) {
		memcpy(b->s + n, "...", 3);
		n += 3;
	}
	if (quotes)
		b->s[n++] = '\'';
	b->s[n] = '\0';
	return b->s;
}

const char *opt_quote(struct opt_qbuf *b, const char *s)
{
	return opt_quote_as(b, s, true);
}

/* ------------------------------------------------------------------------
 * Usage
 * ------------------------------------------------------------------------ */

void opt_usage(FILE *out, const struct opt_spec *specs, size_t n, uint64_t mask,
	       unsigned flags)
{
	bool shorts = false;

	for (size_t i = 0; i < n; i++)
		shorts |= specs[i].shortc != 0;
	for (size_t i = 0; i < n && i < 64; i++) {
		const struct opt_spec *d = &specs[i];
		char left[96];
		int len;

		if (!(mask & (UINT64_C(1) << i)) || !d->help)
			continue;
		if (d->shortc)
			len = snprintf(left, sizeof(left), "  -%c, --%s",
				       d->shortc, d->name);
		else
			len = snprintf(left, sizeof(left), "%s--%s",
				       shorts ? "      " : "  ", d->name);
		if (d->meta && len > 0 && (size_t)len < sizeof(left))
			len += snprintf(left + len, sizeof(left) - (size_t)len,
					"%c%s",
					flags & OPT_USAGE_META_SPACE ? ' '
								     : '=',
					d->meta);
		if (len < OPT_HELP_COL - 1)
			fprintf(out, "%-*s", OPT_HELP_COL, left);
		else
			fprintf(out, "%s\n%*s", left, OPT_HELP_COL, "");
		for (const char *h = d->help; *h; h++) {
			fputc(*h, out);
			if (*h == '\n')
				fprintf(out, "%*s", OPT_HELP_COL, "");
		}
		fputc('\n', out);
	}
}
