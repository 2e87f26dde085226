"""The requests a client is waiting on: their futures and their deadlines.

A pending request costs what its caller must hold anyway plus a small future. Its
deadline does not get a timer of its own: requests whose deadlines fall in the
same millisecond share one timer, which matters because an event loop timer costs
about 200 bytes on asyncio and over 500 on uvloop, and thousands of requests sent
together share a handful of milliseconds.
"""

from __future__ import annotations

import asyncio
import math
import os

from . import _protocol
from ._protocol import Response
from ._replies import ClientClosed, RequestExpired

# Request ids are drawn from one buffer of random bytes, refilled when used up:
# one os.urandom() call per 1,024 requests instead of one per request.
_RANDOM_BUFFER_IDS = 1024


class Waiter(asyncio.Future[Response]):
    """The future a request's caller awaits; it knows its request id and deadline slot."""

    __slots__ = ("deadline_key", "request_id")

    request_id: bytes
    deadline_key: int


class PendingRequests:
    """Pending requests by request id, failed with :class:`RequestExpired` at their deadline.

    Deadlines are rounded up to the next millisecond of the event loop's clock, so a
    request never expires early and at most one millisecond late.
    """

    def __init__(self) -> None:
        self._waiters: dict[bytes, Waiter] = {}
        self._by_deadline: dict[int, set[Waiter]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._random = b""
        self._random_offset = 0

    def __len__(self) -> int:
        return len(self._waiters)

    def add(self, timeout_s: float) -> Waiter:
        """Register a new request that expires in ``timeout_s`` seconds and return its waiter."""
        loop = asyncio.get_running_loop()
        waiter = Waiter(loop=loop)
        waiter.request_id = self._new_request_id()
        self._waiters[waiter.request_id] = waiter

        key = math.ceil((loop.time() + timeout_s) * 1000)
        waiter.deadline_key = key
        same_deadline = self._by_deadline.get(key)
        if same_deadline is None:
            same_deadline = self._by_deadline[key] = set()
            self._timers[key] = loop.call_at(key / 1000, self._expire, key)
        same_deadline.add(waiter)
        return waiter

    def get(self, request_id: bytes) -> Waiter | None:
        """Return the waiter of a pending request, or None."""
        return self._waiters.get(request_id)

    def remove(self, waiter: Waiter) -> None:
        """Forget a request, whatever its outcome; a late reply then finds nothing."""
        self._waiters.pop(waiter.request_id, None)
        same_deadline = self._by_deadline.get(waiter.deadline_key)
        if same_deadline is None:
            return
        same_deadline.discard(waiter)
        if not same_deadline:
            del self._by_deadline[waiter.deadline_key]
            self._timers.pop(waiter.deadline_key).cancel()

    def fail_all(self) -> None:
        """Fail every pending request with :class:`ClientClosed`; used when the client closes."""
        error = ClientClosed()
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(error)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._by_deadline.clear()

    def _expire(self, key: int) -> None:
        del self._timers[key]
        for waiter in self._by_deadline.pop(key, ()):
            if not waiter.done():
                waiter.set_exception(RequestExpired())

    def _new_request_id(self) -> bytes:
        size = _protocol.REQUEST_ID_BYTES
        while True:
            if self._random_offset + size > len(self._random):
                self._random = os.urandom(size * _RANDOM_BUFFER_IDS)
                self._random_offset = 0
            request_id = self._random[self._random_offset : self._random_offset + size]
            self._random_offset += size
            if request_id not in self._waiters:
                return request_id
