"""A router whose handler names a class defined inside a function, which no client can import.

This module does not use `from __future__ import annotations`, so the handler's
hints are objects that resolve even though the class is local.
"""

from pydantic import BaseModel

from tasq_fastapi import TasqRouter


def make_router() -> TasqRouter:
    """Return a router with one handler that takes a function-local model."""
    router = TasqRouter("local")

    class Local(BaseModel):
        value: int

    @router.method()
    async def make(local: Local) -> int:
        return local.value

    return router
