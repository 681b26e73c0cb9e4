"""The service READMEs' operation tables are those generated from the contract (``python -m bioims.contract.docs``)."""

from __future__ import annotations

import pytest

from bioims.contract import SERVICES
from bioims.contract.docs import BEGIN, END, readme
from tests.conftest import REPO


@pytest.mark.parametrize("name", list(SERVICES))
def test_readme_operation_table_is_generated(name: str) -> None:
    path = REPO / "services" / name / "README.md"
    text = path.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1 and text.index(BEGIN) < text.index(END), name
    assert text == readme(path, SERVICES[name]), \
        f"{path} is out of date: run `python -m bioims.contract.docs`"
