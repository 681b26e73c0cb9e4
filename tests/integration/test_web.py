"""The web interface in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright for
Python, against ``bioims serve`` on a free loopback port over the tiny screen (processed, preprocessed,
embedded by a seeded model, its field index built). The tests click through the walkthrough and save
the README's screenshots under ``docs/screenshots/``."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bioims.store.objects import uri_to_path
from tests.conftest import REPO
from tests.integration.conftest import preprocessed_screen, running_server
from tests.unit.test_permissions import SPEC

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no Chromium (apt-get install chromium): the browser tests of the web interface are skipped",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

SHOTS = REPO / "docs" / "screenshots"
pytestmark = pytest.mark.xdist_group("web")


@pytest.fixture(scope="module")
def site(stack_settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The screen behind ``bioims serve``, trained two epochs: ``{"url", "c", "train_id"}``."""
    c = preprocessed_screen(stack_settings, tmp_path_factory.mktemp("web"), SPEC)
    train_id = c.training.create_trainings(SPEC["name"], "none", epochs=2, seed=5)[0]["train_id"]
    c.training.run_training(train_id)
    c.runner.run(c, "embed", {"train_id": train_id})
    c.search.build_index(train_id, "field")
    c.search.build_index(train_id, "well")
    with running_server(c) as url:
        yield {"url": url.rstrip("/"), "c": c, "train_id": train_id}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def goto(page: Any, url: str) -> None:
    """Open ``url`` and wait until the router has rendered its page (``main[data-ready]`` = the hash)."""
    page.goto(url)
    wait_rendered(page)


def wait_rendered(page: Any) -> None:
    page.wait_for_function("document.getElementById('app').dataset.ready === location.hash")


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def field_with_cells(site: dict[str, Any]) -> dict[str, Any]:
    c = site["c"]
    plate = c.images.list_plates()[0]
    return next(f for f in c.images.list_spec_fields(SPEC["name"], plate["plate_id"]) if f["cells"])


def test_plates_and_the_plate_map(site: dict[str, Any], page: Any) -> None:
    """/ lists the plates; a plate's map has a well per source well, controls (DMSO) marked, a colour per
    value of the chosen metadata, and a click on a well lists its fields, each linked to its viewer."""
    c = site["c"]
    plates = c.images.list_plates()
    started = time.perf_counter()
    goto(page, site["url"] + "/")
    assert page.locator("table[aria-label=plates] tbody tr").count() == len(plates)
    plate = plates[0]
    page.click(f"text={plate['source_id']}")
    wait_rendered(page)
    wells = c.images.get_wells_by_plate_id(plate["plate_id"])
    assert page.locator("button.well").count() == len(wells)
    controls = [w for w in wells if str((w.get("metadata") or {}).get("compound")).upper() == "DMSO"]
    assert controls and page.locator("button.well.control").count() == len(controls)
    moas = {(w.get("metadata") or {}).get("moa") for w in wells} - {None}
    assert page.locator(".legend span[style]").count() == len(moas)
    page.select_option("#colour-by", "compound")
    wait_rendered(page)
    assert re.search(r"by=compound$", page.url)
    compounds = {(w.get("metadata") or {}).get("compound") for w in wells} - {None}
    assert page.locator(".legend span[style]").count() == len(compounds)
    well = wells[0]
    page.focus(f"button.well[data-well='{well['source_id']}']")  # keyboard: a well is a button
    page.keyboard.press("Enter")
    fields = page.locator("#well-panel ul[aria-label=fields] li a")
    assert fields.count() == well["image_count"]
    shot(page, "plate")
    fields.first.click()
    wait_rendered(page)
    assert "/fields/" in page.url and page.locator("canvas#composite").count() == 1
    print(f"plate page to field viewer: {time.perf_counter() - started:.2f} s")
    page.go_back()
    wait_rendered(page)
    page.click(f"button.well[data-well='{well['source_id']}']")
    page.click("#similar-wells")  # the well's neighbours in the well index
    page.wait_for_selector("#hit-grid article, #results .error")
    assert page.locator("#results .error").count() == 0, page.inner_text("#results")
    expected = c.search.search(site["train_id"], id=f"{plate['source_id']}/{well['source_id']}", level="well")["hits"]
    hits = page.locator("#hit-grid article")
    assert [hits.nth(i).get_attribute("data-id") for i in range(hits.count())] == [h["id"] for h in expected]


def test_the_field_viewer_toggles_channels_and_draws_the_cells(site: dict[str, Any], page: Any) -> None:
    """A field's composite, one toggle and two contrast sliders per channel, a box per cell under the spec
    and its crops; turning a channel off changes the composite; an unknown field is a clear error page."""
    field = field_with_cells(site)
    goto(page, f"{site['url']}/#/fields/{field['image_id']}")
    channels = site["c"].training.spec(SPEC["name"]).input.channels
    assert page.locator("fieldset.channel").count() == len(channels)
    assert page.locator("svg#boxes rect").count() == field["cells"]
    assert page.locator(".crops img").count() == min(field["cells"], 48)
    total = "(() => { const c = document.getElementById('composite'); const d = c.getContext('2d')" \
            ".getImageData(0, 0, c.width, c.height).data; let s = 0; for (let i = 0; i < d.length; i += 4)" \
            " s += d[i] + d[i + 1] + d[i + 2]; return s; })()"
    before = page.evaluate(total)
    page.uncheck(f"fieldset.channel input[data-channel='{channels[0]}']")
    after = page.evaluate(total)
    assert 0 < after < before
    page.fill("#high-1", "60")
    page.dispatch_event("#high-1", "input")
    assert page.evaluate(total) > after  # a lower high end brightens channel 1
    shot(page, "field")
    goto(page, f"{site['url']}/#/fields/no-such-field")
    assert "no image 'no-such-field'" in page.locator("[role=alert]").inner_text()
    assert page.locator("h1").inner_text() == "Not found"


def test_search_filters_reopens_and_uploads(site: dict[str, Any], page: Any) -> None:
    """From a field: its neighbours; an exclude filter changes the hits; the search reopens by its URL;
    an uploaded field (its channel files) gets hits too."""
    c, train_id = site["c"], site["train_id"]
    field = field_with_cells(site)
    started = time.perf_counter()
    goto(page, f"{site['url']}/#/fields/{field['image_id']}")
    page.click("#find-similar")
    wait_rendered(page)
    page.fill("#k", "6")
    page.click("#run-search")
    page.wait_for_selector("#hit-grid article")
    print(f"field page to search hits: {time.perf_counter() - started:.2f} s")
    expected = c.search.search(train_id, image_id=field["image_id"], k=6)["hits"]
    hits = page.locator("#hit-grid article")
    assert [hits.nth(i).get_attribute("data-id") for i in range(hits.count())] == [h["id"] for h in expected]
    page.wait_for_function("document.querySelectorAll('.reference').length >= 2")  # the query, its plate's DMSO
    page.wait_for_selector("#hit-grid article canvas")  # thumbnails load as they come into view
    shot(page, "search")
    link = page.url
    assert re.search(r"#/searches/[^/]+$", link)
    moa = next(h["moa"] for h in expected if h["moa"])
    page.fill("#exclude", f"moa:{moa}")
    page.click("#run-search")
    page.wait_for_function("first => location.hash !== first", arg="#" + link.split("#", 1)[1])
    page.wait_for_selector("#hit-grid article")
    filtered = c.search.search(train_id, image_id=field["image_id"], k=6, exclude_tags=[f"moa:{moa}"])["hits"]
    hits = page.locator("#hit-grid article")
    assert [hits.nth(i).get_attribute("data-id") for i in range(hits.count())] == [h["id"] for h in filtered]
    assert [h["id"] for h in filtered] != [h["id"] for h in expected]
    goto(page, link)  # the first search, reopened by its URL
    hits = page.locator("#hit-grid article")
    assert [hits.nth(i).get_attribute("data-id") for i in range(hits.count())] == [h["id"] for h in expected]
    assert page.locator("a[href^='#/searches/']").count() >= 2  # both searches in the history
    goto(page, f"{site['url']}/#/search")
    image = c.images.get_image_info(field["image_id"])
    for channel, uri in image["channel_uris"].items():
        page.set_input_files(f"#upload-{channel}", str(uri_to_path(uri)))
    page.click("#run-search")
    page.wait_for_selector("#hit-grid article")
    assert page.locator("#hit-grid article").count() == 10  # the form's default k


def test_evaluation_metrics_map_and_curves(site: dict[str, Any], page: Any) -> None:
    """The runs with their status; the selected run's NSC / NSCB / mAP (as the embedding service computes
    them), per-MOA accuracy, confusion matrix, a map whose every point opens a field, and the training
    curves; the field map has a point per embedded field."""
    c, train_id = site["c"], site["train_id"]
    expected = c.embedding.evaluate_embeddings(train_id)
    goto(page, f"{site['url']}/#/evaluation")
    assert page.locator("table[aria-label='train runs'] tbody tr").count() == 1
    page.wait_for_function("document.querySelector('td[data-score=map]').textContent.endsWith('%')")
    assert page.locator("td[data-score=map]").inner_text() == f"{100 * expected['map']:.1f}%"  # per model
    metrics = page.locator("#metrics").inner_text()
    assert f"NSC\n{100 * expected['nsc']:.1f}%" in metrics and f"mAP\n{100 * expected['map']:.1f}%" in metrics
    assert page.locator("#embedding-map circle").count() == len(expected["points"]) == expected["treatments"]
    assert page.locator("table[aria-label='per-MOA accuracy'] tr").count() == len(expected["per_moa"])
    assert page.locator("table[aria-label='confusion matrix'] tbody tr").count() == len(expected["confusion"]["true"])
    assert page.locator("#curves polyline").count() == 2  # loss and validation NSC over the two epochs
    shot(page, "evaluation")
    page.select_option("#map-level", "field")
    wait_rendered(page)
    fields = c.embedding.profiles(train_id, "field")
    assert page.locator("#embedding-map circle").count() == len(fields)
    page.locator("#embedding-map a").first.click()
    wait_rendered(page)
    assert "/fields/" in page.url and page.locator("canvas#composite").count() == 1
