"""EmbeddedRedis: the bundled valkey-server started on a free loopback port."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from tasq_fastapi._embedded import EmbeddedRedis, EmbeddedRedisError
from tests._redis_servers import free_port

pytestmark = pytest.mark.timeout(60)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_embedded_start_answers_and_stop_ends_process() -> None:
    server = EmbeddedRedis()
    url = server.start()
    pid = server.pid

    try:
        client = redis.Redis.from_url(url)
        assert client.ping() is True
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        client.close()
    finally:
        server.stop()

    assert url.startswith("redis://127.0.0.1:")
    assert pid is not None
    assert not _process_exists(pid)
    assert server.pid is None


async def test_embedded_async_context_manager() -> None:
    async with EmbeddedRedis() as server:
        client = aioredis.Redis.from_url(server.url)
        try:
            assert await client.ping() is True
        finally:
            await client.aclose()
        pid = server.pid

    assert pid is not None
    assert not _process_exists(pid)


def test_embedded_url_before_start_rejected() -> None:
    with pytest.raises(EmbeddedRedisError, match=r"not running. Call start\(\) first"):
        _ = EmbeddedRedis().url


def test_embedded_missing_binary(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-server"

    with pytest.raises(EmbeddedRedisError, match=f"The Redis server binary {missing} does not exist"):
        EmbeddedRedis(binary=missing).start()


def test_embedded_taken_port_reports_log() -> None:
    with EmbeddedRedis() as first:
        port = int(first.url.rsplit(":", 1)[1].split("/")[0])
        second = EmbeddedRedis(port=port)

        with pytest.raises(EmbeddedRedisError, match="exited with code") as info:
            second.start()

    assert "Address already in use" in str(info.value)
    assert second.pid is None


def test_embedded_stop_is_idempotent() -> None:
    server = EmbeddedRedis(port=free_port())
    server.start()

    server.stop()
    server.stop()

    assert server.pid is None
