"""Latency and throughput of a call: sequential, and with a fixed number of requests in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Call = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class LoadResult:
    """Requests completed with ``in_flight`` of them outstanding at all times."""

    in_flight: int
    requests: int
    rate: float
    """Completed requests per second."""
    p50_s: float
    p99_s: float


def percentile(samples: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of ``samples``; ``fraction`` is 0.5 for the median."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summarize(in_flight: int, latencies: list[float], elapsed_s: float) -> LoadResult:
    return LoadResult(
        in_flight=in_flight,
        requests=len(latencies),
        rate=len(latencies) / elapsed_s,
        p50_s=percentile(latencies, 0.5),
        p99_s=percentile(latencies, 0.99),
    )


async def sequential(call: Call, count: int) -> LoadResult:
    """Time ``count`` calls made one after another."""
    latencies = []
    started = time.perf_counter()
    for _ in range(count):
        sent = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - sent)
    return summarize(1, latencies, time.perf_counter() - started)


async def interleaved(first: Call, second: Call, count: int) -> tuple[LoadResult, LoadResult]:
    """Time ``count`` calls of each, one of ``first`` then one of ``second``, in turn.

    Both then meet the same state of the machine: runs made one after the other can
    differ by more than the two calls do, on a shared machine.
    """
    latencies: tuple[list[float], list[float]] = ([], [])
    started = time.perf_counter()
    for _ in range(count):
        for call, samples in ((first, latencies[0]), (second, latencies[1])):
            sent = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - sent)
    elapsed_s = time.perf_counter() - started
    return summarize(1, latencies[0], elapsed_s), summarize(1, latencies[1], elapsed_s)


async def under_load(call: Call, in_flight: int, seconds: float) -> LoadResult:
    """Keep ``in_flight`` calls outstanding for ``seconds`` and time each of them.

    Calls still running when the time is up are finished and counted, so the run
    lasts a little longer than ``seconds`` and the rate divides by the real duration.
    """
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < stop_at:
            sent = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - sent)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(in_flight):
            group.create_task(caller())
    return summarize(in_flight, latencies, time.perf_counter() - started)
