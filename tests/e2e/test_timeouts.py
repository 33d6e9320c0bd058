"""Timers of a tunnel and of the gateway's life: idle timeout, connect
timeout with the next address tried, TCP keepalive on both sides, and the
drain on SIGTERM (ready delay, then closes spread over the window)."""

import re
import selectors
import socket
import subprocess
import threading
import time

import hglib

SNI = "hub.test"


def hello():
    return hglib.tls_records(hglib.client_hello(SNI))


def gateway(backend, extra=""):
    return hglib.start_sni_gateway(backend, SNI, extra)


def access_lines(gw):
    return [l for l in gw.stderr().splitlines() if " access " in l]


def field(line, key):
    m = re.search(rf"\b{key}=(\S+)", line)
    return m.group(1) if m else None


def test_idle_timeout_closes_quiet_tunnel():
    backend = hglib.CaptureServer(echo=True)
    gw = gateway(backend.addr, "timeouts:\n  idle: 1s\n")
    c = hglib.RawClient(gw.listen_addrs[0])
    data = hello()
    c.send_chunks([data])
    assert c.recv_exactly(len(data)) == data
    t0 = time.monotonic()
    # Traffic resets the timer: keep talking for longer than the timeout.
    for _ in range(4):
        time.sleep(0.4)
        c.send_chunks([b"ping"])
        assert c.recv_exactly(4) == b"ping"
    assert time.monotonic() - t0 > 1.5
    assert not c.closed_by_peer(wait=0.1)
    t1 = time.monotonic()
    assert c.recv_until_closed(timeout=5) == b""
    quiet = time.monotonic() - t1
    assert 0.8 <= quiet <= 3.0, f"closed after {quiet:.2f} s of silence"
    hglib.wait_until(lambda: access_lines(gw), what="access line")
    line = access_lines(gw)[0]
    assert field(line, "term") == "ID", line
    assert field(line, "reason") == "idle_timeout", line
    gw.stop()


def burst_tunnel(size, rcvbuf=None):
    """A gateway with an idle time of 1 s in front of a backend that sends
    size bytes at once, then stays open and silent (reading what comes, so
    that its close is clean), and a client through it that has sent its
    hello. Returns (gateway, client socket, the bytes)."""
    data = bytes(range(256)) * (size // 256)
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    hglib.on_cleanup(ls.close)

    def serve():
        conn, _ = ls.accept()
        hglib.on_cleanup(conn.close)
        conn.settimeout(60)
        try:
            conn.sendall(data)
            while conn.recv(65536):
                pass
        except OSError:
            pass
    threading.Thread(target=serve, daemon=True).start()
    gw = gateway("127.0.0.1:%d" % ls.getsockname()[1],
                 "timeouts:\n  idle: 1s\n")
    c = socket.create_connection(hglib.split_hostport(gw.listen_addrs[0]),
                                 timeout=10)
    if rcvbuf:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    c.sendall(hello())
    return gw, c, data


def test_slow_reader_is_not_idle():
    # The backend's burst waits in the kernel's buffers, where a slow
    # device takes it in over several idle times: the gateway has nothing
    # to do meanwhile, but bytes still move, so the tunnel is not idle.
    gw, c, data = burst_tunnel(3 << 20, rcvbuf=65536)
    got = bytearray()
    t0 = time.monotonic()
    while len(got) < len(data) and time.monotonic() - t0 < 60:
        chunk = c.recv(8192)
        if not chunk:
            break
        got += chunk
        time.sleep(0.01)  # under 800 KB/s: over a second per MB
    took = time.monotonic() - t0
    assert bytes(got) == data, \
        f"{len(got)} of {len(data)} bytes in {took:.1f} s, then EOF"
    assert took > 2, f"read in {took:.1f} s: not slow enough to tell"
    # Once the device has it all, the tunnel is idle and goes; not before.
    c.settimeout(10)
    assert c.recv(1) == b""
    line = access_lines(gw)[0]
    assert field(line, "term") == "ID", line
    lasted = int(field(line, "duration_ms")) / 1000
    assert lasted >= took, f"closed after {lasted:.1f} s, read for {took:.1f}"
    c.close()
    gw.stop()


def test_reader_taking_nothing_is_idle():
    # The same burst to a device that reads nothing: bytes wait for it,
    # but none move, so the tunnel goes within two idle times.
    gw, c, _ = burst_tunnel(8 << 20)
    t0 = time.monotonic()
    hglib.wait_until(lambda: access_lines(gw), timeout=10,
                     what="the tunnel closed")
    took = time.monotonic() - t0
    assert 0.9 <= took <= 3.5, f"closed after {took:.1f} s"
    line = access_lines(gw)[0]
    assert field(line, "term") == "ID", line
    # The gateway still held bytes for the device: it resets the
    # connection rather than end a stream the device would take for whole,
    # and counts only what it handed on.
    c.settimeout(10)
    got, reset = 0, False
    try:
        while True:
            chunk = c.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
    except ConnectionResetError:
        reset = True
    assert reset, f"a clean end of stream after {got} bytes"
    assert got <= int(field(line, "bytes_down")) < 8 << 20, (got, line)
    c.close()
    gw.stop()


def full_backlog_listener():
    """A listener whose accept queue is full, so new SYNs go unanswered:
    a connect to it hangs until the caller's timeout."""
    s = socket.socket()
    s.bind(("127.0.0.11", 0))
    s.listen(0)
    port = s.getsockname()[1]
    fillers = []
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.11", port))
        fillers.append(f)
    time.sleep(0.2)
    hglib.on_cleanup(lambda: [x.close() for x in fillers + [s]])
    return port


def test_connect_timeout_tries_next_address():
    port = full_backlog_listener()
    good = hglib.CaptureServer(host="127.0.0.12", port=port, echo=True)
    dns = hglib.start_dnsmasq({"multi.test": ["127.0.0.11", "127.0.0.12"]},
                              ttl=60)
    gw = gateway(f"multi.test:{port}", f"""timeouts:
  connect: 400ms
resolver:
  servers: ["{dns.server}"]
""")
    data = hello()
    for _ in range(4):
        got = hglib.tcp_exchange(gw.listen_addrs[0], [data], read=len(data))
        assert got == data
    assert len(good.connections) == 4
    hglib.wait_until(lambda: len(access_lines(gw)) == 4, what="4 lines")
    slow = [l for l in access_lines(gw) if int(field(l, "connect_ms")) >= 350]
    # Each worker starts its first connection at the first address, the
    # silent one: at least one connection waited out the connect timeout
    # there, then reached the second address.
    assert 1 <= len(slow) <= 3, access_lines(gw)
    for line in access_lines(gw):
        assert field(line, "backend") == f"127.0.0.12:{port}", line
    gw.stop()


def keepalive_timers(pid):
    """The TCP sockets of pid with their timers, as ss shows them."""
    out = subprocess.run(["ss", "-tnoHp", "state", "established"],
                         capture_output=True, text=True, check=True).stdout
    return [l for l in out.splitlines() if f"pid={pid}," in l]


def test_keepalive_both_sides():
    hglib.need_tool("ss")
    backend = hglib.CaptureServer(echo=True)
    gw = gateway(backend.addr, "tcp_keepalive: 7s\n")
    c = hglib.RawClient(gw.listen_addrs[0])
    data = hello()
    c.send_chunks([data])
    assert c.recv_exactly(len(data)) == data
    t0 = time.monotonic()

    def both():
        lines = keepalive_timers(gw.proc.pid)
        tunnel = [l for l in lines if "keepalive" in l]
        return tunnel if len(tunnel) == 2 else None

    # One socket toward the client (inherited from the listener), one
    # toward the backend, set within a second of connecting: 7 s / 8.
    tunnel = hglib.wait_until(both, hglib.scale(5),
                              what="keepalive on both sockets")
    assert time.monotonic() - t0 < hglib.scale(3), tunnel
    assert any(backend.addr in l for l in tunnel), tunnel
    for line in tunnel:  # tcp_keepalive's 7 s, not the kernel's 2 h
        m = re.search(r"timer:\(keepalive,(?:(\d+)min)?([\d.]+)(ms|sec)",
                      line)
        assert m and not m.group(1), line
        left = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
        assert left <= 7, line
    c.close()
    gw.stop()


def when_closed(clients, t0, timeout):
    """Seconds after t0 at which each client saw its peer close."""
    sel = selectors.DefaultSelector()
    for c in clients:
        sel.register(c.sock, selectors.EVENT_READ, c)
    closed_at = []
    deadline = time.monotonic() + timeout
    while len(closed_at) < len(clients) and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.1):
            try:
                data = key.fileobj.recv(65536)
            except ConnectionResetError:
                data = b""
            assert data == b"", data
            closed_at.append(time.monotonic() - t0)
            sel.unregister(key.fileobj)
    assert len(closed_at) == len(clients), closed_at
    return closed_at


def test_drain_on_sigterm():
    backend = hglib.CaptureServer(echo=True)
    gw = gateway(backend.addr, "shutdown:\n  ready_delay: 1s\n"
                 "  drain: 2s\n")
    data = hello()
    clients = []
    for _ in range(6):
        c = hglib.RawClient(gw.listen_addrs[0])
        c.send_chunks([data])
        assert c.recv_exactly(len(data)) == data
        clients.append(c)
    t0 = time.monotonic()
    gw.proc.send_signal(15)
    hglib.wait_until(lambda: gw.readyz() == 503, timeout=1,
                     what="readyz 503")
    # Still accepting during the ready delay: the load balancer has not
    # noticed yet, and devices it sends must not fail.
    late = hglib.tcp_exchange(gw.listen_addrs[0], [data], read=len(data))
    assert late == data
    # Once the ready delay is over, the listening sockets are closed: new
    # connections are refused at once rather than queued for nobody, while
    # the open tunnels are still being drained.
    time.sleep(max(0.0, t0 + 1.4 - time.monotonic()))
    refused = False
    try:
        socket.create_connection(hglib.split_hostport(gw.listen_addrs[0]),
                                 timeout=2).close()
    except ConnectionRefusedError:
        refused = True
    assert refused, "a new connection was accepted during the drain"
    closed_at = when_closed(clients, t0, timeout=10)
    assert gw.proc.wait(10) == 0
    # None before the ready delay; spread over the drain window after it.
    assert min(closed_at) >= 0.9, closed_at
    # The last closes come late in the window, not all at its start.
    assert max(closed_at) >= 1.0 + 1.0, closed_at
    assert max(closed_at) <= 1.0 + 2.0 + 1.0, closed_at
    terms = sorted(field(l, "term") for l in access_lines(gw))
    # The six held tunnels were closed by the drain; the late one ended
    # normally when its client closed.
    assert terms == ["--"] + ["PD"] * 6, terms


if __name__ == "__main__":
    hglib.main(globals())
