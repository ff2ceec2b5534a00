#!/bin/bash
# test_exports.sh LIBPATH HEADERPATH [INCLUDEDIR]
#
# libshmc.so must export exactly the functions shmc.h declares: nothing of
# the engine or of its helpers leaks out, and nothing declared is missing;
# and it must not carry the daemon's snapshot codec at all.
# The header is read without its comments (cc -E) so that a name mentioned
# only in prose does not count as a declaration.
set -u

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	echo "usage: $0 LIBPATH HEADERPATH [INCLUDEDIR]" >&2
	exit 2
fi
lib=$1
hdr=$2
inc=${3:-} # where the generated headers shmc.h includes are
for tool in nm cc; do
	if ! command -v "$tool" >/dev/null; then
		echo "SKIP: $tool not found" >&2
		exit 77
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmc-exports-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# Every defined dynamic symbol, version suffix dropped; the version node
# itself (an absolute symbol named like the version, e.g. SHMC_0) is not
# an export.
if ! nm -D --defined-only "$lib" >"$tmp/nm.out"; then
	echo "FAIL: nm -D $lib" >&2
	exit 1
fi
awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' "$tmp/nm.out" |
	sort -u >"$tmp/exported"
# Exported names that are not functions (type T) are wrong whatever
# their name.
awk '$2 != "A" && $2 != "T" { sub(/@.*/, "", $3); print $3 " (" $2 ")" }' \
	"$tmp/nm.out" | sort -u >"$tmp/not-functions"

# Functions of the header: shmc_name( in the preprocessed text, which
# leaves out types such as "(*shmc_loader)(" and struct names.
if ! cc -E -P -x c ${inc:+-I"$inc"} "$hdr" >"$tmp/hdr.i"; then
	echo "FAIL: cannot preprocess $hdr" >&2
	exit 1
fi
grep -oE '\bshmc_[A-Za-z0-9_]+[[:space:]]*\(' "$tmp/hdr.i" |
	sed -E 's/[[:space:]]*\($//' | sort -u >"$tmp/declared"

rc=0
if [ ! -s "$tmp/declared" ]; then
	echo "FAIL: no shmc_ function found in $hdr" >&2
	exit 1
fi
comm -23 "$tmp/exported" "$tmp/declared" >"$tmp/extra"
comm -13 "$tmp/exported" "$tmp/declared" >"$tmp/missing"
if [ -s "$tmp/extra" ]; then
	echo "FAIL: exported by $lib but not declared in $hdr:" >&2
	sed 's/^/  /' "$tmp/extra" >&2
	rc=1
fi
if [ -s "$tmp/missing" ]; then
	echo "FAIL: declared in $hdr but not exported by $lib:" >&2
	sed 's/^/  /' "$tmp/missing" >&2
	rc=1
fi
if [ -s "$tmp/not-functions" ]; then
	echo "FAIL: exported symbols that are not functions:" >&2
	sed 's/^/  /' "$tmp/not-functions" >&2
	rc=1
fi
# Code the library never calls is not linked into it, exported or not:
# the snapshot format (daemon/snapshot.c) belongs to the daemon alone.
# The whole symbol table is read (not only -D); a stripped library has
# none, and then there is nothing to check.
if nm "$lib" >"$tmp/nm.all" 2>"$tmp/nm.err"; then
	grep -E ' snap_[A-Za-z0-9_]*$' "$tmp/nm.all" >"$tmp/snap"
	if [ -s "$tmp/snap" ]; then
		echo "FAIL: $lib links the snapshot codec:" >&2
		sed 's/^/  /' "$tmp/snap" >&2
		rc=1
	fi
elif ! grep -q 'no symbols' "$tmp/nm.err"; then
	echo "FAIL: nm $lib" >&2
	cat "$tmp/nm.err" >&2
	rc=1
fi
if [ $rc -eq 0 ]; then
	echo "ok: $(wc -l <"$tmp/declared") functions, exported exactly; no snap_ code"
fi
exit $rc
