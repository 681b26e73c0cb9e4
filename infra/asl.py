"""A structural checker of Amazon States Language (ASL) definitions, offline.

``make validate`` runs it on every state machine of ``infra/statemachines/``: what Step Functions would
reject when the stack is created (or what would only fail at run time) is found before a deployment.

Checked
-------
- the machine: ``StartAt`` names a state; ``States`` is a non-empty object; known top-level fields;
  ``QueryLanguage`` ``JSONPath`` (default) or ``JSONata``; every state reachable from ``StartAt``;
- each state: a known ``Type`` and only the fields that type allows (JSONPath-only fields such as
  ``Parameters`` / ``ResultPath`` are rejected in JSONata states, ``Arguments`` / ``Output`` in JSONPath
  ones); names of at most 80 characters;
- transitions: every non-terminal state has exactly one of ``Next`` or ``End: true``; ``Next``,
  ``Default`` and ``Catch[].Next`` name states of the same scope; ``Succeed`` / ``Fail`` have neither;
  ``Choice`` has non-empty ``Choices`` with a ``Next`` each and a rule (a comparison, ``And`` / ``Or`` /
  ``Not``, or a JSONata ``Condition``);
- ``Retry`` / ``Catch``: lists of objects with a non-empty ``ErrorEquals`` of strings,
  ``States.ALL`` alone and last, numeric fields in range, known ``JitterStrategy``;
- ``Task``: ``Resource`` is a well-formed ARN (a Lambda function, an activity, an optimized
  integration ``arn:aws:states:::service:api[.sync[:2]|.waitForTaskToken]``, or an AWS SDK integration
  ``arn:aws:states:::aws-sdk:service:action``); timeouts positive;
- ``Map`` (``ItemProcessor`` or legacy ``Iterator``) and ``Parallel`` (``Branches``): their nested
  machines are checked the same way, in their own scope;
- paths (``InputPath``, ``ResultPath``, ``"key.$"`` values) start with ``$`` (or are intrinsic
  functions); JSONata expressions are ``{% ... %}`` with nothing outside the braces;
- ``${Name}`` placeholders (SAM/CloudFormation ``DefinitionSubstitutions``) are all provided, when
  the substitutions are given.

Example
-------
>>> check({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})
[]
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["check", "check_file", "placeholders", "ASLError"]

STATE_TYPES = ("Task", "Pass", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map")
QUERY_LANGUAGES = ("JSONPath", "JSONata")

_COMMON = {"Type", "Comment", "QueryLanguage"}
_JSONPATH_IO = {"InputPath", "OutputPath"}
_JSONPATH_RESULT = {"Parameters", "ResultSelector", "ResultPath"}
_JSONATA_IO = {"Output", "Assign"}
_FLOW = {"Next", "End"}

# fields of each state type beyond the common ones, for each query language
_FIELDS: dict[str, dict[str, set[str]]] = {
    "Pass": {"JSONPath": _JSONPATH_IO | {"Parameters", "ResultPath", "Result", "Assign"} | _FLOW,
             "JSONata": _JSONATA_IO | _FLOW},
    "Task": {"JSONPath": _JSONPATH_IO | _JSONPATH_RESULT | _FLOW | {
                 "Resource", "Retry", "Catch", "TimeoutSeconds", "TimeoutSecondsPath", "HeartbeatSeconds",
                 "HeartbeatSecondsPath", "Credentials", "Assign"},
             "JSONata": _JSONATA_IO | _FLOW | {"Resource", "Arguments", "Retry", "Catch", "TimeoutSeconds",
                                               "HeartbeatSeconds", "Credentials"}},
    "Choice": {"JSONPath": _JSONPATH_IO | {"Choices", "Default", "Assign"},
               "JSONata": _JSONATA_IO | {"Choices", "Default"}},
    "Wait": {"JSONPath": _JSONPATH_IO | _FLOW | {"Seconds", "Timestamp", "SecondsPath", "TimestampPath", "Assign"},
             "JSONata": _JSONATA_IO | _FLOW | {"Seconds", "Timestamp"}},
    "Succeed": {"JSONPath": _JSONPATH_IO, "JSONata": {"Output"}},
    "Fail": {"JSONPath": {"Error", "Cause", "ErrorPath", "CausePath"}, "JSONata": {"Error", "Cause"}},
    "Parallel": {"JSONPath": _JSONPATH_IO | _JSONPATH_RESULT | _FLOW | {"Branches", "Retry", "Catch", "Assign"},
                 "JSONata": _JSONATA_IO | _FLOW | {"Branches", "Retry", "Catch", "Arguments"}},
    "Map": {"JSONPath": _JSONPATH_IO | _JSONPATH_RESULT | _FLOW | {
                "ItemProcessor", "Iterator", "ItemsPath", "ItemSelector", "ItemReader", "ItemBatcher",
                "ResultWriter", "MaxConcurrency", "MaxConcurrencyPath", "ToleratedFailurePercentage",
                "ToleratedFailurePercentagePath", "ToleratedFailureCount", "ToleratedFailureCountPath", "Label",
                "Retry", "Catch", "Assign"},
            "JSONata": _JSONATA_IO | _FLOW | {
                "ItemProcessor", "Items", "ItemSelector", "ItemReader", "ItemBatcher", "ResultWriter",
                "MaxConcurrency", "ToleratedFailurePercentage", "ToleratedFailureCount", "Label", "Retry",
                "Catch", "Arguments"}},
}
_TOP_LEVEL = {"StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"}
_NESTED_TOP_LEVEL = {"StartAt", "States", "Comment", "ProcessorConfig", "QueryLanguage"}

_COMPARISONS = {
    f"{kind}{op}{suffix}"
    for kind in ("String", "Numeric", "Timestamp")
    for op in ("Equals", "LessThan", "GreaterThan", "LessThanEquals", "GreaterThanEquals")
    for suffix in ("", "Path")
} | {"BooleanEquals", "BooleanEqualsPath", "StringMatches", "IsNull", "IsPresent", "IsNumeric", "IsString",
     "IsBoolean", "IsTimestamp"}

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.:]+)\}")
_ARN_PARTITION = r"arn:(?:aws|aws-cn|aws-us-gov|\$\{AWS::Partition\})"
_REGION = r"(?:[a-z]{2}(?:-gov)?-[a-z]+-\d|\$\{AWS::Region\})"
_ACCOUNT = r"(?:\d{12}|\$\{AWS::AccountId\})"
_NAME = r"[A-Za-z0-9_.${}:-]+"
_RESOURCE_PATTERNS = (
    # optimized integrations: arn:aws:states:::batch:submitJob.sync, lambda:invoke, apigateway:invoke, ...
    re.compile(rf"^{_ARN_PARTITION}:states:::[a-z0-9-]+:[A-Za-z0-9]+(?:\.sync(?::2)?|\.waitForTaskToken)?$"),
    # AWS SDK integrations: arn:aws:states:::aws-sdk:s3:putObject
    re.compile(rf"^{_ARN_PARTITION}:states:::aws-sdk:[a-z0-9]+:[a-z][A-Za-z0-9]*(?:\.waitForTaskToken)?$"),
    # HTTP task
    re.compile(rf"^{_ARN_PARTITION}:states:::http:invoke$"),
    # a Lambda function (optionally with a version or alias) or an activity
    re.compile(rf"^{_ARN_PARTITION}:lambda:{_REGION}:{_ACCOUNT}:function:{_NAME}$"),
    re.compile(rf"^{_ARN_PARTITION}:states:{_REGION}:{_ACCOUNT}:activity:{_NAME}$"),
)
_JITTER = ("FULL", "NONE")


class ASLError(ValueError):
    """A definition that Step Functions would reject; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def placeholders(value: Any) -> set[str]:
    """The ``${Name}`` placeholders used anywhere in a definition (keys and values)."""
    found: set[str] = set()
    if isinstance(value, str):
        found.update(_PLACEHOLDER.findall(value))
    elif isinstance(value, Mapping):
        for k, v in value.items():
            found |= placeholders(k) | placeholders(v)
    elif isinstance(value, list):
        for v in value:
            found |= placeholders(v)
    return {name for name in found if not name.startswith("AWS::")}


def check(definition: Any, substitutions: Iterable[str] | None = None) -> list[str]:
    """Every problem of a state machine definition (an empty list when it is valid).

    Parameters
    ----------
    definition : dict
        The parsed ASL document.
    substitutions : iterable of str, optional
        The names given as ``DefinitionSubstitutions``; when given, every ``${Name}`` used must be one,
        and every one given must be used.
    """
    problems: list[str] = []
    if not isinstance(definition, Mapping):
        return [f"the definition must be a JSON object, not {type(definition).__name__}"]
    language = definition.get("QueryLanguage", "JSONPath")
    if language not in QUERY_LANGUAGES:
        problems.append(f"QueryLanguage must be one of {', '.join(QUERY_LANGUAGES)}, not {language!r}")
        language = "JSONPath"
    unknown = set(definition) - _TOP_LEVEL
    if unknown:
        problems.append(f"unknown top-level field(s): {', '.join(sorted(unknown))}")
    if "TimeoutSeconds" in definition and not _positive_int(definition["TimeoutSeconds"]):
        problems.append("TimeoutSeconds must be a positive integer")
    _check_machine(definition, "", language, problems)
    if substitutions is not None:
        given = set(substitutions)
        used = placeholders(definition)
        for name in sorted(used - given):
            problems.append(f"placeholder ${{{name}}} has no DefinitionSubstitutions entry")
        for name in sorted(given - used):
            problems.append(f"DefinitionSubstitutions entry {name!r} is not used")
    return problems


def check_file(path: str | Path, substitutions: Iterable[str] | None = None) -> list[str]:
    """:func:`check` of a ``.asl.json`` file (a JSON syntax error is a problem too)."""
    try:
        definition = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        return [f"{path}: not valid JSON: {e}"]
    return [f"{path}: {p}" for p in check(definition, substitutions)]


# ----------------------------------------------------------------------------------------------- machine
def _check_machine(machine: Mapping[str, Any], where: str, language: str, problems: list[str]) -> None:
    states = machine.get("States")
    start = machine.get("StartAt")
    prefix = f"{where}: " if where else ""
    if not isinstance(states, Mapping) or not states:
        problems.append(f"{prefix}States must be a non-empty object")
        return
    if not isinstance(start, str):
        problems.append(f"{prefix}StartAt must be a string")
    elif start not in states:
        problems.append(f"{prefix}StartAt {start!r} is not a state")
    for name, state in states.items():
        path = f"{where}/{name}" if where else name
        if len(name) > 80:
            problems.append(f"{path}: state names are at most 80 characters")
        if not isinstance(state, Mapping):
            problems.append(f"{path}: a state must be an object")
            continue
        _check_state(name, state, path, states, language, problems)
    if isinstance(start, str) and start in states:
        unreachable = set(states) - _reachable(start, states)
        for name in sorted(unreachable):
            problems.append(f"{prefix}state {name!r} is not reachable from StartAt {start!r}")


def _successors(state: Mapping[str, Any]) -> list[str]:
    out = []
    if isinstance(state.get("Next"), str):
        out.append(state["Next"])
    if isinstance(state.get("Default"), str):
        out.append(state["Default"])
    for rule in state.get("Choices") or []:
        if isinstance(rule, Mapping) and isinstance(rule.get("Next"), str):
            out.append(rule["Next"])
    for catcher in state.get("Catch") or []:
        if isinstance(catcher, Mapping) and isinstance(catcher.get("Next"), str):
            out.append(catcher["Next"])
    return out


def _reachable(start: str, states: Mapping[str, Any]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in states:
            continue
        seen.add(name)
        state = states[name]
        if isinstance(state, Mapping):
            todo.extend(_successors(state))
    return seen


# ------------------------------------------------------------------------------------------------- state
def _check_state(name: str, state: Mapping[str, Any], path: str, scope: Mapping[str, Any], machine_language: str,
                 problems: list[str]) -> None:
    kind = state.get("Type")
    if kind not in STATE_TYPES:
        problems.append(f"{path}: Type must be one of {', '.join(STATE_TYPES)}, not {kind!r}")
        return
    language = state.get("QueryLanguage", machine_language)
    if language not in QUERY_LANGUAGES:
        problems.append(f"{path}: QueryLanguage must be one of {', '.join(QUERY_LANGUAGES)}")
        return
    if machine_language == "JSONata" and language == "JSONPath" and "QueryLanguage" in state:
        problems.append(f"{path}: a JSONPath state cannot be used in a JSONata state machine")
    allowed = _COMMON | _FIELDS[kind][language]
    unknown = set(state) - allowed
    if unknown:
        other = "JSONata" if language == "JSONPath" else "JSONPath"
        wrong = unknown & (_COMMON | _FIELDS[kind][other])
        if wrong:
            problems.append(f"{path}: field(s) {', '.join(sorted(wrong))} are not allowed in a {language} state")
        if unknown - wrong:
            problems.append(f"{path}: unknown field(s) for a {kind} state: {', '.join(sorted(unknown - wrong))}")

    # transitions
    if kind in ("Task", "Pass", "Wait", "Parallel", "Map"):
        has_next, end = "Next" in state, state.get("End")
        if has_next and end:
            problems.append(f"{path}: has both Next and End")
        elif not has_next and end is not True:
            problems.append(f"{path}: a {kind} state needs Next or End: true")
        if "End" in state and not isinstance(end, bool):
            problems.append(f"{path}: End must be a boolean")
    if "Next" in state:
        _check_target(state["Next"], "Next", path, scope, problems)

    if kind == "Task":
        _check_task(state, path, language, problems)
    elif kind == "Choice":
        _check_choice(state, path, scope, language, problems)
    elif kind == "Wait":
        fields = [f for f in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath") if f in state]
        if len(fields) != 1:
            problems.append(f"{path}: a Wait state needs exactly one of Seconds, Timestamp, SecondsPath, TimestampPath")
    elif kind == "Fail":
        for field in ("Error", "Cause"):
            if field in state and not isinstance(state[field], str):
                problems.append(f"{path}: {field} must be a string")
    elif kind == "Parallel":
        branches = state.get("Branches")
        if not isinstance(branches, list) or not branches:
            problems.append(f"{path}: Branches must be a non-empty list")
        else:
            for i, branch in enumerate(branches):
                _check_nested(branch, f"{path}/Branches[{i}]", language, problems)
    elif kind == "Map":
        _check_map(state, path, language, problems)

    if kind in ("Task", "Parallel", "Map"):
        _check_retry(state.get("Retry"), path, problems)
        _check_catch(state.get("Catch"), path, scope, language, problems)
        for field in ("TimeoutSeconds", "HeartbeatSeconds"):
            if field in state and not (_positive_int(state[field]) or _is_jsonata(state[field])):
                problems.append(f"{path}: {field} must be a positive integer")
    _check_expressions(state, path, language, problems)


def _check_target(target: Any, field: str, path: str, scope: Mapping[str, Any], problems: list[str]) -> None:
    if not isinstance(target, str):
        problems.append(f"{path}: {field} must be a state name")
    elif target not in scope:
        problems.append(f"{path}: {field} {target!r} is not a state of this scope")


def _check_task(state: Mapping[str, Any], path: str, language: str, problems: list[str]) -> None:
    resource = state.get("Resource")
    if not isinstance(resource, str):
        problems.append(f"{path}: a Task needs a Resource ARN")
        return
    if _PLACEHOLDER.fullmatch(resource):
        return  # a whole-ARN substitution (checked by the template)
    if not any(p.match(resource) for p in _RESOURCE_PATTERNS):
        problems.append(f"{path}: Resource {resource!r} is not a Lambda, activity or integration ARN")
    if ":states:::" in resource and "Parameters" not in state and "Arguments" not in state:
        problems.append(f"{path}: a service integration needs {'Arguments' if language == 'JSONata' else 'Parameters'}")


def _check_choice(state: Mapping[str, Any], path: str, scope: Mapping[str, Any], language: str,
                  problems: list[str]) -> None:
    if "Next" in state or "End" in state:
        problems.append(f"{path}: a Choice state has no Next or End (its rules have Next)")
    choices = state.get("Choices")
    if not isinstance(choices, list) or not choices:
        problems.append(f"{path}: Choices must be a non-empty list")
        return
    for i, rule in enumerate(choices):
        where = f"{path}/Choices[{i}]"
        if not isinstance(rule, Mapping):
            problems.append(f"{where}: a rule must be an object")
            continue
        if "Next" not in rule:
            problems.append(f"{where}: a rule needs Next")
        else:
            _check_target(rule["Next"], "Next", where, scope, problems)
        if language == "JSONata":
            if not _is_jsonata(rule.get("Condition")):
                problems.append(f"{where}: a JSONata rule needs a Condition {{% ... %}}")
        else:
            _check_rule(rule, where, problems, top=True)
    if "Default" in state:
        _check_target(state["Default"], "Default", path, scope, problems)


def _check_rule(rule: Mapping[str, Any], where: str, problems: list[str], *, top: bool) -> None:
    combinators = [k for k in ("And", "Or", "Not") if k in rule]
    comparisons = [k for k in rule if k in _COMPARISONS]
    if len(combinators) + len(comparisons) != 1:
        problems.append(f"{where}: a rule needs exactly one comparison or And/Or/Not")
        return
    if combinators:
        op = combinators[0]
        inner = rule[op]
        rules = [inner] if op == "Not" else inner
        if op != "Not" and (not isinstance(inner, list) or not inner):
            problems.append(f"{where}: {op} must be a non-empty list of rules")
            return
        for j, sub in enumerate(rules):
            if not isinstance(sub, Mapping):
                problems.append(f"{where}/{op}[{j}]: a rule must be an object")
            else:
                _check_rule(sub, f"{where}/{op}[{j}]", problems, top=False)
    else:
        variable = rule.get("Variable")
        if not isinstance(variable, str) or not variable.startswith("$"):
            problems.append(f"{where}: a comparison needs a Variable path starting with $")
    if not top and "Next" in rule:
        problems.append(f"{where}: a nested rule has no Next")


def _check_map(state: Mapping[str, Any], path: str, language: str, problems: list[str]) -> None:
    processor = state.get("ItemProcessor", state.get("Iterator"))
    if "ItemProcessor" in state and "Iterator" in state:
        problems.append(f"{path}: use ItemProcessor or Iterator, not both")
    if not isinstance(processor, Mapping):
        problems.append(f"{path}: a Map state needs an ItemProcessor")
        return
    config = processor.get("ProcessorConfig", {})
    if not isinstance(config, Mapping) or config.get("Mode", "INLINE") not in ("INLINE", "DISTRIBUTED"):
        problems.append(f"{path}: ProcessorConfig.Mode must be INLINE or DISTRIBUTED")
    if "MaxConcurrency" in state and not (
            isinstance(state["MaxConcurrency"], int) and state["MaxConcurrency"] >= 0 or _is_jsonata(state["MaxConcurrency"])):
        problems.append(f"{path}: MaxConcurrency must be a non-negative integer")
    _check_nested(processor, f"{path}/ItemProcessor", language, problems)


def _check_nested(machine: Any, where: str, language: str, problems: list[str]) -> None:
    if not isinstance(machine, Mapping):
        problems.append(f"{where}: must be an object with StartAt and States")
        return
    unknown = set(machine) - _NESTED_TOP_LEVEL
    if unknown:
        problems.append(f"{where}: unknown field(s): {', '.join(sorted(unknown))}")
    _check_machine(machine, where, machine.get("QueryLanguage", language), problems)


def _check_errors(entry: Mapping[str, Any], where: str, last: bool, problems: list[str]) -> None:
    errors = entry.get("ErrorEquals")
    if not isinstance(errors, list) or not errors or not all(isinstance(e, str) and e for e in errors):
        problems.append(f"{where}: ErrorEquals must be a non-empty list of error names")
        return
    if "States.ALL" in errors and (len(errors) > 1 or not last):
        problems.append(f"{where}: States.ALL must appear alone, in the last entry")


def _check_retry(retry: Any, path: str, problems: list[str]) -> None:
    if retry is None:
        return
    if not isinstance(retry, list):
        problems.append(f"{path}: Retry must be a list")
        return
    for i, r in enumerate(retry):
        where = f"{path}/Retry[{i}]"
        if not isinstance(r, Mapping):
            problems.append(f"{where}: a retrier must be an object")
            continue
        unknown = set(r) - {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds",
                            "JitterStrategy", "Comment"}
        if unknown:
            problems.append(f"{where}: unknown field(s): {', '.join(sorted(unknown))}")
        _check_errors(r, where, i == len(retry) - 1, problems)
        if "IntervalSeconds" in r and not _positive_int(r["IntervalSeconds"]):
            problems.append(f"{where}: IntervalSeconds must be a positive integer")
        if "MaxDelaySeconds" in r and not _positive_int(r["MaxDelaySeconds"]):
            problems.append(f"{where}: MaxDelaySeconds must be a positive integer")
        if "MaxAttempts" in r and not (isinstance(r["MaxAttempts"], int) and not isinstance(r["MaxAttempts"], bool)
                                       and r["MaxAttempts"] >= 0):
            problems.append(f"{where}: MaxAttempts must be a non-negative integer")
        if "BackoffRate" in r and not (isinstance(r["BackoffRate"], (int, float)) and r["BackoffRate"] >= 1.0):
            problems.append(f"{where}: BackoffRate must be a number >= 1.0")
        if "JitterStrategy" in r and r["JitterStrategy"] not in _JITTER:
            problems.append(f"{where}: JitterStrategy must be FULL or NONE")


def _check_catch(catch: Any, path: str, scope: Mapping[str, Any], language: str, problems: list[str]) -> None:
    if catch is None:
        return
    if not isinstance(catch, list):
        problems.append(f"{path}: Catch must be a list")
        return
    allowed = {"ErrorEquals", "Next", "Comment"} | ({"ResultPath", "Assign"} if language == "JSONPath"
                                                   else {"Output", "Assign"})
    for i, c in enumerate(catch):
        where = f"{path}/Catch[{i}]"
        if not isinstance(c, Mapping):
            problems.append(f"{where}: a catcher must be an object")
            continue
        unknown = set(c) - allowed
        if unknown:
            problems.append(f"{where}: field(s) not allowed here: {', '.join(sorted(unknown))}")
        _check_errors(c, where, i == len(catch) - 1, problems)
        if "Next" not in c:
            problems.append(f"{where}: a catcher needs Next")
        else:
            _check_target(c["Next"], "Next", where, scope, problems)
        if "ResultPath" in c:
            _check_path(c["ResultPath"], f"{where}/ResultPath", problems, nullable=True)


# ------------------------------------------------------------------------------------- paths, expressions
def _is_jsonata(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("{%") and value.endswith("%}")


def _check_path(value: Any, where: str, problems: list[str], *, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    if not isinstance(value, str) or not value.startswith("$"):
        problems.append(f"{where}: a path must start with $")


def _check_expressions(state: Mapping[str, Any], path: str, language: str, problems: list[str]) -> None:
    if language == "JSONPath":
        for field in ("InputPath", "OutputPath", "ResultPath", "ItemsPath"):
            if field in state:
                _check_path(state[field], f"{path}/{field}", problems, nullable=field != "ItemsPath")
        for field in ("Parameters", "ResultSelector", "ItemSelector"):
            if field in state:
                _check_payload(state[field], f"{path}/{field}", problems)
    else:
        for field in ("Arguments", "Output", "Assign", "Items", "ItemSelector"):
            if field in state:
                _check_jsonata_values(state[field], f"{path}/{field}", problems)


def _check_payload(template: Any, where: str, problems: list[str]) -> None:
    """A JSONPath payload template: ``"key.$"`` values are paths or intrinsic functions."""
    if isinstance(template, Mapping):
        for key, value in template.items():
            if isinstance(key, str) and key.endswith(".$"):
                if not isinstance(value, str) or not (value.startswith("$") or value.startswith("States.")):
                    problems.append(f"{where}/{key}: must be a path ($...) or an intrinsic function (States....)")
            else:
                _check_payload(value, f"{where}/{key}", problems)
    elif isinstance(template, list):
        for i, value in enumerate(template):
            _check_payload(value, f"{where}[{i}]", problems)


def _check_jsonata_values(value: Any, where: str, problems: list[str]) -> None:
    if isinstance(value, str):
        if "{%" in value or "%}" in value:
            if not _is_jsonata(value):
                problems.append(f"{where}: a JSONata expression must be the whole string: {{% ... %}}")
            elif value.count("{%") != 1 or value.count("%}") != 1:
                problems.append(f"{where}: one JSONata expression per string")
            elif not value[2:-2].strip():
                problems.append(f"{where}: empty JSONata expression")
            elif not _balanced(value[2:-2]):
                problems.append(f"{where}: unbalanced brackets or quotes in {value!r}")
    elif isinstance(value, Mapping):
        for key, sub in value.items():
            if isinstance(key, str) and key.endswith(".$"):
                problems.append(f"{where}/{key}: JSONPath '.$' keys are not allowed in JSONata")
            _check_jsonata_values(sub, f"{where}/{key}", problems)
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            _check_jsonata_values(sub, f"{where}[{i}]", problems)


def _balanced(expression: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    quote: str | None = None
    for ch in expression:
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack and quote is None


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# --------------------------------------------------------------------------------------- templates, CLI
_STATE_MACHINE_TYPES = ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")


def check_template(path: str | Path) -> dict[str, list[str]]:
    """Every state machine of a CloudFormation/SAM template -> its problems.

    The definition comes from ``DefinitionUri`` (a path beside the template), ``Definition`` or
    ``DefinitionString``; the placeholders are checked against ``DefinitionSubstitutions``.
    """
    from bioims.store.cloudformation import load_template

    template = load_template(path)
    results: dict[str, list[str]] = {}
    for logical, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") not in _STATE_MACHINE_TYPES:
            continue
        props = resource.get("Properties") or {}
        substitutions = list(props.get("DefinitionSubstitutions") or {})
        if "DefinitionUri" in props and isinstance(props["DefinitionUri"], str):
            results[logical] = check_file(Path(path).parent / props["DefinitionUri"], substitutions)
        elif isinstance(props.get("Definition"), Mapping):
            results[logical] = check(props["Definition"], substitutions)
        elif isinstance(props.get("DefinitionString"), str):
            try:
                results[logical] = check(json.loads(props["DefinitionString"]), substitutions)
            except json.JSONDecodeError as e:
                results[logical] = [f"DefinitionString is not valid JSON: {e}"]
        else:
            results[logical] = ["no definition to check (DefinitionUri to a local file, Definition or DefinitionString)"]
    return results


def main(argv: list[str] | None = None) -> int:
    """``python infra/asl.py TEMPLATE|FILE.asl.json ...``: exit 1 if any state machine is invalid."""
    import sys

    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python infra/asl.py TEMPLATE.yaml|DEFINITION.asl.json ...", file=sys.stderr)
        return 2
    failed = checked = 0
    for path in paths:
        results = ({Path(path).name: check_file(path)} if path.endswith(".json") else check_template(path))
        if not results:
            print(f"{path}: no state machine")
        for name, problems in results.items():
            checked += 1
            if problems:
                failed += 1
                print(f"{path}: {name}: INVALID")
                for problem in problems:
                    print(f"  - {problem}")
            else:
                print(f"{path}: {name}: valid Amazon States Language")
    print(f"{checked - failed} valid, {failed} invalid state machine(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
