"""Runtime side of typed clients: the base class that generated clients extend.

`python -m tasq_fastapi._codegen module:router` writes a module with one
`TasqProxy` subclass per router, whose `async def` methods have the handlers'
signatures without their dependency parameters. Each method calls
`TasqProxy._call`, which sends the same request as `Tasq.request` and validates
the result into the handler's declared return type. See docs/proxies.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self, TypeVar

import pydantic

from . import _protocol
from ._client import Tasq
from ._convert import TasqResultConversionError, to_cbor_value
from ._errors import TasqEncodeError, TasqError
from ._replies import effective_timeout

T = TypeVar("T")


class _ServerDefault:
    """Type of `SERVER_DEFAULT`, whose repr editors show in signatures."""

    def __repr__(self) -> str:
        return "SERVER_DEFAULT"


# Typed as Any so that it can be the default of a parameter of any type.
SERVER_DEFAULT: Any = _ServerDefault()
"""Default of every optional parameter of a generated client.

An argument left at `SERVER_DEFAULT` is not sent, so the handler's own default
applies, as it does when a caller of `Tasq.request` leaves the key out.
"""


class TasqResultValidationError(TasqError, ValueError):
    """A handler's result does not match the return type the client was generated with.

    It usually means that the server runs another version of the handler than
    the one the client was generated from. `topic` and `method` name the request,
    `result` is the decoded value that failed, and `errors` contains pydantic's
    error details.
    """

    def __init__(self, message: str, *, topic: str, method: str, result: Any, errors: list[Any]) -> None:
        super().__init__(message)
        self.topic = topic
        self.method = method
        self.result = result
        self.errors = errors


@dataclasses.dataclass(frozen=True)
class _CallOptions:
    topic: str
    timeout: float
    inherit_deadline: bool


class TasqProxy:
    """Base class of generated typed clients, each instance calling one topic through one `Tasq`.

    A subclass sets `default_topic` and defines one `async def` per handler. Every
    method raises what `Tasq.request` raises for the same request
    (`TasqRequestTimeoutError`, `TasqRequestUnknownMethodError`,
    `TasqRequestRejectedError`, `TasqRequestInvalidArgsError`,
    `TasqConnectionError`, `TasqEncodeError`), `TasqEncodeError` for args that
    cannot be converted to CBOR values, and `TasqResultValidationError` for a
    result that does not match the method's return type.

    Instances hold no connection of their own and are cheap to create, for
    example once per FastAPI request from `Depends(get_tasq)`.
    """

    default_topic: ClassVar[str]
    """The router's topic when the client was generated."""

    def __init__(
        self,
        tasq: Tasq,
        *,
        timeout: float = 10.0,
        inherit_deadline: bool = True,
        topic: str | None = None,
    ) -> None:
        """Bind the client to `tasq`.

        Args:
            tasq: a started client, from `create_tasq` or `Depends(get_tasq)`.
            timeout: seconds each request may take, as in `Tasq.request`.
            inherit_deadline: whether a request made inside a handler gets no more
                time than that handler's caller has left, as in `Tasq.request`.
            topic: the topic to call, when the router is served under another
                topic than `default_topic` (for example one read from settings).

        Raises:
            TypeError: if `tasq` is not a `Tasq`, or the class has no `default_topic`
                and no `topic` is given.
            ValueError: if `timeout` is not a positive number of seconds or
                `topic` is not a valid topic name.
        """
        if not isinstance(tasq, Tasq):
            raise TypeError(
                f"{type(self).__name__} needs a Tasq client, got {type(tasq).__name__}. "
                "Pass the result of create_tasq() or of Depends(get_tasq)."
            )
        if topic is None:
            topic = getattr(type(self), "default_topic", None)
            if topic is None:
                raise TypeError(f"{type(self).__name__} has no default_topic; pass topic=.")

        self._tasq = tasq
        self._options = _checked_options(topic, timeout, inherit_deadline)

    @property
    def topic(self) -> str:
        """The topic this client sends requests to."""
        return self._options.topic

    def with_options(
        self,
        *,
        timeout: float | None = None,
        inherit_deadline: bool | None = None,
    ) -> Self:
        """Return a copy of this client with another timeout or deadline inheritance.

        Options left as None keep this client's values, so
        `await users.with_options(timeout=2.0).get(user_id=1)` changes one call.

        Raises:
            ValueError: if `timeout` is not a positive number of seconds.
        """
        options = _checked_options(
            self._options.topic,
            self._options.timeout if timeout is None else timeout,
            self._options.inherit_deadline if inherit_deadline is None else inherit_deadline,
        )
        copy = type(self).__new__(type(self))
        copy._tasq = self._tasq
        copy._options = options
        return copy

    async def _call(self, method: str, args: Any, result_type: pydantic.TypeAdapter[T]) -> T:
        """Send `method` with `args` and validate the result with `result_type`.

        A dict of args loses its `SERVER_DEFAULT` entries, and `SERVER_DEFAULT` in
        place of the whole args sends none. What remains is converted as handler
        results are (pydantic models by field alias, datetimes, UUIDs, enums).
        """
        options = self._options
        payload = _args_payload(options.topic, method, args)
        raw_result = await self._tasq.request(
            options.topic,
            method,
            payload,
            timeout=options.timeout,
            inherit_deadline=options.inherit_deadline,
        )
        return _validated_result(options.topic, method, raw_result, result_type)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(topic={self.topic!r}, timeout={self._options.timeout!r})"


def _checked_options(topic: str, timeout: float, inherit_deadline: bool) -> _CallOptions:
    _protocol.validate_name("topic", topic)
    # Checked now so that a bad value fails where the client is made, not at its first call.
    effective_timeout(timeout, inherit_deadline=False)
    return _CallOptions(topic=topic, timeout=timeout, inherit_deadline=inherit_deadline)


def _args_payload(topic: str, method: str, args: Any) -> Any:
    if args is SERVER_DEFAULT:
        return None
    if isinstance(args, dict):
        args = {name: value for name, value in args.items() if value is not SERVER_DEFAULT}

    try:
        return to_cbor_value(args, name="args")
    except TasqResultConversionError as exc:
        raise TasqEncodeError(f"Cannot send the args of {topic}.{method}: {exc}") from exc


def _validated_result(topic: str, method: str, raw_result: Any, result_type: pydantic.TypeAdapter[T]) -> T:
    try:
        return result_type.validate_python(raw_result)
    except pydantic.ValidationError as exc:
        raise TasqResultValidationError(
            f"The result of {topic}.{method} does not match the client's return type: "
            f"{exc.error_count()} validation error(s). The server probably runs another "
            f"version of the handler; regenerate the client from the served router.\n{exc}",
            topic=topic,
            method=method,
            result=raw_result,
            errors=list(exc.errors(include_url=False)),
        ) from None
