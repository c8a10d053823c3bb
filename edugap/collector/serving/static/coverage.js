// The coverage page: loads the map data once, then filters, tabulates and draws in the
// browser; the filters live in the URL so a view can be shared. Every value from the API is
// put into the page as text (textContent), never as markup.
"use strict";

const FILTERS = ["province", "commune", "level", "connectivity", "monitoring", "kind"];
const FORMATS = ["csv", "xlsx", "geojson", "json"];
const PREFIXES = ["thanh pho ", "dac khu ", "phuong ", "tinh ", "tp. ", "tp.", "tp ", "xa "];
const $ = id => document.getElementById(id);

const state = {
  lang: "vi", filters: {}, data: null, outlines: null, rows: [], sortKey: "area", sortDesc: false,
};
const t = (path, vars) => translate(state.lang, path, vars);

// --- names, matched like the API matches them (case, accents, NFC/NFD, prefixes) -------------
function fold(s) {
  return s.replace(/Đ/g, "D").replace(/đ/g, "d").normalize("NFD").replace(/[\u0300-\u036f]/g, "")
    .replace(/[\s_]+/g, " ").trim().toLowerCase();
}
function placeKey(s) {
  const f = fold(s);
  for (const p of PREFIXES) if (f.startsWith(p) && f.length > p.length) return f.slice(p.length).trim();
  return f;
}
function matchName(value, names) {
  if (!value) return "";
  return names.find(n => n === value) || names.find(n => placeKey(n) === placeKey(value)) || value;
}

// --- API ---------------------------------------------------------------------------------------
function token() { return sessionStorage.getItem("edugap-token") || ""; }
async function api(path) {
  const headers = token() ? { Authorization: "Bearer " + token() } : {};
  const response = await fetch(path, { headers });
  if (response.status === 401) throw Object.assign(new Error("token"), { auth: true });
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

// --- URL -------------------------------------------------------------------------------------
function readUrl() {
  const q = new URLSearchParams(location.search);
  state.lang = q.get("lang") === "en" ? "en" : "vi";
  state.filters = Object.fromEntries(FILTERS.map(k => [k, (q.get(k) || "").trim()]));
}
function query(withLang) {
  const q = new URLSearchParams();
  for (const k of FILTERS) if (state.filters[k]) q.set(k, state.filters[k]);
  if (withLang && state.lang !== "vi") q.set("lang", state.lang);
  return q.toString();
}
function writeUrl() {
  const q = query(true);
  history.pushState(null, "", q ? "?" + q : location.pathname);
}

// --- the data --------------------------------------------------------------------------------
function prepare(doc) {
  const s = doc.schools, n = s.school_id.length;
  const provinces = [...new Set(doc.places.map(p => p[0]))].sort(compare);
  return { doc, n, provinces,
           province: s.place.map(i => doc.places[i][0]), commune: s.place.map(i => doc.places[i][1]),
           klass: s.connectivity.map(i => doc.classes[i]),
           status: s.monitoring.map(i => doc.monitoring_states[i]),
           level: s.level.map(i => doc.levels[i]) };
}

function normaliseFilters() {
  const d = state.data, f = state.filters;
  f.province = matchName(f.province, d.provinces);
  const communes = [...new Set(d.commune.filter((_, i) => d.province[i] === f.province))];
  f.commune = f.province ? matchName(f.commune, communes) : "";
  f.level = matchName(f.level, d.doc.levels);
}

function selected() {
  const d = state.data, f = state.filters, kinds = d.doc.shortfall_kinds;
  const bit = f.kind && f.kind !== "any" ? 1 << kinds.indexOf(f.kind) : 0;
  const out = [];
  for (let i = 0; i < d.n; i++) {
    if (f.province && d.province[i] !== f.province) continue;
    if (f.commune && d.commune[i] !== f.commune) continue;
    if (f.level && d.level[i] !== f.level) continue;
    if (f.connectivity && d.klass[i] !== f.connectivity) continue;
    if (f.monitoring && d.status[i] !== f.monitoring) continue;
    const mask = d.doc.schools.shortfalls[i];
    if (f.kind === "any" ? !mask : bit && !(mask & bit)) continue;
    out.push(i);
  }
  return out;
}

function tabulate(chosen) {
  const d = state.data, s = d.doc.schools, byCommune = !!state.filters.province;
  const rows = new Map(), total = emptyRow(t("total"), null);
  for (const i of chosen) {
    const key = byCommune ? d.commune[i] : d.province[i];
    if (!rows.has(key)) rows.set(key, emptyRow(key, key));
    for (const r of [rows.get(key), total]) {
      r.schools++; r[d.klass[i]]++; if (d.status[i] === "live") r.live++;
      r.gap += s.bandwidth_gap_mbps[i]; r.computers_gap += s.computers_gap[i];
    }
  }
  return { rows: [...rows.values()], total };
}
function emptyRow(area, key) {
  return { area, key, schools: 0, good: 0, moderate: 0, bad: 0, unknown: 0, live: 0, gap: 0,
           computers_gap: 0 };
}

// --- rendering -------------------------------------------------------------------------------
function el(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}
const formats = new Map();  // Intl objects are slow to make: one per language and use
function intl(key, make) {
  if (!formats.has(key)) formats.set(key, make());
  return formats.get(key);
}
const number = (v, digits = 0) => intl(`n/${state.lang}/${digits}`,
  () => new Intl.NumberFormat(state.lang, { maximumFractionDigits: digits })).format(v);
const compare = (a, b) => intl("collator", () => new Intl.Collator("vi")).compare(a, b);
const percent = (n, of) => (of ? number((100 * n) / of, 1) + " %" : "–");
function localTime(iso) {
  if (!iso) return t("never");
  const zone = (state.data && state.data.doc.time_zone) || undefined;
  return intl(`d/${state.lang}/${zone}`, () => new Intl.DateTimeFormat(
    state.lang === "vi" ? "vi-VN" : "en-GB", { timeZone: zone, dateStyle: "medium", timeStyle: "short" },
  )).format(new Date(iso));
}

function renderStatic() {
  document.documentElement.lang = state.lang;
  document.title = t("title");
  document.querySelectorAll("[data-i18n]").forEach(e => { e.textContent = t(e.dataset.i18n); });
  document.querySelectorAll("[data-i18n-title]").forEach(e => { e.title = t(e.dataset.i18nTitle); });
  document.querySelectorAll("#lang button").forEach(b => {
    b.setAttribute("aria-pressed", String(b.dataset.lang === state.lang));
  });
}

function fillSelect(name, values, label) {
  const select = $("f-" + name), current = state.filters[name];
  select.replaceChildren(el("option", t("all"), { value: "" }));
  for (const v of values) {
    const option = el("option", label ? label(v) : v, { value: v });
    if (v === current) option.selected = true;
    select.appendChild(option);
  }
  select.disabled = values.length === 0;
}

function renderFilters() {
  const d = state.data, f = state.filters;
  fillSelect("province", d.provinces.filter(p => p));
  const communes = [...new Set(d.commune.filter((c, i) => c && d.province[i] === f.province))]
    .sort(compare);
  fillSelect("commune", f.province ? communes : []);
  fillSelect("level", d.doc.levels.filter(l => l));
  fillSelect("connectivity", d.doc.classes, v => t("class." + v));
  fillSelect("monitoring", d.doc.monitoring_states, v => t("status." + v));
  fillSelect("kind", [...d.doc.shortfall_kinds, "any"], v => t("kind." + v));
}

function renderLegend(total) {
  const legend = $("legend");
  legend.replaceChildren();
  for (const c of state.data.doc.classes) {
    const item = el("span", null, { class: "legend-item", "data-class": c });
    item.append(el("i", null, { style: `background:${CLASS_COLOURS[c]}` }),
                el("span", t("class." + c)), el("b", number(total[c])));
    legend.appendChild(item);
  }
  legend.append(el("span", t("legendLive"), { class: "legend-note" }),
                el("span", t("legendNotLive"), { class: "legend-note" }));
}

function renderCrumbs() {
  const f = state.filters, crumbs = $("crumbs");
  crumbs.replaceChildren();
  const step = (label, filters) => {
    const a = el("a", label, { href: "#" });
    a.addEventListener("click", ev => { ev.preventDefault(); setFilters(filters); });
    crumbs.appendChild(a);
  };
  step(t("country"), { province: "", commune: "" });
  if (f.province) { crumbs.append(" › "); step(f.province, { commune: "" }); }
  if (f.commune) { crumbs.append(" › "); crumbs.appendChild(el("span", f.commune)); }
}

function renderTable() {
  const body = $("area-rows"), foot = $("area-total");
  const { rows, total } = state.table;
  const k = state.sortKey;
  rows.sort((a, b) => {
    const order = k === "area" ? compare(String(a.area), String(b.area)) : a[k] - b[k];
    return state.sortDesc ? -order : order;
  });
  const byCommune = !!state.filters.province;
  const cells = r => [
    r.key === null ? r.area : r.area || t(byCommune ? "noCommune" : "unregistered"),
    number(r.schools),
    ...["good", "moderate", "bad", "unknown", "live"].map(c => `${number(r[c])} (${percent(r[c], r.schools)})`),
    number(r.gap, 1), number(r.computers_gap),
  ];
  body.replaceChildren(...rows.map(r => {
    const tr = el("tr", null, { "data-area": r.key });
    cells(r).forEach((v, i) => tr.appendChild(el(i === 0 ? "th" : "td", v, i === 0 ? { scope: "row" } : {})));
    if (r.key && !state.filters.commune) {
      tr.classList.add("drill");
      tr.addEventListener("click", () => setFilters(byCommune ? { commune: r.key } : { province: r.key }));
    }
    return tr;
  }));
  const tr = el("tr");
  cells(total).forEach((v, i) => tr.appendChild(el(i === 0 ? "th" : "td", v)));
  foot.replaceChildren(tr);
}

function renderDownloads() {
  const box = $("downloads"), q = query(false);
  box.replaceChildren(el("span", t("download")));
  for (const fmt of FORMATS) {
    const href = `api/v1/shortages?format=${fmt}${q ? "&" + q : ""}`;
    const a = el("a", fmt.toUpperCase(), { href, download: `shortages.${fmt}`, "data-format": fmt });
    a.addEventListener("click", ev => {
      if (!token()) return;  // an ordinary download; with a token the header must be sent
      ev.preventDefault();
      downloadWithToken(href, `shortages.${fmt}`);
    });
    box.append(" ", a);
  }
}

async function downloadWithToken(href, name) {
  const response = await fetch(href, { headers: { Authorization: "Bearer " + token() } });
  const url = URL.createObjectURL(await response.blob());
  const a = el("a", null, { href: url, download: name });
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function update({ refit = false } = {}) {
  const d = state.data, chosen = selected(), s = d.doc.schools;
  state.table = tabulate(chosen);
  const lat = chosen.map(i => s.lat[i]), lon = chosen.map(i => s.lon[i]);
  state.index = chosen;
  map.setPoints({ lat, lon, klass: chosen.map(i => d.klass[i]), live: chosen.map(i => d.status[i] === "live") });
  map.selected = { province: state.filters.province, commune: state.filters.commune };
  if (refit) map.fit(focusBox(lat, lon));
  map.draw();
  const shown = lat.filter(v => v !== null).length;
  $("status").textContent = t("snapshot", { time: localTime(d.doc.generated_at) }) + " · " +
    t("onMap", { shown: number(shown), total: number(chosen.length) });
  renderFilters(); renderLegend(state.table.total); renderCrumbs(); renderTable(); renderDownloads();
}

function focusBox(lat, lon) {
  const f = state.filters, areas = state.outlines && state.outlines.areas;
  if (f.province && areas && areas.features.length) {
    const picked = areas.features.filter(a => a.properties.province === f.province &&
      (f.commune ? a.properties.commune === f.commune : !a.properties.commune));
    if (picked.length) return bbox(picked);
  }
  return (f.province || f.commune) ? pointsBox(lat, lon) : null;
}

function setFilters(changes) {
  const placeChanged = "province" in changes || "commune" in changes;
  Object.assign(state.filters, changes);
  if ("province" in changes && !("commune" in changes)) state.filters.commune = "";
  $("details").hidden = true;
  writeUrl();
  update({ refit: placeChanged });
}

// --- a school's details ----------------------------------------------------------------------
async function showSchool(i) {
  const id = state.data.doc.schools.school_id[state.index[i]];
  const box = $("details");
  let s;
  try { s = await api("api/v1/schools/" + encodeURIComponent(id)); }
  catch (e) { box.replaceChildren(el("p", t("loadFailed") + e.message)); box.hidden = false; return; }
  const value = v => (v === null || v === undefined ? "–" : typeof v === "number" ? number(v, 1) : v);
  const fields = [
    ["school_id", s.school_id], ["province", s.province], ["commune", s.commune],
    ["level", s.level], ["students", value(s.students)],
    ["connectivity", t("class." + s.connectivity)], ["monitoring", t("status." + s.monitoring)],
    ["download_mbps", value(s.download_mbps)], ["upload_mbps", value(s.upload_mbps)],
    ["required_mbps", value(s.required_mbps)], ["latency_ms", value(s.latency_ms)],
    ["uptime_pct", value(s.uptime_pct)], ["devices_reporting", value(s.devices_reporting)],
    ["computers", `${value(s.computers_usable)} / ${value(s.computers_required)}`],
    ["os_out_of_support", value(s.os_out_of_support)],
    ["shortfalls", s.shortfalls.length ? s.shortfalls.map(k => t("kind." + k)).join(", ") : t("none")],
    ["last_report", localTime(s.last_report)],
  ];
  const close = el("button", t("close"), { type: "button", class: "close" });
  close.addEventListener("click", () => { box.hidden = true; });
  const dl = el("dl");
  for (const [key, v] of fields) dl.append(el("dt", t("detail." + key)), el("dd", v, { "data-field": key }));
  box.replaceChildren(close, el("h2", s.name), dl);
  box.hidden = false;
}

// --- start -----------------------------------------------------------------------------------
const map = new CoverageMap($("map"), {
  onSchool: showSchool,
  onArea: area => setFilters(area.commune ? { province: area.province, commune: area.commune }
                                          : { province: area.province }),
});

async function load() {
  const status = $("status");
  try {
    const [doc, country, areas] = await Promise.all(
      [api("api/v1/map"), api("outlines/country.json"), api("outlines/areas.json")]);
    performance.mark("edugap:data");
    state.data = prepare(doc);
    state.outlines = { country, areas };
    map.setOutlines(country, areas);
    $("token-form").hidden = true;
    $("outline-note").hidden = !!(country.features && country.features.length);
    normaliseFilters();
    update({ refit: true });
    performance.mark("edugap:drawn");
  } catch (e) {
    if (e.auth) { $("token-form").hidden = false; status.textContent = t("tokenNeeded"); }
    else status.textContent = t("loadFailed") + e.message;
  }
}

$("token-form").addEventListener("submit", ev => {
  ev.preventDefault();
  sessionStorage.setItem("edugap-token", $("token").value.trim());
  load();
});
for (const name of FILTERS) {
  $("f-" + name).addEventListener("change", ev => setFilters({ [name]: ev.target.value }));
}
$("reset").addEventListener("click", () => setFilters(Object.fromEntries(FILTERS.map(k => [k, ""]))));
document.querySelectorAll("#lang button").forEach(b => b.addEventListener("click", () => {
  state.lang = b.dataset.lang;
  writeUrl(); renderStatic();
  if (state.data) update();
}));
document.querySelectorAll("#areas thead th").forEach(th => th.addEventListener("click", () => {
  const key = th.dataset.key;
  state.sortDesc = key === state.sortKey ? !state.sortDesc : key !== "area";
  state.sortKey = key;
  renderTable();
}));
$("zoom-in").addEventListener("click", () => map.zoom(1.5));
$("zoom-out").addEventListener("click", () => map.zoom(1 / 1.5));
$("zoom-fit").addEventListener("click", () => { map.fit(); map.draw(); });
window.addEventListener("popstate", () => { readUrl(); renderStatic(); if (state.data) { normaliseFilters(); update({ refit: true }); } });
window.addEventListener("resize", () => { if (state.data) map.draw(); });
window.edugapMap = map;  // for tests and the curious: map.project(lat, lon) -> [x, y]

readUrl();
renderStatic();
$("status").textContent = t("loading");
load();
