// The coverage map: a small hand-written canvas renderer (no library, nothing to build).
// 60,000 schools as SVG circles were 180,000 DOM nodes and seconds to paint; on one canvas they
// are a few batched paths. It draws GeoJSON outlines (the country, the operator's provinces or
// communes) and school points, zooms on the wheel or the buttons, pans on drag, and tells a
// click on a school from a click on an area. Projection: equirectangular with longitude shrunk
// by cos(latitude), which keeps Vietnam's shape at this size.
"use strict";

const CLASS_COLOURS = { good: "#1a9850", moderate: "#f4a300", bad: "#d73027", unknown: "#8c8c8c" };
const DRAW_ORDER = ["good", "moderate", "unknown", "bad"];  // the worst drawn last, on top
// the mainland with the Hoàng Sa and (most of) the Trường Sa island groups
const VIETNAM = { lonMin: 102.1, lonMax: 115.5, latMin: 7.4, latMax: 23.4 };

class CoverageMap {
  constructor(canvas, { onSchool, onArea } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.onSchool = onSchool || (() => {});
    this.onArea = onArea || (() => {});
    this.country = null;      // GeoJSON FeatureCollection
    this.areas = null;        // GeoJSON FeatureCollection, properties.province / .commune
    this.points = null;       // {lon: Float64Array, lat: Float64Array, klass: [], live: []}
    this.selected = null;     // {province, commune} to highlight
    this.view = null;         // {lon, lat, scale (px per degree of latitude)}
    this.drawn = {};
    this._listen();
  }

  // --- state ---------------------------------------------------------------------------
  setOutlines(country, areas) {
    this.country = country && country.features && country.features.length ? country : null;
    this.areas = areas && areas.features && areas.features.length ? areas : null;
    this.areaBoxes = (this.areas ? this.areas.features : []).map(f => bbox([f]));
  }

  // lon, lat: arrays (null when a school has no coordinates); klass: class name per school;
  // live: true when the school reports (drawn filled), false (drawn as a ring).
  setPoints(points) { this.points = points; }

  fit(box) {
    const b = box || VIETNAM;
    const { width, height } = this._size();
    const k = Math.cos(((b.latMin + b.latMax) / 2) * Math.PI / 180);
    const spanLon = Math.max(b.lonMax - b.lonMin, 0.05) * k, spanLat = Math.max(b.latMax - b.latMin, 0.05);
    this.view = { lon: (b.lonMin + b.lonMax) / 2, lat: (b.latMin + b.latMax) / 2, k,
                  scale: 0.92 * Math.min(width / spanLon, height / spanLat) };
  }

  // the canvas's size, read once per draw: reading it per school forces a layout each time
  _dims() { return this.dims || (this.dims = this._size()); }

  project(lat, lon) {
    const v = this.view, { width, height } = this._dims();
    return [width / 2 + (lon - v.lon) * v.k * v.scale, height / 2 - (lat - v.lat) * v.scale];
  }

  unproject(x, y) {
    const v = this.view, { width, height } = this._dims();
    return [v.lat - (y - height / 2) / v.scale, v.lon + (x - width / 2) / (v.k * v.scale)];
  }

  zoom(factor, x, y) {
    const { width, height } = this._size();
    const [lat, lon] = this.unproject(x ?? width / 2, y ?? height / 2);
    this.view.scale = Math.min(Math.max(this.view.scale * factor, 20), 200000);
    const [nx, ny] = this.project(lat, lon);  // keep the point under the cursor in place
    this.view.lon += ((nx - (x ?? width / 2)) / (this.view.k * this.view.scale));
    this.view.lat -= ((ny - (y ?? height / 2)) / this.view.scale);
    this.draw();
  }

  // --- drawing ---------------------------------------------------------------------------
  _size() {
    return { width: this.canvas.clientWidth || 600, height: this.canvas.clientHeight || 700 };
  }

  draw() {
    this.dims = this._size();
    const { width, height } = this.dims, ratio = window.devicePixelRatio || 1;
    if (this.canvas.width !== Math.round(width * ratio)) this.canvas.width = Math.round(width * ratio);
    if (this.canvas.height !== Math.round(height * ratio)) this.canvas.height = Math.round(height * ratio);
    if (!this.view) this.fit();
    const ctx = this.ctx;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = "#dcebf5";  // sea
    ctx.fillRect(0, 0, width, height);
    if (this.country) {
      this._features(this.country.features, "#f7f5ef", "#6d7f8c", 1.2);
      this._labels(this.country.features.slice(1));  // the island groups, named
    }
    if (this.areas) {
      this._features(this.areas.features, null, "#9aa7b0", 0.6);
      const picked = this.areas.features.filter(f => this._isSelected(f.properties));
      if (picked.length) this._features(picked, "rgba(40, 90, 160, 0.08)", "#285aa0", 2);
    }
    this._points();
    this.canvas.dataset.drawn = JSON.stringify(this.drawn);
  }

  _isSelected(p) {
    const s = this.selected;
    if (!s || !s.province || p.province !== s.province) return false;
    return s.commune ? p.commune === s.commune : !p.commune;
  }

  _features(features, fill, stroke, lineWidth) {
    const ctx = this.ctx;
    ctx.beginPath();
    for (const f of features) {
      const g = f.geometry, polygons = g.type === "Polygon" ? [g.coordinates] : g.coordinates;
      for (const polygon of polygons) {
        for (const ring of polygon) {
          ring.forEach(([lon, lat], i) => {
            const [x, y] = this.project(lat, lon);
            if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
          });
          ctx.closePath();
        }
      }
    }
    if (fill) { ctx.fillStyle = fill; ctx.fill("evenodd"); }
    ctx.strokeStyle = stroke; ctx.lineWidth = lineWidth; ctx.stroke();
  }

  _labels(features) {
    const ctx = this.ctx;
    ctx.font = "italic 11px system-ui, sans-serif";
    ctx.fillStyle = "#4a5a66";
    ctx.textAlign = "center";
    for (const f of features) {  // centred under the group
      const b = bbox([f]), [x, y] = this.project(b.latMin, (b.lonMin + b.lonMax) / 2);
      const half = ctx.measureText(f.properties.name).width / 2 + 4;
      ctx.fillText(f.properties.name, Math.min(Math.max(x, half), this._size().width - half), y + 14);
    }
    ctx.textAlign = "start";
  }

  radius() { return Math.min(Math.max(this.view.scale / 40, 2), 6); }

  // Schools are stamped straight into the canvas's pixels: a disc (reporting) or a ring (not)
  // per school, in its class's colour. Without a GPU, a path of 60,000 arcs takes a few hundred
  // milliseconds to fill; writing the pixels takes a few.
  _points() {
    const p = this.points, ctx = this.ctx, r = this.radius(), { width, height } = this._dims();
    const ratio = window.devicePixelRatio || 1;
    this.drawn = Object.fromEntries(DRAW_ORDER.map(c => [c, 0]));
    if (!p) return;
    const n = p.lat.length, xs = new Float32Array(n), ys = new Float32Array(n);
    const groups = Object.fromEntries(DRAW_ORDER.map(c => [c, [[], []]]));  // [reporting, not]
    const v = this.view, cx = width / 2, cy = height / 2, kx = v.k * v.scale;  // project(), inlined
    for (let i = 0; i < n; i++) {
      if (p.lat[i] === null || p.lon[i] === null) { xs[i] = NaN; continue; }
      xs[i] = cx + (p.lon[i] - v.lon) * kx;
      ys[i] = cy - (p.lat[i] - v.lat) * v.scale;
      const g = groups[p.klass[i]];
      if (!g) continue;
      this.drawn[p.klass[i]]++;
      if (xs[i] < -r || ys[i] < -r || xs[i] > width + r || ys[i] > height + r) continue;
      g[p.live[i] ? 0 : 1].push(i);
    }
    this._xs = xs; this._ys = ys;
    const W = this.canvas.width, H = this.canvas.height;
    const image = ctx.getImageData(0, 0, W, H), pixels = new Uint32Array(image.data.buffer);
    const R = r * ratio, edge = Math.max(1, R / 2.5), disc = [], ring = [], hole = [];
    for (let dy = -Math.ceil(R); dy <= Math.ceil(R); dy++) {
      for (let dx = -Math.ceil(R); dx <= Math.ceil(R); dx++) {
        const d = Math.sqrt(dx * dx + dy * dy);
        if (d > R) continue;
        disc.push(dx, dy);
        (d > R - edge ? ring : hole).push(dx, dy);
      }
    }
    const white = rgba("#ffffff");
    const stamp = (offsets, colour, i) => {
      const cx = Math.floor(xs[i] * ratio), cy = Math.floor(ys[i] * ratio);
      for (let k = 0; k < offsets.length; k += 2) {
        const x = cx + offsets[k], y = cy + offsets[k + 1];
        if (x >= 0 && y >= 0 && x < W && y < H) pixels[y * W + x] = colour;
      }
    };
    for (const klass of DRAW_ORDER) {
      const colour = rgba(CLASS_COLOURS[klass]), [live, silent] = groups[klass];
      for (const i of live) stamp(disc, colour, i);
      for (const i of silent) { stamp(hole, white, i); stamp(ring, colour, i); }
    }
    ctx.putImageData(image, 0, 0);
  }

  // --- interaction -----------------------------------------------------------------------
  schoolAt(x, y) {
    if (!this._xs) return -1;
    let best = -1, bestD = (this.radius() + 4) ** 2;
    for (let i = 0; i < this._xs.length; i++) {
      const d = (this._xs[i] - x) ** 2 + (this._ys[i] - y) ** 2;
      if (d <= bestD) { best = i; bestD = d; }
    }
    return best;
  }

  areaAt(x, y) {
    if (!this.areas) return null;
    const [lat, lon] = this.unproject(x, y);
    let found = null;
    this.areas.features.forEach((f, i) => {
      const b = this.areaBoxes[i];
      if (lon < b.lonMin || lon > b.lonMax || lat < b.latMin || lat > b.latMax) return;
      // a commune outline wins over its province's
      if (contains(f.geometry, lon, lat) && (!found || f.properties.commune)) found = f.properties;
    });
    return found;
  }

  _listen() {
    const c = this.canvas;
    let drag = null;
    c.addEventListener("wheel", ev => {
      ev.preventDefault();
      this.zoom(ev.deltaY < 0 ? 1.25 : 0.8, ev.offsetX, ev.offsetY);
    }, { passive: false });
    c.addEventListener("pointerdown", ev => {
      drag = { x: ev.offsetX, y: ev.offsetY, lon: this.view.lon, lat: this.view.lat, moved: false };
      c.setPointerCapture(ev.pointerId);
    });
    c.addEventListener("pointermove", ev => {
      if (!drag) return;
      const dx = ev.offsetX - drag.x, dy = ev.offsetY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      if (!drag.moved) return;
      this.view.lon = drag.lon - dx / (this.view.k * this.view.scale);
      this.view.lat = drag.lat + dy / this.view.scale;
      this.draw();
    });
    c.addEventListener("pointerup", ev => {
      const wasDrag = drag && drag.moved;
      drag = null;
      if (wasDrag) return;
      const i = this.schoolAt(ev.offsetX, ev.offsetY);
      if (i >= 0) { this.onSchool(i); return; }
      const area = this.areaAt(ev.offsetX, ev.offsetY);
      if (area) this.onArea(area);
    });
  }
}

// "#rrggbb" as one opaque pixel of a little-endian Uint32Array over ImageData (RGBA bytes)
function rgba(hex) {
  const v = parseInt(hex.slice(1), 16);
  return ((0xff << 24) | ((v & 0xff) << 16) | (v & 0xff00) | (v >> 16)) >>> 0;
}

function bbox(features) {
  const b = { lonMin: Infinity, lonMax: -Infinity, latMin: Infinity, latMax: -Infinity };
  const visit = c => {
    if (typeof c[0] === "number") {
      b.lonMin = Math.min(b.lonMin, c[0]); b.lonMax = Math.max(b.lonMax, c[0]);
      b.latMin = Math.min(b.latMin, c[1]); b.latMax = Math.max(b.latMax, c[1]);
    } else c.forEach(visit);
  };
  features.forEach(f => visit(f.geometry.coordinates));
  return b;
}

// even-odd rule over every ring: holes and islands come out right
function contains(geometry, lon, lat) {
  const polygons = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
  let inside = false;
  for (const polygon of polygons) {
    for (const ring of polygon) {
      for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
        const [xi, yi] = ring[i], [xj, yj] = ring[j];
        if ((yi > lat) !== (yj > lat) && lon < ((xj - xi) * (lat - yi)) / (yj - yi) + xi) inside = !inside;
      }
    }
  }
  return inside;
}

function pointsBox(lat, lon) {
  const b = { lonMin: Infinity, lonMax: -Infinity, latMin: Infinity, latMax: -Infinity };
  for (let i = 0; i < lat.length; i++) {
    if (lat[i] === null || lon[i] === null) continue;
    b.lonMin = Math.min(b.lonMin, lon[i]); b.lonMax = Math.max(b.lonMax, lon[i]);
    b.latMin = Math.min(b.latMin, lat[i]); b.latMax = Math.max(b.latMax, lat[i]);
  }
  return Number.isFinite(b.lonMin) ? b : null;
}
