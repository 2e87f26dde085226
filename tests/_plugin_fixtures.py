"""Helpers for tests of the FastAPI plugin: run an app's lifespan and call it over ASGI."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

# Seconds an app's startup or shutdown may take in tests before the test fails.
LIFESPAN_TIMEOUT_S = 30.0


def unique_topic(label: str = "plugin") -> str:
    """Return a topic name no other test uses."""
    return f"test-{label}-{uuid.uuid4().hex}"


@asynccontextmanager
async def running_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run `app`'s lifespan and yield an HTTP client that calls the app in process."""
    async with LifespanManager(
        app, startup_timeout=LIFESPAN_TIMEOUT_S, shutdown_timeout=LIFESPAN_TIMEOUT_S
    ) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
            yield client
