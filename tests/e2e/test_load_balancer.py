"""deploy/haproxy.cfg in front of a cluster (issue 13): two real ``arenahub platform`` instances on one
PostgreSQL database and one redis-server, behind a real HAProxy run from the example config. A client
connects through HAProxy's URL (its tunnel is a WebSocket through it), consumers use the official openai
package on the same URL, and a SIGTERM to one instance takes it out of the rotation (its health answers
503) while every request goes on succeeding and its stream in flight ends whole."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import openai
import pytest

from tests.conftest import fresh_databases
from tests.haproxy import HAProxy

from .cluster import running_cluster
from .harness import MODELS, Client, Platform, Stack, ask, wait_until, write_client_config

pytestmark = pytest.mark.postgres
MODEL = MODELS[0]
INSTANCES = ("east", "west")


@dataclass
class Balanced:
    stack: Stack
    platforms: list[Platform]
    lb: HAProxy
    client: Client
    key: str

    def consumer(self) -> openai.OpenAI:
        """No retries of its own: what the consumer gets is HAProxy's doing."""
        return openai.OpenAI(base_url=self.lb.url + "/v1", api_key=self.key, max_retries=0, timeout=30)

    def platform(self, name: str) -> Platform:
        return next(p for p in self.platforms if p.name == name)


NOTICE_SECONDS = 1.0  # ARENAHUB_SHUTDOWN_NOTICE_SECONDS of these instances


@pytest.fixture(scope="module")
def balanced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Balanced]:
    workdir = tmp_path_factory.mktemp("load-balancer")
    with fresh_databases(workdir) as made, \
            running_cluster(workdir, made.new("postgres"), instances=INSTANCES, clients=False,
                            env={"ARENAHUB_SHUTDOWN_NOTICE_SECONDS": str(NOTICE_SECONDS)}) as cluster:
        lb = HAProxy([(p.name, "127.0.0.1", p.port) for p in cluster.platforms], workdir).start()
        try:
            account = cluster.stack.admin("create-client", "--name", "behind-haproxy", "--max-concurrent", "64",
                                          database_url=cluster.database_url)
            config = write_client_config(workdir / "client.config.jsonc", platform_url=lb.url + "/api",
                                         client_id=account["client_id"], api_key=account["api_key"],
                                         bridge_url=cluster.upstream.url, max_concurrent_requests=64)
            client = Client(workdir, "client", config, account["client_id"], account["api_key"])
            cluster.stack.programs.append(client)
            cluster.upstream.wait_ready()
            client.start()
            client.wait_state("connected")
            key = cluster.key()["key"]
            for platform in cluster.platforms:  # each instance routes to the client, wherever it is connected
                wait_until(lambda p=platform: _served_by(p, key), 10, f"{platform.name} serving through the client")
            yield Balanced(cluster.stack, cluster.platforms, lb, client, key)
        finally:
            lb.stop()


def _served_by(platform: Platform, key: str) -> bool:
    with openai.OpenAI(base_url=platform.v1, api_key=key, max_retries=0, timeout=10) as consumer:
        try:
            consumer.chat.completions.create(model=MODEL, messages=ask("ready?"))
            return True
        except (openai.NotFoundError, openai.InternalServerError):  # 404: not known there yet; 503: no client
            return False


def _burst(balanced: Balanced, n: int, what: str) -> list[str]:
    """``n`` requests at once (each waits 150 ms for its first byte, so that they overlap and leastconn
    spreads them over the instances); their answers."""
    with balanced.consumer() as consumer, ThreadPoolExecutor(n) as pool:
        def one(i: int) -> str:
            done = consumer.chat.completions.create(model=MODEL, messages=ask(f"[[first_ms=150]] {what} {i}"))
            return done.choices[0].message.content or ""
        return list(pool.map(one, range(n)))


def test_clients_and_consumers_reach_the_cluster_through_haproxy(balanced: Balanced) -> None:
    assert balanced.lb.up() == set(INSTANCES)  # both pass the check on /api/health
    status = balanced.client.status()
    assert (status["state"], status["platform_url"]) == ("connected", balanced.lb.url + "/api")  # a tunnel via HAProxy
    with balanced.consumer() as consumer:
        done = consumer.chat.completions.create(model=MODEL, messages=ask("through haproxy"))
        assert done.choices[0].message.content == "Echo: through haproxy"
        stream = consumer.chat.completions.create(model=MODEL, messages=ask("[[words=30]] streamed"), stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == \
            " ".join(f"w{i}" for i in range(30))
    assert _burst(balanced, 12, "spread") == [f"Echo: spread {i}" for i in range(12)]
    sent = {name: int(row["stot"]) for name, row in balanced.lb.stats().items()}
    assert all(sent[name] > 0 for name in INSTANCES), sent  # both instances took requests


# Last: it stops one instance.
def test_a_draining_instance_leaves_the_rotation_while_every_request_succeeds(balanced: Balanced) -> None:
    lb = balanced.lb
    streamed: list[str] = []

    def long_stream() -> None:
        with balanced.consumer() as consumer:
            stream = consumer.chat.completions.create(model=MODEL, stream=True,
                                                      messages=ask("[[words=80]] [[delay_ms=100]] long"))
            streamed.extend(c.choices[0].delta.content or "" for c in stream if c.choices)

    streaming = threading.Thread(target=long_stream)
    streaming.start()
    victim = wait_until(lambda: next((p for p in balanced.platforms if p.health()["requests_in_flight"] == 1), None),
                        5, "the instance the stream went to")
    other = next(p for p in balanced.platforms if p is not victim)

    # The window before the check notices, held open: HAProxy still sends requests to the draining instance.
    # For its notice period it serves them (nothing to retry); after it, it refuses them with 503 before
    # anything is held or charged, and HAProxy sends them on to the other.
    lb.ask(f"disable health platform/{victim.name}")
    victim.terminate()
    victim.wait_http(victim.url + "/api/health", lambda r: r.status_code == 503, what="the victim draining")
    noticed = time.monotonic()
    redispatched = int(lb.stats()[victim.name]["wredis"])
    assert _burst(balanced, 4, "notice") == [f"Echo: notice {i}" for i in range(4)]
    if time.monotonic() - noticed < NOTICE_SECONDS:
        assert int(lb.stats()[victim.name]["wredis"]) == redispatched, "served in the notice period, not retried"
    time.sleep(max(0.0, NOTICE_SECONDS + 0.2 - (time.monotonic() - noticed)))
    assert _burst(balanced, 12, "window") == [f"Echo: window {i}" for i in range(12)]
    assert int(lb.stats()[victim.name]["wredis"]) > redispatched, lb.stats()[victim.name]

    # The check sees the 503 and takes it out of the rotation; requests meanwhile all succeed.
    lb.ask(f"enable health platform/{victim.name}")
    answers = []
    with balanced.consumer() as consumer:
        def down() -> bool:
            done = consumer.chat.completions.create(model=MODEL, messages=ask(f"meanwhile {len(answers)}"))
            answers.append(done.choices[0].message.content)
            return lb.up() == {other.name}
        wait_until(down, 5, "HAProxy to take the draining instance out")
    assert lb.stats()[victim.name]["check_status"] == "L7STS"  # its health said 503
    assert answers == [f"Echo: meanwhile {i}" for i in range(len(answers))]
    assert streaming.is_alive(), "the stream should outlast the check (the test would prove less)"

    # Its stream in flight ends whole; then it stops, and its client (if it held it) comes back through HAProxy.
    streaming.join(20)
    assert "".join(streamed) == " ".join(f"w{i}" for i in range(80))
    assert victim.wait_stopped() in (0, -signal.SIGTERM)  # uvicorn raises the signal again once it is done
    wait_until(lambda: other.health()["clients_connected"] == 1, 10, "the client connected to the other instance")

    # An instance that is gone, and that HAProxy still believes up: the refused connection is retried elsewhere.
    lb.ask(f"disable health platform/{victim.name}")
    lb.ask(f"set server platform/{victim.name} health up")
    try:
        redispatched = int(lb.stats()[victim.name]["wredis"])
        assert _burst(balanced, 8, "gone") == [f"Echo: gone {i}" for i in range(8)]
        assert int(lb.stats()[victim.name]["wredis"]) > redispatched, lb.stats()[victim.name]
    finally:
        lb.ask(f"enable health platform/{victim.name}")
    lb.wait_states({victim.name: "DOWN"})
