"""Sending a request to a client and getting its answer back, with retries before the first byte."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from arenahub.platform.exchange import Exchange
from arenahub.platform.limits import (
    WINDOW,
    Admitted,
    LimitState,
    Refused,
    Ticket,
    format_retry_after,
)
from arenahub.platform.registry import ClientRegistry
from arenahub.platform.routing import NoRoute, least_load
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.tunnel_session import ClientGone, ClientSession, Incoming
from arenahub.protocol import frames
from arenahub.protocol.errors import (
    ApiError,
    NoClientAvailable,
    UpstreamError,
    UpstreamTimeout,
)

log = logging.getLogger("arenahub.platform.dispatch")

Answer = frames.Chunk | frames.End


def _client_error(frame: frames.Error) -> UpstreamError:
    status = frame.status if 400 <= frame.status <= 599 else 502
    return UpstreamError(frame.message, code=frame.code, status=status)


class Attempt:
    """A request placed on one client: its frames, in order, until End or a failure."""

    def __init__(self, session: ClientSession, queue: asyncio.Queue[Incoming], first: Answer,
                 exchange: Exchange, settings: PlatformSettings, ticket: Ticket, client_limits: LimitState) -> None:
        self.session = session
        self._queue = queue
        self._first: Answer | None = first
        self._exchange = exchange
        self._settings = settings
        self._ticket = ticket  # the request's place in the client's RPM window
        self._client_limits = client_limits
        self.finished = False

    async def batches(self) -> AsyncIterator[list[Answer]]:
        """Yields the frames that have arrived, a list at a time; the last list ends with End.

        Raises ApiError when the client fails mid-answer or goes quiet for too long.
        """
        settings = self._settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.total_timeout_seconds - (self._exchange.elapsed())
        batch: list[Answer] = []
        if self._first is not None:
            batch.append(self._first)
            self._first = None
        try:
            async with asyncio.timeout(None) as timer:
                while not self.finished:
                    if not batch:
                        timer.reschedule(min(loop.time() + settings.idle_timeout_seconds, deadline))
                        frame = await self._queue.get()
                        # Disarm before yielding: the timer must never fire in the consumer's code.
                        timer.reschedule(None)
                        batch.append(self._check(frame))
                    failure: ApiError | None = None
                    while not self._queue.empty() and not isinstance(batch[-1], frames.End):
                        try:
                            batch.append(self._check(self._queue.get_nowait()))
                        except ApiError as exc:
                            failure = exc  # the chunks that came before it still go out first
                            break
                    if isinstance(batch[-1], frames.End):
                        self.finished = True
                    yield batch
                    batch = []
                    if failure is not None:
                        raise failure
        except TimeoutError:
            self.finished = True
            self.session.cancel(self._exchange.id, "the client went quiet")
            raise UpstreamTimeout(f"the client sent nothing for {settings.idle_timeout_seconds:g} s "
                                  "or the total time ran out") from None

    def _check(self, frame: Incoming) -> Answer:
        if isinstance(frame, ClientGone):
            self.finished = True
            raise UpstreamError(f"the client serving this request disconnected mid-answer ({frame.reason})",
                                code="client_disconnected")
        if isinstance(frame, frames.Error):
            self.finished = True
            raise _client_error(frame)
        return frame

    def abandon(self, reason: str) -> None:
        """The consumer left or the platform gave up: tell the client to stop.

        Called once the answer is over, whichever way it ended; it closes the attempt.
        """
        if not self.finished:
            self.finished = True
            self.session.cancel(self._exchange.id, reason)
        else:
            self.session.finish(self._exchange.id)
        self._client_limits.finish(self._ticket, 0)


class Dispatcher:
    def __init__(self, registry: ClientRegistry, settings: PlatformSettings) -> None:
        self._registry = registry
        self._settings = settings
        # Every request placed on a client is admitted here against the client's RPM.
        self.client_limits = LimitState()
        self.clock = time.monotonic  # seconds; tests replace it
        self._next_sweep = 0.0

    def _rate_wait(self, session: ClientSession, now: float) -> float:
        """Seconds until ``session``'s RPM lets it take another request; 0 when it may now."""
        if session.rpm is None:
            return 0.0
        if self.client_limits.would_admit(session.limit_subject, session.limits, now=now):
            return 0.0
        # A refused admission takes nothing and says exactly when a slot frees.
        refused = self.client_limits.admit(session.limit_subject, session.limits, now=now)
        assert isinstance(refused, Refused) and refused.retry_after is not None
        return refused.retry_after

    def _place(self, ex: Exchange, exclude: set[str]) -> tuple[ClientSession, Ticket]:
        """Choose a client and take a slot in its RPM window, with no await in between: atomic."""
        now = self.clock()
        if now >= self._next_sweep:  # idle clients' windows go; once a minute, as it walks them all
            self._next_sweep = now + WINDOW
            self.client_limits.sweep(now)
        session = least_load(self._registry.sessions(), ex.model, exclude,
                             rate_wait=lambda s: self._rate_wait(s, now))
        admitted = self.client_limits.admit(session.limit_subject, session.limits, now=now)
        assert isinstance(admitted, Admitted)  # routing checked it at this same instant
        return session, admitted.ticket

    async def start(self, ex: Exchange, exclude: set[str] | None = None) -> Attempt:
        """Place the request and wait for its first frame, trying other clients on failure.

        Raises NoClientAvailable at once when nothing can serve the model, or the last
        attempt's error when every attempt failed.
        """
        exclude = exclude if exclude is not None else set()
        last_error: ApiError | None = None
        settings = self._settings
        # A streamed answer must begin within the first-byte timeout; a non-streamed one arrives
        # whole, so it gets the total time (a dead client is still noticed by its heartbeats).
        wait = settings.first_byte_timeout_seconds if ex.request.stream else settings.total_timeout_seconds
        while ex.attempts < settings.max_attempts:
            try:
                session, ticket = self._place(ex, exclude)
            except NoRoute as reason:
                if last_error is not None:
                    raise last_error from None
                retry_after = "5" if reason.retry_after is None else format_retry_after(reason.retry_after)
                raise NoClientAvailable(f"No client can serve this request now: {reason}.",
                                        headers={"Retry-After": retry_after}) from None
            ex.attempts += 1
            ex.client_id = session.client_id
            queue = session.open(ex.id, ex.body)
            try:
                async with asyncio.timeout(wait):
                    frame = await queue.get()
            except TimeoutError:
                session.cancel(ex.id, "no first byte in time")
                self.client_limits.release(ticket)
                last_error = UpstreamTimeout(f"no answer began within {wait:g} s")
                exclude.add(session.client_id)
                continue
            except asyncio.CancelledError:
                session.cancel(ex.id, "consumer disconnected")
                self.client_limits.release(ticket)
                raise
            if isinstance(frame, ClientGone):
                log.info("request %s: client %s went away before answering; retrying", ex.id, session.client_id)
                self.client_limits.release(ticket)
                last_error = UpstreamError(f"the client disconnected before answering ({frame.reason})",
                                           code="client_disconnected")
                exclude.add(session.client_id)
                continue
            if isinstance(frame, frames.Error):
                self.client_limits.release(ticket)
                if frame.retryable:
                    log.info("request %s: client %s failed (%s); retrying", ex.id, session.client_id, frame.code)
                    last_error = _client_error(frame)
                    exclude.add(session.client_id)
                    continue
                raise _client_error(frame)
            return Attempt(session, queue, frame, ex, settings, ticket, self.client_limits)
        assert last_error is not None
        raise last_error
