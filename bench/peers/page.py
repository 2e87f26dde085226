"""The Markdown page of a run and its latency plot."""

# The repository's .venv, whose mypy checks all of bench/, does not install the
# peers; there their imports resolve to Any instead of failing the check.
# mypy: disable-error-code="import-not-found"

from __future__ import annotations

from pathlib import Path

from .report import Run, levels_table, markdown_table, ping_ratio_lines, summary_rows, tasq_tables

PLOT_NAME = "benchmarks-latency.png"


def plot_latency(run: Run, path: Path) -> None:
    """Draw p50 (solid) and p99 (dashed) latency against requests in flight for every system."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(8, 5), dpi=120)
    for index, result in enumerate([run.ping, *run.systems]):
        color = f"C{index}"
        levels = sorted(result.levels)
        p50 = [result.levels[level].p50_s * 1e3 for level in levels]
        p99 = [result.levels[level].p99_s * 1e3 for level in levels]
        axes.plot(levels, p50, color=color, marker="o", label=f"{result.name} p50")
        axes.plot(levels, p99, color=color, marker="o", linestyle="--", label=f"{result.name} p99")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xticks(list(run.settings.levels), [str(level) for level in run.settings.levels])
    axes.set_xlabel("requests in flight")
    axes.set_ylabel("latency, ms (log scale)")
    axes.set_title("Echo round trip through one Redis: p50 (solid) and p99 (dashed)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def render_page(run: Run) -> str:
    settings = run.settings
    top = run.top_level
    lines = [
        "# Benchmarks",
        "",
        f"The numbers on this page come from one run of `{run.command}` started at {run.started_at}, "
        f"which took {run.duration_s / 60:.1f} minutes on the machine described below. Every system "
        "used the same `redis-server`, started for the run on a free loopback port without "
        "persistence. They are one sample each: rerun the command before relying on a small difference.",
        "",
        "## What was measured",
        "",
        f"Each system runs an echo handler that returns its args (`{{'id': 1, 'name': 'bench'}}`) in "
        "one worker process, started as a separate process as it would be deployed; the client runs "
        f"in the runner process on the `{settings.loop}` event loop. After a warm-up, the runner "
        f"times {settings.requests:,} sequential requests (p50 and p99), then keeps 4, 16 and "
        f"{top} requests in flight for {settings.seconds:g} s each and times every request. "
        f"Throughput is the number of requests completed per second with {top} in flight. A plain "
        "Redis PING through `redis.asyncio` is measured the same way as the unit of latency. A "
        "PING's latency alone differs from one run to the next on a shared machine (p50 from 70 to "
        "150 us here). So tasq-fastapi's sequential requests are also timed in turn with PINGs, one "
        "PING then one request, and the ratio of their p50s compares the two under the same machine "
        "state.",
        "",
        "## Results",
        "",
        markdown_table(summary_rows(run)),
        "",
        "Ratios above 1 in the throughput column mean tasq-fastapi completed more requests; ratios "
        "below 1 in the p99 column mean its slowest requests were faster.",
        "",
        *(f"- {line}" for line in ping_ratio_lines(run)),
        "",
        "The memory figure counts what the runner's client uses while 10,000 requests to a topic "
        "that no server serves wait for their replies (tracemalloc, `bench/memory.py`). The "
        "callers' own asyncio tasks are measured apart, as the same number of callers awaiting a "
        "plain future.",
        "",
        "## Latency against requests in flight",
        "",
        f"![p50 and p99 latency against requests in flight]({PLOT_NAME})",
        "",
        levels_table(run),
        "",
        *tasq_tables(run),
        "## How each system was set up",
        "",
        *(f"- **{name}**: {setup}" for name, setup in run.setups.items()),
        "",
        "Every worker runs up to 64 tasks at once, so none of them queues requests for lack of "
        "handler slots. Every worker process, and the runner, calls `gc.collect()` and "
        "`gc.freeze()` once it has started, so that full garbage collections under load skip the "
        "objects their libraries created at import. Without it, such a collection paused a process "
        "for 30 to 50 ms every few seconds. `tasq worker` does the same. The polling intervals of "
        "taskiq and arq are their smallest useful settings; at 1 ms each idle client or worker sends "
        "Redis about 1,000 commands a second.",
        "",
        *skipped_section(run),
        "## Machine and software",
        "",
        *(f"- {line}" for line in run.machine),
        f"- Redis: redis-server {run.redis_version}",
        f"- tasq-fastapi source: {run.revision}",
        f"- Load average (1, 5, 15 min) before the run: {run.load_before}; after it: {run.load_after}. "
        "The client, the worker processes and Redis share the machine's cores, with whatever else "
        "was running.",
        "",
        "| package | version |",
        "|---|---|",
        *(f"| {name} | {version} |" for name, version in run.packages.items()),
        "",
        "## Reproducing",
        "",
        "```sh",
        run.command,
        "```",
        "",
        "`scripts/bench --help` lists the options; `bench/README.md` describes the code.",
        "",
    ]
    return "\n".join(lines)


def skipped_section(run: Run) -> list[str]:
    if not run.skipped:
        return []
    lines = ["## Skipped", ""]
    lines += [f"- **{name}**: {reason}" for name, reason in run.skipped.items()]
    return [*lines, ""]


def write_page(run: Run, docs_dir: Path) -> None:
    docs_dir.mkdir(parents=True, exist_ok=True)
    plot_latency(run, docs_dir / PLOT_NAME)
    (docs_dir / "benchmarks.md").write_text(render_page(run))
