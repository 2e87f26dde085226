"""Method discovery: JSON schemas of handler args and results, and the `/tasq/methods` endpoint."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from tasq_fastapi import TasqEndpoints, TasqExtension, TasqRequestContext, TasqRouter
from tasq_fastapi._discovery import describe_handler, describe_router, describe_routers
from tests._plugin_fixtures import running_app, unique_topic

pytestmark = pytest.mark.timeout(60)


class NewUser(BaseModel):
    name: str = Field(min_length=1)
    email: str


class User(NewUser):
    id: int
    created_at: dt.datetime


def get_store() -> dict[int, User]:
    return {}


async def get(
    user_id: int,
    store: Annotated[dict[int, User], Depends(get_store)],
    request: Request,
    context: TasqRequestContext,
    limit: Annotated[int, Field(ge=1, le=100)] = 20,
) -> User:
    """Return one user."""
    raise NotImplementedError


def create(user: NewUser, store: Annotated[dict[int, User], Depends(get_store)]) -> User:
    raise NotImplementedError


async def untyped(value):  # type: ignore[no-untyped-def]
    return value


async def fallback(method: str, args: Any) -> dict[str, str]:
    return {"method": method}


def _router(topic: str) -> TasqRouter:
    router = TasqRouter(topic, threads=4, at_least_once=True)
    router.method()(get)
    router.method()(create)
    router.default(fallback)
    return router


def test_plain_params_schema() -> None:
    description = describe_handler("users", "get", get)

    schema = description.args_schema
    assert schema["type"] == "object"
    assert schema["title"] == "users.get args"
    assert list(schema["properties"]) == ["user_id", "limit"]
    assert schema["properties"]["user_id"]["type"] == "integer"
    assert schema["required"] == ["user_id"]


def test_defaults_and_constraints_in_schema() -> None:
    limit = describe_handler("users", "get", get).args_schema["properties"]["limit"]

    assert limit["default"] == 20
    assert limit["minimum"] == 1
    assert limit["maximum"] == 100


def test_dependencies_excluded_from_schema() -> None:
    properties = describe_handler("users", "get", get).args_schema["properties"]

    assert "store" not in properties
    assert "request" not in properties
    assert "context" not in properties


def test_model_param_takes_whole_args() -> None:
    schema = describe_handler("users", "create", create).args_schema

    assert schema == NewUser.model_json_schema()
    assert schema["required"] == ["name", "email"]


def test_result_schema_from_return_annotation() -> None:
    description = describe_handler("users", "get", get)

    assert description.result_schema is not None
    assert description.result_schema["title"] == "User"
    assert description.result_schema["properties"]["created_at"]["format"] == "date-time"
    assert description.result_schema_error is None
    assert description.description == "Return one user."


def test_missing_annotations() -> None:
    description = describe_handler("misc", "untyped", untyped)

    assert description.args_schema["properties"] == {"value": {"title": "Value"}}
    assert description.result_schema is None
    assert description.result_schema_error == "the handler has no return annotation"


def test_default_handler_described() -> None:
    descriptions = describe_router(_router("users"))

    assert [(item.method, item.default) for item in descriptions] == [
        ("get", False),
        ("create", False),
        (None, True),
    ]
    default = descriptions[-1]
    assert default.args_schema == {}
    assert default.result_schema == {"additionalProperties": {"type": "string"}, "type": "object"}


def test_describe_routers_lists_topics() -> None:
    listing = describe_routers([_router("users"), _router("accounts")])

    assert [topic["topic"] for topic in listing["topics"]] == ["users", "accounts"]
    assert listing["topics"][0]["threads"] == 4
    assert listing["topics"][0]["delivery"] == "at-least-once"
    assert [method["method"] for method in listing["topics"][0]["methods"]] == ["get", "create", None]


async def test_methods_endpoint_over_http(redis_url: str) -> None:
    topic = unique_topic("discovery")
    app = FastAPI()
    TasqExtension(app, redis=redis_url).include_router(_router(topic))

    async with running_app(app) as client:
        response = await client.get("/tasq/methods")

    assert response.status_code == 200
    [listing] = response.json()["topics"]
    assert listing["topic"] == topic
    get_method = listing["methods"][0]
    assert get_method["method"] == "get"
    assert get_method["default"] is False
    assert get_method["args_schema"]["required"] == ["user_id"]
    assert get_method["result_schema"]["title"] == "User"
    assert listing["methods"][2]["default"] is True


async def test_methods_endpoint_turned_off(redis_url: str) -> None:
    app = FastAPI()
    TasqExtension(app, redis=redis_url, endpoints=TasqEndpoints(methods=False)).include_router(
        _router(unique_topic("discovery"))
    )

    async with running_app(app) as client:
        methods = await client.get("/tasq/methods")
        health = await client.get("/tasq/health")

    assert methods.status_code == 404
    assert health.status_code == 200


async def test_methods_endpoint_runs_dependencies(redis_url: str) -> None:
    def deny() -> None:
        raise HTTPException(status_code=403, detail="denied")

    app = FastAPI()
    endpoints = TasqEndpoints(dependencies=[Depends(deny)])
    TasqExtension(app, redis=redis_url, endpoints=endpoints).include_router(
        _router(unique_topic("discovery"))
    )

    async with running_app(app) as client:
        response = await client.get("/tasq/methods")

    assert response.status_code == 403
