"""Tasq through Sentinel: a primary, a replica and three sentinels started by the fixtures.

The failover test prints how long the sentinels and the Tasq clients took to follow
the new primary (``pytest -s``). It asserts a limit, not the measured numbers.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from redis.asyncio.sentinel import Sentinel

from tasq_fastapi import TasqExtension, TasqRouter, create_tasq
from tests._cluster import (
    DEADLINE_SLACK_S,
    FAILOVER_REQUEST_TIMEOUT_S,
    RECOVERED_STREAK,
    RECOVERY_LIMIT_S,
    RequestTraffic,
)
from tests._plugin_fixtures import running_app
from tests._sentinel import (
    SERVICE_NAME,
    LocalSentinels,
    running_sentinels,
)
from tests._sentinel import (
    redis_sentinel_url_fixture as redis_sentinel_url_fixture,
)
from tests._waiting import wait_until

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="needs redis-server (Redis 7.0 or newer) on PATH to start sentinels",
)


async def echo(args: Any) -> Any:
    return args


def new_topic() -> str:
    return f"test-sentinel-{uuid.uuid4().hex}"


@pytest.fixture
def own_sentinels() -> Iterator[LocalSentinels]:
    """A set of this test's own, for tests that kill its primary."""
    with running_sentinels() as sentinels:
        yield sentinels


async def test_sentinel_fixture_serves_primary(redis_sentinel_url: str) -> None:
    hosts = redis_sentinel_url.removeprefix("redis+sentinel://").split("/")[0].split(",")
    addresses = [(host.split(":")[0], int(host.split(":")[1])) for host in hosts]
    key = f"test-sentinel-fixture-{uuid.uuid4().hex}"

    sentinel = Sentinel(addresses)
    primary = sentinel.master_for(SERVICE_NAME)
    try:
        await primary.set(key, b"value", ex=60)
        value = await primary.get(key)
        await primary.delete(key)
        replicas = await sentinel.discover_slaves(SERVICE_NAME)
    finally:
        await primary.aclose()
        await sentinel.aclose()

    assert len(addresses) == 3
    assert value == b"value"
    assert len(replicas) == 1


async def test_sentinel_request_echo(redis_sentinel_url: str) -> None:
    topic = new_topic()
    async with await create_tasq(redis_sentinel_url) as tasq:
        await tasq.serve(topic, {"echo": echo})

        assert await tasq.request(topic, "echo", {"name": "Tasq"}) == {"name": "Tasq"}
        assert await tasq.request(topic, "echo") is None


async def test_sentinel_request_at_least_once(redis_sentinel_url: str) -> None:
    topic = new_topic()
    async with await create_tasq(redis_sentinel_url) as tasq:
        await tasq.serve(topic, {"echo": echo}, at_least_once=True, lease_s=1.0)

        results = [await tasq.request(topic, "echo", i) for i in range(20)]

    assert results == list(range(20))


async def test_sentinel_fastapi_extension_serves_router(redis_sentinel_url: str) -> None:
    topic = new_topic()
    router = TasqRouter(topic)

    @router.method()
    async def double(value: int) -> int:
        return value * 2

    app = FastAPI()
    extension = TasqExtension(app, redis=redis_sentinel_url)
    extension.include_router(router)

    async with running_app(app):
        result = await extension.tasq.request(topic, "double", {"value": 21})

    assert result == 42


async def test_sentinel_failover_clients_follow_new_primary(own_sentinels: LocalSentinels) -> None:
    topic = new_topic()

    async with (
        await create_tasq(own_sentinels.url, health_check_interval_s=0.5) as server_side,
        await create_tasq(own_sentinels.url, health_check_interval_s=0.5) as client_side,
    ):
        await server_side.serve(topic, {"echo": echo}, threads=8)
        traffic = RequestTraffic(client_side, topic, timeout_s=FAILOVER_REQUEST_TIMEOUT_S)
        traffic.start()
        try:
            await wait_until(lambda: len(traffic.successes_started_after(0.0)) >= RECOVERED_STREAK)

            killed_port, killed_at = await asyncio.to_thread(own_sentinels.kill_primary)
            promoted_port = await asyncio.to_thread(own_sentinels.wait_until_failed_over, killed_port)
            promoted_s = time.monotonic() - killed_at
            await wait_until(
                lambda: len(traffic.successes_started_after(killed_at)) >= RECOVERED_STREAK,
                timeout_s=RECOVERY_LIMIT_S,
            )
        finally:
            await traffic.stop()

        after = [await client_side.request(topic, "echo", i, timeout=5.0) for i in range(10)]

    first_success_s = traffic.first_success_finished_after(killed_at) - killed_at
    recovered_s = traffic.recovered_at(killed_at) - killed_at
    slowest_s = max(outcome.elapsed_s for outcome in traffic.outcomes)
    counts = traffic.error_counts()
    print(
        f"\nsentinel failover from port {killed_port} to {promoted_port}: sentinels agreed after "
        f"{promoted_s:.2f} s; first success at {first_success_s:.2f} s, "
        f"every request started {recovered_s:.2f} s or more after the kill succeeded; "
        f"slowest request {slowest_s:.2f} s; outcomes {counts}"
    )
    assert promoted_port == own_sentinels.replica_port
    assert "hang" not in counts
    assert "wrong result" not in counts
    assert [name for name in counts if name.startswith("unexpected")] == []
    assert slowest_s <= FAILOVER_REQUEST_TIMEOUT_S + DEADLINE_SLACK_S
    assert after == list(range(10))
