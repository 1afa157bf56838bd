// Instances: the platform's instances, as GET /instances lists them (one without a cluster; in a
// cluster, every instance sharing its PostgreSQL and Redis), polled every 5 s. Any instance answers for
// the whole cluster; "This one" marks the instance that answered.
//
// An instance that leaves the list (stopped, or its card expired: no card for 5 s) stays shown while
// the page is open, as "Gone" with when it was last seen, for GONE_KEPT_MS.

import { api, dataTable, fmtAgo, fmtDuration, fmtInt, fmtTime, h, pill } from "../ui.js";

const POLL_MS = 5000;
const GONE_KEPT_MS = 15 * 60 * 1000;

const STATES = {
  serving: ["Serving", "ok", "It takes requests; its card is fresh."],
  draining: ["Draining", "warn", "It is shutting down: its requests in flight finish, new ones go to the others."],
  unreachable: ["Unreachable", "bad", "It has written no card for a few seconds: stopped, paused or cut off from Redis."],
  gone: ["Gone", "muted", "No longer in the cluster: it stopped, or wrote no card for 5 s."],
};
const RANK = { serving: 1, draining: 2, unreachable: 3, gone: 4 };

const SHARED = {
  in_process: ["In this process", "no Redis: one instance"],
  ready: ["Ready", "Redis holds the live state"],
  loading: ["Loading", "Redis is being refilled from the book"],
  unreachable: ["Redis unreachable", "the other instances cannot be seen"],
};

function card(id, label) {
  const value = h("div", { class: "card-value" }, "—");
  const sub = h("div", { class: "card-sub" });
  const el = h("div", { class: "card", dataset: { card: id } }, h("div", { class: "card-label" }, label), value, sub);
  return {
    el,
    set(text, note, raw, tone) {
      value.textContent = text;
      sub.textContent = note || "";
      el.dataset.value = String(raw ?? "");
      el.classList.toggle("card-good", tone === "good");
      el.classList.toggle("card-warn", tone === "warn");
      el.classList.toggle("card-bad", tone === "bad");
    },
  };
}

// Seconds since a row was read, so that uptimes and ages move between polls.
const since = (row) => (Date.now() - row.readAt) / 1000;
const uptime = (row) => (row.uptime_seconds === null || row.uptime_seconds === undefined ? null
  : row.state === "gone" ? null : row.uptime_seconds + since(row));

function stateCell(row) {
  const [label, kind, title] = STATES[row.state] || [row.state, "muted", ""];
  const out = [pill(label, kind, title)];
  if (row.state === "unreachable" || row.state === "gone") {
    out.push(h("div", { class: "cell-sub", title: fmtTime(row.seen_at) }, `last seen ${fmtAgo(row.seen_at)}`));
  }
  return out;
}

function columns(me) {
  return [
    { key: "id", label: "Instance", value: (r) => r.id,
      render: (r) => [h("div", { class: "cell-main mono" }, r.id),
        r.id === me.id ? h("div", null, pill("This one", "info", "The instance that answered this page")) : null] },
    { key: "state", label: "State", value: (r) => RANK[r.state] || 9, filterText: (r) => r.state, render: stateCell },
    { key: "address", label: "Address", filterText: (r) => `${r.address} ${r.url}`,
      render: (r) => [h("div", { class: "mono nowrap" }, r.address || "—"),
        h("div", { class: "cell-sub mono", title: "Where the other instances reach it (--advertise-url)" }, r.url || "")] },
    { key: "version", label: "Version", value: (r) => r.version,
      render: (r) => h("div", { class: "nowrap" }, h("span", { class: "mono" }, r.version || "—"),
        me.version && r.version && r.version !== me.version
          ? h("div", null, pill("Other version", "warn", `This one runs ${me.version}`)) : null) },
    { key: "clients", label: "Clients", class: "num", title: "Clients connected to it",
      value: (r) => (r.state === "gone" ? null : r.clients),
      render: (r) => (r.state === "gone" ? "—" : h("a", { href: `#/clients?q=${encodeURIComponent(r.id)}`,
        title: `The clients connected to ${r.id}` }, fmtInt(r.clients))) },
    { key: "in_flight", label: "In flight", class: "num", title: "Consumer requests in flight on it",
      value: (r) => (r.state === "gone" ? null : r.in_flight), render: (r) => (r.state === "gone" ? "—" : fmtInt(r.in_flight)) },
    { key: "uptime", label: "Up", live: true, value: (r) => uptime(r), filterText: () => "",
      title: "How long it has run, and when it started",
      render: (r) => [h("div", null, r.state === "gone" ? "—" : fmtDuration(uptime(r))),
        h("div", { class: "cell-sub", title: fmtTime(r.started_at) }, r.started_at ? `since ${fmtTime(r.started_at)}` : "")] },
  ];
}

export default {
  id: "instances",
  title: "Instances",
  async mount(root, ctx) {
    const me = { id: null, version: null };
    const gone = new Map(); // id -> the row last read, while it stays shown
    let last = new Map();
    const cards = {
      instances: card("instances", "Instances"),
      clients: card("clients", "Clients connected"),
      inflight: card("in_flight", "Requests in flight"),
      shared: card("shared", "Shared state"),
    };
    const note = h("p", { class: "notice-inline instances-note", dataset: { note: "" } });
    const table = dataTable({ columns: columns(me), empty: "No instance answered.", sort: { key: "id", dir: 1 } });
    root.append(h("div", { class: "cards cards-4" }, Object.values(cards).map((c) => c.el)), note, table);

    function show(answer) {
      const readAt = Date.now();
      me.id = answer.instance;
      const rows = (answer.data || []).map((r) => ({ ...r, readAt }));
      me.version = (rows.find((r) => r.this) || {}).version || null;
      const now = new Map(rows.map((r) => [r.id, r]));
      // Redis away: the others are unknown, not gone.
      if (answer.shared_state !== "unreachable") {
        for (const [id, row] of last) if (!now.has(id)) gone.set(id, { ...row, state: "gone", goneAt: readAt });
      }
      for (const id of now.keys()) gone.delete(id);
      for (const [id, row] of gone) if (readAt - row.goneAt > GONE_KEPT_MS) gone.delete(id);
      last = now;
      const listed = [...rows, ...gone.values()];
      table.update(listed);

      const serving = rows.filter((r) => r.state === "serving").length;
      const alone = answer.shared_state === "in_process";
      cards.instances.set(alone ? "1" : `${fmtInt(serving)} of ${fmtInt(rows.length)}`,
        alone ? "no cluster" : serving === rows.length ? "all serving" : `${fmtInt(rows.length - serving)} not serving`,
        rows.length, alone ? null : serving === rows.length ? "good" : "warn");
      const clients = rows.reduce((a, r) => a + (r.clients || 0), 0);
      const inflight = rows.reduce((a, r) => a + (r.in_flight || 0), 0);
      cards.clients.set(fmtInt(clients), alone ? "on this instance" : `over ${fmtInt(rows.length)} instances`, clients);
      cards.inflight.set(fmtInt(inflight), alone ? "on this instance" : "over the cluster", inflight);
      const [label, sub] = SHARED[answer.shared_state] || [answer.shared_state, ""];
      cards.shared.set(label, `${sub}; admin changes ${answer.changes === "notified" ? "notified at once" : "polled"}`,
        answer.shared_state, answer.shared_state === "unreachable" ? "bad" : answer.shared_state === "loading" ? "warn" : null);

      note.textContent = alone
        ? "One instance, no cluster: live state (limits, credit, connected clients) is kept in this process. "
          + "Several instances on one PostgreSQL database and one Redis (ARENAHUB_REDIS_URL) serve as one cluster."
        : answer.shared_state === "unreachable"
          ? `Redis does not answer: only this instance (${me.id}) can be shown, and requests that need the `
            + "live state are refused (503) until it is back."
          : `${fmtInt(rows.length)} instances share one PostgreSQL database and one Redis; any of them serves any `
            + `client. This page was answered by ${me.id}.`;
      note.dataset.note = alone ? "single" : answer.shared_state;
      root.dataset.sharedState = answer.shared_state;
      root.dataset.instances = String(rows.length);
    }

    async function refresh() {
      const answer = await api("GET", "/instances");
      if (!ctx.live) return;
      show(answer);
      root.dataset.loaded = "true";
    }
    ctx.every(POLL_MS, refresh);
  },
};
