"""The ``bioims`` command line (contract: ``../shared/design/CLI.md``).

Every command accepts ``--json`` and then prints exactly one JSON document on stdout; logs and progress
bars go to stderr. Exit codes: 0 success, 1 failure (one-line reason on stderr), 2 usage error.
A job (``plate process``, ``preprocess``, ``train``, ``embed``) that failed any of its units still
prints its result, then exits 1 with a one-line summary such as ``error: preprocess: 2 of 40 fields
failed (first: IMAGE_ID: reason)``. An unexpected error's traceback goes to a log file under
``$BIOIMS_HOME/logs`` that the line names, or to stderr with ``bioims --debug``.
Commands that need the local stack start it on demand.
"""

from . import config, learning, plates, search, stack  # noqa: F401 - each registers its commands on main
from .base import main

__all__ = ["main"]
