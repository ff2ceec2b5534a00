"""Real redis-server processes for the shmc.redis tests: one on a Unix
socket in a temporary folder, or a 3-master Redis Cluster on loopback
ports; each started by the test, waited for until it answers, and always
stopped.  Tests that need one skip when redis-server (Debian:
redis-server) or redis-py (python3-redis) is missing."""
import os
import random
import shutil
import socket
import subprocess
import sys
import time

import pytest

from conftest import HERE, die_with_parent

sys.path.insert(0, os.path.join(HERE, "..", "bench"))
from bench_get import Server  # noqa: E402

HANG_S = 60.0  # only a hang reaches it


def redis_py():
    return pytest.importorskip(
        "redis", reason="no redis-py for this interpreter (apt-get install "
        "python3-redis)")


def server_binary():
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (apt-get install "
                    "redis-server)")
    return exe


def free_ports(n):
    """n distinct loopback TCP ports free now (a server started soon gets
    them), each with port + 10000 free too (a cluster node's bus), all
    below the kernel's ephemeral range (32768 and up by default): a port
    from that range, free when picked, can be taken as the local port of
    any connection made before the server binds it."""
    ports = []
    while len(ports) < n:
        port = random.randint(10000, 22767)
        taken = set(ports) | {p + 10000 for p in ports}
        if port in taken or port + 10000 in taken:
            continue
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        ports.append(port)
    return ports


class RedisServer(Server):
    """One redis-server (bench_get.py's Server); sock is its Unix socket,
    port its TCP port (0: none).  No persistence; its log is in its
    folder."""

    def __init__(self, port=0, cluster_port=0):
        exe = server_binary()
        self.port = port

        def argv(d, sock):
            a = [exe, "--unixsocket", sock, "--unixsocketperm", "700",
                 "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", d, "--logfile",
                 os.path.join(d, "redis.log")]
            if cluster_port:
                a += ["--cluster-enabled", "yes", "--cluster-port",
                      str(cluster_port), "--cluster-config-file",
                      os.path.join(d, "nodes.conf")]
            return a

        super().__init__("redis", argv, "redis.sock",
                         preexec_fn=die_with_parent)
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def client(self, **kw):
        """A new redis.Redis on the Unix socket."""
        return redis_py().Redis(unix_socket_path=self.sock, **kw)

    def wait_ready(self):
        """Waits until it answers PING (the socket exists already)."""
        errors = redis_py().exceptions
        end = time.monotonic() + HANG_S
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited (log in %s)"
                                   % self.dir)
            r = self.client(socket_timeout=5)
            try:
                if r.ping():
                    return
            except (errors.ConnectionError, errors.BusyLoadingError):
                time.sleep(0.02)
            finally:
                r.close()
        raise TimeoutError("redis-server not ready (log in %s)" % self.dir)


class RedisCluster:
    """Three masters on loopback ports, no replicas, made a cluster by
    redis-cli --cluster create, and waited for until every slot is
    served."""

    def __init__(self):
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.skip("redis-cli is not installed (apt-get install "
                        "redis-tools)")
        ports = free_ports(6)
        self.servers = []
        try:
            for i in range(3):
                self.servers.append(RedisServer(ports[i], ports[i + 3]))
            self.ports = ports[:3]
            subprocess.run(
                [cli, "--cluster", "create"]
                + ["127.0.0.1:%d" % p for p in self.ports]
                + ["--cluster-replicas", "0", "--cluster-yes"],
                check=True, timeout=HANG_S, stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT)
            self.wait_ok()
        except BaseException:
            self.stop()
            raise

    def wait_ok(self):
        end = time.monotonic() + HANG_S
        while time.monotonic() < end:
            states = []
            for s in self.servers:
                r = s.client(socket_timeout=5)
                try:
                    info = r.execute_command("CLUSTER", "INFO")
                finally:
                    r.close()
                if isinstance(info, bytes):
                    info = info.decode()
                states.append("cluster_state:ok" in info)
            if all(states):
                return
            time.sleep(0.05)
        raise TimeoutError("the Redis cluster did not come up")

    def client(self):
        """A new redis.cluster.RedisCluster on the first master."""
        redis_py()
        from redis.cluster import RedisCluster
        return RedisCluster(host="127.0.0.1", port=self.ports[0])

    def stop(self):
        for s in self.servers:
            s.stop()
