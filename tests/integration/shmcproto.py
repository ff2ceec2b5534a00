"""A small, independent client of shmcached's control protocol, for the
integration tests (stdlib only).  It follows docs/PROTOCOL.md rather than
the C codec, so a disagreement between the two shows up as a failing test.

Also: DaemonProc, which starts the real daemon binary on a throwaway socket
and region name and stops it again.
"""
import itertools
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

# The deadline of every wait in the tests: long enough that only a hang
# reaches it, on a busy 2-core machine under a sanitizer.  Tests assert
# what happened, never how fast (docs/RELIABILITY.md, "Tests under load").
HANG_S = 30.0

VERSION = 1
HDR = struct.Struct("<IHBBI")  # len, type, version, flags, id
REPLY = 0x8000
ERROR = 0xFFFF

T = dict(HELLO=1, PING=2, STATS=3, GET=4, SET=5, DEL=6, TTL=7, TOUCH=8,
         FLUSH=9, CHECK=10, CLIENTS=11, SAVE=12, LOAD=13, SHUTDOWN=14,
         BYE=15, NS_ADD=16, NS_FLUSH=17, NS_DEL=18, NS_LIST=19,
         NEARCACHE=20)

ENOENT, EACCES, EPROTO, EBADMSG, EOPNOTSUPP, ENOTSUP = 2, 13, 71, 74, 95, 95
EMSGSIZE, E2BIG, EINVAL, EUSERS, ETIMEDOUT = 90, 7, 22, 87, 110
EEXIST, ENOSPC = 17, 28
NS_PREFIX_MAX = 52  # LAYOUT_NS_PREFIX_MAX


def free_port(cluster=False):
    """A loopback TCP port nobody listens on, below the kernel's ephemeral
    range (32768 and up by default): a port from that range, free when
    picked, can be taken as the local port of any connection made before
    the server binds it.  For a Redis cluster node, one whose bus port
    (+10000) is free and below the range too."""
    while True:
        port = random.randint(10000, 22767 if cluster else 32767)
        try:
            for p in [port, port + 10000] if cluster else [port]:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue


class ProtoError(Exception):
    def __init__(self, err, msg):
        super().__init__(f"{err}: {msg}")
        self.err = err
        self.msg = msg


def u32(v):
    return struct.pack("<I", v)


def u64(v):
    return struct.pack("<Q", v)


def bstr(b):
    if isinstance(b, str):
        b = b.encode()
    return u32(len(b)) + b


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("short body")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self):
        return self.take(1)[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def i32(self):
        return struct.unpack("<i", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def bytes(self):
        return self.take(self.u32())

    def str(self):
        return self.bytes().decode()

    def end(self):
        assert self.pos == len(self.data), "trailing bytes in reply"


class Client:
    def __init__(self, path, timeout=HANG_S):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.ids = itertools.count(1)
        self.fds = []

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        self.sock.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def frame(self, type_, body=b"", id_=None, version=VERSION, flags=0):
        id_ = next(self.ids) if id_ is None else id_
        return HDR.pack(len(body), type_, version, flags, id_) + body, id_

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            msg, anc, _flags, _addr = self.sock.recvmsg(
                n - len(buf), socket.CMSG_SPACE(4 * 4))
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    self.fds += list(struct.unpack(f"<{len(data)//4}i",
                                                   data[:len(data)//4*4]))
            if not msg:
                raise EOFError("daemon closed the connection")
            buf += msg
        return buf

    def read_frame(self):
        ln, type_, ver, flags, id_ = HDR.unpack(self.recv_exact(HDR.size))
        assert ver == VERSION and flags == 0
        return type_, id_, self.recv_exact(ln) if ln else b""

    def call(self, name, body=b""):
        """Sends a request, returns a Reader over the reply body; raises
        ProtoError on an error frame."""
        data, id_ = self.frame(T[name], body)
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon may have said why before closing: read it
        type_, rid, payload = self.read_frame()
        # id 0: an error about the connection (refused peer, too many
        # clients, broken framing), whatever was asked.
        assert rid in (id_, 0), f"reply id {rid} for request {id_}"
        if type_ == ERROR:
            r = Reader(payload)
            raise ProtoError(-r.i32(), r.str())
        assert type_ == T[name] | REPLY, f"reply type {type_:#x}"
        return Reader(payload)

    # -- the requests ------------------------------------------------------
    def hello(self, prev=0):
        """HELLO, asking for client id prev back (0: a new one)."""
        r = self.call("HELLO", u32(VERSION) + u32(os.getpid()) + u32(prev))
        cid, fmt, size = r.u32(), r.u32(), r.u64()
        r.end()
        return cid, fmt, size

    def ping(self):
        self.call("PING").end()

    def set(self, key, val, ttl=0):
        self.call("SET", bstr(key) + bstr(val) + u32(ttl)).end()

    def get(self, key):
        r = self.call("GET", bstr(key))
        expire, val = r.u32(), r.bytes()
        r.end()
        return val, expire

    def get_or_none(self, key):
        """get(key), or None where the daemon answers with an error (a
        miss): for tests that only count gets."""
        try:
            return self.get(key)
        except ProtoError:
            return None

    def delete(self, key):
        self.call("DEL", bstr(key)).end()

    def ttl(self, key):
        r = self.call("TTL", bstr(key))
        v = r.u32()
        r.end()
        return v

    def touch(self, key, ttl):
        self.call("TOUCH", bstr(key) + u32(ttl)).end()

    def flush(self):
        self.call("FLUSH").end()

    def stats(self, per_segment=False):
        r = self.call("STATS", bytes([1 if per_segment else 0]))
        names = [r.str() for _ in range(r.u32())]
        rows = [dict(zip(names, [r.u64() for _ in names]))
                for _ in range(r.u32())]
        r.end()
        return rows if per_segment else rows[0]

    def check(self, repair=False):
        r = self.call("CHECK", bytes([1 if repair else 0]))
        nseg, bad, repaired, n = r.u32(), r.u32(), r.u32(), r.u32()
        segs = [(r.u32(), r.u32(), r.str()) for _ in range(n)]
        r.end()
        return dict(segments=nseg, bad=bad, repaired=repaired, list=segs)

    def clients(self):
        r = self.call("CLIENTS")
        out = [dict(id=r.u32(), pid=r.u32(), uid=r.u32(), gid=r.u32(),
                    since=r.u64()) for _ in range(r.u32())]
        r.end()
        return out

    def shutdown(self):
        self.call("SHUTDOWN").end()

    def ns_add(self, prefix):
        """Registers prefix (bytes or str) as a namespace."""
        self.call("NS_ADD", bstr(prefix)).end()

    def ns_flush(self, prefix):
        """Drops every key under the namespace prefix."""
        self.call("NS_FLUSH", bstr(prefix)).end()

    def ns_del(self, prefix):
        """Unregisters the namespace prefix."""
        self.call("NS_DEL", bstr(prefix)).end()

    def nearcache(self):
        """The near cache's tracking of Redis (NEARCACHE): {state,
        counters..., last_error, last_error_at, prefixes (the tracked
        ones, bytes)}."""
        r = self.call("NEARCACHE")
        out = dict(state=r.str())
        for _ in range(r.u32()):
            name, value, _desc = r.str(), r.u64(), r.str()
            out[name] = value
        out["last_error"], out["last_error_at"] = r.str(), r.u64()
        out["prefixes"] = [r.bytes() for _ in range(r.u32())]
        r.end()
        return out

    def ns_list(self):
        """The registered namespaces: [{prefix (bytes), mark, slot}]."""
        r = self.call("NS_LIST")
        out = [dict(prefix=r.bytes(), mark=r.u32(), slot=r.u32())
               for _ in range(r.u32())]
        r.end()
        return out


class DaemonProc:
    """The real shmcached on a throwaway socket and region name."""

    GEOMETRY = ("--memory", "8M", "--segments", "16")

    def __init__(self, binary, extra=(), name=None, workdir=None,
                 geometry=GEOMETRY):
        self.binary = binary
        self.geometry = list(geometry)
        self.dir = workdir or tempfile.mkdtemp(prefix="shmc-it-")
        self.sock = os.path.join(self.dir, "s.sock")
        self.name = name or f"/shmc-it-{os.getpid()}-{id(self) & 0xffffff}"
        self.extra = list(extra)
        self.proc = None
        self.log = os.path.join(self.dir, "daemon.log")

    def args(self):
        return [self.binary, "--foreground", "--socket", self.sock,
                "--name", self.name] + self.geometry + [
                "--log-level", "debug", "--log-file", self.log] + self.extra

    def start(self, wait=True, env=None, preexec_fn=None):
        self.proc = subprocess.Popen(self.args(), env=env,
                                     preexec_fn=preexec_fn,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=HANG_S):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("daemon exited: " + self.logtext())
            try:
                c = Client(self.sock, timeout=1)
            except OSError:
                time.sleep(0.02)
                continue
            try:
                c.ping()
                return
            except (OSError, EOFError):
                time.sleep(0.02)
            finally:
                c.close()
        raise TimeoutError("daemon not ready: " + self.logtext())

    def logtext(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, sig=15, timeout=HANG_S):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout)
        rc = self.proc.returncode if self.proc else None
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        return rc

    def unlink(self):
        try:
            os.unlink("/dev/shm" + self.name)
        except FileNotFoundError:
            pass



class DaemonCase(unittest.TestCase):
    """A test case with its own daemon: DaemonCase.binary (set by the test
    program's main), with the class's `extra` arguments, started before
    each test, stopped and its region removed after."""
    binary = None
    extra = []

    def setUp(self):
        self.d = DaemonProc(DaemonCase.binary, extra=self.extra).start()

    def tearDown(self):
        self.d.stop()
        self.d.unlink()

def binaries(count, doc):
    """The first `count` command-line arguments, as absolute paths of
    executables.  Exits 2 with the usage (doc) when they are missing, and
    77 (skipped) when one is not executable or the host has no /dev/shm."""
    if len(sys.argv) <= count:
        print(doc)
        sys.exit(2)
    paths = [os.path.abspath(a) for a in sys.argv[1:count + 1]]
    for binary in paths:
        if not os.access(binary, os.X_OK):
            print(f"{binary}: not an executable: skipped")
            sys.exit(77)
    if not os.path.isdir("/dev/shm"):
        print("no /dev/shm: skipped")
        sys.exit(77)
    return paths


def loop_binary(binary, loop, wrapper=None):
    """For a test program run once per event loop (uring, epoll,
    fallback): returns (binary, args, fallback) - the daemon to start,
    the arguments that choose the loop, and whether io_uring is made
    unavailable.  "fallback" wraps binary in a script that runs it under
    the seccomp wrapper (no_uring), so the daemon must fall back to epoll
    by itself."""
    binary = os.path.abspath(binary)
    if loop != "fallback":
        return binary, ["--epoll"] if loop == "epoll" else [], False
    wrapper = os.path.abspath(wrapper)
    script = os.path.join(tempfile.mkdtemp(prefix="shmc-fb-"), "daemon")
    with open(script, "w") as f:
        f.write(f'#!/bin/sh\nexec "{wrapper}" "{binary}" "$@"\n')
    os.chmod(script, 0o755)
    return script, [], True


def loop_main(doc, prefix):
    """main() of a test program run once per event loop:
    PROG DAEMON uring|epoll|fallback [NO_URING] [unittest args].  Returns
    (binary, loop args, fallback, exit status): the status is None when
    the tests are to run (then run_tests() runs them), else 2
    (usage) or 77 (the host cannot run them)."""
    if len(sys.argv) < 3 or sys.argv[2] not in ("uring", "epoll", "fallback"):
        print(doc)
        return None, None, None, 2
    binary, args, fallback = loop_binary(
        sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    if len(sys.argv) > 3 and os.path.isfile(sys.argv[3]):
        del sys.argv[3]
    if not os.access(binary, os.X_OK):
        print(f"{binary}: not an executable: skipped")
        return None, None, None, 77
    if not os.path.isdir("/dev/shm"):
        print("no /dev/shm: skipped")
        return None, None, None, 77
    return binary, args, fallback, None


def run_tests(args, prefix):
    """Runs the __main__ module's test cases (args: unittest's arguments,
    e.g. test names) with temporary files in a private folder, prints the
    closing line "N passed, N failed, N skipped", and returns the exit
    status: 0 if all passed, else 1."""
    tempfile.tempdir = tempfile.mkdtemp(prefix=prefix)
    try:
        prog = unittest.main(module="__main__", argv=[sys.argv[0]] + args,
                             exit=False, verbosity=2)
    finally:
        shutil.rmtree(tempfile.tempdir, ignore_errors=True)
    r = prog.result
    failed = len(r.failures) + len(r.errors)
    print(f"{r.testsRun - failed - len(r.skipped)} passed, {failed} failed, "
          f"{len(r.skipped)} skipped")
    return 0 if r.wasSuccessful() else 1
