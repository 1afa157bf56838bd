"""Rate limits of consumer keys and clients: requests and tokens per minute, and concurrency. Pure.

Windows are exact and sliding: at time ``t`` the window holds what was admitted in ``(t - 60, t]``,
so a subject with RPM 60 is admitted at most 60 requests in any 60-second interval, and every
refusal is one that would have exceeded it. Tokens work the same way, weighted: admission checks
the request's estimated tokens against the tokens admitted in the window; ``finish`` corrects the
estimate to the actual count, so the window holds real usage. Concurrency caps requests in flight.

``LimitState`` is the real implementation for one process. Time is injected (``now``, seconds
from a monotonic clock), so there are no sockets, no sleeps and no globals. The application keeps
one ``LimitState`` for consumer keys and one for clients (their ids could collide otherwise).
``LocalLimitStore`` puts it behind the async ``LimitStore`` interface with a clock;
``RedisLimitStore`` (limits_redis.py) is the same store shared by the instances of a cluster. One
contract test suite runs against both (tests/platform/live/test_limit_store_contract.py).

Rules:

- A refusal names the limit hit (the one that lasts longest, if several) and the exact
  ``retry_after``: when enough entries leave the window. Retried exactly then, with nothing else
  admitted in between and in-flight corrections aside, the request is admitted. A request whose
  estimate alone exceeds the TPM can never be admitted: ``retry_after`` is ``None``.
- ``release`` (the request failed before it was served) frees its concurrency slot and its
  tokens; it still counts as a request, so failing requests cannot be sent faster than the RPM.
- ``finish`` and ``release`` are idempotent: a ticket is closed once.
- A limit of ``None`` is unlimited and costs nothing: no entries are recorded for it, and a
  subject with no limits at all has no state.
- Memory is bounded: windows are deques pruned on every access (the request deque never holds
  more than RPM entries); ``sweep`` drops subjects that are idle.
- Time must not go backwards; a smaller ``now`` than already seen for a subject is taken as the
  latest seen, to keep its windows ordered.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from arenahub.protocol.errors import ApiError

WINDOW = 60.0
# Concurrency frees up when some request ends, which cannot be predicted: a short, fixed hint.
CONCURRENCY_RETRY_AFTER = 1.0


class Limit(StrEnum):
    REQUESTS = "requests"
    TOKENS = "tokens"
    CONCURRENCY = "concurrency"


class RateLimitExceeded(ApiError):
    status = 429
    type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"


@dataclass(frozen=True, slots=True)
class Limits:
    """A subject's limits; ``None`` is unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "max_concurrent"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, not {value!r}")

    @property
    def unlimited(self) -> bool:
        return self.rpm is None and self.tpm is None and self.max_concurrent is None


def format_reset(seconds: float) -> str:
    """OpenAI's ``x-ratelimit-reset-*`` format (Go durations): ``"0s"``, ``"20ms"``, ``"1.5s"``, ``"6m0s"``.

    Rounded up to the millisecond, so that waiting the time shown is always enough.
    """
    ms = math.ceil(round(max(seconds, 0.0) * 1000, 6))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def format_retry_after(seconds: float) -> str:
    """The ``Retry-After`` header: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(round(seconds, 6))))


@dataclass(frozen=True, slots=True)
class RateLimitStatus:
    """The values of the ``x-ratelimit-*`` headers; ``None`` where the limit is unlimited."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None  # seconds until the request window is empty
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None  # seconds until the token window is empty

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for kind in ("requests", "tokens"):
            limit = getattr(self, f"limit_{kind}")
            if limit is None:
                continue
            out[f"x-ratelimit-limit-{kind}"] = str(limit)
            out[f"x-ratelimit-remaining-{kind}"] = str(getattr(self, f"remaining_{kind}"))
            out[f"x-ratelimit-reset-{kind}"] = format_reset(getattr(self, f"reset_{kind}"))
        return out


class _TokenUse:
    """One admitted request's tokens in the window: the estimate, then the actual count."""

    __slots__ = ("at", "live", "tokens")

    def __init__(self, at: float, tokens: int) -> None:
        self.at = at
        self.tokens = tokens
        self.live = True  # False once it has left the window (or the subject was dropped)


class _Subject:
    __slots__ = ("in_flight", "latest", "requests", "tokens", "tokens_used")

    def __init__(self) -> None:
        self.requests: deque[float] = deque()
        self.tokens: deque[_TokenUse] = deque()
        self.tokens_used = 0  # sum of the live entries' tokens
        self.in_flight = 0
        self.latest = -math.inf

    def prune(self, now: float) -> float:
        now = max(now, self.latest)
        self.latest = now
        while self.requests and self.requests[0] + WINDOW <= now:
            self.requests.popleft()
        while self.tokens and self.tokens[0].at + WINDOW <= now:
            use = self.tokens.popleft()
            use.live = False
            self.tokens_used -= use.tokens
        return now

    @property
    def idle(self) -> bool:
        return not self.requests and not self.tokens and self.in_flight == 0


class Ticket:
    """An admitted request; close it with ``finish`` or ``release``."""

    __slots__ = ("_closed", "_state", "_use", "admitted_at", "est_tokens", "subject", "token")

    def __init__(self, subject: str, admitted_at: float, est_tokens: int,
                 state: _Subject | None, use: _TokenUse | None) -> None:
        self.subject = subject
        self.admitted_at = admitted_at
        self.est_tokens = est_tokens
        self._state = state
        self._use = use
        self._closed = False
        self.token: str | None = None  # its id in a shared store (limits_redis.py)

    @property
    def closed(self) -> bool:
        return self._closed


@dataclass(frozen=True, slots=True)
class Admitted:
    ticket: Ticket
    status: RateLimitStatus


@dataclass(frozen=True, slots=True)
class Refused:
    limit: Limit
    retry_after: float | None  # seconds; None: the request alone exceeds the limit, never admitted
    status: RateLimitStatus

    def error(self) -> RateLimitExceeded:
        """The 429 to answer, with ``Retry-After`` and the ``x-ratelimit-*`` headers."""
        headers = self.status.headers()
        if self.retry_after is None:
            message = (f"Request too large: its estimated tokens exceed the limit of "
                       f"{self.status.limit_tokens} tokens per minute.")
        else:
            headers["retry-after"] = format_retry_after(self.retry_after)
            what = {Limit.REQUESTS: f"{self.status.limit_requests} requests per minute",
                    Limit.TOKENS: f"{self.status.limit_tokens} tokens per minute",
                    Limit.CONCURRENCY: "concurrent requests"}[self.limit]
            message = f"Rate limit reached ({what}). Retry after {format_reset(self.retry_after)}."
        return RateLimitExceeded(message, headers=headers)


Admission = Admitted | Refused

_NO_STATUS = RateLimitStatus()


def _until(expiry: float, now: float) -> float:
    """``expiry - now``, nudged up so that ``now + result >= expiry`` holds in floating point."""
    wait = expiry - now
    while now + wait < expiry:
        wait = math.nextafter(wait, math.inf)
    return wait


class LimitState:
    """Exact sliding-window limits for one process. Thread-safe (one lock)."""

    def __init__(self) -> None:
        self._subjects: dict[str, _Subject] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many subjects hold state."""
        return len(self._subjects)

    def admit(self, subject: str, limits: Limits, *, now: float, est_tokens: int = 0) -> Admission:
        if est_tokens < 0:
            raise ValueError("est_tokens must not be negative")
        if limits.unlimited:
            return Admitted(Ticket(subject, now, est_tokens, None, None), _NO_STATUS)
        with self._lock:
            state = self._subjects.get(subject)
            if state is None:
                state = self._subjects[subject] = _Subject()
            now = state.prune(now)
            refusal = self._refusal(state, limits, now, est_tokens)
            if refusal is not None:
                return refusal
            if limits.rpm is not None:
                state.requests.append(now)
            use = None
            if limits.tpm is not None:
                use = _TokenUse(now, est_tokens)
                state.tokens.append(use)
                state.tokens_used += est_tokens
            state.in_flight += 1
            return Admitted(Ticket(subject, now, est_tokens, state, use), self._status(state, limits, now))

    def would_admit(self, subject: str, limits: Limits, *, now: float, est_tokens: int = 0) -> bool:
        """Whether ``admit`` would admit now, without taking a slot (for routing to skip a client)."""
        if limits.unlimited:
            return True
        with self._lock:
            state = self._subjects.get(subject)
            if state is None:
                return limits.tpm is None or est_tokens <= limits.tpm
            now = state.prune(now)
            return self._refusal(state, limits, now, est_tokens) is None

    def finish(self, ticket: Ticket, actual_tokens: int, *, now: float | None = None) -> None:
        """The request ended: free its concurrency slot and correct its tokens to ``actual_tokens``.

        ``now`` only prunes the window; the tokens stay where the request was admitted.
        """
        if actual_tokens < 0:
            raise ValueError("actual_tokens must not be negative")
        self._close(ticket, actual_tokens, now)

    def release(self, ticket: Ticket) -> None:
        """The request failed before it was served: free its slot and its tokens (it still counts as a request)."""
        self._close(ticket, 0, None)

    def status(self, subject: str, limits: Limits, *, now: float) -> RateLimitStatus:
        """The header values now, without admitting anything."""
        with self._lock:
            state = self._subjects.get(subject)
            if state is None:
                state = _Subject()
            else:
                now = state.prune(now)
            return self._status(state, limits, now)

    def sweep(self, now: float) -> int:
        """Drop subjects with nothing in their windows and nothing in flight; return how many."""
        with self._lock:
            idle = []
            for name, state in self._subjects.items():
                state.prune(now)
                if state.idle:
                    idle.append(name)
            for name in idle:
                del self._subjects[name]
            return len(idle)

    def _close(self, ticket: Ticket, tokens: int, now: float | None) -> None:
        with self._lock:
            if ticket._closed:
                return
            ticket._closed = True
            state = ticket._state
            if state is None:
                return
            state.in_flight -= 1
            use = ticket._use
            if use is not None and use.live:
                state.tokens_used += tokens - use.tokens
                use.tokens = tokens
            if now is not None:
                state.prune(now)

    @staticmethod
    def _refusal(state: _Subject, limits: Limits, now: float, est_tokens: int) -> Refused | None:
        waits: list[tuple[float, Limit]] = []  # math.inf: never
        if limits.rpm is not None and len(state.requests) >= limits.rpm:
            # The entry whose leaving brings the count down to rpm - 1.
            oldest = state.requests[len(state.requests) - limits.rpm]
            waits.append((_until(oldest + WINDOW, now), Limit.REQUESTS))
        if limits.tpm is not None and state.tokens_used + est_tokens > limits.tpm:
            waits.append((LimitState._tokens_wait(state, limits.tpm, now, est_tokens), Limit.TOKENS))
        if limits.max_concurrent is not None and state.in_flight >= limits.max_concurrent:
            waits.append((CONCURRENCY_RETRY_AFTER, Limit.CONCURRENCY))
        if not waits:
            return None
        wait, limit = max(waits, key=lambda w: w[0])
        return Refused(limit, None if wait == math.inf else wait, LimitState._status(state, limits, now))

    @staticmethod
    def _tokens_wait(state: _Subject, tpm: int, now: float, est_tokens: int) -> float:
        if est_tokens > tpm:
            return math.inf
        used = state.tokens_used
        for use in state.tokens:
            used -= use.tokens
            if used + est_tokens <= tpm:
                return _until(use.at + WINDOW, now)
        return math.inf  # unreachable: used reaches 0 and est_tokens <= tpm

    @staticmethod
    def _status(state: _Subject, limits: Limits, now: float) -> RateLimitStatus:
        requests = tokens = None
        if limits.rpm is not None:
            reset = _until(state.requests[-1] + WINDOW, now) if state.requests else 0.0
            requests = (limits.rpm, max(0, limits.rpm - len(state.requests)), reset)
        if limits.tpm is not None:
            reset = _until(state.tokens[-1].at + WINDOW, now) if state.tokens else 0.0
            tokens = (limits.tpm, max(0, limits.tpm - state.tokens_used), reset)
        return RateLimitStatus(*(requests or (None, None, None)), *(tokens or (None, None, None)))


class LimitStore(Protocol):
    """Where limits are kept: this process (``LocalLimitStore``), or a store shared by several."""

    async def admit(self, subject: str, limits: Limits, *, est_tokens: int = 0) -> Admission: ...

    async def would_admit(self, subject: str, limits: Limits, *, est_tokens: int = 0) -> bool: ...

    async def finish(self, ticket: Ticket, actual_tokens: int) -> None: ...

    async def release(self, ticket: Ticket) -> None: ...

    async def status(self, subject: str, limits: Limits) -> RateLimitStatus: ...

    async def sweep(self) -> int: ...


class LocalLimitStore:
    """``LimitState`` with a clock: the store for a platform that runs as one process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, state: LimitState | None = None) -> None:
        self.clock = clock
        self.state = state if state is not None else LimitState()

    async def admit(self, subject: str, limits: Limits, *, est_tokens: int = 0) -> Admission:
        return self.state.admit(subject, limits, now=self.clock(), est_tokens=est_tokens)

    async def would_admit(self, subject: str, limits: Limits, *, est_tokens: int = 0) -> bool:
        return self.state.would_admit(subject, limits, now=self.clock(), est_tokens=est_tokens)

    async def finish(self, ticket: Ticket, actual_tokens: int) -> None:
        self.state.finish(ticket, actual_tokens, now=self.clock())

    async def release(self, ticket: Ticket) -> None:
        self.state.release(ticket)

    async def status(self, subject: str, limits: Limits) -> RateLimitStatus:
        return self.state.status(subject, limits, now=self.clock())

    async def sweep(self) -> int:
        return self.state.sweep(self.clock())


__all__ = [
    "CONCURRENCY_RETRY_AFTER",
    "WINDOW",
    "Admission",
    "Admitted",
    "Limit",
    "LimitState",
    "LimitStore",
    "Limits",
    "LocalLimitStore",
    "RateLimitExceeded",
    "RateLimitStatus",
    "Refused",
    "Ticket",
    "format_reset",
    "format_retry_after",
]
