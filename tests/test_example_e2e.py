"""The example run as real uvicorn processes and called over HTTP on loopback."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests._redis_servers import free_port, running_redis

pytestmark = pytest.mark.timeout(120)

REPO_ROOT = Path(__file__).resolve().parent.parent

# uvicorn (0.55 here) re-raises SIGTERM after a graceful shutdown, so a clean
# stop also exits with -SIGTERM. The shutdown log line separates it from a kill.
CLEAN_EXIT_CODES = (0, -signal.SIGTERM)
SHUTDOWN_COMPLETE = "Application shutdown complete."

# Seconds a process may take to start serving or to exit after SIGTERM.
STARTUP_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 20.0


def _environment(redis_url: str | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def _process(arguments: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run `python arguments...` from the repository root, logging to `log_path`; SIGTERM it on exit."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, *arguments],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(EXIT_TIMEOUT_S)
    return process.returncode


def _uvicorn(app: str, port: int) -> list[str]:
    return ["-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]


def _wait_until_healthy(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{base_url} exited with code {process.returncode}:\n{log_path.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/tasq/health", timeout=2.0).status_code == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"{base_url} was not healthy within {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()}")


def test_example_two_processes_over_http(tmp_path: Path) -> None:
    worker_port = free_port()
    gateway_port = free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    worker_log = tmp_path / "worker.log"
    gateway_log = tmp_path / "gateway.log"

    with running_redis() as redis_server:
        env = _environment(redis_server.url)
        with (
            _process(_uvicorn("example_app.worker:app", worker_port), env, worker_log) as worker,
            _process(_uvicorn("example_app.gateway:app", gateway_port), env, gateway_log) as gateway,
        ):
            _wait_until_healthy(f"http://127.0.0.1:{worker_port}", worker, worker_log)
            _wait_until_healthy(gateway_url, gateway, gateway_log)

            with httpx.Client(base_url=gateway_url, timeout=10.0) as client:
                ada = client.get("/users/1")
                missing = client.get("/users/999")
                invalid = client.post("/users", json={"name": "", "email": "not-an-email"})
                created = client.post("/users", json={"name": "Grace Hopper", "email": "grace@example.com"})
                fetched = client.get(f"/users/{created.json()['id']}")
                page = client.get("/users", params={"limit": 2, "offset": 1})
                bad_page = client.get("/users", params={"limit": 0})

            worker_exit = _stop(worker)
            gateway_exit = _stop(gateway)

    assert ada.status_code == 200
    assert ada.json()["name"] == "Ada Lovelace"
    assert ada.json()["created_at"].endswith("Z")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "User 999 does not exist."}
    assert invalid.status_code == 422
    assert [error["loc"] for error in invalid.json()["detail"]] == [
        ["new_user", "name"],
        ["new_user", "email"],
    ]
    assert created.status_code == 201
    assert fetched.json() == created.json()
    assert [user["name"] for user in page.json()] == ["Alan Turing", "Grace Hopper"]
    assert bad_page.status_code == 422
    assert worker_exit in CLEAN_EXIT_CODES
    assert gateway_exit in CLEAN_EXIT_CODES
    assert "Tasq server stopped for topic=users" in worker_log.read_text()
    assert SHUTDOWN_COMPLETE in worker_log.read_text()
    assert SHUTDOWN_COMPLETE in gateway_log.read_text()


def test_example_one_process_embedded_redis(tmp_path: Path) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "example.log"

    with _process(["-m", "example_app", "--port", str(port)], _environment(None), log_path) as app:
        _wait_until_healthy(base_url, app, log_path)
        response = httpx.get(f"{base_url}/users/1", timeout=10.0)
        exit_code = _stop(app)

    log = log_path.read_text()
    match = re.search(r"Embedded Redis started at redis://127\.0\.0\.1:\d+/0 \(pid (\d+)\)", log)
    assert match is not None, log
    embedded_pid = int(match.group(1))

    assert response.status_code == 200
    assert response.json()["email"] == "ada@example.com"
    assert exit_code in CLEAN_EXIT_CODES
    assert SHUTDOWN_COMPLETE in log
    assert f"Embedded Redis stopped (pid {embedded_pid}, exit code 0)" in log
    with pytest.raises(ProcessLookupError):
        os.kill(embedded_pid, 0)


def test_example_gateway_without_redis_url_exits(tmp_path: Path) -> None:
    log_path = tmp_path / "gateway.log"

    with _process(_uvicorn("example_app.gateway:app", free_port()), _environment(None), log_path) as gateway:
        exit_code = gateway.wait(STARTUP_TIMEOUT_S)

    assert exit_code != 0
    assert "REDIS_URL is not set. The gateway and the worker must share one Redis" in log_path.read_text()
