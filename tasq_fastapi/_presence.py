"""What running servers publish about themselves, for ``tasq inspect`` and operators.

Every server of topic ``T`` keeps one field in the hash ``{@tasq:T}:servers`` (the
same Redis Cluster slot as the task list): its id mapped to a JSON object with the
topic, methods, threads, running and processed counts, host, pid and the Unix times
(seconds) it started and last refreshed the entry. Servers refresh their entry every
:data:`PRESENCE_INTERVAL_S` seconds and remove it when they close. The hash expires
:data:`PRESENCE_TTL_S` seconds after the last refresh of any server, and readers skip
entries older than that, so a server that died leaves no lasting trace.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable
from typing import Any

from redis.exceptions import RedisError

from . import _protocol
from ._connect import RedisClient
from ._redis import execute

logger = logging.getLogger(__name__)

PRESENCE_INTERVAL_S = 5.0
"""Seconds between two refreshes of a server's entry."""

PRESENCE_TTL_S = 3 * PRESENCE_INTERVAL_S
"""Seconds after its last refresh that an entry counts as gone."""

SERVERS_SUFFIX = ":servers"


def servers_key(topic: str) -> str:
    """Return the key of a topic's presence hash, in the same cluster slot as its list."""
    return "{" + _protocol.topic_key(topic) + "}" + SERVERS_SUFFIX


def topic_of_servers_key(key: str) -> str | None:
    """Return the topic of a presence hash key, or None for another key."""
    prefix = "{" + _protocol.KEY_PREFIX
    if not (key.startswith(prefix) and key.endswith("}" + SERVERS_SUFFIX)):
        return None
    return key[len(prefix) : -len("}" + SERVERS_SUFFIX)]


class Announcer:
    """Publishes and withdraws one server's entry."""

    def __init__(self, redis: RedisClient, topic: str) -> None:
        self._redis = redis
        self._key = servers_key(topic)
        self.server_id = uuid.uuid4().hex[:16]
        self._started_at = time.time()

    async def announce(self, facts: dict[str, Any]) -> None:
        """Write this server's entry with ``facts`` and push back the hash's expiry."""
        entry = {
            "id": self.server_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self._started_at,
            "refreshed_at": time.time(),
            **facts,
        }
        await execute(self._redis, "HSET", self._key, self.server_id, json.dumps(entry))
        await execute(self._redis, "PEXPIRE", self._key, int(PRESENCE_TTL_S * 1000))

    async def withdraw(self) -> None:
        """Remove this server's entry; a failure is logged, since the entry expires anyway."""
        try:
            await execute(self._redis, "HDEL", self._key, self.server_id)
        except (RedisError, OSError) as exc:
            logger.warning("Removing the presence entry of server=%s failed: %r", self.server_id, exc)


async def read_servers(redis: RedisClient, topic: str) -> list[dict[str, Any]]:
    """Return the entries of the live servers of ``topic``, oldest first."""
    raw: dict[bytes, bytes] = await execute(redis, "HGETALL", servers_key(topic)) or {}
    if isinstance(raw, list):
        raw = dict(zip(raw[::2], raw[1::2], strict=True))
    return _live_entries(raw.values())


def _live_entries(values: Iterable[bytes]) -> list[dict[str, Any]]:
    cutoff = time.time() - PRESENCE_TTL_S
    entries = []
    for value in values:
        try:
            entry = json.loads(value)
        except ValueError:
            continue
        if isinstance(entry, dict) and _number(entry.get("refreshed_at")) >= cutoff:
            entries.append(entry)
    return sorted(entries, key=lambda entry: _number(entry.get("started_at")))


def _number(value: Any) -> float:
    # Entries are written by servers, but the hash is open to anything with access.
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
