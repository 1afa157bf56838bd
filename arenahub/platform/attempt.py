"""One request placed on one client (``Placement``) and its answer as it streams back (``Attempt``).

A placed request holds a lease on its client. After the first frame (awaited by
``dispatch.Dispatcher.start`` within the first-byte timeout), each frame renews the lease for
``idle_timeout_seconds``; a client that goes quiet loses it and the answer ends with an error.
Every attempt ends exactly once, as a success, a failure or neither (the consumer left), and
tells its dispatcher which, for the client's health (``AttemptEnds``: the dispatcher as an attempt sees
it, so that this module does not import dispatch.py, which imports it).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from arenahub.platform.accounting.limits import Ticket
from arenahub.platform.exchange import Exchange
from arenahub.platform.flow import Inbox
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.tunnel_session import ClientGone, ClientSession, Incoming
from arenahub.protocol import frames
from arenahub.protocol.errors import ApiError, UpstreamError, UpstreamTimeout

Answer = frames.Chunk | frames.End


MAX_RETRY_AFTER = 3600.0


def retry_after(frame: frames.Error) -> float | None:
    """A 429 frame's wait, bounded (a client may say anything); None when it gave none."""
    if frame.status != 429 or frame.retry_after is None or not frame.retry_after > 0:
        return None
    return min(float(frame.retry_after), MAX_RETRY_AFTER)


_CODE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
CLIENT_MESSAGE_CHARS = 300


def client_code(code: str) -> str:
    """A client's error code as the platform passes it on: a short plain identifier, else ``client_error``."""
    return code if _CODE.fullmatch(code) else "client_error"


def client_text(text: str, limit: int = CLIENT_MESSAGE_CHARS) -> str:
    """A client's words, bounded and with control characters (newlines included) made spaces."""
    flat = " ".join(_CONTROL.sub(" ", text[:limit * 4]).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def client_error(frame: frames.Error) -> UpstreamError:
    """The consumer's error for a client's Error frame. The message is the platform's own; the client's
    words travel only in ``upstream_message``, bounded and cleaned (a client is a stranger: its text
    must not read as the platform speaking)."""
    status = frame.status if 400 <= frame.status <= 599 else 502
    wait = retry_after(frame)
    headers = {"Retry-After": str(max(1, math.ceil(wait)))} if wait is not None else None
    code = client_code(frame.code)
    error = UpstreamError(f"The client serving this request could not answer it ({code}, HTTP {status}).",
                          code=code, status=status, headers=headers)
    error.upstream_message = client_text(frame.message) or None
    if status == 429:
        error.type = "rate_limit_error"
    return error


def client_fault(frame: frames.Error) -> bool:
    """Whether an error frame counts against the client's health: every error does (a client refusing
    everything must lose its traffic), except a 429: its upstream is rate limiting it for a known time,
    and routing goes around it until then (``ClientSession.upstream_rate_limited``)."""
    return frame.status != 429


def error_outcome(frame: frames.Error) -> str:
    """A 4xx error frame: the client would not take the request ("refused"); else it failed ("error")."""
    return "refused" if 400 <= frame.status < 500 else "error"


def _content_chars(frame: frames.Chunk) -> int:
    n = 0
    for choices in frame.events:
        for choice in choices:
            delta = choice.get("delta")
            if delta:
                text = delta.get("content")
                if isinstance(text, str):
                    n += len(text)
    return n


@dataclass(slots=True)
class Placement:
    session: ClientSession
    ticket: Ticket
    queue: asyncio.Queue[Incoming]
    placed_at: float
    exchange: Exchange | None  # None: a request another instance routed here (cluster/relayed.py)
    probe: int = 0

    def ended(self, outcome: str, code: str | None = None, message: str | None = None) -> None:
        """Note in the exchange's trail how this attempt ended (see exchange.OUTCOMES)."""
        if self.exchange is not None:
            self.exchange.attempt_ended(self.session.client_id, outcome, time.monotonic() - self.placed_at, code,
                                        message)


class AttemptEnds(Protocol):
    """Where an attempt says how it ended: its client's RPM slot, health and the queue
    (``dispatch.Dispatcher``)."""

    def attempt_succeeded(self, p: Placement, *, ttft: float, tokens: int, duration: float) -> None: ...

    def attempt_failed(self, p: Placement) -> None: ...

    def attempt_ended(self, p: Placement) -> None: ...


class Attempt:
    """A request placed on one client: its frames, in order, until End or a failure. ``settings``: the
    timeouts it keeps to the end, whatever the live settings become meanwhile."""

    def __init__(self, ends: AttemptEnds, placement: Placement, first: Answer, exchange: Exchange,
                 settings: PlatformSettings) -> None:
        self._ends = ends
        self.session = placement.session
        self._placement = placement
        self._queue = placement.queue
        self._first: Answer | None = first
        self._exchange = exchange
        self._settings = settings
        self.finished = False
        self._failed = False  # the client failed this attempt (it counts against its health)
        self._ended_ok = False
        self._first_at = time.monotonic()
        # Throughput is measured from the first frame on: only the text after it counts.
        self._chars = 0
        self._closed = False
        self._outcome: tuple[str, str | None, str | None] | None = None  # how it failed, for the trail

    async def batches(self) -> AsyncIterator[list[Answer]]:
        """Yields the frames that have arrived, a list at a time; the last list ends with End.

        Raises ApiError when the client fails mid-answer or loses its lease (goes quiet too long).
        """
        settings = self._settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.total_timeout_seconds - (self._exchange.elapsed())
        batch: list[Answer] = []
        if self._first is not None:
            batch.append(self._first)
            if isinstance(self._first, frames.End):
                self._ended_ok = True
            self._first = None
        try:
            async with asyncio.timeout(None) as timer:
                while not self.finished:
                    if not batch:
                        # The lease: renewed by every frame, for the idle timeout, within the total time.
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
                        self._ended_ok = True
                    yield batch
                    batch = []
                    if failure is not None:
                        raise failure
        except TimeoutError:
            self.finished = True
            self._failed = True
            self.session.cancel(self._exchange.id, "the client went quiet")
            error = UpstreamTimeout(f"the client sent nothing for {settings.idle_timeout_seconds:g} s "
                                    "or the total time ran out")
            self._outcome = ("timeout", error.code, error.message)
            raise error from None

    def _check(self, frame: Incoming) -> Answer:
        if isinstance(frame, frames.Chunk):
            self._chars += _content_chars(frame)
            return frame
        if isinstance(frame, ClientGone):
            self.finished = True
            if frame.by_platform:  # this platform instance stopped: the client is not at fault
                error = UpstreamError(f"the platform instance stopped before this answer was complete "
                                      f"({frame.reason}); retry the request", code="platform_shutting_down",
                                      status=503, headers={"Retry-After": "1"})
                self._outcome = ("cancelled", error.code, error.message)
                raise error
            self._failed = True
            error = UpstreamError(f"the client serving this request disconnected mid-answer ({frame.reason})",
                                  code="client_disconnected")
            self._outcome = ("disconnected", error.code, error.message)
            raise error
        if isinstance(frame, frames.Error):
            self.finished = True
            self._failed = client_fault(frame)
            self._outcome = (error_outcome(frame), client_code(frame.code), client_text(frame.message))
            raise client_error(frame)
        return frame

    def when_stalled(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` if this answer's consumer holds the client back too long (see flow.Inbox)."""
        if isinstance(self._queue, Inbox):
            self._queue.on_stalled = callback

    def abandon(self, reason: str) -> None:
        """The answer is over, whichever way it ended (the consumer left, or the platform gave up):
        tell the client to stop if it has not finished, and close the attempt. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if not self.finished:
            self.finished = True
            self.session.cancel(self._exchange.id, reason)
        else:
            self.session.finish(self._exchange.id)
        now = time.monotonic()
        p = self._placement
        if self._outcome is not None:
            p.ended(*self._outcome)
        elif self._ended_ok:
            p.ended("ok")
        else:
            p.ended("cancelled", None, reason)
        if self._failed:
            self._ends.attempt_failed(p)
        elif self._ended_ok:
            self._ends.attempt_succeeded(p, ttft=self._first_at - p.placed_at, tokens=self._chars // 4,
                                         duration=now - self._first_at)
        else:
            self._ends.attempt_ended(p)
