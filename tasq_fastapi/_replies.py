"""Checks of client options, and the mapping of replies and failures to results and errors."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import _protocol
from ._connect import RedisClient
from ._context import get_request_context
from ._errors import (
    TasqConnectionError,
    TasqRequestError,
    TasqRequestInvalidArgsError,
    TasqRequestRejectedError,
    TasqRequestTimeoutError,
    TasqRequestUnknownMethodError,
)
from ._execution import DefaultHandler, Handler
from ._protocol import Response, ResponseStatus
from ._redis import execute

_MIN_REDIS_VERSION = (7, 0)

logger = logging.getLogger(__name__)


def effective_timeout(timeout: float, inherit_deadline: bool) -> float:
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ValueError(f"Invalid timeout {timeout!r}: give a positive number of seconds.")
    if _protocol.to_deadline_ms(time.time() + timeout) > _protocol.MAX_DEADLINE_MS:
        raise ValueError(
            f"Invalid timeout {timeout!r}: the deadline would lie past what the Tasq wire "
            "format can carry (about year 2301); give fewer seconds."
        )
    context = get_request_context() if inherit_deadline else None
    if context is None:
        return float(timeout)
    return min(float(timeout), context.time_remaining())


def check_serve_options(
    topic: str,
    handlers: Mapping[str, Handler],
    handler: DefaultHandler | None,
    threads: int,
    recheck_interval_s: float,
) -> None:
    _protocol.validate_name("topic", topic)
    if not handlers and handler is None:
        raise ValueError(
            f"Serving topic {topic!r} needs handlers or a default handler: a server without "
            "them would take tasks from other servers of the topic only to reject them."
        )
    for name, function in handlers.items():
        _protocol.validate_name("method", name)
        if not callable(function):
            raise TypeError(f"The handler for method {name!r} is not callable: {function!r}.")
    if handler is not None and not callable(handler):
        raise TypeError(f"The default handler is not callable: {handler!r}.")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"Invalid threads {threads!r}: give a whole number of at least 1.")
    if not recheck_interval_s > 0:
        raise ValueError(
            f"Invalid recheck_interval_s {recheck_interval_s!r}: give a positive number of seconds."
        )


def result_of(response: Response, topic: str, method: str, args: Any) -> Any:
    request_id = response.request_id.hex()
    if response.status is ResponseStatus.OK:
        return response.value
    if response.status is ResponseStatus.UNKNOWN_METHOD:
        raise TasqRequestUnknownMethodError(topic=topic, method=method, args=args, request_id=request_id)

    detail = response.detail or {}
    remote_type = detail.get("type") if isinstance(detail.get("type"), str) else None
    remote_message = str(detail["message"]) if "message" in detail else None
    if isinstance(detail.get("invalid_args"), list):
        raise TasqRequestInvalidArgsError(
            topic=topic,
            method=method,
            args=args,
            request_id=request_id,
            remote_type=remote_type,
            remote_message=remote_message,
            errors=detail["invalid_args"],
        )
    raise TasqRequestRejectedError(
        topic=topic,
        method=method,
        args=args,
        request_id=request_id,
        remote_type=remote_type,
        remote_message=remote_message,
    )


def outcome_of(exc: TasqRequestError) -> str:
    if isinstance(exc, TasqRequestTimeoutError):
        return "timeout"
    if isinstance(exc, TasqRequestUnknownMethodError):
        return "unknown_method"
    if isinstance(exc, TasqRequestInvalidArgsError):
        return "invalid_args"
    if isinstance(exc, TasqRequestRejectedError):
        return "rejected"
    return "error"


def check_bytes_responses(redis: RedisClient) -> None:
    if redis.get_encoder().decode_responses:
        raise ValueError(
            "The Redis client has decode_responses=True, but Tasq messages are binary CBOR. "
            "Pass a client created with decode_responses=False (the default) or a URL."
        )


async def check_redis_version(redis: RedisClient) -> None:
    """Raise RuntimeError when Redis is older than 7.0.

    The version comes from INFO, or from HELLO for a user whose ACL denies INFO
    (it is in the ``@dangerous`` category). When neither is allowed the check is
    skipped with a warning.
    """
    for version_text in await _server_versions(redis):
        version = tuple(int(part) for part in version_text.split(".")[:2] if part.isdigit())
        if version < _MIN_REDIS_VERSION:
            raise RuntimeError(
                f"Redis {version_text} is too old for Tasq: it needs Redis 7.0 or newer "
                "(for LPOP with a count and PEXPIRE NX/GT). Upgrade the server."
            )


async def _server_versions(redis: RedisClient) -> list[str]:
    try:
        info: dict[str, Any] = await redis.info("server")
    except NoPermissionError:
        return await _versions_from_hello(redis)

    # A Redis Cluster returns one section per node, and every node must qualify.
    sections = [info] if "redis_version" in info else [v for v in info.values() if isinstance(v, dict)]
    return [str(section.get("redis_version", "0")) for section in sections]


async def _versions_from_hello(redis: RedisClient) -> list[str]:
    try:
        reply = await execute(redis, "HELLO")
    except RedisError as exc:
        logger.warning("Cannot check the Redis version, because INFO and HELLO both failed: %r", exc)
        return []

    fields = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=True))
    version = fields.get(b"version", fields.get("version", b"0"))
    return [version.decode() if isinstance(version, bytes) else str(version)]


class RequestExpired(Exception):
    """Set on a request's waiter when its timeout passes."""


class ReplyTooLarge(Exception):
    """Set on a request's waiter when its reply exceeds the client's size limit."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class ClientClosed(Exception):
    """Set on the waiters of requests still pending when the client closes."""


@dataclass(frozen=True, slots=True)
class RequestCall:
    """The request a failure belongs to, for the error raised to its caller."""

    topic: str
    method: str
    args: Any
    request_id: str
    timeout_s: float
    max_message_bytes: int


def no_time_left(topic: str, method: str, args: Any) -> TasqRequestTimeoutError:
    """Return the error for a request made after its calling handler's deadline."""
    return TasqRequestTimeoutError(
        topic=topic,
        method=method,
        args=args,
        timeout_s=0.0,
        message=(
            f"Request {topic!r}.{method!r} was not sent: the calling handler's deadline "
            "has passed. Pass inherit_deadline=False to give the request its own timeout."
        ),
    )


def failure_of(exc: BaseException, call: RequestCall) -> TasqRequestError:
    """Return the error a caller gets when its request ended with ``exc``."""
    ids: dict[str, Any] = {
        "topic": call.topic,
        "method": call.method,
        "args": call.args,
        "request_id": call.request_id,
    }
    name = f"{call.topic!r}.{call.method!r}"
    if isinstance(exc, RequestExpired):
        return TasqRequestTimeoutError(**ids, timeout_s=call.timeout_s)
    if isinstance(exc, ReplyTooLarge):
        message = (
            f"the reply of {exc.size} bytes exceeds this client's maximum of "
            f"{call.max_message_bytes} bytes; raise max_message_bytes to accept it"
        )
        return TasqRequestRejectedError(**ids, remote_type="TasqEncodeError", remote_message=message)
    if isinstance(exc, ClientClosed):
        return TasqConnectionError(
            f"Request {name} was abandoned because the Tasq client was closed while it waited for its reply.",
            **ids,
        )
    detail = str(exc).rstrip(".")
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
        return TasqConnectionError(
            f"Request {name} failed before a reply arrived: {detail}. Check that Redis is "
            "reachable, then retry if the method is safe to repeat.",
            **ids,
        )
    return TasqRequestError(
        f"Redis rejected the request {name}: {detail}. Check the Redis user's permissions and "
        f"that key {_protocol.topic_key(call.topic)!r} is a list.",
        **ids,
    )
