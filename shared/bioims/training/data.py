"""Streaming, class-stratified batches of single-cell crops read from the object store.

A field's crops are one ``.npy`` object (uint16 (n, C, h, w), see :mod:`bioims.imaging.preprocess`).
An epoch visits every training field once: fields are dealt into chunks of about ``chunk_crops`` crops so
that each chunk holds the classes roughly in proportion (and so, usually, several compounds per class); the next
chunk is read by a background thread while the current one trains, so memory is two chunks, whatever the
dataset size, and nothing is copied to local disk. Order and batches are a pure function of
``(seed, epoch)``, so a resumed run replays exactly the epochs an uninterrupted one would.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import BioimsError, InvalidInput
from ..imaging.preprocess import CROP_SCALE
from ..specs import EmbeddingSpec
from ..store.objects import ObjectStore

INPUT_SCALE = 1.0 / CROP_SCALE
"""Network input = stored uint16 crop x INPUT_SCALE (float32 in [0, 1]); recorded in the ONNX metadata."""


@dataclass(frozen=True)
class FieldRef:
    """One preprocessed field as the trainer sees it.

    ``label`` is the training class index (0..P-1), ``subclass`` the compound index, ``group`` the
    plate and well (validation takes whole wells)."""

    image_id: str
    crops_uri: str
    cells: int
    label: int
    subclass: int
    group: str


@dataclass(frozen=True)
class Batch:
    """uint16 crops ``x`` (B, C, h, w) with their ``labels`` and ``subclasses`` (B,). For the seed's pair
    loss, ``groups`` x ``classes`` anchors followed by as many positives (see
    :func:`bioims.training.losses.seed_pair_loss`); 0 otherwise."""

    x: np.ndarray
    labels: np.ndarray
    subclasses: np.ndarray
    groups: int = 0
    classes: int = 0


def crop_shape(spec: EmbeddingSpec) -> tuple[int, ...]:
    """Shape of one crop under a spec: (C, h, w), or (C, d, h, w) for z-stacks (sides capped by the image)."""
    s = spec.input
    side = (min(spec.roi_size, s.height), min(spec.roi_size, s.width))
    channels = len(s.channels)
    return (channels, *side) if s.depth == 1 else (channels, min(spec.roi_size, s.depth), *side)


def load_crops(objects: ObjectStore, uri: str, shape: tuple[int, ...]) -> np.ndarray:
    """A field's crops, checked: uint16 (n, *shape); :class:`InvalidInput` names what is wrong."""
    try:
        crops = np.load(io.BytesIO(objects.get_bytes(uri)), allow_pickle=False)
    except BioimsError:
        raise
    except Exception as e:
        raise InvalidInput(f"crops {uri} are unreadable: {type(e).__name__}: {e}") from None
    if crops.dtype != np.uint16 or crops.shape[1:] != shape:
        raise InvalidInput(f"crops {uri} are {crops.dtype} {tuple(crops.shape[1:])}, the spec wants uint16 "
                           f"{shape}; preprocess again under this spec")
    return crops


def split_validation(fields: Sequence[FieldRef], fraction: float, seed: int) -> tuple[list[FieldRef], list[FieldRef]]:
    """(train, validation): ``round(fraction * wells)`` whole wells (at most all but one) of each compound
    with at least three wells go to validation (so no well's cells are on both sides)."""
    wells: dict[int, list[str]] = defaultdict(list)
    for f in fields:
        if f.group not in wells[f.subclass]:
            wells[f.subclass].append(f.group)
    rng = np.random.default_rng([seed, 7])
    held: set[str] = set()
    for subclass in sorted(wells):
        groups = sorted(wells[subclass])
        n = min(round(fraction * len(groups)), len(groups) - 1) if len(groups) >= 3 else 0
        held.update(groups[i] for i in rng.permutation(len(groups))[:n])
    return [f for f in fields if f.group not in held], [f for f in fields if f.group in held]


class CropStream:
    """Batches of an epoch (see the module docstring).

    Parameters
    ----------
    objects : ObjectStore
    fields : sequence of FieldRef
    shape : tuple
        Expected crop shape (:func:`crop_shape`); fields whose crops differ are skipped and listed in
        :attr:`skipped` with the reason.
    batch_size : int
    seed : int
    pairs : bool
        Batches for the seed's pair loss (one anchor-positive pair per class, several groups per batch).
    chunk_crops : int
        Crops per chunk (memory is about two chunks).
    """

    def __init__(self, objects: ObjectStore, fields: Sequence[FieldRef], *, shape: tuple[int, ...],
                 batch_size: int, seed: int, pairs: bool = False, chunk_crops: int = 4096) -> None:
        self.objects = objects
        self.fields = [f for f in fields if f.cells > 0]
        self.shape = shape
        self.batch_size = batch_size
        self.seed = seed
        self.pairs = pairs
        self.crops = sum(f.cells for f in self.fields)
        mean = self.crops / max(1, len(self.fields))
        self.fields_per_chunk = max(1, round(chunk_crops / max(mean, 1.0)))
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        """Batches per epoch (approximate when fields are skipped)."""
        return max(1, self.crops // self.batch_size)

    def chunks(self, epoch: int) -> list[list[FieldRef]]:
        """The epoch's fields, stratified by class into chunks."""
        rng = np.random.default_rng([self.seed, epoch])
        by_label: dict[int, list[FieldRef]] = defaultdict(list)
        for f in self.fields:
            by_label[f.label].append(f)
        keyed = []
        for label in sorted(by_label):
            group = by_label[label]
            order = rng.permutation(len(group))
            offsets = rng.random(len(group))
            keyed += [((rank + offsets[rank]) / len(group), group[i].image_id, group[i])
                      for rank, i in enumerate(order)]
        ordered = [f for _, _, f in sorted(keyed, key=lambda t: (t[0], t[1]))]
        return [ordered[i:i + self.fields_per_chunk] for i in range(0, len(ordered), self.fields_per_chunk)]

    def _load(self, chunk: list[FieldRef]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts, labels, subclasses = [], [], []
        for f in chunk:
            if f.image_id in self.skipped:
                continue
            try:
                crops = load_crops(self.objects, f.crops_uri, self.shape)
            except BioimsError as e:
                self.skipped[f.image_id] = e.message
                continue
            parts.append(crops)
            labels.append(np.full(len(crops), f.label, np.int64))
            subclasses.append(np.full(len(crops), f.subclass, np.int64))
        if not parts:
            return np.empty((0, *self.shape), np.uint16), np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(parts), np.concatenate(labels), np.concatenate(subclasses)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of one epoch, in a deterministic order."""
        chunks = self.chunks(epoch)
        rng = np.random.default_rng([self.seed, epoch, 1])
        with ThreadPoolExecutor(1) as reader:
            pending: Future | None = reader.submit(self._load, chunks[0]) if chunks else None
            for i in range(len(chunks)):
                assert pending is not None
                x, labels, subclasses = pending.result()
                pending = reader.submit(self._load, chunks[i + 1]) if i + 1 < len(chunks) else None
                yield from (self._pairs if self.pairs else self._batches)(x, labels, subclasses, rng)

    def _batches(self, x: np.ndarray, labels: np.ndarray, subclasses: np.ndarray,
                 rng: np.random.Generator) -> Iterator[Batch]:
        order = rng.permutation(len(x))
        for start in range(0, len(order), self.batch_size):
            idx = np.sort(order[start:start + self.batch_size])
            if len(idx) >= 2:  # batch normalisation needs two samples
                yield Batch(x[idx], labels[idx], subclasses[idx])

    def _pairs(self, x: np.ndarray, labels: np.ndarray, subclasses: np.ndarray,
               rng: np.random.Generator) -> Iterator[Batch]:
        members = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
        classes = [c for c in sorted(members) if len(members[c]) >= 2]
        if len(classes) < 2:
            return
        groups = max(1, self.batch_size // (2 * len(classes)))
        for _ in range(max(1, round(len(x) / (2 * groups * len(classes))))):
            picks = np.stack([rng.choice(members[c], 2 * groups, replace=len(members[c]) < 2 * groups)
                              for c in classes], axis=1)  # (2G, P)
            idx = np.concatenate([picks[:groups].ravel(), picks[groups:].ravel()])
            yield Batch(x[idx], labels[idx], subclasses[idx], groups, len(classes))


def to_input(x: np.ndarray) -> torch.Tensor:
    """uint16 crops -> float32 network input in [0, 1]."""
    return torch.from_numpy(x.astype(np.float32) * np.float32(INPUT_SCALE))


def augment(x: torch.Tensor, generator: torch.Generator, jitter: float = 0.1) -> torch.Tensor:
    """Microscopy-safe augmentation of a float batch (N, C, ..., h, w): a random one of the 8 flips and
    90-degree rotations per crop (cells have no preferred orientation), then per-crop, per-channel
    intensity gain ``exp(N(0, jitter))`` and offset ``N(0, jitter / 10)`` (stain and exposure variation)."""
    n = x.shape[0]
    ops = torch.randint(0, 8, (n,), generator=generator)
    if x.shape[-1] != x.shape[-2]:  # non-square crops (an image narrower than the ROI): no quarter turns
        ops = ops & 6
    out = torch.empty_like(x)
    for op in range(8):
        idx = (ops == op).nonzero().squeeze(1)
        if idx.numel():
            y = x[idx].flip(-1) if op & 4 else x[idx]
            out[idx] = torch.rot90(y, op & 3, dims=(-2, -1))
    shape = (n, x.shape[1]) + (1,) * (x.ndim - 2)
    gain = torch.exp(torch.randn(shape, generator=generator) * jitter)
    offset = torch.randn(shape, generator=generator) * (jitter / 10)
    return out * gain + offset
