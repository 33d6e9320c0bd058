"""The stream under every protocol (mqtt, mqtt-ws, amqp, amqp-ws) counts
its failures by kind and by the phase they hit, and words them the same
way for each: a refused connect, a source address that cannot be bound
(a device calls that a failed connect, an AMQP connection a failed bind),
a certificate from another CA, a server that accepts and says nothing
(the TLS handshake's deadline, or over AMQP the devices' own), and a TLS
server that answers the WebSocket upgrade with plain HTTP 200 or closes at
it (an MQTT port). Every server is started here on loopback."""

import os
import socket
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "hubsim", "tests"))
import hglib  # noqa: E402
import hslib  # noqa: E402

PROTOCOLS = ("mqtt", "mqtt-ws", "amqp", "amqp-ws")


def who(proto):
    """The name an error sample starts with."""
    return "amqp connection 0.0: " if proto.startswith("amqp") \
        else "sim000001: "


def run(proto, addr, cafile, extra=()):
    """Two devices, one attempt each, a one-second connect deadline."""
    res = hslib.run_hubsim(
        ["--hub", hslib.HUB, "--connect-to", addr, "--cafile", cafile,
         "--protocol", proto, "--devices", "2", "--messages", "1",
         "--max-attempts", "1", "--connect-timeout", "1s", "--threads",
         "1", "--device-key", hslib.KEY, *extra])
    assert res.report is not None, res
    return res.report["errors"]


def only(errors, kind, text, proto):
    """Every error is of kind, and the first reads who + text."""
    assert errors["total"] >= 1, (proto, errors)
    assert errors["by_kind"][kind] == errors["total"], (proto, errors)
    assert errors["first"][kind] == who(proto) + text, \
        (proto, errors)


def silent_server():
    """A TCP listener that accepts and never says a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held = []

    def accept():
        while True:
            try:
                held.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()

    def stop():
        srv.close()
        for c in held:
            c.close()

    hglib.on_cleanup(stop, "silent server")
    return hglib.join_hostport("127.0.0.1", srv.getsockname()[1])


def http_tls_server(ca):
    """openssl s_server answering any request with HTTP 200 (-www)."""
    cert, key = ca.server_cert([hslib.HUB])
    port = hglib.free_port()
    addr = hglib.join_hostport("127.0.0.1", port)
    proc = hglib.Proc(["openssl", "s_server", "-accept", addr, "-cert",
                       cert, "-key", key, "-www"], name="s_server")
    proc.wait_log(r"^ACCEPT", hglib.scale(10))
    return addr


def test_refused_and_unbindable():
    ca = hglib.CA()
    addr = hglib.join_hostport("127.0.0.1", hglib.free_port())
    with open("/proc/sys/net/ipv4/ip_nonlocal_bind") as f:
        nonlocal_bind = f.read().strip() != "0"
    for proto in PROTOCOLS:
        only(run(proto, addr, ca.cert), "tcp_refused",
             "connect: Connection refused", proto)
        if nonlocal_bind:
            continue
        # TEST-NET-1: never this machine's, so bind() fails at once.
        step = "bind" if proto.startswith("amqp") else "connect"
        only(run(proto, addr, ca.cert, ["--bind", "192.0.2.1"]), "local",
             f"{step}: Cannot assign requested address", proto)


def test_tls_verify_and_handshake_deadline():
    ca, other = hglib.CA(), hglib.CA(name="another CA")
    www = http_tls_server(ca)
    quiet = silent_server()
    for proto in PROTOCOLS:
        errors = run(proto, www, other.cert)
        assert errors["by_kind"]["tls_verify"] == errors["total"] >= 1, \
            (proto, errors)
        assert errors["first"]["tls_verify"].startswith(
            who(proto) + "certificate: unable to get local issuer"), \
            (proto, errors)
        if not proto.startswith("amqp"):
            only(run(proto, quiet, ca.cert), "timeout",
                 "tls handshake for more than 1000 ms", proto)
            continue
        # The devices wait for their connection under the same deadline:
        # whichever timer runs first counts, never both.
        errors = run(proto, quiet, ca.cert)
        assert errors["by_kind"]["timeout"] == errors["total"] >= 1, \
            (proto, errors)
        assert errors["first"]["timeout"] in (
            who(proto) + "tls handshake for more than 1000 ms",
            "sim000001: waiting for the AMQP connection for more than "
            "1000 ms"), (proto, errors)


def test_websocket_upgrade_refused():
    ca = hglib.CA()
    www = http_tls_server(ca)
    for proto in ("mqtt-ws", "amqp-ws"):
        only(run(proto, www, ca.cert), "websocket", "upgrade: HTTP 200",
             proto)


def test_websocket_upgrade_to_an_mqtt_port():
    # Mosquitto's MQTT-over-TLS listener takes the upgrade request for a
    # bad MQTT packet and closes: a WebSocket failure, not a closed hub.
    ca = hglib.CA()
    cert, key = ca.server_cert([hslib.HUB])
    broker = hglib.start_mosquitto(tls_port=0, cert=cert, key=key,
                                   verbose=False)
    for proto in ("mqtt-ws", "amqp-ws"):
        errors = run(proto, broker.addr("tls"), ca.cert)
        assert errors["by_kind"]["websocket"] == errors["total"] >= 1, \
            (proto, errors)


if __name__ == "__main__":
    hglib.main(globals())
