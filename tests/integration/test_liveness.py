#!/usr/bin/env python3
"""Who a client is, over the raw protocol: identities and table slots.

    test_liveness.py DAEMON CRASH_CLIENT

HELLO's previous client id is given back only to the process that had it;
a client that says BYE is forgotten at once, so that a process opening a
handle per request never fills the client table;
a client table filled with garbage through the mapping does not lock new
clients out (at a restart, nor while the daemon runs); a peer that never
sends HELLO is disconnected, freeing its --max-clients slot.
"""
import mmap
import os
import struct
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shmcproto as p  # noqa: E402

CLIENT = None
TABLE_OFF, SLOT, CLIENTS = 4096, struct.Struct("<IIQ"), 4096  # layout.h
NEXT_ID_OFF = 144  # region_hdr.next_client_id
FOREIGN = 1 << 63

# A process that says HELLO and prints its id; then, for each id read on
# stdin, asks for it back on a new connection and prints the id it got.
HOLD = """
import sys
sys.path.insert(0, sys.argv[1])
import shmcproto as p
c = p.Client(sys.argv[2])
print(c.hello()[0], flush=True)
for line in sys.stdin:
    c = p.Client(sys.argv[2])
    print(c.hello(int(line))[0], flush=True)
    c.close()
"""


def start_of(pid):
    """Start time of pid (clock ticks after boot), /proc/PID/stat field 22."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])

# HELLO with prev id from another process; prints the id it got.
OTHER = """
import sys
sys.path.insert(0, sys.argv[1])
import shmcproto as p
c = p.Client(sys.argv[2])
print(c.hello(int(sys.argv[3]))[0])
c.close()
"""


class Liveness(p.DaemonCase):

    def wait_gone(self, cid):
        """Until no connection has client id cid."""
        deadline = time.monotonic() + 10
        c = p.Client(self.d.sock)
        while any(e["id"] == cid for e in c.clients()):
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        c.close()

    def test_liveness_prev_id_only_for_its_own_process(self):
        c = p.Client(self.d.sock)
        cid = c.hello()[0]
        c.close()
        self.wait_gone(cid)
        # Another process asks for it: a new id.
        r = subprocess.run([sys.executable, "-c", OTHER,
                            os.path.dirname(os.path.abspath(p.__file__)),
                            self.d.sock, str(cid)],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotEqual(int(r.stdout), cid)
        self.assertIn(f"asked for client id {cid}, which is not its own",
                      self.d.logtext())
        # The process that had it gets it back.
        c = p.Client(self.d.sock)
        self.assertEqual(c.hello(cid)[0], cid)
        c.close()

    def table_ids(self):
        fd = os.open("/dev/shm" + self.d.name, os.O_RDONLY)
        region = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        os.close(fd)
        try:
            return {SLOT.unpack_from(region, TABLE_OFF + i * SLOT.size)[0]
                    for i in range(CLIENTS)} - {0}
        finally:
            region.close()

    def test_liveness_bye_forgets_the_id_plain_close_keeps_it(self):
        bye = p.Client(self.d.sock)
        bye_id = bye.hello()[0]
        bye.call("BYE").end()
        bye.close()
        kept = p.Client(self.d.sock)
        kept_id = kept.hello()[0]
        kept.close()  # this process lives on: its id stays its own
        self.wait_gone(bye_id)
        self.wait_gone(kept_id)
        deadline = time.monotonic() + p.HANG_S
        while bye_id in self.table_ids():
            self.assertLess(time.monotonic(), deadline, self.d.logtext())
            time.sleep(0.02)
        self.assertIn(kept_id, self.table_ids())
        # A BYE'd id is not given back, even to its own process.
        c = p.Client(self.d.sock)
        self.assertNotEqual(c.hello(bye_id)[0], bye_id)
        c.close()

    def test_liveness_handle_per_request_never_fills_the_table(self):
        # More handles than the table has slots, one after another, in
        # one process that lives throughout: shmc_close() says BYE.
        r = subprocess.run([CLIENT, self.d.sock, "reopen", "h",
                            str(CLIENTS + 200)],
                           capture_output=True, text=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr + self.d.logtext())

    def fill_table_with_garbage(self):
        fd = os.open("/dev/shm" + self.d.name, os.O_RDWR)
        region = mmap.mmap(fd, 0)
        os.close(fd)
        # Slots a careless check takes for live processes: pid 1 (always
        # there) with no start time or another start time, pid -1
        # (kill(-1, 0) succeeds), a "foreign" pid, pid 0, an exited pid;
        # with ids the region handed out (next_client_id moved past them),
        # so that only the judgement of the process can free them.
        gone = subprocess.Popen(["true"])
        gone.wait()
        kinds = [(1, 0), (1, 12345), (0xFFFFFFFF, 0), (1, FOREIGN),
                 (0, 12345), (gone.pid, start_of(os.getpid()))]
        struct.pack_into("<I", region, NEXT_ID_OFF, 0x10000000 + CLIENTS)
        for i in range(CLIENTS):
            pid, start = kinds[i % len(kinds)]
            SLOT.pack_into(region, TABLE_OFF + i * SLOT.size,
                           0x10000000 + i, pid, start)
        region.close()

    def hello_works(self):
        c = p.Client(self.d.sock)
        try:
            return c.hello()[0] > 1
        except p.ProtoError as e:
            self.assertEqual(e.err, p.EUSERS, e.msg)
            return False
        finally:
            c.close()

    def test_liveness_garbage_table_cleared_at_restart(self):
        self.d.stop()
        self.fill_table_with_garbage()
        self.d.start()
        self.assertTrue(self.hello_works(), self.d.logtext())
        self.assertIn("slot(s) of dead clients or garbage freed",
                      self.d.logtext())

    def holder(self):
        """A live process that took a client id (and keeps living)."""
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD,
             os.path.dirname(os.path.abspath(p.__file__)), self.d.sock],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.stdout.close)
        self.addCleanup(proc.stdin.close)
        return proc, int(proc.stdout.readline())

    def test_liveness_forged_claim_on_an_id_at_restart_steals_nothing(self):
        """While no daemon runs, a process writes a slot that claims a live
        client's id as its own, ahead of the real one: the next daemon
        neither takes that client's locks nor gives its id away."""
        victim, vid = self.holder()
        thief, _ = self.holder()
        self.d.stop()
        fd = os.open("/dev/shm" + self.d.name, os.O_RDWR)
        region = mmap.mmap(fd, 0)
        os.close(fd)
        try:
            # The victim's real slot moves to the end of the table, the
            # forged one takes its place, ahead of it.
            slots = [SLOT.unpack_from(region, TABLE_OFF + i * SLOT.size)
                     for i in range(CLIENTS)]
            real = [i for i, s in enumerate(slots) if s[0] == vid]
            self.assertEqual(len(real), 1)
            SLOT.pack_into(region, TABLE_OFF + (CLIENTS - 1) * SLOT.size,
                           *slots[real[0]])
            SLOT.pack_into(region, TABLE_OFF + real[0] * SLOT.size, vid,
                           thief.pid, start_of(thief.pid))
            # The victim holds segment 3's lock, mid-write.
            base, stride = struct.unpack_from("<QQ", region, 24)
            seg = base + 3 * stride
            struct.pack_into("<I", region, seg, vid << 1)
            seq, = struct.unpack_from("<I", region, seg + 4)
            struct.pack_into("<I", region, seg + 4, seq | 1)
            self.d.start()
            self.assertEqual(struct.unpack_from("<I", region, seg)[0],
                             vid << 1, "a live client's lock was taken")
            # Neither claimant gets the id back.
            for proc in (thief, victim):
                proc.stdin.write(f"{vid}\n")
                proc.stdin.flush()
                self.assertNotEqual(int(proc.stdout.readline()), vid)
            # Once both claimants are gone, the daemon recovers the lock.
            for proc in (victim, thief):
                proc.kill()
                proc.wait()
            deadline = time.monotonic() + p.HANG_S
            while struct.unpack_from("<I", region, seg)[0] != 0:
                self.assertLess(time.monotonic(), deadline,
                                "lock never recovered:\n" + self.d.logtext())
                time.sleep(0.02)
        finally:
            region.close()

    def test_liveness_garbage_table_cleared_while_running(self):
        self.fill_table_with_garbage()
        deadline = time.monotonic() + p.HANG_S
        while not self.hello_works():
            self.assertLess(time.monotonic(), deadline, self.d.logtext())
            time.sleep(0.05)
        # The daemon rewrites the table from its own record: the garbage
        # goes, what others read there is true again.
        garbage = range(0x10000000, 0x10000000 + CLIENTS)
        while any(i in garbage for i in self.table_ids()):
            self.assertLess(time.monotonic(), deadline, "garbage stays")
            time.sleep(0.05)


class HelloTimeout(p.DaemonCase):
    extra = ["--max-clients", "2", "--hello-timeout", "200"]

    def test_liveness_peer_without_hello_is_dropped(self):
        idle = [p.Client(self.d.sock, timeout=30) for _ in range(2)]
        # Both slots taken: until the idle peers are dropped, a third is
        # refused; then it is served.
        deadline = time.monotonic() + 30
        while True:
            c = p.Client(self.d.sock)
            try:
                self.assertGreater(c.hello()[0], 1)
                break
            except p.ProtoError as e:
                self.assertEqual(e.err, p.EUSERS, e.msg)
            finally:
                c.close()
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        for c in idle:
            # Told why, then closed.
            type_, _, body = c.read_frame()
            self.assertEqual(type_, p.ERROR)
            r = p.Reader(body)
            self.assertEqual(-r.i32(), p.ETIMEDOUT)
            self.assertIn("HELLO", r.str())
            with self.assertRaises(EOFError):
                c.read_frame()
            c.close()


def main():
    global CLIENT
    p.DaemonCase.binary, CLIENT = p.binaries(2, __doc__)
    return p.run_tests(sys.argv[3:], "shmc-liveness-")


if __name__ == "__main__":
    sys.exit(main())
