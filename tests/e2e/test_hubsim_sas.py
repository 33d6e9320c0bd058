"""hubsim's SAS tokens are byte for byte those of the Azure IoT SDK for
Node.js (npm azure-iot-common's SharedAccessSignature.create, as the device
SDK calls it) for the same hub, device, key, policy and expiry: device keys,
hub policy keys (skn), enrollment group keys, and keys from connection
strings, with device ids that need URL encoding."""

import base64
import hashlib
import hmac
import json
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "hubsim", "tests"))
import hglib  # noqa: E402
import hslib  # noqa: E402

# Node: SharedAccessSignature.create(encodeUriComponentStrict(host +
# '/devices/' + id), keyName, key, expiry), exactly as the device SDK's
# SharedAccessKeyAuthenticationProvider does, for each case on argv.
NODE_TOKENS = r"""
const { SharedAccessSignature, encodeUriComponentStrict } =
  require('azure-iot-common');
const cases = JSON.parse(process.argv[process.argv.length - 1]);
for (const c of cases) {
  const sr = encodeUriComponentStrict(c.hub + '/devices/' + c.id);
  console.log(SharedAccessSignature.create(sr, c.policy || null, c.key,
                                           c.expiry).toString());
}
"""

# Every character class an IoT Hub device id may hold (letters, digits and
# - . % _ * ? ! ( ) , : = @ $ '), but ',' which --device-list splits on.
DEVICE_IDS = ["sim000001", "dev-1.a_b", "a*b(c)!d'e", "x:y=z@w$v%t?",
              "caf%C3%A9-%25"]


def node_tokens(cases):
    out = hslib.node_eval(NODE_TOKENS, json.dumps(cases))
    return out.splitlines()


def hubsim_token(args):
    res = hslib.run_hubsim(args + ["--print-token"], report=False)
    assert res.rc == 0, res
    return res.stdout.splitlines()


def test_device_key_tokens_match_node():
    key = base64.b64encode(os.urandom(32)).decode()
    cases = [{"hub": hslib.HUB, "id": d, "key": key, "expiry": 1700000000 + i}
             for i, d in enumerate(DEVICE_IDS)]
    want = node_tokens(cases)
    for c, w in zip(cases, want):
        got = hubsim_token(["--hub", c["hub"], "--device-list", c["id"],
                            "--device-key", key,
                            "--sas-expiry", str(c["expiry"])])
        assert got == [w], (c, got, w)


def test_policy_key_tokens_match_node():
    key = base64.b64encode(os.urandom(44)).decode()
    cases = [{"hub": "other-hub.azure-devices.net", "id": d, "key": key,
              "policy": p, "expiry": 4102444800}
             for d in DEVICE_IDS[:3] for p in ("device", "my policy*")]
    want = node_tokens(cases)
    for c, w in zip(cases, want):
        got = hubsim_token(["--hub", c["hub"], "--device-list", c["id"],
                            "--policy-key", key, "--policy-name", c["policy"],
                            "--sas-expiry", str(c["expiry"])])
        assert got == [w], (c, got, w)
        assert "&skn=" in w


def test_group_key_tokens_match_node():
    group = base64.b64encode(os.urandom(64)).decode()
    ids = ["sim000001", "sim000002", "sim000003"]
    # The device key of an enrollment group member, computed here.
    cases = [{"hub": hslib.HUB, "id": d, "expiry": 1900000000,
              "key": base64.b64encode(hmac.new(
                  base64.b64decode(group), d.encode(),
                  hashlib.sha256).digest()).decode()} for d in ids]
    want = node_tokens(cases)
    got = hubsim_token(["--hub", hslib.HUB, "--devices", "3",
                        "--group-key", group, "--sas-expiry", "1900000000"])
    assert got == want


def test_connection_strings_match_node():
    key = base64.b64encode(os.urandom(32)).decode()
    # Device connection string: its DeviceId, its key, no skn.
    want = node_tokens([{"hub": hslib.HUB, "id": "dev*7", "key": key,
                         "expiry": 1800000000}])
    cs = f"HostName={hslib.HUB};DeviceId=dev%2A7;SharedAccessKey={key}"
    assert hubsim_token(["--connection-string", cs,
                         "--sas-expiry", "1800000000"]) == want
    # Hub connection string from the environment: policy key, skn.
    want = node_tokens([{"hub": hslib.HUB, "id": f"sim00000{i}", "key": key,
                         "policy": "iothubowner", "expiry": 1800000000}
                        for i in (1, 2)])
    res = hslib.run_hubsim(
        ["--print-token", "--sas-expiry", "1800000000"], report=False,
        env={"IotHubConnectionString":
             f"HostName={hslib.HUB};SharedAccessKeyName=iothubowner;"
             f"SharedAccessKey={key}", "DeviceCount": "2"})
    assert res.rc == 0, res
    assert res.stdout.splitlines() == want


def test_token_lifetime():
    now = int(time.time())
    got = hubsim_token(["--hub", hslib.HUB, "--device-key", hslib.KEY,
                        "--sas-ttl", "15m"])
    se = int(re.search(r"&se=(\d+)$", got[0]).group(1))
    assert now + 900 - 5 <= se <= now + 900 + 5, (now, se)
    got = hubsim_token(["--hub", hslib.HUB, "--device-key", hslib.KEY])
    se = int(re.search(r"&se=(\d+)$", got[0]).group(1))
    assert now + 3600 - 5 <= se <= now + 3600 + 5, (now, se)


if __name__ == "__main__":
    hglib.main(globals())
