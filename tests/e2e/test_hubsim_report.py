"""hubsim's HTML report in a real browser, and its Prometheus endpoint.

The HTML report is opened from disk in headless Chromium with every way out
to the network shut (no name resolves, no background service runs); the
DOM after the page's script ran is dumped and read back: each chart must
hold exactly the run's per-second points as the JSON report gives them,
the page must report no script error, no blocked load and no fetched
resource, and markup put in the hub's name, a device id and the template
must come out as text. --metrics-listen is scraped while the run goes, and
once more after it while --metrics-linger holds it up, against the final
JSON report.
"""

import html.parser
import json
import os
import re
import signal
import socket
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "hubsim", "tests"))
import hglib  # noqa: E402
import hslib  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu",
    "--disable-background-networking", "--disable-component-update",
    "--disable-default-apps", "--disable-extensions", "--disable-sync",
    "--no-first-run", "--metrics-recording-only",
    "--disable-domain-reliability", "--no-default-browser-check",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    # The page's console (script errors, loads refused by the CSP) on
    # stderr, for the test to read.
    "--enable-logging=stderr", "--v=0",
]
# Markup and script-closing text where user input reaches the report. Device
# ids hold only what IoT Hub allows (ASCII letters, digits and
# -.%_*?!(),:=@$'), so the hostile markup comes with the template; U+2029
# ends a line in old JavaScript. (The hub's name is checked to be a host
# name.)
HOSTILE_ID = "'-alert(1)-'%3Cscript%3E$x"
HOSTILE_TEMPLATE = ('</script><script>document.title="owned"</script>'
                    '<img src=x onerror=alert(2)>\u2029$.DeviceId')
OTHER_HUB = "other-hub.azure-devices.net"

# What each chart draws: series key -> how to read it from a timeline entry.
CHARTS = {
    "connected": ["connected", "connecting"],
    "messages": ["sent", "acked"],
    "latency": ["puback_p50_ms", "puback_p99_ms", "puback_p999_ms"],
    "errors": ["errors"],
}


def need_chromium():
    if not os.access(CHROMIUM, os.X_OK):
        raise hglib.Skip(f"{CHROMIUM} is not installed "
                         "(scripts/install-deps.sh)")


class DomReader(html.parser.HTMLParser):
    """Collects from a dumped DOM: the root's data-* attributes, the
    title, every <script>, and each chart's points by series."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = {}
        self.title = ""
        self.scripts = []
        self.charts = {}
        self.elements = []
        self.samples = []
        self.badges = []
        self.warnings = []
        self._chart = None
        self._in = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.elements.append((tag, a))
        if tag == "html":
            self.root = a
        elif tag == "title":
            self._in = "title"
        elif tag == "td" and a.get("class") == "sample":
            self._in = "sample"
            self.samples.append("")
        elif tag == "span" and "verdict" in a.get("class", "").split():
            self._in = "badge"
            self.badges.append((a["class"], ""))
        elif tag == "p" and a.get("class") == "warning":
            self._in = "warning"
            self.warnings.append("")
        elif tag == "script":
            self.scripts.append(a)
        elif tag == "svg" and "data-chart" in a:
            self._chart = self.charts.setdefault(a["data-chart"], {})
        elif tag == "circle" and self._chart is not None:
            pts = self._chart.setdefault(a["data-series"], [])
            pts.append((float(a["data-t"]), float(a["data-v"])))

    def handle_endtag(self, tag):
        if tag == "svg":
            self._chart = None
        self._in = None

    def handle_data(self, data):
        if self._in == "title":
            self.title += data
        elif self._in == "sample":
            self.samples[-1] += data
        elif self._in == "badge":
            self.badges[-1] = (self.badges[-1][0], self.badges[-1][1] + data)
        elif self._in == "warning":
            self.warnings[-1] += data


def render(path):
    """Opens the file in headless Chromium and returns the DOM after its
    scripts ran (DomReader) and Chromium's stderr. Chromium runs in its own
    process group, which is killed whole when it is done."""
    need_chromium()
    profile = os.path.join(hglib.tmpdir(), hglib.unique("chromium-profile"))
    os.mkdir(profile)
    proc = hglib.Proc([CHROMIUM, *CHROMIUM_FLAGS,
                       f"--user-data-dir={profile}", "--dump-dom",
                       "file://" + os.path.abspath(path)],
                      name="chromium", separate_stderr=True)
    try:
        rc = proc.wait(hglib.scale(90))
    finally:
        proc.kill()
    dom = proc.output()
    err = proc.output(stderr=True)
    assert rc == 0 and dom.strip(), f"chromium exited {rc}:\n{err[-3000:]}"
    reader = DomReader()
    reader.feed(dom)
    return reader, err


def embedded_json(path):
    """The JSON block of the page, as the file has it."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r'<script type="application/json" id="hubsim-data">'
                  r'(.*?)</script>', text, re.S)
    assert m, "no JSON block in the page"
    return text, m.group(1)


def check_static(text, block):
    """The file itself names nothing to load and forbids loading (the data
    block aside, which holds the run's strings JSON-escaped)."""
    text = text.replace(block, "")
    assert ("<meta http-equiv=\"Content-Security-Policy\" content=\""
            "default-src 'none'; script-src 'unsafe-inline'; style-src "
            "'unsafe-inline'") in text
    for needle in ("src=", "href=", "url(", "@import", "<link", "<iframe",
                   "<img", "fetch(", "XMLHttpRequest", "WebSocket",
                   "EventSource", "sendBeacon", "import("):
        assert needle not in text, f"{needle!r} in the page"
    # Two script blocks (data and code) and no other way for one to end.
    assert text.count("</script>") == 2, text.count("</script>")
    assert text.count("<script") == 2
    assert "\u2028" not in text and "\u2029" not in text


def check_page(path, report):
    text, block = embedded_json(path)
    check_static(text, block)
    # The page carries the very document of --report-json.
    assert json.loads(block) == report
    dom, err = render(path)
    assert dom.root.get("data-rendered") == "1", (dom.root, err[-3000:])
    assert dom.root.get("data-js-errors") == "0", dom.root
    assert dom.root.get("data-csp-violations") == "0", dom.root
    assert dom.root.get("data-resources") == "0", dom.root
    console = [line for line in err.splitlines()
               if ":CONSOLE" in line or "Refused to" in line]
    assert not console, console
    # Still only the page's own two scripts, and no image, after it ran.
    assert len(dom.scripts) == 2, dom.scripts
    assert not [e for e in dom.elements if e[0] in ("img", "iframe")]
    assert not [e for e in dom.elements
                if any(k.startswith("on") for k in e[1])]
    timeline = report["timeline"]
    assert timeline, "no timeline"
    kinds = sorted({k for s in timeline for k, v in
                    s.get("errors_by_kind", {}).items() if v})
    assert set(dom.charts) == set(CHARTS), dom.charts.keys()
    for chart, keys in CHARTS.items():
        keys = keys + ([f"errors_by_kind.{k}" for k in kinds]
                       if chart == "errors" else [])
        drawn = [k for k in keys if chart != "latency" or
                 any(s[k] is not None for s in timeline)]
        assert sorted(dom.charts[chart]) == sorted(drawn), (chart,
                                                            dom.charts[chart])
        for key in keys:
            if key.startswith("errors_by_kind."):
                kind = key.split(".", 1)[1]
                want = [(s["t"], s["errors_by_kind"].get(kind, 0))
                        for s in timeline]
            else:
                # A second without a PUBACK has no latency: a gap.
                want = [(s["t"], s[key]) for s in timeline
                        if s[key] is not None]
            got = dom.charts[chart].get(key, [])
            assert got == [(float(t), float(v)) for t, v in want], \
                (chart, key, got, want)
    return dom


# Appended to a copy of a report: moves the mouse to the right end of the
# messages chart and keeps what the hover box then says.
HOVER_PROBE = """<script>
var svg = document.querySelector('svg[data-chart="messages"]');
var area = svg.querySelector("rect");
var box = area.getBoundingClientRect();
area.dispatchEvent(new MouseEvent("mousemove", {bubbles: true,
  clientX: box.right - 1, clientY: box.top + box.height / 2}));
var tip = svg.parentNode.querySelector(".tip");
document.documentElement.setAttribute("data-hover",
  tip.style.display + "|" + tip.textContent);
</script>"""


def check_hover(path, report):
    """Hovering a chart shows the values of the nearest second."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    probe = hglib.tmp_path("hover.html")
    hglib.write_file(probe, text.replace("</body>", HOVER_PROBE + "</body>"))
    dom, _ = render(probe)
    last = report["timeline"][-1]
    assert last["partial"], last
    want = (f"block|{last['t']} s (the last {last['span_s']} s)"
            f"sent: {last['sent']:,} messages/s"
            f"acknowledged: {last['acked']:,} messages/s")
    assert dom.root.get("data-hover") == want, (dom.root, want)


def check_sums(rep):
    """The timeline, its last partial second included, adds up to the
    totals."""
    tl = rep["timeline"]
    assert tl and tl[-1].get("partial") is True, tl
    assert not any(s.get("partial") for s in tl[:-1]), tl
    assert tl[-1]["t"] == rep["duration_s"], (tl[-1], rep["duration_s"])
    for key, total in (("sent", rep["messages"]["sent"]),
                       ("acked", rep["messages"]["acked"]),
                       ("connects", rep["connections"]["accepted"]),
                       ("reconnects", rep["connections"]["reconnects"]),
                       ("errors", rep["errors"]["total"])):
        assert sum(s[key] for s in tl) == total, (key, total, tl)
    for kind, n in rep["errors"]["by_kind"].items():
        assert sum(s["errors_by_kind"].get(kind, 0) for s in tl) == n, kind


def test_html_report_in_chromium():
    need_chromium()
    hub = hslib.Hub(wss=False)
    sub = hub.subscriber()
    html_path = hglib.tmp_path("report.html")
    ids = ["sim000001", HOSTILE_ID, "sim000003"]
    res = hslib.run_hubsim(hub.args("mqtt") + [
        "--device-list", ",".join(ids), "--messages", "0",
        "--interval", "100", "--duration", "3500ms", "--ramp", "0",
        "--device-key", hslib.KEY, "--template", HOSTILE_TEMPLATE,
        "--max-errors", "0", "--report-html", html_path])
    assert res.rc == 0, res
    rep = res.report
    assert len(rep["timeline"]) >= 3, rep["timeline"]
    assert sum(s["sent"] for s in rep["timeline"]) > 0
    check_sums(rep)
    hslib.assert_exact_count(sub, rep["messages"]["acked"])
    dom = check_page(html_path, rep)
    assert dom.badges == [("verdict ok", "passed")], dom.badges
    assert dom.warnings == [], dom.warnings
    check_hover(html_path, rep)
    # Markup in a device id and the template reached the page as text.
    assert rep["config"]["first_device"] == "sim000001"
    assert rep["config"]["template"] == HOSTILE_TEMPLATE
    assert dom.title == f"hubsim report: {hglib.HUB_NAME}"
    hub.stop_gateways()


def test_html_report_with_errors():
    need_chromium()
    hub = hslib.Hub(wss=False, gateway=False)
    html_path = hglib.tmp_path("errors.html")
    # The certificate does not name this hub: every attempt fails the TLS
    # check, and the devices try again and again for three seconds.
    args = hub.args("mqtt", direct=True)
    args[args.index("--hub") + 1] = OTHER_HUB
    res = hslib.run_hubsim(args + [
        "--device-list", f"{HOSTILE_ID},sim000002", "--ramp", "0",
        "--duration", "3s", "--backoff-base", "300ms",
        "--backoff-max", "300ms",
        "--device-key", hslib.KEY, "--max-errors", "0",
        "--report-html", html_path])
    assert res.rc == 1, res
    rep = res.report
    errors = rep["errors"]
    assert errors["by_kind"]["tls_verify"] == errors["total"] >= 4, errors
    assert rep["connections"]["accepted"] == 0
    if not any(s["errors"] for s in rep["timeline"]):
        raise AssertionError(f"no error in the timeline: {rep['timeline']}")
    check_sums(rep)
    assert rep["latency_ms"]["puback"]["p99"] is None
    dom = check_page(html_path, rep)
    assert dom.badges == [("verdict bad", "failed"),
                          ("verdict warn", "warning")], dom.badges
    assert dom.warnings == [f"{errors['total']:,} errors in the run",
                            "no message was sent"], dom.warnings
    assert "latency" not in [c for c in dom.charts if dom.charts[c]]
    assert dom.title == f"hubsim report: {OTHER_HUB}", dom.title
    assert "errors_by_kind.tls_verify" in dom.charts["errors"]
    # The first error's sample names its device; the table shows it as
    # text, exactly as the JSON report has it.
    first = rep["errors"]["first"]["tls_verify"]
    assert dom.samples == [first], (dom.samples, first)
    assert rep["config"]["first_device"] == HOSTILE_ID


def test_html_report_without_thresholds():
    """A run that achieved nothing, with no threshold given: exit 0 as
    documented, but the page neither says "passed" nor hides the errors;
    the timeline of this sub-second run still holds its errors, and no
    PUBACK means no latency figure at all."""
    need_chromium()
    closed = hglib.free_port()  # nothing listens: every connect is refused
    html_path = hglib.tmp_path("nothing.html")
    res = hslib.run_hubsim([
        "--hub", "h.example", "--connect-to", f"127.0.0.1:{closed}",
        "--devices", "3", "--max-attempts", "1", "--ramp", "0",
        "--device-key", hslib.KEY, "--report-html", html_path])
    assert res.rc == 0, res
    rep = res.report
    assert rep["errors"]["by_kind"]["tcp_refused"] == 3, rep["errors"]
    assert rep["thresholds"] == {"passed": True, "failed": []}
    check_sums(rep)
    assert rep["timeline"][0]["errors"] == 3
    for name in ("puback", "connect", "tls_handshake"):
        lat = rep["latency_ms"][name]
        assert lat["count"] == 0 and all(
            lat[k] is None for k in lat if k != "count"), lat
    assert all(s[k] is None for s in rep["timeline"]
               for k in ("puback_p50_ms", "puback_p99_ms", "puback_p999_ms"))
    assert rep["config"]["duration_s"] is None
    assert rep["config"]["max_attempts"] == 1
    dom = check_page(html_path, rep)
    assert dom.root.get("data-verdict") == "no thresholds set", dom.root
    assert dom.badges == [("verdict none", "no thresholds set"),
                          ("verdict warn", "warning")], dom.badges
    assert dom.warnings == ["3 errors in the run", "no message was sent"]
    assert not dom.charts["latency"], dom.charts["latency"]


def test_unwritable_report_path():
    """A report that cannot be written stops hubsim before any device
    connects."""
    hslib.need_hubsim()
    hub = socket.socket()
    hglib.on_cleanup(hub.close, "listening socket")
    hub.bind(("127.0.0.1", 0))
    hub.listen(8)
    hub.setblocking(False)
    port = hub.getsockname()[1]
    for flag, name in (("--report-json", "r.json"),
                       ("--report-html", "r.html")):
        path = f"/nonexistent/dir/{name}"
        res = hslib.run_hubsim(["--hub", "h.example", "--connect-to",
                                f"127.0.0.1:{port}", "--device-key",
                                hslib.KEY, "--messages", "1",
                                "--connect-timeout", "1s", "--max-attempts",
                                "1", flag, path],
                               report=False)
        assert res.rc == 3, res
        assert (f"{flag}: cannot write {path}: No such file or directory"
                in res.stderr), res
    try:
        hub.accept()
        raise AssertionError("a device connected")
    except BlockingIOError:
        pass


def scrape(addr):
    status, body = hglib.http_get(addr, "/metrics")
    assert status == 200, status
    return hglib.parse_prometheus(body)


def test_metrics_listen():
    hub = hslib.Hub(wss=False)
    port = hglib.free_port()
    addr = f"127.0.0.1:{port}"
    run = hslib.start_hubsim(hub.args("mqtt") + [
        "--devices", "3", "--messages", "0", "--interval", "50",
        "--duration", "4s", "--ramp", "0", "--device-key", hslib.KEY,
        "--metrics-listen", addr, "--metrics-linger", "120s"])
    hglib.wait_tcp(addr, hglib.scale(10), proc=run.proc)
    hglib.wait_until(
        lambda: (scrape(addr).value("hubsim_devices_connected") == 3 and
                 scrape(addr).value("hubsim_messages_acked_total") > 0),
        hglib.scale(10), what="3 devices connected and sending")
    first = scrape(addr)
    assert first.value("hubsim_devices") == 3
    assert first.value("hubsim_connects_total") == 3
    hglib.wait_until(
        lambda: (scrape(addr).value("hubsim_messages_acked_total") >
                 first.value("hubsim_messages_acked_total")),
        hglib.scale(10), what="the acked counter to move")
    status, _ = hglib.http_get(addr, "/other")
    assert status == 404
    # The report is written before the linger: then the figures are final.
    hglib.wait_until(lambda: os.path.exists(run.report_path),
                     hglib.scale(30), what="the JSON report")
    last = scrape(addr)
    t0 = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    res = run.finish(20)
    assert res.rc == 0, res
    assert time.monotonic() - t0 < hglib.scale(10), "the linger held on"
    rep = res.report
    m, c, e = rep["messages"], rep["connections"], rep["errors"]
    assert last.value("hubsim_messages_sent_total") == m["sent"] > 0
    assert last.value("hubsim_messages_acked_total") == m["acked"]
    assert last.value("hubsim_messages_lost_total") == m["lost"]
    assert last.value("hubsim_connection_attempts_total") == c["attempts"]
    assert last.value("hubsim_connects_total") == c["accepted"] == 3
    assert last.value("hubsim_reconnects_total") == c["reconnects"]
    assert last.value("hubsim_token_renewals_total") == c["renewals"]
    assert last.value("hubsim_messages_resent_total") == m["resent"]
    assert last.value("hubsim_devices_connected") == c["open_at_end"] == 0
    assert last.value("hubsim_devices_connected_max") == c["most_at_once"]
    assert last.value("hubsim_devices_finished") == 3
    for kind, n in e["by_kind"].items():
        assert last.value("hubsim_errors_total", kind=kind) == n, kind
    assert last.sum("hubsim_errors_total") == e["total"]
    # The PUBACK histogram: every message, buckets never falling, and its
    # mean and median as the report has them (to the histogram's 0.8 %).
    lat = rep["latency_ms"]["puback"]
    name = "hubsim_puback_latency_seconds"
    assert last.value(f"{name}_count") == lat["count"] == m["acked"]
    buckets = sorted((float(lb["le"]), v) for lb, v in
                     last.select(f"{name}_bucket"))
    assert buckets[-1] == (float("inf"), lat["count"])
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
    mean_ms = last.value(f"{name}_sum") / lat["count"] * 1000
    assert abs(mean_ms - lat["mean"]) <= 0.001 + lat["mean"] * 1e-6, \
        (mean_ms, lat["mean"])
    half = next(le for le, v in buckets if v >= lat["count"] / 2)
    assert half * 1000 >= lat["p50"] / 1.008, (half, lat["p50"])
    assert last.value("hubsim_connect_latency_seconds_count") == 3
    hub.stop_gateways()


def test_metrics_listen_bad_address():
    hslib.need_hubsim()
    res = hslib.run_hubsim(["--hub", "h.example", "--connect-to",
                            "127.0.0.1:1", "--metrics-listen", "nowhere:80"],
                           report=False)
    assert res.rc == 2, res
    assert "--metrics-listen" in res.stderr
    res = hslib.run_hubsim(["--hub", "h.example", "--connect-to",
                            "127.0.0.1:1", "--metrics-linger", "5s"],
                           report=False)
    assert res.rc == 2 and "needs --metrics-listen" in res.stderr, res
    # A port already taken: hubsim cannot start (no device connects).
    taken = socket.socket()
    hglib.on_cleanup(taken.close, "listening socket")
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    res = hslib.run_hubsim(["--hub", "h.example", "--connect-to",
                            "127.0.0.1:1", "--metrics-listen",
                            f"127.0.0.1:{port}"], report=False)
    assert res.rc == 3, res
    assert "--metrics-listen: cannot listen" in res.stderr, res
    assert "tcp_refused" not in res.stderr, res


if __name__ == "__main__":
    hglib.main(globals())
