"""OpenTelemetry spans across a request and its task, and the task log filter."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tasq_fastapi import TasqLogFilter, TasqRequestRejectedError, create_tasq

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def _tracer_provider() -> None:
    # OpenTelemetry allows the global provider to be set once per process.
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def _by_kind(finished: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in finished if span.kind is kind]


async def test_tracing_task_span_continues_request_trace(
    redis_url: str, topic: str, spans: InMemorySpanExporter
) -> None:
    async def echo(args: Any) -> Any:
        return args

    async with await create_tasq(redis_url, tracing=True) as tasq:
        await tasq.serve(topic, {"echo": echo})
        assert await tasq.request(topic, "echo", [1]) == [1]

    [client] = _by_kind(spans.get_finished_spans(), SpanKind.CLIENT)
    [server] = _by_kind(spans.get_finished_spans(), SpanKind.SERVER)
    assert client.name == server.name == f"{topic}.echo"
    assert server.context is not None and client.context is not None
    assert server.context.trace_id == client.context.trace_id
    assert server.parent is not None
    assert server.parent.span_id == client.context.span_id
    assert server.attributes is not None
    assert server.attributes["messaging.destination.name"] == topic
    assert server.attributes["tasq.outcome"] == "ok"
    assert client.attributes is not None
    assert client.attributes["messaging.message.id"] == server.attributes["messaging.message.id"]


async def test_tracing_marks_rejected_request(
    redis_url: str, topic: str, spans: InMemorySpanExporter
) -> None:
    async def broken(_args: Any) -> None:
        raise ValueError("no")

    async with await create_tasq(redis_url, tracing=True) as tasq:
        await tasq.serve(topic, {"broken": broken})
        with pytest.raises(TasqRequestRejectedError):
            await tasq.request(topic, "broken")

    for span in spans.get_finished_spans():
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes["tasq.outcome"] == "rejected"


async def test_tracing_off_adds_no_spans(redis_url: str, topic: str, spans: InMemorySpanExporter) -> None:
    async def echo(args: Any) -> Any:
        return args

    async with await create_tasq(redis_url) as tasq:
        await tasq.serve(topic, {"echo": echo})
        await tasq.request(topic, "echo", 1)

    assert spans.get_finished_spans() == ()


def test_tracing_off_loads_no_tracing_code() -> None:
    # FastAPI itself may import OpenTelemetry when it is installed; what matters is
    # that this library does not unless tracing is on.
    script = (
        "import sys\n"
        "from tasq_fastapi import Tasq\n"
        "Tasq('redis://127.0.0.1:1/0')\n"
        "assert 'tasq_fastapi._tracing_otel' not in sys.modules\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)

    assert completed.returncode == 0, completed.stderr


def test_tracing_without_opentelemetry_says_what_to_install() -> None:
    # Recent FastAPI releases depend on opentelemetry-api themselves, so the test
    # makes the library's OpenTelemetry module fail to import instead.
    script = (
        "import sys\n"
        "from tasq_fastapi import Tasq\n"
        "sys.modules['tasq_fastapi._tracing_otel'] = None\n"
        "Tasq('redis://127.0.0.1:1/0', tracing=True)\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)

    assert completed.returncode != 0
    assert "pip install 'tasq-fastapi[otel]'" in completed.stderr


async def test_log_filter_names_the_task(
    redis_url: str, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    handler_logger = logging.getLogger("tests.handler")

    async def chatty(_args: Any) -> None:
        handler_logger.warning("inside the handler")

    caplog.handler.addFilter(TasqLogFilter())
    async with await create_tasq(redis_url) as tasq:
        await tasq.serve(topic, {"chatty": chatty})
        await tasq.request(topic, "chatty")
        handler_logger.warning("outside any handler")

    inside = next(r for r in caplog.records if r.getMessage() == "inside the handler")
    outside = next(r for r in caplog.records if r.getMessage() == "outside any handler")
    fields = ("tasq_topic", "tasq_method", "tasq_request_id")
    inside_values = [getattr(inside, name) for name in fields]
    assert inside_values[:2] == [topic, "chatty"]
    assert len(inside_values[2]) == 12
    assert [getattr(outside, name) for name in fields] == ["-", "-", "-"]
