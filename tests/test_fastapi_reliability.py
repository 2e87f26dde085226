"""The plugin under faults: Redis restarts and a saturated worker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tasq_fastapi import (
    TasqEndpoints,
    TasqExtension,
    TasqRequestTimeoutError,
    TasqRouter,
)
from tests._plugin_fixtures import running_app, unique_topic
from tests._redis_servers import RedisProcess
from tests._waiting import WAIT_S, wait_until

# Time a queued request may overrun its deadline: one event-loop hop and a timer,
# with a wide allowance for a loaded CI machine.
DEADLINE_MARGIN_S = 2.0


async def _status(client: httpx.AsyncClient, path: str) -> int:
    return (await client.get(path)).status_code


async def test_health_red_then_green_across_restart(redis_process: RedisProcess) -> None:
    topic = unique_topic()
    router = TasqRouter(topic)

    @router.method()
    async def echo(value: int) -> int:
        return value

    app = FastAPI()
    extension = TasqExtension(app, redis=redis_process.url, endpoints=TasqEndpoints(redis_timeout_s=1.0))
    extension.include_router(router)

    async with running_app(app) as client:
        assert await _status(client, "/tasq/health") == 200

        redis_process.stop()
        assert await _status(client, "/tasq/health") == 503

        redis_process.start()
        # A request sent right away must be served within 2 s of Redis coming back.
        assert await extension.tasq.request(topic, "echo", {"value": 7}, timeout=2.0) == 7
        await wait_until(lambda: _healthy(client))


async def _healthy(client: httpx.AsyncClient) -> bool:
    return await _status(client, "/tasq/health") == 200


async def test_saturated_worker_endpoints_and_deadlines(redis_url: str) -> None:
    topic = unique_topic()
    router = TasqRouter(topic, threads=1)
    release = asyncio.Event()
    started = asyncio.Event()

    @router.method()
    async def block() -> str:
        started.set()
        await release.wait()
        return "released"

    app = FastAPI()
    extension = TasqExtension(app, redis=redis_url)
    extension.include_router(router)

    async with running_app(app) as client:
        tasq = extension.tasq
        running = asyncio.create_task(tasq.request(topic, "block", timeout=30.0))
        await asyncio.wait_for(started.wait(), WAIT_S)

        async def queued() -> float:
            begun = time.monotonic()
            with pytest.raises(TasqRequestTimeoutError):
                await tasq.request(topic, "block", timeout=0.5)
            return time.monotonic() - begun

        waits = asyncio.gather(queued(), queued())
        health = await asyncio.wait_for(client.get("/tasq/health"), WAIT_S)
        metrics = await asyncio.wait_for(client.get("/tasq/metrics"), WAIT_S)
        elapsed = await waits

        release.set()
        assert await running == "released"

    body: dict[str, Any] = health.json()
    assert health.status_code == 200
    assert body["servers"][0]["running"] == 1
    assert metrics.status_code == 200
    assert "tasq_tasks_running" in metrics.text
    for seconds in elapsed:
        assert 0.5 <= seconds < 0.5 + DEADLINE_MARGIN_S


async def test_metrics_show_redis_down(redis_process: RedisProcess) -> None:
    router = TasqRouter(unique_topic())

    @router.method()
    async def echo(value: int) -> int:
        return value

    app = FastAPI()
    extension = TasqExtension(app, redis=redis_process.url, endpoints=TasqEndpoints(redis_timeout_s=1.0))
    extension.include_router(router)

    async with running_app(app) as client:
        up = (await client.get("/tasq/metrics")).text
        redis_process.stop()
        down = (await client.get("/tasq/metrics")).text
        redis_process.start()

    assert "tasq_redis_up 1.0" in up
    assert "tasq_redis_up 0.0" in down
    assert f'tasq_queue_depth{{topic="{router.topic}"}} NaN' in down
