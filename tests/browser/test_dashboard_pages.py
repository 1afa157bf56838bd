"""The Keys, Usage & billing, Requests and Settings pages in Debian's chromium, against a real
platform with a real client, and requests sent with the openai package.

Screenshots (1440x900, full page) of every page and dialog worth seeing go to
test-artifacts/screenshots/<page>-<state>.png.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from playwright.sync_api import Page, expect

import arenahub
from tests.browser.dashboard_fixtures import Dashboard
from tests.e2e.harness import MODELS, ask, wait_until


@dataclass
class Seeded:
    key_id: str
    client_id: str
    client_name: str
    plain_id: str  # the answered request
    streamed_id: str  # the streamed answer
    error_id: str  # the request the upstream refused


def consumer(board: Dashboard, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=board.platform.v1, api_key=key, max_retries=0, timeout=30)


def records(board: Dashboard, **filters: str) -> list[dict]:
    answer = board.admin("GET", "/requests", limit="500", **filters)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def wait_records(board: Dashboard, count: int, **filters: str) -> list[dict]:
    return wait_until(lambda: len(found := records(board, **filters)) >= count and found, 10,
                      f"{count} request records for {filters}")


@pytest.fixture(scope="module")
def seeded(dashboard: Dashboard) -> Iterator[Seeded]:
    """A connected client and a consumer key with two answered requests (one streamed) and one the upstream refused."""
    upstream = dashboard.stack.upstream(MODELS)
    for model in MODELS:  # dear enough that a few tokens cost cents
        assert dashboard.admin("PUT", f"/prices/{model}", {"prompt": "1000", "completion": "2000"}).status_code == 200
    client = dashboard.stack.client(dashboard.platform, upstream, name="pages-client")
    made = dashboard.admin("POST", "/keys", {"name": "seed consumer", "credit": "5.00"})
    assert made.status_code == 201, made.text
    key = made.json()
    with consumer(dashboard, key["key"]) as api:
        assert api.chat.completions.create(model=MODELS[0], messages=ask("hello pages")).choices[0].message.content
        chunks = api.chat.completions.create(model=MODELS[1], messages=ask("streamed pages"), stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        with pytest.raises(openai.APIStatusError) as refused:
            api.chat.completions.create(model=MODELS[0], messages=ask("[[status=400]] refused upstream"))
    found = wait_records(dashboard, 3, key_id=key["id"])
    assert sorted(r["status"] for r in found) == [200, 200, refused.value.status_code], found
    yield Seeded(key["id"], client.client_id, "pages-client",
                 plain_id=next(r["id"] for r in found if r["status"] == 200 and not r["stream"]),
                 streamed_id=next(r["id"] for r in found if r["stream"]),
                 error_id=next(r["id"] for r in found if r["status"] != 200))


def key_row(page: Page, key_id: str):
    return page.locator(f'[data-page="keys"] tr[data-key="{key_id}"]')


def cell(row, column: int):
    return row.locator("td").nth(column)


# What chromium logs for an API answer of 400: the tests provoke some on purpose.
BAD_REQUEST = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
LOG_PAGE = re.compile(r"/api/admin/requests\?")
# Columns of the Keys table.
NAME, STATUS, LIMITS, MODELS_COL, CREDIT, REQUESTS, TOKENS, COST = range(8)


def test_keys_create_top_up_edit_revoke(dashboard: Dashboard, dashboard_page: Page, seeded: Seeded) -> None:
    page = dashboard_page
    shot = dashboard.screenshot
    dashboard.open(page, "keys")
    seed = key_row(page, seeded.key_id)
    expect(cell(seed, STATUS)).to_have_text("Active")
    expect(cell(seed, REQUESTS)).to_have_text("3")  # the last 24 hours, from the aggregates
    available = float(dashboard.admin("GET", f"/keys/{seeded.key_id}").json()["credit"]["available_usd"])
    assert available < 5
    expect(cell(seed, CREDIT)).to_have_text(f"${available:,.2f}")  # what is left of the starting 5.00

    # Create: a prepaid key with limits; its secret is shown once.
    page.get_by_role("button", name="Create key").click()
    dialog = page.get_by_role("dialog", name="Create key")
    dialog.get_by_label("Name").fill("browser key")
    dialog.get_by_label("Email").fill("buyer@example.com")
    dialog.get_by_label("Requests per minute").fill("30")
    dialog.get_by_label("Billing").select_option("prepaid")
    dialog.get_by_label("Starting credit (USD)").fill("five")
    shot(page, "keys-create")
    dialog.get_by_role("button", name="Create key").click()
    # The API's validation error is shown next to the field, and nothing was made.
    expect(dialog.locator(".field-error")).to_contain_text("Must be a USD amount")
    assert not [k for k in dashboard.admin("GET", "/keys").json()["data"] if k["name"] == "browser key"]
    shot(page, "keys-create-error")
    dialog.get_by_label("Starting credit (USD)").fill("5.00")
    dialog.get_by_role("button", name="Create key").click()
    made = page.get_by_role("dialog", name="Key created")
    secret = made.locator('[data-secret="key"]').inner_text()
    assert secret and "browser key" in made.inner_text()
    key = next(k for k in dashboard.admin("GET", "/keys").json()["data"] if k["name"] == "browser key")
    assert secret.startswith(key["key_prefix"])
    assert (key["email"], key["rpm"], key["unlimited"], key["credit"]["balance_usd"]) == (
        "buyer@example.com", 30, False, "5.00")
    shot(page, "keys-secret")
    made.get_by_role("button", name="Done").click()
    row = key_row(page, key["id"])
    expect(cell(row, CREDIT)).to_have_text("$5.00")
    expect(cell(row, LIMITS)).to_have_text("30 rpm")
    assert secret not in page.content()  # shown once: gone with its dialog

    # Top up: the balance changes in the table.
    row.get_by_role("button", name="Top up").click()
    dialog = page.get_by_role("dialog", name="Top up browser key")
    dialog.get_by_label("Amount (USD)").fill("2.50")
    dialog.get_by_label("Note").fill("invoice 7")
    shot(page, "keys-top-up")
    dialog.get_by_role("button", name="Add credit").click()
    expect(cell(row, CREDIT)).to_have_text("$7.50")
    assert dashboard.admin("GET", f"/keys/{key['id']}").json()["credit"]["balance_usd"] == "7.50"

    # Edit limits: rpm, tpm, concurrency and models, with PATCH.
    row.get_by_role("button", name="Edit").click()
    dialog = page.get_by_role("dialog", name="Edit browser key")
    expect(dialog.get_by_label("Requests per minute")).to_have_value("30")
    dialog.get_by_label("Requests per minute").fill("77")
    dialog.get_by_label("Tokens per minute").fill("5000")
    dialog.get_by_label("Concurrent requests").fill("2")
    dialog.get_by_label("Models").fill(f"{MODELS[0]}, {MODELS[1]}")
    shot(page, "keys-edit")
    dialog.get_by_role("button", name="Save").click()
    expect(cell(row, LIMITS)).to_have_text("77 rpm · 5,000 tpm · 2 at once")
    expect(cell(row, MODELS_COL)).to_contain_text(MODELS[0])
    stored = dashboard.admin("GET", f"/keys/{key['id']}").json()
    assert (stored["rpm"], stored["tpm"], stored["max_concurrent"], stored["allowed_models"]) == (77, 5000, 2, MODELS)

    # The key works; its request shows in the 24-hour usage once the table reloads (after the revoke).
    with consumer(dashboard, secret) as api:
        api.chat.completions.create(model=MODELS[0], messages=ask("from the browser key"))
    wait_records(dashboard, 1, key_id=key["id"])
    wait_until(lambda: any(s["id"] == key["id"] and s["requests"] == 1 for s in dashboard.admin(
        "GET", "/analytics/summaries", by="key").json()["data"]), 10, "the key's request in the aggregates")

    # Revoke: the status says so and the platform refuses the key.
    row.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog", name="Revoke browser key?").get_by_role("button", name="Revoke").click()
    expect(cell(row, STATUS)).to_have_text("Revoked")
    expect(cell(row, REQUESTS)).to_have_text("1")
    expect(row.get_by_role("button", name="Enable")).to_be_visible()
    assert dashboard.admin("GET", f"/keys/{key['id']}").json()["disabled"] is True
    with consumer(dashboard, secret) as api:
        def refused() -> bool:  # the platform's key cache follows changes within a second or so
            try:
                api.models.list()
            except openai.AuthenticationError:
                return True
            return False
        wait_until(refused, 10, "the revoked key to be refused", interval=0.2)
    shot(page, "keys-list")

    # The menu links the key to its requests.
    row.locator("summary").click()
    row.get_by_role("link", name="View requests").click()
    page.wait_for_selector('[data-page="requests"][data-loaded="true"]')
    expect(page.locator('[data-page="requests"] .table-wrap tbody tr[data-key]')).to_have_count(1)
    assert f"key_id={key['id']}" in page.url

    # Rotate: a new secret, shown once; then delete the key.
    page.go_back()
    page.wait_for_selector('[data-page="keys"][data-loaded="true"]')
    row.locator("summary").click()
    row.get_by_role("button", name="Rotate secret…").click()
    page.get_by_role("dialog", name="Rotate the secret of browser key?").get_by_role("button", name="Rotate").click()
    rotated = page.get_by_role("dialog", name="New secret").locator('[data-secret="key"]').inner_text()
    assert rotated != secret and rotated.startswith("sk-")
    page.get_by_role("dialog", name="New secret").get_by_role("button", name="Done").click()
    row.locator("summary").click()
    row.get_by_role("button", name="Delete…").click()
    page.get_by_role("dialog", name="Delete browser key?").get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)
    assert dashboard.admin("GET", f"/keys/{key['id']}").status_code == 404
    assert page.errors == [BAD_REQUEST], page.errors  # the invalid credit, and nothing else  # type: ignore[attr-defined]


def test_usage_statement_and_export(dashboard: Dashboard, dashboard_page: Page, seeded: Seeded) -> None:
    page = dashboard_page
    dashboard.open(page, "usage", "preset=today")
    usage = dashboard.admin("GET", "/usage", key=seeded.key_id).json()
    assert usage["total"]["requests"] == 2  # the refused request is not charged
    row = page.locator(f'[data-page="usage"] .panel:has(h2:text("By key")) tr[data-key="{seeded.key_id}"]')
    expect(row).to_contain_text("seed consumer")
    expect(row.locator("td").nth(1)).to_have_text("2")
    client = page.locator(f'[data-page="usage"] .panel:has(h2:text("By client")) tr[data-key="{seeded.client_id}"]')
    expect(client).to_contain_text(seeded.client_name)
    models = page.locator('[data-page="usage"] .panel:has(h2:text("By model"))')
    for model in MODELS:
        expect(models.locator(f'tr[data-key="{model}"]')).to_be_visible()
    chart = page.locator('[data-page="usage"] .chart')
    expect(chart).to_be_hidden()  # one day: the card says it all
    # The statement lines (from the summary, which keeps the newest): all of them, every request is today's.
    lines = len(dashboard.admin("GET", "/usage").json()["by_key"])
    expect(page.locator('[data-page="usage"] details.statement summary span.muted').last).to_have_text(
        f"{lines} line{'' if lines == 1 else 's'}")
    assert int(page.locator('[data-card="requests"]').get_attribute("data-value").replace(",", "")) >= 2
    dashboard.screenshot(page, "usage-today")

    # Presets and filters are in the hash; a key filter narrows the statement.
    page.get_by_role("button", name="Last 7 days").click()
    expect(page.get_by_role("button", name="Last 7 days")).to_have_attribute("aria-pressed", "true")
    assert "preset=7d" in page.url
    # The cost per day: seven bars, today's is every key's cost (all of it today).
    cost = dashboard.admin("GET", "/usage").json()["total"]["cost_micros"] / 1e6
    assert cost > 0.01
    expect(chart).to_have_attribute("data-points", "7")
    expect(chart).to_be_visible()
    assert abs(float(chart.get_attribute("data-sum")) - cost) < 0.001
    dashboard.screenshot(page, "usage-week")
    page.get_by_label("Key", exact=True).select_option(seeded.key_id)
    expect(page.locator('[data-page="usage"] .panel:has(h2:text("By key")) tbody tr[data-key]')).to_have_count(1)
    assert f"key={seeded.key_id}" in page.url
    dashboard.screenshot(page, "usage-week-one-key")

    # Export the period's aggregates as CSV: the seed key's minutes are in it.
    with page.expect_download() as info:
        page.get_by_role("button", name="Export CSV").click()
    download = info.value
    assert re.fullmatch(r"arenahub-aggregates-\d{8}T\d{6}Z-\d{8}T\d{6}Z\.csv", download.suggested_filename)
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert rows and {r["key_id"] for r in rows} == {seeded.key_id}
    assert sum(int(r["requests"]) for r in rows) == 3

    # A key's name opens its requests of the period.
    page.get_by_role("link", name="seed consumer").click()
    page.wait_for_selector('[data-page="requests"][data-loaded="true"]')
    assert f"key_id={seeded.key_id}" in page.url and "since=" in page.url and "until=" in page.url
    expect(page.locator('[data-page="requests"] .table-wrap tbody tr[data-key]')).to_have_count(3)
    assert not page.errors, page.errors  # type: ignore[attr-defined]


def test_requests_filter_detail_export(dashboard: Dashboard, dashboard_page: Page, seeded: Seeded) -> None:
    page = dashboard_page
    dashboard.open(page, "requests", f"key_id={seeded.key_id}")
    rows = page.locator('[data-page="requests"] .table-wrap tbody tr[data-key]')
    expect(rows).to_have_count(3)
    expect(page.get_by_label("Key", exact=True)).to_have_value(seeded.key_id)

    # The detail of the streamed answer: timing, tokens, cost, one routing attempt on the client.
    streamed = seeded.streamed_id
    page.locator(f'[data-page="requests"] tr[data-key="{streamed}"]').click()
    drawer = page.locator(f'aside.drawer[data-request="{streamed}"][data-loaded="true"]')
    expect(drawer).to_contain_text("Routing attempts (1)")
    expect(drawer.locator(".attempts tbody tr")).to_have_count(1)
    expect(drawer.locator(".attempts")).to_contain_text(seeded.client_name)
    expect(drawer.locator(".attempts")).to_contain_text("ok")
    expect(drawer).to_contain_text("Time to first token")
    expect(drawer.locator(".notice-inline")).to_contain_text("not stored")
    dashboard.screenshot(page, "requests-detail")

    # Status filter: errors only, reflected in the hash; the detail shows the error.
    page.get_by_label("Status").select_option("error")
    expect(rows).to_have_count(1)
    assert "status=error" in page.url and f"key_id={seeded.key_id}" in page.url
    rows.first.click()
    drawer = page.locator(f'aside.drawer[data-request="{seeded.error_id}"][data-loaded="true"]')
    expect(drawer.locator(".detail-status")).to_contain_text(str(records(dashboard, id=seeded.error_id)[0]["status"]))
    dashboard.screenshot(page, "requests-error")
    drawer.get_by_role("button", name="Close").click()

    # With prompts stored (the operator's choice), the detail shows the prompt and the answer.
    assert dashboard.admin("PATCH", "/settings", {"store_prompts": True}).status_code == 200
    try:
        made = dashboard.admin("POST", "/keys", {"name": "content key"}).json()
        with consumer(dashboard, made["key"]) as api:
            done = api.chat.completions.create(model=MODELS[0], messages=ask("stored words"))
            answer = done.choices[0].message.content
        stored = wait_records(dashboard, 1, key_id=made["id"])[0]
    finally:
        assert dashboard.admin("PATCH", "/settings", {"store_prompts": None}).status_code == 200
    page.get_by_label("Status").select_option("")
    page.get_by_role("button", name="Refresh").click()  # the lists of keys and clients too
    page.get_by_label("Key", exact=True).select_option(made["id"])
    expect(rows).to_have_count(1)
    rows.first.click()
    drawer = page.locator(f'aside.drawer[data-request="{stored["id"]}"][data-loaded="true"]')
    expect(drawer.locator("pre.content").first).to_contain_text("stored words")
    expect(drawer.locator("pre.content").last).to_have_text(answer)
    dashboard.screenshot(page, "requests-content")
    drawer.get_by_role("button", name="Close").click()
    page.get_by_label("Key", exact=True).select_option(seeded.key_id)
    expect(rows).to_have_count(3)

    # Search by request id.
    page.get_by_label("Request id").fill(seeded.plain_id)
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-key", seeded.plain_id)

    # "Older" pages on with the cursor.
    page.get_by_role("button", name="Clear").click()
    expect(rows).to_have_count(len(records(dashboard)))
    page.route(LOG_PAGE, lambda route: route.continue_(
        url=route.request.url.replace("limit=50", "limit=2")))
    page.get_by_role("button", name="Refresh").click()
    expect(rows).to_have_count(2)
    page.get_by_role("button", name="Older").click()
    expect(rows).to_have_count(min(4, len(records(dashboard))))
    page.unroute(LOG_PAGE)

    # Export the filtered log as CSV (a GET link with the session cookie).
    page.get_by_label("Key", exact=True).select_option(seeded.key_id)
    expect(rows).to_have_count(3)
    dashboard.screenshot(page, "requests-list")
    with page.expect_download() as info:
        page.get_by_role("button", name="Export CSV").click()
    exported = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))
    assert [r["id"] for r in exported] == [r["id"] for r in reversed(records(dashboard, key_id=seeded.key_id))]
    assert {r["client_id"] for r in exported if r["status"] == "200"} == {seeded.client_id}
    with page.expect_download() as info:
        page.get_by_role("button", name="Export JSON").click()
    assert len(json.loads(Path(info.value.path()).read_text(encoding="utf-8"))) == 3
    assert not page.errors, page.errors  # type: ignore[attr-defined]


def test_settings_prices_and_password(dashboard: Dashboard, dashboard_page: Page, seeded: Seeded) -> None:
    page = dashboard_page
    shot = dashboard.screenshot
    dashboard.open(page, "settings")
    assert dashboard.admin("GET", "/settings").json()["overridden"] == []
    expect(page.locator('[data-about="version"]')).to_have_text(arenahub.__version__)
    shot(page, "settings")

    # An invalid value: the API's error is shown next to the field.
    page.get_by_label("Queue size").fill("-1")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator('[data-setting="queue_size"] .field-error, '
                        '[data-setting="queue_size"] [aria-invalid="true"]')).not_to_have_count(0)
    expect(page.locator('[data-panel="settings"]')).to_contain_text("Must be a whole number from 0 to 100000.")
    shot(page, "settings-error")

    # Routing strategy and queue size: saved, shown as overridden, still there after a reload.
    page.get_by_label("Routing strategy").select_option("round_robin")
    page.get_by_label("Queue size").fill("7")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator('[data-setting="queue_size"]')).to_have_attribute("data-overridden", "true")
    page.reload()
    page.wait_for_selector('[data-page="settings"][data-loaded="true"]')
    expect(page.get_by_label("Routing strategy")).to_have_value("round_robin")
    expect(page.get_by_label("Queue size")).to_have_value("7")
    expect(page.locator('[data-setting="routing_strategy"]')).to_contain_text("Overridden")
    live = dashboard.admin("GET", "/settings").json()
    assert (live["values"]["routing_strategy"], live["values"]["queue_size"]) == ("round_robin", 7)
    assert live["overridden"] == ["queue_size", "routing_strategy"]
    expect(page.locator('[data-about="strategy"]')).to_have_text("round_robin")

    # Reset to default: the override goes.
    page.locator('[data-setting="queue_size"]').get_by_role("button", name="Reset to default").click()
    expect(page.locator('[data-setting="queue_size"]')).to_have_attribute("data-overridden", "false")
    expect(page.get_by_label("Queue size")).to_have_value(str(live["defaults"]["queue_size"]))
    assert dashboard.admin("GET", "/settings").json()["overridden"] == ["routing_strategy"]

    # Store prompts: a clear privacy warning next to the switch.
    expect(page.locator('[data-setting="store_prompts"] .privacy')).to_contain_text("personal")

    # Prices: add a model, then edit it.
    page.get_by_role("button", name="Add model").click()
    dialog = page.get_by_role("dialog", name="Add a model price")
    dialog.get_by_label("Model").fill("vendor/browser-model")
    dialog.get_by_label("Prompt price").fill("1.25")
    dialog.get_by_label("Completion price").fill("2.5")
    shot(page, "settings-price")
    dialog.get_by_role("button", name="Save price").click()
    price_row = page.locator('[data-panel="prices"] tr[data-key="vendor/browser-model"]')
    expect(price_row).to_contain_text("$1.25")
    expect(price_row).to_contain_text("Set here")
    price_row.get_by_role("button", name="Edit").click()
    dialog = page.get_by_role("dialog", name="Price of vendor/browser-model")
    dialog.get_by_label("Completion price").fill("3")
    dialog.get_by_role("button", name="Save price").click()
    expect(price_row).to_contain_text("$3.00")
    prices = {p["model"]: p for p in dashboard.admin("GET", "/prices").json()["data"]}
    price = prices["vendor/browser-model"]
    assert (price["prompt_per_1m_usd"], price["completion_per_1m_usd"]) == ("1.25", "3.00")
    shot(page, "settings-saved")

    # The dashboard password: a short one is refused next to the field; a good one ends the session.
    form = page.locator('[data-panel="password"]')
    form.get_by_label(re.compile(r"^New password")).fill("short")
    form.get_by_label("Repeat the new password").fill("short")
    form.get_by_role("button", name="Set password").click()
    expect(form.locator(".field-error")).to_contain_text("12 characters")
    password = "a long browser password"
    form.get_by_label(re.compile(r"^New password")).fill(password)
    form.get_by_label("Repeat the new password").fill(password)
    form.get_by_role("button", name="Set password").click()
    page.wait_for_url(re.compile(r"/dashboard/login$"))
    page.get_by_label("Admin token or password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector('[data-page="overview"][data-loaded="true"]')
    assert page.errors == [BAD_REQUEST] * 2, page.errors  # the invalid queue size and password  # type: ignore[attr-defined]
