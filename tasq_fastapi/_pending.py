"""The requests a client is waiting on: their futures and their deadlines.

A pending request costs what its caller must hold anyway plus a small future. Its
deadline shares a timer with every request whose deadline falls in the same
millisecond (:class:`DeadlineTimers`).
"""

from __future__ import annotations

import asyncio
import os

from . import _protocol
from ._deadlines import DeadlineTimers
from ._protocol import Response
from ._replies import ClientClosed, RequestExpired

# Request ids are drawn from one buffer of random bytes, refilled when used up:
# one os.urandom() call per 1,024 requests instead of one per request.
_RANDOM_BUFFER_IDS = 1024


class Waiter(asyncio.Future[Response]):
    """The future a request's caller awaits, with its request id and deadline key."""

    __slots__ = ("deadline_key", "request_id")

    request_id: bytes
    deadline_key: int


class PendingRequests:
    """Pending requests by request id, failed with :class:`RequestExpired` at their deadline."""

    def __init__(self) -> None:
        self._waiters: dict[bytes, Waiter] = {}
        self._deadlines: DeadlineTimers[Waiter] = DeadlineTimers(_expire)
        self._random = b""
        self._random_offset = 0

    def __len__(self) -> int:
        return len(self._waiters)

    @property
    def timers(self) -> int:
        """The number of deadline timers running."""
        return len(self._deadlines)

    def add(self, timeout_s: float) -> Waiter:
        """Register a new request that expires in ``timeout_s`` seconds and return its waiter."""
        waiter = Waiter(loop=asyncio.get_running_loop())
        waiter.request_id = self._new_request_id()
        waiter.deadline_key = self._deadlines.add(waiter, timeout_s)
        self._waiters[waiter.request_id] = waiter
        return waiter

    def get(self, request_id: bytes) -> Waiter | None:
        """Return the waiter of a pending request, or None."""
        return self._waiters.get(request_id)

    def remove(self, waiter: Waiter) -> None:
        """Forget a request, whatever its outcome; a late reply then finds nothing."""
        self._waiters.pop(waiter.request_id, None)
        self._deadlines.remove(waiter, waiter.deadline_key)

    def fail_all(self) -> None:
        """Fail every pending request with :class:`ClientClosed`; used when the client closes."""
        error = ClientClosed()
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(error)
        self._deadlines.clear()

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


def _expire(waiter: Waiter) -> None:
    if not waiter.done():
        waiter.set_exception(RequestExpired())
