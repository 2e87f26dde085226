"""Client and server against a real Redis: the behaviours the Node.js suite checks, and more."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

from tasq_fastapi import (
    Tasq,
    TasqRequestRejectedError,
    TasqRequestTimeoutError,
    TasqRequestUnknownMethodError,
    _batcher,
    create_tasq,
    get_request_context,
)
from tests._waiting import WAIT_S, wait_until

# Run every test here on a single server and on a Redis Cluster.
ALSO_ON_CLUSTER = True


async def echo(args: Any) -> Any:
    return args


async def test_request_echo_with_args(tasq: Tasq, topic: str) -> None:
    await tasq.serve(topic, {"echo": echo})

    assert await tasq.request(topic, "echo", {"name": "Tasq"}) == {"name": "Tasq"}


async def test_request_echo_without_args(tasq: Tasq, topic: str) -> None:
    await tasq.serve(topic, {"echo": echo})

    assert await tasq.request(topic, "echo") is None


async def test_request_sync_handler_returns_object(tasq: Tasq, topic: str) -> None:
    def get_user(args: dict[str, int]) -> dict[str, Any]:
        return {"id": args["id"], "thread": threading.current_thread().name}

    await tasq.serve(topic, {"get_user": get_user})

    result = await tasq.request(topic, "get_user", {"id": 7})

    assert result["id"] == 7
    assert result["thread"].startswith(f"tasq-{topic}")


async def test_request_async_handler_returns_object(tasq: Tasq, topic: str) -> None:
    async def get_user(args: dict[str, int]) -> dict[str, Any]:
        return {"id": args["id"], "tags": ["a", "b"], "score": 1.5}

    await tasq.serve(topic, {"get_user": get_user})

    assert await tasq.request(topic, "get_user", {"id": 7}) == {"id": 7, "tags": ["a", "b"], "score": 1.5}


async def test_request_custom_timeout_longer_than_slow_handler(tasq: Tasq, topic: str) -> None:
    async def slow(_args: Any) -> str:
        await asyncio.sleep(0.3)
        return "done"

    await tasq.serve(topic, {"slow": slow})

    assert await tasq.request(topic, "slow", timeout=5.0) == "done"


async def test_request_unknown_method(tasq: Tasq, topic: str) -> None:
    await tasq.serve(topic, {"echo": echo})

    with pytest.raises(TasqRequestUnknownMethodError, match="'missing'") as caught:
        await tasq.request(topic, "missing", {"x": 1})

    assert caught.value.topic == topic
    assert caught.value.method == "missing"
    assert caught.value.request_args == {"x": 1}


async def test_request_default_handler_gets_method_and_args(tasq: Tasq, topic: str) -> None:
    async def fallback(method: str, args: Any) -> list[Any]:
        return [method, args]

    await tasq.serve(topic, {"echo": echo}, fallback)

    assert await tasq.request(topic, "anything", [1, 2]) == ["anything", [1, 2]]
    assert await tasq.request(topic, "echo", [1, 2]) == [1, 2]


async def test_request_handler_slower_than_timeout(tasq: Tasq, topic: str) -> None:
    release = asyncio.Event()

    async def stuck(_args: Any) -> None:
        await release.wait()

    await tasq.serve(topic, {"stuck": stuck})

    with pytest.raises(TasqRequestTimeoutError, match=r"timed out after 0\.2 s") as caught:
        await tasq.request(topic, "stuck", timeout=0.2)

    assert isinstance(caught.value, TimeoutError)
    assert caught.value.timeout_s == 0.2
    assert tasq.pending_count == 0


async def test_request_throwing_handler(tasq: Tasq, topic: str) -> None:
    async def broken(_args: Any) -> None:
        raise KeyError("user 5")

    await tasq.serve(topic, {"broken": broken})

    with pytest.raises(TasqRequestRejectedError) as caught:
        await tasq.request(topic, "broken")

    assert caught.value.remote_type == "KeyError"
    assert caught.value.remote_message == "'user 5'"
    assert "KeyError" in str(caught.value)


async def test_request_rejection_hides_traceback(tasq: Tasq, topic: str) -> None:
    def broken(_args: Any) -> None:
        raise RuntimeError("disk full")

    await tasq.serve(topic, {"broken": broken})

    with pytest.raises(TasqRequestRejectedError) as caught:
        await tasq.request(topic, "broken")

    assert caught.value.remote_message == "disk full"
    assert "Traceback" not in str(caught.value)
    assert "test_core_requests" not in str(caught.value)


async def test_serve_threads_two_run_third_waits(tasq: Tasq, topic: str) -> None:
    started: list[int] = []
    two_started = asyncio.Event()
    release = asyncio.Event()

    async def work(args: int) -> int:
        started.append(args)
        if len(started) == 2:
            two_started.set()
        await release.wait()
        return args

    server = await tasq.serve(topic, {"work": work}, threads=2)
    calls = [asyncio.create_task(tasq.request(topic, "work", i)) for i in range(3)]

    await asyncio.wait_for(two_started.wait(), WAIT_S)
    assert server.running == 2
    assert len(started) == 2
    assert await server.queue_depth() == 1

    release.set()
    assert sorted(await asyncio.gather(*calls)) == [0, 1, 2]
    assert len(started) == 3


async def test_request_500_mixed_outcomes(tasq: Tasq, topic: str) -> None:
    never = asyncio.Event()

    async def mixed(args: int) -> int:
        if args % 10 == 0:
            await never.wait()
        if args % 2 == 1:
            raise ValueError(f"odd {args}")
        return args * 2

    await tasq.serve(topic, {"mixed": mixed}, threads=64)

    async def call(i: int) -> tuple[int, str, Any]:
        try:
            return i, "ok", await tasq.request(topic, "mixed", i, timeout=1.0)
        except TasqRequestTimeoutError:
            return i, "timeout", None
        except TasqRequestRejectedError as exc:
            return i, "rejected", exc.remote_message

    results = await asyncio.gather(*(call(i) for i in range(500)))

    for i, outcome, value in results:
        if i % 10 == 0:
            assert (outcome, value) == ("timeout", None), i
        elif i % 2 == 1:
            assert (outcome, value) == ("rejected", f"odd {i}"), i
        else:
            assert (outcome, value) == ("ok", i * 2), i
    assert tasq.pending_count == 0


async def test_request_namespaced_client(topic: str, redis_url: str) -> None:
    async with await create_tasq(redis_url, namespace="ns1") as client:
        await client.serve(topic, {"echo": echo})

        assert client.client_id.startswith("ns1:")
        assert await client.request(topic, "echo", {"name": "NS"}) == {"name": "NS"}


async def test_request_between_two_clients(tasq: Tasq, topic: str, redis_url: str) -> None:
    async with await create_tasq(redis_url) as caller:
        await tasq.serve(topic, {"echo": echo})

        assert await caller.request(topic, "echo", [1]) == [1]


async def test_handler_reads_its_deadline(tasq: Tasq, topic: str) -> None:
    async def deadline(_args: Any) -> list[float]:
        context = get_request_context()
        assert context is not None
        return [context.deadline, context.time_remaining()]

    await tasq.serve(topic, {"deadline": deadline})
    before = time.time()

    deadline_s, remaining_s = await tasq.request(topic, "deadline", timeout=30.0)

    assert before + 29 < deadline_s <= time.time() + 30
    assert 0 < remaining_s <= 30


async def test_handler_context_reaches_sync_handler(tasq: Tasq, topic: str) -> None:
    def whoami(_args: Any) -> list[str]:
        context = get_request_context()
        assert context is not None
        return [context.topic, context.method]

    await tasq.serve(topic, {"whoami": whoami})

    assert await tasq.request(topic, "whoami") == [topic, "whoami"]
    assert get_request_context() is None


async def test_handler_cancelled_at_deadline(tasq: Tasq, topic: str) -> None:
    cancelled = asyncio.Event()

    async def stuck(_args: Any) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await tasq.serve(topic, {"stuck": stuck})

    with pytest.raises(TasqRequestTimeoutError):
        await tasq.request(topic, "stuck", timeout=0.2)

    await asyncio.wait_for(cancelled.wait(), WAIT_S)


async def test_handler_that_ignores_deadline_cancellation_leaves_server_working(
    tasq: Tasq, topic: str
) -> None:
    finished = asyncio.Event()

    async def deaf(_args: Any) -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            # Swallowed on purpose: the task must not stay marked as being cancelled.
            await asyncio.sleep(0)
        finished.set()
        return "late"

    async def echo(args: Any) -> Any:
        return args

    await tasq.serve(topic, {"deaf": deaf, "echo": echo})

    with pytest.raises(TasqRequestTimeoutError):
        await tasq.request(topic, "deaf", timeout=0.2)

    await asyncio.wait_for(finished.wait(), WAIT_S)
    assert await tasq.request(topic, "echo", 7) == 7


async def test_request_round_trip_packs_without_hiredis(
    tasq: Tasq, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the hiredis extra, batches are packed by redis-py.
    monkeypatch.setattr(_batcher, "_hiredis_pack", None)

    async def echo(args: Any) -> Any:
        return args

    await tasq.serve(topic, {"echo": echo})

    assert await tasq.request(topic, "echo", {"text": "no hiredis", "data": b"\x00\x01"}) == {
        "text": "no hiredis",
        "data": b"\x00\x01",
    }


async def test_requests_over_one_batch_budget_all_arrive(tasq: Tasq, topic: str) -> None:
    async def size(args: bytes) -> int:
        return len(args)

    await tasq.serve(topic, {"size": size}, threads=8)

    # Eight 1 MiB requests in one loop round exceed one batch's 4 MiB of payload.
    sizes = await asyncio.gather(*(tasq.request(topic, "size", bytes(2**20)) for _ in range(8)))

    assert sizes == [2**20] * 8


async def test_handler_keeps_running_when_told(tasq: Tasq, topic: str) -> None:
    release = asyncio.Event()
    finished = asyncio.Event()

    async def stubborn(_args: Any) -> None:
        await release.wait()
        finished.set()

    await tasq.serve(topic, {"stubborn": stubborn}, cancel_at_deadline=False)

    with pytest.raises(TasqRequestTimeoutError):
        await tasq.request(topic, "stubborn", timeout=0.2)
    release.set()

    await asyncio.wait_for(finished.wait(), WAIT_S)


async def test_nested_request_inherits_deadline(tasq: Tasq, topic: str) -> None:
    async def inner(_args: Any) -> float:
        context = get_request_context()
        assert context is not None
        return context.deadline

    async def outer(args: dict[str, bool]) -> list[float]:
        context = get_request_context()
        assert context is not None
        inner_deadline = await tasq.request(topic, "inner", timeout=600.0, inherit_deadline=args["inherit"])
        return [context.deadline, inner_deadline]

    await tasq.serve(topic, {"outer": outer, "inner": inner}, threads=2)

    outer_deadline, inner_deadline = await tasq.request(topic, "outer", {"inherit": True}, timeout=5.0)
    assert inner_deadline <= outer_deadline + 0.001

    outer_deadline, inner_deadline = await tasq.request(topic, "outer", {"inherit": False}, timeout=5.0)
    assert inner_deadline > outer_deadline + 500


async def test_late_reply_is_dropped(tasq: Tasq, topic: str, caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()

    async def late(_args: Any) -> str:
        await release.wait()
        return "late"

    await tasq.serve(topic, {"late": late, "echo": echo}, threads=2, cancel_at_deadline=False)
    caplog.set_level(logging.DEBUG, logger="tasq_fastapi")

    with pytest.raises(TasqRequestTimeoutError):
        await tasq.request(topic, "late", timeout=0.2)
    release.set()

    # Replies travel in order on one channel, so once a later request is answered
    # the late reply has been read and dropped.
    async def late_reply_dropped() -> bool:
        assert await tasq.request(topic, "echo", 1) == 1
        return any("no longer pending" in record.message for record in caplog.records)

    await wait_until(late_reply_dropped)

    assert tasq.pending_count == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_cancelled_request_frees_pending_entry(tasq: Tasq, topic: str) -> None:
    call = asyncio.create_task(tasq.request(topic, "nobody", timeout=60.0))
    await wait_until(lambda: tasq.pending_count == 1)

    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    assert tasq.pending_count == 0


async def test_request_rejects_bad_timeout(tasq: Tasq, topic: str) -> None:
    for bad in (0, -1, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="Invalid timeout"):
            await tasq.request(topic, "echo", timeout=bad)


async def test_request_before_start_and_after_close(topic: str, redis_url: str) -> None:
    client = Tasq(redis_url)
    with pytest.raises(RuntimeError, match="not started"):
        await client.request(topic, "echo")

    await client.start()
    await client.aclose()
    await client.aclose()

    with pytest.raises(RuntimeError, match="closed"):
        await client.request(topic, "echo")
