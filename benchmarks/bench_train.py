"""Training throughput of the embedding networks on synthetic crops (CPU, all cores).

Crops/s of one step as the trainer runs it (uint16 crops -> ``to_input`` -> ``augment`` -> forward ->
loss -> backward -> AdamW step), batch 128, for 3 x 48 x 48 and 3 x 128 x 128 crops: the default network
(``resnet``) with the ``proxy`` loss vs the seed's network with its pair loss (8 groups x 8 classes,
anchors then positives: 128 crops). Ratio = default / seed. (Inference, ONNX Runtime vs torch, is in
``bench_embed.py``, which uses this module's spec and timing helpers.)

Untrained weights: throughput does not depend on them. Warm-up steps are not timed; each figure is the
median of the timed steps (fewer for 128 px crops, to keep the whole benchmark near a minute on 2 cores).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from bioims.specs import EmbeddingSpec, TrainingSettings
from bioims.training.data import augment, crop_shape, to_input
from bioims.training.losses import Proxies, seed_pair_loss
from bioims.training.networks import build_network

CORES = os.cpu_count() or 1
BATCH = 128
CLASSES = 13  # BBBC021: 12 MOAs + DMSO
PAIR_GROUPS, PAIR_CLASSES = 8, 8  # 2 x 8 x 8 = 128 crops, the trainer's batch size
SIDES = (48, 128)
WARMUP = {48: 2, 128: 1}  # untimed steps per crop side (the first builds the oneDNN kernels)
STEPS = {48: 3, 128: 2}  # at least this many timed steps, and at least MIN_SECONDS of them
MIN_SECONDS = 2.0


def make_spec(network: str, loss: str, side: int) -> EmbeddingSpec:
    return EmbeddingSpec.from_dict({
        "name": f"bench-{network}-{side}",
        "input": {"width": 1280, "height": 1024, "depth": 1, "channels": ["DAPI", "Tubulin", "Actin"]},
        "segmentation_channel": "DAPI", "roi_size": side, "min_nucleus_voxels": 200, "embedding_length": 256,
        "network": network, "loss": loss})


def step_seconds(step: Callable[[int], None], warmup: int, steps: int, min_seconds: float = MIN_SECONDS) -> float:
    """Median seconds of ``step`` after ``warmup`` untimed calls (at least ``steps`` timed calls and
    ``min_seconds`` in all)."""
    for i in range(warmup):
        step(i)
    times: list[float] = []
    while len(times) < steps or sum(times) < min_seconds:
        start = time.perf_counter()
        step(len(times))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_throughput(network: str, side: int, rng: np.random.Generator) -> float:
    """Crops/s of training steps (see the module docstring)."""
    settings = TrainingSettings()
    spec = make_spec(network, "seed" if network == "seed" else "proxy", side)
    torch.manual_seed(0)
    model = build_network(spec).train()
    proxies = Proxies(CLASSES, spec.embedding_length) if network != "seed" else None
    parameters = list(model.parameters()) + (list(proxies.parameters()) if proxies else [])
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(0)
    crops = 2 * PAIR_GROUPS * PAIR_CLASSES if network == "seed" else BATCH
    batches = [rng.integers(0, 65535, size=(crops, *crop_shape(spec)), dtype=np.uint16) for _ in range(2)]
    labels = torch.from_numpy(rng.integers(0, CLASSES, size=crops))

    def step(i: int) -> None:
        z = model(augment(to_input(batches[i % 2]), generator))
        if proxies is None:
            loss = seed_pair_loss(z, PAIR_GROUPS, PAIR_CLASSES, settings.temperature)
        else:
            loss = proxies(z, labels, settings.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return crops / step_seconds(step, WARMUP[side], STEPS[side])


def run() -> list[dict]:
    threads = torch.get_num_threads()
    torch.set_num_threads(CORES)
    rng = np.random.default_rng(0)
    rows: list[dict] = []
    try:
        for side in SIDES:
            ours = train_throughput("resnet", side, rng)
            seed = train_throughput("seed", side, rng)
            rows.append({"benchmark": "train",
                         "figure": f"train 3x{side}x{side}, resnet+proxy b{BATCH}, {CORES} threads "
                                   f"(vs seed net+pair loss)",
                         "value": ours, "unit": "crops/s", "baseline": seed, "ratio": ours / seed})
    finally:
        torch.set_num_threads(threads)
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
