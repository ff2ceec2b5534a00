"""shmc: the host's shared-memory cache (shmcached) for Python.

A Client maps the cache that the shmcached daemon keeps in shared memory;
its gets and sets run in this process, on the mapping, at the cost of a
C call, and every process of the host that opens a Client sees the same
cache.  Made for the worker processes of a web server (gunicorn, uWSGI,
Celery): a Client created before the workers fork works in each of them.

    import shmc

    cache = shmc.Client()            # $SHMC_SOCKET, else the default socket
    cache.set("user:42", b"...", ttl=60)
    cache.get("user:42")             # b"..." (None when missing)
    cache.incr("hits", initial=0)    # 1, atomically across processes

The manual is docs/PYTHON.md; the Django cache backend is shmc.django,
the read-through near cache in front of Redis shmc.redis.
"""
from ._shmc import (
    KEY_MAX,
    LOAD_WAIT_MS,
    NS_MAX,
    NS_PREFIX_MAX,
    AccessDenied,
    BufferTooSmall,
    Client,
    DaemonUnavailable,
    Error,
    Item,
    Lease,
    LockTimeout,
    NotANumber,
    ValueTooLarge,
    VersionMismatch,
    libshmc_version,
)

__version__ = libshmc_version()

__all__ = [
    "KEY_MAX",
    "LOAD_WAIT_MS",
    "NS_MAX",
    "NS_PREFIX_MAX",
    "AccessDenied",
    "BufferTooSmall",
    "Client",
    "DaemonUnavailable",
    "Error",
    "Item",
    "Lease",
    "LockTimeout",
    "NotANumber",
    "ValueTooLarge",
    "VersionMismatch",
    "libshmc_version",
]
