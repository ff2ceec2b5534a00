"""shmc.redis: the host's shared-memory cache as a read-through near cache
in front of Redis or Redis Cluster (redis-py, Debian: python3-redis).

    import redis, shmc, shmc.redis

    r = redis.Redis(unix_socket_path="/run/redis.sock")
    near = shmc.redis.NearCache(shmc.Client(), r, ttl=300)
    near.get("user:42")          # the region's copy, else Redis GET, cached
    near.get_many(["user:1", "user:2"])   # one multi-get, one MGET
    near.set("user:42", b"...")  # Redis SET; this host's copy dropped at once
    near.delete("user:42")

Coherence comes from the daemon: run with --redis ADDR --redis-prefix P,
it follows Redis' invalidations for the keys under P and deletes each
written key from the region, on every host.  This module adds the other
half: a miss is filled under a fill lease (Client.get_lease(),
Client.fill()), so a value read from Redis just before a write is not
cached once that write's invalidation has come.  Only keys under a tracked
prefix may be near-cached: a key outside them would never be invalidated,
and NearCache refuses it.

The manual is docs/PYTHON.md ("Redis near cache"); the guarantees, and the
daemon's side, are in docs/NEARCACHE.md.  redis-py is imported by the
caller, never by this module: `import shmc` does not need it.
"""

from __future__ import annotations

import errno
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Union

from ._shmc import Client, Error, Lease, ValueTooLarge

Key = Union[str, bytes, bytearray, memoryview]
Value = Union[str, bytes, bytearray, memoryview]

# Flags of an entry that records a key absent from Redis (cache_misses).
ABSENT_FLAGS = 0x52444E30  # "RDN0"


def _key_bytes(key: Key) -> bytes:
    """A key as the bytes Redis and the region both name it by."""
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError("a key must be str or bytes, not %s"
                    % type(key).__name__)


def _value_bytes(value: Value) -> bytes:
    """A value for Redis SET: bytes, or str encoded as UTF-8."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError("a value must be bytes or str, not %s (encode it, or "
                    "pickle it)" % type(value).__name__)


class NearCache:
    """A read-through near cache: the shmc Client's region in front of a
    redis-py client (redis.Redis or redis.cluster.RedisCluster).

    client: a shmc.Client.  redis: the redis-py client; GET replies may be
    bytes or str (decode_responses), and are returned as bytes.  ttl: the
    seconds a copy lives in the region (0: until invalidated); it also
    bounds how long a key expired in Redis, but not yet deleted there,
    stays cached.  prefixes: the key prefixes this near cache serves; a
    key under none of them raises ValueError.  None (the default) takes
    the prefixes the daemon keeps coherent (its --redis-prefix options,
    Client.near_info()).  Given, each must lie under one of those, or
    ValueError says which is not: Redis' writes of its keys would never
    reach the region.  With a daemon that does not follow Redis (state
    "off", or a daemon older than its near cache) given prefixes are
    accepted only with a ttl, and with a RuntimeWarning: then only this
    host's set() and delete() drop copies, and ttl bounds how long any
    other write goes unseen.  The daemon's prefixes are read here, once:
    create the NearCache again after restarting the daemon with other
    --redis-prefix options.  cache_misses: when True, a key
    absent from Redis is cached as absent (an empty entry with flags
    ABSENT_FLAGS) until Redis writes it; by default absence is not cached.
    """

    def __init__(self, client: Client, redis: Any, ttl: int = 0, *,
                 prefixes: Union[Iterable[Key], None] = None,
                 cache_misses: bool = False,
                 _after_read: Union[Callable[[bytes, Union[bytes, None]],
                                             Any], None] = None) -> None:
        try:
            info = client.near_info()
        except Error as e:
            if e.code != -errno.EOPNOTSUPP:
                raise
            info = {"state": "off", "prefixes": []}  # before --redis
        tracked = tuple(info["prefixes"]) if info["state"] != "off" else ()
        if prefixes is None:
            if not tracked:
                raise ValueError(
                    "the daemon follows no Redis, so no key is kept "
                    "coherent: run shmcached with --redis ADDR "
                    "--redis-prefix PREFIX (or pass prefixes=[...] for "
                    "keys that only this host writes)")
            prefixes = tracked
        elif isinstance(prefixes, (str, bytes)):
            raise TypeError("prefixes must be a list of prefixes, not one")
        self.prefixes = tuple(_key_bytes(p) for p in prefixes)
        if not self.prefixes or not all(self.prefixes):
            raise ValueError("prefixes must hold at least one prefix, and "
                             "no empty one")
        for p in self.prefixes:
            if tracked and not p.startswith(tracked):
                raise ValueError(
                    "the prefix %r is under none of the prefixes the daemon "
                    "keeps coherent %r: Redis' writes of its keys would "
                    "not reach the region; add --redis-prefix to the "
                    "daemon, or leave its keys out" % (p, list(tracked)))
        if isinstance(ttl, bool) or not isinstance(ttl, int) \
                or not 0 <= ttl <= 0xFFFFFFFF:
            raise ValueError("ttl must be whole seconds, 0 to 2**32-1 (0: "
                             "until invalidated), not %r" % (ttl,))
        if not tracked:
            if ttl == 0:
                raise ValueError(
                    "the daemon follows no Redis (no --redis), so with "
                    "ttl=0 a copy would be served after any other "
                    "client's write, for ever: run it with --redis ADDR "
                    "--redis-prefix PREFIX, or give ttl=SECONDS, the "
                    "staleness you accept")
            warnings.warn(
                "the daemon follows no Redis (no --redis): the copies of "
                "%r are dropped only by this host's NearCache.set() and "
                "delete(), and after ttl=%d s" % (list(self.prefixes), ttl),
                RuntimeWarning, stacklevel=2)
        if getattr(redis, "read_from_replicas", False):
            raise ValueError(
                "a RedisCluster that reads from replicas cannot fill a near "
                "cache: a replica may answer with a value older than an "
                "invalidation already applied here, which no lease can "
                "catch; create it with read_from_replicas=False")
        self.client = client
        self.redis = redis
        self.ttl = ttl
        self.cache_misses = bool(cache_misses)
        # Tests only: called as _after_read(key, value) between the read
        # of Redis and the fill, to force the race a lease closes.
        self._after_read = _after_read

    def __repr__(self) -> str:
        return "<shmc.redis.NearCache prefixes=%r ttl=%r>" % (
            list(self.prefixes), self.ttl)

    def _key(self, key: Key) -> bytes:
        k = _key_bytes(key)
        if not k.startswith(self.prefixes):
            raise ValueError(
                "the key %r is under none of the tracked prefixes %r: the "
                "daemon would never invalidate its cached copy (only keys "
                "under --redis-prefix may be near-cached)"
                % (k, list(self.prefixes)))
        return k

    def _cached(self, k: bytes, value: bytes) -> Union[bytes, None]:
        """The value of a hit, read once with its flags: a cached absence
        reads as None.  With cache_misses, an empty value's flags are read
        in the same lookup (get_item), never in a second one, which an
        invalidation could come between."""
        if value or not self.cache_misses:
            return value
        item = self.client.get_item(k)
        if item is None or item.value:
            return self.get(k)  # changed since the first read: read again
        return None if item.flags == ABSENT_FLAGS else item.value

    def _fill(self, lease: Lease, k: bytes,
              value: Union[bytes, str, None]) -> Union[bytes, None]:
        """Caches what Redis answered for k under lease; a value the
        region cannot hold is served but not cached."""
        if isinstance(value, str):
            value = value.encode()
        if self._after_read is not None:
            self._after_read(k, value)
        if value is None:
            if self.cache_misses:
                self.client.fill(lease, k, b"", self.ttl, ABSENT_FLAGS)
            return None
        try:
            self.client.fill(lease, k, value, self.ttl)
        except ValueTooLarge:
            pass
        return value

    def get(self, key: Key) -> Union[bytes, None]:
        """The value of key (bytes), or None when Redis does not have it.
        A hit is served from the region; a miss reads Redis (GET) and
        caches the answer, unless the key was written meanwhile."""
        k = self._key(key)
        if self.cache_misses:
            item = self.client.get_item(k)
            if item is not None:
                if not item.value and item.flags == ABSENT_FLAGS:
                    return None
                return item.value
            lease = self.client.lease_begin(k)
        else:
            value, lease = self.client.get_lease(k)
            if lease is None:
                return value
        return self._fill(lease, k, self.redis.get(k))

    def _mget(self, keys: list[bytes]) -> list[Any]:
        """Redis' values of keys, in order: one MGET, or for a cluster one
        per slot (redis-py's mget_nonatomic())."""
        mget = getattr(self.redis, "mget_nonatomic", None)
        if mget is None:
            return self.redis.mget(keys)
        return mget(keys)

    def get_many(self, keys: Iterable[Key]) -> dict[Any, bytes]:
        """The values of keys (an iterable) as a dict of each key (as
        given) to its bytes; keys Redis does not have are left out.  One
        multi-get of the region, then one MGET of Redis for the misses
        (per slot on a cluster), whose answers are cached."""
        if isinstance(keys, (str, bytes)):
            raise TypeError("get_many() takes an iterable of keys, not "
                            "one key")
        given = {}
        for key in keys:
            given.setdefault(self._key(key), []).append(key)
        found = self.client.get_many(list(given))
        out = {}
        missing = []
        for k, names in given.items():
            if k in found:
                value = self._cached(k, found[k])
                if value is not None:
                    for name in names:
                        out[name] = value
            else:
                missing.append(k)
        if not missing:
            return out
        leases = [self.client.lease_begin(k) for k in missing]
        for k, lease, value in zip(missing, leases, self._mget(missing)):
            value = self._fill(lease, k, value)
            if value is not None:
                for name in given[k]:
                    out[name] = value
        return out

    def set(self, key: Key, value: Value, *,
            ex: Union[int, None] = None) -> None:
        """Writes key -> value to Redis (SET, with ex seconds of expiry
        there when given), then drops this host's copy, so that the next
        get() on this host reads the new value.  Other hosts' copies are
        dropped by their daemons' tracking."""
        k = self._key(key)
        value = _value_bytes(value)
        try:
            self.redis.set(k, value, ex=ex)
        finally:  # even when the reply was lost: dropping a copy is safe
            self.client.delete(k)

    def delete(self, key: Key) -> bool:
        """Deletes key from Redis (DEL) and drops this host's copy.
        Returns whether Redis had it."""
        k = self._key(key)
        try:
            n = self.redis.delete(k)
        finally:
            self.client.delete(k)
        return bool(n)

    def invalidate(self, key: Key) -> None:
        """Drops this host's copy of key only (Redis is not touched)."""
        self.client.delete(self._key(key))
