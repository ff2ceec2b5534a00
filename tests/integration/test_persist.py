#!/usr/bin/env python3
"""Integration tests of persistence: snapshots (cachectl save/load,
--snapshot at start and at shutdown, --snapshot-partial), damaged files,
a layout change through a snapshot, and warm restarts of the daemon under
load from several client processes (SIGTERM and SIGKILL).

    test_persist.py DAEMON_BINARY CACHECTL_BINARY [NO_URING [ITEM_CLIENT]]
                    [unittest args]

NO_URING (tests/integration/no_uring.c), when given, runs one round trip
with io_uring disabled, through the pread/pwrite fallback.  ITEM_CLIENT
(tests/integration/item_client.c) sets and reads items' flags and
versions; without it those tests are skipped.

Prints "N passed, N failed, N skipped" last; exits 0 if all passed, 1 if
not, 77 when the host cannot run it.

Also the writer processes of the warm-restart tests (they write until
the file STOP exists, and at least 20 times):
    test_persist.py --writer KIND SOCKET CACHECTL ID STOP OUT
and the lock holder of the background tests (holds KEY's segment lock,
through a libshmc reservation, from "held" until a line on stdin):
    test_persist.py --hold LIBSHMC SOCKET KEY
"""
import ctypes
import hashlib
import json
import os
import random
import re
import select
import shutil
import signal
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
NO_URING = None
ITEM_CLIENT = None

OK, NO, USAGE, UNREACHABLE, FAILED = 0, 1, 2, 3, 4
EBADMSG, EINVAL, EPERM, EBUSY, EISDIR = 74, 22, 1, 16, 21

PAGE = 4096
BLOCK_MAGIC = b"SBLK"
TRAILER_MAGIC = b"SEND"


def run_ctl(sock, *args, timeout=60):
    env = dict(os.environ)
    env.pop("SHMC_SOCKET", None)
    return subprocess.run([CACHECTL, "--socket", sock] + list(args),
                          capture_output=True, env=env, timeout=timeout)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def blocks_of(path):
    """[(offset, size, entries)] of the blocks of a snapshot file, read by
    the layout of docs/SNAPSHOT.md."""
    with open(path, "rb") as f:
        data = f.read()
    out, off = [], PAGE
    while len(data) - off >= PAGE and data[off + 8:off + 12] == BLOCK_MAGIC:
        count, size = struct.unpack_from("<II", data, off + 12)
        out.append((off, size, count))
        off += size
    assert data[off + 8:off + 12] == TRAILER_MAGIC, "no trailer"
    assert off + PAGE == len(data)
    return out


# ---------------------------------------------------------------------------
# Self-validating values (the writers and the checks)
# ---------------------------------------------------------------------------

def make_value(key, seq):
    body = hashlib.sha256(f"{key}|{seq}".encode()).hexdigest()
    n = 40 + (seq * 7919) % 3000
    return f"{key}|{seq}|".encode() + (body * (n // 64 + 1))[:n].encode()


def parse_value(key, val):
    """The sequence number a value carries, or raises ValueError when it is
    not exactly what make_value wrote for this key."""
    parts = val.split(b"|", 2)
    if len(parts) != 3 or parts[0] != key.encode():
        raise ValueError(f"{key}: value of another key: {val[:60]!r}")
    seq = int(parts[1])
    if make_value(key, seq) != val:
        raise ValueError(f"{key}: damaged value for seq {seq}: {val[:60]!r}")
    return seq


def find_libshmc():
    """libshmc.so next to the cachectl that uses it, or None."""
    try:
        out = subprocess.run(["ldd", CACHECTL], capture_output=True,
                             text=True, timeout=p.HANG_S).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"libshmc\.so\.\d+ => (\S+)", out)
    return m.group(1) if m and os.path.exists(m.group(1)) else None


def sanitizer_env(lib):
    """The environment a Python process needs to load lib: an ASan build's
    runtime must come first in the process, so it is preloaded."""
    env = dict(os.environ)
    try:
        out = subprocess.run(["ldd", lib], capture_output=True, text=True,
                             timeout=p.HANG_S).stdout
    except (OSError, subprocess.SubprocessError):
        return env
    m = re.search(r"libasan\.so\.\d+ => (\S+)", out)
    if m:
        env["LD_PRELOAD"] = m.group(1)
        env["ASAN_OPTIONS"] = "detect_leaks=0"  # Python's own allocations
    m = re.search(r"libtsan\.so\.\d+ => (\S+)", out)
    if m:  # its static TLS must be there from the start too
        env["LD_PRELOAD"] = m.group(1)
    return env


class LibClient:
    """libshmc through ctypes: the data path on the shared mapping."""

    def __init__(self, path, sock):
        self.lib = ctypes.CDLL(path)
        self.lib.shmc_open.argtypes = [ctypes.POINTER(ctypes.c_void_p),
                                       ctypes.c_char_p]
        self.lib.shmc_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                      ctypes.c_size_t, ctypes.c_char_p,
                                      ctypes.c_size_t, ctypes.c_uint32]
        self.h = ctypes.c_void_p()
        deadline = time.monotonic() + p.HANG_S
        while True:
            rc = self.lib.shmc_open(ctypes.byref(self.h), sock.encode())
            if rc == 0:
                break
            if time.monotonic() > deadline:
                raise OSError(-rc, "shmc_open")
            time.sleep(0.05)

    def set(self, key, val):
        k = key.encode()
        return self.lib.shmc_set(self.h, k, len(k), val, len(val), 0)


def writer_main(kind, sock, cachectl, wid, stop, out):
    """Writes keys w<id>-<k> again and again with rising sequence numbers
    until the file `stop` exists (and at least 20 times), whatever happens
    to the daemon; records, per key, the last sequence number whose write
    was acknowledged."""
    global CACHECTL
    CACHECTL = cachectl
    keys = [f"w{wid}-{k}" for k in range(60)]
    acked = {}
    seq = 0
    lib = proto = None
    if kind == "lib":
        lib = LibClient(find_libshmc(), sock)
    end = time.monotonic() + 4 * p.HANG_S  # only if the test hangs
    while (seq < 20 or not os.path.exists(stop)) and \
            time.monotonic() < end:
        key = keys[seq % len(keys)]
        val = make_value(key, seq)
        ok = False
        if kind == "lib":
            ok = lib.set(key, val) == 0
        elif kind == "ctl":
            try:
                ok = run_ctl(sock, "set", key, val, timeout=10)\
                    .returncode == OK
            except subprocess.TimeoutExpired:
                ok = False
        else:
            try:
                if proto is None:
                    proto = p.Client(sock, timeout=2)
                proto.set(key, val)
                ok = True
            except (OSError, EOFError, p.ProtoError):
                if proto:
                    proto.close()
                proto = None
                time.sleep(0.01)
        if ok:
            acked[key] = seq
        seq += 1
    with open(out, "w") as f:
        json.dump({"writes": seq, "acked": acked}, f)
    return 0


def start_after_kill(d, timeout=p.HANG_S):
    """Starts d; after a SIGKILL the io_uring of the dead daemon can keep
    its listening socket open for some milliseconds (the ring is torn down
    asynchronously), and the new daemon then refuses to start: retried, as
    systemd's Restart= would."""
    deadline = time.monotonic() + timeout
    while True:
        mark = len(d.logtext())
        try:
            return d.start()
        except RuntimeError:
            d.proc.stderr.close()
            if (time.monotonic() > deadline or "another shmcached is "
                    "serving" not in d.logtext()[mark:]):
                raise
            time.sleep(0.05)


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

class PersistTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shmc-persist-")
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            d.stop(sig=signal.SIGKILL)
            d.unlink()
        shutil.rmtree(self.dir, ignore_errors=True)

    def daemon(self, *extra, start=True, name=None):
        d = p.DaemonProc(DAEMON, extra=list(extra), name=name,
                         workdir=tempfile.mkdtemp(dir=self.dir))
        self.daemons.append(d)
        if start:
            d.start()
        return d

    def restart(self, d, *extra, sig=signal.SIGTERM):
        """Stops d, starts it again (same socket, name, log) with extra
        instead of its former extra arguments; returns the new log part."""
        d.stop(sig=sig)
        mark = len(d.logtext())
        d.extra = list(extra)
        start_after_kill(d)
        return lambda: d.logtext()[mark:]

    def client(self, d):
        c = p.Client(d.sock, timeout=30)
        self.addCleanup(c.close)
        return c

    def save(self, d, path):
        r = run_ctl(d.sock, "save", path)
        self.assertEqual(r.returncode, OK, r.stderr)
        m = re.match(rb"saved (\d+) entries to (.*)\n$", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        self.assertEqual(m.group(2).decode(), path)
        return int(m.group(1))

    def load(self, d, path):
        r = run_ctl(d.sock, "load", path)
        self.assertEqual(r.returncode, OK, r.stderr)
        m = re.match(rb"loaded (\d+) entries from (.*)\n$", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        return int(m.group(1))

    def fill(self, c, n, seed, vmax=20000, ttl=True):
        """n random keys (random bytes) with random values and TTLs;
        returns {key: (value, expire_at)} as the daemon reports them."""
        rnd = random.Random(seed)
        want = {}
        while len(want) < n:
            key = rnd.randbytes(rnd.randint(1, 200))
            val = rnd.randbytes(rnd.choice([0, 1, rnd.randint(2, vmax)]))
            c.set(key, val, rnd.choice([0, 1000, 86400, 10**6]) if ttl
                  else 0)
            want[key] = val
        return {k: (v, c.get(k)[1]) for k, v in want.items()}

    def assert_all_present(self, c, want):
        for key, (val, expire) in want.items():
            got, got_expire = c.get(key)
            self.assertEqual(got, val, key)
            self.assertEqual(got_expire, expire, key)
            if expire:
                self.assertLessEqual(abs(c.ttl(key) - (expire - time.time())),
                                     1.5)

    def assert_some_present(self, c, want, n):
        """The cache holds exactly n entries, n of want's keys, each with
        its right value."""
        self.assert_entries(c, n)
        present = 0
        for key, val in want.items():
            try:
                got = c.get(key)[0]
            except p.ProtoError:
                continue
            self.assertEqual(got, val)
            present += 1
        self.assertEqual(present, n)

    def assert_entries(self, c, n):
        self.assertEqual(c.stats()["entries"], n)

    def multi_block_snapshot(self, d, c):
        """A snapshot of 3+ blocks; returns (path, {key: value})."""
        want = {}
        for i in range(2400):  # about 9 MiB: three 4 MiB blocks
            key = f"mb-{i}".encode()
            val = hashlib.sha256(key).digest() * 120
            c.set(key, val)
            want[key] = val
        path = os.path.join(self.dir, "multi.snap")
        self.assertEqual(self.save(d, path), len(want))
        self.assertGreaterEqual(len(blocks_of(path)), 3)
        return path, want


class RoundTrip(PersistTest):
    def test_save_load_round_trip_is_identical(self):
        d = self.daemon("--memory", "64M")
        c = self.client(d)
        want = self.fill(c, 2000, seed=1)
        self.assert_entries(c, len(want))
        path = os.path.join(self.dir, "round.snap")
        self.assertEqual(self.save(d, path), len(want))
        # Written atomically: no temporary file left, private mode.
        self.assertFalse(os.path.exists(path + ".tmp"))
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertGreaterEqual(len(blocks_of(path)), 2)
        c.flush()
        self.assert_entries(c, 0)
        self.assertEqual(self.load(d, path), len(want))
        self.assert_entries(c, len(want))
        self.assert_all_present(c, want)
        self.assertEqual(c.check()["bad"], 0)
        log = d.logtext()
        self.assertIn(f"saved {len(want)} entries", log)
        self.assertIn(f"loaded {len(want)} entries", log)

    def test_load_into_a_new_daemon_and_save_again_is_the_same(self):
        a = self.daemon("--memory", "32M")
        want = self.fill(self.client(a), 500, seed=2)
        path = os.path.join(self.dir, "a.snap")
        self.save(a, path)
        b = self.daemon("--memory", "32M")
        self.assertEqual(self.load(b, path), len(want))
        self.assert_all_present(self.client(b), want)
        # A second save overwrites the first, atomically.
        self.assertEqual(self.save(b, path), len(want))
        self.assertEqual(self.load(b, path), len(want))

    def test_load_merges_into_what_is_there(self):
        d = self.daemon()
        c = self.client(d)
        c.set("kept", b"old")
        c.set("both", b"old")
        path = os.path.join(self.dir, "m.snap")
        c.set("both", b"saved")
        self.save(d, path)
        c.set("both", b"newer")
        c.set("extra", b"x")
        self.assertEqual(self.load(d, path), 2)
        self.assertEqual(c.get("both")[0], b"saved")
        self.assertEqual(c.get("kept")[0], b"old")
        self.assertEqual(c.get("extra")[0], b"x")

    def test_empty_cache_saves_and_loads_zero(self):
        d = self.daemon()
        path = os.path.join(self.dir, "empty.snap")
        self.assertEqual(self.save(d, path), 0)
        self.assertEqual(os.path.getsize(path), 2 * PAGE)
        self.assertEqual(self.load(d, path), 0)

    def test_round_trip_without_io_uring(self):
        if not NO_URING:
            self.skipTest("no no_uring wrapper given")
        script = os.path.join(self.dir, "daemon-no-uring")
        with open(script, "w") as f:
            f.write(f'#!/bin/sh\nexec "{NO_URING}" "{DAEMON}" "$@"\n')
        os.chmod(script, 0o755)
        d = p.DaemonProc(script, workdir=tempfile.mkdtemp(dir=self.dir))
        self.daemons.append(d)
        d.start()
        c = self.client(d)
        want = self.fill(c, 300, seed=3, vmax=30000)
        path = os.path.join(self.dir, "nouring.snap")
        self.assertEqual(self.save(d, path), len(want))
        c.flush()
        self.assertEqual(self.load(d, path), len(want))
        self.assert_all_present(c, want)
        self.assertIn("io_uring unavailable", d.logtext())


class Expiry(PersistTest):
    def test_expired_entries_are_neither_saved_nor_loaded(self):
        d = self.daemon()
        c = self.client(d)
        # The region clock counts whole seconds: TTLs of 1 and 8 s end
        # 0-1 and 7-8 s from now.  Each expiry is polled (the clock is
        # ticked by the daemon, later on a busy machine); the 7 s between
        # them leave the save ample time.
        c.set("forever", b"f")
        c.set("soon", b"s", ttl=8)
        c.set("gone", b"g", ttl=1)
        self.wait_expired(c, "gone")  # not saved
        path = os.path.join(self.dir, "exp.snap")
        self.assertEqual(self.save(d, path), 2)
        self.wait_expired(c, "soon")  # expired between save and load
        c.flush()
        self.assertEqual(self.load(d, path), 1)
        self.assertEqual(c.get("forever")[0], b"f")
        for key in ("soon", "gone"):
            with self.assertRaises(p.ProtoError) as e:
                c.get(key)
            self.assertEqual(e.exception.err, p.ENOENT)
        self.assertIn("skipped 1 expired", d.logtext())


    def wait_expired(self, c, key):
        deadline = time.monotonic() + p.HANG_S
        while True:
            try:
                c.get(key)
            except p.ProtoError as e:
                self.assertEqual(e.err, p.ENOENT)
                return
            self.assertLess(time.monotonic(), deadline, f"{key} lives on")
            time.sleep(0.05)


class BadFiles(PersistTest):
    def damaged(self, d, c, path, want_in_msg, want_err=EBADMSG):
        """LOAD of path fails with an error naming it (and want_in_msg),
        loads nothing, and cachectl load fails."""
        before = c.stats()["entries"]
        with self.assertRaises(p.ProtoError) as e:
            c.call("LOAD", p.bstr(path))
        self.assertEqual(e.exception.err, want_err)
        self.assertIn(path, e.exception.msg)
        for w in want_in_msg:
            self.assertIn(w, e.exception.msg)
        self.assertEqual(c.stats()["entries"], before)
        r = run_ctl(d.sock, "load", path)
        self.assertEqual(r.returncode, FAILED)
        # cachectl says what the daemon said: the file and the offset.
        self.assertEqual(r.stderr.decode(),
                         f"cachectl: load: {e.exception.msg}\n")
        self.assertIn(e.exception.msg, d.logtext())
        return e.exception.msg

    def test_corrupt_block_names_file_and_offset_and_loads_nothing(self):
        d = self.daemon("--memory", "32M")
        c = self.client(d)
        path, _ = self.multi_block_snapshot(d, c)
        c.flush()
        blocks = blocks_of(path)
        off1 = blocks[1][0]
        with open(path, "r+b") as f:  # one bit, in the middle of block 1
            f.seek(off1 + blocks[1][1] // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0x10]))
        msg = self.damaged(d, c, path, [f"offset {off1}:", "checksum",
                                        "nothing loaded"])
        self.assertIn("block 1", msg)

    def test_truncated_file_names_offset_and_loads_nothing(self):
        d = self.daemon("--memory", "32M")
        c = self.client(d)
        path, _ = self.multi_block_snapshot(d, c)
        c.flush()
        blocks = blocks_of(path)
        for cut in (blocks[2][0] + 100, blocks[2][0],
                    os.path.getsize(path) - 1, 10):
            t = os.path.join(self.dir, f"cut-{cut}.snap")
            with open(path, "rb") as f, open(t, "wb") as o:
                o.write(f.read(cut))
            self.damaged(d, c, t, ["truncated", "nothing loaded"])
        # Cut inside block 2: the error is at block 2.
        t = os.path.join(self.dir, f"cut-{blocks[2][0] + 100}.snap")
        self.damaged(d, c, t, [f"offset {blocks[2][0]}:"])

    def test_empty_foreign_and_other_version_files_are_refused(self):
        d = self.daemon()
        c = self.client(d)
        c.set("k", b"v")
        empty = os.path.join(self.dir, "empty")
        open(empty, "wb").close()
        self.damaged(d, c, empty, ["offset 0:", "empty file"])
        text = os.path.join(self.dir, "text")
        with open(text, "w") as f:
            f.write("not a snapshot\n" * 1000)
        self.damaged(d, c, text, ["offset 0:", "bad magic"])
        good = os.path.join(self.dir, "good.snap")
        self.save(d, good)
        with open(good, "rb") as f:
            data = bytearray(f.read())
        struct.pack_into("<I", data, 16, 3)  # the version field
        v3 = os.path.join(self.dir, "v3.snap")
        with open(v3, "wb") as f:
            f.write(data)
        self.damaged(d, c, v3, ["offset 0:", "header"])

    def test_missing_file_directory_and_relative_path(self):
        d = self.daemon()
        c = self.client(d)
        missing = os.path.join(self.dir, "missing.snap")
        with self.assertRaises(p.ProtoError) as e:
            c.call("LOAD", p.bstr(missing))
        self.assertEqual(e.exception.err, p.ENOENT)
        self.assertIn(missing, e.exception.msg)
        with self.assertRaises(p.ProtoError) as e:
            c.call("LOAD", p.bstr(self.dir))
        self.assertEqual(e.exception.err, EINVAL)
        self.assertIn("not a regular file", e.exception.msg)
        for bad in (b"relative.snap", b"", b"/tmp/a\0b"):
            for req in ("SAVE", "LOAD"):
                with self.assertRaises(p.ProtoError) as e:
                    c.call(req, p.bstr(bad))
                self.assertEqual(e.exception.err, EINVAL)
        # A save into a missing directory fails and leaves nothing.
        nodir = os.path.join(self.dir, "no", "such.snap")
        with self.assertRaises(p.ProtoError) as e:
            c.call("SAVE", p.bstr(nodir))
        self.assertEqual(e.exception.err, p.ENOENT)
        self.assertIn(nodir, e.exception.msg)
        c.ping()  # the connection goes on

    def test_failed_save_keeps_the_previous_snapshot(self):
        d = self.daemon()
        c = self.client(d)
        c.set("a", b"1")
        path = os.path.join(self.dir, "keep.snap")
        self.assertEqual(self.save(d, path), 1)
        before = read_file(path)
        # FILE.tmp cannot be made: a directory stands in its way.
        os.mkdir(path + ".tmp")
        c.set("b", b"2")
        with self.assertRaises(p.ProtoError) as e:
            c.call("SAVE", p.bstr(path))
        self.assertIn(path, e.exception.msg)
        self.assertEqual(read_file(path), before)
        os.rmdir(path + ".tmp")
        self.assertEqual(self.save(d, path), 2)

    def test_save_whose_rename_fails_leaves_no_tmp_file(self):
        d = self.daemon()
        c = self.client(d)
        c.set("a", b"1")
        # FILE is a directory (empty, then not): FILE.tmp is written,
        # then cannot be renamed over it.
        path = os.path.join(self.dir, "dir.snap")
        os.mkdir(path)
        for inside in (None, "keep"):
            if inside:
                with open(os.path.join(path, inside), "wb") as f:
                    f.write(b"mine")
            with self.assertRaises(p.ProtoError) as e:
                c.call("SAVE", p.bstr(path))
            self.assertFalse(os.path.lexists(path + ".tmp"),
                             "FILE.tmp left behind")
            self.assertEqual(e.exception.err, EISDIR)
            self.assertIn(f"snapshot {path}: cannot rename {path}.tmp",
                          e.exception.msg)
            self.assertIn("a directory has that name", e.exception.msg)
            self.assertEqual(sorted(os.listdir(path)),
                             [inside] if inside else [])
        r = run_ctl(d.sock, "save", path)
        self.assertEqual(r.returncode, FAILED)
        self.assertIn("a directory has that name", r.stderr.decode())
        self.assertFalse(os.path.lexists(path + ".tmp"))
        c.ping()

    def test_partial_at_start_loads_the_blocks_before_the_damage(self):
        src = self.daemon("--memory", "32M")
        path, want = self.multi_block_snapshot(src, self.client(src))
        blocks = blocks_of(path)
        with open(path, "r+b") as f:
            f.seek(blocks[1][0] + 1000)
            f.write(b"\xff\xfe")
        # Default: nothing of it; the daemon starts anyway, empty.
        d = self.daemon("--memory", "32M", "--snapshot", path)
        c = self.client(d)
        self.assert_entries(c, 0)
        log = d.logtext()
        self.assertIn(f"snapshot {path}: offset {blocks[1][0]}:", log)
        self.assertIn("starting with an empty cache", log)
        # It was moved aside (DamagedSnapshotFile): put it back.
        self.assertFalse(os.path.exists(path))
        aside = [n for n in os.listdir(self.dir) if ".damaged-" in n]
        self.assertEqual(len(aside), 1)
        os.rename(os.path.join(self.dir, aside[0]), path)
        # --snapshot-partial: block 0's entries, all correct; the file is
        # moved aside as well (the blocks after the damage are in it).
        d = self.daemon("--memory", "32M", "--snapshot", path,
                        "--snapshot-partial")
        c = self.client(d)
        self.assert_some_present(c, want, blocks[0][2])
        self.assertIn(f"the {blocks[0][2]} entries", d.logtext())
        self.assertIn("moved the damaged snapshot", d.logtext())

    def test_partial_load_request_keeps_the_blocks_before_the_damage(self):
        d = self.daemon("--memory", "32M")
        c = self.client(d)
        path, want = self.multi_block_snapshot(d, c)
        # Whole: the same as a plain load.
        c.flush()
        r = run_ctl(d.sock, "load", "--partial", path)
        self.assertEqual(r.returncode, OK, r.stderr)
        self.assertEqual(r.stdout.decode(),
                         f"loaded {len(want)} entries from {path}\n")
        for key, val in want.items():
            self.assertEqual(c.get(key)[0], val)
        # Damaged in block 1: block 0's entries are loaded, and said so.
        blocks = blocks_of(path)
        with open(path, "r+b") as f:
            f.seek(blocks[1][0] + 1000)
            f.write(b"\xff\xfe")
        c.flush()
        r = run_ctl(d.sock, "load", "--partial", path)
        self.assertEqual(r.returncode, FAILED)
        err = r.stderr.decode()
        self.assertIn(f"snapshot {path}: offset {blocks[1][0]}:", err)
        self.assertIn(f"loaded the {blocks[0][2]} entries", err)
        self.assert_some_present(c, want, blocks[0][2])
        # Unknown flags are refused, and nothing is loaded.
        c.flush()
        with self.assertRaises(p.ProtoError) as e:
            c.call("LOAD", p.bstr(path.encode()) + p.u32(2))
        self.assertEqual(e.exception.err, EINVAL)
        with self.assertRaises(p.ProtoError) as e:
            c.call("LOAD", p.bstr(path.encode()) + b"\0\0")
        self.assertEqual(e.exception.err, EBADMSG)
        self.assert_entries(c, 0)

    def test_only_the_daemons_user_may_save_or_load(self):
        if os.getuid() != 0:
            self.skipTest("needs root to act as another user")
        # A socket another user can reach: a 0755 directory, and
        # --allow-user makes the socket 0666.
        wd = tempfile.mkdtemp(dir="/tmp", prefix="shmc-persist-perm-")
        self.addCleanup(shutil.rmtree, wd, True)
        os.chmod(wd, 0o755)
        d = p.DaemonProc(DAEMON, extra=["--allow-user", "65534"],
                         workdir=wd)
        self.daemons.append(d)
        d.start()
        path = os.path.join(wd, "x.snap")
        code = (
            "import os, sys\n"
            f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
            "import shmcproto as p\n"
            "os.setgid(65534); os.setuid(65534)\n"
            f"c = p.Client({d.sock!r})\n"
            "for req in ('SAVE', 'LOAD'):\n"
            "    try:\n"
            f"        c.call(req, p.bstr({path!r})); print('done')\n"
            "    except p.ProtoError as e:\n"
            "        print(e.err)\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                           text=True, timeout=p.HANG_S)
        self.assertEqual(r.stdout.split(), [str(EPERM)] * 2, r.stderr)
        self.assertFalse(os.path.exists(path))


class DamagedSnapshotFile(PersistTest):
    """A --snapshot file that fails to load is never saved over: it is
    moved aside, and what it holds can still be recovered."""

    def damaged_snapshot(self):
        """A snapshot of 3+ blocks with bytes flipped in the middle of
        block 1; returns (path, {key: value}, blocks)."""
        src = self.daemon("--memory", "32M")
        path, want = self.multi_block_snapshot(src, self.client(src))
        blocks = blocks_of(path)
        with open(path, "r+b") as f:
            f.seek(blocks[1][0] + blocks[1][1] // 2)
            b = f.read(16)
            f.seek(-16, 1)
            f.write(bytes(x ^ 0xA5 for x in b))
        return path, want, blocks

    def moved_to(self, log, path, kind="damaged"):
        """The name the log says path was moved aside to."""
        m = re.search(rf"moved the [^\n]*snapshot {re.escape(path)}[^\n]* "
                      rf"aside to ({re.escape(path)}\.{kind}-"
                      rf"\d{{8}}T\d{{6}}Z(?:-\d+)?) ", log)
        self.assertIsNotNone(m, log)
        return m.group(1)

    def test_damaged_snapshot_is_moved_aside_and_not_saved_over(self):
        path, want, blocks = self.damaged_snapshot()
        damaged = read_file(path)
        d = self.daemon("--memory", "32M", "--snapshot", path)
        c = self.client(d)
        self.assert_entries(c, 0)
        log = d.logtext()
        self.assertIn("starting with an empty cache", log)
        moved = self.moved_to(log, path)
        # The log says how to recover it.
        self.assertIn(f"cachectl --socket {d.sock} load --partial {moved}",
                      log)
        self.assertEqual(os.path.dirname(moved), os.path.dirname(path))
        c.set("new", b"after the start")
        c.close()
        self.assertEqual(d.stop(), 0)  # a clean stop saves to path
        self.assertIn(f"saved 1 entries (", d.logtext())
        # The damaged bytes survive, under the new name only.
        self.assertEqual(read_file(moved), damaged)
        aside = [n for n in os.listdir(self.dir) if ".damaged-" in n]
        self.assertEqual(aside, [os.path.basename(moved)])
        # path is the new snapshot: the one entry set since the start.
        d2 = self.daemon("--memory", "32M")
        c2 = self.client(d2)
        self.assertEqual(self.load(d2, path), 1)
        self.assertEqual(c2.get("new")[0], b"after the start")
        # load --partial of the moved file recovers block 0's entries.
        c2.flush()
        r = run_ctl(d2.sock, "load", "--partial", moved)
        self.assertEqual(r.returncode, FAILED, r.stderr)
        self.assertIn(f"loaded the {blocks[0][2]} entries of the 1 blocks "
                      f"before it", r.stderr.decode())
        self.assertGreater(blocks[0][2], 0)
        self.assert_some_present(c2, want, blocks[0][2])

    def test_move_aside_never_replaces_an_existing_file(self):
        path, _, _ = self.damaged_snapshot()
        # Every name of the next two minutes is taken already.
        now = int(time.time())
        taken = {}
        for t in range(now - 1, now + 120):
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))
            name = f"{path}.damaged-{stamp}"
            with open(name, "wb") as f:
                f.write(name.encode())
            taken[name] = name.encode()
        d = self.daemon("--memory", "32M", "--snapshot", path)
        moved = self.moved_to(d.logtext(), path)
        self.assertTrue(moved.endswith("-2"), moved)
        self.assertFalse(os.path.exists(path))
        for name, data in taken.items():
            self.assertEqual(read_file(name), data)

    def test_other_version_is_moved_aside_too(self):
        # A version 3 file with a valid checksum: the fuzz seed written by
        # test_snapshot --write-corpus, past its first byte (the fuzz
        # harness's mode).
        seed = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "..", "fuzz", "corpus", "snapshot",
                            "v2-version-3")
        data = read_file(seed)[1:]
        self.assertEqual(data[:8], b"SHMCSNAP")
        path = os.path.join(self.dir, "v3.snap")
        with open(path, "wb") as f:
            f.write(data)
        d = self.daemon("--snapshot", path)
        self.assertEqual(d.stop(), 0)
        moved = self.moved_to(d.logtext(), path, kind="unloaded")
        self.assertEqual(read_file(moved), data)
        self.assertIn("snapshot format version 3", d.logtext())

    def test_failed_load_request_of_the_snapshot_file_is_kept_at_stop(self):
        path = os.path.join(self.dir, "req.snap")
        d = self.daemon("--memory", "32M", "--snapshot", path)
        c = self.client(d)
        c.set("a", b"1")
        self.assertEqual(self.save(d, path), 1)
        with open(path, "r+b") as f:  # the header's checksummed bytes
            f.seek(100)
            f.write(b"\xff" * 8)
        damaged = read_file(path)
        r = run_ctl(d.sock, "load", path)
        self.assertEqual(r.returncode, FAILED)
        # Still there for the operator until the stop...
        self.assertEqual(read_file(path), damaged)
        self.assertEqual(d.stop(), 0)
        # ...which moves it aside, then saves.
        moved = self.moved_to(d.logtext(), path)
        self.assertEqual(read_file(moved), damaged)
        d2 = self.daemon()
        self.assertEqual(self.load(d2, path), 1)

    def test_snapshot_that_cannot_be_moved_aside_is_not_saved_over(self):
        path, _, _ = self.damaged_snapshot()
        damaged = read_file(path)
        # An immutable file cannot be renamed (nor replaced by a rename).
        r = subprocess.run(["chattr", "+i", path], capture_output=True)
        if r.returncode != 0:
            self.skipTest("chattr +i not available here")
        self.addCleanup(subprocess.run, ["chattr", "-i", path])
        d = self.daemon("--memory", "32M", "--snapshot", path)
        c = self.client(d)
        c.set("new", b"x")
        c.close()
        self.assertEqual(d.stop(), 0)
        log = d.logtext()
        self.assertIn(f"snapshot {path} failed to load and cannot be moved "
                      f"aside to {path}.damaged-", log)
        self.assertIn("not saving the snapshot", log)
        self.assertNotIn("saved 1 entries", log)
        self.assertEqual(read_file(path), damaged)
        self.assertFalse(os.path.lexists(path + ".tmp"))

    def test_directory_at_snapshot_path_is_left_alone(self):
        path = os.path.join(self.dir, "isdir.snap")
        os.mkdir(path)
        d = self.daemon("--snapshot", path)
        self.assertEqual(d.stop(), 0)
        log = d.logtext()
        self.assertIn("not a regular file", log)
        self.assertNotIn("moved", log)
        self.assertIn("a directory has that name", log)
        self.assertTrue(os.path.isdir(path))
        self.assertFalse(os.path.lexists(path + ".tmp"))


class SmallerCache(PersistTest):
    def test_smaller_cache_keeps_fewer_none_wrong_and_counts_skips(self):
        big = self.daemon("--memory", "64M")
        c = self.client(big)
        want = {}
        for i in range(3000):
            key = f"s-{i}".encode()
            val = hashlib.sha256(key).digest() * (32 if i % 100 else 3000)
            c.set(key, val)  # 1 KiB; every 100th 96000 bytes
            want[key] = val
        path = os.path.join(self.dir, "big.snap")
        self.assertEqual(self.save(big, path), len(want))
        small = self.daemon("--memory", "2M")  # max_kv ~25 KB here
        sc = self.client(small)
        loaded = self.load(small, path)
        self.assertEqual(loaded, len(want) - 30)
        self.assertIn("skipped 0 expired, 30 too large for this cache",
                      small.logtext())
        present = 0
        for key, val in want.items():
            try:
                got = sc.get(key)[0]
            except p.ProtoError as e:
                self.assertEqual(e.err, p.ENOENT)
                continue
            self.assertEqual(got, val, key)
            present += 1
        self.assertGreater(present, 0)
        self.assertLess(present, loaded)  # evicted to make room
        self.assertEqual(present, sc.stats()["entries"])
        self.assertEqual(sc.check()["bad"], 0)


class Restarts(PersistTest):
    def test_snapshot_saved_on_sigterm_and_loaded_into_a_new_region(self):
        path = os.path.join(self.dir, "auto.snap")
        d = self.daemon("--memory", "32M", "--snapshot", path,
                        "--unlink-on-exit")
        self.assertIn(f"snapshot {path} does not exist yet", d.logtext())
        c = self.client(d)
        want = self.fill(c, 400, seed=4)
        c.close()
        new_log = self.restart(d, "--memory", "32M", "--snapshot", path,
                               "--unlink-on-exit")
        self.assertIn(f"saved {len(want)} entries", d.logtext())
        self.assertIn("created region", new_log())
        self.assertIn(f"loaded {len(want)} entries", new_log())
        c = self.client(d)
        self.assert_all_present(c, want)

    def test_adopted_region_is_not_loaded_over(self):
        path = os.path.join(self.dir, "adopt.snap")
        d = self.daemon("--snapshot", path)
        c = self.client(d)
        c.set("k", b"saved")
        c.close()
        new_log = self.restart(d, "--snapshot", path)  # saves "saved"
        c = self.client(d)
        self.assertIn("adopted region", new_log())
        self.assertNotIn("loaded", new_log())
        c.set("k", b"newer")
        c.close()
        # SIGKILL: no save, the region keeps "newer"; not loaded over.
        new_log = self.restart(d, "--snapshot", path, sig=signal.SIGKILL)
        self.assertNotIn("loaded", new_log())
        self.assertEqual(self.client(d).get("k")[0], b"newer")

    def test_layout_change_through_a_snapshot(self):
        d = self.daemon("--memory", "32M", "--segments", "16")
        c = self.client(d)
        want = self.fill(c, 1000, seed=5)
        c.close()
        path = os.path.join(self.dir, "upgrade.snap")
        self.assertEqual(self.save(d, path), len(want))
        d.stop()
        # Another geometry is refused without --reset...
        d.extra = ["--memory", "48M", "--segments", "64"]
        d.start(wait=False)
        self.assertNotEqual(d.proc.wait(p.HANG_S), 0)
        self.assertIn("--reset", d.logtext())
        # ...and with --reset --snapshot the new region is filled.
        mark = len(d.logtext())
        d.extra = ["--memory", "48M", "--segments", "64", "--reset",
                   "--snapshot", path]
        d.start()
        log = d.logtext()[mark:]
        self.assertIn("replacing region", log)
        self.assertIn(f"loaded {len(want)} entries", log)
        c = self.client(d)
        self.assertEqual(len(c.stats(per_segment=True)), 64)
        self.assert_all_present(c, want)


class ItemsAcrossRestarts(PersistTest):
    """Flags and versions (CAS) of items across a snapshot and a
    --reset, through item_client."""

    def setUp(self):
        super().setUp()
        if not ITEM_CLIENT:
            self.skipTest("no item_client given")

    def item(self, d, *args, rc=0):
        r = subprocess.run([ITEM_CLIENT, d.sock] + [str(a) for a in args],
                           capture_output=True, text=True, timeout=p.HANG_S)
        self.assertEqual(r.returncode, rc, r.stderr)
        return r.stdout.split()

    def gets(self, d, key):
        flags, version, *val = self.item(d, "gets", key)
        return int(flags), int(version), " ".join(val)

    def test_flags_and_versions_survive_a_snapshot(self):
        d = self.daemon()
        want = {}
        for i in range(200):
            flags = (i * 2654435761) & 0xffffffff if i % 4 else 0
            want[f"f{i}"] = (flags, int(self.item(d, "set", f"f{i}",
                                                  f"v{i}", flags)[0]))
        path = os.path.join(self.dir, "items.snap")
        self.assertEqual(self.save(d, path), len(want))
        saved_max = max(v for _, v in want.values())
        # A new region (another name) with the snapshot loaded at start.
        d2 = self.daemon("--snapshot", path)
        self.assertIn(f"loaded {len(want)} entries", d2.logtext())
        for i, (key, (flags, version)) in enumerate(want.items()):
            got_flags, got_version, val = self.gets(d2, key)
            self.assertEqual((got_flags, val), (flags, f"v{i}"), key)
            self.assertGreater(got_version, saved_max, key)
        # A version read before the save is not one any more.
        self.assertEqual(self.item(d2, "cas", "f1", "x", want["f1"][1]),
                         ["exists"])
        _, now_version, _ = self.gets(d2, "f1")
        self.assertEqual(self.item(d2, "cas", "f1", "x", now_version),
                         ["stored"])
        self.assertGreater(int(self.item(d2, "set", "new", "n", 0)[0]),
                           saved_max)

    def test_reset_issues_versions_above_the_replaced_regions(self):
        d = self.daemon("--memory", "32M")
        # Versions far above what a region formatted now starts at.
        high = (int(time.time()) + 10**6) << 32
        self.item(d, "floor", high, "/dev/shm" + d.name)
        old = int(self.item(d, "set", "k", "old", 5)[0])
        self.assertGreater(old, high)
        d.stop()
        mark = len(d.logtext())
        d.extra = ["--memory", "48M", "--reset"]
        d.start()
        log = d.logtext()[mark:]
        self.assertIn("replacing region", log)
        self.assertIn("item versions of the new region start above", log)
        self.assertEqual(self.item(d, "gets", "k", rc=1), [])
        self.assertGreater(int(self.item(d, "set", "k", "new", 0)[0]), old)


def hold_main(lib_path, sock, key):
    """Reserves key (its segment stays locked), says "held", waits for a
    line on stdin, commits, says "committed"."""
    lib = LibClient(lib_path, sock)
    lib.lib.shmc_reserve.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                     ctypes.c_size_t, ctypes.c_size_t,
                                     ctypes.c_uint32, ctypes.c_void_p]
    lib.lib.shmc_commit.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    res = ctypes.create_string_buffer(256)  # struct shmc_reservation
    k = key.encode()
    rc = lib.lib.shmc_reserve(lib.h, k, len(k), 0, 0, res)
    print("held" if rc == 0 else f"reserve failed: {rc}", flush=True)
    sys.stdin.readline()
    rc = lib.lib.shmc_commit(lib.h, res)
    print("committed" if rc == 0 else f"commit failed: {rc}", flush=True)
    return 0


class Background(PersistTest):
    """SAVE and LOAD run on a thread of the daemon: the event loop serves
    everyone else meanwhile, the requester's later frames wait their turn,
    and one runs at a time."""
    loop = ()  # the daemon's default loop: io_uring

    def hold(self, d, key):
        """A process holding key's segment lock: a save waits for it."""
        lib = find_libshmc()
        if not lib:
            self.skipTest("libshmc not found next to cachectl")
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--hold", lib,
             d.sock, key], env=sanitizer_env(lib), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: (proc.kill(), proc.communicate()))
        self.assertEqual(proc.stdout.readline().strip(), "held",
                         proc.stderr.read() if proc.poll() else "")
        return proc

    def release(self, proc):
        proc.stdin.write("go\n")
        proc.stdin.flush()
        self.assertEqual(proc.stdout.readline().strip(), "committed")
        proc.wait(timeout=p.HANG_S)

    def wait_job_running(self, d):
        """Waits until a save or load runs: a LOAD of a missing file is
        refused with EBUSY then (and with ENOENT, doing nothing, before)."""
        c = self.client(d)
        missing = os.path.join(self.dir, "no-such.snap").encode()
        deadline = time.monotonic() + p.HANG_S
        while True:
            with self.assertRaises(p.ProtoError) as e:
                c.call("LOAD", p.bstr(missing))
            if e.exception.err == EBUSY:
                break
            self.assertEqual(e.exception.err, p.ENOENT)
            self.assertLess(time.monotonic(), deadline, "no job started")
            time.sleep(0.01)
        c.close()

    def replied(self, c, wait):
        """Whether a reply frame is waiting on c within wait seconds."""
        return bool(select.select([c.sock], [], [], wait)[0])

    def test_save_runs_beside_the_loop_and_replies_in_order(self):
        d = self.daemon(*self.loop)
        c = self.client(d)
        want = {f"bg-{i}".encode(): os.urandom(50) for i in range(300)}
        for k, v in want.items():
            c.set(k, v)
        holder = self.hold(d, "held-key")
        path = os.path.join(self.dir, "bg.snap")
        saver = self.client(d)
        save, save_id = saver.frame(p.T["SAVE"], p.bstr(path.encode()))
        ping, ping_id = saver.frame(p.T["PING"])
        saver.send_raw(save + ping)  # the PING must wait for the SAVE
        # Everyone else is served while the save waits for the lock.
        # (Were the loop waiting with the save, these would be answered
        # only once the save gave up, and the SAVE and LOAD below would
        # then not be refused as "already running".)
        other = self.client(d)
        other.ping()
        self.assertGreaterEqual(len(other.clients()), 2)
        with self.assertRaises(p.ProtoError) as e:
            other.call("SAVE", p.bstr(path.encode() + b".2"))
        self.assertEqual(e.exception.err, EBUSY)
        self.assertIn("already running", e.exception.msg)
        with self.assertRaises(p.ProtoError) as e:
            other.call("LOAD", p.bstr(path.encode()))
        self.assertEqual(e.exception.err, EBUSY)
        self.assertFalse(self.replied(saver, 0.3), "SAVE replied early")
        self.assertFalse(os.path.exists(path))

        self.release(holder)
        type_, rid, body = saver.read_frame()
        self.assertEqual((type_, rid), (p.T["SAVE"] | p.REPLY, save_id))
        self.assertEqual(p.Reader(body).u64(), len(want) + 1)  # + held-key
        type_, rid, _ = saver.read_frame()
        self.assertEqual((type_, rid), (p.T["PING"] | p.REPLY, ping_id))
        # The next one runs (the slot was freed), and the file is whole.
        self.assertEqual(self.save(d, path), len(want) + 1)
        d2 = self.daemon()
        self.assertEqual(self.load(d2, path), len(want) + 1)
        c2 = self.client(d2)
        for k, v in want.items():
            self.assertEqual(c2.get(k)[0], v)

    def test_requester_that_does_not_read_does_not_hold_the_slot(self):
        d = self.daemon(*self.loop, "--memory", "32M", "--segments", "4")
        c = self.client(d)
        c.set(b"big", os.urandom(200 * 1024))
        # 800 KiB of replies fill the socket, then a SAVE; never read.
        hog = self.client(d)
        path = os.path.join(self.dir, "hog.snap")
        hog.send_raw(b"".join(hog.frame(p.T["GET"], p.bstr(b"big"))[0]
                              for _ in range(4)) +
                     hog.frame(p.T["SAVE"], p.bstr(path.encode()))[0])
        deadline = time.monotonic() + p.HANG_S
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertTrue(os.path.exists(path), "the hog's SAVE never ran")
        # Its reply cannot be sent; the next SAVE runs all the same.
        saved = None
        while saved is None and time.monotonic() < deadline:
            try:
                saved = c.call("SAVE", p.bstr(path.encode() + b".2")).u64()
            except p.ProtoError as e:
                self.assertEqual(e.err, EBUSY)
                time.sleep(0.02)
        self.assertEqual(saved, 1)

    def test_requester_that_leaves_frees_the_slot_and_shutdown_waits(self):
        d = self.daemon(*self.loop)
        c = self.client(d)
        c.set(b"a", b"1")
        holder = self.hold(d, "held-key")
        gone = p.Client(d.sock)
        path = os.path.join(self.dir, "gone.snap")
        data, _ = gone.frame(p.T["SAVE"], p.bstr(path.encode()))
        gone.send_raw(data)
        self.wait_job_running(d)
        gone.close()  # its save goes on; the reply has nowhere to go
        self.release(holder)
        deadline = time.monotonic() + p.HANG_S
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertTrue(os.path.exists(path))
        # A later save is not refused as "already running".
        self.assertEqual(self.save(d, path + ".2"), 2)
        # SIGTERM during a save: the daemon finishes it before it exits.
        holder = self.hold(d, "held-key")
        saver = self.client(d)
        data, save_id = saver.frame(p.T["SAVE"],
                                    p.bstr(path.encode() + b".3"))
        saver.send_raw(data)
        self.wait_job_running(d)
        d.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        self.assertIsNone(d.proc.poll(), "exited with a save running")
        self.release(holder)
        self.assertEqual(d.proc.wait(timeout=p.HANG_S), 0)
        self.assertIn("waiting for the running save", d.logtext())
        type_, rid, body = saver.read_frame()
        self.assertEqual((type_, rid), (p.T["SAVE"] | p.REPLY, save_id))
        self.assertEqual(p.Reader(body).u64(), 2)
        d2 = self.daemon()
        self.assertEqual(self.load(d2, path + ".3"), 2)


class BackgroundEpoll(Background):
    """The same with the epoll loop."""
    loop = ("--epoll",)


class WarmRestartUnderLoad(PersistTest):
    def writers(self, d, stop):
        kinds = ["proto", "proto", "ctl"]
        lib = find_libshmc()
        if lib:
            kinds += ["lib", "lib"]
        procs = []
        for i, kind in enumerate(kinds):
            out = os.path.join(self.dir, f"writer-{i}.json")
            procs.append((subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--writer", kind,
                 d.sock, CACHECTL, str(i), stop, out],
                env=sanitizer_env(lib) if kind == "lib" else None,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out))
        return procs

    def verify(self, d, procs):
        acked = {}
        for proc, out in procs:
            _, err = proc.communicate(timeout=5 * p.HANG_S)
            self.assertEqual(proc.returncode, 0, err.decode())
            with open(out) as f:
                res = json.load(f)
            self.assertGreaterEqual(res["writes"], 20)
            acked.update(res["acked"])
        c = self.client(d)
        wrong = []
        for key, seq in acked.items():
            try:
                val = c.get(key)[0]
            except p.ProtoError as e:
                wrong.append(f"{key}: acknowledged write {seq} lost "
                             f"({e.msg})")
                continue
            try:
                got = parse_value(key, val)
                if got < seq:
                    wrong.append(f"{key}: seq {got} < acknowledged {seq}")
            except ValueError as e:
                wrong.append(str(e))
        log = "\n".join(line for line in d.logtext().splitlines()
                        if " debug: " not in line)
        self.assertEqual(wrong, [], log)
        check = c.check()
        self.assertEqual(check["bad"], 0, (check, log))
        r = run_ctl(d.sock, "check")
        self.assertEqual(r.returncode, OK, r.stdout + r.stderr)
        return len(acked)

    def sets_reach(self, d, n):
        """Waits until the cache has counted n sets (a deadline that only
        catches hangs: the writers are slower on a busy machine)."""
        c = self.client(d)
        deadline = time.monotonic() + p.HANG_S
        while c.stats()["sets"] < n:
            self.assertLess(time.monotonic(), deadline, "writers stalled")
            time.sleep(0.05)
        c.close()

    def under_load(self, sig):
        path = os.path.join(self.dir, "load.snap")
        stop = os.path.join(self.dir, "stop-writers")
        d = self.daemon("--memory", "32M", "--snapshot", path)
        procs = self.writers(d, stop)
        self.sets_reach(d, 300)  # the writers are at work
        new_log = self.restart(d, "--memory", "32M", "--snapshot", path,
                               sig=sig)
        self.assertIn("adopted region", new_log())
        # They go on writing into the adopted region (its counters too).
        c = self.client(d)
        self.sets_reach(d, c.stats()["sets"] + 300)
        c.close()
        open(stop, "w").close()
        keys = self.verify(d, procs)
        self.assertGreater(keys, 100)
        return d

    def test_sigterm_under_load_keeps_every_value_right(self):
        d = self.under_load(signal.SIGTERM)
        self.assertRegex(d.logtext(), r"saved \d+ entries")

    def test_sigkill_under_load_keeps_every_value_right(self):
        self.under_load(signal.SIGKILL)


def main():
    global DAEMON, CACHECTL, NO_URING, ITEM_CLIENT
    if len(sys.argv) >= 2 and sys.argv[1] == "--writer":
        kind, sock, ctl, wid, stop, out = sys.argv[2:8]
        return writer_main(kind, sock, ctl, int(wid), stop, out)
    if len(sys.argv) == 5 and sys.argv[1] == "--hold":
        return hold_main(*sys.argv[2:5])
    DAEMON, CACHECTL = p.binaries(2, __doc__)
    rest = sys.argv[3:]
    if rest and not rest[0].startswith("-") and os.access(rest[0], os.X_OK):
        NO_URING = os.path.abspath(rest.pop(0))
    if rest and not rest[0].startswith("-") and os.access(rest[0], os.X_OK):
        ITEM_CLIENT = os.path.abspath(rest.pop(0))
    return p.run_tests(rest, "shmc-persist-")


if __name__ == "__main__":
    sys.exit(main())
