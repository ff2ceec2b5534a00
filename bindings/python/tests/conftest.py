"""Fixtures of the shmc module's tests: one real shmcached per test session
on a throwaway socket and region (tests/integration/shmcproto.py's
DaemonProc), and a Client on it, emptied before each test.

Run by `meson test -C build --suite python` (bindings/python/tests/run.py),
which sets PYTHONPATH to the build tree's package and SHMC_DAEMON to the
daemon.  By hand: the same two variables, then `/usr/bin/python3 -m
pytest bindings/python/tests`.
"""
import contextlib
import ctypes
import os
import signal
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.join(HERE, "..", "..", "..")
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

from shmcproto import DaemonProc  # noqa: E402

import shmc  # noqa: E402


def daemon_binary():
    path = os.environ.get("SHMC_DAEMON")
    if not path or not os.access(path, os.X_OK):
        pytest.skip("SHMC_DAEMON does not name the shmcached binary")
    return path


def die_with_parent():
    """preexec_fn: the daemon gets SIGTERM when the test process ends, even
    killed (Linux's PR_SET_PDEATHSIG), so that no daemon outlives it."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_daemon(extra=()):
    """A started DaemonProc (stop it with stop_daemon()); its region goes
    with it, even when the test process was killed."""
    d = DaemonProc(daemon_binary(),
                   extra=["--unlink-on-exit"] + list(extra))
    d.start(preexec_fn=die_with_parent)
    return d


def stop_daemon(d):
    d.stop()
    d.unlink()


@contextlib.contextmanager
def own_daemon(extra=()):
    """A daemon of the test's own, stopped and removed at the end."""
    d = start_daemon(extra)
    try:
        yield d
    finally:
        stop_daemon(d)


def forced_race(ctx, target, args, read_done, write, write_done,
                hang_s=120):
    """Runs target(*args) in a process of ctx, which sets read_done once
    it has read the store of record and then waits for write_done before
    it fills; write() runs in between.  Asserts the process exited 0."""
    p = ctx.Process(target=target, args=args)
    p.start()
    try:
        assert read_done.wait(hang_s)
        write()
        write_done.set()
        p.join(hang_s)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            p.kill()


@pytest.fixture(scope="session")
def daemon():
    d = start_daemon()
    yield d
    stop_daemon(d)


@pytest.fixture(scope="session")
def sock(daemon):
    return daemon.sock


@pytest.fixture
def client(sock):
    c = shmc.Client(sock)
    c.clear()
    yield c
    c.close()


@pytest.fixture(scope="module")
def redis_server():
    """A redis-server of the test module's own (redisproc.py), on a Unix
    socket; skips without redis-server or python3-redis."""
    from redisproc import RedisServer
    s = RedisServer()
    yield s
    s.stop()


@pytest.fixture
def redis(redis_server):
    """A redis.Redis on redis_server, emptied first."""
    r = redis_server.client()
    r.flushall()
    yield r
    r.close()


@pytest.fixture
def writer(redis_server):
    """Another client of redis_server: another host's application."""
    r = redis_server.client()
    yield r
    r.close()
