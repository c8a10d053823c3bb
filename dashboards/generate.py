"""Grafana dashboards as code: `python dashboards/generate.py` (make dashboards) writes
dashboards/*.json from grafana-foundation-sdk's typed builders (the 11.1 build of the SDK, for
the Grafana that deploy/compose.yml names).

The data source is a variable, so the files import into any Grafana with a Prometheus data
source. Tests keep the committed JSON equal to this script, check that every metric used is one
the collector exposes, and render every panel: its queries on a real Prometheus, its
transformations, field config and colours with Grafana's own @grafana/data
(tests/dashboards/).

Panels that join several queries aggregate each to the same labels first (`sum by`), which
also drops `__name__` and the scrape's `job`/`instance`/`shard`: Grafana's Prometheus backend
keeps them as columns, and rows that differ only there do not join.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import barchart, dashboard, geomap, prometheus, stat, table
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.geomap import TooltipMode
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

HERE = Path(__file__).parent
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
PROVINCE = 'province=~"$province"'
# Grafana's named colours; the page and `edugap map` use the same hues
CLASS_COLOURS = {"good": "green", "moderate": "orange", "bad": "red", "unknown": "gray"}
CLASS_TEXT = {"good": "Good", "moderate": "Moderate", "bad": "Bad", "unknown": "Unknown"}


def query(expr: str, ref: str = "A", legend: str = "", *, table_: bool = False,
          instant: bool = True) -> prometheus.Dataquery:  # fmt: skip
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DS)
    q = q.instant() if instant else q.range()
    if legend:
        q = q.legend_format(legend)
    return q.format(PromQueryFormat.TABLE if table_ else PromQueryFormat.TIME_SERIES)


def transform(kind: str, options: dict[str, Any]) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(id_val=kind, options=options)


def grid(x: int, y: int, w: int, h: int) -> dm.GridPos:
    return dm.GridPos(x=x, y=y, w=w, h=h)


def colour(name: str) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": name})


def class_mappings() -> list[dm.ValueMapping]:
    """The class's value shown in words and coloured: what the Geomap colours markers by."""
    return [
        dm.ValueMap(options={
            c: dm.ValueMappingResult(text=CLASS_TEXT[c], color=CLASS_COLOURS[c], index=i)
            for i, c in enumerate(CLASS_COLOURS)
        })
    ]  # fmt: skip


def stat_panel(title: str, expr: str, pos: dm.GridPos, unit: str = "none") -> stat.Panel:
    return (
        stat.Panel().title(title).datasource(DS).grid_pos(pos).unit(unit)
        .with_target(query(expr))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
        .color_mode(cm.BigValueColorMode.VALUE)
    )  # fmt: skip


def joined(by: str, names: dict[str, str], order: list[str]) -> list[dm.DataTransformerConfig]:
    """One row per `by`: join the queries' tables on it, drop their Time columns, name the
    values (`Value #A` ...) and put the columns in `order` (organize orders by the names the
    fields have before it renames them)."""
    original = {new: old for old, new in names.items()}
    return [
        transform("joinByField", {"byField": by, "mode": "outer"}),
        transform("organize", {
            "excludeByName": {f"Time {i}": True for i in range(1, 8)} | {"Time": True},
            "renameByName": names,
            "indexByName": {original.get(name, name): i for i, name in enumerate(order)},
        }),
    ]  # fmt: skip


def top_schools(pos: dm.GridPos) -> table.Panel:
    """The 50 schools of highest priority, one row each, with their figures.

    Read from the recording rules that keep each province's top 50 (deploy/prometheus/rules):
    two instant queries over at most 1,700 series, whatever the number of schools."""
    top = f"topk(50, province:edugap_school_priority:top50{{{PROVINCE}}})"
    labels = "school_id, name, province, commune, level, students, required_mbps"
    targets = [
        query(f"sum by ({labels}) ({top})", "A", table_=True),
        query(f"sum by (school_id) (province:edugap_school_download_mbps:top50_priority"
              f"{{{PROVINCE}}} and on (school_id) {top})", "B", table_=True),
    ]  # fmt: skip
    names = {"Value #A": "Priority", "Value #B": "Download (Mbps)", "name": "School",
             "province": "Province", "commune": "Commune", "level": "Level",
             "students": "Students", "required_mbps": "Required (Mbps)"}  # fmt: skip
    order = ["Priority", "school_id", "School", "Province", "Commune", "Level", "Students",
             "Required (Mbps)", "Download (Mbps)"]  # fmt: skip
    # the registry's figures come as info labels (strings): shown and sorted as numbers
    numbers = transform("convertFieldType", {"conversions": [
        {"targetField": "students", "destinationType": "number"},
        {"targetField": "required_mbps", "destinationType": "number"}]})  # fmt: skip
    return (
        table.Panel().title("Schools to act on first (highest priority)").datasource(DS)
        .grid_pos(pos).targets(targets)
        .transformations([numbers, *joined("school_id", names, order),
                          transform("sortBy", {"sort": [{"field": "Priority", "desc": True}]})])
    )  # fmt: skip


def provinces_table(pos: dm.GridPos) -> table.Panel:
    """One row per province (recording rules and gauges carry `__name__`: summed away)."""
    values = {
        "A": "edugap_province_bandwidth_gap_mbps",
        "B": "edugap_province_computers_gap",
        "C": "edugap_province_computers_os_out_of_support",
        "D": "edugap:province_connected_good:ratio",
        "E": "edugap:province_monitored:ratio",
        "F": "province:edugap_school_download_mbps:median",
    }
    targets = [query(f"sum by (province) ({m}{{{PROVINCE}}})", ref, table_=True)
               for ref, m in values.items()]  # fmt: skip
    names = {"province": "Province", "Value #A": "Bandwidth missing (Mbps)",
             "Value #B": "Computers missing", "Value #C": "OS out of support",
             "Value #D": "Connected well", "Value #E": "Monitored (live)",
             "Value #F": "Median download (Mbps)"}  # fmt: skip
    percent = [dm.DynamicConfigValue(id_val="unit", value="percentunit")]
    return (
        table.Panel().title("Provinces").datasource(DS).grid_pos(pos).targets(targets)
        .transformations([*joined("province", names, ["Province", *list(names.values())[1:]]),
                          transform("sortBy", {"sort": [{"field": "Province"}]})])
        .override_by_name("Connected well", percent)
        .override_by_name("Monitored (live)", percent)
    )  # fmt: skip


def school_map(pos: dm.GridPos) -> geomap.Panel:
    """The schools of one province (the `map_province` variable) at their coordinates,
    coloured by class through the class field's mappings. One province at a time keeps the
    join small (a few thousand schools, not 60,000); the collector's coverage page draws the
    whole country."""
    one = 'province="$map_province"'
    expr = (f"edugap_school_connectivity{{{one}}} * on (school_id) "
            f"group_left (lat, lon, name, commune) edugap_school_info{{{one}}}")  # fmt: skip
    layer = (
        cb.MapLayerOptions().type("markers").name("Schools")
        .location(cb.FrameGeometrySource().mode(cm.FrameGeometrySourceMode.COORDS)
                  .latitude("lat").longitude("lon"))
        .config({"style": {"size": {"fixed": 4}, "color": {"field": "class", "fixed": "gray"},
                           "opacity": 0.8}, "showLegend": True})
    )  # fmt: skip
    return (
        geomap.Panel().title("Schools by connectivity class in $map_province").datasource(DS)
        .grid_pos(pos)
        .with_target(query(expr, table_=True))
        # labels are strings: the markers need numbers
        .with_transformation(transform("convertFieldType", {"conversions": [
            {"targetField": "lat", "destinationType": "number"},
            {"targetField": "lon", "destinationType": "number"}]}))
        .view(geomap.MapViewConfig().id("coords").lat(16).lon(106).zoom(5))
        .basemap(cb.MapLayerOptions().type("default").name("Basemap"))
        .layers([layer])
        .tooltip(geomap.TooltipOptions().mode(TooltipMode.DETAILS))
        .override_by_name("class", [dm.DynamicConfigValue(id_val="mappings",
                                                          value=class_mappings())])
    )  # fmt: skip


def classes_per_province(pos: dm.GridPos) -> barchart.Panel:
    """Stacked bars per province. groupingToMatrix names its first column
    `province\\connectivity`; it is renamed so that the x field exists."""
    expr = f"sum by (province, connectivity) (edugap_province_schools{{{PROVINCE}}})"
    panel = (
        barchart.Panel().title("Schools per province by connectivity class").datasource(DS)
        .grid_pos(pos).with_target(query(expr, table_=True))
        .transformations([
            transform("groupingToMatrix", {"columnField": "connectivity", "rowField": "province",
                                           "valueField": "Value"}),
            transform("organize", {
                "renameByName": {"province\\connectivity": "Province"},
                "indexByName": {n: i for i, n in
                                enumerate(["province\\connectivity", *CLASS_COLOURS])}}),
        ])
        .x_field("Province").orientation(cm.VizOrientation.HORIZONTAL)
        .stacking(cm.StackingMode.NORMAL)
    )  # fmt: skip
    for name, c in CLASS_COLOURS.items():
        panel = panel.override_by_name(name, [colour(c)])
    return panel


def coverage() -> dashboard.Dashboard:
    """Provincial / national view: who is connected, who is monitored, where devices lack."""
    share = "percentunit"
    panels = [
        stat_panel("Schools", f"sum(edugap_province_schools{{{PROVINCE}}})", grid(0, 0, 4, 4)),
        stat_panel("Connected well (share)",
                   f'sum(edugap_province_schools{{{PROVINCE},connectivity="good"}}) '
                   f"/ sum(edugap_province_schools{{{PROVINCE}}})", grid(4, 0, 5, 4), share),
        stat_panel("Monitored (live share)",
                   f'sum(edugap_province_monitoring_schools{{{PROVINCE},status="live"}}) '
                   f"/ sum(edugap_province_monitoring_schools{{{PROVINCE}}})", grid(9, 0, 5, 4),
                   share),
        stat_panel("Bandwidth missing", f"sum(edugap_province_bandwidth_gap_mbps{{{PROVINCE}}})",
                   grid(14, 0, 5, 4), "Mbits"),
        stat_panel("Computers missing", f"sum(edugap_province_computers_gap{{{PROVINCE}}})",
                   grid(19, 0, 5, 4)),
        school_map(grid(0, 4, 12, 16)),
        classes_per_province(grid(12, 4, 12, 16)),
        ts.Panel().title("Schools by monitoring status").datasource(DS).grid_pos(grid(0, 20, 12, 8))
        .with_target(query(f"sum by (status) (edugap_province_monitoring_schools{{{PROVINCE}}})",
                           legend="{{status}}", instant=False)),
        ts.Panel().title("Schools with each shortfall").datasource(DS).grid_pos(grid(12, 20, 12, 8))
        .with_target(query(f"sum by (kind) (edugap_province_shortfall_schools{{{PROVINCE}}})",
                           legend="{{kind}}", instant=False)),
        top_schools(grid(0, 28, 24, 12)),
        provinces_table(grid(0, 40, 24, 12)),
    ]  # fmt: skip
    province = (
        dashboard.QueryVariable("province").label("Province").datasource(DS)
        .query({"query": "label_values(edugap_province_schools, province)", "refId": "province"})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True).include_all(True).all_value(".*")
    )  # fmt: skip
    map_province = (
        dashboard.QueryVariable("map_province").label("Map: province").datasource(DS)
        .query({"query": "label_values(edugap_province_schools, province)",
                "refId": "map_province"})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
    )  # fmt: skip
    return _dashboard("edugap-coverage", "edugap: school coverage", panels,
                      [province, map_province])  # fmt: skip


def collector() -> dashboard.Dashboard:
    """Operators' view of the collector itself."""
    panels = [
        stat_panel("Ingest connected", "min(edugap_collector_ingest_connected)", grid(0, 0, 4, 4)),
        stat_panel("Snapshot age", "max(edugap_collector_snapshot_age_seconds)",
                   grid(4, 0, 5, 4), "s"),
        stat_panel("Snapshot duration", "max(edugap_collector_snapshot_duration_seconds)",
                   grid(9, 0, 5, 4), "s"),
        stat_panel("Unregistered schools reporting", "max(edugap_collector_unregistered_schools)",
                   grid(14, 0, 5, 4)),
        stat_panel("Schools in snapshot", "max(edugap_collector_snapshot_schools)",
                   grid(19, 0, 5, 4)),
        ts.Panel().title("Messages per second by result").datasource(DS)
        .grid_pos(grid(0, 4, 12, 8)).unit("reqps")
        .with_target(query("sum by (result) (rate(edugap_collector_messages_total[5m]))",
                           legend="{{result}}", instant=False)),
        ts.Panel().title("Ingest lag (receive time - measured time)").datasource(DS)
        .grid_pos(grid(12, 4, 12, 8)).unit("s")
        .with_target(query("max(edugap_collector_ingest_lag_seconds)", legend="lag",
                           instant=False)),
        ts.Panel().title("Errors").datasource(DS).grid_pos(grid(0, 12, 12, 8)).targets([
            query("sum(increase(edugap_collector_store_errors_total[5m]))", "A",
                  "store errors", instant=False),
            query("sum(increase(edugap_collector_snapshot_errors_total[5m]))", "B",
                  "snapshot errors", instant=False),
            query("sum(increase(edugap_collector_metric_errors_total[5m]))", "C",
                  "metric errors", instant=False),
            query("sum(increase(edugap_collector_clamped_total[5m]))", "D",
                  "clamped timestamps", instant=False)]),
        ts.Panel().title("Batches written per second").datasource(DS).grid_pos(grid(12, 12, 12, 8))
        .with_target(query("sum(rate(edugap_collector_batches_total[5m]))", legend="batches",
                           instant=False)),
        ts.Panel().title("Metrics render time and scrape time per shard").datasource(DS)
        .grid_pos(grid(0, 20, 24, 8)).unit("s").targets([
            query("max(edugap_collector_render_duration_seconds)", "A", "render", instant=False),
            query('max by (instance, shard) (scrape_duration_seconds{job=~"edugap-.*"})', "B",
                  "scrape {{instance}} {{shard}}", instant=False)]),
    ]  # fmt: skip
    return _dashboard("edugap-collector", "edugap: collector", panels, [])


def _dashboard(uid: str, title: str, panels: list[Any],
               variables: list[Any]) -> dashboard.Dashboard:  # fmt: skip
    board = (
        dashboard.Dashboard(title).uid(uid).tags(["edugap"]).timezone("browser").editable()
        .refresh("5m").time("now-7d", "now")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source")
                       .type("prometheus"))
    )  # fmt: skip
    for v in variables:
        board = board.with_variable(v)
    for i, p in enumerate(panels, 1):
        board = board.with_panel(p.id(i))
    return board


DASHBOARDS = {"edugap-coverage.json": coverage, "edugap-collector.json": collector}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        name: json.dumps(json.loads(json.dumps(build().build(), cls=JSONEncoder)), indent=2,
                         ensure_ascii=False, sort_keys=True) + "\n"
        for name, build in DASHBOARDS.items()
    }  # fmt: skip


def main(out: Path = HERE) -> int:
    for name, text in render().items():
        (out / name).write_text(text, encoding="utf-8")
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE))
