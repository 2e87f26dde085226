"""JSON schemas of what each Tasq handler accepts and returns, for the method listing.

The args schema comes from the pydantic model that validates the handler's args at
run time, so it describes exactly what the server accepts: an object whose
properties are the handler's arg parameters (every parameter that is not a
`Depends(...)`, `Request` or `TasqRequestContext` parameter). A handler whose only
arg parameter is a pydantic model takes the whole args as that model, and its args
schema is the model's schema. Servers also accept a list of args by position and,
for a handler with one arg parameter, its value alone; the schema describes only
the map form.

The result schema comes from the return annotation, in pydantic's serialization
mode. Results travel as CBOR, so a `bytes` result is a byte string on the wire
although JSON Schema can only call it a string with format `binary`.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pydantic
from pydantic.errors import PydanticInvalidForJsonSchema

from ._depends import ParamKind, TasqRouterConfigError, classify_parameters
from ._handler import _build_binding, _is_model, _qualname
from ._router import TasqRouter

__all__ = ["MethodDescription", "describe_handler", "describe_router", "describe_routers"]

# The return annotation may name types pydantic cannot describe, such as a custom class
# returned as `Any`-like data; the listing then reports that instead of failing.
_SCHEMA_ERRORS = (
    pydantic.PydanticSchemaGenerationError,
    pydantic.PydanticUserError,
    PydanticInvalidForJsonSchema,
    TypeError,
)


@dataclass(frozen=True, slots=True)
class MethodDescription:
    """One served method: its name, whether it is the default handler, and its schemas.

    `method` is None for the default handler, which receives every method the router
    does not register. `result_schema` is None when the handler has no return
    annotation or pydantic cannot describe it; `result_schema_error` then names the reason.
    """

    topic: str
    method: str | None
    default: bool
    description: str | None
    args_schema: dict[str, Any]
    result_schema: dict[str, Any] | None
    result_schema_error: str | None

    def to_json(self) -> dict[str, Any]:
        """Return the description as a JSON-ready dict, keyed as the endpoint sends it."""
        return {
            "topic": self.topic,
            "method": self.method,
            "default": self.default,
            "description": self.description,
            "args_schema": self.args_schema,
            "result_schema": self.result_schema,
            "result_schema_error": self.result_schema_error,
        }


def describe_handler(topic: str, method: str | None, func: Callable[..., Any]) -> MethodDescription:
    """Describe the handler `func` of `method` on `topic` (None for the default handler).

    The default handler receives the method name and the raw args unvalidated, so
    its args schema is `{}` (any value).

    Raises:
        TasqRouterConfigError: if the signature or type hints of `func` cannot be
            served, as the app's startup would report.
    """
    owner = f"Handler {_qualname(func)} for {topic}.{method or '*'}"
    if method is None:
        args_schema: dict[str, Any] = {}
    else:
        args_schema = _args_schema(func, owner, title=f"{topic}.{method} args")
    result_schema, result_error = _result_schema(func, owner)
    return MethodDescription(
        topic=topic,
        method=method,
        default=method is None,
        description=inspect.getdoc(func),
        args_schema=args_schema,
        result_schema=result_schema,
        result_schema_error=result_error,
    )


def describe_router(router: TasqRouter) -> list[MethodDescription]:
    """Describe every method of `router` in registration order, then its default handler.

    Raises:
        TasqRouterConfigError: if a handler cannot be served.
    """
    descriptions = [describe_handler(router.topic, name, func) for name, func in router.handlers.items()]
    if router.default_handler is not None:
        descriptions.append(describe_handler(router.topic, None, router.default_handler))
    return descriptions


def describe_routers(routers: Iterable[TasqRouter]) -> dict[str, Any]:
    """Return the method listing of `routers` as the discovery endpoint sends it.

    The result is `{"topics": [{"topic", "threads", "delivery", "methods": [...]}]}`
    with one entry per router, in the order given.

    Raises:
        TasqRouterConfigError: if a handler cannot be served.
    """
    topics = []
    for router in routers:
        topics.append(
            {
                "topic": router.topic,
                "threads": router.threads,
                "delivery": "at-least-once" if router.at_least_once else "at-most-once",
                "methods": [description.to_json() for description in describe_router(router)],
            }
        )
    return {"topics": topics}


def _args_schema(func: Callable[..., Any], owner: str, *, title: str) -> dict[str, Any]:
    params = classify_parameters(func, owner=owner, allow_args=True)
    arg_params = [param for param in params if param.kind is ParamKind.ARG]

    if len(arg_params) == 1 and _is_model(arg_params[0].annotation):
        return pydantic.TypeAdapter(arg_params[0].annotation).json_schema(mode="validation")

    # The handler's own validation model: its fields carry the parameter names as
    # aliases, which is what the schema's properties are called.
    binding = _build_binding(params, owner)
    schema = binding.model.model_json_schema(by_alias=True, mode="validation")
    schema["title"] = title
    return schema


def _result_schema(func: Callable[..., Any], owner: str) -> tuple[dict[str, Any] | None, str | None]:
    annotation = func if inspect.isclass(func) else _return_annotation(func, owner)
    if annotation is inspect.Parameter.empty:
        return None, "the handler has no return annotation"
    try:
        return pydantic.TypeAdapter(annotation).json_schema(mode="serialization"), None
    except _SCHEMA_ERRORS as exc:
        return None, f"pydantic cannot describe the return annotation: {exc}"


def _return_annotation(func: Callable[..., Any], owner: str) -> Any:
    # Callable objects carry their hints on __call__, where classify_parameters reads them too.
    target = func if inspect.isfunction(func) or inspect.ismethod(func) else type(func).__call__
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception as exc:
        raise TasqRouterConfigError(
            f"Tasq cannot resolve the type hints of {owner}: {exc}. "
            "Define or import every type the signature names before the app starts."
        ) from exc
    return hints.get("return", inspect.Parameter.empty)
