"""The server side: takes tasks of one topic from Redis and runs their handlers."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoPermissionError, RedisError

from . import _protocol
from ._batcher import CommandBatcher
from ._connect import RedisClient
from ._errors import TasqProtocolError
from ._execution import DefaultHandler, Handler, HandlerRunner
from ._leases import LeaseKeeper
from ._listener import PubSubListener
from ._observer import TasqObserver
from ._presence import PRESENCE_INTERVAL_S, Announcer
from ._protocol import Request, ResponseStatus
from ._redis import execute
from ._taker import BlockingTaker
from ._tasks import cancel_and_wait
from ._tracing import NoTracing, Tracing

__all__ = ["DefaultHandler", "Handler", "TasqServer"]

logger = logging.getLogger(__name__)

# Pause after a failed LPOP before trying again, in seconds.
_RETRY_DELAY_S = 0.1

# Maximum number of tasks in one take. Taking every queued task makes client and server
# work in turns: the server runs the whole batch before any reply leaves, while the
# client waits, then the client handles all replies while the server waits. Smaller
# takes let the replies of one batch travel while the next batch runs, so both sides
# stay busy. Clients of this library also write at most half their requests in flight
# per batch. With that split, 32 gave the best throughput from 16 to 128 requests in
# flight in one sweep on 2 cores: 16 lost a sixth at 64 in flight, and 64 an eighth at 32.
_MAX_TASKS_PER_TAKE = 32

# Maximum bytes of tasks in one take, estimated from the largest task of the last take.
# A take's whole reply must arrive within the read's time bound, or its tasks, already
# removed from the list, are lost. 32 tasks of 15 MiB (480 MiB) can take longer than
# that on a busy machine.
# NOTE: the first take after a run of small tasks may still bring 32 tasks, whatever
# their size.
_MAX_BYTES_PER_TAKE = 4 * 1024 * 1024

# Time a BLMPOP may take beyond its own timeout to return after the server closes, in seconds.
_TAKE_MARGIN_S = 1.0


def _blocking_taker(
    redis: RedisClient, key: str, block_s: float, at_least_once: bool
) -> BlockingTaker | None:
    # NOTE: on a Redis Cluster the server keeps taking tasks with LPOP after
    # notifications: the blocked connection would have to follow its key's node
    # through failovers, which redis-py's cluster client does only for its own
    # commands. At-least-once delivery leases each task in the same script as the
    # LPOP, which BLMPOP cannot join.
    if at_least_once or isinstance(redis, RedisCluster):
        return None
    return BlockingTaker(redis, key, block_s)


class _State(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class TasqServer:
    """Serves one topic: runs up to ``threads`` handlers at once.

    Created by :meth:`Tasq.serve`; stop it with :meth:`aclose`. A take gets at most
    as many tasks as there are free slots and at most 32; after a take of large
    tasks, at most about 4 MiB of tasks the size of that take's largest. On a
    single Redis or through Sentinel the server waits in ``BLMPOP`` on a connection
    of its own. On a Redis Cluster, and with at-least-once delivery, it sends
    ``LPOP key count`` after every notification, after every (re)subscription and
    every ``recheck_interval_s`` seconds while idle, so a task pushed without a
    notification is still found.

    Errors a handler raises reach the caller as a rejected request carrying the
    exception's class name and message (at most 1,000 characters). The traceback
    and the exception's module stay on the server, where they are logged.
    """

    def __init__(
        self,
        *,
        redis: RedisClient,
        listener: PubSubListener,
        batcher: CommandBatcher,
        observer: TasqObserver,
        topic: str,
        handlers: Mapping[str, Handler],
        default_handler: DefaultHandler | None,
        threads: int,
        cancel_at_deadline: bool,
        max_message_bytes: int,
        recheck_interval_s: float,
        at_least_once: bool = False,
        lease_s: float = 10.0,
        tracing: Tracing | None = None,
    ) -> None:
        self._redis = redis
        self._listener = listener
        self._batcher = batcher
        self._observer = observer
        self._topic = topic
        self._key = _protocol.topic_key(topic)
        self._runner = HandlerRunner(
            topic=topic,
            handlers=handlers,
            default_handler=default_handler,
            threads=threads,
            cancel_at_deadline=cancel_at_deadline,
            max_message_bytes=max_message_bytes,
        )
        self._threads = threads
        self._max_message_bytes = max_message_bytes
        self._recheck_interval_s = recheck_interval_s

        self._state = _State.CREATED
        self._wakeup = asyncio.Event()
        self._maybe_more = True
        # Running tasks and the raw queue item each one came from.
        self._tasks: dict[asyncio.Task[None], bytes] = {}
        self._leases = LeaseKeeper(redis, topic, lease_s) if at_least_once else None
        self._taker = _blocking_taker(redis, self._key, recheck_interval_s, at_least_once)
        # Whether a BLMPOP is in flight, which closing must not cancel.
        self._taking = False
        self._lease_s = lease_s
        self._lease_task: asyncio.Task[None] | None = None
        self._announcer = Announcer(redis, topic)
        self._tracing: Tracing = tracing if tracing is not None else NoTracing()
        self._presence_task: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._processed = 0
        self._pop_failures = 0
        # Size in bytes of the largest task of the last take that brought any.
        self._last_largest_task = 0

    @property
    def topic(self) -> str:
        """The topic this server serves."""
        return self._topic

    @property
    def threads(self) -> int:
        """The maximum number of handlers running at once."""
        return self._threads

    @property
    def running(self) -> int:
        """The number of handlers running now."""
        return len(self._tasks)

    @property
    def processed(self) -> int:
        """The number of tasks taken from the queue and finished, whatever the outcome."""
        return self._processed

    @property
    def is_alive(self) -> bool:
        """Whether the server is running and its loop has not died."""
        task = self._loop_task
        return self._state is _State.RUNNING and task is not None and not task.done()

    async def queue_depth(self) -> int:
        """Return the number of tasks waiting in the topic's list."""
        return int(await execute(self._redis, "LLEN", self._key))

    async def start(self) -> None:
        """Subscribe to the topic's notifications and start taking tasks."""
        if self._state is not _State.CREATED:
            raise RuntimeError(f"The server for topic {self._topic!r} was already started.")

        if self._taker is None:
            await self._subscribe()
        self._state = _State.RUNNING
        self._loop_task = asyncio.create_task(self._run(), name=f"tasq-server-{self._topic}")
        self._loop_task.add_done_callback(self._on_loop_done)
        self._presence_task = asyncio.create_task(
            self._publish_presence(), name=f"tasq-presence-{self._topic}"
        )
        if self._leases is not None:
            self._lease_task = asyncio.create_task(
                self._renew_leases(self._leases), name=f"tasq-leases-{self._topic}"
            )
        logger.info(
            "Server started: topic=%s threads=%d delivery=%s take=%s",
            self._topic,
            self._threads,
            "at-most-once" if self._leases is None else f"at-least-once lease_s={self._lease_s:g}",
            "LPOP after notifications" if self._taker is None else "BLMPOP",
        )

    async def _subscribe(self) -> None:
        await self._listener.subscribe(self._key, self._on_notification, self._on_notification)

    async def aclose(self, grace_s: float = 10.0) -> None:
        """Stop taking tasks, let running handlers finish, then cancel the rest.

        Handlers still running ``grace_s`` seconds after the call are cancelled.
        Under default delivery their callers get a ``TasqServerShutdown``
        rejection at once. With at-least-once delivery their leases are left to
        expire instead, so another server runs them again. Queued tasks stay in
        Redis for other servers. Calling it again does nothing.
        """
        if self._state in (_State.CLOSING, _State.CLOSED):
            return
        if self._state is _State.CREATED:
            self._state = _State.CLOSED
            return
        self._state = _State.CLOSING
        if self._taker is None:
            await self._listener.unsubscribe(self._key)
        await self._stop_loop()
        if self._taker is not None:
            await self._taker.aclose()

        cancelled = await self._drain(grace_s)
        if self._lease_task is not None:
            await cancel_and_wait([self._lease_task])
        if self._presence_task is not None:
            await cancel_and_wait([self._presence_task])
            await self._announcer.withdraw()
        self._runner.close()
        self._state = _State.CLOSED
        logger.info(
            "Server stopped: topic=%s processed=%d cancelled=%d",
            self._topic,
            self._processed,
            cancelled,
        )

    async def _stop_loop(self) -> None:
        if self._loop_task is None:
            return
        if self._taker is not None and self._taking:
            # Cancelling a BLMPOP in flight could lose the tasks Redis is already
            # sending. Ending the BLMPOP lets the loop see the closing state and stop,
            # and tasks it took still run within the grace period. A loop waiting for
            # a free slot has nothing in flight and is cancelled at once.
            await self._taker.interrupt()
            await asyncio.wait([self._loop_task], timeout=self._recheck_interval_s + _TAKE_MARGIN_S)
        await cancel_and_wait([self._loop_task])

    async def _drain(self, grace_s: float) -> int:
        if not self._tasks:
            return 0
        _done, pending = await asyncio.wait(list(self._tasks), timeout=grace_s)
        await cancel_and_wait(pending)
        return len(pending)

    def _on_notification(self, _message: bytes | None = None) -> None:
        self._maybe_more = True
        self._wakeup.set()

    def _on_loop_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "Server loop for topic=%s died; the server takes no more tasks.",
                self._topic,
                exc_info=task.exception(),
            )

    async def _run(self) -> None:
        if self._taker is not None:
            await self._run_blocking(self._taker)
            if self._state is not _State.RUNNING:
                return
            await self._subscribe()
        await self._run_notified()

    async def _run_blocking(self, taker: BlockingTaker) -> None:
        # Returns when the server closes, or when Redis denies BLMPOP, after which
        # the server takes tasks after notifications instead.
        while self._state is _State.RUNNING:
            free = self._threads - len(self._tasks)
            if free <= 0:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            self._taking = True
            try:
                items = await self._take(taker.take, min(free, self._take_limit()), denied_raises=True)
            except NoPermissionError as exc:
                logger.error(
                    "Redis denies BLMPOP for topic=%s: %s. Grant +blmpop to the Redis user; "
                    "until then the server takes tasks with LPOP after notifications, one "
                    "round trip slower.",
                    self._topic,
                    exc,
                )
                self._taker = None
                await taker.aclose()
                return
            finally:
                self._taking = False
            for raw in items:
                self._start_task(raw)

    async def _run_notified(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # A plain timer rather than asyncio.timeout(): on Python 3.11 a timeout
            # expiring next to aclose()'s cancel() can swallow that cancellation.
            recheck = loop.call_later(self._recheck_interval_s, self._on_notification)
            try:
                await self._wakeup.wait()
            finally:
                recheck.cancel()
            self._wakeup.clear()
            await self._fill_slots()

    async def _fill_slots(self) -> None:
        # Clear the flag before each LPOP: a notification arriving meanwhile sets it
        # again, so a task pushed just after an empty LPOP is never missed.
        while self._maybe_more and len(self._tasks) < self._threads:
            self._maybe_more = False
            count = min(self._threads - len(self._tasks), self._take_limit())
            items = await self._pop(count)
            for raw in items:
                self._start_task(raw)
            if len(items) == count:
                self._maybe_more = True

    async def _pop(self, count: int) -> list[bytes]:
        if self._leases is not None:
            return await self._take(self._leases.take, count)
        return await self._take(self._lpop, count)

    async def _lpop(self, count: int) -> list[bytes]:
        items = await execute(self._redis, "LPOP", self._key, count)
        return list(items) if items else []

    async def _take(
        self, take: Callable[[int], Awaitable[list[bytes]]], count: int, *, denied_raises: bool = False
    ) -> list[bytes]:
        try:
            items = await take(count)
        except (RedisError, OSError) as exc:
            if denied_raises and isinstance(exc, NoPermissionError):
                raise
            self._pop_failures += 1
            if self._pop_failures == 1:
                logger.warning("Taking tasks for topic=%s failed, retrying: %r", self._topic, exc)
            self._maybe_more = True
            await asyncio.sleep(_RETRY_DELAY_S)
            return []

        if items:
            self._last_largest_task = max(len(item) for item in items)
        if self._pop_failures:
            logger.info(
                "Taking tasks for topic=%s works again after %d failures.", self._topic, self._pop_failures
            )
            self._pop_failures = 0
        return items

    def _take_limit(self) -> int:
        by_size = _MAX_BYTES_PER_TAKE // max(1, self._last_largest_task)
        return max(1, min(_MAX_TASKS_PER_TAKE, by_size))

    def _start_task(self, raw: bytes) -> None:
        task = asyncio.create_task(self._handle(raw))
        self._tasks[task] = raw
        task.add_done_callback(self._on_task_done)

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        self._processed += 1
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "Task of topic=%s failed outside its handler.", self._topic, exc_info=task.exception()
            )
        if self._maybe_more or self._taker is not None:
            self._wakeup.set()

    async def _handle(self, raw: bytes) -> None:
        # A cancelled task (the server is closing) keeps its lease, so that it
        # expires and another server runs the task.
        await self._process(raw)
        if self._leases is not None:
            await self._release(raw, self._leases)

    async def _release(self, raw: bytes, leases: LeaseKeeper) -> None:
        try:
            await self._batcher.command(*leases.release_command(raw))
        except (RedisError, OSError) as exc:
            logger.warning(
                "Ending the lease of a finished task of topic=%s failed, so it may run again: %r",
                self._topic,
                exc,
            )

    async def _renew_leases(self, leases: LeaseKeeper) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            try:
                await leases.renew_and_requeue(list(self._tasks.values()))
            except (RedisError, OSError) as exc:
                logger.warning("Renewing the leases of topic=%s failed: %r", self._topic, exc)

    async def _publish_presence(self) -> None:
        while True:
            facts = {
                "topic": self._topic,
                "methods": self._runner.method_names,
                "default_handler": self._runner.has_default_handler,
                "threads": self._threads,
                "running": self.running,
                "processed": self._processed,
                "delivery": "at-most-once" if self._leases is None else "at-least-once",
            }
            try:
                await self._announcer.announce(facts)
            except (RedisError, OSError) as exc:
                logger.debug("Publishing the presence of topic=%s failed: %r", self._topic, exc)
            await asyncio.sleep(PRESENCE_INTERVAL_S)

    async def _process(self, raw: bytes) -> None:
        try:
            request = _protocol.decode_request(raw, max_bytes=self._max_message_bytes)
        except TasqProtocolError as exc:
            logger.warning("Dropped a malformed task of topic=%s: %s", self._topic, exc)
            self._observer.task_dropped(self._topic, "malformed")
            return

        if request.deadline_unix_s <= time.time():
            logger.info(
                "Dropped an expired task: topic=%s method=%s request_id=%s",
                self._topic,
                request.method,
                request.request_id.hex(),
            )
            self._observer.task_dropped(self._topic, "expired")
            return

        await self._run_and_reply(request)

    async def _run_and_reply(self, request: Request) -> None:
        started = time.monotonic()
        self._observer.task_started(self._topic, request.method)
        # Only a closing server cancels its tasks, so a task ended by cancellation counts as "cancelled".
        outcome = "cancelled"
        request_id = request.request_id.hex()
        with self._tracing.task_span(self._topic, request.method, request_id, request.extensions) as span:
            try:
                outcome, reply = await self._runner.run(request)
                if reply is not None and not await self._send_reply(request, reply):
                    outcome = "reply_failed"
            except asyncio.CancelledError:
                self._reject_abandoned(request)
                raise
            finally:
                span.set_outcome(outcome)
                self._observer.task_finished(self._topic, request.method, outcome, time.monotonic() - started)

    def _reject_abandoned(self, request: Request) -> None:
        # The server is closing and the grace period ran out. With at-least-once
        # delivery another server runs the task again, so the caller keeps waiting;
        # otherwise the caller learns at once instead of at its deadline.
        logger.warning(
            "Handler abandoned at shutdown: topic=%s method=%s request_id=%s%s",
            self._topic,
            request.method,
            request.request_id.hex(),
            ""
            if self._runner.is_async(request.method)
            else " (its thread runs on until the function returns)",
        )
        if self._leases is not None:
            return
        detail = {
            "type": "TasqServerShutdown",
            "message": "the server shut down before the handler finished; the handler may have "
            "had effects, so retry only if the method is safe to repeat",
        }
        reply = _protocol.encode_response(request.request_id, ResponseStatus.REJECTED, detail=detail)
        # This task is being cancelled and cannot await the write; the batcher owns it.
        written = self._batcher.command(*self._reply_command(request, reply))
        written.add_done_callback(self._log_failed_write)

    def _log_failed_write(self, written: asyncio.Future[Any]) -> None:
        if not written.cancelled() and written.exception() is not None:
            logger.warning(
                "Rejecting an abandoned task of topic=%s failed: %r", self._topic, written.exception()
            )

    def _reply_command(self, request: Request, reply: bytes) -> tuple[Any, ...]:
        channel = _protocol.client_channel(request.client_id)
        sharded = request.extensions.get(_protocol.EXTENSION_REPLY) == _protocol.REPLY_SHARDED
        return ("SPUBLISH" if sharded else "PUBLISH", channel, reply)

    async def _send_reply(self, request: Request, reply: bytes) -> bool:
        try:
            await self._batcher.command(*self._reply_command(request, reply))
        except (RedisError, OSError) as exc:
            logger.warning(
                "Reply failed: topic=%s method=%s request_id=%s error=%r",
                self._topic,
                request.method,
                request.request_id.hex(),
                exc,
            )
            return False
        return True
