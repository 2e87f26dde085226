"""The measurements of one benchmark run, per system."""

from __future__ import annotations

import asyncio
import functools
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from .cpu_limit import CpuLimitUnavailable, cpu_limited
from .measure import Call, LoadResult, interleaved, sequential, under_load
from .processes import redis_server, worker_processes
from .system import Echo, System

PAYLOAD = {"id": 1, "name": "bench"}
WARM_UP_REQUESTS = 200
WARM_UP_LOAD_S = 1.0
READY_TIMEOUT_S = 60.0
WORK_CPU_S = 0.0002
"""CPU time the ``work`` handler of the worker-process runs spends per request, in seconds."""
WAIT_S = 0.02
"""Delay of the ``wait`` handler per request in the scale-out runs, in seconds."""
SCALE_OUT_IN_FLIGHT = 512
"""Requests in flight of the scale-out runs, as many as 8 workers have handler slots."""
WORKERS_READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Settings:
    requests: int
    """Sequential requests timed for p50 and p99."""
    seconds: float
    """Duration of each run with requests in flight."""
    levels: tuple[int, ...]
    """Requests in flight of the load runs; the largest one is the throughput figure."""
    tasq_workers: tuple[int, ...]
    payload_bytes: tuple[int, ...]
    payload_in_flight: int
    """Requests in flight of the payload runs."""
    loop: str
    log_dir: Path
    scale_out_workers: tuple[int, ...] = (1, 2, 4, 8)
    """Worker processes of the scale-out runs, in increasing order."""
    redis_cpu_share: float = 0.05
    """Share of one core that Redis gets in the scale-out run that makes it the bottleneck."""


@dataclass
class SystemResult:
    name: str
    levels: dict[int, LoadResult] = field(default_factory=dict)
    """Results by requests in flight; 1 is the sequential run."""
    workers: dict[int, LoadResult] = field(default_factory=dict)
    """tasq-fastapi only: results by number of worker processes, at the largest level."""
    cpu_workers: dict[int, LoadResult] = field(default_factory=dict)
    """tasq-fastapi only: the same with a handler that spends :data:`WORK_CPU_S` of CPU."""
    redis_cpu: dict[tuple[str, int], float] = field(default_factory=dict)
    """tasq-fastapi only: Redis's CPU seconds per second in each run by (handler, workers)."""
    payloads: dict[int, tuple[LoadResult, LoadResult]] = field(default_factory=dict)
    """tasq-fastapi only: (sequential, loaded) results by size of the args' data string."""
    payload_errors: dict[int, str] = field(default_factory=dict)
    """tasq-fastapi only: why the payload run of a size failed."""
    payload_echo: dict[int, LoadResult] = field(default_factory=dict)
    """tasq-fastapi only: sequential Redis ECHO of the same data, by size."""
    interleaved: tuple[LoadResult, LoadResult] | None = None
    """tasq-fastapi only: sequential (PING, request) latencies, measured in turn."""


@dataclass
class ScaleOutResult:
    """tasq-fastapi's throughput with more and more worker processes on one Redis."""

    redis_cpu_share: float | None
    """Share of one core Redis was held to; None for an unlimited Redis."""
    loads: dict[int, LoadResult] = field(default_factory=dict)
    """Results by number of worker processes."""
    redis_cpu: dict[int, float] = field(default_factory=dict)
    """Redis's CPU seconds per second, by number of worker processes."""
    skipped: str | None = None
    """The reason the run did not take place, or None when it did."""


async def measure_levels(call: Call, settings: Settings, result: SystemResult) -> None:
    result.levels[1] = await sequential(call, settings.requests)
    for in_flight in settings.levels:
        if in_flight > 1:
            result.levels[in_flight] = await under_load(call, in_flight, settings.seconds)
        print(f"  {in_flight:>3} in flight: {describe(result.levels[in_flight])}", flush=True)


def describe(load: LoadResult) -> str:
    return f"p50 {load.p50_s * 1e6:8.0f} us  p99 {load.p99_s * 1e6:8.0f} us  {load.rate:8.0f} req/s"


async def warm_up(call: Call, in_flight: int) -> None:
    for _ in range(WARM_UP_REQUESTS):
        await call()
    await under_load(call, in_flight, WARM_UP_LOAD_S)


async def wait_until_ready(echo: Echo, name: str, log_dir: Path) -> None:
    """Send requests until one gets a reply; the first waits in Redis until the worker is up."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            while True:
                try:
                    reply = await echo(PAYLOAD)
                    break
                except TimeoutError:
                    continue
    except TimeoutError:
        raise RuntimeError(
            f"{name} did not reply within {READY_TIMEOUT_S:g} s; see its worker log in {log_dir}."
        ) from None
    if reply != PAYLOAD:
        raise RuntimeError(f"{name} echoed {reply!r} instead of {PAYLOAD!r}.")


async def measure_ping(redis_url: str, settings: Settings) -> SystemResult:
    """Measure redis.asyncio's PING round trip, the unit of latency of the report."""
    result = SystemResult("Redis PING")
    client = aioredis.Redis.from_url(redis_url)
    try:
        call: Call = client.ping
        await warm_up(call, max(settings.levels))
        await measure_levels(call, settings, result)
    finally:
        await client.aclose()
    return result


async def measure_system(system: System, redis_url: str, settings: Settings) -> SystemResult:
    """Start one worker process of ``system``, then measure it at every load level."""
    result = SystemResult(system.name)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(
            worker_processes(system.module, 1, redis_url, settings.loop, settings.log_dir)
        )
        echo = await stack.enter_async_context(system.connect(redis_url))
        await wait_until_ready(echo, system.name, settings.log_dir)
        call = functools.partial(echo, PAYLOAD)
        await warm_up(call, max(settings.levels))
        await measure_levels(call, settings, result)
        if system.name == "tasq-fastapi":
            ping_client = await stack.enter_async_context(aioredis.Redis.from_url(redis_url))
            result.interleaved = await interleaved(ping_client.ping, call, settings.requests)
            await measure_tasq_payloads(echo, ping_client, settings, result)
            await measure_tasq_workers(system, redis_url, call, settings, stack, result)
    return result


async def measure_tasq_payloads(
    echo: Echo, redis: aioredis.Redis, settings: Settings, result: SystemResult
) -> None:
    """Time args with a data string of each size, and a Redis ECHO of that string as the yardstick.

    Requests and ECHOs are timed in turn, one of each, so that both meet the same
    state of the machine.
    """
    for size in settings.payload_bytes:
        args: dict[str, Any] = {**PAYLOAD, "data": "x" * size}
        call = functools.partial(echo, args)
        try:
            if await echo(args) != args:
                raise RuntimeError(f"tasq-fastapi did not echo args of {size} bytes unchanged.")
            result.payload_echo[size], single = await interleaved(
                functools.partial(redis.echo, args["data"]), call, max(1, settings.requests // 4)
            )
            loaded = await under_load(call, settings.payload_in_flight, settings.seconds)
        except Exception as exc:
            # A size that fails still leaves the other sizes and systems to measure.
            result.payload_errors[size] = describe_error(exc)
            print(f"  {size:>8} B args failed: {result.payload_errors[size]}", flush=True)
            continue
        result.payloads[size] = (single, loaded)
        echo_p50_us = result.payload_echo[size].p50_s * 1e6
        print(
            f"  {size:>8} B args: p50 {single.p50_s * 1e6:8.0f} us (ECHO {echo_p50_us:.0f} us)  "
            f"{loaded.rate:8.0f} req/s",
            flush=True,
        )


def describe_error(exc: Exception) -> str:
    """Describe an error in one line, naming the first error of an exception group."""
    if isinstance(exc, ExceptionGroup):
        return f"{len(exc.exceptions)} requests failed, the first with {describe_error(exc.exceptions[0])}"
    return f"{type(exc).__name__}: {exc}"


async def measure_tasq_workers(
    system: System,
    redis_url: str,
    call: Call,
    settings: Settings,
    stack: AsyncExitStack,
    result: SystemResult,
) -> None:
    """Add worker processes on the same topic, one count after another, and measure throughput.

    Each count runs the echo handler and a handler that spends :data:`WORK_CPU_S` of CPU
    per request, and records how busy Redis was meanwhile.
    """
    from .echo_tasq import connect_method

    in_flight = max(settings.levels)
    work = await stack.enter_async_context(connect_method(redis_url, "work"))
    work_call = functools.partial(work, {**PAYLOAD, "cpu_s": WORK_CPU_S})
    redis = await stack.enter_async_context(aioredis.Redis.from_url(redis_url))
    running = 1
    for count in sorted({1, *settings.tasq_workers}):
        if count > running:
            await stack.enter_async_context(
                worker_processes(system.module, count - running, redis_url, settings.loop, settings.log_dir)
            )
            running = count
            # The new workers start listening within a second; until then the running
            # ones take all the tasks, so the warm-up waits them in.
            await asyncio.sleep(2.0)
            await under_load(call, in_flight, WARM_UP_LOAD_S)
        for name, measured, results in (
            ("echo", call, result.workers),
            ("work", work_call, result.cpu_workers),
        ):
            before = await redis_cpu_s(redis)
            results[count] = await under_load(measured, in_flight, settings.seconds)
            result.redis_cpu[name, count] = (await redis_cpu_s(redis) - before) / settings.seconds
        print(
            f"  {count} worker processes: echo {result.workers[count].rate:8.0f} req/s, "
            f"{WORK_CPU_S * 1e6:.0f} us CPU handler {result.cpu_workers[count].rate:8.0f} req/s",
            flush=True,
        )


async def redis_cpu_s(redis: aioredis.Redis) -> float:
    """Return the CPU time Redis has used so far, user and system, in seconds."""
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def measure_scale_out(settings: Settings, redis_cpu_share: float | None) -> ScaleOutResult:
    """Measure throughput with each number of worker processes, on a Redis of its own.

    Every worker serves the ``wait`` handler, which waits :data:`WAIT_S` per request,
    so one worker completes at most its 64 handler slots per ``WAIT_S``, whatever its
    CPU, and more workers can add throughput until something else runs out. With
    ``redis_cpu_share``, Redis is held to that share of one core, which makes it run
    out first. A machine that cannot limit Redis's CPU gets a result saying why.
    """
    from .echo_tasq import TOPIC, connect_method

    result = ScaleOutResult(redis_cpu_share)
    name = "redis-server-unlimited" if redis_cpu_share is None else "redis-server-limited"
    async with AsyncExitStack() as stack:
        redis_url = await stack.enter_async_context(redis_server(settings.log_dir, name))
        redis = await stack.enter_async_context(aioredis.Redis.from_url(redis_url))
        if redis_cpu_share is not None:
            pid = int((await redis.info("server"))["process_id"])
            try:
                stack.enter_context(cpu_limited(pid, redis_cpu_share))
            except CpuLimitUnavailable as exc:
                result.skipped = f"Redis's CPU cannot be limited here: {exc}"
                print(f"  skipping the scale-out run, {describe_share(redis_cpu_share)}: {result.skipped}")
                return result
        wait = await stack.enter_async_context(connect_method(redis_url, "wait"))
        call = functools.partial(wait, {**PAYLOAD, "wait_s": WAIT_S})
        running = 0
        for count in settings.scale_out_workers:
            await stack.enter_async_context(
                worker_processes(
                    "bench.peers.echo_tasq", count - running, redis_url, settings.loop, settings.log_dir
                )
            )
            running = count
            await wait_for_servers(redis, TOPIC, count)
            await under_load(call, SCALE_OUT_IN_FLIGHT, WARM_UP_LOAD_S)
            before = await redis_cpu_s(redis)
            result.loads[count] = await under_load(call, SCALE_OUT_IN_FLIGHT, settings.seconds)
            result.redis_cpu[count] = (await redis_cpu_s(redis) - before) / settings.seconds
            print(
                f"  {count} worker processes, {describe_share(redis_cpu_share)}: "
                f"{result.loads[count].rate:8.0f} req/s, Redis CPU {result.redis_cpu[count]:.0%}",
                flush=True,
            )
    return result


def describe_share(redis_cpu_share: float | None) -> str:
    if redis_cpu_share is None:
        return "Redis unlimited"
    return f"Redis held to {percent(redis_cpu_share)} of a core"


def percent(share: float) -> str:
    """Return ``share`` as a percentage with no more digits than it has: 5%, 0.5%."""
    return f"{share * 100:g}%"


async def wait_for_servers(redis: aioredis.Redis, topic: str, count: int) -> None:
    """Return once ``count`` servers of ``topic`` have announced themselves in Redis."""
    from tasq_fastapi._presence import servers_key

    try:
        async with asyncio.timeout(WORKERS_READY_TIMEOUT_S):
            # Servers announce themselves in a hash, with no event to wait on.
            while await redis.hlen(servers_key(topic)) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise RuntimeError(
            f"{count} tasq-fastapi workers did not all start within {WORKERS_READY_TIMEOUT_S:g} s; "
            "see their log in bench/results/echo_tasq.log."
        ) from None
