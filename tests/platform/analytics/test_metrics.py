"""/metrics: what the platform counts, with bounded labels, in a registry of its own."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from arenahub.platform.app import create_app
from arenahub.platform.metrics import PlatformMetrics
from arenahub.platform.records import RequestRecord
from arenahub.platform.settings import PlatformSettings
from arenahub.platform.storage import accounts, db
from arenahub.protocol import frames
from tests.platform.analytics.records_data import NOW


def scrape(http: TestClient) -> dict[str, Any]:
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def samples(families: dict[str, Any], name: str, suffix: str = "") -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of ``name`` by their labels, less ``platform_instance``, which every sample carries."""
    found = [s for s in families[name].samples if s.name == name + suffix]
    assert all(s.labels.get("platform_instance", "").count("-") >= 2 for s in found), found
    return {tuple(sorted((k, v) for k, v in s.labels.items() if k != "platform_instance")): s.value for s in found}


def test_metrics_count_requests_with_bounded_labels(tmp_path: Any) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"

    async def prepare() -> tuple[tuple[str, str], str]:
        engine = db.create_engine(url)
        await db.migrate(engine)
        client = await accounts.create_client(engine, name="c1", max_concurrent=3)
        _, key = await accounts.create_key(engine, name="k")
        await engine.dispose()
        return client, key

    (client_id, api_key), key = asyncio.run(prepare())
    with TestClient(create_app(PlatformSettings(database_url=url, admin_token="adm-secret"))) as http:
        families = scrape(http)
        for name in ("arenahub_inflight_requests", "arenahub_active_streams", "arenahub_connected_clients",
                     "arenahub_queue_depth", "arenahub_record_backlog"):
            assert samples(families, name) == {(): 0.0}, name

        with http.websocket_connect("/api/ws") as ws:
            ws.send_bytes(frames.encode(frames.Hello(version=frames.PROTOCOL_VERSION, client_id=client_id,
                                                     api_key=api_key, models=["m1"])))
            frames.decode(ws.receive_bytes())  # welcome
            assert samples(scrape(http), "arenahub_connected_clients") == {(): 1.0}
            answer: dict[str, Any] = {}
            post = threading.Thread(target=lambda: answer.update(r=http.post(
                "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                json={"model": "m1", "messages": [{"role": "user", "content": "hello"}]})))
            post.start()
            while not isinstance(frame := frames.decode(ws.receive_bytes()), frames.Request):
                pass
            families = scrape(http)
            assert samples(families, "arenahub_inflight_requests") == {(): 1.0}
            assert samples(families, "arenahub_active_streams") == {(): 1.0}
            ws.send_bytes(frames.encode(frames.Chunk(id=frame.id, events=[[{"index": 0, "delta": {"content": "hi"}}]])))
            ws.send_bytes(frames.encode(frames.End(id=frame.id, usage={"prompt_tokens": 7, "completion_tokens": 3})))
            post.join(10)
            assert answer["r"].status_code == 200, answer["r"].text

        families = scrape(http)
        assert samples(families, "arenahub_requests", "_total") == {
            (("client", client_id), ("model", "m1"), ("status", "200")): 1.0}
        # The platform's own count ("hello" and "hi": one token each), not the client's claim of 7 and 3,
        # which is within the tolerance (50 tokens) and so not flagged either.
        assert samples(families, "arenahub_tokens", "_total") == {
            (("model", "m1"), ("type", "prompt")): 1.0, (("model", "m1"), ("type", "completion")): 1.0}
        assert samples(families, "arenahub_client_usage_claim_gaps", "_total") == {}
        assert samples(families, "arenahub_request_latency_seconds", "_count") == {(("model", "m1"),): 1.0}
        assert samples(families, "arenahub_time_to_first_token_seconds", "_count") == {(("model", "m1"),): 1.0}
        assert samples(families, "arenahub_inflight_requests") == {(): 0.0}
        text = http.get("/metrics").text
        assert all(secret not in text for secret in ("adm-secret", key, api_key)), "no secrets"

        # Bounded labels: a flood of clients and models adds at most the capped number of series.
        metrics: PlatformMetrics = http.app.state.platform.metrics
        for n in range(300):
            metrics.request_finished(RequestRecord(
                id=f"r{n}", created_at=NOW, key_id="k", client_id=f"cl_{n}", model=f"model-{n}", stream=False,
                status=200, error_code=None, latency_ms=5.0, ttft_ms=1.0, prompt_tokens=1, completion_tokens=1,
                attempts=1))
        families = scrape(http)
        requests = samples(families, "arenahub_requests", "_total")
        clients = {dict(labels)["client"] for labels in requests}
        models = {dict(labels)["model"] for labels in requests}
        assert len(clients) == 51 and "other" in clients and len(models) == 51 and "other" in models
        assert sum(requests.values()) == 301
        assert {dict(k)["client"]: v for k, v in requests.items()}["other"] == 300 - 49


def test_each_platform_has_its_own_registry(tmp_path: Any) -> None:
    apps = [create_app(PlatformSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / f'{n}.db'}")) for n in (1, 2)]
    with TestClient(apps[0]) as one, TestClient(apps[1]) as two:
        one.app.state.platform.metrics.request_finished(RequestRecord(
            id="r", created_at=NOW, key_id="k", client_id=None, model="m", stream=True, status=503,
            error_code="no_client", latency_ms=3.0, ttft_ms=None, prompt_tokens=0, completion_tokens=0, attempts=0))
        assert samples(scrape(one), "arenahub_requests", "_total") == {
            (("client", "none"), ("model", "m"), ("status", "503")): 1.0}
        assert samples(scrape(two), "arenahub_requests", "_total") == {}
