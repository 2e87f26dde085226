"""Hooks through which metrics and tracing learn what clients and servers do."""

from __future__ import annotations

import logging
from typing import Protocol

__all__ = ["TasqObserver"]

logger = logging.getLogger(__name__)


class TasqObserver(Protocol):
    """Receives events from a Tasq client and its servers.

    Methods are called on the event loop, must return quickly and should not raise;
    an exception from an observer is logged and otherwise ignored. Durations are in
    seconds.

    Request outcomes: ``ok``, ``rejected``, ``invalid_args``, ``unknown_method``,
    ``timeout``, ``error`` (Redis failed) and ``cancelled`` (the caller gave up).
    Task outcomes: ``ok``, ``rejected``, ``invalid_args``, ``unknown_method``,
    ``deadline_exceeded`` (cancelled at its deadline), ``reply_failed`` and
    ``cancelled`` (the server closed before the handler finished).
    Drop reasons: ``expired`` and ``malformed``.
    """

    def request_finished(self, topic: str, method: str, outcome: str, duration_s: float) -> None:
        """Record the end of a request sent by the client."""

    def task_started(self, topic: str, method: str) -> None:
        """Record that a server started a handler."""

    def task_finished(self, topic: str, method: str, outcome: str, duration_s: float) -> None:
        """Record the end of a handler run."""

    def task_dropped(self, topic: str, reason: str) -> None:
        """Record a task that was taken from the queue but not run."""


class NullObserver:
    """An observer that ignores every event."""

    def request_finished(self, topic: str, method: str, outcome: str, duration_s: float) -> None:
        pass

    def task_started(self, topic: str, method: str) -> None:
        pass

    def task_finished(self, topic: str, method: str, outcome: str, duration_s: float) -> None:
        pass

    def task_dropped(self, topic: str, reason: str) -> None:
        pass


class SafeObserver:
    """Forwards events to another observer, logging what it raises instead of raising."""

    def __init__(self, observer: TasqObserver) -> None:
        self._observer = observer

    def request_finished(self, topic: str, method: str, outcome: str, duration_s: float) -> None:
        try:
            self._observer.request_finished(topic, method, outcome, duration_s)
        except Exception:
            logger.exception("Observer failed on request_finished: topic=%s method=%s", topic, method)

    def task_started(self, topic: str, method: str) -> None:
        try:
            self._observer.task_started(topic, method)
        except Exception:
            logger.exception("Observer failed on task_started: topic=%s method=%s", topic, method)

    def task_finished(self, topic: str, method: str, outcome: str, duration_s: float) -> None:
        try:
            self._observer.task_finished(topic, method, outcome, duration_s)
        except Exception:
            logger.exception("Observer failed on task_finished: topic=%s method=%s", topic, method)

    def task_dropped(self, topic: str, reason: str) -> None:
        try:
            self._observer.task_dropped(topic, reason)
        except Exception:
            logger.exception("Observer failed on task_dropped: topic=%s reason=%s", topic, reason)
