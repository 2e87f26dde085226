"""Conversion of handler results into CBOR values that every Tasq peer can decode.

Peers may be written in any language, so results are reduced to the CBOR data
model of RFC 8949: maps, arrays, text and byte strings, integers, floats,
booleans, null, and tag 1 (epoch-based date/time) for timezone-aware datetimes.
Types that only some decoders understand (UUID tag 37, decimal fractions,
date tags) are sent as strings instead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import uuid
from collections.abc import Mapping
from typing import Any

import cbor2
from pydantic import BaseModel

from ._errors import TasqError

_EPOCH_TIMESTAMP_TAG = 1

_PLAIN_SCALARS = (str, bytes, bool, int, float, type(None))


class TasqResultConversionError(TasqError, TypeError):
    """A handler result contains a value that cannot be sent to Tasq peers."""


def to_cbor_value(value: Any, *, name: str = "result") -> Any:
    """Convert a handler result (or, with ``name="args"``, a caller's args) into plain CBOR values.

    Pydantic models become maps keyed by field alias, as FastAPI responses are.
    Dataclasses become maps of their fields, and tuples and sets become arrays.
    Timezone-aware datetimes become CBOR tag 1 with seconds since the Unix epoch.
    Dates and times become ISO 8601 strings, UUIDs and decimals become strings,
    and enum members become their values.

    Raises:
        TasqResultConversionError: for a naive datetime or a value of any other
            type, naming the value and where it sits, with ``name`` as the root
            of the path.
    """
    return _convert(value, name)


# Longest rejected input string kept in an invalid-args error, in characters.
_MAX_ECHOED_INPUT_LENGTH = 200


def to_cbor_safe_errors(errors: list[Any]) -> list[dict[str, Any]]:
    """Reduce pydantic error dicts to str, int, float, bool, None, lists and maps.

    Any other value (bytes, datetimes, arbitrary objects in the rejected input)
    is replaced by its `repr()`, so the returned list contains only CBOR-encodable values.
    """
    return [_error_dict(error) for error in errors]


def _convert(value: Any, path: str) -> Any:
    if isinstance(value, _PLAIN_SCALARS) and not isinstance(value, enum.Enum):
        return value

    if isinstance(value, BaseModel):
        return _convert(value.model_dump(mode="python", by_alias=True), path)

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _convert_dataclass(value, path)

    if isinstance(value, Mapping):
        return {_convert_key(key, path): _convert(item, f"{path}[{key!r}]") for key, item in value.items()}

    if isinstance(value, list | tuple | set | frozenset):
        return [_convert(item, f"{path}[{index}]") for index, item in enumerate(value)]

    return _convert_special_scalar(value, path)


def _convert_special_scalar(value: Any, path: str) -> Any:
    if isinstance(value, dt.datetime):
        return _datetime_to_tag(value, path)

    if isinstance(value, dt.date | dt.time):
        return value.isoformat()

    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)

    if isinstance(value, enum.Enum):
        return _convert(value.value, path)

    raise TasqResultConversionError(
        f"The value of type {type(value).__qualname__} at {path} cannot be sent to Tasq peers. "
        "Use a pydantic model, dataclass, dict, list, str, int, float, bool, None, bytes, "
        "datetime, date, time, UUID, Decimal or Enum instead."
    )


def _convert_dataclass(value: Any, path: str) -> dict[str, Any]:
    return {
        field.name: _convert(getattr(value, field.name), f"{path}.{field.name}")
        for field in dataclasses.fields(value)
    }


def _convert_key(key: Any, path: str) -> str | bytes:
    # Tasq peers accept only text and byte-string map keys; like JSON, other
    # scalar keys become their string form.
    if isinstance(key, enum.Enum):
        key = key.value

    if isinstance(key, str | bytes):
        return key

    if isinstance(key, uuid.UUID) or (isinstance(key, int | float) and not isinstance(key, bool)):
        return str(key)

    raise TasqResultConversionError(
        f"The map key {key!r} of type {type(key).__qualname__} in {path} cannot be sent to "
        "Tasq peers. Use str, int, float, bytes, UUID or Enum keys instead."
    )


def _datetime_to_tag(value: dt.datetime, path: str) -> cbor2.CBORTag:
    if value.tzinfo is None or value.utcoffset() is None:
        raise TasqResultConversionError(
            f"The naive datetime {value.isoformat()} at {path} has no timezone. "
            "Attach a timezone (for example datetime.now(timezone.utc)) so it can be sent "
            "as a CBOR timestamp."
        )

    # Whole seconds go out as an integer so decoders without float support still work.
    timestamp = value.timestamp()
    if value.microsecond == 0:
        return cbor2.CBORTag(_EPOCH_TIMESTAMP_TAG, int(timestamp))
    return cbor2.CBORTag(_EPOCH_TIMESTAMP_TAG, timestamp)


def _error_dict(error: Any) -> dict[str, Any]:
    if not isinstance(error, Mapping):
        return {"msg": str(error)}
    safe = {str(key): _safe_value(item) for key, item in error.items()}
    # pydantic puts the rejected input in each error, and for a missing field that
    # is the whole args: echoing large inputs back would multiply the reply.
    if "input" in safe and not _is_small_scalar(safe["input"]):
        del safe["input"]
    return safe


def _is_small_scalar(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= _MAX_ECHOED_INPUT_LENGTH
    return isinstance(value, int | float | bool | type(None))


def _safe_value(value: Any) -> Any:
    if isinstance(value, str | int | float | bool | type(None)):
        return value

    if isinstance(value, Mapping):
        return {str(key): _safe_value(item) for key, item in value.items()}

    if isinstance(value, list | tuple):
        return [_safe_value(item) for item in value]

    return repr(value)
