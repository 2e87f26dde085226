"""Exceptions raised by tasq-fastapi.

The hierarchy::

    TasqError
    ├── TasqRequestError              a request did not produce a result
    │   ├── TasqRequestTimeoutError       no reply before the deadline (also a TimeoutError)
    │   ├── TasqRequestUnknownMethodError no handler for the method on the server
    │   ├── TasqRequestRejectedError      the handler raised or its result could not be sent
    │   │   └── TasqRequestInvalidArgsError   the server rejected the args as invalid
    │   └── TasqConnectionError           Redis could not be reached (also a ConnectionError)
    ├── TasqEncodeError               a value cannot be written as CBOR (also a ValueError)
    ├── TasqProtocolError             bytes from Redis are not a valid Tasq message
    └── TasqInvalidArgsError          raised by a handler to reject its args (also a ValueError)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "TasqConnectionError",
    "TasqEncodeError",
    "TasqError",
    "TasqInvalidArgsError",
    "TasqProtocolError",
    "TasqRequestError",
    "TasqRequestInvalidArgsError",
    "TasqRequestRejectedError",
    "TasqRequestTimeoutError",
    "TasqRequestUnknownMethodError",
]


class TasqError(Exception):
    """Root of every exception this library raises on purpose."""


class TasqRequestError(TasqError):
    """A request to ``topic``/``method`` ended without a result.

    Attributes ``topic``, ``method`` and ``request_args`` describe the request and
    ``request_id`` is its hex id (None when it was never sent). The args are not
    called ``args`` because ``Exception.args`` already contains the message.
    """

    def __init__(
        self,
        message: str,
        *,
        topic: str,
        method: str,
        args: Any = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.topic = topic
        self.method = method
        self.request_args = args
        self.request_id = request_id

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self)!r}, topic={self.topic!r}, "
            f"method={self.method!r}, request_id={self.request_id!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not survive pickling by default.
        return (_rebuild, (type(self), str(self), self.__dict__))


def _rebuild(cls: type[TasqRequestError], message: str, state: dict[str, Any]) -> TasqRequestError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class TasqRequestTimeoutError(TasqRequestError, TimeoutError):
    """No reply arrived before the request's deadline.

    ``timeout_s`` is the time the caller allowed, in seconds. ``message`` replaces
    the default message when the cause is known to be something else.
    """

    def __init__(
        self,
        *,
        topic: str,
        method: str,
        args: Any = None,
        request_id: str | None = None,
        timeout_s: float,
        message: str | None = None,
    ) -> None:
        if message is None:
            message = (
                f"Request {topic!r}.{method!r} timed out after {timeout_s:g} s: no server for "
                f"topic {topic!r} replied in time. Check that a server serves this topic and "
                "is not saturated, or raise the timeout."
            )
        super().__init__(message, topic=topic, method=method, args=args, request_id=request_id)
        self.timeout_s = timeout_s


class TasqRequestUnknownMethodError(TasqRequestError):
    """The server for the topic has no handler for the method and no default handler."""

    def __init__(self, *, topic: str, method: str, args: Any = None, request_id: str | None = None) -> None:
        message = (
            f"Unknown method {method!r} on topic {topic!r}: the server has no handler for it "
            "and no default handler. Check the method name or register a handler."
        )
        super().__init__(message, topic=topic, method=method, args=args, request_id=request_id)


class TasqRequestRejectedError(TasqRequestError):
    """The handler raised an exception, or its result could not be sent back.

    When the server is tasq-fastapi, ``remote_type`` and ``remote_message`` contain the
    class name and message of the handler's exception. A Node.js server sends neither,
    so both are None.
    """

    def __init__(
        self,
        *,
        topic: str,
        method: str,
        args: Any = None,
        request_id: str | None = None,
        remote_type: str | None = None,
        remote_message: str | None = None,
    ) -> None:
        if remote_type is None:
            detail = "the server sent no detail"
        else:
            detail = f"{remote_type}: {remote_message}"
        message = f"Request {topic!r}.{method!r} was rejected by the server ({detail})."
        super().__init__(message, topic=topic, method=method, args=args, request_id=request_id)
        self.remote_type = remote_type
        self.remote_message = remote_message


class TasqRequestInvalidArgsError(TasqRequestRejectedError):
    """The server rejected the args as invalid; ``errors`` lists what is wrong.

    Each entry of ``errors`` is a mapping such as pydantic's error dicts
    (``loc``, ``msg``, ``type``).
    """

    def __init__(
        self,
        *,
        topic: str,
        method: str,
        args: Any = None,
        request_id: str | None = None,
        remote_type: str | None = None,
        remote_message: str | None = None,
        errors: list[Any] | None = None,
    ) -> None:
        super().__init__(
            topic=topic,
            method=method,
            args=args,
            request_id=request_id,
            remote_type=remote_type,
            remote_message=remote_message,
        )
        self.errors = errors if errors is not None else []


class TasqConnectionError(TasqRequestError, ConnectionError):
    """Redis could not be reached while sending a request."""


class TasqEncodeError(TasqError, ValueError):
    """A value cannot be encoded as CBOR, or it exceeds the configured maximum size."""


class TasqProtocolError(TasqError):
    """Bytes read from Redis are not a valid Tasq request or response."""


class TasqInvalidArgsError(TasqError, ValueError):
    """Raise from a handler to reject the request's args.

    The caller receives a :class:`TasqRequestInvalidArgsError` whose ``errors`` is the
    list given here. Entries must be CBOR-encodable (strings, numbers, lists, dicts).
    """

    def __init__(self, message: str, *, errors: list[Any] | None = None) -> None:
        super().__init__(message)
        self.errors = errors if errors is not None else []
