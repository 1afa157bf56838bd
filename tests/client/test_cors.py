"""platform_features.allowed_origins: CORS on the client's local endpoints, only for the listed origins."""

import dataclasses

import pytest
from starlette.testclient import TestClient

from arenahub.client.app import create_app
from arenahub.client.config import disabled_client_config

ALLOWED = "https://your-platform-domain.com"
OTHER = "https://evil.example"


@pytest.fixture
def local(tmp_path):
    def make(origins):
        config = dataclasses.replace(disabled_client_config(tmp_path / "config.jsonc"), allowed_origins=origins)
        return TestClient(create_app(config))
    return make


def preflight(http, path, origin, method="GET"):
    return http.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                       "Access-Control-Request-Headers": "content-type"})


@pytest.mark.parametrize("path, method", [("/health", "GET"), ("/platform/status", "GET"),
                                          ("/platform/register", "POST"), ("/platform/drain", "POST"),
                                          ("/platform/undrain", "POST")])
def test_listed_origin_gets_access_and_others_do_not(local, path, method):
    with local((ALLOWED,)) as http:
        ok = preflight(http, path, ALLOWED, method)
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == ALLOWED
        assert method in ok.headers["access-control-allow-methods"]

        refused = preflight(http, path, OTHER, method)
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers

        if method == "GET":
            got = http.get(path, headers={"Origin": ALLOWED})
            assert got.status_code == 200 and got.headers["access-control-allow-origin"] == ALLOWED
            got = http.get(path, headers={"Origin": OTHER})
            assert got.status_code == 200 and "access-control-allow-origin" not in got.headers


def test_no_cross_origin_access_by_default(local):
    with local(()) as http:
        got = http.get("/health", headers={"Origin": ALLOWED})
        assert got.status_code == 200
        assert not [h for h in got.headers if h.startswith("access-control-")]
        assert preflight(http, "/health", ALLOWED).status_code == 405  # no CORS layer: OPTIONS is not a route


def test_any_origin(local):
    with local(("*",)) as http:
        assert http.get("/health", headers={"Origin": OTHER}).headers["access-control-allow-origin"] == "*"
