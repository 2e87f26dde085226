"""Tests of the example user service, written with the tasq-fastapi testing kit.

The unit tests call the user service's handlers in process with `call_handler`,
without Redis, with a fresh `UserStore` in place of the process's store. The
integration tests run the one-process app (gateway and user service) against the
kit's Redis, and call it over HTTP and through Tasq.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from fastapi import FastAPI

from example_app import main, users
from example_app.settings import REDIS_URL_VARIABLE
from example_app.users import NewUser, UserStore
from tasq_fastapi import (
    Tasq,
    TasqRequestInvalidArgsError,
    TasqRequestRejectedError,
)
from tasq_fastapi.testing import RunningApp, call_handler, run_app


@pytest.fixture
def store() -> UserStore:
    """An empty user store, private to the test."""
    return UserStore()


@pytest.fixture
def app_with_store(store: UserStore) -> FastAPI:
    """A bare app whose only role is to carry the store override for call_handler."""
    app = FastAPI()
    app.dependency_overrides[users.get_store] = lambda: store
    return app


@pytest_asyncio.fixture
async def running_example(
    monkeypatch: pytest.MonkeyPatch, tasq_redis_url: str, store: UserStore
) -> AsyncIterator[RunningApp]:
    """The one-process example app, running against the kit's Redis with the test's store."""
    # main.create_app() reads REDIS_URL when the app starts; with it set, the app
    # uses the kit's server instead of starting an embedded one of its own.
    monkeypatch.setenv(REDIS_URL_VARIABLE, tasq_redis_url)
    app = main.create_app()
    app.dependency_overrides[users.get_store] = lambda: store

    async with run_app(app) as running:
        yield running


# Unit tests: no Redis


async def test_get_returns_stored_user(app_with_store: FastAPI, store: UserStore) -> None:
    store.add(NewUser(name="Grace Hopper", email="grace@example.com"))

    user = await call_handler(users.router, "get", {"user_id": 1}, app=app_with_store)

    assert user["id"] == 1
    assert user["name"] == "Grace Hopper"
    assert user["created_at"].tzinfo is not None


async def test_get_unknown_user_is_rejected(app_with_store: FastAPI) -> None:
    with pytest.raises(TasqRequestRejectedError) as caught:
        await call_handler(users.router, "get", {"user_id": 99}, app=app_with_store)

    assert caught.value.remote_type == "UserNotFoundError"
    assert caught.value.remote_message == "User 99 does not exist."


async def test_create_stores_user(app_with_store: FastAPI, store: UserStore) -> None:
    user = await call_handler(
        users.router, "create", {"name": "Grace", "email": "grace@example.com"}, app=app_with_store
    )

    assert user["id"] == 1
    assert store.get(1).email == "grace@example.com"


async def test_create_invalid_email_is_rejected(app_with_store: FastAPI, store: UserStore) -> None:
    with pytest.raises(TasqRequestInvalidArgsError) as caught:
        await call_handler(users.router, "create", {"name": "Grace", "email": "nope"}, app=app_with_store)

    assert [error["loc"] for error in caught.value.errors] == [["new_user", "email"]]
    assert store.page(limit=10, offset=0) == []


async def test_list_limit_over_100_is_rejected(app_with_store: FastAPI) -> None:
    with pytest.raises(TasqRequestInvalidArgsError) as caught:
        await call_handler(users.router, "list", {"limit": 1000}, app=app_with_store)

    assert [error["loc"] for error in caught.value.errors] == [["limit"]]


# Integration tests: the whole app on the kit's Redis


async def test_gateway_creates_and_reads_user(running_example: RunningApp, tasq_client: Tasq) -> None:
    created = await running_example.http.post("/users", json={"name": "Grace", "email": "grace@example.com"})
    user_id = created.json()["id"]
    read = await running_example.http.get(f"/users/{user_id}")
    through_tasq = await tasq_client.request(users.TOPIC, "get", {"user_id": user_id}, timeout=5.0)

    assert created.status_code == 201
    assert read.status_code == 200
    assert read.json() == created.json()
    assert through_tasq["email"] == "grace@example.com"
    assert isinstance(through_tasq["created_at"], dt.datetime)


async def test_gateway_unknown_user_returns_404(running_example: RunningApp) -> None:
    response = await running_example.http.get("/users/99")

    assert response.status_code == 404
    assert response.json() == {"detail": "User 99 does not exist."}


async def test_gateway_invalid_user_returns_422(running_example: RunningApp) -> None:
    response = await running_example.http.post("/users", json={"name": "", "email": "grace@example.com"})

    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["new_user", "name"]]
