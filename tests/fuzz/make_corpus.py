#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (docs/FUZZING.md):

    corpus/proto/*     frame streams for fuzz-proto: requests, replies and
                       error frames of every type, broken headers, short
                       bodies, several frames back to back
    corpus/request/*   inputs for fuzz-request: one control byte (how the
                       stream is cut into receives, slow reading, clock
                       ticks; see fuzz_request.c), then what a peer sends
    corpus/mc/*        inputs for fuzz-mc: one control byte (the cuts,
                       back-pressure, clock ticks; see fuzz_mc.c), then
                       memcached text and meta requests (memcached's
                       doc/protocol.txt)
    corpus/resp/*      inputs for fuzz-resp: one control byte (the cuts;
                       see fuzz_resp.c), then what Redis sends the near
                       cache: HELLO's map, CLIENT TRACKING's +OK,
                       CLUSTER SLOTS, invalidation pushes, errors

Frames follow docs/PROTOCOL.md, written here independently of the C codec
(the constants and encoders are those of tests/integration/shmcproto.py,
the tests' own Python client, which is independent of it too).
Run from anywhere: python3 tests/fuzz/make_corpus.py.  It rewrites its own
files and leaves the others (inputs found by the fuzzer, crash-* regression
inputs) alone.  Standard library only.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from shmcproto import ERROR, REPLY, T, VERSION, bstr, u32, u64  # noqa: E402

MAX_PAYLOAD = 8 << 20
COUNTERS = ["hits", "misses", "sets", "overwrites", "deletes", "evictions",
            "moves", "expirations", "repairs", "entries", "bytes_used",
            "bytes_total"]

# fuzz_request.c's control byte
WHOLE, ONE, THREE, ELEVEN, TWELVE, THIRTEEN, HUNDRED, CYCLE = range(8)
SLOW, TICK, TIGHT, OTHER_USER = 8, 16, 32, 64
# Keys that share segment 0 of 4 (XXH3 of the key; found with eng_seg_of).
# Were the hash to change, the seeds using them would still be valid, only
# spread over more segments.
SEG0_KEYS = ["r0", "r4", "r9", "r18", "r19", "r22", "r30", "r34"]


def u8(v):
    return struct.pack("<B", v)


def i32(v):
    return struct.pack("<i", v)


# Request ids.  fuzz-proto also reads every payload with a program of
# reader calls spelled by the id, 3 bits per call (see decode_program);
# these ids never spell the u64 reader (3), whose short reads are the
# subject of regress-u64-short-read alone.
_ids = (i for i in range(1, 1 << 30) if "3" not in f"{i:o}")


def frame(type_, body=b"", id_=None, version=VERSION, flags=0, length=None):
    """One frame; `length` overrides the header's len (for lies)."""
    id_ = next(_ids) if id_ is None else id_
    n = len(body) if length is None else length
    return struct.pack("<IHBBI", n, type_, version, flags, id_) + body


def req(name, body=b"", **kw):
    return frame(T[name], body, **kw)


def hello(prev=0, version=VERSION):
    return req("HELLO", u32(version) + u32(4321) + u32(prev))


def set_(key, val, ttl=0):
    return req("SET", bstr(key) + bstr(val) + u32(ttl))


def key_req(name, key):
    return req(name, bstr(key))


def touch(key, ttl):
    return req("TOUCH", bstr(key) + u32(ttl))


# One well-formed request of every type, in a sensible order.
ALL_TYPES = b"".join([
    hello(), req("PING"), req("STATS", u8(0)), req("STATS", u8(1)),
    set_("alpha", "one", 60), key_req("GET", "alpha"),
    key_req("TTL", "alpha"), touch("alpha", 0), key_req("TTL", "alpha"),
    set_("beta", "two"), key_req("DEL", "beta"), key_req("GET", "beta"),
    req("CHECK", u8(0)), req("CHECK", u8(1)), req("CLIENTS"),
    key_req("SAVE", "/tmp/x.snap"), key_req("LOAD", "/tmp/x.snap"),
    req("FLUSH"), key_req("GET", "alpha"), req("SHUTDOWN"), req("PING"),
])

REQUEST = {
    "empty": b"",
    "control-byte-only": u8(WHOLE),
    # each type, well-formed
    "hello": u8(WHOLE) + hello(),
    "hello-reattach": u8(WHOLE) + hello(prev=7) + req("CLIENTS"),
    "hello-twice": u8(WHOLE) + hello() + hello(prev=3),
    "ping": u8(WHOLE) + req("PING"),
    "stats-0": u8(WHOLE) + req("STATS", u8(0)),
    "stats-1": u8(WHOLE) + req("STATS", u8(1)),
    "set-get": u8(WHOLE) + set_("k", "v", 60) + key_req("GET", "k"),
    "get-miss": u8(WHOLE) + key_req("GET", "nothing"),
    "get-empty-key": u8(WHOLE) + key_req("GET", ""),
    "set-overwrite": u8(WHOLE) + set_("k", "short") + set_("k", "x" * 300)
    + set_("k", "y") + key_req("GET", "k"),
    "set-large-value": u8(WHOLE) + set_("big", bytes(range(256)) * 80)
    + key_req("GET", "big") + req("PING"),
    "del": u8(WHOLE) + set_("k", "v") + key_req("DEL", "k")
    + key_req("GET", "k") + key_req("DEL", "k"),
    "ttl": u8(WHOLE) + set_("k", "v", 100) + key_req("TTL", "k")
    + set_("n", "v") + key_req("TTL", "n") + key_req("TTL", "missing"),
    "touch": u8(WHOLE) + set_("k", "v") + touch("k", 30)
    + key_req("TTL", "k") + touch("missing", 5),
    "expire-with-ticks": u8(ONE | TICK) + set_("k", "v", 2) + req("PING")
    + key_req("TTL", "k") + req("PING") + key_req("GET", "k")
    + touch("k", 5),
    "flush": u8(WHOLE) + set_("a", "1") + set_("b", "2") + req("FLUSH")
    + key_req("GET", "a"),
    "check-0": u8(WHOLE) + req("CHECK", u8(0)),
    "check-1": u8(WHOLE) + req("CHECK", u8(1)),
    "clients": u8(WHOLE) + hello() + req("CLIENTS"),
    "save": u8(WHOLE) + key_req("SAVE", "/tmp/shmc.snap"),
    "load": u8(WHOLE) + key_req("LOAD", "/tmp/shmc.snap"),
    "shutdown": u8(WHOLE) + req("SHUTDOWN") + req("PING"),
    "bye": u8(WHOLE) + hello() + req("BYE") + req("PING"),
    "shutdown-other-user": u8(WHOLE | OTHER_USER) + hello() + req("SHUTDOWN")
    + key_req("SAVE", "/tmp/shmc.snap") + req("CLIENTS"),
    "save-counts": u8(WHOLE) + set_("a", "1") + set_("b", "2", 5)
    + key_req("SAVE", "/fuzz/a.snap") + key_req("DEL", "a")
    + key_req("SAVE", "/fuzz/b.snap"),
    "save-relative-path": u8(WHOLE) + key_req("SAVE", "relative.snap")
    + key_req("LOAD", "") + key_req("SAVE", "/nul\0inside"),
    "hello-reattach-taken": u8(WHOLE) + hello(prev=50) + req("CLIENTS"),
    # bodies that do not parse
    "ping-trailing-byte": u8(WHOLE) + req("PING", b"\0"),
    "stats-no-body": u8(WHOLE) + req("STATS"),
    "get-key-truncated": u8(WHOLE) + req("GET", u32(100) + b"abc"),
    "set-no-ttl": u8(WHOLE) + req("SET", bstr("k") + bstr("v")),
    "touch-short-ttl": u8(WHOLE) + req("TOUCH", bstr("k") + b"\1\0"),
    "hello-bad-version": u8(WHOLE) + hello(version=9),
    "hello-short": u8(WHOLE) + req("HELLO", u32(VERSION)),
    # framing
    "half-header": u8(WHOLE) + req("PING")[:5],
    "half-body": u8(WHOLE) + set_("key", "value")[:20],
    "oversized-len": u8(WHOLE) + frame(T["PING"], length=MAX_PAYLOAD + 1),
    "large-len-announced": u8(WHOLE) + frame(T["SET"], b"\0" * 64,
                                             length=1 << 20),
    "bad-version": u8(WHOLE) + req("PING", version=2),
    "bad-flags": u8(WHOLE) + req("PING", flags=1),
    "frames-then-bad-header": u8(WHOLE) + req("PING") + req("PING")
    + req("PING", version=0) + req("PING"),
    "unknown-type-0": u8(WHOLE) + frame(0),
    "unknown-type-4095": u8(WHOLE) + frame(4095, b"abc"),
    "bye-with-body": u8(WHOLE) + hello() + frame(T["BYE"], b"abc"),
    "unknown-type-reply": u8(WHOLE) + frame(T["PING"] | REPLY),
    "unknown-type-error": u8(WHOLE) + frame(ERROR, i32(-5) + bstr("x")),
    "two-frames": u8(WHOLE) + set_("k", "v") + key_req("GET", "k"),
    # every type, cut into receives in different ways
    "all-types": u8(WHOLE) + ALL_TYPES,
    "all-types-1-byte": u8(ONE) + ALL_TYPES,
    "all-types-11-bytes": u8(ELEVEN) + ALL_TYPES,
    "all-types-13-bytes": u8(THIRTEEN) + ALL_TYPES,
    "all-types-cycle": u8(CYCLE) + ALL_TYPES,
    "all-types-slow-reader": u8(HUNDRED | SLOW) + ALL_TYPES,
    "all-types-ticks": u8(TWELVE | TICK) + ALL_TYPES,
    "all-types-tight": u8(WHOLE | TIGHT) + ALL_TYPES,
    # the tight region: 14 entries and about 14 KiB of values per segment
    "tight-pool-full": u8(WHOLE | TIGHT)
    + b"".join(set_(f"p{i}", "v") for i in range(80))
    + b"".join(key_req("GET", f"p{i}") for i in range(0, 80, 7))
    + req("STATS", u8(1)) + req("CHECK", u8(0)),
    "tight-ring-full": u8(WHOLE | TIGHT)
    + b"".join(set_(k, k.encode() * 1100) for k in SEG0_KEYS[:5])
    + b"".join(key_req("GET", k) for k in SEG0_KEYS[:5])
    + req("CHECK", u8(1)),
    "tight-overwrite-grow": u8(WHOLE | TIGHT)
    + b"".join(set_("r0", "x" * n, n % 7) for n in (10, 100, 1000, 3000, 50))
    + key_req("GET", "r0") + key_req("TTL", "r0"),
    "tight-expiry-sweep": u8(HUNDRED | TICK | TIGHT)
    + b"".join(set_(f"e{i}", "v" * 40, 1 + i % 3) for i in range(30))
    + b"".join(req("PING") for _ in range(40))
    + b"".join(key_req("GET", f"e{i}") for i in range(30)),
    # Pipelined GETs whose replies pass CONN_OUT_HIGH (1 MiB) within one
    # receive: the daemon pauses input with complete requests buffered and
    # (bug) never comes back to them.  A regression input until fixed.
    "regress-pipelined-stall": u8(WHOLE) + set_("k", b"v" * 2000)
    + b"".join(key_req("GET", "k") for _ in range(600)),
}

# Replies and errors, for the reply decoders of fuzz-proto.
STATS_REPLY = (u32(len(COUNTERS)) + b"".join(bstr(c) for c in COUNTERS)
               + u32(1) + b"".join(u64(i * 1000) for i in range(12)))
PROTO = {
    "empty": b"",
    "short-header": req("PING")[:7],
    "hello": hello(prev=2),
    "hello-reply": frame(T["HELLO"] | REPLY,
                         u32(2) + u32(0x1140c30) + u64(1 << 20)),
    "stats": req("STATS", u8(1)),
    "stats-reply": frame(T["STATS"] | REPLY, STATS_REPLY),
    "get": key_req("GET", "key"),
    "get-reply": frame(T["GET"] | REPLY, u32(1700000060) + bstr("value")),
    "set": set_("key", "value", 60),
    "del-ttl-touch": key_req("DEL", "k") + key_req("TTL", "k")
    + touch("k", 9),
    "ttl-reply": frame(T["TTL"] | REPLY, u32(59)),
    "check-reply": frame(T["CHECK"] | REPLY, u32(4) + u32(1) + u32(1) + u32(1)
                         + u32(2) + u32(3) + bstr("index record 5 free")),
    "clients-reply": frame(T["CLIENTS"] | REPLY, u32(2)
                           + u32(2) + u32(100) + u32(1000) + u32(1000)
                           + u64(1700000000)
                           + u32(3) + u32(101) + u32(0) + u32(0) + u64(5)),
    "save-load": key_req("SAVE", "/tmp/s") + key_req("LOAD", "/tmp/s"),
    "save-reply": frame(T["SAVE"] | REPLY, u64(12345)),
    "empty-replies": b"".join(frame(T[n] | REPLY) for n in
                              ("PING", "SET", "DEL", "TOUCH", "FLUSH",
                               "SHUTDOWN")),
    "error": frame(ERROR, i32(-2) + bstr("not found")),
    "error-nul-in-message": frame(ERROR, i32(-22) + bstr(b"a\0b")),
    "all-types": ALL_TYPES,
    "get-key-truncated": req("GET", u32(100) + b"abc"),
    "str-too-long": frame(T["STATS"] | REPLY, u32(1) + bstr("n" * 100)),
    # Found by fuzz-proto in its first seconds: a u64 read with 4 to 7 bytes
    # left yields the low word instead of 0 (proto.h promises zeros).
    "regress-u64-short-read": bytes.fromhex("40000100000001000300 00e901002400"
                                          .replace(" ", "")),
    "trailing-bytes": req("PING", b"xyz") + req("CHECK", u8(1) + b"\0"),
    "oversized-len": frame(T["PING"], length=MAX_PAYLOAD + 1) + req("PING"),
    "bad-version": req("PING", version=2) + req("PING"),
    "bad-flags": req("PING", flags=0x80) + req("PING"),
    "len-past-end": frame(T["SET"], bstr("k"), length=200),
    "unknown-type": frame(0x1234, b"\1\2\3\4\5\6\7\x08"),
    # ids spell reader programs (3 bits per call; see decode_program)
    "program-all-readers": frame(0x7000, u8(1) + u32(2) + i32(-3) + u64(4)
                                 + bstr("five") + bstr("") + bstr("six")
                                 + bstr("seven") + u8(9) + u8(10),
                                 id_=0o76543210),
    "program-bytes": frame(0x7001, bstr("ab") * 8, id_=0o4444444444),
    "two-frames": set_("k", "v") + key_req("GET", "k"),
}


# Namespaces (NS_ADD, NS_FLUSH, NS_DEL, NS_LIST).  Defined after the others
# so that their request ids, and so their files, stay as they were.
NS_REQUEST = {
    "ns-add-flush": u8(WHOLE) + key_req("NS_ADD", "user:1:")
    + set_("user:1:a", "1") + set_("user:2:b", "2") + req("NS_LIST")
    + key_req("NS_FLUSH", "user:1:") + key_req("GET", "user:1:a")
    + key_req("GET", "user:2:b") + set_("user:1:c", "3")
    + key_req("GET", "user:1:c") + req("NS_LIST"),
    "ns-overlap": u8(WHOLE) + key_req("NS_ADD", "u:") + key_req("NS_ADD", "u:1:")
    + set_("u:1:x", "x") + set_("u:9", "y") + key_req("NS_FLUSH", "u:1:")
    + key_req("GET", "u:1:x") + key_req("GET", "u:9")
    + key_req("NS_FLUSH", "u:") + key_req("GET", "u:9") + req("NS_LIST"),
    "ns-readd": u8(WHOLE) + set_("p:old", "o") + key_req("NS_ADD", "p:")
    + key_req("NS_FLUSH", "p:") + key_req("NS_DEL", "p:")
    + set_("p:new", "n") + key_req("NS_ADD", "p:")
    + key_req("GET", "p:new") + key_req("GET", "p:old") + req("NS_LIST"),
    "ns-errors": u8(WHOLE) + key_req("NS_ADD", "")
    + key_req("NS_ADD", "x" * 53) + key_req("NS_ADD", "x" * 52)
    + key_req("NS_ADD", "x" * 52) + key_req("NS_FLUSH", "nope")
    + key_req("NS_DEL", "nope") + key_req("NS_FLUSH", "")
    + req("NS_LIST", b"\0") + req("NS_ADD", u32(9) + b"ab")
    + req("NS_DEL") + key_req("NS_ADD", b"\0\xff") + req("NS_LIST"),
    "ns-tight": u8(WHOLE | TIGHT) + key_req("NS_ADD", "t")
    + b"".join(set_(f"t{i}", "v" * 200) for i in range(40))
    + key_req("NS_FLUSH", "t")
    + b"".join(set_(f"t{i}", "w") for i in range(0, 40, 3))
    + b"".join(key_req("GET", f"t{i}") for i in range(40))
    + req("CHECK", u8(0)) + req("STATS", u8(1)),
    "ns-fill": u8(WHOLE) + b"".join(key_req("NS_ADD", f"n{i}:")
                                    for i in range(130)) + req("NS_LIST"),
    "ns-churn": u8(WHOLE) + b"".join(key_req("NS_ADD", f"c{i}")
                                     + key_req("NS_DEL", f"c{i}")
                                     for i in range(260))
    + key_req("NS_ADD", "c1") + req("NS_LIST"),
}

NS_PROTO = {
    "ns-requests": key_req("NS_ADD", "user:42:")
    + key_req("NS_FLUSH", b"\xff\0") + key_req("NS_DEL", "x")
    + req("NS_LIST"),
    "ns-list-reply": frame(T["NS_LIST"] | REPLY, u32(2) + bstr("user:")
                           + u32(3) + u32(6) + bstr(b"\xff") + u32(0)
                           + u32(200)),
}


# fuzz_mc.c's control byte: the seed of the cuts (0: one receive), then
# back-pressure and the ticking clock.
MC_WHOLE, MC_TIGHT, MC_TICK = 0, 64, 128


def mc(ctl, *lines):
    """One fuzz-mc input: the control byte, then the requests as given
    (str or bytes; a str is encoded as latin-1)."""
    return u8(ctl) + b"".join(x if isinstance(x, bytes) else
                              x.encode("latin-1") for x in lines)


def mc_set(cmd, key, val, flags=0, exptime=0, extra=""):
    val = val if isinstance(val, bytes) else val.encode()
    return (f"{cmd} {key} {flags} {exptime} {len(val)}{extra}\r\n"
            .encode() + val + b"\r\n")


MC = {
    "text-storage": mc(MC_WHOLE, mc_set("set", "k", "v", 5),
                       mc_set("add", "k", "w"), mc_set("replace", "k", "x"),
                       mc_set("append", "k", "y"), mc_set("prepend", "k", "z"),
                       mc_set("set", "n", "10"), "get k n\r\n",
                       "gets k\r\n"),
    "text-cas": mc(MC_WHOLE, mc_set("set", "c", "1"), "gets c\r\n",
                   mc_set("cas", "c", "2", extra=" 1"),
                   mc_set("cas", "c", "2", extra=" 99999999999999999999"),
                   mc_set("cas", "nope", "2", extra=" 1")),
    "text-arith": mc(MC_WHOLE, mc_set("set", "n", "18446744073709551615"),
                     "incr n 1\r\n", "decr n 5\r\n", "incr n x\r\n",
                     "incr nope 1\r\n", mc_set("set", "s", "abc"),
                     "decr s 1\r\n"),
    "text-delete-touch": mc(MC_TICK, mc_set("set", "d", "1", exptime=3),
                            "touch d 10\r\n", "gat 5 d nope\r\n",
                            "gats 0 d\r\n", "delete d 0\r\n",
                            "delete d\r\n", "delete d 5\r\n",
                            "touch d -1\r\n"),
    "text-noreply": mc(MC_WHOLE, mc_set("set", "q", "1", extra=" noreply"),
                       "incr q 1 noreply\r\n", "delete q noreply\r\n",
                       "flush_all 0 noreply\r\n",
                       "verbosity 1 noreply\r\n", "get q\r\n"),
    "text-flush": mc(MC_TICK, mc_set("set", "f", "1"), "flush_all 2\r\n",
                     "get f\r\n", "get f\r\n", "get f\r\n",
                     "flush_all\r\n", "flush_all x\r\n"),
    "text-stats": mc(MC_TIGHT, "stats\r\n", "stats settings\r\n",
                     "stats reset\r\n", "stats slabs\r\n",
                     "stats items\r\n", "stats sizes\r\n",
                     "stats detail on\r\n", "stats nope\r\n",
                     "version\r\n", "verbosity 2\r\n"),
    "text-errors": mc(MC_WHOLE, "get\r\n", "set k 0 0\r\n",
                      "set k 0 0 -1\r\n", "set k x 0 1\r\nx\r\n",
                      "set k 0 0 3\r\nabcd\r\n", "bogus\r\n", "\r\n",
                      "get " + "k" * 251 + "\r\n", b"get a\x01b\r\n",
                      "set k 0 0 4294967295\r\n", "quit\r\n",
                      "get k\r\n"),
    # Over the 1 MiB region's largest item: the block is swallowed, in
    # pieces (the input ends before the block does).
    "text-too-large": mc(7, "set big 0 0 300000\r\n", b"B" * 1000),
    "text-split": mc(1, mc_set("set", "s", "0123456789" * 20),
                     "get s s s\r\n", "gets s\r\n"),
    "text-many-keys": mc(MC_TIGHT | 3, mc_set("set", "m7", "x" * 3000),
                         "get " + " ".join(f"m{i}" for i in range(300))
                         + "\r\n"),
    "text-bare-newlines": mc(MC_WHOLE, "set b 0 0 1\nx\r\nget b\n"),
    "meta-get-set": mc(MC_WHOLE, "ms mk 2 T0 F5\r\nhi\r\n",
                       "mg mk v f t c k s\r\n", "mg nope v\r\n",
                       "mg mk q\r\n", "mn\r\n"),
    "meta-delete-arith": mc(MC_WHOLE, "ms ma 1\r\n5\r\n", "ma ma\r\n",
                            "ma ma MD D2 v\r\n", "ma nope N0 J7 v\r\n",
                            "md ma q\r\n", "md ma\r\n", "mn\r\n"),
    "meta-base64-opaque": mc(MC_WHOLE, "ms Zm9v 1 b Oab\r\nx\r\n",
                             "mg Zm9v b v Oxy k\r\n", "me Zm9v b\r\n",
                             "mg !!! b v\r\n"),
    "meta-lease": mc(MC_TICK, "mg lk v N30 t\r\n", "mg lk v N30 t\r\n",
                     "ms lk 1 T60\r\nL\r\n", "mg lk v c\r\n",
                     "ms lk 1 I\r\nM\r\n", "mg lk v R30\r\n"),
    "meta-modes": mc(MC_WHOLE, "ms mm 1 ME\r\na\r\n",
                     "ms mm 1 MA\r\nb\r\n", "ms mm 1 MP\r\nc\r\n",
                     "ms mm 1 MR\r\nd\r\n", "ms mm 1 MS C1\r\ne\r\n",
                     "ms mm 1 MZ\r\nf\r\n", "ms mm x\r\n",
                     "mg mm v\r\n"),
    "mixed": mc(5, mc_set("set", "x", "1"), "mg x v\r\n",
                "ms y 1\r\n2\r\n", "get x y\r\n", "md x q\r\n",
                "delete y\r\n", "mn\r\n", "get x y\r\n"),
    # A miss with N vivifies: the first asker wins (W), the next is told
    # another is loading (Z); the store ends the lease.
    "meta-vivify": mc(MC_WHOLE, "mg vk v N30 c t s\r\n",
                      "mg vk v N30 t\r\n", "mg vk k q N30\r\n",
                      "ms vk 1 T60\r\nv\r\n", "mg vk v c t\r\n",
                      "mg vk2 N0 v\r\n", "mn\r\n"),
    # The session ends with its leases, cut and slowly read.
    "meta-vivify-cut": mc(MC_TIGHT | 11, "mg a N5 v\r\n", "mg b N5 v\r\n",
                          "mg c N300 v\r\n", "mg a N5 v\r\n",
                          "md b\r\n", "mg b N5 v\r\n"),
    # md I makes the item stale: the next mg wins it (X W), the one after
    # is told another reloads (X Z), a store ends the lease; ms I of an
    # older version leaves it stale.
    "meta-stale": mc(MC_WHOLE, "ms sk 3 T0\r\nold\r\n", "md sk I T30\r\n",
                     "mg sk v c t\r\n", "mg sk v c\r\n",
                     "ms sk 3 I C1\r\nnew\r\n", "mg sk v\r\n",
                     "ms sk 3\r\nnew\r\n", "mg sk v c\r\n",
                     "md sk I\r\n", "md sk q\r\n", "mg sk v\r\n",
                     "md nope I\r\n", "mn\r\n"),
    "meta-stale-tick": mc(MC_TICK | 9, "ms st 2 T3\r\nab\r\n",
                          "md st I T2\r\n", "mg st v t\r\n",
                          "mg st v t\r\n", "mg st v t\r\n",
                          "mg st v t N1\r\n", "mg st v\r\n" * 6),
    # R: a hit with fewer seconds left than R's wins a reload.
    "meta-recache": mc(MC_TICK | 4, "ms rk 1 T100\r\nr\r\n",
                       "mg rk v R200 t\r\n", "mg rk v R200 t\r\n",
                       "ms rk 1 T100\r\nR\r\n", "mg rk v R10 t\r\n",
                       "mg rk v R0\r\n", "mg rk v Rx\r\n",
                       "mg rk v N1 R5\r\n"),
    # Leases of one second run out while the clock ticks.
    "meta-lease-expire": mc(MC_TICK | 2, "mg ex v N1\r\n",
                            "mn\r\n" * 40, "mg ex v N1\r\n",
                            "mg ex2 v N2\r\n", "mn\r\n" * 40,
                            "mg ex2 v N2\r\n"),
    "meta-arith-modes": mc(MC_WHOLE, "ma an N0 J13 v t c\r\n",
                           "ma an MI D5 v\r\n", "ma an M+ D5 v\r\n",
                           "ma an MD D100 v\r\n", "ma an M- v\r\n",
                           "ma an MX\r\n", "ma an D-1\r\n",
                           "ma an C1 v\r\n", "ma an q\r\n",
                           "ma nokey q\r\n", "ma nokey\r\n",
                           "ma an2 N30 T10 J18446744073709551615 v\r\n",
                           "ma an2 v\r\n", "ms an3 1\r\nx\r\n",
                           "ma an3 v\r\n", "ma an MD N0 J0 D1 v\r\n",
                           "mn\r\n"),
    "meta-set-modes": mc(MC_WHOLE, "ms sm 1 MA\r\na\r\n",
                         "ms sm 1 MA N30\r\na\r\n",
                         "ms sm 1 MP N30 c\r\nb\r\n",
                         "ms sm 1 C999 c\r\nc\r\n",
                         "ms sm 1 I C1\r\nd\r\n", "mg sm v c\r\n",
                         "ms sm 1 MS I\r\ne\r\n", "ms sm 1 MR\r\nf\r\n",
                         "ms sm2 1 MR\r\nf\r\n", "ms sm2 1 ME\r\ng\r\n",
                         "ms sm2 1 ME\r\ng\r\n", "ms sm S1 T1\r\n",
                         "ms sm 1 F4294967296\r\nh\r\n",
                         "ms sm 1 T-1\r\ni\r\n", "mg sm v\r\n",
                         "ms sm 0 k s q\r\n\r\n", "mn\r\n"),
    "meta-base64": mc(MC_WHOLE, "ms Zm9vYmFy 3 b\r\nabc\r\n",
                      "mg Zm9vYmFy b v k\r\n", "ma YQ== b N0 v k\r\n",
                      "md Zm9vYmFy b q\r\n", "mg Zm9vYmFy b v\r\n",
                      "mg YQ b v\r\n", "mg Y=Q= b v\r\n",
                      "me YQ== b\r\n",
                      "mg " + "QUFB" * 84 + " b v\r\n", "mn\r\n"),
    # q hides the replies that say nothing (EN, HD, NF) until mn.
    "meta-quiet": mc(MC_TIGHT, "mg q1 v q\r\n", "ms q1 1 q\r\nx\r\n",
                     "mg q1 v q k\r\n", "md q2 q\r\n", "md q1 q\r\n",
                     "ma q3 q\r\n", "ms q4 1 q C7\r\ny\r\n", "mn\r\n",
                     "mn\r\n"),
    "meta-opaque": mc(MC_WHOLE, "mg o1 v O" + "x" * 31 + "\r\n",
                      "mg o1 v O" + "x" * 32 + "\r\n",
                      "mg o1 Oabc k q\r\n", "ms o1 1 Oxyz k\r\nv\r\n",
                      "mg o1 Oq v k\r\n", "md o1 O1 k\r\n",
                      "ma o1 O2\r\n", "mn\r\n"),
    "meta-debug": mc(MC_WHOLE, "ms de 2 T100\r\nhi\r\n", "me de\r\n",
                     "me nope\r\n", "me\r\n", "me de extra\r\n",
                     "md de I\r\n", "me de\r\n"),
    "meta-errors": mc(MC_WHOLE, "mg\r\n", "mg k v v\r\n", "mg k ?\r\n",
                      "ms k\r\n", "ms k -1\r\n", "ms k 5\r\nab\r\n",
                      "mg " + "k" * 251 + " v\r\n", "mg k T-1 v\r\n",
                      "mg k N v\r\n", "mg k " + " ".join("v" * 20) + "\r\n",
                      "mg k vv\r\n", "md\r\n", "ma\r\n", "mx k\r\n",
                      "ms k 2 b\r\nab\r\n", "mg k v\r\n"),
    "binary-magic": mc(MC_WHOLE, b"\x80\x00\x00\x05get k\r\n"),
    "empty": mc(MC_WHOLE),
}


def resp_bulk(s):
    if isinstance(s, str):
        s = s.encode()
    return b"$%d\r\n%s\r\n" % (len(s), s)


def resp_push_inval(keys):
    """RESP3's invalidation push: keys None is the flush form."""
    body = b"_\r\n" if keys is None else b"*%d\r\n" % len(keys) + b"".join(
        resp_bulk(k) for k in keys)
    return b">2\r\n" + resp_bulk("invalidate") + body


def resp_slots(ranges):
    """CLUSTER SLOTS: [(start, end, port)] on 127.0.0.1."""
    out = b"*%d\r\n" % len(ranges)
    for start, end, port in ranges:
        out += (b"*3\r\n:%d\r\n:%d\r\n*4\r\n" % (start, end)
                + resp_bulk("127.0.0.1") + b":%d\r\n" % port
                + resp_bulk("0" * 40) + b"%0\r\n")
    return out


RESP_HELLO = (b"%7\r\n" + resp_bulk("server") + resp_bulk("redis")
              + resp_bulk("version") + resp_bulk("7.0.15")
              + resp_bulk("proto") + b":3\r\n" + resp_bulk("id")
              + b":5\r\n" + resp_bulk("mode") + resp_bulk("standalone")
              + resp_bulk("role") + resp_bulk("master")
              + resp_bulk("modules") + b"*0\r\n")

RESP = {
    "handshake": b"\0" + RESP_HELLO
    + b"-ERR This instance has cluster support disabled\r\n+OK\r\n"
    + b"+PONG\r\n",
    "handshake-cut": b"\x07" + RESP_HELLO + b"+OK\r\n",
    "invalidate": b"\x03" + resp_push_inval(["user:1", "user:2"])
    + resp_push_inval(None) + resp_push_inval([]),
    "cluster-slots": b"\x11" + resp_slots([(0, 5460, 7000),
                                           (5461, 10922, 7001),
                                           (10923, 16383, 7002)]),
    "every-type": b"\0*13\r\n+OK\r\n-ERR no\r\n:-42\r\n$0\r\n\r\n#t\r\n"
    b",1.5\r\n(12345678901234567890123\r\n!3\r\nbad\r\n"
    b"=7\r\ntxt:abc\r\n%1\r\n+k\r\n:1\r\n~1\r\n_\r\n$-1\r\n*-1\r\n",
    "attribute": b"\x05|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n"
    b"*2\r\n:2039123\r\n:9543892\r\n",
    "errors": b"\0-WRONGPASS invalid username-password pair\r\n"
    b"!21\r\nSYNTAX invalid syntax\r\n",
    "bad-length": b"\0$99999999999\r\n",
    "deep": b"\0" + b"*1\r\n" * 20 + b":1\r\n",
}


def write(dirname, files):
    d = os.path.join(HERE, "corpus", dirname)
    os.makedirs(d, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    return sum(len(v) for v in files.values())


def main():
    n = write("proto", {**PROTO, **NS_PROTO}) + write(
        "request", {**REQUEST, **NS_REQUEST}) + write("mc", MC) + write(
        "resp", RESP)
    print(f"wrote {len(PROTO) + len(NS_PROTO)} proto, "
          f"{len(REQUEST) + len(NS_REQUEST)} request, {len(MC)} mc and "
          f"{len(RESP)} resp inputs, {n} bytes")


if __name__ == "__main__":
    main()
