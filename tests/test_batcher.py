"""CommandBatcher's split of queued writes into batches of bounded size."""

from __future__ import annotations

from tasq_fastapi._batcher import _split


def test_batcher_split_keeps_batches_within_budget() -> None:
    sizes = [3, 3, 3, 10, 1]

    first, rest, used = _split(sizes, int, 7)
    assert (first, rest, used) == ([3, 3], [3, 10, 1], 6)

    # An item over the budget on its own still goes, alone, so that writes progress.
    first, rest, used = _split([10, 1], int, 7)
    assert (first, rest, used) == ([10], [1], 10)

    assert _split([], int, 7) == ([], [], 0)
