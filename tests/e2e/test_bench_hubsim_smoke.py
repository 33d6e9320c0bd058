# ctest-labels: slow
"""hubsim's benchmark (bench/hubsim_bench.py) runs each workload once at a
tiny size, so it cannot rot: memory per connected TLS device and the send
rate against Mosquitto. No figure is checked against a bound (a benchmark is
never a timed test); only that each one was measured, agrees with what was
asked, and that the report was written."""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hglib  # noqa: E402

RUN = os.path.join(hglib.SOURCE_DIR, "bench", "hubsim_bench.py")
HUBSIM = os.path.join(hglib.BUILD_DIR, "hubsim", "hubsim")


def test_every_workload_runs_tiny():
    if not os.access(HUBSIM, os.X_OK):
        raise hglib.Skip(f"{HUBSIM} is not built")
    hglib.need_tool("mosquitto")
    out = hglib.tmp_path("hubsim-bench")
    docs = os.path.join(hglib.SOURCE_DIR, "docs", "hubsim-benchmarks.md")
    before = os.stat(docs).st_mtime_ns if os.path.exists(docs) else None
    r = subprocess.run([sys.executable, RUN, "--quick", "--build",
                        hglib.BUILD_DIR, "--out", out],
                       capture_output=True, text=True,
                       timeout=hglib.scale(120))
    sys.stderr.write(r.stderr[-6000:])
    assert r.returncode == 0, f"hubsim_bench.py exited {r.returncode}"
    after = os.stat(docs).st_mtime_ns if os.path.exists(docs) else None
    assert before == after, "--quick must not touch docs/hubsim-benchmarks.md"
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    mem, = res["memory"]
    assert mem["most_at_once"] == mem["devices"] > 1, mem
    assert mem["errors"] == 0, mem
    assert mem["rss_all"] > mem["rss_one"] > 0, mem
    assert mem["per_device"] > 0, mem
    steps, = res["rate"]
    assert steps, res
    for s in steps:
        assert s["acked_per_s"] > 0 and s["errors"] == 0, s
        assert s["hubsim_cores"] > 0 and s["broker_cores"] > 0, s
        assert 0 < s["puback_p50_ms"] <= s["puback_p99_ms"], s
    with open(os.path.join(out, "hubsim-benchmarks.md")) as f:
        report = f.read()
    for section in ("## Machine", "## Memory per connected TLS device",
                    "## Send rate", "bench/hubsim_bench.py"):
        assert section in report, f"no {section!r} in the report"


if __name__ == "__main__":
    hglib.main(globals())
