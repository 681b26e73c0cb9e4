"""The ports through which one service reaches another: what each consumer needs of an owner's API.

A service never touches another's tables (:mod:`bioims.services.<name>.tables`); it holds a port of the
owner, passed into its constructor by the composition root (:mod:`bioims.runtime`):

- one machine: the owner's service object itself (in-process calls, as fast as a method call);
- ``bioims serve`` clients and tests: a generated client over HTTP (:mod:`bioims.client`);
- AWS: a generated client over :class:`~bioims.client.transports.LambdaTransport`, invoking the owner's
  ``invoke`` function (its name from ``BIOIMS_FUNCTION_<SERVICE>``).

Every method below is an operation of the owner's contract (:mod:`bioims.contract`), so the three stand in
for each other; results are JSON-ready values (dicts, lists), the same over every transport.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol


class ArtifactsPort(Protocol):
    """The artifact service: the artifact registry, configuration parameters, messages."""

    def create_artifact(self, context_id: str, uri: str, train_id: str = ..., type: str | None = ...,
                        size: int | None = ..., annotations: list[str] | None = ...) -> dict[str, Any]: ...
    def delete_artifacts(self, context_id: str, train_id: str | None = ...) -> dict[str, int]: ...
    def get_train_artifacts(self, train_id: str) -> list[dict[str, Any]]: ...
    def get_parameter(self, parameter: str) -> Any: ...
    def create_message(self, message: str) -> str: ...
    def add_message(self, message_id: str, message: str) -> dict[str, Any]: ...
    def list_messages(self, message_id: str) -> list[dict[str, Any]]: ...


class TagsPort(Protocol):
    """The tags service: tags, image-tag assignments, label categories."""

    def tag_images(self, assignments: dict[str, list[str]], plate_id: str | None = ...) -> int: ...
    def get_image_tags(self, image_id: str) -> list[dict[str, Any]]: ...
    def set_image_tags(self, image_id: str, tags: list[str]) -> list[dict[str, Any]]: ...
    def list_plate_image_tags(self, plate_id: str) -> dict[str, list[str]]: ...
    def ensure_labels(self, category: str, labels: Iterable[str]) -> dict[str, int]: ...


class ImagesPort(Protocol):
    """The image-management service: plates, images and the per-(image, run) result rows."""

    def list_compatible_plates(self, width: int, height: int, depth: int, channels: int) -> list[dict[str, Any]]: ...
    def list_spec_fields(self, spec: str, plate_id: str, preprocessed: bool = ...) -> list[dict[str, Any]]: ...
    def get_image_info(self, image_id: str, train_id: str = ...) -> dict[str, Any]: ...
    def create_image_train_results(self, train_id: str, results: list[dict[str, Any]]) -> dict[str, int]: ...
    def delete_image_train_results(self, train_id: str) -> dict[str, int]: ...


class TrainingPort(Protocol):
    """The training service: embedding specs and train runs."""

    def get_embedding_info(self, name: str) -> dict[str, Any]: ...
    def get_compatible_plates(self, name: str) -> list[dict[str, Any]]: ...
    def get_training(self, train_id: str) -> dict[str, Any]: ...
    def get_embedding_trainings(self, name: str) -> list[dict[str, Any]]: ...


class EmbeddingPort(Protocol):
    """The embedding service: the embeddings of a train run."""

    def list_plate_embeddings(self, train_id: str) -> list[dict[str, Any]]: ...
    def get_image_embedding(self, image_id: str, train_id: str) -> dict[str, Any]: ...


class RunnerPort(Protocol):
    """Starts and describes workflows (the local process pool, or Step Functions on AWS)."""

    def start(self, workflow: str, params: dict[str, Any]) -> str: ...
    def describe(self, execution_id: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SpecField:
    """A valid field of a plate as a spec's consumers see it (:meth:`ImagesPort.list_spec_fields`):
    ``plate`` / ``well`` / ``site`` are the source ids, ``cells`` and ``crops_uri`` the spec's
    preprocessing result (None when not preprocessed under it), ``metadata`` the image row's metadata
    (``compound``, ``concentration``, ``moa``, ``batch``, ...), ``channels`` and ``channel_uris`` its images."""

    image_id: str
    plate_id: str
    plate: str
    well: str
    site: str
    batch: str | None
    metadata: dict[str, Any]
    cells: int | None
    crops_uri: str | None
    channels: list[str] | None = None
    channel_uris: dict[str, str] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpecField:
        return cls(**{name: d.get(name) for name in cls.__dataclass_fields__})  # type: ignore[arg-type]

    @property
    def compound(self) -> str | None:
        return self.metadata.get("compound")

    def profile_metadata(self) -> dict[str, Any]:
        """pycytominer-style ``Metadata_*`` columns of the field."""
        m = self.metadata
        return {"Metadata_Plate": self.plate, "Metadata_Well": self.well, "Metadata_Site": self.site,
                "Metadata_Batch": self.batch, "Metadata_Compound": m.get("compound"),
                "Metadata_Concentration": m.get("concentration"), "Metadata_MoA": m.get("moa")}

    def image_columns(self) -> dict[str, str]:
        """CytoTable's ``Image_FileName_<Ch>`` and ``Image_PathName_<Ch>`` of each channel, in channel order: the
        file (or OME-Zarr image) name with its ``#c=N`` channel fragment, and its folder's URI."""
        columns = {}
        for channel in self.channels or ():
            folder, _, name = (self.channel_uris or {}).get(channel, "").rpartition("/")
            columns[f"Image_FileName_{channel}"], columns[f"Image_PathName_{channel}"] = name, folder
        return columns


def spec_fields(images: ImagesPort, spec: str, plate_ids: Iterable[str], *,
                preprocessed: bool = True) -> list[SpecField]:
    """The valid fields of ``plate_ids`` (only those preprocessed under ``spec`` if ``preprocessed``),
    sorted by plate then image id: one call per plate. Raises NotFound for an unknown plate."""
    return [SpecField.from_dict(d) for plate_id in plate_ids
            for d in images.list_spec_fields(spec, plate_id, preprocessed)]
