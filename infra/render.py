"""Render the IAM policy statements of the templates from :mod:`bioims.permissions`, in place.

In ``infra/*.yaml`` the statements of a role sit between the lines ``#policy <principal>`` and
``#end policy``; this replaces what is between them with ``bioims.permissions.policy_statements``.
``tests/unit/test_template.py`` checks every role against ``bioims.permissions`` independently (so a
stale render fails the tests, with a hint to run this).

    .venv/bin/python infra/render.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

from bioims.permissions import policy_statements

INFRA = Path(__file__).resolve().parent
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


def main() -> int:
    for path in sorted(INFRA.glob("*.yaml")):
        text = path.read_text()
        rendered = render(text)
        if rendered != text:
            path.write_text(rendered)
            print(f"rendered {path.relative_to(INFRA.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
