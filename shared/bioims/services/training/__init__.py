"""The training service: embedding specs, train runs and their models."""

from .service import TrainingService

__all__ = ["TrainingService"]
