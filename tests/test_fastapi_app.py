"""TasqFastAPI: a FastAPI app serving Tasq routers through include_tasq_router."""

from __future__ import annotations

import uuid
from typing import Annotated

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import Depends

from tasq_fastapi import Tasq, TasqFastAPI, TasqRouter, TasqRouterConfigError, get_tasq


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
