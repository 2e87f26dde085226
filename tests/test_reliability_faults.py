"""Faults under a running client and server: Redis restarts, silent drops, dead and stopped
workers, cancelled callers, saturation and timeouts by the hundred thousand.

Every test runs real Redis servers and, where a process boundary matters, real worker
processes (:mod:`tests._processes`). Deadlines are checked against ``DEADLINE_MARGIN_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tasq_fastapi import (
    Tasq,
    TasqConnectionError,
    TasqRequestTimeoutError,
    create_tasq,
)
from tasq_fastapi._client import DEFAULT_HEALTH_CHECK_INTERVAL_S
from tasq_fastapi._protocol import client_channel, topic_key
from tasq_fastapi._redis import execute
from tests._processes import WorkerProcess
from tests._redis_servers import RedisProcess
from tests._waiting import WAIT_S, wait_until

# A request must end no later than its deadline plus this margin, in seconds. The
# deadline is an asyncio timer, so the margin only covers event-loop latency on a
# loaded machine (a worker process starting, a Redis restart in a thread), which
# stays far below half a second.
DEADLINE_MARGIN_S = 0.5

# A new request must succeed within this time of Redis accepting connections again.
RECOVERY_LIMIT_S = 2.0

# Quiet seconds before a Tasq checks its pub/sub connection. Tests use a short
# interval so that a silent drop is noticed in about a second rather than three
# default intervals.
HEALTH_CHECK_INTERVAL_S = 0.5

# Per-command socket timeout of the Redis client in the silent-drop tests, in seconds:
# the bound on noticing a hung LPOP, EVALSHA or PUBLISH (redis-py 8 defaults to 5 s).
SOCKET_TIMEOUT_S = 1.0

# A silent drop must be noticed and service restored through a new connection within
# this time: the socket timeout or three health-check intervals, plus reconnects.
FREEZE_RECOVERY_LIMIT_S = 5.0

# The same bound for a Tasq created from a URL with default options. redis-py 8's
# default socket timeout is 5 s. The pub/sub connection is replaced at the first
# health check after two silent intervals. This test takes about two default intervals.
DEFAULT_FREEZE_RECOVERY_LIMIT_S = 3 * DEFAULT_HEALTH_CHECK_INTERVAL_S + RECOVERY_LIMIT_S

# Size of the many-workers test.
MANY_WORKERS = 4
MANY_WORKERS_REQUESTS = 2_000

# Size of the leak test: requests that time out with no server, sent in batches.
LEAK_REQUESTS = 100_000
LEAK_BATCH = 5_000
LEAK_TIMEOUT_S = 0.05


def _new_topic(label: str) -> str:
    return f"test-{label}-{uuid.uuid4().hex}"


async def echo(args: Any) -> Any:
    return args


class Outcome:
    """The result or error of one request and how long it took, in seconds."""

    def __init__(self, value: Any, error: BaseException | None, elapsed_s: float) -> None:
        self.value = value
        self.error = error
        self.elapsed_s = elapsed_s


async def timed(call: Awaitable[Any]) -> Outcome:
    """Await ``call`` and return its outcome instead of raising."""
    started = time.monotonic()
    try:
        value = await call
    except Exception as exc:
        return Outcome(None, exc, time.monotonic() - started)
    return Outcome(value, None, time.monotonic() - started)


async def request_until_ok(tasq: Tasq, topic: str, *, attempt_timeout_s: float, limit_s: float) -> float:
    """Send ``echo`` requests until one succeeds and return how many seconds that took.

    Fails the test after ``limit_s`` seconds. Each attempt gets ``attempt_timeout_s``,
    so a request whose reply was lost during a reconnect is retried.
    """
    started = time.monotonic()
    while True:
        try:
            if await tasq.request(topic, "echo", "probe", timeout=attempt_timeout_s) == "probe":
                return time.monotonic() - started
        except (TasqRequestTimeoutError, TasqConnectionError):
            pass
        if time.monotonic() - started > limit_s:
            raise AssertionError(f"No request on topic {topic!r} succeeded within {limit_s} s.")


async def subscriber_count(redis_client: aioredis.Redis, channel: str) -> int:
    reply = await execute(redis_client, "PUBSUB", "NUMSUB", channel)
    return int(reply[1])


class RecordingObserver:
    """A TasqObserver that records drops and finished tasks."""

    def __init__(self) -> None:
        self.dropped: list[tuple[str, str]] = []
        self.finished: list[tuple[str, str, str]] = []

    def request_finished(self, topic: str, method: str, outcome: str, duration_s: float) -> None:
        pass

    def task_started(self, topic: str, method: str) -> None:
        pass

    def task_finished(self, topic: str, method: str, outcome: str, duration_s: float) -> None:
        self.finished.append((topic, method, outcome))

    def task_dropped(self, topic: str, reason: str) -> None:
        self.dropped.append((topic, reason))


class _Link:
    """One proxied connection: the client socket, the Redis socket and whether bytes flow."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter, flowing: bool) -> None:
        self.client = client
        self.upstream = upstream
        self.flowing = asyncio.Event()
        if flowing:
            self.flowing.set()

    def close(self) -> None:
        self.client.close()
        self.upstream.close()


class FreezableProxy:
    """A TCP proxy on 127.0.0.1 in front of one Redis port.

    ``freeze`` stops forwarding in both directions on every connection, open or new,
    without closing a socket: to both ends the peer simply goes silent, as when a
    network path drops packets. ``thaw`` resumes forwarding. ``reroute`` lets new
    connections flow while the frozen ones stay frozen, as when traffic moves to a
    new path. ``sever`` closes every connection and makes new ones fail until
    ``restore``, as when Redis goes away for this side only.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.connections_made = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self._new_links_flow = True
        self._rejecting_connections = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def freeze(self) -> None:
        self._new_links_flow = False
        for link in self._links:
            link.flowing.clear()

    def thaw(self) -> None:
        self._new_links_flow = True
        for link in self._links:
            link.flowing.set()

    def reroute(self) -> None:
        self._new_links_flow = True

    def sever(self) -> None:
        self._rejecting_connections = True
        for link in self._links:
            link.close()
        self._links.clear()

    def restore(self) -> None:
        self._rejecting_connections = False

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self._links:
            link.close()
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._rejecting_connections:
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self.connections_made += 1
        link = _Link(writer, upstream_writer, self._new_links_flow)
        self._links.add(link)
        for source, target in ((reader, upstream_writer), (upstream_reader, writer)):
            pump = asyncio.create_task(self._pump(link, source, target))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(self, link: _Link, source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        try:
            while True:
                await link.flowing.wait()
                data = await source.read(65536)
                if not data:
                    break
                # Bytes read just before a freeze are held back too.
                await link.flowing.wait()
                target.write(data)
                await target.drain()
        except OSError:
            pass
        finally:
            self._links.discard(link)
            link.close()


@contextlib.asynccontextmanager
async def proxy_to(server: RedisProcess) -> AsyncIterator[FreezableProxy]:
    proxy = FreezableProxy(server.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.aclose()


@contextlib.asynccontextmanager
async def tasq_through(url: str, *, socket_timeout_s: float | None = None) -> AsyncIterator[Tasq]:
    """A Tasq with a short health-check interval, on a Redis client this test owns."""
    options: dict[str, Any] = {}
    if socket_timeout_s is not None:
        options = {"socket_timeout": socket_timeout_s, "socket_connect_timeout": socket_timeout_s}
    redis_client = aioredis.Redis.from_url(url, **options)
    try:
        async with await create_tasq(redis_client, health_check_interval_s=HEALTH_CHECK_INTERVAL_S) as tasq:
            yield tasq
    finally:
        await redis_client.aclose()


# Redis restarts.


async def test_restart_in_flight_requests_end_by_deadline(redis_process: RedisProcess) -> None:
    topic = _new_topic("restart-in-flight")
    timeout_s = 3.0
    started = asyncio.Event()
    release = asyncio.Event()

    async def hold(args: int) -> int:
        started.set()
        await release.wait()
        return args

    async with (
        tasq_through(redis_process.url) as server_side,
        tasq_through(redis_process.url) as caller,
        aioredis.Redis.from_url(redis_process.url) as observer_client,
    ):
        await server_side.serve(topic, {"hold": hold}, threads=1)
        calls = [
            asyncio.create_task(timed(caller.request(topic, "hold", i, timeout=timeout_s))) for i in range(5)
        ]
        await asyncio.wait_for(started.wait(), WAIT_S)
        await wait_until(lambda: _list_length_is(observer_client, topic, 4))

        # In a thread, so that the event loop notices the connections drop as they happen.
        await asyncio.to_thread(redis_process.restart)
        release.set()
        outcomes = await asyncio.gather(*calls)

    for i, outcome in enumerate(outcomes):
        assert outcome.elapsed_s <= timeout_s + DEADLINE_MARGIN_S, f"request {i} ended late"
        if outcome.error is None:
            assert outcome.value == i, f"request {i} got another request's result"
        else:
            assert isinstance(outcome.error, TasqRequestTimeoutError | TasqConnectionError), repr(
                outcome.error
            )
    # The queued tasks lived only in the restarted server's memory.
    for i, outcome in enumerate(outcomes[1:], start=1):
        assert isinstance(outcome.error, TasqRequestTimeoutError), f"queued request {i}: {outcome.error!r}"
        assert outcome.elapsed_s >= timeout_s - DEADLINE_MARGIN_S


async def _list_length_is(redis_client: aioredis.Redis, topic: str, expected: int) -> bool:
    return int(await redis_client.llen(topic_key(topic))) == expected


async def test_restart_requests_while_down_fail_by_deadline(redis_process: RedisProcess) -> None:
    topic = _new_topic("restart-down")
    timeout_s = 1.0

    async with tasq_through(redis_process.url) as tasq:
        await tasq.serve(topic, {"echo": echo})
        assert await tasq.request(topic, "echo", "before") == "before"

        await asyncio.to_thread(redis_process.stop)
        outcomes = await asyncio.gather(
            *(timed(tasq.request(topic, "echo", i, timeout=timeout_s)) for i in range(20))
        )
        await asyncio.to_thread(redis_process.start)

        for outcome in outcomes:
            assert isinstance(outcome.error, TasqRequestTimeoutError | TasqConnectionError), repr(
                outcome.error
            )
            assert outcome.elapsed_s <= timeout_s + DEADLINE_MARGIN_S
        assert tasq.pending_count == 0


async def test_restart_both_sides_resubscribe_within_limit(redis_process: RedisProcess) -> None:
    topic = _new_topic("restart-resume")

    async with (
        tasq_through(redis_process.url) as server_side,
        tasq_through(redis_process.url) as caller,
        aioredis.Redis.from_url(redis_process.url) as observer_client,
    ):
        # recheck_interval_s is long so that the server's BLMPOP, which it sends again
        # once Redis is back, is what finds the new tasks.
        await server_side.serve(topic, {"echo": echo}, recheck_interval_s=30.0)
        assert await caller.request(topic, "echo", "before") == "before"

        await asyncio.to_thread(redis_process.restart)
        recovery_s = await request_until_ok(caller, topic, attempt_timeout_s=0.3, limit_s=10.0)

        print(f"Redis restart, in-process server: first request succeeded after {recovery_s:.2f} s")
        assert recovery_s <= RECOVERY_LIMIT_S
        assert await subscriber_count(observer_client, client_channel(caller.client_id)) == 1


async def test_restart_worker_process_resumes_within_limit(
    redis_process: RedisProcess, tmp_path: Path
) -> None:
    topic = _new_topic("restart-process")
    runs_key = f"{topic}:runs"

    async with (
        WorkerProcess(
            url=redis_process.url,
            topic=topic,
            runs_key=runs_key,
            started_key=f"{topic}:started",
            log_path=tmp_path / "worker.log",
        ) as worker,
        tasq_through(redis_process.url) as caller,
    ):
        before = await caller.request(topic, "work", {"id": "before"}, timeout=5.0)
        assert before == {"id": "before", "pid": worker.pid}

        await asyncio.to_thread(redis_process.stop)
        down = await timed(caller.request(topic, "work", {"id": "down"}, timeout=0.5))
        await asyncio.to_thread(redis_process.start)

        started = time.monotonic()
        while True:
            after = await timed(caller.request(topic, "work", {"id": "after"}, timeout=0.3))
            if after.error is None or time.monotonic() - started > 10.0:
                break
        recovery_s = time.monotonic() - started

        assert isinstance(down.error, TasqRequestTimeoutError | TasqConnectionError), repr(down.error)
        print(f"Redis restart, worker process: first request succeeded after {recovery_s:.2f} s")
        assert after.value == {"id": "after", "pid": worker.pid}
        assert recovery_s <= RECOVERY_LIMIT_S
        assert worker.returncode is None


async def test_reply_during_client_outage_times_out_at_deadline(redis_process: RedisProcess) -> None:
    topic = _new_topic("lost-reply")
    timeout_s = 3.0
    started = asyncio.Event()
    release = asyncio.Event()
    server_observer = RecordingObserver()

    async def hold(args: str) -> str:
        started.set()
        await release.wait()
        return args

    async with (
        proxy_to(redis_process) as proxy,
        tasq_through(proxy.url) as caller,
        aioredis.Redis.from_url(redis_process.url) as observer_client,
        await create_tasq(redis_process.url, observer=server_observer) as server_side,
    ):
        await server_side.serve(topic, {"hold": hold, "echo": echo})
        reply_channel = client_channel(caller.client_id)
        call = asyncio.create_task(timed(caller.request(topic, "hold", "lost", timeout=timeout_s)))
        await asyncio.wait_for(started.wait(), WAIT_S)

        proxy.sever()
        await wait_until(lambda: _has_subscribers(observer_client, reply_channel, 0))
        release.set()
        await wait_until(lambda: (topic, "hold", "ok") in server_observer.finished)
        proxy.restore()
        await wait_until(lambda: _has_subscribers(observer_client, reply_channel, 1))
        resubscribed_before_deadline = not call.done()
        outcome = await call

        assert resubscribed_before_deadline
        assert isinstance(outcome.error, TasqRequestTimeoutError), repr(outcome.error)
        assert timeout_s - DEADLINE_MARGIN_S <= outcome.elapsed_s <= timeout_s + DEADLINE_MARGIN_S
        assert caller.pending_count == 0
        assert await caller.request(topic, "echo", "after", timeout=5.0) == "after"


async def _has_subscribers(redis_client: aioredis.Redis, channel: str, expected: int) -> bool:
    return await subscriber_count(redis_client, channel) == expected


# Connections dropped without a FIN.


async def test_freeze_requests_fail_by_deadline_and_resume_after_thaw(redis_process: RedisProcess) -> None:
    topic = _new_topic("freeze-thaw")
    timeout_s = 1.0

    async with (
        proxy_to(redis_process) as proxy,
        tasq_through(proxy.url, socket_timeout_s=SOCKET_TIMEOUT_S) as server_side,
        tasq_through(proxy.url, socket_timeout_s=SOCKET_TIMEOUT_S) as caller,
    ):
        await server_side.serve(topic, {"echo": echo})
        assert await caller.request(topic, "echo", "before") == "before"

        proxy.freeze()
        frozen = await asyncio.gather(
            *(timed(caller.request(topic, "echo", i, timeout=timeout_s)) for i in range(5))
        )
        proxy.thaw()
        recovery_s = await request_until_ok(caller, topic, attempt_timeout_s=0.5, limit_s=10.0)

        for outcome in frozen:
            assert isinstance(outcome.error, TasqRequestTimeoutError | TasqConnectionError), repr(
                outcome.error
            )
            assert outcome.elapsed_s <= timeout_s + DEADLINE_MARGIN_S
        print(f"silent drop, thawed: service restored after {recovery_s:.2f} s")
        assert recovery_s <= FREEZE_RECOVERY_LIMIT_S
        assert caller.pending_count == 0


async def test_freeze_rerouted_service_resumes_within_bound(redis_process: RedisProcess) -> None:
    topic = _new_topic("freeze-reroute")

    async with (
        proxy_to(redis_process) as proxy,
        tasq_through(proxy.url, socket_timeout_s=SOCKET_TIMEOUT_S) as server_side,
        tasq_through(proxy.url, socket_timeout_s=SOCKET_TIMEOUT_S) as caller,
        aioredis.Redis.from_url(redis_process.url) as observer_client,
    ):
        await server_side.serve(topic, {"echo": echo})
        assert await caller.request(topic, "echo", "before") == "before"
        connections_before = proxy.connections_made

        # The old connections stay open and silent for good; only new ones get through.
        proxy.freeze()
        proxy.reroute()
        recovery_s = await request_until_ok(caller, topic, attempt_timeout_s=0.5, limit_s=30.0)

        print(f"silent drop, tuned options: service restored after {recovery_s:.2f} s")
        assert recovery_s <= FREEZE_RECOVERY_LIMIT_S
        assert proxy.connections_made > connections_before
        assert await subscriber_count(observer_client, client_channel(caller.client_id)) >= 1


async def test_freeze_rerouted_default_options_resume_within_bound(redis_process: RedisProcess) -> None:
    topic = _new_topic("freeze-defaults")

    async with (
        proxy_to(redis_process) as proxy,
        await create_tasq(proxy.url) as server_side,
        await create_tasq(proxy.url) as caller,
    ):
        await server_side.serve(topic, {"echo": echo})
        assert await caller.request(topic, "echo", "before") == "before"

        proxy.freeze()
        proxy.reroute()
        recovery_s = await request_until_ok(
            caller, topic, attempt_timeout_s=1.0, limit_s=2 * DEFAULT_FREEZE_RECOVERY_LIMIT_S
        )

        print(f"silent drop, default options: service restored after {recovery_s:.2f} s")
        assert recovery_s <= DEFAULT_FREEZE_RECOVERY_LIMIT_S


# Worker processes that die or stop.


async def test_worker_sigkill_mid_task_times_out_without_rerun(
    redis_process: RedisProcess, tmp_path: Path
) -> None:
    topic = _new_topic("sigkill")
    runs_key = f"{topic}:runs"
    started_key = f"{topic}:started"
    timeout_s = 2.0

    def worker(name: str) -> WorkerProcess:
        return WorkerProcess(
            url=redis_process.url,
            topic=topic,
            runs_key=runs_key,
            started_key=started_key,
            log_path=tmp_path / f"{name}.log",
        )

    async with (
        worker("first") as first,
        worker("second") as second,
        tasq_through(redis_process.url) as caller,
        aioredis.Redis.from_url(redis_process.url) as redis_client,
    ):
        workers = {first.pid: first, second.pid: second}
        call = asyncio.create_task(
            timed(caller.request(topic, "work", {"id": "doomed", "hold_s": 60.0}, timeout=timeout_s))
        )
        await wait_until(lambda: _list_length_at_least(redis_client, started_key, 1))
        [(_task_id, runner_pid)] = await started_tasks(redis_client, started_key)
        survivor = next(w for pid, w in workers.items() if pid != runner_pid)

        await workers[runner_pid].kill()
        outcome = await call

        assert isinstance(outcome.error, TasqRequestTimeoutError), repr(outcome.error)
        assert timeout_s - DEADLINE_MARGIN_S <= outcome.elapsed_s <= timeout_s + DEADLINE_MARGIN_S
        # The survivor takes tasks in list order, so once it has replied to a later
        # request, a requeued copy of the doomed task would already have run.
        probe = await caller.request(topic, "work", {"id": "probe"}, timeout=5.0)
        assert probe == {"id": "probe", "pid": survivor.pid}
        assert await redis_client.hget(runs_key, "doomed") == b"1"
        assert await redis_client.llen(topic_key(topic)) == 0


async def started_tasks(redis_client: aioredis.Redis, started_key: str) -> list[tuple[str, int]]:
    """Return (task id, worker pid) for each start a worker recorded, in order."""
    entries = await execute(redis_client, "LRANGE", started_key, 0, -1)
    started = []
    for entry in entries:
        task_id, pid = bytes(entry).decode().split(":")
        started.append((task_id, int(pid)))
    return started


async def _list_length_at_least(redis_client: aioredis.Redis, key: str, expected: int) -> bool:
    return int(await redis_client.llen(key)) >= expected


async def test_worker_sigterm_finishes_running_and_leaves_queue(
    redis_process: RedisProcess, tmp_path: Path
) -> None:
    topic = _new_topic("sigterm")
    runs_key = f"{topic}:runs"
    started_key = f"{topic}:started"
    grace_s = 5.0
    hold_s = 0.5

    async with (
        WorkerProcess(
            url=redis_process.url,
            topic=topic,
            runs_key=runs_key,
            started_key=started_key,
            log_path=tmp_path / "worker.log",
            threads=2,
            grace_s=grace_s,
        ) as worker,
        tasq_through(redis_process.url) as caller,
        aioredis.Redis.from_url(redis_process.url) as redis_client,
    ):
        calls = {
            f"task-{i}": asyncio.create_task(
                caller.request(topic, "work", {"id": f"task-{i}", "hold_s": hold_s}, timeout=30.0)
            )
            for i in range(5)
        }
        await wait_until(lambda: _list_length_at_least(redis_client, started_key, 2))
        await wait_until(lambda: _list_length_is(redis_client, topic, 3))
        running_ids = {task_id for task_id, _pid in await started_tasks(redis_client, started_key)}

        signalled = time.monotonic()
        worker.terminate()
        await worker.read_line("stopped")
        exit_status = await worker.wait()
        stop_s = time.monotonic() - signalled

        assert exit_status == 0
        assert stop_s <= grace_s + DEADLINE_MARGIN_S
        for task_id in running_ids:
            assert calls[task_id].done(), f"{task_id} got no reply before the worker exited"
            assert await calls[task_id] == {"id": task_id, "pid": worker.pid}
        assert await redis_client.llen(topic_key(topic)) == 3
        assert await redis_client.hlen(runs_key) == 2

        # Another server takes the tasks the stopped worker left queued.
        await caller.serve(topic, {"work": echo})
        for task_id, call in calls.items():
            if task_id not in running_ids:
                assert await asyncio.wait_for(call, WAIT_S) == {"id": task_id, "hold_s": hold_s}


async def test_many_workers_run_each_task_once(redis_process: RedisProcess, tmp_path: Path) -> None:
    topic = _new_topic("many-workers")
    runs_key = f"{topic}:runs"
    workers = [
        WorkerProcess(
            url=redis_process.url,
            topic=topic,
            runs_key=runs_key,
            started_key=f"{topic}:started",
            log_path=tmp_path / f"worker-{i}.log",
            threads=8,
        )
        for i in range(MANY_WORKERS)
    ]

    async with contextlib.AsyncExitStack() as stack:
        await asyncio.gather(*(stack.enter_async_context(worker) for worker in workers))
        caller = await stack.enter_async_context(tasq_through(redis_process.url))
        redis_client = await stack.enter_async_context(aioredis.Redis.from_url(redis_process.url))

        # A short hold keeps every worker's slots busy, so the load has to spread.
        results = await asyncio.gather(
            *(
                caller.request(topic, "work", {"id": str(i), "hold_s": 0.005}, timeout=60.0)
                for i in range(MANY_WORKERS_REQUESTS)
            )
        )
        runs = await redis_client.hgetall(runs_key)

    assert [result["id"] for result in results] == [str(i) for i in range(MANY_WORKERS_REQUESTS)]
    assert len(runs) == MANY_WORKERS_REQUESTS
    assert set(runs.values()) == {b"1"}
    load = Counter(result["pid"] for result in results)
    assert set(load) == {worker.pid for worker in workers}
    for pid, count in load.items():
        assert count >= MANY_WORKERS_REQUESTS // (MANY_WORKERS * 10), f"worker {pid} ran only {count} tasks"


# Callers that give up.


async def test_cancelled_requests_free_pending_and_keep_replies_apart(tasq: Tasq, topic: str) -> None:
    rng = random.Random(7)

    async def jitter_echo(args: Any) -> Any:
        await asyncio.sleep(rng.uniform(0.0, 0.02))
        return args

    await tasq.serve(topic, {"echo": jitter_echo}, threads=32)

    async def wait_briefly(i: int) -> Any:
        return await asyncio.wait_for(
            tasq.request(topic, "echo", {"i": i}, timeout=10.0), rng.uniform(0.0, 0.03)
        )

    plain = {
        i: asyncio.create_task(tasq.request(topic, "echo", {"i": i}, timeout=10.0)) for i in range(0, 300, 3)
    }
    short = {i: asyncio.create_task(wait_briefly(i)) for i in range(1, 300, 3)}
    cancelled = {
        i: asyncio.create_task(tasq.request(topic, "echo", {"i": i}, timeout=10.0)) for i in range(2, 300, 3)
    }
    await asyncio.sleep(0.01)
    for task in cancelled.values():
        task.cancel()
    await asyncio.gather(*plain.values(), *short.values(), *cancelled.values(), return_exceptions=True)

    assert tasq.pending_count == 0
    for i, task in plain.items():
        assert task.result() == {"i": i}
    for i, task in short.items():
        assert task.exception() is not None or task.result() == {"i": i}
    assert all(task.cancelled() or task.result() == {"i": i} for i, task in cancelled.items())

    # Replies to the abandoned requests may still be arriving; none may reach a new caller.
    second = await asyncio.gather(*(tasq.request(topic, "echo", {"j": j}, timeout=10.0) for j in range(300)))
    assert second == [{"j": j} for j in range(300)]
    assert tasq.pending_count == 0


# Saturation.


async def test_saturated_server_times_out_queue_on_schedule(redis_url: str, topic: str) -> None:
    timeout_s = 0.5
    release = asyncio.Event()
    runs = Counter[str]()
    observer = RecordingObserver()

    async def block(args: str) -> str:
        runs[args] += 1
        await release.wait()
        return args

    async with await create_tasq(redis_url, observer=observer) as tasq:
        server = await tasq.serve(topic, {"block": block, "echo": echo}, threads=2)
        blockers = [
            asyncio.create_task(tasq.request(topic, "block", f"b{i}", timeout=30.0)) for i in range(2)
        ]
        await wait_until(lambda: server.running == 2)

        queued = await asyncio.gather(
            *(timed(tasq.request(topic, "block", f"q{i}", timeout=timeout_s)) for i in range(10))
        )
        release.set()

        for outcome in queued:
            assert isinstance(outcome.error, TasqRequestTimeoutError), repr(outcome.error)
            assert timeout_s - 0.05 <= outcome.elapsed_s <= timeout_s + DEADLINE_MARGIN_S
        assert await asyncio.gather(*blockers) == ["b0", "b1"]
        assert await tasq.request(topic, "echo", "after") == "after"
        # The expired tasks left Redis without running: the list expired with the
        # last of their deadlines, or the server took them and dropped them.
        assert await tasq.redis.llen(topic_key(topic)) == 0
        assert runs == Counter({"b0": 1, "b1": 1})
        assert set(observer.dropped) <= {(topic, "expired")}


# Leaks.


async def test_timeouts_leave_no_pending_or_keys(
    tasq: Tasq, topic: str, redis_client: aioredis.Redis
) -> None:
    key = topic_key(topic)
    baseline_tasks = len(asyncio.all_tasks())
    expiries: list[int] = []

    for _ in range(LEAK_REQUESTS // LEAK_BATCH):
        outcomes = await asyncio.gather(
            *(tasq.request(topic, "nobody", i, timeout=LEAK_TIMEOUT_S) for i in range(LEAK_BATCH)),
            return_exceptions=True,
        )
        assert all(isinstance(outcome, TasqRequestTimeoutError) for outcome in outcomes)
        assert tasq.pending_count == 0
        expiries.append(int(await redis_client.pttl(key)))

    # -2: the key is already gone; -1 would be a list that never expires.
    assert all(expiry == -2 or 0 <= expiry <= LEAK_TIMEOUT_S * 1000 for expiry in expiries), expiries
    await wait_until(lambda: _key_gone(redis_client, key), timeout_s=LEAK_TIMEOUT_S + WAIT_S)
    assert len(asyncio.all_tasks()) == baseline_tasks


async def _key_gone(redis_client: aioredis.Redis, key: str) -> bool:
    return int(await redis_client.exists(key)) == 0
