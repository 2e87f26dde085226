"""tasq-fastapi: a topic served by ``Tasq.serve`` with an async echo handler."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tasq_fastapi import create_tasq

from .system import (
    CONCURRENCY,
    REQUEST_TIMEOUT_S,
    Echo,
    System,
    run_worker,
    until_terminated,
    worker_redis_url,
)

TOPIC = "bench-echo"


async def echo(args: Any) -> Any:
    return args


async def work(args: Any) -> Any:
    # Stands for a handler's own CPU work: it keeps the worker's event loop busy for
    # args["cpu_s"] seconds, as computing a result in Python would.
    busy_until = time.perf_counter() + args["cpu_s"]
    while time.perf_counter() < busy_until:
        pass
    return args


async def wait(args: Any) -> Any:
    # Simulates a handler waiting args["wait_s"] seconds on I/O, such as a database
    # query. The worker's event loop stays free meanwhile.
    await asyncio.sleep(args["wait_s"])
    return args


async def serve(redis_url: str) -> None:
    async with await create_tasq(redis_url) as tasq:
        await tasq.serve(TOPIC, {"echo": echo, "work": work, "wait": wait}, threads=CONCURRENCY)
        await until_terminated()


@asynccontextmanager
async def connect(redis_url: str) -> AsyncIterator[Echo]:
    async with await create_tasq(redis_url) as tasq:

        async def call(args: Any) -> Any:
            return await tasq.request(TOPIC, "echo", args, timeout=REQUEST_TIMEOUT_S)

        yield call


@asynccontextmanager
async def connect_method(redis_url: str, method: str) -> AsyncIterator[Echo]:
    """Yield a call of ``method``: ``work`` spends ``args["cpu_s"]`` seconds of CPU,
    ``wait`` waits ``args["wait_s"]`` seconds."""
    async with await create_tasq(redis_url) as tasq:

        async def call(args: Any) -> Any:
            return await tasq.request(TOPIC, method, args, timeout=REQUEST_TIMEOUT_S)

        yield call


SYSTEM = System(
    name="tasq-fastapi",
    packages=("tasq-fastapi", "redis", "hiredis", "cbor2"),
    setup=f"`Tasq.serve(threads={CONCURRENCY})` with an async handler; one `Tasq` client in the runner.",
    module=__name__,
    connect=connect,
)

if __name__ == "__main__":
    run_worker(serve(worker_redis_url()))
