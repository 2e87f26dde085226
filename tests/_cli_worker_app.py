"""An app for the `tasq worker` tests, served by ``tasq worker tests._cli_worker_app:app``.

It serves topic ``$TASQ_CLI_TEST_TOPIC`` from Redis ``$REDIS_URL``. Method ``hold``
takes ``{"id": str, "hold_s": float}``, pushes the id onto the Redis list
``$TASQ_CLI_TEST_STARTED_KEY`` so that a test can wait until it runs, sleeps
``hold_s`` seconds and returns the id. The list expires after an hour.
"""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

from fastapi import Depends

from tasq_fastapi import Tasq, TasqFastAPI, TasqRouter, get_tasq
from tasq_fastapi._redis import execute

_KEY_EXPIRY_S = 3600

router = TasqRouter(os.environ.get("TASQ_CLI_TEST_TOPIC", "test-cli-worker"), threads=2)


@router.method()
async def hold(id: str, hold_s: float, tasq: Annotated[Tasq, Depends(get_tasq)]) -> str:
    started_key = os.environ["TASQ_CLI_TEST_STARTED_KEY"]
    await execute(tasq.redis, "RPUSH", started_key, id)
    await execute(tasq.redis, "EXPIRE", started_key, _KEY_EXPIRY_S)
    await asyncio.sleep(hold_s)
    return id


app = TasqFastAPI(tasq_redis=lambda: os.environ["REDIS_URL"], tasq_grace_s=10.0)
app.include_tasq_router(router)
