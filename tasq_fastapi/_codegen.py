"""Generation of typed client modules from a `TasqRouter`.

`tasq client module:router --output client.py` (or `python -m tasq_fastapi._codegen`) imports the
router, reads each handler's signature and writes a module with one
`TasqProxy` subclass. Dependency parameters (`Depends(...)`, `Request`,
`TasqRequestContext`) are left out, and the module imports only `tasq_fastapi`,
pydantic and the modules that define the types in the signatures, so callers do
not need the server's own dependencies. See docs/proxies.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import keyword
import os
import sys
import textwrap
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import pydantic

from ._codegen_types import INDENT, LINE_LENGTH, Imports, TasqCodegenError, TypeRenderer, string_literal
from ._depends import ParamKind, TasqRouterConfigError, classify_parameters
from ._proxy import SERVER_DEFAULT, TasqProxy
from ._router import TasqRouter

COMMAND = "tasq client"
"""Command that the header of a generated module shows for regenerating it."""


@dataclasses.dataclass(frozen=True)
class _Param:
    name: str
    annotation: Any
    has_default: bool
    keyword_only: bool


@dataclasses.dataclass(frozen=True)
class _Method:
    method: str
    python_name: str
    params: tuple[_Param, ...]
    whole_args: bool
    returns: Any
    doc: str


def generate_client(
    router_spec: str,
    *,
    class_name: str | None = None,
    first_party: Sequence[str] = (),
) -> str:
    """Import the router named by `router_spec` and return the source of its typed client.

    `router_spec` is `package.module:attribute`, as for uvicorn. The class is named
    after the topic (`users` gives `UsersClient`) unless `class_name` is given.
    `first_party` lists top-level packages that the project's import sorter treats
    as first-party besides the router's own, so that the output passes ruff's and
    isort's checks in that project.

    Raises:
        TasqCodegenError: if the module cannot be imported or the attribute is not a
            `TasqRouter`. Also if a handler's signature cannot be written as code
            that imports without the router's module, for example because a type
            is defined inside a function or no name fits a client method.
    """
    return _render_client(
        _load_router(router_spec), router_spec, class_name=class_name, first_party=first_party
    )


def _render_client(
    router: TasqRouter,
    router_spec: str,
    *,
    class_name: str | None = None,
    first_party: Sequence[str] = (),
) -> str:
    name = class_name or _class_name_for(router.topic)
    if not name.isidentifier() or keyword.iskeyword(name):
        raise TasqCodegenError(
            f"Class name {name!r} is not usable: it must be a Python identifier and not a keyword."
        )

    module_name = router_spec.partition(":")[0]
    methods = _describe_methods(router)
    first_party_roots = {module_name.split(".")[0], *first_party}
    writer = _ModuleWriter(name, methods, first_party_roots)
    return writer.render(router.topic, _header(router_spec, first_party, class_name))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default: `sys.argv[1:]`) and return the exit status.

    The statuses are those of `run`, and argparse exits with status 2 on invalid options.
    """
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description="Write a typed client module for the handlers of a TasqRouter.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the generator's arguments to `parser`, for a command line that embeds it."""
    parser.add_argument("router", help="the router to read, as package.module:attribute")
    parser.add_argument("-o", "--output", type=Path, help="file to write; standard output if omitted")
    parser.add_argument("--class-name", help="name of the client class (default: topic + 'Client')")
    parser.add_argument(
        "--first-party",
        action="append",
        default=[],
        metavar="PACKAGE",
        help="top-level package your import sorter treats as first-party (repeatable)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if --output is missing or differs from what would be written",
    )


def run(options: argparse.Namespace) -> int:
    """Write or check the client of one router, following options parsed by `add_arguments`.

    Returns 0 on success, 1 when `--check` finds the output file missing or out of
    date, and 2 when the options are invalid or the router cannot be turned into a
    client. Errors are printed to stderr.
    """
    if options.check and options.output is None:
        print(f"{COMMAND}: --check needs --output", file=sys.stderr)
        return 2
    try:
        source = generate_client(
            options.router, class_name=options.class_name, first_party=options.first_party
        )
    except TasqCodegenError as exc:
        print(f"{COMMAND}: {exc}", file=sys.stderr)
        return 2

    if options.output is None:
        sys.stdout.write(source)
        return 0
    if options.check:
        return _check_output(options.output, source)
    try:
        options.output.write_text(source, encoding="utf-8")
    except OSError as exc:
        print(f"{COMMAND}: cannot write {options.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def _check_output(output: Path, source: str) -> int:
    try:
        current = output.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    if current == source:
        return 0
    print(f"{output} is missing or out of date; run the same command without --check.", file=sys.stderr)
    return 1


def _load_router(router_spec: str) -> TasqRouter:
    module_name, _, attribute = router_spec.partition(":")
    if not module_name or not attribute:
        raise TasqCodegenError(f"Router {router_spec!r} is invalid. Write it as package.module:attribute.")
    # As uvicorn does, import the router's module from the current directory too.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TasqCodegenError(f"Cannot import module {module_name!r}: {exc}") from exc

    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise TasqCodegenError(f"Module {module_name!r} has no attribute {attribute!r}.")
        target = getattr(target, part)
    if not isinstance(target, TasqRouter):
        raise TasqCodegenError(
            f"{router_spec} is a {type(target).__name__}, not a TasqRouter. Name the router object."
        )
    return target


def _registered_handlers(router: TasqRouter) -> dict[str, Callable[..., Any]]:
    return dict(router.handlers)


def _class_name_for(topic: str) -> str:
    words = "".join(character if character.isalnum() else " " for character in topic).split()
    name = "".join(word[:1].upper() + word[1:] for word in words) + "Client"
    return name if name[0].isalpha() else f"Topic{name}"


def _header(router_spec: str, first_party: Sequence[str], class_name: str | None) -> str:
    command = [COMMAND, router_spec, *(f"--first-party {name}" for name in first_party)]
    if class_name is not None:
        command.append(f"--class-name {class_name}")
    wrapped = textwrap.wrap(" ".join(command), width=LINE_LENGTH - 10, break_on_hyphens=False)
    command_lines = " \\\n        ".join(wrapped)
    return (
        f'r"""Typed Tasq client generated from the router {router_spec}.\n\n'
        "Do not edit this file. Regenerate it after changing the router's handlers by\n"
        "running the command below with --output set to this file's path. With --check,\n"
        "the command writes nothing and fails while this file is out of date.\n\n"
        f"    {command_lines}\n"
        '"""\n'
    )


def _describe_methods(router: TasqRouter) -> list[_Method]:
    handlers = _registered_handlers(router)
    if not handlers:
        raise TasqCodegenError(
            f"The router of topic {router.topic!r} has no handlers registered with @router.method(), "
            "so a client would have no methods. Call a catch-all handler with Tasq.request."
        )
    methods = [_describe_method(router.topic, name, func) for name, func in handlers.items()]
    seen: dict[str, str] = {}
    for method in methods:
        if method.python_name in seen:
            raise TasqCodegenError(
                f"Methods {seen[method.python_name]!r} and {method.method!r} of topic {router.topic!r} "
                f"both become the client method {method.python_name!r}. Rename one of the handlers."
            )
        seen[method.python_name] = method.method
    return methods


def _describe_method(topic: str, method: str, func: Callable[..., Any]) -> _Method:
    owner = f"Handler {getattr(func, '__qualname__', func)} for {topic}.{method}"
    try:
        declared = classify_parameters(func, owner=owner, allow_args=True)
    except TasqRouterConfigError as exc:
        raise TasqCodegenError(str(exc)) from exc
    signature = inspect.signature(func)
    params = tuple(
        _Param(
            name=entry.name,
            annotation=entry.annotation,
            has_default=entry.default is not inspect.Parameter.empty,
            keyword_only=signature.parameters[entry.name].kind is inspect.Parameter.KEYWORD_ONLY,
        )
        for entry in declared
        if entry.kind is ParamKind.ARG
    )
    returns = _return_type(func, owner)
    return _Method(
        method=method,
        python_name=_python_name(method, func, owner),
        params=params,
        whole_args=len(params) == 1 and _is_model(params[0].annotation),
        returns=returns,
        doc=inspect.getdoc(func) or f'Call the "{method}" handler of topic "{topic}".',
    )


def _return_type(func: Callable[..., Any], owner: str) -> Any:
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:
        raise TasqCodegenError(f"Cannot resolve the type hints of {owner}: {exc}") from exc

    returns = hints.get("return", Any)
    try:
        pydantic.TypeAdapter(returns)
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError) as exc:
        raise TasqCodegenError(
            f"{owner} returns {returns!r}, which pydantic cannot validate, so the client could not "
            "check results. Annotate it with a type pydantic supports, or with Any."
        ) from exc
    return returns


# Attributes of TasqProxy and names the generated module needs, which a method must not shadow.
_RESERVED_METHOD_NAMES = frozenset(dir(TasqProxy)) | {"builtins", "annotations"}


def _python_name(method: str, func: Callable[..., Any], owner: str) -> str:
    function_name = getattr(func, "__name__", "")
    for candidate in (method, function_name):
        usable = candidate.isidentifier() and not keyword.iskeyword(candidate)
        if usable and not candidate.startswith("_") and candidate not in _RESERVED_METHOD_NAMES:
            return candidate
    raise TasqCodegenError(
        f"{owner}: neither the method name {method!r} nor the function name {function_name!r} "
        "is usable as a client method. A client method name must be a Python identifier, not a "
        "keyword, not start with '_' and not be one of "
        f"{sorted(name for name in _RESERVED_METHOD_NAMES if not name.startswith('_'))}. "
        "Rename the function."
    )


def _is_model(annotation: Any) -> bool:
    # The same rule as the server's: a lone model parameter takes the whole args.
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return inspect.isclass(annotation) and issubclass(annotation, pydantic.BaseModel)


class _ModuleWriter:
    """Renders one client class and the imports its annotations need."""

    def __init__(self, class_name: str, methods: list[_Method], first_party: set[str]) -> None:
        self._class_name = class_name
        self._methods = methods
        reserved = {"annotations", class_name, *(method.python_name for method in methods)}
        self._imports = Imports(reserved, first_party)
        # Bound first, so that these names stay short when a user type has the same name.
        self._imports.name_of(TasqProxy)
        self._imports.name_of(pydantic.TypeAdapter)
        self._result_names = self._allocate_result_names(reserved)

    def render(self, topic: str, header: str) -> str:
        """Return the whole module: header, imports, result adapters and the class."""
        adapters = "".join(
            self._adapter_line(self._result_names[method.python_name], method.returns)
            for method in self._methods
        )
        body = "\n".join(self._method_source(method) for method in self._methods)
        class_source = (
            f"class {self._class_name}({self._imports.name_of(TasqProxy)}):\n"
            f'{INDENT}"""Client of Tasq topic "{topic}"; each method sends one request.\n\n'
            f"{INDENT}Results are validated into the declared return types. A handler's exception\n"
            f"{INDENT}reaches the caller as TasqRequestRejectedError; see TasqProxy for the other\n"
            f"{INDENT}errors. Parameters left at SERVER_DEFAULT take the handler's default.\n"
            f'{INDENT}"""\n\n'
            f"{INDENT}default_topic = {string_literal(topic)}\n\n{body}"
        )
        # Imports are rendered last, because rendering annotations adds to them.
        return f"{header}\n{self._imports.render()}\n{adapters}\n\n{class_source}"

    def _allocate_result_names(self, reserved: set[str]) -> dict[str, str]:
        names: dict[str, str] = {}
        for method in self._methods:
            base = f"_{method.python_name.upper()}_RESULT"
            name, counter = base, 2
            while name in reserved or name in names.values():
                name, counter = f"{base}_{counter}", counter + 1
            names[method.python_name] = name
        reserved.update(names.values())
        return names

    def _adapter_line(self, name: str, returns: Any) -> str:
        rendered = self._annotation(returns)
        adapter = self._imports.name_of(pydantic.TypeAdapter)
        line = f"{name}: {adapter}[{rendered}] = {adapter}({rendered})\n"
        if len(line) - 1 <= LINE_LENGTH:
            return line
        # The trailing comma keeps formatters from joining the lines under a longer limit.
        return f"{name}: {adapter}[{rendered}] = {adapter}(\n{INDENT}{rendered},\n)\n"

    def _method_source(self, method: _Method) -> str:
        receiver = _receiver_name(method)
        returns = self._annotation(method.returns)
        signature = self._signature(method, receiver, returns)
        doc = _docstring(method.doc, INDENT * 2)
        call = self._call_statement(method, receiver)
        return f"{signature}\n{doc}\n{call}\n"

    def _signature(self, method: _Method, receiver: str, returns: str) -> str:
        parts = [receiver]
        keyword_marker_added = False
        for param in method.params:
            if param.keyword_only and not keyword_marker_added:
                parts.append("*")
                keyword_marker_added = True
            default = f" = {self._imports.name_of(SERVER_DEFAULT)}" if param.has_default else ""
            parts.append(f"{param.name}: {self._annotation(param.annotation)}{default}")

        opening = f"{INDENT}async def {method.python_name}("
        closing = f") -> {returns}:"
        line = opening + ", ".join(parts) + closing
        if len(line) <= LINE_LENGTH:
            return line
        exploded = "".join(f"{INDENT * 2}{part},\n" for part in parts)
        return f"{opening}\n{exploded}{INDENT}{closing}"

    def _call_statement(self, method: _Method, receiver: str) -> str:
        args = _args_expression(method)
        result_name = self._result_names[method.python_name]
        # A call whose result is None is not returned, because mypy rejects using
        # the value of a call typed as returning None.
        prefix = "await" if method.returns is None or method.returns is type(None) else "return await"
        line = f'{INDENT * 2}{prefix} {receiver}._call("{method.method}", {args}, {result_name})'
        if len(line) <= LINE_LENGTH:
            return line
        arguments = [f'"{method.method}"', _exploded_args(method, INDENT * 3), result_name]
        exploded = "".join(f"{INDENT * 3}{argument},\n" for argument in arguments)
        return f"{INDENT * 2}{prefix} {receiver}._call(\n{exploded}{INDENT * 2})"

    def _annotation(self, annotation: Any) -> str:
        return TypeRenderer(self._imports).render(annotation)


def _receiver_name(method: _Method) -> str:
    names = {param.name for param in method.params}
    receiver = "self"
    while receiver in names:
        receiver = f"{receiver}_"
    return receiver


def _args_expression(method: _Method) -> str:
    if not method.params:
        return "None"
    if method.whole_args:
        return method.params[0].name
    return "{" + ", ".join(f'"{param.name}": {param.name}' for param in method.params) + "}"


def _exploded_args(method: _Method, indent: str) -> str:
    expression = _args_expression(method)
    if method.whole_args or not method.params or len(indent + expression) + 1 <= LINE_LENGTH:
        return expression
    items = "".join(f'{indent}{INDENT}"{param.name}": {param.name},\n' for param in method.params)
    return "{\n" + items + indent + "}"


def _docstring(doc: str, indent: str) -> str:
    escaped = doc.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if escaped.endswith('"'):
        escaped = escaped[:-1] + '\\"'
    lines = escaped.splitlines()
    if len(lines) == 1:
        return f'{indent}"""{lines[0]}"""'
    body = "\n".join(f"{indent}{line}" if line.strip() else "" for line in lines)
    return f'{indent}"""{body.lstrip()}\n{indent}"""'


if __name__ == "__main__":
    sys.exit(main())
