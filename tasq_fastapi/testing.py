"""Helpers for testing services built with tasq-fastapi.

- :func:`call_handler` runs one handler of a router in process, without Redis,
  with the validation, dependencies, overrides and errors of a real request;
- :func:`serve_routers` serves routers on a Tasq client for the length of a block;
- :func:`run_app` runs a FastAPI app's lifespan, TasqExtension included, and gives
  an in-process HTTP client for its endpoints;
- :func:`start_test_redis` and :class:`TasqTestRedis` provide the Redis-compatible
  server of a test session; :func:`unique_name` makes topic and namespace names.

The pytest plugin :mod:`tasq_fastapi.pytest_plugin` builds its fixtures
(``tasq_redis_url``, ``tasq_client``, ``tasq_topic``, ...) from these.
See docs/testing.md.
"""

from ._testing_apps import RunningApp, run_app, serve_routers
from ._testing_calls import call_handler
from ._testing_names import unique_name
from ._testing_redis import TEST_REDIS_URL_VARIABLE, TasqTestRedis, start_test_redis

__all__ = [
    "TEST_REDIS_URL_VARIABLE",
    "RunningApp",
    "TasqTestRedis",
    "call_handler",
    "run_app",
    "serve_routers",
    "start_test_redis",
    "unique_name",
]
