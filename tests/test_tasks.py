"""wait_for_reply: timeouts that let a blocked event loop read its sockets first."""

from __future__ import annotations

import asyncio

import pytest

from tasq_fastapi._tasks import wait_for_reply
from tests._waiting import WAIT_S


async def test_wait_for_reply_returns_the_result() -> None:
    async def reply() -> int:
        await asyncio.sleep(0)
        return 7

    assert await wait_for_reply(reply(), WAIT_S) == 7


async def test_wait_for_reply_times_out_with_reason() -> None:
    with pytest.raises(TimeoutError, match=r"no reply within 0\.01 s"):
        await wait_for_reply(asyncio.Event().wait(), 0.01)

    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_wait_for_reply_passes_outer_cancellation_on() -> None:
    started = asyncio.Event()

    async def waiting() -> None:
        started.set()
        await wait_for_reply(asyncio.Event().wait(), WAIT_S)

    task = asyncio.create_task(waiting())
    await asyncio.wait_for(started.wait(), WAIT_S)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
