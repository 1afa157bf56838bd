"""What a browser loads: the page (HTML, Next.js flight data, its own chat UI), the JS chunks, the
reCAPTCHA stand-in script.

The site key appears in the page once, in the reCAPTCHA loader's ``render=`` parameter, as on the
real site: a client must read it from there. The model list is only in the flight data, pushed to
``self.__next_f`` as two JS strings split in the middle of the list, so a client must join the
pushes before parsing. The page's own Send and Retry buttons make the same calls a person's
browser makes, looking ``window.fetch`` up at click time so that a wrapper installed later sees them.
"""

from __future__ import annotations

import html

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from arenahub.tools.arena_sim import uploads
from arenahub.tools.arena_sim.auth import AuthSession, set_cookies, valid_session
from arenahub.tools.arena_sim.recaptcha import STAND_IN_SCRIPT
from arenahub.tools.arena_sim.state import SimState, sim_of

TITLE = "Arena AI (simulated)"
JS = "application/javascript; charset=utf-8"
_encode = msgspec.json.Encoder().encode


def _j(value: object) -> str:
    return _encode(value).decode()


def flight_parts(sim: SimState, session: AuthSession | None) -> tuple[str, str]:
    """The RSC flight text, cut in two in the middle of the model list."""
    head = ('1:"$Sreact.fragment"\n'
            f'9:I[47320,["5093","static/chunks/{sim.build.build_id}/{sim.build.chunks[1]}"],"ArenaProvider"]\n'
            '8:["$","$L9",null,{"initialModels":')
    models = _j(sim.models)
    model_a = next((m.id for m in sim.models if m.userSelectable and m.supports("chat")), None)
    user = {"id": session.user_id, "isAnonymous": session.is_anonymous} if session else None
    tail = f',"initialModelAId":{_j(model_a)},"initialModelBId":null,"userState":{_j(user)}}}]\n'
    cut = len(head) + len(models) // 2
    text = head + models + tail
    return text[:cut], text[cut:]


def _push(text: str) -> str:
    # A JS string literal; "<" escaped so that no "</script>" inside it can end the tag.
    literal = _j(text).replace("<", "\\u003c")
    return f"<script>self.__next_f.push([1,{literal}])</script>"


def render(sim: SimState, session: AuthSession | None) -> str:
    esc = html.escape
    page = sim.page
    first, second = flight_parts(sim, session)
    chunk_tags = "\n".join(f'<script src="{esc(url)}" async></script>' for url in sim.build.chunk_urls())
    signed_in = "signed in" if session and not session.is_anonymous else "guest" if session else "signed out"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{TITLE}</title>
<script src="/recaptcha/enterprise.js?render={esc(sim.site_key)}" async defer></script>
{chunk_tags}
<style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;color:#222}}
.msg{{padding:.75rem 1rem;margin:.5rem 0;border-radius:.5rem}}.user{{background:#eef}}.assistant{{background:#f4f4f4}}
textarea{{width:100%;min-height:4rem}}#answer img{{max-width:8rem;display:block}}
.badge{{font-size:.7rem;background:#fc0;padding:.1rem .4rem;border-radius:.3rem}}</style></head>
<body><header><h1>Arena AI <span class="badge">simulated</span></h1>
<span id="account">{signed_in}</span> <button id="sign-in" type="button">Sign in</button></header>
<main id="chat" data-session-id="{esc(page.id)}" data-message-id="{esc(sim.settings.page_message_id)}"
 data-user-message-id="{esc(sim.settings.page_user_message_id)}" data-model-a-id="{esc(page.model_a or '')}">
<section id="new-chat"><textarea id="prompt" placeholder="Ask anything">Hello there</textarea>
<button id="send" type="button">Send</button></section>
<section id="previous"><h2>Previous conversation</h2>
<div class="msg user" id="question">{esc(page.messages[sim.settings.page_user_message_id].content)}</div>
<div class="msg assistant" id="previous-answer">{esc(page.messages[sim.settings.page_message_id].content)}</div>
<button id="retry" type="button">Retry</button></section>
<div class="msg assistant" id="answer" data-state="idle"></div>
</main>
<script>(self.__next_f=self.__next_f||[]).push([0])</script>
{_push(first)}
{_push(second)}
<script>{PAGE_SCRIPT}</script>
</body></html>
"""


async def page(request: Request) -> Response:
    """A page visit signs in as ``auto_sign_in`` asks when the request has no valid session."""
    if request.method == "POST":
        if "next-action" in request.headers:
            return await uploads.server_action(request)
        return PlainTextResponse("Method Not Allowed", status_code=405, headers={"allow": "GET, HEAD"})
    sim = sim_of(request)
    session = valid_session(request, sim.session)
    new_session = None if session else sim.session_for_page()
    response = HTMLResponse(render(sim, session or new_session))
    if new_session is not None:
        set_cookies(response, request, new_session)
    return response


async def chunk(request: Request) -> Response:
    source = sim_of(request).build.chunk_source(request.path_params["path"])
    if source is None:
        return PlainTextResponse("Not Found", status_code=404)
    return Response(source, media_type=JS, headers={"cache-control": "public, max-age=31536000, immutable"})


async def recaptcha_script(request: Request) -> Response:
    return Response(STAND_IN_SCRIPT, media_type=JS)


PAGE_SCRIPT = r"""
(function () {
  "use strict";
  var chat = document.getElementById("chat"), answer = document.getElementById("answer");
  function uuidv7() {
    var b = new Uint8Array(16), ms = Date.now();
    crypto.getRandomValues(b);
    for (var i = 5; i >= 0; i--) { b[i] = ms % 256; ms = Math.floor(ms / 256); }
    b[6] = (b[6] & 0x0f) | 0x70; b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.from(b, function (x) { return x.toString(16).padStart(2, "0"); }).join("");
    return [h.slice(0, 8), h.slice(8, 12), h.slice(12, 16), h.slice(16, 20), h.slice(20)].join("-");
  }
  function siteKey() {
    var script = document.querySelector('script[src*="/recaptcha/enterprise.js"]');
    return new URL(script.src, location.href).searchParams.get("render");
  }
  async function recaptchaToken(action) {
    while (!(window.grecaptcha && window.grecaptcha.enterprise)) {
      await new Promise(function (resolve) { setTimeout(resolve, 25); });
    }
    await new Promise(function (resolve) { window.grecaptcha.enterprise.ready(resolve); });
    return window.grecaptcha.enterprise.execute(siteKey(), {action: action});
  }
  function take(line, state) {
    var m = /^([ab])([0-9a-z]):(.*)$/.exec(line);
    if (!m) return;
    var value = JSON.parse(m[3]);
    if (m[2] === "0") answer.append(value);
    if (m[2] === "2") value.forEach(function (item) {
      if (item.type !== "image") return;
      var img = document.createElement("img"); img.src = item.image; img.alt = "generated image";
      answer.appendChild(img);
    });
    if (m[2] === "3") state.error = value;
    if (m[2] === "d" && value.finishReason === "error") state.error = "finishReason error";
  }
  async function show(call) {
    answer.textContent = ""; answer.dataset.state = "streaming";
    try {
      var response = await call;
      if (!response.ok) throw new Error("HTTP " + response.status + ": " + await response.text());
      var reader = response.body.getReader(), decoder = new TextDecoder(), buffer = "", state = {error: null};
      for (;;) {
        var chunk = await reader.read();
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, {stream: true});
        var lines = buffer.split("\n"); buffer = lines.pop();
        lines.forEach(function (line) { take(line, state); });
      }
      if (buffer) take(buffer, state);
      if (state.error !== null) throw new Error(state.error);
      answer.dataset.state = "done";
    } catch (error) {
      answer.textContent = String((error && error.message) || error); answer.dataset.state = "failed";
    }
  }
  function post(url, method, body) {
    return window.fetch(url, {method: method, headers: {"Content-Type": "text/plain;charset=UTF-8"},
                              body: JSON.stringify(body), credentials: "include"});
  }
  document.getElementById("send").addEventListener("click", function () {
    var content = document.getElementById("prompt").value;
    show(recaptchaToken("chat_submit").then(function (token) {
      return post("/nextjs-api/stream/create-evaluation", "POST", {
        id: uuidv7(), mode: "direct", modelAId: chat.dataset.modelAId, userMessageId: uuidv7(),
        modelAMessageId: uuidv7(), userMessage: {content: content, experimental_attachments: [], metadata: {}},
        modality: "chat", recaptchaV3Token: token});
    }));
  });
  document.getElementById("retry").addEventListener("click", function () {
    var session = chat.dataset.sessionId, message = chat.dataset.messageId, user = chat.dataset.userMessageId;
    var now = new Date().toISOString();
    function msg(id, role, content, parents, status) {
      return {role: role, content: content, id: id, evaluationId: null, evaluationSessionId: session,
              parentMessageIds: parents, experimental_attachments: [], failureReason: null, metadata: {},
              participantPosition: "a", createdAt: now, updatedAt: now, status: status};
    }
    show(recaptchaToken("chat_retry").then(function (token) {
      var question = document.getElementById("question").textContent;
      return post("/nextjs-api/stream/retry-evaluation-session-message/" + session + "/messages/" + message, "PUT", {
        messages: [msg(user, "user", question, [], "success"), msg(message, "assistant", "", [user], "pending")],
        modelId: chat.dataset.modelAId || null, recaptchaV3Token: token});
    }));
  });
  document.getElementById("sign-in").addEventListener("click", function () {
    window.fetch("/nextjs-api/sign-in/email", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({email: "person@example.com"}), credentials: "include"})
      .then(function () { location.reload(); });
  });
})();
"""
