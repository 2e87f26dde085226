"""The Tasq client: sends requests, owns the shared connections and the servers."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from . import _protocol
from ._batcher import CommandBatcher
from ._connect import RedisClient, close_redis, connect_redis
from ._errors import (
    TasqEncodeError,
    TasqProtocolError,
    TasqRequestError,
)
from ._listener import PubSubListener
from ._observer import NullObserver, SafeObserver, TasqObserver
from ._pending import PendingRequests, Waiter
from ._replies import (
    ClientClosed,
    ReplyTooLarge,
    RequestCall,
    RequestExpired,
    check_bytes_responses,
    check_redis_version,
    check_serve_options,
    effective_timeout,
    failure_of,
    no_time_left,
    outcome_of,
    result_of,
)
from ._server import DefaultHandler, Handler, TasqServer
from ._sharded import ShardedReplyListener
from ._tasks import cancel_and_wait
from ._tracing import create_tracing

__all__ = ["Tasq", "create_tasq"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Default limit on an encoded request or response, in bytes."""

DEFAULT_HEALTH_CHECK_INTERVAL_S = 5.0
"""Default quiet time after which the pub/sub connection is checked, in seconds."""


class _State(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    CLOSED = "closed"


async def create_tasq(
    redis: RedisClient | str,
    *,
    namespace: str | None = None,
    observer: TasqObserver | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    health_check_interval_s: float = DEFAULT_HEALTH_CHECK_INTERVAL_S,
    tracing: bool = False,
) -> Tasq:
    """Connect a Tasq client and return it, started.

    ``redis`` is either a ``redis.asyncio.Redis`` that the caller owns and closes, or
    a URL (``redis://``, ``rediss://``, ``unix://``) from which the Tasq creates a
    connection pool it closes in :meth:`Tasq.aclose`. ``namespace`` prefixes the
    client id, as the Node.js library does. Requests and responses larger than
    ``max_message_bytes`` are rejected. The pub/sub connection gets a PING after
    ``health_check_interval_s`` quiet seconds and is made again when it stays
    silent, so a connection dropped without notice is replaced within about three
    intervals. With ``tracing``, requests and tasks get OpenTelemetry spans whose
    trace context travels inside the request (needs the ``otel`` extra).

    Raises ``redis.exceptions.ConnectionError`` when Redis cannot be reached and
    RuntimeError when it is older than 7.0.
    """
    tasq = Tasq(
        redis,
        namespace=namespace,
        observer=observer,
        max_message_bytes=max_message_bytes,
        health_check_interval_s=health_check_interval_s,
        tracing=tracing,
    )
    await tasq.start()
    return tasq


class Tasq:
    """A Tasq client: sends requests and runs servers through one Redis.

    Construct it with :func:`create_tasq`, or construct it and ``await start()``, or
    use it as an async context manager. One Tasq uses one pub/sub connection,
    shared by its reply channel and the notifications of all its servers.
    """

    def __init__(
        self,
        redis: RedisClient | str,
        *,
        namespace: str | None = None,
        observer: TasqObserver | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        health_check_interval_s: float = DEFAULT_HEALTH_CHECK_INTERVAL_S,
        tracing: bool = False,
    ) -> None:
        if not health_check_interval_s > 0:
            raise ValueError(
                f"Invalid health_check_interval_s {health_check_interval_s!r}: "
                "give a positive number of seconds."
            )
        if namespace is not None:
            _protocol.validate_name("namespace", namespace)
        if max_message_bytes < 1:
            raise ValueError(f"max_message_bytes must be positive, got {max_message_bytes!r}.")

        self._owns_redis = isinstance(redis, str)
        self._redis = connect_redis(redis) if isinstance(redis, str) else redis
        check_bytes_responses(self._redis)
        self._client_id = _protocol.new_client_id(namespace)
        self._reply_channel = _protocol.client_channel(self._client_id)
        self._observer: TasqObserver = SafeObserver(observer or NullObserver())
        self._max_message_bytes = max_message_bytes
        self._tracing = create_tracing(tracing)

        self._state = _State.CREATED
        self._pending = PendingRequests()
        self._servers: dict[str, TasqServer] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._sharded_replies: ShardedReplyListener | None = None
        # Neither connects nor starts anything until start().
        self._batcher = CommandBatcher(self._redis, in_flight=self._pending.__len__)
        self._listener = PubSubListener(
            self._redis, health_check_interval_s=health_check_interval_s, on_silent=self._batcher.reconnect
        )

    @property
    def redis(self) -> RedisClient:
        """The Redis client in use."""
        return self._redis

    @property
    def client_id(self) -> str:
        """This client's id; replies arrive on ``@tasq:client:<client_id>``."""
        return self._client_id

    @property
    def pending_count(self) -> int:
        """The number of requests waiting for their reply."""
        return len(self._pending)

    @property
    def servers(self) -> Mapping[str, TasqServer]:
        """The running servers by topic."""
        return dict(self._servers)

    async def start(self) -> None:
        """Check Redis, subscribe to the reply channel and start the background tasks."""
        if self._state is not _State.CREATED:
            raise RuntimeError("This Tasq client was already started; create a new one.")

        try:
            await check_redis_version(self._redis)
            await self._listener.subscribe(self._reply_channel, self._on_reply)
            await self._subscribe_sharded_replies()
        except BaseException:
            self._state = _State.CLOSED
            await self._close_connections()
            raise
        self._spawn(self._listener.run(), "tasq-listener")
        self._spawn(self._batcher.run(), "tasq-writer")
        if self._sharded_replies is not None:
            self._spawn(self._sharded_replies.run(), "tasq-sharded-replies")
        self._state = _State.RUNNING
        logger.info("Tasq client started: client_id=%s", self._client_id)

    async def aclose(self, grace_s: float = 10.0) -> None:
        """Stop the servers, fail pending requests and close what this client opened.

        Servers get ``grace_s`` seconds to finish running handlers. A Redis client
        passed by the caller stays open. Calling it again does nothing.
        """
        if self._state is not _State.RUNNING:
            self._state = _State.CLOSED
            return
        self._state = _State.CLOSED

        await asyncio.gather(*(server.aclose(grace_s) for server in self._servers.values()))
        self._servers.clear()
        self._fail_pending()
        await self._stop_background()
        await self._close_connections()
        logger.info("Tasq client stopped: client_id=%s", self._client_id)

    async def _subscribe_sharded_replies(self) -> None:
        if not isinstance(self._redis, RedisCluster):
            return
        self._sharded_replies = ShardedReplyListener(self._redis, self._reply_channel, self._on_reply)
        await self._sharded_replies.subscribe()

    async def _close_connections(self) -> None:
        await self._listener.aclose()
        if self._sharded_replies is not None:
            await self._sharded_replies.aclose()
        if self._owns_redis:
            await close_redis(self._redis)

    async def __aenter__(self) -> Self:
        if self._state is _State.CREATED:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def ping(self) -> float:
        """Return the time of one Redis PING round trip, in seconds."""
        started = time.perf_counter()
        await self._redis.ping()
        return time.perf_counter() - started

    async def request(
        self,
        topic: str,
        method: str,
        args: Any = None,
        *,
        # The timeout is part of the request itself: it becomes the deadline sent to
        # the server, so it cannot be left to the caller's own asyncio.timeout().
        timeout: float = 10.0,  # noqa: ASYNC109
        inherit_deadline: bool = True,
    ) -> Any:
        """Call ``method`` on a server of ``topic`` and return its result.

        ``args`` is any CBOR-encodable value, usually a dict or a list; None sends
        no args, while falsy values such as ``0``, ``""``, ``False``, ``{}`` and
        ``[]`` are sent as they are. ``timeout`` is in seconds. Inside a handler,
        the request gets no more time than the handler's own caller has left,
        unless ``inherit_deadline`` is false.

        Raises :class:`TasqRequestTimeoutError`, :class:`TasqRequestUnknownMethodError`,
        :class:`TasqRequestRejectedError` (:class:`TasqRequestInvalidArgsError` for
        invalid args), :class:`TasqConnectionError` when Redis fails, and
        :class:`TasqEncodeError` when ``args`` cannot be encoded or is too large.
        """
        self._check_running()
        _protocol.validate_name("topic", topic)
        _protocol.validate_name("method", method)
        timeout_s = effective_timeout(timeout, inherit_deadline)

        # Everything happens in this one coroutine: a helper coroutine would add its
        # own frame to every pending request.
        started = time.monotonic()
        outcome = "error"
        waiter: Waiter | None = None
        extensions: dict[str, Any] = {}
        span = self._tracing.start_request(topic, method, extensions)
        try:
            waiter = self._send(topic, method, args, timeout_s, extensions)
            span.set_request_id(waiter.request_id.hex())
            # Not kept while the request waits.
            del extensions
            try:
                response = await waiter
            finally:
                # Whatever happened, the slot is freed at once: a late reply finds
                # no entry and is dropped.
                self._pending.remove(waiter)
            result = result_of(response, topic, method, args)
            outcome = "ok"
            return result
        except TasqRequestError as exc:
            # First: TasqRequestTimeoutError is also an OSError.
            outcome = outcome_of(exc)
            raise
        except (RequestExpired, ReplyTooLarge, ClientClosed, RedisError, OSError) as exc:
            assert waiter is not None, "only a sent request's waiter carries these errors"
            error = self._failure(exc, waiter, topic, method, args, timeout_s)
            outcome = outcome_of(error)
            # Redis errors stay chained for their traceback; the internal signals do not.
            raise error from (exc if isinstance(exc, RedisError | OSError) else None)
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            span.set_outcome(outcome)
            span.end()
            self._observer.request_finished(topic, method, outcome, time.monotonic() - started)

    async def serve(
        self,
        topic: str,
        handlers: Mapping[str, Handler] | None = None,
        handler: DefaultHandler | None = None,
        *,
        threads: int = 1,
        cancel_at_deadline: bool = True,
        recheck_interval_s: float = 1.0,
        at_least_once: bool = False,
        lease_s: float = 10.0,
    ) -> TasqServer:
        """Start serving ``topic`` and return the running server.

        ``handlers`` maps method names to functions called with the args;
        ``handler`` is called as ``handler(method, args)`` for any other method.
        ``threads`` is the maximum number of handlers running at once. Async
        functions are awaited; plain functions run in a thread pool of ``threads``
        threads. A handler still running at its caller's deadline is cancelled
        unless ``cancel_at_deadline`` is false. While idle, the server looks for
        tasks every ``recheck_interval_s`` seconds even without notifications.

        By default a task is taken once and lost if its server dies while running
        it (at-most-once). With ``at_least_once``, the server keeps a lease of
        ``lease_s`` seconds on each running task and renews it. A task whose server
        died is run again by another server of the topic once its lease expires,
        if its deadline has not passed. Handlers must then be idempotent, and
        every server of the topic should use the same mode.

        Raises ValueError for a bad topic, method name or option, or when this
        client already serves ``topic``.
        """
        self._check_running()
        check_serve_options(topic, handlers or {}, handler, threads, recheck_interval_s)
        if not lease_s > 0:
            raise ValueError(f"Invalid lease_s {lease_s!r}: give a positive number of seconds.")
        if topic in self._servers:
            raise ValueError(f"This Tasq client already serves topic {topic!r}; serve each topic once.")

        server = TasqServer(
            redis=self._redis,
            listener=self._listener,
            batcher=self._batcher,
            observer=self._observer,
            topic=topic,
            handlers=handlers or {},
            default_handler=handler,
            threads=threads,
            cancel_at_deadline=cancel_at_deadline,
            max_message_bytes=self._max_message_bytes,
            recheck_interval_s=recheck_interval_s,
            tracing=self._tracing,
            at_least_once=at_least_once,
            lease_s=lease_s,
        )
        self._servers[topic] = server
        try:
            await server.start()
        except BaseException:
            del self._servers[topic]
            raise
        return server

    def _send(
        self, topic: str, method: str, args: Any, timeout_s: float, extensions: dict[str, Any]
    ) -> Waiter:
        if timeout_s <= 0:
            raise no_time_left(topic, method, args)

        deadline_unix_s = time.time() + timeout_s
        waiter = self._pending.add(timeout_s)
        try:
            payload = self._encode_request(waiter.request_id, deadline_unix_s, method, args, extensions)
        except BaseException:
            self._pending.remove(waiter)
            raise
        self._batcher.push(_protocol.topic_key(topic), payload, deadline_unix_s * 1000, waiter)
        return waiter

    def _failure(
        self, exc: BaseException, waiter: Waiter, topic: str, method: str, args: Any, timeout_s: float
    ) -> TasqRequestError:
        request_id = waiter.request_id.hex()
        return failure_of(
            exc, RequestCall(topic, method, args, request_id, timeout_s, self._max_message_bytes)
        )

    def _encode_request(
        self, request_id: bytes, deadline_unix_s: float, method: str, args: Any, extensions: dict[str, Any]
    ) -> bytes:
        deadline_ms = _protocol.to_deadline_ms(deadline_unix_s)
        extensions[_protocol.EXTENSION_SENT_AT_MS] = _protocol.to_deadline_ms(time.time())
        if self._sharded_replies is not None:
            extensions[_protocol.EXTENSION_REPLY] = _protocol.REPLY_SHARDED
        payload = _protocol.encode_request(
            self._client_id, request_id, deadline_ms, method, args, args is not None, extensions
        )
        if len(payload) > self._max_message_bytes:
            raise TasqEncodeError(
                f"Request to method {method!r} is {len(payload)} bytes, over the maximum of "
                f"{self._max_message_bytes} bytes. Send less data or raise max_message_bytes."
            )
        return payload

    def _on_reply(self, data: bytes) -> None:
        if len(data) > self._max_message_bytes:
            self._fail_oversized_reply(data)
            return
        try:
            response = _protocol.decode_response(data, max_bytes=self._max_message_bytes)
        except TasqProtocolError as exc:
            logger.warning("Dropped a malformed reply on channel=%s: %s", self._reply_channel, exc)
            return

        waiter = self._pending.get(response.request_id)
        if waiter is None or waiter.done():
            logger.debug(
                "Dropped a reply to a request that is no longer pending: request_id=%s",
                response.request_id.hex(),
            )
            return
        waiter.set_result(response)

    def _fail_oversized_reply(self, data: bytes) -> None:
        request_id = _protocol.peek_response_request_id(data)
        logger.warning(
            "Dropped a reply of %d bytes, over the maximum of %d bytes: request_id=%s",
            len(data),
            self._max_message_bytes,
            request_id.hex() if request_id is not None else "unknown",
        )
        waiter = self._pending.get(request_id) if request_id is not None else None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ReplyTooLarge(len(data)))

    def _check_running(self) -> None:
        if self._state is _State.CREATED:
            raise RuntimeError("This Tasq client is not started; use create_tasq() or await start().")
        if self._state is _State.CLOSED:
            raise RuntimeError("This Tasq client is closed; create a new one with create_tasq().")

    def _spawn(self, coroutine: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coroutine, name=name)
        self._background.add(task)
        task.add_done_callback(self._on_background_done)

    def _on_background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "Background task %s of the Tasq client died.", task.get_name(), exc_info=task.exception()
            )

    async def _stop_background(self) -> None:
        await cancel_and_wait(self._background)
        self._batcher.fail_queued(ConnectionError("the Tasq client was closed"))
        await self._batcher.aclose()

    def _fail_pending(self) -> None:
        self._pending.fail_all()
