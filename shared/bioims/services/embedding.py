"""Embedding service: a train run's ONNX model over every preprocessed field, with ONNX Runtime.

Per plate x run (the ``embed-plate`` job step): each field's crops go through the model in batches;
the cell embeddings are stored as ``float32`` (N, D) ``.npy``, the field embedding (mean of its cells,
as the seed) is set on the (image, train run) row, and the plate's field embeddings are written as one
Parquet table (``Metadata_*`` columns + ``emb_000``, ``emb_001``, ...) that search and evaluation read
in bulk. The Parquet file is written last: a plate whose file exists is done (reruns skip it), and a
killed plate resumes from the fields whose cell embeddings exist, with identical outputs.

A field with zero cells gets no embedding: its row is flagged ``empty``. A field whose crops are
missing or unreadable is flagged ``failed`` with the reason; a plate with no crops at all fails alone.
Well and treatment embeddings are aggregated with the profiles library (:meth:`EmbeddingService.profiles`).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd

from ..contract.enums import Level, ResultStatus, TrainStatus
from ..errors import BioimsError, InvalidInput, NotFound
from ..ids import utcnow
from ..profiles.aggregate import aggregate
from ..profiles.io import read_profiles, write_profiles
from ..profiles.pipeline import ProfileProcessing, process_profiles
from ..store.keys import Keys
from ..store.objects import ObjectStore
from ..store.tables import Tables
from .image_management import ArtifactsPort, RunnerPort
from .preprocessing import spec_fields
from .training import TrainingService

LEVELS = tuple(level.value for level in Level if level is not Level.CELL)
"""Levels of :meth:`EmbeddingService.profiles` (cells are not a profile table)."""
EMBED = "embed"
BATCH = 256
"""Crops per ONNX Runtime call."""


def feature_names(dims: int) -> list[str]:
    return [f"emb_{i:03d}" for i in range(dims)]


class EmbeddingModel:
    """One ONNX Runtime session of a run's model (graph optimisations on, threads set explicitly).

    ``embed(crops)`` maps uint16 crops (N, *input_shape) to float32 (N, D) unit vectors."""

    def __init__(self, onnx_bytes: bytes, threads: int = 1) -> None:
        import onnxruntime as ort

        from ..training import metadata

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self.meta = metadata.decode(self.session.get_modelmeta().custom_metadata_map)
        self.scale = np.float32(self.meta["input_scale"])
        self.shape = tuple(self.meta["input_shape"])
        self.dims = int(self.meta["embedding_length"])
        self._input = metadata.INPUT_NAME

    def embed(self, crops: np.ndarray) -> np.ndarray:
        if crops.shape[1:] != self.shape:
            raise InvalidInput(f"crops are {tuple(crops.shape[1:])}, the model wants {self.shape}")
        out = [self.session.run(None, {self._input: crops[i:i + BATCH].astype(np.float32) * self.scale})[0]
               for i in range(0, len(crops), BATCH)]
        return np.concatenate(out) if out else np.empty((0, self.dims), np.float32)


class EmbeddingService:
    """Use-cases of the embedding service (ports: tables, objects, keys, artifacts, the training
    service for runs and specs, the runner for workflows)."""

    def __init__(self, tables: Tables, objects: ObjectStore, keys: Keys, artifacts: ArtifactsPort,
                 training: TrainingService, runner: RunnerPort | None = None) -> None:
        self._t = tables
        self._objects = objects
        self._keys = keys
        self._artifacts = artifacts
        self._training = training
        self._runner = runner
        self._models: dict[tuple[str, int], EmbeddingModel] = {}

    # ------------------------------------------------------------------ helpers
    def _complete_run(self, train_id: str) -> dict[str, Any]:
        run = self._training.get_training(train_id)
        if run["status"] != TrainStatus.COMPLETE:
            raise InvalidInput(f"train run {train_id} is {run['status']}; train it first (bioims train)")
        return run

    def model(self, train_id: str, threads: int = 1) -> EmbeddingModel:
        """The run's model: one session per process, reused across fields and plates."""
        key = (train_id, threads)
        if key not in self._models:
            run = self._complete_run(train_id)
            self._models.clear()
            self._models[key] = EmbeddingModel(self._objects.get_bytes(run["model_uris"]["onnx"]), threads)
        return self._models[key]

    def plates(self, train_id: str) -> list[str]:
        """Ids of the plates compatible with the run's spec."""
        run = self._complete_run(train_id)
        return [p["plate_id"] for p in self._training.get_compatible_plates(run["spec_name"])]

    # ------------------------------------------------------------------ jobs
    def start_compute_embedding(self, train_id: str, plate_ids: list[str] | None = None) -> str:
        """Start the ``embed`` workflow over the run's compatible plates (or ``plate_ids``); returns
        the execution id."""
        if self._runner is None:
            raise InvalidInput("this runtime has no job runner")
        self._complete_run(train_id)
        return self._runner.start(EMBED, {"train_id": train_id, "plate_ids": plate_ids})

    def compute_plate_embedding(self, train_id: str, plate_id: str, force: bool = False,
                                threads: int = 1) -> dict[str, Any]:
        """Embed one plate (see the module docstring) with ``threads`` ONNX Runtime threads. Returns ``{"plate_id", "fields", "empty", "failed",
        "cells", "skipped", "uri"}``."""
        run = self._complete_run(train_id)
        spec = run["spec_name"]
        uri = self._keys.plate_embeddings(train_id, plate_id)
        if not force and self._objects.exists(uri):
            table = read_profiles(self._objects.get_bytes(uri))
            return {"plate_id": plate_id, "fields": len(table), "cells": int(table["Metadata_Cells"].sum()),
                    "skipped": True, "uri": uri}
        fields = spec_fields(self._t, spec, [plate_id], preprocessed=False)
        if not any(f.crops_uri for f in fields):
            raise InvalidInput(f"plate {plate_id} has no preprocessed crops under spec {spec}; "
                               f"run `bioims preprocess {spec}`")
        model = self.model(train_id, threads)
        names = feature_names(model.dims)
        rows, empty, failed = [], [], []
        for f in fields:
            if f.crops_uri is None:
                failed.append({"image_id": f.image_id, "failure": "not preprocessed under the spec"})
                self._flag(f.image_id, train_id, plate_id, ResultStatus.FAILED, "not preprocessed under the spec")
                continue
            if f.cells == 0:
                empty.append(f.image_id)
                self._flag(f.image_id, train_id, plate_id, ResultStatus.EMPTY, "no cells: no embedding")
                continue
            try:
                vector = self._field(train_id, f, model, force)
            except BioimsError as e:
                failed.append({"image_id": f.image_id, "failure": e.message})
                self._flag(f.image_id, train_id, plate_id, ResultStatus.FAILED, e.message)
                continue
            rows.append(f.profile_metadata() | {"Metadata_ImageId": f.image_id, "Metadata_Cells": f.cells}
                        | dict(zip(names, vector.tolist())))
        columns = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Batch", "Metadata_Compound",
                   "Metadata_Concentration", "Metadata_MoA", "Metadata_ImageId", "Metadata_Cells", *names]
        table = pd.DataFrame(rows, columns=columns)
        table[names] = table[names].astype(np.float32)
        data = write_profiles(table)
        self._objects.put_bytes(uri, data)
        self._artifacts.create_artifact(plate_id, uri, train_id=train_id, type="field-embeddings", size=len(data))
        return {"plate_id": plate_id, "fields": len(rows), "empty": len(empty), "failed": len(failed),
                "failures": failed[:20], "cells": int(table["Metadata_Cells"].sum()), "skipped": False, "uri": uri}

    def _field(self, train_id: str, f: Any, model: EmbeddingModel, force: bool) -> np.ndarray:
        uri = self._keys.cell_embeddings(train_id, f.plate_id, f.image_id)
        if not force and self._objects.exists(uri):
            cells = np.load(io.BytesIO(self._objects.get_bytes(uri)), allow_pickle=False)
        else:
            try:
                crops = np.load(io.BytesIO(self._objects.get_bytes(f.crops_uri)), allow_pickle=False)
            except NotFound:
                raise InvalidInput(f"crops of image {f.image_id} are missing ({f.crops_uri})") from None
            except (ValueError, OSError, EOFError) as e:
                raise InvalidInput(f"crops of image {f.image_id} are unreadable: {e}") from None
            cells = model.embed(crops)
            buffer = io.BytesIO()
            np.save(buffer, cells)
            self._objects.put_bytes(uri, buffer.getvalue())
            self._artifacts.create_artifact(f.image_id, uri, train_id=train_id, type="cell-embeddings",
                                            size=buffer.tell())
        vector = cells.mean(axis=0).astype(np.float32)
        now = utcnow()
        self._t.images(f.image_id, train_id, plate_id=f.plate_id, cell_count=len(cells), status=ResultStatus.EMBEDDED,
                       embedding=vector.tobytes(), results={"cells": uri}, created_at=now, updated_at=now).save()
        return vector

    def _flag(self, image_id: str, train_id: str, plate_id: str, status: str, reason: str) -> None:
        now = utcnow()
        self._t.images(image_id, train_id, plate_id=plate_id, status=status, error=reason, created_at=now,
                       updated_at=now).save()

    # ------------------------------------------------------------------ reading
    def get_image_embedding(self, image_id: str, train_id: str) -> dict[str, Any]:
        """A field's embedding under a run: ``{"image_id", "train_id", "status", "cells", "embedding"}``
        (``embedding`` None for empty or failed fields)."""
        try:
            row = self._t.images.get(image_id, train_id)
        except self._t.images.DoesNotExist:
            raise NotFound(f"image {image_id!r} has no embedding under train run {train_id!r}") from None
        vector = np.frombuffer(row.embedding, np.float32).tolist() if row.embedding else None
        return {"image_id": image_id, "train_id": train_id, "status": row.status, "error": row.error,
                "cells": None if row.cell_count is None else int(row.cell_count), "embedding": vector}

    def list_plate_embeddings(self, train_id: str) -> list[dict[str, Any]]:
        """The run's embedded plates: ``[{"plate_id", "uri"}]`` (plates whose Parquet exists)."""
        out = []
        for plate_id in self.plates(train_id):
            uri = self._keys.plate_embeddings(train_id, plate_id)
            if self._objects.exists(uri):
                out.append({"plate_id": plate_id, "uri": uri})
        return out

    def profiles(self, train_id: str, level: str = "field", normalize: bool = True) -> pd.DataFrame:
        """The run's embeddings as a profile table (``Metadata_*`` + ``emb_*``): ``field`` (as stored),
        ``well`` (mean of its fields) or ``treatment`` (mean of its wells after, with ``normalize``,
        per-plate standardisation to the DMSO wells; DMSO dropped)."""
        if level not in LEVELS:
            raise InvalidInput(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
        plates = self.list_plate_embeddings(train_id)
        if not plates:
            raise InvalidInput(f"train run {train_id} has no embeddings; run `bioims embed {train_id}`")
        fields = pd.concat([read_profiles(self._objects.get_bytes(p["uri"])) for p in plates], ignore_index=True)
        if level == Level.FIELD:
            return fields
        wells = aggregate(fields.drop(columns=["Metadata_Site", "Metadata_ImageId", "Metadata_Cells"]),
                          by=["Metadata_Plate", "Metadata_Well"])
        if level == Level.WELL:
            return wells
        options = ProfileProcessing(feature_selection=(), normalization="standardize" if normalize else None,
                                    metric="cosine")
        return process_profiles(wells, options)

    def evaluate(self, train_ids: list[str], metric: str = "cosine", normalize: bool = True) -> tuple[Any, pd.DataFrame]:
        """MOA retrieval of the runs' treatment embeddings: each hold-out run answers only for the compounds
        it never saw (:func:`~bioims.evaluation.evaluate.evaluate_holdout`); a single run without hold-out
        is evaluated on every compound. Returns the :class:`~bioims.evaluation.evaluate.Evaluation` and the
        first run's treatment table (for the report)."""
        from ..evaluation.evaluate import evaluate, evaluate_holdout

        if not train_ids:
            raise InvalidInput("give at least one train run")
        runs = [self._complete_run(t) for t in train_ids]
        tables = [self.profiles(t, "treatment", normalize) for t in train_ids]
        if len(runs) == 1 and not runs[0]["holdout"]:
            return evaluate(tables[0], metric=metric), tables[0]  # type: ignore[arg-type]
        if any(not r["holdout"] for r in runs):
            raise InvalidInput("a run without hold-out can only be evaluated alone; "
                               f"{', '.join(r['train_id'] for r in runs if not r['holdout'])} saw every compound")
        return evaluate_holdout([(t, r["holdout"]) for t, r in zip(tables, runs)], metric=metric), tables[0]  # type: ignore[arg-type]
