"""Allow lists end to end: the listener's (inline CIDRs, a `file:` list,
IPv6) checked at accept, then the route's. A refused client is closed with
no byte back, counted under listener_allow or route_allow, and nothing
reaches a backend. Clients pick their source address by binding to
127.0.0.x (all of 127.0.0.0/8 is local) or ::1.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwlib  # noqa: E402
import hglib  # noqa: E402


def attempt(addr, sni, source, backend):
    """Connects from source with a hello for sni. Returns True when it
    reached the backend (the reply came back and the backend holds the
    exact bytes), False when the gateway closed it without a byte."""
    data = gwlib.wire_hello(sni) + b"\x17\x03\x03\x00\x02hi"
    before = backend.count()
    c = gwlib.Client(addr, source=source)
    assert c.local[0] == source, c.local
    c.send(data)
    got = c.recv_reply(lambda b: len(b) >= 4)
    if got == b"":
        c.close()
        assert backend.count() == before, f"{source}: reached {backend.name}"
        return False
    assert got.startswith(b"<ok>"), f"{source} -> {addr}: got {got!r}"
    conn = backend.wait_connections(before + 1)[before]
    backend.wait_bytes(conn, len(data))
    assert conn.data == data
    c.close()
    return True


def test_allow_lists():
    ok = hglib.CaptureServer(reply=b"<ok>", name="ok")
    guarded = hglib.CaptureServer(reply=b"<ok>", name="guarded")
    v6 = gwlib.have_ipv6_loopback()
    sites = hglib.write_file(hglib.tmp_path("sites.txt"), """\
# customer sites
127.0.0.7/32   # site 7

10.0.0.0/8
""")
    p = hglib.free_ports(2)
    listeners = f"""
  - name: v4
    bind: ["127.0.0.1:{p[0]}"]
    allow: ["127.0.0.1/32"]
  - name: file
    bind: ["127.0.0.1:{p[1]}"]
    allow: ["file:{sites}"]
"""
    if v6:
        q = [hglib.free_port("::1") for _ in range(2)]
        listeners += f"""
  - name: v6
    bind: ["[::1]:{q[0]}"]
    allow: ["::1/128"]
  - name: v6deny
    bind: ["[::1]:{q[1]}"]
    allow: ["::2/128", "127.0.0.0/8"]
"""
    gw = hglib.start_hubgate(f"""
listeners:{listeners}
routes:
  - name: ok
    sni: ["ok.test"]
    backend: "{ok.addr}"
  - name: guarded
    sni: ["guarded.test"]
    backend: "{guarded.addr}"
    allow: ["10.0.0.0/8", "::2/128"]
""")
    # (hglib's listen_addrs cannot parse "[::1]:P" inside a flow list.)
    a = {"v4": f"127.0.0.1:{p[0]}", "file": f"127.0.0.1:{p[1]}"}
    if v6:
        a.update(v6=f"[::1]:{q[0]}", v6deny=f"[::1]:{q[1]}")
    want = {}

    def refused_as(listener, reason):
        want[(listener, reason)] = want.get((listener, reason), 0) + 1
        gwlib.wait_refused(gw, listener, reason, want[(listener, reason)])

    def passes(listener, sni, source, backend):
        assert attempt(a[listener], sni, source, backend), (
            f"{source} -> listener {listener}, SNI {sni}: refused")

    def refused(listener, sni, source, backend, reason):
        assert not attempt(a[listener], sni, source, backend), (
            f"{source} -> listener {listener}, SNI {sni}: passed, "
            f"want {reason}")
        refused_as(listener, reason)

    # Listener allow 127.0.0.1/32.
    refused("v4", "ok.test", "127.0.0.5", ok, "listener_allow")
    assert ok.count() == 0
    passes("v4", "ok.test", "127.0.0.1", ok)
    # Route allow: 127.0.0.1 passes the listener, not the route.
    refused("v4", "guarded.test", "127.0.0.1", guarded, "route_allow")
    # Refused at the listener before the route is even known.
    refused("v4", "guarded.test", "127.0.0.9", guarded, "listener_allow")

    # An allow file: 127.0.0.7 is in it, 127.0.0.8 and 127.0.0.1 are not.
    passes("file", "ok.test", "127.0.0.7", ok)
    refused("file", "ok.test", "127.0.0.8", ok, "listener_allow")
    refused("file", "ok.test", "127.0.0.1", ok, "listener_allow")

    if v6:
        passes("v6", "ok.test", "::1", ok)
        refused("v6", "guarded.test", "::1", guarded, "route_allow")
        refused("v6deny", "ok.test", "::1", ok, "listener_allow")
    else:
        hglib.log("no ::1 here: IPv6 cases skipped")

    assert guarded.count() == 0, "the guarded route's backend was reached"
    assert ok.count() == (3 if v6 else 2), ok.count()
    # No other refusal was counted anywhere.
    m = gw.metrics()
    for labels, v in m.select("hubgate_refused_total"):
        key = (labels["listener"], labels["reason"])
        assert v == want.get(key, 0), (key, v, want)
    routed = m.sum("hubgate_connections_total", route="ok")
    assert routed == ok.count(), routed
    gw.stop()


def test_allow_lists_follow_reload():
    # A reload re-reads the allow file and the inline lists: new
    # connections follow them, a tunnel already open is kept.
    ok = hglib.CaptureServer(reply=b"<ok>", name="ok")
    sites = hglib.write_file(hglib.tmp_path("sites.txt"), "127.0.0.7/32\n")
    p = hglib.free_ports(2)

    def config(inline):
        return f"""
listeners:
  - name: inline
    bind: ["127.0.0.1:{p[0]}"]
    allow: ["{inline}"]
  - name: file
    bind: ["127.0.0.1:{p[1]}"]
    allow: ["file:{sites}"]
routes:
  - name: ok
    sni: ["ok.test"]
    backend: "{ok.addr}"
"""
    gw = hglib.start_hubgate(config("127.0.0.1/32"))
    inline, infile = f"127.0.0.1:{p[0]}", f"127.0.0.1:{p[1]}"
    assert attempt(inline, "ok.test", "127.0.0.1", ok)
    assert not attempt(inline, "ok.test", "127.0.0.5", ok)
    assert attempt(infile, "ok.test", "127.0.0.7", ok)
    assert not attempt(infile, "ok.test", "127.0.0.8", ok)
    # A tunnel from 127.0.0.1, open across the reload that bars it.
    held = gwlib.Client(inline, source="127.0.0.1")
    hello = gwlib.wire_hello("ok.test")
    held.send(hello)
    assert held.recv_exactly(4) == b"<ok>"
    conn = ok.wait_connections(3)[2]

    hglib.write_file(sites, "# moved\n127.0.0.8/32\n")
    gwlib.reload(gw, config("127.0.0.5/32"), wait_log=r"reloaded ")
    assert attempt(inline, "ok.test", "127.0.0.5", ok), \
        "127.0.0.5 refused after the reload allowed it"
    assert not attempt(inline, "ok.test", "127.0.0.1", ok), \
        "127.0.0.1 passed after the reload barred it"
    assert attempt(infile, "ok.test", "127.0.0.8", ok), \
        "the allow file was not read again"
    assert not attempt(infile, "ok.test", "127.0.0.7", ok)
    held.send(b"still-here")
    ok.wait_bytes(conn, len(hello) + 10)
    assert conn.data == hello + b"still-here"
    assert gwlib.refused(gw, "inline", "listener_allow") == 2
    assert gwlib.refused(gw, "file", "listener_allow") == 2
    held.close()
    gw.stop()


if __name__ == "__main__":
    hglib.main(globals())
