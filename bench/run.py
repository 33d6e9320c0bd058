#!/usr/bin/env python3
"""bench/run.py: hubgate against HAProxy and NGINX, and against no proxy.

`make bench` builds the tools (RelWithDebInfo, build-bench/) and runs

    python3 bench/run.py --build build-bench --docs docs/benchmarks.md

Each workload runs through every peer in turn (direct, hubgate, HAProxy,
NGINX, rotating who goes first), --rounds times, each time against a fresh
backend and a freshly started proxy; the report shows the median of the
rounds, every round, and each peer's ratio to hubgate. The load generator
(hgload) and the backend (hgecho) are this folder's C tools; the proxies
are the Debian packages, configured as Peer.config() writes them.

  idle   --idle tunnels each send a ClientHello and a 200-byte message,
         then idle: memory per tunnel from the proxy's resident memory
  msgs   tunnels echo 200-byte messages: latency at a fixed moderate rate
         (added = proxy - direct), msgs/s at saturation, proxy CPU/message
  bulk   one and eight streams from the backend, bytes/s; one stream again
         with the backend and the reader pinned to a core each
  storm  new connections/s, each with a ClientHello routed by SNI, raised
         in steps until a step has errors, falls short or is too slow
  cpu    callgrind instructions and strace system calls per message, one
         worker, from the difference between two fixed workloads

Python 3 standard library only. Everything listens and connects on
loopback, on ports picked at run time; every child runs in its own process
group and is stopped at exit, on a signal, or when this process dies; every
load is bounded in count and time. --quick runs each workload once at a
tiny size (tests/e2e/test_bench_smoke.py does, in `make test`).
"""

import argparse
import atexit
import ctypes
import datetime
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(HERE)
SNI = "bench.hub.test"
PEERS = ("direct", "hubgate", "haproxy", "haproxy-splice", "nginx", "uring")
PEER_TITLES = {"direct": "direct", "hubgate": "hubgate",
               "haproxy": "HAProxy", "haproxy-splice": "HAProxy, splice forced",
               "nginx": "NGINX", "uring": "bare io_uring forwarder"}
# HAProxy's splice-auto splices only streams its heuristics call fast; the
# bulk workload also runs a copy that always splices, to compare with. The
# bare io_uring forwarder (bench/hburing.c: no ClientHello, no routing, no
# timers) shows what that design costs per small message, next to the rest.
ONLY = {"haproxy-splice": ("bulk",), "uring": ("msgs",)}
WORKLOADS = ("idle", "msgs", "bulk", "storm", "cpu")
WORKERS = os.cpu_count() or 1  # one per core; --workers to change

# Sizes: (full, quick). Every figure is bounded; see the workload functions.
SIZES = {
    "idle_conns": (8000, 40),
    "idle_settle_s": (1.5, 0.3),
    "msgs_conns": (5000, 20),
    "msgs_rate": (5000, 200),
    "msgs_warmup_s": (1.0, 0.2),
    "msgs_duration_s": (4.0, 0.5),
    "sat_duration_s": (3.0, 0.5),
    "bulk_streams": ((1, 8), (1, 8)),
    "bulk_warmup_s": (0.5, 0.1),
    "bulk_duration_s": (3.0, 0.3),
    "storm_rates": ((2000, 4000, 8000, 16000, 32000, 64000), (100, 200)),
    "storm_refine": (3, 1),
    "storm_p99_ms": (500, 1000),
    "storm_cpu_rate": (4000, 100),
    "storm_step_s": (1.5, 0.3),
    "storm_total": (250000, 200),
    "cpu_conns": (20, 4),
    "cpu_counts": ((50, 250), (5, 20)),
}

_children = []


def log(*args):
    sys.stderr.write(time.strftime("[%H:%M:%S] ") +
                     " ".join(str(a) for a in args) + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------

def _pdeathsig(sig=signal.SIGTERM):
    """In the child: sig when this script dies, even by SIGKILL."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, sig)
    except OSError:
        pass


def pin_tree(pid, cpus):
    """Every thread of process pid onto cpus (threads that end meanwhile
    are skipped)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, PermissionError):
            pass


def _pdeathkill():
    """As _pdeathsig, with SIGKILL: for strace, which ignores SIGTERM."""
    _pdeathsig(signal.SIGKILL)


class Proc:
    """A child in its own process group, its output in a log file."""

    def __init__(self, argv, log_path, stdin=None, stdout=None, env=None,
                 deathsig=_pdeathsig):
        self.argv = argv
        self.log_path = log_path
        self.logf = open(log_path, "ab")
        self.logf.write(("$ " + " ".join(argv) + "\n").encode())
        self.logf.flush()
        self.p = subprocess.Popen(
            argv, stdin=stdin or subprocess.DEVNULL,
            stdout=stdout or self.logf, stderr=self.logf,
            start_new_session=True, preexec_fn=deathsig,
            env=dict(os.environ, **(env or {})))
        self.pid = self.p.pid
        _children.append(self)

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Signals the process and waits; then SIGTERM and waits again;
        then kills its group. Returns its exit status."""
        for s in (sig, signal.SIGTERM) if sig != signal.SIGTERM else (sig,):
            if not self.alive():
                break
            try:
                os.kill(self.pid, s)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.argv[0]} did not stop on signal {s} in "
                    f"{timeout} s")
        self.kill()
        return self.p.returncode

    def kill(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if self in _children:
            _children.remove(self)
        if not self.logf.closed:
            self.logf.close()

    def tail(self, n=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def _cleanup():
    for c in list(_children):
        c.kill()


def _on_signal(signum, frame):
    signal.signal(signum, signal.SIG_DFL)
    _cleanup()
    os._exit(128 + signum)


atexit.register(_cleanup)
for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_s, _on_signal)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(fn, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if fn():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def proc_tree(pid):
    """pid and all its descendants."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += kids.get(p, [])
    return tree


def rss_tree(pid):
    """VmRSS in bytes of pid and all its descendants."""
    total = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                m = re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)
            total += int(m.group(1)) * 1024 if m else 0
        except OSError:
            pass
    return total


def cpu_ns_tree(pid):
    """CPU time in ns (user and system) used so far by every thread of pid
    and its descendants, from /proc/*/task/*/schedstat."""
    total = 0
    for p in proc_tree(pid):
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def kernel_ns_tree(pid):
    """CPU time in ns spent in the kernel (system time) by pid and all its
    descendants, from /proc/*/stat."""
    tick = 1e9 / os.sysconf("SC_CLK_TCK")
    total = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
            total += int(stat[stat.rindex(")") + 2:].split()[12]) * tick
        except (OSError, ValueError, IndexError):
            pass
    return total


def busy_ns():
    """CPU time in ns the machine spent busy (user, nice, system, irq and
    softirq), from /proc/stat. Interrupt time counts too: without
    IRQ_TIME_ACCOUNTING the kernel charges loopback's softirq work to the
    processes it interrupts, so it is in their schedstat totals as well."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) * 1e9 / \
        os.sysconf("SC_CLK_TCK")


def ours_ns():
    """CPU time in ns of this process and all its descendants, those still
    running and those already waited for."""
    t = os.times()
    done = (t.children_user + t.children_system) * 1e9
    return cpu_ns_tree(os.getpid()) + done


def tcp_out_segs():
    """TCP segments the machine has sent (/proc/net/snmp, Tcp OutSegs)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("OutSegs")])


def children_ns():
    """CPU time in ns of this process's children already waited for."""
    t = os.times()
    return (t.children_user + t.children_system) * 1e9


class Foreign:
    """CPU the rest of the machine used while this benchmark ran: busy
    time of the machine minus that of this process and its children."""

    def __init__(self):
        self.t, self.busy, self.ours = time.monotonic(), busy_ns(), ours_ns()

    def cores(self):
        wall = time.monotonic() - self.t
        other = busy_ns() - self.busy - (ours_ns() - self.ours)
        return max(0.0, other / 1e9 / wall) if wall > 0 else 0.0


_quiet_budget = [300.0]  # seconds of waiting allowed in a whole run


def wait_quiet(limit_s, threshold=0.25):
    """Waits (at most limit_s, and 300 s over the whole run) for half a
    second in which other processes use under threshold cores; returns the
    last figure."""
    start = time.monotonic()
    end = start + min(limit_s, _quiet_budget[0])
    while True:
        f = Foreign()
        time.sleep(0.5)
        cores = f.cores()
        if cores < threshold or time.monotonic() >= end:
            _quiet_budget[0] -= time.monotonic() - start
            return cores


# --------------------------------------------------------------------------
# The backend, the load generator
# --------------------------------------------------------------------------

class Tools:
    def __init__(self, build):
        self.hgload = os.path.join(build, "bench", "hgload")
        self.hgecho = os.path.join(build, "bench", "hgecho")
        self.hubgate = os.path.join(build, "hubgate")
        self.hburing = os.path.join(build, "bench", "hburing")  # optional
        for b in (self.hgload, self.hgecho, self.hubgate):
            if not os.access(b, os.X_OK):
                raise SystemExit(f"run.py: {b} is missing: build first "
                                 f"(make bench builds into build-bench/)")


class Backend:
    """hgecho on a free loopback port, in echo or source mode."""

    def __init__(self, tools, out, mode="echo"):
        self.proc = Proc([tools.hgecho, "--listen", "127.0.0.1:0", "--mode",
                          mode, "--max-time", "900"],
                         os.path.join(out, f"hgecho-{mode}.log"),
                         stdout=subprocess.PIPE)
        r, _, _ = select.select([self.proc.p.stdout], [], [], 10)
        line = self.proc.p.stdout.readline().decode() if r else ""
        if not line.startswith("ready "):
            raise RuntimeError(f"hgecho did not start: {self.proc.tail()}")
        self.addr = line.split()[1]
        self.port = int(self.addr.rsplit(":", 1)[1])

    def stop(self):
        self.proc.stop()


def hgload(tools, addr, workload, args, out, deadline, cpus=None):
    """Runs hgload to the end, on the given CPUs if any; returns its JSON
    report (raises on none)."""
    argv = [tools.hgload, "--connect", addr, "--workload", workload,
            "--deadline", str(deadline), *[str(a) for a in args]]

    def setup():
        _pdeathsig()
        if cpus:
            os.sched_setaffinity(0, cpus)
    with open(os.path.join(out, "hgload.log"), "a") as logf:
        logf.write("$ " + ("" if not cpus else f"(on CPUs {sorted(cpus)}) ")
                   + " ".join(argv) + "\n")
        logf.flush()
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=logf,
                           timeout=deadline + 30, preexec_fn=setup)
    lines = [ln for ln in r.stdout.decode().splitlines() if ln.strip()]
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"hgload {workload} failed ({r.returncode})")
    return json.loads(lines[-1])


def hgload_events(tools, addr, workload, args, out, deadline, on_event,
                  stdin=False):
    """Runs hgload, calling on_event(event, proc) for each event line it
    prints while running; returns its final report."""
    argv = [tools.hgload, "--connect", addr, "--workload", workload,
            "--deadline", str(deadline), *[str(a) for a in args]]
    p = Proc(argv, os.path.join(out, "hgload.log"),
             stdin=subprocess.PIPE if stdin else None,
             stdout=subprocess.PIPE)
    final, end = None, time.monotonic() + deadline + 30
    fd, pending, eof = p.p.stdout.fileno(), b"", False
    try:
        # Raw reads, split here: a buffered readline could keep a second
        # event line in its buffer, out of select's sight, until hgload
        # printed more, and the event's CPU mark would come late.
        while not eof and time.monotonic() < end:
            r, _, _ = select.select([fd], [], [], 0.5)
            if not r:
                continue
            chunk = os.read(fd, 65536)
            eof = not chunk
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not line.strip().startswith(b"{"):
                    continue
                obj = json.loads(line)
                if "event" in obj:
                    on_event(obj, p)
                else:
                    final = obj
        p.p.wait(max(1, end - time.monotonic()))
    finally:
        rc = p.stop()
    if final is None or rc != 0:
        raise RuntimeError(f"hgload {workload} failed ({rc}): {p.tail()}")
    return final


def errors_of(report):
    return sum(report["errors"].values())


# --------------------------------------------------------------------------
# The peers
# --------------------------------------------------------------------------

class Peer:
    """A proxy in front of the backend: write_config, start, stop."""
    name = "?"

    def __init__(self, tools, out, workers):
        self.tools = tools
        self.out = out
        self.workers = workers
        self.proc = None
        self.port = None

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def start(self, backend_port, tag, wrap=None, workers=None):
        """Starts on a fresh port; wrap = (tool, output file) runs the
        proxy under valgrind's callgrind or strace -c."""
        self.port = free_port()
        workers = workers or self.workers
        conf = self.config(backend_port, workers, wrap is not None)
        path = os.path.join(self.out, f"{self.name}-{tag}.conf")
        with open(path, "w") as f:
            f.write(conf)
        argv = self.argv(path, tag)
        if wrap and wrap[0] == "callgrind":
            argv = ["valgrind", "--tool=callgrind", "--trace-children=no",
                    f"--callgrind-out-file={wrap[1]}", *argv]
        elif wrap:
            # The traced proxy dies with strace (setpriv's few calls are
            # the same in both runs, so they cancel out), strace with us.
            argv = ["strace", "-f", "-c", "-o", wrap[1], "setpriv",
                    "--pdeathsig", "KILL", "--", *argv]
        self.proc = Proc(argv, os.path.join(self.out, f"{self.name}.log"),
                         deathsig=_pdeathkill if wrap and
                         wrap[0] == "strace" else _pdeathsig)
        self.wrapped = wrap is not None and wrap[0] == "strace"
        wait_until(self.ready, 120 if wrap else 15, f"{self.name} ready")
        return conf

    def ready(self):
        if not self.proc.alive():
            raise RuntimeError(f"{self.name} exited: {self.proc.tail()}")
        return port_open(self.port)

    def pids_rss(self):
        return rss_tree(self.proc.pid)

    def cpu_ns(self):
        return cpu_ns_tree(self.proc.pid)

    def kernel_ns(self):
        return kernel_ns_tree(self.proc.pid)

    def stop(self, graceful=False):
        """Stops the proxy; under strace, signals the traced child, so
        that strace sees it exit and writes its counts."""
        sig = self.stop_signal(graceful)
        if getattr(self, "wrapped", False):
            for pid in children_of(self.proc.pid):
                os.kill(pid, sig)
            try:
                self.proc.p.wait(60)
            except subprocess.TimeoutExpired:
                pass
        return self.proc.stop(sig, timeout=30 if graceful else 15)

    def stop_signal(self, graceful):
        return signal.SIGTERM


class Direct(Peer):
    """No proxy: the load generator talks to the backend itself."""
    name = "direct"

    def start(self, backend_port, tag, wrap=None, workers=None):
        self.port = backend_port
        return ""

    def pids_rss(self):
        return 0

    def cpu_ns(self):
        return None

    def kernel_ns(self):
        return None

    def stop(self, graceful=False):
        return 0


class Hubgate(Peer):
    name = "hubgate"

    def config(self, backend_port, workers, profiling):
        self.admin_port = free_port()
        return f"""\
# hubgate for the benchmark: access lines off (log.level warn), so that
# logging does not dominate; no drain wait at shutdown.
workers: {workers}
admin:
  listen: "127.0.0.1:{self.admin_port}"
log:
  level: warn
resolver:
  servers: ["127.0.0.1:53"]
listeners:
  - name: bench
    bind: ["127.0.0.1:{self.port}"]
routes:
  - name: bench
    sni: ["{SNI}"]
    backend: "127.0.0.1:{backend_port}"
shutdown:
  ready_delay: 0s
  drain: 0s
"""

    def argv(self, path, tag):
        return [self.tools.hubgate, "-c", path]

    def ready(self):
        if not self.proc.alive():
            raise RuntimeError(f"hubgate exited: {self.proc.tail()}")
        try:
            url = f"http://127.0.0.1:{self.admin_port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False


class HAProxy(Peer):
    name = "haproxy"

    def config(self, backend_port, workers, profiling):
        # maxsock = 2 maxconn + 2 maxpipes + a few must stay under the
        # 20,000 open files a process may have here.
        return f"""\
# HAProxy for the benchmark: TCP mode, SNI routing from the ClientHello,
# kernel splicing where HAProxy finds it worth it; no logging.
global
    nbthread {workers}
    maxconn 9000
    maxpipes 800
    tune.maxaccept 64
    # hubgate's pipes are 256 KiB, and it accepts with TCP_DEFER_ACCEPT.
    tune.pipesize 262144

defaults
    mode tcp
    option splice-auto
    timeout connect 5s
    timeout client 30m
    timeout server 30m

frontend bench
    bind 127.0.0.1:{self.port} defer-accept
    tcp-request inspect-delay 10s
    tcp-request content accept if {{ req_ssl_hello_type 1 }}
    use_backend bench if {{ req_ssl_sni -i {SNI} }}
    default_backend none

backend bench
    server hub 127.0.0.1:{backend_port}

backend none
"""

    def argv(self, path, tag):
        return ["haproxy", "-db", "-f", path]

    def stop_signal(self, graceful):
        # SIGUSR1: finish (no connection is left) and exit normally, so
        # that callgrind writes its counts.
        return signal.SIGUSR1 if graceful else signal.SIGTERM


class Nginx(Peer):
    name = "nginx"
    module = "/usr/lib/nginx/modules/ngx_stream_module.so"

    def config(self, backend_port, workers, profiling):
        prefix = os.path.join(self.out, "nginx-prefix")
        os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
        load = (f"load_module {self.module};\n"
                if os.path.exists(self.module) else "")
        master = "master_process off;\n" if profiling else ""
        return f"""\
# NGINX for the benchmark: stream module, SNI from ssl_preread; errors
# only in the log (the stream module keeps no access log unless asked).
{load}{master}worker_processes {workers};
worker_rlimit_nofile 19000;
pid {prefix}/nginx.pid;
error_log {self.out}/nginx-error.log error;

events {{
    worker_connections 18000;
}}

stream {{
    map $ssl_preread_server_name $hub {{
        {SNI} 127.0.0.1:{backend_port};
        default 127.0.0.1:9;
    }}

    server {{
        listen 127.0.0.1:{self.port} reuseport backlog=4096;
        ssl_preread on;
        preread_timeout 10s;
        proxy_pass $hub;
        proxy_connect_timeout 5s;
        proxy_timeout 30m;
    }}
}}
"""

    def argv(self, path, tag):
        prefix = os.path.join(self.out, "nginx-prefix")
        return ["nginx", "-p", prefix + "/", "-c", path, "-e",
                os.path.join(self.out, "nginx-error.log"), "-g",
                "daemon off;"]

    def stop_signal(self, graceful):
        return signal.SIGQUIT if graceful else signal.SIGTERM


class HAProxySplice(HAProxy):
    name = "haproxy-splice"

    def config(self, backend_port, workers, profiling):
        return super().config(backend_port, workers, profiling).replace(
            "    option splice-auto\n",
            "    option splice-request\n    option splice-response\n")


class Uring(Peer):
    """The bare io_uring forwarder: every connection to the backend."""
    name = "uring"

    def config(self, backend_port, workers, profiling):
        self.backend_port = backend_port
        return ""

    def argv(self, path, tag):
        return [self.tools.hburing, "--listen", self.addr,
                "--backend", f"127.0.0.1:{self.backend_port}",
                "--threads", str(self.workers)]


PEER_CLASSES = {"direct": Direct, "hubgate": Hubgate, "haproxy": HAProxy,
                "haproxy-splice": HAProxySplice, "nginx": Nginx,
                "uring": Uring}


def available_peers(wanted, tools):
    peers, missing = [], []
    for name in wanted:
        binary = {"haproxy": "haproxy", "haproxy-splice": "haproxy",
                  "nginx": "nginx"}.get(name)
        if binary and shutil.which(binary) is None:
            missing.append(name)
        elif name == "uring" and not os.access(tools.hburing, os.X_OK):
            missing.append(name)  # built only where liburing is
        elif name == "nginx" and not os.path.exists(Nginx.module):
            missing.append(name)
        else:
            peers.append(name)
    return peers, missing


# --------------------------------------------------------------------------
# Workloads: each runs one peer once and returns a dict of figures
# --------------------------------------------------------------------------

class Bench:
    def __init__(self, args, tools, out):
        self.args = args
        self.tools = tools
        self.out = out
        self.quick = args.quick
        self.configs = {}

    def size(self, key):
        full, quick = SIZES[key]
        return quick if self.quick else full

    def peer(self, name):
        return PEER_CLASSES[name](self.tools, self.out, self.args.workers)

    def with_peer(self, name, mode, tag, fn):
        """Fresh backend and proxy around fn(peer); both stopped after."""
        backend = Backend(self.tools, self.out, mode)
        self.backend = backend
        peer = self.peer(name)
        try:
            conf = peer.start(backend.port, tag)
            if conf:
                self.configs.setdefault(f"{name}-{tag}", conf)
            self.probe(peer, mode)
            return fn(peer)
        finally:
            if peer.proc is not None or name == "direct":
                peer.stop()
            backend.stop()

    def probe(self, peer, mode="echo"):
        """One routed connection before measuring anything: a message and
        its echo, or for a data source, some of its data."""
        if mode == "source":
            r = hgload(self.tools, peer.addr, "bulk",
                       ["--conns", 1, "--warmup", 0, "--duration", 0.5],
                       self.out, 20)
            ok = r["bytes"] > 0
        elif mode == "hello":
            r = hgload(self.tools, peer.addr, "storm",
                       ["--rate", 100, "--duration", 0.01, "--max-conns", 1],
                       self.out, 20)
            ok = r["ok"] == 1 and not errors_of(r)
        else:
            r = hgload(self.tools, peer.addr, "count",
                       ["--conns", 1, "--count", 1], self.out, 20)
            ok = r["msgs_done"] == 1
        if not ok:
            raise RuntimeError(f"{peer.name}: the probe failed: {r}")

    # -- idle

    def idle(self, name):
        if name == "direct":
            return None
        return self.with_peer(name, "echo", "main", self._idle)

    def _idle(self, peer):
        n = self.size("idle_conns")
        before = peer.pids_rss()
        seen = {}

        def on_event(ev, proc):
            if ev["event"] != "ready":
                return
            seen.update(ev)
            time.sleep(self.size("idle_settle_s"))
            seen["after"] = peer.pids_rss()
            proc.p.stdin.close()  # lets the tunnels go

        final = hgload_events(self.tools, peer.addr, "idle",
                              ["--conns", n, "--hold", 120], self.out, 180,
                              on_event, stdin=True)
        if seen.get("established") != n or errors_of(final):
            raise RuntimeError(f"idle: {seen} {final}")
        after = seen["after"]
        return {"tunnels": n, "rss_before": before, "rss_after": after,
                "bytes_per_tunnel": (after - before) / n}

    # -- msgs

    def msgs(self, name):
        return self.with_peer(name, "echo", "main", self._msgs)

    def _msgs(self, peer):
        conns = self.size("msgs_conns")
        cpu, kernel, tools = {}, {}, {}

        def on_mark(ev, proc):
            cpu[ev["name"]] = peer.cpu_ns()
            kernel[ev["name"]] = peer.kernel_ns()
            # The load generator and the backend share the machine with
            # the proxy: what they use bounds what is left for it.
            tools[ev["name"]] = (cpu_ns_tree(proc.pid) +
                                 cpu_ns_tree(self.backend.proc.pid))

        r = hgload_events(self.tools, peer.addr, "msgs",
                          ["--conns", conns, "--rate", self.size("msgs_rate"),
                           "--warmup", self.size("msgs_warmup_s"),
                           "--duration", self.size("msgs_duration_s"),
                           "--sat-duration", self.size("sat_duration_s")],
                          self.out, 120, on_mark)
        if r["established"] != conns or errors_of(r):
            raise RuntimeError(f"msgs: {r}")
        lat = r["paced"]["latency"]

        def per_msg(start, end, msgs, of=cpu):
            if of.get(start) is None or of.get(end) is None or not msgs:
                return None
            return (of[end] - of[start]) / msgs / 1000

        sat = r["saturation"]["done"]
        return {"cpu_us_per_msg": per_msg("paced", "paced_end",
                                          r["paced"]["done"]),
                "cpu_us_per_msg_sat": per_msg("saturation",
                                              "saturation_end", sat),
                "kernel_us_per_msg_sat": per_msg("saturation",
                                                 "saturation_end", sat,
                                                 kernel),
                "tools_us_per_msg_sat": per_msg("saturation",
                                                "saturation_end", sat,
                                                tools),
                "msgs_per_s": r["saturation"]["msgs_per_s"],
                "p50_us": lat["p50_us"], "p99_us": lat["p99_us"],
                "p999_us": lat["p999_us"],
                "paced_done": r["paced"]["done"],
                "behind_max_ms": r["paced"]["behind_max_ms"],
                "sat_p99_us": r["saturation"]["latency"]["p99_us"]}

    # -- bulk

    def bulk(self, name):
        return self.with_peer(name, "source", "main", self._bulk)

    def _bulk(self, peer):
        def stream(n, cpus=None):
            r = hgload(self.tools, peer.addr, "bulk",
                       ["--conns", n,
                        "--warmup", self.size("bulk_warmup_s"),
                        "--duration", self.size("bulk_duration_s")],
                       self.out, 60, cpus=cpus)
            if r["established"] != n:
                raise RuntimeError(f"bulk: {r}")
            return r["bytes_per_s"]
        res = {f"bytes_per_s_{n}": stream(n)
               for n in self.size("bulk_streams")}
        # One stream again with the backend and the reader each on a core of
        # its own, the proxy left to the scheduler: shows how much of a
        # difference is where three busy processes land on the cores.
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) >= 2:
            pin_tree(self.backend.proc.pid, {cores[0]})
            try:
                res["bytes_per_s_1_pinned"] = stream(1, {cores[1]})
            finally:
                pin_tree(self.backend.proc.pid, set(cores))
        return res

    # -- storm

    def storm(self, name):
        return self.with_peer(name, "hello", "main", self._storm)

    def _storm(self, peer):
        """Raises the rate through storm_rates until a step is unclean (an
        error, or under 90 % of its rate), then halves the gap between the
        last clean and the first unclean rate storm_refine times. Stops
        early at storm_total connections."""
        st = {"steps": [], "total": 0, "stop": "all steps clean"}
        lo, hi = 0, None
        for rate in self.size("storm_rates"):
            clean = self._storm_step(peer, rate, st)
            if clean is None:
                break
            if not clean:
                hi = rate
                break
            lo = rate
        for _ in range(self.size("storm_refine") if hi else 0):
            mid = (lo + hi) // 2
            clean = self._storm_step(peer, mid, st)
            if clean is None:
                break
            lo, hi = (mid, hi) if clean else (lo, mid)
        clean = [s for s in st["steps"] if s["clean"]]
        top = max(clean, key=lambda s: s["achieved"], default=None)
        at = [s for s in st["steps"]
              if s["rate"] == self.size("storm_cpu_rate")]
        keys = ("cpu_us_per_conn", "kernel_us_per_conn", "tools_us_per_conn",
                "segs_per_conn")
        return {"conns_per_s": top["achieved"] if top else 0.0,
                "steps": st["steps"], "stop": st["stop"],
                # No step failed: the figure is a floor, not the limit.
                "ceiling": all(s["clean"] for s in st["steps"]),
                **{k: at[0][k] if at else None for k in keys},
                **{k + "_top": top[k] if top else None for k in keys}}

    def _storm_step(self, peer, rate, st):
        """One step; True when clean, None when the total is reached."""
        step_s = self.size("storm_step_s")
        count = int(rate * step_s)
        if st["total"] + count > self.size("storm_total"):
            st["stop"] = "total bound reached"
            return None
        cpu0, k0 = peer.cpu_ns(), peer.kernel_ns()
        t0 = children_ns() + cpu_ns_tree(self.backend.proc.pid)
        segs0 = tcp_out_segs()
        r = hgload(self.tools, peer.addr, "storm",
                   ["--rate", rate, "--duration", step_s, "--max-conns",
                    count, "--src-ips", 16, "--timeout-ms", 2000],
                   self.out, 60)
        cpu1, k1 = peer.cpu_ns(), peer.kernel_ns()
        t1 = children_ns() + cpu_ns_tree(self.backend.proc.pid)
        segs = tcp_out_segs() - segs0
        ok = r["ok"]
        cpu_us = (cpu1 - cpu0) / ok / 1000 \
            if cpu0 is not None and ok else None
        kernel_us = (k1 - k0) / ok / 1000 if k0 is not None and ok else None
        tools_us = (t1 - t0) / ok / 1000 if ok else None
        st["total"] += r["started"]
        errs = {k: v for k, v in r["errors"].items() if v}
        p99_ms = r["latency"]["p99_us"] / 1000
        short = r["achieved_per_s"] < 0.9 * rate
        slow = p99_ms > self.size("storm_p99_ms")
        clean = not errs and not short and not slow
        st["steps"].append({"rate": rate, "ok": r["ok"], "due": r["due"],
                            "achieved": r["achieved_per_s"], "errors": errs,
                            "clean": clean, "p99_ms": p99_ms,
                            "cpu_us_per_conn": cpu_us,
                            "kernel_us_per_conn": kernel_us,
                            "tools_us_per_conn": tools_us,
                            "segs_per_conn": segs / ok if ok else None})
        if errs:
            st["stop"] = f"errors at {rate:,}/s: {errs}"
        elif short or slow:
            st["stop"] = (f"{rate:,}/s: " + ("fell short" if short else "") +
                          (", " if short and slow else "") +
                          (f"p99 {p99_ms:.0f} ms" if slow else ""))
        time.sleep(0.3 if clean else 1.0)
        return clean

    # -- cpu

    def cpu(self, name):
        """Instructions (callgrind) and system calls (strace) per message:
        each tool runs the proxy for two workloads of different sizes, and
        the difference over the extra messages is the cost of a message."""
        if name not in ("hubgate", "haproxy", "nginx"):
            return None
        counts = self.size("cpu_counts")
        conns = self.size("cpu_conns")
        k1, k2 = counts
        msgs = conns * (k2 - k1)
        res = {}
        if shutil.which("valgrind"):
            cg = {k: self._wrapped(name, conns, k, "callgrind")
                  for k in counts}
            ir = {k: callgrind_functions(v) for k, v in cg.items()}
            tot = {k: sum(v.values()) for k, v in ir.items()}
            res.update({"ir_per_msg": (tot[k2] - tot[k1]) / msgs,
                        "ir": {str(k): v for k, v in tot.items()},
                        "ir_top": per_msg_top(ir[k1], ir[k2], msgs)})
        if shutil.which("strace"):
            sc = {k: strace_counts(self._wrapped(name, conns, k, "strace"))
                  for k in counts}
            tot = {k: sum(v.values()) for k, v in sc.items()}
            res.update({"syscalls_per_msg": (tot[k2] - tot[k1]) / msgs,
                        "syscalls_top": per_msg_top(sc[k1], sc[k2], msgs)})
        return res or {"skipped": "neither valgrind nor strace installed"}

    def _wrapped(self, name, conns, count, tool):
        """Runs the proxy (1 worker) under tool for conns x count messages;
        returns the tool's output file."""
        backend = Backend(self.tools, self.out, "echo")
        peer = self.peer(name)
        path = os.path.join(self.out, f"{tool}.{name}.{count}.out")
        try:
            conf = peer.start(backend.port, "cpu", wrap=(tool, path),
                              workers=1)
            self.configs.setdefault(f"{name}-cpu", conf)
            self.probe(peer)
            r = hgload(self.tools, peer.addr, "count",
                       ["--conns", conns, "--count", count,
                        "--open-inflight", 4], self.out, 300)
            if r["msgs_done"] != conns * count:
                raise RuntimeError(f"cpu: {r}")
            rc = peer.stop(graceful=True)
            if rc != 0:
                log(f"{name} under {tool} exited {rc}")
        finally:
            if peer.proc is not None:
                peer.proc.stop(timeout=60)
            backend.stop()
        return path


def callgrind_functions(path):
    """{function: instructions of its own} from a callgrind output file."""
    r = subprocess.run(["callgrind_annotate", "--auto=no",
                        "--threshold=100", path],
                       capture_output=True, text=True, timeout=300)
    funcs = {}
    for line in r.stdout.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*)$", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        fn = re.sub(r"^\S*/", "", m.group(2))  # file path
        fn = re.sub(r"\[\S*/([^/\]]+)\]$", r"[\1]", fn)  # object path
        funcs[fn] = funcs.get(fn, 0) + int(m.group(1).replace(",", ""))
    if not funcs:
        raise RuntimeError(f"no functions in {path}: {r.stderr[:300]}")
    return funcs


def strace_counts(path):
    """{system call: calls} from `strace -c` output."""
    calls = {}
    with open(path, errors="replace") as f:
        for line in f:
            t = line.split()
            if len(t) in (5, 6) and t[-1] != "total" and \
                    re.match(r"^[\d.]+$", t[0]) and t[3].isdigit():
                calls[t[-1]] = calls.get(t[-1], 0) + int(t[3])
    if not calls:
        raise RuntimeError(f"no counts in {path}")
    return calls


def per_msg_top(small, large, msgs, n=12):
    """The n items whose count grew most from small to large, per msg."""
    diff = {k: large.get(k, 0) - small.get(k, 0) for k in set(small) |
            set(large)}
    top = sorted(diff.items(), key=lambda kv: -kv[1])[:n]
    return [{"name": k, "per_msg": v / msgs} for k, v in top if v > 0]


# --------------------------------------------------------------------------
# The run, the report
# --------------------------------------------------------------------------

def run_all(args, tools, out, peers):
    bench = Bench(args, tools, out)
    failures = []
    results = {w: {p: [] for p in peers if w in ONLY.get(p, WORKLOADS)}
               for w in args.workloads}
    for w in args.workloads:
        wpeers = list(results[w])
        r_count = 1 if args.quick else args.rounds
        for rnd in range(r_count):
            order = wpeers[rnd % len(wpeers):] + wpeers[:rnd % len(wpeers)]
            for p in order:
                log(f"{w}: round {rnd + 1}/{r_count}, {p}")
                quiet = wait_quiet(args.quiet_wait) if args.quiet_wait \
                    else None
                if quiet is not None and quiet >= 0.25:
                    log(f"  other processes still use {quiet:.2f} cores")
                t, foreign = time.monotonic(), Foreign()
                try:
                    res = getattr(bench, w)(p)
                except (RuntimeError, OSError, ValueError, KeyError,
                        subprocess.SubprocessError) as exc:
                    log(f"  FAILED: {exc!r}")
                    failures.append(f"{w}, round {rnd + 1}, "
                                    f"{PEER_TITLES[p]}: {exc}")
                    continue
                if res is not None:
                    res["seconds"] = round(time.monotonic() - t, 1)
                    res["foreign_cores"] = round(foreign.cores(), 3)
                    results[w][p].append(res)
                    log(f"  {summary_line(w, res)}")
    return results, bench.configs, failures


def summary_line(w, r):
    keys = {"idle": ["bytes_per_tunnel"],
            "msgs": ["msgs_per_s", "p50_us", "p99_us", "p999_us",
                     "cpu_us_per_msg", "cpu_us_per_msg_sat",
                     "kernel_us_per_msg_sat", "tools_us_per_msg_sat"],
            "bulk": [k for k in r if k.startswith("bytes_per_s")],
            "storm": ["conns_per_s", "stop", "cpu_us_per_conn",
                      "kernel_us_per_conn", "tools_us_per_conn",
                      "segs_per_conn"],
            "cpu": ["ir_per_msg", "syscalls_per_msg"]}[w]
    return ", ".join(f"{k}={r.get(k)}" for k in keys)


def med(results, w, p, key):
    vals = [r[key] for r in results.get(w, {}).get(p, [])
            if isinstance(r.get(key), (int, float))]
    return statistics.median(vals) if vals else None


def fmt(v, kind):
    if v is None:
        return "–"
    if kind == "bytes":
        return f"{v / 1024:.2f} KiB" if v >= 1024 else f"{v:.0f} B"
    if kind == "rate":
        return f"{v:,.0f}"
    if kind == "gbs":
        return f"{v / 1e9:.2f} GB/s"
    if kind == "us":
        return f"{v:.1f} µs"
    if kind == "ir":
        return f"{v:,.0f}"
    if kind == "calls":
        return f"{v:.2f}"
    return str(v)


METRICS = [
    # (label, workload, key, kind, better, added-over-direct)
    ("memory per idle tunnel", "idle", "bytes_per_tunnel", "bytes", "low",
     False),
    ("small messages/s at saturation", "msgs", "msgs_per_s", "rate", "high",
     False),
    ("proxy CPU per message at the fixed rate", "msgs", "cpu_us_per_msg",
     "us", "low", False),
    ("proxy CPU per message at saturation", "msgs", "cpu_us_per_msg_sat",
     "us", "low", False),
    ("added latency p50 (at the fixed rate)", "msgs", "p50_us", "us", "low",
     True),
    ("added latency p99", "msgs", "p99_us", "us", "low", True),
    ("added latency p99.9", "msgs", "p999_us", "us", "low", True),
    ("bulk, 1 stream", "bulk", "bytes_per_s_1", "gbs", "high", False),
    ("bulk, 8 streams", "bulk", "bytes_per_s_8", "gbs", "high", False),
    ("bulk, 1 stream, backend and reader pinned to a core each", "bulk",
     "bytes_per_s_1_pinned", "gbs", "high", False),
    ("new connections/s with SNI routing", "storm", "conns_per_s", "rate",
     "high", False),
    ("proxy CPU per connection (storm, at a fixed step)", "storm",
     "cpu_us_per_conn", "us", "low", False),
    ("TCP segments per connection, every side (storm, at a fixed step)",
     "storm", "segs_per_conn", "calls", "low", False),
    ("instructions per message (callgrind, 1 worker)", "cpu", "ir_per_msg",
     "ir", "low", False),
    ("system calls per message (strace -c, 1 worker)", "cpu",
     "syscalls_per_msg", "calls", "low", False),
]


def value(results, w, p, key, added):
    v = med(results, w, p, key)
    if v is None or not added:
        return v
    d = med(results, w, "direct", key)
    return None if d is None else v - d


def summary_table(results, peers):
    proxies = [p for p in peers if p != "direct"]
    others = [p for p in proxies if p != "hubgate"]
    head = ["metric"] + [PEER_TITLES[p] for p in peers] + \
        [f"{PEER_TITLES[p]} ÷ hubgate" for p in others]
    rows = ["| " + " | ".join(head) + " |",
            "|" + "---|" * len(head)]
    for label, w, key, kind, _, added in METRICS:
        if w not in results:
            continue
        if key.startswith("bytes_per_s_") and not any(
                key in r for p in peers for r in results[w].get(p, [])):
            continue
        cells = [label]
        hub = value(results, w, "hubgate", key, added)
        for p in peers:
            if p == "direct" and added:
                v = med(results, w, p, key)
                cells.append(f"({fmt(v, kind)} total)" if v else "–")
                continue
            cells.append(fmt(value(results, w, p, key, added), kind))
        for p in others:
            v = value(results, w, p, key, added)
            ok = v is not None and hub not in (None, 0)
            cells.append(f"{v / hub:.2f}" if ok else "–")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


TARGETS = [
    # (text, workload, key, added, compared with, bound, at most?)
    ("memory per idle tunnel ≤ 0.25 × HAProxy", "idle", "bytes_per_tunnel",
     False, "haproxy", 0.25, True),
    ("small messages/s ≥ 1.3 × HAProxy", "msgs", "msgs_per_s", False,
     "haproxy", 1.3, False),
    ("added latency p99 ≤ HAProxy's", "msgs", "p99_us", True, "haproxy",
     1.0, True),
    ("bulk 1 stream ≥ 1.0 × HAProxy splicing (splice forced)", "bulk",
     "bytes_per_s_1", False, "haproxy-splice", 1.0, False),
    ("bulk 1 stream ≥ 1.0 × HAProxy (splice-auto)", "bulk",
     "bytes_per_s_1", False, "haproxy", 1.0, False),
    ("bulk 1 stream ≥ 0.6 × direct", "bulk", "bytes_per_s_1", False,
     "direct", 0.6, False),
    ("new connections/s ≥ 1.3 × HAProxy", "storm", "conns_per_s", False,
     "haproxy", 1.3, False),
    ("instructions per message ≤ 0.7 × HAProxy", "cpu", "ir_per_msg", False,
     "haproxy", 0.7, True),
]


def round_ratios(results, w, key, added, other):
    """hubgate's figure ÷ the other's within each round: the two ran minutes
    apart at most, so these show how much of a ratio is the machine's
    drift."""
    runs = results.get(w, {})
    out = []
    for i in range(len(runs.get("hubgate", []))):
        try:
            h = runs["hubgate"][i][key]
            x = runs[other][i][key]
            if added:
                d = runs["direct"][i][key]
                h, x = h - d, x - d
        except (KeyError, IndexError, TypeError):
            continue
        if isinstance(h, (int, float)) and isinstance(x, (int, float)) \
                and x > 0:
            out.append(h / x)
    return out


def targets_table(results, quick=False):
    rows = ["| target | hubgate | the other | ratio | met | "
            "ratio in each round |",
            "|---|---|---|---|---|---|"]
    kinds = {m[2]: m[3] for m in METRICS}
    for text, w, key, added, other, bound, at_most in TARGETS:
        if w not in results:
            continue
        h = value(results, w, "hubgate", key, added)
        x = value(results, w, other, key, added)
        if h is None or x is None:
            rows.append(f"| {text} | – | – | – | – | – |")
            continue
        ratios = round_ratios(results, w, key, added, other)
        each = ", ".join(f"{r:.2f}" for r in ratios) or "–"
        if x <= 0:
            ratio = float("inf") if h > 0 else 1.0
            ok = h <= x if at_most else True
        else:
            ratio = h / x
            ok = ratio <= bound if at_most else ratio >= bound
        said = ("not judged (quick run)" if quick else
                verdict(results, text, ok, ratios, bound, at_most))
        rows.append(f"| {text} | {fmt(h, kinds[key])} | "
                    f"{fmt(x, kinds[key])} | {ratio:.2f} | {said} | {each} |")
    return "\n".join(rows)


def rounds_met(ratios, bound, at_most):
    """How many rounds' ratios meet the bound."""
    return sum((r <= bound) if at_most else (r >= bound) for r in ratios)


def undecided(results, w):
    """True when the storm's figure is only a floor: a peer never failed a
    step, so its rate says nothing of its limit."""
    return w == "storm" and any(r.get("ceiling") for p in ("hubgate",
                                                             "haproxy")
                                for r in results.get(w, {}).get(p, []))


def verdict(results, text, ok, ratios, bound, at_most):
    """yes / no, said with how far this run's rounds agree on it."""
    if undecided(results, next(t[1] for t in TARGETS if t[0] == text)):
        return "not decided: a peer never failed a step (raise storm_rates)"
    met = rounds_met(ratios, bound, at_most)
    word = "yes" if ok else "**no**"
    if ratios and 0 < met < len(ratios):
        return f"{word} (unsteady: {met} of {len(ratios)} rounds met it)"
    return word


def target_met(results, text):
    """True or False for a target of TARGETS by its text; None unmeasured
    or undecided."""
    for t, w, key, added, other, bound, at_most in TARGETS:
        if t != text:
            continue
        if undecided(results, w):
            return None
        h = value(results, w, "hubgate", key, added)
        x = value(results, w, other, key, added)
        if h is None or x is None or x <= 0:
            return None
        return h / x <= bound if at_most else h / x >= bound
    return None


def limits_section(results):
    """For each throughput target missed, what this run's figures say
    limits it: the load generator and the backend share the machine with
    the proxy, so the rate is the machine's cores divided by the CPU all of
    them spend on one message (or connection)."""
    cores = os.cpu_count() or 1
    out = []

    def budget(what, unit, rate, tools, own, kernel, other_cpu):
        goal = 1.3 * rate
        machine = cores * 1e6 / goal
        left = machine - tools
        # System time comes in clock ticks: over a short window it can
        # round past the schedstat total.
        share = (f" ({min(100, round(100 * kernel / own))} % of it in the "
                 "kernel)" if kernel is not None and own else "")
        text = (f"Through hubgate, one {unit} cost {tools:.1f} µs of CPU in "
                f"the load generator and the backend and {own:.1f} µs in "
                f"hubgate{share}; through HAProxy, {other_cpu:.1f} µs in "
                f"HAProxy. At 1.3 × HAProxy's rate ({goal:,.0f}/s) the "
                f"{cores} cores have {machine:.1f} µs per {unit} in all, "
                f"which leaves hubgate {left:.1f} µs")
        if left <= 0:
            return text + (": nothing, since the load generator and the "
                           "backend alone would use up the machine.")
        if left >= own:
            return text + (", as much as it uses or more: hubgate's CPU is "
                           "not what held the rate back in this run.")
        return text + f", {100 * (1 - left / own):.0f} % less than it uses."

    msgs = "small messages/s ≥ 1.3 × HAProxy"
    h = {k: med(results, "msgs", "hubgate", k) for k in (
        "tools_us_per_msg_sat", "cpu_us_per_msg_sat",
        "kernel_us_per_msg_sat")}
    x_rate = med(results, "msgs", "haproxy", "msgs_per_s")
    x_cpu = med(results, "msgs", "haproxy", "cpu_us_per_msg_sat")
    if target_met(results, msgs) is False and None not in (
            h["tools_us_per_msg_sat"], h["cpu_us_per_msg_sat"], x_rate,
            x_cpu):
        calls = med(results, "cpu", "hubgate", "syscalls_per_msg")
        instr = med(results, "cpu", "hubgate", "ir_per_msg")
        out += [f"**{msgs}.** " + budget(
            msgs, "message", x_rate, h["tools_us_per_msg_sat"],
            h["cpu_us_per_msg_sat"], h["kernel_us_per_msg_sat"], x_cpu)]
        if calls is not None and instr is not None:
            out[-1] += (f" Per message hubgate makes {calls:.2f} system "
                        "calls, of which 4 are the read and the write in "
                        "each direction that every proxy makes, and runs "
                        f"{instr:,.0f} instructions in user space; the rest "
                        "of its CPU is the kernel's TCP work on loopback, "
                        "where the sender also pays for the receiver's "
                        "side.")
        u_rate = med(results, "msgs", "uring", "msgs_per_s")
        u_cpu = med(results, "msgs", "uring", "cpu_us_per_msg_sat")
        if u_rate is not None and u_cpu is not None:
            reach = ("which would meet the target: forwarding on "
                     "io_uring is how hubgate could" if
                     u_rate >= 1.3 * x_rate else "still short of the "
                     "target")
            out[-1] += (" The bare io_uring forwarder, which does less "
                        f"than a proxy, forwarded {u_rate:,.0f} messages/s "
                        f"({u_rate / x_rate:.2f} × HAProxy's) with "
                        f"{u_cpu:.1f} µs of CPU per message, {reach} (its "
                        "latency tail, in the table above, is not a "
                        "proxy's to copy).")
            u_fixed = med(results, "msgs", "uring", "cpu_us_per_msg")
            h_fixed = med(results, "msgs", "hubgate", "cpu_us_per_msg")
            if u_fixed is not None and h_fixed is not None:
                out[-1] += (f" At the fixed rate it used {u_fixed:.1f} µs "
                            f"per message, hubgate {h_fixed:.1f} µs")
                out[-1] += (": its saving comes from batching at saturation, "
                            "and a gateway of mostly idle devices runs well "
                            "below it." if u_fixed > h_fixed else ".")
        out.append("")
    storm = "new connections/s ≥ 1.3 × HAProxy"
    h = {k: med(results, "storm", "hubgate", k + "_top") for k in (
        "tools_us_per_conn", "cpu_us_per_conn", "kernel_us_per_conn")}
    x_rate = med(results, "storm", "haproxy", "conns_per_s")
    x_cpu = med(results, "storm", "haproxy", "cpu_us_per_conn_top")
    if target_met(results, storm) is False and None not in (
            h["tools_us_per_conn"], h["cpu_us_per_conn"], x_rate, x_cpu):
        out += [f"**{storm}.** " + budget(
            storm, "connection", x_rate, h["tools_us_per_conn"],
            h["cpu_us_per_conn"], h["kernel_us_per_conn"], x_cpu) +
            " (CPU measured over the step that gave each figure.) A proxy "
            "accepts one TCP connection and opens another for each, so it "
            "pays for two handshakes and two closes; on loopback it is also "
            "charged with its peers' side of each packet.", ""]
    handled = {msgs, storm}
    for text, w, key, added, other, bound, at_most in TARGETS:
        if text in handled or target_met(results, text) is not False:
            continue
        each = round_ratios(results, w, key, added, other)
        met = rounds_met(each, bound, at_most)
        line = (f"**{text}.** Missed by the median; the rounds' ratios were "
                + ", ".join(f"{r:.2f}" for r in each) + ".")
        if met:
            line += (f" {met} of {len(each)} rounds met it: the margin lies "
                     "within how much this machine's figures move from run "
                     "to run (see every round below).")
        if key == "bytes_per_s_1":
            line += pinned_note(results, other, bound)
        out += [line, ""]
    return "\n".join(out)


def pinned_note(results, other, bound):
    """What the pinned single stream says of a missed bulk target."""
    each = round_ratios(results, "bulk", "bytes_per_s_1_pinned", False, other)
    if not each:
        return ""
    text = (" With the backend and the reader pinned to a core each (the "
            "proxies left to the scheduler) the rounds' ratios were " +
            ", ".join(f"{r:.2f}" for r in each))
    if min(each) >= bound:
        return text + (": what separates them unpinned is where the "
                       "scheduler places three busy processes on two cores, "
                       "not the work of moving a byte.")
    return text + "."


def rounds_table(results, peers):
    rows = ["| metric | peer | every round |", "|---|---|---|"]
    for label, w, key, kind, _, added in METRICS:
        if added:  # the rounds show the totals the differences come from
            label = label.replace("added latency", "latency, total,")
        for p in peers:
            vals = [r.get(key) for r in results.get(w, {}).get(p, [])]
            vals = [v for v in vals if isinstance(v, (int, float))]
            if vals:
                rows.append(f"| {label} | {PEER_TITLES[p]} | " +
                            ", ".join(fmt(v, kind) for v in vals) + " |")
    return "\n".join(rows)


def foreign_note(results):
    """How busy the rest of the machine was: the figures' noise."""
    vals = [r["foreign_cores"] for w in results.values() for runs in
            w.values() for r in runs if "foreign_cores" in r]
    if not vals:
        return ""
    busy = sum(v >= 0.25 for v in vals)
    return (f"Other processes on the machine used {statistics.median(vals):.2f}"
            f" cores in the median run and {max(vals):.2f} at most; "
            f"{busy} of {len(vals)} runs shared the machine with more than "
            f"0.25 cores of other work (per-run figures in results.json).")


def storm_table(results, peers):
    rows = ["| peer | round | steps: rate → achieved (p99) | "
            "last unclean step |",
            "|---|---|---|---|"]
    for p in peers:
        for i, r in enumerate(results.get("storm", {}).get(p, [])):
            steps = "; ".join(
                f"{s['rate']:,} → {s['achieved']:,.0f} ({s['p99_ms']:.1f} ms)"
                for s in r["steps"])
            rows.append(f"| {PEER_TITLES[p]} | {i + 1} | {steps} | "
                        f"{r['stop']} |")
    return "\n".join(rows)


def cpu_section(results):
    lines = []
    for p, runs in results.get("cpu", {}).items():
        for i, r in enumerate(runs):
            if "skipped" in r:
                lines.append(f"- {PEER_TITLES[p]}: skipped ({r['skipped']})")
                continue
            irs = ", ".join(f"{v:,}" for v in r.get("ir", {}).values())
            lines.append(f"- {PEER_TITLES[p]}, round {i + 1}: Ir of the two "
                         f"runs {irs}; {r.get('ir_per_msg', 0):,.0f} "
                         f"instructions and "
                         f"{r.get('syscalls_per_msg', 0):.2f} system calls "
                         f"per message")
    for p in ("hubgate", "haproxy", "nginx"):
        runs = results.get("cpu", {}).get(p, [])
        if not runs or "ir_top" not in runs[0]:
            continue
        lines += ["", f"{PEER_TITLES[p]}, round 1: where a message's "
                  f"instructions go (own instructions of each function, "
                  f"larger run − smaller, per message), and its system "
                  f"calls:", "",
                  "| instructions / msg | function | | calls / msg "
                  "| system call |", "|---:|---|---|---:|---|"]
        ir, sc = runs[0]["ir_top"], runs[0].get("syscalls_top", [])
        for i in range(max(len(ir), len(sc))):
            a = ir[i] if i < len(ir) else None
            b = sc[i] if i < len(sc) else None
            fn = a["name"].replace("|", "\\|") if a else ""
            lines.append(
                (f"| {a['per_msg']:,.0f} | `{fn}` " if a else "| | ") +
                (f"| | {b['per_msg']:.2f} | `{b['name']}` |" if b else
                 "| | | |"))
    return "\n".join(lines)


def sh(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (r.stdout or r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def sysctl(key):
    try:
        with open(f"/proc/sys/{key}") as f:
            return " ".join(f.read().split())
    except OSError:
        return "?"


def machine_info():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
        cpu = m.group(1) if m else cpu
    with open("/proc/meminfo") as f:
        mem = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
    osname = "?"
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as f:
            m = re.search(r'^PRETTY_NAME="?(.*?)"?$', f.read(), re.M)
            osname = m.group(1) if m else osname
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return [("CPU", f"{cpu}, {os.cpu_count()} cores"),
            ("memory", f"{mem / 1024 / 1024:.1f} GiB"),
            ("OS", f"{osname}, Linux {platform.release()}"),
            ("open files per process", f"{soft} (hard {hard})"),
            ("sysctl", ", ".join(
                f"{k.split('/')[-1]} {sysctl(k)}" for k in (
                    "net/core/somaxconn", "net/ipv4/tcp_max_syn_backlog",
                    "net/ipv4/tcp_tw_reuse", "net/ipv4/ip_local_port_range")
            )),
            ("load average at start", open("/proc/loadavg").read().split()
             [:3])]


def versions(tools):
    cc = "?"
    cache = os.path.join(os.path.dirname(tools.hgload), "..",
                         "CMakeCache.txt")
    build_type = "?"
    if os.path.exists(cache):
        with open(cache) as f:
            text = f.read()
        m = re.search(r"^CMAKE_C_COMPILER:\w+=(.*)$", text, re.M)
        cc = sh([m.group(1), "--version"]).splitlines()[0] if m else cc
        m = re.search(r"^CMAKE_BUILD_TYPE:\w+=(.*)$", text, re.M)
        build_type = m.group(1) if m else build_type
    return [("hubgate", f"{sh([tools.hubgate, '--version'])} "
             f"({build_type}, {cc})"),
            ("HAProxy", (sh(["haproxy", "-v"]) or "not installed")
             .splitlines()[0]),
            ("NGINX", sh(["nginx", "-v"]) or "not installed"),
            ("valgrind", sh(["valgrind", "--version"]) or "not installed"),
            ("Python", platform.python_version())]


def git_commit():
    head = sh(["git", "-C", SOURCE_DIR, "rev-parse", "--short=12", "HEAD"])
    dirty = sh(["git", "-C", SOURCE_DIR, "status", "--porcelain",
                "--untracked-files=no"])
    return (head or "unknown") + (" (with uncommitted changes)"
                                  if dirty else "")


def write_results(out, name, text, data, docs):
    """Writes results.json and the report `name` into out, the report also
    to docs when given, and prints the report's path."""
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(data, f, indent=1)
    with open(os.path.join(out, name), "w") as f:
        f.write(text + "\n")
    if docs:
        with open(docs, "w") as f:
            f.write(text + "\n")
        log(f"wrote {docs}")
    print(os.path.join(out, name))


def report(args, tools, results, configs, peers, missing, failures, info,
           elapsed):
    now = datetime.datetime.now(datetime.timezone.utc)
    rounds = 1 if args.quick else args.rounds
    argv = " ".join(a for a in sys.argv[1:])
    cmd = "python3 bench/run.py " + argv
    if args.docs and argv.replace(f"--docs {args.docs}", "").split() == \
            ["--build", args.build]:
        cmd = "make bench"
    out = [
        "# hubgate benchmarks",
        "",
        "<!-- Written by bench/run.py (`make bench`); never edit by hand. "
        "-->",
        "",
        f"Generated {now:%Y-%m-%d %H:%M} UTC in {elapsed / 60:.1f} min "
        f"from commit {git_commit()}. Rerun with `{cmd}` "
        f"(`--rounds N`, `--workloads ...`, `--quick`: "
        f"`python3 bench/run.py --help`).",
        "",
        *(["**A quick run: every workload once at a tiny size, to check "
           "the harness; these figures say nothing of performance.**", ""]
          if args.quick else []),
        f"Median of {rounds} round(s) (every round is in the tables "
        f"further down); ‘÷ hubgate’ is that peer's figure divided by "
        f"hubgate's. How each figure is made, and every configuration, "
        f"follow the results.",
        "",
        "## Machine",
        "",
    ]
    out += [f"- {k}: {v if isinstance(v, str) else ' '.join(v)}"
            for k, v in info]
    out += ["- load average at end: " +
            " ".join(open("/proc/loadavg").read().split()[:3]), "",
            "## Versions", ""]
    out += [f"- {k}: {v}" for k, v in versions(tools)]
    if missing:
        out += ["", f"Not run (not installed): {', '.join(missing)}."]
    if failures:
        out += ["", "Runs that failed (not in the figures):", ""]
        out += [f"- {f}" for f in failures]
    out += ["", "## Results", "", summary_table(results, peers), "",
            foreign_note(results), "",
            "Targets for hubgate (the ratio is of the medians; a round's "
            "ratio compares the two runs of that round):", "",
            targets_table(results, args.quick), ""]
    limits = None if args.quick else limits_section(results)
    if limits:
        out += ["### What limits the targets missed", "", limits]
    out += ["## Every round", "", rounds_table(results, peers), ""]
    if "storm" in results:
        out += ["## Connection storm steps", "", storm_table(results, peers),
                ""]
    if "cpu" in results:
        out += ["## CPU per message", "", cpu_section(results), ""]
    sizes = {k: v[1 if args.quick else 0] for k, v in SIZES.items()}
    sizes = {k: ", ".join(f"{x:,}" for x in v) if isinstance(v, tuple)
             else f"{v:,}" for k, v in sizes.items()}
    out += ["## How each figure is made", "",
            METHOD.format(workers=args.workers, **sizes), ""]
    out += ["## Configurations", ""]
    for name in sorted(configs):
        out += [f"### {name}", "", "```", configs[name].rstrip(), "```", ""]
    return "\n".join(out)


METHOD = """\
- One machine, loopback only: the load generator (`bench/hgload`, one
  thread, built on hubgate's `hg_loop`), the backend (`bench/hgecho`, one
  thread: a TCP echo, or a data source for bulk) and the proxy share its
  cores, so a saturation figure also shows how much CPU a proxy leaves to
  the other two; `direct` is the load generator talking to the backend with
  no proxy. Each proxy gets {workers} workers: hubgate `workers`, HAProxy
  `nbthread`, NGINX `worker_processes`. Every run starts a fresh backend
  and a fresh proxy, which first routes one probe connection. The peers
  take turns, and each round starts with the next one (A B C D, B C D A, ...).
- Every connection opens with a 517-byte TLS 1.3 ClientHello naming
  `bench.hub.test` (built in `bench/hb_hello.c`) that each proxy routes by
  SNI; its echo proves the route. Logging: hubgate `log.level: warn` (no
  access lines), HAProxy no `log` line, NGINX `error_log ... error` and no
  stream access log. Like hubgate, which accepts with TCP_DEFER_ACCEPT and
  splices through 256 KiB pipes, HAProxy binds with `defer-accept` and
  `tune.pipesize 262144` (NGINX's stream module has neither).
- idle: {idle_conns} tunnels, each a ClientHello and a 200-byte message
  echoed, then idle. Memory per tunnel = (VmRSS summed over the proxy's
  processes with the tunnels open, {idle_settle_s} s after the last echo,
  − the same just before they opened) ÷ tunnels.
- msgs: {msgs_conns} tunnels. Paced phase: {msgs_rate} messages/s in all,
  round robin, {msgs_warmup_s} s warm-up then {msgs_duration_s} s measured;
  latency runs from the write of a 200-byte message to the last byte of
  its echo, kept in a log-bucketed histogram (`src/hg_hist`, within
  0.8 %). Added
  latency = the proxy's percentile − the direct one (the direct total is in
  brackets; the round-by-round table shows totals). Saturation phase: each
  tunnel keeps one message in flight; messages/s over {sat_duration_s} s
  after a {msgs_warmup_s} s warm-up. A message is one write and its echo,
  so a proxy forwards it twice. Proxy CPU per message = the CPU time (user
  and system, every thread of every process of the proxy, from
  `/proc/*/task/*/schedstat`) spent inside a measuring window ÷ the
  messages of that window: unlike messages/s, it does not depend on how
  much CPU the load generator and the backend take.
  The bare io_uring forwarder (`bench/hburing`, {workers} threads, built
  where liburing is installed) runs this workload only: it reads no
  ClientHello and routes nothing (each connection goes to the backend with a
  blocking connect), keeps no timers and counts nothing, so its figures are
  a floor for a forwarding path built on io_uring (multishot receives into
  a shared ring of provided buffers, one send in flight per direction),
  not a proxy to deploy.
- bulk: the backend writes as fast as it can after the ClientHello; bytes/s
  received over {bulk_duration_s} s after a {bulk_warmup_s} s warm-up, with
  {bulk_streams} streams. HAProxy runs twice: as configured for every
  workload (`option splice-auto`), and with `option splice-request` and
  `option splice-response`, which splice every stream, because splice-auto
  splices only what its heuristics call a fast streamer. The reader checks
  every byte against the pattern the backend writes. One stream runs a
  second time with the backend on the first core and the reader on the
  second, the proxy free to run anywhere: three busy processes share two
  cores, and this shows how much of a difference is where they land.
- storm: each connection: connect (from 16 source addresses, 127.0.0.1 and
  up), send the ClientHello, read its echo; then the backend closes, the
  proxy passes the close on, and the load generator closes too (the side
  that closes first keeps the TIME_WAIT, so no one runs out of ephemeral
  ports, a loopback artefact). Time per connection runs from connect to
  the end of the echo. Steps of {storm_step_s} s
  at {storm_rates} new connections/s until a step is not clean, then
  {storm_refine} steps halving the gap between the last clean rate and the
  first unclean one. Clean: no error or timeout (2 s), at least 90 % of the
  rate achieved, p99 connection time under {storm_p99_ms} ms (past that the
  accept queues overflow and SYNs are retried). The figure is the best rate
  a clean step achieved; at most {storm_total} connections per peer. Proxy
  CPU per connection is measured the same way over the
  {storm_cpu_rate}/s step (the table) and over the step that gave each
  peer's figure (what limits it). TCP segments per connection: every
  segment the machine sent over that {storm_cpu_rate}/s step (`OutSegs` of
  /proc/net/snmp: the load generator's, the proxy's and the backend's)
  ÷ the connections; every one costs CPU at both ends on loopback. When a
  peer fails no step, its figure is only a floor and the target is not
  decided.
- cpu: the proxy alone runs with one worker (hubgate `workers: 1`, HAProxy
  `nbthread 1`, NGINX `master_process off` and `worker_processes 1`) under
  `valgrind --tool=callgrind`, then under `strace -f -c`, in front of
  {cpu_conns} tunnels that each send messages one at a time: two runs each,
  {cpu_counts} messages per tunnel. Per message = (count of the larger run −
  count of the smaller) ÷ the extra messages, so start-up and connection
  set-up cancel out. Callgrind counts user-space instructions only; the
  kernel's share shows in the system calls.
- What limits a missed target: over the same saturation window (and the
  same storm step) the CPU time of the load generator and the backend is
  measured like the proxy's, and the proxy's system time (clock ticks, from
  `/proc/*/stat`) gives its share in the kernel. All three share the
  machine's cores, so at a rate R they can spend at most cores × 10⁶ ÷ R µs
  per message between them.
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(SOURCE_DIR,
                                                    "build-bench"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=WORKERS)
    ap.add_argument("--quiet-wait", type=float, default=None,
                    help="before each run, wait up to this many seconds "
                    "for other processes to use under 0.25 cores (default "
                    "20, 0 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="each workload once, tiny (the smoke test)")
    ap.add_argument("--out", help="folder for configs, logs and results "
                    "(default: a new one under BUILD/bench-out)")
    ap.add_argument("--docs", help="also write the report here "
                    "(make bench: docs/benchmarks.md)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--set", action="append", default=[],
                    metavar="KEY=JSON", help="override a size, e.g. "
                    "msgs_rate=5000 or storm_rates=[1000,2000]: "
                    + ", ".join(SIZES))
    args = ap.parse_args()
    for item in args.set:
        key, _, text = item.partition("=")
        if key not in SIZES:
            ap.error(f"--set: unknown size {key}")
        try:
            v = json.loads(text)
        except ValueError:
            ap.error(f"--set {key}: {text!r} is not JSON (a number, or a "
                     f"list such as [1000,2000])")
        v = tuple(v) if isinstance(v, list) else v
        if type(v) is not type(SIZES[key][0]) and not (
                isinstance(v, (int, float)) and
                isinstance(SIZES[key][0], (int, float))):
            ap.error(f"--set {key}: want a value like "
                     f"{json.dumps(SIZES[key][0])}")
        SIZES[key] = (v, v)
    if args.workers < 1:
        ap.error("--workers must be 1 or more")
    unknown = [p for p in args.peers.split(",") if p and p not in PEERS]
    if unknown or not [p for p in args.peers.split(",") if p]:
        ap.error(f"--peers: unknown {unknown} (choose from "
                 f"{', '.join(PEERS)})")
    if args.out and os.path.exists(args.out) and \
            not os.path.isdir(args.out):
        ap.error(f"--out {args.out}: not a folder")
    if args.docs and not os.path.isdir(os.path.dirname(
            os.path.abspath(args.docs))):
        ap.error(f"--docs {args.docs}: its folder does not exist")
    args.workloads = [w for w in args.workloads.split(",") if w]
    if args.quiet_wait is None:
        args.quiet_wait = 0 if args.quick else 20
    bad = [w for w in args.workloads if w not in WORKLOADS]
    if bad or args.rounds < 1 or args.rounds > 20:
        ap.error(f"bad --workloads {bad} or --rounds")
    tools = Tools(os.path.abspath(args.build))
    out = args.out or os.path.join(
        os.path.abspath(args.build), "bench-out",
        time.strftime("%Y%m%d-%H%M%S"))
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"run.py: cannot make {out}: {exc.strerror}")
    peers, missing = available_peers(
        [p for p in args.peers.split(",") if p in PEERS], tools)
    if missing:
        log(f"not installed, skipped: {', '.join(missing)}")
    log(f"output in {out}")
    info = machine_info()
    started = time.monotonic()
    results, configs, failures = run_all(args, tools, out, peers)
    elapsed = time.monotonic() - started
    text = report(args, tools, results, configs, peers, missing, failures,
                  info, elapsed)
    write_results(out, "benchmarks.md", text,
                  {"results": results, "peers": peers, "missing": missing,
                   "failures": failures}, args.docs)
    log(f"done in {elapsed / 60:.1f} min")
    if failures:
        log(f"{len(failures)} run(s) failed: see the report")
        sys.exit(1)


if __name__ == "__main__":
    main()
