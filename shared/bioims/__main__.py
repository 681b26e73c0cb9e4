"""``python -m bioims`` is the ``bioims`` command."""

from .cli import main

main()
