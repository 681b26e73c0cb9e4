"""``bioims`` commands: datasets, ingestion, plates, images, tags and labels."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from ..errors import InvalidInput
from .base import Ctx, _json_value, _kv, _process_failures, _table, command, main

# ---------------------------------------------------------------------------------------------- dataset


@main.group()
def dataset() -> None:
    """Datasets: generate the synthetic screen."""


def _synth_human(r: dict[str, Any]) -> None:
    click.echo(f"wrote {r['fields']} fields ({r['rendered']} rendered, {r['skipped']} already there) of "
               f"{r['plates']} plates, {r['cells']} cells, {r['treatments']} treatments of {r['compounds']} "
               f"compounds in {r['moas']} MOAs to {r['out']} ({r['bytes'] / 1e9:.2f} GB) in {r['seconds']} s")
    click.echo(f"next: bioims ingest loaddata {r['out']}/synth_image.csv --moa {r['out']}/synth_moa.csv")


@command(dataset, "synth", human=_synth_human, remote=False)
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--preset", type=click.Choice(["tiny", "demo", "full"]), default="demo", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, default=None, help="Processes (default: the CPU count).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Override a preset setting, e.g. --option sites=4 --option batches=12 (repeatable).")
def dataset_synth(obj: Ctx, out: Path, preset: str, seed: int, workers: int | None,
                  options: tuple[str, ...]) -> dict[str, Any]:
    """Write a synthetic HCS screen (BBBC021 layout, 16-bit TIFFs, image and MOA CSVs, ground truth)."""
    from ..datasets.synth import synthesize
    from ..jobs.runner import default_workers

    overrides: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"--option must be KEY=VALUE, got {item!r}")
        overrides[key] = _json_value(value)
    return synthesize(out, preset, seed, workers=workers or default_workers(), progress=obj.progress, **overrides)


@command(dataset, "ome-zarr", human=_kv, remote=False)
@click.argument("csv", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the <plate>.ome.zarr plates.")
@click.option("--moa", "moa_csv", type=click.Path(path_type=Path), help="compound,concentration,moa CSV")
@click.option("--root", help="Folder (or s3:// prefix) that PathName columns are relative to.")
@click.option("--plate", "plates", multiple=True, help="Only these plates (source ids; repeatable).")
@click.option("--ngff", type=click.Choice(["0.5", "0.4"]), default="0.5", show_default=True, help="NGFF version.")
def dataset_ome_zarr(obj: Ctx, csv: Path, out: Path, moa_csv: Path | None, root: str | None,
                     plates: tuple[str, ...], ngff: str) -> dict[str, Any]:
    """Convert the plates of a LoadData / BBBC021 image CSV to OME-Zarr HCS plates, with their per-well
    metadata in OUT/wells.csv (for `bioims ingest ome-zarr ... --metadata OUT/wells.csv`)."""
    from ..datasets.loaddata import read_loaddata
    from ..datasets.omezarr import well_metadata_csv, write_ome_zarr
    from ..store.objects import write_file_atomic

    started = time.perf_counter()
    records = [r for r in read_loaddata(csv, moa_csv=moa_csv, root=root) if not plates or r.source_id in plates]
    missing = sorted(set(plates) - {r.source_id for r in records})
    if missing:
        raise InvalidInput(f"{csv} has no plate {', '.join(missing)}")
    written = [str(write_ome_zarr(r, obj.local.objects, out, version=ngff)) for r in records]
    write_file_atomic(out / "wells.csv", well_metadata_csv(records))
    return {"plates": written, "metadata": str(out / "wells.csv"), "seconds": round(time.perf_counter() - started, 2)}


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

    from ..store.roots import remember_ingest_root

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


@command(ingest, "loaddata", human=_ingest_human, remote=False)
@click.argument("csv", type=click.Path(path_type=Path))
@click.option("--moa", "moa_csv", type=click.Path(path_type=Path), help="compound,concentration,moa CSV")
@click.option("--root", help="Folder (or s3:// prefix) that PathName columns are relative to.")
@click.option("--experiment", default="default", show_default=True)
def ingest_loaddata(obj: Ctx, csv: Path, moa_csv: Path | None, root: str | None, experiment: str) -> dict[str, Any]:
    """BBBC021-style image CSV or CellProfiler LoadData CSV."""
    from ..datasets.loaddata import read_loaddata

    return _ingest(obj, read_loaddata(csv, moa_csv=moa_csv, root=root, experiment=experiment),
                   [root or csv.absolute().parent])


@command(ingest, "manifest", human=_ingest_human, remote=False)
@click.argument("manifests", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--root", type=click.Path(path_type=Path), help="Folder that relative keys are relative to.")
def ingest_manifest(obj: Ctx, manifests: tuple[Path, ...], root: Path | None) -> dict[str, Any]:
    """The seed's sourcePlateInfo JSON (one plate per file)."""
    from ..datasets.manifest import read_manifest

    records = []
    for path in manifests:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InvalidInput(f"cannot read manifest {path}: {e.strerror}") from None
        records.append(read_manifest(data, source=str(path), root=root or path.parent))
    return _ingest(obj, records, [root] if root else list(dict.fromkeys(p.absolute().parent for p in manifests)))


@command(ingest, "folder", human=_ingest_human, remote=False)
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--pattern", required=True,
              help="Regex on each file's relative path with groups (?P<plate>) (?P<well>) (?P<channel>) [(?P<site>)].")
@click.option("--metadata", "metadata_csv", type=click.Path(path_type=Path), help="plate,well,compound,... CSV")
@click.option("--experiment", default="default", show_default=True)
def ingest_folder(obj: Ctx, directory: Path, pattern: str, metadata_csv: Path | None, experiment: str) -> dict[str, Any]:
    """A folder of TIFF/PNG files named by a pattern."""
    from ..datasets.folder import scan_folder

    return _ingest(obj, scan_folder(directory, pattern, metadata_csv=metadata_csv, experiment=experiment),
                   [directory])


@command(ingest, "ome-zarr", human=_ingest_human, remote=False)
@click.argument("plates", nargs=-1, required=True)
@click.option("--metadata", "metadata_csv", type=click.Path(path_type=Path), help="plate,well,compound,... CSV")
@click.option("--experiment", default="default", show_default=True)
def ingest_ome_zarr(obj: Ctx, plates: tuple[str, ...], metadata_csv: Path | None, experiment: str) -> dict[str, Any]:
    """OME-Zarr HCS plates (NGFF 0.4 or 0.5; local folders or s3:// URIs), read in place by chunk."""
    from ..datasets.omezarr import plate_uri, read_ome_zarr

    records = [read_ome_zarr(p, obj.local.objects, metadata_csv=metadata_csv, experiment=experiment) for p in plates]
    return _ingest(obj, records, [plate_uri(p) for p in plates])


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


@command(plate, "process", human=_process_human, failures=lambda r: _process_failures(r), remote=False)
@click.argument("plate_ids", nargs=-1)
@click.option("--all", "all_plates", is_flag=True, help="Every registered plate.")
@click.option("--workers", type=int, default=None, help="Processes (default: the CPU count).")
def plate_process(obj: Ctx, plate_ids: tuple[str, ...], all_plates: bool, workers: int | None) -> dict[str, Any]:
    """Inspect every image, validate, and make thumbnails (the process-plate workflow), foreground."""
    from ..jobs.runner import LocalPool, default_workers

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
