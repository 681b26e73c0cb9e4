"""The one module that decides where objects live under the artifact root.

Every stored object's URI is built here, so the layout can be read (and changed) in one place::

    {root}/plates/{plate_id}/thumbnails/{image_id}-{width}.png
"""

from __future__ import annotations

from .objects import join


class Keys:
    """URIs of stored objects under ``root`` (``file:///...`` or ``s3://bucket/prefix``)."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    def thumbnail(self, plate_id: str, image_id: str, width: int) -> str:
        """Colour max-projection PNG of a field, ``width`` pixels wide."""
        return join(self.root, "plates", plate_id, "thumbnails", f"{image_id}-{width}.png")
