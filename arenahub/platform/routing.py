"""Choosing the client that serves a request. Pure: no sockets, no database."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar


class Routable(Protocol):
    client_id: str
    max_concurrent: int

    @property
    def active(self) -> int: ...

    @property
    def available(self) -> bool: ...

    def serves(self, model: str) -> bool: ...


T = TypeVar("T", bound=Routable)


class NoRoute(Exception):
    """Why nothing can take the request, in words a consumer can act on.

    ``retry_after``: seconds until one of the clients can take it, when that is known (every
    client serving the model is at its rate limit); otherwise None.
    """

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def least_load(candidates: Iterable[T], model: str, exclude: frozenset[str] | set[str] = frozenset(),
               rate_wait: Callable[[T], float] | None = None) -> T:
    """The client serving ``model`` with the lowest active/max_concurrent; ties go to the larger capacity.

    ``rate_wait(client)`` is how many seconds the client's rate limit keeps it from taking another
    request (0: it may take one now); clients it holds back are skipped.

    Raises NoRoute naming the reason when none qualifies.
    """
    serving = unavailable = full = limited = 0
    soonest: float | None = None
    best: T | None = None
    best_key: tuple[float, int] | None = None
    for c in candidates:
        if c.client_id in exclude or not c.serves(model):
            continue
        serving += 1
        if not c.available:
            unavailable += 1
            continue
        if c.active >= c.max_concurrent:
            full += 1
            continue
        key = (c.active / c.max_concurrent, -c.max_concurrent)
        if best_key is not None and key >= best_key:
            continue  # no better than the best so far: its rate limit does not matter
        if rate_wait is not None:
            wait = rate_wait(c)
            if wait > 0:
                limited += 1
                soonest = wait if soonest is None else min(soonest, wait)
                continue
        best, best_key = c, key
    if best is not None:
        return best
    if serving == 0:
        if exclude:
            raise NoRoute(f"every client serving model '{model}' failed this request")
        raise NoRoute(f"no connected client serves model '{model}'")
    if full == serving:
        raise NoRoute(f"all {serving} client(s) serving model '{model}' are at their concurrency limit")
    if limited == serving:
        raise NoRoute(f"all {serving} client(s) serving model '{model}' are at their rate limit", soonest)
    detail = f"{unavailable} unhealthy, {full} at capacity"
    if limited:
        detail += f", {limited} at their rate limit"
    raise NoRoute(f"the {serving} client(s) serving model '{model}' are unhealthy or busy ({detail})")
