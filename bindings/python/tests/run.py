"""Runs the shmc module's pytest suite (meson test --suite python):
run.py TESTS_DIR [PYTEST_ARGS...].  Exits 77 (skipped) when pytest is
missing (Debian: python3-pytest)."""
import sys


def main():
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
