"""Several platform instances as one (issue 13): three real ``arenahub platform`` processes on one
PostgreSQL database and one real redis-server, each with a client of its own, and the official openai
package as the consumer. Limits and credit are exact for the cluster, and a Redis that restarts empty
is refilled from the book, with nothing guessed meanwhile."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import fresh_databases

from .cluster import INSTANCES, MODEL, Cluster, running_cluster
from .harness import Client, Platform, ask, consumer_for, read_ledger, wait_until, write_client_config

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for the tests that leave it serving (they make keys and clients of their own)."""
    workdir = tmp_path_factory.mktemp("cluster")
    with fresh_databases(workdir) as made, running_cluster(workdir, made.new("postgres")) as cluster:
        yield cluster


@pytest.fixture
def own_cluster(tmp_path: Path, databases: Any) -> Iterator[Cluster]:
    """A cluster of its own, for a test that kills one of its programs."""
    with running_cluster(tmp_path, databases.new("postgres")) as cluster:
        yield cluster


def test_each_instance_says_who_it_is_and_sees_the_others(cluster: Cluster) -> None:
    for platform in cluster.platforms:
        health = platform.health()
        assert health["instance"] == platform.name and health["cluster"]["shared_state"] == "ready"
        assert health["cluster"]["changes"] == "notified"  # PostgreSQL tells it what the admin changed
        assert [card["id"] for card in health["cluster"]["instances"]] == sorted(INSTANCES)
        metrics = httpx.get(platform.url + "/metrics", timeout=5).text
        assert f'platform_instance="{platform.name}"' in metrics
        assert f"[{platform.name}] arenahub.platform" in platform.log()


def test_a_requests_per_minute_limit_holds_for_the_cluster(cluster: Cluster) -> None:
    key = cluster.key("--rpm", "6")["key"]
    statuses = []
    for n in range(12):
        platform = cluster.platforms[n % 3]
        with consumer_for(platform, key) as consumer:
            try:
                consumer.chat.completions.create(model=MODEL, messages=ask(f"n{n}"), max_tokens=5)
                statuses.append(200)
            except openai.RateLimitError as err:
                assert err.response.headers["retry-after"]
                statuses.append(429)
    assert statuses == [200] * 6 + [429] * 6


def test_a_thousand_way_credit_race_over_three_instances_never_overspends(cluster: Cluster) -> None:
    credit_micros = 400_000
    created = cluster.key("--credit", f"{credit_micros / 1_000_000}")
    key, key_id = created["key"], created["key_id"]

    async def race() -> list[tuple[int, str]]:
        consumers = [openai.AsyncOpenAI(base_url=p.v1, api_key=key, max_retries=0, timeout=60)
                     for p in cluster.platforms]
        gate = asyncio.Semaphore(48)

        async def one(n: int) -> tuple[int, str]:
            async with gate:
                try:
                    raw = await consumers[n % 3].chat.completions.with_raw_response.create(
                        model=MODEL, messages=ask(f"[[words=3]] race {n}"), max_tokens=8)
                    return 200, raw.headers["x-request-id"]
                except openai.APIStatusError as err:
                    return err.status_code, err.body.get("code", "") if isinstance(err.body, dict) else ""
        try:
            return await asyncio.gather(*(one(n) for n in range(1000)))
        finally:
            for consumer in consumers:
                await consumer.close()

    results = asyncio.run(race())
    served = [rid for status, rid in results if status == 200]
    refused = [code for status, code in results if status != 200]
    assert served and refused and set(refused) == {"insufficient_quota"}, set(refused)

    def settled() -> list[dict[str, Any]] | None:
        rows = [e for e in read_ledger(cluster.database_url) if e["key_id"] == key_id and e["kind"] == "settle"]
        return rows if len(rows) == len(served) else None
    settles = wait_until(settled, 15, "every served request's settle in the book")
    by_request = {e["request_id"]: e for e in settles}
    assert set(by_request) == set(served)  # every answer was charged
    assert all(e["uncharged"] == 0 and -e["amount"] > 0 for e in settles), "nothing served uncharged"
    spent = -sum(e["amount"] for e in settles)
    assert 0 < spent <= credit_micros
    credit = cluster.platforms[1].health()  # any instance: one balance for the cluster
    shown = httpx.get(f"{cluster.platforms[2].url}/api/admin/keys/{key_id}",
                      headers=cluster.platforms[2].admin_headers, timeout=5).json()["credit"]
    assert shown["balance_micros"] == credit_micros - spent and shown["held_micros"] == 0, (shown, credit)
    # What is left cannot pay for one more request, whichever instance it asks.
    assert credit_micros - spent < 40_000


def test_admin_changes_reach_every_instance_within_a_second(cluster: Cluster) -> None:
    created = cluster.key()
    key, key_id = created["key"], created["key_id"]
    assert all(p.health()["cluster"]["changes"] == "notified" for p in cluster.platforms)  # no polling each second
    for platform in cluster.platforms:
        with consumer_for(platform, key) as consumer:
            consumer.chat.completions.create(model=MODEL, messages=ask("ok"), max_tokens=5)

    def refused_everywhere() -> bool:
        for platform in cluster.platforms:
            r = httpx.get(platform.v1 + "/models", headers={"Authorization": f"Bearer {key}"}, timeout=5)
            if r.status_code != 401:
                return False
        return True
    started = time.monotonic()
    cluster.stack.admin("disable-key", key_id, database_url=cluster.database_url)  # the CLI: the database only
    wait_until(refused_everywhere, 1.0, "the disabled key refused by every instance", interval=0.02)
    assert time.monotonic() - started < 1.0

    east, west, north = cluster.platforms
    started = time.monotonic()
    changed = httpx.patch(east.url + "/api/admin/settings", json={"queue_size": 7}, headers=east.admin_headers,
                          timeout=5)
    assert changed.status_code == 200, changed.text

    def everywhere() -> bool:
        return all(httpx.get(p.url + "/api/admin/settings", headers=p.admin_headers, timeout=5)
                   .json()["values"]["queue_size"] == 7 for p in (west, north))
    wait_until(everywhere, 1.0, "the setting in use on every instance", interval=0.02)
    assert time.monotonic() - started < 1.0
    # None of them read the database every second for it: each heard the change.
    assert all("settings changed by another platform process" in p.log() for p in (west, north))
    assert httpx.patch(east.url + "/api/admin/settings", json={"queue_size": None}, headers=east.admin_headers,
                       timeout=5).status_code == 200


def test_a_client_that_lists_the_instances_moves_when_its_instance_dies(own_cluster: Cluster) -> None:
    cluster = own_cluster
    mover = cluster.listing_client("mover")
    first = mover.status()["platform_url"]
    victim = next(p for p in cluster.platforms if p.api_url == first)
    victim.kill()
    killed_at = time.monotonic()
    moved = mover.wait_status(lambda s: s["state"] == "connected" and s["platform_url"] != first,
                              "connected to another instance", timeout=10)
    assert time.monotonic() - killed_at < 5
    there = next(p for p in cluster.platforms if p.api_url == moved["platform_url"])
    key = cluster.key()["key"]
    with consumer_for(there, key) as consumer:
        raw = consumer.chat.completions.with_raw_response.create(
            model=MODEL, messages=ask("moved"), max_tokens=5,
            extra_headers={"x-arenahub-pin-client": mover.client_id, "x-arenahub-admin-token": there.admin_token})
    assert raw.headers["x-arenahub-client"] == mover.client_id


def test_models_are_the_clusters_and_a_second_copy_on_another_instance_stands_by(cluster: Cluster) -> None:
    east, west, _ = cluster.platforms
    own = cluster.stack.upstream(["east-only"], name="east-upstream")
    account = cluster.stack.admin("create-client", "--name", "copy", database_url=cluster.database_url)

    def start(name: str, platform: Platform) -> Client:
        config = write_client_config(cluster.stack.workdir / f"{name}.config.jsonc", platform_url=platform.api_url,
                                     client_id=account["client_id"], api_key=account["api_key"],
                                     bridge_url=own.url)
        program = Client(cluster.stack.workdir, name, config, account["client_id"], account["api_key"])
        cluster.stack.programs.append(program)
        own.wait_ready()
        program.start()
        return program

    first = start("copy-1", east)
    first.wait_state("connected")
    key = cluster.key()["key"]

    def listed_on_west() -> bool:
        r = httpx.get(west.v1 + "/models", headers={"Authorization": f"Bearer {key}"}, timeout=5)
        return "east-only" in [m["id"] for m in r.json()["data"]]
    wait_until(listed_on_west, 5, "west lists the model of a client connected to east", interval=0.1)

    second = start("copy-2", west)  # the same client id, connecting to another instance
    second.wait_state("connected")
    standing = first.wait_status(lambda s: s["state"] == "standby", "the first copy standing by", timeout=15)
    assert "platform instance west" in (standing["refused"] or {}).get("message", "") or \
        "connected again to instance west" in (standing["refused"] or {}).get("message", ""), standing
    assert second.status()["state"] == "connected"
    assert "connected here from" in west.log() and "lets it go" in west.log()


def test_kill_minus_9_of_an_instance_under_load_loses_no_money(own_cluster: Cluster) -> None:
    """Streams on every instance, then one instance is killed: the others keep serving, its reservations
    come back, and once it restarts (replaying its journal) the book and the live balance agree."""
    cluster = own_cluster
    created = cluster.key("--credit", "1")
    key, key_id = created["key"], created["key_id"]
    east = cluster.platforms[0]
    stop = threading.Event()
    outcomes: dict[str, list[int]] = {p.name: [] for p in cluster.platforms}

    def load(platform: Platform) -> None:
        while not stop.is_set():
            try:
                with httpx.stream("POST", platform.v1 + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                  json={"model": MODEL, "messages": ask("[[words=20]] [[delay_ms=40]] go"),
                                        "stream": True, "max_tokens": 40}, timeout=10) as resp:
                    resp.read()
                    outcomes[platform.name].append(resp.status_code)
            except httpx.HTTPError:
                outcomes[platform.name].append(0)  # the killed instance
                time.sleep(0.1)

    with ThreadPoolExecutor(6) as pool:
        for platform in cluster.platforms * 2:
            pool.submit(load, platform)
        wait_until(lambda: all(len(v) >= 2 for v in outcomes.values()), 20, "load on every instance")
        east.kill()
        time.sleep(2)
        stop.set()
    assert {s for p in cluster.platforms[1:] for s in outcomes[p.name]} == {200}  # the others never failed

    west = cluster.platforms[1]

    def credit() -> dict[str, Any]:
        return httpx.get(f"{west.url}/api/admin/keys/{key_id}", headers=west.admin_headers,
                         timeout=5).json()["credit"]
    wait_until(lambda: credit()["held_micros"] == 0, 40, "the killed instance's reservations given back",
               interval=0.5)
    restarted = cluster.stack.platform(cluster.database_url, cluster.instance_env("east"), name="east-again")

    def agree() -> bool:
        entries = [e for e in read_ledger(cluster.database_url) if e["key_id"] == key_id]
        return (sum(e["hold"] for e in entries) == 0
                and 1_000_000 + sum(e["amount"] for e in entries if e["kind"] != "topup") == credit()["balance_micros"])
    wait_until(agree, 15, "the book and the live balance agree", interval=0.5)
    assert restarted.health()["cluster"]["shared_state"] == "ready"


def test_a_clients_requests_per_minute_hold_for_the_cluster_where_it_is_connected(cluster: Cluster) -> None:
    """The instance holding a client keeps its RPM window for the cluster (cluster/relayed.py): requests from the
    other instances count in it, and one over it is refused at once, as on one instance."""
    east, west, north = cluster.platforms
    own = cluster.stack.upstream(["rpm-only"], name="rpm-upstream")
    limited = cluster.stack.client(west, own, name="rpm-client", rpm=3)
    key = cluster.key()["key"]

    def listed() -> bool:
        return all("rpm-only" in [m["id"] for m in httpx.get(p.v1 + "/models", headers={
            "Authorization": f"Bearer {key}"}, timeout=5).json()["data"]] for p in (east, north))
    wait_until(listed, 5, "east and north list the model of a client on west", interval=0.1)
    time.sleep(1.5)  # their dispatchers have the remote client (cards are read every second)
    statuses = []
    for n in range(5):
        with consumer_for((east, north)[n % 2], key) as consumer:
            try:
                consumer.chat.completions.create(model="rpm-only", messages=ask(f"n{n}"), max_tokens=5)
                statuses.append(200)
            except openai.APIStatusError as err:
                assert 55 < int(err.response.headers["retry-after"]) <= 60, err.response.headers
                statuses.append(err.status_code)
    assert statuses == [200, 200, 200, 503, 503]
    assert limited.status()["state"] == "connected"


def test_a_request_is_served_by_a_client_on_another_instance(cluster: Cluster) -> None:
    east, west, north = cluster.platforms
    own = cluster.stack.upstream(["west-only"], name="west-upstream")
    remote = cluster.stack.client(west, own, name="west-only-client")
    key = cluster.key()["key"]

    def listed() -> bool:
        r = httpx.get(east.v1 + "/models", headers={"Authorization": f"Bearer {key}"}, timeout=5)
        return "west-only" in [m["id"] for m in r.json()["data"]]
    wait_until(listed, 5, "east lists the model of a client on west", interval=0.1)
    time.sleep(1.5)  # east's dispatcher has the remote client (its cards are read every second)
    for platform in (east, north):
        with consumer_for(platform, key) as consumer:
            raw = consumer.chat.completions.with_raw_response.create(model="west-only", messages=ask("far away"))
            assert raw.headers["x-arenahub-client"] == remote.client_id
            assert raw.parse().choices[0].message.content == "Echo: far away"
            stream = consumer.chat.completions.create(model="west-only", messages=ask("[[words=40]] streamed"),
                                                      stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert text == " ".join(f"w{i}" for i in range(40))

    # Every instance's admin API says the client is connected, and to which instance.
    for platform in (east, north, west):
        shown = httpx.get(f"{platform.url}/api/admin/clients/{remote.client_id}", headers=platform.admin_headers,
                          timeout=5).json()
        assert (shown["connected"], shown["platform_instance"]) == (True, "west"), platform.name
        assert shown["live"]["models"] == ["west-only"]

    # A request larger than a tunnel frame crosses whole (the peer link takes what the platform takes).
    with consumer_for(east, key) as consumer:
        done = consumer.chat.completions.create(model="west-only", messages=ask("[[words=3]] " + "x" * 1_500_000))
        assert done.choices[0].message.content == "w0 w1 w2"

    # The consumer leaves mid-answer: the client on the other instance is told to stop.
    with httpx.stream("POST", east.v1 + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "west-only", "stream": True,
                            "messages": ask("[[words=200]] [[delay_ms=50]] long")}, timeout=10) as resp:
        assert resp.status_code == 200
        wait_until(lambda: remote.status()["active_requests"] == 1, 5, "the answer under way on west's client")
    wait_until(lambda: remote.status()["active_requests"] == 0, 5, "west's client told to stop")


# Last: it restarts the shared cluster's Redis (the cluster recovers by itself, as the test shows).
def test_redis_lost_its_data_nothing_is_guessed_then_the_book_is_reloaded(cluster: Cluster) -> None:
    created = cluster.key("--credit", "1")
    key, key_id = created["key"], created["key_id"]
    east, west = cluster.platforms[0], cluster.platforms[1]
    with consumer_for(east, key) as consumer:
        consumer.chat.completions.create(model=MODEL, messages=ask("before"), max_tokens=5)
    logged = {p.name: len(p.log()) for p in cluster.platforms}
    cluster.redis.stop()
    with consumer_for(west, key) as consumer, pytest.raises(openai.APIStatusError) as info:
        consumer.chat.completions.create(model=MODEL, messages=ask("while away"), max_tokens=5)
    assert info.value.status_code == 503 and info.value.response.headers["retry-after"] == "5"
    assert "shared state is unreachable" in info.value.message
    started = time.monotonic()
    cluster.redis.start()  # empty: a restart without persistence

    def served() -> bool:
        with consumer_for(west, key) as consumer:
            try:
                consumer.chat.completions.create(model=MODEL, messages=ask("after"), max_tokens=5)
                return True
            except openai.APIStatusError as err:
                assert err.status_code == 503, err
                return False
    wait_until(served, 20, "requests served again", interval=0.2)
    reloaded_in = time.monotonic() - started
    assert reloaded_in < 15
    since = "".join(p.log()[logged[p.name]:] for p in cluster.platforms)
    assert since.count("loaded the shared credit from the database") == 1  # by one instance, after the restart

    def book() -> int | None:
        settles = [e for e in read_ledger(cluster.database_url) if e["key_id"] == key_id and e["kind"] == "settle"]
        return -sum(e["amount"] for e in settles) if len(settles) == 2 else None
    spent = wait_until(book, 10, "both settles in the book")
    shown = httpx.get(f"{east.url}/api/admin/keys/{key_id}", headers=east.admin_headers, timeout=5).json()["credit"]
    assert shown["balance_micros"] == 1_000_000 - spent  # the rebuilt balance is the book's
