"""A route's connect_rate: a burst of devices reaches the hub spread out at
that rate, first come first served; one that waits longer than
timeouts.queue is closed and counted; one that hangs up while waiting never
costs the hub a connection; a reload that drops the rate lets the queue go.
Pacing only ever slows connections down, so every bound on time below is a
lower one, or a generous upper one that a loaded machine cannot break."""

import time

import gwlib
import hglib

SNI = "hub.test"


def hello():
    return hglib.tls_records(hglib.client_hello(SNI))


def config(backend, rate, extra="", workers=1):
    return hglib.sni_gateway_yaml(
        backend, SNI, f"workers: {workers}\n{extra}",
        route=f"    connect_rate: {rate}" if rate else "")


def queued(gw):
    return gw.metrics().value("hubgate_connect_queue", 0, route="hub")


def timeouts(gw):
    return gw.metrics().value("hubgate_queue_timeouts_total", 0, route="hub")


def storm(gw, n):
    """n clients that connect and send their ClientHello at once."""
    data = hello()
    clients = [hglib.RawClient(gw.listen_addrs[0]) for _ in range(n)]
    for c in clients:
        c.send_chunks([data])
    return clients, data


def test_storm_reaches_the_backend_at_the_rate():
    storm_at_the_rate(workers=1)


def test_two_workers_share_one_schedule():
    """However the kernel spreads the storm over the workers, the rate and
    the burst are the gateway's."""
    storm_at_the_rate(workers=2)


def storm_at_the_rate(workers):
    backend = hglib.CaptureServer(echo=True)
    gw = hglib.start_hubgate(config(backend.addr, "20/s", workers=workers))
    n = 30
    clients, data = storm(gw, n)
    # 20/s with a burst of 2: the rest wait their turn, 50 ms apart.
    hglib.wait_until(lambda: queued(gw) > 0, hglib.scale(5),
                     what="connections queued")
    conns = backend.wait_connections(n, timeout=30)
    assert len(conns) == n
    opened = sorted(c.opened for c in conns)
    span = opened[-1] - opened[0]
    assert span >= (n - 2) * 0.05 - 0.1, f"{n} connects in {span:.2f} s"
    for t in opened:  # never more than a second's worth (+ burst) at once
        assert sum(t <= u < t + 1.0 for u in opened) <= 20 + 2 + 1, opened
    for c in clients:  # each got through, byte for byte
        assert c.recv_exactly(len(data), timeout=10) == data
    hglib.wait_until(lambda: queued(gw) == 0, hglib.scale(5),
                     what="empty queue")
    for c in clients:
        c.close()
    lines = hglib.wait_until(
        lambda: (l := gwlib.access_lines(gw)) and len(l) == n and l,
        hglib.scale(10), what=f"{n} access lines")
    waited = [int(l["queue_ms"]) for l in lines]
    assert sum(w > 0 for w in waited) >= n - 3, waited
    assert max(waited) >= (n - 3) * 50, waited
    assert timeouts(gw) == 0
    gw.stop()


def test_queue_timeout_closes_and_counts():
    backend = hglib.CaptureServer(echo=True)
    gw = hglib.start_hubgate(config(backend.addr, "2/s",
                                    "timeouts:\n  queue: 1s\n"))
    n = 8
    clients, data = storm(gw, n)
    t0 = time.monotonic()
    # One every 500 ms: in the 1 s a connection may wait, two or three get
    # their turn (more only if the machine stalled the gateway's timers).
    hglib.wait_until(lambda: timeouts(gw) + backend.count() == n,
                     hglib.scale(10), what="every connection settled")
    late = timeouts(gw)
    assert 1 <= late <= n - 2, (late, backend.count())
    assert time.monotonic() - t0 >= 0.9
    lines = hglib.wait_until(
        lambda: (l := gwlib.access_lines(gw, term="QC")) and
        len(l) == late and l, hglib.scale(10), what="QC access lines")
    for line in lines:
        assert line["reason"] == "queue_timeout", line
        assert line["backend"] == "-", line
        assert 900 <= int(line["queue_ms"]) <= 1000 * hglib.scale(5), line
    # The ones closed got nothing but the close.
    refused = [c for c in clients if c.closed_by_peer(wait=0.2)]
    assert len(refused) >= late, (len(refused), late)
    assert queued(gw) == 0
    gw.stop()


def test_client_gone_while_queued_never_reaches_backend():
    backend = hglib.CaptureServer(echo=True)
    gw = hglib.start_hubgate(config(backend.addr, "1/m"))
    first, data = storm(gw, 1)
    assert first[0].recv_exactly(len(data)) == data
    second, _ = storm(gw, 1)
    hglib.wait_until(lambda: queued(gw) == 1, hglib.scale(5),
                     what="one queued")
    # Waiting is not a tunnel yet.
    assert gw.metrics().value("hubgate_connections_active", 0,
                              listener="tls", route="hub") == 1
    second[0].close()
    line = gwlib.wait_access(gw, term="CC")
    assert line["reason"] == "client_gone", line
    assert line["backend"] == "-", line
    assert queued(gw) == 0
    time.sleep(0.3)
    assert backend.count() == 1
    gw.stop()


def one_minute_queue(n):
    """A gateway paced at 1/m, and n clients: one through, the rest
    waiting (the next slot is a minute away)."""
    backend = hglib.CaptureServer(echo=True)
    text = config(backend.addr, "1/m")
    gw = hglib.start_hubgate(text)
    clients, data = storm(gw, n)
    hglib.wait_until(lambda: queued(gw) == n - 1, hglib.scale(5),
                     what=f"{n - 1} queued")
    backend.wait_connections(1)  # the first one's connect may still be
    assert backend.count() == 1  # on its way
    return backend, text, gw, clients, data


def all_through(backend, gw, clients, data):
    """Every queued connection reached the backend (well within the minute
    the old rate would make the next one wait) and carries its data."""
    backend.wait_connections(len(clients), timeout=10)
    for c in clients:
        assert c.recv_exactly(len(data), timeout=10) == data
    assert queued(gw) == 0


def test_reload_without_rate_lets_the_queue_go():
    backend, text, gw, clients, data = one_minute_queue(5)
    gwlib.reload(gw, text.replace("    connect_rate: 1/m", ""))
    all_through(backend, gw, clients, data)
    assert timeouts(gw) == 0
    gw.stop()


def test_reload_keeps_the_pace():
    """A reload that keeps the rate neither resets the schedule (a fresh
    burst) nor strands the connections already waiting."""
    backend, text, gw, clients, _ = one_minute_queue(3)
    gwlib.reload(gw, text.replace("workers: 1", "workers: 1\n"
                                  "log:\n  level: info\n"))
    time.sleep(0.5)
    assert backend.count() == 1
    assert queued(gw) == 2
    more, _ = storm(gw, 1)
    hglib.wait_until(lambda: queued(gw) == 3, hglib.scale(5),
                     what="three queued")
    assert backend.count() == 1
    del clients, more
    gw.stop()


def test_reload_faster_rate_applies_at_once():
    backend, text, gw, clients, data = one_minute_queue(3)
    # The next slot under 1/m is a minute away; under 10/s, 100 ms.
    gwlib.reload(gw, text.replace("1/m", "10/s"))
    all_through(backend, gw, clients, data)
    gw.stop()


def test_renamed_route_keeps_its_waiters_paced():
    """Renaming a route does not let its queue rush the backend: the
    connections already waiting go at the rate they waited under."""
    backend, text, gw, clients, _ = one_minute_queue(3)
    gwlib.reload(gw, text.replace("name: hub", "name: hub-a"))
    time.sleep(0.5)
    assert backend.count() == 1
    assert queued(gw) == 2
    del clients
    gw.stop()


if __name__ == "__main__":
    hglib.main(globals())
