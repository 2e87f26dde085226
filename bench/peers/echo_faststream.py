"""FastStream: a Redis list subscriber whose return value is the reply to ``broker.request``."""

# The repository's .venv, whose mypy checks all of bench/, does not install the
# peers; there their imports resolve to Any instead of failing the check.
# mypy: disable-error-code="import-not-found, untyped-decorator"

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from faststream.redis import RedisBroker

from .system import (
    CONCURRENCY,
    REQUEST_TIMEOUT_S,
    Echo,
    System,
    run_worker,
    until_terminated,
    worker_redis_url,
)

QUEUE = "bench-echo"


async def serve(redis_url: str) -> None:
    # FastStream logs two lines per message at log_level; DEBUG keeps them out of
    # the worker's output, as the other workers log nothing per message.
    broker = RedisBroker(redis_url, log_level=logging.DEBUG)

    # The list subscriber takes messages with BLPOP; max_workers lets it run that
    # many handlers at once, as Tasq.serve's threads does.
    @broker.subscriber(list=QUEUE, max_workers=CONCURRENCY)
    async def echo(args: dict[str, Any]) -> dict[str, Any]:
        return args

    async with broker:
        await broker.start()
        await until_terminated()


@asynccontextmanager
async def connect(redis_url: str) -> AsyncIterator[Echo]:
    # Each request uses a pub/sub connection for its reply besides the one that
    # pushes it, so the pool needs more than one connection per request in flight.
    async with RedisBroker(redis_url, max_connections=4 * CONCURRENCY) as broker:

        async def call(args: Any) -> Any:
            reply = await broker.request(args, list=QUEUE, timeout=REQUEST_TIMEOUT_S)
            return await reply.decode()

        yield call


SYSTEM = System(
    name="FastStream",
    packages=("faststream",),
    setup=(
        f"`@broker.subscriber(list=..., max_workers={CONCURRENCY})` (BLPOP); the client calls "
        "`broker.request(list=...)`, which subscribes to a reply channel of its own for each request."
    ),
    module=__name__,
    connect=connect,
)

if __name__ == "__main__":
    run_worker(serve(worker_redis_url()))
