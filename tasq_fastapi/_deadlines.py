"""Deadline timers shared by everything whose deadline falls in the same millisecond.

Clients time out requests and servers cancel handlers at their callers' deadlines.
An event-loop timer per request would cost about 200 bytes on asyncio and over 500
on uvloop, plus its scheduling. Requests sent together mostly share a few
milliseconds of deadline, so one timer per millisecond serves them all.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

_Item = TypeVar("_Item", bound=Hashable)


class DeadlineTimers(Generic[_Item]):
    """Calls ``on_expiry(item)`` once an item's deadline has passed, unless it was removed.

    ``on_expiry`` runs as a timer callback and must not raise.

    Deadlines are rounded up to the next millisecond of the event loop's clock, so an
    item never expires early and at most one millisecond late.
    """

    def __init__(self, on_expiry: Callable[[_Item], None]) -> None:
        self._on_expiry = on_expiry
        self._items: dict[int, set[_Item]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}

    def add(self, item: _Item, delay_s: float) -> int:
        """Expire ``item`` in ``delay_s`` seconds; return the key that :meth:`remove` needs."""
        loop = asyncio.get_running_loop()
        key = math.ceil((loop.time() + delay_s) * 1000)
        same_deadline = self._items.get(key)
        if same_deadline is None:
            same_deadline = self._items[key] = set()
            self._timers[key] = loop.call_at(key / 1000, self._expire, key)
        same_deadline.add(item)
        return key

    def remove(self, item: _Item, key: int) -> None:
        """Forget ``item``; its timer is cancelled once no other item shares it."""
        same_deadline = self._items.get(key)
        if same_deadline is None:
            return
        same_deadline.discard(item)
        if not same_deadline:
            del self._items[key]
            self._timers.pop(key).cancel()

    def clear(self) -> None:
        """Forget every item and cancel every timer."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._items.clear()

    def __len__(self) -> int:
        """Return the number of timers running."""
        return len(self._timers)

    def _expire(self, key: int) -> None:
        del self._timers[key]
        for item in self._items.pop(key, ()):
            self._on_expiry(item)
