"""`TasqFastAPI`: a FastAPI app that serves Tasq routers with `app.include_tasq_router`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from ._client import DEFAULT_HEALTH_CHECK_INTERVAL_S, DEFAULT_MAX_MESSAGE_BYTES
from ._endpoints import TasqEndpoints
from ._fastapi import RedisSource, TasqExtension
from ._observer import TasqObserver
from ._router import TasqRouter

__all__ = ["TasqFastAPI"]


class TasqFastAPI(FastAPI):
    """A FastAPI app with a :class:`TasqExtension` attached at construction.

    Keyword arguments starting with ``tasq_`` go to the extension without that
    prefix (``tasq_redis`` becomes ``redis``, ...); every other keyword argument
    goes to ``FastAPI``. The extension is
    :attr:`tasq_extension`; the client is available through ``Depends(get_tasq)``
    while the app runs.
    """

    def __init__(
        self,
        *,
        tasq_redis: RedisSource,
        tasq_namespace: str | None = None,
        tasq_endpoints: TasqEndpoints | None = TasqEndpoints(),  # noqa: B008 - frozen, so sharing is safe
        tasq_grace_s: float = 10.0,
        tasq_startup_timeout_s: float = 10.0,
        tasq_observer: TasqObserver | None = None,
        tasq_max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        tasq_health_check_interval_s: float = DEFAULT_HEALTH_CHECK_INTERVAL_S,
        tasq_tracing: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.tasq_extension = TasqExtension(
            self,
            redis=tasq_redis,
            namespace=tasq_namespace,
            endpoints=tasq_endpoints,
            grace_s=tasq_grace_s,
            startup_timeout_s=tasq_startup_timeout_s,
            observer=tasq_observer,
            max_message_bytes=tasq_max_message_bytes,
            health_check_interval_s=tasq_health_check_interval_s,
            tracing=tasq_tracing,
        )

    def include_tasq_router(self, router: TasqRouter) -> None:
        """Serve ``router``'s topic while the app runs.

        Raises:
            TasqLifecycleError: if the app is starting or running.
            TasqRouterConfigError: if another included router has the same topic.
        """
        self.tasq_extension.include_router(router)
