"""Browser fixtures: the arena.ai simulator served as https://arena.ai, Debian's chromium driven by
Playwright (the sync API), and tabs on arena.ai running the rendered userscript.

- ``serve_app(app) -> "http://127.0.0.1:PORT/"``: serves any ASGI app with uvicorn in a background
  thread on a free loopback port until the test ends (the bridge server, say).
- ``lmarena_sim`` -> ``Simulator``: the 2026 simulator (``arenahub.tools.arena_sim``; one HTTPS
  server for the session, reset before each test): ``.url`` (``https://arena.ai/``), ``.state()``,
  ``.script(*outcomes)``, ``.control(path, body)``, ``.requests()``, ``.stream_requests()``, ``.reset()``.
- ``browser`` (one per test module), started with ``--host-resolver-rules`` mapping arena.ai and
  lmarena.ai to the simulator, and ``browser_context`` (a fresh one per test: its own cookies; HTTPS
  errors ignored, as the simulator's certificate is self-signed). The Playwright API here is the sync
  one: tests that use these fixtures are plain ``def`` tests, and a module that uses them holds no
  asyncio tests (sync Playwright owns the thread's loop).
- ``open_arena_tab(bridge_ws_url, *, context=None, path="/") -> Page``: a tab on https://arena.ai
  with the userscript injected as Tampermonkey would (again on every reload). Tabs of one context
  share the account's cookies, like real tabs.
- The dashboard's fixtures, ``dashboard``, ``dashboard_tab``, ``dashboard_page`` and ``client_venv``,
  are defined in ``dashboard_fixtures.py`` and offered to every module here by the import below.

When the playwright package or /usr/bin/chromium is missing, the browser tests are skipped
locally and fail under CI (CI=true), where they must run: ``.ci/run`` installs chromium.
Playwright's own browser download is never used (it cannot work here): only the Debian build.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.types import ASGIApp

from arenahub.bridge.userscript import render
from arenahub.tools.arena_sim import create_app
from arenahub.tools.arena_sim.tls import self_signed
from arenahub.tools.browser import host_rules
from tests.browser.dashboard_fixtures import (  # noqa: F401 (fixtures, for every module here)
    client_venv,
    dashboard,
    dashboard_page,
    dashboard_tab,
)
from tests.servers import ServerThread

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.browser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: runs Debian chromium through Playwright")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """When a browser test fails, show what its tabs wrote to the console."""
    outcome = yield
    report = outcome.get_result()
    tabs = getattr(item, "funcargs", {}).get("open_arena_tab")
    if report.failed and isinstance(tabs, TabOpener) and tabs.console:
        report.sections.append(("browser console", "\n".join(tabs.console[-200:])))


# --- Serving ASGI apps in a thread: tests/servers.py ----------------------------------------------



@pytest.fixture
def serve_app() -> Iterator[Callable[[ASGIApp], str]]:
    """``serve_app(app)`` serves an ASGI app on a free loopback port for this test; returns its URL."""
    servers: list[ServerThread] = []

    def serve(app: ASGIApp) -> str:
        servers.append(ServerThread(app).start())
        return servers[-1].url

    yield serve
    for server in reversed(servers):
        server.stop()


# --- The simulator ---------------------------------------------------------------------------

SITE = "https://arena.ai/"


class Simulator:
    """The running simulator and its control API (see arenahub/tools/arena_sim/__init__.py)."""

    def __init__(self, control_url: str, port: int) -> None:
        self.url = SITE  # where browsers open it (mapped to the port by --host-resolver-rules)
        self.origin = SITE.rstrip("/")
        self.port = port
        self.http = httpx.Client(base_url=control_url, timeout=10, verify=False)

    def control(self, path: str, body: Any = None, method: str = "POST") -> Any:
        response = self.http.request(method, "/__sim/" + path.lstrip("/"), json=body)
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def state(self) -> dict[str, Any]:
        return self.control("state", method="GET")  # type: ignore[no-any-return]

    def script(self, *outcomes: dict[str, Any]) -> None:
        self.control("script", list(outcomes))

    def requests(self, kind: str | None = None) -> list[dict[str, Any]]:
        calls = self.control("requests", method="GET")
        return [c for c in calls if kind is None or c.get("kind") == kind]

    def stream_requests(self) -> list[dict[str, Any]]:
        """The stream calls (create, follow-up, retry) that passed every check."""
        return [r for r in self.requests() if r["kind"] in ("create", "follow_up", "retry") and r["status"] == 200]

    def reset(self) -> None:
        self.control("reset")

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="session")
def lmarena_sim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    tls = self_signed(tmp_path_factory.mktemp("arena-tls"))
    server = ServerThread(create_app(), tls=tls).start()
    sim = Simulator(server.url, server.port)
    yield sim
    sim.close()
    server.stop()


@pytest.fixture
def lmarena_sim(lmarena_sim_server: Simulator) -> Simulator:
    """The simulator, back at its start: no script, no recorded requests, only the page's conversation."""
    lmarena_sim_server.reset()
    return lmarena_sim_server


# --- The browser -------------------------------------------------------------------------------

def _require_browser() -> None:
    problems = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright package is not installed (pip install -e '.[test]')")
    if not os.access(CHROMIUM, os.X_OK):
        problems.append(f"{CHROMIUM} is missing (apt-get install chromium)")
    if problems:
        message = "; ".join(problems)
        if in_ci():
            pytest.fail(f"browser tests must run in CI: {message}", pytrace=False)
        pytest.skip(message)


# Module scope, not session: a running sync Playwright keeps its event loop set as the thread's
# running loop, which would break every asyncio test collected after the browser tests.
@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    driver = sync_playwright().start()
    yield driver
    driver.stop()


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright, lmarena_sim_server: Simulator) -> Iterator[Browser]:
    """Debian's chromium, headless, with the flags this machine needs (no background network), and
    arena.ai and lmarena.ai answered by the simulator."""
    browser = playwright_driver.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                args=[*CHROMIUM_ARGS, host_rules(lmarena_sim_server.port)])
    yield browser
    browser.close()


@pytest.fixture
def browser_context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(ignore_https_errors=True)
    context.set_default_timeout(15_000)
    yield context
    context.close()


class TabOpener:
    """``open_arena_tab(bridge_ws_url)``: a new tab on the simulator's page running the userscript."""

    def __init__(self, context: BrowserContext, sim: Simulator) -> None:
        self.context = context
        self.sim = sim
        self.console: list[str] = []

    def __call__(self, bridge_ws_url: str, *, context: BrowserContext | None = None, path: str = "/") -> Page:
        page = (context or self.context).new_page()
        n = len([line for line in self.console if line.startswith("--- tab")]) + 1
        self.console.append(f"--- tab {n}")
        page.on("console", lambda message: self.console.append(f"[tab {n}] {message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"[tab {n}] page error: {error}"))
        page.add_init_script(script=render(bridge_ws_url))
        page.goto(self.sim.url + path.lstrip("/"))
        return page

    def console_text(self) -> str:
        return "\n".join(self.console)


@pytest.fixture
def open_arena_tab(browser_context: BrowserContext, lmarena_sim: Simulator) -> TabOpener:
    return TabOpener(browser_context, lmarena_sim)
