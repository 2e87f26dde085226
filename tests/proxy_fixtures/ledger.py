"""Storage of the accounts router: the server-side dependency its callers must not need.

The tests run a caller in a fresh interpreter where importing this module fails,
as it would where the server's storage libraries are not installed.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid

from tests.proxy_fixtures.models import Account, NewAccount

# A fixed timestamp keeps results comparable between two calls.
OPENED_AT = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)


class Ledger:
    """Accounts kept in memory, safe to use from handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[int, Account] = {}

    def open(self, new_account: NewAccount) -> Account:
        """Store a new account under the next free id and return it."""
        with self._lock:
            account = Account(
                id=len(self._accounts) + 1,
                display_name=new_account.display_name,
                plan=new_account.plan,
                opened_at=OPENED_AT,
                token=uuid.uuid5(uuid.NAMESPACE_OID, new_account.display_name),
            )
            self._accounts[account.id] = account
            return account

    def get(self, account_id: int) -> Account:
        """Return the account with `account_id`; raises KeyError if there is none."""
        with self._lock:
            return self._accounts[account_id]

    def all(self) -> list[Account]:
        """Return every account in id order."""
        with self._lock:
            return [self._accounts[key] for key in sorted(self._accounts)]


def get_ledger() -> Ledger:
    """FastAPI dependency; the tests override it with a fresh ledger per app."""
    return Ledger()
