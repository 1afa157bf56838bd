"""Where the live credit of consumer keys is kept: the ``CreditStore`` interface, and its in-process store.

The ledger of record is the database (``ledger_entries``): every reserve, settle, release, top-up and
adjustment is an entry there, written in batches by the record writer. A credit store holds the live
balances those entries add up to, so that admission needs no database round trip, and decides
reservations and settles atomically:

- ``LocalCreditStore``: the pure ``Ledger`` (billing/ledger.py) of one platform process;
- ``RedisCreditStore`` (credit_redis.py): the same decisions in Redis, for every instance of a cluster.

Both hand the entries they make to ``drain_new_entries`` for the writer, and take the top-ups and
adjustments written by others (the CLI, another instance) with ``add_money``, once per entry id.
One contract test suite runs against both (tests/platform/live/test_credit_store_contract.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from arenahub.platform.billing import Account, ClientEarnings, Entry, Ledger, Reservation, Usage


@dataclass(frozen=True, slots=True)
class Book:
    """What the ledger of record adds up to: per-key (balance, held), client earnings, the ids of the
    top-ups and adjustments included, the reservations still open, and which keys are unlimited."""

    balances: dict[str, tuple[int, int]]
    earnings: list[ClientEarnings]
    money_ids: list[str]
    open_reservations: list[Reservation] = field(default_factory=list)
    unlimited_keys: frozenset[str] = frozenset()


class CreditStore(Protocol):
    async def reserve(self, key_id: str, request_id: str, amount: int, *, unlimited: bool,
                      minimum: int | None = None) -> Reservation:
        """Hold ``amount`` (or, for a key with less available, what it has if at least ``minimum``);
        raise InsufficientQuota (402), or LiveStateUnavailable (503) when the shared state is unreachable."""
        ...

    async def settle(self, reservation: Reservation, actual: int, *, client_id: str, model: str,
                     usage: Usage) -> Entry:
        """Replace the hold by the charge (capped as billing/ledger.py says); credit the client."""
        ...

    async def release(self, reservation: Reservation) -> Entry: ...

    async def add_money(self, entries: Sequence[Entry]) -> int:
        """Apply persisted top-ups and adjustments not applied yet (by entry id); how many were new."""
        ...

    async def account(self, key_id: str, *, unlimited: bool) -> Account: ...

    async def accounts(self, keys: Sequence[tuple[str, bool]]) -> list[Account]:
        """``account`` for each (key id, unlimited), in one round trip."""
        ...

    async def earnings(self, client_id: str) -> ClientEarnings: ...

    async def restore(self, book: Book) -> None:
        """Start from the ledger of record (at start; in Redis, after Redis lost its data)."""
        ...

    def drain_new_entries(self) -> list[Entry]: ...


class LocalCreditStore:
    """The credit of a platform that runs as one process: the pure ``Ledger``, in memory."""

    def __init__(self, ledger: Ledger | None = None) -> None:
        self.ledger = ledger if ledger is not None else Ledger(keep_entries=False)

    async def reserve(self, key_id: str, request_id: str, amount: int, *, unlimited: bool,
                      minimum: int | None = None) -> Reservation:
        return self.ledger.reserve(key_id, request_id, amount, unlimited=unlimited, minimum=minimum)

    async def settle(self, reservation: Reservation, actual: int, *, client_id: str, model: str,
                     usage: Usage) -> Entry:
        return self.ledger.settle(reservation, actual, client_id=client_id, model=model, usage=usage)

    async def release(self, reservation: Reservation) -> Entry:
        return self.ledger.release(reservation)

    async def add_money(self, entries: Sequence[Entry]) -> int:
        return self.ledger.load(entries)

    async def account(self, key_id: str, *, unlimited: bool) -> Account:
        return replace(self.ledger.account(key_id), unlimited=unlimited)

    async def accounts(self, keys: Sequence[tuple[str, bool]]) -> list[Account]:
        return [replace(self.ledger.account(key_id), unlimited=unlimited) for key_id, unlimited in keys]

    async def earnings(self, client_id: str) -> ClientEarnings:
        return self.ledger.earnings(client_id)

    async def restore(self, book: Book) -> None:
        self.ledger.restore(book.balances, book.earnings, book.money_ids)
        self.ledger.reopen(book.open_reservations)

    def drain_new_entries(self) -> list[Entry]:
        return self.ledger.drain_new_entries()
