"""The bridge's one application state: config, models, tabs, session status; and the upstream call."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arenahub.bridge import lmarena
from arenahub.bridge.config import BridgeConfig, load_bridge_files
from arenahub.bridge.status import SessionState
from arenahub.bridge.tabs import TabClosed, TabPool
from arenahub.protocol.errors import ApiError, NoClientAvailable, UpstreamError

log = logging.getLogger("arenahub.bridge")


class BrowserNotConnected(NoClientAvailable):
    code = "browser_not_connected"


class TabGone(UpstreamError):
    code = "tab_closed"


@dataclass
class Capture:
    """An armed ID capture, waiting for the user to click Retry in the tab."""

    mode: str
    target: str
    result: asyncio.Future[dict[str, str]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Bridge:
    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.files = load_bridge_files(config_path)
        self.tabs = TabPool()
        self.session = SessionState()
        self.capture: Capture | None = None
        self.page_source: asyncio.Future[str] | None = None

    @property
    def config(self) -> BridgeConfig:
        return self.files.config

    def reload(self) -> None:
        """Re-read config.jsonc, models.json and model_endpoint_map.json (a broken file keeps the old ones)."""
        self.files = load_bridge_files(self.config_path)
        log.info("reloaded %s: %d model(s)", self.config_path, len(self.files.models))

    # -- the upstream call, through a tab -----------------------------------------------------
    async def events(self, request: dict[str, Any], model: lmarena.Model,
                     endpoint: lmarena.Endpoint) -> AsyncIterator[lmarena.Event]:
        """Run one request in a tab and yield the upstream's events (text, images, finish).

        Raises the named ApiError for every failure, and keeps the session status up to date.
        """
        payload = lmarena.build_task(request, model, endpoint, tavern_mode=self.config.tavern_mode_enabled,
                                     bypass=self.config.bypass_enabled)
        tab = self.tabs.pick()
        if tab is None:
            raise BrowserNotConnected(
                "No LMArena tab is connected to the bridge: open https://lmarena.ai in a browser with the "
                "arenahub userscript installed (`arenahub userscript` prints it).", headers={"Retry-After": "5"})
        request_id = uuid.uuid4().hex
        queue = self.tabs.open(tab, request_id, payload)
        parser = lmarena.StreamParser(position=endpoint.position)
        timeout = self.config.stream_response_timeout_seconds
        finished = False
        try:
            while not finished:
                try:
                    async with asyncio.timeout(timeout):
                        item = await queue.get()
                except TimeoutError:
                    raise lmarena.stream_timeout(timeout) from None
                if isinstance(item, TabClosed):
                    raise TabGone(f"The LMArena tab closed while answering ({item.reason}).")
                if item == "[DONE]":
                    finished = True
                    events = parser.close()
                elif isinstance(item, str):
                    events = parser.feed(item)
                elif isinstance(item, dict) and "error" in item:
                    finished = True
                    status = item.get("status") if isinstance(item.get("status"), int) else None
                    body = item.get("body") if isinstance(item.get("body"), str) else str(item["error"])
                    raise lmarena.classify_failure(status, body)
                else:
                    log.warning("request %s: ignoring a message from the tab it cannot read: %.200r", request_id, item)
                    continue
                for event in events:
                    if isinstance(event, lmarena.Challenge):
                        raise lmarena.classify_failure(None, "<title>Just a moment...</title>")
                    if isinstance(event, lmarena.UpstreamFailure):
                        raise event.error
                    if isinstance(event, lmarena.Unknown):
                        log.debug("request %s: unknown upstream line %.200r", request_id, event.line)
                        continue
                    yield event
            self.session.succeeded()
        except ApiError as err:
            if isinstance(err, lmarena.NeedsVerification):
                tab.send_nowait({"command": "refresh"})  # the reloaded page shows the check to the user
            self._note_failure(err)
            raise
        finally:
            if finished:
                self.tabs.finish(request_id)
            else:
                self.tabs.cancel(request_id)

    def _note_failure(self, err: ApiError) -> None:
        if isinstance(err, lmarena.NeedsVerification):
            self.session.challenged()
        elif isinstance(err, lmarena.InvalidSession):
            self.session.failed(err.message, invalid_session=True)
        elif isinstance(err, lmarena.UpstreamRateLimited):
            retry = err.headers.get("Retry-After", "60")
            self.session.failed(err.message, rate_limited_for=float(retry) if retry.isdigit() else 60.0)
        elif not isinstance(err, BrowserNotConnected):
            self.session.failed(err.message)

    def check_available(self) -> None:
        """Refuse at once what cannot work now (no tab, verification pending)."""
        if self.session.needs_verification:
            raise lmarena.classify_failure(None, "<title>Just a moment...</title>")
