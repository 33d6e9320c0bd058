"""hslib: what hubsim's end-to-end tests (tests/e2e/test_hubsim_*.py) share,
on top of hglib (which they use as it is).

    import hslib
    hub = hslib.Hub()                      # Mosquitto + hubgate, TLS and WSS
    sub = hub.subscriber()                 # counts telemetry at the broker
    res = hslib.run_hubsim(hub.args("mqtt") + ["--devices", "10"])
    assert res.report["messages"]["acked"] == ...

Hub: Mosquitto is the "hub", with a TLS listener (MQTT, 8883 in the field),
a TLS WebSockets listener (443 in the field) and a plain listener for
watchers; in front of each TLS listener runs its own hubgate (a route is
chosen by SNI alone, and both carry the same hub name), so devices reach the
broker through the gateway exactly as they would in production. hubsim is
told to connect to the gateway's IP (--connect-to) and sends and checks the
hub's name: no name is ever looked up.
"""

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)),
                                "tests", "e2e"))
import hglib  # noqa: E402

HUBSIM = os.environ.get("HUBSIM") or os.path.join(hglib.BUILD_DIR, "hubsim",
                                                  "hubsim")
HUB = hglib.HUB_NAME
# A device key: the bytes 0..31, base64.
KEY = base64.b64encode(bytes(range(32))).decode()
# Settings of the IoT Telemetry Simulator that a test's environment must not
# inherit from whoever runs it.
SIM_ENV = ("IotHubConnectionString", "DeviceCount", "DevicePrefix",
           "DeviceIndex", "DeviceList", "MessageCount", "Interval",
           "Intervals", "Template", "Header", "Variables",
           "PayloadDistribution", "File", "Payloads")


def need_hubsim():
    if not os.access(HUBSIM, os.X_OK):
        raise hglib.Skip(f"no hubsim binary at {HUBSIM} (set HUBSIM)")


class Result:
    """What a hubsim run left: rc, stdout, stderr, report (the JSON)."""

    def __init__(self, rc, stdout, stderr, report):
        self.rc, self.stdout, self.stderr = rc, stdout, stderr
        self.report = report

    def __repr__(self):
        return (f"hubsim exited {self.rc}\n--- stdout\n{self.stdout}"
                f"--- stderr (tail)\n{self.stderr[-4000:]}")


def run_hubsim(args, env=None, timeout=60, report=True):
    """Runs hubsim to completion with args (a --report-json file is added
    unless report=False). env adds to a copy of this environment without
    any simulator setting. Returns a Result; asserts that no sanitizer
    complained."""
    need_hubsim()
    argv = [HUBSIM] + list(args)
    path = None
    if report:
        path = hglib.tmp_path("hubsim-report.json")
        argv += ["--report-json", path]
    full = {k: v for k, v in os.environ.items()
            if k.lower() not in {s.lower() for s in SIM_ENV}}
    full.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    full.update(env or {})
    hglib.log(f"run hubsim {' '.join(args)}"
              + (f" with {env}" if env else ""))
    r = subprocess.run(argv, capture_output=True, text=True, env=full,
                       timeout=hglib.scale(timeout))
    data = None
    if path and os.path.exists(path):
        with open(path) as f:
            data = json.load(f)
    res = Result(r.returncode, r.stdout, r.stderr, data)
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:"):
        assert marker not in r.stderr, f"sanitizer report:\n{res}"
    return res


class Running:
    """A hubsim started with start_hubsim(): .proc (hglib.Proc), .rss_kib()
    while it runs, .finish() for the Result."""

    def __init__(self, args, env=None, netns=None):
        need_hubsim()
        # Unique now: two runs at once must not share a report.
        self.report_path = hglib.tmp_path(hglib.unique("hubsim-report") +
                                          ".json")
        full = {k: "" for k in SIM_ENV}
        full.update(env or {})
        self.proc = hglib.Proc([HUBSIM] + list(args) +
                               ["--report-json", self.report_path],
                               name="hubsim", env=full, netns=netns,
                               separate_stderr=True)

    def rss_kib(self):
        """Resident memory now, KiB (0 once it has exited)."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def finish(self, timeout):
        rc = self.proc.wait(hglib.scale(timeout))
        data = None
        if os.path.exists(self.report_path):
            with open(self.report_path) as f:
                data = json.load(f)
        res = Result(rc, self.proc.output(), self.proc.output(stderr=True),
                     data)
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                       "runtime error:"):
            assert marker not in res.stderr, f"sanitizer report:\n{res}"
        return res


def start_hubsim(args, env=None, netns=None):
    """Starts hubsim in the background (see Running), inside netns when
    given. Empty simulator variables in env count as unset, so none leaks
    in from outside."""
    return Running(args, env, netns)


def gateway_yaml(listen_port, backend):
    return f"""
listeners:
  - name: devices
    bind: ["127.0.0.1:{listen_port}"]
routes:
  - name: hub
    sni: ["{HUB}"]
    backend: "{backend}"
default_route: none
"""


class Hub:
    """Mosquitto with TLS (and TLS WebSockets) listeners for the hub's
    name, a plain listener for watchers, and a hubgate in front of each TLS
    listener. .gw["mqtt"] / .gw["mqtt-ws"] are the gateways' addresses."""

    def __init__(self, wss=True, gateway=True):
        self.ca = hglib.CA()
        cert, key = self.ca.server_cert([HUB])
        # Mosquitto leaves Nagle on by default: its CONNACK would then wait
        # for our delayed ACK of the TLS session ticket (40 ms).
        self.broker = hglib.start_mosquitto(
            tls_port=0, wss_port=0 if wss else None, plain_port=0,
            cert=cert, key=key, verbose=False,
            extra="set_tcp_nodelay true")
        self.direct = {"mqtt": self.broker.addr("tls")}
        if wss:
            self.direct["mqtt-ws"] = self.broker.addr("wss")
        self.gw = {}
        self.gateways = []
        if gateway:
            for proto, addr in self.direct.items():
                port = hglib.free_port()
                g = hglib.start_hubgate(gateway_yaml(port, addr),
                                        name=f"hubgate-{proto}")
                self.gateways.append(g)
                self.gw[proto] = f"127.0.0.1:{port}"

    def args(self, proto="mqtt", direct=False):
        """hubsim flags to reach this hub over proto, through the gateway
        unless direct."""
        addr = (self.direct if direct or not self.gw else self.gw)[proto]
        return ["--hub", HUB, "--protocol", proto, "--connect-to", addr,
                "--cafile", self.ca.cert]

    def subscriber(self, topics="devices/+/messages/events/#"):
        return hglib.Subscriber(self.broker.addr("plain"), topics)

    def log(self):
        return self.broker.output()

    def stop_gateways(self):
        for g in self.gateways:
            g.stop()


def assert_exact_count(sub, acked, settle=1.0, timeout=20):
    """The subscriber at the broker ends up with exactly `acked` messages:
    waits for them, then a little more to see that no more arrive."""
    hglib.wait_until(lambda: sub.count() >= acked, hglib.scale(timeout),
                     what=f"{acked} messages at the broker "
                     f"(have {sub.count()})")
    time.sleep(settle)
    assert sub.count() == acked, (f"broker got {sub.count()}, hubsim "
                                  f"reports {acked} acknowledged")


class TimedSubscriber:
    """A plain-TCP MQTT 3.1.1 subscriber (QoS 0) that notes when each
    message arrives: .arrivals is [(monotonic time, topic, payload)]."""

    def __init__(self, addr, topic):
        host, port = hglib.split_hostport(addr)
        self.sock = socket.create_connection((host, port), timeout=5)
        self.arrivals = []
        self._buf = b""
        cid = hglib.unique(f"hs-timed-{os.getpid()}")
        self.sock.sendall(hglib.mqtt_connect_packet(cid))
        t = topic.encode()
        body = struct.pack(">H", 1) + struct.pack(">H", len(t)) + t + b"\0"
        self.sock.sendall(bytes([0x82, len(body)]) + body)
        self._ready = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        hglib.on_cleanup(self.stop, "timed subscriber")
        if not self._ready.wait(hglib.scale(10)):
            raise TimeoutError("no SUBACK")

    def _packets(self):
        while True:
            if len(self._buf) < 2:
                return
            n, mult, i = 0, 1, 1
            while True:
                if i >= len(self._buf):
                    return
                b = self._buf[i]
                n += (b & 0x7F) * mult
                mult *= 128
                i += 1
                if not b & 0x80:
                    break
            if len(self._buf) < i + n:
                return
            first, body = self._buf[0], self._buf[i:i + n]
            self._buf = self._buf[i + n:]
            yield first, body

    def _read(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                return
            now = time.monotonic()
            self._buf += chunk
            for first, body in self._packets():
                if first >> 4 == 9:
                    self._ready.set()
                elif first >> 4 == 3:
                    tlen = struct.unpack(">H", body[:2])[0]
                    topic = body[2:2 + tlen].decode()
                    self.arrivals.append((now, topic, body[2 + tlen:]))

    def stop(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass


def node_eval(script, *args, timeout=30):
    """Runs a Node.js script with tests/e2e/node's packages; returns its
    stdout. Skips when node or the packages are missing."""
    hglib.need_tool("node")
    node_dir = os.path.join(hglib.SOURCE_DIR, "tests", "e2e", "node")
    modules = os.path.join(node_dir, "node_modules")
    if not os.path.isdir(os.path.join(modules, "azure-iot-common")):
        raise hglib.Skip("tests/e2e/node/node_modules missing: run "
                         "scripts/install-deps.sh")
    r = subprocess.run(["node", "-e", script, "--", *args],
                       capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, NODE_PATH=modules))
    if r.returncode != 0:
        raise RuntimeError(f"node exited {r.returncode}: {r.stderr}")
    return r.stdout
