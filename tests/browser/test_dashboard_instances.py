"""The Instances page and the Clients page's Instance column in Debian's chromium: against one real
platform (no cluster), and against a real cluster of two platform processes ("east" and "west") on one
PostgreSQL database and one redis-server, with a client connected to west and the dashboard open on
east. A request through east to west's client is in flight on east; a paused west turns Unreachable,
then Gone.

Screenshots go to test-artifacts/screenshots/instances-*.png.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from playwright.sync_api import Page, expect

import arenahub
from tests.browser.dashboard_fixtures import ADMIN_TOKEN, Dashboard
from tests.conftest import fresh_databases
from tests.e2e.cluster import running_cluster
from tests.e2e.harness import MODELS, Client, ask, wait_until


def instance_row(page: Page, instance: str):
    return page.locator(f'[data-page="instances"] tr[data-key="{instance}"]')


def col(row, key: str):
    return row.locator(f'td[data-col="{key}"]')


def instances(board: Dashboard) -> dict:
    answer = board.admin("GET", "/instances")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_one_instance_shows_itself_and_says_there_is_no_cluster(dashboard: Dashboard, dashboard_page: Page) -> None:
    page = dashboard_page
    client = dashboard.stack.client(dashboard.platform, dashboard.stack.upstream(MODELS), name="solo-client")
    me = instances(dashboard)["instance"]
    dashboard.open(page, "instances")
    root = page.locator('[data-page="instances"]')
    expect(root).to_have_attribute("data-shared-state", "in_process")
    expect(page.locator("[data-note]")).to_have_attribute("data-note", "single")
    expect(page.locator("[data-note]")).to_contain_text("One instance, no cluster")
    expect(page.locator('[data-page="instances"] tbody tr[data-key]')).to_have_count(1)
    row = instance_row(page, me)
    expect(col(row, "id")).to_contain_text(me)
    expect(col(row, "id")).to_contain_text("This one")
    expect(col(row, "state")).to_have_text("Serving")
    expect(col(row, "address")).to_contain_text(f"127.0.0.1:{dashboard.platform.port}")
    expect(col(row, "address")).to_contain_text(f"http://127.0.0.1:{dashboard.platform.port}")
    expect(col(row, "version")).to_have_text(arenahub.__version__)
    expect(col(row, "clients")).to_have_text("1", timeout=10_000)  # the page polls every 5 s
    expect(col(row, "in_flight")).to_have_text("0")
    expect(col(row, "uptime")).to_contain_text(" s")
    expect(page.locator('[data-card="clients"]')).to_have_attribute("data-value", "1")
    dashboard.screenshot(page, "instances-single")

    # Clients: one instance, so no Instance column; the client's panel says where it is connected.
    col(row, "clients").get_by_role("link").click()
    page.wait_for_selector('[data-page="clients"][data-loaded="true"]')
    client_row = page.locator(f'[data-page="clients"] tr[data-key="{client.client_id}"]')
    expect(client_row).to_be_visible()
    expect(page.locator('[data-page="clients"] th[data-col="instance"]')).to_be_hidden()
    expect(col(client_row, "instance")).to_be_hidden()
    page.get_by_role("button", name="Manage solo-client").click()
    panel = page.locator(f'aside.drawer[data-client="{client.client_id}"]')
    expect(panel.locator("dd", has_text=me)).to_be_visible()
    assert not page.errors, page.errors  # type: ignore[attr-defined]


# -- a cluster of two ---------------------------------------------------------------------------------

@dataclass
class Cluster:
    east: Dashboard
    west: Dashboard
    client: Client


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    env = {"ARENAHUB_ADMIN_TOKEN": ADMIN_TOKEN}
    with fresh_databases(tmp_path) as made, \
            running_cluster(tmp_path, made.new("postgres"), instances=("east", "west"), clients=False, env=env) as c:
        east, west = (Dashboard(c.stack, p, ADMIN_TOKEN) for p in c.platforms)
        yield Cluster(east, west, c.stack.client(west.platform, c.upstream, name="west-client"))
        east.close()
        west.close()


@pytest.mark.postgres
def test_a_cluster_shows_every_instance_and_where_each_client_is(cluster: Cluster, dashboard_tab: Page) -> None:
    page, east = dashboard_tab, cluster.east
    wait_until(lambda: [(i["id"], i["clients"]) for i in instances(east)["data"]] == [("east", 0), ("west", 1)],
               10, "east sees west and its client")
    east.sign_in(page)
    east.open(page, "instances")
    expect(page.locator('[data-page="instances"]')).to_have_attribute("data-shared-state", "ready")
    expect(page.locator("[data-note]")).to_contain_text("2 instances share one PostgreSQL database and one Redis")
    expect(page.locator('[data-page="instances"] tbody tr[data-key]')).to_have_count(2)
    for name, board, clients in (("east", east, "0"), ("west", cluster.west, "1")):
        row = instance_row(page, name)
        expect(col(row, "state")).to_have_text("Serving")
        expect(col(row, "address")).to_contain_text(f"http://127.0.0.1:{board.platform.port}")
        expect(col(row, "version")).to_have_text(arenahub.__version__)
        expect(col(row, "clients")).to_have_text(clients)
    expect(col(instance_row(page, "east"), "id")).to_contain_text("This one")
    expect(col(instance_row(page, "west"), "id")).not_to_contain_text("This one")
    expect(page.locator('[data-card="instances"] .card-value')).to_have_text("2 of 2")

    # A request through east, served by west's client, is in flight on east.
    key = east.admin("POST", "/keys", {"name": "cluster view"}).json()["key"]
    answered: list[str] = []

    def ask_slowly() -> None:
        with openai.OpenAI(base_url=east.platform.v1, api_key=key, max_retries=0, timeout=30) as api:
            done = api.chat.completions.create(model=MODELS[0], messages=ask("[[first_ms=4000]] held"))
            answered.append(done.choices[0].message.content or "")
    asking = threading.Thread(target=ask_slowly)
    asking.start()
    try:
        wait_until(lambda: instances(east)["data"][0]["in_flight"] == 1, 3, "the request in flight on east")
        east.open(page, "clients")
        # A cluster: the Instance column is shown, with west for its client.
        client_row = page.locator(f'[data-page="clients"] tr[data-key="{cluster.client.client_id}"]')
        expect(col(client_row, "instance")).to_have_text("west")
        expect(page.locator('[data-page="clients"] th[data-col="instance"]')).to_be_visible()
        east.screenshot(page, "instances-cluster-clients")
        east.open(page, "instances")
        expect(col(instance_row(page, "east"), "in_flight")).to_have_text("1")
        expect(col(instance_row(page, "west"), "in_flight")).to_have_text("0")
        east.screenshot(page, "instances-cluster")
    finally:
        asking.join(30)
    assert answered and answered[0], "the request through east was answered by west's client"

    # West stops answering (paused): its card goes stale (Unreachable), then expires (Gone).
    west = cluster.west.platform
    west.pause()
    try:
        wait_until(lambda: instances(east)["data"][-1]["state"] == "unreachable", 5, "west unreachable", 0.1)
        east.open(page, "clients")
        east.open(page, "instances")  # mounted again: read at once
        expect(col(instance_row(page, "west"), "state")).to_contain_text("Unreachable")
        expect(col(instance_row(page, "west"), "state")).to_contain_text("last seen")
        expect(page.locator('[data-card="instances"] .card-value')).to_have_text("1 of 2")
        east.screenshot(page, "instances-cluster-unreachable")
        expect(col(instance_row(page, "west"), "state")).to_contain_text("Gone", timeout=15_000)
        expect(col(instance_row(page, "west"), "clients")).to_have_text("—")
        assert [i["id"] for i in instances(east)["data"]] == ["east"]
    finally:
        west.resume()
    with httpx.Client(base_url=west.url, timeout=5) as http:  # west serves again
        wait_until(lambda: http.get("/api/health").status_code == 200, 5, "west back")
    assert not page.errors, page.errors  # type: ignore[attr-defined]
