"""Choosing the client that serves a request. Pure: no sockets, no database."""

from __future__ import annotations

from collections.abc import Iterable
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
    """Why nothing can take the request, in words a consumer can act on."""


def least_load(candidates: Iterable[T], model: str, exclude: frozenset[str] | set[str] = frozenset()) -> T:
    """The client serving ``model`` with the lowest active/max_concurrent; ties go to the larger capacity.

    Raises NoRoute naming the reason when none qualifies.
    """
    serving = unavailable = full = 0
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
        if best_key is None or key < best_key:
            best, best_key = c, key
    if best is not None:
        return best
    if serving == 0:
        if exclude:
            raise NoRoute(f"every client serving model '{model}' failed this request")
        raise NoRoute(f"no connected client serves model '{model}'")
    if full and not unavailable:
        raise NoRoute(f"all {serving} client(s) serving model '{model}' are at their concurrency limit")
    raise NoRoute(f"the {serving} client(s) serving model '{model}' are unhealthy or busy "
                  f"({unavailable} unhealthy, {full} at capacity)")
