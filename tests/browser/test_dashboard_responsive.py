"""The dashboard at the widths it is used at, in Debian's chromium: 1,440 and 1,024 px (the nav is a
sidebar), 768 and 390 px (the nav folds into a Menu button), 900 px high, with a connected client, an
unconnected one, a key and requests in every table.

At each width it signs in, visits every page the nav lists and checks what a person would see: the
document is no wider than the window; the page title is inside the window, on the light page background
and covered by nothing; the nav and the content do not overlap; no control reaches past the window; no
row action (the Clients table's Manage, the Keys table's buttons) is clipped by its table; charts fit
their panels. Below 1,024 px the nav's links are hidden until the Menu button opens them (by mouse and
by keyboard), and a link navigates and closes it. The Manage buttons, the client's and a request's
panels, two dialogs and the Keys table's More menu fit the window.

Full-page screenshots (<width>-<page>.png) go to ARENAHUB_SCREENSHOT_DIR, else to a temporary folder.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.dashboard_fixtures import Dashboard
from tests.e2e.harness import MODELS, ask, wait_until

WIDTHS = [1440, 1024, 768, 390]
HEIGHT = 900
SIDEBAR_FROM = 1024  # narrower windows show the Menu button instead of the sidebar


@dataclass
class Seeded:
    client_id: str
    key_id: str


@pytest.fixture(scope="module")
def seeded(dashboard: Dashboard) -> Seeded:
    """A connected client, a registered client that never connected, a key with two requests and one without."""
    upstream = dashboard.stack.upstream(MODELS)
    client = dashboard.stack.client(dashboard.platform, upstream, name="lab-workstation-with-a-long-name")
    offline = dashboard.admin("POST", "/clients", {"name": "spare-laptop", "email": "owner@example.com",
                                                   "rpm": 60, "max_concurrent": 4})
    assert offline.status_code == 201, offline.text
    made = dashboard.admin("POST", "/keys", {"name": "research team", "credit": "5.00", "rpm": 120})
    assert made.status_code == 201, made.text
    assert dashboard.admin("POST", "/keys", {"name": "batch jobs", "models": MODELS}).status_code == 201
    key = made.json()
    with openai.OpenAI(base_url=dashboard.platform.v1, api_key=key["key"], max_retries=0, timeout=30) as api:
        for model in MODELS:
            assert api.chat.completions.create(model=model, messages=ask("hello narrow screens")).choices
    wait_until(lambda: len(dashboard.admin("GET", "/requests", key_id=key["id"]).json()["data"]) >= 2, 10,
               "the two request records")
    return Seeded(client.client_id, key["id"])


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("ARENAHUB_SCREENSHOT_DIR")
    path = Path(folder) if folder else tmp_path_factory.mktemp("responsive")
    path.mkdir(parents=True, exist_ok=True)
    return path


# What the page looks like, measured in the page: a list of what is wrong, empty when all is well.
LAYOUT = """() => {
  const out = [];
  const vw = window.innerWidth, vh = window.innerHeight;
  const name = (el) => {
    if (!el) return "nothing";
    const text = (el.getAttribute("aria-label") || el.textContent || "").trim().replace(/\\s+/g, " ").slice(0, 30);
    return `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}${[...el.classList].map((c) => "." + c).join("")}`
      + (text ? ` "${text}"` : "");
  };
  const px = (r) => `${Math.round(r.left)}..${Math.round(r.right)} x ${Math.round(r.top)}..${Math.round(r.bottom)}`;
  const doc = document.documentElement;
  if (doc.scrollWidth > vw + 1) out.push(`the document is ${doc.scrollWidth} px wide in a ${vw} px window`);

  const title = document.getElementById("page-title");
  const t = title.getBoundingClientRect();
  if (!title.textContent.trim() || t.width < 1 || t.height < 1) out.push("the page title has no box");
  else if (t.left < 0 || t.right > vw || t.top < 0 || t.bottom > vh) out.push(`the page title is outside: ${px(t)}`);
  const range = document.createRange();
  range.selectNodeContents(title);
  const words = range.getBoundingClientRect();
  for (const x of [words.left + 2, (words.left + words.right) / 2, words.right - 2]) {
    const top = document.elementFromPoint(x, (words.top + words.bottom) / 2);
    if (top !== title && !title.contains(top)) out.push(`the page title is under ${name(top)} at x=${Math.round(x)}`);
  }

  const nav = document.querySelector("nav.sidebar").getBoundingClientRect();
  const main = document.querySelector("main").getBoundingClientRect();
  const across = Math.min(nav.right, main.right) - Math.max(nav.left, main.left);
  const down = Math.min(nav.bottom, main.bottom) - Math.max(nav.top, main.top);
  if (across > 1 && down > 1) out.push(`the nav (${px(nav)}) overlaps the content (${px(main)})`);
  const toggle = document.querySelector(".nav-toggle");
  if (toggle && toggle.checkVisibility() && nav.height > 72) out.push(`the bar is ${Math.round(nav.height)} px tall`);

  const scrolls = (wrap) => wrap && wrap.scrollWidth > wrap.clientWidth + 1;
  for (const el of document.querySelectorAll("main :is(button, input, select, textarea, summary, a, h2)")) {
    if (!el.checkVisibility() || scrolls(el.closest(".table-wrap"))) continue;
    const r = el.getBoundingClientRect();
    if (r.width && (r.left < -1 || r.right > vw + 1)) out.push(`${name(el)} reaches past the window: ${px(r)}`);
  }
  for (const wrap of document.querySelectorAll("main .table-wrap")) {
    if (!wrap.checkVisibility()) continue;
    wrap.scrollLeft = 0;
    const w = wrap.getBoundingClientRect();
    for (const el of wrap.querySelectorAll('td:is([data-col="actions"], [data-col="edit"]) :is(button, summary)')) {
      if (!el.checkVisibility()) continue;
      const r = el.getBoundingClientRect();
      if (r.left < w.left - 1 || r.right > w.right + 1) out.push(`${name(el)} is clipped: ${px(r)} in ${px(w)}`);
    }
  }
  for (const chart of document.querySelectorAll("main .chart")) {
    const svg = chart.querySelector("svg");
    if (!svg || !chart.checkVisibility()) continue;
    const c = chart.getBoundingClientRect(), s = svg.getBoundingClientRect();
    if (s.right > c.right + 1 || s.width < c.width - 2) out.push(`a chart is ${px(s)} in ${px(c)}`);
  }
  return out;
}"""

# The share of light pixels in a PNG (decoded by the browser): the title stands on the light page
# background, not on a dark band.
LIGHT_SHARE = """async (data) => {
  const img = new Image();
  img.src = "data:image/png;base64," + data;
  await img.decode();
  const canvas = new OffscreenCanvas(img.width, img.height);
  const g = canvas.getContext("2d");
  g.drawImage(img, 0, 0);
  const px = g.getImageData(0, 0, img.width, img.height).data;
  let light = 0;
  for (let i = 0; i < px.length; i += 4) light += 0.2126 * px[i] + 0.7152 * px[i + 1] + 0.0722 * px[i + 2] > 180;
  return light / (px.length / 4);
}"""

# Whether the element is inside the window and is what a click at its centre reaches.
REACHABLE = """(el) => {
  const r = el.getBoundingClientRect();
  const inside = r.width > 0 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight;
  const hit = document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2);
  if (inside && (hit === el || el.contains(hit))) return "";
  return `${[r.left, r.right, r.top, r.bottom].map(Math.round)}, a click reaches ${hit && hit.outerHTML.slice(0, 80)}`;
}"""


class Check:
    """Collects what is wrong at one width, so that one run names every problem."""

    def __init__(self, page: Page, width: int, folder: Path) -> None:
        self.page, self.width, self.folder = page, width, folder
        self.problems: list[str] = []

    def shot(self, name: str, *, full_page: bool = True) -> None:
        self.page.screenshot(path=str(self.folder / f"{self.width}-{name}.png"), full_page=full_page)

    def layout(self, where: str, *, title_shown: bool = True) -> None:
        self.problems += [f"{where}: {p}" for p in self.page.evaluate(LAYOUT) if title_shown or "page title" not in p]
        if not title_shown:
            return
        title = self.page.locator("#page-title")
        box = title.bounding_box()
        size = self.page.viewport_size or {"width": 0, "height": 0}
        if box and box["width"] and box["height"] and box["x"] >= 0 and box["x"] + box["width"] <= size["width"]:
            png = self.page.screenshot(clip=box)
            share = self.page.evaluate(LIGHT_SHARE, base64.b64encode(png).decode())
            if share < 0.5:
                self.problems.append(f"{where}: the page title is not on the light background ({share:.0%} light)")

    def reachable(self, where: str, element: Locator) -> None:
        element.evaluate("el => el.scrollIntoView({block: 'center', inline: 'nearest'})")
        wrong = element.evaluate(REACHABLE)
        if wrong:
            self.problems.append(f"{where}: not reachable ({wrong})")

    def on_top(self, where: str, element: Locator) -> None:
        """Like ``reachable``, without scrolling first."""
        wrong = element.evaluate(REACHABLE)
        if wrong:
            self.problems.append(f"{where}: not reachable ({wrong})")

    def inside_window(self, where: str, element: Locator) -> None:
        box = element.bounding_box()
        size = self.page.viewport_size or {"width": 0, "height": 0}
        if not box or box["x"] < -1 or box["y"] < -1 or box["x"] + box["width"] > size["width"] + 1 \
                or box["y"] + box["height"] > size["height"] + 1:
            self.problems.append(f"{where}: outside the {size['width']}x{size['height']} window: {box}")

    def dialog(self, where: str, opener: Locator, name: str) -> None:
        opener.click()
        dialog = self.page.get_by_role("dialog", name=name)
        expect(dialog).to_be_visible()
        self.inside_window(f"{where} dialog", dialog)
        self.problems += [f"{where} dialog: {p}" for p in dialog.evaluate("""(d) => {
          const box = d.getBoundingClientRect();
          const past = (r) => r.left < box.left - 1 || r.right > box.right + 1;
          return [...d.querySelectorAll("input, select, textarea, button")].filter((el) => el.checkVisibility())
            .filter((el) => past(el.getBoundingClientRect()))
            .map((el) => `${el.name || el.textContent.trim()} reaches past the dialog`);
        }""")]
        self.shot(f"{where}-dialog", full_page=False)
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_have_count(0)

    def assert_none(self) -> None:
        assert not self.problems, f"at {self.width} px:\n" + "\n".join(self.problems)


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_fits_the_window(width: int, dashboard: Dashboard, dashboard_tab: Page, seeded: Seeded,
                                    shots: Path) -> None:
    page = dashboard_tab
    page.set_viewport_size({"width": width, "height": HEIGHT})
    check = Check(page, width, shots)

    page.goto(dashboard.url + "/dashboard")
    page.get_by_label("Admin token or password").fill(dashboard.token)
    check.shot("sign-in")
    if page.evaluate("document.documentElement.scrollWidth") > width + 1:
        check.problems.append("sign-in: the document is wider than the window")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector('[data-page="overview"][data-loaded="true"]')

    pages: list[str] = page.locator(".nav a[data-nav]").evaluate_all("links => links.map((a) => a.dataset.nav)")
    assert len(pages) >= 7, pages
    for page_id in pages:
        dashboard.open(page, page_id)
        if page_id == "overview":
            page.wait_for_selector(".chart svg")
        check.shot(page_id)
        check.layout(page_id)

    # The Clients table: every Manage button can be scrolled to and clicked; the panel fits.
    dashboard.open(page, "clients")
    manage = page.locator('[data-page="clients"] td[data-col="actions"] button')
    expect(manage).to_have_count(2)
    for i in range(manage.count()):
        check.reachable(f"clients: Manage of row {i + 1}", manage.nth(i))
        manage.nth(i).click(trial=True)  # Playwright's own check that a click would land on it
    page.get_by_role("button", name="Manage lab-workstation-with-a-long-name").click()
    drawer = page.locator(f'aside.drawer[data-client="{seeded.client_id}"]')
    expect(drawer).to_be_visible()
    check.inside_window("clients: the client's panel", drawer)
    check.shot("clients-panel", full_page=False)
    check.reachable("clients: the panel's Close", drawer.get_by_role("button", name="Close"))
    drawer.get_by_role("button", name="Close").click()
    expect(drawer).to_be_hidden()
    check.dialog("clients-register", page.get_by_role("button", name="Register New Client"), "Register New Client")

    # Keys: the first row's More menu opens inside the window, over the next row; the Create key dialog fits.
    dashboard.open(page, "keys")
    more = page.locator('summary[aria-label="More actions for batch jobs"]')
    check.reachable("keys: More", more)
    more.click()
    menu = page.locator('[data-page="keys"] tbody tr').first.locator(".menu-list")
    expect(menu).to_be_visible()
    check.inside_window("keys: the More menu", menu)
    for item in ("View requests", "Rotate secret…", "Delete…"):
        check.on_top(f"keys: the More menu's {item}", menu.get_by_text(item))
    check.shot("keys-menu", full_page=False)
    more.click()
    check.dialog("keys-create", page.get_by_role("button", name="Create key"), "Create key")

    # Requests: a row's detail panel fits.
    dashboard.open(page, "requests")
    page.locator('[data-page="requests"] tbody tr.clickable').first.click()
    detail = page.locator("aside.drawer[aria-label='Request details']")
    expect(detail).to_be_visible()
    expect(detail.locator(".kv").first).to_be_visible()
    check.inside_window("requests: the request's panel", detail)
    check.layout("requests with the panel open", title_shown=width >= 768)  # a phone's panel covers the page
    check.shot("requests-panel", full_page=False)
    page.keyboard.press("Escape")

    check.assert_none()
    if width >= SIDEBAR_FROM:
        sidebar_stays(page)
    else:
        menu_folds(check, dashboard)
    assert not page.errors, page.errors  # type: ignore[attr-defined]


def sidebar_stays(page: Page) -> None:
    expect(page.locator(".nav-toggle")).to_be_hidden()
    expect(page.locator(".nav a[data-nav]").first).to_be_visible()
    nav = page.locator("nav.sidebar").bounding_box()
    main = page.locator("main").bounding_box()
    assert nav and main and main["x"] >= nav["x"] + nav["width"] - 1, (nav, main)


def menu_folds(check: Check, dashboard: Dashboard) -> None:
    page = check.page
    links = page.locator(".nav a[data-nav]")
    toggle = page.get_by_role("button", name="Menu")
    dashboard.open(page, "overview")
    expect(toggle).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    panel = toggle.get_attribute("aria-controls")
    assert panel and page.locator(f"#{panel}").count() == 1, panel
    for i in range(links.count()):
        expect(links.nth(i)).to_be_hidden()

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    width = (page.viewport_size or {"width": 0})["width"]
    for i in range(links.count()):
        expect(links.nth(i)).to_be_visible()
        box = links.nth(i).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, box
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    check.shot("menu-open", full_page=False)
    page.mouse.click(width / 2, HEIGHT - 10)  # a click on the page below the menu closes it
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(links.first).to_be_hidden()

    toggle.click()
    page.get_by_role("link", name="Keys").click()
    page.wait_for_selector('[data-page="keys"][data-loaded="true"]')
    expect(page.locator("#page-title")).to_have_text("Keys")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(links.first).to_be_hidden()

    # By keyboard: Enter opens it, Tab goes into it, Escape closes it and gives the focus back.
    toggle.focus()
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Tab")
    assert page.evaluate("(id) => Boolean(document.activeElement.closest('#' + id))", panel), \
        "Tab after the Menu button goes into the menu"
    page.keyboard.press("Escape")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(links.first).to_be_hidden()
    expect(toggle).to_be_focused()
