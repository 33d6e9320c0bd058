/*
 * hubsim's HTML report: draws the summary tables and the charts from the
 * JSON document that hubsim embeds in the page (script#hubsim-data, the
 * same document as --report-json). Whatever comes from the run goes into
 * the page as text nodes or attribute values, never as markup. Each chart
 * is an <svg data-chart="NAME"> with one <circle data-series data-t data-v>
 * per data point, so a reader (or a test) can inspect the exact values;
 * hovering a chart shows every series at that second.
 */
(function () {
    "use strict";
    var root = document.documentElement;
    var jsErrors = 0;
    var violations = 0;
    root.setAttribute("data-js-errors", "0");
    root.setAttribute("data-csp-violations", "0");
    window.addEventListener("error", function () {
        root.setAttribute("data-js-errors", String(++jsErrors));
    });
    document.addEventListener("securitypolicyviolation", function () {
        root.setAttribute("data-csp-violations", String(++violations));
    });

    var SVG_NS = "http://www.w3.org/2000/svg";
    var COLORS = ["#2563eb", "#16a34a", "#ea580c", "#9333ea", "#dc2626",
        "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d", "#7c3aed",
        "#0d9488", "#b45309", "#be123c", "#1e40af"];
    /* Chart geometry in viewBox units: size and margins around the plot. */
    var W = 900, H = 260, ML = 70, MR = 16, MT = 12, MB = 44;
    var DOTS_UP_TO = 150; /* points drawn as dots up to this many */

    function has(o, k) {
        return o !== null && typeof o === "object" &&
            Object.prototype.hasOwnProperty.call(o, k);
    }

    function setAttrs(e, attrs) {
        for (var k in attrs) {
            if (has(attrs, k)) {
                e.setAttribute(k, String(attrs[k]));
            }
        }
        return e;
    }

    function el(tag, attrs, text) {
        var e = setAttrs(document.createElement(tag), attrs || {});
        if (text !== undefined && text !== null) {
            e.textContent = String(text);
        }
        return e;
    }

    function svgEl(tag, attrs, text) {
        var e = setAttrs(document.createElementNS(SVG_NS, tag), attrs || {});
        if (text !== undefined && text !== null) {
            e.textContent = String(text);
        }
        return e;
    }

    function fmt(v, digits) {
        if (typeof v !== "number" || !isFinite(v)) {
            return "\u2013";
        }
        return v.toLocaleString("en-US", {
            maximumFractionDigits: digits === undefined ? 3 : digits
        });
    }

    /* ---------------------------------------------------------------- */
    /* Tables                                                            */
    /* ---------------------------------------------------------------- */

    function card(title, parent) {
        var c = el("section", {"class": "card"});
        c.appendChild(el("h2", {}, title));
        parent.appendChild(c);
        return c;
    }

    /* A two-column table of [name, value] rows. */
    function pairs(rows) {
        var t = el("table");
        rows.forEach(function (r) {
            var tr = el("tr");
            tr.appendChild(el("th", {}, r[0]));
            tr.appendChild(el("td", {"class": typeof r[1] === "number" ?
                "num" : ""}, typeof r[1] === "number" ? fmt(r[1]) : r[1]));
            t.appendChild(tr);
        });
        return t;
    }

    /* A table with a head row; numeric cells are right-aligned. */
    function grid(head, rows) {
        var t = el("table");
        var tr = el("tr");
        head.forEach(function (h, i) {
            tr.appendChild(el("th", {"class": i ? "num" : ""}, h));
        });
        t.appendChild(tr);
        rows.forEach(function (r) {
            var row = el("tr");
            r.forEach(function (v) {
                var cell = typeof v === "object" && v !== null ? v :
                    el("td", {"class": typeof v === "number" ? "num" : ""},
                        typeof v === "number" ? fmt(v) : v);
                row.appendChild(cell);
            });
            t.appendChild(row);
        });
        return t;
    }

    function settings(d, parent) {
        var c = d.config || {};
        var rows = [
            ["hub", c.hub],
            ["protocol", c.protocol],
            ["target", c.target],
            ["devices", c.devices],
            ["first device", c.first_device],
            ["messages per device", c.messages_per_device === 0 ? "no limit" :
                c.messages_per_device],
            ["interval (ms)", (c.intervals_ms || []).join(", ")],
            ["duration limit (s)", c.duration_s ? c.duration_s : "none"],
            ["QoS", c.qos],
            ["ramp (connections/s)",
                c.ramp_per_s ? c.ramp_per_s : "all at once"],
            ["in flight per device", c.inflight],
            ["keep-alive (s)", c.keepalive_s],
            ["threads", c.threads]
        ];
        if (has(c, "payload_size")) {
            rows.push(["payload", c.payload_size + " bytes"]);
        } else if (has(c, "template")) {
            rows.push(["template", c.template]);
        }
        rows.push(["started", d.started]);
        rows.push(["ran for (s)", d.duration_s]);
        card("Settings", parent).appendChild(pairs(rows));
    }

    function totals(d, parent) {
        var k = d.connections || {}, m = d.messages || {};
        var c = card("Totals", parent);
        c.appendChild(pairs([
            ["connection attempts", k.attempts],
            ["connections accepted", k.accepted],
            ["reconnects", k.reconnects],
            ["token renewals", k.renewals],
            ["most connected at once", k.most_at_once],
            ["devices that gave up", k.gave_up],
            ["open at the end", k.open_at_end]
        ]));
        if (k.storms) {
            c.appendChild(pairs([
                ["reconnect storms", k.storms],
                ["connections they dropped", k.storm_drops],
                ["reconnected after them", k.storm_reconnects]
            ]));
        }
        c.appendChild(pairs([
            ["messages sent", m.sent],
            ["acknowledged", m.acked],
            ["lost", m.lost],
            ["sent again after a reconnect", m.resent],
            ["behind schedule", m.behind_schedule],
            ["cloud-to-device", m.c2d],
            ["rate (messages/s)", m.rate_per_s]
        ]));
    }

    function latency(d, parent) {
        var names = [["puback", "PUBACK"], ["connect", "connect"],
            ["tls_handshake", "TLS handshake"]];
        var rows = names.map(function (n) {
            var l = (d.latency_ms || {})[n[0]] || {};
            return [n[1], l.count, l.min, l.p50, l.p90, l.p99, l.p999, l.max,
                l.mean];
        });
        var head = ["", "count", "min", "p50", "p90", "p99", "p99.9", "max",
            "mean"];
        card("Latency (ms)", parent).appendChild(grid(head, rows));
    }

    function errorsTable(d, parent) {
        var e = d.errors || {};
        var c = card("Errors", parent);
        var rows = [];
        Object.keys(e.by_kind || {}).forEach(function (kind) {
            if (e.by_kind[kind] > 0) {
                var first = has(e.first, kind) ? e.first[kind] : "";
                rows.push([kind, e.by_kind[kind],
                    el("td", {"class": "sample"}, first)]);
            }
        });
        Object.keys(e.connack_codes || {}).forEach(function (code) {
            rows.push(["CONNACK " + code, e.connack_codes[code],
                el("td", {"class": "sample"}, "refused with this code")]);
        });
        c.appendChild(pairs([["errors in all", e.total]]));
        if (rows.length) {
            c.appendChild(grid(["kind", "count", "first occurrence"], rows));
        }
    }

    /*
     * The thresholds' verdict. Without any threshold the run passes (exit
     * status 0) but has been checked against nothing: neutral, not green.
     */
    function verdict(d) {
        var c = d.config || {}, t = d.thresholds || {};
        var set = ["max_errors", "max_p99_ms", "min_rate"].some(function (k) {
            return typeof c[k] === "number";
        });
        if (!t.passed) {
            return {text: "failed", badge: "bad", cls: "failed"};
        }
        return set ? {text: "passed", badge: "ok", cls: "passed"} :
            {text: "no thresholds set", badge: "none", cls: "neutral"};
    }

    /* What a reader must not miss, whatever the thresholds said. */
    function warnings(d) {
        var e = d.errors || {}, m = d.messages || {}, c = d.config || {};
        var out = [];
        if (e.total > 0) {
            out.push(fmt(e.total) + (e.total === 1 ? " error" : " errors") +
                " in the run");
        }
        if (!m.sent) {
            out.push("no message was sent");
        } else if (c.qos !== 0 && !m.acked) {
            out.push("no message was acknowledged");
        }
        return out;
    }

    function thresholds(d, parent) {
        var c = d.config || {}, t = d.thresholds || {};
        var given = function (v) {
            return v === null || v === undefined ? "not set" : v;
        };
        var box = card("Thresholds", parent);
        box.appendChild(pairs([
            ["--max-errors", given(c.max_errors)],
            ["--max-p99 (ms)", given(c.max_p99_ms)],
            ["--min-rate (messages/s)", given(c.min_rate)]
        ]));
        var v = verdict(d);
        box.appendChild(el("p", {"class": v.cls}, v.text));
        (t.failed || []).forEach(function (f) {
            box.appendChild(el("p", {"class": "failed"}, f));
        });
    }

    /* ---------------------------------------------------------------- */
    /* Charts                                                            */
    /* ---------------------------------------------------------------- */

    function niceStep(range, n, integer) {
        var raw = range / n;
        var p = Math.pow(10, Math.floor(Math.log10(raw)));
        var f = raw / p;
        var step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
        return integer ? Math.max(1, Math.round(step)) : step;
    }

    function chartSpecs(d, timeline) {
        var kinds = Object.keys((d.errors || {}).by_kind || {}).filter(
            function (k) {
                return timeline.some(function (s) {
                    return has(s.errors_by_kind, k) && s.errors_by_kind[k] > 0;
                });
            });
        var num = function (key) {
            return function (s) {
                return typeof s[key] === "number" ? s[key] : 0;
            };
        };
        /* Latencies are null in a second without a PUBACK: a gap. */
        var numOrNull = function (key) {
            return function (s) {
                return typeof s[key] === "number" ? s[key] : null;
            };
        };
        /* The sum is drawn wide and pale, so the kinds on it stay visible. */
        var errorSeries = [{key: "errors", label: "all kinds", wide: true,
            get: num("errors")}];
        kinds.forEach(function (k) {
            errorSeries.push({key: "errors_by_kind." + k, label: k,
                get: function (s) {
                    return has(s.errors_by_kind, k) ? s.errors_by_kind[k] : 0;
                }});
        });
        return [
            {id: "connected", title: "Devices", unit: "devices", integer: true,
                series: [
                    {key: "connected", label: "connected",
                        get: num("connected")},
                    {key: "connecting", label: "connecting",
                        get: num("connecting")}
                ]},
            {id: "messages", title: "Messages per second", unit: "messages/s",
                integer: true, series: [
                    {key: "sent", label: "sent", get: num("sent")},
                    {key: "acked", label: "acknowledged", get: num("acked")}
                ]},
            {id: "latency", title: "PUBACK latency over each second",
                unit: "ms", integer: false,
                empty: "no data: no PUBACK was received", series: [
                    {key: "puback_p50_ms", label: "p50",
                        get: numOrNull("puback_p50_ms")},
                    {key: "puback_p99_ms", label: "p99",
                        get: numOrNull("puback_p99_ms")},
                    {key: "puback_p999_ms", label: "p99.9",
                        get: numOrNull("puback_p999_ms")}
                ]},
            {id: "errors", title: "Errors per second", unit: "errors/s",
                integer: true, series: errorSeries}
        ];
    }

    function chart(spec, timeline, parent) {
        var box = card(spec.title, parent);
        var legend = el("div", {"class": "legend"});
        spec.series.forEach(function (s, i) {
            s.color = COLORS[i % COLORS.length];
            var item = el("span");
            var swatch = el("i");
            swatch.style.background = s.color;
            item.appendChild(swatch);
            item.appendChild(document.createTextNode(s.label));
            legend.appendChild(item);
        });
        box.appendChild(legend);
        var wrap = el("div", {"class": "chart"});
        box.appendChild(wrap);
        var svg = svgEl("svg", {"data-chart": spec.id, "data-points":
            timeline.length, viewBox: "0 0 " + W + " " + H, role: "img",
            "aria-label": spec.title});
        wrap.appendChild(svg);

        var ts = timeline.map(function (s) {
            return typeof s.t === "number" ? s.t : 0;
        });
        var top = 0;
        spec.series.forEach(function (s) {
            timeline.forEach(function (e) {
                var v = s.get(e);
                if (v !== null) {
                    top = Math.max(top, v);
                }
            });
        });
        var yStep = niceStep(top > 0 ? top : 1, 4, spec.integer);
        var yTop = Math.max(yStep, Math.ceil((top > 0 ? top : 1) / yStep) *
            yStep);
        var tEnd = Math.max(1, ts.length ? ts[ts.length - 1] : 1);
        var xStep = niceStep(tEnd, 8, true);
        var pw = W - ML - MR, ph = H - MT - MB;
        var X = function (t) {
            return ML + pw * t / tEnd;
        };
        var Y = function (v) {
            return MT + ph * (1 - v / yTop);
        };

        for (var v = 0; v <= yTop + yStep / 2; v += yStep) {
            svg.appendChild(svgEl("line", {"class": "gridline", x1: ML,
                x2: W - MR, y1: Y(v), y2: Y(v)}));
            svg.appendChild(svgEl("text", {x: ML - 6, y: Y(v) + 4,
                "text-anchor": "end"}, fmt(v)));
        }
        for (var t = 0; t <= tEnd; t += xStep) {
            svg.appendChild(svgEl("line", {"class": "axis", x1: X(t), x2: X(t),
                y1: MT + ph, y2: MT + ph + 4}));
            svg.appendChild(svgEl("text", {x: X(t), y: MT + ph + 16,
                "text-anchor": "middle"}, fmt(t)));
        }
        svg.appendChild(svgEl("line", {"class": "axis", x1: ML, x2: ML, y1: MT,
            y2: MT + ph}));
        svg.appendChild(svgEl("line", {"class": "axis", x1: ML, x2: W - MR,
            y1: MT + ph, y2: MT + ph}));
        svg.appendChild(svgEl("text", {"class": "label", x: ML + pw / 2,
            y: H - 6, "text-anchor": "middle"}, "seconds since the start"));
        svg.appendChild(svgEl("text", {"class": "label", x: 14, y: MT + ph / 2,
            "text-anchor": "middle", transform: "rotate(-90 14 " +
            (MT + ph / 2) + ")"}, spec.unit));

        var any = spec.series.some(function (s) {
            return timeline.some(function (e) {
                return s.get(e) !== null;
            });
        });
        if (!any) {
            svg.appendChild(svgEl("text", {"class": "empty", x: ML + pw / 2,
                y: MT + ph / 2, "text-anchor": "middle"},
                timeline.length && spec.empty ? spec.empty : "no data"));
        }
        var radius = timeline.length <= DOTS_UP_TO ? 2.4 : 0;
        spec.series.forEach(function (s) {
            var g = svgEl("g", {"data-series": s.key, fill: s.color});
            /* One polyline per run of values: no value, no line. */
            var lines = [[]];
            timeline.forEach(function (e, i) {
                var value = s.get(e);
                if (value === null) {
                    lines.push([]);
                    return;
                }
                lines[lines.length - 1].push(X(ts[i]).toFixed(1) + "," +
                    Y(value).toFixed(1));
                /* The last, partial second is drawn hollow. */
                var dot = svgEl("circle", {"data-series": s.key,
                    "data-t": ts[i], "data-v": value, cx: X(ts[i]).toFixed(1),
                    cy: Y(value).toFixed(1), r: e.partial ? 3 : radius});
                if (e.partial) {
                    dot.setAttribute("class", "partial");
                    dot.style.stroke = s.color;
                }
                g.appendChild(dot);
            });
            lines.forEach(function (line) {
                if (!line.length) {
                    return;
                }
                var path = svgEl("polyline", {points: line.join(" "),
                    stroke: s.color});
                if (s.wide) {
                    path.style.strokeWidth = "5";
                    path.style.strokeOpacity = "0.35";
                }
                svg.appendChild(path);
            });
            svg.appendChild(g);
        });
        if (timeline.length && timeline[timeline.length - 1].partial) {
            svg.appendChild(svgEl("text", {"class": "note", x: W - MR,
                y: MT + 10, "text-anchor": "end"},
                "last point: the final " + fmt(timeline[timeline.length -
                1].span_s) + " s only"));
        }
        hover(spec, timeline, ts, svg, wrap, X);
    }

    /* A cursor line and a box with every series' value at that second. */
    function hover(spec, timeline, ts, svg, wrap, X) {
        if (!timeline.length) {
            return;
        }
        var cursor = svgEl("line", {"class": "cursor", y1: MT, y2: H - MB,
            x1: -10, x2: -10});
        svg.appendChild(cursor);
        var tip = el("div", {"class": "tip"});
        wrap.appendChild(tip);
        var area = svgEl("rect", {x: ML, y: MT, width: W - ML - MR,
            height: H - MT - MB, fill: "transparent"});
        svg.appendChild(area);
        area.addEventListener("mousemove", function (ev) {
            var m = svg.getScreenCTM();
            if (!m) {
                return;
            }
            var p = svg.createSVGPoint();
            p.x = ev.clientX;
            p.y = ev.clientY;
            var at = p.matrixTransform(m.inverse());
            var best = 0;
            for (var i = 1; i < ts.length; i++) {
                if (Math.abs(X(ts[i]) - at.x) < Math.abs(X(ts[best]) - at.x)) {
                    best = i;
                }
            }
            cursor.setAttribute("x1", X(ts[best]));
            cursor.setAttribute("x2", X(ts[best]));
            while (tip.firstChild) {
                tip.removeChild(tip.firstChild);
            }
            var e = timeline[best];
            tip.appendChild(el("b", {}, ts[best] + " s" + (e.partial ?
                " (the last " + fmt(e.span_s) + " s)" : "")));
            spec.series.forEach(function (s) {
                var row = el("div");
                var dot = el("i");
                var v = s.get(e);
                dot.style.background = s.color;
                row.appendChild(dot);
                row.appendChild(document.createTextNode(s.label + ": " +
                    (v === null ? "no data" : fmt(v) + " " + spec.unit)));
                tip.appendChild(row);
            });
            var box = wrap.getBoundingClientRect();
            var x = ev.clientX - box.left + 14;
            tip.style.display = "block";
            if (x + tip.offsetWidth > box.width) {
                x = ev.clientX - box.left - tip.offsetWidth - 14;
            }
            tip.style.left = x + "px";
            tip.style.top = (ev.clientY - box.top + 10) + "px";
        });
        area.addEventListener("mouseleave", function () {
            tip.style.display = "none";
            cursor.setAttribute("x1", -10);
            cursor.setAttribute("x2", -10);
        });
    }

    /* ---------------------------------------------------------------- */
    /* The page                                                          */
    /* ---------------------------------------------------------------- */

    var data = JSON.parse(document.getElementById("hubsim-data").textContent);
    var timeline = Array.isArray(data.timeline) ? data.timeline : [];
    var main = document.getElementById("report");
    var title = document.getElementById("title");
    var v = verdict(data);
    title.appendChild(el("span", {"class": "verdict " + v.badge}, v.text));
    var warns = warnings(data);
    root.setAttribute("data-verdict", v.text);
    root.setAttribute("data-warnings", warns.join("; "));
    if (warns.length) {
        title.appendChild(el("span", {"class": "verdict warn"}, "warning"));
        warns.forEach(function (w) {
            main.appendChild(el("p", {"class": "warning"}, w));
        });
    }

    var top = el("div", {"class": "grid"});
    main.appendChild(top);
    settings(data, top);
    totals(data, top);
    chartSpecs(data, timeline).forEach(function (spec) {
        chart(spec, timeline, main);
    });
    latency(data, main);
    var bottom = el("div", {"class": "grid"});
    main.appendChild(bottom);
    errorsTable(data, bottom);
    thresholds(data, bottom);
    root.setAttribute("data-resources",
        String(performance.getEntriesByType("resource").length));
    root.setAttribute("data-rendered", "1");
}());
