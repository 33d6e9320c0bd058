# ctest-labels: slow
"""The acceptance run: 1,000 devices for 30 s through hubgate to Mosquitto,
one message a second each at QoS 1, over MQTT/TLS and over MQTT over TLS
WebSockets. Every message is acknowledged, and a subscriber at the broker
counts exactly the messages hubsim reports acknowledged. Logs hubsim's
resident memory per connected device."""

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "hubsim", "tests"))
import hglib  # noqa: E402
import hslib  # noqa: E402

DEVICES = 1000
SECONDS = 30


def thousand_devices(proto):
    hub = hslib.Hub(wss=proto == "mqtt-ws")
    sub = hub.subscriber()
    run = hslib.start_hubsim(hub.args(proto) + [
        "--devices", str(DEVICES), "--messages", "0", "--interval", "1000",
        "--duration", f"{SECONDS}s", "--ramp", "500", "--max-errors", "0",
        "--device-key", hslib.KEY, "--quiet"])
    # Memory once every device is connected and publishing.
    time.sleep(hglib.scale(6))
    rss = run.rss_kib()
    res = run.finish(SECONDS + 60)
    assert res.rc == 0, res
    rep = res.report
    acked = rep["messages"]["acked"]
    hglib.log(f"{proto}: {rep['messages']['sent']} sent, {acked} acked, "
              f"{rep['messages']['rate_per_s']:.0f}/s, puback p99 "
              f"{rep['latency_ms']['puback']['p99']:.2f} ms, connect p99 "
              f"{rep['latency_ms']['connect']['p99']:.2f} ms, RSS {rss} KiB "
              f"= {rss / DEVICES:.1f} KiB per device")
    assert rep["connections"]["accepted"] == DEVICES, res
    assert rep["connections"]["most_at_once"] == DEVICES, res
    assert rep["errors"]["total"] == 0, res
    assert rep["messages"]["lost"] == 0, res
    assert rep["messages"]["sent"] == acked, res
    # About one message per device per second for the 30 s (less the
    # ramp and the random first delay).
    assert acked >= DEVICES * (SECONDS - 5), res
    hslib.assert_exact_count(sub, acked, timeout=60)
    if not hglib.SANITIZE:
        assert rss < DEVICES * 128, f"{rss} KiB for {DEVICES} devices"
    hub.stop_gateways()


def test_thousand_devices_mqtt_tls():
    thousand_devices("mqtt")


def test_thousand_devices_mqtt_websockets():
    thousand_devices("mqtt-ws")


if __name__ == "__main__":
    hglib.main(globals())
