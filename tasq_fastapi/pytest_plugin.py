"""pytest plugin with fixtures for testing services built with tasq-fastapi.

Fixtures:

- ``tasq_redis_server`` (session): the session's :class:`~tasq_fastapi.testing.TasqTestRedis`.
  It is an embedded ``valkey-server``, started on first use and stopped at the end of
  the session, unless ``--tasq-redis-url`` or the ``TASQ_TEST_REDIS_URL`` environment
  variable names an existing server.
- ``tasq_redis_url``: the Redis URL for one test. On the embedded server, each test
  gets a database of its own, flushed before the test. On an existing server, it is
  the given URL, which the kit never flushes.
- ``tasq_namespace`` and ``tasq_topic``: names no other test gets.
- ``tasq_client`` (async, needs pytest-asyncio): a started ``Tasq`` on
  ``tasq_redis_url`` with ``tasq_namespace``, closed after the test.

Installing tasq-fastapi registers this plugin with pytest. Where that entry point
is missing, load it with ``-p tasq_fastapi.pytest_plugin``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ._testing_names import unique_name
from ._testing_redis import TEST_REDIS_URL_VARIABLE, TasqTestRedis, start_test_redis

# Name under which pytest-asyncio registers its plugin.
_ASYNCIO_PLUGIN_NAME = "asyncio"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--tasq-redis-url``."""
    group = parser.getgroup("tasq", "tasq-fastapi testing kit")
    group.addoption(
        "--tasq-redis-url",
        dest="tasq_redis_url",
        default=None,
        metavar="URL",
        help=f"Redis URL the Tasq fixtures use instead of an embedded valkey-server; overrides "
        f"the {TEST_REDIS_URL_VARIABLE} environment variable. The kit never flushes this server.",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``tasq_client`` fixture, or a stand-in that explains what is missing."""
    if config.pluginmanager.has_plugin(_ASYNCIO_PLUGIN_NAME):
        from . import _testing_client_fixture

        config.pluginmanager.register(_testing_client_fixture, "tasq_fastapi.client_fixture")
    else:
        config.pluginmanager.register(_ClientFixtureUnavailable(), "tasq_fastapi.client_fixture")


@pytest.fixture(scope="session")
def tasq_redis_server(pytestconfig: pytest.Config) -> Iterator[TasqTestRedis]:
    """The session's Redis-compatible server: embedded, or the one given by URL."""
    configured_url = pytestconfig.getoption("tasq_redis_url", None) or os.environ.get(TEST_REDIS_URL_VARIABLE)
    with start_test_redis(configured_url or None) as server:
        yield server


@pytest.fixture
def tasq_redis_url(tasq_redis_server: TasqTestRedis) -> str:
    """Redis URL for this test: an empty database of its own on the embedded server."""
    return tasq_redis_server.database_url()


@pytest.fixture
def tasq_namespace(request: pytest.FixtureRequest) -> str:
    """A namespace no other test gets, made from the test's name; ``tasq_client`` uses it."""
    return unique_name(request.node.name)


@pytest.fixture
def tasq_topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test gets, made from the test's name."""
    return unique_name(request.node.name)


class _ClientFixtureUnavailable:
    """Stands in for ``tasq_client`` when pytest-asyncio is not active."""

    @pytest.fixture
    def tasq_client(self) -> None:
        """Fail with an explanation: the real fixture is async and needs pytest-asyncio."""
        pytest.fail(
            "The tasq_client fixture is async and needs the pytest-asyncio plugin, which is not "
            "active. Install it with pip install pytest-asyncio, and do not disable it with "
            "-p no:asyncio.",
            pytrace=False,
        )
