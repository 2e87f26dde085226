"""Servers publish what they serve, and withdraw it when they stop."""

from __future__ import annotations

import os
from typing import Any

import redis.asyncio as aioredis

from tasq_fastapi import Tasq, create_tasq
from tasq_fastapi._presence import read_servers, servers_key, topic_of_servers_key
from tests._waiting import wait_until

# Run every test here on a single server and on a Redis Cluster.
ALSO_ON_CLUSTER = True


async def echo(args: Any) -> Any:
    return args


async def test_presence_lists_running_server(tasq: Tasq, topic: str, redis_client: aioredis.Redis) -> None:
    await tasq.serve(topic, {"echo": echo, "ping": echo}, threads=3)

    await wait_until(lambda: _server_count(redis_client, topic, 1))
    [entry] = await read_servers(redis_client, topic)

    assert entry["topic"] == topic
    assert entry["methods"] == ["echo", "ping"]
    assert entry["threads"] == 3
    assert entry["pid"] == os.getpid()
    assert entry["delivery"] == "at-most-once"
    assert 0 < await redis_client.pttl(servers_key(topic)) <= 15_000


async def test_presence_withdrawn_on_close(redis_url: str, topic: str, redis_client: aioredis.Redis) -> None:
    async with await create_tasq(redis_url) as first, await create_tasq(redis_url) as second:
        await first.serve(topic, {"echo": echo})
        await second.serve(topic, {"echo": echo})
        await wait_until(lambda: _server_count(redis_client, topic, 2))

        await first.aclose()

        assert len(await read_servers(redis_client, topic)) == 1


def test_topic_of_servers_key_round_trip() -> None:
    assert topic_of_servers_key(servers_key("users.v2")) == "users.v2"
    assert topic_of_servers_key("@tasq:users") is None


async def _server_count(redis_client: aioredis.Redis, topic: str, expected: int) -> bool:
    return len(await read_servers(redis_client, topic)) == expected
