"""`TasqRouter`: the handlers one app serves on one Tasq topic."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from fastapi import FastAPI

from . import _protocol
from ._depends import TasqRouterConfigError
from ._handler import DefaultTaskHandler, TaskHandler, compile_default_handler, compile_handler

P = ParamSpec("P")
R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class CompiledRouter:
    """A router's handlers bound to one app, ready for `Tasq.serve`."""

    topic: str
    threads: int
    cancel_at_deadline: bool
    at_least_once: bool
    lease_s: float
    handlers: dict[str, TaskHandler]
    default: DefaultTaskHandler | None


class TasqRouter:
    """Handlers for one Tasq topic, served by every app that includes the router.

    Register handlers with `@router.method()` (named after the function),
    `@router.method("name")`, and a catch-all with `@router.default`. The
    decorators return the function unchanged, so it can still be called and
    tested directly.

    Handler parameters are filled from the request's args and validated by
    pydantic from their type hints. `Depends(...)` parameters get FastAPI
    dependencies, resolved with the serving app's `dependency_overrides`, and
    `TasqRequestContext` parameters get the current task's context. Signatures
    are checked when the app starts, so forward references may be defined after
    the decorator runs.

    A router has no connection of its own: an app serves it after
    `TasqExtension.include_router(router)`, and one router may be included in
    several apps.
    """

    def __init__(
        self,
        topic: str,
        *,
        threads: int = 1,
        cancel_at_deadline: bool = True,
        at_least_once: bool = False,
        lease_s: float = 10.0,
    ) -> None:
        """Create a router for `topic`.

        Args:
            topic: the Tasq topic whose tasks this router's handlers take.
            threads: how many tasks the server runs at once (at least 1).
            cancel_at_deadline: whether the server cancels a handler still running
                at its request's deadline.
            at_least_once: whether a task whose server died runs again on another
                server (handlers must then be idempotent); see `Tasq.serve`.
            lease_s: with `at_least_once`, seconds after which the task of a dead
                server is run again.

        Raises:
            TasqRouterConfigError: if `topic` is not a valid topic name, `threads`
                is below 1 or `lease_s` is not positive.
        """
        try:
            _protocol.validate_name("topic", topic)
        except (TypeError, ValueError) as exc:
            raise TasqRouterConfigError(f"TasqRouter topic is invalid: {exc}") from exc
        if not lease_s > 0:
            raise TasqRouterConfigError(f"TasqRouter lease_s={lease_s!r} is invalid. Pass a positive number.")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise TasqRouterConfigError(
                f"TasqRouter threads={threads!r} is invalid. Pass an int of 1 or more."
            )

        self.topic = topic
        self.threads = threads
        self.cancel_at_deadline = cancel_at_deadline
        self.at_least_once = at_least_once
        self.lease_s = lease_s
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._default: Callable[..., Any] | None = None

    @property
    def method_names(self) -> tuple[str, ...]:
        """Names of the registered methods, in registration order."""
        return tuple(self._handlers)

    @property
    def has_default(self) -> bool:
        """Whether a catch-all handler is registered."""
        return self._default is not None

    @property
    def handlers(self) -> Mapping[str, Callable[..., Any]]:
        """Registered handler functions by method name, in registration order (read-only)."""
        return types.MappingProxyType(self._handlers)

    @property
    def default_handler(self) -> Callable[..., Any] | None:
        """The catch-all handler, or None."""
        return self._default

    def method(self, name: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Register the decorated function as the handler of method `name`.

        Without `name`, the method is named after the function (`__name__`).

        Raises:
            TasqRouterConfigError: if the name is not a valid method name or is
                already registered.
        """
        if name is not None and (not isinstance(name, str) or not name):
            raise TasqRouterConfigError(
                f"Method name {name!r} on topic {self.topic!r} is invalid. Pass a non-empty string "
                "or nothing to use the function name."
            )

        def register(func: Callable[P, R]) -> Callable[P, R]:
            method_name = name if name is not None else _function_name(func)
            try:
                _protocol.validate_name("method", method_name)
            except ValueError as exc:
                raise TasqRouterConfigError(f"Method name on topic {self.topic!r} is invalid: {exc}") from exc
            if method_name in self._handlers:
                raise TasqRouterConfigError(
                    f"Method {method_name!r} is already registered on topic {self.topic!r}; "
                    "give one of the handlers another name with @router.method('name')."
                )
            self._handlers[method_name] = func
            return func

        return register

    @overload
    def default(self, func: Callable[P, R]) -> Callable[P, R]: ...

    @overload
    def default(self) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def default(self, func: Callable[..., Any] | None = None) -> Any:
        """Register the decorated function as the handler of every unregistered method.

        Use as `@router.default` or `@router.default()`. The function's first two
        non-dependency parameters receive the method name and the raw args.

        Raises:
            TasqRouterConfigError: if a default handler is already registered.
        """
        if func is None:
            return self._register_default
        return self._register_default(func)

    def compile(self, app: FastAPI) -> CompiledRouter:
        """Bind every handler to `app` and check its signature and dependencies.

        Raises:
            TasqRouterConfigError: if a handler cannot be served, or the router
                has no handlers at all.
        """
        if not self._handlers and self._default is None:
            raise TasqRouterConfigError(
                f"TasqRouter for topic {self.topic!r} has no handlers. Register at least one "
                "with @router.method() or @router.default before including it."
            )

        handlers = {
            name: compile_handler(app, self.topic, name, func) for name, func in self._handlers.items()
        }
        default = None
        if self._default is not None:
            default = compile_default_handler(app, self.topic, self._default)

        return CompiledRouter(
            topic=self.topic,
            threads=self.threads,
            cancel_at_deadline=self.cancel_at_deadline,
            at_least_once=self.at_least_once,
            lease_s=self.lease_s,
            handlers=handlers,
            default=default,
        )

    def _register_default(self, func: Callable[P, R]) -> Callable[P, R]:
        if self._default is not None:
            raise TasqRouterConfigError(
                f"Topic {self.topic!r} already has the default handler {_function_name(self._default)}; "
                "register only one @router.default per router."
            )
        self._default = func
        return func

    def __repr__(self) -> str:
        return f"TasqRouter(topic={self.topic!r}, threads={self.threads}, methods={list(self._handlers)})"


def _function_name(func: Callable[..., Any]) -> str:
    name = getattr(func, "__name__", None)
    if not isinstance(name, str) or not name or name == "<lambda>":
        raise TasqRouterConfigError(
            f"Cannot derive a method name from {func!r}. Pass one with @router.method('name')."
        )
    return name
