"""The ``CreditStore`` contract, run against both implementations: in-process (``LocalCreditStore``, the
pure Ledger) and Redis (``RedisCreditStore``, on a real redis-server, several stores as several
instances). Same decisions, to the micro-USD; the entries they hand to the writer add up to the
balances they keep."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from arenahub.platform.accounting.credit_redis import READY, RedisCreditStore
from arenahub.platform.accounting.credit_store import Book, CreditStore, LocalCreditStore
from arenahub.platform.billing.ledger import (
    DuplicateRequest,
    Entry,
    InsufficientQuota,
    Kind,
    Reservation,
    ReservationClosed,
    Usage,
)
from arenahub.platform.cluster.errors import LiveStateUnavailable
from tests.redis_server import RedisClients

MakeStore = Callable[[], CreditStore]


def money(key_id: str, amount: int, kind: Kind = Kind.TOPUP) -> Entry:
    return Entry(uuid.uuid4().hex, key_id, kind, amount, 0, dt.datetime.now(dt.UTC))


@pytest.fixture(params=["local", "redis"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[MakeStore]:
    """A factory of stores over one book: the local one is one process; the Redis ones share a server."""
    if request.param == "local":
        local = LocalCreditStore()
        yield lambda: local
        return
    async with RedisClients(request.getfixturevalue("redis_url")) as clients:
        await RedisCreditStore(clients()).restore(Book({}, [], []))  # a fresh cluster: an empty book
        numbers = itertools.count(1)
        yield lambda: RedisCreditStore(clients(), instance=f"i{next(numbers)}")


async def test_a_reservation_holds_and_a_settle_charges_use(make_store: MakeStore) -> None:
    store = make_store()
    assert await store.add_money([money("k", 1000)]) == 1
    r = await store.reserve("k", "r1", 600, unlimited=False)
    assert (r.amount, (await store.account("k", unlimited=False)).available) == (600, 400)
    settle = await store.settle(r, 250, client_id="c", model="m", usage=Usage(10, 20))
    assert (settle.kind, settle.charge, settle.uncharged, settle.client_id) == (Kind.SETTLE, 250, 0, "c")
    account = await store.account("k", unlimited=False)
    assert (account.balance, account.held) == (750, 0)
    earned = await store.earnings("c")
    assert (earned.requests, earned.prompt_tokens, earned.completion_tokens, earned.value) == (1, 10, 20, 250)


async def test_not_enough_credit_is_a_402_that_says_how_much(make_store: MakeStore) -> None:
    store = make_store()
    await store.add_money([money("k", 100)])
    await store.reserve("k", "r1", 80, unlimited=False)
    with pytest.raises(InsufficientQuota) as info:
        await store.reserve("k", "r2", 50, unlimited=False)
    assert "available balance is 0.00002 USD" in info.value.message and info.value.status == 402
    assert info.value.message == InsufficientQuota.for_hold(50, balance=100, held=80).message  # the same words
    # With a minimum, a key with less than asked is held what it has.
    assert (await store.reserve("k", "r3", 50, unlimited=False, minimum=10)).amount == 20


async def test_a_settle_is_capped_at_what_the_key_has(make_store: MakeStore) -> None:
    store = make_store()
    await store.add_money([money("k", 100)])
    r = await store.reserve("k", "r1", 60, unlimited=False)
    settle = await store.settle(r, 500, client_id="c", model="m", usage=Usage(1, 1))
    assert (settle.charge, settle.uncharged) == (100, 400)
    assert (await store.account("k", unlimited=False)).balance == 0


async def test_an_unlimited_key_is_charged_everything(make_store: MakeStore) -> None:
    store = make_store()
    r = await store.reserve("u", "r1", 10, unlimited=True)
    assert (await store.settle(r, 500, client_id="c", model="m", usage=Usage())).charge == 500
    assert (await store.account("u", unlimited=True)).balance == -500


async def test_closing_is_once_and_says_so(make_store: MakeStore) -> None:
    store = make_store()
    await store.add_money([money("k", 1000)])
    r = await store.reserve("k", "r1", 100, unlimited=False)
    with pytest.raises(DuplicateRequest, match="^request r1 already has a reservation$"):
        await store.reserve("k", "r1", 100, unlimited=False)
    first = await store.settle(r, 40, client_id="c", model="m", usage=Usage())
    again = await store.settle(r, 40, client_id="c", model="m", usage=Usage())
    assert again.charge == first.charge == 40 and (await store.account("k", unlimited=False)).balance == 960
    with pytest.raises(ReservationClosed, match="^request r1 was already settled; it cannot be released$"):
        await store.release(r)
    released = await store.reserve("k", "r2", 100, unlimited=False)
    await store.release(released)
    await store.release(released)
    assert (await store.account("k", unlimited=False)).available == 960


async def test_money_is_applied_once_per_entry(make_store: MakeStore) -> None:
    store = make_store()
    top, fix = money("k", 500), money("k", -200, Kind.ADJUSTMENT)
    assert await store.add_money([top, fix]) == 2
    assert await make_store().add_money([top, fix]) == 0  # read again, or by another instance
    assert (await store.account("k", unlimited=False)).balance == 300


async def test_the_entries_add_up_to_the_balances(make_store: MakeStore) -> None:
    store = make_store()
    await store.add_money([money("k", 10_000)])
    for n in range(20):
        r = await store.reserve("k", f"r{n}", 700, unlimited=False, minimum=100)
        if n % 3 == 0:
            await store.release(r)
        else:
            await store.settle(r, 50 * n, client_id="c", model="m", usage=Usage(n, n))
    entries = store.drain_new_entries()
    account = await store.account("k", unlimited=False)
    assert 10_000 + sum(e.amount for e in entries) == account.balance
    assert sum(e.hold for e in entries) == account.held == 0
    assert store.drain_new_entries() == []


async def test_concurrent_reservations_never_overspend(make_store: MakeStore) -> None:
    stores = [make_store() for _ in range(3)]  # three instances, for Redis
    await stores[0].add_money([money("k", 50 * 100)])

    async def one(n: int) -> bool:
        try:
            await stores[n % 3].reserve("k", f"r{n}", 100, unlimited=False)
            return True
        except InsufficientQuota:
            return False
    won = await asyncio.gather(*(one(n) for n in range(300)))
    assert sum(won) == 50
    assert (await stores[1].account("k", unlimited=False)).available == 0


async def test_restore_starts_from_the_book(make_store: MakeStore) -> None:
    store = make_store()
    open_one = Reservation("k", "r-open", 300, "e1")
    await store.restore(Book({"k": (1000, 300)}, [], ["m1"], [open_one]))
    assert (await store.account("k", unlimited=False)).available == 700
    assert (await store.settle(open_one, 100, client_id="c", model="m", usage=Usage())).charge == 100
    assert (await store.account("k", unlimited=False)).balance == 900


# --- Redis only: when Redis lost its data ----------------------------------------------------------

@pytest.fixture
def redis_store(redis_client: Redis) -> RedisCreditStore:
    return RedisCreditStore(redis_client, instance="a")


async def test_nothing_is_reserved_before_the_book_is_loaded(redis_store: RedisCreditStore) -> None:
    with pytest.raises(LiveStateUnavailable) as info:
        await redis_store.reserve("k", "r1", 1, unlimited=True)
    assert info.value.status == 503 and info.value.headers["Retry-After"] == "5"
    with pytest.raises(LiveStateUnavailable):
        await redis_store.add_money([money("k", 1)])


async def test_a_settle_while_not_ready_is_applied_once_the_rebuilt_state_still_holds_it(
        redis_store: RedisCreditStore) -> None:
    await redis_store.restore(Book({"k": (1000, 0)}, [], []))
    kept = await redis_store.reserve("k", "kept", 400, unlimited=False)
    seen = await redis_store.reserve("k", "seen", 100, unlimited=False)
    await redis_store.redis.flushall()  # Redis lost everything
    settle = await redis_store.settle(kept, 900, client_id="c", model="m", usage=Usage(1, 2))
    assert (settle.charge, settle.uncharged) == (400, 500)  # capped at its own hold, decided without Redis
    await redis_store.release(seen)
    assert len(redis_store.pending) == 2 and await redis_store.apply_pending() == 0  # still not ready
    # The rebuild read the book when "kept" was still open there but "seen" was already released.
    await redis_store.restore(Book({"k": (1000, 400)}, [], [], [kept]))
    assert await redis_store.apply_pending() == 1 and redis_store.pending == []
    account = await redis_store.account("k", unlimited=False)
    assert (account.balance, account.held) == (600, 0)
    assert (await redis_store.earnings("c")).value == 400


async def test_redis_down_is_a_503_not_a_guess(unreachable_redis: Redis) -> None:
    store = RedisCreditStore(unreachable_redis)
    for call in (store.reserve("k", "r", 1, unlimited=False), store.account("k", unlimited=False),
                 store.ready()):
        with pytest.raises(LiveStateUnavailable):
            await call


async def test_ready_is_one_key(redis_store: RedisCreditStore) -> None:
    assert not await redis_store.ready()
    await redis_store.restore(Book({}, [], []))
    assert await redis_store.ready() and await redis_store.redis.exists(READY)


async def test_a_dead_instances_reservations_are_given_back_once(redis_clients: RedisClients) -> None:
    dead, east, west = (RedisCreditStore(redis_clients(), instance=name) for name in ("dead", "east", "west"))
    await east.restore(Book({"k": (1000, 0)}, [], []))
    lost = await dead.reserve("k", "r-lost", 300, unlimited=False)  # its instance is killed mid-request
    kept = await east.reserve("k", "r-kept", 200, unlimited=False)  # a live instance's: not touched
    assert (await east.account("k", unlimited=False)).available == 500
    assert await east.release_orphans({"east", "west"}, dead_after=60) == 0  # too young to judge
    released = await asyncio.gather(east.release_orphans({"east", "west"}, dead_after=0),
                                    west.release_orphans({"east", "west"}, dead_after=0))
    assert sorted(released) == [0, 1]  # one instance gives it back, once
    assert (await west.account("k", unlimited=False)).available == 800
    entries = east.drain_new_entries() + west.drain_new_entries()
    mine = [e for e in entries if e.request_id == lost.request_id]
    assert sorted(e.kind for e in mine) == [Kind.RELEASE, Kind.RESERVE] and sum(e.hold for e in mine) == 0
    assert all("instance dead stopped" in (e.note or "") for e in mine)
    # The dead instance's own (late) close finds it closed; the live one settles as usual.
    assert (await east.settle(kept, 150, client_id="c", model="m", usage=Usage())).charge == 150
    with pytest.raises(ReservationClosed):
        await dead.settle(lost, 10, client_id="c", model="m", usage=Usage())
    # Too old for any answer: released even though its instance is alive.
    stuck = await east.reserve("k", "r-stuck", 100, unlimited=False)
    assert await west.release_orphans({"east", "west"}, dead_after=0, at_most=0) == 1
    with pytest.raises(ReservationClosed):
        await east.settle(stuck, 10, client_id="c", model="m", usage=Usage())
