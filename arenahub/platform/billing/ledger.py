"""The account book of consumer keys, and the earnings of the clients that serve them. Pure: in memory.

Every change is an append-only ``Entry``; balances are derived from them. Each entry carries two
signed figures, so that both totals are plain sums:

- ``amount``: its change to the key's balance (top-up +, adjustment +/-, settle -charge, reserve
  and release 0);
- ``hold``: its change to the credit held for requests in progress (reserve +R, settle and
  release -R, others 0).

``balance = sum(amount)``, ``held = sum(hold)``, ``available = balance - held``.

Rules:

- Admission: ``reserve`` refuses with ``InsufficientQuota`` (402) when ``available`` is below the
  reservation. Unlimited keys are always admitted; their balance goes negative and is their spend.
- Settle: the reservation is replaced by the actual charge. The charge may exceed the
  reservation, but is capped at the reservation plus what is available (never less than the
  reservation): ``charge = min(actual, R + max(0, available))``. So a limited key's balance never
  goes below zero (unless an admin's negative adjustment takes it there; then each request is
  charged at most its own reservation). What the cap leaves out is recorded on the settle entry as
  ``uncharged``, with the full token counts.
- Idempotency: a request id is reserved once (``DuplicateRequest`` otherwise). Settling or
  releasing an already settled or released request is a no-op that returns the entry that closed
  it, so retries never charge twice; settling a released request, or releasing a settled one,
  raises ``ReservationClosed`` instead of being silently ignored.
- Client earnings: every settle credits the serving client with the tokens and the value
  charged to the key (what the consumer actually paid).

Thread-safe: every operation holds one lock, so concurrent admissions never overspend.
New entries wait in ``drain_new_entries()`` for a writer to persist. A ledger is rebuilt either by
replaying entries (``load``) or, in a long-running platform, from per-key totals (``restore``); then
``keep_entries=False`` keeps memory flat: the entries themselves live in the database, and only the
last ``closed_memory`` closed request ids are remembered for idempotency (the persisted book
enforces one entry of each kind per request id as well). Top-ups and adjustments written by
another process (the CLI) are merged with ``load``: an entry id already applied is skipped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum

from arenahub.ids import new_id
from arenahub.platform.billing.pricing import InvalidAmount, check_micros, format_usd
from arenahub.protocol.errors import ApiError


class Kind(StrEnum):
    TOPUP = "topup"
    RESERVE = "reserve"
    SETTLE = "settle"
    RELEASE = "release"
    ADJUSTMENT = "adjustment"


class InsufficientQuota(ApiError):
    """The key's available credit does not cover the request's reservation."""

    status = 402
    type = "insufficient_quota"
    code = "insufficient_quota"

    @classmethod
    def for_hold(cls, need: int, *, balance: int, held: int) -> InsufficientQuota:
        """The refusal of a hold of ``need`` on a key with ``balance``, ``held`` of it already (micro-USD)."""
        return cls(f"Insufficient credit: this request needs up to {format_usd(need)} USD but the key's "
                   f"available balance is {format_usd(balance - held)} USD (balance {format_usd(balance)} USD, "
                   f"{format_usd(held)} USD held by requests in progress). Top up the key to continue.")


class LedgerError(ApiError):
    """A misuse of the ledger by the platform itself (a bug, not the consumer's fault)."""

    code = "ledger_error"


class DuplicateRequest(LedgerError):
    code = "duplicate_request"

    @classmethod
    def for_request(cls, request_id: str) -> DuplicateRequest:
        return cls(f"request {request_id} already has a reservation")


class UnknownReservation(LedgerError):
    code = "unknown_reservation"


class ReservationClosed(LedgerError):
    code = "reservation_closed"

    @classmethod
    def for_request(cls, request_id: str, closed: str, closing: str) -> ReservationClosed:
        """``closed``, ``closing``: "settle" or "release" (a ``Kind``)."""
        return cls(f"request {request_id} was already {closed}d; it cannot be {closing}d")


class LedgerMismatch(LedgerError):
    """A running total differs from the sum of the entries."""

    code = "ledger_mismatch"


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Entry:
    entry_id: str
    key_id: str
    kind: Kind
    amount: int  # signed change to the balance, micro-USD
    hold: int  # signed change to the credit held, micro-USD
    created_at: datetime
    request_id: str | None = None
    # Settle only:
    client_id: str | None = None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    uncharged: int = 0  # what the settle cap left out, micro-USD
    note: str | None = None

    @property
    def charge(self) -> int:
        """What a settle charged the key (0 for other kinds)."""
        return -self.amount if self.kind is Kind.SETTLE else 0


@dataclass(frozen=True, slots=True)
class Reservation:
    key_id: str
    request_id: str
    amount: int
    entry_id: str


@dataclass(frozen=True, slots=True)
class Account:
    key_id: str
    unlimited: bool
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held

    def public(self) -> dict[str, object]:
        """The credit as the admin API and CLI show it: USD strings and integer micro-USD."""
        return {"unlimited": self.unlimited, "balance_usd": format_usd(self.balance),
                "held_usd": format_usd(self.held), "available_usd": format_usd(self.available),
                "balance_micros": self.balance, "held_micros": self.held}


@dataclass(frozen=True, slots=True)
class ClientEarnings:
    client_id: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    value: int = 0  # micro-USD charged to consumers for this client's answers


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return new_id()


_MONEY = (Kind.TOPUP, Kind.ADJUSTMENT)


class Ledger:
    def __init__(self, *, clock: Callable[[], datetime] = _utc_now,
                 new_id: Callable[[], str] = _new_id, keep_entries: bool = True,
                 closed_memory: int = 100_000) -> None:
        self._clock = clock
        self._new_id = new_id
        self._keep_entries = keep_entries
        self._closed_memory = closed_memory
        self._lock = threading.Lock()
        self._entries: list[Entry] = []
        self._new: list[Entry] = []
        self._accounts: dict[str, Account] = {}
        self._open: dict[str, Reservation] = {}
        self._closed: OrderedDict[str, Entry] = OrderedDict()
        self._earnings: dict[str, ClientEarnings] = {}
        self._money_ids: set[str] = set()  # top-ups and adjustments applied, so a re-read is skipped

    # --- accounts ---------------------------------------------------------------------------

    def open_account(self, key_id: str, *, unlimited: bool = False) -> Account:
        """Create the key's account, or change whether it is unlimited. Keys never opened have 0 credit."""
        with self._lock:
            self._accounts[key_id] = replace(self._account(key_id), unlimited=unlimited)
            return self._accounts[key_id]

    def account(self, key_id: str) -> Account:
        with self._lock:
            return self._account(key_id)

    def _account(self, key_id: str) -> Account:
        return self._accounts.get(key_id) or Account(key_id, unlimited=False, balance=0, held=0)

    def earnings(self, client_id: str) -> ClientEarnings:
        with self._lock:
            return self._earnings.get(client_id) or ClientEarnings(client_id)

    def open_reservations(self, key_id: str | None = None) -> list[Reservation]:
        with self._lock:
            return [r for r in self._open.values() if key_id is None or r.key_id == key_id]

    def entries(self, key_id: str | None = None) -> list[Entry]:
        with self._lock:
            return [e for e in self._entries if key_id is None or e.key_id == key_id]

    # --- operations -------------------------------------------------------------------------

    def topup(self, key_id: str, amount: int, *, note: str | None = None) -> Entry:
        check_micros(amount, "top-up")
        if amount == 0:
            raise InvalidAmount("a top-up must be more than 0 USD", param="amount")
        with self._lock:
            return self._record(key_id, Kind.TOPUP, amount=amount, note=note)

    def adjust(self, key_id: str, amount: int, *, note: str | None = None) -> Entry:
        """An admin's correction, positive or negative. It may take the balance below zero."""
        check_micros(amount, "adjustment", signed=True)
        with self._lock:
            return self._record(key_id, Kind.ADJUSTMENT, amount=amount, note=note)

    def reserve(self, key_id: str, request_id: str, amount: int, *, unlimited: bool | None = None,
                minimum: int | None = None) -> Reservation:
        """Hold ``amount`` for the request, or raise InsufficientQuota.

        ``unlimited``, when given, is the key's current setting (the key cache is its source of truth).
        ``minimum``: a limited key with less than ``amount`` available is held what it has, if that is
        at least ``minimum`` (the request's answer then stops where the hold runs out).
        """
        check_micros(amount, "reservation")
        with self._lock:
            if request_id in self._open or request_id in self._closed:
                raise DuplicateRequest.for_request(request_id)
            account = self._account(key_id)
            if unlimited is not None and unlimited != account.unlimited:
                account = self._accounts[key_id] = replace(account, unlimited=unlimited)
            if not account.unlimited and minimum is not None and minimum <= account.available < amount:
                amount = max(minimum, account.available)
            if not account.unlimited and account.available < amount:
                if minimum is not None:
                    amount = minimum
                raise InsufficientQuota.for_hold(amount, balance=account.balance, held=account.held)
            self._record(key_id, Kind.RESERVE, hold=amount, request_id=request_id)
            return self._open[request_id]

    def settle(self, reservation: Reservation, actual: int, *, client_id: str, model: str,
               usage: Usage) -> Entry:
        """Replace the reservation by the actual charge (capped, see the module docstring); credit the client."""
        check_micros(actual, "actual charge")
        with self._lock:
            r = self._take_open(reservation, Kind.SETTLE)
            if isinstance(r, Entry):
                return r
            account = self._account(r.key_id)
            charge = actual if account.unlimited else min(actual, r.amount + max(0, account.available))
            return self._record(r.key_id, Kind.SETTLE, amount=-charge, hold=-r.amount, request_id=r.request_id,
                                client_id=client_id, model=model, prompt_tokens=usage.prompt_tokens,
                                completion_tokens=usage.completion_tokens, images=usage.images,
                                uncharged=actual - charge)

    def release(self, reservation: Reservation) -> Entry:
        """Give the reservation back uncharged (the request failed before anything was delivered)."""
        with self._lock:
            r = self._take_open(reservation, Kind.RELEASE)
            if isinstance(r, Entry):
                return r
            return self._record(r.key_id, Kind.RELEASE, hold=-r.amount, request_id=r.request_id)

    def _take_open(self, reservation: Reservation, closing: Kind) -> Reservation | Entry:
        """The open reservation, or the entry that already closed it the same way (a retry)."""
        rid = reservation.request_id
        if rid in self._open:
            return self._open[rid]
        closed = self._closed.get(rid)
        if closed is None:
            raise UnknownReservation(f"request {rid} has no reservation")
        if closed.kind is not closing:
            raise ReservationClosed.for_request(rid, closed.kind, closing)
        return closed

    # --- the book ---------------------------------------------------------------------------

    def drain_new_entries(self) -> list[Entry]:
        """The entries made since the last call, oldest first, for a writer to persist."""
        with self._lock:
            new, self._new = self._new, []
            return new

    def load(self, entries: Iterable[Entry]) -> int:
        """Replay persisted entries (oldest first); they are not handed out as new.

        A top-up or adjustment already applied (same entry id) is skipped, so another process's
        money entries can be merged by re-reading a recent window. Returns how many were applied.
        """
        applied = 0
        with self._lock:
            for e in entries:
                if e.kind in _MONEY and e.entry_id in self._money_ids:
                    continue
                self._apply(e)
                applied += 1
        return applied

    def restore(self, balances: Mapping[str, tuple[int, int]], earnings: Iterable[ClientEarnings] = (),
                money_ids: Iterable[str] = ()) -> None:
        """Start from persisted totals instead of a replay: ``balances`` maps key id -> (balance, held).

        ``money_ids`` are the top-ups and adjustments those totals include (so ``load`` skips them).
        """
        with self._lock:
            for key_id, (balance, held) in balances.items():
                self._accounts[key_id] = replace(self._account(key_id), balance=balance, held=held)
            for c in earnings:
                self._earnings[c.client_id] = c
            self._money_ids.update(money_ids)

    def reopen(self, reservations: Iterable[Reservation]) -> None:
        """Know the reservations still open in the persisted book (their holds are in the restored
        totals), so that they can be settled or released."""
        with self._lock:
            for r in reservations:
                if r.request_id not in self._closed:
                    self._open[r.request_id] = r

    def recompute(self, key_id: str) -> Account:
        """The key's account summed from its entries alone, to check the running totals against."""
        with self._lock:
            mine = [e for e in self._entries if e.key_id == key_id]
            return replace(self._account(key_id), balance=sum(e.amount for e in mine),
                           held=sum(e.hold for e in mine))

    def verify(self) -> None:
        """Raise LedgerMismatch if any running total differs from the sum of its entries."""
        for key_id in list(self._accounts):
            running, summed = self.account(key_id), self.recompute(key_id)
            if running != summed:
                raise LedgerMismatch(f"key {key_id}: running {running} but entries sum to {summed}")

    def _record(self, key_id: str, kind: Kind, *, amount: int = 0, hold: int = 0, **fields: object) -> Entry:
        entry = Entry(self._new_id(), key_id, kind, amount, hold, self._clock(), **fields)  # type: ignore[arg-type]
        self._apply(entry)
        self._new.append(entry)
        return entry

    def _apply(self, e: Entry) -> None:
        account = self._account(e.key_id)
        self._accounts[e.key_id] = replace(account, balance=account.balance + e.amount, held=account.held + e.hold)
        if self._keep_entries:
            self._entries.append(e)
        if e.request_id is None:
            if e.kind in _MONEY:
                self._money_ids.add(e.entry_id)
            return
        if e.kind is Kind.RESERVE:
            self._open[e.request_id] = Reservation(e.key_id, e.request_id, e.hold, e.entry_id)
        elif e.kind in (Kind.SETTLE, Kind.RELEASE):
            self._open.pop(e.request_id, None)
            self._closed[e.request_id] = e
            if len(self._closed) > self._closed_memory:
                self._closed.popitem(last=False)
        if e.kind is Kind.SETTLE and e.client_id is not None:
            c = self._earnings.get(e.client_id) or ClientEarnings(e.client_id)
            self._earnings[e.client_id] = replace(
                c, requests=c.requests + 1, prompt_tokens=c.prompt_tokens + e.prompt_tokens,
                completion_tokens=c.completion_tokens + e.completion_tokens, images=c.images + e.images,
                value=c.value + e.charge)
