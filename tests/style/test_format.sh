#!/bin/bash
# test_format.sh SRCROOT
#
# Every C file of shared/ daemon/ libclient/ tools/ tests/ bindings/ is
# formatted as its nearest .clang-format says (the top-level one; PEP 7's
# bindings/python/.clang-format for the Python extension): `clang-format --dry-run
# -Werror` names each line that is not.  The files are git's tracked ones (a source tree
# that is not a git checkout: every .c and .h under those folders).  To fix
# what it reports:  clang-format -i FILE...  ($CLANG_FORMAT: another binary).
# Exits 77 (skipped) when clang-format is not installed.
set -u

if [ $# -ne 1 ]; then
	echo "usage: $0 SRCROOT" >&2
	exit 2
fi
src=$1
fmt=${CLANG_FORMAT:-clang-format}
if ! command -v "$fmt" >/dev/null; then
	echo "SKIP: $fmt not found" >&2
	exit 77
fi
cd "$src" || exit 1
dirs=(shared daemon libclient tools tests bindings)
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	mapfile -t files < <(git ls-files -- "${dirs[@]/%//*.c}" \
		"${dirs[@]/%//*.h}")
else
	mapfile -t files < <(find "${dirs[@]}" -name '*.[ch]' | sort)
fi
if [ ${#files[@]} -eq 0 ]; then
	echo "no C files found under $src" >&2
	exit 1
fi
if ! "$fmt" --style=file --dry-run -Werror "${files[@]}"; then
	echo "FAIL: not formatted as .clang-format says (above); fix with:" >&2
	echo "  $fmt -i FILE..." >&2
	exit 1
fi
echo "${#files[@]} files formatted as .clang-format says"
