"""hubsim as a drop-in for Microsoft's IoT Telemetry Simulator: its
environment variables (IotHubConnectionString, DeviceCount, DevicePrefix,
DeviceIndex, DeviceList, MessageCount, Interval, Intervals, Template; the
payload settings are in test_hubsim_templates.py) with
its defaults and device ids (prefix + six digits), names in any case; flags
win over the environment; a misspelt name gets a warning with a suggestion,
a setting not implemented yet is named; bad values exit 2."""

import base64
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "hubsim", "tests"))
import hglib  # noqa: E402
import hslib  # noqa: E402

HUB_CS = (f"HostName={hslib.HUB};SharedAccessKeyName=device;"
          f"SharedAccessKey={hslib.KEY}")


def seen_at_broker(hub, device):
    """True when the broker logged device connecting with IoT Hub's user
    name for it."""
    return re.search(rf" as {re.escape(device)} \(p2, c1, k60, "
                     rf"u'{re.escape(hslib.HUB)}/{re.escape(device)}/"
                     rf"\?api-version=2021-04-12'\)", hub.log()) is not None


def test_environment_only():
    hub = hslib.Hub(wss=False)
    sub = hub.subscriber()
    # Only --connect-to and --cafile as flags: the hub name, credentials
    # and load shape all come from the simulator's variables.
    res = hslib.run_hubsim(
        ["--connect-to", hub.gw["mqtt"], "--cafile", hub.ca.cert],
        env={"IotHubConnectionString": HUB_CS, "DeviceCount": "3",
             "MessageCount": "2", "Interval": "100"})
    assert res.rc == 0, res
    rep = res.report
    assert rep["config"]["hub"] == hslib.HUB
    assert rep["config"]["devices"] == 3
    assert rep["config"]["first_device"] == "sim000001"
    assert rep["config"]["intervals_ms"] == [100]
    assert rep["messages"]["acked"] == 6, res
    hslib.assert_exact_count(sub, 6)
    for dev in ("sim000001", "sim000002", "sim000003"):
        assert seen_at_broker(hub, dev), dev
        assert sub.count(f"devices/{dev}/messages/events/") == 2
    assert not seen_at_broker(hub, "sim000004")
    # The default template: deviceId, time and a counter from 1.
    bodies = [json.loads(p) for t, p in sub.messages
              if t == "devices/sim000002/messages/events/"]
    assert sorted(b["counter"] for b in bodies) == [1, 2]
    assert all(b["deviceId"] == "sim000002" for b in bodies)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z",
                            b["time"]) for b in bodies)
    hub.stop_gateways()


def test_prefix_index_list_and_template():
    hub = hslib.Hub(wss=False)
    sub = hub.subscriber()
    res = hslib.run_hubsim(
        ["--connect-to", hub.gw["mqtt"], "--cafile", hub.ca.cert],
        env={"IotHubConnectionString": HUB_CS, "DevicePrefix": "dev",
             "DeviceIndex": "7", "DeviceCount": "2", "MessageCount": "1",
             "Template": '{"id":"$.DeviceId","n":$.Counter,"i":'
                         '$.IterationNumber,"e":$.Epoch}'})
    assert res.rc == 0, res
    for dev in ("dev000007", "dev000008"):
        assert seen_at_broker(hub, dev), dev
    hslib.assert_exact_count(sub, 2)
    body = json.loads(sub.messages[0][1])
    assert body["n"] == 1 and body["i"] == 0 and body["e"] > 1700000000
    # DeviceList: ids as given, split on ',' or ';'; lower-case names.
    res = hslib.run_hubsim(
        ["--connect-to", hub.gw["mqtt"], "--cafile", hub.ca.cert],
        env={"iothubconnectionstring": HUB_CS, "devicelist": "a1;b2, c3",
             "MESSAGECOUNT": "1"})
    assert res.rc == 0, res
    assert res.report["config"]["devices"] == 3
    for dev in ("a1", "b2", "c3"):
        assert seen_at_broker(hub, dev), dev
    hslib.assert_exact_count(sub, 5)
    hub.stop_gateways()


def tokens(args, env):
    res = hslib.run_hubsim(args + ["--print-token"], env=env, report=False)
    return res


def test_flags_win_over_environment():
    env = {"IotHubConnectionString": HUB_CS, "DeviceCount": "4",
           "DevicePrefix": "env", "MessageCount": "50", "Interval": "5000"}
    res = tokens(["--devices", "2"], env)
    assert res.rc == 0, res
    lines = res.stdout.splitlines()
    assert len(lines) == 2
    assert "%2Fdevices%2Fenv000001&" in lines[0]
    # A flag's hub name and key win over the connection string's.
    key = base64.b64encode(b"k" * 32).decode()
    res = tokens(["--hub", "flag-hub.example.net", "--device-key", key],
                 env)
    assert "sr=flag-hub.example.net%2Fdevices%2Fenv000001&" in res.stdout
    assert "skn=" not in res.stdout
    # A list from the environment gives way to --devices.
    res = tokens(["--devices", "1"], dict(env, DeviceList="x,y"))
    assert len(res.stdout.splitlines()) == 1
    assert "DeviceList (environment) ignored" in res.stderr
    # Interval and MessageCount: the flags' values end up in the report.
    res = hslib.run_hubsim(
        ["--connect-to", f"127.0.0.1:{hglib.free_port()}", "--interval",
         "50,70", "--messages", "1", "--max-attempts", "1"], env=env)
    assert res.report["config"]["intervals_ms"] == [50, 70]
    assert res.report["config"]["messages_per_device"] == 1
    assert res.report["config"]["devices"] == 4
    # Intervals (the newer name) wins over Interval in the environment.
    res = hslib.run_hubsim(
        ["--connect-to", f"127.0.0.1:{hglib.free_port()}",
         "--max-attempts", "1"], env=dict(env, Intervals="10;20;30"))
    assert res.report["config"]["intervals_ms"] == [10, 20, 30]


def test_misspelt_and_unsupported_names_warn():
    env = {"IotHubConnectionString": HUB_CS, "DeviceCont": "5",
           "Intervall": "10", "DuplicateEvery": "3", "HG_UNRELATED": "1",
           "DevicesPerContainer": "9"}
    res = tokens([], env)
    assert res.rc == 0, res
    err = res.stderr
    assert ("unknown setting DeviceCont in the environment; did you mean "
            "DeviceCount?") in err
    assert "unknown setting Intervall in the environment; did you mean " \
           "Interval?" in err
    assert "DuplicateEvery (environment) is not supported by hubsim yet" \
        in err
    # A name of the family, too far for a typo, still gets a warning.
    assert "unknown setting DevicesPerContainer" in err
    assert "HG_UNRELATED" not in err
    assert len(res.stdout.splitlines()) == 1  # DeviceCount default: 1


def test_bad_settings_exit_2():
    cases = [
        ({"DeviceCount": "abc"}, [], "DeviceCount: not a whole number"),
        ({"MessageCount": "-1"}, [], "MessageCount: not a whole number"),
        ({"Interval": "0"}, [], "Interval: bad interval 0"),
        ({}, ["--qos", "2"], "--qos: 2 is out of range"),
        ({}, ["--connect-to", "gw.example.net:8883"],
         "is not an IP address"),
        ({}, ["--protocol", "amqp", "--c2d"],
         "--c2d: not supported over AMQP yet"),
        ({}, ["--devics", "3"], "did you mean --devices?"),
        ({"IotHubConnectionString": "HostName=h;Key=1"}, [],
         "IotHubConnectionString: unknown key"),
        ({}, ["--device-key", "not base64!"], "--device-key: not a base64"),
    ]
    for env, args, want in cases:
        full = {"IotHubConnectionString": HUB_CS}
        full.update(env)
        res = hslib.run_hubsim(args + ["--print-token"], env=full,
                               report=False)
        assert res.rc == 2, (env, args, res)
        assert want in res.stderr, (want, res.stderr)
    res = hslib.run_hubsim(["--print-token"], report=False)
    assert res.rc == 2 and "no hub name" in res.stderr, res


if __name__ == "__main__":
    hglib.main(globals())
