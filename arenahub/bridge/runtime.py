"""The bridge's one application state (config, models, tabs, session status) and the upstream call.

A request becomes one task for one tab (``lmarena.task``): a new arena.ai conversation with the
flattened history, a follow-up in a conversation this bridge answered, or (legacy mode) the 2025
retry of captured ids. The tab's answer is parsed into events (``lmarena.StreamParser``); every
failure is a named error (``lmarena.failures``) and updates the session status, which the client
reports to the platform.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arenahub.background import watched
from arenahub.bridge import lmarena
from arenahub.bridge.config import BridgeConfig, load_bridge_files
from arenahub.bridge.diagnosis import Check, check_tab, fatal
from arenahub.bridge.images import ImageFetcher
from arenahub.bridge.status import SessionState
from arenahub.bridge.tabs import Tab, TabClosed, TabPool
from arenahub.jsonc import ConfigError
from arenahub.protocol import tab
from arenahub.protocol.errors import ApiError, NoClientAvailable, UpstreamError

log = logging.getLogger("arenahub.bridge")

RELOAD_EVERY = 120.0  # at most one reload of a tab a this often, for a Cloudflare interstitial: never a loop
PROBE_TEXT = "Reply with the single word OK."


class BrowserNotConnected(NoClientAvailable):
    code = "browser_not_connected"


class TabGone(UpstreamError):
    code = "tab_closed"


class TabNotReady(NoClientAvailable):
    """Tabs are connected, but none can take work (an old userscript, a Cloudflare page, ...)."""

    code = "browser_not_ready"


# States in which a request is refused before any call, and the error it gets.
_REFUSING: dict[str, type[ApiError]] = {
    "verification_required": lmarena.VerificationRequired, "blocked": lmarena.CloudflareBlocked,
    "cloudflare_challenge": lmarena.NeedsVerification, "signed_out": lmarena.SignedOut,
    "clock_skew": lmarena.ClockSkew, "userscript_outdated": TabNotReady}


@dataclass
class Capture:
    """An armed ID capture (legacy mode), waiting for the user to click Retry in the tab."""

    mode: str
    target: str
    result: asyncio.Future[dict[str, str]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class _Plan:
    task: tab.Task
    position: lmarena.Position
    prefer_tab: str | None = None
    remember: tuple[str, list[lmarena.Turn]] | None = None  # (conversation key, history) to remember on success
    follow_up_of: str | None = None


def image_markdown(urls: list[str]) -> str:
    return "".join(f"![Image]({url})\n" for url in urls)


class Bridge:
    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.files = load_bridge_files(config_path)
        self.tabs = TabPool()
        self.session = SessionState()
        self.capture: Capture | None = None
        self.conversations = lmarena.Conversations()
        self.images = ImageFetcher(allow_private=self.config.allow_private_image_urls)
        self._seen_kinds: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._reloaded_at = -RELOAD_EVERY  # the last reload of a tab for a Cloudflare interstitial (monotonic)
        self._stamp = self._file_stamp()

    @property
    def config(self) -> BridgeConfig:
        return self.files.config

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``work`` in the background for as long as the bridge runs."""
        task = watched(work, name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.images.close()

    # -- files ----------------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read config.jsonc, models.json and model_endpoint_map.json (a broken file keeps the old ones)."""
        self.files = load_bridge_files(self.config_path)
        self.images.allow_private = self.config.allow_private_image_urls
        self._stamp = self._file_stamp()
        self.refresh_checks()
        log.info("reloaded %s and the files beside it: %d model(s) in %s", self.config_path.name,
                 len(self.files.models), self.config.models_path.name)
        self._check_platform_section()

    def _check_platform_section(self) -> None:
        """The platform client's sections of the same file are read by POST /platform/register (or a restart);
        a mistake in them is said now, when the file changes, rather than only then."""
        from arenahub.client.config import load_client_config_or_disabled
        try:
            load_client_config_or_disabled(self.config_path)
        except ConfigError as exc:
            log.error("%s: the platform client keeps its current settings; fix it, then POST /platform/register",
                      exc)

    def _file_stamp(self) -> tuple[float, ...]:
        stamps = []
        for path in (self.config_path, self.config.models_path, self.config.endpoint_map_path):
            try:
                stamps.append(path.stat().st_mtime)
            except OSError:
                stamps.append(0.0)
        return tuple(stamps)

    async def watch_files(self, every: float = 1.0) -> None:
        """Pick up edits of the three files (update-models, a person's edit) without a restart."""
        while True:
            await asyncio.sleep(every)
            stamp = self._file_stamp()
            if stamp == self._stamp:
                continue
            self._stamp = stamp
            try:
                self.reload()
            except ConfigError as exc:
                log.error("kept the previous settings: %s", exc)

    # -- tabs -----------------------------------------------------------------------------------
    def needs_sign_in(self) -> bool:
        return not self.config.legacy and self.config.arena_mode in ("direct", "side-by-side")

    def checks(self) -> list[Check]:
        best = self.tabs.best()
        return check_tab(best.view() if best else None, needs_sign_in=self.needs_sign_in())

    def refresh_checks(self) -> None:
        self.session.tab_reported(self.checks())

    async def inspect(self, on: Tab, *, timeout: float = 20.0) -> None:
        """Ask a tab what its page shows (site key, uploads, models); the session status follows."""
        try:
            diagnosis = await on.ask(lambda i: tab.Diagnose(id=i), timeout)
            if isinstance(diagnosis, tab.Diagnosis):
                on.facts = diagnosis.facts
            if on.usable:
                flight = await on.ask(lambda i: tab.PageModels(id=i), timeout)
                if isinstance(flight, tab.Flight):
                    on.models_in_page = len(lmarena.page_models(flight.text))
        except (TimeoutError, ConnectionError) as exc:
            log.info("tab %s did not answer its checks (%s)", on.id, exc or "timeout")
        self.refresh_checks()

    def page_call(self, ok: bool) -> None:
        """The page's own chat call ended: a person used the tab. Success ends every condition."""
        if ok:
            log.info("the arena.ai tab's own call went through: the session works")
            self.session.succeeded()

    # -- the upstream call, through a tab -------------------------------------------------------
    def check_available(self) -> None:
        """Refuse at once what cannot work now: a person is needed at the tab, or the page lacks what a call
        needs (its reCAPTCHA); the error says what to do."""
        session = self.session
        state = session.state(len(self.tabs.usable()) or len(self.tabs))
        if state == "no_tab":
            return  # the call itself says so, with its own advice
        if session.rate_limited():
            wait = max(1.0, (session.rate_limited_until or 0) - time.time())
            raise lmarena.UpstreamRateLimited(f"arena.ai is rate limiting this account for {wait:.0f} s more; retry "
                                              "then, or spread requests over more accounts.", retry_after=wait)
        blocking = fatal(session.checks)
        refused = state in _REFUSING or (state == "site_changed" and blocking is not None)
        if not refused:
            return
        message = session.conditions.get(state) or (
            f"{blocking.detail}: {blocking.advice}." if blocking is not None else session.action(state) or state)
        error = _REFUSING.get(state) or (lmarena.RecaptchaUnavailable if blocking and blocking.name == "recaptcha"
                                         else TabNotReady)
        raise error(message, headers={"Retry-After": "30"})

    async def _plan(self, request: dict[str, Any], model: lmarena.Model, name: str) -> _Plan:
        turns = lmarena.read_turns(request.get("messages"))
        turns = await self.images.resolve(turns)
        if self.config.legacy:
            endpoint = self.files.endpoint_for(name)
            task = lmarena.retry_task(turns, model, endpoint, tavern_mode=self.config.tavern_mode_enabled,
                                      bypass=self.config.bypass_enabled)
            return _Plan(task, endpoint.position)
        settings = self.files.arena_settings()
        other = settings.side_by_side_model.model_id if settings.side_by_side_model else ""
        key = f"{model.model_id}|{settings.mode}|{settings.target}|{other}"
        found = self.conversations.find(key, turns) if self.config.follow_up else None
        if found is not None and self.tabs.get(found[0].tab_id) is not None:
            known, new_turns = found
            # Taken until this answer is in: a second request with the same history (at the same time, or a
            # regenerated answer) starts its own conversation instead of adding turns to this one.
            self.conversations.forget(known.evaluation_id)
            task, prompt = lmarena.follow_up_task(new_turns, model, settings, known.evaluation_id)
            task.attachments = lmarena.attachments(prompt.images)
            return _Plan(task, settings.position(), known.tab_id, (key, turns), known.evaluation_id)
        task, prompt = lmarena.create_task(turns, model, settings)
        task.attachments = lmarena.attachments(prompt.images)
        return _Plan(task, settings.position(), None, (key, turns))

    async def events(self, request: dict[str, Any], model: lmarena.Model, name: str) -> AsyncIterator[lmarena.Event]:
        """Run one request in a tab and yield the upstream's events (text, reasoning, images, citations, finish).

        Raises the named ApiError for every failure, and keeps the session status up to date.
        """
        plan = await self._plan(request, model, name)
        try:
            async for event in self._run(plan):
                yield event
        except (lmarena.InvalidSession, lmarena.UpstreamApiChanged) as err:
            if plan.follow_up_of is None:
                raise
            # The conversation is gone (expired, another account): start a new one with the whole history.
            log.info("follow-up refused (%s); starting a new conversation", err.code)
            self.conversations.forget(plan.follow_up_of)
            self.session.conditions.pop("session_invalid", None)
            self.session.conditions.pop("site_changed", None)
            async for event in self._run(await self._plan(request, model, name)):
                yield event

    async def _run(self, plan: _Plan) -> AsyncIterator[lmarena.Event]:
        on = self.tabs.pick(plan.prefer_tab)
        if on is None:
            if len(self.tabs):
                self.check_available()
                raise TabNotReady("The connected arena.ai tabs cannot take requests now: " +
                                  (self.session.action(self.session.state(len(self.tabs))) or "see /bridge/status"),
                                  headers={"Retry-After": "10"})
            raise BrowserNotConnected(
                "No arena.ai tab is connected to the bridge: open https://arena.ai in a browser with the "
                "arenahub userscript installed (`arenahub userscript` prints it).", headers={"Retry-After": "5"})
        request_id = uuid.uuid4().hex
        queue = self.tabs.open(on, request_id, plan.task)
        legacy = plan.task.call == "retry"
        parser = lmarena.StreamParser(position=plan.position, legacy=legacy)
        timeout = self.config.stream_response_timeout_seconds
        finished, answered, evaluation_id = False, False, plan.follow_up_of
        text: list[str] = []
        try:
            while not finished:
                try:
                    async with asyncio.timeout(timeout):
                        item = await queue.get()
                except TimeoutError:
                    raise lmarena.stream_timeout(timeout) from None
                events: list[lmarena.Event] = []
                if isinstance(item, TabClosed):
                    raise TabGone(f"The arena.ai tab closed while answering ({item.reason}).")
                if isinstance(item, tab.Failed):
                    finished = True
                    raise self._failure(item, legacy)
                if isinstance(item, tab.Started):
                    evaluation_id = item.evaluation_id or evaluation_id
                    if "html" in item.content_type.lower():
                        parser = _HtmlAnswer(item.content_type)  # type: ignore[assignment]
                    continue
                if isinstance(item, tab.Done):
                    finished = True
                    events = parser.close()
                else:
                    events = parser.feed(item.data)
                for event in events:
                    if isinstance(event, lmarena.UpstreamFailure):
                        raise event.error
                    if isinstance(event, lmarena.Unknown):
                        self._note_unknown(event)
                        continue
                    if isinstance(event, lmarena.RoutedModel):
                        log.debug("request %s: arena.ai routed to %s", request_id, event.name)
                    if isinstance(event, lmarena.TextDelta):
                        text.append(event.text)
                    elif isinstance(event, lmarena.Images):
                        text.append(image_markdown(event.urls))
                    answered = True
                    yield event
            self.session.succeeded()
            if plan.remember and evaluation_id and answered:
                key, turns = plan.remember
                self.conversations.remember(key, turns, "".join(text), evaluation_id, on.id)
        except ApiError as err:
            self._note_failure(err, on)
            raise
        finally:
            if finished:
                self.tabs.finish(request_id)
            else:
                self.tabs.cancel(request_id)

    def _failure(self, failed: tab.Failed, legacy: bool) -> ApiError:
        if failed.stage == "upstream":
            return lmarena.classify_failure(failed.status, failed.body or failed.message,
                                            retry_after=failed.retry_after, legacy=legacy)
        if failed.stage == "token":
            return lmarena.RecaptchaUnavailable(
                f"The arena.ai tab could not get a reCAPTCHA token ({failed.message}). Reload the tab; if it persists, "
                "arena.ai has changed how it loads reCAPTCHA: update arenahub.")
        if failed.stage == "upload":
            if failed.status in (413,) or (failed.body and lmarena.site.TOO_LARGE.search(failed.body)):
                return lmarena.classify_failure(413, failed.body or failed.message)
            return lmarena.UploadUnavailable(
                f"The arena.ai tab could not upload an image the way the page does ({failed.message}). Reload the "
                "tab and retry; if it persists, arena.ai has changed its upload: update arenahub (requests without "
                "images still work).")
        if failed.stage == "fetch":
            return lmarena.classify_failure(None, failed.message or "failed to fetch", legacy=legacy)
        return UpstreamError(f"The arena.ai tab could not run the request: {failed.message}", code="tab_error")

    def _note_unknown(self, event: lmarena.Unknown) -> None:
        if event.kind.startswith("other-side"):
            return
        if event.kind not in self._seen_kinds and len(self._seen_kinds) < 200:
            self._seen_kinds.add(event.kind)
            log.warning("arena.ai sent a line of a kind the bridge does not know (%s: %s); skipped, and reported "
                        "once per kind: %.200r", event.kind, event.reason, event.line)

    def _note_failure(self, err: ApiError, on: Tab) -> None:
        if isinstance(err, BrowserNotConnected | TabGone):
            return
        self.session.failed(err)
        log.warning("arena.ai request failed: %s (%s)", err.code, err.message)
        # One reload for the whole bridge at most this often (a reloaded tab comes back as a new one): the
        # browser clears the interstitial by itself, and a page that keeps showing it needs a person, not a loop.
        if isinstance(err, lmarena.NeedsVerification) and time.monotonic() - self._reloaded_at > RELOAD_EVERY:
            self._reloaded_at = time.monotonic()
            on.send(tab.Reload(reason="Cloudflare interstitial"))

    # -- doctor ---------------------------------------------------------------------------------
    async def probe(self) -> tuple[bool, str]:
        """One tiny real call (``arenahub bridge doctor``): ``(ok, what happened)``."""
        text_models = [m for m in self.files.models.values() if m.kind == "text" and m.model_id]
        if not text_models and not self.config.legacy:
            return False, "no text model in models.json: run `arenahub bridge update-models --config config.jsonc`"
        model = text_models[0] if text_models else next(iter(self.files.models.values()))
        request = {"messages": [{"role": "user", "content": PROBE_TEXT}]}
        answer: list[str] = []
        try:
            async with asyncio.timeout(min(90.0, self.config.stream_response_timeout_seconds)):
                async for event in self.events(request, model, model.name):
                    if isinstance(event, lmarena.TextDelta):
                        answer.append(event.text)
        except ApiError as err:
            return False, f"{err.code}: {err.message}"
        except TimeoutError:
            return False, "no answer within 90 s"
        said = "".join(answer).strip()
        return True, f"{model.name} answered: {said[:80]!r}" if said else f"{model.name} answered (no text)"


class _HtmlAnswer:
    """A 2xx answer that is a web page: collected (bounded), then reported as an unexpected answer."""

    def __init__(self, content_type: str) -> None:
        self.content_type = content_type
        self.body: list[str] = []
        self.size = 0

    def feed(self, text: str) -> list[lmarena.Event]:
        if self.size < 20_000:
            self.body.append(text)
            self.size += len(text)
        return []

    def close(self) -> list[lmarena.Event]:
        return [lmarena.UpstreamFailure(lmarena.unexpected_answer(self.content_type, "".join(self.body)))]
