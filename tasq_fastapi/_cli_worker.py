"""`tasq worker module:app`: serve an app's Tasq routers without an HTTP server.

The app's lifespan runs as under uvicorn, so the Tasq client connects and the
servers start exactly as they would in a web process; the worker endpoints are
simply never reachable. SIGINT or SIGTERM starts a graceful stop: servers stop
taking tasks and running handlers get the extension's grace period. A second
signal cancels the shutdown and exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import logging
import os
import signal
import sys
from typing import Any

from fastapi import FastAPI

from ._cli_common import CliError, ExitCode
from ._cli_lifespan import AsgiLifespan
from ._depends import TasqRouterConfigError
from ._fastapi import TasqExtension, TasqLifecycleError, TasqStartupError

logger = logging.getLogger(__name__)

SERVER_CHECK_INTERVAL_S = 1.0
"""Seconds between two checks that every server loop is still alive."""

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def load_app(spec: str) -> FastAPI:
    """Import the FastAPI app named by `spec` ("package.module:attribute", dotted attributes allowed).

    The current directory is put on `sys.path` first, as uvicorn does, so that the
    modules of the project the command runs in can be imported.

    Raises:
        CliError: with `ExitCode.USAGE` for a malformed spec, a module or attribute
            that does not exist, or an object that is not a FastAPI app.
    """
    module_name, colon, attribute_path = spec.partition(":")
    if not colon or not module_name or not attribute_path:
        raise CliError(
            f"Invalid app {spec!r}: write it as module:attribute, e.g. example_app.worker:app.",
            ExitCode.USAGE,
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())

    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise
        raise CliError(
            f"Cannot import module {module_name!r}: {exc}. Run tasq from the directory that contains it, "
            "or install its package.",
            ExitCode.USAGE,
        ) from None
    except Exception as exc:
        # The module exists but fails while it is imported: report it as a bad app.
        raise CliError(
            f"Importing module {module_name!r} failed: {type(exc).__name__}: {exc}", ExitCode.USAGE
        ) from None

    for name in attribute_path.split("."):
        if not hasattr(target, name):
            raise CliError(f"Module {module_name!r} has no attribute {attribute_path!r}.", ExitCode.USAGE)
        target = getattr(target, name)

    if not isinstance(target, FastAPI):
        raise CliError(
            f"{spec} is a {type(target).__name__}, not a FastAPI app. Point at a TasqFastAPI or at a "
            "FastAPI app with a TasqExtension.",
            ExitCode.USAGE,
        )
    return target


async def run_worker(options: argparse.Namespace) -> ExitCode:
    """Serve the routers of the app `options.app` until SIGINT or SIGTERM.

    Returns `ExitCode.OK` after a graceful stop and `ExitCode.FAILURE` when a server
    loop died. Raises CliError when the app cannot be loaded or cannot start.
    """
    app = load_app(options.app)
    try:
        extension = TasqExtension.of(app)
    except TasqLifecycleError as exc:
        raise CliError(f"{options.app}: {exc}", ExitCode.USAGE) from None
    if not extension.routers:
        logger.warning("App %s includes no Tasq routers, so this worker serves nothing", options.app)

    stop = asyncio.Event()
    _install_signal_handlers(stop, asyncio.current_task())
    lifespan = AsgiLifespan(app)
    await _start(lifespan, options.app)
    # This process is the worker's own: what start-up created (modules, the app, its
    # clients) lives until the end, so full garbage collections may skip it. Under
    # load they otherwise walk it every few seconds, a pause of tens of milliseconds
    # that every request in flight waits out.
    gc.collect()
    gc.freeze()
    logger.info(
        "Worker for %s serving topics %s; stop it with SIGINT or SIGTERM",
        options.app,
        [server.topic for server in extension.servers],
    )

    code = await _serve_until_stopped(extension, lifespan, stop)
    logger.info("Worker stopping: running handlers may finish within the app's grace period")
    await lifespan.shutdown()
    logger.info("Worker stopped")
    return code


async def _start(lifespan: AsgiLifespan, spec: str) -> None:
    try:
        await lifespan.startup()
    except TasqStartupError as exc:
        raise CliError(f"{spec} could not start: {exc}", ExitCode.CONNECTION) from None
    except TasqRouterConfigError as exc:
        raise CliError(f"{spec} has a handler Tasq cannot serve: {exc}", ExitCode.FAILURE) from None
    except Exception as exc:
        logger.debug("Startup of %s failed", spec, exc_info=True)
        raise CliError(f"{spec} could not start: {type(exc).__name__}: {exc}", ExitCode.CONNECTION) from None


async def _serve_until_stopped(
    extension: TasqExtension, lifespan: AsgiLifespan, stop: asyncio.Event
) -> ExitCode:
    # A dead server loop takes no more tasks, so the worker exits with an error and
    # leaves the restart to its supervisor instead of idling on as a live process.
    ended = asyncio.create_task(lifespan.wait_ended())
    try:
        while not stop.is_set():
            dead = [server.topic for server in extension.servers if not server.is_alive]
            if dead:
                logger.error("Server loops of topics %s died; the worker stops", dead)
                return ExitCode.FAILURE
            if ended.done():
                logger.error("The app's lifespan ended while the worker was serving; the worker stops")
                return ExitCode.FAILURE
            try:
                await asyncio.wait_for(stop.wait(), SERVER_CHECK_INTERVAL_S)
            except TimeoutError:
                continue
        return ExitCode.OK
    finally:
        ended.cancel()


def _install_signal_handlers(stop: asyncio.Event, main_task: asyncio.Task[Any] | None) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signal_number: int) -> None:
        name = signal.Signals(signal_number).name
        if not stop.is_set():
            logger.info("Received %s; stopping gracefully (send it again to stop at once)", name)
            stop.set()
            return
        logger.warning("Received %s again; stopping at once without waiting for handlers", name)
        if main_task is not None:
            main_task.cancel()

    for signal_number in _STOP_SIGNALS:
        # NOTE: add_signal_handler exists only on Unix event loops; elsewhere Ctrl-C
        # raises KeyboardInterrupt, which ends the worker without a graceful stop.
        try:
            loop.add_signal_handler(signal_number, on_signal, signal_number)
        except NotImplementedError:
            return
