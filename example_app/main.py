"""Gateway and user service in one app.

With REDIS_URL set, the app uses that Redis. Without it, the app's lifespan
starts an embedded valkey-server on a free loopback port before Tasq connects,
and stops it after Tasq has closed, also when startup fails.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from example_app import gateway, users
from example_app.settings import REDIS_URL_VARIABLE, configure_logging, redis_url_from_env
from tasq_fastapi import EmbeddedRedis, TasqFastAPI

logger = logging.getLogger(__name__)


@asynccontextmanager
async def redis_for_app(app: FastAPI) -> AsyncIterator[None]:
    """Put the Redis URL in `app.state.redis_url`, starting an embedded server if needed."""
    url = redis_url_from_env()
    if url is not None:
        logger.info("Using the Redis given by %s", REDIS_URL_VARIABLE)
        app.state.redis_url = url
        yield
        return

    async with EmbeddedRedis() as embedded:
        logger.info("%s is not set; using an embedded valkey-server at %s", REDIS_URL_VARIABLE, embedded.url)
        app.state.redis_url = embedded.url
        yield


def create_app() -> TasqFastAPI:
    """Build the one-process app; Redis is chosen when it starts."""
    configure_logging()
    app = TasqFastAPI(
        title="Example gateway and user service",
        lifespan=redis_for_app,
        tasq_redis=lambda: str(app.state.redis_url),
    )
    app.include_router(gateway.api)
    app.include_tasq_router(users.router)
    return app


app = create_app()
