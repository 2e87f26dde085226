"""Waiting for a condition in tests, with a safety limit instead of a guessed sleep."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

# Only reached when a test is failing: the condition normally holds within milliseconds.
WAIT_S = 10.0

_POLL_S = 0.005


async def wait_until(predicate: Callable[[], bool | Awaitable[bool]], *, timeout_s: float = WAIT_S) -> None:
    """Return once ``predicate()`` is true; fail the test after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"Condition not met within {timeout_s} s: {predicate}")
        await asyncio.sleep(_POLL_S)
