"""Reload changes listeners too: a new bind address is served at once, a
removed one stops, and a bind that cannot be had rejects the whole reload
while the running config goes on serving. A SIGHUP or SIGTERM that comes
while hubgate still waits for its first DNS answers, or loads a large allow
list, is acted on once it has started; a reload that takes long does not
shorten the ready delay of a stop that follows; a config path that has
become a pipe fails the reload at once instead of blocking the gateway."""

import datetime
import os
import re
import signal
import socket
import time

import hglib

SNI = "hub.test"


def config(backend, *ports):
    binds = ", ".join(f'"127.0.0.1:{p}"' for p in ports)
    return f"""
listeners:
  - name: tls
    bind: [{binds}]
routes:
  - name: hub
    sni: ["{SNI}"]
    backend: "{backend.addr}"
"""


def works(port):
    hello = hglib.tls_records(hglib.client_hello(SNI))
    try:
        got = hglib.tcp_exchange(f"127.0.0.1:{port}", [hello],
                                 read=len(hello))
    except OSError:
        return False
    return got == hello


def test_listener_moves_on_reload():
    backend = hglib.CaptureServer(echo=True)
    old, new = hglib.free_ports(2)
    gw = hglib.start_hubgate(config(backend, old))
    assert works(old)
    gw.reload(config(backend, new), wait_log=r"reloaded")
    hglib.wait_until(lambda: works(new), what="new bind serves")
    hglib.wait_until(lambda: not works(old), what="old bind closed")
    assert gw.metrics().value("hubgate_config_reloads_total",
                              result="ok") == 1
    gw.stop()


def test_restart_only_settings_are_compared_with_what_runs():
    # workers and admin.listen apply at the next restart: a reload warns
    # while the file asks for something other than what runs, each time,
    # and says nothing once the file is back to it.
    backend = hglib.CaptureServer(echo=True)
    port, admin, other = hglib.free_ports(3)

    def yaml(workers, admin_port):
        return (f"workers: {workers}\nadmin:\n  listen: "
                f"\"127.0.0.1:{admin_port}\"\n" + config(backend, port))
    gw = hglib.start_hubgate(yaml(2, admin))
    steps = [(3, admin), (3, admin), (2, admin), (2, other), (2, other),
             (2, admin)]
    warned = []
    for workers, admin_port in steps:
        since = len(gw.stderr())
        gw.reload(yaml(workers, admin_port), wait_log=r"reloaded ")
        log = gw.stderr()[since:]
        warned.append(("workers changed" in log,
                       "admin.listen changed" in log))
    assert warned == [(w != 2, a != admin) for w, a in steps], warned
    assert works(port)
    gw.stop()


def test_unbindable_address_rejects_reload():
    backend = hglib.CaptureServer(echo=True)
    port, extra, taken, added_port = hglib.free_ports(4)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", taken))
    blocker.listen(1)
    hglib.on_cleanup(blocker.close)
    gw = hglib.start_hubgate(config(backend, port))
    # The failed config also brings a listener of its own, on an address
    # it can bind and the one it cannot.
    added = (config(backend, port, extra) + f"""
  - name: added
    sni: ["added.test"]
    backend: "{backend.addr}"
""").replace("routes:", f"""  - name: added
    bind: ["127.0.0.1:{added_port}", "127.0.0.1:{taken}"]
routes:""")
    gw.reload(added, wait_log=r"reload of .* failed")
    assert "cannot listen on 127.0.0.1:%d" % taken in gw.stderr()
    assert works(port)
    # The addresses the failed config could bind are closed at once, not
    # left listening with nobody to accept on them, and said to have
    # stopped, which they never started.
    assert not works(extra) and not works(added_port)
    assert "stopped listening" not in gw.stderr()
    m = gw.metrics()
    assert m.value("hubgate_config_reloads_total", result="failed") == 1
    assert m.value("hubgate_config_reloads_total", result="ok") == 0
    # Nor does it leave metrics for the listener and route it alone named.
    text = gw.get("/metrics")[1]
    assert 'listener="added"' not in text and 'route="added"' not in text, \
        [ln for ln in text.splitlines() if '"added"' in ln][:3]
    gw.stop()



def test_reload_storm_under_connection_churn():
    """SIGHUPs every few ms while connections come and go: every switch of
    config happens with accepts, closes and listener events in flight."""
    import signal
    import threading
    import time
    backend = hglib.CaptureServer(echo=True)
    port = hglib.free_port()
    gw = hglib.start_hubgate(config(backend, port))
    stop = threading.Event()
    results = []

    def churn():
        while not stop.is_set():
            results.append(works(port))

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 4
    sent = 0
    while time.monotonic() < deadline and sent < 400:
        gw.proc.send_signal(signal.SIGHUP)
        sent += 1
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join(10)
    assert gw.proc.alive(), gw.stderr()[-2000:]
    assert results and all(results), f"{results.count(False)} failed"
    hglib.wait_until(
        lambda: gw.metrics().value("hubgate_config_reloads_total",
                                   result="ok") >= 1, what="reloads")
    gw.stop()  # also fails on any sanitizer report


def test_many_dead_addresses_give_up():
    """A name with hundreds of addresses, none answering: the connection
    gives up after a bounded number of tries, and the worker stays free."""
    import time
    dead = [f"127.0.{1 + i // 200}.{1 + i % 200}" for i in range(300)]
    dns = hglib.start_dnsmasq({"many.test": dead}, ttl=60)
    backend = hglib.CaptureServer(echo=True)
    port, dead_port = hglib.free_ports(2)
    gw = hglib.start_hubgate(f"""
workers: 1
timeouts:
  connect: 300ms
resolver:
  servers: ["{dns.server}"]
listeners:
  - name: tls
    bind: ["127.0.0.1:{port}"]
routes:
  - name: many
    sni: ["many.test"]
    backend: "many.test:{dead_port}"
  - name: hub
    sni: ["{SNI}"]
    backend: "{backend.addr}"
""")
    hglib.wait_until(lambda: gw.metrics().value(
        "hubgate_backend_addresses", route="many") == 300, what="300 addrs")
    hello = hglib.tls_records(hglib.client_hello("many.test"))
    t0 = time.monotonic()
    got = hglib.tcp_exchange(f"127.0.0.1:{port}", [hello], timeout=10)
    assert got == b""
    assert time.monotonic() - t0 < 8 * 0.3 + 2
    assert works(port)
    line = [l for l in gw.log_lines() if "route=many" in l][0]
    assert "term=SC" in line, line
    gw.stop()


def test_signals_during_first_lookups():
    dns = hglib.silent_dns()
    for sig in (signal.SIGHUP, signal.SIGTERM):
        port = hglib.free_port()
        yaml = f"""
resolver: {{servers: ["{dns}"]}}
listeners:
  - name: tls
    bind: ["127.0.0.1:{port}"]
routes:
  - name: hub
    sni: ["{SNI}"]
    backend: "hub.never-answers.test:8883"
"""
        gw = hglib.start_hubgate(yaml, wait_ready=False)
        time.sleep(0.5)  # inside the wait for the first answers
        gw.proc.send_signal(sig)
        if sig == signal.SIGHUP:
            gw.wait_log(r"reloaded ")
            gw.wait_ready()
            gw.stop()
        else:
            assert gw.proc.wait(hglib.scale(20)) == 0, gw.proc.tail()
            gw.assert_clean_log()


def big_allow_file(lines):
    """An allow file of that many /32s (in 10.0.0.0/8), and its path."""
    path = hglib.tmp_path("big-allow.txt")
    with open(path, "w") as f:
        for i in range(lines):
            f.write(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/32\n")
    return path


def log_time(line):
    return datetime.datetime.fromisoformat(line.split()[0].rstrip("Z"))


def test_signals_during_slow_loads():
    allow = big_allow_file(1_500_000)
    port = hglib.free_port()
    backend = hglib.CaptureServer(echo=True)

    def yaml(with_allow, ready_delay="0s"):
        extra = f'\n    allow: ["127.0.0.0/8", "file:{allow}"]' \
            if with_allow else ""
        return config(backend, port).replace(
            f'bind: ["127.0.0.1:{port}"]',
            f'bind: ["127.0.0.1:{port}"]{extra}') + f"""
shutdown:
  ready_delay: {ready_delay}
  drain: 0s
"""
    # A SIGHUP while the first config (with the big list) still loads.
    gw = hglib.start_hubgate(yaml(True), wait_ready=False)
    time.sleep(0.05)
    gw.proc.send_signal(signal.SIGHUP)
    gw.wait_log(r"reloaded ", timeout=60)
    gw.wait_ready(60)
    assert works(port)

    # A slow reload, then SIGTERM at once: the full ready delay follows.
    gw.reload(yaml(False, "2s"), wait_log=r"reloaded ", timeout=60)
    since = len(gw.stderr())
    gw.reload(yaml(True, "2s"))
    time.sleep(0.05)
    gw.proc.send_signal(signal.SIGTERM)
    gw.wait_log(r"no longer accepting", timeout=60, since=since)
    lines = gw.stderr()[since:].splitlines()
    stop = next(ln for ln in lines if "stopping: not ready" in ln)
    done = next(ln for ln in lines if "no longer accepting" in ln)
    waited = (log_time(done) - log_time(stop)).total_seconds()
    assert waited >= 1.9, (stop, done)
    assert gw.proc.wait(hglib.scale(30)) == 0
    gw.assert_clean_log()


def test_config_path_turned_pipe():
    port = hglib.free_port()
    backend = hglib.CaptureServer(echo=True)
    gw = hglib.start_hubgate(config(backend, port))
    os.remove(gw.config_path)
    os.mkfifo(gw.config_path)
    t0 = time.monotonic()
    gw.reload(wait_log=r"reload of .* failed")
    assert time.monotonic() - t0 < hglib.scale(5)
    assert re.search(r"not a regular file", gw.stderr())
    assert gw.readyz() == 200 and works(port)
    gw.stop()


if __name__ == "__main__":
    hglib.main(globals())
