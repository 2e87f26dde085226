"""TasqFastAPI: a FastAPI app serving Tasq routers through include_tasq_router."""

from __future__ import annotations

import uuid
from typing import Annotated

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import Depends

from tasq_fastapi import (
    Tasq,
    TasqEncodeError,
    TasqFastAPI,
    TasqRequestInvalidArgsError,
    TasqRouter,
    TasqRouterConfigError,
    get_tasq,
)


async def test_tasq_fastapi_serves_included_router(redis_url: str) -> None:
    topic = f"test-{uuid.uuid4().hex}"
    router = TasqRouter(topic)

    @router.method()
    async def double(value: int) -> int:
        return value * 2

    app = TasqFastAPI(title="calculator", tasq_redis=redis_url, tasq_endpoints=None)
    app.include_tasq_router(router)

    @app.get("/double/{value}")
    async def double_endpoint(value: int, tasq: Annotated[Tasq, Depends(get_tasq)]) -> int:
        result: int = await tasq.request(topic, "double", {"value": value})
        return result

    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            response = await client.get("/double/21")

    assert response.status_code == 200
    assert response.json() == 42
    assert app.title == "calculator"


def test_tasq_fastapi_rejects_duplicate_topic(redis_url: str) -> None:
    app = TasqFastAPI(tasq_redis=redis_url)
    app.include_tasq_router(TasqRouter("same-topic"))

    with pytest.raises(TasqRouterConfigError, match="same-topic"):
        app.include_tasq_router(TasqRouter("same-topic"))


def test_router_rejects_invalid_method_name() -> None:
    router = TasqRouter("names")

    with pytest.raises(TasqRouterConfigError, match="Invalid method 'a b'"):

        @router.method("a b")
        async def spaced() -> None:
            return None


async def test_tasq_fastapi_passes_client_limits(redis_url: str) -> None:
    topic = f"test-{uuid.uuid4().hex}"
    router = TasqRouter(topic)

    @router.method()
    async def echo(value: str) -> str:
        return value

    app = TasqFastAPI(tasq_redis=redis_url, tasq_endpoints=None, tasq_max_message_bytes=1024)
    app.include_tasq_router(router)

    async with LifespanManager(app):
        tasq = app.tasq_extension.tasq
        with pytest.raises(TasqEncodeError, match="1024"):
            await tasq.request(topic, "echo", {"value": "x" * 2048})


async def test_handler_int_keys_become_strings(redis_url: str) -> None:
    topic = f"test-{uuid.uuid4().hex}"
    router = TasqRouter(topic)

    @router.method()
    async def counts() -> dict[int, str]:
        return {1: "one", 2: "two"}

    app = TasqFastAPI(tasq_redis=redis_url, tasq_endpoints=None)
    app.include_tasq_router(router)

    async with LifespanManager(app):
        result = await app.tasq_extension.tasq.request(topic, "counts", timeout=5.0)

    assert result == {"1": "one", "2": "two"}


async def test_invalid_args_errors_drop_large_input(redis_url: str) -> None:
    topic = f"test-{uuid.uuid4().hex}"
    router = TasqRouter(topic)

    @router.method()
    async def create(name: str, age: int) -> str:
        return name

    app = TasqFastAPI(tasq_redis=redis_url, tasq_endpoints=None)
    app.include_tasq_router(router)

    async with LifespanManager(app):
        tasq = app.tasq_extension.tasq
        with pytest.raises(TasqRequestInvalidArgsError) as caught:
            await tasq.request(topic, "create", {"junk": "y" * 100_000, "age": "old"}, timeout=5.0)

    by_field = {tuple(error["loc"]): error for error in caught.value.errors}
    assert "input" not in by_field[("name",)]
    assert by_field[("age",)]["input"] == "old"


async def test_list_args_leave_keyword_only_params(redis_url: str) -> None:
    topic = f"test-{uuid.uuid4().hex}"
    router = TasqRouter(topic)

    @router.method()
    async def add(a: int, b: int = 2, *, c: int = 0) -> int:
        return a + b + c

    app = TasqFastAPI(tasq_redis=redis_url, tasq_endpoints=None)
    app.include_tasq_router(router)

    async with LifespanManager(app):
        tasq = app.tasq_extension.tasq
        assert await tasq.request(topic, "add", [1, 5], timeout=5.0) == 6
        assert await tasq.request(topic, "add", {"a": 1, "c": 3}, timeout=5.0) == 6
        with pytest.raises(TasqRequestInvalidArgsError, match="at most 2 by position"):
            await tasq.request(topic, "add", [1, 5, 7], timeout=5.0)
