"""Hostile input: garbage pushed into a topic's list, values that cannot be encoded, bad names.

Anything in a Redis list may come from a buggy or hostile peer. A running server must
drop such an item with a log line naming the topic and the reason, count it through
``TasqObserver.task_dropped`` and keep serving.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import cbor2
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasq_fastapi import (
    Tasq,
    TasqEncodeError,
    TasqRequestRejectedError,
    TasqServer,
    create_tasq,
)
from tasq_fastapi._protocol import TASQ_EPOCH_MS, new_request_id, topic_key
from tests._waiting import WAIT_S, wait_until

# A client id that matches the protocol's pattern but that no client listens on.
NOBODY = "AAAAAAAA"

# Limit of the server in these tests, so that "too large" stays cheap to build.
MAX_MESSAGE_BYTES = 64 * 1024

# Number of generated items the fuzz test pushes.
FUZZ_EXAMPLES = 200


async def echo(args: Any) -> Any:
    return args


class DropCounter:
    """A TasqObserver that records dropped tasks as (topic, reason)."""

    def __init__(self) -> None:
        self.dropped: list[tuple[str, str]] = []

    def request_finished(self, topic: str, method: str, outcome: str, duration_s: float) -> None:
        pass

    def task_started(self, topic: str, method: str) -> None:
        pass

    def task_finished(self, topic: str, method: str, outcome: str, duration_s: float) -> None:
        pass

    def task_dropped(self, topic: str, reason: str) -> None:
        self.dropped.append((topic, reason))


def future_deadline_ms(seconds: float = 60.0) -> float:
    return (time.time() + seconds) * 1000 - TASQ_EPOCH_MS


def frame_head(*, client_id: Any = NOBODY, deadline_ms: Any = None, method: Any = "echo") -> bytes:
    """The CBOR header of a 5-item request and its first four items; the args follow raw."""
    deadline = future_deadline_ms() if deadline_ms is None else deadline_ms
    items = [client_id, new_request_id(), deadline, method]
    return b"\x85" + b"".join(cbor2.dumps(item) for item in items)


def frame(args: Any = None, **fields: Any) -> bytes:
    """A request frame whose args are ``args``, encoded by cbor2 without Tasq's checks."""
    return frame_head(**fields) + cbor2.dumps(args)


def frame_items(*items: Any) -> bytes:
    return cbor2.dumps(list(items))


def tagged(tag: int, value: Any) -> bytes:
    return frame_head() + cbor2.dumps(cbor2.CBORTag(tag, value))


# Each case: (id, raw item, drop reason, fragment expected in the log line).
HOSTILE_ITEMS: list[tuple[str, bytes, str, str]] = [
    ("not_cbor", b"\xff\x00 not cbor at all", "malformed", "not valid CBOR"),
    ("empty", b"", "malformed", "not valid CBOR"),
    ("truncated", frame({"a": "b" * 50})[:-10], "malformed", "not valid CBOR"),
    ("trailing_bytes", frame("x") + b"\x00", "malformed", "after its CBOR item"),
    ("text_not_array", cbor2.dumps("echo"), "malformed", "not a CBOR array"),
    ("map_not_array", cbor2.dumps({"method": "echo"}), "malformed", "not a CBOR array"),
    ("short_array", frame_items(NOBODY, b"123456", 1.0), "malformed", "not a CBOR array"),
    ("client_id_int", frame(client_id=5), "malformed", "item 0"),
    ("client_id_spaces", frame(client_id="a b c d e f"), "malformed", "item 0"),
    ("request_id_text", frame_items(NOBODY, "123456", future_deadline_ms(), "echo"), "malformed", "item 1"),
    ("request_id_empty", frame_items(NOBODY, b"", future_deadline_ms(), "echo"), "malformed", "item 1"),
    (
        "request_id_huge",
        frame_items(NOBODY, b"x" * 1000, future_deadline_ms(), "echo"),
        "malformed",
        "item 1",
    ),
    ("deadline_text", frame(deadline_ms="tomorrow"), "malformed", "item 2"),
    ("deadline_bool", frame(deadline_ms=True), "malformed", "item 2"),
    ("deadline_negative", frame(deadline_ms=-1.0), "malformed", "item 2"),
    ("deadline_nan", frame(deadline_ms=math.nan), "malformed", "item 2"),
    ("deadline_infinite", frame(deadline_ms=math.inf), "malformed", "item 2"),
    ("deadline_year_10000", frame(deadline_ms=2.0**60), "malformed", "item 2"),
    ("deadline_past", frame(deadline_ms=future_deadline_ms(-60.0)), "expired", "expired"),
    ("method_int", frame(method=7), "malformed", "item 3"),
    ("method_empty", frame(method=""), "malformed", "item 3"),
    ("method_too_long", frame(method="m" * 10_000), "malformed", "item 3"),
    ("method_bad_utf8", frame_head()[:-5] + b"\x64\xff\xfe\xfd\xfc" + b"\xf6", "malformed", "not valid CBOR"),
    ("nested_arrays", frame_head() + b"\x81" * 5000 + b"\x00", "malformed", "depth"),
    ("nested_maps", frame_head() + b"\xa1\x61k" * 5000 + b"\x00", "malformed", "depth"),
    ("nested_tags", frame_head() + b"\xd9\x01\x03" * 5000 + b"\xa0", "malformed", "depth"),
    ("bytes_length_2_64", frame_head() + b"\x5b" + b"\xff" * 8, "malformed", "not valid CBOR"),
    (
        "text_length_2_36",
        frame_head() + b"\x7b\x00\x00\x00\x10\x00\x00\x00\x00",
        "malformed",
        "not valid CBOR",
    ),
    (
        "array_length_2_32",
        frame_head() + b"\x9b\x00\x00\x00\x01\x00\x00\x00\x00",
        "malformed",
        "not valid CBOR",
    ),
    (
        "map_length_2_32",
        frame_head() + b"\xbb\x00\x00\x00\x01\x00\x00\x00\x00",
        "malformed",
        "not valid CBOR",
    ),
    ("unterminated_indefinite", frame_head() + b"\x9f\x01\x02", "malformed", "not valid CBOR"),
    ("tag_4_decimal", tagged(4, [-2, 27315]), "malformed", "tag 4"),
    ("tag_5_bigfloat", tagged(5, [-1, 3]), "malformed", "tag 5"),
    ("tag_24_embedded_cbor", tagged(24, b"\x01"), "malformed", "tag 24"),
    ("tag_28_shareable", tagged(28, [1, 2]), "malformed", "tag 28"),
    ("tag_29_shared_ref", tagged(29, 0), "malformed", "tag 29"),
    ("tag_30_rational", tagged(30, [1, 3]), "malformed", "tag 30"),
    ("tag_35_regex", tagged(35, "(a+)+$"), "malformed", "tag 35"),
    ("tag_36_mime", tagged(36, "Content-Type: text/plain\n\nhi"), "malformed", "tag 36"),
    ("tag_256_stringref_ns", tagged(256, ["a"]), "malformed", "tag 256"),
    ("tag_unknown_9999", tagged(9999, "x"), "malformed", "tag 9999"),
    ("tag_0_bad_datetime", tagged(0, "not a date"), "malformed", "datetime"),
    ("tag_258_set_of_lists", tagged(258, [[1]]), "malformed", "set"),
    ("map_list_key", frame_head() + b"\xa1\x81\x01\x01", "malformed", "not valid CBOR"),
    ("oversized", frame("x" * (MAX_MESSAGE_BYTES + 1)), "malformed", "exceeds the maximum"),
]


@pytest.fixture
async def watched_tasq(redis_url: str) -> AsyncIterator[tuple[Tasq, DropCounter]]:
    drops = DropCounter()
    async with await create_tasq(redis_url, observer=drops, max_message_bytes=MAX_MESSAGE_BYTES) as tasq:
        yield tasq, drops


@pytest.mark.parametrize(
    ("item", "reason", "log_fragment"),
    [case[1:] for case in HOSTILE_ITEMS],
    ids=[case[0] for case in HOSTILE_ITEMS],
)
async def test_hostile_item_dropped_logged_counted(
    watched_tasq: tuple[Tasq, DropCounter],
    topic: str,
    redis_client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
    item: bytes,
    reason: str,
    log_fragment: str,
) -> None:
    tasq, drops = watched_tasq
    caplog.set_level(logging.INFO, logger="tasq_fastapi")
    server = await tasq.serve(topic, {"echo": echo}, threads=1)

    await redis_client.rpush(topic_key(topic), item)
    await wait_until(lambda: len(drops.dropped) == 1)

    assert drops.dropped == [(topic, reason)]
    lines = [record.getMessage() for record in caplog.records if "Dropped" in record.getMessage()]
    assert len(lines) == 1
    assert f"topic={topic}" in lines[0]
    assert log_fragment in lines[0]
    assert await tasq.request(topic, "echo", "after") == "after"
    assert server.is_alive
    assert await redis_client.llen(topic_key(topic)) == 0


# Generated structures: any CBOR value cbor2 can write, including arbitrary tags,
# alone or in the place of a request's args.
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=5), children, max_size=5)
        | st.builds(cbor2.CBORTag, st.integers(min_value=0, max_value=2**16), children)
    ),
    max_leaves=20,
)
_items = (
    st.binary(max_size=200)
    | _values.map(cbor2.dumps)
    | _values.map(frame)
    | st.lists(_values, min_size=4, max_size=6).map(cbor2.dumps)
)


@pytest.fixture
async def fuzz_server(redis_url: str) -> AsyncIterator[tuple[Tasq, TasqServer, aioredis.Redis, str]]:
    # Shared by every generated example, so that they all hit one long-running server.
    topic = f"test-fuzz-{time.time_ns()}"
    redis_client = aioredis.Redis.from_url(redis_url)
    try:
        async with await create_tasq(redis_url, max_message_bytes=MAX_MESSAGE_BYTES) as tasq:
            server = await tasq.serve(topic, {"echo": echo}, threads=2)
            yield tasq, server, redis_client, topic
    finally:
        await redis_client.delete(topic_key(topic))
        await redis_client.aclose()


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(item=_items)
async def test_fuzzed_items_keep_server_serving(
    fuzz_server: tuple[Tasq, TasqServer, aioredis.Redis, str], item: bytes
) -> None:
    tasq, server, redis_client, topic = fuzz_server

    await redis_client.rpush(topic_key(topic), item)

    assert await tasq.request(topic, "echo", "alive", timeout=5.0) == "alive"
    assert server.is_alive


# Values that cannot be encoded, and sizes over the limit.


class Widget:
    """A type CBOR has no encoding for."""


def _cyclic_list() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


# Each case: (id, factory of the value, fragment naming it in the error message).
UNENCODABLE: list[tuple[str, Callable[[], Any], str]] = [
    ("object", object, "object"),
    ("custom_class", lambda: {"nested": [Widget()]}, "Widget"),
    ("generator", lambda: (n for n in range(3)), "generator"),
    ("naive_datetime", lambda: datetime.datetime(2024, 1, 1), "naive datetime"),
    ("cyclic_list", _cyclic_list, "cyclic"),
]


@pytest.mark.parametrize(
    ("make_value", "fragment"), [case[1:] for case in UNENCODABLE], ids=[case[0] for case in UNENCODABLE]
)
async def test_unencodable_args_rejected_before_send(
    tasq: Tasq, topic: str, redis_client: aioredis.Redis, make_value: Callable[[], Any], fragment: str
) -> None:
    with pytest.raises(TasqEncodeError, match=fragment):
        await tasq.request(topic, "echo", make_value())

    assert await redis_client.llen(topic_key(topic)) == 0
    assert tasq.pending_count == 0


async def test_oversized_args_rejected_before_send(
    redis_url: str, topic: str, redis_client: aioredis.Redis
) -> None:
    async with await create_tasq(redis_url, max_message_bytes=1024) as tasq:
        with pytest.raises(TasqEncodeError, match="1024 bytes"):
            await tasq.request(topic, "echo", "x" * 2000)

        assert await redis_client.llen(topic_key(topic)) == 0
        assert tasq.pending_count == 0


@pytest.mark.parametrize(
    ("make_value", "fragment"), [case[1:] for case in UNENCODABLE], ids=[case[0] for case in UNENCODABLE]
)
async def test_unencodable_result_rejected_naming_type(
    tasq: Tasq, topic: str, make_value: Callable[[], Any], fragment: str
) -> None:
    async def produce(_args: Any) -> Any:
        return make_value()

    await tasq.serve(topic, {"produce": produce})
    started = time.monotonic()

    with pytest.raises(TasqRequestRejectedError) as caught:
        await tasq.request(topic, "produce", timeout=30.0)

    assert time.monotonic() - started < 1.0
    assert caught.value.remote_type == "TasqEncodeError"
    assert caught.value.remote_message is not None
    assert fragment in caught.value.remote_message


async def test_oversized_result_rejected_by_server(redis_url: str, topic: str) -> None:
    async def big(_args: Any) -> str:
        return "x" * 4096

    async with (
        await create_tasq(redis_url, max_message_bytes=1024) as server_side,
        await create_tasq(redis_url) as caller,
    ):
        await server_side.serve(topic, {"big": big})
        started = time.monotonic()

        with pytest.raises(TasqRequestRejectedError, match="1024") as caught:
            await caller.request(topic, "big", timeout=30.0)

        assert time.monotonic() - started < 1.0
        assert caught.value.remote_type == "TasqEncodeError"


async def test_oversized_reply_fails_caller_promptly(redis_url: str, topic: str) -> None:
    async def big(_args: Any) -> str:
        return "x" * 4096

    async with (
        await create_tasq(redis_url) as server_side,
        await create_tasq(redis_url, max_message_bytes=1024) as caller,
    ):
        await server_side.serve(topic, {"big": big})
        started = time.monotonic()

        with pytest.raises(TasqRequestRejectedError, match="1024"):
            await caller.request(topic, "big", timeout=3.0)

        assert time.monotonic() - started < 1.0


# Names that would change the Redis key or channel.

BAD_NAMES = [
    "",
    "n" * 201,
    "has space",
    "line\nbreak",
    "carriage\rreturn",
    "nul\x00byte",
    "glob*",
    "glob?",
    "glob[ab]",
    "{hash-tag}",
    "tab\there",
    "ünïcode",
    "semi;colon",
    "quote'",
    '"double"',
    "back\\slash",
    "@tasq",
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(name)[:24] for name in BAD_NAMES])
async def test_bad_name_raises_value_error(tasq: Tasq, name: str) -> None:
    with pytest.raises(ValueError, match="Invalid"):
        await tasq.request(name, "echo")
    with pytest.raises(ValueError, match="Invalid"):
        await tasq.request("fine-topic", name)
    with pytest.raises(ValueError, match="Invalid"):
        await tasq.serve(name, {"echo": echo})
    with pytest.raises(ValueError, match="Invalid"):
        await tasq.serve("fine-topic", {name: echo})
    with pytest.raises(ValueError, match="Invalid"):
        await create_tasq("redis://127.0.0.1:1/0", namespace=name)

    assert tasq.pending_count == 0
    assert tasq.servers == {}


async def test_name_not_a_string_raises_type_error(tasq: Tasq) -> None:
    with pytest.raises(TypeError, match="str"):
        await tasq.request(b"topic", "echo")  # type: ignore[arg-type]


async def test_longest_allowed_names_round_trip(tasq: Tasq) -> None:
    topic = "t.-_:/" + "t" * 194
    method = "m" * 200

    await tasq.serve(topic, {method: echo})

    assert await asyncio.wait_for(tasq.request(topic, method, "ok"), WAIT_S) == "ok"
