// The dashboard's building blocks: a DOM builder, the admin API call, downloads, dialogs, toasts,
// a sortable and filterable table, form fields and formatters. No third-party code, no innerHTML
// with data: every text goes in through textContent.
//
//   h(tag, attrs, ...children)       attrs: class (string or list), text, on<Event> handlers, dataset,
//                                    value/checked/disabled/selected (properties), other attributes
//                                    (true: present, false/null/undefined: left out)
//   api(method, path, body?, {query}?)  JSON; path "/keys" means /api/admin/keys ("/api/..." is kept);
//                                    adds X-CSRF-Token; throws ApiError{status, code, message, param};
//                                    a 401 sends the browser to the sign-in page
//   download(path, {query, method, form})  GET: a link; POST: fetched with the CSRF token and saved,
//                                    resolves to the file name; a refusal throws ApiError
//   openDialog({title, body, actions, wide})  -> Promise of the chosen action's value (null: closed).
//                                    actions: [{label, value, kind: "primary"|"danger"|"secondary",
//                                    submit, onClick(ctx)}]; onClick may be async; ctx = {form, dialog,
//                                    values(), setError(text), close(value)}; returning false keeps
//                                    the dialog open, throwing shows the error in it
//   confirmDialog({title, message, confirm, danger})  -> Promise<boolean>
//   toast(message, kind)             kind: "info" (default), "ok", "error"
//   dataTable({columns, rows, empty, onRow, rowKey, sort, filter, pageSize})  -> the table's wrapper
//                                    element, with .update(rows), .setFilter(text), .setPredicate(fn),
//                                    .el (itself), .count() (rows matching); rows are
//                                    <tr data-key="rowKey(row)">, cells <td data-col="column key">; the
//                                    wrapper's data-rows is how many rows match; the first pageSize
//                                    (200) are in the page, "Show more" adds more
//                                    columns: [{key, label, value(row), render(row), class, sortable,
//                                    title, filterText(row), live}] (live: re-rendered on every update
//                                    even when the row did not change, e.g. "12 s ago")
//   field({label, name, type, value, hint, required, options, min, max, step, placeholder})
//   showFieldError(form, apiError)   marks the input named by the error's param, message under it
//   pill(text, kind)                 kind: ok, warn, bad, info, muted
//   fmtInt fmtNum fmtPct fmtMs fmtUsd fmtMicros fmtTime fmtAgo fmtBytes fmtDuration (from format.js)

import { DASH, fmtInt } from "./format.js";

export * from "./format.js";

export const CSRF = document.querySelector('meta[name="csrf-token"]')?.content || "";
const ADMIN = "/api/admin";

// -- DOM ---------------------------------------------------------------------------------------
function append(parent, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) { child.forEach((c) => append(parent, c)); return; }
  parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
}

const PROPS = new Set(["value", "checked", "disabled", "selected", "hidden", "indeterminate"]);

export function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (name === "class") {
      el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    } else if (name === "text") {
      el.textContent = String(value);
    } else if (name === "dataset") {
      for (const [k, v] of Object.entries(value)) if (v !== undefined && v !== null) el.dataset[k] = String(v);
    } else if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (PROPS.has(name)) {
      el[name] = value;
    } else if (value === true) {
      el.setAttribute(name, "");
    } else if (value !== false) {
      el.setAttribute(name, String(value));
    }
  }
  return el;
}

export function h(tag, attrs, ...children) {
  const el = setAttrs(document.createElement(tag), attrs);
  append(el, children);
  return el;
}

export function pill(text, kind = "muted", title) {
  return h("span", { class: `pill pill-${kind}`, title }, text);
}

// -- the admin API -----------------------------------------------------------------------------
export class ApiError extends Error {
  constructor(status, code, message, param) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

export function url(path, query) {
  const full = path.startsWith("/api/") || path === "/dashboard" || path.startsWith("/dashboard/") ? path : ADMIN + path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") params.append(k, String(v));
  }
  const qs = params.toString();
  return qs ? `${full}?${qs}` : full;
}

function toLogin() {
  window.location.assign("/dashboard/login");
}

export async function api(method, path, body, { query } = {}) {
  const init = { method, headers: { Accept: "application/json", "X-CSRF-Token": CSRF }, credentials: "same-origin" };
  if (body !== undefined && body !== null) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url(path, query), init);
  } catch (err) {
    throw new ApiError(0, "network_error", "The platform did not answer; is it running?");
  }
  if (response.status === 401) {
    toLogin();
    throw new ApiError(401, "invalid_admin_token", "Your session has ended; sign in again.");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch (err) { data = null; }
  }
  if (!response.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(response.status, e.code || `http_${response.status}`,
      e.message || `The platform answered ${response.status} ${response.statusText}.`, e.param);
  }
  return data;
}

export async function download(path, { query, method = "GET", form } = {}) {
  const target = url(path, query);
  if (method.toUpperCase() === "GET") {
    const link = h("a", { href: target, download: "", hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    return null;
  }
  // A POST is fetched, so that a refusal shows as an error here (a form would open its JSON), then saved.
  let response;
  try {
    response = await fetch(target, { method, credentials: "same-origin", headers: { "X-CSRF-Token": CSRF },
      body: new URLSearchParams({ csrf_token: CSRF, ...Object.fromEntries(Object.entries(form || {}).map(([k, v]) => [k, String(v)])) }) });
  } catch (err) {
    throw new ApiError(0, "network_error", "The platform did not answer; is it running?");
  }
  if (response.status === 401) {
    toLogin();
    throw new ApiError(401, "invalid_admin_token", "Your session has ended; sign in again.");
  }
  if (!response.ok) {
    let e = {};
    try { e = (await response.json()).error || {}; } catch (err) { e = {}; }
    throw new ApiError(response.status, e.code || `http_${response.status}`,
      e.message || `The platform answered ${response.status} ${response.statusText}.`, e.param);
  }
  const disposition = response.headers.get("content-disposition") || "";
  const name = (/filename="?([^";]+)"?/.exec(disposition) || [])[1] || "download";
  const href = URL.createObjectURL(await response.blob());
  const link = h("a", { href, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60000);
  return name;
}

// -- toasts ------------------------------------------------------------------------------------
function toastRegion() {
  let region = document.getElementById("toasts");
  if (!region) {
    region = h("div", { id: "toasts", class: "toasts", "aria-live": "polite" });
    document.body.append(region);
  }
  return region;
}

export function toast(message, kind = "info") {
  const item = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  toastRegion().append(item);
  setTimeout(() => item.remove(), kind === "error" ? 9000 : 4500);
  return item;
}

// -- dialogs -----------------------------------------------------------------------------------
export function openDialog({ title, body, actions, wide = false }) {
  const list = actions && actions.length ? actions : [{ label: "Close", value: null, kind: "primary" }];
  const error = h("p", { class: "dialog-error", role: "alert", hidden: true });
  const form = h("form", { method: "dialog", class: "dialog-form", novalidate: true });
  const dialog = h("dialog", { class: wide ? "dialog dialog-wide" : "dialog", "aria-label": title },
    form);
  const buttons = list.map((a) => h("button", {
    type: a.submit || (a.kind === "primary" && !list.some((x) => x.submit)) ? "submit" : "button",
    class: `btn btn-${a.kind || "secondary"}`, dataset: { action: a.label },
  }, a.label));
  form.append(
    h("header", { class: "dialog-head" }, h("h2", { text: title }),
      h("button", { type: "button", class: "icon-btn dialog-x", "aria-label": "Close", onclick: () => finish(null) }, "×")),
    h("div", { class: "dialog-body" }, body),
    error,
    h("footer", { class: "dialog-actions" }, buttons),
  );
  let done;
  const result = new Promise((resolve) => { done = resolve; });
  let settled = false;
  function finish(value) {
    if (settled) return;
    settled = true;
    dialog.close();
    dialog.remove();
    done(value);
  }
  const ctx = {
    form, dialog,
    values: () => formValues(form),
    setError(text) { error.textContent = text || ""; error.hidden = !text; },
    close: finish,
  };
  async function run(action, button) {
    if (button.type === "submit" && !form.reportValidity()) return;
    ctx.setError("");
    if (!action.onClick) { finish(action.value === undefined ? action.label : action.value); return; }
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const out = await action.onClick(ctx);
      if (out !== false) finish(out === undefined ? action.value : out);
    } catch (err) {
      ctx.setError(err.message || String(err));
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }
  list.forEach((a, i) => {
    if (buttons[i].type === "button") buttons[i].addEventListener("click", () => run(a, buttons[i]));
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const i = buttons.findIndex((b) => b.type === "submit");
    if (i >= 0) run(list[i], buttons[i]);
  });
  dialog.addEventListener("cancel", (event) => { event.preventDefault(); finish(null); });
  document.body.append(dialog);
  dialog.showModal();
  const first = form.querySelector(".dialog-body input:not([type=hidden]), .dialog-body select, .dialog-body textarea");
  if (first) first.focus();
  return result;
}

export function confirmDialog({ title, message, confirm = "Confirm", danger = false }) {
  return openDialog({
    title,
    body: Array.isArray(message) ? message.map((m) => h("p", null, m)) : h("p", null, message),
    actions: [{ label: "Cancel", value: false }, { label: confirm, value: true, kind: danger ? "danger" : "primary", submit: true }],
  }).then((v) => v === true);
}

// -- forms -------------------------------------------------------------------------------------
let fieldSeq = 0;

export function field({ label, name, type = "text", value, hint, required = false, options, min, max, step,
  placeholder, autocomplete = "off" }) {
  const id = `f-${name}-${++fieldSeq}`;
  const hintEl = hint ? h("small", { class: "field-hint", id: `${id}-hint` }, hint) : null;
  const common = { id, name, required, "aria-describedby": hint ? `${id}-hint` : null };
  if (type === "checkbox") {
    return h("div", { class: "field field-check" },
      h("label", { for: id }, h("input", { ...common, type: "checkbox", checked: Boolean(value) }), " ", label), hintEl);
  }
  let input;
  if (type === "select") {
    input = h("select", common, (options || []).map((o) => {
      const opt = typeof o === "object" ? o : { value: o, label: o };
      return h("option", { value: opt.value, selected: String(opt.value) === String(value ?? "") }, opt.label);
    }));
  } else if (type === "textarea") {
    input = h("textarea", { ...common, placeholder, rows: 4 });
    input.value = value ?? "";
  } else {
    input = h("input", { ...common, type, min, max, step, placeholder, autocomplete,
      value: value === undefined || value === null ? "" : String(value) });
  }
  return h("div", { class: "field" },
    h("label", { for: id }, label, required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null),
    input, hintEl);
}

// The form's values by name: numbers for type=number (null when empty), booleans for checkboxes,
// null for empty text.
export function formValues(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    if (el.type === "checkbox") out[el.name] = el.checked;
    else if (el.type === "number") out[el.name] = el.value === "" ? null : Number(el.value);
    else out[el.name] = el.value.trim() === "" ? null : el.value.trim();
  }
  return out;
}

// Marks the input an ApiError names (its param) in `form`, with the message under it; clears the
// marks of an earlier attempt. True when a field was marked (else show the message elsewhere).
// The API's validation message, said for the field it is shown next to: "Invalid body: queue_size
// must be a whole number from 0 to 100000, got -1 - at `$.queue_size`" -> "Must be a whole number from
// 0 to 100000." (admin/fields.py words it); msgspec's own "Expected `int` >= 0" -> "Must be at least 0.".
const BOUNDS = { ">=": "at least", "<=": "at most", ">": "more than", "<": "less than" };
export function fieldMessage(message) {
  const text = String(message).replace(/^Invalid (body|query): /, "").replace(/ - at `\$\.[^`]*`$/, "");
  const rule = /^\w+ must be ([\s\S]+?), got [\s\S]*$/.exec(text);
  if (rule) return `Must be ${rule[1]}.`;
  const bound = /^Expected `(?:int|float|number)` (>=|<=|>|<) (\S+)$/.exec(text);
  if (bound) return `Must be ${BOUNDS[bound[1]]} ${bound[2]}.`;
  if (/^Expected `int`, got `float`$/.test(text)) return "Must be a whole number.";
  const length = /^Expected `str` of length (>=|<=) (\d+)$/.exec(text);
  if (length) return `Must have ${BOUNDS[length[1]]} ${length[2]} characters.`;
  return text;
}

export function showFieldError(form, err) {
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const el of form.querySelectorAll(".field-error")) el.remove();
  const input = err && err.param ? form.querySelector(`[name="${CSS.escape(err.param)}"]`) : null;
  if (!input) return false;
  input.setAttribute("aria-invalid", "true");
  (input.closest(".field, [data-field]") || input.parentElement).append(h("small", { class: "field-error", role: "alert" },
    fieldMessage(err.message)));
  input.focus();
  return true;
}

// -- the table ---------------------------------------------------------------------------------
// Rows are kept by key and rendered lazily: an update re-renders only the rows whose data changed
// and that are on the page; sorting and filtering run over the data and then attach the first
// `pageSize` matching rows ("Show more" attaches more). A thousand rows stay cheap.
export function dataTable({ columns, rows = [], empty = "Nothing here yet.", onRow, rowKey = (r) => r.id,
  sort, filter = "", pageSize = 200 }) {
  const cols = columns.map((c) => ({ sortable: true, ...c }));
  const state = { sortKey: sort?.key ?? null, dir: sort?.dir ?? 1, filter: filter.toLowerCase().trim(), rows: [],
    predicate: null, limit: pageSize };
  const entries = new Map(); // key -> {key, row, sig, text, tr, dirty}
  const liveCols = cols.map((c, i) => (c.live ? i : -1)).filter((i) => i >= 0);
  let attached = []; // the entries in the DOM, in order
  const tbody = h("tbody");
  const emptyRow = h("tr", { class: "empty-row" }, h("td", { colspan: cols.length }, empty));
  const moreButton = h("button", { type: "button", class: "btn btn-sm", onclick: () => { state.limit += pageSize; arrange(); } });
  const moreRow = h("tr", { class: "more-row" }, h("td", { colspan: cols.length }, moreButton));
  const heads = cols.map((c) => h("th", { scope: "col", class: c.class, title: c.title, dataset: { col: c.key } },
    c.sortable ? h("button", { type: "button", class: "sort-btn", onclick: () => toggleSort(c.key) }, c.label) : c.label));
  const table = h("table", { class: "data-table" }, h("thead", null, h("tr", null, heads)), tbody);
  const wrap = h("div", { class: "table-wrap" }, table);

  const valueOf = (c, row) => (c.value ? c.value(row) : row[c.key]);
  const blank = (v) => v === null || v === undefined || v === "";
  const nodes = (content) => [content].flat(Infinity).filter((x) => x !== null && x !== undefined && x !== false);
  function cellContent(c, row) {
    if (c.render) return c.render(row);
    const v = valueOf(c, row);
    return blank(v) ? DASH : String(v);
  }
  function searchText(row) {
    return cols.map((c) => {
      const v = c.filterText ? c.filterText(row) : valueOf(c, row);
      return blank(v) ? "" : String(v);
    }).join(" \u0000 ").toLowerCase();
  }
  function makeRow(e) {
    const tr = h("tr", { dataset: { key: e.key } });
    if (onRow) {
      tr.classList.add("clickable");
      tr.tabIndex = 0;
      tr.addEventListener("click", (ev) => {
        if (!ev.target.closest("button, a, input, select, summary, details")) onRow(e.row, tr, ev);
      });
      tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && ev.target === tr) onRow(e.row, tr, ev); });
    }
    return tr;
  }
  function render(e) {
    if (!e.tr) e.tr = makeRow(e);
    e.tr.replaceChildren(...cols.map((c) => h("td", { class: c.class, dataset: { col: c.key, label: c.label } }, cellContent(c, e.row))));
    e.dirty = false;
  }
  function toggleSort(key) {
    if (state.sortKey === key) state.dir = -state.dir;
    else { state.sortKey = key; state.dir = 1; }
    arrange();
  }
  function compare(a, b) {
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b), undefined, { numeric: true, sensitivity: "base" });
  }
  function arrange() {
    let list = state.rows.map((r) => entries.get(String(rowKey(r))));
    const col = cols.find((c) => c.key === state.sortKey);
    if (col) {
      const keyed = list.map((e) => [valueOf(col, e.row), e]);
      keyed.sort(([a], [b]) => {
        if (blank(a) || blank(b)) return blank(a) === blank(b) ? 0 : blank(a) ? 1 : -1; // blanks last either way
        return state.dir * compare(a, b);
      });
      list = keyed.map(([, e]) => e);
    }
    heads.forEach((th, i) => {
      if (cols[i].key === state.sortKey) th.setAttribute("aria-sort", state.dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
    const matching = list.filter((e) => (!state.filter || e.text.includes(state.filter))
      && (!state.predicate || state.predicate(e.row)));
    const shown = matching.slice(0, state.limit);
    for (const e of shown) if (!e.tr || e.dirty) render(e);
    const same = shown.length === attached.length && shown.every((e, i) => e === attached[i]);
    if (!same) {
      const keep = new Set(shown);
      for (const e of attached) if (!keep.has(e) && e.tr) e.tr.remove();
      // Re-append only from the first row out of place: a poll that changes nothing moves nothing.
      let i = 0;
      while (i < shown.length && i < attached.length && shown[i] === attached[i]) i += 1;
      const frag = document.createDocumentFragment();
      for (const e of shown.slice(i)) frag.append(e.tr);
      tbody.insertBefore(frag, emptyRow.isConnected ? emptyRow : null);
      attached = shown;
    }
    emptyRow.hidden = matching.length > 0;
    emptyRow.firstChild.textContent = state.rows.length && !matching.length ? "No rows match the filter." : empty;
    if (!emptyRow.isConnected) tbody.append(emptyRow);
    moreRow.hidden = matching.length <= shown.length;
    moreButton.textContent = `Show ${fmtInt(Math.min(pageSize, matching.length - shown.length))} more (${fmtInt(shown.length)} of ${fmtInt(matching.length)} shown)`;
    tbody.append(moreRow);
    wrap.dataset.rows = String(matching.length);
  }
  function update(newRows) {
    state.rows = newRows || [];
    const seen = new Set();
    for (const row of state.rows) {
      const key = String(rowKey(row));
      seen.add(key);
      const sig = JSON.stringify(row);
      let e = entries.get(key);
      if (!e) {
        e = { key, row, sig: null, text: "", tr: null, dirty: true };
        entries.set(key, e);
      }
      e.row = row;
      if (e.sig !== sig) {
        e.sig = sig;
        e.text = searchText(row);
        e.dirty = true;
      } else if (e.tr && !e.dirty && e.tr.isConnected) {
        // Unchanged data, but some cells depend on the clock ("12 s ago").
        for (const i of liveCols) e.tr.children[i].replaceChildren(...nodes(cellContent(cols[i], row)));
      }
    }
    for (const [key, e] of entries) {
      if (!seen.has(key)) {
        if (e.tr) e.tr.remove();
        entries.delete(key);
      }
    }
    attached = attached.filter((e) => entries.get(e.key) === e);
    arrange();
  }
  // Marks a table wider than its box (it scrolls sideways): its row actions then show a shadow.
  const overflow = new ResizeObserver(() => { wrap.toggleAttribute("data-overflow", wrap.scrollWidth > wrap.clientWidth + 1); });
  overflow.observe(wrap);
  overflow.observe(table);
  wrap.update = update;
  wrap.setFilter = (text) => { state.filter = (text || "").toLowerCase().trim(); state.limit = pageSize; arrange(); };
  wrap.setPredicate = (fn) => { state.predicate = fn || null; state.limit = pageSize; arrange(); };
  wrap.count = () => Number(wrap.dataset.rows || 0);
  wrap.el = wrap;
  update(rows);
  return wrap;
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    toast("Copied to the clipboard.", "ok");
  } catch (err) {
    toast("Could not copy: select the text and copy it yourself.", "error");
  }
}
