"""The lab (lab/lab.py): devices at customer sites reach the "private" hub
through one static IP, a load balancer with a health probe and several
gateways, each part real and in its own network namespace.

A rolling update of every gateway under load loses no message, and the load
balancer sends no new connection to a gateway that is draining; only the
allowed site gets in, sites reach nothing but the static IP, and only the
gateways reach the private network; when
the hub's private address changes, new devices follow it while connected
ones stay.
"""

import os
import signal
import sys
import time

import hglib

sys.path.insert(0, os.path.join(hglib.SOURCE_DIR, "lab"))
import lab as hublab  # noqa: E402


def hello_burst(lab, n, down):
    """Opens n fresh connections from site-a to the static IP, each sending
    a ClientHello for the hub, while gateway `down` is out of the pool.
    Returns (connections gateway `down` took, connections the others
    took), once the others have routed n or the wait is over."""
    others_ids = [j for j in lab.gateways if j != down]

    def routed(ids):
        return lab.metric("hubgate_connections_total", ids)
    before = {"down": routed([down]), "others": routed(others_ids)}
    clients = []
    hello = hglib.tls_records(hglib.client_hello(sni=hublab.HUB))
    try:
        for _ in range(n):
            c = hglib.RawClient(f"{hublab.STATIC_IP}:8883", hglib.scale(5),
                                lab.sites["site-a"])
            clients.append(c)
            c.send(hello)

        try:
            hglib.wait_until(
                lambda: routed(others_ids) - before["others"] >= n,
                hglib.scale(5), what=f"{n} connections routed")
        except TimeoutError:
            pass
        return (routed([down]) - before["down"],
                routed(others_ids) - before["others"])
    finally:
        for c in clients:
            c.close()


def test_rolling_update_loses_no_message():
    # ready_delay 3 s: the probe takes the gateway out well within it,
    # leaving time for the burst while it still accepts.
    lab = hublab.Lab(gateways=3, ready_delay="3s")
    sub = lab.subscriber()
    run = lab.devices("site-a", [
        "--devices", "60", "--messages", "0", "--interval", "300",
        "--ramp", "0", "--backoff-base", "200ms", "--backoff-max", "1s",
        "--max-attempts", "0", "--quiet"])
    hglib.wait_until(lambda: lab.metric("hubgate_connections_total") >= 60,
                     hglib.scale(20), what="every device connected")
    hglib.wait_until(lambda: sub.count() >= 120, hglib.scale(20),
                     what="telemetry from the devices")
    during = {}

    def on_down(i):
        # Out of the pool but still accepting (ready_delay): every new
        # connection must go to the others.
        ready = lab.gateways[i].readyz()
        during[i] = (ready,) + hello_burst(lab, 20, i)

    codes = lab.roll(on_down=on_down)
    time.sleep(1.5)
    run.proc.send_signal(signal.SIGINT)
    res = run.finish(60)

    assert codes == {1: 0, 2: 0, 3: 0}, codes
    assert len(during) == 3, during
    for i, (ready, mine, others) in during.items():
        # (A device reconnecting meanwhile adds to the others' count.)
        assert ready == 503 and mine == 0 and others >= 20, (i, during[i])
    # Each gateway left the pool once and came back, one at a time.
    events = [(i, what) for _, i, what in lab.prober.events]
    assert events == [(1, "up"), (2, "up"), (3, "up"),
                      (1, "down"), (1, "up"), (2, "down"), (2, "up"),
                      (3, "down"), (3, "up")], events

    assert res.rc == 0, res
    m, c = res.report["messages"], res.report["connections"]
    assert m["lost"] == 0 and m["acked"] == m["sent"], res
    assert c["gave_up"] == 0, res
    # Every device was on a gateway that went away at some point.
    assert c["reconnects"] >= 60, res
    hglib.wait_until(lambda: sub.count() >= m["acked"], hglib.scale(10),
                     what=f"{m['acked']} messages at the hub")
    assert sub.count() <= m["acked"] + m["resent"], (sub.count(), m)


def test_only_the_allowed_site_gets_in_and_only_by_the_static_ip():
    lab = hublab.Lab(gateways=2)
    sub = lab.subscriber()
    res = lab.devices("site-a", [
        "--devices", "4", "--messages", "3", "--interval", "100",
        "--quiet"]).finish(60)
    assert res.rc == 0 and res.report["messages"]["acked"] == 12, res
    hglib.wait_until(lambda: sub.count() >= 12, hglib.scale(10),
                     what="site-a's messages at the hub")

    refused = lab.metric("hubgate_refused_total", reason="listener_allow")
    res = lab.devices("site-b", [
        "--devices", "2", "--messages", "1", "--max-attempts", "1",
        "--connect-timeout", "5s", "--quiet"]).finish(60)
    assert res.report["messages"]["acked"] == 0, res
    assert res.report["connections"]["gave_up"] == 2, res
    assert lab.metric("hubgate_refused_total",
                      reason="listener_allow") == refused + 2
    assert sub.count() == 12

    # Sites reach the static IP alone: not the hub's private address, not
    # a gateway's own address or its admin port.
    for site, addr in [("site-a", f"{hublab.HUB_IP}:8883"),
                       ("site-a", f"{hublab.gateway_ip(1)}:8883"),
                       ("site-b", f"{hublab.gateway_ip(1)}:9100")]:
        fenced = lab.fenced()
        try:
            c = hglib.RawClient(addr, 1.0, lab.sites[site])
        except OSError:
            pass
        else:
            c.close()
            raise AssertionError(f"{site} reached {addr}")
        assert lab.fenced() > fenced, (site, addr)


def test_new_devices_follow_the_hub_to_its_new_address():
    lab = hublab.Lab(gateways=2)
    old_sub = lab.subscriber(hublab.HUB_IP)
    first = lab.devices("site-a", [
        "--devices", "10", "--prefix", "early", "--messages", "0",
        "--interval", "200", "--ramp", "0", "--quiet"])
    hglib.wait_until(lambda: old_sub.count() >= 20, hglib.scale(20),
                     what="the first devices' telemetry")

    lab.move_hub(hublab.SPARE_HUB_IP)
    new_sub = lab.subscriber(hublab.SPARE_HUB_IP)
    # The zone's TTL and resolver.min_ttl are 1 s.
    time.sleep(3)
    at_move = old_sub.count()
    res = lab.devices("site-a", [
        "--devices", "10", "--prefix", "late", "--messages", "5",
        "--interval", "100", "--ramp", "0", "--quiet"]).finish(60)
    assert res.rc == 0 and res.report["messages"]["acked"] == 50, res
    hglib.wait_until(lambda: new_sub.count("devices/late") >= 50,
                     hglib.scale(10), what="the late devices at the new hub")
    first.proc.send_signal(signal.SIGINT)
    early = first.finish(60)
    assert early.rc == 0 and early.report["messages"]["lost"] == 0, early
    assert early.report["connections"]["reconnects"] == 0, early
    # The connected devices stayed on the old address all along.
    assert old_sub.count("devices/late") == 0
    assert new_sub.count("devices/early") == 0
    assert old_sub.count("devices/early") > at_move


if __name__ == "__main__":
    hglib.main(globals())
