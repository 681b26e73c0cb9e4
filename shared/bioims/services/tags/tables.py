"""The tags service's tables: tags, image-tag assignments, label categories and labels, and the counter
that allocates tag ids."""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.indexes import AllProjection
from pynamodb.models import Model

from ...store.tables import Index, TableSet


# ------------------------------------------------------------------------------------------------- tags
class TagsById(Index):
    class Meta:
        index_name = "by_id"
        projection = AllProjection()

    tag_id = NumberAttribute(hash_key=True)


class TagsByType(Index):
    class Meta:
        index_name = "by_type"
        projection = AllProjection()

    type = UnicodeAttribute(hash_key=True)
    value = UnicodeAttribute(range_key=True)


class Tag(Model):
    """A tag such as ``compound:ALLN``; ``type`` is the part before the first ``:`` (or ``""``)."""

    value = UnicodeAttribute(hash_key=True)
    tag_id = NumberAttribute()
    type = UnicodeAttribute(null=True)  # None for a tag without "type:" (kept out of by_type)
    created_at = UTCDateTimeAttribute(null=True)

    by_id = TagsById()
    by_type = TagsByType()


class ImageTagsByTag(Index):
    class Meta:
        index_name = "by_tag"
        projection = AllProjection()

    tag_id = NumberAttribute(hash_key=True)
    image_id = UnicodeAttribute(range_key=True)


class ImageTagsByPlate(Index):
    class Meta:
        index_name = "by_plate"
        projection = AllProjection()

    plate_id = UnicodeAttribute(hash_key=True)
    image_id = UnicodeAttribute(range_key=True)


class ImageTag(Model):
    """A tag of an image; ``plate_id`` (the image's plate, given when its plate was ingested and kept by
    later tags) lets one query list a plate's image tags (``by_plate``)."""

    image_id = UnicodeAttribute(hash_key=True)
    tag_id = NumberAttribute(range_key=True)
    value = UnicodeAttribute()
    plate_id = UnicodeAttribute(null=True)

    by_tag = ImageTagsByTag()
    by_plate = ImageTagsByPlate()


class LabelCategory(Model):
    category = UnicodeAttribute(hash_key=True)
    description = UnicodeAttribute(null=True)
    next_index = NumberAttribute(default=0)
    created_at = UTCDateTimeAttribute(null=True)


class Label(Model):
    """A label of a category with a stable integer ``index`` (0, 1, ... in creation order)."""

    category = UnicodeAttribute(hash_key=True)
    label = UnicodeAttribute(range_key=True)
    index = NumberAttribute()
    description = UnicodeAttribute(null=True)




class Counter(Model):
    name = UnicodeAttribute(hash_key=True)
    value = NumberAttribute(default=0)


class TagsTables(TableSet):
    """The tables this owner alone reads and writes."""

    MODELS = {"tags": Tag, "image_tags": ImageTag, "label_categories": LabelCategory, "labels": Label, "counters": Counter}
    tags: type[Tag]
    image_tags: type[ImageTag]
    label_categories: type[LabelCategory]
    labels: type[Label]
    counters: type[Counter]
