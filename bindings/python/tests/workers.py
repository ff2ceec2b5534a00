"""Functions the multi-process tests run in other processes (a module of
its own, so that the spawn start method imports it without pytest)."""
import os
import time

import shmc

# A Client made at import, as a preloading server (gunicorn --preload)
# makes it: set by the tests before they fork.
PRELOADED = None


def read_value(sock, key):
    with shmc.Client(sock) as c:
        return c.get(key)


def set_value(sock, key, value):
    with shmc.Client(sock) as c:
        c.set(key, value)


def use_preloaded(key):
    """In a forked child: the parent's Client, with no call to reopen."""
    c = PRELOADED
    seen = c.get(key)
    c.set(key + ":child", b"from pid %d" % os.getpid())
    return seen, c.client_id, c.incr(key + ":n", 1, initial=0)


def load_once(sock, key, barrier, hold_s, i):
    """get_or_load() of key; the loader counts its runs in the cache, and
    the value got is stored as key:got:i."""
    c = shmc.Client(sock)

    def loader():
        c.incr(key + ":runs", 1, initial=0)
        time.sleep(hold_s)  # the others must find the load in progress
        return b"loaded by %d" % os.getpid()

    barrier.wait()
    c.set("%s:got:%d" % (key, i), c.get_or_load(key, loader))


def count(sock, key, n, barrier):
    c = shmc.Client(sock)
    barrier.wait()
    for _ in range(n):
        c.incr(key, 1, initial=0)


def django_count(sock, n, barrier):
    from django.conf import settings

    if not settings.configured:
        settings.configure()
    from shmc.django import ShmcCache

    cache = ShmcCache(sock, {"KEY_PREFIX": "mp"})
    barrier.wait()
    for _ in range(n):
        cache.incr("hits")
