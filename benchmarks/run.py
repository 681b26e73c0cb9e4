"""`make bench`: run every benchmarks/bench_*.py and print its figures.

Each module has ``run() -> list[dict]`` returning rows ``{"benchmark", "figure", "value", "unit",
"baseline", "ratio"}``; the baseline is measured in the same run, on the same machine and data.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path


def main() -> int:
    rows = []
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(f"== {path.stem}", file=sys.stderr, flush=True)
        rows.extend(module.run())
    width = max(len(r["figure"]) for r in rows)
    for r in rows:
        print(f"{r['benchmark']:<10} {r['figure']:<{width}} {r['value']:>10.1f} {r['unit']:<10} "
              f"baseline {r['baseline']:>10.1f}  ratio {r['ratio']:.2f}x")
    Path(".bioims").mkdir(exist_ok=True)
    Path(".bioims/bench.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
