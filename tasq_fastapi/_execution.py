"""Running one task's handler: lookup, deadline, threads, and encoding the reply."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import _protocol
from ._context import TasqRequestContext, reset_request_context, set_request_context
from ._deadlines import DeadlineTimers
from ._errors import TasqEncodeError, TasqInvalidArgsError
from ._protocol import Request, ResponseStatus
from ._tasks import TaskAlarm

logger = logging.getLogger(__name__)

Handler = Callable[[Any], Any]
"""A handler: called with the request's args, returns the result or an awaitable."""

DefaultHandler = Callable[[str, Any], Any]
"""A catch-all handler: called with the method name and the args."""

# A handler, the arguments it is called with, and whether it is async.
_Target = tuple[Callable[..., Any], tuple[Any, ...], bool]

# Maximum length of an exception message sent back to a caller, in characters.
_MAX_ERROR_MESSAGE_LENGTH = 1000


class HandlerRunner:
    """Runs the handler of a request and returns its outcome and encoded reply.

    The reply is None when no reply must be sent: the handler was cancelled at the
    caller's deadline, after which the caller no longer listens.
    """

    def __init__(
        self,
        *,
        topic: str,
        handlers: Mapping[str, Handler],
        default_handler: DefaultHandler | None,
        threads: int,
        cancel_at_deadline: bool,
        max_message_bytes: int,
    ) -> None:
        self._topic = topic
        self._max_message_bytes = max_message_bytes
        # A plain dict copy: only registered names can ever be called.
        self._handlers: dict[str, Handler] = dict(handlers)
        self._default_handler = default_handler
        # Whether each function is async, decided once rather than on every call.
        self._async_by_method = {name: _is_async_callable(function) for name, function in handlers.items()}
        self._default_is_async = default_handler is not None and _is_async_callable(default_handler)
        self._threads = threads
        self._cancel_at_deadline = cancel_at_deadline
        self._executor: ThreadPoolExecutor | None = None
        self._deadlines: DeadlineTimers[TaskAlarm] = DeadlineTimers(TaskAlarm.fire)

    @property
    def method_names(self) -> list[str]:
        """The methods with a handler of their own."""
        return list(self._handlers)

    def is_async(self, method: str) -> bool:
        """Return whether ``method`` runs on the event loop rather than in a thread of its own."""
        is_async = self._async_by_method.get(method)
        return self._default_is_async if is_async is None else is_async

    @property
    def has_default_handler(self) -> bool:
        """Whether methods without a handler go to a default handler."""
        return self._default_handler is not None

    def close(self) -> None:
        """Stop the worker threads of plain handlers once they finish."""
        self._deadlines.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def run(self, request: Request) -> tuple[str, bytes | None]:
        target = self._resolve(request)
        if target is None:
            return "unknown_method", _encode(request, ResponseStatus.UNKNOWN_METHOD)

        context = TasqRequestContext(
            topic=self._topic,
            method=request.method,
            request_id=request.request_id.hex(),
            client_id=request.client_id,
            deadline=request.deadline_unix_s,
        )
        token = set_request_context(context)
        try:
            result = await self._call_with_deadline(target, request, context)
        except _DeadlineExceeded:
            return "deadline_exceeded", None
        except TasqInvalidArgsError as exc:
            detail = _error_detail(exc) | {"invalid_args": exc.errors}
            return "invalid_args", _encode(request, ResponseStatus.REJECTED, detail=detail)
        except asyncio.CancelledError as exc:
            if _is_being_cancelled():
                raise
            # The handler raised CancelledError itself (an awaited future was
            # cancelled) while this task was not being cancelled: a handler failure.
            _log_handler_error(self._topic, request)
            return "rejected", _encode(request, ResponseStatus.REJECTED, detail=_error_detail(exc))
        except Exception as exc:
            _log_handler_error(self._topic, request)
            return "rejected", _encode(request, ResponseStatus.REJECTED, detail=_error_detail(exc))
        finally:
            reset_request_context(token)
        return _encode_result(self._topic, request, result, self._max_message_bytes)

    def _resolve(self, request: Request) -> _Target | None:
        handler = self._handlers.get(request.method)
        if handler is not None:
            return handler, (request.args,), self._async_by_method[request.method]
        default = self._default_handler
        if default is not None:
            return default, (request.method, request.args), self._default_is_async
        return None

    async def _call_with_deadline(
        self, target: _Target, request: Request, context: TasqRequestContext
    ) -> Any:
        function, args, is_async = target
        # An async handler is awaited directly: a wrapping coroutine would add a frame
        # and a step to every task.
        awaitable = function(*args) if is_async else self._run_plain(function, args)
        if not self._cancel_at_deadline:
            return await awaitable

        task = asyncio.current_task()
        assert task is not None, "handlers always run inside the server's own task"
        alarm = TaskAlarm(task)
        key = self._deadlines.add(alarm, context.time_remaining())
        try:
            return await awaitable
        except asyncio.CancelledError:
            # Only the alarm's own cancellation becomes a deadline; one from a closing
            # server, still counted by cancelling() once the alarm's is undone, goes on.
            if not alarm.disarm() or task.cancelling() > 0:
                raise
            logger.warning(
                "Handler cancelled at the deadline: topic=%s method=%s request_id=%s",
                self._topic,
                request.method,
                context.request_id,
            )
            raise _DeadlineExceeded from None
        finally:
            self._deadlines.remove(alarm, key)
            # A handler that swallowed the alarm's cancellation still had it counted.
            alarm.disarm()

    async def _run_plain(self, function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        # Plain functions run in this server's own threads, so that they never block
        # the event loop and ``threads`` bounds them too. The copied context carries
        # the request context into the thread.
        # NOTE: a plain handler cancelled at its deadline keeps running in its thread
        # until it returns; only its result is discarded.
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        result = await loop.run_in_executor(
            self._get_executor(), functools.partial(context.run, function, *args)
        )
        if inspect.isawaitable(result):
            return await result
        return result

    def _get_executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self._threads, thread_name_prefix=f"tasq-{self._topic}"
            )
        return self._executor


def _is_being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class _DeadlineExceeded(Exception):
    """The handler was cancelled because the caller's deadline passed."""


def _is_async_callable(function: Callable[..., Any]) -> bool:
    while isinstance(function, functools.partial):
        function = function.func
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - an async __call__ method counts too
    )


def _error_detail(exc: BaseException) -> dict[str, Any]:
    message = str(exc)
    if len(message) > _MAX_ERROR_MESSAGE_LENGTH:
        message = message[:_MAX_ERROR_MESSAGE_LENGTH] + "..."
    return {"type": type(exc).__name__, "message": message}


def _log_handler_error(topic: str, request: Request) -> None:
    logger.exception(
        "Handler failed: topic=%s method=%s request_id=%s",
        topic,
        request.method,
        request.request_id.hex(),
    )


def _encode(request: Request, status: ResponseStatus, detail: dict[str, Any] | None = None) -> bytes:
    try:
        return _protocol.encode_response(request.request_id, status, detail=detail)
    except TasqEncodeError:
        # Only a handler's extra error details can fail here; send the rest.
        if detail is None:
            raise
        fallback = {"type": detail["type"], "message": str(detail["message"])}
        return _protocol.encode_response(request.request_id, status, detail=fallback)


def _encode_result(topic: str, request: Request, result: Any, max_bytes: int) -> tuple[str, bytes]:
    try:
        reply = _protocol.encode_response(request.request_id, ResponseStatus.OK, result)
    except TasqEncodeError as exc:
        return _reject_result(topic, request, str(exc), f"type={type(result).__name__}")

    if len(reply) > max_bytes:
        message = (
            f"Result of method {request.method!r} is {len(reply)} bytes, over the server's maximum "
            f"of {max_bytes} bytes. Return less data or raise max_message_bytes."
        )
        return _reject_result(topic, request, message, f"bytes={len(reply)}")
    return "ok", reply


def _reject_result(topic: str, request: Request, message: str, fact: str) -> tuple[str, bytes]:
    logger.error(
        "Handler result cannot be sent: topic=%s method=%s request_id=%s %s",
        topic,
        request.method,
        request.request_id.hex(),
        fact,
    )
    detail = {"type": "TasqEncodeError", "message": message}
    return "rejected", _encode(request, ResponseStatus.REJECTED, detail=detail)
