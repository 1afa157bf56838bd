"""platform_features.allowed_origins in the bridge's config.jsonc: read by the bridge, CORS on its HTTP endpoints."""

import json

import pytest
from starlette.testclient import TestClient

from arenahub.bridge.config import load_bridge_config
from arenahub.bridge.runtime import Bridge
from arenahub.bridge.server import create_app
from arenahub.client.config import disabled_client_config
from arenahub.jsonc import ConfigError

ALLOWED = "https://your-platform-domain.com"
OTHER = "https://evil.example"


def write_config(tmp_path, features=None):
    data = {"session_id": "", "message_id": ""}
    if features is not None:
        data["platform_features"] = features
    (tmp_path / "config.jsonc").write_text(json.dumps(data, indent=2))
    (tmp_path / "models.json").write_text(json.dumps({"gpt-test": "0199e8e9-01ed-73e0-8ba1-5d5b0c3c6f2e"}))
    return tmp_path / "config.jsonc"


def bridge_app(path):
    return TestClient(create_app(Bridge(path), disabled_client_config(path), 5102))


def test_listed_origin_may_call_the_openai_endpoints(tmp_path):
    with bridge_app(write_config(tmp_path, {"allowed_origins": [ALLOWED + "/"]})) as http:
        # What the openai package sends from a browser before a chat completion.
        ok = http.options("/v1/chat/completions", headers={
            "Origin": ALLOWED, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os"})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == ALLOWED
        assert "x-stainless-os" in ok.headers["access-control-allow-headers"]
        assert "access-control-allow-credentials" not in ok.headers

        refused = http.options("/v1/chat/completions", headers={
            "Origin": OTHER, "Access-Control-Request-Method": "POST"})
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers

        for path in ("/v1/models", "/bridge/status", "/health"):
            got = http.get(path, headers={"Origin": ALLOWED})
            assert got.status_code == 200 and got.headers["access-control-allow-origin"] == ALLOWED, path
            got = http.get(path, headers={"Origin": OTHER})
            assert got.status_code == 200 and "access-control-allow-origin" not in got.headers, path
        # Errors are readable by the allowed page too (here: no session captured yet).
        failed = http.post("/v1/chat/completions", headers={"Origin": ALLOWED},
                           json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})
        assert failed.status_code == 503 and failed.headers["access-control-allow-origin"] == ALLOWED


@pytest.mark.parametrize("features", [None, {}, {"allowed_origins": []}])
def test_no_cross_origin_access_by_default(tmp_path, features):
    with bridge_app(write_config(tmp_path, features)) as http:
        got = http.get("/v1/models", headers={"Origin": ALLOWED})
        assert got.status_code == 200
        assert not [h for h in got.headers if h.startswith("access-control-")]
        pre = http.options("/v1/chat/completions", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in pre.headers


def test_bridge_config_reads_allowed_origins(tmp_path):
    config = load_bridge_config(write_config(tmp_path, {"allowed_origins": ["HTTPS://A.example:443", "*"],
                                                        "max_concurrent_requests": 3}))
    assert config.allowed_origins == ("https://a.example", "*")
    assert config.public()["allowed_origins"] == ["https://a.example", "*"]
    assert config.ignored == ()  # platform_features is a known key


@pytest.mark.parametrize("features, key, line, words", [
    ({"allowed_origins": "https://a.example"}, "platform_features.allowed_origins", 5, "must be a list"),
    ({"allowed_origins": ["https://a.example", "https://b.example/path"]}, "platform_features.allowed_origins[1]",
     7, "no path"),
    ({"allowed_origins": [ALLOWED, None]}, "platform_features.allowed_origins[1]", 7, "must be a string"),
    ("yes", "platform_features", 4, "must be an object"),
])
def test_bad_allowed_origins_name_key_and_line(tmp_path, features, key, line, words):
    with pytest.raises(ConfigError) as info:
        load_bridge_config(write_config(tmp_path, features))
    assert (info.value.key, info.value.line) == (key, line)
    assert words in info.value.reason


@pytest.mark.parametrize("features", [None, {"allowed_origins": [ALLOWED]}])
def test_a_post_from_a_page_not_listed_is_refused(tmp_path, features):
    with bridge_app(write_config(tmp_path, features)) as http:
        chat = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
        for path in ("/v1/chat/completions", "/platform/drain", "/internal/doctor", "/internal/reload"):
            # A "simple" cross-site POST (text/plain: no preflight), as any web page can send.
            refused = http.post(path, headers={"Origin": OTHER, "Content-Type": "text/plain"}, content=b"{}")
            assert refused.status_code == 403, path
            error = refused.json()["error"]
            assert error["code"] == "origin_not_allowed" and OTHER in error["message"]
        # Programs send no Origin; the listed origin gets through to the real answer.
        assert http.post("/v1/chat/completions", json=chat).status_code == 503
        listed = http.post("/v1/chat/completions", headers={"Origin": ALLOWED}, json=chat)
        assert listed.status_code == (503 if features else 403)
