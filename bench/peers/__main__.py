"""Run every system against one dedicated redis-server, print the table and write the results page."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import shlex
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis

from tasq_fastapi import create_tasq

from ..memory import PendingMemory, pending_memory
from .cpu_limit import MIN_SHARE
from .machine import load_average, machine_lines, package_version, source_revision
from .page import write_page
from .processes import REPO_ROOT, redis_server
from .report import Run, print_summary
from .runs import (
    ScaleOutResult,
    Settings,
    SystemResult,
    describe_error,
    describe_share,
    measure_ping,
    measure_scale_out,
    measure_system,
)
from .system import System, freeze_start_up_objects

SYSTEMS = ("tasq", "faststream", "taskiq", "arq", "celery")
"""Names of the ``echo_*`` modules, tasq-fastapi first."""

PENDING_REQUESTS = 10_000
"""Requests left pending for the memory measurement."""

SYSTEM_TIMEOUT_S = 300.0
"""Upper bound on the measurements of one system, so that a stuck peer cannot stall the run."""

BENCH_PACKAGES = ("redis", "hiredis", "uvloop", "matplotlib")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="sequential requests timed per system")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each run under load, in s")
    parser.add_argument(
        "--levels", type=int, nargs="+", default=[1, 4, 16, 64], help="requests in flight of the load runs"
    )
    parser.add_argument("--tasq-workers", type=int, nargs="+", default=[1, 2, 4], help="worker processes")
    parser.add_argument(
        "--payload-bytes", type=int, nargs="+", default=[1024, 65536, 1048576], help="args sizes for tasq"
    )
    parser.add_argument(
        "--payload-in-flight", type=int, default=16, help="requests in flight of the tasq args-size runs"
    )
    parser.add_argument(
        "--scale-out-workers",
        type=int,
        nargs="+",
        default=[1, 2, 4, 8],
        help="worker processes of the tasq scale-out runs",
    )
    parser.add_argument(
        "--redis-cpu-share",
        type=float,
        default=0.05,
        help="share of one core Redis gets in the scale-out run that makes it the bottleneck (0 skips it)",
    )
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS), help="systems to run")
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="event loop everywhere"
    )
    parser.add_argument("--docs", type=Path, default=REPO_ROOT / "docs", help="where the page and plot go")
    parser.add_argument("--no-page", action="store_true", help="print the table only; write no page")
    options = parser.parse_args(argv)
    if options.requests < 1 or options.seconds <= 0 or min(options.levels) < 1:
        parser.error("--requests, --seconds and --levels must be positive.")
    if min(options.scale_out_workers) < 1:
        parser.error("--scale-out-workers must be positive.")
    share = options.redis_cpu_share
    if not (share == 0 or MIN_SHARE <= share <= 1):
        parser.error(f"--redis-cpu-share {share:g} is not 0 or a share of one core from {MIN_SHARE:g} to 1.")
    return options


def load_system(name: str) -> System:
    module = importlib.import_module(f"{__package__}.echo_{name}")
    system: System = module.SYSTEM
    return system


async def redis_version(redis_url: str) -> str:
    client = aioredis.Redis.from_url(redis_url)
    try:
        info = await client.info("server")
        return str(info["redis_version"])
    finally:
        await client.aclose()


async def measure_all(options: argparse.Namespace, settings: Settings, command: str) -> Run:
    # The runner, which imported every system's client library, gets the same
    # treatment as the workers.
    freeze_start_up_objects()
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = load_average()
    started = time.perf_counter()
    results: list[SystemResult] = []
    setups: dict[str, str] = {}
    skipped: dict[str, str] = {}
    packages: dict[str, str] = {}
    async with redis_server(settings.log_dir) as redis_url:
        version = await redis_version(redis_url)
        print(f"Redis PING (redis-server {version} at {redis_url})", flush=True)
        ping = await measure_ping(redis_url, settings)
        for name in [name for name in SYSTEMS if name in options.systems]:
            try:
                system = load_system(name)
            except ImportError as exc:
                skipped[name] = f"cannot be imported: {exc}"
                print(f"skipping {name}: {skipped[name]}", flush=True)
                continue
            setups[system.name] = system.setup
            packages.update((package, package_version(package)) for package in system.packages)
            print(system.name, flush=True)
            try:
                async with asyncio.timeout(SYSTEM_TIMEOUT_S):
                    results.append(await measure_system(system, redis_url, settings))
            except Exception as exc:
                # One failing peer should not lose the others' numbers; the reason
                # is printed and listed on the page.
                skipped[system.name] = f"failed: {describe_error(exc)}"
                print(f"skipping {system.name}: {skipped[system.name]}", flush=True)
        memory = await measure_memory(redis_url) if "tasq" in options.systems else None
    scale_out = await measure_all_scale_out(settings) if "tasq" in options.systems else []
    packages.update((package, package_version(package)) for package in BENCH_PACKAGES)
    return Run(
        settings=settings,
        command=command,
        started_at=started_at,
        duration_s=time.perf_counter() - started,
        load_before=load_before,
        load_after=load_average(),
        redis_version=version,
        ping=ping,
        systems=results,
        setups=setups,
        skipped=skipped,
        packages=dict(sorted(packages.items())),
        machine=machine_lines(),
        revision=source_revision(REPO_ROOT),
        memory=memory,
        scale_out=scale_out,
    )


async def measure_all_scale_out(settings: Settings) -> list[ScaleOutResult]:
    print("tasq-fastapi scale-out", flush=True)
    shares: list[float | None] = [None]
    if settings.redis_cpu_share > 0:
        shares.append(settings.redis_cpu_share)
    results = []
    for share in shares:
        try:
            results.append(await measure_scale_out(settings, share))
        except Exception as exc:
            # The runs before this one keep their numbers; the reason goes on the page.
            failed = ScaleOutResult(share, skipped=f"failed: {describe_error(exc)}")
            print(f"  skipping the scale-out run, {describe_share(share)}: {failed.skipped}", flush=True)
            results.append(failed)
    return results


async def measure_memory(redis_url: str) -> PendingMemory:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with await create_tasq(redis) as tasq:
            memory = await pending_memory(tasq, redis, PENDING_REQUESTS)
    finally:
        await redis.aclose()
    print(memory.describe(), flush=True)
    return memory


def interrupt(signal_number: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> None:
    options = parse_args(argv)
    # SIGTERM then ends the run as Ctrl-C does: the event loop cancels the
    # measurements and every process started so far is stopped on the way out.
    signal.signal(signal.SIGTERM, interrupt)
    log_dir = REPO_ROOT / "bench" / "results"
    log_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        requests=options.requests,
        seconds=options.seconds,
        levels=tuple(sorted(set(options.levels) | {1})),
        tasq_workers=tuple(options.tasq_workers),
        payload_bytes=tuple(options.payload_bytes),
        payload_in_flight=options.payload_in_flight,
        loop=options.loop,
        log_dir=log_dir,
        scale_out_workers=tuple(sorted(set(options.scale_out_workers))),
        redis_cpu_share=options.redis_cpu_share,
    )
    command = shlex.join(["scripts/bench", *argv])
    coroutine = measure_all(options, settings, command)
    if options.loop == "uvloop":
        import uvloop

        run = uvloop.run(coroutine)
    else:
        run = asyncio.run(coroutine)
    print_summary(run)
    if not options.no_page:
        write_page(run, options.docs)
        print(f"\nwrote {options.docs / 'benchmarks.md'} and its plot; worker logs are in {log_dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
