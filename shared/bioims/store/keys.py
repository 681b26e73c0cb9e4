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

    def flatfield(self, spec: str, plate_id: str, channel: str) -> str:
        """A plate's flat-field for one channel under a spec: float32 (H, W) or (Z, H, W) in [0, 1] units."""
        return join(self.root, "specs", spec, "plates", plate_id, f"flatfield-{channel}.npy")

    def crops(self, spec: str, plate_id: str, image_id: str) -> str:
        """A field's single-cell crops: uint16 (N, C, H, W) (or (N, C, Z, H, W))."""
        return join(self.root, "specs", spec, "plates", plate_id, "fields", f"{image_id}-crops.npy")

    def rois(self, spec: str, plate_id: str, image_id: str) -> str:
        """A field's crop coordinates, label and subclass indices (JSON); written last (commit marker)."""
        return join(self.root, "specs", spec, "plates", plate_id, "fields", f"{image_id}-rois.json")

    def model(self, train_id: str, name: str) -> str:
        """A train run's objects: ``filter.json`` (excluded image ids), ``checkpoint.pt`` (latest epoch),
        ``best.pt`` (best weights), ``model.onnx``, ``model-card.json``."""
        return join(self.root, "models", train_id, name)

    def models_root(self, train_id: str) -> str:
        return join(self.root, "models", train_id)

    def cell_embeddings(self, train_id: str, plate_id: str, image_id: str) -> str:
        """A field's cell embeddings under a train run's model: float32 (N, D), rows in crop order."""
        return join(self.root, "embeddings", train_id, "plates", plate_id, f"{image_id}-cells.npy")

    def plate_embeddings(self, train_id: str, plate_id: str) -> str:
        """A plate's field embeddings (Parquet: ``Metadata_*`` + ``emb_000``...); written last (commit marker)."""
        return join(self.root, "embeddings", train_id, "plates", plate_id, "fields.parquet")

    def job_params(self, job_id: str) -> str:
        """The parameter list of an AWS Batch array job (child i runs element i)."""
        return join(self.root, "jobs", job_id, "params.json")

    def profiles(self, name: str, level: str) -> str:
        """A named profile set at one level (``well`` or ``treatment``), pycytominer-style Parquet."""
        return join(self.root, "profiles", name, f"{level}.parquet")

    def profiles_info(self, name: str) -> str:
        """A named profile set's sidecar: source files, processing options, counts (written last)."""
        return join(self.root, "profiles", name, "profiles.json")

    def index(self, source: str, level: str, metric: str) -> str:
        """The folder of a search index's builds: ``{version}/{part}`` and the ``current.json`` pointer."""
        return join(self.root, "indexes", source, f"{level}-{metric}")

    def indexes_root(self) -> str:
        return join(self.root, "indexes")
