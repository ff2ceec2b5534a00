"""shmc.redis.NearCache against a real redis-server (on a Unix socket of
the test's own) and a daemon that does not follow Redis: reads through,
multi-gets, writes, deletes, the prefix rule, and the race a fill lease
closes, forced through the test hook between the read of Redis and the
fill (the invalidation is made by hand, as the daemon's tracking would
make it, or by a NearCache.set() in another process, step by step with
Events).  The daemon's own tracking is tested in test_redis_tracking.py.
"""
import errno
import multiprocessing
import os

import pytest

import shmc
import shmc.redis
from conftest import forced_race

HANG_S = 120  # only a hang reaches it
# This module's daemon follows no Redis: a NearCache on it needs a ttl,
# the bound on how long another client's write goes unseen.
TTL = 300
# This module's daemon does not follow Redis: NearCache warns so of the
# prefixes it is given (test_redis_prefixes_need_a_daemon_that_follows_
# redis asserts the warning).
pytestmark = pytest.mark.filterwarnings(
    "ignore:the daemon follows no Redis:RuntimeWarning")


@pytest.fixture
def near(client, redis):
    return shmc.redis.NearCache(client, redis, TTL, prefixes=["t:"])


def test_redis_get_reads_through_and_caches(near, client, redis):
    redis.set("t:a", b"one")
    assert near.get("t:a") == b"one"
    assert client.get("t:a") == b"one"
    assert 0 < client.ttl("t:a") <= 300
    # The next get is served from the region: with no daemon tracking
    # Redis here, a write that bypasses the near cache is not seen.
    redis.set("t:a", b"two")
    assert near.get("t:a") == b"one"
    assert near.get(b"t:a") == b"one"


def test_redis_get_of_a_key_absent_from_redis_is_none_and_not_cached(
        near, client):
    assert near.get("t:none") is None
    assert client.get("t:none") is None


def test_redis_cache_misses_caches_absence_until_written(client, redis):
    near = shmc.redis.NearCache(client, redis, TTL, prefixes=["t:"],
                                cache_misses=True)
    assert near.get("t:later") is None
    assert client.get_item("t:later").flags == shmc.redis.ABSENT_FLAGS
    assert near.get("t:later") is None
    assert near.get_many(["t:later"]) == {}
    near.set("t:later", b"now")
    assert near.get("t:later") == b"now"
    # An empty value is a value, not an absence.
    near.set("t:empty", b"")
    assert near.get("t:empty") == b""
    assert near.get("t:empty") == b""
    assert near.get_many(["t:empty", "t:later"]) == {
        "t:empty": b"", "t:later": b"now"}


class _Between:
    """A shmc.Client whose get_item first runs hook() once: to force an
    invalidation between get_many's read of the region and its look at
    an empty value's flags."""

    def __init__(self, client, hook):
        self._client, self._hook = client, hook

    def get_item(self, key):
        hook, self._hook = self._hook, None
        if hook:
            hook()
        return self._client.get_item(key)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_redis_cache_misses_absence_invalidated_between_two_reads(client,
                                                                   redis):
    near = shmc.redis.NearCache(client, redis, TTL, prefixes=["t:"],
                                cache_misses=True)
    assert near.get("t:gone") is None  # cached as absent

    def write_elsewhere():  # another host writes it; the daemon drops it
        redis.set("t:gone", b"v2")
        client.delete("t:gone")

    racing = shmc.redis.NearCache(_Between(client, write_elsewhere), redis,
                                  TTL, prefixes=["t:"], cache_misses=True)
    # Neither b"" (never Redis' value) nor None: the new value.
    assert racing.get_many(["t:gone"]) == {"t:gone": b"v2"}
    assert near.get("t:gone") == b"v2"


def test_redis_a_cluster_reading_replicas_is_refused(client):
    class ReplicaReader:
        read_from_replicas = True

    with pytest.raises(ValueError, match="replicas"):
        shmc.redis.NearCache(client, ReplicaReader(), TTL, prefixes=["t:"])


def test_redis_get_many_makes_one_mget_for_the_misses(near, client, redis,
                                                      monkeypatch):
    redis.set("t:cached", b"c")
    near.get("t:cached")
    redis.mset({"t:1": b"v1", "t:2": b"v2"})
    calls = []
    real_mget = redis.mget
    monkeypatch.setattr(redis, "mget",
                        lambda keys: calls.append(list(keys))
                        or real_mget(keys))
    got = near.get_many(["t:cached", "t:1", b"t:2", "t:absent", "t:1"])
    assert got == {"t:cached": b"c", "t:1": b"v1", b"t:2": b"v2"}
    assert calls == [[b"t:1", b"t:2", b"t:absent"]]
    assert client.get_many(["t:1", "t:2", "t:absent"]) == {
        "t:1": b"v1", "t:2": b"v2"}
    # All cached now: no Redis call.
    assert near.get_many(["t:1", "t:2", "t:cached"]) == {
        "t:1": b"v1", "t:2": b"v2", "t:cached": b"c"}
    assert len(calls) == 1
    assert near.get_many([]) == {}
    with pytest.raises(TypeError, match="iterable"):
        near.get_many("t:1")


def test_redis_set_writes_redis_and_drops_the_local_copy(near, client,
                                                         redis):
    redis.set("t:u", b"old")
    assert near.get("t:u") == b"old"
    near.set("t:u", b"new")
    assert redis.get("t:u") == b"new"
    assert client.get("t:u") is None
    assert near.get("t:u") == b"new"  # read-your-writes
    near.set("t:s", "é")  # str is stored as UTF-8
    assert near.get("t:s") == "é".encode()
    near.set("t:ex", b"v", ex=100)
    assert 0 < redis.ttl("t:ex") <= 100
    with pytest.raises(TypeError, match="bytes or str"):
        near.set("t:n", 5)


def test_redis_set_that_fails_still_drops_the_local_copy(near, client,
                                                         redis, monkeypatch):
    # A write whose reply was lost may have reached Redis: the local copy
    # must not outlive it.
    redis.set("t:lost", b"old")
    assert near.get("t:lost") == b"old"

    def lost(*args, **kwargs):
        raise ConnectionError("the reply was lost")

    monkeypatch.setattr(redis, "set", lost)
    monkeypatch.setattr(redis, "delete", lost)
    with pytest.raises(ConnectionError):
        near.set("t:lost", b"new")
    assert client.get("t:lost") is None
    assert near.get("t:lost") == b"old"
    with pytest.raises(ConnectionError):
        near.delete("t:lost")
    assert client.get("t:lost") is None


def test_redis_delete_removes_from_redis_and_the_region(near, client,
                                                        redis):
    redis.set("t:d", b"v")
    near.get("t:d")
    assert near.delete("t:d") is True
    assert redis.get("t:d") is None
    assert client.get("t:d") is None
    assert near.get("t:d") is None
    assert near.delete("t:d") is False
    redis.set("t:i", b"v")
    near.get("t:i")
    near.invalidate("t:i")
    assert client.get("t:i") is None
    assert redis.get("t:i") == b"v"


def test_redis_keys_outside_the_prefixes_are_refused(near, client, redis):
    redis.set("other", b"v")
    for call in (near.get, near.delete, near.invalidate,
                 lambda k: near.set(k, b"v"), lambda k: near.get_many([k])):
        with pytest.raises(ValueError, match="tracked prefixes"):
            call("other")
    assert client.get("other") is None
    assert redis.get("other") == b"v"
    with pytest.raises(TypeError):
        near.get(42)


def test_redis_prefixes_need_a_daemon_that_follows_redis(client, redis):
    # This daemon has no --redis: it keeps no prefix coherent, and a
    # namespace registered with it is not one either, so there is no
    # default ...
    assert client.near_info() == {"state": "off", "prefixes": []}
    client.add_namespace("ns:")
    try:
        with pytest.raises(ValueError, match="--redis-prefix"):
            shmc.redis.NearCache(client, redis)
    finally:
        client.delete_namespace("ns:")
    # ... and given prefixes are served only with a ttl (without one a
    # copy would never go), and with a warning that says what then drops
    # a copy.
    with pytest.raises(ValueError, match="ttl=0"):
        shmc.redis.NearCache(client, redis, prefixes=["t:"])
    with pytest.warns(RuntimeWarning, match="follows no Redis.*'t:'"):
        near = shmc.redis.NearCache(client, redis, 60, prefixes=["t:"])
    assert near.ttl == 60
    redis.set("t:warned", b"v")
    assert near.get("t:warned") == b"v"
    with pytest.raises(ValueError, match="no empty"):
        shmc.redis.NearCache(client, redis, prefixes=[""])
    with pytest.raises(TypeError, match="list"):
        shmc.redis.NearCache(client, redis, prefixes="t:")
    for ttl in (-1, 2**32, 1.5, "60"):
        with pytest.raises(ValueError, match="ttl"):
            shmc.redis.NearCache(client, redis, ttl, prefixes=["t:"])


class _Answering:
    """A shmc.Client whose near_info() raises shmc.Error with code."""

    def __init__(self, client, code):
        self._client, self._code = client, code

    def near_info(self):
        e = shmc.Error("near_info: " + os.strerror(-self._code))
        e.code = self._code
        raise e

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_redis_daemon_older_than_its_near_cache_counts_as_off(client, redis):
    old = _Answering(client, -errno.EOPNOTSUPP)  # refuses NEARCACHE
    with pytest.raises(ValueError, match="--redis-prefix"):
        shmc.redis.NearCache(old, redis)
    with pytest.warns(RuntimeWarning, match="follows no Redis"):
        shmc.redis.NearCache(old, redis, 60, prefixes=["t:"])
    # Any other failure to ask is the caller's to see.
    with pytest.raises(shmc.Error, match="near_info"):
        shmc.redis.NearCache(_Answering(client, -errno.EIO), redis, 60,
                             prefixes=["t:"])


def test_redis_str_replies_are_returned_as_bytes(client, redis_server):
    r = redis_server.client(decode_responses=True)
    try:
        r.set("t:txt", "héllo")
        near = shmc.redis.NearCache(client, r, TTL, prefixes=["t:"])
        assert near.get("t:txt") == "héllo".encode()
        assert near.get("t:txt") == "héllo".encode()  # the cached copy
        r.set("t:txt2", "x")
        assert near.get_many(["t:txt2"]) == {"t:txt2": b"x"}
    finally:
        r.close()


def test_redis_value_too_large_for_the_region_is_served_not_cached(
        near, client, redis):
    big = b"x" * (client.max_item + 1)
    redis.set("t:big", big)
    assert near.get("t:big") == big
    assert client.get("t:big") is None
    assert near.get_many(["t:big"]) == {"t:big": big}


def write_and_invalidate(client, writer, new):
    """The hook: between the read of Redis and the fill, another client
    writes the key to Redis, and its invalidation reaches the region (the
    daemon's tracking would delete the key; here the test does)."""
    def after_read(key, value):
        writer.set(key, new)
        client.delete(key)
    return after_read


def test_redis_forced_race_get_does_not_cache_the_old_value(client, redis,
                                                            writer):
    redis.set("t:race", b"old")
    near = shmc.redis.NearCache(
        client, redis, TTL, prefixes=["t:"],
        _after_read=write_and_invalidate(client, writer, b"new"))
    # The old value is this request's answer, but is not cached ...
    assert near.get("t:race") == b"old"
    assert client.get("t:race") is None
    # ... and the next get reads the new one.
    near._after_read = None
    assert near.get("t:race") == b"new"
    assert client.get("t:race") == b"new"


def test_redis_forced_race_get_many_does_not_cache_old_values(client, redis,
                                                              writer):
    redis.mset({"t:r1": b"old1", "t:r2": b"old2"})
    near = shmc.redis.NearCache(
        client, redis, TTL, prefixes=["t:"],
        _after_read=write_and_invalidate(client, writer, b"new"))
    assert near.get_many(["t:r1", "t:r2"]) == {"t:r1": b"old1",
                                               "t:r2": b"old2"}
    assert client.get_many(["t:r1", "t:r2"]) == {}
    near._after_read = None
    assert near.get_many(["t:r1", "t:r2"]) == {"t:r1": b"new",
                                               "t:r2": b"new"}


def test_redis_import_of_shmc_does_not_need_redis_py():
    import subprocess
    import sys
    code = ("import sys; sys.modules['redis'] = None; import shmc, "
            "shmc.redis; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True)
    assert out.stdout.strip() == "ok", out.stderr


def racing_reader(sock, redis_sock, key, read_done, write_done, out):
    """In another process: NearCache.get() of key, paused between its
    read of Redis and its fill until the writer is done."""
    import redis as redis_py

    def after_read(k, value):
        read_done.set()
        assert write_done.wait(HANG_S)

    with shmc.Client(sock) as c:
        r = redis_py.Redis(unix_socket_path=redis_sock)
        near = shmc.redis.NearCache(c, r, TTL, prefixes=["t:"],
                                    _after_read=after_read)
        out.value = near.get(key)
        r.close()


def test_redis_forced_race_with_a_set_in_another_process(client, redis,
                                                         redis_server, sock):
    # A NearCache.set() on this host while another process is between
    # its read of Redis and its fill: the other process serves what it
    # read, and the old value is not cached (even with no daemon
    # tracking Redis: set() drops the local copy itself).
    ctx = multiprocessing.get_context("fork")
    redis.set("t:p", b"old")
    read_done, write_done = ctx.Event(), ctx.Event()
    out = ctx.Array("c", 16, lock=False)
    near = shmc.redis.NearCache(client, redis, TTL, prefixes=["t:"])
    forced_race(ctx, racing_reader,
                (sock, redis_server.sock, "t:p", read_done, write_done,
                 out),
                read_done, lambda: near.set("t:p", b"new"), write_done)
    assert out.value == b"old"
    assert client.get("t:p") is None
    assert near.get("t:p") == b"new"
    assert client.get("t:p") == b"new"
