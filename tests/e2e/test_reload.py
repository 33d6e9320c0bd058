"""Reload changes listeners too: a new bind address is served at once, a
removed one stops, and a bind that cannot be had rejects the whole reload
while the running config goes on serving."""

import socket

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


def test_unbindable_address_rejects_reload():
    backend = hglib.CaptureServer(echo=True)
    port, extra, taken = hglib.free_ports(3)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", taken))
    blocker.listen(1)
    hglib.on_cleanup(blocker.close)
    gw = hglib.start_hubgate(config(backend, port))
    gw.reload(config(backend, port, extra, taken),
              wait_log=r"reload of .* failed")
    assert "cannot listen on 127.0.0.1:%d" % taken in gw.stderr()
    assert works(port)
    # The address the failed config could bind is not left listening with
    # nobody to accept on it.
    hglib.wait_until(lambda: not works(extra), what="extra bind closed")
    m = gw.metrics()
    assert m.value("hubgate_config_reloads_total", result="failed") == 1
    assert m.value("hubgate_config_reloads_total", result="ok") == 0
    gw.stop()


if __name__ == "__main__":
    hglib.main(globals())
