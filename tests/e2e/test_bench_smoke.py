# ctest-labels: slow
"""The benchmark harness (bench/run.py, bench/hgload, bench/hgecho) runs
every workload once at a tiny size, so it cannot rot: idle memory, small
messages, bulk, the connection storm and the callgrind / strace counts,
directly and through hubgate, HAProxy and NGINX, and the small messages
through the bare io_uring forwarder (bench/hburing). No figure is checked
against a bound (a benchmark is never a timed test); only that each one was
measured, and that the report and the configs were written. HAProxy and
NGINX are skipped, with a note, where they are not installed, and the
forwarder where liburing is not."""

import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hglib  # noqa: E402

TOOLS = [os.path.join(hglib.BUILD_DIR, "bench", t)
         for t in ("hgload", "hgecho")]
PROXIES = ("hubgate", "haproxy", "nginx")


def run_quick():
    for tool in TOOLS + [hglib.HUBGATE]:
        if not os.access(tool, os.X_OK):
            raise hglib.Skip(f"{tool} is not built")
    return hglib.run_bench_quick("run.py", "benchmarks.md", 400)


def number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_workloads(res, peers):
    if "haproxy-splice" in peers:
        bulk, = res["bulk"]["haproxy-splice"]
        assert bulk["bytes_per_s_1"] > 0, bulk
    for p in peers:
        if p == "haproxy-splice":
            continue  # a bulk-only variant, checked above
        if p == "uring":  # small messages only
            assert set(r for r in res if p in res[r]) == {"msgs"}, res
            msgs, = res["msgs"][p]
            assert msgs["msgs_per_s"] > 0 and msgs["paced_done"] > 0, msgs
            assert number(msgs["cpu_us_per_msg_sat"]), msgs
            continue
        proxy = p in PROXIES
        if proxy:
            idle, = res["idle"][p]
            assert number(idle["bytes_per_tunnel"]), idle
            assert idle["rss_after"] > 0 and idle["tunnels"] > 0, idle
        msgs, = res["msgs"][p]
        assert msgs["msgs_per_s"] > 0 and msgs["paced_done"] > 0, msgs
        assert 0 < msgs["p50_us"] <= msgs["p99_us"] <= msgs["p999_us"], msgs
        bulk, = res["bulk"][p]
        assert bulk["bytes_per_s_1"] > 0 and bulk["bytes_per_s_8"] > 0, bulk
        if len(os.sched_getaffinity(0)) >= 2:
            assert bulk["bytes_per_s_1_pinned"] > 0, bulk
        storm, = res["storm"][p]
        assert storm["steps"] and storm["steps"][0]["ok"] > 0, storm
        if proxy:
            cpu, = res["cpu"][p]
            if shutil.which("valgrind"):
                assert cpu["ir_per_msg"] > 0 and cpu["ir_top"], cpu
            if shutil.which("strace"):
                assert cpu["syscalls_per_msg"] > 0, cpu


def test_every_workload_runs_tiny():
    data, report = run_quick()
    peers, missing = data["peers"], data["missing"]
    for p in missing:
        print(f"note: {p} is not installed: skipped "
              f"(scripts/install-deps.sh installs it)")
    assert "direct" in peers and "hubgate" in peers
    check_workloads(data["results"], peers)
    for section in ("## Machine", "## Versions", "## Results",
                    "## Configurations", "### hubgate-main",
                    "### hubgate-cpu", "bench/run.py"):
        assert section in report, f"no {section!r} in the report"
    if "haproxy" in peers:
        assert "req_ssl_sni -i bench.hub.test" in report
        assert "option splice-auto" in report
    if "nginx" in peers:
        assert "ssl_preread on;" in report
        assert f"worker_processes {os.cpu_count()};" in report


if __name__ == "__main__":
    hglib.main(globals())
