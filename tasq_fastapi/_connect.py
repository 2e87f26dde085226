"""Redis clients from URLs: a single server, a Redis Cluster or a Sentinel-managed primary.

Besides redis-py's own URL forms (``redis://``, ``rediss://``, ``unix://``), two
forms name several servers at once:

- ``redis+cluster://[user:password@]host:port[,host:port...][/]``: seed nodes of a
  Redis Cluster (``rediss+cluster://`` for TLS);
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``:
  Sentinels that track the primary named ``service``; the client follows the
  primary across failovers (``rediss+sentinel://`` for TLS to the data nodes).

The user name and password, if any, are used for the data nodes (and for the
Sentinels too, which is what a Sentinel deployment with ACLs usually needs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

__all__ = ["RedisClient", "close_redis", "connect_redis", "describe_url"]

RedisClient: TypeAlias = "aioredis.Redis | RedisCluster"
"""A client Tasq can use: one server (also behind Sentinel) or a Redis Cluster."""

_CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
_SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}


@dataclass(frozen=True, slots=True)
class _MultiHostUrl:
    scheme: str
    hosts: list[tuple[str, int]]
    username: str | None
    password: str | None
    path_parts: list[str]


def connect_redis(url: str) -> RedisClient:
    """Create a client for ``url``; no connection is made until the first command.

    Raises ValueError naming the URL (without its password) when it is malformed.
    """
    scheme = url.partition("://")[0].lower()
    if scheme in _CLUSTER_SCHEMES:
        return _cluster_client(_parse_multi_host(url), tls=_CLUSTER_SCHEMES[scheme])
    if scheme in _SENTINEL_SCHEMES:
        return _sentinel_client(_parse_multi_host(url), tls=_SENTINEL_SCHEMES[scheme])
    return aioredis.Redis.from_url(url)


async def close_redis(client: RedisClient) -> None:
    """Close a client made by :func:`connect_redis`, with its Sentinel connections if any."""
    pool = getattr(client, "connection_pool", None)
    await client.aclose()
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()


def describe_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, for logs and errors."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    userinfo, at, hosts = rest.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user + ':***' if colon else '***'}@{hosts}"


def _parse_multi_host(url: str) -> _MultiHostUrl:
    parts = urlsplit(url)
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    username, _colon, password = userinfo.partition(":") if at else ("", "", "")
    hosts = [_parse_host(item, url) for item in hostlist.split(",") if item]
    if not hosts:
        raise ValueError(f"Redis URL {describe_url(url)!r} names no host; give at least one host:port.")
    return _MultiHostUrl(
        scheme=parts.scheme,
        hosts=hosts,
        username=unquote(username) or None,
        password=unquote(password) or None,
        path_parts=[part for part in parts.path.split("/") if part],
    )


def _parse_host(item: str, url: str) -> tuple[str, int]:
    host, colon, port = item.rpartition(":")
    if not colon or not port.isdigit():
        raise ValueError(f"Invalid host {item!r} in Redis URL {describe_url(url)!r}: write it as host:port.")
    return host.strip("[]"), int(port)


def _cluster_client(url: _MultiHostUrl, *, tls: bool) -> RedisCluster:
    if url.path_parts:
        raise ValueError(
            f"A Redis Cluster has only database 0, so the {url.scheme}:// URL takes no path; "
            f"remove {'/'.join(url.path_parts)!r}."
        )
    nodes = [ClusterNode(host, port) for host, port in url.hosts]
    return RedisCluster(startup_nodes=nodes, username=url.username, password=url.password, ssl=tls)


def _sentinel_client(url: _MultiHostUrl, *, tls: bool) -> aioredis.Redis:
    if not 1 <= len(url.path_parts) <= 2 or (len(url.path_parts) == 2 and not url.path_parts[1].isdigit()):
        raise ValueError(
            f"A {url.scheme}:// URL needs the monitored primary's name and an optional database "
            "number as its path, such as /mymaster/0."
        )
    service = url.path_parts[0]
    db = int(url.path_parts[1]) if len(url.path_parts) == 2 else 0
    credentials: dict[str, Any] = {"username": url.username, "password": url.password}
    sentinel = Sentinel(url.hosts, sentinel_kwargs=dict(credentials), **credentials, ssl=tls)
    client: aioredis.Redis = sentinel.master_for(service, db=db)
    return client
