"""Named profile sets: feature tables (e.g. CellProfiler per-well profiles) kept as an embedding.

An imported set is stored as pycytominer-style Parquet at two levels (``well``: the joined, raw table;
``treatment``: after the processing pipeline) plus a JSON sidecar (source files, options, counts) that is
written last, so a set either exists completely or not at all. Every object is recorded as an artifact
of the context ``profiles#<name>``. Sets are evaluated, exported and (later) searched like the
embeddings of a train run.
"""

from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...contract.enums import ProfileLevel, values
from ...errors import Conflict, InvalidInput, NotFound
from ...ids import iso
from ...names import check_name
from ...imaging.io import read_field
from ...profiles.aggregate import aggregate
from ...profiles.handcrafted import handcrafted_field_profiles
from ...profiles.io import feature_columns, load_feature_table, read_profiles, write_profiles
from ...profiles.naive import intensity_features
from ...profiles.pipeline import ProfileProcessing, process_profiles
from ...specs import EmbeddingSpec
from ...store.keys import Keys
from ...store.objects import ObjectStore
from ...store.roots import IngestRoots
from ...store.tables import ORIGIN
from ..ports import ArtifactsPort, ImagesPort, spec_fields

LEVELS = values(ProfileLevel)


def context_id(name: str) -> str:
    return f"profiles#{name}"


COMPUTED = ("handcrafted", "naive")
"""Profiles computed from registered images: ``handcrafted`` per-cell features of a spec's crops
(:mod:`bioims.profiles.handcrafted`), ``naive`` per-channel intensity mean and std of each field."""


class ProfileSets:
    """Import, compute, list and read named profile sets (ports: object store, key layout, artifact
    registry, image management for the fields of computed sets; ``roots``: where the input images of
    ``naive`` profiles may be read, default nowhere). Sets are objects only: no table."""

    def __init__(self, objects: ObjectStore, keys: Keys, artifacts: ArtifactsPort, images: ImagesPort, *,
                 roots: IngestRoots | None = None) -> None:
        self._images = images
        self._objects = objects
        self._keys = keys
        self._artifacts = artifacts
        self._roots = roots if roots is not None else IngestRoots()

    def compute(self, name: str, spec: EmbeddingSpec, kind: str, plate_ids: list[str],
                options: ProfileProcessing | None = None) -> dict[str, Any]:
        """Profiles of the preprocessed fields of ``plate_ids`` under ``spec``: per-field features
        averaged per well, then processed like an imported table (default: per-plate standardisation
        to DMSO, no feature selection, treatment means, cosine)."""
        if kind not in COMPUTED:
            raise InvalidInput(f"kind must be one of {', '.join(COMPUTED)}, got {kind!r}")
        self._check_new(name)
        fields = []
        for f in spec_fields(self._images, spec.name, plate_ids):
            if kind == "handcrafted":
                assert f.crops_uri is not None
                data = np.load(io.BytesIO(self._objects.get_bytes(f.crops_uri)), allow_pickle=False)
            else:
                origin = self._images.get_image_info(f.image_id, ORIGIN)
                data = read_field(self._roots.field_uris(origin["channel_uris"], spec.input.channels,
                                                         f"image {f.image_id}"), self._objects)
            fields.append((f.profile_metadata(), data))
        if not fields:
            raise InvalidInput(f"no preprocessed fields under spec {spec.name}; run `bioims preprocess {spec.name}`")
        channels = list(spec.input.channels)
        if kind == "handcrafted":
            per_field = handcrafted_field_profiles(fields, channels)
        else:
            per_field = pd.DataFrame([m | intensity_features(image, channels) for m, image in fields])
        features = feature_columns(per_field)
        per_field[features] = per_field[features].fillna(per_field[features].mean()).fillna(0.0)
        wells = aggregate(per_field.drop(columns=["Metadata_Site", "Metadata_Cells"], errors="ignore"),
                          by=["Metadata_Plate", "Metadata_Well"])
        options = options or ProfileProcessing(feature_selection=(), metric="cosine")
        return self.save(name, wells, options, {"kind": kind, "spec": spec.name, "plates": len(plate_ids),
                                                "fields": len(per_field)})

    def import_table(self, name: str, features: str | Path, metadata: str | Path, moa: str | Path | None = None,
                     options: ProfileProcessing | None = None) -> dict[str, Any]:
        """Join a feature table with its metadata (and MOA table), process it, and store it as ``name``."""
        self._check_new(name)
        wells = load_feature_table(features, metadata, moa)
        return self.save(name, wells, options, {"features": str(features), "metadata": str(metadata),
                                                 "moa": None if moa is None else str(moa)})

    def save(self, name: str, wells: pd.DataFrame, options: ProfileProcessing | None = None,
             source: dict[str, Any] | None = None) -> dict[str, Any]:
        """Process well-level profiles (``Metadata_*`` + features) and store both levels as ``name``."""
        self._check_new(name)
        options = options or ProfileProcessing()
        treatments = process_profiles(wells, options)
        counts = {}
        for level, frame in (("well", wells), ("treatment", treatments)):
            uri = self._keys.profiles(name, level)
            data = write_profiles(frame)
            self._objects.put_bytes(uri, data)
            self._artifacts.create_artifact(context_id(name), uri, type=f"profiles-{level}", size=len(data))
            counts[level] = len(frame)
        info = {"name": name, "source": source or {}, "processing": asdict(options), "rows": counts,
                "created_at": iso(),
                "features": len(feature_columns(treatments))}
        uri = self._keys.profiles_info(name)
        self._objects.put_json(uri, info)
        self._artifacts.create_artifact(context_id(name), uri, type="profiles-info")
        return info

    def _check_new(self, name: str) -> None:
        check_name(name, "profile set name")
        if self._objects.exists(self._keys.profiles_info(name)):
            raise Conflict(f"profile set {name!r} already exists")

    def info(self, name: str) -> dict[str, Any]:
        try:
            return dict(self._objects.get_json(self._keys.profiles_info(name)))
        except NotFound:
            raise NotFound(f"no profile set {name!r}") from None

    def list(self) -> list[dict[str, Any]]:
        root = self._keys.profiles_root()
        return [self._objects.get_json(uri) for uri in self._objects.list(root) if uri.endswith("/profiles.json")]

    def read(self, name: str, level: str = "treatment") -> pd.DataFrame:
        if level not in LEVELS:
            raise InvalidInput(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
        self.info(name)
        return read_profiles(self._objects.get_bytes(self._keys.profiles(name, level)))
