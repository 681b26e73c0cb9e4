"""The one module that decides where objects live under the artifact root.

Every stored object's URI is built here, so the layout can be read (and changed) in one place::

    {root}/plates/{plate_id}/thumbnails/{image_id}-{width}.png
    {root}/specs/{spec}/plates/{plate_id}/flatfield-{channel}.npy
    {root}/specs/{spec}/plates/{plate_id}/fields/{image_id}-crops.npy   (N, C, H, W) uint16
    {root}/specs/{spec}/plates/{plate_id}/fields/{image_id}-rois.json   coordinates, labels, subclasses
    {root}/models/{train_id}/{name}                                      a train run's filter, checkpoints, model
    {root}/embeddings/{train_id}/plates/{plate_id}/{image_id}-cells.npy  (N, D) float32 cell embeddings
    {root}/embeddings/{train_id}/plates/{plate_id}/fields.parquet        the plate's field embeddings + metadata
    {root}/jobs/{job_id}/params.json                                     parameters of an array job
    {root}/profiles/{name}/{level}.parquet                               a named profile set (well, treatment)
    {root}/profiles/{name}/profiles.json                                 its processing and counts
    {root}/indexes/{source}/{level}-{metric}/{version}/{part}            a search index build (FAISS bytes, sidecar...)
    {root}/indexes/{source}/{level}-{metric}/current.json                the version searched (written last)

Every name that becomes a path segment (plate and image ids, spec, channel, train id, index source,
level, metric, object name, job id, profile-set name, thumbnail width, index version and part) must be
one safe segment of :data:`bioims.names.NAME_PATTERN` (letters, digits and ``. _ + -``, the first a
letter or digit, at most 128 characters): a key never leaves its root, whatever a caller passes (the API
validates names first; this is the second line of defence). :func:`~bioims.store.objects.join` checks
the joined key once more.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInput
from ..names import check_name
from .objects import join


def _width(width: Any) -> str:
    """A thumbnail width as a segment: a positive integer."""
    if not isinstance(width, int) or isinstance(width, bool) or width <= 0:
        raise InvalidInput(f"width {width!r} is not a valid thumbnail width: use a positive integer")
    return check_name(str(width), "width")


class Keys:
    """URIs of stored objects under ``root`` (``file:///...`` or ``s3://bucket/prefix``)."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    def thumbnail(self, plate_id: str, image_id: str, width: int) -> str:
        """Colour max-projection PNG of a field, ``width`` pixels wide."""
        plate_id, image_id = check_name(plate_id, "plate id"), check_name(image_id, "image id")
        return join(self.root, "plates", plate_id, "thumbnails", f"{image_id}-{_width(width)}.png")

    def flatfield(self, spec: str, plate_id: str, channel: str) -> str:
        """A plate's flat-field for one channel under a spec: float32 (H, W) or (Z, H, W) in [0, 1] units."""
        spec, plate_id, channel = check_name(spec, "spec"), check_name(plate_id, "plate id"), \
            check_name(channel, "channel")
        return join(self.root, "specs", spec, "plates", plate_id, f"flatfield-{channel}.npy")

    def crops(self, spec: str, plate_id: str, image_id: str) -> str:
        """A field's single-cell crops: uint16 (N, C, H, W) (or (N, C, Z, H, W))."""
        spec, plate_id, image_id = self._field(spec, plate_id, image_id)
        return join(self.root, "specs", spec, "plates", plate_id, "fields", f"{image_id}-crops.npy")

    def rois(self, spec: str, plate_id: str, image_id: str) -> str:
        """A field's crop coordinates, label and subclass indices (JSON); written last (commit marker)."""
        spec, plate_id, image_id = self._field(spec, plate_id, image_id)
        return join(self.root, "specs", spec, "plates", plate_id, "fields", f"{image_id}-rois.json")

    def model(self, train_id: str, name: str) -> str:
        """A train run's objects: ``filter.json`` (excluded image ids), ``checkpoint.pt`` (latest epoch),
        ``best.pt`` (best weights), ``model.onnx``, ``model-card.json``."""
        return join(self.root, "models", check_name(train_id, "train id"), check_name(name, "name"))

    def models_root(self, train_id: str) -> str:
        """The folder of a train run's objects."""
        return join(self.root, "models", check_name(train_id, "train id"))

    def cell_embeddings(self, train_id: str, plate_id: str, image_id: str) -> str:
        """A field's cell embeddings under a train run's model: float32 (N, D), rows in crop order."""
        train_id, plate_id, image_id = check_name(train_id, "train id"), check_name(plate_id, "plate id"), \
            check_name(image_id, "image id")
        return join(self.root, "embeddings", train_id, "plates", plate_id, f"{image_id}-cells.npy")

    def embeddings_root(self, train_id: str) -> str:
        """The folder of a train run's embeddings (every plate's fields and cells)."""
        return join(self.root, "embeddings", check_name(train_id, "train id"))

    def plate_embeddings(self, train_id: str, plate_id: str) -> str:
        """A plate's field embeddings (Parquet: ``Metadata_*`` + ``emb_000``...); written last (commit marker)."""
        train_id, plate_id = check_name(train_id, "train id"), check_name(plate_id, "plate id")
        return join(self.root, "embeddings", train_id, "plates", plate_id, "fields.parquet")

    def job_params(self, job_id: str) -> str:
        """The parameter list of an AWS Batch array job (child i runs element i)."""
        return join(self.root, "jobs", check_name(job_id, "job id"), "params.json")

    def profiles(self, name: str, level: str) -> str:
        """A named profile set at one level (``well`` or ``treatment``), pycytominer-style Parquet."""
        name, level = check_name(name, "profile set name"), check_name(level, "level")
        return join(self.root, "profiles", name, f"{level}.parquet")

    def profiles_info(self, name: str) -> str:
        """A named profile set's sidecar: source files, processing options, counts (written last)."""
        return join(self.root, "profiles", check_name(name, "profile set name"), "profiles.json")

    def profiles_root(self) -> str:
        """The folder of every profile set."""
        return join(self.root, "profiles")

    def index(self, source: str, level: str, metric: str) -> str:
        """The folder of a search index's builds: ``{version}/{part}`` and the ``current.json`` pointer."""
        source, level, metric = check_name(source, "index source"), check_name(level, "level"), \
            check_name(metric, "metric")
        return join(self.root, "indexes", source, f"{level}-{metric}")

    def index_current(self, source: str, level: str, metric: str) -> str:
        """The pointer to the searched build of an index (``{"version", ...}``), written last."""
        return join(self.index(source, level, metric), "current.json")

    def index_version(self, source: str, level: str, metric: str, version: str) -> str:
        """The folder of one build of an index."""
        return join(self.index(source, level, metric), check_name(version, "index version"))

    def index_part(self, source: str, level: str, metric: str, version: str, part: str) -> str:
        """One part of a build of an index (FAISS bytes, sidecar, ids, tags, rows)."""
        return join(self.index_version(source, level, metric, version), check_name(part, "index part"))

    def source_indexes(self, source: str) -> str:
        """The folder of every index of one source (a train run or a profile set)."""
        return join(self.root, "indexes", check_name(source, "index source"))

    def indexes_root(self) -> str:
        """The folder of every index."""
        return join(self.root, "indexes")

    @staticmethod
    def _field(spec: str, plate_id: str, image_id: str) -> tuple[str, str, str]:
        return check_name(spec, "spec"), check_name(plate_id, "plate id"), check_name(image_id, "image id")
