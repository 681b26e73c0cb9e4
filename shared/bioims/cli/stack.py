"""``bioims`` commands: local stack, the demo, the APIs (serve, call)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import BioimsError, InvalidInput
from .base import Ctx, _kv, _score, _table, command, main

# ------------------------------------------------------------------------------------------ local stack


@command(main, human=_kv, remote=False)
def up(obj: Ctx) -> dict[str, Any]:
    """Start the local stack (dynalite) and create missing tables (idempotent)."""
    _ = obj.container  # starts dynalite on demand and creates the tables
    from ..local_stack import LocalStack

    return LocalStack(obj.settings).status()


@command(main, human=_kv, remote=False)
def down(obj: Ctx) -> dict[str, Any]:
    """Stop the local stack (its data is kept)."""
    from ..local_stack import LocalStack

    stack = LocalStack(obj.settings)
    was_running = stack.down()
    return stack.status() | {"stopped": was_running}


@command(main, human=_kv, remote=False)
def status(obj: Ctx) -> dict[str, Any]:
    """Describe the local stack."""
    from ..local_stack import LocalStack

    return LocalStack(obj.settings).status()


# ------------------------------------------------------------------------------------------------ demo


def _demo_human(r: dict[str, Any]) -> None:
    d, ing, reg = r["dataset"], r["ingest"], r["registry"]
    click.echo(f"dataset: {d['out']} ({d['preset']}, seed {d['seed']}): {d['plates']} plates, {d['fields']} fields, "
               f"{d['cells']} cells, {d['treatments']} treatments, {d['compounds']} compounds, {d['moas']} MOAs")
    click.echo(f"ingest: {ing['plates']} new plates, {ing['images']} images ({ing['invalid_images']} invalid), "
               f"{ing['skipped_plates']} already registered")
    click.echo(f"registry: {reg['plates']} plates ({reg['validated_plates']} validated), {reg['images']} images; "
               f"image status {reg['image_status']}")
    click.echo("plates per batch: " + ", ".join(f"{b} {n}" for b, n in reg["plates_per_batch"].items()))
    click.echo("tags per type: " + ", ".join(f"{t} {n}" for t, n in reg["tags_per_type"].items()))
    click.echo("MOA labels: " + ", ".join(f"{i} {label}" for label, i in sorted(reg["moa_labels"].items(),
                                                                              key=lambda kv: kv[1])))
    pre = r["preprocess"]
    click.echo(f"preprocess ({pre['spec']}): {pre['fields']} fields ({pre['skipped']} already done), "
               f"{pre['failed']} failed, {pre['cells']} single-cell crops")
    click.echo("models: " + "; ".join(f"{m}: {', '.join(ids)}" for m, ids in r["models"].items()))
    e, ix = r["embedded"], r["index"]
    click.echo(f"embeddings: {e['fields']} fields ({e['cells']} cells) under {e['runs']} models; search index of "
               f"{ix['train_id']}: {ix['kind']} {ix['metric']}, {ix['count']} fields")
    click.echo("")
    _table([{"method": m, "NSC": _score(d["nsc"]), "NSCB": _score(d["nscb"]), "mAP": _score(d["map"]),
             "treatments": d["treatments"], "metric": d["metric"]} for m, d in r["methods"].items()],
           ["method", "NSC", "NSCB", "mAP", "treatments", "metric"])
    click.echo(f"report: {r['report']}")
    click.echo("")
    for q in r["searches"]:
        click.echo(f"search {q['compound']} ({q['moa']}), field {q['image_id']} -> "
                   + ", ".join(f"{h['compound']} ({h['moa']})" for h in q["hits"]) + f"  [{q['ms']} ms]")
    click.echo("")
    click.echo("steps: " + ", ".join(f"{s} {t:.1f} s" for s, t in r["steps"].items()) + f"; total {r['seconds']:.1f} s")
    baseline = r["models"]["baseline"][0]
    click.echo(f"next: `bioims serve`, then open http://127.0.0.1:8700/ (plates, fields, search) or POST "
               f"http://127.0.0.1:8700/search/searches "
               f"{{\"train_id\": \"{baseline}\", \"image_id\": \"...\"}} (services/search/README.md); "
               f"`bioims search {baseline} --image IMAGE_ID --require-moa`; open the report above; "
               f"your own plates: `bioims ingest loaddata ...` onwards (README.md, tutorial)")


@command(main, human=_demo_human, remote=False)
@click.option("--preset", type=click.Choice(["tiny", "demo", "full"]), default="demo", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where the synthetic dataset goes (default: $BIOIMS_HOME/datasets/<preset>).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, default=None, help="Processes (default: the CPU count).")
def demo(obj: Ctx, preset: str, out: Path | None, seed: int, workers: int | None) -> dict[str, Any]:
    """The walkthrough: synthetic screen -> registry -> validated plates with thumbnails -> crops ->
    models (fold hold-out of the default and of the seed's network, the baseline, the untrained network)
    -> embeddings -> search index -> NSC / NSCB / mAP of each beside the handcrafted and naive profiles,
    the HTML report, example searches."""
    from ..demo import run_demo
    from ..jobs.runner import default_workers

    return run_demo(obj.local, preset=preset, out=out, seed=seed, workers=workers or default_workers(),
                    progress=obj.progress)


# ------------------------------------------------------------------------------------------ APIs, SDK


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8700, show_default=True)
@click.option("--ingest-root", "ingest_roots", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="A folder input images and manifests may be read from (repeatable), besides "
                   "BIOIMS_INGEST_ROOTS and the folders named to `bioims ingest`.")
@click.pass_obj
def serve(obj: Ctx, host: str, port: int, ingest_roots: tuple[Path, ...]) -> None:
    """Every service's HTTP API on one address (foreground; Ctrl-C stops)."""
    if obj.stack:
        click.echo(f"error: bioims serve serves this machine's stack, not a deployed one "
                   f"(drop --stack / BIOIMS_STACK={obj.stack})", err=True)
        sys.exit(1)
    from ..api.server import serve as run_server

    if ingest_roots:
        obj.settings = obj.settings.with_(
            ingest_roots=obj.settings.ingest_roots + tuple(str(p.absolute()) for p in ingest_roots))

    try:
        container = obj.local
    except BioimsError as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(1)
    click.echo(f"serving image-management, artifact, tags, training, embedding, search on "
               f"http://{host}:{port}/<service>/... (health: /health, search readiness: /search/ready)", err=True)
    run_server(container, host=host, port=port)


@command(main, "call")
@click.argument("service", type=click.Choice(["image-management", "artifact", "tags", "training", "embedding"]))
@click.argument("method")
@click.argument("arguments", required=False, default="{}")
@click.option("--url", help="Call a running `bioims serve` (e.g. http://127.0.0.1:8700) instead of in-process.")
@click.option("--function", "function_name", help="Call the service's Lambda function (AWS) instead.")
def call(obj: Ctx, service: str, method: str, arguments: str, url: str | None,
         function_name: str | None) -> Any:
    """Any operation of a service by its seed name or Python name, e.g.
    `bioims call artifact getParameter '{"parameter": "thumbnail-widths"}'`."""
    from ..client import connect
    from ..contract import dispatch
    from ..contract import service as contract

    from ..contract import parse_json

    args = parse_json(arguments, "ARGUMENTS")
    if not isinstance(args, dict):
        raise InvalidInput("ARGUMENTS must be a JSON object")
    if url:
        client = connect(service, url=f"{url.rstrip('/')}/{service}")
    elif function_name:
        client = connect(service, function_name=function_name)
    elif obj.stack:
        client = obj.container.service(service)
    else:
        client = connect(service, container=obj.container)
    return dispatch(client, contract(service).find(method), args)
