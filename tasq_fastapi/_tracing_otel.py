"""The OpenTelemetry side of :mod:`._tracing`; imported only when tracing is on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ._tracing import (
    ATTRIBUTE_METHOD,
    ATTRIBUTE_OUTCOME,
    ATTRIBUTE_REQUEST_ID,
    ATTRIBUTE_SYSTEM,
    ATTRIBUTE_TOPIC,
    RequestSpan,
    SpanHandle,
    propagated,
)

_SYSTEM = "tasq"
_FAILED_OUTCOMES = frozenset(
    {"rejected", "invalid_args", "unknown_method", "timeout", "error", "reply_failed"}
)


class _OpenSpan:
    def __init__(self, span: Span) -> None:
        self._span = span

    def set_outcome(self, outcome: str) -> None:
        self._span.set_attribute(ATTRIBUTE_OUTCOME, outcome)
        if outcome in _FAILED_OUTCOMES:
            self._span.set_status(Status(StatusCode.ERROR, outcome))

    def set_request_id(self, request_id: str) -> None:
        self._span.set_attribute(ATTRIBUTE_REQUEST_ID, request_id)

    def end(self) -> None:
        self._span.end()


class OpenTelemetryTracing:
    """Spans from the global tracer provider, named after the topic and method."""

    def __init__(self) -> None:
        self._tracer = trace.get_tracer("tasq_fastapi")

    def start_request(self, topic: str, method: str, carrier: MutableMapping[str, Any]) -> RequestSpan:
        attributes = {ATTRIBUTE_SYSTEM: _SYSTEM, ATTRIBUTE_TOPIC: topic, ATTRIBUTE_METHOD: method}
        span = self._tracer.start_span(f"{topic}.{method}", kind=SpanKind.CLIENT, attributes=attributes)
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        return _OpenSpan(span)

    @contextlib.contextmanager
    def task_span(
        self, topic: str, method: str, request_id: str, carrier: Mapping[str, Any]
    ) -> Iterator[SpanHandle]:
        parent = propagate.extract(propagated(carrier))
        attributes = {
            ATTRIBUTE_SYSTEM: _SYSTEM,
            ATTRIBUTE_TOPIC: topic,
            ATTRIBUTE_METHOD: method,
            ATTRIBUTE_REQUEST_ID: request_id,
        }
        with self._tracer.start_as_current_span(
            f"{topic}.{method}", context=parent, kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            yield _OpenSpan(span)
