"""`TasqExtension`: a Tasq client and servers attached to a FastAPI app's lifespan.

Lifespan order, with `app_lifespan` being whatever lifespan the app already had:

1. `app_lifespan` starts (so handlers can rely on what it sets up);
2. routers are checked, the client connects (checking that Redis responds), servers start;
3. the app serves;
4. servers stop taking tasks and running handlers get `grace_s` to finish;
5. the client closes (a caller-owned Redis client stays open);
6. `app_lifespan` shuts down.

A failure in step 2 undoes whatever step 2 had started and fails the app's
startup, so the app never serves half-initialised.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypeAlias

from fastapi import FastAPI
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError
from starlette.requests import HTTPConnection

from ._client import DEFAULT_HEALTH_CHECK_INTERVAL_S, DEFAULT_MAX_MESSAGE_BYTES, Tasq, create_tasq
from ._connect import RedisClient, describe_url
from ._depends import TasqRouterConfigError
from ._endpoints import TasqEndpoints, build_worker_router
from ._errors import TasqError
from ._metrics import FanOutObserver, TasqMetrics
from ._observer import TasqObserver
from ._router import CompiledRouter, TasqRouter
from ._server import TasqServer

logger = logging.getLogger(__name__)

RedisSource: TypeAlias = "str | RedisClient | Callable[[], str | RedisClient]"

_APP_STATE_KEY = "tasq_extension"

# Seconds a server's close may take beyond the grace period before shutdown
# stops waiting for it.
_STOP_MARGIN_S = 5.0


class TasqStartupError(TasqError, RuntimeError):
    """The extension could not connect to Redis or start a server during app startup."""


class TasqLifecycleError(TasqError, RuntimeError):
    """The extension or its client was used in a lifecycle state that does not allow it."""


class TasqExtensionState(enum.Enum):
    """Lifecycle state of a `TasqExtension`.

    CREATED and CLOSED accept `include_router` and may start. The client is
    usable from the moment it connects during STARTING until STOPPING ends.
    """

    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    CLOSED = "closed"


class TasqExtension:
    """Attach a Tasq client and the servers of included routers to a FastAPI app.

    The constructor only records configuration, adds the worker endpoints and
    wraps `app.router.lifespan_context`. All I/O happens in the app's lifespan,
    in the order the module docstring lists. One extension per app.

    Args:
        app: the app to attach to.
        redis: a Redis URL, including the `redis+cluster://` and
            `redis+sentinel://` forms (the extension creates and closes the
            client), a `redis.asyncio.Redis` or `RedisCluster` with
            `decode_responses=False` (the caller keeps ownership), or a
            zero-argument callable returning either, called at startup after the
            app's own lifespan has started.
        namespace: Tasq key namespace, or None for the core's default.
        endpoints: worker endpoint settings, or None for no endpoints.
        grace_s: seconds running handlers get to finish at shutdown before they
            are cancelled.
        startup_timeout_s: seconds connecting to Redis and starting servers may
            take before startup fails.
        observer: an extra `TasqObserver` that gets every event besides the
            extension's Prometheus metrics.
        max_message_bytes: the largest request or reply the client sends or
            accepts, in bytes; see `create_tasq`.
        health_check_interval_s: seconds of quiet after which the pub/sub
            connection is checked; see `create_tasq`.
        tracing: whether requests and tasks get OpenTelemetry spans; see
            `create_tasq`.

    Raises:
        TasqLifecycleError: if `app` already has a TasqExtension.
    """

    def __init__(
        self,
        app: FastAPI,
        *,
        redis: RedisSource,
        namespace: str | None = None,
        endpoints: TasqEndpoints | None = TasqEndpoints(),  # noqa: B008 - frozen, so sharing is safe
        grace_s: float = 10.0,
        startup_timeout_s: float = 10.0,
        observer: TasqObserver | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        health_check_interval_s: float = DEFAULT_HEALTH_CHECK_INTERVAL_S,
        tracing: bool = False,
    ) -> None:
        if getattr(app.state, _APP_STATE_KEY, None) is not None:
            raise TasqLifecycleError(
                "This app already has a TasqExtension. Create one per app and include every "
                "router through it."
            )

        self.metrics = TasqMetrics()
        self._app = app
        self._redis = redis
        self._namespace = namespace
        self._grace_s = grace_s
        self._startup_timeout_s = startup_timeout_s
        self._max_message_bytes = max_message_bytes
        self._health_check_interval_s = health_check_interval_s
        self._tracing = tracing
        self._observer: TasqObserver = (
            self.metrics if observer is None else FanOutObserver([self.metrics, observer])
        )
        self._routers: list[TasqRouter] = []
        self._state = TasqExtensionState.CREATED
        self._tasq: Tasq | None = None
        self._servers: tuple[TasqServer, ...] = ()

        setattr(app.state, _APP_STATE_KEY, self)
        if endpoints is not None:
            app.include_router(build_worker_router(self, endpoints))
        self._wrap_lifespan()

    @classmethod
    def of(cls, app: FastAPI) -> TasqExtension:
        """Return the extension attached to `app`.

        Raises:
            TasqLifecycleError: if `app` has no TasqExtension.
        """
        extension = getattr(app.state, _APP_STATE_KEY, None)
        if not isinstance(extension, TasqExtension):
            raise TasqLifecycleError(
                "This app has no TasqExtension. Create TasqExtension(app, redis=...) when "
                "building the app, before including Tasq routers or using get_tasq."
            )
        return extension

    @property
    def state(self) -> TasqExtensionState:
        """Current lifecycle state."""
        return self._state

    @property
    def is_serving(self) -> bool:
        """Whether the client is connected and every server has started."""
        return self._state is TasqExtensionState.RUNNING

    @property
    def tasq(self) -> Tasq:
        """The app's Tasq client, for requests to other services.

        Raises:
            TasqLifecycleError: before the client connects or after it closed.
        """
        if self._tasq is None:
            raise TasqLifecycleError(_unavailable_message(self._state))
        return self._tasq

    @property
    def servers(self) -> tuple[TasqServer, ...]:
        """Servers of the included routers in inclusion order, empty unless started."""
        return self._servers

    @property
    def routers(self) -> tuple[TasqRouter, ...]:
        """Included routers, in inclusion order."""
        return tuple(self._routers)

    def include_router(self, router: TasqRouter) -> None:
        """Serve `router`'s topic while the app runs.

        Raises:
            TasqLifecycleError: if the app is starting or running.
            TasqRouterConfigError: if another included router has the same topic.
        """
        if self._state not in (TasqExtensionState.CREATED, TasqExtensionState.CLOSED):
            raise TasqLifecycleError(
                f"Cannot include the router for topic {router.topic!r} while the app is "
                f"{self._state.value}. Include every router before the app starts."
            )

        for existing in self._routers:
            if existing.topic == router.topic:
                raise TasqRouterConfigError(
                    f"Topic {router.topic!r} is already served by {existing!r} in this app, and "
                    "one app serves a topic through one router, so merge the handlers into it."
                )
        self._routers.append(router)

    def _wrap_lifespan(self) -> None:
        app_lifespan = self._app.router.lifespan_context

        @asynccontextmanager
        async def lifespan_with_tasq(app: Any) -> AsyncIterator[Any]:
            async with app_lifespan(app) as lifespan_state, self._serving():
                yield lifespan_state

        self._app.router.lifespan_context = lifespan_with_tasq

    @asynccontextmanager
    async def _serving(self) -> AsyncIterator[None]:
        if self._state not in (TasqExtensionState.CREATED, TasqExtensionState.CLOSED):
            raise TasqLifecycleError(
                f"The Tasq extension cannot start while it is {self._state.value}. "
                "Run the app's lifespan once at a time."
            )
        self._state = TasqExtensionState.STARTING

        try:
            async with AsyncExitStack() as stack:
                await self._start(stack)
                self._state = TasqExtensionState.RUNNING
                logger.info("Tasq extension started, serving topics %s", [s.topic for s in self._servers])
                try:
                    yield
                finally:
                    self._state = TasqExtensionState.STOPPING
                    logger.info("Tasq extension stopping, grace period %.1f s", self._grace_s)
        finally:
            self._tasq = None
            self._servers = ()
            self._state = TasqExtensionState.CLOSED
            logger.info("Tasq extension stopped")

    async def _start(self, stack: AsyncExitStack) -> None:
        # Checking every handler before any I/O reports declaration errors
        # whether or not Redis is reachable.
        compiled = [router.compile(self._app) for router in self._routers]
        self.metrics.declare_topics(router.topic for router in compiled)

        try:
            async with asyncio.timeout(self._startup_timeout_s):
                self._tasq = await self._connect(stack)
                stack.push_async_callback(self._stop_servers)
                for router in compiled:
                    await self._start_server(router)
        except TimeoutError as exc:
            raise TasqStartupError(
                f"Tasq startup did not finish within {self._startup_timeout_s} s. Check that Redis "
                "responds at the configured URL, or raise startup_timeout_s."
            ) from exc

    async def _connect(self, stack: AsyncExitStack) -> Tasq:
        source = (
            self._redis()
            if callable(self._redis) and not isinstance(self._redis, Redis | RedisCluster)
            else self._redis
        )
        where = describe_redis(source)
        logger.info("Tasq connecting to Redis at %s", where)

        try:
            tasq = await create_tasq(
                source,
                namespace=self._namespace,
                observer=self._observer,
                max_message_bytes=self._max_message_bytes,
                health_check_interval_s=self._health_check_interval_s,
                tracing=self._tracing,
            )
        except ValueError as exc:
            raise TasqStartupError(
                f"Tasq could not use the Redis URL {where}: {str(exc).rstrip('.')}. Pass a URL "
                "such as redis://127.0.0.1:6379/0 or a redis.asyncio.Redis client with "
                "decode_responses=False."
            ) from exc
        except (RedisError, OSError, RuntimeError) as exc:
            raise TasqStartupError(
                f"Tasq could not connect to Redis at {where}: {str(exc).rstrip('.')}. Check that "
                "Redis 7.0 or newer is running there and that the URL is right."
            ) from exc
        stack.push_async_callback(tasq.aclose, self._grace_s)

        return tasq

    async def _start_server(self, router: CompiledRouter) -> None:
        assert self._tasq is not None
        server = await self._tasq.serve(
            router.topic,
            handlers=router.handlers,
            handler=router.default,
            threads=router.threads,
            cancel_at_deadline=router.cancel_at_deadline,
            at_least_once=router.at_least_once,
            lease_s=router.lease_s,
        )
        self._servers = (*self._servers, server)
        logger.info("Tasq server started for topic=%s threads=%d", router.topic, router.threads)

    async def _stop_servers(self) -> None:
        await asyncio.gather(*(self._stop_server(server) for server in self._servers))

    async def _stop_server(self, server: TasqServer) -> None:
        # A server that does not stop must not hang the app's shutdown, so its
        # close gets the grace period plus a margin and is then abandoned.
        limit_s = self._grace_s + _STOP_MARGIN_S
        try:
            async with asyncio.timeout(limit_s):
                await server.aclose(grace_s=self._grace_s)
        except TimeoutError:
            logger.error(
                "Tasq server for topic=%s did not stop within %.1f s; shutdown goes on", server.topic, limit_s
            )
        except Exception:
            logger.exception("Stopping the Tasq server for topic=%s failed; shutdown goes on", server.topic)
        else:
            logger.info("Tasq server stopped for topic=%s", server.topic)


def include_tasq_router(app: FastAPI, router: TasqRouter) -> None:
    """Serve `router` from `app`, through the TasqExtension attached to `app`.

    Raises:
        TasqLifecycleError: if `app` has no TasqExtension or is already running.
        TasqRouterConfigError: if another included router has the same topic.
    """
    TasqExtension.of(app).include_router(router)


def get_tasq(connection: HTTPConnection) -> Tasq:
    """FastAPI dependency returning the app's Tasq client.

    Works in endpoints and in Tasq handlers (for chained calls):
    `tasq: Annotated[Tasq, Depends(get_tasq)]`.

    Raises:
        TasqLifecycleError: if the app has no TasqExtension, or its lifespan has
            not started or has already ended.
    """
    return TasqExtension.of(connection.app).tasq


def describe_redis(source: str | RedisClient) -> str:
    """Describe where `source` connects, with any password replaced by '***'."""
    if isinstance(source, str):
        return describe_url(source)
    if isinstance(source, RedisCluster):
        return "a Redis Cluster (caller's client)"

    kwargs = source.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']} (caller's client)"
    return (
        f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)} (caller's client)"
    )


def _unavailable_message(state: TasqExtensionState) -> str:
    if state is TasqExtensionState.CLOSED:
        return (
            "The Tasq client is not available because the app has shut down. "
            "Use it only while the app's lifespan is running."
        )
    if state is TasqExtensionState.STARTING:
        return (
            "The Tasq client is not available because the app is still connecting to Redis. "
            "Use it only after startup has finished."
        )
    return (
        "The Tasq client is not available because the app has not started. Run the app under "
        "its lifespan (uvicorn, or asgi_lifespan.LifespanManager in tests) before using it."
    )
