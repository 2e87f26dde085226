"""Typed clients: generated from a router, they send what Tasq.request sends and are checked by mypy."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Generic, NewType, TypeVar

import mypy.api
import pytest
from asgi_lifespan import LifespanManager
from pydantic import BaseModel

from tasq_fastapi import (
    Tasq,
    TasqEncodeError,
    TasqFastAPI,
    TasqRequestInvalidArgsError,
    TasqRequestRejectedError,
    TasqRequestTimeoutError,
    TasqRequestUnknownMethodError,
    TasqRouter,
    create_tasq,
)
from tasq_fastapi._codegen import _render_client, generate_client, main
from tasq_fastapi._codegen_types import TasqCodegenError
from tasq_fastapi._proxy import SERVER_DEFAULT, TasqProxy, TasqResultValidationError
from tests._plugin_fixtures import LIFESPAN_TIMEOUT_S, unique_topic
from tests.proxy_fixtures import accounts, local_types
from tests.proxy_fixtures.accounts_client import AccountsClient
from tests.proxy_fixtures.ledger import Ledger, get_ledger
from tests.proxy_fixtures.models import Account, NewAccount, Plan

REPO_ROOT = Path(__file__).resolve().parent.parent
CLIENT_PATH = REPO_ROOT / "tests" / "proxy_fixtures" / "accounts_client.py"
ROUTER_SPEC = "tests.proxy_fixtures.accounts:router"

# Seconds a caller subprocess may take to start, call and exit before the test fails.
SUBPROCESS_TIMEOUT_S = 60.0


def accounts_router(topic: str) -> TasqRouter:
    """Return a router with the fixture's handlers on `topic`, so that each test has its own."""
    router = TasqRouter(topic, threads=4)
    for name, func in accounts.router.handlers.items():
        router.method(name)(func)
    return router


@asynccontextmanager
async def serving(redis_url: str, router: TasqRouter) -> AsyncIterator[Tasq]:
    """Serve `router` from a TasqFastAPI app with a fresh ledger, and yield the app's client."""
    app = TasqFastAPI(tasq_redis=redis_url, tasq_endpoints=None)
    app.include_tasq_router(router)
    ledger = Ledger()
    app.dependency_overrides[get_ledger] = lambda: ledger
    async with LifespanManager(app, startup_timeout=LIFESPAN_TIMEOUT_S, shutdown_timeout=LIFESPAN_TIMEOUT_S):
        yield app.tasq_extension.tasq


@pytest.fixture
async def served(redis_url: str) -> AsyncIterator[tuple[Tasq, AccountsClient]]:
    topic = unique_topic("proxy")
    async with serving(redis_url, accounts_router(topic)) as tasq:
        yield tasq, AccountsClient(tasq, topic=topic)


async def test_results_match_request(served: tuple[Tasq, AccountsClient]) -> None:
    tasq, client = served
    topic = client.topic

    opened = await client.open_account(NewAccount(displayName="Ada", plan=Plan.PRO))
    raw_opened = await tasq.request(topic, "open_account", {"displayName": "Grace", "plan": "pro"})
    assert opened == Account(
        id=1,
        display_name="Ada",
        plan=Plan.PRO,
        opened_at=dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC),
        token=uuid.uuid5(uuid.NAMESPACE_OID, "Ada"),
    )
    assert Account.model_validate(raw_opened).id == 2

    assert await client.get(account_id=1) == Account.model_validate(
        await tasq.request(topic, "get", {"account_id": 1})
    )
    assert await client.get(1) == opened

    listed = await client.list(limit=1, plan=Plan.PRO)
    assert listed == [
        Account.model_validate(item) for item in await tasq.request(topic, "list", {"limit": 1})
    ]
    assert [account.id for account in await client.list()] == [1, 2]


async def test_results_validated_into_types(served: tuple[Tasq, AccountsClient]) -> None:
    tasq, client = served
    topic = client.topic

    assert await tasq.request(topic, "balances") == {"1": "10.50", "2": "0.25"}
    assert await client.balances() == {1: decimal.Decimal("10.50"), 2: decimal.Decimal("0.25")}

    when = dt.datetime(2024, 1, 1, 8, tzinfo=dt.UTC)
    assert await tasq.request(topic, "shift", {"when": when, "by": [2, 3]}) == [
        dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC),
        5,
    ]
    assert await client.shift(when=when, by=(2, 3)) == (dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC), 5)

    assert await client.echo(value={"nested": [1, "two"]}) == {"nested": [1, "two"]}
    await client.ping()


async def test_non_identifier_method_uses_function_name(served: tuple[Tasq, AccountsClient]) -> None:
    tasq, client = served
    await client.open_account(NewAccount(displayName="Ada"))

    renamed = await client.rename_account(account_id=1, display_name="Ada L.")
    raw = await tasq.request(client.topic, "rename-account", {"account_id": 1, "display_name": "Ada L."})

    assert renamed == raw == "Ada L."


async def test_args_sent_as_request_would(redis_url: str) -> None:
    # A server with only a catch-all returns [method, args], which fails the client's
    # result validation; the error then shows exactly what the client sent.
    topic = unique_topic("proxy-raw")
    router = TasqRouter(topic)

    @router.default
    async def sent(method: str, args: Any) -> list[Any]:
        return [method, args]

    async with serving(redis_url, router) as tasq:
        client = AccountsClient(tasq, topic=topic)

        async def sent_by(call: Callable[[], Any]) -> Any:
            with pytest.raises(TasqResultValidationError) as caught:
                await call()
            return caught.value.result

        assert await sent_by(lambda: client.get(account_id=7)) == ["get", {"account_id": 7}]
        assert await sent_by(lambda: client.list()) == ["list", {}]
        assert await sent_by(lambda: client.list(5, plan=Plan.FREE)) == ["list", {"limit": 5, "plan": "free"}]
        assert await sent_by(lambda: client.open_account(NewAccount(displayName="Ada"))) == [
            "open_account",
            {"displayName": "Ada", "plan": "free"},
        ]
        assert await sent_by(lambda: client.ping()) == ["ping", None]
        assert await client.echo(value=[1]) == ["echo", {"value": [1]}]


async def test_result_mismatch_raises_validation_error(redis_url: str) -> None:
    topic = unique_topic("proxy-drift")
    router = TasqRouter(topic)

    @router.method()
    async def get(account_id: int) -> dict[str, int]:
        return {"id": account_id}

    async with serving(redis_url, router) as tasq:
        with pytest.raises(TasqResultValidationError) as caught:
            await AccountsClient(tasq, topic=topic).get(account_id=3)

    assert caught.value.topic == topic
    assert caught.value.method == "get"
    assert caught.value.result == {"id": 3}
    assert {error["loc"][0] for error in caught.value.errors} >= {"display_name", "plan", "token"}


async def test_rejection_matches_request(served: tuple[Tasq, AccountsClient]) -> None:
    tasq, client = served

    with pytest.raises(TasqRequestRejectedError) as proxied:
        await client.get(account_id=99)
    with pytest.raises(TasqRequestRejectedError) as requested:
        await tasq.request(client.topic, "get", {"account_id": 99})

    assert type(proxied.value) is type(requested.value)
    assert proxied.value.remote_type == requested.value.remote_type == "KeyError"
    assert proxied.value.remote_message == requested.value.remote_message
    assert proxied.value.request_args == {"account_id": 99}


async def test_invalid_args_match_request(served: tuple[Tasq, AccountsClient]) -> None:
    tasq, client = served

    with pytest.raises(TasqRequestInvalidArgsError) as proxied:
        await client.list(limit=0)
    with pytest.raises(TasqRequestInvalidArgsError) as requested:
        await tasq.request(client.topic, "list", {"limit": 0})

    assert proxied.value.errors == requested.value.errors
    assert [error["loc"] for error in proxied.value.errors] == [["limit"]]


async def test_unknown_method_matches_request(redis_url: str) -> None:
    topic = unique_topic("proxy-old")
    router = TasqRouter(topic)
    router.method("ping")(accounts.ping)

    async with serving(redis_url, router) as tasq:
        client = AccountsClient(tasq, topic=topic)
        await client.ping()
        with pytest.raises(TasqRequestUnknownMethodError) as proxied:
            await client.get(account_id=1)
        with pytest.raises(TasqRequestUnknownMethodError) as requested:
            await tasq.request(topic, "get", {"account_id": 1})

    assert (proxied.value.topic, proxied.value.method) == (requested.value.topic, requested.value.method)


async def test_timeout_from_with_options(served: tuple[Tasq, AccountsClient]) -> None:
    _, client = served
    quick = client.with_options(timeout=0.3)

    with pytest.raises(TasqRequestTimeoutError) as caught:
        await quick.stall()

    assert caught.value.method == "stall"
    assert repr(quick) == f"AccountsClient(topic={client.topic!r}, timeout=0.3)"
    assert repr(client) == f"AccountsClient(topic={client.topic!r}, timeout=10.0)"


async def test_unencodable_args_raise_encode_error(tasq: Tasq) -> None:
    client = AccountsClient(tasq, topic=unique_topic("proxy-encode"))

    with pytest.raises(TasqEncodeError, match=r"\.echo: .* type object"):
        await client.echo(value=object())
    with pytest.raises(TasqEncodeError, match="naive datetime"):
        await client.shift(when=dt.datetime(2024, 1, 1), by=(1, 1))


async def test_constructor_checks_arguments(tasq: Tasq) -> None:
    with pytest.raises(TypeError, match="needs a Tasq client"):
        AccountsClient("redis://127.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        AccountsClient(tasq, timeout=0)
    with pytest.raises(ValueError, match="topic"):
        AccountsClient(tasq, topic="no spaces")
    with pytest.raises(ValueError, match="timeout"):
        AccountsClient(tasq).with_options(timeout=-1)
    with pytest.raises(TypeError, match="default_topic"):
        TasqProxy(tasq)

    assert AccountsClient(tasq).topic == "accounts"
    assert repr(SERVER_DEFAULT) == "SERVER_DEFAULT"


async def test_caller_without_server_dependencies(redis_url: str) -> None:
    # The caller runs in a fresh interpreter where the router's module and its
    # storage module cannot be imported, as on a machine without the server's code.
    script = textwrap.dedent(
        """
        import asyncio
        import sys

        sys.modules["tests.proxy_fixtures.accounts"] = None
        sys.modules["tests.proxy_fixtures.ledger"] = None

        from tasq_fastapi import create_tasq
        from tests.proxy_fixtures.accounts_client import AccountsClient
        from tests.proxy_fixtures.models import NewAccount


        async def main() -> None:
            async with await create_tasq(sys.argv[1]) as tasq:
                client = AccountsClient(tasq, topic=sys.argv[2])
                account = await client.open_account(NewAccount(displayName="Ada"))
                print(account.model_dump_json())


        asyncio.run(main())
        """
    )
    topic = unique_topic("proxy-remote")

    async with serving(redis_url, accounts_router(topic)):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            redis_url,
            topic,
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), SUBPROCESS_TIMEOUT_S)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    assert process.returncode == 0, stderr.decode()
    assert Account.model_validate_json(stdout).display_name == "Ada"


def test_mypy_checks_calls(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    snippet = tmp_path / "caller.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from tasq_fastapi import Tasq
            from tests.proxy_fixtures.accounts_client import AccountsClient
            from tests.proxy_fixtures.models import NewAccount


            async def call(tasq: Tasq) -> None:
                accounts = AccountsClient(tasq)
                reveal_type(await accounts.get(account_id=1))
                reveal_type(await accounts.list(limit=5))
                reveal_type(await accounts.balances())
                await accounts.open_account(NewAccount(displayName="Ada"))
                await accounts.delete(account_id=1)
                await accounts.get(account_id="1")
                await accounts.list(ledger=None)
            """
        ).lstrip()
    )
    # The cache is kept between test runs, so later runs do not check fastapi and pydantic again.
    cache = getattr(request.config, "cache", None)
    cache_dir = cache.mkdir("mypy-proxy") if cache is not None else tmp_path
    stdout, stderr, status = mypy.api.run(
        ["--strict", "--cache-dir", str(cache_dir), "--no-error-summary", str(snippet)]
    )

    messages: dict[int, str] = {}
    for line in stdout.splitlines():
        _, number, message = line.split(":", 2)
        messages[int(number)] = messages.get(int(number), "") + message
    assert status == 1, stdout + stderr
    assert messages[8] == ' note: Revealed type is "tests.proxy_fixtures.models.Account"'
    assert messages[9] == ' note: Revealed type is "list[tests.proxy_fixtures.models.Account]"'
    assert messages[10] == ' note: Revealed type is "dict[int, decimal.Decimal]"'
    assert '"AccountsClient" has no attribute "delete"' in messages[12]
    assert '"get" of "AccountsClient" has incompatible type "str"; expected "int"' in messages[13]
    assert 'Unexpected keyword argument "ledger"' in messages[14]
    assert set(messages) == {8, 9, 10, 12, 13, 14}, stdout


def test_committed_client_is_current() -> None:
    generated = generate_client(ROUTER_SPEC, first_party=["tasq_fastapi"])

    assert generated == CLIENT_PATH.read_text(encoding="utf-8")


def test_cli_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "client.py"
    arguments = [ROUTER_SPEC, "--first-party", "tasq_fastapi", "--output", str(output)]

    assert main([*arguments, "--check"]) == 1
    assert main(arguments) == 0
    assert main([*arguments, "--check"]) == 0
    assert output.read_text(encoding="utf-8") == CLIENT_PATH.read_text(encoding="utf-8")

    assert main([ROUTER_SPEC, "--first-party", "tasq_fastapi"]) == 0
    assert capsys.readouterr().out == output.read_text(encoding="utf-8")

    output.write_text("stale", encoding="utf-8")
    assert main([*arguments, "--check"]) == 1
    assert "out of date" in capsys.readouterr().err

    assert main([ROUTER_SPEC, "--check"]) == 2
    assert "--check needs --output" in capsys.readouterr().err
    assert main(["tests.proxy_fixtures.models:Account"]) == 2
    assert "not a TasqRouter" in capsys.readouterr().err
    assert main(["tests.proxy_fixtures.missing:router"]) == 2
    assert "Cannot import module" in capsys.readouterr().err


ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    """A generic model, to check that parametrized models are written as Page[...]."""

    items: list[ItemT]


AccountId = NewType("AccountId", int)


def test_codegen_writes_type_hints() -> None:
    router = TasqRouter("shapes")

    @router.method()
    async def find(ids: list[AccountId], plan: Plan | None = None) -> Page[Account]:
        return Page[Account](items=[])

    @router.method("dict")
    async def lookup(*, key: str) -> dict[str, list[int]]:
        return {}

    source = _render_client(router, "tests.test_proxy:router")

    assert "from tests.test_proxy import AccountId, Page" in source
    assert "_FIND_RESULT: TypeAdapter[Page[Account]] = TypeAdapter(Page[Account])" in source
    assert (
        "        ids: list[AccountId],\n        plan: Plan | None = SERVER_DEFAULT,\n    ) -> Page[Account]:"
        in (source)
    )
    # The method named "dict" shadows the builtin in the class body, so the builtin is qualified.
    assert "async def dict(self, *, key: str) -> builtins.dict[str, list[int]]:" in source
    assert "class ShapesClient(TasqProxy):" in source
    compile(source, "client.py", "exec")


def test_codegen_rejects_local_types() -> None:
    with pytest.raises(TasqCodegenError, match="defined inside a function"):
        _render_client(local_types.make_router(), "tests.proxy_fixtures.local_types:router")


def test_codegen_rejects_router_without_methods() -> None:
    router = TasqRouter("catch-all")

    @router.default
    async def any_method(method: str, args: Any) -> None:
        return None

    with pytest.raises(TasqCodegenError, match="no handlers"):
        _render_client(router, "tests.test_proxy:router")


def test_codegen_falls_back_to_function_name() -> None:
    router = TasqRouter("fallback")

    @router.method("with_options")
    async def configure() -> None:
        return None

    source = _render_client(router, "tests.test_proxy:router")

    assert "async def configure(self) -> None:" in source
    assert "SERVER_DEFAULT" not in source.split("class ")[0]
    assert 'await self._call("with_options", None, _CONFIGURE_RESULT)' in source


def test_codegen_rejects_unusable_names() -> None:
    router = TasqRouter("hidden")

    @router.method()
    async def _hidden() -> None:
        return None

    with pytest.raises(TasqCodegenError, match="'_hidden'"):
        _render_client(router, "tests.test_proxy:router")


def test_codegen_rejects_clashing_names() -> None:
    router = TasqRouter("clash")

    @router.method("with_options")
    async def configure() -> None:
        return None

    router.method("configure")(configure)

    with pytest.raises(TasqCodegenError, match="both become the client method 'configure'"):
        _render_client(router, "tests.test_proxy:router")


async def test_client_from_running_core(redis_url: str) -> None:
    # The generated client works with any Tasq, not only the FastAPI plugin's.
    topic = unique_topic("proxy-core")
    async with await create_tasq(redis_url) as tasq:
        await tasq.serve(topic, handlers={"ping": lambda args: None})
        await AccountsClient(tasq, topic=topic).ping()
