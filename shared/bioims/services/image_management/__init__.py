"""The image-management service: plates, wells, images, ingestion, inspection, thumbnails, preprocessing."""

from .preprocessing import PreprocessingService
from .service import ImageManagementService

__all__ = ["ImageManagementService", "PreprocessingService"]
