"""A connection taken from a redis-py pool and kept by one owner until it closes.

The server's BLMPOP and the client's batched writes each run in one task, one
command or pipeline at a time. Keeping a connection for them saves the pool's
checkout and return on every call, and lets them read replies without redis-py's
per-command wrapping. Only a plain ``redis.asyncio.Redis`` has a single pool; a
Redis Cluster routes commands per node and keeps its own connections.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection


class DedicatedConnection:
    """One connection of ``redis``'s pool, connected again after a failure.

    The owner calls :meth:`get` before each use and :meth:`drop` after a failed
    one, which closes the connection so that the next :meth:`get` makes it again.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._connection: AbstractConnection | None = None

    async def get(self) -> tuple[AbstractConnection, bool]:
        """Return the connection, connected, and whether it was (re)connected just now."""
        connection = self._connection
        if connection is None:
            # redis-py leaves these two untyped.
            get_connection: Callable[[], Awaitable[AbstractConnection]] = (
                self._redis.connection_pool.get_connection
            )
            self._connection = await get_connection()
            return self._connection, True
        if connection.is_connected:
            return connection, False
        connect: Callable[[], Awaitable[None]] = connection.connect
        await connect()
        return connection, True

    async def drop(self) -> None:
        """Close the connection after a failed use; the next :meth:`get` connects again."""
        if self._connection is not None:
            await self._connection.disconnect()

    async def release(self) -> None:
        """Give the connection back to the pool; call it once nothing uses it."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._redis.connection_pool.release(connection)
