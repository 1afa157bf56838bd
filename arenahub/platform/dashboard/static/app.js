// The dashboard shell: a hash router over the eight pages, the left nav (a Menu button on narrow
// windows), and the page context.
//
// A page is pages/<id>.js exporting default {id, title, mount(root, ctx)}. mount may be async and
// may return a function called when the page is left. ctx:
//   ctx.every(ms, fn)     call fn now and every ms while the page is shown (never two at once;
//                         paused while the tab is hidden); cleared on leaving
//   ctx.params            the hash query as an object (#/requests?client_id=c1 -> {client_id: "c1"})
//   ctx.setParams(obj)    replace the hash query without re-mounting the page
//   ctx.go(hash)          navigate ("#/requests?client_id=c1")
//   ctx.actions           the page header's right-hand slot, for buttons
//   ctx.live              true while the page is shown
// The root is <section data-page="<id>">; the page sets data-loaded="true" on it after its first data.

import { api, fmtDuration, h, toast, CSRF } from "./ui.js";

const PAGES = [
  ["overview", "Overview"],
  ["clients", "Clients"],
  ["models", "Models"],
  ["keys", "Keys"],
  ["usage", "Usage & billing"],
  ["requests", "Requests"],
  ["instances", "Instances"],
  ["settings", "Settings"],
];
const TITLES = Object.fromEntries(PAGES);

function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const id = TITLES[path] ? path : "overview";
  return { id, params: Object.fromEntries(new URLSearchParams(query)) };
}

let current = null; // {id, cleanup: [fn], live}

function leave() {
  if (!current) return;
  current.live = false;
  for (const fn of current.cleanup.splice(0)) {
    try { fn(); } catch (err) { console.error(err); }
  }
  current = null;
}

function makeContext(id, params, actions) {
  const state = { id, cleanup: [], live: true };
  const ctx = {
    params,
    actions,
    get live() { return state.live; },
    go(hash) { window.location.hash = hash.startsWith("#") ? hash : `#${hash}`; },
    setParams(values) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(values || {})) if (v !== undefined && v !== null && v !== "") q.set(k, v);
      const qs = q.toString();
      history.replaceState(null, "", `#/${id}${qs ? `?${qs}` : ""}`);
      ctx.params = Object.fromEntries(q);
    },
    every(ms, fn) {
      let running = false;
      let failing = false;
      const tick = async () => {
        if (!state.live || running || document.hidden) return;
        running = true;
        try {
          await fn();
          if (failing) { failing = false; setStale(false); }
        } catch (err) {
          if (state.live && !failing) { failing = true; setStale(true, err); }
        } finally {
          running = false;
        }
      };
      const timer = setInterval(tick, ms);
      const onVisible = () => { if (!document.hidden) tick(); };
      document.addEventListener("visibilitychange", onVisible);
      state.cleanup.push(() => { clearInterval(timer); document.removeEventListener("visibilitychange", onVisible); });
      tick();
      return tick;
    },
    onLeave(fn) { state.cleanup.push(fn); },
  };
  return { state, ctx };
}

function setStale(stale, err) {
  const banner = document.getElementById("stale");
  if (!banner) return;
  banner.hidden = !stale;
  banner.textContent = stale ? `Live updates paused: ${err && err.message ? err.message : "the platform did not answer"}. Retrying…` : "";
}

async function route() {
  const { id, params } = parseHash();
  leave();
  setStale(false);
  for (const link of document.querySelectorAll(".nav a[data-nav]")) {
    if (link.dataset.nav === id) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${TITLES[id]} · arenahub`;
  const title = document.getElementById("page-title");
  const actions = document.getElementById("page-actions");
  const holder = document.getElementById("page");
  title.textContent = TITLES[id];
  actions.replaceChildren();
  const root = h("section", { class: "page", dataset: { page: id } });
  holder.replaceChildren(root);
  const { state, ctx } = makeContext(id, params, actions);
  current = state;
  let page;
  try {
    page = (await import(`./pages/${id}.js`)).default;
  } catch (err) {
    console.error(err);
    if (current === state) {
      root.append(h("div", { class: "notice" }, h("strong", null, `The ${TITLES[id]} page could not be loaded.`),
        h("p", null, "Reload the page; if it stays, the platform may be an older version.")));
    }
    return;
  }
  if (current !== state) return; // the user moved on while it loaded
  try {
    const cleanup = await page.mount(root, ctx);
    if (typeof cleanup === "function") {
      if (current === state) state.cleanup.push(cleanup);
      else cleanup();
    }
  } catch (err) {
    console.error(err);
    if (current === state) toast(`${TITLES[id]}: ${err.message || err}`, "error");
  }
}

// The platform's version and uptime in the sidebar; the uptime ticks locally between reads.
async function footer() {
  const el = document.getElementById("platform-info");
  if (!el) return;
  let status = null;
  let readAt = 0;
  const show = () => {
    if (!status) return;
    el.replaceChildren(
      h("div", null, `arenahub ${status.version || ""}`.trim()),
      h("div", { class: "muted" }, `up ${fmtDuration(status.uptime_seconds + (Date.now() - readAt) / 1000)}`),
    );
  };
  const read = async () => {
    try {
      status = await api("GET", "/status");
      readAt = Date.now();
      show();
    } catch (err) {
      status = null;
      el.textContent = "";
    }
  };
  await read();
  setInterval(show, 10000);
  setInterval(read, 300000);
}

// Below 1,024 px the sidebar is a bar with a Menu button (style.css): the button opens the nav over
// the page; a link, Escape or a click elsewhere closes it, and so does widening the window.
function menu() {
  const toggle = document.querySelector(".nav-toggle");
  const panel = toggle && document.getElementById(toggle.getAttribute("aria-controls"));
  if (!panel) return () => {};
  const sidebar = toggle.closest(".sidebar");
  const set = (open) => {
    toggle.setAttribute("aria-expanded", String(open));
    sidebar.classList.toggle("menu-open", open);
  };
  const isOpen = () => toggle.getAttribute("aria-expanded") === "true";
  toggle.addEventListener("click", () => set(!isOpen()));
  panel.addEventListener("click", (ev) => { if (ev.target.closest("a")) set(false); });
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && isOpen()) { ev.stopImmediatePropagation(); set(false); toggle.focus(); }
  });
  document.addEventListener("click", (ev) => { if (isOpen() && !sidebar.contains(ev.target)) set(false); });
  window.matchMedia("(min-width: 1024px)").addEventListener("change", (ev) => { if (ev.matches) set(false); });
  return () => set(false);
}

function start() {
  for (const input of document.querySelectorAll('input[name="csrf_token"]')) input.value = CSRF;
  const closeMenu = menu();
  window.addEventListener("hashchange", () => { closeMenu(); route(); });
  if (!window.location.hash) history.replaceState(null, "", "#/overview");
  route();
  footer();
}

start();
