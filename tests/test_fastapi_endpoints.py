"""Worker endpoints: health and Prometheus metrics, on a real Redis."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from prometheus_client.parser import text_string_to_metric_families

from tasq_fastapi import TasqRequestRejectedError, TasqRequestUnknownMethodError
from tasq_fastapi._endpoints import TasqEndpoints
from tasq_fastapi._fastapi import TasqExtension
from tasq_fastapi._protocol import topic_key
from tasq_fastapi._router import TasqRouter
from tests._plugin_fixtures import running_app, unique_topic
from tests._redis_servers import RedisProcess

pytestmark = pytest.mark.timeout(90)


def _router(topic: str, threads: int = 2) -> TasqRouter:
    router = TasqRouter(topic, threads=threads)

    @router.method()
    async def ok() -> str:
        return "ok"

    @router.method()
    async def fail() -> None:
        raise RuntimeError("failing on purpose")

    return router


class DropWatcher:
    """An extra observer that signals the first dropped task."""

    def __init__(self) -> None:
        self.dropped = asyncio.Event()

    def request_finished(self, topic: str, method: str, outcome: str, duration_s: float) -> None:
        pass

    def task_started(self, topic: str, method: str) -> None:
        pass

    def task_finished(self, topic: str, method: str, outcome: str, duration_s: float) -> None:
        pass

    def task_dropped(self, topic: str, reason: str) -> None:
        self.dropped.set()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _sample(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_health_reports_servers(redis_url: str) -> None:
    topic = unique_topic()
    app = FastAPI()
    extension = TasqExtension(app, redis=redis_url)
    extension.include_router(_router(topic, threads=3))

    async with running_app(app) as client:
        await extension.tasq.request(topic, "ok")
        response = await client.get("/tasq/health")

    body: dict[str, Any] = response.json()
    assert response.status_code == 200
    assert body["status"] == "ok"
    assert body["redis"]["ok"] is True
    assert 0 < body["redis"]["round_trip_s"] < 5
    assert body["servers"] == [
        {"topic": topic, "alive": True, "threads": 3, "running": 0, "processed": 1, "queue_depth": 0}
    ]


async def test_health_red_when_redis_stops(
    redis_process: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    topic = unique_topic()
    app = FastAPI()
    TasqExtension(
        app, redis=redis_process.url, endpoints=TasqEndpoints(redis_timeout_s=1.0), grace_s=1.0
    ).include_router(_router(topic))

    async with running_app(app) as client:
        green = await client.get("/tasq/health")
        redis_process.stop()
        with caplog.at_level(logging.WARNING, logger="tasq_fastapi._endpoints"):
            red = await client.get("/tasq/health")
            red_again = await client.get("/tasq/health")
        redis_process.start()

    assert green.status_code == 200
    assert red.status_code == 503
    red_body: dict[str, Any] = red.json()
    assert red_body["status"] == "unhealthy"
    assert red_body["redis"]["ok"] is False
    assert red_body["redis"]["error"]
    assert red_body["servers"][0]["queue_depth"] is None
    assert red_again.status_code == 503
    ping_warnings = [record for record in caplog.records if "PING to Redis failed" in record.getMessage()]
    assert len(ping_warnings) == 1


async def test_health_red_when_server_loop_died(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    topic = unique_topic()
    app = FastAPI()
    extension = TasqExtension(app, redis=redis_url)
    extension.include_router(_router(topic))

    async with running_app(app) as client:
        server_type = type(extension.servers[0])
        monkeypatch.setattr(server_type, "is_alive", property(lambda server: False))
        response = await client.get("/tasq/health")

    body: dict[str, Any] = response.json()
    assert response.status_code == 503
    assert body["status"] == "unhealthy"
    assert body["redis"]["ok"] is True
    assert body["servers"][0]["alive"] is False


async def test_health_unavailable_before_start(redis_url: str) -> None:
    app = FastAPI()
    TasqExtension(app, redis=redis_url).include_router(_router(unique_topic()))

    # Called without the lifespan, as a test client used without `with` would.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
        response = await client.get("/tasq/health")

    assert response.status_code == 503
    assert response.json()["state"] == "created"


async def test_metrics_after_known_traffic(redis_url: str) -> None:
    topic = unique_topic()
    app = FastAPI()
    drops = DropWatcher()
    extension = TasqExtension(app, redis=redis_url, observer=drops)
    extension.include_router(_router(topic))

    async with running_app(app) as client:
        for _ in range(3):
            await extension.tasq.request(topic, "ok")
        with pytest.raises(TasqRequestRejectedError):
            await extension.tasq.request(topic, "fail")
        with pytest.raises(TasqRequestUnknownMethodError):
            await extension.tasq.request(topic, "missing")
        await extension.tasq.redis.rpush(topic_key(topic), b"not cbor")
        await extension.tasq.redis.publish(topic_key(topic), b"")
        async with asyncio.timeout(10.0):
            await drops.dropped.wait()
        response = await client.get("/tasq/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    assert _sample(samples, "tasq_requests_total", topic=topic, method="ok", outcome="ok") == 3
    assert _sample(samples, "tasq_requests_total", topic=topic, method="fail", outcome="rejected") == 1
    assert (
        _sample(samples, "tasq_requests_total", topic=topic, method="missing", outcome="unknown_method") == 1
    )
    assert _sample(samples, "tasq_request_duration_seconds_count", topic=topic, method="ok") == 3
    assert _sample(samples, "tasq_tasks_total", topic=topic, method="ok", outcome="ok") == 3
    assert _sample(samples, "tasq_tasks_total", topic=topic, method="fail", outcome="rejected") == 1
    assert (
        _sample(samples, "tasq_tasks_total", topic=topic, method="(unknown)", outcome="unknown_method") == 1
    )
    assert _sample(samples, "tasq_task_duration_seconds_count", topic=topic, method="ok") == 3
    assert _sample(samples, "tasq_tasks_running", topic=topic) == 0
    assert _sample(samples, "tasq_queue_depth", topic=topic) == 0
    assert _sample(samples, "tasq_tasks_dropped_total", topic=topic, reason="malformed") == 1


async def test_metrics_registry_per_app(redis_url: str) -> None:
    first = FastAPI()
    second = FastAPI()
    first_extension = TasqExtension(first, redis=redis_url)
    second_extension = TasqExtension(second, redis=redis_url)

    assert first_extension.metrics.registry is not second_extension.metrics.registry


async def test_endpoints_prefix_and_switches(redis_url: str) -> None:
    app = FastAPI()
    endpoints = TasqEndpoints(prefix="/internal/worker", metrics=False)
    TasqExtension(app, redis=redis_url, endpoints=endpoints).include_router(_router(unique_topic()))

    async with running_app(app) as client:
        health = await client.get("/internal/worker/health")
        metrics = await client.get("/internal/worker/metrics")
        old_path = await client.get("/tasq/health")

    assert health.status_code == 200
    assert metrics.status_code == 404
    assert old_path.status_code == 404


async def test_endpoints_disabled(redis_url: str) -> None:
    app = FastAPI()
    TasqExtension(app, redis=redis_url, endpoints=None).include_router(_router(unique_topic()))

    async with running_app(app) as client:
        response = await client.get("/tasq/health")

    assert response.status_code == 404


def require_token(request: Request) -> None:
    if request.headers.get("x-token") != "letmein":
        raise HTTPException(status_code=403, detail="Missing or wrong x-token header.")


async def test_endpoints_behind_app_dependency(redis_url: str) -> None:
    app = FastAPI()
    endpoints = TasqEndpoints(dependencies=[Depends(require_token)])
    TasqExtension(app, redis=redis_url, endpoints=endpoints).include_router(_router(unique_topic()))

    async with running_app(app) as client:
        denied = await client.get("/tasq/metrics")
        allowed = await client.get("/tasq/metrics", headers={"x-token": "letmein"})

    assert denied.status_code == 403
    assert allowed.status_code == 200
