"""The user service: handlers on Tasq topic "users", backed by an in-memory store."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Annotated

from fastapi import Depends
from pydantic import BaseModel, Field

from tasq_fastapi import TasqRequestContext, TasqRouter

logger = logging.getLogger(__name__)

TOPIC = "users"

router = TasqRouter(TOPIC, threads=8)


class NewUser(BaseModel):
    """Fields a caller sends to create a user."""

    name: str = Field(min_length=1, max_length=100)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)


class User(NewUser):
    """A stored user."""

    id: int
    created_at: dt.datetime


class UserNotFoundError(LookupError):
    """No user has the requested id; the gateway turns it into HTTP 404."""


class UserStore:
    """Users kept in memory, safe to use from several threads.

    Data lives only as long as the process: this is an example, not storage.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[int, User] = {}
        self._next_id = 1

    def add(self, new_user: NewUser) -> User:
        """Store `new_user` under the next free id and return it."""
        with self._lock:
            user = User(id=self._next_id, created_at=dt.datetime.now(dt.UTC), **new_user.model_dump())
            self._users[user.id] = user
            self._next_id += 1
            return user

    def get(self, user_id: int) -> User:
        """Return the user with `user_id`.

        Raises:
            UserNotFoundError: if there is none.
        """
        with self._lock:
            user = self._users.get(user_id)
        if user is None:
            raise UserNotFoundError(f"User {user_id} does not exist.")
        return user

    def page(self, limit: int, offset: int) -> list[User]:
        """Return up to `limit` users in id order, skipping the first `offset`."""
        with self._lock:
            ordered = sorted(self._users.values(), key=lambda user: user.id)
        return ordered[offset : offset + limit]


def _seeded_store() -> UserStore:
    store = UserStore()
    store.add(NewUser(name="Ada Lovelace", email="ada@example.com"))
    store.add(NewUser(name="Alan Turing", email="alan@example.com"))
    return store


_store = _seeded_store()


def get_store() -> UserStore:
    """FastAPI dependency giving handlers the process's user store; tests override it."""
    return _store


StoreDep = Annotated[UserStore, Depends(get_store)]


@router.method()
async def get(user_id: int, store: StoreDep) -> User:
    """Return one user; raises UserNotFoundError for an unknown id."""
    return store.get(user_id)


@router.method("list")
async def list_users(
    store: StoreDep,
    limit: Annotated[int, Field(ge=1, le=100)] = 20,
    offset: Annotated[int, Field(ge=0)] = 0,
) -> list[User]:
    """Return a page of users in id order."""
    return store.page(limit, offset)


@router.method()
def create(new_user: NewUser, store: StoreDep, context: TasqRequestContext) -> User:
    """Validate and store a user; a plain function, so it runs in a worker thread."""
    user = store.add(new_user)
    logger.info("Created user id=%d request_id=%s", user.id, context.request_id)
    return user
