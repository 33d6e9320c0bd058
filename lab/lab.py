"""The lab: hubgate's whole topology on one Linux machine, in network
namespaces, built from the real parts (root only).

    site-a 198.51.100.10 ─┐                           ┌─ gw1 10.0.1.2 ─┐
    site-b 192.0.2.10    ─┤ edge: router and load     ├─ gw2 10.0.2.2 ─┼─ hub 10.1.0.4 (Mosquitto,
                          │ balancer (nftables), the  └─ gw3 10.0.3.2 ─┘   the private endpoint)
                          │ static IP 203.0.113.10        ...              10.1.0.53 (dnsmasq, the
                          │ on 8883, 443 and 5671                          private DNS zone)

Every namespace has one link, a veth pair to `edge`, which routes between
them; nothing has a route out of the lab. Devices at a site dial the static
IP with the hub's public name (hubsim --connect-to, the name still sent and
checked). `edge` spreads new connections over the gateways that its health
probe finds ready (GET /readyz, like a cloud load balancer's probe) and keeps
each established flow on its gateway; it passes the device's own address
through, so the gateways' allow lists see the site. Sites reach the static
IP alone, and only the gateways reach the hub's private network. The
gateways route the hub's name to its private name, which they resolve
through the private zone.

    lab = Lab(gateways=3)
    run = lab.devices("site-a", ["--devices", "50", "--messages", "0"])
    lab.roll()                     # a rolling update, one gateway at a time
    lab.move_hub("10.1.0.5")       # the private endpoint changes address
    res = run.finish(60)

`python3 lab/lab.py` rehearses a rolling update under load and prints what
happened. Everything the lab starts ends with the process (or its cleanup).
"""

import os
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.join(ROOT, "hubsim", "tests"))
import hglib  # noqa: E402
import hslib  # noqa: E402

HUB = hglib.HUB_NAME
PRIVATE = "demo-hub.privatelink.azure-devices.net"
STATIC_IP = "203.0.113.10"
PORTS = (8883, 443, 5671)
HUB_IP = "10.1.0.4"
SPARE_HUB_IP = "10.1.0.5"
DNS_IP = "10.1.0.53"
GATEWAY_NET = "10.0.0.0/16"
HUB_NET = "10.1.0.0/24"
SITES = {"site-a": "198.51.100", "site-b": "192.0.2"}
ADMIN_PORT = 9100


def gateway_ip(i):
    return f"10.0.{i}.2"


class Prober(threading.Thread):
    """The load balancer's health probe: GET /readyz on every gateway each
    `interval`; a gateway leaves the pool after `fails` answers in a row
    that are not 200 (or no answer), and comes back on the first 200.
    .pool is the set of gateways the load balancer sends new connections
    to; .events is [(monotonic time, gateway, "up" | "down")], each noted
    once the load balancer has applied it."""

    def __init__(self, lab, interval, fails):
        super().__init__(daemon=True, name="lab-prober")
        self.lab, self.interval, self.fails = lab, interval, fails
        self.events = []
        self.pool = frozenset()
        self._misses = {}
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            self.probe_once()
            self._halt.wait(self.interval)

    def probe_once(self):
        pool = set(self.pool)
        for i in self.lab.gateway_ids():
            try:
                status = hglib.http_get(f"{gateway_ip(i)}:{ADMIN_PORT}",
                                        "/readyz", self.interval * 2,
                                        self.lab.edge)[0]
            except (OSError, ValueError):
                status = None
            self._misses[i] = 0 if status == 200 else self._misses.get(i,
                                                                       0) + 1
            if status == 200:
                pool.add(i)
            elif self._misses[i] >= self.fails:
                pool.discard(i)
        if pool != self.pool:
            self.lab.set_pool(sorted(pool))
            now = time.monotonic()
            self.events += [(now, i, "up") for i in sorted(pool - self.pool)]
            self.events += [(now, i, "down")
                            for i in sorted(self.pool - pool)]
            self.pool = frozenset(pool)

    def in_pool(self, i):
        return i in self.pool

    def stop(self):
        self._halt.set()
        self.join(5)


class Lab:
    """The topology above; see the module's text. gateways: how many;
    allow: the listener's allow list (site-a's network by default, so
    site-b is a customer that has not been let in); ready_delay and drain:
    the gateways' shutdown settings; probe_interval and probe_fails: the
    load balancer's probe."""

    def __init__(self, gateways=3, allow=("198.51.100.0/24",),
                 ready_delay="1s", drain="2s", probe_interval=0.2,
                 probe_fails=2, workers=1):
        hglib.require_netns()
        for tool in ("nft", "mosquitto", "dnsmasq"):
            hglib.need_tool(tool)
        self.allow, self.workers = list(allow), workers
        self.ready_delay, self.drain = ready_delay, drain
        self.edge = hglib.NetNS()
        self.edge.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        self.sites = {}
        for n, (name, net) in enumerate(SITES.items()):
            ns = hglib.NetNS()
            self._link(ns, f"site{n}", f"{net}.1", f"{net}.10")
            self.sites[name] = ns
        self.hub_ns = hglib.NetNS()
        self._link(self.hub_ns, "hub", "10.1.0.1", HUB_IP)
        for ip in (SPARE_HUB_IP, DNS_IP):
            self.hub_ns.add_address(f"{ip}/24", "eth0")
        self.gw_ns = {}
        for i in range(1, gateways + 1):
            ns = hglib.NetNS()
            self._link(ns, f"gw{i}", f"10.0.{i}.1", gateway_ip(i))
            self.gw_ns[i] = ns
        # Sites reach the static IP and nothing else (not a gateway's own
        # address, nor its admin port); only the gateways' links reach the
        # hub's. Matched by link, so no forged source address gets around.
        self._nft("""
table ip hublab {
    chain balance {
        type nat hook prerouting priority dstnat; policy accept;
    }
    chain fence {
        type filter hook forward priority filter; policy accept;
        iifname "site*" ct status dnat accept
        iifname "site*" counter drop
        oifname "hub" iifname != "gw*" counter drop
    }
}
""")
        self.ca = hglib.CA()
        self.cert, self.key = self.ca.server_cert([HUB], ips=(HUB_IP,
                                                              SPARE_HUB_IP))
        self.brokers = {HUB_IP: self._broker(HUB_IP)}
        self.dns = hglib.start_dnsmasq({PRIVATE: [HUB_IP]}, ttl=1, port=53,
                                       host=DNS_IP, netns=self.hub_ns)
        self.gateways = {}
        for i in self.gw_ns:
            self.start_gateway(i)
        self.prober = Prober(self, probe_interval, probe_fails)
        self.prober.start()
        hglib.on_cleanup(self.prober.stop, "lab prober")
        hglib.wait_until(lambda: len(self.prober.pool) == gateways,
                         hglib.scale(10), what="every gateway in the pool")

    # -- building

    def _link(self, ns, name, edge_ip, ip):
        """A veth pair: `name` in edge (edge_ip/24), eth0 in ns (ip/24),
        whose default route goes through edge."""
        e = self.edge
        e.run(["ip", "link", "add", name, "type", "veth", "peer", "name",
               "eth0", "netns", ns.name])
        e.run(["ip", "addr", "add", f"{edge_ip}/24", "dev", name])
        e.run(["ip", "link", "set", name, "up"])
        ns.run(["ip", "addr", "add", f"{ip}/24", "dev", "eth0"])
        ns.run(["ip", "link", "set", "eth0", "up"])
        ns.run(["ip", "route", "add", "default", "via", edge_ip])

    def _nft(self, text):
        hglib.run(self.edge.cmd(["nft", "-f", "-"]), input=text)

    def _broker(self, ip):
        return hglib.start_mosquitto(
            host=ip, tls_port=8883, plain_port=1883, cert=self.cert,
            key=self.key, netns=self.hub_ns, verbose=False,
            extra="set_tcp_nodelay true")

    def gateway_yaml(self):
        allow = ", ".join(f'"{a}"' for a in self.allow)
        binds = ", ".join(f'"0.0.0.0:{p}"' for p in PORTS)
        return f"""
workers: {self.workers}
admin:
  listen: "0.0.0.0:{ADMIN_PORT}"
resolver:
  servers: ["{DNS_IP}:53"]
  min_ttl: 1s
timeouts:
  connect: 2s
listeners:
  - name: devices
    bind: [{binds}]
    allow: [{allow}]
routes:
  - name: hub
    sni: ["{HUB}"]
    backend: "{PRIVATE}"
default_route: none
shutdown:
  ready_delay: {self.ready_delay}
  drain: {self.drain}
"""

    # -- the load balancer

    def gateway_ids(self):
        return list(self.gw_ns)

    def set_pool(self, ids):
        """Points new connections to the static IP at these gateways (a
        hash of the client's address and port picks one); flows already
        established stay where they are. No gateway: no route."""
        rules = ["flush chain ip hublab balance"]
        if ids:
            ports = ", ".join(str(p) for p in PORTS)
            pool = ", ".join(f"{n} : {gateway_ip(i)}"
                             for n, i in enumerate(ids))
            rules.append(
                f"add rule ip hublab balance ip daddr {STATIC_IP} "
                f"tcp dport {{ {ports} }} dnat to jhash ip saddr . "
                f"tcp sport mod {len(ids)} map {{ {pool} }}")
        self._nft("\n".join(rules) + "\n")
        hglib.log(f"lab: load balancer pool {ids}")

    def fenced(self):
        """Packets that edge turned away: from a site to anything but the
        static IP, or to the hub's network from anything but a gateway."""
        out = hglib.run(self.edge.cmd(["nft", "list", "chain", "ip",
                                       "hublab", "fence"])).stdout
        return sum(int(line.split("counter packets")[1].split()[0])
                   for line in out.splitlines() if "counter packets" in line)

    # -- gateways

    def start_gateway(self, i):
        self.gateways[i] = hglib.start_hubgate(
            self.gateway_yaml(), netns=self.gw_ns[i], name=f"hubgate-gw{i}")
        return self.gateways[i]

    def roll(self, ids=None, on_down=None):
        """A rolling update: each gateway in turn gets SIGTERM, leaves the
        pool once its /readyz turns 503, drains, exits and is started
        again; the next one waits until it is back in the pool. on_down(i),
        when given, runs once the probe has taken gateway i out of the
        pool, while it still drains. Returns {i: exit status}."""
        codes = {}
        for i in ids or self.gateway_ids():
            g = self.gateways[i]
            g.proc.send_signal(15)
            hglib.wait_until(lambda: not self.prober.in_pool(i),
                             hglib.scale(10),
                             what=f"gateway {i} out of the pool")
            if on_down:
                on_down(i)
            codes[i] = g.proc.wait(hglib.scale(30))
            g.assert_clean_log()
            self.start_gateway(i)
            hglib.wait_until(lambda: self.prober.in_pool(i),
                             hglib.scale(10),
                             what=f"gateway {i} back in the pool")
        return codes

    def metric(self, name, ids=None, **labels):
        """The sum of a metric over the running gateways (those in ids, when
        given), for the series whose labels include these."""
        total = 0.0
        for i, g in self.gateways.items():
            if (ids is not None and i not in ids) or not g.proc.alive():
                continue
            for (n, ls), v in g.metrics().items():
                if n == name and set(labels.items()) <= set(ls):
                    total += v
        return total

    # -- the hub

    def move_hub(self, ip):
        """The private endpoint moves to ip: a broker starts there (if none
        is yet) and the private zone answers the new address."""
        if ip not in self.brokers:
            self.brokers[ip] = self._broker(ip)
        self.dns.set_records({PRIVATE: [ip]})

    def subscriber(self, ip=HUB_IP):
        """Counts the telemetry that reaches the broker at ip."""
        return hglib.Subscriber(f"{ip}:1883", "devices/+/messages/events/#",
                                netns=self.hub_ns)

    # -- devices

    def device_args(self, port=8883):
        proto = {8883: "mqtt", 443: "mqtt-ws"}[port]
        return ["--hub", HUB, "--protocol", proto, "--connect-to",
                f"{STATIC_IP}:{port}", "--cafile", self.ca.cert,
                "--device-key", hslib.KEY]

    def devices(self, site, args, port=8883):
        """Starts hubsim at a site, dialling the static IP (see
        hslib.start_hubsim); args add to the hub and credential flags."""
        return hslib.start_hubsim(self.device_args(port) + list(args),
                                  netns=self.sites[site])


def _count(n, what):
    return f"{n} {what}" + ("" if n == 1 else "s")


def _size(low, high):
    def parse(text):
        n = int(text)
        if not low <= n <= high:
            raise ValueError(text)
        return n
    parse.__name__ = f"whole number from {low} to {high}"
    return parse


def rehearse(argv=None):
    """A rolling update of every gateway while devices send, then a move of
    the hub's private address; prints what happened, exits 1 on a loss."""
    import argparse
    p = argparse.ArgumentParser(description=rehearse.__doc__)
    p.add_argument("--gateways", type=_size(1, 200), default=3)
    p.add_argument("--devices", type=_size(1, 5000), default=100)
    p.add_argument("--interval", type=_size(10, 60000), default=500,
                   help="ms between a device's messages")
    a = p.parse_args(argv)
    with hglib.scope():
        lab = Lab(gateways=a.gateways)
        sub = lab.subscriber()
        print(f"lab: {_count(a.gateways, 'gateway')} behind {STATIC_IP}, "
              f"hub at {HUB_IP}; {_count(a.devices, 'device')} at site-a")
        run = lab.devices("site-a", [
            "--devices", str(a.devices), "--messages", "0", "--interval",
            str(a.interval), "--ramp", "0", "--backoff-base", "200ms",
            "--backoff-max", "1s", "--quiet"])

        def connected():
            return lab.metric("hubgate_connections_active") >= a.devices
        hglib.wait_until(connected, hglib.scale(30), what="every device in")
        time.sleep(2)
        t0 = time.monotonic()
        codes = lab.roll()
        print(f"rolled {_count(len(codes), 'gateway')} in "
              f"{time.monotonic() - t0:.1f} s, exit codes {codes}")
        for t, i, what in lab.prober.events[a.gateways:]:
            print(f"  {t - t0:5.1f} s  gateway {i} {what}")
        hglib.wait_until(connected, hglib.scale(30), what="every device back")
        time.sleep(2)
        lab.move_hub(SPARE_HUB_IP)
        moved = lab.subscriber(SPARE_HUB_IP)
        print(f"the private zone now answers {SPARE_HUB_IP}")
        time.sleep(3)  # its TTL and the gateways' min_ttl are 1 s
        late = lab.devices("site-a", [
            "--devices", "10", "--prefix", "late", "--messages", "5",
            "--interval", "100", "--quiet"]).finish(60)
        run.proc.send_signal(signal.SIGINT)
        res = run.finish(60)
        if res.report is None or late.report is None:
            print(f"hubsim failed:\n{res.stderr[-2000:]}{late.stderr[-2000:]}")
            return 1
        m, c = res.report["messages"], res.report["connections"]
        lm = late.report["messages"]
        print(f"devices: {m['sent']} sent, {m['acked']} acknowledged, "
              f"{m['lost']} lost; {c['reconnects']} reconnects")
        time.sleep(1)
        main = (sub.count("devices/sim"), moved.count("devices/sim"))
        lates = (sub.count("devices/late"), moved.count("devices/late"))
        print(f"at {HUB_IP}: {main[0]} of their messages; at {SPARE_HUB_IP}: "
              f"{main[1]} (from devices that reconnected after the move)")
        print(f"10 devices connected after the move: {lm['acked']} "
              f"acknowledged, {lates[1]} at {SPARE_HUB_IP}, {lates[0]} at "
              f"{HUB_IP}")
        ok = (m["lost"] == 0 and
              m["acked"] <= sum(main) <= m["acked"] + m["resent"] and
              lm["acked"] == 50 and lates[0] == 0 and lates[1] >= 50)
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(rehearse())
