// Models: the operator's model catalogue (GET /api/admin/catalogue). The offers waiting for approval
// (Approve / Refuse), the listed models (who may serve each, who serves it now; Edit, Unlist, "List a
// model"), and every decision made (Forget). Whether the catalogue is on is a live setting (Settings).

import { api, confirmDialog, dataTable, field, fmtInt, h, openDialog, pill, showFieldError, toast } from "../ui.js";

const POLL_MS = 5000;

const offerKey = (o) => `${o.client_id} ${o.model}`; // an id has no space

function clientCell(names, id) {
  return [h("div", { class: "cell-main" }, names[id] || "(deleted client)"), h("div", { class: "cell-sub mono" }, id)];
}

function clientList(names, ids, none) {
  if (!ids.length) return h("span", { class: "muted" }, none);
  return h("div", { class: "pills" }, ids.map((id) => pill(names[id] || id, "muted", id)));
}

async function act(message, fn, after) {
  try {
    await fn();
    toast(message, "ok");
  } catch (err) {
    toast(err.message, "error");
  }
  after();
}

function decide(offer, approved, after) {
  const name = offer.client_name || offer.client_id;
  return act(approved ? `${name} may serve ${offer.model} now.` : `${name}'s offer of ${offer.model} is refused.`,
    () => api("PUT", "/catalogue/decisions", { model: offer.model, client_id: offer.client_id, approved }), after);
}

async function editListing(listing, after) {
  const isNew = !listing;
  const body = h("div", { class: "stack-form" },
    isNew ? field({ label: "Model", name: "model", required: true, placeholder: "e.g. gpt-4o or vendor/model:tag",
      hint: "As clients offer it: up to 200 characters." }) : h("p", null, h("code", null, listing.model)),
    field({ label: "Any client that offers it may serve it", name: "any_client", type: "checkbox",
      value: listing ? listing.any_client : false,
      hint: "Off: only the clients you approve serve it; the others' offers wait for you." }));
  const saved = await openDialog({
    title: isNew ? "List a model" : `Edit ${listing.model}`, body,
    actions: [{ label: "Cancel", value: null }, { label: isNew ? "List model" : "Save", kind: "primary", submit: true,
      async onClick(d) {
        const v = d.values();
        try {
          return await api("PUT", "/catalogue/models", { model: isNew ? v.model : listing.model, any_client: v.any_client });
        } catch (err) {
          if (showFieldError(d.form, err)) return false;
          throw err;
        }
      } }],
  });
  if (saved) { toast(`${saved.model} is ${saved.created ? "listed" : "saved"}.`, "ok"); after(); }
}

async function unlist(listing, after) {
  const ok = await confirmDialog({ title: `Unlist ${listing.model}`, confirm: "Unlist", danger: true,
    message: ["With the catalogue on, no client serves it any more and consumers asking for it get 404 model_not_found.",
      "Its approvals go with it; its refusals stay."] });
  if (ok) act(`${listing.model} is no longer listed.`, () => api("DELETE", "/catalogue/models", null, { query: { model: listing.model } }), after);
}

function forget(d, after) {
  return act(`${d.client_name || d.client_id}'s offer of ${d.model} waits for a decision again.`,
    () => api("DELETE", "/catalogue/decisions", null, { query: { model: d.model, client_id: d.client_id } }), after);
}

export default {
  id: "models",
  title: "Models",
  async mount(root, ctx) {
    let names = {};
    const refresh = () => load().catch((err) => toast(err.message, "error"));

    const state = h("div", { class: "notice-inline", dataset: { catalogue: "" } });
    const pendingCount = h("span", { class: "muted table-count" });
    const pending = dataTable({
      rowKey: offerKey, sort: { key: "model", dir: 1 }, empty: "No offer waits for a decision.",
      columns: [
        { key: "model", label: "Model", render: (o) => h("code", null, o.model) },
        { key: "client", label: "Offered by", value: (o) => o.client_name, filterText: (o) => `${o.client_name} ${o.client_id}`,
          render: (o) => clientCell(names, o.client_id) },
        { key: "actions", label: "", sortable: false, class: "num", filterText: () => "",
          render: (o) => h("div", { class: "row-actions" },
            h("button", { type: "button", class: "btn btn-sm btn-primary", dataset: { act: "approve" },
              "aria-label": `Approve ${o.client_name} for ${o.model}`, onclick: () => decide(o, true, refresh) }, "Approve"),
            h("button", { type: "button", class: "btn btn-sm", dataset: { act: "refuse" },
              "aria-label": `Refuse ${o.client_name} for ${o.model}`, onclick: () => decide(o, false, refresh) }, "Refuse")) },
      ] });
    const listed = dataTable({
      rowKey: (m) => m.model, sort: { key: "model", dir: 1 },
      empty: "No model is listed: with the catalogue on, clients serve nothing until you list models or approve offers.",
      columns: [
        { key: "model", label: "Model", render: (m) => h("code", null, m.model) },
        { key: "who", label: "May serve it", value: (m) => (m.any_client ? "any client" : `${m.approved.length} approved`),
          filterText: (m) => (m.any_client ? "any client" : m.approved.map((id) => `${names[id] || ""} ${id}`).join(" ")),
          render: (m) => (m.any_client ? pill("Any client", "info", "Every client that offers it")
            : clientList(names, m.approved, "approved clients only: none yet")) },
        { key: "serving", label: "Serving now", value: (m) => m.serving.length, filterText: () => "",
          render: (m) => clientList(names, m.serving, "no connected client") },
        { key: "actions", label: "", sortable: false, class: "num", filterText: () => "",
          render: (m) => h("div", { class: "row-actions" },
            h("button", { type: "button", class: "btn btn-sm", "aria-label": `Edit ${m.model}`, onclick: () => editListing(m, refresh) }, "Edit"),
            h("button", { type: "button", class: "btn btn-sm", "aria-label": `Unlist ${m.model}`, onclick: () => unlist(m, refresh) }, "Unlist")) },
      ] });
    const decisions = dataTable({
      rowKey: offerKey, sort: { key: "model", dir: 1 }, empty: "No decisions yet.",
      columns: [
        { key: "model", label: "Model", render: (d) => h("code", null, d.model) },
        { key: "client", label: "Client", value: (d) => d.client_name || d.client_id, filterText: (d) => `${d.client_name || ""} ${d.client_id}`,
          render: (d) => clientCell(names, d.client_id) },
        { key: "decision", label: "Decision", value: (d) => (d.approved ? "approved" : "refused"),
          render: (d) => (d.approved ? pill("Approved", "ok") : pill("Refused", "bad")) },
        { key: "actions", label: "", sortable: false, class: "num", filterText: () => "",
          render: (d) => h("button", { type: "button", class: "btn btn-sm", dataset: { act: "forget" },
            "aria-label": `Forget the decision about ${d.client_name || d.client_id} for ${d.model}`, onclick: () => forget(d, refresh) }, "Forget") },
      ] });
    const search = (table, what) => h("input", { type: "search", class: "search", placeholder: `Filter ${what}`, "aria-label": `Filter ${what}`,
      oninput: (e) => table.setFilter(e.target.value) });

    ctx.actions.append(h("button", { type: "button", class: "btn btn-primary", onclick: () => editListing(null, refresh) }, "List a model"));
    const waitingTitle = h("h2", null, "Waiting for approval");
    root.append(
      state,
      h("section", { class: "panel", dataset: { panel: "pending" } },
        h("div", { class: "panel-head" }, waitingTitle, h("div", { class: "panel-tools" }, pendingCount, search(pending, "offers"))),
        h("div", { class: "panel-body" }, pending)),
      h("section", { class: "panel", dataset: { panel: "listed" } },
        h("div", { class: "panel-head" }, h("h2", null, "Listed models"), h("div", { class: "panel-tools" }, search(listed, "models"))),
        h("div", { class: "panel-body" }, listed)),
      h("section", { class: "panel", dataset: { panel: "decisions" } },
        h("div", { class: "panel-head" }, h("h2", null, "Decisions"), h("div", { class: "panel-tools" }, search(decisions, "decisions"))),
        h("div", { class: "panel-body" }, decisions)),
    );

    async function load() {
      const view = await api("GET", "/catalogue");
      if (!ctx.live) return;
      names = view.client_names || {};
      state.dataset.catalogue = view.enabled ? "on" : "off";
      state.replaceChildren(view.enabled
        ? "The model catalogue is on: clients serve only the listed models they may serve; what else they offer waits here. "
        : "The model catalogue is off: every model a registered client offers is served. Offers below would wait once it is on. ",
      h("a", { href: "#/settings" }, view.enabled ? "Turn it off in Settings." : "Turn it on in Settings."));
      waitingTitle.textContent = view.enabled ? "Waiting for approval" : "Would wait for approval";
      pendingCount.textContent = view.pending_total > view.pending.length
        ? `${fmtInt(view.pending.length)} of ${fmtInt(view.pending_total)} shown` : `${fmtInt(view.pending_total)} offers`;
      pending.update(view.pending);
      listed.update(view.models);
      const made = [];
      const name = (id) => names[id] || null;
      for (const m of view.models) {
        for (const id of m.approved) made.push({ model: m.model, client_id: id, client_name: name(id), approved: true });
        for (const id of m.refused) made.push({ model: m.model, client_id: id, client_name: name(id), approved: false });
      }
      for (const r of view.refused) made.push({ ...r, approved: false });
      decisions.update(made);
      root.dataset.loaded = "true";
    }
    ctx.every(POLL_MS, load);
  },
};
