"""AWS Batch submission of job steps: the same entry points as the local runner, as array jobs.

An array job of N children runs ``python -m bioims.jobs STEP --array-params URI``; child i reads the
parameter list at URI (written here, to the object store) and runs element ``AWS_BATCH_JOB_ARRAY_INDEX``.
One parameter set is submitted as a plain job (Batch arrays need at least two children).
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInput, NotFound
from ..ids import new_id
from ..store.keys import Keys
from ..store.objects import ObjectStore
from .steps import STEPS

MAX_ARRAY_SIZE = 10_000
"""AWS Batch's largest array job."""


class BatchSubmitter:
    """Submit job steps to an AWS Batch queue.

    Parameters
    ----------
    client : botocore Batch client
    job_queue, job_definition : str
        Names or ARNs (the job definition runs the bioims job image).
    objects, keys : ObjectStore, Keys
        Where parameter lists are written.
    """

    def __init__(self, client: Any, job_queue: str, job_definition: str, objects: ObjectStore, keys: Keys) -> None:
        self._batch = client
        self.job_queue = job_queue
        self.job_definition = job_definition
        self._objects = objects
        self._keys = keys

    def submit(self, step: str, params: list[dict[str, Any]], *, depends_on: list[str] | None = None,
               name: str | None = None) -> str:
        """Submit ``step`` over ``params`` (one child per element); returns the Batch job id."""
        if step not in STEPS:
            raise InvalidInput(f"unknown job step {step!r}; known: {', '.join(STEPS)}")
        if not params:
            raise InvalidInput("nothing to submit: the parameter list is empty")
        if len(params) > MAX_ARRAY_SIZE:
            raise InvalidInput(f"{len(params)} jobs exceed AWS Batch's array limit of {MAX_ARRAY_SIZE}; split them")
        job_key = new_id()
        uri = self._keys.job_params(job_key)
        self._objects.put_json(uri, params)
        request: dict[str, Any] = {
            "jobName": name or f"bioims-{step}-{job_key}",
            "jobQueue": self.job_queue,
            "jobDefinition": self.job_definition,
            "containerOverrides": {"command": ["python", "-m", "bioims.jobs", step, "--array-params", uri]},
        }
        if len(params) > 1:
            request["arrayProperties"] = {"size": len(params)}
        if depends_on:
            request["dependsOn"] = [{"jobId": job_id} for job_id in depends_on]
        return str(self._batch.submit_job(**request)["jobId"])

    def describe(self, job_id: str) -> dict[str, Any]:
        """``{"job_id", "status", "size", "status_summary"}`` of a submitted job."""
        jobs = self._batch.describe_jobs(jobs=[job_id])["jobs"]
        if not jobs:
            raise NotFound(f"no Batch job {job_id!r}")
        job = jobs[0]
        array = job.get("arrayProperties", {})
        return {"job_id": job_id, "status": job["status"], "size": array.get("size", 1),
                "status_summary": array.get("statusSummary", {})}


def array_element(params: Any, index: int) -> dict[str, Any]:
    """Element ``index`` of an array job's parameter list, with a clear error when out of range."""
    if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
        raise InvalidInput("an array job's parameters must be a JSON list of objects")
    if not 0 <= index < len(params):
        raise InvalidInput(f"array index {index} is outside the {len(params)} parameter sets")
    return params[index]
