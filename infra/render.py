"""Render the templates' generated parts from the code, in place.

- In ``infra/*.yaml`` the statements of a role sit between the lines ``#policy <principal>`` and
  ``#end policy``; this replaces what is between them with ``permissions.policy_statements`` (infra/permissions.py).
- ``services/<service>/env.json``: the environment of its functions on this machine (``sam local invoke
  --env-vars``, ``make emulate SERVICE=``; :func:`emulate.env_file`).
- ``services/<service>/template.yaml``, each Lambda service's own SAM application, is written whole
  (:func:`service_template`): its tables (from its PynamoDB models), its role (its own tables, the
  functions it invokes), its log groups, and its functions and REST API (the nested
  ``build/package/<service>/sam.json`` of ``make package``), with the parameters it needs.

``tests/unit/test_template.py`` checks every role against ``infra/permissions.py`` independently and the
service templates against this render (so a stale render fails the tests, with a hint to run this).

    .venv/bin/python infra/render.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from typing import Any

import yaml

import emulate  # infra/emulate.py: the functions' environment on this machine
import package  # infra/package.py: what each service's functions are given
from bioims import runtime
from permissions import policy_statements
from bioims.settings import function_variable
from cloudformation import table_resources

INFRA = Path(__file__).resolve().parent
ROOT = INFRA.parent
_BEGIN = re.compile(r"^(?P<indent> *)#policy (?P<principal>[a-z-]+)\s*$")
_END = re.compile(r"^ *#end policy\s*$")


def render(text: str) -> str:
    out: list[str] = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        m = _BEGIN.match(line)
        i += 1
        if not m:
            continue
        while i < len(lines) and not _END.match(lines[i]):
            i += 1  # drop the previous render
        if i == len(lines):
            raise ValueError(f"#policy {m['principal']} without '#end policy'")
        block = yaml.safe_dump(policy_statements(m["principal"]), sort_keys=False, default_flow_style=False,
                               width=200)
        out.extend(m["indent"] + row + "\n" for row in block.splitlines())
    return "".join(out)


def _title(service: str) -> str:
    return "".join(part.title() for part in service.split("-"))


_PARAMETER_DOCS = {
    "InputBucket": ("The bucket holding the input images (read only)", None),
    "ProcessPlateStateMachine": ("ARN of the process-plate state machine (the root stack's StateMachines)", None),
    "TrainStateMachine": ("ARN of the train state machine (the root stack's StateMachines)", None),
    "EmbedStateMachine": ("ARN of the embed state machine (the root stack's StateMachines)", None),
}


def service_template(service: str) -> dict[str, Any]:
    """The SAM application of one Lambda service (see the module docstring)."""
    env = package.environment(service)
    tables = runtime.OWNED_TABLES[service]
    parameters: dict[str, Any] = {
        **({"Env": {"Type": "String", "AllowedValues": ["dev", "prod"], "Default": "dev",
                    "Description": "Tag of the tables (bioims:env)"}} if tables else {}),
        "Prefix": {"Type": "String", "AllowedPattern": "[a-z0-9-]+", "Default": "bioims-dev",
                   "Description": "Name prefix of functions, state machines and log groups (bioims-<env>)"},
        "TablePrefix": {"Type": "String", "AllowedPattern": "[A-Za-z0-9_.-]*", "Default": "bioims-dev-",
                        "Description": "Prefix of every table name (BIOIMS_TABLE_PREFIX)"},
        "ArtifactBucket": {"Type": "String", "Description": "The artifact bucket (the root stack's Data)"},
        "ArtifactPrefix": {"Type": "String", "AllowedPattern": "[A-Za-z0-9_.-]+", "Default": "bioims",
                           "Description": "Key prefix of stored objects (BIOIMS_ARTIFACT_URI = s3://<bucket>/<prefix>)"},
    }
    api_parameters: dict[str, Any] = {"Prefix": {"Ref": "Prefix"}, "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]}}
    for var, name in env.items():
        if name == "TablePrefix":
            api_parameters[name] = {"Ref": "TablePrefix"}
        elif name == "ArtifactUri":
            api_parameters[name] = {"Fn::Sub": "s3://${ArtifactBucket}/${ArtifactPrefix}"}
        elif name.endswith("Function"):
            callee = var.removeprefix("BIOIMS_FUNCTION_").lower().replace("_", "-")
            parameters[name] = {"Type": "String", "Default": f"bioims-dev-{callee}-invoke",
                                "Description": f"The {callee} service's invoke function ({var})"}
            api_parameters[name] = {"Ref": name}
        else:
            parameters[name] = {"Type": "String", "Description": f"{_PARAMETER_DOCS[name][0]} ({var})"}
            api_parameters[name] = {"Ref": name}
    if "InputBucket" not in parameters and "${InputBucket}" in str(policy_statements(service)):
        raise ValueError(f"{service}: its policy reads the input bucket but its functions are not given it")
    parameters["LogRetentionDays"] = {
        "Type": "Number", "Default": 30,
        "AllowedValues": [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653]}
    resources: dict[str, Any] = table_resources([runtime._load(tables)]) if tables else {}
    resources["Role"] = {
        "Type": "AWS::IAM::Role",
        "Metadata": {"bioims:principal": service},
        "Properties": {
            "Description": {"Fn::Sub": f"bioims {service} service (${{Prefix}}-{service}-api and -invoke)"},
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
            "Policies": [{"PolicyName": {"Fn::Sub": f"${{Prefix}}-{service}"},
                          "PolicyDocument": {"Version": "2012-10-17", "Statement": policy_statements(service)}}],
        },
    }
    for function in ("api", "invoke"):
        resources[f"{function.title()}LogGroup"] = {
            "Type": "AWS::Logs::LogGroup", "DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete",
            "Properties": {"LogGroupName": {"Fn::Sub": f"/aws/lambda/${{Prefix}}-{service}-{function}"},
                           "RetentionInDays": {"Ref": "LogRetentionDays"}}}
    resources["Api"] = {
        "Type": "AWS::Serverless::Application",
        "DependsOn": ["ApiLogGroup", "InvokeLogGroup"],
        "Properties": {"Location": f"../../build/package/{service}/sam.json", "Parameters": api_parameters},
    }
    if tables:
        resources["Api"]["DependsOn"] += sorted(k for k, v in resources.items() if v["Type"] == "AWS::DynamoDB::Table")
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": f"bioims {service} service: its tables, role, log groups, functions and REST API (IAM)",
        "Parameters": parameters,
        "Resources": resources,
        "Outputs": {
            "EndpointURL": {"Description": f"Base URL of the {service} API (IAM-signed requests)",
                            "Value": {"Fn::GetAtt": ["Api", "Outputs.EndpointURL"]}},
            "InvokeFunctionName": {"Description": f"The {service} invoke function ({function_variable(service)})",
                                   "Value": {"Fn::GetAtt": ["Api", "Outputs.InvokeFunctionName"]}},
            "RoleArn": {"Value": {"Fn::GetAtt": ["Role", "Arn"]}},
        },
    }


def service_template_text(service: str) -> str:
    """:func:`service_template` as the text of ``services/<service>/template.yaml``."""
    header = (f"# bioims {service} service: a SAM application that deploys alone (make deploy SERVICE={service} ENV=dev)\n"
              f"# or nested in ../../template.yaml ({_title(service)}Service). Generated by infra/render.py from the\n"
              f"# service's PynamoDB models, infra/permissions.py and infra/package.py: do not edit by hand.\n"
              f"# Its functions and REST API are build/package/{service}/sam.json (make package).\n")
    return header + yaml.safe_dump(service_template(service), sort_keys=False, default_flow_style=False, width=200)


def env_file_text(service: str) -> str:
    """``services/<service>/env.json``: :func:`emulate.env_file` as JSON."""
    return json.dumps(emulate.env_file(service), indent=2) + "\n"


def main() -> int:
    for path in sorted(INFRA.glob("*.yaml")):
        text = path.read_text()
        rendered = render(text)
        if rendered != text:
            path.write_text(rendered)
            print(f"rendered {path.relative_to(ROOT)}")
    for service in package.SERVICES:
        path = ROOT / "services" / service / "template.yaml"
        env = ROOT / "services" / service / "env.json"
        for target, text in ((path, service_template_text(service)), (env, env_file_text(service))):
            if not target.exists() or target.read_text() != text:
                target.write_text(text)
                print(f"rendered {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
