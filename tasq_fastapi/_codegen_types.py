"""Writing type hints and imports as source code, for generated client modules."""

from __future__ import annotations

import enum
import importlib
import inspect
import sys
import types
import typing
from typing import Annotated, Any, Literal

import pydantic

from ._errors import TasqError
from ._proxy import SERVER_DEFAULT, TasqProxy

# The module generated clients import TasqProxy and SERVER_DEFAULT from.
RUNTIME_MODULE = "tasq_fastapi"

# Generated lines are kept within black's and ruff's default line length, so that
# the output is already formatted for any project whose limit is at least this.
LINE_LENGTH = 88
INDENT = "    "


class TasqCodegenError(TasqError, ValueError):
    """A router cannot be loaded, or one of its handlers cannot be written as a client method."""


class Imports:
    """Names the generated module binds, and the import statements that bind them."""

    def __init__(self, reserved: set[str], first_party: set[str]) -> None:
        self._used_names = set(reserved)
        self._first_party = first_party
        self._from: dict[str, dict[str, str]] = {}
        self._plain: set[str] = set()
        self._bound: dict[tuple[str, str], str] = {}

    def name_of(self, obj: Any) -> str:
        """Return an expression naming `obj` in the generated module, importing it if needed."""
        module, qualname = _import_path(obj)
        top, _, rest = qualname.partition(".")
        suffix = f".{rest}" if rest else ""

        if module == "builtins":
            return top + suffix if top not in self._used_names else self._plain_import("builtins", qualname)

        bound = self._bound.get((module, top))
        if bound is None and top not in self._used_names:
            self._used_names.add(top)
            self._from.setdefault(module, {})[top] = top
            self._bound[(module, top)] = bound = top
        if bound is None:
            # The short name is taken (by a method or another type), so the type is
            # reached through its module instead.
            return self._plain_import(module, qualname)
        return bound + suffix

    def _plain_import(self, module: str, qualname: str) -> str:
        root = module.split(".")[0]
        if module not in self._plain:
            if root in self._used_names and not any(name.split(".")[0] == root for name in self._plain):
                raise TasqCodegenError(
                    f"Cannot import {module}.{qualname}: the name {root!r} is already used in the "
                    "client module. Rename the method or the type."
                )
            self._used_names.add(root)
            self._plain.add(module)
        return f"{module}.{qualname}"

    def render(self) -> str:
        """Return the import block, sorted in sections as isort and ruff sort it."""
        sections: dict[int, list[str]] = {}
        for module in sorted(self._plain, key=str.lower):
            sections.setdefault(self._section(module), []).append(f"import {module}")
        for module in sorted(self._from, key=str.lower):
            names = sorted(self._from[module], key=_member_sort_key)
            sections.setdefault(self._section(module), []).append(_from_import(module, names))
        blocks = ["\n".join(sections[key]) for key in sorted(sections)]
        return "from __future__ import annotations\n\n" + "\n\n".join(blocks) + "\n"

    def _section(self, module: str) -> int:
        root = module.split(".")[0]
        if root in sys.stdlib_module_names:
            return 0
        return 2 if root in self._first_party else 1


def _import_path(obj: Any) -> tuple[str, str]:
    for known, path in _KNOWN_PATHS:
        if obj is known:
            return path
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        raise TasqCodegenError(
            f"The type {obj!r} cannot be imported by name (it may be defined inside a function). "
            "Define it at module level."
        )
    if _resolve(module, qualname) is not obj:
        raise TasqCodegenError(f"The type {obj!r} is not reachable as {module}.{qualname}. Import it there.")
    return module, qualname


# Objects whose import path cannot be read from __module__ and __qualname__, or
# that generated code imports from the package's public module.
_KNOWN_PATHS: tuple[tuple[Any, tuple[str, str]], ...] = (
    (Any, ("typing", "Any")),
    (Literal, ("typing", "Literal")),
    (pydantic.TypeAdapter, ("pydantic", "TypeAdapter")),
    (SERVER_DEFAULT, (RUNTIME_MODULE, "SERVER_DEFAULT")),
    (TasqProxy, (RUNTIME_MODULE, "TasqProxy")),
)


def _resolve(module: str, qualname: str) -> Any:
    try:
        target: Any = importlib.import_module(module)
    except ImportError:
        return None
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target


def _member_sort_key(name: str) -> tuple[int, str]:
    # isort's and ruff's default "order by type": constants, then classes, then the rest.
    if name.isupper() and len(name) > 1:
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def _from_import(module: str, names: list[str]) -> str:
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= LINE_LENGTH:
        return line
    members = "".join(f"{INDENT}{name},\n" for name in names)
    return f"from {module} import (\n{members})"


def string_literal(value: str | bytes) -> str:
    # Double quotes, as black and ruff write them, unless the value contains one.
    literal = repr(value)
    prefix = "b" if isinstance(value, bytes) else ""
    body = literal[len(prefix) + 1 : -1]
    if literal[len(prefix)] == "'" and '"' not in body:
        return f'{prefix}"{body}"'
    return literal


class TypeRenderer:
    """Writes a type hint as source code, importing the names it uses."""

    def __init__(self, imports: Imports) -> None:
        self._imports = imports

    def render(self, annotation: Any) -> str:
        """Return source code for `annotation`, without `Annotated` metadata.

        Metadata such as `Field(ge=1)` constrains values on the server, which
        validates them anyway, and is not always expressible as code.
        """
        if annotation is None or annotation is type(None):
            return "None"
        if annotation is Any:
            return self._imports.name_of(Any)

        origin = typing.get_origin(annotation)
        if origin is Annotated:
            return self.render(typing.get_args(annotation)[0])
        if origin is typing.Union or origin is types.UnionType:
            return " | ".join(self.render(member) for member in typing.get_args(annotation))
        if origin is Literal:
            values = ", ".join(self._literal(value) for value in typing.get_args(annotation))
            return f"{self._imports.name_of(Literal)}[{values}]"
        if origin is not None:
            return self._generic(origin, typing.get_args(annotation))
        return self._plain(annotation)

    def _generic(self, origin: Any, arguments: tuple[Any, ...]) -> str:
        name = self._imports.name_of(origin)
        if not arguments:
            return name
        rendered = ", ".join(self._argument(argument) for argument in arguments)
        return f"{name}[{rendered}]"

    def _argument(self, argument: Any) -> str:
        if argument is Ellipsis:
            return "..."
        if isinstance(argument, list):
            return "[" + ", ".join(self.render(item) for item in argument) + "]"
        return self.render(argument)

    def _plain(self, annotation: Any) -> str:
        metadata = getattr(annotation, "__pydantic_generic_metadata__", None)
        if inspect.isclass(annotation) and metadata and metadata.get("origin") is not None:
            # A parametrized generic model (Page[User]) is a class of its own at run time.
            return self._generic(metadata["origin"], tuple(metadata["args"]))
        if inspect.isclass(annotation) or isinstance(annotation, typing.NewType):
            return self._imports.name_of(annotation)
        raise TasqCodegenError(
            f"Cannot write the type {annotation!r} as code. Use classes, NewTypes, unions, "
            "Literal, Annotated and generic aliases such as list[int] in handler signatures."
        )

    def _literal(self, value: Any) -> str:
        if isinstance(value, enum.Enum):
            return f"{self._imports.name_of(type(value))}.{value.name}"
        if isinstance(value, str | bytes):
            return string_literal(value)
        if isinstance(value, bool | int) or value is None:
            return repr(value)
        raise TasqCodegenError(f"Cannot write the Literal value {value!r} as code.")
