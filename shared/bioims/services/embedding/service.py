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

from ...contract.enums import Level, ResultStatus, TrainStatus
from ...errors import BioimsError, InvalidInput, NotFound
from ...profiles.io import read_profiles, write_profiles
from ...profiles.pipeline import embedding_profiles
from ...store.keys import Keys
from ...store.objects import ObjectStore
from ...training.inference import EmbeddingModel, feature_names
from ..ports import ArtifactsPort, ImagesPort, RunnerPort, TrainingPort, spec_fields

LEVELS = tuple(level.value for level in Level if level is not Level.CELL)
"""Levels of :meth:`EmbeddingService.profiles` (cells are not a profile table)."""
EMBED = "embed"
RESULTS_PER_CALL = 100
"""Field results sent to image-management per call (well under a Lambda payload's 6 MB at 2,048 dims)."""


class EmbeddingService:
    """Use-cases of the embedding service. It owns no table: a field's embedding is an (image, train run)
    row of image-management (``images``), the run comes from training (``training``), the artifacts are
    recorded by the artifact service; ``runner`` starts workflows."""

    def __init__(self, objects: ObjectStore, keys: Keys, artifacts: ArtifactsPort, images: ImagesPort,
                 training: TrainingPort, runner: RunnerPort | None = None) -> None:
        self._images = images
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

    def start_compute_plate_embedding(self, train_id: str, plate_id: str, force: bool = False) -> str:
        """Start the ``embed`` workflow for one plate; returns the execution id. (The embedding itself
        is a job: it needs ONNX Runtime and pyarrow, which the Lambda functions do not carry.)"""
        if self._runner is None:
            raise InvalidInput("this runtime has no job runner")
        self._complete_run(train_id)
        return self._runner.start(EMBED, {"train_id": train_id, "plate_ids": [plate_id]} | ({"force": True} if force else {}))

    def execute_image_embedding_compute(self, train_id: str, image_id: str) -> str:
        """The seed's executeImageEmbeddingCompute: start the ``embed`` workflow for one field, whose cell
        and field embeddings are computed again (its plate's table is rewritten with it, the other fields'
        stored cell embeddings reused); returns the execution id."""
        if self._runner is None:
            raise InvalidInput("this runtime has no job runner")
        self._complete_run(train_id)
        plate_id = self._images.get_image_info(image_id)["plate_id"]
        return self._runner.start(EMBED, {"train_id": train_id, "plate_ids": [plate_id], "image_ids": [image_id]})

    def compute_plate_embedding(self, train_id: str, plate_id: str, force: bool = False,
                                threads: int = 1, image_ids: list[str] | None = None) -> dict[str, Any]:
        """Embed one plate (see the module docstring) with ``threads`` ONNX Runtime threads: the body of
        the ``embed-plate`` job step (not an API operation). ``image_ids``: fields whose cell embeddings
        are computed again even if stored (the others' are reused unless ``force``). Returns
        ``{"plate_id", "fields", "empty", "failed", "cells", "skipped", "uri"}``."""
        run = self._complete_run(train_id)
        spec = run["spec_name"]
        uri = self._keys.plate_embeddings(train_id, plate_id)
        redo = set(image_ids or ())
        if not force and not redo and self._objects.exists(uri):
            table = read_profiles(self._objects.get_bytes(uri))
            return {"plate_id": plate_id, "fields": len(table), "cells": int(table["Metadata_Cells"].sum()),
                    "skipped": True, "uri": uri}
        fields = spec_fields(self._images, spec, [plate_id], preprocessed=False)
        if not any(f.crops_uri for f in fields):
            raise InvalidInput(f"plate {plate_id} has no preprocessed crops under spec {spec}; "
                               f"run `bioims preprocess {spec}`")
        model = self.model(train_id, threads)
        names = feature_names(model.dims)
        rows, empty, failed, results = [], [], [], []
        failed += [{"image_id": i, "failure": f"not a field of plate {plate_id}"}
                   for i in sorted(redo - {f.image_id for f in fields})]
        for f in fields:
            if f.crops_uri is None:
                failed.append({"image_id": f.image_id, "failure": "not preprocessed under the spec"})
                results.append(_flag(f.image_id, ResultStatus.FAILED, "not preprocessed under the spec"))
                continue
            if f.cells == 0:
                empty.append(f.image_id)
                results.append(_flag(f.image_id, ResultStatus.EMPTY, "no cells: no embedding"))
                continue
            try:
                vector, cells_uri, count = self._field(train_id, f, model, force or f.image_id in redo)
            except BioimsError as e:
                failed.append({"image_id": f.image_id, "failure": e.message})
                results.append(_flag(f.image_id, ResultStatus.FAILED, e.message))
                continue
            results.append({"image_id": f.image_id, "status": ResultStatus.EMBEDDED, "cell_count": count,
                            "embedding": vector.tolist(), "results": {"cells": cells_uri}})
            rows.append(f.profile_metadata() | {"Metadata_ImageId": f.image_id, "Metadata_Cells": f.cells}
                        | f.image_columns() | dict(zip(names, vector.tolist())))
        columns = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Batch", "Metadata_Compound",
                   "Metadata_Concentration", "Metadata_MoA", "Metadata_ImageId", "Metadata_Cells",
                   *(fields[0].image_columns() if fields else {}), *names]
        table = pd.DataFrame(rows, columns=columns)
        table[names] = table[names].astype(np.float32)
        data = write_profiles(table)
        for i in range(0, len(results), RESULTS_PER_CALL):  # the rows before the Parquet (the commit marker)
            self._images.create_image_train_results(train_id, results[i:i + RESULTS_PER_CALL])
        self._objects.put_bytes(uri, data)
        self._artifacts.create_artifact(plate_id, uri, train_id=train_id, type="field-embeddings", size=len(data))
        return {"plate_id": plate_id, "fields": len(rows), "empty": len(empty), "failed": len(failed),
                "failures": failed[:20], "cells": int(table["Metadata_Cells"].sum()), "skipped": False, "uri": uri}

    def _field(self, train_id: str, f: Any, model: EmbeddingModel, force: bool) -> tuple[np.ndarray, str, int]:
        """The field's embedding (mean of its cells), the URI of its cell embeddings and its cell count."""
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
        return cells.mean(axis=0).astype(np.float32), uri, len(cells)

    # ------------------------------------------------------------------ reading
    def get_image_embedding(self, image_id: str, train_id: str) -> dict[str, Any]:
        """A field's embedding under a run: ``{"image_id", "train_id", "status", "cells", "embedding"}``
        (``embedding`` None for empty or failed fields)."""
        try:
            row = self._images.get_image_info(image_id, train_id)
        except NotFound:
            raise NotFound(f"image {image_id!r} has no embedding under train run {train_id!r}") from None
        cells = row.get("cell_count")
        return {"image_id": image_id, "train_id": train_id, "status": row.get("status"), "error": row.get("error"),
                "cells": None if cells is None else int(cells), "embedding": row.get("embedding")}

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
        return embedding_profiles(fields, level, normalize)

    def evaluate(self, train_ids: list[str], metric: str = "cosine", normalize: bool = True) -> tuple[Any, pd.DataFrame]:
        """MOA retrieval of the runs' treatment embeddings: each hold-out run answers only for the compounds
        it never saw (:func:`~bioims.evaluation.evaluate.evaluate_holdout`); a single run without hold-out
        is evaluated on every compound. Returns the :class:`~bioims.evaluation.evaluate.Evaluation` and the
        first run's treatment table (for the report)."""
        if not train_ids:
            raise InvalidInput("give at least one train run")
        runs = [self._complete_run(t) for t in train_ids]
        return self._evaluate(runs, [self.profiles(t, "treatment", normalize) for t in train_ids], metric)

    def _evaluate(self, runs: list[dict[str, Any]], tables: list[pd.DataFrame], metric: str) -> tuple[Any, pd.DataFrame]:
        """:meth:`evaluate` of complete runs whose treatment tables are given."""
        from ...evaluation.evaluate import evaluate, evaluate_holdout

        if len(runs) == 1 and not runs[0]["holdout"]:
            return evaluate(tables[0], metric=metric), tables[0]  # type: ignore[arg-type]
        if any(not r["holdout"] for r in runs):
            raise InvalidInput("a run without hold-out can only be evaluated alone; "
                               f"{', '.join(r['train_id'] for r in runs if not r['holdout'])} saw every compound")
        return evaluate_holdout([(t, r["holdout"]) for t, r in zip(tables, runs)], metric=metric), tables[0]  # type: ignore[arg-type]

    def evaluate_embeddings(self, train_id: str, metric: str = "cosine", normalize: bool = True,
                            level: str = "treatment") -> dict[str, Any]:
        """:meth:`evaluate` of one run as a document (``bioims evaluate --json``'s figures, the confusion
        matrix) with a 2-D map of its treatments or fields (``level``): ``points`` ``[{"x", "y", "moa", "compound",
        "concentration", "plate", "well", "image_id"}]`` (a treatment's ``image_id`` is one of its fields)."""
        from ...evaluation.knn import feature_columns, without_controls
        from ...evaluation.maps import embedding_map

        if level not in ("treatment", "field"):
            raise InvalidInput(f"level must be treatment or field, not {level!r}")
        run = self._complete_run(train_id)
        fields = self.profiles(train_id, "field")  # the plates' tables read once, for the scores and the map
        evaluation, treatments = self._evaluate([run], [embedding_profiles(fields, "treatment", normalize)], metric)
        table = without_controls(treatments) if level == "treatment" else fields
        coords, method = embedding_map(table[feature_columns(table)].to_numpy(np.float64),
                                       metric)  # type: ignore[arg-type]
        first_field = {(r.Metadata_Compound, _number(r.Metadata_Concentration)): r.Metadata_ImageId
                       for r in fields[::-1].itertuples()}
        points = []
        for (x, y), r in zip(coords, table.to_dict("records")):
            compound, concentration = r.get("Metadata_Compound"), _number(r.get("Metadata_Concentration"))
            points.append({"x": float(x), "y": float(y), "moa": r.get("Metadata_MoA"), "compound": compound,
                           "concentration": concentration, "plate": r.get("Metadata_Plate"),
                           "well": r.get("Metadata_Well"),
                           "image_id": r.get("Metadata_ImageId") or first_field.get((compound, concentration))})
        confusion = evaluation.confusion
        return {"train_id": train_id, **evaluation.to_document(), "level": level, "map_method": method,
                "confusion": {"true": [str(v) for v in confusion.index],
                              "predicted": [str(v) for v in confusion.columns],
                              "counts": confusion.to_numpy(dtype=int).tolist()},
                "points": points}


def _number(value: Any) -> float | None:
    """A finite float, or None (a missing concentration)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _flag(image_id: str, status: str, reason: str) -> dict[str, Any]:
    """The result of a field that has no embedding (``empty`` or ``failed``, with the reason)."""
    return {"image_id": image_id, "status": status, "error": reason}
