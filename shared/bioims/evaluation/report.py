"""One self-contained, offline HTML report of an :class:`~bioims.evaluation.evaluate.Evaluation`.

Figures are drawn with matplotlib's Agg canvas (no display, no pyplot global state) and embedded as
base64 PNG data URIs; every text value is HTML-escaped; the file is written atomically.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..store.objects import write_file_atomic
from .evaluate import Evaluation
from .knn import COMPOUND, MOA, Metric, feature_columns, similarity, without_controls
from .maps import embedding_map

_STYLE = {"text.parse_math": False, "font.size": 8}  # MOA names are data: never read "$...$" as TeX
_CSS = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #bbb;padding:2px 8px;text-align:right}th{background:#eee}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:1em 0}")


def write_report(evaluation: Evaluation, treatments: pd.DataFrame, path: str | Path, *, title: str,
                 metric: Metric) -> Path:
    """Write the HTML report of ``evaluation`` to ``path``.

    Parameters
    ----------
    evaluation : Evaluation
    treatments : DataFrame
        The treatment profiles evaluated (DMSO rows are ignored), for the similarity matrix and t-SNE map.
    path : str or Path
    title : str
    metric : {"cosine", "pearson", "euclidean"}
        Similarity of the treatment-treatment matrix and the t-SNE distances.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    data = without_controls(treatments).sort_values([MOA, COMPOUND], kind="stable").reset_index(drop=True)
    x = data[feature_columns(data)].to_numpy(dtype=np.float64)
    moas = data[MOA].astype(str).to_numpy()
    with matplotlib.rc_context(_STYLE):
        figures = [
            ("Confusion matrix (NSC)", _confusion_figure(evaluation.confusion)),
            ("Per-MOA accuracy (NSC)", _per_moa_figure(evaluation.per_moa)),
            (f"Treatment similarity ({metric}), ordered by MOA", _similarity_figure(similarity(x, metric), moas)),
            ("Map of treatments (t-SNE, or PCA past 3,000 treatments)", _tsne_figure(x, moas, metric)),
        ]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>", "<h2>Summary</h2>",
             _summary_table(evaluation)]
    for heading, png in figures:
        parts.append(f"<h2>{_e(heading)}</h2><img alt='{_e(heading)}' src='data:image/png;base64,"
                     f"{base64.b64encode(png).decode('ascii')}'>")
    per_moa = evaluation.per_moa.rename(columns={MOA: "MOA"})
    parts += ["<h2>Per-MOA accuracy</h2>", _table(per_moa), "<h2>Per-compound votes</h2>",
              _table(evaluation.per_compound.rename(columns={COMPOUND: "Compound", MOA: "MOA"}))]
    if evaluation.not_evaluated:
        parts.append(f"<p>Not evaluated (held out by no model): {_e(', '.join(evaluation.not_evaluated))}</p>")
    parts.append("</body></html>")
    write_file_atomic(path, "\n".join(parts).encode("utf-8"))
    return path


def _summary_table(evaluation: Evaluation) -> str:
    doc = evaluation.to_document()
    rows = [("Metric", doc["metric"]), ("NSC", doc["nsc"]), ("NSCB", doc["nscb"]),
            ("Compound-level", doc["compound_level"]), ("mAP", doc["map"]), ("Treatments", doc["treatments"]),
            ("Compounds", doc["compounds"]), ("MOAs", doc["moas"]),
            ("MOAs dropped from NSCB", ", ".join(doc["dropped_moas_nscb"]) or "none")]
    if evaluation.nscb is not None:
        rows.insert(3, ("NSCB treatments", evaluation.nscb.treatments))
    body = "".join(f"<tr><th>{_e(name)}</th><td>{_e(_format(value))}</td></tr>" for name, value in rows)
    return f"<table>{body}</table>"


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(_format(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><tr>{head}</tr>{body}</table>"


def _confusion_figure(confusion: pd.DataFrame) -> bytes:
    n = max(len(confusion), 1)
    fig = Figure(figsize=(2 + 0.45 * n, 1.5 + 0.45 * n), layout="constrained")
    ax = fig.add_subplot()
    counts = confusion.to_numpy()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, label="treatments")
    ax.set_xticks(range(len(confusion.columns)), [str(c) for c in confusion.columns], rotation=90)
    ax.set_yticks(range(len(confusion.index)), [str(c) for c in confusion.index])
    for (i, j), value in np.ndenumerate(counts):
        if value:
            ax.text(j, i, str(value), ha="center", va="center",
                    color="white" if value > counts.max() / 2 else "black")
    ax.set_xlabel("predicted MOA")
    ax.set_ylabel("true MOA")
    return _png(fig)


def _per_moa_figure(per_moa: pd.DataFrame) -> bytes:
    fig = Figure(figsize=(7, 1 + 0.3 * max(len(per_moa), 1)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(range(len(per_moa)), per_moa["accuracy"].to_numpy(dtype=float), color="tab:blue")
    ax.set_yticks(range(len(per_moa)), [f"{m} (n={n})" for m, n in zip(per_moa[MOA], per_moa["treatments"])])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("NSC accuracy")
    return _png(fig)


def _similarity_figure(sim: np.ndarray, moas: np.ndarray) -> bytes:
    fig = Figure(figsize=(8, 7), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(sim, cmap="RdBu_r", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="similarity")
    starts = np.flatnonzero(np.r_[True, moas[1:] != moas[:-1]])
    for start in starts[1:]:
        ax.axhline(start - 0.5, color="black", lw=0.6)
        ax.axvline(start - 0.5, color="black", lw=0.6)
    centres = (starts + np.r_[starts[1:], len(moas)] - 1) / 2
    ax.set_yticks(centres, [str(m) for m in moas[starts]])
    ax.set_xticks([])
    return _png(fig)


def _tsne_figure(x: np.ndarray, moas: np.ndarray, metric: Metric) -> bytes:
    fig = Figure(figsize=(8, 6), layout="constrained")
    ax = fig.add_subplot()
    coords, method = embedding_map(x, metric)
    ax.set_title(method)
    colours = matplotlib.colormaps["tab20"]
    for k, moa in enumerate(sorted(set(moas))):
        mask = moas == moa
        ax.scatter(coords[mask, 0], coords[mask, 1], s=12, color=colours(k % 20), label=str(moa))
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    return _png(fig)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)  # Agg explicitly: no display is ever touched
    return buffer.getvalue()


def _format(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (float, np.floating)):
        return "n/a" if np.isnan(value) else f"{value:.3f}"
    return str(value)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
