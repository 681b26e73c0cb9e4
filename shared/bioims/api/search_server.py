"""The search container's entry point: ``python -m bioims.api.search_server [--host H] [--port P]``.

Serves :func:`bioims.api.http.search_app` (routes generated from :mod:`bioims.contract.search`,
``GET /openapi.json`` documents them; ``/health`` and ``/ready`` for the load balancer) with uvicorn.
It listens on 127.0.0.1 unless told otherwise (the container passes ``--host 0.0.0.0``); requests must
name an allowed Host: localhost, the bound address, and those of ``--allow-host`` or
``BIOIMS_ALLOWED_HOSTS`` (comma-separated; ``*`` for any, behind a load balancer that checks it).
"""

from __future__ import annotations

import argparse
import logging
import os

from .http import SEARCH_MAX_BODY_BYTES, guarded, search_app
from .server import DEFAULT_HOST, Server


def main(argv: list[str] | None = None) -> int:
    """Run the search service until interrupted."""
    from ..index import set_search_threads
    from ..runtime import aws, local
    from ..settings import Settings

    parser = argparse.ArgumentParser(prog="python -m bioims.api.search_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--allow-host", action="append", default=[], metavar="HOST",
                        help="a Host header to accept besides localhost and --host (repeatable; * for any)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    container = aws(settings, service="search") if settings.runtime == "aws" else local(settings)
    set_search_threads(1)
    hosts = [args.host, *args.allow_host,
             *(h.strip() for h in os.environ.get("BIOIMS_ALLOWED_HOSTS", "").split(",") if h.strip())]
    Server(guarded(search_app(container.search), allowed_hosts=hosts, max_body=SEARCH_MAX_BODY_BYTES),
           args.host, args.port).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
