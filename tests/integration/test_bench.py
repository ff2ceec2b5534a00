#!/usr/bin/env python3
"""Integration tests of shmc-bench (tools/bench): short runs against the
real daemon, read back through --json.  The figures themselves are not
judged (a benchmark never fails CI on a slow machine); what is checked is
what a user of the bench relies on: every requested backend gets a row,
the rows are consistent, a peer that is not installed is skipped and not
failed, a backend that cannot run is failed, and the bench leaves no
server, region or temporary folder behind, even when interrupted.

    test_bench.py DAEMON_BINARY BENCH_BINARY

Exits 77 when the host cannot run it.
"""
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shmcproto as p  # noqa: E402

DAEMON = None
BENCH = None
SHORT = ["--keys", "1000", "--ops", "3000", "--warmup", "0"]


# Pids of the benches run: their regions are named /dev/shm/shmc-bench-PID-N
# (other benches on the host are none of the tests' business).
BENCH_PIDS = []


def bench(args, env=None, timeout=120, preexec_fn=None):
    """Runs the bench; returns (exit code, the parsed JSON with --json or
    else the text printed, stderr)."""
    with subprocess.Popen([BENCH] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env,
                          preexec_fn=preexec_fn) as proc:
        BENCH_PIDS.append(proc.pid)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    out = stdout.decode(errors="replace")
    if "--json" in args:
        out = json.loads(stdout) if stdout else None
    return proc.returncode, out, stderr.decode(errors="replace")


def regions_of_benches():
    return {f for pid in BENCH_PIDS
            for f in glob.glob(f"/dev/shm/shmc-bench-{pid}-*")}


def rows(out):
    return {(r["backend"], r["procs"]): r for r in out["results"]}


class BenchTest(unittest.TestCase):
    def setUp(self):
        # The bench's temporary folders go here: each test checks that
        # none is left.
        self.tmp = tempfile.mkdtemp(prefix="bench-tmp-")
        self.env = dict(os.environ, TMPDIR=self.tmp, SHMC_DAEMON=DAEMON)
        BENCH_PIDS.clear()

    def tearDown(self):
        left = os.listdir(self.tmp)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(left, [], "temporary folders left behind")
        self.assertEqual(regions_of_benches(), set(), "regions left behind")

    def assert_speed_row(self, r):
        self.assertEqual(r["status"], "ok", r)
        self.assertGreater(r["ops_per_s"], 0)
        self.assertGreater(r["run_ops_per_s"], 0)
        self.assertGreater(r["ns_per_op"], 0)
        self.assertGreater(r["ops"], 0)
        self.assertGreater(r["samples"], 0)
        self.assertLessEqual(r["p50_ns"], r["p99_ns"])
        self.assertLessEqual(r["p99_ns"], r["p999_ns"])
        self.assertLessEqual(r["p999_ns"], r["max_ns"])
        self.assertEqual(r["errors"], 0, r.get("first_error"))


class AgainstRunningDaemon(BenchTest):
    """--socket: the daemon is the test's (shmcproto.DaemonProc)."""

    def setUp(self):
        super().setUp()
        self.d = p.DaemonProc(DAEMON).start()

    def tearDown(self):
        self.d.stop()
        self.d.unlink()
        super().tearDown()

    def test_bench_json_has_shmc_and_inproc_rows(self):
        rc, out, err = bench(["--json", "--socket", self.d.sock,
                              "--backends", "shmc,inproc",
                              "--mix", "get=80,set=15,del=5"] + SHORT,
                             env=self.env)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out["mode"], "speed")
        self.assertEqual(out["workload"]["keys"], 1000)
        got = rows(out)
        self.assertEqual(set(got), {("shmc", 1), ("inproc", 1)})
        for r in got.values():
            self.assert_speed_row(r)
            # 3000 ops of one thread, every op counted once.
            self.assertEqual(r["ops"], 3000)
            self.assertEqual(set(r["latency"]), {"get", "set", "del"})
            self.assertTrue(0 < r["hit_ratio"] <= 1)
        self.assertEqual(got[("shmc", 1)]["vs_shmc"], 1)
        self.assertEqual(got[("inproc", 1)]["vs_inproc"], 1)
        # The daemon saw the bench's keys.
        c = p.Client(self.d.sock)
        try:
            self.assertGreater(c.stats()["sets"], 0)
        finally:
            c.close()

    def test_bench_missing_peer_is_skipped_not_failed(self):
        # No memcached or redis-server on this PATH.
        empty = os.path.join(self.tmp, "empty-path")
        os.mkdir(empty)
        env = dict(self.env, PATH=empty)
        try:
            rc, out, err = bench(["--json", "--socket", self.d.sock,
                                  "--backends", "shmc,inproc,memcached,redis"]
                                 + SHORT, env=env)
        finally:
            os.rmdir(empty)
        self.assertEqual(rc, 0, err)
        got = rows(out)
        for name in ("memcached", "redis"):
            r = got[(name, 1)]
            self.assertEqual(r["status"], "skipped", r)
            self.assertTrue(r["reason"], r)
        self.assert_speed_row(got[("shmc", 1)])
        self.assert_speed_row(got[("inproc", 1)])

    def test_bench_table_names_every_backend(self):
        empty = os.path.join(self.tmp, "empty-path")
        os.mkdir(empty)
        try:
            r = subprocess.run(
                [BENCH, "--socket", self.d.sock,
                 "--backends", "shmc,inproc,memcached"] + SHORT,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=dict(self.env, PATH=empty), timeout=120)
        finally:
            os.rmdir(empty)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.decode().splitlines()
        self.assertTrue(any(ln.startswith("shmc ") for ln in lines))
        self.assertTrue(any(ln.startswith("inproc ") for ln in lines))
        self.assertTrue(any(ln.startswith("memcached ") and "skipped" in ln
                            for ln in lines), lines)


class OwnDaemon(BenchTest):
    """Without --socket the bench starts and stops its own shmcached."""

    def test_bench_starts_its_own_daemon_and_cleans_up(self):
        rc, out, err = bench(["--json", "--daemon", DAEMON,
                              "--backends", "shmc", "--procs", "1,2",
                              "--cache", "8M"] + SHORT, env=self.env)
        self.assertEqual(rc, 0, err)
        got = rows(out)
        self.assertEqual(set(got), {("shmc", 1), ("shmc", 2)})
        for r in got.values():
            self.assert_speed_row(r)
            self.assertEqual(r["ops"], 3000 * r["procs"])
            self.assertGreater(r["scale"], 0)
        self.assertIn("segments", got[("shmc", 1)]["version"])
        # tearDown: no folder or region left.

    def test_bench_names_the_build_it_measured(self):
        # The build folder's own options (meson introspection) say what
        # the bench must report: figures of a debug or sanitizer build
        # must not pass for the release build's.
        top = os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(BENCH))))
        info = os.path.join(top, "meson-info", "intro-buildoptions.json")
        if not os.path.exists(info):
            self.skipTest("the bench is not in a meson build folder")
        with open(info) as f:
            opts = {o["name"]: o["value"] for o in json.load(f)}
        btype = opts["buildtype"]
        ndebug = opts["b_ndebug"] == "true" or (
            opts["b_ndebug"] == "if-release" and btype == "release")
        sanitize = opts["b_sanitize"]
        for mode in (["--backends", "inproc"],
                     ["--hit-ratio", "--backends", "lru"],
                     ["--memory", "--cache", "4M", "--backends", "lru"]):
            rc, out, err = bench(["--json"] + mode + SHORT, env=self.env)
            self.assertEqual(rc, 0, err)
            self.assertEqual(out["build"], btype)
            self.assertEqual(out["asserts"], not ndebug)
            self.assertEqual(out["sanitize"], sanitize)
            rc, head, err = bench(mode + SHORT, env=self.env)
            self.assertEqual(rc, 0, err)
            line = "  build: %s, asserts %s" % (
                btype, "off" if ndebug else "on")
            self.assertIn(line, head)
            self.assertEqual("not the release build" in head,
                             btype != "release" or not ndebug
                             or sanitize != "none", head)

    def test_bench_measures_line_transfer_for_several_workers(self):
        # Two worker processes: the cost of a shared line is measured
        # and printed with the figures it explains.
        rc, out, err = bench(["--json", "--backends", "inproc",
                              "--procs", "1,2"] + SHORT, env=self.env)
        self.assertEqual(rc, 0, err)
        ns = out["machine"]["line_transfer_ns"]
        if len(os.sched_getaffinity(0)) >= 2:
            self.assertIsInstance(ns, int)
            # A line moves between CPUs in well under a millisecond on an
            # idle machine; on a busy one the figure includes the waits for
            # a CPU, so only its plausibility is checked here.
            self.assertTrue(0 < ns < 1000000000, ns)
        else:
            self.assertIsNone(ns)
        rc, head, err = bench(["--backends", "inproc", "--threads", "2"]
                              + SHORT, env=self.env)
        self.assertEqual(rc, 0, err)
        self.assertEqual("ping-pong" in head,
                         len(os.sched_getaffinity(0)) >= 2, head)
        # One worker shares nothing: nothing is measured.
        rc, out, err = bench(["--json", "--backends", "inproc"] + SHORT,
                             env=self.env)
        self.assertEqual(rc, 0, err)
        self.assertIsNone(out["machine"]["line_transfer_ns"])

    def test_bench_on_one_cpu_says_nothing_of_line_transfer(self):
        # Allowed one CPU, two workers run but there is no second CPU to
        # measure against: null, and the run is not failed.
        cpu = min(os.sched_getaffinity(0))
        rc, out, err = bench(
            ["--json", "--backends", "inproc", "--procs", "2"] + SHORT,
            env=self.env, preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
        self.assertEqual(rc, 0, err)
        self.assertIsNone(out["machine"]["line_transfer_ns"])
        self.assertEqual(rows(out)[("inproc", 2)]["status"], "ok")

    def test_bench_daemon_that_cannot_start_is_failed(self):
        rc, out, err = bench(["--json", "--daemon", "/nonexistent/shmcached",
                              "--backends", "shmc,inproc"] + SHORT,
                             env=self.env)
        self.assertEqual(rc, 1, err)
        got = rows(out)
        self.assertEqual(got[("shmc", 1)]["status"], "failed")
        self.assertIn("/nonexistent/shmcached", got[("shmc", 1)]["reason"])
        self.assert_speed_row(got[("inproc", 1)])

    def test_bench_hit_ratio_mode(self):
        rc, out, err = bench(["--json", "--hit-ratio", "--keys", "20000",
                              "--backends", "shmc,lru,inproc"],
                             env=self.env)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out["mode"], "hit-ratio")
        got = rows(out)
        for name in ("shmc", "lru"):
            r = got[(name, 1)]
            self.assertEqual(r["status"], "ok", r)
            self.assertTrue(0 < r["hit_ratio"] < 1, r)
            self.assertGreater(r["items"], 0)
            # Cache-aside: every measured get either hit or missed.
            self.assertEqual(r["hits"] + r["misses"],
                             out["workload"]["ops"] -
                             out["workload"]["warmup_ops"])
        self.assertEqual(got[("lru", 1)]["vs_lru_points"], 0)
        # inproc has no memory limit: no hit ratio to speak of.
        self.assertEqual(got[("inproc", 1)]["status"], "skipped")

    def test_bench_memory_mode(self):
        rc, out, err = bench(["--json", "--memory", "--cache", "4M",
                              "--backends", "shmc,lru"], env=self.env)
        self.assertEqual(rc, 0, err)
        w = out["workload"]
        item = w["key_size"] + w["value_max"]
        got = rows(out)
        for name in ("shmc", "lru"):
            r = got[(name, 1)]
            self.assertEqual(r["status"], "ok", r)
            # More was set than fits, something was kept, and what was
            # kept fits in the memory given.
            self.assertGreater(r["items"], 0)
            self.assertLess(r["items"], w["keys"])
            self.assertLessEqual(r["items"] * item, w["cache_bytes"])
            self.assertAlmostEqual(
                r["overhead_per_item"],
                (w["cache_bytes"] - r["items"] * item) / r["items"],
                delta=0.01)
        self.assertEqual(got[("lru", 1)]["items"],
                         w["cache_bytes"] // item)

    def test_bench_interrupted_stops_its_servers(self):
        proc = subprocess.Popen([BENCH, "--daemon", DAEMON, "--backends",
                                 "shmc", "--duration", "60", "--keys",
                                 "1000", "--warmup", "0"],
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.env)
        BENCH_PIDS.append(proc.pid)
        try:
            end = time.monotonic() + 20
            while time.monotonic() < end and not glob.glob(
                    os.path.join(self.tmp, "shmc-bench-shmc-*",
                                 "shmcached.sock")):
                time.sleep(0.05)
            self.assertTrue(glob.glob(os.path.join(
                self.tmp, "shmc-bench-shmc-*", "shmcached.sock")))
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            proc.wait(p.HANG_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        self.assertEqual(proc.returncode, 130)
        # tearDown: the daemon removed its region, the folder is gone.

    def test_bench_bad_usage(self):
        for args in (["--nope"], ["--mix", "get=0"], ["--keys", "0"],
                     ["--backends", "nosuch"], ["--dist", "zipf:-1"],
                     ["--keys", "100000", "--key-size", "4"]):
            rc, _, err = bench(args, env=self.env)
            self.assertEqual(rc, 2, args)
            self.assertIn("shmc-bench", err)


class Peers(BenchTest):
    """The real peers, when they are installed and built in."""

    def test_bench_peers_when_installed(self):
        rc, out, err = bench(["--json", "--daemon", DAEMON, "--backends",
                              "memcached,redis,lmdb", "--keys", "1000",
                              "--ops", "500", "--warmup", "0"],
                             env=self.env)
        self.assertIn(rc, (0, 1), err)
        got = rows(out)
        ran = [r for r in got.values() if r["status"] == "ok"]
        for r in got.values():
            self.assertNotEqual(r["status"], "failed", r)
        if not ran:
            self.skipTest("no peer installed or built in")
        for r in ran:
            self.assert_speed_row(r)
            self.assertEqual(r["hit_ratio"] > 0.5, True, r)


def daemon_speaks_memcached():
    """True when this build's shmcached has --memcached (issue 16)."""
    r = subprocess.run([DAEMON, "--help"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    return b"--memcached" in r.stdout


class MemcachedProtocol(BenchTest):
    """shmc-mc: shmcached's memcached socket, driven by the memcached
    backend's client code, beside memcached when it is installed."""

    def test_bench_shmc_mc_runs_gets_sets_and_mgets(self):
        if not daemon_speaks_memcached():
            self.skipTest("shmcached built without --memcached")
        for kind in ([], ["--tcp"]):
            rc, out, err = bench(
                ["--json", "--daemon", DAEMON, "--backends",
                 "shmc-mc,memcached", "--mix", "get=50,set=40,mget=10",
                 "--mget-batch", "10", "--server-threads", "2"] + kind
                + SHORT, env=self.env)
            got = rows(out)
            mc = got[("shmc-mc", 1)]
            if mc["status"] == "skipped":
                self.skipTest(mc["reason"])  # built without libmemcached
            self.assertEqual(rc, 0, err)
            self.assertEqual(out["workload"]["server_threads"], 2)
            self.assert_speed_row(mc)
            self.assertEqual(mc["ops"], 3000)
            self.assertEqual(set(mc["latency"]), {"get", "set", "mget"})
            # Prefilled: the gets and the mgets' keys are found.
            self.assertGreater(mc["hit_ratio"], 0.5, mc)
            self.assertIn("shmcached", mc["version"])
            # The daemon the bench started: its CPU time was read.
            self.assertGreaterEqual(mc["server_cpu_ns_per_op"], 0)
            # memcached is skipped when not installed, never failed.
            self.assertNotEqual(got[("memcached", 1)]["status"], "failed")

    def test_bench_side_by_side_line_names_both_servers(self):
        if not daemon_speaks_memcached():
            self.skipTest("shmcached built without --memcached")
        rc, out, err = bench(["--daemon", DAEMON, "--backends",
                              "memcached,shmc-mc", "--mix", "get=100"]
                             + SHORT, env=self.env)
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        ran = [n for n in ("memcached", "shmc-mc")
               if any(ln.startswith(n + " ") and "skipped" not in ln
                      for ln in lines)]
        if ran != ["memcached", "shmc-mc"]:
            self.skipTest("memcached or libmemcached not installed")
        self.assertTrue(any(ln.startswith("shmc-mc (shmcached) against "
                                          "memcached") for ln in lines),
                        out)

    def test_bench_mget_skips_backends_without_multi_get(self):
        rc, out, err = bench(["--json", "--daemon", DAEMON, "--backends",
                              "shmc,inproc", "--mix", "get=1,mget=1"]
                             + SHORT, env=self.env)
        self.assertEqual(rc, 0, err)
        for r in rows(out).values():
            self.assertEqual(r["status"], "skipped", r)
            self.assertIn("multi-get", r["reason"])

    def test_bench_memcached_options_bad_usage(self):
        for args in (["--server-threads", "0"], ["--server-threads", "x"],
                     ["--mget-batch", "0"], ["--mget-batch", "100000"],
                     ["--hit-ratio", "--mix", "mget=1"]):
            rc, _, err = bench(args, env=self.env)
            self.assertEqual(rc, 2, args)
            self.assertIn("shmc-bench", err)


def bench_near_cache():
    """True when this bench has --near-cache (built with hiredis)."""
    rc, _, err = bench(["--near-cache", "--duration", "x"])
    return "without hiredis" not in err


class NearCache(BenchTest):
    """--near-cache: Redis alone against shmcached in front of it, on a
    redis-server the bench starts on loopback TCP."""

    SHORT_NEAR = ["--keys", "1000", "--duration", "0.3", "--warmup", "0.2",
                  "--procs", "2", "--inval-writes", "20"]

    def setUp(self):
        super().setUp()
        if not bench_near_cache():
            self.skipTest("shmc-bench built without hiredis")
        if not shutil.which("redis-server"):
            self.skipTest("redis-server not installed")

    def test_bench_near_cache_prints_every_figure(self):
        rc, out, err = bench(["--near-cache", "--daemon", DAEMON]
                             + self.SHORT_NEAR, env=self.env)
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()

        def line(prefix):
            found = [ln for ln in lines if ln.startswith(prefix)]
            self.assertTrue(found, f"no line starting {prefix!r}:\n{out}")
            return found

        self.assertRegex(line("shmc-bench near cache: Redis ")[0],
                         r" at 127\.0\.0\.1:\d+ \(TCP\)")
        line("  build: ")
        # Throughput rows, then the Redis load rows: "without" and "with"
        # twice each, with figures, not a failure.
        for label in ("without ", "with "):
            rows_ = line(label)
            self.assertEqual(len(rows_), 2, out)
            for r in rows_:
                self.assertNotIn("failed", r)
                self.assertNotIn("not read", r)
        self.assertRegex(line("region hit vs Redis GET: p50 ")[0],
                         r"= \d+x faster \(target >= 50x: (met|NOT met)\)")
        # The machine's floor beside the verdict: a cold line's cost,
        # and what a hit would have to cost for 50x this round's GET.
        self.assertRegex(line("  the floor here: a read of one random "
                              "line of 256 MiB")[0],
                         r"p50 \d+ ns with 4 KiB pages.*; 50x this GET "
                         r"needs hits of [\d.]+ [nu]s or less")
        self.assertRegex(line("  in the same run: a miss ")[0],
                         r"(= \d+x a hit|no miss and hit sampled)$")
        self.assertRegex(line("hit ratio: ")[0],
                         r"^hit ratio: \d+\.\d\d % of the reads")
        self.assertIn("the hit ratio predicts",
                      line("reduction per op: GETs per read ")[0])
        if daemon_follows_redis():
            line("invalidation (20 writes")
            line("  write sent -> gone: p50 ")
            line("  stale reads after the write was acknowledged: ")
        else:
            self.assertIn("cannot follow Redis",
                          line("invalidation: not measured: ")[0])
        # tearDown: no folder (redis's, the daemon's) and no region left.

    def test_bench_near_cache_uses_a_given_redis_and_leaves_it_running(self):
        rdir = tempfile.mkdtemp(prefix="redis-")
        sock = os.path.join(rdir, "redis.sock")
        redis = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", sock, "--save",
             "", "--appendonly", "no", "--dir", rdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            end = time.monotonic() + p.HANG_S
            while not os.path.exists(sock):
                self.assertLess(time.monotonic(), end, "redis-server")
                time.sleep(0.02)
            rc, out, err = bench(["--near-cache", "--daemon", DAEMON,
                                  "--redis", sock] + self.SHORT_NEAR,
                                 env=self.env)
            self.assertEqual(rc, 0, err)
            self.assertIn(f" at {sock} (Unix socket)", out.splitlines()[0])
            self.assertIsNone(redis.poll(), "the bench stopped its Redis")
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(sock)
                s.sendall(b"DBSIZE\r\n")
                self.assertEqual(s.recv(64), b":1000\r\n")
        finally:
            redis.terminate()
            redis.wait(p.HANG_S)
            shutil.rmtree(rdir, ignore_errors=True)

    def test_bench_near_cache_bad_usage(self):
        for args in (["--near-cache", "--json"],
                     ["--near-cache", "--mix", "get=90,del=10"],
                     ["--near-cache", "--procs", "1,2"],
                     ["--redis", "127.0.0.1:1"]):
            rc, _, err = bench(args, env=self.env)
            self.assertEqual(rc, 2, args)
            self.assertIn("shmc-bench", err)

    def test_bench_near_cache_redis_unreachable_fails(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        rc, out, err = bench(["--near-cache", "--daemon", DAEMON, "--redis",
                              f"127.0.0.1:{port}"] + self.SHORT_NEAR,
                             env=self.env)
        self.assertEqual(rc, 1)
        self.assertIn(f"redis 127.0.0.1:{port}", err)
        self.assertEqual(out, "")


def daemon_follows_redis():
    """True when this build's shmcached has --redis-prefix (issue 18)."""
    r = subprocess.run([DAEMON, "--help"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    return b"--redis-prefix" in r.stdout


def main():
    global DAEMON, BENCH
    DAEMON, BENCH = p.binaries(2, __doc__)
    return p.run_tests(sys.argv[3:], "shmc-bench-")


if __name__ == "__main__":
    sys.exit(main())
