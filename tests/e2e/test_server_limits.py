"""The platform program against peers that send slowly, stop, flood, nest JSON deeply or try to forge
log lines (issue 11, items 7, 9 and 10): raw sockets on loopback against the real process.

Linux routes all of 127.0.0.0/8 to loopback: a socket bound to 127.0.0.2 before it connects is
another client address to the platform.
"""

from __future__ import annotations

import select
import socket
import time

import httpx
import pytest

from arenahub.platform.exchange import CLIENT_CLOSED
from tests.servers import read_all

from .harness import MODELS, Platform, Shared, ask, read_records, wait_until

ADMIN_TOKEN = "adm-e2e-server-limits"
PER_ADDRESS = 16


@pytest.fixture(scope="module")
def shared_env() -> dict[str, str]:
    return {"ARENAHUB_HEADER_TIMEOUT_SECONDS": "1", "ARENAHUB_BODY_TIMEOUT_SECONDS": "1",
            "ARENAHUB_MAX_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS), "ARENAHUB_ADMIN_TOKEN": ADMIN_TOKEN,
            "ARENAHUB_RECORD_FLUSH_SECONDS": "0.2"}


def connect(platform: Platform, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.settimeout(10)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", platform.port))
    return sock



def get(platform: Platform, path: str, source: str) -> bytes:
    with connect(platform, source) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        return read_all(sock)


def chat_head(key: str, length: int) -> bytes:
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


def log_since(platform: Platform, mark: int) -> str:
    return platform.log()[mark:]


# -- item 7: timeouts and caps -------------------------------------------------------------------
def test_a_connection_that_sends_no_headers_is_closed(shared: Shared) -> None:
    with connect(shared.platform) as sock:
        started = time.monotonic()
        answer = read_all(sock)
    assert time.monotonic() - started < 3
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_stalled_upload_gets_408_and_one_quiet_log_line(shared: Shared) -> None:
    mark = len(shared.platform.log())
    with connect(shared.platform) as sock:
        sock.sendall(chat_head(shared.key, 1000) + b'{"model": "')
        started = time.monotonic()
        answer = read_all(sock)
    assert time.monotonic() - started < 3
    assert answer.startswith(b"HTTP/1.1 408 ")
    wait_until(lambda: "client_closed" in log_since(shared.platform, mark), 5, "the client_closed line")
    time.sleep(0.3)
    log = log_since(shared.platform, mark)
    assert "Traceback" not in log and "ERROR" not in log
    assert log.count("client_closed") == 1


def closed_records(platform: Platform) -> int:
    return sum(1 for r in read_records(platform.database_url)
               if r["status"] == CLIENT_CLOSED and r["error_code"] == "client_closed")


def test_a_consumer_that_drops_its_upload_is_recorded_499_without_a_traceback(shared: Shared) -> None:
    mark = len(shared.platform.log())
    recorded = closed_records(shared.platform)
    with connect(shared.platform) as sock:
        sock.sendall(chat_head(shared.key, 1000) + b'{"model": "')
        time.sleep(0.3)  # the platform is reading the body
    wait_until(lambda: "client_closed" in log_since(shared.platform, mark), 5, "the client_closed line")
    wait_until(lambda: closed_records(shared.platform) == recorded + 1, 5, "a 499 client_closed record")
    log = log_since(shared.platform, mark)
    assert "Traceback" not in log and "ERROR" not in log
    assert log.count("client_closed") == 1 and "INFO" in log


def test_a_flood_from_one_address_does_not_stop_another(shared: Shared) -> None:
    flood: list[socket.socket] = []
    try:
        for _ in range(PER_ADDRESS * 5):
            flood.append(connect(shared.platform, "127.0.0.2"))
        refused = flood[-1]
        assert select.select([refused], [], [], 5)[0]
        assert read_all(refused).startswith(b"HTTP/1.1 503 ")

        assert get(shared.platform, "/api/health", "127.0.0.3").startswith(b"HTTP/1.1 200 ")
        auth = {"Authorization": f"Bearer {shared.key}"}
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.4"), timeout=10) as http:
            resp = http.post(shared.platform.v1 + "/chat/completions", headers=auth,
                             json={"model": MODELS[0], "messages": ask("still served?")})
        assert resp.status_code == 200, resp.text
    finally:
        for sock in flood:
            sock.close()


def test_the_client_tunnel_outlives_the_timeouts(shared: Shared) -> None:
    time.sleep(2.5)  # longer than both timeouts, with no request on the tunnel
    assert shared.client.status()["state"] == "connected"
    answer = shared.consumer.chat.completions.create(model=MODELS[0], messages=ask("hello after a pause"))
    assert answer.choices[0].message.content


# -- item 10: deep JSON --------------------------------------------------------------------------
@pytest.mark.parametrize("body", [
    b"[" * 500_000,
    b'{"model": "%s", "messages": [{"role": "user", "content": "hi"}], "metadata": ' % MODELS[0].encode()
    + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"model": "%s", "messages": [{"role": "user", "content": "hi"}], "metadata": ' % MODELS[0].encode()
    + b'{"a":' * 65 + b"1" + b"}" * 65 + b"}",
], ids=["500000-deep", "100000-deep-metadata", "66-deep"])
def test_deeply_nested_json_is_400_on_the_consumer_api(shared: Shared, body: bytes) -> None:
    resp = httpx.post(shared.platform.v1 + "/chat/completions", content=body, timeout=10,
                      headers={"Authorization": f"Bearer {shared.key}", "Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    if body.startswith(b"{"):
        assert error["code"] == "invalid_json" and "64" in error["message"]


def test_deeply_nested_json_is_400_on_the_admin_api(shared: Shared) -> None:
    body = b'{"name": "deep", "metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    resp = httpx.post(shared.platform.url + "/api/admin/keys", content=body, timeout=10,
                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "invalid_json"


# -- item 9: log lines ---------------------------------------------------------------------------
def test_a_newline_in_a_drain_reason_cannot_forge_a_log_line(shared: Shared) -> None:
    mark = len(shared.platform.log())
    forged = "bye\n2026-01-01 00:00:00,000 WARNING arenahub.platform: admin token reset"
    base = f"{shared.platform.url}/api/admin/clients/{shared.client.client_id}"
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        resp = httpx.post(base + "/drain", json={"reason": forged}, headers=headers, timeout=10)
        assert resp.status_code < 300, resp.text
        wait_until(lambda: "drained by an administrator" in log_since(shared.platform, mark), 5, "the drain line")
    finally:
        httpx.post(base + "/undrain", headers=headers, timeout=10).raise_for_status()
    lines = log_since(shared.platform, mark).splitlines()
    assert not any(line.startswith("2026-01-01") for line in lines)
    assert any(line.endswith("drained by an administrator: bye\\n2026-01-01 00:00:00,000 WARNING "
                             "arenahub.platform: admin token reset") for line in lines)
