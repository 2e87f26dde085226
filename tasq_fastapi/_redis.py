"""Small typed helpers around redis-py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ._connect import RedisClient


async def execute(redis: RedisClient, *args: Any) -> Any:
    """Run one Redis command and return its raw reply.

    redis-py's command methods are typed for its sync and async clients at once;
    going through ``execute_command`` keeps the call sites typed and simple.
    """
    command: Callable[..., Awaitable[Any]] = redis.execute_command
    return await command(*args)
