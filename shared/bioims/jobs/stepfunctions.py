"""The AWS runner: workflows are Step Functions state machines, one per workflow.

Each state machine (``process-plate``, ``train``, ``embed``; defined by the template) receives the
workflow's parameters as its input JSON and runs the same job steps as the local runner, as AWS Batch
jobs. An execution's id is its Step Functions execution ARN; :meth:`StepFunctionsRunner.describe`
answers in the shape of :meth:`bioims.jobs.runner.LocalRunner.describe`, so callers cannot tell the
runners apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, UTC
from typing import Any

from ..errors import InvalidInput, NotFound
from ..ids import new_id

MAX_INPUT_BYTES = 256 * 1024
"""Largest execution input Step Functions accepts (256 KiB of UTF-8)."""

_STATE_MACHINE_ARN = re.compile(r"^(arn:[^:]+:states:[^:]+:\d{12}):stateMachine:([^:]+)$")
_EXECUTION_ARN = re.compile(r"^(arn:[^:]+:states:[^:]+:\d{12}):execution:([^:]+):([^:]+)$")


class StepFunctionsRunner:
    """Starts and describes workflow executions on AWS Step Functions (the runner port).

    Parameters
    ----------
    client : botocore Step Functions client
        ``boto3.client("stepfunctions")``; calls ``StartExecution`` and ``DescribeExecution`` only.
    state_machine_arns : Mapping[str, str]
        Workflow name -> the ARN of the state machine that runs it (``{"process-plate":
        "arn:aws:states:...", ...}``; :attr:`bioims.settings.Settings.state_machine_arns`). Several
        workflows may share one (``preprocess`` runs on ``train``'s). Workflows not given cannot be
        started here, and executions of other state machines are unknown.

    Examples
    --------
    >>> runner = StepFunctionsRunner(boto3.client("stepfunctions"), settings.state_machine_arns)
    >>> arn = runner.start("process-plate", {"plate_id": "p1"})
    >>> runner.describe(arn)["status"]
    'RUNNING'
    """

    def __init__(self, client: Any, state_machine_arns: Mapping[str, str]) -> None:
        self._sfn = client
        self.state_machine_arns = dict(state_machine_arns)
        # (ARN prefix up to the account, state machine name) -> the workflows it runs
        self._workflows: dict[tuple[str, str], list[str]] = {}
        for workflow, arn in self.state_machine_arns.items():
            match = _STATE_MACHINE_ARN.match(arn)
            if match is None:
                raise InvalidInput(f"state machine ARN of {workflow!r} is not one: {arn!r}")
            self._workflows.setdefault((match.group(1), match.group(2)), []).append(workflow)

    def start(self, workflow: str, params: dict[str, Any]) -> str:
        """Start ``workflow`` with ``params`` as the execution's input; returns the execution ARN at once.

        The execution is named ``<workflow>-<new id>``: every call starts a new execution (Step Functions
        keeps names unique per state machine for 90 days, so a derived name would refuse a rerun).

        Raises
        ------
        InvalidInput
            ``workflow`` has no state machine here; ``params`` is not a JSON object or exceeds
            :data:`MAX_INPUT_BYTES`.
        """
        arn = self.state_machine_arns.get(workflow)
        if arn is None:
            known = ", ".join(self.state_machine_arns) or "none"
            raise InvalidInput(f"workflow {workflow!r} has no state machine in this runtime; known: {known}")
        if not isinstance(params, dict):
            raise InvalidInput(f"workflow parameters must be a JSON object, got {type(params).__name__}")
        try:
            document = json.dumps(params, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise InvalidInput(f"workflow parameters are not JSON: {e}") from None
        if len(document.encode()) > MAX_INPUT_BYTES:
            raise InvalidInput(f"workflow parameters of {len(document.encode())} bytes exceed Step Functions' "
                               f"input limit of {MAX_INPUT_BYTES} bytes")
        response = self._sfn.start_execution(stateMachineArn=arn, name=f"{workflow}-{new_id()}", input=document)
        return str(response["executionArn"])

    def describe(self, execution_id: str) -> dict[str, Any]:
        """``{"execution_id", "workflow", "params", "status", "output", "error", "started_at",
        "finished_at"}`` of an execution, as :meth:`~bioims.jobs.runner.LocalRunner.describe` (keys
        without a value left out). ``status`` is Step Functions' (``RUNNING``, ``SUCCEEDED``, ``FAILED``,
        ``TIMED_OUT``, ``ABORTED``, ``PENDING_REDRIVE``); ``error`` is ``"<error>: <cause>"``; times are
        ISO 8601 UTC strings.

        Raises
        ------
        InvalidInput
            ``execution_id`` is not a non-empty string.
        NotFound
            No such execution of this runner's state machines (an id that is not an execution ARN of
            one of them is not looked up).
        """
        if not isinstance(execution_id, str) or not execution_id:
            raise InvalidInput("execution id must be a non-empty string")
        match = _EXECUTION_ARN.match(execution_id)
        workflows = self._workflows.get((match.group(1), match.group(2)), []) if match else []
        if not match or not workflows:
            raise NotFound(f"no execution {execution_id!r}")
        # a state machine running several workflows (train, preprocess): the execution's name tells which
        named = [w for w in workflows if match.group(3).startswith(f"{w}-")]
        workflow = max(named, key=len) if named else workflows[0]
        try:
            execution = self._sfn.describe_execution(executionArn=execution_id)
        except self._sfn.exceptions.ExecutionDoesNotExist:
            raise NotFound(f"no execution {execution_id!r}") from None
        out: dict[str, Any] = {
            "execution_id": execution_id,
            "workflow": workflow,
            "params": _json_or_none(execution.get("input")),
            "status": execution["status"],
            "output": _json_or_none(execution.get("output")),
            "error": ": ".join(p for p in (execution.get("error"), execution.get("cause")) if p) or None,
            "started_at": _iso(execution.get("startDate")),
            "finished_at": _iso(execution.get("stopDate")),
        }
        return {key: value for key, value in out.items() if value is not None}


def _json_or_none(text: str | None) -> Any:
    """Decoded JSON of an execution's input or output (text that is not JSON is returned as is)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _iso(moment: datetime | None) -> str | None:
    """A timestamp as :func:`bioims.store.tables.to_dict` writes one: ``2024-01-31T12:00:00.000000Z``."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
