"""Helpers for the background tasks that clients and servers own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

# How often a cancellation is repeated while a task ignores it, in seconds.
_CANCEL_RETRY_S = 0.1


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and return once all of them have finished.

    NOTE: redis-py 8.2 can swallow a cancellation that arrives while a command is
    in flight (the command returns normally), so the cancellation is repeated until
    each task has really stopped.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=_CANCEL_RETRY_S)
