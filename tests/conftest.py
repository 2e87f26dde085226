"""Fixtures shared by the test suite.

Tests talk to the Redis at ``TASQ_TEST_REDIS_URL`` (default 127.0.0.1:6379, db 0)
and give every test its own topics and namespace, so they never need to flush it.
Tests that stop or restart Redis start their own server with ``redis_process``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from tasq_fastapi import Tasq, create_tasq
from tests._redis_servers import RedisProcess, running_redis

REDIS_URL = os.environ.get("TASQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def topic() -> str:
    """A topic no other test uses."""
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def tasq() -> AsyncIterator[Tasq]:
    async with await create_tasq(REDIS_URL) as client:
        yield client


@pytest.fixture
def redis_process() -> Iterator[RedisProcess]:
    """A Redis server of this test's own, on a free loopback port."""
    with running_redis() as server:
        yield server
