"""ONNX Runtime inference of an exported embedding model (no torch): the embedding job and search's
uploaded-field queries use it."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInput

BATCH = 256
"""Crops per ONNX Runtime call."""


def feature_names(dims: int) -> list[str]:
    """The embedding columns of a profile table: ``emb_000``, ``emb_001``, ..."""
    return [f"emb_{i:03d}" for i in range(dims)]


class EmbeddingModel:
    """One ONNX Runtime session of a run's model (graph optimisations on, threads set explicitly).

    ``embed(crops)`` maps uint16 crops (N, *input_shape) to float32 (N, D) unit vectors."""

    def __init__(self, onnx_bytes: bytes, threads: int = 1) -> None:
        import onnxruntime as ort

        from . import metadata

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
