"""Fill leases through shmc.Client (shmc.h "Fill leases"): get_lease(),
lease_begin() and fill(); an invalidation between the read of the store
of record and the fill voids the lease, so the old value is not cached.

The race is forced step by step (Events), never left to timing.
"""
import multiprocessing
import pickle

import pytest

import shmc
from conftest import forced_race

HANG_S = 120  # only a hang reaches it


def other_segment_key(client, key):
    """A key whose lease fill() refuses for key: one in another segment
    (found by the error itself, as the segment of a key is private)."""
    lease = client.lease_begin(key)
    for i in range(10000):
        other = "other%d" % i
        try:
            client.fill(lease, other, b"v")
        except ValueError:
            return other
        client.delete(other)
    raise AssertionError("no key of another segment found")


def test_lease_miss_then_fill_is_cached(client):
    value, lease = client.get_lease("user:1")
    assert value is None
    assert isinstance(lease, shmc.Lease)
    assert client.fill(lease, "user:1", b"from the store", ttl=60, flags=7)
    item = client.get_item("user:1")
    assert item.value == b"from the store"
    assert item.flags == 7
    assert 0 < client.ttl("user:1") <= 60


def test_lease_hit_returns_the_value_and_no_lease(client):
    client.set("k", b"cached")
    assert client.get_lease("k") == (b"cached", None)
    big = b"x" * 100000  # read again into a larger buffer
    client.set("big", big)
    assert client.get_lease("big") == (big, None)


def test_lease_invalidation_before_the_fill_voids_it(client):
    client.set("user:2", b"old")
    _, lease = client.get_lease("user:2")
    assert lease is None
    client.delete("user:2")  # invalidated
    value, lease = client.get_lease("user:2")
    assert value is None
    # (the store is read here: b"old"; then it is written, and the key
    # invalidated, though absent)
    assert client.delete("user:2") is False
    assert client.fill(lease, "user:2", b"old") is False
    assert client.get("user:2") is None
    # The next miss takes a new lease, and its fill is cached.
    _, lease = client.get_lease("user:2")
    assert client.fill(lease, "user:2", b"new") is True
    assert client.get("user:2") == b"new"


def test_lease_value_stored_meanwhile_stays(client):
    lease = client.lease_begin("k")
    client.set("k", b"written")
    assert client.fill(lease, "k", b"read") is False
    assert client.get("k") == b"written"


def test_lease_namespace_flush_voids_it(client):
    client.add_namespace("lp:")
    try:
        lease = client.lease_begin("lp:k")
        client.flush_namespace("lp:")
        assert client.fill(lease, "lp:k", b"v") is False
        assert client.get("lp:k") is None
    finally:
        client.delete_namespace("lp:")


def test_lease_of_another_segment_raises_value_error(client):
    other = other_segment_key(client, "k")
    lease = client.lease_begin("k")
    with pytest.raises(ValueError, match="another segment"):
        client.fill(lease, other, b"v")
    assert client.get(other) is None


def test_lease_bad_arguments_raise(client):
    lease = client.lease_begin("k")
    with pytest.raises(TypeError, match="shmc.Lease"):
        client.fill(b"not a lease", "k", b"v")
    with pytest.raises(TypeError, match="bytes-like"):
        client.fill(lease, "k", "a str")
    with pytest.raises(ValueError):
        client.fill(lease, "", b"v")
    with pytest.raises(ValueError):
        client.fill(lease, "k", b"v", ttl=-1)
    with pytest.raises(ValueError):
        client.lease_begin("")
    with pytest.raises(shmc.ValueTooLarge):
        client.fill(lease, "k", b"x" * (client.max_item + 1))
    with pytest.raises(TypeError):
        shmc.Lease()


def test_lease_is_opaque_and_immutable(client):
    lease = client.lease_begin("k")
    assert repr(lease) == "<shmc.Lease>"
    with pytest.raises(AttributeError):
        lease.seg = 1
    with pytest.raises(TypeError):
        pickle.dumps(lease)


def test_lease_get_or_load_does_not_cache_a_value_invalidated_meanwhile(
        client):
    def loader():
        # The store is read, then the key invalidated before the fill.
        client.delete("gol")
        return b"old"

    assert client.get_or_load("gol", loader) == b"old"
    assert client.get("gol") is None
    assert client.get_or_load("gol", lambda: b"new") == b"new"
    assert client.get("gol") == b"new"


def reader(sock, key, store, read_done, inval_done, out):
    """The reader of the race: a miss, a read of the store, then (after
    the writer) the fill."""
    with shmc.Client(sock) as c:
        value, lease = c.get_lease(key)
        assert value is None
        read = store.value
        read_done.set()
        assert inval_done.wait(HANG_S)
        out.value = 1 if c.fill(lease, key, read) else 0


def test_lease_forced_race_across_processes(client, sock):
    ctx = multiprocessing.get_context("fork")
    store = ctx.Array("c", b"old\0\0\0", lock=False)
    read_done, inval_done = ctx.Event(), ctx.Event()
    out = ctx.Value("i", -1, lock=False)

    def writer():
        # The store changes, and the key is invalidated.
        store.value = b"new"
        assert client.delete("race") is False

    forced_race(ctx, reader,
                (sock, "race", store, read_done, inval_done, out),
                read_done, writer, inval_done)
    assert out.value == 0  # the fill was refused
    assert client.get("race") is None
    # Without an invalidation in between, the reader's fill is cached.
    read_done.clear()
    inval_done.set()
    p = ctx.Process(target=reader,
                    args=(sock, "race", store, read_done, inval_done, out))
    p.start()
    p.join(HANG_S)
    assert p.exitcode == 0
    assert out.value == 1
    assert client.get("race") == b"new"
