"""Tags service: tags, label categories with stable indices, image-tag assignment.

A tag is a string ``type:value`` (``compound:ALLN``, ``moa:Protein degradation``, ``plate:Week1_22123``,
``batch:Week1``, ``concentration:0.3``) with a stable integer id. A label category (e.g. ``moa``) holds
labels with stable integer indices 0, 1, 2, ... in creation order: the class indices used for training.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pynamodb.exceptions import PutError

from ...errors import Conflict, InvalidInput, NotFound
from ...store.tables import condition_failed, to_dict
from .tables import TagsTables
from ...ids import utcnow

_TAG_COUNTER = "tag_id"
MAX_TAG_LENGTH = 512


def tag_type(value: str) -> str:
    """``"compound:ALLN"`` -> ``"compound"``; a tag without ``:`` has type ``""``."""
    return value.split(":", 1)[0] if ":" in value else ""


def _check_tag(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"a tag must be a non-empty string, got {value!r}")
    if len(value) > MAX_TAG_LENGTH:
        raise InvalidInput(f"tag longer than {MAX_TAG_LENGTH} characters: {value[:40]!r}...")
    return value


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must be a non-empty string, got {value!r}")
    return value


class TagsService:
    """Use-cases of the tags service (ports: the bound tables)."""

    def __init__(self, tables: TagsTables) -> None:
        self._t = tables

    # ================================================================= tags
    def create_tag(self, value: str) -> dict[str, Any]:
        """Create a tag; :class:`Conflict` if it exists."""
        _check_tag(value)
        if self._find(value) is not None:
            raise Conflict(f"tag {value!r} already exists")
        return self._tag_dict(self._ensure_one(value))

    def ensure_tags(self, values: Iterable[str]) -> dict[str, int]:
        """Get or create every tag; returns value -> tag id (idempotent, safe under concurrency)."""
        wanted = sorted({_check_tag(v) for v in values})
        found = {row.value: int(row.tag_id) for row in self._t.tags.batch_get(wanted)} if wanted else {}
        missing = [v for v in wanted if v not in found]
        if missing:
            ids = self._allocate(len(missing))
            for value, tag_id in zip(missing, ids):
                found[value] = int(self._ensure_one(value, tag_id).tag_id)
        return found

    def get_tag_by_value(self, value: str) -> dict[str, Any]:
        row = self._find(_check_tag(value))
        if row is None:
            raise NotFound(f"no tag {value!r}")
        return self._tag_dict(row)

    def get_tag_by_id(self, tag_id: int) -> dict[str, Any]:
        tid = self._check_id(tag_id)
        rows = list(self._t.tags.by_id.query(tid, limit=1))
        if not rows:
            raise NotFound(f"no tag with id {tid}")
        return self._tag_dict(rows[0])

    def get_all_tags(self, type: str | None = None) -> list[dict[str, Any]]:
        """Every tag (or every tag of one type), sorted by id."""
        rows = self._t.tags.by_type.query(type) if type else self._t.tags.scan()
        return sorted((self._tag_dict(r) for r in rows), key=lambda d: d["tag_id"])

    def _find(self, value: str) -> Any:
        try:
            return self._t.tags.get(value)
        except self._t.tags.DoesNotExist:
            return None

    def _allocate(self, n: int) -> range:
        """Reserve ``n`` consecutive tag ids with one atomic counter update."""
        counter = self._t.counters(_TAG_COUNTER)
        counter.update(actions=[self._t.counters.value.add(n)])
        end = int(counter.value)
        return range(end - n + 1, end + 1)

    def _ensure_one(self, value: str, tag_id: int | None = None) -> Any:
        tag_id = tag_id if tag_id is not None else self._allocate(1)[0]
        row = self._t.tags(value, tag_id=tag_id, type=tag_type(value) or None, created_at=utcnow())
        try:
            row.save(condition=self._t.tags.value.does_not_exist())
            return row
        except PutError as e:  # created concurrently: the first writer's id wins (ours is simply unused)
            if not condition_failed(e):
                raise
            return self._t.tags.get(value)

    @staticmethod
    def _check_id(tag_id: Any) -> int:
        try:
            return int(tag_id)
        except (TypeError, ValueError):
            raise InvalidInput(f"tag id must be an integer, got {tag_id!r}") from None

    @staticmethod
    def _tag_dict(row: Any) -> dict[str, Any]:
        return {"tag_id": int(row.tag_id), "value": row.value, "type": row.type or ""}

    # ================================================================= image tags
    def tag_images(self, assignments: dict[str, list[str]], *, plate_id: str | None = None) -> int:
        """Add tags to many images in batched writes: image id -> tag values. Returns rows written."""
        tag_ids = self.ensure_tags(v for values in assignments.values() for v in values)
        count = 0
        with self._t.image_tags.batch_write() as batch:
            for image_id, values in assignments.items():
                for value in dict.fromkeys(values):
                    batch.save(self._t.image_tags(image_id, tag_ids[value], value=value, plate_id=plate_id))
                    count += 1
        return count

    def get_image_tags(self, image_id: str) -> list[dict[str, Any]]:
        """Tags of an image: ``[{"tag_id", "value", "type"}]`` sorted by id."""
        _check_name(image_id, "image_id")
        return [{"tag_id": int(r.tag_id), "value": r.value, "type": tag_type(r.value)}
                for r in self._t.image_tags.query(image_id)]

    def add_image_tags(self, image_id: str, tags: list[str]) -> list[dict[str, Any]]:
        self.tag_images({_check_name(image_id, "image_id"): self._tag_list(tags)}, plate_id=self._plate_of(image_id))
        return self.get_image_tags(image_id)

    def _plate_of(self, image_id: str) -> str | None:
        """The plate recorded with the image's tags (None for an image never tagged with its plate)."""
        return next((r.plate_id for r in self._t.image_tags.query(image_id) if r.plate_id), None)

    def list_plate_image_tags(self, plate_id: str) -> dict[str, list[str]]:
        """The tags of every image of a plate in one query: image id -> sorted tag values (images without
        tags are absent)."""
        out: dict[str, list[str]] = {}
        for row in self._t.image_tags.by_plate.query(_check_name(plate_id, "plate_id")):
            out.setdefault(row.image_id, []).append(row.value)
        return {image_id: sorted(values) for image_id, values in sorted(out.items())}

    def remove_image_tags(self, image_id: str, tags: list[str]) -> list[dict[str, Any]]:
        remove = set(self._tag_list(tags))
        with self._t.image_tags.batch_write() as batch:
            for row in self._t.image_tags.query(_check_name(image_id, "image_id")):
                if row.value in remove:
                    batch.delete(row)
        return self.get_image_tags(image_id)

    def set_image_tags(self, image_id: str, tags: list[str]) -> list[dict[str, Any]]:
        """Replace an image's tags with exactly ``tags`` (the seed's updateImageTags)."""
        wanted = set(self._tag_list(tags))
        current = {t["value"] for t in self.get_image_tags(image_id)}
        self.remove_image_tags(image_id, sorted(current - wanted))
        if wanted - current:
            self.tag_images({image_id: sorted(wanted - current)}, plate_id=self._plate_of(image_id))
        return self.get_image_tags(image_id)

    def get_images_by_tag(self, value: str) -> list[str]:
        """Ids of the images carrying a tag (empty if the tag exists but is unused)."""
        tag = self.get_tag_by_value(value)
        return [r.image_id for r in self._t.image_tags.by_tag.query(tag["tag_id"])]

    @staticmethod
    def _tag_list(tags: Any) -> list[str]:
        if not isinstance(tags, list):
            raise InvalidInput(f"tags must be a list of strings, got {type(tags).__name__}")
        return [_check_tag(t) for t in tags]

    # ================================================================= label categories
    def create_category(self, category: str, description: str | None = None) -> dict[str, Any]:
        row = self._t.label_categories(_check_name(category, "category"), description=description,
                                       next_index=0, created_at=utcnow())
        try:
            row.save(condition=self._t.label_categories.category.does_not_exist())
        except PutError as e:
            if not condition_failed(e):
                raise
            raise Conflict(f"label category {category!r} already exists") from None
        return to_dict(row, exclude=("next_index",))

    def update_category_description(self, category: str, description: str) -> dict[str, Any]:
        row = self._category(category)
        row.update(actions=[self._t.label_categories.description.set(description)])
        return to_dict(row, exclude=("next_index",))

    def delete_category(self, category: str) -> dict[str, int]:
        """Delete a category and all its labels."""
        row = self._category(category)
        labels = list(self._t.labels.query(category))
        with self._t.labels.batch_write() as batch:
            for label in labels:
                batch.delete(label)
        row.delete()
        return {"deleted_labels": len(labels)}

    def list_categories(self) -> list[dict[str, Any]]:
        return sorted((to_dict(r, exclude=("next_index",)) for r in self._t.label_categories.scan()),
                      key=lambda d: d["category"])

    def _category(self, category: str) -> Any:
        try:
            return self._t.label_categories.get(_check_name(category, "category"))
        except self._t.label_categories.DoesNotExist:
            raise NotFound(f"no label category {category!r}") from None

    # ================================================================= labels
    def create_label(self, category: str, label: str, description: str | None = None) -> int:
        """Add a label; returns its index (the next free one). :class:`Conflict` if it exists."""
        cat = self._category(category)
        _check_name(label, "label")
        if self._find_label(category, label) is not None:
            raise Conflict(f"label {label!r} already exists in category {category!r}")
        return int(self._insert_label(cat, label, description).index)

    def ensure_labels(self, category: str, labels: Iterable[str]) -> dict[str, int]:
        """Get or create the category and its labels; returns label -> index (idempotent)."""
        try:
            cat = self._category(category)
        except NotFound:
            try:
                self.create_category(category)
            except Conflict:
                pass
            cat = self._category(category)
        existing = {r.label: int(r.index) for r in self._t.labels.query(category)}
        for label in sorted(set(labels) - set(existing)):
            existing[label] = int(self._insert_label(cat, _check_name(label, "label"), None).index)
        return existing

    def update_label_description(self, category: str, label: str, description: str | None) -> dict[str, Any]:
        """Change a label's description (its index never changes)."""
        row = self._label(category, label)
        row.update(actions=[self._t.labels.description.set(description)] if description
                   else [self._t.labels.description.remove()])
        return to_dict(row)

    def update_label(self, category: str, old_label: str, new_label: str) -> dict[str, Any]:
        """Rename a label, keeping its index and description (the seed's updateLabel).

        :class:`NotFound` if ``old_label`` does not exist, :class:`Conflict` if ``new_label`` does. A rename
        interrupted between writing the new row and deleting the old one is finished by running it again."""
        _check_name(new_label, "label")
        old = self._label(category, old_label)
        new = self._t.labels(old.category, new_label, index=int(old.index), description=old.description)
        try:
            new.save(condition=self._t.labels.label.does_not_exist())
        except PutError as e:
            if not condition_failed(e):
                raise
            if int(self._t.labels.get(old.category, new_label).index) != int(old.index):
                raise Conflict(f"label {new_label!r} already exists in category {category!r}") from None
        old.delete()
        return to_dict(self._t.labels.get(old.category, new_label))

    def list_labels(self, category: str) -> list[dict[str, Any]]:
        """Labels of a category sorted by index."""
        self._category(category)
        return sorted((to_dict(r) for r in self._t.labels.query(category)), key=lambda d: d["index"])

    def get_index(self, category: str, label: str) -> int:
        return int(self._label(category, label).index)

    def _insert_label(self, cat: Any, label: str, description: str | None) -> Any:
        # Atomically take the category's next index, then write the label only if it is still new.
        cat.update(actions=[self._t.label_categories.next_index.add(1)])
        row = self._t.labels(cat.category, label, index=int(cat.next_index) - 1, description=description)
        try:
            row.save(condition=self._t.labels.label.does_not_exist())
        except PutError as e:
            if not condition_failed(e):
                raise
            return self._t.labels.get(cat.category, label)
        return row

    def _find_label(self, category: str, label: str) -> Any:
        try:
            return self._t.labels.get(category, label)
        except self._t.labels.DoesNotExist:
            return None

    def _label(self, category: str, label: str) -> Any:
        row = self._find_label(_check_name(category, "category"), _check_name(label, "label"))
        if row is None:
            raise NotFound(f"no label {label!r} in category {category!r}")
        return row
