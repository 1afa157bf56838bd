// ==UserScript==
// @name         arenahub bridge for arena.ai
// @namespace    https://github.com/arenahub
// @version      0.2.0
// @description  Lets a local arenahub bridge answer OpenAI-style requests through this signed-in arena.ai tab.
// @match        https://arena.ai/*
// @match        https://*.arena.ai/*
// @match        https://lmarena.ai/*
// @match        https://*.lmarena.ai/*
// @grant        none
// @run-at       document-end
// @connect      localhost
// @connect      127.0.0.1
// ==/UserScript==

// Written for arenahub (`arenahub userscript --bridge-url ...` prints it with the URL filled in).
// Every tab that runs it keeps its own WebSocket to the bridge; the bridge spreads requests over them.
// The messages on that socket are defined in arenahub/protocol/tab.py (protocol 2).
// reCAPTCHA tokens and cookie values never leave this page: the bridge gets answers, not secrets.
(function () {
  "use strict";

  const BRIDGE_WS_URL = "{{BRIDGE_WS_URL}}";
  const VERSION = "0.2.0";
  const PROTOCOL = 2;
  const RECONNECT_MS = 5000;
  const ERROR_BODY_CHARS = 4000;

  // ===== UPSTREAM: everything this script knows about arena.ai =====================================
  // arena.ai changes often: when it does, this object is what to change (the Python side knows the
  // answer stream and the failures: arenahub/bridge/lmarena/site.py).
  const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
  const UPSTREAM = {
    hosts: ["arena.ai", "lmarena.ai"], // lmarena.ai answers 301 to arena.ai since 2026-02
    localHosts: ["127.0.0.1", "localhost"], // a local simulator of the site
    // Paths are relative to the page's own origin, so the same script runs on a local simulator.
    calls: {
      create: { method: "POST", path: () => "/nextjs-api/stream/create-evaluation", action: "chat_submit" },
      follow_up: { method: "POST", path: (t) => `/nextjs-api/stream/post-to-evaluation/${t.evaluation_id}`,
                   action: "chat_submit" },
      retry: { method: "PUT", action: "chat_retry",
               path: (t) => `/nextjs-api/stream/retry-evaluation-session-message/${t.session_id}/messages/${t.message_id}` },
    },
    contentType: "text/plain;charset=UTF-8",
    // The page's own calls, watched for: a person's message that went through, and (legacy) ID capture.
    streamPath: /\/nextjs-api\/stream\/(create-evaluation|post-to-evaluation|retry-evaluation-session-message)\b/,
    retryPattern: new RegExp(
      `/nextjs-api/stream/retry-evaluation-session-message/(${UUID})/messages/(${UUID})`, "i"),
    recaptcha: {
      // The site key is read from the loader's URL at run time (it changed in 2026-05); never hard-coded.
      keyPattern: /recaptcha\/(?:enterprise|api)\.js\?(?:[^"'\s<>]*&(?:amp;)?)?render=([0-9A-Za-z_-]{20,100})/,
      tokenField: "recaptchaV3Token",
      waitMs: 15000,
    },
    authCookies: ["arena-auth-prod-v1", "arena-auth-prod-v1.0", "arena-auth-prod-v1.1"],
    // The session cookie is "base64-" + base64url(JSON of the session), split in .0 and .1 when long;
    // its user.is_anonymous tells a guest from an account. Read here; only "user" or "guest" leaves the page.
    sessionPrefix: "base64-",
    isGuest: (session) => (session && session.user ? session.user.is_anonymous : undefined),
    challengeMarkers: ["just a moment..."], // page titles
    blockMarkers: ["attention required! | cloudflare"],
    blockElement: "#cf-error-details, .cf-error-details",
    uploads: {
      // Next.js server actions, found in the page's own JS chunks (their ids change with every build).
      names: { url: "generateUploadUrl", signed: "getSignedUrl" },
      chunkPath: /\/_next\/static\/.+\.js(\?|$)/,
      reference: (name) => new RegExp(`createServerReference\\)\\(\\s*"([0-9a-f]{40,})"[^()]{0,200}?"${name}"\\s*\\)`),
      maxChunks: 80,
    },
    // The call's body, from the bridge's task (arenahub/protocol/tab.py Task).
    body(task, ids, files, token) {
      if (task.call === "retry") return UPSTREAM.retryBody(task, files, token);
      const message = { content: task.content, experimental_attachments: files, metadata: {} };
      const body = task.call === "create" ? { id: ids.session, mode: task.mode } : { mode: task.mode };
      if (task.call === "create" && task.model_a_id) body.modelAId = task.model_a_id;
      if (task.call === "create" && task.model_b_id) body.modelBId = task.model_b_id;
      Object.assign(body, { userMessageId: ids.user, modelAMessageId: ids.a, modelBMessageId: ids.b,
                            userMessage: message, modality: task.modality || "chat" });
      body[UPSTREAM.recaptcha.tokenField] = token;
      return body;
    },
    // The 2025 retry path (legacy mode): the whole history as a linear chain, the last message pending.
    retryBody(task, files, token) {
      const now = new Date().toISOString();
      let parent = null;
      const messages = task.messages.map((m, i) => {
        const id = uuid7();
        const message = {
          role: m.role, content: m.content, id, evaluationId: null, evaluationSessionId: task.session_id,
          parentMessageIds: parent ? [parent] : [], experimental_attachments: files[i] || [],
          failureReason: null, metadata: {}, participantPosition: m.position || "a", createdAt: now,
          updatedAt: now, status: i === task.messages.length - 1 ? "pending" : "success",
        };
        parent = id;
        return message;
      });
      const body = { messages, modelId: task.model_id ?? null };
      if (token) body[UPSTREAM.recaptcha.tokenField] = token;
      return body;
    },
    evaluationId: (task, ids) => (task.call === "create" ? ids.session : task.evaluation_id || null),
  };
  // ================================================================================================

  if (window.__arenahubBridge) return; // injected twice into one page: the first copy serves
  const TITLE_PREFIXES = { connecting: "⏳ ", connected: "✅ ", disconnected: "🔴 ", armed: "🎯 " };
  const nativeFetch = window.fetch.bind(window);
  const inflight = new Map(); // request id -> AbortController
  let socket = null;
  let state = "disconnected";
  let reconnectTimer = null;
  let capturing = false;
  let uploadActions = null; // {url, signed} once found in the page's chunks

  const log = (...args) => console.log("[arenahub]", ...args);

  class Stage extends Error {
    constructor(stage, message, extra) {
      super(message);
      this.stage = stage;
      this.extra = extra || {};
    }
  }

  // --- Ids: UUIDv7, made here just before the call (the site refuses ids far from its clock) -------
  function uuid7() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    let ms = Date.now();
    for (let i = 5; i >= 0; i--) { b[i] = ms % 256; ms = Math.floor(ms / 256); }
    b[6] = (b[6] & 0x0f) | 0x70;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // --- The page: what it is, what it has ------------------------------------------------------------
  function pageKind() {
    // Cloudflare's pages say what they are in their title and markup; the chat's text is never read
    // (an answer may well say "Just a moment...").
    const title = pageTitle().toLowerCase();
    if (UPSTREAM.blockMarkers.some((m) => title.includes(m)) || document.querySelector(UPSTREAM.blockElement)) {
      return "block";
    }
    if (UPSTREAM.challengeMarkers.some((m) => title.includes(m)) || window._cf_chl_opt) return "challenge";
    const host = location.hostname;
    const onSite = UPSTREAM.hosts.some((h) => host === h || host.endsWith("." + h));
    return onSite || UPSTREAM.localHosts.includes(host) ? "arena" : "other";
  }

  function siteKey() {
    for (const script of document.querySelectorAll("script[src]")) {
      const m = script.src.match(UPSTREAM.recaptcha.keyPattern);
      if (m) return m[1];
    }
    const m = document.documentElement.innerHTML.match(UPSTREAM.recaptcha.keyPattern);
    return m ? m[1] : null;
  }

  function enterprise() {
    const g = window.grecaptcha;
    return g && g.enterprise && typeof g.enterprise.execute === "function" ? g.enterprise : null;
  }

  function cookieJar() {
    const jar = {};
    for (const part of document.cookie.split(";")) {
      const at = part.indexOf("=");
      if (at > 0) jar[part.slice(0, at).trim()] = part.slice(at + 1).trim();
    }
    return jar;
  }

  function authCookies() {
    const jar = cookieJar();
    return UPSTREAM.authCookies.filter((name) => name in jar);
  }

  function account() {
    const [whole, first, second] = UPSTREAM.authCookies.map((name) => cookieJar()[name] || "");
    let value = decodeURIComponent(whole || first + second);
    if (!value) return "";
    try {
      if (value.startsWith(UPSTREAM.sessionPrefix)) value = value.slice(UPSTREAM.sessionPrefix.length);
      const b64 = value.replace(/-/g, "+").replace(/_/g, "/");
      const guest = UPSTREAM.isGuest(JSON.parse(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4))));
      return guest === true ? "guest" : guest === false ? "user" : "";
    } catch (error) {
      return ""; // another format: the site knows; the call will tell
    }
  }

  async function waitFor(test, ms) {
    const until = Date.now() + ms;
    for (;;) {
      const value = test();
      if (value || Date.now() > until) return value;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  function facts(extra) {
    const key = siteKey();
    return Object.assign({
      origin: location.origin, page: pageKind(), title: pageTitle().slice(0, 200), auth_cookies: authCookies(), account: account(),
      sitekey_found: !!key, sitekey_hint: key ? key.slice(0, 6) : "", grecaptcha: !!enterprise(),
    }, extra || {});
  }

  async function diagnose(findUploads) {
    await waitFor(enterprise, 8000);
    const extra = {};
    if (findUploads && pageKind() === "arena") {
      try {
        await findUploadActions(false);
        extra.upload_actions = true;
      } catch (error) {
        extra.upload_actions = false;
        extra.upload_problem = String(error.message || error).slice(0, 300);
      }
    }
    return facts(extra);
  }

  function flightText() {
    const pushed = window.__next_f;
    if (Array.isArray(pushed)) {
      const text = pushed.filter((e) => Array.isArray(e) && typeof e[1] === "string").map((e) => e[1]).join("");
      if (text) return { text, source: "flight" };
    }
    return { text: document.documentElement.outerHTML, source: "html" };
  }

  // --- reCAPTCHA: a fresh token for every call, made just before it, never reused or sent away ------
  async function recaptchaToken(action) {
    const key = siteKey();
    if (!key) throw new Stage("token", "the page has no reCAPTCHA site key (recaptcha/enterprise.js?render=...)");
    const g = await waitFor(enterprise, UPSTREAM.recaptcha.waitMs);
    if (!g) throw new Stage("token", "grecaptcha.enterprise did not load in the page");
    const timeout = new Promise((_, reject) => setTimeout(
      () => reject(new Stage("token", "grecaptcha.enterprise did not answer in time")), UPSTREAM.recaptcha.waitMs));
    const token = await Promise.race([
      new Promise((resolve, reject) => g.ready(() => g.execute(key, { action }).then(resolve, reject))), timeout,
    ]).catch((error) => {
      throw error instanceof Stage ? error : new Stage("token", `grecaptcha.enterprise refused: ${error.message || error}`);
    });
    if (typeof token !== "string" || !token) throw new Stage("token", "grecaptcha.enterprise gave no token");
    return token;
  }

  // --- Uploads: the page's own server actions, found in its JS at run time -------------------------
  // The page's scripts: those it loaded, and after a new build of the site (stale action ids), those a
  // fresh copy of the page lists (the open page still names the old build's).
  async function chunkUrls(fresh) {
    const urls = new Set();
    const add = (src) => {
      const url = new URL(src, location.href);
      if (UPSTREAM.uploads.chunkPath.test(url.pathname)) urls.add(url.href);
    };
    if (fresh) {
      const response = await nativeFetch(location.pathname, { credentials: "include", cache: "no-store" });
      const html = await response.text();
      for (const m of html.matchAll(/<script[^>]*\ssrc="([^"]+)"/g)) add(m[1].replace(/&amp;/g, "&"));
    }
    for (const script of document.querySelectorAll("script[src]")) add(script.src);
    for (const entry of performance.getEntriesByType("resource")) {
      if (entry.initiatorType === "script" && UPSTREAM.uploads.chunkPath.test(new URL(entry.name).pathname)) {
        urls.add(entry.name);
      }
    }
    return Array.from(urls).slice(0, UPSTREAM.uploads.maxChunks);
  }

  async function findUploadActions(again) {
    if (uploadActions && !again) return uploadActions;
    const names = UPSTREAM.uploads.names;
    const found = {};
    const urls = await chunkUrls(again);
    for (const url of urls) {
      const response = await nativeFetch(url, { credentials: "same-origin", cache: "force-cache" });
      if (!response.ok) continue;
      const code = await response.text();
      for (const [key, name] of Object.entries(names)) {
        const m = !found[key] && code.match(UPSTREAM.uploads.reference(name));
        if (m) found[key] = m[1];
      }
      if (found.url && found.signed) {
        uploadActions = found;
        return found;
      }
    }
    const missing = Object.entries(names).filter(([key]) => !found[key]).map(([, name]) => name);
    throw new Stage("upload", `${missing.join(" and ")} not found in the page's ${urls.length} script(s)`);
  }

  async function serverAction(id, args) {
    const response = await nativeFetch(location.pathname, {
      method: "POST", credentials: "include", body: JSON.stringify(args),
      headers: { "next-action": id, accept: "text/x-component", "content-type": UPSTREAM.contentType },
    });
    const text = await response.text();
    if (!response.ok) return { stale: response.status === 404, status: response.status, text };
    for (const line of text.split("\n")) {
      const m = line.match(/^[0-9a-f]+:(.*)$/);
      if (!m) continue;
      try {
        const value = JSON.parse(m[1]);
        if (value && typeof value === "object" && "success" in value) return { value };
      } catch (error) { /* not this line */ }
    }
    return { status: response.status, text };
  }

  async function action(which, args) {
    for (let attempt = 0; attempt < 2; attempt++) {
      const ids = await findUploadActions(attempt > 0);
      const result = await serverAction(ids[which], args);
      if (result.value) {
        if (!result.value.success) {
          throw new Stage("upload", `${UPSTREAM.uploads.names[which]} refused: ${result.value.error || "no reason"}`);
        }
        return result.value.data || {};
      }
      if (!result.stale) {
        throw new Stage("upload", `${UPSTREAM.uploads.names[which]} answered HTTP ${result.status}`,
                        { status: result.status, body: (result.text || "").slice(0, ERROR_BODY_CHARS) });
      }
      uploadActions = null; // a new build of the site: find the actions again, once
    }
    throw new Stage("upload", `${UPSTREAM.uploads.names[which]} is not an action of this page any more`);
  }

  function dataUrlBlob(dataUrl) {
    const comma = dataUrl.indexOf(",");
    const binary = atob(dataUrl.slice(comma + 1).replace(/\s+/g, ""));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  async function upload(file) {
    const where = await action("url", [file.name, file.content_type]);
    if (!where.uploadUrl || !where.key) throw new Stage("upload", "generateUploadUrl gave no upload URL");
    const put = await nativeFetch(where.uploadUrl, {
      method: "PUT", headers: { "content-type": file.content_type }, body: dataUrlBlob(file.data_url),
    });
    if (!put.ok) {
      throw new Stage("upload", `the upload answered HTTP ${put.status}`,
                      { status: put.status, body: (await put.text()).slice(0, ERROR_BODY_CHARS) });
    }
    const signed = await action("signed", [where.key]);
    if (!signed.url) throw new Stage("upload", "getSignedUrl gave no URL");
    return { name: file.name, contentType: file.content_type, url: signed.url };
  }

  // --- Page title: our state as a prefix, the page's own title after it ----------------------------
  function pageTitle() {
    let title = document.title;
    for (let again = true; again;) {
      again = false;
      for (const prefix of Object.values(TITLE_PREFIXES)) {
        if (title.startsWith(prefix)) { title = title.slice(prefix.length); again = true; }
      }
    }
    return title;
  }

  function showState() {
    document.title = TITLE_PREFIXES[state] + (capturing ? TITLE_PREFIXES.armed : "") + pageTitle();
  }

  function setState(next) { state = next; showState(); }

  // --- The socket to the bridge --------------------------------------------------------------------
  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  function connect() {
    reconnectTimer = null;
    setState("connecting");
    let ws;
    try {
      ws = new WebSocket(BRIDGE_WS_URL);
    } catch (error) {
      log("cannot open", BRIDGE_WS_URL, error);
      scheduleReconnect();
      return;
    }
    socket = ws;
    ws.onopen = () => {
      setState("connected");
      send({ type: "hello", script_version: VERSION, protocol: PROTOCOL, facts: facts() });
    };
    ws.onmessage = (event) => onMessage(event.data);
    ws.onclose = () => {
      if (socket !== ws) return;
      socket = null;
      setState("disconnected");
      // Nobody can receive these answers any more: stop spending upstream on them.
      for (const controller of inflight.values()) controller.abort();
      inflight.clear();
      scheduleReconnect();
    };
    ws.onerror = () => {}; // onclose follows and reconnects
  }

  function scheduleReconnect() {
    if (reconnectTimer === null) reconnectTimer = setTimeout(connect, RECONNECT_MS);
  }

  function onMessage(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch (error) {
      log("ignored a message that is not JSON");
      return;
    }
    switch (message.type) {
      case "run": run(message.id, message.task); break;
      case "cancel": { const c = inflight.get(message.id); if (c) c.abort(); break; }
      case "diagnose":
        diagnose(message.find_uploads !== false).then((f) => send({ type: "diagnosis", id: message.id, facts: f }));
        break;
      case "page_models": send(Object.assign({ type: "flight", id: message.id }, flightText())); break;
      case "reload": log("reloading:", message.reason || "asked by the bridge"); location.reload(); break;
      case "arm_capture": armCapture(); break;
      default: log("ignored an unknown message", message.type);
    }
  }

  // --- A task: one upstream call, its raw answer streamed back -------------------------------------
  async function run(id, task) {
    const call = task && UPSTREAM.calls[task.call];
    const fail = (stage, message, extra) => send(Object.assign({ type: "failed", id, stage, message }, extra || {}));
    if (!call) return fail("task", `unknown call ${task && task.call}`);
    if (pageKind() !== "arena") return fail("task", `this tab is not on an arena.ai chat page (${pageKind()})`);
    const controller = new AbortController();
    inflight.set(id, controller);
    try {
      let files;
      if (task.call === "retry") {
        files = [];
        for (const m of task.messages || []) files.push(await Promise.all((m.attachments || []).map(upload)));
      } else {
        files = await Promise.all((task.attachments || []).map(upload));
      }
      let response, ids;
      for (let attempt = 0; ; attempt++) {
        ids = { session: uuid7(), user: uuid7(), a: uuid7(), b: uuid7() };
        const token = await recaptchaToken(call.action).catch((error) => {
          if (task.call === "retry") return null; // a 2025-style page has no reCAPTCHA: let the site decide
          throw error;
        });
        response = await nativeFetch(location.origin + call.path(task), {
          method: call.method, headers: { "Content-Type": UPSTREAM.contentType }, credentials: "include",
          body: JSON.stringify(UPSTREAM.body(task, ids, files, token)), signal: controller.signal,
        });
        if (response.status !== 403 || attempt > 0) break;
        const body = await response.clone().text();
        if (!/recaptcha/i.test(body)) break; // once more with a new token: a token can expire on the way
      }
      const type = response.headers.get("content-type") || "";
      if (!response.ok || !response.body) {
        const body = await response.text();
        return fail("upstream", `arena.ai answered HTTP ${response.status}`, {
          status: response.status, content_type: type, retry_after: response.headers.get("retry-after"),
          body: body.slice(0, ERROR_BODY_CHARS),
        });
      }
      send({ type: "started", id, status: response.status, content_type: type,
             evaluation_id: UPSTREAM.evaluationId(task, ids) });
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const data = decoder.decode(value, { stream: true });
        if (data) send({ type: "chunk", id, data });
      }
      const rest = decoder.decode();
      if (rest) send({ type: "chunk", id, data: rest });
      send({ type: "done", id });
    } catch (error) {
      if (controller.signal.aborted) {
        log("request", id, "cancelled");
      } else if (error instanceof Stage) {
        fail(error.stage, error.message, error.extra);
      } else {
        fail("fetch", `the call failed: ${error && error.message ? error.message : error}`);
      }
    } finally {
      inflight.delete(id);
    }
  }

  // --- The page's own calls: a person's message went through; and (legacy) ID capture -------------
  function urlOf(input) {
    if (typeof input === "string") return input;
    if (input instanceof URL) return input.href;
    if (input instanceof Request) return input.url;
    return "";
  }

  function watchPageCalls() {
    const previous = window.fetch;
    window.fetch = function (input, init) {
      const url = urlOf(input);
      const capture = capturing && url.match(UPSTREAM.retryPattern);
      const result = previous.apply(this, arguments);
      if (UPSTREAM.streamPath.test(url)) {
        result.then((r) => {
          send({ type: "page_call", ok: r.ok, status: r.status });
          // Ids are worth keeping only if the site took the retry (not, say, a message already voted on).
          if (capture && capturing && r.ok) {
            capturing = false;
            showState();
            send({ type: "ids_captured", session_id: capture[1].toLowerCase(), message_id: capture[2].toLowerCase() });
          } else if (capture && !r.ok) {
            log(`the site refused that Retry (HTTP ${r.status}): still armed, click Retry on another answer`);
          }
        }, () => {});
      }
      return result;
    };
  }

  function armCapture() {
    capturing = true;
    showState();
    log("ID capture armed: click Retry on an answer");
  }

  // --- Start ---------------------------------------------------------------------------------------
  window.__arenahubBridge = {
    version: VERSION,
    protocol: PROTOCOL,
    get state() { return state; },
    get armed() { return capturing; },
  };
  watchPageCalls();
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", connect, { once: true });
  } else {
    connect();
  }
})();
