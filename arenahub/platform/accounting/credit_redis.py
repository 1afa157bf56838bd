"""Credit in Redis: the ``CreditStore`` of a platform that runs as several instances.

Every decision is one Lua script, so a key's last dollar is held by one request in the whole cluster,
whichever instance admitted it; the rules are the ``Ledger``'s (billing/ledger.py), to the micro-USD.
The ledger of record stays in the database: each script's outcome becomes an ``Entry`` here, which the
writer persists like the in-process store's.

Keys: ``ah:credit:{key}`` (hash: balance, held), ``ah:res:{request}`` (an open reservation: key, amount,
unlimited, instance), ``ah:closed:{request}`` (how it was closed, for a retry: a day),
``ah:earn:{client}`` (hash: requests, prompt, completion, images, value), ``ah:money`` (the ids of the
top-ups and adjustments applied) and ``ah:credit:ready`` (set once the balances are loaded).

If Redis loses its data (a restart without persistence), ``ah:credit:ready`` is gone with it: nothing
is guessed. A reservation is refused with a 503 (``LiveStateUnavailable``) until an instance has rebuilt
the balances from the database (``restore``, cluster/rebuild.py). A settle or release that finds Redis
not ready is decided on the reservation alone (the charge capped at what it held) and goes to the
ledger of record at once; its effect on the live balance waits in ``pending`` and is applied when Redis
is ready again, if and only if the rebuilt state still holds that reservation (else the rebuild read
the entry already).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from arenahub.ids import new_id
from arenahub.platform.accounting.credit_store import Book
from arenahub.platform.billing import (
    Account,
    ClientEarnings,
    DuplicateRequest,
    Entry,
    InsufficientQuota,
    Kind,
    Reservation,
    ReservationClosed,
    Usage,
)
from arenahub.platform.cluster.errors import UNREACHABLE, LiveStateUnavailable

log = logging.getLogger("arenahub.platform.credit")

READY = "ah:credit:ready"
MONEY = "ah:money"
OPEN = "ah:res:open"  # the open reservations by the Redis time they were made (sorted set)
CLOSED_SECONDS = 86_400
RESERVATION_SECONDS = 7 * 86_400  # an instance that died holding one: released by the rebuild's cleanup


def _credit(key_id: str) -> str:
    return f"ah:credit:{{{key_id}}}"


def _res(request_id: str) -> str:
    return f"ah:res:{{{request_id}}}"


def _closed(request_id: str) -> str:
    return f"ah:closed:{{{request_id}}}"


def _earn(client_id: str) -> str:
    return f"ah:earn:{{{client_id}}}"


_I = "local function i(x) return string.format('%d', x) end\n"

# KEYS: ready, credit, res, closed, open. ARGV: amount, unlimited, minimum ('' none), instance, key id,
# request id.
_RESERVE = _I + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notready'} end
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[4]) == 1 then return {'duplicate'} end
local balance = tonumber(redis.call('HGET', KEYS[2], 'balance') or '0')
local held = tonumber(redis.call('HGET', KEYS[2], 'held') or '0')
local amount, unlimited, minimum = tonumber(ARGV[1]), ARGV[2] == '1', tonumber(ARGV[3])
local available = balance - held
if not unlimited and minimum and minimum <= available and available < amount then
  amount = math.max(minimum, available)
end
if not unlimited and available < amount then
  if minimum then amount = minimum end
  return {'insufficient', i(amount), i(balance), i(held)}
end
redis.call('HINCRBY', KEYS[2], 'held', i(amount))
redis.call('HSET', KEYS[3], 'key', ARGV[5], 'amount', i(amount), 'unlimited', ARGV[2], 'instance', ARGV[4])
redis.call('EXPIRE', KEYS[3], RESERVATION_SECONDS)
redis.call('ZADD', KEYS[5], redis.call('TIME')[1], ARGV[6])
return {'ok', i(amount)}
"""

# KEYS: ready, credit, res, closed, earn, open. ARGV: kind ('settle' or 'release'), actual, prompt, completion,
# images, pending ('1': decided without Redis, charge given in ARGV[2]: apply only if still open).
_CLOSE = _I + """
local closed = redis.call('GET', KEYS[4])
if closed then return {'closed', closed} end
if redis.call('EXISTS', KEYS[3]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {'notready'} end
  return {'unknown'}
end
local amount = tonumber(redis.call('HGET', KEYS[3], 'amount'))
local unlimited = redis.call('HGET', KEYS[3], 'unlimited') == '1'
local charge = 0
if ARGV[1] == 'settle' then
  charge = tonumber(ARGV[2])
  if ARGV[6] ~= '1' and not unlimited then
    local balance = tonumber(redis.call('HGET', KEYS[2], 'balance') or '0')
    local held = tonumber(redis.call('HGET', KEYS[2], 'held') or '0')
    charge = math.min(charge, amount + math.max(0, balance - held))
  end
  redis.call('HINCRBY', KEYS[2], 'balance', i(0 - charge))
  redis.call('HINCRBY', KEYS[5], 'requests', 1)
  redis.call('HINCRBY', KEYS[5], 'prompt', ARGV[3])
  redis.call('HINCRBY', KEYS[5], 'completion', ARGV[4])
  redis.call('HINCRBY', KEYS[5], 'images', ARGV[5])
  redis.call('HINCRBY', KEYS[5], 'value', i(charge))
end
redis.call('HINCRBY', KEYS[2], 'held', i(0 - amount))
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[6], ARGV[7])
redis.call('SET', KEYS[4], ARGV[1] .. ':' .. i(charge) .. ':' .. i(amount), 'EX', CLOSED_SECONDS)
return {'ok', i(charge), i(amount)}
"""

# KEYS: ready, money, then the credit key of each entry. ARGV: (entry id, amount) pairs.
_MONEY = _I + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local applied = 0
for n = 1, #ARGV / 2 do
  if redis.call('SADD', KEYS[2], ARGV[2 * n - 1]) == 1 then
    redis.call('HINCRBY', KEYS[2 + n], 'balance', ARGV[2 * n])
    applied = applied + 1
  end
end
return applied
"""


def _text(values: Any) -> list[str]:
    if not isinstance(values, list):
        return [str(values)]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


class RedisCreditStore:
    """The ``CreditStore`` shared by every instance of a cluster (see the module docstring)."""

    def __init__(self, redis: Redis, *, instance: str = "") -> None:
        self.redis = redis
        self.instance = instance
        self._new: list[Entry] = []
        # Settles and releases decided while Redis was not ready, to apply to it once it is.
        self.pending: list[Entry] = []
        self._reserve = redis.register_script(_RESERVE.replace("RESERVATION_SECONDS", str(RESERVATION_SECONDS)))
        self._close = redis.register_script(_CLOSE.replace("CLOSED_SECONDS", str(CLOSED_SECONDS)))
        self._money = redis.register_script(_MONEY)

    async def reserve(self, key_id: str, request_id: str, amount: int, *, unlimited: bool,
                      minimum: int | None = None) -> Reservation:
        out = _text(await self._run(self._reserve, [READY, _credit(key_id), _res(request_id), _closed(request_id),
                                                    OPEN],
                                    [amount, int(unlimited), "" if minimum is None else minimum, self.instance,
                                     key_id, request_id]))
        if out[0] == "notready":
            raise LiveStateUnavailable("credit")
        if out[0] == "duplicate":
            raise DuplicateRequest.for_request(request_id)
        if out[0] == "insufficient":
            raise InsufficientQuota.for_hold(int(out[1]), balance=int(out[2]), held=int(out[3]))
        held_amount = int(out[1])
        entry = self._entry(key_id, Kind.RESERVE, hold=held_amount, request_id=request_id)
        return Reservation(key_id, request_id, held_amount, entry.entry_id)

    async def settle(self, reservation: Reservation, actual: int, *, client_id: str, model: str,
                     usage: Usage) -> Entry:
        fields = {"client_id": client_id, "model": model, "prompt_tokens": usage.prompt_tokens,
                  "completion_tokens": usage.completion_tokens, "images": usage.images}
        out = await self._close_script(reservation, Kind.SETTLE, actual, usage, client_id)
        if out[0] == "notready":
            # Decided on the reservation alone: what it held is what may be charged (the answer was cut there).
            charge = min(actual, reservation.amount)
            entry = self._entry(reservation.key_id, Kind.SETTLE, amount=-charge, hold=-reservation.amount,
                                request_id=reservation.request_id, uncharged=actual - charge, **fields)
            self.pending.append(entry)
            return entry
        if out[0] == "closed":
            return self._closed_entry(reservation, out[1], Kind.SETTLE)
        if out[0] == "unknown":
            log.warning("settling request %s: its reservation is not in the shared state (rebuilt after it was "
                        "settled elsewhere?); the book keeps this settle", reservation.request_id)
            charge, held = min(actual, reservation.amount), reservation.amount
        else:
            charge, held = int(out[1]), int(out[2])
        return self._entry(reservation.key_id, Kind.SETTLE, amount=-charge, hold=-held,
                           request_id=reservation.request_id, uncharged=actual - charge, **fields)

    async def release(self, reservation: Reservation) -> Entry:
        out = await self._close_script(reservation, Kind.RELEASE, 0, Usage())
        if out[0] == "closed":
            return self._closed_entry(reservation, out[1], Kind.RELEASE)
        entry = self._entry(reservation.key_id, Kind.RELEASE, hold=-reservation.amount,
                            request_id=reservation.request_id)
        if out[0] == "notready":
            self.pending.append(entry)
        return entry

    async def apply_pending(self) -> int:
        """Apply to Redis the settles and releases decided while it was not ready; how many were applied
        (those whose reservation the rebuilt state no longer holds are done already)."""
        applied = 0
        while self.pending:
            entry = self.pending[0]
            assert entry.request_id is not None
            usage = Usage(entry.prompt_tokens, entry.completion_tokens, entry.images)
            reservation = Reservation(entry.key_id, entry.request_id, -entry.hold, "")
            out = await self._close_script(reservation, entry.kind, entry.charge, usage, entry.client_id or "",
                                           pending=True)
            if out[0] == "notready":
                return applied
            self.pending.pop(0)
            applied += out[0] == "ok"
        return applied

    async def release_orphans(self, alive: set[str], *, dead_after: float = 15.0, at_most: float = 4200.0) -> int:
        """Give back the reservations nobody will close: those of an instance that is gone (older than
        ``dead_after`` seconds, its card stale), and any older than ``at_most`` (no answer may take that
        long: the total timeout is at most an hour). Each gets a release entry for the book (and its
        reserve entry, which the dead instance may not have written; the book keeps one of each per
        request). Returns how many were released here (another instance may release some first)."""
        try:
            now = (await self.redis.time())[0]
            old: list[Any] = await self.redis.zrangebyscore(OPEN, "-inf", now - dead_after, start=0, num=1000,
                                                            withscores=True)
        except UNREACHABLE as exc:
            raise LiveStateUnavailable("credit", exc) from exc
        released = 0
        for raw_id, made_at in old:
            request_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            try:
                fields = await self.redis.hmget(_res(request_id), ["key", "amount", "instance"])
            except UNREACHABLE as exc:
                raise LiveStateUnavailable("credit", exc) from exc
            key_id, amount, instance = (v.decode() if isinstance(v, bytes) else None for v in fields)
            if key_id is None or amount is None:
                await self.redis.zrem(OPEN, request_id)  # closed meanwhile, or lost with Redis's data
                continue
            if instance in alive and now - float(made_at) < at_most:
                continue  # its instance is there to close it
            reservation = Reservation(key_id, request_id, int(amount), "")
            out = await self._close_script(reservation, Kind.RELEASE, 0, Usage())
            if out[0] != "ok":
                continue  # closed by its own instance, or released by another, a moment ago
            why = (f"released by the cluster: instance {instance or 'unknown'} stopped before the request ended"
                   if instance not in alive else "released by the cluster: open for longer than any answer may take")
            self._entry(key_id, Kind.RESERVE, hold=int(amount), request_id=request_id, note=why)
            self._entry(key_id, Kind.RELEASE, hold=-int(amount), request_id=request_id, note=why)
            released += 1
        return released

    async def add_money(self, entries: Sequence[Entry]) -> int:
        money = [e for e in entries if e.kind in (Kind.TOPUP, Kind.ADJUSTMENT)]
        if not money:
            return 0
        args: list[object] = []
        for e in money:
            args += [e.entry_id, e.amount]
        applied = int(await self._run(self._money, [READY, MONEY, *(_credit(e.key_id) for e in money)], args))
        if applied < 0:
            raise LiveStateUnavailable("credit")
        return applied

    async def account(self, key_id: str, *, unlimited: bool) -> Account:
        try:
            balance, held = await self.redis.hmget(_credit(key_id), ["balance", "held"])
        except UNREACHABLE as exc:
            raise LiveStateUnavailable("credit", exc) from exc
        return Account(key_id, unlimited, int(balance or 0), int(held or 0))

    async def accounts(self, keys: Sequence[tuple[str, bool]]) -> list[Account]:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key_id, _ in keys:
                    pipe.hmget(_credit(key_id), ["balance", "held"])
                rows = await pipe.execute()
        except UNREACHABLE as exc:
            raise LiveStateUnavailable("credit", exc) from exc
        return [Account(key_id, unlimited, int(row[0] or 0), int(row[1] or 0))
                for (key_id, unlimited), row in zip(keys, rows, strict=True)]

    async def earnings(self, client_id: str) -> ClientEarnings:
        try:
            values = await self.redis.hmget(_earn(client_id),
                                            ["requests", "prompt", "completion", "images", "value"])
        except UNREACHABLE as exc:
            raise LiveStateUnavailable("earnings", exc) from exc
        return ClientEarnings(client_id, *(int(v or 0) for v in values))

    async def ready(self) -> bool:
        try:
            return bool(await self.redis.exists(READY))
        except UNREACHABLE as exc:
            raise LiveStateUnavailable("credit", exc) from exc

    async def restore(self, book: Book) -> None:
        """Load the balances from the ledger of record, then mark Redis ready (one transaction)."""
        try:
            now = (await self.redis.time())[0]
            async with self.redis.pipeline(transaction=True) as pipe:
                for key_id, (balance, held) in book.balances.items():
                    pipe.hset(_credit(key_id), mapping={"balance": balance, "held": held})
                for c in book.earnings:
                    pipe.hset(_earn(c.client_id), mapping={"requests": c.requests, "prompt": c.prompt_tokens,
                                                           "completion": c.completion_tokens, "images": c.images,
                                                           "value": c.value})
                for r in book.open_reservations:
                    unlimited = int(r.key_id in book.unlimited_keys)
                    pipe.hset(_res(r.request_id), mapping={"key": r.key_id, "amount": r.amount,
                                                           "unlimited": unlimited, "instance": ""})
                    pipe.expire(_res(r.request_id), RESERVATION_SECONDS)
                pipe.delete(OPEN)
                if book.open_reservations:  # their age starts now: they are released if nobody closes them
                    pipe.zadd(OPEN, {r.request_id: now for r in book.open_reservations})
                pipe.delete(MONEY)
                for start in range(0, len(book.money_ids), 1000):
                    pipe.sadd(MONEY, *book.money_ids[start:start + 1000])
                pipe.set(READY, uuid.uuid4().hex)
                await pipe.execute()
        except UNREACHABLE as exc:
            raise LiveStateUnavailable("credit", exc) from exc

    def drain_new_entries(self) -> list[Entry]:
        new, self._new = self._new, []
        return new

    # -- helpers ------------------------------------------------------------------------------

    async def _close_script(self, reservation: Reservation, kind: Kind, actual: int, usage: Usage,
                            client_id: str = "", pending: bool = False) -> list[str]:
        keys = [READY, _credit(reservation.key_id), _res(reservation.request_id), _closed(reservation.request_id),
                _earn(client_id), OPEN]  # a settle credits its client's earnings
        return _text(await self._run(self._close, keys, [kind.value, actual, usage.prompt_tokens,
                                                         usage.completion_tokens, usage.images, int(pending),
                                                         reservation.request_id]))

    def _closed_entry(self, reservation: Reservation, closed: str, kind: Kind) -> Entry:
        how, charge, held = closed.split(":")
        if how != kind.value:
            raise ReservationClosed.for_request(reservation.request_id, how, kind)
        return Entry("", reservation.key_id, kind, -int(charge), -int(held), dt.datetime.now(dt.UTC),
                     request_id=reservation.request_id)

    def _entry(self, key_id: str, kind: Kind, *, amount: int = 0, hold: int = 0, **fields: Any) -> Entry:
        entry = Entry(new_id(), key_id, kind, amount, hold, dt.datetime.now(dt.UTC), **fields)
        self._new.append(entry)
        return entry

    async def _run(self, script: Any, keys: list[str], args: list[object]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except UNREACHABLE as exc:
            raise LiveStateUnavailable("credit", exc) from exc
