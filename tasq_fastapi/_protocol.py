"""The Tasq wire protocol, as spoken by the Node.js library ``@kirick/tasq`` 0.3.

Redis names for a topic ``T``: the task list and its notification channel are both
``@tasq:T``; a client with id ``C`` receives replies on ``@tasq:client:C``.

A request is the CBOR array ``[client id, request id, deadline, method, args?]``: the
request id is 6 random bytes, the deadline a number of milliseconds since
2023-01-01T00:00:00Z, and args is left out when the caller has none. A response is
``[request id, status, value?]``. For status :attr:`ResponseStatus.REJECTED` this
library adds a detail map as the third item, which Node.js clients ignore.
"""

from __future__ import annotations

import base64
import enum
import functools
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2

from . import _cbor
from ._errors import TasqProtocolError

KEY_PREFIX = "@tasq:"
"""Prefix of a topic's task list key and of its notification channel."""

CLIENT_CHANNEL_PREFIX = "@tasq:client:"
"""Prefix of a client's reply channel; the client id follows."""

TASQ_EPOCH_MS = 1_672_531_200_000
"""2023-01-01T00:00:00Z in Unix milliseconds: the zero of request deadlines."""

REQUEST_ID_BYTES = 6
CLIENT_ID_RANDOM_BYTES = 6

EXTENSION_SENT_AT_MS = "sent_at"
"""Request extension: when the client sent the request, in ms from the Tasq epoch."""

EXTENSION_REPLY = "reply"
"""Request extension: ``"sharded"`` requests the reply by SPUBLISH instead of PUBLISH."""

REPLY_SHARDED = "sharded"

EXTENSION_TRACEPARENT = "traceparent"
"""Request extension: the W3C trace context of the caller, when tracing is on."""

MAX_NAME_LENGTH = 200
"""Maximum length of a topic, method or namespace, in characters."""

MAX_DEADLINE_MS = 2.0**43
"""Latest deadline accepted on the wire, in ms from the Tasq epoch (about year 2301)."""

_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.:/-]+")
_RESERVED_TOPIC_PREFIX = "client:"
_CLIENT_ID_PATTERN = re.compile(r"([A-Za-z0-9_.:/-]{1,200}:)?[A-Za-z0-9+/]{8}")


class ResponseStatus(enum.IntEnum):
    """The status item of a response."""

    OK = 0
    REJECTED = 1
    UNKNOWN_METHOD = 2


# Maximum length of the repr of a peer's value put in an error message, in characters.
_MAX_REPR_LENGTH = 80

# Looked up for every response; an enum's own lookup is several times slower.
_STATUS_BY_VALUE: dict[object, ResponseStatus] = {status.value: status for status in ResponseStatus}


@dataclass(slots=True, frozen=True)
class Request:
    """A decoded request. ``deadline_ms`` counts from :data:`TASQ_EPOCH_MS`."""

    client_id: str
    request_id: bytes
    deadline_ms: float
    method: str
    args: Any
    has_args: bool
    extensions: Mapping[str, Any] = field(default_factory=dict)

    @property
    def deadline_unix_s(self) -> float:
        """The deadline as Unix time in seconds."""
        return (self.deadline_ms + TASQ_EPOCH_MS) / 1000


@dataclass(slots=True, frozen=True)
class Response:
    """A decoded response; ``detail`` is only set for rejections from this library."""

    request_id: bytes
    status: ResponseStatus
    value: Any = None
    detail: dict[str, Any] | None = None


def topic_key(topic: str) -> str:
    """Return the Redis key of a topic's task list, which is also its channel."""
    return KEY_PREFIX + topic


def client_channel(client_id: str) -> str:
    """Return the reply channel of a client."""
    return CLIENT_CHANNEL_PREFIX + client_id


def new_client_id(namespace: str | None) -> str:
    """Return a fresh client id: 8 base64 characters, after ``namespace:`` if given."""
    random_part = base64.b64encode(os.urandom(CLIENT_ID_RANDOM_BYTES)).decode("ascii")
    if namespace is None:
        return random_part
    return f"{namespace}:{random_part}"


def new_request_id() -> bytes:
    """Return 6 random bytes, as the Node.js library uses."""
    return os.urandom(REQUEST_ID_BYTES)


def validate_name(kind: str, value: object) -> str:
    """Check a topic, method or namespace name and return it.

    Names are 1 to :data:`MAX_NAME_LENGTH` characters of letters, digits and
    ``_ . : / -``, so that they can never change which Redis key, channel or
    cluster slot is used. A topic must not start with ``client:``, because
    ``@tasq:client:...`` is the reply channel of a client. Raises TypeError for a
    value that is not a string and ValueError for a bad name.
    """
    if not isinstance(value, str):
        raise TypeError(f"The {kind} must be a str, got {type(value).__name__}: {value!r}.")
    return _check_name(kind, value)


# Names repeat on every request, so the result of a check is cached.
@functools.lru_cache(maxsize=4096)
def _check_name(kind: str, value: str) -> str:
    if not value or len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"Invalid {kind} {value!r}: it must have 1 to {MAX_NAME_LENGTH} characters.")
    if _NAME_PATTERN.fullmatch(value) is None:
        raise ValueError(
            f"Invalid {kind} {value!r}: use only letters, digits and the characters "
            "'_ . : / -', so that the name cannot change the Redis key or channel."
        )
    if kind == "topic" and value.startswith(_RESERVED_TOPIC_PREFIX):
        raise ValueError(
            f"Invalid topic {value!r}: topics starting with {_RESERVED_TOPIC_PREFIX!r} "
            "would share a Redis channel with client replies. Choose another name."
        )
    return value


def to_deadline_ms(deadline_unix_s: float) -> float:
    """Convert a Unix time in seconds to a wire deadline."""
    return deadline_unix_s * 1000 - TASQ_EPOCH_MS


def encode_request(
    client_id: str,
    request_id: bytes,
    deadline_ms: float,
    method: str,
    args: Any,
    has_args: bool,
    extensions: Mapping[str, Any] | None = None,
) -> bytes:
    """Encode a request; args is left out when ``has_args`` is false.

    The deadline is written as a float, as Node.js peers write it. ``extensions``
    (see :data:`EXTENSION_SENT_AT_MS`) go in item 5, which Node.js servers ignore;
    args is then written as CBOR ``undefined`` when there is none, which a Node.js
    handler receives exactly as missing args.
    """
    frame: list[Any] = [client_id, request_id, float(deadline_ms), method]
    if has_args or extensions:
        frame.append(args if has_args else cbor2.undefined)
    if extensions:
        frame.append(dict(extensions))
    return _cbor.encode(frame, value_name="args")


def decode_request(data: bytes, *, max_bytes: int) -> Request:
    """Decode and check a request read from a task list.

    Raises :class:`TasqProtocolError` saying which item is wrong.
    """
    frame = _cbor.decode(data, max_bytes=max_bytes)
    if not isinstance(frame, list) or len(frame) < 4:
        raise TasqProtocolError("Request is not a CBOR array of at least 4 items.")

    client_id, request_id, deadline_ms, method = frame[:4]
    if not isinstance(client_id, str) or _CLIENT_ID_PATTERN.fullmatch(client_id) is None:
        raise TasqProtocolError("Request item 0 (client id) is not a valid client id.")
    if not isinstance(request_id, bytes) or not 1 <= len(request_id) <= 64:
        raise TasqProtocolError("Request item 1 (request id) is not a byte string of 1 to 64 bytes.")
    if not _is_valid_deadline(deadline_ms):
        raise TasqProtocolError("Request item 2 (deadline) is not a number in range.")
    # Printable only: the method name goes into log lines, where a line break from a
    # hostile peer would forge a line of its own.
    if not isinstance(method, str) or not method or len(method) > MAX_NAME_LENGTH or not method.isprintable():
        raise TasqProtocolError("Request item 3 (method) is not a non-empty printable text string.")

    has_args = len(frame) >= 5 and frame[4] is not cbor2.undefined
    args = frame[4] if has_args else None
    # Extensions are optional hints: a peer that sends something else there is
    # served as if it had sent none.
    extensions = frame[5] if len(frame) >= 6 and isinstance(frame[5], dict) else {}
    return Request(client_id, request_id, float(deadline_ms), method, args, has_args, extensions)


def _is_valid_deadline(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    # Compared as they are: an int too large for a float must not reach float().
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return 0 <= value <= MAX_DEADLINE_MS


def encode_response(
    request_id: bytes,
    status: ResponseStatus,
    value: Any = None,
    detail: dict[str, Any] | None = None,
) -> bytes:
    """Encode a response. ``value`` is sent for OK, ``detail`` for REJECTED.

    Raises :class:`TasqEncodeError` when ``value`` or ``detail`` cannot be encoded.
    """
    frame: list[Any] = [request_id, int(status)]
    if status is ResponseStatus.OK:
        frame.append(value)
    elif detail is not None:
        frame.append(detail)
    return _cbor.encode(frame, value_name="result")


def _short_repr(value: object) -> str:
    # A value from a peer, shown in an error message: its repr is cut short, and an
    # int too long to convert to text (over 4,300 digits) is only named.
    try:
        text = repr(value)
    except ValueError:
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= _MAX_REPR_LENGTH else text[:_MAX_REPR_LENGTH] + "..."


def peek_response_request_id(data: bytes) -> bytes | None:
    """Return the request id at the start of a response without decoding the rest.

    Used for replies too large to decode, so that their caller gets an error at once.
    Returns None when ``data`` does not start like a response.
    """
    header_lengths = {24: 2, 25: 3, 26: 5, 27: 9}
    if len(data) < 2 or data[0] >> 5 != 4:
        return None
    array_info = data[0] & 0x1F
    offset = 1 if array_info < 24 else header_lengths.get(array_info, 0)
    if offset == 0 or len(data) <= offset or data[offset] >> 5 != 2:
        return None

    length = data[offset] & 0x1F
    start = offset + 1
    if length == 24 and len(data) > start:
        length, start = data[start], start + 1
    elif length > 24:
        return None
    if len(data) < start + length:
        return None
    return data[start : start + length]


def decode_response(data: bytes, *, max_bytes: int) -> Response:
    """Decode and check a response read from a reply channel.

    Raises :class:`TasqProtocolError`, also for a status this library does not know.
    """
    frame = _cbor.decode(data, max_bytes=max_bytes)
    if not isinstance(frame, list) or len(frame) < 2:
        raise TasqProtocolError("Response is not a CBOR array of at least 2 items.")

    request_id, status_value = frame[0], frame[1]
    if not isinstance(request_id, bytes):
        raise TasqProtocolError("Response item 0 (request id) is not a byte string.")
    is_number = isinstance(status_value, int | float) and not isinstance(status_value, bool)
    status = _STATUS_BY_VALUE.get(status_value) if is_number else None
    if status is None:
        raise TasqProtocolError(
            f"Response item 1 (status) {_short_repr(status_value)} is not a known status."
        )

    value = frame[2] if len(frame) >= 3 else None
    if value is cbor2.undefined:
        value = None
    if status is ResponseStatus.REJECTED:
        detail = value if isinstance(value, dict) else None
        return Response(request_id, status, None, detail)
    return Response(request_id, status, value if status is ResponseStatus.OK else None)
