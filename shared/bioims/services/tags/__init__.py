"""The tags service: tags, image-tag assignments, label categories and labels."""

from .service import TagsService

__all__ = ["TagsService"]
