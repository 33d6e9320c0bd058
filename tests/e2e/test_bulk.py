"""Bulk transfers arrive intact both ways (through buffers for small reads
and pipes for large ones), several at once, and leave no descriptor
behind."""

import hashlib
import os
import socket
import threading

import hglib

SNI = "hub.test"
SIZE = 8 * 1024 * 1024


def gateway(backend):
    return hglib.start_sni_gateway(backend.addr, SNI)


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


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
    before = fds(gw.proc.pid)
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
    left = fds(gw.proc.pid) - before
    assert 0 <= left <= 2 * 2 * streams, f"{left} descriptors left over"
    gw.stop()


if __name__ == "__main__":
    hglib.main(globals())
