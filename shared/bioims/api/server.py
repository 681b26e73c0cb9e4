"""``bioims serve``: every service's HTTP API on one address, one path prefix per service (uvicorn).

``/artifact/...``, ``/image-management/...``, ``/tags/...``, ``/training/...`` and ``/embedding/...`` are
answered by each service's Chalice app, ``/search/...`` by the search API; ``GET /health`` answers
``{"status": "ok", "services": [...]}``; each service documents itself at ``/<service>/openapi.json``.
See :mod:`bioims.api.http` for the apps and the guards that keep the server local (Host allow-list,
JSON-only bodies, no CORS).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

import uvicorn

from .http import local_app

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from ..runtime import Container

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
_log = logging.getLogger(__name__)


class Server:
    """An ASGI app served by uvicorn (httptools, uvloop where installed) on ``host:port``.

    The socket is bound at construction (``port=0`` picks a free port: see :attr:`url`; ``reuse_port``
    lets other processes bind the same port, see :mod:`bioims.api.search_server`); :meth:`run` serves until
    :meth:`stop` is called from another thread (or until Ctrl-C / SIGTERM).
    """

    OPTIONS = {"http": "httptools", "loop": "auto", "lifespan": "off", "access_log": False, "log_level": "warning",
               "timeout_keep_alive": 30, "server_header": False, "proxy_headers": False}
    """uvicorn settings of every bioims server (no access log, no ``Server`` header, no proxy headers)."""

    def __init__(self, app: ASGIApp, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 reuse_port: bool = False) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:  # several processes listen on one port; the kernel spreads the connections over them
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self._socket.bind((host, port))
        self._socket.listen(2048)  # connections wait in the backlog until uvicorn's loop accepts them
        self.host, self.port = self._socket.getsockname()[:2]
        self._server = uvicorn.Server(uvicorn.Config(app, **self.OPTIONS))  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        """``http://host:port`` of the bound socket."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def run(self) -> None:
        """Serve in this thread until :meth:`stop` (or Ctrl-C)."""
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._socket.close()

    def stop(self) -> None:
        """Make :meth:`run` return (open connections are closed)."""
        self._server.should_exit = True


class LocalServer(Server):
    """Every service's API (:func:`~bioims.api.http.local_app`) over one container.

    ``allowed_hosts`` are accepted in the Host header besides the localhost names and ``host`` itself.
    """

    def __init__(self, container: Container, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 *, allowed_hosts: Iterable[str] = ()) -> None:
        super().__init__(local_app(container, allowed_hosts=[host, *allowed_hosts]), host, port)


def serve(container: Container, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          allowed_hosts: Iterable[str] = ()) -> None:
    """Serve every service's API in the foreground until interrupted."""
    from ..index import set_search_threads

    server = LocalServer(container, host, port, allowed_hosts=allowed_hosts)
    set_search_threads(1)  # single queries: one thread each is fastest (see ENVIRONMENT.md)
    _log.info("serving every service at %s (the web interface: %s/)", server.url, server.url.rstrip("/"))
    server.run()
