#!/bin/sh
# install_ldconfig.sh LIBDIR - run by `meson install` after it installed
# libshmc (meson.add_install_script).  Refreshes the dynamic linker's cache
# so that programs find libshmc.so.0 at once, with no hidden step.
#
# Only for an install into the running system: under a DESTDIR (a staging
# tree for a package) the cache is the packager's business, and ldconfig
# would not see the files anyway.  As another user than root it cannot run
# ldconfig and says so.  When LIBDIR is not one the linker searches (a
# --prefix such as /opt/shmc), it says what to do instead.
# $SHMC_LDCONFIG overrides the ldconfig program (for the tests).
set -u
libdir=${1:?usage: install_ldconfig.sh LIBDIR}

if [ -n "${DESTDIR:-}" ]; then
	exit 0
fi
ldconfig=${SHMC_LDCONFIG:-}
if [ -z "$ldconfig" ]; then
	ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "shmc: run 'ldconfig' as root so that libshmc.so.0 in $libdir" \
		"is found" >&2
	exit 0
fi
if ! "$ldconfig"; then
	echo "shmc: ldconfig failed: run it by hand so that libshmc.so.0" \
		"in $libdir is found" >&2
	exit 0
fi
if ! "$ldconfig" -p | grep -qF "=> $libdir/libshmc.so.0"; then
	echo "shmc: $libdir is not searched by the dynamic linker: add it to" \
		"/etc/ld.so.conf.d/shmc.conf and run ldconfig, or set" \
		"LD_LIBRARY_PATH=$libdir" >&2
fi
exit 0
