"""Image-management service: plates, wells, images (fields), ingestion, inspection, validation, thumbnails.

Ingestion registers what an importer parsed (:mod:`bioims.datasets`) in one pass with batched writes:
images first, then wells, tags and labels, and the plate row last. The plate row is the commit marker:
a plate whose row exists is complete, so a killed ingest is finished by running it again, and a second
run of a finished one adds nothing. Ids are stable (derived from the source ids), so a resumed ingest
overwrites its own partial rows instead of duplicating them.
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...contract.enums import ImageStatus, PlateStatus, ResultStatus
from ...datasets.records import PlateRecord
from ...errors import BioimsError, Conflict, InvalidInput, NotFound, one_line
from ...ids import stable_id, utcnow
from ...names import check_name
from ...imaging.io import inspect_field, read_field, split_ref
from ...imaging.suggest import nuclei_channel, nucleus_radius, sizes_for_radius
from ...imaging.thumbnails import channel_pngs, color_max_projection, png_bytes, thumbnail_png
from ...store.keys import Keys
from ...store.objects import ObjectStore, uri_to_path
from ...store.roots import IngestRoots
from ...store.tables import ORIGIN, to_dict
from ..ports import ArtifactsPort, RunnerPort, TagsPort, TrainingPort
from .preprocessing import PreprocessingService
from .tables import ImageTables

THUMBNAIL_WIDTHS_PARAMETER = "thumbnail-widths"
DEFAULT_THUMBNAIL_WIDTHS = (100, 1000)
PROCESS_PLATE = "process-plate"
PREPROCESS = "preprocess"


def plate_tags(record: PlateRecord) -> list[str]:
    return [f"plate:{record.source_id}"] + ([f"batch:{record.batch}"] if record.batch else [])


def field_tags(metadata: dict[str, Any]) -> list[str]:
    """The tags of a field from its metadata: ``compound:``, ``moa:``, ``concentration:``, ``batch:``."""
    tags = [f"{key}:{metadata[key]}" for key in ("compound", "moa", "batch") if metadata.get(key)]
    conc = metadata.get("concentration")
    if conc is not None and not (isinstance(conc, float) and math.isnan(conc)):
        tags.append(f"concentration:{float(conc):g}")
    return tags


def _clean_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Drop NaN/None values (DynamoDB has no NaN) and turn numpy scalars into Python ones."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        out[key] = value
    return out


@dataclass
class IngestSummary:
    """What an ingest did. ``skipped_plates`` were already registered (nothing written for them)."""

    plates: int = 0
    wells: int = 0
    images: int = 0
    invalid_images: int = 0
    plate_ids: list[str] = field(default_factory=list)
    skipped_plates: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ImageManagementService:
    """Use-cases of the image-management service.

    Parameters
    ----------
    tables : ImageTables
        This service's own tables (plates, wells, images).
    objects : ObjectStore
        Reads images and writes thumbnails.
    keys : Keys
        Where thumbnails are written.
    tags : TagsPort
        The tags service (in-process or a client).
    artifacts : ArtifactsPort
        The artifact service: artifact registry, message logs, configuration.
    training : TrainingPort
        The training service: the embedding specs preprocessing follows.
    runner : RunnerPort or None
        Starts workflows (``process-plate``, ``preprocess``); None where workflows cannot be started.
    roots : IngestRoots, optional
        Where input images and manifests may be read from (:mod:`bioims.store.roots`); a plate with an
        image elsewhere is not registered, and every read checks again. Default: nowhere.
    """

    def __init__(self, tables: ImageTables, objects: ObjectStore, keys: Keys, tags: TagsPort,
                 artifacts: ArtifactsPort, training: TrainingPort, runner: RunnerPort | None = None, *,
                 roots: IngestRoots | None = None) -> None:
        self._t = tables
        self._objects = objects
        self._keys = keys
        self._tags = tags
        self._artifacts = artifacts
        self._runner = runner
        self._roots = roots if roots is not None else IngestRoots()
        self.preprocessing = PreprocessingService(tables, objects, keys, training, tags, artifacts, roots=self._roots)
        """Flat-fields and single-cell crops (:mod:`.preprocessing`), over the same tables."""

    # ================================================================= ingestion
    def ingest(self, plates: Sequence[PlateRecord], *, if_exists: str = "skip",
               on_plate: Callable[[str], None] | None = None) -> IngestSummary:
        """Register plates (see the module docstring). ``if_exists``: ``"skip"`` an already registered
        plate or raise ``"error"`` (:class:`Conflict`). Input files are referenced in place; local
        files that do not exist mark their image ``invalid`` with the missing path. ``on_plate`` is
        called with each plate's source id once it is done (progress bars).

        Every plate is checked before anything is written: its channels must be names
        (:mod:`bioims.names`), every field must have exactly its channels, and every image must lie under
        an ingest root; otherwise :class:`InvalidInput` names the plate (and field and channel) and
        nothing is registered."""
        if if_exists not in ("skip", "error"):
            raise InvalidInput(f"if_exists must be 'skip' or 'error', not {if_exists!r}")
        seen: dict[str, str] = {}
        for record in plates:
            key = f"{record.experiment}/{record.source_id}"
            if key in seen:
                raise InvalidInput(f"plate {record.source_id!r} appears twice in the input")
            seen[key] = record.source_id
            self._check_record(record)
        summary = IngestSummary()
        for record in plates:
            plate_id = self.plate_id_for(record)
            if self._find_plate(plate_id) is not None:
                if if_exists == "error":
                    raise Conflict(f"plate {record.source_id!r} is already registered as {plate_id}")
                summary.skipped_plates.append(plate_id)
                if on_plate is not None:
                    on_plate(record.source_id)
                continue
            wells, images, invalid = self._register_plate(plate_id, record)
            summary.plates += 1
            summary.wells += wells
            summary.images += images
            summary.invalid_images += invalid
            summary.plate_ids.append(plate_id)
            if on_plate is not None:
                on_plate(record.source_id)
        return summary

    def _check_record(self, record: PlateRecord) -> None:
        """:class:`InvalidInput` unless the plate's channels are names, each field has exactly them, and
        every image lies under an ingest root."""
        plate = f"plate {record.source_id!r}"
        for channel in record.channels:
            check_name(channel, f"{plate}: channel")
        channels = set(record.channels)
        for f in record.fields:
            where = f"{plate} well {f.well!r} site {f.site!r}"
            if set(f.channel_uris) != channels:
                raise InvalidInput(f"{where} has channels {sorted(f.channel_uris)}, the plate {list(record.channels)}")
            for channel, uri in f.channel_uris.items():
                self._roots.check(uri, f"{where} channel {channel}: image")
                split_ref(uri)  # a channel fragment other than #c=N / #s=M&c=N is refused now, not at every read

    @staticmethod
    def plate_id_for(record: PlateRecord) -> str:
        return stable_id("plate", record.experiment, record.source_id)

    def _register_plate(self, plate_id: str, record: PlateRecord) -> tuple[int, int, int]:
        if not record.fields:
            raise InvalidInput(f"plate {record.source_id!r} has no fields")
        now = utcnow()
        well_ids = {w: stable_id("well", plate_id, w) for w in dict.fromkeys(f.well for f in record.fields)}
        per_well: Tally[str] = Tally()
        assignments: dict[str, list[str]] = {}
        moas: set[str] = set()
        invalid = 0
        with self._t.images.batch_write() as batch:
            for f in record.fields:
                image_id = stable_id("image", plate_id, f.well, f.site)
                metadata = _clean_metadata(f.metadata)
                missing = [u for u in f.channel_uris.values() if u.startswith("file://") and not uri_to_path(u).exists()]
                status, error = (ImageStatus.INVALID, f"missing file: {uri_to_path(missing[0])}"
                                 + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")) if missing \
                    else (ImageStatus.REGISTERED, None)
                invalid += bool(missing)
                batch.save(self._t.images(
                    image_id, ORIGIN, plate_id=plate_id, well_id=well_ids[f.well],
                    plate_source_id=record.source_id, well_source_id=f.well, field_source_id=f.site,
                    channels=list(record.channels), channel_uris=dict(f.channel_uris), metadata=metadata,
                    status=status, error=error, created_at=now, updated_at=now))
                per_well[f.well] += 1
                assignments[image_id] = plate_tags(record) + field_tags(metadata)
                if metadata.get("moa"):
                    moas.add(str(metadata["moa"]))
        well_meta = {f.well: _clean_metadata(f.metadata) for f in record.fields}
        with self._t.wells.batch_write() as batch:
            for well, well_id in well_ids.items():
                batch.save(self._t.wells(plate_id, well_id, source_id=well, image_count=per_well[well],
                                         metadata={k: v for k, v in well_meta[well].items()
                                                   if k in ("compound", "concentration", "moa", "replicate")}))
        self._tags.tag_images(assignments, plate_id=plate_id)
        if moas:
            self._tags.ensure_labels("moa", moas)
        message_id = self._artifacts.create_message(
            f"registered plate {record.source_id}: {len(record.fields)} images in {len(well_ids)} wells"
            + (f", {invalid} with missing files" if invalid else ""))
        self._t.plates(plate_id, source_id=record.source_id, experiment=record.experiment, batch=record.batch,
                       status=PlateStatus.REGISTERED, image_count=len(record.fields), well_count=len(well_ids),
                       channels=list(record.channels), message_id=message_id,
                       created_at=now, updated_at=now).save()
        return len(well_ids), len(record.fields), invalid

    def populate_source_plate(self, manifest: dict[str, Any] | str) -> dict[str, Any]:
        """Register one plate from the seed's sourcePlateInfo JSON (a dict, JSON text, or a URI of it).
        :class:`Conflict` if the plate is already registered. A manifest URI and the images it names must
        lie under an ingest root (:class:`InvalidInput` otherwise)."""
        from ...datasets.manifest import read_manifest

        if isinstance(manifest, str) and manifest.startswith(("file://", "s3://")):
            self._roots.check(manifest, "manifest")
            record = read_manifest(self._objects.get_bytes(manifest), source=manifest, check=self._roots.check)
        else:
            record = read_manifest(manifest, check=self._roots.check)
        summary = self.ingest([record], if_exists="error")
        return {"plate_id": summary.plate_ids[0], "images": summary.images,
                "invalid_images": summary.invalid_images}

    def upload_source_plate(self, manifest: dict[str, Any] | str) -> dict[str, Any]:
        """Register a plate, then start its processing (inspect -> validate -> thumbnails)."""
        result = self.populate_source_plate(manifest)
        return result | {"execution_id": self.inspect_plate(result["plate_id"])}

    # ================================================================= plates, wells, images
    def list_plates(self) -> list[dict[str, Any]]:
        return sorted((to_dict(p) for p in self._t.plates.scan()), key=lambda d: d["source_id"])

    def get_plate(self, plate: str) -> dict[str, Any]:
        """A plate by id or by source id."""
        return to_dict(self._plate(plate))

    def _find_plate(self, plate_id: str) -> Any:
        try:
            return self._t.plates.get(plate_id)
        except self._t.plates.DoesNotExist:
            return None

    def _plate(self, plate: str) -> Any:
        if not isinstance(plate, str) or not plate:
            raise InvalidInput("plate id must be a non-empty string")
        row = self._find_plate(plate)
        if row is None:
            rows = list(self._t.plates.by_source.query(plate))
            if len(rows) > 1:
                raise Conflict(f"source id {plate!r} names {len(rows)} plates (one per experiment): use a plate id")
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"no plate {plate!r}")
        return row

    def get_image_info(self, image_id: str, train_id: str = ORIGIN) -> dict[str, Any]:
        row = self._image(image_id, train_id)
        info = to_dict(row)
        if row.embedding is not None:
            info["embedding"] = np.frombuffer(row.embedding, dtype=np.float32).tolist()
        return info

    def _image(self, image_id: str, train_id: str = ORIGIN) -> Any:
        if not isinstance(image_id, str) or not image_id:
            raise InvalidInput("image id must be a non-empty string")
        try:
            return self._t.images.get(image_id, train_id)
        except self._t.images.DoesNotExist:
            suffix = "" if train_id == ORIGIN else f" for train {train_id!r}"
            raise NotFound(f"no image {image_id!r}{suffix}") from None

    def get_images_by_plate_id(self, plate_id: str) -> list[dict[str, Any]]:
        return self.get_images_by_plate_id_and_train_id(plate_id, ORIGIN)

    def get_images_by_plate_id_and_train_id(self, plate_id: str, train_id: str) -> list[dict[str, Any]]:
        plate = self._plate(plate_id)
        rows = self._t.images.by_plate.query(plate.plate_id, self._t.images.train_id == train_id)
        return [to_dict(r) for r in rows]

    def get_image_ids_by_plate_id(self, plate_id: str) -> list[str]:
        plate = self._plate(plate_id)
        return [r.image_id for r in self._t.images.by_plate.query(plate.plate_id, self._t.images.train_id == ORIGIN)]

    def get_wells_by_plate_id(self, plate_id: str) -> list[dict[str, Any]]:
        plate = self._plate(plate_id)
        return sorted((to_dict(w) for w in self._t.wells.query(plate.plate_id)), key=lambda d: d["source_id"])

    def get_images_by_plate_and_well_id(self, plate_id: str, well_id: str) -> list[dict[str, Any]]:
        """Images of a well; ``well_id`` is the well's id or its source name (``"G10"``)."""
        plate = self._plate(plate_id)
        wid = well_id if any(True for _ in self._t.wells.query(plate.plate_id, self._t.wells.well_id == well_id)) \
            else stable_id("well", plate.plate_id, well_id)
        rows = list(self._t.images.by_plate_well.query(plate.plate_id, self._t.images.well_id == wid))
        if not rows:
            raise NotFound(f"no well {well_id!r} on plate {plate.source_id}")
        return [to_dict(r) for r in rows]

    def get_plate_image_status(self, plate_id: str) -> dict[str, Any]:
        """Counts of the plate's images per status, e.g. ``{"valid": 1190, "invalid": 10}``."""
        plate = self._plate(plate_id)
        counts = Tally(r.status for r in self._t.images.by_plate.query(
            plate.plate_id, self._t.images.train_id == ORIGIN,
            attributes_to_get=["image_id", "train_id", "plate_id", "status"]))
        return {"plate_id": plate.plate_id, "status": plate.status, "images": dict(sorted(counts.items()))}

    def create_plate_message_id(self, plate_id: str) -> str:
        """Start a new activity log for the plate (replacing the reference to the previous one)."""
        plate = self._plate(plate_id)
        message_id = self._artifacts.create_message(f"message log of plate {plate.source_id}")
        plate.update(actions=[self._t.plates.message_id.set(message_id)])
        return message_id

    def get_plate_message_id(self, plate_id: str) -> str:
        plate = self._plate(plate_id)
        if not plate.message_id:
            raise NotFound(f"plate {plate.source_id} has no message log")
        return str(plate.message_id)

    def list_compatible_plates(self, width: int, height: int, depth: int, channels: int) -> list[dict[str, Any]]:
        """Validated plates whose images have exactly these dims (pixels) and channel count."""
        key = _shape_key(*(_positive_int(v, n) for v, n in
                           ((width, "width"), (height, "height"), (depth, "depth"), (channels, "channels"))))
        return sorted((to_dict(p) for p in self._t.plates.by_shape.query(key)), key=lambda d: d["source_id"])

    def list_spec_fields(self, spec: str, plate_id: str, preprocessed: bool = True) -> list[dict[str, Any]]:
        """The valid fields of a plate, with their preprocessing results under ``spec``
        (:meth:`PreprocessingService.list_spec_fields`)."""
        return self.preprocessing.list_spec_fields(spec, plate_id, preprocessed)

    def create_image_train_result(self, image_id: str, train_id: str, embedding: list[float] | None = None,
                                  cell_count: int | None = None,
                                  results: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create or replace the (image, train run) row holding that run's results for the field."""
        if not isinstance(train_id, str) or not train_id or train_id == ORIGIN:
            raise InvalidInput(f"train_id must be a train run id, not {train_id!r}")
        origin = self._image(image_id)
        vector = None if embedding is None else _vector(embedding)
        now = utcnow()
        self._t.images(image_id, train_id, plate_id=origin.plate_id, embedding=vector, cell_count=cell_count,
                       results=results, status=ResultStatus.COMPUTED, created_at=now, updated_at=now).save()
        return self.get_image_info(image_id, train_id)

    def create_image_train_results(self, train_id: str, results: list[dict[str, Any]]) -> dict[str, int]:
        """Create or replace the (image, train run) rows of many fields at once (the embedding job's
        results for one plate): each item ``{"image_id", "status", "cell_count"?, "embedding"?,
        "results"?, "error"?}`` (``embedding``: the field's float32 vector). Every image must exist; nothing
        is written otherwise. Returns ``{"written": n}``."""
        if not isinstance(train_id, str) or not train_id or train_id == ORIGIN:
            raise InvalidInput(f"train_id must be a train run id, not {train_id!r}")
        ids = [r["image_id"] for r in results]
        origins = {row.image_id: row for row in self._t.images.batch_get([(i, ORIGIN) for i in sorted(set(ids))])}
        missing = sorted(set(ids) - set(origins))
        if missing:
            raise NotFound(f"no image {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        now = utcnow()
        rows = [self._t.images(r["image_id"], train_id, plate_id=origins[r["image_id"]].plate_id,
                               status=r["status"], cell_count=r.get("cell_count"), error=r.get("error"),
                               embedding=None if r.get("embedding") is None else _vector(r["embedding"]),
                               results=r.get("results"), created_at=now, updated_at=now) for r in results]
        with self._t.images.batch_write() as batch:
            for row in rows:
                batch.save(row)
        return {"written": len(rows)}

    def delete_image_train_results(self, train_id: str) -> dict[str, int]:
        """Delete every field's row of one train run (what deleteTraining leaves here); ``{"deleted": n}``.
        Rerunning it after an interruption deletes what is left."""
        if not isinstance(train_id, str) or not train_id or train_id == ORIGIN:
            raise InvalidInput(f"train_id must be a train run id, not {train_id!r}")
        rows = [r for plate in self._t.plates.scan()
                for r in self._t.images.by_plate.query(plate.plate_id, self._t.images.train_id == train_id)]
        with self._t.images.batch_write() as batch:
            for row in rows:
                batch.delete(row)
        return {"deleted": len(rows)}

    def get_image_tags(self, image_id: str) -> list[dict[str, Any]]:
        self._image(image_id)
        return self._tags.get_image_tags(image_id)

    def get_image_view(self, image_id: str, width: int = 512, spec: str | None = None,
                       crops: int = 48) -> dict[str, Any]:
        """A field as the web viewer shows it: each channel as a greyscale PNG data URL at most ``width``
        pixels wide, and, with ``spec``, its cells' crop boxes (in the PNGs' pixels) and the first
        ``crops`` crops as colour composites (see :class:`bioims.contract.image_management.GetImageView`)."""
        row = self._image(image_id)
        view: dict[str, Any] = {
            "image_id": image_id, "plate_id": row.plate_id, "plate": row.plate_source_id, "well": row.well_source_id,
            "site": row.field_source_id, "status": row.status, "error": row.error,
            "metadata": row.metadata.as_dict() if row.metadata else {}, "field_width": row.width,
            "field_height": row.height, "channels": [], "spec": spec}
        if row.status == ImageStatus.VALID:
            try:
                field_ = read_field(self._roots.field_uris(row.channel_uris, row.channels, f"image {image_id}"),
                                    self._objects)
            except BioimsError as e:  # its files changed since the inspection: shown as it is, with why
                view["error"] = e.message
            else:
                pngs = channel_pngs(field_, width)
                view["width"] = min(width, field_.shape[-1])
                view["height"] = max(1, round(field_.shape[-2] * view["width"] / field_.shape[-1]))
                view["channels"] = [{"name": name, "png": _data_url(png)} for name, png in zip(row.channels, pngs)]
        if spec is not None:
            view |= self._cells_view(row, check_name(spec, "spec"), view.get("width"), crops)
        return view

    def suggest_spec(self, plate_id: str, fields: int = 8, name: str | None = None) -> dict[str, Any]:
        """A spec measured on a plate's images (see :class:`bioims.contract.image_management.SuggestSpec`):
        ``{"spec", "nucleus_radius", "nuclei", "fields"}``; nothing is registered."""
        plate = self._plate(plate_id)
        valid = [i for i in self.get_images_by_plate_id(plate.plate_id) if i["status"] == ImageStatus.VALID]
        if not valid or not plate.width:
            raise InvalidInput(f"plate {plate.source_id} has no inspected valid field yet; process it first "
                               f"(bioims plate process {plate.source_id})")
        channels = list(plate.channels)
        channel = nuclei_channel(channels)
        sample = valid[::max(1, len(valid) // fields)][:fields]
        planes = [read_field(self._roots.field_uris(f["channel_uris"], [channel], f"image {f['image_id']}"),
                             self._objects)[0] for f in sample]
        radius, found = nucleus_radius(planes)
        roi_size, min_voxels = sizes_for_radius(radius)
        safe = re.sub(r"[^A-Za-z0-9._+-]", "-", plate.source_id).strip("-._+")[:59]
        spec_name = name or f"{safe or 'plate'}-spec"
        spec = {"name": check_name(spec_name, "spec"),
                "input": {"width": plate.width, "height": plate.height, "depth": plate.depth or 1,
                          "channels": channels},
                "segmentation_channel": channel, "roi_size": min(roi_size, plate.width, plate.height),
                "min_nucleus_voxels": min_voxels, "embedding_length": 128}
        return {"spec": spec, "nucleus_radius": round(radius, 2), "nuclei": found, "fields": len(sample)}

    def _cells_view(self, row: Any, spec: str, width: int | None, crops: int) -> dict[str, Any]:
        """The cells of a field under a spec: ``{"cells", "boxes", "crops"}`` (``cells`` None if the field
        is not preprocessed under it)."""
        uri = self._keys.rois(spec, row.plate_id, row.image_id)
        if not self._objects.exists(uri):
            return {"cells": None, "boxes": None, "crops": None}
        rois = self._objects.get_json(uri)
        scale = width / row.width if width and row.width else 1.0
        size = rois["roi_size"]
        boxes = [{"x": round(r["x"] * scale), "y": round(r["y"] * scale), "width": max(1, round(size["x"] * scale)),
                  "height": max(1, round(size["y"] * scale))} for r in rois["rois"]]
        shown = []
        if crops and rois["cells"]:
            stack = np.load(io.BytesIO(self._objects.get_bytes(rois["crops"])), allow_pickle=False)
            shown = [_data_url(png_bytes(color_max_projection(crop))) for crop in stack[:crops]]
        return {"cells": int(rois["cells"]), "boxes": boxes, "crops": shown}

    def update_image_tags(self, image_id: str, tags: list[str]) -> list[dict[str, Any]]:
        """Replace the tags of an image."""
        self._image(image_id)
        return self._tags.set_image_tags(image_id, tags)

    # ================================================================= processing (jobs)
    def inspect_plate(self, plate_id: str) -> str:
        """Start the process-plate workflow (inspect -> validate -> thumbnails); returns the execution id."""
        plate = self._plate(plate_id)
        if self._runner is None:
            raise InvalidInput("this runtime cannot start workflows")
        return self._runner.start(PROCESS_PLATE, {"plate_id": plate.plate_id})

    def start_preprocess(self, spec: str, plate_ids: list[str] | None = None) -> str:
        """Start the preprocess workflow (flat-fields, then every field's crops) for a spec's compatible
        plates (or the given ones); returns the execution id."""
        if self._runner is None:
            raise InvalidInput("this runtime cannot start workflows")
        plates = None if plate_ids is None else [self._plate(p).plate_id for p in plate_ids]
        return self._runner.start(PREPROCESS, {"spec": spec, "plate_ids": plates})

    def process_plate(self, plate_id: str, spec: str) -> str:
        """The seed's processPlate: the preprocess workflow for one plate under a spec; the execution id."""
        return self.start_preprocess(spec, [plate_id])

    def compute_flatfield(self, spec: str, plate_id: str, channel: str, force: bool = False) -> dict[str, Any]:
        """One plate x channel flat-field under a spec (a job unit of the preprocess workflow)."""
        return self.preprocessing.compute_flatfield(spec, self._plate(plate_id).plate_id, channel, force)

    def preprocess_image(self, spec: str, image_id: str, force: bool = False) -> dict[str, Any]:
        """One field's single-cell crops under a spec (a job unit of the preprocess workflow)."""
        return self.preprocessing.preprocess_image(spec, image_id, force)

    def describe_execution(self, execution_id: str) -> dict[str, Any]:
        if self._runner is None:
            raise InvalidInput("this runtime cannot start workflows")
        return self._runner.describe(execution_id)

    def inspect_image(self, image_id: str, *, force: bool = False) -> dict[str, Any]:
        """Read every channel of a field; record dims and dtype (``valid``) or the exact problem
        (``invalid``). Already inspected images are skipped unless ``force``.

        Every failure while reading ends in ``invalid`` with a one-line reason in ``error`` (and in the
        plate's message log), never in a row left ``registered``: a bad file (:class:`InvalidInput`:
        unreadable, too large, non-finite pixels) as its reason, anything unexpected (no credentials for
        an ``s3://`` image, out of memory, a decoder bug) as ``inspection failed: <type>: <message>``.
        Invalid rows keep no dims, so the next run inspects them again (a transient failure heals)."""
        row = self._image(image_id)
        if row.status in (ImageStatus.VALID, ImageStatus.INVALID) and not force and row.width is not None:
            return {"image_id": image_id, "status": row.status, "skipped": True}
        actions: list[Any]
        try:
            uris = self._roots.field_uris(row.channel_uris, row.channels, f"image {image_id}")
            info = inspect_field(uris, self._objects)
        except Exception as e:
            reason = one_line(e) if isinstance(e, InvalidInput) else f"inspection failed: {one_line(e)}"
            actions = [self._t.images.status.set(ImageStatus.INVALID), self._t.images.error.set(reason)]
            result = {"image_id": image_id, "status": ImageStatus.INVALID, "error": reason}
            plate = self._find_plate(row.plate_id)
            if plate is not None and plate.message_id:
                self._artifacts.add_message(plate.message_id, f"image {image_id} invalid: {reason}")
        else:
            actions = [self._t.images.status.set(ImageStatus.VALID), self._t.images.error.remove(),
                       self._t.images.width.set(info.width), self._t.images.height.set(info.height),
                       self._t.images.depth.set(info.depth), self._t.images.dtype.set(info.dtype)]
            result = {"image_id": image_id, "status": ImageStatus.VALID, "width": info.width, "height": info.height,
                      "depth": info.depth, "channels": info.channels, "dtype": info.dtype}
        row.update(actions=actions + [self._t.images.updated_at.set(utcnow())])
        return result

    def validate_plate(self, plate_id: str) -> dict[str, Any]:
        """A plate is valid (searchable, listed as compatible) when every image was inspected valid
        and all share dims, channel count and dtype; otherwise the problems are recorded."""
        plate = self._plate(plate_id)
        rows = list(self._t.images.by_plate.query(plate.plate_id, self._t.images.train_id == ORIGIN))
        problems: list[str] = []
        status = Tally(r.status for r in rows)
        if status[ImageStatus.REGISTERED]:
            problems.append(f"{status[ImageStatus.REGISTERED]} images not inspected yet")
        if status[ImageStatus.INVALID]:
            first = next(r for r in rows if r.status == ImageStatus.INVALID)
            problems.append(f"{status[ImageStatus.INVALID]} invalid images (e.g. {first.image_id}: {first.error})")
        shapes = Tally((int(r.width), int(r.height), int(r.depth), len(r.channels), r.dtype)
                       for r in rows if r.status == ImageStatus.VALID)
        if len(shapes) > 1:
            problems.append("inconsistent images: " + ", ".join(
                f"{n} x {w}x{h}x{d} with {c} channels ({t})" for (w, h, d, c, t), n in shapes.most_common()))
        if not rows:
            problems.append("plate has no images")
        actions = [self._t.plates.updated_at.set(utcnow())]
        if not problems:
            (w, h, d, c, _), = shapes
            actions += [self._t.plates.status.set(PlateStatus.VALIDATED), self._t.plates.width.set(w),
                        self._t.plates.height.set(h), self._t.plates.depth.set(d),
                        self._t.plates.shape_key.set(_shape_key(w, h, d, c))]
            actions.append(self._t.plates.problems.remove())
        else:
            actions += [self._t.plates.status.set(PlateStatus.INVALID), self._t.plates.shape_key.remove(),
                        self._t.plates.problems.set(problems)]
        plate.update(actions=actions)
        if plate.message_id:
            self._artifacts.add_message(plate.message_id, "validated" if not problems
                                        else "validation failed: " + "; ".join(problems))
        return {"plate_id": plate.plate_id, "valid": not problems, "problems": problems,
                "status": plate.status}

    def thumbnail_widths(self) -> list[int]:
        try:
            widths = self._artifacts.get_parameter(THUMBNAIL_WIDTHS_PARAMETER)
        except NotFound:
            return list(DEFAULT_THUMBNAIL_WIDTHS)
        if not isinstance(widths, list) or not all(isinstance(w, int) and w > 0 for w in widths):
            raise InvalidInput(f"configuration {THUMBNAIL_WIDTHS_PARAMETER} must be a list of positive "
                               f"integers, got {widths!r}")
        return widths

    def make_thumbnails(self, image_id: str, widths: Sequence[int] | None = None) -> dict[str, Any]:
        """Colour max-projection PNGs of a valid field at each width (default: the configured ones),
        recorded as artifacts of the image (a field narrower than a width is not upscaled). Existing
        thumbnails are skipped. Returns
        ``{"image_id", "thumbnails": {"<width>": uri}, "written": n}``."""
        row = self._image(image_id)
        if row.status != ImageStatus.VALID:
            return {"image_id": image_id, "skipped": True, "reason": f"image is {row.status}"}
        widths = list(widths) if widths is not None else self.thumbnail_widths()
        wanted = {w: self._keys.thumbnail(row.plate_id, image_id, w) for w in widths}
        todo = [w for w, uri in wanted.items() if not self._objects.exists(uri)]
        if todo:
            field_ = read_field(self._roots.field_uris(row.channel_uris, row.channels, f"image {image_id}"),
                                self._objects)
            for width in todo:
                # never upscale: a field narrower than the requested width keeps its own width
                self._objects.put_bytes(wanted[width], thumbnail_png(field_, min(width, field_.shape[-1])))
        for width, uri in wanted.items():  # (re)recording is idempotent: a kill between write and record heals
            self._artifacts.create_artifact(image_id, uri, type=f"thumbnail-{width}", size=self._objects.size(uri))
        return {"image_id": image_id, "thumbnails": {str(w): uri for w, uri in wanted.items()}, "written": len(todo)}


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _vector(embedding: Any) -> bytes:
    """A field's embedding as stored: float32 bytes of a finite 1-D vector."""
    try:
        array = np.asarray(embedding, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInput("embedding must be a list of numbers") from None
    if array.ndim != 1 or not np.isfinite(array).all():
        raise InvalidInput(f"embedding must be a finite 1-D vector, got shape {array.shape}")
    return array.tobytes()


def _shape_key(width: int, height: int, depth: int, channels: int) -> str:
    return f"{width}x{height}x{depth}x{channels}"


def _positive_int(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a positive integer, got {value!r}") from None
    if number <= 0 or number != float(value):
        raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
    return number
