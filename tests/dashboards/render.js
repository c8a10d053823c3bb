// Render a dashboard's panels the way Grafana does, with Grafana's own @grafana/data (the
// version deploy/compose.yml names), from the results of their queries on a real Prometheus.
//
//   node render.js DASHBOARD.json RESULTS.json   (NODE_PATH: where @grafana/data is installed)
//
// RESULTS.json: {"<panel id>": {"<refId>": <the `data` of Prometheus's /api/v1/query or
// /api/v1/query_range answer>}}. Prints, per panel, what its visualization receives after the
// transformations and the field config: frames, their fields (name, display name, type,
// values) and, for fields with value mappings or fixed colours, each value's colour.
//
// Two steps are not in @grafana/data and are mirrored here, small and as Grafana 11.1 has them:
// - the Prometheus data source's frames: one frame per series, [Time, Value] with the series'
//   labels (with __name__, as the backend sends them) on Value and legendFormat as its
//   displayNameFromDS; table-format queries then go through transformDFToTable
//   (packages/grafana-prometheus/src/result_transformer.ts): one table per refId, a column per
//   label, and "Value" or, with several table queries in the panel, "Value #<refId>".
// - the field-config registry: Grafana registers its standard options in the app; here the
//   ones these dashboards use, each a plain property (as Grafana's are).
"use strict";

// what @grafana/data reads from a browser: window.grafanaBootData at load, navigator.language
// for date formats (Node 20 has no navigator)
globalThis.window = globalThis;
if (!globalThis.navigator) globalThis.navigator = { language: "en-US", languages: ["en-US"] };
const fs = require("fs");
const gd = require("@grafana/data");
const { lastValueFrom } = require("rxjs");

const { FieldType, standardTransformers, standardTransformersRegistry } = gd;
// as Grafana's app registers them (one entry per id: seriesToColumns is joinByField again)
const transformers = new Map(Object.values(standardTransformers).map(t => [t.id, t]));
standardTransformersRegistry.setInit(() => [...transformers.values()].map(t => ({
  id: t.id, aliasIds: t.aliasIds, name: t.name, description: t.description, transformation: t,
})));

const plain = id => ({ id, path: id, name: id, process: v => v, shouldApply: () => true, override: () => null, editor: () => null });
const fieldConfigRegistry = new gd.FieldConfigOptionsRegistry(() =>
  ["unit", "decimals", "min", "max", "displayName", "noValue", "mappings", "color", "thresholds", "links"].map(plain));
const theme = gd.createTheme();

function seriesFrames(refId, data, target) {
  return data.result.map(series => {
    const samples = data.resultType === "vector" ? [series.value] : series.values;
    const legend = target.legendFormat
      ? target.legendFormat.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, l) => series.metric[l] ?? "") : undefined;
    return {
      refId, length: samples.length,
      fields: [
        { name: "Time", type: FieldType.time, config: {}, values: samples.map(s => s[0] * 1000) },
        { name: "Value", type: FieldType.number, labels: { ...series.metric },
          config: legend ? { displayNameFromDS: legend } : {}, values: samples.map(s => Number(s[1])) },
      ],
    };
  });
}

function transformDFToTable(frames) {
  const byRef = new Map();
  for (const f of frames) { if (!byRef.has(f.refId)) byRef.set(f.refId, []); byRef.get(f.refId).push(f); }
  return [...byRef.entries()].map(([refId, dfs]) => {
    const valueName = byRef.size > 1 ? `Value #${refId}` : "Value";
    const time = { name: "Time", type: FieldType.time, config: {}, values: [] };
    const value = { name: valueName, type: FieldType.number, config: {}, values: [] };
    const labels = [];
    for (const df of dfs) {
      for (const l of Object.keys(df.fields[1].labels || {}).sort()) {
        if (!labels.some(f => f.name === l)) {
          labels.push({ name: l, type: l === "le" ? FieldType.number : FieldType.string, config: { filterable: true }, values: [] });
        }
      }
    }
    for (const df of dfs) {
      df.fields[0].values.forEach(v => time.values.push(v));
      df.fields[1].values.forEach(v => {
        value.values.push(v);
        const own = df.fields[1].labels || {};
        labels.forEach(f => f.values.push(own[f.name] ?? ""));
      });
    }
    return { refId, fields: [time, ...labels, value], length: time.values.length };
  });
}

async function renderPanel(panel, results) {
  let tables = [], series = [];
  for (const target of panel.targets || []) {
    const data = results[target.refId];
    if (!data) continue;
    const frames = seriesFrames(target.refId, data, target);
    if (target.format === "table") tables.push(...frames); else series.push(...frames);
  }
  let frames = [...transformDFToTable(tables), ...series];
  if ((panel.transformations || []).length) {
    frames = await lastValueFrom(gd.transformDataFrame(panel.transformations, frames));
  }
  frames = gd.applyFieldOverrides({
    data: frames, fieldConfig: panel.fieldConfig || { defaults: {}, overrides: [] },
    fieldConfigRegistry, replaceVariables: s => s, theme, timeZone: "utc",
  });
  return frames.map(frame => ({
    name: frame.name, length: frame.length,
    fields: frame.fields.map(f => {
      const out = { name: f.name, displayName: gd.getFieldDisplayName(f, frame, frames), type: f.type,
                    values: Array.from(f.values) };
      // the colour a value gets: what Geomap markers, bars and stat values are painted with
      if ((f.config.mappings && f.config.mappings.length) || (f.config.color && f.config.color.mode === "fixed")) {
        out.colors = Array.from(f.values).map(v => f.display(v).color);
        out.texts = Array.from(f.values).map(v => f.display(v).text);
      }
      return out;
    }),
  }));
}

async function main() {
  const [dashboardPath, resultsPath] = process.argv.slice(2);
  const dashboard = JSON.parse(fs.readFileSync(dashboardPath, "utf8"));
  const results = JSON.parse(fs.readFileSync(resultsPath, "utf8"));
  const out = { colors: Object.fromEntries(["green", "orange", "red", "gray"].map(c => [c, theme.visualization.getColorByName(c)])), panels: {} };
  for (const panel of dashboard.panels) {
    if (!results[panel.id]) continue;
    out.panels[panel.id] = { title: panel.title, type: panel.type, frames: await renderPanel(panel, results[panel.id]) };
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch(e => { console.error(e.stack || e); process.exit(1); });
