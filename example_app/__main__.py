"""Run the one-process example: `python -m example_app [--host H] [--port P]`."""

from __future__ import annotations

import argparse
import os

import uvicorn

from example_app.settings import LOG_LEVEL_VARIABLE


def main() -> None:
    """Parse the options and serve `example_app.main:app` with uvicorn until stopped."""
    parser = argparse.ArgumentParser(
        prog="python -m example_app",
        description="Run the example gateway and user service in one process. Without REDIS_URL, "
        "an embedded valkey-server is started and stopped with the app.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port to listen on (default: 8000)")
    parser.add_argument(
        "--log-level", default="info", help="log level of the app and uvicorn (default: info)"
    )
    options = parser.parse_args()

    os.environ[LOG_LEVEL_VARIABLE] = options.log_level
    uvicorn.run("example_app.main:app", host=options.host, port=options.port, log_level=options.log_level)


if __name__ == "__main__":
    main()
