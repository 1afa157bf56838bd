"""Fixtures for dashboard tests in a real browser: a real platform process with an admin token,
a signed-in page at 1440x900, screenshots, and a prepared venv for a client package's start_client.sh.

``conftest.py`` imports the fixtures, so every test module under tests/browser can ask for them by name;
a module imports from here only ``Dashboard`` (for annotations) and ``start_client_env``.

- ``dashboard`` (module scope) -> ``Dashboard``: the platform (``.platform``, ``.url``), ``.admin(method,
  path, json)`` calls the admin API with the token (an ``httpx.Response``), ``.sign_in(page)``,
  ``.open(page, "clients")`` (the hash route, waiting for the page's ``data-loaded``), and
  ``.screenshot(page, name)`` -> ``test-artifacts/screenshots/<name>.png`` (full page).
- ``dashboard_tab``: a page in a new browser context (its own cookies) at 1440x900, not signed in;
  ``page.errors`` lists the script errors and console errors it saw.
- ``dashboard_page``: ``dashboard_tab`` signed in with the admin token, on the Overview.
- ``client_venv`` (session scope): a venv for ``ARENAHUB_VENV``. Its only addition is a ``.pth`` line
  naming this repository venv's site-packages, so ``start_client.sh`` installs just the package's own
  arenahub wheel (with pip from there) and finds every dependency already satisfied: nothing comes from
  PyPI (run it with ``PIP_NO_INDEX=1`` to be sure).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.e2e.harness import Platform, Stack

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ADMIN_TOKEN = "adm-dashboard-browser-tests"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
VIEWPORT = {"width": 1440, "height": 900}


class Dashboard:
    def __init__(self, stack: Stack, platform: Platform, token: str) -> None:
        self.stack = stack
        self.platform = platform
        self.token = token
        self.url = platform.url
        self.http = httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {token}"}, timeout=15)

    def admin(self, method: str, path: str, json: Any = None, **params: Any) -> httpx.Response:
        return self.http.request(method, "/api/admin" + path, json=json, params=params or None)

    def sign_in(self, page: Page, screenshot: str | None = None) -> None:
        page.goto(self.url + "/dashboard")
        assert page.url.endswith("/dashboard/login"), page.url
        page.get_by_label("Admin token or password").fill(self.token)
        if screenshot:
            self.screenshot(page, screenshot)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector('[data-page="overview"][data-loaded="true"]')

    def open(self, page: Page, page_id: str, query: str = "") -> None:
        page.goto(f"{self.url}/dashboard#/{page_id}{'?' + query if query else ''}")
        page.wait_for_selector(f'[data-page="{page_id}"][data-loaded="true"]')

    def screenshot(self, page: Page, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    workdir = tmp_path_factory.mktemp("dashboard")
    stack = Stack(workdir)
    env = {"ARENAHUB_ADMIN_TOKEN": ADMIN_TOKEN, "ARENAHUB_RECORD_FLUSH_SECONDS": "0.2"}
    try:
        platform = stack.platform(f"sqlite+aiosqlite:///{workdir / 'platform.db'}", env)
        board = Dashboard(stack, platform, ADMIN_TOKEN)
        yield board
        board.close()
    finally:
        stack.stop_all()


@pytest.fixture
def dashboard_tab(browser: Browser) -> Iterator[Page]:
    """A new page in its own context (no cookies), 1440x900; ``page.errors`` collects its script errors."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True, locale="en-US")
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()


@pytest.fixture
def dashboard_page(dashboard: Dashboard, dashboard_tab: Page) -> Page:
    """``dashboard_tab``, signed in with the admin token, on the Overview."""
    dashboard.sign_in(dashboard_tab)
    return dashboard_tab


@pytest.fixture(scope="session")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("client-venv") / "venv"
    # Without pip of its own: `python -m pip` finds this venv's pip through the .pth line below.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    # A plain path line: the repo's editable arenahub (a finder installed by its own .pth) stays out,
    # so the client runs the wheel its package brings.
    Path(purelib, "repo-site-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def start_client_env(venv: Path, bridge_port: int) -> dict[str, str]:
    """The environment for start_client.sh: the prepared venv, no index (nothing from PyPI), none of
    this process's venv or arenahub settings."""
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARENAHUB_", "PYTHON", "VIRTUAL_ENV", "PYTEST"))}
    return {**env, "PATH": path, "ARENAHUB_VENV": str(venv), "ARENAHUB_BRIDGE_PORT": str(bridge_port),
            "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
