"""The `tasq` command line: call methods, inspect topics and run worker processes.

Run `tasq --help` or `python -m tasq_fastapi.cli --help`; each command has its own
`--help`. docs/cli.md describes the commands with examples.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
from collections.abc import Sequence

from . import _codegen
from ._cli_call import run_call
from ._cli_common import EXIT_CODES_HELP, REDIS_URL_VARIABLE, CliError, ExitCode, resolve_redis_url
from ._cli_inspect import run_inspect
from ._cli_worker import run_worker

__all__ = ["build_parser", "main"]

DEFAULT_TIMEOUT_S = 10.0
"""Default `tasq call --timeout`, in seconds."""

DEFAULT_CONNECT_TIMEOUT_S = 5.0
"""Default `--connect-timeout`, in seconds."""

EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C outside the worker's graceful stop, as shells report SIGINT."""

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the `tasq` command and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="tasq",
        description="Call Tasq methods, inspect topics and run worker processes through Redis.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_call_parser(commands)
    _add_inspect_parser(commands)
    _add_worker_parser(commands)
    _add_client_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `tasq` command with `argv` (default: `sys.argv[1:]`) and return its exit status.

    Errors are printed to stderr as `tasq: <message>`; the exit statuses are listed
    by `tasq --help`. argparse exits with status 2 on invalid options by itself.
    """
    options = build_parser().parse_args(argv)
    default_level = "INFO" if options.command == "worker" else "WARNING"
    logging.basicConfig(
        level=options.log_level or default_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )

    try:
        return int(asyncio.run(_run(options)))
    except CliError as exc:
        if getattr(options, "json", False):
            # Scripts that asked for JSON parse stderr too, whatever went wrong.
            body = {"type": exc.code.name.lower(), "message": str(exc), "exit_status": int(exc.code)}
            sys.stderr.write(json.dumps({"error": body}) + "\n")
        else:
            sys.stderr.write(f"tasq: {exc}\n")
        return int(exc.code)
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.stderr.write("tasq: interrupted\n")
        return EXIT_INTERRUPTED


async def _run(options: argparse.Namespace) -> ExitCode:
    if options.command == "client":
        return ExitCode(_codegen.run(options))
    if options.command == "worker":
        return await run_worker(options)
    redis_url = resolve_redis_url(options.redis_url)
    if options.command == "call":
        return await run_call(options, redis_url, sys.stdout, sys.stderr)
    return await run_inspect(options, redis_url, sys.stdout, sys.stderr)


def _add_common_options(parser: argparse.ArgumentParser, *, redis: bool) -> None:
    if redis:
        parser.add_argument(
            "--redis-url",
            metavar="URL",
            help=(
                f"Redis to use (default: ${REDIS_URL_VARIABLE}): redis://, rediss://, unix://, "
                "redis+cluster://host:port,... or redis+sentinel://host:port,.../service/db"
            ),
        )
        parser.add_argument(
            "--connect-timeout",
            type=_positive_seconds,
            default=DEFAULT_CONNECT_TIMEOUT_S,
            metavar="SECONDS",
            help="maximum time to connect to Redis, in seconds (default: %(default)s)",
        )
    parser.add_argument(
        "--log-level",
        choices=_LOG_LEVELS,
        type=str.upper,
        help="level of the log lines written to stderr (default: WARNING, INFO for worker)",
    )


def _add_call_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "call",
        help="call a method and print its result",
        description=(
            "Send one request to a server of TOPIC and print the result on stdout, or the error on "
            "stderr with an exit status that names its class."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("topic", metavar="TOPIC", help="topic whose servers take the request")
    parser.add_argument("method", metavar="METHOD", help="method to call")
    parser.add_argument(
        "args_json",
        metavar="ARGS-JSON",
        nargs="?",
        help="args as JSON, such as '{\"id\": 1}' or '[1, 2]'; '-' reads them from stdin; "
        "without it the request carries no args",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="time the server has to reply, in seconds; it becomes the request's deadline "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the result (and an error, on stderr) as one line of JSON; "
        'bytes become {"$bytes": "<base64>"}, datetimes ISO 8601 text',
    )
    _add_common_options(parser, redis=True)


def _add_inspect_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "inspect",
        help="show queued tasks and live servers of topics",
        description=(
            "Show, per topic, the number of queued tasks, how long the next one has waited, the "
            "at-least-once tasks running under a lease, and the live servers. Without TOPIC, every "
            "topic is found by SCANning the keyspace (every primary of a Redis Cluster); on a "
            "terminal, progress is shown on stderr."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("topics", metavar="TOPIC", nargs="*", help="topics to show (default: all found)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    _add_common_options(parser, redis=True)


def _add_worker_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "worker",
        help="serve an app's Tasq routers without HTTP",
        description=(
            "Import a FastAPI app with a TasqExtension (such as a TasqFastAPI), run its lifespan so "
            "that its Tasq routers are served, and stop gracefully on SIGINT or SIGTERM: servers "
            "stop taking tasks and running handlers get the app's grace period (tasq_grace_s). "
            "The app's own settings choose the Redis; the module is imported with the current "
            "directory on sys.path."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("app", metavar="MODULE:APP", help="the app to serve, such as example_app.worker:app")
    _add_common_options(parser, redis=False)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _add_client_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "client",
        help="write a typed client module for a router's handlers",
        description=(
            "Import a TasqRouter and write a module with a typed client class whose async methods "
            "have the handlers' signatures. Exit status 0 on success, 1 when --check finds the "
            "output out of date, 2 when the router cannot be turned into a client."
        ),
    )
    _codegen.add_arguments(parser)
    parser.add_argument(
        "--log-level",
        choices=_LOG_LEVELS,
        type=str.upper,
        help="level of the log lines written to stderr (default: WARNING)",
    )


if __name__ == "__main__":
    sys.exit(main())
