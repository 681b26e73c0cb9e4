"""Preprocessing use-cases (part of the image-management API): flat-fields and single-cell crops.

Per embedding spec:

- :meth:`PreprocessingService.compute_flatfield` — one plate x channel: a streaming mean over the
  plate's valid fields (memory independent of the plate size), then the spec's cutoff and smoothing;
  stored as ``float32`` ``.npy`` in [0, 1] units and recorded as an artifact of the plate.
- :meth:`PreprocessingService.preprocess_image` — one field: normalise every channel with its
  flat-field, segment nuclei, crop one ROI per nucleus; store the crops (``uint16`` (N, C, H, W)) and
  a JSON of their coordinates with the label (MOA) and subclass (compound) index of every crop, record
  both as artifacts and the cell count on the (image, ``spec#<name>``) row. The JSON is written last:
  a field whose JSON exists is finished, so reruns skip it and a killed run resumes.

A field that cannot be read fails alone: the failure is recorded on its (image, spec) row and in the
plate's message log, and the error is raised for the job runner to report.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from ...contract.enums import ImageStatus, ResultStatus
from ...errors import InvalidInput, NotFound, one_line
from ...ids import utcnow
from ...imaging.flatfield import FlatFieldAccumulator, flatfield
from ...imaging.io import read_field, read_image
from ...imaging.preprocess import preprocess_field
from ...specs import EmbeddingSpec
from ...store.keys import Keys
from ...store.objects import ObjectStore
from ...store.roots import IngestRoots
from ...store.tables import ORIGIN
from ..ports import ArtifactsPort, TagsPort, TrainingPort
from .tables import ImageTables

SPEC_PREFIX = "spec#"
"""``train_id`` of the image rows and artifacts that hold a spec's preprocessing results."""
SUBCLASS_CATEGORY = "compound"


def spec_row_id(spec: str) -> str:
    return f"{SPEC_PREFIX}{spec}"


def _plane_shape(spec: EmbeddingSpec) -> tuple[int, ...]:
    """The shape of one channel image under a spec: (H, W), or (Z, H, W) for z-stacks."""
    shape = spec.input
    return (shape.height, shape.width) if shape.depth == 1 else (shape.depth, shape.height, shape.width)


class PreprocessingService:
    """Parameters: the image-management tables, object store and key layout; ``training`` (the specs),
    ``tags`` (label indices), ``artifacts`` (registry and message logs) and ``roots``
    (:class:`~bioims.store.roots.IngestRoots`: every input image read is checked to lie under one; default
    nowhere)."""

    def __init__(self, tables: ImageTables, objects: ObjectStore, keys: Keys, training: TrainingPort,
                 tags: TagsPort, artifacts: ArtifactsPort, *, roots: IngestRoots | None = None) -> None:
        self._t = tables
        self._objects = objects
        self._keys = keys
        self._training = training
        self._tags = tags
        self._artifacts = artifacts
        self._flatfield_cache: dict[str, np.ndarray] = {}
        self._roots = roots if roots is not None else IngestRoots()

    # ----------------------------------------------------------------- helpers
    def _spec(self, name: str) -> EmbeddingSpec:
        return EmbeddingSpec.from_dict(self._training.get_embedding_info(name))

    def list_spec_fields(self, spec: str, plate_id: str, preprocessed: bool = True) -> list[dict[str, Any]]:
        """The valid fields of a plate (only those preprocessed under ``spec`` if ``preprocessed``), sorted
        by image id, as :class:`~bioims.services.ports.SpecField` dicts; two queries and one batched read.

        Raises :class:`NotFound` for an unknown plate."""
        t = self._t
        plate = self._plate(plate_id)
        done = {r.image_id: r for r in t.images.by_plate.query(
            plate_id, t.images.train_id == spec_row_id(spec),
            filter_condition=t.images.status == ResultStatus.PREPROCESSED)}
        if preprocessed:
            origins = t.images.batch_get([(i, ORIGIN) for i in sorted(done)])
        else:
            origins = t.images.by_plate.query(plate_id, t.images.train_id == ORIGIN,
                                              filter_condition=t.images.status == ImageStatus.VALID)
        out = []
        for origin in sorted(origins, key=lambda r: r.image_id):
            meta = origin.metadata.as_dict() if origin.metadata else {}
            result = done.get(origin.image_id)
            out.append({"image_id": origin.image_id, "plate_id": plate_id, "plate": plate.source_id,
                        "well": origin.well_source_id, "site": origin.field_source_id,
                        "batch": meta.get("batch", plate.batch), "metadata": meta,
                        "cells": None if result is None else int(result.cell_count),
                        "crops_uri": None if result is None else result.results["crops"],
                        "channels": list(origin.channels or ()),
                        "channel_uris": origin.channel_uris.as_dict() if origin.channel_uris else {}})
        return out

    def valid_image_ids(self, plate_id: str) -> list[str]:
        """Ids of a plate's fields that passed inspection."""
        rows = self._t.images.by_plate.query(plate_id, self._t.images.train_id == ORIGIN,
                                             filter_condition=self._t.images.status == ImageStatus.VALID)
        return sorted(r.image_id for r in rows)

    def _plate(self, plate_id: str) -> Any:
        try:
            return self._t.plates.get(plate_id)
        except self._t.plates.DoesNotExist:
            raise NotFound(f"no plate {plate_id!r}") from None

    def _check_shape(self, spec: EmbeddingSpec, row: Any, what: str) -> None:
        shape = spec.input
        if row.width is None:
            raise InvalidInput(f"{what} has not been inspected; run `bioims plate process` first")
        actual = (int(row.width), int(row.height), int(row.depth), tuple(row.channels or ()))
        if actual != (shape.width, shape.height, shape.depth, shape.channels):
            raise InvalidInput(f"{what} is {actual[0]}x{actual[1]}x{actual[2]} with channels {list(actual[3])}; "
                               f"spec {spec.name} wants {shape.width}x{shape.height}x{shape.depth} "
                               f"with {list(shape.channels)}")

    # ----------------------------------------------------------------- flat-fields
    def compute_flatfield(self, spec: str, plate_id: str, channel: str, force: bool = False) -> dict[str, Any]:
        """The flat-field of one plate x channel (skipped if it exists, unless ``force``).

        Fields that cannot be used (unreadable, wrong shape, non-finite pixels) are left out of the
        mean and each is recorded in the plate's message log; the result lists them (``unreadable``: ids,
        ``reasons``: id -> reason). Only a plate x channel without any usable field fails."""
        s = self._spec(spec)
        plate = self._plate(plate_id)
        if channel not in s.input.channels:
            raise InvalidInput(f"channel {channel!r} is not in spec {spec}'s channels {list(s.input.channels)}")
        uri = self._keys.flatfield(s.name, plate_id, channel)
        if not force and self._objects.exists(uri):
            return {"plate_id": plate_id, "channel": channel, "uri": uri, "skipped": True}
        image_ids = self.valid_image_ids(plate_id)
        if not image_ids:
            raise InvalidInput(f"plate {plate.source_id} has no valid images; run `bioims plate process` first")
        accumulator = FlatFieldAccumulator()
        unreadable: dict[str, str] = {}
        for row in self._t.images.batch_get([(i, ORIGIN) for i in image_ids]):
            # One bad field (unreadable, wrong shape, non-finite pixels, an unexpected read error) must not
            # fail its plate's flat-field: it is left out, recorded, and fails on its own later.
            try:
                self._check_shape(s, row, f"image {row.image_id}")
                (image_uri,) = self._roots.field_uris(row.channel_uris, [channel], f"image {row.image_id}")
                image = read_image(image_uri, self._objects)
                if image.shape != (shape := _plane_shape(s)):
                    raise InvalidInput(f"image {row.image_id} channel {channel} has shape {image.shape}, "
                                       f"the spec wants {shape}")
                accumulator.add(image)
            except Exception as e:
                unreadable[row.image_id] = reason = one_line(e)
                if plate.message_id:
                    self._artifacts.add_message(plate.message_id, f"flat-field {s.name}/{channel}: skipped "
                                                                  f"image {row.image_id}: {reason}")
        if accumulator.count == 0:
            first = next(iter(unreadable.items()), None)
            raise InvalidInput(f"plate {plate.source_id} has no readable {channel} images"
                               + (f" (first: {first[0]}: {first[1]})" if first else ""))
        field = flatfield(accumulator.mean(), cutoff_percentile=s.flatfield.cutoff_percentile, sigma=s.flatfield.sigma)
        buffer = io.BytesIO()
        np.save(buffer, field.astype(np.float32))
        self._objects.put_bytes(uri, buffer.getvalue())
        self._artifacts.create_artifact(plate_id, uri, train_id=spec_row_id(s.name), type=f"flatfield-{channel}",
                                        size=buffer.tell())
        return {"plate_id": plate_id, "channel": channel, "uri": uri, "images": accumulator.count,
                "unreadable": sorted(unreadable), "reasons": unreadable, "skipped": False}

    def _flatfields(self, spec: EmbeddingSpec, plate_id: str) -> np.ndarray:
        """(C, ...) flat-fields of a plate, cached for the plate being worked on."""
        key = f"{spec.name}/{plate_id}"
        if key not in self._flatfield_cache:
            planes = []
            for channel in spec.input.channels:
                uri = self._keys.flatfield(spec.name, plate_id, channel)
                try:
                    planes.append(np.load(io.BytesIO(self._objects.get_bytes(uri)), allow_pickle=False))
                except NotFound:
                    raise InvalidInput(f"no flat-field for plate {plate_id} channel {channel} under spec "
                                       f"{spec.name}; compute it first (bioims preprocess does)") from None
            self._flatfield_cache.clear()
            self._flatfield_cache[key] = np.stack(planes)
        return self._flatfield_cache[key]

    # ----------------------------------------------------------------- fields
    def preprocess_image(self, spec: str, image_id: str, force: bool = False) -> dict[str, Any]:
        """Crops of one field (see the module docstring); returns ``{"image_id", "cells", "skipped", ...}``."""
        s = self._spec(spec)
        try:
            row = self._t.images.get(image_id, ORIGIN)
        except self._t.images.DoesNotExist:
            raise NotFound(f"no image {image_id!r}") from None
        rois_uri = self._keys.rois(s.name, row.plate_id, image_id)
        crops_uri = self._keys.crops(s.name, row.plate_id, image_id)
        if not force and self._objects.exists(rois_uri):
            done = json.loads(self._objects.get_bytes(rois_uri))
            return {"image_id": image_id, "cells": done["cells"], "skipped": True}
        try:
            if row.status != ImageStatus.VALID:
                raise InvalidInput(f"image {image_id} is {row.status}" + (f": {row.error}" if row.error else ""))
            self._check_shape(s, row, f"image {image_id}")
            field = read_field(self._roots.field_uris(row.channel_uris, s.input.channels, f"image {image_id}"),
                               self._objects)
            result = preprocess_field(field, self._flatfields(s, row.plate_id),
                                      segmentation_channel=s.segmentation_index, roi_size=s.roi_size,
                                      min_nucleus_voxels=s.min_nucleus_voxels,
                                      clip_percentile=s.normalization.clip_percentile,
                                      log_cap=s.normalization.log_cap, declump=s.segmentation.declump)
        except Exception as e:  # every failure is recorded on the (image, spec) row, then reported by the runner
            self._record_failure(s, row, one_line(e))
            raise
        metadata = row.metadata.as_dict() if row.metadata else {}
        label, subclass = self._indices(s, metadata)
        n = int(result.crops.shape[0])
        buffer = io.BytesIO()
        np.save(buffer, result.crops)
        self._objects.put_bytes(crops_uri, buffer.getvalue())
        rois = {
            "image_id": image_id, "plate_id": row.plate_id, "spec": s.name, "cells": n,
            "roi_size": dict(zip(("z", "y", "x"), map(int, result.size))),
            "rois": [dict(zip(("z", "y", "x"), map(int, start))) for start in result.starts],
            "label_category": s.training.label_category, "subclass_category": SUBCLASS_CATEGORY,
            "labels": [label] * n, "subclasses": [subclass] * n,
            "channels": list(s.input.channels), "crops": crops_uri,
        }
        self._objects.put_bytes(rois_uri, json.dumps(rois).encode())
        context = spec_row_id(s.name)
        self._artifacts.create_artifact(image_id, crops_uri, train_id=context, type="crops", size=buffer.tell())
        self._artifacts.create_artifact(image_id, rois_uri, train_id=context, type="rois")
        now = utcnow()
        self._t.images(image_id, context, plate_id=row.plate_id, cell_count=n, status=ResultStatus.PREPROCESSED,
                       results={"crops": crops_uri, "rois": rois_uri}, created_at=now, updated_at=now).save()
        return {"image_id": image_id, "cells": n, "skipped": False}

    def _indices(self, spec: EmbeddingSpec, metadata: dict[str, Any]) -> tuple[int, int]:
        """The field's label index (its MOA, or -1) and subclass index (its compound, or -1)."""
        label_value = metadata.get(spec.training.label_category)
        compound = metadata.get("compound")
        label = self._tags.ensure_labels(spec.training.label_category, [str(label_value)])[str(label_value)] \
            if label_value else -1
        subclass = self._tags.ensure_labels(SUBCLASS_CATEGORY, [str(compound)])[str(compound)] if compound else -1
        return label, subclass

    def _record_failure(self, spec: EmbeddingSpec, row: Any, message: str) -> None:
        now = utcnow()
        self._t.images(row.image_id, spec_row_id(spec.name), plate_id=row.plate_id, status=ResultStatus.FAILED,
                       error=message, created_at=now, updated_at=now).save()
        plate = self._t.plates.get(row.plate_id)
        if plate.message_id:
            self._artifacts.add_message(plate.message_id, f"preprocess {spec.name}: image {row.image_id} failed: "
                                                          f"{message}")
