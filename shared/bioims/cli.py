"""The ``bioims`` command line (contract: ``../shared/design/CLI.md``).

Every command accepts ``--json`` and then prints exactly one JSON document on stdout; logs and progress
bars go to stderr. Exit codes: 0 success, 1 failure (one-line reason on stderr), 2 usage error.
A job (``plate process``, ``preprocess``, ``train``, ``embed``) that failed any of its units still
prints its result, then exits 1 with a one-line summary such as ``error: preprocess: 2 of 40 fields
failed (first: IMAGE_ID: reason)``. An unexpected error's traceback goes to a log file under
``$BIOIMS_HOME/logs`` that the line names, or to stderr with ``bioims --debug``.
Commands that need the local stack start it on demand.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .contract.enums import Holdout, IndexKind, Level, Loss, Metric, Network, Similarity, values
from .errors import BioimsError, InvalidInput, one_line
from .settings import Settings

# --------------------------------------------------------------------------------------------- plumbing


class Ctx:
    """Per-invocation state: settings (read once) and the lazily built local container."""

    def __init__(self) -> None:
        self.settings = Settings.from_env()
        self.progress = False
        self._local: Any = None
        self._container: Any = None

    @property
    def local(self) -> Any:
        """The local container (dynalite started on demand)."""
        if self._local is None:
            from .runtime import local

            self._local = local(self.settings)
        return self._local

    @property
    def container(self) -> Any:
        """The local container, its services' operations validated by the contract (as over the API)."""
        if self._container is None:
            from .client import validated

            self._container = validated(self.local)
        return self._container


def _emit(result: Any, as_json: bool, human: Callable[[Any], None] | None) -> None:
    if as_json or human is None:
        click.echo(json.dumps(result, indent=None if as_json else 2, default=str))
    else:
        human(result)


class JobFailed(BioimsError):
    """A job ran to its end but some of its units failed; the message is the one-line summary."""


def command(group: click.Group, name: str | None = None, human: Callable[[Any], None] | None = None,
            failures: Callable[[Any], str | None] | None = None,
            **kwargs: Any) -> Callable[[Callable[..., Any]], click.Command]:
    """Register a command that returns a JSON-ready result: adds ``--json``/``--quiet`` and prints the
    result (JSON or via ``human``). ``failures`` summarises in one line what a job's result reports as
    failed (None: nothing); the result is printed all the same, then the summary goes to stderr and the
    exit code is 1 (:class:`JobFailed`). Errors become one line on stderr and exit 1 (:class:`Main`)."""

    def decorator(fn: Callable[..., Any]) -> click.Command:
        @click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
        @click.option("--quiet", is_flag=True, help="No progress bars.")
        @click.pass_obj
        @functools.wraps(fn)
        def wrapper(obj: Ctx, as_json: bool, quiet: bool, **params: Any) -> None:
            obj.progress = not quiet and sys.stderr.isatty()
            result = fn(obj, **params)
            _emit(result, as_json, human)
            summary = failures(result) if failures is not None else None
            if summary:
                raise JobFailed(summary)

        return group.command(name, **kwargs)(wrapper)

    return decorator


class Main(click.Group):
    """The ``bioims`` group: every failure below it ends as one line on stderr and exit 1.

    A domain error prints ``error: <message>``. Anything unexpected (a full disk, a lost connection, a
    bug) prints ``error: <Type>: <message> (details: <log>)``, its traceback written to
    ``$BIOIMS_HOME/logs/cli-<time>-<pid>.log``; with ``bioims --debug`` the traceback goes to stderr
    instead. Usage errors keep click's exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BioimsError as e:
            click.echo(f"error: {one_line(e)}", err=True)
        except Exception as e:
            if isinstance(e, OSError) and e.errno == errno.EPIPE:
                raise  # stdout closed by the reader (`bioims ... | head`): click handles it
            click.echo(f"error: {one_line(e)} ({_keep_traceback(ctx, e)})", err=True)
        sys.exit(1)


def _keep_traceback(ctx: click.Context, error: Exception) -> str:
    """Print the traceback on stderr (``--debug``) or write it to a log file; says where it went."""
    import traceback

    text = "".join(traceback.format_exception(error))
    if ctx.params.get("debug"):
        click.echo(text.rstrip(), err=True)
        return "traceback above"
    home = ctx.obj.settings.home if isinstance(ctx.obj, Ctx) else Path(os.environ.get("BIOIMS_HOME", ".bioims"))
    path = Path(home).resolve() / "logs" / f"cli-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"bioims {' '.join(sys.argv[1:])}\n\n{text}")
    except OSError as e:  # a full disk, for example: say so instead of failing again
        return f"no log written: {e.strerror or e}; run with --debug for the traceback"
    return f"details: {path}"


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bioims")
@click.option("--debug", is_flag=True, help="On an unexpected error, print its traceback on stderr.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """bioims: image embeddings and phenotype similarity search for high-content screening."""
    ctx.obj = Ctx()


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for r in rows:
        click.echo("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))


def _kv(d: dict[str, Any]) -> None:
    for k, v in d.items():
        click.echo(f"{k}: {json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}")


# ------------------------------------------------------------------------------------------ local stack


@command(main, human=_kv)
def up(obj: Ctx) -> dict[str, Any]:
    """Start the local stack (dynalite) and create missing tables (idempotent)."""
    _ = obj.container  # starts dynalite on demand and creates the tables
    from .local_stack import LocalStack

    return LocalStack(obj.settings).status()


@command(main, human=_kv)
def down(obj: Ctx) -> dict[str, Any]:
    """Stop the local stack (its data is kept)."""
    from .local_stack import LocalStack

    stack = LocalStack(obj.settings)
    was_running = stack.down()
    return stack.status() | {"stopped": was_running}


@command(main, human=_kv)
def status(obj: Ctx) -> dict[str, Any]:
    """Describe the local stack."""
    from .local_stack import LocalStack

    return LocalStack(obj.settings).status()


# ---------------------------------------------------------------------------------------------- dataset


@main.group()
def dataset() -> None:
    """Datasets: generate the synthetic screen."""


def _synth_human(r: dict[str, Any]) -> None:
    click.echo(f"wrote {r['fields']} fields ({r['rendered']} rendered, {r['skipped']} already there) of "
               f"{r['plates']} plates, {r['cells']} cells, {r['treatments']} treatments of {r['compounds']} "
               f"compounds in {r['moas']} MOAs to {r['out']} ({r['bytes'] / 1e9:.2f} GB) in {r['seconds']} s")
    click.echo(f"next: bioims ingest loaddata {r['out']}/synth_image.csv --moa {r['out']}/synth_moa.csv")


@command(dataset, "synth", human=_synth_human)
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--preset", type=click.Choice(["tiny", "demo", "full"]), default="demo", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, default=None, help="Processes (default: the CPU count).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Override a preset setting, e.g. --option sites=4 --option batches=12 (repeatable).")
def dataset_synth(obj: Ctx, out: Path, preset: str, seed: int, workers: int | None,
                  options: tuple[str, ...]) -> dict[str, Any]:
    """Write a synthetic HCS screen (BBBC021 layout, 16-bit TIFFs, image and MOA CSVs, ground truth)."""
    from .datasets.synth import synthesize
    from .jobs.runner import default_workers

    overrides: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"--option must be KEY=VALUE, got {item!r}")
        overrides[key] = _json_value(value)
    return synthesize(out, preset, seed, workers=workers or default_workers(), progress=obj.progress, **overrides)


# -------------------------------------------------------------------------------------------- ingestion


@main.group()
def ingest() -> None:
    """Register plates, wells and fields (images are referenced in place, never copied).

    The folder each command is given (the CSV's folder or ``--root``, the manifests' folders or ``--root``,
    the image folder) becomes an ingest root, remembered in ``$BIOIMS_HOME``: images and manifests are
    read only from under such roots (and ``BIOIMS_INGEST_ROOTS``)."""


def _ingest(obj: Ctx, plates: list[Any], roots: list[str | Path]) -> dict[str, Any]:
    """Remember ``roots`` (the folders the user named) as ingest roots, then register ``plates``."""
    from tqdm import tqdm

    from .store.roots import remember_ingest_root

    for root in roots:
        remember_ingest_root(obj.settings.home, root)
    started = time.perf_counter()
    with tqdm(total=len(plates), desc="ingest", unit="plate", disable=not obj.progress, file=sys.stderr) as bar:
        summary = obj.container.images.ingest(plates, on_plate=lambda _: bar.update())
    result = summary.to_dict()
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def _ingest_human(r: dict[str, Any]) -> None:
    click.echo(f"registered {r['plates']} plates, {r['wells']} wells, {r['images']} images "
               f"({r['invalid_images']} invalid) in {r['seconds']} s")
    if r["skipped_plates"]:
        click.echo(f"skipped {len(r['skipped_plates'])} plates already registered")


@command(ingest, "loaddata", human=_ingest_human)
@click.argument("csv", type=click.Path(path_type=Path))
@click.option("--moa", "moa_csv", type=click.Path(path_type=Path), help="compound,concentration,moa CSV")
@click.option("--root", help="Folder (or s3:// prefix) that PathName columns are relative to.")
@click.option("--experiment", default="default", show_default=True)
def ingest_loaddata(obj: Ctx, csv: Path, moa_csv: Path | None, root: str | None, experiment: str) -> dict[str, Any]:
    """BBBC021-style image CSV or CellProfiler LoadData CSV."""
    from .datasets.loaddata import read_loaddata

    return _ingest(obj, read_loaddata(csv, moa_csv=moa_csv, root=root, experiment=experiment),
                   [root or csv.absolute().parent])


@command(ingest, "manifest", human=_ingest_human)
@click.argument("manifests", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--root", type=click.Path(path_type=Path), help="Folder that relative keys are relative to.")
def ingest_manifest(obj: Ctx, manifests: tuple[Path, ...], root: Path | None) -> dict[str, Any]:
    """The seed's sourcePlateInfo JSON (one plate per file)."""
    from .datasets.manifest import read_manifest

    records = []
    for path in manifests:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InvalidInput(f"cannot read manifest {path}: {e.strerror}") from None
        records.append(read_manifest(data, source=str(path), root=root or path.parent))
    return _ingest(obj, records, [root] if root else list(dict.fromkeys(p.absolute().parent for p in manifests)))


@command(ingest, "folder", human=_ingest_human)
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--pattern", required=True,
              help="Regex on each file's relative path with groups (?P<plate>) (?P<well>) (?P<channel>) [(?P<site>)].")
@click.option("--metadata", "metadata_csv", type=click.Path(path_type=Path), help="plate,well,compound,... CSV")
@click.option("--experiment", default="default", show_default=True)
def ingest_folder(obj: Ctx, directory: Path, pattern: str, metadata_csv: Path | None, experiment: str) -> dict[str, Any]:
    """A folder of TIFF/PNG files named by a pattern."""
    from .datasets.folder import scan_folder

    return _ingest(obj, scan_folder(directory, pattern, metadata_csv=metadata_csv, experiment=experiment),
                   [directory])


# ----------------------------------------------------------------------------------------------- plates


@main.group()
def plate() -> None:
    """Plates: list, show, process (inspect, validate, thumbnails), validate."""


PLATE_COLUMNS = ["plate_id", "source_id", "batch", "status", "image_count", "well_count"]


@command(plate, "list", human=lambda rows: _table(rows, PLATE_COLUMNS))
def plate_list(obj: Ctx) -> list[dict[str, Any]]:
    """Every registered plate."""
    return obj.container.images.list_plates()


@command(plate, "show", human=_kv)
@click.argument("plate_id")
def plate_show(obj: Ctx, plate_id: str) -> dict[str, Any]:
    """A plate (by id or source id) with its image counts per status."""
    images = obj.container.images
    info = images.get_plate(plate_id)
    info["images"] = info.pop("image_count")
    info["image_status"] = images.get_plate_image_status(info["plate_id"])["images"]
    return info


@command(plate, "validate", human=_kv)
@click.argument("plate_id")
def plate_validate(obj: Ctx, plate_id: str) -> dict[str, Any]:
    """Check that every image is valid and all share dims and channels (the plate becomes searchable)."""
    return obj.container.images.validate_plate(plate_id)


def _process_human(r: dict[str, Any]) -> None:
    for e in r["executions"]:
        o = e["output"]
        v = o["validation"]
        click.echo(f"plate {o['plate_id']}: {o['images']} images, {o['valid_images']} valid, "
                   f"{o['invalid_images']} invalid, {o['thumbnails']} thumbnails written; "
                   + ("validated" if v["valid"] else "not valid: " + "; ".join(v["problems"])))


@command(plate, "process", human=_process_human, failures=lambda r: _process_failures(r))
@click.argument("plate_ids", nargs=-1)
@click.option("--all", "all_plates", is_flag=True, help="Every registered plate.")
@click.option("--workers", type=int, default=None, help="Processes (default: the CPU count).")
def plate_process(obj: Ctx, plate_ids: tuple[str, ...], all_plates: bool, workers: int | None) -> dict[str, Any]:
    """Inspect every image, validate, and make thumbnails (the process-plate workflow), foreground."""
    from .jobs.runner import LocalPool, default_workers

    c = obj.container
    if all_plates:
        plate_ids = tuple(p["plate_id"] for p in c.images.list_plates())
    if not plate_ids:
        raise InvalidInput("give plate ids or --all")
    with LocalPool(c, workers=workers or default_workers(), progress=obj.progress) as pool:
        executions = [c.runner.run(c, "process-plate", {"plate_id": c.images.get_plate(p)["plate_id"]}, pool=pool)
                      for p in plate_ids]
    return {"executions": executions}


@command(plate, "status", human=_kv)
@click.argument("plate_id")
def plate_status(obj: Ctx, plate_id: str) -> dict[str, Any]:
    """Image counts per status."""
    return obj.container.images.get_plate_image_status(plate_id)


@command(plate, "wells", human=lambda rows: _table(rows, ["well_id", "source_id", "image_count"]))
@click.argument("plate_id")
def plate_wells(obj: Ctx, plate_id: str) -> list[dict[str, Any]]:
    """Wells of a plate."""
    return obj.container.images.get_wells_by_plate_id(plate_id)


@command(plate, "compatible", human=lambda rows: _table(rows, PLATE_COLUMNS))
@click.option("--width", type=int, required=True)
@click.option("--height", type=int, required=True)
@click.option("--depth", type=int, default=1, show_default=True)
@click.option("--channels", type=int, required=True)
def plate_compatible(obj: Ctx, width: int, height: int, depth: int, channels: int) -> list[dict[str, Any]]:
    """Validated plates with these image dims and channel count."""
    return obj.container.images.list_compatible_plates(width, height, depth, channels)


@command(plate, "execution", human=_kv)
@click.argument("execution_id")
def plate_execution(obj: Ctx, execution_id: str) -> dict[str, Any]:
    """Status and output of a process-plate execution."""
    return obj.container.images.describe_execution(execution_id)


# ----------------------------------------------------------------------------------------------- images

IMAGE_COLUMNS = ["image_id", "well_source_id", "field_source_id", "status", "width", "height", "error"]


@main.group()
def image() -> None:
    """Images (fields): list a plate's, show one, its tags."""


@command(image, "list", human=lambda rows: _table(rows, IMAGE_COLUMNS))
@click.option("--plate", "plate_id", required=True)
@click.option("--well", "well_id", help="Only this well (id or source name, e.g. G10).")
@click.option("--train", "train_id", help="The rows of a train run instead of the images themselves.")
def image_list(obj: Ctx, plate_id: str, well_id: str | None, train_id: str | None) -> list[dict[str, Any]]:
    """Images of a plate (or of one well, or one train run's rows)."""
    images = obj.container.images
    if well_id:
        return images.get_images_by_plate_and_well_id(plate_id, well_id)
    if train_id:
        return images.get_images_by_plate_id_and_train_id(plate_id, train_id)
    return images.get_images_by_plate_id(plate_id)


@command(image, "show", human=_kv)
@click.argument("image_id")
@click.option("--train", "train_id", default="origin", show_default=True)
def image_show(obj: Ctx, image_id: str, train_id: str) -> dict[str, Any]:
    """One image with its tags and artifacts."""
    c = obj.container
    info = c.images.get_image_info(image_id, train_id)
    info["tags"] = [t["value"] for t in c.images.get_image_tags(image_id)]
    info["artifacts"] = [a["uri"] for a in c.artifacts.get_artifacts(image_id)]
    return info


@command(image, "tag", human=lambda tags: click.echo("\n".join(t["value"] for t in tags)))
@click.argument("image_id")
@click.option("--add", multiple=True, help="Tag to add (repeatable).")
@click.option("--remove", multiple=True, help="Tag to remove (repeatable).")
def image_tag(obj: Ctx, image_id: str, add: tuple[str, ...], remove: tuple[str, ...]) -> list[dict[str, Any]]:
    """Show, add or remove an image's tags."""
    c = obj.container
    c.images.get_image_info(image_id)
    if remove:
        c.tags.remove_image_tags(image_id, list(remove))
    if add:
        c.tags.add_image_tags(image_id, list(add))
    return c.tags.get_image_tags(image_id)


# ------------------------------------------------------------------------------------------ tags/labels


@main.group()
def tag() -> None:
    """Tags such as compound:ALLN, moa:..., plate:..., batch:..., concentration:..."""


@command(tag, "list", human=lambda rows: _table(rows, ["tag_id", "type", "value"]))
@click.option("--type", "type_", help="Only tags of this type (compound, moa, plate, batch, concentration).")
def tag_list(obj: Ctx, type_: str | None) -> list[dict[str, Any]]:
    """Every tag (or every tag of a type)."""
    return obj.container.tags.get_all_tags(type_)


@command(tag, "create", human=_kv)
@click.argument("value")
def tag_create(obj: Ctx, value: str) -> dict[str, Any]:
    """Create a tag."""
    return obj.container.tags.create_tag(value)


@command(tag, "show", human=_kv)
@click.argument("tag")
def tag_show(obj: Ctx, tag: str) -> dict[str, Any]:
    """A tag by value or id, with the number of images carrying it."""
    tags = obj.container.tags
    info = tags.get_tag_by_id(int(tag)) if tag.isdigit() else tags.get_tag_by_value(tag)
    info["images"] = len(tags.get_images_by_tag(info["value"]))
    return info


@main.group()
def label() -> None:
    """Label categories (e.g. moa) and their labels with stable indices."""


@command(label, "list", human=lambda rows: _table(rows, ["index", "label", "description"]))
@click.argument("category")
def label_list(obj: Ctx, category: str) -> list[dict[str, Any]]:
    """Labels of a category, by index."""
    return obj.container.tags.list_labels(category)


@command(label, "categories", human=lambda rows: _table(rows, ["category", "description"]))
def label_categories(obj: Ctx) -> list[dict[str, Any]]:
    """Every label category."""
    return obj.container.tags.list_categories()


@command(label, "create", human=lambda i: click.echo(i))
@click.argument("category")
@click.argument("label")
@click.option("--description")
def label_create(obj: Ctx, category: str, label: str, description: str | None) -> int:
    """Add a label to a category (created if missing); prints its index."""
    tags = obj.container.tags
    tags.ensure_labels(category, [])
    return tags.create_label(category, label, description)


@command(label, "index", human=lambda i: click.echo(i))
@click.argument("category")
@click.argument("label")
def label_index(obj: Ctx, category: str, label: str) -> int:
    """The index of a label."""
    return obj.container.tags.get_index(category, label)


# ------------------------------------------------------------------------------ specs and preprocessing


@main.group()
def spec() -> None:
    """Embedding specs: input dims and channels, ROI size, segmentation, network, training settings."""


@command(spec, "create", human=_kv)
@click.argument("file", type=click.Path(path_type=Path))
def spec_create(obj: Ctx, file: Path) -> dict[str, Any]:
    """Register a spec from a JSON file (format: bioims.specs; unknown keys are refused)."""
    from .specs import EmbeddingSpec

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


def _echo_failures(r: dict[str, Any]) -> None:
    for failure in r["failures"][:10]:
        click.echo(f"  failed: {failure.get('image_id') or failure.get('plate_id')}: {failure['failure']}")


def _unit_name(failure: dict[str, Any]) -> str:
    """What a failed job unit was about: an image, a plate (x channel) or a train run."""
    if failure.get("image_id"):
        return str(failure["image_id"])
    if failure.get("plate_id"):
        return "/".join(str(failure[k]) for k in ("plate_id", "channel") if failure.get(k))
    return str(failure.get("train_id", "?"))


def _summary(job: str, counts: list[tuple[int, int, str]], first: tuple[str, str] | None) -> str | None:
    """``"<job>: 2 of 40 fields failed (first: ID: reason)"`` from (failed, total, what) counts, or None
    when nothing failed."""
    parts = [f"{n} of {total} {what}" for n, total, what in counts if n]
    if not parts:
        return None
    return f"{job}: {' and '.join(parts)} failed" + (f" (first: {first[0]}: {first[1]})" if first else "")


def _first_failure(failures: list[dict[str, Any]]) -> tuple[str, str] | None:
    return (_unit_name(failures[0]), str(failures[0]["failure"])) if failures else None


def _preprocess_failures(r: dict[str, Any]) -> str | None:
    return _summary("preprocess", [(r["failed_flatfields"], r["flatfields"], "flat-fields"),
                                   (r["failed_fields"], r["fields"] + r["failed_fields"], "fields")],
                    _first_failure(r["failures"]))


def _embed_failures(r: dict[str, Any]) -> str | None:
    return _summary("embed", [(r["failed_plates"], r["plates"], "plates"),
                              (r["failed_fields"], r["fields"] + r["empty"] + r["failed_fields"], "fields")],
                    _first_failure(r["failures"]))


def _process_failures(r: dict[str, Any]) -> str | None:
    outputs = [e["output"] for e in r["executions"]]
    failed = [f for o in outputs for f in o["failed"]]
    invalid = [i for o in outputs for i in o.get("invalid", [])]
    n_invalid = sum(o["invalid_images"] for o in outputs)
    if not failed and not n_invalid:
        return None
    parts = ([f"{n_invalid} of {sum(o['images'] for o in outputs)} images invalid"] if n_invalid else []) \
        + ([f"{len(failed)} jobs failed"] if failed else [])
    first = _first_failure(failed) or ((invalid[0]["image_id"], str(invalid[0]["error"])) if invalid else None)
    return f"plate process: {', '.join(parts)}" + (f" (first: {first[0]}: {first[1]})" if first else "")


def _train_failures(r: dict[str, Any]) -> str | None:
    return _summary("train", [(r["failed"], len(r["train_ids"]), "train runs")], _first_failure(r["failures"]))


def _run_over_plates(obj: Ctx, workflow: str, params: dict[str, Any], plates: tuple[str, ...],
                     workers: int | None) -> dict[str, Any]:
    """Run a workflow over some plates (ids or source ids; none: all) on a local pool, in the foreground."""
    from .jobs.runner import LocalPool, default_workers

    c = obj.container
    plate_ids = [c.images.get_plate(p)["plate_id"] for p in plates] or None
    with LocalPool(c, workers=workers or default_workers(), progress=obj.progress) as pool:
        execution = c.runner.run(c, workflow, {**params, "plate_ids": plate_ids}, pool=pool)
    return execution["output"] | {"execution_id": execution["execution_id"]}


def _preprocess_human(r: dict[str, Any]) -> None:
    click.echo(f"{r['fields']} fields preprocessed ({r['skipped']} already done), {r['failed']} failed, "
               f"{r['cells']} cells, {r['plates']} plates, {r['seconds']} s")
    _echo_failures(r)


@command(main, human=_preprocess_human, failures=lambda r: _preprocess_failures(r))
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


@command(main, human=_train_human, failures=lambda r: _train_failures(r))
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
@click.option("--workers", type=int, default=1, show_default=True,
              help="Runs trained at once (the CPU cores are shared among them).")
def train(obj: Ctx, spec_name: str, holdout: str, epochs: int | None, seed: int | None, network: str | None,
          loss: str | None, temperature: float | None, learning_rate: float | None, workers: int) -> dict[str, Any]:
    """Train the spec's models (resuming killed runs, skipping complete ones); prints the train run ids."""
    from .jobs.runner import LocalPool

    c = obj.container
    runs = c.training.create_trainings(spec_name, holdout, epochs, seed, network, loss, temperature, learning_rate)
    ids = [r["train_id"] for r in runs]
    with LocalPool(c, workers=workers, progress=obj.progress) as pool:
        execution = c.runner.run(c, "train", {"train_ids": ids, "progress": obj.progress}, pool=pool)
    return {"train_ids": ids, **execution["output"], "execution_id": execution["execution_id"]}


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
    """Delete a train run with its checkpoints and model."""
    return obj.container.training.delete_training(train_id)


# ---------------------------------------------------------------------------- profiles and evaluation


@main.group()
def profiles() -> None:
    """Feature-profile sets (e.g. CellProfiler per-well tables) kept as named embeddings."""


@command(profiles, "import", human=_kv)
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
    from .profiles.pipeline import ProfileProcessing

    options = ProfileProcessing(**({"feature_selection": ()} if no_feature_selection else {}),
                                normalization=None if normalization == "none" else normalization,
                                sphering=sphere, aggregation=aggregation, metric=metric)
    return obj.container.profiles.import_table(name, csv, metadata_csv, moa_csv, options)


@command(profiles, "compute", human=_kv)
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
    ["name", "wells", "treatments", "features", "metric"]))
def profiles_list(obj: Ctx) -> list[dict[str, Any]]:
    """Every profile set."""
    return obj.container.profiles.list()


def _score(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _evaluate_human(r: dict[str, Any]) -> None:
    click.echo(f"NSC {_score(r['nsc'])}  NSCB {_score(r['nscb'])}  compound-level {_score(r['compound_level'])}  "
               f"mAP {_score(r['map'])}  ({r['treatments']} treatments, {r['compounds']} compounds, {r['moas']} MOAs, "
               f"{r['metric']})")
    if r.get("report"):
        click.echo(f"report: {r['report']}")


@command(main, human=_evaluate_human)
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
    from .evaluation.evaluate import evaluate as run_evaluation
    from .evaluation.report import write_report

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


@command(main, human=_embed_human, failures=lambda r: _embed_failures(r))
@click.argument("train_id")
@click.option("--plate", "plates", multiple=True, help="Only these plates (id or source id; repeatable).")
@click.option("--workers", type=int, default=None, help="Processes (default: the CPU count).")
@click.option("--force", is_flag=True, help="Recompute embeddings that exist.")
def embed(obj: Ctx, train_id: str, plates: tuple[str, ...], workers: int | None, force: bool) -> dict[str, Any]:
    """Cell, field (and, on demand, well and treatment) embeddings of a train run's model with ONNX Runtime."""
    obj.container.embedding.plates(train_id)
    return _run_over_plates(obj, "embed", {"train_id": train_id, "force": force}, plates, workers)


@command(main, "export", human=_kv)
@click.argument("train_id")
@click.option("--parquet", "out", required=True, type=click.Path(path_type=Path), help="Output Parquet file.")
@click.option("--level", type=click.Choice([v for v in values(Level) if v != Level.CELL]), default="well",
              show_default=True)
@click.option("--no-normalize", is_flag=True, help="Treatment level: skip the per-plate standardisation to DMSO.")
def export(obj: Ctx, train_id: str, out: Path, level: str, no_normalize: bool) -> dict[str, Any]:
    """pycytominer-style profiles of a run's embeddings: Metadata_* columns + emb_* features."""
    from .profiles.io import feature_columns, write_profiles
    from .store.objects import write_file_atomic

    table = obj.container.embedding.profiles(train_id, level, normalize=not no_normalize)
    write_file_atomic(out, write_profiles(table))
    return {"path": str(out), "level": level, "rows": len(table), "features": len(feature_columns(table))}


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
    return obj.container.search.list_indexes(train_id)


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
    if files:
        channels = obj.container.training.spec(obj.container.training.get_training(train_id)["spec_name"]).input.channels
        named = [f.split("=", 1) if "=" in f else [None, f] for f in files]
        if len(named) != len(channels):
            raise InvalidInput(f"give one --file per channel ({', '.join(channels)}), got {len(named)}")
        request["images"] = {ch or channels[i]: base64.b64encode(Path(path).read_bytes()).decode()
                             for i, (ch, path) in enumerate(named)}
        if flatfield_plate:
            request["flatfield_plate"] = flatfield_plate
    if url:
        from .client import SearchClient

        return SearchClient(f"{url.rstrip('/')}/search").search(**request)
    return obj.container.search.search(**request)


@command(main, "search-result", human=lambda r: click.echo(json.dumps(r, indent=2, default=str)))
@click.argument("search_id")
def search_result(obj: Ctx, search_id: str) -> dict[str, Any]:
    """The record of an earlier search: status, query, hits (the seed's getSearchStatus/getSearchResults)."""
    return obj.container.search.get_search(search_id)


# ----------------------------------------------------------------------------------- configuration etc.


@main.group()
def config() -> None:
    """Configuration parameters (values are JSON; every change is kept in the history)."""


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare word is a string


@command(config, "get", human=lambda v: click.echo(json.dumps(v)))
@click.argument("key")
def config_get(obj: Ctx, key: str) -> Any:
    """The current value of a parameter."""
    return obj.container.artifacts.get_parameter(key)


@command(config, "set", human=_kv)
@click.argument("key")
@click.argument("value")
def config_set(obj: Ctx, key: str, value: str) -> dict[str, Any]:
    """Set a parameter (VALUE is JSON, or a bare string)."""
    return obj.container.artifacts.set_parameter(key, _json_value(value))


@command(config, "history", human=lambda rows: _table(rows, ["version", "created_at", "deleted", "value"]))
@click.argument("key")
def config_history(obj: Ctx, key: str) -> list[dict[str, Any]]:
    """Every version of a parameter."""
    return obj.container.artifacts.get_history(key)


@command(config, "list", human=_kv)
def config_list(obj: Ctx) -> dict[str, Any]:
    """Every parameter currently set."""
    return obj.container.artifacts.get_all()


@command(config, "delete", human=_kv)
@click.argument("key")
def config_delete(obj: Ctx, key: str) -> dict[str, Any]:
    """Unset a parameter (kept in its history)."""
    return obj.container.artifacts.delete_parameter(key)


@main.group()
def message() -> None:
    """Message (activity) logs."""


@command(message, "list", human=lambda rows: _table(rows, ["created_at", "message"]))
@click.argument("message_id")
def message_list(obj: Ctx, message_id: str) -> list[dict[str, Any]]:
    """Every message of a log (a plate's log id is in `bioims plate show`)."""
    return obj.container.artifacts.list_messages(message_id)


@main.group()
def artifact() -> None:
    """The artifact registry: every stored object with its context and train id."""


@command(artifact, "list", human=lambda rows: _table(rows, ["train_id", "type", "size", "uri"]))
@click.argument("context_id")
@click.option("--train", "train_id")
def artifact_list(obj: Ctx, context_id: str, train_id: str | None) -> list[dict[str, Any]]:
    """Artifacts of a context (plate, image, train run ...)."""
    return obj.container.artifacts.get_artifacts(context_id, train_id)


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
    click.echo(f"next: `bioims serve`, then POST http://127.0.0.1:8700/search/searches "
               f"{{\"train_id\": \"{baseline}\", \"image_id\": \"...\"}} (services/search/README.md); "
               f"`bioims search {baseline} --image IMAGE_ID --require-moa`; open the report above; "
               f"your own plates: `bioims ingest loaddata ...` onwards (README.md, tutorial)")


@command(main, human=_demo_human)
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
    from .demo import run_demo
    from .jobs.runner import default_workers

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
    from .api.server import serve as run_server

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
    from .client import connect
    from .contract import dispatch
    from .contract import service as contract

    from .contract import parse_json

    args = parse_json(arguments, "ARGUMENTS")
    if not isinstance(args, dict):
        raise InvalidInput("ARGUMENTS must be a JSON object")
    if url:
        client = connect(service, url=f"{url.rstrip('/')}/{service}")
    elif function_name:
        client = connect(service, function_name=function_name)
    else:
        client = connect(service, container=obj.container)
    return dispatch(client, contract(service).find(method), args)
