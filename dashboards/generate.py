"""Grafana dashboards as code: `python dashboards/generate.py` writes dashboards/*.json.

Plain dicts in Grafana's dashboard JSON model (schemaVersion 39). The data source is a
variable, so the files import into any Grafana with a Prometheus data source. A test checks that
the committed JSON matches this script and that every metric used here is one the collector
exposes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
DS = {"type": "prometheus", "uid": "${datasource}"}
PROVINCE = 'province=~"$province"'
CLASS_COLOURS = {"good": "green", "moderate": "orange", "bad": "red", "unknown": "gray"}

Panel = dict[str, Any]


def target(expr: str, legend: str = "", *, ref: str = "A", instant: bool = False,
           fmt: str = "time_series") -> dict[str, Any]:  # fmt: skip
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref,
            "instant": instant, "range": not instant, "format": fmt}  # fmt: skip


def panel(kind: str, title: str, targets: list[dict[str, Any]], grid: tuple[int, int, int, int],
          **extra: Any) -> Panel:  # fmt: skip
    x, y, w, h = grid
    return {"type": kind, "title": title, "datasource": DS, "targets": targets,
            "gridPos": {"x": x, "y": y, "w": w, "h": h}, **extra}  # fmt: skip


def stat(title: str, expr: str, grid: tuple[int, int, int, int], unit: str = "none") -> Panel:
    options = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"}
    field_config = {"defaults": {"unit": unit}, "overrides": []}
    return panel("stat", title, [target(expr, instant=True)], grid,
                 fieldConfig=field_config, options=options)  # fmt: skip


def class_overrides() -> list[dict[str, Any]]:
    return [
        {"matcher": {"id": "byName", "options": name},
         "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": colour}}]}
        for name, colour in CLASS_COLOURS.items()
    ]  # fmt: skip


def variables(with_province: bool) -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"}
    ]
    if with_province:
        items.append({
            "name": "province", "type": "query", "datasource": DS, "label": "Province",
            "query": {"query": "label_values(edugap_province_schools, province)",
                      "refId": "province"},
            "definition": "label_values(edugap_province_schools, province)",
            "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2, "sort": 1,
        })  # fmt: skip
    return {"list": items}


def dashboard(uid: str, title: str, panels: list[Panel], with_province: bool) -> dict[str, Any]:
    for i, p in enumerate(panels, 1):
        p["id"] = i
    return {
        "uid": uid, "title": title, "tags": ["edugap"], "timezone": "browser",
        "schemaVersion": 39, "version": 1, "editable": True, "refresh": "5m",
        "time": {"from": "now-7d", "to": "now"},
        "templating": variables(with_province), "annotations": {"list": []}, "panels": panels,
    }  # fmt: skip


def coverage() -> dict[str, Any]:
    """Provincial / national view: who is connected, who is monitored, where devices lack."""
    panels = [
        stat("Schools", f"sum(edugap_province_schools{{{PROVINCE}}})", (0, 0, 4, 4)),
        stat("Connected well (share)",
             f'sum(edugap_province_schools{{{PROVINCE},connectivity="good"}}) '
             f"/ sum(edugap_province_schools{{{PROVINCE}}})", (4, 0, 5, 4), "percentunit"),
        stat("Monitored (live share)",
             f'sum(edugap_province_monitoring_schools{{{PROVINCE},status="live"}}) '
             f"/ sum(edugap_province_monitoring_schools{{{PROVINCE}}})", (9, 0, 5, 4),
             "percentunit"),
        stat("Bandwidth missing", f"sum(edugap_province_bandwidth_gap_mbps{{{PROVINCE}}})",
             (14, 0, 5, 4), "Mbits"),
        stat("Computers missing", f"sum(edugap_province_computers_gap{{{PROVINCE}}})",
             (19, 0, 5, 4)),
        panel("geomap", "Schools by connectivity class",
              [target(f"edugap_school_connectivity{{{PROVINCE}}} * on (school_id) "
                      f"group_left (lat, lon, name, commune) edugap_school_info",
                      instant=True, fmt="table")],
              (0, 4, 12, 16),
              options={"view": {"id": "coords", "lat": 16.0, "lon": 106.0, "zoom": 5},
                       "layers": [{"type": "markers", "name": "Schools",
                                   "location": {"mode": "coords", "latitude": "lat",
                                                "longitude": "lon"},
                                   "config": {"style": {"size": {"fixed": 3},
                                                        "color": {"field": "class"}}}}]},
              fieldConfig={"defaults": {}, "overrides": class_overrides()}),
        panel("barchart", "Schools per province by connectivity class",
              [target(f"sum by (province, connectivity) (edugap_province_schools{{{PROVINCE}}})",
                      "{{connectivity}}", instant=True, fmt="table")],
              (12, 4, 12, 16),
              options={"stacking": "normal", "orientation": "horizontal", "xField": "province"},
              transformations=[{"id": "groupingToMatrix", "options": {
                  "columnField": "connectivity", "rowField": "province",
                  "valueField": "Value"}}],
              fieldConfig={"defaults": {}, "overrides": class_overrides()}),
        panel("timeseries", "Schools by monitoring status",
              [target(f"sum by (status) (edugap_province_monitoring_schools{{{PROVINCE}}})",
                      "{{status}}")], (0, 20, 12, 8)),
        panel("timeseries", "Schools with each shortfall",
              [target(f"sum by (kind) (edugap_province_shortfall_schools{{{PROVINCE}}})",
                      "{{kind}}")], (12, 20, 12, 8)),
        panel("table", "Schools to act on first (highest priority)",
              [target(f"topk(50, edugap_school_priority{{{PROVINCE}}}) * on (school_id) "
                      "group_left (name, commune, level) edugap_school_info",
                      instant=True, fmt="table", ref="A"),
               target(f"edugap_school_download_mbps{{{PROVINCE}}}", instant=True, fmt="table",
                      ref="B"),
               target(f"edugap_school_required_mbps{{{PROVINCE}}}", instant=True, fmt="table",
                      ref="C"),
               target(f"edugap_school_computers_gap{{{PROVINCE}}}", instant=True, fmt="table",
                      ref="D")],
              (0, 28, 24, 12),
              transformations=[{"id": "merge", "options": {}}]),
        panel("table", "Provinces",
              [target(f"edugap_province_bandwidth_gap_mbps{{{PROVINCE}}}", instant=True,
                      fmt="table", ref="A"),
               target(f"edugap_province_computers_gap{{{PROVINCE}}}", instant=True, fmt="table",
                      ref="B"),
               target(f"edugap_province_computers_os_out_of_support{{{PROVINCE}}}",
                      instant=True, fmt="table", ref="C"),
               target(f"edugap:province_connected_good:ratio{{{PROVINCE}}}", instant=True,
                      fmt="table", ref="D"),
               target(f"edugap:province_monitored:ratio{{{PROVINCE}}}", instant=True,
                      fmt="table", ref="E")],
              (0, 40, 24, 12),
              transformations=[{"id": "merge", "options": {}}]),
    ]  # fmt: skip
    return dashboard("edugap-coverage", "edugap: school coverage", panels, with_province=True)


def collector() -> dict[str, Any]:
    """Operators' view of the collector itself."""
    panels = [
        stat("Ingest connected", "min(edugap_collector_ingest_connected)", (0, 0, 4, 4)),
        stat("Snapshot age", "max(edugap_collector_snapshot_age_seconds)", (4, 0, 5, 4), "s"),
        stat("Snapshot duration", "max(edugap_collector_snapshot_duration_seconds)",
             (9, 0, 5, 4), "s"),
        stat("Unregistered schools reporting", "max(edugap_collector_unregistered_schools)",
             (14, 0, 5, 4)),
        stat("Schools in snapshot", "max(edugap_collector_snapshot_schools)", (19, 0, 5, 4)),
        panel("timeseries", "Messages per second by result",
              [target("sum by (result) (rate(edugap_collector_messages_total[5m]))",
                      "{{result}}")], (0, 4, 12, 8),
              fieldConfig={"defaults": {"unit": "reqps"}, "overrides": []}),
        panel("timeseries", "Ingest lag (receive time - measured time)",
              [target("max(edugap_collector_ingest_lag_seconds)", "lag")], (12, 4, 12, 8),
              fieldConfig={"defaults": {"unit": "s"}, "overrides": []}),
        panel("timeseries", "Errors",
              [target("sum(increase(edugap_collector_store_errors_total[5m]))", "store errors",
                      ref="A"),
               target("sum(increase(edugap_collector_snapshot_errors_total[5m]))",
                      "snapshot errors", ref="B"),
               target("sum(increase(edugap_collector_metric_errors_total[5m]))",
                      "metric errors", ref="C"),
               target("sum(increase(edugap_collector_clamped_total[5m]))",
                      "clamped timestamps", ref="D")], (0, 12, 12, 8)),
        panel("timeseries", "Batches written per second",
              [target("sum(rate(edugap_collector_batches_total[5m]))", "batches")],
              (12, 12, 12, 8)),
        panel("timeseries", "Metrics render time and scrape health",
              [target("max(edugap_collector_render_duration_seconds)", "render", ref="A"),
               target('max by (instance) (scrape_duration_seconds{job=~"edugap-.*"})',
                      "scrape {{instance}}", ref="B")], (0, 20, 24, 8),
              fieldConfig={"defaults": {"unit": "s"}, "overrides": []}),
    ]  # fmt: skip
    return dashboard("edugap-collector", "edugap: collector", panels, with_province=False)


DASHBOARDS = {"edugap-coverage.json": coverage, "edugap-collector.json": collector}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main(out: Path = HERE) -> int:
    for name, text in render().items():
        (out / name).write_text(text, encoding="utf-8")
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE))
