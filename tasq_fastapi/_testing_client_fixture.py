"""The async ``tasq_client`` fixture, registered by the pytest plugin when pytest-asyncio is active."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from ._client import Tasq, create_tasq

# Seconds handlers still running at the end of a test get before they are cancelled.
CLIENT_CLOSE_GRACE_S = 5.0


@pytest_asyncio.fixture
async def tasq_client(tasq_redis_url: str, tasq_namespace: str) -> AsyncIterator[Tasq]:
    """A started Tasq client on ``tasq_redis_url``, closed with its servers after the test."""
    tasq = await create_tasq(tasq_redis_url, namespace=tasq_namespace)
    try:
        yield tasq
    finally:
        await tasq.aclose(grace_s=CLIENT_CLOSE_GRACE_S)
