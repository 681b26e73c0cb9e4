"""Training service: embedding specs (the seed's "embedding"), train runs and their models.

A train run records its spec, the effective training settings, the compounds it holds out and the
training filter (the ids of the held-out compounds' fields, computed from the registry and stored as
``filter.json``), its status (``created`` -> ``running`` -> ``complete`` | ``failed``) with timestamps,
a message log, per-epoch metrics, and the URIs of its checkpoint, ONNX model and model card.

Train ids are stable: ``{spec}-{holdout}-{index}-{hash}`` of the spec, hold-out mode, held-out compounds
and settings, so asking for the same runs again finds the existing ones (and a killed training resumes).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
from pynamodb.exceptions import PutError

from ...contract.base import MAX_ID, MAX_ITEMS
from ...contract.enums import TrainStatus
from ...errors import BioimsError, Conflict, InvalidInput, NotFound
from ...ids import iso, stable_id, utcnow
from ...profiles.pipeline import CONTROL
from ...specs import EmbeddingSpec, TrainingSettings
from ...store.keys import Keys
from ...store.roots import IngestRoots, check_input_uri, normalise_root
from ...store.objects import ObjectStore
from ...store.tables import condition_failed, to_dict
from ...training.folds import HOLDOUT_MODES, holdout_plan, parse_image_ids
from ..ports import ArtifactsPort, ImagesPort, RunnerPort, SpecField, spec_fields
from .tables import TrainingTables

SEED_ATTRIBUTES = {"messageId": "message_id", "filterUri": "filter_uri"}
"""updateTraining's attributes under the seed's (camelCase) names."""
MAX_FILTER_BYTES = 64 * 2**20
"""Largest custom training filter file (about two million image ids)."""
SAMPLE_CROPS = 256
"""Real crops the ONNX export is verified on."""


class TrainingService:
    """Use-cases of the training service.

    Parameters
    ----------
    tables : TrainingTables
        This service's own tables (embedding specs, train runs).
    objects, keys
        Object store, key layout.
    artifacts : ArtifactsPort
        Artifact records and message logs.
    images : ImagesPort
        Image management: the plates compatible with a spec and their (preprocessed) fields.
    runner : RunnerPort or None
        Starts the ``train`` workflow (None: :meth:`train` is unavailable, as on AWS before issue 10).
    """

    def __init__(self, tables: TrainingTables, objects: ObjectStore, keys: Keys, artifacts: ArtifactsPort,
                 images: ImagesPort, runner: RunnerPort | None = None, *, roots: IngestRoots | None = None) -> None:
        self._roots = roots or IngestRoots()
        self._t = tables
        self._images = images
        self._objects = objects
        self._keys = keys
        self._artifacts = artifacts
        self._runner = runner

    # ------------------------------------------------------------------ specs
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
        plates = self._images.list_compatible_plates(shape.width, shape.height, shape.depth, len(shape.channels))
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

    # ------------------------------------------------------------------ train runs
    def create_trainings(self, spec: str, holdout: str = "none", epochs: int | None = None,
                         seed: int | None = None, network: str | None = None, loss: str | None = None,
                         temperature: float | None = None, learning_rate: float | None = None,
                         filter: list[str] | None = None, filter_uri: str | None = None,
                         train_id: str | None = None, message_id: str | None = None) -> list[dict[str, Any]]:
        """The train runs of one hold-out mode (``none`` | ``compound`` | ``folds``, see
        :mod:`bioims.training.folds`), created with their filters, or found if they exist.

        ``epochs``, ``seed``, ``temperature``, ``learning_rate``, ``network`` and ``loss`` override the spec's (on the same
        crops: e.g. the seed's network and pair loss as a comparison); ``epochs=0`` makes runs whose models
        keep their seeded initial weights (the untrained baseline of an evaluation).

        ``filter`` (image ids) and ``filter_uri`` (a file of them: one per line or a JSON list, in the
        artifact store or an ingest root; the seed's ``filterBucket``/``filterKey``) are fields the runs
        never train on besides their held-out compounds' (the seed's per-compound filter files); they are
        part of the runs' identity. ``train_id`` names the run (the seed's ``trainId``: only for a plan of
        one run; :class:`Conflict` if that id is a different run) and ``message_id`` is an existing log
        to write the run's activity to (the seed's ``messageId``).

        Raises :class:`InvalidInput` when no field is preprocessed under the spec yet (:meth:`train`
        creates the runs before its workflow preprocesses)."""
        return self._create_trainings(
            spec, holdout, dict(epochs=epochs, seed=seed, network=network, loss=loss, temperature=temperature,
                                learning_rate=learning_rate), self._custom_filter(filter, filter_uri),
            train_id, message_id, require_preprocessed=True)

    def _create_trainings(self, spec: str, holdout: str, overrides: dict[str, Any], custom: list[str],
                          train_id: str | None, message_id: str | None, *,
                          require_preprocessed: bool) -> list[dict[str, Any]]:
        o = overrides
        s = self._effective_spec(self.spec(spec), o["network"], o["loss"], temperature=o["temperature"],
                                 learning_rate=o["learning_rate"])
        if holdout not in HOLDOUT_MODES:
            raise InvalidInput(f"holdout must be one of {', '.join(HOLDOUT_MODES)}, got {holdout!r}")
        settings = _override(s.training, epochs=o["epochs"], seed=o["seed"])
        fields = self._fields(s, preprocessed=False)
        if require_preprocessed and not any(f.cells for f in fields):
            raise InvalidInput(f"no preprocessed fields under spec {s.name}; run `bioims preprocess {s.name}`")
        if not fields:
            raise InvalidInput(f"no validated plate has the shape and channels of spec {s.name}")
        category = settings.label_category
        compound_moa = {f.compound: f.metadata.get(category) for f in fields if f.compound}
        plan = holdout_plan(holdout, compound_moa, folds=settings.folds, seed=settings.seed)
        if train_id is not None and len(plan) != 1:
            raise InvalidInput(f"a train id names one run; holdout {holdout} makes {len(plan)}")
        runs = []
        for index, held in enumerate(plan):
            digest = stable_id(s.name, s.to_dict(), holdout, held, settings.__dict__,
                               *([custom] if custom else []), length=8)
            run_id = train_id or f"{s.name}-{holdout}-{index}-{digest}"
            runs.append(self._create_run(run_id, s, settings, holdout, held, fields, custom, message_id,
                                         named=train_id is not None))
        return runs

    def _custom_filter(self, ids: list[str] | None, uri: str | None) -> list[str]:
        """The image ids of a custom training filter, from the list and the file (sorted, distinct)."""
        found = set(ids or [])
        if uri is not None:
            try:  # in the artifact store (the seed's resource bucket), else under an ingest root
                check_input_uri(uri, [normalise_root(self._keys.root)], "training filter")
            except InvalidInput:
                self._roots.check(uri, "training filter")
            if self._objects.size(uri) > MAX_FILTER_BYTES:
                raise InvalidInput(f"training filter {uri} is larger than {MAX_FILTER_BYTES} bytes")
            found.update(parse_image_ids(self._objects.get_bytes(uri), uri))
        return sorted(found)

    @staticmethod
    def _effective_spec(spec: EmbeddingSpec, network: str | None, loss: str | None,
                        **training: float | None) -> EmbeddingSpec:
        """The spec with a run's network/loss/training overrides, validated like a spec file."""
        doc = spec.to_dict()
        doc.update({k: v for k, v in (("network", network), ("loss", loss)) if v is not None})
        doc["training"].update({k: v for k, v in training.items() if v is not None})
        return EmbeddingSpec.from_dict(doc)

    def _create_run(self, train_id: str, spec: EmbeddingSpec, settings: TrainingSettings, mode: str,
                    held: list[str], fields: list[SpecField], custom: list[str], message_id: str | None,
                    *, named: bool) -> dict[str, Any]:
        held_set = set(held)
        excluded = sorted({f.image_id for f in fields if f.compound in held_set} | set(custom))
        run_settings = {**settings.__dict__, "holdout_mode": mode, "network": spec.network, "loss": spec.loss}
        try:
            existing = self._t.train_runs.get(train_id)
        except self._t.train_runs.DoesNotExist:
            pass
        else:
            if named and (existing.spec_name, list(existing.holdout or []), dict(existing.settings or {}),
                          self.get_training_filter(train_id)) != (spec.name, held, run_settings, excluded):
                raise Conflict(f"train run {train_id} exists with another spec, hold-out, settings or filter")
            return to_dict(existing)
        filter_uri = self._keys.model(train_id, "filter.json")
        self._objects.put_json(filter_uri, excluded)
        self._artifacts.create_artifact(train_id, filter_uri, train_id=train_id, type="train-filter")
        created = (f"train run {train_id} created: spec {spec.name}, holdout {mode} {held}, "
                   f"{len(excluded)} fields filtered ({len(custom)} by the custom filter)")
        if message_id is None:
            message_id = self._artifacts.create_message(created)
        else:
            self._artifacts.add_message(message_id, created)
        row = self._t.train_runs(train_id, spec_name=spec.name, created_at=iso(), status=TrainStatus.CREATED,
                                 holdout=held, filter_uri=filter_uri, filter_count=len(excluded), message_id=message_id,
                                 settings=run_settings)
        try:
            row.save(condition=self._t.train_runs.train_id.does_not_exist())
        except PutError as e:
            if not condition_failed(e):
                raise
        return to_dict(self._t.train_runs.get(train_id))

    def get_training(self, train_id: str) -> dict[str, Any]:
        """A train run: spec, holdout, filter count and URI, status, timestamps, metrics, model URIs."""
        return to_dict(self._run(train_id))

    def get_embedding_trainings(self, name: str) -> list[dict[str, Any]]:
        """The train runs of a spec, oldest first."""
        self.spec(name)
        return [to_dict(r) for r in self._t.train_runs.by_spec.query(name)]

    def update_training(self, train_id: str, attribute: str, value: Any) -> dict[str, Any]:
        """Change a created run (the seed's updateTraining): ``message_id`` (an existing log it writes to
        from now on), ``filter`` (image ids) or ``filter_uri`` (a file of them) replacing its custom filter
        (its held-out compounds' fields stay filtered; the run keeps its id). :class:`Conflict` once the
        run has started; the seed's SageMaker attributes do not exist here (bioims trains on Batch)."""
        row = self._run(train_id)
        attribute = SEED_ATTRIBUTES.get(attribute, attribute)
        if attribute in ("sagemakerTrainId", "sagemakerJobName"):
            raise InvalidInput(f"{attribute} does not exist in bioims: runs train as AWS Batch jobs, not SageMaker")
        if attribute in ("filterBucket", "filterKey"):
            raise InvalidInput("set the filter as one attribute: filter_uri = s3://BUCKET/KEY")
        if attribute not in ("message_id", "filter", "filter_uri"):
            raise InvalidInput(f"attribute must be message_id, filter or filter_uri, got {attribute!r}")
        if row.status != TrainStatus.CREATED:
            raise Conflict(f"train run {train_id} is {row.status}; only a created run can be changed")
        if attribute == "message_id":
            if not isinstance(value, str) or not value:
                raise InvalidInput("message_id must be a non-empty string")
            self._artifacts.add_message(value, f"train run {train_id} logs here")
            row.update(actions=[self._t.train_runs.message_id.set(value)])
            return to_dict(row)
        if attribute == "filter" and not (isinstance(value, list) and len(value) <= MAX_ITEMS and all(
                isinstance(v, str) and 0 < len(v) <= MAX_ID for v in value)):
            raise InvalidInput(f"filter must be a list of at most {MAX_ITEMS} image ids (strings of 1 to {MAX_ID} "
                               "characters)")
        if attribute == "filter_uri" and not (isinstance(value, str) and value.startswith(("file://", "s3://"))):
            raise InvalidInput("filter_uri must be a file:// or s3:// URI")
        custom = self._custom_filter(value, None) if attribute == "filter" else self._custom_filter(None, value)
        held = set(row.holdout or [])
        excluded = sorted({f.image_id for f in self._fields(self.spec(row.spec_name), preprocessed=False)
                           if f.compound in held} | set(custom))
        self._objects.put_json(row.filter_uri, excluded)
        row.update(actions=[self._t.train_runs.filter_count.set(len(excluded))])
        self._log(row, f"custom filter replaced: {len(custom)} ids, {len(excluded)} fields filtered")
        return to_dict(row)

    def get_training_filter(self, train_id: str) -> list[str]:
        """The image ids a run does not train on (its held-out compounds' fields)."""
        row = self._run(train_id)
        return list(self._objects.get_json(row.filter_uri)) if row.filter_uri else []

    def get_training_job_info(self, train_id: str) -> dict[str, Any]:
        """Progress of a run's job: status, epochs done, per-epoch history, best epoch, message log."""
        row = self._run(train_id)
        metrics = row.metrics or {}
        messages = self._artifacts.list_messages(row.message_id) if row.message_id else []
        return {"train_id": train_id, "status": row.status, "error": row.error,
                "epochs": (row.settings or {}).get("epochs"), "epochs_done": len(metrics.get("history", [])),
                "best_epoch": metrics.get("best_epoch"), "history": metrics.get("history", []),
                "started_at": row.started_at and iso(row.started_at),
                "finished_at": row.finished_at and iso(row.finished_at), "messages": messages}

    def delete_training(self, train_id: str) -> dict[str, Any]:
        """Delete a run and what it produced: its model objects and embeddings, its fields' result rows and
        every artifact record with its train id. :class:`Conflict` while it runs or while a search index is
        built from it (delete the index first: the message names it). The run's row goes last, so an
        interrupted delete is finished by running it again."""
        row = self._run(train_id)
        if row.status == TrainStatus.RUNNING:
            raise Conflict(f"train run {train_id} is running; stop its job first")
        records = self._artifacts.get_train_artifacts(train_id)
        indexes = sorted({a["context_id"] for a in records if str(a.get("type", "")).startswith("index-")})
        if indexes:
            raise Conflict(f"train run {train_id} is used by {len(indexes)} search index(es): {', '.join(indexes)}; "
                           f"delete them first (`bioims index delete {train_id}`)")
        uris = [u for root in (self._keys.models_root(train_id), self._keys.embeddings_root(train_id))
                for u in self._objects.list(root + "/")]
        for uri in uris:
            self._objects.delete(uri)
        results = self._images.delete_image_train_results(train_id)["deleted"]
        for context in sorted({a["context_id"] for a in records} | {train_id}):
            self._artifacts.delete_artifacts(context, train_id)
        row.delete()
        return {"deleted": train_id, "objects": len(uris), "image_results": results,
                "artifacts": len(records)}

    def train(self, spec: str, holdout: str = "none", epochs: int | None = None, seed: int | None = None,
              network: str | None = None, loss: str | None = None, temperature: float | None = None,
              learning_rate: float | None = None, filter: list[str] | None = None, filter_uri: str | None = None,
              train_id: str | None = None, message_id: str | None = None) -> dict[str, Any]:
        """Create (or find) the runs of a hold-out mode (see :meth:`create_trainings`) and start the
        ``train`` workflow over them, which first preprocesses the spec's fields that are not yet (so a
        spec can be trained right after it is created); returns ``{"execution_id", "train_ids"}`` at once."""
        if self._runner is None:
            raise InvalidInput("this runtime has no job runner; train with `bioims train` on a machine")
        runs = self._create_trainings(
            spec, holdout, dict(epochs=epochs, seed=seed, network=network, loss=loss, temperature=temperature,
                                learning_rate=learning_rate), self._custom_filter(filter, filter_uri),
            train_id, message_id, require_preprocessed=False)
        ids = [r["train_id"] for r in runs]
        return {"execution_id": self._runner.start("train", {"train_ids": ids}), "train_ids": ids}

    def _run(self, train_id: str) -> Any:
        if not isinstance(train_id, str) or not train_id:
            raise InvalidInput("train id must be a non-empty string")
        try:
            return self._t.train_runs.get(train_id)
        except self._t.train_runs.DoesNotExist:
            raise NotFound(f"no train run {train_id!r}") from None

    def _fields(self, spec: EmbeddingSpec, preprocessed: bool = True) -> list[SpecField]:
        plates = [p["plate_id"] for p in self.get_compatible_plates(spec.name)]
        return spec_fields(self._images, spec.name, plates, preprocessed=preprocessed)

    # ------------------------------------------------------------------ the training job
    def run_training(self, train_id: str, *, threads: int | None = None, progress: bool = False) -> dict[str, Any]:
        """Train a run (resuming from its checkpoint), export and verify its ONNX model, write its model
        card; the body of the ``train-model`` job step (not an API operation: it needs torch).

        Returns ``{"train_id", "status", "onnx_uri", "card_uri", "best_epoch", "epochs_done",
        "validation_nsc", "seconds", "skipped"}``; a run already complete is returned as it is."""
        row = self._run(train_id)
        if row.status == TrainStatus.COMPLETE:
            return {**self._summary(row), "skipped": True}
        started = time.perf_counter()
        resumed = row.started_at is not None
        row.update(actions=[self._t.train_runs.status.set(TrainStatus.RUNNING), self._t.train_runs.error.remove(),
                            self._t.train_runs.started_at.set(row.started_at or utcnow())])
        self._log(row, "training resumed" if resumed else "training started")
        try:
            summary = self._train(row, threads=threads, progress=progress)
        except BaseException as e:
            reason = e.message if isinstance(e, BioimsError) else f"{type(e).__name__}: {e}"
            row.update(actions=[self._t.train_runs.status.set(TrainStatus.FAILED), self._t.train_runs.error.set(reason),
                                self._t.train_runs.finished_at.set(utcnow())])
            self._log(row, f"training failed: {reason}")
            raise
        self._log(row, f"training complete in {time.perf_counter() - started:.0f} s: best epoch "
                       f"{summary['best_epoch']}, export verified (max abs diff {summary['max_abs_diff']:.2g})")
        return {**self._summary(self._run(train_id)), "seconds": round(time.perf_counter() - started, 1),
                "skipped": False}

    def _summary(self, row: Any) -> dict[str, Any]:
        metrics = row.metrics or {}
        uris = row.model_uris.as_dict() if row.model_uris else {}
        return {"train_id": row.train_id, "holdout": list(row.holdout or []), "status": row.status,
                "onnx_uri": uris.get("onnx"), "card_uri": uris.get("card"), "best_epoch": metrics.get("best_epoch"),
                "epochs_done": len(metrics.get("history", [])), "validation_nsc": metrics.get("best_validation_nsc")}

    def _log(self, row: Any, message: str) -> None:
        if row.message_id:
            self._artifacts.add_message(row.message_id, message)

    def _train(self, row: Any, *, threads: int | None, progress: bool) -> dict[str, Any]:
        from ...jobs.runner import default_workers
        from ...training import export, trainer
        from ...training.data import INPUT_SCALE, FieldRef, crop_shape, load_crops, split_validation

        settings_doc = dict(row.settings or {})
        mode = settings_doc.pop("holdout_mode", "none")
        base = self.spec(row.spec_name)
        network, loss = settings_doc.pop("network", base.network), settings_doc.pop("loss", base.loss)
        settings = TrainingSettings(**settings_doc)
        spec = replace(base, training=settings, network=network, loss=loss)
        excluded = set(self.get_training_filter(row.train_id))
        category = settings.label_category
        fields = [f for f in self._fields(spec) if f.image_id not in excluded and f.metadata.get(category)
                  and f.cells and f.crops_uri]
        if not fields:
            raise InvalidInput(f"train run {row.train_id} has no labelled ({category}) preprocessed fields to "
                               f"train on")
        classes = sorted({str(f.metadata[category]) for f in fields})
        compounds = sorted({str(f.compound) for f in fields})
        refs = [FieldRef(f.image_id, str(f.crops_uri), int(f.cells or 0), classes.index(str(f.metadata[category])),
                         compounds.index(str(f.compound)), f"{f.plate_id}/{f.well}") for f in fields]
        train_refs, val_refs = split_validation(refs, settings.validation_fraction, settings.seed)
        control = classes.index(CONTROL) if CONTROL in classes else None
        def on_epoch(entry: dict[str, Any], state: trainer.TrainState) -> None:
            row.update(actions=[self._t.train_runs.metrics.set({"history": state.history,
                                                                "best_epoch": state.best_epoch})])
            self._log(row, f"epoch {entry['epoch']}: loss {entry['loss']:.4f}, validation NSC "
                           f"{entry['validation_nsc']}, {entry['crops_per_second']:.0f} crops/s")

        run = trainer.Run(self._keys.model(row.train_id, "checkpoint.pt"), self._keys.model(row.train_id, "best.pt"))
        model, state, stream = trainer.train(spec, settings, train_refs, val_refs, self._objects, run,
                                             control_label=control, threads=threads or default_workers(),
                                             progress=progress, desc=row.train_id, on_epoch=on_epoch)
        if stream.skipped:
            self._log(row, f"{len(stream.skipped)} fields skipped: " + "; ".join(
                f"{k}: {v}" for k, v in list(stream.skipped.items())[:5]))
        if len(stream.skipped) >= len(stream.fields):
            raise InvalidInput(f"every field of train run {row.train_id} was skipped: "
                               f"{next(iter(stream.skipped.values()))}")
        shape = crop_shape(spec)
        sample_fields = [f for f in val_refs + train_refs if f.image_id not in stream.skipped]
        sample = []
        for f in sample_fields:
            sample.append(load_crops(self._objects, f.crops_uri, shape))
            if sum(len(s) for s in sample) >= SAMPLE_CROPS:
                break
        crops = np.concatenate(sample)[:SAMPLE_CROPS]
        label_map = dict(enumerate(classes))
        properties = {"train_id": row.train_id, "spec": spec.to_dict(), "label_map": label_map,
                      "label_category": category, "input_shape": list(shape),
                      "input_scale": repr(INPUT_SCALE), "embedding_length": spec.embedding_length,
                      "holdout": list(row.holdout or [])}
        onnx_bytes = export.export_onnx(model, crops, properties)
        verification = export.verify(model, onnx_bytes, crops)
        onnx_uri = self._keys.model(row.train_id, "model.onnx")
        card_uri = self._keys.model(row.train_id, "model-card.json")
        self._objects.put_bytes(onnx_uri, onnx_bytes)
        best = next((h for h in state.history if h["epoch"] == state.best_epoch), None)
        metrics = {"best_epoch": state.best_epoch, "best_validation_nsc": best and best["validation_nsc"],
                   "stopped_early": state.stopped_early, "resumed_from": state.resumed_from,
                   "history": state.history, "verification": verification}
        card = {"train_id": row.train_id, "spec": spec.to_dict(), "network": spec.network, "loss": spec.loss,
                "holdout_mode": mode, "holdout": list(row.holdout or []), "filter_count": int(row.filter_count or 0),
                "classes": label_map, "label_category": category, "compounds_trained": len(compounds),
                "data": {"train_fields": len(train_refs), "validation_fields": len(val_refs),
                         "train_crops": stream.crops, "skipped_fields": len(stream.skipped)},
                "input": {"name": "crops", "shape": ["N", *shape], "dtype": "float32",
                          "scale": properties["input_scale"]},
                "output": {"name": "embedding", "shape": ["N", spec.embedding_length], "normalized": "L2"},
                "metrics": metrics, "onnx_uri": onnx_uri, "onnx_bytes": len(onnx_bytes), "created_at": iso()}
        self._objects.put_json(card_uri, card)
        uris = {"onnx": onnx_uri, "card": card_uri}
        uris |= {kind: uri for kind, uri in (("checkpoint", run.checkpoint_uri), ("weights", run.best_uri))
                 if self._objects.exists(uri)}  # an untrained (epochs=0) run has neither
        for kind, uri in uris.items():
            self._artifacts.create_artifact(row.train_id, uri, train_id=row.train_id,
                                            type="model-card" if kind == "card" else kind,
                                            size=len(onnx_bytes) if kind == "onnx" else None)
        row.update(actions=[self._t.train_runs.status.set(TrainStatus.COMPLETE),
                            self._t.train_runs.metrics.set(metrics), self._t.train_runs.model_uris.set(uris),
                            self._t.train_runs.finished_at.set(utcnow())])
        return {"best_epoch": state.best_epoch, "max_abs_diff": verification["max_abs_diff"]}


def _override(settings: TrainingSettings, **values: Any) -> TrainingSettings:
    """Settings with the given (non-None) values replaced, validated like a spec's."""
    changed = {k: v for k, v in values.items() if v is not None}
    for key, value in changed.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidInput(f"{key} must be an integer >= 0, got {value!r}")
    return replace(settings, **changed)
