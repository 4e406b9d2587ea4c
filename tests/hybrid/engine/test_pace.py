"""The pace a replica reports: time between tokens as its batch fills."""

from __future__ import annotations

import pytest

from hybrid.engine.pace import Pace, StepPace


def test_the_pace_is_unknown_until_two_batch_sizes_were_timed():
    pace = StepPace()
    assert not pace.fit().known
    pace.observe(rows=1, step_ms=10.0, prefill_ms=0.0)
    pace.observe(rows=1, step_ms=12.0, prefill_ms=0.0)
    assert not pace.fit().known
    pace.observe(rows=8, step_ms=40.0, prefill_ms=0.0)
    assert pace.fit().known


def test_the_line_through_the_sizes_seen_says_what_an_unseen_size_takes():
    pace = StepPace()
    for rows in (1, 2, 8):
        pace.observe(rows, step_ms=5.0 + 2.0 * rows, prefill_ms=0.0)
    fitted = pace.fit()
    assert fitted.base_ms == pytest.approx(5.0)
    assert fitted.per_row_ms == pytest.approx(2.0)
    assert fitted.token_ms(32) == pytest.approx(69.0)


def test_each_size_keeps_its_own_average_so_a_busy_spell_does_not_erase_the_others():
    pace = StepPace(step_alpha=0.5)
    pace.observe(1, 10.0, 0.0)
    for _ in range(50):
        pace.observe(8, 80.0, 0.0)
    assert pace.fit().token_ms(1) == pytest.approx(10.0)
    pace.observe(8, 40.0, 0.0)  # one faster step moves the size-8 point halfway
    assert pace.fit().token_ms(8) == pytest.approx(60.0)


def test_a_replica_as_fast_at_a_full_batch_as_at_one_row_has_a_flat_pace():
    pace = StepPace()
    pace.observe(1, 9.0, 0.0)
    pace.observe(16, 8.5, 0.0)  # noise: never a pace that speeds up as the batch fills
    pace.observe(32, 8.0, 0.0)
    fitted = pace.fit()
    assert fitted.per_row_ms == 0.0
    assert fitted.base_ms == pytest.approx(8.5)


def test_prefill_stalls_slow_every_row_while_newcomers_keep_coming_and_fade_when_they_stop():
    pace = StepPace(stall_alpha=0.5)
    pace.observe(1, 10.0, 0.0)
    pace.observe(4, 16.0, 0.0)
    quiet = pace.fit().token_ms(4)
    for _ in range(10):
        pace.observe(4, 16.0, prefill_ms=30.0)  # a newcomer prefilled before every step
    assert pace.fit().token_ms(4) == pytest.approx(quiet + 30.0, abs=0.1)
    for _ in range(10):
        pace.observe(4, 16.0, prefill_ms=0.0)
    assert pace.fit().token_ms(4) == pytest.approx(quiet, abs=0.1)
    pace.observe(4, 16.0, prefill_ms=500.0)
    pace.forget_stalls()
    assert pace.fit().token_ms(4) == pytest.approx(quiet)


def test_an_unknown_pace_predicts_nothing():
    assert Pace().token_ms(32) == 0.0
