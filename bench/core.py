"""Round-trip latency and throughput of tasq-fastapi against a plain Redis PING.

Run from the repository root::

    python -m bench.core [--redis-url URL] [--sequential 2000] [--in-flight 64] [--seconds 5]

The echo server runs in a separate process (``--in-process`` keeps it in this one),
as a real deployment would. Every figure comes from this one run, so the ratios
compare numbers measured side by side on the same machine and the same Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from tasq_fastapi import Tasq, create_tasq

from .memory import pending_memory

DEFAULT_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


async def echo(args: Any) -> Any:
    return args


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def sequential_latencies(call: Callable[[], Awaitable[Any]], count: int) -> list[float]:
    for _ in range(min(200, count)):
        await call()
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - started)
    return latencies


async def throughput(call: Callable[[], Awaitable[Any]], in_flight: int, seconds: float) -> float:
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await call()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return done / (time.perf_counter() - started)


def start_worker_process(redis_url: str, topic: str, threads: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "bench.core",
        "--serve",
        topic,
        "--redis-url",
        redis_url,
        "--threads",
        str(threads),
    ]
    return subprocess.Popen(command, stdin=subprocess.PIPE)


async def serve_until_stdin_closes(redis_url: str, topic: str, threads: int) -> None:
    async with await create_tasq(redis_url) as tasq:
        await tasq.serve(topic, {"echo": echo}, threads=threads)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def wait_for_server(tasq: Tasq, topic: str) -> None:
    for _ in range(200):
        try:
            await tasq.request(topic, "echo", None, timeout=0.5)
            return
        except TimeoutError:
            continue
    raise RuntimeError("The benchmark worker did not respond within 100 s.")


async def run(args: argparse.Namespace) -> None:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    worker = None if args.in_process else start_worker_process(args.redis_url, topic, args.in_flight)
    redis = aioredis.Redis.from_url(args.redis_url)
    try:
        async with await create_tasq(redis) as tasq:
            if worker is None:
                await tasq.serve(topic, {"echo": echo}, threads=args.in_flight)
            await wait_for_server(tasq, topic)
            await measure(tasq, redis, topic, args)
    finally:
        await redis.aclose()
        if worker is not None:
            worker.communicate(timeout=30)


async def measure(tasq: Tasq, redis: aioredis.Redis, topic: str, args: argparse.Namespace) -> None:
    payload = {"id": 1, "name": "bench"}

    async def tasq_call() -> Any:
        return await tasq.request(topic, "echo", payload)

    async def ping() -> Any:
        return await redis.ping()

    ping_latencies = await sequential_latencies(ping, args.sequential)
    tasq_latencies = await sequential_latencies(tasq_call, args.sequential)
    tasq_rate = await throughput(tasq_call, args.in_flight, args.seconds)
    ping_rate = await throughput(ping, args.in_flight, args.seconds)

    ping_p50, ping_p99 = percentile(ping_latencies, 0.5), percentile(ping_latencies, 0.99)
    tasq_p50, tasq_p99 = percentile(tasq_latencies, 0.5), percentile(tasq_latencies, 0.99)
    print(f"{'':28}{'p50 us':>10}{'p99 us':>10}{'mean us':>10}{'req/s':>12}")
    print(
        f"{'Redis PING (redis.asyncio)':28}{ping_p50 * 1e6:10.0f}{ping_p99 * 1e6:10.0f}"
        f"{statistics.fmean(ping_latencies) * 1e6:10.0f}{ping_rate:12.0f}"
    )
    print(
        f"{'tasq-fastapi echo':28}{tasq_p50 * 1e6:10.0f}{tasq_p99 * 1e6:10.0f}"
        f"{statistics.fmean(tasq_latencies) * 1e6:10.0f}{tasq_rate:12.0f}"
    )
    print()
    print(f"sequential p50: {tasq_p50 / ping_p50:.2f} PING round trips")
    print(f"sequential p99: {tasq_p99 / ping_p99:.2f} PING round trips")
    print(f"throughput with {args.in_flight} in flight: {tasq_rate / ping_rate:.3f} of PING throughput")

    memory = await pending_memory(tasq, redis, args.pending)
    print(memory.describe())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="Redis to use (default: %(default)s)")
    parser.add_argument("--sequential", type=int, default=2000, help="sequential requests timed one by one")
    parser.add_argument("--in-flight", type=int, default=64, help="concurrent requests in the throughput run")
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="duration of each throughput run, in seconds"
    )
    parser.add_argument("--in-process", action="store_true", help="run the echo server in this process")
    parser.add_argument(
        "--pending", type=int, default=10_000, help="requests left pending for the memory measurement"
    )
    parser.add_argument("--serve", metavar="TOPIC", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=64, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.serve:
        asyncio.run(serve_until_stdin_closes(args.redis_url, args.serve, args.threads))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
