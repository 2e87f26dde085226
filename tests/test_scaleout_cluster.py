"""Tasq against a Redis Cluster of three primaries and three replicas started by the fixture.

The tests that print measurements (pub/sub fan-out, failover times) show them with
``pytest -s``; they assert only the behaviour, not the numbers.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from redis.asyncio.cluster import ClusterNode as RedisPyClusterNode
from redis.asyncio.cluster import RedisCluster

from tasq_fastapi import TasqExtension, TasqRouter, create_tasq
from tasq_fastapi._leases import leases_key
from tasq_fastapi._protocol import client_channel, topic_key
from tests._cluster import (
    DEADLINE_SLACK_S,
    FAILOVER_REQUEST_TIMEOUT_S,
    RECOVERED_STREAK,
    RECOVERY_LIMIT_S,
    ClusterNode,
    LocalRedisCluster,
    RequestTraffic,
)
from tests._cluster import (
    redis_cluster_fixture as redis_cluster_fixture,
)
from tests._plugin_fixtures import running_app
from tests._waiting import WAIT_S, wait_until

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
    reason="needs redis-server and redis-cli (Redis 7.0 or newer) on PATH to start a cluster",
)


async def echo(args: Any) -> Any:
    return args


def new_topic() -> str:
    return f"test-cluster-{uuid.uuid4().hex}"


def single_seed_url(node: ClusterNode) -> str:
    return f"redis+cluster://{node.address}"


async def publish_messages_received(cluster: LocalRedisCluster, kind: str = "publish") -> int:
    """Return the sum over running nodes of pub/sub messages received on the cluster bus.

    ``kind`` is ``"publish"`` for classic PUBLISH or ``"publishshard"`` for SPUBLISH.
    """
    total = 0
    for node in cluster.running_nodes:
        async with aioredis.Redis(port=node.port) as client:
            info = await client.cluster("INFO")
        # Redis lists a counter only once it is non-zero.
        total += int(info.get(f"cluster_stats_messages_{kind}_received", 0))
    return total


async def test_cluster_fixture_serves_every_slot(redis_cluster: LocalRedisCluster) -> None:
    startup_nodes = [RedisPyClusterNode("127.0.0.1", node.port) for node in redis_cluster.nodes[:3]]
    keys = [f"test-cluster-fixture-{uuid.uuid4().hex}-{i}" for i in range(30)]

    async with RedisCluster(startup_nodes=startup_nodes) as client:
        for key in keys:
            await client.set(key, key, ex=60)
        values = [await client.get(key) for key in keys]
        await client.delete(*keys)

    assert values == [key.encode() for key in keys]
    assert redis_cluster.is_healthy()
    assert {redis_cluster.role(node) for node in redis_cluster.nodes} == {"master", "slave"}
    assert len({redis_cluster.primary_for_key(key) for key in keys}) == 3


def test_cluster_topic_keys_share_slot(redis_cluster: LocalRedisCluster) -> None:
    for topic in ["users", "a/b.c:d-e_f", new_topic()]:
        list_slot = redis_cluster.keyslot(topic_key(topic))
        leases_slot = redis_cluster.keyslot(leases_key(topic))

        assert list_slot == leases_slot, topic


async def test_cluster_publish_reaches_every_node(redis_cluster: LocalRedisCluster) -> None:
    channel = client_channel(f"probe{uuid.uuid4().hex[:8]}")
    clients = [aioredis.Redis(port=node.port) for node in redis_cluster.nodes]
    subscriptions = [client.pubsub() for client in clients]
    try:
        for subscription in subscriptions:
            await subscription.subscribe(channel)
            assert (await subscription.get_message(timeout=WAIT_S))["type"] == "subscribe"
        received_before = await publish_messages_received(redis_cluster)

        await clients[0].publish(channel, b"probe")
        delivered = [await subscription.get_message(timeout=WAIT_S) for subscription in subscriptions]
        await wait_until(
            lambda: _received_at_least(redis_cluster, received_before + len(clients) - 1),
        )
        bus_messages = await publish_messages_received(redis_cluster) - received_before
    finally:
        for subscription in subscriptions:
            await subscription.aclose()
        for client in clients:
            await client.aclose()

    print(
        f"\none PUBLISH: delivered on {len(delivered)} of {len(clients)} nodes, {bus_messages} bus messages"
    )
    assert all(message is not None and message["data"] == b"probe" for message in delivered)
    assert bus_messages == len(clients) - 1


async def _received_at_least(cluster: LocalRedisCluster, expected: int) -> bool:
    return await publish_messages_received(cluster) >= expected


async def test_cluster_request_echo(redis_cluster: LocalRedisCluster) -> None:
    topic = new_topic()
    async with await create_tasq(redis_cluster.seed_url) as tasq:
        await tasq.serve(topic, {"echo": echo})

        assert await tasq.request(topic, "echo", {"name": "Tasq"}) == {"name": "Tasq"}
        assert await tasq.request(topic, "echo") is None


async def test_cluster_request_publish_fan_out(redis_cluster: LocalRedisCluster) -> None:
    requests = 200
    topic = new_topic()
    async with await create_tasq(redis_cluster.seed_url) as tasq:
        await tasq.serve(topic, {"echo": echo})
        await tasq.request(topic, "echo", 0)

        classic_before = await publish_messages_received(redis_cluster)
        sharded_before = await publish_messages_received(redis_cluster, "publishshard")
        for i in range(requests):
            assert await tasq.request(topic, "echo", i) == i

    # The notification is a classic PUBLISH, which the cluster bus carries to the
    # other five nodes; the reply is an SPUBLISH, which reaches only the replica of
    # the shard that owns the reply channel. The bus delivers asynchronously.
    classic_expected = requests * (len(redis_cluster.nodes) - 1)
    await wait_until(lambda: _received_at_least(redis_cluster, classic_before + classic_expected))
    classic = await publish_messages_received(redis_cluster) - classic_before
    sharded = await publish_messages_received(redis_cluster, "publishshard") - sharded_before
    print(
        f"\n{requests} sequential requests: {classic / requests:.2f} PUBLISH and "
        f"{sharded / requests:.2f} SPUBLISH bus messages per request"
    )
    assert classic_expected <= classic < 2 * classic_expected
    assert sharded >= requests


async def test_cluster_topics_spread_across_nodes(redis_cluster: LocalRedisCluster) -> None:
    topics = [new_topic() for _ in range(20)]
    owners = {topic: redis_cluster.primary_for_key(topic_key(topic)) for topic in topics}

    async with await create_tasq(redis_cluster.seed_url) as tasq:
        for topic in topics:
            await tasq.serve(topic, {"echo": echo})
        results = await asyncio.gather(*(tasq.request(topic, "echo", topic) for topic in topics))

    per_node = {node.address: list(owners.values()).count(node) for node in set(owners.values())}
    print(f"\n20 topics per primary: {per_node}")
    assert results == topics
    assert len(set(owners.values())) >= 2


async def test_cluster_server_and_client_on_different_nodes(redis_cluster: LocalRedisCluster) -> None:
    primaries = [node for node in redis_cluster.running_nodes if redis_cluster.role(node) == "master"]
    server_seed, client_seed, third = primaries[:3]
    topic = topic_served_by(redis_cluster, third)

    async with (
        await create_tasq(single_seed_url(server_seed)) as server_side,
        await create_tasq(single_seed_url(client_seed)) as client_side,
    ):
        await server_side.serve(topic, {"echo": echo})

        results = [await client_side.request(topic, "echo", [i]) for i in range(20)]

    assert results == [[i] for i in range(20)]


async def test_cluster_at_least_once_leases_in_topic_slot(redis_cluster: LocalRedisCluster) -> None:
    topic = new_topic()
    started = asyncio.Event()
    release = asyncio.Event()

    async def hold(args: Any) -> Any:
        started.set()
        await release.wait()
        return args

    owner = redis_cluster.primary_for_key(topic_key(topic))
    async with (
        await create_tasq(redis_cluster.seed_url) as tasq,
        aioredis.Redis(port=owner.port) as owner_client,
    ):
        await tasq.serve(topic, {"hold": hold, "echo": echo}, at_least_once=True, lease_s=1.0)
        call = asyncio.create_task(tasq.request(topic, "hold", "leased", timeout=10.0))
        await asyncio.wait_for(started.wait(), WAIT_S)

        leases_while_running = await owner_client.zcard(leases_key(topic))
        release.set()
        result = await call
        await wait_until(lambda: _zcard_is_zero(owner_client, leases_key(topic)))
        echoed = [await tasq.request(topic, "echo", i) for i in range(20)]

    assert leases_while_running == 1
    assert result == "leased"
    assert echoed == list(range(20))


async def _zcard_is_zero(client: aioredis.Redis, key: str) -> bool:
    return await client.zcard(key) == 0


async def test_cluster_fastapi_extension_serves_router(redis_cluster: LocalRedisCluster) -> None:
    topic = new_topic()
    router = TasqRouter(topic)

    @router.method()
    async def double(value: int) -> int:
        return value * 2

    app = FastAPI()
    extension = TasqExtension(app, redis=redis_cluster.seed_url)
    extension.include_router(router)

    async with running_app(app):
        result = await extension.tasq.request(topic, "double", {"value": 21})

    assert result == 42


def topic_served_by(cluster: LocalRedisCluster, node: ClusterNode) -> str:
    """Return a new topic whose list lives on ``node``."""
    for _ in range(1000):
        candidate = new_topic()
        if cluster.primary_for_key(topic_key(candidate)) is node:
            return candidate
    raise AssertionError(f"No topic among 1,000 random ones lives on {node.address}.")


async def test_cluster_failover_requests_end_by_deadline(redis_cluster: LocalRedisCluster) -> None:
    async with await create_tasq(redis_cluster.seed_url, health_check_interval_s=0.5) as tasq:
        # The worst case: the killed primary stores the topic's list and also serves
        # the client's pub/sub connection (replies and notifications).
        subscribed_on = redis_cluster.subscriber_nodes(client_channel(tasq.client_id))
        assert len(subscribed_on) == 1
        owner = subscribed_on[0]
        topic = topic_served_by(redis_cluster, owner)
        slot = redis_cluster.keyslot(topic_key(topic))
        await tasq.serve(topic, {"echo": echo}, threads=8)
        traffic = RequestTraffic(tasq, topic, timeout_s=FAILOVER_REQUEST_TIMEOUT_S)
        traffic.start()
        try:
            await wait_until(lambda: len(traffic.successes_started_after(0.0)) >= RECOVERED_STREAK)

            killed_at = time.monotonic()
            redis_cluster.kill(owner)
            promoted = await asyncio.to_thread(redis_cluster.wait_until_failed_over, owner, slot)
            failed_over_s = time.monotonic() - killed_at
            await wait_until(
                lambda: len(traffic.successes_started_after(killed_at)) >= RECOVERED_STREAK,
                timeout_s=RECOVERY_LIMIT_S,
            )
        finally:
            await traffic.stop()
            if not owner.is_running:
                await asyncio.to_thread(redis_cluster.restart, owner)

        after_restart = [await tasq.request(topic, "echo", i, timeout=5.0) for i in range(10)]

    first_success_s = traffic.first_success_finished_after(killed_at) - killed_at
    recovered_s = traffic.recovered_at(killed_at) - killed_at
    slowest_s = max(outcome.elapsed_s for outcome in traffic.outcomes)
    counts = traffic.error_counts()
    print(
        f"\ncluster failover of {owner.address} to {promoted.address}: promoted after {failed_over_s:.2f} s; "
        f"first success at {first_success_s:.2f} s, "
        f"every request started {recovered_s:.2f} s or more after the kill succeeded; "
        f"slowest request {slowest_s:.2f} s; outcomes {counts}"
    )
    assert promoted is not owner
    assert "hang" not in counts
    assert "wrong result" not in counts
    assert [name for name in counts if name.startswith("unexpected")] == []
    assert slowest_s <= FAILOVER_REQUEST_TIMEOUT_S + DEADLINE_SLACK_S
    assert after_restart == list(range(10))
