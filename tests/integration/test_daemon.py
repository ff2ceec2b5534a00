#!/usr/bin/env python3
"""Integration tests of shmcached: the real daemon binary on a throwaway
socket and region, driven over its control socket.

    test_daemon.py DAEMON_BINARY {uring|epoll|fallback} [NO_URING_WRAPPER]

Every test runs against the event loop named on the command line (meson
registers the file once per loop).  "fallback" runs the daemon under a
seccomp wrapper that makes io_uring_setup fail, as on a host where
io_uring is disabled: the daemon must fall back to epoll by itself.
Exits 77 when the host cannot run it.
"""
import mmap
import resource
import select
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shmcproto as p  # noqa: E402

BINARY = None
LOOP_ARGS = []
FALLBACK = [False]

# Offsets in the region header and a segment header (shared/layout.h).
HDR_NSEG, HDR_SEG_BASE, HDR_STRIDE = 12, 24, 32
HDR_CLOCK = 128
SEG_LOCK, SEG_SEQ = 0, 4


def region_pmd_kb(pid, path):
    """kB of process pid's mapping of path mapped with huge pages, from
    /proc/PID/smaps (ShmemPmdMapped + FilePmdMapped); -1 if not mapped."""
    kb, inside = -1, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                inside = len(head) >= 6 and head[5] == path
                if inside:
                    kb = max(kb, 0)
            elif inside and head[0] in ("ShmemPmdMapped:", "FilePmdMapped:"):
                kb += int(head[1])
    return kb


class DaemonTest(unittest.TestCase):
    extra = []

    def setUp(self):
        self.d = p.DaemonProc(BINARY, extra=LOOP_ARGS + self.extra).start()
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        self.d.stop()
        self.d.unlink()

    def client(self):
        c = p.Client(self.d.sock)
        self.clients.append(c)
        return c

    def assert_serving(self):
        c = p.Client(self.d.sock)
        c.ping()
        c.close()

    def wait_until(self, cond, what):
        """Polls cond() until it is true; fails after p.HANG_S (a deadline
        that only catches hangs, never a measure of speed)."""
        deadline = time.monotonic() + p.HANG_S
        while not cond():
            self.assertLess(time.monotonic(), deadline, what)
            time.sleep(0.02)

    def gone(self, c, key):
        try:
            c.get(key)
        except p.ProtoError as e:
            self.assertEqual(e.err, p.ENOENT)
            return True
        return False


class Loop(DaemonTest):
    def test_event_loop_is_the_expected_one(self):
        self.client().ping()
        log = self.d.logtext()
        if FALLBACK[0]:
            self.assertIn("io_uring unavailable", log)
            self.assertIn("event loop: epoll", log)
        elif LOOP_ARGS:
            self.assertIn("event loop: epoll", log)
        else:
            self.assertIn("event loop: io_uring", log)


class Handshake(DaemonTest):
    def test_hello_passes_the_region(self):
        c = self.client()
        cid, fmt, size = c.hello()
        self.assertGreaterEqual(cid, 2)
        self.assertEqual(size, 8 << 20)
        self.assertEqual(len(c.fds), 1)
        m = mmap.mmap(c.fds[0], size)
        self.assertEqual(m[:8], b"SHMCCHE1")
        self.assertEqual(struct.unpack_from("<I", m, 8)[0], fmt)
        self.assertEqual(struct.unpack_from("<I", m, HDR_NSEG)[0], 16)
        # The daemon ticks the region clock.
        clock = struct.unpack_from("<I", m, HDR_CLOCK)[0]
        self.assertLess(abs(clock - time.time()), 30)  # wall clock seconds
        m.close()

    def test_client_ids_are_distinct(self):
        ids = {self.client().hello()[0] for _ in range(5)}
        self.assertEqual(len(ids), 5)

    def test_wrong_protocol_version_in_hello_is_refused(self):
        c = self.client()
        with self.assertRaises(p.ProtoError) as e:
            c.call("HELLO", p.u32(99) + p.u32(0) + p.u32(0))
        self.assertEqual(e.exception.err, p.EPROTO)
        c.ping()  # the connection goes on

    def test_clients_lists_connected_peers(self):
        a, b = self.client(), self.client()
        cid = a.hello()[0]
        rows = b.clients()
        self.assertIn(cid, [r["id"] for r in rows])
        me = [r for r in rows if r["id"] == cid][0]
        self.assertEqual(me["pid"], os.getpid())
        self.assertEqual(me["uid"], os.getuid())


class Requests(DaemonTest):
    def test_pipelined_requests_behind_large_replies(self):
        # Requests keep arriving while large replies are being sent: each
        # is answered in order with the whole value.  (The uring loop once
        # answered waiting frames under a recv the kernel was filling, and
        # moved the buffer beneath it: replies went missing or the framing
        # broke.)
        c = self.client()
        val = os.urandom(200 * 1024)
        c.set("big", val)
        frames = [c.frame(p.T["GET"], p.bstr("big")) for _ in range(200)]
        writer = threading.Thread(
            target=lambda: [c.sock.sendall(f) for f, _ in frames])
        writer.start()
        try:
            for i, (_, id_) in enumerate(frames):
                type_, rid, payload = c.read_frame()
                self.assertEqual((type_, rid), (p.T["GET"] | p.REPLY, id_),
                                 f"reply {i}")
                r = p.Reader(payload)
                r.u32()
                self.assertEqual(r.bytes(), val, f"reply {i}")
        finally:
            writer.join(p.HANG_S)

    def test_set_get_del(self):
        c = self.client()
        c.set("alpha", b"one")
        self.assertEqual(c.get("alpha"), (b"one", 0))
        c.set("alpha", b"two" * 1000)
        self.assertEqual(c.get("alpha")[0], b"two" * 1000)
        c.delete("alpha")
        with self.assertRaises(p.ProtoError) as e:
            c.get("alpha")
        self.assertEqual(e.exception.err, p.ENOENT)
        with self.assertRaises(p.ProtoError) as e:
            c.delete("alpha")
        self.assertEqual(e.exception.err, p.ENOENT)

    def test_large_value_round_trips(self):
        c = self.client()
        val = os.urandom(100_000)  # max_kv is ~230 KiB here
        c.set("big", val)
        self.assertEqual(c.get("big")[0], val)
        with self.assertRaises(p.ProtoError) as e:
            c.set("huge", b"x" * 1_000_000)
        self.assertEqual(e.exception.err, p.E2BIG)

    def test_ttl_and_touch(self):
        c = self.client()
        c.set("t", b"v", ttl=100)
        self.assertIn(c.ttl("t"), (99, 100))
        _, expire = c.get("t")
        self.assertLess(abs(expire - (time.time() + 100)), 30)
        c.touch("t", 0)
        self.assertEqual(c.ttl("t"), 0)
        c.set("short", b"v", ttl=1)
        # The daemon's clock is real time, ticked in whole seconds.
        self.wait_until(lambda: self.gone(c, "short"), "never expired")
        self.assertEqual(c.get("t")[0], b"v")  # TTL 0: never expires

    def test_empty_key_is_invalid(self):
        with self.assertRaises(p.ProtoError) as e:
            self.client().set("", b"v")
        self.assertEqual(e.exception.err, p.EINVAL)

    def test_stats_count_operations(self):
        c = self.client()
        for i in range(10):
            c.set(f"k{i}", b"v")
        for i in range(15):
            c.get_or_none(f"k{i}")
        s = c.stats()
        self.assertEqual((s["sets"], s["hits"], s["misses"]), (10, 10, 5))
        self.assertEqual(s["entries"], 10)
        segs = c.stats(per_segment=True)
        self.assertEqual(len(segs), 16)
        self.assertEqual(sum(r["entries"] for r in segs), 10)
        self.assertEqual(sum(r["bytes_total"] for r in segs), s["bytes_total"])

    def test_flush_empties_the_cache(self):
        c = self.client()
        for i in range(50):
            c.set(f"k{i}", b"v")
        c.flush()
        self.assertEqual(c.stats()["entries"], 0)
        with self.assertRaises(p.ProtoError):
            c.get("k1")

    def test_check_is_clean_and_finds_damage(self):
        c = self.client()
        for i in range(200):
            c.set(f"k{i}", os.urandom(50))
        r = c.check()
        self.assertEqual((r["segments"], r["bad"]), (16, 0))
        # Damage one segment's state through the mapping.
        c.hello()
        m = mmap.mmap(c.fds[0], 8 << 20)
        base, stride = struct.unpack_from("<QQ", m, HDR_SEG_BASE)
        seg3 = base + 3 * stride
        struct.pack_into("<I", m, seg3 + 64 + 8, 0xFFFFFF)  # used
        r = c.check()
        self.assertEqual(r["bad"], 1)
        self.assertEqual(r["list"][0][0], 3)
        r = c.check(repair=True)
        self.assertEqual(r["repaired"], 1)
        self.assertEqual(c.check()["bad"], 0)
        m.close()

    def test_save_flush_load_round_trip(self):
        c = self.client()
        for i in range(50):
            c.set(f"k{i}", f"v{i}")
        path = os.path.join(self.d.dir, "snap")
        self.assertEqual(c.call("SAVE", p.bstr(path)).u64(), 50)
        c.flush()
        self.assertEqual(c.call("LOAD", p.bstr(path)).u64(), 50)
        for i in range(50):
            self.assertEqual(c.get(f"k{i}")[0], f"v{i}".encode())
        with self.assertRaises(p.ProtoError) as e:
            c.call("LOAD", p.bstr(path + ".missing"))
        self.assertEqual(e.exception.err, p.ENOENT)

    def test_shutdown_stops_the_daemon(self):
        self.client().shutdown()
        self.assertEqual(self.d.proc.wait(p.HANG_S), 0)
        self.assertFalse(os.path.exists(self.d.sock))


class BadInput(DaemonTest):
    extra = []

    def test_unknown_type_gets_an_error_and_the_connection_goes_on(self):
        c = self.client()
        data, _ = c.frame(0x4242)
        c.send_raw(data)
        t, _, body = c.read_frame()
        self.assertEqual(t, p.ERROR)
        self.assertEqual(-p.Reader(body).i32(), p.EOPNOTSUPP)
        c.ping()

    def test_malformed_body_is_rejected(self):
        c = self.client()
        for body in (b"", b"\x05\x00\x00\x00ab", b"\x01\x00\x00\x00a" + b"x"):
            data, _ = c.frame(p.T["GET"], body)
            c.send_raw(data)
            t, _, payload = c.read_frame()
            self.assertEqual(t, p.ERROR)
            self.assertEqual(-p.Reader(payload).i32(), p.EBADMSG)
        c.ping()

    def test_oversized_length_disconnects(self):
        c = self.client()
        c.send_raw(p.HDR.pack(1 << 30, p.T["SET"], p.VERSION, 0, 7))
        t, _, payload = c.read_frame()
        self.assertEqual((t, -p.Reader(payload).i32()), (p.ERROR, p.EMSGSIZE))
        with self.assertRaises(EOFError):
            c.read_frame()
        self.assert_serving()

    def test_garbage_disconnects(self):
        c = self.client()
        c.send_raw(os.urandom(4096))
        try:
            while True:
                c.read_frame()
        except (EOFError, ConnectionResetError, AssertionError):
            pass
        self.assert_serving()

    def test_truncated_frame_then_close(self):
        c = self.client()
        data, _ = c.frame(p.T["SET"], p.bstr("k") + p.bstr("v" * 100) + p.u32(0))
        c.send_raw(data[:30])
        c.close()
        self.clients.remove(c)
        self.assert_serving()

    def test_half_frame_does_not_block_others(self):
        stuck = self.client()
        data, sid = stuck.frame(p.T["SET"], p.bstr("k") + p.bstr("v" * 1000) + p.u32(0))
        stuck.send_raw(data[:500])
        other = self.client()
        for _ in range(100):
            other.ping()
        # Served while the half frame waited (not after dropping it): the
        # frame still completes on the same connection.
        stuck.send_raw(data[500:])
        t, rid, _ = stuck.read_frame()
        self.assertEqual((t, rid), (p.T["SET"] | p.REPLY, sid))

    def test_pipelined_requests_past_the_output_limit_are_all_answered(self):
        # More replies than the 1 MiB output limit, asked for in one write:
        # input pauses, and must resume as the replies drain.
        c = self.client()
        c.set("v", b"x" * 8000)
        reqs = b"".join(c.frame(p.T["GET"], p.bstr("v"))[0] for _ in range(300))
        c.send_raw(reqs)
        for _ in range(300):
            t, _, body = c.read_frame()
            self.assertEqual(t, p.T["GET"] | p.REPLY)
            self.assertEqual(len(body), 8 + 8000)

    def test_client_that_never_reads_does_not_block_others(self):
        hog = self.client()
        hog.set("big", b"x" * 100_000)
        req, _ = hog.frame(p.T["GET"], p.bstr("big"))
        hog.sock.setblocking(False)
        sent = 0
        try:
            for _ in range(2000):
                hog.sock.send(req)
                sent += 1
        except BlockingIOError:
            pass
        self.assertGreater(sent, 10)
        other = self.client()
        for _ in range(50):
            other.ping()
        # Served while the hog was kept (paused, not dropped): it still
        # gets every reply once it reads.
        hog.sock.setblocking(True)
        hog.sock.settimeout(p.HANG_S)
        for _ in range(sent):
            t, _, body = hog.read_frame()
            self.assertEqual((t, len(body)), (p.T["GET"] | p.REPLY,
                                              8 + 100_000))


class Limits(DaemonTest):
    extra = ["--max-clients", "300"]

    def test_200_concurrent_connections(self):
        conns = [p.Client(self.d.sock) for _ in range(200)]
        self.clients += conns
        for i, c in enumerate(conns):
            c.set(f"c{i}", str(i))
        errors = []

        def worker(c, i):
            try:
                for _ in range(5):
                    if c.get(f"c{i}")[0] != str(i).encode():
                        errors.append(i)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
        threads = [threading.Thread(target=worker, args=(c, i))
                   for i, c in enumerate(conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(conns[0].clients()), 200)


class ConnectionLimit(DaemonTest):
    extra = ["--max-clients", "3"]

    def test_connection_over_the_limit_is_refused_clearly(self):
        conns = [self.client() for _ in range(3)]
        for c in conns:
            c.ping()
        extra = self.client()
        t, _, payload = extra.read_frame()
        self.assertEqual((t, -p.Reader(payload).i32()), (p.ERROR, p.EUSERS))
        conns[0].close()
        self.clients.remove(conns[0])
        # Its slot is free once the daemon has seen the close.
        def served():
            c = p.Client(self.d.sock)
            try:
                c.ping()
                return True
            except p.ProtoError as e:
                self.assertEqual(e.err, p.EUSERS)
                return False
            except (OSError, EOFError):
                return False
            finally:
                c.close()
        self.wait_until(served, "the freed slot was never reused")


class Recovery(DaemonTest):
    def test_dead_lock_holder_is_recovered_on_disconnect(self):
        # A child attaches, leaves segment 5 locked in the middle of a
        # mutation and dies.  (Only a dead process loses its locks: a live
        # one that disconnects keeps them, see test_crash.py LiveHolder.)
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                c = p.Client(self.d.sock)
                cid, _, size = c.hello()
                for i in range(100):
                    c.set(f"k{i}", b"v")
                m = mmap.mmap(c.fds[0], size)
                base, stride = struct.unpack_from("<QQ", m, HDR_SEG_BASE)
                seg = base + 5 * stride
                struct.pack_into("<I", m, seg + SEG_LOCK, cid << 1)
                seq = struct.unpack_from("<I", m, seg + SEG_SEQ)[0]
                struct.pack_into("<I", m, seg + SEG_SEQ, seq | 1)
                os.write(wfd, b"x")
            finally:
                os._exit(0)
        os.close(wfd)
        self.assertEqual(os.read(rfd, 1), b"x", "the child failed")
        os.close(rfd)
        os.waitpid(pid, 0)
        fd = os.open("/dev/shm" + self.d.name, os.O_RDWR)
        m = mmap.mmap(fd, 0)
        os.close(fd)
        base, stride = struct.unpack_from("<QQ", m, HDR_SEG_BASE)
        seg = base + 5 * stride
        deadline = time.monotonic() + p.HANG_S
        while struct.unpack_from("<I", m, seg + SEG_LOCK)[0] != 0:
            self.assertLess(time.monotonic(), deadline, "lock not recovered")
            time.sleep(0.005)
        self.assertEqual(struct.unpack_from("<I", m, seg + SEG_SEQ)[0] & 1, 0)
        other = self.client()
        self.assertEqual(other.check()["bad"], 0)
        self.assertEqual(other.stats(per_segment=True)[5]["repairs"], 1)
        m.close()


class Lifecycle(unittest.TestCase):
    def setUp(self):
        self.d = p.DaemonProc(BINARY, extra=LOOP_ARGS)

    def tearDown(self):
        self.d.stop()
        self.d.unlink()

    def test_warm_restart_keeps_the_data(self):
        self.d.start()
        c = p.Client(self.d.sock)
        for i in range(300):
            c.set(f"k{i}", f"value-{i}")
        c.close()
        self.assertEqual(self.d.stop(), 0)
        self.d.start()
        c = p.Client(self.d.sock)
        for i in range(300):
            self.assertEqual(c.get(f"k{i}")[0], f"value-{i}".encode())
        self.assertEqual(c.check()["bad"], 0)
        c.close()

    def test_reconnecting_client_keeps_its_id(self):
        self.d.start()
        c = p.Client(self.d.sock)
        cid = c.hello()[0]
        c.close()
        self.d.stop()
        self.d.start()
        c = p.Client(self.d.sock)
        r = c.call("HELLO", p.u32(p.VERSION) + p.u32(os.getpid()) + p.u32(cid))
        self.assertEqual(r.u32(), cid)  # its locks carry this id
        other = p.Client(self.d.sock)
        self.assertNotEqual(other.hello()[0], cid)
        # An id that is in use is not handed to a second connection.
        r = other.call("HELLO", p.u32(p.VERSION) + p.u32(0) + p.u32(cid))
        self.assertNotEqual(r.u32(), cid)
        c.close()
        other.close()

    def test_other_geometry_is_refused_without_reset(self):
        self.d.start()
        c = p.Client(self.d.sock)
        c.set("k", "v")
        c.close()
        self.d.stop()
        self.d.extra = LOOP_ARGS + ["--segments", "32"]
        r = subprocess.run(self.d.args(), capture_output=True, text=True,
                           timeout=p.HANG_S)
        self.assertEqual(r.returncode, 1)
        self.assertIn("--reset", self.d.logtext())
        self.d.extra = LOOP_ARGS + ["--segments", "32", "--reset"]
        self.d.start()
        c = p.Client(self.d.sock)
        self.assertEqual(c.stats()["entries"], 0)
        self.assertEqual(len(c.stats(per_segment=True)), 32)
        c.close()

    def test_unlink_on_exit_removes_the_region(self):
        self.d.extra = LOOP_ARGS + ["--unlink-on-exit"]
        self.d.start()
        self.assertTrue(os.path.exists("/dev/shm" + self.d.name))
        self.d.stop()
        self.assertFalse(os.path.exists("/dev/shm" + self.d.name))

    def test_hugepages_says_what_the_kernel_gave(self):
        # Whatever the host's shmem policy, the daemon's log line must
        # agree with the kernel's own record of the region's mapping.
        self.d.extra = LOOP_ARGS + ["--hugepages"]
        self.d.start()
        c = p.Client(self.d.sock)
        for i in range(200):
            c.set(f"k{i}", f"value-{i}")
        self.assertEqual(c.get("k199")[0], b"value-199")
        c.close()
        kb = region_pmd_kb(self.d.proc.pid, "/dev/shm" + self.d.name)
        log = self.d.logtext()
        m = re.search(r"--hugepages: (\d+) of the region's (\d+) MiB in "
                      r"huge pages", log)
        if kb > 0:
            self.assertIsNotNone(m, log)
            self.assertGreater(int(m.group(1)), 0)
            self.assertLessEqual(int(m.group(1)), kb >> 10)
            self.assertEqual(int(m.group(2)), 8)
        else:
            self.assertIsNone(m, log)
            self.assertIn("--hugepages: the kernel gave the region no huge "
                          "pages; it needs /dev/shm mounted with huge=advise",
                          log)

    def test_bad_options_exit_2_with_one_line(self):
        for args in (["--memory", "lots"], ["--segments", "3"], ["--bogus"],
                     ["--memory", "1M", "--segments", "65536"]):
            r = subprocess.run([BINARY] + args, capture_output=True,
                               text=True, timeout=p.HANG_S)
            self.assertEqual(r.returncode, 2, args)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_second_daemon_on_the_same_socket_is_refused(self):
        self.d.start()
        other = p.DaemonProc(BINARY, extra=LOOP_ARGS, workdir=self.d.dir)
        r = subprocess.run(other.args(), capture_output=True, timeout=p.HANG_S)
        self.assertEqual(r.returncode, 1)
        self.assertIn("another shmcached", other.logtext())
        other.unlink()
        self.d.wait_ready()

    def test_sighup_reopens_the_log(self):
        self.d.start()
        os.rename(self.d.log, self.d.log + ".1")
        self.d.proc.send_signal(signal.SIGHUP)
        # The new file appears first, the line is written just after.
        deadline = time.monotonic() + p.HANG_S
        while "log reopened" not in self.d.logtext():
            self.assertLess(time.monotonic(), deadline,
                            "no 'log reopened' in a new log file")
            time.sleep(0.02)

    def test_sd_notify_ready_and_stopping(self):
        path = os.path.join(self.d.dir, "notify")
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(path)
        ns.settimeout(10)
        self.d.start(env=dict(os.environ, NOTIFY_SOCKET=path))
        self.assertIn("READY=1", ns.recv(4096).decode())
        self.d.stop()
        self.assertIn("STOPPING=1", ns.recv(4096).decode())
        ns.close()

    @unittest.skipUnless(os.getuid() == 0, "needs root to act as another user")
    def test_peer_not_in_allow_list_is_refused(self):
        self.d.extra = LOOP_ARGS + ["--allow-user", "daemon"]
        # The allowed users must be able to reach the socket, or the
        # daemon refuses to start.
        os.chmod(self.d.dir, 0o755)
        os.chmod(os.path.dirname(self.d.dir), 0o755)
        self.d.start()
        r = subprocess.run(
            [sys.executable, "-c",
             "import os,sys\n"
             "sys.path.insert(0, sys.argv[2])\n"
             "import shmcproto as p\n"
             "os.setgid(65534); os.setuid(65534)\n"
             "c = p.Client(sys.argv[1])\n"
             "try:\n"
             "    c.ping(); print('served')\n"
             "except p.ProtoError as e:\n"
             "    print('refused', e.err)\n",
             self.d.sock, os.path.dirname(os.path.abspath(__file__))],
            capture_output=True, text=True, timeout=p.HANG_S)
        self.assertEqual(r.stdout.strip(), f"refused {p.EACCES}", r.stderr)
        self.assertIn("refused peer", self.d.logtext())
        self.d.wait_ready()


class Sealed(unittest.TestCase):
    """--sealed: a memfd no client can resize, kept in systemd's fd store."""

    def setUp(self):
        self.d = p.DaemonProc(BINARY, extra=LOOP_ARGS + ["--sealed"])
        self.notify_path = os.path.join(self.d.dir, "notify")
        self.ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.ns.bind(self.notify_path)
        self.ns.settimeout(10)
        self.env = dict(os.environ, NOTIFY_SOCKET=self.notify_path)

    def tearDown(self):
        self.d.stop()
        self.ns.close()

    def stored_fd(self):
        """The fd the daemon put in the (emulated) fd store."""
        while True:
            msg, anc, _, _ = self.ns.recvmsg(4096, socket.CMSG_SPACE(4))
            if b"FDSTORE=1" in msg:
                self.assertIn(b"FDNAME=region", msg)
                level, kind, data = anc[0]
                self.assertEqual((level, kind), (socket.SOL_SOCKET,
                                                 socket.SCM_RIGHTS))
                return struct.unpack("<i", data[:4])[0]

    def test_client_cannot_resize_the_region(self):
        self.d.start(env=self.env)
        self.assertFalse(os.path.exists("/dev/shm" + self.d.name))
        c = p.Client(self.d.sock)
        _, _, size = c.hello()
        fd = c.fds[0]
        for new_size in (4096, size * 2):
            with self.assertRaises(PermissionError):
                os.ftruncate(fd, new_size)
        self.assertEqual(os.fstat(fd).st_size, size)
        c.set("still", b"here")
        self.assertEqual(c.get("still")[0], b"here")
        c.close()

    def test_region_survives_a_restart_in_the_fd_store(self):
        self.d.start(env=self.env)
        stored = self.stored_fd()
        c = p.Client(self.d.sock)
        for i in range(100):
            c.set(f"k{i}", f"v{i}")
        c.close()
        self.d.stop()
        # Start again as systemd would: the stored fd as fd 3, named.
        script = ('eval "exec 3<&$STORED"; LISTEN_PID=$$ LISTEN_FDS=1 '
                  'LISTEN_FDNAMES=region exec "$@"')
        self.d.proc = subprocess.Popen(
            ["sh", "-c", script, "sh"] + self.d.args(),
            env=dict(self.env, STORED=str(stored)), pass_fds=(stored,),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.d.wait_ready()
        os.close(stored)
        c = p.Client(self.d.sock)
        for i in range(100):
            self.assertEqual(c.get(f"k{i}")[0], f"v{i}".encode())
        c.close()
        self.assertIn("adopted region", self.d.logtext())


class Security(unittest.TestCase):
    def setUp(self):
        self.d = p.DaemonProc(BINARY, extra=LOOP_ARGS)

    def tearDown(self):
        self.d.stop()
        self.d.unlink()

    @unittest.skipUnless(os.getuid() == 0, "needs root to act as another user")
    def test_other_user_cannot_open_the_region_by_name(self):
        self.d.start()
        path = "/dev/shm" + self.d.name
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        r = subprocess.run(
            [sys.executable, "-c",
             "import os, sys\n"
             "os.setgid(65534); os.setuid(65534)\n"
             "try:\n"
             "    os.open(sys.argv[1], os.O_RDONLY); print('opened')\n"
             "except PermissionError:\n"
             "    print('refused')\n", path],
            capture_output=True, text=True, timeout=p.HANG_S)
        self.assertEqual(r.stdout.strip(), "refused", r.stderr)

    def test_descriptor_exhaustion_is_survived(self):
        def few_fds():
            resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
        self.d.start(preexec_fn=few_fds)
        conns = []
        for _ in range(60):  # more than the daemon can hold open
            conns.append(p.Client(self.d.sock))
        for c in conns:  # all asks first, then the answers
            c.send_raw(c.frame(p.T["PING"])[0])
        # Those the daemon could accept are answered; the others wait in
        # the backlog.  Read answers until more than 5 came and then none
        # for a while: with 32 descriptors it cannot answer all 60, however
        # long it is given.
        waiting = {c.sock: c for c in conns}
        served, deadline, quiet = 0, time.monotonic() + p.HANG_S, None
        while waiting and (quiet is None or time.monotonic() < quiet):
            self.assertLess(time.monotonic(), deadline,
                            f"only {served} served")
            ready = select.select(list(waiting), [], [], 0.1)[0]
            for sock in ready:
                c = waiting.pop(sock)
                try:
                    c.read_frame()
                    served += 1
                except (OSError, EOFError):
                    pass
            if served > 5 and ready:
                quiet = time.monotonic() + 0.5
        self.assertGreater(served, 5)
        self.assertLess(served, 60)
        for c in conns:
            c.close()
        # Descriptors are back: new clients are served again.
        deadline = time.monotonic() + p.HANG_S
        while True:
            try:
                self.d.wait_ready(timeout=1)
                break
            except TimeoutError:
                self.assertLess(time.monotonic(), deadline)
        self.assertIn("accept: Too many open files", self.d.logtext())
        self.assertIsNone(self.d.proc.poll())


class SocketActivation(unittest.TestCase):
    def test_systemd_socket_activate(self):
        tool = "/usr/bin/systemd-socket-activate"
        if not os.access(tool, os.X_OK):
            self.skipTest("systemd-socket-activate not installed")
        d = p.DaemonProc(BINARY, extra=LOOP_ARGS)
        proc = subprocess.Popen(
            [tool, "-l", d.sock] + d.args()[:1] + ["--foreground", "--name",
             d.name, "--memory", "8M", "--segments", "16", "--log-file",
             d.log] + LOOP_ARGS,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # The file appears at bind(), before systemd-socket-activate
            # listens: until then a connect is refused.
            deadline = time.monotonic() + p.HANG_S
            while True:
                try:
                    c = p.Client(d.sock)  # this connection starts it
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    self.assertLess(time.monotonic(), deadline)
                    time.sleep(0.02)
            c.set("activated", b"yes")
            self.assertEqual(c.get("activated")[0], b"yes")
            self.assertEqual(len(c.hello()), 3)
            c.close()
            self.assertIn("passed by systemd", d.logtext())
        finally:
            proc.terminate()
            proc.wait(p.HANG_S)
            d.unlink()


def main():
    global BINARY, LOOP_ARGS
    BINARY, LOOP_ARGS, FALLBACK[0], status = p.loop_main(__doc__, "shmc-it-")
    if status is not None:
        return status
    return p.run_tests(sys.argv[3:], "shmc-it-")

if __name__ == "__main__":
    sys.exit(main())
