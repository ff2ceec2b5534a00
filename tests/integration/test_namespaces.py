#!/usr/bin/env python3
"""End-to-end tests of namespaces: keys written through the mapping by one
process (crash_client), `cachectl ns ...` against the real daemon, and the
results read by yet another process; shmcached --namespace at start and
across a warm restart and a snapshot restart; bad NS_* frames.

    test_namespaces.py DAEMON_BINARY CACHECTL_BINARY CLIENT_BINARY
                       [unittest args]

Prints "N passed, N failed, N skipped" last; exits 0 if all passed, 1 if
not, 77 when the host cannot run it.
"""
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shmcproto as p  # noqa: E402

DAEMON = CACHECTL = CLIENT = None

# Exit statuses documented by `cachectl --help`.
OK, NO, USAGE, UNREACHABLE, FAILED = 0, 1, 2, 3, 4

# Room for 11000 small entries without eviction.
GEOMETRY = ("--memory", "32M", "--segments", "16")


def run_ctl(sock, *args):
    env = dict(os.environ)
    env.pop("SHMC_SOCKET", None)
    return subprocess.run([CACHECTL, "--socket", sock] + list(args),
                          capture_output=True, env=env, timeout=p.HANG_S)


def client(sock, *args):
    """crash_client SOCK args...: its stdout; fails the test on a bad
    value or an error."""
    r = subprocess.run([CLIENT, sock] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=p.HANG_S)
    if r.returncode != 0:
        raise AssertionError(f"crash_client {args}: {r.stdout}{r.stderr}")
    return r.stdout


def verify(sock, prefix, n):
    """(hits, misses) of PREFIX0..PREFIXn-1, read by another process."""
    words = client(sock, "verify", prefix, n).split()
    assert words[0] == "ok", words
    return int(words[1]), int(words[2])


def entries(sock):
    c = p.Client(sock)
    try:
        return c.stats()
    finally:
        c.close()


def ns_list(sock):
    r = run_ctl(sock, "ns", "list", "--json")
    assert r.returncode == OK, r.stderr
    return json.loads(r.stdout)


class NamespaceFlush(p.DaemonCase):
    """Flushing a namespace through cachectl, seen by other processes."""

    def setUp(self):
        self.d = p.DaemonProc(DAEMON, geometry=GEOMETRY).start()

    def test_namespaces_flush_drops_10k_keys_for_every_process(self):
        s = self.d.sock
        self.assertEqual(run_ctl(s, "ns", "add", "user:42:").returncode, OK)
        client(s, "fill", "user:42:", 10000, 40)
        client(s, "fill", "other:", 1000, 40)
        self.assertEqual(verify(s, "user:42:", 10000), (10000, 0))
        before = entries(s)
        self.assertEqual(before["evictions"], 0)

        r = run_ctl(s, "ns", "flush", "user:42:")
        self.assertEqual(r.returncode, OK, r.stderr)
        self.assertEqual(r.stdout, b"")
        # O(1): the flush itself touched no entry.
        self.assertEqual(entries(s)["entries"], before["entries"])

        self.assertEqual(verify(s, "user:42:", 10000), (0, 10000))
        self.assertEqual(verify(s, "other:", 1000), (1000, 0))
        # The reads reclaimed the dropped entries they met: all of them.
        self.assertEqual(entries(s)["entries"], before["entries"] - 10000)

        # Writes under the prefix after the flush live.
        client(s, "fill", "user:42:", 100, 40)
        self.assertEqual(verify(s, "user:42:", 100), (100, 0))
        (ns,) = ns_list(s)
        self.assertEqual(ns["prefix"], "user:42:")
        self.assertGreaterEqual(ns["mark"], 1)

    def test_namespaces_cachectl_errors_and_exit_codes(self):
        s = self.d.sock
        self.assertEqual(run_ctl(s, "ns").returncode, USAGE)
        r = run_ctl(s, "ns", "bogus")
        self.assertEqual(r.returncode, USAGE)
        self.assertIn(b"use list, add, flush or del", r.stderr)
        self.assertEqual(run_ctl(s, "ns", "add").returncode, USAGE)
        self.assertEqual(run_ctl(s, "ns", "add", "").returncode, USAGE)
        r = run_ctl(s, "ns", "add", "x" * 53)
        self.assertEqual(r.returncode, USAGE)
        self.assertIn(b"1 to 52 bytes", r.stderr)
        self.assertEqual(run_ctl(s, "ns", "list", "x").returncode, USAGE)
        self.assertEqual(run_ctl(s, "ns", "add", "a", "--json").returncode,
                         USAGE)
        r = run_ctl(s, "ns", "flush", "nope")
        self.assertEqual(r.returncode, NO)
        self.assertIn(b"not registered", r.stderr)
        self.assertEqual(run_ctl(s, "ns", "del", "nope").returncode, NO)
        self.assertEqual(run_ctl(s, "ns", "add", "a:").returncode, OK)
        r = run_ctl(s, "ns", "add", "a:")
        self.assertEqual(r.returncode, FAILED)
        self.assertIn(b"already registered", r.stderr)
        self.assertEqual(run_ctl(s, "ns", "del", "a:").returncode, OK)
        self.assertEqual(ns_list(s), [])
        r = run_ctl(s, "help", "ns")
        self.assertEqual(r.returncode, OK)
        self.assertIn(b"ns flush PREFIX", r.stdout)

    def test_namespaces_list_binary_prefix_as_b64(self):
        s = self.d.sock
        c = p.Client(s)
        try:
            c.ns_add(b"\xff\xfe:")
            c.ns_add("plain:")
        finally:
            c.close()
        got = ns_list(s)
        self.assertEqual(len(got), 2)
        b64 = [n for n in got if "prefix_b64" in n]
        self.assertEqual(len(b64), 1)
        self.assertEqual(base64.b64decode(b64[0]["prefix_b64"]), b"\xff\xfe:")
        self.assertIn("plain:", [n.get("prefix") for n in got])
        r = run_ctl(s, "ns", "list")
        self.assertEqual(r.returncode, OK)
        self.assertIn(b"'\\xff\\xfe:'", r.stdout)
        self.assertIn(b"'plain:'", r.stdout)

    def test_namespaces_bad_frames_get_errors(self):
        c = p.Client(self.d.sock)
        try:
            for name in ("NS_ADD", "NS_FLUSH", "NS_DEL"):
                for prefix in (b"", b"x" * (p.NS_PREFIX_MAX + 1)):
                    with self.assertRaises(p.ProtoError) as e:
                        c.call(name, p.bstr(prefix))
                    self.assertEqual(e.exception.err, p.EINVAL)
                # A body that does not parse.
                with self.assertRaises(p.ProtoError) as e:
                    c.call(name, p.u32(9) + b"ab")
                self.assertEqual(e.exception.err, p.EBADMSG)
                with self.assertRaises(p.ProtoError) as e:
                    c.call(name)
                self.assertEqual(e.exception.err, p.EBADMSG)
            with self.assertRaises(p.ProtoError) as e:
                c.call("NS_LIST", b"\0")
            self.assertEqual(e.exception.err, p.EBADMSG)
            with self.assertRaises(p.ProtoError) as e:
                c.ns_flush("nope")
            self.assertEqual(e.exception.err, p.ENOENT)
            c.ns_add(b"x" * p.NS_PREFIX_MAX)
            with self.assertRaises(p.ProtoError) as e:
                c.ns_add(b"x" * p.NS_PREFIX_MAX)
            self.assertEqual(e.exception.err, p.EEXIST)
            # The connection and the daemon go on.
            c.ping()
            self.assertEqual(len(c.ns_list()), 1)
        finally:
            c.close()


class NamespaceOption(unittest.TestCase):
    """shmcached --namespace, and the table across restarts."""

    def tearDown(self):
        for d in getattr(self, "daemons", []):
            d.stop()
            d.unlink()

    def daemon(self, extra, name=None, workdir=None):
        d = p.DaemonProc(DAEMON, extra=extra, name=name, workdir=workdir,
                         geometry=GEOMETRY)
        self.daemons = getattr(self, "daemons", []) + [d]
        return d.start()

    def test_namespaces_option_registers_and_survives_a_warm_restart(self):
        d = self.daemon(["--namespace", "cfg:", "--namespace", "b:"])
        got = {n["prefix"]: n for n in ns_list(d.sock)}
        self.assertEqual(set(got), {"cfg:", "b:"})
        self.assertIn("namespace 'cfg:' registered", d.logtext())
        client(d.sock, "fill", "cfg:", 50, 40)
        self.assertEqual(run_ctl(d.sock, "ns", "flush", "b:").returncode, OK)
        self.assertEqual(d.stop(), 0)

        # Warm restart: the region keeps the table and its marks; the
        # option finds cfg: registered already, and adds new:.
        d2 = self.daemon(["--namespace", "cfg:", "--namespace", "new:"],
                         name=d.name, workdir=d.dir)
        got2 = {n["prefix"]: n for n in ns_list(d2.sock)}
        self.assertEqual(set(got2), {"cfg:", "b:", "new:"})
        self.assertEqual(got2["b:"]["mark"], 1)
        self.assertEqual(verify(d2.sock, "cfg:", 50), (50, 0))
        self.assertEqual(run_ctl(d2.sock, "ns", "flush", "cfg:").returncode,
                         OK)
        self.assertEqual(verify(d2.sock, "cfg:", 50), (0, 50))

    def test_namespaces_option_after_a_snapshot_restart(self):
        work = tempfile.mkdtemp()
        snap = os.path.join(work, "cache.snap")
        extra = ["--namespace", "s:", "--unlink-on-exit", "--snapshot", snap]
        d = self.daemon(extra, workdir=work)
        client(d.sock, "fill", "s:", 20, 40)
        self.assertEqual(d.stop(), 0)
        self.assertTrue(os.path.exists(snap), d.logtext())
        # A new region, loaded from the snapshot: the option registers the
        # namespace again, and a flush drops the loaded keys.
        d2 = self.daemon(extra, workdir=work)
        self.assertEqual([n["prefix"] for n in ns_list(d2.sock)], ["s:"])
        wait_loaded(d2.sock, "s:", 20)
        self.assertEqual(run_ctl(d2.sock, "ns", "flush", "s:").returncode,
                         OK)
        self.assertEqual(verify(d2.sock, "s:", 20), (0, 20))

    def test_namespaces_option_refuses_a_bad_prefix(self):
        for bad in ("", "x" * 53):
            r = subprocess.run([DAEMON, "--namespace", bad, "--foreground"],
                               capture_output=True, timeout=p.HANG_S)
            self.assertEqual(r.returncode, 2)
            self.assertIn(b"--namespace", r.stderr)
            self.assertIn(b"1 to 52 bytes", r.stderr)


def wait_loaded(sock, prefix, n):
    """Waits until the snapshot's n keys are loaded (the load runs on a
    daemon thread after READY)."""
    end = time.monotonic() + p.HANG_S
    while time.monotonic() < end:
        if verify(sock, prefix, n) == (n, 0):
            return
        time.sleep(0.05)
    raise AssertionError("snapshot not loaded")


def main():
    global DAEMON, CACHECTL, CLIENT
    DAEMON, CACHECTL, CLIENT = p.binaries(3, __doc__)
    return p.run_tests(sys.argv[4:], "shmc-ns-")


if __name__ == "__main__":
    sys.exit(main())
