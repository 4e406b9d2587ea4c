"""The order rows keep when some leave: in place, with the last rows filling the holes."""

from __future__ import annotations

import pytest

from hybrid.engine.compaction import fill_from_the_end


@pytest.mark.parametrize(
    "live, order",
    [
        ([True, True, True], [0, 1, 2]),
        ([True, False, True, True], [0, 3, 2]),  # one hole: the last row fills it, nothing else moves
        ([False, True, False, True, True], [3, 1, 4]),
        ([True, True, False, False], [0, 1]),  # the holes are at the end: nothing moves
        ([False, False, False], []),
        ([False, True], [1]),
    ],
)
def test_rows_stay_in_place_and_the_last_fill_the_holes(live, order):
    assert fill_from_the_end(live) == order


def test_every_live_row_is_kept_once_and_only_holes_are_written():
    import random

    rng = random.Random(7)
    for _ in range(500):
        live = [rng.random() < 0.7 for _ in range(rng.randint(0, 40))]
        order = fill_from_the_end(live)
        assert sorted(order) == [i for i, alive in enumerate(live) if alive]
        moved = [(target, source) for target, source in enumerate(order) if target != source]
        assert all(not live[target] for target, _ in moved), "a move overwrote a row that stays"
        assert len(moved) <= live.count(False)
