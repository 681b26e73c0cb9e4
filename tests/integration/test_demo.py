"""The whole walkthrough (`bioims demo`) on the tiny preset: every step, the methods table, the example
searches, and a second run that finds everything done."""

from __future__ import annotations

import time

from bioims.cli.stack import _demo_human
from bioims.demo import METHOD_ORDER, run_demo


def test_tiny_walkthrough_end_to_end_then_resumed(container, tmp_path, capsys):
    started = time.perf_counter()
    first = run_demo(container, preset="tiny", out=tmp_path / "tiny", workers=2)
    first_seconds = time.perf_counter() - started
    assert first["registry"]["plates"] == 4 and first["preprocess"]["failed"] == 0
    assert len(first["models"]["learned"]) == len(first["models"]["seed_network"]) >= 2
    assert first["embedded"]["runs"] == sum(len(ids) for ids in first["models"].values())
    assert list(first["methods"]) == list(METHOD_ORDER)
    for method, doc in first["methods"].items():
        assert doc["treatments"] == 16 and 0 <= doc["nsc"] <= 1 and 0 <= doc["map"] <= 1, method
    embedded_fields = len(container.embedding.profiles(first["models"]["baseline"][0], "field"))
    assert first["index"]["count"] == embedded_fields and 0 < first["preprocess"]["fields"] - embedded_fields <= 2
    assert first["searches"] and all(len(q["hits"]) == 5 for q in first["searches"])
    for q in first["searches"]:
        assert all(h["compound"] not in (q["compound"], "DMSO") and h["moa"] for h in q["hits"])
    assert (tmp_path / "tiny").exists() and first["report"].endswith(".html")
    assert container.settings.home.joinpath("reports").exists()

    started = time.perf_counter()
    second = run_demo(container, preset="tiny", out=tmp_path / "tiny", workers=2)
    assert time.perf_counter() - started < first_seconds / 2
    assert second["models"] == first["models"] and second["methods"] == first["methods"]
    assert second["ingest"]["skipped_plates"] == 4 and second["preprocess"]["skipped"] == second["preprocess"]["fields"]

    _demo_human(second)
    printed = capsys.readouterr().out
    assert "learned" in printed and "seed_network" in printed and "bioims serve" in printed
