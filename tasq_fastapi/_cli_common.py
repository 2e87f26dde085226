"""Exit codes, errors and Redis settings shared by the commands of the `tasq` command line."""

from __future__ import annotations

import enum
import os

REDIS_URL_VARIABLE = "REDIS_URL"
"""Environment variable read for the Redis URL when `--redis-url` is not given."""


class ExitCode(enum.IntEnum):
    """Exit status of the `tasq` command, one per class of failure."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    CONNECTION = 3
    TIMEOUT = 4
    UNKNOWN_METHOD = 5
    REJECTED = 6
    INVALID_ARGS = 7


EXIT_CODES_HELP = """exit status:
  0  success
  1  any other failure
  2  invalid usage: bad option, invalid JSON args, missing Redis URL, bad app path
  3  Redis unreachable, failed during the request, or the app could not start
  4  timed out: no reply before the deadline
  5  unknown method: the server has no handler for it
  6  rejected: the handler raised an error
  7  invalid args: the handler rejected the args
  130  interrupted by Ctrl-C (SIGINT)"""


class CliError(Exception):
    """A failure the command reports on stderr as `tasq: <message>` before exiting with `code`."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


def resolve_redis_url(option: str | None) -> str:
    """Return the Redis URL from `--redis-url`, else from `REDIS_URL`.

    Raises:
        CliError: with `ExitCode.USAGE` when neither is set or both are empty.
    """
    url = option or os.environ.get(REDIS_URL_VARIABLE)
    if not url:
        raise CliError(
            f"No Redis URL given. Pass --redis-url redis://host:6379/0 or set {REDIS_URL_VARIABLE}.",
            ExitCode.USAGE,
        )
    return url
