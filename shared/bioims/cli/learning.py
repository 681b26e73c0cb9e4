"""``bioims`` commands: specs, preprocessing, training, profiles, evaluation, embeddings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..contract.enums import Holdout, Level, Loss, Network, Similarity, values
from ..errors import InvalidInput
from .base import (
    Ctx, _echo_failures, _embed_failures, _kv, _preprocess_failures, _run_over_plates, _score, _table,
    _train_failures, command, main)

# ------------------------------------------------------------------------------ specs and preprocessing


@main.group()
def spec() -> None:
    """Embedding specs: input dims and channels, ROI size, segmentation, network, training settings."""


@command(spec, "create", human=_kv)
@click.argument("file", type=click.Path(path_type=Path))
def spec_create(obj: Ctx, file: Path) -> dict[str, Any]:
    """Register a spec from a JSON file (format: bioims.specs; unknown keys are refused)."""
    from ..specs import EmbeddingSpec

    try:
        text = file.read_text()
    except OSError as e:
        raise InvalidInput(f"cannot read spec {file}: {e.strerror}") from None
    return obj.container.training.create_embedding(EmbeddingSpec.from_json(text, str(file)).to_dict())


@command(spec, "list", human=lambda rows: _table(
    [{"name": r["name"], "input": f"{r['input']['width']}x{r['input']['height']}x{r['input']['depth']}",
      "channels": ",".join(r["input"]["channels"]), "roi_size": r["roi_size"], "network": r["network"],
      "embedding_length": r["embedding_length"]} for r in rows],
    ["name", "input", "channels", "roi_size", "network", "embedding_length"]))
def spec_list(obj: Ctx) -> list[dict[str, Any]]:
    """Every spec."""
    return obj.container.training.list_embeddings()


@command(spec, "show", human=lambda d: click.echo(json.dumps(d, indent=2)))
@click.argument("name")
def spec_show(obj: Ctx, name: str) -> dict[str, Any]:
    """A spec with every default filled in, and its compatible plates."""
    training = obj.container.training
    return training.get_embedding_info(name) | {
        "compatible_plates": [p["source_id"] for p in training.get_compatible_plates(name)]}


def _suggested(r: dict[str, Any]) -> None:
    click.echo(json.dumps(r["spec"], indent=2))
    then = "registered" if r.get("created") else "register it with --create, or save it and `bioims spec create FILE`"
    click.echo(f"measured: {r['nuclei']} nuclei in {r['fields']} fields, median radius {r['nucleus_radius']} px; "
               f"{then}", err=True)


@command(spec, "suggest", human=_suggested)
@click.argument("plate")
@click.option("--fields", type=int, default=8, show_default=True, help="sample fields to measure nuclei in")
@click.option("--name", help="the spec's name (default: PLATE-spec)")
@click.option("--create", is_flag=True, help="register the suggested spec")
def spec_suggest(obj: Ctx, plate: str, fields: int, name: str | None, create: bool) -> dict[str, Any]:
    """Propose a spec for a processed plate: its dims and channels, the nuclei channel by name, and crop and
    minimum nucleus sizes measured on its fields."""
    result = obj.container.images.suggest_spec(plate, fields, name)
    if create:
        obj.container.training.create_embedding(result["spec"])
    return result | {"created": create}


def _preprocess_human(r: dict[str, Any]) -> None:
    click.echo(f"{r['fields']} fields preprocessed ({r['skipped']} already done), {r['failed']} failed, "
               f"{r['cells']} cells, {r['plates']} plates, {r['seconds']} s")
    _echo_failures(r)


@command(main, human=_preprocess_human, failures=lambda r: _preprocess_failures(r), remote=False)
@click.argument("spec_name", metavar="SPEC")
@click.option("--plate", "plates", multiple=True, help="Only these plates (id or source id; repeatable).")
@click.option("--workers", type=int, default=None, help="Processes (default: the CPU count).")
@click.option("--force", is_flag=True, help="Recompute outputs that exist.")
def preprocess(obj: Ctx, spec_name: str, plates: tuple[str, ...], workers: int | None, force: bool) -> dict[str, Any]:
    """Flat-fields, then single-cell crops of every valid field of the spec's compatible plates."""
    obj.container.training.spec(spec_name)
    return _run_over_plates(obj, "preprocess", {"spec": spec_name, "force": force}, plates, workers)


# ---------------------------------------------------------------------------- training


def _train_human(r: dict[str, Any]) -> None:
    for m in r["models"]:
        click.echo(f"{m['train_id']}: {m['status']}, best epoch {m['best_epoch']}/{m['epochs_done']}, validation "
                   f"NSC {m['validation_nsc']}, holdout {', '.join(m['holdout']) or '-'}"
                   + (" (already complete)" if m.get("skipped") else f", {m.get('seconds')} s"))
    for failure in r["failures"]:
        click.echo(f"  failed: {failure['train_id']}: {failure['failure']}")
    click.echo(f"{len(r['models'])} models, {r['failed']} failed, {r['seconds']} s")


@command(main, human=_train_human, failures=lambda r: _train_failures(r), remote=False)
@click.argument("spec_name", metavar="SPEC")
@click.option("--holdout", type=click.Choice(values(Holdout)), default="none", show_default=True,
              help="none: one model on every compound; compound: one model per left-out compound; folds: K "
                   "models, each holding out at most one compound per MOA.")
@click.option("--epochs", type=int, default=None,
              help="Override the spec's training.epochs (0: export the untrained network, a baseline).")
@click.option("--seed", type=int, default=None, help="Override the spec's training.seed.")
@click.option("--network", type=click.Choice(values(Network)), default=None,
              help="Override the spec's network (same crops), e.g. the seed's for a comparison.")
@click.option("--loss", type=click.Choice(values(Loss)), default=None,
              help="Override the spec's loss.")
@click.option("--temperature", type=float, default=None, help="Override the spec's training.temperature.")
@click.option("--learning-rate", type=float, default=None, help="Override the spec's training.learning_rate.")
@click.option("--exclude-images", "exclude", metavar="FILE", default=None,
              help="A file of image ids never trained on besides the held-out compounds' (one per line or a "
                   "JSON list; a local path, or an s3:// or file:// URI in the store or an ingest root).")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Runs trained at once (the CPU cores are shared among them).")
def train(obj: Ctx, spec_name: str, holdout: str, epochs: int | None, seed: int | None, network: str | None,
          loss: str | None, temperature: float | None, learning_rate: float | None, exclude: str | None,
          workers: int) -> dict[str, Any]:
    """Train the spec's models (resuming killed runs, skipping complete ones); prints the train run ids."""
    from ..jobs.runner import LocalPool

    c = obj.container
    excluded = _excluded(exclude) if exclude else {}
    runs = c.training.create_trainings(spec_name, holdout, epochs, seed, network, loss, temperature, learning_rate,
                                       **excluded)
    ids = [r["train_id"] for r in runs]
    with LocalPool(c, workers=workers, progress=obj.progress) as pool:
        execution = c.runner.run(c, "train", {"train_ids": ids, "progress": obj.progress}, pool=pool)
    return {"train_ids": ids, **execution["output"], "execution_id": execution["execution_id"]}


def _excluded(given: str) -> dict[str, Any]:
    """``--exclude-images``: a URI is read by the service (store or ingest roots); a local file here."""
    if "://" in given:
        return {"filter_uri": given}
    from ..training.folds import parse_image_ids

    try:
        return {"filter": parse_image_ids(Path(given).read_bytes(), given)}
    except OSError as e:
        raise InvalidInput(f"--exclude-images {given}: {e.strerror}") from None


@main.group()
def training() -> None:
    """Train runs: list, show, filter, delete."""


TRAINING_COLUMNS = ["train_id", "status", "holdout", "filter_count", "created_at"]


@command(training, "list", human=lambda rows: _table(rows, TRAINING_COLUMNS))
@click.argument("spec_name", metavar="SPEC")
def training_list(obj: Ctx, spec_name: str) -> list[dict[str, Any]]:
    """The train runs of a spec."""
    return obj.container.training.get_embedding_trainings(spec_name)


@command(training, "show", human=lambda d: click.echo(json.dumps(d, indent=2, default=str)))
@click.argument("train_id")
def training_show(obj: Ctx, train_id: str) -> dict[str, Any]:
    """A train run and its job's progress (per-epoch loss and validation NSC, messages)."""
    c = obj.container
    return c.training.get_training(train_id) | {"job": c.training.get_training_job_info(train_id)}


@command(training, "delete", human=_kv)
@click.argument("train_id")
def training_delete(obj: Ctx, train_id: str) -> dict[str, Any]:
    """Delete a train run and what it made (models, embeddings, result rows, records); refused while indexed."""
    return obj.container.training.delete_training(train_id)


# ---------------------------------------------------------------------------- profiles and evaluation


@main.group()
def profiles() -> None:
    """Feature-profile sets (e.g. CellProfiler per-well tables) kept as named embeddings."""


@command(profiles, "import", human=_kv, remote=False)
@click.argument("csv", type=click.Path(path_type=Path))
@click.option("--metadata", "metadata_csv", required=True, type=click.Path(path_type=Path),
              help="Plate map or image CSV: plate, well -> compound, concentration (BBBC021 image CSV works).")
@click.option("--moa", "moa_csv", type=click.Path(path_type=Path), help="compound,concentration,moa CSV")
@click.option("--name", required=True, help="Name of the profile set (an embedding name).")
@click.option("--no-feature-selection", is_flag=True, help="Keep every feature.")
@click.option("--normalization", type=click.Choice(["standardize", "mad_robustize", "none"]), default="standardize",
              show_default=True, help="Per-plate normalisation to the DMSO wells.")
@click.option("--sphere", is_flag=True, help="Whiten with a transform fitted on the DMSO wells.")
@click.option("--aggregation", type=click.Choice(["mean", "median"]), default="mean", show_default=True)
@click.option("--metric", type=click.Choice(values(Similarity)), default="pearson",
              show_default=True, help="Similarity used when the set is evaluated.")
def profiles_import(obj: Ctx, csv: Path, metadata_csv: Path, moa_csv: Path | None, name: str,
                    no_feature_selection: bool, normalization: str, sphere: bool, aggregation: str,
                    metric: str) -> dict[str, Any]:
    """Import a feature table; by default the standard pipeline of the BBBC021 reference (feature
    selection, per-plate standardisation to DMSO, treatment means, Pearson)."""
    from ..profiles.pipeline import ProfileProcessing

    options = ProfileProcessing(**({"feature_selection": ()} if no_feature_selection else {}),
                                normalization=None if normalization == "none" else normalization,
                                sphering=sphere, aggregation=aggregation, metric=metric)
    return obj.container.profiles.import_table(name, csv, metadata_csv, moa_csv, options)


@command(profiles, "compute", human=_kv, remote=False)
@click.argument("kind", type=click.Choice(["handcrafted", "naive"]))
@click.option("--spec", "spec_name", required=True, help="Embedding spec whose preprocessed fields are used.")
@click.option("--name", required=True, help="Name of the profile set.")
@click.option("--plate", "plates", multiple=True, help="Only these plates (default: the spec's compatible ones).")
def profiles_compute(obj: Ctx, kind: str, spec_name: str, name: str, plates: tuple[str, ...]) -> dict[str, Any]:
    """Baseline profiles of registered images: handcrafted per-cell features of the spec's crops, or the
    naive per-channel intensity mean and std of each field; stored like an imported set."""
    c = obj.container
    spec = c.training.spec(spec_name)
    plate_ids = [c.images.get_plate(p)["plate_id"] for p in plates] or \
        [p["plate_id"] for p in c.training.get_compatible_plates(spec_name)]
    return c.profiles.compute(name, spec, kind, plate_ids)


@command(profiles, "list", human=lambda rows: _table(
    [{"name": r["name"], "wells": r["rows"]["well"], "treatments": r["rows"]["treatment"],
      "features": r["features"], "metric": r["processing"]["metric"]} for r in rows],
    ["name", "wells", "treatments", "features", "metric"]), remote=False)
def profiles_list(obj: Ctx) -> list[dict[str, Any]]:
    """Every profile set."""
    return obj.container.profiles.list()


def _evaluate_human(r: dict[str, Any]) -> None:
    click.echo(f"NSC {_score(r['nsc'])}  NSCB {_score(r['nscb'])}  compound-level {_score(r['compound_level'])}  "
               f"mAP {_score(r['map'])}  ({r['treatments']} treatments, {r['compounds']} compounds, {r['moas']} MOAs, "
               f"{r['metric']})")
    if r.get("report"):
        click.echo(f"report: {r['report']}")


@command(main, human=_evaluate_human, remote=False)
@click.argument("train_ids", metavar="[TRAIN_ID]...", nargs=-1)
@click.option("--profiles", "profile_set", help="A named profile set to evaluate (instead of train runs).")
@click.option("--metric", type=click.Choice(values(Similarity)), default=None,
              help="Similarity (default: the profile set's; cosine for embeddings).")
@click.option("--level", type=click.Choice([Level.TREATMENT.value]), default="treatment", show_default=True)
@click.option("--no-normalize", is_flag=True, help="Embeddings: skip the per-plate standardisation to DMSO wells.")
@click.option("--report", "report_path", type=click.Path(path_type=Path), help="Write an HTML report here.")
def evaluate(obj: Ctx, train_ids: tuple[str, ...], profile_set: str | None, metric: str | None, level: str,
             no_normalize: bool, report_path: Path | None) -> dict[str, Any]:
    """NSC / NSCB / compound-level accuracy and mAP of MOA retrieval at treatment level, of a profile set
    or of train runs' embeddings (hold-out runs answer only for the compounds they never saw)."""
    from ..evaluation.evaluate import evaluate as run_evaluation
    from ..evaluation.report import write_report

    c = obj.container
    if bool(train_ids) == bool(profile_set):
        raise click.UsageError("give TRAIN_ID... or --profiles NAME")
    if profile_set:
        metric = metric or c.profiles.info(profile_set)["processing"]["metric"]
        treatments = c.profiles.read(profile_set, level)
        result = run_evaluation(treatments, metric=metric)
        title = profile_set
    else:
        metric = metric or "cosine"
        result, treatments = c.embedding.evaluate(list(train_ids), metric=metric, normalize=not no_normalize)
        title = ", ".join(train_ids) if len(train_ids) < 4 else f"{train_ids[0]} and {len(train_ids) - 1} more"
    report = None
    if report_path:
        report = str(write_report(result, treatments, report_path, title=f"{title} ({metric})", metric=metric))
    return result.to_document(report=report)


def _embed_human(r: dict[str, Any]) -> None:
    click.echo(f"{r['fields']} fields embedded ({r['cells']} cells) on {r['plates']} plates ({r['skipped']} already "
               f"done), {r['empty']} empty fields, {r['failed']} failed, {r['seconds']} s")
    _echo_failures(r)


@command(main, human=_embed_human, failures=lambda r: _embed_failures(r), remote=False)
@click.argument("train_id")
@click.option("--plate", "plates", multiple=True, help="Only these plates (id or source id; repeatable).")
@click.option("--workers", type=int, default=None, help="Processes (default: the CPU count).")
@click.option("--force", is_flag=True, help="Recompute embeddings that exist.")
def embed(obj: Ctx, train_id: str, plates: tuple[str, ...], workers: int | None, force: bool) -> dict[str, Any]:
    """Cell, field (and, on demand, well and treatment) embeddings of a train run's model with ONNX Runtime."""
    obj.container.embedding.plates(train_id)
    return _run_over_plates(obj, "embed", {"train_id": train_id, "force": force}, plates, workers)


EXPORT_FORMATS = ("parquet", "anndata", "csv")
EXPORT_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".h5ad": "anndata", ".zarr": "anndata"}
"""The format ``bioims export --out PATH`` writes when ``--format`` is not given, by PATH's suffix."""


def _export_target(out: Path | None, fmt: str | None, parquet: Path | None,
                   csv_out: Path | None) -> tuple[Path, str]:
    """The one output of ``bioims export`` and its format, from ``--out``/``--format`` or the ``--parquet``
    and ``--csv`` shorthands. Raises :class:`InvalidInput` (one line) for no output, two outputs, a format
    that contradicts its shorthand, or a suffix that names no format."""
    given = [(flag, path) for flag, path in (("--out", out), ("--parquet", parquet), ("--csv", csv_out))
             if path is not None]
    if not given:
        raise InvalidInput("give one output: --out PATH (.parquet, .csv, .h5ad, .zarr), --parquet OUT.parquet "
                           "or --csv OUT.csv")
    if len(given) > 1:
        raise InvalidInput(f"give one output, not both {given[0][0]} and {given[1][0]}")
    (flag, path), = given
    if flag != "--out":
        kind = flag[2:]
        if fmt is not None and fmt != kind:
            raise InvalidInput(f"{flag} writes {kind}, not --format {fmt}; use --out {path} --format {fmt}")
        return path, kind
    if fmt is not None:
        return path, fmt
    suffix = path.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise InvalidInput(f"cannot tell the format of {path} from its suffix {suffix or '(none)'}: name it "
                           f"{', '.join(EXPORT_SUFFIXES)} or give --format {'|'.join(EXPORT_FORMATS)}")
    return path, EXPORT_SUFFIXES[suffix]


@command(main, "export", human=_kv, remote=False)
@click.argument("name")
@click.option("--out", type=click.Path(path_type=Path),
              help="Output path; its suffix gives the format: .parquet/.pq, .csv, .h5ad or .zarr (AnnData).")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default=None,
              help="Output format (default: from the suffix of --out).")
@click.option("--parquet", type=click.Path(path_type=Path), help="Output Parquet file (--out OUT --format parquet).")
@click.option("--csv", "csv_out", type=click.Path(path_type=Path), help="Output CSV file (--out OUT --format csv).")
@click.option("--level", type=click.Choice([v for v in values(Level) if v != Level.CELL]), default="well",
              show_default=True)
@click.option("--no-normalize", is_flag=True, help="Treatment level: skip the per-plate standardisation to DMSO.")
def export(obj: Ctx, name: str, out: Path | None, fmt: str | None, parquet: Path | None, csv_out: Path | None,
           level: str, no_normalize: bool) -> dict[str, Any]:
    """pycytominer-style profiles (Metadata_* columns + features) of a train run's embeddings (field, well,
    treatment) or of a profile set (well, treatment), as Parquet, CSV or AnnData (.h5ad or .zarr: the
    features in X as float32, the Metadata_* columns in obs)."""
    from ..errors import NotFound
    from ..profiles.io import (
        feature_columns, require_anndata, write_profiles, write_profiles_anndata, write_profiles_csv)
    from ..store.objects import write_file_atomic

    path, kind = _export_target(out, fmt, parquet, csv_out)
    if path.is_dir() and not (kind == "anndata" and path.suffix.lower() == ".zarr"):
        raise InvalidInput(f"{path} is a directory, not a file")
    if kind == "anndata":
        require_anndata()  # before reading the profiles
    c = obj.container
    try:
        c.profiles.info(name)
    except NotFound:  # not a profile set: a train run's embeddings
        table = c.embedding.profiles(name, level, normalize=not no_normalize)
    else:
        if level == Level.FIELD:
            raise InvalidInput(f"profile set {name} has well and treatment levels only, not field")
        table = c.profiles.read(name, level)
    if kind == "anndata":
        write_profiles_anndata(table, path)
    else:
        write_file_atomic(path, write_profiles(table) if kind == "parquet" else write_profiles_csv(table))
    return {"path": str(path), "format": kind, "level": level, "rows": len(table),
            "features": len(feature_columns(table))}
