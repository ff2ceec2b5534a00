"""bench_get.py - one Python process doing gets of 100-byte values over
100 000 keys through shmc (the mapped cache), pymemcache to memcached on
a Unix socket, redis-py to redis-server on a Unix socket, and a plain
dict in the process (the floor), in one run; docs/BENCHMARKS.md ("Python")
has the figures.  A program that reports figures, not a test: it exits 0
whatever they are, 1 only when a backend could not run.

    PYTHONPATH=build-release/bindings/python /usr/bin/python3 \\
        bindings/python/bench/bench_get.py \\
        --daemon build-release/daemon/shmcached

It starts every server it measures on a temporary socket (and region) and
stops it at exit; a peer whose server or client library is missing
(tools/peers install; python3-pymemcache, python3-redis) gets a
"skipped" row.  Each backend first stores every key, then is timed over
the same random order of keys (a fixed seed): the socket peers over
--socket-gets gets, the others over --gets, timed as shmc-bench times
(the median of small batches: docs/BENCHMARKS.md, "Method").
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HANG_S = 30


class Server:
    """A server process on a Unix socket in a temporary folder."""

    def __init__(self, name, argv_of, sock_name, preexec_fn=None):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"shmc-pybench-{name}-")
        self.sock = os.path.join(self.dir, sock_name)
        self.proc = subprocess.Popen(argv_of(self.dir, self.sock),
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     preexec_fn=preexec_fn)
        deadline = time.monotonic() + HANG_S
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start (logs in "
                                   f"{self.dir})")
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(HANG_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_shmcached(daemon, memory_mb):
    region = f"/shmc-pybench-{os.getpid()}"

    def argv(d, sock):
        return [daemon, "--foreground", "--socket", sock, "--name", region,
                "--memory", f"{memory_mb}M", "--avg-item", "128",
                "--unlink-on-exit", "--log-file", os.path.join(d, "log")]

    return Server("shmcached", argv, "s.sock")


def start_memcached(memory_mb):
    exe = shutil.which("memcached")
    if exe is None:
        raise LookupError("memcached not installed (tools/peers install)")

    def argv(d, sock):
        user = ["-u", "root"] if os.getuid() == 0 else []
        return [exe, "-s", sock, "-a", "0700", "-m", str(memory_mb), "-t",
                "1"] + user

    return Server("memcached", argv, "memcached.sock")


def start_redis(memory_mb):
    exe = shutil.which("redis-server")
    if exe is None:
        raise LookupError("redis-server not installed (tools/peers install)")

    def argv(d, sock):
        return [exe, "--unixsocket", sock, "--unixsocketperm", "700",
                "--port", "0", "--save", "", "--appendonly", "no",
                "--maxmemory", f"{memory_mb}mb", "--maxmemory-policy",
                "allkeys-lru", "--dir", d, "--logfile",
                os.path.join(d, "redis.log")]

    return Server("redis", argv, "redis.sock")


BATCH = 64


def timed_gets(get, order, expect_len):
    """(median, wall) seconds per get over order, as shmc-bench measures
    (docs/BENCHMARKS.md, "Method"): the median is that of batches of
    BATCH gets, the rate while running, without the time the process
    spent preempted by other load; wall is the whole loop's.  Each value
    is checked once, after."""
    clock = time.perf_counter_ns
    batches = []
    t0 = clock()
    for i in range(0, len(order) - BATCH + 1, BATCH):
        b0 = clock()
        for k in order[i:i + BATCH]:
            get(k)
        batches.append(clock() - b0)
    wall = (clock() - t0) / 1e9 / (len(batches) * BATCH)
    for k in order[:100]:
        v = get(k)
        if v is None or len(v) != expect_len:
            raise RuntimeError(f"bad value for {k!r}: {v!r:.40}")
    batches.sort()
    return batches[len(batches) // 2] / 1e9 / BATCH, wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--gets", type=int, default=2_000_000,
                    help="gets timed for shmc and dict")
    ap.add_argument("--socket-gets", type=int, default=100_000,
                    help="gets timed for memcached and redis")
    ap.add_argument("--memory", type=int, default=64, help="MB each")
    ap.add_argument("--daemon", default=os.environ.get("SHMC_DAEMON"),
                    help="shmcached binary (default $SHMC_DAEMON)")
    args = ap.parse_args()
    if not args.daemon:
        ap.error("give --daemon PATH (or $SHMC_DAEMON)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))

    import shmc

    rnd = random.Random(1)
    keys = [b"k%015d" % i for i in range(args.keys)]
    value = bytes(rnd.randrange(256) for _ in range(args.value_size))
    order = [keys[rnd.randrange(args.keys)] for _ in range(args.gets)]
    sorder = order[:args.socket_gets]
    rows = []
    servers = []
    failed = False

    def run(name, setup, many):
        nonlocal failed
        try:
            get, close = setup()
        except LookupError as e:  # not installed
            rows.append((name, None, f"skipped: {e}"))
            return
        except Exception as e:  # noqa: BLE001 - reported as a row
            rows.append((name, None, f"failed: {e}"))
            failed = True
            return
        try:
            rows.append((name, timed_gets(get, many, args.value_size), ""))
        finally:
            close()

    def shmc_setup():
        srv = start_shmcached(args.daemon, args.memory)
        servers.append(srv)
        c = shmc.Client(srv.sock)
        for k in keys:
            c.set(k, value)
        return c.get, c.close

    def dict_setup():
        d = {k: value for k in keys}
        return d.get, d.clear

    def memcached_setup():
        try:
            from pymemcache.client.base import Client
        except ImportError:
            raise LookupError("no pymemcache (python3-pymemcache)")
        srv = start_memcached(args.memory)
        servers.append(srv)
        c = Client(srv.sock)
        for i in range(0, len(keys), 1000):
            c.set_many({k: value for k in keys[i:i + 1000]})
        return c.get, c.close

    def redis_setup():
        try:
            import redis
        except ImportError:
            raise LookupError("no redis-py (python3-redis)")
        srv = start_redis(args.memory)
        servers.append(srv)
        c = redis.Redis(unix_socket_path=srv.sock)
        for i in range(0, len(keys), 1000):
            c.mset({k: value for k in keys[i:i + 1000]})
        return c.get, c.close

    try:
        run("dict", dict_setup, order)
        run("shmc", shmc_setup, order)
        run("pymemcache -> memcached", memcached_setup, sorder)
        run("redis-py -> redis-server", redis_setup, sorder)
    finally:
        for s in servers:
            s.stop()

    floor = dict((n, t[0]) for n, t, _ in rows if t is not None)
    print(f"get of {args.value_size}-byte values, {args.keys} keys, one "
          f"process, Python {sys.version.split()[0]}, shmc "
          f"{shmc.__version__} from {os.path.dirname(shmc.__file__)}")
    print(f"ns/get: median of {BATCH}-get batches (wall: the whole loop, "
          "preemption included); x: ratios of the medians")
    print(f"{'backend':<26} {'ns/get':>9} {'wall':>9} {'x dict':>8} "
          f"{'x shmc':>8}")
    for name, t, note in rows:
        if t is None:
            print(f"{name:<26} {note}")
            continue
        med, wall = t
        xd = med / floor["dict"] if "dict" in floor else float("nan")
        xs = med / floor["shmc"] if "shmc" in floor else float("nan")
        print(f"{name:<26} {med * 1e9:>9.0f} {wall * 1e9:>9.0f} {xd:>8.1f} "
              f"{xs:>8.1f}")
    if "shmc" in floor and "dict" in floor:
        print(f"target: shmc within 3x of dict: "
              f"{floor['shmc'] / floor['dict']:.2f}x")
    if "shmc" in floor and "pymemcache -> memcached" in floor:
        print(f"target: shmc at least 20x faster than pymemcache: "
              f"{floor['pymemcache -> memcached'] / floor['shmc']:.0f}x")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
