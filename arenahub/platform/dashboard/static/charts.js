// Charts drawn as SVG, by hand: time series (lines, optionally filled), stacked bars and sparklines.
//
//   lineChart(opts)  -> element with .update({series, times}); opts.area fills under the lines
//   barChart(opts)   -> element with .update({series, times}); the series are stacked
//   sparkline(values, {color, height, area})  -> <svg>
// opts: {series, times, height, label (aria), yFormat(v) (tooltip and axis), tickFormat(v, step) (axis
// only; fmtTick suits counts), yMax (at least), yCap (at most), yEmptyMax (the axis with no data),
// emptyText, legend (false: none), xFormat(t, spanMs, stepMs) (time labels), tipFormat(t) (tooltip title)}.
// series: [{name, color, values: [number | null], dashed}], one value per time; times: ISO strings or ms.
// Each chart element carries data-points (values per series) and data-sum (the sum of every value),
// which tests and people's scripts can read. Hovering shows the values at that time.

const NS = "http://www.w3.org/2000/svg";

// An axis label with as many decimals as the step between ticks needs (0.25 -> "0.25", 5 -> "5").
export function fmtTick(v, step = 1) {
  const decimals = Math.min(4, Math.max(0, Math.ceil(-Math.log10(step) - 1e-9) + (String(step).includes("25") ? 1 : 0)));
  if (Math.abs(v) >= 10000 && step >= 1000) return `${(v / 1000).toFixed(step % 1000 ? 1 : 0)}k`;
  return v.toFixed(decimals);
}
export const PALETTE = ["#3a5bd9", "#22a27a", "#e08a1e", "#c0322b", "#8b5cf6", "#0e9bb5"];

function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.append(c);
  return el;
}

function div(cls, text) {
  const el = document.createElement("div");
  if (cls) el.className = cls;
  if (text !== undefined) el.textContent = text;
  return el;
}

const isNum = (v) => v !== null && v !== undefined && Number.isFinite(v);
const ms = (t) => (typeof t === "number" ? t : new Date(t).getTime());

// "Nice" axis ticks from 0 (or min) to at least max, about `count` of them.
export function niceTicks(max, count = 4, min = 0) {
  const span = Math.max(max - min, 1e-9);
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw) || 10 * mag;
  const top = Math.ceil(max / step - 1e-9) * step;
  const ticks = [];
  for (let v = min; v <= top + step / 2; v += step) ticks.push(Number(v.toFixed(10)));
  ticks.step = step;
  return ticks;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const STEPS = [MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY];

function timeTicks(t0, t1, maxTicks) {
  const span = t1 - t0;
  const step = STEPS.find((st) => span / st <= maxTicks) || 7 * DAY;
  const offset = new Date(t0).getTimezoneOffset() * MINUTE; // ticks on local round times
  const out = [];
  for (let t = Math.ceil((t0 - offset) / step) * step + offset; t <= t1; t += step) out.push(t);
  return { ticks: out, step };
}

export function fmtClock(t, span, step = 0) {
  const d = new Date(t);
  if (step >= DAY) return `${d.toLocaleDateString(undefined, { weekday: "short" })} ${d.getDate()}`;
  const hm = d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  if (span <= DAY) return hm;
  return `${d.toLocaleDateString(undefined, { weekday: "short" })} ${hm}`;
}

function tipTime(t, bucketMs) {
  const d = new Date(t);
  const day = d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  const from = d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  const to = new Date(t + bucketMs).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  return bucketMs ? `${day}, ${from}–${to}` : `${day}, ${from}`;
}

function legend(series) {
  const ul = document.createElement("ul");
  ul.className = "legend";
  for (const sr of series) {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.setProperty("--c", sr.color);
    li.append(sw, document.createTextNode(sr.name));
    ul.append(li);
  }
  return ul;
}

// The shared frame of both chart kinds: sizing, axes, the hover layer and the tooltip.
function frame(kind, opts, plot) {
  const el = div(`chart chart-${kind}`);
  if (opts.label) el.setAttribute("aria-label", opts.label);
  el.setAttribute("role", "img");
  const tip = div("chart-tip");
  tip.hidden = true;
  let data = { series: opts.series || [], times: opts.times || [] };
  let hoverIndex = null;
  let lastWidth = 0;
  const height = opts.height || 190;
  const yFormat = opts.yFormat || ((v) => String(v));
  const xFormat = opts.xFormat || fmtClock;

  function draw() {
    const width = Math.max(el.clientWidth || 0, 240);
    lastWidth = width;
    const { series, times } = data;
    const ts = times.map(ms);
    const n = ts.length;
    const bucket = n > 1 ? ts[1] - ts[0] : (opts.bucketMs || 0);
    let max = 0;
    let sum = 0;
    const stacked = kind === "bar";
    for (let i = 0; i < n; i += 1) {
      let stack = 0;
      for (const sr of series) {
        const v = sr.values[i];
        if (!isNum(v)) continue;
        sum += v;
        if (stacked) stack += v; else max = Math.max(max, v);
      }
      if (stacked) max = Math.max(max, stack);
    }
    if (isNum(opts.yMax)) max = Math.max(max, opts.yMax);
    if (opts.yCap) max = Math.min(Math.max(max, 1e-9), opts.yCap);
    el.dataset.points = String(n);
    el.dataset.sum = String(Math.round(sum * 1000) / 1000);

    const ticks = niceTicks(max || opts.yEmptyMax || 1, 4);
    const top = ticks[ticks.length - 1];
    const { step } = ticks;
    const labels = ticks.map((v) => (opts.tickFormat ? opts.tickFormat(v, step) : yFormat(v)));
    const left = Math.max(...labels.map((l) => l.length)) * 6.6 + 14;
    const m = { l: left, r: 10, t: 8, b: 24 };
    const pw = width - m.l - m.r;
    const ph = height - m.t - m.b;
    const y = (v) => m.t + ph - (v / top) * ph;
    const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, height, "aria-hidden": "true" });

    const grid = s("g", { class: "grid" });
    const axis = s("g", { class: "axis" });
    ticks.forEach((tv, k) => {
      grid.append(s("line", { x1: m.l, x2: width - m.r, y1: y(tv), y2: y(tv) }));
      const t = s("text", { x: m.l - 8, y: y(tv) + 4, "text-anchor": "end" });
      t.textContent = labels[k];
      axis.append(t);
    });
    svg.append(grid);

    // x positions: bars sit in their bucket; line points at the bucket start.
    const t0 = ts[0] ?? Date.now();
    const tEnd = n ? ts[n - 1] + (stacked ? bucket : 0) : t0 + HOUR;
    const xt = (t) => m.l + (tEnd > t0 ? ((t - t0) / (tEnd - t0)) * pw : pw / 2);
    const { ticks: xticks, step: xstep } = timeTicks(t0, tEnd, Math.max(2, Math.floor(pw / 90)));
    for (const t of xticks) {
      // Labels near an end are anchored inside the chart rather than cut off.
      const anchor = xt(t) > width - m.r - 28 ? "end" : xt(t) < m.l + 28 ? "start" : "middle";
      const label = s("text", { x: anchor === "end" ? width - 2 : xt(t), y: height - 6, "text-anchor": anchor });
      label.textContent = xFormat(t, tEnd - t0, xstep);
      axis.append(label);
      grid.append(s("line", { x1: xt(t), x2: xt(t), y1: m.t, y2: m.t + ph, class: "vgrid" }));
    }
    svg.append(axis, s("line", { class: "baseline", x1: m.l, x2: width - m.r, y1: m.t + ph, y2: m.t + ph }));

    const geo = { m, pw, ph, y, xt, ts, n, bucket, top, width, height };
    plot(svg, data, geo, opts);
    if (!n || sum === 0) {
      const empty = s("text", { x: m.l + pw / 2, y: m.t + ph / 2, "text-anchor": "middle", class: "chart-empty" });
      empty.textContent = opts.emptyText || "No requests in this period";
      svg.append(empty);
    }

    const hover = s("g", { class: "hover" });
    const layer = s("rect", { x: m.l, y: m.t, width: pw, height: ph, fill: "transparent" });
    svg.append(hover, layer);
    const indexAt = (px) => {
      if (!n) return null;
      const t = t0 + ((px - m.l) / pw) * (tEnd - t0);
      const i = stacked ? Math.floor((t - t0) / (bucket || 1)) : Math.round((t - t0) / (bucket || 1));
      return Math.min(n - 1, Math.max(0, i));
    };
    const show = (i) => {
      hoverIndex = i;
      hover.replaceChildren();
      if (i === null) { tip.hidden = true; return; }
      const cx = stacked ? xt(ts[i]) + (xt(ts[i] + bucket) - xt(ts[i])) / 2 : xt(ts[i]);
      hover.append(s("line", { class: "guide", x1: cx, x2: cx, y1: m.t, y2: m.t + ph }));
      if (!stacked) {
        for (const sr of data.series) {
          const v = sr.values[i];
          if (isNum(v)) hover.append(s("circle", { cx, cy: y(Math.min(v, top)), r: 3.5, fill: "#fff", stroke: sr.color, "stroke-width": 2 }));
        }
      }
      tip.replaceChildren(div("tip-time", opts.tipFormat ? opts.tipFormat(ts[i]) : tipTime(ts[i], bucket)));
      for (const sr of data.series) {
        const row = div("tip-row");
        const sw = document.createElement("span");
        sw.className = "swatch";
        sw.style.setProperty("--c", sr.color);
        const b = document.createElement("b");
        b.textContent = isNum(sr.values[i]) ? yFormat(sr.values[i], true) : "—";
        row.append(sw, document.createTextNode(sr.name), b);
        tip.append(row);
      }
      tip.hidden = false;
      const scale = el.clientWidth / width || 1;
      const tipW = tip.offsetWidth;
      let left = cx * scale + 14;
      if (left + tipW > el.clientWidth) left = cx * scale - tipW - 14;
      tip.style.left = `${Math.max(0, left)}px`;
      tip.style.top = `${svg.getBoundingClientRect().top - el.getBoundingClientRect().top + m.t}px`;
    };
    layer.addEventListener("pointermove", (ev) => {
      const box = svg.getBoundingClientRect();
      show(indexAt(((ev.clientX - box.left) / box.width) * width));
    });
    layer.addEventListener("pointerleave", () => show(null));

    const old = el.querySelector("svg");
    if (old) old.replaceWith(svg); else el.append(svg);
    if (hoverIndex !== null && hoverIndex < n) show(hoverIndex); else tip.hidden = true;
  }

  if (opts.legend !== false) el.append(legend(data.series));
  el.append(tip);
  el.update = (next) => {
    const names = data.series.map((x) => x.name).join("|");
    data = { ...data, ...next };
    if (opts.legend !== false && data.series.map((x) => x.name).join("|") !== names) {
      el.querySelector(".legend").replaceWith(legend(data.series));
    }
    draw();
  };
  if (typeof ResizeObserver === "function") {
    new ResizeObserver(() => { if (el.isConnected && Math.abs((el.clientWidth || 0) - lastWidth) > 2) draw(); }).observe(el);
  }
  // Drawn once attached (its width is known then); update() draws at once.
  requestAnimationFrame(() => { if (!lastWidth) draw(); });
  return el;
}

function linePath(values, x, y, top) {
  let d = "";
  let open = false;
  values.forEach((v, i) => {
    if (!isNum(v)) { open = false; return; }
    d += `${open ? "L" : "M"}${x(i).toFixed(1)},${y(Math.min(v, top)).toFixed(1)}`;
    open = true;
  });
  return d;
}

export function lineChart(opts) {
  return frame("line", opts, (svg, data, g, o) => {
    const x = (i) => g.xt(g.ts[i]);
    data.series.forEach((sr, k) => {
      const color = sr.color || PALETTE[k % PALETTE.length];
      sr.color = color;
      if (o.area) {
        // One filled shape per run of values.
        let run = [];
        const flush = () => {
          if (run.length > 1) {
            const pts = run.map((i) => `${x(i).toFixed(1)},${g.y(Math.min(sr.values[i], g.top)).toFixed(1)}`);
            const base = g.y(0).toFixed(1);
            svg.append(s("path", { d: `M${x(run[0]).toFixed(1)},${base}L${pts.join("L")}L${x(run[run.length - 1]).toFixed(1)},${base}Z`,
              fill: color, "fill-opacity": 0.12, stroke: "none" }));
          }
          run = [];
        };
        sr.values.forEach((v, i) => { if (isNum(v)) run.push(i); else flush(); });
        flush();
      }
      svg.append(s("path", { d: linePath(sr.values, x, g.y, g.top), fill: "none", stroke: color, "stroke-width": 2,
        "stroke-linejoin": "round", "stroke-linecap": "round", "stroke-dasharray": sr.dashed ? "5 4" : null,
        class: "series", "data-series": sr.name }));
      // A value with no neighbour would draw no line: mark it with a dot.
      sr.values.forEach((v, i) => {
        if (isNum(v) && !isNum(sr.values[i - 1]) && !isNum(sr.values[i + 1])) {
          svg.append(s("circle", { cx: x(i), cy: g.y(Math.min(v, g.top)), r: 2.5, fill: color }));
        }
      });
    });
  });
}

export function barChart(opts) {
  return frame("bar", opts, (svg, data, g) => {
    const slot = g.n ? g.pw / g.n : g.pw;
    const bw = Math.max(1, Math.min(slot * 0.72, 28));
    const bars = s("g", { class: "bars" });
    for (let i = 0; i < g.n; i += 1) {
      let acc = 0;
      const cx = g.xt(g.ts[i]) + slot / 2;
      data.series.forEach((sr, k) => {
        sr.color = sr.color || PALETTE[k % PALETTE.length];
        const v = sr.values[i];
        if (!isNum(v) || v <= 0) return;
        const y1 = g.y(acc);
        acc += v;
        const y2 = g.y(Math.min(acc, g.top));
        bars.append(s("rect", { x: (cx - bw / 2).toFixed(1), y: y2.toFixed(1), width: bw.toFixed(1),
          height: Math.max(1, y1 - y2).toFixed(1), fill: sr.color, rx: bw > 6 ? 1.5 : 0 }));
      });
    }
    svg.append(bars);
  });
}

export function sparkline(values, { color = PALETTE[0], height = 30, area = true } = {}) {
  const w = 100;
  const nums = values.filter(isNum);
  const max = Math.max(...nums, 0) || 1;
  const n = values.length;
  const x = (i) => (n > 1 ? (i / (n - 1)) * w : w / 2);
  const y = (v) => height - 2 - (v / max) * (height - 4);
  const svg = s("svg", { class: "spark", viewBox: `0 0 ${w} ${height}`, preserveAspectRatio: "none", "aria-hidden": "true" });
  const d = linePath(values, x, y, max);
  if (area && d) {
    const first = values.findIndex(isNum);
    let last = n - 1;
    while (last > 0 && !isNum(values[last])) last -= 1;
    svg.append(s("path", { d: `${d}L${x(last)},${height}L${x(first)},${height}Z`, fill: color, "fill-opacity": 0.12 }));
  }
  svg.append(s("path", { d, fill: "none", stroke: color, "stroke-width": 1.6, "vector-effect": "non-scaling-stroke",
    "stroke-linejoin": "round" }));
  return svg;
}
