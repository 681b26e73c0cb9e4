"""The embedding service: a train run's model over every preprocessed field (it owns no table)."""

from .service import EmbeddingService

__all__ = ["EmbeddingService"]
