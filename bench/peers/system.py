"""The interface each benchmarked system implements, and helpers for their worker processes."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

Echo = Callable[[Any], Awaitable[Any]]
"""Sends args to the echo handler of a worker and returns the handler's result."""

REDIS_URL_VARIABLE = "BENCH_REDIS_URL"
"""Environment variable through which a worker process gets the Redis URL."""

LOOP_VARIABLE = "BENCH_LOOP"
"""Environment variable that selects the worker's event loop: ``uvloop`` or ``asyncio``."""

CONCURRENCY = 64
"""Tasks each worker process runs at once; matches the 64 requests in flight."""

REQUEST_TIMEOUT_S = 30.0
"""Timeout of every benchmark request, so that a lost reply stops the run instead of hanging it."""


@dataclass(frozen=True)
class System:
    """A system under test: how to start its worker and how to call it."""

    name: str
    packages: tuple[str, ...]
    """Distributions whose versions the report lists."""
    setup: str
    """One sentence on how the worker and the client are configured."""
    module: str
    """Module whose ``python -m`` entry point runs one worker process."""
    connect: Callable[[str], AbstractAsyncContextManager[Echo]]


def worker_redis_url() -> str:
    """Return the Redis URL the runner passed to this worker process."""
    try:
        return os.environ[REDIS_URL_VARIABLE]
    except KeyError:
        raise SystemExit(
            f"{REDIS_URL_VARIABLE} is not set; start workers through python -m bench.peers."
        ) from None


def run_worker(main: Coroutine[Any, Any, None]) -> None:
    """Run a worker's main coroutine on the event loop the runner selected.

    Every system's worker first moves what its imports created out of the garbage
    collector's reach (``gc.freeze()``), as a deployment would, so that no system's
    full collections walk its libraries' modules under load.
    """
    freeze_start_up_objects()
    if os.environ.get(LOOP_VARIABLE, "asyncio") == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


def freeze_start_up_objects() -> None:
    """Collect garbage once, then leave every object alive now out of later collections."""
    gc.collect()
    gc.freeze()


async def until_terminated() -> None:
    """Wait for SIGTERM or SIGINT, which the runner sends to stop a worker."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    await stop.wait()
