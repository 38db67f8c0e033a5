#!/usr/bin/env python3
"""fuzz/gen_corpus.py - writes the seed corpora of fuzz/corpus/<target>/.

The seeds are committed; this script is how they were made (run it again
after a format change: python3 fuzz/gen_corpus.py).  Each seed is small
and means something: a valid input of each kind, and the near misses.
"""

import base64
import hashlib
import hmac
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

# the secret fuzz_jwt.c verifies with
JWT_SECRET = b"fuzz-secret-0123456789abcdef0123"
NOW = 1762691696


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- WebSocket frames -------------------------------------------------------

def frame(opcode, payload=b"", fin=True, mask=b"\x37\xfa\x21\x3d",
          masked=True, rsv=0, force_len=None):
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload) if force_len is None else force_len
    if n < 126 and force_len != 126 and force_len != 127:
        hdr = bytes([b0, (0x80 if masked else 0) | n])
    elif n < 65536:
        hdr = bytes([b0, (0x80 if masked else 0) | 126]) + struct.pack(">H", n)
    else:
        hdr = bytes([b0, (0x80 if masked else 0) | 127]) + struct.pack(">Q", n)
    if not masked:
        return hdr + payload
    body = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return hdr + mask + body


def msg(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


HELLO = msg({"type": "message", "content": "hello"})
CLOSE_1000 = frame(0x8, struct.pack(">H", 1000) + b"bye")


def ws_frame_seeds():
    # byte 0: limits (0 = the defaults 64 KiB)
    s = {
        "text": frame(0x1, HELLO),
        "text-empty": frame(0x1, b""),
        "binary": frame(0x2, b"\x00\x01\x02"),
        "ping": frame(0x9, b"ka"),
        "pong": frame(0xA, b""),
        "close-1000": CLOSE_1000,
        "close-empty": frame(0x8, b""),
        "close-4999-utf8": frame(0x8, struct.pack(">H", 4999)
                                 + "é€😀".encode()),
        "close-1005-bad": frame(0x8, struct.pack(">H", 1005)),
        "close-1byte": frame(0x8, b"\x03"),
        "close-bad-utf8": frame(0x8, struct.pack(">H", 1000) + b"\xc0\xaf"),
        "fragmented": frame(0x1, HELLO[:5], fin=False)
                      + frame(0x9, b"mid")
                      + frame(0x0, HELLO[5:12], fin=False)
                      + frame(0x0, HELLO[12:]),
        "fragmented-utf8-split": frame(0x1, b'{"type":"message","content":"\xe2',
                                       fin=False)
                                 + frame(0x0, b'\x82\xac"}'),
        "len16": frame(0x1, msg({"type": "message",
                                 "content": "x" * 300})),
        "len64": frame(0x2, b"\x00" * 65536),
        "len16-nonminimal": frame(0x1, b"abc", force_len=126)[:2]
                            + b"\x00\x03" + b"\x01\x02\x03\x04abc",
        "len64-nonminimal": bytes([0x82, 0xff]) + struct.pack(">Q", 200)
                            + b"\x01\x02\x03\x04" + b"\x00" * 200,
        "len64-msb": bytes([0x82, 0xff]) + struct.pack(">Q", 1 << 63)
                     + b"\x01\x02\x03\x04",
        "unmasked": frame(0x1, HELLO, masked=False),
        "rsv1": frame(0x1, HELLO, rsv=4),
        "opcode-3": frame(0x3, b""),
        "opcode-b": frame(0xB, b""),
        "ping-fragmented": frame(0x9, b"x", fin=False),
        "ping-126": frame(0x9, b"p" * 126),
        "cont-first": frame(0x0, b"x"),
        "text-in-text": frame(0x1, b"a", fin=False) + frame(0x1, b"b"),
        "not-json": frame(0x1, b"hello"),
        "json-nul-escape": frame(0x1, b'{"type":"message","content":"a\\u0000b"}'),
        "json-array": frame(0x1, b"[1,2]"),
        "bad-utf8": frame(0x1, b"\xed\xa0\x80"),
        "after-close": CLOSE_1000 + frame(0x1, HELLO),
        "two-texts": frame(0x1, HELLO) + frame(0x1, HELLO),
        "header-only": frame(0x1, HELLO)[:4],
    }
    for name, data in s.items():
        put("ws_frame", name, b"\x00" + data)
    put("ws_frame", "limits-125-big", b"\x01" + frame(0x1, b"x" * 126))
    put("ws_frame", "limits-16", b"\x05" + frame(0x1, b"x" * 10, fin=False)
        + frame(0x0, b"y" * 10))
    return s


def ws_stream_seeds(frames):
    # header: limits, send queue, 2 spare; then steps (see fuzz_ws_stream.c)
    hdr = b"\x00\x07\x00\x00"

    def data(b, chunk=0):
        out = b""
        while b:
            part, b = b[:65535], b[65535:]
            if len(part) < 256:
                out += bytes([0 | (chunk << 3), len(part)]) + part
            else:
                out += bytes([1 | (chunk << 3)]) + struct.pack("<H", len(part)) + part
        return out

    send_all, send_part, send_again, send_fail = 0x03, 0x0B, 0x13, 0x1B
    write_all = 0x02
    complete_ok, complete_nf, complete_unav = 0x05, 0x0D, 0x15
    busy_on, busy_off = 0x0E, 0x06
    eof, err, shutdown = 0x07, 0x0F, 0x17

    def tick(sec):
        return bytes([4 | (sec << 3)])

    s = {
        "message-ack": data(frames["text"]) + bytes([complete_ok]),
        "message-not-found": data(frames["text"]) + bytes([complete_nf]),
        "message-unavailable": data(frames["text"]) + bytes([complete_unav]),
        "three-messages-queued": data(frames["two-texts"] + frames["text"])
                                 + bytes([complete_ok, complete_ok, complete_ok]),
        "busy": bytes([busy_on]) + data(frames["text"]) + bytes([busy_off]),
        "ping-pong": data(frames["ping"]),
        "close-echo": data(frames["close-1000"]),
        "close-after-partial-write": bytes([send_part]) + data(frames["ping"]
                                    + frames["close-1000"]) + bytes([write_all]),
        "fragmented-chunked": data(frames["fragmented"], chunk=1),
        "split-header": data(frames["text"][:3]) + data(frames["text"][3:]),
        "protocol-error-then-close": data(frames["unmasked"])
                                    + data(frames["close-1000"]),
        "too-big": data(frames["len64"]),
        "send-stalls-queue-full": bytes([send_again])
                                  + data(frames["ping"] * 10),
        "eof-mid-frame": data(frames["text"][:5]) + bytes([eof]),
        "recv-error": bytes([err]),
        "shutdown": bytes([shutdown]) + data(frames["close-1000"]),
        "idle-timeout": tick(15) + tick(15) + tick(15),
        "ping-timer": tick(11) + data(frames["pong"]),
        "pending-then-close": data(frames["text"] + frames["close-1000"])
                              + bytes([complete_ok]),
        "pending-then-eof": data(frames["two-texts"]) + bytes([eof,
                            complete_ok, complete_ok]),
        "empty-content": data(frame(0x1, msg({"type": "message",
                                              "content": " \t"}))),
        "binary-message": data(frames["binary"]),
    }
    for name, steps in s.items():
        put("ws_stream", name, hdr + steps)
    put("ws_stream", "limits-small-content", b"\x04\x07\x00\x00"
        + data(frame(0x1, msg({"type": "message", "content": "123456789"}))))
    put("ws_stream", "limits-16-fragments", b"\x03\x01\x00\x00"
        + data(frame(0x1, b'{"type":', fin=False) + frame(0x0, b'"x"}')))


# --- handshake ----------------------------------------------------------------

def ws_handshake_seeds():
    def req(headers, origins=b""):
        # fuzz_ws_handshake.c: origins line, then header lines
        return origins + b"\n" + b"".join(h + b"\r\n" for h in headers)

    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    good = [b"Upgrade: websocket", b"Connection: Upgrade",
            b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Key: " + key]
    s = {
        "rfc-example": req(good),
        "keep-alive-upgrade": req([b"Upgrade: WebSocket",
                                   b"Connection: keep-alive, Upgrade"] + good[2:]),
        "origin-allowed": req(good + [b"Origin: https://chat.example"],
                              b"https://chat.example http://localhost:8001"),
        "origin-denied": req(good + [b"Origin: https://evil.example"],
                             b"https://chat.example"),
        "no-upgrade": req(good[1:]),
        "version-8": req(good[:2] + [b"Sec-WebSocket-Version: 8"] + good[3:]),
        "key-short": req(good[:3] + [b"Sec-WebSocket-Key: dGhlIHNhbXBsZQ=="]),
        "key-17-bytes": req(good[:3] + [b"Sec-WebSocket-Key: "
                                        + base64.b64encode(b"x" * 17)]),
        "key-no-padding": req(good[:3] + [b"Sec-WebSocket-Key: "
                                          + b"dGhlIHNhbXBsZSBub25jZQAA"]),
        "key-bad-char": req(good[:3] + [b"Sec-WebSocket-Key: "
                                        + b"dGhlIHNhbXBsZSBub25jZ!=="]),
        "connection-upgrades": req([good[0], b"Connection: upgrades"] + good[2:]),
        "many-headers": req([b"X-%d: v" % i for i in range(30)] + good),
    }
    for name, data in s.items():
        put("ws_handshake", name, data)


# --- JWT ----------------------------------------------------------------------

def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def jwt(header, payload, secret=JWT_SECRET, sig=None):
    h = b64u(header if isinstance(header, bytes) else msg(header))
    p = b64u(payload if isinstance(payload, bytes) else msg(payload))
    signing = h + b"." + p
    if sig is None:
        sig = b64u(hmac.new(secret, signing, hashlib.sha256).digest())
    return signing + b"." + sig


def jwt_seeds():
    hs = {"alg": "HS256", "typ": "JWT"}
    ok = {"sub": "alice", "exp": NOW + 3600}
    raw = {  # mode 0: the token as sent
        "valid": jwt(hs, ok),
        "valid-nbf": jwt(hs, dict(ok, nbf=NOW - 10)),
        "expired": jwt(hs, {"sub": "alice", "exp": NOW - 3600}),
        "not-yet": jwt(hs, dict(ok, nbf=NOW + 3600)),
        "alg-none": jwt({"alg": "none"}, ok, sig=b""),
        "alg-none-sig": jwt({"alg": "none"}, ok)[:-1],
        "alg-hs512": jwt({"alg": "HS512"}, ok),
        "alg-rs256": jwt({"alg": "RS256"}, ok),
        "crit": jwt({"alg": "HS256", "crit": ["exp"]}, ok),
        "wrong-secret": jwt(hs, ok, secret=b"other"),
        "padded": jwt(hs, ok) + b"=",
        "two-parts": b".".join(jwt(hs, ok).split(b".")[:2]),
        "four-parts": jwt(hs, ok) + b".x",
        "no-sub": jwt(hs, {"exp": NOW + 60}),
        "sub-number": jwt(hs, {"sub": 1, "exp": NOW + 60}),
        "sub-65": jwt(hs, {"sub": "x" * 65, "exp": NOW + 60}),
        "sub-utf8": jwt(hs, {"sub": "zoë😀", "exp": NOW + 60}),
        "exp-string": jwt(hs, {"sub": "a", "exp": "tomorrow"}),
        "exp-huge": jwt(hs, {"sub": "a", "exp": 1e300}),
        "exp-float": jwt(hs, {"sub": "a", "exp": NOW + 0.5}),
        "header-array": jwt(b"[]", ok),
        "payload-garbage": jwt(hs, b"\xff\xfe"),
        "empty": b"",
        "dots": b"..",
    }
    for name, tok in raw.items():
        put("jwt", name, b"\x00" + tok)
    # mode 1: header JSON \0 payload JSON, signed by the harness
    signed = {
        "s-valid": (msg(hs), msg(ok)),
        "s-sub-nul": (msg(hs), b'{"sub":"alice\\u0000admin","exp":%d}' % (NOW + 60)),
        "s-dup-sub": (msg(hs), b'{"sub":"a","sub":"b","exp":%d}' % (NOW + 60)),
        "s-nested": (msg(hs), b'{"sub":"a","exp":%d,"x":[[[[{}]]]]}' % (NOW + 60)),
        "s-exp-neg": (msg(hs), b'{"sub":"a","exp":-1}'),
        "s-nbf-bad": (msg(hs), b'{"sub":"a","exp":%d,"nbf":"x"}' % (NOW + 60)),
        "s-alg-case": (b'{"alg":"hs256"}', msg(ok)),
    }
    for name, (h, p) in signed.items():
        put("jwt", name, b"\x01" + h + b"\x00" + p)


# --- JSON bodies ----------------------------------------------------------------

def json_seeds():
    s = {
        "message": msg({"type": "message", "content": "hello"}),
        "group": msg({"name": "general"}),
        "content": msg({"content": "héllo 😀"}),
        "escapes": b'{"content":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00"}',
        "nul-escape": b'{"content":"a\\u0000b"}',
        "escaped-backslash-u0000": b'{"content":"a\\\\u0000b"}',
        "lone-surrogate": b'{"content":"\\ud800"}',
        "trailing": b'{"a":1} x',
        "trailing-ws": b'{"a":1} \r\n\t',
        "array": b"[1,2,3]",
        "string": b'"x"',
        "nested": b'{"a":' * 50 + b"1" + b"}" * 50,
        "deep": b"[" * 2000 + b"]" * 2000,
        "numbers": b'{"a":-0.5e+10,"b":1E400,"c":0}',
        "bad-utf8": b'{"content":"\xc3\x28"}',
        "overlong": b'{"content":"\xc0\xaf"}',
        "surrogate-utf8": b'{"content":"\xed\xa0\x80"}',
        "max-cp": b'{"content":"\xf4\x8f\xbf\xbf"}',
        "over-max-cp": b'{"content":"\xf4\x90\x80\x80"}',
        "empty": b"",
        "dup-keys": b'{"a":1,"a":2}',
        "literals": b'{"t":true,"f":false,"n":null}',
    }
    for name, data in s.items():
        put("json", name, data)


# --- correlation ids, routes ------------------------------------------------------

def correlation_seeds():
    for name, data in {
        "uuid": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "chars": "abc.DEF_123:x-y",
        "crlf": "id\r\nSet-Cookie: x",
        "quote": 'id"',
        "space": "id x",
        "64": "a" * 64,
        "65": "a" * 65,
        "empty": "",
        "utf8": "idé",
    }.items():
        put("correlation", name, data)


def route_seeds():
    oid = "0123456789abcdef01234567"
    for name, data in {
        "groups": "/api/chat/groups",
        "groups-slash": "/api/chat/groups/",
        "group": "/api/chat/groups/" + oid,
        "messages": "/api/chat/groups/%s/messages" % oid,
        "message": "/api/chat/groups/%s/messages/%s" % (oid, oid),
        "ws": "/api/chat/ws/" + oid,
        "prefix-only": "/api/chat/",
        "prefix-noslash": "/api/chat",
        "double-slash": "/api/chat/groups//",
        "empty-segment": "/api/chat/groups//messages",
        "too-deep": "/api/chat/groups/a/messages/b/c",
        "unknown": "/api/chat/users",
        "ws-deep": "/api/chat/ws/a/b",
        "other": "/health",
        "nul": "/api/chat/groups\x00/x",
    }.items():
        put("route", name, data)


# --- the metrics wire ------------------------------------------------------------

MAGIC, VERSION, REC_SIZE = 0x54414843, 5, 320


def batch(records, flags=0, pid=1234, seq=1, start=1762691000000000,
          count=None, version=VERSION, rec_size=REC_SIZE, magic=MAGIC):
    n = len(records) if count is None else count
    hdr = struct.pack("<IHHHHIQQQQQ", magic, version, rec_size, n, flags, pid,
                      start, seq, sum(1 for r in records if r[0] == 1),
                      0, 0)
    assert len(hdr) == 56
    body = b""
    for r in records:
        body += r[1]
    return hdr + body


def rec(rtype, u, ts=1762691696000000, whole=True):
    # a record is its 16-byte header and its body, rounded up to 8 bytes;
    # whole: the body padded to the largest (304), always valid
    if whole:
        u = u.ljust(304, b"\x00")
    else:
        u = u.ljust((len(u) + 7) // 8 * 8, b"\x00")
    assert len(u) <= 304
    return (rtype, struct.pack("<HHIQ", rtype, 16 + len(u), 0, ts) + u)


def s_field(s, n):
    s = s.encode() if isinstance(s, str) else s
    return s[:n].ljust(n, b"\x00")


def req_rec(method="GET", endpoint="GET /api/chat/groups", status=200,
            dur=1500, cid="cid-1", mlen=None, elen=None, clen=None,
            whole=False):
    # the three strings back to back, as the module sends them
    m, e, c = method.encode(), endpoint.encode(), cid.encode()
    u = struct.pack("<BBBBHHIIQ", len(m) if mlen is None else mlen,
                    len(e) if elen is None else elen,
                    len(c) if clen is None else clen, 0, status, 0, dur, 0,
                    512)
    u += m[:16] + e[:128] + c[:64]
    return rec(1, u, whole=whole)


def ws_rec(event=1, group="0123456789abcdef01234567", user="alice", count=1,
           glen=None, ulen=None):
    g, us = group.encode(), user.encode()
    u = struct.pack("<BBBBI", event, len(g) if glen is None else glen,
                    len(us) if ulen is None else ulen, 0, count)
    u += s_field(g, 32) + s_field(us, 64)
    return rec(2, u)


def snap_rec(group="0123456789abcdef01234567", count=3, glen=None):
    g = group.encode()
    u = struct.pack("<B3xI", len(g) if glen is None else glen, count) \
        + s_field(g, 32)
    return rec(3, u)


def custom_rec(etype="ws_slow_consumer_closed", kvs=(("group_id", "x"),),
               nkv=None):
    t = etype.encode()
    u = struct.pack("<BB2x", len(t), len(kvs) if nkv is None else nkv) \
        + s_field(t, 32)
    for i in range(4):
        k, v = kvs[i] if i < len(kvs) else ("", "")
        u += struct.pack("<BB", len(k), len(v)) + s_field(k, 24) + s_field(v, 40)
    return rec(4, u)


def cluster_rec(state=2, host="host-a", server="nats://127.0.0.1:4222",
                error="", counts=(1, 2, 3, 4, 5), hlen=None, slen=None,
                elen=None, ts=1762691696000000):
    h, s, e = host.encode(), server.encode(), error.encode()
    u = struct.pack("<BBBBI5Q", state, len(h) if hlen is None else hlen,
                    len(s) if slen is None else slen,
                    len(e) if elen is None else elen, 0, *counts)
    u += s_field(h, 64) + s_field(s, 96) + s_field(e, 64)
    assert len(u) == 272
    return rec(5, u, ts)


def wire_batches():
    return {
        "requests": batch([req_rec(), req_rec("POST", "POST /api/chat/groups",
                                              201, 2_000_000),
                           req_rec(status=503, dur=6_000_000)]),
        "bare-path": batch([req_rec("GET", "/api/chat/groups")]),
        "ws-events": batch([ws_rec(1), ws_rec(2, count=0), ws_rec(7)]),
        "snapshot": batch([snap_rec(), snap_rec("aaaaaaaaaaaaaaaaaaaaaaaa", 5)],
                          flags=1),
        "snapshot-cont": batch([snap_rec()], flags=3, seq=2),
        "custom": batch([custom_rec(), custom_rec("x", (("a", "b"),) * 4),
                         custom_rec(nkv=200)]),
        "cluster": batch([cluster_rec(), cluster_rec(3, error="refused"),
                          cluster_rec(9), cluster_rec(0, server="")]),
        "cluster-lengths-over": batch([cluster_rec(hlen=255, slen=255,
                                                   elen=255,
                                                   error="\xff\x01x")]),
        "unknown-type": batch([rec(9, b"")]),
        "empty": batch([]),
        "full": batch([req_rec()] * 1024),
        "whole-request": batch([req_rec(whole=True), req_rec()]),
        "short-request": batch([rec(1, b"", whole=False)]),
        "bad-record-size-field": batch([req_rec()])[:58] + b"\x07\x00"
                                 + batch([req_rec()])[60:],
        "lengths-over": batch([req_rec(mlen=255, elen=255, clen=255),
                               ws_rec(glen=255, ulen=255),
                               snap_rec(glen=255)]),
        "bad-utf8": batch([req_rec(endpoint="GET /\xff\xc0\xaf\x01\x7f",
                                   cid="\xe2\x82")]),
        "utf8": batch([req_rec(endpoint="GET /é😀", cid="ü")]),
        "pid-0": batch([req_rec()], pid=0),
        "seq-0": batch([req_rec()], seq=0),
        "bad-magic": batch([req_rec()], magic=0x54414844),
        "bad-version": batch([req_rec()], version=1),
        "bad-record-size": batch([req_rec()], rec_size=319),
        "count-mismatch": batch([req_rec()], count=2),
        "count-1025": batch([req_rec()] * 1025),
        "truncated": batch([req_rec()])[:-1],
        "header-only-short": batch([])[:55],
    }


def wire_seeds():
    for name, data in wire_batches().items():
        put("wire", name, data)


def collector_seeds():
    # fuzz_collector.c: a size byte, then [u16 length][clock step][batch]...
    b = wire_batches()

    def step(data, clock=0):
        return struct.pack("<HB", len(data), clock) + data

    seqs = {
        "one": step(b["requests"]),
        "all-kinds": step(b["requests"]) + step(b["ws-events"], 1)
                     + step(b["snapshot"], 2) + step(b["custom"], 3),
        "snapshot-parts": step(b["snapshot"]) + step(b["snapshot-cont"]),
        "seq-gap": step(batch([req_rec()], seq=1)) + step(batch([req_rec()], seq=5))
                   + step(batch([req_rec()], seq=3)),
        "restart": step(batch([req_rec()], seq=9)) + step(batch([req_rec()], seq=1,
                                                                start=1762691999000000)),
        "many-workers": b"".join(step(batch([ws_rec()], pid=p)) for p in range(1, 80)),
        "many-endpoints": b"".join(step(batch([req_rec(endpoint="GET /e%d" % i)
                                                for i in range(100)], seq=s + 1))
                                   for s in range(3)),
        "time-passes": step(b["requests"]) + step(b["ws-events"], 200)
                       + step(b["requests"], 255),
        "rejected": step(b["bad-magic"]) + step(b["requests"]),
        "cluster": step(b["cluster"]) + step(batch([cluster_rec(3)], seq=2), 1)
                   + step(batch([cluster_rec(2, ts=1762691695000000)], seq=3), 2)
                   + step(batch([cluster_rec(2, counts=(0,) * 5)], seq=1,
                                start=1762691999000000), 3),
        "bad-utf8": step(b["bad-utf8"]) + step(b["lengths-over"]),
    }
    for name, data in seqs.items():
        put("collector", name, b"\x00" + data)          # default sizes
        put("collector", name + "-small", b"\x01" + data)  # tiny sizes


def main():
    # fuzz/regressions/ is not written here: those are kept as found
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    frames = ws_frame_seeds()
    ws_stream_seeds(frames)
    ws_handshake_seeds()
    jwt_seeds()
    json_seeds()
    correlation_seeds()
    route_seeds()
    wire_seeds()
    collector_seeds()
    for t in sorted(os.listdir(CORPUS)):
        print("%-13s %3d seeds" % (t, len(os.listdir(os.path.join(CORPUS, t)))))


if __name__ == "__main__":
    main()
