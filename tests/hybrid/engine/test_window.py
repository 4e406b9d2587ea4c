"""The sliding time window that replicas and the router steer by."""

from __future__ import annotations

import random

from hybrid.engine.window import OrderedRecentWindow, RecentWindow


def test_quantiles_cover_only_the_window():
    window = RecentWindow(window_s=10.0)
    for second, value in enumerate([100.0, 200.0, 300.0, 400.0, 500.0]):
        window.add(float(second), value)
    assert window.quantile(4.0, 0.9) == 500.0
    assert window.quantile(4.0, 0.0) == 100.0
    assert window.quantile(12.5, 0.0) == 400.0  # the values of seconds 0, 1 and 2 have left the window


def test_an_empty_window_reports_zero_not_old_news():
    window = RecentWindow(window_s=5.0)
    assert window.quantile(0.0, 0.9) == 0.0
    window.add(0.0, 900.0)
    assert window.quantile(1.0, 0.9) == 900.0
    assert window.quantile(6.0, 0.9) == 0.0


def test_the_ordered_window_gives_every_quantile_the_plain_one_gives_as_values_come_and_go():
    rng = random.Random(7)
    plain, ordered = RecentWindow(10.0), OrderedRecentWindow(10.0)
    now = 0.0
    for _ in range(500):
        now += rng.uniform(0, 0.2)
        value = float(rng.randint(0, 50))  # repeated values too: each leaves once, when its own time passes
        plain.add(now, value)
        ordered.add(now, value)
        for q in (0.0, 0.5, 0.9, 1.0):
            assert ordered.quantile(now, q) == plain.quantile(now, q)
    assert ordered.quantile(now + 60, 0.9) == 0.0, "it forgets like the plain one"
