"""The API layer: the operation table, Chalice apps generated from it, and the local HTTP server.

- :mod:`.operations` — every operation of every service, and :func:`~.operations.dispatch`;
- :mod:`.chalice_app` — :func:`~.chalice_app.create_app` (routes + the ``{"method": ...}`` Lambda handler);
- :mod:`.server` — ``bioims serve``: every service's API behind one address, one path prefix each.
"""
