"""`tasq inspect`: queue depth, oldest waiting task and live servers of Tasq topics."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from redis.exceptions import RedisClusterException, RedisError, ResponseError

from . import _protocol
from ._cli_common import CliError, ExitCode
from ._cli_render import dumps_json, format_duration, format_table
from ._cli_scan import Progress, discover_topics
from ._client import DEFAULT_MAX_MESSAGE_BYTES
from ._connect import RedisClient, connect_redis, describe_url
from ._errors import TasqProtocolError
from ._leases import leases_key
from ._presence import read_servers
from ._redis import execute


@dataclass
class TopicReport:
    """The state of one topic in Redis at the time it was read.

    `oldest` describes the task at the head of the list, the next one a server
    takes: its method and either `age_s` (seconds since it was sent, from the
    `sent_at` extension this library adds) or, for requests from peers without
    it such as Node.js clients, `deadline_in_s` (seconds until its deadline,
    negative once passed). `leased` counts at-least-once tasks running now.
    """

    topic: str
    queued: int
    leased: int
    oldest: dict[str, Any] | None
    servers: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return {
            "topic": self.topic,
            "queued": self.queued,
            "leased": self.leased,
            "oldest": self.oldest,
            "servers": self.servers,
        }


async def run_inspect(
    options: argparse.Namespace, redis_url: str, stdout: TextIO, stderr: TextIO
) -> ExitCode:
    """Report on `options.topics`, or on every topic found by SCAN when none are given.

    Prints a table, or one JSON document with `options.json`. Raises CliError for an
    invalid topic or when Redis cannot be reached or fails.
    """
    for topic in options.topics:
        _check_topic(topic)

    redis = _client(redis_url)
    where = describe_url(redis_url)
    try:
        async with asyncio.timeout(options.connect_timeout):
            await execute(redis, "PING")
        topics = options.topics or await discover_topics(redis, Progress(stderr))
        reports = [await read_topic(redis, topic) for topic in topics]
    except TimeoutError:
        raise CliError(
            f"Connecting to Redis at {where} timed out after {options.connect_timeout:g} s. "
            "Check the URL and that Redis is running, or raise --connect-timeout.",
            ExitCode.CONNECTION,
        ) from None
    except ResponseError as exc:
        # Redis replied but rejected a command, e.g. WRONGTYPE for a key that is not a list.
        raise CliError(f"Redis at {where} rejected a command: {exc}", ExitCode.FAILURE) from None
    except (RedisError, RedisClusterException, OSError) as exc:
        raise CliError(f"Reading from Redis at {where} failed: {exc}", ExitCode.CONNECTION) from None
    finally:
        await redis.aclose()

    if options.json:
        stdout.write(dumps_json({"redis": where, "topics": [report.to_json() for report in reports]}) + "\n")
    else:
        stdout.write(render_reports(reports) + "\n")
    return ExitCode.OK


async def read_topic(redis: RedisClient, topic: str) -> TopicReport:
    """Read the queue depth, head task, lease count and live servers of `topic`.

    Raises:
        redis.exceptions.RedisError: when a command fails, including ResponseError
            (WRONGTYPE) when `@tasq:<topic>` is not a list.
    """
    key = _protocol.topic_key(topic)
    queued = int(await execute(redis, "LLEN", key))
    head = await execute(redis, "LINDEX", key, 0) if queued else None
    leased = int(await execute(redis, "ZCARD", leases_key(topic)))
    servers = await read_servers(redis, topic)
    oldest = describe_head(head, time.time()) if head is not None else None
    return TopicReport(topic=topic, queued=queued, leased=leased, oldest=oldest, servers=servers)


def describe_head(raw: bytes, now_unix_s: float) -> dict[str, Any]:
    """Describe a raw task from a list: its method and how long it has waited.

    A task that is not a valid request is described by `{"error": ...}`.
    """
    try:
        request = _protocol.decode_request(raw, max_bytes=max(len(raw), DEFAULT_MAX_MESSAGE_BYTES))
    except TasqProtocolError as exc:
        return {"error": str(exc), "bytes": len(raw)}

    deadline_in_s = request.deadline_unix_s - now_unix_s
    sent_at_ms = request.extensions.get(_protocol.EXTENSION_SENT_AT_MS)
    if isinstance(sent_at_ms, int | float) and not isinstance(sent_at_ms, bool):
        sent_at_unix_s = (sent_at_ms + _protocol.TASQ_EPOCH_MS) / 1000
        return {
            "method": request.method,
            "age_s": now_unix_s - sent_at_unix_s,
            "sent_at": dt.datetime.fromtimestamp(sent_at_unix_s, dt.UTC).isoformat(),
            "deadline_in_s": deadline_in_s,
        }
    return {"method": request.method, "age_s": None, "sent_at": None, "deadline_in_s": deadline_in_s}


def render_reports(reports: list[TopicReport]) -> str:
    """Return the reports as a table of topics, then a table of their live servers."""
    if not reports:
        return "No Tasq topics found."
    topic_rows = [
        [
            report.topic,
            str(report.queued),
            str(report.leased),
            _oldest_text(report.oldest),
            str(len(report.servers)),
        ]
        for report in reports
    ]
    text = format_table(["TOPIC", "QUEUED", "LEASED", "OLDEST WAITING", "SERVERS"], topic_rows)

    server_rows = [_server_row(report.topic, entry) for report in reports for entry in report.servers]
    if server_rows:
        headers = ["TOPIC", "HOST", "PID", "METHODS", "THREADS", "RUNNING", "PROCESSED", "DELIVERY", "UP"]
        text += "\n\n" + format_table(headers, server_rows)
    return text


def _oldest_text(oldest: dict[str, Any] | None) -> str:
    if oldest is None:
        return "-"
    if "error" in oldest:
        return f"unreadable task: {oldest['error']}"
    if oldest["age_s"] is not None:
        return f"{format_duration(oldest['age_s'])} ({oldest['method']})"
    deadline_in_s = oldest["deadline_in_s"]
    if deadline_in_s < 0:
        return f"no send time; deadline passed {format_duration(-deadline_in_s)} ago ({oldest['method']})"
    return f"no send time; deadline in {format_duration(deadline_in_s)} ({oldest['method']})"


def _server_row(topic: str, entry: dict[str, Any]) -> list[str]:
    methods = ",".join(str(name) for name in entry.get("methods", []))
    if entry.get("default_handler"):
        methods = f"{methods},*" if methods else "*"
    started_at = entry.get("started_at")
    uptime = format_duration(time.time() - float(started_at)) if started_at is not None else "?"
    return [
        topic,
        str(entry.get("host", "?")),
        str(entry.get("pid", "?")),
        methods or "-",
        str(entry.get("threads", "?")),
        str(entry.get("running", "?")),
        str(entry.get("processed", "?")),
        str(entry.get("delivery", "?")),
        uptime,
    ]


def _check_topic(topic: str) -> None:
    try:
        _protocol.validate_name("topic", topic)
    except ValueError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None


def _client(redis_url: str) -> RedisClient:
    try:
        return connect_redis(redis_url)
    except ValueError as exc:
        raise CliError(f"Invalid Redis URL {describe_url(redis_url)}: {exc}", ExitCode.USAGE) from None
