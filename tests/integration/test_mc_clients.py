#!/usr/bin/python3
"""memcached clients that nobody here wrote, against the real daemon's
--memcached sockets: Debian's python3-pymemcache (over the Unix socket and
over TCP), libmemcached's command-line tools, PHP's php-memcached, and
nutcracker (twemproxy) spreading keys over two daemons.  Cross-path: what
a socket client stores, a mapped client (cachectl) reads with its flags,
and the reverse; a mapped client's write changes the version a socket
client's gets saw.

    test_mc_clients.py DAEMON_BINARY CACHECTL_BINARY [unittest args]

Run by Debian's /usr/bin/python3, the interpreter its python3-pymemcache
belongs to.  A client that is not installed skips its tests (tools/test
installs them all).  Prints "N passed, N failed, N skipped" last; exits 0
if all passed, 1 if not, 77 when the host cannot run it.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shmcproto as p  # noqa: E402

try:
    from pymemcache.client.base import Client as PyMemcache
    from pymemcache.client.hash import HashClient
except ImportError:  # the tests that need it skip
    PyMemcache = HashClient = None

DAEMON = CACHECTL = None


free_port = p.free_port


def wait_port(port, proc, timeout=p.HANG_S):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


class McDaemon(p.DaemonProc):
    """shmcached with a memcached Unix socket and a loopback TCP port."""

    def __init__(self, extra=()):
        # 64 MiB: items up to about 2 MiB (the engine's limit is half a
        # segment's ring)
        super().__init__(DAEMON, geometry=("--memory", "64M"))
        self.mc_sock = os.path.join(self.dir, "mc.sock")
        self.port = free_port()
        self.extra = ["--memcached", self.mc_sock,
                      "--memcached", f"127.0.0.1:{self.port}"] + list(extra)

    def start(self, **kw):
        super().start(**kw)
        wait_port(self.port, self.proc)
        return self


def ctl(d, *args, stdin=None):
    env = dict(os.environ)
    env.pop("SHMC_SOCKET", None)
    return subprocess.run([CACHECTL, "--socket", d.sock] + list(args),
                          input=stdin, capture_output=True, env=env,
                          timeout=p.HANG_S)


CLIENT_TOOLS = ("memccp", "memccat", "memcrm", "memcstat", "memcflush",
                "memcexist", "memccapable", "php", "nutcracker")


def missing_clients():
    """The clients this test needs that the host lacks (tools/setup
    installs them all): the whole test is then skipped, not counted as
    passed."""
    missing = [t for t in CLIENT_TOOLS if not shutil.which(t)]
    if PyMemcache is None:
        missing.append("python3-pymemcache")
    if "php" not in missing:
        r = subprocess.run(["php", "-m"], capture_output=True, text=True,
                           timeout=p.HANG_S)
        if "memcached" not in r.stdout.split():
            missing.append("php-memcached")
    return missing


class McCase(unittest.TestCase):
    def setUp(self):
        self.d = McDaemon().start()

    def tearDown(self):
        self.d.stop()
        self.d.unlink()

    def pymc(self, where="tcp", **kw):
        server = (("127.0.0.1", self.d.port) if where == "tcp"
                  else self.d.mc_sock)
        c = PyMemcache(server, connect_timeout=p.HANG_S, timeout=p.HANG_S,
                       **kw)
        self.addCleanup(c.close)
        return c


class PyMemcacheText(McCase):
    """pymemcache's whole text-protocol API, over both sockets."""

    def check_commands(self, c):
        self.assertTrue(c.set("k", b"v1", noreply=False))
        self.assertEqual(c.get("k"), b"v1")
        self.assertFalse(c.add("k", b"x", noreply=False))
        self.assertTrue(c.add("new", b"n", noreply=False))
        self.assertTrue(c.replace("k", b"v2", noreply=False))
        self.assertFalse(c.replace("absent", b"x", noreply=False))
        self.assertTrue(c.append("k", b"-a", noreply=False))
        self.assertTrue(c.prepend("k", b"p-", noreply=False))
        self.assertEqual(c.get("k"), b"p-v2-a")
        value, cas = c.gets("k")
        self.assertEqual(value, b"p-v2-a")
        self.assertTrue(c.cas("k", b"v3", cas, noreply=False))
        self.assertFalse(c.cas("k", b"v4", cas, noreply=False))
        self.assertIsNone(c.cas("absent", b"v", cas, noreply=False))
        self.assertEqual(c.get("k"), b"v3")
        self.assertTrue(c.set("n", b"10", noreply=False))
        self.assertEqual(c.incr("n", 5, noreply=False), 15)
        self.assertEqual(c.decr("n", 20, noreply=False), 0)
        self.assertIsNone(c.incr("absent", 1, noreply=False))
        self.assertTrue(c.touch("k", 100, noreply=False))
        self.assertFalse(c.touch("absent", 100, noreply=False))
        self.assertTrue(c.delete("k", noreply=False))
        self.assertFalse(c.delete("k", noreply=False))
        self.assertIsNone(c.get("k"))
        many = {f"m{i}": f"value{i}".encode() for i in range(300)}
        self.assertEqual(c.set_many(many, noreply=False), [])
        got = c.get_many(list(many) + ["absent"])
        self.assertEqual(got, many)
        # noreply writes, then a read behind them on the same connection
        c.set("quiet", b"q", noreply=True)
        self.assertEqual(c.get("quiet"), b"q")
        self.assertTrue(c.flush_all(noreply=False))
        self.assertIsNone(c.get("quiet"))
        self.assertEqual(c.get_many(list(many)), {})

    def test_mc_clients_pymemcache_tcp(self):
        self.check_commands(self.pymc("tcp"))

    def test_mc_clients_pymemcache_unix(self):
        self.check_commands(self.pymc("unix"))

    def test_mc_clients_pymemcache_big_value(self):
        c = self.pymc()
        big = os.urandom(512 * 1024)
        self.assertTrue(c.set("big", big, noreply=False))
        self.assertEqual(c.get("big"), big)
        # Over the item limit: refused, and the connection goes on.
        with self.assertRaises(Exception) as cm:
            c.set("huge", b"x" * (4 << 20), noreply=False)
        self.assertIn("too large", str(cm.exception))
        self.assertEqual(c.get("big"), big)

    def test_mc_clients_pymemcache_stats_and_version(self):
        c = self.pymc()
        c.set("a", b"1", noreply=False)
        c.get("a")
        c.get("missing")
        st = c.stats()
        for field in (b"pid", b"uptime", b"time", b"version",
                      b"curr_connections", b"total_connections",
                      b"cmd_get", b"cmd_set", b"get_hits", b"get_misses",
                      b"curr_items", b"limit_maxbytes", b"threads"):
            self.assertIn(field, st)
        self.assertEqual(st[b"pid"], self.d.proc.pid)
        self.assertGreaterEqual(st[b"get_hits"], 1)
        self.assertGreaterEqual(st[b"get_misses"], 1)
        self.assertGreaterEqual(st[b"curr_items"], 1)
        self.assertTrue(c.version())
        settings = c.stats("settings")
        self.assertIn(b"maxconns", settings)

    def test_mc_clients_pymemcache_flags_from_serde(self):
        # pymemcache's default serializer keeps the Python type in the
        # item's flags: an int and a str come back as themselves only if
        # the flags survive the round trip.
        from pymemcache import serde
        c = self.pymc(serde=serde.pickle_serde)
        c.set("int", 42, noreply=False)
        c.set("str", "text", noreply=False)
        c.set("dict", {"a": [1, 2]}, noreply=False)
        self.assertEqual(c.get("int"), 42)
        self.assertEqual(c.get("str"), "text")
        self.assertEqual(c.get("dict"), {"a": [1, 2]})


class CrossPath(McCase):
    """The socket and the mapping see the same items."""

    def test_mc_clients_socket_store_read_by_mapping(self):
        c = self.pymc()
        c.set("xp", b"from-socket", expire=500, noreply=False)
        # flags through the raw protocol: pymemcache picks its own
        s = socket.create_connection(("127.0.0.1", self.d.port), p.HANG_S)
        s.sendall(b"set xf 3735928559 0 4\r\nabcd\r\n")
        self.assertEqual(s.recv(100), b"STORED\r\n")
        s.close()
        r = ctl(self.d, "gets", "xf", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout)
        self.assertEqual(got["flags"], 3735928559)
        r = ctl(self.d, "get", "xp")
        self.assertEqual(r.stdout, b"from-socket")
        # the version the socket client sees is the mapping's
        _, cas = c.gets("xf")
        self.assertEqual(int(got["cas"]), int(cas))

    def test_mc_clients_mapping_store_read_by_socket(self):
        r = ctl(self.d, "set", "ms", "mapped", "--flags", "77")
        self.assertEqual(r.returncode, 0, r.stderr)
        s = socket.create_connection(("127.0.0.1", self.d.port), p.HANG_S)
        s.sendall(b"get ms\r\n")
        want = b"VALUE ms 77 6\r\nmapped\r\nEND\r\n"
        data = b""
        while len(data) < len(want):
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
        s.close()
        self.assertEqual(data, want)

    def test_mc_clients_mapped_write_invalidates_gets(self):
        c = self.pymc()
        c.set("v", b"one", noreply=False)
        _, cas = c.gets("v")
        r = ctl(self.d, "set", "v", "two")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(c.cas("v", b"three", cas, noreply=False))
        self.assertEqual(c.get("v"), b"two")
        # and a mapped cas with the socket's version
        _, cas = c.gets("v")
        r = ctl(self.d, "cas", "v", str(int(cas)), "four")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(c.get("v"), b"four")


class LibmemcachedTools(McCase):
    """memccp, memccat, memcrm, memcstat, memcflush, memcexist, and
    memccapable (its text-protocol conformance cases)."""

    def servers(self, where):
        return (f"--servers=127.0.0.1:{self.d.port}" if where == "tcp"
                else f"--servers={self.d.mc_sock}")

    def tool(self, name, *args):
        return subprocess.run([name] + list(args), capture_output=True,
                              timeout=p.HANG_S)

    def check_tools(self, where):
        srv = self.servers(where)
        tmp = tempfile.mkdtemp(prefix="shmc-memc-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "file.txt")
        body = b"line one\nline two\n" * 100
        with open(path, "wb") as f:
            f.write(body)
        r = self.tool("memccp", srv, "--flag=5", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.tool("memccat", srv, "file.txt")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, body + b"\n")  # memccat ends a value
        # the mapping reads what memccp stored, flags included
        r = ctl(self.d, "gets", "file.txt", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["flags"], 5)
        r = self.tool("memcexist", srv, "file.txt")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.tool("memcrm", srv, "file.txt")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.tool("memccat", srv, "file.txt")
        self.assertNotEqual(r.returncode, 0)
        r = self.tool("memcstat", srv)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"curr_connections", r.stdout)
        self.assertIn(str(self.d.proc.pid).encode(), r.stdout)
        ctl(self.d, "set", "left", "x")
        r = self.tool("memcflush", srv)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(ctl(self.d, "get", "left").returncode, 1)

    def test_mc_clients_memccapable_ascii(self):
        # libmemcached's conformance checker, every text-protocol case.
        r = self.tool("memccapable", "-h", "127.0.0.1", "-p",
                      str(self.d.port), "-a", "-t", "10")
        out = r.stdout.decode(errors="replace")
        self.assertEqual(r.returncode, 0, out + r.stderr.decode())
        self.assertIn("All tests passed", out)
        self.assertNotIn("[fail]", out)

    def test_mc_clients_libmemcached_tools_tcp(self):
        self.check_tools("tcp")

    def test_mc_clients_libmemcached_tools_unix(self):
        self.check_tools("unix")


PHP_SCRIPT = r"""
$m = new Memcached();
$m->setOption(Memcached::OPT_COMPRESSION, false);
$where = $argv[1];
if ($where[0] == '/') $m->addServer($where, 0);
else { list($h, $p) = explode(':', $where); $m->addServer($h, (int)$p); }
function check($cond, $what) {
    global $m;
    if (!$cond) { fwrite(STDERR, "FAIL $what: " . $m->getResultMessage() . "\n"); exit(1); }
}
check($m->set('s', 'string'), 'set string');
check($m->set('i', 12345), 'set int');
check($m->set('a', ['x' => [1, 2]]), 'set array');
check($m->get('s') === 'string', 'get string');
check($m->get('i') === 12345, 'get int (type kept in flags)');
check($m->get('a') === ['x' => [1, 2]], 'get array');
check($m->add('s', 'x') === false, 'add existing');
check($m->getResultCode() == Memcached::RES_NOTSTORED, 'add: NOTSTORED');
check($m->set('n', 5), 'set counter');
check($m->increment('n', 3) === 8, 'increment');
check($m->decrement('n', 10) === 0, 'decrement stops at 0');
$r = $m->get('s', null, Memcached::GET_EXTENDED);
check($r['value'] === 'string', 'get extended');
check($m->cas($r['cas'], 's', 'new'), 'cas');
check($m->cas($r['cas'], 's', 'newer') === false, 'stale cas refused');
check($m->get('s') === 'new', 'cas value');
$keys = [];
for ($i = 0; $i < 200; $i++) $keys["k$i"] = "v$i";
check($m->setMulti($keys), 'setMulti');
check($m->getMulti(array_keys($keys)) == $keys, 'getMulti');
check($m->delete('s'), 'delete');
check($m->get('s') === false && $m->getResultCode() == Memcached::RES_NOTFOUND, 'deleted');
check($m->touch('i', 100), 'touch');
check($m->append('k1', '+') || true, 'append');
echo "ok\n";
"""


class PhpMemcached(McCase):
    """PHP's php-memcached extension (libmemcached underneath)."""

    def php(self, where):
        return subprocess.run(["php", "-r", PHP_SCRIPT, "--", where],
                              capture_output=True, text=True,
                              timeout=p.HANG_S)

    def test_mc_clients_php_memcached_tcp(self):
        r = self.php(f"127.0.0.1:{self.d.port}")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout.strip(), "ok")

    def test_mc_clients_php_memcached_unix(self):
        r = self.php(self.d.mc_sock)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout.strip(), "ok")


class Nutcracker(unittest.TestCase):
    """Two daemons (two regions) behind twemproxy with ketama hashing."""

    def setUp(self):
        self.ds = [McDaemon().start(), McDaemon().start()]
        self.dir = tempfile.mkdtemp(prefix="shmc-twem-")
        self.port = free_port()
        conf = os.path.join(self.dir, "nutcracker.yml")
        with open(conf, "w") as f:
            f.write("pool:\n"
                    f"  listen: 127.0.0.1:{self.port}\n"
                    "  hash: fnv1a_64\n"
                    "  distribution: ketama\n"
                    "  timeout: 5000\n"
                    "  auto_eject_hosts: false\n"
                    "  servers:\n")
            for i, d in enumerate(self.ds):
                f.write(f"   - 127.0.0.1:{d.port}:1 shmc{i}\n")
        self.proxy = subprocess.Popen(
            ["nutcracker", "-c", conf, "-o",
             os.path.join(self.dir, "nutcracker.log"),
             "-s", str(free_port())],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proxy)

    def tearDown(self):
        self.proxy.terminate()
        self.proxy.wait(p.HANG_S)
        for d in self.ds:
            d.stop()
            d.unlink()
        shutil.rmtree(self.dir, True)

    def test_mc_clients_nutcracker_spreads_keys(self):
        c = PyMemcache(("127.0.0.1", self.port), connect_timeout=p.HANG_S,
                       timeout=p.HANG_S)
        self.addCleanup(c.close)
        keys = {f"user:{i}": f"profile {i}".encode() for i in range(200)}
        for k, v in keys.items():
            self.assertTrue(c.set(k, v, noreply=False))
        for k, v in keys.items():
            self.assertEqual(c.get(k), v)
        # each daemon holds a share, and together exactly the keys set
        held = []
        for d in self.ds:
            direct = PyMemcache(("127.0.0.1", d.port),
                                connect_timeout=p.HANG_S, timeout=p.HANG_S)
            self.addCleanup(direct.close)
            held.append(set(direct.get_many(list(keys))))
        # (ketama's share for two servers is uneven for 200 keys)
        self.assertGreater(len(held[0]), 0)
        self.assertGreater(len(held[1]), 0)
        self.assertEqual(held[0] | held[1], set(keys))
        self.assertEqual(held[0] & held[1], set())


if __name__ == "__main__":
    DAEMON, CACHECTL = p.binaries(2, __doc__)
    lacking = missing_clients()
    if lacking:
        print("not installed: " + ", ".join(lacking) +
              " (tools/setup installs them): skipped")
        sys.exit(77)
    sys.exit(p.run_tests(sys.argv[3:], "test_mc_clients"))
