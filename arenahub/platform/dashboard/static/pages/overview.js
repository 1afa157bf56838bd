// Overview: live cards (the last hour), charts over the last hour, day or week, and the clients that
// need attention. Polls GET /analytics/overview (and /clients, less often) while shown.

import { api, fmtAgo, fmtInt, fmtMs, fmtNum, fmtPct, h, pill, toast } from "../ui.js";
import { barChart, fmtTick, lineChart, sparkline } from "../charts.js";

const POLL_MS = 5000;
const CLIENTS_POLL_MS = 15000;
const PERIODS = [["hour", "Last hour"], ["day", "Last day"], ["week", "Last week"]];
const C = { blue: "#3a5bd9", green: "#22a27a", orange: "#e08a1e", red: "#c0322b", purple: "#8b5cf6", teal: "#0e9bb5", gray: "#8a93ab" };
const ERROR_KINDS = [["4xx", "4xx (bad requests)", C.orange], ["429", "429 (rate limited)", C.purple],
  ["499", "499 (caller left)", C.gray], ["5xx", "5xx (upstream/platform)", C.red]];

const ttft = (p) => p.ttft_ms ?? p.ttft_avg_ms ?? null;
const sumErrors = (p) => Object.values(p.errors || {}).reduce((a, b) => a + (b || 0), 0);

function card(key, label) {
  const value = h("div", { class: "card-value" }, "—");
  const sub = h("div", { class: "card-sub" });
  const spark = h("div", { class: "card-spark" });
  const el = h("div", { class: "card", dataset: { card: key } }, h("div", { class: "card-label" }, label), value, sub, spark);
  return {
    el,
    set({ text, small, note, raw, tone, series, color }) {
      value.replaceChildren(text, ...(small ? [h("small", null, ` ${small}`)] : []));
      sub.textContent = note || "";
      el.dataset.value = raw === undefined || raw === null ? "" : String(raw);
      el.classList.toggle("card-good", tone === "good");
      el.classList.toggle("card-bad", tone === "bad");
      el.classList.toggle("card-warn", tone === "warn");
      spark.replaceChildren(series ? sparkline(series, { color: color || C.blue }) : "");
    },
  };
}

const BUCKET_NOTES = { 60: "per minute", 900: "15-minute buckets", 3600: "hourly buckets" };

function chartPanel(key, title, chart) {
  return h("section", { class: "panel chart-panel", dataset: { chart: key } },
    h("div", { class: "panel-head" }, h("h2", null, title), h("span", { class: "muted bucket-note" })),
    h("div", { class: "panel-body" }, chart));
}

// Requests per minute over the last `minutes` whole minutes of an hour series (1-minute buckets);
// the current minute counts for the part of it that has passed.
function recentRate(series, field, minutes = 5) {
  if (!series.length) return null;
  const recent = series.slice(-minutes);
  const total = recent.reduce((a, p) => a + (p[field] || 0), 0);
  const startOfLast = new Date(series[series.length - 1].t).getTime();
  const partial = Math.min(1, Math.max(0.05, (Date.now() - startOfLast) / 60000));
  return total / (recent.length - 1 + partial);
}

// Why a connected client is unhealthy, as its bridge says it: what to do, else its state ("no tab").
function sessionWhy(c) {
  const s = (c.live && c.live.session) || {};
  if (s.bridge_reachable === false) return s.last_error || "its bridge does not answer";
  return s.action || s.last_error || (s.state && s.state !== "ready" ? s.state.replaceAll("_", " ") : "");
}

function attentionReasons(c) {
  const out = [];
  const breaker = c.health && c.health.breaker;
  if (breaker === "open") out.push(["Breaker open", "bad"]);
  else if (breaker === "half_open") out.push(["Breaker half-open", "warn"]);
  if (c.maintenance_reason || (c.health && c.health.maintenance)) out.push(["Maintenance", "warn"]);
  if (c.outdated) out.push(["Outdated", "warn"]);
  const connected = c.connected ?? Boolean(c.live && c.live.connected);
  const healthy = c.healthy ?? Boolean(c.live && c.live.healthy);
  if (!connected && c.last_refusal && !c.disabled) out.push(["Refused", "bad"]);
  if (connected && !healthy && !(c.live && c.live.draining)) out.push(["Unhealthy", "bad"]);
  return out;
}

// The success rate is the platform's: of the requests it could serve. A consumer's own mistake (a 4xx: a bad key,
// bad JSON, an unknown model, no credit) or a consumer that left (499) is not a failure of the platform.
function consumerErrors(p) {
  const e = (p && p.errors) || {};
  return (e["4xx"] || 0) + (e["499"] || 0);
}
function servedRate(p) {
  const served = ((p && p.requests) || 0) - consumerErrors(p);
  return served > 0 ? (p.successes || 0) / served : null;
}

export default {
  id: "overview",
  title: "Overview",
  async mount(root, ctx) {
    let period = ["hour", "day", "week"].includes(ctx.params.period) ? ctx.params.period : "hour";
    const buttons = PERIODS.map(([id, label]) => h("button", {
      type: "button", "aria-pressed": String(id === period), dataset: { period: id },
      onclick: () => { period = id; ctx.setParams(id === "hour" ? {} : { period: id });
        buttons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.period === id)));
        refresh().catch((err) => toast(err.message, "error")); },
    }, label));
    ctx.actions.append(h("div", { class: "segmented", role: "group", "aria-label": "Chart period" }, buttons));

    const cards = {
      clients: card("clients", "Connected clients"),
      rpm: card("requests", "Requests / min"),
      success: card("success", "Success rate"),
      p50: card("p50", "Latency p50"),
      p95: card("p95", "Latency p95"),
      ttft: card("ttft", "Time to first token"),
      tpm: card("tokens", "Tokens / min"),
      active: card("active", "Active requests"),
    };
    const healthBar = h("div", { class: "health-bar", title: "healthy / connected, not healthy / not connected" });
    cards.clients.el.querySelector(".card-spark").replaceWith(healthBar);

    const fmtRate = (v) => fmtNum(v, 1);
    const charts = {
      requests: lineChart({ area: true, yFormat: fmtRate, tickFormat: fmtTick, yEmptyMax: 4, label: "Requests per minute",
        series: [{ name: "Requests / min", color: C.blue, values: [] }, { name: "Errors / min", color: C.red, values: [] }] }),
      success: lineChart({ yFormat: (v) => `${Math.round(v * 10) / 10}%`, yMax: 100, yCap: 100, label: "Success rate",
        emptyText: "No requests in this period", series: [{ name: "Success rate", color: C.green, values: [] }] }),
      latency: lineChart({ yFormat: (v) => fmtMs(v), yEmptyMax: 1000, label: "Latency",
        series: [{ name: "p50", color: C.blue, values: [] }, { name: "p95", color: C.orange, values: [] }] }),
      ttft: lineChart({ yFormat: (v) => fmtMs(v), yEmptyMax: 1000, label: "Time to first token",
        series: [{ name: "Time to first token", color: C.teal, values: [] }] }),
      tokens: lineChart({ area: true, yFormat: fmtRate, tickFormat: fmtTick, yEmptyMax: 100, label: "Tokens per minute",
        series: [{ name: "Prompt / min", color: C.purple, values: [] }, { name: "Completion / min", color: C.teal, values: [] }] }),
      errors: barChart({ yFormat: (v) => fmtNum(v, 1), tickFormat: fmtTick, yEmptyMax: 4, label: "Errors by kind", emptyText: "No errors in this period",
        series: ERROR_KINDS.map(([, name, color]) => ({ name, color, values: [] })) }),
    };
    const attention = h("ul", { class: "attention" });
    const attentionPanel = h("section", { class: "panel attention-panel", dataset: { panel: "attention" } },
      h("div", { class: "panel-head" }, h("h2", null, "Clients needing attention"),
        h("a", { href: "#/clients" }, "All clients →")),
      h("div", { class: "panel-body" }, attention));

    root.append(
      h("div", { class: "cards cards-4" }, Object.values(cards).map((c) => c.el)),
      h("div", { class: "chart-grid" },
        chartPanel("requests", "Requests per minute", charts.requests),
        chartPanel("success", "Success rate", charts.success),
        chartPanel("latency", "Latency (answered requests)", charts.latency),
        chartPanel("ttft", "Time to first token", charts.ttft),
        chartPanel("tokens", "Tokens per minute", charts.tokens),
        chartPanel("errors", "Errors by kind", charts.errors)),
      attentionPanel,
    );

    let clients = null;
    let live = null;

    function showCards(hour) {
      const s = hour.series || [];
      const t = hour.totals || {};
      const rpm = recentRate(s, "requests");
      const tpmSeries = s.map((p) => (p.prompt_tokens || 0) + (p.completion_tokens || 0));
      const tokensHour = tpmSeries.reduce((a, b) => a + b, 0);
      const tpm = recentRate(s.map((p, i) => ({ ...p, tokens: tpmSeries[i] })), "tokens");
      cards.rpm.set({ text: fmtNum(rpm, 1), note: `over the last 5 minutes; ${fmtInt(t.requests)} in the last hour`, raw: t.requests,
        series: s.map((p) => p.requests || 0) });
      const rate = servedRate(t);
      const theirs = consumerErrors(t);
      const failed = (t.requests || 0) - theirs - (t.successes || 0);
      cards.success.set({ text: fmtPct(rate), raw: rate,
        note: t.requests ? `${fmtInt(failed)} failed, last hour` + (theirs ? ` (and ${fmtInt(theirs)} refused as the consumer's mistake or left)` : "")
          : "no requests in the last hour",
        tone: rate === null || rate === undefined ? null : rate >= 0.99 ? "good" : rate >= 0.9 ? "warn" : "bad",
        series: s.map(servedRate), color: C.green });
      cards.p50.set({ text: fmtMs(t.p50_ms), raw: t.p50_ms, note: "median, last hour", series: s.map((p) => p.p50_ms ?? null) });
      cards.p95.set({ text: fmtMs(t.p95_ms), raw: t.p95_ms, note: "95th percentile, last hour", series: s.map((p) => p.p95_ms ?? null), color: C.orange });
      cards.ttft.set({ text: fmtMs(ttft(t)), raw: ttft(t), note: "average, last hour", series: s.map(ttft), color: C.teal });
      cards.tpm.set({ text: fmtNum(tpm, 1), raw: tokensHour, note: `over the last 5 minutes; ${fmtNum(tokensHour, 1)} in the last hour`, series: tpmSeries, color: C.purple });
      cards.rpm.el.dataset.rate = String(rpm ?? "");
    }

    function showLive() {
      const l = live || {};
      const connected = l.connected_clients;
      const healthy = l.healthy_clients;
      const registered = clients ? clients.length : null;
      cards.clients.set({ text: fmtInt(connected), small: registered !== null ? `of ${fmtInt(registered)}` : "",
        note: healthy === undefined ? "" : `${fmtInt(healthy)} healthy`, raw: connected,
        tone: connected ? (healthy === connected ? "good" : "warn") : registered ? "bad" : null });
      cards.clients.el.querySelector(".card-spark")?.replaceWith(healthBar);
      if (!cards.clients.el.contains(healthBar)) cards.clients.el.append(healthBar);
      const parts = [["healthy", healthy || 0], ["unhealthy", Math.max(0, (connected || 0) - (healthy || 0))],
        ["offline", registered !== null ? Math.max(0, registered - (connected || 0)) : 0]];
      const total = parts.reduce((a, [, n]) => a + n, 0);
      healthBar.replaceChildren(...parts.filter(([, n]) => n > 0).map(([kind, n]) => {
        const seg = h("span", { class: `seg seg-${kind}`, title: `${n} ${kind}` });
        seg.style.flexGrow = String(n / (total || 1));
        return seg;
      }));
      cards.active.set({ text: fmtInt(l.active_requests), raw: l.active_requests,
        note: l.queue_depth ? `${fmtInt(l.queue_depth)} waiting in the queue` : "queue empty" });
    }

    function showCharts(data) {
      const s = data.series || [];
      const note = BUCKET_NOTES[data.bucket_seconds] || `${Math.round((data.bucket_seconds || 60) / 60)}-minute buckets`;
      for (const el of root.querySelectorAll(".bucket-note")) el.textContent = note;
      const times = s.map((p) => p.t);
      const perMin = 60 / (data.bucket_seconds || 60);
      charts.requests.update({ times, series: [
        { name: "Requests / min", color: C.blue, values: s.map((p) => p.requests_per_minute ?? (p.requests || 0) * perMin) },
        { name: "Errors / min", color: C.red, values: s.map((p) => sumErrors(p) * perMin) }] });
      charts.success.update({ times, series: [{ name: "Success rate", color: C.green,
        values: s.map((p) => { const r = servedRate(p); return r === null ? null : r * 100; }) }] });
      charts.latency.update({ times, series: [{ name: "p50", color: C.blue, values: s.map((p) => p.p50_ms ?? null) },
        { name: "p95", color: C.orange, values: s.map((p) => p.p95_ms ?? null) }] });
      charts.ttft.update({ times, series: [{ name: "Time to first token", color: C.teal, values: s.map(ttft) }] });
      charts.tokens.update({ times, series: [
        { name: "Prompt / min", color: C.purple, values: s.map((p) => (p.prompt_tokens || 0) * perMin) },
        { name: "Completion / min", color: C.teal, values: s.map((p) => (p.completion_tokens || 0) * perMin) }] });
      charts.errors.update({ times, series: ERROR_KINDS.map(([kind, name, color]) => ({ name, color,
        values: s.map((p) => (p.errors || {})[kind] || 0) })) });
    }

    function showAttention() {
      if (!clients) return;
      const items = clients.map((c) => ({ c, reasons: attentionReasons(c) })).filter((x) => x.reasons.length);
      attentionPanel.dataset.count = String(items.length);
      if (!items.length) {
        attention.replaceChildren(h("li", { class: "attention-ok" }, pill("All clear", "ok"),
          clients.length ? " Every client is in good shape." : " No clients registered yet."));
        return;
      }
      attention.replaceChildren(...items.slice(0, 12).map(({ c, reasons }) => h("li", { dataset: { client: c.id } },
        h("a", { href: `#/clients?id=${encodeURIComponent(c.id)}`, class: "cell-main" }, c.name || c.id),
        h("span", { class: "mono muted" }, c.id),
        h("span", { class: "pills" }, reasons.map(([text, kind]) => pill(text, kind))),
        h("span", { class: "muted attention-why" }, c.connected || c.live ? (c.maintenance_reason || sessionWhy(c)) :
          c.last_refusal ? `${c.last_refusal.message} (${fmtAgo(c.last_refusal.at)})` : "not connected"))),
      ...(items.length > 12 ? [h("li", { class: "muted" }, `and ${items.length - 12} more`)] : []));
    }

    let lastClients = 0;
    async function refresh() {
      const wanted = period;
      const pollClients = !clients || Date.now() - lastClients >= CLIENTS_POLL_MS;
      const [hour, other, list] = await Promise.all([
        api("GET", "/analytics/overview", null, { query: { period: "hour" } }),
        wanted !== "hour" ? api("GET", "/analytics/overview", null, { query: { period: wanted } }) : null,
        pollClients ? api("GET", "/clients").catch(() => null) : null,
      ]);
      if (!ctx.live) return;
      if (list) { clients = list.data || []; lastClients = Date.now(); }
      live = hour.live || live;
      if (!hour.live) {
        const status = await api("GET", "/status").catch(() => null);
        if (status) live = status;
      }
      showCards(hour);
      showLive();
      if (period === wanted) showCharts(other || hour);
      showAttention();
      root.dataset.loaded = "true";
      root.dataset.period = wanted;
    }

    ctx.every(POLL_MS, refresh);
  },
};
