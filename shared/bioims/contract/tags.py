"""The tags service's contract: tags with stable ids, image-tag assignment, label categories with stable indices."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .base import MAX_ITEMS, Count, Id, Model, Operation, Request, Service, TagValue, Text, alias

MAX_TAGS_PER_IMAGE = 1000
"""Tags of one image in one request."""
Category = Id
"""A label category (``moa``): a lookup value, not a path segment."""
TagList = Annotated[list[TagValue], Field(max_length=MAX_TAGS_PER_IMAGE)]


# ------------------------------------------------------------------------------------------------ responses
class Tag(Model):
    """A tag with its stable id (also the shape of an image's tag)."""

    tag_id: int = Field(description="stable integer id (1, 2, ... in creation order)")
    value: str = Field(description="the tag, ``type:value`` by convention (``moa:DMSO``)")
    type: str = Field(description="the part of the value before its first ':' ('' if none)")


class LabelCategory(Model):
    """A label category (its labels are the classes of training)."""

    category: str
    description: str | None = None
    created_at: str | None = Field(None, description="ISO-8601 UTC")


class Label(Model):
    """A label of a category with its stable index."""

    category: str
    label: str
    index: int = Field(description="stable class index (0, 1, ... in creation order)")
    description: str | None = None


class DeletedLabels(Model):
    """How many labels were deleted with their category."""

    deleted_labels: int


# ------------------------------------------------------------------------------------------------ requests
class CreateTag(Request):
    """Create a tag with the next free id (409 if it exists)."""

    value: TagValue = Field(validation_alias=alias("value", "tag_value"))


class EnsureTags(Request):
    """Get or create every tag; returns value -> tag id (idempotent, safe under concurrency)."""

    values: list[TagValue] = Field(max_length=MAX_ITEMS)


class GetTagByValue(Request):
    """A tag by its value (404 if none)."""

    value: TagValue = Field(validation_alias=alias("value", "tag_value"))


class GetTagById(Request):
    """A tag by its id (404 if none)."""

    tag_id: Count


class GetAllTags(Request):
    """Every tag (or every tag of one type, the part before ':'), sorted by id."""

    type: Id | None = None


class TagImages(Request):
    """Add tags to many images in batched writes (image id -> tag values); returns the rows written."""

    assignments: dict[Id, TagList] = Field(max_length=MAX_ITEMS)
    plate_id: Id | None = None


class ListPlateImageTags(Request):
    """The tags of every image of a plate in one call: image id -> sorted tag values."""

    plate_id: Id


class GetImageTags(Request):
    """Tags of an image, sorted by id."""

    image_id: Id


class AddImageTags(Request):
    """Add tags to an image; returns all its tags."""

    image_id: Id
    tags: TagList


class RemoveImageTags(Request):
    """Remove tags from an image (tags it does not carry are ignored); returns its remaining tags."""

    image_id: Id
    tags: TagList


class SetImageTags(Request):
    """Replace an image's tags with exactly these (the seed's updateImageTags); returns them."""

    image_id: Id
    tags: TagList


class GetImagesByTag(Request):
    """Ids of the images carrying a tag (404 if the tag does not exist, empty if it is unused)."""

    value: TagValue


class CreateCategory(Request):
    """Create a label category (409 if it exists)."""

    category: Category
    description: Text | None = None


class UpdateCategoryDescription(Request):
    """Change a label category's description."""

    category: Category
    description: Text


class DeleteCategory(Request):
    """Delete a label category and all its labels."""

    category: Category


class ListCategories(Request):
    """Every label category, sorted by name."""


class CreateLabel(Request):
    """Add a label to a category; returns its index (the next free one). 409 if it exists."""

    category: Category
    label: TagValue
    description: Text | None = None


class EnsureLabels(Request):
    """Get or create the category and its labels; returns label -> index (idempotent)."""

    category: Category
    labels: list[TagValue] = Field(max_length=MAX_ITEMS)


class UpdateLabelDescription(Request):
    """Change a label's description (None removes it; its index never changes)."""

    category: Category
    label: TagValue
    description: Text | None


class UpdateLabel(Request):
    """Rename a label, keeping its index and description (404 if it does not exist, 409 if the new name
    does), as the seed's updateLabel ``{category, oldlabel, newlabel}``."""

    category: Category
    old_label: TagValue = Field(validation_alias=alias("old_label", "oldlabel", "label"))
    new_label: TagValue = Field(validation_alias=alias("new_label", "newlabel"))


class ListLabels(Request):
    """Labels of a category, sorted by index."""

    category: Category


class GetIndex(Request):
    """The index of a label in its category (404 if none)."""

    category: Category
    label: TagValue


_Op = Operation
SERVICE = Service("tags", "bioims tags service",
                  "Tags (``compound:ALLN``, ``moa:Protein degradation``, ``plate:Week1_22123``) with stable integer "
                  "ids and their assignment to images, and label categories (``moa``) whose labels have stable "
                  "integer indices: the class indices of training.", (
    _Op("createTag", "create_tag", "POST /tags", CreateTag, Tag, status=201),
    _Op("getAllTags", "get_all_tags", "GET /tags", GetAllTags, list[Tag]),
    _Op("getTagByValue", "get_tag_by_value", "GET /tags/by-value/{value}", GetTagByValue, Tag),
    _Op("getTagById", "get_tag_by_id", "GET /tags/{tag_id}", GetTagById, Tag),
    _Op("ensureTags", "ensure_tags", "POST /tags/ensure", EnsureTags, dict[str, int]),
    _Op("getImagesByTag", "get_images_by_tag", "GET /tags/by-value/{value}/images", GetImagesByTag, list[str]),
    _Op("tagImages", "tag_images", "POST /image-tags", TagImages, int, result_key="count"),
    _Op("getImageTags", "get_image_tags", "GET /images/{image_id}/tags", GetImageTags, list[Tag]),
    _Op("listPlateImageTags", "list_plate_image_tags", "GET /plates/{plate_id}/image-tags", ListPlateImageTags,
        dict[str, list[str]]),
    _Op("addImageTags", "add_image_tags", "POST /images/{image_id}/tags", AddImageTags, list[Tag]),
    _Op("setImageTags", "set_image_tags", "PUT /images/{image_id}/tags", SetImageTags, list[Tag]),
    _Op("removeImageTags", "remove_image_tags", "POST /images/{image_id}/tags/remove", RemoveImageTags, list[Tag]),
    _Op("createCategory", "create_category", "POST /categories", CreateCategory, LabelCategory, status=201),
    _Op("listCategories", "list_categories", "GET /categories", ListCategories, list[LabelCategory]),
    _Op("updateCategoryDescription", "update_category_description", "PUT /categories/{category}",
        UpdateCategoryDescription, LabelCategory),
    _Op("deleteCategory", "delete_category", "DELETE /categories/{category}", DeleteCategory, DeletedLabels),
    _Op("createLabel", "create_label", "POST /categories/{category}/labels", CreateLabel, int, status=201,
        result_key="index"),
    _Op("listLabels", "list_labels", "GET /categories/{category}/labels", ListLabels, list[Label]),
    _Op("updateLabelDescription", "update_label_description", "PUT /categories/{category}/labels/{label}",
        UpdateLabelDescription, Label),
    _Op("updateLabel", "update_label", "POST /categories/{category}/labels/{label}/rename", UpdateLabel, Label),
    _Op("getIndex", "get_index", "GET /categories/{category}/labels/{label}/index", GetIndex, int,
        result_key="index"),
    _Op("ensureLabels", "ensure_labels", "POST /categories/{category}/ensure-labels", EnsureLabels, dict[str, int]),
))
