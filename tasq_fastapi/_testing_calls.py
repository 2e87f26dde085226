"""`call_handler`: run one handler of a router in process, as a server would, without Redis."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI

from . import _protocol
from ._client import DEFAULT_MAX_MESSAGE_BYTES
from ._errors import TasqEncodeError, TasqRequestTimeoutError
from ._execution import HandlerRunner
from ._replies import effective_timeout, result_of
from ._router import TasqRouter

# Namespace of the client id that handlers see in their TasqRequestContext.
_CALLER_NAMESPACE = "tasq-testing"


async def call_handler(
    router: TasqRouter,
    method: str,
    args: Any = None,
    *,
    app: FastAPI | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109 - like Tasq.request, it becomes the request's deadline
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Any:
    """Run `method` of `router` in this process and return what a remote caller would get.

    The call takes the path of a real request, minus Redis: `router.compile(app)`
    binds the handlers, the args are encoded to CBOR and decoded as a server reads
    them, the server's handler runner validates them, resolves dependencies with
    `app.dependency_overrides`, sets the `TasqRequestContext` and applies the
    deadline, and the reply is decoded as `Tasq.request` decodes it. The result is
    therefore what `Tasq.request` returns: models and dataclasses become dicts,
    tuples become lists. A handler's exception is logged by the
    `tasq_fastapi._execution` logger with its traceback, as on a server.

    Args:
        router: the router whose handler runs; its topic goes into the context.
        method: the method name; a router's default handler takes unregistered names.
        args: the request's args, as for `Tasq.request`; None sends no args.
        app: the app whose dependency overrides and state the handler sees, or None
            for a new bare `FastAPI()`.
        timeout: seconds until the request's deadline, after which the handler is
            cancelled unless the router has `cancel_at_deadline=False`.
        max_message_bytes: the largest encoded args or result accepted, in bytes.

    Raises:
        TasqRequestInvalidArgsError: if the args are invalid; `.errors` lists why.
        TasqRequestRejectedError: if the handler raised (`remote_type` and
            `remote_message` name its exception) or its result cannot be encoded.
        TasqRequestUnknownMethodError: if the router has no handler for `method`.
        TasqRequestTimeoutError: if the handler was cancelled at the deadline.
        TasqEncodeError: if `args` cannot be encoded or exceed `max_message_bytes`.
        TasqRouterConfigError: if a handler of the router cannot be served.
        ValueError, TypeError: for an invalid method name or timeout.
    """
    _protocol.validate_name("method", method)
    timeout_s = effective_timeout(timeout, inherit_deadline=False)
    compiled = router.compile(app if app is not None else FastAPI())
    request = _received_request(method, args, timeout_s, max_message_bytes)

    runner = HandlerRunner(
        topic=compiled.topic,
        handlers=compiled.handlers,
        default_handler=compiled.default,
        threads=compiled.threads,
        cancel_at_deadline=compiled.cancel_at_deadline,
        max_message_bytes=max_message_bytes,
    )
    try:
        _outcome, reply = await runner.run(request)
    finally:
        runner.close()

    if reply is None:
        raise TasqRequestTimeoutError(
            topic=compiled.topic,
            method=method,
            args=args,
            request_id=request.request_id.hex(),
            timeout_s=timeout_s,
        )
    response = _protocol.decode_response(reply, max_bytes=max_message_bytes)
    return result_of(response, compiled.topic, method, args)


def _received_request(method: str, args: Any, timeout_s: float, max_message_bytes: int) -> _protocol.Request:
    # A round trip through the wire format gives the handler exactly the args a
    # server would decode, and rejects args that Tasq.request would reject.
    deadline_ms = _protocol.to_deadline_ms(time.time() + timeout_s)
    payload = _protocol.encode_request(
        _protocol.new_client_id(_CALLER_NAMESPACE),
        _protocol.new_request_id(),
        deadline_ms,
        method,
        args,
        args is not None,
    )
    if len(payload) > max_message_bytes:
        raise TasqEncodeError(
            f"Request to method {method!r} is {len(payload)} bytes, over the maximum of "
            f"{max_message_bytes} bytes. Send less data or raise max_message_bytes."
        )
    return _protocol.decode_request(payload, max_bytes=max_message_bytes)
