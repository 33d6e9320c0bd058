"""hubsim over AMQP 1.0, devices pooled on shared connections.

RabbitMQ (its AMQP 1.0 plugin, a TLS listener with a certificate for the
hub's name made here) is the broker: 2,000 devices on 995-device
connections send through hubgate, which passes the TLS through untouched,
with SASL PLAIN; hubgate counts 3 TCP connections, and a consumer on the
broker counts exactly the messages hubsim reports acknowledged, each
device's own. RabbitMQ 3.10 serves AMQP 1.0 over TCP only, so amqp-ws and
claims-based security are tested against amqp_hub.py, a small IoT Hub
stand-in built on proton's engine: it answers the WebSocket upgrade
(AMQPWSB10), checks each put-token request and its SAS token with the
device key, and refuses a device's link without an accepted token.

The RabbitMQ node is this test's own: its name, ports (AMQP, TLS, epmd,
distribution), data, logs, config and HOME (the Erlang cookie) are made
here, and the node and its epmd are stopped at the end, also on failure.
"""

import base64
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "hubsim", "tests"))
import hglib  # noqa: E402
import hslib  # noqa: E402

PYTHON = "/usr/bin/python3"  # Debian's, with python3-qpid-proton
TESTS = os.path.join(ROOT, "hubsim", "tests")
RABBIT = "/usr/lib/rabbitmq/bin/rabbitmq-server"
# The consumer's source declares the queue; the devices send to it by the
# address that does not declare it again: RabbitMQ 3.10 declares a /queue/
# target on every link attach, and a thousand attaches at once on one
# session can crash its declaring channel and with it the connection.
QUEUE = "/queue/hubsim"
TARGET = "/amq/queue/hubsim"


def need_proton():
    r = subprocess.run([PYTHON, "-c", "import proton"], capture_output=True)
    if r.returncode != 0:
        raise hglib.Skip("python3-qpid-proton is not installed")


class Rabbit:
    """A RabbitMQ node of this test's own, with AMQP 1.0 on a plain and a
    TLS listener, both on loopback."""

    def __init__(self, cert, key, cafile):
        if not os.access(RABBIT, os.X_OK):
            raise hglib.Skip("rabbitmq-server is not installed")
        base = hglib.tmp_path("rabbit")
        os.makedirs(os.path.join(base, "home"))
        self.port, self.tls_port, self.epmd_port, self.dist_port = \
            hglib.free_ports(4)
        conf = hglib.write_file(os.path.join(base, "rabbitmq.conf"), f"""
listeners.tcp.default = 127.0.0.1:{self.port}
listeners.ssl.default = 127.0.0.1:{self.tls_port}
ssl_options.cacertfile = {cafile}
ssl_options.certfile = {cert}
ssl_options.keyfile = {key}
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
loopback_users = none
log.console = true
log.console.level = warning
log.file = false
""")
        plugins = hglib.write_file(os.path.join(base, "enabled_plugins"),
                                   "[rabbitmq_amqp1_0].\n")
        empty = hglib.write_file(os.path.join(base, "rabbitmq-env.conf"), "")
        self.env = {
            "HOME": os.path.join(base, "home"),
            "RABBITMQ_NODENAME": f"{hglib.unique('hubsim')}-{os.getpid()}"
                                 "@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            # Erlang's distribution listens on every address by default.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_CONFIG_FILE": conf,
            "RABBITMQ_CONF_ENV_FILE": empty,
            "RABBITMQ_ENABLED_PLUGINS_FILE": plugins,
            "RABBITMQ_MNESIA_BASE": os.path.join(base, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(base, "log"),
            "RABBITMQ_PID_FILE": os.path.join(base, "rabbit.pid"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(base, "advanced"),
        }
        hglib.on_cleanup(self._kill_epmd, "RabbitMQ's epmd")
        self.proc = hglib.spawn([RABBIT], name="rabbitmq", env=self.env)
        hglib.on_cleanup(self.stop, "RabbitMQ")
        hglib.wait_tcp(f"127.0.0.1:{self.tls_port}", hglib.scale(120),
                       proc=self.proc)
        hglib.wait_tcp(f"127.0.0.1:{self.port}", hglib.scale(30),
                       proc=self.proc)

    def stop(self):
        self.proc.stop(timeout=hglib.scale(30))

    def _kill_epmd(self):
        env = dict(os.environ, **self.env)
        subprocess.run(["epmd", "-port", str(self.epmd_port), "-kill"],
                       env=env, capture_output=True, timeout=30)


class Consumer:
    """amqp_count.py on the broker's plain listener: one line a message."""

    def __init__(self, port, source):
        self.proc = hglib.spawn(
            [PYTHON, os.path.join(TESTS, "amqp_count.py"),
             f"amqp://guest:guest@127.0.0.1:{port}", source],
            name="amqp-consumer", separate_stderr=True)
        self.proc.wait_log(r'"ready": true', hglib.scale(30), stderr=False)

    def devices(self):
        out = []
        for line in self.proc.output().splitlines():
            rec = json.loads(line)
            if "device" in rec:
                out.append(rec["device"])
        return out


def test_rabbitmq_pooled_through_gateway():
    need_proton()
    ca = hglib.CA()
    cert, key = ca.server_cert([hslib.HUB])
    rabbit = Rabbit(cert, key, ca.cert)
    consumer = Consumer(rabbit.port, QUEUE)
    gw_port = hglib.free_port()
    gw = hglib.start_hubgate(hslib.gateway_yaml(
        gw_port, f"127.0.0.1:{rabbit.tls_port}"), name="hubgate-amqp")
    devices, messages = 2000, 3
    # Sessions begin over 4 s (--ramp is devices a second): RabbitMQ 3.10's
    # AMQP 1.0 plugin opens a channel for every link it attaches, and 2,000
    # in a second or less on a loaded machine has crashed its session
    # supervisor (badmatch 'closing'), which closes the whole connection.
    res = hslib.run_hubsim([
        "--hub", hslib.HUB, "--protocol", "amqp",
        "--connect-to", f"127.0.0.1:{gw_port}", "--cafile", ca.cert,
        "--amqp-auth", "plain", "--amqp-user", "guest",
        "--amqp-password", "guest", "--amqp-address", TARGET,
        "--devices", str(devices), "--messages", str(messages),
        "--interval", "1000", "--ramp", "500", "--threads", "1",
        "--max-errors", "0"], timeout=180)
    assert res.rc == 0, res
    rep = res.report
    want = devices * messages
    assert rep["config"]["protocol"] == "amqp", rep["config"]
    assert rep["connections"]["accepted"] == devices, res
    assert rep["messages"]["sent"] == want, res
    assert rep["messages"]["acked"] == want, res
    assert rep["messages"]["lost"] == 0, res
    assert rep["errors"]["total"] == 0, res
    assert rep["latency_ms"]["puback"]["count"] == want
    # 995 devices a connection: 3 TCP connections through the gateway, one
    # TLS handshake each.
    assert rep["latency_ms"]["tls_handshake"]["count"] == 3, rep
    total = gw.metrics().sum("hubgate_connections_total", route="hub")
    assert total == 3, total
    # The broker got exactly what was acknowledged, each device its own.
    hglib.wait_until(lambda: len(consumer.devices()) >= want,
                     hglib.scale(30), what=f"{want} messages consumed")
    seen = consumer.devices()
    assert len(seen) == want, len(seen)
    counts = {}
    for d in seen:
        counts[d] = counts.get(d, 0) + 1
    assert len(counts) == devices
    assert set(counts.values()) == {messages}
    assert counts.get("sim002000") == messages
    gw.stop()


def start_amqp_hub(ws):
    ca = hglib.CA()
    cert, key = ca.server_cert([hslib.HUB])
    port = hglib.free_port()
    hub = hglib.spawn(
        [PYTHON, os.path.join(TESTS, "amqp_hub.py"), "--port", str(port),
         "--cert", cert, "--key", key, "--hub", hslib.HUB,
         "--device-key", hslib.KEY] + (["--ws"] if ws else []),
        name="amqp-hub", separate_stderr=True)
    hub.wait_log(r'"ev": "listening"', hglib.scale(20), stderr=False)
    return hub, port, ca


def events(proc, kind):
    out = []
    for line in proc.output().splitlines():
        rec = json.loads(line)
        if rec.get("ev") == kind:
            out.append(rec)
    return out


def cbs_run(proto, devices, per_conn, key=hslib.KEY, extra=()):
    need_proton()
    hub, port, ca = start_amqp_hub(ws=proto == "amqp-ws")
    gw_port = hglib.free_port()
    gw = hglib.start_hubgate(hslib.gateway_yaml(gw_port, f"127.0.0.1:{port}"),
                             name="hubgate-cbs")
    res = hslib.run_hubsim([
        "--hub", hslib.HUB, "--protocol", proto,
        "--connect-to", f"127.0.0.1:{gw_port}", "--cafile", ca.cert,
        "--device-key", key, "--devices", str(devices),
        "--devices-per-connection", str(per_conn), "--messages", "4",
        "--interval", "200", "--ramp", "0", "--threads", "1",
        *extra], timeout=120)
    return hub, gw, res


def test_cbs_put_token_per_device():
    devices = 12
    hub, gw, res = cbs_run("amqp", devices, 5)
    assert res.rc == 0, res
    rep = res.report
    assert rep["messages"]["acked"] == devices * 4, res
    assert rep["errors"]["total"] == 0, res
    puts = events(hub, "put-token")
    assert len(puts) == devices, puts
    for p in puts:
        assert p["status"] == 200, p
        assert p["to"] == "$cbs" and p["reply_to"] == "cbs", p
    assert {p["device"] for p in puts} == \
        {f"sim{i:06d}" for i in range(1, devices + 1)}
    # 5 a connection: 3 connections, each opened with the hub's name.
    opens = events(hub, "open")
    assert len(opens) == 3, opens
    assert {o["hostname"] for o in opens} == {hslib.HUB}
    msgs = events(hub, "message")
    assert len(msgs) == rep["messages"]["acked"]
    gw.stop()


def test_cbs_wrong_key_refused():
    wrong = base64.b64encode(bytes(32)).decode()
    hub, gw, res = cbs_run("amqp", 3, 10, key=wrong, extra=(
        "--max-attempts", "2", "--backoff-base", "50ms", "--max-errors",
        "0"))
    assert res.rc == 1, res
    rep = res.report
    assert rep["messages"]["sent"] == 0, res
    assert rep["connections"]["gave_up"] == 3, res
    assert rep["errors"]["by_kind"]["amqp_cbs"] == 6, res
    assert "401" in rep["errors"]["first"]["amqp_cbs"], rep["errors"]
    assert all(p["reason"] == "bad signature"
               for p in events(hub, "put-token"))
    assert not events(hub, "message")
    gw.stop()


def test_amqp_websockets_cbs():
    devices = 6
    hub, gw, res = cbs_run("amqp-ws", devices, 4)
    assert res.rc == 0, res
    rep = res.report
    assert rep["config"]["protocol"] == "amqp-ws"
    assert rep["messages"]["acked"] == devices * 4, res
    assert rep["errors"]["total"] == 0, res
    assert len(events(hub, "websocket")) == 2
    assert len(events(hub, "put-token")) == devices
    assert len(events(hub, "message")) == devices * 4
    gw.stop()


if __name__ == "__main__":
    hglib.main(globals())
