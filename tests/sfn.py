"""Step Functions executions offline, by an existing interpreter: moto's (a port of LocalStack's), with
JSONata evaluated by ``jsonata-python`` (moto's own JSONata expects a JVM bridge), its Lambda tasks
invoking the services' real ``invoke`` handlers and its Batch tasks run by :class:`LocalBatch`, which
runs each job's command (``python -m bioims.jobs ...``) with the job's environment and
``AWS_BATCH_JOB_ARRAY_INDEX`` per array child.

Written here, by hand, only the seams: the clients the interpreter's Lambda, Batch and API Gateway
tasks use, its retry waits (recorded, not slept) and five fixes of moto 5.2.5 (three in its API Gateway
task, a fresh callback per retried ``.sync`` attempt, a Fail state that re-raises a ``States.`` error). The
interpreter, the JSONata evaluation, the handlers, the job steps and the search app are the real ones.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pytest

JobCommand = Callable[[list[str], Mapping[str, str]], int]
"""Runs a job's command (argv after ``python -m bioims.jobs``) with its environment; the exit code."""


class InterpreterLambda:
    """The interpreter's Lambda client: ``invoke`` of a function named by ARN or name, handed to a
    :class:`tests.fakes.FakeLambda` (the services' handlers, run the way Lambda runs them)."""

    def __init__(self, functions: Any) -> None:
        self.functions = functions

    def invoke(self, *, FunctionName: str, Payload: Any = b"{}", InvocationType: str = "RequestResponse",
               **_: Any) -> dict[str, Any]:
        payload = Payload if isinstance(Payload, (bytes, str)) else json.dumps(Payload)
        return self.functions.invoke(FunctionName=FunctionName.rsplit(":", 1)[-1], InvocationType=InvocationType,
                                     Payload=payload.encode() if isinstance(payload, str) else payload)


LOST_HOST = "Host EC2 (instance i-0) terminated."
"""The status reason AWS Batch gives a job whose host went away (a reclaimed Spot instance)."""


class HostTerminated(BaseException):
    """Raised inside a job's command for its host being reclaimed mid-run (a Spot interruption): the child
    stops there, as if killed, and its job fails as Batch reports a lost host."""


class LocalBatch:
    """AWS Batch for the interpreter's ``submitJob.sync`` tasks. A job runs when it is submitted, with its
    job definition's environment (``definitions``: job definition name -> its variables, as the template
    sets them) and the task's overrides, each array child with ``AWS_BATCH_JOB_ARRAY_INDEX``. The job fails
    if a child exits non-zero, with the failed children as its reason; ``describe_jobs`` answers the status
    the ``.sync`` integration waits for. ``fail(name_part, attempts)`` makes the next ``attempts`` jobs whose
    name contains ``name_part`` fail before they start (a lost Spot host); a command that raises
    :class:`HostTerminated` loses its host while it runs."""

    def __init__(self, run: JobCommand, definitions: Mapping[str, Mapping[str, str]]) -> None:
        self.run = run
        self.definitions = definitions
        self.jobs: dict[str, dict[str, Any]] = {}
        self.submitted: list[dict[str, Any]] = []
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def fail(self, name_part: str, attempts: int = 1) -> None:
        self._failures[name_part] = attempts

    def submit_job(self, **params: Any) -> dict[str, Any]:
        p = {k[0].lower() + k[1:]: v for k, v in params.items()}
        overrides = {k[0].lower() + k[1:]: v for k, v in (p.get("containerOverrides") or {}).items()}
        command = list(overrides.get("command") or [])
        assert command[:3] == ["python", "-m", "bioims.jobs"], command
        assert p["jobDefinition"] in self.definitions, f"no job definition {p['jobDefinition']!r}"
        environment = {**self.definitions[p["jobDefinition"]],
                       **{e.get("name", e.get("Name")): e.get("value", e.get("Value"))
                          for e in overrides.get("environment") or []}}
        size = int({k.lower(): v for k, v in (p.get("arrayProperties") or {}).items()}.get("size") or 0)
        job = {"jobId": str(uuid.uuid4()), "jobName": p["jobName"], "jobQueue": p["jobQueue"],
               "jobDefinition": p["jobDefinition"], "command": command, "arraySize": size}
        self.submitted.append(job)
        status, reason = "SUCCEEDED", "Essential container in task exited"
        part = next((k for k in self._failures if k in p["jobName"] and self._failures[k] > 0), None)
        if part is not None:
            self._failures[part] -= 1
            status, reason = "FAILED", LOST_HOST
        else:
            failed = []  # every child runs (as on Batch); the job fails if any did
            for index in range(size or 1):
                child = {**environment, **({"AWS_BATCH_JOB_ARRAY_INDEX": str(index)} if size else {})}
                try:
                    with self._lock:  # a child's environment is this process's: one child at a time
                        code = self.run(command[3:], child)
                except HostTerminated:
                    failed.append(LOST_HOST)
                    continue
                if code != 0:
                    failed.append(f"child {index} exited with code {code}")
            if failed:
                status, reason = "FAILED", "; ".join(failed)
        self.jobs[job["jobId"]] = {**job, "status": status, "statusReason": reason}
        # the interpreter reads the submission as Step Functions reports it (JobId, ...)
        return {"JobId": job["jobId"], "JobName": job["jobName"], "JobArn": f"arn:aws:batch:job/{job['jobId']}"}

    def describe_jobs(self, jobs: list[str]) -> dict[str, Any]:
        return {"jobs": [{k: v for k, v in self.jobs[j].items() if k != "command"} for j in jobs if j in self.jobs]}


class _GatewayResponse:
    """What the interpreter reads of an API Gateway response (a ``requests.Response``'s attributes)."""

    def __init__(self, response: Any) -> None:
        # any 2XX succeeds on Step Functions; the interpreter (LocalStack's port) accepts only 200, and the
        # search API answers a build 201 Created
        self.status_code = 200 if 200 <= response.status_code < 300 else response.status_code
        self.text = response.text
        self.headers = {"Content-Length": response.headers.get("content-length", str(len(response.content))),
                        "Content-Type": response.headers.get("content-type", "application/json")}
        self._json = response.json

    def json(self) -> Any:
        return self._json()


class SearchGateway:
    """The interpreter's ``apigateway:invoke`` tasks (its ``requests`` calls): each request goes to the
    search service's real ASGI app in this process, at the task's ``Path`` (LocalStack's
    ``/_user_request_/`` prefix removed)."""

    def __init__(self, app: Any) -> None:
        from starlette.testclient import TestClient

        self.client = TestClient(app, base_url="http://127.0.0.1")

    def request(self, method: str, url: str, headers: Any = None, json: Any = None) -> _GatewayResponse:
        from urllib.parse import urlsplit

        path = "/" + urlsplit(url).path.split("_user_request_/", 1)[-1].strip("/")
        return _GatewayResponse(self.client.request(method.upper(), path, json=json))

    def __getattr__(self, method: str) -> Callable[..., _GatewayResponse]:
        if method in ("get", "post", "put", "patch", "delete"):
            return lambda url, headers=None, json=None: self.request(method, url, headers, json)
        raise AttributeError(method)


def in_process_job(monkeypatch: pytest.MonkeyPatch) -> JobCommand:
    """Runs ``python -m bioims.jobs ARGV`` in this process (inside the test's moto account) with the job's
    environment for its duration: its variables set, and no other ``BIOIMS_`` or ``AWS_BATCH_`` one (a
    container sees only what its job definition and the task give it)."""
    import os

    from bioims.jobs.__main__ import main

    def run(argv: list[str], environment: Mapping[str, str]) -> int:
        with monkeypatch.context() as m:
            for name in [n for n in os.environ if n.startswith(("BIOIMS_", "AWS_BATCH_"))]:
                m.delenv(name)
            for name, value in environment.items():
                m.setenv(name, value)
            return int(main(argv) or 0)

    return run


def _gateway_failure(self: Any, env: Any, ex: Exception) -> Any:
    """moto 5.2.5's API Gateway task failure, made with the ``env`` its FailureEvent needs (moto leaves it
    out, so a failed API call crashed the interpreter instead of failing the task): ``ApiGateway.<status>``
    with the response body, or ``ApiGateway.<exception>``."""
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    response = getattr(ex, "response", None)
    name = f"ApiGateway.{response.status_code}" if response is not None else f"ApiGateway.{type(ex).__name__}"
    cause = response.text if response is not None else str(ex)
    return FailureEvent(env=env, error_name=CustomErrorName(name), event_type=HistoryEventType.TaskFailed,
                        event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(
                            error=name, cause=cause, resource=self._get_sfn_resource(),
                            resourceType=self._get_sfn_resource_type())))


class _RethrownErrorName:
    """The error name of a Fail state whose ``Error`` comes from its input: a caught ``States.TaskFailed`` is
    re-raised under its own name, as Step Functions does (moto refuses any ``States.`` name there and ends the
    execution with an interpreter error instead)."""

    def __new__(cls, error_name: str | None) -> Any:
        from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName

        return ErrorName(error_name=error_name)


def _fresh_callback(evaluate: Callable[..., Any]) -> Callable[..., Any]:
    """Each attempt of a ``.sync`` task gets a callback endpoint of its own: moto makes one per state and
    interrupts it when an attempt ends, so every retry of a failed Batch job was reported at once as
    ``States.Timeout`` (the retry's job never ran)."""

    def attempt(self: Any, env: Any, *args: Any, **kwargs: Any) -> Any:
        if "Task" in env.states.context_object.context_object_data:
            env.callback_pool_manager.add(env.states.context_object.update_task_token())
        return evaluate(self, env, *args, **kwargs)

    return attempt


def offline_interpreter(monkeypatch: pytest.MonkeyPatch, functions: Any, batch: LocalBatch,
                        gateway: SearchGateway | None = None) -> list[float]:
    """Point moto's Step Functions interpreter at jsonata-python, the services' handlers, ``batch`` and
    (for the search API) ``gateway``, for this test. Returns the retry waits (seconds) the executions
    asked for: they are recorded, not slept."""
    import jsonata
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_batch
    from moto.stepfunctions.parser.asl.jsonata import jsonata as moto_jsonata

    monkeypatch.setattr(moto_jsonata, "_eval_jsonata", lambda expression: jsonata.Jsonata(expression).evaluate(None))
    lambda_client = InterpreterLambda(functions)
    default = lambda_eval_utils.boto_client_for
    monkeypatch.setattr(lambda_eval_utils, "boto_client_for",
                        lambda region, service, state_credentials=None: lambda_client if service == "lambda"
                        else default(region=region, service=service, state_credentials=state_credentials))
    monkeypatch.setattr(state_task_service_batch, "boto_client_for", lambda **_: batch)
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_callback
    from moto.stepfunctions.parser.asl.component.state.fail import state_fail

    callback = state_task_service_callback.StateTaskServiceCallback
    monkeypatch.setattr(callback, "_eval_integration_pattern", _fresh_callback(callback._eval_integration_pattern))
    monkeypatch.setattr(state_fail, "CustomErrorName", _RethrownErrorName)
    from types import SimpleNamespace

    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    waits: list[float] = []
    monkeypatch.setattr(retrier_decl, "time", SimpleNamespace(sleep=waits.append))
    if gateway is not None:
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
            state_task_service_api_gateway)

        monkeypatch.setattr(state_task_service_api_gateway, "requests", gateway)
        # moto 5.2.5: the API Gateway task names its credentials parameter task_credentials, and the
        # interpreter passes state_credentials= (every apigateway:invoke task fails without this)
        task = state_task_service_api_gateway.StateTaskServiceApiGateway
        evaluate = task._eval_service_task
        monkeypatch.setattr(task, "_from_error", _gateway_failure)
        # ... and keeps only ApiEndpoint and Method of the task's arguments: the documented ones all reach it
        monkeypatch.setattr(task, "_SUPPORTED_API_PARAM_BINDINGS", {"invoke": {
            "ApiEndpoint", "Method", "Headers", "Stage", "Path", "QueryParameters", "RequestBody", "AllowNullValues",
            "AuthType"}})
        monkeypatch.setattr(task, "_eval_service_task",
                            lambda self, env, resource_runtime_part, normalised_parameters, state_credentials=None:
                            evaluate(self, env, resource_runtime_part, normalised_parameters, state_credentials))
    return waits
