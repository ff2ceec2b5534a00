#!/usr/bin/env python3
"""Tests of the near-cache example (libclient/examples/redis_nearcache.c)
against a real redis-server on a free loopback TCP port and the real
daemon on a throwaway socket and region: what a user running the example
sees, line by line.

    test_nearcache_example.py DAEMON_BINARY EXAMPLE_BINARY [unittest args]

Prints "N passed, N failed, N skipped" last; exits 0 if all passed, 1 if
not, 77 when the host cannot run it (no redis-server).
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shmcproto as p  # noqa: E402

DAEMON = None
EXAMPLE = None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resp(*args):
    """One Redis command in RESP."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class RedisProc:
    """redis-server on 127.0.0.1:PORT, no persistence, in its own folder."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="redis-")
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + p.HANG_S
        while True:
            try:
                if self.call("PING") == b"+PONG":
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def call(self, *args):
        """Sends one command; returns the reply's first line, or the bulk
        string's bytes (None for a nil)."""
        with socket.create_connection(("127.0.0.1", self.port), 5) as s:
            s.sendall(resp(*args))
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    raise OSError("redis closed the connection")
                data += chunk
            head, rest = data.split(b"\r\n", 1)
            if not head.startswith(b"$"):
                return head
            n = int(head[1:])
            if n < 0:
                return None
            while len(rest) < n + 2:
                rest += s.recv(4096)
            return rest[:n]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(p.HANG_S)
        shutil.rmtree(self.dir, ignore_errors=True)


class NearCacheExampleTest(unittest.TestCase):
    def setUp(self):
        self.redis = RedisProc()
        # The daemon follows this Redis for user: (the example caches only
        # what a daemon keeps coherent); the tests start once its
        # tracking is up, before which its prefixes refuse fills.
        self.d = p.DaemonProc(DAEMON, extra=[
            "--redis", self.redis.addr, "--redis-prefix", "user:"]).start()
        self.env = dict(os.environ, SHMC_SOCKET=self.d.sock)
        end = time.monotonic() + p.HANG_S
        while self.state() != "up":
            self.assertLess(time.monotonic(), end, "tracking never up")
            time.sleep(0.01)

    def redis_set(self, key, value):
        """SET in Redis, returning once the daemon has applied the write's
        invalidation (and every earlier one: they come in order on one
        connection), shown by a canary written after it.  Else it could
        land after the example began a lease, whose fill it would then
        rightly refuse ("not cached")."""
        self.redis.call("SET", key, value)
        canary = "user:canary"
        c = p.Client(self.d.sock)
        try:
            c.set(canary, b"x")
            self.redis.call("SET", canary, "x")
            end = time.monotonic() + p.HANG_S
            while c.get_or_none(canary) is not None:
                self.assertLess(time.monotonic(), end, "never invalidated")
                time.sleep(0.005)
        finally:
            c.close()

    def state(self):
        c = p.Client(self.d.sock)
        try:
            return c.nearcache()["state"]
        finally:
            c.close()

    def tearDown(self):
        self.d.stop()
        self.d.unlink()
        self.redis.stop()

    def example(self, *args, addr=None):
        r = subprocess.run([EXAMPLE, addr or self.redis.addr] + list(args),
                           env=self.env, capture_output=True, text=True,
                           timeout=p.HANG_S)
        return r.returncode, r.stdout.splitlines(), r.stderr

    def test_nearcache_example_reads_redis_then_the_region(self):
        self.redis_set("user:1", "alice")
        rc, out, err = self.example("user:1", "user:1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, ["user:1 = alice (from redis, now cached)",
                               "user:1 = alice (from the region)"])
        # The copy is the host's, not the process's: another process
        # reads it from the region too.
        rc, out, err = self.example("user:1")
        self.assertEqual((rc, out), (0, ["user:1 = alice (from the region)"]),
                         err)

    def test_nearcache_example_reads_its_own_write(self):
        self.redis_set("user:2", "old")
        rc, out, err = self.example("user:2", "user:2", "user:2=new",
                                    "user:2", "user:2")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out[:3], [
            "user:2 = old (from redis, now cached)",
            "user:2 = old (from the region)",
            "user:2 := new (written to redis, local copy dropped)"])
        # Then the new value, never the old one.  Where from depends on
        # when the daemon hears of the write: its invalidation may void
        # the next read's fill ("not cached"), or come before it.
        self.assertEqual([line.split(" (")[0] for line in out[3:]],
                         ["user:2 = new"] * 2, out)
        self.assertEqual(self.redis.call("GET", "user:2"), b"new")

    def test_nearcache_example_does_not_cache_a_missing_key(self):
        rc, out, err = self.example("user:nobody", "user:nobody")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, ["user:nobody: not found",
                               "user:nobody: not found"])
        self.redis_set("user:nobody", "here now")
        rc, out, err = self.example("user:nobody")
        self.assertEqual(
            (rc, out),
            (0, ["user:nobody = here now (from redis, now cached)"]), err)

    def test_nearcache_example_never_caches_an_untracked_key(self):
        # Outside the daemon's --redis-prefix list no write to Redis would
        # ever drop a copy: the example reads Redis every time.
        self.redis.call("SET", "other:1", "v1")
        rc, out, err = self.example("other:1", "other:1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, ["other:1 = v1 (from redis, not tracked: "
                               "never cached)"] * 2)
        self.redis.call("SET", "other:1", "v2")
        rc, out, err = self.example("other:1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, ["other:1 = v2 (from redis, not tracked: "
                               "never cached)"])

    def test_nearcache_example_with_a_daemon_that_follows_no_redis(self):
        self.d.stop()
        self.d.unlink()
        self.d = p.DaemonProc(DAEMON).start()
        self.env["SHMC_SOCKET"] = self.d.sock
        self.redis.call("SET", "user:9", "v1")
        rc, out, err = self.example("user:9", "user:9")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, ["user:9 = v1 (from redis, not tracked: "
                               "never cached)"] * 2)
        self.assertIn("the daemon follows no Redis", err)

    def test_nearcache_example_sees_another_clients_write(self):
        # The daemon follows Redis: a write by any other client drops
        # the host's copy, and the next read goes to Redis.
        self.redis_set("user:3", "v1")
        rc, out, err = self.example("user:3", "user:3")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, ["user:3 = v1 (from redis, now cached)",
                               "user:3 = v1 (from the region)"])
        end = time.monotonic() + p.HANG_S
        self.redis.call("SET", "user:3", "v2")
        while True:
            rc, out, err = self.example("user:3")
            self.assertEqual(rc, 0, err)
            if out != ["user:3 = v1 (from the region)"]:
                break
            self.assertLess(time.monotonic(), end, "never invalidated")
            time.sleep(0.01)
        self.assertEqual(out, ["user:3 = v2 (from redis, now cached)"])

    def test_nearcache_example_unreachable_redis_is_an_error(self):
        rc, out, err = self.example("k", addr=f"127.0.0.1:{free_port()}")
        self.assertEqual((rc, out), (1, []))
        self.assertIn("redis 127.0.0.1:", err)
        rc, out, err = self.example("k", addr="127.0.0.1:notaport")
        self.assertEqual((rc, out), (1, []))
        self.assertIn("HOST:PORT or a Unix socket path expected", err)


def main():
    global DAEMON, EXAMPLE
    DAEMON, EXAMPLE = p.binaries(2, __doc__)
    if not shutil.which("redis-server"):
        print("redis-server not installed (tools/peers install): skipped")
        return 77
    return p.run_tests(sys.argv[3:], "shmc-nce-")


if __name__ == "__main__":
    sys.exit(main())
