"""CommandBatcher: how queued writes are cut into pipelined batches."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tasq_fastapi import _protocol
from tasq_fastapi._batcher import CommandBatcher, _split
from tasq_fastapi._tasks import cancel_and_wait
from tests._waiting import wait_until


def test_batcher_split_keeps_batches_within_budget() -> None:
    sizes = [3, 3, 3, 10, 1]

    first, rest, used = _split(sizes, int, 7)
    assert (first, rest, used) == ([3, 3], [3, 10, 1], 6)

    # An item over the budget on its own still goes, alone, so that writes progress.
    first, rest, used = _split([10, 1], int, 7)
    assert (first, rest, used) == ([10], [1], 10)

    assert _split([], int, 7) == ([], [], 0)


def test_batcher_split_stops_at_limit() -> None:
    assert _split([1, 1, 1, 1, 1], int, 100, 2) == ([1, 1], [1, 1, 1], 2)
    assert _split([1, 1], int, 100, 5) == ([1, 1], [], 2)


async def _pushed_batches(
    redis_client: Any, topic: str, monkeypatch: pytest.MonkeyPatch, *, queued: int, in_flight: int
) -> list[int]:
    """Queue ``queued`` pushes before the batcher runs; return the pushes per written batch."""
    key = _protocol.topic_key(topic)
    batcher = CommandBatcher(redis_client, in_flight=lambda: in_flight)
    batches: list[int] = []
    send = batcher._send

    async def recording_send(groups: list[list[Any]], commands: list[Any], *, use_sha: bool) -> list[Any]:
        batches.append(sum(len(group) for group in groups))
        return await send(groups, commands, use_sha=use_sha)

    monkeypatch.setattr(batcher, "_send", recording_send)
    loop = asyncio.get_running_loop()
    payloads = [f"task-{index}".encode() for index in range(queued)]
    deadline_unix_ms = time.time() * 1000 + 10_000
    for payload in payloads:
        batcher.push(key, payload, deadline_unix_ms, loop.create_future())

    runner = asyncio.create_task(batcher.run())
    try:
        await wait_until(lambda: sum(batches) == queued and not batcher._writing)
        assert await redis_client.lrange(key, 0, -1) == payloads
    finally:
        await cancel_and_wait([runner])
        await batcher.aclose()
        await redis_client.delete(key)
    return batches


async def test_batcher_splits_half_in_flight(
    redis_client: Any, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = await _pushed_batches(redis_client, topic, monkeypatch, queued=30, in_flight=30)

    assert batches == [15, 15]


async def test_batcher_keeps_small_batch_whole(
    redis_client: Any, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Below 8 pushes a batch is not split, however few requests are in flight.
    batches = await _pushed_batches(redis_client, topic, monkeypatch, queued=6, in_flight=6)

    assert batches == [6]


async def test_batcher_drops_abandoned_pushes_first(redis_client: Any, topic: str) -> None:
    # Callers that gave up are no longer in flight, so their pushes must not fill the batch.
    key = _protocol.topic_key(topic)
    batcher = CommandBatcher(redis_client, in_flight=lambda: 1)
    loop = asyncio.get_running_loop()
    deadline_unix_ms = time.time() * 1000 + 10_000
    for _ in range(100):
        abandoned: asyncio.Future[Any] = loop.create_future()
        abandoned.cancel()
        batcher.push(key, b"abandoned", deadline_unix_ms, abandoned)
    batcher.push(key, b"live", deadline_unix_ms, loop.create_future())

    try:
        await batcher._write_queued()

        assert await redis_client.lrange(key, 0, -1) == [b"live"]
        assert batcher._pushes == []
    finally:
        await batcher.aclose()
        await redis_client.delete(key)
