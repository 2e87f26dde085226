"""Discovery of Tasq topics by SCANning a Redis keyspace, on every primary of a cluster.

A topic `T` shows up as its task list `@tasq:T` (a list, while tasks wait), its
presence hash `{@tasq:T}:servers` (while servers run) or its lease set
`{@tasq:T}:leases` (while at-least-once tasks run). One SCAN pass with the pattern
`*@tasq:*` finds all three. Keys under `@tasq:client:` are reply channels and never
topics; a `@tasq:T` key that is not a list belongs to something else and is skipped.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from redis.asyncio.cluster import RedisCluster

from . import _protocol
from ._connect import RedisClient
from ._leases import LEASES_SUFFIX
from ._presence import topic_of_servers_key

SCAN_PATTERN = "*" + _protocol.KEY_PREFIX + "*"
"""SCAN pattern matching task lists, presence hashes and lease sets."""

SCAN_COUNT = 1000
"""COUNT hint of each SCAN call: about how many keys Redis looks at per call."""

_PROGRESS_INTERVAL_S = 0.2

NodeCommand = Callable[..., Awaitable[Any]]


class Progress:
    """A one-line progress report on a terminal, rewritten at most every 0.2 s.

    It writes nothing when `stream` is not a TTY, so pipes and logs stay clean.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = self._stream.isatty()
        self._last_write = 0.0
        self._width = 0

    def update(self, text: str) -> None:
        """Show `text` in place of the previous line, unless one was shown very recently."""
        now = time.monotonic()
        if not self._enabled or now - self._last_write < _PROGRESS_INTERVAL_S:
            return
        self._last_write = now
        self._stream.write("\r" + text.ljust(self._width))
        self._width = len(text)
        self._stream.flush()

    def clear(self) -> None:
        """Erase the progress line, if one was shown."""
        if self._enabled and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0


async def discover_topics(redis: RedisClient, progress: Progress) -> list[str]:
    """Return the sorted topics that have a task list, a presence hash or a lease set.

    On a Redis Cluster every primary is scanned, because each holds only its own slots.
    """
    topics: set[str] = set()
    nodes = await _scan_targets(redis)
    for index, (name, command) in enumerate(nodes, start=1):
        label = f"Scanning {name} ({index}/{len(nodes)})" if len(nodes) > 1 else f"Scanning {name}"
        topics |= await _scan_node(command, label, topics, progress)
    progress.clear()
    return sorted(topics)


_EXPECTED_TYPES = {"list": b"list", "servers": b"hash", "leases": b"zset"}


def topic_of_key(key: str) -> tuple[str, str] | None:
    """Return the topic of a Tasq key and the kind of key ("list", "servers", "leases"), or None."""
    servers_topic = topic_of_servers_key(key)
    if servers_topic is not None:
        return _valid(servers_topic, "servers")

    leases_prefix = "{" + _protocol.KEY_PREFIX
    leases_suffix = "}" + LEASES_SUFFIX
    if key.startswith(leases_prefix) and key.endswith(leases_suffix):
        return _valid(key[len(leases_prefix) : -len(leases_suffix)], "leases")

    if key.startswith(_protocol.KEY_PREFIX) and not key.startswith(_protocol.CLIENT_CHANNEL_PREFIX):
        return _valid(key[len(_protocol.KEY_PREFIX) :], "list")
    return None


def _valid(topic: str, kind: str) -> tuple[str, str] | None:
    try:
        _protocol.validate_name("topic", topic)
    except ValueError:
        return None
    return topic, kind


async def _scan_targets(redis: RedisClient) -> list[tuple[str, NodeCommand]]:
    if not isinstance(redis, RedisCluster):
        kwargs = redis.connection_pool.connection_kwargs
        name = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        return [(str(name), redis.execute_command)]

    await redis.initialize()
    targets: list[tuple[str, NodeCommand]] = []
    for node in redis.get_primaries():

        async def on_node(*args: Any, _node: Any = node) -> Any:
            return await redis.execute_command(*args, target_nodes=_node)

        targets.append((node.name, on_node))
    return targets


async def _scan_node(command: NodeCommand, label: str, found: set[str], progress: Progress) -> set[str]:
    topics: set[str] = set()
    total_keys = int(await command("DBSIZE"))
    cursor: int | bytes = 0
    scanned_estimate = 0

    while True:
        cursor, keys = await command("SCAN", cursor, "MATCH", SCAN_PATTERN, "COUNT", SCAN_COUNT)
        if isinstance(cursor, dict):
            # redis-py's RedisCluster returns the cursor keyed by node name, even for one node.
            [cursor] = cursor.values()
        for raw_key in keys:
            topic = await _topic_of_raw_key(command, raw_key)
            if topic is not None:
                topics.add(topic)
        scanned_estimate = min(total_keys, scanned_estimate + SCAN_COUNT)
        progress.update(
            f"{label}: about {scanned_estimate:,} of {total_keys:,} keys, "
            f"{len(found | topics):,} topics found"
        )
        if int(cursor) == 0:
            return topics


async def _topic_of_raw_key(command: NodeCommand, raw_key: bytes) -> str | None:
    parsed = topic_of_key(raw_key.decode("utf-8", errors="replace"))
    if parsed is None:
        return None
    topic, kind = parsed
    # A key of another type under a Tasq name is not Tasq's; reading it as one would
    # fail with WRONGTYPE and hide every other topic of the report.
    if await command("TYPE", raw_key) != _EXPECTED_TYPES[kind]:
        return None
    return topic
