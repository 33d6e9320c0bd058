"""gwlib: what the gateway tests (hello splits, routing, resolve, allow,
hostile memory) add to hglib.

Python 3 standard library only; everything talks to loopback addresses.

- build_hello(): a TLS ClientHello handshake message with a chosen SNI (or
  none), extension order, padding extension size and a fake key share of N
  bytes (1.9 KB "post-quantum size" hellos); extensions() finds where each
  extension sits in it.
- reframe() / records(): wrap a handshake message in TLS records, cut at
  the offsets asked for (e.g. inside the server_name extension).
- Client: a TCP client (TCP_NODELAY) that can bind a source address, send
  in separate segments and tell when the peer closed.
- Recorder: a TCP relay that records what a client program (openssl
  s_client) sent and received, to compare with what reached the backend.
- small helpers for metrics, log lines and /proc.
"""

import contextlib
import json
import os
import re
import socket
import struct
import threading
import time

import hglib

# --------------------------------------------------------------------------
# ClientHello
# --------------------------------------------------------------------------

EXT_TYPES = {
    "sni": 0x0000,
    "groups": 0x000A,
    "ec_formats": 0x000B,
    "sig_algs": 0x000D,
    "alpn": 0x0010,
    "padding": 0x0015,
    "ems": 0x0017,
    "versions": 0x002B,
    "psk_modes": 0x002D,
    "key_share": 0x0033,
    "reneg": 0xFF01,
}

DEFAULT_ORDER = ("sni", "ems", "reneg", "groups", "ec_formats", "alpn",
                 "sig_algs", "versions", "psk_modes", "key_share", "padding")

PQ_GROUP = 0x11EC  # X25519MLKEM768; its real share is 1216 bytes


def _vec(body, width=2):
    return len(body).to_bytes(width, "big") + body


def _ext(etype, body):
    return struct.pack(">HH", etype, len(body)) + body


def build_hello(sni=None, order=DEFAULT_ORDER, padding=None, key_share=0,
                session_id=True, pad_to=None, extra=()):
    """Returns a TLS 1.3 ClientHello handshake message (type 1, 3-byte
    length, body), not yet in a record.

    sni: host name (str or bytes) for server_name; None leaves the extension
      out (whatever `order` says).
    order: extension names (keys of EXT_TYPES) in the order they appear;
      names left out of the list are left out of the hello.
    padding: size of the padding extension's body (None: no padding).
    pad_to: instead of padding, pad so the message has exactly this many
      bytes (at least the unpadded size + 4).
    key_share: bytes of a fake post-quantum key share (group 0x11EC) put
      before the X25519 share; 0 for X25519 alone. 1800 makes a ~1.9 KB
      hello.
    extra: [(type, body)] extensions appended after `order`.
    """
    rnd = os.urandom(32)
    sid = os.urandom(32) if session_id else b""
    suites = struct.pack(">5H", 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F)
    groups = ([PQ_GROUP] if key_share else []) + [0x001D, 0x0017]
    shares = b""
    if key_share:
        shares += struct.pack(">H", PQ_GROUP) + _vec(os.urandom(key_share))
    shares += struct.pack(">H", 0x001D) + _vec(os.urandom(32))
    bodies = {
        "ems": b"",
        "reneg": b"\x00",
        "groups": _vec(b"".join(struct.pack(">H", g) for g in groups)),
        "ec_formats": b"\x01\x00",
        "alpn": _vec(_vec(b"h2", 1) + _vec(b"http/1.1", 1)),
        "sig_algs": _vec(struct.pack(">4H", 0x0403, 0x0804, 0x0401,
                                     0x0503)),
        "versions": _vec(b"\x03\x04\x03\x03", 1),
        "psk_modes": _vec(b"\x01", 1),
        "key_share": _vec(shares),
    }
    if sni is not None:
        name = sni.encode() if isinstance(sni, str) else bytes(sni)
        bodies["sni"] = _vec(b"\x00" + _vec(name))

    def build(pad_len):
        exts = []
        for n in order:
            if n == "padding":
                if pad_len is not None:
                    exts.append(_ext(EXT_TYPES["padding"],
                                     b"\x00" * pad_len))
            elif n in bodies:
                exts.append(_ext(EXT_TYPES[n], bodies[n]))
            elif n != "sni":
                raise ValueError(f"unknown extension {n!r}")
        exts += [_ext(t, b) for t, b in extra]
        body = (b"\x03\x03" + rnd + _vec(sid, 1) + _vec(suites) +
                b"\x01\x00" + _vec(b"".join(exts)))
        return b"\x01" + len(body).to_bytes(3, "big") + body

    if pad_to is not None:
        if "padding" not in order:
            raise ValueError("pad_to needs 'padding' in order")
        base = len(build(None))
        if pad_to < base + 4:
            raise ValueError(f"hello is {base} bytes; pad_to needs at least "
                             f"{base + 4}")
        msg = build(pad_to - base - 4)
        assert len(msg) == pad_to
        return msg
    return build(padding)


def extensions(msg):
    """Parses a handshake message made by build_hello (or any ClientHello):
    returns [(name or type, start, body_start, end)] with offsets into msg
    (start: the extension's type field; end: one past its body)."""
    names = {v: k for k, v in EXT_TYPES.items()}
    assert msg[0] == 1, "not a ClientHello"
    off = 4 + 34
    off += 1 + msg[off]                                     # session id
    off += 2 + int.from_bytes(msg[off:off + 2], "big")      # suites
    off += 1 + msg[off]                                     # compression
    total = int.from_bytes(msg[off:off + 2], "big")
    off += 2
    end_all = off + total
    out = []
    while off < end_all:
        etype, elen = struct.unpack(">HH", msg[off:off + 4])
        out.append((names.get(etype, etype), off, off + 4, off + 4 + elen))
        off += 4 + elen
    assert off == end_all == len(msg), "extensions do not fill the message"
    return out


def sni_span(msg):
    """(start, end) of the host name bytes inside msg, or None."""
    for name, _, body, end in extensions(msg):
        if name == "sni":
            return body + 5, end
    return None


def record(payload, ctype=22, version=0x0301):
    """One TLS record with this payload (no length check)."""
    return struct.pack(">BHH", ctype, version, len(payload)) + payload


def records(msg, size=16384, version=0x0301):
    """msg in records of at most `size` payload bytes."""
    return b"".join(record(msg[i:i + size], version=version)
                    for i in range(0, len(msg), size))


def reframe(msg, cuts, version=0x0301):
    """Splits the handshake message msg into TLS records at the given
    offsets (into msg): cuts [a, b] gives records msg[:a], msg[a:b],
    msg[b:]. Returns the bytes to send."""
    bounds = [0] + sorted(cuts) + [len(msg)]
    out = b""
    for lo, hi in zip(bounds, bounds[1:]):
        if hi <= lo:
            raise ValueError(f"empty record at cut {lo}")
        if hi - lo > 16384:
            raise ValueError(f"record of {hi - lo} bytes > 16384")
        out += record(msg[lo:hi], version=version)
    return out


def wire_hello(sni, **kw):
    """A hello from build_hello(sni, **kw) in one record, ready to send."""
    return records(build_hello(sni, **kw))


def named_backend(name, host="127.0.0.1", port=0, **kw):
    """A capture server that answers every connection with "<name>", so a
    client can tell where the gateway sent it."""
    return hglib.CaptureServer(host=host, port=port,
                               reply=f"<{name}>".encode(), name=name, **kw)


def common_port(hosts, tries=50):
    """A TCP port free on every host in `hosts` just now (for backends that
    must share a port number, or a listener and a backend on the same
    port)."""
    for _ in range(tries):
        held = []
        try:
            first = socket.socket(socket.AF_INET6 if ":" in hosts[0]
                                  else socket.AF_INET)
            held.append(first)
            first.bind((hosts[0], 0))
            port = first.getsockname()[1]
            ok = True
            for h in hosts[1:]:
                s = socket.socket(socket.AF_INET6 if ":" in h
                                  else socket.AF_INET)
                held.append(s)
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
                    break
            if ok:
                return port
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no common free port on {hosts}")


# --------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------

class Client:
    """A TCP client for byte-level tests. source: a local address to bind
    (e.g. "127.0.0.5") before connecting."""

    def __init__(self, addr, source=None, timeout=5.0):
        host, port = hglib.split_hostport(addr)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        hglib.on_cleanup(self.close, f"client to {addr}")
        if source:
            self.sock.bind((source, 0))
        self.sock.settimeout(hglib.scale(timeout))
        self.sock.connect((host, port))
        self.local = self.sock.getsockname()
        self.received = b""

    def send(self, data):
        self.sock.sendall(data)

    def send_segments(self, data, size=1, delay=0.002):
        """Writes data `size` bytes at a time, sleeping `delay` between
        writes, so that (with TCP_NODELAY) each is its own segment."""
        for i in range(0, len(data), size):
            if i:
                time.sleep(delay)
            self.sock.sendall(data[i:i + size])

    def try_send(self, data):
        """sendall that tolerates the peer closing or resetting; returns
        False when it did."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def recv_exactly(self, n, timeout=5.0):
        deadline = time.monotonic() + hglib.scale(timeout)
        while len(self.received) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"have {len(self.received)} of {n} "
                                   f"bytes: {self.received[:60]!r}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"closed after {len(self.received)} of {n} "
                               f"bytes")
            self.received += chunk
        out, self.received = self.received[:n], self.received[n:]
        return out

    def recv_reply(self, done, timeout=5.0):
        """Reads until done(bytes so far) is true or the peer closes (EOF
        or reset); returns the bytes (b"" when it closed without one)."""
        got = b""
        self.sock.settimeout(hglib.scale(timeout))
        try:
            while not done(got):
                chunk = self.sock.recv(100)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
        return got

    def wait_closed(self, timeout=5.0):
        """Reads until the peer closes (EOF or reset) or `timeout` seconds
        (not scaled) pass. Returns (closed, bytes read, seconds waited)."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        data = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, data, time.monotonic() - t0
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return True, data, time.monotonic() - t0
            if not chunk:
                return True, data, time.monotonic() - t0
            data += chunk

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()


def recv_to_eof(sock, timeout=5.0):
    """Every byte until the peer's FIN; raises on a reset or a timeout."""
    sock.settimeout(hglib.scale(timeout))
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def exchange(gw_addr, backend, data, reply_len, source=None, n_before=None):
    """Connects to gw_addr, sends data (hello + anything), waits for the
    backend's new connection to hold all of data and for reply_len bytes
    back. Returns (client, backend conn, reply)."""
    before = backend.count() if n_before is None else n_before
    c = Client(gw_addr, source=source)
    c.send(data)
    conn = backend.wait_connections(before + 1)[before]
    backend.wait_bytes(conn, len(data))
    reply = c.recv_exactly(reply_len) if reply_len else b""
    return c, conn, reply


# --------------------------------------------------------------------------
# Recorder: a relay that keeps what a real client sent and received
# --------------------------------------------------------------------------

class Recorder:
    """Listens on 127.0.0.1; relays one connection to `target` and records
    the bytes each way (.up: from the client, .down: to it)."""

    def __init__(self, target):
        self.target = target
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.addr = hglib.join_hostport("127.0.0.1",
                                        self.sock.getsockname()[1])
        self.up = b""
        self.down = b""
        self.done = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        hglib.on_cleanup(self.close, f"recorder {self.addr}")

    def _run(self):
        import selectors
        self.sock.settimeout(hglib.scale(30))
        try:
            cli, _ = self.sock.accept()
        except OSError:
            self.done.set()
            return
        host, port = hglib.split_hostport(self.target)
        srv = socket.create_connection((host, port), timeout=5)
        for s in (cli, srv):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(cli, selectors.EVENT_READ, "up")
        sel.register(srv, selectors.EVENT_READ, "down")
        open_dirs = {"up", "down"}
        deadline = time.monotonic() + hglib.scale(30)
        try:
            while open_dirs and time.monotonic() < deadline:
                for key, _ in sel.select(0.2):
                    src = key.fileobj
                    dst = srv if key.data == "up" else cli
                    try:
                        chunk = src.recv(65536)
                    except BlockingIOError:
                        continue
                    except ConnectionResetError:
                        chunk = b""
                    if chunk:
                        if key.data == "up":
                            self.up += chunk
                        else:
                            self.down += chunk
                        dst.setblocking(True)
                        with contextlib.suppress(OSError):
                            dst.sendall(chunk)
                        dst.setblocking(False)
                    else:
                        sel.unregister(src)
                        open_dirs.discard(key.data)
                        with contextlib.suppress(OSError):
                            dst.shutdown(socket.SHUT_WR)
        finally:
            cli.close()
            srv.close()
            self.done.set()

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()


# --------------------------------------------------------------------------
# Metrics, logs, /proc
# --------------------------------------------------------------------------

def refused(gw, listener, reason, metrics=None):
    """hubgate_refused_total{listener, reason} (0 when absent)."""
    m = metrics or gw.metrics()
    return m.value("hubgate_refused_total", 0, listener=listener,
                   reason=reason)


def refused_all(gw, listener):
    """{reason: count} of one listener."""
    return {lb["reason"]: v for lb, v in
            gw.metrics().select("hubgate_refused_total")
            if lb.get("listener") == listener}


def wait_refused(gw, listener, reason, want, timeout=5.0):
    """Waits until the refused counter equals `want`; returns it. Fails
    (AssertionError) if it goes past want or never gets there."""
    def check():
        v = refused(gw, listener, reason)
        assert v <= want, f"refused{{{listener},{reason}}} = {v} > {want}"
        return v == want
    try:
        hglib.wait_until(check, hglib.scale(timeout), 0.05,
                         what=f"refused{{{listener},{reason}}} == {want}")
    except TimeoutError:
        raise AssertionError(
            f"refused{{{listener},{reason}}} = "
            f"{refused(gw, listener, reason)}, want {want}; all: "
            f"{refused_all(gw, listener)}") from None
    return want


def log_fields(line):
    """The key=value fields of a text-format log line; a quoted value is
    unescaped (JSON escapes)."""
    return {k: json.loads(v) if v.startswith('"') else v
            for k, v in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line)}


def access_lines(gw, **fields):
    """Access log lines (text format) whose key=value fields match."""
    out = []
    for line in gw.log_lines(r"\baccess\b"):
        kv = log_fields(line)
        if all(kv.get(k) == str(v) for k, v in fields.items()):
            out.append(kv)
    return out


def wait_access(gw, timeout=5.0, **fields):
    """Waits for an access line matching fields; returns its fields."""
    return hglib.wait_until(lambda: (access_lines(gw, **fields) or [None])[0],
                            hglib.scale(timeout),
                            what=f"access line with {fields}")


def reload(gw, yaml_text, wait_log=r"reloaded |reload of .* failed",
           timeout=10.0):
    """Rewrites gw's config with yaml_text (keeping the admin section
    hglib added at start, so admin.listen does not change) and sends
    SIGHUP; waits for the reload's outcome line and returns the match."""
    if not re.search(r"^admin:", yaml_text, re.M):
        yaml_text = (yaml_text.rstrip("\n") +
                     f"\nadmin:\n  listen: \"{gw.admin}\"\n")
    return gw.reload(yaml_text, wait_log=wait_log, timeout=timeout)


def vmrss_kib(pid):
    """Resident set size of a process in KiB (VmRSS of /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False
