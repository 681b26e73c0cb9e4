"""One package per service: its use-cases (``service.py``), ITS OWN tables (``tables.py``); :mod:`.ports`
says what a service needs of the others. No service package imports another (import contracts, checked
in ``make test``)."""
