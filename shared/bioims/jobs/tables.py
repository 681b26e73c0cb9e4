"""The local job runner's table: workflow executions (on AWS, Step Functions keeps them)."""

from __future__ import annotations

from pynamodb.attributes import JSONAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.models import Model

from ..contract.enums import ExecutionStatus
from ..store.tables import TableSet


class Execution(Model):
    """A workflow execution (local runner; on AWS the Step Functions execution ARN is the id)."""

    execution_id = UnicodeAttribute(hash_key=True)
    workflow = UnicodeAttribute()
    params = JSONAttribute(null=True)
    status = UnicodeAttribute(default=ExecutionStatus.RUNNING)
    output = JSONAttribute(null=True)
    error = UnicodeAttribute(null=True)
    started_at = UTCDateTimeAttribute(null=True)
    finished_at = UTCDateTimeAttribute(null=True)


class RunnerTables(TableSet):
    """The tables this owner alone reads and writes."""

    MODELS = {"executions": Execution}
    executions: type[Execution]
