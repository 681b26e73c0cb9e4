"""What a bioims ONNX model says about itself (torch-free: read by embedding and search).

Metadata properties of the model (``metadata_props``), all strings:

- ``bioims.train_id``, ``bioims.spec`` (the embedding spec, JSON), ``bioims.label_map`` (JSON: class
  index -> label, the training classes), ``bioims.label_category``;
- ``bioims.input_shape`` (JSON: one crop's shape, e.g. ``[3, 48, 48]``), ``bioims.input_scale`` (network
  input = stored uint16 crop x this), ``bioims.embedding_length``;
- ``bioims.holdout`` (JSON: compounds the model never saw).

Input ``crops``: float32 (N, *input_shape); output ``embedding``: float32 (N, embedding_length), rows of
unit L2 norm. N is dynamic.
"""

from __future__ import annotations

import json
from typing import Any

PREFIX = "bioims."
INPUT_NAME = "crops"
OUTPUT_NAME = "embedding"
JSON_KEYS = ("spec", "label_map", "input_shape", "holdout")


def encode(values: dict[str, Any]) -> dict[str, str]:
    """Metadata properties from plain values (JSON for the structured ones)."""
    return {PREFIX + k: json.dumps(v) if k in JSON_KEYS else str(v) for k, v in values.items()}


def decode(props: dict[str, str]) -> dict[str, Any]:
    """Plain values from a model's metadata properties (e.g. ``session.get_modelmeta().custom_metadata_map``)."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        if key.startswith(PREFIX):
            name = key[len(PREFIX):]
            out[name] = json.loads(value) if name in JSON_KEYS else value
    if "input_scale" in out:
        out["input_scale"] = float(out["input_scale"])
    if "embedding_length" in out:
        out["embedding_length"] = int(out["embedding_length"])
    return out
