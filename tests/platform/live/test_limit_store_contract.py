"""The ``LimitStore`` contract, run against both implementations: in-process (``LocalLimitStore``) and
Redis (``RedisLimitStore``, on a real redis-server). Both must decide exactly as ``LimitState`` does,
to the float, and the Redis one must do it for every instance at once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from arenahub.platform.accounting.limits import (
    CONCURRENCY_RETRY_AFTER,
    Admission,
    Admitted,
    Limit,
    Limits,
    LimitStore,
    LocalLimitStore,
    Refused,
    Ticket,
)
from arenahub.platform.accounting.limits_redis import RedisLimitStore
from arenahub.platform.cluster.errors import LiveStateUnavailable
from tests.redis_server import RedisClients

Clock = list[float]
MakeStore = Callable[[Clock], LimitStore]


@pytest.fixture(params=["local", "redis"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[MakeStore]:
    """Stores on a clock the test moves; the Redis ones share one server (as a cluster's instances do)."""
    if request.param == "local":
        yield lambda clock: LocalLimitStore(clock=lambda: clock[0])
        return
    async with RedisClients(request.getfixturevalue("redis_url")) as clients:
        yield lambda clock: RedisLimitStore(clients(), clock=lambda: clock[0])


def admitted(admission: Admission) -> Admitted:
    assert isinstance(admission, Admitted), admission
    return admission


def refused(admission: Admission) -> Refused:
    assert isinstance(admission, Refused), admission
    return admission


async def test_requests_per_minute_are_exact_and_say_when_to_retry(make_store: MakeStore) -> None:
    clock = [1000.0]
    store, limits = make_store(clock), Limits(rpm=3)
    for t in (1000.0, 1010.5, 1020.25):
        clock[0] = t
        status = admitted(await store.admit("k", limits)).status
    assert (status.remaining_requests, status.reset_requests) == (0, 60.0)
    clock[0] = 1030.0
    no = refused(await store.admit("k", limits))
    assert (no.limit, no.retry_after, no.status.remaining_requests) == (Limit.REQUESTS, 30.0, 0)
    assert no.error().headers["retry-after"] == "30" and not await store.would_admit("k", limits)
    clock[0] = 1060.0  # the first leaves the window exactly now
    assert admitted(await store.admit("k", limits)).status.remaining_requests == 0


async def test_tokens_are_corrected_to_real_use(make_store: MakeStore) -> None:
    clock = [0.0]
    store, limits = make_store(clock), Limits(tpm=100)
    first = admitted(await store.admit("k", limits, est_tokens=80))
    assert first.status.remaining_tokens == 20
    no = refused(await store.admit("k", limits, est_tokens=30))
    assert (no.limit, no.retry_after) == (Limit.TOKENS, 60.0)
    clock[0] = 5.0
    await store.finish(first.ticket, 10)
    assert (await store.status("k", limits)).remaining_tokens == 90
    assert admitted(await store.admit("k", limits, est_tokens=30)).status.remaining_tokens == 60
    never = refused(await store.admit("k", limits, est_tokens=101))
    assert never.retry_after is None and "exceed the limit of 100 tokens" in never.error().message


async def test_concurrency_frees_when_a_request_ends(make_store: MakeStore) -> None:
    clock = [0.0]
    store, limits = make_store(clock), Limits(max_concurrent=2)
    one = admitted(await store.admit("k", limits)).ticket
    admitted(await store.admit("k", limits))
    no = refused(await store.admit("k", limits))
    assert (no.limit, no.retry_after) == (Limit.CONCURRENCY, CONCURRENCY_RETRY_AFTER)
    await store.release(one)
    await store.release(one)  # closed once: a second close frees nothing more
    admitted(await store.admit("k", limits))
    refused(await store.admit("k", limits))


async def test_release_gives_tokens_back_but_counts_the_request(make_store: MakeStore) -> None:
    clock = [0.0]
    store, limits = make_store(clock), Limits(rpm=2, tpm=50)
    ticket = admitted(await store.admit("k", limits, est_tokens=50)).ticket
    await store.release(ticket)
    status = (await store.status("k", limits))
    assert (status.remaining_tokens, status.remaining_requests) == (50, 1)


async def test_subjects_and_unlimited_keys_are_apart(make_store: MakeStore) -> None:
    clock = [0.0]
    store = make_store(clock)
    admitted(await store.admit("a", Limits(rpm=1)))
    refused(await store.admit("a", Limits(rpm=1)))
    admitted(await store.admit("b", Limits(rpm=1)))
    for _ in range(5):
        free = admitted(await store.admit("a", Limits()))
        assert free.status.headers() == {}
        await store.finish(free.ticket, 10)


async def test_two_instances_share_one_window(redis_clients: RedisClients) -> None:
    clock = [0.0]
    a, b = (RedisLimitStore(redis_clients(), clock=lambda: clock[0]) for _ in range(2))
    limits = Limits(rpm=4, max_concurrent=3)
    tickets = [admitted(await (a if i % 2 else b).admit("k", limits)).ticket for i in range(3)]
    assert refused(await a.admit("k", limits)).limit is Limit.CONCURRENCY
    await b.finish(tickets[0], 0)  # a ticket taken on one instance may be closed on another
    admitted(await a.admit("k", limits))
    assert refused(await b.admit("k", limits)).limit is Limit.REQUESTS


# --- The same decisions as LimitState, for any sequence ---------------------------------------------

operations = st.lists(st.one_of(
    st.tuples(st.just("admit"), st.integers(0, 40)),
    st.tuples(st.just("finish"), st.integers(0, 60)),
    st.tuples(st.just("release"), st.just(0)),
    st.tuples(st.just("wait"), st.one_of(st.integers(0, 40).map(lambda x: x / 2), st.floats(0, 30),
                                        st.sampled_from([60.0, 30.0, 20.0]))),
    st.tuples(st.just("status"), st.just(0)),
), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations, rpm=st.one_of(st.none(), st.integers(1, 5)), tpm=st.one_of(st.none(), st.integers(1, 100)),
       conc=st.one_of(st.none(), st.integers(1, 3)))
async def test_any_sequence_is_decided_as_by_the_reference(redis_client: Redis, ops: list[tuple[str, float]],
                                                           rpm: int | None, tpm: int | None, conc: int | None) -> None:
    clock = [5000.0]
    reference = LocalLimitStore(clock=lambda: clock[0])
    await redis_client.flushall()
    shared = RedisLimitStore(redis_client, clock=lambda: clock[0])
    limits = Limits(rpm, tpm, conc)
    open_tickets: list[tuple[Ticket, Ticket]] = []
    for op, value in ops:
        if op == "wait":
            clock[0] += value
        elif op == "admit":
            mine, theirs = await reference.admit("k", limits, est_tokens=int(value)), \
                await shared.admit("k", limits, est_tokens=int(value))
            assert type(mine) is type(theirs) and mine.status == theirs.status
            if isinstance(mine, Refused) and isinstance(theirs, Refused):
                assert (mine.limit, mine.retry_after) == (theirs.limit, theirs.retry_after)
            elif isinstance(mine, Admitted) and isinstance(theirs, Admitted):
                open_tickets.append((mine.ticket, theirs.ticket))
        elif op in ("finish", "release") and open_tickets:
            mine_t, theirs_t = open_tickets.pop(0)
            if op == "finish":
                await reference.finish(mine_t, int(value))
                await shared.finish(theirs_t, int(value))
            else:
                await reference.release(mine_t)
                await shared.release(theirs_t)
        elif op == "status":
            assert await reference.status("k", limits) == await shared.status("k", limits)


# --- Redis only ------------------------------------------------------------------------------------

async def test_a_killed_instances_slots_come_back_after_the_lease(redis_client: Redis) -> None:
    clock = [0.0]
    store = RedisLimitStore(redis_client, clock=lambda: clock[0], lease_seconds=30)
    admitted(await store.admit("k", Limits(max_concurrent=1)))  # never closed: its instance died
    refused(await store.admit("k", Limits(max_concurrent=1)))
    clock[0] = 30.0
    admitted(await store.admit("k", Limits(max_concurrent=1)))


async def test_redis_time_is_used_without_a_clock(redis_client: Redis) -> None:
    store = RedisLimitStore(redis_client)
    first = admitted(await store.admit("k", Limits(rpm=1)))
    no = refused(await store.admit("k", Limits(rpm=1)))
    assert no.retry_after is not None and 59.0 < no.retry_after <= 60.0
    assert abs(first.ticket.admitted_at - (await redis_client.time())[0]) < 5


async def test_redis_down_refuses_with_a_clear_503(unreachable_redis: Redis) -> None:
    with pytest.raises(LiveStateUnavailable) as info:
        await RedisLimitStore(unreachable_redis).admit("k", Limits(rpm=1))
    err = info.value
    assert err.status == 503 and err.headers["Retry-After"] == "5" and "rate limits" in err.message
    assert (await RedisLimitStore(unreachable_redis).admit("k", Limits())).ticket.token is None  # unlimited: no call
