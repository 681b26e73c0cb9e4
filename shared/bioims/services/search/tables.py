"""The search service's table: the search records, by page."""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.indexes import KeysOnlyProjection
from pynamodb.models import Model

from ...store.tables import Index, TableSet


class SearchesByTrain(Index):
    class Meta:
        index_name = "by_train"
        projection = KeysOnlyProjection()

    train_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class Search(Model):
    """A page of a source's search records (see :mod:`bioims.services.search`): ``search_id`` is the page
    id (``PAGE``, or ``PAGE~i`` for the i-th part of a page too large for one item)."""

    search_id = UnicodeAttribute(hash_key=True)
    train_id = UnicodeAttribute()
    created_at = UnicodeAttribute()
    records = UnicodeAttribute(null=True)  # JSON: [{"search_id", "train_id", "created_at", "status", "query", "hits", ...}]
    parts = NumberAttribute(null=True)

    by_train = SearchesByTrain()


class SearchTables(TableSet):
    """The tables this owner alone reads and writes."""

    MODELS = {"searches": Search}
    searches: type[Search]
