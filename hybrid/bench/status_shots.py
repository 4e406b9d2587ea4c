"""Screenshots of the router's status page (``/status``) during the overload bench's router run: headless Chromium
(Debian's ``chromium`` package, or the one ``HYBRID_CHROMIUM`` names) driven by Playwright, both optional.

``StatusScreenshots`` runs the browser on a thread of its own while the run goes (the load generator has its
own processes): at each moment asked for, counted from the run's start or at the run's end, it opens the
page, lets it draw the router's figures, and saves the page whole. Chromium starts before the run and talks
to nothing but the page: background networking, component updates, sync and the rest are off. Where the
router checks API keys, the admin key goes in the address's fragment (``/status#key=...``), which the page
keeps to itself.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("hybrid.bench")

CHROMIUM_ENV = "HYBRID_CHROMIUM"
# Nothing but the page: no update checks, no safe-browsing lists, no sync, no metrics reports.
QUIET_CHROMIUM = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-default-apps",
    "--disable-sync",
    "--metrics-recording-only",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-dev-shm-usage",
    "--no-sandbox",  # as root (CI, containers) Chromium's sandbox refuses to start
)
VIEWPORT = {"width": 1400, "height": 1150}
# How long before its moment a page is opened: the page's first draw, and one refresh (every 2 s) after it.
OPEN_AHEAD_S = 4.0


def chromium_path() -> str:
    """The Chromium to drive: ``HYBRID_CHROMIUM``, else ``chromium`` on the PATH, else Debian's path."""
    return os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or "/usr/bin/chromium"


def check_browser() -> str:
    """Chromium's path, where it and Playwright are both here; else a ValueError that says what to install."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise ValueError(
            "the status page's screenshots need Playwright: pip install 'hybrid-inference[bench]' (or playwright), "
            "or leave out --status-screenshot"
        ) from None
    path = chromium_path()
    if not os.access(path, os.X_OK):
        raise ValueError(
            f"the status page's screenshots need Chromium, and there is none at {path}: install it "
            f"(apt-get install chromium), name it in {CHROMIUM_ENV}, or leave out --status-screenshot"
        )
    return path


@dataclass(frozen=True)
class Moment:
    """A screenshot to take: ``name`` (e.g. burst), ``at_s`` seconds after the run's start (None: once the run has
    ended, the page refreshed after its last answers), saved to ``path``."""

    name: str
    at_s: float | None
    path: Path


class StatusScreenshots:
    """``with StatusScreenshots(page_url, moments):`` around a run saves a screenshot of the page at each moment
    the run lasts long enough to reach; ``taken`` lists them, ``error`` says why the browser failed, if it did
    (the run goes on without it)."""

    def __init__(self, page_url: str, moments: list[Moment], admin_key: str | None = None):
        self.page_url = page_url + (f"#key={admin_key}" if admin_key else "")
        self.moments = sorted(moments, key=lambda moment: math.inf if moment.at_s is None else moment.at_s)
        self.chromium = check_browser()
        self.taken: list[dict] = []
        self.error: str | None = None
        self._started = 0.0
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-screenshots", daemon=True)

    def __enter__(self) -> StatusScreenshots:
        self._started = time.time()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._ended.set()
        self._thread.join(60)

    def _run(self) -> None:
        from playwright.sync_api import sync_playwright

        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=self.chromium, headless=True, args=list(QUIET_CHROMIUM)
                )
                try:
                    for moment in self.moments:
                        self._shoot(browser, moment)
                finally:
                    browser.close()
        except Exception as error:  # a browser that fails costs the screenshots, not the run
            self.error = f"{type(error).__name__}: {error}"
            log.warning("status page screenshots stopped: %s", self.error)

    def _wait_until(self, wall_time: float) -> bool:
        """Waits until ``wall_time``; False where the run ended first."""
        return not self._ended.wait(max(0.0, wall_time - time.time()))

    def _shoot(self, browser, moment: Moment) -> bool:
        """Takes ``moment``'s screenshot; False where the run ended before a moment that counts from its start (those
        after it are skipped at once, and the one at the end is still taken)."""
        at_end = moment.at_s is None
        due = math.inf if at_end else self._started + moment.at_s
        if not at_end and not self._wait_until(due - OPEN_AHEAD_S):
            return False
        page = browser.new_page(viewport=VIEWPORT)
        try:
            page.goto(self.page_url)
            page.wait_for_selector("#replicas tbody tr[data-replica]", timeout=30_000)
            if at_end:
                self._ended.wait()
                time.sleep(OPEN_AHEAD_S / 2)  # one refresh of the page after the last answers
            elif not self._wait_until(due):
                return False
            moment.path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(moment.path), full_page=True)
            self.taken.append({"moment": moment.name, "path": str(moment.path), "at": time.time()})
            return True
        finally:
            page.close()

    def record(self, started_at: float) -> dict:
        """What was taken, on the run's clock (seconds since ``started_at``, wall clock), for the report's meta."""
        return {
            "screenshots": [
                {"moment": t["moment"], "path": t["path"], "t_s": round(t["at"] - started_at, 1)} for t in self.taken
            ],
            **({"error": self.error} if self.error else {}),
        }
