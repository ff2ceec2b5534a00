"""A socket client's meta-protocol lease and a mapped client's get_or_load
are one and the same claim: whichever asks first loads, the other neither
loads nor is served anything but the loader's value.

The mapped client is this module (libshmc's shmc_get_or_load); the socket
client speaks memcached's meta protocol to the daemon's --memcached socket.
"""
import os
import shutil
import socket
import tempfile
import threading
import time

from conftest import own_daemon

import shmc

HANG_S = 30.0


class Meta:
    """A raw meta-protocol connection."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(HANG_S)
        self.s.connect(path)
        self.buf = b""

    def close(self):
        self.s.close()

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            assert chunk, "the daemon closed the connection"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def block(self, n):
        while len(self.buf) < n + 2:
            chunk = self.s.recv(65536)
            assert chunk, "the daemon closed the connection"
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def call(self, req):
        """Sends one request line (and block); returns (line words,
        value or None)."""
        self.s.sendall(req)
        words = self.line().split()
        value = self.block(int(words[1])) if words[0] == b"VA" else None
        return words, value


def with_daemon(test):
    """Runs test(control socket, memcached socket) on a daemon of its
    own that serves both."""
    def run():
        tmp = tempfile.mkdtemp(prefix="shmc-lease-")
        path = os.path.join(tmp, "mc.sock")
        try:
            with own_daemon(["--memcached", path]) as d:
                test(d.sock, path)
        finally:
            shutil.rmtree(tmp, True)
    run.__name__ = test.__name__
    return run


@with_daemon
def test_socket_win_makes_mapped_get_or_load_wait(sock, path):
    m = Meta(path)
    words, value = m.call(b"mg page N30 v c\r\n")
    assert words[0] == b"VA" and b"W" in words, words
    assert value == b""
    cas = next(w[1:] for w in words if w.startswith(b"c"))

    loaded = []
    got = []
    client = shmc.Client(sock)

    def mapped():
        got.append(client.get_or_load(
            "page", lambda: loaded.append(1) or b"from the mapped client",
            ttl=60))

    t = threading.Thread(target=mapped)
    t.start()
    # The mapped client waits for the socket client's load: it is still
    # waiting after the socket client has been asked again (Z: someone
    # else has the win) ...
    words, _ = m.call(b"mg page N30 v\r\n")
    assert b"Z" in words and b"W" not in words, words
    # (Time for the thread to reach its get_or_load: were the win not
    # the engine's claim, its loader would run now.  A slow machine only
    # makes the check weaker, never wrong.)
    time.sleep(0.2)
    assert t.is_alive() and not loaded
    # ... and is served the socket client's value once it is stored.
    words, _ = m.call(b"ms page 15 T60 C" + cas + b"\r\nfrom the socket\r\n")
    assert words[0] == b"HD", words
    t.join(HANG_S)
    assert not t.is_alive()
    assert got == [b"from the socket"]
    assert loaded == []
    client.close()
    m.close()


@with_daemon
def test_mapped_load_makes_socket_lose(sock, path):
    client = shmc.Client(sock)
    in_loader = threading.Event()
    finish = threading.Event()

    def loader():
        in_loader.set()
        assert finish.wait(HANG_S)
        return b"from the mapped client"

    got = []
    t = threading.Thread(
        target=lambda: got.append(client.get_or_load("row", loader, ttl=60)))
    t.start()
    assert in_loader.wait(HANG_S)
    m = Meta(path)
    # The key is being loaded by the mapped client: no win for the socket.
    for _ in range(3):
        words, value = m.call(b"mg row N30 v\r\n")
        assert b"Z" in words and b"W" not in words, words
    finish.set()
    t.join(HANG_S)
    assert got == [b"from the mapped client"]
    words, value = m.call(b"mg row v\r\n")
    assert words[0] == b"VA" and value == b"from the mapped client"
    client.close()
    m.close()


@with_daemon
def test_closed_socket_winner_frees_the_load(sock, path):
    # A socket client that won and went away does not leave the mapped
    # clients waiting for a value that never comes: its lease ends with its
    # connection, and the mapped client loads.
    m = Meta(path)
    words, _ = m.call(b"mg gone N30 v\r\n")
    assert b"W" in words, words
    client = shmc.Client(sock)
    got = []
    t = threading.Thread(target=lambda: got.append(
        client.get_or_load("gone", lambda: b"loaded after all", ttl=60)))
    t.start()
    m.close()
    t.join(HANG_S)
    assert not t.is_alive()
    assert got == [b"loaded after all"]
    client.close()
