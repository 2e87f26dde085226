"""How a server on a single Redis takes tasks: BLMPOP on a connection of its own.

On a Redis Cluster servers take tasks with LPOP after notifications instead, so these
tests run on a single server only. The other core modules cover the cluster's way.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import redis as redis_sync
import redis.asyncio as aioredis

from tasq_fastapi import Tasq, create_tasq
from tasq_fastapi._protocol import encode_request, to_deadline_ms, topic_key
from tests._redis_servers import RedisProcess
from tests._waiting import WAIT_S, wait_until

# Long enough that a test finishing in time proves the server did not wait it out.
LONG_RECHECK_S = 60.0


async def echo(args: Any) -> Any:
    return args


async def test_blocked_server_takes_task_pushed_without_notification(
    tasq: Tasq, topic: str, redis_client: aioredis.Redis
) -> None:
    await tasq.serve(topic, {"echo": echo}, recheck_interval_s=LONG_RECHECK_S)
    reply_channel = f"@tasq:client:{tasq.client_id}"
    deadline_ms = to_deadline_ms(time.time() + WAIT_S)
    task = encode_request(tasq.client_id, b"\x01\x02\x03\x04\x05\x06", deadline_ms, "echo", 5, True)

    async with redis_client.pubsub() as pubsub:
        await pubsub.subscribe(reply_channel)
        # RPUSH alone, with no PUBLISH: within the test's wait only a server blocked on
        # the list can take it.
        await redis_client.rpush(topic_key(topic), task)
        reply = await _next_message(pubsub)

    assert reply.startswith(b"\x83\x46\x01\x02\x03\x04\x05\x06")


async def test_server_close_ends_its_blocked_take_at_once(redis_url: str, topic: str) -> None:
    async with await create_tasq(redis_url) as tasq:
        server = await tasq.serve(topic, {"echo": echo}, recheck_interval_s=LONG_RECHECK_S)
        assert await tasq.request(topic, "echo", 1) == 1

        await asyncio.wait_for(server.aclose(), WAIT_S)


async def test_server_close_leaves_no_blmpop_and_queued_tasks(
    redis_url: str, topic: str, redis_client: aioredis.Redis
) -> None:
    async with await create_tasq(redis_url) as tasq:
        server = await tasq.serve(topic, {"echo": echo})
        assert await tasq.request(topic, "echo", 1) == 1
        await wait_until(lambda: _blocked_in_blmpop(redis_client))
        await server.aclose()

        assert not await _blocked_in_blmpop(redis_client)
        queued = asyncio.create_task(tasq.request(topic, "echo", 2, timeout=WAIT_S))
        await wait_until(lambda: _has_length(redis_client, topic_key(topic), 1))
        queued.cancel()


async def test_busy_server_close_skips_take_wait(redis_url: str, topic: str) -> None:
    started = asyncio.Event()

    async def hold(_args: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    async with await create_tasq(redis_url) as tasq:
        server = await tasq.serve(topic, {"hold": hold}, threads=1, recheck_interval_s=LONG_RECHECK_S)
        call = asyncio.create_task(tasq.request(topic, "hold", timeout=WAIT_S))
        await asyncio.wait_for(started.wait(), WAIT_S)

        # Every slot is busy, so no BLMPOP is in flight: closing only waits the grace period.
        await asyncio.wait_for(server.aclose(grace_s=0.1), WAIT_S)
        call.cancel()


async def test_blocked_loop_keeps_taken_task(redis_url: str, topic: str) -> None:
    # A short socket_timeout makes a BLMPOP's whole wait 0.4 s. The event loop then
    # stays blocked for longer, and Redis hands over a task pushed meanwhile.
    ran = asyncio.Event()

    async def record(_args: Any) -> None:
        ran.set()

    redis = aioredis.Redis.from_url(redis_url, socket_timeout=0.4)
    async with await create_tasq(redis) as tasq:
        await tasq.serve(topic, {"record": record}, recheck_interval_s=0.2)
        deadline_ms = to_deadline_ms(time.time() + WAIT_S)
        task = encode_request(tasq.client_id, b"\x06\x05\x04\x03\x02\x01", deadline_ms, "record", 1, True)
        await wait_until(lambda: _blocked_in_blmpop(redis))

        # Joining the pusher blocks the event loop too, so the task is pushed while the
        # loop is blocked, and the sleep then outlasts the BLMPOP's time bound.
        pusher = threading.Thread(target=_push, args=(redis_url, topic_key(topic), task))
        pusher.start()
        pusher.join()
        time.sleep(1.0)  # noqa: ASYNC251 - blocking the event loop is the point here

        await asyncio.wait_for(ran.wait(), WAIT_S)
    await redis.aclose()


def _push(redis_url: str, key: str, task: bytes) -> None:
    with redis_sync.Redis.from_url(redis_url) as client:
        client.rpush(key, task)


async def test_server_takes_fewer_large_tasks_at_once(redis_process: RedisProcess, topic: str) -> None:
    # After a take brought a 1.5 MiB task, the next takes get at most 2 tasks (4 MiB)
    # instead of 32, so that each reply stays small enough to arrive within its time bound.
    large = b"x" * (1536 * 1024)
    handled: list[int] = []
    all_handled = asyncio.Event()

    async def count(args: Any) -> int:
        handled.append(len(args))
        if len(handled) == 11:
            all_handled.set()
        return 0

    async with (
        await create_tasq(redis_process.url) as tasq,
        aioredis.Redis.from_url(redis_process.url) as redis_client,
    ):
        await tasq.serve(topic, {"count": count}, threads=64, recheck_interval_s=LONG_RECHECK_S)
        await tasq.request(topic, "count", large)
        await redis_client.config_resetstat()

        deadline_ms = to_deadline_ms(time.time() + WAIT_S)
        tasks = [
            encode_request(tasq.client_id, index.to_bytes(6, "big"), deadline_ms, "count", large, True)
            for index in range(1, 11)
        ]
        # One RPUSH of all ten: a server asking for 32 would take them in one BLMPOP.
        await redis_client.rpush(topic_key(topic), *tasks)
        await asyncio.wait_for(all_handled.wait(), WAIT_S)
        stats = await redis_client.info("commandstats")

    assert stats["cmdstat_blmpop"]["calls"] >= 5


async def _next_message(pubsub: Any) -> bytes:
    async with asyncio.timeout(WAIT_S):
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=WAIT_S)
            if message is not None:
                data: bytes = message["data"]
                return data


async def _blocked_in_blmpop(redis_client: aioredis.Redis) -> bool:
    # CLIENT LIST shows a blocked connection with flag "b" and its last command.
    clients = await redis_client.client_list()
    return any("b" in client["flags"] and client["cmd"] == "blmpop" for client in clients)


async def _has_length(redis_client: aioredis.Redis, key: str, length: int) -> bool:
    return bool(await redis_client.llen(key) == length)
