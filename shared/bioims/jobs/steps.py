"""Job steps (units of work) and workflows (sequences of steps over a pool)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..runtime import Container


class Pool(Protocol):
    def map(self, step: str, params: list[dict[str, Any]], *, desc: str) -> list[dict[str, Any]]: ...


def inspect_image(c: Container, image_id: str, force: bool = False) -> dict[str, Any]:
    """Read a field's channels; record its dims/dtype or the exact problem on its row."""
    return c.images.inspect_image(image_id, force=force)


def validate_plate(c: Container, plate_id: str) -> dict[str, Any]:
    return c.images.validate_plate(plate_id)


def thumbnails(c: Container, image_id: str, widths: list[int] | None = None) -> dict[str, Any]:
    """Colour max-projection thumbnails of one field, recorded as artifacts."""
    return c.images.make_thumbnails(image_id, widths)


STEPS: dict[str, Callable[..., dict[str, Any]]] = {
    "inspect-image": inspect_image,
    "validate-plate": validate_plate,
    "thumbnails": thumbnails,
}


def process_plate(c: Container, pool: Pool, plate_id: str) -> dict[str, Any]:
    """Inspect every image of a plate, validate the plate, make thumbnails of its valid images."""
    image_ids = c.images.get_image_ids_by_plate_id(plate_id)
    inspected = pool.map("inspect-image", [{"image_id": i} for i in image_ids], desc=f"inspect {plate_id}")
    validation = c.images.validate_plate(plate_id)
    valid = [r["image_id"] for r in inspected if r.get("status") == "valid"]
    made = pool.map("thumbnails", [{"image_id": i} for i in valid], desc=f"thumbnails {plate_id}")
    return {
        "plate_id": plate_id,
        "images": len(image_ids),
        "valid_images": len(valid),
        "invalid_images": sum(r.get("status") == "invalid" for r in inspected),
        "failed": [r for r in inspected + made if "failure" in r],
        "thumbnails": sum(r.get("written", 0) for r in made),
        "validation": validation,
    }


WORKFLOWS: dict[str, Callable[..., dict[str, Any]]] = {
    "process-plate": process_plate,
}
