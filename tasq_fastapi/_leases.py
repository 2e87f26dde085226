"""At-least-once delivery: tasks are leased while they run and requeued if their server dies.

A server in this mode takes tasks with :data:`_TAKE_SCRIPT`, which pops them and
records each in a sorted set ``{@tasq:T}:leases`` scored by its lease expiry
(milliseconds, Redis clock). The braces make the key hash to the same Redis Cluster
slot as the task list ``@tasq:T``. While a task runs, its server renews the lease
every third of the lease time; a finished task is removed. Every server of the
topic also requeues tasks whose lease has expired, at the head of the list, so that
another server runs them before their deadline. Servers drop a requeued task whose
deadline has passed, as they drop any expired task.

The sorted set never outlives its bound: it expires with the task list's own expiry
(the latest deadline of the tasks taken) or one lease time, whichever is longer, and
every renewal keeps it alive for at least one more lease time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection
from typing import Any

from redis.commands.core import AsyncScript

from . import _protocol
from ._connect import RedisClient

logger = logging.getLogger(__name__)

LEASES_SUFFIX = ":leases"

# KEYS[1] task list, KEYS[2] leases; ARGV[1] maximum count, ARGV[2] lease in ms.
_TAKE_SCRIPT = """
local ttl = redis.call('PTTL', KEYS[1])
local items = redis.call('LPOP', KEYS[1], ARGV[1])
if not items then return {} end
local now = redis.call('TIME')
local lease = tonumber(ARGV[2])
local expiry = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + lease
for _, item in ipairs(items) do
  redis.call('ZADD', KEYS[2], expiry, item)
end
local bound = math.max(ttl, lease)
redis.call('PEXPIRE', KEYS[2], bound, 'NX')
redis.call('PEXPIRE', KEYS[2], bound, 'GT')
return items
"""

# KEYS[1] leases, KEYS[2] task list; ARGV[1] lease in ms, ARGV[2..] tasks still running.
# Returns the number of tasks requeued.
_RENEW_AND_REQUEUE_SCRIPT = """
local now_pair = redis.call('TIME')
local now = tonumber(now_pair[1]) * 1000 + math.floor(tonumber(now_pair[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', 'GT', now + lease, ARGV[i])
end
if #ARGV >= 2 then
  redis.call('PEXPIRE', KEYS[1], lease, 'GT')
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)
if #expired == 0 then return 0 end
redis.call('ZREM', KEYS[1], unpack(expired))
redis.call('LPUSH', KEYS[2], unpack(expired))
local ttl = math.max(redis.call('PTTL', KEYS[1]), lease)
redis.call('PEXPIRE', KEYS[2], ttl, 'NX')
redis.call('PEXPIRE', KEYS[2], ttl, 'GT')
redis.call('PUBLISH', KEYS[2], '')
return #expired
"""


def leases_key(topic: str) -> str:
    """Return the key of a topic's lease set, in the same cluster slot as its list."""
    return "{" + _protocol.topic_key(topic) + "}" + LEASES_SUFFIX


class LeaseKeeper:
    """Takes, renews, releases and requeues leased tasks of one topic."""

    def __init__(self, redis: RedisClient, topic: str, lease_s: float) -> None:
        self._list_key = _protocol.topic_key(topic)
        self._leases_key = leases_key(topic)
        self._lease_ms = max(1, math.ceil(lease_s * 1000))
        self._take: AsyncScript = redis.register_script(_TAKE_SCRIPT)
        self._renew: AsyncScript = redis.register_script(_RENEW_AND_REQUEUE_SCRIPT)
        self._topic = topic

    @property
    def leases_key(self) -> str:
        """The Redis key of the lease set."""
        return self._leases_key

    async def take(self, count: int) -> list[bytes]:
        """Pop up to ``count`` tasks and lease them to this server."""
        items: Any = await self._take(keys=[self._list_key, self._leases_key], args=[count, self._lease_ms])
        return list(items or [])

    def release_command(self, raw: bytes) -> tuple[Any, ...]:
        """Return the command that ends the lease of a finished task."""
        return ("ZREM", self._leases_key, raw)

    async def renew_and_requeue(self, running: Collection[bytes]) -> int:
        """Extend the leases of ``running`` tasks and requeue every expired lease.

        Returns the number of tasks requeued.
        """
        keys = [self._leases_key, self._list_key]
        requeued = int(await self._renew(keys=keys, args=[self._lease_ms, *running]))
        if requeued:
            logger.warning(
                "Requeued %d tasks of topic=%s whose server stopped renewing their lease.",
                requeued,
                self._topic,
            )
        return requeued
