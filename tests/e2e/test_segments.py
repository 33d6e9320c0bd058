"""Segments on the wire: the gateway sends none it can spare.

A reconnect storm is mostly handshakes and closes, and on every machine in
the path each segment costs as much as its payload. Two are spared per
tunnel, counted here with the kernel's own per-socket count of segments
received (TCP_INFO, tcpi_segs_in) at the far end:

- the backend connect's last handshake ACK rides on the ClientHello, which
  the gateway already holds when it connects;
- when a side sends its last bytes and its FIN together, the gateway
  passes them on together, one segment, in either direction.

And what must not come of either: a backend answering in two writes waits
for no delayed ACK; urgent data, on which recv(2) stops short, neither
stalls the stream nor ends it.
"""

import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwlib  # noqa: E402
import hglib  # noqa: E402

# struct tcp_info (linux/tcp.h): tcpi_segs_in and tcpi_data_segs_in.
SEGS_IN, DATA_SEGS_IN = 140, 152


def segs(sock):
    """(segments received, of which carried data) on sock."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 160)
    return (struct.unpack_from("I", info, SEGS_IN)[0],
            struct.unpack_from("I", info, DATA_SEGS_IN)[0])


def last_words(sock, data):
    """Sends data and the FIN in one segment."""
    sock.send(data, socket.MSG_MORE)
    sock.shutdown(socket.SHUT_WR)


class Tunnel:
    """A client routed through a fresh gateway to a backend socket the test
    holds; both ends have seen the ClientHello pass."""

    def __init__(self):
        ls = socket.create_server(("127.0.0.1", 0))
        hglib.on_cleanup(ls.close, "segments backend")
        host, port = ls.getsockname()
        gw_port = hglib.free_port()
        self.gw = hglib.start_hubgate(f"""
listeners:
  - name: tls
    bind: ["127.0.0.1:{gw_port}"]
routes:
  - name: seg
    sni: ["hub.test"]
    backend: "{host}:{port}"
""")
        self.hello = gwlib.wire_hello("hub.test")
        self.client = gwlib.Client(self.gw.listen_addrs[0])
        self.client.send(self.hello)
        ls.settimeout(hglib.scale(5))
        self.backend, _ = ls.accept()
        hglib.on_cleanup(self.backend.close, "segments backend socket")
        self.backend.settimeout(hglib.scale(5))
        got = b""
        while len(got) < len(self.hello):
            got += self.backend.recv(65536)
        assert got == self.hello

    def close(self):
        self.client.close()
        self.backend.close()
        self.gw.stop()


def test_connect_ack_rides_on_the_hello():
    t = Tunnel()
    # In: the SYN and the ClientHello, which also acknowledged the SYN-ACK;
    # no segment of its own for that ACK.
    total, data = segs(t.backend)
    assert data == 1, (total, data)
    assert total - data == 1, f"{total - data} segments without data"
    t.close()


def test_last_bytes_and_fin_down_in_one_segment():
    t = Tunnel()
    before = segs(t.client.sock)
    words = os.urandom(300)
    last_words(t.backend, words)
    assert gwlib.recv_to_eof(t.client.sock) == words
    after = segs(t.client.sock)
    assert after[0] - before[0] == 1, (before, after)
    t.close()


def test_last_bytes_and_fin_up_in_one_segment():
    t = Tunnel()
    before = segs(t.backend)
    words = os.urandom(300)
    last_words(t.client.sock, words)
    assert gwlib.recv_to_eof(t.backend) == words
    after = segs(t.backend)
    assert after[0] - before[0] == 1, (before, after)
    # The tunnel still ends cleanly once the backend is done too.
    reply = os.urandom(100)
    last_words(t.backend, reply)
    assert gwlib.recv_to_eof(t.client.sock) == reply
    line = gwlib.wait_access(t.gw, route="seg",
                             client=f"127.0.0.1:{t.client.local[1]}")
    assert line["term"] == "--" and line["reason"] == "eof", line
    assert line["bytes_up"] == str(len(t.hello) + len(words)), line
    t.close()


def test_backend_answering_in_two_writes_waits_for_no_delayed_ack():
    # A backend with Nagle on (the default) sends its second small write
    # only once its first is acknowledged: were the gateway still delaying
    # its ACKs, that would take the 40 ms of the kernel's delayed ACK.
    waits = []
    for _ in range(3):
        t = Tunnel()
        start = time.monotonic()
        t.backend.send(b"a" * 100)
        t.backend.send(b"b" * 100)
        assert t.client.recv_exactly(200) == b"a" * 100 + b"b" * 100
        waits.append(time.monotonic() - start)
        t.close()
    assert min(waits) < 0.02, [f"{w * 1000:.1f} ms" for w in waits]


def urgent_burst(sock, before, after, fin):
    """before, one byte of TCP urgent data, after (and the FIN), in one
    segment: recv(2) stops short at the urgent mark."""
    sock.send(before, socket.MSG_MORE)
    sock.send(b"U", socket.MSG_OOB | socket.MSG_MORE)
    sock.send(after, socket.MSG_MORE if fin else 0)
    if fin:
        sock.shutdown(socket.SHUT_WR)


def recv_n(sock, n):
    sock.settimeout(hglib.scale(5))
    data = b""
    while len(data) < n:
        chunk = sock.recv(65536)
        assert chunk, f"EOF after {len(data)} of {n} bytes"
        data += chunk
    return data


def test_urgent_data_neither_stalls_nor_ends_the_stream():
    # The urgent byte itself is dropped (TLS never sends one); every byte
    # around it arrives, whether or not the FIN follows, both ways.
    before, after = b"A" * 1000, b"B" * 1000
    for fin in (False, True):
        t = Tunnel()
        urgent_burst(t.client.sock, before, after, fin)
        got = gwlib.recv_to_eof(t.backend) if fin else \
            recv_n(t.backend, len(before + after))
        assert got == before + after, (fin, len(got))
        urgent_burst(t.backend, before, after, fin)
        got = gwlib.recv_to_eof(t.client.sock) if fin else \
            recv_n(t.client.sock, len(before + after))
        assert got == before + after, (fin, len(got))
        if fin:
            line = gwlib.wait_access(t.gw, route="seg",
                                     client=f"127.0.0.1:{t.client.local[1]}")
            assert line["term"] == "--" and line["reason"] == "eof", line
        t.close()


def test_reset_after_last_bytes_is_not_eof():
    # Bytes, then a reset in place of a FIN: the client gets the bytes,
    # and the access log says the backend reset the tunnel.
    t = Tunnel()
    words = os.urandom(300)
    t.backend.send(words)
    t.backend.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                         struct.pack("ii", 1, 0))
    t.backend.close()
    got = gwlib.recv_to_eof(t.client.sock)
    line = gwlib.wait_access(t.gw, route="seg",
                             client=f"127.0.0.1:{t.client.local[1]}")
    assert line["term"] == "SD" and line["reason"] == "server_reset", line
    assert got == words, len(got)
    t.close()


def test_fin_waits_for_bytes_the_reader_has_no_room_for():
    # The last bytes are more than the client's socket takes while it does
    # not read: the FIN still comes after every one of them.
    t = Tunnel()
    words = os.urandom(20_000_000)
    done = threading.Event()

    def send():
        t.backend.sendall(words, socket.MSG_MORE)
        t.backend.shutdown(socket.SHUT_WR)
        done.set()

    threading.Thread(target=send, daemon=True).start()
    time.sleep(0.3)
    got = gwlib.recv_to_eof(t.client.sock)
    assert done.wait(hglib.scale(5))
    assert got == words, (len(got), len(words))
    t.close()


if __name__ == "__main__":
    hglib.main(globals())
