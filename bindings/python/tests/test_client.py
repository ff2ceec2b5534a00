"""shmc.Client's calls, one behaviour a test, against a real daemon."""
import array
import pickle
import time

import pytest

import shmc


def test_client_set_then_get_returns_the_bytes(client):
    client.set("k", b"value")
    assert client.get("k") == b"value"
    assert client.get(b"k") == b"value"  # a str key is its UTF-8 bytes


def test_client_keys_are_str_or_bytes_like(client):
    client.set("clé", b"1")
    assert client.get("clé".encode()) == b"1"
    client.set(bytearray(b"ba"), b"2")
    assert client.get(memoryview(b"ba")) == b"2"
    client.set(b"\x00\xff", b"3")
    assert client.get(b"\x00\xff") == b"3"


def test_client_values_are_any_bytes_like(client):
    client.set("ba", bytearray(b"abc"))
    client.set("mv", memoryview(b"xabcx")[1:4])
    client.set("arr", array.array("i", [1, 2]))
    assert client.get("ba") == b"abc"
    assert client.get("mv") == b"abc"
    assert client.get("arr") == array.array("i", [1, 2]).tobytes()
    client.set("empty", b"")
    assert client.get("empty") == b""


def test_client_get_of_a_missing_key_gives_the_default(client):
    assert client.get("nope") is None
    assert client.get("nope", b"d") == b"d"
    assert client.get("nope", default=0) == 0


def test_client_large_values_round_trip(client):
    for n in (4095, 4096, 4097, 70000, client.max_item - 10):
        v = bytes(range(256)) * (n // 256) + b"x" * (n % 256)
        client.set("big", v)
        assert client.get("big") == v


def test_client_value_too_large_raises_with_the_limit(client):
    with pytest.raises(shmc.ValueTooLarge) as e:
        client.set("k", b"x" * client.max_item)
    assert str(client.max_item) in str(e.value)
    assert isinstance(e.value, ValueError)
    assert e.value.code < 0


def test_client_bad_keys_and_values_are_refused(client):
    with pytest.raises(ValueError, match="1 to 8191"):
        client.get("")
    with pytest.raises(ValueError, match="8192 bytes"):
        client.set("k" * 8192, b"v")
    with pytest.raises(TypeError, match="str or bytes-like"):
        client.get(42)
    with pytest.raises(TypeError, match="encode it"):
        client.set("k", "a str value")
    with pytest.raises(TypeError):
        client.set("k", 42)


def test_client_bad_numbers_are_refused(client):
    with pytest.raises(ValueError, match="ttl must be"):
        client.set("k", b"v", ttl=-1)
    with pytest.raises(ValueError, match="flags must be"):
        client.set("k", b"v", flags=2**32)
    with pytest.raises(TypeError):
        client.set("k", b"v", ttl=1.5)
    with pytest.raises(TypeError, match="unexpected keyword"):
        client.set("k", b"v", tll=1)
    with pytest.raises(TypeError, match="missing required"):
        client.set("k")


def test_client_ttl_reports_the_time_left(client):
    client.set("forever", b"v")
    client.set("short", b"v", ttl=100)
    assert client.ttl("forever") == 0
    assert 98 <= client.ttl("short") <= 100
    assert client.ttl("missing") is None


def test_client_entries_expire(client):
    client.set("k", b"v", ttl=1)
    deadline = time.monotonic() + 30
    while client.get("k") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.get("k") is None


def test_client_get_item_returns_flags_cas_and_expiry(client):
    client.set("k", b"v", ttl=100, flags=0xDEADBEEF)
    item = client.get_item("k")
    assert item.value == b"v"
    assert item.flags == 0xDEADBEEF
    assert item.cas > 0
    assert abs(item.expire_at - (time.time() + 100)) < 5
    assert tuple(item) == (b"v", 0xDEADBEEF, item.cas, item.expire_at)
    assert client.get_item("missing") is None


def test_client_add_stores_only_a_missing_key(client):
    assert client.add("k", b"1") is True
    assert client.add("k", b"2") is False
    assert client.get("k") == b"1"


def test_client_replace_stores_only_a_present_key(client):
    assert client.replace("k", b"1") is False
    assert client.get("k") is None
    client.set("k", b"1")
    assert client.replace("k", b"2", ttl=50, flags=7) is True
    assert client.get_item("k").flags == 7
    assert client.ttl("k") > 0


def test_client_cas_stores_only_an_unchanged_item(client):
    client.set("k", b"1")
    value, cas = client.gets("k")
    assert value == b"1"
    assert client.cas("k", b"2", cas) is True
    assert client.cas("k", b"3", cas) is False  # written since
    assert client.get("k") == b"2"
    client.delete("k")
    assert client.cas("k", b"4", cas) is False  # gone
    assert client.gets("k") is None


def test_client_append_and_prepend(client):
    assert client.append("k", b"x") is False
    client.set("k", b"mid", flags=3)
    assert client.append("k", b">") is True
    assert client.prepend("k", b"<") is True
    item = client.get_item("k")
    assert item.value == b"<mid>"
    assert item.flags == 3


def test_client_delete_says_whether_the_key_was_there(client):
    client.set("k", b"v")
    assert client.delete("k") is True
    assert client.delete("k") is False
    assert client.get("k") is None


def test_client_touch_sets_a_new_ttl(client):
    client.set("k", b"v")
    assert client.touch("k", 500) is True
    assert 490 <= client.ttl("k") <= 500
    assert client.touch("k", 0) is True
    assert client.ttl("k") == 0
    assert client.touch("missing", 5) is False


def test_client_incr_and_decr_count(client):
    client.set("n", b"10")
    assert client.incr("n") == 11
    assert client.incr("n", 5) == 16
    assert client.decr("n", 6) == 10
    assert client.decr("n", 100) == 0  # stops at 0
    client.set("n", str(2**64 - 1).encode())
    assert client.incr("n") == 0  # wraps at 2**64
    assert client.get("n") == b"0"


def test_client_incr_of_a_missing_key(client):
    with pytest.raises(KeyError):
        client.incr("n")
    with pytest.raises(KeyError):
        client.decr("n")
    assert client.incr("n", 1, initial=0) == 1
    assert client.incr("n", 1, initial=0) == 2
    assert client.decr("m", 2, initial=5, ttl=100) == 3
    assert client.ttl("m") > 0


def test_client_incr_of_a_non_number_raises(client):
    client.set("k", b"abc")
    with pytest.raises(shmc.NotANumber):
        client.incr("k")
    assert client.get("k") == b"abc"
    with pytest.raises(ValueError, match="delta must be"):
        client.incr("k", -1)


def test_client_get_many_leaves_missing_keys_out(client):
    client.set("a", b"1")
    client.set(b"b", b"2", flags=9)
    assert client.get_many(["a", b"b", "c"]) == {"a": b"1", b"b": b"2"}
    got = client.get_many(iter(["a", b"b"]), with_flags=True)
    assert got == {"a": (b"1", 0), b"b": (b"2", 9)}
    assert client.get_many([]) == {}
    with pytest.raises(TypeError, match="iterable of keys"):
        client.get_many("a")


def test_client_get_many_of_many_and_large_values(client):
    keys = ["k%d" % i for i in range(300)]
    for i, k in enumerate(keys):
        client.set(k, k.encode() * (i * 7 % 200))
    client.set("big", b"B" * 100000)
    got = client.get_many(keys + ["big", "k1", "missing"])
    assert len(got) == 301
    assert got["big"] == b"B" * 100000
    for i, k in enumerate(keys):
        assert got[k] == k.encode() * (i * 7 % 200)


def test_client_set_many_and_delete_many(client):
    assert client.set_many({"a": b"1", "b": b"2"}, ttl=60, flags=4) == []
    assert client.get_item("a").flags == 4
    assert client.set_many([("c", b"3")]) == []
    failed = client.set_many({"d": b"4", "huge": b"x" * client.max_item})
    assert failed == ["huge"]
    assert client.get("d") == b"4"
    assert client.delete_many(["a", "b", "c", "nope"]) == 3
    assert client.get_many(["a", "b", "c", "d"]) == {"d": b"4"}


def test_client_get_into_fills_a_buffer(client):
    client.set("k", b"hello")
    buf = bytearray(16)
    assert client.get_into("k", buf) == 5
    assert buf[:5] == b"hello"
    assert client.get_into("missing", buf) is None
    big = bytes(range(256)) * 400
    client.set("big", big)
    out = bytearray(len(big))
    assert client.get_into("big", memoryview(out)) == len(big)
    assert out == big
    with pytest.raises(shmc.BufferTooSmall) as e:
        client.get_into("big", buf)
    assert e.value.size == len(big)
    with pytest.raises(TypeError, match="writable"):
        client.get_into("k", b"read-only")


def test_client_get_or_load_loads_on_a_miss_only(client):
    calls = []

    def loader():
        calls.append(1)
        return b"loaded"

    assert client.get_or_load("k", loader, ttl=100) == b"loaded"
    assert client.get_or_load("k", loader) == b"loaded"
    assert len(calls) == 1
    assert client.get("k") == b"loaded"
    assert 0 < client.ttl("k") <= 100


def test_client_get_or_load_takes_the_loaders_ttl(client):
    assert client.get_or_load("k", lambda: (bytearray(b"v"), 200)) == b"v"
    assert 190 <= client.ttl("k") <= 200


def test_client_get_or_load_propagates_the_loaders_error(client):
    def failing():
        raise LookupError("backend down")

    with pytest.raises(LookupError, match="backend down"):
        client.get_or_load("k", failing)
    assert client.get("k") is None
    assert client.get_or_load("k", lambda: b"second") == b"second"
    with pytest.raises(TypeError, match="bytes or"):
        client.get_or_load("j", lambda: 42)
    with pytest.raises(TypeError, match="callable"):
        client.get_or_load("j", b"not a function")
    with pytest.raises(shmc.ValueTooLarge):
        client.get_or_load("j", lambda: b"x" * client.max_item)
    assert client.get("j") is None


def test_client_get_or_load_serves_stale_during_the_grace(client):
    client.get_or_load("k", lambda: (b"old", 1), grace=60)
    deadline = time.monotonic() + 30
    while client.get("k") is not None and time.monotonic() < deadline:
        time.sleep(0.1)  # past its TTL: only get_or_load serves it now
    inner = []

    def refresh():
        # Another caller during the refresh is served the stale value
        # at once (without grace it would wait for this very load).
        inner.append(client.get_or_load("k", lambda: b"unused", grace=60))
        return (b"new", 100)

    assert client.get_or_load("k", refresh, grace=60) == b"new"
    assert inner == [b"old"]
    assert client.get("k") == b"new"


def test_client_clear_removes_everything(client):
    client.set_many({"a": b"1", "b": b"2"})
    client.clear()
    assert client.get_many(["a", "b"]) == {}


def test_client_stats_count_the_calls(client):
    before = client.stats()
    client.set("a", b"1")
    client.get("a")
    client.get("missing")
    after = client.stats()
    assert set(before) == {
        "hits", "misses", "sets", "overwrites", "deletes", "evictions",
        "moves", "expirations", "repairs", "entries", "bytes_used",
        "bytes_total", "segments"}
    assert after["sets"] == before["sets"] + 1
    assert after["hits"] >= before["hits"] + 1
    assert after["misses"] >= before["misses"] + 1
    assert after["segments"] == client.segments > 0


def test_client_namespaces_flush_their_keys(client):
    prefix = "ns%d:" % time.monotonic_ns()
    assert client.add_namespace(prefix) is True
    assert client.add_namespace(prefix.encode()) is False
    assert prefix.encode() in client.namespaces()
    client.set(prefix + "a", b"1")
    client.set("other", b"2")
    client.flush_namespace(prefix)
    assert client.get(prefix + "a") is None
    assert client.get("other") == b"2"
    client.set(prefix + "b", b"3")  # written after the flush: lives
    assert client.get(prefix + "b") == b"3"
    client.delete_namespace(prefix)
    assert client.get(prefix + "b") is None
    assert prefix.encode() not in client.namespaces()
    with pytest.raises(KeyError, match="add_namespace"):
        client.flush_namespace(prefix)
    with pytest.raises(KeyError):
        client.delete_namespace(prefix)
    with pytest.raises(ValueError, match="1 to 52"):
        client.add_namespace("x" * 53)


def test_client_ping_and_attributes(client, sock):
    client.ping()
    assert client.max_item > 1000
    assert client.client_id > 0
    assert client.socket == sock
    assert not client.closed
    assert sock in repr(client)
    assert shmc.__version__ == shmc.libshmc_version()
    assert shmc.__version__.count(".") == 2


def test_client_close_and_context_manager(sock):
    with shmc.Client(sock) as c:
        c.set("k", b"v")
    assert c.closed
    assert "closed" in repr(c)
    with pytest.raises(shmc.Error, match="closed"):
        c.get("k")
    c.close()  # again: nothing


def test_client_pickles_as_its_socket(client, sock):
    client.set("k", b"v")
    copy = pickle.loads(pickle.dumps(client))
    assert copy is not client
    assert copy.socket == sock
    assert copy.get("k") == b"v"
    copy.close()


def test_client_subclasses_and_weakrefs(sock):
    import weakref

    class Mine(shmc.Client):
        pass

    c = Mine(sock)
    r = weakref.ref(c)
    assert r() is c
    c.close()
