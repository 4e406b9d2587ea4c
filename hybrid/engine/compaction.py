"""Which rows of a continuous batch go where when some leave: as few copies of a row's state as can be."""

from __future__ import annotations


def fill_from_the_end(live: list[bool]) -> list[int]:
    """The new order of the rows that stay: each stays in place, except that the last ones fill the holes.

    With a batch of 128 where one row finishes, moving every later row down one place would copy up to 127
    rows' state; filling the hole with the last row copies one. ``result[i]`` is the old index of new row i.
    """
    order = [i for i, alive in enumerate(live) if alive]
    kept = len(order)
    tail = [i for i in order if i >= kept]  # live rows beyond the new end: they move into the holes
    holes = iter(i for i in range(kept) if not live[i])
    moved = dict(zip(holes, tail))
    return [moved.get(i, i) for i in range(kept)]
