"""The dedicated redis-server and the worker processes of a run, each stopped by its pid on exit."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from .system import LOOP_VARIABLE, REDIS_URL_VARIABLE

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 10.0
REDIS_START_TIMEOUT_S = 10.0


def free_loopback_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """Send SIGTERM to the process group the process leads, then SIGKILL if it has not exited."""
    if process.returncode is not None:
        return
    # Each process was started in a session of its own, so its group id is its pid
    # and the group holds only that process and any children it started.
    os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)


@asynccontextmanager
async def started_process(argv: list[str], log_path: Path, env: dict[str, str]) -> AsyncIterator[None]:
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    try:
        yield
    finally:
        await stop_process(process)


@asynccontextmanager
async def redis_server(log_dir: Path, name: str = "redis-server") -> AsyncIterator[str]:
    """Start redis-server from PATH on a free loopback port, without persistence; yield its URL.

    Its log goes to ``log_dir/<name>.log``.
    """
    port = free_loopback_port()
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    url = f"redis://127.0.0.1:{port}/0"
    log_path = log_dir / f"{name}.log"
    async with started_process(argv, log_path, {}):
        await wait_for_redis(url, log_path)
        yield url


async def wait_for_redis(url: str, log_path: Path) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        async with asyncio.timeout(REDIS_START_TIMEOUT_S):
            while True:
                try:
                    await client.ping()
                    return
                except (RedisConnectionError, OSError):
                    await asyncio.sleep(0.05)
    except TimeoutError:
        raise RuntimeError(
            f"redis-server did not respond at {url} within {REDIS_START_TIMEOUT_S:g} s; see {log_path}."
        ) from None
    finally:
        await client.aclose()


@asynccontextmanager
async def worker_processes(
    module: str, count: int, redis_url: str, loop: str, log_dir: Path
) -> AsyncIterator[None]:
    """Run ``count`` processes of ``python -m module``, each one worker of the system under test."""
    env = {REDIS_URL_VARIABLE: redis_url, LOOP_VARIABLE: loop}
    log_path = log_dir / f"{module.rsplit('.', 1)[-1]}.log"
    async with AsyncExitStack() as stack:
        for _ in range(count):
            await stack.enter_async_context(started_process([sys.executable, "-m", module], log_path, env))
        yield
