// Settings: the live settings (routing, model catalogue, queue, timeouts, retention, prompt storage) with their
// defaults and overrides, model prices, the dashboard password, and the platform's versions.

import {
  api, dataTable, field, fmtDuration, fmtInt, fmtTime, fmtUsd, h, openDialog, pill, showFieldError, toast,
} from "../ui.js";

const enc = encodeURIComponent;

// The live settings, grouped as the page shows them: [name, label, input attributes].
const GROUPS = [
  ["Routing", [
    ["routing_strategy", "Routing strategy", { type: "select" }],
    ["sticky_routing", "Sticky routing", { type: "checkbox" }],
    ["max_attempts", "Max attempts", { type: "number", min: 1, max: 10, step: 1 }],
    ["model_catalogue", "Model catalogue", { type: "checkbox" }],
  ]],
  ["Queue", [
    ["queue_size", "Queue size", { type: "number", min: 0, max: 100000, step: 1, unit: "requests" }],
    ["queue_timeout_seconds", "Queue timeout", { type: "number", min: 0, max: 3600, step: "any", unit: "s" }],
  ]],
  ["Timeouts", [
    ["first_byte_timeout_seconds", "First-byte timeout", { type: "number", min: 0.01, max: 3600, step: "any", unit: "s" }],
    ["idle_timeout_seconds", "Idle timeout", { type: "number", min: 0.01, max: 3600, step: "any", unit: "s" }],
    ["total_timeout_seconds", "Total timeout", { type: "number", min: 0.01, max: 3600, step: "any", unit: "s" }],
  ]],
  ["Records", [
    ["record_retention_days", "Record retention", { type: "number", min: 0, max: 3650, step: 1, unit: "days" }],
    ["store_prompts", "Store prompts and answers", { type: "checkbox" }],
  ]],
];
const STRATEGY_LABELS = { "": "Automatic", least_load: "Least load",
  round_robin: "Round robin", random: "Random (weighted)", fastest: "Fastest", priority: "Priority" };
const PRIVACY = "Prompts and answers can hold personal or confidential data. While this is on, every request's "
  + "prompt and answer is written to the database and shown in the request log to anyone signed in here; they are "
  + "deleted with the raw records after the retention period. Turning it off stops storing new ones.";

const CATALOGUE = "Turning it on stops at once every model that is not listed: list the models and approve the "
  + "offers that wait first, on ";

function shown(name, value) {
  if (typeof value === "boolean") return value ? "on" : "off";
  if (name === "routing_strategy") return value ? (STRATEGY_LABELS[value] || value) : "automatic";
  return String(value);
}

// -- live settings ------------------------------------------------------------------------------

function settingsPanel(onLoaded) {
  const form = h("form", { class: "settings-form", novalidate: true });
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  const save = h("button", { type: "submit", class: "btn btn-primary", disabled: true }, "Save changes");
  const discard = h("button", { type: "button", class: "btn", disabled: true, onclick: () => render(view) }, "Discard");
  const status = h("span", { class: "muted" });
  let view = null;

  function control(name, attrs) {
    const value = view.values[name];
    const id = `setting-${name}`;
    if (attrs.type === "checkbox") {
      return h("label", { class: "switch", for: id }, h("input", { id, name, type: "checkbox", checked: Boolean(value) }),
        h("span", { class: "switch-text" }, value ? "On" : "Off"));
    }
    if (attrs.type === "select") {
      return h("select", { id, name }, (view.choices[name] || []).map((c) =>
        h("option", { value: c, selected: c === value }, STRATEGY_LABELS[c] || c)));
    }
    return h("span", { class: "with-unit" }, h("input", { id, name, type: "number", min: attrs.min, max: attrs.max, step: attrs.step,
      value: String(value), required: true }), attrs.unit ? h("span", { class: "unit" }, attrs.unit) : null);
  }

  function settingRow(name, label, attrs) {
    const overridden = view.overridden.includes(name);
    const state = overridden
      ? [pill("Overridden", "info", `Set here; the flag/environment value is ${shown(name, view.defaults[name])}`),
        h("button", { type: "button", class: "btn btn-sm btn-ghost", dataset: { reset: name }, onclick: () => reset(name, label) },
          "Reset to default")]
      : pill("Default", "muted", "From the flags, environment or built-in default");
    return h("div", { class: "setting", dataset: { setting: name, overridden: String(overridden) } },
      h("div", { class: "setting-text" }, h("label", { for: `setting-${name}`, class: "setting-label" }, label),
        h("div", { class: "setting-desc" }, view.descriptions[name] || ""),
        overridden ? h("div", { class: "setting-default" }, `Default: ${shown(name, view.defaults[name])}`) : null,
        name === "store_prompts" ? h("div", { class: "warning privacy" }, h("strong", null, "Privacy: "), PRIVACY) : null,
        name === "model_catalogue" ? h("div", { class: "setting-desc catalogue-note" }, CATALOGUE,
          h("a", { href: "#/models" }, "the Models page"), ".") : null),
      h("div", { class: "setting-control", dataset: { field: name } }, control(name, attrs)),
      h("div", { class: "setting-state" }, state));
  }

  function render(next) {
    view = next;
    form.replaceChildren(...GROUPS.map(([title, items]) => h("fieldset", { class: "setting-group" }, h("legend", null, title),
      items.filter(([name]) => name in view.values).map(([name, label, attrs]) => settingRow(name, label, attrs)))),
    error, h("div", { class: "form-actions" }, status, h("span", { class: "grow" }), discard, save));
    changed();
    onLoaded();
  }

  function read(el) {
    if (el.type === "checkbox") return el.checked;
    if (el.type === "number") return el.value === "" ? NaN : Number(el.value);
    return el.value;
  }
  function changes() {
    const out = {};
    for (const el of form.querySelectorAll("input[name], select[name]")) {
      const v = read(el);
      if (v !== view.values[el.name]) out[el.name] = v;
    }
    return out;
  }
  function changed() {
    const n = Object.keys(changes()).length;
    save.disabled = discard.disabled = n === 0;
    status.textContent = n ? `${n} unsaved ${n === 1 ? "change" : "changes"}` : "Changes apply at once to new requests.";
    for (const el of form.querySelectorAll(".switch input")) el.nextElementSibling.textContent = el.checked ? "On" : "Off";
  }
  function fail(err) {
    if (!showFieldError(form, err)) { error.textContent = err.message; error.hidden = false; }
  }
  async function send(patch, done) {
    error.hidden = true;
    showFieldError(form, null);
    try {
      render(await api("PATCH", "/settings", patch));
      toast(done, "ok");
    } catch (err) {
      fail(err);
    }
  }
  function reset(name, label) {
    send({ [name]: null }, `${label} is back to its default.`);
  }
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const patch = changes();
    const bad = Object.entries(patch).find(([, v]) => typeof v === "number" && Number.isNaN(v));
    if (bad) { fail({ param: bad[0], message: "Enter a number." }); return; }
    send(patch, "Settings saved: they apply at once.");
  });
  const el = h("section", { class: "panel", dataset: { panel: "settings" } },
    h("div", { class: "panel-head" }, h("h2", null, "Routing, queue, timeouts and records"),
      h("span", { class: "muted table-count" }, "Kept across restarts; every platform process on the database follows within a second.")),
    h("div", { class: "panel-body" }, form));
  return { el, load: async () => render(await api("GET", "/settings")) };
}

// -- prices -------------------------------------------------------------------------------------

async function editPrice(price, after) {
  const isNew = !price;
  const p = price || {};
  const body = h("div", { class: "form-grid price-form" },
    isNew ? h("div", { class: "span-2" }, field({ label: "Model", name: "model", required: true, placeholder: "e.g. gpt-4o" })) : null,
    field({ label: "Prompt price", name: "prompt", required: true, value: p.prompt_per_1m_usd, placeholder: "e.g. 2.50",
      hint: "USD per 1M prompt tokens" }),
    field({ label: "Completion price", name: "completion", required: true, value: p.completion_per_1m_usd, placeholder: "e.g. 10.00",
      hint: "USD per 1M completion tokens" }),
    field({ label: "Image price", name: "image", value: p.per_image_usd, placeholder: "0", hint: "USD per image" }));
  const saved = await openDialog({
    title: isNew ? "Add a model price" : `Price of ${p.model}`, body,
    actions: [{ label: "Cancel", value: null }, { label: "Save price", kind: "primary", submit: true, async onClick(d) {
      const v = d.values();
      try {
        return await api("PUT", `/prices/${(isNew ? v.model : p.model).split("/").map(enc).join("/")}`,
          { prompt: v.prompt, completion: v.completion, image: v.image || "0" });
      } catch (err) {
        if (showFieldError(d.form, err)) return false;
        throw err;
      }
    } }],
  });
  if (saved) { toast(`${saved.model}: the new price applies to the next request.`, "ok"); after(); }
}

function pricesPanel(onLoaded) {
  const table = dataTable({ rowKey: (p) => p.model, sort: { key: "model", dir: 1 }, empty: "No prices.",
    columns: [
      { key: "model", label: "Model", render: (p) => h("code", null, p.model) },
      { key: "prompt", label: "Prompt / 1M tokens", class: "num", value: (p) => Number(p.prompt_per_1m_usd), render: (p) => fmtUsd(p.prompt_per_1m_usd) },
      { key: "completion", label: "Completion / 1M tokens", class: "num", value: (p) => Number(p.completion_per_1m_usd),
        render: (p) => fmtUsd(p.completion_per_1m_usd) },
      { key: "image", label: "Per image", class: "num", value: (p) => Number(p.per_image_usd), render: (p) => fmtUsd(p.per_image_usd) },
      { key: "default", label: "Source", value: (p) => (p.default ? "default" : "set here"),
        render: (p) => (p.default ? pill("Default", "muted") : pill("Set here", "info")) },
      { key: "edit", label: "", sortable: false, class: "num", filterText: () => "",
        render: (p) => h("button", { type: "button", class: "btn btn-sm", "aria-label": `Edit the price of ${p.model}`,
          onclick: () => editPrice(p, load).catch((err) => toast(err.message, "error")) }, "Edit") },
    ] });
  const fallback = h("p", { class: "muted price-fallback" });
  const search = h("input", { type: "search", class: "search", placeholder: "Filter models", "aria-label": "Filter models",
    oninput: (e) => table.setFilter(e.target.value) });
  async function load() {
    const prices = await api("GET", "/prices");
    table.update(prices.data);
    const f = prices.fallback;
    fallback.textContent = `Models without a price cost ${fmtUsd(f.prompt_per_1m_usd)} per 1M prompt tokens, `
      + `${fmtUsd(f.completion_per_1m_usd)} per 1M completion tokens and ${fmtUsd(f.per_image_usd)} per image.`;
    onLoaded();
  }
  const el = h("section", { class: "panel", dataset: { panel: "prices" } },
    h("div", { class: "panel-head" }, h("h2", null, "Prices"),
      h("div", { class: "panel-tools" }, search, h("button", { type: "button", class: "btn btn-primary btn-sm",
        onclick: () => editPrice(null, load).catch((err) => toast(err.message, "error")) }, "Add model"))),
    h("div", { class: "panel-body" }, fallback, table));
  return { el, load };
}

// -- password and versions ----------------------------------------------------------------------

function passwordPanel() {
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  const form = h("form", { class: "stack-form", novalidate: true },
    field({ label: "Current password", name: "current_password", type: "password", autocomplete: "current-password",
      hint: "Leave empty when no password is set yet." }),
    field({ label: "New password", name: "new_password", type: "password", required: true, autocomplete: "new-password",
      hint: "At least 12 characters." }),
    field({ label: "Repeat the new password", name: "repeat_password", type: "password", required: true, autocomplete: "new-password" }),
    error,
    h("p", { class: "muted" }, "Saving signs out every dashboard session, this one included: sign in again with the new password "
      + "(the admin token keeps working)."),
    h("div", { class: "form-actions" }, h("span", { class: "grow" }), h("button", { type: "submit", class: "btn btn-primary" }, "Set password")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.hidden = true;
    const f = form.elements;
    const fail = (err) => { if (!showFieldError(form, err)) { error.textContent = err.message; error.hidden = false; } };
    if (f.new_password.value !== f.repeat_password.value) {
      fail({ param: "repeat_password", message: "The two new passwords differ." });
      return;
    }
    try {
      await api("PUT", "/dashboard-password", { new_password: f.new_password.value,
        current_password: f.current_password.value || null });
    } catch (err) {
      fail(err);
      return;
    }
    toast("Password set. Every session has ended: sign in again.", "ok");
    setTimeout(() => window.location.assign("/dashboard/login"), 1200);
  });
  return h("section", { class: "panel", dataset: { panel: "password" } },
    h("div", { class: "panel-head" }, h("h2", null, "Dashboard password")),
    h("div", { class: "panel-body" }, h("p", { class: "muted" }, "Sign in with a password instead of the admin token."), form));
}

function aboutPanel() {
  const list = h("dl", { class: "kv" });
  const el = h("section", { class: "panel", dataset: { panel: "about" } },
    h("div", { class: "panel-head" }, h("h2", null, "Platform")), h("div", { class: "panel-body" }, list));
  async function load() {
    const s = await api("GET", "/status");
    const row = (label, value, name) => [h("dt", null, label), h("dd", { dataset: { about: name } }, value)];
    list.replaceChildren(
      ...row("Platform version", h("code", null, s.version || "—"), "version"),
      ...row("Current client version", h("code", null, s.current_client_version || "—"), "client_version"),
      ...row("Started", `${fmtTime(s.started_at)} (up ${fmtDuration(s.uptime_seconds)})`, "started"),
      ...row("Routing strategy in use", s.routing_strategy || "—", "strategy"),
      ...row("Clients", `${fmtInt(s.connected_clients)} connected, ${fmtInt(s.healthy_clients)} healthy`, "clients"),
      ...row("Requests", `${fmtInt(s.active_requests)} in flight, ${fmtInt(s.queue_depth)} queued`, "load"));
  }
  return { el, load };
}

export default {
  id: "settings",
  title: "Settings",
  async mount(root, ctx) {
    let pending = 2;
    const loaded = () => { pending -= 1; if (pending <= 0) root.dataset.loaded = "true"; };
    let first = true;
    const settings = settingsPanel(() => { if (first) { first = false; loaded(); } });
    let firstPrices = true;
    const prices = pricesPanel(() => { if (firstPrices) { firstPrices = false; loaded(); } });
    const about = aboutPanel();
    root.append(settings.el, prices.el, h("div", { class: "halves" }, about.el, passwordPanel()));
    const fail = (what) => (err) => toast(`${what}: ${err.message}`, "error");
    await Promise.all([settings.load().catch(fail("Settings")), prices.load().catch(fail("Prices"))]);
    ctx.every(10000, about.load);
  },
};
