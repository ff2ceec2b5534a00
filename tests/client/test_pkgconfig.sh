#!/bin/bash
# test_pkgconfig.sh BUILDDIR SOURCEDIR DAEMON
#
# What a user does: install libshmc (here into a temporary destdir), build
# libclient/examples/hello.c with nothing but `pkg-config --cflags --libs
# shmc`, and run it against a daemon.  Exit 0 (pass), 1 (fail) or 77
# (cannot run here: no permission to install, no compiler, no pkg-config).
#
# The .pc file names the prefix it was configured for (/usr/local ...);
# the installed tree lives under the destdir, so the prefix variable is
# redefined to DESTDIR/PREFIX.  (--define-prefix would guess the prefix
# from the .pc location, which is wrong for a multiarch libdir such as
# lib/x86_64-linux-gnu.)
set -u

if [ $# -ne 3 ]; then
	echo "usage: $0 BUILDDIR SOURCEDIR DAEMON" >&2
	exit 2
fi
builddir=$1
srcdir=$2
daemon=$3
for tool in cc pkg-config meson; do
	if ! command -v "$tool" >/dev/null; then
		echo "SKIP: $tool not found" >&2
		exit 77
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmc-pc-XXXXXX") || exit 1
name=/shmc-pc-$$-$RANDOM
daemon_pid=
# shellcheck disable=SC2317 # run by the trap
cleanup() {
	if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
		kill -TERM "$daemon_pid"
		wait "$daemon_pid" 2>/dev/null
	fi
	rm -f "/dev/shm$name"
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	exit 1
}
show() { # file: print it to stderr, indented
	[ -f "$1" ] && sed 's/^/  | /' "$1" >&2
}

# A stand-in for ldconfig that records its calls; with -p it lists
# libshmc.so.0 in $FAKE_LIBDIR, as the real cache would after ldconfig.
cat >"$tmp/ldconfig" <<EOF
#!/bin/sh
echo "ldconfig \$*" >>"$tmp/ldconfig.calls"
[ "\$1" = -p ] && echo "	libshmc.so.0 (libc6,x86-64) => \$FAKE_LIBDIR/libshmc.so.0"
exit 0
EOF
chmod +x "$tmp/ldconfig"
export SHMC_LDCONFIG=$tmp/ldconfig

# 1. Install.  --no-rebuild: `meson test` has built everything already,
# and a nested ninja would race with it.  Under a destdir ldconfig must
# not run (the running system's cache is not the staging tree's).
dest=$tmp/root
if ! meson install -C "$builddir" --destdir "$dest" --no-rebuild \
	--quiet >"$tmp/install.log" 2>&1; then
	if grep -qiE 'permission denied|operation not permitted|read-only' \
		"$tmp/install.log"; then
		echo "SKIP: meson install: no permission" >&2
		show "$tmp/install.log"
		exit 77
	fi
	show "$tmp/install.log"
	fail "meson install -C $builddir --destdir $dest"
fi

[ ! -e "$tmp/ldconfig.calls" ] || fail "meson install --destdir ran" \
	"ldconfig: $(cat "$tmp/ldconfig.calls")"

# Into the running system (here the install script alone, with the
# stand-in): as root it runs ldconfig, and says what to do when the libdir
# is not one the linker searches; as another user it says to run ldconfig.
script=$srcdir/libclient/install_ldconfig.sh
if [ "$(id -u)" -eq 0 ]; then
	FAKE_LIBDIR=/opt/x/lib sh "$script" /opt/x/lib >"$tmp/ldc.out" 2>&1
	grep -qx "ldconfig " "$tmp/ldconfig.calls" ||
		fail "install_ldconfig.sh did not run ldconfig"
	[ ! -s "$tmp/ldc.out" ] ||
		fail "a searched libdir got: $(cat "$tmp/ldc.out")"
	FAKE_LIBDIR=/usr/lib sh "$script" /opt/x/lib >"$tmp/ldc.out" 2>&1
	grep -q "LD_LIBRARY_PATH=/opt/x/lib" "$tmp/ldc.out" ||
		fail "no advice for a libdir the linker does not search"
else
	sh "$script" /opt/x/lib >"$tmp/ldc.out" 2>&1
	grep -q "run 'ldconfig' as root" "$tmp/ldc.out" ||
		fail "no advice to run ldconfig as root"
fi
unset SHMC_LDCONFIG

pc=$(find "$dest" -name shmc.pc -print -quit)
[ -n "$pc" ] || fail "no shmc.pc installed under $dest"
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
prefix=$(pkg-config --variable=prefix shmc) || fail "pkg-config shmc"
flags=$(pkg-config --define-variable=prefix="$dest$prefix" --cflags \
	--libs shmc) || fail "pkg-config --cflags --libs shmc"
libdir=$(pkg-config --define-variable=prefix="$dest$prefix" \
	--variable=libdir shmc)
[ -e "$libdir/libshmc.so" ] || fail "no libshmc.so in $libdir"
case " $flags " in
*" -I$dest"*) ;;
*) fail "cflags do not point into the installed tree: $flags" ;;
esac

# 2. Build the example with the installed header and library only.
# shellcheck disable=SC2086 # $flags is a list of words
if ! cc -o "$tmp/hello" "$srcdir/libclient/examples/hello.c" $flags \
	>"$tmp/cc.log" 2>&1; then
	show "$tmp/cc.log"
	fail "cc hello.c $flags"
fi
export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if ! ldd "$tmp/hello" | grep -q "libshmc.so.0 => $libdir/"; then
	ldd "$tmp/hello" >&2
	fail "hello does not load the installed libshmc.so"
fi
# A sanitized build installs a library that needs the ASan runtime; the
# plain hello does not load it first, which ASan refuses by default.
if readelf -d "$libdir/libshmc.so" 2>/dev/null |
	grep -q 'NEEDED.*libasan'; then
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
	export ASAN_OPTIONS
fi

# 3. Run it against a daemon of its own.
sock=$tmp/s.sock
"$daemon" --foreground --socket "$sock" --name "$name" --memory 8M \
	--segments 16 --log-file "$tmp/daemon.log" </dev/null \
	>"$tmp/daemon.out" 2>&1 &
daemon_pid=$!
export SHMC_SOCKET=$sock
ok=
for _ in $(seq 100); do
	if ! kill -0 "$daemon_pid" 2>/dev/null; then
		show "$tmp/daemon.out"
		show "$tmp/daemon.log"
		fail "the daemon exited at start"
	fi
	if [ -S "$sock" ]; then
		"$tmp/hello" >"$tmp/hello.out" 2>"$tmp/hello.err"
		rc=$?
		# Retry only while the daemon is not listening yet.
		if [ $rc -eq 0 ] ||
			! grep -q '^shmc_open:' "$tmp/hello.err"; then
			ok=1
			break
		fi
	fi
	sleep 0.1
done
if [ -z "$ok" ]; then
	show "$tmp/hello.err"
	show "$tmp/daemon.log"
	fail "no daemon on $sock after 10 s"
fi
if [ "$rc" -ne 0 ]; then
	show "$tmp/hello.out"
	show "$tmp/hello.err"
	fail "hello exited with $rc"
fi
if ! grep -qx 'greeting = hello, shared memory' "$tmp/hello.out"; then
	show "$tmp/hello.out"
	fail "hello did not print 'greeting = hello, shared memory'"
fi

kill -TERM "$daemon_pid"
wait "$daemon_pid"
rc=$?
daemon_pid=
if [ "$rc" -ne 0 ]; then
	show "$tmp/daemon.log"
	fail "the daemon exited with $rc on SIGTERM"
fi
echo "ok: hello built with pkg-config against $libdir and ran"
exit 0
