"""shmc.redis.NearCache end to end: a daemon that follows a real
redis-server (--redis, --redis-prefix; docs/NEARCACHE.md) drops the
copies of keys that another Redis client writes, and a fill that races
with such a write - forced: the write is made, and its invalidation has
reached the daemon, between the near cache's read of Redis and its fill -
does not cache the old value.  Last, a smoke test against a 3-master
Redis Cluster.  Skipped when the daemon has no --redis, or without
redis-server, redis-cli or python3-redis.
"""
import errno
import itertools
import subprocess
import time

import pytest

import shmc
import shmc.redis
from conftest import daemon_binary, own_daemon
from redisproc import RedisCluster, RedisServer, free_ports
from shmcproto import Client as ControlClient

DEADLINE_S = 30.0  # only a hang or a lost invalidation reaches it
PREFIX = "e:"
CANARIES = itertools.count()


def daemon_follows_redis():
    out = subprocess.run([daemon_binary(), "--help"], capture_output=True,
                         text=True).stdout
    if "--redis-prefix" not in out:
        pytest.skip("this shmcached has no --redis (the near cache)")


def nearcache(d):
    """The daemon's tracking state and counters (NEARCACHE request)."""
    c = ControlClient(d.sock)
    try:
        return c.nearcache()
    finally:
        c.close()


def wait_for(what, fn):
    end = time.monotonic() + DEADLINE_S
    while not fn():
        if time.monotonic() > end:
            raise AssertionError("not within %s s: %s" % (DEADLINE_S, what))
        time.sleep(0.005)


def settle(region, redis, prefix=PREFIX):
    """Returns once the daemon has applied the invalidations of every
    write made to Redis so far: they come on one connection, in order, so
    a canary written last is dropped last.  (A fill whose lease began
    while an invalidation was still on its way would be refused, as it
    must: the tests settle first to assert what is cached.)"""
    canary = "%scanary:%d" % (prefix, next(CANARIES))
    region.set(canary, b"x")
    redis.set(canary, b"x")
    wait_for("the canary's invalidation",
             lambda: region.get(canary) is None)


def wait_up(d, masters=1):
    wait_for("the daemon's Redis tracking is up",
             lambda: (lambda s: s["state"] == "up"
                      and s["masters"] >= masters)(nearcache(d)))


@pytest.fixture(scope="module", autouse=True)
def daemon_with_redis():
    """Skips the module before any server starts when the daemon has no
    --redis."""
    daemon_follows_redis()


@pytest.fixture(scope="module")
def tracking(redis_server):
    """A daemon of its own, following redis_server for the prefix e:."""
    with own_daemon(["--redis", redis_server.sock,
                     "--redis-prefix", PREFIX]) as d:
        wait_up(d)
        yield d


@pytest.fixture
def redis(redis_server):
    """A redis.Redis on redis_server, not emptied (FLUSHALL would flush
    the daemon's prefixes at a time of its own): each test has keys of
    its own."""
    r = redis_server.client()
    yield r
    r.close()


@pytest.fixture
def region(tracking):
    c = shmc.Client(tracking.sock)
    yield c
    c.close()


def test_redis_tracking_prefixes_default_to_the_tracked_ones(
        tracking, region, redis):
    wait_up(tracking)
    assert region.near_info() == {"state": "up",
                                  "prefixes": [PREFIX.encode()]}
    # A namespace registered beside the tracked prefix is not tracked:
    # Redis' writes of its keys never reach the region, so it is neither
    # taken by default nor accepted.
    region.add_namespace("other:")
    try:
        near = shmc.redis.NearCache(region, redis)
        assert near.prefixes == (PREFIX.encode(),)
        with pytest.raises(ValueError, match="tracked prefixes"):
            near.get("other:1")
        with pytest.raises(ValueError, match="'other:'.*keeps coherent"):
            shmc.redis.NearCache(region, redis, prefixes=["other:", PREFIX])
        # A narrower prefix under a tracked one is.
        sub = shmc.redis.NearCache(region, redis, prefixes=[PREFIX + "s:"])
        redis.set(PREFIX + "s:1", b"v")
        assert sub.get(PREFIX + "s:1") == b"v"
        with pytest.raises(ValueError, match="tracked prefixes"):
            sub.get(PREFIX + "1")
    finally:
        region.delete_namespace("other:")


def test_redis_tracking_write_by_another_client_drops_the_copy(
        region, redis, writer):
    near = shmc.redis.NearCache(region, redis, ttl=300)
    redis.mset({"e:1": b"old", "e:2": b"old"})
    settle(region, redis)
    assert near.get_many(["e:1", "e:2"]) == {"e:1": b"old", "e:2": b"old"}
    assert region.get("e:1") == b"old"
    writer.set("e:1", b"new")
    writer.delete("e:2")
    wait_for("the written keys' copies dropped",
             lambda: region.get_many(["e:1", "e:2"]) == {})
    assert near.get("e:1") == b"new"
    assert near.get("e:2") is None


def test_redis_tracking_forced_race_with_an_invalidation_from_redis(
        region, redis, writer):
    redis.set("e:race", b"old")
    settle(region, redis)

    def after_read(key, value):
        # Another client writes the key once the near cache has read it,
        # and the daemon applies the invalidation, before the fill.
        writer.set(key, b"new")
        settle(region, writer)

    near = shmc.redis.NearCache(region, redis, _after_read=after_read)
    assert near.get("e:race") == b"old"  # this request's answer ...
    assert region.get("e:race") is None  # ... not cached
    near._after_read = None
    assert near.get("e:race") == b"new"
    assert region.get("e:race") == b"new"


def test_redis_tracking_nothing_is_cached_while_tracking_is_down(redis):
    # The daemon follows a Redis that is not there yet: its prefix is
    # blocked, so a value read from Redis (here another server) is
    # served but never cached.
    port = free_ports(1)[0]
    with own_daemon(["--redis", "127.0.0.1:%d" % port,
                     "--redis-prefix", "d:"]) as d:
        assert nearcache(d)["state"] != "up"
        region = shmc.Client(d.sock)
        near = shmc.redis.NearCache(region, redis)
        redis.set("d:k", b"v")
        for _ in range(2):
            assert near.get("d:k") == b"v"
            assert near.get_many(["d:k"]) == {"d:k": b"v"}
            assert region.get("d:k") is None
        # Once Redis is there and followed, fills are cached again.
        server = RedisServer(port=port)
        try:
            wait_up(d)
            r = server.client()
            r.set("d:k", b"followed")
            settle(region, r, "d:")
            near = shmc.redis.NearCache(region, r)
            assert near.get("d:k") == b"followed"
            assert region.get("d:k") == b"followed"
            r.close()
        finally:
            server.stop()
        region.close()


def test_redis_tracking_cluster_smoke():
    cluster = RedisCluster()
    try:
        seed = "127.0.0.1:%d" % cluster.ports[1]
        with own_daemon(["--redis", seed, "--redis-prefix", "c:"]) as d:
            wait_up(d, masters=3)
            rc, writer = cluster.client(), cluster.client()
            region = shmc.Client(d.sock)
            near = shmc.redis.NearCache(region, rc, ttl=300)
            keys = ["c:%d" % i for i in range(30)]
            assert len({rc.get_node_from_key(k).port for k in keys}) == 3
            # Every write's invalidation applied first (they come from
            # three masters, on three connections: counted, not settled
            # by a canary).
            before = nearcache(d)["keys"]
            for k in keys:
                rc.set(k, k.encode())
            wait_for("the invalidations of the writes",
                     lambda: nearcache(d)["keys"] >= before + len(keys))
            # One MGET per slot: keys of every master in one call.
            assert near.get_many(keys + ["c:absent"]) == {
                k: k.encode() for k in keys}
            assert len(region.get_many(keys)) == len(keys)
            for k in keys:
                writer.set(k, b"new")
            wait_for("every master's writes drop the copies",
                     lambda: region.get_many(keys) == {})
            assert set(near.get_many(keys).values()) == {b"new"}
            near.set("c:0", b"mine")
            assert near.get("c:0") == b"mine"
            assert near.delete("c:1") is True
            assert near.get("c:1") is None
            region.close()
            rc.close()
            writer.close()
    finally:
        cluster.stop()


def test_redis_tracking_down_nothing_is_cached_under_its_prefixes():
    # A daemon whose Redis never answers: its prefix stays blocked, so
    # neither a plain write nor a NearCache fill makes a copy there (it
    # could miss its invalidation); other keys are cached as ever.
    port, = free_ports(1)
    with own_daemon(["--redis", "127.0.0.1:%d" % port,
                     "--redis-prefix", PREFIX]) as d:
        c = shmc.Client(d.sock)
        try:
            assert c.near_info()["state"] in ("connecting", "down")
            with pytest.raises(shmc.Error, match="prefix is blocked") as ei:
                c.set(PREFIX + "plain", b"v")
            assert ei.value.code == -errno.ESTALE
            assert c.get(PREFIX + "plain") is None
            assert c.get_or_load(PREFIX + "loaded", lambda: b"v") == b"v"
            assert c.get(PREFIX + "loaded") is None
            c.set("other:1", b"v")
            assert c.get("other:1") == b"v"
            # set_many reports the key it could not store and goes on; the
            # writes that need the key present find it missing.
            assert c.set_many({"other:2": b"v", PREFIX + "m": b"v",
                               "other:3": b"v"}) == [PREFIX + "m"]
            assert c.get_many(["other:2", "other:3", PREFIX + "m"]) == {
                "other:2": b"v", "other:3": b"v"}
            assert c.replace(PREFIX + "plain", b"v") is False
        finally:
            c.close()
