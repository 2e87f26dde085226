"""Coalesces Redis writes issued close together into one pipelined round trip.

Requests, replies and other small writes do not go to Redis one by one: they are
queued here, and one owned task writes everything queued so far, up to 4 MiB of
payload, in a single pipeline. While that pipeline is in flight, new writes queue up
for the next one, so the batch size grows with the load and a lone request still
costs a single round trip.

A batch carries at most half of the client's requests in flight (and at least 8).
Written all at once, a client's requests reach a server as one group. The server
takes and runs them all while the client waits, then the client handles every reply
while the server waits, so each side is idle half the time. Two groups keep both
busy: a server works on one while the client handles the replies of the other.

A request becomes one ``EVALSHA`` of :data:`PUSH_SCRIPT` per topic and batch, which
appends every queued task, extends the list's expiry without ever shortening it and
publishes one notification, atomically.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from ._connect import RedisClient
from ._dedicated import DedicatedConnection
from ._tasks import wait_for_reply

logger = logging.getLogger(__name__)

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # the hiredis extra is not installed
    _hiredis_pack = None

# KEYS[1] is the topic's list, ARGV[1] the expiry in milliseconds, ARGV[2..] the tasks.
# PEXPIRE NX gives a new list its expiry, PEXPIRE GT only ever extends it, so a short
# request never shortens the life of a longer one queued before it. Both options need
# Redis 7.0. The empty PUBLISH matches what Node.js clients send.
PUSH_SCRIPT = """
local length = redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1], 'NX')
redis.call('PEXPIRE', KEYS[1], ARGV[1], 'GT')
redis.call('PUBLISH', KEYS[1], '')
return length
"""

# Lua's unpack() is limited by the C stack (about 8,000 values); stay well below it.
_MAX_TASKS_PER_PUSH = 1000

# Payload bytes in one batch, beyond which the rest waits for the next batch. Packing
# and sending hundreds of megabytes at once would hold the event loop for seconds.
_MAX_BATCH_BYTES = 4 * 1024 * 1024

# Minimum number of pushes per batch, whatever the requests in flight. Below it,
# splitting costs more round trips than the overlap saves (an estimate).
_MIN_PUSHES_PER_BATCH = 8


@dataclass(slots=True)
class _Push:
    key: str
    payload: bytes
    deadline_unix_ms: float
    waiter: asyncio.Future[Any]


@dataclass(slots=True)
class _Command:
    args: tuple[Any, ...]
    waiter: asyncio.Future[Any]


class CommandBatcher:
    """Writes queued pushes and other commands in one pipeline per loop round.

    A push's ``waiter`` is the future the caller awaits for its reply: it only gets
    an exception here, when the write fails. A push whose waiter is already done
    (the caller gave up) is not written at all. ``in_flight`` returns the number of
    the client's requests awaiting a reply; a batch carries at most half of them.
    """

    def __init__(self, redis: RedisClient, in_flight: Callable[[], int] = lambda: 0) -> None:
        self._redis = redis
        self._in_flight = in_flight
        # A Redis Cluster needs redis-py's pipeline, which sends each command to its node.
        self._connection = None if isinstance(redis, RedisCluster) else DedicatedConnection(redis)
        self._writing = False
        self._pushes: list[_Push] = []
        self._commands: list[_Command] = []
        self._wakeup = asyncio.Event()
        self._script_sha = ""

    def push(self, key: str, payload: bytes, deadline_unix_ms: float, waiter: asyncio.Future[Any]) -> None:
        """Queue a task for the list ``key``; a write error is set on ``waiter``."""
        self._pushes.append(_Push(key, payload, deadline_unix_ms, waiter))
        self._wakeup.set()

    def command(self, *args: Any) -> asyncio.Future[Any]:
        """Queue any Redis command; the returned future gets its reply or its error."""
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._commands.append(_Command(args, waiter))
        self._wakeup.set()
        return waiter

    async def run(self) -> None:
        """Write batches until cancelled; meant to run as an owned background task."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self._write_queued()

    async def _write_queued(self) -> None:
        # A helper frame, so that no reference to a written batch's payloads stays
        # alive while the loop waits for the next one. Pushes whose callers gave up are
        # dropped before the limit is counted, because they are no longer in flight.
        live = [push for push in self._pushes if not push.waiter.done()]
        limit = max(_MIN_PUSHES_PER_BATCH, self._in_flight() // 2)
        pushes, self._pushes, used = _split(live, _push_bytes, _MAX_BATCH_BYTES, limit)
        commands, self._commands, _ = _split(self._commands, _command_bytes, _MAX_BATCH_BYTES - used)
        if self._pushes or self._commands:
            self._wakeup.set()
        await self._write(pushes, commands)

    def fail_queued(self, error: BaseException) -> None:
        """Fail every queued write with ``error``; used when the client closes."""
        for push in self._pushes:
            _set_exception(push.waiter, error)
        for command in self._commands:
            _set_exception(command.waiter, error)
        self._pushes, self._commands = [], []

    async def _write(self, pushes: list[_Push], commands: list[_Command]) -> None:
        groups = _group_pushes(pushes)
        if not groups and not commands:
            return

        try:
            await self._execute(groups, commands)
        except asyncio.CancelledError:
            error: BaseException = ConnectionError("the Tasq client was closed during the write")
            self._fail(groups, commands, error)
            raise
        except Exception as exc:
            # Every waiter gets the error; the callers decide what to report.
            self._fail(groups, commands, exc)

    async def _execute(self, groups: list[list[_Push]], commands: list[_Command]) -> None:
        if not self._script_sha:
            sha = await self._redis.script_load(PUSH_SCRIPT)
            self._script_sha = sha.decode() if isinstance(sha, bytes) else str(sha)

        results = await self._send(groups, commands, use_sha=True)
        missing = [i for i, result in enumerate(results[: len(groups)]) if isinstance(result, NoScriptError)]
        if missing:
            # Redis lost its script cache (a restart or SCRIPT FLUSH): send the script
            # body for those groups, which also caches it again.
            retried = await self._send([groups[i] for i in missing], [], use_sha=False)
            for i, result in zip(missing, retried, strict=True):
                results[i] = result

        _settle_pushes(groups, results[: len(groups)])
        _settle_commands(commands, results[len(groups) :])

    async def _send(self, groups: list[list[_Push]], commands: list[_Command], *, use_sha: bool) -> list[Any]:
        now_ms = time.time() * 1000
        batch: list[tuple[Any, ...]] = []
        for group in groups:
            ttl_ms = max(1, math.ceil(max(push.deadline_unix_ms for push in group) - now_ms))
            payloads = [push.payload for push in group]
            if use_sha:
                batch.append(("EVALSHA", self._script_sha, 1, group[0].key, ttl_ms, *payloads))
            else:
                batch.append(("EVAL", PUSH_SCRIPT, 1, group[0].key, ttl_ms, *payloads))
        batch.extend(command.args for command in commands)
        if self._connection is None:
            pipe = self._redis.pipeline(transaction=False)
            for args in batch:
                pipe.execute_command(*args)
            return list(await pipe.execute(raise_on_error=False))
        return await self._send_direct(self._connection, batch)

    async def _send_direct(self, dedicated: DedicatedConnection, batch: list[tuple[Any, ...]]) -> list[Any]:
        # A connection that has waited since its last batch may have been closed by a
        # Redis restart, which only shows when it is used. Such a batch is sent once
        # more on a new connection, as redis-py's own retry would. A batch that fails
        # on a new connection fails its callers.
        self._writing = True
        try:
            connection, connected = await dedicated.get()
            try:
                return await _write_or_drop(dedicated, connection, batch)
            except RedisConnectionError as exc:
                if connected:
                    raise
                logger.info("Redis connection for writes was lost (%r); sending the batch again.", exc)
            connection, _ = await dedicated.get()
            return await _write_or_drop(dedicated, connection, batch)
        finally:
            self._writing = False

    async def reconnect(self) -> None:
        """Close the write connection so that the next batch makes a new one.

        For a connection suspected dead: one lost without a FIN would otherwise cost
        the next batch its whole timeout. A batch in flight is left to its own
        timeout, since closing under it could make it be sent twice.
        """
        if self._connection is not None and not self._writing:
            await self._connection.drop()

    async def aclose(self) -> None:
        """Close the write connection; call it once :meth:`run` has stopped."""
        if self._connection is not None:
            await self._connection.aclose()

    def _fail(self, groups: list[list[_Push]], commands: list[_Command], error: BaseException) -> None:
        for group in groups:
            for push in group:
                _set_exception(push.waiter, error)
        for command in commands:
            _set_exception(command.waiter, error)


def _pack(connection: AbstractConnection, batch: list[tuple[Any, ...]]) -> list[bytes]:
    if _hiredis_pack is None:
        return connection.pack_commands(batch)
    # hiredis packs a command in C, about ten times faster than redis-py's packing,
    # which checks and encodes every argument in Python first. The arguments here
    # are only str, bytes and int, which it encodes as redis-py would.
    return [b"".join([_hiredis_pack(args) for args in batch])]


async def _write_or_drop(
    dedicated: DedicatedConnection, connection: AbstractConnection, batch: list[tuple[Any, ...]]
) -> list[Any]:
    # One timeout for the whole batch, the pool's socket_timeout, instead of redis-py's
    # one per write and per reply. A failed batch leaves the connection in an unknown
    # state, so it is closed.
    try:
        return await wait_for_reply(_send_and_read(connection, batch), dedicated.timeout_s)
    except BaseException:
        await dedicated.drop()
        raise


async def _send_and_read(connection: AbstractConnection, batch: list[tuple[Any, ...]]) -> list[Any]:
    await connection.send_packed_command(_pack(connection, batch), check_health=False)
    return [await _read_reply(connection) for _ in batch]


async def _read_reply(connection: AbstractConnection) -> Any:
    # An error reply is that command's result, as in a pipeline with
    # raise_on_error=False; the connection stays usable.
    try:
        return await connection.read_response(timeout=math.inf)
    except ResponseError as exc:
        return exc


_Item = TypeVar("_Item")


def _split(
    items: list[_Item], size_of: Callable[[_Item], int], budget: int, limit: int | None = None
) -> tuple[list[_Item], list[_Item], int]:
    """Split ``items`` after ``limit`` items or where their sizes pass ``budget``.

    The first part has at least one item. Returns the first part, the rest and the
    first part's total size.
    """
    total = 0
    for index, item in enumerate(items):
        size = size_of(item)
        if index > 0 and (total + size > budget or index == limit):
            return items[:index], items[index:], total
        total += size
    return items, [], total


def _push_bytes(push: _Push) -> int:
    return len(push.payload)


def _command_bytes(command: _Command) -> int:
    return sum(len(arg) for arg in command.args if isinstance(arg, bytes))


def _group_pushes(pushes: list[_Push]) -> list[list[_Push]]:
    by_key: defaultdict[str, list[_Push]] = defaultdict(list)
    for push in pushes:
        by_key[push.key].append(push)

    groups: list[list[_Push]] = []
    for same_key in by_key.values():
        for start in range(0, len(same_key), _MAX_TASKS_PER_PUSH):
            groups.append(same_key[start : start + _MAX_TASKS_PER_PUSH])
    return groups


def _settle_pushes(groups: list[list[_Push]], results: list[Any]) -> None:
    # A successful push leaves its waiter alone: the reply will complete it.
    for group, result in zip(groups, results, strict=True):
        if isinstance(result, BaseException):
            for push in group:
                _set_exception(push.waiter, result)


def _settle_commands(commands: list[_Command], results: list[Any]) -> None:
    for command, result in zip(commands, results, strict=True):
        if isinstance(result, BaseException):
            _set_exception(command.waiter, result)
        elif not command.waiter.done():
            command.waiter.set_result(result)


def _set_exception(waiter: asyncio.Future[Any], error: BaseException) -> None:
    if not waiter.done():
        waiter.set_exception(error)
