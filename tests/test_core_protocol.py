"""Wire format: the bytes the Node.js library writes, and the bytes this library writes."""

from __future__ import annotations

import datetime
import uuid

import cbor2
import pytest

from tasq_fastapi import TasqEncodeError, TasqProtocolError
from tasq_fastapi._cbor import decode
from tasq_fastapi._protocol import (
    TASQ_EPOCH_MS,
    Request,
    ResponseStatus,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    new_client_id,
    validate_name,
)

MAX_BYTES = 1 << 20

# Requests written by @kirick/tasq 0.3.3 for topic "proto".
GOLDEN_REQUESTS = {
    "no_args": (
        "846851336a5337556e32462de7f568efb0fb423cd7ded0090000646563686f",
        Request("Q3jS7Un2", b"-\xe7\xf5h\xef\xb0", 123880787977.0, "echo", None, False),
    ),
    "dict_args": (
        "856851336a5337556e324652b649672986fb423cd7ded0100000646563686fb90001646e616d656454617371",
        Request("Q3jS7Un2", b"R\xb6Ig)\x86", 123880787984.0, "echo", {"name": "Tasq"}, True),
    ),
    "list_args": (
        "856851336a5337556e324666473b262e4bfb423cd7ded0120000646563686f82616101",
        Request("Q3jS7Un2", b"fG;&.K", 123880787986.0, "echo", ["a", 1], True),
    ),
    "namespaced": (
        "856c6e73313a5a7271586341505146e029051ddd26fb423cd7dee49f0000646563686fb90001646e616d65624e53",
        Request("ns1:ZrqXcAPQ", b"\xe0)\x05\x1d\xdd&", 123880793247.0, "echo", {"name": "NS"}, True),
    ),
}

MIXED_TYPES_REQUEST = (
    "85684b3764734c47317946a81c6c1f7fbbfb423cd7df72c30000686964656e74697479b9000c61624200ff63626967"
    "c24901000000000000000069736d616c6c5f6269671b00000000000000056164c1fb41d964df496b645a6175f7616e"
    "f66166fb3ff8000000000000636933321affffffff63693333fb41f0000000000000636e656724617362c3a96174f5"
)

# Responses written by @kirick/tasq 0.3.3.
GOLDEN_RESPONSES = {
    "ok_string": (
        "83462de7f568efb0006d48656c6c6f2c20776f726c6421",
        b"-\xe7\xf5h\xef\xb0",
        ResponseStatus.OK,
        "Hello, world!",
    ),
    "ok_object": (
        "83467d4289f1706d00b9000262696401646e616d656454617371",
        b"}B\x89\xf1pm",
        ResponseStatus.OK,
        {"id": 1, "name": "Tasq"},
    ),
    "ok_undefined": ("8346df952b67adc100f7", b"\xdf\x95+g\xad\xc1", ResponseStatus.OK, None),
    "rejected": ("824666473b262e4b01", b"fG;&.K", ResponseStatus.REJECTED, None),
    "unknown_method": ("8246e77fef53d68a02", b"\xe7\x7f\xefS\xd6\x8a", ResponseStatus.UNKNOWN_METHOD, None),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_REQUESTS))
def test_decode_request_accepts_node_bytes(name: str) -> None:
    data, expected = GOLDEN_REQUESTS[name]

    assert decode_request(bytes.fromhex(data), max_bytes=MAX_BYTES) == expected


@pytest.mark.parametrize("name", sorted(GOLDEN_REQUESTS))
def test_encode_request_matches_node_layout(name: str) -> None:
    data, request = GOLDEN_REQUESTS[name]

    written = encode_request(
        request.client_id,
        request.request_id,
        request.deadline_ms,
        request.method,
        request.args,
        request.has_args,
    )

    assert cbor2.loads(written) == cbor2.loads(bytes.fromhex(data))
    # The deadline is a float64, as Node.js writes it, right after the request id.
    deadline_offset = 1 + 1 + len(request.client_id) + 1 + len(request.request_id)
    assert written[deadline_offset] == 0xFB


@pytest.mark.parametrize("name", ["no_args", "list_args"])
def test_encode_request_without_maps_is_byte_identical(name: str) -> None:
    data, request = GOLDEN_REQUESTS[name]

    written = encode_request(
        request.client_id,
        request.request_id,
        request.deadline_ms,
        request.method,
        request.args,
        request.has_args,
    )

    assert written.hex() == data


def test_decode_request_mixed_types() -> None:
    request = decode_request(bytes.fromhex(MIXED_TYPES_REQUEST), max_bytes=MAX_BYTES)

    args = request.args
    assert request.method == "identity"
    assert args["b"] == b"\x00\xff"
    assert args["big"] == 2**64
    assert args["small_big"] == 5
    assert args["d"] == datetime.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)
    assert args["u"] is cbor2.undefined
    assert args["n"] is None
    assert args["f"] == 1.5
    assert args["i32"] == 4294967295
    assert args["i33"] == 4294967296.0
    assert args["neg"] == -5
    assert args["s"] == "é"
    assert args["t"] is True


def test_decode_request_accepts_integer_deadline() -> None:
    frame = ["Q3jS7Un2", b"123456", 123880787977, "echo"]

    request = decode_request(cbor2.dumps(frame), max_bytes=MAX_BYTES)

    assert request.deadline_ms == 123880787977.0
    assert request.deadline_unix_s == (123880787977 + TASQ_EPOCH_MS) / 1000


@pytest.mark.parametrize("name", sorted(GOLDEN_RESPONSES))
def test_decode_response_accepts_node_bytes(name: str) -> None:
    data, request_id, status, value = GOLDEN_RESPONSES[name]

    response = decode_response(bytes.fromhex(data), max_bytes=MAX_BYTES)

    assert response.request_id == request_id
    assert response.status is status
    assert response.value == value
    assert response.detail is None


@pytest.mark.parametrize("name", ["ok_string", "rejected", "unknown_method"])
def test_encode_response_is_byte_identical(name: str) -> None:
    data, request_id, status, value = GOLDEN_RESPONSES[name]

    assert encode_response(request_id, status, value).hex() == data


def test_encode_response_object_matches_node_layout() -> None:
    data, request_id, status, value = GOLDEN_RESPONSES["ok_object"]

    assert cbor2.loads(encode_response(request_id, status, value)) == cbor2.loads(bytes.fromhex(data))


def test_encode_response_rejected_detail_is_third_item() -> None:
    written = encode_response(
        b"abcdef", ResponseStatus.REJECTED, detail={"type": "ValueError", "message": "bad"}
    )

    assert cbor2.loads(written) == [b"abcdef", 1, {"type": "ValueError", "message": "bad"}]


def test_decode_response_shortest_map_headers() -> None:
    data = cbor2.dumps([b"abcdef", 0, {"id": 1}])

    assert decode_response(data, max_bytes=MAX_BYTES).value == {"id": 1}


def test_new_client_id_shape() -> None:
    plain = new_client_id(None)
    namespaced = new_client_id("ns1")

    assert len(plain) == 8
    assert set(plain) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    assert namespaced.startswith("ns1:")
    assert len(namespaced) == 12


@pytest.mark.parametrize(
    "frame",
    [
        "not an array",
        ["Q3jS7Un2", b"123456", 1.0],
        [1, b"123456", 1.0, "echo"],
        ["bad id with spaces", b"123456", 1.0, "echo"],
        ["Q3jS7Un2", "not bytes", 1.0, "echo"],
        ["Q3jS7Un2", b"123456", "soon", "echo"],
        ["Q3jS7Un2", b"123456", -1.0, "echo"],
        ["Q3jS7Un2", b"123456", float("inf"), "echo"],
        ["Q3jS7Un2", b"123456", 1e300, "echo"],
        ["Q3jS7Un2", b"123456", True, "echo"],
        ["Q3jS7Un2", b"123456", 10**400, "echo"],
        ["Q3jS7Un2", b"123456", float("nan"), "echo"],
        ["Q3jS7Un2", b"123456", 1.0, ""],
        ["Q3jS7Un2", b"123456", 1.0, 7],
        ["Q3jS7Un2", b"123456", 1.0, "echo\n12:00:00 CRITICAL forged"],
    ],
)
def test_decode_request_rejects_bad_shape(frame: object) -> None:
    with pytest.raises(TasqProtocolError):
        decode_request(cbor2.dumps(frame), max_bytes=MAX_BYTES)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff",
        bytes.fromhex("8401"),  # truncated array
        bytes.fromhex("0102"),  # trailing bytes
        bytes.fromhex("5bffffffffffffffff"),  # byte string declaring 2**64 - 1 bytes
        bytes.fromhex("9b0000000100000000"),  # array declaring 2**32 items
        b"\x81" * 5000 + b"\x00",  # nested 5,000 deep
        bytes.fromhex("d82363612e2a"),  # tag 35: regular expression
        bytes.fromhex("d81c81d81d00"),  # tags 28/29: cyclic shared reference
        bytes.fromhex("c482213903e8"),  # tag 4: decimal fraction
        bytes.fromhex("d8408301020" + "3"),  # tag 64: typed array
        bytes.fromhex("a1018100"),  # map with an integer key
    ],
)
def test_decode_rejects_unsafe_cbor(data: bytes) -> None:
    with pytest.raises(TasqProtocolError):
        decode(data, max_bytes=MAX_BYTES)


@pytest.mark.parametrize("status", [10**5000, "A" * 100_000, [1, 2]], ids=["huge_int", "long_text", "list"])
def test_decode_response_names_a_bad_status_briefly(status: object) -> None:
    with pytest.raises(TasqProtocolError, match="is not a known status") as caught:
        decode_response(cbor2.dumps([b"123456", status]), max_bytes=1 << 20)

    assert len(str(caught.value)) < 200


def test_decode_after_a_failure_starts_fresh() -> None:
    depth_limit = 100
    too_deep = cbor2.dumps(_nested(depth_limit + 10))
    just_deep_enough = cbor2.dumps(_nested(depth_limit))

    for bad in (too_deep, b"\x9f\x01", b"\xd8\x1c\x01"):
        with pytest.raises(TasqProtocolError):
            decode(bad, max_bytes=1000)
        assert decode(just_deep_enough, max_bytes=1000) == _nested(depth_limit)
        assert decode(b"\x83\x01\x02\x03", max_bytes=10) == [1, 2, 3]


def _nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_decode_rejects_oversized_message() -> None:
    with pytest.raises(TasqProtocolError, match="exceeds the maximum of 10 bytes"):
        decode(cbor2.dumps("x" * 20), max_bytes=10)


def test_decode_accepts_safe_tags() -> None:
    value = {
        "when": datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        "id": uuid.UUID(int=1),
        "big": 2**70,
        "set": {"a", "b"},
    }

    assert decode(cbor2.dumps(value, datetime_as_timestamp=True), max_bytes=MAX_BYTES) == value


def test_decode_js_map_becomes_dict() -> None:
    assert decode(bytes.fromhex("d90103a2616101616202"), max_bytes=MAX_BYTES) == {"a": 1, "b": 2}


def test_encode_request_rejects_unencodable_args() -> None:
    with pytest.raises(TasqEncodeError, match="object"):
        encode_request("Q3jS7Un2", b"123456", 1.0, "echo", {"x": object()}, True)


@pytest.mark.parametrize("kind", ["topic", "method", "namespace"])
@pytest.mark.parametrize("name", ["", "x" * 201, "has space", "new\nline", "{tag}", "star*", "ü"])
def test_validate_name_rejects_bad_names(kind: str, name: str) -> None:
    with pytest.raises(ValueError, match=f"Invalid {kind}"):
        validate_name(kind, name)


def test_validate_name_rejects_non_string() -> None:
    with pytest.raises(TypeError, match="must be a str"):
        validate_name("topic", 5)


@pytest.mark.parametrize("name", ["users", "a", "svc.users-v2", "team/users:get", "x" * 200])
def test_validate_name_accepts_good_names(name: str) -> None:
    assert validate_name("topic", name) == name


def test_encode_request_extensions_are_invisible_to_node() -> None:
    written = encode_request("Q3jS7Un2", b"123456", 1.0, "echo", None, False, {"sent_at": 0.5})

    frame = cbor2.loads(written)
    assert frame[:4] == ["Q3jS7Un2", b"123456", 1.0, "echo"]
    # A Node.js server hands item 4 to the handler: undefined, as for missing args.
    assert frame[4] is cbor2.undefined
    assert frame[5] == {"sent_at": 0.5}


def test_decode_request_reads_extensions() -> None:
    written = encode_request("Q3jS7Un2", b"123456", 1.0, "echo", {"a": 1}, True, {"sent_at": 0.5})

    request = decode_request(written, max_bytes=MAX_BYTES)

    assert request.args == {"a": 1}
    assert request.extensions == {"sent_at": 0.5}


def test_decode_request_ignores_non_map_extensions() -> None:
    data = cbor2.dumps(["Q3jS7Un2", b"123456", 1.0, "echo", None, "not a map"])

    assert decode_request(data, max_bytes=MAX_BYTES).extensions == {}
