"""`hybrid status` against a running router with scripted replicas: one frame, the JSON, and clear errors."""

from __future__ import annotations

import json
import re

import pytest

from tests.hybrid.cli.test_cli import hybrid
from tests.hybrid.router.status.fleet import REPLICAS, StatusFleet

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def fleet():
    fleet = StatusFleet()
    fleet.send(3, "interactive")
    fleet.send(2, "batch")
    yield fleet
    fleet.stop()


def test_once_prints_one_frame_with_every_replica_the_mix_and_the_cost(fleet):
    result = hybrid("status", "--router", fleet.http_address, "--once", timeout=60)
    assert result.returncode == 0, result.stderr
    frame = result.stdout
    for replica_id, tier, _ in REPLICAS:
        assert replica_id in frame and tier in frame
    assert "cold INTERACTIVE" in frame and "BATCH" in frame
    assert "5 answered" in frame and "per M tokens" in frame and "$" in frame


def test_json_prints_the_document_as_the_router_served_it(fleet):
    result = hybrid("status", "--router", f"http://{fleet.http_address}/", "--json", "--minutes", "5", timeout=60)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["window"]["minutes"] == 5
    assert document["mix"]["by_class"] == {"cold INTERACTIVE": {"private": 3}, "BATCH": {"public": 2}}


def test_a_router_not_serving_there_is_said_plainly():
    result = hybrid("status", "--router", "127.0.0.1:1", "--once", timeout=60)
    assert result.returncode == 2
    assert "cannot read http://127.0.0.1:1/status.json" in result.stderr and "--http-port" in result.stderr


def test_a_window_beyond_the_books_is_refused_before_anything_is_read():
    result = hybrid("status", "--router", "127.0.0.1:1", "--minutes", "60", timeout=60)
    assert result.returncode == 2 and "--minutes" in result.stderr


def test_the_live_table_refreshes_until_interrupted_and_exits_cleanly(fleet):
    import signal
    import subprocess
    import sys
    import time

    live = subprocess.Popen(
        [sys.executable, "-m", "hybrid.cli", "status", "--router", fleet.http_address, "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        fleet.send(2, "realtime")  # the frames after this one show it
        time.sleep(1.5)
        live.send_signal(signal.SIGINT)
        out, err = live.communicate(timeout=20)
    finally:
        live.kill()
    assert live.returncode == 0, err
    assert "private-1" in out
    assert re.search(r"│ REALTIME\s+│", out), "the mix table's REALTIME row, from a frame after the requests"
