"""Memory a Tasq client uses for requests waiting for their replies (tracemalloc).

The requests go to a topic that no server serves, so they stay pending. The figure
is taken once Redis contains every request, that is after the client has written
them, which is the state a client waits in. Each request's caller is an asyncio
task, which costs the same whatever it awaits. So the same number of callers
awaiting a plain future is measured first, and the client's share is the difference.
"""

from __future__ import annotations

import asyncio
import tracemalloc
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis

from tasq_fastapi import Tasq
from tasq_fastapi._protocol import topic_key

PAYLOAD = {"id": 1, "name": "bench"}
WRITE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class PendingMemory:
    count: int
    total_bytes: int
    """Traced memory with ``count`` requests pending, callers' tasks included."""
    callers_bytes: int
    """Traced memory of ``count`` tasks awaiting a plain future."""

    @property
    def client_bytes(self) -> int:
        return self.total_bytes - self.callers_bytes

    def describe(self) -> str:
        mib = 2**20
        return (
            f"{self.count:,} pending requests: {self.client_bytes / mib:.2f} MiB used by the client "
            f"({self.client_bytes / self.count:,.0f} B each), {self.total_bytes / mib:.2f} MiB with "
            f"the callers' own tasks ({self.callers_bytes / mib:.2f} MiB for as many tasks awaiting "
            "a plain future)"
        )


async def pending_memory(tasq: Tasq, redis: aioredis.Redis, count: int) -> PendingMemory:
    """Return the memory of ``count`` pending requests, from the second of two rounds.

    The first round's figures also hold one-time growth, such as the table of
    asyncio's registry of all tasks, which stays allocated afterwards.
    """
    await _pending_memory(tasq, redis, count)
    return await _pending_memory(tasq, redis, count)


async def _pending_memory(tasq: Tasq, redis: aioredis.Redis, count: int) -> PendingMemory:
    callers_bytes = await _callers_memory(count)
    topic = f"bench-nobody-{uuid.uuid4().hex[:8]}"
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        calls = [asyncio.create_task(_call(tasq, topic)) for _ in range(count)]
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            while await redis.llen(topic_key(topic)) < count:  # noqa: ASYNC110 - Redis holds the state
                await asyncio.sleep(0.01)
        total_bytes = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    if tasq.pending_count < count:
        raise RuntimeError(f"Only {tasq.pending_count} of {count} requests were pending.")
    for call in calls:
        call.cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    await redis.delete(topic_key(topic))
    return PendingMemory(count, total_bytes, callers_bytes)


async def _call(tasq: Tasq, topic: str) -> None:
    # A caller of its own, as the plain-future callers below have.
    await tasq.request(topic, "echo", PAYLOAD, timeout=120.0)


async def _wait(never: asyncio.Future[None], topic: str) -> None:
    # The same frame as _call's: only what it awaits differs.
    await never


async def _callers_memory(count: int) -> int:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tasks = [asyncio.create_task(_wait(never, "")) for _ in range(count)]
        await asyncio.sleep(0)
        traced_bytes = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return traced_bytes
