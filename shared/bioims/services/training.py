"""Training service: embedding specs (the seed's "embedding") and, later, train runs and models."""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import PutError

from ..errors import Conflict, InvalidInput, NotFound
from ..ids import utcnow
from ..specs import EmbeddingSpec
from ..store.tables import Tables, condition_failed
from .image_management import compatible_plates


class TrainingService:
    """Use-cases of the training service.

    Parameters
    ----------
    tables : Tables
    """

    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def create_embedding(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Validate and register a spec; :class:`Conflict` if the name is taken."""
        parsed = EmbeddingSpec.from_dict(spec)
        row = self._t.embedding_specs(parsed.name, spec=parsed.to_dict(), created_at=utcnow())
        try:
            row.save(condition=self._t.embedding_specs.name.does_not_exist())
        except PutError as e:
            if not condition_failed(e):
                raise
            raise Conflict(f"embedding spec {parsed.name!r} already exists") from None
        return parsed.to_dict()

    def get_embedding_info(self, name: str) -> dict[str, Any]:
        """The full spec with every default filled in."""
        return self.spec(name).to_dict()

    def list_embeddings(self) -> list[dict[str, Any]]:
        return sorted((r.spec for r in self._t.embedding_specs.scan()), key=lambda s: s["name"])

    def delete_embedding(self, name: str) -> dict[str, str]:
        self.spec(name)
        runs = list(self._t.train_runs.by_spec.query(name, limit=1))
        if runs:
            raise Conflict(f"embedding spec {name!r} has train runs; delete them first")
        self._t.embedding_specs(name).delete()
        return {"deleted": name}

    def get_compatible_plates(self, name: str) -> list[dict[str, Any]]:
        """Validated plates whose images have the spec's dims, channel count and channel names."""
        spec = self.spec(name)
        shape = spec.input
        plates = compatible_plates(self._t, shape.width, shape.height, shape.depth, len(shape.channels))
        return [p for p in plates if tuple(p.get("channels") or ()) == shape.channels]

    def spec(self, name: str) -> EmbeddingSpec:
        """The validated spec object (for the other use-cases; not an API operation)."""
        if not isinstance(name, str) or not name:
            raise InvalidInput("spec name must be a non-empty string")
        try:
            row = self._t.embedding_specs.get(name)
        except self._t.embedding_specs.DoesNotExist:
            raise NotFound(f"no embedding spec {name!r}") from None
        return EmbeddingSpec.from_dict(row.spec)
