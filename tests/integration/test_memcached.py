#!/usr/bin/env python3
"""Integration tests of shmcached's memcached serving (daemon/mc_serve.c):
the real daemon with --memcached listeners, driven over raw sockets.

    test_memcached.py DAEMON_BINARY {uring|epoll|fallback} [NO_URING_WRAPPER]

Only the commands every build answers are used (version, mn, quit): the
text and meta commands have tests of their own.  Every test runs against
the event loop named on the command line (meson registers the file once
per loop); "fallback" runs the daemon under a seccomp wrapper that makes
io_uring_setup fail, so the serving threads must fall back to epoll by
themselves.  Exits 77 when the host cannot run it.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shmcproto as p  # noqa: E402

BINARY = None
LOOP_ARGS = []
FALLBACK = [False]

VERSION = b"VERSION "
TOO_MANY = b"SERVER_ERROR too many open connections\r\n"


free_port = p.free_port


def rss_kb(pid):
    """Resident memory of process pid in kB, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def become_nobody():
    """preexec_fn: run the child as uid and gid 65534, no other groups."""
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def read_until(sock, n):
    """Reads exactly n bytes (fewer only at EOF)."""
    out = bytearray()
    while len(out) < n:
        b = sock.recv(min(1 << 20, n - len(out)))
        if not b:
            break
        out += b
    return bytes(out)


def read_to_eof(sock):
    out = bytearray()
    while True:
        b = sock.recv(65536)
        if not b:
            return bytes(out)
        out += b


class McCase(unittest.TestCase):
    """A daemon with a memcached Unix socket and a loopback TCP port."""
    extra = []

    def setUp(self):
        self.d = p.DaemonProc(BINARY)
        self.mc_path = os.path.join(self.d.dir, "mc.sock")
        self.port = free_port()
        self.d.extra = LOOP_ARGS + [
            "--memcached", self.mc_path,
            "--memcached", f"127.0.0.1:{self.port}"] + self.extra
        self.d.start()
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            s.close()
        self.d.stop()
        self.d.unlink()

    def unix(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(p.HANG_S)
        s.connect(self.mc_path)
        self.socks.append(s)
        return s

    def tcp(self):
        s = socket.create_connection(("127.0.0.1", self.port),
                                     timeout=p.HANG_S)
        self.socks.append(s)
        return s

    def ask(self, s, req, end):
        """Sends req on s; its reply, read until it ends with end."""
        s.sendall(req)
        r = b""
        while not r.endswith(end):
            b = s.recv(65536)
            self.assertTrue(b, f"EOF before the reply to {req!r} ended")
            r += b
        return r

    def version(self):
        """The daemon's VERSION line, from a new connection."""
        line = self.ask(self.unix(), b"version\r\n", b"\r\n")
        self.assertTrue(line.startswith(VERSION), line)
        return line

    def wait_until(self, cond, what):
        deadline = time.monotonic() + p.HANG_S
        while not cond():
            self.assertLess(time.monotonic(), deadline, what)
            time.sleep(0.02)


class Listeners(McCase):
    def test_memcached_unix_and_tcp_answer_version(self):
        for s in (self.unix(), self.tcp()):
            s.sendall(b"version\r\n")
            line = read_until(s, len(self.version()))
            self.assertTrue(line.startswith(VERSION), line)
            self.assertTrue(line.endswith(b"\r\n"))

    def test_memcached_unix_socket_permissions_like_the_control_socket(self):
        mode = os.stat(self.mc_path).st_mode & 0o777
        self.assertEqual(mode, os.stat(self.d.sock).st_mode & 0o777)
        self.assertTrue(os.path.exists(self.mc_path + ".lock"))

    def test_memcached_control_socket_still_serves(self):
        self.version()
        c = p.Client(self.d.sock)
        c.set("k", b"v")
        self.assertEqual(c.get("k")[0], b"v")
        c.close()

    def test_memcached_loop_is_the_expected_one(self):
        self.version()
        log = self.d.logtext()
        if FALLBACK[0]:
            self.assertIn("memcached thread 0: io_uring unavailable", log)
            self.assertIn("memcached thread 0: event loop epoll", log)
        elif LOOP_ARGS:
            self.assertIn("memcached thread 0: event loop epoll", log)
        else:
            self.assertIn("memcached thread 0: event loop io_uring", log)

    def test_memcached_sigterm_removes_the_unix_socket(self):
        self.version()
        self.assertEqual(self.d.stop(), 0)
        self.assertFalse(os.path.exists(self.mc_path))
        self.assertIn("stopped", self.d.logtext())

    def test_memcached_stale_socket_is_replaced(self):
        self.d.stop()
        # A socket file nobody serves, as a killed daemon leaves it.
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(self.mc_path)
        stale.close()
        self.d.start()
        self.version()
        self.assertIn("replaced the stale socket " + self.mc_path,
                      self.d.logtext())

    def test_memcached_socket_of_a_running_daemon_is_refused(self):
        other = p.DaemonProc(BINARY, extra=LOOP_ARGS + [
            "--memcached", self.mc_path])
        other.start(wait=False)
        try:
            rc = other.proc.wait(p.HANG_S)
            self.assertEqual(rc, 1)
            self.assertIn(f"(pid {self.d.proc.pid}) is serving "
                          f"{self.mc_path}", other.logtext())
            self.assertIn("--memcached", other.logtext())
        finally:
            other.stop()
            other.unlink()
        self.version()  # the first daemon's socket is untouched


class Requests(McCase):
    def test_memcached_pipelined_requests_answered_in_order(self):
        v = self.version()
        for s in (self.unix(), self.tcp()):
            s.sendall(b"version\r\nmn\r\n" * 500 + b"mn\r\n")
            want = (v + b"MN\r\n") * 500 + b"MN\r\n"
            self.assertEqual(read_until(s, len(want)), want)

    def test_memcached_request_one_byte_at_a_time(self):
        v = self.version()
        s = self.unix()
        for b in b"version\r\nmn\r\n":
            s.sendall(bytes([b]))
            time.sleep(0.002)
        self.assertEqual(read_until(s, len(v) + 4), v + b"MN\r\n")

    def test_memcached_quit_closes(self):
        v = self.version()
        for s in (self.unix(), self.tcp()):
            s.sendall(b"version\r\nquit\r\nversion\r\n")
            self.assertEqual(read_to_eof(s), v)

    def test_memcached_unknown_command_keeps_the_connection(self):
        v = self.version()
        s = self.unix()
        s.sendall(b"no-such-command\r\nversion\r\n")
        self.assertEqual(read_until(s, 7 + len(v)), b"ERROR\r\n" + v)

    def test_memcached_client_gone_mid_request(self):
        for _ in range(20):
            s = self.unix()
            s.sendall(b"version\r\nvers")
            s.close()
        self.socks.clear()
        self.version()  # still serving

    def test_memcached_back_pressure_bounds_memory(self):
        v = self.version()
        # 64 MiB, or 32 MiB above what it started with (a sanitizer build
        # starts larger); taking in every request would cost about 90.
        limit = max(64 << 10, rss_kb(self.d.proc.pid) + (32 << 10))
        count = 4 << 20  # ~36 MiB of requests, ~60 MiB of replies
        chunk = b"version\r\n" * 65536
        s = self.unix()
        sent = [0]
        failed = []

        def writer():
            try:
                for _ in range(count // 65536):
                    s.sendall(chunk)
                    sent[0] += len(chunk)
            except OSError as e:
                failed.append(e)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        # The writer stalls: the daemon stops reading once its replies
        # pile up unread.
        deadline, last, still = time.monotonic() + p.HANG_S, -1, 0
        while still < 10:
            self.assertLess(time.monotonic(), deadline, "writer never "
                            "stalled")
            self.assertTrue(t.is_alive(), "all requests were taken in: "
                            "no back-pressure")
            still = still + 1 if sent[0] == last else 0
            last = sent[0]
            time.sleep(0.05)
        self.assertLess(sent[0], count * 9 // 2)
        rss = rss_kb(self.d.proc.pid)
        self.assertLess(rss, limit, f"daemon RSS {rss} kB")
        # Others are served meanwhile, on both sockets.
        self.version()
        o = self.tcp()
        o.sendall(b"mn\r\n")
        self.assertEqual(read_until(o, 4), b"MN\r\n")
        # Every reply comes, in order, once the client reads.
        total, buf = 0, bytearray()
        while total < count:
            b = s.recv(1 << 20)
            self.assertTrue(b, f"EOF after {total} replies")
            buf += b
            n = len(buf) // len(v)
            self.assertEqual(bytes(buf[:n * len(v)]), v * n)
            del buf[:n * len(v)]
            total += n
        self.assertEqual(total, count)
        self.assertEqual(bytes(buf), b"")
        t.join(p.HANG_S)
        self.assertFalse(failed)
        # After the drain too - but AddressSanitizer keeps freed buffers
        # in its quarantine (up to 256 MiB), so only in a plain build.
        with open(f"/proc/{self.d.proc.pid}/maps") as f:
            sanitized = "libasan" in f.read()
        if not sanitized:
            self.assertLess(rss_kb(self.d.proc.pid), limit)


    def test_memcached_get_line_repeating_a_key_bounds_memory(self):
        # One get line naming a 100 kB value 1500 times asks for 150 MB
        # of replies: they are made as the client reads them.
        self.version()
        limit = max(64 << 10, rss_kb(self.d.proc.pid) + (32 << 10))
        val = b"v" * 100000
        s = self.unix()
        s.sendall(b"set k 0 0 %d\r\n%s\r\n" % (len(val), val))
        self.assertEqual(read_until(s, 8), b"STORED\r\n")
        s.sendall(b"get" + b" k" * 1500 + b"\r\n")
        one = b"VALUE k 0 %d\r\n%s\r\n" % (len(val), val)
        first = read_until(s, 1 << 20)
        rss = rss_kb(self.d.proc.pid)
        self.assertLess(rss, limit, f"daemon RSS {rss} kB")
        rest = read_until(s, len(one) * 1500 + 5 - len(first))
        self.assertEqual(first + rest, one * 1500 + b"END\r\n")
        s.sendall(b"mn\r\n")
        self.assertEqual(read_until(s, 4), b"MN\r\n")

class Limits(McCase):
    extra = ["--memcached-max-conns", "3"]

    def test_memcached_max_conns_exceeded_gets_server_error(self):
        v = self.version()  # its connection stays open: 1 of 3
        a, b = self.unix(), self.tcp()
        for s in (a, b):
            s.sendall(b"version\r\n")
            self.assertEqual(read_until(s, len(v)), v)
        over = self.tcp()
        self.assertEqual(read_to_eof(over), TOO_MANY)
        over = self.unix()
        self.assertEqual(read_to_eof(over), TOO_MANY)
        # A slot freed is a slot for the next one.
        a.close()

        def served():
            s = self.unix()
            s.sendall(b"mn\r\n")
            return read_to_eof_or(s, 4) == b"MN\r\n"
        self.wait_until(served, "no connection after one closed")


class Idle(McCase):
    extra = ["--memcached-idle-timeout", "1"]

    def test_memcached_idle_connection_closed(self):
        s = self.tcp()
        s.sendall(b"mn\r\n")
        self.assertEqual(read_until(s, 4), b"MN\r\n")
        self.assertEqual(read_to_eof(s), b"")  # closed by the daemon
        self.assertIn("idle for 1 s", self.d.logtext())


    def conns(self):
        """curr_connections, this query's own connection included."""
        s = self.unix()
        r = self.ask(s, b"stats\r\n", b"END\r\n")
        s.close()
        self.socks.remove(s)
        for line in r.split(b"\r\n"):
            if line.startswith(b"STAT curr_connections "):
                return int(line.split()[2])
        self.fail("no curr_connections")

    def stuck_client(self, tail):
        """A client whose replies wait unread: 200 kB values, then tail."""
        val = b"v" * 200000
        s = self.unix()
        s.sendall(b"set k 0 0 %d\r\n%s\r\n" % (len(val), val))
        self.assertEqual(read_until(s, 8), b"STORED\r\n")
        s.sendall(tail)
        return s

    def test_memcached_idle_connection_not_reading_closed(self):
        # Its replies pile up past the back-pressure mark: the daemon
        # neither reads nor can send, and the timeout still ends it.
        self.stuck_client(b"get" + b" k" * 20 + b"\r\n")
        self.wait_until(lambda: self.conns() == 1, "a connection that "
                        "does not read was never closed")

    def test_memcached_idle_connection_quit_not_reading_closed(self):
        # quit: closing once its replies are sent, which never happens.
        self.stuck_client(b"get k k k k k\r\nquit\r\n")
        self.wait_until(lambda: self.conns() == 1, "a connection that "
                        "quit but does not read was never closed")


def read_to_eof_or(s, n):
    """n bytes, or what came before EOF."""
    try:
        return read_until(s, n)
    except OSError:
        return b""


class Threads(McCase):
    extra = ["--threads", "2"]

    def test_memcached_threads_serve_several_clients(self):
        v = self.version()
        want = (v + b"MN\r\n") * 200
        errors = []

        def client(i):
            try:
                s = self.tcp() if i % 2 else self.unix()
                for _ in range(5):
                    s.sendall(b"version\r\nmn\r\n" * 200)
                    got = read_until(s, len(want))
                    if got != want:
                        errors.append(f"client {i}: wrong replies")
            except OSError as e:
                errors.append(f"client {i}: {e}")

        ts = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(p.HANG_S)
        self.assertEqual(errors, [])
        log = self.d.logtext()
        self.assertIn("memcached: 2 thread(s)", log)
        self.assertIn("memcached thread 1: event loop", log)


class Refusals(unittest.TestCase):
    def run_daemon(self, *args):
        d = p.DaemonProc(BINARY, extra=LOOP_ARGS + list(args))
        r = subprocess.run(d.args(), capture_output=True, text=True,
                           timeout=p.HANG_S)
        d.unlink()
        return r

    def test_memcached_non_loopback_tcp_needs_memcached_remote(self):
        for addr in ("0.0.0.0:11211", "[::]:11211", "192.0.2.1:11211"):
            r = self.run_daemon("--memcached", addr)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("--memcached", r.stderr)
            self.assertIn("--memcached-remote", r.stderr)
            self.assertIn("not a loopback address", r.stderr)
            self.assertEqual(r.stderr.count("\n"), 1, r.stderr)

    def test_memcached_bad_address_is_refused(self):
        r = self.run_daemon("--memcached", "mc.sock")
        self.assertEqual(r.returncode, 2)
        self.assertIn("HOST:PORT", r.stderr)

    def test_memcached_port_in_use_is_refused(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        try:
            r = self.run_daemon("--memcached",
                                f"127.0.0.1:{s.getsockname()[1]}")
        finally:
            s.close()
        self.assertEqual(r.returncode, 1)

    def test_memcached_peer_not_in_the_allow_lists_is_refused(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to act as another user")
        # The sockets in a shmcached* folder of the daemon's own, which it
        # opens to 0755 for the allow lists (the test's folders are 0700).
        folder = tempfile.mkdtemp(prefix="shmcached-mc-", dir="/tmp")
        try:
            mc = os.path.join(folder, "mc.sock")
            d = p.DaemonProc(BINARY, workdir=folder, extra=LOOP_ARGS + [
                "--memcached", mc, "--allow-user", "12345",
                "--allow-user", "12346"])
            d.start()
            try:
                self.assertEqual(os.stat(mc).st_mode & 0o777, 0o666)
                code = ("import socket, sys\n"
                        "s = socket.socket(socket.AF_UNIX)\n"
                        "s.settimeout(30)\n"
                        "s.connect(sys.argv[1])\n"
                        "s.sendall(b'version\\r\\n')\n"
                        "out = b''\n"
                        "while True:\n"
                        "    b = s.recv(4096)\n"
                        "    if not b: break\n"
                        "    out += b\n"
                        "sys.stdout.write(out.decode())\n")
                # Debian's interpreter: one under /root is not nobody's.
                py = ("/usr/bin/python3" if os.access("/usr/bin/python3",
                                                      os.X_OK)
                      else sys.executable)
                r = subprocess.run([py, "-c", code, mc],
                                   capture_output=True, text=True,
                                   timeout=p.HANG_S,
                                   preexec_fn=become_nobody)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertTrue(r.stdout.startswith("SERVER_ERROR "),
                                r.stdout)
                self.assertEqual(r.stdout.count("\n"), 1, r.stdout)
                self.assertIn("refused peer", d.logtext())
                # Root (and the daemon's own user) are served.
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(p.HANG_S)
                s.connect(mc)
                s.sendall(b"mn\r\n")
                self.assertEqual(read_until(s, 4), b"MN\r\n")
                s.close()
            finally:
                d.stop()
                d.unlink()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


class SocketActivation(unittest.TestCase):
    def test_memcached_fds_named_memcached_are_served(self):
        d = p.DaemonProc(BINARY, extra=LOOP_ARGS)
        ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ctl.bind(d.sock)
        ctl.listen(16)
        mc_path = os.path.join(d.dir, "mc-activated.sock")
        mcu = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        mcu.bind(mc_path)
        mcu.listen(16)
        mct = socket.socket()
        mct.bind(("127.0.0.1", 0))
        mct.listen(16)
        port = mct.getsockname()[1]
        fds = [s.fileno() for s in (ctl, mcu, mct)]
        # As systemd starts the service: the fds from 3 on, named.
        script = ('eval "exec 3<&$A 4<&$B 5<&$C"; LISTEN_PID=$$ '
                  'LISTEN_FDS=3 LISTEN_FDNAMES=shmcached.socket:memcached:'
                  'memcached exec "$@"')
        env = dict(os.environ, A=str(fds[0]), B=str(fds[1]), C=str(fds[2]))
        d.proc = subprocess.Popen(["sh", "-c", script, "sh"] + d.args(),
                                  env=env, pass_fds=fds,
                                  stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
        try:
            for s in (ctl, mcu, mct):
                s.close()
            d.wait_ready()
            u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            u.settimeout(p.HANG_S)
            u.connect(mc_path)
            t = socket.create_connection(("127.0.0.1", port),
                                         timeout=p.HANG_S)
            for s in (u, t):
                s.sendall(b"mn\r\nversion\r\n")
                got = read_until(s, 4 + len(VERSION))
                self.assertEqual(got, b"MN\r\n" + VERSION)
                s.close()
            log = d.logtext()
            self.assertIn("passed by systemd", log)
            self.assertIn(f"memcached: listening on 127.0.0.1:{port} "
                          "(from systemd)", log)
            self.assertEqual(d.stop(), 0)
            # systemd's socket file is systemd's to remove.
            self.assertTrue(os.path.exists(mc_path))
        finally:
            d.stop()
            d.unlink()


def main():
    global BINARY, LOOP_ARGS
    BINARY, LOOP_ARGS, FALLBACK[0], status = p.loop_main(__doc__, "shmc-mc-")
    if status is not None:
        return status
    return p.run_tests(sys.argv[3:], "shmc-mc-")

if __name__ == "__main__":
    sys.exit(main())
