"""The local runner: workflows in the foreground or detached, units over a process pool.

On AWS the same steps run as AWS Batch jobs started by Step Functions; here an execution is a row of
the ``executions`` table and a detached ``python -m bioims.jobs execute ID`` process.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from ..contract.enums import ExecutionStatus
from ..errors import BioimsError, InvalidInput, NotFound
from ..ids import new_id, utcnow
from ..settings import Settings
from ..store.tables import to_dict
from .tables import RunnerTables
from .steps import STEPS, WORKFLOWS

if TYPE_CHECKING:
    from ..runtime import Container


def run_unit(container: Container, step: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run one unit; an expected failure becomes ``{"failure": reason, **params}`` (the batch goes on)."""
    try:
        return STEPS[step](container, **params)
    except BioimsError as e:
        return {**params, "failure": e.message}
    except Exception as e:
        return {**params, "failure": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=5)}


_WORKER: Container | None = None  # one container per pool worker process, built by _init_worker


def _init_worker(build: Callable[[Settings], Container], settings: Settings) -> None:
    global _WORKER
    _die_with_parent()
    _WORKER = build(settings)


def _die_with_parent() -> None:
    """On Linux, have the kernel stop this worker when the process that started the pool dies (a killed
    `bioims train` must not leave workers training on); elsewhere the pool's own shutdown applies."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _worker_unit(step: str, params: dict[str, Any]) -> dict[str, Any]:
    assert _WORKER is not None
    return run_unit(_WORKER, step, params)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class LocalPool:
    """Maps a step over many parameter sets: inline for one worker, else a process pool.

    Parameters
    ----------
    container : Container
        Used inline; worker processes build their own with ``container.rebuild(container.settings)`` (the
        composition root that made it, passed in: this module does not import the runtime).
    workers : int
        Processes (1 = run in this process).
    progress : bool
        Show a progress bar on stderr.
    """

    def __init__(self, container: Container, workers: int = 1, progress: bool = False) -> None:
        if workers < 1:
            raise InvalidInput(f"workers must be >= 1, got {workers}")
        self.container = container
        self.workers = workers
        self.progress = progress
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes (they are started by the first parallel map and then reused)."""
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None

    def _processes(self) -> ProcessPoolExecutor:
        if self._executor is None:
            settings = self.container.settings
            if not settings.dynamodb_url and self.container.database.host:
                settings = settings.with_(dynamodb_url=self.container.database.host)
            build = self.container.rebuild
            if build is None:
                raise InvalidInput("this runtime cannot start worker processes (its container has no rebuild); "
                                   "use workers=1")
            self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_init_worker, initargs=(build, settings))
        return self._executor

    def map(self, step: str, params: list[dict[str, Any]], *, desc: str) -> list[dict[str, Any]]:
        """Run ``step`` once per parameter set; results in the same order (failures as
        ``{"failure": ...}``, see :func:`run_unit`)."""
        if step not in STEPS:
            raise InvalidInput(f"unknown job step {step!r}")
        with tqdm(total=len(params), desc=desc, unit="job", disable=not self.progress, file=sys.stderr) as bar:
            if self.workers == 1 or len(params) <= 1:
                results = []
                for p in params:
                    results.append(run_unit(self.container, step, p))
                    bar.update()
                return results
            futures = [self._processes().submit(_worker_unit, step, p) for p in params]
            for f in futures:
                f.add_done_callback(lambda _: bar.update())
            return [f.result() for f in futures]


class LocalRunner:
    """Starts and describes workflow executions on this machine."""

    def __init__(self, settings: Settings, tables: RunnerTables) -> None:
        self.settings = settings
        self._t = tables

    def start(self, workflow: str, params: dict[str, Any]) -> str:
        """Record an execution and run it in a detached process; returns its id at once."""
        execution_id = self._create(workflow, params)
        log_dir = self.settings.home / "logs" / "executions"
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.settings.to_env()}
        if self._t.database.host:
            env["BIOIMS_DYNAMODB_URL"] = self._t.database.host
        with open(log_dir / f"{execution_id}.log", "ab") as log:
            subprocess.Popen([sys.executable, "-m", "bioims.jobs", "execute", execution_id],
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env, start_new_session=True)
        return execution_id

    def run(self, container: Container, workflow: str, params: dict[str, Any], *,
            pool: LocalPool | None = None, workers: int = 1, progress: bool = False) -> dict[str, Any]:
        """Record an execution and run it in the foreground (on ``pool``, or on a pool of ``workers``
        made for it); returns its description."""
        execution_id = self._create(workflow, params)
        return self.execute(container, execution_id, pool=pool, workers=workers, progress=progress)

    def execute(self, container: Container, execution_id: str, *, pool: LocalPool | None = None,
                workers: int = 1, progress: bool = False) -> dict[str, Any]:
        row = self._row(execution_id)
        own_pool = pool is None
        pool = pool or LocalPool(container, workers=workers, progress=progress)
        try:
            output = WORKFLOWS[row.workflow](container, pool, **row.params)
        except Exception as e:
            reason = e.message if isinstance(e, BioimsError) else f"{type(e).__name__}: {e}"
            row.update(actions=[self._t.executions.status.set(ExecutionStatus.FAILED),
                                self._t.executions.error.set(reason), self._t.executions.finished_at.set(utcnow())])
            raise
        finally:
            if own_pool:
                pool.close()
        row.update(actions=[self._t.executions.status.set(ExecutionStatus.SUCCEEDED),
                            self._t.executions.output.set(output), self._t.executions.finished_at.set(utcnow())])
        return self.describe(execution_id)

    def describe(self, execution_id: str) -> dict[str, Any]:
        """``{"execution_id", "workflow", "params", "status" (RUNNING|SUCCEEDED|FAILED), "output", ...}``."""
        return to_dict(self._row(execution_id))

    def _create(self, workflow: str, params: dict[str, Any]) -> str:
        if workflow not in WORKFLOWS:
            raise InvalidInput(f"unknown workflow {workflow!r}; known: {', '.join(WORKFLOWS)}")
        execution_id = new_id()
        self._t.executions(execution_id, workflow=workflow, params=params, status=ExecutionStatus.RUNNING,
                           started_at=utcnow()).save()
        return execution_id

    def _row(self, execution_id: str) -> Any:
        if not isinstance(execution_id, str) or not execution_id:
            raise InvalidInput("execution id must be a non-empty string")
        try:
            return self._t.executions.get(execution_id)
        except self._t.executions.DoesNotExist:
            raise NotFound(f"no execution {execution_id!r}") from None
