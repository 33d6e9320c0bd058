"""hubsim drives a fleet through hubgate to Mosquitto (the hub) and its
report tells the truth: every QoS 1 message acknowledged, and a subscriber
at the broker counts exactly the messages hubsim reports acknowledged, over
MQTT/TLS and over MQTT over TLS WebSockets. --max-errors sets the exit
status: non-zero against a port where nothing listens, zero on a clean run.
Each device is seen at the broker under its own id and IoT Hub user name.
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "hubsim", "tests"))
import hglib  # noqa: E402
import hslib  # noqa: E402

DEVICES = 200
MESSAGES = 5


def fleet_through_gateway(proto, devices=DEVICES):
    hub = hslib.Hub(wss=proto == "mqtt-ws")
    sub = hub.subscriber()
    res = hslib.run_hubsim(hub.args(proto) + [
        "--devices", str(devices), "--messages", str(MESSAGES),
        "--interval", "200", "--ramp", "400", "--max-errors", "0",
        "--device-key", hslib.KEY], timeout=120)
    assert res.rc == 0, res
    rep = res.report
    want = devices * MESSAGES
    assert rep["connections"]["accepted"] == devices, res
    assert rep["connections"]["most_at_once"] <= devices
    assert rep["messages"]["sent"] == want, res
    assert rep["messages"]["acked"] == want, res
    assert rep["messages"]["lost"] == 0
    assert rep["errors"]["total"] == 0, res
    assert rep["latency_ms"]["puback"]["count"] == want
    assert rep["latency_ms"]["connect"]["count"] == devices
    assert rep["thresholds"]["passed"] is True
    hslib.assert_exact_count(sub, rep["messages"]["acked"])
    # Each device under its own id, with IoT Hub's user name and topic.
    log = hub.log()
    for i in (1, devices // 2, devices):
        dev = f"sim{i:06d}"
        assert re.search(rf" as {dev} \(p2, c1, k60, "
                         rf"u'{re.escape(hslib.HUB)}/{dev}/"
                         rf"\?api-version=2021-04-12'\)", log), dev
        assert sub.count(f"devices/{dev}/messages/events/") == MESSAGES
    # The summary on stdout says the same.
    assert re.search(rf"acknowledged {want}\b", res.stdout), res.stdout
    # Every device said goodbye: DISCONNECT, then close.
    hglib.wait_until(lambda: hub.log().count(" disconnected.") >= devices,
                     hglib.scale(10), what="every device disconnected")
    for g in hub.gateways:
        g.stop()


def test_mqtt_tls_through_gateway():
    fleet_through_gateway("mqtt")


def test_mqtt_websockets_through_gateway():
    fleet_through_gateway("mqtt-ws")


def test_max_errors_against_nothing_listening():
    hub = hslib.Hub(wss=False, gateway=False)
    port = hglib.free_port()  # free: nothing listens there
    res = hslib.run_hubsim([
        "--hub", hslib.HUB, "--connect-to", f"127.0.0.1:{port}",
        "--cafile", hub.ca.cert, "--devices", "3", "--messages", "2",
        "--ramp", "0", "--backoff-base", "100ms", "--duration", "2s",
        "--device-key", hslib.KEY, "--max-errors", "0"])
    assert res.rc == 1, res
    rep = res.report
    assert rep["errors"]["by_kind"]["tcp_refused"] >= 3, res
    assert rep["errors"]["total"] == rep["errors"]["by_kind"]["tcp_refused"]
    assert "Connection refused" in rep["errors"]["first"]["tcp_refused"]
    assert rep["connections"]["accepted"] == 0
    assert rep["thresholds"]["passed"] is False
    assert "--max-errors 0" in rep["thresholds"]["failed"][0]
    assert "FAILED" in res.stdout
    # Without a threshold the same run exits 0: errors alone do not fail.
    res = hslib.run_hubsim([
        "--hub", hslib.HUB, "--connect-to", f"127.0.0.1:{port}",
        "--cafile", hub.ca.cert, "--devices", "1", "--messages", "1",
        "--max-attempts", "2", "--backoff-base", "10ms",
        "--device-key", hslib.KEY])
    assert res.rc == 0, res
    assert res.report["connections"]["gave_up"] == 1
    assert res.report["errors"]["by_kind"]["tcp_refused"] == 2


def test_max_errors_clean_run_and_stopped_broker():
    hub = hslib.Hub(wss=False)
    args = hub.args("mqtt") + ["--devices", "5", "--messages", "3",
                               "--interval", "50", "--ramp", "0",
                               "--device-key", hslib.KEY, "--max-errors",
                               "0"]
    res = hslib.run_hubsim(args)
    assert res.rc == 0, res
    assert res.report["messages"]["acked"] == 15
    # The broker stops; the gateway still accepts and then finds no
    # backend: the devices see their TLS handshake cut.
    hub.broker.stop()
    res = hslib.run_hubsim(args + ["--duration", "2s", "--backoff-base",
                                   "100ms"])
    assert res.rc == 1, res
    assert res.report["errors"]["total"] >= 5
    assert res.report["messages"]["acked"] == 0
    hub.stop_gateways()


def test_tls_errors_told_apart():
    hub = hslib.Hub(wss=False)
    # Another hub name: the gateway has no route for it and closes.
    res = hslib.run_hubsim(
        ["--hub", "other-hub.azure-devices.net", "--connect-to",
         hub.gw["mqtt"], "--cafile", hub.ca.cert, "--devices", "2",
         "--max-attempts", "1", "--device-key", hslib.KEY])
    assert res.report["errors"]["by_kind"]["tls"] == 2, res
    # Straight to the broker, which has no certificate for that name.
    res = hslib.run_hubsim(
        ["--hub", "other-hub.azure-devices.net", "--connect-to",
         hub.direct["mqtt"], "--cafile", hub.ca.cert, "--devices", "2",
         "--max-attempts", "1", "--device-key", hslib.KEY])
    rep = res.report
    assert rep["errors"]["by_kind"]["tls_verify"] == 2, res
    assert "hostname mismatch" in rep["errors"]["first"]["tls_verify"], res
    # A CA that did not sign the hub's certificate.
    other = hglib.CA(name="another CA")
    res = hslib.run_hubsim(
        ["--hub", hslib.HUB, "--connect-to", hub.gw["mqtt"], "--cafile",
         other.cert, "--devices", "1", "--max-attempts", "1",
         "--device-key", hslib.KEY])
    assert res.report["errors"]["by_kind"]["tls_verify"] == 1, res
    assert "unable to get local issuer" in \
        res.report["errors"]["first"]["tls_verify"], res
    hub.stop_gateways()


if __name__ == "__main__":
    hglib.main(globals())
