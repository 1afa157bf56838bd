"""How each client has been doing: speed, circuit breaker and maintenance. Pure: the clock is passed in.

One ``ClientHealth`` per client id, kept across reconnects (a client that drops its socket to
shed its failures starts where it left off).

- Speed: exponentially weighted averages of time to first token and of throughput (tokens per
  second), over served requests; ``fastest`` routing reads them.
- Circuit breaker: the outcomes of the last ``window`` requests. When at least ``min_requests``
  of them are known and the failed share reaches ``failure_ratio``, the breaker opens: no
  requests for a cooldown. Then it is half-open: exactly one request (the probe) goes through.
  Its success closes the breaker (with a clean window); its failure opens it again. Each trip in
  the last hour doubles the cooldown, up to ``max_cooldown``.
- Maintenance: a client that dropped ``maintenance_drops`` requests in the last hour is taken
  out of rotation until an admin clears it; the reason says why.

A failure is what the client caused: it disconnected or went quiet mid-request, sent nothing in
time, or answered with an error (any status but 429: a client that refuses everything must lose
its traffic as one that fails). A consumer leaving is neither success nor failure.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

HOUR = 3600.0


class Breaker(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class HealthPolicy:
    window: int = 10
    min_requests: int = 4
    failure_ratio: float = 0.5
    cooldown: float = 30.0
    max_cooldown: float = 600.0
    maintenance_drops: int = 50  # per hour; 0 turns automatic maintenance off
    ewma_alpha: float = 0.2


class ClientHealth:
    def __init__(self, client_id: str, policy: HealthPolicy) -> None:
        self.client_id = client_id
        self.policy = policy
        self.ttft: float | None = None  # seconds, decayed average
        self.throughput: float | None = None  # tokens per second, decayed average
        self.samples = 0
        self.last_sample_at: float | None = None
        self._outcomes: deque[bool] = deque(maxlen=policy.window)  # True: success
        self._breaker = Breaker.CLOSED
        self._open_until = 0.0
        self._probe = 0
        self._probes = 0
        self._trips: deque[float] = deque()
        self._drops: deque[float] = deque()
        self.maintenance: str | None = None
        self.failures = 0
        self.successes = 0

    # -- reading ------------------------------------------------------------------------------
    def breaker(self, now: float) -> Breaker:
        if self._breaker is Breaker.OPEN and now >= self._open_until:
            self._breaker = Breaker.HALF_OPEN
            self._probe = 0
        return self._breaker

    def blocked_for(self, now: float) -> float | None:
        """None when the breaker lets a request through now; else seconds until it may (0: a probe is out)."""
        state = self.breaker(now)
        if state is Breaker.CLOSED:
            return None
        if state is Breaker.OPEN:
            return self._open_until - now
        return 0.0 if self._probe else None

    def drops_last_hour(self, now: float) -> int:
        self._prune(self._drops, now)
        return len(self._drops)

    # -- events -------------------------------------------------------------------------------
    def placed(self, now: float) -> int:
        """A request went to this client; returns its probe number if it is a half-open breaker's probe, else 0."""
        if self.breaker(now) is Breaker.HALF_OPEN:
            self._probes += 1
            self._probe = self._probes
            return self._probe
        return 0

    def succeeded(self, now: float, ttft: float | None = None, tokens: int = 0, duration: float = 0.0) -> bool:
        """A served request; returns True when this closed the breaker."""
        self.successes += 1
        if ttft is not None:
            self.ttft = _decay(self.ttft, ttft, self.policy.ewma_alpha)
            if tokens > 0 and duration > 0:
                self.throughput = _decay(self.throughput, tokens / duration, self.policy.ewma_alpha)
            self.samples += 1
            self.last_sample_at = now
        if self.breaker(now) is Breaker.HALF_OPEN:
            self._breaker = Breaker.CLOSED
            self._probe = 0
            self._outcomes.clear()
            return True
        self._outcomes.append(True)
        return False

    def failed(self, now: float) -> bool:
        """A request the client failed; returns True when this changed the breaker or maintenance."""
        self.failures += 1
        self._drops.append(now)
        changed = False
        p = self.policy
        if p.maintenance_drops and self.maintenance is None and self.drops_last_hour(now) >= p.maintenance_drops:
            self.maintenance = f"dropped {len(self._drops)} requests in the last hour"
            changed = True
        state = self.breaker(now)
        if state is Breaker.HALF_OPEN:
            return self._trip(now) or changed
        if state is Breaker.OPEN:
            return changed  # a request placed before it opened: already counted as a trip
        self._outcomes.append(False)
        failed = self._outcomes.count(False)
        if len(self._outcomes) >= p.min_requests and failed / len(self._outcomes) >= p.failure_ratio:
            return self._trip(now) or changed
        return changed

    def ended(self, now: float, probe: int) -> None:
        """A request that ended neither way (the consumer left): frees a half-open probe if it was that probe."""
        if self._breaker is Breaker.HALF_OPEN and probe and probe == self._probe:
            self._probe = 0

    def clear_maintenance(self) -> None:
        self.maintenance = None
        self._drops.clear()

    def _trip(self, now: float) -> bool:
        self._prune(self._trips, now)
        self._trips.append(now)
        cooldown = min(self.policy.cooldown * 2 ** (len(self._trips) - 1), self.policy.max_cooldown)
        self._breaker = Breaker.OPEN
        self._open_until = now + cooldown
        self._probe = 0
        self._outcomes.clear()
        return True

    @staticmethod
    def _prune(times: deque[float], now: float) -> None:
        while times and times[0] <= now - HOUR:
            times.popleft()

    def snapshot(self, now: float) -> dict[str, object]:
        state = self.breaker(now)
        return {"breaker": state.value,
                "breaker_retry_in": round(max(0.0, self._open_until - now), 3) if state is Breaker.OPEN else None,
                "maintenance": self.maintenance, "drops_last_hour": self.drops_last_hour(now),
                "ttft_ms": round(self.ttft * 1000, 1) if self.ttft is not None else None,
                "tokens_per_second": round(self.throughput, 1) if self.throughput is not None else None,
                "samples": self.samples, "successes": self.successes, "failures": self.failures}


def _decay(average: float | None, value: float, alpha: float) -> float:
    return value if average is None else average + alpha * (value - average)
