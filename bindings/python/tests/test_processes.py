"""Several processes on one cache, and Clients that cross a fork()."""
import ctypes
import multiprocessing
import os

import pytest

import shmc
import workers

HANG_S = 120  # only a hang reaches it


def run_all(ctx, target, args_list):
    """Runs target(*args) in one process each; returns their exit codes."""
    procs = [ctx.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(HANG_S)
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
    return codes


def test_processes_value_set_in_one_is_read_in_another(client, sock):
    ctx = multiprocessing.get_context("spawn")  # no inherited state at all
    assert run_all(ctx, workers.set_value, [(sock, "k", b"from a")]) == [0]
    assert client.get("k") == b"from a"
    with ctx.Pool(1) as pool:
        client.set("j", b"from the parent")
        assert pool.apply(workers.read_value, (sock, "j")) == \
            b"from the parent"


def test_processes_get_or_load_runs_one_loader_for_eight(client, sock):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(8)
    codes = run_all(ctx, workers.load_once,
                    [(sock, "key", barrier, 1.0, i) for i in range(8)])
    assert codes == [0] * 8
    assert client.get("key:runs") == b"1"
    values = list(client.get_many(["key:got:%d" % i
                                   for i in range(8)]).values())
    assert len(values) == 8
    assert len(set(values)) == 1
    assert values[0].startswith(b"loaded by ")


def test_processes_concurrent_incr_loses_nothing(client, sock):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    codes = run_all(ctx, workers.count,
                    [(sock, "n", 2000, barrier) for _ in range(4)])
    assert codes == [0, 0, 0, 0]
    assert client.get("n") == b"8000"


def test_processes_client_made_before_a_multiprocessing_fork(client, sock):
    workers.PRELOADED = shmc.Client(sock)  # as gunicorn --preload would
    try:
        workers.PRELOADED.set("pre", b"before the fork")
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(3) as pool:
            results = pool.map(workers.use_preloaded, ["pre"] * 6)
        for seen, _cid, _n in results:
            assert seen == b"before the fork"
        # Each worker process has its own handle (its own client id).
        assert workers.PRELOADED.client_id not in {r[1] for r in results}
        assert sorted(r[2] for r in results) == [1, 2, 3, 4, 5, 6]
        assert client.get("pre:child").startswith(b"from pid ")
        # The parent's Client is unaffected.
        assert workers.PRELOADED.get("pre") == b"before the fork"
        workers.PRELOADED.ping()
    finally:
        workers.PRELOADED.close()
        workers.PRELOADED = None


def child_exit(fn):
    """In a forked child: exit 0 if fn() is true, 1 if false, 2 on error."""
    try:
        os._exit(0 if fn() else 1)
    except BaseException:  # noqa: B902 - any failure is the answer
        os._exit(2)


def wait_code(pid):
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_processes_client_works_after_a_bare_fork(client):
    client.set("k", b"parent")
    parent_id = client.client_id
    pid = os.fork()
    if pid == 0:
        def child():
            ok = client.get("k") == b"parent"
            client.set("k", b"child")
            client.ping()  # control requests too, on its own connection
            ok = ok and client.client_id != parent_id
            # and the child's child, forked again
            pid2 = os.fork()
            if pid2 == 0:
                child_exit(lambda: client.incr("grand", 1, initial=0) == 1)
            return ok and wait_code(pid2) == 0
        child_exit(child)
    assert wait_code(pid) == 0
    assert client.get("k") == b"child"
    assert client.get("grand") == b"1"
    assert client.client_id == parent_id
    client.ping()


def test_processes_client_works_after_a_fork_from_c(client):
    """A fork that runs no Python at-fork hook (an extension, a server
    written in C): the library's -ECHILD makes the Client reopen."""
    client.set("k", b"parent")
    libc = ctypes.CDLL(None, use_errno=True)
    pid = libc.fork()
    if pid == 0:
        child_exit(lambda: client.get("k") == b"parent"
                   and client.set("k", b"child") is None)
    assert pid > 0
    assert wait_code(pid) == 0
    assert client.get("k") == b"child"
    client.ping()


def test_processes_closed_client_stays_closed_in_a_child(sock):
    c = shmc.Client(sock)
    c.close()
    pid = os.fork()
    if pid == 0:
        def child():
            try:
                c.get("k")
            except shmc.Error:
                return True
            return False
        child_exit(child)
    assert wait_code(pid) == 0


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_processes_every_start_method_counts(client, sock, method):
    ctx = multiprocessing.get_context(method)
    barrier = ctx.Barrier(2)
    codes = run_all(ctx, workers.count,
                    [(sock, "m", 100, barrier) for _ in range(2)])
    assert codes == [0, 0]
    assert client.get("m") == b"200"
