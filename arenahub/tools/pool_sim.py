"""A pool simulator: the real Dispatcher against many simulated clients, in one process.

``run(pool, strategy, ...)`` sends requests through ``Dispatcher.start``, ``Attempt.batches()``
and ``Attempt.abandon()`` exactly as the consumer API does; routing strategies, circuit breaker,
wait queue and retries before the first byte are the platform's own, unmodified. Only the
clients are simulated: a ``SimSession`` offers what the Dispatcher uses of a ``ClientSession``
and answers each request from its ``Profile`` (time to first token, throughput, failures before
the first byte, requests dropped mid-answer, stalls, whole-connection drops).

Time is real asyncio time, with answers about 100x quicker than real ones (the default pool: 40
to 400 ms to the first token); the platform's per-request timeouts are scaled by the same
``TIME_SCALE`` (``sim_settings``). Two durations are not: the breaker cooldown and the automatic
maintenance. A run sends several hundred requests a second, the rate of a busy platform, not one
100x slower; so the cooldown stays at its default (30 s: a tripped client stays out for the whole
run, as it does for thousands of requests on a busy platform) unless a run sets it, and
maintenance (50 drops an hour, an hour a run cannot scale) is off. The figures are wall-clock:
other work on the machine moves them.

``bench/pool.py`` runs every strategy and the breaker scenario; tests/platform/test_pool_sim.py
checks the claims of issue 5 with it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from arenahub.platform.accounting.limits import Limits
from arenahub.platform.dispatch import Dispatcher
from arenahub.platform.exchange import Exchange
from arenahub.platform.health import Breaker
from arenahub.platform.registry import LocalClientRegistry
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage.accounts import ConsumerKey
from arenahub.platform.tunnel_session import ClientGone, Incoming
from arenahub.protocol import frames
from arenahub.protocol.errors import ApiError
from arenahub.protocol.openai import parse_chat_request

MODEL = "sim-model"
TIME_SCALE = 0.01  # simulated seconds per real second, for the platform's per-request timeouts
# The breaker off: it needs more outcomes than its window ever holds.
BREAKER_OFF: dict[str, Any] = {"breaker_min_requests": 1_000_000}
WARMUP = "w"  # the id prefix of warm-up requests, which are not measured


@dataclass(frozen=True, slots=True)
class Profile:
    """How one simulated client behaves. Probabilities are per request and exclusive."""

    ttft: float = 0.04  # median seconds to the first chunk
    tokens_per_second: float = 1000.0
    max_concurrent: int = 4
    priority: int = 0
    weight: int = 1
    fail_before: float = 0.0  # refused before the first byte: a retryable Error frame
    drop: float = 0.0  # cut after some chunks: ClientGone, as when its tunnel breaks
    stall: float = 0.0  # goes quiet (before or during the answer) until the platform gives up
    disconnect: float = 0.0  # the whole connection drops: every request on it ends with ClientGone
    reconnect_after: float = 0.2  # seconds before a dropped connection is back
    jitter: float = 0.25  # sigma of the lognormal spread of each request's TTFT and pace

    @property
    def failure(self) -> float:
        return self.fail_before + self.drop + self.stall + self.disconnect


@dataclass(frozen=True)
class Pool:
    """The clients of a run, reproducible from ``seed``: each run gets fresh sessions."""

    profiles: tuple[Profile, ...]
    seed: int = 0
    answer_tokens: tuple[int, int] = (20, 60)  # each answer's length, uniform in this range
    tokens_per_chunk: int = 10

    @classmethod
    def build(cls, n: int = 200, *, seed: int = 0, speed_ratio: float = 10.0, ttft: float = 0.04,
              tokens_per_second: float = 1000.0, max_concurrent: Sequence[int] = (2, 4, 8),
              bad_share: float = 0.0, bad_failure: float = 0.5, bad_midstream: float = 0.5,
              top_priority: int = 0, **pool: Any) -> Pool:
        """``n`` clients; each is 1 to ``speed_ratio`` times slower than ``ttft`` / ``tokens_per_second``
        (log-uniform). ``bad_share`` of them fail ``bad_failure`` of their requests, ``bad_midstream``
        of those after the first byte (where no retry can hide it). ``top_priority`` clients get priority 1."""
        rng = random.Random(seed)
        bad = set(rng.sample(range(n), round(n * bad_share)))
        top = set(rng.sample(range(n), top_priority))
        profiles = []
        for i in range(n):
            slow = speed_ratio ** rng.random()
            fail = bad_failure if i in bad else 0.0
            profiles.append(Profile(ttft=ttft * slow, tokens_per_second=tokens_per_second / slow,
                                    max_concurrent=rng.choice(list(max_concurrent)), priority=int(i in top),
                                    fail_before=fail * (1 - bad_midstream), drop=fail * bad_midstream))
        return cls(tuple(profiles), seed=seed, **pool)

    def client_id(self, index: int) -> str:
        return f"c{index:03d}"

    def sessions(self, on_change: Callable[[], None]) -> list[SimSession]:
        return [SimSession(self.client_id(i), p, random.Random(f"{self.seed}:{i}"), self.answer_tokens,
                           self.tokens_per_chunk, on_change) for i, p in enumerate(self.profiles)]


class SimSession:
    """One simulated client: the routing view and ``open``/``cancel``/``finish`` of a ClientSession."""

    def __init__(self, client_id: str, profile: Profile, rng: random.Random, answer_tokens: tuple[int, int],
                 tokens_per_chunk: int, on_change: Callable[[], None]) -> None:
        self.client_id = client_id
        self.profile = profile
        self.models = {MODEL}
        self.max_concurrent = self.hello_max_concurrent = profile.max_concurrent
        self.priority, self.weight = profile.priority, profile.weight
        self.rpm: int | None = None
        self.limits = Limits()
        self.limit_subject = f"client:{client_id}"
        self.admin_draining = self.self_draining = False
        self.drain_reason = ""
        self.preferred_strategy: str | None = None
        self.available = True  # False while its connection is down
        self.active = 0  # requests in flight
        self.upstream_limited_for = 0.0  # its upstream's rate limit: never in the pool simulation
        self._rng = rng
        self._answer_tokens = answer_tokens
        self._tokens_per_chunk = tokens_per_chunk
        self._on_change = on_change  # the tunnel's client_connected / client_disconnected
        self._inflight: dict[str, tuple[asyncio.Queue[Incoming], asyncio.Task[None]]] = {}
        # What the run measures: requests placed here (after the warm-up), the most at once,
        # placements over the limit.
        self.opened = 0
        self.peak = 0
        self.over_limit = 0

    # -- routing view: available, active and the rest are plain attributes (read for every client on
    # every request); the ClientSession properties that are not follow.
    @property
    def draining(self) -> bool:
        return self.admin_draining or self.self_draining

    def upstream_wait(self) -> float:
        return self.upstream_limited_for

    def busy_wait(self) -> float:
        return 0.0  # one instance: no client is busy on another

    moving = False  # nor moving to another

    def serves(self, model: str) -> bool:
        return model in self.models

    # -- requests -----------------------------------------------------------------------------
    def open(self, request_id: str, body: bytes, kind: str = frames.CHAT) -> asyncio.Queue[Incoming]:
        if not self.available or self.active >= self.max_concurrent:
            self.over_limit += 1
        queue: asyncio.Queue[Incoming] = asyncio.Queue()
        task = asyncio.get_running_loop().create_task(self._answer(request_id, queue))
        self._inflight[request_id] = (queue, task)
        self.active = len(self._inflight)
        if not request_id.startswith(WARMUP):
            self.opened += 1
        self.peak = max(self.peak, self.active)
        return queue

    def finish(self, request_id: str) -> None:
        self._pop(request_id)

    def cancel(self, request_id: str, reason: str) -> None:
        entry = self._pop(request_id)
        if entry is not None:
            entry[1].cancel()

    def stop(self) -> None:
        """The run is over: stop answering what the platform left open."""
        for _, task in self._inflight.values():
            task.cancel()
        self._inflight.clear()
        self.active = 0

    def _pop(self, rid: str) -> tuple[asyncio.Queue[Incoming], asyncio.Task[None]] | None:
        entry = self._inflight.pop(rid, None)
        self.active = len(self._inflight)
        return entry

    async def _answer(self, rid: str, queue: asyncio.Queue[Incoming]) -> None:
        p, rng = self.profile, self._rng
        tokens = rng.randint(*self._answer_tokens)
        chunks = max(1, math.ceil(tokens / self._tokens_per_chunk))
        gap = self._tokens_per_chunk / p.tokens_per_second * rng.lognormvariate(0, p.jitter)
        u = rng.random()
        fate = next((name for name, cut in _cumulative(p) if u < cut), "ok")
        # Where it goes wrong, in chunks sent before: a drop comes after the first byte, at the
        # latest instead of the End; a stall anywhere, from before the first byte on.
        if fate == "stall":
            at = rng.randint(0, chunks)
        elif fate in ("drop", "disconnect"):
            at = rng.randint(1, chunks)
        else:
            at = 0 if fate == "fail_before" else -1
        await asyncio.sleep(p.ttft * rng.lognormvariate(0, p.jitter))
        text = "tok " * self._tokens_per_chunk  # the Dispatcher counts 4 characters a token
        for i in range(chunks + 1):
            if i == at:
                if fate == "fail_before":
                    self._deliver(rid, frames.Error(id=rid, code="upstream_unavailable", message="simulated refusal",
                                                    status=503, retryable=True))
                elif fate == "drop":
                    self._deliver(rid, ClientGone("simulated drop"))
                elif fate == "disconnect":
                    self._disconnect()
                return  # a stall: nothing more, the platform's lease runs out
            if i == chunks:
                break
            if i:
                await asyncio.sleep(gap)
            self._deliver(rid, frames.Chunk(id=rid, events=[[{"index": 0, "delta": {"content": text}}]]))
        self._deliver(rid, frames.End(id=rid))

    def _deliver(self, rid: str, frame: Incoming) -> None:
        entry = self._inflight.get(rid)
        if entry is None:
            return
        entry[0].put_nowait(frame)
        if not isinstance(frame, frames.Chunk):
            self._pop(rid)  # as ClientSession.deliver: the slot frees when the answer ends

    def _disconnect(self) -> None:
        """The connection drops: every request on it ends with ClientGone; it comes back later."""
        self.available = False
        inflight, self._inflight = self._inflight, {}
        self.active = 0
        current = asyncio.current_task()
        for queue, task in inflight.values():
            queue.put_nowait(ClientGone("simulated disconnect"))
            if task is not current:
                task.cancel()
        self._on_change()
        asyncio.get_running_loop().call_later(self.profile.reconnect_after, self._reconnect)

    def _reconnect(self) -> None:
        self.available = True
        self._on_change()


def _cumulative(p: Profile) -> list[tuple[str, float]]:
    out, total = [], 0.0
    for name in ("fail_before", "drop", "stall", "disconnect"):
        total += getattr(p, name)
        out.append((name, total))
    return out


def sim_settings(**overrides: Any) -> PlatformSettings:
    """The platform's defaults, per-request timeouts scaled by ``TIME_SCALE``, maintenance off."""
    d = PlatformSettings()
    scaled = {name: getattr(d, name) * TIME_SCALE for name in (
        "first_byte_timeout_seconds", "idle_timeout_seconds", "total_timeout_seconds", "queue_timeout_seconds")}
    return dataclasses.replace(d, **{**scaled, "maintenance_drops_per_hour": 0, **overrides})


# -- a run ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    latency: float  # seconds from the request to its End, or to its error
    ttft: float | None  # seconds to the first chunk, when one came
    client_id: str | None  # the client of the last attempt
    attempts: int
    error: str | None = None


@dataclass
class Report:
    strategy: str
    settings: dict[str, Any]
    clients: int
    outcomes: list[Outcome]
    seconds: float
    breaker_trips: int
    load: dict[str, int]  # attempts placed on each client after the warm-up, every client listed
    peak: dict[str, int]  # the most requests each client had at once
    over_limit: int  # placements on a client already at its max_concurrent (or offline): must be 0

    @property
    def served(self) -> Counter[str]:
        """Successful requests per client."""
        return Counter(o.client_id for o in self.outcomes if o.ok and o.client_id)

    @property
    def requests(self) -> int:
        return len(self.outcomes)

    @property
    def success_rate(self) -> float:
        return sum(o.ok for o in self.outcomes) / len(self.outcomes) if self.outcomes else 0.0

    def latency(self, pct: float) -> float | None:
        return percentile([o.latency for o in self.outcomes if o.ok], pct)

    def ttft(self, pct: float) -> float | None:
        return percentile([o.ttft for o in self.outcomes if o.ttft is not None], pct)

    @property
    def retries(self) -> int:
        return sum(max(0, o.attempts - 1) for o in self.outcomes)

    @property
    def errors(self) -> Counter[str]:
        return Counter(o.error for o in self.outcomes if o.error)

    @property
    def load_cv(self) -> float:
        """Coefficient of variation of the attempts per client: 0 is perfectly even."""
        counts = list(self.load.values())
        mean = statistics.fmean(counts)
        return statistics.pstdev(counts) / mean if mean else 0.0

    @property
    def load_max_over_mean(self) -> float:
        mean = statistics.fmean(self.load.values())
        return max(self.load.values()) / mean if mean else 0.0

    @property
    def clients_used(self) -> int:
        return sum(1 for n in self.load.values() if n)

    def summary(self) -> dict[str, Any]:
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1000, 2)

        return {"strategy": self.strategy, "clients": self.clients, "requests": self.requests,
                "success_rate": round(self.success_rate, 5), "latency_p50_ms": ms(self.latency(50)),
                "latency_p99_ms": ms(self.latency(99)), "ttft_p50_ms": ms(self.ttft(50)),
                "ttft_p99_ms": ms(self.ttft(99)), "load_cv": round(self.load_cv, 3),
                "load_max_over_mean": round(self.load_max_over_mean, 2), "clients_used": self.clients_used,
                "breaker_trips": self.breaker_trips, "retries": self.retries, "errors": dict(self.errors),
                "over_limit": self.over_limit, "seconds": round(self.seconds, 2),
                "requests_per_second": round(self.requests / self.seconds, 1) if self.seconds else None,
                "settings": self.settings}


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest rank: the smallest value with at least pct% of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


_KEY = ConsumerKey(id="key_sim", name="sim", key_hash="-", rpm=None, disabled=False, updated_at=None)  # type: ignore[arg-type]


async def run(pool: Pool, strategy: str, *, requests: int = 2000, concurrency: int | None = 64,
              rate: float | None = None, warmup: int = 0, seed: int = 0, **overrides: Any) -> Report:
    """Send ``requests`` streamed requests through a fresh Dispatcher over fresh sessions of ``pool``.

    ``concurrency``: that many consumers, each sending its next request when the last ends;
    ``rate``: instead, requests arrive at this many a second (Poisson). ``warmup``: that many
    requests go first, the same way, and are left out of the figures (not out of the breaker
    trips, peaks and over-limit count). ``overrides``: platform settings on top of ``sim_settings``.
    """
    settings = sim_settings(routing_strategy=strategy, **overrides)
    registry = LocalClientRegistry()
    dispatcher = Dispatcher(registry, settings, rng=random.Random(seed))
    sessions = pool.sessions(dispatcher.sessions_changed)
    for s in sessions:
        registry.add(s)  # type: ignore[arg-type]  # a SimSession is what routing reads of a ClientSession
    trips = 0

    def routing_changed(client_id: str) -> None:
        nonlocal trips
        if dispatcher.health_of(client_id).breaker(dispatcher.clock()) is Breaker.OPEN:
            trips += 1

    dispatcher.on_routing_change = routing_changed
    body = msgspec.json.encode({"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    request = parse_chat_request(body)
    outcomes: list[Outcome] = []

    measured_from = 0.0

    async def one(i: int) -> None:
        nonlocal measured_from
        if i == warmup:
            measured_from = time.perf_counter()
        ex = Exchange(id=f"{WARMUP}{i}" if i < warmup else f"r{i}", key=_KEY, request=request, body=body)
        outcome = await _request(dispatcher, ex)
        if i >= warmup:
            outcomes.append(outcome)

    if rate is not None:
        arrivals = random.Random(f"{seed}:arrivals")
        tasks = []
        for i in range(warmup + requests):
            tasks.append(asyncio.create_task(one(i)))
            await asyncio.sleep(arrivals.expovariate(rate))
        await asyncio.gather(*tasks)
    else:
        counter = iter(range(warmup + requests))

        async def consumer() -> None:
            for i in counter:
                await one(i)

        await asyncio.gather(*(consumer() for _ in range(max(1, concurrency or 1))))
    seconds = time.perf_counter() - measured_from
    for s in sessions:
        s.stop()
    shown = {k: v for k, v in dataclasses.asdict(settings).items()
             if k in ("routing_strategy", "max_attempts", "queue_size", "queue_timeout_seconds",
                      "first_byte_timeout_seconds", "idle_timeout_seconds") or k.startswith("breaker_")}
    return Report(strategy=strategy, settings=shown, clients=len(sessions), outcomes=outcomes, seconds=seconds,
                  breaker_trips=trips, load={s.client_id: s.opened for s in sessions},
                  peak={s.client_id: s.peak for s in sessions}, over_limit=sum(s.over_limit for s in sessions))


async def _request(dispatcher: Dispatcher, ex: Exchange) -> Outcome:
    """One consumer request, as consumer_api streams it: start, batches, abandon."""
    ttft: float | None = None
    try:
        attempt = await dispatcher.start(ex)
    except ApiError as err:
        return Outcome(False, ex.elapsed(), None, ex.client_id, ex.attempts, err.code)
    try:
        async for batch in attempt.batches():
            if ttft is None and any(isinstance(f, frames.Chunk) for f in batch):
                ttft = ex.elapsed()
    except ApiError as err:
        return Outcome(False, ex.elapsed(), ttft, ex.client_id, ex.attempts, err.code)
    finally:
        attempt.abandon("consumer disconnected")
    return Outcome(True, ex.elapsed(), ttft, ex.client_id, ex.attempts)
