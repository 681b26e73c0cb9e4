"""The search service: FAISS indexes and searches, and the profile sets they may index."""

from .profiles import ProfileSets
from .service import SearchService

__all__ = ["ProfileSets", "SearchService"]
