"""The package root exports exactly its public names."""

from __future__ import annotations

import types

import tasq_fastapi


def test_all_lists_every_public_name() -> None:
    # Submodules such as tasq_fastapi.testing appear as attributes once imported.
    public = {
        name
        for name, value in vars(tasq_fastapi).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }

    assert set(tasq_fastapi.__all__) == public


def test_all_is_sorted() -> None:
    # The order ruff's RUF022 keeps: constants, then classes, then functions.
    def kind_then_name(name: str) -> tuple[int, str]:
        if name.isupper():
            return 0, name
        if name[0].isupper():
            return 1, name
        return 2, name

    assert list(tasq_fastapi.__all__) == sorted(tasq_fastapi.__all__, key=kind_then_name)
