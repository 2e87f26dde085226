"""One pub/sub connection per Tasq client, shared by its reply channel and servers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError, ResponseError

from ._connect import RedisClient
from ._tasks import read_what_arrived

logger = logging.getLogger(__name__)

MessageCallback = Callable[[bytes], None]
SubscribedCallback = Callable[[], None]

# Delays between attempts to reconnect the pub/sub connection, in seconds.
_RECONNECT_DELAYS_S = (0.05, 0.1, 0.2, 0.5)

# Time Redis gets to confirm a subscription made before the listener runs, in seconds.
_CONFIRMATION_TIMEOUT_S = 5.0

# Consecutive failed reads after which the pub/sub object is replaced by a new one.
_FAILURES_BEFORE_NEW_PUBSUB = 3


@dataclass(slots=True)
class _Channel:
    on_message: MessageCallback
    on_subscribed: SubscribedCallback | None


class PubSubListener:
    """Dispatches messages of subscribed channels to callbacks.

    ``on_subscribed`` runs each time Redis confirms a subscription: at first and
    again after every reconnect. Servers use it to look for tasks pushed while they
    were not listening. Callbacks run on the event loop and must not block.

    After ``health_check_interval_s`` seconds without a message the listener sends a
    PING; a connection that stays silent for two intervals is dropped and made
    again, so a connection lost without a FIN is noticed within two intervals.
    ``on_silent`` then runs too: the other connections to the same Redis were
    probably lost the same way.
    """

    def __init__(
        self,
        redis: RedisClient,
        *,
        health_check_interval_s: float,
        on_silent: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._redis = redis
        self._on_silent = on_silent
        self._pubsub = redis.pubsub()
        self._channels: dict[bytes, _Channel] = {}
        self._connected = False
        self._running = False
        self._health_check_interval_s = health_check_interval_s
        self._last_received = time.monotonic()

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
        """Subscribe to ``channel``; raises ValueError if it already has a callback.

        Before :meth:`run` starts, a failure to subscribe is raised. Once it runs, a
        channel whose SUBSCRIBE cannot be sent is subscribed when the listener
        reconnects.
        """
        name = channel.encode()
        if name in self._channels:
            raise ValueError(f"Channel {channel!r} is already subscribed by this Tasq client.")

        self._channels[name] = _Channel(on_message, on_subscribed)
        if self._running:
            # redis-py subscribes every channel of this mapping again on reconnect.
            self._pubsub.channels[name] = None
            await self._send("SUBSCRIBE", name)
            return
        try:
            await self._pubsub.subscribe(name)
            await self._await_confirmation(name)
        except BaseException:
            del self._channels[name]
            raise

    async def _await_confirmation(self, name: bytes) -> None:
        # Before run() starts, no other coroutine reads, so an error reply to SUBSCRIBE
        # (NOPERM for a user without access to the channel) is raised here.
        deadline = time.monotonic() + _CONFIRMATION_TIMEOUT_S
        while (remaining := deadline - time.monotonic()) > 0:
            message = await self._pubsub.get_message(timeout=remaining)
            if message is None:
                continue
            if message["type"] == "subscribe" and message["channel"] == name:
                return
            self._dispatch(message)
        raise ConnectionError(
            f"Redis did not confirm the subscription to channel {name.decode()!r} "
            f"within {_CONFIRMATION_TIMEOUT_S} s."
        )

    async def unsubscribe(self, channel: str) -> None:
        """Stop dispatching ``channel`` and unsubscribe from it as far as Redis is reachable."""
        name = channel.encode()
        self._channels.pop(name, None)
        self._pubsub.channels.pop(name, None)
        await self._send("UNSUBSCRIBE", name)

    async def _send(self, *args: Any) -> None:
        # Only the listener task reads from the pub/sub connection or reconnects it:
        # redis-py's own subscribe() would reconnect here, and a reconnect reads
        # replies while run() is reading too. A command that cannot be sent is
        # made good by the resubscription after the listener's next reconnect.
        connection = self._pubsub.connection
        if connection is None or not connection.is_connected or not self._connected:
            return
        try:
            await connection.send_command(*args, check_health=False)
        except (RedisError, OSError) as exc:
            logger.warning("Sending %s to the pub/sub connection failed: %r", args[0], exc)

    def run(self) -> Coroutine[Any, Any, None]:
        """Return the coroutine that reads and dispatches messages until cancelled.

        From this call on, only that coroutine reads from the connection, so later
        subscriptions are sent without waiting for their confirmation.
        """
        self._running = True
        self._connected = True
        self._last_received = time.monotonic()
        return self._run()

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._read_loop(), name="tasq-listener-read")
            group.create_task(self._watch(), name="tasq-listener-watchdog")

    async def _read_loop(self) -> None:
        failures = 0
        while True:
            try:
                if self._pubsub.connection is None:
                    # A replacement pub/sub object whose first subscribe failed has no
                    # connection yet; subscribing again is its next attempt.
                    await self._pubsub.subscribe(*self._channels)
                # No timeout per read: the watchdog bounds how long a silent
                # connection is trusted, which saves a timeout context per message.
                response = await self._pubsub.parse_response(block=True)
            except (RedisError, OSError) as exc:
                failures += 1
                self._on_read_failed(exc, failures)
                await asyncio.sleep(_RECONNECT_DELAYS_S[min(failures, len(_RECONNECT_DELAYS_S)) - 1])
                if failures % _FAILURES_BEFORE_NEW_PUBSUB == 0:
                    await self._replace_pubsub()
                continue

            self._last_received = time.monotonic()
            if failures:
                logger.info("Pub/sub connection restored after %d failed reads.", failures)
                failures = 0
            self._connected = True
            self._dispatch_response(response)

    async def _watch(self) -> None:
        # A connection dropped without a FIN never errors on its own: nothing arrives
        # and writes still succeed. One interval after the last reply the watchdog
        # sends a PING; a connection still silent two intervals after it is closed,
        # which ends the read in progress with an error and so starts a reconnect.
        interval_s = self._health_check_interval_s
        while True:
            await _sleep_until(self._last_received + interval_s)
            if not self._connected:
                await asyncio.sleep(interval_s)
                continue
            if time.monotonic() - self._last_received < interval_s:
                continue

            last_received = self._last_received
            await self._send("PING")
            await _sleep_until(last_received + 2 * interval_s)
            await read_what_arrived()
            connection = self._pubsub.connection
            if self._last_received == last_received and self._connected and connection is not None:
                silent_s = time.monotonic() - last_received
                logger.warning("No reply on the pub/sub connection for %.1f s; reconnecting.", silent_s)
                self._last_received = time.monotonic()
                await connection.disconnect()
                if self._on_silent is not None:
                    await self._on_silent()

    async def _replace_pubsub(self) -> None:
        # A Redis Cluster pub/sub object stays bound to the node it first chose, so
        # after that node failed only a new object can reach another node.
        old = self._pubsub
        self._pubsub = self._redis.pubsub()
        try:
            await old.aclose()
        except (RedisError, OSError) as exc:
            logger.debug("Closing the old pub/sub connection failed: %r", exc)
        try:
            await self._pubsub.subscribe(*self._channels)
        except (RedisError, OSError) as exc:
            logger.debug("Subscribing on a new pub/sub connection failed: %r", exc)

    async def aclose(self) -> None:
        """Close the pub/sub connection."""
        self._channels.clear()
        await self._pubsub.aclose()

    def _on_read_failed(self, exc: BaseException, failures: int) -> None:
        self._connected = False
        if isinstance(exc, ResponseError) and failures == 1:
            logger.error(
                "Redis rejected a pub/sub command: %s. Grant the Redis user access to the "
                "channels @tasq:* (ACL rule &@tasq:*); retrying meanwhile.",
                exc,
            )
        elif failures == 1:
            logger.warning("Pub/sub connection lost, reconnecting: %r", exc)
        else:
            logger.debug("Pub/sub reconnect attempt %d failed: %r", failures, exc)

    def _dispatch(self, message: dict[str, Any]) -> None:
        # Messages parsed by redis-py, read while waiting for a confirmation.
        self._dispatch_parts(message["type"].encode(), message["channel"], message["data"])

    def _dispatch_response(self, response: Any) -> None:
        # A raw pub/sub reply: [kind, channel, data] for messages and (un)subscribe
        # confirmations, [b"pong", data] for a PING, or a plain PONG with RESP3.
        if isinstance(response, list) and len(response) == 3:
            self._dispatch_parts(response[0], response[1], response[2])

    def _dispatch_parts(self, kind: bytes, channel_name: bytes, data: Any) -> None:
        channel = self._channels.get(channel_name)
        if channel is None:
            return

        try:
            if kind == b"message":
                channel.on_message(data)
            elif kind == b"subscribe" and channel.on_subscribed is not None:
                channel.on_subscribed()
        except Exception:
            # A callback bug must not stop replies and notifications for everyone.
            logger.exception("Callback for channel=%s failed.", channel_name.decode(errors="replace"))


async def _sleep_until(monotonic_s: float) -> None:
    await asyncio.sleep(max(0.0, monotonic_s - time.monotonic()))
