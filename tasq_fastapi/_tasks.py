"""Helpers for the background tasks that clients and servers own, and for waiting on Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

_T = TypeVar("_T")

# How often a cancellation is repeated while a task ignores it, in seconds.
_CANCEL_RETRY_S = 0.1

# Event-loop rounds a reply gets to be read once its time is up. Each round polls
# the sockets, and a reply already received is read within two of them.
_ROUNDS_AFTER_TIMEOUT = 3


async def read_what_arrived() -> None:
    """Let the event loop read what reached its sockets, before a timeout is trusted.

    After the loop was blocked, a timer due meanwhile can run before the sockets are
    read. A few rounds of the loop read them, whatever else is queued.
    """
    for _ in range(_ROUNDS_AFTER_TIMEOUT):
        await asyncio.sleep(0)


async def wait_for_reply(coroutine: Coroutine[Any, Any, _T], timeout_s: float | None) -> _T:
    """Return what ``coroutine`` returns; raise TimeoutError when it takes over ``timeout_s`` s.

    For waits on Redis replies, where cancelling loses what Redis already sent: a
    BLMPOP reply contains tasks already removed from their list. asyncio.timeout() counts
    wall time, so after the event loop was blocked (a handler computing without
    awaiting, say) it expires with the reply waiting unread in the socket. Here the
    loop first gets a few rounds to read what arrived, and only a coroutine still
    unfinished after them is cancelled. None waits without a limit.
    """
    if timeout_s is None:
        return await coroutine
    task = asyncio.ensure_future(coroutine)
    try:
        await asyncio.wait((task,), timeout=timeout_s)
        if not task.done():
            await read_what_arrived()
        if not task.done():
            raise TimeoutError(f"Redis sent no reply within {timeout_s:g} s")
        return task.result()
    finally:
        await cancel_and_wait([task])


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
