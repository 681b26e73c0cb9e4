"""The web interface's pages on the demo dataset, timed in headless Chromium (Debian's ``chromium``, driven by
Playwright), against ``bioims serve`` on a loopback port.

Data: the ``demo`` synthetic preset (the dataset of ``make demo``: 582 fields of 256 x 320 on 24 plates'
worth of wells, 3 channels), ingested, processed (thumbnails), preprocessed under the demo's spec,
embedded by an untrained (seeded) run and indexed at field level, under a temporary BIOIMS_HOME on a real
dynalite.

Figures (each the median of RUNS loads in a fresh page, after one warm-up):

- the plates page, a plate page (its map) and a field viewer: from navigation until the page is rendered
  and interactive (the router's ``data-ready`` mark);
- a search page: from navigation to ``#/search?image=ID`` until the hits are drawn after pressing Search.

Baseline: the same pages' API requests made directly with one keep-alive ``http.client`` connection
(sequentially, as many as the page makes before it is interactive), so ratio = the whole page (browser,
JavaScript, rendering, compositing the channels) over its data alone. The target is under 1 s per page.
About 3 minutes on 2 cores, most of it preparing the screen; skipped (no rows) without Chromium.
"""

from __future__ import annotations

import http.client
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from bioims.datasets.loaddata import read_loaddata
from bioims.datasets.synth import IMAGE_CSV, MOA_CSV, PRESETS, synthesize
from bioims.demo import ensure_spec
from bioims.jobs.runner import LocalPool
from bioims.local_stack import LocalStack
from bioims.runtime import local
from bioims.settings import Settings

RUNS = 5
CORES = 2


def prepare(c: Any, folder: Path) -> tuple[str, str, str, int]:
    """The demo screen through embedding and a field index: (plate id, image id, train id, fields)."""
    synthesize(folder, "demo", 0, workers=CORES)
    summary = c.images.ingest(read_loaddata(folder / IMAGE_CSV, moa_csv=folder / MOA_CSV))
    spec = ensure_spec(c, PRESETS["demo"])
    with LocalPool(c, workers=CORES) as pool:
        for plate_id in summary.plate_ids:
            c.runner.run(c, "process-plate", {"plate_id": plate_id}, pool=pool)
        c.runner.run(c, "preprocess", {"spec": spec}, pool=pool)
    train_id = c.training.create_trainings(spec, "none", epochs=0, seed=0)[0]["train_id"]
    c.training.run_training(train_id)
    c.runner.run(c, "embed", {"train_id": train_id})
    c.search.build_index(train_id, "field")
    plate_id = summary.plate_ids[0]
    image_id = next(f["image_id"] for f in c.images.list_spec_fields(spec, plate_id) if f["cells"])
    return plate_id, image_id, train_id, summary.images


def api_seconds(base: str, requests: list[tuple[str, str, Any]]) -> float:
    """One keep-alive connection making ``requests`` ((method, path, body)) in turn: seconds."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port)
    started = time.perf_counter()
    for method, path, body in requests:
        connection.request(method, path, body=None if body is None else json.dumps(body),
                           headers={"Content-Type": "application/json"} if body is not None else {})
        response = connection.getresponse()
        response.read()
        assert response.status < 300, (path, response.status)
    seconds = time.perf_counter() - started
    connection.close()
    return seconds


def median_of(fn: Any) -> float:
    fn()  # warm-up
    return statistics.median(fn() for _ in range(RUNS))


def run() -> list[dict]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("bench_web: no chromium (apt-get install chromium): skipped", file=sys.stderr)
        return []
    from playwright.sync_api import sync_playwright

    from bioims.api.server import LocalServer

    rows = []
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), table_prefix="benchweb-", ingest_roots=(home,))
        try:
            c = local(settings)
            print("preparing the demo screen ...", file=sys.stderr, flush=True)
            plate_id, image_id, train_id, n_fields = prepare(c, Path(home) / "demo")
            server = LocalServer(c, "127.0.0.1", 0)
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            base = server.url.rstrip("/")
            specs = c.training.list_embeddings()
            spec = specs[0]["name"]
            pages = {
                "plates page": ("#/plates", [("GET", "/image-management/plates", None)]),
                "plate page (map)": (f"#/plates/{plate_id}", [
                    ("GET", f"/image-management/plates/{plate_id}", None),
                    ("GET", f"/image-management/plates/{plate_id}/wells", None),
                    ("GET", f"/image-management/plates/{plate_id}/images", None)]),
                "field viewer": (f"#/fields/{image_id}", [
                    ("GET", "/training/embeddings", None),
                    ("GET", f"/image-management/images/{image_id}/view?width=640&spec={quote(spec)}", None),
                    ("GET", f"/image-management/images/{image_id}/tags", None)]),
            }
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])

                def load(hash_: str) -> float:
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    started = time.perf_counter()
                    page.goto(f"{base}/{hash_}")
                    page.wait_for_function("document.getElementById('app').dataset.ready === location.hash")
                    seconds = time.perf_counter() - started
                    page.close()
                    return seconds

                def search() -> float:
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    started = time.perf_counter()
                    page.goto(f"{base}/#/search?image={image_id}")
                    page.wait_for_function("document.getElementById('app').dataset.ready === location.hash")
                    page.click("#run-search")
                    page.wait_for_selector("#hit-grid article canvas")
                    seconds = time.perf_counter() - started
                    page.close()
                    return seconds

                for figure, (hash_, requests) in pages.items():
                    value = median_of(lambda h=hash_: load(h))
                    baseline = median_of(lambda r=requests: api_seconds(base, r))
                    rows.append({"benchmark": "web", "figure": f"{figure}, interactive ({n_fields} fields)",
                                 "value": value * 1000, "unit": "ms", "baseline": baseline * 1000,
                                 "ratio": value / baseline})
                requests = [("GET", "/search/indexes", None), ("GET", f"/training/trainings/{train_id}", None),
                            ("GET", f"/training/embeddings/{quote(spec)}", None),
                            ("POST", "/search/searches", {"train_id": train_id, "image_id": image_id, "k": 10})]
                value = median_of(search)
                baseline = median_of(lambda: api_seconds(base, requests))
                rows.append({"benchmark": "web", "figure": f"search page to hits drawn (k=10, {n_fields} fields)", "value": value * 1000,
                             "unit": "ms", "baseline": baseline * 1000, "ratio": value / baseline})
                browser.close()
            server.stop()
            thread.join(timeout=10)
        finally:
            LocalStack(settings).down()
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
