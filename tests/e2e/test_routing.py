"""Routing end to end: SNI rules of DESIGN.md, default_route, reload with a
tunnel held open, backend port taken from the listener, half-close from
either side, a refused backend connect, and /readyz with SIGTERM.

Every capture backend sends its own name as soon as it accepts a
connection, so the client knows where it landed; the backend's record of
bytes shows that what arrived is exactly what the client sent.
"""

import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwlib  # noqa: E402
import hglib  # noqa: E402

TRAILER = b"\x17\x03\x03\x00\x04ping"


def probe(gw, addr, sni, backends, listener="tls"):
    """Connects with a hello for sni (None: no SNI) plus TRAILER. Returns
    the name of the backend it landed on (checking that backend got
    exactly the bytes sent and no other backend got a connection), or
    None when the gateway closed it without a byte back."""
    counts = {n: b.count() for n, b in backends.items()}
    data = gwlib.wire_hello(sni) + TRAILER
    c = gwlib.Client(addr)
    c.send(data)
    # Read the backend's name, or the gateway's close.
    got = c.recv_reply(lambda b: b">" in b)
    if got == b"":
        c.close()
        for n, b in backends.items():
            assert b.count() == counts[n], f"{sni}: {n} got a connection"
        return None
    m = re.match(rb"<([\w-]+)>", got)
    assert m, f"{sni}: unexpected reply {got!r}"
    name = m.group(1).decode()
    b = backends[name]
    conn = b.wait_connections(counts[name] + 1)[counts[name]]
    b.wait_bytes(conn, len(data))
    c.close()
    assert conn.closed.wait(hglib.scale(5))
    assert conn.data == data, f"{sni}: {name} got other bytes"
    for n, other in backends.items():
        want = counts[n] + (1 if n == name else 0)
        assert other.count() == want, f"{sni}: {n} has {other.count()}"
    return name


def test_sni_rules():
    names = ["hub", "other", "wild", "exact", "deep"]
    bk = {n: gwlib.named_backend(n) for n in names}
    port = hglib.free_port()
    gw = hglib.start_hubgate(f"""
listeners:
  - name: tls
    bind: ["127.0.0.1:{port}"]
routes:
  - name: hub
    sni: ["hub.test"]
    backend: "{bk['hub'].addr}"
  - name: other
    sni: ["other.test"]
    backend: "{bk['other'].addr}"
  - name: wild
    sni: ["*.example.test"]
    backend: "{bk['wild'].addr}"
  - name: exact
    sni: ["exact.example.test"]
    backend: "{bk['exact'].addr}"
  - name: deep
    sni: ["*.x.example.test"]
    backend: "{bk['deep'].addr}"
""")
    addr = gw.listen_addrs[0]
    cases = [
        ("hub.test", "hub"),            # two routes, one listener
        ("other.test", "other"),
        ("HUB.Test", "hub"),            # case
        ("hub.test.", "hub"),           # one trailing dot
        ("Other.TEST.", "other"),
        ("a.example.test", "wild"),     # wildcard, one level
        ("a.b.example.test", "wild"),   # wildcard, any depth
        ("A.Example.Test.", "wild"),
        ("example.test", None),         # not the wildcard's own name
        ("exact.example.test", "exact"),  # exact beats wildcard
        ("EXACT.example.test.", "exact"),
        ("a.exact.example.test", "wild"),  # exact is not a wildcard
        ("a.x.example.test", "deep"),   # longest wildcard wins
        ("b.a.x.example.test", "deep"),
        ("x.example.test", "wild"),     # *.x... does not match x... itself
        ("nothere.test", None),
        ("hub.tes", None),
        ("ahub.test", None),
    ]
    refused = 0
    for sni, want in cases:
        got = probe(gw, addr, sni, bk)
        assert got == want, f"SNI {sni!r}: landed on {got}, want {want}"
        if want is None:
            refused += 1
            gwlib.wait_refused(gw, "tls", "unknown_sni", refused)
    assert probe(gw, addr, None, bk) is None
    gwlib.wait_refused(gw, "tls", "no_sni", 1)
    # Names with an empty label or a label that begins or ends with '-'
    # are no host names: refused as a bad hello, whatever routes exist.
    for n, sni in enumerate(["hub.test..", "a..example.test",
                             "-a-.example.test"], 1):
        assert probe(gw, addr, sni, bk) is None, sni
        gwlib.wait_refused(gw, "tls", "bad_hello", n)
    m = gw.metrics()
    for route in names:
        n = sum(1 for _, w in cases if w == route)
        assert m.value("hubgate_connections_total", listener="tls",
                       route=route) == n, (route, n)
    gw.stop()


def test_default_route():
    bk = {n: gwlib.named_backend(n) for n in ("hub", "fallback")}
    port = hglib.free_port()
    gw = hglib.start_hubgate(f"""
listeners:
  - name: tls
    bind: ["127.0.0.1:{port}"]
routes:
  - name: hub
    sni: ["hub.test"]
    backend: "{bk['hub'].addr}"
  - name: fallback
    sni: ["fallback.test"]
    backend: "{bk['fallback'].addr}"
default_route: fallback
""")
    addr = gw.listen_addrs[0]
    assert probe(gw, addr, "hub.test", bk) == "hub"
    assert probe(gw, addr, "unknown.test", bk) == "fallback"
    assert probe(gw, addr, None, bk) == "fallback"
    assert probe(gw, addr, "fallback.test", bk) == "fallback"
    for reason, v in gwlib.refused_all(gw, "tls").items():
        assert v == 0, (reason, v)
    lines = gwlib.access_lines(gw, route="fallback", sni="-")
    assert len(lines) == 1, lines
    gw.stop()


ROUTES_A = """
  - name: a
    sni: ["a.test"]
    backend: "{a}"
"""
ROUTES_B = """
  - name: b
    sni: ["b.test"]
    backend: "{b}"
"""


def test_reload_keeps_tunnel():
    a = hglib.CaptureServer(echo=True, name="a")
    b = gwlib.named_backend("b")
    port = hglib.free_port()
    head = f"""
listeners:
  - name: tls
    bind: ["127.0.0.1:{port}"]
routes:"""
    gw = hglib.start_hubgate(head + ROUTES_A.format(a=a.addr))
    addr = gw.listen_addrs[0]
    bk = {"b": b}

    # A tunnel to route a, kept open and exchanging bytes throughout.
    hello = gwlib.wire_hello("a.test")
    t = gwlib.Client(addr)
    t.send(hello)
    assert t.recv_exactly(len(hello)) == hello
    seq = [0]

    def ping():
        seq[0] += 1
        msg = f"ping-{seq[0]:04d}".encode() * 50
        t.send(msg)
        assert t.recv_exactly(len(msg)) == msg, f"tunnel ping {seq[0]}"
    ping()
    assert probe(gw, addr, "b.test", bk) is None   # no route b yet

    # Reload with route b added.
    since = len(gw.stderr())
    gwlib.reload(gw, head + ROUTES_A.format(a=a.addr) +
                 ROUTES_B.format(b=b.addr), wait_log=r"reloaded ")
    assert "warn" not in gw.stderr()[since:], gw.stderr()[since:]
    ping()
    assert probe(gw, addr, "b.test", bk) == "b"
    ping()
    m = gw.metrics()
    assert m.value("hubgate_config_reloads_total", result="ok") == 1
    assert m.value("hubgate_connections_active", listener="tls",
                   route="a") == 1

    # An invalid file (that would also drop route b) changes nothing.
    since = len(gw.stderr())
    bad = head + ROUTES_A.format(a=a.addr) + "    colour: blue\n"
    gwlib.reload(gw, bad, wait_log=r"reload of .* failed")
    err = gw.stderr()[since:]
    path = re.escape(gw.config_path)
    assert re.search(path + r":\d+:\d+: ", err), f"no FILE:LINE:COL in\n{err}"
    m = gw.metrics()
    assert m.value("hubgate_config_reloads_total", result="failed") == 1
    assert m.value("hubgate_config_reloads_total", result="ok") == 1
    ping()
    assert probe(gw, addr, "b.test", bk) == "b"
    c = gwlib.Client(addr)
    h2 = gwlib.wire_hello("a.test")
    c.send(h2)
    assert c.recv_exactly(len(h2)) == h2
    c.close()
    ping()
    # The tunnel's bytes went through unchanged and it is still the one
    # connection it was.
    assert a.connections[0].data.startswith(hello)
    t.close()
    assert a.connections[0].closed.wait(hglib.scale(5))
    assert len(a.connections[0].data) == len(hello) + sum(
        len(f"ping-{i:04d}".encode() * 50) for i in range(1, seq[0] + 1))
    gw.stop()


def test_backend_port_from_listener():
    # Listener on 127.0.0.1:P; the backend, written without a port, is
    # reached on 127.0.0.21:P.
    for _ in range(5):
        port = gwlib.common_port(["127.0.0.1", "127.0.0.21"])
        try:
            bk = gwlib.named_backend("same", host="127.0.0.21", port=port)
            break
        except OSError:
            continue
    else:
        raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.21")
    gw = hglib.start_hubgate(f"""
listeners:
  - name: tls
    bind: ["127.0.0.1:{port}"]
routes:
  - name: same
    sni: ["hub.test"]
    backend: "127.0.0.21"
""")
    assert probe(gw, gw.listen_addrs[0], "hub.test", {"same": bk}) == "same"
    line = gwlib.wait_access(gw, route="same")
    assert line["backend"] == f"127.0.0.21:{port}", line
    gw.stop()


def test_half_close():
    reply = os.urandom(200_000)
    bk = hglib.CaptureServer(reply_on_eof=reply, name="half")
    port = hglib.free_port()
    gw = hglib.start_hubgate(f"""
listeners:
  - name: tls
    bind: ["127.0.0.1:{port}"]
routes:
  - name: half
    sni: ["hub.test"]
    backend: "{bk.addr}"
""")
    sent = gwlib.wire_hello("hub.test") + os.urandom(50_000)
    c = gwlib.Client(gw.listen_addrs[0])
    c.send(sent)
    c.shutdown_write()
    got = c.recv_exactly(len(reply), timeout=10)
    closed, rest, _ = c.wait_closed(hglib.scale(5))
    assert closed and rest == b"", (closed, len(rest))
    assert got == reply, "the reply after the half-close differs"
    conn = bk.wait_connections(1)[0]
    assert conn.eof, "the backend did not see the client's FIN"
    assert conn.data == sent, (len(conn.data), len(sent))
    line = gwlib.wait_access(gw, route="half",
                             client=f"127.0.0.1:{c.local[1]}")
    assert line["term"] == "--" and line["reason"] == "eof", line
    assert line["bytes_up"] == str(len(sent)), line
    assert line["bytes_down"] == str(len(reply)), line
    m = gw.metrics()
    assert m.value("hubgate_bytes_total", route="half",
                   direction="up") == len(sent)
    assert m.value("hubgate_bytes_total", route="half",
                   direction="down") == len(reply)
    gw.stop()


def one_route_gateway(backend_addr, route):
    port = hglib.free_port()
    return hglib.start_hubgate(f"""
listeners:
  - name: tls
    bind: ["127.0.0.1:{port}"]
routes:
  - name: {route}
    sni: ["hub.test"]
    backend: "{backend_addr}"
""")


def test_half_close_backend_first():
    # The backend answers and half-closes first; the client keeps sending,
    # then half-closes too. The gateway closes both sockets with a FIN
    # each (never a reset), and every byte arrives both ways.
    reply = os.urandom(100_000)
    after = os.urandom(30_000)
    sent = gwlib.wire_hello("hub.test")
    ls = socket.create_server(("127.0.0.1", 0))
    hglib.on_cleanup(ls.close, "half-close backend")
    got = {}

    def serve():
        s, _ = ls.accept()
        with s:
            data = b""
            s.settimeout(hglib.scale(10))
            while len(data) < len(sent):
                data += s.recv(65536)
            s.sendall(reply)
            s.shutdown(socket.SHUT_WR)
            try:
                got["data"] = data + gwlib.recv_to_eof(s, 10)
            except OSError as e:
                got["error"] = repr(e)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    host, port = ls.getsockname()
    gw = one_route_gateway(f"{host}:{port}", "back")
    c = gwlib.Client(gw.listen_addrs[0])
    c.send(sent)
    assert gwlib.recv_to_eof(c.sock, 10) == reply
    c.send(after)
    c.shutdown_write()
    t.join(hglib.scale(10))
    assert "error" not in got, got
    assert got.get("data") == sent + after, len(got.get("data", b""))
    line = gwlib.wait_access(gw, route="back",
                             client=f"127.0.0.1:{c.local[1]}")
    assert line["term"] == "--" and line["reason"] == "eof", line
    assert line["bytes_up"] == str(len(sent) + len(after)), line
    assert line["bytes_down"] == str(len(reply)), line
    c.close()
    gw.stop()


def test_backend_refuses():
    # A bound socket that never listens: every connect to it is refused.
    hole = socket.socket()
    hglib.on_cleanup(hole.close, "refusing port")
    hole.bind(("127.0.0.1", 0))
    host, port = hole.getsockname()
    gw = one_route_gateway(f"{host}:{port}", "hole")
    c = gwlib.Client(gw.listen_addrs[0])
    c.send(gwlib.wire_hello("hub.test"))
    closed, rest, _ = c.wait_closed(hglib.scale(5))
    assert closed and rest == b"", (closed, rest)
    line = gwlib.wait_access(gw, route="hole")
    assert line["term"] == "SC" and line["reason"] == "connect_refused", line
    assert line["backend"] == f"{host}:{port}", line
    c.close()
    gw.stop()


def test_readyz_and_sigterm():
    # A short ready delay makes the 503 window certain; the drain itself is
    # test_timeouts.py's.
    bk = hglib.CaptureServer(echo=True, name="echo")
    gw = hglib.start_sni_gateway(bk.addr, "hub.test", extra="""
shutdown:
  ready_delay: 1s
  drain: 0s""")
    for _ in range(3):
        assert gw.get("/readyz")[0] == 200
        assert gw.get("/healthz")[0] == 200
        time.sleep(0.05)
    assert gw.metrics().value("hubgate_ready") == 1
    # An open tunnel, closed by the shutdown.
    hello = gwlib.wire_hello("hub.test")
    t = gwlib.Client(gw.listen_addrs[0])
    t.send(hello)
    assert t.recv_exactly(len(hello)) == hello

    t_term = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    hglib.wait_until(lambda: gw.readyz() == 503, hglib.scale(0.8), 0.01,
                     what="/readyz 503 after SIGTERM")
    assert gw.metrics().value("hubgate_ready") == 0
    assert gw.get("/healthz")[0] == 200
    # Still not ready for as long as it answers.
    while gw.proc.alive() and time.monotonic() - t_term < hglib.scale(5):
        assert gw.readyz() in (503, None)
        time.sleep(0.05)
    rc = gw.proc.wait(hglib.scale(10))
    assert rc == 0, f"exit status {rc}\n{gw.proc.tail()}"
    took = time.monotonic() - t_term
    gw.assert_clean_log()
    assert 0.9 <= took < 1.0 + hglib.scale(2), f"exited {took:.2f} s after"
    closed, _, _ = t.wait_closed(hglib.scale(5))
    assert closed, "tunnel still open after hubgate exited"
    line = gwlib.wait_access(gw, route="hub")
    assert line["term"] == "PD" and line["reason"] == "shutdown", line


if __name__ == "__main__":
    hglib.main(globals())
