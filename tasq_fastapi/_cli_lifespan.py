"""Running an ASGI app's lifespan without an HTTP server, as `tasq worker` does.

The app is driven through the ASGI lifespan protocol (spec version 2.0), the way
uvicorn drives it, so middleware and every lifespan the app composes run as they
would under a server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
AsgiApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]


class LifespanError(RuntimeError):
    """The app's lifespan ended or reported failure without raising an exception of its own."""


class AsgiLifespan:
    """One run of an ASGI app's lifespan: :meth:`startup`, then :meth:`shutdown`."""

    def __init__(self, app: AsgiApp) -> None:
        self._app = app
        self._messages: asyncio.Queue[Message] = asyncio.Queue()
        self._started = asyncio.Event()
        self._failure: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        """Send `lifespan.startup` and return once the app reports startup complete.

        Raises the exception the app's lifespan raised, or LifespanError when the
        app reported failure or ended its lifespan without raising. If the caller
        is cancelled meanwhile, the lifespan is cancelled too.
        """
        scope: dict[str, Any] = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": {},
        }
        task = asyncio.create_task(self._run_app(scope), name="tasq-worker-lifespan")
        self._task = task
        self._messages.put_nowait({"type": "lifespan.startup"})

        started = asyncio.create_task(self._started.wait())
        try:
            await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        finally:
            started.cancel()

        if self._started.is_set():
            return
        await self._raise_for(task, "before startup completed", ended_is_failure=True)

    async def shutdown(self) -> None:
        """Send `lifespan.shutdown` and wait until the app's lifespan has ended.

        Raises the exception the app's lifespan raised during shutdown, or
        LifespanError when the app reported failure without raising.
        """
        if self._task is None:
            return
        self._messages.put_nowait({"type": "lifespan.shutdown"})
        await self._raise_for(self._task, "during shutdown", ended_is_failure=False)

    async def wait_ended(self) -> None:
        """Wait until the lifespan ends on its own, which an app never does while running normally."""
        if self._task is not None:
            await asyncio.wait({self._task})

    async def _raise_for(self, task: asyncio.Task[None], when: str, *, ended_is_failure: bool) -> None:
        await asyncio.wait({task})
        if task.cancelled():
            raise LifespanError(f"The app's lifespan was cancelled {when}.")
        exception = task.exception()
        if exception is not None:
            raise exception
        if self._failure is not None:
            raise LifespanError(f"The app reported a lifespan failure {when}: {self._failure}")
        if ended_is_failure:
            raise LifespanError(
                f"The app ended its lifespan {when}, so it does not support the ASGI lifespan protocol."
            )

    async def _run_app(self, scope: Message) -> None:
        await self._app(scope, self._receive, self._send)

    async def _receive(self) -> Message:
        return await self._messages.get()

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self._started.set()
        elif kind in ("lifespan.startup.failed", "lifespan.shutdown.failed"):
            self._failure = str(message.get("message", ""))
