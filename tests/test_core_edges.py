"""Edge cases where a sender must refuse what its peer would drop, and clear messages."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from tasq_fastapi import (
    Tasq,
    TasqConnectionError,
    TasqEncodeError,
    TasqRequestRejectedError,
    TasqRequestTimeoutError,
    create_tasq,
)
from tasq_fastapi._protocol import topic_key
from tests._waiting import wait_until

# Run every test here on a single server and on a Redis Cluster.
ALSO_ON_CLUSTER = True


async def echo(args: Any) -> Any:
    return args


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({1: "a"}, "map key"),
        ({"ok": {2.5: "b"}}, "map key"),
        ({1, 2}, "set element"),
        (nested(150), "nesting depth"),
    ],
    ids=["int_key", "float_key", "int_set", "too_deep"],
)
async def test_request_refuses_args_peer_would_drop(
    tasq: Tasq, topic: str, redis_client: aioredis.Redis, args: Any, reason: str
) -> None:
    with pytest.raises(TasqEncodeError, match=reason):
        await tasq.request(topic, "echo", args)

    assert await redis_client.llen(topic_key(topic)) == 0


async def test_result_peer_would_drop_is_rejected(tasq: Tasq, topic: str) -> None:
    async def int_keys(_args: Any) -> dict[int, str]:
        return {1: "a"}

    await tasq.serve(topic, {"int_keys": int_keys})

    with pytest.raises(TasqRequestRejectedError, match="map key") as caught:
        await tasq.request(topic, "int_keys", timeout=5.0)

    assert caught.value.remote_type == "TasqEncodeError"


async def test_request_rejects_timeout_beyond_wire_range(tasq: Tasq, topic: str) -> None:
    with pytest.raises(ValueError, match="year 2301"):
        await tasq.request(topic, "echo", timeout=1e10)


async def test_handler_raising_cancelled_error_is_rejected(tasq: Tasq, topic: str) -> None:
    async def cancels_itself(_args: Any) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.cancel()
        await future

    server = await tasq.serve(topic, {"cancels_itself": cancels_itself})

    with pytest.raises(TasqRequestRejectedError) as caught:
        await tasq.request(topic, "cancels_itself", timeout=5.0)

    assert caught.value.remote_type == "CancelledError"
    await wait_until(lambda: server.running == 0)


async def test_nested_request_with_no_time_left_is_not_sent(tasq: Tasq, topic: str) -> None:
    async def late_call(_args: Any) -> str:
        await asyncio.sleep(0.3)
        try:
            await tasq.request(topic, "echo", "too late", timeout=5.0)
        except TasqRequestTimeoutError as exc:
            return str(exc)
        return "sent"

    seen: list[str] = []

    async def record_late_call(args: Any) -> str:
        result = await late_call(args)
        seen.append(result)
        return result

    await tasq.serve(
        topic, {"late_call": record_late_call, "echo": echo}, threads=2, cancel_at_deadline=False
    )

    with pytest.raises(TasqRequestTimeoutError):
        await tasq.request(topic, "late_call", timeout=0.2)
    await wait_until(lambda: bool(seen))

    assert "deadline has passed" in seen[0]
    assert "inherit_deadline=False" in seen[0]


async def test_closed_client_message_names_close(redis_url: str, topic: str) -> None:
    client = await create_tasq(redis_url)
    call = asyncio.create_task(client.request(topic, "nobody", timeout=60.0))
    await wait_until(lambda: client.pending_count == 1)

    await client.aclose()

    with pytest.raises(TasqConnectionError, match="client was closed") as caught:
        await call
    assert "Redis is reachable" not in str(caught.value)


async def test_serve_requires_a_handler(tasq: Tasq, topic: str) -> None:
    with pytest.raises(ValueError, match="needs handlers or a default handler"):
        await tasq.serve(topic)
