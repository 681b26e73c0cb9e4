"""infra/asl.py: the offline Amazon States Language checker finds what Step Functions would reject."""

from __future__ import annotations

import copy
import json

import pytest

from asl import check, check_file, main, placeholders

TASK = "arn:aws:states:::lambda:invoke"


def machine(**states):
    return {"StartAt": next(iter(states)), "States": states}


VALID = {
    "Comment": "a bit of everything",
    "StartAt": "Plan",
    "States": {
        "Plan": {"Type": "Task", "Resource": TASK, "Parameters": {"FunctionName": "${Fn}", "Payload.$": "$"},
                 "ResultPath": "$.plan",
                 "Retry": [{"ErrorEquals": ["Lambda.ServiceException"], "IntervalSeconds": 2, "MaxAttempts": 3,
                            "BackoffRate": 2.0, "JitterStrategy": "FULL"},
                           {"ErrorEquals": ["States.ALL"], "MaxAttempts": 1}],
                 "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}],
                 "Next": "Which"},
        "Which": {"Type": "Choice",
                  "Choices": [{"And": [{"Variable": "$.plan.n", "NumericGreaterThan": 1},
                                       {"Not": {"Variable": "$.plan.skip", "BooleanEquals": True}}],
                               "Next": "Each"}],
                  "Default": "Done"},
        "Each": {"Type": "Map", "ItemsPath": "$.plan.items", "MaxConcurrency": 4,
                 "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Job",
                                   "States": {"Job": {"Type": "Task",
                                                      "Resource": "arn:aws:states:::batch:submitJob.sync",
                                                      "Parameters": {"JobName": "j", "JobQueue": "${Queue}",
                                                                     "JobDefinition": "d"},
                                                      "End": True}}},
                 "Next": "Both"},
        "Both": {"Type": "Parallel", "Branches": [machine(A={"Type": "Pass", "End": True}),
                                                  machine(B={"Type": "Wait", "Seconds": 1, "End": True})],
                 "Next": "Done"},
        "Done": {"Type": "Succeed"},
        "Failed": {"Type": "Fail", "Error": "Failed", "Cause": "see the error"},
    },
}


def broken(mutate):
    definition = copy.deepcopy(VALID)
    mutate(definition)
    return check(definition)


def test_a_valid_definition_has_no_problems():
    assert check(VALID) == []
    assert check(VALID, substitutions=["Fn", "Queue"]) == []


def test_start_at_must_name_a_state():
    problems = broken(lambda d: d.update(StartAt="Nope"))
    assert any("StartAt 'Nope' is not a state" in p for p in problems)


def test_next_default_and_catch_targets_must_exist():
    assert any("Next 'Gone'" in p for p in broken(lambda d: d["States"]["Plan"].update(Next="Gone")))
    assert any("Default 'Gone'" in p for p in broken(lambda d: d["States"]["Which"].update(Default="Gone")))
    assert any("Catch[0]: Next 'Gone'" in p
               for p in broken(lambda d: d["States"]["Plan"]["Catch"][0].update(Next="Gone")))


def test_a_non_terminal_state_needs_next_or_end():
    problems = broken(lambda d: d["States"]["Both"].pop("Next"))
    assert any("Both: a Parallel state needs Next or End" in p for p in problems)
    problems = broken(lambda d: d["States"]["Both"].update(End=True))
    assert any("both Next and End" in p for p in problems)


def test_terminal_states_have_no_transition():
    problems = broken(lambda d: d["States"]["Done"].update(Next="Plan"))
    assert any("Done: unknown field(s) for a Succeed state: Next" in p for p in problems)


def test_unreachable_states_are_reported():
    problems = broken(lambda d: d["States"].update(Orphan={"Type": "Pass", "End": True}))
    assert any("'Orphan' is not reachable" in p for p in problems)


def test_task_resources_must_be_well_formed_arns():
    for bad in ("lambda:invoke", "arn:aws:states:::", "arn:aws:lambda:us-east-1:12:function:f", "arn:aws:s3:::b"):
        problems = broken(lambda d, bad=bad: d["States"]["Plan"].update(Resource=bad))
        assert any("is not a Lambda, activity or integration ARN" in p for p in problems), bad
    for good in ("arn:aws:lambda:us-east-1:123456789012:function:f:live", "arn:aws:states:::aws-sdk:s3:putObject",
                 "arn:aws:states:::ecs:runTask.waitForTaskToken", "arn:aws:states:::states:startExecution.sync:2",
                 "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${Name}"):
        assert broken(lambda d, good=good: d["States"]["Plan"].update(Resource=good)) == [], good


def test_retry_and_catch_shapes():
    def bad_retry(d):
        d["States"]["Plan"]["Retry"] = [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"], "BackoffRate": 0.5,
                                                                          "MaxAttempts": -1, "JitterStrategy": "SOME"}]
    problems = broken(bad_retry)
    assert any("States.ALL must appear alone, in the last entry" in p for p in problems)
    assert any("BackoffRate" in p for p in problems)
    assert any("MaxAttempts" in p for p in problems)
    assert any("JitterStrategy" in p for p in problems)
    assert any("ErrorEquals must be a non-empty list" in p
               for p in broken(lambda d: d["States"]["Plan"]["Catch"][0].update(ErrorEquals=[])))


def test_choice_rules():
    assert any("exactly one comparison" in p
               for p in broken(lambda d: d["States"]["Which"]["Choices"][0].pop("And")))
    assert any("a rule needs Next" in p
               for p in broken(lambda d: d["States"]["Which"]["Choices"][0].pop("Next")))
    assert any("Choices must be a non-empty list" in p
               for p in broken(lambda d: d["States"]["Which"].update(Choices=[])))


def test_map_and_parallel_nesting_is_checked_in_its_own_scope():
    def inner_next_to_outer(d):
        d["States"]["Each"]["ItemProcessor"]["States"]["Job"] = {"Type": "Pass", "Next": "Done"}
    assert any("Each/ItemProcessor/Job: Next 'Done' is not a state of this scope" in p
               for p in broken(inner_next_to_outer))
    assert any("Branches must be a non-empty list" in p
               for p in broken(lambda d: d["States"]["Both"].update(Branches=[])))
    assert any("Branches[1]: StartAt" in p
               for p in broken(lambda d: d["States"]["Both"]["Branches"][1].update(StartAt="Z")))
    assert any("needs an ItemProcessor" in p for p in broken(lambda d: d["States"]["Each"].pop("ItemProcessor")))


def test_jsonpath_and_jsonata_fields_do_not_mix():
    problems = broken(lambda d: d["States"]["Plan"].update(Arguments={"x": 1}))
    assert any("Arguments are not allowed in a JSONPath state" in p for p in problems)
    jsonata = machine(A={"Type": "Task", "Resource": TASK, "Parameters": {"x.$": "$"}, "End": True})
    jsonata["QueryLanguage"] = "JSONata"
    assert any("Parameters are not allowed in a JSONata state" in p for p in check(jsonata))


def test_jsonata_expressions_must_be_whole_and_balanced():
    def make(value):
        d = machine(A={"Type": "Pass", "Output": {"v": value}, "End": True})
        d["QueryLanguage"] = "JSONata"
        return check(d)
    assert make("{% $states.input.a %}") == []
    assert any("must be the whole string" in p for p in make("x {% $a %}"))
    assert any("unbalanced" in p for p in make("{% $count($a %}"))


def test_paths_must_start_with_dollar():
    assert any("must be a path" in p
               for p in broken(lambda d: d["States"]["Plan"]["Parameters"].update({"Payload.$": "input"})))
    assert any("a path must start with $" in p for p in broken(lambda d: d["States"]["Plan"].update(ResultPath="x")))


def test_substitutions_must_match_the_placeholders():
    assert placeholders(VALID) == {"Fn", "Queue"}
    problems = check(VALID, substitutions=["Fn", "Unused"])
    assert "placeholder ${Queue} has no DefinitionSubstitutions entry" in problems
    assert "DefinitionSubstitutions entry 'Unused' is not used" in problems


def test_check_file_and_cli(tmp_path, capsys):
    good, bad = tmp_path / "good.asl.json", tmp_path / "bad.asl.json"
    good.write_text(json.dumps(VALID))
    bad.write_text("{not json")
    assert check_file(good) == []
    assert "not valid JSON" in check_file(bad)[0]
    assert main([str(good)]) == 0
    assert main([str(good), str(bad)]) == 1
    assert "1 valid, 1 invalid" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["process-plate", "train", "embed"])
def test_the_project_state_machines_are_valid(name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "infra" / "statemachines" / f"{name}.asl.json"
    assert check_file(path) == []
