"""Worker-only app: serves the user service and the worker endpoints, nothing else.

Run with `uvicorn example_app.worker:app` next to `example_app.gateway`, both
with REDIS_URL set to the same Redis. Start more workers to share the load:
each task goes to exactly one of them.
"""

from __future__ import annotations

from example_app import users
from example_app.settings import configure_logging, required_redis_url
from tasq_fastapi import TasqFastAPI


def create_app() -> TasqFastAPI:
    """Build the worker app; it connects to REDIS_URL when it starts."""
    configure_logging()
    app = TasqFastAPI(title="Example user service worker", tasq_redis=required_redis_url)
    app.include_tasq_router(users.router)
    return app


app = create_app()
