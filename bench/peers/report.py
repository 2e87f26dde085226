"""The results table printed after a run, and the Markdown page written from it."""

from __future__ import annotations

from dataclasses import dataclass

from ..memory import PendingMemory
from .runs import (
    PAYLOAD,
    SCALE_OUT_IN_FLIGHT,
    WAIT_S,
    WORK_CPU_S,
    ScaleOutResult,
    Settings,
    SystemResult,
    describe_share,
    percent,
)

TASQ = "tasq-fastapi"


@dataclass(frozen=True)
class Run:
    """Everything one run measured and the context needed to read it."""

    settings: Settings
    command: str
    started_at: str
    duration_s: float
    load_before: str
    load_after: str
    redis_version: str
    ping: SystemResult
    systems: list[SystemResult]
    setups: dict[str, str]
    skipped: dict[str, str]
    packages: dict[str, str]
    machine: list[str]
    revision: str
    """The tasq-fastapi source measured."""
    memory: PendingMemory | None
    """Memory of pending tasq-fastapi requests, when tasq-fastapi ran."""
    scale_out: list[ScaleOutResult]
    """tasq-fastapi's scale-out runs: Redis unlimited, then Redis held to a share of a core."""

    @property
    def top_level(self) -> int:
        return max(self.settings.levels)

    def find(self, name: str) -> SystemResult | None:
        return next((result for result in self.systems if result.name == name), None)


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f}"


def summary_rows(run: Run) -> list[list[str]]:
    """Return the header and one row per system, PING first, as cells of text."""
    top = run.top_level
    header = [
        "system",
        "p50 us",
        "p99 us",
        f"req/s, {top} in flight",
        f"p50 us, {top} in flight",
        f"p99 us, {top} in flight",
        f"tasq req/s ÷ this, {top} in flight",
        f"tasq p99 ÷ this, {top} in flight",
    ]
    tasq = run.find(TASQ)
    rows = [header]
    for result in [run.ping, *run.systems]:
        single, loaded = result.levels[1], result.levels[top]
        rate_ratio = p99_ratio = "-"
        if tasq is not None and result.name != TASQ:
            rate_ratio = f"{tasq.levels[top].rate / loaded.rate:.2f}"
            p99_ratio = f"{tasq.levels[top].p99_s / loaded.p99_s:.2f}"
        rows.append(
            [
                result.name,
                us(single.p50_s),
                us(single.p99_s),
                f"{loaded.rate:,.0f}",
                us(loaded.p50_s),
                us(loaded.p99_s),
                rate_ratio,
                p99_ratio,
            ]
        )
    return rows


def ping_ratio_lines(run: Run) -> list[str]:
    tasq = run.find(TASQ)
    if tasq is None:
        return []
    ping, single = run.ping.levels[1], tasq.levels[1]
    memory = [run.memory.describe()] if run.memory is not None else []
    turns = []
    if tasq.interleaved is not None:
        ping_turn, tasq_turn = tasq.interleaved
        turns.append(
            f"tasq-fastapi sequential p50 = {tasq_turn.p50_s / ping_turn.p50_s:.2f} PING round trips "
            f"measured in turn, one PING then one request, {tasq_turn.requests:,} of each "
            f"(PING p50 {us(ping_turn.p50_s)} us, request p50 {us(tasq_turn.p50_s)} us)"
        )
    return [
        *memory,
        *turns,
        f"tasq-fastapi sequential p50 = {single.p50_s / ping.p50_s:.2f} PING round trips from the "
        f"separate runs of the table (p99 = {single.p99_s / ping.p99_s:.2f})",
        f"tasq-fastapi throughput at {run.top_level} in flight = "
        f"{tasq.levels[run.top_level].rate / run.ping.levels[run.top_level].rate:.3f} of PING throughput",
    ]


def scale_out_rows(run: Run) -> list[list[str]]:
    """Return a table of throughput by worker processes, three columns per scale-out run."""
    measured = [result for result in run.scale_out if result.skipped is None]
    counts = sorted({count for result in measured for count in result.loads})
    header = ["worker processes"]
    for result in measured:
        share = result.redis_cpu_share
        label = "Redis unlimited" if share is None else f"Redis at {percent(share)}"
        header += [f"{label}: req/s", f"{label}: ratio to 1 worker", f"{label}: Redis CPU"]
    rows = [header]
    for count in counts:
        row = [str(count)]
        for result in measured:
            load, first = result.loads.get(count), result.loads.get(counts[0])
            if load is None or first is None:
                row += ["-", "-", "-"]
                continue
            row += [f"{load.rate:,.0f}", f"{load.rate / first.rate:.2f}", f"{result.redis_cpu[count]:.0%}"]
        rows.append(row)
    return rows


def scale_out_lines(run: Run) -> list[str]:
    lines = []
    for result in run.scale_out:
        if result.skipped is not None:
            lines.append(f"scale-out run skipped, {describe_share(result.redis_cpu_share)}: {result.skipped}")
    return lines


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|---" + "|---:" * (len(rows[0]) - 1) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def print_summary(run: Run) -> None:
    print()
    print(text_table(summary_rows(run)))
    print()
    for line in ping_ratio_lines(run):
        print(line)
    if run.scale_out:
        print()
        print(
            f"tasq-fastapi scale-out: a handler waiting {WAIT_S * 1e3:g} ms, {SCALE_OUT_IN_FLIGHT} in flight"
        )
        print(text_table(scale_out_rows(run)))
        for line in scale_out_lines(run):
            print(line)
    for name, reason in run.skipped.items():
        print(f"skipped {name}: {reason}")


def levels_table(run: Run) -> str:
    levels = sorted({level for result in run.systems for level in result.levels})
    rows = [["system", *(f"{level} in flight: p50 / p99 us" for level in levels)]]
    for result in [run.ping, *run.systems]:
        cells = [
            f"{us(result.levels[level].p50_s)} / {us(result.levels[level].p99_s)}"
            if level in result.levels
            else "-"
            for level in levels
        ]
        rows.append([result.name, *cells])
    return markdown_table(rows)


def tasq_tables(run: Run) -> list[str]:
    tasq = run.find(TASQ)
    if tasq is None:
        return []
    top = run.top_level
    work_us = f"{WORK_CPU_S * 1e6:.0f} us"
    worker_rows = [
        [
            "worker processes",
            f"echo: req/s, {top} in flight",
            "echo: p99 us",
            "echo: Redis CPU",
            f"{work_us} CPU handler: req/s",
            f"{work_us} CPU handler: Redis CPU",
        ]
    ]
    for count, load in tasq.workers.items():
        work = tasq.cpu_workers.get(count)
        worker_rows.append(
            [
                str(count),
                f"{load.rate:,.0f}",
                us(load.p99_s),
                f"{tasq.redis_cpu.get(('echo', count), 0.0):.0%}",
                f"{work.rate:,.0f}" if work else "-",
                f"{tasq.redis_cpu.get(('work', count), 0.0):.0%}",
            ]
        )
    payload_rows = [
        [
            "`data` string",
            "sequential p50 us",
            "Redis ECHO p50 us",
            "p50 ÷ ECHO p50",
            f"req/s, {run.settings.payload_in_flight} in flight",
            "MB/s",
        ]
    ]
    for size, (single, loaded) in tasq.payloads.items():
        megabytes = loaded.rate * size / 1e6
        echo = tasq.payload_echo[size]
        payload_rows.append(
            [
                f"{size:,} B",
                us(single.p50_s),
                us(echo.p50_s),
                f"{single.p50_s / echo.p50_s:.2f}",
                f"{loaded.rate:,.0f}",
                f"{megabytes:,.1f}",
            ]
        )
    for size, error in tasq.payload_errors.items():
        payload_rows.append([f"{size:,} B", "failed", "-", "-", error, "-"])
    return [
        *scale_out_section(run),
        "### tasq-fastapi with more worker processes\n",
        f"Throughput with 1 to {max(tasq.workers, default=1)} worker processes serving one topic, each "
        f"running up to {top} handlers at once; the client is the same single process. The echo "
        f"handler does no work of its own; the other handler keeps its worker's CPU busy for {work_us} "
        "per request, as a handler computing its result would. Redis CPU is the share of one core "
        "Redis used during the run (`INFO cpu`), which shows how far Redis is from being the "
        "bottleneck. With the echo handler, one worker and the client already keep the machine's "
        "cores busy, so more workers share the same CPU and split the tasks into smaller takes; the "
        "scale-out runs above separate the workers' capacity from the machine's.\n",
        markdown_table(worker_rows),
        "",
        "### tasq-fastapi with larger args\n",
        f"The args are `{PAYLOAD}` plus a `data` string of the given size; the handler echoes them back, "
        "so each request carries the data both ways; MB/s counts the args one way. The sequential "
        f"p50 comes from {max(1, run.settings.requests // 4):,} requests, timed in turn with as many "
        "Redis `ECHO`s of the same string through `redis.asyncio`, one ECHO then one request. An "
        "ECHO carries the string once each way. A request "
        "carries it through Redis twice each way (client to server and back), so a ratio near 2 "
        "means the data costs no more than moving it does. These runs keep "
        f"{run.settings.payload_in_flight} requests in flight: Redis closes a subscriber whose pending "
        "output exceeds 32 MB (its default `client-output-buffer-limit pubsub 32mb 8mb 60`), and 64 "
        "replies of 1 MB sent to one client at once do exceed it. Replies published while the client "
        "resubscribes are lost, and those requests time out.\n",
        markdown_table(payload_rows),
        "",
    ]


def scale_out_section(run: Run) -> list[str]:
    if not run.scale_out:
        return []
    slots_rate = 64 / WAIT_S
    runs = []
    for result in run.scale_out:
        if result.redis_cpu_share is None:
            runs.append("In the unlimited run, Redis shares the machine's cores with the other processes.")
        else:
            runs.append(
                f"In the limited run, a cgroup CPU quota holds Redis to {percent(result.redis_cpu_share)} "
                "of one core. That stands in for a Redis serving more workers than this machine can "
                "run, and makes Redis the first thing to run out."
            )
    return [
        "### tasq-fastapi scale-out: worker processes until Redis is the bottleneck\n",
        f"Every worker process serves a handler that waits {WAIT_S * 1e3:g} ms per request, as one "
        f"waiting on a database would. With 64 handler slots, one worker completes at most "
        f"{slots_rate:,.0f} requests/s whatever its CPU, so more workers can add throughput until "
        f"something else runs out. The client keeps {SCALE_OUT_IN_FLIGHT} requests in flight, as "
        f"many as 8 workers have handler slots. Each run starts a Redis of its own. {' '.join(runs)} "
        "The ratio to 1 worker divides the throughput by that of one worker in the same run. Once "
        "Redis is at its quota, more workers add much less. What they still add comes from Redis "
        "doing less work per task when it is busy, because more tasks then share each push, take "
        "and pipeline.\n",
        markdown_table(scale_out_rows(run)),
        "",
        *(f"- {line}" for line in scale_out_lines(run)),
        "",
    ]
