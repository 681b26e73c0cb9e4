from __future__ import annotations

import pytest

from bioims.errors import Conflict, InvalidInput, NotFound
from bioims.services.tags import TagsService
from bioims.services.tags.service import tag_type
from bioims.services.tags.tables import TagsTables


@pytest.fixture
def tags_svc(database):
    tables = TagsTables(database)
    tables.create()
    return TagsService(tables)


def test_tags_get_stable_unique_ids(tags_svc):
    a = tags_svc.create_tag("compound:ALLN")
    assert a == {"tag_id": 1, "value": "compound:ALLN", "type": "compound"}
    ids = tags_svc.ensure_tags(["moa:DMSO", "compound:ALLN", "batch:Week1"])
    assert ids["compound:ALLN"] == 1
    assert sorted(ids.values()) == [1, 2, 3]
    assert tags_svc.ensure_tags(["moa:DMSO"]) == {"moa:DMSO": ids["moa:DMSO"]}
    assert tags_svc.get_tag_by_id(ids["batch:Week1"])["value"] == "batch:Week1"
    assert tags_svc.get_tag_by_value("moa:DMSO")["tag_id"] == ids["moa:DMSO"]
    assert [t["value"] for t in tags_svc.get_all_tags("compound")] == ["compound:ALLN"]
    assert len(tags_svc.get_all_tags()) == 3


def test_tag_errors(tags_svc):
    tags_svc.create_tag("x")
    with pytest.raises(Conflict, match="already exists"):
        tags_svc.create_tag("x")
    with pytest.raises(NotFound):
        tags_svc.get_tag_by_value("nope")
    with pytest.raises(NotFound):
        tags_svc.get_tag_by_id(999)
    with pytest.raises(InvalidInput, match="integer"):
        tags_svc.get_tag_by_id("abc")
    with pytest.raises(InvalidInput, match="non-empty"):
        tags_svc.create_tag("  ")
    assert tag_type("plain") == "" and tag_type("moa:a:b") == "moa"


def test_image_tag_assignment(tags_svc):
    assert tags_svc.tag_images({"img1": ["compound:A", "moa:M"], "img2": ["compound:A"]}, plate_id="p") == 3
    assert [t["value"] for t in tags_svc.get_image_tags("img1")] == ["compound:A", "moa:M"]
    assert sorted(tags_svc.get_images_by_tag("compound:A")) == ["img1", "img2"]
    tags_svc.set_image_tags("img1", ["moa:M", "batch:W1"])
    assert {t["value"] for t in tags_svc.get_image_tags("img1")} == {"moa:M", "batch:W1"}
    assert tags_svc.get_images_by_tag("compound:A") == ["img2"]
    tags_svc.remove_image_tags("img2", ["compound:A"])
    assert tags_svc.get_image_tags("img2") == []
    with pytest.raises(InvalidInput, match="list"):
        tags_svc.add_image_tags("img2", "compound:A")


def test_labels_have_stable_indices(tags_svc):
    tags_svc.create_category("moa", "mechanism of action")
    assert tags_svc.create_label("moa", "DMSO") == 0
    assert tags_svc.create_label("moa", "Actin disruptors") == 1
    assert tags_svc.ensure_labels("moa", ["Eg5 inhibitors", "DMSO"]) == {"DMSO": 0, "Actin disruptors": 1, "Eg5 inhibitors": 2}
    assert tags_svc.get_index("moa", "Eg5 inhibitors") == 2
    assert [l["label"] for l in tags_svc.list_labels("moa")] == ["DMSO", "Actin disruptors", "Eg5 inhibitors"]
    tags_svc.update_label_description("moa", "DMSO", "control")
    assert tags_svc.list_labels("moa")[0]["description"] == "control"
    assert tags_svc.get_index("moa", "DMSO") == 0
    tags_svc.update_category_description("moa", "MOA")
    assert tags_svc.list_categories() == [{"category": "moa", "description": "MOA", "created_at": tags_svc.list_categories()[0]["created_at"]}]


def test_a_label_is_renamed_keeping_its_index_and_a_rename_resumes(tags_svc):
    tags_svc.create_category("moa")
    tags_svc.create_label("moa", "DMSO", "control")
    tags_svc.create_label("moa", "Actin disruptors")
    renamed = tags_svc.update_label("moa", "DMSO", "vehicle")
    assert (renamed["label"], renamed["index"], renamed["description"]) == ("vehicle", 0, "control")
    assert [l["label"] for l in tags_svc.list_labels("moa")] == ["vehicle", "Actin disruptors"]
    with pytest.raises(NotFound):
        tags_svc.update_label("moa", "DMSO", "x")
    with pytest.raises(Conflict, match="'Actin disruptors' already exists"):
        tags_svc.update_label("moa", "vehicle", "Actin disruptors")
    # a rename killed after writing the new row: both rows hold index 1; running it again finishes it
    tags_svc._t.labels("moa", "actin", index=1).save()
    assert tags_svc.update_label("moa", "Actin disruptors", "actin")["index"] == 1
    assert [(l["label"], l["index"]) for l in tags_svc.list_labels("moa")] == [("vehicle", 0), ("actin", 1)]


def test_label_errors_and_delete(tags_svc):
    with pytest.raises(NotFound):
        tags_svc.create_label("nope", "x")
    tags_svc.create_category("c")
    with pytest.raises(Conflict):
        tags_svc.create_category("c")
    tags_svc.create_label("c", "a")
    with pytest.raises(Conflict):
        tags_svc.create_label("c", "a")
    with pytest.raises(NotFound):
        tags_svc.get_index("c", "b")
    assert tags_svc.delete_category("c") == {"deleted_labels": 1}
    with pytest.raises(NotFound):
        tags_svc.list_labels("c")
    assert tags_svc.ensure_labels("c", ["z"]) == {"z": 0}  # recreated from scratch
