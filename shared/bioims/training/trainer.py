"""The training loop: epochs over a :class:`~bioims.training.data.CropStream`, validation on held-in
wells driving early stopping, a checkpoint after every epoch, resume after a kill.

Every epoch is a pure function of ``(seed, epoch)`` and the state at its start (batch order,
augmentation, dropout-free networks), so a run killed at any point and resumed from its last checkpoint
ends with the same weights as one that was never interrupted (same thread count).

Validation: the held-in validation wells (:func:`~bioims.training.data.split_validation`) are embedded
after each epoch; the score is the fraction of non-control validation fields whose nearest non-control
field *of another compound* (cosine, mean of the field's cell embeddings) has the same class: a
field-level NSC. It rewards what hold-out evaluation measures (grouping compounds by MOA), not
recognising a compound, which keeps improving while generalisation to new compounds declines.
"""

from __future__ import annotations

import io
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..contract.enums import Loss
from ..errors import InvalidInput, NotFound, one_line
from ..specs import EmbeddingSpec, TrainingSettings
from ..store.objects import ObjectStore
from .data import CropStream, FieldRef, augment, crop_shape, load_crops, to_input
from .losses import Proxies, seed_pair_loss, supcon_loss
from .networks import EmbeddingNet, build_network


@dataclass
class TrainState:
    """What a checkpoint holds besides the weights and optimiser state."""

    epoch: int = 0  # epochs completed
    best_score: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    finished: bool = False
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Run:
    """Where one run keeps its state. ``checkpoint_uri``: the latest epoch (weights, optimiser, state);
    ``best_uri``: the best epoch's weights."""

    checkpoint_uri: str
    best_uri: str


def _seed_all(seed: int, epoch: int) -> torch.Generator:
    torch.manual_seed(seed * 100003 + epoch)
    return torch.Generator().manual_seed(seed * 100003 + epoch)


def _save(objects: ObjectStore, uri: str, payload: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    objects.put_bytes(uri, buffer.getvalue())


def _load(objects: ObjectStore, uri: str) -> dict[str, Any] | None:
    """A checkpoint written by :func:`_save`, or None if there is none.

    Loaded with ``weights_only=True``: a checkpoint holds tensors and plain data only (weights, optimiser
    and schedule states, :class:`TrainState` as a dict), so unpickling never runs code from the file.

    Raises
    ------
    InvalidInput
        If the file holds anything else (a pickled object, a damaged file): it is refused, not run.
    """
    try:
        data = objects.get_bytes(uri)
    except NotFound:
        return None
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise InvalidInput(f"checkpoint {uri} is refused: not a plain tensor checkpoint "
                           f"({one_line(e, limit=200)})") from None


def embed_fields(model: EmbeddingNet, objects: ObjectStore, fields: Sequence[FieldRef], shape: tuple[int, ...],
                 batch_size: int = 512) -> tuple[np.ndarray, list[FieldRef]]:
    """(F, D) mean cell embedding of each field (eval mode, no augmentation) and the fields embedded
    (unreadable ones left out)."""
    model.eval()
    vectors, kept = [], []
    with torch.no_grad():
        for f in fields:
            try:
                crops = load_crops(objects, f.crops_uri, shape)
            except Exception:
                continue
            if not len(crops):
                continue
            z = torch.cat([model(to_input(crops[i:i + batch_size])) for i in range(0, len(crops), batch_size)])
            vectors.append(z.mean(dim=0).numpy())
            kept.append(f)
    return (np.stack(vectors) if vectors else np.empty((0, 0), np.float32)), kept


def field_nsc(vectors: np.ndarray, fields: Sequence[FieldRef], control_label: int | None) -> float | None:
    """Fraction of non-control fields whose most similar non-control field of another compound has the
    same label (None when no field has such a neighbour)."""
    keep = [i for i, f in enumerate(fields) if f.label != control_label]
    if len(keep) < 2:
        return None
    v = vectors[keep]
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    labels = np.array([fields[i].label for i in keep])
    compounds = np.array([fields[i].subclass for i in keep])
    sim = v @ v.T
    sim[compounds[:, None] == compounds[None, :]] = -np.inf
    has = np.isfinite(sim).any(axis=1)
    if not has.any():
        return None
    nearest = sim[has].argmax(axis=1)
    return float((labels[has] == labels[nearest]).mean())


def train(spec: EmbeddingSpec, settings: TrainingSettings, train_fields: Sequence[FieldRef],
          val_fields: Sequence[FieldRef], objects: ObjectStore, run: Run, *, control_label: int | None = None,
          threads: int | None = None, progress: bool = False, desc: str = "train",
          on_epoch: Callable[[dict[str, Any], TrainState], None] | None = None) -> tuple[EmbeddingNet, TrainState, CropStream]:
    """Train (or resume, or just reload a finished run) and return the best epoch's network, the
    state and the stream (its ``skipped`` fields). ``settings.epochs == 0`` returns the seeded,
    untrained network (the baseline a trained one must beat).

    ``on_epoch`` is called with each epoch's history entry and the state after its checkpoint is written."""
    if threads:
        torch.set_num_threads(threads)
    shape = crop_shape(spec)
    pairs = spec.loss == Loss.SEED
    stream = CropStream(objects, train_fields, shape=shape, batch_size=settings.batch_size, seed=settings.seed,
                        pairs=pairs)
    torch.manual_seed(settings.seed)
    model = build_network(spec)
    classes = 1 + max((f.label for f in train_fields), default=0)
    proxies = Proxies(classes, spec.embedding_length) if spec.loss == Loss.PROXY else None
    parameters = list(model.parameters()) + (list(proxies.parameters()) if proxies else [])
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: 0.5 * (1 + math.cos(math.pi * min(e, settings.epochs) / max(settings.epochs, 1))))
    state = TrainState()
    saved = _load(objects, run.checkpoint_uri)
    if saved is not None:
        model.load_state_dict(saved["model"])
        if proxies is not None:
            proxies.load_state_dict(saved["proxies"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        state = TrainState(**saved["state"])
        if not state.finished:
            state.resumed_from.append(state.epoch)
    while not state.finished and state.epoch < settings.epochs:
        epoch = state.epoch
        started = time.perf_counter()
        generator = _seed_all(settings.seed, epoch)
        model.train()
        total, count, crops = 0.0, 0, 0
        with tqdm(total=len(stream), desc=f"{desc} epoch {epoch + 1}/{settings.epochs}", unit="batch",
                  disable=not progress, file=sys.stderr, leave=False) as bar:
            for batch in stream.epoch(epoch):
                x = augment(to_input(batch.x), generator)
                z = model(x)
                labels = torch.from_numpy(batch.labels)
                if pairs:
                    loss = seed_pair_loss(z, batch.groups, batch.classes, settings.temperature)
                elif proxies is None:
                    loss = supcon_loss(z, labels, torch.from_numpy(batch.subclasses), settings.temperature)
                else:
                    loss = proxies(z, labels, settings.temperature)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(x)
                count += 1
                crops += len(x)
                bar.update()
                bar.set_postfix(loss=f"{total / max(crops, 1):.4f}")
        schedule.step()
        train_loss = total / max(crops, 1)
        train_seconds = time.perf_counter() - started
        vectors, embedded = embed_fields(model, objects, val_fields, shape)
        nsc = field_nsc(vectors, embedded, control_label) if len(embedded) else None
        score = nsc if nsc is not None else -train_loss
        entry = {"epoch": epoch + 1, "loss": round(train_loss, 5), "validation_nsc": nsc, "batches": count,
                 "crops": crops, "seconds": round(time.perf_counter() - started, 2),
                 "crops_per_second": round(crops / max(train_seconds, 1e-9), 1)}
        state.history.append(entry)
        state.epoch = epoch + 1
        if score > state.best_score + 1e-9:
            state.best_score, state.best_epoch, state.bad_epochs = score, epoch + 1, 0
            _save(objects, run.best_uri, {"model": model.state_dict(), "epoch": epoch + 1})
        else:
            state.bad_epochs += 1
        if state.bad_epochs >= settings.patience:
            state.stopped_early = True
        state.finished = state.stopped_early or state.epoch >= settings.epochs
        _save(objects, run.checkpoint_uri, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                            "proxies": proxies.state_dict() if proxies else None,
                                            "schedule": schedule.state_dict(), "state": state.__dict__})
        if on_epoch:
            on_epoch(entry, state)
    best = _load(objects, run.best_uri)
    if best is not None:
        model.load_state_dict(best["model"])
    model.eval()
    return model, state, stream
