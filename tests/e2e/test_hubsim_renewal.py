# ctest-labels: slow
"""SAS token renewal: six devices with 20 s tokens run for 45 s through
hubgate to Mosquitto. IoT Hub renews MQTT credentials by reconnecting, so
each device must reconnect with a fresh token before its token's expiry
(se), at a random point of its lifetime so that the fleet does not renew
all at once. Checked at the broker (when each device connected, from
Mosquitto's log), at the gateway (when the renewed connections closed, to
the millisecond, from hubgate's access log) and in hubsim's debug log (each
token's se). About 50 s."""

import datetime
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "hubsim", "tests"))
import hglib  # noqa: E402
import hslib  # noqa: E402

DEVICES = 6
TTL = 20
SECONDS = 45


def broker_connects(log):
    """{device: [epoch seconds of each CONNECT accepted]} from Mosquitto's
    log (timestamps in local time, to the second)."""
    out = {}
    for m in re.finditer(r"^(\S+): New client connected from \S+ as "
                         r"(sim\d{6}) ", log, re.M):
        t = time.mktime(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
        out.setdefault(m.group(2), []).append(t)
    return out


def test_tokens_renewed_before_expiry_and_spread():
    hub = hslib.Hub(wss=False)
    sub = hub.subscriber()
    res = hslib.run_hubsim(hub.args("mqtt") + [
        "--devices", str(DEVICES), "--messages", "0", "--interval", "500",
        "--duration", f"{SECONDS}s", "--ramp", "0", "--sas-ttl", f"{TTL}s",
        "--device-key", hslib.KEY, "--max-errors", "0", "--quiet",
        "--log-level", "debug"], timeout=SECONDS + 40)
    assert res.rc == 0, res
    conns, msgs = res.report["connections"], res.report["messages"]
    # Renewals are not reconnects after failures, and lose nothing.
    assert conns["reconnects"] == 0 and res.report["errors"]["total"] == 0
    assert msgs["lost"] == 0 and msgs["acked"] == msgs["sent"], res
    hslib.assert_exact_count(sub, msgs["acked"])
    # Renewal at 75-85 % of 20 s: twice in 45 s for every device.
    assert conns["renewals"] >= 2 * DEVICES, res
    assert f"renewals {conns['renewals']}" in res.stdout

    # hubsim's tokens: each device's expiries rise, a new token each time.
    tokens = {}
    for m in re.finditer(r"device (sim\d{6}): token expires at se=(\d+), "
                         r"renewal in (\d+) ms", res.stderr):
        tokens.setdefault(m.group(1), []).append(
            (int(m.group(2)), int(m.group(3))))
    assert len(tokens) == DEVICES, res.stderr[-3000:]
    for dev, seq in tokens.items():
        assert all(b[0] > a[0] for a, b in zip(seq, seq[1:])), (dev, seq)
        assert all(0.75 * TTL * 1000 <= ms <= 0.85 * TTL * 1000
                   for _, ms in seq), (dev, seq)

    # The broker: every device connected 1 + renewals times, each connect
    # before the previous token's se (to the second, which the log has).
    seen = broker_connects(hub.log())
    assert sorted(seen) == sorted(tokens), seen
    assert sum(len(v) - 1 for v in seen.values()) == conns["renewals"]
    for dev, times in seen.items():
        assert len(times) == len(tokens[dev]) >= 3, (dev, times)
        for (se, _), nxt in zip(tokens[dev], times[1:]):
            assert nxt < se, (dev, times, tokens[dev])
        for a, b in zip(times, times[1:]):
            assert b - a <= TTL - 1, (dev, times)

    # The gateway: the first renewals (the first DEVICES connections to
    # close) did not happen together; all devices started at once.
    closes = []
    for line in hub.gateways[0].log_lines(r"\baccess\b"):
        if line[:1].isdigit():
            stamp = line.split()[0].rstrip("Z")
            closes.append(datetime.datetime.fromisoformat(stamp))
    closes.sort()
    assert len(closes) >= DEVICES, closes
    first = closes[:DEVICES]
    spread = (first[-1] - first[0]).total_seconds()
    hglib.log(f"first renewals spread over {spread:.3f} s")
    assert spread > 0.1, first
    hub.stop_gateways()


if __name__ == "__main__":
    hglib.main(globals())
