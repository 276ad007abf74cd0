#!/usr/bin/env python3
"""Writes the Grafana dashboards (bounce-*.json) from one description, so the
four stay consistent: same datasource variable, same label filters, same
metric names as the collector's /metrics (collector/src/metrics.rs).

    python3 dashboards/generate.py          # rewrites dashboards/*.json
    python3 dashboards/generate.py --check  # fails if they differ (CI)

Edit this file, not the JSON; tests/tests/dashboards.rs checks the JSON
(structure, and every query against a real Prometheus fed by real runs).
"""
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).parent
# --check: compare the JSON files with what this script makes, write nothing (CI).
CHECK = "--check" in sys.argv[1:]
DS = {"type": "prometheus", "uid": "${datasource}"}

DUR = "bounce_restart_duration_seconds"
HDR = "bounce_restart_duration_hdr_seconds"
MAX = "bounce_restart_duration_max_seconds"
RESTARTS = "bounce_restarts_total"
PHASES = ["total", "stop", "start", "ready", "container_stop", "unit_settle",
          "osd_boot", "osd_up", "pgs_active", "pgs_clean"]
OSD_PHASES = "osd_boot|osd_up|pgs_active|pgs_clean"
# Who made a restart: `run` (bounce restarted it) or `watch` (bounce-agent
# watch observed it; those carry a `cause`: restart, stop-start, crash, recreate).
ORIGINS = "run|watch"


def v_datasource():
    return {"name": "datasource", "label": "Prometheus", "type": "datasource",
            "query": "prometheus", "hide": 0, "current": {}, "refresh": 1,
            "regex": "", "options": []}


def v_query(name, label, metric_selector, label_name, multi=False, all_value=None):
    q = f"label_values({metric_selector}, {label_name})"
    v = {"name": name, "label": label, "type": "query", "datasource": DS,
         "definition": q, "query": {"query": q, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
         "refresh": 2, "sort": 1, "hide": 0, "multi": multi, "includeAll": all_value is not None,
         "current": {}, "options": [], "regex": ""}
    if all_value is not None:
        v["allValue"] = all_value
        v["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return v


def v_custom(name, label, values, default):
    return {"name": name, "label": label, "type": "custom", "hide": 0, "multi": False,
            "includeAll": False, "query": ",".join(values),
            "current": {"selected": True, "text": default, "value": default},
            "options": [{"selected": x == default, "text": x, "value": x} for x in values]}


class Board:
    def __init__(self, uid, title, description, variables):
        self.uid, self.title, self.description = uid, title, description
        self.variables = variables
        self.panels = []
        self.y = 0
        self.x = 0
        self.row_h = 0

    def panel(self, kind, title, targets, w=12, h=8, unit="s", description="", options=None,
              field=None, transformations=None):
        if self.x + w > 24:
            self.x, self.y = 0, self.y + self.row_h
            self.row_h = 0
        p = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "targets": [dict(t, datasource=DS, refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
            "fieldConfig": {"defaults": dict({"unit": unit}, **(field or {})), "overrides": []},
            "options": options or {},
        }
        if transformations:
            p["transformations"] = transformations
        self.panels.append(p)
        self.x += w
        self.row_h = max(self.row_h, h)

    def write(self):
        board = {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["bounce"],
            "editable": True,
            "schemaVersion": 39,
            "version": 1,
            "time": {"from": "now-7d", "to": "now"},
            "refresh": "1m",
            "timezone": "utc",
            "graphTooltip": 1,
            "links": [{"type": "dashboards", "tags": ["bounce"], "asDropdown": True,
                       "title": "bounce", "includeVars": True, "keepTime": True}],
            "templating": {"list": self.variables},
            "annotations": {"list": []},
            "panels": self.panels,
        }
        path = HERE / f"{self.uid}.json"
        text = json.dumps(board, indent=2) + "\n"
        if CHECK:
            if not path.exists() or path.read_text() != text:
                sys.exit(f"{path} differs from what generate.py makes: run python3 dashboards/generate.py")
        else:
            path.write_text(text)
        return path


def expr(e, legend="", instant=False, fmt=None):
    t = {"expr": e, "legendFormat": legend, "range": not instant, "instant": instant}
    if fmt:
        t["format"] = fmt
    return t


def stat(board, title, e, w=6, unit="short", description=""):
    board.panel("stat", title, [expr(e, instant=True)], w=w, h=4, unit=unit, description=description,
                options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                         "colorMode": "value", "graphMode": "none"})


def table(board, title, queries, w=24, h=9, description=""):
    """One row per label set, one column per query (Grafana's 'merge')."""
    board.panel("table", title, [expr(e, legend=n, instant=True, fmt="table") for n, e in queries],
                w=w, h=h, description=description,
                transformations=[{"id": "merge", "options": {}},
                                 {"id": "organize", "options": {
                                     "excludeByName": {"Time": True},
                                     "renameByName": {f"Value #{chr(ord('A') + i)}": n
                                                      for i, (n, _) in enumerate(queries)}}}],
                options={"showHeader": True, "sortBy": [{"displayName": queries[-1][0], "desc": True}]})


def v_origin(selector):
    """Bounce's own restarts (`run`), observed ones (`watch`), or both."""
    return v_query("origin", "origin", f"{RESTARTS}{{{selector}}}", "origin", multi=True,
                   all_value=ORIGINS)


def watched(b, sel, group, title, h=8):
    """Observed restarts (origin="watch") per cause: how many, p50 and p90 of $phase."""
    w = f'{sel},origin="watch"'
    table(b, title, [
        ("restarts", f"sum by ({group}) ({RESTARTS}{{{w}}})"),
        ("p50", f'max by ({group}) ({HDR}{{{w},phase="$phase",quantile="0.5"}})'),
        ("p90", f'max by ({group}) ({HDR}{{{w},phase="$phase",quantile="0.9"}})'),
        ("max", f'max by ({group}) ({MAX}{{{w},phase="$phase"}})'),
    ], h=h, description="Restarts bounce-agent watch observed (upgrades, handlers, crashes), "
                        "by what brought them about; bounce's own restarts have no cause.")


def overview():
    sel = 'deployment="$deployment",scenario=~"$scenario",origin=~"$origin"'
    b = Board("bounce-overview", "bounce: deployment overview",
              "Restart times of one deployment: per service and phase, from the bounce collector; "
              "bounce's own restarts (origin run) and those bounce-agent watch observed (origin watch).",
              [v_datasource(),
               v_query("deployment", "deployment", RESTARTS, "deployment"),
               v_query("scenario", "scenario", f'{RESTARTS}{{deployment="$deployment"}}', "scenario",
                       multi=True, all_value=".*"),
               v_origin('deployment="$deployment"'),
               v_custom("phase", "phase", PHASES, "total")])
    stat(b, "Restarts measured", f"sum({RESTARTS}{{{sel}}})")
    stat(b, "Restarts not ok", f'sum({RESTARTS}{{{sel},outcome!="ok"}})',
         description="timeout, failed, aborted, or (observed) incomplete: stopped and not started again")
    stat(b, "Services", f"count(count by (service) ({RESTARTS}{{{sel}}}))")
    stat(b, "Slowest p99 of $phase", f'max({HDR}{{{sel},phase="$phase",quantile="0.99"}})', unit="s",
         description="Exact quantile from the collector's merged HDR histograms.")
    b.panel("bargauge", "p90 of $phase per service",
            [expr(f'sort_desc(max by (service) ({HDR}{{{sel},phase="$phase",quantile="0.9"}}))',
                  "{{service}}", instant=True)],
            w=12, h=10, options={"orientation": "horizontal", "displayMode": "gradient",
                                 "reduceOptions": {"calcs": ["lastNotNull"], "values": False}})
    b.panel("timeseries", "p90 of $phase over time",
            [expr(f'max by (service) ({HDR}{{{sel},phase="$phase",quantile="0.9"}})', "{{service}}")],
            w=12, h=10)
    table(b, "$phase per service", [
        ("restarts", f'sum by (service) ({DUR}_count{{{sel},phase="$phase"}})'),
        ("p50", f'max by (service) ({HDR}{{{sel},phase="$phase",quantile="0.5"}})'),
        ("p90", f'max by (service) ({HDR}{{{sel},phase="$phase",quantile="0.9"}})'),
        ("p99", f'max by (service) ({HDR}{{{sel},phase="$phase",quantile="0.99"}})'),
        ("max", f'max by (service) ({MAX}{{{sel},phase="$phase"}})'),
    ])
    b.panel("timeseries", "Restarts by outcome",
            [expr(f"sum by (outcome) (increase({RESTARTS}{{{sel}}}[$__rate_interval]))", "{{outcome}}")],
            w=12, unit="short")
    b.panel("timeseries", "Restarts by origin and cause",
            [expr(f"sum by (origin, cause) (increase({RESTARTS}{{{sel}}}[$__rate_interval]))",
                  "{{origin}} {{cause}}")],
            w=12, unit="short",
            description="origin run: bounce restarted it; origin watch: observed, by cause "
                        "(restart, stop-start, crash, recreate).")
    watched(b, 'deployment="$deployment",scenario=~"$scenario"', "service, cause",
            "Observed restarts per service and cause: $phase")
    b.panel("timeseries", "Collector: batches by result",
            [expr("sum by (result) (rate(bounce_collector_batches_total[$__rate_interval]))", "{{result}}")],
            w=12, unit="reqps",
            description="Batches the collector stored, found duplicate (a resend) or rejected.")
    return b


def service():
    sel = 'deployment="$deployment",scenario=~"$scenario",service="$service",origin=~"$origin"'
    b = Board("bounce-service", "bounce: service drill-down",
              "One service of one deployment: every phase, its quantiles over time, restarts and failures; "
              "bounce's own restarts and observed ones (origin), the latter by cause.",
              [v_datasource(),
               v_query("deployment", "deployment", RESTARTS, "deployment"),
               v_query("scenario", "scenario", f'{RESTARTS}{{deployment="$deployment"}}', "scenario",
                       multi=True, all_value=".*"),
               v_query("service", "service",
                       f'{RESTARTS}{{deployment="$deployment",scenario=~"$scenario"}}', "service"),
               v_origin('deployment="$deployment",service="$service"'),
               v_custom("phase", "phase", PHASES, "total")])
    stat(b, "Restarts", f"sum({RESTARTS}{{{sel}}})")
    stat(b, "Not ok", f'sum({RESTARTS}{{{sel},outcome!="ok"}})')
    stat(b, "p50 total", f'max({HDR}{{{sel},phase="total",quantile="0.5"}})', unit="s")
    stat(b, "Longest restart (total)", f'max({MAX}{{{sel},phase="total"}})', unit="s")
    table(b, "Phases", [
        ("restarts", f"sum by (phase) ({DUR}_count{{{sel}}})"),
        ("mean", f"sum by (phase) ({DUR}_sum{{{sel}}}) / sum by (phase) ({DUR}_count{{{sel}}})"),
        ("p50", f'max by (phase) ({HDR}{{{sel},quantile="0.5"}})'),
        ("p90", f'max by (phase) ({HDR}{{{sel},quantile="0.9"}})'),
        ("p99", f'max by (phase) ({HDR}{{{sel},quantile="0.99"}})'),
        ("max", f"max by (phase) ({MAX}{{{sel}}})"),
    ], h=8)
    b.panel("timeseries", "Quantiles per phase over time",
            [expr(f'max by (phase, quantile) ({HDR}{{{sel},quantile=~"0.5|0.9|0.99"}})',
                  "{{phase}} p{{quantile}}")], w=12, h=9)
    b.panel("timeseries", "p99 per phase from the classic histogram",
            [expr(f"histogram_quantile(0.99, sum by (le, phase) ({DUR}_bucket{{{sel}}}))", "{{phase}}")],
            w=12, h=9, description="Interpolated inside the collector's fixed buckets; "
                                   "the HDR quantiles beside it are exact to 3 digits.")
    b.panel("timeseries", "Restarts by outcome",
            [expr(f"sum by (outcome) (increase({RESTARTS}{{{sel}}}[$__rate_interval]))", "{{outcome}}")],
            w=12, h=8, unit="short")
    b.panel("heatmap", "total: distribution of new restarts",
            [expr(f'sum by (le) (increase({DUR}_bucket{{{sel},phase="total"}}[$__rate_interval]))',
                  "{{le}}", fmt="heatmap")],
            w=12, h=8, options={"calculate": False, "yAxis": {"unit": "s"}})
    watched(b, 'deployment="$deployment",scenario=~"$scenario",service="$service"', "cause",
            "Observed restarts by cause: $phase", h=7)
    return b


def ceph():
    sel = 'deployment="$deployment",scenario=~"$scenario",service="ceph-osd"'
    b = Board("bounce-ceph-osd", "bounce: Ceph OSD restarts",
              "OSD restarts: stop, start and Ceph's milestones (admin socket active, up in the osdmap, "
              "PGs active, PGs clean), all measured from the OSD's start.",
              [v_datasource(),
               v_query("deployment", "deployment", f'{RESTARTS}{{service="ceph-osd"}}', "deployment"),
               v_query("scenario", "scenario", f'{RESTARTS}{{deployment="$deployment",service="ceph-osd"}}',
                       "scenario", multi=True, all_value=".*")])
    stat(b, "OSD restarts", f"sum({RESTARTS}{{{sel}}})")
    stat(b, "Not ok", f'sum({RESTARTS}{{{sel},outcome!="ok"}})')
    stat(b, "p50 running → PGs active", f'max({HDR}{{{sel},phase="pgs_active",quantile="0.5"}})', unit="s")
    stat(b, "Longest running → PGs active", f'max({MAX}{{{sel},phase="pgs_active"}})', unit="s")
    table(b, "Phases of an OSD restart", [
        ("restarts", f'sum by (phase) ({DUR}_count{{{sel},phase=~"stop|start|{OSD_PHASES}"}})'),
        ("p50", f'max by (phase) ({HDR}{{{sel},phase=~"stop|start|{OSD_PHASES}",quantile="0.5"}})'),
        ("p90", f'max by (phase) ({HDR}{{{sel},phase=~"stop|start|{OSD_PHASES}",quantile="0.9"}})'),
        ("p99", f'max by (phase) ({HDR}{{{sel},phase=~"stop|start|{OSD_PHASES}",quantile="0.99"}})'),
        ("max", f'max by (phase) ({MAX}{{{sel},phase=~"stop|start|{OSD_PHASES}"}})'),
    ], h=8)
    b.panel("bargauge", "p90 per milestone (from the OSD's start)",
            [expr(f'max by (phase) ({HDR}{{{sel},phase=~"{OSD_PHASES}",quantile="0.9"}})', "{{phase}}",
                  instant=True)],
            w=12, h=8, options={"orientation": "horizontal", "displayMode": "gradient",
                                "reduceOptions": {"calcs": ["lastNotNull"], "values": False}})
    b.panel("timeseries", "Milestones over time (p90)",
            [expr(f'max by (phase) ({HDR}{{{sel},phase=~"{OSD_PHASES}",quantile="0.9"}})', "{{phase}}")],
            w=12, h=8)
    b.panel("timeseries", "OSD restarts by outcome",
            [expr(f"sum by (outcome) (increase({RESTARTS}{{{sel}}}[$__rate_interval]))", "{{outcome}}")],
            w=24, h=7, unit="short")
    return b


def compare():
    def sel(d):
        return f'deployment="${d}",scenario=~"$scenario",phase="$phase"'
    b = Board("bounce-compare", "bounce: compare two deployments",
              "Deployment A against deployment B, per service, for one phase "
              "(before/after an upgrade, cluster A vs cluster B). For a verdict with a statistical "
              "test, use `bounce-collector report RUN --baseline RUN`.",
              [v_datasource(),
               v_query("a", "deployment A", RESTARTS, "deployment"),
               v_query("b", "deployment B", RESTARTS, "deployment"),
               v_query("scenario", "scenario", f'{RESTARTS}{{deployment=~"$a|$b"}}', "scenario",
                       multi=True, all_value=".*"),
               v_custom("phase", "phase", PHASES, "total")])
    stat(b, "Restarts in A", f'sum({RESTARTS}{{deployment="$a",scenario=~"$scenario"}})')
    stat(b, "Restarts in B", f'sum({RESTARTS}{{deployment="$b",scenario=~"$scenario"}})')
    stat(b, "Not ok in A", f'sum({RESTARTS}{{deployment="$a",scenario=~"$scenario",outcome!="ok"}})')
    stat(b, "Not ok in B", f'sum({RESTARTS}{{deployment="$b",scenario=~"$scenario",outcome!="ok"}})')
    q = lambda d, qq: f'max by (service) ({HDR}{{{sel(d)},quantile="{qq}"}})'
    table(b, "$phase per service: A and B", [
        ("A p50", q("a", "0.5")), ("B p50", q("b", "0.5")),
        ("A p90", q("a", "0.9")), ("B p90", q("b", "0.9")),
        ("A p99", q("a", "0.99")), ("B p99", q("b", "0.99")),
    ])
    b.panel("bargauge", "p90 of $phase, B / A (above 1: B is slower)",
            [expr(f'{q("b", "0.9")} / {q("a", "0.9")}', "{{service}}", instant=True)],
            w=12, h=10, unit="none",
            options={"orientation": "horizontal", "displayMode": "gradient",
                     "reduceOptions": {"calcs": ["lastNotNull"], "values": False}},
            field={"thresholds": {"mode": "absolute", "steps": [
                {"color": "green", "value": None}, {"color": "orange", "value": 1.1},
                {"color": "red", "value": 1.5}]}})
    b.panel("timeseries", "p90 of $phase over time, A and B",
            [expr(q("a", "0.9"), "A {{service}}"), expr(q("b", "0.9"), "B {{service}}")],
            w=12, h=10)
    return b


def main():
    for make in (overview, service, ceph, compare):
        print(make().write())


if __name__ == "__main__":
    main()
