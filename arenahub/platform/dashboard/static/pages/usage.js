// Usage & billing: what keys were charged and clients earned over a period (presets or custom
// dates), by key, client and model, with the cost per day; exports of the period's aggregates.
// From GET /api/admin/usage/summary: the stored book's sums per key, client, model and UTC day, and
// the newest statement lines (the whole statement of a busy month has hundreds of thousands).

import { api, dataTable, download, fmtInt, fmtMicros, fmtUsd, h, toast } from "../ui.js";
import { barChart } from "../charts.js";

const DAY_MS = 86400000;
const PRESETS = [["today", "Today"], ["7d", "Last 7 days"], ["month", "This month"], ["last-month", "Last month"],
  ["custom", "Custom"]];

// Local dates as "YYYY-MM-DD" (what <input type=date> holds) and back to local midnight.
const pad = (n) => String(n).padStart(2, "0");
const dateText = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
const midnight = (text) => { const [y, m, d] = text.split("-").map(Number); return new Date(y, m - 1, d); };
const addDays = (d, n) => new Date(d.getFullYear(), d.getMonth(), d.getDate() + n);

// A preset's first and last day (both included), as date texts.
function presetDays(preset, now = new Date()) {
  const today = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  switch (preset) {
    case "7d": return [dateText(addDays(today, -6)), dateText(today)];
    case "month": return [dateText(new Date(today.getFullYear(), today.getMonth(), 1)), dateText(today)];
    case "last-month": return [dateText(new Date(today.getFullYear(), today.getMonth() - 1, 1)),
      dateText(new Date(today.getFullYear(), today.getMonth(), 0))];
    default: return [dateText(today), dateText(today)];
  }
}

const LINES = 1000; // statement lines shown: the newest
const plural = (n, word) => `${fmtInt(n)} ${word}${n === 1 ? "" : "s"}`;
const sum = (rows, name) => rows.reduce((acc, r) => acc + (Number(r[name]) || 0), 0);
// The summary's rows (by key, client or model) with their account as `id`.
const withId = (rows, field) => rows.map((r) => ({ ...r, id: r[field] ?? "" }));

function card(id, label, value, sub) {
  return h("div", { class: "card", dataset: { card: id, value } }, h("div", { class: "card-label" }, label),
    h("div", { class: "card-value" }, value), h("div", { class: "card-sub" }, sub || ""));
}

const numbers = [
  { key: "requests", label: "Requests", class: "num", render: (r) => fmtInt(r.requests) },
  { key: "prompt_tokens", label: "Prompt tokens", class: "num", render: (r) => fmtInt(r.prompt_tokens) },
  { key: "completion_tokens", label: "Completion tokens", class: "num", render: (r) => fmtInt(r.completion_tokens) },
];
// Narrower, for the tables side by side: tokens in one column.
const compact = [
  { key: "requests", label: "Requests", class: "num", render: (r) => fmtInt(r.requests) },
  { key: "tokens", label: "Tokens", class: "num", value: (r) => r.prompt_tokens + r.completion_tokens,
    render: (r) => h("span", { title: `${fmtInt(r.prompt_tokens)} prompt + ${fmtInt(r.completion_tokens)} completion` },
      fmtInt(r.prompt_tokens + r.completion_tokens)) },
];

function panel(title, sub, body) {
  return h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", null, title),
    sub ? h("span", { class: "muted table-count" }, sub) : null), h("div", { class: "panel-body" }, body));
}

export default {
  id: "usage",
  title: "Usage & billing",
  async mount(root, ctx) {
    const p = ctx.params;
    const state = { preset: PRESETS.some(([id]) => id === p.preset) ? p.preset : "month", from: p.from, to: p.to,
      key: p.key || "", client: p.client || "" };
    if (state.preset !== "custom" || !state.from || !state.to) [state.from, state.to] = presetDays(state.preset === "custom" ? "month" : state.preset);
    let seq = 0;

    // -- the period bar
    const presetButtons = PRESETS.map(([id, label]) => h("button", { type: "button", dataset: { preset: id },
      onclick: () => choose(id) }, label));
    const fromInput = h("input", { type: "date", name: "from", "aria-label": "From", onchange: () => custom() });
    const toInput = h("input", { type: "date", name: "to", "aria-label": "To (included)", onchange: () => custom() });
    const keySelect = h("select", { name: "key", "aria-label": "Key", onchange: (e) => { state.key = e.target.value; refresh(); } });
    const clientSelect = h("select", { name: "client", "aria-label": "Client", onchange: (e) => { state.client = e.target.value; refresh(); } });
    const bar = h("div", { class: "filter-bar" },
      h("div", { class: "segmented", role: "group", "aria-label": "Period" }, presetButtons),
      h("span", { class: "inline-field" }, fromInput, "–", toInput),
      h("span", { class: "grow" }), keySelect, clientSelect);

    function choose(id) {
      state.preset = id;
      if (id !== "custom") [state.from, state.to] = presetDays(id);
      refresh();
    }
    function custom() {
      if (!fromInput.value || !toInput.value) return;
      state.preset = "custom";
      [state.from, state.to] = fromInput.value <= toInput.value ? [fromInput.value, toInput.value] : [toInput.value, fromInput.value];
      refresh();
    }
    const period = () => ({ since: midnight(state.from).toISOString(), until: addDays(midnight(state.to), 1).toISOString() });

    // -- exports
    const exportQuery = () => ({ ...period(), key_id: state.key, client_id: state.client });
    ctx.actions.append(
      h("button", { type: "button", class: "btn", onclick: () => download("/exports/aggregates", { query: { format: "csv", ...exportQuery() } }) }, "Export CSV"),
      h("button", { type: "button", class: "btn", onclick: () => download("/exports/aggregates", { query: { format: "json", ...exportQuery() } }) }, "Export JSON"));

    // -- totals, chart, tables
    const cards = h("div", { class: "cards cards-4" });
    // A day's bar is drawn from noon the day before to its noon: the axis' midnight ticks, labelled
    // with their date, fall under the middle of the bars.
    const chart = barChart({ series: [{ name: "Charged (USD)", values: [] }], times: [], height: 200, label: "Charged per day",
      bucketMs: DAY_MS,
      yFormat: (v) => fmtUsd(v), xFormat: (t) => new Date(t).toLocaleDateString(undefined, { month: "short", day: "numeric" }),
      tipFormat: (t) => new Date(t + DAY_MS / 2).toLocaleDateString(undefined, { weekday: "short", month: "short", day: "numeric" }),
      emptyText: "Nothing charged in this period" });
    // The request log of a key or client over the period (the rows carry the period they were read for).
    const logLink = (name, r) => `#/requests?${new URLSearchParams({ [name]: r.id, since: r.since, until: r.until })}`;
    const nameCell = (name, id, link) => h("a", { href: link, class: name ? "cell-main" : "mono", title: `${id}: its requests` }, name || id);
    const byKey = dataTable({ rowKey: (r) => r.id, sort: { key: "cost_micros", dir: -1 }, empty: "No key was charged in this period.",
      columns: [
        { key: "name", label: "Key", value: (r) => r.name || r.id, filterText: (r) => `${r.name || ""} ${r.id}`,
          render: (r) => nameCell(r.name, r.id, logLink("key_id", r)) },
        ...compact,
        { key: "cost_micros", label: "Charged", class: "num", render: (r) => fmtMicros(r.cost_micros) },
        { key: "credit", label: "Credit now", class: "num", value: (r) => (r.credit === "Unlimited" ? Infinity : Number(r.credit)),
          render: (r) => (r.credit === "Unlimited" ? r.credit : fmtUsd(r.credit)) },
      ] });
    const byClient = dataTable({ rowKey: (r) => r.id, sort: { key: "cost_micros", dir: -1 }, empty: "No client served a request in this period.",
      columns: [
        { key: "name", label: "Client", value: (r) => r.name || r.id, filterText: (r) => `${r.name || ""} ${r.id}`,
          render: (r) => nameCell(r.name, r.id, logLink("client_id", r)) },
        ...compact,
        { key: "cost_micros", label: "Earned", class: "num", render: (r) => fmtMicros(r.cost_micros) },
      ] });
    const byModel = dataTable({ rowKey: (r) => r.id, sort: { key: "cost_micros", dir: -1 }, empty: "No model was used in this period.",
      columns: [
        { key: "id", label: "Model", render: (r) => h("code", null, r.id || "(none)") },
        ...numbers,
        { key: "images", label: "Images", class: "num", render: (r) => fmtInt(r.images) },
        { key: "cost_micros", label: "Charged", class: "num", render: (r) => fmtMicros(r.cost_micros) },
      ] });
    const lines = dataTable({ rowKey: (r) => `${r.key_id}|${r.day}|${r.model}`, sort: { key: "day", dir: -1 }, empty: "No lines.",
      columns: [
        { key: "day", label: "Day (UTC)", class: "nowrap" },
        { key: "key", label: "Key", value: (r) => r.key_name || r.key_id },
        { key: "model", label: "Model", render: (r) => h("code", null, r.model || "(none)") },
        ...numbers,
        { key: "cost_micros", label: "Charged", class: "num", render: (r) => fmtMicros(r.cost_micros) },
      ] });
    const linesCount = h("span", { class: "muted" });
    const chartPanel = panel("Charged per day", "UTC days", chart);
    root.append(bar, cards, chartPanel,
      h("div", { class: "split" }, panel("By key", null, byKey), panel("By client", null, byClient)),
      panel("By model", null, byModel),
      h("details", { class: "panel statement" }, h("summary", null, h("strong", null, "Statement lines"), " ",
        h("span", { class: "muted" }, "per key, UTC day and model · "), linesCount), h("div", { class: "panel-body" }, lines)));

    function options(select, label, items, value) {
      select.replaceChildren(h("option", { value: "" }, label),
        ...items.map((x) => h("option", { value: x.id, selected: x.id === value }, x.name || x.id)));
      select.value = value;
    }
    function dayTimes(report) {
      // Every day of the period, at local midnight; the statement's days are UTC days.
      const days = [];
      for (let d = midnight(state.from); d <= midnight(state.to); d = addDays(d, 1)) days.push(d);
      const costs = new Map();
      for (const d of report.by_day) costs.set(d.day, Number(d.cost_micros) / 1e6);
      return { times: days.map((d) => d.getTime() - DAY_MS / 2), values: days.map((d) => costs.get(dateText(d)) || 0) };
    }

    async function refresh() {
      for (const b of presetButtons) b.setAttribute("aria-pressed", String(b.dataset.preset === state.preset));
      fromInput.value = state.from;
      toInput.value = state.to;
      ctx.setParams(state.preset === "custom" ? { preset: "custom", from: state.from, to: state.to, key: state.key, client: state.client }
        : { preset: state.preset, key: state.key, client: state.client });
      root.dataset.busy = "true";
      const mine = ++seq;
      try {
        const [report, keys, clients] = await Promise.all([
          api("GET", "/usage/summary", null, { query: { ...period(), key: state.key, client: state.client, lines: LINES } }),
          api("GET", "/keys"), api("GET", "/clients")]);
        if (mine !== seq) return; // a newer choice is on its way
        const keyOf = new Map(keys.data.map((k) => [k.id, k]));
        const clientOf = new Map(clients.data.map((c) => [c.id, c]));
        options(keySelect, "All keys", keys.data, state.key);
        options(clientSelect, "All clients", clients.data, state.client);
        const t = report.total;
        const earned = sum(report.by_client, "cost_micros");
        const clientCount = report.by_client.length;
        cards.replaceChildren(
          card("requests", "Requests", fmtInt(t.requests), plural(report.by_key.length, "key")),
          card("tokens", "Tokens", fmtInt(t.total_tokens), `${fmtInt(t.prompt_tokens)} prompt · ${fmtInt(t.completion_tokens)} completion`),
          card("charged", "Charged", fmtUsd(t.cost_usd), t.uncharged_micros ? `${fmtMicros(t.uncharged_micros)} not charged (credit ran out)` : "to consumer keys"),
          card("earned", "Client earnings", fmtMicros(earned), plural(clientCount, "client")));
        const days = dayTimes(report);
        chartPanel.hidden = days.times.length < 2; // one bar says no more than the card
        chart.update({ series: [{ name: "Charged (USD)", values: days.values }], times: days.times });
        // Names and credit go into the rows: a row is drawn again only when its data changes.
        const when = period();
        byKey.update(withId(report.by_key, "key_id").map((r) => {
          const k = keyOf.get(r.id);
          return { ...r, ...when, name: k?.name, credit: !k ? null : k.unlimited ? "Unlimited" : k.credit.available_usd };
        }));
        byClient.update(withId(report.by_client, "client_id").map((r) => ({ ...r, ...when, name: clientOf.get(r.id)?.name })));
        byModel.update(withId(report.by_model, "model"));
        lines.update(report.lines.map((ln) => ({ ...ln, key_name: keyOf.get(ln.key_id)?.name })));
        linesCount.textContent = report.lines.length < report.lines_total
          ? `the newest ${fmtInt(report.lines.length)} of ${plural(report.lines_total, "line")} (choose a key to narrow them)`
          : plural(report.lines_total, "line");
        root.dataset.loaded = "true";
      } catch (err) {
        toast(`Usage: ${err.message}`, "error");
      } finally {
        if (mine === seq) delete root.dataset.busy;
      }
    }
    await refresh();
  },
};
