"""hubsim's other knobs, each against a real broker: cloud-to-device
messages subscribed and counted, keep-alive pings holding an idle
connection, several source addresses (--bind), a property bag and a fixed
payload size, QoS 0, and the --max-p99 and --min-rate thresholds;
--max-attempts against a broker that accepts and then breaks every
connection, and the publish slots missed while the broker was down."""

import os
import re
import socket
import ssl
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "hubsim", "tests"))
import hglib  # noqa: E402
import hslib  # noqa: E402


def test_c2d_and_keepalive():
    hub = hslib.Hub(wss=False)
    # Two devices, a message every 2.5 s, keep-alive 1 s: the broker drops
    # a client silent for 1.5 keep-alives, so only PINGREQs keep them up.
    run = hslib.start_hubsim(hub.args("mqtt") + [
        "--devices", "2", "--messages", "3", "--interval", "2500",
        "--keepalive", "1", "--c2d", "--ramp", "0",
        "--device-key", hslib.KEY, "--max-errors", "0"])
    for dev in ("sim000001", "sim000002"):
        hub.broker.proc.wait_log(
            rf"{dev} 1 devices/{dev}/messages/devicebound/#",
            hglib.scale(10))
    plain = hglib.split_hostport(hub.broker.addr("plain"))
    for i in range(3):
        hglib.run(["mosquitto_pub", "-V", "mqttv311", "-h", plain[0], "-p",
                   str(plain[1]), "-q", "1", "-t",
                   f"devices/sim000001/messages/devicebound/%24.mid={i}",
                   "-m", f"command {i}"])
    res = run.finish(60)
    assert res.rc == 0, res
    assert res.report["messages"]["c2d"] == 3, res
    assert res.report["messages"]["acked"] == 6, res
    assert res.report["connections"]["reconnects"] == 0
    assert "exceeded timeout" not in hub.log()
    hub.stop_gateways()


def test_bind_source_addresses():
    hub = hslib.Hub(wss=False, gateway=False)
    res = hslib.run_hubsim(hub.args("mqtt", direct=True) + [
        "--devices", "4", "--messages", "1", "--ramp", "0",
        "--bind", "127.0.0.2,127.0.0.3", "--device-key", hslib.KEY])
    assert res.rc == 0, res
    assert res.report["messages"]["acked"] == 4
    # A run shorter than a second: its timeline is one partial entry that
    # holds the whole run.
    tl = res.report["timeline"]
    assert tl and tl[-1]["partial"] and tl[-1]["t"] == res.report["duration_s"]
    assert sum(s["sent"] for s in tl) == sum(s["acked"] for s in tl) == 4, tl
    assert sum(s["connects"] for s in tl) == 4, tl
    assert res.report["config"]["source_addresses"] == 2
    log = hub.log()
    # Devices take the addresses in turn.
    for dev, src in (("sim000001", "127.0.0.2"), ("sim000002", "127.0.0.3"),
                     ("sim000003", "127.0.0.2"), ("sim000004", "127.0.0.3")):
        assert re.search(rf"from {re.escape(src)}:\d+ as {dev} ", log), dev


def test_properties_payload_size_and_qos0():
    hub = hslib.Hub(wss=False)
    sub = hub.subscriber()
    res = hslib.run_hubsim(hub.args("mqtt") + [
        "--devices", "3", "--messages", "4", "--interval", "20",
        "--qos", "0", "--payload-size", "1000", "--ramp", "0",
        "--properties", "%24.ct=application%2Fjson&site=a",
        "--device-key", hslib.KEY])
    assert res.rc == 0, res
    rep = res.report
    assert rep["messages"]["sent"] == 12 and rep["messages"]["acked"] == 0
    assert rep["latency_ms"]["puback"]["count"] == 0
    hslib.assert_exact_count(sub, 12)
    topics = {t for t, _ in sub.messages}
    assert topics == {f"devices/sim00000{i}/messages/events/"
                      "%24.ct=application%2Fjson&site=a" for i in (1, 2, 3)}
    assert all(p == bytes(1000) for _, p in sub.messages)
    hub.stop_gateways()


def test_latency_and_rate_thresholds():
    hub = hslib.Hub(wss=False)
    base = hub.args("mqtt") + ["--devices", "2", "--messages", "3",
                               "--interval", "20", "--ramp", "0",
                               "--device-key", hslib.KEY]
    res = hslib.run_hubsim(base + ["--max-p99", "10000", "--min-rate", "0"])
    assert res.rc == 0, res
    res = hslib.run_hubsim(base + ["--max-p99", "0.0001"])
    assert res.rc == 1, res
    assert "--max-p99 0.0001: PUBACK p99 was" in \
        res.report["thresholds"]["failed"][0]
    res = hslib.run_hubsim(base + ["--min-rate", "1000000"])
    assert res.rc == 1, res
    assert "--min-rate 1e+06" in res.report["thresholds"]["failed"][0]
    # At QoS 0 there is no PUBACK to measure: --max-p99 is refused at once.
    res = hslib.run_hubsim(base + ["--qos", "0", "--max-p99", "10000"])
    assert res.rc == 2, res
    assert "--max-p99: needs --qos 1" in res.stderr, res
    hub.stop_gateways()


def test_sigint_drains():
    hub = hslib.Hub(wss=False)
    sub = hub.subscriber()
    run = hslib.start_hubsim(hub.args("mqtt") + [
        "--devices", "5", "--messages", "0", "--interval", "100",
        "--ramp", "0", "--device-key", hslib.KEY])
    hglib.wait_until(lambda: sub.count() >= 20, hglib.scale(10),
                     what="messages flowing")
    run.proc.send_signal(2)  # SIGINT: stop sending, wait for PUBACKs
    res = run.finish(20)
    assert res.rc == 0, res
    rep = res.report
    assert rep["messages"]["lost"] == 0
    assert rep["messages"]["sent"] == rep["messages"]["acked"], res
    hslib.assert_exact_count(sub, rep["messages"]["acked"])
    assert rep["errors"]["total"] == 0, res
    hub.stop_gateways()


class BadBroker:
    """A TLS server for the hub's name that accepts every CONNECT with
    CONNACK 0 and then misbehaves: mode "garbage" sends a packet of a
    reserved type, mode "puback" answers each PUBLISH with a PUBACK for a
    packet id never used. Counts the connections it took."""

    def __init__(self, ca, mode):
        cert, key = ca.server_cert([hslib.HUB])
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.mode = mode
        self.conns = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        hglib.on_cleanup(self.stop, "bad broker")

    def _accept(self):
        while not self.stopping and self.conns < 500:  # bounded
            try:
                raw, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.conns += 1
            threading.Thread(target=self._serve, args=(raw,),
                             daemon=True).start()

    @staticmethod
    def _packet(conn):
        """One MQTT packet: (type, body), or None at the end."""
        head = conn.recv(1)
        if not head:
            return None
        length, shift = 0, 0
        while True:
            b = conn.recv(1)
            if not b:
                return None
            length |= (b[0] & 0x7F) << shift
            shift += 7
            if b[0] < 0x80:
                break
        body = b""
        while len(body) < length:
            chunk = conn.recv(length - len(body))
            if not chunk:
                return None
            body += chunk
        return head[0] >> 4, body

    def _serve(self, raw):
        raw.settimeout(5)
        try:
            with self.ctx.wrap_socket(raw, server_side=True) as conn:
                p = self._packet(conn)
                if p is None or p[0] != 1:
                    return
                conn.sendall(b"\x20\x02\x00\x00")  # CONNACK, accepted
                if self.mode == "garbage":
                    conn.sendall(b"\xf0\x00")
                while (p := self._packet(conn)) is not None:
                    if p[0] == 3:  # PUBLISH: a PUBACK for no message
                        conn.sendall(b"\x40\x02\xbe\xef")
        except (OSError, ssl.SSLError):
            pass

    def stop(self):
        self.stopping = True
        self.thread.join(2)
        self.sock.close()


def test_max_attempts_after_connack():
    """A connection the hub accepts but that fails before it carried
    anything does not reset the failures in a row: the devices give up."""
    ca = hglib.CA()
    for mode in ("garbage", "puback"):
        broker = BadBroker(ca, mode)
        res = hslib.run_hubsim([
            "--hub", hslib.HUB, "--connect-to", broker.addr, "--cafile",
            ca.cert, "--devices", "2", "--messages", "2", "--interval",
            "50", "--max-attempts", "2", "--backoff-base", "100ms",
            "--backoff-max", "200ms", "--ramp", "0", "--device-key",
            hslib.KEY, "--quiet"], timeout=30)
        broker.stop()
        rep = res.report
        assert rep is not None, res
        assert rep["connections"]["gave_up"] == 2, (mode, res)
        assert rep["connections"]["accepted"] == 4, (mode, res)
        assert rep["errors"]["by_kind"]["protocol"] == 4, (mode, res)
        assert broker.conns == 4, (mode, broker.conns)
        if mode == "puback":
            # Each device's messages went again once, on its second try.
            assert rep["messages"]["resent"] <= 4, res
            assert rep["messages"]["lost"] == rep["messages"]["sent"], res


def test_slots_missed_while_disconnected():
    """Devices at 10 messages/s lose their broker for 2 s: the slots that
    passed meanwhile are counted behind schedule, so that sent + behind
    schedule accounts for the whole schedule."""
    ca = hglib.CA()
    cert, key = ca.server_cert([hslib.HUB])
    broker = hglib.start_mosquitto(tls_port=0, plain_port=0, cert=cert,
                                   key=key, verbose=False,
                                   extra="set_tcp_nodelay true")
    sub = hglib.Subscriber(broker.addr("plain"),
                           "devices/+/messages/events/#")
    devices, seconds, outage = 4, 6, 2.0
    run = hslib.start_hubsim([
        "--hub", hslib.HUB, "--connect-to", broker.addr("tls"), "--cafile",
        ca.cert, "--devices", str(devices), "--messages", "0", "--interval",
        "100", "--duration", f"{seconds}s", "--ramp", "0",
        "--backoff-base", "100ms", "--backoff-max", "200ms",
        "--device-key", hslib.KEY, "--quiet"])
    sub.wait_count(devices * 5, timeout=10)
    broker.proc.kill()
    t_down = time.monotonic()
    time.sleep(outage)
    again = hglib.Proc(["mosquitto", "-c", broker.conf], name="mosquitto")
    hglib.on_cleanup(again.stop, "restarted mosquitto")
    again.wait_log(r"mosquitto version \S+ running", hglib.scale(10))
    down = time.monotonic() - t_down
    res = run.finish(30)
    assert res.rc == 0, res
    msgs = res.report["messages"]
    hglib.log(f"broker down {down:.1f} s: sent {msgs['sent']}, behind "
              f"schedule {msgs['behind_schedule']}")
    # At least most of the outage's slots are counted (reconnecting takes
    # up to a back-off more; a loaded machine may count more, never fewer).
    missed = devices * (down - 0.5) / 0.1
    assert msgs["behind_schedule"] >= missed * 0.8, (missed, res)
    # Sent and behind schedule together cover the schedule: the slots of
    # the run, less a first interval's random start.
    scheduled = devices * seconds * 10
    total = msgs["sent"] + msgs["behind_schedule"]
    assert scheduled * 0.85 <= total <= scheduled * 1.1, (scheduled, res)
    assert "behind schedule" in res.stdout, res
    again.stop()


if __name__ == "__main__":
    hglib.main(globals())
