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


class TaskAlarm:
    """A timer callback that cancels a task and records whether it did.

    With ``rounds``, the alarm first lets the event loop run that many rounds, each of
    which reads the sockets, and cancels only if it has not been disarmed meanwhile.
    """

    __slots__ = ("_cancelled", "_disarmed", "_rounds", "_task")

    def __init__(self, task: asyncio.Task[Any], *, rounds: int = 0) -> None:
        self._task = task
        self._rounds = rounds
        self._cancelled = False
        self._disarmed = False

    def fire(self) -> None:
        """Cancel the task, after the remaining rounds of the event loop."""
        if self._disarmed or self._cancelled:
            return
        if self._rounds > 0:
            self._rounds -= 1
            asyncio.get_running_loop().call_soon(self.fire)
            return
        self._cancelled = True
        self._task.cancel()

    def disarm(self) -> bool:
        """Stop the alarm, undo its cancellation request once, and return whether it cancelled."""
        if not self._disarmed:
            self._disarmed = True
            if self._cancelled:
                self._task.uncancel()
        return self._cancelled


async def wait_for_reply(coroutine: Coroutine[Any, Any, _T], timeout_s: float | None) -> _T:
    """Return what ``coroutine`` returns; raise TimeoutError when it takes over ``timeout_s`` s.

    For waits on Redis replies, where cancelling loses what Redis already sent: a
    BLMPOP reply contains tasks already removed from their list. asyncio.timeout()
    counts wall time, so after the event loop was blocked (a handler computing
    without awaiting, say) it expires with the reply unread in the socket. Here the
    loop first gets a few rounds to read what arrived, and only then is the
    coroutine cancelled. It runs in the caller's task, with no task of its own. None
    waits without a limit.
    """
    if timeout_s is None:
        return await coroutine
    task = asyncio.current_task()
    assert task is not None, "replies are awaited inside a task"
    loop = asyncio.get_running_loop()
    alarm = TaskAlarm(task, rounds=_ROUNDS_AFTER_TIMEOUT)
    timer = loop.call_at(loop.time() + timeout_s, alarm.fire)
    try:
        return await coroutine
    except asyncio.CancelledError:
        # Only the alarm's own cancellation becomes a timeout; another one goes on.
        if alarm.disarm() and task.cancelling() == 0:
            raise TimeoutError(f"Redis sent no reply within {timeout_s:g} s") from None
        raise
    finally:
        timer.cancel()
        alarm.disarm()


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
