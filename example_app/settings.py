"""Settings of the example, read from the environment: Redis URL and log level."""

from __future__ import annotations

import logging
import os

REDIS_URL_VARIABLE = "REDIS_URL"
LOG_LEVEL_VARIABLE = "LOG_LEVEL"


class MissingRedisURLError(RuntimeError):
    """REDIS_URL is not set for a process that cannot start its own Redis."""


def redis_url_from_env() -> str | None:
    """Return REDIS_URL, or None when it is unset or empty."""
    return os.environ.get(REDIS_URL_VARIABLE) or None


def required_redis_url() -> str:
    """Return REDIS_URL for the two-process form, where both processes must share one Redis.

    Raises:
        MissingRedisURLError: if REDIS_URL is unset or empty.
    """
    url = redis_url_from_env()
    if url is None:
        raise MissingRedisURLError(
            "REDIS_URL is not set. The gateway and the worker must share one Redis, so start one "
            "(for example redis-server --port 6379) and set REDIS_URL=redis://127.0.0.1:6379/0 for "
            "both processes, or run `python -m example_app` for the one-process form with an "
            "embedded Redis."
        )
    return url


def configure_logging() -> None:
    """Send the example's and Tasq's logs to stderr at LOG_LEVEL (default INFO).

    uvicorn configures only its own loggers, so without this the INFO lines of
    the app (which Redis it uses, servers starting and stopping) would not show.
    Does nothing if the root logger already has handlers.
    """
    level = os.environ.get(LOG_LEVEL_VARIABLE, "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
