"""amqp_hub: a small AMQP 1.0 server playing IoT Hub's part for hubsim's
end-to-end tests, built on python3-qpid-proton's protocol engine (run it
with Debian's /usr/bin/python3, which has the module).

    amqp_hub.py --port P --cert C --key K --hub NAME --device-key KEY [--ws]

TLS is Python's ssl module; with --ws each connection first answers a
WebSocket upgrade on /$iothub/websocket for the subprotocol AMQPWSB10 and
carries AMQP in binary frames. SASL is ANONYMOUS. A device proves itself
with a put-token request to $cbs: the token is checked here (resource
"{hub}/devices/{id}", HMAC-SHA256 with the device key, expiry in the
future) and answered with status 200, or 401 with a reason, on the $cbs
reply link. A sender link to /devices/{id}/messages/events is refused
(detached with amqp:unauthorized-access) unless that device's token was
accepted on the same connection. Every message is accepted and counted.

One JSON line per happening goes to stdout: {"ev": "listening"},
{"ev": "put-token", ...}, {"ev": "attach", ...}, {"ev": "message", ...},
{"ev": "connection", ...}.
"""

import argparse
import base64
import hashlib
import hmac
import json
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse

from proton import (Collector, Condition, Connection, Delivery, Endpoint,
                    Event, Message, Transport)

_lock = threading.Lock()


def emit(**kw):
    with _lock:
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()


def check_token(token, hub, device, key):
    """None when token is a valid SAS token for device, else the reason."""
    if not token.startswith("SharedAccessSignature "):
        return "not a SharedAccessSignature"
    fields = dict(urllib.parse.parse_qsl(token.split(" ", 1)[1],
                                         keep_blank_values=True))
    sr, sig, se = fields.get("sr"), fields.get("sig"), fields.get("se")
    if not (sr and sig and se):
        return "sr, sig or se missing"
    if sr != f"{hub}/devices/{device}":
        return f"sr is {sr}"
    if int(se) < time.time():
        return "expired"
    to_sign = (urllib.parse.quote(sr, safe="") + "\n" + se).encode()
    want = base64.b64encode(hmac.new(base64.b64decode(key), to_sign,
                                     hashlib.sha256).digest()).decode()
    return None if hmac.compare_digest(want, sig) else "bad signature"


class WebSocket:
    """The server side of RFC 6455, enough for binary AMQP frames."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def handshake(self):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError("closed during the upgrade")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        hdrs = {k.strip().lower(): v.strip() for k, v in
                (l.split(":", 1) for l in lines[1:] if ":" in l)}
        path = lines[0].split(" ")[1]
        protos = [p.strip() for p in
                  hdrs.get("sec-websocket-protocol", "").split(",")]
        if path != "/$iothub/websocket" or "AMQPWSB10" not in protos:
            self.sock.sendall(b"HTTP/1.1 400 Bad Request\r\n"
                              b"Content-Length: 0\r\n\r\n")
            raise ValueError(f"upgrade for {path} {protos}")
        accept = base64.b64encode(hashlib.sha1(
            (hdrs["sec-websocket-key"] +
             "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        self.sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\n"
                          b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Accept: " + accept + b"\r\n"
                          b"Sec-WebSocket-Protocol: AMQPWSB10\r\n\r\n")
        emit(ev="websocket", path=path)

    def recv(self):
        """Payload of the next data frame; b"" at the end."""
        while True:
            frame = self._frame()
            if frame is None:
                return b""
            op, data = frame
            if op == 8:
                self.sock.sendall(b"\x88\x02\x03\xe8")
                return b""
            if op == 9:
                self.send(data, 10)
                continue
            if op in (0, 2):
                return data
            raise ValueError(f"opcode {op}")

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.buf += chunk
        return True

    def _frame(self):
        if not self._need(2):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        if not b1 & 0x80:
            raise ValueError("client frame not masked")
        n, off = b1 & 0x7F, 2
        if n == 126:
            if not self._need(4):
                return None
            n, off = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127:
            if not self._need(10):
                return None
            n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
        if not self._need(off + 4 + n):
            return None
        mask = self.buf[off:off + 4]
        data = bytes(c ^ mask[i % 4] for i, c in
                     enumerate(self.buf[off + 4:off + 4 + n]))
        self.buf = self.buf[off + 4 + n:]
        return b0 & 0x0F, data

    def send(self, data, op=2):
        n = len(data)
        if n < 126:
            head = struct.pack(">BB", 0x80 | op, n)
        elif n < 65536:
            head = struct.pack(">BBH", 0x80 | op, 126, n)
        else:
            head = struct.pack(">BBQ", 0x80 | op, 127, n)
        self.sock.sendall(head + data)


class Session:
    """One client connection: proton's engine driven by hand."""

    def __init__(self, sock, args):
        self.sock, self.args = sock, args
        self.ws = WebSocket(sock) if args.ws else None
        self.conn = Connection()
        self.transport = Transport(Transport.SERVER)
        self.transport.sasl().allowed_mechs("ANONYMOUS")
        self.transport.bind(self.conn)
        self.collector = Collector()
        self.conn.collect(self.collector)
        self.authorized = set()
        self.cbs_reply = None
        self.replies = []

    def run(self):
        try:
            if self.ws:
                self.ws.handshake()
            while True:
                self.pump()
                data = self.ws.recv() if self.ws else self.sock.recv(65536)
                if not data:
                    break
                while data:
                    cap = self.transport.capacity()
                    if cap <= 0:
                        break
                    self.transport.push(data[:cap])
                    data = data[cap:]
                    self.pump()
        except (OSError, EOFError, ValueError, ssl.SSLError) as exc:
            emit(ev="connection", error=str(exc))
        finally:
            self.transport.close_tail()
            emit(ev="connection", closed=True)
            self.sock.close()

    def pump(self):
        while True:
            ev = self.collector.peek()
            if ev is None:
                break
            self.handle(ev)
            self.collector.pop()
        self.flush_replies()
        while True:
            n = self.transport.pending()
            if n <= 0:
                break
            out = self.transport.peek(n)
            if self.ws:
                self.ws.send(out)
            else:
                self.sock.sendall(out)
            self.transport.pop(len(out))

    def handle(self, ev):
        t = ev.type
        if t == Event.CONNECTION_REMOTE_OPEN:
            emit(ev="open", hostname=ev.connection.remote_hostname,
                 container=ev.connection.remote_container)
            ev.connection.open()
        elif t == Event.SESSION_REMOTE_OPEN:
            ev.session.open()
        elif t == Event.LINK_REMOTE_OPEN:
            self.attach(ev.link)
        elif t == Event.LINK_REMOTE_CLOSE:
            ev.link.close()
        elif t == Event.SESSION_REMOTE_CLOSE:
            ev.session.close()
        elif t == Event.CONNECTION_REMOTE_CLOSE:
            ev.connection.close()
        elif t == Event.DELIVERY:
            self.delivery(ev.delivery)

    def attach(self, link):
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        if link.is_sender:
            if link.remote_source.address == "$cbs":
                self.cbs_reply = link
            link.open()
            return
        addr = link.remote_target.address or ""
        device = None
        if addr.startswith("/devices/") and \
                addr.endswith("/messages/events"):
            device = addr[len("/devices/"):-len("/messages/events")]
        emit(ev="attach", address=addr, device=device,
             authorized=device in self.authorized)
        if addr != "$cbs" and device not in self.authorized:
            link.target.address = None
            link.open()
            link.condition = Condition("amqp:unauthorized-access",
                                       f"no token for {addr}")
            link.close()
            return
        link.open()
        link.flow(1000)

    def delivery(self, dlv):
        link = dlv.link
        if link.is_sender or not dlv.readable or dlv.partial:
            if link.is_sender and dlv.updated:
                dlv.settle()
            return
        data = link.recv(dlv.pending)
        link.advance()
        msg = Message()
        msg.decode(data)
        addr = link.remote_target.address
        if addr == "$cbs":
            self.put_token(msg)
        else:
            device = addr[len("/devices/"):-len("/messages/events")]
            emit(ev="message", device=device, size=len(msg.body or b""),
                 settled=dlv.settled)
        if not dlv.settled:
            dlv.update(Delivery.ACCEPTED)
        dlv.settle()
        if link.credit < 500:
            link.flow(1000)

    def put_token(self, msg):
        props = msg.properties or {}
        name = props.get("name", "")
        prefix = f"{self.args.hub}/devices/"
        device = name[len(prefix):] if name.startswith(prefix) else None
        why = None
        if props.get("operation") != "put-token":
            why = f"operation {props.get('operation')}"
        elif props.get("type") != "azure-devices.net:sastoken":
            why = f"type {props.get('type')}"
        elif device is None:
            why = f"name {name}"
        else:
            why = check_token(str(msg.body), self.args.hub, device,
                              self.args.device_key)
        status = 200 if why is None else 401
        if why is None:
            self.authorized.add(device)
        emit(ev="put-token", name=name, device=device, status=status,
             reason=why, to=msg.address, reply_to=msg.reply_to,
             id=msg.id)
        reply = Message(correlation_id=msg.id, address=msg.reply_to,
                        properties={"status-code": status,
                                    "status-description":
                                        why or "OK"})
        self.replies.append(reply)

    def flush_replies(self):
        link = self.cbs_reply
        while self.replies and link is not None and link.credit > 0:
            reply = self.replies.pop(0)
            self.sent_replies = getattr(self, "sent_replies", 0) + 1
            dlv = link.delivery(f"reply-{self.sent_replies}")
            link.send(reply.encode())
            link.advance()
            dlv.settle()
            if self.collector.peek() is not None:
                break


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--hub", required=True)
    ap.add_argument("--device-key", required=True)
    ap.add_argument("--ws", action="store_true")
    args = ap.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.port))
    srv.listen(128)
    emit(ev="listening", port=args.port)
    while True:
        raw, _ = srv.accept()
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock = ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            emit(ev="connection", error=f"tls: {exc}")
            raw.close()
            continue
        emit(ev="connection", sni=getattr(sock, "server_hostname", None))
        threading.Thread(target=Session(sock, args).run, daemon=True).start()


if __name__ == "__main__":
    main()
