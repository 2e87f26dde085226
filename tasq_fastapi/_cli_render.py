"""Rendering of CBOR values and tables for the `tasq` command line.

Values decoded from CBOR may hold bytes, datetimes, UUIDs, sets and CBOR
`undefined`, none of which JSON has. For scripts (`--json`) bytes become
`{"$bytes": "<base64>"}`, so they stay distinct from text; for people they become
`<N bytes: hex>`, shortened after :data:`MAX_HEX_BYTES` bytes. Both forms write
datetimes in ISO 8601, UUIDs as text, sets as sorted lists, `undefined` as null and
non-finite floats as the strings "NaN", "Infinity" and "-Infinity", which strict
JSON parsers would otherwise reject.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import uuid
from collections.abc import Sequence
from typing import Any

import cbor2

MAX_HEX_BYTES = 32
"""Bytes shown in hex in the readable form; longer byte strings are shortened."""


def to_json_value(value: Any, *, readable: bool) -> Any:
    """Return `value` with every item JSON lacks replaced as the module docstring lists."""
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytes_text(bytes(value)) if readable else {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {_key_text(key): to_json_value(item, readable=readable) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(item, readable=readable) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((to_json_value(item, readable=readable) for item in value), key=repr)
    return _scalar(value)


def dumps_json(value: Any) -> str:
    """Return `value` as one line of strict JSON, in the `--json` form."""
    return json.dumps(to_json_value(value, readable=False), ensure_ascii=False, allow_nan=False, default=str)


def format_readable(value: Any) -> str:
    """Return `value` for people: text as it is, anything else as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(
        to_json_value(value, readable=True), ensure_ascii=False, allow_nan=False, indent=2, default=str
    )


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return `rows` as left-aligned columns under `headers`, two spaces apart."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def format_duration(seconds: float) -> str:
    """Return a duration in seconds as "850 ms", "12.5 s", "3 min 20 s" or "2 h 5 min"."""
    magnitude = abs(seconds)
    sign = "-" if seconds < 0 else ""
    if magnitude < 1:
        return f"{sign}{magnitude * 1000:.0f} ms"
    if magnitude < 60:
        return f"{sign}{magnitude:.1f} s"
    if magnitude < 3600:
        return f"{sign}{int(magnitude // 60)} min {int(magnitude % 60)} s"
    return f"{sign}{int(magnitude // 3600)} h {int(magnitude % 3600 // 60)} min"


def _bytes_text(data: bytes) -> str:
    hex_prefix = data[:MAX_HEX_BYTES].hex()
    suffix = "..." if len(data) > MAX_HEX_BYTES else ""
    return f"<{len(data)} bytes: {hex_prefix}{suffix}>"


def _key_text(key: Any) -> str:
    # CBOR maps may have byte-string keys, and JSON objects take only text keys.
    if isinstance(key, bytes):
        return key.decode("utf-8", errors="backslashreplace")
    return key if isinstance(key, str) else str(key)


def _scalar(value: Any) -> Any:
    if value is cbor2.undefined:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
