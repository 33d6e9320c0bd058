"""The ClientHello, however it is split, routes the same and reaches the
backend byte for byte; what is not a usable ClientHello is closed, counted
under the right reason and never reaches a backend.

A capture backend records every byte of each connection and sends REPLY as
soon as it accepts one; hubgate routes SNI hub.test to it.
"""

import errno
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwlib  # noqa: E402
import hglib  # noqa: E402

SNI = "hub.test"
REPLY = b"\x16\x03\x03\x00\x10" + b"backend-reply-0123"[:16]
# Bytes a client sends after its hello (they come in the same write or
# segment train): an application-data record.
TRAILER = b"\x17\x03\x03\x00\x0c" + b"after-hello!"


def gateway(extra=""):
    backend = hglib.CaptureServer(reply=REPLY, name="capture")
    gw = hglib.start_sni_gateway(backend.addr, SNI,
                                 extra="log:\n  level: info\n" + extra)
    return gw, backend, gw.listen_addrs[0]


def check_forwarded(gw, backend, addr, pieces, delay=0.0, what=""):
    """Sends pieces (separate writes), then checks the backend got exactly
    their bytes, the reply came back, and the access line counts them."""
    sent = b"".join(pieces)
    before = backend.count()
    c = gwlib.Client(addr)
    for i, p in enumerate(pieces):
        if i and delay:
            time.sleep(delay)
        c.send(p)
    conn = backend.wait_connections(before + 1)[before]
    backend.wait_bytes(conn, len(sent))
    got = c.recv_exactly(len(REPLY))
    assert got == REPLY, f"{what}: client got {got!r}"
    c.close()
    assert conn.closed.wait(hglib.scale(5)), f"{what}: backend side open"
    if conn.data != sent:
        diff = next((i for i, (x, y) in enumerate(zip(conn.data, sent))
                     if x != y), min(len(conn.data), len(sent)))
        raise AssertionError(f"{what}: backend got {len(conn.data)} bytes, "
                             f"sent {len(sent)}; first difference at {diff}")
    assert backend.count() == before + 1, f"{what}: extra connections"
    line = gwlib.wait_access(gw, client=f"127.0.0.1:{c.local[1]}", sni=SNI,
                             route="hub")
    assert line["bytes_up"] == str(len(sent)), (what, line)
    assert line["bytes_down"] == str(len(REPLY)), (what, line)
    assert line["term"] in ("--", "CD"), line
    return conn


def test_routes_every_split():
    gw, backend, addr = gateway()

    # 1. The hello a byte at a time: TCP_NODELAY and a 2 ms pause between
    # writes make each byte its own segment (about 300 writes, < 1 s).
    msg = gwlib.build_hello(SNI)
    wire = gwlib.records(msg) + TRAILER
    assert len(wire) < 400
    check_forwarded(gw, backend, addr, [wire[i:i + 1] for i in
                                        range(len(wire))], delay=0.002,
                    what="1-byte segments")

    # 2. A 1.9 KB post-quantum-size hello written as 1400 bytes + the rest.
    msg = gwlib.build_hello(SNI, key_share=1800)
    assert 1850 < len(msg) < 2100, len(msg)
    wire = gwlib.records(msg)
    check_forwarded(gw, backend, addr, [wire[:1400], wire[1400:] + TRAILER],
                    delay=0.05, what="1400 + rest")

    # 3. Two TLS records, cut inside the server_name extension: in its
    # type field, in its list length, in the middle of the host name.
    msg = gwlib.build_hello(SNI, key_share=1200)
    (_, ext_start, body, end), = [e for e in gwlib.extensions(msg)
                                  if e[0] == "sni"]
    name_start, name_end = gwlib.sni_span(msg)
    assert msg[name_start:name_end] == SNI.encode()
    for cut in (ext_start + 1, body + 1, name_start + 3, name_end - 1):
        wire = gwlib.reframe(msg, [cut])
        assert wire.count(b"\x16\x03\x01") >= 2
        check_forwarded(gw, backend, addr, [wire + TRAILER],
                        what=f"two records cut at {cut}")
        # The same, with each record in its own segment.
        first = 5 + cut
        check_forwarded(gw, backend, addr, [wire[:first], wire[first:],
                                            TRAILER], delay=0.02,
                        what=f"two records cut at {cut}, two writes")

    # 4. A 6.5 KB hello with a padding extension (one record).
    msg = gwlib.build_hello(SNI, key_share=1216, pad_to=6500)
    assert len(msg) == 6500
    assert any(e[0] == "padding" for e in gwlib.extensions(msg))
    check_forwarded(gw, backend, addr, [gwlib.records(msg) + TRAILER],
                    what="6.5 KB padded")

    # 5. The SNI ends past byte 4097 of the stream (beyond the first 4 KiB
    # hubgate reads): padding first, server_name last. One write, then
    # the same in 1000-byte writes.
    order = [n for n in gwlib.DEFAULT_ORDER if n not in ("sni", "padding")]
    msg = gwlib.build_hello(SNI, order=order + ["padding", "sni"],
                            pad_to=4400)
    wire = gwlib.records(msg)
    name_end = 5 + gwlib.sni_span(msg)[1]
    assert name_end > 4097, name_end
    check_forwarded(gw, backend, addr, [wire + TRAILER],
                    what="SNI past 4097, one write")
    check_forwarded(gw, backend, addr,
                    hglib.chunks(wire + TRAILER, 1000), delay=0.02,
                    what="SNI past 4097, 1000-byte writes")

    m = gw.metrics()
    n = backend.count()
    assert m.value("hubgate_connections_total", listener="tls",
                   route="hub") == n, m.select("hubgate_connections_total")
    for reason, v in gwlib.refused_all(gw, "tls").items():
        assert v == 0, f"refused {reason} = {v}"
    gw.stop()


def test_openssl_s_client_hello():
    hglib.need_tool("openssl")
    # The backend answers with a TLS alert (handshake_failure): s_client
    # then gives up and closes.
    alert = b"\x15\x03\x03\x00\x02\x02\x28"
    backend = hglib.CaptureServer(reply_after=(5, alert), name="capture")
    gw = hglib.start_sni_gateway(backend.addr, SNI)
    rec = gwlib.Recorder(gw.listen_addrs[0])
    r = subprocess.run(["openssl", "s_client", "-connect", rec.addr,
                        "-servername", SNI, "-tls1_3"],
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=hglib.scale(20))
    assert rec.done.wait(hglib.scale(10)), "relay still open"
    conn = backend.wait_connections(1)[0]
    assert conn.closed.wait(hglib.scale(5))
    assert rec.up[:1] == b"\x16" and len(rec.up) > 100, rec.up[:20]
    hs_len = int.from_bytes(rec.up[3:5], "big")
    msg = rec.up[5:5 + hs_len]
    s, e = gwlib.sni_span(msg)
    assert msg[s:e] == SNI.encode()
    assert conn.data == rec.up, (len(conn.data), len(rec.up))
    assert rec.down == alert, (rec.down, r.stdout[-300:], r.stderr[-300:])
    assert backend.count() == 1
    gw.stop()


def refuse_case(gw, backend, addr, reason, data, what, wait=3.0,
                stall=False):
    """Sends data (tolerating a reset), expects the connection closed with
    nothing sent back, only `reason` counted (+1), the backend untouched.
    Returns the seconds from the last write to the close."""
    before = gwlib.refused_all(gw, "tls")
    c = gwlib.Client(addr)
    c.try_send(data)
    t_sent = time.monotonic()
    closed, got, _ = c.wait_closed(hglib.scale(wait))
    elapsed = time.monotonic() - t_sent
    c.close()
    assert closed, f"{what}: still open after {elapsed:.1f} s"
    assert got == b"", f"{what}: client got {got[:40]!r}"
    gwlib.wait_refused(gw, "tls", reason, before.get(reason, 0) + 1)
    after = gwlib.refused_all(gw, "tls")
    changed = {k: after[k] - before.get(k, 0) for k in after
               if after[k] != before.get(k, 0)}
    assert changed == {reason: 1}, f"{what}: refused changed by {changed}"
    assert backend.count() == 0, f"{what}: reached the backend"
    hglib.log(f"{what}: refused {reason} after {elapsed:.3f} s")
    return elapsed


def test_refusals():
    gw, backend, addr = gateway("timeouts:\n  hello: 1s\n")

    refuse_case(gw, backend, addr, "not_tls",
                b"GET / HTTP/1.1\r\nHost: hub.test\r\n\r\n", "HTTP")
    # An SSLv2-format (compatible) ClientHello: 2-byte header with the top
    # bit set, msg type 1, version 3.1, cipher specs, challenge.
    v2_body = (b"\x01\x03\x01" + (9).to_bytes(2, "big") + b"\x00\x00" +
               (16).to_bytes(2, "big") + b"\x00\x00\x2f\x00\x00\x35" +
               b"\x00\x00\x0a" + os.urandom(16))
    v2 = bytes([0x80 | (len(v2_body) >> 8), len(v2_body) & 0xFF]) + v2_body
    refuse_case(gw, backend, addr, "not_tls", v2, "SSLv2 hello")

    refuse_case(gw, backend, addr, "bad_hello", b"\x16\x03\x01\x00\x00",
                "record length 0")
    hello = gwlib.build_hello(SNI)
    refuse_case(gw, backend, addr, "bad_hello",
                b"\x16\x03\x01\x40\x01" + hello, "record length 16385")
    server_hello = b"\x02" + hello[1:]
    refuse_case(gw, backend, addr, "bad_hello", gwlib.records(server_hello),
                "handshake type 2")

    # A 70 KB hello (handshake length 70000: a real hello's body, then
    # filler, since an extensions block cannot exceed 64 KiB) over 5
    # records: refused once the length is read. First only the 9 bytes that
    # carry the claim: closed at once, long before the 1 s hello timeout.
    body = gwlib.build_hello(SNI, key_share=1216)[4:]
    big = b"\x01" + (70000).to_bytes(3, "big") + body + \
        b"\x00" * (70000 - len(body))
    assert int.from_bytes(big[1:4], "big") == 70000
    wire = gwlib.records(big)
    assert wire.count(b"\x16\x03\x01") >= 5 and len(wire) == 70004 + 25
    t = refuse_case(gw, backend, addr, "hello_too_big", wire[:9],
                    "70 KB claim, 9 bytes sent")
    # (Not scaled: it must stay clearly below the 1 s hello timeout.)
    assert t < 0.8, f"too-big claim closed only after {t:.2f} s"
    refuse_case(gw, backend, addr, "hello_too_big", wire,
                "70 KB hello, all sent")

    # A record header claiming 16 KiB, then nothing: closed by the 1 s
    # hello timeout. hubgate's clock has 1 ms steps (0.99 s allowed); the
    # upper bound is far below the 10 s default.
    t = refuse_case(gw, backend, addr, "hello_timeout",
                    b"\x16\x03\x01\x40\x00", "stalled record", wait=8.0)
    assert 0.99 <= t < hglib.scale(4.0), f"closed after {t:.2f} s"

    refuse_case(gw, backend, addr, "unknown_sni",
                gwlib.wire_hello("other.test"), "unknown SNI")
    refuse_case(gw, backend, addr, "no_sni", gwlib.wire_hello(None),
                "no SNI")
    assert backend.count() == 0
    gw.stop()


def test_silent_client_closed_within_the_hello_timeout():
    # A client that connects and sends nothing stays the kernel's until it
    # is accepted anyway (a deferred accept, about a second), then has
    # timeouts.hello from the gateway: closed and counted well before twice
    # the timeout.
    gw, backend, addr = gateway("timeouts:\n  hello: 3s\n")
    t0 = time.monotonic()
    c = hglib.RawClient(addr)
    assert c.closed_by_peer(wait=hglib.scale(10)), "never closed"
    t = time.monotonic() - t0
    assert 3.0 <= t < 4.0 + hglib.scale(0.8), f"closed after {t:.2f} s"
    gwlib.wait_refused(gw, "tls", "hello_timeout", 1)
    assert backend.count() == 0
    gw.stop()


def test_refusal_detail_reads_back_as_one_field():
    # A client that resets in the middle of its hello: the refused line's
    # detail is the system's text, spaces and all, quoted so that the line
    # still reads as key=value fields.
    gw, backend, addr = gateway()
    c = hglib.RawClient(addr)
    c.send_chunks([gwlib.wire_hello(SNI)[:20]])
    time.sleep(hglib.scale(0.3))
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                      struct.pack("ii", 1, 0))
    c.close()
    gwlib.wait_refused(gw, "tls", "client_gone", 1)
    lines = gw.log_lines(r" refused .*reason=client_gone")
    assert len(lines) == 1, lines
    fields = gwlib.log_fields(lines[0])
    assert fields["detail"] == os.strerror(errno.ECONNRESET), lines
    assert fields["suppressed"] == "0", lines
    gw.stop()


if __name__ == "__main__":
    hglib.main(globals())
