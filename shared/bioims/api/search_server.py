"""The search container's entry point: ``python -m bioims.api.search_server [--host H] [--port P] [--workers N]``.

Serves :func:`bioims.api.http.search_app` (routes generated from :mod:`bioims.contract.search`,
``GET /openapi.json`` documents them; ``/health`` and ``/ready`` for the load balancer) with uvicorn.
It listens on 127.0.0.1 unless told otherwise (the container passes ``--host 0.0.0.0``); requests must
name an allowed Host: localhost, the bound address, and those of ``--allow-host`` or
``BIOIMS_ALLOWED_HOSTS`` (comma-separated; ``*`` for any, behind a load balancer that checks it).

``--workers N`` runs N processes listening on the one port (``SO_REUSEPORT``: the kernel spreads the
connections over them; with one shared socket, the first worker to wake accepts them all): a query uses
one core, so N cores answer N queries at once. Each worker holds its own copy of the indexes and follows
the store (builds, reloads and deletes made through any worker reach the others within a second). The
parent only supervises: when a worker exits, it stops the others and exits with that worker's code (the
container's orchestrator restarts the task).
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING

from .http import SEARCH_MAX_BODY_BYTES, guarded, search_app
from .server import DEFAULT_HOST, Server

if TYPE_CHECKING:
    from starlette.types import ASGIApp

ALLOWED_HOSTS = "BIOIMS_ALLOWED_HOSTS"


def create_app() -> ASGIApp:
    """The guarded search app over the container of this process's settings (each worker builds its own)."""
    from ..index import set_search_threads
    from ..runtime import aws, local
    from ..settings import Settings

    settings = Settings.from_env()
    container = aws(settings, service="search") if settings.runtime == "aws" else local(settings)
    set_search_threads(1)
    hosts = [h.strip() for h in os.environ.get(ALLOWED_HOSTS, "").split(",") if h.strip()]
    return guarded(search_app(container.search), allowed_hosts=hosts, max_body=SEARCH_MAX_BODY_BYTES)


def main(argv: list[str] | None = None) -> int:
    """Run the search service until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m bioims.api.search_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("BIOIMS_SEARCH_WORKERS", "1")),
                        help="processes answering queries, one per core (default: BIOIMS_SEARCH_WORKERS or 1)")
    parser.add_argument("--allow-host", action="append", default=[], metavar="HOST",
                        help="a Host header to accept besides localhost and --host (repeatable; * for any)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ[ALLOWED_HOSTS] = ",".join([args.host, *args.allow_host,
                                          *filter(None, os.environ.get(ALLOWED_HOSTS, "").split(","))])
    if args.workers == 1:
        Server(create_app(), args.host, args.port).run()
        return 0
    if args.port == 0:
        parser.error("--workers > 1 needs a --port (the workers bind the same one)")
    return supervise(args.workers, args.host, args.port)


def serve_worker(host: str, port: int) -> None:
    """One worker process: its own app and container on the shared port."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Server(create_app(), host, port, reuse_port=True).run()


def supervise(workers: int, host: str, port: int) -> int:
    """Start ``workers`` worker processes, stop them all on SIGTERM/SIGINT or when one exits; its exit code."""
    import multiprocessing
    import signal
    import time

    context = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no forked threads or locks
    processes = [context.Process(target=serve_worker, args=(host, port), name=f"search-worker-{i}")
                 for i in range(workers)]
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, frame: stopping.append(number))
    for process in processes:
        process.start()
    while not stopping and all(p.is_alive() for p in processes):
        time.sleep(0.2)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    return 0 if stopping else next((p.exitcode or 1 for p in processes if p.exitcode not in (None, 0)), 0)


if __name__ == "__main__":
    raise SystemExit(main())
