#!/usr/bin/python3
"""shmcached and Debian's memcached, side by side: the same request bytes
sent to each (both started by this test on Unix sockets) must get the same
reply bytes, once the values that differ by nature are masked (CAS
versions, `me`'s figures, the version string).  This is how "memcached's
exact error replies" and its edge cases (noreply, bad data chunks, bad
numbers, long keys, negative exptimes, meta flags) are held to memcached's
behaviour rather than to anyone's reading of protocol.txt.

    test_mc_diff.py DAEMON_BINARY [unittest args]

Exits 77 when memcached is not installed (tools/setup installs it).
Where shmcached differs on purpose (docs/MEMCACHED.md, "Differences from
memcached"), the case is not here but in the protocol's unit tests.
"""
import os
import re
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
END = b"mn\r\n"  # both answer MN: the end of a case's replies


def wait_unix(path, proc):
    end = time.monotonic() + p.HANG_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            s.close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(path)


def exchange(path, data):
    """Sends data then "mn", returns every reply byte up to the MN (or to
    the close, when the server closed the connection)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(p.HANG_S)
    s.connect(path)
    try:
        s.sendall(data + END)
        got = b""
        while not got.endswith(b"MN\r\n"):
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
        return got
    finally:
        s.close()


CAS_LINE = re.compile(rb"^(VALUE \S+ \d+ \d+) \d+(?=\r\n)", re.M)


def mask(b):
    b = CAS_LINE.sub(rb"\1 <cas>", b)
    b = re.sub(rb"(?<= )c\d+(?=[ \r])", b"c<cas>", b)
    b = re.sub(rb"^VERSION .*$", b"VERSION <v>\r", b, flags=re.M)
    return b


class Diff(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="shmc-diff-")
        cls.mc_sock = os.path.join(cls.dir, "memcached.sock")
        cls.mc = subprocess.Popen(
            [shutil.which("memcached"), "-s", cls.mc_sock, "-a", "0700",
             "-m", "64", "-t", "1", "-u", "root"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_unix(cls.mc_sock, cls.mc)
        cls.d = p.DaemonProc(DAEMON, geometry=("--memory", "64M"))
        cls.shmc_sock = os.path.join(cls.d.dir, "mc.sock")
        cls.d.extra = ["--memcached", cls.shmc_sock]
        cls.d.start()
        wait_unix(cls.shmc_sock, cls.d.proc)

    @classmethod
    def tearDownClass(cls):
        cls.mc.terminate()
        cls.mc.wait(p.HANG_S)
        cls.d.stop()
        cls.d.unlink()
        shutil.rmtree(cls.dir, True)

    def same(self, data):
        """Both servers, flushed first, answer data alike."""
        for path in (self.mc_sock, self.shmc_sock):
            self.assertEqual(exchange(path, b"flush_all\r\n"),
                             b"OK\r\nMN\r\n")
        want = mask(exchange(self.mc_sock, data))
        got = mask(exchange(self.shmc_sock, data))
        self.assertEqual(got, want, f"request: {data!r}")

    # -- storage ---------------------------------------------------------

    def test_mc_diff_storage_commands(self):
        self.same(b"set a 5 0 3\r\nabc\r\nget a\r\ngets a\r\n"
                  b"add a 0 0 1\r\nx\r\nadd b 0 0 1\r\ny\r\n"
                  b"replace c 0 0 1\r\nz\r\nreplace b 9 0 2\r\nyy\r\n"
                  b"append a 0 0 2\r\nde\r\nprepend a 0 0 2\r\n__\r\n"
                  b"append nope 0 0 1\r\nx\r\nget a b nope\r\n")

    def test_mc_diff_noreply(self):
        self.same(b"set a 0 0 1 noreply\r\n1\r\nadd a 0 0 1 noreply\r\n2\r\n"
                  b"incr a 5 noreply\r\ndelete nope noreply\r\n"
                  b"touch a 10 noreply\r\nget a\r\n"
                  b"flush_all noreply\r\nget a\r\n")

    def test_mc_diff_bad_storage_lines(self):
        self.same(b"set a 0 0 abc\r\nxyz\r\n")
        self.same(b"set a 0 0\r\n")
        self.same(b"set a 0 0 -1\r\n")
        self.same(b"set a 0 0 3\r\nabcd\r\nget a\r\n")
        self.same(b"set a 0 0 3\r\nab\r\nget a\r\n")
        self.same(b"set a 4294967295 0 1\r\nx\r\nget a\r\n")
        self.same(b"cas a 0 0 1\r\nx\r\n")
        # (A refused line with a valid length - bad flags, a bad exptime,
        # a long key - has its block skipped here, as memcached's newest
        # parser does; 1.6.18 runs the block as a command.  Flags over 32
        # bits are refused here.  docs/MEMCACHED.md, "Differences".)

    def test_mc_diff_cas_flow(self):
        # the CAS value differs by server: it is read back from the reply
        for path in (self.mc_sock, self.shmc_sock):
            self.assertEqual(exchange(path, b"flush_all\r\n"),
                             b"OK\r\nMN\r\n")
        out = {}
        for name, path in (("mc", self.mc_sock), ("shmc", self.shmc_sock)):
            r = exchange(path, b"set k 0 0 1\r\nx\r\ngets k\r\n")
            cas = re.search(rb"VALUE k 0 1 (\d+)", r).group(1)
            out[name] = mask(exchange(
                path, b"cas k 0 0 1 " + cas + b"\r\ny\r\n"
                b"cas k 0 0 1 " + cas + b"\r\nz\r\nget k\r\n"
                b"delete k\r\ncas k 0 0 1 " + cas + b"\r\nw\r\n"))
        self.assertEqual(out["shmc"], out["mc"])

    def test_mc_diff_exptime(self):
        self.same(b"set a 0 0 1\r\nx\r\nset a 0 -1 1\r\ny\r\nget a\r\n")
        self.same(b"set a 0 1 1\r\nx\r\nadd a 0 -1 1\r\ny\r\nget a\r\n")
        self.same(b"set a 0 1000 1\r\nx\r\ntouch a -1\r\nget a\r\n")
        self.same(b"set a 0 100 1\r\nx\r\ngat 0 a\r\ngats 100 a b\r\n")

    # -- keys ------------------------------------------------------------

    def test_mc_diff_keys(self):
        k250, k251 = b"k" * 250, b"k" * 251
        self.same(b"set " + k250 + b" 0 0 1\r\nx\r\nget " + k250 + b"\r\n")
        self.same(b"get " + k251 + b"\r\n")
        self.same(b"get\r\n")
        self.same(b"delete " + k251 + b"\r\n")
        self.same(b"incr " + k251 + b" 1\r\n")

    def test_mc_diff_many_keys(self):
        keys = [b"key%d" % i for i in range(400)]
        req = b"".join(b"set " + k + b" 0 0 2\r\nvv\r\n" for k in keys[::2])
        self.same(req + b"get " + b" ".join(keys) + b"\r\n")

    # -- arithmetic, delete, touch ----------------------------------------

    def test_mc_diff_arith(self):
        self.same(b"set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 100\r\n"
                  b"incr n 18446744073709551615\r\nincr nope 1\r\n"
                  b"set t 0 0 3\r\nabc\r\nincr t 1\r\nincr n abc\r\n"
                  b"incr n -1\r\nincr n\r\ndecr n 18446744073709551616\r\n")
        self.same(b"set n 0 0 20\r\n18446744073709551615\r\nincr n 2\r\n")
        self.same(b"set n 0 0 3\r\n 12\r\nincr n 1\r\n")

    def test_mc_diff_delete_touch(self):
        self.same(b"set a 0 0 1\r\nx\r\ndelete a 0\r\nset a 0 0 1\r\nx\r\n"
                  b"delete a 5\r\ndelete a noreply\r\ndelete a\r\n"
                  b"touch a 10\r\ntouch a\r\ntouch a abc\r\n")

    # -- misc ------------------------------------------------------------

    def test_mc_diff_misc(self):
        self.same(b"version\r\nverbosity 1\r\nverbosity\r\n"
                  b"verbosity 1 noreply\r\nflush_all 0\r\nflush_all abc\r\n"
                  b"bogus\r\n\r\nGET a\r\n")

    def test_mc_diff_extra_tokens(self):
        # memcached dispatches on the token count: extra words are errors
        self.same(b"version foo bar\r\n")
        self.same(b"verbosity a b c\r\n")
        self.same(b"verbosity 1 2 3 4\r\n")
        self.same(b"flush_all 0 noreply extra\r\n")
        self.same(b"touch a 1 noreply extra\r\n")
        self.same(b"incr a 1 noreply extra\r\n")
        self.same(b"set a 0 0 1 noreply extra\r\nx\r\n")
        self.same(b"quit now\r\n")

    def test_mc_diff_quit(self):
        self.same(b"set a 0 0 1\r\nx\r\nquit\r\nget a\r\n")

    # -- meta ------------------------------------------------------------

    def test_mc_diff_meta_get_set(self):
        self.same(b"ms a 3 T0 F7\r\nabc\r\nmg a v f s k\r\nmg a\r\n"
                  b"mg nope v\r\nmg nope v q\r\nmg a v O123 k\r\n"
                  b"ms b 2 MR\r\nxx\r\nms a 1 ME\r\nz\r\n"
                  b"ms a 2 MA\r\n++\r\nmg a v\r\n")

    def test_mc_diff_meta_quiet_and_opaque(self):
        self.same(b"ms a 1 q\r\n1\r\nmg a v q O1\r\nmg b v q O2\r\n"
                  b"md b q\r\nmd a q\r\nmg a v\r\n")

    def test_mc_diff_meta_base64(self):
        self.same(b"ms Zm9v 3 b\r\nbar\r\nmg Zm9v b v k\r\nget foo\r\n"
                  b"mg !!!! b v\r\n")

    def test_mc_diff_meta_arith(self):
        self.same(b"ma n\r\nma n N0 J10 v\r\nma n v\r\nma n MD D20 v\r\n"
                  b"ma n M+ D5 v\r\nma n M- v\r\nms t 1\r\nx\r\nma t\r\n"
                  b"ma n Mx\r\n")

    def test_mc_diff_meta_errors(self):
        self.same(b"mg\r\n")
        self.same(b"ms a\r\n")
        self.same(b"ms a abc\r\n")
        self.same(b"ms a 2 T\r\nxx\r\nmg a v\r\n")
        self.same(b"ms a 2\r\nxxx\r\nmg a v\r\n")
        self.same(b"mg a !\r\n")
        self.same(b"md\r\n")

    def test_mc_diff_meta_vivify_and_stale(self):
        # win, then lose, then the value arrives
        self.same(b"mg v N30 v c\r\nmg v N30 v\r\nms v 3\r\nnew\r\n"
                  b"mg v v\r\n")
        # invalidated: stale with a win, then a lose
        self.same(b"ms s 3\r\nold\r\nmd s I T30\r\nmg s v\r\nmg s v\r\n"
                  b"ms s 3\r\nnew\r\nmg s v\r\n")


if __name__ == "__main__":
    DAEMON, = p.binaries(1, __doc__)
    if not shutil.which("memcached"):
        print("memcached is not installed (tools/setup installs it): "
              "skipped")
        sys.exit(77)
    sys.exit(p.run_tests(sys.argv[2:], "test_mc_diff"))
