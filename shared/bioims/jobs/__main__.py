"""``python -m bioims.jobs STEP|WORKFLOW --params JSON``, ``... STEP --array-params URI`` (AWS Batch array
child ``$AWS_BATCH_JOB_ARRAY_INDEX``) and ``python -m bioims.jobs execute ID``.

The result is printed as JSON on standard output; one ``job`` event (:mod:`bioims.logs`, with the Batch job
id ``$AWS_BATCH_JOB_ID`` or a new one as ``request_id``) goes to standard error, and every call the job
makes to a service's function logs a ``call`` event with that id."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .. import logs
from ..errors import BioimsError
from ..ids import new_id
from ..settings import Settings
from .batch import array_element
from .runner import LocalRunner, default_workers, run_unit
from .steps import STEPS, WORKFLOWS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bioims.jobs", description=__doc__)
    parser.add_argument("name", choices=sorted([*STEPS, *WORKFLOWS, "execute"]))
    parser.add_argument("execution_id", nargs="?", help="with `execute`: the execution to run")
    parser.add_argument("--params", default="{}", help="JSON object of the step's parameters")
    parser.add_argument("--array-params", help="URI of a JSON list of parameter sets (AWS Batch array job)")
    parser.add_argument("--index", type=int, default=None,
                        help="element of --array-params to run (default: $AWS_BATCH_JOB_ARRAY_INDEX, else 0)")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as e:
        parser.error(f"--params is not valid JSON: {e}")
    if not isinstance(params, dict):
        parser.error("--params must be a JSON object")

    logs.configure(sys.stderr)
    job_id = os.environ.get("AWS_BATCH_JOB_ID") or new_id()
    started = time.perf_counter()
    with logs.request(job_id, step=args.name):
        code = _run(parser, args, params)
        logs.emit("job", ms=round((time.perf_counter() - started) * 1000, 1), exit_code=code)
    return code


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, params: dict) -> int:
    from .. import runtime

    try:
        settings = Settings.from_env()
        if settings.runtime == "aws":
            if args.name not in runtime.STEP_SERVICE:
                raise BioimsError(f"workflows run locally; on AWS {args.name} is a Step Functions state machine")
            container = runtime.aws(settings, service=runtime.STEP_SERVICE[args.name], job=True)
        else:
            container = runtime.local(settings)
        if args.array_params:
            index = args.index if args.index is not None else int(os.environ.get("AWS_BATCH_JOB_ARRAY_INDEX", "0"))
            params = array_element(container.objects.get_json(args.array_params), index)
        if args.name in STEPS:
            result = run_unit(container, args.name, params)
        else:
            runner = container.runner
            if not isinstance(runner, LocalRunner):
                raise BioimsError(f"workflows run locally; on AWS {args.name} is a Step Functions state machine")
            if args.name == "execute":
                if not args.execution_id:
                    parser.error("execute needs an EXECUTION_ID")
                result = runner.execute(container, args.execution_id, workers=args.workers, progress=args.progress)
            else:
                result = runner.run(container, args.name, params, workers=args.workers, progress=args.progress)
    except BioimsError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout, default=str)
    print()
    output = result.get("output") if isinstance(result, dict) else None
    failed = "failure" in result or (isinstance(output, dict) and bool(output.get("failed")))
    if failed:  # a unit that failed, or a workflow that failed some of its units: exit 1 with the first reason
        listed = [] if output is None else output.get("failures") or output.get("failed")
        first = result if "failure" in result else (listed[0] if isinstance(listed, list) and listed else {})
        print(f"error: {args.name} failed: {first.get('failure', 'see the output')}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
