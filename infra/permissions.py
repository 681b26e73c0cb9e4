"""The AWS permissions of every bioims principal: the single source of truth for IAM.

:data:`PERMISSIONS` maps a principal to ``{"<service>:<Action>": [symbolic resources]}``. The deployment
templates grant exactly this (``tests/unit/test_template.py`` reads every role of ``template.yaml`` and
``infra/*.yaml`` and compares its (action, resource) pairs with :func:`resource_arns` of this mapping);
the code's tests record the AWS calls each operation makes (moto) and check them against it.
:data:`PLATFORM` holds what the platform itself needs to run a principal (logs, image pulls): granted
too, but not made by bioims code.

Principals
----------
``image-management``, ``artifact``, ``tags``, ``training``, ``embedding``
    The Lambda functions of the five Chalice apps (the API handler and the ``invoke`` function of one
    service share one role). Each app builds ITS service over ITS tables (:func:`bioims.runtime.aws`) and
    reaches the services it calls by invoking their ``invoke`` functions, so a role grants DynamoDB on
    exactly the service's own tables and ``lambda:InvokeFunction`` on exactly the functions it calls.
``search``
    The ECS Fargate task of the search server (:class:`bioims.services.search.SearchService`: its
    ``searches`` table, the objects, and invocations of the services it reads from).
``jobs``
    The AWS Batch job role: the steps of :data:`bioims.jobs.steps.STEPS` (inspect-image, validate-plate,
    thumbnails, flatfield, preprocess-image, train-model, embed-plate, build-index), each running as its
    service (:data:`bioims.runtime.STEP_SERVICE`), and reading the array parameters.
``states``
    The role of the Step Functions state machines (``infra/statemachines/*.asl.json``): planning calls
    to the service functions, Batch jobs (``.sync``), the array parameter lists written to S3 and the
    search service's reload of the new index builds through the search API.

Derivation
----------
Read from the code (``shared/bioims/services/<name>/``), method by method:

- DynamoDB, through PynamoDB: ``Model.get`` / ``refresh`` -> ``GetItem``; ``query`` -> ``Query`` (on the
  table, or ``"<table>/index/<name>"`` for ``Model.<index>.query``); ``scan`` -> ``Scan``; ``Model(...).save``
  (with or without a condition) -> ``PutItem``; ``update`` -> ``UpdateItem``; ``delete`` -> ``DeleteItem``;
  ``batch_write`` (saves and deletes) -> ``BatchWriteItem``; ``batch_get`` -> ``BatchGetItem``. PynamoDB 6
  takes the key schema from the model class, so nothing calls ``DescribeTable`` (only ``Tables.create_all``
  and ``exists`` do, which run locally, never on AWS). Table names are without the prefix
  (``image-tags``), as in each service's ``tables.py`` (``TableSet.table_names``).
- S3, through :class:`bioims.store.objects.ObjectStore`: ``get_bytes`` / ``get_json`` -> ``GetObject``;
  ``exists`` / ``size`` (HEAD) -> ``GetObject``; ``put_bytes`` / ``put_json`` -> ``PutObject``; ``delete`` ->
  ``DeleteObject``; ``list`` -> ``ListBucket``. ``ListBucket`` is also granted wherever a principal reads
  objects that may be missing (``exists``, ``NotFound``): without it S3 answers a missing key with 403
  instead of 404 and ``exists`` would raise. Buckets: ``"artifacts"`` (the artifact bucket, under the
  ``BIOIMS_ARTIFACT_URI`` prefix) and ``"input"`` (``BIOIMS_INPUT_BUCKET``, read only: input images are
  read in place; plate manifests may live there).
- Step Functions (the runner): ``start`` -> ``states:StartExecution`` (resource: a workflow's state
  machine), ``describe`` -> ``states:DescribeExecution`` (resource: that state machine's executions).
  The ``preprocess`` workflow has no state machine of its own: it is the first half of ``train`` (the
  ``train`` state machine with input ``{"spec", "plate_ids"}`` and no ``train_ids`` stops after
  preprocessing), so ``start_preprocess`` starts the ``train`` state machine.
- ``lambda:InvokeFunction``: the ``invoke`` function of a service (for cross-service calls and the
  state machines' planning steps).

Symbolic resources
------------------
========================  =====================================================================
``<table>``               ``arn:aws:dynamodb:<region>:<account>:table/<prefix><table>``
``<table>/index/<name>``  that table's global secondary index
``artifacts``, ``input``  the bucket (``ListBucket``) or its objects (object actions)
``<service>``             the ``invoke`` Lambda function of that service
``<workflow>``            the state machine (``StartExecution``) or its executions (``DescribeExecution``)
``cpu-queue``, ``gpu-queue``, ``job-definition``, ``gpu-job-definition``   Batch resources
``jobs``                  Batch jobs (``arn:aws:batch:<region>:<account>:job/*``: ids are not known)
``batch-sync-rule``       the EventBridge rule Step Functions manages for ``batch:submitJob.sync``
``search:<METHOD> <path>``  a route of the search API (``execute-api:Invoke``)
``*``                     only for actions without resource-level permissions (see :data:`STAR_ONLY`)
========================  =====================================================================
"""

from __future__ import annotations

Grants = dict[str, list[str]]

# ------------------------------------------------------------------------------------------ fragments
# One fragment per method (or group of methods) of the service classes; a principal is the union of
# the fragments of the code it runs. Keep each fragment next to the code it describes when that changes.


def _union(*fragments: Grants) -> Grants:
    out: dict[str, set[str]] = {}
    for fragment in fragments:
        for action, resources in fragment.items():
            out.setdefault(action, set()).update(resources)
    return {action: sorted(resources) for action, resources in sorted(out.items())}


_ARTIFACTS_READ_WRITE: Grants = {"s3:GetObject": ["artifacts"], "s3:PutObject": ["artifacts"],
                                 "s3:ListBucket": ["artifacts"]}
_ARTIFACTS_READ: Grants = {"s3:GetObject": ["artifacts"], "s3:ListBucket": ["artifacts"]}
_INPUT_READ: Grants = {"s3:GetObject": ["input"], "s3:ListBucket": ["input"]}


def _invokes(*services: str) -> Grants:
    """``lambda:InvokeFunction`` on the ``invoke`` functions of ``services`` (cross-service calls)."""
    return {"lambda:InvokeFunction": sorted(services)}


# ArtifactService (shared/bioims/services/artifact/): its own tables only
_ARTIFACT_SERVICE: Grants = {  # every operation of the artifact service
    "dynamodb:PutItem": ["artifacts", "parameters", "messages"],
    "dynamodb:GetItem": ["artifacts"],  # add_annotation
    "dynamodb:UpdateItem": ["artifacts"],  # add_annotation
    "dynamodb:Query": ["artifacts", "artifacts/index/by_train", "parameters", "messages"],
    "dynamodb:BatchWriteItem": ["artifacts", "messages"],  # delete_artifacts, delete_message
    "dynamodb:Scan": ["parameters"],  # get_all
    # create_describe_stacks_artifact: the account's stacks (DescribeStacks of every stack needs "*"),
    # stored in the artifact bucket
    "cloudformation:DescribeStacks": ["*"], "s3:PutObject": ["artifacts"],
}

# TagsService (shared/bioims/services/tags/): its own tables only
_TAGS_SERVICE: Grants = {
    "dynamodb:BatchGetItem": ["tags"],  # ensure_tags
    "dynamodb:UpdateItem": ["counters", "label-categories", "labels"],  # tag id allocation, label indices
    "dynamodb:PutItem": ["tags", "label-categories", "labels"],
    "dynamodb:GetItem": ["tags", "label-categories", "labels"],
    "dynamodb:BatchWriteItem": ["image-tags", "labels"],  # tag_images, remove_image_tags; delete_category
    "dynamodb:Query": ["image-tags", "image-tags/index/by_tag", "image-tags/index/by_plate", "labels",
                       "tags/index/by_id", "tags/index/by_type"],
    "dynamodb:Scan": ["tags", "label-categories"],
    "dynamodb:DeleteItem": ["label-categories", "labels"],  # delete_category; update_label (a rename)
}

# ImageManagementService and its preprocessing (shared/bioims/services/image_management/)
_IMAGES_READ: Grants = {"dynamodb:GetItem": ["images", "plates"], "dynamodb:BatchGetItem": ["images"],
                        "dynamodb:Query": ["images/index/by_plate"]}
_IMAGE_UNITS: Grants = _union(  # the job units: inspect, validate, thumbnails, flat-fields, crops
    _IMAGES_READ, _INPUT_READ, _ARTIFACTS_READ_WRITE,
    {"dynamodb:UpdateItem": ["images", "plates"], "dynamodb:PutItem": ["images"],
     "dynamodb:Query": ["plates/index/by_source"]},
    _invokes("artifact", "tags", "training"),  # messages, artifacts, thumbnail widths; labels; the spec
)
_IMAGE_MANAGEMENT_API: Grants = _union(
    _IMAGE_UNITS,
    {
        "dynamodb:PutItem": ["images", "plates"],  # ingest, create_image_train_result
        "dynamodb:BatchWriteItem": ["images", "wells"],  # ingest, create_image_train_results
        "dynamodb:Query": ["wells", "images/index/by_plate_well", "plates/index/by_shape"],
        "dynamodb:Scan": ["plates"],  # list_plates
        # inspect_plate, upload_source_plate -> process-plate; start_preprocess, process_plate -> train (see above)
        "states:StartExecution": ["process-plate", "train"],
        "states:DescribeExecution": ["process-plate", "train", "embed"],  # describe_execution
    },
)

# TrainingService (shared/bioims/services/training/)
_TRAIN_RUNS: Grants = {"dynamodb:GetItem": ["embedding-specs", "train-runs"]}
_TRAINING_API: Grants = _union(
    _TRAIN_RUNS, _invokes("artifact", "image-management"),  # records and logs; plates and fields
    {
        "dynamodb:PutItem": ["embedding-specs", "train-runs"],
        "dynamodb:Scan": ["embedding-specs"],
        "dynamodb:DeleteItem": ["embedding-specs", "train-runs"],
        "dynamodb:Query": ["train-runs/index/by_spec"],
        "dynamodb:UpdateItem": ["train-runs"],  # update_training
        # create_trainings writes the filter (reading a custom one from the store or the input bucket),
        # get_training_filter reads it, delete_training lists and deletes the run's objects
        "s3:PutObject": ["artifacts"], "s3:GetObject": ["artifacts", "input"], "s3:ListBucket": ["artifacts"],
        "s3:DeleteObject": ["artifacts"],
        "states:StartExecution": ["train"],  # train
    },
)
_RUN_TRAINING: Grants = _union(  # the train-model job step (torch): train, checkpoint, export, record
    _TRAIN_RUNS, _ARTIFACTS_READ_WRITE, {"dynamodb:UpdateItem": ["train-runs"]},
    _invokes("artifact", "image-management"),
)

# EmbeddingService (shared/bioims/services/embedding/): no table of its own
_EMBEDDING_API: Grants = _union(
    _ARTIFACTS_READ,  # list_plate_embeddings: which plates' tables exist
    _invokes("image-management", "training"),  # the field rows; the run and its plates
    {"states:StartExecution": ["embed"]},
)
_EMBED_PLATE: Grants = _union(  # the embed-plate job step (ONNX Runtime)
    _ARTIFACTS_READ_WRITE, _invokes("artifact", "image-management", "training"))

# SearchService (shared/bioims/services/search/) in the search container
_BUILD_INDEX: Grants = _union(  # build_index: the build-index job step too (the embed workflow's builds)
    _ARTIFACTS_READ_WRITE, _invokes("artifact", "embedding", "tags", "training"),
    {"s3:DeleteObject": ["artifacts"]},  # the previous version of the index
)
_SEARCH: Grants = _union(
    _BUILD_INDEX,
    {
        "s3:DeleteObject": ["artifacts"],  # delete_index
        "dynamodb:GetItem": ["searches"],
        "dynamodb:Query": ["searches/index/by_train"],
        "dynamodb:BatchWriteItem": ["searches"],  # the search log writer
    },
)

# the state machines (infra/statemachines/*.asl.json)
_STATES: Grants = {
    # planning steps: image ids / validation (image-management), runs, specs and plates (training)
    "lambda:InvokeFunction": ["image-management", "training"],
    "s3:PutObject": ["artifacts"],  # the parameter lists of the array jobs
    "batch:SubmitJob": ["cpu-queue", "gpu-queue", "job-definition", "gpu-job-definition"],  # every heavy step
    "batch:TerminateJob": ["jobs"],  # a .sync task that is stopped or times out
    "batch:DescribeJobs": ["*"],  # no resource-level permissions
    "events:PutTargets": ["batch-sync-rule"],
    "events:PutRule": ["batch-sync-rule"],
    "events:DescribeRule": ["batch-sync-rule"],
    "execute-api:Invoke": ["search:POST /indexes/*/reload"],  # the new builds swapped in
}

PERMISSIONS: dict[str, dict[str, list[str]]] = {
    "artifact": _union(_ARTIFACT_SERVICE),
    "tags": _union(_TAGS_SERVICE),
    "image-management": _IMAGE_MANAGEMENT_API,
    "training": _TRAINING_API,
    "embedding": _EMBEDDING_API,
    "search": _SEARCH,
    "jobs": _union(  # a Batch job runs as its step's service (bioims.runtime.STEP_SERVICE)
        _ARTIFACTS_READ,  # the array parameter list of a Batch array child
        _IMAGE_UNITS, _RUN_TRAINING, _EMBED_PLATE, _BUILD_INDEX,
    ),
    "states": _union(_STATES),
}
"""principal -> action -> symbolic resources (see the module docstring)."""

PLATFORM: dict[str, dict[str, list[str]]] = {
    **{service: {"logs:CreateLogStream": [f"log-group:{service}"], "logs:PutLogEvents": [f"log-group:{service}"]}
       for service in ("image-management", "artifact", "tags", "training", "embedding")},
    "search": {"logs:CreateLogStream": ["log-group:search"], "logs:PutLogEvents": ["log-group:search"]},
    "jobs": {},  # Batch writes the job logs with the execution role (see PLATFORM_EXECUTION)
    "states": {
        # CloudWatch Logs delivery of the execution history: none of these has resource-level permissions
        "logs:CreateLogDelivery": ["*"], "logs:GetLogDelivery": ["*"], "logs:UpdateLogDelivery": ["*"],
        "logs:DeleteLogDelivery": ["*"], "logs:ListLogDeliveries": ["*"], "logs:PutResourcePolicy": ["*"],
        "logs:DescribeResourcePolicies": ["*"], "logs:DescribeLogGroups": ["*"],
    },
}
"""What the platform needs to run each principal (not called by bioims code): its logs."""

PLATFORM_EXECUTION: dict[str, dict[str, list[str]]] = {
    # The ECS task execution roles (pull the image, write the container's logs) of the search task and of
    # the Batch jobs. ecr:GetAuthorizationToken has no resource-level permissions.
    "search-execution": {"ecr:GetAuthorizationToken": ["*"], "ecr:BatchGetImage": ["repository:search"],
                         "ecr:GetDownloadUrlForLayer": ["repository:search"],
                         "logs:CreateLogStream": ["log-group:search"], "logs:PutLogEvents": ["log-group:search"]},
    "jobs-execution": {"ecr:GetAuthorizationToken": ["*"], "ecr:BatchGetImage": ["repository:jobs"],
                       "ecr:GetDownloadUrlForLayer": ["repository:jobs"],
                       "logs:CreateLogStream": ["log-group:jobs"], "logs:PutLogEvents": ["log-group:jobs"]},
}
"""Execution roles: used by ECS / Batch to start a container, never by bioims code."""

STAR_ONLY: frozenset[str] = frozenset({
    "batch:DescribeJobs", "ecr:GetAuthorizationToken",
    "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
    "cloudformation:DescribeStacks",  # of every stack: a request naming no stack is authorised on "*"
})
"""Actions that AWS only authorises on ``Resource: "*"`` (no resource-level permissions, or the form of the
request bioims makes names no resource)."""

SERVICES: tuple[str, ...] = ("image-management", "artifact", "tags", "training", "embedding")
"""The Lambda services (principals with a role each)."""

WORKFLOWS: tuple[str, ...] = ("process-plate", "train", "embed")
"""The state machines (``BIOIMS_SFN_<WORKFLOW>_ARN``)."""


def function_env_name(service: str) -> str:
    """``image-management`` -> ``BIOIMS_FUNCTION_IMAGE_MANAGEMENT``."""
    return "BIOIMS_FUNCTION_" + service.upper().replace("-", "_")


def actions(principal: str) -> set[str]:
    """The actions a principal's code may call (``{"dynamodb:GetItem", ...}``)."""
    return set(PERMISSIONS[principal])


def tables(principal: str) -> set[str]:
    """The tables (without prefix and index) a principal touches."""
    return {r.split("/")[0] for a, rs in PERMISSIONS[principal].items() if a.startswith("dynamodb:") for r in rs}


# ------------------------------------------------------------------------------------- to CloudFormation
_P = "arn:${AWS::Partition}"
_RA = "${AWS::Region}:${AWS::AccountId}"


def arns(action: str, resource: str) -> list[str]:
    """The ARN(s) (CloudFormation ``Fn::Sub`` strings) of a symbolic resource for an action.

    The names in ``${...}`` are the parameters (or resources) every bioims stack that holds a role
    defines: ``TablePrefix``, ``ArtifactBucket``, ``ArtifactPrefix``, ``InputBucket``, ``Prefix`` (the
    name prefix of functions, state machines and log groups, ``bioims-<env>``), ``CpuQueue``,
    ``GpuQueue``, ``JobDefinition``, ``GpuJobDefinition`` (ARNs), ``SearchApiId``, ``JobsRepository``,
    ``SearchRepository``.
    """
    service = action.split(":", 1)[0]
    if resource == "*":
        return ["*"]
    if service == "dynamodb":
        table, _, index = resource.partition("/index/")
        arn = f"{_P}:dynamodb:{_RA}:table/${{TablePrefix}}{table}"
        return [f"{arn}/index/{index}" if index else arn]
    if service == "s3":
        bucket = {"artifacts": "${ArtifactBucket}", "input": "${InputBucket}"}[resource]
        if action == "s3:ListBucket":
            return [f"{_P}:s3:::{bucket}"]
        return [f"{_P}:s3:::{bucket}/${{ArtifactPrefix}}/*" if resource == "artifacts" else f"{_P}:s3:::{bucket}/*"]
    if service == "lambda":
        return [f"{_P}:lambda:{_RA}:function:${{Prefix}}-{resource}-invoke"]
    if service == "states":
        if action == "states:DescribeExecution":
            return [f"{_P}:states:{_RA}:execution:${{Prefix}}-{resource}:*"]
        return [f"{_P}:states:{_RA}:stateMachine:${{Prefix}}-{resource}"]
    if service == "batch":
        named = {"cpu-queue": "${CpuQueue}", "gpu-queue": "${GpuQueue}", "job-definition": "${JobDefinition}",
                 "gpu-job-definition": "${GpuJobDefinition}", "jobs": f"{_P}:batch:{_RA}:job/*"}
        return [named[resource]]
    if service == "events" and resource == "batch-sync-rule":
        return [f"{_P}:events:{_RA}:rule/StepFunctionsGetEventsForBatchJobsRule"]
    if service == "execute-api":
        api, _, route = resource.partition(":")
        method, _, path = route.partition(" ")
        assert api == "search", resource
        return [f"{_P}:execute-api:{_RA}:${{SearchApiId}}/$default/{method}{path}"]
    if service == "logs" and resource.startswith("log-group:"):
        owner = resource.split(":", 1)[1]
        if owner in SERVICES:
            names = [f"/aws/lambda/${{Prefix}}-{owner}-api", f"/aws/lambda/${{Prefix}}-{owner}-invoke"]
        else:
            names = [f"/${{Prefix}}/{owner}"]
        return [f"{_P}:logs:{_RA}:log-group:{name}:*" for name in names]
    if service == "ecr" and resource.startswith("repository:"):
        repo = {"jobs": "${JobsRepository}", "search": "${SearchRepository}"}[resource.split(":", 1)[1]]
        return [f"{_P}:ecr:{_RA}:repository/{repo}"]
    raise ValueError(f"no ARN for {action} on {resource!r}")


def grants_of(principal: str) -> dict[str, list[str]]:
    """Everything a principal's role grants: :data:`PERMISSIONS` plus :data:`PLATFORM` (or, for an
    execution role, :data:`PLATFORM_EXECUTION`)."""
    if principal in PLATFORM_EXECUTION:
        return _union(PLATFORM_EXECUTION[principal])
    return _union(PERMISSIONS[principal], PLATFORM.get(principal, {}))


def expected_pairs(principal: str) -> set[tuple[str, str]]:
    """The (action, ARN template) pairs a principal's role must grant, exactly."""
    return {(action, arn) for action, resources in grants_of(principal).items()
            for resource in resources for arn in arns(action, resource)}


def policy_statements(principal: str) -> list[dict[str, object]]:
    """IAM statements granting exactly :func:`expected_pairs` (one statement per set of actions that
    share their resources), in the form the templates hold them."""
    by_resources: dict[tuple[str, ...], list[str]] = {}
    for action, resources in grants_of(principal).items():
        key = tuple(sorted(arn for r in resources for arn in arns(action, r)))
        by_resources.setdefault(key, []).append(action)
    statements: list[dict[str, object]] = []
    for resources, actions_ in sorted(by_resources.items(), key=lambda kv: sorted(kv[1])):
        resource_values: list[object] = ["*" if r == "*" else ({"Fn::Sub": r} if "${" in r else r) for r in resources]
        statements.append({"Effect": "Allow", "Action": sorted(actions_),
                           "Resource": resource_values[0] if len(resource_values) == 1 else resource_values})
    return statements


if __name__ == "__main__":  # python infra/permissions.py PRINCIPAL  -> the Statement list of its role (YAML)
    import sys

    import yaml

    for name in sys.argv[1:] or [*PERMISSIONS, *PLATFORM_EXECUTION]:
        print(f"# {name}")
        print(yaml.safe_dump(policy_statements(name), sort_keys=False, default_flow_style=False), end="")
