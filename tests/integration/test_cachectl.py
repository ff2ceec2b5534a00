#!/usr/bin/env python3
"""End-to-end tests of cachectl: the real tool against the real daemon on a
throwaway socket and region (shmcproto.DaemonProc), checking what a user
sees: stdout, stderr and the exit status of each command.

    test_cachectl.py DAEMON_BINARY CACHECTL_BINARY [unittest args]

Prints "N passed, N failed, N skipped" last; exits 0 if all passed, 1 if
not, 77 when the host cannot run it.
"""
import base64
import json
import mmap
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shmcproto as p  # noqa: E402

DAEMON = None
CACHECTL = None

# Exit statuses documented by `cachectl --help`.
OK, NO, USAGE, UNREACHABLE, FAILED, EXISTS, NAN = 0, 1, 2, 3, 4, 5, 6

# Every field of struct shmc_stats, plus the derived ones.
STATS_KEYS = ["hits", "misses", "sets", "overwrites", "deletes", "evictions",
              "moves", "expirations", "repairs", "entries", "bytes_used",
              "bytes_total", "segments", "hit_rate", "fill"]

# Offsets in the region header (shared/layout.h), as in test_daemon.py.
HDR_SEG_BASE = 24


def environ_without_socket():
    env = dict(os.environ)
    env.pop("SHMC_SOCKET", None)
    return env


def run_ctl(args, sock=None, input=b"", env=None, timeout=30):
    """Runs cachectl (with --socket sock when given); returns the
    CompletedProcess, stdout and stderr as bytes."""
    argv = [CACHECTL] + (["--socket", sock] if sock else []) + list(args)
    return subprocess.run(argv, input=input, capture_output=True,
                          env=env or environ_without_socket(),
                          timeout=timeout)


def run_on_tty(argv, timeout=p.HANG_S):
    """Runs argv with stdout on a pseudo-terminal; returns (status, what it
    wrote there)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=subprocess.PIPE,
                            env=environ_without_socket())
    os.close(slave)
    out = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([master], [], [], 0.1)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the terminal's last writer is gone
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    rc = proc.wait(timeout)
    proc.stderr.close()
    return rc, out


def become_nobody():
    """preexec_fn: run the child as uid and gid 65534, no other groups."""
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


class CtlTest(unittest.TestCase):
    def setUp(self):
        # DaemonProc passes --memory 8M --segments 16 itself.
        self.d = p.DaemonProc(DAEMON).start()
        self.conns = []

    def tearDown(self):
        for c in self.conns:
            c.close()
        self.d.stop()
        self.d.unlink()

    def ctl(self, *args, input=b""):
        return run_ctl(args, sock=self.d.sock, input=input)

    def ok(self, *args, input=b""):
        r = self.ctl(*args, input=input)
        self.assertEqual(r.returncode, OK, (args, r.stderr))
        return r.stdout

    def json(self, *args):
        return json.loads(self.ok(*args, "--json"))

    def conn(self):
        c = p.Client(self.d.sock)
        self.conns.append(c)
        return c

    def assert_one_line(self, r, what):
        lines = r.stderr.decode(errors="replace").strip().splitlines()
        self.assertEqual(len(lines), 1, (what, r.stderr))
        return lines[0]


class DataCommands(CtlTest):
    def test_cachectl_set_then_get_round_trips(self):
        self.assertEqual(self.ok("set", "greeting", "hello world"), b"")
        r = self.ctl("get", "greeting")
        self.assertEqual((r.returncode, r.stdout, r.stderr),
                         (OK, b"hello world", b""))
        # Seen by another client of the daemon too.
        self.assertEqual(self.conn().get("greeting")[0], b"hello world")

    def test_cachectl_set_from_stdin_is_binary_safe(self):
        value = bytes(range(256)) * 40 + b"\0\0\n\r\xff"
        self.assertEqual(self.ok("set", "bin", input=value), b"")
        self.assertEqual(self.ok("get", "bin"), value)
        self.ok("set", "dash", "-", input=b"\0from stdin\0")
        self.assertEqual(self.ok("get", "dash"), b"\0from stdin\0")
        self.assertEqual(self.conn().get("dash")[0], b"\0from stdin\0")
        self.ok("set", "empty", input=b"")
        self.assertEqual(self.ok("get", "empty"), b"")
        big = os.urandom(100_000)  # the largest item is ~230 KiB here
        self.ok("set", "big", input=big)
        self.assertEqual(self.ok("get", "big"), big)

    def test_cachectl_value_and_key_may_look_like_options(self):
        self.ok("set", "n", "-5")
        self.assertEqual(self.ok("get", "n"), b"-5")
        self.ok("set", "--", "-k-", "--v")
        self.assertEqual(self.ok("get", "--", "-k-"), b"--v")

    def test_cachectl_get_adds_a_newline_only_on_a_tty(self):
        self.ok("set", "k", "value")
        self.assertEqual(self.ok("get", "k"), b"value")
        rc, out = run_on_tty([CACHECTL, "--socket", self.d.sock, "get", "k"])
        self.assertEqual(rc, OK)
        self.assertEqual(out.replace(b"\r\n", b"\n"), b"value\n")
        self.ok("set", "nl", "line\n")
        rc, out = run_on_tty([CACHECTL, "--socket", self.d.sock, "get", "nl"])
        self.assertEqual(out.replace(b"\r\n", b"\n"), b"line\n")

    def test_cachectl_get_missing_exits_1(self):
        r = self.ctl("get", "nope")
        self.assertEqual((r.returncode, r.stdout), (NO, b""))
        self.assertIn("nope", self.assert_one_line(r, "get"))

    def test_cachectl_mget_prints_each_key_in_order(self):
        self.ok("set", "a", "one")
        self.ok("set", "b", "two", "--ttl", "100")
        big = b"x" * 10000  # longer than mget's first buffer
        self.ok("set", "big", input=big)
        r = self.ctl("mget", "a", "big", "b", "a")
        self.assertEqual((r.returncode, r.stdout, r.stderr),
                         (OK, b"one\n" + big + b"\ntwo\none\n", b""))
        # Some missing: every key printed, exit 1 as get's for a missing
        # key, the missing one named on stderr.
        r = self.ctl("mget", "a", "nope", "b")
        self.assertEqual((r.returncode, r.stdout),
                         (NO, b"one\n(not found)\ntwo\n"))
        self.assertIn("nope", self.assert_one_line(r, "mget"))
        r = self.ctl("mget", "x", "y")
        self.assertEqual((r.returncode, r.stdout),
                         (NO, b"(not found)\n(not found)\n"))
        out = json.loads(self.ctl("mget", "b", "nope", "--json").stdout)
        self.assertEqual([o["key"] for o in out], ["b", "nope"])
        self.assertEqual(out[0]["value"], "two")
        self.assertLess(abs(out[0]["expire_at"] - (time.time() + 100)), 30)
        self.assertEqual((out[1]["value"], out[1]["bytes"]), (None, 0))
        r = self.ctl("mget", "a", "")
        self.assertEqual(r.returncode, USAGE, r.stderr)
        # A key over the limit is a usage error before anything is read.
        r = self.ctl("mget", "a", "k" * 8192, "b")
        self.assertEqual((r.returncode, r.stdout), (USAGE, b""), r.stderr)
        self.assertIn(b"8191", r.stderr)

    def strict_json(self, out):
        """out parsed as a strict JSON parser would: UTF-8 throughout, no
        control character in a string, and no lone surrogate (Python's
        json accepts those; most parsers reject them)."""
        text = out.decode("utf-8")  # raises on any byte that is not UTF-8
        self.assertNotRegex(text, r"\\ud[89a-f][0-9a-f]{2}", text)
        obj = json.loads(text, strict=True)
        for v in obj.values():
            if isinstance(v, str):
                v.encode("utf-8")  # raises on a surrogate
        return obj

    def test_cachectl_get_json_escapes_any_bytes(self):
        value = 'quote" back\\ nl\n nul\0 tab\t utf8 \u00e9 \x7f \U0001f600'
        key = 'k"\\\t\u00e9'
        self.ok("set", key, input=value.encode())
        out = self.ok("get", key, "--json")
        self.assertEqual(out.count(b"\n"), 1)
        obj = self.strict_json(out)
        self.assertEqual(obj["key"], key)
        self.assertEqual(obj["value"], value)
        self.assertNotIn("value_b64", obj)
        self.assertEqual(obj["bytes"], len(value.encode()))
        self.assertIsNone(obj["expire_at"])
        self.ok("set", "t", "v", "--ttl", "100")
        expire = self.json("get", "t")["expire_at"]
        self.assertLess(abs(expire - (time.time() + 100)), 30)

    def test_cachectl_json_gives_bytes_that_are_not_utf8_in_base64(self):
        # A key with byte 0xff, a value with a truncated sequence: strict
        # JSON, and the exact bytes back from "key_b64" / "value_b64".
        key = b"k\xff-\xc3"
        value = b"bad\xff\xc3 utf8 \xc3\xa9\0"
        r = run_ctl(["set", key], sock=self.d.sock, input=value)
        self.assertEqual(r.returncode, OK, r.stderr)
        r = run_ctl(["get", key, "--json"], sock=self.d.sock)
        self.assertEqual(r.returncode, OK, r.stderr)
        obj = self.strict_json(r.stdout)
        self.assertNotIn("key", obj)
        self.assertNotIn("value", obj)
        self.assertEqual(base64.b64decode(obj["key_b64"], validate=True), key)
        self.assertEqual(base64.b64decode(obj["value_b64"], validate=True),
                         value)
        self.assertEqual(obj["bytes"], len(value))
        r = run_ctl(["ttl", key, "--json"], sock=self.d.sock)
        obj = self.strict_json(r.stdout)
        self.assertEqual(base64.b64decode(obj["key_b64"]), key)
        # Every length modulo 3, for the padding.
        for n in range(1, 7):
            raw = bytes([0xff] * n)
            self.assertEqual(run_ctl(["set", b"p" + raw, "v"],
                                     sock=self.d.sock).returncode, OK)
            obj = self.strict_json(run_ctl(["get", b"p" + raw, "--json"],
                                           sock=self.d.sock).stdout)
            self.assertEqual(base64.b64decode(obj["key_b64"], validate=True),
                             b"p" + raw)
            self.assertEqual(obj["value"], "v")

    def test_cachectl_del_removes_then_missing_exits_1(self):
        self.ok("set", "k", "v")
        self.assertEqual(self.ok("del", "k"), b"")
        self.assertEqual(self.ctl("get", "k").returncode, NO)
        r = self.ctl("del", "k")
        self.assertEqual(r.returncode, NO)
        self.assert_one_line(r, "del")

    def test_cachectl_ttl_with_and_without_expiry(self):
        self.ok("set", "forever", "v")
        self.assertEqual(self.ok("ttl", "forever"), b"none\n")
        self.assertIsNone(self.json("ttl", "forever")["ttl"])
        self.ok("set", "brief", "v", "--ttl", "100")
        self.assertIn(int(self.ok("ttl", "brief")), (99, 100))
        self.assertEqual(self.json("ttl", "brief")["key"], "brief")
        self.assertEqual(self.ctl("ttl", "missing").returncode, NO)

    def test_cachectl_set_ttl_expires(self):
        self.ok("--ttl=1", "set", "short", "v")  # options before the command
        self.assertEqual(self.ok("get", "short"), b"v")
        # The daemon's clock is real time, ticked in whole seconds: gone
        # within about 2 s; polled, with a deadline that catches hangs.
        deadline = time.monotonic() + p.HANG_S
        while self.ctl("get", "short").returncode != NO:
            self.assertLess(time.monotonic(), deadline, "never expired")
            time.sleep(0.1)

    def test_cachectl_touch_sets_a_new_ttl(self):
        self.ok("set", "k", "v")
        self.assertEqual(self.ok("touch", "k", "50"), b"")
        self.assertIn(int(self.ok("ttl", "k")), (49, 50))
        self.ok("touch", "k", "0")
        self.assertEqual(self.ok("ttl", "k"), b"none\n")
        self.assertEqual(self.ctl("touch", "missing", "5").returncode, NO)

    def test_cachectl_flush_then_stats_shows_0_entries(self):
        for i in range(20):
            self.ok("set", f"k{i}", "v")
        self.assertEqual(self.json("stats")["entries"], 20)
        self.assertEqual(self.ok("flush"), b"")
        s = self.json("stats")
        self.assertEqual((s["entries"], s["bytes_used"]), (0, 0))
        self.assertEqual(s["sets"], 20)  # counters are kept
        self.assertEqual(self.ctl("get", "k3").returncode, NO)

    def test_cachectl_set_too_large_fails_clearly(self):
        r = self.ctl("set", "huge", input=b"x" * 1_000_000)
        self.assertEqual(r.returncode, FAILED)
        self.assertIn("too large", self.assert_one_line(r, "set"))
        self.assertEqual(self.ctl("get", "huge").returncode, NO)


class NoMap(CtlTest):
    """--no-map: the data commands as requests over the socket, for a
    process that cannot map the region."""

    def test_cachectl_no_map_data_commands_meet_the_mapped_ones(self):
        nm = "--no-map"
        self.ok("set", "k", "over the socket", "--ttl", "100", nm)
        # The mapped path and a raw protocol client see what it stored.
        self.assertEqual(self.ok("get", "k"), b"over the socket")
        self.assertEqual(self.conn().get("k")[0], b"over the socket")
        self.ok("set", "m", "mapped")
        self.assertEqual(self.ok("get", "m", nm), b"mapped")
        self.assertEqual(self.ok("set", "bin", nm, input=b"\x00\xff\n"),
                         b"")
        self.assertEqual(self.ok("get", "bin"), b"\x00\xff\n")
        got = self.json("get", "k", nm)
        self.assertEqual(got["value"], "over the socket")
        self.assertGreater(got["expire_at"], time.time())
        # At most the 100 s it was given, and not yet run out.
        self.assertIn(int(self.ok("ttl", "k", nm)), range(1, 101))
        self.ok("touch", "k", "0", nm)
        self.assertEqual(self.ok("ttl", "k", nm), b"none\n")
        self.assertEqual(self.ok("ttl", "k"), b"none\n")
        self.ok("del", "k", nm)
        for args in (["get", "k"], ["get", "k", nm], ["del", "k", nm],
                     ["ttl", "k", nm], ["touch", "k", "5", nm]):
            r = self.ctl(*args)
            self.assertEqual(r.returncode, NO, (args, r.stderr))
            self.assertIn(b"k: not found", r.stderr)
        # The same counters and gauges either way.
        self.assertEqual(self.json("stats", nm), self.json("stats"))
        self.assertEqual(self.json("stats", nm)["segments"], 16)
        self.ok("flush", nm)
        self.assertEqual(self.json("stats")["entries"], 0)

    def test_cachectl_no_map_says_what_the_daemon_refused(self):
        big = b"x" * (1 << 20)  # more than an 8 MiB cache's largest item
        r = self.ctl("set", "big", "--no-map", input=big)
        self.assertEqual(r.returncode, FAILED, r.stderr)
        self.assertIn("too large", self.assert_one_line(r, "set"))
        self.assertIn(b"set 'big': ", r.stderr)

    def test_cachectl_no_map_is_only_for_data_commands(self):
        for args in (["check", "--no-map"], ["ping", "--no-map"]):
            r = self.ctl(*args)
            self.assertEqual(r.returncode, USAGE, (args, r.stderr))
            self.assertIn(b"takes no --no-map", r.stderr)

    def test_cachectl_no_map_unreachable_exits_3(self):
        sock = os.path.join(self.d.dir, "none.sock")
        r = run_ctl(["get", "k", "--no-map"], sock=sock)
        self.assertEqual(r.returncode, UNREACHABLE, r.stderr)
        self.assertIn(sock.encode(), self.assert_one_line(r, "x").encode())

    def test_cachectl_no_map_refuses_an_untrusted_peer(self):
        # A socket served by uid 65534: neither root nor this user.  Like
        # the mapped path, --no-map refuses it before sending a byte, and
        # says so in the same words.
        if os.geteuid() != 0:
            self.skipTest("needs root to become another user")
        folder = tempfile.mkdtemp(prefix="shmc-untrusted-")
        os.chmod(os.path.dirname(folder), 0o711)
        os.chmod(folder, 0o777)
        sock = os.path.join(folder, "s.sock")
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the fake server: counts what each client sent
            try:
                os.close(rfd)
                become_nobody()
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.bind(sock)
                s.listen()
                os.write(wfd, b"ready\n")
                while True:
                    c, _ = s.accept()
                    n = 0
                    while (b := c.recv(4096)):
                        n += len(b)
                    os.write(wfd, b"%d\n" % n)
                    c.close()
            finally:
                os._exit(1)
        os.close(wfd)
        said = os.fdopen(rfd, "rb")
        try:
            self.assertEqual(said.readline(), b"ready\n")
            lines = {}
            for how in ([], ["--no-map"]):
                r = run_ctl(["set", "k", "secret"] + how, sock=sock)
                self.assertEqual(r.returncode, UNREACHABLE, (how, r.stderr))
                lines[bool(how)] = self.assert_one_line(r, "untrusted")
                # Nothing was sent to the untrusted peer.
                self.assertEqual(said.readline(), b"0\n", how)
            self.assertEqual(lines[True], lines[False])
            for words in ("refusing " + sock, "uid 65534",
                          "SHMC_TRUST_UID=65534"):
                self.assertIn(words, lines[True])
        finally:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            said.close()
            shutil.rmtree(folder, ignore_errors=True)

    def test_cachectl_too_long_socket_path_is_refused_not_cut(self):
        # A path one byte too long for sun_path (108) whose first 107
        # bytes name the daemon's socket: refused, never the cut path.
        long_path = self.d.sock + "/" * (107 - len(self.d.sock)) + "x"
        self.assertEqual(os.path.normpath(long_path[:107]), self.d.sock)
        for how in ([], ["--no-map"]):
            r = run_ctl(["set", "k", "v"] + how, sock=long_path)
            self.assertEqual(r.returncode, UNREACHABLE, (how, r.stderr))
            self.assertIn(b"too long", self.assert_one_line(r, how).encode()
                          .lower())
        self.assertEqual(self.ctl("get", "k").returncode, NO)

    def test_cachectl_no_map_set_waits_for_a_slow_stdin(self):
        # The daemon drops a connection that stays silent for its
        # --hello-timeout; --no-map set reads its value first.
        d = p.DaemonProc(DAEMON, extra=["--hello-timeout", "200"]).start()
        try:
            proc = subprocess.Popen(
                [CACHECTL, "--socket", d.sock, "--no-map", "set", "k"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=environ_without_socket())
            time.sleep(0.5)  # the input: a writer slower than 200 ms
            out, err = proc.communicate(b"late value", timeout=30)
            self.assertEqual(proc.returncode, OK, err)
            r = run_ctl(["get", "k"], sock=d.sock)
            self.assertEqual(r.stdout, b"late value", r.stderr)
        finally:
            d.stop()
            d.unlink()


class ItemCommands(CtlTest):
    """gets, add, replace, cas, append, prepend, incr, decr, set --flags."""

    def gets(self, key):
        r = self.ctl("gets", key)
        self.assertEqual(r.returncode, OK, r.stderr)
        head, value = r.stdout.split(b"\n", 1)
        f = head.decode().split()
        self.assertEqual(f[0::2], ["flags", "cas", "bytes", "expire_at"])
        return int(f[1]), int(f[3]), value, f[7]

    def test_cachectl_gets_prints_flags_and_version(self):
        self.ok("set", "k", "hello", "--flags", "4294967295", "--ttl", "100")
        flags, cas, value, exp = self.gets("k")
        self.assertEqual((flags, value), (4294967295, b"hello"))
        self.assertGreater(int(exp), time.time())
        j = self.json("gets", "k")
        # The version as a string: it is above 2^53, which a JSON number
        # loses in most readers (then cas with it fails for ever).
        self.assertEqual((j["key"], j["value"], j["bytes"], j["flags"],
                          j["cas"]), ("k", "hello", 5, 4294967295, str(cas)))
        self.assertGreater(cas, 2**53)
        self.ok("cas", "k", j["cas"], "via-json")
        self.ok("set", "k", "again")
        flags2, cas2, _, exp2 = self.gets("k")
        self.assertEqual((flags2, exp2), (0, "none"))
        self.assertNotEqual(cas2, cas)
        r = self.ctl("gets", "missing")
        self.assertEqual((r.returncode, r.stdout), (NO, b""))
        self.assertIn(b"not found", r.stderr)

    def test_cachectl_add_and_replace(self):
        self.ok("add", "k", "one", "--flags", "3")
        r = self.ctl("add", "k", "two")
        self.assertEqual((r.returncode, r.stdout), (EXISTS, b""))
        self.assertIn("exists", self.assert_one_line(r, "add"))
        self.assertEqual(self.ok("get", "k"), b"one")
        r = self.ctl("replace", "nope", "x")
        self.assertEqual(r.returncode, NO, r.stderr)
        self.assertEqual(self.ctl("get", "nope").returncode, NO)
        self.ok("replace", "k", "--flags", "8", input=b"from\x00stdin")
        self.assertEqual(self.gets("k")[0::2], (8, b"from\x00stdin"))

    def test_cachectl_cas_stores_only_the_version_read(self):
        self.ok("set", "k", "v1")
        cas = str(self.gets("k")[1])
        self.ok("cas", "k", cas, "v2")
        self.assertEqual(self.ok("get", "k"), b"v2")
        r = self.ctl("cas", "k", cas, "v3")  # changed since
        self.assertEqual(r.returncode, EXISTS, r.stderr)
        self.assertIn("changed since", self.assert_one_line(r, "cas"))
        self.assertEqual(self.ok("get", "k"), b"v2")
        self.ok("del", "k")
        r = self.ctl("cas", "k", cas, "v3")  # gone
        self.assertEqual(r.returncode, NO, r.stderr)
        r = self.ctl("cas", "k", "x1", "v")
        self.assertEqual(r.returncode, USAGE, r.stderr)

    def test_cachectl_append_and_prepend(self):
        r = self.ctl("append", "k", "x")
        self.assertEqual(r.returncode, NO, r.stderr)
        self.assertEqual(self.ctl("get", "k").returncode, NO)
        self.ok("set", "k", "mid", "--flags", "5")
        self.ok("append", "k", "--", "-end")
        self.ok("prepend", "k", input=b"start-")
        self.assertEqual(self.gets("k")[0::2], (5, b"start-mid-end"))

    def test_cachectl_incr_and_decr(self):
        self.ok("set", "n", "10")
        self.assertEqual(self.ok("incr", "n"), b"11\n")
        self.assertEqual(self.ok("incr", "n", "9"), b"20\n")
        self.assertEqual(self.ok("decr", "n", "25"), b"0\n")  # floor at 0
        self.ok("set", "n", "18446744073709551615")
        self.assertEqual(self.ok("incr", "n", "2"), b"1\n")  # wraps
        r = self.ctl("incr", "missing")
        self.assertEqual(r.returncode, NO, r.stderr)
        self.assertEqual(self.ok("incr", "made", "5", "--init", "10",
                                 "--init-ttl", "100"), b"15\n")
        self.assertGreater(int(self.ok("ttl", "made")), 90)
        self.assertEqual(self.ok("decr", "d", "--init", "3", "5"), b"0\n")
        self.ok("set", "s", "abc")
        r = self.ctl("incr", "s")
        self.assertEqual((r.returncode, r.stdout), (NAN, b""))
        self.assertIn("not a number", self.assert_one_line(r, "incr"))
        self.assertEqual(self.ok("get", "s"), b"abc")
        for args in (["incr", "n", "-1"], ["decr", "n", "x"],
                     ["incr", "n", "--init-ttl", "5"]):
            r = self.ctl(*args)
            self.assertEqual(r.returncode, USAGE, (args, r.stderr))

    def test_cachectl_item_commands_need_the_mapping(self):
        for args in (["gets", "k"], ["add", "k", "v"], ["replace", "k", "v"],
                     ["cas", "k", "1", "v"], ["append", "k", "v"],
                     ["prepend", "k", "v"], ["incr", "k"], ["decr", "k"],
                     ["set", "k", "v", "--flags", "1"]):
            r = self.ctl(*args, "--no-map")
            self.assertEqual(r.returncode, USAGE, (args, r.stderr))
            self.assertIn("needs the mapping",
                          self.assert_one_line(r, args))


class Statistics(CtlTest):
    def test_cachectl_stats_json_counts_what_was_done(self):
        for k in ("a", "b", "c"):
            self.ok("set", k, "v")
        self.ok("get", "a")
        self.ok("get", "b")
        s = self.json("stats")
        self.assertEqual(list(s), STATS_KEYS)
        self.assertEqual((s["sets"], s["hits"], s["misses"], s["entries"]),
                         (3, 2, 0, 3))
        self.assertEqual(s["segments"], 16)
        self.assertEqual(s["bytes_total"],
                         self.conn().stats()["bytes_total"])
        self.assertEqual(s["hit_rate"], 100.0)
        self.assertEqual(self.ctl("get", "zz").returncode, NO)
        s = self.json("stats")
        self.assertEqual((s["hits"], s["misses"]), (2, 1))
        self.assertAlmostEqual(s["hit_rate"], 66.67, places=2)
        self.assertAlmostEqual(s["fill"],
                               100 * s["bytes_used"] / s["bytes_total"], 2)

    def test_cachectl_stats_without_gets_has_null_hit_rate(self):
        self.assertIsNone(self.json("stats")["hit_rate"])

    def test_cachectl_stats_table_shows_every_field(self):
        self.ok("set", "a", "v")
        rows = {line.split()[0]: line.split()[1]
                for line in self.ok("stats").decode().splitlines()}
        self.assertEqual(sorted(rows), sorted(STATS_KEYS))
        self.assertEqual((rows["sets"], rows["entries"], rows["segments"]),
                         ("1", "1", "16"))

    def test_cachectl_segments_lists_the_16_segments(self):
        c = self.conn()
        for i in range(100):
            c.set(f"key{i}", b"v")
        lines = self.ok("segments").decode().splitlines()
        # A header, one line per segment, the note on what hits count.
        self.assertEqual(len(lines), 18)
        self.assertIn("took the segment's lock", lines[-1])
        lines = lines[:-1]
        self.assertEqual([int(line.split()[0]) for line in lines[1:]],
                         list(range(16)))
        segs = self.json("segments")
        self.assertEqual([s["segment"] for s in segs], list(range(16)))
        self.assertEqual(set(segs[0]), set(STATS_KEYS) | {"segment"})
        total = self.json("stats")
        self.assertEqual(sum(s["entries"] for s in segs), 100)
        self.assertEqual(sum(s["bytes_total"] for s in segs),
                         total["bytes_total"])
        self.assertEqual([int(line.split()[1]) for line in lines[1:]],
                         [s["entries"] for s in segs])


class Control(CtlTest):
    def corrupt_segment(self, c, seg):
        """Damages one segment's state through the mapping, as
        test_daemon.py's test_check_is_clean_and_finds_damage does."""
        c.hello()
        m = mmap.mmap(c.fds[0], 8 << 20)
        base, stride = struct.unpack_from("<QQ", m, HDR_SEG_BASE)
        struct.pack_into("<I", m, base + seg * stride + 64 + 8, 0xFFFFFF)
        m.close()

    def test_cachectl_check_is_clean_on_a_healthy_cache(self):
        c = self.conn()
        for i in range(200):
            c.set(f"k{i}", os.urandom(50))
        r = self.ctl("check")
        self.assertEqual((r.returncode, r.stderr), (OK, b""))
        self.assertIn(b"16 segments checked, 0 bad", r.stdout)
        self.assertEqual(self.json("check"),
                         dict(segments=16, bad=0, repaired=0))

    def test_cachectl_check_finds_damage_and_repair_fixes_it(self):
        c = self.conn()
        for i in range(200):
            c.set(f"k{i}", os.urandom(50))
        self.corrupt_segment(c, 3)
        r = self.ctl("check")
        self.assertEqual(r.returncode, NO)
        self.assertIn(b"1 bad", r.stdout)
        self.assertIn(b"--repair", r.stderr)
        r = self.ctl("check", "--repair", "--json")
        self.assertEqual(r.returncode, NO)  # damage was found
        self.assertEqual(json.loads(r.stdout),
                         dict(segments=16, bad=1, repaired=1))
        r = self.ctl("check")
        self.assertEqual(r.returncode, OK, r.stdout)
        self.assertEqual(self.json("segments")[3]["repairs"], 1)

    def damage_header(self, offset, copy=False):
        """Flips a byte of the region header's geometry (its second copy,
        at the header's last 128 bytes, with copy) through /dev/shm."""
        at = offset + (4096 - 128 if copy else 0)
        with open("/dev/shm" + self.d.name, "r+b") as f:
            m = mmap.mmap(f.fileno(), 4096)
            m[at] ^= 0x5A
            m.close()

    def test_cachectl_check_names_and_repairs_header_damage(self):
        c = self.conn()
        for i in range(100):
            c.set(f"k{i}", f"v{i}")
        self.damage_header(16)  # region_size
        # A client attaches from the intact copy: cachectl works.
        self.assertEqual(self.ok("get", "k7"), b"v7")
        r = self.ctl("check")
        self.assertEqual(r.returncode, NO)
        self.assertIn(b"region header geometry damaged", r.stdout)
        r = self.ctl("check", "--repair")
        self.assertEqual(r.returncode, NO)  # damage was found
        self.assertIn(b"region header geometry damaged, repaired from the "
                      b"second copy", r.stdout)
        self.assertIn("region header geometry damaged, repaired from the "
                      "second copy", self.d.logtext())
        r = self.ctl("check")
        self.assertEqual(r.returncode, OK, r.stdout)
        for i in range(100):
            self.assertEqual(self.ok("get", f"k{i}"), f"v{i}".encode())

    def test_warm_restart_repairs_header_damage_and_keeps_the_data(self):
        c = self.conn()
        for i in range(100):
            c.set(f"k{i}", f"v{i}")
        self.d.stop()
        self.damage_header(40)  # nbuckets
        self.d.start()
        self.assertIn("region header geometry damaged, repaired from the "
                      "second copy", self.d.logtext())
        for i in range(100):
            self.assertEqual(self.ok("get", f"k{i}"), f"v{i}".encode())
        self.assertEqual(self.ctl("check").returncode, OK)
        # The copy is damaged now: restored from the first.
        self.d.stop()
        self.damage_header(40, copy=True)
        self.d.start()
        self.assertIn("second copy of the region header geometry damaged, "
                      "rewritten from the first", self.d.logtext())
        self.assertEqual(self.ok("get", "k3"), b"v3")

    def test_header_damaged_in_both_copies_says_reset_is_needed(self):
        self.conn().set("k", "v")
        self.d.stop()
        self.damage_header(48)
        self.damage_header(48, copy=True)
        r = subprocess.run(self.d.args(), capture_output=True, text=True,
                           timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("region header geometry and its second copy are both "
                      "damaged; --reset replaces it", self.d.logtext())

    def test_checksum_mode_is_kept_by_the_region(self):
        self.d.stop()
        self.d.unlink()
        self.d.extra = ["--checksum"]
        self.d.start()
        self.ok("set", "k", "v")
        self.assertEqual(self.ok("get", "k"), b"v")
        self.d.stop()
        self.d.extra = []
        r = subprocess.run(self.d.args(), capture_output=True, text=True,
                           timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("it was made with --checksum; --reset replaces it",
                      self.d.logtext())
        self.d.extra = ["--checksum"]
        self.d.start()
        self.assertEqual(self.ok("get", "k"), b"v")

    def test_lock_timeout_applies_at_a_warm_restart(self):
        def region_timeout():
            with open("/dev/shm" + self.d.name, "rb") as f:
                # region_hdr.lock_timeout_ms (shared/layout.h)
                return struct.unpack_from("<I", f.read(4096), 148)[0]
        self.conn().set("k", "v")
        self.assertEqual(region_timeout(), 2000)
        self.d.stop()
        self.d.extra = ["--lock-timeout", "750"]
        self.d.start()
        self.assertEqual(region_timeout(), 750)
        self.assertIn("lock timeout of region", self.d.logtext())
        self.assertEqual(self.ok("get", "k"), b"v")  # warm: data kept

    def test_cachectl_clients_lists_the_tests_connection(self):
        c = self.conn()
        cid = c.hello()[0]
        rows = self.json("clients")
        mine = [r for r in rows if r["id"] == cid]
        self.assertEqual(len(mine), 1, rows)
        self.assertEqual((mine[0]["pid"], mine[0]["uid"], mine[0]["self"]),
                         (os.getpid(), os.getuid(), False))
        self.assertLess(abs(mine[0]["since"] - time.time()), 60)
        self.assertEqual(sum(r["self"] for r in rows), 1)  # cachectl itself
        lines = self.ok("clients").decode().splitlines()
        self.assertEqual(lines[0].split()[:3], ["id", "pid", "uid"])
        me = [line for line in lines[1:] if line.split()[0] == str(cid)]
        self.assertEqual(len(me), 1, lines)
        self.assertEqual(me[0].split()[1], str(os.getpid()))
        self.assertEqual(me[0].split()[3],  # local date of connection
                         time.strftime("%Y-%m-%d",
                                       time.localtime(mine[0]["since"])))
        self.assertIn("(this cachectl)", "\n".join(lines))

    def test_cachectl_ping(self):
        self.assertIn(b"pong", self.ok("ping"))

    def test_cachectl_save_and_load_round_trip(self):
        self.ok("set", "kept", "value")
        path = os.path.join(self.d.dir, "snap")
        r = self.ctl("save", path)
        self.assertEqual(r.returncode, OK, r.stderr)
        self.ok("flush")
        r = self.ctl("load", path)
        self.assertEqual(r.returncode, OK, r.stderr)
        self.assertEqual(self.ok("get", "kept"), b"value")
        r = self.ctl("load", path + ".missing")
        self.assertEqual(r.returncode, FAILED)

    def test_cachectl_shutdown_stops_the_daemon(self):
        self.assertEqual(self.ok("shutdown"), b"")
        self.assertEqual(self.d.proc.wait(p.HANG_S), 0)
        r = self.ctl("ping")
        self.assertEqual(r.returncode, UNREACHABLE)

    def test_cachectl_refused_user_is_told_about_the_allow_lists(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to become another user")
        # Only the daemon's check refuses: every folder up to the socket
        # may be crossed, the socket written.
        os.chmod(os.path.dirname(self.d.dir), 0o711)
        os.chmod(self.d.dir, 0o711)
        os.chmod(self.d.sock, 0o666)
        r = subprocess.run([CACHECTL, "--socket", self.d.sock, "ping"],
                           capture_output=True, env=environ_without_socket(),
                           timeout=30, preexec_fn=become_nobody)
        self.assertEqual(r.returncode, UNREACHABLE, r.stderr)
        line = self.assert_one_line(r, "refused")
        for words in (self.d.sock, "uid 65534", "--allow-user 65534",
                      "--allow-group"):
            self.assertIn(words, line)
        self.assertIn("refused peer", self.d.logtext())

    def test_cachectl_socket_from_environment(self):
        env = dict(environ_without_socket(), SHMC_SOCKET=self.d.sock)
        r = run_ctl(["set", "env", "yes"], env=env)
        self.assertEqual(r.returncode, OK, r.stderr)
        self.assertEqual(self.conn().get("env")[0], b"yes")


class Watch(CtlTest):
    def test_cachectl_watch_count_prints_twice(self):
        t0 = time.monotonic()
        out = self.ok("watch", "--count", "2", "--interval", "0.2")
        self.assertGreaterEqual(time.monotonic() - t0, 0.2)
        self.assertNotIn(b"\033", out)  # not a terminal: no clearing
        lines = out.decode().splitlines()
        self.assertEqual(len(lines), 3, out)  # a header, two refreshes
        self.assertIn("gets/s", lines[0])
        self.assertEqual(lines[1].split()[1:4], ["-", "-", "-"])
        float(lines[2].split()[1])  # a rate from the second refresh on

    def watch_json(self, *args):
        """`cachectl watch --json ARGS` running, its stdout and stderr
        piped."""
        return subprocess.Popen(
            [CACHECTL, "--socket", self.d.sock, "watch", "--json"] +
            list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=environ_without_socket())

    def test_cachectl_watch_json_shows_the_rates(self):
        proc = self.watch_json("--count", "2", "--interval", "1")
        try:
            first = json.loads(proc.stdout.readline())
            # Between the two refreshes: 40 sets and 30 gets (20 hits).
            c = self.conn()
            for i in range(40):
                c.set(f"w{i}", b"v")
            for i in range(30):
                c.get_or_none(f"w{i + 20}")
            second = json.loads(proc.stdout.readline())
            self.assertEqual(proc.wait(p.HANG_S), OK)
        finally:
            proc.stdout.close()
            proc.stderr.close()
        self.assertIsNone(first["sets_per_s"])
        self.assertEqual((first["entries"], second["entries"]), (0, 40))
        # Rates are per second over the interval of about 1 s.
        self.assertAlmostEqual(second["sets_per_s"], 40, delta=8)
        self.assertAlmostEqual(second["gets_per_s"], 30, delta=6)
        self.assertAlmostEqual(second["hit_rate"], 100 * 20 / 30, places=1)

    def test_cachectl_watch_says_when_the_daemon_is_gone_and_back(self):
        # Bounded by its own count: 600 refreshes of 0.05 s at most.
        proc = self.watch_json("--count", "600", "--interval", "0.05")
        out, err = b"", b""

        def read_until(pred, what, timeout=20):
            nonlocal out, err
            end = time.monotonic() + timeout
            while not pred():
                left = end - time.monotonic()
                self.assertGreater(left, 0, f"no {what}: {out!r} {err!r}")
                ready = select.select([proc.stdout, proc.stderr], [], [],
                                      left)[0]
                for f in ready:
                    chunk = os.read(f.fileno(), 4096)
                    if f is proc.stdout:
                        out += chunk
                    else:
                        err += chunk
                self.assertIsNone(proc.poll(), (what, out, err))

        def figures():  # the complete lines so far
            return [json.loads(ln) for ln in out.split(b"\n")[:-1]]

        try:
            read_until(lambda: len(figures()) >= 1, "first figures")
            self.d.stop()
            read_until(lambda: b"unreachable" in err, "unreachable message")
            self.assertIn(self.d.sock.encode(), err)
            lines_in_outage = len(figures())
            # Several refreshes go by with the daemon gone: no figures,
            # and one message for the whole outage.
            time.sleep(0.5)
            self.d.start()
            c = self.conn()
            for i in range(7):
                c.set(f"back{i}", b"v")
            read_until(lambda: any(f["entries"] == 7 for f in figures()),
                       "figures after the restart")
            self.assertIn(b"answers again", err)
        finally:
            proc.terminate()
            proc.wait(10)
            proc.stdout.close()
            proc.stderr.close()
        self.assertEqual(err.count(b"unreachable"), 1, err)
        self.assertEqual(err.count(b"answers again"), 1, err)
        self.assertLessEqual(lines_in_outage, len(figures()))
        # The first figures after the outage have no rates (no interval
        # across a restart).
        after = figures()[lines_in_outage:]
        self.assertTrue(after)
        self.assertIsNone(after[0]["sets_per_s"])

    def test_cachectl_watch_clears_the_screen_on_a_tty(self):
        rc, out = run_on_tty([CACHECTL, "--socket", self.d.sock, "watch",
                              "--count", "2", "--interval", "0.1"])
        self.assertEqual(rc, OK)
        self.assertEqual(out.count(b"\033[2J"), 2, out)


class Listing(CtlTest):
    """keys and dump: the live keys, streamed one segment at a time."""

    def fill_keys(self):
        c = self.conn()
        for i in range(50):
            c.set(f"user:{i}", b"v" * i)
        c.set("other", b"abc", ttl=100)
        return {f"user:{i}" for i in range(50)} | {"other"}

    def test_cachectl_keys_lists_every_key_with_and_without_prefix(self):
        keys = self.fill_keys()
        out = self.ok("keys").decode().splitlines()
        self.assertEqual(sorted(out), sorted(keys))
        out = self.ok("keys", "user:").decode().splitlines()
        self.assertEqual(sorted(out), sorted(k for k in keys if
                                             k.startswith("user:")))
        self.assertEqual(sorted(self.ok("keys", "user:4").split()),
                         sorted([b"user:4"] + [b"user:4%d" % i for i in
                                               range(10)]))
        self.assertEqual(self.ok("keys", "nothing"), b"")
        # An empty cache: nothing, and success.
        self.ok("flush")
        self.assertEqual(self.ok("keys"), b"")

    def test_cachectl_dump_shows_size_flags_and_ttl(self):
        self.fill_keys()
        lines = self.ok("dump").decode().splitlines()
        self.assertEqual(lines[0].split(), ["bytes", "flags", "ttl", "key"])
        rows = {f[3]: f[:3] for f in (line.split() for line in lines[1:])}
        self.assertEqual(len(rows), 51)
        self.assertEqual(rows["user:7"], ["7", "0", "none"])
        self.assertEqual(rows["other"][:2], ["3", "0"])
        self.assertIn(int(rows["other"][2]), range(90, 101))
        lines = self.ok("dump", "other").decode().splitlines()
        self.assertEqual(len(lines), 2)

    def test_cachectl_keys_and_dump_json_parse(self):
        self.fill_keys()
        objs = [json.loads(line) for line in
                self.ok("dump", "--json").decode().splitlines()]
        self.assertEqual(len(objs), 51)
        by_key = {o["key"]: o for o in objs}
        self.assertEqual(by_key["user:3"], {"key": "user:3", "bytes": 3,
                                            "flags": 0, "ttl": None,
                                            "expire_at": None})
        other = by_key["other"]
        self.assertIn(other["ttl"], range(90, 101))
        self.assertLess(abs(other["expire_at"] - (time.time() + 100)), 30)
        keys = [json.loads(line) for line in
                self.ok("keys", "user:1", "--json").decode().splitlines()]
        self.assertEqual(sorted(o["key"] for o in keys),
                         sorted(["user:1"] + [f"user:1{i}" for i in
                                              range(10)]))

    def test_cachectl_keys_binary_key_escaped_or_base64(self):
        key = b"bin\x01\xff'\\\n"
        self.conn().set(key, b"zz")
        self.assertEqual(self.ok("keys", "bin"), b"bin\\x01\\xff\\'\\\\\\n\n")
        obj = json.loads(self.ok("keys", "--json"))
        self.assertEqual(base64.b64decode(obj["key_b64"]), key)
        obj = json.loads(self.ok("dump", "--json"))
        self.assertEqual(base64.b64decode(obj["key_b64"]), key)
        self.assertEqual(obj["bytes"], 2)

    def test_cachectl_keys_leaves_out_expired_and_deleted(self):
        c = self.conn()
        c.set("stays", b"1")
        c.set("deleted", b"2")
        c.set("expires", b"3", ttl=1)
        c.delete("deleted")
        # The daemon's clock ticks each second: expired within 2 s.
        end = time.monotonic() + p.HANG_S
        while self.ctl("ttl", "expires").returncode == OK:
            self.assertLess(time.monotonic(), end)
            time.sleep(0.05)
        self.assertEqual(self.ok("keys"), b"stays\n")
        self.assertEqual(len(self.ok("dump").splitlines()), 2)

    def test_cachectl_keys_needs_the_mapping(self):
        for cmd in ("keys", "dump"):
            r = self.ctl(cmd, "--no-map")
            self.assertEqual(r.returncode, USAGE, r.stderr)
            line = self.assert_one_line(r, cmd)
            self.assertIn("takes no --no-map", line)
            self.assertIn("mapped", line)
        r = self.ctl("keys", "a", "b")
        self.assertEqual(r.returncode, USAGE, r.stderr)

    def test_cachectl_dump_to_a_stopped_reader_blocks_no_writer(self):
        # More output than the pipes hold, so dump is stuck writing to a
        # reader that was stopped; a writer of every segment still gets
        # each of its sets through, which it could not if dump held a
        # segment lock while it writes (the daemon's lock wait is short).
        c = self.conn()
        n = 20000
        for i in range(n):
            c.set(f"slow-consumer-key-{i:06d}", b"v")
        dump = subprocess.Popen(
            [CACHECTL, "--socket", self.d.sock, "dump"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=environ_without_socket())
        reader = subprocess.Popen(["cat"], stdin=dump.stdout,
                                  stdout=subprocess.PIPE)
        dump.stdout.close()
        try:
            reader.send_signal(signal.SIGSTOP)
            time.sleep(0.5)  # let dump fill the pipes
            for i in range(2000):
                c.set(f"writer-{i}", b"w")  # raises on any error
            r = run_ctl(["set", "mapped-writer", "w"], sock=self.d.sock)
            self.assertEqual(r.returncode, OK, r.stderr)
            self.assertIsNone(dump.poll(), "dump ended: no back-pressure")
        finally:
            reader.send_signal(signal.SIGCONT)
            out, _ = reader.communicate(timeout=p.HANG_S)
            status = dump.wait(timeout=p.HANG_S)
            err = dump.stderr.read()
            dump.stderr.close()
        self.assertEqual(status, OK, err)
        listed = {line.split()[3] for line in out.decode().splitlines()[1:]}
        self.assertLessEqual({f"slow-consumer-key-{i:06d}" for i in
                              range(n)}, listed)


class BigValues(CtlTest):
    """--memory 256M and the default --segments: a 1 MiB value (memcached's
    default item limit) goes through the mapping and the socket."""

    MIB = 1 << 20

    def setUp(self):
        self.d = p.DaemonProc(DAEMON, geometry=("--memory", "256M")).start()
        self.conns = []

    def test_cachectl_1mib_value_round_trips_with_256m(self):
        val = os.urandom(self.MIB)
        self.ok("set", "big", "-", input=val)
        self.assertEqual(self.ok("get", "big"), val)
        val2 = os.urandom(self.MIB)
        self.ok("--no-map", "set", "big2", "-", input=val2)
        self.assertEqual(self.ok("--no-map", "get", "big2"), val2)
        self.assertEqual(self.ok("get", "big2"), val2)
        # The chosen segment count shows in the stats and the log.
        self.assertEqual(self.json("stats")["segments"], 64)
        self.assertRegex(self.d.logtext(), r"created region .* 64 segments")

    def test_cachectl_too_big_value_names_the_limit(self):
        val = b"v" * (3 * self.MIB)  # max_kv is about 1.75 MiB here
        for args in ((), ("--no-map",)):
            r = self.ctl(*args, "set", "huge", "-", input=val)
            self.assertEqual(r.returncode, FAILED, (args, r.stderr))
            line = self.assert_one_line(r, args)
            self.assertRegex(line, r"largest item[^0-9]* is \d+ bytes", args)
            self.assertIn("--memory", line, args)
            self.assertIn("--segments", line, args)
            r = self.ctl(*args, "get", "huge")
            self.assertEqual(r.returncode, NO, (args, r.stderr))


class CommandLine(unittest.TestCase):
    """Errors that need no daemon: usage, help, an unreachable socket."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ctl-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def commands(self):
        out = run_ctl(["--help"]).stdout.decode()
        block = out.split("Commands:\n")[1].split("\n\n")[0]
        # A summary on a line of its own is indented past the names.
        return [line.split()[0] for line in block.splitlines()
                if not line.startswith("   ")]

    def test_cachectl_no_daemon_exits_3_with_the_socket(self):
        missing = os.path.join(self.dir, "none.sock")
        stale = os.path.join(self.dir, "stale.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(stale)  # a socket file nobody listens on
        s.close()
        for path in (missing, stale):
            for cmd in (["stats"], ["get", "k"], ["ping"]):
                r = run_ctl(cmd, sock=path)
                self.assertEqual(r.returncode, UNREACHABLE, (path, cmd))
                self.assertEqual(r.stdout, b"")
                line = r.stderr.decode().strip()
                self.assertEqual(len(line.splitlines()), 1)
                self.assertTrue(line.startswith(
                    "cachectl: cannot reach shmcached: "), line)
                # The path, how to start the daemon or point at it, and
                # nothing about keys.
                self.assertIn(f" {path}", line)
                for hint in ("start the daemon", "shmcached", "systemctl",
                             "tools/run", "--socket", "$SHMC_SOCKET"):
                    self.assertIn(hint, line)
                self.assertNotIn("key", line)
        env = dict(environ_without_socket(), SHMC_SOCKET=missing)
        r = run_ctl(["stats"], env=env)
        self.assertEqual(r.returncode, UNREACHABLE)
        self.assertIn(missing.encode(), r.stderr)

    def test_cachectl_no_default_daemon_names_its_default_socket(self):
        # As another user, with no daemon of its own: the message names the
        # user's default socket and the system one, not "its default".
        if os.geteuid() != 0:
            self.skipTest("needs root to become another user")
        if os.path.exists("/run/shmcached/shmcached.sock"):
            self.skipTest("a system daemon runs here")
        env = environ_without_socket()
        env.pop("XDG_RUNTIME_DIR", None)
        r = subprocess.run([CACHECTL, "stats"], capture_output=True, env=env,
                           timeout=30, preexec_fn=become_nobody)
        self.assertEqual(r.returncode, UNREACHABLE, r.stderr)
        line = r.stderr.decode().strip()
        self.assertIn("/tmp/shmcached-65534/shmcached.sock", line)
        self.assertIn("/run/shmcached/shmcached.sock", line)
        self.assertIn("start the daemon", line)
        self.assertNotIn("key", line)

    def test_cachectl_usage_errors_exit_2_with_one_line(self):
        sock = os.path.join(self.dir, "none.sock")  # never reached
        for args in ([], ["frob"], ["get"], ["get", "a", "b"], ["set"],
                     ["del"], ["touch", "k"], ["touch", "k", "abc"],
                     ["touch", "k", "-1"], ["touch", "k", "99999999999"],
                     ["touch", "k", " 5"], ["touch", "k", "5s"],
                     ["touch", "k", "0x10"], ["set", "k", "v", "--ttl", "x"],
                     ["set", "k", "v", "--ttl"], ["set", "k", "v", "w"],
                     ["set", "k", "v", "--ttl=-3"], ["get", ""],
                     ["watch", "--interval", "0"],
                     ["watch", "--interval", "1e3"],
                     ["watch", "--count", "0"], ["get", "k", "--repair"],
                     ["stats", "--bogus"], ["set", "k", "v", "--json"],
                     ["stats", "--json=yes"], ["stats", "extra"],
                     ["check", "-x"], ["help", "frob"], ["save"],
                     ["--socket", "", "stats"]):
            r = run_ctl(args, sock=sock if args[:1] != ["--socket"] else None)
            self.assertEqual(r.returncode, USAGE, (args, r.stderr))
            self.assertEqual(r.stdout, b"", args)
            line = r.stderr.decode()
            self.assertEqual(len(line.strip().splitlines()), 1, (args, line))
            self.assertTrue(line.startswith("cachectl: "), line)
            self.assertIn("--help", line, args)

    def test_cachectl_help_for_each_command(self):
        r = run_ctl(["--help"])
        self.assertEqual((r.returncode, r.stderr), (OK, b""))
        text = r.stdout.decode()
        self.assertIn("Exit status:", text)
        for code in range(7):
            self.assertIn(f"\n  {code}  ", text)
        # A command whose arguments are wide gets its summary on the next
        # line, whole.
        self.assertIn("del PREFIX\n", text)
        self.assertIn("namespaces: drop every key under a prefix", text)
        commands = self.commands()
        for cmd in ("stats", "segments", "get", "set", "del", "ttl", "touch",
                    "flush", "check", "clients", "watch", "save", "load",
                    "ping", "shutdown", "gets", "add", "replace", "cas",
                    "append", "prepend", "incr", "decr"):
            self.assertIn(cmd, commands)
        for cmd in commands:
            for args in ([cmd, "--help"], [cmd, "-h"], ["help", cmd]):
                r = run_ctl(args)
                self.assertEqual((r.returncode, r.stderr), (OK, b""), args)
                self.assertTrue(r.stdout.decode().startswith(
                    "Usage: cachectl "), args)
                self.assertIn(f" {cmd}", r.stdout.decode().splitlines()[0])
        self.assertIn("--ttl", run_ctl(["set", "--help"]).stdout.decode())
        self.assertIn("--repair", run_ctl(["check", "-h"]).stdout.decode())
        self.assertEqual(run_ctl(["help"]).stdout, run_ctl(["-h"]).stdout)

    def test_cachectl_version(self):
        r = run_ctl(["--version"])
        self.assertEqual(r.returncode, OK)
        # Its own version and the library's it runs with: one version,
        # from meson.build, in both.
        m = re.match(r"^cachectl (\d+\.\d+\.\d+) \(libshmc (\S+)\)\n$",
                     r.stdout.decode())
        self.assertIsNotNone(m, r.stdout)
        self.assertEqual(m.group(1), m.group(2))

    def test_cachectl_output_write_error_fails(self):
        if not os.path.exists("/dev/full"):
            self.skipTest("no /dev/full")
        with open("/dev/full", "wb") as full:
            r = subprocess.run([CACHECTL, "--help"], stdout=full,
                               stderr=subprocess.PIPE, timeout=p.HANG_S)
        self.assertEqual(r.returncode, FAILED)
        self.assertIn(b"write error", r.stderr)


def main():
    global DAEMON, CACHECTL
    DAEMON, CACHECTL = p.binaries(2, __doc__)
    return p.run_tests(sys.argv[3:], "shmc-ctl-")


if __name__ == "__main__":
    sys.exit(main())
