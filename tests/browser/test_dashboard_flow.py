"""The operator's whole flow in the dashboard, in Debian's chromium, against real processes:

1. sign in with the admin token; 2. register a client through the dialog; 3. download its package
and unzip it; 4. start the client from it (start_client.sh: the bridge with the client inside, an
arena.ai tab on the simulator); 5. see it connected and healthy in the Clients table; 6. send
requests with the openai package and watch the Overview's numbers and chart move; 7. regenerate the
key and see the client refused, with the reason; 8. export the request log as CSV (the Requests
page's button) and check its rows.

Every page visited is saved to test-artifacts/screenshots/<page>.png (1440x900, full page).
"""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from playwright.sync_api import Page, expect

import arenahub
from tests.browser.dashboard_fixtures import Dashboard, start_client_env
from tests.e2e.harness import free_port, wait_until

REQUESTS = 3
CONNECT_SECONDS = 60.0  # start_client.sh installs the package's wheel first (a few seconds)


def row(page: Page, client_id: str):
    return page.locator(f'[data-page="clients"] tr[data-key="{client_id}"]')


def card_value(page: Page, card: str) -> str:
    return page.locator(f'[data-card="{card}"]').get_attribute("data-value") or ""


def prepare_package(folder: Path, sim_state: dict) -> None:
    """What the client's owner does once: the models (as `arenahub bridge update-models` writes them from
    the page's initialModels); and a short heartbeat, so that the test sees stats soon."""
    config = folder / "config.jsonc"
    text = config.read_text()
    assert '"upstream_api": "create-evaluation"' in text, "a package starts new conversations: nothing to capture"
    text, n = re.subn(r'"heartbeat_interval_seconds": [0-9.]+', '"heartbeat_interval_seconds": 1', text)
    assert n == 1
    config.write_text(text)
    kinds = {"image": ":image", "search": ":search"}
    models = {}
    for m in sim_state["models"]:
        out = m["capabilities"]["outputCapabilities"]
        if m["userSelectable"] and ("text" in out or "image" in out):
            models[m["publicName"]] = m["id"] + next((v for k, v in kinds.items() if k in out), "")
    (folder / "models.json").write_text(json.dumps(models, indent=2))


class StartedClient:
    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.log_path = folder.parent / "start_client.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(["./start_client.sh"], cwd=folder, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)

    def tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])

    def check(self) -> None:
        assert self.proc.poll() is None, f"start_client.sh exited with {self.proc.returncode}:\n{self.tail()}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # it exec'd the bridge
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)


@pytest.fixture
def started() -> Iterator[list[StartedClient]]:
    running: list[StartedClient] = []
    yield running
    for client in running:
        client.stop()


def test_register_start_watch_regenerate_export(dashboard: Dashboard, dashboard_tab: Page, client_venv: Path,
                                                 open_arena_tab, lmarena_sim, started, tmp_path: Path) -> None:
    page = dashboard_tab
    shot = dashboard.screenshot

    # 1. Sign in with the admin token; the Overview shows an idle platform.
    dashboard.sign_in(page, screenshot="login")
    expect(page.locator('[data-card="clients"]')).to_have_attribute("data-value", "0")
    assert card_value(page, "requests") == "0"
    shot(page, "overview-empty")

    # 2. Register a client through the dialog, with the seed's fields.
    dashboard.open(page, "clients")
    page.get_by_role("button", name="Register New Client").click()
    dialog = page.get_by_role("dialog", name="Register New Client")
    expect(dialog.get_by_label("LMArenaBridge URL")).to_have_value("http://127.0.0.1:5102")
    bridge_port = free_port()
    dialog.get_by_label("Client Name").fill("flow laptop")
    dialog.get_by_label("Email (optional)").fill("owner@example.com")
    dialog.get_by_label("LMArenaBridge URL").fill(f"http://127.0.0.1:{bridge_port}")
    dialog.get_by_label("Requests per minute").fill("600")
    dialog.get_by_label("Max concurrent requests").fill("3")
    shot(page, "clients-register")
    dialog.get_by_role("button", name="Register").click()
    made = page.get_by_role("dialog", name="Client registered")
    client_id = made.locator('[data-secret="client_id"]').inner_text()
    # One key, one moment: no key is shown that the package download would then replace.
    expect(made.locator('[data-secret="api_key"]')).to_have_count(0)
    # The dashboard is open at 127.0.0.1: the package's client could connect from this machine only, and it says so.
    expect(made).to_contain_text("which only this machine can reach")
    stored = dashboard.admin("GET", f"/clients/{client_id}").json()
    assert (stored["name"], stored["email"], stored["rpm"], stored["max_concurrent"]) == (
        "flow laptop", "owner@example.com", 600, 3)
    shot(page, "clients-registered")

    # 3. Download the package (a form POST with the CSRF token) and unzip it.
    with page.expect_download() as download_info:
        made.get_by_role("button", name="Download package").click()
    download = download_info.value
    assert download.suggested_filename == f"lmarena-client-{client_id}.zip"
    expect(made.locator('[data-step="package"]')).to_contain_text("its config.jsonc holds the client's key")
    expect(made.get_by_role("button", name="Show the key instead")).to_have_count(0)
    expect(made.get_by_role("button", name="Download package")).to_have_count(0)  # a second one would replace it
    archive = tmp_path / download.suggested_filename
    download.save_as(archive)
    folder = tmp_path / "lmarena-client"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(folder)
        for info in zf.infolist():
            (folder / info.filename).chmod(info.external_attr >> 16 & 0o777)
    made.get_by_role("button", name="Done").click()
    expect(row(page, client_id)).to_contain_text("Not connected")

    # 4. Start the client from the package, and attach an arena.ai tab (the simulator) to its bridge.
    prepare_package(folder, lmarena_sim.state())
    client = StartedClient(folder, start_client_env(client_venv, bridge_port))
    started.append(client)
    bridge = f"http://127.0.0.1:{bridge_port}"

    def bridge_up() -> bool:
        client.check()
        return httpx.get(bridge + "/health", timeout=2).status_code == 200
    wait_until(bridge_up, CONNECT_SECONDS, "the packaged bridge to answer", interval=0.2)
    open_arena_tab(f"ws://127.0.0.1:{bridge_port}/ws")

    # 5. Connected and healthy in the live table, with its version, CPU and memory.
    status = row(page, client_id).locator('td[data-col="status"]')
    expect(status).to_contain_text("Connected", timeout=20_000)
    expect(status).to_contain_text("Healthy", timeout=20_000)
    expect(row(page, client_id)).to_contain_text(arenahub.__version__)
    expect(row(page, client_id).locator('td[data-col="cpu"]')).to_have_text(re.compile(r"^\d+%$"), timeout=10_000)
    expect(row(page, client_id).locator('td[data-col="memory"]')).to_have_text(re.compile(r"^\d+(\.\d)? (MB|GB)$"))
    shot(page, "clients")
    row(page, client_id).get_by_role("button", name="Manage").click()
    drawer = page.locator(f'aside.drawer[data-client="{client_id}"]')
    expect(drawer).to_be_visible()
    expect(drawer).to_contain_text("arena.ai session")
    expect(drawer).to_contain_text("Tab checks")
    shot(page, "clients-detail")
    drawer.get_by_role("button", name="Close").click()

    # 6. Requests through the platform; the Overview's numbers and chart move without a reload.
    dashboard.open(page, "overview")
    chart = page.locator('[data-chart="requests"] .chart')
    expect(chart).to_have_attribute("data-sum", "0")
    created = dashboard.admin("POST", "/keys", {"name": "flow consumer"})
    assert created.status_code == 201, created.text
    consumer = openai.OpenAI(base_url=dashboard.platform.v1, api_key=created.json()["key"], max_retries=0, timeout=30)
    model = next(m["publicName"] for m in lmarena_sim.state()["models"]
                 if "text" in m["capabilities"]["outputCapabilities"])
    answers = []
    for i in range(REQUESTS):
        prompt = f"dashboard flow {i}"
        if i % 2:
            stream = consumer.chat.completions.create(model=model, stream=True,
                                                      messages=[{"role": "user", "content": prompt}])
            answers.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
        else:
            done = consumer.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
            answers.append(done.choices[0].message.content)
    assert answers == [f"dashboard flow {i}" for i in range(REQUESTS)]  # the simulator echoes the prompt
    expect(page.locator('[data-card="requests"]')).to_have_attribute("data-value", str(REQUESTS), timeout=15_000)
    expect(chart).not_to_have_attribute("data-sum", "0")
    assert float(page.locator('[data-card="success"]').get_attribute("data-value")) == 1.0
    # A consumer's own mistake is recorded, but it is not a failure of the platform: the success rate holds.
    with pytest.raises(openai.NotFoundError):
        consumer.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    expect(page.locator('[data-card="requests"]')).to_have_attribute("data-value", str(REQUESTS + 1), timeout=15_000)
    assert float(page.locator('[data-card="success"]').get_attribute("data-value")) == 1.0
    expect(page.locator('[data-card="success"]')).to_contain_text("1 refused as the consumer's mistake")
    # The rate per minute says over what window it counts, beside the hour's total.
    expect(page.locator('[data-card="requests"]')).to_contain_text(
        f"over the last 5 minutes; {REQUESTS + 1} in the last hour")
    expect(page.locator('[data-card="clients"]')).to_have_attribute("data-value", "1")
    chart.locator("svg").hover()
    expect(chart.locator(".chart-tip")).to_contain_text("Requests / min")
    shot(page, "overview")
    page.get_by_role("button", name="Last week").click()
    expect(page.locator('[data-page="overview"]')).to_have_attribute("data-period", "week")
    expect(chart).to_have_attribute("data-points", "168")  # hourly buckets
    expect(chart).not_to_have_attribute("data-sum", "0")
    shot(page, "overview-week")

    # 7. Regenerate the key: the client is disconnected and refused, and the table says why.
    dashboard.open(page, "clients", f"id={client_id}")
    drawer = page.locator(f'aside.drawer[data-client="{client_id}"]')
    drawer.get_by_role("button", name="Regenerate API key").click()
    with page.expect_download() as download_info:
        page.get_by_role("dialog", name="Regenerate the API key").get_by_role(
            "button", name="Regenerate and download").click()
    assert download_info.value.suggested_filename == f"lmarena-client-{client_id}.zip"
    drawer.get_by_role("button", name="Close").click()
    expect(status).to_contain_text("Not connected", timeout=15_000)
    refusal = dashboard.admin("GET", f"/clients/{client_id}").json()["last_refusal"]
    assert refusal is not None and refusal["code"] == "invalid_credentials", refusal
    expect(row(page, client_id).locator(".refusal")).to_contain_text(refusal["message"])
    shot(page, "clients-refused")
    dashboard.open(page, "overview")
    needing = page.locator(f'[data-panel="attention"] li[data-client="{client_id}"]')
    expect(needing).to_contain_text("Refused")
    expect(needing).to_contain_text(refusal["message"])
    expect(page.locator('[data-card="clients"]')).to_have_attribute("data-value", "0")

    # 8. Export the request log as CSV from the Requests page, and check its rows.
    dashboard.open(page, "requests")
    shot(page, "requests")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Export CSV").click()
    exported = download_info.value
    assert re.fullmatch(r"arenahub-requests-.*\.csv", exported.suggested_filename), exported.suggested_filename
    rows = list(csv.DictReader(io.StringIO(Path(exported.path()).read_text())))
    mine = [r for r in rows if r["key_id"] == created.json()["id"] and r["model"] != "no-such-model"]
    assert len(mine) == REQUESTS, rows
    assert {(r["status"], r["client_id"], r["model"]) for r in mine} == {("200", client_id, model)}
    assert [r["status"] for r in rows if r["model"] == "no-such-model"] == ["404"]  # the consumer's mistake
    streamed = sum(1 for i in range(REQUESTS) if i % 2)
    assert sum(1 for r in mine if r["stream"].lower() in ("true", "1")) == streamed, mine

    # The other pages, for the screenshots.
    for page_id in ("keys", "usage", "settings"):
        dashboard.open(page, page_id)
        shot(page, page_id)
    assert not page.errors, page.errors  # type: ignore[attr-defined]


def fake_client(i: int) -> dict:
    connected = i % 3 != 0
    return {
        "id": f"cl_{i:05d}", "name": f"client {i:04d}", "email": None, "bridge_url": "http://127.0.0.1:5102",
        "rpm": None, "max_concurrent": 4, "disabled": False, "priority": 0, "weight": 1, "draining": i % 50 == 0,
        "maintenance_reason": "too many dropped requests" if i % 97 == 0 else None, "maintenance_since": None,
        "created_at": "2026-01-01T00:00:00+00:00", "last_seen_at": "2026-01-01T00:00:00+00:00",
        "version": "0.0.9" if i % 10 == 0 else arenahub.__version__, "current_version": arenahub.__version__,
        "outdated": i % 10 == 0, "connected": connected, "healthy": connected and i % 7 != 0,
        "last_refusal": None if connected else {"code": "invalid_credentials", "message": f"refused {i}",
                                                "at": "2026-01-01T00:00:00+00:00"},
        "stats_1h": {"requests": i, "success_rate": 1 - (i % 5) / 100, "p50_ms": 100 + i},
        "conflict": "two instances with this client id are running: the one from 10.0.0.1 serves, the one from "
                    "10.0.0.2 stands by (stop one of them)" if connected and i % 113 == 0 else None,
        "health": {"breaker": "open" if i % 41 == 0 else "closed", "maintenance": None, "drops_last_hour": 0},
        "live": {"connected": True, "healthy": i % 7 != 0, "active_requests": i % 5, "max_concurrent": 4,
                 "draining": i % 50 == 0, "client_version": arenahub.__version__, "last_heartbeat": None,
                 "stats": {"cpu_percent": i % 100, "memory_mb": 100 + i}, "session": {"session_valid": True},
                 "models": ["m"]} if connected else None,
    }


def test_clients_table_with_a_thousand_clients(dashboard: Dashboard, dashboard_page: Page) -> None:
    """The table takes 1,000 clients, filters and sorts them at once, and a poll re-renders in place."""
    page = dashboard_page
    body = json.dumps({"data": [fake_client(i) for i in range(1000)]})
    page.route("**/api/admin/clients", lambda route: route.fulfill(status=200, content_type="application/json",
                                                                   body=body))
    dashboard.open(page, "clients")
    table = page.locator('[data-page="clients"] .table-wrap')
    expect(table).to_have_attribute("data-rows", "1000")
    # The first 200 are in the page; the rest come on demand.
    expect(table.locator("tbody tr[data-key]")).to_have_count(200)
    table.get_by_role("button", name=re.compile(r"^Show 200 more \(200 of 1,000 shown\)$")).click()
    expect(table.locator("tbody tr[data-key]")).to_have_count(400)
    timing = page.evaluate("""() => {
        const wrap = document.querySelector('[data-page="clients"] .table-wrap');
        const input = document.querySelector('[data-page="clients"] input[type=search]');
        const t0 = performance.now();
        input.value = 'client 09';
        input.dispatchEvent(new Event('input'));
        const filtered = Number(wrap.dataset.rows);
        const t1 = performance.now();
        wrap.querySelector('th:nth-child(1) .sort-btn').click();
        const t2 = performance.now();
        const first = wrap.querySelector('tbody tr:not([hidden])').dataset.key;
        input.value = '';
        input.dispatchEvent(new Event('input'));
        return {filtered, first, filter_ms: t1 - t0, sort_ms: t2 - t1};
    }""")
    assert timing["filtered"] == 100 and timing["first"] == "cl_00900", timing
    assert timing["filter_ms"] < 500 and timing["sort_ms"] < 500, timing
    # A poll with changed data re-renders in place: the same row elements stay.
    page.evaluate("document.querySelector('tr[data-key=\"cl_00001\"]').dataset.marker = 'kept'")
    with page.expect_response("**/api/admin/clients"):
        pass
    expect(page.locator('tr[data-key="cl_00001"]')).to_have_attribute("data-marker", "kept")
    attention = page.locator('[data-page="clients"] button[data-view="attention"]')
    attention.click()
    shown = int(table.get_attribute("data-rows"))
    expected = sum(1 for i in range(1000) if i % 3 == 0 or i % 7 == 0 or i % 10 == 0 or i % 97 == 0 or i % 41 == 0
                   or i % 113 == 0)
    assert shown == expected
    # Two copies of one client: the row says so, with where each one is.
    conflict = page.locator('tr[data-key="cl_00113"]')
    expect(conflict.locator(".pill", has_text="Two copies")).to_be_visible()
    expect(conflict.locator("[data-conflict]")).to_contain_text("the one from 10.0.0.2 stands by")
    dashboard.screenshot(page, "clients-1000")
    assert not page.errors, page.errors  # type: ignore[attr-defined]


def test_client_actions_edit_drain_delete(dashboard: Dashboard, dashboard_page: Page) -> None:
    """The detail panel's actions change the client through the admin API, and the table follows."""
    page = dashboard_page
    made = dashboard.admin("POST", "/clients", {"name": "actions box", "max_concurrent": 2})
    assert made.status_code == 201, made.text
    client_id = made.json()["client_id"]
    dashboard.open(page, "clients", f"id={client_id}")
    drawer = page.locator(f'aside.drawer[data-client="{client_id}"]')
    expect(drawer).to_be_visible()

    drawer.get_by_role("button", name="Edit limits").click()
    dialog = page.get_by_role("dialog", name="Edit limits: actions box")
    expect(dialog.get_by_label("Max concurrent requests")).to_have_value("2")
    dialog.get_by_label("Requests per minute").fill("120")
    dialog.get_by_label("Max concurrent requests").fill("6")
    dialog.get_by_label("Priority").fill("5")
    dialog.get_by_label("Weight").fill("3")
    shot = dashboard.screenshot(page, "clients-edit-limits")
    assert shot.exists()
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    stored = dashboard.admin("GET", f"/clients/{client_id}").json()
    assert (stored["rpm"], stored["max_concurrent"], stored["priority"], stored["weight"]) == (120, 6, 5, 3)
    expect(row(page, client_id).locator('td[data-col="load"]')).to_contain_text("/ 6")

    # Out of range: the browser holds the form back; nothing is sent.
    drawer.get_by_role("button", name="Edit limits").click()
    dialog = page.get_by_role("dialog", name="Edit limits: actions box")
    dialog.get_by_label("Weight").fill("5000")
    dialog.get_by_role("button", name="Save").click()
    assert dialog.get_by_label("Weight").evaluate("input => input.validity.rangeOverflow")
    dialog.get_by_role("button", name="Cancel").click()
    assert dashboard.admin("GET", f"/clients/{client_id}").json()["weight"] == 3

    # What only the platform checks comes back into the dialog, which stays open.
    drawer.get_by_role("button", name="Close").click()
    page.get_by_role("button", name="Register New Client").click()
    dialog = page.get_by_role("dialog", name="Register New Client")
    dialog.get_by_label("Client Name").fill("x" * 201)
    dialog.get_by_role("button", name="Register").click()
    expect(dialog.locator(".dialog-error")).to_contain_text("name")
    assert page.errors == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"]  # type: ignore[attr-defined]
    page.errors.clear()  # type: ignore[attr-defined]
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    row(page, client_id).get_by_role("button", name="Manage").click()

    drawer.get_by_role("button", name="Drain").click()
    dialog = page.get_by_role("dialog", name="Drain actions box")
    dialog.get_by_label("Reason (optional)").fill("moving the machine")
    dialog.get_by_role("button", name="Drain").click()
    expect(row(page, client_id).locator('td[data-col="status"]')).to_contain_text("Draining")
    assert dashboard.admin("GET", f"/clients/{client_id}").json()["draining"] is True
    drawer.get_by_role("button", name="Undrain").click()
    expect(row(page, client_id).locator('td[data-col="status"]')).not_to_contain_text("Draining")
    assert dashboard.admin("GET", f"/clients/{client_id}").json()["draining"] is False

    drawer.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog", name="Delete actions box").get_by_role("button", name="Delete client").click()
    expect(row(page, client_id)).to_have_count(0)
    expect(drawer).to_be_hidden()
    assert dashboard.admin("GET", f"/clients/{client_id}").status_code == 404
    assert not page.errors, page.errors  # type: ignore[attr-defined]


def test_registering_for_a_manual_setup_shows_a_key_that_works(dashboard: Dashboard, dashboard_page: Page) -> None:
    """The other way out of the registration dialog: the key shown, and no download left in the dialog
    that would replace it. The key shown is the client's current one: the platform welcomes it."""
    import msgspec
    from websockets.sync.client import connect

    from arenahub.protocol import frames

    page = dashboard_page
    dashboard.open(page, "clients")
    page.get_by_role("button", name="Register New Client").click()
    dialog = page.get_by_role("dialog", name="Register New Client")
    dialog.get_by_label("Client Name").fill("hand-made bridge")
    dialog.get_by_role("button", name="Register").click()
    made = page.get_by_role("dialog", name="Client registered")
    client_id = made.locator('[data-secret="client_id"]').inner_text()
    made.get_by_role("button", name="Show the key instead").click()
    key = made.locator('[data-secret="api_key"]').inner_text()
    expect(made.get_by_role("button", name="Download package")).to_have_count(0)
    expect(made.get_by_role("button", name="Show the key instead")).to_have_count(0)
    expect(made).to_contain_text("it is not shown again")
    made.get_by_role("button", name="Done").click()

    with connect(dashboard.url.replace("http", "ws", 1) + "/api/ws") as ws:
        ws.send(frames.encode(frames.Hello(version=frames.PROTOCOL_VERSION, client_id=client_id, api_key=key)))
        reply = frames.decode(ws.recv(timeout=10))
    assert isinstance(reply, frames.Welcome), msgspec.to_builtins(reply)
    assert not page.errors, page.errors  # type: ignore[attr-defined]


def test_overview_says_why_a_connected_client_needs_attention(dashboard: Dashboard, dashboard_page: Page) -> None:
    """A connected client whose tab closed: the Overview names it with what its bridge says to do."""
    page = dashboard_page
    client = fake_client(1)
    client["healthy"] = client["live"]["healthy"] = False
    client["live"]["session"] = {"bridge_reachable": True, "browser_connected": False, "state": "no_tab",
                                 "action": "Open https://arena.ai in a browser with the userscript"}
    body = json.dumps({"data": [client]})
    page.route("**/api/admin/clients", lambda route: route.fulfill(status=200, content_type="application/json",
                                                                   body=body))
    dashboard.open(page, "keys")
    dashboard.open(page, "overview")  # mounted again: it reads the clients now
    item = page.locator('[data-panel="attention"] li[data-client="cl_00001"]')
    expect(item).to_contain_text("Unhealthy")
    expect(item.locator(".attention-why")).to_have_text("Open https://arena.ai in a browser with the userscript")
    expect(page.locator('[data-panel="attention"] ul')).not_to_contain_text("null")
    assert not page.errors, page.errors  # type: ignore[attr-defined]
