"""Handlers served by a TasqExtension: args validation, dependencies and results."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field
from starlette.requests import Request

from tasq_fastapi import (
    Tasq,
    TasqRequestContext,
    TasqRequestInvalidArgsError,
    TasqRequestRejectedError,
    get_request_context,
)
from tasq_fastapi._fastapi import TasqExtension, get_tasq
from tasq_fastapi._router import TasqRouter
from tests._plugin_fixtures import running_app, unique_topic

pytestmark = pytest.mark.timeout(60)


class NewUser(BaseModel):
    name: str = Field(min_length=1)
    age: int = Field(ge=0)


@dataclasses.dataclass
class Tag:
    label: str
    created: dt.datetime


class Settings:
    """A dependency value tests can swap through dependency_overrides."""

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting


def get_settings() -> Settings:
    return Settings("hello")


def get_app_title(request: Request) -> str:
    return str(request.app.title)


events: list[str] = []


async def outer_resource() -> AsyncIterator[str]:
    events.append("outer setup")
    try:
        yield "outer"
    finally:
        events.append("outer cleanup")


def inner_resource(outer: Annotated[str, Depends(outer_resource)]) -> Iterator[str]:
    events.append(f"inner setup after {outer}")
    try:
        yield "inner"
    except ValueError:
        events.append("inner saw ValueError")
        raise
    finally:
        events.append("inner cleanup")


count_calls: list[int] = []


def count_call() -> int:
    count_calls.append(1)
    return len(count_calls)


def via_count_call(value: Annotated[int, Depends(count_call)]) -> int:
    return value


AppFactory = Callable[..., FastAPI]


@pytest.fixture(autouse=True)
def _reset_recorders() -> None:
    events.clear()
    count_calls.clear()


@pytest.fixture
def make_app(redis_url: str) -> AppFactory:
    """Return a factory of apps that serve the given routers on the test Redis."""

    def build(*routers: TasqRouter, title: str = "handlers-test") -> FastAPI:
        app = FastAPI(title=title)
        extension = TasqExtension(app, redis=redis_url)
        for router in routers:
            extension.include_router(router)
        return app

    return build


async def _call(app: FastAPI, topic: str, method: str, args: Any = None) -> Any:
    return await TasqExtension.of(app).tasq.request(topic, method, args, timeout=20.0)


async def test_handler_args_by_name_list_and_scalar(make_app: AppFactory) -> None:
    topic = unique_topic()
    router = TasqRouter(topic)

    @router.method()
    async def add(a: int, b: int = 10) -> int:
        return a + b

    @router.method()
    async def square(value: float) -> float:
        return value * value

    app = make_app(router)
    async with running_app(app):
        by_name = await _call(app, topic, "add", {"a": "2", "b": 3, "unknown": True})
        by_default = await _call(app, topic, "add", {"a": 1})
        by_position = await _call(app, topic, "add", [4, 5])
        scalar = await _call(app, topic, "square", 3)

    assert by_name == 5
    assert by_default == 11
    assert by_position == 9
    assert scalar == 9.0


async def test_handler_invalid_args_carry_pydantic_errors(make_app: AppFactory) -> None:
    topic = unique_topic()
    router = TasqRouter(topic)

    @router.method()
    async def add(a: int, b: int) -> int:
        return a + b

    app = make_app(router)
    async with running_app(app):
        with pytest.raises(TasqRequestInvalidArgsError) as info:
            await _call(app, topic, "add", {"a": "not a number"})

    errors = info.value.errors
    assert info.value.remote_type == "TasqInvalidArgsError"
    assert [error["loc"] for error in errors] == [["a"], ["b"]]
    assert [error["type"] for error in errors] == ["int_parsing", "missing"]
    assert errors[0]["input"] == "not a number"
    assert "url" not in errors[0]


async def test_handler_too_many_positional_args_rejected(make_app: AppFactory) -> None:
    topic = unique_topic()
    router = TasqRouter(topic)

    @router.method()
    async def one(a: int) -> int:
        return a

    app = make_app(router)
    async with running_app(app):
        with pytest.raises(TasqRequestInvalidArgsError) as info:
            await _call(app, topic, "one", [1, 2])

    assert info.value.errors[0]["type"] == "too_many_args"


async def test_handler_single_model_takes_whole_args(make_app: AppFactory) -> None:
    topic = unique_topic()
    router = TasqRouter(topic)

    @router.method()
    async def create(user: NewUser) -> NewUser:
        return user

    app = make_app(router)
    async with running_app(app):
        created = await _call(app, topic, "create", {"name": "Ada", "age": 36})
        with pytest.raises(TasqRequestInvalidArgsError) as info:
            await _call(app, topic, "create", {"name": "", "age": -1})

    assert created == {"name": "Ada", "age": 36}
    assert [error["loc"] for error in info.value.errors] == [["user", "name"], ["user", "age"]]


async def test_handler_yield_dependencies_clean_up_in_order(make_app: AppFactory) -> None:
    topic = unique_topic()
    router = TasqRouter(topic)

    @router.method()
    async def use(inner: Annotated[str, Depends(inner_resource)], fail: bool = False) -> str:
        events.append(f"handler with {inner}")
        if fail:
            raise ValueError("failing on purpose")
        return inner

    app = make_app(router)
    async with running_app(app):
        result = await _call(app, topic, "use")
        ok_events = list(events)
        events.clear()
        with pytest.raises(TasqRequestRejectedError) as info:
            await _call(app, topic, "use", {"fail": True})

    assert result == "inner"
    assert ok_events == [
        "outer setup",
        "inner setup after outer",
        "handler with inner",
        "inner cleanup",
        "outer cleanup",
    ]
    assert events == [
        "outer setup",
        "inner setup after outer",
        "handler with inner",
        "inner saw ValueError",
        "inner cleanup",
        "outer cleanup",
    ]
    assert info.value.remote_type == "ValueError"
    assert info.value.remote_message == "failing on purpose"


async def test_handler_dependency_cached_per_task(make_app: AppFactory) -> None:
    topic = unique_topic()
    router = TasqRouter(topic)

    @router.method()
    async def both(
        first: Annotated[int, Depends(count_call)],
        second: Annotated[int, Depends(via_count_call)],
    ) -> list[int]:
        return [first, second]

    app = make_app(router)
    async with running_app(app):
        first_call = await _call(app, topic, "both")
        second_call = await _call(app, topic, "both")

    assert first_call == [1, 1]
    assert second_call == [2, 2]


async def test_handler_dependency_overrides_apply(make_app: AppFactory) -> None:
    topic = unique_topic()
    router = TasqRouter(topic)

    @router.method()
    async def greet(name: str, settings: Annotated[Settings, Depends(get_settings)]) -> str:
        return f"{settings.greeting}, {name}"

    app = make_app(router)
    async with running_app(app):
        before = await _call(app, topic, "greet", {"name": "Ada"})
        app.dependency_overrides[get_settings] = lambda: Settings("hi")
        overridden = await _call(app, topic, "greet", {"name": "Ada"})
        app.dependency_overrides.clear()

    assert before == "hello, Ada"
    assert overridden == "hi, Ada"


async def test_handler_request_and_context_parameters(make_app: AppFactory) -> None:
    topic = unique_topic()
    router = TasqRouter(topic)

    @router.method()
    async def describe(
        title: Annotated[str, Depends(get_app_title)],
        context: TasqRequestContext,
    ) -> dict[str, Any]:
        return {
            "title": title,
            "topic": context.topic,
            "method": context.method,
            "left": context.time_remaining(),
        }

    app = make_app(router, title="described-app")
    async with running_app(app):
        result = await _call(app, topic, "describe")

    assert result["title"] == "described-app"
    assert result["topic"] == topic
    assert result["method"] == "describe"
    assert 0 < result["left"] <= 20.0


async def test_handler_sync_runs_in_thread_with_context(make_app: AppFactory) -> None:
    topic = unique_topic()
    router = TasqRouter(topic)

    @router.method()
    def whoami() -> dict[str, Any]:
        context = get_request_context()
        return {
            "main_thread": threading.current_thread() is threading.main_thread(),
            "method": None if context is None else context.method,
        }

    app = make_app(router)
    async with running_app(app):
        result = await _call(app, topic, "whoami")

    assert result == {"main_thread": False, "method": "whoami"}


async def test_handler_default_receives_method_and_raw_args(make_app: AppFactory) -> None:
    topic = unique_topic()
    router = TasqRouter(topic)

    @router.method()
    async def known() -> str:
        return "known"

    @router.default
    async def fallback(
        method: str, args: Any, settings: Annotated[Settings, Depends(get_settings)]
    ) -> list[Any]:
        return [method, args, settings.greeting]

    app = make_app(router)
    async with running_app(app):
        known_result = await _call(app, topic, "known")
        fallback_result = await _call(app, topic, "anything", {"x": 1})

    assert known_result == "known"
    assert fallback_result == ["anything", {"x": 1}, "hello"]


async def test_handler_results_converted(make_app: AppFactory) -> None:
    topic = unique_topic()
    router = TasqRouter(topic)
    created = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    user_id = uuid.UUID("12345678-1234-5678-1234-567812345678")

    @router.method()
    async def everything() -> dict[str, Any]:
        return {
            "model": NewUser(name="Ada", age=36),
            "tag": Tag("x", created),
            "id": user_id,
            "raw": b"\x00\x01",
            "day": dt.date(2024, 5, 6),
            "tuple": (1, 2),
        }

    app = make_app(router)
    async with running_app(app):
        result = await _call(app, topic, "everything")

    assert result == {
        "model": {"name": "Ada", "age": 36},
        "tag": {"label": "x", "created": created},
        "id": str(user_id),
        "raw": b"\x00\x01",
        "day": "2024-05-06",
        "tuple": [1, 2],
    }


async def test_handler_naive_datetime_rejected(make_app: AppFactory) -> None:
    topic = unique_topic()
    router = TasqRouter(topic)

    @router.method()
    async def naive() -> dict[str, Any]:
        return {"when": dt.datetime(2024, 1, 2, 3, 4, 5)}

    app = make_app(router)
    async with running_app(app):
        with pytest.raises(TasqRequestRejectedError) as info:
            await _call(app, topic, "naive")

    assert info.value.remote_type == "TasqResultConversionError"
    assert "naive datetime 2024-01-02T03:04:05 at result['when']" in str(info.value.remote_message)


async def test_handler_chained_call_through_get_tasq(make_app: AppFactory) -> None:
    front_topic = unique_topic("front")
    back_topic = unique_topic("back")
    front = TasqRouter(front_topic)
    back = TasqRouter(back_topic)

    @back.method()
    async def double(value: int) -> int:
        return value * 2

    @front.method()
    async def quadruple(value: int, tasq: Annotated[Tasq, Depends(get_tasq)]) -> int:
        doubled = await tasq.request(back_topic, "double", {"value": value})
        return int(await tasq.request(back_topic, "double", {"value": doubled}))

    app = make_app(front, back)

    async with running_app(app):
        result = await _call(app, front_topic, "quadruple", {"value": 3})

    assert result == 12
