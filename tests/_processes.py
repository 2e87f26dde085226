"""Tasq worker processes for tests that kill, stop or multiply servers.

Run as ``python -m tests._processes --url URL --topic TOPIC ...`` it is a worker: it
serves the method ``work`` on the topic, prints ``ready`` on stdout once it serves,
and on SIGTERM calls ``await tasq.aclose(grace_s=...)``, prints ``stopped`` and exits
with status 0.

``work`` takes ``{"id": str, "hold_s": float}``. It counts its run with
``HINCRBY <runs-key> <id> 1``, pushes ``<id>:<pid>`` onto ``<started-key>`` so that a
test can wait for the start, sleeps ``hold_s`` seconds and returns
``{"id": id, "pid": pid}``. Both keys belong to the test and expire after an hour.

Tests start workers with :class:`WorkerProcess`, which is an async context manager
that SIGKILLs the worker on exit if it still runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tasq_fastapi import create_tasq
from tasq_fastapi._redis import execute

REPO_ROOT = Path(__file__).resolve().parent.parent

# How long a worker may take to start serving or to exit after a signal, in seconds.
WORKER_STARTUP_TIMEOUT_S = 20.0
WORKER_EXIT_TIMEOUT_S = 20.0

# Keys written by workers expire after this many seconds, so a failed test leaves no litter.
_KEY_EXPIRY_S = 3600


class WorkerProcess:
    """A worker started with ``python -m tests._processes``, which is killed on exit if it still runs."""

    def __init__(
        self,
        *,
        url: str,
        topic: str,
        runs_key: str,
        started_key: str,
        log_path: Path,
        threads: int = 1,
        grace_s: float = 10.0,
        health_check_interval_s: float = 0.5,
    ) -> None:
        self._arguments = [
            "--url",
            url,
            "--topic",
            topic,
            "--runs-key",
            runs_key,
            "--started-key",
            started_key,
            "--threads",
            str(threads),
            "--grace-s",
            str(grace_s),
            "--health-check-interval-s",
            str(health_check_interval_s),
        ]
        self.log_path = log_path
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        return self._require_process().pid

    @property
    def returncode(self) -> int | None:
        return self._require_process().returncode

    async def start(self) -> None:
        """Start the worker and return once it prints ``ready``."""
        with self.log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests._processes",
                *self._arguments,
                cwd=REPO_ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        try:
            await asyncio.wait_for(self.read_line("ready"), WORKER_STARTUP_TIMEOUT_S)
        except BaseException:
            await self.kill()
            raise

    async def read_line(self, expected: str) -> None:
        """Read stdout until the line ``expected``. Raises AssertionError when the output ends first."""
        stdout = self._require_process().stdout
        assert stdout is not None
        while True:
            line = await stdout.readline()
            if not line:
                log = self.log_path.read_text(errors="replace")
                raise AssertionError(f"Worker exited before printing {expected!r}. Its log:\n{log}")
            if line.decode().strip() == expected:
                return

    def terminate(self) -> None:
        """Send SIGTERM."""
        self._require_process().send_signal(signal.SIGTERM)

    async def wait(self, timeout_s: float = WORKER_EXIT_TIMEOUT_S) -> int:
        """Return the exit status once the worker has exited; fails the test after ``timeout_s``."""
        return await asyncio.wait_for(self._require_process().wait(), timeout_s)

    async def kill(self) -> None:
        """SIGKILL the worker if it still runs, and reap it."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.kill()
        await process.wait()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.kill()

    def _require_process(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise RuntimeError("The worker is not started; call start() first.")
        return self._process


def _parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the test method 'work' on one topic.")
    parser.add_argument("--url", required=True, help="Redis URL")
    parser.add_argument("--topic", required=True, help="topic to serve")
    parser.add_argument("--runs-key", required=True, help="Redis hash counting runs per task id")
    parser.add_argument("--started-key", required=True, help="Redis list receiving '<id>:<pid>' per start")
    parser.add_argument("--threads", type=int, default=1, help="maximum handlers running at once")
    parser.add_argument("--grace-s", type=float, default=10.0, help="seconds running handlers get on SIGTERM")
    parser.add_argument(
        "--health-check-interval-s",
        type=float,
        default=0.5,
        help="quiet seconds before the pub/sub connection is checked",
    )
    return parser.parse_args(argv)


async def _serve(options: argparse.Namespace) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasq = await create_tasq(options.url, health_check_interval_s=options.health_check_interval_s)
    pid = os.getpid()

    async def work(args: dict[str, Any]) -> dict[str, Any]:
        task_id = str(args["id"])
        await execute(tasq.redis, "HINCRBY", options.runs_key, task_id, 1)
        await execute(tasq.redis, "EXPIRE", options.runs_key, _KEY_EXPIRY_S)
        await execute(tasq.redis, "RPUSH", options.started_key, f"{task_id}:{pid}")
        await execute(tasq.redis, "EXPIRE", options.started_key, _KEY_EXPIRY_S)
        await asyncio.sleep(float(args.get("hold_s", 0.0)))
        return {"id": task_id, "pid": pid}

    await tasq.serve(options.topic, {"work": work}, threads=options.threads)
    print("ready", flush=True)
    await stop.wait()
    await tasq.aclose(grace_s=options.grace_s)
    print("stopped", flush=True)


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s")
    asyncio.run(_serve(_parse_arguments(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
