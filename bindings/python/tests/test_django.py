"""shmc.django.ShmcCache: Django's BaseCache contract (Django as Debian
ships it, python3-django)."""
import multiprocessing
import time

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402
from django.core.cache.backends.base import InvalidCacheKey  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402

import shmc  # noqa: E402
import workers  # noqa: E402
from shmc.django import FLAG_INT, FLAG_PICKLE, ShmcCache  # noqa: E402

HANG_S = 120


@pytest.fixture(scope="module")
def caches(sock):
    """Django's caches, configured as a project would."""
    if not settings.configured:
        settings.configure(CACHES={
            "default": {
                "BACKEND": "shmc.django.ShmcCache",
                "LOCATION": sock,
                "KEY_PREFIX": "app",
            },
            "other": {
                "BACKEND": "shmc.django.ShmcCache",
                "LOCATION": sock,
                "KEY_PREFIX": "other",
                "VERSION": 3,
                "TIMEOUT": None,
                "OPTIONS": {"NAMESPACE": "dj-other:"},
            },
        })
    from django.core.cache import caches
    return caches


@pytest.fixture
def cache(caches, client):
    return caches["default"]


def make(sock, **params):
    return ShmcCache(sock, params)


def test_django_backend_is_found_by_settings(cache):
    assert isinstance(cache, ShmcCache)
    assert cache.default_timeout == 300


def test_django_get_set_and_pickled_values(cache):
    values = {"int": 42, "neg": -7, "big": 2**80, "str": "text",
              "bytes": b"\x00raw", "dict": {"a": [1, 2.5, None]},
              "bool": True, "none": None, "float": 1.5}
    for k, v in values.items():
        cache.set(k, v)
    for k, v in values.items():
        got = cache.get(k)
        assert got == v and type(got) is type(v), k
    assert cache.get("none", "dflt") is None  # a stored None is a value
    assert cache.get("missing") is None
    assert cache.get("missing", "dflt") == "dflt"


def test_django_ints_are_decimal_digits_others_pickles(cache, client):
    cache.set("n", 42)
    cache.set("s", "42")
    item = client.get_item(cache.make_key("n"))
    assert item.value == b"42" and item.flags == FLAG_INT
    assert client.get_item(cache.make_key("s")).flags == FLAG_PICKLE
    assert client.incr(cache.make_key("n"), 8) == 50  # a plain counter
    assert cache.get("n") == 50


def test_django_counters_made_by_the_client_read_as_ints(cache, client):
    client.incr(cache.make_key("c"), 5, initial=0)  # flags 0, digits
    assert cache.get("c") == 5
    client.set(cache.make_key("raw"), b"not digits")
    assert cache.get("raw") == b"not digits"


def test_django_add(cache):
    assert cache.add("k", "first") is True
    assert cache.add("k", "second") is False
    assert cache.get("k") == "first"
    assert cache.add("z", "v", timeout=0) is True  # absent, not stored
    assert cache.get("z") is None
    assert cache.add("k", "v", timeout=0) is False


def test_django_delete(cache):
    cache.set("k", 1)
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert cache.get("k") is None


def test_django_many(cache):
    cache.set_many({"a": 1, "b": "two", "c": [3]})
    assert cache.get_many(["a", "b", "c", "d"]) == {"a": 1, "b": "two",
                                                    "c": [3]}
    cache.delete_many(["a", "b"])
    assert cache.get_many(["a", "b", "c"]) == {"c": [3]}
    assert cache.set_many({"x": 1}, timeout=0) == []
    assert cache.get("x") is None


def test_django_set_many_returns_the_keys_too_large(cache):
    cache.set("huge", "old")
    failed = cache.set_many({"ok": 1, "huge": b"x" * 10**7})
    assert failed == ["huge"]
    assert cache.get("ok") == 1
    assert cache.get("huge") is None  # no stale value stays


def test_django_set_too_large_drops_the_old_value(cache):
    cache.set("k", "old")
    cache.set("k", b"x" * 10**7)
    assert cache.get("k") is None


def test_django_has_key_and_in(cache):
    cache.set("k", None)
    assert cache.has_key("k")
    assert "k" in cache
    assert not cache.has_key("missing")
    assert cache.has_key("k", version=1)
    assert not cache.has_key("k", version=2)


def test_django_incr_decr(cache):
    cache.set("n", 10)
    assert cache.incr("n") == 11
    assert cache.incr("n", 10) == 21
    assert cache.decr("n", 30) == -9  # Django's ints go negative
    assert cache.incr("n", 2**70) == 2**70 - 9
    assert cache.get("n") == 2**70 - 9
    cache.set("f", 1.5)
    assert cache.incr("f") == 2.5
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")
    with pytest.raises(ValueError, match="not found"):
        cache.decr("missing")
    cache.set("s", "text")
    with pytest.raises(TypeError):
        cache.incr("s")


def test_django_incr_keeps_the_ttl(cache, client):
    cache.set("n", 1, timeout=1000)
    cache.incr("n")
    assert 990 <= client.ttl(cache.make_key("n")) <= 1000
    cache.set("forever", 1, timeout=None)
    cache.incr("forever")
    assert client.ttl(cache.make_key("forever")) == 0


def test_django_incr_is_atomic_across_processes(cache, sock):
    cache.set("hits", 0)
    mp = make(sock, KEY_PREFIX="mp")
    mp.set("hits", 0)
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=workers.django_count,
                         args=(sock, 300, barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(HANG_S)
    assert [p.exitcode for p in procs] == [0] * 4
    assert mp.get("hits") == 1200


def test_django_touch(cache, client):
    cache.set("k", 1)
    assert cache.touch("k", 1000) is True
    assert 990 <= client.ttl(cache.make_key("k")) <= 1000
    assert cache.touch("k", None) is True
    assert client.ttl(cache.make_key("k")) == 0
    assert cache.touch("k", 0) is True  # expires at once
    assert cache.get("k") is None
    assert cache.touch("missing") is False


def test_django_timeouts(sock, client):
    c = make(sock, TIMEOUT=60)
    c.set("default", 1)
    assert 50 <= client.ttl(c.make_key("default")) <= 60
    c.set("forever", 1, timeout=None)
    assert client.ttl(c.make_key("forever")) == 0
    c.set("gone", 1)
    c.set("gone", 2, timeout=0)  # Django: 0 expires at once
    assert c.get("gone") is None
    c.set("neg", 1, timeout=-5)
    assert c.get("neg") is None
    never = make(sock, TIMEOUT=None)
    never.set("k", 1)
    assert client.ttl(never.make_key("k")) == 0
    zero = make(sock, TIMEOUT=0)
    zero.set("k", 1)
    assert zero.get("k") is None


def test_django_key_prefix_and_version_separate_keys(sock, client):
    a = make(sock, KEY_PREFIX="a")
    b = make(sock, KEY_PREFIX="b")
    v2 = make(sock, KEY_PREFIX="a", VERSION=2)
    a.set("k", "A")
    b.set("k", "B")
    v2.set("k", "A2")
    assert (a.get("k"), b.get("k"), v2.get("k")) == ("A", "B", "A2")
    assert a.get("k", version=2) == "A2"
    assert a.make_key("k") == b"a:1:k"
    assert client.get(b"a:1:k") is not None


def test_django_incr_and_decr_version(cache):
    cache.set("k", "v")
    assert cache.incr_version("k") == 2
    assert cache.get("k") is None
    assert cache.get("k", version=2) == "v"
    assert cache.decr_version("k", version=2) == 1
    assert cache.get("k") == "v"
    with pytest.raises(ValueError):
        cache.incr_version("missing")


def test_django_get_or_set(cache):
    assert cache.get_or_set("k", "first") == "first"
    assert cache.get_or_set("k", "second") == "first"
    calls = []

    def compute():
        calls.append(1)
        return 7

    assert cache.get_or_set("c", compute) == 7
    assert cache.get_or_set("c", compute) == 7
    assert calls == [1]
    assert cache.get_or_set("t", "v", timeout=0) == "v"
    assert cache.get("t") is None


def test_django_clear_with_a_namespace_clears_only_its_keys(caches, client):
    mine = caches["other"]
    default = caches["default"]
    mine.set("k", 1)
    default.set("k", 2)
    client.set("outside", b"3")
    assert mine.make_key("k") == b"dj-other:other:3:k"
    mine.clear()
    assert mine.get("k") is None
    assert default.get("k") == 2
    assert client.get("outside") == b"3"
    mine.set("k", 4)  # after the flush: lives
    assert mine.get("k") == 4
    assert b"dj-other:" in client.namespaces()


def test_django_clear_without_a_namespace_clears_all(cache, client):
    cache.set("k", 1)
    client.set("outside", b"3")
    cache.clear()
    assert cache.get("k") is None
    assert client.get("outside") is None


def test_django_keys_of_any_characters_but_not_too_long(cache):
    cache.set("spaces and\ncontrol \x01 and ünïcode", 1)
    assert cache.get("spaces and\ncontrol \x01 and ünïcode") == 1
    with pytest.raises(InvalidCacheKey, match="8191"):
        cache.set("k" * 9000, 1)
    with pytest.raises(InvalidCacheKey):
        cache.get("k" * 9000)


def test_django_bad_configuration_is_refused(sock):
    with pytest.raises(ImproperlyConfigured, match="unknown OPTIONS"):
        make(sock, OPTIONS={"NAMSPACE": "x"})
    with pytest.raises(ImproperlyConfigured, match="NAMESPACE"):
        make(sock, OPTIONS={"NAMESPACE": "x" * 53})
    with pytest.raises(ImproperlyConfigured, match="one socket"):
        ShmcCache([sock], {})


def test_django_missing_daemon_raises_on_use():
    c = ShmcCache("/nonexistent/shmc.sock", {})
    with pytest.raises(shmc.DaemonUnavailable):
        c.get("k")


def test_django_close_keeps_the_cache_usable(cache):
    cache.set("k", 1)
    cache.close()
    assert cache.get("k") == 1


def test_django_values_expire(sock):
    c = make(sock, TIMEOUT=1)
    c.set("k", 1)
    deadline = time.monotonic() + 30
    while c.get("k") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert c.get("k") is None


def test_django_keys_under_a_blocked_near_cache_prefix_are_not_stored(
        caches):
    # A daemon whose Redis never answers keeps its tracked prefix blocked:
    # writes there are "not stored", as a value too large is, not errors.
    from conftest import own_daemon
    from redisproc import free_ports
    port, = free_ports(1)
    with own_daemon(["--redis", "127.0.0.1:%d" % port,
                     "--redis-prefix", "nc:"]) as d:
        c = make(d.sock, KEY_PREFIX="nc")  # keys "nc:1:<key>"
        plain = make(d.sock, KEY_PREFIX="other")
        try:
            c.set("k", 1)
            assert c.get("k") is None
            assert c.add("k", 1) is False
            assert c.set_many({"a": 1, "b": 2}) == ["a", "b"]
            plain.set("k", 1)
            assert plain.get("k") == 1
        finally:
            c.close()
            plain.close()
