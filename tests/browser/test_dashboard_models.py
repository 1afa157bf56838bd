"""The model catalogue in the dashboard, in Debian's chromium, against a real platform with a real client
that offers two models: turned on on the Settings page; on the Models page, the offers waiting for
approval are approved and refused, a decision is forgotten, a model is listed for any client and
unlisted; and a client's waiting models are approved from its panel on the Clients page.

Screenshots go to test-artifacts/screenshots/models-<state>.png.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.dashboard_fixtures import Dashboard
from tests.e2e.harness import Client, wait_until

CLAIMED = "gpt-4o"
OWN = "vendor/own-model:1.5"
BAD_REQUEST = "Failed to load resource: the server responded with a status of 400 (Bad Request)"


@pytest.fixture(scope="module")
def offering(dashboard: Dashboard) -> Iterator[Client]:
    upstream = dashboard.stack.upstream([CLAIMED, OWN], name="models-upstream")
    yield dashboard.stack.client(dashboard.platform, upstream, name="offers-two")


def catalogue(board: Dashboard) -> dict:
    r = board.admin("GET", "/catalogue")
    assert r.status_code == 200, r.text
    return r.json()


def served(board: Dashboard, client: Client) -> list[str]:
    return board.admin("GET", f"/clients/{client.client_id}").json()["live"]["models"]


def offer(page: Page, client: Client, model: str):
    return page.locator(f'[data-panel="pending"] tr[data-key="{client.client_id} {model}"]')


def test_approve_refuse_forget_list_and_unlist(dashboard: Dashboard, dashboard_page: Page, offering: Client) -> None:
    page = dashboard_page
    shot = dashboard.screenshot

    # Off by default: both models served; the Models page shows what would wait.
    assert sorted(served(dashboard, offering)) == [CLAIMED, OWN]
    dashboard.open(page, "models")
    expect(page.locator("[data-catalogue]")).to_have_attribute("data-catalogue", "off")
    expect(page.locator('[data-panel="pending"] h2')).to_have_text("Would wait for approval")
    expect(offer(page, offering, CLAIMED)).to_contain_text("offers-two")

    # Turned on in Settings: nothing is served until the operator decides.
    dashboard.open(page, "settings")
    expect(page.locator('[data-setting="model_catalogue"]')).to_contain_text("Models page")
    page.locator('[data-setting="model_catalogue"] .switch').click()
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator('[data-setting="model_catalogue"]')).to_have_attribute("data-overridden", "true")
    assert dashboard.admin("GET", "/settings").json()["values"]["model_catalogue"] is True
    assert served(dashboard, offering) == []
    shot(page, "models-setting")

    dashboard.open(page, "models")
    expect(page.locator("[data-catalogue]")).to_have_attribute("data-catalogue", "on")
    expect(page.locator('[data-panel="pending"] h2')).to_have_text("Waiting for approval")
    shot(page, "models-pending")

    # Approve one offer: listed, served by the client at once.
    offer(page, offering, CLAIMED).get_by_role("button", name="Approve").click()
    expect(offer(page, offering, CLAIMED)).to_have_count(0)
    listed = page.locator(f'[data-panel="listed"] tr[data-key="{CLAIMED}"]')
    expect(listed).to_contain_text("offers-two")
    assert served(dashboard, offering) == [CLAIMED]
    expect(listed.locator('td[data-col="serving"]')).to_contain_text("offers-two")

    # Refuse the other: it shows among the decisions; Forget puts it back among the waiting.
    offer(page, offering, OWN).get_by_role("button", name="Refuse").click()
    decision = page.locator(f'[data-panel="decisions"] tr[data-key="{offering.client_id} {OWN}"]')
    expect(decision).to_contain_text("Refused")
    expect(offer(page, offering, OWN)).to_have_count(0)
    assert catalogue(dashboard)["refused"] == [{"client_id": offering.client_id, "client_name": "offers-two",
                                                "model": OWN}]
    shot(page, "models-decided")
    decision.get_by_role("button", name="Forget").click()
    expect(offer(page, offering, OWN)).to_have_count(1)

    # List a model for any client, then unlist it.
    page.get_by_role("button", name="List a model").click()
    dialog = page.get_by_role("dialog", name="List a model")
    dialog.get_by_label("Model").fill("bad\u0007name")
    dialog.get_by_role("button", name="List model").click()
    expect(dialog.locator(".field-error")).to_contain_text("control characters")
    dialog.get_by_label("Model").fill(OWN)
    dialog.get_by_label("Any client that offers it may serve it").check()
    shot(page, "models-list-dialog")
    dialog.get_by_role("button", name="List model").click()
    own = page.locator(f'[data-panel="listed"] tr[data-key="{OWN}"]')
    expect(own).to_contain_text("Any client")
    expect(offer(page, offering, OWN)).to_have_count(0)
    assert sorted(served(dashboard, offering)) == [CLAIMED, OWN]
    own.get_by_role("button", name=f"Unlist {OWN}").click()
    page.get_by_role("dialog", name=f"Unlist {OWN}").get_by_role("button", name="Unlist").click()
    expect(own).to_have_count(0)
    expect(offer(page, offering, OWN)).to_have_count(1)
    assert served(dashboard, offering) == [CLAIMED]

    # The client's panel on the Clients page shows what waits, and approves it.
    dashboard.open(page, "clients", f"id={offering.client_id}")
    drawer = page.locator(f'aside.drawer[data-client="{offering.client_id}"]')
    waiting = drawer.locator(f'.pending-models li[data-pending="{OWN}"]')
    expect(waiting).to_be_visible()
    shot(page, "models-client-panel")
    waiting.get_by_role("button", name="Approve").click()
    wait_until(lambda: sorted(served(dashboard, offering)) == [CLAIMED, OWN], 5, "the approval from the panel")
    expect(waiting).to_have_count(0)
    assert catalogue(dashboard)["pending"] == []
    assert page.errors == [BAD_REQUEST], page.errors  # the name with a control character  # type: ignore[attr-defined]


def test_a_refused_package_download_says_why_and_stays_on_the_page(dashboard: Dashboard, dashboard_page: Page) -> None:
    """The package is fetched, not posted by a form: a refusal (here the client was deleted meanwhile)
    shows as an error toast on the Clients page, not as the API's JSON in place of the dashboard."""
    page = dashboard_page
    made = dashboard.admin("POST", "/clients", {"name": "gone-soon", "max_concurrent": 2})
    assert made.status_code == 201, made.text
    client_id = made.json()["client_id"]
    dashboard.open(page, "clients", f"id={client_id}")
    drawer = page.locator(f'aside.drawer[data-client="{client_id}"]')
    expect(drawer).to_be_visible()
    assert dashboard.admin("DELETE", f"/clients/{client_id}").status_code in (200, 204)
    drawer.get_by_role("button", name="Download package").click()
    page.get_by_role("dialog").get_by_role("button", name="Download package").click()
    expect(page.locator(".toast-error")).to_contain_text("No package:")
    expect(page.locator(".toast-error")).to_contain_text("unchanged")
    assert "/dashboard" in page.url
    expect(page.locator('[data-page="clients"]')).to_be_visible()
