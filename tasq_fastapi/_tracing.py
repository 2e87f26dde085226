"""OpenTelemetry spans for requests and tasks, with the trace context inside the request.

Tracing is optional: this module imports nothing from OpenTelemetry until a client is
created with ``tracing=True``, and then needs the ``otel`` extra
(``opentelemetry-api``). A request gets a ``CLIENT`` span named ``<topic>.<method>``;
its W3C trace context travels in the request's extension map (keys ``traceparent``
and ``tracestate``, which Node.js servers ignore), and the server's ``SERVER`` span
for the task continues that trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, MutableMapping
from typing import Any, Protocol

# Attribute names of the spans; ``messaging.*`` follows OpenTelemetry's
# messaging conventions, ``tasq.*`` is this library's own.
ATTRIBUTE_SYSTEM = "messaging.system"
ATTRIBUTE_TOPIC = "messaging.destination.name"
ATTRIBUTE_METHOD = "tasq.method"
ATTRIBUTE_REQUEST_ID = "messaging.message.id"
ATTRIBUTE_OUTCOME = "tasq.outcome"

_PROPAGATED_KEYS = ("traceparent", "tracestate")


class SpanHandle(Protocol):
    """An open span, on which the client or server records the outcome."""

    def set_outcome(self, outcome: str) -> None:
        """Record the request's or task's outcome."""


class RequestSpan(SpanHandle, Protocol):
    """A request's span, opened by :meth:`Tracing.start_request` and ended by :meth:`end`."""

    def set_request_id(self, request_id: str) -> None:
        """Record the request id, once the request has one."""

    def end(self) -> None:
        """End the span."""


class Tracing(Protocol):
    """Opens spans for requests and tasks; see :func:`create_tracing`."""

    def start_request(self, topic: str, method: str, carrier: MutableMapping[str, Any]) -> RequestSpan:
        """Open a request's span and write its trace context into ``carrier``.

        The span does not become the current one: nothing runs inside it but the
        request itself. An explicit end, rather than a ``with`` block, keeps a
        pending request from holding a context manager's exit method.
        """

    def task_span(
        self, topic: str, method: str, request_id: str, carrier: Mapping[str, Any]
    ) -> contextlib.AbstractContextManager[SpanHandle]:
        """Open a task's span, continuing the trace found in ``carrier``."""


class _NoSpan:
    """A span that records nothing; one instance serves as its own context manager."""

    def set_outcome(self, outcome: str) -> None:
        pass

    def set_request_id(self, request_id: str) -> None:
        pass

    def end(self) -> None:
        pass

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


_NO_SPAN = _NoSpan()


class NoTracing:
    """The tracing of a client created without ``tracing=True``: no spans at all."""

    def start_request(self, topic: str, method: str, carrier: MutableMapping[str, Any]) -> RequestSpan:
        return _NO_SPAN

    def task_span(
        self, topic: str, method: str, request_id: str, carrier: Mapping[str, Any]
    ) -> contextlib.AbstractContextManager[SpanHandle]:
        return _NO_SPAN


def create_tracing(enabled: bool) -> Tracing:
    """Return the tracing to use: OpenTelemetry when ``enabled``, nothing otherwise.

    Raises ImportError with the install command when ``enabled`` and
    ``opentelemetry-api`` is missing.
    """
    if not enabled:
        return NoTracing()
    try:
        from ._tracing_otel import OpenTelemetryTracing
    except ImportError as exc:
        raise ImportError(
            "tracing=True needs OpenTelemetry, which is not installed. "
            "Install it with: pip install 'tasq-fastapi[otel]'"
        ) from exc
    return OpenTelemetryTracing()


def propagated(carrier: Mapping[str, Any]) -> dict[str, str]:
    """Return the trace context entries of an extension map, as text."""
    return {key: str(carrier[key]) for key in _PROPAGATED_KEYS if isinstance(carrier.get(key), str)}
