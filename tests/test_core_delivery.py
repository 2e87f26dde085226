"""At-least-once delivery: leased tasks of a dead or stopped server run again elsewhere."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from tasq_fastapi import Tasq, create_tasq
from tasq_fastapi._leases import leases_key
from tests._waiting import WAIT_S, wait_until

# Run every test here on a single server and on a Redis Cluster.
ALSO_ON_CLUSTER = True

LEASE_S = 0.5


@pytest.fixture
def counter_key() -> str:
    return f"test-counter-{uuid.uuid4().hex}"


@pytest.fixture
def lease_worker(redis_url: str, topic: str, counter_key: str) -> Iterator[subprocess.Popen[str]]:
    command = [sys.executable, "-m", "tests._lease_worker", redis_url, topic, counter_key]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(WAIT_S)
        if process.stdout is not None:
            process.stdout.close()


def counting_handler(redis: aioredis.Redis, counter_key: str) -> Any:
    async def work(_args: Any) -> str:
        runs = await redis.incr(counter_key)
        return f"done after {runs} runs"

    return work


async def test_at_least_once_reruns_task_of_killed_worker(
    tasq: Tasq,
    topic: str,
    counter_key: str,
    redis_client: aioredis.Redis,
    lease_worker: subprocess.Popen[str],
) -> None:
    call = asyncio.create_task(tasq.request(topic, "work", timeout=30.0))
    assert lease_worker.stdout is not None
    started = await asyncio.to_thread(lease_worker.stdout.readline)
    assert started.strip() == "started"

    lease_worker.kill()
    await asyncio.to_thread(lease_worker.wait, WAIT_S)
    await tasq.serve(
        topic, {"work": counting_handler(redis_client, counter_key)}, at_least_once=True, lease_s=LEASE_S
    )

    assert await asyncio.wait_for(call, WAIT_S) == "done after 2 runs"
    await wait_until(lambda: _lease_count(redis_client, topic, 0))


async def test_at_least_once_requeues_task_cancelled_at_close(
    tasq: Tasq, topic: str, counter_key: str, redis_client: aioredis.Redis, redis_url: str
) -> None:
    started = asyncio.Event()

    async def stuck(_args: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    async with await create_tasq(redis_url) as first_worker:
        await first_worker.serve(topic, {"work": stuck}, at_least_once=True, lease_s=LEASE_S)
        call = asyncio.create_task(tasq.request(topic, "work", timeout=30.0))
        await asyncio.wait_for(started.wait(), WAIT_S)
        await first_worker.aclose(grace_s=0.0)

    await tasq.serve(
        topic, {"work": counting_handler(redis_client, counter_key)}, at_least_once=True, lease_s=LEASE_S
    )

    assert await asyncio.wait_for(call, WAIT_S) == "done after 1 runs"


async def test_at_least_once_finished_task_leaves_no_lease(
    tasq: Tasq, topic: str, counter_key: str, redis_client: aioredis.Redis
) -> None:
    await tasq.serve(
        topic, {"work": counting_handler(redis_client, counter_key)}, at_least_once=True, lease_s=LEASE_S
    )

    results = await asyncio.gather(*(tasq.request(topic, "work", timeout=5.0) for _ in range(20)))

    assert len(results) == 20
    assert int(await redis_client.get(counter_key) or 0) == 20
    await wait_until(lambda: _lease_count(redis_client, topic, 0))


async def test_at_least_once_lease_set_expires(tasq: Tasq, topic: str, redis_client: aioredis.Redis) -> None:
    started = asyncio.Event()

    async def slow(_args: Any) -> None:
        started.set()
        await asyncio.sleep(0.5)

    await tasq.serve(topic, {"slow": slow}, at_least_once=True, lease_s=LEASE_S)
    call = asyncio.create_task(tasq.request(topic, "slow", timeout=5.0))
    await asyncio.wait_for(started.wait(), WAIT_S)

    # The lease set may live no longer than the latest deadline it has seen.
    ttl_ms = await redis_client.pttl(leases_key(topic))
    assert 0 < ttl_ms <= 5_000
    await call


async def test_default_delivery_runs_task_once(
    tasq: Tasq, topic: str, counter_key: str, redis_client: aioredis.Redis
) -> None:
    await tasq.serve(topic, {"work": counting_handler(redis_client, counter_key)}, threads=8)

    await asyncio.gather(*(tasq.request(topic, "work", timeout=5.0) for _ in range(50)))

    assert int(await redis_client.get(counter_key) or 0) == 50
    assert await redis_client.exists(leases_key(topic)) == 0


async def _lease_count(redis_client: aioredis.Redis, topic: str, expected: int) -> bool:
    return int(await redis_client.zcard(leases_key(topic))) == expected
