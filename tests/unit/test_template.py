"""The SAM template: valid (cfn-lint, offline) and its tables identical to the PynamoDB models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from bioims.store.cloudformation import table_resources

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def test_tables_in_template_match_the_models():
    template = yaml.safe_load(TEMPLATE.read_text())
    deployed = {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::DynamoDB::Table"}
    assert deployed == table_resources()


def test_template_passes_cfn_lint():
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    proc = subprocess.run([str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
