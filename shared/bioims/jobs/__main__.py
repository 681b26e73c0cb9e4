"""``python -m bioims.jobs STEP|WORKFLOW --params JSON`` and ``python -m bioims.jobs execute ID``."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import BioimsError
from .runner import LocalRunner, default_workers, run_unit
from .steps import STEPS, WORKFLOWS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bioims.jobs", description=__doc__)
    parser.add_argument("name", choices=sorted([*STEPS, *WORKFLOWS, "execute"]))
    parser.add_argument("execution_id", nargs="?", help="with `execute`: the execution to run")
    parser.add_argument("--params", default="{}", help="JSON object of the step's parameters")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as e:
        parser.error(f"--params is not valid JSON: {e}")
    if not isinstance(params, dict):
        parser.error("--params must be a JSON object")

    from ..runtime import local

    try:
        container = local()
        runner = container.runner
        assert isinstance(runner, LocalRunner)
        if args.name == "execute":
            if not args.execution_id:
                parser.error("execute needs an EXECUTION_ID")
            result = runner.execute(container, args.execution_id, workers=args.workers, progress=args.progress)
        elif args.name in WORKFLOWS:
            result = runner.run(container, args.name, params, workers=args.workers, progress=args.progress)
        else:
            result = run_unit(container, args.name, params)
    except BioimsError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout, default=str)
    print()
    return 1 if isinstance(result, dict) and "failure" in result else 0


if __name__ == "__main__":
    sys.exit(main())
