"""One pub/sub connection per Tasq client, shared by its reply channel and servers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

MessageCallback = Callable[[bytes], None]
SubscribedCallback = Callable[[], None]

# Delays between attempts to reconnect the pub/sub connection, in seconds.
_RECONNECT_DELAYS_S = (0.05, 0.1, 0.2, 0.5)


@dataclass(slots=True)
class _Channel:
    on_message: MessageCallback
    on_subscribed: SubscribedCallback | None


class PubSubListener:
    """Dispatches messages of subscribed channels to callbacks.

    ``on_subscribed`` runs each time Redis confirms a subscription: at first and
    again after every reconnect. Servers use it to look for tasks pushed while they
    were not listening. Callbacks run on the event loop and must not block.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self._pubsub = redis.pubsub()
        self._channels: dict[bytes, _Channel] = {}
        self._connected = False

    @property
    def connected(self) -> bool:
        """Whether the last read from the pub/sub connection succeeded."""
        return self._connected

    async def subscribe(
        self,
        channel: str,
        on_message: MessageCallback,
        on_subscribed: SubscribedCallback | None = None,
    ) -> None:
        """Subscribe to ``channel``; raises ValueError if it already has a callback."""
        name = channel.encode()
        if name in self._channels:
            raise ValueError(f"Channel {channel!r} is already subscribed by this Tasq client.")

        self._channels[name] = _Channel(on_message, on_subscribed)
        try:
            await self._pubsub.subscribe(name)
        except BaseException:
            del self._channels[name]
            raise

    async def unsubscribe(self, channel: str) -> None:
        """Stop dispatching ``channel``; the UNSUBSCRIBE itself is best effort."""
        name = channel.encode()
        self._channels.pop(name, None)
        try:
            await self._pubsub.unsubscribe(name)
        except (RedisError, OSError) as exc:
            # Messages for this channel are already ignored; after a reconnect the
            # channel is simply not subscribed again.
            logger.warning("Unsubscribe from channel=%s failed: %r", channel, exc)

    async def run(self) -> None:
        """Read and dispatch messages until cancelled, reconnecting after errors."""
        failures = 0
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError) as exc:
                failures += 1
                self._on_read_failed(exc, failures)
                await asyncio.sleep(_RECONNECT_DELAYS_S[min(failures, len(_RECONNECT_DELAYS_S)) - 1])
                continue

            if failures:
                logger.info("Pub/sub connection restored after %d failed reads.", failures)
                failures = 0
            self._connected = True
            if message is not None:
                self._dispatch(message)

    async def aclose(self) -> None:
        """Close the pub/sub connection."""
        self._channels.clear()
        await self._pubsub.aclose()

    def _on_read_failed(self, exc: BaseException, failures: int) -> None:
        self._connected = False
        if failures == 1:
            logger.warning("Pub/sub connection lost, reconnecting: %r", exc)
        else:
            logger.debug("Pub/sub reconnect attempt %d failed: %r", failures, exc)

    def _dispatch(self, message: dict[str, Any]) -> None:
        channel = self._channels.get(message["channel"])
        if channel is None:
            return

        kind = message["type"]
        try:
            if kind == "message":
                channel.on_message(message["data"])
            elif kind == "subscribe" and channel.on_subscribed is not None:
                channel.on_subscribed()
        except Exception:
            # A callback bug must not stop replies and notifications for everyone.
            logger.exception("Callback for channel=%s failed.", message["channel"].decode(errors="replace"))
