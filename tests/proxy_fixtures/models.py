"""Types shared by the accounts router and its generated client; imports only pydantic."""

from __future__ import annotations

import datetime as dt
import enum
import uuid

from pydantic import BaseModel, Field


class Plan(enum.Enum):
    """Billing plan of an account."""

    FREE = "free"
    PRO = "pro"


class NewAccount(BaseModel):
    """Fields a caller sends to open an account; `display_name` travels as "displayName"."""

    display_name: str = Field(alias="displayName", min_length=1)
    plan: Plan = Plan.FREE


class Account(BaseModel):
    """A stored account."""

    id: int
    display_name: str
    plan: Plan
    opened_at: dt.datetime
    token: uuid.UUID
