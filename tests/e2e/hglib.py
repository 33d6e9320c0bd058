"""hglib: what hubgate's end-to-end tests share.

Python 3 standard library only. Every test is a script that ctest runs as
`python3 tests/e2e/test_NAME.py`, with HUBGATE (the binary), HG_SOURCE_DIR,
HG_BUILD_DIR and HG_SANITIZE in the environment. Tests run in parallel
(`ctest -j`), so nothing here uses a fixed port, name or path: ports are
picked at random below the ephemeral range and checked free (free_port),
files live in one temporary folder per test process,
network namespaces are named hg-<pid>-<n>.

Real servers are child processes in their own process group. Whatever
happens (normal exit, exception, SIGTERM/SIGINT/SIGHUP from ctest or a
person) they are stopped, the namespaces deleted and the folder removed;
children also get SIGTERM from the kernel if this process dies by SIGKILL
(PR_SET_PDEATHSIG), and namespaces left by a killed test are removed by the
next test that makes one.

Traffic goes only to loopback addresses, or to addresses inside namespaces
made here (which have nothing but their own `lo`, so no route out). Names
are never looked up on the host: inside a namespace, /etc/netns/<name>/hosts
answers, and DNS for the gateway comes from a dnsmasq started here with
--no-resolv.

A test file looks like this:

    import hglib

    def test_routes_by_sni():
        backend = hglib.CaptureServer(echo=True)
        gw = hglib.start_hubgate(f'''
    listeners:
      - name: tls
        bind: ["127.0.0.1:{hglib.free_port()}"]
    routes:
      - name: r
        sni: ["a.example.net"]
        backend: "127.0.0.1:{backend.port}"
    ''')
        hello = hglib.tls_records(hglib.client_hello("a.example.net"))
        echoed = hglib.tcp_exchange(gw.listen_addrs[0],
                                    hglib.chunks(hello, 1), read=len(hello))
        assert echoed == hello
        assert backend.wait_connections(1)[0].data == hello
        gw.stop()

    if __name__ == "__main__":
        hglib.main(globals())

`main` runs every test_* function in order, each with its own cleanup scope
(servers started inside a test are stopped at its end), prints a log tail of
every process started by a failing test, and closes with the line
"N passed, N failed, N skipped".
"""

import atexit
import json
import base64
import contextlib
import ctypes
import os
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

__all__ = [
    "SOURCE_DIR", "BUILD_DIR", "HUBGATE", "SANITIZE", "Skip", "main",
    "log", "scale", "tmpdir", "tmp_path", "on_cleanup", "scope",
    "free_port", "free_ports", "wait_until", "wait_tcp",
    "spawn", "Proc", "CA", "Mosquitto", "start_mosquitto", "Dnsmasq",
    "start_dnsmasq", "dns_query", "SServer", "start_s_server",
    "Hubgate", "start_hubgate", "start_sni_gateway", "check_config",
    "parse_prometheus", "Metrics", "http_get", "NetNS", "have_netns", "require_netns",
    "Subscriber", "CaptureServer", "RawClient", "tcp_exchange", "chunks",
    "client_hello", "tls_records", "mqtt_connect_packet",
    "mqtt_publish_packet", "sas_token", "HUB_NAME", "run", "need_tool",
    "split_hostport", "join_hostport", "write_file", "unique",
    "device_connection_string", "node_send",
]

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("HG_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(HERE))
BUILD_DIR = os.environ.get("HG_BUILD_DIR") or os.path.join(SOURCE_DIR,
                                                            "build")
HUBGATE = os.environ.get("HUBGATE") or os.path.join(BUILD_DIR, "hubgate")
SANITIZE = os.environ.get("HG_SANITIZE", "").upper() in ("1", "ON", "TRUE",
                                                         "YES")
NODE_DIR = os.path.join(HERE, "node")
HUB_NAME = "demo-hub.azure-devices.net"

_T0 = time.monotonic()


def log(*args):
    """Prints a timestamped line on stderr (ctest shows it on failure)."""
    msg = " ".join(str(a) for a in args)
    sys.stderr.write(f"[{time.monotonic() - _T0:7.3f}] {msg}\n")
    sys.stderr.flush()


def scale(seconds):
    """Stretches a timeout for slow builds (sanitizers, valgrind).

    HG_TIMEOUT_SCALE overrides; a sanitizer build gets 3x by default.
    """
    factor = float(os.environ.get("HG_TIMEOUT_SCALE") or
                   (3 if SANITIZE else 1))
    return seconds * factor


class Skip(Exception):
    """Raised by a test that cannot run here (no root, missing tool)."""


# --------------------------------------------------------------------------
# Cleanup: one stack of callbacks, run in reverse order, with scopes.
# --------------------------------------------------------------------------

_cleanups = []  # list of (scope id, callable, description)
_cleanup_lock = threading.RLock()
_scope_ids = [0]
_main_pid = os.getpid()


def on_cleanup(fn, what=""):
    """Registers fn to run when the current scope ends (or at exit)."""
    with _cleanup_lock:
        _cleanups.append((_scope_ids[-1], fn, what or repr(fn)))
    return fn


def _run_cleanups(scope_id=0):
    while True:
        with _cleanup_lock:
            if not _cleanups or _cleanups[-1][0] < scope_id:
                return
            _, fn, what = _cleanups.pop()
        try:
            fn()
        except Exception as exc:  # keep cleaning whatever fails
            log(f"cleanup of {what} failed: {exc!r}")


@contextlib.contextmanager
def scope():
    """Everything registered inside is cleaned up when the block ends."""
    with _cleanup_lock:
        _scope_ids.append(_scope_ids[-1] + 1)
        my_id = _scope_ids[-1]
    try:
        yield
    finally:
        _run_cleanups(my_id)
        with _cleanup_lock:
            _scope_ids.pop()


def _cleanup_at_exit():
    if os.getpid() == _main_pid:
        _run_cleanups(0)


def _on_signal(signum, frame):
    # Restore the default first: a second signal kills outright.
    signal.signal(signum, signal.SIG_DFL)
    log(f"got signal {signum}: cleaning up")
    _cleanup_at_exit()
    os._exit(128 + signum)


atexit.register(_cleanup_at_exit)
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


# --------------------------------------------------------------------------
# Temporary files
# --------------------------------------------------------------------------

_tmp = {}


def tmpdir():
    """The test process's own folder, removed at exit.

    HG_KEEP_TMP=1 keeps it (its path is logged) for a look after a failure.
    """
    if "dir" not in _tmp:
        name = os.path.splitext(os.path.basename(sys.argv[0] or "py"))[0]
        _reap_stale_tmp()
        path = tempfile.mkdtemp(prefix=f"hg-e2e-{os.getpid()}-{name}-")
        _tmp["dir"] = path
        if os.environ.get("HG_KEEP_TMP"):
            # Marked, so that no later run takes it for a crashed test's.
            write_file(os.path.join(path, _KEPT), "")
            atexit.register(lambda: log(f"kept {path}"))
        else:
            # Registered first, so it runs after every other cleanup.
            with _cleanup_lock:
                _cleanups.insert(0, (0, lambda: shutil.rmtree(
                    path, ignore_errors=True), f"rm -r {path}"))
    return _tmp["dir"]


_KEPT = "KEPT-WITH-HG_KEEP_TMP"


def _reap_stale_tmp():
    # A test killed by SIGKILL leaves its folder: remove those whose owner
    # (the pid in hg-e2e-<pid>-...) no longer exists, but never one kept for
    # a look (HG_KEEP_TMP marks it).
    if os.environ.get("HG_KEEP_TMP"):
        return
    base = tempfile.gettempdir()
    for entry in os.listdir(base):
        m = re.match(r"hg-e2e-(\d+)-", entry)
        path = os.path.join(base, entry)
        if (m and not os.path.exists(f"/proc/{m.group(1)}") and
                not os.path.exists(os.path.join(path, _KEPT))):
            shutil.rmtree(path, ignore_errors=True)


_name_counter = [0]
_name_lock = threading.Lock()


def unique(prefix):
    """A name unique within this process: prefix-<n>."""
    with _name_lock:
        _name_counter[0] += 1
        return f"{prefix}-{_name_counter[0]}"


def tmp_path(name):
    """A fresh path in tmpdir(); the name is made unique if taken."""
    base = os.path.join(tmpdir(), name)
    if not os.path.exists(base):
        return base
    stem, ext = os.path.splitext(name)
    return os.path.join(tmpdir(), unique(stem) + ext)


def write_file(path, text, mode=0o644):
    with open(path, "w" if isinstance(text, str) else "wb") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


# --------------------------------------------------------------------------
# Ports and waiting
# --------------------------------------------------------------------------

# Servers' ports come from below the kernel's ephemeral range (32768 and
# up here), where no outgoing connection takes its source port: a port
# from bind(0) shares that range with every client socket of the tests
# running in parallel, and one of them could take it before the server
# binds it.
_PORT_LOW, _PORT_HIGH = 20000, 32767


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(family, kind, host, port):
    with socket.socket(family, kind) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def free_port(host="127.0.0.1", udp=False, netns=None):
    """A port that was free on host just now (TCP, or UDP with udp=True),
    picked at random below the ephemeral range (see _PORT_LOW).

    Another test may still take it before the caller binds it; tests
    start servers right away, and the window is small.
    """
    return free_ports(1, host, netns, udp=udp, both=False)[0]


def free_ports(n, host="127.0.0.1", netns=None, udp=False, both=True):
    """n distinct ports free on host: for TCP and UDP both (both=True), or
    for one of them."""
    high = min(_PORT_HIGH, _ephemeral_low() - 1)
    ports = []
    with _maybe_netns(netns):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        kinds = ([socket.SOCK_STREAM, socket.SOCK_DGRAM] if both else
                 [socket.SOCK_DGRAM if udp else socket.SOCK_STREAM])
        for _ in range(200 * n):
            if len(ports) == n:
                break
            port = random.randint(_PORT_LOW, high)
            if port not in ports and all(_bindable(family, k, host, port)
                                         for k in kinds):
                ports.append(port)
        while len(ports) < n:  # a crowded range: let the kernel choose
            with socket.socket(family, kinds[0]) as s:
                s.bind((host, 0))
                ports.append(s.getsockname()[1])
    return ports


def open_fds(pid, kind=""):
    """A process's open descriptors (those whose link starts with kind,
    e.g. "pipe:" or "socket:")."""
    d = f"/proc/{pid}/fd"
    return sum(os.readlink(f"{d}/{n}").startswith(kind)
               for n in os.listdir(d))


def wait_until(pred, timeout=10.0, interval=0.05, what="condition"):
    """Polls pred() until it returns a true value, which is returned.

    Raises TimeoutError naming `what` after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting "
                               f"for {what}")
        time.sleep(interval)


def split_hostport(addr):
    """'1.2.3.4:5' or '[::1]:5' -> (host, port)."""
    if isinstance(addr, tuple):
        return addr[0], int(addr[1])
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:]+):(\d+)", addr.strip())
    if not m:
        raise ValueError(f"not host:port: {addr!r}")
    host = m.group(1) or m.group(3)
    return host, int(m.group(2) or m.group(4))


def join_hostport(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _connect(addr, timeout, netns=None):
    host, port = split_hostport(addr)
    with _maybe_netns(netns):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def wait_tcp(addr, timeout=10.0, netns=None, proc=None):
    """Waits until a TCP connect to addr succeeds (the connection is closed
    at once). Fails early if proc dies meanwhile."""
    def ready():
        if proc is not None:
            proc.check_alive()
        try:
            _connect(addr, 0.5, netns).close()
            return True
        except OSError:
            return False
    wait_until(ready, timeout, what=f"TCP {addr}")


# --------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
_CLONE_NEWNET = 0x40000000


def _child_setup():
    # Runs in the child between fork and exec: die with the test.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


_procs = []


class Proc:
    """A child process in its own process group, its output in a file.

    Attributes: name, argv, pid, popen, log_path (stdout+stderr, or stdout
    alone when stderr_path is separate), stderr_path. nofile: the open
    files limit it runs under.
    """

    def __init__(self, argv, name=None, netns=None, env=None, cwd=None,
                 stdin=subprocess.DEVNULL, separate_stderr=False,
                 pipe_stdout=False, nofile=None):
        self.name = name or os.path.basename(argv[0])
        self.netns = netns
        self.argv = list(argv)
        full = (netns.cmd(self.argv) if netns is not None else self.argv)
        self.log_path = tmp_path(f"{self.name}.log")
        self.stderr_path = (tmp_path(f"{self.name}.stderr")
                            if separate_stderr else self.log_path)
        self._out = open(self.log_path, "wb")
        self._err = (open(self.stderr_path, "wb") if separate_stderr
                     else subprocess.STDOUT)
        full_env = dict(os.environ)
        full_env.update(env or {})
        log(f"start {self.name}: {shlex.join(full)}")

        def setup():
            _child_setup()
            if nofile is not None:  # soft and hard: the child cannot raise it
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.popen = subprocess.Popen(
            full, stdin=stdin,
            stdout=subprocess.PIPE if pipe_stdout else self._out,
            stderr=self._err, env=full_env, cwd=cwd,
            start_new_session=True, preexec_fn=setup)
        self.pid = self.popen.pid
        self.stopped = False
        _procs.append(self)
        on_cleanup(self.kill, f"process {self.name} ({self.pid})")

    # -- state

    @property
    def returncode(self):
        return self.popen.poll()

    def alive(self):
        return self.popen.poll() is None

    def check_alive(self):
        """Raises RuntimeError with the log tail if the process has exited."""
        rc = self.popen.poll()
        if rc is not None:
            raise RuntimeError(f"{self.name} exited with {rc}:\n"
                               f"{self.tail()}")

    # -- output

    def output(self, stderr=False):
        path = self.stderr_path if stderr else self.log_path
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines=30):
        text = self.output()
        if self.stderr_path != self.log_path:
            text += self.output(stderr=True)
        return "\n".join(text.splitlines()[-lines:])

    def wait_log(self, pattern, timeout=10.0, stderr=None, since=0):
        """Waits for a regex in the output (from offset `since`); returns
        the match. Fails early if the process exits first."""
        rx = re.compile(pattern, re.M)
        use_err = (self.stderr_path != self.log_path) if stderr is None \
            else stderr

        def seen():
            m = rx.search(self.output(stderr=use_err), since)
            if m:
                return m
            self.check_alive()
            return None
        return wait_until(seen, timeout, what=f"{self.name} to log "
                          f"{pattern!r}")

    def log_size(self, stderr=None):
        use_err = (self.stderr_path != self.log_path) if stderr is None \
            else stderr
        return len(self.output(stderr=use_err))

    # -- control

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout=10.0):
        """Waits for exit; returns the exit code (negative: killed by that
        signal). Raises TimeoutError."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.name} ({self.pid}) still running "
                               f"after {timeout:.1f} s") from None

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Sends sig to the process group, waits, then SIGKILLs what is
        left. Returns the exit code."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} ignored signal {sig}: SIGKILL")
        self.kill()
        return self.popen.returncode

    def kill(self):
        """SIGKILLs the process group (anything still in it) and reaps."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.popen.wait(5)
        for f in (self._out, self._err):
            if hasattr(f, "close"):
                f.close()


def spawn(argv, name=None, **kw):
    """Starts argv as a Proc (see Proc for keywords), stopped at cleanup."""
    return Proc(argv, name=name, **kw)


def run(argv, timeout=30.0, netns=None, check=True, input=None, env=None):
    """Runs a command to completion; returns CompletedProcess (text)."""
    full = netns.cmd(argv) if netns is not None else list(argv)
    full_env = dict(os.environ)
    full_env.update(env or {})
    r = subprocess.run(full, capture_output=True, text=True, timeout=timeout,
                       input=input, env=full_env, preexec_fn=_child_setup)
    if check and r.returncode != 0:
        raise RuntimeError(f"{shlex.join(full)} exited {r.returncode}:\n"
                           f"{r.stdout}{r.stderr}")
    return r


def need_tool(name):
    """Raises Skip when a program is not installed."""
    if shutil.which(name) is None:
        raise Skip(f"{name} is not installed (scripts/install-deps.sh)")


class Strace:
    """Counts some system calls of a running process, every thread, from
    now until stop()."""

    def __init__(self, pid, calls):
        need_tool("strace")
        self.calls = calls
        self.out = tmp_path("strace.txt")
        self.proc = subprocess.Popen(
            ["strace", "-f", "-c", "-o", self.out, "-e",
             "trace=" + ",".join(calls), "-p", str(pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        on_cleanup(self.proc.kill, "strace")
        time.sleep(scale(0.5))  # attached to every thread by then

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(10)
        counts = {}
        with open(self.out) as f:
            for line in f:
                fields = line.split()
                # % time, seconds, usecs/call, calls, [errors], syscall
                if len(fields) >= 5 and fields[-1] in self.calls:
                    counts[fields[-1]] = int(fields[3])
        return counts


# --------------------------------------------------------------------------
# Network namespaces
# --------------------------------------------------------------------------

_netns_counter = [0]


def have_netns():
    """True when this process may create network namespaces (root)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    if "ok" not in _tmp:
        name = f"hg-{os.getpid()}-probe"
        ok = subprocess.run(["ip", "netns", "add", name],
                            capture_output=True).returncode == 0
        if ok:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        _tmp["ok"] = ok
    return _tmp["ok"]


def require_netns():
    if not have_netns():
        raise Skip("network namespaces need root (ip netns add failed)")


def _reap_stale_netns():
    # A test killed by SIGKILL leaves its namespaces: delete those whose
    # owning process (the pid in hg-<pid>-<n>) no longer exists.
    r = subprocess.run(["ip", "netns", "list"], capture_output=True,
                       text=True)
    for line in r.stdout.splitlines():
        m = re.match(r"(hg-(\d+)-\S+)", line)
        if not m or int(m.group(2)) == os.getpid():
            continue
        if os.path.exists(f"/proc/{m.group(2)}"):
            continue
        log(f"deleting stale namespace {m.group(1)}")
        NetNS._delete(m.group(1))


@contextlib.contextmanager
def _maybe_netns(netns):
    if netns is None:
        yield
    else:
        with netns.enter():
            yield


class NetNS:
    """A network namespace with only `lo`: no route out exists.

    ns = NetNS(hosts={"demo-hub.azure-devices.net": "127.0.0.2"})
    ns.cmd(argv)         -> argv that runs inside (`ip netns exec`)
    ns.run(argv)         -> CompletedProcess, inside
    ns.spawn(argv, name) -> Proc, inside
    with ns.enter(): ... -> sockets made in the block live inside
    ns.set_hosts({...})  -> rewrites /etc/netns/<name>/hosts

    Inside, /etc/hosts and /etc/resolv.conf are this namespace's own files
    (ip netns exec bind-mounts them): names in `hosts` resolve there, and any
    other name fails at once (resolv.conf points at 127.0.0.1:53 inside,
    where nothing listens unless a test starts a DNS server there).
    """

    def __init__(self, hosts=None, name=None):
        require_netns()
        _reap_stale_netns()
        _netns_counter[0] += 1
        self.name = name or f"hg-{os.getpid()}-{_netns_counter[0]}"
        self.etc = f"/etc/netns/{self.name}"
        subprocess.run(["ip", "netns", "add", self.name], check=True,
                       capture_output=True)
        on_cleanup(self.delete, f"netns {self.name}")
        os.makedirs(self.etc, exist_ok=True)
        write_file(f"{self.etc}/resolv.conf", "nameserver 127.0.0.1\n")
        self.set_hosts(hosts or {})
        self.run(["ip", "link", "set", "lo", "up"])
        log(f"netns {self.name} up")

    def set_hosts(self, hosts):
        """Writes the namespace's hosts file: {name: address or [addrs]}."""
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost"]
        for name, addrs in hosts.items():
            if isinstance(addrs, str):
                addrs = [addrs]
            lines += [f"{a} {name}" for a in addrs]
        write_file(f"{self.etc}/hosts", "\n".join(lines) + "\n")

    def cmd(self, argv):
        return ["ip", "netns", "exec", self.name] + list(argv)

    def run(self, argv, **kw):
        return run(argv, netns=self, **kw)

    def spawn(self, argv, name=None, **kw):
        return Proc(argv, name=name, netns=self, **kw)

    def add_address(self, cidr, dev="lo"):
        """Adds an address (e.g. "::2/128") to a device inside."""
        self.run(["ip", "addr", "add", cidr, "dev", dev])

    @contextlib.contextmanager
    def enter(self):
        """Moves the calling thread into the namespace for the block.

        Sockets created inside stay in the namespace after the block, so a
        listening socket made here can be served from any thread.
        """
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if _libc.setns(target, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns {self.name}: {os.strerror(err)}")
            try:
                yield self
            finally:
                if _libc.setns(own, _CLONE_NEWNET) != 0:
                    # The thread would stay in the wrong namespace.
                    os._exit(99)
        finally:
            os.close(own)
            os.close(target)

    def delete(self):
        # Processes still inside were started by this test (the namespace is
        # ours): end them, then remove the namespace and its /etc files.
        self._delete(self.name)

    @staticmethod
    def _delete(name):
        r = subprocess.run(["ip", "netns", "pids", name],
                           capture_output=True, text=True)
        for pid in r.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)


# --------------------------------------------------------------------------
# Certificates (openssl CLI)
# --------------------------------------------------------------------------

class CA:
    """A throwaway certificate authority in a folder of its own.

    ca = CA()
    cert, key = ca.server_cert(["demo-hub.azure-devices.net"])
    cert, key = ca.client_cert("device-1")
    ca.cert: the CA certificate (PEM), to trust.
    """

    def __init__(self, name="hubgate test CA", folder=None, key_type="ec"):
        self.dir = folder or tmp_path(unique("ca"))
        os.makedirs(self.dir, exist_ok=True)
        self.key_type = key_type
        self.cert = os.path.join(self.dir, "ca.pem")
        self.key = os.path.join(self.dir, "ca.key")
        self._openssl(["req", "-x509", "-new", *self._newkey(), "-nodes",
                       "-keyout", self.key, "-out", self.cert, "-days", "3",
                       "-sha256", "-subj", f"/CN={name}",
                       "-addext", "basicConstraints=critical,CA:TRUE",
                       "-addext", "keyUsage=critical,keyCertSign,cRLSign"])

    def _newkey(self):
        if self.key_type == "rsa":
            return ["-newkey", "rsa:2048"]
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]

    @staticmethod
    def _openssl(args):
        r = subprocess.run(["openssl"] + args, capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)}:\n{r.stderr}")

    def _issue(self, stem, subject, ext_lines):
        key = os.path.join(self.dir, f"{stem}.key")
        csr = os.path.join(self.dir, f"{stem}.csr")
        cert = os.path.join(self.dir, f"{stem}.pem")
        ext = os.path.join(self.dir, f"{stem}.ext")
        write_file(ext, "\n".join(ext_lines) + "\n")
        self._openssl(["req", "-new", *self._newkey(), "-nodes",
                       "-keyout", key, "-out", csr, "-subj", subject])
        self._openssl(["x509", "-req", "-in", csr, "-CA", self.cert,
                       "-CAkey", self.key, "-out", cert, "-days", "2",
                       "-sha256", "-extfile", ext,
                       "-set_serial", str(random.getrandbits(63))])
        os.chmod(key, 0o600)
        return cert, key

    def server_cert(self, names, ips=("127.0.0.1", "::1"), stem=None):
        """A server certificate for DNS names (first is the CN) and IPs.

        Returns (cert path, key path).
        """
        names = [names] if isinstance(names, str) else list(names)
        san = [f"DNS:{n}" for n in names] + [f"IP:{i}" for i in ips]
        stem = stem or unique("server")
        return self._issue(stem, f"/CN={names[0]}", [
            "basicConstraints=CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth",
            "subjectAltName=" + ",".join(san)])

    def client_cert(self, common_name, stem=None):
        """A client certificate (e.g. CN = device id): (cert, key)."""
        stem = stem or unique("client")
        return self._issue(stem, f"/CN={common_name}", [
            "basicConstraints=CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=clientAuth"])


# --------------------------------------------------------------------------
# Mosquitto: the "hub"
# --------------------------------------------------------------------------

class Mosquitto:
    """A Mosquitto broker, started by start_mosquitto()."""

    def __init__(self, host="127.0.0.1", tls_port=None, wss_port=None,
                 plain_port=None, ws_port=None, cert=None, key=None,
                 ca=None, require_certificate=False, netns=None,
                 verbose=True, extra=""):
        self.host = host
        self.netns = netns
        # Port 0 picks a free one. Mosquitto 2.0.11 (Debian 12) binds its
        # WebSockets listeners to every address, whatever the listener line
        # says (fixed in 2.0.12): their ports must be free on all addresses,
        # and no other server (a gateway on 127.0.0.2, say) can use the
        # same port number in the same namespace.
        def pick(port, everywhere=False):
            if port != 0:
                return port
            return free_port("::" if everywhere and socket.has_ipv6
                             else host, netns=netns)
        self.tls_port, self.plain_port = pick(tls_port), pick(plain_port)
        self.wss_port, self.ws_port = pick(wss_port, True), pick(ws_port,
                                                                 True)
        tls_port, plain_port = self.tls_port, self.plain_port
        wss_port, ws_port = self.wss_port, self.ws_port
        if (tls_port or wss_port) and not (cert and key):
            raise ValueError("TLS listeners need cert and key")
        lines = [
            "# written by hglib",
            "per_listener_settings false",
            "allow_anonymous true",
            "max_queued_messages 0",
            "persistence false",
            "log_dest stderr",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "connection_messages true",
        ]
        # Running as root, Mosquitto switches to the "mosquitto" user, which
        # cannot read the test's private folder: stay root instead.
        if os.geteuid() == 0:
            lines.insert(1, "user root")
        types = (["all"] if verbose else
                 ["error", "warning", "notice", "information", "subscribe"])
        lines += [f"log_type {t}" for t in types]

        def tls_block():
            block = [f"certfile {cert}", f"keyfile {key}"]
            if ca:
                block.append(f"cafile {ca}")
            if require_certificate:
                block.append("require_certificate true")
            return block
        if plain_port:
            lines += [f"listener {plain_port} {host}"]
        if ws_port:
            lines += [f"listener {ws_port} {host}", "protocol websockets"]
        if tls_port:
            lines += [f"listener {tls_port} {host}"] + tls_block()
        if wss_port:
            lines += [f"listener {wss_port} {host}", "protocol websockets"] \
                + tls_block()
        if extra:
            lines.append(extra)
        self.conf = write_file(tmp_path("mosquitto.conf"),
                               "\n".join(lines) + "\n")
        self.proc = Proc(["mosquitto", "-c", self.conf], name="mosquitto",
                         netns=netns)
        self.proc.wait_log(r"mosquitto version \S+ running", scale(10))

    def addr(self, which="tls"):
        """"host:port" of a listener: tls, wss, plain or ws."""
        return join_hostport(self.host, getattr(self, f"{which}_port"))

    def output(self):
        return self.proc.output()

    def stop(self):
        return self.proc.stop()


def start_mosquitto(**kw):
    """Starts Mosquitto with the listeners asked for (ports; None = none):

    start_mosquitto(tls_port=0, wss_port=0, plain_port=0, cert=...,
                    key=..., ca=..., host="127.0.0.1", netns=None)
    Port 0 picks a free port (read it back from .tls_port and the like, or
    .addr("tls")). Anonymous clients are allowed, every message is logged
    (verbose=False logs connections and subscriptions only), no queue
    limit. WebSockets listeners (ws_port, wss_port) bind every address:
    Mosquitto 2.0.11 ignores their host. They accept any path, including
    IoT Hub's /$iothub/websocket, with the subprotocol "mqtt".
    """
    need_tool("mosquitto")
    return Mosquitto(**kw)


class Subscriber:
    """mosquitto_sub (MQTT 3.1.1) counting messages per topic.

    sub = Subscriber(broker.addr("plain"), "devices/+/messages/events/#")
    sub.wait_count(10, prefix="devices/dev1/")
    sub.counts -> {topic: n}; sub.messages -> [(topic, payload bytes)]
    For a TLS listener pass cafile= and, to check the name, server_name=
    (resolved by the namespace's hosts file, so pass netns= too).
    """

    def __init__(self, addr, topics="#", qos=1, cafile=None,
                 server_name=None, netns=None, client_id=None,
                 extra_args=()):
        need_tool("mosquitto_sub")
        host, port = split_hostport(addr)
        if server_name and netns is None:
            raise ValueError("server_name resolves only inside a netns "
                             "(names are never looked up on the host)")
        topics = [topics] if isinstance(topics, str) else list(topics)
        self.client_id = client_id or unique(f"hg-sub-{os.getpid()}")
        # stdbuf: line-buffered stdout, so each message is seen at once.
        argv = ["stdbuf", "-oL", "mosquitto_sub", "-V", "mqttv311", "-h",
                server_name or host, "-p", str(port), "-q", str(qos),
                "-i", self.client_id, "-d", "-F", "MSG\t%t\t%x"]
        for t in topics:
            argv += ["-t", t]
        if cafile:
            argv += ["--cafile", cafile]
        argv += list(extra_args)  # e.g. ["-c"]: a persistent session
        self.counts = {}
        self.messages = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.proc = Proc(argv, name="mosquitto_sub", netns=netns,
                         pipe_stdout=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(scale(10)):
            self.proc.check_alive()
            raise TimeoutError("mosquitto_sub got no SUBACK")

    def _read(self):
        with open(self.proc.log_path, "ab") as copy:
            for raw in self.proc.popen.stdout:
                copy.write(raw)
                copy.flush()
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if line.startswith("MSG\t"):
                    _, topic, hexdata = line.split("\t", 2)
                    with self._lock:
                        self.counts[topic] = self.counts.get(topic, 0) + 1
                        self.messages.append((topic,
                                              bytes.fromhex(hexdata)))
                elif "received SUBACK" in line:
                    self._ready.set()

    def count(self, prefix=""):
        """Messages received on topics starting with prefix."""
        with self._lock:
            return sum(n for t, n in self.counts.items()
                       if t.startswith(prefix))

    def wait_count(self, n, prefix="", timeout=10.0):
        """Waits until count(prefix) >= n; returns it."""
        return wait_until(lambda: self.count(prefix) >= n and
                          self.count(prefix), scale(timeout),
                          what=f"{n} messages on {prefix or 'any topic'}"
                          f" (have {self.count(prefix)})")

    def stop(self):
        return self.proc.stop()


# --------------------------------------------------------------------------
# dnsmasq: the private DNS zone
# --------------------------------------------------------------------------

class Dnsmasq:
    """dnsmasq on host:port serving A/AAAA records from a file of its own.

    dns = start_dnsmasq({"hub.privatelink.example": ["127.0.0.1"]}, ttl=1)
    dns.server -> "127.0.0.1:PORT" (for resolver.servers)
    dns.set_records({...})  rewrites the file and reloads (SIGHUP)
    dns.query(name, "A")    asks it (stdlib DNS client)
    Names under `local_domains` that have no record get NXDOMAIN; other
    names are refused (nothing is forwarded anywhere: --no-resolv).
    """

    def __init__(self, records=None, ttl=5, port=None, host="127.0.0.1",
                 netns=None, local_domains=(), max_ttl=None):
        need_tool("dnsmasq")
        self.host = host
        self.netns = netns
        self.port = port or free_ports(1, host, netns=netns)[0]
        self.server = join_hostport(host, self.port)
        self.hosts_file = tmp_path("dnsmasq.hosts")
        self._write(records or {})
        argv = ["dnsmasq", "--no-daemon", "--conf-file=/dev/null",
                "--no-resolv", "--no-hosts", "--no-poll",
                f"--addn-hosts={self.hosts_file}",
                f"--listen-address={host}", "--bind-interfaces",
                f"--port={self.port}", f"--local-ttl={int(ttl)}",
                "--neg-ttl=1", "--log-queries", "--log-facility=-",
                "--cache-size=0"]
        if max_ttl is not None:
            argv.append(f"--max-ttl={int(max_ttl)}")
        for d in local_domains:
            argv.append(f"--local=/{d.strip('.')}/")
        self.proc = Proc(argv, name="dnsmasq", netns=netns)
        self._read_rx = r"read " + re.escape(self.hosts_file)
        self.proc.wait_log(self._read_rx, scale(10))
        wait_until(lambda: self._answers(), scale(10),
                   what="dnsmasq to answer")

    def _answers(self):
        self.proc.check_alive()
        try:
            self.query("hglib-probe.invalid", "A", timeout=0.3)
            return True
        except (OSError, TimeoutError):
            return False

    def _write(self, records):
        lines = []
        for name, addrs in records.items():
            if isinstance(addrs, str):
                addrs = [addrs]
            lines += [f"{a} {name}" for a in addrs]
        tmp = self.hosts_file + ".new"
        write_file(tmp, "\n".join(lines) + "\n")
        os.replace(tmp, self.hosts_file)

    def set_records(self, records, wait=True):
        """Replaces every record and reloads; waits until dnsmasq has read
        the file again."""
        since = self.proc.log_size()
        self._write(records)
        self.proc.send_signal(signal.SIGHUP)
        if wait:
            self.proc.wait_log(self._read_rx, scale(10), since=since)

    def query(self, name, qtype="A", timeout=2.0):
        return dns_query(self.server, name, qtype, timeout, self.netns)

    def stop(self):
        return self.proc.stop()


def start_dnsmasq(records=None, **kw):
    """See Dnsmasq."""
    return Dnsmasq(records, **kw)


def silent_dns(port=0):
    """A UDP socket on 127.0.0.1 (on port, or a free one) that takes DNS
    queries and never answers, closed at cleanup; returns "127.0.0.1:PORT".
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    on_cleanup(s.close, "silent DNS socket")
    return f"127.0.0.1:{s.getsockname()[1]}"


_QTYPES = {"A": 1, "AAAA": 28, "CNAME": 5, "TXT": 16}


def dns_query(server, name, qtype="A", timeout=2.0, netns=None):
    """Asks server ("host:port") over UDP; returns (rcode, [addresses]).

    rcode 0 is NOERROR, 3 NXDOMAIN, 5 REFUSED. Addresses are strings.
    """
    host, port = split_hostport(server)
    qid = random.getrandbits(16)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", _QTYPES[qtype], 1)
    with _maybe_netns(netns):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_DGRAM)
    with s:
        s.settimeout(timeout)
        s.sendto(q, (host, port))
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, _ = s.recvfrom(4096)
            except socket.timeout:
                raise TimeoutError(f"no DNS answer from {server}") from None
            if len(data) >= 12 and struct.unpack(">H", data[:2])[0] == qid:
                break
    rcode = data[3] & 0x0F
    qd, an = struct.unpack(">HH", data[4:8])
    off = 12

    def skip_name(off):
        while True:
            n = data[off]
            if n == 0:
                return off + 1
            if n & 0xC0 == 0xC0:
                return off + 2
            off += 1 + n
    for _ in range(qd):
        off = skip_name(off) + 4
    addrs = []
    for _ in range(an):
        off = skip_name(off)
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[off:off + 10])
        off += 10
        rdata = data[off:off + rdlen]
        off += rdlen
        if rtype == 1:
            addrs.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == 28:
            addrs.append(socket.inet_ntop(socket.AF_INET6, rdata))
    return rcode, addrs


# --------------------------------------------------------------------------
# openssl s_server: a TLS backend
# --------------------------------------------------------------------------

class SServer:
    """openssl s_server on host:port; each line a client sends comes back
    reversed (-rev). One connection at a time, as s_server serves them."""

    def __init__(self, cert, key, port=None, host="127.0.0.1", netns=None,
                 extra=()):
        need_tool("openssl")
        self.host = host
        self.port = port or free_port(host, netns=netns)
        self.addr = join_hostport(host, self.port)
        accept = join_hostport(host, self.port)
        self.proc = Proc(["openssl", "s_server", "-accept", accept,
                          "-cert", cert, "-key", key, "-rev", *extra],
                         name="s_server", netns=netns)
        self.proc.wait_log(r"^ACCEPT", scale(10))

    def stop(self):
        return self.proc.stop()


def start_s_server(cert, key, **kw):
    """See SServer."""
    return SServer(cert, key, **kw)


# --------------------------------------------------------------------------
# HTTP and Prometheus text
# --------------------------------------------------------------------------

def http_get(addr, path="/", timeout=5.0, netns=None):
    """GET http://addr/path with HTTP/1.0; returns (status, body str)."""
    s = _connect(addr, timeout, netns)
    with s:
        host = addr if isinstance(addr, str) else join_hostport(*addr)
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n"
                  "Connection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    if not m:
        raise ValueError(f"not an HTTP reply from {addr}: {data[:80]!r}")
    if re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
        body = _unchunk(body)
    return int(m.group(1)), body.decode("utf-8", "replace")


def _unchunk(body):
    out, off = b"", 0
    while True:
        end = body.index(b"\r\n", off)
        size = int(body[off:end].split(b";")[0], 16)
        if size == 0:
            return out
        out += body[end + 2:end + 2 + size]
        off = end + 2 + size + 2


class Metrics(dict):
    """Prometheus samples: {(name, frozenset(labels.items())): value}."""

    def value(self, name, default=None, **labels):
        """The sample with exactly these labels, or default."""
        return self.get((name, frozenset(labels.items())), default)

    def sum(self, name, **labels):
        """Sum over samples of name whose labels include these."""
        want = set(labels.items())
        return sum(v for (n, lb), v in self.items()
                   if n == name and want <= lb)

    def names(self):
        return sorted({n for n, _ in self})

    def select(self, name):
        """[(labels dict, value)] for one metric name."""
        return [(dict(lb), v) for (n, lb), v in self.items() if n == name]


_PROM_LINE = re.compile(
    r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_PROM_LABEL = re.compile(
    r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_prometheus(text):
    """Parses Prometheus text format into Metrics; raises ValueError on a
    line that is not a comment, blank or a sample."""
    out = Metrics()
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = _PROM_LINE.match(line)
        if not m:
            raise ValueError(f"metrics line {lineno}: {line!r}")
        labels = {}
        rest = m.group(2) or ""
        pos = 0
        while pos < len(rest):
            lm = _PROM_LABEL.match(rest, pos)
            if not lm:
                raise ValueError(f"metrics line {lineno} labels: {line!r}")
            value = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n"
                           else e.group(1), lm.group(2))
            labels[lm.group(1)] = value
            pos = lm.end()
        raw = m.group(3)
        value = {"+Inf": float("inf"), "-Inf": float("-inf"),
                 "NaN": float("nan")}.get(raw)
        out[(m.group(1), frozenset(labels.items()))] = (
            float(raw) if value is None else value)
    return out


# --------------------------------------------------------------------------
# hubgate itself
# --------------------------------------------------------------------------

def _quick_shutdown(yaml_text):
    """Tests stop hubgate often: unless a test sets its own, no ready delay
    and no drain window (the defaults suit a load balancer, not a test)."""
    if re.search(r"^shutdown:", yaml_text, re.M):
        return yaml_text
    return (yaml_text.rstrip("\n") +
            "\nshutdown:\n  ready_delay: 0s\n  drain: 0s\n")


def _admin_listen(yaml_text):
    m = re.search(r"^admin:\s*\n(?:[ \t]+.*\n)*?[ \t]+listen:\s*"
                  r"[\"']?([^\s\"'#]+)", yaml_text + "\n", re.M)
    return m.group(1) if m else None


def _listen_addrs(yaml_text):
    """The bind addresses of the config, from flow lists of quoted strings
    (bind: ["127.0.0.1:P", "[::1]:P"]) or a single quoted string."""
    addrs = []
    for m in re.finditer(r"^[ \t]*-?[ \t]*bind:[ \t]*(.*)$", yaml_text,
                         re.M):
        addrs += re.findall(r"[\"']([^\"']+)[\"']", m.group(1))
    return addrs


def check_config(yaml_text, binary=None):
    """Runs `hubgate -t -c FILE`; returns CompletedProcess (text)."""
    path = write_file(tmp_path("hubgate-check.yaml"), yaml_text)
    return run([binary or HUBGATE, "-t", "-c", path], check=False,
               timeout=scale(20))


class Hubgate:
    """A running hubgate, started by start_hubgate()."""

    def __init__(self, yaml_text, netns=None, binary=None, env=None,
                 args=(), wait_ready=True, name="hubgate", nofile=None):
        self.binary = binary or HUBGATE
        if not os.access(self.binary, os.X_OK):
            raise Skip(f"no hubgate binary at {self.binary} (set HUBGATE)")
        self.netns = netns
        yaml_text = _quick_shutdown(yaml_text)
        if _admin_listen(yaml_text) is None:
            port = free_port(netns=netns)
            yaml_text = (yaml_text.rstrip("\n") +
                         f"\nadmin:\n  listen: \"127.0.0.1:{port}\"\n")
        self.yaml = yaml_text
        self.admin = _admin_listen(yaml_text)
        self.listen_addrs = _listen_addrs(yaml_text)
        self.config_path = write_file(tmp_path(f"{name}.yaml"), yaml_text)
        full_env = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
                    "UBSAN_OPTIONS": "print_stacktrace=1"}
        full_env.update(env or {})
        self.proc = Proc([self.binary, "-c", self.config_path, *args],
                         name=name, netns=netns, env=full_env,
                         separate_stderr=True, nofile=nofile)
        self.stderr_path = self.proc.stderr_path
        self.stopped_rc = None
        if wait_ready:
            self.wait_ready()

    # -- admin

    def get(self, path, timeout=5.0):
        """GET on the admin listener: (status, body)."""
        return http_get(self.admin, path, timeout, self.netns)

    def readyz(self):
        """The /readyz status code, or None when nothing answers."""
        try:
            return self.get("/readyz", 2.0)[0]
        except (OSError, ValueError):
            return None

    def wait_ready(self, timeout=10.0):
        def ready():
            self.proc.check_alive()
            return self.readyz() == 200
        wait_until(ready, scale(timeout), what=f"{self.admin}/readyz = 200")

    def metrics(self):
        """GET /metrics, parsed: Metrics {(name, frozenset(labels)): v}."""
        status, body = self.get("/metrics")
        if status != 200:
            raise AssertionError(f"/metrics answered {status}: {body[:200]}")
        return parse_prometheus(body)

    # -- logs

    def stderr(self):
        """Everything hubgate wrote on stderr so far."""
        return self.proc.output(stderr=True)

    def log_lines(self, pattern=None):
        lines = self.stderr().splitlines()
        if pattern is None:
            return lines
        rx = re.compile(pattern)
        return [ln for ln in lines if rx.search(ln)]

    def wait_log(self, pattern, timeout=10.0, since=0):
        return self.proc.wait_log(pattern, scale(timeout), stderr=True,
                                  since=since)

    # -- control

    def reload(self, yaml_text=None, wait_log=None, timeout=10.0):
        """Rewrites the config (when given) and sends SIGHUP. With wait_log,
        waits for that regex to appear in the log after the signal."""
        since = len(self.stderr())
        if yaml_text is not None:
            yaml_text = _quick_shutdown(yaml_text)
            self.yaml = yaml_text
            write_file(self.config_path + ".new", yaml_text)
            os.replace(self.config_path + ".new", self.config_path)
        self.proc.send_signal(signal.SIGHUP)
        if wait_log:
            return self.wait_log(wait_log, timeout, since=since)
        return None

    def stop(self, timeout=40.0, expect=0):
        """SIGTERM, waits for exit and asserts the exit code (default 0)
        and that no sanitizer report was printed. Returns the code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(scale(timeout))
        finally:
            self.proc.kill()
        self.stopped_rc = rc
        self.assert_clean_log()
        if expect is not None:
            assert rc == expect, (f"hubgate exited {rc}, expected {expect}; "
                                  f"stderr tail:\n{self.proc.tail()}")
        return rc

    def assert_clean_log(self):
        """Fails when a sanitizer or an abort left its mark on stderr."""
        text = self.stderr()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                       "runtime error:", "Assertion `"):
            assert marker not in text, (f"hubgate stderr has {marker!r}:\n"
                                        f"{self.proc.tail(60)}")


def start_hubgate(yaml_text, **kw):
    """Writes the YAML to a file, runs `$HUBGATE -c FILE` and waits for
    GET /readyz = 200 on admin.listen (when the YAML has no admin section,
    one on a free loopback port is added). Keywords: netns, binary, env,
    args, wait_ready, nofile (its open files limit, soft and hard). Stopped with SIGKILL at cleanup if the test did not
    stop() it."""
    return Hubgate(yaml_text, **kw)


def sni_gateway_yaml(backend, sni, extra="", port=None, listener="",
                     route="", binds=None):
    """The config of start_sni_gateway: one listener "tls" on 127.0.0.1
    (port, or a free one; or on every "IP:PORT" of binds) and one route
    "hub" from sni to backend; extra is YAML at the top level, listener and
    route lines added to each (as "    key: value")."""
    binds = binds or [f"127.0.0.1:{port or free_port()}"]
    bind = ", ".join(f'"{b}"' for b in binds)
    return f"""
{extra}
listeners:
  - name: tls
    bind: [{bind}]
{listener}
routes:
  - name: hub
    sni: ["{sni}"]
    backend: "{backend}"
{route}
"""


def start_sni_gateway(backend, sni, extra="", **kw):
    """hubgate with one listener on a free loopback port and one route from
    sni to backend ("host:port"); extra is YAML added at the top level."""
    return start_hubgate(sni_gateway_yaml(backend, sni, extra), **kw)


# --------------------------------------------------------------------------
# Raw TCP: a byte-exact client and a capture backend
# --------------------------------------------------------------------------

def chunks(data, sizes):
    """Splits data into pieces: sizes is an int (every piece that long) or
    a list of lengths (the rest, if any, is the last piece)."""
    if isinstance(sizes, int):
        return [data[i:i + sizes] for i in range(0, len(data), sizes)] \
            or [b""]
    out, off = [], 0
    for n in sizes:
        if off >= len(data):
            break
        out.append(data[off:off + n])
        off += n
    if off < len(data):
        out.append(data[off:])
    return out


class RawClient:
    """A TCP client for byte-level tests.

    c = RawClient(addr); c.send_chunks(pieces, delay=0.01)
    c.recv_exactly(n); c.recv_until_closed(); c.shutdown_write(); c.close()
    closed_by_peer() tells whether the peer closed (EOF or reset).
    """

    def __init__(self, addr, timeout=5.0, netns=None, nodelay=True):
        self.addr = addr
        self.sock = _connect(addr, timeout, netns)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.received = b""
        on_cleanup(self.close, f"raw client to {addr}")

    def send(self, data):
        self.sock.sendall(data)

    def send_chunks(self, pieces, delay=0.0):
        """Sends each piece as its own write; delay is seconds between
        pieces (a number, or a list with one per gap)."""
        for i, piece in enumerate(pieces):
            if i:
                d = delay[i - 1] if isinstance(delay, (list, tuple)) \
                    else delay
                if d:
                    time.sleep(d)
            self.sock.sendall(piece)

    def recv_exactly(self, n, timeout=5.0):
        deadline = time.monotonic() + scale(timeout)
        while len(self.received) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"have {len(self.received)} of {n} bytes")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"closed after {len(self.received)} of {n} "
                               "bytes")
            self.received += chunk
        out, self.received = self.received[:n], self.received[n:]
        return out

    def recv_until_closed(self, timeout=5.0):
        """Reads until EOF or reset; returns everything read (including
        bytes buffered by recv_exactly). Raises TimeoutError if the peer
        keeps the connection open."""
        deadline = time.monotonic() + scale(timeout)
        data, self.received = self.received, b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"connection still open ({len(data)} "
                                   "bytes read)")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk

    def closed_by_peer(self, wait=1.0):
        """True when the peer closes (EOF/reset) within `wait` seconds;
        bytes read meanwhile are kept in .received."""
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self.received += chunk

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()


def tcp_exchange(addr, pieces, delay=0.0, read=None, timeout=5.0,
                 shutdown=False, netns=None):
    """Connects, sends pieces (see RawClient.send_chunks), then reads:
    read=None until the peer closes, read=N exactly N bytes, read=0 nothing.
    shutdown=True half-closes after sending. Returns the bytes read."""
    c = RawClient(addr, timeout, netns)
    try:
        c.send_chunks(pieces if isinstance(pieces, list) else [pieces],
                      delay)
        if shutdown:
            c.shutdown_write()
        if read is None:
            return c.recv_until_closed(timeout)
        return c.recv_exactly(read, timeout) if read else b""
    finally:
        c.close()


class CapturedConn:
    """One connection seen by a CaptureServer."""

    def __init__(self, sock, peer):
        self.sock = sock
        self.peer = peer
        self.data = b""          # every byte received, in order
        self.reads = []          # the pieces as recv() returned them
        self.opened = time.monotonic()
        self.closed = threading.Event()   # peer closed or we did
        self.eof = False         # peer sent FIN
        self.reset = False       # peer reset

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()


class CaptureServer:
    """A plain TCP backend that records the exact bytes of each connection.

    srv = CaptureServer(echo=True)          # or reply=b"...", or neither
    srv.addr -> "127.0.0.1:PORT"
    conns = srv.wait_connections(1)          # [CapturedConn]
    conns[0].data, conns[0].wait_bytes(n), conns[0].closed.wait()
    echo: sends every byte back; reply: bytes sent once on accept (e.g. a
    fake ServerHello); reply_after=(n, bytes): bytes sent once n bytes have
    arrived; reply_on_eof: bytes sent when the client half-closes, before
    closing (the half-close tests); close_after: closes after that many
    bytes in. name: what errors and the cleanup log call it.
    """

    def __init__(self, host="127.0.0.1", port=0, echo=False, reply=None,
                 reply_after=None, reply_on_eof=None, close_after=None,
                 name="capture server", netns=None):
        self.echo, self.reply, self.close_after = echo, reply, close_after
        self.reply_after, self.reply_on_eof = reply_after, reply_on_eof
        self.name = name
        with _maybe_netns(netns):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(256)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.addr = join_hostport(host, self.port)
        self.connections = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._accept_loop,
                                        daemon=True)
        self._thread.start()
        on_cleanup(self.stop, f"{name} {self.addr}")

    def count(self):
        """Connections accepted so far."""
        with self._cond:
            return len(self.connections)

    def _accept_loop(self):
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                s, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn = CapturedConn(s, peer)
            with self._cond:
                self.connections.append(conn)
                self._cond.notify_all()
            threading.Thread(target=self._serve, args=(conn,),
                             daemon=True).start()

    def _serve(self, conn):
        s = conn.sock
        replied_after = False
        try:
            if self.reply:
                s.sendall(self.reply)
            while not self._stop:
                s.settimeout(0.1)
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue
                except ConnectionResetError:
                    conn.reset = True
                    break
                if not chunk:
                    conn.eof = True
                    if self.reply_on_eof is not None:
                        s.sendall(self.reply_on_eof)
                    break
                with self._cond:
                    conn.data += chunk
                    conn.reads.append(chunk)
                    self._cond.notify_all()
                if self.echo:
                    s.sendall(chunk)
                if (self.reply_after and not replied_after and
                        len(conn.data) >= self.reply_after[0]):
                    replied_after = True
                    s.sendall(self.reply_after[1])
                if (self.close_after is not None and
                        len(conn.data) >= self.close_after):
                    break
        except OSError:
            pass
        finally:
            conn.close()
            with self._cond:
                conn.closed.set()
                self._cond.notify_all()

    def wait_connections(self, n, timeout=10.0):
        """Waits for at least n accepted connections; returns the list."""
        deadline = time.monotonic() + scale(timeout)
        with self._cond:
            while len(self.connections) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: {len(self.connections)}"
                                       f" of {n} connections at {self.addr}")
                self._cond.wait(min(left, 0.2))
            return list(self.connections)

    def wait_bytes(self, conn, n, timeout=10.0):
        """Waits until conn has received at least n bytes; returns data."""
        deadline = time.monotonic() + scale(timeout)
        with self._cond:
            while len(conn.data) < n:
                left = deadline - time.monotonic()
                if left <= 0 or conn.closed.is_set():
                    raise TimeoutError(f"{self.name}: {len(conn.data)} of {n}"
                                       f" bytes at {self.addr} (closed="
                                       f"{conn.closed.is_set()})")
                self._cond.wait(min(left, 0.2))
            return conn.data

    def stop(self):
        self._stop = True
        with contextlib.suppress(OSError):
            self.sock.close()
        for c in list(self.connections):
            c.close()


# --------------------------------------------------------------------------
# TLS ClientHello, built by hand
# --------------------------------------------------------------------------

def _ext(etype, body):
    return struct.pack(">HH", etype, len(body)) + body


def _vec(body, width=2):
    return len(body).to_bytes(width, "big") + body


def client_hello(sni=None, size=None, sni_last=False, pq_share=True,
                 extra_extensions=(), legacy_session_id=True):
    """A TLS 1.3 ClientHello handshake message (not yet in a record).

    sni: the server name (None: no server_name extension).
    pq_share: add a 1216-byte X25519MLKEM768 key share, as current
      browsers do (the hello is then about 1.7 KB).
    sni_last: put server_name after every other extension, far past the
      first kilobyte.
    size: pad (padding extension) so the handshake message has this many
      bytes (at least the unpadded size + 4).
    extra_extensions: [(type, body bytes)] added before padding.
    Wrap with tls_records() to send it.
    """
    rnd = os.urandom(32)
    session = os.urandom(32) if legacy_session_id else b""
    suites = struct.pack(">" + "H" * 5, 0x1301, 0x1302, 0x1303, 0xC02B,
                         0xC02F)
    groups = [0x11EC, 0x001D, 0x0017] if pq_share else [0x001D, 0x0017]
    shares = b""
    if pq_share:
        shares += struct.pack(">H", 0x11EC) + _vec(os.urandom(1216))
    shares += struct.pack(">H", 0x001D) + _vec(os.urandom(32))
    exts = []
    if sni is not None:
        name = sni.encode() if isinstance(sni, str) else sni
        sni_ext = _ext(0, _vec(b"\x00" + _vec(name)))
    else:
        sni_ext = b""
    if sni_ext and not sni_last:
        exts.append(sni_ext)
    exts += [
        _ext(0x0017, b""),                                  # ems
        _ext(0xFF01, b"\x00"),                              # reneg info
        _ext(0x000A, _vec(b"".join(struct.pack(">H", g)
                                   for g in groups))),      # groups
        _ext(0x000B, b"\x01\x00"),                          # ec formats
        _ext(0x0010, _vec(_vec(b"h2", 1) + _vec(b"http/1.1", 1))),  # alpn
        _ext(0x000D, _vec(struct.pack(">HHHH", 0x0403, 0x0804, 0x0401,
                                      0x0503))),            # sig algs
        _ext(0x002B, _vec(b"\x03\x04\x03\x03", 1)),         # versions
        _ext(0x002D, _vec(b"\x01", 1)),                     # psk modes
        _ext(0x0033, _vec(shares)),                         # key share
    ]
    exts += [_ext(t, b) for t, b in extra_extensions]
    if sni_ext and sni_last:
        exts.append(sni_ext)

    def build(ext_list):
        body = (b"\x03\x03" + rnd + _vec(session, 1) + _vec(suites) +
                b"\x01\x00" + _vec(b"".join(ext_list)))
        return b"\x01" + len(body).to_bytes(3, "big") + body
    msg = build(exts)
    if size is not None:
        pad = size - len(msg) - 4
        if pad < 0:
            raise ValueError(f"ClientHello is already {len(msg)} bytes; "
                             f"size {size} needs at least {len(msg) + 4}")
        # Padding goes before a trailing server_name so sni_last holds.
        at = len(exts) - 1 if (sni_ext and sni_last) else len(exts)
        exts.insert(at, _ext(0x0015, b"\x00" * pad))
        msg = build(exts)
    return msg


def tls_records(handshake, record_sizes=None, version=0x0301):
    """Wraps handshake bytes in TLS records (content type 22).

    record_sizes: None = one record (or 16 KiB pieces), an int = records of
    that many payload bytes, a list = these payload lengths in turn.
    """
    if record_sizes is None:
        record_sizes = 16384
    out = b""
    for piece in chunks(handshake, record_sizes):
        out += struct.pack(">BHH", 22, version, len(piece)) + piece
    return out


# --------------------------------------------------------------------------
# MQTT 3.1.1 packets and IoT Hub credentials, for byte-level tests
# --------------------------------------------------------------------------

def _mqtt_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def _mqtt_packet(first, body):
    n, enc = len(body), b""
    while True:
        byte, n = n % 128, n // 128
        enc += bytes([byte | (0x80 if n else 0)])
        if not n:
            break
    return bytes([first]) + enc + body


def mqtt_connect_packet(client_id, username=None, password=None,
                        keepalive=60, clean=True):
    """An MQTT 3.1.1 CONNECT packet."""
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0) \
        | (0x40 if password is not None else 0)
    body = _mqtt_str("MQTT") + bytes([4, flags]) + struct.pack(">H",
                                                               keepalive)
    body += _mqtt_str(client_id)
    if username is not None:
        body += _mqtt_str(username)
    if password is not None:
        body += _mqtt_str(password)
    return _mqtt_packet(0x10, body)


def mqtt_publish_packet(topic, payload, qos=0, packet_id=1):
    """An MQTT PUBLISH packet (QoS 0 or 1)."""
    body = _mqtt_str(topic)
    if qos:
        body += struct.pack(">H", packet_id)
    body += payload if isinstance(payload, bytes) else payload.encode()
    return _mqtt_packet(0x30 | (qos << 1), body)


def sas_token(resource, key_b64, ttl=3600, policy=None, now=None):
    """An IoT Hub SAS token for resource (e.g. "hub/devices/dev1")."""
    import hashlib
    import hmac
    from urllib.parse import quote
    expiry = int((now or time.time()) + ttl)
    sr = quote(resource, safe="")
    sig = base64.b64encode(hmac.new(base64.b64decode(key_b64),
                                    f"{sr}\n{expiry}".encode(),
                                    hashlib.sha256).digest()).decode()
    token = (f"SharedAccessSignature sr={sr}&sig={quote(sig, safe='')}"
             f"&se={expiry}")
    return token + (f"&skn={policy}" if policy else "")


def device_connection_string(device_id, hub=HUB_NAME, key_b64=None):
    """A device connection string with a random key (any key works with
    Mosquitto, which ignores the password)."""
    key = key_b64 or base64.b64encode(os.urandom(32)).decode()
    return f"HostName={hub};DeviceId={device_id};SharedAccessKey={key}"


# --------------------------------------------------------------------------
# The Azure IoT device SDK for Node.js (tests/e2e/node)
# --------------------------------------------------------------------------

def node_send(connection_string, transport, ca, count=5, timeout=30,
              netns=None, connect_to=None, interval=0, retry="none"):
    """Runs tests/e2e/node/send.js; returns (exit code, summary dict).

    transport: "mqtt" (port 8883) or "mqttws" (443). The hub name in the
    connection string must resolve to the gateway: run it in a netns whose
    hosts file says so, or pass connect_to {8883: "host:port", 443: ...}
    (the preload that keeps SNI and the certificate check on the name).
    retry="none" fails at the first error; "sdk" keeps the SDK's back-off.
    """
    import json
    need_tool("node")
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules")):
        raise Skip("tests/e2e/node/node_modules missing: run "
                   "scripts/install-deps.sh")
    argv = ["node"]
    env = {}
    if connect_to:
        argv += ["--require", os.path.join(NODE_DIR, "preload-connect.js")]
        env["HG_CONNECT_TO"] = ",".join(f"{p}={a}" for p, a in
                                        connect_to.items())
    argv += [os.path.join(NODE_DIR, "send.js"), "--transport", transport,
             "--ca", ca, "--count", str(count), "--timeout", str(timeout),
             "--interval", str(interval), "--retry", retry]
    env["DEVICE_CONNECTION_STRING"] = connection_string
    r = run(argv, timeout=timeout + 15, netns=netns, check=False, env=env)
    summary = {}
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                summary = json.loads(line)
    if r.returncode != 0:
        log(f"send.js {transport} exited {r.returncode}: {r.stdout}"
            f"{r.stderr}")
    return r.returncode, summary


# --------------------------------------------------------------------------
# Test runner
# --------------------------------------------------------------------------

def run_bench_quick(script, report, timeout):
    """Runs bench/SCRIPT --quick into a folder of this test's and checks
    that it succeeded and left docs/REPORT alone. Returns (results.json's
    data, the report's text)."""
    out = tmp_path(unique("bench"))
    docs = os.path.join(SOURCE_DIR, "docs", report)

    def stamp():
        return os.stat(docs).st_mtime_ns if os.path.exists(docs) else None
    before = stamp()
    r = subprocess.run([sys.executable,
                        os.path.join(SOURCE_DIR, "bench", script), "--quick",
                        "--build", BUILD_DIR, "--out", out],
                       capture_output=True, text=True, timeout=scale(timeout))
    sys.stderr.write(r.stderr[-6000:])
    assert r.returncode == 0, f"{script} exited {r.returncode}"
    assert stamp() == before, f"--quick must not touch docs/{report}"
    with open(os.path.join(out, "results.json")) as f:
        data = json.load(f)
    with open(os.path.join(out, report)) as f:
        return data, f.read()


def main(namespace, argv=None):
    """Runs the test_* functions of a module (all, or those named on the
    command line), each in its own cleanup scope; prints a summary line
    "N passed, N failed, N skipped" and exits 1 when any failed."""
    argv = sys.argv[1:] if argv is None else argv
    tests = [(n, f) for n, f in namespace.items()
             if n.startswith("test_") and callable(f)]
    if argv:
        tests = [(n, f) for n, f in tests if n in argv]
    passed = failed = skipped = 0
    for name, fn in tests:
        first_proc = len(_procs)
        start = time.monotonic()
        log(f"--- {name}")
        try:
            with scope():
                try:
                    fn()
                except BaseException:
                    # Log tails before the scope's cleanup stops them.
                    if not isinstance(sys.exc_info()[1], Skip):
                        for p in _procs[first_proc:]:
                            sys.stderr.write(f"----- {p.name} "
                                             f"({p.log_path}):\n"
                                             f"{p.tail(40)}\n")
                    raise
        except Skip as exc:
            skipped += 1
            print(f"SKIP {name}: {exc}", flush=True)
            continue
        except Exception:
            failed += 1
            traceback.print_exc()
            print(f"FAIL {name} ({time.monotonic() - start:.1f} s)",
                  flush=True)
            continue
        passed += 1
        print(f"PASS {name} ({time.monotonic() - start:.1f} s)", flush=True)
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line, flush=True)
    sys.exit(1 if failed or not tests else 0)
