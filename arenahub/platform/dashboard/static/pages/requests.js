// Requests: the request log, newest first, filtered by period, client, key, model, status, error
// code and stream, or one request by id; "Older" pages on with the cursor. A row opens its detail:
// timing, tokens, cost, error, routing attempts, and the prompt and answer when they are stored.
// The filters live in the hash (#/requests?key_id=...) and the exports use them.

import { api, dataTable, download, fmtInt, fmtMicros, fmtMs, fmtTime, h, pill, toast } from "../ui.js";

const PAGE = 50;
const FILTERS = ["since", "until", "client_id", "key_id", "model", "status", "error_code", "stream", "id"];
const STATUS = [["", "Any status"], ["success", "Success"], ["error", "Any error"], ["4xx", "4xx"], ["5xx", "5xx"],
  ...["400", "401", "402", "403", "404", "408", "413", "429", "499", "500", "502", "503", "504"].map((c) => [c, c])];
const STREAM = [["", "Streamed or not"], ["true", "Streamed"], ["false", "Not streamed"]];
const PRIVACY = "Prompts and answers are not stored. The operator can turn storing them on in Settings "
  + "(\u201cStore prompts and answers\u201d); only requests made after that have them.";

const enc = encodeURIComponent;
// An ISO time as the value of a datetime-local input (local time), and back.
function localInput(iso) {
  const d = iso ? new Date(iso) : null;
  if (!d || Number.isNaN(d.getTime())) return "";
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}
const fromLocal = (text) => (text ? new Date(text).toISOString() : "");
const plural = (n, word) => `${fmtInt(n)} ${word}${n === 1 ? "" : "s"}`;

// "14:03:07" today, "Nov 25, 14:03:07" on other days of the year, with the year before that.
function when(iso) {
  const d = new Date(iso);
  const now = new Date();
  const time = d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  if (d.toDateString() === now.toDateString()) return time;
  const day = d.toLocaleDateString(undefined, { month: "short", day: "numeric",
    year: d.getFullYear() === now.getFullYear() ? undefined : "numeric" });
  return `${day}, ${time}`;
}

function statusPill(r) {
  const kind = r.status === 200 ? "ok" : r.status === 499 || r.status === 429 ? "warn" : r.status >= 500 ? "bad" : "warn";
  return pill(String(r.status), kind, r.error_code || "answered");
}

const COLUMNS = [
  { key: "created_at", label: "Time", class: "nowrap", render: (r) => h("span", { title: fmtTime(r.created_at) }, when(r.created_at)) },
  { key: "status", label: "Status", render: (r) => [statusPill(r), r.error_code ? h("div", { class: "cell-sub mono" }, r.error_code) : null] },
  { key: "model", label: "Model", class: "nowrap", render: (r) => h("code", null, r.model) },
  { key: "key", label: "Key", value: (r) => r.key_name || r.key_id,
    render: (r) => h("span", { class: "clip", title: r.key_id }, r.key_name || h("span", { class: "mono" }, r.key_id)) },
  { key: "client", label: "Client", value: (r) => r.client_name || r.client_id,
    render: (r) => (r.client_id ? h("span", { class: "clip", title: r.client_id }, r.client_name || h("span", { class: "mono" }, r.client_id))
      : h("span", { class: "muted" }, "none")) },
  { key: "stream", label: "Stream", render: (r) => (r.stream ? "yes" : h("span", { class: "muted" }, "no")) },
  { key: "latency_ms", label: "Latency", class: "num", render: (r) => fmtMs(r.latency_ms) },
  { key: "ttft_ms", label: "TTFT", class: "num", title: "Time to first token", render: (r) => fmtMs(r.ttft_ms) },
  { key: "tokens", label: "Tokens", class: "num", value: (r) => r.prompt_tokens + r.completion_tokens,
    render: (r) => h("span", { title: `${r.prompt_tokens} prompt + ${r.completion_tokens} completion` },
      `${fmtInt(r.prompt_tokens)} → ${fmtInt(r.completion_tokens)}`) },
  { key: "cost", label: "Cost", class: "num", render: (r) => fmtMicros(r.cost) },
  { key: "attempts", label: "Tries", class: "num", title: "Clients tried", render: (r) => fmtInt(r.attempts) },
  { key: "id", label: "Request id", render: (r) => h("code", { class: "req-id", title: r.id }, r.id) },
];

// -- the detail panel ---------------------------------------------------------------------------

function row(label, value) {
  return [h("dt", null, label), h("dd", null, value)];
}

function attemptsTable(attempts) {
  if (!attempts.length) return h("p", { class: "muted" }, "No client was tried.");
  return h("table", { class: "data-table attempts" },
    h("thead", null, h("tr", null, ["#", "Client", "Outcome", "Error", "Time"].map((t, i) => h("th", { class: i === 4 ? "num" : null }, t)))),
    h("tbody", null, attempts.map((a, i) => h("tr", null,
      h("td", null, String(i + 1)),
      h("td", null, a.client_name || h("span", { class: "mono" }, a.client_id || "—")),
      h("td", null, pill(a.outcome || "—", a.outcome === "ok" ? "ok" : "bad")),
      h("td", { class: "attempt-error" }, [a.code ? h("code", null, a.code) : null, a.code && a.error ? " " : null, a.error || (a.code ? null : "—")]),
      h("td", { class: "num" }, fmtMs(a.ms))))));
}

function contentBlock(r) {
  if (r.content) {
    return [h("h4", null, "Prompt"), h("pre", { class: "content" }, r.content.prompt),
      h("h4", null, "Answer"), h("pre", { class: "content" }, r.content.answer)];
  }
  return h("p", { class: "notice-inline" }, r.content_stored
    ? "Storing prompts is on, but this request's prompt was not stored (it was made before, or the record is too old)."
    : PRIVACY);
}

function detailPanel(onClose, filterBy) {
  const title = h("h2", null, "Request");
  const sub = h("div", { class: "mono muted" });
  const body = h("div", { class: "drawer-body request-detail" });
  const el = h("aside", { class: "drawer", "aria-label": "Request details", hidden: true },
    h("header", { class: "drawer-head" }, h("div", null, title, sub),
      h("button", { type: "button", class: "icon-btn", "aria-label": "Close", onclick: onClose }, "×")),
    body);
  let current = null;
  async function show(id) {
    current = id;
    el.hidden = false;
    el.dataset.request = id;
    delete el.dataset.loaded;
    sub.textContent = id;
    body.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    let r;
    try {
      r = await api("GET", `/requests/${enc(id)}`);
    } catch (err) {
      if (current === id) body.replaceChildren(h("p", { class: "dialog-error" }, err.message));
      return;
    }
    if (current !== id) return;
    const d = r.detail || { attempts: [], error: null };
    const link = (label, key, value) => h("a", { href: "#", onclick: (e) => { e.preventDefault(); filterBy(key, value); } }, label);
    body.replaceChildren(...[
      h("div", { class: "detail-status" }, statusPill(r), r.error_code ? h("code", null, r.error_code) : null,
        h("span", { class: "muted" }, fmtTime(r.created_at))),
      d.error ? h("p", { class: "detail-error" }, d.error) : null,
      h("h3", null, "Timing"),
      h("dl", { class: "kv" }, ...row("Latency", fmtMs(r.latency_ms)), ...row("Time to first token", fmtMs(r.ttft_ms)),
        ...row("Streamed", r.stream ? "yes" : "no")),
      h("h3", null, "Usage"),
      h("dl", { class: "kv" }, ...row("Model", h("code", null, r.model)),
        ...row("Tokens", `${fmtInt(r.prompt_tokens)} prompt + ${fmtInt(r.completion_tokens)} completion`),
        ...row("Cost", fmtMicros(r.cost)),
        ...row("Key", link(r.key_name || r.key_id, "key_id", r.key_id)),
        ...row("Client", r.client_id ? link(r.client_name || r.client_id, "client_id", r.client_id) : "none")),
      h("h3", null, `Routing attempts (${fmtInt(d.attempts.length)})`),
      attemptsTable(d.attempts),
      h("h3", null, "Prompt and answer"),
      contentBlock(r)].flat().filter(Boolean));
    el.dataset.loaded = "true";
  }
  return { el, show, hide() { current = null; el.hidden = true; } };
}

// -- the page -----------------------------------------------------------------------------------

function select(name, label, options, value) {
  return h("select", { name, "aria-label": label }, options.map(([v, text]) => h("option", { value: v, selected: v === (value || "") }, text)));
}

export default {
  id: "requests",
  title: "Requests",
  async mount(root, ctx) {
    const filters = Object.fromEntries(FILTERS.map((n) => [n, ctx.params[n] || ""]));
    let cursor = null;
    let seq = 0;

    const input = (name, label, attrs) => h("input", { name, "aria-label": label, placeholder: label, ...attrs });
    const clientSelect = select("client_id", "Client", [["", "All clients"]], filters.client_id);
    const keySelect = select("key_id", "Key", [["", "All keys"]], filters.key_id);
    const form = h("form", { class: "filter-bar log-filters", role: "search" },
      h("label", { class: "inline-field" }, "From", input("since", "From", { type: "datetime-local", value: localInput(filters.since) })),
      h("label", { class: "inline-field" }, "To", input("until", "To", { type: "datetime-local", value: localInput(filters.until) })),
      clientSelect, keySelect,
      input("model", "Model", { value: filters.model, list: "log-models", class: "narrow" }),
      select("status", "Status", STATUS, filters.status),
      input("error_code", "Error code", { value: filters.error_code, class: "narrow" }),
      select("stream", "Stream", STREAM, filters.stream),
      input("id", "Request id", { type: "search", value: filters.id, class: "search" }),
      h("button", { type: "submit", class: "btn btn-primary" }, "Apply"),
      h("button", { type: "button", class: "btn btn-ghost", onclick: () => clear() }, "Clear"),
      h("datalist", { id: "log-models" }));
    form.addEventListener("submit", (e) => { e.preventDefault(); apply(); });
    form.addEventListener("change", (e) => { if (e.target.tagName === "SELECT" || e.target.type === "datetime-local") apply(); });

    const panel = detailPanel(() => { panel.hide(); table.querySelector("tr.selected")?.classList.remove("selected"); },
      (name, value) => { panel.hide(); form.elements[name].value = value; apply(); });
    // Newest first, as the pages come: sorting one page by a column would mislead.
    const table = dataTable({ columns: COLUMNS.map((c) => ({ ...c, sortable: false })), empty: "No requests match these filters.", sort: null,
      pageSize: 100000, // "Older" pages on here
      onRow: (r, tr) => {
        table.querySelector("tr.selected")?.classList.remove("selected");
        tr.classList.add("selected");
        panel.show(r.id);
      } });
    const count = h("span", { class: "muted table-count" });
    const older = h("button", { type: "button", class: "btn", hidden: true, onclick: () => load(true) }, "Older");
    const exportLink = (fmt) => h("button", { type: "button", class: "btn", onclick: () =>
      download("/exports/requests", { query: { ...active(), format: fmt } }) }, `Export ${fmt.toUpperCase()}`);
    const refresh = () => {
      fillChoices().catch((err) => toast(`Requests: ${err.message}`, "error"));
      load(false);
    };
    ctx.actions.append(h("button", { type: "button", class: "btn btn-ghost", onclick: refresh }, "Refresh"),
      exportLink("csv"), exportLink("json"));
    root.append(form, h("div", { class: "with-drawer" }, table, panel.el),
      h("div", { class: "table-tools log-more" }, count, h("span", { class: "grow" }), older));

    let rows = [];
    // The filters that are set, as the API and the hash take them.
    function active() {
      return Object.fromEntries(FILTERS.map((n) => [n, filters[n]]).filter(([, v]) => v));
    }
    function apply() {
      const f = form.elements;
      for (const n of FILTERS) filters[n] = f[n].type === "datetime-local" ? fromLocal(f[n].value) : f[n].value.trim();
      ctx.setParams(active());
      load(false);
    }
    function clear() {
      form.reset();
      for (const el of form.elements) if (el.name) el.value = "";
      apply();
    }
    async function load(more) {
      const mine = ++seq;
      older.disabled = true;
      try {
        const page = await api("GET", "/requests", null, { query: { ...active(), limit: PAGE, cursor: more ? cursor : null } });
        if (mine !== seq) return;
        rows = more ? rows.concat(page.data) : page.data;
        cursor = page.next_cursor;
        table.update(rows);
        older.hidden = !cursor;
        count.textContent = `${plural(rows.length, "request")} shown${cursor ? "; older ones on the next page" : ""}`;
        root.dataset.loaded = "true";
      } catch (err) {
        if (mine === seq) toast(`Requests: ${err.message}`, "error");
      } finally {
        older.disabled = false;
      }
    }
    async function fillChoices() {
      const [keys, clients, prices] = await Promise.all([api("GET", "/keys"), api("GET", "/clients"), api("GET", "/prices")]);
      const fill = (sel, all, items) => {
        const value = sel.value;
        const known = items.some((x) => x.id === value);
        sel.replaceChildren(h("option", { value: "" }, all), ...items.map((x) => h("option", { value: x.id }, x.name || x.id)),
          value && !known ? h("option", { value }, value) : null);
        sel.value = value;
      };
      fill(keySelect, "All keys", keys.data);
      fill(clientSelect, "All clients", clients.data);
      form.querySelector("#log-models").replaceChildren(...prices.data.map((p) => h("option", { value: p.model })));
    }
    // A key or client from the hash is chosen before the lists arrive (and stays if it is gone).
    if (filters.key_id) keySelect.append(h("option", { value: filters.key_id, selected: true }, filters.key_id));
    if (filters.client_id) clientSelect.append(h("option", { value: filters.client_id, selected: true }, filters.client_id));
    fillChoices().catch((err) => toast(`Requests: ${err.message}`, "error"));
    await load(false);
  },
};
