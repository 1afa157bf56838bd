"""Placing a request on a client and getting its answer back.

- Routing: ``routing.select`` with the configured strategy, the clients' health (circuit breaker,
  maintenance), their concurrency and RPM, drain, an admin's pin and conversation affinity.
- Queueing: when every eligible client is busy, the request waits in a bounded FIFO queue for at
  most ``queue_timeout_seconds``; freed capacity is handed to the oldest waiter first. A full
  queue is a 429 (``queue_full``), a wait that runs out a 503, both with ``Retry-After``.
- Leases: a placed request holds a lease on its client. Before the first byte it must begin
  within the first-byte timeout; after it, each chunk renews the lease for
  ``idle_timeout_seconds`` (``attempt.Attempt``). A client that goes quiet loses the lease: the
  request is retried on another client (before the first byte) or ends with an error event (after it).
- Every attempt ends exactly once as a success, a failure or neither (the consumer left), which
  feeds the client's health.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable

from arenahub.platform.accounting.limits import (
    WINDOW,
    Admitted,
    Limits,
    LimitState,
    Refused,
    format_retry_after,
)
from arenahub.platform.attempt import (
    Attempt,
    Placement,
    client_code,
    client_error,
    client_fault,
    client_text,
    error_outcome,
    retry_after,
)
from arenahub.platform.exchange import Exchange
from arenahub.platform.health import ClientHealth, HealthPolicy
from arenahub.platform.registry import ClientRegistry
from arenahub.platform.routing import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    NoRoute,
    Strategy,
    make_strategy,
    select,
)
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage.accounts import ClientAccount
from arenahub.platform.tunnel_session import ClientGone, ClientSession
from arenahub.protocol import frames
from arenahub.protocol.errors import (
    ApiError,
    NoClientAvailable,
    QueueFull,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)

log = logging.getLogger("arenahub.platform.dispatch")

AFFINITY_MAX = 100_000
DEFAULT_UPSTREAM_WAIT = 30.0  # a client's 429 that says no Retry-After
MOVE_WAIT_SECONDS = 0.5  # how often a request waiting for a client that moves between instances looks again
BUSY_SECONDS = 1.0  # a client another instance would not take a request for is routed around this long


class _Waiter:
    __slots__ = ("ex", "exclude", "future", "last")

    def __init__(self, ex: Exchange, exclude: set[str], future: asyncio.Future[Placement], last: NoRoute) -> None:
        self.ex = ex
        self.exclude = exclude
        self.future = future
        self.last = last


class Dispatcher:
    def __init__(self, registry: ClientRegistry, settings: PlatformSettings, *,
                 rng: random.Random | None = None) -> None:
        self._registry = registry
        self.settings = settings
        # Every request placed on a client is admitted here against the client's RPM.
        self.client_limits = LimitState()
        self.clock = time.monotonic  # seconds; tests replace it
        self._next_sweep = 0.0
        self.policy = HealthPolicy(window=max(1, settings.breaker_window),
                                   min_requests=max(1, settings.breaker_min_requests),
                                   failure_ratio=settings.breaker_failure_ratio,
                                   cooldown=settings.breaker_cooldown_seconds,
                                   maintenance_drops=settings.maintenance_drops_per_hour)
        self.health: dict[str, ClientHealth] = {}
        self._rng = rng or random.Random()
        self._strategies: dict[str, Strategy] = {}
        self._auto_strategy: str | None = None
        self._waiters: deque[_Waiter] = deque()
        self._notify_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._affinity: OrderedDict[str, str] = OrderedDict()
        # Called with a client id when its routing state changes (breaker, maintenance, drain).
        self.on_routing_change: Callable[[str], None] | None = None

    # -- state --------------------------------------------------------------------------------
    def health_of(self, client_id: str) -> ClientHealth:
        h = self.health.get(client_id)
        if h is None:
            h = self.health[client_id] = ClientHealth(client_id, self.policy)
        return h

    @property
    def strategy_name(self) -> str:
        if self.settings.routing_strategy:
            return self.settings.routing_strategy
        if self._auto_strategy is None:
            votes = Counter(s.preferred_strategy for s in self._registry.sessions()
                            if s.preferred_strategy in STRATEGIES)
            ranked = votes.most_common(2)
            tie = len(ranked) == 2 and ranked[0][1] == ranked[1][1]
            self._auto_strategy = ranked[0][0] if ranked and not tie else DEFAULT_STRATEGY
        return self._auto_strategy

    def _strategy(self) -> Strategy:
        name = self.strategy_name
        strategy = self._strategies.get(name)
        if strategy is None:
            strategy = self._strategies[name] = make_strategy(name, self.health.get, self._rng)
        return strategy

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def settings_changed(self, settings: PlatformSettings) -> None:
        """The live settings changed: the strategy, the queue and the timeouts apply from the next
        decision on (an answer under way keeps the timeouts it started with)."""
        self.settings = settings
        self._auto_strategy = None
        self.notify()

    def sessions_changed(self) -> None:
        """A client connected or left: the clients' preferred strategy may differ; waiters may fit."""
        self._auto_strategy = None
        self.notify()

    def apply_account(self, account: ClientAccount) -> None:
        """An admin changed the client: its limits, priority, weight, drain or maintenance apply now."""
        h = self.health_of(account.id)
        if account.maintenance_reason is None and h.maintenance is not None:
            h.clear_maintenance()
        elif account.maintenance_reason is not None and h.maintenance is None:
            h.maintenance = account.maintenance_reason
        session = self._registry.get(account.id)
        if session is not None:
            session.priority, session.weight = account.priority, max(1, account.weight)
            session.admin_draining = account.draining
            session.max_concurrent = max(1, min(account.max_concurrent, session.hello_max_concurrent))
            session.rpm, session.limits = account.rpm, Limits(rpm=account.rpm)
        self._routing_changed(account.id)
        self.notify()

    def client_connecting(self, account: ClientAccount) -> ClientHealth:
        """A client connects: its health here, in maintenance if the database says it is."""
        h = self.health_of(account.id)
        if account.maintenance_reason and h.maintenance is None:
            h.maintenance = account.maintenance_reason
        return h

    def client_moving(self, session: ClientSession) -> None:
        """This instance shuts down and asked the client to move: no new work on this connection."""
        session.moving = True
        self.sessions_changed()

    def client_drain(self, session: ClientSession, draining: bool, reason: str) -> None:
        """The client asked to drain (or to take work again)."""
        session.self_draining = draining
        session.drain_reason = reason if draining else ""
        self._routing_changed(session.client_id)
        self.notify()

    def _routing_changed(self, client_id: str) -> None:
        if self.on_routing_change is not None:
            self.on_routing_change(client_id)

    # -- choosing -----------------------------------------------------------------------------
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

    def blocked(self, session: ClientSession) -> tuple[str, float | None] | None:
        """Why the client's health keeps work from it now (see ``routing.select``), or None."""
        return self._blocked(session, self.clock())

    def _blocked(self, session: ClientSession, now: float) -> tuple[str, float | None] | None:
        if session.moving:  # it connects to another instance now: busy until its new connection serves
            return ("busy_elsewhere", MOVE_WAIT_SECONDS)
        h = self.health.get(session.client_id)
        if h is not None:
            if h.maintenance is not None:
                return ("maintenance", None)
            wait = h.blocked_for(now)
            if wait is not None:
                return ("probing", None) if wait == 0 else ("cooling", wait)
        upstream = session.upstream_wait()
        if upstream > 0:
            return ("upstream_limited", upstream)
        elsewhere = session.busy_wait()
        return ("busy_elsewhere", elsewhere) if elsewhere > 0 else None

    def _place(self, ex: Exchange, exclude: set[str]) -> Placement:
        """Choose a client, take a slot in its RPM window and open the request there: no await, atomic."""
        now = self.clock()
        if now >= self._next_sweep:  # idle clients' windows go; once a minute, as it walks them all
            self._next_sweep = now + WINDOW
            self.client_limits.sweep(now)
        sticky = self._affinity.get(ex.affinity_key) if ex.affinity_key else None
        session = select(self._registry.sessions(), ex.model, self._strategy(), exclude=exclude,
                         rate_wait=lambda s: self._rate_wait(s, now), blocked=lambda s: self._blocked(s, now),
                         pinned=ex.pinned_client, sticky=sticky,
                         capability=frames.IMAGES_CAPABILITY if ex.kind == frames.IMAGES else None)
        admitted = self.client_limits.admit(session.limit_subject, session.limits, now=now)
        assert isinstance(admitted, Admitted)  # routing checked it at this same instant
        probe = self.health_of(session.client_id).placed(now)
        if ex.affinity_key:
            self._affinity[ex.affinity_key] = session.client_id
            self._affinity.move_to_end(ex.affinity_key)
            if len(self._affinity) > AFFINITY_MAX:
                self._affinity.popitem(last=False)
        ex.attempts += 1
        ex.client_id = session.client_id
        return Placement(session, admitted.ticket, session.open(ex.id, ex.body, ex.kind), time.monotonic(), ex,
                         probe)

    # -- the end of an attempt ----------------------------------------------------------------
    def attempt_succeeded(self, p: Placement, *, ttft: float, tokens: int, duration: float) -> None:
        self.client_limits.finish(p.ticket, 0)
        if self.health_of(p.session.client_id).succeeded(self.clock(), ttft, tokens, duration):
            log.info("client %s: probe succeeded; back in rotation", p.session.client_id)
            self._routing_changed(p.session.client_id)
        self.notify()

    def attempt_failed(self, p: Placement) -> None:
        self.client_limits.release(p.ticket)
        h = self.health_of(p.session.client_id)
        if h.failed(self.clock()):
            state = h.breaker(self.clock())
            log.warning("client %s: %s%s", p.session.client_id,
                        f"circuit breaker {state.value}" if state.value != "closed" else "",
                        f"; maintenance: {h.maintenance}" if h.maintenance else "")
            self._routing_changed(p.session.client_id)
        self.notify()

    def attempt_ended(self, p: Placement) -> None:
        self.client_limits.finish(p.ticket, 0)
        self.health_of(p.session.client_id).ended(self.clock(), p.probe)
        self.notify()

    # -- the queue ----------------------------------------------------------------------------
    def notify(self) -> None:
        """Capacity may have freed: offer it to the waiting requests, oldest first (coalesced)."""
        if self._waiters and not self._notify_scheduled:
            self._notify_scheduled = True
            asyncio.get_running_loop().call_soon(self._serve_waiters)

    def _serve_waiters(self) -> None:
        self._notify_scheduled = False
        busy_models: set[tuple[str, str]] = set()  # (model, kind): image requests need image-capable clients
        soonest: float | None = None
        for waiter in list(self._waiters):
            if waiter.future.done():
                self._forget(waiter)
                continue
            plain = not waiter.exclude and waiter.ex.pinned_client is None
            if plain and (waiter.ex.model, waiter.ex.kind) in busy_models:
                continue  # an older waiter for the same model found nothing: neither will this one
            try:
                placement = self._place(waiter.ex, waiter.exclude)
            except NoRoute as reason:
                if not reason.busy:
                    waiter.future.set_exception(self._unavailable(reason))
                    self._forget(waiter)
                    continue
                waiter.last = reason
                if reason.retry_after is not None:
                    soonest = reason.retry_after if soonest is None else min(soonest, reason.retry_after)
                if plain:
                    busy_models.add((waiter.ex.model, waiter.ex.kind))
                continue
            waiter.future.set_result(placement)
            self._forget(waiter)
        if soonest is not None:
            self._wake_in(soonest)

    def fail_waiters(self, error: ApiError) -> None:
        """Answer every waiting request with ``error`` (the platform is shutting down)."""
        for waiter in list(self._waiters):
            if not waiter.future.done():
                waiter.future.set_exception(error)
        self._waiters.clear()

    def _forget(self, waiter: _Waiter) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass

    def _wake_in(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        at = loop.time() + max(0.001, delay)
        if self._timer is not None and not self._timer.cancelled() and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_at(at, self.notify)

    @staticmethod
    def _unavailable(reason: NoRoute) -> ApiError:
        retry_after = "5" if reason.retry_after is None else format_retry_after(reason.retry_after)
        if reason.upstream_limited:
            return UpstreamRateLimited(f"No client can serve this request now: {reason}. Retry after {retry_after} s.",
                                       headers={"Retry-After": retry_after})
        return NoClientAvailable(f"No client can serve this request now: {reason}.",
                                 headers={"Retry-After": retry_after})

    async def _wait(self, ex: Exchange, exclude: set[str], reason: NoRoute) -> Placement:
        s = self.settings
        timeout = s.queue_timeout_seconds
        if s.queue_size <= 0 or timeout <= 0 or (reason.retry_after is not None and reason.retry_after > timeout):
            raise self._unavailable(reason)  # no queue, or no slot frees before the wait would run out
        if len(self._waiters) >= s.queue_size:
            raise QueueFull(f"Every client that can serve model '{ex.model}' is busy and {len(self._waiters)} "
                            f"requests are already waiting: retry shortly ({reason}).",
                            headers={"Retry-After": format_retry_after(min(timeout, reason.retry_after or 1.0))})
        waiter = _Waiter(ex, exclude, asyncio.get_running_loop().create_future(), reason)
        self._waiters.append(waiter)
        if reason.retry_after is not None:
            self._wake_in(reason.retry_after)
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(waiter.future)
        except TimeoutError:
            if waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                return waiter.future.result()  # placed at the last moment: take it
            waiter.future.cancel()
            last = waiter.last
            raise NoClientAvailable(
                f"No client could take this request within {timeout:g} s: {last}.",
                headers={"Retry-After": format_retry_after(last.retry_after or min(timeout, 5.0))}) from None
        except asyncio.CancelledError:
            # The consumer left while waiting: give back a placement made at the same moment.
            if waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                placement = waiter.future.result()
                placement.session.cancel(ex.id, "consumer disconnected")
                placement.ended("cancelled", None, "consumer disconnected")
                self.attempt_ended(placement)
            waiter.future.cancel()
            raise
        finally:
            self._forget(waiter)

    # -- one request --------------------------------------------------------------------------
    async def start(self, ex: Exchange, exclude: set[str] | None = None) -> Attempt:
        """Place the request and wait for its first frame, trying other clients on failure.

        Raises NoClientAvailable at once when nothing can serve the model, QueueFull or
        NoClientAvailable when the clients stay busy, or the last attempt's error when every
        attempt failed.

        A client that refused the request (a 4xx) is judged by what the others do: when another
        serves it, each refusal counts against its client's health (a client refusing everything
        loses its traffic); when none does, the request was at fault (a consumer cannot trip the
        clients' breakers with requests that every client refuses).
        """
        refusals: list[Placement] = []
        try:
            attempt = await self._start(ex, exclude, refusals)
        except BaseException:
            for placement in refusals:
                self.attempt_ended(placement)
            raise
        for placement in refusals:
            self.attempt_failed(placement)
        return attempt

    async def _start(self, ex: Exchange, exclude: set[str] | None, refusals: list[Placement]) -> Attempt:
        exclude = exclude if exclude is not None else set()
        last_error: ApiError | None = None
        settings = self.settings
        # A streamed answer must begin within the first-byte timeout; a non-streamed one arrives
        # whole, so it gets the total time (a dead client is still noticed by its heartbeats).
        wait = settings.first_byte_timeout_seconds if ex.request.stream else settings.total_timeout_seconds
        attempts = 0
        while attempts < settings.max_attempts:
            if self._waiters:
                self._serve_waiters()  # capacity freed since the last pass goes to those waiting first
            try:
                placement = self._place(ex, exclude)
            except NoRoute as reason:
                if last_error is not None:
                    raise last_error from None
                if not reason.busy:
                    raise self._unavailable(reason) from None
                placement = await self._wait(ex, exclude, reason)
            attempts += 1
            session = placement.session
            # Each attempt gets its wait, but the request as a whole never outlasts the total time.
            left = settings.total_timeout_seconds - ex.elapsed()
            this_wait = max(0.0, min(wait, left))
            try:
                async with asyncio.timeout(this_wait):
                    frame = await placement.queue.get()
            except TimeoutError:
                session.cancel(ex.id, "no first byte in time")
                timeout = UpstreamTimeout(f"no answer within the total time of {settings.total_timeout_seconds:g} s"
                                          if this_wait < wait else f"no answer began within {wait:g} s")
                placement.ended("timeout", timeout.code, timeout.message)
                self.attempt_failed(placement)
                if this_wait < wait:
                    raise timeout from None
                last_error = timeout
                exclude.add(session.client_id)
                continue
            except asyncio.CancelledError:
                session.cancel(ex.id, "consumer disconnected")
                placement.ended("cancelled", None, "consumer disconnected")
                self.attempt_ended(placement)
                raise
            if isinstance(frame, ClientGone) and frame.busy:  # another instance would not place it now
                # For a moment (as long as that instance said): no attempt spent, and the request may wait.
                session.routed_around(frame.wait if frame.wait is not None else BUSY_SECONDS)
                placement.ended("refused", "client_busy", frame.reason)
                self.attempt_ended(placement)
                attempts -= 1
                ex.attempts -= 1
                continue
            if isinstance(frame, ClientGone) and frame.by_platform:  # this instance stops: not the client's fault
                stopped = UpstreamError(f"the platform instance stopped before the answer began ({frame.reason}); "
                                        "retry the request", code="platform_shutting_down", status=503,
                                        headers={"Retry-After": "1"})
                placement.ended("cancelled", stopped.code, stopped.message)
                self.attempt_ended(placement)
                raise stopped
            if isinstance(frame, ClientGone):
                log.info("request %s: client %s went away before answering; retrying", ex.id, session.client_id)
                last_error = UpstreamError(f"the client disconnected before answering ({frame.reason})",
                                           code="client_disconnected")
                placement.ended("disconnected", last_error.code, last_error.message)
                self.attempt_failed(placement)
                exclude.add(session.client_id)
                continue
            if isinstance(frame, frames.Error):
                if frame.status == 429:  # its upstream is rate limited: route around it until then
                    session.upstream_rate_limited(retry_after(frame) or DEFAULT_UPSTREAM_WAIT)
                    self._routing_changed(session.client_id)
                placement.ended(error_outcome(frame), client_code(frame.code), client_text(frame.message))
                if not client_fault(frame):
                    self.attempt_ended(placement)
                elif 400 <= frame.status < 500:
                    refusals.append(placement)  # judged when the request ends (see start)
                else:
                    self.attempt_failed(placement)
                if ex.pinned_client is None:  # refused or failed before the first byte: another client may serve it
                    log.info("request %s: client %s failed (%s); retrying", ex.id, session.client_id,
                             client_code(frame.code))
                    last_error = client_error(frame)
                    exclude.add(session.client_id)
                    continue
                raise client_error(frame)
            return Attempt(self, placement, frame, ex, self.settings)
        assert last_error is not None
        raise last_error
