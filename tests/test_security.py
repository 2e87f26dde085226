"""Security set-ups: a Redis ACL user limited to Tasq's keys and channels, TLS, and what a
handler's failure reveals to callers.

Each test starts a Redis server of its own, because ACL users and TLS are server-wide.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, NoPermissionError

from tasq_fastapi import Tasq, TasqRequestError, TasqRequestRejectedError, create_tasq
from tasq_fastapi._protocol import client_channel, topic_key
from tasq_fastapi._redis import execute
from tests._redis_servers import RedisProcess, free_port, running_redis, server_binary
from tests._waiting import WAIT_S

PASSWORD = "tasq-test-secret"

# The smallest command set Tasq needs on Redis 7.0. Each command was removed in turn,
# and without any one of them a client and a server on this user fail as follows:
#   INFO                      create_tasq() raises NoPermissionError (version check)
#   SCRIPT LOAD, EVALSHA, EVAL, RPUSH, PEXPIRE, PUBLISH
#                             requests fail with TasqRequestError; the push script
#                             runs RPUSH, PEXPIRE and PUBLISH, which the ACL checks too,
#                             and EVAL is the fallback after Redis lost its script cache
#   BLMPOP                    servers log an error and take tasks with LPOP after
#                             notifications instead, one round trip slower
#   LPOP                      servers on a Redis Cluster, at-least-once servers and
#                             servers denied BLMPOP cannot take tasks
#   CLIENT ID, CLIENT UNBLOCK a closing server waits until its BLMPOP times out
#                             (recheck_interval_s) instead of ending it at once
#   SUBSCRIBE                 replies never arrive, so requests time out
#   UNSUBSCRIBE, PING         the pub/sub connection gets an error and is made again
#                             when a server stops, or at every health check
#   LLEN                      TasqServer.queue_depth() raises
# Keys and channels are limited to the "@tasq:" prefix: task lists are "@tasq:<topic>",
# and replies go to "@tasq:client:<client id>".
MINIMAL_ACL = (
    f"on >{PASSWORD} resetkeys ~@tasq:* resetchannels &@tasq:* -@all "
    "+info +script|load +evalsha +eval +rpush +pexpire +publish +blmpop +lpop +llen "
    "+client|id +client|unblock +subscribe +unsubscribe +ping"
)

# The broad form: every command outside @dangerous, on Tasq's keys and channels.
# INFO is in @dangerous, so the working broad form adds it back.
BROAD_ACL = f"on >{PASSWORD} resetkeys ~@tasq:* resetchannels &@tasq:* +@all -@dangerous"
BROAD_ACL_WITH_INFO = BROAD_ACL + " +info"


async def echo(args: Any) -> Any:
    return args


def set_acl_user(server: RedisProcess, name: str, rules: str) -> None:
    with redis.Redis(port=server.port) as admin:
        admin.execute_command("ACL", "SETUSER", name, *rules.split())


def user_url(server: RedisProcess, name: str, password: str = PASSWORD) -> str:
    return f"redis://{name}:{password}@127.0.0.1:{server.port}/0"


async def round_trip(url: str, topic: str) -> Any:
    """Serve ``echo`` and call it, each side a Tasq of its own on ``url``."""
    async with await create_tasq(url) as server_side, await create_tasq(url) as caller:
        server = await server_side.serve(topic, {"echo": echo}, threads=2)
        result = await caller.request(topic, "echo", {"secure": True}, timeout=WAIT_S)
        assert await server.queue_depth() == 0
        return result


# ACL users.


async def test_acl_minimal_user_round_trip(redis_process: RedisProcess) -> None:
    set_acl_user(redis_process, "tasq", MINIMAL_ACL)

    assert await round_trip(user_url(redis_process, "tasq"), "acl-minimal") == {"secure": True}


async def test_acl_user_without_blmpop_takes_tasks_with_lpop(
    redis_process: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    set_acl_user(redis_process, "tasq", MINIMAL_ACL.replace(" +blmpop", ""))

    assert await round_trip(user_url(redis_process, "tasq"), "acl-no-blmpop") == {"secure": True}
    assert "Grant +blmpop to the Redis user" in caplog.text


@pytest.mark.parametrize("denied", [" +client|id +client|unblock", " +client|unblock"], ids=["id", "unblock"])
async def test_acl_user_without_client_unblock_still_closes_servers(
    redis_process: RedisProcess, denied: str, caplog: pytest.LogCaptureFixture
) -> None:
    set_acl_user(redis_process, "tasq", MINIMAL_ACL.replace(denied, ""))

    assert await round_trip(user_url(redis_process, "tasq"), "acl-no-unblock") == {"secure": True}
    assert "Grant +client|id +client|unblock" in caplog.text


async def test_acl_minimal_user_survives_script_flush(redis_process: RedisProcess) -> None:
    set_acl_user(redis_process, "tasq", MINIMAL_ACL)
    url = user_url(redis_process, "tasq")

    async with await create_tasq(url) as server_side, await create_tasq(url) as caller:
        await server_side.serve("acl-flush", {"echo": echo})
        assert await caller.request("acl-flush", "echo", 1) == 1
        with redis.Redis(port=redis_process.port) as admin:
            admin.script_flush()

        # The push falls back to EVAL, which the minimal user may run.
        assert await caller.request("acl-flush", "echo", 2) == 2


async def test_acl_minimal_user_cannot_touch_other_keys(redis_process: RedisProcess) -> None:
    set_acl_user(redis_process, "tasq", MINIMAL_ACL)

    async with aioredis.Redis.from_url(user_url(redis_process, "tasq")) as limited:
        with pytest.raises(NoPermissionError):
            await limited.rpush("jobs", b"x")
        with pytest.raises(NoPermissionError):
            await limited.publish("news", b"x")
        with pytest.raises(NoPermissionError):
            await limited.get(topic_key("any"))
        with pytest.raises(NoPermissionError):
            await execute(limited, "FLUSHALL")


async def test_acl_broad_user_round_trip(redis_process: RedisProcess) -> None:
    set_acl_user(redis_process, "tasq", BROAD_ACL)

    assert await round_trip(user_url(redis_process, "tasq"), "acl-broad") == {"secure": True}


async def test_acl_broad_user_with_info_round_trip(redis_process: RedisProcess) -> None:
    set_acl_user(redis_process, "tasq", BROAD_ACL_WITH_INFO)

    assert await round_trip(user_url(redis_process, "tasq"), "acl-broad-info") == {"secure": True}


async def test_acl_wrong_password_raises_authentication_error(redis_process: RedisProcess) -> None:
    set_acl_user(redis_process, "tasq", MINIMAL_ACL)

    with pytest.raises(AuthenticationError, match="invalid username-password pair"):
        await create_tasq(user_url(redis_process, "tasq", password="wrong"))


async def test_acl_user_without_channels_fails_at_start(redis_process: RedisProcess) -> None:
    set_acl_user(redis_process, "nochannels", f"on >{PASSWORD} ~@tasq:* resetchannels +@all")

    started: Tasq | None = None
    try:
        with pytest.raises(NoPermissionError, match="channel"):
            started = await create_tasq(user_url(redis_process, "nochannels"))
    finally:
        if started is not None:
            await started.aclose()


async def test_acl_user_without_keys_gets_clear_request_error(redis_process: RedisProcess) -> None:
    set_acl_user(redis_process, "nokeys", f"on >{PASSWORD} ~other:* &@tasq:* +@all")

    async with await create_tasq(user_url(redis_process, "nokeys")) as tasq:
        with pytest.raises(TasqRequestError, match="permissions") as caught:
            await tasq.request("acl-nokeys", "echo", timeout=5.0)

    # Redis and Valkey word the NOPERM error differently.
    assert "no permissions to access" in str(caught.value).lower()
    assert tasq.pending_count == 0


# TLS.


def _redis_has_tls() -> bool:
    # A server built without TLS reports that when given a TLS port (Redis: "Bad
    # directive", Valkey: "Failed finding TLS support"); one with TLS stops at the
    # missing certificate instead.
    try:
        command = [server_binary(), "--port", "0", "--tls-port", str(free_port())]
        command += ["--tls-cert-file", "/nonexistent", "--save", ""]
        result = subprocess.run(command, capture_output=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return False
    output = (result.stdout + result.stderr).lower()
    return b"bad directive" not in output and b"tls support" not in output


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certificates(directory: Path) -> None:
    """Write ca.crt, server.crt and server.key (for IP 127.0.0.1), valid for one day."""
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
             "-subj", "/CN=tasq test CA", cwd=directory)  # fmt: skip
    _openssl("req", *curve, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
             cwd=directory)  # fmt: skip
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "1", "-extfile", "san.cnf", cwd=directory)  # fmt: skip
    # A second CA that signed nothing, for the verification failure.
    _openssl("req", "-x509", *curve, "-keyout", "other-ca.key", "-out", "other-ca.crt", "-days", "1",
             "-subj", "/CN=unrelated CA", cwd=directory)  # fmt: skip


class TlsRedis:
    """A Redis server with a TLS port; its plain port is only used to see it is ready."""

    def __init__(self, server: RedisProcess, tls_port: int, certificates: Path) -> None:
        self.server = server
        self.tls_port = tls_port
        self.certificates = certificates

    def url(self, ca_file: str = "ca.crt", user: str = "") -> str:
        ca_path = self.certificates / ca_file
        return f"rediss://{user}127.0.0.1:{self.tls_port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca_path}"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    if not _redis_has_tls():
        pytest.skip(f"{server_binary()} was built without TLS support")
    make_certificates(tmp_path)
    tls_port = free_port()
    tls_args = [
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(tmp_path / "server.crt"),
        "--tls-key-file", str(tmp_path / "server.key"),
        "--tls-ca-cert-file", str(tmp_path / "ca.crt"),
        "--tls-auth-clients", "no",
    ]  # fmt: skip
    with running_redis(*tls_args) as server:
        yield TlsRedis(server, tls_port, tmp_path)


async def test_tls_round_trip_with_verified_certificate(tls_redis: TlsRedis) -> None:
    assert await round_trip(tls_redis.url(), "tls") == {"secure": True}


async def test_tls_with_acl_user_round_trip(tls_redis: TlsRedis) -> None:
    set_acl_user(tls_redis.server, "tasq", MINIMAL_ACL)

    assert await round_trip(tls_redis.url(user=f"tasq:{PASSWORD}@"), "tls-acl") == {"secure": True}


async def test_tls_unknown_ca_rejected(tls_redis: TlsRedis) -> None:
    with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
        await create_tasq(tls_redis.url(ca_file="other-ca.crt"))


async def test_tls_plain_client_rejected(tls_redis: TlsRedis) -> None:
    with pytest.raises(redis.exceptions.ConnectionError):
        await create_tasq(f"redis://127.0.0.1:{tls_redis.tls_port}/0?socket_timeout=2")


# What a failing handler reveals.


class _PaymentGatewayError(Exception):
    pass


async def test_handler_traceback_never_reaches_caller(redis_url: str, topic: str, tasq: Tasq) -> None:
    async def charge(_args: Any) -> None:
        try:
            raise _PaymentGatewayError("gateway password is hunter2")
        except _PaymentGatewayError as exc:
            raise RuntimeError("charge failed") from exc

    await tasq.serve(topic, {"charge": charge})
    async with aioredis.Redis.from_url(redis_url) as listener_client, listener_client.pubsub() as pubsub:
        await pubsub.subscribe(client_channel(tasq.client_id))

        with pytest.raises(TasqRequestRejectedError) as caught:
            await tasq.request(topic, "charge", timeout=5.0)
        raw_reply = await _next_message(pubsub)

    error = caught.value
    assert (error.remote_type, error.remote_message) == ("RuntimeError", "charge failed")
    assert error.__cause__ is None
    text = f"{error}{error!r}".encode() + raw_reply
    for leak in (b"Traceback", b"hunter2", b"_PaymentGatewayError", __file__.encode(), b"test_security"):
        assert leak not in text


async def _next_message(pubsub: aioredis.client.PubSub) -> bytes:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            return bytes(message["data"])
    raise AssertionError("No reply was published on the client's channel.")
