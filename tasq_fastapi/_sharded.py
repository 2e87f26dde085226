"""Replies over sharded pub/sub, for clients on a Redis Cluster.

Classic PUBLISH on a Redis Cluster is copied to every node over the cluster bus. A
client on a cluster therefore also subscribes to its reply channel with SSUBSCRIBE
and requests, in the request's extension map, its reply by SPUBLISH, which stays
within the shard that owns the channel's slot. Servers of this library honour the
request; Node.js servers ignore it and reply by classic PUBLISH, which the client
still receives on its classic subscription.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# How long one read waits for a message before it polls again, in seconds.
_READ_TIMEOUT_S = 1.0

# Pause after a failed read before the next one, in seconds.
_RETRY_DELAY_S = 0.2


class ShardedReplyListener:
    """Receives the replies sent by SPUBLISH to one channel of a Redis Cluster."""

    def __init__(self, cluster: RedisCluster, channel: str, on_message: Callable[[bytes], None]) -> None:
        self._pubsub = cluster.pubsub()
        self._channel = channel.encode()
        self._on_message = on_message

    async def subscribe(self) -> None:
        """Subscribe to the channel on the node that owns its slot."""
        await self._pubsub.ssubscribe(self._channel)

    async def run(self) -> None:
        """Read and dispatch messages until cancelled; redis-py re-routes after failovers."""
        failures = 0
        while True:
            try:
                message = await self._pubsub.get_sharded_message(timeout=_READ_TIMEOUT_S)
            except (RedisError, OSError) as exc:
                failures += 1
                if failures == 1:
                    logger.warning("Reading sharded replies failed, retrying: %r", exc)
                await asyncio.sleep(_RETRY_DELAY_S)
                continue

            if failures:
                logger.info("Reading sharded replies works again after %d failures.", failures)
                failures = 0
            if message is not None and message.get("type") == "smessage":
                self._on_message(message["data"])

    async def aclose(self) -> None:
        """Close the connections of the sharded subscription."""
        await self._pubsub.aclose()
