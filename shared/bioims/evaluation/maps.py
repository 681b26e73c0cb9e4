"""2-D maps of embeddings, for the report's figure and the web interface's interactive map.

t-SNE (scikit-learn's, on the profiles' distance matrix) where scikit-learn is installed (the ``ml``
extra: ``bioims serve``, the jobs); a principal-component projection otherwise (numpy only: the Lambda
services, which do not carry scikit-learn). The method used is returned with the coordinates.
"""

from __future__ import annotations

import numpy as np

from .knn import Metric, similarity

TSNE_MAX_POINTS = 3000
"""Above this many points the map is a PCA projection (t-SNE's cost grows with the square of the points)."""


def embedding_map(x: np.ndarray, metric: Metric = "cosine") -> tuple[np.ndarray, str]:
    """2-D coordinates of ``x`` (N, D) and the method: ``"t-SNE"`` or ``"PCA"``.

    Examples
    --------
    >>> coords, method = embedding_map(np.eye(4), "cosine")
    >>> coords.shape, method in ("t-SNE", "PCA")
    ((4, 2), True)
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n < 3:
        return np.zeros((n, 2)), "PCA"
    if n <= TSNE_MAX_POINTS:
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            pass
        else:
            sim = similarity(x, metric)
            distance = np.maximum(-sim if metric == "euclidean" else 1.0 - sim, 0.0)
            np.fill_diagonal(distance, 0.0)
            perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
            coords = TSNE(2, perplexity=min(perplexity, n - 1.0), metric="precomputed", init="random",
                          random_state=0).fit_transform(distance)
            return np.asarray(coords, dtype=np.float64), "t-SNE"
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1]))), "PCA"
