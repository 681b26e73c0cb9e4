"""Profiles: per-field, well and treatment feature tables in pycytominer's conventions
(``Metadata_*`` columns + feature columns, DataFrame in, DataFrame out)."""
