"""A listener's max_connections: connections open at once, in any phase and
across workers, are bounded; one more is accepted and closed at once and
counted as `limit`; a slot comes back when a connection closes; a reload
that raises the bound applies to the next connection."""

import gwlib
import hglib

SNI = "hub.test"


def hello():
    return hglib.tls_records(hglib.client_hello(SNI))


def config(backend, port, limit):
    return hglib.sni_gateway_yaml(backend, SNI, "workers: 2", port=port,
                                  listener=f"    max_connections: {limit}")


def open_now(gw):
    return gw.metrics().value("hubgate_connections_open", 0, listener="tls")


def tunnel(gw, data):
    c = hglib.RawClient(gw.listen_addrs[0])
    c.send_chunks([data])
    assert c.recv_exactly(len(data)) == data
    return c


def test_max_connections_bounds_every_phase():
    backend = hglib.CaptureServer(echo=True)
    port = hglib.free_port()
    gw = hglib.start_hubgate(config(backend.addr, port, 3))
    data = hello()
    # Two tunnels and one client with half its ClientHello sent (with
    # TCP_DEFER_ACCEPT a client that sent nothing is not accepted yet):
    # three open.
    tunnels = [tunnel(gw, data) for _ in range(2)]
    silent = hglib.RawClient(gw.listen_addrs[0])
    silent.send_chunks([data[:len(data) // 2]])
    hglib.wait_until(lambda: open_now(gw) == 3, hglib.scale(5),
                     what="three open")
    for _ in range(3):  # each one more is closed at once, nothing routed
        extra = hglib.RawClient(gw.listen_addrs[0])
        extra.send_chunks([data])
        assert extra.closed_by_peer(wait=hglib.scale(3))
    gwlib.wait_refused(gw, "tls", "limit", 3)
    assert backend.count() == 2
    assert open_now(gw) == 3
    # A slot comes back when a connection closes, in any phase.
    silent.close()
    hglib.wait_until(lambda: open_now(gw) == 2, hglib.scale(5),
                     what="two open")
    tunnels.append(tunnel(gw, data))
    assert gwlib.refused(gw, "tls", "limit") == 3
    tunnels.pop(0).close()
    hglib.wait_until(lambda: open_now(gw) == 2, hglib.scale(5),
                     what="two open again")
    tunnels.append(tunnel(gw, data))
    # A reload that raises the bound applies at once; the tunnels stay.
    gwlib.reload(gw, config(backend.addr, port, 5))
    tunnels += [tunnel(gw, data) for _ in range(2)]
    extra = hglib.RawClient(gw.listen_addrs[0])
    extra.send_chunks([data])
    assert extra.closed_by_peer(wait=hglib.scale(3))
    gwlib.wait_refused(gw, "tls", "limit", 4)
    for t in tunnels:  # every tunnel still carries bytes
        t.send_chunks([b"ping"])
        assert t.recv_exactly(4) == b"ping"
    for t in tunnels:
        t.close()
    hglib.wait_until(lambda: open_now(gw) == 0, hglib.scale(5),
                     what="none open")
    gw.stop()


if __name__ == "__main__":
    hglib.main(globals())
