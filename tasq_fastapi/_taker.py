"""Taking tasks with BLMPOP, so that a pushed task reaches an idle server at once.

A server that waits for a notification and then sends ``LPOP`` pays two trips
through Redis before it receives a task: the notification, then the LPOP's round trip.
A server blocked in ``BLMPOP`` gets the task in the reply Redis sends as soon as the
task is pushed, which saves one round trip on every request that finds the server
idle. The blocked connection is the server's own for its whole life
(:class:`DedicatedConnection`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoPermissionError, RedisError, ResponseError

from ._dedicated import DedicatedConnection
from ._redis import execute
from ._tasks import wait_for_reply

logger = logging.getLogger(__name__)

# Time a reply may take beyond the BLMPOP's own timeout before the connection is
# treated as dead, in seconds, unless the pool's socket_timeout is shorter.
_READ_MARGIN_S = 2.0

# Shortest BLMPOP timeout sent, in seconds.
_MIN_BLOCK_S = 0.01


class BlockingTaker:
    """Takes up to ``count`` tasks of the list ``key`` per call with ``BLMPOP``.

    Each call blocks up to ``block_s`` seconds while the list is empty, or half the
    pool's ``socket_timeout`` when that is shorter. The taker
    has a connection of its own until :meth:`aclose`. When that
    connection fails, the failing call raises and the next call connects again.
    """

    def __init__(self, redis: aioredis.Redis, key: str, block_s: float) -> None:
        self._redis = redis
        self._key = key
        self._block_s = block_s
        self._connection = DedicatedConnection(redis)
        # Redis's id of the blocked connection, for CLIENT UNBLOCK; None when this
        # user may not run CLIENT ID.
        self._client_id: int | None = None
        self._warned_slow_close = False

    async def take(self, count: int) -> list[bytes]:
        """Return up to ``count`` tasks, or none after ``block_s`` seconds without any.

        Raises ``redis.exceptions.NoPermissionError`` when the Redis user may not run
        BLMPOP, and other ``RedisError`` or ``OSError`` when Redis fails.
        """
        connection, connected = await self._connection.get()
        block_s, margin_s = self._bounds_s()
        command = ("BLMPOP", block_s, 1, self._key, "LEFT", "COUNT", count)
        try:
            if connected:
                self._client_id = await wait_for_reply(_client_id(connection), self._connection.timeout_s)
                if self._client_id is None:
                    self._warn_slow_close("Redis denies CLIENT ID")
            # A dead connection never replies: the BLMPOP gets its own time plus a margin.
            reply: Any = await wait_for_reply(_blmpop(connection, command), block_s + margin_s)
        except BaseException:
            await self._connection.drop()
            raise
        if reply is None:
            return []
        _key, items = reply
        return list(items)

    def _bounds_s(self) -> tuple[float, float]:
        # With a socket_timeout, the time the user allows a reply to take, a BLMPOP and
        # its margin fit in it, so that a dead connection is noticed as soon as with
        # any other command. Redis reads a BLMPOP timeout that rounds to 0 ms as
        # "forever", hence the floor.
        timeout_s = self._connection.timeout_s
        if timeout_s is None:
            return self._block_s, _READ_MARGIN_S
        half_s = timeout_s / 2
        return max(_MIN_BLOCK_S, min(self._block_s, half_s)), min(_READ_MARGIN_S, half_s)

    async def interrupt(self) -> None:
        """Make a blocked :meth:`take` return at once, where the Redis user may.

        Without the CLIENT ID and CLIENT UNBLOCK permissions the take returns when
        its ``block_s`` runs out instead.
        """
        if self._client_id is None:
            return
        try:
            await execute(self._redis, "CLIENT", "UNBLOCK", self._client_id, "TIMEOUT")
        except NoPermissionError:
            self._warn_slow_close("Redis denies CLIENT UNBLOCK")
        except (RedisError, OSError) as exc:
            logger.debug("CLIENT UNBLOCK for the connection of %s failed: %r", self._key, exc)

    def _warn_slow_close(self, reason: str) -> None:
        if self._warned_slow_close:
            return
        self._warned_slow_close = True
        logger.warning(
            "%s to this Redis user, so a closing server of %s waits up to %g s for its BLMPOP "
            "to end. Grant +client|id +client|unblock to end it at once.",
            reason,
            self._key,
            self._block_s + _READ_MARGIN_S,
        )

    async def aclose(self) -> None:
        """Close the taker's connection; call it once no take is running."""
        await self._connection.aclose()


async def _blmpop(connection: AbstractConnection, command: tuple[Any, ...]) -> Any:
    await connection.send_command(*command, check_health=False)
    return await connection.read_response(timeout=math.inf)


async def _client_id(connection: AbstractConnection) -> int | None:
    try:
        await connection.send_command("CLIENT", "ID", check_health=False)
        return int(await connection.read_response(timeout=math.inf))
    except ResponseError:
        return None
