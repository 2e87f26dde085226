"""Scaling out on one Redis: several worker processes per topic, and what each request costs Redis.

The command-cost test prints the commands per request it measured (``pytest -s``);
it asserts only the counts that the code fixes, such as one reply per request.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tasq_fastapi import create_tasq
from tasq_fastapi._leases import leases_key
from tests._processes import WorkerProcess
from tests._redis_servers import RedisProcess
from tests._waiting import wait_until

WORKERS = 4
TASKS = 2000

# Each worker's handler keeps a task this long, so that no single worker can drain
# the queue before the others take their share.
HOLD_S = 0.01

# Timeout of each request, in seconds: far above the few seconds the whole run takes.
REQUEST_TIMEOUT_S = 60.0


async def echo(args: Any) -> Any:
    return args


async def test_processes_four_workers_share_tasks(
    redis_url: str, redis_client: aioredis.Redis, topic: str, tmp_path: Path
) -> None:
    runs_key = f"{topic}:runs"
    started_key = f"{topic}:started"
    workers = [
        WorkerProcess(
            url=redis_url,
            topic=topic,
            runs_key=runs_key,
            started_key=started_key,
            log_path=tmp_path / f"worker-{index}.log",
            threads=4,
        )
        for index in range(WORKERS)
    ]
    try:
        await asyncio.gather(*(worker.start() for worker in workers))
        async with await create_tasq(redis_url) as tasq:
            replies = await asyncio.gather(
                *(
                    tasq.request(topic, "work", {"id": str(i), "hold_s": HOLD_S}, timeout=REQUEST_TIMEOUT_S)
                    for i in range(TASKS)
                )
            )
        runs = await redis_client.hgetall(runs_key)
        starts = await redis_client.llen(started_key)
    finally:
        for worker in workers:
            await worker.kill()
        await redis_client.delete(runs_key, started_key)

    tasks_per_pid = Counter(reply["pid"] for reply in replies)
    print(f"\n{TASKS} tasks over {WORKERS} worker processes: {sorted(tasks_per_pid.values())}")
    assert [reply["id"] for reply in replies] == [str(i) for i in range(TASKS)]
    assert len(runs) == TASKS
    assert set(runs.values()) == {b"1"}
    assert starts == TASKS
    assert set(tasks_per_pid) == {worker.pid for worker in workers}
    assert min(tasks_per_pid.values()) >= TASKS // 10


async def command_calls(client: aioredis.Redis) -> Counter[str]:
    """Return the calls per command since the last ``CONFIG RESETSTAT``, without that one."""
    stats = await client.info("commandstats")
    calls = Counter({name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()})
    del calls["config|resetstat"]
    return calls


async def measure_commands(url: str, *, requests: int, in_flight: int, at_least_once: bool) -> Counter[str]:
    """Send ``requests`` echo requests, ``in_flight`` at a time, and return the commands Redis ran.

    Server and client are two Tasq clients, as in two services. Counting starts
    after both have started, so it covers the requests and whatever ran in the
    background meanwhile (health-check PINGs, idle LPOPs, lease renewals).
    """
    topic = f"test-cost-{uuid.uuid4().hex}"
    async with (
        aioredis.Redis.from_url(url) as stats_client,
        await create_tasq(url) as server_side,
        await create_tasq(url) as client_side,
    ):
        await server_side.serve(topic, {"echo": echo}, threads=64, at_least_once=at_least_once)
        await client_side.request(topic, "echo", -1)
        # A lease ends in a write after the reply's, so a caller can have its result
        # before the lease set is empty.
        await wait_until(lambda: _no_leases(stats_client, topic))
        await stats_client.config_resetstat()

        for start in range(0, requests, in_flight):
            batch = range(start, min(start + in_flight, requests))
            results = await asyncio.gather(*(client_side.request(topic, "echo", i) for i in batch))
            assert results == list(batch)

        await wait_until(lambda: _no_leases(stats_client, topic))
        calls = await command_calls(stats_client)
    # The test's own reads.
    del calls["info"]
    calls.pop("zcard", None)
    return calls


async def test_delivery_cost_commands_per_request(redis_process: RedisProcess) -> None:
    cases = [
        ("at-most-once, sequential", 200, 1, False),
        ("at-most-once, 64 in flight", 2000, 64, False),
        ("at-least-once, sequential", 200, 1, True),
        ("at-least-once, 64 in flight", 2000, 64, True),
    ]
    report: list[str] = []
    measured: dict[str, Counter[str]] = {}
    for label, requests, in_flight, at_least_once in cases:
        calls = await measure_commands(
            redis_process.url, requests=requests, in_flight=in_flight, at_least_once=at_least_once
        )
        measured[label] = calls
        per_request = ", ".join(f"{name} {count / requests:.3f}" for name, count in sorted(calls.items()))
        report.append(f"{label} ({requests} requests): total {calls.total() / requests:.3f}: {per_request}")
    print("\ncommands per request, from INFO commandstats:\n" + "\n".join(report))

    for label, requests, _in_flight, at_least_once in cases:
        calls = measured[label]
        # One reply per request, plus at most one notification per push.
        assert calls["publish"] >= requests, label
        assert calls["publish"] <= 2 * requests, label
        assert calls["evalsha"] + calls["eval"] <= (2 * requests if at_least_once else requests), label
        if at_least_once:
            assert calls["zrem"] == requests, label
            assert calls["lpop"] <= calls["zadd"], label
        else:
            assert calls["zadd"] == 0, label
            assert calls["zrem"] == 0, label


async def test_delivery_cost_idle_server_commands(redis_process: RedisProcess) -> None:
    lease_s = 0.6
    renewals = 6
    topic = f"test-idle-{uuid.uuid4().hex}"
    async with (
        aioredis.Redis.from_url(redis_process.url) as stats_client,
        await create_tasq(redis_process.url) as server_side,
    ):
        await server_side.serve(topic, {"echo": echo}, at_least_once=True, lease_s=lease_s)
        await stats_client.config_resetstat()
        started = asyncio.get_running_loop().time()

        # Every renewal runs ZRANGEBYSCORE once; a take runs PTTL once.
        await wait_until(lambda: _calls_at_least(stats_client, "zrangebyscore", renewals))
        elapsed_s = asyncio.get_running_loop().time() - started
        calls = await command_calls(stats_client)
    del calls["info"]

    per_second = ", ".join(f"{name} {count / elapsed_s:.2f}" for name, count in sorted(calls.items()))
    print(f"\nidle at-least-once server, lease_s={lease_s}, over {elapsed_s:.2f} s: per second {per_second}")
    assert calls["zrem"] == 0
    assert calls["publish"] == 0


async def _no_leases(client: aioredis.Redis, topic: str) -> bool:
    return bool(await client.zcard(leases_key(topic)) == 0)


async def _calls_at_least(client: aioredis.Redis, command: str, expected: int) -> bool:
    return (await command_calls(client))[command] >= expected
