# ctest-labels: slow
"""2,000 hostile clients leave hubgate's memory where it was.

Half claim a 70 KB ClientHello (record header, then a handshake header
whose length says 70000: refused as hello_too_big as soon as it is read),
half send `16 03 01 40 00` (a record of 16 KiB announced) and stall until
the 1 s hello timeout closes them. They come in batches of 1,000 open at
once, far inside the 20,000 open-file limit of either process, after a
warm-up batch of the same shape. hubgate's resident memory after they are
all closed must stay within MAX_GROWTH_KIB of what it was after the
warm-up, every refusal must be counted under its reason, and nothing may
reach the backend.

Not run under ASan: its allocator (quarantine, shadow memory) makes RSS
say nothing about hubgate's own use.
"""

import os
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwlib  # noqa: E402
import hglib  # noqa: E402

BATCH = 1000            # connections open at once (half of each kind)
ROUNDS = 2              # 2 x 1000 = 2000 hostile clients after warm-up
NOFILE = 20000          # the open-file limit each process must respect
# The bound, 2 MiB. Each hostile connection costs hubgate about 0.75 KiB
# of state (connection + hello parser) and the 4 KiB buffer its first read
# goes into: ~4.8 MiB for a batch of 1,000 open at once. The warm-up batch
# takes the allocator to that peak and later batches have the same shape,
# so freed memory is reused; what is left is allocator noise: which
# worker's arena holds the peak and whether its heap top was trimmed.
# Measured here over repeated runs: -0.4 to +0.65 MiB. 2 MiB is three times
# that, and is still crossed by any leak of the hello buffer (4 KiB x
# 2,000 = 8 MiB), of a whole refused connection, or of anything of 1 KiB
# or more per client. (A leak of the 0.75 KiB state alone, 1.5 MiB, is
# left to the ASan build's leak checker, which runs the other tests.)
MAX_GROWTH_KIB = 2048

CLAIM = b"\x16\x03\x01\x40\x00" + b"\x01" + (70000).to_bytes(3, "big")
STALL = b"\x16\x03\x01\x40\x00"


def hostile_batch(addr, n):
    """Opens n connections (alternately a 70 KB claim and a stall), sends
    their bytes and waits until the gateway closed every one. Returns
    (claims, stalls) sent."""
    host, port = hglib.split_hostport(addr)
    socks = []
    sel = selectors.DefaultSelector()
    claims = stalls = 0
    try:
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.settimeout(5)
            s.connect((host, port))
            if i % 2 == 0:
                s.sendall(CLAIM)
                claims += 1
            else:
                s.sendall(STALL)
                stalls += 1
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        open_ = len(socks)
        deadline = time.monotonic() + hglib.scale(20)
        while open_ and time.monotonic() < deadline:
            for key, _ in sel.select(0.5):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    data = b""
                assert data == b"", f"gateway sent {data[:20]!r}"
                sel.unregister(s)
                s.close()
                open_ -= 1
        assert open_ == 0, f"{open_} of {n} connections still open"
    finally:
        sel.close()
        for s in socks:
            s.close()
    return claims, stalls


def settled_rss(gw):
    """VmRSS in KiB once the gateway is idle: the smallest of three reads
    over 0.6 s (a read may catch an admin reply in flight)."""
    time.sleep(0.5)
    vals = []
    for _ in range(3):
        vals.append(gwlib.vmrss_kib(gw.proc.pid))
        time.sleep(0.2)
    return min(vals)


def test_hostile_clients_leave_no_memory():
    if hglib.SANITIZE:
        raise hglib.Skip("RSS means nothing under ASan")
    assert BATCH + 100 < NOFILE
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < BATCH + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (min(hard, NOFILE), hard))
    backend = hglib.CaptureServer(name="never")
    gw = hglib.start_sni_gateway(backend.addr, "hub.test",
                                 extra="timeouts:\n  hello: 1s")
    addr = gw.listen_addrs[0]
    with open(f"/proc/{gw.proc.pid}/limits") as f:
        lim = [ln for ln in f if ln.startswith("Max open files")][0]
    hglib.log(f"hubgate: {lim.strip()}")
    rss_start = gwlib.vmrss_kib(gw.proc.pid)

    total = {"hello_too_big": 0, "hello_timeout": 0}

    def batch():
        t0 = time.monotonic()
        c, s = hostile_batch(addr, BATCH)
        total["hello_too_big"] += c
        total["hello_timeout"] += s
        for reason, n in total.items():
            gwlib.wait_refused(gw, "tls", reason, n, timeout=10)
        hglib.log(f"batch of {BATCH} done in {time.monotonic() - t0:.1f} s")

    batch()  # warm-up
    rss_warm = settled_rss(gw)
    for _ in range(ROUNDS):
        batch()
    rss_end = settled_rss(gw)
    growth = rss_end - rss_warm
    hglib.log(f"VmRSS: start {rss_start} KiB, after warm-up {rss_warm} "
              f"KiB, after {ROUNDS * BATCH} more {rss_end} KiB "
              f"(growth {growth} KiB, bound {MAX_GROWTH_KIB})")
    assert growth <= MAX_GROWTH_KIB, (
        f"VmRSS grew {growth} KiB over {ROUNDS * BATCH} hostile clients")

    # Every refusal counted under its reason, nothing else.
    want = {"hello_too_big": BATCH // 2 * (ROUNDS + 1),
            "hello_timeout": BATCH // 2 * (ROUNDS + 1)}
    assert total == want, total
    got = gwlib.refused_all(gw, "tls")
    for reason, v in got.items():
        assert v == want.get(reason, 0), (reason, v, want)
    assert backend.count() == 0
    m = gw.metrics()
    assert m.sum("hubgate_connections_total") == 0
    gw.stop()


if __name__ == "__main__":
    hglib.main(globals())
