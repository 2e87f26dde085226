"""taskiq with taskiq-redis: a list queue broker and a Redis result backend polled every millisecond."""

# The repository's .venv, whose mypy checks all of bench/, does not install the
# peers; there their imports resolve to Any instead of failing the check.
# mypy: disable-error-code="import-not-found"

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from taskiq import AsyncBroker, AsyncTaskiqDecoratedTask
from taskiq.api import run_receiver_task
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

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
POLL_INTERVAL_S = 0.001


async def echo(args: dict[str, Any]) -> dict[str, Any]:
    return args


def make_broker(
    redis_url: str,
) -> tuple[AsyncBroker, AsyncTaskiqDecoratedTask[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]]:
    broker = ListQueueBroker(redis_url, queue_name=QUEUE).with_result_backend(
        RedisAsyncResultBackend(redis_url)
    )
    return broker, broker.register_task(echo, task_name="echo")


async def serve(redis_url: str) -> None:
    broker, _ = make_broker(redis_url)
    broker.is_worker_process = True
    await broker.startup()
    # run_receiver_task is taskiq's API for running a worker inside one's own
    # process; `taskiq worker` runs the same receiver.
    receiving = asyncio.create_task(run_receiver_task(broker, max_async_tasks=CONCURRENCY))
    try:
        await until_terminated()
    finally:
        receiving.cancel()
        await broker.shutdown()


@asynccontextmanager
async def connect(redis_url: str) -> AsyncIterator[Echo]:
    broker, task = make_broker(redis_url)
    await broker.startup()
    try:

        async def call(args: Any) -> Any:
            sent = await task.kiq(args)
            result = await sent.wait_result(check_interval=POLL_INTERVAL_S, timeout=REQUEST_TIMEOUT_S)
            result.raise_for_error()
            return result.return_value

        yield call
    finally:
        await broker.shutdown()


SYSTEM = System(
    name="taskiq",
    packages=("taskiq", "taskiq-redis"),
    setup=(
        f"`ListQueueBroker` (BRPOP) with `RedisAsyncResultBackend`, worker through "
        f"`taskiq.api.run_receiver_task(max_async_tasks={CONCURRENCY})`; the client polls the result "
        f"every {POLL_INTERVAL_S * 1000:g} ms (`wait_result(check_interval={POLL_INTERVAL_S})`)."
    ),
    module=__name__,
    connect=connect,
)

if __name__ == "__main__":
    run_worker(serve(worker_redis_url()))
