from __future__ import annotations

import copy

import pytest

from bioims.errors import Conflict, InvalidInput, NotFound
from bioims.specs import EmbeddingSpec

SPEC = {"name": "bbbc021-demo",
        "input": {"width": 1280, "height": 1024, "depth": 1, "channels": ["DAPI", "Tubulin", "Actin"]},
        "segmentation_channel": "DAPI", "roi_size": 128, "min_nucleus_voxels": 200, "embedding_length": 256}


def with_(**changes):
    spec = copy.deepcopy(SPEC)
    for path, value in changes.items():
        target = spec
        *parents, leaf = path.split("__")
        for p in parents:
            target = target.setdefault(p, {})
        if value is ...:
            del target[leaf]
        else:
            target[leaf] = value
    return spec


def test_the_documented_example_is_valid_with_defaults():
    spec = EmbeddingSpec.from_dict(SPEC)
    assert spec.segmentation_index == 0 and spec.network == "resnet" and spec.loss == "proxy"
    assert spec.flatfield.sigma == 50.0 and spec.flatfield.cutoff_percentile == 30.0
    assert spec.normalization.clip_percentile == 99.0 and spec.training.temperature == 0.1
    assert EmbeddingSpec.from_dict(spec.to_dict()) == spec
    tuned = EmbeddingSpec.from_dict(with_(network="seed", loss="seed", training__epochs=3, flatfield__sigma=20))
    assert (tuned.network, tuned.loss, tuned.training.epochs, tuned.flatfield.sigma) == ("seed", "seed", 3, 20.0)


@pytest.mark.parametrize("changes, message", [
    ({"colour": "red"}, "unknown key(s) in spec: colour"),
    ({"roi_size": ...}, "missing required key 'roi_size'"),
    ({"name": "has space"}, "spec name"),
    ({"input__channels": []}, "non-empty list"),
    ({"input__channels": ["A", "A"]}, "distinct"),
    ({"input__width": "1280"}, "input width must be an integer"),
    ({"input__extra": 1}, "unknown key(s) in input: extra"),
    ({"segmentation_channel": "GFP"}, "not one of the input channels"),
    ({"roi_size": 4}, "roi_size must be an integer in [8, 4096]"),
    ({"min_nucleus_voxels": 0}, "min_nucleus_voxels"),
    ({"network": "vit"}, "network must be one of resnet, seed"),
    ({"training__epochs": 0}, "training.epochs must be >= 1"),
    ({"training__learning_rate": "fast"}, "training.learning_rate must be a float"),
    ({"training__nope": 1}, "unknown key(s) in training: nope"),
    ({"flatfield__cutoff_percentile": 0}, "cutoff_percentile"),
])
def test_invalid_specs_are_refused_with_the_reason(changes, message):
    with pytest.raises(InvalidInput) as e:
        EmbeddingSpec.from_dict(with_(**changes))
    assert message in e.value.message


def test_spec_json_errors():
    with pytest.raises(InvalidInput, match="spec.json is not valid JSON"):
        EmbeddingSpec.from_json("{", "spec.json")
    with pytest.raises(InvalidInput, match="must be a JSON object"):
        EmbeddingSpec.from_json("[1]")


def test_training_service_registers_specs(container):
    training = container.training
    created = training.create_embedding(SPEC)
    assert created["training"]["epochs"] == 30 and created["input"]["channels"] == ["DAPI", "Tubulin", "Actin"]
    with pytest.raises(Conflict):
        training.create_embedding(SPEC)
    assert training.get_embedding_info("bbbc021-demo") == created
    assert [s["name"] for s in training.list_embeddings()] == ["bbbc021-demo"]
    assert training.get_compatible_plates("bbbc021-demo") == []
    assert training.delete_embedding("bbbc021-demo") == {"deleted": "bbbc021-demo"}
    with pytest.raises(NotFound):
        training.get_embedding_info("bbbc021-demo")
    with pytest.raises(InvalidInput):
        training.create_embedding({"name": "x"})
