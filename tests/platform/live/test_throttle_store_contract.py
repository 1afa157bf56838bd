"""The ``ThrottleStore`` contract, run against both implementations: in-process (``LocalThrottleStore``)
and Redis (``RedisThrottleStore``, on a real redis-server). Both must decide exactly as ``SignInThrottle``
does, and the Redis one must do it for every instance at once; when Redis is away, each instance
keeps counting on its own (``FallbackThrottleStore``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from arenahub.platform.cluster.errors import LiveStateUnavailable
from arenahub.platform.throttle import (
    SIGN_INS,
    CredentialThrottle,
    LocalThrottleStore,
    SignInThrottle,
    ThrottleRule,
    ThrottleStore,
    TooManyFailedCredentials,
)
from arenahub.platform.throttle_redis import FallbackThrottleStore, RedisThrottleStore, throttle_store
from arenahub.protocol.errors import InvalidApiKey
from tests.redis_server import RedisClients, RedisServer

Clock = list[float]
MakeStore = Callable[..., ThrottleStore]
RULE = ThrottleRule(per_address=3, address_window=60, overall=5, overall_window=10)


@pytest.fixture(params=["local", "redis"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[MakeStore]:
    """``make(rule, clock, namespace="t")``: stores on a clock the test moves; the Redis ones share one
    server (as a cluster's instances do)."""
    if request.param == "local":
        yield lambda rule, clock, namespace="t": LocalThrottleStore(rule, lambda: clock[0])
        return
    async with RedisClients(request.getfixturevalue("redis_url")) as clients:
        yield lambda rule, clock, namespace="t": RedisThrottleStore(clients(), rule, namespace=namespace,
                                                                    clock=lambda: clock[0])


async def fail(store: ThrottleStore, address: str, times: int = 1) -> None:
    for _ in range(times):
        await store.failed(address)


async def test_an_address_waits_until_its_oldest_counted_failure_leaves(make_store: MakeStore) -> None:
    clock = [1000.0]
    store = make_store(RULE, clock)
    for t in (1000.0, 1001.0):
        clock[0] = t
        await store.failed("a")
        assert await store.retry_after("a") == 0
    clock[0] = 1002.5
    await store.failed("a")
    assert await store.retry_after("a") == 58  # 1000 + 60 - 1002.5, rounded up
    assert await store.retry_after("b") == 0  # another address is not held back
    clock[0] = 1059.5
    assert await store.retry_after("a") == 1
    clock[0] = 1060.0  # the first failure leaves the window exactly now
    assert await store.retry_after("a") == 0
    await store.failed("a")  # the last three: 1001, 1002.5, 1060
    assert await store.retry_after("a") == 1  # 1001 + 60 - 1060


async def test_only_an_addresss_last_failures_count(make_store: MakeStore) -> None:
    clock = [0.0]
    store = make_store(ThrottleRule(per_address=3, address_window=60), clock)
    for t in range(10):
        clock[0] = float(t)
        await store.failed("a")
    assert await store.retry_after("a") == 58  # from the 8th failure (t=7), not the first


async def test_failures_from_all_addresses_make_everybody_wait(make_store: MakeStore) -> None:
    clock = [100.0]
    store = make_store(RULE, clock)
    for i, address in enumerate("abcd"):
        clock[0] = 100.0 + i
        await store.failed(address)
    assert await store.retry_after("z") == 0
    clock[0] = 104.0
    await store.failed("e")  # the fifth in 10 s
    assert await store.retry_after("z") == 6
    assert await store.retry_after("a") == 6
    clock[0] = 110.0
    assert await store.retry_after("z") == 0


async def test_without_bounds_nothing_waits(make_store: MakeStore) -> None:
    clock = [0.0]
    store = make_store(ThrottleRule(per_address=0, address_window=60), clock)
    await fail(store, "a", 50)
    assert await store.retry_after("a") == 0


async def test_rules_are_counted_apart(make_store: MakeStore) -> None:
    clock = [0.0]
    sign_ins = make_store(RULE, clock, "sign-ins")
    credentials = make_store(RULE, clock, "credentials")
    await fail(sign_ins, "a", 3)
    assert await sign_ins.retry_after("a") == 60
    assert await credentials.retry_after("a") == 0


async def test_the_credential_throttle_keeps_its_answers_on_any_store(make_store: MakeStore) -> None:
    clock = [0.0]
    seen: list[tuple[str, bool]] = []
    throttle = CredentialThrottle(make_store(ThrottleRule(2, 60), clock), on_refusal=lambda k, t: seen.append((k, t)))

    async def wrong() -> None:
        raise InvalidApiKey("wrong")

    for _ in range(2):
        with pytest.raises(InvalidApiKey):
            await throttle.guard("a", "consumer_key", wrong)
    with pytest.raises(TooManyFailedCredentials) as refused:
        await throttle.guard("a", "consumer_key", wrong)
    assert refused.value.headers == {"Retry-After": "60"}
    assert refused.value.message == "Too many wrong credentials from your address; try again in 60 seconds."
    assert seen == [("consumer_key", False)] * 2 + [("consumer_key", True)]


# --- The same decisions as SignInThrottle, for any sequence -----------------------------------------

operations = st.lists(st.one_of(
    st.tuples(st.just("fail"), st.sampled_from("abc")),
    st.tuples(st.just("check"), st.sampled_from("abcd")),
    st.tuples(st.just("wait"), st.one_of(st.integers(0, 40).map(lambda x: x / 4), st.floats(0, 70),
                                        st.sampled_from([60.0, 10.0, 5.0]))),
), max_size=40)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations, per_address=st.integers(0, 4), overall=st.one_of(st.none(), st.integers(1, 6)),
       windows=st.sampled_from([(60.0, 10.0), (15.0, 30.0), (0.5, 2.5)]))
async def test_any_sequence_is_decided_as_by_the_reference(redis_client: Redis, ops: list[tuple[str, object]],
                                                           per_address: int, overall: int | None,
                                                           windows: tuple[float, float]) -> None:
    clock = [5000.0]
    rule = ThrottleRule(per_address, windows[0], overall, windows[1])
    reference = SignInThrottle(rule)
    await redis_client.flushall()
    shared = RedisThrottleStore(redis_client, rule, clock=lambda: clock[0])
    for op, value in ops:
        if op == "wait":
            assert isinstance(value, float)
            clock[0] += value
        elif op == "fail":
            reference.failed(str(value), clock[0])
            await shared.failed(str(value))
        else:
            assert reference.retry_after(str(value), clock[0]) == await shared.retry_after(str(value))


# --- Redis only ------------------------------------------------------------------------------------

async def test_two_instances_share_the_counts(redis_clients: RedisClients) -> None:
    clock = [0.0]
    a, b = (RedisThrottleStore(redis_clients(), RULE, clock=lambda: clock[0]) for _ in range(2))
    await a.failed("x")
    await b.failed("x")
    assert await a.retry_after("x") == 0
    await a.failed("x")  # the third, wherever it was seen
    assert await a.retry_after("x") == 60 and await b.retry_after("x") == 60
    await b.failed("y")
    await a.failed("z")  # five from all addresses, on two instances
    assert await b.retry_after("w") == 10


async def test_two_platforms_throttle_one_guesser_together(redis_clients: RedisClients) -> None:
    """What the platform runs (``throttle_store``): a wrong key on one instance counts on the other."""
    rule = ThrottleRule(per_address=4, address_window=60)
    a, b = (CredentialThrottle(throttle_store(redis_clients(), rule, "credentials")) for _ in range(2))
    for throttle in (a, b, a, b):
        await throttle.check("198.51.100.7", "consumer_key")
        await throttle.failed("198.51.100.7", "consumer_key")
    for throttle in (a, b):
        with pytest.raises(TooManyFailedCredentials) as refused:
            await throttle.check("198.51.100.7", "consumer_key")
        assert 59 <= int(refused.value.headers["Retry-After"]) <= 60
    await a.check("198.51.100.8", "consumer_key")


async def test_redis_time_is_used_without_a_clock_and_keys_expire_by_themselves(redis_client: Redis) -> None:
    store = RedisThrottleStore(redis_client)  # the sign-in rule: 5 in 15 minutes, 100 a minute overall
    await fail(store, "a", 12)
    assert 14 * 60 < await store.retry_after("a") <= 15 * 60
    keys = {k.decode() for k in await redis_client.keys("*")}
    assert keys == {"ah:thr:{sign-ins}:a:a", "ah:thr:{sign-ins}:all"}
    assert await redis_client.llen("ah:thr:{sign-ins}:a:a") == SIGN_INS.per_address  # bounded
    assert 899_000 < await redis_client.pttl("ah:thr:{sign-ins}:a:a") <= 900_000
    assert 59_000 < await redis_client.pttl("ah:thr:{sign-ins}:all") <= 60_000


async def test_redis_down_raises_a_clear_503_and_the_fallback_counts_locally(unreachable_redis: Redis) -> None:
    rule = ThrottleRule(per_address=2, address_window=60)
    with pytest.raises(LiveStateUnavailable) as info:
        await RedisThrottleStore(unreachable_redis, rule).retry_after("a")
    err = info.value
    assert err.status == 503 and err.headers["Retry-After"] == "5" and "failed-credential" in err.message
    with pytest.raises(LiveStateUnavailable):
        await RedisThrottleStore(unreachable_redis, rule).failed("a")
    assert await RedisThrottleStore(unreachable_redis, ThrottleRule(0, 60)).retry_after("a") == 0  # no bounds: no call

    # What the platform runs: nobody is locked out, and guesses are still counted, per instance.
    store = throttle_store(unreachable_redis, rule, "credentials")
    assert await store.retry_after("a") == 0
    await fail(store, "a", 2)
    assert 59 <= await store.retry_after("a") <= 60
    assert await store.retry_after("b") == 0


async def test_an_instance_remembers_its_failures_through_a_redis_outage(redis_server: RedisServer,
                                                                        redis_clients: RedisClients) -> None:
    now = [0.0]
    rule = ThrottleRule(per_address=3, address_window=600)

    def instance(client: Redis) -> FallbackThrottleStore:
        return FallbackThrottleStore(RedisThrottleStore(client, rule, namespace="credentials"),
                                     LocalThrottleStore(rule), retry_seconds=5, clock=lambda: now[0])
    a, b = instance(redis_clients(socket_connect_timeout=0.5)), instance(redis_clients())
    await fail(a, "x", 2)
    redis_server.stop()
    await a.failed("x")  # counted here only
    assert await a.retry_after("x") > 0  # the two before the outage still count on this instance
    assert await b.retry_after("x") == 0  # another instance saw none of them: not locked out
    redis_server.start()  # back, empty
    assert await a.retry_after("x") > 0  # Redis is left alone for a few seconds, and lost its counts
    now[0] = 5.0
    assert await a.retry_after("x") > 0  # asked again: it knows nothing, this instance still does
    await b.failed("y")
    assert await a.retry_after("y") == 0
    await fail(b, "y", 2)
    assert await a.retry_after("y") > 0  # shared again
