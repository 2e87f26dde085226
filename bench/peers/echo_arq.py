"""arq: a worker and a client that both poll Redis every millisecond."""

# The repository's .venv, whose mypy checks all of bench/, does not install the
# peers; there their imports resolve to Any instead of failing the check.
# mypy: disable-error-code="import-not-found"

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.jobs import Job, ResultNotFound
from arq.worker import Worker, func

from .system import (
    CONCURRENCY,
    REQUEST_TIMEOUT_S,
    Echo,
    System,
    run_worker,
    until_terminated,
    worker_redis_url,
)

POLL_DELAY_S = 0.001


async def echo(ctx: dict[str, Any], args: Any) -> Any:
    return args


async def serve(redis_url: str) -> None:
    # arq's worker finds new jobs only by polling its queue (a sorted set), so its
    # poll_delay bounds the latency as much as the client's does.
    worker = Worker(
        functions=[func(echo, name="echo")],
        redis_settings=RedisSettings.from_dsn(redis_url),
        max_jobs=CONCURRENCY,
        poll_delay=POLL_DELAY_S,
        handle_signals=False,
    )
    running = asyncio.create_task(worker.async_run())
    try:
        await until_terminated()
    finally:
        await worker.close()
        running.cancel()
        with suppress(asyncio.CancelledError):
            await running


async def wait_for_result(job: Job) -> Any:
    try:
        return await job.result(timeout=REQUEST_TIMEOUT_S, poll_delay=POLL_DELAY_S)
    except ResultNotFound:
        # arq 0.25 reads the result and the job's queue entry with two separate
        # commands, so a job that finishes between them looks lost although its
        # result is stored. arq 0.26 reads both atomically but needs redis-py < 6.
        info = await job.result_info()
        if info is None:
            raise
        if not info.success:
            raise RuntimeError(f"arq job {job.job_id} failed: {info.result!r}") from None
        return info.result


@asynccontextmanager
async def connect(redis_url: str) -> AsyncIterator[Echo]:
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:

        async def call(args: Any) -> Any:
            job = await pool.enqueue_job("echo", args)
            if job is None:
                raise RuntimeError("arq did not enqueue the echo job: a job with its id already exists.")
            return await wait_for_result(job)

        yield call
    finally:
        await pool.aclose()


SYSTEM = System(
    name="arq",
    packages=("arq",),
    setup=(
        f"`Worker(max_jobs={CONCURRENCY}, poll_delay={POLL_DELAY_S})`; the client waits with "
        f"`job.result(poll_delay={POLL_DELAY_S})`, then reads the stored result when arq 0.25's "
        "non-atomic check reports a finished job as not found."
    ),
    module=__name__,
    connect=connect,
)

if __name__ == "__main__":
    run_worker(serve(worker_redis_url()))
