"""The testing kit: its pytest fixtures, call_handler, serve_routers and run_app."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
import logging
import os
import threading
import time
import types
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import pytest
import redis
from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field
from starlette.requests import Request

from tasq_fastapi import (
    Tasq,
    TasqEncodeError,
    TasqFastAPI,
    TasqLifecycleError,
    TasqRequestContext,
    TasqRequestError,
    TasqRequestInvalidArgsError,
    TasqRequestRejectedError,
    TasqRequestTimeoutError,
    TasqRequestUnknownMethodError,
    TasqRouter,
    TasqRouterConfigError,
    get_request_context,
    get_tasq,
    testing,
)
from tasq_fastapi._protocol import validate_name
from tasq_fastapi.testing import TasqTestRedis, call_handler, run_app, serve_routers, unique_name

PLUGIN_MODULE = "tasq_fastapi.pytest_plugin"


def _plugin_installed() -> bool:
    """Whether pytest loads the kit by itself, through the package's pytest11 entry point."""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    entry_points = importlib.metadata.entry_points(group="pytest11")
    return any(entry_point.value == PLUGIN_MODULE for entry_point in entry_points)


# Loading the plugin a second time under its module name, next to its entry point,
# makes pytest refuse to start, so it is named only where the entry point is missing.
PLUGIN_INSTALLED = _plugin_installed()
pytest_plugins = ["pytester"] if PLUGIN_INSTALLED else ["pytester", PLUGIN_MODULE]
INNER_PLUGIN_ARGS: tuple[str, ...] = () if PLUGIN_INSTALLED else ("-p", PLUGIN_MODULE)

pytestmark = pytest.mark.timeout(60)


class NewItem(BaseModel):
    name: str = Field(min_length=1)
    tags: tuple[str, ...] = ()


class Item(NewItem):
    id: int
    created_at: dt.datetime


class ItemStore:
    """Items in memory; tests swap in their own through dependency_overrides."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.items: dict[int, Item] = {}
        self._lock = threading.Lock()

    def add(self, new_item: NewItem) -> Item:
        with self._lock:
            item = Item(
                id=len(self.items) + 1,
                created_at=dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
                **new_item.model_dump(),
            )
            self.items[item.id] = item
            return item


def get_store() -> ItemStore:
    return ItemStore("production")


def get_app_title(request: Request) -> str:
    return str(request.app.title)


cleanup_events: list[str] = []


async def tracked_resource() -> AsyncIterator[str]:
    cleanup_events.append("opened")
    try:
        yield "resource"
    finally:
        cleanup_events.append("closed")


StoreDep = Annotated[ItemStore, Depends(get_store)]


async def add(new_item: NewItem, store: StoreDep) -> Item:
    return store.add(new_item)


async def store_label(store: StoreDep) -> str:
    return store.label


async def double(value: int) -> int:
    return value * 2


async def fail(reason: str) -> None:
    raise LookupError(reason)


async def context(request_context: TasqRequestContext) -> dict[str, Any]:
    return _describe(request_context)


def context_in_thread() -> dict[str, Any]:
    request_context = get_request_context()
    assert request_context is not None
    return _describe(request_context) | {"thread": threading.current_thread().name}


async def title(app_title: Annotated[str, Depends(get_app_title)]) -> str:
    return app_title


async def use_resource(resource: Annotated[str, Depends(tracked_resource)]) -> str:
    cleanup_events.append("handled")
    return resource


async def wait_forever() -> None:
    await asyncio.Event().wait()


async def naive_time() -> dt.datetime:
    return dt.datetime(2024, 5, 1, 12, 0)


HANDLERS: list[Callable[..., Any]] = [
    add,
    store_label,
    double,
    fail,
    context,
    context_in_thread,
    title,
    use_resource,
    wait_forever,
    naive_time,
]


def build_router(topic: str = "inventory") -> TasqRouter:
    """Return a router with one handler per case the tests need, each named after its function."""
    router = TasqRouter(topic, threads=4)
    for handler in HANDLERS:
        router.method()(handler)
    return router


def _describe(request_context: TasqRequestContext) -> dict[str, Any]:
    return {
        "topic": request_context.topic,
        "method": request_context.method,
        "request_id": request_context.request_id,
        "client_id": request_context.client_id,
        "deadline": request_context.deadline,
    }


def override_store(app: FastAPI, label: str) -> ItemStore:
    store = ItemStore(label)
    app.dependency_overrides[get_store] = lambda: store
    return store


def test_testing_module_exports_public_names() -> None:
    public = {
        name
        for name, value in vars(testing).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }

    assert set(testing.__all__) == public


# Fixtures


def test_tasq_redis_url_connects_to_empty_database(
    tasq_redis_url: str, tasq_redis_server: TasqTestRedis
) -> None:
    with redis.Redis.from_url(tasq_redis_url) as client:
        assert client.ping() is True
        database = client.connection_pool.connection_kwargs.get("db", 0)
        size = client.dbsize()

    if tasq_redis_server.is_embedded:
        assert size == 0
        assert database != 0


def test_tasq_redis_server_flushes_database_before_reuse(tasq_redis_server: TasqTestRedis) -> None:
    if not tasq_redis_server.is_embedded:
        pytest.skip("an existing server's databases are never flushed")
    first_url = tasq_redis_server.database_url()
    with redis.Redis.from_url(first_url) as client:
        client.set("left-by-an-earlier-test", "1")
    with redis.Redis.from_url(tasq_redis_server.url, decode_responses=True) as client:
        databases = int(str(client.config_get("databases")["databases"]))

    later_urls = [tasq_redis_server.database_url() for _ in range(databases - 1)]

    assert first_url not in later_urls[:-1]
    assert later_urls[-1] == first_url
    with redis.Redis.from_url(first_url) as client:
        assert client.exists("left-by-an-earlier-test") == 0


def test_tasq_topic_is_valid_name_of_test(tasq_topic: str, tasq_namespace: str) -> None:
    assert validate_name("topic", tasq_topic) == tasq_topic
    assert tasq_topic.startswith("test_tasq_topic_is_valid_name_of_test-")
    assert tasq_topic != tasq_namespace


async def test_tasq_client_uses_namespace(tasq_client: Tasq, tasq_namespace: str) -> None:
    assert tasq_client.client_id.startswith(f"{tasq_namespace}:")
    assert await tasq_client.ping() >= 0


def test_unique_name_makes_valid_distinct_names() -> None:
    names = [unique_name("test_x[a b/c]"), unique_name("test_x[a b/c]"), unique_name("client:x")]
    long_name = unique_name("x" * 500)

    assert names[0] != names[1]
    assert names[0].startswith("test_x-a-b-c-")
    assert not names[2].startswith("client:")
    assert unique_name("[]").startswith("test-")
    assert len(long_name) <= 100
    for name in [*names, long_name]:
        assert validate_name("topic", name) == name


# serve_routers


async def test_serve_routers_answers_requests(tasq_client: Tasq, tasq_topic: str) -> None:
    async with serve_routers(tasq_client, build_router(tasq_topic)) as servers:
        result = await tasq_client.request(tasq_topic, "double", {"value": 21}, timeout=5.0)

    assert result == 42
    assert [server.topic for server in servers] == [tasq_topic]


async def test_serve_routers_applies_dependency_overrides(tasq_client: Tasq, tasq_topic: str) -> None:
    app = FastAPI(title="inventory-app")
    store = override_store(app, "test store")

    async with serve_routers(tasq_client, build_router(tasq_topic), app=app):
        label = await tasq_client.request(tasq_topic, "store_label", timeout=5.0)
        app_title = await tasq_client.request(tasq_topic, "title", timeout=5.0)
        item = await tasq_client.request(tasq_topic, "add", {"name": "bolt"}, timeout=5.0)

    assert label == "test store"
    assert app_title == "inventory-app"
    assert item["name"] == "bolt"
    assert list(store.items) == [item["id"]]


async def test_serve_routers_stops_servers_on_exit(tasq_client: Tasq, tasq_topic: str) -> None:
    async with serve_routers(tasq_client, build_router(tasq_topic)) as servers:
        assert all(server.is_alive for server in servers)

    assert not any(server.is_alive for server in servers)


async def test_serve_routers_checks_every_router_first(tasq_client: Tasq, tasq_topic: str) -> None:
    broken = TasqRouter(unique_name("broken"))

    @broken.method()
    async def spread(*values: int) -> int:
        return sum(values)

    with pytest.raises(TasqRouterConfigError, match="spread"):
        async with serve_routers(tasq_client, build_router(tasq_topic), broken):
            pass

    assert dict(tasq_client.servers) == {}


async def test_serve_routers_without_routers_raises(tasq_client: Tasq) -> None:
    with pytest.raises(ValueError, match="at least one TasqRouter"):
        async with serve_routers(tasq_client):
            pass


# call_handler


async def test_call_handler_returns_result_as_sent() -> None:
    item = await call_handler(build_router(), "add", {"name": "bolt", "tags": ("metal", "small")})

    assert item == {
        "id": 1,
        "name": "bolt",
        "tags": ["metal", "small"],
        "created_at": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
    }


async def test_call_handler_binds_list_and_scalar_args() -> None:
    router = build_router()

    assert await call_handler(router, "double", {"value": 2}) == 4
    assert await call_handler(router, "double", [3]) == 6
    assert await call_handler(router, "double", 4) == 8


async def test_call_handler_applies_dependency_overrides() -> None:
    app = FastAPI(title="inventory-app")
    store = override_store(app, "test store")
    router = build_router()

    label = await call_handler(router, "store_label", app=app)
    app_title = await call_handler(router, "title", app=app)
    item = await call_handler(router, "add", {"name": "bolt"}, app=app)

    assert label == "test store"
    assert app_title == "inventory-app"
    assert list(store.items) == [item["id"]]


async def test_call_handler_without_app_uses_real_dependencies() -> None:
    assert await call_handler(build_router(), "store_label") == "production"


async def test_call_handler_closes_yield_dependencies() -> None:
    cleanup_events.clear()

    result = await call_handler(build_router(), "use_resource")

    assert result == "resource"
    assert cleanup_events == ["opened", "handled", "closed"]


async def test_call_handler_invalid_args_raise_invalid_args_error() -> None:
    with pytest.raises(TasqRequestInvalidArgsError) as caught:
        await call_handler(build_router(), "double", {"value": "twenty"})

    error = caught.value
    assert error.topic == "inventory"
    assert error.method == "double"
    assert error.request_args == {"value": "twenty"}
    assert [entry["loc"] for entry in error.errors] == [["value"]]
    assert error.errors[0]["type"] == "int_parsing"


async def test_call_handler_raising_handler_raises_rejected_error(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="tasq_fastapi._execution"):
        with pytest.raises(TasqRequestRejectedError) as caught:
            await call_handler(build_router(), "fail", {"reason": "no such bin"})

    error = caught.value
    assert not isinstance(error, TasqRequestInvalidArgsError)
    assert error.remote_type == "LookupError"
    assert error.remote_message == "no such bin"
    assert any(record.exc_info is not None for record in caplog.records)


async def test_call_handler_unknown_method_raises() -> None:
    with pytest.raises(TasqRequestUnknownMethodError) as caught:
        await call_handler(build_router(), "missing", {"value": 1})

    assert caught.value.method == "missing"
    assert caught.value.topic == "inventory"


async def test_call_handler_default_handler_gets_method_and_args() -> None:
    router = TasqRouter("catch-all")

    @router.default
    async def anything(method: str, args: Any) -> dict[str, Any]:
        return {"method": method, "args": args}

    result = await call_handler(router, "whatever", {"a": (1, 2)})

    assert result == {"method": "whatever", "args": {"a": [1, 2]}}


async def test_call_handler_sets_request_context() -> None:
    router = build_router()
    before = time.time()

    async_context = await call_handler(router, "context", timeout=7.0)
    thread_context = await call_handler(router, "context_in_thread", timeout=7.0)

    assert async_context["topic"] == "inventory"
    assert async_context["method"] == "context"
    assert before + 7.0 - 1.0 < async_context["deadline"] <= time.time() + 7.0
    assert len(async_context["request_id"]) == 12
    assert async_context["client_id"].startswith("tasq-testing:")
    assert thread_context["method"] == "context_in_thread"
    assert thread_context["thread"] != threading.current_thread().name
    assert get_request_context() is None


async def test_call_handler_cancels_handler_at_deadline() -> None:
    with pytest.raises(TasqRequestTimeoutError) as caught:
        await call_handler(build_router(), "wait_forever", timeout=0.2)

    assert caught.value.timeout_s == pytest.approx(0.2)


async def test_call_handler_unencodable_args_raise_encode_error() -> None:
    with pytest.raises(TasqEncodeError):
        await call_handler(build_router(), "double", {1: "integer keys are not sent"})


async def test_call_handler_oversized_args_raise_encode_error() -> None:
    with pytest.raises(TasqEncodeError, match="over the maximum of 100 bytes"):
        await call_handler(build_router(), "double", {"value": "x" * 200}, max_message_bytes=100)


async def test_call_handler_naive_datetime_result_is_rejected() -> None:
    with pytest.raises(TasqRequestRejectedError) as caught:
        await call_handler(build_router(), "naive_time")

    assert caught.value.remote_type is not None
    assert "naive" in (caught.value.remote_message or "")


async def test_call_handler_invalid_timeout_raises() -> None:
    with pytest.raises(ValueError, match="Invalid timeout"):
        await call_handler(build_router(), "double", 1, timeout=0)


async def test_call_handler_broken_router_raises_config_error() -> None:
    router = TasqRouter("broken")

    @router.method()
    async def spread(*values: int) -> int:
        return sum(values)

    with pytest.raises(TasqRouterConfigError, match="spread"):
        await call_handler(router, "spread", [1, 2])


REMOTE_CASES: list[tuple[str, Any]] = [
    ("add", {"name": "bolt", "tags": ["metal"]}),
    ("double", [21]),
    ("double", {"value": "twenty"}),
    ("add", {"name": ""}),
    ("fail", {"reason": "no such bin"}),
    ("naive_time", None),
    ("missing", None),
]


@pytest.mark.parametrize(("method", "args"), REMOTE_CASES)
async def test_call_handler_matches_remote_request(
    tasq_client: Tasq, tasq_topic: str, method: str, args: Any
) -> None:
    router = build_router(tasq_topic)
    remote_app = FastAPI()
    local_app = FastAPI()
    override_store(remote_app, "store")
    override_store(local_app, "store")

    async with serve_routers(tasq_client, router, app=remote_app):
        remote = await _outcome(lambda: tasq_client.request(tasq_topic, method, args, timeout=5.0))
    local = await _outcome(lambda: call_handler(router, method, args, app=local_app))

    assert local == remote


async def _outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("ok", await call())
    except TasqRequestError as exc:
        return (
            type(exc).__name__,
            exc.topic,
            exc.method,
            getattr(exc, "remote_type", None),
            getattr(exc, "remote_message", None),
            getattr(exc, "errors", None),
        )


# run_app


def build_app(topic: str, redis_setting: Callable[[], str]) -> TasqFastAPI:
    """Return an app serving build_router(topic), with an endpoint that calls it through Tasq."""
    app = TasqFastAPI(title="inventory-app", tasq_redis=redis_setting, tasq_endpoints=None)
    app.include_tasq_router(build_router(topic))

    @app.get("/double/{value}")
    async def double_endpoint(value: int, tasq: Annotated[Tasq, Depends(get_tasq)]) -> int:
        result: int = await tasq.request(topic, "double", {"value": value}, timeout=5.0)
        return result

    return app


async def test_run_app_serves_handlers_and_endpoints(
    tasq_client: Tasq, tasq_topic: str, tasq_redis_url: str
) -> None:
    app = build_app(tasq_topic, lambda: tasq_redis_url)

    async with run_app(app) as running:
        response = await running.http.get("/double/21")
        direct = await tasq_client.request(tasq_topic, "title", timeout=5.0)
        app_client_id = running.tasq.client_id

    assert response.status_code == 200
    assert response.json() == 42
    assert direct == "inventory-app"
    assert app_client_id != tasq_client.client_id
    assert not app.tasq_extension.is_serving


async def test_run_app_redis_override_lasts_one_run(
    tasq_client: Tasq, tasq_topic: str, tasq_redis_url: str
) -> None:
    setting_calls: list[str] = []

    def redis_setting() -> str:
        setting_calls.append("called")
        return tasq_redis_url

    app = build_app(tasq_topic, redis_setting)

    async with run_app(app, redis=tasq_redis_url):
        overridden = await tasq_client.request(tasq_topic, "double", 1, timeout=5.0)
    calls_with_override = len(setting_calls)
    async with run_app(app):
        own = await tasq_client.request(tasq_topic, "double", 2, timeout=5.0)

    assert overridden == 2
    assert own == 4
    assert calls_with_override == 0
    assert setting_calls == ["called"]


async def test_run_app_without_extension_raises() -> None:
    with pytest.raises(TasqLifecycleError, match="no TasqExtension"):
        async with run_app(FastAPI()):
            pass


# The plugin in a user's project


USER_TESTS = """
import os
from pathlib import Path

import pytest

from tasq_fastapi import TasqRouter
from tasq_fastapi.testing import serve_routers

seen_names = []
seen_clients = []


@pytest.mark.asyncio
async def test_first_leaves_data(tasq_client, tasq_topic, tasq_namespace, tasq_redis_server):
    await tasq_client.redis.set("shared-key", "first")
    await tasq_client.redis.rpush("@tasq:orders", b"left over")
    seen_names.extend([tasq_topic, tasq_namespace])
    seen_clients.append(tasq_client)
    Path(os.environ["SERVER_PID_FILE"]).write_text(str(tasq_redis_server.pid))


@pytest.mark.asyncio
async def test_second_sees_none_of_it(tasq_client, tasq_topic, tasq_namespace):
    assert await tasq_client.redis.exists("shared-key") == 0
    assert await tasq_client.redis.llen("@tasq:orders") == 0
    assert tasq_topic not in seen_names
    assert tasq_namespace not in seen_names
    with pytest.raises(RuntimeError):
        await seen_clients[0].request(tasq_topic, "any", timeout=1.0)


@pytest.mark.asyncio
async def test_client_calls_served_router(tasq_client, tasq_topic):
    router = TasqRouter(tasq_topic)

    @router.method()
    async def echo(text: str) -> str:
        return text

    async with serve_routers(tasq_client, router):
        assert await tasq_client.request(tasq_topic, "echo", {"text": "hi"}, timeout=5.0) == "hi"
"""

PYTEST_INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
"""


def test_pytest_plugin_isolates_tests_of_user_project(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TASQ_TEST_REDIS_URL", raising=False)
    pid_file = pytester.path / "server.pid"
    monkeypatch.setenv("SERVER_PID_FILE", str(pid_file))
    pytester.makeini(PYTEST_INI)
    pytester.makepyfile(test_user=USER_TESTS)

    result = pytester.runpytest_subprocess(*INNER_PLUGIN_ARGS, timeout=60)

    result.assert_outcomes(passed=3)
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


@pytest.mark.parametrize("source", ["environment", "option"])
def test_pytest_plugin_uses_given_redis_url(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tasq_redis_url: str, source: str
) -> None:
    marker_key = unique_name("marker")
    pytester.makeini(PYTEST_INI)
    pytester.makepyfile(
        test_user=f"""
import redis


def test_writes_marker(tasq_redis_server, tasq_redis_url):
    assert not tasq_redis_server.is_embedded
    assert tasq_redis_url == {tasq_redis_url!r}
    with redis.Redis.from_url(tasq_redis_url) as client:
        client.set({marker_key!r}, "written")
"""
    )
    monkeypatch.delenv("TASQ_TEST_REDIS_URL", raising=False)
    options: list[str] = []
    if source == "environment":
        monkeypatch.setenv("TASQ_TEST_REDIS_URL", tasq_redis_url)
    else:
        options = ["--tasq-redis-url", tasq_redis_url]

    result = pytester.runpytest_subprocess(*INNER_PLUGIN_ARGS, *options, timeout=60)

    result.assert_outcomes(passed=1)
    with redis.Redis.from_url(tasq_redis_url) as client:
        assert client.get(marker_key) == b"written"
        client.delete(marker_key)


def test_pytest_plugin_without_asyncio_explains_tasq_client(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user="""
def test_sync_fixtures_still_work(tasq_topic):
    assert tasq_topic.startswith("test_sync_fixtures_still_work-")


def test_needs_client(tasq_client):
    pass
"""
    )

    result = pytester.runpytest_subprocess(*INNER_PLUGIN_ARGS, "-p", "no:asyncio", timeout=60)

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*tasq_client fixture is async and needs the pytest-asyncio plugin*"])
