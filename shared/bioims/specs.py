"""Embedding specs (the seed's "embedding"): what images a model takes and how it is built and trained.

A spec file (``bioims spec create FILE.json``) is JSON with the required keys below; every other
setting is optional with the documented default, and unknown keys are rejected::

    {"name": "bbbc021-demo",
     "input": {"width": 1280, "height": 1024, "depth": 1, "channels": ["DAPI", "Tubulin", "Actin"]},
     "segmentation_channel": "DAPI",
     "roi_size": 128,
     "min_nucleus_voxels": 200,
     "embedding_length": 256}

Optional sections and their defaults:

- ``flatfield``: ``{"cutoff_percentile": 30.0, "sigma": 50.0}`` (the seed's flat-field: the plate's
  mean image clipped at its 30th percentile, Gaussian-smoothed with sigma 50 px);
- ``normalization``: ``{"clip_percentile": 99.0, "log_cap": 5.0}`` (clip each channel at its 99th
  percentile, divide by the flat-field, log, cap, rescale to [0, 1]);
- ``segmentation``: ``{"declump": false}`` (the seed's Otsu + openings + components; ``true`` also
  splits touching nuclei at their dense cores, about 0.1 s more per 1024x1280 field);
- ``network``: ``"resnet"`` (bioims default: residual stages with batch normalisation) or ``"seed"``
  (the seed's six stride-2 convolutions); see :mod:`bioims.training.networks`;
- ``loss``: ``"proxy"`` (bioims default: cosine softmax against one learned proxy per class),
  ``"supcon"`` (multi-positive supervised contrastive, positives from other compounds of the class) or
  ``"seed"`` (one anchor-positive pair per class, softmax over similarities, the seed's temperature
  0.2); see :mod:`bioims.training.losses`;
- ``training``: ``{"epochs": 30, "batch_size": 128, "learning_rate": 0.002, "weight_decay": 0.0001,
  "temperature": 0.1, "patience": 5, "seed": 0, "folds": 5, "label_category": "moa",
  "compute": "cpu", "validation_fraction": 0.2}``: AdamW with a cosine learning-rate decay over
  ``epochs``; early stopping after ``patience`` epochs without a better validation score; ``folds`` is K of
  ``bioims train --holdout folds``; ``validation_fraction`` of each compound's wells (compounds with at
  least three wells) validate instead of training.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from .contract import enums
from .contract.enums import Compute, values
from .errors import InvalidInput
from .names import check_name

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
Network = Literal["resnet", "seed"]  # for type checkers: the members of enums.Network
NETWORKS = values(enums.Network)
MIN_ROI = {enums.Network.RESNET.value: 16, enums.Network.SEED.value: 32}
"""Smallest ROI side each network accepts (its total stride: the last stage still sees a pixel)."""
Loss = Literal["proxy", "supcon", "seed"]  # for type checkers: the members of enums.Loss
LOSSES = values(enums.Loss)


@dataclass(frozen=True)
class InputShape:
    """Image dims in pixels and the channel names, in channel order."""

    width: int
    height: int
    depth: int
    channels: tuple[str, ...]


@dataclass(frozen=True)
class FlatFieldSettings:
    cutoff_percentile: float = 30.0
    sigma: float = 50.0


@dataclass(frozen=True)
class NormalizationSettings:
    clip_percentile: float = 99.0
    log_cap: float = 5.0


@dataclass(frozen=True)
class SegmentationSettings:
    declump: bool = False


@dataclass(frozen=True)
class TrainingSettings:
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    patience: int = 5
    seed: int = 0
    folds: int = 5
    label_category: str = "moa"
    compute: Literal["cpu", "gpu"] = "cpu"
    validation_fraction: float = 0.2


@dataclass(frozen=True)
class EmbeddingSpec:
    """A validated embedding spec (see the module docstring)."""

    name: str
    input: InputShape
    segmentation_channel: str
    roi_size: int
    min_nucleus_voxels: int
    embedding_length: int
    flatfield: FlatFieldSettings = field(default_factory=FlatFieldSettings)
    normalization: NormalizationSettings = field(default_factory=NormalizationSettings)
    segmentation: SegmentationSettings = field(default_factory=SegmentationSettings)
    network: Network = "resnet"
    loss: Loss = "proxy"
    training: TrainingSettings = field(default_factory=TrainingSettings)

    @property
    def segmentation_index(self) -> int:
        return self.input.channels.index(self.segmentation_channel)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input"]["channels"] = list(self.input.channels)
        return d

    @classmethod
    def from_dict(cls, data: Any) -> EmbeddingSpec:
        """Validate a spec document; :class:`InvalidInput` names the first problem."""
        if not isinstance(data, dict):
            raise InvalidInput(f"an embedding spec must be a JSON object, got {type(data).__name__}")
        _no_unknown(data, cls, "spec")
        for key in ("name", "input", "segmentation_channel", "roi_size", "min_nucleus_voxels", "embedding_length"):
            if key not in data:
                raise InvalidInput(f"spec is missing required key {key!r}")
        name = data["name"]
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidInput(f"spec name must be 1-100 letters, digits, '_', '-', '.', got {name!r}")
        shape = _input(data["input"])
        seg = data["segmentation_channel"]
        if seg not in shape.channels:
            raise InvalidInput(f"segmentation_channel {seg!r} is not one of the input channels {list(shape.channels)}")
        spec = cls(
            name=name, input=shape, segmentation_channel=seg,
            roi_size=_int(data["roi_size"], "roi_size", 8, 4096),
            min_nucleus_voxels=_int(data["min_nucleus_voxels"], "min_nucleus_voxels", 1, 10**7),
            embedding_length=_int(data["embedding_length"], "embedding_length", 2, 65536),
            flatfield=_section(data.get("flatfield", {}), FlatFieldSettings, "flatfield"),
            normalization=_section(data.get("normalization", {}), NormalizationSettings, "normalization"),
            segmentation=_section(data.get("segmentation", {}), SegmentationSettings, "segmentation"),
            network=_choice(data.get("network", "resnet"), "network", NETWORKS),
            loss=_choice(data.get("loss", "proxy"), "loss", LOSSES),
            training=_section(data.get("training", {}), TrainingSettings, "training"),
        )
        _check_ranges(spec)
        return spec

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "spec") -> EmbeddingSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"{source} is not valid JSON: {e}") from None
        return cls.from_dict(data)


def _no_unknown(data: dict[str, Any], cls: type, where: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidInput(f"unknown key(s) in {where}: {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def _int(value: Any, name: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidInput(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> Any:
    if value not in choices:
        raise InvalidInput(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _input(data: Any) -> InputShape:
    if not isinstance(data, dict):
        raise InvalidInput("spec input must be an object with width, height, depth, channels")
    _no_unknown(data, InputShape, "input")
    missing = [k for k in ("width", "height", "depth", "channels") if k not in data]
    if missing:
        raise InvalidInput(f"spec input is missing {', '.join(missing)}")
    channels = data["channels"]
    if (not isinstance(channels, list) or not channels
            or not all(isinstance(c, str) and c for c in channels)):
        raise InvalidInput(f"input channels must be a non-empty list of names, got {channels!r}")
    for channel in channels:  # a channel names its flat-field file (bioims.store.keys)
        check_name(channel, "input channel")
    if len(set(channels)) != len(channels):
        raise InvalidInput(f"input channels must be distinct, got {channels!r}")
    return InputShape(_int(data["width"], "input width", 1, 1 << 16), _int(data["height"], "input height", 1, 1 << 16),
                      _int(data["depth"], "input depth", 1, 1 << 12), tuple(channels))


def _section(data: Any, cls: type, where: str) -> Any:
    if not isinstance(data, dict):
        raise InvalidInput(f"spec {where} must be an object, got {type(data).__name__}")
    _no_unknown(data, cls, where)
    values = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value, default = data[f.name], getattr(cls(), f.name)
        if isinstance(default, bool) or isinstance(default, str):
            ok = type(value) is type(default)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise InvalidInput(f"{where}.{f.name} must be a {type(default).__name__}, got {value!r}")
        values[f.name] = float(value) if isinstance(default, float) else value
    return cls(**values)


def _check_ranges(spec: EmbeddingSpec) -> None:
    checks = [
        (0 < spec.flatfield.cutoff_percentile <= 100, "flatfield.cutoff_percentile must be in (0, 100]"),
        (spec.flatfield.sigma >= 0, "flatfield.sigma must be >= 0"),
        (0 < spec.normalization.clip_percentile <= 100, "normalization.clip_percentile must be in (0, 100]"),
        (spec.normalization.log_cap > 0, "normalization.log_cap must be > 0"),
        (spec.training.epochs >= 1, "training.epochs must be >= 1"),
        (spec.training.batch_size >= 2, "training.batch_size must be >= 2"),
        (spec.training.learning_rate > 0, "training.learning_rate must be > 0"),
        (spec.training.temperature > 0, "training.temperature must be > 0"),
        (spec.training.folds >= 2, "training.folds must be >= 2"),
        (spec.training.compute in values(Compute), "training.compute must be cpu or gpu"),
        (0 <= spec.training.validation_fraction < 1, "training.validation_fraction must be in [0, 1)"),
        (spec.training.patience >= 1, "training.patience must be >= 1"),
        (spec.roi_size >= MIN_ROI[spec.network],
         f"roi_size {spec.roi_size} is too small for the {spec.network} network (at least {MIN_ROI[spec.network]} px)"),
    ]
    for ok, message in checks:
        if not ok:
            raise InvalidInput(message)
