// Clients: the live table (polled; in a cluster, with the instance each client is connected to),
// "Register New Client", and a detail panel with each client's actions: download package, regenerate
// API key, edit limits, drain/undrain, clear maintenance, disable/enable, delete; and the models it
// offers that wait for approval (Approve / Refuse).

import {
  api, confirmDialog, copyText, dataTable, download, field, fmtAgo, fmtBytes, fmtInt, fmtMs, fmtPct, fmtTime,
  h, openDialog, pill, toast,
} from "../ui.js";

const POLL_MS = 5000;
const MB = 1024 * 1024;
const DEFAULT_BRIDGE_URL = "http://127.0.0.1:5102";

const isConnected = (c) => Boolean(c.connected ?? (c.live && c.live.connected));
const isHealthy = (c) => Boolean(c.healthy ?? (c.live && c.live.healthy));
const version = (c) => c.version || (c.live && c.live.client_version) || null;
const capacity = (c) => (c.live && c.live.max_concurrent) || c.max_concurrent;
const inMaintenance = (c) => Boolean(c.maintenance_reason || (c.health && c.health.maintenance));
const draining = (c) => Boolean(c.draining || (c.live && c.live.draining));

function statusRank(c) {
  if (c.disabled) return 5;
  if (!isConnected(c)) return 4;
  if (!isHealthy(c)) return 3;
  if (draining(c) || inMaintenance(c)) return 2;
  return 1;
}

function needsAttention(c) {
  return !c.disabled && (!isConnected(c) || !isHealthy(c) || inMaintenance(c) || c.outdated || !!c.conflict
    || (c.health && c.health.breaker === "open"));
}

function statusPills(c) {
  const pills = [];
  if (c.disabled) pills.push(pill("Disabled", "muted"));
  else if (isConnected(c)) {
    pills.push(pill("Connected", "ok"));
    pills.push(isHealthy(c) ? pill("Healthy", "ok") : pill("Unhealthy", "bad"));
  } else pills.push(pill("Not connected", "muted"));
  if (draining(c)) {
    const by = c.live && c.live.drained_by === "client" ? "by the client" : "by an admin";
    pills.push(pill("Draining", "info", `Drained ${by}${c.live && c.live.drain_reason ? `: ${c.live.drain_reason}` : ""}`));
  }
  if (inMaintenance(c)) pills.push(pill("Maintenance", "warn", c.maintenance_reason || ""));
  if (c.health && c.health.breaker === "open") pills.push(pill("Breaker open", "bad", "Too many failures: paused for a while"));
  if (c.conflict) pills.push(pill("Two copies", "warn", c.conflict));
  const cell = [h("div", { class: "pills" }, pills)];
  if (c.conflict) cell.push(h("div", { class: "cell-sub refusal", dataset: { conflict: "" } }, c.conflict));
  if (!isConnected(c) && c.last_refusal) {
    cell.push(h("div", { class: "cell-sub refusal", title: fmtTime(c.last_refusal.at) },
      `Refused ${fmtAgo(c.last_refusal.at)}: ${c.last_refusal.message}`));
  }
  return cell;
}

// What the status cell says, as plain text for the filter box (no elements built).
function statusWords(c) {
  const words = [c.disabled ? "disabled" : isConnected(c) ? `connected ${isHealthy(c) ? "healthy" : "unhealthy"}` : "not connected"];
  if (draining(c)) words.push("draining");
  if (inMaintenance(c)) words.push("maintenance");
  if (c.health && c.health.breaker === "open") words.push("breaker open");
  if (c.conflict) words.push(`two copies ${c.conflict}`);
  if (!isConnected(c) && c.last_refusal) words.push(`refused ${c.last_refusal.message}`);
  return words.join(" ");
}

// What a person reads for each state the bridge reports (arenahub/protocol/frames.py SESSION_STATES).
const SESSION_STATES = {
  ready: ["OK", "ok"],
  unknown: ["Unknown", "muted"],
  bridge_unreachable: ["Bridge down", "bad"],
  no_tab: ["No arena.ai tab", "bad"],
  userscript_outdated: ["Old userscript", "bad"],
  blocked: ["Blocked by Cloudflare", "bad"],
  cloudflare_challenge: ["Cloudflare check", "warn"],
  verification_required: ["Verification required", "warn"],
  signed_out: ["Signed out", "bad"],
  clock_skew: ["Clock off", "bad"],
  site_changed: ["Site changed", "bad"],
  session_invalid: ["Session invalid", "bad"],
  rate_limited: ["Rate limited", "warn"],
};

// [label, pill kind, detail] of the arena.ai session a connected client's bridge reports.
function sessionState(c) {
  const s = c.live && c.live.session;
  if (!isConnected(c)) return null;
  if (!s) return ["Unknown", "muted", ""];
  const why = s.action || s.last_error || "";
  if (s.bridge_reachable === false) return ["Bridge down", "bad", why];
  if (s.state && SESSION_STATES[s.state]) {
    const [label, kind] = SESSION_STATES[s.state];
    const until = s.state === "rate_limited" && s.rate_limited_until ? ` until ${fmtTime(s.rate_limited_until)}` : "";
    return [label, kind, why + until];
  }
  if (s.browser_connected === false) return ["No arena.ai tab", "bad", why];
  if (s.needs_verification) return ["Needs verification", "warn", why];
  if (s.rate_limited_until && s.rate_limited_until * 1000 > Date.now()) return ["Rate limited", "warn", `until ${fmtTime(s.rate_limited_until)}`];
  if (s.session_valid === false) return ["Session invalid", "bad", why];
  if (s.session_valid === true || s.browser_connected === true) return ["OK", "ok", why];
  return ["Unknown", "muted", why];
}

// The bridge's checks of its tab, one line each (what `arenahub bridge doctor` prints).
function checksList(s) {
  const marks = { true: "ok", false: "failed", null: "warning" };
  return h("ul", { class: "checks" }, ...s.checks.map((c) => h("li", { class: `check check-${marks[String(c.ok ?? null)]}` },
    h("strong", null, `${c.name}: `), c.detail || "", c.ok === true || !c.advice ? "" : ` — ${c.advice}`)));
}

const sessionText = (c) => (sessionState(c) || [""])[0];

function sessionCell(c) {
  const state = sessionState(c);
  return state ? pill(state[0], state[1], state[2]) : h("span", { class: "muted" }, "—");
}

function loadCell(c) {
  const active = (c.live && c.live.active_requests) || 0;
  const cap = capacity(c) || 0;
  if (!isConnected(c)) return h("span", { class: "muted" }, `— / ${fmtInt(cap)}`);
  const meter = h("span", { class: active >= cap ? "meter meter-full" : "meter" }, h("span"));
  meter.firstChild.style.width = `${cap ? Math.min(100, (active / cap) * 100) : 0}%`;
  return h("span", { class: "nowrap" }, `${fmtInt(active)} / ${fmtInt(cap)}`, meter);
}

function successCell(c) {
  const s = c.stats_1h;
  if (!s || !s.requests) return h("span", { class: "muted" }, "no requests");
  const rate = s.success_rate;
  const tone = rate >= 0.99 ? "ok" : rate >= 0.9 ? "warn" : "bad";
  return h("div", null, h("span", { class: `rate rate-${tone}` }, fmtPct(rate)),
    h("div", { class: "cell-sub" }, `${fmtInt(s.requests)} req · p50 ${fmtMs(s.p50_ms)}`));
}

function versionCell(c) {
  const v = version(c);
  return h("div", { class: "nowrap" }, h("span", { class: "mono" }, v || "—"),
    c.outdated ? h("div", null, pill("Outdated", "warn", `The current client version is ${c.current_version}: download the package again`)) : null);
}

const VIEWS = { all: null, connected: isConnected, offline: (c) => !isConnected(c), attention: needsAttention };

const heartbeat = (c) => (c.live && c.live.last_heartbeat) || null;
const stat = (c, name) => (c.live && c.live.stats ? c.live.stats[name] : null);

const COLUMNS = [
  { key: "name", label: "Client", value: (c) => c.name, filterText: (c) => `${c.name} ${c.id} ${c.email || ""}`,
    render: (c) => [h("div", { class: "cell-main" }, c.name), h("div", { class: "cell-sub mono" }, c.id)] },
  { key: "status", label: "Status", value: statusRank, class: "status-cell",
    filterText: statusWords, render: statusPills },
  { key: "instance", label: "Instance", class: "nowrap", title: "The platform instance holding its connection",
    value: (c) => (isConnected(c) ? c.platform_instance : null), filterText: (c) => (isConnected(c) ? c.platform_instance : ""),
    render: (c) => (isConnected(c) && c.platform_instance ? h("span", { class: "mono" }, c.platform_instance)
      : h("span", { class: "muted" }, "—")) },
  { key: "session", label: "arena.ai", title: "arena.ai session status, as the client's bridge reports it",
    value: sessionText, render: sessionCell },
  { key: "load", label: "Load", class: "num", title: "Requests in flight / how many it takes at once",
    value: (c) => (c.live ? c.live.active_requests : null),
    render: (c) => [loadCell(c), h("div", { class: "cell-sub" }, c.rpm ? `max ${fmtInt(c.rpm)}/min` : "no rpm limit")] },
  { key: "success", label: "Success 1 h", title: "Success rate of the requests it served in the last hour", class: "num", value: (c) => (c.stats_1h && c.stats_1h.requests ? c.stats_1h.success_rate : null),
    render: successCell },
  { key: "heartbeat", label: "Heartbeat", class: "nowrap", live: true, value: (c) => -(heartbeat(c) || 0) || null,
    filterText: () => "", render: (c) => (heartbeat(c) ? h("span", { title: fmtTime(heartbeat(c)) }, fmtAgo(heartbeat(c)))
      : h("span", { class: "muted", title: c.last_seen_at ? `last seen ${fmtTime(c.last_seen_at)}` : "" },
        c.last_seen_at ? fmtAgo(c.last_seen_at) : "never")) },
  { key: "version", label: "Version", value: version, filterText: (c) => `${version(c) || ""} ${c.outdated ? "outdated" : ""}`,
    render: versionCell },
  { key: "cpu", label: "CPU", class: "num", value: (c) => stat(c, "cpu_percent"),
    render: (c) => (stat(c, "cpu_percent") === null || stat(c, "cpu_percent") === undefined ? "—" : `${Math.round(stat(c, "cpu_percent"))}%`) },
  { key: "memory", label: "Memory", class: "num", value: (c) => stat(c, "memory_mb"),
    render: (c) => (stat(c, "memory_mb") === null || stat(c, "memory_mb") === undefined ? "—" : fmtBytes(stat(c, "memory_mb") * MB)) },
  { key: "actions", label: "", sortable: false, class: "num", filterText: () => "",
    render: (c) => h("button", { type: "button", class: "btn btn-sm", dataset: { open: c.id }, "aria-label": `Manage ${c.name}` }, "Manage") },
];

// -- dialogs --------------------------------------------------------------------------------------
function secretBox(label, value, name) {
  return h("div", { class: "secret-box" }, h("strong", null, label),
    h("div", { class: "secret-row" }, h("code", { dataset: { secret: name } }, value),
      h("button", { type: "button", class: "btn btn-sm", onclick: () => copyText(value) }, "Copy")));
}

// Whether the package (and so the new key) was delivered: a refusal changes no key, and says why.
async function downloadPackage(client) {
  try {
    const name = await download(`/clients/${encodeURIComponent(client.id)}/package`, { method: "POST" });
    toast(`Downloaded ${name} (with a new API key).`, "ok");
    return true;
  } catch (err) {
    toast(`No package: ${err.message} The client's key is unchanged.`, "error");
    return false;
  }
}

const PACKAGE_NOTE = "The package holds a fresh API key: the platform keeps only a hash of keys, so each download "
  + "issues a new one. The previous key stops working at once and a client connected with it is disconnected.";

// The package's client connects to the address this page was opened at: say so when only this machine can reach it.
const LOOPBACK = /^(localhost|127(\.\d+){3}|\[::1\])$/;
function addressNote(clientId) {
  const where = `${location.origin}/api`;
  return LOOPBACK.test(location.hostname)
    ? `Its client will connect to ${where}, which only this machine can reach. For a client on another machine, open `
      + "the dashboard at the address that machine uses, or make the package with: arenahub admin client-package "
      + `${clientId} --platform-url URL`
    : `Its client will connect to ${where}.`;
}

async function registerClient(onDone) {
  const body = h("div", { class: "form-grid" },
    h("div", { class: "span-2" }, field({ label: "Client Name", name: "name", required: true, placeholder: "e.g. alice-laptop" })),
    h("div", { class: "span-2" }, field({ label: "Email (optional)", name: "email", type: "email", placeholder: "owner@example.com" })),
    h("div", { class: "span-2" }, field({ label: "LMArenaBridge URL", name: "bridge_url", type: "url", value: DEFAULT_BRIDGE_URL, required: true,
      hint: "Where the bridge listens on the client's machine." })),
    h("fieldset", { class: "span-2" }, h("legend", null, "Rate Limits"),
      h("div", { class: "form-grid" },
        field({ label: "Requests per minute", name: "rpm", type: "number", min: 1, placeholder: "no limit", hint: "Empty: no limit." }),
        field({ label: "Max concurrent requests", name: "max_concurrent", type: "number", min: 1, max: 10000, value: 4, required: true }))),
  );
  const made = await openDialog({
    title: "Register New Client", body,
    actions: [{ label: "Cancel", value: null }, { label: "Register", kind: "primary", submit: true, async onClick(d) {
      const v = d.values();
      return api("POST", "/clients", { name: v.name, email: v.email, bridge_url: v.bridge_url, rpm: v.rpm,
        max_concurrent: v.max_concurrent });
    } }],
  });
  if (!made) return;
  onDone();
  const client = { id: made.client_id, name: body.querySelector('[name="name"]').value };
  // One key, one moment: the key goes out once, either inside the package or shown for a manual set-up.
  // Whichever the operator picks, the other way goes from this dialog, so the key in hand is never one
  // that a later step here replaced (each package download issues a new key).
  const next = h("div", { class: "register-next", dataset: { step: "choose" } },
    h("p", { class: "muted" }, addressNote(made.client_id)),
    h("p", null, "Its API key goes out once. Either download the client package (the key is in its config.jsonc), "
      + "or, to set up an LMArenaBridge by hand, show the key instead."));
  const pick = (d, keep) => d.form.querySelectorAll(".dialog-actions button[data-action]").forEach((b) => {
    if (b.dataset.action !== "Done" && b.dataset.action !== keep) b.remove();
  });
  await openDialog({
    title: "Client registered", wide: true,
    body: [h("p", null, `"${client.name}" is registered.`), secretBox("Client ID", made.client_id, "client_id"), next],
    actions: [{ label: "Done", value: null },
      { label: "Show the key instead", onClick: (d) => {
        pick(d, "Show the key instead");
        d.form.querySelector('[data-action="Show the key instead"]').remove();
        next.dataset.step = "key";
        next.replaceChildren(secretBox("API key", made.api_key, "api_key"), h("div", { class: "warning" },
          "Copy it now: it is not shown again. Put it in the client's config.jsonc (platform_integration.api_key). "
          + "A client package downloaded later comes with a new key, and this one then stops working."));
        return false;
      } },
      { label: "Download package", kind: "primary", onClick: async (d) => {
        if (!await downloadPackage(client)) return false;
        pick(d, "Done");  // a second download here would replace the key just downloaded
        next.dataset.step = "package";
        next.replaceChildren(h("p", null, "Downloaded: its config.jsonc holds the client's key. Unzip it on the client's "
          + "machine and run ./start_client.sh (README.txt has the steps). A package downloaded later (the client's "
          + "Manage panel) comes with a new key, and the one in this package then stops working."));
        return false;
      } }],
  });
}

async function editLimits(client, after) {
  const body = h("div", { class: "form-grid" },
    field({ label: "Requests per minute", name: "rpm", type: "number", min: 1, value: client.rpm, hint: "Empty: no limit." }),
    field({ label: "Max concurrent requests", name: "max_concurrent", type: "number", min: 1, max: 10000, value: client.max_concurrent, required: true }),
    field({ label: "Priority", name: "priority", type: "number", min: -1000, max: 1000, value: client.priority ?? 0, required: true,
      hint: "Higher is chosen first (priority routing)." }),
    field({ label: "Weight", name: "weight", type: "number", min: 1, max: 1000, value: client.weight ?? 1, required: true,
      hint: "Share among equals (random and priority routing)." }));
  const saved = await openDialog({
    title: `Edit limits: ${client.name}`, body,
    actions: [{ label: "Cancel", value: null }, { label: "Save", kind: "primary", submit: true, async onClick(d) {
      const v = d.values();
      return api("PATCH", `/clients/${encodeURIComponent(client.id)}`, v);
    } }],
  });
  if (saved) { toast("Limits saved; a connected client has them already.", "ok"); after(); }
}

async function drain(client, after) {
  const reason = field({ label: "Reason (optional)", name: "reason", placeholder: "e.g. machine maintenance" });
  const done = await openDialog({
    title: `Drain ${client.name}`,
    body: [h("p", null, "The client finishes the requests it has and gets no new ones until you undrain it."), reason],
    actions: [{ label: "Cancel", value: null }, { label: "Drain", kind: "primary", submit: true, async onClick(d) {
      const v = d.values();
      return api("POST", `/clients/${encodeURIComponent(client.id)}/drain`, v.reason ? { reason: v.reason } : {});
    } }],
  });
  if (done) { toast(`${client.name} is draining.`, "ok"); after(); }
}

async function act(message, fn, after) {
  try {
    await fn();
    toast(message, "ok");
    after();
  } catch (err) {
    toast(err.message, "error");
  }
}

// The models a connected client offers that wait for the operator (the model catalogue is on).
function pendingList(c, refresh) {
  const decide = (model, approved) => act(approved ? `${c.name} may serve ${model} now.` : `${c.name}'s offer of ${model} is refused.`,
    () => api("PUT", "/catalogue/decisions", { model, client_id: c.id, approved }), refresh);
  return h("div", null, h("ul", { class: "pending-models" }, c.live.pending_models.map((model) => h("li", { dataset: { pending: model } },
    h("code", null, model), " ",
    h("button", { type: "button", class: "btn btn-sm btn-primary", "aria-label": `Approve ${model}`, onclick: () => decide(model, true) }, "Approve"), " ",
    h("button", { type: "button", class: "btn btn-sm", "aria-label": `Refuse ${model}`, onclick: () => decide(model, false) }, "Refuse")))),
  h("a", { href: "#/models" }, "The model catalogue"));
}

// -- the detail panel -----------------------------------------------------------------------------
function detailPanel({ onClose, refresh, go }) {
  const title = h("h2");
  const sub = h("div", { class: "mono muted" });
  const info = h("dl", { class: "kv" });
  const buttons = {};
  const button = (key, label, kind, onclick) => {
    buttons[key] = h("button", { type: "button", class: `btn ${kind ? `btn-${kind}` : ""}`, dataset: { act: key }, onclick }, label);
    return buttons[key];
  };
  let client = null;
  const panel = h("aside", { class: "drawer", "aria-label": "Client details", hidden: true },
    h("header", { class: "drawer-head" }, h("div", null, title, sub),
      h("button", { type: "button", class: "icon-btn", "aria-label": "Close", onclick: () => onClose() }, "×")),
    h("div", { class: "drawer-actions" },
      button("package", "Download package", "primary", async () => {
        const ok = await confirmDialog({ title: "Download the client package", confirm: "Download package",
          message: [PACKAGE_NOTE, addressNote(client.id),
            "Unzip it on the client's machine and run ./start_client.sh (README.txt has the steps)."] });
        if (ok && await downloadPackage(client)) refresh();
      }),
      button("rekey", "Regenerate API key", "", async () => {
        const ok = await confirmDialog({ title: "Regenerate the API key", confirm: "Regenerate and download", danger: true,
          message: ["The old key stops working at once; a client connected with it is disconnected and told why.",
            "The new key comes in a new client package, which downloads now (keys are shown only once: the platform keeps a hash). "
            + "Copy the api_key line of its config.jsonc to the client, or use the whole package."] });
        if (ok && await downloadPackage(client)) refresh();
      }),
      button("limits", "Edit limits", "", () => editLimits(client, refresh)),
      button("drain", "Drain", "", () => (draining(client)
        ? act(`${client.name} takes work again.`, () => api("POST", `/clients/${encodeURIComponent(client.id)}/undrain`), refresh)
        : drain(client, refresh))),
      button("maintenance", "Clear maintenance", "", () => act(`${client.name} is back in rotation.`,
        () => api("POST", `/clients/${encodeURIComponent(client.id)}/clear-maintenance`), refresh)),
      button("disable", "Disable", "", async () => {
        const disable = !client.disabled;
        if (disable && !await confirmDialog({ title: `Disable ${client.name}`, confirm: "Disable", danger: true,
          message: "The client is disconnected and refused until you enable it again." })) return;
        act(disable ? `${client.name} is disabled.` : `${client.name} may connect again.`,
          () => api("PATCH", `/clients/${encodeURIComponent(client.id)}`, { disabled: disable }), refresh);
      }),
      button("requests", "View requests", "", () => go(`#/requests?client_id=${encodeURIComponent(client.id)}`)),
      button("delete", "Delete", "danger", async () => {
        const ok = await confirmDialog({ title: `Delete ${client.name}`, confirm: "Delete client", danger: true,
          message: ["The client is disconnected with the reason and its registration is deleted; its key stops working.",
            "Its request records and earnings stay."] });
        if (ok) {
          const id = client.id;
          act(`${client.name} is deleted.`, async () => { await api("DELETE", `/clients/${encodeURIComponent(id)}`); onClose(); }, refresh);
        }
      })),
    h("div", { class: "drawer-body" }, info));

  function row(label, value) {
    return [h("dt", null, label), h("dd", null, value)];
  }
  function show(c) {
    client = c;
    panel.hidden = false;
    panel.dataset.client = c.id;
    title.textContent = c.name;
    sub.textContent = c.id;
    buttons.drain.textContent = draining(c) ? "Undrain" : "Drain";
    buttons.maintenance.disabled = !inMaintenance(c);
    buttons.disable.textContent = c.disabled ? "Enable" : "Disable";
    const l = c.live || {};
    const hs = c.health || {};
    const st = l.stats || {};
    info.replaceChildren(
      ...row("Status", h("div", null, statusPills(c))),
      ...row("arena.ai session", sessionCell(c)),
      ...(l.session && l.session.action ? row("What to do", l.session.action) : []),
      ...(l.session && l.session.last_error ? row("Session error", l.session.last_error) : []),
      ...(l.session && l.session.checks && l.session.checks.length ? row("Tab checks", checksList(l.session)) : []),
      ...row("Active / capacity", loadCell(c)),
      ...row("Last heartbeat", heartbeat(c) ? `${fmtAgo(heartbeat(c))} (${fmtTime(heartbeat(c))})` : "—"),
      ...row("Connected since", l.connected_at ? `${fmtTime(l.connected_at)}${l.address ? `, from ${l.address}` : ""}` : "—"),
      ...(isConnected(c) && c.platform_instance ? row("Platform instance", h("a", { href: "#/instances", class: "mono" }, c.platform_instance)) : []),
      ...(c.conflict ? row("Conflict", c.conflict) : []),
      ...row("Version", versionCell(c)),
      ...row("Current client version", c.current_version || "—"),
      ...row("CPU / memory", `${st.cpu_percent !== undefined && st.cpu_percent !== null ? `${Math.round(st.cpu_percent)}%` : "—"} / ${st.memory_mb ? fmtBytes(st.memory_mb * MB) : "—"}`),
      ...row("Last hour", c.stats_1h && c.stats_1h.requests ? `${fmtInt(c.stats_1h.requests)} requests, ${fmtPct(c.stats_1h.success_rate)} ok, p50 ${fmtMs(c.stats_1h.p50_ms)}` : "no requests"),
      ...row("Served (client's count)", l.stats ? `${fmtInt(st.requests_processed || 0)} ok, ${fmtInt(st.requests_failed || 0)} failed` : "—"),
      ...row("Usage it claimed", claimGaps(c.usage_claim_gaps)),
      ...row("Limits", `${c.rpm ? `${fmtInt(c.rpm)} requests/min` : "no rpm limit"}, ${fmtInt(c.max_concurrent)} at once${c.live && c.live.max_concurrent !== c.max_concurrent ? ` (${fmtInt(c.live.max_concurrent)} while connected: the client's own limit is lower)` : ""}, priority ${c.priority ?? 0}, weight ${c.weight ?? 1}`),
      ...row("Circuit breaker", `${hs.breaker || "—"}${hs.breaker_retry_in ? ` (retry in ${Math.ceil(hs.breaker_retry_in)} s)` : ""}`),
      ...row("Maintenance", c.maintenance_reason ? `${c.maintenance_reason} (since ${fmtTime(c.maintenance_since)})` : "no"),
      ...row("Drops (last hour)", fmtInt(hs.drops_last_hour)),
      ...row("Last refusal", c.last_refusal ? `${c.last_refusal.message} (${c.last_refusal.code}, ${fmtAgo(c.last_refusal.at)})` : "none"),
      ...row("Models", l.models && l.models.length ? l.models.join(", ") : "—"),
      ...(l.pending_models && l.pending_models.length ? row("Waiting for approval", pendingList(c, refresh)) : []),
      ...row("LMArenaBridge URL", c.bridge_url || "—"),
      ...row("Email", c.email || "—"),
      ...row("Registered", fmtTime(c.created_at)),
    );
  }
  return { el: panel, show, hide() { panel.hidden = true; client = null; }, get id() { return client && client.id; } };
}

// Answers whose usage the client claimed far from the platform's own count (billing uses the count).
function claimGaps(gaps) {
  if (!gaps) return "as counted";
  const last = gaps.last || {};
  const said = last.claimed || {}, counted = last.counted || {};
  return `${fmtInt(gaps.gaps)} answer(s) claimed far from the count; last: claimed ${fmtInt(said.prompt_tokens)} + ` +
    `${fmtInt(said.completion_tokens)} tokens, counted ${fmtInt(counted.prompt_tokens)} + ${fmtInt(counted.completion_tokens)}` +
    (last.at ? ` (${fmtAgo(last.at)})` : "");
}

export default {
  id: "clients",
  title: "Clients",
  async mount(root, ctx) {
    let clients = [];
    const view = VIEWS[ctx.params.show] !== undefined ? ctx.params.show : "all";
    const search = h("input", { type: "search", class: "search", placeholder: "Filter by name, id, status, version…",
      "aria-label": "Filter clients", value: ctx.params.q || "" });
    const views = [["all", "All"], ["connected", "Connected"], ["offline", "Not connected"], ["attention", "Needs attention"]];
    const viewButtons = views.map(([id, label]) => h("button", { type: "button", dataset: { view: id }, "aria-pressed": String(id === view),
      onclick: () => {
        viewButtons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.view === id)));
        table.setPredicate(VIEWS[id]);
        updateCount();
      } }, label));
    const counts = h("span", { class: "muted table-count" });

    const panel = detailPanel({
      onClose: () => { panel.hide(); ctx.setParams({}); },
      refresh: () => refresh().catch((err) => toast(err.message, "error")),
      go: ctx.go,
    });
    const table = dataTable({
      columns: COLUMNS, empty: "No clients yet: register one with “Register New Client”.",
      sort: { key: "status", dir: 1 }, filter: ctx.params.q || "",
      onRow: (c) => openPanel(c.id),
    });
    if (VIEWS[view]) table.setPredicate(VIEWS[view]);
    table.addEventListener("click", (ev) => {
      const btn = ev.target.closest("button[data-open]");
      if (btn) openPanel(btn.dataset.open);
    });
    search.addEventListener("input", () => { table.setFilter(search.value); updateCount(); });
    const onKey = (ev) => {
      if (ev.key === "Escape" && panel.id && !document.querySelector("dialog[open]")) { panel.hide(); ctx.setParams({}); }
    };
    document.addEventListener("keydown", onKey);
    ctx.onLeave(() => document.removeEventListener("keydown", onKey));

    function openPanel(id) {
      const c = clients.find((x) => x.id === id);
      if (!c) return;
      ctx.setParams({ id });
      panel.show(c);
    }

    ctx.actions.append(h("button", { type: "button", class: "btn btn-primary", dataset: { act: "register" },
      onclick: () => registerClient(() => refresh().catch(() => {})) }, "Register New Client"));
    root.append(
      h("div", { class: "table-tools" }, search, h("div", { class: "segmented", role: "group", "aria-label": "Show" }, viewButtons),
        h("span", { class: "grow" }), counts),
      h("div", { class: "with-drawer" }, table, panel.el));

    // The Instance column shows only in a cluster (or when a client is held by another instance).
    let instances = 1;
    const showInstances = () => table.classList.toggle("one-instance",
      instances <= 1 && new Set(clients.filter(isConnected).map((c) => c.platform_instance)).size <= 1);
    showInstances();

    function updateCount() {
      const connected = clients.filter(isConnected).length;
      counts.textContent = `${fmtInt(table.count())} listed · ${fmtInt(connected)} connected of ${fmtInt(clients.length)}`;
    }
    function render() {
      table.update(clients);
      updateCount();
      if (panel.id) {
        const c = clients.find((x) => x.id === panel.id);
        if (c) panel.show(c); else panel.hide();
      }
    }
    async function refresh() {
      const [data, cluster] = await Promise.all([api("GET", "/clients"), api("GET", "/instances").catch(() => null)]);
      if (!ctx.live) return;
      clients = data.data || [];
      if (cluster) instances = (cluster.data || []).length;
      showInstances();
      render();
      if (!root.dataset.loaded && ctx.params.id) openPanel(ctx.params.id);
      root.dataset.loaded = "true";
    }
    ctx.every(POLL_MS, refresh);
  },
};
