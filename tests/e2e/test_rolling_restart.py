"""A rolling restart (issue 13): three instances behind a real HAProxy (deploy/haproxy.cfg), restarted one
after another under steady load from the official openai package (streamed and whole answers). Each
instance, on SIGTERM, answers 503 to health checks while it still serves for the notice period (HAProxy
takes it out meanwhile), asks its clients to move (a Move frame: they connect to another instance while
their answers in flight finish), finishes its answers, then exits. No request whose answer is shorter
than the grace fails."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.haproxy import HAProxy

from .cluster import MODEL, running_cluster
from .harness import ask, wait_until

pytestmark = pytest.mark.postgres
WORDS = 30  # an answer of about 1 s ([[delay_ms=30]] between words), well under the grace
GRACE_SECONDS = 10


@pytest.mark.timeout(300)
def test_a_rolling_restart_of_three_instances_under_load_fails_no_request(tmp_path: Path, databases: Any) -> None:
    with running_cluster(tmp_path, databases.new("postgres"), clients=False,
                         env={"ARENAHUB_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS)}) as cluster:
        lb = HAProxy([(p.name, "127.0.0.1", p.port) for p in cluster.platforms], tmp_path).start()
        try:
            names = {p.name for p in cluster.platforms}
            lb.wait_up(names)
            # Two clients give the load balancer's URL; one lists the instances (an operator without one).
            clients = [cluster.listing_client(f"behind-lb-{n}", platform_url=lb.url + "/api",
                                              max_concurrent_requests=16) for n in (1, 2)]
            clients.append(cluster.listing_client("listing", max_concurrent_requests=16))
            key = cluster.key()["key"]
            outcomes: list[tuple[str, str]] = []
            stop = threading.Event()

            def load(worker: int) -> None:
                consumer = openai.OpenAI(base_url=lb.url + "/v1", api_key=key, max_retries=0, timeout=30)
                n = 0
                while not stop.is_set():
                    n += 1
                    try:
                        asked = ask(f"[[words={WORDS}]] [[delay_ms=30]] w{worker} n{n}")
                        if worker % 2:  # half the consumers stream, half wait for whole answers
                            whole = consumer.chat.completions.create(model=MODEL, max_tokens=WORDS * 4, messages=asked)
                            text = whole.choices[0].message.content or ""
                        else:
                            stream = consumer.chat.completions.create(model=MODEL, stream=True, max_tokens=WORDS * 4,
                                                                      messages=asked)
                            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
                        expected = " ".join(f"w{i}" for i in range(WORDS))
                        outcomes.append(("ok", "") if text == expected else ("short", text[-80:]))
                    except openai.APIError as err:
                        outcomes.append(("error", f"{type(err).__name__}: {err}"))

            with ThreadPoolExecutor(8) as pool:
                running = [pool.submit(load, worker) for worker in range(8)]
                try:
                    wait_until(lambda: len(outcomes) >= 6, 30, "load through the load balancer")
                    for platform in cluster.platforms:
                        started = time.monotonic()
                        platform.terminate()
                        assert platform.wait_stopped(GRACE_SECONDS + 15) in (0, -signal.SIGTERM), platform.tail()
                        stopped = time.monotonic()
                        platform.start().wait_ready()
                        lb.wait_up(names, timeout=20)
                        wait_until(lambda: all(c.status()["state"] == "connected" for c in clients), 20,
                                   "every client connected")
                        print(f"{platform.name}: stopped in {stopped - started:.1f} s, serving again "
                              f"{time.monotonic() - stopped:.1f} s later; {len(outcomes)} answers so far")
                finally:
                    stop.set()
                for done in running:
                    done.result()
        finally:
            lb.stop()

        failed = [o for o in outcomes if o[0] != "ok"]
        assert not failed, f"{len(failed)} of {len(outcomes)} failed: {failed[:5]}"
        assert len(outcomes) >= 30
        logs = {p.name: p.log() for p in cluster.platforms}
        for name, log in logs.items():
            assert "asked to move to another instance" in log, name
            assert " cut: " not in log, name  # no stream outlasted the grace
        for client in clients:  # each was on an instance when it restarted
            assert "asked this client to move" in client.log(), client.name
