"""Rate limits in Redis: the ``LimitStore`` of a platform that runs as several instances.

Exact for the cluster, as ``LimitState`` (limits.py) is for one process: each admission, correction
and status is one Lua script, so two instances never both take the last slot. The decisions are the
same as ``LimitState``'s, to the float: the scripts compare times with the same IEEE arithmetic, pass
them to Redis as ``%.17g`` strings (which round-trip exactly), and return the facts from which Python
computes ``retry_after`` and the header values with the same code (``_until``).

A subject's state is four keys under ``ah:lim:{<subject>}:`` (one hash slot): the request times
(a sorted set), the token entries (a sorted set of ticket ids by time, and a hash of their tokens),
the tickets in flight (a sorted set by expiry), and a hash with the running token sum and the latest
time seen. Every key expires a window after its last use, so idle subjects cost nothing and there is
nothing to sweep.

A ticket in flight holds its concurrency slot until it is closed, or for ``lease_seconds`` at most:
an instance killed mid-request cannot hold its keys' slots for ever.

Time is Redis's own (``TIME``) unless a clock is given (the tests give one), so instances whose clocks
drift still share one window.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from arenahub.platform.accounting.limits import (
    CONCURRENCY_RETRY_AFTER,
    WINDOW,
    Admission,
    Admitted,
    Limit,
    Limits,
    RateLimitStatus,
    Refused,
    Ticket,
    _until,
)
from arenahub.platform.cluster.errors import UNREACHABLE, LiveStateUnavailable

# The facts one script returns about a subject, after its decision (all strings; "" for none).
_FACTS = """
local function fmt(x) return string.format('%.17g', x) end
local function facts(now, admitted, rpm_expiry, tpm_expiry, conc_hit)
  local n = redis.call('ZCARD', KEYS[1])
  local last_req = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2] or ''
  local last_tok = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2] or ''
  local used = redis.call('HGET', KEYS[5], 'used') or '0'
  return {admitted, fmt(now), tostring(n), last_req, used, last_tok, rpm_expiry, tpm_expiry, conc_hit}
end
local function clock()
  if ARGV[1] ~= '' then return tonumber(ARGV[1]) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function prune(now)
  local latest = tonumber(redis.call('HGET', KEYS[5], 'latest') or '')
  if latest and latest > now then now = latest end
  redis.call('HSET', KEYS[5], 'latest', fmt(now))
  local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', fmt(now - 60 + 1), 'WITHSCORES')
  for i = 1, #old, 2 do
    if tonumber(old[i + 1]) + 60 <= now then redis.call('ZREM', KEYS[1], old[i]) end
  end
  old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', fmt(now - 60 + 1), 'WITHSCORES')
  for i = 1, #old, 2 do
    if tonumber(old[i + 1]) + 60 <= now then
      local tokens = tonumber(redis.call('HGET', KEYS[3], old[i]) or '0')
      redis.call('HINCRBY', KEYS[5], 'used', string.format('%d', 0 - tokens))
      redis.call('HDEL', KEYS[3], old[i])
      redis.call('ZREM', KEYS[2], old[i])
    end
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', fmt(now))
  return now
end
local function keep(seconds)
  for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], math.ceil(seconds * 1000)) end
end
"""

# ARGV: now ('' = Redis time), rpm, tpm, max_concurrent (0 = unlimited), est_tokens, ticket id
# ('' = only check), lease seconds.
_ADMIT = _FACTS + """
local now = prune(clock())
local rpm, tpm, maxc = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local est, id, lease = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local rpm_expiry, tpm_expiry, conc_hit = '', '', '0'
local n = redis.call('ZCARD', KEYS[1])
if rpm > 0 and n >= rpm then
  rpm_expiry = fmt(tonumber(redis.call('ZRANGE', KEYS[1], n - rpm, n - rpm, 'WITHSCORES')[2]) + 60)
end
local used = tonumber(redis.call('HGET', KEYS[5], 'used') or '0')
if tpm > 0 and used + est > tpm then
  if est > tpm then
    tpm_expiry = 'inf'
  else
    local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
    for i = 1, #entries, 2 do
      used = used - tonumber(redis.call('HGET', KEYS[3], entries[i]) or '0')
      if used + est <= tpm then tpm_expiry = fmt(tonumber(entries[i + 1]) + 60); break end
    end
    if tpm_expiry == '' then tpm_expiry = 'inf' end
  end
end
if maxc > 0 and redis.call('ZCARD', KEYS[4]) >= maxc then conc_hit = '1' end
if rpm_expiry ~= '' or tpm_expiry ~= '' or conc_hit == '1' or id == '' then
  return facts(now, '0', rpm_expiry, tpm_expiry, conc_hit)
end
if rpm > 0 then redis.call('ZADD', KEYS[1], fmt(now), id) end
if tpm > 0 then
  redis.call('ZADD', KEYS[2], fmt(now), id)
  redis.call('HSET', KEYS[3], id, est)
  redis.call('HINCRBY', KEYS[5], 'used', est)
end
redis.call('ZADD', KEYS[4], fmt(now + lease), id)
keep(WINDOW_SECONDS + lease)
return facts(now, '1', '', '', '0')
"""

# ARGV: now, ticket id, actual tokens (-1: leave the tokens as they are), lease seconds.
_CLOSE = _FACTS + """
local now = ARGV[1] ~= '' and tonumber(ARGV[1]) or nil
redis.call('ZREM', KEYS[4], ARGV[2])
local tokens = tonumber(ARGV[3])
local held = redis.call('HGET', KEYS[3], ARGV[2])
if held and tokens >= 0 then
  redis.call('HINCRBY', KEYS[5], 'used', string.format('%d', tokens - tonumber(held)))
  redis.call('HSET', KEYS[3], ARGV[2], tokens)
end
if now then prune(now) end
return 1
"""

# ARGV: now.
_STATUS = _FACTS + """
return facts(prune(clock()), '0', '', '', '0')
"""


def _keys(subject: str) -> list[str]:
    base = "ah:lim:{" + subject + "}:"
    return [base + "req", base + "tok", base + "tokv", base + "fly", base + "meta"]


def _time(clock: Callable[[], float] | None) -> str:
    return "" if clock is None else repr(float(clock()))


class RedisLimitStore:
    """The ``LimitStore`` shared by every instance of a cluster (see the module docstring)."""

    def __init__(self, redis: Redis, *, namespace: str = "keys", clock: Callable[[], float] | None = None,
                 lease_seconds: float = 3600.0) -> None:
        self.redis = redis
        self.namespace = namespace  # consumer keys and clients have limits of their own
        self.clock = clock
        self.lease_seconds = lease_seconds
        window = repr(WINDOW)
        self._admit = redis.register_script(_ADMIT.replace("WINDOW_SECONDS", window))
        self._close = redis.register_script(_CLOSE.replace("WINDOW_SECONDS", window))
        self._status = redis.register_script(_STATUS.replace("WINDOW_SECONDS", window))

    async def admit(self, subject: str, limits: Limits, *, est_tokens: int = 0) -> Admission:
        return await self._decide(subject, limits, est_tokens, uuid.uuid4().hex)

    async def would_admit(self, subject: str, limits: Limits, *, est_tokens: int = 0) -> bool:
        if limits.unlimited:
            return True
        return isinstance(await self._decide(subject, limits, est_tokens, ""), Admitted)

    async def finish(self, ticket: Ticket, actual_tokens: int) -> None:
        if actual_tokens < 0:
            raise ValueError("actual_tokens must not be negative")
        await self._end(ticket, actual_tokens)

    async def release(self, ticket: Ticket) -> None:
        await self._end(ticket, 0, prune=False)

    async def status(self, subject: str, limits: Limits) -> RateLimitStatus:
        facts = await self._run(self._status, subject, [_time(self.clock)])
        return _status(facts, limits)

    async def sweep(self) -> int:
        return 0  # Redis expires idle subjects by itself

    async def _decide(self, subject: str, limits: Limits, est_tokens: int, ticket_id: str) -> Admission:
        if est_tokens < 0:
            raise ValueError("est_tokens must not be negative")
        if limits.unlimited:
            return Admitted(Ticket(subject, 0.0, est_tokens, None, None), RateLimitStatus())
        facts = await self._run(self._admit, subject, [
            _time(self.clock), limits.rpm or 0, limits.tpm or 0, limits.max_concurrent or 0, est_tokens, ticket_id,
            repr(self.lease_seconds)])
        now = float(facts[1])
        status = _status(facts, limits)
        if facts[0] == "1":
            ticket = Ticket(subject, now, est_tokens, None, None)
            ticket.token = ticket_id
            return Admitted(ticket, status)
        waits: list[tuple[float, Limit]] = []
        if facts[6]:
            waits.append((_until(float(facts[6]), now), Limit.REQUESTS))
        if facts[7]:
            waits.append((math.inf if facts[7] == "inf" else _until(float(facts[7]), now), Limit.TOKENS))
        if facts[8] == "1":
            waits.append((CONCURRENCY_RETRY_AFTER, Limit.CONCURRENCY))
        if not waits:  # only checked (would_admit), and admissible
            return Admitted(Ticket(subject, now, est_tokens, None, None), status)
        wait, limit = max(waits, key=lambda w: w[0])
        return Refused(limit, None if wait == math.inf else wait, status)

    async def _end(self, ticket: Ticket, tokens: int, *, prune: bool = True) -> None:
        if ticket.closed:
            return
        ticket._closed = True
        if ticket.token is None:
            return  # admitted without limits: nothing was recorded
        now = _time(self.clock) if prune else ""
        await self._run(self._close, ticket.subject, [now, ticket.token, tokens, repr(self.lease_seconds)])

    async def _run(self, script: Any, subject: str, args: list[object]) -> list[str]:
        try:
            result = await script(keys=_keys(f"{self.namespace}:{subject}"), args=args)
        except UNREACHABLE as exc:
            raise LiveStateUnavailable("rate limits", exc) from exc
        return [v.decode() if isinstance(v, bytes) else str(v) for v in result] if isinstance(result, list) else []


def _status(facts: list[str], limits: Limits) -> RateLimitStatus:
    now, count, last_req, used, last_tok = float(facts[1]), int(facts[2]), facts[3], int(facts[4]), facts[5]
    requests: tuple[int | None, int | None, float | None] = (None, None, None)
    tokens: tuple[int | None, int | None, float | None] = (None, None, None)
    if limits.rpm is not None:
        reset = _until(float(last_req) + WINDOW, now) if last_req else 0.0
        requests = (limits.rpm, max(0, limits.rpm - count), reset)
    if limits.tpm is not None:
        reset = _until(float(last_tok) + WINDOW, now) if last_tok else 0.0
        tokens = (limits.tpm, max(0, limits.tpm - used), reset)
    return RateLimitStatus(*requests, *tokens)
