"""Redis clients from URLs: single server, Redis Cluster and Sentinel forms."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool

from tasq_fastapi._connect import connect_redis, describe_url


async def test_connect_redis_plain_url() -> None:
    client = connect_redis("redis://127.0.0.1:6390/2")

    assert isinstance(client, aioredis.Redis)
    assert client.connection_pool.connection_kwargs["db"] == 2
    await client.aclose()


async def test_connect_redis_cluster_url() -> None:
    client = connect_redis("redis+cluster://user:secret@127.0.0.1:7000,127.0.0.1:7001")

    assert isinstance(client, RedisCluster)
    seeds = sorted((node.host, node.port) for node in client.nodes_manager.startup_nodes.values())
    assert seeds == [("127.0.0.1", 7000), ("127.0.0.1", 7001)]
    await client.aclose()


async def test_connect_redis_sentinel_url() -> None:
    client = connect_redis("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/tasq/3")

    assert isinstance(client, aioredis.Redis)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "tasq"
    assert pool.connection_kwargs["db"] == 3
    await client.aclose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://", "names no host"),
        ("redis+cluster://127.0.0.1", "host:port"),
        ("redis+cluster://127.0.0.1:7000/1", "no path"),
        ("redis+sentinel://127.0.0.1:26379", "primary's name"),
        ("redis+sentinel://127.0.0.1:26379/tasq/zero", "primary's name"),
    ],
)
def test_connect_redis_rejects_bad_url(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        connect_redis(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:secret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:secret@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis+sentinel://user:pw@a:1,b:2/svc", "redis+sentinel://user:***@a:1,b:2/svc"),
        ("redis://host:6379/0", "redis://host:6379/0"),
    ],
)
def test_describe_url_hides_password(url: str, expected: str) -> None:
    assert describe_url(url) == expected
