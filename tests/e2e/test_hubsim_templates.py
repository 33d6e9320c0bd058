"""hubsim's payload settings from Microsoft's IoT Telemetry Simulator, seen
at the broker (Mosquitto behind hubgate): Variables (counters that step and
wrap, random numbers in range, value lists, sequences that cycle), the
Header as the topic's URL-encoded property bag, a PayloadDistribution's
shares over a few hundred messages, and a File with per-device Payloads and
Intervals whose different rates show in the arrival times."""

import json
import os
import statistics
import sys
from urllib.parse import parse_qsl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "hubsim", "tests"))
import hglib  # noqa: E402
import hslib  # noqa: E402

HUB_CS = (f"HostName={hslib.HUB};SharedAccessKeyName=device;"
          f"SharedAccessKey={hslib.KEY}")
PREFIX = "devices/"
EVENTS = "/messages/events/"


def split(topic):
    """(device id, {property: value}) of a telemetry topic."""
    assert topic.startswith(PREFIX) and EVENTS in topic, topic
    dev, bag = topic[len(PREFIX):].split(EVENTS, 1)
    return dev, dict(parse_qsl(bag, keep_blank_values=True))


def by_device(sub):
    out = {}
    for topic, payload in sub.messages:
        dev, props = split(topic)
        out.setdefault(dev, []).append((props, payload))
    return out


def test_variables_and_header():
    hub = hslib.Hub(wss=False)
    sub = hub.subscriber()
    variables = json.dumps([
        {"name": "Counter", "min": 100, "max": 102},
        {"name": "Temp", "random": True, "min": 23, "max": 25},
        {"name": "X", "step": 2, "min": 0, "max": 5},
        {"name": "Engine", "values": ["on", "off"]},
        {"name": "Seq", "sequence": True, "values": ["a", "$.DeviceId", "c"]},
        {"name": "Rnd", "randomDouble": True, "min": 1.5, "max": 2},
        {"name": "Tag", "customLengthString": 6},
    ])
    template = ('{"id":"$.DeviceId","c":$.Counter,"t":$.Temp,"x":$.X,'
                '"e":"$.Engine","s":"$.Seq","r":$.Rnd,"g":"$.Tag",'
                '"i":$.IterationNumber}')
    res = hslib.run_hubsim(
        hub.args("mqtt") + ["--properties", "fixed=1", "--interval", "20"],
        env={"IotHubConnectionString": HUB_CS, "DeviceCount": "2",
             "MessageCount": "8", "Template": template,
             "Variables": variables,
             "Header": '{"ctr": "$.Counter", "kind": "t/1 x", '
                       '"seq": "$.Seq"}'})
    assert res.rc == 0, res
    assert res.report["messages"]["acked"] == 16, res
    hslib.assert_exact_count(sub, 16)
    devs = by_device(sub)
    assert sorted(devs) == ["sim000001", "sim000002"]
    for dev, msgs in devs.items():
        bodies = [json.loads(p) for _, p in msgs]
        bodies.sort(key=lambda b: b["i"])
        # Each device has its own counter: 100, 101, 102, then round.
        assert [b["c"] for b in bodies] == [100, 101, 102] * 2 + [100, 101]
        assert [b["x"] for b in bodies] == [0, 2, 4] * 2 + [0, 2]
        assert [b["s"] for b in bodies] == ["a", dev, "c"] * 2 + ["a", dev]
        assert all(b["t"] in (23, 24) for b in bodies)
        assert all(b["e"] in ("on", "off") for b in bodies)
        assert all(1.5 <= b["r"] < 2 for b in bodies)
        assert all(len(b["g"]) == 6 and b["g"].isalnum() for b in bodies)
        assert all(b["id"] == dev for b in bodies)
        # The header's members, URL-encoded after the fixed bag.
        for props, payload in msgs:
            body = json.loads(payload)
            assert props == {"fixed": "1", "ctr": str(body["c"]),
                             "kind": "t/1 x", "seq": body["s"]}, props
    raw = [t for t, _ in sub.messages][0]
    assert "&kind=t%2F1%20x&" in raw, raw
    hub.stop_gateways()


def test_payload_distribution():
    hub = hslib.Hub(wss=False)
    sub = hub.subscriber()
    devices, per_device = 4, 75
    total = devices * per_device
    res = hslib.run_hubsim(
        hub.args("mqtt") + ["--interval", "5", "--inflight", "64"],
        env={"IotHubConnectionString": HUB_CS,
             "DeviceCount": str(devices), "MessageCount": str(per_device),
             "Template": '{"kind":"default","n":$.Counter}',
             "Template2": '{"kind":"second","n":$.Counter}',
             "PayloadDistribution": "fixSize(20, 7) template(20, default) "
                                    "template(20, Template2) "
                                    "fix(40, aGVsbG8=)"},
        timeout=120)
    assert res.rc == 0, res
    assert "Template2" not in res.stderr, res.stderr  # not taken for a typo
    hslib.assert_exact_count(sub, total)
    kinds = {"zeros": 0, "default": 0, "second": 0, "hello": 0}
    for _, payload in sub.messages:
        if payload == b"\0" * 7:
            kinds["zeros"] += 1
        elif payload == b"hello":
            kinds["hello"] += 1
        else:
            kinds[json.loads(payload)["kind"]] += 1
    hglib.log(f"payload kinds over {total}: {kinds}")
    # Each share within 4.5 standard deviations of its expectation.
    for kind, share in (("zeros", .2), ("default", .2), ("second", .2),
                        ("hello", .4)):
        mean = total * share
        sd = (total * share * (1 - share)) ** 0.5
        assert abs(kinds[kind] - mean) <= 4.5 * sd, (kind, kinds)
    # Only template messages move the counter on: each device's template
    # messages, of either template, count 1, 2, 3, ... with no gaps.
    counters = {}
    for topic, payload in sub.messages:
        if payload.startswith(b"{"):
            counters.setdefault(split(topic)[0], []).append(
                json.loads(payload)["n"])
    for dev, ns in counters.items():
        assert sorted(ns) == list(range(1, len(ns) + 1)), (dev, ns)
    hub.stop_gateways()


def test_file_payloads_and_intervals():
    hub = hslib.Hub(wss=False)
    timed = hslib.TimedSubscriber(hub.broker.addr("plain"),
                                  "devices/+/messages/events/#")
    fast, slow, count = 40, 320, 8
    settings = {
        "DeviceCount": 3,
        "MessageCount": count,
        "Variables": [{"name": "Value", "sequence": True,
                       "values": ["$.Counter", "true"]},
                      {"name": "Counter"}],
        "Intervals": {"sim000001": fast, "sim000002": [slow, slow]},
        "Payloads": [
            {"type": "template", "deviceId": "sim000001",
             "template": {"value": "$.Value", "dev": "$.DeviceId"}},
            {"type": "fix", "deviceId": "sim000002",
             "value": "{\"value\":\"myfixvalue\"}"},
        ],
        "Header": {"from": "file"},
    }
    path = hglib.tmp_path("hubsim-settings.json")
    with open(path, "w") as f:
        json.dump(settings, f)
    res = hslib.run_hubsim(
        hub.args("mqtt") + ["--file", path],
        env={"IotHubConnectionString": HUB_CS, "DeviceCount": "9",
             "Interval": "100"},
        timeout=60)
    assert res.rc == 0, res
    # The File's DeviceCount wins over the environment's.
    assert res.report["config"]["devices"] == 3, res.report["config"]
    assert res.report["messages"]["acked"] == 3 * count, res
    hglib.wait_until(lambda: len(timed.arrivals) >= 3 * count,
                     hglib.scale(10), what="all messages at the broker")
    arrivals = {}
    for when, topic, payload in timed.arrivals:
        dev, props = split(topic)
        assert props == {"from": "file"}, props
        arrivals.setdefault(dev, []).append((when, payload))
    one = [json.loads(p) for _, p in arrivals["sim000001"]]
    # The sequence holds the counter back in the "true" messages.
    assert [b["value"] for b in one] == ["1", "true", "2", "true", "3",
                                         "true", "4", "true"], one
    assert all(b["dev"] == "sim000001" for b in one)
    assert all(p == b'{"value":"myfixvalue"}'
               for _, p in arrivals["sim000002"])
    # sim000003 has no payload of its own: the default template, whose
    # counter the sequence (evaluated for every device) holds back too.
    three = [json.loads(p) for _, p in arrivals["sim000003"]]
    assert [b["counter"] for b in three] == [1, 1, 2, 2, 3, 3, 4, 4], three

    def gap(dev):
        times = [t for t, _ in arrivals[dev]]
        return statistics.median(b - a for a, b in zip(times, times[1:]))
    g1, g2, g3 = gap("sim000001"), gap("sim000002"), gap("sim000003")
    hglib.log(f"median gaps at the broker: sim000001 {g1 * 1000:.0f} ms, "
              f"sim000002 {g2 * 1000:.0f} ms, sim000003 {g3 * 1000:.0f} ms")
    # Fixed-rate schedules: the medians sit near the intervals even on a
    # loaded machine; the check is only that the rates clearly differ.
    assert g2 > 3 * g1, (g1, g2)
    assert g1 < g3 < g2, (g1, g3, g2)
    hub.stop_gateways()


if __name__ == "__main__":
    hglib.main(globals())
