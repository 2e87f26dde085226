"""HandlerRunner: which handlers run on the event loop and which in threads."""

from __future__ import annotations

from typing import Any

from tasq_fastapi._execution import HandlerRunner


async def on_loop(args: Any) -> Any:
    return args


def in_thread(args: Any) -> Any:
    return args


def runner(default: Any = None) -> HandlerRunner:
    return HandlerRunner(
        topic="t",
        handlers={"loop": on_loop, "thread": in_thread},
        default_handler=default,
        threads=1,
        cancel_at_deadline=True,
        max_message_bytes=1024,
    )


async def on_loop_default(method: str, args: Any) -> Any:
    return args


def test_runner_is_async_by_method() -> None:
    assert runner().is_async("loop")
    assert not runner().is_async("thread")
    assert not runner(default=lambda method, args: args).is_async("other")
    assert runner(default=on_loop_default).is_async("other")
