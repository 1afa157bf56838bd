"""deploy/haproxy.cfg and how arenahub/tools/haproxy.py makes it concrete: only the machine's lines change,
and HAProxy itself accepts the example and each rendering of it."""

from __future__ import annotations

import pwd
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arenahub.tools import haproxy
from tests.haproxy import HAProxy, haproxy_binary
from tests.servers import ServerThread

TEMPLATE = haproxy.TEMPLATE.read_text()


def _directives(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_rendering_replaces_only_the_machines_lines(tmp_path: Path) -> None:
    rendered = haproxy.render(TEMPLATE, [("a", "127.0.0.1", 9001), ("b", "::1", 9002)], bind="127.0.0.1:9000",
                              stats_socket=tmp_path / "s.sock")
    before, after = _directives(TEMPLATE), _directives(rendered)
    mine = ("bind ", "stats socket ", "server ", "user ", "group ")
    assert [d for d in before if not d.startswith(mine)] == [d for d in after if not d.startswith(mine)]
    assert [d for d in after if d.startswith(mine)] == [
        f"stats socket {tmp_path / 's.sock'} mode 600 level admin", "bind 127.0.0.1:9000",
        "server a 127.0.0.1:9001", "server b [::1]:9002"]
    # What the deployment is about stays: the tunnel's timeout, the check, the retries.
    for kept in ("timeout tunnel 1h", "http-check expect status 200", "retry-on conn-failure empty-response 503",
                 "option redispatch 1", "option http-buffer-request", "http-check send meth GET uri /api/health"):
        assert kept in after


def test_a_config_without_the_lines_or_a_bad_name_is_refused(tmp_path: Path) -> None:
    without_bind = "\n".join(line for line in TEMPLATE.splitlines() if not line.strip().startswith("bind"))
    with pytest.raises(haproxy.TemplateError, match="one bind line"):
        haproxy.render(without_bind, [("a", "127.0.0.1", 1)], bind=":1", stats_socket=tmp_path / "s")
    with pytest.raises(haproxy.TemplateError, match="not a server name"):
        haproxy.render(TEMPLATE, [("a b", "127.0.0.1", 1)], bind=":1", stats_socket=tmp_path / "s")


@pytest.mark.parametrize("status, up", [("UP", True), ("UP 1/2", True), ("no check", True), ("DOWN", False),
                                        ("DOWN 1/2", False), ("MAINT", False), ("DRAIN", False)])
def test_which_states_take_new_requests(status: str, up: bool) -> None:
    assert haproxy.up(status) is up


def test_haproxy_accepts_the_example_and_its_rendering(tmp_path: Path) -> None:
    binary = haproxy_binary()
    rendered = tmp_path / "haproxy.cfg"
    rendered.write_text(haproxy.render(TEMPLATE, [("east", "127.0.0.1", 8081)], bind="127.0.0.1:8080",
                                       stats_socket=tmp_path / "s.sock"))
    # The example names Debian's haproxy user, which the package makes; a machine without it checks the rendering.
    configs = [haproxy.TEMPLATE, rendered] if _has_user("haproxy") else [rendered]
    for config in configs:
        done = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _instance(name: str, draining: dict[str, bool]) -> Starlette:
    """A stand-in for a platform instance: its health, and a request it refuses with 503 while draining."""
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "shutting_down" if draining[name] else "ok"},
                            status_code=503 if draining[name] else 200)

    async def chat(request: Request) -> Response:
        body = await request.json()
        if draining[name]:
            return JSONResponse({"error": {"code": "shutting_down"}}, status_code=503)
        return JSONResponse({"served_by": name, "echo": body["n"]})

    return Starlette(routes=[Route("/api/health", health), Route("/v1/chat/completions", chat, methods=["POST"])])


def test_a_draining_server_gets_no_new_requests_and_its_503s_are_sent_on(
        tmp_path: Path, start_haproxy: Callable[..., HAProxy]) -> None:
    draining = {"east": False, "west": False}
    servers = {name: ServerThread(_instance(name, draining)).start() for name in draining}
    try:
        lb = start_haproxy([(name, "127.0.0.1", server.port) for name, server in servers.items()])
        lb.wait_up({"east", "west"})
        lb.ask("disable health platform/west")  # the window before the check notices, held open
        draining["west"] = True
        with httpx.Client(base_url=lb.url, timeout=10) as http:
            answers = [http.post("/v1/chat/completions", json={"n": n}) for n in range(8)]
        assert [(a.status_code, a.json()) for a in answers] == [(200, {"served_by": "east", "echo": n})
                                                                for n in range(8)]
        assert int(lb.stats()["west"]["wredis"]) > 0  # some went to west first, and were sent on
        lb.ask("enable health platform/west")
        lb.wait_states({"west": "DOWN", "east": "UP"})
        assert lb.stats()["west"]["check_status"] == "L7STS"
    finally:
        for server in servers.values():
            server.stop()
