"""The artifact service: the artifact registry, configuration parameters with history, message logs."""

from .service import ArtifactService

__all__ = ["ArtifactService"]
