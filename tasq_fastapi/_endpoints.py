"""Worker endpoints: health, Prometheus metrics and the method listing of an app's Tasq servers."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, params
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from ._discovery import describe_routers

if TYPE_CHECKING:
    from ._fastapi import TasqExtension
    from ._server import TasqServer

logger = logging.getLogger(__name__)

# redis-py's ConnectionError and TimeoutError derive from RedisError, not from
# the builtins of the same name, so both families are caught.
_UNREACHABLE_ERRORS = (RedisError, OSError, TimeoutError)


@dataclasses.dataclass(frozen=True)
class TasqEndpoints:
    """Settings of the worker endpoints an app exposes.

    Attributes:
        prefix: path prefix of the endpoints, e.g. "/tasq" gives "/tasq/health".
        health: whether to serve `{prefix}/health`.
        metrics: whether to serve `{prefix}/metrics` in the Prometheus text format.
        methods: whether to serve `{prefix}/methods`, the JSON schemas of the args
            and result of every method of the included routers.
        dependencies: FastAPI dependencies run before each endpoint, e.g. an auth check.
        include_in_schema: whether the endpoints appear in the OpenAPI schema.
        redis_timeout_s: how long, in seconds, each Redis call an endpoint makes
            may take before Redis counts as unreachable.
    """

    prefix: str = "/tasq"
    health: bool = True
    metrics: bool = True
    methods: bool = True
    dependencies: Sequence[params.Depends] = ()
    include_in_schema: bool = False
    redis_timeout_s: float = 2.0


class _FailureLog:
    """Log a series of failures of one check once, not once per probe.

    Health and metrics endpoints are probed every few seconds, so while Redis is
    down only the first failure is logged at WARNING, repeats go to DEBUG with a
    count, and the first success afterwards is logged at INFO.
    """

    def __init__(self) -> None:
        self._failures: dict[str, int] = {}

    def failed(self, check: str, exc: BaseException) -> None:
        count = self._failures.get(check, 0) + 1
        self._failures[check] = count
        level = logging.WARNING if count == 1 else logging.DEBUG
        logger.log(level, "%s failed (%d in a row): %s", check, count, _describe_error(exc))

    def succeeded(self, check: str) -> None:
        count = self._failures.pop(check, 0)
        if count:
            logger.info("%s succeeded again after %d failures", check, count)


def build_worker_router(extension: TasqExtension, config: TasqEndpoints) -> APIRouter:
    """Return an `APIRouter` with the endpoints `config` enables."""
    failures = _FailureLog()
    router = APIRouter(
        prefix=config.prefix,
        dependencies=list(config.dependencies),
        include_in_schema=config.include_in_schema,
        tags=["tasq"],
    )

    if config.health:

        async def tasq_health() -> JSONResponse:
            """Report Redis round-trip time and each Tasq server's state; 503 when unhealthy."""
            return await _health_response(extension, config.redis_timeout_s, failures)

        router.add_api_route("/health", tasq_health, methods=["GET"])

    if config.metrics:

        async def tasq_metrics() -> Response:
            """Expose this app's Tasq metrics in the Prometheus text format."""
            await _refresh_queue_depths(extension, config.redis_timeout_s, failures)
            return Response(content=extension.metrics.render(), media_type=CONTENT_TYPE_LATEST)

        router.add_api_route("/metrics", tasq_metrics, methods=["GET"])

    if config.methods:

        async def tasq_methods() -> JSONResponse:
            """List each method of the included routers with the JSON schemas of its args and result."""
            return JSONResponse(describe_routers(extension.routers))

        router.add_api_route("/methods", tasq_methods, methods=["GET"])

    return router


async def _health_response(extension: TasqExtension, timeout_s: float, failures: _FailureLog) -> JSONResponse:
    if not extension.is_serving:
        stopped: dict[str, Any] = {
            "status": "unavailable",
            "state": extension.state.value,
            "redis": None,
            "servers": [],
        }
        return JSONResponse(stopped, status_code=503)

    redis_status = await _ping(extension, timeout_s, failures)
    redis_ok = redis_status["ok"]
    depth_timeout_s = timeout_s if redis_ok else None
    servers = [await _server_status(server, depth_timeout_s, failures) for server in extension.servers]
    healthy = redis_ok and all(server["alive"] for server in servers)

    body: dict[str, Any] = {
        "status": "ok" if healthy else "unhealthy",
        "state": extension.state.value,
        "redis": redis_status,
        "servers": servers,
    }
    return JSONResponse(body, status_code=200 if healthy else 503)


async def _ping(extension: TasqExtension, timeout_s: float, failures: _FailureLog) -> dict[str, Any]:
    check = "Health check PING to Redis"
    try:
        async with asyncio.timeout(timeout_s):
            round_trip_s = await extension.tasq.ping()
    except _UNREACHABLE_ERRORS as exc:
        failures.failed(check, exc)
        return {"ok": False, "round_trip_s": None, "error": _describe_error(exc)}

    failures.succeeded(check)
    return {"ok": True, "round_trip_s": round_trip_s, "error": None}


async def _server_status(
    server: TasqServer, timeout_s: float | None, failures: _FailureLog
) -> dict[str, Any]:
    depth = None
    if timeout_s is not None:
        depth = await _queue_depth(server, timeout_s, failures)

    return {
        "topic": server.topic,
        "alive": server.is_alive,
        "threads": server.threads,
        "running": server.running,
        "processed": server.processed,
        "queue_depth": depth,
    }


async def _refresh_queue_depths(extension: TasqExtension, timeout_s: float, failures: _FailureLog) -> None:
    if not extension.is_serving:
        return
    for server in extension.servers:
        depth = await _queue_depth(server, timeout_s, failures)
        extension.metrics.set_queue_depth(server.topic, depth)


async def _queue_depth(server: TasqServer, timeout_s: float, failures: _FailureLog) -> int | None:
    check = f"Reading the queue depth of topic={server.topic}"
    try:
        async with asyncio.timeout(timeout_s):
            depth = await server.queue_depth()
    except _UNREACHABLE_ERRORS as exc:
        failures.failed(check, exc)
        return None

    failures.succeeded(check)
    return depth


def _describe_error(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
