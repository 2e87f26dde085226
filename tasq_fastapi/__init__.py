"""Call services through Redis as if calling an async function.

tasq-fastapi speaks the wire protocol of the Node.js library ``@kirick/tasq`` 0.3,
so Python and Node.js services can call each other through one Redis. The core is
:func:`create_tasq` (a client that also runs servers); the FastAPI plugin is
:class:`TasqFastAPI` (or :class:`TasqExtension` on any FastAPI app) with
:class:`TasqRouter` and :func:`get_tasq`.
"""

from ._app import TasqFastAPI
from ._client import Tasq, create_tasq
from ._codegen import generate_client
from ._codegen_types import TasqCodegenError
from ._context import TasqLogFilter, TasqRequestContext, get_request_context
from ._convert import TasqResultConversionError
from ._depends import TasqRouterConfigError
from ._embedded import EmbeddedRedis, EmbeddedRedisError
from ._endpoints import TasqEndpoints
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
from ._fastapi import (
    TasqExtension,
    TasqExtensionState,
    TasqLifecycleError,
    TasqStartupError,
    get_tasq,
    include_tasq_router,
)
from ._metrics import TasqMetrics
from ._observer import TasqObserver
from ._proxy import SERVER_DEFAULT, TasqProxy, TasqResultValidationError
from ._router import TasqRouter
from ._server import TasqServer

__all__ = [
    "SERVER_DEFAULT",
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "Tasq",
    "TasqCodegenError",
    "TasqConnectionError",
    "TasqEncodeError",
    "TasqEndpoints",
    "TasqError",
    "TasqExtension",
    "TasqExtensionState",
    "TasqFastAPI",
    "TasqInvalidArgsError",
    "TasqLifecycleError",
    "TasqLogFilter",
    "TasqMetrics",
    "TasqObserver",
    "TasqProtocolError",
    "TasqProxy",
    "TasqRequestContext",
    "TasqRequestError",
    "TasqRequestInvalidArgsError",
    "TasqRequestRejectedError",
    "TasqRequestTimeoutError",
    "TasqRequestUnknownMethodError",
    "TasqResultConversionError",
    "TasqResultValidationError",
    "TasqRouter",
    "TasqRouterConfigError",
    "TasqServer",
    "TasqStartupError",
    "create_tasq",
    "generate_client",
    "get_request_context",
    "get_tasq",
    "include_tasq_router",
]
