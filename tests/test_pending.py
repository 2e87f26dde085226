"""PendingRequests: request ids, deadlines shared per millisecond, and cleanup."""

from __future__ import annotations

import asyncio

import pytest

from tasq_fastapi._pending import PendingRequests
from tasq_fastapi._replies import ClientClosed, RequestExpired
from tests._waiting import WAIT_S


async def test_pending_expires_request_not_before_its_deadline() -> None:
    pending = PendingRequests()
    loop = asyncio.get_running_loop()
    sent_at = loop.time()

    waiter = pending.add(0.05)
    with pytest.raises(RequestExpired):
        await asyncio.wait_for(waiter, WAIT_S)

    assert loop.time() - sent_at >= 0.05
    pending.remove(waiter)
    assert len(pending) == 0


async def test_pending_requests_in_one_millisecond_share_one_timer() -> None:
    pending = PendingRequests()

    waiters = [pending.add(60.0) for _ in range(100)]

    # 100 adds take far less than 100 ms, even on a slow machine.
    assert pending.timers == len({waiter.deadline_key for waiter in waiters}) < 100
    assert len({waiter.request_id for waiter in waiters}) == 100
    for waiter in waiters:
        pending.remove(waiter)
    assert pending.timers == 0


async def test_pending_removed_request_not_expired() -> None:
    pending = PendingRequests()
    kept = pending.add(0.05)
    removed = pending.add(0.05)

    pending.remove(removed)

    assert pending.get(removed.request_id) is None
    with pytest.raises(RequestExpired):
        await asyncio.wait_for(kept, WAIT_S)
    assert not removed.done()


async def test_pending_fail_all_ends_requests() -> None:
    pending = PendingRequests()
    waiters = [pending.add(60.0), pending.add(120.0)]

    pending.fail_all()

    for waiter in waiters:
        with pytest.raises(ClientClosed):
            await waiter
        pending.remove(waiter)
    assert pending.timers == 0
    assert len(pending) == 0
