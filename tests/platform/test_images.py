"""POST /v1/images/generations on the platform, in process, with real client sessions over the tunnel:
routed only to clients that declare the images capability, admitted, billed per image on the
platform's own count and recorded as a chat completion is."""

from __future__ import annotations

import base64
import functools
import threading
from contextlib import contextmanager
from typing import Any

import pytest

from arenahub.platform import images_api
from arenahub.platform.image_answer import ImageCollector
from arenahub.protocol import frames
from tests.platform.support import eventually, next_cancel, next_request, platform_of, register, serving

TOKEN = "adm-images"
MODEL = "img-model"
PRICE = 40_000  # micro-USD an image
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@pytest.fixture
def admin(database_url):
    with serving(database_url, TOKEN, record_flush_seconds=0.05, total_timeout_seconds=10) as http:
        assert http.put(f"/api/admin/prices/{MODEL}", json={"prompt": "0", "completion": "0",
                                                             "image": "0.04"}).status_code == 200
        yield http


def new_key(http, credit: str | None = None) -> tuple[str, str]:
    made = http.post("/api/admin/keys", json={"name": "k", **({"credit": credit} if credit else {})}).json()
    return made["key"], made["id"]


@contextmanager
def client(http, *, capabilities=("chat", "images"), models=(MODEL,), name="c"):
    client_id, api_key = register(http, name)
    with http.websocket_connect("/api/ws") as ws:
        ws.send_bytes(frames.encode(frames.Hello(version=frames.PROTOCOL_VERSION, client_id=client_id,
                                                 api_key=api_key, models=list(models),
                                                 capabilities=list(capabilities))))
        assert isinstance(frames.decode(ws.receive_bytes()), frames.Welcome)
        ws.client_id = client_id
        yield ws


def generate(http, key: str, **body: Any):
    return http.post("/v1/images/generations", headers={"Authorization": f"Bearer {key}"},
                     json={"model": MODEL, "prompt": "a red square", **body})


def in_background(http, key: str, **body: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.setdefault("response", generate(http, key, **body)))
    thread.start()
    return thread, out


def answer_images(ws, request: frames.Request, events: list[list[dict[str, Any]]]) -> None:
    for event in events:
        ws.send_bytes(frames.encode(frames.Chunk(id=request.id, events=[event])))
    ws.send_bytes(frames.encode(frames.End(id=request.id, usage={"prompt_tokens": 999, "images": 99})))


def record(http, request_id: str) -> dict[str, Any]:
    def read():
        r = http.get(f"/api/admin/requests/{request_id}")
        return r.json() if r.status_code == 200 else None
    return eventually(read, what=f"the record of {request_id}")


def balance(http, key_id: str) -> int:
    return http.get(f"/api/admin/keys/{key_id}").json()["credit"]["balance_micros"]


def test_an_image_request_is_served_billed_per_image_and_recorded(admin):
    key, key_id = new_key(admin, credit="1")
    with client(admin) as ws:
        thread, out = in_background(admin, key, n=2, size="1024x1024")
        request = next_request(ws)
        assert request.kind == frames.IMAGES
        assert frames.IMAGES not in str(bytes(request.body)) and b'"n":2' in bytes(request.body).replace(b" ", b"")
        # Two images, and a third the request did not ask for: dropped, not billed; the claim is ignored.
        answer_images(ws, request, [[{"index": 0, "url": "https://img.example/0.png", "revised_prompt": "red"}],
                                    [{"index": 1, "url": "https://img.example/1.png"}],
                                    [{"index": 2, "url": "https://img.example/2.png"}]])
        thread.join(10)
    response = out["response"]
    assert response.status_code == 200, response.text
    assert response.json()["data"] == [{"url": "https://img.example/0.png", "revised_prompt": "red"},
                                       {"url": "https://img.example/1.png"}]
    assert response.headers["x-arenahub-client"] == ws.client_id
    rec = record(admin, response.headers["x-request-id"])
    assert rec["status"] == 200 and rec["images"] == 2 and rec["cost"] == 2 * PRICE
    assert rec["model"] == MODEL and rec["stream"] is False and rec["completion_tokens"] == 0
    assert balance(admin, key_id) == 1_000_000 - 2 * PRICE


def test_base64_images_come_in_pieces_and_leave_whole(admin):
    key, _ = new_key(admin)
    big = base64.b64encode(bytes(range(256)) * 1200).decode() + PNG  # about 400 kB: more than one piece
    with client(admin) as ws:
        thread, out = in_background(admin, key, response_format="b64_json")
        request = next_request(ws)
        pieces = [big[i:i + 65536] for i in range(0, len(big), 65536)]
        answer_images(ws, request, [[{"index": 0, "b64_json": piece}] for piece in pieces])
        thread.join(10)
    assert out["response"].status_code == 200, out["response"].text
    assert out["response"].json()["data"] == [{"b64_json": big}]
    assert record(admin, out["response"].headers["x-request-id"])["images"] == 1


def test_only_a_client_with_the_images_capability_is_chosen(admin):
    key, _ = new_key(admin)
    with client(admin, capabilities=("chat", "models"), name="plain") as plain:
        # Nobody can: a clear 503 at once, recorded.
        refused = generate(admin, key)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "no_client_available"
        assert "'images' capability" in refused.json()["error"]["message"]
        assert MODEL in refused.json()["error"]["message"]
        assert record(admin, _last_id(admin))["status"] == 503
        with client(admin, name="able") as able:
            for _ in range(3):
                thread, out = in_background(admin, key)
                request = next_request(able)
                answer_images(able, request, [[{"index": 0, "url": "https://img.example/x.png"}]])
                thread.join(10)
                assert out["response"].headers["x-arenahub-client"] == able.client_id
        assert plain.client_id != able.client_id


def _last_id(http) -> str:
    return eventually(lambda: http.get("/api/admin/requests").json()["data"], what="a record")[0]["id"]


def test_a_heartbeat_can_bring_the_images_capability(admin):
    key, _ = new_key(admin)
    with client(admin, capabilities=("chat",)) as ws:
        assert generate(admin, key).status_code == 503
        ws.send_bytes(frames.encode(frames.Heartbeat(stats=frames.ClientStats(), capabilities=["chat", "images"])))
        session = platform_of(admin).registry.get(ws.client_id)
        eventually(lambda: "images" in session.capabilities, what="the capability")
        thread, out = in_background(admin, key)
        answer_images(ws, next_request(ws), [[{"index": 0, "url": "https://img.example/x.png"}]])
        thread.join(10)
        assert out["response"].status_code == 200


def test_a_key_without_credit_for_the_images_is_refused(admin):
    key, key_id = new_key(admin, credit="0.05")  # one image's worth, not two
    with client(admin):
        refused = generate(admin, key, n=2)
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "insufficient_quota"
    assert balance(admin, key_id) == 50_000
    rec = record(admin, _last_id(admin))
    assert rec["status"] == 402 and rec["images"] == 0 and rec["model"] == MODEL


def test_an_answer_without_a_usable_image_is_a_502_and_costs_nothing(admin):
    key, key_id = new_key(admin, credit="1")
    with client(admin) as ws:
        thread, out = in_background(admin, key)
        # Not a URL, another index, the other format: nothing the consumer can use.
        answer_images(ws, next_request(ws), [[{"index": 0, "url": "javascript:alert(1)"}],
                                             [{"index": 5, "url": "https://img.example/5.png"}],
                                             [{"index": 0, "b64_json": PNG}]])
        thread.join(10)
    assert out["response"].status_code == 502 and out["response"].json()["error"]["code"] == "no_image"
    rec = record(admin, out["response"].headers["x-request-id"])
    assert rec["status"] == 502 and rec["images"] == 0 and rec["cost"] == 0
    assert balance(admin, key_id) == 1_000_000


def test_an_answer_past_its_bound_is_cut_and_costs_nothing(admin, monkeypatch):
    monkeypatch.setattr(images_api, "ImageCollector",
                        functools.partial(ImageCollector, max_image_chars=1000, max_answer_chars=1500))
    key, key_id = new_key(admin, credit="1")
    with client(admin) as ws:
        thread, out = in_background(admin, key, response_format="b64_json")
        request = next_request(ws)
        answer_images(ws, request, [[{"index": 0, "b64_json": "A" * 800}], [{"index": 0, "b64_json": "A" * 800}]])
        thread.join(10)
        cancel = next_cancel(ws)  # a Routing frame may come first (a change to the client's row, heard)
    assert out["response"].status_code == 502, out["response"].text
    assert out["response"].json()["error"]["code"] == "image_answer_too_large"
    assert isinstance(cancel, frames.Cancel) and cancel.id == request.id
    assert record(admin, out["response"].headers["x-request-id"])["cost"] == 0
    assert balance(admin, key_id) == 1_000_000


@pytest.mark.parametrize("body, status, code, param", [
    (b"", 400, "invalid_json", None),
    (b"{not json", 400, "invalid_json", None),
    (b"[]", 400, "invalid_request", None),
    (b'{"model": "img-model"}', 400, "invalid_request", "prompt"),
    (b'{"prompt": "x"}', 400, "invalid_request", "model"),
    (b'{"model": "img-model", "prompt": "x", "n": 0}', 400, "invalid_request", "n"),
    (b'{"model": "img-model", "prompt": "x", "n": 11}', 400, "invalid_request", "n"),
    (b'{"model": "img-model", "prompt": "x", "n": true}', 400, "invalid_request", "n"),
    (b'{"model": "img-model", "prompt": "x", "response_format": "png"}', 400, "invalid_request", "response_format"),
    (b'{"model": "img-model", "prompt": "x", "size": "huge"}', 400, "invalid_request", "size"),
    (b'{"model": "img-model", "prompt": "x", "stream": true}', 400, "invalid_request", "stream"),
    (b'{"model": "img-model", "prompt": 5}', 400, "invalid_request", "prompt"),
    (b'{"model": "nope", "prompt": "x"}', 404, "model_not_found", "model"),
])
def test_bad_requests_are_openai_errors_naming_the_field(admin, body, status, code, param):
    key, _ = new_key(admin)
    with client(admin):
        r = admin.post("/v1/images/generations", content=body,
                       headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["param"] == param and error["message"]


def test_a_wrong_key_is_401_and_leaves_no_record(admin):
    r = admin.post("/v1/images/generations", headers={"Authorization": "Bearer sk-wrong"},
                   json={"model": MODEL, "prompt": "x"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
