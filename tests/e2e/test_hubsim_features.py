"""hubsim's other knobs, each against a real broker: cloud-to-device
messages subscribed and counted, keep-alive pings holding an idle
connection, several source addresses (--bind), a property bag and a fixed
payload size, QoS 0, and the --max-p99 and --min-rate thresholds."""

import os
import re
import sys

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
    # At QoS 0 there is no PUBACK to measure: --max-p99 cannot pass.
    res = hslib.run_hubsim(base + ["--qos", "0", "--max-p99", "10000"])
    assert res.rc == 1, res
    assert "no PUBACK was measured" in res.stdout
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


if __name__ == "__main__":
    hglib.main(globals())
