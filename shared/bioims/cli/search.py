"""``bioims`` commands: indexes and searches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..contract.enums import IndexKind, Level, Metric, values
from ..errors import InvalidInput
from .base import Ctx, _kv, _table, command, main

# ------------------------------------------------------------------------------------------------ search


@main.group()
def index() -> None:
    """FAISS search indexes of train runs' (or profile sets') embeddings."""


INDEX_COLUMNS = ["train_id", "level", "metric", "kind", "dims", "count", "built_at"]


@command(index, "build", human=_kv)
@click.argument("train_id")
@click.option("--level", type=click.Choice(values(Level)), default="field", show_default=True)
@click.option("--kind", type=click.Choice(values(IndexKind)), default="auto", show_default=True,
              help="auto: exact (flat) up to a size threshold, approximate (IVF) above it.")
@click.option("--metric", type=click.Choice(values(Metric)), default="cosine", show_default=True)
def index_build(obj: Ctx, train_id: str, level: str, kind: str, metric: str) -> dict[str, Any]:
    """Build (or rebuild) the index of a train run's (or a profile set's) embeddings at one level; a
    running `bioims serve` picks it up with POST /search/indexes/TRAIN_ID/reload."""
    return obj.container.search.build_index(train_id, level, kind, metric)


@command(index, "list", human=lambda rows: _table(rows, INDEX_COLUMNS))
@click.argument("train_id", required=False)
def index_list(obj: Ctx, train_id: str | None) -> list[dict[str, Any]]:
    """Stored indexes (of one train run, or all)."""
    return obj.container.search.indexes(stored=True, train_id=train_id)


@command(index, "delete", human=_kv)
@click.argument("train_id")
@click.option("--level", type=click.Choice(values(Level)), default=None, help="Only this level.")
def index_delete(obj: Ctx, train_id: str, level: str | None) -> dict[str, Any]:
    """Delete a train run's indexes."""
    return obj.container.search.delete_index(train_id, level)


def _search_human(r: dict[str, Any]) -> None:
    _table([{"rank": h["rank"], "id": h["id"], "distance": f"{h['distance']:.4f}", "plate": h["plate"] or "",
             "well": h["well"] or "", "compound": h["compound"] or "", "moa": h["moa"] or ""} for h in r["hits"]],
           ["rank", "id", "distance", "plate", "well", "compound", "moa"])
    click.echo(f"search {r['search_id']}: {len(r['hits'])} hits in {r['ms']} ms")


@command(main, human=_search_human)
@click.argument("train_id")
@click.option("--image", "image_id", help="Query: a field's stored embedding.")
@click.option("--id", "item", help="Query: an item of the index (well PLATE/WELL, treatment COMPOUND@CONC).")
@click.option("--vector", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Query: a .npy file holding one embedding.")
@click.option("--file", "files", multiple=True,
              help="Query: an image file per channel, CHANNEL=PATH or PATH in the spec's channel order.")
@click.option("--flatfield-plate", help="With --file: normalise with this plate's flat-fields.")
@click.option("-k", "k", type=int, default=10, show_default=True)
@click.option("--metric", type=click.Choice(values(Metric)), default="cosine", show_default=True)
@click.option("--include-tag", "include_tags", multiple=True, help="A hit carries at least one of these tags.")
@click.option("--exclude-tag", "exclude_tags", multiple=True, help="A hit carries none of these tags.")
@click.option("--require-moa", is_flag=True, help="Only hits with an moa: tag.")
@click.option("--level", type=click.Choice(values(Level)), default="field", show_default=True)
@click.option("--url", help="Search through a running `bioims serve` (e.g. http://127.0.0.1:8700) instead of in-process.")
def search(obj: Ctx, train_id: str, image_id: str | None, item: str | None, vector: Path | None,
           files: tuple[str, ...], flatfield_plate: str | None, k: int, metric: str, include_tags: tuple[str, ...],
           exclude_tags: tuple[str, ...], require_moa: bool, level: str, url: str | None) -> dict[str, Any]:
    """Nearest neighbours of a field, an item, a vector or uploaded image files, with tag filters."""
    import base64

    request: dict[str, Any] = {"train_id": train_id, "k": k, "metric": metric, "include_tags": list(include_tags),
                               "exclude_tags": list(exclude_tags), "require_moa": require_moa, "level": level}
    if image_id:
        request["image_id"] = image_id
    if item:
        request["id"] = item
    if vector:
        import numpy as np

        try:
            request["vector"] = np.load(vector, allow_pickle=False).astype(float).ravel().tolist()
        except (ValueError, OSError) as e:
            raise InvalidInput(f"cannot read {vector} as a .npy array: {e}") from None
    if url:  # every call of this command through that server (nothing local is started)
        from ..client import Remote

        services: Any = Remote.at(url)
    else:
        services = obj.container
    if files:
        spec_name = services.training.get_training(train_id)["spec_name"]
        channels = services.training.get_embedding_info(spec_name)["input"]["channels"]
        named = [f.split("=", 1) if "=" in f else [None, f] for f in files]
        if len(named) != len(channels):
            raise InvalidInput(f"give one --file per channel ({', '.join(channels)}), got {len(named)}")
        request["images"] = {ch or channels[i]: base64.b64encode(Path(path).read_bytes()).decode()
                             for i, (ch, path) in enumerate(named)}
        if flatfield_plate:
            request["flatfield_plate"] = flatfield_plate
    return services.search.search(**request)


@command(main, "search-result", human=lambda r: click.echo(json.dumps(r, indent=2, default=str)))
@click.argument("search_id")
def search_result(obj: Ctx, search_id: str) -> dict[str, Any]:
    """The record of an earlier search: status, query, hits (the seed's getSearchStatus/getSearchResults)."""
    return obj.container.search.get_search(search_id)
