"""CBOR encoding and a strict decoder for data read from Redis.

Anything in a Redis list or channel may come from a buggy or hostile peer, so the
decoder accepts only a safe subset of CBOR: plain values, byte and text strings,
arrays, maps with text or byte-string keys, datetimes (tags 0 and 1), big integers
(tags 2 and 3), UUIDs (tag 37), sets (tag 258) and JavaScript ``Map`` objects
(tag 259, decoded to ``dict``). Tags that build other objects (shared and cyclic
references, regular expressions, decimals, MIME messages, ...) are rejected, and so
are nesting deeper than :data:`MAX_DEPTH`, trailing bytes and inputs larger than the
caller's limit.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import cbor2

from ._errors import TasqEncodeError, TasqProtocolError

MAX_DEPTH = 100
"""Maximum nesting of arrays and maps accepted by :func:`decode`."""

# Tags that cbor2 would turn into objects beyond the safe subset, listed so that the
# decoder rejects them instead of building them.
_REJECTED_SEMANTIC_TAGS = (4, 5, 25, 28, 29, 30, 35, 36, 52, 54, 100, 256, 260, 261, 1004)

_TAG_JS_MAP = 259


def _reject_tag(tag: int) -> Any:
    def reject(_value: Any, _immutable: bool) -> Any:
        raise cbor2.CBORDecodeError(f"CBOR tag {tag} is not accepted by Tasq")

    return reject


def _decode_unknown_tag(tag: cbor2.CBORTag, _immutable: bool) -> Any:
    if tag.tag == _TAG_JS_MAP and isinstance(tag.value, dict | cbor2.frozendict):
        return dict(tag.value)
    raise cbor2.CBORDecodeError(f"CBOR tag {tag.tag} is not accepted by Tasq")


_SEMANTIC_DECODERS = {tag: _reject_tag(tag) for tag in _REJECTED_SEMANTIC_TAGS}


# One decoder per thread, reused: building one costs about as much as decoding a
# small message. Shared and string references, whose tables a decoder keeps between
# items, are among the rejected tags, so no state carries from one message to the next.
_cached = threading.local()
_EMPTY_STREAM = io.BytesIO(b"")


def _decoder() -> cbor2.CBORDecoder:
    decoder: cbor2.CBORDecoder | None = getattr(_cached, "decoder", None)
    if decoder is None:
        decoder = cbor2.CBORDecoder(
            _EMPTY_STREAM,
            tag_hook=_decode_unknown_tag,
            semantic_decoders=_SEMANTIC_DECODERS,
            max_depth=MAX_DEPTH,
            strict_hashable_types=True,
        )
        _cached.decoder = decoder
    return decoder


def decode(data: bytes, *, max_bytes: int) -> Any:
    """Decode one CBOR item that must fill ``data`` exactly.

    Raises :class:`TasqProtocolError` when ``data`` is larger than ``max_bytes``, is
    not well-formed CBOR, uses a tag outside the safe subset, nests deeper than
    :data:`MAX_DEPTH` or has bytes after the item.
    """
    if len(data) > max_bytes:
        raise TasqProtocolError(f"Message of {len(data)} bytes exceeds the maximum of {max_bytes} bytes.")

    stream = io.BytesIO(data)
    decoder = _decoder()
    decoder.fp = stream
    try:
        value = decoder.decode()
    except (cbor2.CBORDecodeError, ValueError, OverflowError, MemoryError) as exc:
        # A decoder is reused only after a clean decode; nothing is assumed about
        # its state after a failure.
        _cached.decoder = None
        raise TasqProtocolError(f"Message is not valid CBOR: {_sentence(exc)}.") from exc
    finally:
        # The decoder outlives the call; it must not keep the message alive.
        decoder.fp = _EMPTY_STREAM

    if stream.tell() != len(data):
        raise TasqProtocolError(f"Message has {len(data) - stream.tell()} bytes after its CBOR item.")
    return value


def encode(value: Any, *, value_name: str) -> bytes:
    """Encode ``value`` as CBOR that :func:`decode` accepts; datetimes become tag 1.

    ``value_name`` names the value in error messages ("args", "result"). Raises
    :class:`TasqEncodeError` naming what cannot be encoded. That includes values that
    cbor2 can write but a Tasq peer would reject: map keys other than text or byte
    strings, nesting deeper than :data:`MAX_DEPTH`, and objects outside the safe
    subset such as decimals or regular expressions.
    """
    try:
        data = cbor2.dumps(value, datetime_as_timestamp=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError, RecursionError) as exc:
        raise TasqEncodeError(
            f"Cannot encode the {value_name} as CBOR: {_sentence(exc)}. Tasq sends dicts with str "
            "keys, lists, str (valid Unicode), int, float, bool, bytes, None and "
            "timezone-aware datetimes."
        ) from exc

    # Checking with the receiving side's own decoder, at C speed, is what guarantees
    # that a peer never drops what this side sent.
    try:
        decode(data, max_bytes=len(data))
    except TasqProtocolError as exc:
        raise TasqEncodeError(
            f"The {value_name} cannot be sent, because a Tasq peer would reject it: {exc} "
            "Use str keys in dicts, nest at most 100 levels and send only plain values."
        ) from None
    return data


def _sentence(exc: BaseException) -> str:
    return str(exc).rstrip(".")
