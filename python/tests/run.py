"""Runs the shmc module's pytest suite (meson test --suite python).

Exits 77 (skipped) when pytest is missing (Debian: python3-pytest) and in
a sanitizer build: the extension there is instrumented with ASan, whose
runtime must be the first library of the process, and the interpreter is
not (docs/PYTHON.md, "Tests").
"""
import os
import sys


def main():
    sanitize = os.environ.get("SHMC_TEST_SANITIZE", "none")
    if sanitize not in ("", "none"):
        print(f"SKIP: a -Db_sanitize={sanitize} build: its extension needs "
              "the sanitizer runtime loaded first, which python3 does not "
              "do; the suite runs in the normal build")
        return 77
    try:
        import pytest
    except ImportError:
        print(f"SKIP: no pytest for {sys.executable} (apt-get install "
              "python3-pytest)")
        return 77
    tests = sys.argv[1]
    return pytest.main(["-p", "no:cacheprovider", "-q", "-rs", tests]
                       + sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
