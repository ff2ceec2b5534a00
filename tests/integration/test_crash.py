#!/usr/bin/env python3
"""A client killed inside a critical section, at every fault point.

    test_crash.py DAEMON CRASH_CLIENT

For each point of shared/fault.h, and for the item operations (add, cas,
incr, decr, append, prepend) at each point their steps pass: a client armed
with SHMC_FAULT stops inside the segment lock at that step; the test
SIGKILLs it and checks that the daemon recovered the segment within 100 ms
(from its millisecond log stamps), that no value read afterwards is torn
or foreign (values, counters and append logs are self-validating), that
the integrity walk is clean, and that other clients carry on.

And the other side (LiveHolder): a holder that is alive keeps its lock
while the daemon runs, whatever the client table says and even when the
daemon drops its connection; it is recovered only once it has died.

$SHMC_TEST_WRAP, when set, is a command (split like a shell's words) that
every CRASH_CLIENT that runs to its end runs under, e.g. valgrind (tools/test
does): a client it reports an error in exits non-zero, which fails the case.
The client killed inside the lock runs unwrapped: SIGKILL leaves valgrind no
exit to report at, and its slower teardown would change the recovery timed.

SHMC_FAULT works only in a build configured with -Dfault_injection=true
(tools/test sets it); meson says which in $SHMC_TEST_FAULT_INJECTION, and
the test exits 77 (skipped) when it is "false" - or fails, when
$SHMC_TEST_REQUIRE_FAULT is set (tools/test sets it).
"""
import mmap
import datetime
import os
import re
import select
import shlex
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shmcproto as p  # noqa: E402

CLIENT = None
WRAP = shlex.split(os.environ.get("SHMC_TEST_WRAP", ""))
# Deadlines only catch hangs: none of these tests asserts how fast anything
# is (a busy 2-core machine is slower), only what happened and who did it.
HANG_S = 30

# point -> (mode, keys, value bytes): enough churn to reach the point.
POINTS = {
    "locked": ("churn", 200, 100),
    "set-begin": ("churn", 200, 100),
    "set-header": ("churn", 200, 2000),
    "set-value": ("churn", 200, 2000),
    "overwrite": ("churn", 200, 2000),
    "evacuate-move": ("churn", 20000, 1000),
    "evacuate-drop": ("churn", 20000, 1000),
    "delete": ("del", 200, 100),
}

# The item operations (add, cas, incr, decr, append, prepend), each killed at
# the points its steps pass: case -> (point, mode, keys, value bytes, the
# kind of value crash_client verify checks).
ITEM_CASES = {
    "set_begin_in_add": ("set-begin", "add", 200, 100, "value"),
    "set_header_in_add": ("set-header", "add", 200, 2000, "value"),
    "set_value_in_add": ("set-value", "add", 200, 2000, "value"),
    "overwrite_in_cas": ("overwrite", "cas", 200, 2000, "value"),
    "version_in_cas": ("version", "cas", 200, 2000, "value"),
    "set_value_in_cas": ("set-value", "cas", 200, 2000, "value"),
    "set_header_in_incr": ("set-header", "incr", 200, 100, "count"),
    "incr_digits_in_incr": ("incr-digits", "incr", 200, 100, "count"),
    "version_in_incr": ("version", "incr", 200, 100, "count"),
    "incr_digits_in_decr": ("incr-digits", "decr", 200, 100, "count"),
    "version_in_decr": ("version", "decr", 200, 100, "count"),
    "append_value_in_append": ("append-value", "append", 200, 100, "log"),
    "append_header_in_append": ("append-header", "append", 200, 100,
                                "log"),
    "join_value_in_append": ("join-value", "append", 200, 100, "log"),
    "join_value_in_prepend": ("join-value", "prepend", 200, 100, "log"),
    "version_in_prepend": ("version", "prepend", 200, 100, "log"),
}

STAMP = re.compile(r"^(\S+Z) shmcached\[\d+\] warn: client \d+ \(pid (\d+)\) "
                   r"died holding (\d+) segment lock")
# The once-a-second liveness sweep can find a killed client dead before
# the loop handles its closed connection: then it recovers the locks.
SWEEP = re.compile(r"^(\S+Z) shmcached\[\d+\] warn: liveness sweep: (\d+) "
                   r"dead client\(s\) held segment locks")


def log_time(stamp):
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


TABLE_OFF, SLOT = 4096, struct.Struct("<IIQ")  # layout.h: client_slot
CLIENTS = 4096


class Base(p.DaemonCase):
    def client(self, *args, env=None, **kw):
        return subprocess.run(WRAP + [CLIENT, self.d.sock] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=60,
                              env=env, **kw)

    def stop_at(self, point, env=None, case=None, **kw):
        mode, n, vlen = POINTS[point] if case is None else case
        if mode == "del":
            self.assertEqual(self.client("fill", "crash", n, vlen).returncode, 0)
        env = dict(os.environ, SHMC_FAULT=point, **(env or {}))
        kw.setdefault("stdout", subprocess.DEVNULL)
        proc = subprocess.Popen([CLIENT, self.d.sock, mode, "crash", str(n),
                                 str(vlen)], env=env, stderr=subprocess.PIPE,
                                **kw)
        deadline = time.monotonic() + 30
        line = b""
        while b"\n" not in line:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                proc.kill()
                self.fail(f"client never reached {point}: {line!r}")
            if select.select([proc.stderr], [], [], left)[0]:
                line += os.read(proc.stderr.fileno(), 256)
        self.assertIn(f"shmc-fault: {point}".encode(), line)
        return proc


class Crash(Base):
    def run_point(self, point, case=None, kind="value"):
        # Data that must survive, spread over every segment.
        self.assertEqual(self.client("fill", "keep", 300, 100).returncode, 0)
        proc = self.stop_at(point, case=case)
        killed_at = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()

        # The daemon took the lock over: when it handled the closed
        # connection (conn.c names the pid), or, if its liveness sweep
        # found the process dead first, in that sweep; never a waiter (no
        # other client runs).  How long it took (well under 100 ms on an
        # idle machine: docs/RELIABILITY.md) is not asserted.
        deadline = time.monotonic() + HANG_S
        match = None
        while match is None:
            self.assertLess(time.monotonic(), deadline,
                            "no recovery logged:\n" + self.d.logtext())
            for ln in self.d.logtext().splitlines():
                m = STAMP.match(ln)
                if m and int(m.group(2)) == proc.pid:
                    match = m
                    held = m.group(3)
                m = SWEEP.match(ln)
                if m and log_time(m.group(1)) >= killed_at - 0.01:
                    match = m
                    held = m.group(2)
            time.sleep(0.01)
        self.assertGreaterEqual(int(held), 1)
        self.assertGreaterEqual(log_time(match.group(1)), killed_at - 0.01)

        # Nothing torn or foreign is served; the walk is clean.
        n = (case or POINTS[point])[1]
        for prefix, n, k in (("crash", n, kind), ("keep", 300, "value")):
            r = self.client("verify", prefix, n, k)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        c = p.Client(self.d.sock)
        self.assertEqual(c.check()["bad"], 0)
        c.close()
        # Others carry on, on every segment.
        self.assertEqual(self.client("fill", "after", 500, 100).returncode, 0)
        r = self.client("verify", "after", 500)
        self.assertEqual(r.stdout.split()[:2], ["ok", "500"], r.stdout)


class NoDaemon(Base):
    def attached(self, *args):
        """A client that attaches now and starts on go()."""
        proc = subprocess.Popen(WRAP + [CLIENT, self.d.sock] + [str(a) for a in args],
                                env=dict(os.environ, SHMC_WAIT="1"),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.assertEqual(proc.stdout.readline().strip(), "ready")
        return proc

    def test_crash_holder_dies_while_daemon_is_down(self):
        self.assertEqual(self.client("fill", "keep", 300, 100).returncode, 0)
        n = POINTS["set-value"][1]
        verifiers = [self.attached("verify", "crash", n),
                     self.attached("verify", "keep", 300)]
        writer = self.attached("fill", "after", 300, 100)
        holder = self.stop_at("set-value")
        self.d.stop(sig=signal.SIGKILL)  # no daemon to recover anything
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        holder.stderr.close()
        # The attached clients find the holder dead through the client
        # table, take the lock over and reset the half-written segment
        # themselves, never a torn value.  Had they waited out the 2 s
        # lock timeout instead, their get or set would have returned
        # -ETIMEDOUT, and crash_client exits 1 on that.
        for proc in verifiers + [writer]:
            out, err = proc.communicate("go\n", timeout=HANG_S)
            self.assertEqual(proc.returncode, 0, out + err)
        # The daemon comes back and adopts the region: all consistent.
        self.d.start()
        c = p.Client(self.d.sock)
        self.assertEqual(c.check()["bad"], 0)
        c.close()
        r = self.client("verify", "after", 300)
        self.assertEqual(r.stdout.split()[:2], ["ok", "300"], r.stdout)


class LiveHolder(Base):
    """A live holder, stopped at set-begin (mutation open) on the segment
    of one of the "crash" keys; a writer of every "crash" key must wait for
    it, and time out, as long as it lives."""
    extra = ["--lock-timeout", "300"]

    def tearDown(self):
        for proc in getattr(self, "procs", []):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for f in (proc.stdin, proc.stdout, proc.stderr):
                if f:
                    f.close()
        super().tearDown()

    def holder(self, env=None, **kw):
        self.assertEqual(self.client("fill", "keep", 300, 100).returncode, 0)
        proc = self.stop_at("set-begin", env=env, **kw)
        self.procs = [proc]
        return proc

    def repairs(self):
        c = p.Client(self.d.sock)
        try:
            return c.stats()["repairs"]
        finally:
            c.close()

    def assert_lock_kept(self):
        """A writer times out on the held segment; nothing was reset."""
        before = self.repairs()
        r = self.client("fill", "crash", 200, 100)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("timed out waiting for a lock", r.stderr)
        self.assertEqual(self.repairs(), before)
        self.assertNotIn("died holding", self.d.logtext())

    def assert_recovered_after_death(self, holder):
        holder.kill()
        holder.wait()
        deadline = time.monotonic() + 20
        while True:
            r = self.client("fill", "crash", 200, 100)
            if r.returncode == 0:
                break
            self.assertLess(time.monotonic(), deadline,
                            "never recovered:\n" + self.d.logtext())
        for prefix, n in (("crash", 200), ("keep", 300)):
            r = self.client("verify", prefix, n)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def client_id_of(self, pid):
        c = p.Client(self.d.sock)
        try:
            ids = [e["id"] for e in c.clients() if e["pid"] == pid]
        finally:
            c.close()
        self.assertEqual(len(ids), 1)
        return ids[0]

    def table_slot(self, region, cid):
        for i in range(CLIENTS):
            off = TABLE_OFF + i * SLOT.size
            if SLOT.unpack_from(region, off)[0] == cid:
                return off
        self.fail(f"client {cid} not in the table")

    def test_crash_forged_pid_does_not_make_a_live_holder_dead(self):
        holder = self.holder()
        cid = self.client_id_of(holder.pid)
        gone = subprocess.Popen(["true"])
        gone.wait()  # a pid that no process has now
        fd = os.open("/dev/shm" + self.d.name, os.O_RDWR)
        region = mmap.mmap(fd, 0)
        os.close(fd)
        try:
            for forged in (gone.pid, 0xFFFFFFFF, 0, 0x7FFFFFFF):
                off = self.table_slot(region, cid)
                _, pid, start = SLOT.unpack_from(region, off)
                SLOT.pack_into(region, off, cid, forged, start)
                # Waiters leave the judgement to the daemon, which knows
                # the holder lives: they time out, nothing is reset.
                self.assert_lock_kept()
            # The daemon rewrites what others wrote in its table.
            deadline = time.monotonic() + 10
            while SLOT.unpack_from(region, off)[1] != holder.pid:
                self.assertLess(time.monotonic(), deadline,
                                "forged slot never restored")
                time.sleep(0.05)
        finally:
            region.close()
        self.assert_recovered_after_death(holder)

    def test_crash_daemon_keeps_locks_of_a_live_client_it_disconnects(self):
        holder = self.holder(env={"SHMC_BREAK": "1"}, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
        # The holder's main thread sends a broken frame header; the daemon
        # drops its connection while the other thread holds the lock.
        holder.stdin.write(b"go\n")
        holder.stdin.flush()
        self.assertEqual(holder.stdout.readline(), b"broken\n")
        deadline = time.monotonic() + 10
        while f"pid {holder.pid} sent a bad frame header" not in \
                self.d.logtext():
            self.assertLess(time.monotonic(), deadline, self.d.logtext())
            time.sleep(0.02)
        deadline = time.monotonic() + 10
        c = p.Client(self.d.sock)
        while any(e["pid"] == holder.pid for e in c.clients()):
            self.assertLess(time.monotonic(), deadline, "still connected")
            time.sleep(0.02)
        c.close()
        self.assert_lock_kept()
        # Once it is dead, the daemon recovers its lock: its liveness
        # sweep, or its expiry sweep's lock wait, whichever finds the
        # holder dead first (waiters leave it to the daemon, which runs).
        self.assert_recovered_after_death(holder)


class Coverage(unittest.TestCase):
    def test_crash_every_fault_point_has_a_case(self):
        """Each point of shared/fault.h is killed at by some case."""
        header = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "..", "..", "shared", "fault.h")
        with open(header) as f:
            names = re.findall(r'X\(\w+, "([a-z-]+)"\)', f.read())
        self.assertIn("set-begin", names)
        covered = set(POINTS) | {c[0] for c in ITEM_CASES.values()}
        self.assertEqual(sorted(set(names) - covered), [])


def make_test(point):
    return lambda self: self.run_point(point)


def make_item_test(point, mode, n, vlen, kind):
    return lambda self: self.run_point(point, (mode, n, vlen), kind)


for _pt in POINTS:
    setattr(Crash, "test_crash_killed_at_" + _pt.replace("-", "_"),
            make_test(_pt))
for _name, _case in ITEM_CASES.items():
    setattr(Crash, "test_crash_killed_at_" + _name, make_item_test(*_case))


def main():
    global CLIENT
    if os.environ.get("SHMC_TEST_FAULT_INJECTION") == "false":
        print("this build has no fault injection (SHMC_FAULT is ignored): "
              "configure it with -Dfault_injection=true to run the crash "
              "tests")
        # tools/test asks for them: a skip there would hide a lost option.
        return 1 if os.environ.get("SHMC_TEST_REQUIRE_FAULT") else 77
    p.DaemonCase.binary, CLIENT = p.binaries(2, __doc__)
    return p.run_tests(sys.argv[3:], "shmc-crash-")


if __name__ == "__main__":
    sys.exit(main())
