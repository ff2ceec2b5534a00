"""`pip install . --no-build-isolation` of the repository into a temporary
folder (meson-python builds the module alone, -Dpython_only), then an
import of that copy: the README's and docs/PYTHON.md's pip route works.
Usage: pip_check.py SOURCE_DIR.  Exits 77 when the interpreter has no pip
(Debian: python3-pip; tools/setup installs it)."""
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from install_check import check_installed  # noqa: E402



def main():
    if importlib.util.find_spec("pip") is None:
        print(f"SKIP: no pip for {sys.executable} (python3-pip)")
        return 77
    src = sys.argv[1]
    dest = tempfile.mkdtemp(prefix="shmc-pip-")
    try:
        # meson-python builds in a temporary folder of its own; in the
        # source it leaves only .mesonpy-native-file.ini (.gitignore).
        r = subprocess.run([sys.executable, "-m", "pip", "install",
                            "--no-build-isolation", "--no-deps",
                            "--no-cache-dir", "--quiet", "--root-user-action=ignore",
                            "--target", dest,
                            src])
        if r.returncode != 0:
            print("pip install failed")
            return 1
        return check_installed(dest, dest)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
