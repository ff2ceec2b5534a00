"""Threads sharing one Client."""
import threading
import time

import shmc

HANG_S = 120


def run_threads(n, target):
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_S)
    assert not any(t.is_alive() for t in threads)


def test_threads_share_a_client(client):
    errors = []

    def work(i):
        try:
            for j in range(500):
                key = "t%d:%d" % (i, j)
                client.set(key, key.encode())
                assert client.get(key) == key.encode()
                client.incr("total", 1, initial=0)
        except Exception as e:  # reported below
            errors.append(e)

    run_threads(8, work)
    assert errors == []
    assert client.get("total") == b"4000"


def test_threads_get_or_load_waits_without_the_gil(client):
    """One loader for 8 threads: the waiters must let the loading thread
    run (a waiter holding the GIL would stall it until the library's
    wait ends, and then load again)."""
    runs = []
    values = []
    start = threading.Barrier(8)

    def loader():
        runs.append(1)
        time.sleep(0.5)
        return b"once"

    def work(i):
        start.wait()
        values.append(client.get_or_load("k", loader))

    run_threads(8, work)
    assert runs == [1]
    assert values == [b"once"] * 8


def test_threads_close_while_another_thread_waits(client, sock):
    """close() while a call runs without the GIL: the call ends normally
    and the Client is closed afterwards."""
    c = shmc.Client(sock)
    loading = threading.Event()
    release = threading.Event()
    out = []

    def loader():
        loading.set()
        release.wait(HANG_S)
        return b"late"

    def waiter(i):
        out.append(c.get_or_load("slow", loader))

    t = threading.Thread(target=waiter, args=(0,))
    t.start()
    assert loading.wait(HANG_S)
    c.close()
    release.set()
    t.join(HANG_S)
    assert out == [b"late"]
    assert c.closed
    assert client.get("slow") == b"late"
