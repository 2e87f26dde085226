"""HTTP gateway: REST endpoints that call the user service through Tasq.

Run alone with `uvicorn example_app.gateway:app` next to `example_app.worker`,
both with REDIS_URL set to the same Redis.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query

from example_app.settings import configure_logging, required_redis_url
from example_app.users import TOPIC, User
from tasq_fastapi import (
    Tasq,
    TasqEncodeError,
    TasqExtension,
    TasqRequestError,
    TasqRequestInvalidArgsError,
    TasqRequestRejectedError,
    TasqRequestTimeoutError,
    get_tasq,
)

logger = logging.getLogger(__name__)

# Seconds the gateway waits for the user service before responding with 504.
USER_SERVICE_TIMEOUT_S = 5.0

TasqDep = Annotated[Tasq, Depends(get_tasq)]

api = APIRouter(prefix="/users", tags=["users"])


@api.get("/{user_id}", response_model=User)
async def get_user(user_id: int, tasq: TasqDep) -> Any:
    """Return one user, or 404."""
    return await _call(tasq, "get", {"user_id": user_id})


@api.get("", response_model=list[User])
async def list_users(
    tasq: TasqDep,
    limit: Annotated[int, Query()] = 20,
    offset: Annotated[int, Query()] = 0,
) -> Any:
    """Return a page of users; the user service validates `limit` and `offset`."""
    return await _call(tasq, "list", {"limit": limit, "offset": offset})


@api.post("", response_model=User, status_code=201)
async def create_user(tasq: TasqDep, body: Annotated[dict[str, Any], Body()]) -> Any:
    """Create a user; the body goes to the user service as is, which validates it."""
    return await _call(tasq, "create", body)


async def _call(tasq: Tasq, method: str, args: Any) -> Any:
    try:
        return await tasq.request(TOPIC, method, args, timeout=USER_SERVICE_TIMEOUT_S)
    except TasqEncodeError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    except TasqRequestInvalidArgsError as exc:
        raise HTTPException(status_code=422, detail=exc.errors) from exc
    except TasqRequestTimeoutError as exc:
        raise HTTPException(status_code=504, detail="The user service did not respond in time.") from exc
    except TasqRequestRejectedError as exc:
        if exc.remote_type == "UserNotFoundError":
            raise HTTPException(status_code=404, detail=exc.remote_message) from exc
        logger.error("User service rejected %s.%s request_id=%s: %s", TOPIC, method, exc.request_id, exc)
        raise HTTPException(status_code=502, detail="The user service failed.") from exc
    except TasqRequestError as exc:
        logger.error("Calling %s.%s failed request_id=%s: %s", TOPIC, method, exc.request_id, exc)
        raise HTTPException(status_code=502, detail="The user service is unavailable.") from exc


def create_app() -> FastAPI:
    """Build the gateway app; it connects to REDIS_URL when it starts."""
    configure_logging()
    app = FastAPI(title="Example gateway")
    app.include_router(api)
    TasqExtension(app, redis=required_redis_url)
    return app


app = create_app()
