"""hubsim's device behaviour under faults and other credentials, each
against a real Mosquitto: X.509 client certificates (one for the fleet, or
one per device, through hubgate and straight to the broker, and a device
without one refused), a reconnect storm of 200 devices through hubgate, and
the broker killed and restarted in the middle of a run, with the QoS 1
messages of dropped connections sent again and every duplicate accounted
for."""

import json
import os
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "hubsim", "tests"))
import hglib  # noqa: E402
import hslib  # noqa: E402

# Every message names its device and number: the subscriber tells distinct
# messages from duplicates by it.
TEMPLATE = '{"id": "$.DeviceId", "n": $.IterationNumber}'


def receipts(sub):
    """(distinct (device, n) received, duplicate receipts) at sub."""
    seen, dups = set(), 0
    for _, payload in list(sub.messages):
        msg = json.loads(payload)
        key = (msg["id"], msg["n"])
        dups += key in seen
        seen.add(key)
    return seen, dups


def x509_broker(ca):
    """Mosquitto whose TLS listener wants a certificate from ca and takes
    its subject's CN as the user name."""
    cert, key = ca.server_cert([hslib.HUB])
    return hglib.start_mosquitto(
        tls_port=0, plain_port=0, cert=cert, key=key, ca=ca.cert,
        require_certificate=True, verbose=False,
        extra="use_identity_as_username true")


def test_x509_per_device_and_shared():
    ca = hglib.CA()
    broker = x509_broker(ca)
    sub = hglib.Subscriber(broker.addr("plain"),
                           "devices/+/messages/events/#")
    certs = hglib.tmp_path(hglib.unique("device-certs"))
    os.makedirs(certs)
    for i in (1, 2, 3):
        dev = f"sim{i:06d}"
        c, k = ca.client_cert(dev, stem=dev)
        os.rename(c, os.path.join(certs, f"{dev}.pem"))
        os.rename(k, os.path.join(certs, f"{dev}.key"))
    gw_port = hglib.free_port()
    hglib.start_hubgate(hslib.gateway_yaml(gw_port, broker.addr("tls")),
                        name="hubgate-x509")
    base = ["--hub", hslib.HUB, "--cafile", ca.cert, "--ramp", "0",
            "--interval", "50", "--messages", "3", "--max-errors", "0"]
    # One certificate per device, through the gateway: the broker names
    # each client by its own certificate's CN.
    res = hslib.run_hubsim(base + ["--connect-to", f"127.0.0.1:{gw_port}",
                                   "--cert-dir", certs, "--devices", "3"])
    assert res.rc == 0, res
    assert res.report["messages"]["acked"] == 9, res
    log = broker.output()
    for i in (1, 2, 3):
        assert f"as sim{i:06d} (p2, c1, k60, u'sim{i:06d}')" in log, log
    hslib.assert_exact_count(sub, 9)
    # One certificate for the fleet, straight to the broker.
    c, k = ca.client_cert("fleet-cert")
    res = hslib.run_hubsim(base + ["--connect-to", broker.addr("tls"),
                                   "--cert", c, "--key", k, "--devices", "2",
                                   "--prefix", "shared"])
    assert res.rc == 0, res
    assert res.report["messages"]["acked"] == 6, res
    log = broker.output()
    for i in (1, 2):
        assert f"as shared{i:06d} (p2, c1, k60, u'fleet-cert')" in log, log
    # Without a certificate the broker refuses the device: a TLS error.
    res = hslib.run_hubsim(base + ["--connect-to", broker.addr("tls"),
                                   "--devices", "1", "--max-attempts", "1"])
    assert res.rc == 1, res
    errors = res.report["errors"]
    assert errors["total"] == 1 and errors["by_kind"]["tls"] == 1, res
    assert "client certificate" in errors["first"]["tls"], res
    assert res.report["connections"]["accepted"] == 0, res
    # A certificate from another CA: the broker refuses it too.
    other = hglib.CA(name="another CA")
    c, k = other.client_cert("sim000001")
    res = hslib.run_hubsim(base + ["--connect-to", broker.addr("tls"),
                                   "--cert", c, "--key", k, "--devices", "1",
                                   "--max-attempts", "1"])
    assert res.rc == 1 and res.report["connections"]["accepted"] == 0, res
    # A missing or mismatched file is a start-up error.
    res = hslib.run_hubsim(base + ["--connect-to", broker.addr("tls"),
                                   "--cert-dir", certs, "--devices", "4"])
    assert res.rc == 3 and "sim000004" in res.stderr, res
    res = hslib.run_hubsim(base + ["--connect-to", broker.addr("tls"),
                                   "--cert", os.path.join(certs,
                                                          "sim000001.pem"),
                                   "--key", os.path.join(certs,
                                                         "sim000002.key")])
    assert res.rc == 3 and "--cert" in res.stderr, res
    res = hslib.run_hubsim(["--hub", hslib.HUB, "--cert", c],
                           report=False)
    assert res.rc == 2 and "--key" in res.stderr, res


def test_storm_200_devices_through_gateway():
    hub = hslib.Hub(wss=False)
    sub = hub.subscriber()
    # 200 devices, a message every 500 ms; at 4 s (when all are up) every
    # connection drops at once, without DISCONNECT, and each device
    # reconnects after a full-jitter back-off of up to 1 s; 4 s later the
    # run ends. Mosquitto listens with a backlog of 100: on a loaded machine
    # a reconnect's SYN can find its accept queue full and be sent again
    # 1 s and 3 s later, so slow builds get a longer tail.
    storm = round(hglib.scale(4))
    res = hslib.run_hubsim(hub.args("mqtt") + [
        "--devices", "200", "--messages", "0", "--interval", "500",
        "--duration", f"{storm + round(hglib.scale(4))}s", "--ramp", "200",
        "--storm-at", f"{storm}s",
        "--backoff-base", "1s", "--max-attempts", "1", "--template", TEMPLATE,
        "--device-key", hslib.KEY, "--max-errors", "0", "--quiet"],
        timeout=90)
    assert res.rc == 0, res
    conns, msgs = res.report["connections"], res.report["messages"]
    assert conns["storms"] == 1, res
    assert conns["storm_drops"] == 200, res
    assert conns["storm_reconnects"] == 200, res
    assert conns["reconnects"] == 200 and conns["accepted"] == 400, res
    assert conns["gave_up"] == 0, res  # a storm is no failure of the device
    assert res.report["errors"]["total"] == 0, res
    assert msgs["acked"] + msgs["lost"] == msgs["sent"], res
    assert msgs["lost"] == 0, res
    assert "storms        1  connections dropped 200  reconnected 200" \
        in res.stdout, res
    # Every message hubsim sent was acknowledged (none lost), so each one
    # must be at the broker; receipts beyond that are re-sent messages.
    hglib.wait_until(lambda: len(receipts(sub)[0]) >= msgs["acked"],
                     hglib.scale(20), what="every acknowledged message")
    time.sleep(1)
    seen, dups = receipts(sub)
    assert len(seen) == msgs["acked"], (len(seen), msgs)
    assert dups <= msgs["resent"], (dups, msgs)
    hub.stop_gateways()


def broker_kill_run(extra):
    """Devices publish straight to a Mosquitto that is SIGKILLed and
    restarted on the same ports mid-run. Returns (Result, subscriber,
    restarted broker's Proc)."""
    ca = hglib.CA()
    cert, key = ca.server_cert([hslib.HUB])
    store = hglib.tmp_path(hglib.unique("mosquitto-db"))
    os.makedirs(store)
    # The subscriber keeps a persistent session (clean session off) that
    # Mosquitto saves every second: once restarted, the broker queues for
    # it what devices publish before it is back (QoS 0 queued as well, so
    # the broker has no unacknowledged deliveries of its own to repeat).
    broker = hglib.start_mosquitto(
        tls_port=0, plain_port=0, cert=cert, key=key, verbose=False,
        extra="\n".join([
            "set_tcp_nodelay true", "persistence true",
            f"persistence_location {store}/", "autosave_interval 1",
            "queue_qos0_messages true"]))
    sub = hglib.Subscriber(broker.addr("plain"),
                           "devices/+/messages/events/#", qos=0,
                           client_id=hglib.unique("kill-sub"),
                           extra_args=["-c"])
    run = hslib.start_hubsim([
        "--hub", hslib.HUB, "--connect-to", broker.addr("tls"), "--cafile",
        ca.cert, "--devices", "5", "--messages", "60", "--interval", "100",
        "--ramp", "0", "--inflight", "32", "--backoff-base", "200ms",
        "--backoff-max", "500ms", "--template", TEMPLATE, "--device-key",
        hslib.KEY, "--quiet"] + extra)
    # Once messages flow and a save holds the subscription, the broker
    # freezes for a moment (so that messages are surely in flight, unread,
    # when it dies) and is killed.
    sub.wait_count(40, timeout=20)
    time.sleep(1.2)
    broker.proc.send_signal(signal.SIGSTOP)
    time.sleep(0.5)
    broker.proc.kill()
    time.sleep(1)
    again = hglib.Proc(["mosquitto", "-c", broker.conf], name="mosquitto")
    again.wait_log(r"mosquitto version \S+ running", hglib.scale(10))
    hglib.on_cleanup(again.stop, "restarted mosquitto")
    res = run.finish(90)
    return res, sub, again


def check_broker_kill(res, sub):
    msgs, conns = res.report["messages"], res.report["connections"]
    errors = res.report["errors"]
    assert errors["total"] > 0, res
    kinds = errors["by_kind"]
    assert kinds["tcp_reset"] + kinds["closed"] + kinds["tls"] > 0, res
    assert conns["reconnects"] >= 5, res
    # Every message was sent again until acknowledged: none lost.
    assert msgs["sent"] == 300 and msgs["acked"] == 300, res
    assert msgs["lost"] == 0, res
    assert msgs["resent"] > 0, res
    hglib.wait_until(lambda: len(receipts(sub)[0]) >= 300, hglib.scale(20),
                     what=f"300 distinct messages at the broker "
                     f"(have {len(receipts(sub)[0])})")
    time.sleep(1)
    seen, dups = receipts(sub)
    expected = {(f"sim{i:06d}", n) for i in range(1, 6) for n in range(60)}
    assert seen == expected, sorted(expected - seen)[:10]
    assert dups <= msgs["resent"], (dups, msgs)
    hglib.log(f"broker kill: errors {errors['by_kind']}, reconnects "
              f"{conns['reconnects']}, re-sent {msgs['resent']}, "
              f"duplicates at the subscriber {dups}")


def test_broker_killed_and_restarted():
    res, sub, _ = broker_kill_run([])
    assert res.rc == 0, res  # errors alone do not fail a run
    check_broker_kill(res, sub)
    # The same with a threshold: the run fails.
    res, sub, _ = broker_kill_run(["--max-errors", "0"])
    assert res.rc == 1, res
    check_broker_kill(res, sub)
    # Without re-sending, what was in flight is lost; what was acknowledged
    # is still all at the broker, and nothing comes twice.
    res, sub, _ = broker_kill_run(["--resend-unacked", "0"])
    assert res.rc == 0, res
    msgs = res.report["messages"]
    assert msgs["resent"] == 0 and msgs["lost"] > 0, res
    assert msgs["acked"] + msgs["lost"] == msgs["sent"], res
    hglib.wait_until(lambda: len(receipts(sub)[0]) >= msgs["acked"],
                     hglib.scale(20), what="the acknowledged messages")
    time.sleep(1)
    seen, dups = receipts(sub)
    assert dups == 0 and len(seen) <= msgs["sent"], (len(seen), dups, msgs)


if __name__ == "__main__":
    hglib.main(globals())
