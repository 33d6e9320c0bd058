# ctest-labels: slow
"""The benchmark's load generator counts only what came back right: a
forwarder between hgload and hgecho that changes one byte, loses one, or
swaps two neighbouring runs of bytes, in the bulk stream or in an echoed
message, is reported as corrupt, and the
same forwarder passing the bytes through untouched is not. Without this, a
proxy that mangled data could look fast."""

import json
import os
import select
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hglib  # noqa: E402

HGLOAD = os.path.join(hglib.BUILD_DIR, "bench", "hgload")
HGECHO = os.path.join(hglib.BUILD_DIR, "bench", "hgecho")
AFTER = 20_000  # the tampering starts this far into the backend's bytes


class Tamper:
    """A loopback TCP forwarder to one backend. In the backend-to-client
    direction, at AFTER bytes, it flips a byte ("flip"), drops one
    ("drop") or swaps two neighbouring runs of N bytes ("swapN"); "none"
    passes everything."""

    def __init__(self, backend, mode):
        self.backend, self.mode = backend, mode
        self.window = 2 * int(mode[4:]) if mode.startswith("swap") else 1
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.done = False
        threading.Thread(target=self._accept, daemon=True).start()
        hglib.on_cleanup(self.close, "tamper forwarder")

    def close(self):
        self.done = True
        self.sock.close()

    def _accept(self):
        while not self.done:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._pair, args=(c,),
                             daemon=True).start()

    def _pair(self, client):
        server = socket.create_connection(
            hglib.split_hostport(self.backend), timeout=10)
        held, base, changed = b"", 0, self.mode == "none"
        try:
            while not self.done:
                r, _, _ = select.select([client, server], [], [], 0.5)
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is client:
                        server.sendall(data)
                        continue
                    held += data
                    if not changed:
                        # Hold back from AFTER until the window is in.
                        if base + len(held) < AFTER + self.window:
                            keep = max(0, base + len(held) - AFTER)
                            out, held = held[:len(held) - keep], \
                                held[len(held) - keep:]
                            client.sendall(out)
                            base += len(out)
                            continue
                        held = self._change(held, AFTER - base)
                        changed = True
                    client.sendall(held)
                    base += len(held)
                    held = b""
        except OSError:
            pass
        finally:
            client.close()
            server.close()

    def _change(self, data, i):
        if self.mode == "flip":
            return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
        if self.mode == "drop":
            return data[:i] + data[i + 1:]
        n = self.window // 2
        return data[:i] + data[i + n:i + 2 * n] + data[i:i + n] + \
            data[i + 2 * n:]


def backend(mode):
    p = hglib.spawn([HGECHO, "--listen", "127.0.0.1:0", "--mode", mode,
                     "--max-time", "60"], name=f"hgecho-{mode}",
                    separate_stderr=True)
    return p.wait_log(r"^ready (\S+)", 10, stderr=False).group(1)


def hgload(addr, workload, args):
    r = subprocess.run([HGLOAD, "--connect", addr, "--workload", workload,
                        "--deadline", "30"] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout, r.stderr
    return json.loads(r.stdout.splitlines()[-1])  # after any event lines


def bulk(addr):
    return hgload(addr, "bulk", ["--conns", 1, "--warmup", 0,
                                 "--duration", 0.5])


def msgs(addr):
    # Hundreds of messages of 200 bytes, well past AFTER; 4 in flight, so
    # that a swap across two of them is not left waiting for the second.
    return hgload(addr, "msgs", ["--conns", 1, "--rate", 100, "--warmup", 0,
                                 "--duration", 0.1, "--sat-duration", 0.5,
                                 "--depth", 4])


def need_tools():
    for t in (HGLOAD, HGECHO):
        if not os.access(t, os.X_OK):
            raise hglib.Skip(f"{t} is not built")


def test_bulk_bytes_are_checked():
    need_tools()
    src = backend("source")
    clean = bulk(Tamper(src, "none").addr)
    assert clean["errors"]["corrupt"] == 0 and clean["bytes"] > AFTER, clean
    for mode in ("flip", "drop", "swap64", "swap26"):
        r = bulk(Tamper(src, mode).addr)
        assert r["errors"]["corrupt"] == 1, (mode, r)


def test_echoed_messages_are_checked():
    need_tools()
    echo = backend("echo")
    clean = msgs(Tamper(echo, "none").addr)
    assert clean["errors"]["corrupt"] == 0, clean
    assert clean["msgs_done"] * 200 > 2 * AFTER, clean
    for mode in ("flip", "drop", "swap64", "swap26"):
        r = msgs(Tamper(echo, mode).addr)
        assert r["errors"]["corrupt"] == 1, (mode, r)


if __name__ == "__main__":
    hglib.main(globals())
