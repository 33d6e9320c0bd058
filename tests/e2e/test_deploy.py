"""deploy/systemd/hubgate.service: systemd reads it without a complaint,
its stop timeout covers the default shutdown, and hubgate runs the way it
says: as an unprivileged user with only CAP_NET_BIND_SERVICE and no new
privileges, under its open files limit, on port 443, reloading and
stopping cleanly."""

import os
import re
import resource
import shutil
import signal
import tempfile

import hglib

UNIT = os.path.join(hglib.SOURCE_DIR, "deploy", "systemd", "hubgate.service")
SNI = "hub.test"
NOBODY = 65534


def unit_text():
    with open(UNIT) as f:
        return f.read()


def setting(key):
    """The values of key in the unit, in order."""
    return re.findall(rf"^{key}=(.*)$", unit_text(), re.M)


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|min)?", text.strip())
    assert m, text
    return int(m.group(1)) * {"ms": 0.001, "s": 1, None: 1,
                              "min": 60}[m.group(2)]


def shared_dir():
    """A folder that the unprivileged user can read, removed at cleanup."""
    path = tempfile.mkdtemp(prefix="hg-e2e-deploy-")
    hglib.on_cleanup(lambda: shutil.rmtree(path, ignore_errors=True),
                     f"rm -r {path}")
    os.chmod(path, 0o755)
    return path


def test_systemd_reads_the_unit_without_a_complaint():
    tool = shutil.which("systemd-analyze")
    if tool is None:
        raise hglib.Skip("no systemd-analyze")
    folder = shared_dir()
    config = hglib.write_file(os.path.join(folder, "hubgate.yaml"),
                              hglib.sni_gateway_yaml("127.0.0.1:9", SNI))
    text = unit_text().replace("/usr/local/bin/hubgate", hglib.HUBGATE)
    text = text.replace("/etc/hubgate/hubgate.yaml", config)
    unit = hglib.write_file(os.path.join(folder, "hubgate.service"), text)
    r = hglib.run([tool, "verify", unit], check=False, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr


def test_stop_timeout_covers_the_default_shutdown():
    # The defaults, as the README's config sketch gives them.
    with open(os.path.join(hglib.SOURCE_DIR, "README.md")) as f:
        readme = f.read()
    ready = re.search(r"^\s+ready_delay: (\S+)", readme, re.M).group(1)
    drain = re.search(r"^\s+drain: (\S+)", readme, re.M).group(1)
    stop = seconds(setting("TimeoutStopSec")[0])
    assert stop >= seconds(ready) + seconds(drain) + 5, (stop, ready, drain)
    assert setting("KillSignal") == ["SIGTERM"]
    assert setting("ExecReload")[-1] == "/bin/kill -HUP $MAINPID"
    assert setting("ExecStartPre")[0].startswith("/usr/local/bin/hubgate -t ")


def test_runs_unprivileged_with_the_units_capability():
    # What the unit asks of the kernel, done by hand: another user, only
    # CAP_NET_BIND_SERVICE, no new privileges, its open files limit.
    hglib.need_tool("setpriv")
    assert setting("AmbientCapabilities") == ["CAP_NET_BIND_SERVICE"]
    assert setting("CapabilityBoundingSet") == ["CAP_NET_BIND_SERVICE"]
    assert setting("NoNewPrivileges") == ["yes"]
    nofile = int(setting("LimitNOFILE")[0])
    ns = hglib.NetNS()
    backend = None
    with ns.enter():
        backend = hglib.CaptureServer(echo=True)
    folder = shared_dir()
    binary = os.path.join(folder, "hubgate")
    shutil.copy(hglib.HUBGATE, binary)
    os.chmod(binary, 0o755)
    admin = hglib.free_port(netns=ns)
    config = os.path.join(folder, "hubgate.yaml")

    def write(extra=""):
        hglib.write_file(config, f"""
admin:
  listen: "127.0.0.1:{admin}"
listeners:
  - name: https
    bind: ["127.0.0.1:443"]
routes:
  - name: hub
    sni: ["{SNI}"]
    backend: "{backend.addr}"
{extra}
shutdown:
  ready_delay: 0s
  drain: 0s
""")
    write()
    caps = "-all,+net_bind_service"
    # The unit's limit, or the most this machine allows.
    nofile = min(nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    proc = ns.spawn(["prlimit", f"--nofile={nofile}", "setpriv",
                     f"--reuid={NOBODY}", f"--regid={NOBODY}",
                     "--clear-groups", f"--inh-caps={caps}",
                     f"--ambient-caps={caps}", f"--bounding-set={caps}",
                     "--no-new-privs", binary, "-c", config],
                    name="hubgate-unprivileged")

    def ready():
        proc.check_alive()
        try:
            return hglib.http_get(f"127.0.0.1:{admin}", "/readyz", 2.0,
                                  ns)[0] == 200
        except OSError:
            return False
    hglib.wait_until(ready, hglib.scale(10), what="/readyz 200")
    with open(f"/proc/{proc.pid}/status") as f:
        status = f.read()
    assert re.search(rf"^Uid:\s+{NOBODY}\s", status, re.M), status
    assert re.search(r"^CapEff:\s+0+400$", status, re.M), status
    hello = hglib.tls_records(hglib.client_hello(SNI))
    assert hglib.tcp_exchange("127.0.0.1:443", [hello], read=len(hello),
                              netns=ns) == hello
    write("default_route: hub")
    since = proc.log_size()
    proc.send_signal(signal.SIGHUP)
    proc.wait_log(r"reloaded .*room for \d+ tunnels", hglib.scale(10),
                  since=since)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(hglib.scale(20)) == 0, proc.tail()


if __name__ == "__main__":
    hglib.main(globals())
