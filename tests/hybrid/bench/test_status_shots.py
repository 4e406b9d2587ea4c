"""The overload bench's screenshots of the router's status page: when they are taken, what a missing browser
says, and (slow) real ones in headless Chromium against a running router."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from hybrid.bench import status_shots
from hybrid.bench.overload_config import OverloadConfig
from hybrid.bench.status_shots import Moment, StatusScreenshots, check_browser, chromium_path
from hybrid.bench.workload import WorkloadConfig
from hybrid.cli import build_parser

PNG = b"\x89PNG\r\n\x1a\n"


def test_the_screenshots_are_taken_at_the_bursts_height_and_after_recovery(tmp_path):
    workload = WorkloadConfig(steady_s=10, ramp_s=10, burst_s=20, recovery_s=15)
    config = OverloadConfig(workload=workload, status_screenshot=tmp_path / "status-page.png")
    burst, recovered = config.status_moments()
    assert (burst.name, burst.at_s, burst.path) == ("burst", 35.0, tmp_path / "status-page.png")
    assert (recovered.name, recovered.at_s) == ("recovered", None), "once the run has ended"
    assert recovered.path == tmp_path / "status-page-recovered.png"
    assert OverloadConfig(workload=workload).status_moments() == []


def test_a_screenshot_without_the_router_configuration_says_what_to_change(tmp_path):
    with pytest.raises(ValidationError, match="run the router configuration"):
        OverloadConfig(configurations=["baseline"], status_screenshot=tmp_path / "s.png")


class Ran(Exception):
    pass


def test_the_flags_reach_the_config(monkeypatch):
    def run_overload(config, **_):
        raise Ran(config)

    monkeypatch.setattr("hybrid.bench.overload.run_overload", run_overload)
    args = build_parser().parse_args(
        ["bench", "overload", "--ramp-s", "4", "--burst-x", "3", "--status-screenshot", "docs/shot.png"]
    )
    with pytest.raises(Ran) as ran:
        args.func(args)
    [config] = ran.value.args
    assert config.status_screenshot == Path("docs/shot.png") and config.workload.ramp_s == 4.0


def test_a_missing_chromium_says_where_it_looked_and_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv(status_shots.CHROMIUM_ENV, str(tmp_path / "no-chromium"))
    assert chromium_path() == str(tmp_path / "no-chromium")
    with pytest.raises(ValueError, match=r"no-chromium: install it \(apt-get install chromium\)"):
        check_browser()


def test_a_missing_playwright_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)
    with pytest.raises(ValueError, match=r"need Playwright: pip install 'hybrid-inference\[bench\]'"):
        check_browser()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_screenshots_of_a_running_routers_page_at_their_moments(tmp_path):
    try:
        check_browser()
    except ValueError as missing:
        pytest.skip(f"the screenshots need Playwright and Chromium, which are not here: {missing}")
    from tests.hybrid.router.status.fleet import StatusFleet

    fleet = StatusFleet()
    try:
        fleet.send(2, "interactive")
        moments = [
            Moment("recovered", None, tmp_path / "c.png"),
            Moment("burst", 1.0, tmp_path / "a.png"),
            Moment("too late", 600.0, tmp_path / "never.png"),
        ]
        entered = time.time()
        with StatusScreenshots(f"http://{fleet.http_address}/status", moments) as shots:
            while not shots.taken and shots.error is None and time.time() < entered + 60:
                time.sleep(0.2)
            fleet.send(1, "batch")
        record = shots.record(started_at=entered)
    finally:
        fleet.stop()
    assert shots.error is None
    assert [s["moment"] for s in record["screenshots"]] == ["burst", "recovered"], (
        "one the run never reached is skipped"
    )
    assert record["screenshots"][0]["t_s"] >= 1.0
    assert not (tmp_path / "never.png").exists()
    for name in ("a.png", "c.png"):
        assert Path(tmp_path / name).read_bytes()[:8] == PNG
