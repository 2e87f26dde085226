"""`tasq call`: send one request and print its result or its error."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from typing import Any, TextIO

from redis.exceptions import RedisClusterException, RedisError

from . import _protocol
from ._cli_common import CliError, ExitCode
from ._cli_render import dumps_json, format_readable, to_json_value
from ._client import Tasq, create_tasq
from ._connect import describe_url
from ._errors import (
    TasqConnectionError,
    TasqEncodeError,
    TasqRequestError,
    TasqRequestInvalidArgsError,
    TasqRequestRejectedError,
    TasqRequestTimeoutError,
    TasqRequestUnknownMethodError,
)

# Checked in this order, so a subclass comes before its base class.
_EXIT_CODES: tuple[tuple[type[TasqRequestError], ExitCode], ...] = (
    (TasqRequestInvalidArgsError, ExitCode.INVALID_ARGS),
    (TasqRequestRejectedError, ExitCode.REJECTED),
    (TasqRequestUnknownMethodError, ExitCode.UNKNOWN_METHOD),
    (TasqRequestTimeoutError, ExitCode.TIMEOUT),
    (TasqConnectionError, ExitCode.CONNECTION),
)


def parse_args_json(text: str | None, stdin: TextIO) -> tuple[bool, Any]:
    """Return whether args were given and their value, parsed from JSON.

    `text` "-" reads the JSON from `stdin`; None means no args.

    Raises:
        CliError: with `ExitCode.USAGE` when the text is not valid JSON.
    """
    if text is None:
        return False, None
    source = stdin.read() if text == "-" else text
    try:
        return True, json.loads(source)
    except RecursionError:
        raise CliError(
            "ARGS-JSON nests too deeply to parse; Tasq accepts at most 100 levels.", ExitCode.USAGE
        ) from None
    except ValueError as exc:
        raise CliError(
            f"ARGS-JSON is not valid JSON: {exc}. Quote it for the shell, e.g. '{{\"id\": 1}}'.",
            ExitCode.USAGE,
        ) from None


async def run_call(options: argparse.Namespace, redis_url: str, stdout: TextIO, stderr: TextIO) -> ExitCode:
    """Send `options.method` to `options.topic` and print the outcome.

    The result goes to `stdout`, an error to `stderr`. Returns the exit code of the
    outcome; raises CliError for invalid input or when Redis cannot be reached.
    """
    _check_names(options.topic, options.method)
    has_args, args = parse_args_json(options.args_json, sys.stdin)
    if not math.isfinite(options.timeout) or not options.timeout > 0:
        raise CliError(
            f"Invalid --timeout {options.timeout!r}: give a positive number of seconds.", ExitCode.USAGE
        )

    tasq = await _connect(redis_url, options.connect_timeout)
    async with tasq:
        try:
            result = await tasq.request(
                options.topic, options.method, args if has_args else None, timeout=options.timeout
            )
        except TasqEncodeError as exc:
            raise CliError(str(exc), ExitCode.USAGE) from None
        except ValueError as exc:
            raise CliError(str(exc), ExitCode.USAGE) from None
        except TasqRequestError as exc:
            _print_error(exc, stderr, as_json=options.json)
            return _exit_code_of(exc)

    stdout.write((dumps_json(result) if options.json else format_readable(result)) + "\n")
    return ExitCode.OK


def _check_names(topic: str, method: str) -> None:
    try:
        _protocol.validate_name("topic", topic)
        _protocol.validate_name("method", method)
    except ValueError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None


async def _connect(redis_url: str, connect_timeout_s: float) -> Tasq:
    where = describe_url(redis_url)
    try:
        async with asyncio.timeout(connect_timeout_s):
            return await create_tasq(redis_url)
    except ValueError as exc:
        raise CliError(f"Invalid Redis URL {where}: {exc}", ExitCode.USAGE) from None
    except TimeoutError:
        raise CliError(
            f"Connecting to Redis at {where} timed out after {connect_timeout_s:g} s. "
            "Check the URL and that Redis is running, or raise --connect-timeout.",
            ExitCode.CONNECTION,
        ) from None
    except (RedisError, RedisClusterException, OSError, RuntimeError) as exc:
        raise CliError(
            f"Cannot connect to Redis at {where}: {str(exc).rstrip('.')}. "
            "Check the URL and that Redis 7.0 or newer runs there.",
            ExitCode.CONNECTION,
        ) from None


def _exit_code_of(exc: TasqRequestError) -> ExitCode:
    for error_type, code in _EXIT_CODES:
        if isinstance(exc, error_type):
            return code
    return ExitCode.FAILURE


def _print_error(exc: TasqRequestError, stderr: TextIO, *, as_json: bool) -> None:
    errors = exc.errors if isinstance(exc, TasqRequestInvalidArgsError) else None
    if as_json:
        body: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc), "request_id": exc.request_id}
        if isinstance(exc, TasqRequestRejectedError):
            body["remote_type"] = exc.remote_type
            body["remote_message"] = exc.remote_message
        if errors is not None:
            body["errors"] = errors
        stderr.write(dumps_json({"error": body}) + "\n")
        return

    stderr.write(f"tasq: {type(exc).__name__}: {exc}\n")
    for error in errors or []:
        stderr.write(f"  - {_describe_validation_error(error)}\n")


def _describe_validation_error(error: Any) -> str:
    if not isinstance(error, dict):
        return format_readable(error)
    location = ".".join(str(part) for part in to_json_value(error.get("loc", []), readable=True))
    message = error.get("msg", "")
    return f"{location}: {message}" if location else str(message)
