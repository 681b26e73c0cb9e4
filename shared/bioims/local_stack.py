"""The local stack: dynalite (DynamoDB on LevelDB) under ``$BIOIMS_HOME/stack``.

``bioims up`` starts it detached on a free 127.0.0.1 port and records ``{"pid", "port"}`` in
``stack/dynalite.json``; any command that needs tables starts it on demand; ``bioims down`` stops it.
The data directory survives restarts. Starting is serialised by a file lock, so concurrent commands
share one server.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from typing import Any
from collections.abc import Iterator
from urllib.parse import urlsplit

from .errors import BioimsError
from .settings import Settings


class StackError(BioimsError):
    code = "StackError"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def reachable(url: str, timeout: float = 0.5) -> str:
    """``url`` if a server accepts connections at its host and port.

    The recovery of a table server that bioims did not start (``BIOIMS_DYNAMODB_URL``): it cannot be
    restarted, but a call to it can fail fast instead of retrying against a closed port.

    Raises
    ------
    StackError
        If nothing accepts connections there.
    """
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout):
            return url
    except OSError as e:
        raise StackError(f"nothing accepts connections at {url} ({e.strerror or e}); it was set by "
                         "BIOIMS_DYNAMODB_URL, so bioims cannot restart it") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as dead
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


class LocalStack:
    """Start, stop and describe the dynalite server of one ``BIOIMS_HOME``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.state_dir
        self.data_dir = self.dir / "dynalite"
        self.state_file = self.dir / "dynalite.json"
        self.log_file = self.dir / "dynalite.log"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _state(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if _alive(int(state["pid"])) and _listening(int(state["port"])):
            return state
        return None

    def url(self) -> str | None:
        state = self._state()
        return f"http://127.0.0.1:{state['port']}" if state else None

    def status(self) -> dict[str, Any]:
        state = self._state()
        return {
            "running": state is not None,
            "pid": state["pid"] if state else None,
            "url": f"http://127.0.0.1:{state['port']}" if state else None,
            "home": str(self.settings.home),
            "data": str(self.data_dir),
            "table_prefix": self.settings.table_prefix,
        }

    def up(self, timeout: float = 20.0) -> str:
        """Start dynalite if it is not running (idempotent); returns its URL."""
        with self._lock():
            url = self.url()
            if url:
                return url
            node = shutil.which("node")
            if node is None:
                raise StackError("Node.js (node) is not installed; it runs dynalite, the local DynamoDB")
            cli = self.settings.dynalite_cli
            if not cli.is_file():
                raise StackError(f"dynalite is not installed at {cli}: run `npm ci` in the repository "
                                 "(or `make setup`), or set BIOIMS_DYNALITE to its cli.js")
            self.data_dir.mkdir(parents=True, exist_ok=True)
            port = free_port()
            with open(self.log_file, "ab") as log:
                proc = subprocess.Popen(
                    [node, str(cli), "--host", "127.0.0.1", "--port", str(port), "--path", str(self.data_dir),
                     "--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + timeout
            while not _listening(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    tail = self.log_file.read_text(errors="replace")[-800:]
                    raise StackError(f"dynalite did not start (see {self.log_file}):\n{tail}")
                time.sleep(0.05)
            self.state_file.write_text(json.dumps({"pid": proc.pid, "port": port}))
            return f"http://127.0.0.1:{port}"

    def down(self, timeout: float = 10.0) -> bool:
        """Stop dynalite (idempotent); returns whether it was running. Data is kept."""
        with self._lock():
            state = self._state()
            self.state_file.unlink(missing_ok=True)
            if state is None:
                return False
            pid = int(state["pid"])
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
            return True

