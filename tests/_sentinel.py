"""A Sentinel-managed Redis primary with one replica, started by tests on loopback ports.

:func:`running_sentinels` starts a primary, a replica (``--replicaof``) and three
sentinels (``redis-server CONF --sentinel``) that monitor the primary under the
service name ``tasq`` with a quorum of 2, ``down-after-milliseconds`` 1000 and
``failover-timeout`` 3000. It returns once every sentinel has discovered the replica and the
two other sentinels, because a sentinel that has discovered neither cannot take part in a
failover. The block's exit stops every process and removes the temporary directory.

The session fixture ``redis_sentinel_url`` yields the ``redis+sentinel://`` URL of a
shared set; a module uses it by importing :func:`redis_sentinel_url_fixture` under a
redundant alias. Tests that kill the primary start their own set with
:func:`running_sentinels`, so that the shared one keeps its replica.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis

from tests._redis_servers import free_port, log_tails, server_directory

__all__ = [
    "SERVICE_NAME",
    "LocalSentinels",
    "redis_sentinel_url_fixture",
    "running_sentinels",
]

SERVICE_NAME = "tasq"
"""The name under which the sentinels monitor the primary."""

_SENTINELS = 3
_QUORUM = 2

# Limits for waits that normally end within seconds. Only a broken set-up reaches them.
_STARTUP_TIMEOUT_S = 20.0
# A sentinel whose timer stalled for over 2 s enters TILT mode and takes no action for
# 30 s, so the failover limit leaves room for one such episode on a busy machine.
_FAILOVER_TIMEOUT_S = 45.0
_POLL_S = 0.05


def _poll_until(predicate: Callable[[], bool], *, timeout_s: float, description: str) -> None:
    """Return once ``predicate()`` is true; after ``timeout_s``, raise AssertionError."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout_s} s waiting until {description}.")
        time.sleep(_POLL_S)


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=2.0, socket_connect_timeout=1.0)


def _answers_ping(port: int) -> bool:
    try:
        with _client(port) as client:
            return bool(client.ping())
    except redis.ConnectionError:
        return False


class LocalSentinels:
    """A primary, a replica and three sentinels on loopback ports.

    Construct it, then :meth:`start`; :meth:`cleanup` stops every process and
    removes the temporary directory. Methods that wait raise AssertionError when the
    processes do not reach the expected state within their limit.
    """

    def __init__(self) -> None:
        self._directory = Path(server_directory("tasq-test-sentinel-"))
        self.primary_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(_SENTINELS)]
        self._processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """``redis+sentinel://`` URL of the three sentinels, service ``tasq``, database 0."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE_NAME}/0"

    def pid(self, port: int) -> int:
        """Return the process id of the server on ``port``; raises KeyError when it is stopped."""
        return self._processes[port].pid

    def start(self) -> None:
        """Start the servers and sentinels and wait until the sentinels can fail over."""
        self._start_server(self.primary_port)
        self._start_server(self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port))
        for port in self.sentinel_ports:
            self._start_sentinel(port)
        for port in [self.primary_port, self.replica_port, *self.sentinel_ports]:
            _poll_until(
                partial(_answers_ping, port), timeout_s=_STARTUP_TIMEOUT_S, description=f"port {port} is up"
            )

        _poll_until(self._replica_synced, timeout_s=_STARTUP_TIMEOUT_S, description="the replica has synced")
        # Sentinels find the replica through the primary's INFO and each other through
        # hello messages on the primary, which they publish every 2 s.
        _poll_until(
            self._sentinels_know_all,
            timeout_s=_STARTUP_TIMEOUT_S,
            description="the sentinels know each other",
        )

    def cleanup(self) -> None:
        """Stop every process and remove the temporary directory."""
        for port in list(self._processes):
            self._stop(port)
        shutil.rmtree(self._directory, ignore_errors=True)

    def primary_reported(self) -> list[int]:
        """Return the primary's port as each reachable sentinel reports it."""
        ports: list[int] = []
        for port in self.sentinel_ports:
            with contextlib.suppress(redis.RedisError), _client(port) as client:
                address = client.sentinel_get_master_addr_by_name(SERVICE_NAME)
                if address is not None:
                    ports.append(int(address[1]))
        return ports

    def kill_primary(self) -> tuple[int, float]:
        """SIGKILL the current primary and reap it.

        Returns the port it listened on and the ``time.monotonic()`` of the kill.
        """
        reported = self.primary_reported()
        port = reported[0] if reported else self.primary_port
        process = self._processes.pop(port)
        killed_at_s = time.monotonic()
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        return port, killed_at_s

    def wait_until_failed_over(self, killed_port: int) -> int:
        """Wait until every sentinel reports a new primary whose own role is master; return its port."""

        def promoted() -> bool:
            reported = self.primary_reported()
            if len(reported) != _SENTINELS or len(set(reported)) != 1 or reported[0] == killed_port:
                return False
            with contextlib.suppress(redis.RedisError), _client(reported[0]) as client:
                return bool(client.execute_command("ROLE")[0] == b"master")
            return False

        try:
            _poll_until(
                promoted,
                timeout_s=_FAILOVER_TIMEOUT_S,
                description=f"the sentinels promote a replica of {killed_port}",
            )
        except AssertionError as error:
            logs = {
                f"sentinel {port}": str(self._directory / f"sentinel-{port}.log")
                for port in self.sentinel_ports
            }
            raise AssertionError(f"{error}\n{log_tails(logs)}") from None
        return self.primary_reported()[0]

    def _replica_synced(self) -> bool:
        with _client(self.replica_port) as client:
            info: dict[str, Any] = client.info("replication")
        return info.get("master_link_status") == "up"

    def _sentinels_know_all(self) -> bool:
        for port in self.sentinel_ports:
            with _client(port) as client:
                if len(client.sentinel_sentinels(SERVICE_NAME)) != _SENTINELS - 1:
                    return False
                if len(client.sentinel_slaves(SERVICE_NAME)) != 1:
                    return False
        return True

    def _start_server(self, port: int, *extra_args: str) -> None:
        command = [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            # The replica syncs at once instead of after the default 5 s wait for more replicas.
            "--repl-diskless-sync-delay",
            "0",
            "--dir",
            str(self._directory),
            "--logfile",
            str(self._directory / f"redis-{port}.log"),
            *extra_args,
        ]
        self._processes[port] = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _start_sentinel(self, port: int) -> None:
        # Sentinel rewrites its configuration file while it runs, so each gets its own.
        config = self._directory / f"sentinel-{port}.conf"
        config.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            f"dir {self._directory}\n"
            f"logfile {self._directory / f'sentinel-{port}.log'}\n"
            "sentinel resolve-hostnames no\n"
            f"sentinel monitor {SERVICE_NAME} 127.0.0.1 {self.primary_port} {_QUORUM}\n"
            f"sentinel down-after-milliseconds {SERVICE_NAME} 1000\n"
            f"sentinel failover-timeout {SERVICE_NAME} 3000\n"
        )
        self._processes[port] = subprocess.Popen(
            ["redis-server", str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _stop(self, port: int) -> None:
        process = self._processes.pop(port)
        process.terminate()
        try:
            process.wait(_STARTUP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running_sentinels() -> Iterator[LocalSentinels]:
    """Start a primary, a replica and three sentinels for the duration of the block."""
    sentinels = LocalSentinels()
    try:
        sentinels.start()
        yield sentinels
    finally:
        sentinels.cleanup()


@pytest.fixture(scope="session", name="redis_sentinel_url")
def redis_sentinel_url_fixture() -> Iterator[str]:
    """The ``redis+sentinel://`` URL of a set shared by the session's tests; no test kills it."""
    with running_sentinels() as sentinels:
        yield sentinels.url
