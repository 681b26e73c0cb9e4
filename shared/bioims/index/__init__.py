"""FAISS index build, persistence and filtered search (pure numpy + faiss; no AWS imports).

``VectorIndex.build(vectors, ids, tags)`` -> ``index.search(query, k, include=..., exclude=...)``;
``index.to_parts()`` / ``VectorIndex.from_parts(parts)`` persist it as bytes plus a JSON sidecar.
"""

from .tags import MOA_PREFIX, Allowed, TagTable
from .vector_index import (FLAT_MAX, KINDS, METRICS, PARTS, RECALL_TARGET, Kind, Metric, VectorIndex,
                           set_search_threads)

__all__ = ["FLAT_MAX", "KINDS", "METRICS", "MOA_PREFIX", "PARTS", "RECALL_TARGET", "Allowed", "Kind", "Metric",
           "TagTable", "VectorIndex", "set_search_threads"]
