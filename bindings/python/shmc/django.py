"""shmc.django: a Django cache backend on the host's shared-memory cache.

    CACHES = {
        "default": {
            "BACKEND": "shmc.django.ShmcCache",
            "LOCATION": "",              # the daemon's socket; "": default
            "TIMEOUT": 300,              # Django's TIMEOUT: None = forever
            "KEY_PREFIX": "myapp",
            "OPTIONS": {"NAMESPACE": "myapp:"},   # optional, see clear()
        }
    }

Every BaseCache method is implemented with Django's documented meaning:
KEY_PREFIX, VERSION and KEY_FUNCTION make the keys, TIMEOUT None stores
forever and 0 (or less) expires at once, incr()/decr() of a missing key
raise ValueError.  Values are pickled (OPTIONS "PICKLE_PROTOCOL", default
the highest), except int values: those are stored as their decimal digits
(flags FLAG_INT), so that incr() and decr() count them in place; both
are atomic across every process of the host (a compare-and-swap loop),
with no limit on the numbers' size or sign.

OPTIONS "NAMESPACE": a prefix (1 to 52 bytes) put before every key this
cache writes; clear() then drops only those keys (a namespace flush of
the daemon, in constant time) instead of the whole shared cache.

One Client per socket is shared by every backend instance (and thread)
of the process; it reopens itself in a forked worker.
"""
import errno
import pickle
import threading
import time

from django.core.cache.backends.base import (
    DEFAULT_TIMEOUT,
    BaseCache,
    InvalidCacheKey,
)
from django.core.exceptions import ImproperlyConfigured

import shmc

# The item flags of this backend's values (pymemcache's numbers).  An
# item with flags 0 was written by another client (Client.incr() with
# initial, get_or_load()): read as an int when it is a decimal number,
# else as bytes.
FLAG_PICKLE = 1
FLAG_INT = 2

_OPTIONS = {"NAMESPACE", "PICKLE_PROTOCOL"}
_clients = {}
_clients_lock = threading.Lock()


def _client(location):
    """The process's shared Client for the socket location."""
    with _clients_lock:
        c = _clients.get(location)
        if c is None or c.closed:
            c = _clients[location] = shmc.Client(location or None)
        return c


def _not_stored(e):
    """Whether the shmc.Error e means "not stored", which a cache's user
    takes as False: a value too large, or a key under a prefix the
    daemon's near cache blocks (its tracking of Redis is down)."""
    return isinstance(e, shmc.ValueTooLarge) or e.code == -errno.ESTALE


def _encode(value, protocol):
    if type(value) is int:
        return str(value).encode("ascii"), FLAG_INT
    return pickle.dumps(value, protocol), FLAG_PICKLE


def _decode(data, flags):
    if flags == FLAG_PICKLE:
        return pickle.loads(data)
    if flags == FLAG_INT:
        return int(data)
    try:
        return int(data)
    except ValueError:
        return data


class ShmcCache(BaseCache):
    """Django's BaseCache over shmc.Client (see the module's docstring)."""

    def __init__(self, location, params):
        super().__init__(params)
        options = dict(params.get("OPTIONS") or {})
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ImproperlyConfigured(
                "shmc.django.ShmcCache: unknown OPTIONS %s (known: %s)"
                % (sorted(unknown), sorted(_OPTIONS)))
        if isinstance(location, (list, tuple)):
            raise ImproperlyConfigured(
                "shmc.django.ShmcCache: LOCATION is one socket path "
                "(or '' for the default), not a list")
        self._location = location or ""
        ns = options.get("NAMESPACE") or b""
        self._ns = ns.encode() if isinstance(ns, str) else bytes(ns)
        if len(self._ns) > shmc.NS_PREFIX_MAX:
            raise ImproperlyConfigured(
                "shmc.django.ShmcCache: OPTIONS NAMESPACE is %d bytes; "
                "the longest is %d" % (len(self._ns), shmc.NS_PREFIX_MAX))
        self._protocol = options.get("PICKLE_PROTOCOL",
                                     pickle.HIGHEST_PROTOCOL)

    @property
    def _cache(self):
        return _client(self._location)

    # -- keys and timeouts ------------------------------------------------
    def make_key(self, key, version=None):
        """Django's key (KEY_PREFIX, VERSION, KEY_FUNCTION) as the bytes
        stored: the NAMESPACE, then the key in UTF-8."""
        return self._ns + super().make_key(key, version).encode()

    def _key(self, key, version=None):
        k = self.make_key(key, version)
        self.validate_key(k)
        return k

    def validate_key(self, key):
        """Keys of any characters are fine here; only the length has a
        limit (shmc.KEY_MAX bytes with prefix, version and namespace)."""
        n = len(key.encode() if isinstance(key, str) else key)
        if n > shmc.KEY_MAX:
            raise InvalidCacheKey(
                "Cache key is %d bytes long with its prefix, version and "
                "namespace; shmc keys are at most %d bytes"
                % (n, shmc.KEY_MAX))

    def get_backend_timeout(self, timeout=DEFAULT_TIMEOUT):
        """The shmc TTL of a Django timeout: 0 for None (never expires),
        None for a timeout that expires at once (0 or less: not stored),
        else whole seconds."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return 0
        ttl = int(timeout)
        if ttl <= 0:
            return None
        return min(ttl, 0xFFFFFFFF)

    # -- BaseCache ----------------------------------------------------------
    # A write that is not stored is False, as with Django's memcached
    # backends: a value too large, or a key under a prefix the daemon's
    # near cache blocks while its tracking of Redis is down (_not_stored).
    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        k = self._key(key, version)
        ttl = self.get_backend_timeout(timeout)
        if ttl is None:
            return self._cache.ttl(k) is None
        data, flags = _encode(value, self._protocol)
        try:
            return self._cache.add(k, data, ttl=ttl, flags=flags)
        except shmc.Error as e:
            if not _not_stored(e):
                raise
            return False

    def get(self, key, default=None, version=None):
        item = self._cache.get_item(self._key(key, version))
        if item is None:
            return default
        return _decode(item.value, item.flags)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        self._store(self._key(key, version), value,
                    self.get_backend_timeout(timeout))

    def _store(self, k, value, ttl):
        """set() of the made key k with the shmc TTL ttl; False when the
        value was too large (then, as Django's memcached backends do, no
        stale value stays)."""
        if ttl is None:
            self._cache.delete(k)
            return True
        data, flags = _encode(value, self._protocol)
        try:
            self._cache.set(k, data, ttl=ttl, flags=flags)
            return True
        except shmc.Error as e:
            if not _not_stored(e):
                raise
            self._cache.delete(k)
            return False

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        k = self._key(key, version)
        ttl = self.get_backend_timeout(timeout)
        if ttl is None:
            return self._cache.delete(k)
        return self._cache.touch(k, ttl)

    def delete(self, key, version=None):
        return self._cache.delete(self._key(key, version))

    def get_many(self, keys, version=None):
        made = {self._key(key, version): key for key in keys}
        found = self._cache.get_many(list(made), with_flags=True)
        return {made[k]: _decode(v, f) for k, (v, f) in found.items()}

    def has_key(self, key, version=None):
        return self._cache.ttl(self._key(key, version)) is not None

    def incr(self, key, delta=1, version=None):
        """Adds delta (any int, negative too) atomically across processes;
        ValueError if the key is missing.  The TTL is kept."""
        k = self._key(key, version)
        while True:
            item = self._cache.get_item(k)
            if item is None:
                raise ValueError("Key '%s' not found" % key)
            new = _decode(item.value, item.flags) + delta
            data, flags = _encode(new, self._protocol)
            ttl = 0
            if item.expire_at:
                ttl = max(1, item.expire_at - int(time.time()))
            if self._cache.cas(k, data, item.cas, ttl=ttl, flags=flags):
                return new
            # Written by another process since the read: read again.

    def decr(self, key, delta=1, version=None):
        return self.incr(key, -delta, version)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        ttl = self.get_backend_timeout(timeout)
        return [key for key, value in data.items()
                if not self._store(self._key(key, version), value, ttl)]

    def delete_many(self, keys, version=None):
        self._cache.delete_many([self._key(key, version) for key in keys])

    def clear(self):
        """With OPTIONS NAMESPACE: drops this cache's keys (the namespace
        is registered with the daemon at the first clear()).  Without:
        empties the whole shared cache, as memcached's flush_all."""
        if self._ns:
            self._cache.add_namespace(self._ns)
            self._cache.flush_namespace(self._ns)
        else:
            self._cache.clear()

    def close(self, **kwargs):
        """Nothing to do: the mapping stays for the next request."""
