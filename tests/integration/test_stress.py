#!/usr/bin/env python3
"""Short runs of shmc-stress (tests/stress/stress.c) against the real daemon
on a throwaway socket and region (shmcproto.DaemonProc): a clean run, a run
with chaos (workers SIGKILLed and replaced), a run with no daemon, and the
proof that the program does catch a bad value (its --inject-bad hook) and
a damaged segment (bytes written into the region through the mapping).

    test_stress.py DAEMON_BINARY STRESS_BINARY [unittest args]

Prints "N passed, N failed, N skipped" last; exits 0 if all passed, 1 if
not, 77 when the host cannot run it.  Takes about 15 seconds.

Load-proof: nothing here asserts how much happens in a given time (a run
on a busy 2-core machine does fewer operations, kills and replacements);
deadlines are generous and only catch hangs.
"""
import json
import mmap
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shmcproto as p  # noqa: E402

DAEMON = None
STRESS = None

# Exit statuses of shmc-stress (enum stress_exit).
OK, FAILED, USAGE, UNREACHABLE = 0, 1, 2, 3

# Offsets in the region header and a segment header (shared/layout.h), as
# in test_daemon.py.
HDR_SEG_BASE = 24
SEG_USED = 64 + 8


def run_stress(sock, *args, timeout=120):
    """Runs shmc-stress --json; returns (exit status, summary dict or None,
    stderr)."""
    proc = subprocess.run([STRESS, "--socket", sock, "--json", *args],
                          capture_output=True, text=True, timeout=timeout)
    summary = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            summary = json.loads(line)
            break
    return proc.returncode, summary, proc.stderr


class StressTest(unittest.TestCase):
    """One daemon for the runs that leave it healthy."""

    @classmethod
    def setUpClass(cls):
        cls.d = p.DaemonProc(DAEMON).start()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.d.unlink()

    def assert_clean(self, rc, s, err):
        self.assertIsNotNone(s, f"no JSON summary; stderr:\n{err}")
        self.assertEqual(rc, OK, f"stderr:\n{err}\nsummary: {s}")
        self.assertTrue(s["ok"])
        self.assertIsNone(s["failure"])
        self.assertEqual(s["bad"], 0)
        self.assertEqual(s["unexpected_errors"], 0)
        self.assertEqual(s["etimedout"], 0)
        self.assertEqual(s["check_segments"], 16)
        self.assertEqual(s["check_bad"], 0)
        self.assertIsNone(s["check_error"])

    def test_stress_short_run_is_clean(self):
        # --min-ops: however busy the machine, enough operations for every
        # kind to have run (the rarest is a few % of them).
        rc, s, err = run_stress(self.d.sock, "--procs", "2", "--threads",
                                "2", "--duration", "3", "--keys", "2000",
                                "--min-ops", "20000")
        self.assert_clean(rc, s, err)
        self.assertGreaterEqual(s["ops"], 20000)
        if s["euclean"] == 0:  # a set that failed counts in ops only
            self.assertEqual(s["ops"], s["gets"] + s["sets"] + s["aborts"] +
                             s["dels"] + s["touches"] + s["adds"] +
                             s["cases"] + s["incrs"] + s["appends"])
        # Every kind of get and set ran, and values were checked.
        for k in ("hits", "misses", "sets", "peeks", "get_exs", "reads",
                  "get_or_loads", "reserves", "dels", "touches", "adds",
                  "cases", "incrs", "decrs", "appends"):
            self.assertGreater(s[k], 0, k)
        self.assertEqual(s["kills"], 0)
        self.assertEqual(s["workers_started"], 2)
        self.assertGreaterEqual(s["elapsed_s"], 3)

    def test_stress_counters_count_every_increment(self):
        # Counters and logs only, small values, on a daemon of its own
        # (the shared one is full of the other runs' values): nothing is
        # evicted, so every counter is checked exactly against the
        # increments its workers saw acknowledged (no worker is killed),
        # and every down-counter against the decrements.
        d = p.DaemonProc(DAEMON).start()
        try:
            rc, s, err = run_stress(d.sock, "--procs", "2", "--threads",
                                    "2", "--duration", "1", "--keys",
                                    "100", "--max-value", "200",
                                    "--min-ops", "5000", "--mix",
                                    "get=10,incr=60,append=30")
        finally:
            d.stop()
            d.unlink()
        self.assert_clean(rc, s, err)
        self.assertEqual(s["cache_evictions"], 0)
        self.assertEqual(s["counters_exact"], 16)
        self.assertEqual(s["down_counters_exact"], 16)
        self.assertGreater(s["decrs"], 0)
        self.assertGreater(s["incrs"], 0)
        self.assertGreater(s["appends"], 0)

    def test_stress_chaos_kills_workers_and_sees_no_bad_value(self):
        rc, s, err = run_stress(self.d.sock, "--procs", "2", "--threads",
                                "2", "--duration", "4", "--chaos",
                                "--chaos-interval", "200")
        self.assert_clean(rc, s, err)
        self.assertGreater(s["kills"], 0)
        # Each victim reaped during the run was replaced.  Those still
        # dying when the run ended were not: at most one per worker slot
        # (a slot's worker is not killed again before it is reaped), and
        # on a busy machine a victim can take longer to die than the
        # interval between kills.
        replaced = s["workers_started"] - 2
        self.assertLessEqual(replaced, s["kills"])
        self.assertGreaterEqual(replaced, s["kills"] - 2)
        self.assertGreater(s["ops"], 0)
        # Victims may die holding locks, yet nobody waits out the 2 s lock
        # timeout (assert_clean: etimedout == 0): the daemon recovers them.
        # Other clients keep being served afterwards.
        c = p.Client(self.d.sock)
        c.ping()
        c.close()

    def test_stress_detects_a_bad_value_and_reports_it(self):
        # Worker 0 damages one payload byte of every 50th value it writes
        # (after the checksum); with 20 keys one is read back at once.
        # The run stops at the first bad value, long before its duration
        # (run_stress's deadline is shorter than that duration).
        rc, s, err = run_stress(self.d.sock, "--procs", "2", "--threads",
                                "2", "--duration", "600", "--keys", "20",
                                "--inject-bad", timeout=120)
        self.assertEqual(rc, FAILED, err)
        self.assertLess(s["elapsed_s"], 600, "did not stop at once")
        self.assertFalse(s["ok"])
        self.assertGreaterEqual(s["bad"], 1)
        self.assertIn("bad value", s["failure"])
        injected = set(re.findall(
            r'inject-bad: key "([^"]+)" offset (\d+) of (\d+)', err))
        self.assertTrue(injected, err)
        self.assertIn("BAD VALUE", err)
        m = re.search(r'problem +checksum mismatch.*\n'
                      r' +key +"([^"]+)" .*\n'
                      r'(?:.*\n)*? +first bad byte at offset (\d+) of (\d+) '
                      r'\(payload\)', err)
        self.assertIsNotNone(m, err)
        # The report names exactly a key and byte that were damaged.
        self.assertIn(m.groups(), injected)

    def test_stress_usage_errors_exit_2(self):
        for args in (["--mix", "get=60,fly=3"], ["--procs", "0"],
                     ["--duration", "x"], ["--bogus"]):
            r = subprocess.run([STRESS, "--socket", self.d.sock, *args],
                               capture_output=True, text=True, timeout=p.HANG_S)
            self.assertEqual(r.returncode, USAGE, args)
            self.assertIn("shmc-stress:", r.stderr)
            self.assertEqual(r.stdout, "")


class NoDaemon(unittest.TestCase):
    def test_stress_without_daemon_fails_with_a_clear_message(self):
        sock = os.path.join(tempfile.mkdtemp(), "none.sock")
        r = subprocess.run([STRESS, "--socket", sock, "--duration", "1"],
                           capture_output=True, text=True, timeout=p.HANG_S)
        self.assertEqual(r.returncode, UNREACHABLE)
        self.assertIn(f"cannot reach the daemon at {sock}", r.stderr)
        self.assertEqual(r.stdout, "")


class DamagedRegion(unittest.TestCase):
    def setUp(self):
        self.d = p.DaemonProc(DAEMON).start()

    def tearDown(self):
        self.d.stop()
        self.d.unlink()

    def test_stress_fails_when_check_finds_a_damaged_segment(self):
        # Damage every segment's state through the mapping once the
        # workers have stopped, just before the final check
        # (--pause-before-check).  The daemon's sweep repairs one segment
        # per 100 ms tick here, so it needs 16 ticks to repair them all
        # before the check: the check must see the rest and fail the run.
        proc = subprocess.Popen(
            [STRESS, "--socket", self.d.sock, "--json", "--procs", "2",
             "--threads", "2", "--duration", "1", "--keys", "1",
             "--pause-before-check"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            err_lines = []
            for line in proc.stderr:  # the workers run for 1 s
                err_lines.append(line)
                if "waiting for a line on stdin" in line:
                    break
            self.assertIn("waiting for a line on stdin", "".join(err_lines))
            c = p.Client(self.d.sock)
            c.hello()
            m = mmap.mmap(c.fds[0], 8 << 20)
            base, stride = struct.unpack_from("<QQ", m, HDR_SEG_BASE)
            for seg in range(16):
                struct.pack_into("<I", m, base + seg * stride + SEG_USED,
                                 0xFFFFFF)
            m.close()
            c.close()
            out, err = proc.communicate("go\n", timeout=120)
            err = "".join(err_lines) + err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual(proc.returncode, FAILED, err)
        s = json.loads(out.splitlines()[-1])
        self.assertFalse(s["ok"])
        self.assertEqual(s["bad"], 0)
        self.assertGreaterEqual(s["check_bad"], 1)
        self.assertIn("integrity check found", s["failure"])


def main():
    global DAEMON, STRESS
    DAEMON, STRESS = p.binaries(2, __doc__)
    return p.run_tests(sys.argv[3:], "shmc-stress-")


if __name__ == "__main__":
    sys.exit(main())
