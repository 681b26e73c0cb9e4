"""The README's tutorial, run as written (bash, every command must succeed) in a fresh BIOIMS_HOME."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

README = Path(__file__).resolve().parents[2] / "README.md"


def tutorial() -> str:
    text = README.read_text()
    section = text[text.index("## Tutorial: your own plates"):]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the tutorial has no ```sh block"
    return match.group(1)


def test_tutorial_runs_as_written(tmp_path):
    env = {**os.environ, "BIOIMS_HOME": str(tmp_path / "home"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for key in ("BIOIMS_DYNAMODB_URL", "BIOIMS_TABLE_PREFIX", "BIOIMS_ARTIFACT_URI"):
        env.pop(key, None)
    script = "set -euo pipefail\n" + tutorial()
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        subprocess.run([str(Path(sys.executable).parent / "bioims"), "down"], env=env, capture_output=True)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    out = proc.stdout
    assert "NSC" in out and "search" in out and (tmp_path / "learned.html").exists()
    assert (tmp_path / "wells.parquet").stat().st_size > 0 and "stopped: True" in out
    assert (tmp_path / "wells.h5ad").stat().st_size > 0 and (tmp_path / "zarr" / "wells.csv").exists()
    # CytoTable's image columns at field level: the file of each channel and its folder
    fields = pd.read_parquet(tmp_path / "fields.parquet")
    assert fields["Image_FileName_DAPI"].str.endswith(".tif").all()
    assert fields["Image_PathName_Actin"].str.startswith("file://").all()
    assert int(re.findall(r"^(\d+) fields preprocessed", out, re.M)[-1]) > 0, "the OME-Zarr plate was not preprocessed"
