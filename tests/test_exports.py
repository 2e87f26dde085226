"""The package root exports exactly its public names."""

from __future__ import annotations

import tasq_fastapi


def test_all_lists_every_public_name() -> None:
    public = {name for name in vars(tasq_fastapi) if not name.startswith("_")}

    assert set(tasq_fastapi.__all__) == public


def test_all_is_sorted() -> None:
    assert list(tasq_fastapi.__all__) == sorted(tasq_fastapi.__all__)
