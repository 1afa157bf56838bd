"""Choosing the client that serves a request. Pure: no sockets, no database, no clock of its own.

``select`` first sorts the clients serving the model into those that can take the request now
and those that cannot (and why); a strategy then picks among the ready ones:

``least_load``
    the lowest active/max_concurrent; ties go to the larger capacity
``round_robin``
    clients in turn (per model, in client id order)
``random``
    at random, weighted by each client's weight
``fastest``
    the lowest expected time (decayed time to first token + 100 tokens at the decayed throughput),
    scaled up by load; unmeasured clients first (each until 3 of its requests are answered or in
    flight), and a random ready client 5% of the time so slow ones are re-measured
``priority``
    the highest operator-set priority, then at random by weight

Every strategy sees only clients that serve the model (and have the capability the request needs:
``images`` for an image request), are connected with a usable session, are not draining or in
maintenance, whose circuit breaker lets a request through, and that are under their concurrency and
rate limits.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Protocol, TypeVar

STRATEGIES = ("least_load", "round_robin", "random", "fastest", "priority")
DEFAULT_STRATEGY = "least_load"
# ``fastest``: the answer length its expected time assumes, and how often it explores.
FASTEST_TOKENS = 100
FASTEST_EXPLORE = 0.05
FASTEST_MIN_SAMPLES = 3


class Speed(Protocol):
    ttft: float | None
    throughput: float | None
    samples: int


class Routable(Protocol):
    client_id: str
    max_concurrent: int
    priority: int
    weight: int

    @property
    def active(self) -> int: ...

    @property
    def available(self) -> bool: ...

    @property
    def draining(self) -> bool: ...

    @property
    def capabilities(self) -> Collection[str]: ...

    def serves(self, model: str) -> bool: ...


T = TypeVar("T", bound=Routable)


class NoRoute(Exception):
    """Why nothing can take the request, in words a consumer can act on.

    ``busy``: some client serving the model could take it once a slot frees (the request may
    wait in the queue); otherwise none can (503 at once). ``retry_after``: seconds until one of
    them may take it, when that is known.
    """

    def __init__(self, reason: str, retry_after: float | None = None, busy: bool = False,
                 upstream_limited: bool = False) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.busy = busy
        # Every client serving the model is rate limited by its upstream (arena.ai's 429): a 429 for the consumer.
        self.upstream_limited = upstream_limited


class Strategy(Protocol):
    name: str

    def choose(self, ready: Sequence[T], model: str) -> T: ...


class LeastLoad:
    name = "least_load"

    def choose(self, ready: Sequence[T], model: str) -> T:
        return min(ready, key=lambda c: (c.active / c.max_concurrent, -c.max_concurrent))


class RoundRobin:
    name = "round_robin"

    def __init__(self) -> None:
        self._last: dict[str, str] = {}  # model -> the client id chosen last

    def choose(self, ready: Sequence[T], model: str) -> T:
        ordered = sorted(ready, key=lambda c: c.client_id)
        last = self._last.get(model)
        pick = next((c for c in ordered if last is None or c.client_id > last), ordered[0])
        self._last[model] = pick.client_id
        return pick


class WeightedRandom:
    name = "random"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def choose(self, ready: Sequence[T], model: str) -> T:
        return self._rng.choices(list(ready), weights=[max(1, c.weight) for c in ready])[0]


class Fastest:
    name = "fastest"

    def __init__(self, speed: Callable[[str], Speed | None], rng: random.Random | None = None,
                 explore: float = FASTEST_EXPLORE) -> None:
        self._speed = speed
        self._rng = rng or random.Random()
        self._explore = explore

    def expected(self, c: Routable) -> float:
        """Seconds this client is expected to take now; -1 for one not measured enough yet."""
        s = self._speed(c.client_id)
        if s is None or s.samples < FASTEST_MIN_SAMPLES or s.ttft is None:
            return -1.0
        time = s.ttft + (FASTEST_TOKENS / s.throughput if s.throughput else 0.0)
        return time * (1.0 + c.active / c.max_concurrent)

    def choose(self, ready: Sequence[T], model: str) -> T:
        if len(ready) > 1 and self._rng.random() < self._explore:
            return self._rng.choice(list(ready))
        scored = [(self.expected(c), c) for c in ready]
        measured = [sc for sc in scored if sc[0] >= 0]
        # An unmeasured client gets the requests that will measure it, not one per free slot.
        unmeasured = [c for score, c in scored if score < 0 and self._samples(c) + c.active < FASTEST_MIN_SAMPLES]
        if unmeasured or not measured:
            return min(unmeasured or ready, key=lambda c: c.active / c.max_concurrent)
        return min(measured, key=lambda sc: sc[0])[1]

    def _samples(self, c: Routable) -> int:
        s = self._speed(c.client_id)
        return s.samples if s is not None else 0


class Priority:
    name = "priority"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._weighted = WeightedRandom(rng)

    def choose(self, ready: Sequence[T], model: str) -> T:
        top = max(c.priority for c in ready)
        return self._weighted.choose([c for c in ready if c.priority == top], model)


def make_strategy(name: str, speed: Callable[[str], Speed | None], rng: random.Random | None = None) -> Strategy:
    if name == "least_load":
        return LeastLoad()
    if name == "round_robin":
        return RoundRobin()
    if name == "random":
        return WeightedRandom(rng)
    if name == "fastest":
        return Fastest(speed, rng)
    if name == "priority":
        return Priority(rng)
    raise ValueError(f"unknown routing strategy {name!r}: one of {', '.join(STRATEGIES)}")


def select(candidates: Iterable[T], model: str, strategy: Strategy, *,
           exclude: frozenset[str] | set[str] = frozenset(),
           rate_wait: Callable[[T], float] | None = None,
           blocked: Callable[[T], tuple[str, float | None] | None] | None = None,
           pinned: str | None = None, sticky: str | None = None, capability: str | None = None) -> T:
    """The client to place a request for ``model`` on, or NoRoute saying why there is none.

    ``rate_wait(c)``: seconds the client's rate limit holds it back (0: free now).
    ``blocked(c)``: None when its health lets it take work, else ("maintenance" | "cooling" |
    "probing" | "upstream_limited" | "busy_elsewhere", seconds until it may or None); "busy_elsewhere": the
    instance holding a remote client would not place a request on it a moment ago (busy, as at capacity).
    ``pinned``: only this client id. ``sticky``: this client id if it is ready (a conversation's earlier
    client). ``capability``: only clients that declare it (``images`` for an image request).
    """
    serving = offline = draining = maintenance = cooling = probing = full = limited = upstream = elsewhere = 0
    soonest: float | None = None
    ready: list[T] = []
    for c in candidates:
        if c.client_id in exclude or not c.serves(model) or (pinned is not None and c.client_id != pinned):
            continue
        if capability is not None and capability not in c.capabilities:
            continue
        serving += 1
        if not c.available:
            offline += 1
            continue
        if c.draining:
            draining += 1
            continue
        if blocked is not None and (why := blocked(c)) is not None:
            kind, wait = why
            if kind == "maintenance":
                maintenance += 1
            elif kind == "probing":
                probing += 1
            elif kind == "upstream_limited":
                upstream += 1
                if wait is not None:
                    soonest = wait if soonest is None else min(soonest, wait)
            elif kind == "busy_elsewhere":
                elsewhere += 1
                if wait is not None:
                    soonest = wait if soonest is None else min(soonest, wait)
            else:
                cooling += 1
                if wait is not None:
                    soonest = wait if soonest is None else min(soonest, wait)
            continue
        if c.active >= c.max_concurrent:
            full += 1
            continue
        if rate_wait is not None:
            wait = rate_wait(c)
            if wait > 0:
                limited += 1
                soonest = wait if soonest is None else min(soonest, wait)
                continue
        if sticky is not None and c.client_id == sticky:
            return c
        ready.append(c)
    if ready:
        return ready[0] if len(ready) == 1 else strategy.choose(ready, model)

    what = f"client {pinned!r}" if pinned is not None else "client"
    able = f" with the '{capability}' capability" if capability is not None else ""
    if serving == 0:
        if pinned is not None:
            raise NoRoute(f"client {pinned!r} is not connected, does not serve model '{model}'{able}, "
                          "or already failed this request")
        if exclude:
            raise NoRoute(f"every client{able} serving model '{model}' failed this request")
        raise NoRoute(f"no connected client{able} serves model '{model}'")
    busy = full + limited + probing + elsewhere
    if upstream == serving:
        raise NoRoute(f"all {serving} {what}(s) serving model '{model}' are rate limited by their upstream", soonest,
                      upstream_limited=True)
    if full == serving:
        raise NoRoute(f"all {serving} {what}(s) serving model '{model}' are at their concurrency limit", busy=True)
    if limited == serving:
        raise NoRoute(f"all {serving} {what}(s) serving model '{model}' are at their rate limit", soonest, busy=True)
    parts = [(offline, "unhealthy"), (draining, "draining"), (maintenance, "in maintenance"),
             (cooling, "cooling down after failures"), (probing, "being probed"), (full, "at capacity"),
             (limited, "at their rate limit"), (upstream, "rate limited by their upstream"),
             (elsewhere, "busy on another platform instance")]
    detail = ", ".join(f"{n} {label}" for n, label in parts if n)
    # A wait is known only when nothing could free sooner (a slot at capacity, a probe ending).
    known = soonest if full == 0 and probing == 0 else None
    raise NoRoute(f"the {serving} {what}(s) serving model '{model}' are unhealthy or busy ({detail})", known,
                  busy=busy > 0)


def least_load(candidates: Iterable[T], model: str, exclude: frozenset[str] | set[str] = frozenset(),
               rate_wait: Callable[[T], float] | None = None) -> T:
    """``select`` with the ``least_load`` strategy."""
    return select(candidates, model, LeastLoad(), exclude=exclude, rate_wait=rate_wait)
