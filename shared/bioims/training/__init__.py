"""Training embedding networks on single-cell crops (needs the ``ml`` extra: torch, onnx, onnxruntime).

- :mod:`~bioims.training.folds` — which compounds each train run holds out (pure Python);
- :mod:`~bioims.training.data` — streaming, class-stratified crop batches from the object store;
- :mod:`~bioims.training.networks` — the default residual network and the seed's network;
- :mod:`~bioims.training.losses` — multi-positive supervised contrastive loss and the seed's pair loss;
- :mod:`~bioims.training.trainer` — the epoch loop: validation, early stopping, checkpoints, resume;
- :mod:`~bioims.training.export` — ONNX export with metadata, verified against torch, and the model card.

Only :mod:`~bioims.training.folds` is imported by the services; the rest is imported by the training job.
"""
