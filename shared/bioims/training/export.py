"""ONNX export of a trained network, verified against torch before anyone relies on it."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from ..errors import BioimsError
from . import metadata
from .data import to_input
from .networks import EmbeddingNet

OPSET = 17
TOLERANCE = 1e-4


class ExportMismatch(BioimsError):
    """The exported model does not reproduce the framework's embeddings."""

    code = "ExportMismatch"


def export_onnx(model: EmbeddingNet, sample: np.ndarray, properties: dict[str, Any]) -> bytes:
    """Serialised ONNX of ``model`` (opset 17, dynamic batch), with ``properties`` as metadata (see
    :mod:`bioims.training.metadata`); ``sample`` (n >= 1 uint16 crops) traces the graph."""
    model.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (to_input(sample[:2]),), buffer, input_names=[metadata.INPUT_NAME],
                          output_names=[metadata.OUTPUT_NAME], opset_version=OPSET, dynamo=False,
                          dynamic_axes={metadata.INPUT_NAME: {0: "batch"}, metadata.OUTPUT_NAME: {0: "batch"}})
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(proto, metadata.encode(properties))
    proto.doc_string = "bioims embedding network: float32 crops (N, C, h, w) in [0, 1] -> L2-normalised (N, D)"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def verify(model: EmbeddingNet, onnx_bytes: bytes, crops: np.ndarray, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Run ``crops`` through torch and ONNX Runtime; :class:`ExportMismatch` if any output differs by more
    than ``tolerance``. Returns ``{"crops", "max_abs_diff", "tolerance", "opset"}``."""
    model.eval()
    x = to_input(crops)
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    actual = session.run([metadata.OUTPUT_NAME], {metadata.INPUT_NAME: x.numpy()})[0]
    diff = float(np.abs(actual - expected).max()) if len(crops) else 0.0
    if not np.isfinite(diff) or diff > tolerance:
        raise ExportMismatch(f"ONNX model differs from torch by {diff:.3g} on {len(crops)} crops "
                             f"(tolerance {tolerance:g})")
    return {"crops": int(len(crops)), "max_abs_diff": diff, "tolerance": tolerance, "opset": OPSET}
