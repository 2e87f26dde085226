"""Serving routers and running FastAPI apps in process, against a test Redis."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from ._client import Tasq
from ._connect import RedisClient
from ._fastapi import TasqExtension
from ._router import TasqRouter
from ._server import TasqServer

if TYPE_CHECKING:
    import httpx

# Seconds an app's startup or shutdown may take in run_app before it fails.
DEFAULT_LIFESPAN_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True)
class RunningApp:
    """An app whose lifespan `run_app` is running.

    Attributes:
        app: the app itself.
        tasq: the app's own Tasq client, connected while the app runs.
        http: an HTTP client that calls the app in process, without a socket.
    """

    app: FastAPI
    tasq: Tasq
    http: httpx.AsyncClient


@asynccontextmanager
async def serve_routers(
    tasq: Tasq,
    *routers: TasqRouter,
    app: FastAPI | None = None,
    grace_s: float = 5.0,
) -> AsyncIterator[tuple[TasqServer, ...]]:
    """Serve `routers` on the client `tasq` until the context exits, and yield their servers.

    Each router is compiled against `app` (its `dependency_overrides` and state apply)
    or, if `app` is None, against a new bare `FastAPI()`. Every router is checked
    before any server starts. On exit, each server stops taking tasks and its running
    handlers get `grace_s` seconds before they are cancelled. Handlers that use
    `Depends(get_tasq)` need an app with a running TasqExtension, or an override such
    as `app.dependency_overrides[get_tasq] = lambda: tasq`.

    A client serves each topic once in its life, so serve a topic again through a
    new client.

    Raises:
        ValueError: if no router is given, or `tasq` already serves one of the topics.
        TasqRouterConfigError: if a handler of a router cannot be served.
        RuntimeError: if `tasq` is not started or already closed.
    """
    if not routers:
        raise ValueError("serve_routers needs at least one TasqRouter to serve.")

    target = app if app is not None else FastAPI()
    compiled = [router.compile(target) for router in routers]

    async with AsyncExitStack() as stack:
        servers: list[TasqServer] = []
        for router in compiled:
            server = await tasq.serve(
                router.topic,
                handlers=router.handlers,
                handler=router.default,
                threads=router.threads,
                cancel_at_deadline=router.cancel_at_deadline,
                at_least_once=router.at_least_once,
                lease_s=router.lease_s,
            )
            stack.push_async_callback(server.aclose, grace_s)
            servers.append(server)
        yield tuple(servers)


@asynccontextmanager
async def run_app(
    app: FastAPI,
    *,
    redis: str | RedisClient | None = None,
    base_url: str = "http://testserver",
    lifespan_timeout_s: float = DEFAULT_LIFESPAN_TIMEOUT_S,
) -> AsyncIterator[RunningApp]:
    """Run `app`'s lifespan, TasqExtension included, and yield it with an HTTP client.

    While the context is open the app's routers are served and its Tasq client is
    connected, so a test reaches the app's handlers through any client on the same
    Redis and its HTTP endpoints through `RunningApp.http`. On exit the app shuts
    down as under uvicorn.

    The app connects to the Redis its TasqExtension was given, unless `redis`
    (a URL or client, such as the `tasq_redis_url` fixture) replaces that for this
    run only. Apps whose lifespan picks the Redis, as `example_app.main` does from
    REDIS_URL, should be pointed at the test server through that setting instead,
    because the override does not stop their lifespan from running.

    Needs the httpx and asgi-lifespan packages.

    Args:
        app: a FastAPI app with a TasqExtension (a TasqFastAPI is one).
        redis: the Redis the app uses for this run, or None for its own setting.
        base_url: base URL of `RunningApp.http`.
        lifespan_timeout_s: seconds startup, and then shutdown, may each take.

    Raises:
        TasqLifecycleError: if `app` has no TasqExtension or is already running.
        TasqStartupError, TasqRouterConfigError: if the app fails to start.
        TimeoutError: if startup or shutdown takes longer than `lifespan_timeout_s`.
        ImportError: if httpx or asgi-lifespan is not installed.
    """
    # Imported here, so that the rest of the testing kit works without them.
    try:
        import httpx
        from asgi_lifespan import LifespanManager
    except ImportError as exc:
        raise ImportError(
            f"run_app needs httpx and asgi-lifespan, and {exc.name} is not installed. "
            "Install both with pip install httpx asgi-lifespan."
        ) from exc

    extension = TasqExtension.of(app)
    with _redis_replaced(extension, redis):
        async with LifespanManager(
            app, startup_timeout=lifespan_timeout_s, shutdown_timeout=lifespan_timeout_s
        ) as manager:
            # manager.app passes the lifespan's state to requests, as a server does.
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
                yield RunningApp(app=app, tasq=extension.tasq, http=http)


@contextmanager
def _redis_replaced(extension: TasqExtension, redis: str | RedisClient | None) -> Iterator[None]:
    if redis is None:
        yield
        return

    # NOTE: TasqExtension has no public way to change its Redis after construction,
    # so the setting is swapped for this run and restored afterwards.
    original = extension._redis
    extension._redis = redis
    try:
        yield
    finally:
        extension._redis = original
