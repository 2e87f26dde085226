"""The `tasq` command line, run as `python -m tasq_fastapi.cli` against a real Redis."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from tasq_fastapi import Tasq, TasqInvalidArgsError, create_tasq
from tasq_fastapi._cli_common import ExitCode
from tasq_fastapi._cli_scan import Progress
from tasq_fastapi._presence import read_servers, servers_key
from tasq_fastapi._protocol import (
    EXTENSION_SENT_AT_MS,
    encode_request,
    new_client_id,
    new_request_id,
    to_deadline_ms,
    topic_key,
)
from tests._cluster import LocalRedisCluster
from tests._cluster import redis_cluster_fixture as redis_cluster_fixture
from tests._processes import REPO_ROOT
from tests._redis_servers import free_port
from tests._waiting import WAIT_S, wait_until

pytestmark = pytest.mark.timeout(120)

# How long one CLI process may run before the test fails, in seconds.
CLI_TIMEOUT_S = 60.0

# Raw tasks pushed by tests expire after this many seconds, so a failed test leaves no litter.
KEY_EXPIRY_S = 120


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


async def run_cli(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> CliResult:
    """Run `python -m tasq_fastapi.cli ARGS` and return its exit status and output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tasq_fastapi.cli",
        *args,
        cwd=REPO_ROOT,
        env=env if env is not None else _env_without_redis_url(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(stdin), CLI_TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return CliResult(process.returncode, stdout.decode(), stderr.decode())


def _env_without_redis_url() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "REDIS_URL"}


def _env_with(redis_url: str, **extra: str) -> dict[str, str]:
    return {**_env_without_redis_url(), "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1", **extra}


async def echo(args: Any) -> Any:
    return {"args": args, "raw": b"\x00\x01tasq", "at": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)}


async def fail(args: Any) -> Any:
    raise KeyError("no such user")


async def reject_args(args: Any) -> Any:
    raise TasqInvalidArgsError("bad id", errors=[{"loc": ["id"], "msg": "must be positive", "type": "value"}])


async def _serve_test_methods(tasq: Tasq, topic: str) -> None:
    await tasq.serve(topic, {"echo": echo, "fail": fail, "reject_args": reject_args}, threads=2)


# --- call ---


async def test_call_prints_readable_result(tasq: Tasq, topic: str, redis_url: str) -> None:
    await _serve_test_methods(tasq, topic)

    result = await run_cli("call", topic, "echo", '{"id": 1}', env=_env_with(redis_url))

    assert result.code == ExitCode.OK, result.stderr
    printed = json.loads(result.stdout)
    assert printed["args"] == {"id": 1}
    assert printed["raw"] == "<6 bytes: 000174617371>"
    assert printed["at"] == "2024-05-01T12:00:00+00:00"


async def test_call_json_result(tasq: Tasq, topic: str, redis_url: str) -> None:
    await _serve_test_methods(tasq, topic)

    result = await run_cli("call", topic, "echo", "[1, 2]", "--json", "--redis-url", redis_url)

    assert result.code == ExitCode.OK, result.stderr
    assert result.stdout.count("\n") == 1
    assert json.loads(result.stdout) == {
        "args": [1, 2],
        "raw": {"$bytes": "AAF0YXNx"},
        "at": "2024-05-01T12:00:00+00:00",
    }


async def test_call_without_args_sends_none(tasq: Tasq, topic: str, redis_url: str) -> None:
    await _serve_test_methods(tasq, topic)

    result = await run_cli("call", topic, "echo", "--json", env=_env_with(redis_url))

    assert result.code == ExitCode.OK, result.stderr
    assert json.loads(result.stdout)["args"] is None


async def test_call_reads_args_from_stdin(tasq: Tasq, topic: str, redis_url: str) -> None:
    await _serve_test_methods(tasq, topic)

    result = await run_cli("call", topic, "echo", "-", "--json", env=_env_with(redis_url), stdin=b'{"id": 7}')

    assert result.code == ExitCode.OK, result.stderr
    assert json.loads(result.stdout)["args"] == {"id": 7}


@pytest.mark.parametrize(
    ("method", "expected_code", "expected_text"),
    [
        ("fail", ExitCode.REJECTED, "TasqRequestRejectedError"),
        ("reject_args", ExitCode.INVALID_ARGS, "id: must be positive"),
        ("missing", ExitCode.UNKNOWN_METHOD, "TasqRequestUnknownMethodError"),
    ],
)
async def test_call_error_exit_codes(
    tasq: Tasq, topic: str, redis_url: str, method: str, expected_code: ExitCode, expected_text: str
) -> None:
    await _serve_test_methods(tasq, topic)

    result = await run_cli("call", topic, method, env=_env_with(redis_url))

    assert result.code == expected_code
    assert expected_text in result.stderr
    assert result.stdout == ""


async def test_call_json_error_on_stderr(tasq: Tasq, topic: str, redis_url: str) -> None:
    await _serve_test_methods(tasq, topic)

    result = await run_cli("call", topic, "reject_args", "--json", env=_env_with(redis_url))

    assert result.code == ExitCode.INVALID_ARGS
    error = json.loads(result.stderr)["error"]
    assert error["type"] == "TasqRequestInvalidArgsError"
    assert error["remote_type"] == "TasqInvalidArgsError"
    assert error["errors"] == [{"loc": ["id"], "msg": "must be positive", "type": "value"}]


async def test_call_timeout_exit_code(topic: str, redis_url: str) -> None:
    started = time.monotonic()

    result = await run_cli("call", topic, "anything", "--timeout", "0.2", env=_env_with(redis_url))

    assert result.code == ExitCode.TIMEOUT
    assert "timed out after 0.2 s" in result.stderr
    assert time.monotonic() - started < CLI_TIMEOUT_S


async def test_call_connection_error_hides_password(topic: str) -> None:
    url = f"redis://user:secret-word@127.0.0.1:{free_port()}/0"

    result = await run_cli("call", topic, "anything", "--redis-url", url)

    assert result.code == ExitCode.CONNECTION
    assert "redis://user:***@127.0.0.1" in result.stderr
    assert "secret-word" not in result.stderr


async def test_call_bad_json_args(topic: str, redis_url: str) -> None:
    result = await run_cli("call", topic, "echo", "{id: 1}", env=_env_with(redis_url))

    assert result.code == ExitCode.USAGE
    assert "ARGS-JSON is not valid JSON" in result.stderr


async def test_call_invalid_topic_is_usage_error(redis_url: str) -> None:
    result = await run_cli("call", "bad topic", "echo", env=_env_with(redis_url))

    assert result.code == ExitCode.USAGE
    assert "Invalid topic" in result.stderr


async def test_missing_redis_url(topic: str) -> None:
    for command in (["call", topic, "echo"], ["inspect"]):
        result = await run_cli(*command)

        assert result.code == ExitCode.USAGE
        assert "No Redis URL given" in result.stderr
        assert "REDIS_URL" in result.stderr


async def test_help_lists_exit_codes() -> None:
    result = await run_cli("call", "--help")

    assert result.code == 0
    assert "4  timed out" in result.stdout
    assert "SECONDS" in result.stdout


# --- inspect ---


async def _push_task(
    redis_client: aioredis.Redis, topic: str, *, sent_ago_s: float | None, deadline_in_s: float
) -> None:
    now = time.time()
    extensions = {EXTENSION_SENT_AT_MS: to_deadline_ms(now - sent_ago_s)} if sent_ago_s is not None else None
    payload = encode_request(
        new_client_id(None),
        new_request_id(),
        to_deadline_ms(now + deadline_in_s),
        "work",
        {"n": 1},
        True,
        extensions,
    )
    await redis_client.rpush(topic_key(topic), payload)
    await redis_client.expire(topic_key(topic), KEY_EXPIRY_S)


async def test_inspect_reports_queued_tasks(redis_client: aioredis.Redis, redis_url: str) -> None:
    from_python = f"test-cli-{uuid.uuid4().hex}"
    from_node = f"test-cli-{uuid.uuid4().hex}"
    await _push_task(redis_client, from_python, sent_ago_s=30.0, deadline_in_s=60.0)
    await _push_task(redis_client, from_python, sent_ago_s=None, deadline_in_s=60.0)
    await _push_task(redis_client, from_node, sent_ago_s=None, deadline_in_s=45.0)

    result = await run_cli("inspect", from_python, from_node, "--json", env=_env_with(redis_url))

    assert result.code == ExitCode.OK, result.stderr
    python_report, node_report = json.loads(result.stdout)["topics"]
    assert python_report["topic"] == from_python
    assert python_report["queued"] == 2
    assert python_report["oldest"]["method"] == "work"
    assert 29.0 < python_report["oldest"]["age_s"] < 29.0 + CLI_TIMEOUT_S
    assert node_report["queued"] == 1
    assert node_report["oldest"]["age_s"] is None
    assert 45.0 - CLI_TIMEOUT_S < node_report["oldest"]["deadline_in_s"] <= 45.0


async def test_inspect_table_labels_deadline(redis_client: aioredis.Redis, redis_url: str) -> None:
    topic = f"test-cli-{uuid.uuid4().hex}"
    await _push_task(redis_client, topic, sent_ago_s=None, deadline_in_s=3600.0)

    result = await run_cli("inspect", topic, env=_env_with(redis_url))

    assert result.code == ExitCode.OK, result.stderr
    header, row = result.stdout.splitlines()[:2]
    assert header.split() == ["TOPIC", "QUEUED", "LEASED", "OLDEST", "WAITING", "SERVERS"]
    assert row.startswith(topic)
    assert "no send time; deadline in" in row


async def test_inspect_finds_topics_and_servers(
    tasq: Tasq, topic: str, redis_client: aioredis.Redis, redis_url: str
) -> None:
    queued_topic = f"test-cli-{uuid.uuid4().hex}"
    not_a_list = f"test-cli-{uuid.uuid4().hex}"
    not_a_hash = f"test-cli-{uuid.uuid4().hex}"
    await _push_task(redis_client, queued_topic, sent_ago_s=1.0, deadline_in_s=60.0)
    await redis_client.set(topic_key(not_a_list), b"x", ex=KEY_EXPIRY_S)
    await redis_client.set(servers_key(not_a_hash), b"x", ex=KEY_EXPIRY_S)
    await _serve_test_methods(tasq, topic)
    await wait_until(lambda: _has_server(redis_client, topic))

    result = await run_cli("inspect", "--json", env=_env_with(redis_url))

    assert result.code == ExitCode.OK, result.stderr
    reports = {report["topic"]: report for report in json.loads(result.stdout)["topics"]}
    assert reports[queued_topic]["queued"] == 1
    assert not_a_list not in reports
    assert not_a_hash not in reports
    assert not any(name.startswith("client:") for name in reports)
    [server] = reports[topic]["servers"]
    assert server["pid"] == os.getpid()
    assert server["methods"] == ["echo", "fail", "reject_args"]
    assert server["threads"] == 2
    assert server["delivery"] == "at-most-once"


async def test_inspect_table_lists_servers(
    tasq: Tasq, topic: str, redis_client: aioredis.Redis, redis_url: str
) -> None:
    await _serve_test_methods(tasq, topic)
    await wait_until(lambda: _has_server(redis_client, topic))

    result = await run_cli("inspect", topic, env=_env_with(redis_url))

    assert result.code == ExitCode.OK, result.stderr
    topics_table, servers_table = result.stdout.strip().split("\n\n")
    assert topics_table.splitlines()[1].split()[:3] == [topic, "0", "0"]
    server_row = servers_table.splitlines()[1].split()
    assert server_row[0] == topic
    assert server_row[2] == str(os.getpid())
    assert server_row[3] == "echo,fail,reject_args"


def test_progress_only_on_terminal() -> None:
    terminal = _FakeTerminal(is_tty=True)
    pipe = _FakeTerminal(is_tty=False)

    for stream in (terminal, pipe):
        progress = Progress(stream)
        progress.update("Scanning 127.0.0.1:6399: about 1,000 of 5,000 keys, 2 topics found")
        progress.clear()

    assert "about 1,000 of 5,000 keys" in terminal.getvalue()
    assert terminal.getvalue().endswith("\r")
    assert pipe.getvalue() == ""


class _FakeTerminal(io.StringIO):
    def __init__(self, *, is_tty: bool) -> None:
        super().__init__()
        self._is_tty = is_tty

    def isatty(self) -> bool:
        return self._is_tty


async def _has_server(redis_client: aioredis.Redis, topic: str) -> bool:
    return len(await read_servers(redis_client, topic)) == 1


@pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
    reason="needs redis-server and redis-cli (Redis 7.0 or newer) on PATH to start a cluster",
)
async def test_inspect_scans_every_cluster_primary(redis_cluster: LocalRedisCluster) -> None:
    topics = _topics_on_every_primary(redis_cluster)
    async with await create_tasq(redis_cluster.seed_url) as tasq:
        for topic in topics:
            await _push_cluster_task(tasq, topic)

        result = await run_cli("inspect", "--json", "--redis-url", redis_cluster.seed_url)

    assert result.code == ExitCode.OK, result.stderr
    found = {report["topic"]: report["queued"] for report in json.loads(result.stdout)["topics"]}
    assert {topic: found.get(topic) for topic in topics} == dict.fromkeys(topics, 1)


def _topics_on_every_primary(redis_cluster: LocalRedisCluster) -> list[str]:
    """Return one fresh topic per primary; random names hit all three within a few tries."""
    by_primary: dict[int, str] = {}
    for _ in range(1000):
        topic = f"test-cli-{uuid.uuid4().hex}"
        by_primary.setdefault(redis_cluster.primary_for_key(topic_key(topic)).port, topic)
        if len(by_primary) == 3:
            return list(by_primary.values())
    raise AssertionError(f"1000 random topics hashed to only {len(by_primary)} primaries")


async def _push_cluster_task(tasq: Tasq, topic: str) -> None:
    payload = encode_request(
        new_client_id(None), new_request_id(), to_deadline_ms(time.time() + 60), "w", 1, True
    )
    await tasq.redis.execute_command("RPUSH", topic_key(topic), payload)
    await tasq.redis.execute_command("EXPIRE", topic_key(topic), KEY_EXPIRY_S)


# --- worker ---


@asynccontextmanager
async def worker_process(env: dict[str, str], app: str = "tests._cli_worker_app:app") -> AsyncIterator[Any]:
    """Start `tasq worker APP`; kill it on exit if it still runs."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tasq_fastapi.cli",
        "worker",
        app,
        cwd=REPO_ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _read_until(process: asyncio.subprocess.Process, expected: str) -> str:
    """Read stderr lines until one contains `expected`; return everything read."""
    assert process.stderr is not None
    seen: list[str] = []
    async with asyncio.timeout(WAIT_S * 2):
        while True:
            line = (await process.stderr.readline()).decode()
            if not line:
                raise AssertionError(f"Worker exited before logging {expected!r}:\n{''.join(seen)}")
            seen.append(line)
            if expected in line:
                return "".join(seen)


async def test_worker_serves_and_drains_on_sigterm(
    tasq: Tasq, topic: str, redis_client: aioredis.Redis, redis_url: str
) -> None:
    started_key = f"test-cli-started-{uuid.uuid4().hex}"
    env = _env_with(redis_url, TASQ_CLI_TEST_TOPIC=topic, TASQ_CLI_TEST_STARTED_KEY=started_key)

    async with worker_process(env) as process:
        startup_log = await _read_until(process, "serving topics")
        quick = await tasq.request(topic, "hold", {"id": "quick", "hold_s": 0}, timeout=WAIT_S)
        slow = asyncio.create_task(tasq.request(topic, "hold", {"id": "slow", "hold_s": 0.5}, timeout=WAIT_S))
        await wait_until(lambda: _list_contains(redis_client, started_key, b"slow"))
        process.send_signal(signal.SIGTERM)

        assert await slow == "slow"
        shutdown_log = await _read_until(process, "Worker stopped")
        code = await asyncio.wait_for(process.wait(), WAIT_S)

    assert quick == "quick"
    assert topic in startup_log
    assert "SIGTERM" in shutdown_log
    assert code == ExitCode.OK


async def _list_contains(redis_client: aioredis.Redis, key: str, item: bytes) -> bool:
    return item in await redis_client.lrange(key, 0, -1)


async def test_worker_startup_failure_exit_code(topic: str) -> None:
    env = _env_with(f"redis://127.0.0.1:{free_port()}/0", TASQ_CLI_TEST_TOPIC=topic)

    result = await run_cli("worker", "tests._cli_worker_app:app", env=env)

    assert result.code == ExitCode.CONNECTION
    assert "could not start" in result.stderr


@pytest.mark.parametrize(
    ("app", "expected_text"),
    [
        ("tests._cli_worker_app", "write it as module:attribute"),
        ("tests.no_such_module:app", "Cannot import module"),
        ("tests._cli_worker_app:missing", "has no attribute"),
        ("tests._cli_worker_app:router", "not a FastAPI app"),
        ("fastapi.applications:FastAPI", "not a FastAPI app"),
    ],
)
async def test_worker_bad_app_is_usage_error(app: str, expected_text: str) -> None:
    result = await run_cli("worker", app)

    assert result.code == ExitCode.USAGE
    assert expected_text in result.stderr


async def test_call_json_usage_error_is_json(topic: str, redis_url: str) -> None:
    result = await run_cli("call", topic, "echo", "{not json", "--json", env=_env_with(redis_url))

    assert result.code == ExitCode.USAGE
    error = json.loads(result.stderr)["error"]
    assert error["type"] == "usage"
    assert error["exit_status"] == ExitCode.USAGE
    assert "not valid JSON" in error["message"]
