"""Training internals: networks, losses, crop streams, augmentation and the verified ONNX export."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from bioims.errors import InvalidInput
from bioims.specs import LOSSES, MIN_ROI, EmbeddingSpec
from bioims.store.objects import ObjectStore, path_to_uri
from bioims.training import metadata
from bioims.training.data import INPUT_SCALE, CropStream, FieldRef, augment, crop_shape, split_validation, to_input
from bioims.training.export import ExportMismatch, export_onnx, verify
from bioims.training.losses import Proxies, seed_pair_loss, supcon_loss
from bioims.training.networks import build_network

SHAPE = (3, 16, 16)


def make_spec(network: str = "resnet", roi: int = 32, depth: int = 1, dims: int = 16, **extra) -> EmbeddingSpec:
    return EmbeddingSpec.from_dict({
        "name": "t", "input": {"width": 64, "height": 64, "depth": depth, "channels": ["DAPI", "Tubulin", "Actin"]},
        "segmentation_channel": "DAPI", "roi_size": roi, "min_nucleus_voxels": 10, "embedding_length": dims,
        "network": network, **extra})


# ---------------------------------------------------------------------------------------------- networks
@pytest.mark.parametrize("network", ["resnet", "seed"])
@pytest.mark.parametrize("roi", [32, 48])
@pytest.mark.parametrize("n", [1, 4])
def test_networks_embed_crops_as_unit_rows(network, roi, n):
    torch.manual_seed(0)
    spec = make_spec(network, roi)
    model = build_network(spec).eval()
    assert crop_shape(spec) == (3, roi, roi)
    with torch.no_grad():
        z = model(torch.rand(n, 3, roi, roi))
    assert z.shape == (n, 16) and z.dtype == torch.float32
    assert torch.allclose(z.norm(dim=1), torch.ones(n), atol=1e-5)


@pytest.mark.parametrize("network", ["resnet", "seed"])
def test_networks_train_on_a_batch(network):
    torch.manual_seed(0)
    roi = MIN_ROI[network]
    model = build_network(make_spec(network, roi)).train()
    z = model(torch.rand(3, 3, roi, roi))
    z.sum().backward()
    assert z.shape == (3, 16)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("network", ["resnet", "seed"])
def test_z_stack_networks_take_the_maximum_projection(network):
    torch.manual_seed(0)
    roi = MIN_ROI[network]
    spec = make_spec(network, roi, depth=5)
    assert crop_shape(spec) == (3, 5, roi, roi)
    stack_model = build_network(spec).eval()
    flat_model = build_network(make_spec(network, roi)).eval()
    flat_model.load_state_dict(stack_model.state_dict())
    x = torch.rand(2, 3, 5, roi, roi)
    with torch.no_grad():
        z = stack_model(x)
        expected = flat_model(x.amax(dim=2))
    assert z.shape == (2, 16)
    torch.testing.assert_close(z, expected)


@pytest.mark.parametrize("changes, message", [
    ({"network": "vit"}, "network must be one of resnet, seed"),
    ({"loss": "triplet"}, f"loss must be one of {', '.join(LOSSES)}"),
    ({"network": "seed", "roi": MIN_ROI["seed"] - 1}, "too small for the seed network"),
    ({"network": "resnet", "roi": MIN_ROI["resnet"] - 1}, "too small for the resnet network"),
])
def test_specs_refuse_unknown_networks_losses_and_small_rois(changes, message):
    with pytest.raises(InvalidInput) as e:
        make_spec(**changes)
    assert message in e.value.message


def test_smallest_accepted_rois_build():
    for network, roi in MIN_ROI.items():
        model = build_network(make_spec(network, roi)).eval()
        with torch.no_grad():
            assert model(torch.rand(2, 3, roi, roi)).shape == (2, 16)


# ---------------------------------------------------------------------------------------------- losses
def reference_supcon(z: np.ndarray, labels: np.ndarray, subclasses: np.ndarray, temperature: float) -> float:
    """The documented rule, one anchor at a time."""
    s = z @ z.T / temperature
    losses = []
    for a in range(len(z)):
        others = [j for j in range(len(z)) if j != a]
        positives = [j for j in others if labels[j] == labels[a] and subclasses[j] != subclasses[a]]
        softmax = [j for j in others if subclasses[j] != subclasses[a]]
        if not positives:  # no other compound of the class: own compound's crops, everyone in the softmax
            positives = [j for j in others if labels[j] == labels[a]]
            softmax = others
        if not positives:
            continue
        top = s[a, softmax].max()
        lse = top + np.log(np.exp(s[a, softmax] - top).sum())
        losses.append(-np.mean([s[a, p] - lse for p in positives]))
    return float(np.mean(losses))


# label 0: compounds 0, 1; label 1: compound 2 only (fallback); label 2: compounds 3, 4, 5; label 3: one crop
LABELS = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3])
SUBCLASSES = np.array([0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 5, 5, 6])


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_supcon_matches_a_per_anchor_reference(rng, temperature):
    z = rng.normal(size=(len(LABELS), 8))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    ours = supcon_loss(torch.from_numpy(z), torch.from_numpy(LABELS), torch.from_numpy(SUBCLASSES), temperature)
    assert float(ours) == pytest.approx(reference_supcon(z, LABELS, SUBCLASSES, temperature), rel=1e-9)
    perm = rng.permutation(len(LABELS))
    shuffled = supcon_loss(torch.from_numpy(z[perm]), torch.from_numpy(LABELS[perm]),
                           torch.from_numpy(SUBCLASSES[perm]), temperature)
    assert float(shuffled) == pytest.approx(float(ours), rel=1e-9)


def test_supcon_is_lower_for_aligned_classes_and_has_finite_gradients(rng):
    centres = rng.normal(size=(4, 8))
    raw = torch.tensor(centres[LABELS] + 0.1 * rng.normal(size=(len(LABELS), 8)), requires_grad=True)
    labels, subclasses = torch.from_numpy(LABELS), torch.from_numpy(SUBCLASSES)
    aligned = supcon_loss(F.normalize(raw, dim=1), labels, subclasses, 0.2)
    perm = torch.from_numpy(rng.permutation(len(LABELS)))
    shuffled = supcon_loss(F.normalize(raw, dim=1)[perm], labels, subclasses, 0.2)
    assert float(aligned.detach()) < float(shuffled.detach())
    (aligned + shuffled).backward()
    assert raw.grad is not None and torch.isfinite(raw.grad).all() and raw.grad.abs().sum() > 0


def test_supcon_without_any_positive_is_zero_with_a_zero_gradient():
    for n in (1, 3):
        raw = torch.randn(n, 4, requires_grad=True)
        loss = supcon_loss(F.normalize(raw, dim=1), torch.arange(n), torch.arange(n), 0.2)
        loss.backward()
        assert float(loss.detach()) == 0.0 and torch.isfinite(raw.grad).all()


def test_seed_pair_loss_is_a_per_group_cross_entropy(rng):
    groups, classes, temperature = 3, 4, 0.3
    z = rng.normal(size=(2 * groups * classes, 5))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    anchors, positives = z[:groups * classes], z[groups * classes:]
    terms = []
    for g in range(groups):
        for a in range(classes):
            logits = [anchors[g * classes + a] @ positives[g * classes + p] / temperature for p in range(classes)]
            terms.append(-(logits[a] - np.log(np.sum(np.exp(logits)))))
    ours = seed_pair_loss(torch.from_numpy(z), groups, classes, temperature)
    assert float(ours) == pytest.approx(np.mean(terms), rel=1e-9)


def test_seed_pair_loss_vanishes_for_matching_orthogonal_pairs():
    groups, classes = 2, 4
    basis = torch.eye(classes)
    z = basis.repeat(2 * groups, 1)  # anchors == positives, classes orthogonal
    assert float(seed_pair_loss(z, groups, classes, 0.01)) < 1e-6
    assert float(seed_pair_loss(z, groups, classes, 1.0)) > float(seed_pair_loss(z, groups, classes, 0.1))


def test_proxy_loss_is_lower_at_the_class_proxies():
    torch.manual_seed(0)
    proxies = Proxies(5, 8)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 2])
    at_proxies = F.normalize(proxies.weight, dim=1)[labels].detach()
    elsewhere = F.normalize(torch.randn(len(labels), 8), dim=1)
    with torch.no_grad():
        assert float(proxies(at_proxies, labels, 0.1)) < float(proxies(elsewhere, labels, 0.1))
    z = elsewhere.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([z], lr=0.5)
    losses = []
    for _ in range(10):
        loss = proxies(F.normalize(z, dim=1), labels, 0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


# ---------------------------------------------------------------------------------------------- data
def test_split_validation_takes_whole_wells_of_compounds_with_three_wells():
    fields = [FieldRef(f"c{c}w{w}f{f}", "file:///x.npy", 5, c % 3, c, f"P1-c{c}w{w}")
              for c, wells in enumerate([1, 2, 3, 4, 5, 10]) for w in range(wells) for f in range(3)]
    train, val = split_validation(fields, 0.2, seed=3)
    assert sorted(f.image_id for f in train + val) == sorted(f.image_id for f in fields)
    assert not {f.group for f in train} & {f.group for f in val}
    for c, wells in enumerate([1, 2, 3, 4, 5, 10]):
        held = {f.group for f in val if f.subclass == c}
        assert len(held) == (round(0.2 * wells) if wells >= 3 else 0)
        assert all(sum(g.group == f.group for g in val) == 3 for f in val)  # every field of a held well
    again = split_validation(fields, 0.2, seed=3)
    assert again == (train, val)
    assert split_validation(fields, 0.0, seed=3) == (fields, [])
    other = [split_validation(fields, 0.5, seed=s)[1] for s in range(4)]
    assert any(o != other[0] for o in other)


def write_fields(tmp_path: Path, objects: ObjectStore, cells: list[int], labels: list[int],
                 subclasses: list[int] | None = None) -> list[FieldRef]:
    """One .npy of uint16 crops per field; crop k carries its global id at pixel [0, 0, 0]."""
    rng = np.random.default_rng(1)
    fields, next_id = [], 0
    for i, (n, label) in enumerate(zip(cells, labels)):
        crops = rng.integers(0, 60000, size=(n, *SHAPE), dtype=np.uint16)
        crops[:, 0, 0, 0] = np.arange(next_id, next_id + n)
        next_id += n
        uri = path_to_uri(tmp_path / "crops" / f"field{i}.npy")
        buffer = io.BytesIO()
        np.save(buffer, crops)
        objects.put_bytes(uri, buffer.getvalue())
        fields.append(FieldRef(f"img{i}", uri, n, label, subclasses[i] if subclasses else label, f"w{i}"))
    return fields


def test_an_epoch_yields_every_crop_once_in_batches(tmp_path):
    objects = ObjectStore()
    cells = [7, 12, 5, 9, 11, 3, 8, 10, 6, 4, 13, 2]
    fields = write_fields(tmp_path, objects, cells, [i % 3 for i in range(12)])
    stream = CropStream(objects, fields, shape=SHAPE, batch_size=8, seed=0, chunk_crops=30)
    chunks = stream.chunks(0)
    assert sorted(f.image_id for c in chunks for f in c) == sorted(f.image_id for f in fields)
    batches = list(stream.epoch(0))
    ids = np.concatenate([b.x[:, 0, 0, 0] for b in batches])
    assert all(2 <= len(b.x) <= 8 and b.x.dtype == np.uint16 and b.x.shape[1:] == SHAPE for b in batches)
    assert len(ids) == len(set(ids.tolist()))
    assert len(ids) > sum(cells) - (8 // 2) * len(chunks) and len(ids) >= sum(cells) - 8 * len(chunks)
    by_id = {}
    for f, n in zip(fields, cells):
        start = sum(cells[:int(f.image_id[3:])])
        by_id.update({k: (f.label, f.subclass) for k in range(start, start + n)})
    for b in batches:  # labels and subclasses travel with their crops
        assert [by_id[int(k)] for k in b.x[:, 0, 0, 0]] == list(zip(b.labels.tolist(), b.subclasses.tolist()))
    assert not stream.skipped


def test_epochs_are_a_pure_function_of_seed_and_epoch(tmp_path):
    objects = ObjectStore()
    fields = write_fields(tmp_path, objects, [6] * 10, [i % 2 for i in range(10)])

    def order(seed, epoch):
        stream = CropStream(objects, fields, shape=SHAPE, batch_size=6, seed=seed, chunk_crops=24)
        return [b.x[:, 0, 0, 0].tolist() for b in stream.epoch(epoch)]

    first = order(0, 1)
    assert order(0, 1) == first
    assert order(0, 2) != first
    assert order(1, 1) != first


@pytest.mark.parametrize("per_label, fields_per_chunk", [(6, 3), (6, 5), (6, 6), (9, 9)])
def test_full_chunks_hold_every_label(tmp_path, per_label, fields_per_chunk):
    """Equal fields per label: chunks of a multiple of the labels, or of at least 2 x labels - 1 fields."""
    labels = 3
    fields = [FieldRef(f"i{l}_{k}", "file:///unused.npy", 10, l, l, f"w{l}_{k}")
              for l in range(labels) for k in range(per_label)]
    stream = CropStream(ObjectStore(), fields, shape=SHAPE, batch_size=8, seed=0, chunk_crops=10 * fields_per_chunk)
    assert stream.fields_per_chunk == fields_per_chunk
    for epoch in range(20):
        chunks = stream.chunks(epoch)
        assert sorted(f.image_id for c in chunks for f in c) == sorted(f.image_id for f in fields)
        for chunk in chunks:
            if len(chunk) == fields_per_chunk:
                assert {f.label for f in chunk} == set(range(labels))


def test_chunks_hold_the_labels_in_proportion():
    counts = [3, 12, 6, 9]
    fields = [FieldRef(f"i{l}_{k}", "file:///unused.npy", 10, l, l, f"w{l}_{k}")
              for l, n in enumerate(counts) for k in range(n)]
    stream = CropStream(ObjectStore(), fields, shape=SHAPE, batch_size=8, seed=0, chunk_crops=100)
    share = np.array(counts) / sum(counts)
    for epoch in range(20):
        for chunk in stream.chunks(epoch):
            found = np.bincount([f.label for f in chunk], minlength=len(counts))
            assert np.abs(found - len(chunk) * share).max() < 2.5


def test_unreadable_or_misshapen_crops_are_skipped_and_named(tmp_path):
    objects = ObjectStore()
    fields = write_fields(tmp_path, objects, [5, 5, 5, 5, 5], [0, 1, 0, 1, 0])
    wrong_shape = io.BytesIO()
    np.save(wrong_shape, np.zeros((5, 3, 8, 8), np.uint16))
    objects.put_bytes(fields[1].crops_uri, wrong_shape.getvalue())
    objects.put_bytes(fields[2].crops_uri, b"\x93NUMPY garbage")
    wrong_dtype = io.BytesIO()
    np.save(wrong_dtype, np.zeros((5, *SHAPE), np.float32))
    objects.put_bytes(fields[3].crops_uri, wrong_dtype.getvalue())
    stream = CropStream(objects, fields, shape=SHAPE, batch_size=4, seed=0, chunk_crops=10)
    ids = np.concatenate([b.x[:, 0, 0, 0] for b in stream.epoch(0)])
    assert set(ids.tolist()) <= set(range(5)) | set(range(20, 25))
    assert sorted(stream.skipped) == ["img1", "img2", "img3"]
    for i in (1, 2, 3):
        assert fields[i].crops_uri in stream.skipped[f"img{i}"]
    assert "(3, 8, 8)" in stream.skipped["img1"] and "unreadable" in stream.skipped["img2"]
    assert "float32" in stream.skipped["img3"]
    list(stream.epoch(1))
    assert sorted(stream.skipped) == ["img1", "img2", "img3"]


def test_pair_batches_hold_one_anchor_and_positive_per_class_per_group(tmp_path):
    objects = ObjectStore()
    fields = write_fields(tmp_path, objects, [10] * 8, [i % 4 for i in range(8)])
    stream = CropStream(objects, fields, shape=SHAPE, batch_size=16, seed=0, pairs=True, chunk_crops=1000)
    batches = list(stream.epoch(0))
    assert batches
    for b in batches:
        g, p = b.groups, b.classes
        assert (g, p) == (2, 4) and len(b.x) == 2 * g * p == len(b.labels)
        assert (b.labels[:g * p] == b.labels[g * p:]).all()
        assert (b.labels[:g * p].reshape(g, p) == np.arange(4)).all()
        ids = b.x[:, 0, 0, 0]
        assert (ids[:g * p] != ids[g * p:]).all()  # 20 crops per class: anchor and positive differ
        for k, label in zip(ids.tolist(), b.labels.tolist()):
            assert (k // 10) % 4 == label
    again = CropStream(objects, fields, shape=SHAPE, batch_size=16, seed=0, pairs=True, chunk_crops=1000)
    assert [b.x.tobytes() for b in again.epoch(0)] == [b.x.tobytes() for b in batches]


def test_to_input_scales_to_unit_range():
    x = np.array([[[[0, 65535]]]], np.uint16)
    y = to_input(x)
    assert y.dtype == torch.float32 and y.tolist() == [[[[0.0, 1.0]]]]
    assert INPUT_SCALE == pytest.approx(1 / 65535)


def test_augment_keeps_shape_and_is_deterministic_for_a_seeded_generator():
    x = torch.rand(16, 3, 12, 12)
    a = augment(x, torch.Generator().manual_seed(5))
    b = augment(x, torch.Generator().manual_seed(5))
    c = augment(x, torch.Generator().manual_seed(6))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("shape", [(32, 2, 8, 8), (32, 2, 6, 10), (8, 2, 3, 8, 8)])
def test_augment_only_moves_pixels_without_jitter(shape):
    x = torch.rand(shape)
    y = augment(x, torch.Generator().manual_seed(0), jitter=0.0)
    assert y.shape == x.shape
    torch.testing.assert_close(y.flatten(2).sort(dim=2).values, x.flatten(2).sort(dim=2).values)
    if shape[-1] != shape[-2]:  # non-square: only flips and half turns, crops stay the same shape
        for i in range(shape[0]):
            assert any(torch.equal(y[i], t) for t in (x[i], x[i].flip(-1), x[i].flip(-2), x[i].flip(-1, -2)))


def test_augment_jitter_is_an_affine_map_per_crop_and_channel():
    x = torch.rand(16, 3, 8, 8, dtype=torch.float64)
    y = augment(x, torch.Generator().manual_seed(0), jitter=0.3)
    xs, ys = x.flatten(2).sort(dim=2).values, y.flatten(2).sort(dim=2).values
    for i in range(16):
        for c in range(3):
            slope, intercept = np.polyfit(xs[i, c].numpy(), ys[i, c].numpy(), 1)
            assert slope > 0
            np.testing.assert_allclose(slope * xs[i, c].numpy() + intercept, ys[i, c].numpy(), atol=1e-9)
    assert not torch.allclose(xs, ys)


# ---------------------------------------------------------------------------------------------- export
@pytest.fixture
def exported():
    torch.manual_seed(0)
    spec = make_spec("resnet", 16, dims=8)
    model = build_network(spec)
    crops = np.random.default_rng(0).integers(0, 65535, size=(6, *crop_shape(spec)), dtype=np.uint16)
    properties = {"train_id": "train-1", "spec": spec.to_dict(), "label_map": {"0": "Actin disruptors", "1": "DMSO"},
                  "label_category": "moa", "input_shape": list(crop_shape(spec)), "input_scale": INPUT_SCALE,
                  "embedding_length": 8, "holdout": ["taxol"]}
    return model, export_onnx(model, crops, properties), crops, properties


def test_export_matches_torch_and_carries_its_metadata(exported):
    model, onnx_bytes, crops, properties = exported
    report = verify(model, onnx_bytes, crops)
    assert report["crops"] == 6 and report["max_abs_diff"] <= 1e-4 and report["opset"] == 17
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    assert metadata.decode(session.get_modelmeta().custom_metadata_map) == properties
    with torch.no_grad():
        expected = model.eval()(to_input(crops)).numpy()
    for n in (1, 5):
        out = session.run([metadata.OUTPUT_NAME], {metadata.INPUT_NAME: to_input(crops[:n]).numpy()})[0]
        assert out.shape == (n, 8)
        np.testing.assert_allclose(out, expected[:n], atol=1e-4)


def test_verify_refuses_a_model_changed_after_export(exported):
    model, onnx_bytes, crops, _ = exported
    with torch.no_grad():
        model.head.weight.add_(0.5)
    with pytest.raises(ExportMismatch, match="differs from torch"):
        verify(model, onnx_bytes, crops)


def test_label_counts_in_the_stream_follow_the_fields(tmp_path):
    """Every label of the fields reaches the batches, in the fields' proportions."""
    objects = ObjectStore()
    fields = write_fields(tmp_path, objects, [20, 20, 20, 20, 40, 40], [0, 0, 1, 1, 2, 2])
    stream = CropStream(objects, fields, shape=SHAPE, batch_size=10, seed=0, chunk_crops=60)
    seen = Counter(np.concatenate([b.labels for b in stream.epoch(0)]).tolist())
    assert seen == {0: 40, 1: 40, 2: 80}
