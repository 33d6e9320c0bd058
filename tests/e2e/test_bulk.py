"""Bulk transfers arrive intact both ways (through buffers for small reads
and pipes for large ones), several at once, and leave no descriptor
behind."""

import hashlib
import os
import re
import socket
import threading
import time

import hglib

SNI = "hub.test"
SIZE = 8 * 1024 * 1024


def gateway(backend):
    return hglib.start_sni_gateway(backend.addr, SNI)


def echo_roundtrip(addr, hello, payload, result, i):
    """Sends the hello then payload while reading the echo concurrently;
    stores the SHA-256 of what came back."""
    s = socket.create_connection(hglib.split_hostport(addr), timeout=30)
    want = len(hello) + len(payload)

    def send():
        s.sendall(hello)
        for off in range(0, len(payload), 65536):
            s.sendall(payload[off:off + 65536])
        s.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=send)
    t.start()
    h, got = hashlib.sha256(), 0
    while True:
        chunk = s.recv(262144)
        if not chunk:
            break
        h.update(chunk)
        got += len(chunk)
    t.join()
    s.close()
    result[i] = (got == want, h.hexdigest())


def test_bulk_streams_intact():
    backend = hglib.CaptureServer(echo=True)
    gw = gateway(backend)
    before = hglib.open_fds(gw.proc.pid)
    hello = hglib.tls_records(hglib.client_hello(SNI))
    streams = 4
    payloads = [os.urandom(SIZE) for _ in range(streams)]
    result = [None] * streams
    threads = [threading.Thread(target=echo_roundtrip,
                                args=(gw.listen_addrs[0], hello, p, result,
                                      i))
               for i, p in enumerate(payloads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for i, p in enumerate(payloads):
        want = hashlib.sha256(hello + p).hexdigest()
        assert result[i] == (True, want), f"stream {i}: {result[i]}"
    hglib.wait_until(
        lambda: gw.metrics().sum("hubgate_connections_active") == 0,
        what="tunnels closed")
    m = gw.metrics()
    total = streams * (len(hello) + SIZE)
    assert m.sum("hubgate_bytes_total", direction="up") == total
    assert m.sum("hubgate_bytes_total", direction="down") == total
    # Pooled pipes may stay open for the next bulk tunnel, a few per
    # worker; nothing else may be left.
    left = hglib.open_fds(gw.proc.pid) - before
    assert 0 <= left <= 2 * 2 * streams, f"{left} descriptors left over"
    gw.stop()


class Source:
    """A backend that, once go is set, sends its connection `total` bytes
    in writes of `piece`, pausing `pause` seconds after each, then closes
    its side. Bounded: it gives up once a socket call has waited 30 s."""

    def __init__(self, total, piece, pause=0.0):
        self.total, self.piece, self.pause = total, piece, pause
        self.data = os.urandom(total)
        self.go = threading.Event()
        self.accepted = threading.Event()
        self.sock = listener()
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn = accept(self.sock)
        self.accepted.set()
        self.go.wait(60)
        for off in range(0, self.total, self.piece):
            conn.sendall(self.data[off:off + self.piece])
            if self.pause:
                time.sleep(self.pause)
        # Unread bytes (the hello) would turn the close into a reset.
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(65536):
            pass
        conn.close()


def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    hglib.on_cleanup(s.close, "backend listener")
    return s


def accept(sock):
    conn, _ = sock.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.settimeout(30)
    hglib.on_cleanup(conn.close, "backend connection")
    return conn


def open_tunnel(gw):
    c = socket.create_connection(hglib.split_hostport(gw.listen_addrs[0]),
                                 timeout=30)
    c.sendall(hglib.tls_records(hglib.client_hello(SNI)))
    return c


def read_exactly(c, n, timeout):
    """Reads n bytes, or what came before the peer closed or nothing came
    for timeout seconds."""
    c.settimeout(timeout)
    got = bytearray()
    try:
        while len(got) < n:
            chunk = c.recv(1 << 20)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        pass
    return bytes(got)


def unread(conn):
    """Bytes queued unread at the other end of conn, a loopback TCP
    connection, from /proc/net/tcp (matched on both addresses: a closed
    connection may have left the same local port in TIME_WAIT)."""
    def hexaddr(addr):
        ip, port = addr
        return "%s:%04X" % ("".join("%02X" % int(b)
                                    for b in reversed(ip.split("."))), port)
    local, remote = hexaddr(conn.getpeername()), hexaddr(conn.getsockname())
    with open("/proc/net/tcp") as f:
        for line in f:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"no socket {local} to {remote} in /proc/net/tcp")


def wakeups(pid):
    """Voluntary context switches of all of a process's threads: each is a
    wait that something ended."""
    n = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            n += int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)",
                               f.read(), re.M).group(1))
    return n


def test_stalled_reader_does_not_wake_the_gateway():
    # The client reads nothing. The backend sends until the gateway stops
    # reading from it (the tunnel's pipe is full, and so is the client's
    # side), then small segments the gateway has room for but cannot pass
    # on: the gateway waits for the client only, not for each of them.
    # Then the client reads, and every byte arrives.
    ls = listener()
    gw = hglib.start_sni_gateway("127.0.0.1:%d" % ls.getsockname()[1], SNI)
    c = open_tunnel(gw)
    conn = accept(ls)
    sent = bytearray()
    deadline = time.monotonic() + hglib.scale(20)
    while True:
        chunk = os.urandom(65536)
        conn.sendall(chunk)
        sent += chunk
        time.sleep(0.02)
        if unread(conn) > 0:
            time.sleep(0.2)
            if unread(conn) > 0:
                break  # left unread: the gateway has stopped reading
        assert time.monotonic() < deadline, "the gateway never stopped"
    time.sleep(0.3)
    before = wakeups(gw.proc.pid)
    for _ in range(40):
        piece = os.urandom(512)
        conn.sendall(piece)
        sent += piece
        time.sleep(0.01)
    time.sleep(0.1)
    woke = wakeups(gw.proc.pid) - before
    conn.shutdown(socket.SHUT_WR)
    got = read_exactly(c, len(sent) + 1, hglib.scale(10))
    assert got == sent, f"{len(got)} of {len(sent)} bytes, or not as sent"
    # A few for timers; one for each segment would be 40.
    assert woke < 12, f"the gateway woke {woke} times for 40 segments"
    c.close()
    gw.stop()


def test_small_segments_all_arrive():
    # A backend sending small segments as fast as it can to clients that
    # read nothing, until it has to wait: the gateway's socket then holds
    # many small segments, more than one pipe takes at once (each takes one
    # of its slots). A pipe read short of the pipe must not be taken for an
    # empty socket: with nothing more coming from the backend, what was
    # left would stay there. Whether it comes to that depends on how the
    # kernel merges queued segments, hence several tunnels, several times.
    ls = listener()
    gw = hglib.start_sni_gateway("127.0.0.1:%d" % ls.getsockname()[1], SNI)
    block = os.urandom(1 << 20)
    for _ in range(3):
        flood_and_read(gw, ls, block, tunnels=6)
    gw.stop()


def flood_and_read(gw, ls, block, tunnels):
    clients, conns = [], []
    for _ in range(tunnels):
        clients.append(open_tunnel(gw))
        conns.append(accept(ls))
    sent = [0] * tunnels

    def flood(i):
        # 1 KiB writes until one has waited a second, or 64 MiB
        conns[i].settimeout(hglib.scale(1))
        try:
            while sent[i] < 64 << 20:
                off = sent[i] % len(block)
                conns[i].sendall(block[off:off + 1024])
                sent[i] += 1024
        except socket.timeout:
            pass  # how much of the last write went is not known: stop
    threads = [threading.Thread(target=flood, args=(i,))
               for i in range(tunnels)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for i, c in enumerate(clients):
        got = read_exactly(c, sent[i], hglib.scale(5))
        want = (block * (sent[i] // len(block) + 1))[:len(got)]
        assert got == want, f"tunnel {i}: the bytes differ from those sent"
        assert len(got) == sent[i], \
            f"tunnel {i}: {len(got)} of {sent[i]} bytes arrived"
        c.close()
        conns[i].close()


def test_bulk_stays_in_pipes_when_reads_come_short():
    # The backend sends 100 KiB at a time, so each read brings less than a
    # pipe holds but more than a buffer does: the bytes still go through
    # pipes, never copied through the gateway's memory.
    piece, pieces = 100 * 1024, 150
    src = Source(piece * pieces, piece, pause=0.003)
    gw = gateway(src)
    c = open_tunnel(gw)
    assert src.accepted.wait(10), "the backend got no connection"
    trace = hglib.Strace(gw.proc.pid, ["recvfrom", "sendto", "splice"])
    src.go.set()
    got = read_exactly(c, src.total + 1, hglib.scale(10))
    counts = trace.stop()
    assert got == src.data, f"{len(got)} of {src.total} bytes, or not as sent"
    assert counts.get("splice", 0) >= pieces, counts
    copies = counts.get("recvfrom", 0) + counts.get("sendto", 0)
    assert copies <= 8, f"{copies} reads and writes through memory: {counts}"
    c.close()
    gw.stop()


if __name__ == "__main__":
    hglib.main(globals())
