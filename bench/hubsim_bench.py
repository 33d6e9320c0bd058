#!/usr/bin/env python3
"""bench/hubsim_bench.py: what one hubsim process holds and sends.

`make bench-hubsim` builds hubsim (RelWithDebInfo, build-bench/) and runs

    python3 bench/hubsim_bench.py --build build-bench \\
        --docs docs/hubsim-benchmarks.md

against Mosquitto on loopback, with a TLS listener and a certificate for
the hub's name made at run time. Two workloads, --rounds times each, each
round against a freshly started broker; the report gives the median round
and every round:

  memory  --devices TLS devices (10,000) connect and stay idle; memory per
          device = (hubsim's resident memory with all of them connected -
          the same with one device connected) / (devices - 1)
  rate    --rate-devices devices (1,000) publish at QoS 1 at offered rates
          raised in steps; each step gives the acknowledged messages per
          second once every device is connected, the PUBACK latency, and the
          CPU that hubsim and Mosquitto each used, in cores and per message.
          hubsim runs one event loop here, so each of the two processes has
          a core: the one near a whole core is the one that limits.

Python 3 standard library only. Everything listens and connects on
loopback, on ports picked at run time; every child runs in its own process
group and is stopped at exit; every run is bounded in count and time.
--quick runs each workload once at a tiny size
(tests/e2e/test_bench_hubsim_smoke.py does, in `make test`).
"""

import argparse
import datetime
import os
import re
import shlex
import signal
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(HERE)

# Sizes: (full, quick).
SIZES = {
    "devices": (10000, 50),
    "ramp": (2000, 0),
    "settle_s": (3.0, 0.5),
    "rate_devices": (1000, 20),
    # Per-device intervals, ms: offered = devices * 1000 / interval.
    "rate_intervals": ((100, 40, 20, 10, 5), (100,)),
    "rate_window_s": (8, 2),
}


def log(*args):
    sys.stderr.write(time.strftime("[%H:%M:%S] ") +
                     " ".join(str(a) for a in args) + "\n")
    sys.stderr.flush()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=os.path.join(SOURCE_DIR, "build"),
                   help="CMake build folder holding hubsim/hubsim")
    p.add_argument("--docs", help="also write the report here")
    p.add_argument("--out", help="folder for results.json and the report "
                   "(default: a new temporary folder)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true",
                   help="each workload once, tiny")
    p.add_argument("--workloads", default="memory,rate",
                   help="comma-separated: memory, rate")
    p.add_argument("--devices", type=int,
                   help="devices for the memory workload")
    return p.parse_args()


ARGS = parse_args()
os.environ.setdefault("HG_BUILD_DIR", os.path.abspath(ARGS.build))
os.environ.setdefault("HG_SOURCE_DIR", SOURCE_DIR)
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "e2e"))
sys.path.insert(0, os.path.join(SOURCE_DIR, "hubsim", "tests"))
sys.path.insert(0, HERE)
import hglib  # noqa: E402
import hslib  # noqa: E402
import run as hbench  # noqa: E402  (machine facts, CPU and memory)


def size(key):
    return SIZES[key][1 if ARGS.quick else 0]


# --------------------------------------------------------------------------
# The broker and hubsim
# --------------------------------------------------------------------------

class Broker:
    """Mosquitto with one TLS listener for the hub's name, connections
    logged only (a log line per message would be the bottleneck)."""

    def __init__(self, ca):
        cert, key = ca.server_cert([hslib.HUB])
        self.m = hglib.start_mosquitto(
            tls_port=0, cert=cert, key=key, verbose=False,
            extra="set_tcp_nodelay true\nmax_connections -1")
        self.addr = self.m.addr("tls")
        self.pid = self.m.proc.pid

    def stop(self):
        self.m.stop()


LIVE = re.compile(r"^\[\s*(\d+)s\] connected (\d+)/(\d+)", re.M)


class Sim:
    """A hubsim run in the background, read from its live lines."""

    def __init__(self, ca, broker, args):
        self.r = hslib.start_hubsim(
            ["--hub", hslib.HUB, "--connect-to", broker.addr,
             "--cafile", ca.cert, "--device-key", hslib.KEY] + args)
        self.proc = self.r.proc

    def live(self):
        """(second, connected) of the last live line, or None."""
        found = LIVE.findall(self.proc.output(stderr=True))
        return (int(found[-1][0]), int(found[-1][1])) if found else None

    def wait_connected(self, n, timeout):
        def all_up():
            self.proc.check_alive()
            now = self.live()
            return now if now and now[1] >= n else None
        return hglib.wait_until(all_up, timeout, interval=0.2,
                                what=f"{n} devices connected")

    def finish(self, timeout=60):
        self.proc.send_signal(signal.SIGINT)
        return self.r.finish(timeout)


def rss_bytes(pid):
    return hbench.rss_tree(pid)


def cpu_s(pid):
    return hbench.cpu_ns_tree(pid) / 1e9


# --------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------

def idle_rss(ca, broker, devices):
    """hubsim's resident memory with `devices` TLS devices connected and
    idle (a message an hour), and the run's connect figures."""
    sim = Sim(ca, broker, [
        "--devices", str(devices), "--messages", "0",
        "--interval", "3600000", "--ramp", str(size("ramp")),
        "--threads", "2", "--connect-timeout", "60s"])
    sim.wait_connected(devices, hglib.scale(30 + devices / 200))
    time.sleep(size("settle_s"))
    rss = rss_bytes(sim.proc.pid)
    res = sim.finish()
    assert res.rc == 0, f"hubsim exited {res.rc}:\n{res}"
    conns = res.report["connections"]
    return rss, conns, res.report["errors"]["total"]


def memory_round(ca):
    broker = Broker(ca)
    try:
        n = ARGS.devices or size("devices")
        one, _, _ = idle_rss(ca, broker, 1)
        many, conns, errors = idle_rss(ca, broker, n)
        mosq = rss_bytes(broker.pid)
    finally:
        broker.stop()
    per = (many - one) / (n - 1)
    log(f"memory: {n} devices {many / 2**20:.1f} MiB, one "
        f"{one / 2**20:.1f} MiB: {per / 1024:.2f} KiB per device")
    return {"devices": n, "rss_one": one, "rss_all": many,
            "per_device": per, "accepted": conns["accepted"],
            "most_at_once": conns["most_at_once"], "errors": errors,
            "broker_rss": mosq}


def rate_step(ca, broker, devices, interval_ms):
    window = size("rate_window_s")
    if not ARGS.quick:
        hbench.wait_quiet(20)
    sim = Sim(ca, broker, [
        "--devices", str(devices), "--messages", "0", "--qos", "1",
        "--interval", str(interval_ms), "--ramp", "0", "--threads", "1",
        "--inflight", "16", "--duration", str(window + 60)])
    t0, _ = sim.wait_connected(devices, hglib.scale(30))
    # The window starts at the next whole second of hubsim's clock.
    hglib.wait_until(lambda: sim.live()[0] > t0, hglib.scale(5),
                     interval=0.05, what="the next live line")
    start_t = sim.live()[0]
    c_sim, c_broker = cpu_s(sim.proc.pid), cpu_s(broker.pid)
    foreign = hbench.Foreign()
    time.sleep(window)
    other = foreign.cores()
    c_sim, c_broker = cpu_s(sim.proc.pid) - c_sim, \
        cpu_s(broker.pid) - c_broker
    end_t = sim.live()[0]
    res = sim.finish()
    assert res.rc == 0, f"hubsim exited {res.rc}:\n{res}"
    timeline = [s for s in res.report["timeline"]
                if start_t < s["t"] <= end_t]
    secs = max(1, len(timeline))
    acked = sum(s["acked"] for s in timeline)
    sent = sum(s["sent"] for s in timeline)
    p99 = [s.get("puback_p99_ms") for s in timeline
           if s.get("puback_p99_ms") is not None]
    p50 = [s.get("puback_p50_ms") for s in timeline
           if s.get("puback_p50_ms") is not None]
    offered = devices * 1000 / interval_ms
    out = {"devices": devices, "interval_ms": interval_ms,
           "offered": offered, "acked_per_s": acked / secs,
           "sent_per_s": sent / secs,
           "puback_p50_ms": statistics.median(p50) if p50 else None,
           "puback_p99_ms": statistics.median(p99) if p99 else None,
           "hubsim_cores": c_sim / window, "broker_cores": c_broker / window,
           "hubsim_us_per_msg": c_sim * 1e6 / acked if acked else None,
           "broker_us_per_msg": c_broker * 1e6 / acked if acked else None,
           "behind": res.report["messages"]["behind_schedule"],
           "other_cores": other,
           "errors": res.report["errors"]["total"]}
    log(f"rate: offered {offered:,.0f}/s acked {out['acked_per_s']:,.0f}/s "
        f"hubsim {out['hubsim_cores']:.2f} cores, Mosquitto "
        f"{out['broker_cores']:.2f} cores, other processes {other:.2f}")
    return out


def rate_round(ca):
    broker = Broker(ca)
    try:
        return [rate_step(ca, broker, size("rate_devices"), i)
                for i in size("rate_intervals")]
    finally:
        broker.stop()


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

def kib(b):
    return f"{b / 1024:.2f} KiB"


def mib(b):
    return f"{b / 2**20:.1f} MiB"


def num(v, fmt="{:,.0f}"):
    return "–" if v is None else fmt.format(v)


def median_by(rounds, key):
    vals = [r[key] for r in rounds if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def report(results, info, elapsed, cmd):
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [
        "# hubsim benchmarks", "",
        "<!-- Written by bench/hubsim_bench.py (`make bench-hubsim`); "
        "never edit by hand. -->", "",
        f"Generated {now:%Y-%m-%d %H:%M} UTC in {elapsed / 60:.1f} min from "
        f"commit {hbench.git_commit()}. Rerun with `{cmd}`.", "",
        "What one hubsim process holds and how fast it sends, against "
        "Mosquitto on the same machine over TLS (certificate checked against "
        "the hub's name, SAS token per device). Medians of "
        f"{len(results.get('memory', [])) or len(results.get('rate', []))} "
        "round(s); every round follows.", "",
        "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in info]
    lines += [f"- hubsim: {hbench.sh([hslib.HUBSIM, '--version'])}",
              f"- Mosquitto: {hbench.sh(['mosquitto', '-h']).splitlines()[0]}"
              if hbench.sh(['mosquitto', '-h']) else "- Mosquitto: ?",
              f"- OpenSSL: {hbench.sh(['openssl', 'version'])}", ""]
    mem = results.get("memory")
    if mem:
        lines += ["## Memory per connected TLS device", "",
                  "Each round: one device connected and idle, then "
                  f"{mem[0]['devices']:,} (ramp {size('ramp')}/s, two event "
                  "loops), resident memory read "
                  f"{size('settle_s')} s after the last one connected.", "",
                  "| round | devices connected | hubsim, 1 device | "
                  "hubsim, all | per device | Mosquitto, all | errors |",
                  "|---|---|---|---|---|---|---|"]
        for i, r in enumerate(mem, 1):
            lines.append(
                f"| {i} | {r['most_at_once']:,} | {mib(r['rss_one'])} | "
                f"{mib(r['rss_all'])} | {kib(r['per_device'])} | "
                f"{mib(r['broker_rss'])} | {r['errors']} |")
        lines += ["", f"**Median: {kib(median_by(mem, 'per_device'))} per "
                  "connected TLS device** (aim: at most 32 KiB).", ""]
    rate = results.get("rate")
    if rate:
        steps = list(zip(*rate))
        lines += ["## Send rate", "",
                  f"{rate[0][0]['devices']:,} devices, QoS 1, up to 16 "
                  "messages in flight each, hubsim with one event loop; "
                  f"each step measured over {size('rate_window_s')} s once "
                  "every device is connected. Median over the rounds.", "",
                  "| offered/s | acked/s | PUBACK p50 ms | PUBACK p99 ms | "
                  "hubsim cores | Mosquitto cores | hubsim µs/msg | "
                  "Mosquitto µs/msg | limited by |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for step in steps:
            med = {k: median_by(step, k) for k in step[0]}
            short = med["acked_per_s"] < 0.95 * med["offered"]
            limit = "–"
            if short:
                busy = [name for name, cores in (
                    ("hubsim", med["hubsim_cores"]),
                    ("Mosquitto", med["broker_cores"])) if cores >= 0.9]
                limit = (" and ".join(busy) if busy else
                         "neither (waiting, not CPU)")
            lines.append(
                f"| {num(med['offered'])} | {num(med['acked_per_s'])} | "
                f"{num(med['puback_p50_ms'], '{:.2f}')} | "
                f"{num(med['puback_p99_ms'], '{:.2f}')} | "
                f"{num(med['hubsim_cores'], '{:.2f}')} | "
                f"{num(med['broker_cores'], '{:.2f}')} | "
                f"{num(med['hubsim_us_per_msg'], '{:.1f}')} | "
                f"{num(med['broker_us_per_msg'], '{:.1f}')} | {limit} |")
        lines += ["", "“limited by”: where acked/s falls more than 5 % short "
                  "of the offered rate, each process using 0.9 cores or "
                  "more: Mosquitto has one thread and hubsim runs one event "
                  "loop here, so near 1.0 cores each is saturated. Each step first waits (up to 20 s) for the "
                  "rest of the machine to be quiet; what other processes "
                  "used during the step is in the last table.", "",
                  "Every round:", "",
                  "| offered/s | round | acked/s | hubsim cores | "
                  "Mosquitto cores | other processes, cores | errors |",
                  "|---|---|---|---|---|---|---|"]
        for step in steps:
            for i, r in enumerate(step, 1):
                lines.append(
                    f"| {num(r['offered'])} | {i} | {num(r['acked_per_s'])}"
                    f" | {r['hubsim_cores']:.2f} | {r['broker_cores']:.2f} | "
                    f"{r['other_cores']:.2f} | {r['errors']} |")
        lines.append("")
    return "\n".join(lines)


def main():
    started = time.monotonic()
    hglib.need_tool("mosquitto")
    hslib.need_hubsim()
    out = ARGS.out or tempfile.mkdtemp(prefix="hubsim-bench-")
    os.makedirs(out, exist_ok=True)
    info = hbench.machine_info()
    ca = hglib.CA()
    wanted = [w.strip() for w in ARGS.workloads.split(",") if w.strip()]
    rounds = 1 if ARGS.quick else ARGS.rounds
    results = {}
    for i in range(rounds):
        log(f"round {i + 1} of {rounds}")
        if "memory" in wanted:
            results.setdefault("memory", []).append(memory_round(ca))
        if "rate" in wanted:
            results.setdefault("rate", []).append(rate_round(ca))
    cmd = ("make bench-hubsim" if ARGS.docs else
           "python3 bench/hubsim_bench.py " + shlex.join(sys.argv[1:]))
    text = report(results, info, time.monotonic() - started, cmd)
    hbench.write_results(out, "hubsim-benchmarks.md", text, results,
                         ARGS.docs)


if __name__ == "__main__":
    main()
