"""A connection of its own for one owner, made with a redis-py pool's settings.

The server's BLMPOP and the client's batched writes each run in one task, one
command or pipeline at a time. A connection of their own saves the pool's checkout
and return on every call. It also lets them bound a whole batch with one timeout,
where redis-py applies ``socket_timeout`` to every write and every reply, and on
Python 3.11 starts a task for each timed write. Only a plain
``redis.asyncio.Redis`` has a single pool; a Redis Cluster routes commands per node
and keeps its own connections.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection


class DedicatedConnection:
    """One connection made by ``redis``'s pool but not kept in it, connected again after a failure.

    The owner calls :meth:`get` before each use and :meth:`drop` after a failed one,
    which closes the connection so that the next :meth:`get` makes it again. Reads
    and writes on it have no timeout of their own: the owner bounds them, with
    :attr:`timeout_s` where it has no better bound. Connecting still uses the pool's
    ``socket_timeout``.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._connection: AbstractConnection | None = None
        self._timeout_s: float | None = None

    @property
    def timeout_s(self) -> float | None:
        """The pool's ``socket_timeout`` in seconds, or None when it has none."""
        return self._timeout_s

    async def get(self) -> tuple[AbstractConnection, bool]:
        """Return the connection, connected, and whether it was (re)connected just now."""
        connection = self._connection
        if connection is None:
            # redis-py leaves make_connection() and connect() untyped.
            make_connection: Callable[[], AbstractConnection] = self._redis.connection_pool.make_connection
            connection = make_connection()
            self._timeout_s = connection.socket_timeout
            self._connection = connection
        elif connection.is_connected:
            return connection, False

        # The handshake (AUTH, HELLO, SELECT) keeps the pool's timeout.
        connection.socket_timeout = self._timeout_s
        try:
            connect: Callable[[], Awaitable[None]] = connection.connect
            await connect()
        finally:
            connection.socket_timeout = None
        return connection, True

    async def drop(self) -> None:
        """Close the connection after a failed use; the next :meth:`get` connects again."""
        if self._connection is not None:
            await self._connection.disconnect()

    async def aclose(self) -> None:
        """Close the connection for good; call it once nothing uses it."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect()
