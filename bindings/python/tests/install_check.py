"""`meson install` (of everything, the shmc module among it) into a
temporary DESTDIR, then an import of the installed copy by the interpreter
it was built for: the extension loads without the build tree (libshmc is
linked in) and works.  Usage: install_check.py MESON BUILD_DIR"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

CHECK = """
import os, sys, shmc, shmc.django, shmc.redis
dest = os.environ["DEST"]
assert shmc.__file__.startswith(dest), shmc.__file__
assert shmc._shmc.__file__.startswith(dest), shmc._shmc.__file__
assert shmc.redis.__file__.startswith(dest), shmc.redis.__file__
assert "redis" not in sys.modules, "shmc imported redis-py"
try:
    shmc.Client(os.path.join(dest, "no.sock"))
except shmc.DaemonUnavailable as e:
    assert "no.sock" in str(e)
else:
    sys.exit("a Client opened on a missing socket")
print("installed shmc", shmc.__version__, "works from", shmc.__file__)
"""


def check_installed(dest, site):
    """Imports the shmc installed under dest (found on site) in a fresh
    interpreter and tries it; returns that interpreter's exit status."""
    env = dict(os.environ, PYTHONPATH=site, DEST=dest)
    return subprocess.run([sys.executable, "-c", CHECK], env=env,
                          cwd=dest).returncode


def main():
    meson, build = sys.argv[1], sys.argv[2]
    dest = tempfile.mkdtemp(prefix="shmc-pyinst-")
    try:
        subprocess.run([meson, "install", "-C", build, "--destdir", dest,
                        "--no-rebuild", "--quiet"], check=True)
        inits = glob.glob(os.path.join(dest, "**", "shmc", "__init__.py"),
                          recursive=True)
        if len(inits) != 1:
            print(f"expected one installed shmc/__init__.py, got {inits}")
            return 1
        return check_installed(dest, os.path.dirname(os.path.dirname(inits[0])))
    finally:
        shutil.rmtree(dest, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
