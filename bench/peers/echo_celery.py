"""Celery: a thread-pool worker with Redis as broker and result backend."""

# The repository's .venv, whose mypy checks all of bench/, does not install the
# peers; there their imports resolve to Any instead of failing the check.
# mypy: disable-error-code="import-not-found"

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from celery import Celery

from .system import CONCURRENCY, REQUEST_TIMEOUT_S, Echo, System, freeze_start_up_objects, worker_redis_url

TASK_NAME = "bench.echo"


def echo(args: Any) -> Any:
    return args


def make_app(redis_url: str) -> Celery:
    app = Celery("bench", broker=redis_url, backend=redis_url)
    app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
    app.task(name=TASK_NAME)(echo)
    return app


def serve(redis_url: str) -> None:
    # The threads pool runs CONCURRENCY tasks at once in one process, as the other
    # systems' workers do; the default prefork pool would start CONCURRENCY processes.
    argv = ["worker", "--pool=threads", f"--concurrency={CONCURRENCY}", "--loglevel=WARNING"]
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    make_app(redis_url).worker_main(argv)


@asynccontextmanager
async def connect(redis_url: str) -> AsyncIterator[Echo]:
    app = make_app(redis_url)
    task = app.tasks[TASK_NAME]
    # Celery's client blocks, so each request in flight takes a thread.
    threads = ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="celery-client")

    def call_blocking(args: Any) -> Any:
        return task.delay(args).get(timeout=REQUEST_TIMEOUT_S)

    async def call(args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(threads, call_blocking, args)

    try:
        yield call
    finally:
        threads.shutdown(wait=True, cancel_futures=True)
        app.close()


SYSTEM = System(
    name="Celery",
    packages=("celery", "kombu"),
    setup=(
        f"worker with `--pool=threads --concurrency={CONCURRENCY}`, Redis broker and result backend; "
        f"the client calls `delay(...).get()` in a pool of {CONCURRENCY} threads."
    ),
    module=__name__,
    connect=connect,
)

if __name__ == "__main__":
    # Celery runs its own loop of threads, so only the start-up step of run_worker applies.
    freeze_start_up_objects()
    serve(worker_redis_url())
