"""The status page in a real browser: headless Chromium (Debian's package) driven by Playwright, against a running
router with scripted replicas of every tier. It lists the replicas, and its mix and cost follow the requests."""

from __future__ import annotations

import os
import shutil
from urllib.parse import urlsplit

import pytest

from hybrid.bench.status_shots import QUIET_CHROMIUM, chromium_path
from tests.hybrid.router.status.fleet import REPLICAS, StatusFleet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CHROMIUM = chromium_path()
# Where a copy of the last screenshot goes, for docs/ (the test's own copy goes to its tmp_path).
SCREENSHOT_ENV = "HYBRID_STATUS_SCREENSHOT"


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install -y chromium); .ci/run does")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]' installs it"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(QUIET_CHROMIUM))
        yield browser
        browser.close()


@pytest.fixture
def fleet():
    fleet = StatusFleet()
    yield fleet
    fleet.stop()


def test_the_page_lists_the_replicas_and_its_mix_and_cost_follow_the_requests(browser, fleet, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    hosts, errors = set(), []
    page.on("request", lambda request: hosts.add(urlsplit(request.url).netloc))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(f"http://{fleet.http_address}/status")

    for replica_id, tier, _ in REPLICAS:
        row = page.locator(f'#replicas tbody tr[data-replica="{replica_id}"]')
        row.wait_for(timeout=10_000)
        assert tier in row.inner_text() and row.get_attribute("data-state") == "serving"
    assert "no request yet" in page.locator("#mix tbody").inner_text()
    assert page.locator("#cost-all").inner_text() == "–"

    fleet.send(3, "interactive")
    fleet.send(2, "batch")

    interactive = page.locator('#mix tbody tr[data-class="cold INTERACTIVE"]')
    interactive.wait_for(timeout=10_000)
    page.wait_for_function("document.querySelector('#cost-all').textContent.startsWith('$')", timeout=10_000)
    # Columns: class, edge, private, public, none, all.
    assert interactive.locator("td").all_inner_texts() == ["cold INTERACTIVE", "0", "3", "0", "0", "3"]
    batch = page.locator('#mix tbody tr[data-class="BATCH"]').locator("td").all_inner_texts()
    assert batch == ["BATCH", "0", "0", "2", "0", "2"]
    assert page.locator("#success-rate").inner_text() == "100.00 %"
    assert page.locator("#card-success").get_attribute("class") == "card ok"
    assert float(page.locator("#cost-all").inner_text().lstrip("$").replace(",", "")) > 0
    assert page.locator("#mix-chart .col").count() == 15  # one column a minute of the window
    assert page.locator("#mix-chart .col > div").count() >= 2  # private and public, in this minute (or two)

    fleet.fail_everywhere()
    page.wait_for_function("!document.querySelector('#failures tbody tr.empty')", timeout=10_000)
    failures = page.locator("#failures tbody").inner_text()
    assert "unavailable" in failures and "cold INTERACTIVE" in failures

    assert hosts == {fleet.http_address}, f"the page reached beyond the router: {hosts}"
    assert not errors, errors
    screenshot = tmp_path / "status.png"
    page.screenshot(path=str(screenshot), full_page=True)
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(screenshot, os.environ[SCREENSHOT_ENV])
