"""A worker process for delivery tests: ``python -m tests._lease_worker URL TOPIC COUNTER_KEY``.

It serves method ``work`` on TOPIC with at-least-once delivery and a 0.5 s lease.
Each run increments COUNTER_KEY; the first run prints ``started`` and then blocks,
so that the test can kill the process in the middle of a task. ``ready`` is
printed once the server runs.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from tasq_fastapi import create_tasq

LEASE_S = 0.5


async def main(url: str, topic: str, counter_key: str) -> None:
    async with await create_tasq(url) as tasq:

        async def work(_args: Any) -> str:
            runs = await tasq.redis.incr(counter_key)
            if runs == 1:
                print("started", flush=True)
                await asyncio.Event().wait()
            return f"done after {runs} runs"

        await tasq.serve(topic, {"work": work}, at_least_once=True, lease_s=LEASE_S)
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
