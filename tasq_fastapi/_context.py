"""The request a handler is serving, visible through a context variable."""

from __future__ import annotations

import contextvars
import logging
import time
from dataclasses import dataclass

__all__ = ["TasqLogFilter", "TasqRequestContext", "get_request_context"]


@dataclass(slots=True, frozen=True)
class TasqRequestContext:
    """The request a handler is serving, as the handler can read it.

    ``deadline`` is the caller's deadline as Unix time in seconds, read from the
    request; the caller has given up after it.
    """

    topic: str
    method: str
    request_id: str
    client_id: str
    deadline: float

    def time_remaining(self) -> float:
        """Return the seconds left until the deadline; negative once it has passed."""
        return self.deadline - time.time()


_current: contextvars.ContextVar[TasqRequestContext | None] = contextvars.ContextVar(
    "tasq_request_context", default=None
)


def get_request_context() -> TasqRequestContext | None:
    """Return the request served by the calling handler, or None outside a handler.

    Works in async handlers, in plain handlers (which run in a worker thread) and in
    anything they call.
    """
    return _current.get()


def set_request_context(context: TasqRequestContext) -> contextvars.Token[TasqRequestContext | None]:
    """Make ``context`` current; pass the token to :func:`reset_request_context`."""
    return _current.set(context)


def reset_request_context(token: contextvars.Token[TasqRequestContext | None]) -> None:
    """Restore the context that was current before :func:`set_request_context`."""
    _current.reset(token)


class TasqLogFilter(logging.Filter):
    """Adds the current task's ``tasq_topic``, ``tasq_method`` and ``tasq_request_id`` to records.

    Outside a handler the three attributes are ``"-"``. Attach it to a handler and
    use the attributes in the format, for example
    ``"%(levelname)s %(tasq_topic)s.%(tasq_method)s %(tasq_request_id)s %(message)s"``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        record.tasq_topic = context.topic if context is not None else "-"
        record.tasq_method = context.method if context is not None else "-"
        record.tasq_request_id = context.request_id if context is not None else "-"
        return True
