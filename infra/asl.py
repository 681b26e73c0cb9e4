"""The state machines of a SAM template checked before a deployment (``make validate``).

For each ``AWS::Serverless::StateMachine`` whose ``DefinitionUri`` is a file beside the template:

1. its ``${Name}`` placeholders against the resource's ``DefinitionSubstitutions``: each one given, none
   given for nothing. Written here because no tool sees both (cfn-lint and ``sam validate`` do not open a
   ``DefinitionUri`` file, and an ASL validator reads the definition alone);
2. the definition, substituted with example values (the template's parameter defaults and pseudo
   parameters), by ``asl-validator`` (npm, in ``package.json``): the Amazon States Language schema of each
   state type and query language, transitions and reachability, resource ARNs, JSONPath paths and JSONata
   expressions;
3. the same definition loaded by the ASL parser of moto's Step Functions interpreter, the one that executes
   the state machines in ``tests/unit/test_workflows.py`` (it refuses, for instance, ``States.ALL`` beside
   other error names);
4. ``States.ALL`` last in every ``Retry`` and ``Catch`` list: Step Functions refuses a definition without it
   and neither tool above checks it.

``python infra/asl.py TEMPLATE.yaml ...`` prints one line per state machine and exits 1 if any is invalid.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cloudformation import load_template

ROOT = Path(__file__).resolve().parent.parent
VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
          "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "bioims-dev"}
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_:.]+)\}")


def placeholders(text: str) -> set[str]:
    """The ``${Name}`` DefinitionSubstitutions placeholders of a definition's text.

    >>> sorted(placeholders('{"Resource": "${Fn}", "Arguments": {"Bucket": "${Bucket}"}}'))
    ['Bucket', 'Fn']
    """
    return set(_PLACEHOLDER.findall(text))


def substitute(text: str, substitutions: Mapping[str, Any]) -> str:
    """A definition's text with its placeholders filled in, as CloudFormation does; every one must be given.

    >>> substitute('{"Threads": ${Threads}}', {"Threads": 2})
    '{"Threads": 2}'
    """
    missing = sorted(placeholders(text) - set(substitutions))
    if missing:
        raise ValueError(f"no substitution for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: str(substitutions[m.group(1)]), text)


def resolve(value: Any, values: Mapping[str, Any]) -> Any:
    """A template value with its ``!Ref``, ``!Sub`` and ``!GetAtt`` resolved from ``values`` (parameter and
    pseudo parameter name -> value; a name not given stands for itself, lower-cased: a resource's name).

    >>> resolve({"Fn::Sub": "arn:${AWS::Partition}:lambda:${Prefix}-f"}, {"AWS::Partition": "aws", "Prefix": "p"})
    'arn:aws:lambda:p-f'
    """
    def ref(name: str) -> Any:
        return values.get(name, name.lower())

    if isinstance(value, Mapping) and "Ref" in value:
        return ref(value["Ref"])
    if isinstance(value, Mapping) and "Fn::Sub" in value:
        text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
        return _PLACEHOLDER.sub(lambda m: str(ref(m.group(1))), text)
    if isinstance(value, Mapping) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0]).lower()
    return value


def example_values(template: Mapping[str, Any]) -> dict[str, Any]:
    """Example values of a template's parameters (each one's default, or its name) and pseudo parameters.

    >>> values = example_values({"Parameters": {"Threads": {"Type": "Number", "Default": 2}, "Queue": {}}})
    >>> values["Threads"], values["Queue"], values["AWS::Partition"]
    (2, 'queue', 'aws')
    """
    parameters = template.get("Parameters") or {}
    return {**PSEUDO, **{name: p.get("Default", name.lower()) for name, p in parameters.items()}}


def _error_lists(machine: Any, where: str = "") -> Iterator[tuple[str, list[Any]]]:
    for name, state in (machine.get("States") or {}).items() if isinstance(machine, Mapping) else ():
        for field in ("Retry", "Catch"):
            if isinstance(state.get(field), list):
                yield f"{where}{name}.{field}", state[field]
        nested = [state.get("ItemProcessor"), state.get("Iterator"), *(state.get("Branches") or [])]
        for index, inner in enumerate(n for n in nested if n):
            yield from _error_lists(inner, f"{where}{name}[{index}].")


def check(text: str, substitutions: Mapping[str, Any]) -> list[str]:
    """The problems of one definition (its text, before substitution) given its substitutions."""
    problems = [f"placeholder ${{{n}}} has no substitution" for n in sorted(placeholders(text) - set(substitutions))]
    problems += [f"substitution {n} is not used" for n in sorted(set(substitutions) - placeholders(text))]
    if problems:
        return problems
    definition = substitute(text, substitutions)
    try:
        machine = json.loads(definition)
    except json.JSONDecodeError as e:
        return [f"not valid JSON: {e}"]
    validated = subprocess.run([str(VALIDATOR), "--json-definition", definition], capture_output=True, text=True)
    if validated.returncode != 0:
        found = {line.strip() for line in (validated.stdout + validated.stderr).splitlines()
                 if line.strip() and "State machine definition" not in line}
        problems += [f"asl-validator: {line}" for line in sorted(found)] or ["asl-validator: invalid"]
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    try:
        AmazonStateLanguageParser.parse(definition)
    except Exception as e:  # the parser raises its own exceptions and ValueError alike
        problems.append(f"the interpreter's parser: {str(e).splitlines()[0]}")
    finally:
        # moto 5.2.5 keeps the query-language scopes in a list shared by every Preprocessor (a class
        # attribute) and leaves a refused definition's scopes in it: every later parse in this process
        # would then see a JSONata scope and refuse a JSONPath state
        Preprocessor._query_language_per_scope.clear()
    for where, entries in _error_lists(machine):
        if any("States.ALL" in (e.get("ErrorEquals") or []) for e in entries[:-1]):
            problems.append(f"{where}: States.ALL must be the last entry")
    return problems


def check_template(path: str | Path) -> dict[str, list[str]]:
    """Every state machine of a SAM template -> its problems (see the module's docstring)."""
    template = load_template(path)
    values = example_values(template)
    results: dict[str, list[str]] = {}
    for logical, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") not in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            continue
        props = resource.get("Properties") or {}
        if not isinstance(props.get("DefinitionUri"), str):
            results[logical] = ["no DefinitionUri file to check (the project keeps its definitions in files)"]
            continue
        text = (Path(path).parent / props["DefinitionUri"]).read_text(encoding="utf-8")
        substitutions = {k: resolve(v, values) for k, v in (props.get("DefinitionSubstitutions") or {}).items()}
        results[logical] = check(text, substitutions)
    return results


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python infra/asl.py TEMPLATE.yaml ...", file=sys.stderr)
        return 2
    if not VALIDATOR.exists():
        print(f"{VALIDATOR} is missing: run npm ci (make setup)", file=sys.stderr)
        return 2
    failed = 0
    for path in argv:
        for name, problems in check_template(path).items():
            failed += bool(problems)
            print(f"{path}: {name}: " + ("INVALID" if problems else "valid Amazon States Language"))
            for problem in problems:
                print(f"  - {problem}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
