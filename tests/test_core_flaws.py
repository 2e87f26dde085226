"""Known flaws of the Node.js original, each shown to be absent here."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import cbor2
import pytest
import redis.asyncio as aioredis

import tasq_fastapi
from tasq_fastapi import (
    Tasq,
    TasqConnectionError,
    TasqError,
    TasqRequestError,
    TasqRequestRejectedError,
    TasqRequestTimeoutError,
    TasqRequestUnknownMethodError,
    create_tasq,
)
from tasq_fastapi._protocol import encode_request, new_request_id, to_deadline_ms, topic_key
from tests._redis_servers import RedisProcess
from tests._waiting import WAIT_S, wait_until

# Run every test here on a single server and on a Redis Cluster.
ALSO_ON_CLUSTER = True


async def echo(args: Any) -> Any:
    return args


async def _list_length(redis_client: aioredis.Redis, topic: str, expected: int = 1) -> bool:
    return int(await redis_client.llen(topic_key(topic))) >= expected


def raw_task(method: str, args: Any = None, *, client_id: str = "AAAAAAAA", timeout_s: float = 60.0) -> bytes:
    """A request as any peer would push it, for a client that is not listening."""
    deadline_ms = to_deadline_ms(time.time() + timeout_s)
    return encode_request(client_id, new_request_id(), deadline_ms, method, args, args is not None)


async def test_short_request_keeps_longer_request_queued(
    tasq: Tasq, topic: str, redis_client: aioredis.Redis
) -> None:
    long_call = asyncio.create_task(tasq.request(topic, "echo", "long", timeout=30.0))
    await wait_until(lambda: _list_length(redis_client, topic))

    with pytest.raises(TasqRequestTimeoutError):
        await tasq.request(topic, "echo", "short", timeout=0.05)

    assert await redis_client.pttl(topic_key(topic)) > 20_000
    await tasq.serve(topic, {"echo": echo})
    assert await long_call == "long"


async def test_server_finds_task_pushed_before_it_started(
    tasq: Tasq, topic: str, redis_client: aioredis.Redis
) -> None:
    call = asyncio.create_task(tasq.request(topic, "echo", "queued early"))
    # The task's notification went out while no server was subscribed.
    await wait_until(lambda: _list_length(redis_client, topic))

    await tasq.serve(topic, {"echo": echo})

    assert await asyncio.wait_for(call, WAIT_S) == "queued early"


async def test_server_finds_task_pushed_without_notification(
    tasq: Tasq, topic: str, redis_client: aioredis.Redis
) -> None:
    ran = asyncio.Event()

    async def mark(_args: Any) -> None:
        ran.set()

    server = await tasq.serve(topic, {"mark": mark}, recheck_interval_s=0.1)
    await tasq.request(topic, "mark")
    ran.clear()

    await redis_client.rpush(topic_key(topic), raw_task("mark"))

    await asyncio.wait_for(ran.wait(), WAIT_S)
    assert server.is_alive


async def test_server_fills_free_slots_from_backlog(
    tasq: Tasq, topic: str, redis_client: aioredis.Redis
) -> None:
    running = 0
    peak = 0
    four_running = asyncio.Event()

    async def work(args: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 4:
            four_running.set()
        await asyncio.wait_for(four_running.wait(), WAIT_S)
        running -= 1
        return args

    calls = [asyncio.create_task(tasq.request(topic, "work", i, timeout=30.0)) for i in range(12)]
    await wait_until(lambda: _list_length(redis_client, topic, 12))

    await tasq.serve(topic, {"work": work}, threads=4)

    assert sorted(await asyncio.gather(*calls)) == list(range(12))
    assert peak == 4


@pytest.mark.parametrize(
    "item",
    [b"\xff\x00 not cbor", cbor2.dumps([1, 2]), cbor2.dumps({"a": 1}), b"\x85\x68", cbor2.dumps("x" * 10)],
    ids=["not_cbor", "short_array", "map", "truncated", "string"],
)
async def test_malformed_task_keeps_slot_free(
    tasq: Tasq, topic: str, redis_client: aioredis.Redis, item: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    await redis_client.rpush(topic_key(topic), item)

    await tasq.serve(topic, {"echo": echo}, threads=1)

    assert await tasq.request(topic, "echo", "after") == "after"
    assert await redis_client.llen(topic_key(topic)) == 0
    assert f"Dropped a malformed task of topic={topic}" in caplog.text


async def test_redis_error_in_server_loop_keeps_serving(
    tasq: Tasq, topic: str, redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # A string under the list's key makes every LPOP fail with WRONGTYPE.
    await redis_client.set(topic_key(topic), "not a list", ex=60)
    server = await tasq.serve(topic, {"echo": echo}, threads=1, recheck_interval_s=0.05)
    await wait_until(lambda: "Taking tasks for topic" in caplog.text)

    await redis_client.delete(topic_key(topic))

    assert await tasq.request(topic, "echo", "recovered") == "recovered"
    assert server.is_alive


async def test_unencodable_result_rejected_promptly(tasq: Tasq, topic: str) -> None:
    async def weird(_args: Any) -> object:
        return object()

    await tasq.serve(topic, {"weird": weird})

    with pytest.raises(TasqRequestRejectedError, match="object") as caught:
        await tasq.request(topic, "weird", timeout=30.0)

    assert caught.value.remote_type == "TasqEncodeError"


async def test_throwing_handler_sends_type_and_logs(
    tasq: Tasq, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(_args: Any) -> None:
        raise ValueError("quota exceeded")

    await tasq.serve(topic, {"broken": broken})

    with pytest.raises(TasqRequestRejectedError) as caught:
        await tasq.request(topic, "broken")

    assert (caught.value.remote_type, caught.value.remote_message) == ("ValueError", "quota exceeded")
    failures = [r for r in caplog.records if r.levelno == logging.ERROR and "Handler failed" in r.message]
    assert len(failures) == 1
    assert f"topic={topic} method=broken request_id={caught.value.request_id}" in failures[0].message
    assert failures[0].exc_info is not None


async def test_handler_learns_and_honours_deadline(tasq: Tasq, topic: str) -> None:
    cancelled = asyncio.Event()
    remaining: list[float] = []

    async def slow(_args: Any) -> None:
        context = tasq_fastapi.get_request_context()
        assert context is not None
        remaining.append(context.time_remaining())
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await tasq.serve(topic, {"slow": slow})

    with pytest.raises(TasqRequestTimeoutError):
        await tasq.request(topic, "slow", timeout=0.3)

    await asyncio.wait_for(cancelled.wait(), WAIT_S)
    assert 0 < remaining[0] <= 0.3


async def test_completed_request_leaves_no_timer(tasq: Tasq, topic: str) -> None:
    await tasq.serve(topic, {"echo": echo})
    loop = asyncio.get_running_loop()

    await tasq.request(topic, "echo", timeout=3600.0)

    # The loop's private heap of timers is the only place a leftover timer would show.
    far_timers = [h for h in loop._scheduled if not h.cancelled() and h.when() > loop.time() + 60]  # type: ignore[attr-defined]
    assert far_timers == []


async def test_timeout_before_write_is_clean(tasq: Tasq, topic: str) -> None:
    for _ in range(50):
        with pytest.raises(TasqRequestTimeoutError):
            await tasq.request(topic, "echo", timeout=1e-6)

    assert tasq.pending_count == 0
    await tasq.serve(topic, {"echo": echo})
    assert await tasq.request(topic, "echo", "still fine") == "still fine"


async def test_failed_write_raises_request_error(
    tasq: Tasq, topic: str, redis_client: aioredis.Redis
) -> None:
    await redis_client.set(topic_key(topic), "not a list", ex=60)

    with pytest.raises(TasqRequestError, match="WRONGTYPE") as caught:
        await tasq.request(topic, "echo", timeout=5.0)

    assert caught.value.topic == topic
    assert tasq.pending_count == 0


async def test_malformed_reply_does_not_break_client(
    tasq: Tasq, topic: str, redis_client: aioredis.Redis
) -> None:
    await tasq.serve(topic, {"echo": echo})
    channel = f"@tasq:client:{tasq.client_id}"

    for garbage in (b"\xff", cbor2.dumps([b"xx", 99]), cbor2.dumps("text"), b""):
        await redis_client.publish(channel, garbage)

    assert await tasq.request(topic, "echo", "ok") == "ok"


@pytest.mark.parametrize(
    "method", ["__class__", "__init__", "__getitem__", "toString", "constructor", "get", "keys"]
)
async def test_only_registered_methods_run(tasq: Tasq, topic: str, method: str) -> None:
    await tasq.serve(topic, {"echo": echo})

    with pytest.raises(TasqRequestUnknownMethodError):
        await tasq.request(topic, method)


@pytest.mark.parametrize("args", [0, "", False, {}, [], 0.0])
async def test_falsy_args_are_sent(tasq: Tasq, topic: str, args: Any) -> None:
    seen: list[Any] = []

    async def record(value: Any) -> Any:
        seen.append(value)
        return value

    await tasq.serve(topic, {"record": record})

    assert await tasq.request(topic, "record", args) == args
    assert seen == [args]
    assert type(seen[0]) is type(args)


async def test_server_close_waits_for_running_handler(tasq: Tasq, topic: str) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(_args: Any) -> str:
        started.set()
        await release.wait()
        return "finished"

    server = await tasq.serve(topic, {"slow": slow})
    call = asyncio.create_task(tasq.request(topic, "slow", timeout=30.0))
    await asyncio.wait_for(started.wait(), WAIT_S)

    closing = asyncio.create_task(server.aclose(grace_s=30.0))
    await asyncio.sleep(0)
    assert not closing.done()
    release.set()

    assert await call == "finished"
    await closing
    assert server.processed == 1


async def test_server_close_cancels_after_grace(tasq: Tasq, topic: str) -> None:
    started = asyncio.Event()

    async def stuck(_args: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    server = await tasq.serve(topic, {"stuck": stuck})
    call = asyncio.create_task(tasq.request(topic, "stuck", timeout=30.0))
    await asyncio.wait_for(started.wait(), WAIT_S)

    await server.aclose(grace_s=0.05)

    assert server.running == 0
    # The caller learns at once that the server gave up, not at its deadline.
    with pytest.raises(TasqRequestRejectedError) as caught:
        await asyncio.wait_for(call, WAIT_S)
    assert caught.value.remote_type == "TasqServerShutdown"


async def test_client_close_fails_pending_requests(topic: str, redis_url: str) -> None:
    client = await create_tasq(redis_url)
    call = asyncio.create_task(client.request(topic, "nobody", timeout=60.0))
    await wait_until(lambda: client.pending_count == 1)

    await client.aclose()

    with pytest.raises(TasqConnectionError, match="closed"):
        await call


async def test_server_picks_up_requests_after_redis_restart(redis_process: RedisProcess) -> None:
    topic = "restart"
    async with await create_tasq(redis_process.url) as server_side:
        await server_side.serve(topic, {"echo": echo}, recheck_interval_s=30.0)

        redis_process.restart()

        # The request is pushed by a fresh client at once, possibly before the
        # server has resubscribed; the server must still find it.
        async with await create_tasq(redis_process.url) as caller:
            assert await caller.request(topic, "echo", "after restart", timeout=10.0) == "after restart"


@pytest.mark.parametrize("topic_name", ["client:abcdefgh", "client:ns1:abcdefgh", "client:"])
async def test_topic_cannot_shadow_reply_channel(tasq: Tasq, topic_name: str) -> None:
    with pytest.raises(ValueError, match="client"):
        await tasq.request(topic_name, "echo")
    with pytest.raises(ValueError, match="client"):
        await tasq.serve(topic_name, {"echo": echo})


def test_errors_are_exported() -> None:
    assert issubclass(tasq_fastapi.TasqRequestTimeoutError, TasqRequestError)
    assert issubclass(tasq_fastapi.TasqRequestTimeoutError, TimeoutError)
    assert issubclass(tasq_fastapi.TasqRequestUnknownMethodError, TasqRequestError)
    assert issubclass(tasq_fastapi.TasqRequestRejectedError, TasqRequestError)
    assert issubclass(tasq_fastapi.TasqRequestInvalidArgsError, TasqRequestRejectedError)
    assert issubclass(TasqRequestError, TasqError)
