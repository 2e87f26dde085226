"""Call services through Redis as if calling an async function.

tasq-fastapi speaks the wire protocol of the Node.js library ``@kirick/tasq`` 0.3,
so Python and Node.js services can call each other through one Redis.
"""

from ._client import Tasq, create_tasq
from ._context import TasqRequestContext, get_request_context
from ._errors import (
    TasqConnectionError,
    TasqEncodeError,
    TasqError,
    TasqInvalidArgsError,
    TasqProtocolError,
    TasqRequestError,
    TasqRequestInvalidArgsError,
    TasqRequestRejectedError,
    TasqRequestTimeoutError,
    TasqRequestUnknownMethodError,
)
from ._observer import TasqObserver
from ._server import TasqServer

__all__ = [
    "Tasq",
    "TasqConnectionError",
    "TasqEncodeError",
    "TasqError",
    "TasqInvalidArgsError",
    "TasqObserver",
    "TasqProtocolError",
    "TasqRequestContext",
    "TasqRequestError",
    "TasqRequestInvalidArgsError",
    "TasqRequestRejectedError",
    "TasqRequestTimeoutError",
    "TasqRequestUnknownMethodError",
    "TasqServer",
    "create_tasq",
    "get_request_context",
]
