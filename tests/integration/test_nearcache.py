#!/usr/bin/env python3
"""End-to-end tests of the near cache (--redis, docs/NEARCACHE.md): real
redis-server processes (a server on a Unix socket or a loopback port, a
3-master Redis Cluster), shmcached daemons that follow them, and keys
stored in the daemons' regions that must disappear when a third client
writes them to Redis.

    test_nearcache.py DAEMON_BINARY CACHECTL_BINARY LEASE_CLIENT
                      CRASH_CLIENT [unittest args]

Needs redis-server, redis-cli and Debian's python3-redis (for
/usr/bin/python3): exits 77 (skipped) without them.  Prints "N passed,
N failed, N skipped" last; exits 0 if all passed, 1 if not.
"""
import errno
import json
import os
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

try:
    import redis  # Debian's python3-redis
    import redis.cluster
except ImportError:
    redis = None

DAEMON = CACHECTL = LEASE = CRASH = None
REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")

# How long a test waits for something that should happen at once (an
# invalidation, a reconnection): long enough that only a hang reaches it.
# The latency is printed, never asserted: the benchmark measures it.
DEADLINE = 15.0

PREFIXES = ("user:", "sess:")
# region_hdr.ns_clock's offset (shared/layout.h: line 2 of the header,
# after clock, daemon_pid, boot_count, next_client_id, lock_timeout_ms,
# pidns and ns_lenmask).
NS_CLOCK_OFFSET = 168


free_port = p.free_port


def wait_for(what, fn, timeout=DEADLINE):
    """Polls fn() until it is true; fails naming `what` at the deadline.
    Returns the seconds it took."""
    start = time.monotonic()
    while True:
        if fn():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.005)


# A fake Redis for what a real one will not do, in modes:
#   python3 -c FAKE_REDIS flood PORT   a server that answers the daemon's
#       HELLO, CLUSTER NODES (no cluster), CLIENT TRACKING and PING, and
#       once tracking is on sends invalidations under user: without end;
#   python3 -c FAKE_REDIS cluster P1 P2   two cluster nodes: the first
#       CLUSTER NODES answer names P1 and 255 other (unreachable) masters -
#       a big cluster, or many over time - every later one P1 and P2.
FAKE_REDIS = r"""
import socket, sys, threading
mode, ports = sys.argv[1], [int(a) for a in sys.argv[2:]]
def push(i):
    keys = [b"user:flood%d" % (i * 100 + j) for j in range(100)]
    return (b">2\r\n$10\r\ninvalidate\r\n*%d\r\n" % len(keys)
            + b"".join(b"$%d\r\n%s\r\n" % (len(k), k) for k in keys))
CHUNK = b"".join(push(i) for i in range(200))
asked = []
def cluster_nodes():
    masters = [("127.0.0.1", p) for p in ports]
    if not asked:
        masters = masters[:1] + [("127.0.0.2", 30000 + i)
                                 for i in range(255)]
    asked.append(1)
    text = "".join("%040x %s:%d@%d master - 0 0 1 connected%s\n" % (
        i + 1, ip, port, port + 10000, " 0-16383" if i == 0 else "")
        for i, (ip, port) in enumerate(masters)).encode()
    return b"$%d\r\n%s\r\n" % (len(text), text)
def commands(f):
    while True:
        line = f.readline()
        if not line:
            return
        args = []
        for _ in range(int(line[1:])):
            n = int(f.readline()[1:])
            args.append(f.read(n + 2)[:n].upper())
        yield args
def serve(c):
    lock = threading.Lock()
    def send(b):
        with lock:
            c.sendall(b)
    def flood():
        try:
            while True:
                send(CHUNK)
        except OSError:
            pass
    try:
        for a in commands(c.makefile("rb")):
            if a[0] == b"HELLO":
                send(b"%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n")
            elif a[0] == b"CLUSTER" and mode == "cluster":
                send(cluster_nodes())
            elif a[0] == b"CLUSTER":
                send(b"-ERR This instance has cluster support disabled\r\n")
            elif a[0] == b"CLIENT":
                send(b"+OK\r\n")
                if mode == "flood":
                    threading.Thread(target=flood, daemon=True).start()
            else:
                send(b"+PONG\r\n")
    except OSError:
        pass
def listen(port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(8)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
for port in ports[1:]:
    threading.Thread(target=listen, args=(port,), daemon=True).start()
listen(ports[0])
"""


def fake_redis(case, *args):
    """Starts FAKE_REDIS with args (stopped at case's cleanup)."""
    fake = subprocess.Popen([sys.executable, "-c", FAKE_REDIS]
                            + [str(a) for a in args])
    case.addCleanup(fake.wait)
    case.addCleanup(fake.kill)
    return fake


class RedisProc:
    """A redis-server on a Unix socket (port None) or a loopback port,
    in its own folder, with no persistence."""

    def __init__(self, folder, port=None, extra=()):
        self.dir = folder
        os.makedirs(folder, exist_ok=True)
        self.port = port
        self.sock = None if port else os.path.join(folder, "redis.sock")
        self.extra = list(extra)
        self.proc = None

    def addr(self):
        return self.sock or f"127.0.0.1:{self.port}"

    def start(self):
        args = [REDIS_SERVER, "--dir", self.dir, "--save", "",
                "--appendonly", "no", "--bind", "127.0.0.1",
                "--port", str(self.port or 0)]
        if self.sock:
            args += ["--unixsocket", self.sock]
        with open(os.path.join(self.dir, "log"), "a") as log:
            self.proc = subprocess.Popen(args + self.extra, stdout=log,
                                         stderr=subprocess.STDOUT)
        wait_for("redis-server answers", self.answers)
        return self

    def answers(self):
        if self.proc.poll() is not None:
            raise AssertionError("redis-server exited: " + open(
                os.path.join(self.dir, "log")).read()[-2000:])
        c = self.client(socket_timeout=1)
        try:
            return c.ping()
        except redis.exceptions.AuthenticationError:
            return True
        except redis.exceptions.ResponseError as e:
            return "NOAUTH" in str(e)
        except (redis.exceptions.ConnectionError, OSError):
            return False
        finally:
            c.close()

    def client(self, **kw):
        if self.sock:
            return redis.Redis(unix_socket_path=self.sock, **kw)
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(p.HANG_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def nearcache(d):
    c = p.Client(d.sock)
    try:
        return c.nearcache()
    finally:
        c.close()


def store(d, keys, value=b"cached"):
    c = p.Client(d.sock)
    try:
        for k in keys:
            c.set(k, value)
    finally:
        c.close()


def present(d, keys):
    """The keys of `keys` that d's region holds."""
    c = p.Client(d.sock)
    try:
        return [k for k in keys if c.get_or_none(k) is not None]
    finally:
        c.close()


def memory_count(pid, needle):
    """How many times needle is in the writable memory of process pid;
    None when that memory is too large to read (a sanitizer's reserved
    address space)."""
    regions = []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split()
            if "w" in fields[1]:
                regions.append([int(x, 16) for x in fields[0].split("-")])
    if sum(end - start for start, end in regions) > (4 << 30):
        return None
    count = 0
    with open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for start, end in regions:
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except (OSError, ValueError):
                continue
            count += data.count(needle)
    return count


class Lease:
    """A fill through a lease (lease_client), as an application reading
    through to Redis: the lease is taken at the miss, here; fill() stores
    the value and says "filled", or "stale" when the lease was voided."""

    def __init__(self, d, key, value="from-redis"):
        self.p = subprocess.Popen([LEASE, d.sock, key, value],
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        first = self.p.stdout.readline().strip()
        if first != "leased":
            self.p.kill()
            self.p.wait()
            raise AssertionError(f"lease_client on {key}: {first!r}")

    def fill(self):
        out, _ = self.p.communicate("go\n", timeout=p.HANG_S)
        assert self.p.returncode == 0, out
        return out.strip()


def lease_fill(d, key):
    return Lease(d, key).fill()


class NearCacheCase(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="nc-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def redis(self, name="redis", port=None, extra=()):
        r = RedisProc(os.path.join(self.dir, name), port, extra).start()
        self.addCleanup(r.stop)
        return r

    def daemon(self, addrs, prefixes=PREFIXES, extra=(), env=None,
               wait_up=True):
        args = []
        for a in addrs if isinstance(addrs, (list, tuple)) else [addrs]:
            args += ["--redis", a]
        for pre in prefixes:
            args += ["--redis-prefix", pre]
        d = p.DaemonProc(DAEMON, extra=args + list(extra))
        d.start(env=env)
        self.addCleanup(d.unlink)
        self.addCleanup(d.stop)
        if wait_up:
            self.wait_state(d, "up")
        return d

    def wait_state(self, d, state, **more):
        def ok():
            s = nearcache(d)
            return s["state"] == state and all(
                s[k] == v for k, v in more.items())
        try:
            wait_for(f"state {state} {more}", ok)
        except AssertionError:
            raise AssertionError(f"{nearcache(d)}\n{d.logtext()[-3000:]}")

    def hold_a_segment_lock(self, d):
        """A client of d stopped (SHMC_FAULT) holding a segment lock."""
        proc = subprocess.Popen([CRASH, d.sock, "churn", "held:", "1", "100"],
                                env=dict(os.environ, SHMC_FAULT="locked"),
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        self.addCleanup(proc.stderr.close)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        line = proc.stderr.readline()
        self.assertIn(b"shmc-fault: locked", line)

    def store_one(self, d, keys):
        """Stores the first of keys that d can store (one under a held
        segment lock cannot be); returns it."""
        for k in keys:
            try:
                store(d, [k])
                return k
            except p.ProtoError:
                continue
        raise AssertionError(f"none of {keys} could be stored")

    def wait_gone(self, daemons, keys, what):
        """Waits until no daemon holds any of keys; returns the time."""
        return wait_for(what, lambda: not any(present(d, keys)
                                              for d in daemons))


class Standalone(NearCacheCase):
    def test_nearcache_writes_in_redis_drop_both_hosts_copies(self):
        r = self.redis()
        a, b = self.daemon(r.addr()), self.daemon(r.addr())
        rc = r.client()
        keys = [f"user:{i}" for i in range(200)] + ["sess:x"]
        outside = [f"other:{i}" for i in range(20)] + ["use", "user", "sess"]
        for d in (a, b):
            store(d, keys + outside)
        self.assertEqual(present(a, keys), keys)
        start = time.monotonic()
        pipe = rc.pipeline(transaction=False)
        for k in keys:
            pipe.set(k, b"new")
        pipe.execute()
        self.wait_gone((a, b), keys, "SET invalidates both regions")
        print(f"SET of {len(keys)} keys: gone from both regions after "
              f"{(time.monotonic() - start) * 1000:.1f} ms")

        # DEL
        for d in (a, b):
            store(d, keys[:50])
        rc.delete(*keys[:50])
        self.wait_gone((a, b), keys[:50], "DEL invalidates")

        # expiry inside Redis
        rc.set("user:exp", b"v", px=300)
        wait_for("the SET's own invalidation",
                 lambda: nearcache(a)["keys"] > len(keys) + 50)
        time.sleep(0.05)
        for d in (a, b):
            store(d, ["user:exp"])
        self.wait_gone((a, b), ["user:exp"], "expiry invalidates")

        # FLUSHALL: a null invalidation flushes every tracked prefix
        flushes = nearcache(a)["flushes"]
        for d in (a, b):
            store(d, keys)
        rc.flushall()
        self.wait_gone((a, b), keys, "FLUSHALL drops the prefixes")
        self.assertGreater(nearcache(a)["flushes"], flushes)

        # Nothing outside the prefixes was touched by any of it.
        for d in (a, b):
            self.assertEqual(present(d, outside), outside)
        s = nearcache(a)
        self.assertGreaterEqual(s["messages"], 3)
        self.assertGreaterEqual(s["keys"], len(keys) + 50)
        self.assertEqual((s["masters"], s["reconnects"]), (1, 0))

    def test_nearcache_fill_after_an_invalidation_is_refused(self):
        r = self.redis()
        d = self.daemon(r.addr())
        rc = r.client()
        # The application missed and read Redis; before it stores what it
        # read, another host writes the key: the fill must not happen.
        lease = Lease(d, "user:race")
        keys = nearcache(d)["keys"]
        rc.set("user:race", b"newer")
        wait_for("the invalidation", lambda: nearcache(d)["keys"] > keys)
        self.assertEqual(lease.fill(), "stale")
        self.assertEqual(present(d, ["user:race"]), [])
        # Without a write in between, the fill is cached.
        self.assertEqual(lease_fill(d, "user:race"), "filled")
        self.assertEqual(present(d, ["user:race"]), ["user:race"])

    def test_nearcache_one_message_for_50000_keys(self):
        r = self.redis()
        d = self.daemon(r.addr())
        sample = [f"user:{i:06d}" for i in range(0, 50000, 997)]
        store(d, sample + ["other:1"])
        keys = nearcache(d)["keys"]
        # One MSET: one invalidation message of about 1 MB, read in
        # many pieces.
        r.client().mset({f"user:{i:06d}": b"v" for i in range(50000)})
        wait_for("50000 keys invalidated",
                 lambda: nearcache(d)["keys"] >= keys + 50000)
        self.assertEqual(present(d, sample), [])
        self.assertEqual(present(d, ["other:1"]), ["other:1"])
        self.assertEqual(nearcache(d)["reconnects"], 0)
        store(d, ["user:after"])
        r.client().set("user:after", b"v")
        self.wait_gone((d,), ["user:after"], "the next message")

    def test_nearcache_keys_outside_the_prefixes_are_never_touched(self):
        r = self.redis()
        d = self.daemon(r.addr(), prefixes=("user:",))
        rc = r.client()
        outside = ["sess:1", "other", "use", "USER:1", "xuser:1"]
        store(d, outside + ["user:1"])
        for k in outside:
            rc.set(k, b"new")
            rc.delete(k)
        rc.set("user:1", b"new")
        self.wait_gone((d,), ["user:1"], "the tracked key")
        self.assertEqual(present(d, outside), outside)
        self.assertEqual(nearcache(d)["keys"], 1)

    def test_nearcache_client_kill_drops_prefixes_then_resumes(self):
        r = self.redis()
        d = self.daemon(r.addr())
        rc = r.client()
        keys = [f"user:{i}" for i in range(50)]
        store(d, keys + ["other:1"])
        lease = Lease(d, "user:during")
        tracking = [c for c in rc.client_list()
                    if c["name"] == "shmcached-track"]
        self.assertEqual(len(tracking), 1, rc.client_list())
        rc.client_kill_filter(_id=tracking[0]["id"])
        self.wait_gone((d,), keys, "the prefixes dropped after CLIENT KILL")
        self.assertEqual(lease.fill(), "stale")  # taken before: void
        self.assertEqual(present(d, ["other:1"]), ["other:1"])
        wait_for("the reconnect counted",
                 lambda: nearcache(d)["reconnects"] >= 1)
        self.assertIn("closed", nearcache(d)["last_error"])
        self.wait_state(d, "up", masters=1)
        # Coherence resumed.
        store(d, ["user:new"])
        rc.set("user:new", b"v")
        self.wait_gone((d,), ["user:new"], "invalidation after reconnect")
        self.assertIn("lost", d.logtext())

    def test_nearcache_redis_restart_drops_prefixes_then_resumes(self):
        port = free_port()
        r = self.redis(port=port)
        d = self.daemon(r.addr())
        keys = [f"sess:{i}" for i in range(20)]
        store(d, keys + ["other:1"])
        r.stop()
        self.wait_gone((d,), keys, "the prefixes dropped with Redis gone")
        self.wait_state(d, "down")
        self.assertEqual(lease_fill(d, "sess:down"), "stale")  # blocked
        s = nearcache(d)
        self.assertNotEqual(s["last_error"], "")
        self.assertGreater(s["last_error_at"], 0)
        self.assertEqual(s["masters"], 0)
        # cachectl shows it too.
        out = subprocess.run([CACHECTL, "--socket", d.sock, "stats",
                              "--json"], capture_output=True,
                             timeout=p.HANG_S)
        self.assertEqual(out.returncode, 0, out.stderr)
        js = json.loads(out.stdout)["redis"]
        self.assertEqual(js["state"], "down")
        # The prefixes it keeps coherent, as given (--redis-prefix), in
        # the request's reply and in both of cachectl's forms.
        self.assertEqual(js["prefixes"], list(PREFIXES))
        self.assertEqual(s["prefixes"], [x.encode() for x in PREFIXES])
        out = subprocess.run([CACHECTL, "--socket", d.sock, "stats"],
                             capture_output=True, text=True,
                             timeout=p.HANG_S)
        rows = {line.split()[0]: line.split()[1:]
                for line in out.stdout.splitlines()}
        self.assertEqual(rows["redis_state"][0], "down")
        self.assertEqual(rows["redis_prefixes"][0], str(len(PREFIXES)))
        self.assertEqual(rows["redis_prefixes"][-len(PREFIXES):],
                         [f"'{x}'" for x in PREFIXES])
        self.assertEqual(rows["redis_masters"][0], "0")
        self.assertIn(s["last_error"].split()[0], " ".join(
            rows["redis_error"]))
        r.start()
        self.wait_state(d, "up")
        self.assertEqual(lease_fill(d, "sess:down"), "filled")
        store(d, ["sess:new"])
        r.client().set("sess:new", b"v")
        self.wait_gone((d,), ["sess:new"], "invalidation after restart")
        self.assertEqual(present(d, ["other:1"]), ["other:1"])


    def test_nearcache_silent_redis_is_noticed_by_its_ping(self):
        r = self.redis()
        d = self.daemon(r.addr())
        store(d, ["user:1", "other:1"])
        # A peer that holds the connection open but answers nothing (a
        # partition, a hung host): only the PING deadline tells.
        r.proc.send_signal(signal.SIGSTOP)
        self.addCleanup(r.proc.send_signal, signal.SIGCONT)
        self.wait_gone((d,), ["user:1"], "the prefixes dropped")
        self.assertIn("no reply", nearcache(d)["last_error"])
        self.assertEqual(lease_fill(d, "user:2"), "stale")
        r.proc.send_signal(signal.SIGCONT)
        self.wait_state(d, "up")
        self.assertEqual(present(d, ["other:1"]), ["other:1"])

    def test_nearcache_load_drops_what_the_snapshot_holds_under_prefixes(
            self):
        r = self.redis()
        d = self.daemon(r.addr())
        store(d, ["user:1", "other:1"])
        snap = os.path.join(self.dir, "snap")
        ctl = [CACHECTL, "--socket", d.sock]
        for args in (["save", snap], ["flush"], ["load", snap]):
            out = subprocess.run(ctl + args, capture_output=True,
                                 timeout=p.HANG_S)
            self.assertEqual(out.returncode, 0, (args, out.stderr))
        # user:1 may have been written in Redis since the save.
        self.assertEqual(present(d, ["user:1", "other:1"]), ["other:1"])

    def test_nearcache_restart_without_redis_lets_fills_in_again(self):
        r = self.redis()
        d = self.daemon(r.addr())
        self.assertEqual(lease_fill(d, "user:1"), "filled")
        self.assertEqual(d.stop(), 0)  # leaves its prefixes blocked
        # The same region, its daemon now without --redis: nothing else
        # would ever unblock them.
        again = p.DaemonProc(DAEMON, name=d.name, workdir=d.dir).start()
        self.addCleanup(again.stop)
        self.assertEqual(present(again, ["user:1"]), [])  # flushed at stop
        self.assertEqual(lease_fill(again, "user:2"), "filled")
        self.assertEqual(nearcache(again)["state"], "off")
        # It keeps no prefix coherent now, and says so.
        self.assertEqual(nearcache(again)["prefixes"], [])

    def test_nearcache_spent_namespace_flushes_clear_the_cache_instead(self):
        r = self.redis()
        d = self.daemon(r.addr())
        # The region as it is after 2^32 - 1 namespace flushes, its clock
        # at the top (region_hdr.ns_clock, layout.h line 2): no namespace
        # flush is possible any more.
        with open("/dev/shm" + d.name, "r+b") as f:
            f.seek(NS_CLOCK_OFFSET)
            f.write(struct.pack("<I", 0xFFFFFFFF))
        store(d, ["user:1", "other:1"])
        r.client().flushall()
        # The tracked key must not outlive Redis' flush: the daemon
        # clears the whole cache instead, untracked keys with it.
        self.wait_gone((d,), ["user:1", "other:1"], "the cache cleared")
        self.assertIn("clearing the whole cache instead", d.logtext())
        # Keys are still deleted one by one as Redis writes them.
        store(d, ["user:2"])
        r.client().set("user:2", b"v")
        self.wait_gone((d,), ["user:2"], "an invalidation after the clear")

    def test_nearcache_flooding_master_does_not_starve_the_others(self):
        # One master sends invalidations without end, and deletes are slow
        # (a client stopped holding a segment lock): the other master's
        # invalidations, its loss and a SIGTERM are still seen.
        if os.environ.get("SHMC_TEST_FAULT_INJECTION") == "false":
            self.skipTest("needs -Dfault_injection=true (SHMC_FAULT)")
        port = free_port()
        fake_redis(self, "flood", port)
        r = self.redis()
        d = self.daemon([f"127.0.0.1:{port}", r.addr()])
        wait_for("the flood reaches the daemon",
                 lambda: nearcache(d)["keys"] > 20000)
        self.hold_a_segment_lock(d)
        wait_for("a delete that found the lock held",
                 lambda: nearcache(d)["lock_flushes"] > 0)
        key = self.store_one(d, [f"sess:{i}" for i in range(64)])
        r.client().set(key, b"new")
        self.wait_gone((d,), [key], "the other master's invalidation")
        r.stop()
        self.wait_state(d, "down")
        d.proc.send_signal(signal.SIGTERM)
        try:
            d.proc.wait(p.HANG_S)
        except subprocess.TimeoutExpired:
            d.proc.kill()
            raise AssertionError("SIGTERM did not stop the daemon")
    def test_nearcache_ns_del_of_a_tracked_prefix_is_refused(self):
        r = self.redis()
        d = self.daemon(r.addr())
        out = subprocess.run([CACHECTL, "--socket", d.sock, "ns", "del",
                              "user:"], capture_output=True, text=True,
                             timeout=p.HANG_S)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("tracked by --redis-prefix: the near cache keeps it",
                      out.stderr)
        # An untracked namespace is deleted as before.
        ctl = [CACHECTL, "--socket", d.sock, "ns"]
        for sub in ("add", "del"):
            out = subprocess.run(ctl + [sub, "other:"], capture_output=True,
                                 text=True, timeout=p.HANG_S)
            self.assertEqual(out.returncode, 0, out.stderr)
        # The prefix is still followed: FLUSHALL drops it, an outage
        # blocks its fills.
        store(d, ["user:1"])
        r.client().flushall()
        self.wait_gone((d,), ["user:1"], "the keys dropped by FLUSHALL")
        r.stop()
        self.wait_state(d, "down")
        self.assertEqual(lease_fill(d, "user:2"), "stale")


class Config(NearCacheCase):
    def run_daemon(self, *args):
        return subprocess.run([DAEMON, "--foreground", "--socket",
                               os.path.join(self.dir, "s.sock"),
                               "--name", f"/nc-cfg-{os.getpid()}"]
                              + list(args), capture_output=True, text=True,
                              timeout=p.HANG_S)

    def test_nearcache_bad_options_exit_2_with_a_reason(self):
        for args, words in (
                (["--redis", "/tmp/r.sock"], "--redis-prefix"),
                (["--redis-prefix", "user:"], "without --redis"),
                (["--redis", "/tmp/r.sock", "--redis-prefix", "u" * 53],
                 "1 to 52 bytes"),
                (["--redis", "no such:6379", "--redis-prefix", "u:"],
                 "invalid address"),
                (["--redis", "127.0.0.1:0", "--redis-prefix", "u:"],
                 "invalid port"),
                (["--redis", "/tmp/r.sock", "--redis-prefix", "u:",
                  "--redis-password-file", "/nonexistent/pw"],
                 "/nonexistent/pw")):
            r = self.run_daemon(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, args)
            self.assertIn(words, r.stderr, args)
        r = self.run_daemon("--help")
        self.assertIn("--redis-password-file", r.stdout)
        self.assertNotIn("--redis-password=", r.stdout)

    def test_nearcache_unreachable_redis_at_start_then_connects(self):
        port = free_port()
        d = self.daemon(f"127.0.0.1:{port}", wait_up=False)
        self.wait_state(d, "down")
        self.assertIn("connect", nearcache(d)["last_error"])
        store(d, ["other:1"])  # it serves meanwhile
        self.assertEqual(present(d, ["other:1"]), ["other:1"])
        # But it caches nothing under its prefixes: a copy made now could
        # miss its invalidation.
        with self.assertRaises(p.ProtoError) as cm:
            store(d, ["user:1"])
        self.assertEqual(cm.exception.err, errno.ESTALE)
        self.assertEqual(present(d, ["user:1"]), [])
        r = self.redis(port=port)
        self.wait_state(d, "up")
        store(d, ["user:2"])
        r.client().set("user:2", b"v")
        self.wait_gone((d,), ["user:2"], "invalidation")

    def test_nearcache_memcached_writes_under_blocked_prefixes_not_stored(
            self):
        port = free_port()
        mc = os.path.join(self.dir, "mc.sock")
        d = self.daemon(f"127.0.0.1:{port}", wait_up=False,
                        extra=["--memcached", mc])
        self.wait_state(d, "down")

        def conn():
            s = socket.socket(socket.AF_UNIX)
            self.addCleanup(s.close)
            s.settimeout(p.HANG_S)
            s.connect(mc)
            return s

        def ask(req, lines=1, s=None):
            s = s or conn()
            s.sendall(req)
            got = b""
            while got.count(b"\r\n") < lines:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            return got

        # A client of the memcached protocol is told "not stored", in
        # each protocol's words, for every write under a tracked prefix
        # while Redis' tracking is down; other keys are stored.
        self.assertEqual(ask(b"set user:1 0 0 1\r\nv\r\n"),
                         b"NOT_STORED\r\n")
        self.assertEqual(ask(b"add user:1 0 0 1\r\nv\r\n"),
                         b"NOT_STORED\r\n")
        self.assertEqual(ask(b"incr user:2 1\r\n"), b"NOT_FOUND\r\n")
        self.assertEqual(ask(b"ms user:3 1\r\nv\r\n"), b"NS\r\n")
        self.assertEqual(ask(b"ma user:4 N0 J5\r\n"), b"NS\r\n")
        # The writes that need the key find it missing, as memcached
        # would say it.
        self.assertEqual(ask(b"cas user:1 0 0 1 5\r\nv\r\n"),
                         b"NOT_FOUND\r\n")
        self.assertEqual(ask(b"replace user:1 0 0 1\r\nv\r\n"),
                         b"NOT_STORED\r\n")
        self.assertEqual(ask(b"md user:1 x\r\n"), b"NF\r\n")
        # A meta win (N) whose store is refused ends there: the next
        # reader wins in turn instead of waiting out the win's time (Z).
        a, b = conn(), conn()
        self.assertEqual(ask(b"mg user:5 N30 v\r\n", 2, a),
                         b"VA 0 W\r\n\r\n")
        self.assertIn(b" Z", ask(b"mg user:5 N30 v\r\n", 2, b))
        self.assertEqual(ask(b"ms user:5 1\r\nv\r\n", 1, a), b"NS\r\n")
        self.assertEqual(ask(b"mg user:5 N30 v\r\n", 2, b),
                         b"VA 0 W\r\n\r\n")
        self.assertEqual(ask(b"set other:1 0 0 1\r\nv\r\n"),
                         b"STORED\r\n")
        self.assertEqual(present(d, ["user:1", "user:3", "user:4",
                                     "other:1"]), ["other:1"])
        self.redis(port=port)
        self.wait_state(d, "up")
        self.assertEqual(ask(b"set user:1 0 0 1\r\nv\r\n"),
                         b"STORED\r\n")
        self.assertEqual(present(d, ["user:1"]), ["user:1"])

    def test_nearcache_redis_given_by_host_name(self):
        # A name (localhost is one) is looked up on a thread of its own at
        # each connect; the tracking then works as with an address.
        port = free_port()
        r = self.redis(port=port)
        d = self.daemon(f"localhost:{port}")
        store(d, ["user:1"])
        r.client().set("user:1", b"v")
        self.wait_gone((d,), ["user:1"], "invalidation via a host name")
        # A name that does not resolve keeps the tracking down, says so,
        # and the prefixes stay blocked; the daemon serves the rest.
        bad = self.daemon("no-such-host.invalid:6379", wait_up=False)
        self.wait_state(bad, "down")
        wait_for("the resolver's error", lambda: "cannot resolve "
                 "no-such-host.invalid" in nearcache(bad)["last_error"])
        self.assertEqual(lease_fill(bad, "user:2"), "stale")
        store(bad, ["other:1"])
        self.assertEqual(present(bad, ["other:1"]), ["other:1"])

    def test_nearcache_password_file_and_acl_user(self):
        r = self.redis(extra=["--requirepass", "s3cret",
                              "--user", "tracker", "on", ">tpw", "~*",
                              "&*", "+@all"])
        pw = os.path.join(self.dir, "pw")
        with open(pw, "w") as f:
            f.write("s3cret\n")
        os.chmod(pw, 0o600)
        d = self.daemon(r.addr(), extra=["--redis-password-file", pw])
        store(d, ["user:1"])
        r.client(password="s3cret").set("user:1", b"v")
        self.wait_gone((d,), ["user:1"], "invalidation with a password")
        env = dict(os.environ, SHMCACHED_REDIS_PASSWORD="tpw")
        u = self.daemon(r.addr(), extra=["--redis-user", "tracker"],
                        env=env)
        self.assertEqual(nearcache(u)["masters"], 1)
        with open(pw, "w") as f:
            f.write("wrong\n")
        bad = self.daemon(r.addr(), extra=["--redis-password-file", pw],
                          wait_up=False)
        self.wait_state(bad, "down")
        err = nearcache(bad)["last_error"]
        self.assertIn("HELLO", err)
        self.assertIn("WRONGPASS", err)
        # Its prefixes stay blocked: nothing is filled under them.
        self.assertEqual(lease_fill(bad, "user:2"), "stale")
        self.assertEqual(lease_fill(bad, "other:2"), "filled")
        self.assertEqual(lease_fill(d, "user:2"), "filled")

    def test_nearcache_password_is_not_left_in_sent_buffers(self):
        # The daemon keeps the password once (to reconnect); the copy in
        # the HELLO it sent is zeroed.  Long, so that the commands sent
        # after it would not overwrite it all.
        secret = "pw-" + os.urandom(150).hex()
        r = self.redis(extra=["--requirepass", secret])
        pw = os.path.join(self.dir, "pw")
        with open(pw, "w") as f:
            f.write(secret + "\n")
        os.chmod(pw, 0o600)
        d = self.daemon(r.addr(), extra=["--redis-password-file", pw])
        tail = secret[-64:].encode()
        if memory_count(d.proc.pid, tail) is None:
            self.skipTest("the daemon's memory is too large to read "
                          "(a sanitizer build)")
        self.assertEqual(memory_count(d.proc.pid, tail), 1)
        # And after a reconnection.
        rc = r.client(password=secret)
        for c in rc.client_list():
            if c["name"] == "shmcached-track":
                rc.client_kill_filter(_id=c["id"])
        wait_for("the reconnect", lambda: nearcache(d)["reconnects"] >= 1)
        self.wait_state(d, "up")
        self.assertEqual(memory_count(d.proc.pid, tail), 1)


class Cluster(NearCacheCase):
    def node(self, port, timeout_ms=3000):
        return self.redis(f"node{port}", port,
                          extra=["--cluster-enabled", "yes",
                                 "--cluster-config-file", "nodes.conf",
                                 "--cluster-node-timeout", str(timeout_ms)])

    def ports(self, n):
        ports = []
        while len(ports) < n:
            port = free_port(cluster=True)
            taken = set(ports) | {p + 10000 for p in ports}
            if port not in taken and port + 10000 not in taken:
                ports.append(port)
        return ports

    def cli(self, *args):
        r = subprocess.run([REDIS_CLI] + list(args), capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout

    def wait_cluster_ok(self, nodes):
        wait_for("cluster_state:ok", lambda: all(
            n.client().cluster("info")["cluster_state"] == "ok"
            for n in nodes))

    def test_nearcache_cluster_seed_by_name_and_a_node_without_its_ip(self):
        # A one-node cluster that never met another node does not know
        # its own address: CLUSTER NODES says ":PORT".  Reached through a
        # seed given by name, the node is the address the name gave.
        port, = self.ports(1)
        n = self.node(port)
        n.client().execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        self.wait_cluster_ok([n])
        nodes = n.client().execute_command("CLUSTER", "NODES")
        nodes = nodes.decode() if isinstance(nodes, bytes) else nodes
        self.assertIn(f" :{port}@", " " + nodes)
        # LOCALHOST: a name every resolver knows (names match without
        # case), which, unlike "localhost", is no address to the daemon
        # anywhere but through its lookup.
        d = self.daemon(f"LOCALHOST:{port}")
        self.assertEqual(nearcache(d)["masters"], 1)
        store(d, ["user:1"])
        n.client().set("user:1", b"v")
        self.wait_gone((d,), ["user:1"], "invalidation from the node")

    def create(self, ports, timeout_ms=3000):
        """A cluster of masters on ports, no replicas; its nodes."""
        nodes = [self.node(port, timeout_ms) for port in ports]
        self.cli("--cluster", "create",
                 *[f"127.0.0.1:{port}" for port in ports],
                 "--cluster-replicas", "0", "--cluster-yes")
        self.wait_cluster_ok(nodes)
        return nodes

    def add_master(self, nodes, port):
        """A master without slots on port, joined to nodes' cluster."""
        new = self.node(port)
        self.cli("--cluster", "add-node", f"127.0.0.1:{port}",
                 f"127.0.0.1:{nodes[0].port}")
        wait_for("the new node known", lambda: all(
            len(n.client().cluster("nodes")) == len(nodes) + 1
            for n in nodes))
        self.wait_cluster_ok(nodes + [new])
        return new

    def test_nearcache_cluster_tracks_every_master_and_a_moved_slot(self):
        ports = self.ports(4)
        nodes = self.create(ports[:3])
        # One seed is enough; one that is down does not hold it up.
        d = self.daemon([f"127.0.0.1:{free_port()}",
                         f"127.0.0.1:{ports[1]}"])
        self.wait_state(d, "up", masters=3)
        rc = redis.cluster.RedisCluster(host="127.0.0.1", port=ports[0])
        keys = [f"user:{i}" for i in range(60)]
        owners = {rc.get_node_from_key(k).port for k in keys}
        self.assertEqual(owners, set(ports[:3]))  # every master has some
        store(d, keys + ["other:1"])
        for k in keys:
            rc.set(k, b"new")
        self.wait_gone((d,), keys, "writes on every master invalidate")

        # A fourth master takes slot 0: the daemon must follow.
        new = self.add_master(nodes, ports[3])
        src = nodes[0].client().cluster("myid")
        dst = new.client().cluster("myid")
        self.cli("--cluster", "reshard", f"127.0.0.1:{ports[0]}",
                 "--cluster-from", src, "--cluster-to", dst,
                 "--cluster-slots", "1", "--cluster-yes")
        self.wait_state(d, "up", masters=4)
        key = next(f"user:{{{i}}}" for i in range(100000)
                   if redis.crc.key_slot(f"user:{{{i}}}".encode()) == 0)
        rc = redis.cluster.RedisCluster(host="127.0.0.1", port=ports[0])
        self.assertEqual(rc.get_node_from_key(key).port, ports[3])
        store(d, [key])
        rc.set(key, b"on the new master")
        self.wait_gone((d,), [key], "a write on the new master invalidates")
        self.assertEqual(present(d, ["other:1"]), ["other:1"])
        self.assertIn("127.0.0.1:%d is a master" % ports[3], d.logtext())

    def test_nearcache_cluster_master_without_slots_is_tracked(self):
        ports = self.ports(4)
        nodes = self.create(ports[:3])
        d = self.daemon([f"127.0.0.1:{ports[0]}"])
        self.wait_state(d, "up", masters=3)
        # An empty master joins: tracked before it owns any slot.
        new = self.add_master(nodes, ports[3])
        self.wait_state(d, "up", masters=4, masters_known=4)
        # Slot 0 migrates to it; a write reaches it through ASK while
        # the source still owns the slot.
        key = next(f"user:{{{i}}}" for i in range(100000)
                   if redis.crc.key_slot(f"user:{{{i}}}".encode()) == 0)
        src, dst = nodes[0].client(), new.client()
        src.set(key, b"v1")
        sid, did = src.cluster("myid"), dst.cluster("myid")
        dst.execute_command("CLUSTER", "SETSLOT", 0, "IMPORTING", sid)
        src.execute_command("CLUSTER", "SETSLOT", 0, "MIGRATING", did)
        src.execute_command("MIGRATE", "127.0.0.1", ports[3], key, 0, 5000)
        store(d, [key])
        pipe = dst.pipeline(transaction=False)
        pipe.execute_command("ASKING")
        pipe.execute_command("SET", key, "v2")
        self.assertEqual(pipe.execute(), [True, True])
        self.wait_gone((d,), [key], "a write through ASK on the new master")

    def test_nearcache_cluster_nodes_gone_from_the_topology_are_forgotten(
            self):
        # A first topology of 256 masters fills the node table; the next
        # one names a master not seen yet, which needs a place in it.
        p1, p2 = free_port(), free_port()
        fake_redis(self, "cluster", p1, p2)
        d = self.daemon([f"127.0.0.1:{p1}"], wait_up=False)
        self.wait_state(d, "up", masters=2, masters_known=2)
        self.assertNotIn("cannot track master", d.logtext())

    def test_nearcache_cluster_failover_is_followed(self):
        ports = self.ports(4)
        nodes = self.create(ports[:3], 1000)
        replica = self.node(ports[3], 1000)
        self.cli("--cluster", "add-node", f"127.0.0.1:{ports[3]}",
                 f"127.0.0.1:{ports[1]}", "--cluster-slave",
                 "--cluster-master-id", nodes[0].client().cluster("myid"))
        wait_for("the replica in sync", lambda: replica.client().info(
            "replication").get("master_link_status") == "up")
        d = self.daemon(f"127.0.0.1:{ports[1]}")
        self.wait_state(d, "up", masters=3)
        rc = redis.cluster.RedisCluster(host="127.0.0.1", port=ports[1])
        key = next(f"user:{i}" for i in range(100000)
                   if rc.get_node_from_key(f"user:{i}").port == ports[0])
        rc.close()
        store(d, [key, "other:1"])

        # The master of the key dies; its replica takes over.
        nodes[0].stop()
        self.wait_gone((d,), [key], "the prefixes dropped")
        self.assertEqual(lease_fill(d, "user:x"), "stale")
        wait_for("the failover", lambda: replica.client().info(
            "replication")["role"] == "master", timeout=30)
        self.wait_state(d, "up", masters=3)
        self.assertIn(f"127.0.0.1:{ports[3]} is a master", d.logtext())
        store(d, [key])
        rc = redis.cluster.RedisCluster(host="127.0.0.1", port=ports[1])
        rc.set(key, b"on the promoted replica")
        self.wait_gone((d,), [key], "a write on the new master invalidates")
        self.assertEqual(present(d, ["other:1"]), ["other:1"])


def main():
    global DAEMON, CACHECTL, LEASE, CRASH
    DAEMON, CACHECTL, LEASE, CRASH = p.binaries(4, __doc__)
    if not REDIS_SERVER or not REDIS_CLI or redis is None:
        print("redis-server, redis-cli or python3-redis missing: skipped")
        return 77
    return p.run_tests(sys.argv[5:], "shmc-nc-")


if __name__ == "__main__":
    sys.exit(main())
