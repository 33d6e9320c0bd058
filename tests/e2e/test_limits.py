"""A listener's max_connections: connections open at once, in any phase and
across workers, are bounded; one more is accepted and closed at once and
counted as `limit`; a slot comes back when a connection closes; a reload
that raises the bound applies to the next connection. Pipes for bulk bytes
take only descriptors that tunnels cannot need, tunnels only those the
admin endpoint and the backends' sockets cannot, and a gateway out of
descriptors says so."""

import os
import re
import resource
import socket
import time

import gwlib
import hglib

SNI = "hub.test"


def hello():
    return hglib.tls_records(hglib.client_hello(SNI))


def config(backend, port, limit):
    return hglib.sni_gateway_yaml(backend, SNI, "workers: 2", port=port,
                                  listener=f"    max_connections: {limit}")


def open_now(gw):
    return gw.metrics().value("hubgate_connections_open", 0, listener="tls")


def tunnel(gw, data):
    c = hglib.RawClient(gw.listen_addrs[0])
    c.send_chunks([data])
    assert c.recv_exactly(len(data)) == data
    return c


def test_max_connections_bounds_every_phase():
    backend = hglib.CaptureServer(echo=True)
    port = hglib.free_port()
    gw = hglib.start_hubgate(config(backend.addr, port, 3))
    data = hello()
    # Two tunnels and one client with half its ClientHello sent (with
    # TCP_DEFER_ACCEPT a client that sent nothing is not accepted yet):
    # three open.
    tunnels = [tunnel(gw, data) for _ in range(2)]
    silent = hglib.RawClient(gw.listen_addrs[0])
    silent.send_chunks([data[:len(data) // 2]])
    hglib.wait_until(lambda: open_now(gw) == 3, hglib.scale(5),
                     what="three open")
    for _ in range(3):  # each one more is closed at once, nothing routed
        extra = hglib.RawClient(gw.listen_addrs[0])
        extra.send_chunks([data])
        assert extra.closed_by_peer(wait=hglib.scale(3))
    gwlib.wait_refused(gw, "tls", "limit", 3)
    assert backend.count() == 2
    assert open_now(gw) == 3
    # A slot comes back when a connection closes, in any phase.
    silent.close()
    hglib.wait_until(lambda: open_now(gw) == 2, hglib.scale(5),
                     what="two open")
    tunnels.append(tunnel(gw, data))
    assert gwlib.refused(gw, "tls", "limit") == 3
    tunnels.pop(0).close()
    hglib.wait_until(lambda: open_now(gw) == 2, hglib.scale(5),
                     what="two open again")
    tunnels.append(tunnel(gw, data))
    # A reload that raises the bound applies at once; the tunnels stay.
    gwlib.reload(gw, config(backend.addr, port, 5))
    tunnels += [tunnel(gw, data) for _ in range(2)]
    extra = hglib.RawClient(gw.listen_addrs[0])
    extra.send_chunks([data])
    assert extra.closed_by_peer(wait=hglib.scale(3))
    gwlib.wait_refused(gw, "tls", "limit", 4)
    for t in tunnels:  # every tunnel still carries bytes
        t.send_chunks([b"ping"])
        assert t.recv_exactly(4) == b"ping"
    for t in tunnels:
        t.close()
    hglib.wait_until(lambda: open_now(gw) == 0, hglib.scale(5),
                     what="none open")
    gw.stop()


def fds(gw, kind=""):
    return hglib.open_fds(gw.proc.pid, kind)


def stalled_tunnel(gw, sni=SNI):
    """A tunnel whose client reads nothing yet, through a small receive
    buffer: what the backend sends piles up in the gateway."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.settimeout(hglib.scale(10))
    s.connect(hglib.split_hostport(gw.listen_addrs[0]))
    hglib.on_cleanup(s.close, "stalled client")
    s.sendall(hglib.tls_records(hglib.client_hello(sni)))
    return s


def read_up_to(c, got, n):
    """Reads into got until it holds n bytes, the peer closes or nothing
    comes for the socket's timeout."""
    try:
        while len(got) < n:
            chunk = c.recv(min(1 << 20, n - len(got)))
            if not chunk:
                return
            got += chunk
    except OSError:
        pass


def bulk_burst(gw, n, block, sni=SNI):
    """n tunnels at once whose backend sends block, more than the gateway's
    socket toward the waiting client takes, so that every tunnel holds a
    pipe full of bytes; then each client reads the block whole."""
    clients = [stalled_tunnel(gw, sni) for _ in range(n)]
    time.sleep(hglib.scale(0.5))
    got = [bytearray() for _ in clients]
    for c, g in zip(clients, got):
        read_up_to(c, g, len(block))
        c.close()
    short = sum(bytes(g) != block for g in got)
    assert short == 0, (short, gwlib.access_lines(gw))
    hglib.wait_until(lambda: open_now(gw) == 0, hglib.scale(5),
                     what="none open")


def test_pipes_leave_descriptors_for_max_connections():
    # Bulk bytes wait in pipes, two descriptors each, and emptied pipes are
    # kept for reuse. Under an open files limit that max_connections just
    # fits, pipes take only what tunnels cannot need: every connection the
    # limit allows gets through, after a burst of bulk too.
    limit, nofile = 60, 220
    block = os.urandom(4 << 20)
    backend = hglib.CaptureServer(reply=block)
    port = hglib.free_port()
    gw = hglib.start_hubgate(config(backend.addr, port, limit), nofile=nofile)
    for burst in (50, limit):
        bulk_burst(gw, burst, block)
    assert gwlib.refused(gw, "tls", "limit") == 0
    assert not gw.log_lines("open files limit of")
    # A reload to a bound the limit cannot hold is warned of, and leaves
    # pipes nothing: bulk goes through buffers, and no pipe is kept.
    gwlib.reload(gw, config(backend.addr, port, 100))
    # Kept for the rest: 64, 16 admin connections, 2 listening sockets for
    # each of the 2 workers; (220 - 84) / 2 tunnels.
    gw.wait_log(re.escape(
        "max_connections allow 100 connections, more than the 68 tunnels "
        "that the open files limit of 220 has room for (two descriptors "
        "each, 84 kept for the rest); bulk goes without pipes"))
    bulk_burst(gw, 50, block)
    assert fds(gw, "pipe:") == 0
    gw.stop()


def test_tunnels_leave_descriptors_for_the_admin_endpoint():
    # Without max_connections, tunnels get what the open files limit leaves
    # after 64 descriptors for the rest, 16 for admin connections, the
    # listening sockets and a quarter of the limit for pipes, two
    # descriptors each: (160 - 64 - 16 - 2 - 40) / 2. One more is closed at
    # once, counted as no_descriptors, and the probe still gets its answer.
    gw = echo_gateway(160, room=19)
    tunnels, refused = fill(gw, 80)  # more than the limit holds
    assert (len(tunnels), refused) == (19, 61)
    assert gwlib.refused(gw, "tls", "no_descriptors") == 61
    assert gw.readyz() == 200
    for t in tunnels[:2]:
        t.close()
    hglib.wait_until(lambda: open_now(gw) == 17, hglib.scale(5),
                     what="two tunnels closed")
    tunnels += [tunnel(gw, hello()), tunnel(gw, hello())]
    assert not gw.log_lines("accept paused")
    gw.stop()


def echo_gateway(nofile, room=None, workers=1, binds=None, **kw):
    """hubgate with `workers` before an echo backend (gw.backend), under an
    open files limit of nofile; when room is given, its start-up line must
    say it has room for that many tunnels."""
    echo = hglib.CaptureServer(echo=True)
    gw = hglib.start_hubgate(hglib.sni_gateway_yaml(
        echo.addr, SNI, f"workers: {workers}", binds=binds), nofile=nofile,
        **kw)
    gw.backend = echo
    if room is not None:
        assert gw.log_lines(rf"started: .* room for {room} tunnels"), \
            gw.stderr()
    return gw


def fill(gw, n):
    """n tunnels in turn over the listener's bind addresses: returns (the
    clients whose hello came back, how many were closed instead)."""
    data = hello()
    tunnels, refused = [], 0
    for i in range(n):
        c = hglib.RawClient(gw.listen_addrs[i % len(gw.listen_addrs)])
        c.send_chunks([data])
        try:
            assert c.recv_exactly(len(data)) == data
            tunnels.append(c)
        except (EOFError, OSError):
            refused += 1
            c.close()
    return tunnels, refused


def test_room_counts_every_listening_socket():
    # One listening socket per bind address and worker, two each kept
    # across a reload: with 3 addresses and 2 workers, 12 descriptors. Kept
    # with 64 and 16 admin connections, and a quarter for pipes, that leaves
    # (200 - 92 - 50) / 2 tunnels, all of which get through.
    binds = [f"127.0.0.{i}:{hglib.free_port(f'127.0.0.{i}')}"
             for i in (1, 2, 3)]
    gw = echo_gateway(200, room=29, workers=2, binds=binds)
    tunnels, refused = fill(gw, 40)
    assert (len(tunnels), refused) == (29, 11)
    assert gw.readyz() == 200
    gw.stop()


def test_admin_connections_leave_the_tunnels_their_room():
    # The admin endpoint holds a sixteenth of the limit (16 at least), kept
    # out of the tunnels' room: 40 idle admin connections from 3 addresses
    # take no descriptor a tunnel could have had. (320 - 64 - 20 - 2 -
    # 80) / 2 tunnels.
    gw = echo_gateway(320, room=77)
    host, port = hglib.split_hostport(gw.admin)
    idle = []
    for i in range(40):
        s = socket.socket()
        s.bind((f"127.0.0.{2 + i % 3}", 0))
        s.settimeout(hglib.scale(2))
        try:
            s.connect((host, port))
        except OSError:
            pass
        idle.append(s)
    try:
        tunnels, refused = fill(gw, 82)
        assert (len(tunnels), refused) == (77, 5)
    finally:
        for s in idle:
            s.close()
    gw.stop()


def test_a_limit_that_leaves_tunnels_no_room_is_not_ready():
    gw = echo_gateway(80, wait_ready=False)
    gw.wait_log("the open files limit of 80 leaves no room for tunnels: "
                "every connection is refused and /readyz says 503")
    hglib.wait_until(lambda: gw.readyz() == 503, hglib.scale(5),
                     what="/readyz 503")
    assert gw.metrics().value("hubgate_ready", None) == 0
    c = hglib.RawClient(gw.listen_addrs[0])
    c.send_chunks([hello()])
    assert c.closed_by_peer(hglib.scale(2))
    assert gwlib.refused(gw, "tls", "no_descriptors") == 1
    assert gw.backend.count() == 0
    gw.stop()


def test_accept_pauses_when_the_limit_runs_out_under_it():
    # The limit lowered under a running gateway to what it holds: accepting
    # pauses 100 ms at a time instead of spinning, each pause is counted,
    # and the line that says so (once a minute) counts the pauses since.
    gw = echo_gateway(200)
    # A new descriptor takes the lowest free number, which the limit must
    # not exceed. Measured once the admin requests of the start have closed.
    time.sleep(hglib.scale(0.5))
    taken = {int(f) for f in os.listdir(f"/proc/{gw.proc.pid}/fd")}
    lowest = min(set(range(len(taken) + 1)) - taken)
    resource.prlimit(gw.proc.pid, resource.RLIMIT_NOFILE, (lowest, 200))
    data = hello()
    c = hglib.RawClient(gw.listen_addrs[0])
    c.send_chunks([data])
    gw.wait_log(r"listener tls: accept paused for 100 ms: Too many open "
                r"files \(raise the open files limit\?\); 1 pause in this "
                r"worker since its last such line")
    time.sleep(hglib.scale(0.5))
    resource.prlimit(gw.proc.pid, resource.RLIMIT_NOFILE, (200, 200))
    assert c.recv_exactly(len(data)) == data
    paused = gw.metrics().value("hubgate_accept_paused_total", 0)
    assert paused >= 3, paused
    assert len(gw.log_lines("accept paused")) == 1
    c.close()
    gw.stop()


def test_out_of_descriptors_is_the_gateways_lack():
    # The open files limit lowered under a running gateway (prlimit) leaves
    # it fewer descriptors than it shared out at start: pipes kept for reuse
    # are given back when one is missing, and a connection that still gets
    # no backend socket ends as the gateway's lack (RC, no_descriptors), not
    # as a backend's failure.
    nofile = 160
    block = os.urandom(4 << 20)
    bulk = hglib.CaptureServer(reply=block)
    echo = hglib.CaptureServer(echo=True)
    gw = hglib.start_hubgate(f"""
workers: 1
timeouts:
  hello: 60s
listeners:
  - name: tls
    bind: ["127.0.0.1:{hglib.free_port()}"]
routes:
  - name: bulk
    sni: ["bulk.test"]
    backend: "{bulk.addr}"
  - name: hub
    sni: ["{SNI}"]
    backend: "{echo.addr}"
""", nofile=2 * nofile)
    resource.prlimit(gw.proc.pid, resource.RLIMIT_NOFILE, (nofile, nofile))
    pipes = fds(gw, "pipe:")
    bulk_burst(gw, 20, block, sni="bulk.test")
    kept = fds(gw, "pipe:") - pipes
    assert kept > 0, "no pipe kept for reuse"
    if (nofile - fds(gw) + kept) % 2 == 0:
        # So that the last client is accepted but gets no backend socket:
        # one more descriptor taken by a client still sending its hello.
        n = fds(gw)
        half = hglib.RawClient(gw.listen_addrs[0])
        half.send_chunks([hello()[:20]])
        hglib.wait_until(lambda: fds(gw) == n + 1, hglib.scale(5),
                         what="the half hello accepted")
    want = (nofile - fds(gw) + kept) // 2
    data = hello()
    tunnels = []
    for _ in range(nofile):  # bounded: each takes two descriptors
        c = hglib.RawClient(gw.listen_addrs[0])
        c.send_chunks([data])
        try:
            c.recv_exactly(len(data))
        except (EOFError, OSError):
            break
        tunnels.append(c)
    assert len(tunnels) >= want - 1, (len(tunnels), want, kept)
    line = gwlib.wait_access(gw, term="RC")
    assert line["reason"] == "no_descriptors", line
    assert line["route"] == "hub", line
    assert not gwlib.access_lines(gw, term="SC")
    n = open_now(gw)
    for t in tunnels[:2]:  # descriptors back: tunnels again
        t.close()
    hglib.wait_until(lambda: open_now(gw) == n - 2, hglib.scale(5),
                     what="two tunnels closed")
    tunnels.append(tunnel(gw, data))
    gw.stop()


if __name__ == "__main__":
    hglib.main(globals())
