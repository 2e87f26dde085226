"""A Redis Cluster of three primaries and three replicas, started by tests on loopback ports.

:func:`running_cluster` starts six ``redis-server`` processes from PATH in cluster
mode, joins them with ``redis-cli --cluster create ... --cluster-replicas 1`` and
returns once every node reports ``cluster_state:ok`` and all 16,384 slots covered.
Each node keeps its ``nodes-PORT.conf`` in a temporary directory, so a killed node
restarted with :meth:`LocalRedisCluster.restart` rejoins as a replica of the node
that took over its slots. The block's exit stops every process and removes the
directory.

:class:`RequestTraffic` keeps requests flowing while a failover test kills a
primary, and records how each one ended.

The session fixture ``redis_cluster`` shares one cluster among the tests of a
session. A module uses it by importing :func:`redis_cluster_fixture`; the redundant
alias (``import redis_cluster_fixture as redis_cluster_fixture``) marks the import
as used for linters.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from tasq_fastapi import Tasq, TasqError
from tests._redis_servers import log_tails, server_directory

__all__ = [
    "DEADLINE_SLACK_S",
    "FAILOVER_REQUEST_TIMEOUT_S",
    "RECOVERED_STREAK",
    "RECOVERY_LIMIT_S",
    "TOTAL_SLOTS",
    "ClusterNode",
    "LocalRedisCluster",
    "RequestOutcome",
    "RequestTraffic",
    "redis_cluster_fixture",
    "running_cluster",
]

TOTAL_SLOTS = 16384

# Requests during a failover use this timeout, in seconds.
FAILOVER_REQUEST_TIMEOUT_S = 2.0

# A request must end at most this long after its timeout; more means the client missed its deadline.
DEADLINE_SLACK_S = 0.5

# Limit on the time from killing a primary until requests succeed again (measured: under 4.5 s
# for a cluster and for Sentinel).
RECOVERY_LIMIT_S = 30.0

# Consecutive successes after a failover that show the traffic has recovered.
RECOVERED_STREAK = 20

# A Redis Cluster node also listens on its port + 10000 for the cluster bus.
_BUS_PORT_OFFSET = 10000

_PRIMARIES = 3
_REPLICAS_PER_PRIMARY = 1

# Limits for waits that normally end within seconds. Only a broken set-up reaches them.
_STARTUP_TIMEOUT_S = 20.0
_FAILOVER_TIMEOUT_S = 20.0
_POLL_S = 0.05


def _free_cluster_port() -> int:
    """Return a loopback port that is free, and whose cluster bus port (+10000) is free too."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + _BUS_PORT_OFFSET > 65535:
            continue
        with socket.socket() as bus, contextlib.suppress(OSError):
            bus.bind(("127.0.0.1", port + _BUS_PORT_OFFSET))
            return port
    raise RuntimeError("Found no free pair of loopback ports (port and port + 10000) in 100 tries.")


def _poll_until(predicate: Callable[[], bool], *, timeout_s: float, description: str) -> None:
    """Return once ``predicate()`` is true; after ``timeout_s``, raise AssertionError."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout_s} s waiting until {description}.")
        time.sleep(_POLL_S)


@dataclass(eq=False)
class ClusterNode:
    """One ``redis-server`` process of the cluster; ``process`` is None while it is stopped."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """The node's ``host:port``."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The process id; raises RuntimeError when the node is stopped."""
        if self.process is None:
            raise RuntimeError(f"Cluster node {self.address} is not running.")
        return self.process.pid

    @property
    def is_running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.process is not None and self.process.poll() is None

    def client(self) -> redis.Redis:
        """Return a plain (non-cluster) client of this node alone; the caller closes it."""
        return redis.Redis(port=self.port, socket_timeout=2.0, socket_connect_timeout=1.0)


class LocalRedisCluster:
    """Six ``redis-server`` processes on loopback ports, joined into one cluster.

    Construct it, then :meth:`start`; :meth:`cleanup` stops the processes and removes
    the temporary directory. Methods that wait raise AssertionError when the cluster
    does not reach the expected state within their limit.
    """

    def __init__(self) -> None:
        self._directory = server_directory("tasq-test-cluster-")
        self.nodes = [
            ClusterNode(_free_cluster_port()) for _ in range(_PRIMARIES * (1 + _REPLICAS_PER_PRIMARY))
        ]

    @property
    def seed_url(self) -> str:
        """``redis+cluster://`` URL naming the first three nodes as seeds."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes[:_PRIMARIES])

    @property
    def running_nodes(self) -> list[ClusterNode]:
        """The nodes whose process runs now."""
        return [node for node in self.nodes if node.is_running]

    def start(self) -> None:
        """Start every node, create the cluster and wait until it serves all slots."""
        for node in self.nodes:
            self._start_process(node)
        for node in self.nodes:
            self._wait_until_pingable(node)

        redis_cli = shutil.which("redis-cli")
        if redis_cli is None:
            raise RuntimeError("redis-cli is not on PATH; it is needed to create the test cluster.")
        subprocess.run(
            [
                redis_cli,
                "--cluster",
                "create",
                *(node.address for node in self.nodes),
                "--cluster-replicas",
                str(_REPLICAS_PER_PRIMARY),
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=_STARTUP_TIMEOUT_S,
        )
        self.wait_until_healthy(timeout_s=_STARTUP_TIMEOUT_S)
        # A replica that has never synced with its primary is not eligible for
        # promotion, so a failover test needs every replica's link up first.
        try:
            _poll_until(
                lambda: sum(self.is_synced_replica(node) for node in self.nodes) == _PRIMARIES,
                timeout_s=_STARTUP_TIMEOUT_S,
                description=f"{_PRIMARIES} replicas have synced with their primaries",
            )
        except AssertionError as error:
            logs = {f"node {node.port}": self._log_path(node) for node in self.nodes}
            raise AssertionError(f"{error}\n{log_tails(logs, lines=15)}") from None

    def cleanup(self) -> None:
        """Stop every node and remove the temporary directory."""
        for node in self.nodes:
            self._stop_process(node)
        shutil.rmtree(self._directory, ignore_errors=True)

    def is_healthy(self) -> bool:
        """Whether every running node reports ``cluster_state:ok`` with all slots served."""
        for node in self.running_nodes:
            try:
                with node.client() as client:
                    info = client.cluster("INFO")
            except redis.RedisError:
                return False
            if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_ok", 0)) != TOTAL_SLOTS:
                return False
        return True

    def wait_until_healthy(self, *, timeout_s: float = _FAILOVER_TIMEOUT_S) -> None:
        """Wait until :meth:`is_healthy`."""
        _poll_until(self.is_healthy, timeout_s=timeout_s, description="every node reports cluster_state:ok")

    def keyslot(self, key: str) -> int:
        """Return the slot of ``key`` as the cluster computes it (``CLUSTER KEYSLOT``)."""
        with self.running_nodes[0].client() as client:
            return int(client.execute_command("CLUSTER KEYSLOT", key))

    def primary_for_slot(self, slot: int, *, queried: ClusterNode | None = None) -> ClusterNode:
        """Return the node that serves ``slot`` according to ``queried`` (default: any running node)."""
        with (queried or self.running_nodes[0]).client() as client:
            ranges = client.execute_command("CLUSTER SLOTS")
        for start, end, primary, *_replicas in ranges:
            if int(start) <= slot <= int(end):
                return self._node_at(int(primary[1]))
        raise AssertionError(f"No node serves slot {slot}.")

    def primary_for_key(self, key: str) -> ClusterNode:
        """Return the node that serves the slot of ``key``."""
        return self.primary_for_slot(self.keyslot(key))

    def subscriber_nodes(self, channel: str) -> list[ClusterNode]:
        """Return the running nodes on which some client subscribes to ``channel``.

        Classic pub/sub subscriptions are local to the node a client connected to,
        so ``PUBSUB CHANNELS`` shows where a client's pub/sub connection is.
        """
        found: list[ClusterNode] = []
        for node in self.running_nodes:
            with node.client() as client:
                if channel.encode() in client.execute_command("PUBSUB CHANNELS", channel):
                    found.append(node)
        return found

    def role(self, node: ClusterNode) -> str:
        """Return ``master`` or ``slave`` as the node itself reports it (``ROLE``)."""
        with node.client() as client:
            reply = client.execute_command("ROLE")
        role = reply[0]
        return role.decode() if isinstance(role, bytes) else str(role)

    def is_synced_replica(self, node: ClusterNode) -> bool:
        """Whether ``node`` is a replica whose link to its primary is up."""
        with node.client() as client:
            info: dict[str, Any] = client.info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL the node's process and reap it; its slots stay unserved until a failover."""
        process = node.process
        if process is None:
            return
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        node.process = None

    def wait_until_failed_over(self, killed: ClusterNode, slot: int) -> ClusterNode:
        """Wait until every running node names a live primary for ``slot`` and the cluster is ok.

        ``killed`` is the primary that served ``slot`` before it was killed. Returns
        the promoted node.
        """

        def promoted_everywhere() -> bool:
            try:
                owners = {self.primary_for_slot(slot, queried=node) for node in self.running_nodes}
            except redis.RedisError:
                return False
            return len(owners) == 1 and killed not in owners

        _poll_until(
            promoted_everywhere,
            timeout_s=_FAILOVER_TIMEOUT_S,
            description=f"a replica of {killed.address} serves slot {slot} on every node",
        )
        self.wait_until_healthy()
        return self.primary_for_slot(slot)

    def restart(self, node: ClusterNode) -> None:
        """Start a stopped node again and wait until it has rejoined as a replica."""
        self._start_process(node)
        self._wait_until_pingable(node)
        _poll_until(
            lambda: self.is_synced_replica(node),
            timeout_s=_FAILOVER_TIMEOUT_S,
            description=f"{node.address} rejoins as a synced replica",
        )
        self.wait_until_healthy()

    def _node_at(self, port: int) -> ClusterNode:
        for node in self.nodes:
            if node.port == port:
                return node
        raise AssertionError(f"The cluster names port {port}, which is none of its nodes.")

    def _start_process(self, node: ClusterNode) -> None:
        command = [
            "redis-server",
            "--port",
            str(node.port),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            os.path.join(self._directory, f"nodes-{node.port}.conf"),
            "--cluster-node-timeout",
            "1000",
            "--save",
            "",
            "--appendonly",
            "no",
            # Replicas sync at once instead of after the default 5 s wait for more replicas.
            "--repl-diskless-sync-delay",
            "0",
            "--dir",
            self._directory,
            # Replicas save the primary's snapshot before loading it; in a shared
            # directory each needs a file of its own.
            "--dbfilename",
            f"dump-{node.port}.rdb",
            "--logfile",
            self._log_path(node),
        ]
        node.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _log_path(self, node: ClusterNode) -> str:
        return os.path.join(self._directory, f"redis-{node.port}.log")

    def _stop_process(self, node: ClusterNode) -> None:
        process = node.process
        if process is None:
            return
        process.terminate()
        try:
            process.wait(_STARTUP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        node.process = None

    def _wait_until_pingable(self, node: ClusterNode) -> None:
        def answers_ping() -> bool:
            try:
                with node.client() as client:
                    return bool(client.ping())
            except redis.ConnectionError:
                return False

        _poll_until(answers_ping, timeout_s=_STARTUP_TIMEOUT_S, description=f"{node.address} answers PING")


@contextlib.contextmanager
def running_cluster() -> Iterator[LocalRedisCluster]:
    """Start a cluster for the duration of the block, then stop it and remove its files."""
    cluster = LocalRedisCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture(scope="session", name="redis_cluster")
def redis_cluster_fixture() -> Iterator[LocalRedisCluster]:
    """A cluster shared by the session's tests; a test that kills a node restarts it."""
    with running_cluster() as cluster:
        yield cluster


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """One request sent by :class:`RequestTraffic`.

    ``error`` is None for a correct result, the exception's class name for a Tasq
    error, ``"wrong result"``, ``"hang"`` when no outcome came within the hang limit,
    or ``"unexpected <class>"`` for an exception that is not a Tasq error.
    """

    started_s: float
    elapsed_s: float
    error: str | None


class RequestTraffic:
    """Sends ``echo`` requests from ``concurrency`` loops until stopped, recording every outcome.

    Used by the failover tests of the cluster and Sentinel set-ups. Each request has
    a timeout of ``timeout_s``; one still open ``hang_margin_s`` seconds after that
    is abandoned and recorded as ``"hang"``. After an error a loop pauses
    ``error_pause_s``, so that a Redis that refuses connections is not hammered.
    Times are ``time.monotonic()`` seconds. At most ``max_requests`` are sent.
    """

    def __init__(
        self,
        tasq: Tasq,
        topic: str,
        *,
        timeout_s: float = 2.0,
        concurrency: int = 4,
        hang_margin_s: float = 3.0,
        error_pause_s: float = 0.05,
        max_requests: int = 50_000,
    ) -> None:
        self.timeout_s = timeout_s
        self.outcomes: list[RequestOutcome] = []
        self._tasq = tasq
        self._topic = topic
        self._concurrency = concurrency
        self._hang_margin_s = hang_margin_s
        self._error_pause_s = error_pause_s
        self._max_requests = max_requests
        self._stopping = False
        self._loops: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the request loops."""
        self._loops = [
            asyncio.create_task(self._send_loop(index), name=f"traffic-{index}")
            for index in range(self._concurrency)
        ]

    async def stop(self) -> None:
        """Let every loop finish its current request, then return."""
        self._stopping = True
        await asyncio.gather(*self._loops)

    def successes_started_after(self, moment_s: float) -> list[RequestOutcome]:
        """Return the successful requests started after ``moment_s``, oldest first."""
        return sorted(
            (outcome for outcome in self.outcomes if outcome.error is None and outcome.started_s > moment_s),
            key=lambda outcome: outcome.started_s,
        )

    def first_success_finished_after(self, moment_s: float) -> float:
        """Return when the first successful request started after ``moment_s`` finished."""
        return min(o.started_s + o.elapsed_s for o in self.successes_started_after(moment_s))

    def recovered_at(self, moment_s: float) -> float:
        """Return when requests started succeeding for good after ``moment_s``.

        That is the start of the first successful request started after the last
        failed request; ``moment_s`` itself when no request started after it failed.
        """
        failures = [o.started_s for o in self.outcomes if o.error is not None and o.started_s > moment_s]
        last_failure_s = max(failures, default=moment_s)
        successes = self.successes_started_after(last_failure_s)
        if not successes:
            raise AssertionError("No request succeeded after the last failed one.")
        return successes[0].started_s if failures else moment_s

    def error_counts(self) -> dict[str, int]:
        """Return the number of requests per outcome, ``"ok"`` for successes."""
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            name = outcome.error or "ok"
            counts[name] = counts.get(name, 0) + 1
        return counts

    async def _send_loop(self, index: int) -> None:
        sequence = 0
        while not self._stopping and len(self.outcomes) < self._max_requests:
            sequence += 1
            outcome = await self._send(f"{index}-{sequence}")
            self.outcomes.append(outcome)
            if outcome.error is not None:
                await asyncio.sleep(self._error_pause_s)

    async def _send(self, value: str) -> RequestOutcome:
        started_s = time.monotonic()
        guard = asyncio.timeout(self.timeout_s + self._hang_margin_s)
        error: str | None
        try:
            async with guard:
                result = await self._tasq.request(self._topic, "echo", value, timeout=self.timeout_s)
            error = None if result == value else "wrong result"
        except TasqError as exc:
            error = type(exc).__name__
        except TimeoutError:
            if not guard.expired():
                raise
            error = "hang"
        except Exception as exc:
            error = f"unexpected {type(exc).__name__}"
        return RequestOutcome(started_s, time.monotonic() - started_s, error)
