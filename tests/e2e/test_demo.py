# ctest-labels: slow
"""`make demo` runs end to end against the built hubgate:
mosquitto_pub, openssl s_client and the Azure IoT device SDK (MQTT and MQTT
over WebSockets) reach the private hub through the gateway, an unknown SNI
is refused, /metrics counts the connections and SIGTERM exits 0."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hglib  # noqa: E402



def run_demo():
    if not os.access(hglib.HUBGATE, os.X_OK):
        raise hglib.Skip(f"no hubgate binary at {hglib.HUBGATE}")
    # Exactly what the README tells a user to run, against this build
    # (already built, so make only checks the dependencies and the build).
    # The demo makes and removes its own namespace and folder.
    r = subprocess.run(["make", "-s", "-C", hglib.SOURCE_DIR, "demo",
                        f"BUILD={hglib.BUILD_DIR}"], capture_output=True,
                       text=True, timeout=hglib.scale(300))
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    return r


def test_demo_passes():
    r = run_demo()
    out = r.stdout
    assert r.returncode == 0, f"demo exited {r.returncode}"
    assert re.search(r"^demo: PASS \(\d+ checks\)$", out, re.M), \
        "no PASS summary line"
    assert not re.search(r"^\s+FAIL ", out, re.M)
    netns = re.search(r"\(\d+ s, netns mode\)", out) is not None

    # What arrived at the hub, per device.
    counts = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in
              re.finditer(r"PASS  device (\S+): (\d+) of (\d+) messages",
                          out)}
    want = {"sdk-mqtt": 5, "sdk-mqttws": 5}
    if netns:
        want["cli-device"] = 10
    for device, n in want.items():
        assert counts.get(device) == (n, n), (device, counts.get(device))

    # Both SDK transports reported every message acknowledged.
    for transport in ("mqtt", "mqttws"):
        m = re.search(r'PASS  SDK %s: (\{.*\})' % transport, out)
        assert m, f"no SDK {transport} line"
        assert '"ok":true' in m.group(1) and '"sent":5' in m.group(1)

    assert re.search(r"PASS  TLS to demo-hub\.azure-devices\.net via "
                     r"\S+ verified", out)
    assert "PASS  an unknown SNI (other-hub.azure-devices.net) is refused" \
        in out
    assert re.search(r'PASS  hubgate_connections_total\{route="demo-hub"\} '
                     r'= (\d+)', out)
    assert re.search(r"PASS  hubgate exited 0 after SIGTERM", out)


if __name__ == "__main__":
    hglib.main(globals())
