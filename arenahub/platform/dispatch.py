"""Sending a request to a client and getting its answer back, with retries before the first byte."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from arenahub.platform.exchange import Exchange
from arenahub.platform.registry import ClientRegistry
from arenahub.platform.routing import NoRoute, least_load
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.tunnel_session import ClientGone, ClientSession, Incoming
from arenahub.protocol import frames
from arenahub.protocol.errors import ApiError, NoClientAvailable, UpstreamError, UpstreamTimeout

log = logging.getLogger("arenahub.platform.dispatch")


def _client_error(frame: frames.Error) -> UpstreamError:
    status = frame.status if 400 <= frame.status <= 599 else 502
    return UpstreamError(frame.message, code=frame.code, status=status)


class Attempt:
    """A request placed on one client: its frames, in order, until End or a failure."""

    def __init__(self, session: ClientSession, queue: asyncio.Queue[Incoming], first: frames.Chunk | frames.End,
                 exchange: Exchange, settings: PlatformSettings) -> None:
        self.session = session
        self._queue = queue
        self._first: frames.Chunk | frames.End | None = first
        self._exchange = exchange
        self._settings = settings
        self.finished = False

    async def frames(self) -> AsyncIterator[frames.Chunk | frames.End]:
        """Yields chunks, then the End frame. Raises ApiError when the client fails mid-answer."""
        ex, settings = self._exchange, self._settings
        deadline = ex.started + settings.total_timeout_seconds
        first, self._first = self._first, None
        if first is not None:
            if isinstance(first, frames.End):
                self.finished = True
            yield first
        while not self.finished:
            if self._queue.empty():
                timeout = min(settings.idle_timeout_seconds, deadline - time.perf_counter())
                try:
                    frame = await asyncio.wait_for(self._queue.get(), max(timeout, 0.001))
                except TimeoutError:
                    raise UpstreamTimeout(f"the client sent nothing for {settings.idle_timeout_seconds:g} s "
                                          "or the total time ran out") from None
            else:
                frame = self._queue.get_nowait()
            if isinstance(frame, ClientGone):
                self.finished = True
                raise UpstreamError(f"the client serving this request disconnected mid-answer ({frame.reason})",
                                    code="client_disconnected")
            if isinstance(frame, frames.Error):
                self.finished = True
                raise _client_error(frame)
            if isinstance(frame, frames.End):
                self.finished = True
            yield frame

    def abandon(self, reason: str) -> None:
        """The consumer left or the platform gave up: tell the client to stop."""
        if not self.finished:
            self.finished = True
            self.session.cancel(self._exchange.id, reason)
        else:
            self.session.finish(self._exchange.id)


class Dispatcher:
    def __init__(self, registry: ClientRegistry, settings: PlatformSettings) -> None:
        self._registry = registry
        self._settings = settings

    async def start(self, ex: Exchange, exclude: set[str] | None = None) -> Attempt:
        """Place the request and wait for its first frame, trying other clients on failure.

        Raises NoClientAvailable at once when nothing can serve the model, or the last
        attempt's error when every attempt failed.
        """
        exclude = exclude if exclude is not None else set()
        last_error: ApiError | None = None
        settings = self._settings
        while ex.attempts < settings.max_attempts:
            try:
                session = least_load(self._registry.sessions(), ex.model, exclude)
            except NoRoute as reason:
                if last_error is not None:
                    raise last_error from None
                raise NoClientAvailable(f"No client can serve this request now: {reason}.",
                                        headers={"Retry-After": "5"}) from None
            ex.attempts += 1
            ex.client_id = session.client_id
            queue = session.open(ex.id, ex.body)
            try:
                frame = await asyncio.wait_for(queue.get(), settings.first_byte_timeout_seconds)
            except TimeoutError:
                session.cancel(ex.id, "no first byte in time")
                last_error = UpstreamTimeout(
                    f"no answer began within {settings.first_byte_timeout_seconds:g} s")
                exclude.add(session.client_id)
                continue
            except asyncio.CancelledError:
                session.cancel(ex.id, "consumer disconnected")
                raise
            if isinstance(frame, ClientGone):
                log.info("request %s: client %s went away before answering; retrying", ex.id, session.client_id)
                last_error = UpstreamError(f"the client disconnected before answering ({frame.reason})",
                                           code="client_disconnected")
                exclude.add(session.client_id)
                continue
            if isinstance(frame, frames.Error):
                if frame.retryable:
                    log.info("request %s: client %s failed (%s); retrying", ex.id, session.client_id, frame.code)
                    last_error = _client_error(frame)
                    exclude.add(session.client_id)
                    continue
                raise _client_error(frame)
            return Attempt(session, queue, frame, ex, settings)
        assert last_error is not None
        raise last_error
