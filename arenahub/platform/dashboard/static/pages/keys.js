// Keys: the consumer keys with their limits, credit and last-24-hour usage; create (the secret is
// shown once), top up, edit limits, revoke / re-enable, rotate and delete.

import {
  api, confirmDialog, copyText, dataTable, field, fmtInt, fmtMicros, fmtTime, fmtUsd, h, openDialog, pill,
  showFieldError, toast,
} from "../ui.js";

const POLL_MS = 15000;
const DAY_MS = 86400000;

const enc = encodeURIComponent;
const expired = (k) => Boolean(k.expires_at) && new Date(k.expires_at).getTime() <= Date.now();
const status = (k) => (k.disabled ? "disabled" : expired(k) ? "expired" : "active");
const tokens = (u) => (u ? (u.prompt_tokens || 0) + (u.completion_tokens || 0) : null);

function statusCell(k) {
  const s = status(k);
  const kind = { active: "ok", disabled: "bad", expired: "warn" }[s];
  const label = { active: "Active", disabled: "Revoked", expired: "Expired" }[s];
  return [pill(label, kind), k.expires_at && s !== "expired"
    ? h("div", { class: "cell-sub" }, `expires ${fmtTime(k.expires_at)}`) : null];
}

function limitsText(k) {
  const parts = [k.rpm ? `${fmtInt(k.rpm)} rpm` : null, k.tpm ? `${fmtInt(k.tpm)} tpm` : null,
    k.max_concurrent ? `${fmtInt(k.max_concurrent)} at once` : null].filter(Boolean);
  return parts.length ? parts.join(" · ") : "No limits";
}

function modelsCell(k) {
  const models = k.allowed_models;
  if (!models) return h("span", { class: "muted nowrap" }, "All models");
  if (!models.length) return pill("None", "warn", "This key may use no model");
  const shown = models.slice(0, 3).map((m) => h("code", { class: "model-tag" }, m));
  return h("div", { class: "model-tags", title: models.join(", ") }, shown,
    models.length > 3 ? h("span", { class: "cell-sub" }, `+${models.length - 3}`) : null);
}

function creditCell(k) {
  const c = k.credit || {};
  if (k.unlimited) return pill("Unlimited", "info", c.balance_micros ? `balance ${fmtUsd(c.balance_usd)}` : "no credit limit");
  const low = Number(c.balance_micros) - Number(c.held_micros || 0) <= 0;
  return h("div", null, h("span", { class: low ? "credit credit-low" : "credit", dataset: { credit: k.id } }, fmtUsd(c.available_usd)),
    Number(c.held_micros) ? h("div", { class: "cell-sub" }, `${fmtUsd(c.held_usd)} held`) : null);
}

// -- dialogs ------------------------------------------------------------------------------------

function secretBox(secret) {
  return h("div", { class: "secret-box" }, h("strong", null, "Secret key"),
    h("div", { class: "secret-row" }, h("code", { dataset: { secret: "key" } }, secret),
      h("button", { type: "button", class: "btn btn-sm", onclick: () => copyText(secret) }, "Copy")),
    h("small", { class: "muted" }, `Use it as the OpenAI API key with base URL ${window.location.origin}/v1`));
}

function showSecret(title, key, secret) {
  return openDialog({
    title, wide: true,
    body: [h("p", null, `Key "${key.name}" (${key.key_prefix}…).`), secretBox(secret),
      h("div", { class: "warning" }, "Copy it now: it is shown only this once. The platform keeps only a hash of it.")],
    actions: [{ label: "Done", value: null, kind: "primary" }],
  });
}

// Text of an ISO time for a datetime-local input, and back (local time, as the operator reads it).
function localInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}
const fromLocal = (text) => (text ? new Date(text).toISOString() : null);
const modelList = (text) => (text ? text.split(/[\s,]+/).filter(Boolean) : null);

function limitFields(k = {}) {
  return [
    field({ label: "Requests per minute", name: "rpm", type: "number", min: 1, value: k.rpm, placeholder: "no limit" }),
    field({ label: "Tokens per minute", name: "tpm", type: "number", min: 1, value: k.tpm, placeholder: "no limit" }),
    field({ label: "Concurrent requests", name: "max_concurrent", type: "number", min: 1, value: k.max_concurrent,
      placeholder: "no limit" }),
    field({ label: "Expires", name: "expires_at", type: "datetime-local", value: localInput(k.expires_at),
      hint: "Empty: never." }),
    h("div", { class: "span-2" }, field({ label: "Models", name: "models", value: (k.allowed_models || []).join(", "),
      placeholder: "all models", hint: "Comma-separated model names; empty: every model." })),
  ];
}

// Runs `call`; an API error naming a field is shown next to it (the dialog stays open).
async function submit(d, call) {
  try {
    return await call(d.values());
  } catch (err) {
    if (showFieldError(d.form, err)) return false;
    throw err;
  }
}

async function createKey(after) {
  const credit = field({ label: "Starting credit (USD)", name: "credit", placeholder: "e.g. 10.00",
    hint: "The key spends from this balance; top it up later." });
  const billing = field({ label: "Billing", name: "billing", type: "select", value: "unlimited", options: [
    { value: "unlimited", label: "Unlimited (no credit limit)" }, { value: "prepaid", label: "Prepaid credit" }] });
  credit.hidden = true;
  billing.querySelector("select").addEventListener("change", (e) => { credit.hidden = e.target.value !== "prepaid"; });
  const body = h("div", { class: "form-grid key-form" },
    field({ label: "Name", name: "name", required: true, placeholder: "e.g. team-search" }),
    field({ label: "Email", name: "email", type: "email", placeholder: "optional" }),
    limitFields(), billing, credit);
  const made = await openDialog({
    title: "Create key", body, wide: true,
    actions: [{ label: "Cancel", value: null }, { label: "Create key", kind: "primary", submit: true, onClick: (d) => submit(d, (v) => {
      const prepaid = v.billing === "prepaid";
      if (prepaid && !v.credit) {
        showFieldError(d.form, { param: "credit", message: "Enter the starting credit, e.g. 10.00." });
        return false;
      }
      return api("POST", "/keys", { name: v.name, email: v.email, rpm: v.rpm, tpm: v.tpm, max_concurrent: v.max_concurrent,
        models: modelList(v.models), expires_at: fromLocal(v.expires_at), credit: prepaid ? v.credit : null,
        unlimited: !prepaid });
    }) }],
  });
  if (!made) return;
  after();
  await showSecret("Key created", made, made.key);
}

async function editKey(k, after) {
  const body = h("div", { class: "form-grid key-form" },
    field({ label: "Name", name: "name", required: true, value: k.name }),
    field({ label: "Email", name: "email", type: "email", value: k.email }),
    limitFields(k),
    h("div", { class: "span-2" }, field({ label: "Unlimited credit (no balance needed)", name: "unlimited", type: "checkbox",
      value: k.unlimited })));
  const saved = await openDialog({
    title: `Edit ${k.name}`, body, wide: true,
    actions: [{ label: "Cancel", value: null }, { label: "Save", kind: "primary", submit: true, onClick: (d) => submit(d, (v) =>
      api("PATCH", `/keys/${enc(k.id)}`, { name: v.name, email: v.email, rpm: v.rpm, tpm: v.tpm,
        max_concurrent: v.max_concurrent, models: modelList(v.models), expires_at: fromLocal(v.expires_at),
        unlimited: v.unlimited })) }],
  });
  if (saved) { toast(`Saved ${saved.name}: it applies to the next request.`, "ok"); after(); }
}

async function topUp(k, after) {
  const c = k.credit || {};
  const body = [
    h("p", null, k.unlimited ? "This key has unlimited credit; a top-up still adds to its balance."
      : `Available now: ${fmtUsd(c.available_usd)}.`),
    field({ label: "Amount (USD)", name: "amount", required: true, placeholder: "e.g. 25.00" }),
    field({ label: "Note", name: "note", placeholder: "optional, e.g. invoice 1042" }),
  ];
  const done = await openDialog({
    title: `Top up ${k.name}`, body,
    actions: [{ label: "Cancel", value: null }, { label: "Add credit", kind: "primary", submit: true, onClick: (d) => submit(d, (v) =>
      api("POST", `/keys/${enc(k.id)}/top-ups`, { amount: v.amount, note: v.note })) }],
  });
  if (done) { toast(`Added ${fmtUsd(done.amount_usd)} to ${k.name}: ${fmtUsd(done.credit.available_usd)} available.`, "ok"); after(); }
}

async function setDisabled(k, disabled, after) {
  if (disabled && !await confirmDialog({ title: `Revoke ${k.name}?`, confirm: "Revoke", danger: true,
    message: "Requests with this key are refused from now on. You can enable it again later." })) return;
  await api("PATCH", `/keys/${enc(k.id)}`, { disabled });
  toast(disabled ? `${k.name} is revoked.` : `${k.name} is enabled again.`, "ok");
  after();
}

async function rotate(k, after) {
  if (!await confirmDialog({ title: `Rotate the secret of ${k.name}?`, confirm: "Rotate", danger: true,
    message: "A new secret replaces the old one, which stops working at once." })) return;
  const made = await api("POST", `/keys/${enc(k.id)}/rotate`);
  after();
  await showSecret("New secret", made, made.key);
}

async function remove(k, after) {
  if (!await confirmDialog({ title: `Delete ${k.name}?`, confirm: "Delete", danger: true,
    message: ["The key stops working at once and leaves this list.", "Its request records and billing history stay."] })) return;
  await api("DELETE", `/keys/${enc(k.id)}`);
  toast(`${k.name} is deleted.`, "ok");
  after();
}

// -- the page -----------------------------------------------------------------------------------

function actionsCell(k, act) {
  const disabled = k.disabled;
  const list = h("div", { class: "menu-list" },
    h("a", { href: `#/requests?key_id=${enc(k.id)}` }, "View requests"),
    h("button", { type: "button", onclick: () => act(rotate, k) }, "Rotate secret…"),
    h("button", { type: "button", class: "danger", onclick: () => act(remove, k) }, "Delete…"));
  const summary = h("summary", { class: "btn btn-sm", "aria-label": `More actions for ${k.name}` }, "More");
  const menu = h("details", { class: "menu" }, summary, list);
  // Fixed, next to its button: the table scrolls and would clip a menu inside it.
  menu.addEventListener("toggle", () => {
    if (!menu.open) return;
    const r = summary.getBoundingClientRect();
    const below = r.bottom + 4 + list.offsetHeight <= window.innerHeight;
    list.style.top = `${below ? r.bottom + 4 : r.top - 4 - list.offsetHeight}px`;
    list.style.left = `${Math.max(8, r.right - list.offsetWidth)}px`;
  });
  return h("div", { class: "row-actions" },
    h("button", { type: "button", class: "btn btn-sm", onclick: () => act(topUp, k) }, "Top up"),
    h("button", { type: "button", class: "btn btn-sm", onclick: () => act(editKey, k) }, "Edit"),
    disabled ? h("button", { type: "button", class: "btn btn-sm", onclick: () => act((x, a) => setDisabled(x, false, a), k) }, "Enable")
      : h("button", { type: "button", class: "btn btn-sm", onclick: () => act((x, a) => setDisabled(x, true, a), k) }, "Revoke"),
    menu);
}

export default {
  id: "keys",
  title: "Keys",
  async mount(root, ctx) {
    let load = async () => {};
    const act = (fn, k) => {
      root.querySelectorAll("details.menu[open]").forEach((m) => { m.open = false; });
      fn(k, () => load()).catch((err) => toast(err.message || String(err), "error"));
    };
    const columns = [
      { key: "name", label: "Key", filterText: (k) => `${k.name} ${k.email || ""} ${k.id} ${k.key_prefix}`,
        render: (k) => [h("div", { class: "cell-main" }, k.name), h("div", { class: "cell-sub", title: k.id },
          h("code", null, `${k.key_prefix}…`), k.email ? ` · ${k.email}` : null)] },
      { key: "status", label: "Status", value: status, render: statusCell },
      { key: "limits", label: "Limits", value: limitsText,
        render: (k) => h("span", { class: limitsText(k) === "No limits" ? "muted limits" : "limits" }, limitsText(k)) },
      { key: "models", label: "Models", value: (k) => (k.allowed_models || []).join(", "), render: modelsCell },
      { key: "credit", label: "Credit", class: "num", value: (k) => (k.unlimited ? Infinity : Number(k.credit?.balance_micros ?? 0) - Number(k.credit?.held_micros ?? 0)),
        filterText: (k) => (k.unlimited ? "unlimited" : k.credit?.available_usd), render: creditCell },
      { key: "requests", label: "Requests", title: "Requests in the last 24 hours", class: "num", value: (k) => k.usage?.requests ?? 0,
        render: (k) => h("a", { href: `#/requests?key_id=${enc(k.id)}`, title: "Open its requests" }, fmtInt(k.usage?.requests ?? 0)) },
      { key: "tokens", label: "Tokens", title: "Tokens in the last 24 hours", class: "num", value: (k) => tokens(k.usage) ?? 0,
        render: (k) => fmtInt(tokens(k.usage) ?? 0) },
      { key: "cost", label: "Cost", title: "Charged in the last 24 hours", class: "num", value: (k) => k.usage?.cost ?? 0,
        render: (k) => fmtMicros(k.usage?.cost ?? 0) },
      { key: "actions", label: "", sortable: false, class: "num", filterText: () => "", render: (k) => actionsCell(k, act) },
    ];
    const table = dataTable({ columns, empty: "No keys yet: create one to let a consumer in.", sort: { key: "name", dir: 1 },
      rowKey: (k) => k.id });
    const count = h("span", { class: "muted table-count" });
    const search = h("input", { type: "search", class: "search", placeholder: "Filter keys", "aria-label": "Filter keys",
      oninput: (e) => { table.setFilter(e.target.value); } });
    ctx.actions.append(h("button", { type: "button", class: "btn btn-primary",
      onclick: () => createKey(() => load()).catch((err) => toast(err.message || String(err), "error")) }, "Create key"));
    root.append(h("div", { class: "table-tools" }, search, h("span", { class: "grow" }), count), table);
    // Menus close when the operator clicks elsewhere.
    const closeMenus = (e) => root.querySelectorAll("details.menu[open]").forEach((m) => { if (!m.contains(e.target)) m.open = false; });
    const closeAll = () => root.querySelectorAll("details.menu[open]").forEach((m) => { m.open = false; });
    document.addEventListener("click", closeMenus);
    document.addEventListener("scroll", closeAll, true);
    ctx.onLeave(() => { document.removeEventListener("click", closeMenus); document.removeEventListener("scroll", closeAll, true); });

    load = async () => {
      const until = new Date();
      const [keys, sums] = await Promise.all([api("GET", "/keys"),
        api("GET", "/analytics/summaries", null, { query: { by: "key", since: new Date(until - DAY_MS).toISOString(),
          until: until.toISOString() } })]);
      const usage = new Map(sums.data.filter((s) => s.id).map((s) => [s.id, s]));
      // The usage goes into the rows: a row is drawn again only when its data changes.
      table.update(keys.data.map((k) => ({ ...k, usage: usage.get(k.id) || null })));
      const active = keys.data.filter((k) => status(k) === "active").length;
      count.textContent = `${keys.data.length} ${keys.data.length === 1 ? "key" : "keys"} · ${active} active`;
      root.dataset.loaded = "true";
    };
    ctx.every(POLL_MS, load);
  },
};
