"""Backend names re-resolved end to end, against a dnsmasq on loopback
(--no-resolv --no-hosts: it answers only from its own file).

- backend.test -> 127.0.0.11 with TTL 2 s; the record moves to 127.0.0.12:
  new connections land there within TTL + 1 s, the tunnel already open to
  .11 keeps working; with dnsmasq gone, the last answer stays in use
  (stale = 1, failures counted).
- a name with two addresses, the first refusing: connections land on the
  second (addresses tried in turn).
- a reload that drops the only route to a name stops its lookups (dnsmasq's
  query log shows none after it); a reload that brings the route back starts
  them again, and connections reach it.
- a reload that fails (a listener cannot bind) sends nothing to the DNS
  server it names: the resolver changes only with the whole reload.
- answers no backend can have (0.0.0.0, ::, multicast, broadcast) are left
  out: a name with only those has no address.
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwlib  # noqa: E402
import hglib  # noqa: E402

TTL = 2


def landed(addr, sni="hub.test"):
    """A new connection through the gateway: the name of the backend that
    answered, or None when it was closed without a byte."""
    c = gwlib.Client(addr)
    try:
        c.send(gwlib.wire_hello(sni))
        got = c.recv_reply(lambda b: b">" in b)
        return got.strip(b"<>").decode() or None
    finally:
        c.close()


def backends_on_same_port(hosts):
    for _ in range(10):
        port = gwlib.common_port(hosts)
        made = []
        try:
            for h in hosts:
                made.append(gwlib.named_backend(h.split(".")[-1], h, port))
            return port, made
        except OSError:
            for b in made:
                b.stop()
    raise RuntimeError("no common port")


def test_address_change_and_outage():
    port, (b11, b12) = backends_on_same_port(["127.0.0.11", "127.0.0.12"])
    dns = hglib.start_dnsmasq({"backend.test": "127.0.0.11"}, ttl=TTL)
    assert dns.query("backend.test") == (0, ["127.0.0.11"])
    gw_port = hglib.free_port()
    gw = hglib.start_hubgate(f"""
resolver: {{servers: ["{dns.server}"], min_ttl: 1s}}
listeners:
  - name: tls
    bind: ["127.0.0.1:{gw_port}"]
routes:
  - name: r
    sni: ["hub.test"]
    backend: "backend.test:{port}"
""")
    addr = gw.listen_addrs[0]
    m = gw.metrics()
    assert m.value("hubgate_backend_addresses", route="r") == 1
    assert m.value("hubgate_backend_stale", route="r") == 0

    # A tunnel to .11, kept.
    t = gwlib.Client(addr)
    hello = gwlib.wire_hello("hub.test")
    t.send(hello)
    assert t.recv_exactly(4) == b"<11>"
    old = b11.wait_connections(1)[0]
    b11.wait_bytes(old, len(hello))
    assert landed(addr) == "11"

    # Move the record. t_change is taken before the file is rewritten, so
    # the time measured can only be longer than the real one.
    t_change = time.monotonic()
    dns.set_records({"backend.test": "127.0.0.12"})
    hglib.log(f"dnsmasq reloaded {time.monotonic() - t_change:.3f} s "
              "after the change began")
    assert dns.query("backend.test") == (0, ["127.0.0.12"])
    # Probe with a new connection every 50 ms. hubgate asks again when the
    # TTL (2 s) runs out, so the first probe on .12 must come within
    # TTL + 1 s. Margin 0.3 s (x3 under ASan): the probe interval (50 ms),
    # dnsmasq's reload (logged above, a few ms), one DNS round trip and a
    # connect on loopback, and scheduling of the test's threads.
    limit = TTL + 1.0 + hglib.scale(0.3)
    first_12 = None
    seen = []
    while time.monotonic() - t_change < limit + 2:
        where = landed(addr)
        seen.append(where)
        assert where in ("11", "12"), f"probe landed on {where}"
        if where == "12":
            first_12 = time.monotonic() - t_change
            break
        time.sleep(0.05)
    assert first_12 is not None, (
        f"no probe reached .12 in {time.monotonic() - t_change:.1f} s "
        f"({len(seen)} probes, all on .11)")
    hglib.log(f"first connection on .12 {first_12:.3f} s after the change "
              f"({len(seen)} probes)")
    assert first_12 <= limit, f"reached .12 after {first_12:.2f} s > {limit}"
    # From then on, only .12.
    for _ in range(5):
        assert landed(addr) == "12"

    # The old tunnel still works, both ways.
    t.send(b"still-there")
    b11.wait_bytes(old, len(hello) + 11)
    assert old.data == hello + b"still-there"
    old.send(b"and-back")
    assert t.recv_exactly(8) == b"and-back"
    m = gw.metrics()
    assert m.value("hubgate_backend_addresses", route="r") == 1
    assert m.value("hubgate_connections_active", listener="tls",
                   route="r") == 1

    # DNS goes away: the last answer (.12) stays in use.
    fails0 = m.value("hubgate_resolver_failures_total", route="r")
    dns.stop()
    t_stop = time.monotonic()
    stale_at = None
    # Several TTLs (3 x 2 s): new connections keep going to .12.
    while time.monotonic() - t_stop < 3 * TTL:
        assert landed(addr) == "12"
        m = gw.metrics()
        if stale_at is None and m.value("hubgate_backend_stale",
                                        route="r") == 1:
            stale_at = time.monotonic() - t_stop
        time.sleep(0.2)

    def stale_and_failing():
        m = gw.metrics()
        return (m.value("hubgate_backend_stale", route="r") == 1 and
                m.value("hubgate_resolver_failures_total", route="r") >
                fails0 + 1)
    hglib.wait_until(stale_and_failing, hglib.scale(10),
                     what="stale = 1 and failures growing")
    m = gw.metrics()
    hglib.log(f"stale after {stale_at} s; failures "
              f"{m.value('hubgate_resolver_failures_total', route='r')}")
    assert m.value("hubgate_backend_addresses", route="r") == 1
    assert landed(addr) == "12"
    gw.wait_log(r"resolver: backend\.test: lookup failed .*keeping 1 stale")

    # The tunnel to .11 is still there.
    t.send(b"x")
    b11.wait_bytes(old, len(hello) + 12)
    t.close()
    gw.stop()


def test_first_address_refuses():
    # multi.test has .13 (nothing listens) and .14; one worker so that
    # connections start on each address in turn: every one must land on .14.
    port = gwlib.common_port(["127.0.0.13", "127.0.0.14"])
    b14 = gwlib.named_backend("14", "127.0.0.14", port)
    dns = hglib.start_dnsmasq({"multi.test": ["127.0.0.13", "127.0.0.14"]},
                              ttl=60)
    rc, addrs = dns.query("multi.test")
    assert rc == 0 and sorted(addrs) == ["127.0.0.13", "127.0.0.14"], addrs
    gw_port = hglib.free_port()
    gw = hglib.start_hubgate(f"""
workers: 1
resolver: {{servers: ["{dns.server}"], min_ttl: 1s}}
listeners:
  - name: tls
    bind: ["127.0.0.1:{gw_port}"]
routes:
  - name: multi
    sni: ["hub.test"]
    backend: "multi.test:{port}"
""")
    addr = gw.listen_addrs[0]
    assert gw.metrics().value("hubgate_backend_addresses",
                              route="multi") == 2
    n = 6
    for i in range(n):
        assert landed(addr) == "14", f"connection {i}"
    assert b14.count() == n
    hglib.wait_until(lambda: len(gwlib.access_lines(gw, route="multi")) == n,
                     hglib.scale(5), what=f"{n} access lines")
    for line in gwlib.access_lines(gw, route="multi"):
        assert line["backend"] == f"127.0.0.14:{port}", line
        assert line["term"] == "--", line
    m = gw.metrics()
    assert m.value("hubgate_connections_total", listener="tls",
                   route="multi") == n
    gw.stop()


def test_answers_no_backend_can_have_are_left_out():
    # A DNS filter answers 0.0.0.0 or :: for a name it blocks, and
    # connect(2) takes those for this host: such answers, multicast and
    # broadcast are no backend. mixed.test keeps its one real address;
    # sink.test has none, and its connections reach nothing on this host.
    port, (local, b15) = backends_on_same_port(["127.0.0.1", "127.0.0.15"])
    dns = hglib.start_dnsmasq({
        "mixed.test": ["0.0.0.0", "127.0.0.15", "224.0.0.1",
                       "255.255.255.255", "::"],
        "sink.test": ["0.0.0.0", "::", "ff02::1"]}, ttl=60)
    assert dns.query("sink.test") == (0, ["0.0.0.0"])
    gw = hglib.start_hubgate(f"""
resolver: {{servers: ["{dns.server}"], min_ttl: 1s}}
listeners:
  - name: tls
    bind: ["127.0.0.1:{hglib.free_port()}"]
routes:
  - name: mixed
    sni: ["hub.test"]
    backend: "mixed.test:{port}"
  - name: sink
    sni: ["sink.test"]
    backend: "sink.test:{port}"
""")
    addr = gw.listen_addrs[0]
    m = gw.metrics()
    assert m.value("hubgate_backend_addresses", route="mixed") == 1
    assert m.value("hubgate_backend_addresses", route="sink") == 0
    for _ in range(4):
        assert landed(addr) == "15"
        assert landed(addr, "sink.test") is None
    line = gwlib.wait_access(gw, route="sink")
    assert (line["term"], line["reason"]) == ("RC", "no_address"), line
    assert local.count() == 0 and b15.count() == 4
    gw.stop()


def asked(dns, name, since):
    """How many times dnsmasq was asked for name after offset since."""
    return sum(1 for line in dns.proc.output()[since:].splitlines()
               if f"query[A] {name} " in line)


def test_dropped_route_stops_its_lookups():
    port, (b11,) = backends_on_same_port(["127.0.0.11"])
    dns = hglib.start_dnsmasq({"kept.test": "127.0.0.11",
                               "dropped.test": "127.0.0.11"}, ttl=1)
    gw_port = hglib.free_port()

    def config(routes):
        return f"""
resolver: {{servers: ["{dns.server}"], min_ttl: 1s, max_ttl: 1s}}
listeners:
  - name: tls
    bind: ["127.0.0.1:{gw_port}"]
routes:
""" + "".join(f"""  - name: {n}
    sni: ["{n}.hub.test"]
    backend: "{n}.test:{port}"
""" for n in routes)

    gw = hglib.start_hubgate(config(["kept", "dropped"]))
    addr = gw.listen_addrs[0]
    hglib.wait_until(lambda: asked(dns, "dropped.test", 0) >= 3,
                     hglib.scale(10), what="dropped.test looked up 3 times")

    gw.reload(config(["kept"]), wait_log=r"reloaded ")
    gw.wait_log(r"dropped\.test: no route uses it")
    since = len(dns.proc.output())
    time.sleep(3.5)  # more than three TTLs
    assert asked(dns, "dropped.test", since) == 0
    assert asked(dns, "kept.test", since) >= 2
    assert landed(addr, "kept.hub.test") == "11"

    gw.reload(config(["kept", "dropped"]), wait_log=r"reloaded ")
    hglib.wait_until(lambda: asked(dns, "dropped.test", since) >= 2,
                     hglib.scale(10), what="dropped.test looked up again")
    assert landed(addr, "dropped.hub.test") == "11"

    # Woken while DNS does not answer: the answer from before the rest is
    # served, and shown stale from the start (not once the lookup times
    # out, seconds later).
    since = len(gw.stderr())
    gw.reload(config(["kept"]), wait_log=r"reloaded ")
    gw.wait_log(r"dropped\.test: no route uses it", since=since)
    dns.stop()
    hglib.silent_dns(dns.port)
    gw.reload(config(["kept", "dropped"]), wait_log=r"reloaded ")
    m = gw.metrics()
    assert m.value("hubgate_backend_stale", route="dropped") == 1
    assert landed(addr, "dropped.hub.test") == "11"
    gw.stop()


def test_failed_reload_leaves_the_resolver_alone():
    port, (b11,) = backends_on_same_port(["127.0.0.11"])
    records = {"backend.test": "127.0.0.11", "fresh.test": "127.0.0.11"}
    dns1 = hglib.start_dnsmasq(records, ttl=1)
    dns2 = hglib.start_dnsmasq(records, ttl=1)
    gw_port, taken = hglib.free_ports(2)
    holder = socket.socket()
    holder.bind(("127.0.0.1", taken))
    holder.listen(1)
    hglib.on_cleanup(holder.close, "the socket holding a port")

    def config(dns, extra_bind=None, fresh=False):
        binds = f'"127.0.0.1:{gw_port}"' + (
            f', "127.0.0.1:{extra_bind}"' if extra_bind else "")
        return f"""
resolver: {{servers: ["{dns.server}"], min_ttl: 1s}}
listeners:
  - name: tls
    bind: [{binds}]
routes:
  - name: r
    sni: ["hub.test"]
    backend: "backend.test:{port}"
""" + (f"""  - name: fresh
    sni: ["fresh.hub.test"]
    backend: "fresh.test:{port}"
""" if fresh else "")
    gw = hglib.start_hubgate(config(dns1))
    assert hglib.check_config(config(dns2, taken, True)).returncode == 0
    gw.reload(config(dns2, taken, True), wait_log=r"reload of .* failed")
    time.sleep(2.5)  # more than two TTLs under the running config
    assert asked(dns2, "backend.test", 0) == 0
    assert asked(dns1, "backend.test", 0) >= 3
    assert asked(dns1, "fresh.test", 0) == 0  # only the failed config had it
    assert landed(gw.listen_addrs[0]) == "11"

    # Servers and a new name in one reload: the name is asked of the new
    # server only.
    gw.reload(config(dns2, fresh=True), wait_log=r"reloaded ")
    hglib.wait_until(lambda: gw.metrics().value(
        "hubgate_backend_addresses", route="fresh") == 1, hglib.scale(10),
        what="fresh.test resolved")
    assert asked(dns2, "fresh.test", 0) >= 1
    assert asked(dns2, "backend.test", 0) >= 1
    assert landed(gw.listen_addrs[0], "fresh.hub.test") == "11"
    assert asked(dns1, "fresh.test", 0) == 0
    gw.stop()


if __name__ == "__main__":
    hglib.main(globals())
