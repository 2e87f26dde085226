"""Unit tests of TasqRouter registration and signature checks; no Redis involved."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel

from tasq_fastapi._depends import TasqRouterConfigError
from tasq_fastapi._router import TasqRouter


class Item(BaseModel):
    name: str


class Opaque:
    """A type pydantic has no schema for."""


@dataclasses.dataclass
class Page:
    limit: int = 10


def get_page() -> Page:
    return Page()


def needs_query(limit: int) -> int:
    return limit


def test_router_method_uses_function_name() -> None:
    router = TasqRouter("items")

    @router.method()
    async def get_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    assert router.method_names == ("get_item",)


def test_router_method_explicit_name() -> None:
    router = TasqRouter("items")

    @router.method("list")
    def list_items() -> list[int]:
        return []

    assert router.method_names == ("list",)


def test_router_decorator_returns_function_unchanged() -> None:
    router = TasqRouter("items")

    def double(value: int) -> int:
        return value * 2

    decorated = router.method()(double)

    assert decorated is double
    assert decorated(4) == 8


def test_router_duplicate_method_rejected() -> None:
    router = TasqRouter("items")

    @router.method("get")
    def first() -> None:
        return None

    with pytest.raises(TasqRouterConfigError, match="'get' is already registered on topic 'items'"):

        @router.method("get")
        def second() -> None:
            return None


@pytest.mark.parametrize("name", ["", 5])
def test_router_method_invalid_name(name: Any) -> None:
    router = TasqRouter("items")

    with pytest.raises(TasqRouterConfigError, match="is invalid"):
        router.method(name)


def test_router_lambda_needs_explicit_name() -> None:
    router = TasqRouter("items")

    with pytest.raises(TasqRouterConfigError, match=r"Pass one with @router\.method"):
        router.method()(lambda: None)


@pytest.mark.parametrize(("topic", "threads"), [("", 1), ("items", 0), ("items", True), ("items", 1.5)])
def test_router_constructor_invalid_options(topic: str, threads: Any) -> None:
    with pytest.raises(TasqRouterConfigError, match="is invalid"):
        TasqRouter(topic, threads=threads)


def test_router_default_with_and_without_parentheses() -> None:
    bare = TasqRouter("a")
    called = TasqRouter("b")

    @bare.default
    def fallback_a(method: str, args: Any) -> str:
        return method

    @called.default()
    def fallback_b(method: str, args: Any) -> str:
        return method

    assert bare.has_default
    assert called.has_default
    assert fallback_a("x", None) == "x"


def test_router_second_default_rejected() -> None:
    router = TasqRouter("items")

    @router.default
    def first(method: str, args: Any) -> None:
        return None

    with pytest.raises(TasqRouterConfigError, match="already has the default handler"):

        @router.default
        def second(method: str, args: Any) -> None:
            return None


def test_router_compile_empty_router_rejected() -> None:
    with pytest.raises(TasqRouterConfigError, match="has no handlers"):
        TasqRouter("items").compile(FastAPI())


def test_router_compile_var_args_rejected() -> None:
    router = TasqRouter("items")

    @router.method()
    def spread(*values: int) -> None:
        return None

    with pytest.raises(TasqRouterConfigError, match=r"Handler .*spread for items.spread declares \*values"):
        router.compile(FastAPI())


def test_router_compile_positional_only_rejected() -> None:
    router = TasqRouter("items")

    @router.method()
    def get(item_id: int, /) -> None:
        return None

    with pytest.raises(TasqRouterConfigError, match="positional-only parameter 'item_id'"):
        router.compile(FastAPI())


def test_router_compile_unresolved_hint_rejected() -> None:
    router = TasqRouter("items")

    @router.method()
    def get(item: NotDefinedAnywhere) -> None:  # type: ignore[name-defined]  # noqa: F821
        return None

    with pytest.raises(TasqRouterConfigError, match="cannot resolve the type hints"):
        router.compile(FastAPI())


def test_router_compile_unsupported_type_rejected() -> None:
    router = TasqRouter("items")

    @router.method()
    def get(item: Opaque) -> None:
        return None

    with pytest.raises(TasqRouterConfigError, match="parameter types pydantic cannot validate"):
        router.compile(FastAPI())


def test_router_compile_dependency_with_plain_param_rejected() -> None:
    router = TasqRouter("items")

    @router.method()
    def get(limit: Annotated[int, Depends(needs_query)]) -> None:
        return None

    with pytest.raises(TasqRouterConfigError, match="declares parameter 'limit', which Tasq cannot supply"):
        router.compile(FastAPI())


def test_router_compile_default_handler_arity_rejected() -> None:
    router = TasqRouter("items")

    @router.default
    def fallback(method: str) -> None:
        return None

    with pytest.raises(TasqRouterConfigError, match="declares 1 non-dependency parameters"):
        router.compile(FastAPI())


def test_router_compile_accepts_supported_signatures() -> None:
    router = TasqRouter("items", threads=4)

    @router.method()
    async def create(item: Item) -> Item:
        return item

    @router.method()
    def search(text: str, page: Annotated[Page, Depends(get_page)], limit: int = 5) -> list[str]:
        return [text] * min(limit, page.limit)

    compiled = router.compile(FastAPI())

    assert set(compiled.handlers) == {"create", "search"}
    assert compiled.threads == 4
    assert compiled.default is None
