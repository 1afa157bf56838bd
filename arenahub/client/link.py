"""The client's connection to the platform: connect out, say hello, heartbeat, serve requests.

Reconnects by itself with exponential backoff and jitter. A refusal the platform marks final
(a wrong key, a disabled client) stops the retries until ``POST /platform/register``. A drain
the client asked for is sent again after every welcome (see ``arenahub.client.drain``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
import socket
import time
from typing import Any

import aiohttp
import msgspec

from arenahub import __version__
from arenahub.client import answering, moving
from arenahub.client.capabilities import announced
from arenahub.client.config import ClientConfig, load_client_config_or_disabled, tunnel_url
from arenahub.client.drain import RoutingView
from arenahub.client.reconnect import Backoff, PlatformUrls
from arenahub.client.relay import BridgeRelay, RelayError
from arenahub.client.stats import Stats
from arenahub.client.tunnel import Tunnel
from arenahub.protocol import frames

log = logging.getLogger("arenahub.client")
# The bridge's models and session are looked at this often (seconds); a change is announced at once.
BRIDGE_POLL_SECONDS = 2.0
# The first heartbeat goes this long after connecting (CPU use is measured over it), then every interval.
FIRST_HEARTBEAT_SECONDS = 1.0

WELCOME_TIMEOUT_SECONDS = 15.0
# How long a drain request waits for the platform's Routing frame that confirms it.
DRAIN_CONFIRM_SECONDS = 2.0
# Which copy of the client this is, for the platform's messages about two copies of one client.
INSTANCE = f"{socket.gethostname()[:40]} pid {os.getpid()}"
# After another copy took its place, this one first asks again this soon (the dashboard then shows the
# conflict at once), then every reconnect_max_delay_seconds.
FIRST_STANDBY_SECONDS = 2.0
# Refusals that mean another instance with this client id is connected (see ``standby``).
STANDBY_CODES = ("connection_replaced", "client_id_in_use")
# Settings a running client cannot take from a re-read config.jsonc (the CORS policy is set at start).
NEEDS_RESTART = ("allowed_origins",)
_NOT_SETTINGS = ("path", "warnings")


class Refusal(Exception):
    def __init__(self, frame: frames.Refused) -> None:
        super().__init__(f"{frame.code}: {frame.message}")
        self.frame = frame


class PlatformLink:
    def __init__(self, config: ClientConfig, relay: BridgeRelay, http: aiohttp.ClientSession, stats: Stats,
                 fixed: dict[str, Any] | None = None) -> None:
        self.config = config
        # Settings the program embedding the link decides (the bridge: its own URL), kept on a re-read.
        self._fixed = dict(fixed or {})
        self.relay = relay
        self.stats = stats
        self._http = http
        self.state = "disabled" if not config.enabled else "starting"
        self.last_error: str | None = None
        self.refused: frames.Refused | None = None
        # Another instance with this client id took our place: wait for it to leave, do not take it back.
        self.standby = False
        self.connections = 0
        self.connected_since: float | None = None
        self.last_heartbeat_sent: float | None = None
        self.models: list[str] = []
        self.capabilities = announced(config.capabilities, set())  # as declared (capabilities.py)
        self.session_status = frames.SessionStatus()
        self.routing = RoutingView()
        self._routing_received = asyncio.Event()
        self._backoff = Backoff(cap=config.reconnect_max_delay_seconds)
        self._urls = PlatformUrls(config.urls)  # which instance of a cluster it connects to (reconnect.py)
        self._wake = asyncio.Event()
        self._tunnel: Tunnel | None = None  # the connection new work comes on
        self._moved: set[asyncio.Task[None]] = set()  # connections finishing their answers after a Move
        self._task: asyncio.Task[None] | None = None
        self._state_changed = asyncio.Event()
        self._bridge_nudge = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    @property
    def platform_url(self) -> str:
        """The platform URL this client connects to now (one of config.urls)."""
        return self._urls.current

    @property
    def reconnects(self) -> int:
        return max(0, self.connections - 1)

    def start(self) -> None:
        if self.config.enabled:
            self.state = "starting"
            self._task = asyncio.create_task(self._run(), name="platform-link")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._moved) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _set_state(self, state: str) -> None:
        self.state = state
        self._state_changed.set()

    def reload_config(self) -> tuple[list[str], list[str]]:
        """Read config.jsonc again and use what it holds now: a new key, platform URL or client id is
        used by the next connection (``register_now``). Returns the names of the settings that changed
        (names only: some are secrets) and of those among them that wait for a restart. Raises
        ConfigError, changing nothing, when the file is not valid."""
        fresh = dataclasses.replace(load_client_config_or_disabled(self.config.path), **self._fixed)
        old = self.config
        changed = [f.name for f in dataclasses.fields(fresh)
                   if f.name not in _NOT_SETTINGS and getattr(fresh, f.name) != getattr(old, f.name)]
        for warning in fresh.warnings:
            log.warning("%s", warning)
        self.config = fresh
        if fresh.lmarena_bridge_url != old.lmarena_bridge_url or fresh.bridge_api_key != old.bridge_api_key:
            self.relay = BridgeRelay(self._http, fresh.lmarena_bridge_url, fresh.bridge_api_key)
        if fresh.reconnect_max_delay_seconds != old.reconnect_max_delay_seconds:
            self._backoff = Backoff(cap=fresh.reconnect_max_delay_seconds)
        if fresh.urls != old.urls:
            self._urls = PlatformUrls(fresh.urls)
        if fresh.log_level != old.log_level:
            logging.getLogger("arenahub").setLevel(fresh.log_level)
        if changed:
            log.info("config.jsonc read again; changed: %s", ", ".join(changed))
        if not fresh.enabled and self._task is not None:
            self._task.cancel()  # the connection closes with it
            self._task = None
            self._set_state("disabled")
        elif fresh.enabled and self._task is None:
            self.start()
        return changed, [name for name in changed if name in NEEDS_RESTART]

    async def register_now(self, wait_seconds: float = 10.0) -> None:
        """Drop the current connection (if any) and connect again now, even after a refusal."""
        if not self.config.enabled:
            return
        self.refused = None
        self.standby = False  # the owner says: this instance; it takes the place of any other
        self._backoff.reset()
        if self._tunnel is not None and not self._tunnel.closed:
            await self._tunnel.ws.close(code=1000, message=b"re-registering")
        self._set_state("connecting")
        self._wake.set()
        deadline = time.monotonic() + wait_seconds
        while self.state not in ("connected", "refused") and time.monotonic() < deadline:
            self._state_changed.clear()
            try:
                await asyncio.wait_for(self._state_changed.wait(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break

    # -- the connection loop ------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if self.refused is not None and not self.refused.retry:
                self._wake.clear()
                await self._wake.wait()  # only POST /platform/register gets us going again
                continue
            self._set_state("standby" if self.standby else "connecting")
            started = time.monotonic()
            delay: float | None = None
            try:
                moved = await self._connect_once()
                if moved is not None:  # new work comes elsewhere now: connect at once
                    self._urls.next_after_loss(True)
                    self._backoff.reset()
                    log.info("%s: connecting to %s for new work", moved, self.platform_url)
                    continue
            except Refusal as exc:
                self.refused = exc.frame
                self.last_error = str(exc)
                if exc.frame.code in STANDBY_CODES:
                    replaced = exc.frame.code == "connection_replaced"
                    self._stand_by(exc.frame)
                    # as long as the longest wait between tries (reconnect_max_delay_seconds, 30 s by default)
                    longest = self.config.reconnect_max_delay_seconds
                    delay = min(FIRST_STANDBY_SECONDS, longest) if replaced else longest * random.uniform(0.8, 1.0)
                elif not exc.frame.retry:
                    self._set_state("refused")
                    log.error("the platform refused this client: %s. Not retrying; fix the config "
                              "and POST /platform/register (or restart).", exc)
                    continue
                else:
                    log.warning("the platform asked us to come back later: %s", exc)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("platform connection to %s failed: %s", self.platform_url, self.last_error)
            was_connected = self.state == "connected"
            if was_connected:
                self._set_state("disconnected")
            if time.monotonic() - started > 60:
                self._backoff.reset()
            if delay is None and (self.refused is None or self.refused.retry):
                # Another instance may serve: try the next URL at once, then back off once all have failed.
                delay = self._urls.next_after_loss(was_connected)
                if delay is not None:
                    log.info("trying the platform at %s next", self.platform_url)
            if delay is None:
                delay = self._backoff.next_delay()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass

    def _stand_by(self, frame: frames.Refused) -> None:
        was = self.standby
        self.standby = True
        self._set_state("standby")
        if frame.code == "connection_replaced" or not was:
            log.error("%s (client id %s). Two copies of this client are running: stop one of them. This one "
                      "asks every %g s whether the other left, and serves once it has; POST /platform/register "
                      "makes this one take over.", frame.message, self.config.client_id,
                      self.config.reconnect_max_delay_seconds)
        else:
            log.info("still standing by: %s", frame.message)

    async def _refresh_bridge(self) -> None:
        try:
            listed, image_models = await self.relay.model_list()
            models = [m for m in listed if len(m) <= frames.MAX_MODEL_NAME]
            if len(models) > frames.MAX_MODELS:  # what the platform takes in one frame; the rest would refuse it
                log.warning("the bridge lists %d models; announcing the first %d", len(models), frames.MAX_MODELS)
                models = models[:frames.MAX_MODELS]
            self.models = models
            self.capabilities = announced(self.config.capabilities,
                                          None if image_models is None else image_models.intersection(models))
            self.session_status = await self.relay.session_status()
        except (RelayError, aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            self.session_status = frames.SessionStatus(bridge_reachable=False,
                                                       last_error=f"bridge unavailable: {exc}")

    async def _connect_once(self) -> str | None:
        """One connection, until it ends (returns None) or the platform asks the client to move (returns why;
        the connection goes on in the background until its answers are done)."""
        await self._refresh_bridge()
        url = self.platform_url
        ws = await self._http.ws_connect(tunnel_url(url), heartbeat=20.0, max_msg_size=64 * 1024 * 1024,
                                         timeout=aiohttp.ClientWSTimeout(ws_close=5))
        tunnel = Tunnel(ws, url)
        moved = False
        try:
            await tunnel.send(frames.Hello(
                version=frames.PROTOCOL_VERSION, client_id=self.config.client_id, api_key=self.config.api_key,
                client_version=__version__, capabilities=[*self.capabilities, frames.BATCHES], models=self.models,
                max_concurrent_requests=self.config.max_concurrent_requests,
                heartbeat_interval_seconds=self.config.heartbeat_interval_seconds, session=self.session_status,
                preferred_routing_strategy=self.config.preferred_routing_strategy, standby=self.standby,
                instance=INSTANCE))
            reply = await self._receive(ws, timeout=WELCOME_TIMEOUT_SECONDS)
            if isinstance(reply, frames.Refused):
                raise Refusal(reply)
            if not isinstance(reply, frames.Welcome):
                raise OSError(f"the platform did not welcome us (got {type(reply).__name__})")
            tunnel.batches = frames.BATCHES in reply.capabilities
            self._tunnel = tunnel
            self.connections += 1
            self.refused = None
            if self.standby:
                log.info("the other instance with this client id left: this one serves now")
            self.standby = False
            self.last_error = None
            self.connected_since = time.time()
            self.routing.connected()  # normal until the platform says otherwise
            self._set_state("connected")
            self._urls.connected()
            log.info("connected to %s as %s (%s), %d model(s)", url, reply.client_name,
                     self.config.client_id, len(self.models))
            if not self.models:
                log.warning("the bridge at %s offers no model yet (%s): no request can come here; looking again "
                            "every %g s", self.config.lmarena_bridge_url,
                            self.session_status.last_error or "its /v1/models lists none", BRIDGE_POLL_SECONDS)
            if self.routing.drain_requested:  # a new connection starts undrained on the platform
                log.info("asking the platform to drain this client again (a new connection starts undrained)")
                await self._send_quietly(self.routing.drain_frame(), tunnel)
            heartbeats = asyncio.create_task(self._heartbeats(tunnel))
            try:
                await self._serve(tunnel)
            finally:
                if self._tunnel is tunnel:
                    self._tunnel = None
                if tunnel.moving is not None and not tunnel.closed:
                    moved = True
                    leaving = moving.leave(tunnel, self._serve(tunnel), self._moved_on, self._state_changed, heartbeats)
                    task = asyncio.create_task(leaving, name="platform-link-moved")
                    self._moved.add(task)
                    task.add_done_callback(self._moved.discard)
                else:
                    heartbeats.cancel()
                    tunnel.cancel_all()
        finally:
            if not moved and not ws.closed:
                await tunnel.close()
        if moved:
            return (f"the platform instance at {url} asked this client to move ({tunnel.moving}); its "
                    f"{tunnel.active} answer(s) in flight finish there")
        close = ws.close_code
        if close == frames.CLOSE_REPLACED:  # a platform that closed without saying who replaced us
            raise Refusal(frames.Refused(code="connection_replaced", retry=True, message="another instance with "
                                         "this client id connected to the platform"))
        if close in (frames.CLOSE_INVALID_CREDENTIALS, frames.CLOSE_FORBIDDEN, frames.CLOSE_UNSUPPORTED_VERSION):
            raise Refusal(frames.Refused(code=f"closed_{close}", message="the platform closed the connection "
                                         f"(code {close}); this client is no longer accepted", retry=False))
        self.last_error = f"connection closed by the platform (code {close})"
        return None

    def _moved_on(self) -> bool:
        """The client serves on a connection newer than the one it was asked to leave."""
        return self.connected and self._tunnel is not None and self._tunnel.moving is None

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse, timeout: float) -> frames.Frame:
        msg = await ws.receive(timeout=timeout)
        if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
            return frames.decode(msg.data)
        raise OSError(f"the platform closed the connection (code {ws.close_code})")

    async def _serve(self, tunnel: Tunnel) -> None:
        """Read the platform's frames until the connection ends, or until it asks the client to move."""
        async for msg in tunnel.ws:
            if msg.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                continue
            try:
                received = frames.decode_message(msg.data)
            except frames.FrameError as exc:
                log.warning("ignoring a malformed message from the platform: %s", exc)
                continue
            leave = False  # a move: the rest of its batch still concerns the answers in flight here
            for frame, _size in received:
                if isinstance(frame, frames.FrameError):
                    log.warning("ignoring a malformed frame from the platform: %s", frame)
                elif await self._on_frame(frame, tunnel):
                    leave = True
            if leave:
                return

    async def _on_frame(self, frame: frames.Frame, tunnel: Tunnel) -> bool:
        """One frame from the platform; True when the client is to leave this connection (a move)."""
        if isinstance(frame, frames.Window):
            tunnel.grant(frame.id, frame.bytes)
        elif isinstance(frame, frames.Request):
            tunnel.started(frame.id, asyncio.create_task(self._handle(frame, tunnel)), frame.window)
        elif isinstance(frame, frames.Cancel):
            if tunnel.cancel(frame.id):
                log.info("request %s cancelled by the platform: %s", frame.id, frame.reason)
        elif isinstance(frame, frames.Move):
            if tunnel.moving is None:
                tunnel.moving = frame.reason or "the platform instance is shutting down"
                return True
        elif isinstance(frame, frames.Refused):
            await tunnel.ws.close()
            raise Refusal(frame)
        elif isinstance(frame, frames.Routing):
            if tunnel.moving is None:  # a connection being left says nothing about routing elsewhere
                self._on_routing(frame)
        elif isinstance(frame, frames.Notice):
            log.warning("platform notice %s: %s", frame.code, frame.message)
        else:
            log.debug("ignoring a %s frame from the platform", type(frame).__name__.lower())
        return False

    def _on_routing(self, frame: frames.Routing) -> None:
        was = self.routing.public()
        warning = self.routing.update(frame)
        self._routing_received.set()
        if warning is not None:
            log.warning("%s", warning)
        elif self.routing.public() != was:
            log.info("platform routing now: %s", json.dumps(self.routing.public()))

    async def set_drain(self, draining: bool, reason: str = "", wait_seconds: float = DRAIN_CONFIRM_SECONDS) -> bool:
        """Drain (take no new work; work in flight finishes) or take work again, now and after reconnects.

        True when the platform was told now (then this waits up to ``wait_seconds`` for its Routing
        frame, so ``routing`` is current); False when not connected: sent on the next connection.
        """
        frame = self.routing.request(draining, reason)
        if not self.connected:  # also before the welcome: the platform reads a hello first
            return False
        self._routing_received.clear()
        try:
            await self._send(frame)
        except (ConnectionResetError, aiohttp.ClientError) as exc:
            log.info("could not tell the platform (sent on the next connection): %s", exc)
            return False
        log.info("asked the platform to %s", "drain this client" if draining else "send work again")
        try:
            await asyncio.wait_for(self._routing_received.wait(), wait_seconds)
        except TimeoutError:
            pass
        return True

    async def _send(self, frame: frames.Frame) -> None:
        """A frame on the connection new work comes on."""
        tunnel = self._tunnel
        if tunnel is None or tunnel.closed:
            raise ConnectionResetError("not connected to the platform")
        await tunnel.send(frame)

    async def _handle(self, req: frames.Request, tunnel: Tunnel) -> None:
        await answering.answer(req, tunnel, self.relay, self.stats, self.config)

    async def _send_quietly(self, frame: frames.Frame, tunnel: Tunnel | None = None) -> None:
        tunnel = tunnel or self._tunnel
        if tunnel is None or tunnel.closed:
            log.info("could not report to the platform: not connected")
            return
        await answering.send_quietly(frame, tunnel)

    def bridge_changed(self) -> None:
        """The bridge says its models or session changed (the embedded bridge, on a reload): look now."""
        self._bridge_nudge.set()

    async def _heartbeats(self, tunnel: Tunnel) -> None:
        # The first heartbeat soon after connecting: the dashboard has this client's figures at once.
        next_beat = time.monotonic() + min(FIRST_HEARTBEAT_SECONDS, self.config.heartbeat_interval_seconds)
        while not tunnel.closed:
            if tunnel.moving is not None:  # a connection being left: the figures only, on its clock
                await asyncio.sleep(max(0.0, next_beat - time.monotonic()))
                next_beat = time.monotonic() + self.config.heartbeat_interval_seconds
                await self._send_quietly(frames.Heartbeat(stats=self.stats.snapshot()), tunnel)
                continue
            # The bridge is looked at every few seconds (and at once when it says something changed); a
            # change in its models or session goes to the platform then, not at the next heartbeat.
            now = time.monotonic()
            try:
                await asyncio.wait_for(self._bridge_nudge.wait(), max(0.0, min(next_beat, now + BRIDGE_POLL_SECONDS)
                                                                      - now))
            except TimeoutError:
                pass
            self._bridge_nudge.clear()
            before = (self.models, self.session_status, self.capabilities)
            await self._refresh_bridge()
            if self.models != before[0]:
                log.info("the bridge at %s offers %d model(s) now", self.config.lmarena_bridge_url, len(self.models))
            elif self.session_status == before[1] and self.capabilities == before[2] and time.monotonic() < next_beat:
                continue
            next_beat = time.monotonic() + self.config.heartbeat_interval_seconds
            await self._send_quietly(frames.Heartbeat(stats=self.stats.snapshot(), session=self.session_status,
                                                      models=self.models, client_version=__version__,
                                                      capabilities=self.capabilities), tunnel)
            self.last_heartbeat_sent = time.time()

    def status(self) -> dict[str, Any]:
        return {
            "enabled": self.config.enabled, "state": self.state, "connected": self.connected,
            "platform_url": self.platform_url,  # the instance it connects to now (of config.platform_urls)
            "connected_since": self.connected_since, "last_heartbeat": self.last_heartbeat_sent,
            "reconnect_count": self.reconnects, "active_requests": self.stats.active,
            "last_error": self.last_error,
            "refused": {"code": self.refused.code, "message": self.refused.message} if self.refused else None,
            "models": self.models, "capabilities": self.capabilities,
            "bridge": {"url": self.config.lmarena_bridge_url, **_public_session(self.session_status)},
            "drain": self.routing.public_request(), "routing": self.routing.public(),
        }


def _public_session(status: frames.SessionStatus) -> dict[str, Any]:
    return msgspec.to_builtins(status)
