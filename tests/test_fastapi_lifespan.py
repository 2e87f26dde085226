"""TasqExtension lifecycle through a real lifespan and a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import pytest
import redis.asyncio as aioredis
from fastapi import Depends, FastAPI
from starlette.requests import Request

from tasq_fastapi import Tasq
from tasq_fastapi._depends import TasqRouterConfigError
from tasq_fastapi._fastapi import (
    TasqExtension,
    TasqExtensionState,
    TasqLifecycleError,
    TasqStartupError,
    get_tasq,
    include_tasq_router,
)
from tasq_fastapi._router import TasqRouter
from tests._plugin_fixtures import running_app, unique_topic
from tests._redis_servers import free_port
from tests._waiting import wait_until


def _echo_router(topic: str) -> TasqRouter:
    router = TasqRouter(topic)

    @router.method()
    async def echo(value: Any = None) -> Any:
        return value

    return router


async def test_extension_composes_with_app_lifespan(redis_url: str) -> None:
    events: list[str] = []
    topic = unique_topic()

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        events.append(f"app startup, tasq {TasqExtension.of(app).state.value}")
        yield {"greeting": "hello"}
        events.append(f"app shutdown, tasq {TasqExtension.of(app).state.value}")

    app = FastAPI(lifespan=app_lifespan)
    extension = TasqExtension(app, redis=redis_url)
    extension.include_router(_echo_router(topic))

    @app.get("/greeting")
    async def greeting(request: Request) -> str:
        return str(request.state.greeting)

    async with running_app(app) as client:
        events.append(f"serving, tasq {extension.state.value}")
        response = await client.get("/greeting")
        result = await extension.tasq.request(topic, "echo", {"value": 7})

    assert response.json() == "hello"
    assert result == 7
    assert events == [
        "app startup, tasq created",
        "serving, tasq running",
        "app shutdown, tasq closed",
    ]
    assert extension.state is TasqExtensionState.CLOSED


async def test_extension_caller_client_stays_open(redis_url: str) -> None:
    topic = unique_topic()
    redis_client = aioredis.Redis.from_url(redis_url)
    app = FastAPI()
    TasqExtension(app, redis=redis_client).include_router(_echo_router(topic))

    try:
        async with running_app(app):
            assert await TasqExtension.of(app).tasq.request(topic, "echo", ["kept"]) == "kept"
        assert await redis_client.ping() is True
    finally:
        await redis_client.aclose()


async def test_extension_redis_callable_resolved_at_startup(redis_url: str) -> None:
    topic = unique_topic()
    urls: list[str] = []

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        urls.append(redis_url)
        yield

    app = FastAPI(lifespan=app_lifespan)
    TasqExtension(app, redis=lambda: urls[0]).include_router(_echo_router(topic))

    async with running_app(app):
        assert await TasqExtension.of(app).tasq.request(topic, "echo", [1]) == 1


async def test_extension_startup_redis_unreachable() -> None:
    cleaned_up: list[bool] = []

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            cleaned_up.append(True)

    app = FastAPI(lifespan=app_lifespan)
    url = f"redis://:secret-password@127.0.0.1:{free_port()}/0"
    extension = TasqExtension(app, redis=url)
    extension.include_router(_echo_router(unique_topic()))

    with pytest.raises(
        TasqStartupError, match=r"could not connect to Redis at redis://:\*\*\*@127\.0\.0\.1"
    ) as info:
        async with running_app(app):
            pytest.fail("The app served although Redis is unreachable.")

    assert "secret-password" not in str(info.value)
    assert cleaned_up == [True]
    assert extension.state is TasqExtensionState.CLOSED
    assert extension.servers == ()


async def test_extension_startup_bad_signature(redis_url: str) -> None:
    app = FastAPI()
    extension = TasqExtension(app, redis=redis_url)
    router = TasqRouter(unique_topic())

    @router.method()
    async def spread(**options: Any) -> None:
        return None

    extension.include_router(router)

    with pytest.raises(TasqRouterConfigError, match=r"declares \*options or \*\*options"):
        async with running_app(app):
            pytest.fail("The app served a handler with an unsupported signature.")
    assert extension.state is TasqExtensionState.CLOSED


async def test_extension_startup_failure_stops_started_servers(redis_url: str) -> None:
    good_topic = unique_topic("good")
    app = FastAPI()
    extension = TasqExtension(app, redis=redis_url)
    extension.include_router(_echo_router(good_topic))
    router = TasqRouter(unique_topic("bad"), threads=1)

    @router.method()
    async def ok() -> None:
        return None

    extension.include_router(router)
    # The core rejects a second server for a topic, which fails the second start.
    router.topic = good_topic

    with pytest.raises(ValueError, match="already serves topic"):
        async with running_app(app):
            pytest.fail("The app served with a server that failed to start.")
    assert extension.servers == ()
    assert extension.state is TasqExtensionState.CLOSED


def test_extension_duplicate_topic_rejected(redis_url: str) -> None:
    topic = unique_topic()
    app = FastAPI()
    TasqExtension(app, redis=redis_url).include_router(_echo_router(topic))

    with pytest.raises(TasqRouterConfigError, match=f"Topic '{topic}' is already served by TasqRouter"):
        include_tasq_router(app, _echo_router(topic))


def test_extension_second_extension_rejected(redis_url: str) -> None:
    app = FastAPI()
    TasqExtension(app, redis=redis_url)

    with pytest.raises(TasqLifecycleError, match="already has a TasqExtension"):
        TasqExtension(app, redis=redis_url)


def test_extension_missing_on_app_rejected() -> None:
    with pytest.raises(TasqLifecycleError, match=r"This app has no TasqExtension. Create TasqExtension\(app"):
        include_tasq_router(FastAPI(), _echo_router(unique_topic()))


async def test_extension_client_before_start_and_after_close(redis_url: str) -> None:
    app = FastAPI()
    extension = TasqExtension(app, redis=redis_url)
    extension.include_router(_echo_router(unique_topic()))

    with pytest.raises(TasqLifecycleError, match="because the app has not started"):
        _ = extension.tasq

    async with running_app(app):
        with pytest.raises(TasqLifecycleError, match="while the app is running"):
            extension.include_router(_echo_router(unique_topic()))

    with pytest.raises(TasqLifecycleError, match="because the app has shut down"):
        _ = extension.tasq


async def test_extension_restarts_after_close(redis_url: str) -> None:
    topic = unique_topic()
    app = FastAPI()
    extension = TasqExtension(app, redis=redis_url)
    extension.include_router(_echo_router(topic))

    for run in range(2):
        async with running_app(app):
            assert await extension.tasq.request(topic, "echo", [run]) == run


async def test_get_tasq_outside_running_app(redis_url: str) -> None:
    app = FastAPI()
    TasqExtension(app, redis=redis_url)
    calls: list[str] = []

    @app.get("/ping")
    async def ping(tasq: Annotated[Tasq, Depends(get_tasq)]) -> float:
        calls.append("ping")
        return await tasq.ping()

    request = Request({"type": "http", "app": app, "headers": []})

    with pytest.raises(
        TasqLifecycleError, match=r"because the app has not started\. Run the app under its lifespan"
    ):
        get_tasq(request)

    async with running_app(app) as client:
        response = await client.get("/ping")

    assert response.status_code == 200
    assert calls == ["ping"]


def test_get_tasq_without_extension() -> None:
    request = Request({"type": "http", "app": FastAPI(), "headers": []})

    with pytest.raises(TasqLifecycleError, match="This app has no TasqExtension"):
        get_tasq(request)


async def test_extension_shutdown_drains_running_handler(redis_url: str) -> None:
    topic = unique_topic()
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[str] = []
    router = TasqRouter(topic)

    @router.method()
    async def slow() -> str:
        started.set()
        await release.wait()
        finished.append("slow")
        return "done"

    app = FastAPI()
    extension = TasqExtension(app, redis=redis_url, grace_s=20.0)
    extension.include_router(router)

    async with Tasq(redis_url) as caller:
        pending_reply: asyncio.Task[Any] | None = None
        try:
            async with running_app(app):
                pending_reply = asyncio.create_task(caller.request(topic, "slow", timeout=30.0))
                async with asyncio.timeout(10.0):
                    await started.wait()
                # Shutdown starts when the block exits; the handler is released
                # only once the extension reports it is stopping.
                release_task = asyncio.create_task(_release_when_stopping(extension, release))
            await release_task
            result = await pending_reply
        finally:
            if pending_reply is not None and not pending_reply.done():
                pending_reply.cancel()

    assert result == "done"
    assert finished == ["slow"]


async def _release_when_stopping(extension: TasqExtension, release: asyncio.Event) -> None:
    await wait_until(lambda: extension.state is not TasqExtensionState.RUNNING)
    release.set()
