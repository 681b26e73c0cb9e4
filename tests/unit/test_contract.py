"""The contract matches the services it describes, and validates what clients send."""

from __future__ import annotations

import inspect

import pytest
from pydantic import TypeAdapter

from bioims.contract import SERVICES, service, validate
from bioims.errors import InvalidInput
from bioims.services.artifact import ArtifactService
from bioims.services.embedding import EmbeddingService
from bioims.services.image_management import ImageManagementService
from bioims.services.search import SearchService
from bioims.services.tags import TagsService
from bioims.services.training import TrainingService

SERVICE_CLASSES = {"artifact": ArtifactService, "tags": TagsService, "image-management": ImageManagementService,
                   "training": TrainingService, "embedding": EmbeddingService, "search": SearchService}
OPERATIONS = [(name, op) for name, s in SERVICES.items() for op in s.operations]


def _public_parameters(cls: type, function: str) -> dict[str, inspect.Parameter]:
    signature = inspect.signature(getattr(cls, function))
    return {n: p for n, p in signature.parameters.items() if n != "self" and not n.startswith("_")
            and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


@pytest.mark.parametrize(("name", "op"), OPERATIONS, ids=[f"{n}.{op.method}" for n, op in OPERATIONS])
def test_request_fields_are_the_service_method_parameters(name, op):
    parameters = _public_parameters(SERVICE_CLASSES[name], op.function)
    fields = op.request.model_fields
    assert list(fields) == list(parameters), f"{op.method}: fields {list(fields)} != parameters {list(parameters)}"
    for field_name, field in fields.items():
        p = parameters[field_name]
        if p.default is p.empty:
            assert field.is_required(), f"{op.method}.{field_name} is required by the service"
        else:
            assert not field.is_required() and field.default == p.default, \
                f"{op.method}.{field_name}: default {field.default!r} != the service's {p.default!r}"


@pytest.mark.parametrize(("name", "op"), OPERATIONS, ids=[f"{n}.{op.method}" for n, op in OPERATIONS])
def test_every_operation_documents_its_request_and_response(name, op):
    assert op.request.__doc__ and op.summary
    op.request.model_json_schema()
    TypeAdapter(op.http_response).json_schema(mode="serialization")


def test_operation_names_and_routes_are_unique_per_service():
    for s in SERVICES.values():
        methods = [op.method for op in s.operations]
        routes = [op.route for op in s.operations]
        assert len(set(methods)) == len(methods), s.name
        assert len(set(routes)) == len(routes), s.name


def test_names_given_camel_or_snake_case_and_seed_aliases():
    op = service("artifact").find("getParameter")
    assert validate(op, {"parameter": "x"}) == validate(op, {"key": "x"}) == {"parameter": "x"}
    op = service("artifact").find("getArtifacts")
    assert validate(op, {"contextId": "c", "trainId": "t"}) == {"context_id": "c", "train_id": "t"}


@pytest.mark.parametrize("service_name, event, expected", [
    # events as the seed's clients send them (their argument names), and what the operation receives
    ("artifact", {"method": "getParameter", "key": "k"}, {"parameter": "k"}),
    ("artifact", {"method": "setDefaultTrainId", "value": "t-1"}, {"train_id": "t-1"}),
    ("tags", {"method": "getTagByValue", "tagValue": "compound:taxol"}, {"value": "compound:taxol"}),
    ("image-management", {"method": "describeExecution", "executionArn": "e-1"}, {"execution_id": "e-1"}),
    ("image-management", {"method": "updateImageTags", "imageId": "i-1", "tagList": ["moa:Actin disruptors"]},
     {"image_id": "i-1", "tags": ["moa:Actin disruptors"]}),
    ("artifact", {"method": "createArtifact", "artifact": {
        "contextId": "p-1", "trainId": "origin", "artifact": "s3key#artifact/plate/p-1/thumb.png",
        "description": "plate thumbnail"}},
     {"context_id": "p-1", "train_id": "origin", "key": "artifact/plate/p-1/thumb.png",
      "annotations": ["plate thumbnail"]}),
    ("artifact", {"method": "createArtifact", "artifact": {
        "contextId": "c", "trainId": "t", "artifact": "s3://b/k", "annotation": "a"}},
     {"context_id": "c", "train_id": "t", "uri": "s3://b/k", "annotations": ["a"]}),
    ("artifact", {"method": "createDescribeStacksArtifact", "contextId": "c", "trainId": "t"},
     {"context_id": "c", "train_id": "t"}),
    ("image-management", {"method": "populateSourcePlate", "inputBucket": "bbbc021", "inputKey": "plates/p1.json"},
     {"manifest": "s3://bbbc021/plates/p1.json"}),
    ("image-management", {"method": "uploadSourcePlate", "inputBucket": "b", "inputKey": "/m.json"},
     {"manifest": "s3://b/m.json"}),
    ("image-management", {"method": "createImageTrainResult", "imageId": "i-1", "trainId": "t-1",
                          "embeddingVector": [0.5, -1.0], "roiEmbeddingKey": "artifact/train/t-1/i-1.npy"},
     {"image_id": "i-1", "train_id": "t-1", "embedding": [0.5, -1.0],
      "results": {"roi_embedding_key": "artifact/train/t-1/i-1.npy"}}),
    ("tags", {"method": "updateLabel", "category": "moa", "oldlabel": "DMSO", "newlabel": "vehicle"},
     {"category": "moa", "old_label": "DMSO", "new_label": "vehicle"}),
    ("image-management", {"method": "processPlate", "plateId": "p-1", "embeddingName": "bbbc021-1"},
     {"plate_id": "p-1", "spec": "bbbc021-1"}),
    ("embedding", {"method": "executeImageEmbeddingCompute", "trainId": "t-1", "imageId": "i-1"},
     {"train_id": "t-1", "image_id": "i-1"}),
    ("search", {"method": "startTagLoad", "embeddingName": "bbbc021-1"}, {"spec": "bbbc021-1"}),
    ("search", {"method": "loadTagLabelMap"}, {}),
    ("search", {"method": "submitSearch", "search": {
        "trainId": "t-1", "queryImageId": "i-1", "metric": "Euclidean", "maxHits": 25, "requireMoa": "true",
        "inclusionTags": ["moa:Actin disruptors"], "exclusionTags": ["compound:taxol"]}},
     {"train_id": "t-1", "image_id": "i-1", "metric": "euclidean", "k": 25, "require_moa": True,
      "include_tags": ["moa:Actin disruptors"], "exclude_tags": ["compound:taxol"]}),
    ("search", {"method": "searchByImageId", "trainId": "t-1", "imageId": "i-1"}, {"train_id": "t-1", "image_id": "i-1"}),
    ("search", {"method": "getSearchStatus", "searchId": "s-1"}, {"search_id": "s-1"}),
    ("artifact", {"method": "addAnnotation", "contextId": "c", "trainId": "t", "artifact": "s3key#a/b.png",
                  "annotation": "checked"}, {"context_id": "c", "train_id": "t", "key": "a/b.png", "annotation": "checked"}),
    ("tags", {"method": "createTag", "tagValue": "moa:Eg5 inhibitors"}, {"value": "moa:Eg5 inhibitors"}),
    ("image-management", {"method": "describeExecution", "ExecutionArn": "e-1"}, {"execution_id": "e-1"}),
    ("training", {"method": "getTrainingJobInfo", "trainingJobName": "t-1"}, {"train_id": "t-1"}),
    ("search", {"method": "loadTagLabelMap", "trainId": "t-1"}, {"train_id": "t-1"}),
    ("training", {"method": "createTraining", "training": {
        "embeddingName": "bbbc021-1", "trainId": "t-1", "messageId": "m-1", "filterBucket": "resources",
        "filterKey": "filters/taxol.txt"}},
     {"spec": "bbbc021-1", "train_id": "t-1", "message_id": "m-1", "filter_uri": "s3://resources/filters/taxol.txt"}),
    ("training", {"method": "train", "embeddingName": "bbbc021-1", "filterBucket": "b", "filterKey": "f.txt",
                  "executeProcessPlate": "true", "useSpot": "false"},
     {"spec": "bbbc021-1", "filter_uri": "s3://b/f.txt"}),
    ("training", {"method": "updateTraining", "trainId": "t-1", "attribute": "messageId", "value": "m-2"},
     {"train_id": "t-1", "attribute": "messageId", "value": "m-2"}),
    ("training", {"method": "createEmbedding", "embedding": {
        "embeddingName": "bbbc021-1", "imageMethodArn": "arn:aws:lambda:us-east-1:1:function:image",
        "imagePostMethodArn": "arn:aws:lambda:us-east-1:1:function:post", "inputHeight": 1024,
        "inputWidth": 1280, "inputDepth": 1, "inputChannels": ["DAPI", "Tubulin", "Actin"], "roiHeight": 128,
        "roiWidth": 128, "roiDepth": 1, "embeddingVectorLength": 256, "comments": "BBBC021",
        "trainingHyperparameters": {"epochs": 15, "learning_rate": 0.001}, "trainingInstanceType": "ml.p3.2xlarge"}},
     {"spec": {"name": "bbbc021-1", "input": {"width": 1280, "height": 1024, "depth": 1,
                                              "channels": ["DAPI", "Tubulin", "Actin"]},
               "segmentation_channel": "DAPI", "roi_size": 128, "min_nucleus_voxels": 200, "embedding_length": 256,
               "network": "seed", "loss": "seed",
               "training": {"epochs": 15, "learning_rate": 0.001, "compute": "gpu"}}}),
])
def test_seed_events_validate_with_the_seed_argument_names(service_name, event, expected):
    op = service(service_name).find(event["method"])
    assert validate(op, {k: v for k, v in event.items() if k != "method"}) == expected


@pytest.mark.parametrize("args, message", [
    ({"context_id": "c", "extra": 1}, "extra: unknown argument"),
    ({}, "context_id: Field required"),
    ({"context_id": 5}, "context_id: Input should be a valid string"),
    ({"context_id": "x" * 3000}, "context_id: String should have at most 256 characters"),
    ({"context_id": "a\x00b"}, "context_id: String should match pattern"),
    ({"context_id": "c", "train_id": "../../etc"}, "train_id: String should match pattern"),
])
def test_invalid_arguments_name_the_field(args, message):
    with pytest.raises(InvalidInput, match="invalid arguments for getArtifacts") as e:
        validate(service("artifact").find("getArtifacts"), args)
    assert message in str(e.value)
    assert len(str(e.value)) < 500


SEED_EVENTS = [  # the rest of the seed's operations, as its handlers read them (aws-samples/bioimage-search)
    ("artifact", "getArtifacts", {"contextId": "c", "trainId": "t"}),
    ("artifact", "deleteArtifacts", {"contextId": "c", "trainId": "t"}),
    ("artifact", "setParameter", {"key": "k", "value": 3}),
    ("artifact", "getHistory", {"key": "k"}),
    ("artifact", "getAll", {}),
    ("artifact", "getDefaultTrainId", {}),
    ("artifact", "deleteParameter", {"key": "k"}),
    ("artifact", "createMessage", {"message": "m"}),
    ("artifact", "addMessage", {"messageId": "m", "message": "x"}),
    ("artifact", "getMessage", {"messageId": "m"}),
    ("artifact", "listMessage", {"messageId": "m"}),
    ("artifact", "deleteMessage", {"messageId": "m"}),
    ("tags", "createCategory", {"category": "c", "description": "d"}),
    ("tags", "updateCategoryDescription", {"category": "c", "description": "d"}),
    ("tags", "deleteCategory", {"category": "c"}),
    ("tags", "createLabel", {"category": "c", "label": "l"}),
    ("tags", "listLabels", {"category": "c"}),
    ("tags", "listCategories", {}),
    ("tags", "getIndex", {"category": "c", "label": "l"}),
    ("tags", "getTagById", {"tagId": 3}),
    ("tags", "getAllTags", {}),
    ("image-management", "getImageInfo", {"imageId": "i", "trainId": "t"}),
    ("image-management", "getImagesByPlateId", {"plateId": "p"}),
    ("image-management", "getImagesByPlateIdAndTrainId", {"plateId": "p", "trainId": "t"}),
    ("image-management", "getImageIdsByPlateId", {"plateId": "p"}),
    ("image-management", "getWellsByPlateId", {"plateId": "p"}),
    ("image-management", "getImagesByPlateAndWellId", {"plateId": "p", "wellId": "w"}),
    ("image-management", "getPlateImageStatus", {"plateId": "p"}),
    ("image-management", "createPlateMessageId", {"plateId": "p"}),
    ("image-management", "getPlateMessageId", {"plateId": "p"}),
    ("image-management", "validatePlate", {"plateId": "p"}),
    ("image-management", "listCompatiblePlates", {"width": 1280, "height": 1024, "depth": 1, "channels": 3}),
    ("image-management", "getImageTags", {"imageId": "i"}),
    ("training", "getTraining", {"trainId": "t"}),
    ("training", "deleteTraining", {"trainId": "t"}),
    ("training", "getEmbeddingInfo", {"embeddingName": "e"}),
    ("training", "getEmbeddingTrainings", {"embeddingName": "e"}),
    ("training", "deleteEmbedding", {"embeddingName": "e"}),
    ("search", "getSearchResults", {"searchId": "s"}),
    ("search", "deleteTraining", {"trainId": "t"}),
    ("search", "startTrainingLoad", {"trainId": "t"}),
    ("embedding", "startComputeEmbedding", {"trainId": "t"}),
    ("embedding", "startComputePlateEmbedding", {"trainId": "t", "plateId": "p"}),
]
SEED_ONLY = {  # the seed's operations bioims has no counterpart of, each explained in its service's README
    "image-management": ["applyInspectionResult"], "training": ["startTrainingBuild"],
    "search": ["createSearchResults", "updateSearchStatus", "logTrainList"]}


@pytest.mark.parametrize("service_name, method, args", SEED_EVENTS, ids=[f"{s}.{m}" for s, m, _ in SEED_EVENTS])
def test_the_rest_of_the_seed_operations_take_the_seed_arguments(service_name, method, args):
    op = service(service_name).find(method)
    validated = validate(op, args)
    assert {op.path_field(v) for v in op.path_variables} <= set(validated)  # the route's variables are filled
    assert len(validated) == len(args)  # every argument the seed sends reaches the operation


@pytest.mark.parametrize("service_name", sorted(SEED_ONLY))
def test_the_seed_operations_bioims_does_without_are_explained(service_name):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "services" / service_name / "README.md").read_text()
    for method in SEED_ONLY[service_name]:
        with pytest.raises(InvalidInput, match=f"unknown method '{method}'"):
            service(service_name).find(method)
        assert f"`{method}`" in readme, method


@pytest.mark.parametrize("args, message", [
    ({"artifact": {"contextId": "c", "artifact": "s3key#k"}, "contextId": "d"}, "'contextId' is given both"),
    ({"artifact": {"contextId": "c", "artifact": 5}}, "artifact must be a string"),
    ({"contextId": "c"}, "give the object as uri or as key"),
    ({"contextId": "c", "uri": "s3://b/k", "key": "k"}, "give the object as uri or as key"),
])
def test_the_seed_artifact_event_is_refused_when_ambiguous(args, message):
    with pytest.raises(InvalidInput, match="invalid arguments for createArtifact") as e:
        validate(service("artifact").find("createArtifact"), args)
    assert message in str(e.value)


@pytest.mark.parametrize("method, args, message", [
    ("populateSourcePlate", {"inputBucket": "b"}, "inputBucket and inputKey must both be non-empty strings"),
    ("populateSourcePlate", {"inputBucket": "b", "inputKey": "k", "manifest": "s3://b/k"}, "not both"),
    ("createEmbedding", {"embedding": {"embeddingName": "e", "inputChannels": 3}}, "inputChannels must list"),
    ("train", {"embeddingName": "e", "useSpot": "maybe"}, "useSpot must be a boolean"),
    ("createTraining", {"training": {"embeddingName": "e"}, "embeddingName": "f"}, "'embeddingName' is given both"),
    ("createEmbedding", {"embedding": {"embeddingName": "e", "inputChannels": ["a"], "roiWidth": 64,
                                       "roiHeight": 32}}, "roiWidth and roiHeight must be equal"),
    ("createEmbedding", {"embedding": {"embeddingName": "e", "modelTrainingScriptBucket": "b",
                                       "modelTrainingScriptKey": "train.py"}}, "custom training scripts"),
    ("createEmbedding", {"embedding": {"embeddingName": "e", "inputChannels": ["a"], "trainingHyperparameters":
                                       {"momentum": 0.9}}}, "unknown training hyperparameter 'momentum'"),
])
def test_a_seed_event_that_bioims_cannot_honour_is_refused_with_the_reason(method, args, message):
    op = next(op for name in ("image-management", "training") for op in service(name).operations
              if op.method == method)
    with pytest.raises(InvalidInput, match=f"invalid arguments for {method}") as e:
        validate(op, args)
    assert message in str(e.value)


def test_a_string_is_never_a_list_and_nesting_is_bounded():
    op = service("artifact").find("createArtifact")
    with pytest.raises(InvalidInput, match="annotations: Input should be a valid list"):
        validate(op, {"context_id": "c", "uri": "file:///x", "annotations": "abc"})
    deep: object = "x"
    for _ in range(40):
        deep = [deep]
    with pytest.raises(InvalidInput, match="nested deeper than 32"):
        validate(service("artifact").find("setParameter"), {"parameter": "p", "value": deep})


def test_unknown_service_and_method():
    with pytest.raises(InvalidInput, match="unknown service"):
        service("nope")
    with pytest.raises(InvalidInput, match="unknown method 'nope' for service artifact"):
        service("artifact").find("nope")


def _unbounded(schema: object, path: str = "") -> list[str]:
    """Paths of strings without maxLength, arrays without maxItems, integers without bounds in a JSON schema."""
    found: list[str] = []
    if isinstance(schema, dict):
        kind = schema.get("type")
        if "enum" not in schema and "const" not in schema:
            if kind == "string" and "maxLength" not in schema:
                found.append(path or "/")
            if kind == "array" and "maxItems" not in schema:
                found.append(path or "/")
            if kind == "integer" and ("maximum" not in schema or "minimum" not in schema):
                found.append(path or "/")
        for key, value in schema.items():
            found += _unbounded(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            found += _unbounded(value, f"{path}/{i}")
    return found


@pytest.mark.parametrize(("name", "op"), OPERATIONS, ids=[f"{n}.{op.method}" for n, op in OPERATIONS])
def test_every_request_value_is_bounded(name, op):
    """Strings have a maximum length, lists a maximum size, integers a range: nothing a client sends can
    exceed what the tables store or what a server should hold."""
    assert _unbounded(op.request.model_json_schema()) == []
