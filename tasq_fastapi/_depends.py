"""Resolution of FastAPI `Depends(...)` parameters for Tasq handlers.

Handlers run outside any HTTP request, so this module resolves dependencies
itself, following the rules FastAPI applies to endpoints:

- sub-dependencies are resolved first, and each value is cached per task
  unless `use_cache=False`;
- `app.dependency_overrides` is looked up on every call;
- sync callables run in a worker thread;
- dependencies with `yield` clean up after the handler, in reverse order, and
  the handler's exception is thrown into them.

Cleanup always runs before the reply is sent, whatever `Depends(scope=...)` sets.

Besides `Depends(...)`, a dependency parameter may be annotated with
`starlette.requests.Request` (or `HTTPConnection`), which gets a synthetic
request whose `.app` is the serving app and which has no headers, query or
body, or with `TasqRequestContext`, which gets the current task's context.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import inspect
import typing
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from fastapi import FastAPI, params
from starlette.requests import HTTPConnection, Request

from ._context import TasqRequestContext
from ._errors import TasqError

_PARAMS_CACHE: dict[Callable[..., Any], list[DeclaredParam]] = {}


class TasqRouterConfigError(TasqError, ValueError):
    """A Tasq router, handler or dependency is declared in a way Tasq cannot serve."""


class ParamKind(enum.Enum):
    """Source of a declared parameter's value."""

    DEPENDS = "depends"
    REQUEST = "request"
    CONTEXT = "context"
    ARG = "arg"


@dataclasses.dataclass(frozen=True)
class DeclaredParam:
    """One parameter of a handler or dependency, classified."""

    name: str
    kind: ParamKind
    annotation: Any = Any
    default: Any = inspect.Parameter.empty
    depends: params.Depends | None = None
    keyword_only: bool = False


@dataclasses.dataclass
class SolveScope:
    """State shared by every dependency resolved for one task."""

    app: FastAPI
    stack: AsyncExitStack
    request: Request
    context: TasqRequestContext | None
    cache: dict[Callable[..., Any], Any] = dataclasses.field(default_factory=dict)


def synthetic_request(app: FastAPI, topic: str, method: str) -> Request:
    """Build the request given to dependencies that declare a `Request` parameter.

    Only `.app`, `.state` and the informational path `/tasq/{topic}/{method}` are
    meaningful. Headers, query parameters and the body are empty.
    """
    scope: dict[str, Any] = {
        "type": "http",
        "app": app,
        "method": "POST",
        "path": f"/tasq/{topic}/{method}",
        "raw_path": f"/tasq/{topic}/{method}".encode(),
        "root_path": "",
        "scheme": "tasq",
        "query_string": b"",
        "headers": [],
        "state": {},
    }
    return Request(scope)


def classify_parameters(call: Callable[..., Any], *, owner: str, allow_args: bool) -> list[DeclaredParam]:
    """Classify each parameter of `call` as a dependency, request, context or arg.

    `owner` names the callable in error messages. With `allow_args` false (for
    dependencies) every parameter must be injectable.

    Raises:
        TasqRouterConfigError: for `*args`/`**kwargs`, positional-only parameters,
            unresolvable type hints, or a dependency parameter Tasq cannot supply.
    """
    signature = _signature(call, owner)
    hints = _type_hints(call, owner)
    entries: list[DeclaredParam] = []

    for parameter in signature.parameters.values():
        _check_parameter_kind(parameter, owner)
        annotation = hints.get(parameter.name, Any)
        entry = _classify_one(parameter, annotation)
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            entry = dataclasses.replace(entry, keyword_only=True)

        if entry.kind is ParamKind.ARG and not allow_args:
            raise TasqRouterConfigError(
                f"Dependency {owner} declares parameter {parameter.name!r}, which Tasq cannot supply "
                "to handlers. Give it a default, make it a Depends(...) parameter, or annotate it "
                "as Request or TasqRequestContext."
            )
        entries.append(entry)

    return entries


def check_dependency_tree(entries: list[DeclaredParam], *, owner: str) -> None:
    """Classify every dependency below `entries` so signature errors surface at startup.

    Raises:
        TasqRouterConfigError: naming the first dependency Tasq cannot call.
    """
    for entry in entries:
        if entry.depends is None or entry.depends.dependency is None:
            continue
        sub_entries = _dependency_params(entry.depends.dependency)
        check_dependency_tree(sub_entries, owner=owner)


async def solve_dependencies(entries: list[DeclaredParam], scope: SolveScope) -> dict[str, Any]:
    """Return keyword arguments for every non-arg parameter in `entries`.

    Dependencies with `yield` are entered on `scope.stack`, so the caller must
    keep that stack open until the handler has finished.
    """
    values: dict[str, Any] = {}

    for entry in entries:
        if entry.kind is ParamKind.DEPENDS and entry.depends is not None:
            values[entry.name] = await _solve_one(entry.depends, scope)
        elif entry.kind is ParamKind.REQUEST:
            values[entry.name] = scope.request
        elif entry.kind is ParamKind.CONTEXT:
            values[entry.name] = scope.context

    return values


async def call_maybe_async(call: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Await `call` if it is async, otherwise run it in a worker thread.

    The thread gets a copy of the current context, so `get_request_context()` works in it.
    """
    if _is_async_callable(call):
        return await call(**kwargs)
    return await asyncio.to_thread(call, **kwargs)


async def _solve_one(depends: params.Depends, scope: SolveScope) -> Any:
    original = depends.dependency
    assert original is not None
    call = scope.app.dependency_overrides.get(original, original)

    if depends.use_cache and call in scope.cache:
        return scope.cache[call]

    entries = _dependency_params(call)
    kwargs = await solve_dependencies(entries, scope)
    value = await _call_dependency(call, kwargs, scope.stack)

    if depends.use_cache:
        scope.cache[call] = value
    return value


async def _call_dependency(call: Callable[..., Any], kwargs: dict[str, Any], stack: AsyncExitStack) -> Any:
    if inspect.isasyncgenfunction(call):
        return await stack.enter_async_context(contextlib.asynccontextmanager(call)(**kwargs))

    if inspect.isgeneratorfunction(call):
        manager = contextlib.contextmanager(call)(**kwargs)
        return await stack.enter_async_context(_in_thread(manager))

    return await call_maybe_async(call, kwargs)


@contextlib.asynccontextmanager
async def _in_thread(manager: contextlib.AbstractContextManager[Any]) -> typing.AsyncIterator[Any]:
    # Setup and cleanup of a sync `yield` dependency may block, so both run in a thread.
    value = await asyncio.to_thread(manager.__enter__)
    try:
        yield value
    except BaseException as exc:
        suppressed = await asyncio.to_thread(manager.__exit__, type(exc), exc, exc.__traceback__)
        if not suppressed:
            raise
    else:
        await asyncio.to_thread(manager.__exit__, None, None, None)


def _dependency_params(call: Callable[..., Any]) -> list[DeclaredParam]:
    # Introspection costs far more than a dict lookup, and overrides may swap in
    # new callables at any time, so plans are cached per callable on first use.
    try:
        return _PARAMS_CACHE[call]
    except KeyError:
        pass
    except TypeError:
        return classify_parameters(call, owner=_describe(call), allow_args=False)

    entries = classify_parameters(call, owner=_describe(call), allow_args=False)
    _PARAMS_CACHE[call] = entries
    return entries


def _classify_one(parameter: inspect.Parameter, annotation: Any) -> DeclaredParam:
    base, depends = _split_annotated(annotation)
    if isinstance(parameter.default, params.Depends):
        depends = parameter.default

    if depends is not None:
        if depends.dependency is None:
            # FastAPI's shorthand: `x: Model = Depends()` calls the annotated class.
            depends = params.Depends(dependency=base, use_cache=depends.use_cache)
        return DeclaredParam(parameter.name, ParamKind.DEPENDS, base, depends=depends)

    if inspect.isclass(base) and issubclass(base, HTTPConnection):
        return DeclaredParam(parameter.name, ParamKind.REQUEST, base)

    if base is TasqRequestContext or _is_optional_of(base, TasqRequestContext):
        return DeclaredParam(parameter.name, ParamKind.CONTEXT, base)

    return DeclaredParam(parameter.name, ParamKind.ARG, annotation, parameter.default)


def _split_annotated(annotation: Any) -> tuple[Any, params.Depends | None]:
    if typing.get_origin(annotation) is not typing.Annotated:
        return annotation, None
    base, *metadata = typing.get_args(annotation)
    for item in metadata:
        if isinstance(item, params.Depends):
            return base, item
    return base, None


def _is_optional_of(annotation: Any, target: type) -> bool:
    members = typing.get_args(annotation)
    return target in members and all(member in (target, type(None)) for member in members)


def _check_parameter_kind(parameter: inspect.Parameter, owner: str) -> None:
    if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
        raise TasqRouterConfigError(
            f"{owner} declares *{parameter.name} or **{parameter.name}, which Tasq cannot fill. "
            "Declare each parameter by name instead."
        )
    if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
        raise TasqRouterConfigError(
            f"{owner} declares the positional-only parameter {parameter.name!r}, but "
            "Tasq passes values by name. Remove the '/' from the signature."
        )


def _signature(call: Callable[..., Any], owner: str) -> inspect.Signature:
    try:
        return inspect.signature(call)
    except (TypeError, ValueError) as exc:
        raise TasqRouterConfigError(
            f"Tasq cannot read the signature of {owner}: {exc}. Use a plain function or class."
        ) from exc


def _type_hints(call: Callable[..., Any], owner: str) -> dict[str, Any]:
    target = call
    if not (inspect.isfunction(call) or inspect.ismethod(call) or inspect.isclass(call)):
        target = type(call).__call__
    if inspect.isclass(call):
        target = call.__init__

    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception as exc:
        raise TasqRouterConfigError(
            f"Tasq cannot resolve the type hints of {owner}: {exc}. "
            "Define or import every type the signature names before the app starts."
        ) from exc


def _is_async_callable(call: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(call):
        return True
    dunder_call = getattr(call, "__call__", None)  # noqa: B004
    return not inspect.isclass(call) and inspect.iscoroutinefunction(dunder_call)


def _describe(call: Callable[..., Any]) -> str:
    name = getattr(call, "__qualname__", None) or type(call).__qualname__
    module = getattr(call, "__module__", None)
    return f"dependency {module}.{name}" if module else f"dependency {name}"
