"""The command line's plumbing: the per-invocation context, the ``command`` decorator (``--json``,
one-line errors, exit codes), the root group and the printers and failure summaries the groups share."""

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

from ..errors import BioimsError, one_line
from ..settings import Settings

# --------------------------------------------------------------------------------------------- plumbing


class Ctx:
    """Per-invocation state: settings (read once), and the services the commands call: the lazily built
    local container, or the clients of a deployed stack (``--stack``)."""

    def __init__(self, stack: str | None = None, profile: str | None = None, region: str | None = None) -> None:
        self.settings = Settings.from_env()
        self.progress = False
        self.stack = stack
        self.profile = profile
        self.region = region
        self.command = "bioims"
        self._local: Any = None
        self._container: Any = None

    @property
    def local(self) -> Any:
        """The local container (dynalite started on demand)."""
        if self.stack:
            raise LocalOnly(f"{self.command} runs on this machine only, not against a deployed stack "
                            f"(drop --stack / BIOIMS_STACK={self.stack})")
        if self._local is None:
            from ..runtime import local

            self._local = local(self.settings)
        return self._local

    @property
    def container(self) -> Any:
        """The services: the local container, its operations validated by the contract (as over the API);
        with ``--stack``, the stack's clients (SigV4-signed HTTP), which have the same operations."""
        if self._container is None:
            if self.stack:
                from ..client import Stack, aws_session

                session = aws_session(self.profile, self.region)
                self._container = _StackView(Stack.discover(self.stack, session).connect(session), self)
            else:
                from ..client import validated

                self._container = validated(self.local)
        return self._container


class LocalOnly(BioimsError):
    """A command (or the part of one) that needs this machine's stack was run with ``--stack``."""


class _StackView:
    """A deployed stack's clients under the container's names; what only the local container has (the
    workflow runner, ingest from local files, profiles, training jobs) fails in one line, naming the command."""

    def __init__(self, remote: Any, obj: Ctx) -> None:
        self._remote = remote
        self._obj = obj

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._remote.ATTRIBUTES:
            raise self._local_only(name)
        return _ServiceView(self._remote.service(self._remote.ATTRIBUTES[name]), self, name)

    def service(self, name: str) -> Any:
        """The client of service ``name`` (``tags``, ``image-management``, ...)."""
        return self._remote.service(name)

    def _local_only(self, what: str) -> LocalOnly:
        return LocalOnly(f"{self._obj.command} runs on this machine only (it needs the local {what}), not against "
                         f"the deployed stack {self._obj.stack} (drop --stack / BIOIMS_STACK)")


class _ServiceView:
    def __init__(self, client: Any, stack: _StackView, name: str) -> None:
        self._client = client
        self._stack = stack
        self._name = name

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)
        try:
            return getattr(self._client, method)
        except AttributeError:
            raise self._stack._local_only(f"{self._name}.{method}") from None


def _emit(result: Any, as_json: bool, human: Callable[[Any], None] | None) -> None:
    if as_json or human is None:
        click.echo(json.dumps(result, indent=None if as_json else 2, default=str))
    else:
        human(result)


class JobFailed(BioimsError):
    """A job ran to its end but some of its units failed; the message is the one-line summary."""


def command(group: click.Group, name: str | None = None, human: Callable[[Any], None] | None = None,
            failures: Callable[[Any], str | None] | None = None, remote: bool = True,
            **kwargs: Any) -> Callable[[Callable[..., Any]], click.Command]:
    """Register a command that returns a JSON-ready result: adds ``--json``/``--quiet`` and prints the
    result (JSON or via ``human``). ``failures`` summarises in one line what a job's result reports as
    failed (None: nothing); the result is printed all the same, then the summary goes to stderr and the
    exit code is 1 (:class:`JobFailed`). Errors become one line on stderr and exit 1 (:class:`Main`).
    ``remote=False``: the command is about this machine (its stack, files, the demo) and refuses ``--stack``."""

    def decorator(fn: Callable[..., Any]) -> click.Command:
        @click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
        @click.option("--quiet", is_flag=True, help="No progress bars.")
        @click.pass_obj
        @functools.wraps(fn)
        def wrapper(obj: Ctx, as_json: bool, quiet: bool, **params: Any) -> None:
            obj.progress = not quiet and sys.stderr.isatty()
            obj.command = click.get_current_context().command_path
            if obj.stack and not remote:
                raise LocalOnly(f"{obj.command} is about this machine's stack, not a deployed one "
                                f"(drop --stack / BIOIMS_STACK={obj.stack})")
            result = fn(obj, **params)
            _emit(result, as_json, human)
            summary = failures(result) if failures is not None else None
            if summary:
                raise JobFailed(summary)

        return group.command(name, **kwargs)(wrapper)

    return decorator


SERVER_MODULES = frozenset({
    "boto3", "chalice", "numpy", "pandas", "PIL", "pynamodb", "scipy", "tifffile", "tqdm",  # bioims[server]
    "faiss", "onnxruntime", "pyarrow", "starlette", "uvicorn", "uvloop", "httptools",  # bioims[search]
    "matplotlib", "onnx", "sklearn", "torch"})  # bioims[ml]
"""Top-level modules that ``bioims[client]`` does not install."""


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
            if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] in SERVER_MODULES:
                what = ctx.obj.command if isinstance(ctx.obj, Ctx) else "this command"
                click.echo(f"error: {what} needs the server install (pip install 'bioims[server]'): "
                           f"no module {e.name!r}", err=True)  # a client-only install running a local command
                sys.exit(1)
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
@click.option("--stack", envvar="BIOIMS_STACK", metavar="NAME",
              help="Work against this deployed CloudFormation stack (its services found from its outputs, requests "
                   "SigV4-signed) instead of this machine's stack. Env: BIOIMS_STACK.")
@click.option("--profile", envvar="AWS_PROFILE", metavar="NAME", help="AWS profile for --stack (env: AWS_PROFILE).")
@click.option("--region", metavar="REGION", help="AWS region of --stack (default: the profile's).")
@click.pass_context
def main(ctx: click.Context, debug: bool, stack: str | None, profile: str | None, region: str | None) -> None:
    """bioims: image embeddings and phenotype similarity search for high-content screening."""
    ctx.obj = Ctx(stack=stack, profile=profile, region=region)


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
    from ..jobs.runner import LocalPool, default_workers

    c = obj.container
    plate_ids = [c.images.get_plate(p)["plate_id"] for p in plates] or None
    with LocalPool(c, workers=workers or default_workers(), progress=obj.progress) as pool:
        execution = c.runner.run(c, workflow, {**params, "plate_ids": plate_ids}, pool=pool)
    return execution["output"] | {"execution_id": execution["execution_id"]}


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare word is a string


def _score(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
