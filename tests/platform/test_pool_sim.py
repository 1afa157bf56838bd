"""Routing over a simulated pool of 200 clients: the claims of issue 5, with the real Dispatcher.

Timing-based: each figure is compared with a margin that holds across seeds (the pools are seeded).
"""

import asyncio
import random
from types import SimpleNamespace

import msgspec
import pytest

from arenahub.platform.accounting.limits import Limits
from arenahub.platform.dispatch import Dispatcher
from arenahub.platform.exchange import Exchange
from arenahub.platform.registry import LocalClientRegistry
from arenahub.platform.routing import STRATEGIES, Fastest
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage.accounts import ConsumerKey
from arenahub.protocol import frames
from arenahub.protocol.openai import parse_chat_request
from arenahub.tools.pool_sim import BREAKER_OFF, Pool, Profile, run

# Clients 10x faster than the default pool's, for the tests whose figures do not depend on timing.
QUICK = {"ttft": 0.004, "tokens_per_second": 10000.0}


async def test_fastest_beats_least_load_on_time_to_first_token_when_speeds_differ():
    pool = Pool.build(200, seed=0, speed_ratio=10)  # time to first token 40 to 400 ms
    # Side by side in one event loop, each over its own copy of the pool: whatever else the machine
    # does slows both alike. The warm-up gives fastest its 3 answers from each client.
    least, fastest = await asyncio.gather(*(run(pool, strategy, requests=600, warmup=700, concurrency=128)
                                            for strategy in ("least_load", "fastest")))
    assert least.success_rate == fastest.success_rate == 1.0
    assert fastest.ttft(50) < 0.85 * least.ttft(50), (fastest.summary(), least.summary())


async def test_the_breaker_keeps_success_above_99_percent_while_a_fifth_of_the_clients_fail_half():
    # Half of a bad client's failures come after the first byte, where no retry can hide them.
    pool = Pool.build(200, seed=0, bad_share=0.2, bad_failure=0.5, **QUICK)
    assert sum(p.failure == 0.5 for p in pool.profiles) == 40
    on = await run(pool, "least_load", requests=6000, concurrency=64)
    # Without the breaker every request pays the same risk, so fewer requests show it.
    off = await run(pool, "least_load", requests=2000, concurrency=64, **BREAKER_OFF)
    # What the breaker costs is the few requests each bad client fails before it trips (~2).
    assert on.success_rate > 0.99 and on.breaker_trips >= 10, on.summary()
    assert off.success_rate < 0.98 and off.breaker_trips == 0, off.summary()


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_every_strategy_serves_every_request_of_a_healthy_pool_within_max_concurrent(strategy):
    pool = Pool.build(200, seed=1, max_concurrent=(1, 2), top_priority=20, **QUICK)
    capacity = sum(p.max_concurrent for p in pool.profiles)
    # More requests in flight than the pool can take: the rest wait in the queue (100 places). A healthy
    # pool: timeouts long enough that a machine starved of CPU (a CI run beside other work) trips no breaker.
    r = await run(pool, strategy, requests=800, concurrency=capacity + 60, queue_timeout_seconds=10.0,
                  first_byte_timeout_seconds=10.0, idle_timeout_seconds=10.0)
    assert r.requests == 800 and r.success_rate == 1.0, r.summary()
    assert r.over_limit == 0
    peaks = [r.peak[pool.client_id(i)] for i in range(200)]
    assert peaks == [p.max_concurrent for p in pool.profiles]  # every client full at some point, none over


async def test_round_robin_spreads_load_nearly_evenly():
    pool = Pool.build(200, seed=2, **QUICK)
    r = await run(pool, "round_robin", requests=1000, concurrency=48)
    assert r.clients_used == 200 and r.load_cv < 0.1 and r.load_max_over_mean <= 1.2, r.summary()
    least = await run(pool, "least_load", requests=1000, concurrency=48)
    assert least.load_cv > 1.0  # least_load keeps to the first idle clients; the figure tells them apart


async def test_priority_keeps_to_the_top_clients_while_they_have_capacity():
    pool = Pool.build(200, seed=3, top_priority=20, **QUICK)
    top = {pool.client_id(i): p.max_concurrent for i, p in enumerate(pool.profiles) if p.priority}
    room = sum(top.values())
    within = await run(pool, "priority", requests=1000, concurrency=room // 2)
    assert within.success_rate == 1.0 and within.clients_used == len(top)
    assert {c for c, n in within.load.items() if n} == set(top)
    beyond = await run(pool, "priority", requests=1000, concurrency=room + 40)
    assert all(beyond.peak[c] == n for c, n in top.items())  # the top clients fill up first ...
    assert sum(n for c, n in beyond.load.items() if c not in top) > 0  # ... then the rest take the overflow


async def test_connection_drops_and_stalls_end_in_retries_or_named_errors():
    flaky = Profile(stall=0.1, disconnect=0.1, reconnect_after=0.05, **QUICK)
    pool = Pool((flaky,) * 10 + (Profile(**QUICK),) * 10, seed=4)
    r = await run(pool, "round_robin", requests=300, rate=300.0, idle_timeout_seconds=0.1,
                  first_byte_timeout_seconds=0.1)  # Poisson arrivals, 300 a second
    assert r.requests == 300 and r.over_limit == 0
    assert set(r.errors) <= {"client_disconnected", "upstream_timeout"}
    assert r.retries > 0 and r.success_rate > 0.8, r.summary()


# -- regressions the simulator found in routing.py and dispatch.py -----------------------------
def test_fastest_gives_an_unmeasured_client_only_the_requests_that_will_measure_it():
    speeds = {"fast": SimpleNamespace(ttft=0.1, throughput=100.0, samples=10),
              "new": SimpleNamespace(ttft=2.0, throughput=10.0, samples=1)}
    fastest = Fastest(speeds.get, random.Random(0), explore=0.0)
    fast = SimpleNamespace(client_id="fast", max_concurrent=8, active=4)
    new = SimpleNamespace(client_id="new", max_concurrent=8, active=1)
    assert fastest.choose([fast, new], "m") is new  # a second one in flight: 3 answers will measure it
    new.active = 2
    # It used to get every free slot until its slow answers came back: 10% of the requests of a
    # 200-client pool went to the slowest clients after the warm-up.
    assert fastest.choose([fast, new], "m") is fast
    assert fastest.choose([new], "m") is new  # nothing else ready: it still takes work



class ManualSession:
    """One client with one slot, answering only when told to."""

    client_id, max_concurrent, priority, weight = "a", 1, 0, 1
    draining, available, preferred_strategy = False, True, None
    rpm, limits, limit_subject = None, Limits(), "client:a"

    def __init__(self):
        self.models = {"m"}
        self.queues: dict[str, asyncio.Queue] = {}

    @property
    def active(self):
        return len(self.queues)

    def serves(self, model):
        return model in self.models

    def upstream_wait(self):
        return 0.0

    def busy_wait(self):
        return 0.0

    moving = False

    def open(self, request_id, body, kind="chat.completions"):
        self.queues[request_id] = asyncio.Queue()
        return self.queues[request_id]

    def send(self, request_id, *texts):
        queue = self.queues[request_id]
        for text in texts:
            queue.put_nowait(frames.Chunk(id=request_id, events=[[{"index": 0, "delta": {"content": text}}]]))

    def end(self, request_id):
        self.queues.pop(request_id).put_nowait(frames.End(id=request_id))

    def cancel(self, request_id, reason):
        self.queues.pop(request_id, None)

    def finish(self, request_id):
        self.queues.pop(request_id, None)


def exchange(id):
    key = ConsumerKey(id="key_1", name="k", key_hash="h", rpm=None, disabled=False, updated_at=None)
    body = msgspec.json.encode({"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    return Exchange(id=id, key=key, request=parse_chat_request(body), body=body)


def dispatcher(session, **settings):
    registry = LocalClientRegistry()
    registry.add(session)
    return Dispatcher(registry, PlatformSettings(**settings))


async def started(d, session, id):
    """Place a request and answer its first frame: ``start`` returns with it."""
    task = asyncio.create_task(d.start(exchange(id)))
    await asyncio.sleep(0)
    session.send(id, "hi")
    return await task


async def drain(attempt):
    async for _ in attempt.batches():
        pass
    attempt.abandon("done")


async def test_a_freed_slot_goes_to_the_waiting_request_before_a_newcomer():
    session = ManualSession()
    d = dispatcher(session, queue_timeout_seconds=2.0, first_byte_timeout_seconds=2.0)
    a = await started(d, session, "a")
    waiting = asyncio.create_task(d.start(exchange("b")))
    await asyncio.sleep(0.01)
    assert d.queued == 1

    async def consumer_a():  # finishes its answer and sends its next request at once
        await drain(a)
        return await d.start(exchange("c"))

    session.end("a")
    newcomer = asyncio.create_task(consumer_a())
    await asyncio.sleep(0.05)
    # The slot went to b, which waited; c queues behind it (it used to take the slot, and b waited out its 2 s).
    assert set(session.queues) == {"b"} and d.queued == 1
    session.send("b", "hi")
    b = await asyncio.wait_for(waiting, 1.0)
    session.end("b")
    await drain(b)
    await asyncio.sleep(0.05)
    assert set(session.queues) == {"c"} and d.queued == 0
    session.send("c", "hi")
    c = await asyncio.wait_for(newcomer, 1.0)
    session.end("c")
    await drain(c)


async def test_throughput_is_measured_on_the_text_after_the_first_frame():
    session = ManualSession()
    d = dispatcher(session)
    # A whole answer in one frame says nothing about throughput (it used to count as ~0 s for 100 tokens).
    attempt_task = asyncio.create_task(d.start(exchange("r1")))
    await asyncio.sleep(0)
    session.send("r1", "x" * 400)
    session.end("r1")
    await drain(await attempt_task)
    health = d.health["a"]
    assert health.samples == 1 and health.throughput is None
    # 100 tokens 0.1 s after the first frame: about 1000 tokens/s (the first frame's 100 used to double it).
    attempt_task = asyncio.create_task(d.start(exchange("r2")))
    await asyncio.sleep(0)
    session.send("r2", "x" * 400)
    attempt = await attempt_task
    consumed = asyncio.create_task(drain(attempt))
    await asyncio.sleep(0.1)
    session.send("r2", "y" * 400)
    session.end("r2")
    await consumed
    assert 500 < health.throughput < 1100
