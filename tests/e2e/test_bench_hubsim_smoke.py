# ctest-labels: slow
"""hubsim's benchmark (bench/hubsim_bench.py) runs each workload once at a
tiny size, so it cannot rot: memory per connected TLS device and the send
rate against Mosquitto. No figure is checked against a bound (a benchmark is
never a timed test); only that each one was measured, agrees with what was
asked, and that the report was written."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hglib  # noqa: E402

HUBSIM = os.path.join(hglib.BUILD_DIR, "hubsim", "hubsim")


def test_every_workload_runs_tiny():
    if not os.access(HUBSIM, os.X_OK):
        raise hglib.Skip(f"{HUBSIM} is not built")
    hglib.need_tool("mosquitto")
    res, report = hglib.run_bench_quick("hubsim_bench.py",
                                        "hubsim-benchmarks.md", 120)
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
    for section in ("## Machine", "## Memory per connected TLS device",
                    "## Send rate", "bench/hubsim_bench.py"):
        assert section in report, f"no {section!r} in the report"


if __name__ == "__main__":
    hglib.main(globals())
