"""Wrong credentials are throttled per address (throttle.CredentialThrottle), on every door: the admin
API, the consumer API, a client's plain-HTTP calls and its tunnel; and a right credential from
another address still gets in."""

import pytest
from starlette.testclient import TestClient

from arenahub.platform.throttle import CredentialThrottle, LocalThrottleStore, ThrottleRule, TooManyFailedCredentials
from arenahub.protocol import frames
from tests.platform.support import platform_of, register, serving

LIMIT = 5


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def local(per_address: int, clock: Clock) -> LocalThrottleStore:
    return LocalThrottleStore(ThrottleRule(per_address, address_window=60), clock)


async def test_an_address_waits_after_too_many_failures_and_only_that_address():
    clock = Clock()
    seen: list[tuple[str, bool]] = []
    throttle = CredentialThrottle(local(3, clock), on_refusal=lambda k, t: seen.append((k, t)))
    for _ in range(3):
        await throttle.check("1.2.3.4", "consumer_key")
        await throttle.failed("1.2.3.4", "consumer_key")
    with pytest.raises(TooManyFailedCredentials) as refused:
        await throttle.check("1.2.3.4", "consumer_key")
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "60"}
    await throttle.check("5.6.7.8", "consumer_key")  # another address is not held back
    clock.now += 30
    with pytest.raises(TooManyFailedCredentials) as refused:
        await throttle.check("1.2.3.4", "admin_token")
    assert refused.value.headers == {"Retry-After": "30"}
    clock.now += 30
    await throttle.check("1.2.3.4", "consumer_key")  # the window moved on
    assert seen == [("consumer_key", False)] * 3 + [("consumer_key", True), ("admin_token", True)]


async def test_memory_stays_bounded_under_a_spray_from_many_addresses():
    clock = Clock()
    store = local(3, clock)
    throttle = CredentialThrottle(store)
    for i in range(50_000):
        await throttle.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", "client_key")
        await throttle.failed("10.0.0.1", "client_key")
    inner = store.throttle
    assert max(len(times) for times in inner._by_address.values()) == 3
    clock.now += 61
    await throttle.check("10.0.0.1", "client_key")
    assert not inner._by_address


async def test_zero_per_address_is_no_throttle_and_keeps_nothing():
    clock = Clock()
    seen: list[tuple[str, bool]] = []
    store = local(0, clock)
    throttle = CredentialThrottle(store, on_refusal=lambda k, t: seen.append((k, t)))
    for _ in range(100):
        await throttle.check("1.2.3.4", "client_key")
        await throttle.failed("1.2.3.4", "client_key")
    assert seen == [("client_key", False)] * 100 and not store.throttle._by_address
    # Without a store: this process counts, allowing per_address (the platform's setting) in a minute.
    default = CredentialThrottle(per_address=1)
    await default.failed("1.2.3.4", "client_key")
    with pytest.raises(TooManyFailedCredentials):
        await default.check("1.2.3.4", "client_key")
    with pytest.raises(TypeError):
        CredentialThrottle(store, per_address=3)


@pytest.fixture
def http(tmp_path):
    with serving(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", "adm-right", credential_failures_per_minute=LIMIT) as h:
        yield h


def _refused_after_the_limit(send, wrong_code):
    for _ in range(LIMIT):
        r = send()
        assert r.status_code in (401, 403) and r.json()["error"]["code"] == wrong_code, r.text
    r = send()
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "too_many_failed_credentials"
    assert int(r.headers["retry-after"]) > 0


def test_wrong_admin_tokens_are_throttled(http: TestClient):
    _refused_after_the_limit(lambda: http.get("/api/admin/keys", headers={"Authorization": "Bearer adm-wrong"}),
                             "invalid_admin_token")
    # Even the right token waits now, from this address: a guesser learns nothing while it waits.
    assert http.get("/api/admin/keys").status_code == 429
    metrics, instance = http.get("/metrics").text, platform_of(http).instance_id
    for throttled, count in (("no", 5), ("yes", 2)):
        assert (f'arenahub_refused_credentials_total{{kind="admin_token",platform_instance="{instance}",'
                f'throttled="{throttled}"}} {count}.0') in metrics


def test_wrong_consumer_keys_are_throttled(http: TestClient):
    _refused_after_the_limit(lambda: http.post("/v1/chat/completions", headers={"Authorization": "Bearer sk-wrong"},
                                               json={"model": "m", "messages": []}), "invalid_api_key")
    assert http.get("/v1/models", headers={"Authorization": "Bearer sk-wrong"}).status_code == 429


def test_wrong_client_keys_are_throttled_on_http_and_on_the_tunnel(http: TestClient):
    client_id, _ = register(http)
    _refused_after_the_limit(lambda: http.post(f"/api/clients/{client_id}/heartbeat", json={},
                                               headers={"Authorization": "Bearer ck-wrong"}), "invalid_credentials")
    with http.websocket_connect("/api/ws") as ws:
        ws.send_bytes(frames.encode(frames.Hello(version=frames.PROTOCOL_VERSION, client_id=client_id,
                                                 api_key="ck-wrong")))
        refused = frames.decode(ws.receive_bytes())
        assert isinstance(refused, frames.Refused) and refused.code == "too_many_failed_credentials"
        assert refused.retry is True
