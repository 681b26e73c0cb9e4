"""infra/asl.py: a state machine's placeholders, then asl-validator, moto's ASL parser and the States.ALL
rule, find what Step Functions would reject before a deployment."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from asl import check, check_template, main

VALID: dict[str, Any] = {
    "QueryLanguage": "JSONata",
    "StartAt": "Plan",
    "States": {
        "Plan": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                 "Arguments": {"FunctionName": "${Fn}", "Payload": "{% {'plate': $states.input.plate} %}"},
                 "Assign": {"items": "{% $states.result.Payload.items %}"},
                 "Retry": [{"ErrorEquals": ["Lambda.ServiceException"], "MaxAttempts": 3},
                           {"ErrorEquals": ["States.ALL"], "MaxAttempts": 1}],
                 "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed"}],
                 "Next": "Job"},
        "Job": {"Type": "Task", "Resource": "arn:aws:states:::batch:submitJob.sync",
                "Arguments": {"JobName": "j", "JobQueue": "${Queue}", "JobDefinition": "d",
                              "ArrayProperties": {"Size": "{% $count($items) %}"}},
                "Next": "Done"},
        "Done": {"Type": "Succeed"},
        "Failed": {"Type": "Fail", "Error": "{% $states.input.Error %}", "Cause": "{% $states.input.Cause %}"},
    },
}
GIVEN = {"Fn": "arn:aws:lambda:us-east-1:123456789012:function:f", "Queue": "cpu"}


def problems_of(mutate: Callable[[dict[str, Any]], None]) -> list[str]:
    definition = copy.deepcopy(VALID)
    mutate(definition)
    return check(json.dumps(definition), GIVEN)


def test_a_valid_definition_has_no_problems() -> None:
    assert check(json.dumps(VALID), GIVEN) == []


def test_a_definition_that_is_not_json_is_one_problem() -> None:
    assert check('{"StartAt": "A", ', {})[0].startswith("not valid JSON: ")


def test_substitutions_must_match_the_placeholders() -> None:
    problems = check(json.dumps(VALID), {"Fn": "f", "Unused": "x"})
    assert problems == ["placeholder ${Queue} has no substitution", "substitution Unused is not used"]


@pytest.mark.parametrize("mutate, found", [
    (lambda d: d["States"]["Job"].update(Next="Nowhere"), "Missing 'StartAt'|'Next'|'Default' target: Nowhere"),
    (lambda d: d["States"].update(Orphan={"Type": "Pass", "End": True}), "State Orphan is not reachable"),
    (lambda d: d["States"]["Plan"]["Arguments"].update(Payload="{% {'plate': } %}"), "/States/Plan/Arguments"),
    (lambda d: d["States"]["Done"].update(OutputPath="$.x"), "/States/Done"),  # a JSONPath field, JSONata state
], ids=["missing-target", "unreachable", "jsonata-syntax", "jsonpath-field"])
def test_asl_validator_finds_schema_transition_and_expression_errors(mutate: Callable[..., None], found: str) -> None:
    problems = problems_of(mutate)
    assert any(p.startswith("asl-validator: ") and found in p for p in problems), problems


def test_the_interpreters_parser_refuses_states_all_beside_other_errors() -> None:
    problems = problems_of(lambda d: d["States"]["Plan"]["Catch"][0].update(ErrorEquals=["States.ALL", "X"]))
    assert any(p.startswith("the interpreter's parser: States.ALL must appear alone") for p in problems), problems


def test_states_all_must_be_the_last_retrier() -> None:
    assert problems_of(lambda d: d["States"]["Plan"]["Retry"].reverse()) == [
        "Plan.Retry: States.ALL must be the last entry"]


def test_template_substitutions_are_resolved_with_example_values(tmp_path: Any, capsys: Any) -> None:
    """A template's DefinitionSubstitutions (!Ref a parameter, !Sub with pseudo parameters) fill the
    definition; main prints a line per state machine and fails when one is invalid."""
    (tmp_path / "good.asl.json").write_text(json.dumps(VALID))
    bad = copy.deepcopy(VALID)
    bad["States"]["Job"]["Next"] = "Nowhere"
    (tmp_path / "bad.asl.json").write_text(json.dumps(bad))
    (tmp_path / "template.yaml").write_text("""\
Transform: AWS::Serverless-2016-10-31
Parameters:
  Queue: {Type: String, Default: cpu}
Resources:
  Good:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: good.asl.json
      DefinitionSubstitutions:
        Fn: !Sub 'arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:f'
        Queue: !Ref Queue
  Bad:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: bad.asl.json
      DefinitionSubstitutions: {Fn: f, Queue: !Ref Queue}
""")
    results = check_template(tmp_path / "template.yaml")
    assert results["Good"] == [] and any("Nowhere" in p for p in results["Bad"])
    assert main([str(tmp_path / "template.yaml")]) == 1
    out = capsys.readouterr().out
    assert "Good: valid Amazon States Language" in out and "Bad: INVALID" in out
