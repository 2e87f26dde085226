"""The accounts router whose client is generated into accounts_client.py.

Its handlers cover the cases the client generator must handle. The client leaves
out dependency parameters, and a lone model parameter takes the whole args. Some
parameters are keyword-only or have defaults. One method is named after a builtin
("list") and one name is no Python identifier. Several results need validation to
get their types back (int map keys, Decimal, tuple, UUID, datetime).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
from typing import Annotated, Any, Literal

from fastapi import Depends
from pydantic import Field

from tasq_fastapi import TasqRequestContext, TasqRouter
from tests.proxy_fixtures.ledger import Ledger, get_ledger
from tests.proxy_fixtures.models import Account, NewAccount, Plan

router = TasqRouter("accounts", threads=4)

LedgerDep = Annotated[Ledger, Depends(get_ledger)]


@router.method()
def open_account(new_account: NewAccount, ledger: LedgerDep, context: TasqRequestContext) -> Account:
    """Open an account; a plain function, so it runs in a worker thread."""
    return ledger.open(new_account)


@router.method()
async def get(account_id: int, ledger: LedgerDep) -> Account:
    """Return one account; the caller gets TasqRequestRejectedError (KeyError) for an unknown id."""
    return ledger.get(account_id)


@router.method("list")
async def list_accounts(
    ledger: LedgerDep,
    limit: Annotated[int, Field(ge=1, le=50)] = 10,
    *,
    plan: Plan | None = None,
) -> list[Account]:
    """Return up to `limit` accounts in id order, only those on `plan` if it is given."""
    accounts = [account for account in ledger.all() if plan is None or account.plan is plan]
    return accounts[:limit]


@router.method()
async def balances(currency: Literal["EUR", "USD"] = "EUR") -> dict[int, decimal.Decimal]:
    """Return balances by account id; the wire carries the keys and amounts as strings."""
    return {1: decimal.Decimal("10.50"), 2: decimal.Decimal("0.25")}


@router.method()
async def shift(when: dt.datetime, by: tuple[int, int]) -> tuple[dt.datetime, int]:
    """Return `when` moved by `by[0]` hours and the total of `by`."""
    return when + dt.timedelta(hours=by[0]), sum(by)


@router.method("rename-account")
async def rename_account(account_id: int, display_name: str, ledger: LedgerDep) -> str:
    """Return the new name; the method name is no identifier, so the client uses the function's."""
    ledger.get(account_id)
    return display_name


@router.method()
async def echo(value: Any) -> Any:
    """Return `value` unchanged; no return type is checked."""
    return value


@router.method()
async def ping() -> None:
    """Do nothing; a method without args or result."""


@router.method()
async def stall() -> None:
    """Never return, so that callers time out; the server cancels it at the deadline."""
    await asyncio.Event().wait()


@router.default
async def other(method: str, args: Any) -> str:
    """Catch every other method; the client has no method for it."""
    return method
