"""Binding of a request's args to a handler's parameters, and the call itself.

Arg parameters are every handler parameter that is not a `Depends(...)`,
`Request` or `TasqRequestContext` parameter. They are validated together by a
pydantic model built from their type hints and defaults:

- a map binds its keys to parameters by name (unknown keys are ignored, as
  FastAPI ignores unknown body fields);
- a list binds its items to parameters by position;
- absent args (None) leave every parameter at its default;
- any other value binds to the only arg parameter, if there is exactly one;
- a handler whose only arg parameter is a pydantic model gets the whole args
  validated into that model.

Invalid args raise `TasqInvalidArgsError` carrying pydantic's error details, so
the caller gets `TasqRequestInvalidArgsError`.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Annotated, Any

import pydantic
from fastapi import FastAPI

from ._context import get_request_context
from ._convert import to_cbor_safe_errors, to_cbor_value
from ._depends import (
    DeclaredParam,
    ParamKind,
    SolveScope,
    TasqRouterConfigError,
    call_maybe_async,
    check_dependency_tree,
    classify_parameters,
    solve_dependencies,
    synthetic_request,
)
from ._errors import TasqInvalidArgsError

TaskHandler = Callable[[Any], Awaitable[Any]]
DefaultTaskHandler = Callable[[str, Any], Awaitable[Any]]

_NOT_RETURNED = object()


@dataclasses.dataclass(frozen=True)
class _Binding:
    """Validation plan for one handler's args."""

    model: type[pydantic.BaseModel]
    names: tuple[str, ...]
    whole_args_param: str | None
    # How many leading names a list of args may fill: keyword-only parameters
    # come last in a signature and take values by name only.
    positional: int


def compile_handler(app: FastAPI, topic: str, method: str, func: Callable[..., Any]) -> TaskHandler:
    """Return the coroutine function the Tasq server calls for `method`.

    Raises:
        TasqRouterConfigError: if the signature, type hints or dependencies of
            `func` cannot be served.
    """
    owner = f"Handler {_qualname(func)} for {topic}.{method}"
    params = classify_parameters(func, owner=owner, allow_args=True)
    check_dependency_tree(params, owner=owner)
    binding = _build_binding(params, owner)

    async def run_task(args: Any) -> Any:
        values = _validate_args(binding, args)
        return await _call_with_dependencies(app, topic, method, func, params, values)

    return run_task


def compile_default_handler(app: FastAPI, topic: str, func: Callable[..., Any]) -> DefaultTaskHandler:
    """Return the coroutine function the Tasq server calls for unregistered methods.

    The default handler's first two non-dependency parameters receive the method
    name and the raw, unvalidated args.

    Raises:
        TasqRouterConfigError: if `func` does not have exactly two such parameters.
    """
    owner = f"Default handler {_qualname(func)} for topic {topic}"
    params = classify_parameters(func, owner=owner, allow_args=True)
    check_dependency_tree(params, owner=owner)
    arg_names = [param.name for param in params if param.kind is ParamKind.ARG]

    if len(arg_names) != 2:
        raise TasqRouterConfigError(
            f"{owner} declares {len(arg_names)} non-dependency parameters {arg_names}. "
            "Declare exactly two, which receive the method name and the raw args."
        )

    async def run_default_task(method: str, args: Any) -> Any:
        values = {arg_names[0]: method, arg_names[1]: args}
        return await _call_with_dependencies(app, topic, method, func, params, values)

    return run_default_task


async def _call_with_dependencies(
    app: FastAPI,
    topic: str,
    method: str,
    func: Callable[..., Any],
    params: list[DeclaredParam],
    values: dict[str, Any],
) -> Any:
    result: Any = _NOT_RETURNED

    async with AsyncExitStack() as stack:
        scope = SolveScope(
            app=app,
            stack=stack,
            request=synthetic_request(app, topic, method),
            context=get_request_context(),
        )
        values.update(await solve_dependencies(params, scope))
        raw_result = await call_maybe_async(func, values)

        # Converted before `yield` dependencies clean up, because results may
        # read from resources (sessions, files) that cleanup closes.
        result = to_cbor_value(raw_result)

    if result is _NOT_RETURNED:
        raise RuntimeError(
            f"A yield dependency of {topic}.{method} caught the handler's exception without "
            "re-raising it. Re-raise it after cleanup so the caller gets a rejected reply."
        )
    return result


def _build_binding(params: list[DeclaredParam], owner: str) -> _Binding:
    arg_params = [param for param in params if param.kind is ParamKind.ARG]
    fields: dict[str, Any] = {}

    for index, param in enumerate(arg_params):
        default = ... if param.default is inspect.Parameter.empty else param.default
        # Internal field names with aliases let parameters be named anything,
        # including names pydantic reserves (model_config) or rejects (_private).
        fields[f"arg_{index}"] = (Annotated[param.annotation, pydantic.Field(alias=param.name)], default)

    try:
        model = pydantic.create_model(f"{_model_prefix(owner)}Args", **fields)
    except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError, TypeError) as exc:
        raise TasqRouterConfigError(
            f"{owner} has parameter types pydantic cannot validate: {exc}. "
            "Use types pydantic supports, or take the value as Any and check it yourself."
        ) from exc

    names = tuple(param.name for param in arg_params)
    whole_args_param = names[0] if len(arg_params) == 1 and _is_model(arg_params[0].annotation) else None
    positional = sum(1 for param in arg_params if not param.keyword_only)
    return _Binding(model=model, names=names, whole_args_param=whole_args_param, positional=positional)


def _validate_args(binding: _Binding, args: Any) -> dict[str, Any]:
    payload = _args_payload(binding, args)

    try:
        validated = binding.model.model_validate(payload)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        raise TasqInvalidArgsError(
            f"The args are invalid: {exc.error_count()} validation error(s), first "
            f"{_describe_error(errors[0])}.",
            errors=to_cbor_safe_errors(list(errors)),
        ) from None

    return {name: getattr(validated, f"arg_{index}") for index, name in enumerate(binding.names)}


def _args_payload(binding: _Binding, args: Any) -> dict[str, Any]:
    if binding.whole_args_param is not None:
        return {binding.whole_args_param: {} if args is None else args}

    if args is None:
        return {}

    if isinstance(args, dict):
        return args

    if isinstance(args, list | tuple):
        return _positional_payload(binding, list(args))

    if len(binding.names) == 1:
        return {binding.names[0]: args}

    raise TasqInvalidArgsError(
        f"The args are of type {type(args).__name__}, but this handler takes {len(binding.names)} "
        "parameters. Send a map of parameter names to values, or a list of values in order.",
        errors=[{"type": "args_type", "loc": [], "msg": "Expected a map or a list of args."}],
    )


def _positional_payload(binding: _Binding, items: list[Any]) -> dict[str, Any]:
    if len(items) > binding.positional:
        raise TasqInvalidArgsError(
            f"The args list has {len(items)} items, but this handler takes at most "
            f"{binding.positional} by position. Remove the extra items, or send a map to set "
            "keyword-only parameters.",
            errors=[
                {"type": "too_many_args", "loc": [], "msg": f"Expected at most {binding.positional} items."}
            ],
        )
    return dict(zip(binding.names, items, strict=False))


def _is_model(annotation: Any) -> bool:
    base = annotation
    if typing.get_origin(annotation) is Annotated:
        base = typing.get_args(annotation)[0]
    return inspect.isclass(base) and issubclass(base, pydantic.BaseModel)


def _qualname(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", None) or type(func).__qualname__


def _model_prefix(owner: str) -> str:
    return "".join(character for character in owner.title() if character.isalnum())[:60]


def _describe_error(error: Any) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()))
    return f"{location or 'args'}: {str(error.get('msg', 'invalid')).rstrip('.')}"
