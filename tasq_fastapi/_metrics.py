"""Prometheus metrics for one app's Tasq client and servers.

Each `TasqMetrics` owns its own `CollectorRegistry`, so several apps in one
process (tests, one-process deployments) never share or collide on series.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ._observer import TasqObserver

logger = logging.getLogger(__name__)

# Callers choose method names, so each unregistered name would add a new
# label value. Tasks for unregistered methods share this label value instead.
UNKNOWN_METHOD_LABEL = "(unknown)"

_LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class TasqMetrics:
    """A `TasqObserver` that records Tasq traffic as Prometheus metrics.

    Series (durations in seconds):

    - `tasq_requests_total{topic,method,outcome}` and
      `tasq_request_duration_seconds{topic,method}`: requests this app sent;
    - `tasq_tasks_total{topic,method,outcome}` and
      `tasq_task_duration_seconds{topic,method}`: tasks this app's servers handled;
    - `tasq_tasks_running{topic}`: handlers running now;
    - `tasq_queue_depth{topic}`: tasks waiting, read on each scrape, NaN while Redis
      cannot be read;
    - `tasq_redis_up`: 1 if the last scrape could read Redis, 0 if not;
    - `tasq_tasks_dropped_total{topic,reason}`: tasks dropped as expired or malformed.

    Observer methods catch and log their own errors, so they never raise into the core.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Create the metrics in `registry`, or in a new registry if none is given."""
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)

        self._requests = Counter(
            "tasq_requests",
            "Tasq requests sent, by topic, method and outcome.",
            ["topic", "method", "outcome"],
            registry=self.registry,
        )
        self._request_duration = Histogram(
            "tasq_request_duration_seconds",
            "Time from sending a Tasq request to its reply or timeout, in seconds.",
            ["topic", "method"],
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._tasks = Counter(
            "tasq_tasks",
            "Tasq tasks handled by this app's servers, by topic, method and outcome.",
            ["topic", "method", "outcome"],
            registry=self.registry,
        )
        self._task_duration = Histogram(
            "tasq_task_duration_seconds",
            "Time a handler ran, including its dependencies, in seconds.",
            ["topic", "method"],
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._running = Gauge(
            "tasq_tasks_running",
            "Tasq handlers running now.",
            ["topic"],
            registry=self.registry,
        )
        self._queue_depth = Gauge(
            "tasq_queue_depth",
            "Tasks waiting in the topic's queue when last refreshed.",
            ["topic"],
            registry=self.registry,
        )
        self._redis_up = Gauge(
            "tasq_redis_up",
            "1 if the last Redis read of a metrics scrape succeeded, 0 if it failed.",
            registry=self.registry,
        )
        self._dropped = Counter(
            "tasq_tasks_dropped",
            "Tasq tasks dropped without running, by topic and reason (expired, malformed).",
            ["topic", "reason"],
            registry=self.registry,
        )

    def request_finished(self, topic: str, method: str, outcome: str, duration_s: float) -> None:
        """Count one request this app sent and observe its latency."""
        try:
            self._requests.labels(topic, method, outcome).inc()
            self._request_duration.labels(topic, method).observe(duration_s)
        except Exception:
            logger.exception("Recording request metrics failed for topic=%s method=%s", topic, method)

    def task_started(self, topic: str, method: str) -> None:
        """Count one more running handler on `topic`."""
        try:
            self._running.labels(topic).inc()
        except Exception:
            logger.exception("Recording task start failed for topic=%s method=%s", topic, method)

    def task_finished(self, topic: str, method: str, outcome: str, duration_s: float) -> None:
        """Count one handled task, observe its duration and decrement running handlers."""
        method_label = UNKNOWN_METHOD_LABEL if outcome == "unknown_method" else method
        try:
            self._running.labels(topic).dec()
            self._tasks.labels(topic, method_label, outcome).inc()
            self._task_duration.labels(topic, method_label).observe(duration_s)
        except Exception:
            logger.exception("Recording task metrics failed for topic=%s method=%s", topic, method)

    def task_dropped(self, topic: str, reason: str) -> None:
        """Count one task dropped before running."""
        try:
            self._dropped.labels(topic, reason).inc()
        except Exception:
            logger.exception("Recording a dropped task failed for topic=%s reason=%s", topic, reason)

    def set_queue_depth(self, topic: str, depth: int | None) -> None:
        """Record the number of tasks waiting on `topic`; None (unknown) records NaN.

        A stale number would look like a healthy queue while Redis is unreachable.
        """
        self._queue_depth.labels(topic).set(math.nan if depth is None else depth)
        self._redis_up.set(0 if depth is None else 1)

    def declare_topics(self, topics: Iterable[str]) -> None:
        """Create zero-valued running and queue series, so served topics show before traffic."""
        for topic in topics:
            self._running.labels(topic)
            self._queue_depth.labels(topic)

    def render(self) -> bytes:
        """Return every metric in the Prometheus text exposition format."""
        return generate_latest(self.registry)


class FanOutObserver:
    """A `TasqObserver` that forwards every event to several observers.

    An observer that raises despite the core contract is logged and skipped,
    so one faulty observer cannot stop the others or the core.
    """

    def __init__(self, observers: Iterable[TasqObserver]) -> None:
        """Forward events to each of `observers`, in order."""
        self._observers = tuple(observers)

    def request_finished(self, topic: str, method: str, outcome: str, duration_s: float) -> None:
        """Forward a finished request."""
        for observer in self._observers:
            try:
                observer.request_finished(topic, method, outcome, duration_s)
            except Exception:
                logger.exception(
                    "Observer %r failed on request_finished topic=%s method=%s", observer, topic, method
                )

    def task_started(self, topic: str, method: str) -> None:
        """Forward a started task."""
        for observer in self._observers:
            try:
                observer.task_started(topic, method)
            except Exception:
                logger.exception(
                    "Observer %r failed on task_started topic=%s method=%s", observer, topic, method
                )

    def task_finished(self, topic: str, method: str, outcome: str, duration_s: float) -> None:
        """Forward a finished task."""
        for observer in self._observers:
            try:
                observer.task_finished(topic, method, outcome, duration_s)
            except Exception:
                logger.exception(
                    "Observer %r failed on task_finished topic=%s method=%s", observer, topic, method
                )

    def task_dropped(self, topic: str, reason: str) -> None:
        """Forward a dropped task."""
        for observer in self._observers:
            try:
                observer.task_dropped(topic, reason)
            except Exception:
                logger.exception(
                    "Observer %r failed on task_dropped topic=%s reason=%s", observer, topic, reason
                )
