"""Soak test: a client and a server under steady load, watching the process's memory.

Run from the repository root::

    python -m bench.soak [--redis-url URL] [--duration-s 60] [--sample-every-s 5] [--in-flight 32]

One process runs a server and a client, each a Tasq of its own, and keeps
``--in-flight`` requests going: most succeed, some are rejected by the handler and
some time out while the handler is still running. Every ``--sample-every-s`` seconds it
prints the resident set size (from ``/proc/self/statm``, so Linux only), the memory
that tracemalloc traces as allocated by Python, and the request counts. At the end it fits a
line through the samples taken after the warm-up and prints whether memory stayed
flat: the fitted growth over the measured span must stay under ``--tolerance-mib``.
The exit status is 0 when memory stayed flat and every request was accounted for,
1 otherwise. Keys are under a topic of this run's own and expire on their own.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
import tracemalloc
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tasq_fastapi import (
    TasqRequestRejectedError,
    TasqRequestTimeoutError,
    create_tasq,
)

DEFAULT_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

_MIB = 1024 * 1024

# Requests of the "slow" kind: the handler outlives the caller's timeout.
_SLOW_TIMEOUT_S = 0.02
_SLOW_HANDLER_S = 0.05


@dataclass(slots=True)
class Sample:
    """One memory reading; ``elapsed_s`` counts from the start of the load."""

    elapsed_s: float
    rss_bytes: int
    traced_bytes: int
    requests: int


def resident_set_bytes() -> int:
    """Return this process's resident set size, read from /proc/self/statm."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def growth_per_second(samples: list[Sample], field: str) -> float:
    """Return the least-squares slope of ``field`` over time, in bytes per second."""
    times = [sample.elapsed_s for sample in samples]
    values = [float(getattr(sample, field)) for sample in samples]
    mean_t = sum(times) / len(times)
    mean_v = sum(values) / len(values)
    spread = sum((t - mean_t) ** 2 for t in times)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True)) / spread


async def echo(args: Any) -> Any:
    return args


async def fail(_args: Any) -> None:
    raise ValueError("rejected on purpose by the soak test")


async def slow(_args: Any) -> None:
    await asyncio.sleep(_SLOW_HANDLER_S)


class Load:
    """Keeps ``in_flight`` requests going until stopped and counts their outcomes."""

    def __init__(self, tasq: Any, topic: str, in_flight: int) -> None:
        self._tasq = tasq
        self._topic = topic
        self._in_flight = in_flight
        self.outcomes: Counter[str] = Counter()
        self.unexpected: list[BaseException] = []

    async def run(self, stop_at: float) -> None:
        await asyncio.gather(*(self._caller(index, stop_at) for index in range(self._in_flight)))

    async def _caller(self, index: int, stop_at: float) -> None:
        sequence = 0
        while time.monotonic() < stop_at:
            sequence += 1
            kind = sequence % 20
            try:
                if kind == 0:
                    await self._tasq.request(self._topic, "fail", index)
                elif kind == 1:
                    await self._tasq.request(self._topic, "slow", index, timeout=_SLOW_TIMEOUT_S)
                else:
                    payload = {"caller": index, "sequence": sequence, "pad": "x" * 200}
                    if await self._tasq.request(self._topic, "echo", payload) != payload:
                        raise AssertionError(f"caller {index} got another request's reply")
                    self.outcomes["ok"] += 1
            except TasqRequestRejectedError:
                self.outcomes["rejected"] += 1
            except TasqRequestTimeoutError:
                self.outcomes["timeout"] += 1
            except Exception as exc:
                self.outcomes["unexpected"] += 1
                self.unexpected.append(exc)


async def soak(options: argparse.Namespace) -> bool:
    topic = f"soak-{uuid.uuid4().hex}"
    if options.tracemalloc:
        tracemalloc.start()

    async with (
        await create_tasq(options.redis_url) as server_side,
        await create_tasq(options.redis_url) as client,
    ):
        server = await server_side.serve(topic, {"echo": echo, "fail": fail, "slow": slow}, threads=64)
        load = Load(client, topic, options.in_flight)
        started = time.monotonic()
        load_task = asyncio.create_task(load.run(started + options.duration_s))

        samples: list[Sample] = []
        print(f"soak: topic={topic} duration={options.duration_s:g} s in_flight={options.in_flight}")
        print(f"{'elapsed_s':>9} {'rss_mib':>8} {'traced_mib':>10} {'requests':>9}")
        while not load_task.done():
            await asyncio.wait({load_task}, timeout=options.sample_every_s)
            sample = Sample(
                elapsed_s=time.monotonic() - started,
                rss_bytes=resident_set_bytes(),
                traced_bytes=tracemalloc.get_traced_memory()[0] if options.tracemalloc else 0,
                requests=load.outcomes.total(),
            )
            samples.append(sample)
            print(
                f"{sample.elapsed_s:9.1f} {sample.rss_bytes / _MIB:8.1f} "
                f"{sample.traced_bytes / _MIB:10.2f} {sample.requests:9d}"
            )
        await load_task
        pending_after = client.pending_count
        running_after = server.running

    return report(options, samples, load, pending_after, running_after)


def report(
    options: argparse.Namespace, samples: list[Sample], load: Load, pending_after: int, running_after: int
) -> bool:
    measured = [sample for sample in samples if sample.elapsed_s >= options.warm_up_s]
    if len(measured) < 2:
        print(f"Too few samples after the {options.warm_up_s:g} s warm-up; run longer.")
        return False

    span_s = measured[-1].elapsed_s - measured[0].elapsed_s
    rss_growth = growth_per_second(measured, "rss_bytes") * span_s
    traced_growth = growth_per_second(measured, "traced_bytes") * span_s
    rate = load.outcomes.total() / max(samples[-1].elapsed_s, 1e-9)
    print(f"outcomes: {dict(load.outcomes)} ({rate:.0f} requests/s)")
    print(
        f"fitted growth over {span_s:.0f} s after warm-up: rss {rss_growth / _MIB:+.2f} MiB, "
        f"traced {traced_growth / _MIB:+.2f} MiB (tolerance {options.tolerance_mib:g} MiB)"
    )
    print(f"pending requests after the run: {pending_after}; handlers still running: {running_after}")

    flat = rss_growth <= options.tolerance_mib * _MIB and traced_growth <= options.tolerance_mib * _MIB
    clean = pending_after == 0 and not load.unexpected
    for exc in load.unexpected[:5]:
        print(f"unexpected error: {exc!r}")
    print("memory: flat" if flat else "memory: GROWING")
    return flat and clean


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="Redis URL (default: $REDIS_URL)")
    parser.add_argument("--duration-s", type=float, default=60.0, help="load duration in seconds")
    parser.add_argument("--sample-every-s", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument(
        "--warm-up-s", type=float, default=10.0, help="seconds of samples left out of the fit"
    )
    parser.add_argument("--in-flight", type=int, default=32, help="requests kept in flight at once")
    parser.add_argument(
        "--tolerance-mib", type=float, default=4.0, help="maximum fitted memory growth, in MiB"
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show the library's log lines, which otherwise hide the rejections and timeouts of the load",
    )
    parser.add_argument(
        "--no-tracemalloc",
        dest="tracemalloc",
        action="store_false",
        help="do not trace Python allocations (tracing slows the process down)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    options = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO if options.verbose else logging.CRITICAL)
    return 0 if asyncio.run(soak(options)) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
