"""The deployment templates (``template.yaml`` + ``infra/*.yaml``), read offline.

- valid: cfn-lint with zero errors and warnings; the state machines valid Amazon States Language;
- the tables identical to the PynamoDB models; the artifact bucket encrypted, private, TLS only;
- least privilege: every role grants exactly what :mod:`permissions` (``infra/permissions.py``) says its principal's code
  calls (mapped to ARNs), no wildcard actions, ``*`` resources only for actions AWS cannot scope; the
  state machines' role exactly what their definitions call;
- wiring: every ``BIOIMS_*`` variable the templates set is read by :mod:`bioims.settings`, and the names
  the roles grant on (functions, state machines, log groups) are the names the templates create.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bioims import settings
from cloudformation import SHARED_STACK_TABLES, load_template, table_resources
from bioims import runtime
from bioims.store.tables import Database

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
ROOT_TEMPLATE = ROOT / "template.yaml"
NESTED = sorted(INFRA.glob("*.yaml"))
SERVICE_TEMPLATES = sorted((ROOT / "services").glob("*/template.yaml"))
TEMPLATES = [ROOT_TEMPLATE, *NESTED, *SERVICE_TEMPLATES]

sys.path.insert(0, str(INFRA))
import asl
import package
import permissions
import render

CONTRACT_VARIABLES = {
    "BIOIMS_RUNTIME", "BIOIMS_TABLE_PREFIX", "BIOIMS_ARTIFACT_URI", "BIOIMS_INPUT_BUCKET",
    "BIOIMS_SFN_PROCESS_PLATE_ARN", "BIOIMS_SFN_TRAIN_ARN", "BIOIMS_SFN_EMBED_ARN",
    "BIOIMS_BATCH_CPU_QUEUE", "BIOIMS_BATCH_GPU_QUEUE", "BIOIMS_BATCH_JOB_DEFINITION", "BIOIMS_SEARCH_URL",
    *(permissions.function_env_name(s) for s in permissions.SERVICES),
}
"""The environment of the Lambda functions: the contract between the templates and bioims.settings."""

# Resource ARNs with a wildcard that AWS requires (the ids are only known at run time), by pattern:
ALLOWED_WILDCARD_RESOURCES = (
    # S3 objects under the artifact prefix / in the input bucket: keys are made by the code
    re.compile(r"^arn:\$\{AWS::Partition\}:s3:::\$\{(ArtifactBucket)\}/\$\{ArtifactPrefix\}/\*$"),
    re.compile(r"^arn:\$\{AWS::Partition\}:s3:::\$\{InputBucket\}/\*$"),
    # executions of one named state machine: execution names are chosen when they start
    re.compile(r"^arn:\$\{AWS::Partition\}:states:\$\{AWS::Region\}:\$\{AWS::AccountId\}:execution:\$\{Prefix\}-[a-z-]+:\*$"),
    # Batch jobs that a .sync task may have to terminate: job ids are made by SubmitJob
    re.compile(r"^arn:\$\{AWS::Partition\}:batch:\$\{AWS::Region\}:\$\{AWS::AccountId\}:job/\*$"),
    # the log streams of one named log group: stream names are made by Lambda / ECS
    re.compile(r"^arn:\$\{AWS::Partition\}:logs:\$\{AWS::Region\}:\$\{AWS::AccountId\}:log-group:[^*]+:\*$"),
    # the reload route of the search API: {train_id} is a path parameter
    re.compile(r"^arn:\$\{AWS::Partition\}:execute-api:\$\{AWS::Region\}:\$\{AWS::AccountId\}:\$\{SearchApiId\}"
               r"/\$default/POST/indexes/\*/reload$"),
)


# ================================================================= helpers
@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, Any]]:
    """By name: ``data.yaml`` (infra/), ``services/tags/template.yaml``, ``template.yaml`` (the root)."""
    return {(str(p.relative_to(ROOT)) if p in SERVICE_TEMPLATES else p.name): load_template(p) for p in TEMPLATES}


def _sub_string(value: Any) -> str:
    """A resource value as the ``Fn::Sub`` string it stands for (``Ref X`` -> ``${X}``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return value["Fn::Sub"]
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return f"${{{value['Ref']}}}"
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    raise AssertionError(f"resource {value!r}: write it as a string, !Sub, !Ref or !GetAtt")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def roles(templates: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name, template in templates.items():
        for logical, resource in template.get("Resources", {}).items():
            if resource["Type"] == "AWS::IAM::Role":
                yield name, logical, resource


def allow_statements(role: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for policy in role["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow", statement
            yield statement


def granted_pairs(role: dict[str, Any]) -> set[tuple[str, str]]:
    return {(action, _sub_string(resource)) for s in allow_statements(role)
            for action in _as_list(s["Action"]) for resource in _as_list(s["Resource"])}


def principal_roles(templates: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    found: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for name, logical, role in roles(templates):
        principal = role.get("Metadata", {}).get("bioims:principal")
        if principal is not None:
            assert principal not in found, f"two roles for {principal}: {found[principal][:2]} and {(name, logical)}"
            found[principal] = (name, logical, role)
    return found


# ================================================================= validity
def test_every_template_passes_cfn_lint_without_warnings():
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    proc = subprocess.run([str(cfn_lint), *map(str, NESTED)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # warnings exit 4, errors 2
    # the root and service templates: the services' functions (build/package/) exist after `make package`
    for template in (ROOT_TEMPLATE, *SERVICE_TEMPLATES):
        proc = subprocess.run([str(cfn_lint), str(template)], capture_output=True, text=True)
        problems = [line for line in proc.stdout.splitlines() if line.strip()
                    and "Template file not found: " not in line and "/build/package/" not in line]
        assert proc.returncode == 0 or not problems, f"{template}: " + proc.stdout + proc.stderr


def test_state_machines_are_valid_amazon_states_language(templates):
    results = asl.check_template(INFRA / "statemachines.yaml")
    assert set(results) == {"ProcessPlateStateMachine", "TrainStateMachine", "EmbedStateMachine"}
    assert results == {name: [] for name in results}


def test_state_machines_pass_cfn_lint_state_language_schema(tmp_path, templates):
    """A second opinion: cfn-lint's own ASL schema (rule E3601), on the definitions inlined."""
    machines = templates["statemachines.yaml"]["Resources"]
    resources = {}
    for logical, resource in machines.items():
        if resource["Type"] != "AWS::Serverless::StateMachine":
            continue
        props = resource["Properties"]
        resources[logical] = {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
            "RoleArn": "arn:aws:iam::123456789012:role/states",
            "Definition": json.loads((INFRA / props["DefinitionUri"]).read_text()),
            "DefinitionSubstitutions": {k: "x" for k in props["DefinitionSubstitutions"]}}}
    path = tmp_path / "machines.json"
    path.write_text(json.dumps({"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources}))
    proc = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_policies_are_rendered_from_the_permissions():
    for path in NESTED:
        text = path.read_text()
        assert render.render(text) == text, f"{path.name} is stale: run .venv/bin/python infra/render.py"


@pytest.mark.parametrize("service", permissions.SERVICES)
def test_service_templates_are_rendered_from_the_code(service):
    path = ROOT / "services" / service / "template.yaml"
    assert path.read_text() == render.service_template_text(service), \
        f"{path.relative_to(ROOT)} is stale: run .venv/bin/python infra/render.py"


@pytest.mark.parametrize("service", permissions.SERVICES)
def test_a_service_template_deploys_its_service_alone(templates, service):
    """Its tables, its role, its functions; every parameter it needs has a default or comes from the root
    stack, which passes exactly the parameters it declares."""
    template = templates[f"services/{service}/template.yaml"]
    resources = template["Resources"]
    tables = {k for k, v in resources.items() if v["Type"] == "AWS::DynamoDB::Table"}
    owned = runtime.OWNED_TABLES[service]
    assert tables == (set(table_resources([runtime._load(owned)])) if owned else set())
    assert resources["Role"]["Metadata"]["bioims:principal"] == service
    api = resources["Api"]["Properties"]
    assert api["Location"] == f"../../build/package/{service}/sam.json"
    assert set(api["Parameters"]) == {"Prefix", "RoleArn", *package.environment(service).values()}
    required = {name for name, p in template["Parameters"].items() if "Default" not in p}
    assert required <= {"ArtifactBucket", "InputBucket", "ProcessPlateStateMachine", "TrainStateMachine",
                        "EmbedStateMachine"}
    root = templates["template.yaml"]["Resources"]
    nested = next(r for r in root.values() if r["Type"] == "AWS::Serverless::Application"
                  and r["Properties"]["Location"] == f"services/{service}/template.yaml")
    assert set(nested["Properties"]["Parameters"]) == set(template["Parameters"])


# ================================================================= data
def test_tables_in_the_templates_match_the_models(templates):
    """Every table once: a Lambda service's in its own template, the others in the data stack."""
    deployed: dict[str, Any] = {}
    for name, template in templates.items():
        for logical, resource in template.get("Resources", {}).items():
            if resource["Type"] == "AWS::DynamoDB::Table":
                assert logical not in deployed, f"{logical} is in two templates"
                deployed[logical] = resource
                assert name in ("data.yaml", *(f"services/{s}/template.yaml" for s in permissions.SERVICES)), name
    assert deployed == table_resources(runtime.table_sets().values())
    data = {k for k, v in templates["data.yaml"]["Resources"].items() if v["Type"] == "AWS::DynamoDB::Table"}
    assert data == set(table_resources([runtime.table_sets()[o] for o in SHARED_STACK_TABLES]))


def test_tables_are_on_demand_with_point_in_time_recovery(templates):
    for logical, table in [item for t in templates.values() for item in t.get("Resources", {}).items()]:
        if table["Type"] == "AWS::DynamoDB::Table":
            props = table["Properties"]
            assert props["BillingMode"] == "PAY_PER_REQUEST", logical
            assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, logical


def test_artifact_bucket_is_encrypted_private_and_tls_only(templates):
    resources = templates["data.yaml"]["Resources"]
    bucket = resources["ArtifactBucket"]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert all(bucket["PublicAccessBlockConfiguration"].values()) and len(bucket["PublicAccessBlockConfiguration"]) == 4
    (statement,) = resources["ArtifactBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_every_table_and_index_granted_exists_and_is_the_principals_own():
    """A service's role reaches only its own tables (a Batch job: those of its steps' services)."""
    database = Database("", client=object())
    owner, indexes = {}, {}
    for name, table_set in runtime.table_sets().items():
        for model in table_set(database).models():
            owner[model.Meta.table_name] = name
            indexes[model.Meta.table_name] = {gsi["index_name"] for gsi in model._get_schema()["global_secondary_indexes"]}
    own = {service: {service} for service in runtime.CALLS} | {"jobs": set(runtime.STEP_SERVICE.values())}
    for principal, grants in permissions.PERMISSIONS.items():
        for action, resources in grants.items():
            if not action.startswith("dynamodb:"):
                continue
            for resource in resources:
                table, _, index = resource.partition("/index/")
                assert table in owner, f"{principal}: {action} on unknown table {table!r}"
                assert owner[table] in own[principal], f"{principal}: {action} on {owner[table]}'s table {table!r}"
                if index:
                    assert index in indexes[table], f"{principal}: {action} on unknown index {resource!r}"
                    assert action in ("dynamodb:Query", "dynamodb:Scan"), f"{principal}: {action} on an index"


def test_each_role_invokes_exactly_the_services_it_calls():
    for service, callees in runtime.CALLS.items():
        invoked = set(permissions.PERMISSIONS[service].get("lambda:InvokeFunction", []))
        assert invoked <= set(callees), service


# ================================================================= least privilege
def test_every_role_is_a_principal_or_explained(templates):
    for name, logical, role in roles(templates):
        meta = role.get("Metadata", {})
        assert ("bioims:principal" in meta) != ("bioims:exempt" in meta), \
            f"{name} {logical}: needs Metadata bioims:principal (or bioims:exempt with the reason)"
        if "bioims:exempt" in meta:
            assert not role["Properties"].get("Policies"), f"{name} {logical}: an exempt role has no inline policy"


def test_every_principal_has_its_role(templates):
    found = principal_roles(templates)
    assert set(found) == set(permissions.PERMISSIONS) | set(permissions.PLATFORM_EXECUTION)
    assert all(found[s][0] == f"services/{s}/template.yaml" for s in permissions.SERVICES)
    assert found["jobs"][0] == "batch.yaml" and found["search"][0] == "search.yaml"
    assert found["states"][0] == "statemachines.yaml"


@pytest.mark.parametrize("principal", sorted({*permissions.PERMISSIONS, *permissions.PLATFORM_EXECUTION}))
def test_role_grants_exactly_the_permissions(templates, principal):
    name, logical, role = principal_roles(templates)[principal]
    granted = granted_pairs(role)
    expected = permissions.expected_pairs(principal)
    assert granted == expected, (
        f"{name} {logical} ({principal}): missing {sorted(expected - granted)}, extra {sorted(granted - expected)}"
        " -- run .venv/bin/python infra/render.py")


def test_no_wildcard_actions_and_star_resources_only_where_aws_requires(templates):
    for name, logical, role in roles(templates):
        for statement in allow_statements(role):
            for action in _as_list(statement["Action"]):
                assert "*" not in action and "?" not in action, f"{name} {logical}: wildcard action {action}"
            for resource in map(_sub_string, _as_list(statement["Resource"])):
                if resource == "*":
                    extra = set(_as_list(statement["Action"])) - permissions.STAR_ONLY
                    assert not extra, f"{name} {logical}: Resource * for {sorted(extra)} (they can be scoped)"
                elif "*" in resource:
                    assert any(p.match(resource) for p in ALLOWED_WILDCARD_RESOURCES), \
                        f"{name} {logical}: wildcard resource {resource}"


def test_star_only_actions_are_granted_only_on_star():
    for principal in {*permissions.PERMISSIONS, *permissions.PLATFORM_EXECUTION}:
        for action, resources in permissions.grants_of(principal).items():
            assert (resources == ["*"]) == (action in permissions.STAR_ONLY), (principal, action, resources)


def _definition_calls(definition: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(Resource, Arguments) of every Task of a definition, nested ones too."""
    for state in definition["States"].values():
        if state["Type"] == "Task":
            yield state["Resource"], state.get("Arguments", state.get("Parameters"))
        for branch in state.get("Branches", []):
            yield from _definition_calls(branch)
        if "ItemProcessor" in state:
            yield from _definition_calls(state["ItemProcessor"])


def test_states_role_grants_exactly_what_the_definitions_call(templates):
    """The state machines' code is their definitions: derive (action, symbolic resource) from them."""
    machines = templates["statemachines.yaml"]["Resources"]
    function_symbol = {}
    used: set[tuple[str, str]] = set()
    for resource in machines.values():
        if resource["Type"] != "AWS::Serverless::StateMachine":
            continue
        props = resource["Properties"]
        subs = props["DefinitionSubstitutions"]
        for key, value in subs.items():
            m = re.search(r":function:\$\{Prefix\}-([a-z-]+)-invoke$", _sub_string(value))
            if m:
                function_symbol[key] = m.group(1)
        definition = json.loads((INFRA / props["DefinitionUri"]).read_text())
        text = json.dumps(definition)
        for task, args in _definition_calls(definition):
            service_api = task.split(":::", 1)[1]
            if service_api == "lambda:invoke":
                used.add(("lambda:InvokeFunction", function_symbol[args["FunctionName"].strip("${}")]))
            elif service_api == "aws-sdk:s3:putObject":
                assert args["Bucket"] == "${ArtifactBucket}"
                used.add(("s3:PutObject", "artifacts"))
            elif service_api == "batch:submitJob.sync":
                used |= {("batch:SubmitJob", "cpu-queue" if "${CpuQueue}" in args else "gpu-queue"),
                         ("batch:SubmitJob", "job-definition" if "${JobDefinition}" in args else "gpu-job-definition"),
                         ("batch:DescribeJobs", "*"), ("batch:TerminateJob", "jobs"),
                         ("events:PutTargets", "batch-sync-rule"), ("events:PutRule", "batch-sync-rule"),
                         ("events:DescribeRule", "batch-sync-rule")}
            elif service_api == "apigateway:invoke":
                assert args["ApiEndpoint"] == "${SearchApiEndpoint}" and args["AuthType"] == "IAM_ROLE"
                path = "/indexes" if args["Path"] == "indexes" else "/indexes/*/reload"
                used.add(("execute-api:Invoke", f"search:{args['Method']} {path}"))
            else:
                raise AssertionError(f"a task the test does not know: {task}")
        assert "GpuQueue" not in text or "${GpuJobDefinition}" in text
    granted = {(a, r) for a, rs in permissions.PERMISSIONS["states"].items() for r in rs}
    assert used == granted


# ================================================================= wiring
def _container_environments(templates: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str]]:
    for name, template in templates.items():
        for logical, resource in template.get("Resources", {}).items():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::Batch::JobDefinition":
                for var in props["ContainerProperties"].get("Environment", []):
                    yield f"{name} {logical}", var["Name"]
            elif resource["Type"] == "AWS::ECS::TaskDefinition":
                for container in props["ContainerDefinitions"]:
                    for var in container.get("Environment", []):
                        yield f"{name} {logical}", var["Name"]


@pytest.mark.parametrize("service", permissions.SERVICES)
def test_functions_get_only_what_their_service_uses(service):
    """Its tables and objects, the input bucket if it reads input, the state machines it starts, the
    invoke functions of exactly the services it calls."""
    template = package.complete_template(_chalice_like_template(), service)
    functions = {settings.function_variable(callee) for callee in runtime.CALLS[service]}
    for logical in ("APIHandler", "Invoke"):
        variables = set(template["Resources"][logical]["Properties"]["Environment"]["Variables"])
        assert variables <= CONTRACT_VARIABLES, sorted(variables - CONTRACT_VARIABLES)
        assert {v for v in variables if v.startswith(settings.FUNCTION_PREFIX)} == functions
        assert {"BIOIMS_RUNTIME", "BIOIMS_TABLE_PREFIX", "BIOIMS_ARTIFACT_URI"} <= variables
        assert ("BIOIMS_INPUT_BUCKET" in variables) == (service in ("image-management", "training"))  # images; training filters
        starts = {settings.ENV_NAMES[need] for need in runtime.AWS_NEEDS[service]}
        assert {v for v in variables if v.startswith("BIOIMS_SFN_")} == starts


def test_every_variable_the_templates_set_is_read_by_the_settings(templates):
    read = set(settings.ENV_NAMES.values())
    functions = {settings.function_variable(s) for s in settings.FUNCTION_SERVICES}
    set_by_templates = {var for _, var in _container_environments(templates) if var.startswith("BIOIMS_")}
    for var in set_by_templates | CONTRACT_VARIABLES:
        assert var in read or var in functions, f"{var} is set by the templates but not read by bioims.settings"


def test_names_granted_on_are_the_names_created(templates):
    """Roles grant on names (functions, state machines, log groups); the templates create those names."""
    created: set[str] = set()
    for template in templates.values():
        for resource in template.get("Resources", {}).values():
            props = resource.get("Properties", {})
            for key in ("Name", "LogGroupName", "FunctionName"):
                if key in props:
                    created.add(_sub_string(props[key]))
    for service in permissions.SERVICES:  # the functions are made by the packaged stacks (infra/package.py)
        created |= {f"${{Prefix}}-{service}-api", f"${{Prefix}}-{service}-invoke"}
    for principal in {*permissions.PERMISSIONS, *permissions.PLATFORM_EXECUTION}:
        for action, arn in permissions.expected_pairs(principal):
            m = re.search(r":(?:function|stateMachine):(\$\{Prefix\}-[a-z-]+)$", arn) or \
                re.search(r":log-group:(.+):\*$", arn)
            if m:
                assert m.group(1) in created, f"{principal}: {action} on {arn}, but nothing named {m.group(1)}"


def test_function_names_match_the_settings_contract():
    template = package.complete_template(_chalice_like_template(), "image-management")
    names = {r: template["Resources"][r]["Properties"]["FunctionName"]["Fn::Sub"] for r in ("APIHandler", "Invoke")}
    assert names == {"APIHandler": "${Prefix}-image-management-api", "Invoke": "${Prefix}-image-management-invoke"}
    variables = template["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
    assert variables["BIOIMS_FUNCTION_TAGS"] == {"Ref": "TagsFunction"}


def test_service_apis_require_iam_authorisation():
    template = package.complete_template(_chalice_like_template(), "tags")
    body = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    assert body["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    for methods in body["paths"].values():
        for method, operation in methods.items():
            assert operation["security"] == [{"sigv4": []}], method


def test_search_api_requires_iam_authorisation(templates):
    routes = [r for r in templates["search.yaml"]["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Route"]
    assert routes and all(r["Properties"]["AuthorizationType"] == "AWS_IAM" for r in routes)
    lb = templates["search.yaml"]["Resources"]["LoadBalancer"]["Properties"]
    assert lb["Scheme"] == "internal"


def test_log_groups_have_retention(templates):
    for name, template in templates.items():
        for logical, resource in template.get("Resources", {}).items():
            if resource["Type"] == "AWS::Logs::LogGroup":
                assert "RetentionInDays" in resource["Properties"], f"{name} {logical}"


def _chalice_like_template() -> dict[str, Any]:
    """The shape of Chalice's ``sam.json`` (as `chalice package` 1.34 writes it), for the packaging code."""
    function = {"Runtime": "python3.12", "CodeUri": "./deployment.zip", "Timeout": 30, "MemorySize": 1024,
                "Environment": {"Variables": {"BIOIMS_RUNTIME": "aws"}}, "Role": "arn:aws:iam::123456789012:role/x"}
    integration = {"x-amazon-apigateway-integration": {"type": "aws_proxy", "httpMethod": "POST"}}
    return {"AWSTemplateFormatVersion": "2010-09-09", "Transform": "AWS::Serverless-2016-10-31",
            "Resources": {
                "APIHandler": {"Type": "AWS::Serverless::Function", "Properties": {**function, "Handler": "app.app"}},
                "Invoke": {"Type": "AWS::Serverless::Function", "Properties": {**function, "Handler": "app.invoke"}},
                "RestAPI": {"Type": "AWS::Serverless::Api", "Properties": {
                    "EndpointConfiguration": "EDGE", "StageName": "api",
                    "DefinitionBody": {"swagger": "2.0", "paths": {"/tags": {"get": dict(integration),
                                                                              "post": dict(integration)}}}}}},
            "Outputs": {"EndpointURL": {"Value": {"Fn::Sub": "https://${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/api/"}}}}


@pytest.mark.parametrize("service", permissions.SERVICES)
def test_deploying_one_service_alone_sets_every_parameter_of_its_template(service):
    """``make deploy SERVICE=<name>``: the root stack's outputs and samconfig.toml's overrides fill its template."""
    outputs = [{"OutputKey": "ArtifactBucketName", "OutputValue": "bioims-dev-artifacts-123"},
               *({"OutputKey": k, "OutputValue": f"arn:aws:states:us-east-1:123456789012:stateMachine:bioims-dev-{w}"}
                 for k, w in (("ProcessPlateStateMachine", "process-plate"), ("TrainStateMachine", "train"),
                              ("EmbedStateMachine", "embed")))]
    text = package.deploy_parameters(service, "dev", outputs, "Env=dev TablePrefix=bioims-dev- InputBucketName=hcs")
    given = dict(item.split("=", 1) for item in text.split())
    declared = load_template(ROOT / "services" / service / "template.yaml")["Parameters"]
    assert set(given) == set(declared)
    assert given["Prefix"] == "bioims-dev" and given["ArtifactBucket"] == "bioims-dev-artifacts-123"
    for callee in runtime.CALLS[service]:
        assert given[package.function_parameter(callee)] == f"bioims-dev-{callee}-invoke"
    with pytest.raises(SystemExit, match="no value for ArtifactBucket"):
        package.deploy_parameters(service, "dev", [], "")
