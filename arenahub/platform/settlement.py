"""Settlement of a consumer request, the same for every endpoint: what admission (admission.py) took is
given back here, once.

When an exchange ends, its credit reservation is settled to what the platform counted (or released
when nothing was delivered), its record goes to the writer (with its prompt and answer when the
operator stores them), its rate-limit ticket is closed with the tokens really used, and a client's
usage claim that differs much from the count is noted. Each happens exactly once per exchange, whoever
calls and however often; a failure in one part is logged and never loses the record nor holds the
credit. A request refused after its key was known is recorded here too.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Protocol

from arenahub.ids import new_id
from arenahub.platform.accounting.credit import Accounting
from arenahub.platform.accounting.limits import LimitStore
from arenahub.platform.claims import UsageClaims
from arenahub.platform.cluster.errors import LiveStateUnavailable
from arenahub.platform.exchange import Exchange, short
from arenahub.platform.records import RecordWriter, RequestRecord
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage.accounts import ConsumerKey
from arenahub.protocol.errors import ApiError

log = logging.getLogger("arenahub.platform.settlement")


class RequestMetrics(Protocol):
    """What settlement counts (metrics.PlatformMetrics)."""

    def request_finished(self, record: RequestRecord) -> None: ...

    def usage_claim_gap(self, client_id: str) -> None: ...


class Settlement:
    def __init__(self, accounting: Accounting, writer: RecordWriter, key_limits: LimitStore,
                 metrics: RequestMetrics, usage_claims: UsageClaims,
                 settings: Callable[[], PlatformSettings]) -> None:
        self.accounting = accounting
        self.writer = writer
        self.key_limits = key_limits
        self.metrics = metrics
        self.usage_claims = usage_claims
        self._settings = settings  # the current ones: store_prompts may change at run time (live_settings.py)

    async def settle(self, ex: Exchange) -> bool:
        """Close the exchange's reservation, record it, close its rate-limit ticket and note a usage claim
        gap. True for the call that did; False when the exchange was settled (or is being settled) already."""
        if ex.booked:
            return False
        ex.booked = True  # before the first await: a concurrent call sees it
        usage = ex.usage()  # the platform's own count: never negative, never raises
        await self._close_reservation(ex, usage)
        record = ex.record(usage)
        self.writer.add(record)
        if self._settings().store_prompts:  # off by default: then no prompt or answer is kept anywhere
            self.writer.add_content(ex.id, record.created_at, ex.prompt(), ex.answer())
        self._count(record)
        if ex.ticket is not None:
            try:
                await self.key_limits.finish(ex.ticket, record.prompt_tokens + record.completion_tokens)
            except LiveStateUnavailable as exc:  # its slot comes back with its lease (limits_redis.py)
                log.warning("closing the rate-limit ticket of request %s failed: %s", ex.id, exc.message)
        if record.detail and "claimed_usage" in record.detail and record.client_id:
            self.usage_claims.gap(record.client_id, record.detail["claimed_usage"], usage)
            self.metrics.usage_claim_gap(record.client_id)
        return True

    async def _close_reservation(self, ex: Exchange, usage: dict[str, int]) -> None:
        try:
            ex.cost = await self.accounting.close(ex, usage["prompt_tokens"], usage["completion_tokens"])
        except Exception:  # a bug or an outage in the book must not lose the record nor hold the credit: log it
            log.exception("settling request %s failed; releasing its reservation", ex.id)
            try:
                if ex.reservation is not None:
                    await self.accounting.store.release(ex.reservation)
            except Exception:
                log.exception("releasing the reservation of request %s failed", ex.id)

    def refused(self, key: ConsumerKey, err: ApiError, started: float, *, model: str, stream: bool) -> None:
        """Record a request refused after its key was known (bad body, unknown model, limits, credit, ...):
        it held nothing, so there is nothing else to give back."""
        record = RequestRecord(
            id=new_id(), created_at=dt.datetime.now(dt.UTC), key_id=key.id, client_id=None,
            model=model[:200], stream=stream, status=err.status, error_code=err.code,
            latency_ms=round((time.perf_counter() - started) * 1000, 3), ttft_ms=None, prompt_tokens=0,
            completion_tokens=0, attempts=0, detail={"attempts": [], "error": short(err.message)})
        self.writer.add(record)
        self._count(record)

    def _count(self, record: RequestRecord) -> None:
        """The metrics, after a request's record is safe with the writer."""
        try:
            self.metrics.request_finished(record)
        except Exception:  # the record is kept whatever these do
            log.exception("updating the metrics of request %s failed", record.id)
