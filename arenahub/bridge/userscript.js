// ==UserScript==
// @name         arenahub LMArena bridge
// @namespace    https://github.com/arenahub
// @version      0.1.0
// @description  Lets a local arenahub bridge answer OpenAI-style requests through this logged-in LMArena tab.
// @match        https://lmarena.ai/*
// @match        https://*.lmarena.ai/*
// @grant        none
// @run-at       document-end
// @connect      localhost
// @connect      127.0.0.1
// ==/UserScript==

// Written for arenahub (`arenahub userscript --bridge-url ...` prints it with the URL filled in).
// Every tab that runs it keeps its own WebSocket to the bridge; the bridge spreads requests over them.
(function () {
  "use strict";

  const BRIDGE_WS_URL = "{{BRIDGE_WS_URL}}";
  const VERSION = "0.1.0";
  const RECONNECT_MS = 5000;
  const ERROR_BODY_CHARS = 2000;

  // ===== UPSTREAM: the one place that knows LMArena's paths and formats =====================
  // LMArena changes its private API often: when it does, this object is what to change.
  const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
  const UPSTREAM = {
    method: "PUT",
    contentType: "text/plain;charset=UTF-8",
    // Relative to the page's own origin, so the same script runs on a local simulator.
    streamUrl: (sessionId, messageId) =>
      `${location.origin}/nextjs-api/stream/retry-evaluation-session-message/${sessionId}/messages/${messageId}`,
    // The page's own Retry call, watched for while ID capture is armed.
    retryPattern: new RegExp(
      `/nextjs-api/stream/retry-evaluation-session-message/(${UUID})/messages/(${UUID})`, "i"),
    // The request body: the templates become a linear chain of messages, the last one pending.
    body(payload) {
      const now = new Date().toISOString();
      const templates = payload.message_templates;
      const messages = [];
      let parent = null;
      templates.forEach((template, i) => {
        const id = crypto.randomUUID();
        messages.push({
          role: template.role,
          content: template.content,
          id,
          evaluationId: null,
          evaluationSessionId: payload.session_id,
          parentMessageIds: parent ? [parent] : [],
          experimental_attachments: Array.isArray(template.attachments) ? template.attachments : [],
          failureReason: null,
          metadata: null,
          participantPosition: template.participantPosition || "a",
          createdAt: now,
          updatedAt: now,
          status: i === templates.length - 1 ? "pending" : "success",
        });
        parent = id;
      });
      return { messages, modelId: payload.target_model_id ?? null };
    },
  };
  // ===========================================================================================

  if (window.__arenahubBridge) return; // injected twice into one page: the first copy serves
  const TITLE_PREFIXES = { connecting: "⏳ ", connected: "✅ ", disconnected: "🔴 ", armed: "🎯 " };
  const nativeFetch = window.fetch.bind(window);
  const inflight = new Map(); // request_id -> AbortController
  let socket = null;
  let state = "disconnected";
  let reconnectTimer = null;
  let capture = null; // {wrapped, previous} while ID capture is armed

  const log = (...args) => console.log("[arenahub]", ...args);

  // --- Page title: our state as a prefix, the page's own title after it ----------------------
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
    document.title = TITLE_PREFIXES[state] + (capture ? TITLE_PREFIXES.armed : "") + pageTitle();
  }

  function setState(next) { state = next; showState(); }

  // --- The socket to the bridge --------------------------------------------------------------
  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(message));
      return true;
    }
    log("not connected: dropped", message.type || message.request_id);
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
      send({ type: "hello", version: VERSION, origin: location.origin, title: pageTitle() });
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
      log("ignored a frame that is not JSON");
      return;
    }
    if (message.command) {
      runCommand(message);
    } else if (message.request_id && message.payload) {
      runTask(message.request_id, message.payload);
    } else {
      log("ignored an unknown frame", message);
    }
  }

  function runCommand(message) {
    switch (message.command) {
      case "refresh":
      case "reconnect":
        location.reload();
        break;
      case "activate_id_capture":
        armCapture();
        break;
      case "send_page_source":
        send({ type: "page_source", html: document.documentElement.outerHTML });
        break;
      case "cancel": {
        const controller = inflight.get(message.request_id);
        if (controller) controller.abort();
        break;
      }
      default:
        log("unknown command", message.command);
    }
  }

  // --- A task: one upstream call, its raw chunks streamed back ------------------------------
  async function runTask(requestId, payload) {
    const reply = (data) => send({ request_id: requestId, data });
    if (!payload.session_id || !payload.message_id) {
      reply({ error: "The bridge sent no session_id/message_id: capture them with `arenahub bridge capture-ids`." });
      return;
    }
    if (!Array.isArray(payload.message_templates) || payload.message_templates.length === 0) {
      reply({ error: "The bridge sent no messages to send upstream." });
      return;
    }
    const controller = new AbortController();
    inflight.set(requestId, controller);
    try {
      const response = await nativeFetch(UPSTREAM.streamUrl(payload.session_id, payload.message_id), {
        method: UPSTREAM.method,
        headers: { "Content-Type": UPSTREAM.contentType },
        body: JSON.stringify(UPSTREAM.body(payload)),
        credentials: "include",
        signal: controller.signal,
      });
      if (!response.ok || !response.body) {
        const body = await response.text();
        reply({
          error: `Upstream answered HTTP ${response.status}`,
          status: response.status,
          body: body.slice(0, ERROR_BODY_CHARS),
        });
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const chunk = decoder.decode(value, { stream: true });
        if (chunk) reply(chunk);
      }
      const rest = decoder.decode();
      if (rest) reply(rest);
      reply("[DONE]");
    } catch (error) {
      if (controller.signal.aborted) {
        log("request", requestId, "cancelled");
      } else {
        reply({ error: `Upstream call failed: ${error && error.message ? error.message : error}` });
      }
    } finally {
      inflight.delete(requestId);
    }
  }

  // --- ID capture: while armed, the page's own Retry call tells us its two ids ---------------
  function urlOf(input) {
    if (typeof input === "string") return input;
    if (input instanceof URL) return input.href;
    if (input instanceof Request) return input.url;
    return "";
  }

  function armCapture() {
    if (capture) return;
    const previous = window.fetch;
    const wrapped = function (input, init) {
      const match = capture && urlOf(input).match(UPSTREAM.retryPattern);
      if (match) {
        disarmCapture();
        send({ type: "ids_captured", session_id: match[1].toLowerCase(), message_id: match[2].toLowerCase() });
      }
      return previous.apply(this, arguments);
    };
    capture = { wrapped, previous };
    window.fetch = wrapped;
    showState();
    log("ID capture armed: click Retry on an answer");
  }

  function disarmCapture() {
    if (!capture) return;
    if (window.fetch === capture.wrapped) window.fetch = capture.previous;
    capture = null;
    showState();
  }

  // --- Start ---------------------------------------------------------------------------------
  window.__arenahubBridge = {
    version: VERSION,
    get state() { return state; },
    get armed() { return capture !== null; },
  };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", connect, { once: true });
  } else {
    connect();
  }
})();
